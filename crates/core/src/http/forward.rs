//! [`forward`]: one request through the proxy, upgrades included.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::error::ProxyError;
use super::headers::{
    append_forwarded_for, append_via, connection_has, remove_hop_by_hop, set_forwarded_host_proto,
};
use super::meter::{Meter, TunnelEnd};

/// How requests reach a backend. Implementations must never follow redirects.
pub trait Transport: Send + Sync + 'static {
    /// Sends an ordinary request, whose URI is absolute (`https://host:port/path?query`), over a
    /// pooled connection. HTTP/2 may be used when the backend offers it.
    fn send(
        &self,
        req: Request<Body>,
    ) -> impl Future<Output = Result<Response<Body>, ProxyError>> + Send;

    /// Sends an upgrade request (absolute URI, `Connection: Upgrade` and `Upgrade` set) over a fresh
    /// HTTP/1.1 connection used for nothing else. The response must keep hyper's `OnUpgrade` in its
    /// extensions, and the connection must close once the response is dropped unless upgraded.
    fn send_upgrade(
        &self,
        req: Request<Body>,
    ) -> impl Future<Output = Result<Response<Body>, ProxyError>> + Send;
}

/// The per-request facts [`forward`] needs besides the request itself.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Where to send it: an absolute URI (scheme, authority, path and query) already mapped from the
    /// downstream request by the caller (prefix stripped, canonical path, base path added).
    pub target: Uri,
    /// The downstream client, appended to `X-Forwarded-For`. `None` for a unix-socket client.
    pub client: Option<SocketAddr>,
    /// The downstream scheme (`http` or `https`), for `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// This proxy's name in `Via` (e.g. `auth-proxy`).
    pub via: Arc<str>,
    /// Tracks upgraded tunnels so that shutdown can wait for (or cut) them.
    pub tunnels: Option<TaskTracker>,
    /// Cancelled at shutdown: open tunnels are closed.
    pub shutdown: Option<CancellationToken>,
    /// Counts an upgraded tunnel's bytes (into `up`/`down`) and is told how it ended; see
    /// [`PendingHop`](super::PendingHop).
    pub meter: Option<Arc<Meter>>,
}

/// kubectl's test (`httpstream.IsUpgradeRequest`): a `Connection` header containing `upgrade`.
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    connection_has(req.headers(), "upgrade")
}

/// Forwards `req` to `fwd.target` through `transport`; see the [module docs](super) for the rules.
pub async fn forward<T: Transport>(
    transport: &T,
    mut req: Request<Body>,
    fwd: &Forward,
) -> Result<Response<Body>, ProxyError> {
    let upgrade = is_upgrade_request(&req);
    let upgrade_proto = req.headers().get(header::UPGRADE).cloned();
    // Take the downstream half of an upgrade before the request is consumed; it resolves only
    // after our 101 has been written.
    let downstream_upgrade: Option<OnUpgrade> = if upgrade {
        req.extensions_mut().remove::<OnUpgrade>()
    } else {
        None
    };
    let received = req.version();
    let original_host = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });

    let headers = req.headers_mut();
    remove_hop_by_hop(headers);
    // The client sets Host from the target URI (HTTP/1.1) or sends :authority (HTTP/2).
    headers.remove(header::HOST);
    if let Some(client) = fwd.client {
        append_forwarded_for(headers, client.ip());
    }
    set_forwarded_host_proto(headers, original_host.as_ref(), fwd.proto);
    append_via(headers, received, &fwd.via);
    *req.uri_mut() = fwd.target.clone();
    // The upstream version is the transport's business (ALPN); hyper's HTTP/1 client refuses a
    // request still marked HTTP/2.
    *req.version_mut() = Version::HTTP_11;

    if !upgrade {
        let mut resp = transport.send(req).await?;
        remove_hop_by_hop(resp.headers_mut());
        let version = resp.version();
        append_via(resp.headers_mut(), version, &fwd.via);
        return Ok(resp);
    }

    let Some(protocol) = upgrade_proto else {
        return Err(ProxyError::Downstream(
            "Connection: Upgrade without an Upgrade header".into(),
        ));
    };
    let Some(downstream_upgrade) = downstream_upgrade else {
        return Err(ProxyError::Downstream(
            "this connection cannot be upgraded (HTTP/2 or HTTP/1.0)".into(),
        ));
    };
    req.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    req.headers_mut().insert(header::UPGRADE, protocol);

    let mut resp = transport.send_upgrade(req).await?;
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let answer_proto = resp.headers().get(header::UPGRADE).cloned();
        let (mut parts, _) = resp.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Some(p) = answer_proto {
            parts.headers.insert(header::UPGRADE, p);
        }
        append_via(&mut parts.headers, Version::HTTP_11, &fwd.via);
        // `hyper::upgrade::on` took the upstream's upgrade handle out; what is left (the
        // connector's facts about the connection, e.g. its addresses) goes on with the 101.
        parts.extensions.remove::<OnUpgrade>();
        let tunnel = splice(
            downstream_upgrade,
            upstream_upgrade,
            fwd.shutdown.clone(),
            fwd.meter.clone(),
        );
        match &fwd.tunnels {
            Some(t) => {
                t.spawn(tunnel);
            }
            None => {
                tokio::spawn(tunnel);
            }
        }
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    if status.as_u16() >= 400 {
        // CVE-2018-1002105: relay the refusal, then close both sides. The upstream connection
        // closes when this response (its only one) is done; the downstream one because of
        // `Connection: close`. Nothing the client sends afterwards reaches the backend.
        drop(downstream_upgrade);
        remove_hop_by_hop(resp.headers_mut());
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        append_via(resp.headers_mut(), Version::HTTP_11, &fwd.via);
        return Ok(resp);
    }
    // CVE-2020-8559: a 2xx/3xx (or another 1xx) to an upgrade is neither a tunnel nor an error we
    // can relay safely; a 3xx in particular must not send the client elsewhere.
    Err(ProxyError::InvalidUpgradeResponse {
        status: status.as_u16(),
    })
}

const TUNNEL_BUFFER: usize = 64 * 1024;

/// Joins the two upgraded connections. When either direction ends (EOF or error), both
/// connections are shut down and dropped — kubectl's rule, which also ends idle sessions whose
/// other side is gone.
async fn splice(
    downstream: OnUpgrade,
    upstream: OnUpgrade,
    shutdown: Option<CancellationToken>,
    meter: Option<Arc<Meter>>,
) {
    let meter = meter.unwrap_or_default();
    let how = run_tunnel(downstream, upstream, shutdown, &meter).await;
    meter.close_tunnel(how);
}

async fn run_tunnel(
    downstream: OnUpgrade,
    upstream: OnUpgrade,
    shutdown: Option<CancellationToken>,
    meter: &Meter,
) -> TunnelEnd {
    let (down, up) = tokio::join!(downstream, upstream);
    let (down, up) = match (down, up) {
        (Ok(d), Ok(u)) => (TokioIo::new(d), TokioIo::new(u)),
        (d, u) => {
            debug!(
                downstream_ok = d.is_ok(),
                upstream_ok = u.is_ok(),
                "upgrade did not complete"
            );
            return TunnelEnd::Failed;
        }
    };
    let (down_r, mut down_w) = tokio::io::split(down);
    let (up_r, mut up_w) = tokio::io::split(up);
    let shutdown = shutdown.unwrap_or_default();
    let how = {
        let to_up = copy_counted(down_r, &mut up_w, &meter.up);
        let to_down = copy_counted(up_r, &mut down_w, &meter.down);
        tokio::pin!(to_up, to_down);
        // Whichever direction ends first says how the tunnel ended: reading the client or
        // writing the upstream (to_up), reading the upstream or writing the client (to_down).
        tokio::select! {
            end = &mut to_up => match end {
                Copied::Eof => TunnelEnd::Closed,
                Copied::ReadFailed => TunnelEnd::ClientCut,
                Copied::WriteFailed => TunnelEnd::UpstreamCut,
            },
            end = &mut to_down => match end {
                Copied::Eof => TunnelEnd::Closed,
                Copied::ReadFailed => TunnelEnd::UpstreamCut,
                Copied::WriteFailed => TunnelEnd::ClientCut,
            },
            _ = shutdown.cancelled() => TunnelEnd::Shutdown,
        }
    };
    let _ = up_w.shutdown().await;
    let _ = down_w.shutdown().await;
    how
}

/// How one direction of a tunnel ended.
enum Copied {
    Eof,
    ReadFailed,
    WriteFailed,
}

async fn copy_counted<R, W>(reader: R, writer: &mut W, counter: &AtomicU64) -> Copied
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt as _};
    let mut reader = BufReader::with_capacity(TUNNEL_BUFFER, reader);
    loop {
        let n = match reader.fill_buf().await {
            Ok([]) => return Copied::Eof,
            // A TLS peer that closes without close_notify: an ending, not a failure.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Copied::Eof,
            Err(_) => return Copied::ReadFailed,
            Ok(buf) => {
                if writer.write_all(buf).await.is_err() {
                    return Copied::WriteFailed;
                }
                buf.len()
            }
        };
        reader.consume(n);
        counter.fetch_add(n as u64, Ordering::Relaxed);
        if writer.flush().await.is_err() {
            return Copied::WriteFailed;
        }
    }
}
