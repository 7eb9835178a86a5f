//! `echo-http`: an HTTP server that tells the client what it saw.
//!
//! Proxies rewrite requests (Host, X-Forwarded-For, Forwarded, Via, the path), change protocols
//! (HTTP/2 in front, HTTP/1.1 behind), terminate or pass through TLS, and choose an endpoint. This
//! server makes all of that visible: every response names the pod, the node, the client address the
//! pod's socket saw (a proxy's own address, unless the proxy preserves the client's), and every header.
//!
//! Routes (any method):
//! - any path → JSON `{method, path, query, host, headers, body, clientAddress, proxyProtocol,
//!   localAddress, pod, namespace, node, podIP, tls, alpn, protocol}`; `proxyProtocol` is
//!   `{source, destination}` when the connection began with a PROXY protocol header (v1 or v2, as a
//!   load balancer sends with `proxylab.io/proxy-protocol`), else `null`; `headers` maps each
//!   lower-case name to its value (repeated headers joined with `", "`).
//! - `/hostname` → the pod name as text (what `agnhost netexec` answers).
//! - `/clientip` → the client IP the socket saw, as text.
//! - `/status/{code}` → that status (200–599) with the echo JSON as body (none for 204/304).
//! - `/delay/{ms}` → waits (at most 60 s, and never past pod shutdown), then echoes.
//! - `/stream?n=5&interval_ms=100` → a chunked response of `n` lines, one chunk per line.
//! - `/redirect?to=/x` → 302 with `Location: /x` (proxies must pass it on, never follow it).
//! - `/ws` → WebSocket echo of text and binary messages.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::PodIdentity;
use super::logs::ContainerLog;
use proxylab_core::serve::ConnInfo;

/// The longest `/delay/{ms}` waits.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// The most lines `/stream` sends.
pub const MAX_STREAM_LINES: u64 = 100_000;
/// The longest pause between `/stream` lines.
pub const MAX_STREAM_INTERVAL: Duration = Duration::from_secs(10);
/// Request bodies larger than this are refused with 413 (the echo includes the body).
pub const MAX_BODY: usize = 1 << 20;

/// What every echo handler needs: who the pod is, and the token that ends waits and streams when
/// the pod is removed.
#[derive(Clone, Debug)]
pub struct EchoState {
    pod: Arc<PodIdentity>,
    shutdown: CancellationToken,
    log: ContainerLog,
}

impl EchoState {
    /// State for one pod's echo server (with a log of its own).
    pub fn new(pod: Arc<PodIdentity>, shutdown: CancellationToken) -> Self {
        Self {
            pod,
            shutdown,
            log: ContainerLog::default(),
        }
    }

    /// Writes request lines into `log` (the container's log) instead.
    pub fn with_log(mut self, log: ContainerLog) -> Self {
        self.log = log;
        self
    }
}

/// The echo-http router. Serve it with [`proxylab_core::serve::serve_http`] so that requests carry a
/// [`ConnInfo`]; without one, address fields are `null` and `tls` is false.
pub fn echo_router(state: EchoState) -> Router {
    Router::new()
        .route("/hostname", any(hostname))
        .route("/clientip", any(client_ip))
        .route("/status/{code}", any(status))
        .route("/delay/{ms}", any(delay))
        .route("/stream", any(stream))
        .route("/redirect", any(redirect))
        .route("/ws", any(websocket))
        .fallback(echo)
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// One access-log line per request: who (as this socket saw it), to where, what, the answer, and
/// the forwarding headers a proxy may have added.
async fn log_request(State(state): State<EchoState>, req: Request, next: Next) -> Response {
    let conn = req.extensions().get::<ConnInfo>();
    let (remote, local, tls) = match conn {
        Some(c) => (c.remote.to_string(), c.local.to_string(), c.tls),
        None => ("?".to_owned(), "?".to_owned(), false),
    };
    let line = format!(
        "{remote} -> {local} \"{} {} {}\"{}{}",
        req.method(),
        req.uri().path_and_query().map_or("/", |p| p.as_str()),
        protocol_name(req.version()),
        if tls { " tls" } else { "" },
        forwarding_summary(req.headers()),
    );
    let response = next.run(req).await;
    state
        .log
        .push(format!("{line} {}", response.status().as_u16()));
    response
}

fn forwarding_summary(headers: &HeaderMap) -> String {
    let mut out = String::new();
    for name in ["x-forwarded-for", "forwarded", "via"] {
        for value in headers.get_all(name) {
            out.push_str(&format!(
                " {name}=\"{}\"",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
    }
    out
}

async fn hostname(State(state): State<EchoState>) -> String {
    state.pod.name.clone()
}

async fn client_ip(req: Request) -> Response {
    match req.extensions().get::<ConnInfo>() {
        Some(info) => info.remote.ip().to_string().into_response(),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "no connection information",
        )
            .into_response(),
    }
}

async fn echo(State(state): State<EchoState>, req: Request) -> Response {
    match echo_json(&state.pod, req).await {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(resp) => resp,
    }
}

async fn status(State(state): State<EchoState>, req: Request) -> Response {
    let code = last_segment(req.uri().path())
        .parse::<u16>()
        .ok()
        .filter(|c| (200..=599).contains(c));
    let Some(code) = code.and_then(|c| StatusCode::from_u16(c).ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            "status must be a number from 200 to 599\n",
        )
            .into_response();
    };
    if code == StatusCode::NO_CONTENT || code == StatusCode::NOT_MODIFIED {
        return code.into_response();
    }
    match echo_json(&state.pod, req).await {
        Ok(body) => json_response(code, &body),
        Err(resp) => resp,
    }
}

async fn delay(State(state): State<EchoState>, req: Request) -> Response {
    let Ok(ms) = last_segment(req.uri().path()).parse::<u64>() else {
        return (
            StatusCode::BAD_REQUEST,
            "delay must be a number of milliseconds\n",
        )
            .into_response();
    };
    let wait = Duration::from_millis(ms).min(MAX_DELAY);
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = state.shutdown.cancelled() => {
            return (StatusCode::SERVICE_UNAVAILABLE, "pod is shutting down\n").into_response();
        }
    }
    match echo_json(&state.pod, req).await {
        Ok(mut body) => {
            if let Value::Object(map) = &mut body {
                map.insert("delayMs".into(), json!(wait.as_millis() as u64));
            }
            json_response(StatusCode::OK, &body)
        }
        Err(resp) => resp,
    }
}

async fn stream(State(state): State<EchoState>, req: Request) -> Response {
    let query = parse_query(req.uri().query());
    let n = query_u64(&query, "n").unwrap_or(5).min(MAX_STREAM_LINES);
    let interval = Duration::from_millis(query_u64(&query, "interval_ms").unwrap_or(100))
        .min(MAX_STREAM_INTERVAL);
    let pod = state.pod.name.clone();
    let lines = futures_util::stream::unfold(0u64, move |i| {
        let pod = pod.clone();
        async move {
            if i >= n {
                return None;
            }
            // No pause before the first line: the client sees the response start at once.
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            Some((
                Ok::<_, Infallible>(format!("line {} of {n} from {pod}\n", i + 1)),
                i + 1,
            ))
        }
    })
    .take_until(state.shutdown.cancelled_owned());
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from_stream(lines))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn redirect(req: Request) -> Response {
    let query = parse_query(req.uri().query());
    let target = query
        .iter()
        .find(|(k, _)| k == "to")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/");
    match HeaderValue::from_str(target) {
        Ok(location) => (
            StatusCode::FOUND,
            [(header::LOCATION, location)],
            format!("redirecting to {target}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "invalid redirect target\n").into_response(),
    }
}

async fn websocket(State(state): State<EchoState>, req: Request) -> Response {
    let (mut parts, _body) = req.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade.on_upgrade(move |socket| ws_echo(socket, state.shutdown)),
        Err(rejection) => rejection.into_response(),
    }
}

async fn ws_echo(mut socket: WebSocket, shutdown: CancellationToken) {
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            message = socket.recv() => message,
        };
        let reply = match message {
            Some(Ok(Message::Text(text))) => Message::Text(text),
            Some(Ok(Message::Binary(data))) => Message::Binary(data),
            // Pings are answered by the WebSocket layer itself; pongs need nothing.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}

/// Builds the echo document for a request, consuming its body (up to [`MAX_BODY`]).
async fn echo_json(pod: &PodIdentity, req: Request) -> Result<Value, Response> {
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    let body: Bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            let too_large = err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return Err(if too_large {
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response()
            } else {
                (StatusCode::BAD_REQUEST, "could not read request body\n").into_response()
            });
        }
    };
    let conn = parts.extensions.get::<ConnInfo>();
    let host = parts
        .headers
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    Ok(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "host": host,
        "headers": headers_json(&parts.headers),
        "body": String::from_utf8_lossy(&body),
        "clientAddress": conn.map(|c| c.remote.to_string()),
        // The client a PROXY protocol header named (a load balancer's client), when one came.
        "proxyProtocol": conn.and_then(|c| c.proxied).map(|h| json!({
            "source": h.source.to_string(), "destination": h.destination.to_string(),
        })),
        "localAddress": conn.map(|c| c.local.to_string()),
        "pod": pod.name,
        "namespace": pod.namespace,
        "node": pod.node,
        "podIP": pod.ip.to_string(),
        "tls": conn.is_some_and(|c| c.tls),
        "alpn": conn.and_then(|c| c.alpn.as_deref()).map(String::from_utf8_lossy),
        "protocol": protocol_name(parts.version),
    }))
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        map.insert(name.as_str().to_owned(), Value::String(joined));
    }
    Value::Object(map)
}

/// `HTTP/1.1`, `HTTP/2`, … as the echo reports it.
pub fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "unknown",
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut text = serde_json::to_string_pretty(body).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// Splits a query string into (name, value) pairs, percent-decoding both. Malformed escapes are
/// kept as written rather than rejected: this is an echo server, not a validator.
fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn query_u64(query: &[(String, String)], name: &str) -> Option<u64> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = parse_query(Some("to=%2Fa%20b&n=3&flag&x=%zz&y=%4"));
        assert_eq!(q[0], ("to".into(), "/a b".into()));
        assert_eq!(query_u64(&q, "n"), Some(3));
        assert_eq!(q[2], ("flag".into(), "".into()));
        assert_eq!(q[3], ("x".into(), "%zz".into()));
        assert_eq!(q[4], ("y".into(), "%4".into()));
        assert!(parse_query(None).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn query_parsing_never_panics(q in ".*") {
            let pairs = parse_query(Some(&q));
            let _ = query_u64(&pairs, "n");
        }

        #[test]
        fn percent_decoding_round_trips_plain_text(s in "[a-zA-Z0-9_.~-]*") {
            proptest::prop_assert_eq!(percent_decode(&s), s);
        }
    }

    #[test]
    fn protocol_names() {
        assert_eq!(protocol_name(Version::HTTP_11), "HTTP/1.1");
        assert_eq!(protocol_name(Version::HTTP_2), "HTTP/2");
    }
}
