//! One canonical form of a request path, shared by the filter and the upstream request.
//!
//! A filter that looks at one spelling of a path while the backend acts on another can be walked
//! around: `/api/v1/namespaces/x/pods/p/%65xec`, `/api//v1/…/exec` or `/api/v1/../v1/…/exec` all
//! name the exec subresource to the apiserver (Go decodes the path before routing), yet none of
//! them matches the regex `^/api/.*/pods/.*/exec` literally on the raw string in every case.
//!
//! So proxylab decodes percent-escapes first, then removes dot-segments and repeated slashes exactly
//! as Go's `net/http` mux does (`path.Clean`, keeping a trailing slash), and checks the filter on
//! that decoded, clean path. The request sent upstream carries the same path re-encoded
//! ([`CanonicalPath::encoded`]), so what was checked is what the backend sees. When cleaning changed
//! the path, `kubectl proxy` (through Go's mux) answers `301 Moved Permanently` to the clean path;
//! [`CanonicalPath::cleaned`] tells the caller to do the same.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// Characters re-encoded when a decoded path goes back on the wire: everything that is not allowed
/// literally in a path segment (RFC 3986 `pchar` plus `/`), and `%` itself so a decoded `%` does
/// not turn into a new escape.
const PATH_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The printable ASCII bytes [`PATH_ENCODE`] encodes (it also encodes controls and space).
fn needs_encoding(b: u8) -> bool {
    matches!(
        b,
        b'"' | b'#'
            | b'%'
            | b'<'
            | b'>'
            | b'?'
            | b'['
            | b'\\'
            | b']'
            | b'^'
            | b'`'
            | b'{'
            | b'|'
            | b'}'
    )
}

/// A request path in the one form both the filter and the backend use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// Percent-decoded, dot-segments removed, repeated slashes collapsed; always starts with `/`.
    pub decoded: String,
    /// [`Self::decoded`] re-encoded for the request line.
    pub encoded: String,
    /// Whether cleaning (not merely decoding) changed the path: `..`, `.` or `//` were present.
    /// `kubectl proxy` answers such a request with a 301 to the clean path.
    pub cleaned: bool,
}

/// Why a path has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The percent-escapes decode to bytes that are not UTF-8.
    #[error("request path is not valid UTF-8 after percent-decoding")]
    NotUtf8,
    /// The decoded path contains a control character (NUL, CR, LF, …), which no Kubernetes path
    /// needs and which some backends split or truncate on.
    #[error("request path contains a control character")]
    ControlCharacter,
}

/// Decodes and cleans `raw` (the path part of a request target, without the query).
pub fn canonicalize(raw: &str) -> Result<CanonicalPath, PathError> {
    // Fast path for the common case: nothing to decode, no dot-segment, no empty segment.
    if raw.starts_with('/')
        && !raw.contains("//")
        && !raw.contains("/.")
        && raw
            .bytes()
            .all(|b| b.is_ascii_graphic() && !needs_encoding(b))
    {
        return Ok(CanonicalPath {
            decoded: raw.to_owned(),
            encoded: raw.to_owned(),
            cleaned: false,
        });
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathError::NotUtf8)?;
    if decoded.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    let decoded_raw: &str = if decoded.is_empty() { "/" } else { &decoded };
    let clean = clean_path(decoded_raw);
    let cleaned = clean != decoded_raw;
    let encoded = utf8_percent_encode(&clean, PATH_ENCODE).to_string();
    Ok(CanonicalPath {
        decoded: clean,
        encoded,
        cleaned,
    })
}

/// Go's `net/http` `cleanPath`: a rooted `path.Clean` that keeps one trailing slash when the input
/// had one (so `/api/` stays `/api/`, while `/api/.` becomes `/api`).
fn clean_path(p: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    for segment in p.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let mut out = String::with_capacity(p.len());
    for s in &stack {
        out.push('/');
        out.push_str(s);
    }
    // The root, or a trailing slash the input had.
    if out.is_empty() || p.ends_with('/') {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // (raw, decoded, cleaned)
        let cases = [
            ("/", "/", false),
            ("", "/", false),
            ("/api", "/api", false),
            ("/api/", "/api/", false),
            ("/api//v1", "/api/v1", true),
            ("/api/./v1", "/api/v1", true),
            ("/api/x/../v1", "/api/v1", true),
            ("/../../etc", "/etc", true),
            ("/api/.", "/api", true),
            ("/api/v1/x/..", "/api/v1", true),
            ("/api/v1/pods/p/%65xec", "/api/v1/pods/p/exec", false),
            ("/api/v1/pods/p%2Fexec", "/api/v1/pods/p/exec", false),
            ("/api/%2e%2e/x", "/x", true),
            ("/a%20b", "/a b", false),
        ];
        for (raw, decoded, cleaned) in cases {
            let c = canonicalize(raw).unwrap();
            assert_eq!(c.decoded, decoded, "raw {raw:?}");
            assert_eq!(c.cleaned, cleaned, "raw {raw:?}");
        }
    }

    #[test]
    fn encoded_round_trips() {
        let c = canonicalize("/a%20b/%25/%3F").unwrap();
        assert_eq!(c.decoded, "/a b/%/?");
        assert_eq!(c.encoded, "/a%20b/%25/%3F");
        assert_eq!(canonicalize(&c.encoded).unwrap().decoded, c.decoded);
    }

    #[test]
    fn fast_path_agrees_with_the_encode_set() {
        for b in 0x21u8..0x7f {
            let s = (b as char).to_string();
            let encoded = utf8_percent_encode(&s, PATH_ENCODE).to_string() != s;
            assert_eq!(needs_encoding(b), encoded, "byte {:?}", b as char);
        }
    }

    #[test]
    fn bad_paths() {
        assert_eq!(canonicalize("/%ff"), Err(PathError::NotUtf8));
        assert_eq!(canonicalize("/a%00b"), Err(PathError::ControlCharacter));
        assert_eq!(canonicalize("/a%0d%0ab"), Err(PathError::ControlCharacter));
    }

    proptest::proptest! {
        /// Canonicalisation is idempotent, and its encoded form decodes back to the same path: the
        /// property that makes "check the decoded path, send the encoded one" sound.
        #[test]
        fn idempotent(raw in "(/|[a-z]{1,3}|\\.|\\.\\.|%2[eEfF]|%25|%20){0,12}") {
            if let Ok(c) = canonicalize(&raw) {
                let again = canonicalize(&c.encoded).unwrap();
                proptest::prop_assert_eq!(&again.decoded, &c.decoded);
                proptest::prop_assert!(!again.cleaned);
                proptest::prop_assert!(!c.decoded.split('/').any(|s| s == ".." || s == "."));
                proptest::prop_assert!(!c.decoded.contains("//"));
            }
        }
    }
}
