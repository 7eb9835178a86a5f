//! `http` mode: TLS is terminated here, and the user's identity goes on in headers.
//!
//! In `tcp` mode the apiservers see each client's own TLS handshake, so client certificates just
//! work — and the balancer cannot see a single request. Terminating TLS lets it see requests and
//! speak HTTP/2 (to send GOAWAY), but the apiserver then sees the *balancer's* connection, not the
//! user's certificate. kube-apiserver has an answer for exactly this, requestheader
//! authentication: a client certificate from the front-proxy CA (`--requestheader-client-ca-file`,
//! CN in `--requestheader-allowed-names`) may assert a user in `X-Remote-User` and groups in
//! `X-Remote-Group`. So identity survives termination like this:
//!
//! ```text
//!  kubectl ──TLS (client cert CN=jane, O=dev)──► ha-balancer (http mode)
//!            verified against --client-ca-file      │ strip the client's X-Remote-* headers
//!                                                    │ CN → X-Remote-User: jane
//!                                                    │ O  → X-Remote-Group: dev (one per O)
//!                                                    │ drop Authorization (the certificate won)
//!  apiserver ◄──TLS (front-proxy cert, verified apiserver)──┘
//!  requestheader auth: the front-proxy cert vouches → user jane, groups [dev]
//! ```
//!
//! The rules, and why:
//! - **The certificate is verified here**, against `--client-ca-file` (the cluster CA), as
//!   kube-apiserver's x509 authenticator would: CN is the user, every O a group. A certificate
//!   from another CA fails the TLS handshake, as it does at kube-apiserver (Go's
//!   `VerifyClientCertIfGiven`). A certificate with an empty CN asserts nothing (kube ignores it).
//! - **The client's own `X-Remote-*` headers are always removed**, before ours are added: the
//!   apiserver believes whatever the front-proxy connection asserts, so a client's
//!   `X-Remote-User: system:admin` would otherwise be honoured. (`X-Remote-Extra-*` too; the
//!   apiservers must use the default header names, which kubeadm sets.)
//! - **Clients without a certificate** (bearer tokens, service-account tokens, anonymous) are passed
//!   through with their `Authorization` header untouched: the balancer cannot verify a token (that
//!   needs the apiserver's token authenticators and keys), and the apiserver's union of
//!   authenticators reaches the token when no `X-Remote-User` is asserted. A bad token gets the
//!   apiserver's own 401, exactly as without the balancer. Refusing token clients would break
//!   every pod's service account.
//! - **`Impersonate-*` headers pass through.** They are not spoofing: the apiserver authorizes
//!   them against the user the balancer vouched for (`kubectl --as` needs the `impersonate` verb),
//!   exactly as it would without a balancer. Stripping them would make `kubectl --as=x` silently
//!   run as the real user — the opposite of what its user asked for.
//! - **The apiservers are always verified** (`--ca-file`): a balancer that lends its front-proxy
//!   certificate to whoever answers on a backend's port would hand out every user's identity.
//!
//! **Affinity.** Each client connection is bound to one backend when it is accepted (the same
//! algorithms as `tcp` mode); every request on it goes to that backend, over connections of the
//! client connection's own (HTTP/2 when the backend offers it, so one upstream connection per
//! client connection; an upgrade — exec, attach, port-forward — gets a dedicated HTTP/1.1 one).
//! So a client connection is exactly what `tcp` mode balances, the counts on `/stats` mean the
//! same, and moving a client is moving its connection: a GOAWAY makes client-go open a new
//! connection, which is placed afresh. A connect failure (TCP or TLS) before a request was written
//! binds the connection to another backend and tries there — nothing was sent, so nothing can be
//! sent twice.
//!
//! **Moving load back** (see [`crate::rebalance`]): the same policy as `tcp` mode picks the
//! busiest backend's oldest connections; here each gets an HTTP/2 GOAWAY (HTTP/1: it closes after
//! the response in flight). Requests in flight finish and new ones go on a new connection, so no
//! request is lost in a race with a close. A stream that does not end by itself — a watch,
//! `logs -f` — would keep the old connection forever, so after `rebalance.goawayGrace` (10 s) the
//! connection is closed; client-go resumes a watch from its resourceVersion on the new one. A
//! backend marked down has its client connections closed at once, as in `tcp` mode.
//!
//! Idle timers never cut a stream: core's serving loop counts a request as in flight until its
//! response body ends, and only closes connections with nothing in flight (`timeouts.idle`, 90 s
//! by default, with a GOAWAY); upgraded connections have left HTTP and are never timed.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri};
use parking_lot::Mutex;
use proxylab_core::balance::{Algorithm, Pick};
use proxylab_core::http::{
    Dialed, Forward, HyperTransport, Meter, PendingHop, ProxyError, forward, meter_request,
};
use proxylab_core::serve::{ConnControl, ConnInfo, MakeRouter, ServeOptions};
use proxylab_core::telemetry::{HopRecord, HopSink, HttpHop};
use proxylab_core::tls::{ClientAuth, ClientTls, PeerIdentity, ServerTls};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::Shared;
use crate::config::Config;
use crate::pool::{BackendState, Source};

/// Headers whose names start with this are removed from every client request (requestheader's
/// `X-Remote-User`, `X-Remote-Group`, `X-Remote-Extra-*`).
const REMOTE_PREFIX: &str = "x-remote-";
static REMOTE_USER: HeaderName = HeaderName::from_static("x-remote-user");
static REMOTE_GROUP: HeaderName = HeaderName::from_static("x-remote-group");

/// The TLS configurations `http` mode runs with, built once at start.
pub(crate) struct HttpMode {
    /// What clients are served with: the serving certificate, client certificates verified
    /// (optional: token clients have none), ALPN h2 and http/1.1.
    pub(crate) server: Arc<rustls::ServerConfig>,
    /// Towards the apiservers: verified, presenting the front-proxy certificate, h2 or http/1.1.
    upstream: Arc<rustls::ClientConfig>,
    /// The same for upgrades (exec, attach, port-forward): http/1.1 only.
    upgrade: Arc<rustls::ClientConfig>,
    sink: Arc<HopSink>,
}

impl HttpMode {
    /// Loads the certificates `config.http` names. An error names the file and is the user's to
    /// fix.
    pub(crate) fn new(
        config: &Config,
        hops: Arc<proxylab_core::telemetry::HopLog>,
    ) -> Result<Self, String> {
        let h = &config.http;
        let need = |p: &Option<std::path::PathBuf>, what: &str| {
            p.clone().ok_or_else(|| format!("http mode needs {what}"))
        };
        let cert = need(&h.cert_file, "a serving certificate (http.certFile)")?;
        let key = need(&h.key_file, "a serving key (http.keyFile)")?;
        let client_ca = need(&h.client_ca_file, "a client CA (http.clientCaFile)")?;
        let proxy_cert = need(
            &h.proxy_cert_file,
            "a front-proxy certificate (http.proxyCertFile)",
        )?;
        let proxy_key = need(&h.proxy_key_file, "a front-proxy key (http.proxyKeyFile)")?;
        let backend_ca = need(
            &config.check.ca_file,
            "the apiservers' CA (healthCheck.caFile)",
        )?;
        let tls_err = |what: &str, e: proxylab_core::tls::TlsError| format!("{what}: {e}");
        let client_cas = proxylab_core::tls::load_certs(&client_ca)
            .map_err(|e| tls_err("http.clientCaFile", e))?;
        let server = ServerTls::from_files(&cert, &key)
            .map_err(|e| tls_err("http.certFile/keyFile", e))?
            .client_cas(client_cas, ClientAuth::Optional)
            .build()
            .map_err(|e| tls_err("http.certFile/keyFile", e))?;
        let cas = proxylab_core::tls::load_certs(&backend_ca)
            .map_err(|e| tls_err("healthCheck.caFile", e))?;
        let chain = proxylab_core::tls::load_certs(&proxy_cert)
            .map_err(|e| tls_err("http.proxyCertFile", e))?;
        let pkey = proxylab_core::tls::load_private_key(&proxy_key)
            .map_err(|e| tls_err("http.proxyKeyFile", e))?;
        let client = ClientTls::new().ca(cas).client_cert(chain, pkey);
        let upstream = client
            .clone()
            .alpn(&[b"h2", b"http/1.1"])
            .build()
            .map_err(|e| tls_err("http.proxyCertFile/proxyKeyFile", e))?;
        let upgrade = client
            .alpn(&[b"http/1.1"])
            .build()
            .map_err(|e| tls_err("http.proxyCertFile/proxyKeyFile", e))?;
        Ok(Self {
            server,
            upstream,
            upgrade,
            sink: Arc::new(HopSink::new(hops)),
        })
    }
}

/// The serving loop's limits for `http` mode: the configuration's drain, its idle limit (when
/// set; else core's 90 s, which only ever closes connections with nothing in flight) and the
/// process-wide connection bound.
pub(crate) fn serve_options(config: &Config) -> ServeOptions {
    let d = ServeOptions::default();
    ServeOptions {
        drain_timeout: config.timeouts.drain,
        idle_timeout: config.timeouts.idle.unwrap_or(d.idle_timeout),
        max_connections: proxylab_core::serve::process_connection_limit(),
        ..d
    }
}

/// Makes each client connection's router: binds the connection to a backend and registers it
/// with that backend, so a mark-down closes it and a rebalancing round can send it GOAWAY.
pub(crate) fn make_router(shared: Arc<Shared>, mode: Arc<HttpMode>) -> MakeRouter {
    Arc::new(move |info: &ConnInfo, control: &ConnControl| {
        let id = shared
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let binding = Arc::new(Binding {
            shared: shared.clone(),
            id,
            peer: info.remote,
            started: Instant::now(),
            control: control.clone(),
            bound: Mutex::new(None),
        });
        binding.bind(&[]);
        let config = shared.config.load();
        let transport = HyperTransport::new(
            Dialer {
                binding: binding.clone(),
                tls: mode.upstream.clone(),
            },
            Dialer {
                binding: binding.clone(),
                tls: mode.upgrade.clone(),
            },
        )
        // Every backend may be tried in turn, each within the connect timeout.
        .with_connect_timeout(config.timeouts.connect * attempts(&shared, &config) as u32);
        let conn = Arc::new(ClientConn {
            binding,
            transport,
            sink: mode.sink.clone(),
            listener: info.local,
            instance: config.instance.clone(),
        });
        Router::new().fallback(handle).with_state(conn)
    })
}

/// How many backends one connect may try (the first and its retries).
fn attempts(shared: &Shared, config: &Config) -> usize {
    let backends = shared.pool.backends().len().max(1);
    match config.retries {
        Some(r) => (r as usize + 1).min(backends),
        None => backends,
    }
}

/// A client connection's backend, for as long as the connection lives.
struct Binding {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    started: Instant,
    control: ConnControl,
    bound: Mutex<Option<Bound>>,
}

struct Bound {
    backend: Arc<BackendState>,
    /// Holds the backend's place in the balancer's connection counts (least-conn).
    _pick: Pick,
    /// Why this backend (the algorithm's reason, rebalancing, retries).
    reason: String,
}

impl Binding {
    /// Binds to a backend other than `tried` and registers there (leaving the previous one);
    /// `None` when there is none left.
    fn bind(&self, tried: &[SocketAddr]) -> Option<Arc<BackendState>> {
        let pool = &self.shared.pool;
        let balancer = pool.balancer();
        // While load moves back to a recovered backend, the emptiest backend takes each new
        // connection, as in tcp mode.
        let rebalancing = pool.rebalancing() && balancer.algorithm() != Algorithm::SourceHash;
        let pick = if rebalancing {
            balancer.pick_as(Algorithm::LeastConn, Some(self.peer.ip()), tried)?
        } else {
            balancer.pick(Some(self.peer.ip()), tried)?
        };
        if tried.contains(&pick.addr) {
            return None;
        }
        let backend = pool.by_addr(pick.addr)?;
        let mut reason = pick.reason.to_string();
        if rebalancing {
            reason.push_str(" (rebalancing)");
        }
        if pool.all_down() {
            reason.push_str("; every backend is down, trying anyway");
        }
        if !tried.is_empty() {
            let t: Vec<String> = tried.iter().map(|a| a.to_string()).collect();
            reason.push_str(&format!("; after failed connect(s) to {}", t.join(", ")));
        }
        let grace = self.shared.config.load().rebalance.goaway_grace;
        let mut bound = self.bound.lock();
        if let Some(old) = bound.take() {
            old.backend.forget(self.id);
        }
        backend.open_http(self.id, self.started, self.control.clone(), grace);
        *bound = Some(Bound {
            backend: backend.clone(),
            _pick: pick,
            reason,
        });
        Some(backend)
    }

    fn current(&self) -> Option<(Arc<BackendState>, String)> {
        self.bound
            .lock()
            .as_ref()
            .map(|b| (b.backend.clone(), b.reason.clone()))
    }
}

impl Drop for Binding {
    fn drop(&mut self) {
        if let Some(b) = self.bound.get_mut().take() {
            b.backend.close(self.id, 0, 0);
        }
    }
}

/// What each request on one client connection shares.
struct ClientConn {
    binding: Arc<Binding>,
    transport: HyperTransport<Dialer, Dialer>,
    sink: Arc<HopSink>,
    listener: SocketAddr,
    instance: String,
}

/// One request: identity headers, then core's forwarding path to the connection's backend; the
/// hop is recorded when the response is over.
async fn handle(State(c): State<Arc<ClientConn>>, req: Request) -> Response {
    let started = Instant::now();
    let shared = &c.binding.shared;
    let mut hop = HopRecord::start(
        "ha-balancer",
        &c.instance,
        "https",
        c.binding.peer,
        c.listener,
    );
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let meter = Meter::new();
    let mut req = meter_request(req, &meter);
    let peer = req
        .extensions()
        .get::<ConnInfo>()
        .and_then(|i| i.peer.clone());
    let user = assert_identity(req.headers_mut(), peer.as_ref());
    let (resp, outcome) = match c.binding.current() {
        None => (
            status_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "no backend to send the request to",
            ),
            "no-backends",
        ),
        Some((backend, _)) => {
            let pq = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            match format!("https://{}{pq}", backend.addr()).parse::<Uri>() {
                Err(e) => (
                    status_response(StatusCode::BAD_REQUEST, &format!("bad request target: {e}")),
                    "bad-path",
                ),
                Ok(target) => {
                    let fwd = Forward {
                        target,
                        client: Some(c.binding.peer),
                        proto: "https",
                        via: Arc::from("ha-balancer"),
                        tunnels: Some(shared.tracker.clone()),
                        shutdown: Some(shared.cut.clone()),
                        meter: Some(meter.clone()),
                    };
                    match forward(&c.transport, req, &fwd).await {
                        Ok(resp) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                            (resp, "upgraded")
                        }
                        Ok(resp) => (resp, "ok"),
                        Err(e) => (error_response(&e), e.kind()),
                    }
                }
            }
        }
    };
    // Read after the request: a failed connect may have moved the connection.
    if let Some((backend, reason)) = c.binding.current() {
        hop.upstream = Some(backend.addr());
        hop.endpoint = Some(backend.name().to_owned());
        hop.reason = Some(match &user {
            Some(u) => format!("{reason}; user {u} from the client certificate"),
            None => format!("{reason}; no client certificate, credentials passed through"),
        });
    }
    if let Some(a) = resp.extensions().get::<UpstreamAddrs>() {
        hop.upstream_local = Some(a.local);
    }
    hop.target = Some(path.clone());
    hop.outcome = outcome.into();
    hop.http = Some(HttpHop {
        method,
        path,
        host: None,
        status: Some(resp.status().as_u16()),
    });
    PendingHop::new(hop, started, meter, c.sink.clone()).attach(resp)
}

/// Replaces whatever identity headers the client sent with what its verified certificate says;
/// returns the user asserted, if any. See the module docs for the rules.
pub(crate) fn assert_identity(
    headers: &mut HeaderMap,
    peer: Option<&PeerIdentity>,
) -> Option<String> {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(REMOTE_PREFIX))
        .cloned()
        .collect();
    for k in spoofed {
        headers.remove(k);
    }
    let peer = peer.filter(|p| !p.user.is_empty())?;
    // Bytes, not str: a CN may hold UTF-8, which Go sends as it is; only control characters
    // cannot travel in a header.
    let user = HeaderValue::from_bytes(peer.user.as_bytes()).ok()?;
    headers.remove(header::AUTHORIZATION);
    headers.insert(REMOTE_USER.clone(), user);
    for g in &peer.groups {
        if let Ok(v) = HeaderValue::from_bytes(g.as_bytes()) {
            headers.append(REMOTE_GROUP.clone(), v);
        }
    }
    Some(peer.user.clone())
}

/// A Kubernetes `Status` body, as an apiserver-side proxy answers.
fn status_response(code: StatusCode, message: &str) -> Response {
    let reason = match code {
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        StatusCode::GATEWAY_TIMEOUT => "Timeout",
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::INTERNAL_SERVER_ERROR => "InternalError",
        _ => "",
    };
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ProxyError) -> Response {
    let mut r = status_response(e.status(), &format!("ha-balancer: {e}"));
    if e.closes_connection() {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// The two ends of an upstream connection, in each response's extensions (for the hop record:
/// its local address is the apiserver's client address).
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpstreamAddrs {
    local: SocketAddr,
}

/// Dials the client connection's backend over TLS (moving the binding to another backend when
/// a connect fails). Whatever the URI says: the binding decides.
#[derive(Clone)]
struct Dialer {
    binding: Arc<Binding>,
    tls: Arc<rustls::ClientConfig>,
}

impl Dialer {
    async fn dial(&self) -> io::Result<Conn> {
        let shared = &self.binding.shared;
        let config = shared.config.load_full();
        let attempts = attempts(shared, &config);
        let mut tried = Vec::new();
        loop {
            let Some((backend, _)) = self.binding.current() else {
                return Err(io::Error::other("no backend left to connect to"));
            };
            match connect(&backend, &self.tls, &config).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    backend
                        .connect_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tried.push(backend.addr());
                    // Moved first, so that this failure marking the backend down does not close
                    // the client connection with the backend's others.
                    let moved = tried.len() < attempts && self.binding.bind(&tried).is_some();
                    shared
                        .pool
                        .observe(&backend, false, Source::Passive, &format!("connect: {e}"));
                    if !moved {
                        return Err(e);
                    }
                    tracing::debug!(backend = %backend.name(), error = %e, "connect failed; trying another backend");
                }
            }
        }
    }
}

/// TCP (with the upstream keepalive and user timeout) then TLS to `backend`, each within the
/// connect timeout.
async fn connect(
    backend: &BackendState,
    tls: &Arc<rustls::ClientConfig>,
    config: &Config,
) -> io::Result<Conn> {
    let addr = backend.addr();
    let timeout = config.timeouts.connect;
    let tcp = tokio::time::timeout(timeout, proxylab_core::l4::dial::connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("dial tcp {addr}: i/o timeout"),
            )
        })?
        .map_err(|e| io::Error::new(e.kind(), format!("dial tcp {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let _ = proxylab_core::runtime::set_keepalive(&tcp, config.timeouts.keepalive);
    let _ = proxylab_core::runtime::set_user_timeout(&tcp, config.timeouts.user_timeout);
    let local = tcp.local_addr()?;
    let name = match &backend.config.server_name {
        Some(n) => ServerName::try_from(n.clone())
            .map_err(|e| io::Error::other(format!("serverName {n:?}: {e}")))?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    // The error is tokio-rustls's own, wrapping rustls's: core explains it (untrusted
    // certificate, wrong name, our certificate refused) in the 502.
    let stream = tokio::time::timeout(timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TLS handshake with {addr}: timed out"),
            )
        })??;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    Ok(Conn::new(stream, UpstreamAddrs { local }).negotiated_h2(h2))
}

impl tower::Service<Uri> for Dialer {
    type Response = Conn;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move { me.dial().await })
    }
}

/// An upstream connection as hyper's client wants it.
/// What the dialler hands hyper (core's [`Dialed`]): a TLS stream to a backend and its addresses.
type Conn = Dialed<tokio_rustls::client::TlsStream<TcpStream>, UpstreamAddrs>;

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(user: &str, groups: &[&str]) -> PeerIdentity {
        PeerIdentity {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            issuer: "CN=kubernetes".into(),
            chain: Vec::new(),
        }
    }

    #[test]
    fn the_certificate_replaces_whatever_identity_the_client_claimed() {
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", HeaderValue::from_static("system:admin"));
        h.append("x-remote-group", HeaderValue::from_static("system:masters"));
        h.insert("x-remote-extra-scopes", HeaderValue::from_static("all"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert("impersonate-user", HeaderValue::from_static("bob"));
        let user = assert_identity(&mut h, Some(&peer("jane", &["dev", "ops"])));
        assert_eq!(user.as_deref(), Some("jane"));
        assert_eq!(
            h.get_all("x-remote-user").iter().collect::<Vec<_>>(),
            ["jane"]
        );
        assert_eq!(
            h.get_all("x-remote-group").iter().collect::<Vec<_>>(),
            ["dev", "ops"]
        );
        assert!(h.get("x-remote-extra-scopes").is_none());
        assert!(h.get(header::AUTHORIZATION).is_none());
        // Authorized by the apiserver against jane; see the module docs.
        assert_eq!(h.get("impersonate-user").unwrap(), "bob");
    }

    #[test]
    fn without_a_certificate_spoofing_is_removed_and_the_token_passes() {
        let mut h = HeaderMap::new();
        h.insert("X-Remote-User", HeaderValue::from_static("system:admin"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert_eq!(assert_identity(&mut h, None), None);
        assert!(h.get("x-remote-user").is_none());
        assert_eq!(h.get(header::AUTHORIZATION).unwrap(), "Bearer t");
        // An empty CN asserts nothing, as kube's x509 authenticator ignores it.
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert_eq!(assert_identity(&mut h, Some(&peer("", &["dev"]))), None);
        assert!(h.get("x-remote-group").is_none());
        assert_eq!(h.get(header::AUTHORIZATION).unwrap(), "Bearer t");
    }
}
