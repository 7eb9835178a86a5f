//! Binding, serving, and the one request handler.
//!
//! A request's way through the proxy:
//!
//! ```text
//!  a prefix without its slash? ──► 301 to it (Go's ServeMux subtree rule)
//!  www prefix? ──► static file (not filtered, as kubectl)
//!  outside the api prefix? ──► 404
//!  undecodable path ──► 400; clean path outside the api prefix ──► 301 to it (as Go's mux)
//!  filter (canonical path after the prefix, method, Host) ──► 403 Forbidden, even for a
//!                                                             non-canonical path
//!  path canonical? no ──► 301 to the clean path (as Go's mux)
//!  credentials: replace the client's Authorization/Impersonate-* (default) or add only when absent
//!  core::http::forward ──► apiserver (pooled, h2) or, for an upgrade, a fresh HTTP/1.1 connection
//!  errors ──► 502/504 text naming the apiserver (and, for a TLS failure, what did not verify),
//!             or 500 when credentials could not be obtained
//!  the response's end (body done, failed or dropped; tunnel closed) ──► hop record + access line
//! ```
//!
//! Serving (TCP, TLS or the unix socket) is `core::serve` with its default limits.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::header::{self, HeaderValue};
use http::{StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpInfo;
use proxylab_core::http::{Forward, Meter, PendingHop, ProxyError, forward, meter_request};
use proxylab_core::route::{Decision, Filter, canonicalize};
use proxylab_core::runtime::ServingThreads;
use proxylab_core::serve::ConnInfo;
use proxylab_core::telemetry::{HopLog, HopRecord, HopSink, HttpHop, Metrics};
use proxylab_kube::Upstream;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::warn;

use crate::config::{AuthProxyConfig, Listen};

/// The auth-proxy: `kubectl proxy`, re-implemented. See the crate docs.
pub struct AuthProxy;

/// The address the proxy listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address (port 0 resolved).
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl ListenAddr {
    /// The TCP address, if listening on TCP.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            ListenAddr::Tcp(a) => Some(*a),
            ListenAddr::Unix(_) => None,
        }
    }
}

impl fmt::Display for ListenAddr {
    /// As kubectl prints it after `Starting to serve on`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Errors from [`AuthProxy::bind`] and [`Bound::serve`].
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening socket could not be created.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// What we tried to bind.
        addr: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The TCP listening socket could not be created (the message names the address).
    #[error("{0}")]
    Listen(#[source] std::io::Error),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// The listening socket, duplicated for another serving thread. It becomes a tokio listener
/// inside that thread's runtime (registration is per runtime).
enum SharedListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl SharedListener {
    fn into_tokio(self) -> std::io::Result<Listener> {
        Ok(match self {
            SharedListener::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)?),
            // The path is removed by the thread that owns the first listener.
            SharedListener::Unix(l) => Listener::Unix(UnixListener::from_std(l)?, PathBuf::new()),
        })
    }
}

/// A bound, not yet serving, auth-proxy.
pub struct Bound {
    listener: Listener,
    /// Duplicates of the listening socket, one per extra serving thread.
    extra: Vec<SharedListener>,
    local: ListenAddr,
    state: Arc<ProxyState>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

#[derive(Clone)]
struct ProxyState {
    filter: Option<Arc<Filter>>,
    api_prefix: String,
    strip_prefix: bool,
    www: Option<(PathBuf, String)>,
    upstream: Upstream,
    base_scheme: String,
    base_authority: String,
    base_path: String,
    /// `scheme://authority` of the apiserver, for hop records.
    endpoint: String,
    /// The apiserver's address when the kubeconfig names it by IP, for hop records.
    upstream_addr: Option<SocketAddr>,
    pass_client_credentials: bool,
    /// Where finished requests go: the hop log and the access log.
    sink: Arc<HopSink>,
    name: Arc<str>,
    proto: &'static str,
    listener: ListenAddr,
    tunnels: TaskTracker,
    shutdown: CancellationToken,
}

impl ProxyState {
    /// The state for another serving thread: everything shared except the upstream connection
    /// pool, which each thread keeps for itself (see `Upstream::with_own_pool`).
    fn for_thread(&self) -> Self {
        Self {
            upstream: self.upstream.with_own_pool(),
            ..self.clone()
        }
    }
}

impl AuthProxy {
    /// Binds the listening socket. A unix socket is created private to the user (0600) without a
    /// window in which others could connect; an old socket file at the path is removed first.
    ///
    /// With `threads > 1` the one socket is duplicated for each extra serving thread: every
    /// thread accepts from the same socket (no `SO_REUSEPORT`, so a second auth-proxy on the same
    /// port still fails with "address in use" as kubectl proxy does, instead of silently sharing).
    pub async fn bind(config: AuthProxyConfig) -> Result<Bound, ServeError> {
        let extra_threads = config.threads.max(1) - 1;
        let (listener, extra, local) = match &config.listen {
            Listen::Tcp { host, port } => {
                let target = format!("{host}:{port}");
                let addr = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| ServeError::Bind {
                        addr: target.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "cannot resolve --address",
                        ),
                    })?;
                // SO_REUSEADDR and a backlog of 1024 from core; never SO_REUSEPORT (see above).
                let l = proxylab_core::runtime::bind_tcp(addr, Default::default())
                    .map_err(ServeError::Listen)?
                    .into_std()?;
                let extra = (0..extra_threads)
                    .map(|_| l.try_clone().map(SharedListener::Tcp))
                    .collect::<Result<Vec<_>, _>>()?;
                let l = TcpListener::from_std(l)?;
                let local = l.local_addr()?;
                (Listener::Tcp(l), extra, ListenAddr::Tcp(local))
            }
            Listen::Unix(path) => {
                let l = bind_private_unix(path).map_err(|source| ServeError::Bind {
                    addr: path.display().to_string(),
                    source,
                })?;
                let extra = (0..extra_threads)
                    .map(|_| l.try_clone().map(SharedListener::Unix))
                    .collect::<Result<Vec<_>, _>>()?;
                (
                    Listener::Unix(UnixListener::from_std(l)?, path.clone()),
                    extra,
                    ListenAddr::Unix(path.clone()),
                )
            }
        };
        let base = config.upstream.base().clone();
        let hops = config
            .hops
            .clone()
            .unwrap_or_else(|| HopLog::new(1024, &Metrics::new()));
        let sink = match config.access_log {
            Some(log) => HopSink::new(hops).with_access_log(log),
            None if config.access_via_tracing => HopSink::new(hops).with_access_tracing(),
            None => HopSink::new(hops),
        };
        let proto = match (&local, config.tls.is_some()) {
            (_, true) => "https",
            _ => "http",
        };
        let strip_prefix = !config.api_prefix.starts_with("/api");
        let state = Arc::new(ProxyState {
            filter: config.filter,
            api_prefix: config.api_prefix,
            strip_prefix,
            www: config.www,
            base_scheme: base.scheme_str().unwrap_or("https").to_owned(),
            base_authority: base.authority().map(|a| a.to_string()).unwrap_or_default(),
            base_path: if config.append_server_path {
                config.server_path
            } else {
                String::new()
            },
            endpoint: format!(
                "{}://{}",
                base.scheme_str().unwrap_or("https"),
                base.authority().map(|a| a.as_str()).unwrap_or_default()
            ),
            upstream_addr: base.authority().and_then(|a| a.as_str().parse().ok()),
            upstream: config.upstream,
            pass_client_credentials: config.pass_client_credentials,
            sink: Arc::new(sink),
            name: config.name.into(),
            proto,
            listener: local.clone(),
            tunnels: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        Ok(Bound {
            listener,
            extra,
            local,
            state,
            tls: config.tls,
        })
    }
}

impl Bound {
    /// The real listening address.
    pub fn local_addr(&self) -> &ListenAddr {
        &self.local
    }

    /// The router that handles every request, over the given state.
    fn router(state: Arc<ProxyState>) -> Router {
        Router::new().fallback(handle).with_state(state)
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, closes open upgrade tunnels and
    /// drains in-flight requests (bounded by core::serve's drain timeout).
    ///
    /// The first listener is served on the caller's runtime; each extra one (`threads > 1`) on a
    /// thread of its own running a single-threaded runtime. Thread-per-core, as HAProxy and nginx
    /// run: a request, its client connection and the upstream connection it uses stay on one
    /// thread, so nothing is handed across cores per request (on two shared cores that hand-off —
    /// wake-ups, work stealing, the shared pool's lock — cost about a fifth of the proxy's CPU).
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let state = self.state.clone();
        // Tunnels end at shutdown: they would otherwise hold the drain for their whole life.
        let tunnels_stop = state.shutdown.clone();
        let s = shutdown.clone();
        tokio::spawn(async move {
            s.cancelled().await;
            tunnels_stop.cancel();
        });
        let name = state.name.clone();
        let threads = ServingThreads::start(self.extra.len(), |i| format!("{name}-{}", i + 1))?;
        let mut workers = Vec::new();
        for (listener, handle) in self.extra.into_iter().zip(threads.handles()) {
            let state = Arc::new(state.for_thread());
            let tls = self.tls.clone();
            let shutdown = shutdown.clone();
            workers.push(handle.spawn(async move {
                serve_listener(listener.into_tokio()?, state, tls, shutdown).await
            }));
        }
        let mut result = serve_listener(self.listener, state.clone(), self.tls, shutdown).await;
        for worker in workers {
            let r = worker
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(format!("a serving thread: {e}"))));
            if result.is_ok() {
                result = r;
            }
        }
        // Tunnels may run on the serving threads' runtimes: those stop only after this wait.
        state.tunnels.close();
        state.tunnels.wait().await;
        drop(threads);
        result.map_err(ServeError::Io)
    }
}

/// Serves one listener (of possibly several sharing a socket) with the given state.
async fn serve_listener(
    listener: Listener,
    state: Arc<ProxyState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = Bound::router(state);
    match listener {
        Listener::Tcp(l) => proxylab_core::serve::serve_http(l, tls, router, shutdown).await,
        Listener::Unix(l, path) => {
            let r = proxylab_core::serve::serve_http(l, tls, router, shutdown).await;
            if !path.as_os_str().is_empty() {
                let _ = std::fs::remove_file(&path);
            }
            r
        }
    }
}

/// Binds a unix socket readable and writable only by this user. kubectl sets umask 0077 around
/// `net.Listen`; a process-wide umask is unsafe in a multi-threaded program, so the socket is
/// created inside a fresh 0700 directory, restricted to 0600, then renamed into place.
fn bind_private_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp_dir = parent.join(format!(
        ".auth-proxy-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&tmp_dir)?;
    let tmp_sock = tmp_dir.join("sock");
    let result = (|| {
        let l = std::os::unix::net::UnixListener::bind(&tmp_sock)?;
        std::fs::set_permissions(&tmp_sock, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp_sock, path)?;
        l.set_nonblocking(true)?;
        Ok(l)
    })();
    let _ = std::fs::remove_file(&tmp_sock);
    let _ = std::fs::remove_dir(&tmp_dir);
    result
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The request handler: see the module docs for the order of decisions. The hop is recorded (and
/// the access line written) when the response is over — see `core::http::PendingHop`.
async fn handle(State(st): State<Arc<ProxyState>>, req: Request) -> Response {
    let started = Instant::now();
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    let (client, listener, unix) = req
        .extensions()
        .get::<ConnInfo>()
        .map(|c| (c.remote, c.local, c.unix))
        .unwrap_or((unknown, st.listener.tcp().unwrap_or(unknown), false));
    let method = req.method().clone();
    let raw_path = req.uri().path().to_owned();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let protocol = if unix { "unix" } else { st.proto };
    // Started now: its time is when the request arrived.
    let mut hop = HopRecord::start("auth-proxy", &st.name, protocol, client, listener);
    let meter = Meter::new();
    let req = meter_request(req, &meter);
    let forwarded_for = (!unix).then_some(client);
    let (resp, outcome) = route(&st, req, &raw_path, &host, forwarded_for, &meter).await;

    hop.upstream = st.upstream_addr;
    // The pooled connection that carried this request, as the connector saw it: its local
    // address is the next hop's client address, so `proxylab trace` and the lab page join this
    // hop to the apiserver's (or a balancer's) exactly instead of by request line and time.
    if let Some(info) = resp.extensions().get::<HttpInfo>() {
        hop.upstream_local = Some(info.local_addr());
        hop.upstream.get_or_insert(info.remote_addr());
    }
    hop.endpoint = Some(st.endpoint.clone());
    hop.target = Some(raw_path.clone());
    hop.outcome = outcome.into();
    hop.http = Some(HttpHop {
        method: method.to_string(),
        path: raw_path,
        host: (!host.is_empty()).then_some(host),
        status: Some(resp.status().as_u16()),
    });
    PendingHop::new(hop, started, meter, st.sink.clone()).attach(resp)
}

async fn route(
    st: &ProxyState,
    mut req: Request,
    raw_path: &str,
    host: &str,
    client: Option<SocketAddr>,
    meter: &Arc<Meter>,
) -> (Response, &'static str) {
    // A subtree root named without its trailing slash (`/static` for `--www-prefix=/static/`,
    // `/custom` for `--api-prefix=/custom/`): Go's ServeMux, which kubectl proxy registers its two
    // prefixes on, answers with a 301 to the slashed path; so do we.
    let www_prefix = st.www.as_ref().map(|(_, p)| p.as_str());
    for prefix in [www_prefix, Some(st.api_prefix.as_str())]
        .into_iter()
        .flatten()
    {
        if prefix.len() > 1 && prefix.strip_suffix('/') == Some(raw_path) {
            let location = match req.uri().query() {
                Some(q) => format!("{prefix}?{q}"),
                None => prefix.to_owned(),
            };
            let mut r = text(StatusCode::MOVED_PERMANENTLY, "");
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return (r, "redirect-subtree");
        }
    }
    // Static files: kubectl serves them outside the filter.
    if let Some((dir, prefix)) = &st.www
        && raw_path.starts_with(prefix.as_str())
        && (prefix.len() >= st.api_prefix.len() || !raw_path.starts_with(&st.api_prefix))
    {
        let rest = &raw_path[prefix.len() - 1..];
        let mut parts = req.into_parts();
        let pq = match parts.0.uri.query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        };
        parts.0.uri = pq.parse().unwrap_or_else(|_| Uri::from_static("/"));
        let req = Request::from_parts(parts.0, parts.1);
        let resp = tower_http::services::ServeDir::new(dir)
            .oneshot(req)
            .await
            .map(|r| r.map(Body::new))
            .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")));
        return (resp, "static");
    }
    if !raw_path.starts_with(&st.api_prefix) {
        return (
            text(StatusCode::NOT_FOUND, "404 page not found\n"),
            "not-found",
        );
    }
    let canonical = match canonicalize(raw_path) {
        Ok(c) => c,
        Err(e) => return (text(StatusCode::BAD_REQUEST, format!("{e}\n")), "bad-path"),
    };
    // As Go's mux, a non-canonical path is answered with a redirect to the clean one, so that the
    // request forwarded is always one the apiserver reads as the filter did. But the filter
    // decides first: a path that would be refused once clean gets its 403 now, not a 301 that
    // sends the client to be refused there (kubectl answers 301 first). A clean path that left
    // the api prefix is redirected as Go would, to be answered (404, static file) there.
    let redirect = |query: Option<&str>| {
        let location = match query {
            Some(q) => format!("{}?{q}", canonical.encoded),
            None => canonical.encoded.clone(),
        };
        let mut r = text(StatusCode::MOVED_PERMANENTLY, "");
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        (r, "redirect-clean-path")
    };
    if canonical.cleaned && !canonical.decoded.starts_with(&st.api_prefix) {
        return redirect(req.uri().query());
    }
    // The path the filter checks and the apiserver receives: prefix removed, leading '/' kept.
    let (checked, sent) = if st.strip_prefix {
        let keep = st.api_prefix.len() - 1;
        (
            canonical.decoded.get(keep..).unwrap_or("/").to_owned(),
            strip_encoded(&canonical.encoded, &st.api_prefix),
        )
    } else {
        (canonical.decoded.clone(), canonical.encoded.clone())
    };
    let checked = if checked.is_empty() {
        "/".to_owned()
    } else {
        checked
    };
    if let Some(filter) = &st.filter {
        let decision = filter.decide(req.method().as_str(), &checked, host);
        if decision != Decision::Accept {
            warn!(target: "access", method = %req.method(), path = %checked, host, rule = decision.as_str(), "request rejected by filter");
            return (text(StatusCode::FORBIDDEN, "Forbidden\n"), "rejected");
        }
    }
    if canonical.cleaned {
        return redirect(req.uri().query());
    }

    // Credentials.
    let pass = st.pass_client_credentials;
    let headers = req.headers_mut();
    if let Err(e) = st
        .upstream
        .credentials()
        .with_headers(|ours| merge_credentials(headers, ours, pass))
        .await
    {
        return (error_response(&e), e.kind());
    }

    let path = format!("{}{}", st.base_path, sent);
    let target = match req.uri().query() {
        Some(q) => format!("{}://{}{}?{}", st.base_scheme, st.base_authority, path, q),
        None => format!("{}://{}{}", st.base_scheme, st.base_authority, path),
    };
    let target: Uri = match target.parse() {
        Ok(u) => u,
        Err(e) => {
            return (
                text(
                    StatusCode::BAD_REQUEST,
                    format!("bad request target: {e}\n"),
                ),
                "bad-path",
            );
        }
    };
    let fwd = Forward {
        target,
        client,
        proto: st.proto,
        via: st.name.clone(),
        tunnels: Some(st.tunnels.clone()),
        shutdown: Some(st.shutdown.clone()),
        meter: Some(meter.clone()),
    };
    match forward(&st.upstream, req, &fwd).await {
        Ok(resp) => {
            let outcome = if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                "upgraded"
            } else {
                "ok"
            };
            (resp, outcome)
        }
        Err(e) => (error_response(&e), e.kind()),
    }
}

/// Combines the kubeconfig's credential headers with the client's request headers.
///
/// `pass_client = false` (the default): the client's `Authorization` and `Impersonate-*` are removed
/// and the kubeconfig's added — the kubeconfig user is the only identity this proxy lends out.
/// `pass_client = true` (kubectl's rule): a header the client sent wins; the kubeconfig's are added
/// only under names the client did not use (all values of a multi-valued header such as
/// `Impersonate-Group` are added together).
fn merge_credentials(headers: &mut http::HeaderMap, ours: &http::HeaderMap, pass_client: bool) {
    if pass_client {
        for name in ours.keys() {
            if headers.contains_key(name) {
                continue;
            }
            for value in ours.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        return;
    }
    headers.remove(header::AUTHORIZATION);
    if headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-"))
    {
        let impersonation: Vec<_> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("impersonate-"))
            .cloned()
            .collect();
        for k in impersonation {
            headers.remove(k);
        }
    }
    for (name, value) in ours {
        headers.append(name.clone(), value.clone());
    }
}

/// Removes the api-prefix (which ends in `/`) from an encoded path, keeping the leading `/`.
fn strip_encoded(encoded: &str, prefix: &str) -> String {
    // The prefix is plain ASCII in practice; compare on the encoded form and fall back to `/`.
    match encoded.strip_prefix(&prefix[..prefix.len() - 1]) {
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        Some("") => "/".to_owned(),
        _ => "/".to_owned(),
    }
}

/// The one place errors become responses: text the user can act on, never a bare 500.
fn error_response(e: &ProxyError) -> Response {
    let hint = match e {
        // Reachable: the trust settings are what to check, not whether it runs.
        ProxyError::UpstreamTls { .. } => {
            " (auth-proxy reached the apiserver named in the kubeconfig but could not verify it: check the cluster's certificate-authority and tls-server-name, and the user's client-certificate)"
        }
        _ if e.side() == proxylab_core::http::Side::Upstream => {
            " (auth-proxy could not get an answer from the apiserver named in the kubeconfig: check that it is running and reachable)"
        }
        _ => "",
    };
    let mut r = text(e.status(), format!("auth-proxy: {e}{hint}\n"));
    if e.closes_connection() {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_merge() {
        use http::{HeaderMap, HeaderValue};
        let mut ours = HeaderMap::new();
        ours.insert("authorization", HeaderValue::from_static("Bearer ours"));
        ours.append("impersonate-group", HeaderValue::from_static("a"));
        ours.append("impersonate-group", HeaderValue::from_static("b"));
        let client = || {
            let mut h = HeaderMap::new();
            h.insert("authorization", HeaderValue::from_static("Bearer theirs"));
            h.insert("impersonate-user", HeaderValue::from_static("admin"));
            h
        };
        let mut h = client();
        merge_credentials(&mut h, &ours, false);
        assert_eq!(h["authorization"], "Bearer ours");
        assert!(h.get("impersonate-user").is_none());
        assert_eq!(h.get_all("impersonate-group").iter().count(), 2);
        let mut h = client();
        merge_credentials(&mut h, &ours, true);
        assert_eq!(h["authorization"], "Bearer theirs");
        assert_eq!(h["impersonate-user"], "admin");
        assert_eq!(h.get_all("impersonate-group").iter().count(), 2);
    }

    #[test]
    fn strip_encoded_prefix() {
        assert_eq!(strip_encoded("/custom/api/v1", "/custom/"), "/api/v1");
        assert_eq!(strip_encoded("/custom/", "/custom/"), "/");
        assert_eq!(strip_encoded("/custom", "/custom/"), "/");
    }
}
