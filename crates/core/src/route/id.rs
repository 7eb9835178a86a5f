//! The `[scheme:]name[:port]` id of the apiserver proxy subresources.
//!
//! In `/api/v1/namespaces/{ns}/services/{id}/proxy/…` (and the pod and node forms) the `{id}` picks
//! the object *and* how to reach it: `web`, `web:http`, `web:8080`, `https:web:8443`,
//! `https:web:` (scheme given, port left to the default). kube-apiserver splits it with
//! `net.SplitSchemeNamePort`: split on `:` into one, two or three parts; four or more is invalid;
//! the name must be non-empty; the scheme must be `http`, `https` or empty (empty means http).
//! The port may be a number or a port *name*; resolving a name is the caller's job because it needs
//! the object (a service port name, a container port name).
//!
//! IPv6 literals cannot be written here (they contain `:`), exactly as in Kubernetes.

use std::fmt;

/// The scheme part of an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http:` or no scheme.
    Http,
    /// `https:`.
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A parsed `[scheme:]name[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyId {
    /// `Http` when the id named no scheme or `http`.
    pub scheme: Scheme,
    /// Whether the scheme was written (`http:web:80`) rather than defaulted (`web:80`). The node
    /// proxy cares: an explicit scheme on a non-kubelet port is honoured as given.
    pub scheme_explicit: bool,
    /// The object name; never empty.
    pub name: String,
    /// The port as written (a number or a name); `None` when absent or empty (`https:web:`).
    pub port: Option<String>,
}

/// An id that `SplitSchemeNamePort` would refuse. Display is the apiserver's message without the
/// kind; use [`ProxyIdError::message`] for the full `invalid service request "…"` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request {id:?}")]
pub struct ProxyIdError {
    /// The id as received.
    pub id: String,
}

impl ProxyIdError {
    /// kube-apiserver's 400 message: `invalid <kind> request "<id>"`, kind being `service`,
    /// `pod` or `node`.
    pub fn message(&self, kind: &str) -> String {
        format!("invalid {kind} request {:?}", self.id)
    }
}

impl ProxyId {
    /// Parses an id exactly as `net.SplitSchemeNamePort` does.
    pub fn parse(id: &str) -> Result<Self, ProxyIdError> {
        let err = || ProxyIdError { id: id.to_owned() };
        let parts: Vec<&str> = id.split(':').collect();
        let (scheme, name, port) = match parts.as_slice() {
            [name] => ("", *name, ""),
            [name, port] => ("", *name, *port),
            [scheme, name, port] => (*scheme, *name, *port),
            _ => return Err(err()),
        };
        if name.is_empty() {
            return Err(err());
        }
        let scheme_value = match scheme {
            "" | "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(err()),
        };
        Ok(ProxyId {
            scheme: scheme_value,
            scheme_explicit: !scheme.is_empty(),
            name: name.to_owned(),
            port: (!port.is_empty()).then(|| port.to_owned()),
        })
    }

    /// The port as a number, when it was written as one.
    pub fn port_number(&self) -> Option<u16> {
        self.port.as_deref().and_then(|p| p.parse().ok())
    }
}

impl fmt::Display for ProxyId {
    /// Writes the id back in its canonical `scheme:name:port` or `name[:port]` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.port.as_deref().unwrap_or("");
        if self.scheme_explicit {
            write!(f, "{}:{}:{}", self.scheme.as_str(), self.name, port)
        } else if self.port.is_some() {
            write!(f, "{}:{}", self.name, port)
        } else {
            f.write_str(&self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // (id, Some((scheme, explicit, name, port)) | None for invalid)
        type Want = Option<(Scheme, bool, &'static str, Option<&'static str>)>;
        let cases: &[(&str, Want)] = &[
            ("web", Some((Scheme::Http, false, "web", None))),
            ("web:80", Some((Scheme::Http, false, "web", Some("80")))),
            ("web:http", Some((Scheme::Http, false, "web", Some("http")))),
            ("web:", Some((Scheme::Http, false, "web", None))),
            ("http:web:80", Some((Scheme::Http, true, "web", Some("80")))),
            (
                "https:web:8443",
                Some((Scheme::Https, true, "web", Some("8443"))),
            ),
            ("https:web:", Some((Scheme::Https, true, "web", None))),
            (":web:80", Some((Scheme::Http, false, "web", Some("80")))),
            ("", None),
            (":80", None),
            ("https::80", None),
            ("ftp:web:21", None),
            ("HTTPS:web:443", None),
            ("a:b:c:d", None),
            ("::1", None),
        ];
        for (id, want) in cases {
            let got = ProxyId::parse(id);
            match want {
                None => assert_eq!(got, Err(ProxyIdError { id: (*id).into() }), "{id:?}"),
                Some((scheme, explicit, name, port)) => {
                    let got = got.unwrap_or_else(|e| panic!("{id:?}: {e}"));
                    assert_eq!(got.scheme, *scheme, "{id:?}");
                    assert_eq!(got.scheme_explicit, *explicit, "{id:?}");
                    assert_eq!(got.name, *name, "{id:?}");
                    assert_eq!(got.port.as_deref(), *port, "{id:?}");
                }
            }
        }
    }

    #[test]
    fn message_names_kind() {
        let e = ProxyId::parse("a:b:c:d").unwrap_err();
        assert_eq!(e.message("service"), r#"invalid service request "a:b:c:d""#);
    }

    #[test]
    fn numeric_port() {
        assert_eq!(
            ProxyId::parse("web:8080").unwrap().port_number(),
            Some(8080)
        );
        assert_eq!(ProxyId::parse("web:http").unwrap().port_number(), None);
    }

    proptest::proptest! {
        /// Parsing what Display wrote gives the same id back.
        #[test]
        fn display_round_trips(id in "((https?)?:)?[a-z0-9.-]{1,8}(:[a-z0-9]{0,5})?") {
            if let Ok(p) = ProxyId::parse(&id) {
                proptest::prop_assert_eq!(ProxyId::parse(&p.to_string()).unwrap(), p);
            }
        }
    }
}
