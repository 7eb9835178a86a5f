//! Forwarding errors that say whose fault they were.

use http::StatusCode;

/// Boxed error used for sources from connectors and clients.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Who caused a failure: decides the status code and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The backend could not be reached or answered badly (→ 502 / 504).
    Upstream,
    /// The client sent something the proxy cannot forward (→ 400).
    Downstream,
    /// The proxy itself failed (credentials could not be obtained, a bug) (→ 500).
    Internal,
}

impl Side {
    /// `"upstream"`, `"downstream"` or `"internal"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Upstream => "upstream",
            Side::Downstream => "downstream",
            Side::Internal => "internal",
        }
    }
}

/// Why a request could not be forwarded. Display texts are meant for the user: they name the target
/// and what to check.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No connection to the backend (refused, unreachable, DNS, TLS handshake).
    #[error("cannot connect to {target}: {message}")]
    UpstreamConnect {
        /// scheme://host:port of the backend.
        target: String,
        /// The cause, with its source chain.
        message: String,
    },
    /// The TLS handshake with the backend failed for a reason a user must fix in the trust
    /// configuration (its certificate is not trusted or not for the name dialled, it refused our
    /// client certificate, it does not speak TLS). Reachable, so no "is it running?" hint.
    #[error("TLS handshake with {target} failed: {message}")]
    UpstreamTls {
        /// scheme://host:port of the backend.
        target: String,
        /// What did not match, in plain words, then rustls's own text.
        message: String,
    },
    /// The backend did not answer in time.
    #[error("timed out waiting for {target}")]
    UpstreamTimeout {
        /// scheme://host:port of the backend.
        target: String,
    },
    /// The connection was made but the exchange failed (reset, malformed response).
    #[error("error talking to {target}: {message}")]
    UpstreamProtocol {
        /// scheme://host:port of the backend.
        target: String,
        /// The cause, with its source chain.
        message: String,
    },
    /// The backend answered an upgrade request with neither 101 nor an error status.
    #[error("invalid upgrade response: status code {status}")]
    InvalidUpgradeResponse {
        /// The status the backend sent.
        status: u16,
    },
    /// The client's request cannot be forwarded as it is.
    #[error("bad request: {0}")]
    Downstream(String),
    /// The proxy failed on its own (e.g. an exec credential plugin failed).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    /// Whose fault it was.
    pub fn side(&self) -> Side {
        match self {
            ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamTls { .. }
            | ProxyError::UpstreamTimeout { .. }
            | ProxyError::UpstreamProtocol { .. }
            | ProxyError::InvalidUpgradeResponse { .. } => Side::Upstream,
            ProxyError::Downstream(_) => Side::Downstream,
            ProxyError::Internal(_) => Side::Internal,
        }
    }

    /// The status to answer with: 502 for an unusable backend, 504 for a silent one, 400 for a
    /// bad request, 500 for our own failures.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamTls { .. }
            | ProxyError::UpstreamProtocol { .. }
            | ProxyError::InvalidUpgradeResponse { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Downstream(_) => StatusCode::BAD_REQUEST,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the downstream connection must be closed after the error response. True after a
    /// refused upgrade: the client may already be sending tunnel bytes that must never be read as
    /// a new request.
    pub fn closes_connection(&self) -> bool {
        matches!(self, ProxyError::InvalidUpgradeResponse { .. })
    }

    /// A short stable label for metrics and hop records.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::UpstreamConnect { .. } => "upstream-connect",
            ProxyError::UpstreamTls { .. } => "upstream-tls",
            ProxyError::UpstreamTimeout { .. } => "upstream-timeout",
            ProxyError::UpstreamProtocol { .. } => "upstream-protocol",
            ProxyError::InvalidUpgradeResponse { .. } => "invalid-upgrade-response",
            ProxyError::Downstream(_) => "downstream",
            ProxyError::Internal(_) => "internal",
        }
    }
}

/// An error and its `source()` chain as one line (`a: b: c`), skipping repeats: hyper's errors
/// say little at the top ("client error (Connect)") and the useful part is at the bottom.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// A failed connection as the error to report: [`ProxyError::UpstreamTls`] when the cause is a
/// TLS problem the user must fix (found anywhere in `err`'s source chain), else
/// [`ProxyError::UpstreamConnect`].
pub(crate) fn connect_error(target: String, err: &(dyn std::error::Error + 'static)) -> ProxyError {
    match tls_problem(err) {
        Some(message) => ProxyError::UpstreamTls { target, message },
        None => ProxyError::UpstreamConnect {
            target,
            message: error_chain(err),
        },
    }
}

/// The rustls error in `err`'s chain, explained. `io::Error` hides a wrapped error from
/// `source()` (it returns the wrapped error's source), and hyper-rustls wraps tokio-rustls's
/// `io::Error` in another one, so an `io::Error`'s payload is followed before its source.
fn tls_problem(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return explain_tls(tls);
        }
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn explain_tls(err: &rustls::Error) -> Option<String> {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let what = match err {
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "its certificate is not signed by a certificate authority we trust"
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "its certificate is not valid for the name we dialled"
        }
        E::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => "its certificate is expired or not yet valid",
        E::InvalidCertificate(_) => "its certificate was rejected",
        E::AlertReceived(
            A::BadCertificate
            | A::CertificateRequired
            | A::UnknownCA
            | A::CertificateUnknown
            | A::AccessDenied,
        ) => "it refused our client certificate (none presented, or one it does not trust)",
        E::AlertReceived(_) => "it ended the handshake",
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            "it does not speak TLS on this port (plain HTTP?)"
        }
        // Anything else (an internal error, a failed key exchange) is not the trust
        // configuration's fault: reported as an ordinary connect error.
        _ => return None,
    };
    Some(format!("{what} ({err})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_side() {
        let e = ProxyError::InvalidUpgradeResponse { status: 302 };
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(e.side(), Side::Upstream);
        assert!(e.closes_connection());
        assert_eq!(e.to_string(), "invalid upgrade response: status code 302");
        assert_eq!(
            ProxyError::Downstream("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(ProxyError::Internal("x".into()).side(), Side::Internal);
    }

    #[test]
    fn tls_problems_are_named_wherever_they_sit_in_the_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Top(#[source] std::io::Error);
        // As hyper-rustls reports it: tokio-rustls's io::Error inside another io::Error.
        let wrapped = |e: rustls::Error| {
            Top(std::io::Error::other(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e,
            )))
        };
        let e = connect_error(
            "https://a:6443".into(),
            &wrapped(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        );
        assert_eq!(e.kind(), "upstream-tls");
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        let text = e.to_string();
        assert!(text.starts_with("TLS handshake with https://a:6443 failed: its certificate is not signed by a certificate authority we trust"), "{text}");
        assert!(text.contains("UnknownIssuer"), "{text}");
        let e = connect_error(
            "https://a:6443".into(),
            &wrapped(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            )),
        );
        assert!(e.to_string().contains("not valid for the name"), "{e}");
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = connect_error("https://a:6443".into(), &Top(refused));
        assert_eq!(e.kind(), "upstream-connect");
    }

    #[test]
    fn chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Top(#[source] std::io::Error);
        assert_eq!(
            error_chain(&Top(io)),
            "client error (Connect): connection refused"
        );
    }
}
