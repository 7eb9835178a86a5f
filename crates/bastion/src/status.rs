//! The bastion's answers when it does not forward: Kubernetes `Status` objects, as kube-apiserver
//! writes them, so `kubectl` prints `Error from server (ServiceUnavailable): no endpoints available
//! for service "web"` and client libraries branch on `reason`.
//!
//! Every failure goes through [`status_response`]; the mapping from a proxy error is
//! [`from_proxy_error`] (kube's: a transport failure is 503 `error trying to reach service: …`, a
//! failed upgrade dial 500 `error dialing backend: …`), and a kubelet's plain-text error to a
//! `pods/log` request becomes a Status as kube's `genericHttpResponseChecker` makes it
//! ([`from_kubelet`]).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use http::header::{self, HeaderValue};
use proxylab_apimachinery::status::{Cause, Details, Status};
use proxylab_core::http::ProxyError;

use crate::resolve::ResolveError;

/// A Status as a response (`application/json`).
pub fn status_response(s: &Status) -> Response {
    let mut r = Response::new(Body::from(s.to_value().to_string()));
    *r.status_mut() = s.http_status();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A resolution failure as kube-apiserver reports it.
pub fn from_resolve(e: &ResolveError) -> Status {
    match e {
        ResolveError::NotFound { resource, name } => Status::not_found(*resource, name),
        ResolveError::BadRequest(m) => Status::bad_request(m.clone()),
        ResolveError::Unavailable(m) => Status::service_unavailable(m.clone()),
        ResolveError::Internal(m) => Status::internal(m),
    }
}

/// A forwarding failure. `upgrade`: the request was an upgrade (exec, attach, port-forward, a
/// WebSocket through the proxy), whose dial failures kube-apiserver reports differently.
pub fn from_proxy_error(e: &ProxyError, upgrade: bool) -> Status {
    match e {
        ProxyError::Downstream(m) => Status::bad_request(m.clone()),
        ProxyError::Internal(m) => Status::internal(m),
        // kube's UpgradeAwareHandler hands these plain errors to its responder, which writes a 500
        // Status with no reason (kubectl: `Error from server: error dialing backend: …`).
        ProxyError::InvalidUpgradeResponse { .. } => Status::new(500, "", e.to_string()),
        _ if upgrade => Status::new(500, "", format!("error dialing backend: {}", detail(e))),
        _ => Status::service_unavailable(format!("error trying to reach service: {}", detail(e))),
    }
}

/// The useful part of a transport error: what failed, not our variant's wording twice.
fn detail(e: &ProxyError) -> String {
    match e {
        ProxyError::UpstreamConnect { message, .. }
        | ProxyError::UpstreamProtocol { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The reason and generic message kube's `NewGenericServerResponse` gives a status code.
fn generic(code: u16) -> (&'static str, String) {
    match code {
        401 => ("Unauthorized", "the server has asked for the client to provide credentials".into()),
        403 => ("Forbidden", "the server does not allow access to the requested resource".into()),
        404 => ("NotFound", "the server could not find the requested resource".into()),
        405 => ("MethodNotAllowed", "the server does not allow this method on the requested resource".into()),
        406 => ("NotAcceptable", "the server was unable to respond with a content type that the client supports".into()),
        409 => ("Conflict", "the server reported a conflict".into()),
        410 => ("Gone", "the server has asked for the client to provide credentials".into()),
        415 => ("UnsupportedMediaType", "the server was unable to respond with a content type that the client supports".into()),
        422 => ("Invalid", "the server rejected our request due to an error in our request".into()),
        429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later".into()),
        503 => ("ServiceUnavailable", "the server is currently unable to handle the request".into()),
        504 => ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request".into()),
        c => ("", format!("the server responded with the status code {c} but did not return more information")),
    }
}

/// A kubelet's non-2xx answer to `pods/log` as kube-apiserver turns it into a Status: 400 keeps the
/// kubelet's text as the message, 500 becomes an internal error carrying it, others get kube's
/// generic message for the code with `( pods/log <name>)`; the kubelet's text is kept as a cause.
pub fn from_kubelet(code: u16, body: &str, subresource: &str, name: &str) -> Status {
    let body = body.trim();
    match code {
        400 => Status::bad_request(body.to_owned()),
        500 => Status::internal(body),
        _ => {
            let (reason, message) = generic(code);
            let mut s = Status::new(code, reason, format!("{message} ( {subresource} {name})"));
            s.details = Some(Details {
                name: name.to_owned(),
                group: String::new(),
                kind: subresource.to_owned(),
                causes: if body.is_empty() {
                    Vec::new()
                } else {
                    vec![Cause::new("UnexpectedServerResponse", "", body)]
                },
                retry_after_seconds: None,
            });
            s
        }
    }
}

/// A status with `Connection: close` (after a refused upgrade the client may already be sending
/// tunnel bytes that must not be read as a request).
pub fn closing(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A bare status with no body (the 301 of an empty backend path).
pub fn redirect(location: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_apiservers_messages() {
        let s = from_resolve(&ResolveError::NotFound {
            resource: "services",
            name: "nope".into(),
        });
        assert_eq!(
            (s.code, s.message.as_str()),
            (404, "services \"nope\" not found")
        );
        let s = from_proxy_error(
            &ProxyError::UpstreamConnect {
                target: "http://127.0.30.9:8080".into(),
                message: "dial tcp 127.0.30.9:8080: connection refused".into(),
            },
            false,
        );
        assert_eq!(s.code, 503);
        assert_eq!(
            s.message,
            "error trying to reach service: dial tcp 127.0.30.9:8080: connection refused"
        );
        assert_eq!(s.reason, "ServiceUnavailable");
        let s = from_proxy_error(&ProxyError::InvalidUpgradeResponse { status: 302 }, true);
        assert_eq!(s.code, 500);
        assert!(
            s.message
                .contains("invalid upgrade response: status code 302"),
            "{}",
            s.message
        );
    }

    #[test]
    fn kubelet_errors_become_statuses() {
        let s = from_kubelet(404, "pod does not exist\n", "pods/log", "web-1");
        assert_eq!(s.code, 404);
        assert_eq!(s.reason, "NotFound");
        assert_eq!(
            s.message,
            "the server could not find the requested resource ( pods/log web-1)"
        );
        assert_eq!(s.details.unwrap().causes[0].message, "pod does not exist");
        let s = from_kubelet(400, "bad tailLines", "pods/log", "web-1");
        assert_eq!((s.code, s.message.as_str()), (400, "bad tailLines"));
    }
}
