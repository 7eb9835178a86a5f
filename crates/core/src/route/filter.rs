//! `kubectl proxy`'s request filter, with its decisions and without its holes.
//!
//! kubectl builds a `FilterServer` from four flags, each a comma-separated list of RE2 regexes
//! (unanchored unless `^`/`$` are written). For every request it decides, in this order:
//!
//! 1. the path matches a `--reject-paths` regex → rejected;
//! 2. the method matches a `--reject-methods` regex → rejected;
//! 3. accepted only if the path matches an `--accept-paths` regex **and** the Host matches an
//!    `--accept-hosts` regex; otherwise rejected.
//!
//! An empty flag is an empty list (k8s ≥ 1.21): an empty accept list accepts nothing, an empty
//! reject list rejects nothing. A rejection is `403`, body `Forbidden\n`.
//!
//! Where proxylab differs, on purpose:
//! - The path checked is the [canonical](super::path) one: percent-decoded with dot-segments and
//!   repeated slashes removed — the same path that is then sent upstream. kubectl checks Go's decoded
//!   `URL.Path`, which is close, but the mux in front of it only cleans some spellings.
//! - The Host's port is removed without damaging an IPv6 literal: `[::1]:8001` is checked as
//!   `[::1]`, so the default `^\[::1\]$` matches (kubectl checks `::1`, kubernetes#77496).
//! - The Host is the `Host` header, or for HTTP/2 the `:authority`; an empty host never matches.
//!
//! The filter looks at the *destination* Host, not at the client's source address: it is a guard
//! against DNS-rebinding and cross-site requests from a browser, not an access control list.

use regex::Regex;

/// kubectl's `--accept-hosts` default.
pub const DEFAULT_ACCEPT_HOSTS: &str = r"^localhost$,^127\.0\.0\.1$,^\[::1\]$";
/// kubectl's `--accept-paths` default.
pub const DEFAULT_ACCEPT_PATHS: &str = "^.*";
/// kubectl's `--reject-paths` default: exec and attach, but not port-forward.
pub const DEFAULT_REJECT_PATHS: &str = r"^/api/.*/pods/.*/exec,^/api/.*/pods/.*/attach";
/// kubectl's `--reject-methods` default: matches only the empty method, so rejects nothing.
pub const DEFAULT_REJECT_METHODS: &str = "^$";

/// A compiled comma-separated regex list, as a kubectl filter flag.
#[derive(Debug, Clone, Default)]
pub struct RegexList {
    source: String,
    regexes: Vec<Regex>,
}

/// A filter flag that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?} in {flag}: {source}")]
pub struct FilterError {
    /// The flag the list came from, e.g. `--reject-paths`.
    pub flag: &'static str,
    /// The offending list element.
    pub pattern: String,
    /// The regex compiler's complaint.
    #[source]
    pub source: regex::Error,
}

impl RegexList {
    /// Parses a flag value: split on `,` (no escaping, as kubectl), an empty string is an empty
    /// list. `flag` names the flag in errors.
    pub fn parse(flag: &'static str, value: &str) -> Result<Self, FilterError> {
        let regexes = if value.is_empty() {
            Vec::new()
        } else {
            value
                .split(',')
                .map(|p| {
                    Regex::new(p).map_err(|source| FilterError {
                        flag,
                        pattern: p.to_owned(),
                        source,
                    })
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Self {
            source: value.to_owned(),
            regexes,
        })
    }

    /// Whether any regex of the list matches somewhere in `s`.
    pub fn matches(&self, s: &str) -> bool {
        self.regexes.iter().any(|r| r.is_match(s))
    }

    /// Whether the list has no regexes (an empty flag value).
    pub fn is_empty(&self) -> bool {
        self.regexes.is_empty()
    }

    /// The flag value this list was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// The filter's verdict, with the rule that decided it (for the access log and `/debug/hops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The request may be forwarded.
    Accept,
    /// The path matched `--reject-paths`.
    RejectPath,
    /// The method matched `--reject-methods`.
    RejectMethod,
    /// The path matched no `--accept-paths` regex.
    NotAcceptedPath,
    /// The Host matched no `--accept-hosts` regex (or was empty).
    NotAcceptedHost,
}

impl Decision {
    /// Whether the request may pass.
    pub fn is_accept(self) -> bool {
        self == Decision::Accept
    }

    /// A short stable name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::RejectPath => "reject-paths",
            Decision::RejectMethod => "reject-methods",
            Decision::NotAcceptedPath => "accept-paths",
            Decision::NotAcceptedHost => "accept-hosts",
        }
    }
}

/// kubectl proxy's four filter lists.
#[derive(Debug, Clone)]
pub struct Filter {
    /// `--accept-paths`
    pub accept_paths: RegexList,
    /// `--reject-paths`
    pub reject_paths: RegexList,
    /// `--accept-hosts`
    pub accept_hosts: RegexList,
    /// `--reject-methods`
    pub reject_methods: RegexList,
}

impl Default for Filter {
    /// kubectl's defaults.
    fn default() -> Self {
        // The defaults are constants known to compile; parse them through the same path anyway.
        Self::new(
            DEFAULT_ACCEPT_PATHS,
            DEFAULT_REJECT_PATHS,
            DEFAULT_ACCEPT_HOSTS,
            DEFAULT_REJECT_METHODS,
        )
        .unwrap_or_else(|e| unreachable!("default filter must compile: {e}"))
    }
}

impl Filter {
    /// Compiles the four flag values.
    pub fn new(
        accept_paths: &str,
        reject_paths: &str,
        accept_hosts: &str,
        reject_methods: &str,
    ) -> Result<Self, FilterError> {
        Ok(Self {
            accept_paths: RegexList::parse("--accept-paths", accept_paths)?,
            reject_paths: RegexList::parse("--reject-paths", reject_paths)?,
            accept_hosts: RegexList::parse("--accept-hosts", accept_hosts)?,
            reject_methods: RegexList::parse("--reject-methods", reject_methods)?,
        })
    }

    /// Decides on a request. `path` must be the canonical decoded path (see
    /// [`canonicalize`](super::path::canonicalize)) with the api-prefix already stripped;
    /// `host` is the raw `Host` header / `:authority` (port and all).
    pub fn decide(&self, method: &str, path: &str, host: &str) -> Decision {
        if self.reject_paths.matches(path) {
            return Decision::RejectPath;
        }
        if self.reject_methods.matches(method) {
            return Decision::RejectMethod;
        }
        if !self.accept_paths.matches(path) {
            return Decision::NotAcceptedPath;
        }
        let host = host_without_port(host);
        if host.is_empty() || !self.accept_hosts.matches(host) {
            return Decision::NotAcceptedHost;
        }
        Decision::Accept
    }
}

/// Removes a `:port` suffix from a Host value, keeping IPv6 literals bracketed: `[::1]:8001` →
/// `[::1]`, `localhost:8001` → `localhost`, `[::1]` → `[::1]`. A value with several colons and no
/// brackets (not a valid Host) is returned unchanged, so it cannot match a bracketed rule.
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::path::canonicalize;

    /// The decision table: (method, raw path, host, expected) under kubectl's default flags.
    #[test]
    fn default_filter_table() {
        use Decision::*;
        let f = Filter::default();
        let cases: &[(&str, &str, &str, Decision)] = &[
            ("GET", "/api/v1/pods", "localhost:8001", Accept),
            ("GET", "/api/v1/pods", "localhost", Accept),
            ("GET", "/api/v1/pods", "127.0.0.1:8001", Accept),
            // kubernetes#77496: kubectl turns this into `::1` and rejects it; proxylab accepts.
            ("GET", "/api/v1/pods", "[::1]:8001", Accept),
            ("GET", "/api/v1/pods", "[::1]", Accept),
            ("GET", "/api/v1/pods", "", NotAcceptedHost),
            ("GET", "/api/v1/pods", "evil.example:8001", NotAcceptedHost),
            (
                "GET",
                "/api/v1/pods",
                "localhost.evil.example",
                NotAcceptedHost,
            ),
            ("GET", "/api/v1/pods", "::1", NotAcceptedHost),
            ("GET", "/version", "localhost", Accept),
            (
                "POST",
                "/api/v1/namespaces/d/pods/p/exec",
                "localhost",
                RejectPath,
            ),
            (
                "GET",
                "/api/v1/namespaces/d/pods/p/attach",
                "localhost",
                RejectPath,
            ),
            (
                "GET",
                "/api/v1/namespaces/d/pods/p/exec?command=ls",
                "localhost",
                RejectPath,
            ),
            // port-forward is not rejected by kubectl's defaults, and not by ours.
            (
                "POST",
                "/api/v1/namespaces/d/pods/p/portforward",
                "localhost",
                Accept,
            ),
            // Spellings that name exec to the apiserver are all rejected.
            (
                "POST",
                "/api/v1/namespaces/d/pods/p/%65xec",
                "localhost",
                RejectPath,
            ),
            (
                "POST",
                "/api//v1/namespaces/d/pods/p/exec",
                "localhost",
                RejectPath,
            ),
            (
                "POST",
                "/api/v1/namespaces/d/pods/p/x/../exec",
                "localhost",
                RejectPath,
            ),
            (
                "POST",
                "/api/v1/namespaces/d/pods/p/./exec",
                "localhost",
                RejectPath,
            ),
            (
                "POST",
                "/api/v1/namespaces/d/pods/p%2Fexec",
                "localhost",
                RejectPath,
            ),
            (
                "POST",
                "/x/../api/v1/namespaces/d/pods/p/exec",
                "localhost",
                RejectPath,
            ),
            (
                "POST",
                "/api/v1/namespaces/d/pods/p/EXEC",
                "localhost",
                Accept,
            ),
            ("DELETE", "/api/v1/namespaces/d/pods/p", "localhost", Accept),
        ];
        for (method, raw, host, want) in cases {
            let (path, _) = raw.split_once('?').unwrap_or((raw, ""));
            let c = canonicalize(path).unwrap();
            assert_eq!(
                f.decide(method, &c.decoded, host),
                *want,
                "{method} {raw} Host={host}"
            );
        }
    }

    #[test]
    fn empty_lists_follow_kubectl_1_21() {
        // Empty accept list: nothing accepted. Empty reject lists: nothing rejected.
        let f = Filter::new("", "", DEFAULT_ACCEPT_HOSTS, "").unwrap();
        assert_eq!(
            f.decide("GET", "/api", "localhost"),
            Decision::NotAcceptedPath
        );
        let f = Filter::new("^.*", "", DEFAULT_ACCEPT_HOSTS, "").unwrap();
        assert_eq!(
            f.decide("POST", "/api/v1/namespaces/d/pods/p/exec", "localhost"),
            Decision::Accept
        );
        let f = Filter::new("^.*", "", "", "").unwrap();
        assert_eq!(
            f.decide("GET", "/api", "localhost"),
            Decision::NotAcceptedHost
        );
    }

    #[test]
    fn order_and_methods() {
        let f = Filter::new("^/api", "^/api/secret", ".*", "^POST$,^DELETE$").unwrap();
        assert_eq!(f.decide("GET", "/api/secret", "h"), Decision::RejectPath);
        assert_eq!(f.decide("POST", "/api/secret", "h"), Decision::RejectPath);
        assert_eq!(f.decide("POST", "/api/x", "h"), Decision::RejectMethod);
        assert_eq!(f.decide("GET", "/apis", "h"), Decision::Accept);
        assert_eq!(f.decide("GET", "/version", "h"), Decision::NotAcceptedPath);
        // unanchored: a regex matches anywhere
        let f = Filter::new("v1", "", ".*", "").unwrap();
        assert_eq!(f.decide("GET", "/api/v1/pods", "h"), Decision::Accept);
        // an empty element of a non-empty list matches everything, as in kubectl
        let f = Filter::new("^/nope,", "", ".*", "").unwrap();
        assert_eq!(f.decide("GET", "/api", "h"), Decision::Accept);
    }

    #[test]
    fn bad_regex_names_flag() {
        let e = Filter::new("(", "", "", "").unwrap_err();
        assert_eq!(e.flag, "--accept-paths");
        assert!(e.to_string().contains("--accept-paths"));
    }

    /// One spelling of `segments` as a client might write it: every character possibly
    /// percent-encoded (either hex case), and between segments `/`, `//`, `/./` or `/junk/../`.
    fn spelling() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let segments = ["api", "v1", "namespaces", "d", "pods", "p", "exec"];
        let n_chars: usize = segments.iter().map(|s| s.len()).sum();
        (
            proptest::collection::vec(0u8..3, n_chars),
            proptest::collection::vec(0u8..4, segments.len()),
        )
            .prop_map(move |(enc, seps)| {
                let mut out = String::new();
                let mut i = 0;
                for (k, seg) in segments.iter().enumerate() {
                    out.push_str(match seps[k] {
                        0 => "/",
                        1 => "//",
                        2 => "/./",
                        _ => "/junk/../",
                    });
                    for b in seg.bytes() {
                        match enc[i] {
                            0 => out.push(b as char),
                            1 => out.push_str(&format!("%{b:02X}")),
                            _ => out.push_str(&format!("%{b:02x}")),
                        }
                        i += 1;
                    }
                }
                out
            })
    }

    proptest::proptest! {
        /// However the exec path is spelled, the path the filter decides on (directly, or after the
        /// 301 to the clean path) is rejected by kubectl's default --reject-paths.
        #[test]
        fn no_spelling_of_exec_passes(raw in spelling()) {
            let f = Filter::default();
            let c = canonicalize(&raw).unwrap();
            let decided = if c.cleaned {
                // the client follows the 301 to the clean, encoded path
                let again = canonicalize(&c.encoded).unwrap();
                proptest::prop_assert!(!again.cleaned);
                again.decoded
            } else {
                c.decoded
            };
            proptest::prop_assert_eq!(f.decide("POST", &decided, "localhost"), Decision::RejectPath, "{}", raw);
        }
    }

    #[test]
    fn host_port_stripping() {
        assert_eq!(host_without_port("[::1]:8001"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
        assert_eq!(host_without_port("[::1"), "[::1");
        assert_eq!(host_without_port("localhost:8001"), "localhost");
        assert_eq!(host_without_port("localhost"), "localhost");
        assert_eq!(host_without_port("::1"), "::1");
        assert_eq!(host_without_port("a:b"), "a:b");
    }
}
