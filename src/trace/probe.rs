//! Sending the one request that `proxylab trace` follows.
//!
//! trace opens the first socket itself, so it knows the address the first proxy sees as its
//! client: that is where the path starts. What it sends:
//!
//! - `http://` and `https://`: one `GET` of the URL's path with `Connection: close`, read until the
//!   server closes. Over https, TLS trusts the lab kubeconfig's CA and, when the target is an
//!   apiserver or the HA balancer, presents the kubeconfig's credentials (its client certificate
//!   and token) — as `kubectl get --raw PATH` would.
//! - `tcp://`: one connection carrying `GET /hostname HTTP/1.0` (the lab's TCP pods speak HTTP
//!   and answer with their name), read until the peer closes.
//! - `udp://`: one datagram, `whoami` (the lab's UDP pods answer with their name), and the first
//!   answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

use super::target::Target;

/// How long the whole exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a UDP answer is waited for.
pub const UDP_WAIT: Duration = Duration::from_secs(2);
/// The most of an answer kept (the rest is counted, not kept).
const KEEP: usize = 64 * 1024;

/// TLS and credentials for `https://` targets, from the lab kubeconfig.
#[derive(Clone)]
pub struct Https {
    pub config: Arc<rustls::ClientConfig>,
    /// `Authorization` and the like, sent only to apiservers and the HA balancer.
    pub headers: Vec<(String, String)>,
    /// Whether the headers go to this target.
    pub send_credentials: bool,
}

/// What happened to the request.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Our socket's address: the first hop's client.
    pub local: Option<SocketAddr>,
    pub started: jiff::Timestamp,
    pub micros: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// `HTTP/1.1 200 OK` for HTTP answers.
    pub status_line: Option<String>,
    pub status: Option<u16>,
    /// The start of the answer's body (or of the datagram), as text.
    pub body: String,
    /// Why the exchange failed, if it did (refused, reset, timed out, TLS).
    pub error: Option<String>,
    /// The connection was refused: no process accepted it, so no proxy recorded anything.
    pub refused: bool,
}

/// Sends the request and reads the answer. Never fails as a whole: a failure is in `error`.
pub async fn send(target: &Target, https: Option<&Https>) -> Sent {
    let started = jiff::Timestamp::now();
    let t0 = Instant::now();
    let mut sent = Sent {
        local: None,
        started,
        micros: 0,
        bytes_sent: 0,
        bytes_received: 0,
        status_line: None,
        status: None,
        body: String::new(),
        error: None,
        refused: false,
    };
    let result = match target {
        Target::Udp(addr) => udp(*addr, &mut sent).await,
        Target::Tcp(addr) => {
            tcp_exchange(*addr, None, b"GET /hostname HTTP/1.0\r\n\r\n", &mut sent).await
        }
        Target::Http {
            tls,
            addr,
            authority,
            path,
        } => {
            let mut req = format!(
                "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: proxylab-trace\r\nAccept: */*\r\nConnection: close\r\n"
            );
            let https = if *tls {
                match https {
                    Some(h) => Some(h),
                    None => {
                        sent.error = Some("https needs the lab kubeconfig's TLS settings".into());
                        return sent;
                    }
                }
            } else {
                None
            };
            if let Some(h) = https.filter(|h| h.send_credentials) {
                for (k, v) in &h.headers {
                    req.push_str(&format!("{k}: {v}\r\n"));
                }
            }
            req.push_str("\r\n");
            tcp_exchange(*addr, https, req.as_bytes(), &mut sent).await
        }
    };
    sent.micros = t0.elapsed().as_micros() as u64;
    if let Err(e) = result {
        sent.error = Some(e);
    }
    if matches!(target, Target::Http { .. } | Target::Tcp(_)) {
        parse_http(&mut sent);
    }
    sent
}

fn describe(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

async fn tcp_exchange(
    addr: SocketAddr,
    https: Option<&Https>,
    request: &[u8],
    sent: &mut Sent,
) -> Result<(), String> {
    // Bound before connecting, so the address is known even when the connect fails: a proxy
    // that accepted and then reset the connection recorded it under this address.
    let (socket, bind) = if addr.is_ipv4() {
        (TcpSocket::new_v4(), "127.0.0.1:0")
    } else {
        (TcpSocket::new_v6(), "[::1]:0")
    };
    let socket = socket
        .and_then(|s| {
            s.bind(bind.parse().map_err(std::io::Error::other)?)?;
            Ok(s)
        })
        .map_err(|e| format!("cannot open a TCP socket: {e}"))?;
    sent.local = socket.local_addr().ok();
    let stream = match tokio::time::timeout(TIMEOUT, socket.connect(addr)).await {
        Err(_) => return Err(format!("connect to {addr} timed out")),
        Ok(Err(e)) => {
            sent.refused = e.kind() == std::io::ErrorKind::ConnectionRefused;
            return Err(format!("connect to {addr}: {}", describe(&e)));
        }
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    match https {
        None => exchange(stream, request, sent).await,
        Some(h) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let connector = tokio_rustls::TlsConnector::from(h.config.clone());
            let tls = match tokio::time::timeout(TIMEOUT, connector.connect(name, stream)).await {
                Err(_) => return Err("TLS handshake timed out".into()),
                Ok(Err(e)) => return Err(format!("TLS handshake: {}", describe(&e))),
                Ok(Ok(s)) => s,
            };
            exchange(tls, request, sent).await
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &[u8],
    sent: &mut Sent,
) -> Result<(), String> {
    let io = async {
        s.write_all(request).await?;
        s.flush().await?;
        sent.bytes_sent = request.len() as u64;
        let mut kept = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match s.read(&mut buf).await {
                Ok(n) => n,
                // Some servers close TLS without close_notify; what was read is the answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => {
                    sent.body = String::from_utf8_lossy(&kept).into_owned();
                    return Err(e);
                }
            };
            if n == 0 {
                break;
            }
            sent.bytes_received += n as u64;
            let room = KEEP.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        sent.body = String::from_utf8_lossy(&kept).into_owned();
        Ok(())
    };
    match tokio::time::timeout(TIMEOUT, io).await {
        Err(_) => Err(format!("no complete answer within {} s", TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(describe(&e)),
        Ok(Ok(())) => Ok(()),
    }
}

async fn udp(addr: SocketAddr, sent: &mut Sent) -> Result<(), String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "127.0.0.1:0".parse().unwrap_or(addr)
    } else {
        "[::1]:0".parse().unwrap_or(addr)
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    // Connected, so that an ICMP port unreachable (nothing listens) comes back as an error
    // instead of silence; the forwarder answers from the address it was sent to.
    sock.connect(addr)
        .await
        .map_err(|e| format!("cannot address {addr}: {e}"))?;
    sent.local = sock.local_addr().ok();
    let msg = b"whoami";
    sock.send(msg)
        .await
        .map_err(|e| format!("send to {addr}: {}", describe(&e)))?;
    sent.bytes_sent = msg.len() as u64;
    let mut buf = vec![0u8; 64 * 1024];
    match tokio::time::timeout(UDP_WAIT, sock.recv_from(&mut buf)).await {
        Err(_) => Err(format!("no answer within {} s", UDP_WAIT.as_secs())),
        // An ICMP port unreachable (nothing listens) shows as a refused receive.
        Ok(Err(e)) => {
            sent.refused = e.kind() == std::io::ErrorKind::ConnectionRefused;
            Err(describe(&e))
        }
        Ok(Ok((n, _))) => {
            sent.bytes_received = n as u64;
            sent.body = String::from_utf8_lossy(&buf[..n]).into_owned();
            Ok(())
        }
    }
}

/// Splits an HTTP answer read whole into its status and body (chunks decoded).
fn parse_http(sent: &mut Sent) {
    let text = std::mem::take(&mut sent.body);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        sent.body = text;
        return;
    };
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default().to_owned();
    if !status_line.starts_with("HTTP/") {
        sent.body = text;
        return;
    }
    sent.status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok());
    sent.status_line = Some(status_line);
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    sent.body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            out.push_str(rest.get(..n.min(rest.len())).unwrap_or_default());
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent_with(body: &str) -> Sent {
        Sent {
            local: None,
            started: jiff::Timestamp::now(),
            micros: 0,
            bytes_sent: 0,
            bytes_received: 0,
            status_line: None,
            status: None,
            body: body.into(),
            error: None,
            refused: false,
        }
    }

    #[test]
    fn http_answers_are_split_and_chunks_decoded() {
        let mut s = sent_with("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nweb-1\n");
        parse_http(&mut s);
        assert_eq!(s.status, Some(200));
        assert_eq!(s.status_line.as_deref(), Some("HTTP/1.1 200 OK"));
        assert_eq!(s.body, "web-1\n");

        let mut s = sent_with(
            "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        parse_http(&mut s);
        assert_eq!(s.status, Some(503));
        assert_eq!(s.body, "abcde");

        let mut s = sent_with("not http at all");
        parse_http(&mut s);
        assert_eq!((s.status, s.body.as_str()), (None, "not http at all"));
    }
}
