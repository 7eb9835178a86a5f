//! One accept loop for every HTTP server in this crate (the echo workloads and the kubelet API).
//!
//! Each accepted connection gets its own task: the TLS handshake (when a rustls configuration is
//! given) runs there, never in the accept loop, so one slow client cannot stall the others. The
//! connection is then served by hyper's "auto" builder, which speaks HTTP/1.1 and HTTP/2 (chosen by
//! ALPN over TLS, by the connection preface in clear text) and supports upgrades (WebSocket).
//! The facts of the connection ([`ConnInfo`]) are put into every request's extensions, because an
//! echo server must report who connected, where, and how.
//!
//! This mirrors `proxylab_core::serve::serve_http`; it lives here until core's version lands, and has
//! the same shape so that switching is a one-line change per caller.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may run after shutdown was requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server knows about the connection a request arrived on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address as seen by this socket (after any proxy in between: the proxy's address).
    pub remote: SocketAddr,
    /// The local address the client connected to.
    pub local: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The ALPN protocol negotiated over TLS, if any (`h2` or `http/1.1`).
    pub alpn: Option<String>,
    /// Whether the client presented a certificate that the server's client verifier accepted.
    /// (rustls only completes the handshake when a presented certificate verifies.)
    pub client_cert: bool,
}

/// Serves `router` on every connection accepted from `listener` until `shutdown` is cancelled, then
/// stops accepting, asks open connections to finish (HTTP/1 closes after the current response,
/// HTTP/2 sends GOAWAY) and waits up to a bound for them.
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let tracker = TaskTracker::new();
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends are transient: back off a little instead of spinning.
                    tracing::warn!(%local, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            match acceptor {
                None => {
                    let info = ConnInfo { remote, local, tls: false, alpn: None, client_cert: false };
                    serve_conn(TokioIo::new(stream), info, router, shutdown).await;
                }
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    let tls_stream = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        result = handshake => match result {
                            Ok(Ok(s)) => s,
                            Ok(Err(err)) => {
                                tracing::debug!(%remote, %local, error = %err, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%remote, %local, "TLS handshake timed out");
                                return;
                            }
                        },
                    };
                    let (_, session) = tls_stream.get_ref();
                    let info = ConnInfo {
                        remote,
                        local,
                        tls: true,
                        alpn: session.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
                        client_cert: session.peer_certificates().is_some_and(|c| !c.is_empty()),
                    };
                    serve_conn(TokioIo::new(tls_stream), info, router, shutdown).await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn serve_conn<I>(io: TokioIo<I>, info: ConnInfo, router: Router, shutdown: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let remote = info.remote;
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        router.clone().oneshot(req)
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%remote, error = %err, "connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn).await;
        }
    }
}
