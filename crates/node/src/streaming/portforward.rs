//! `portForward`: TCP connections to a pod's ports, carried over SPDY or WebSocket.
//!
//! - **SPDY** (`portforward.k8s.io`, also tunnelled in WebSocket as `SPDY/3.1+portforward.k8s.io`):
//!   for every local connection the client opens an *error* and a *data* stream with the same
//!   `requestID` and the pod `port`. When both have arrived the kubelet dials the pod's port and
//!   copies both ways with half-close kept: the client's `FIN` on data half-closes the pod
//!   connection, the pod's EOF becomes our `FIN`. A failure is written as text on the error stream
//!   (`error forwarding port 80 to pod web-1, uid …: …`). A stream whose partner does not arrive
//!   within [`STREAM_CREATION_TIMEOUT`] is reset.
//! - **WebSocket** (`v4.channel.k8s.io`, `channel.k8s.io`, base64 variants, `?port=80&port=443`):
//!   channel `2i` is the data and `2i+1` the error of the i-th port; both start with the port
//!   number as two little-endian bytes; one connection per port.
//!
//! The kubelet dials inside the pod's network namespace; here pods are addresses on the host, so
//! it dials the pod IP, from the node's address when that is local (the echo pods' logs then show
//! the node as the client, as a real pod sees `127.0.0.1`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::Response;
use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use super::remotecommand::websocket_accept;
use super::ws::{self, Codec};
use super::{
    HEADER_PROTOCOL_VERSION, PORT_FORWARD_PROTOCOL, SPDY_UPGRADE, TUNNELED_PORT_FORWARD_PROTOCOL,
    Upgrade, header_values, negotiate, negotiation_failed, query_map, switching_protocols,
    text_error, upgrade_kind,
};
use crate::spdy::{self, SpdyStream};

/// How long one stream of a pair may wait for the other.
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a dial to the pod may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// WebSocket port-forward subprotocols ("" is a client that names none).
pub const WEBSOCKET_PROTOCOLS: &[&str] = &[
    TUNNELED_PORT_FORWARD_PROTOCOL,
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
    PORT_FORWARD_PROTOCOL,
];

/// The pod a port-forward reaches.
#[derive(Clone, Debug)]
pub struct Target {
    /// The pod's name (for error messages).
    pub pod: String,
    /// The pod's uid (for error messages).
    pub uid: String,
    /// Where its ports listen.
    pub pod_ip: IpAddr,
    /// The address to dial from (the node's), if any.
    pub source_ip: Option<IpAddr>,
}

impl Target {
    async fn dial(&self, port: u16) -> std::io::Result<TcpStream> {
        let addr = SocketAddr::new(self.pod_ip, port);
        let connect = async {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if let Some(source) = self.source_ip
                && source.is_ipv4() == addr.is_ipv4()
            {
                // Best effort: an address that is not local just means the OS picks one.
                let _ = socket.bind(SocketAddr::new(source, 0));
            }
            socket.connect(addr).await
        };
        match tokio::time::timeout(DIAL_TIMEOUT, connect).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("dial {addr}: timed out"),
            )),
        }
    }

    fn error_message(&self, port: &str, err: &dyn std::fmt::Display) -> String {
        format!(
            "error forwarding port {port} to pod {}, uid {}: {err}",
            self.pod, self.uid
        )
    }
}

/// Answers a port-forward upgrade request and serves the session in a task of its own.
pub fn serve(mut req: Request, target: Target, shutdown: CancellationToken) -> Response {
    match upgrade_kind(req.headers()) {
        Some(Upgrade::Spdy) => {
            let client = header_values(req.headers(), HEADER_PROTOCOL_VERSION);
            let Some(protocol) = negotiate(&client, &[PORT_FORWARD_PROTOCOL]) else {
                if client.is_empty() {
                    return text_error(
                        StatusCode::BAD_REQUEST,
                        "unable to upgrade: X-Stream-Protocol-Version is required",
                    );
                }
                return negotiation_failed(&client, &[PORT_FORWARD_PROTOCOL]);
            };
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    serve_spdy(TokioIo::new(upgraded), target, shutdown).await;
                }
            });
            switching_protocols(&[
                ("connection", "Upgrade".into()),
                ("upgrade", SPDY_UPGRADE.into()),
                (HEADER_PROTOCOL_VERSION, protocol.into()),
            ])
        }
        Some(Upgrade::WebSocket) => {
            let client = header_values(req.headers(), "sec-websocket-protocol");
            let protocol = if client.is_empty() {
                ""
            } else {
                match negotiate(&client, WEBSOCKET_PROTOCOLS) {
                    Some(p) => p,
                    None => {
                        return text_error(
                            StatusCode::FORBIDDEN,
                            &format!(
                                "requested protocol(s) are not supported: {client:?}; supports {WEBSOCKET_PROTOCOLS:?}"
                            ),
                        );
                    }
                }
            };
            let ports = if protocol == TUNNELED_PORT_FORWARD_PROTOCOL {
                Vec::new()
            } else {
                match websocket_ports(req.uri().query()) {
                    Ok(ports) => ports,
                    Err(message) => return text_error(StatusCode::BAD_REQUEST, &message),
                }
            };
            let accept = match websocket_accept(&req) {
                Ok(accept) => accept,
                Err(response) => return *response,
            };
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let io = TokioIo::new(upgraded);
                if protocol == TUNNELED_PORT_FORWARD_PROTOCOL {
                    let mut conn = ws::start(io, Codec::Raw, &[0], false, shutdown.clone()).await;
                    let Some(reader) = conn.readers.remove(&0) else {
                        return;
                    };
                    let bytes = tokio::io::join(reader, conn.writer(0));
                    serve_spdy(bytes, target, shutdown).await;
                    conn.close().await;
                } else {
                    let codec = if protocol.contains("base64") {
                        Codec::Base64
                    } else {
                        Codec::Binary
                    };
                    serve_websocket_channels(io, codec, ports, target, shutdown).await;
                }
            });
            let mut headers = vec![
                ("connection", "Upgrade".to_owned()),
                ("upgrade", "websocket".to_owned()),
                ("sec-websocket-accept", accept),
            ];
            if !protocol.is_empty() {
                headers.push(("sec-websocket-protocol", protocol.to_owned()));
            }
            switching_protocols(&headers)
        }
        None => text_error(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request (SPDY/3.1 or websocket)",
        ),
    }
}

/// The `port` query parameters of a WebSocket port-forward (the kubelet's `NewV4Options`).
pub fn websocket_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let query = query_map(query);
    let mut ports = Vec::new();
    // `port` is the kubelet's name; `ports` is the apiserver's (PodPortForwardOptions), accepted too.
    for value in query
        .get("port")
        .into_iter()
        .chain(query.get("ports"))
        .flatten()
    {
        for part in value.split(',') {
            let port: u16 = part
                .trim()
                .parse()
                .map_err(|_| format!("unable to parse {part:?} as a port"))?;
            if port == 0 {
                return Err(format!("port {part:?} must be > 0"));
            }
            ports.push(port);
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(ports)
}

struct Pending {
    data: Option<SpdyStream>,
    error: Option<SpdyStream>,
    since: Instant,
}

/// A SPDY port-forward session on any byte stream (an upgraded connection or a WebSocket tunnel).
pub async fn serve_spdy<IO>(io: IO, target: Target, shutdown: CancellationToken)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut session = spdy::start(io, shutdown.clone());
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    let forwards = tokio_util::task::TaskTracker::new();
    loop {
        let stream = tokio::select! {
            s = session.incoming.recv() => s,
            _ = sweep.tick() => {
                let expired: Vec<String> = pending
                    .iter()
                    .filter(|(_, p)| p.since.elapsed() > STREAM_CREATION_TIMEOUT)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in expired {
                    if let Some(p) = pending.remove(&id) {
                        tracing::debug!(request_id = %id, "timed out waiting for the other stream of a port-forward pair");
                        for s in [p.data, p.error].into_iter().flatten() {
                            s.reset().await;
                        }
                    }
                }
                continue;
            }
        };
        let Some(stream) = stream else { break };
        let Some(request_id) = request_id(&stream) else {
            stream.reset().await;
            continue;
        };
        let entry = pending
            .entry(request_id.clone())
            .or_insert_with(|| Pending {
                data: None,
                error: None,
                since: Instant::now(),
            });
        match stream.headers.get("streamtype") {
            Some("data") if entry.data.is_none() => entry.data = Some(stream),
            Some("error") if entry.error.is_none() => entry.error = Some(stream),
            _ => {
                // An unknown type, or a second stream of one kind for this request.
                stream.reset().await;
                continue;
            }
        }
        if entry.data.is_some()
            && entry.error.is_some()
            && let Some(Pending {
                data: Some(data),
                error: Some(error),
                ..
            }) = pending.remove(&request_id)
        {
            forwards.spawn(forward_pair(data, error, target.clone()));
        }
    }
    forwards.close();
    session.handle.close().await;
    let _ = session.task.await;
}

/// The stream's `requestID`; old clients sent none, and the kubelet derived it from the ids of the
/// pair (error then data, two apart).
fn request_id(stream: &SpdyStream) -> Option<String> {
    if let Some(id) = stream.headers.get("requestid") {
        return Some(id.to_owned());
    }
    match stream.headers.get("streamtype")? {
        "error" => Some(stream.id.to_string()),
        "data" => Some(stream.id.checked_sub(2)?.to_string()),
        _ => None,
    }
}

async fn forward_pair(data: SpdyStream, mut error: SpdyStream, target: Target) {
    let port_header = data.headers.get("port").unwrap_or("").to_owned();
    let port = match port_header.parse::<u16>() {
        Ok(port) if port > 0 => port,
        _ => {
            let message = target.error_message(&port_header, &"invalid port");
            let _ = error.writer.write_all(message.as_bytes()).await;
            let _ = error.writer.shutdown().await;
            data.reset().await;
            return;
        }
    };
    let conn = match target.dial(port).await {
        Ok(conn) => conn,
        Err(err) => {
            let message = target.error_message(&port_header, &err);
            tracing::debug!(%message, "port-forward dial failed");
            let _ = error.writer.write_all(message.as_bytes()).await;
            let _ = error.writer.shutdown().await;
            let mut data = data;
            let _ = data.writer.shutdown().await;
            return;
        }
    };
    let SpdyStream {
        reader: mut from_client,
        writer: mut to_client,
        ..
    } = data;
    if let Err(err) = relay(conn, &mut from_client, &mut to_client).await {
        let message = target.error_message(&port_header, &err);
        let _ = error.writer.write_all(message.as_bytes()).await;
    }
    let _ = error.writer.shutdown().await;
}

/// Copies both ways with half-close: each side's EOF is passed on as a write shutdown.
async fn relay<R, W>(conn: TcpStream, from_client: &mut R, to_client: &mut W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut pod_read, mut pod_write) = conn.into_split();
    let upstream = async {
        tokio::io::copy(from_client, &mut pod_write).await?;
        pod_write.shutdown().await
    };
    let downstream = async {
        let copied = tokio::io::copy(&mut pod_read, to_client).await;
        let _ = to_client.shutdown().await;
        copied.map(|_| ())
    };
    let (up, down) = tokio::join!(upstream, downstream);
    // The client going away first is ordinary (kubectl closes its data stream when the local
    // connection ends); only the pod side's failure is reported.
    let _ = up;
    down
}

async fn serve_websocket_channels<IO>(
    io: IO,
    codec: Codec,
    ports: Vec<u16>,
    target: Target,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let readable: Vec<u8> = (0..ports.len()).map(|i| (2 * i) as u8).collect();
    let mut conn = ws::start(io, codec, &readable, false, shutdown).await;
    let mut tasks = Vec::new();
    for (i, port) in ports.into_iter().enumerate() {
        let data_channel = (2 * i) as u8;
        let error_channel = data_channel + 1;
        let mut to_client = conn.writer(data_channel);
        let mut error = conn.writer(error_channel);
        let prefix = port.to_le_bytes();
        let _ = to_client.write_all(&prefix).await;
        let _ = error.write_all(&prefix).await;
        let Some(mut from_client) = conn.readers.remove(&data_channel) else {
            continue;
        };
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let result = match target.dial(port).await {
                Ok(stream) => relay(stream, &mut from_client, &mut to_client).await,
                Err(err) => Err(err),
            };
            if let Err(err) = result {
                let message = target.error_message(&port.to_string(), &err);
                let _ = error.write_all(message.as_bytes()).await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_port_list() {
        assert_eq!(websocket_ports(Some("port=80&port=443")), Ok(vec![80, 443]));
        assert_eq!(websocket_ports(Some("port=80,8080")), Ok(vec![80, 8080]));
        assert_eq!(websocket_ports(Some("ports=8443")), Ok(vec![8443]));
        assert!(websocket_ports(Some("port=0")).is_err());
        assert!(websocket_ports(Some("port=http")).is_err());
        assert!(websocket_ports(None).is_err());
    }
}
