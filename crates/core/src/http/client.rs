//! [`HyperTransport`]: a [`Transport`] over hyper-util's pooled client plus a dedicated HTTP/1.1
//! connection per upgrade.
//!
//! Two connectors because the two kinds of request want different connections: ordinary requests
//! share a pool and may multiplex over HTTP/2 (the TLS config offers ALPN `h2, http/1.1`); an
//! upgrade needs a connection of its own that speaks HTTP/1.1 (ALPN `http/1.1` only), is never
//! returned to a pool, and is closed when the upgrade fails.

use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, Connection};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::{Service, ServiceExt};

use super::error::{BoxError, ProxyError, connect_error, error_chain};
use super::forward::Transport;

/// hyper-util's pooled client for ordinary requests, and a connector for upgrades.
///
/// `C` is the pooled connector (usually `hyper_rustls::HttpsConnector<…>` with ALPN h2+http/1.1);
/// `U` dials one connection per upgrade (the same kind of connector with ALPN http/1.1 only).
#[derive(Debug, Clone)]
pub struct HyperTransport<C, U> {
    client: Client<C, Body>,
    // Kept to build another, independent pool (see `with_own_pool`).
    pooled: C,
    upgrade_connector: U,
    connect_timeout: Duration,
}

impl<C, U> HyperTransport<C, U>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// A transport with a pool that keeps idle connections for 90 s (Go's default), and a 30 s
    /// deadline for dialling an upgrade connection (kubectl's).
    pub fn new(pooled: C, upgrade_connector: U) -> Self {
        Self {
            client: Self::pool(pooled.clone()),
            pooled,
            upgrade_connector,
            connect_timeout: Duration::from_secs(30),
        }
    }

    fn pool(pooled: C) -> Client<C, Body> {
        Client::builder(TokioExecutor::new())
            // Without a timer the pool never evicts idle connections.
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            // Keep HTTP/2 connections to the apiserver alive through idle watches.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_while_idle(true)
            // Go's HTTP/2 transport (kubectl's) defaults: 4 MiB per stream, 1 GiB per connection.
            // Many requests share one connection, so the connection window must never be what
            // stalls them: with a small one, a single slow watch client that stops reading would
            // hold the window and block every other stream. hyper's adaptive window starts at
            // 64 KiB and grows only by BDP pings, which a burst of 12 KB lists never waits for.
            .http2_initial_stream_window_size(4 << 20)
            .http2_initial_connection_window_size(1 << 30)
            .build(pooled)
    }

    /// The same transport with a pool of its own, sharing no connection with `self`.
    ///
    /// For thread-per-core serving: a pooled connection's task runs on the runtime that dialled
    /// it, so a pool shared by several single-threaded runtimes would hand each request to another
    /// thread and back (a wake-up across cores per request, plus contention on the pool's lock).
    /// One pool per runtime keeps a request and its upstream connection on one thread.
    pub fn with_own_pool(&self) -> Self
    where
        U: Clone,
    {
        Self {
            client: Self::pool(self.pooled.clone()),
            pooled: self.pooled.clone(),
            upgrade_connector: self.upgrade_connector.clone(),
            connect_timeout: self.connect_timeout,
        }
    }

    /// Sets the deadline for dialling an upgrade connection.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

fn target_of(uri: &Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(s), Some(a)) => format!("{s}://{a}"),
        (_, Some(a)) => a.to_string(),
        _ => uri.to_string(),
    }
}

impl<C, U> Transport for HyperTransport<C, U>
where
    C: Connect + Clone + Send + Sync + 'static,
    U: Service<Uri> + Clone + Send + Sync + 'static,
    U::Response: hyper::rt::Read + hyper::rt::Write + Connection + Send + Unpin + 'static,
    U::Future: Send,
    U::Error: Into<BoxError>,
{
    async fn send(&self, req: Request<Body>) -> Result<Response<Body>, ProxyError> {
        let target = target_of(req.uri());
        match self.client.request(req).await {
            Ok(resp) => Ok(resp.map(Body::new)),
            Err(err) if err.is_connect() => Err(connect_error(target, &err)),
            Err(err) => Err(ProxyError::UpstreamProtocol {
                target,
                message: error_chain(&err),
            }),
        }
    }

    async fn send_upgrade(&self, mut req: Request<Body>) -> Result<Response<Body>, ProxyError> {
        let uri = req.uri().clone();
        let target = target_of(&uri);
        let authority = uri
            .authority()
            .ok_or_else(|| ProxyError::Internal(format!("upgrade target {uri} has no host")))?;
        let dial = self.upgrade_connector.clone().oneshot(uri.clone());
        let io = match tokio::time::timeout(self.connect_timeout, dial).await {
            Err(_) => return Err(ProxyError::UpstreamTimeout { target }),
            Ok(Err(e)) => {
                let e: BoxError = e.into();
                return Err(connect_error(target, e.as_ref()));
            }
            Ok(Ok(io)) => io,
        };
        // What the connector knows about the connection (its addresses, for hop records), put in
        // the response's extensions as hyper-util's pooled client does for ordinary requests.
        let connected = io.connected();
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake::<_, Body>(io)
            .await
            .map_err(|e| ProxyError::UpstreamConnect {
                target: target.clone(),
                message: error_chain(&e),
            })?;
        // The connection task ends when the response is done and `sender` is gone (it is dropped
        // below), or, after a 101, hands the socket to `hyper::upgrade::on`.
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        // A connection-level client sends the URI as written: use origin-form plus Host.
        let pq = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(pq);
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| ProxyError::Internal(format!("upgrade host: {e}")))?;
        req.headers_mut().insert(header::HOST, host);
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ProxyError::UpstreamProtocol {
                target,
                message: error_chain(&e),
            })?;
        drop(sender);
        let mut resp = resp.map(Body::new);
        connected.get_extras(resp.extensions_mut());
        Ok(resp)
    }
}
