//! The kubelet's streaming endpoints: `exec`, `attach` and `portForward` over SPDY and WebSocket.
//!
//! `kubectl exec/attach/port-forward` asks the apiserver, which relays the upgrade to the kubelet
//! of the pod's node (in a real cluster the kubelet hands it on to the container runtime's
//! streaming server, `pkg/kubelet/cri/streaming`). Which protocol arrives depends on the client:
//!
//! | upgrade | negotiated by | carries |
//! |---|---|---|
//! | `Upgrade: SPDY/3.1` | `X-Stream-Protocol-Version: v4.channel.k8s.io` (… v3, v2, `channel.k8s.io`) | one SPDY stream per stdin/stdout/stderr/error/resize |
//! | `Upgrade: SPDY/3.1` | `X-Stream-Protocol-Version: portforward.k8s.io` | a data and an error stream per forwarded connection |
//! | `Upgrade: websocket` | `Sec-WebSocket-Protocol: v5.channel.k8s.io` (… `v4.channel.k8s.io`, `channel.k8s.io`, base64 variants) | channel-numbered messages ([`ws`]) |
//! | `Upgrade: websocket` | `Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io` | a SPDY port-forward session inside binary messages |
//! | `Upgrade: websocket` | `v4.channel.k8s.io` / `channel.k8s.io` + `?port=N` | port-forward, two channels per port |
//!
//! kube-apiserver ≥ 1.30 translates a client's WebSocket `v5` exec into SPDY towards the kubelet
//! and unwraps tunnelled port-forward SPDY; this kubelet accepts every form itself, so the lab's
//! apiserver proxy can pass upgrades through untouched. Modules: [`remotecommand`] (exec/attach),
//! [`portforward`], [`ws`] (the WebSocket channel framing).

pub mod portforward;
pub mod remotecommand;
pub mod ws;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

/// `X-Stream-Protocol-Version`.
pub const HEADER_PROTOCOL_VERSION: &str = "x-stream-protocol-version";
/// `X-Accepted-Stream-Protocol-Versions` (sent with a 403 when negotiation fails).
pub const HEADER_ACCEPTED_VERSIONS: &str = "x-accepted-stream-protocol-versions";
/// The SPDY upgrade token.
pub const SPDY_UPGRADE: &str = "SPDY/3.1";
/// Port-forward's SPDY protocol.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol of SPDY port-forward tunnelled in WebSocket (kubectl ≥ 1.30).
pub const TUNNELED_PORT_FORWARD_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// How an upgrade request wants to talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// `Upgrade: SPDY/3.1`.
    Spdy,
    /// `Upgrade: websocket`.
    WebSocket,
}

/// Which upgrade a request asks for (`Connection` must contain `upgrade`).
pub fn upgrade_kind(headers: &HeaderMap) -> Option<Upgrade> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return None;
    }
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?.trim();
    if upgrade.eq_ignore_ascii_case("websocket") {
        Some(Upgrade::WebSocket)
    } else if upgrade.eq_ignore_ascii_case(SPDY_UPGRADE) {
        Some(Upgrade::Spdy)
    } else {
        None
    }
}

/// Every value of a (possibly repeated, comma-separated) header, in order.
pub fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The first client protocol the server supports (the client's order decides, as in
/// `httpstream.Handshake` and `wsstream`).
pub fn negotiate<'a>(client: &[String], server: &[&'a str]) -> Option<&'a str> {
    client
        .iter()
        .find_map(|c| server.iter().find(|s| **s == c.as_str()).copied())
}

/// A kubelet-style error: plain text, as go-restful's `WriteError` writes it.
pub fn text_error(status: StatusCode, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(format!("{message}\n")))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The 403 of a failed SPDY protocol negotiation, listing what the server accepts.
pub fn negotiation_failed(client: &[String], server: &[&str]) -> Response {
    let mut response = text_error(
        StatusCode::FORBIDDEN,
        &format!(
            "unable to upgrade: unable to negotiate protocol: client supports {client:?}, server accepts {server:?}"
        ),
    );
    for protocol in server {
        if let Ok(value) = HeaderValue::from_str(protocol) {
            response
                .headers_mut()
                .append(HEADER_ACCEPTED_VERSIONS, value);
        }
    }
    response
}

/// The query string as name → values (percent-decoded; `+` is a space, as Go's `url.ParseQuery`).
pub fn query_map(query: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        map.entry(decode(k)).or_default().push(decode(v));
    }
    map
}

/// The `101 Switching Protocols` answer with the given upgrade headers.
pub fn switching_protocols(headers: &[(&str, String)]) -> Response {
    let mut builder = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Body::empty())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_detection() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert_eq!(upgrade_kind(&h), None, "Connection: upgrade is required");
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(upgrade_kind(&h), Some(Upgrade::Spdy));
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert_eq!(upgrade_kind(&h), Some(Upgrade::WebSocket));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert_eq!(upgrade_kind(&h), None);
    }

    #[test]
    fn negotiation_follows_the_client_order() {
        let client = vec![
            "v5.channel.k8s.io".to_owned(),
            "v4.channel.k8s.io".to_owned(),
        ];
        assert_eq!(
            negotiate(&client, &["v4.channel.k8s.io", "v5.channel.k8s.io"]),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(negotiate(&client, &["channel.k8s.io"]), None);
        let mut h = HeaderMap::new();
        h.append(
            HEADER_PROTOCOL_VERSION,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        h.append(
            HEADER_PROTOCOL_VERSION,
            HeaderValue::from_static("v3.channel.k8s.io, v2.channel.k8s.io"),
        );
        assert_eq!(
            header_values(&h, HEADER_PROTOCOL_VERSION),
            [
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io"
            ]
        );
    }

    #[test]
    fn query_decoding() {
        let q = query_map(Some(
            "command=sh&command=-c&command=echo+hi%21&tty=1&port=80&port=443",
        ));
        assert_eq!(q["command"], ["sh", "-c", "echo hi!"]);
        assert_eq!(q["port"], ["80", "443"]);
        assert!(query_map(None).is_empty());
    }
}
