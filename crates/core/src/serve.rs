//! The one accept loop every HTTP(S) listener in proxylab runs.
//!
//! Why not `axum::serve`? Three things it does not do that every Kubernetes-facing server needs:
//!
//! 1. **TLS with client certificates.** The handshake runs in the connection's own task (never in the
//!    accept loop, so one slow handshake cannot stall others), and the verified client certificate is
//!    turned into a [`PeerIdentity`] that handlers can authenticate with.
//! 2. **The connection's facts on every request.** [`ConnInfo`] (remote and local address, TLS, peer
//!    identity, ALPN) is inserted into each request's extensions — the apiserver authenticates on it and
//!    every proxy writes its hop record from it. axum's `ConnectInfo<SocketAddr>` is inserted too.
//! 3. **Bounded behaviour under bad clients and shutdown.** A handshake and the request headers must
//!    arrive within a deadline (slow-loris clients are dropped), header sizes are capped, and on
//!    shutdown the listener closes at once while established connections get a bounded drain.
//!
//! HTTP/1.1 and HTTP/2 are both served (ALPN decides under TLS; the preface decides in clear text), with
//! HTTP/1.1 upgrades (WebSocket, SPDY) supported.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::tls::PeerIdentity;

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// The verified client certificate's identity, when one was presented.
    pub peer: Option<PeerIdentity>,
    /// The ALPN protocol agreed under TLS (`h2`, `http/1.1`).
    pub alpn: Option<Vec<u8>>,
}

/// Limits and deadlines for a listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long a client may take to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long a client may take to send a request's headers (HTTP/1.1).
    pub header_read_timeout: Duration,
    /// The largest request head accepted, in bytes (HTTP/1.1 read buffer; HTTP/2 header list).
    pub max_header_bytes: usize,
    /// How long established connections may run on after shutdown starts.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            // kube-apiserver and Go's net/http default to 1 MiB of headers.
            max_header_bytes: 1 << 20,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains. See the module docs.
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_http_with(listener, tls, router, shutdown, ServeOptions::default()).await
}

/// [`serve_http`] with explicit limits.
pub async fn serve_http_with(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: CancellationToken,
    options: ServeOptions,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let tracker = TaskTracker::new();
    // Connections get their own token so that the drain deadline can cut them without touching the
    // caller's token.
    let conns_stop = CancellationToken::new();
    let options = Arc::new(options);

    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning; the listener stays up.
                    warn!(%local, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let acceptor = acceptor.clone();
        let options = options.clone();
        let stop = conns_stop.clone();
        let drain = shutdown.clone();
        tracker.spawn(async move {
            serve_connection(
                stream, remote, local, acceptor, router, &options, drain, stop,
            )
            .await;
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(options.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        debug!(%local, "drain deadline reached; closing remaining connections");
        conns_stop.cancel();
        tracker.wait().await;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    options: &ServeOptions,
    drain: CancellationToken,
    stop: CancellationToken,
) {
    match acceptor {
        None => {
            let info = ConnInfo {
                remote,
                local,
                tls: false,
                peer: None,
                alpn: None,
            };
            run_http(TokioIo::new(stream), info, router, options, drain, stop).await;
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(options.handshake_timeout, acceptor.accept(stream)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    debug!(%remote, %local, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%remote, %local, "TLS handshake timed out");
                    return;
                }
            };
            let (_, session) = tls.get_ref();
            let peer = session
                .peer_certificates()
                .and_then(PeerIdentity::from_chain);
            let info = ConnInfo {
                remote,
                local,
                tls: true,
                peer,
                alpn: session.alpn_protocol().map(<[u8]>::to_vec),
            };
            run_http(TokioIo::new(tls), info, router, options, drain, stop).await;
        }
    }
}

async fn run_http<I>(
    io: TokioIo<I>,
    info: ConnInfo,
    router: Router,
    options: &ServeOptions,
    drain: CancellationToken,
    stop: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let remote = info.remote;
    let info = Arc::new(info);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnInfo::clone(&info));
        req.extensions_mut().insert(ConnectInfo(info.remote));
        let router = router.clone();
        async move {
            let resp = router
                .oneshot(req.map(axum::body::Body::new))
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            Ok::<_, Infallible>(resp)
        }
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(err) = res {
                    debug!(%remote, error = %err, "connection ended with an error");
                }
                return;
            }
            _ = drain.cancelled(), if !draining => {
                // Finish in-flight requests, accept no new ones on this connection.
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn who(axum::Extension(info): axum::Extension<ConnInfo>) -> String {
        format!("{} tls={}", info.remote.ip(), info.tls)
    }

    #[tokio::test]
    async fn plain_http_gets_conn_info_and_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let app = Router::new().route("/", get(who));
        let server = tokio::spawn(serve_http(listener, None, app, token.clone()));

        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("127.0.0.1 tls=false"), "{out}");

        token.cancel();
        server.await.unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn oversized_headers_are_refused_without_harm() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let app = Router::new().route("/", get(|| async { "ok" }));
        let opts = ServeOptions {
            max_header_bytes: 8192,
            ..ServeOptions::default()
        };
        tokio::spawn(serve_http_with(listener, None, app, token.clone(), opts));
        let mut s = TcpStream::connect(addr).await.unwrap();
        let big = "a".repeat(64 * 1024);
        let req = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
        let _ = s.write_all(req.as_bytes()).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 431"),
            "{text}"
        );
        // The server still answers others.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        token.cancel();
    }
}
