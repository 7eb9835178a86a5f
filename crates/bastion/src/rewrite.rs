//! What the apiserver proxy changes in a request and its response, besides what every forwarding
//! proxy does (hop-by-hop headers, `X-Forwarded-For`, `Via`: `core::http`).
//!
//! **Requests.** The user's credentials stop here: `Authorization`, `Impersonate-*` and `X-Remote-*`
//! are removed (a backend must never receive a token that works against the apiserver, nor a
//! front-proxy identity header it might trust). `X-Forwarded-Uri` tells the backend the path the
//! user asked for (`/api/v1/namespaces/default/services/web/proxy/` + the backend path), so a web
//! UI behind the proxy can build its own links.
//!
//! **Responses.** `Access-Control-Allow-{Origin,Credentials,Headers,Methods}` are removed: the
//! backend's CORS policy must not extend to the apiserver's origin (kube's `corsRemovingTransport`).
//! A `Location` pointing back at the backend (or at the proxy's own host) gets the proxy prefix, so
//! a redirect stays inside the proxy; one pointing elsewhere, or relative, is left alone
//! ([`rewrite_url`], kube's `Transport.rewriteURL`). HTML links are rewritten the same way
//! ([`crate::html`]).

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// `X-Forwarded-Uri`.
pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

const CORS: [HeaderName; 4] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
];

/// Removes the user's credentials and any identity a front proxy could assert.
pub fn strip_credentials(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    let identity: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.starts_with("impersonate-") || k.starts_with("x-remote-")
        })
        .cloned()
        .collect();
    for k in identity {
        headers.remove(k);
    }
}

/// Removes the backend's CORS grants.
pub fn strip_cors(headers: &mut HeaderMap) {
    for h in &CORS {
        headers.remove(h);
    }
}

/// `path.Join(prefix, backend_path)`, keeping a trailing slash: the `X-Forwarded-Uri` value.
pub fn forwarded_uri(prefix: &str, backend_path: &str) -> String {
    let mut joined = clean(&format!("{prefix}/{backend_path}"));
    if backend_path.ends_with('/') && !joined.ends_with('/') {
        joined.push('/');
    }
    joined
}

/// Go's `path.Clean`: collapses `//`, resolves `.` and `..`, drops a trailing `/` (except the root).
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// A URL split into the parts the rewrite looks at. Anything after the path (query, fragment) is
/// kept verbatim.
#[derive(Debug, PartialEq, Eq)]
struct Parts<'a> {
    scheme: Option<&'a str>,
    /// `Some` when the URL has an authority (`//host`).
    host: Option<&'a str>,
    path: &'a str,
    rest: &'a str,
}

fn split(url: &str) -> Parts<'_> {
    // scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"
    let mut scheme = None;
    let mut rest = url;
    if let Some(colon) = url.find(':') {
        let cand = &url[..colon];
        let valid = cand.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && cand
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
        if valid {
            scheme = Some(cand);
            rest = &url[colon + 1..];
        }
    }
    let mut host = None;
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        host = Some(&after[..end]);
        rest = &after[end..];
    }
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    Parts {
        scheme,
        host,
        path: &rest[..end],
        rest: &rest[end..],
    }
}

/// kube's `Transport.rewriteURL`, for a URL the backend sent (a `Location`, an HTML link).
///
/// - another host (neither the backend's `backend_host` nor the `request_host` the user sent), or a
///   relative path: unchanged;
/// - otherwise scheme and host are dropped (unless the host is the user's own `request_host`) and
///   the path gets `prefix`, unless it already starts with it; a trailing `/` is kept; `..` never
///   leads out of the prefix (a deliberate difference from kube, see the code).
///
/// `None` when nothing changes.
pub fn rewrite_url(
    url: &str,
    backend_host: &str,
    request_host: &str,
    prefix: &str,
) -> Option<String> {
    let p = split(url);
    let other_host = p
        .host
        .is_some_and(|h| !h.is_empty() && h != backend_host && h != request_host);
    if other_host || !p.path.starts_with('/') {
        return None;
    }
    // A URL naming the user's own host keeps it; the backend's host means nothing to the user.
    let keep_origin = p.host.is_some_and(|h| h == request_host);
    let origin = match (keep_origin, p.scheme, p.host) {
        (true, Some(s), Some(h)) => format!("{s}://{h}"),
        (true, None, Some(h)) => format!("//{h}"),
        _ => String::new(),
    };
    let path = if p.path.starts_with(prefix) {
        p.path.to_owned()
    } else {
        // The backend path is cleaned on its own first, so `..` cannot climb out of the prefix
        // (kube joins first: a backend's `Location: /../../secrets` then points at the apiserver's
        // own API, which the user's browser would call with the user's credentials).
        let mut joined = clean(&format!("{prefix}/{}", clean(p.path)));
        if p.path.ends_with('/') && !joined.ends_with('/') {
            joined.push('/');
        }
        joined
    };
    let out = format!("{origin}{path}{}", p.rest);
    (out != url).then_some(out)
}

/// Rewrites a response's `Location`; returns whether it had one.
pub fn rewrite_location(
    headers: &mut HeaderMap,
    backend_host: &str,
    request_host: &str,
    prefix: &str,
) -> bool {
    let Some(loc) = headers.get(header::LOCATION) else {
        return false;
    };
    if let Ok(s) = loc.to_str()
        && let Some(new) = rewrite_url(s, backend_host, request_host, prefix)
        && let Ok(v) = HeaderValue::from_str(&new)
    {
        headers.insert(header::LOCATION, v);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/api/v1/namespaces/default/services/web/proxy";

    fn rw(url: &str) -> String {
        rewrite_url(url, "127.0.30.2:8080", "127.0.0.1:8001", PREFIX).unwrap_or_else(|| url.into())
    }

    #[test]
    fn location_rules() {
        // Absolute path on the backend: prefixed.
        assert_eq!(rw("/login"), format!("{PREFIX}/login"));
        assert_eq!(rw("/a/b/?x=1#f"), format!("{PREFIX}/a/b/?x=1#f"));
        // The backend's own host: prefixed, origin dropped.
        assert_eq!(rw("http://127.0.30.2:8080/x"), format!("{PREFIX}/x"));
        // The user's host: prefixed, origin kept.
        assert_eq!(
            rw("http://127.0.0.1:8001/x"),
            format!("http://127.0.0.1:8001{PREFIX}/x")
        );
        // Already under the prefix: unchanged.
        assert_eq!(rw(&format!("{PREFIX}/x")), format!("{PREFIX}/x"));
        // Another host, relative paths, no path: unchanged.
        for same in [
            "https://example.com/x",
            "//example.com/x",
            "x/y",
            "../up",
            "?q=1",
            "http://127.0.30.2:8080",
            "mailto:someone@example.com",
        ] {
            assert_eq!(rw(same), same, "{same}");
        }
        // Dot segments are cleaned, and never climb out of the prefix.
        assert_eq!(rw("/a/../b"), format!("{PREFIX}/b"));
        assert_eq!(rw("/a/../../../../../secrets"), format!("{PREFIX}/secrets"));
        assert_eq!(rw("/.."), PREFIX);
    }

    #[test]
    fn forwarded_uri_keeps_the_trailing_slash() {
        assert_eq!(forwarded_uri(PREFIX, ""), PREFIX);
        assert_eq!(forwarded_uri(PREFIX, "/"), format!("{PREFIX}/"));
        assert_eq!(forwarded_uri(PREFIX, "/a//b/"), format!("{PREFIX}/a/b/"));
    }

    #[test]
    fn credentials_and_cors_are_removed() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer secret"),
            ("impersonate-user", "admin"),
            ("impersonate-extra-scopes", "x"),
            ("x-remote-user", "admin"),
            ("x-remote-group", "system:masters"),
            ("accept", "*/*"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_credentials(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
        let mut r = HeaderMap::new();
        for n in &CORS {
            r.insert(n, HeaderValue::from_static("*"));
        }
        r.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_cors(&mut r);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn clean_is_gos() {
        for (i, o) in [
            ("/a/b/../c", "/a/c"),
            ("/../a", "/a"),
            ("//a//b/", "/a/b"),
            ("/", "/"),
            ("a/./b", "a/b"),
            ("", "."),
            ("../x", "../x"),
        ] {
            assert_eq!(clean(i), o, "{i}");
        }
    }

    proptest::proptest! {
        /// Rewriting is idempotent: a rewritten URL is already under the prefix.
        #[test]
        fn rewriting_twice_changes_nothing(path in "(/[a-z0-9.]{0,4}){1,4}/?") {
            let once = rw(&path);
            proptest::prop_assert_eq!(rw(&once), once);
        }
    }
}
