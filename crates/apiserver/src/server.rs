//! The server: binding listeners, the router, the request pipeline, and the bootstrap objects.
//!
//! The request pipeline is, outermost first:
//! 1. `core::serve` — TLS handshake (client certificate verified against the cluster CA and the
//!    front-proxy CA), HTTP/1.1 or HTTP/2, [`ConnInfo`] in the request extensions;
//! 2. [`authenticate`] — logs the request, authenticates it (see [`crate::auth`]), strips credentials,
//!    inserts [`UserInfo`], or answers 401;
//! 3. extra routes (the bastion's proxy routes), else [`dispatch`] — health, version, discovery,
//!    OpenAPI, then the resource REST of [`crate::rest`].
//!
//! Errors become `Status` JSON in one place ([`crate::response`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use proxylab_apimachinery::meta;
use proxylab_apimachinery::status::Status;
use proxylab_core::serve::ConnInfo;
use proxylab_core::tls::{ClientAuth, ServerTls};
use proxylab_store::{ObjectKey, Store, StoreError};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::allocator::ServiceAllocator;
use crate::auth::{Authenticator, UserInfo, anonymous_allowed};
use crate::config::ApiServerConfig;
use crate::discovery;
use crate::response::{self, ApiError, Format};
use crate::rest::{self, Query};

/// State shared by every handler of one [`BoundApiServer`] (all its listeners).
pub(crate) struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    pub alloc: ServiceAllocator,
    pub max_body: usize,
    pub bookmark_interval: Duration,
    pub default_watch_timeout: Duration,
    /// Signs TokenRequest tokens (`None`: the API is off).
    pub sa_signing_key: Option<Vec<u8>>,
    pub sa_issuer: String,
    pub metrics: crate::metrics::ApiMetrics,
    /// Cancelled when shutdown begins: ends watches, fails `/readyz`.
    pub shutdown: CancellationToken,
}

/// Errors of binding and serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS configuration: {0}")]
    Tls(#[from] proxylab_core::tls::TlsError),
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    #[error("serving {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The Kubernetes-API-compatible front-end. See [`ApiServer::bind`].
pub struct ApiServer;

/// A bound server: every listener is open; nothing is served until [`BoundApiServer::serve`].
pub struct BoundApiServer {
    listeners: Vec<TcpListener>,
    addrs: Vec<SocketAddr>,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    state: Arc<AppState>,
    /// Addresses published in the `kubernetes` endpoints (withdrawn on shutdown), and their port.
    published: Vec<std::net::IpAddr>,
    published_port: u16,
}

impl std::fmt::Debug for BoundApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundApiServer")
            .field("addrs", &self.addrs)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Binds every listen address of `config` over the shared `store`, builds TLS, and (when
    /// `config.bootstrap`) makes sure the default namespaces and the `default/kubernetes` Service and
    /// its endpoints exist, as kube-apiserver's bootstrap controller does.
    pub async fn bind(
        config: ApiServerConfig,
        store: Arc<dyn Store>,
    ) -> Result<BoundApiServer, ServerError> {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for addr in &config.listen {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: *addr,
                    source,
                })?;
            addrs.push(l.local_addr().map_err(|source| ServerError::Bind {
                addr: *addr,
                source,
            })?);
            listeners.push(l);
        }
        let tls = match &config.serving {
            Some(s) => {
                let mut cas = config.client_ca.clone();
                if let Some(rh) = &config.requestheader {
                    cas.extend(rh.ca.iter().cloned());
                }
                let mode = if cas.is_empty() {
                    ClientAuth::None
                } else {
                    ClientAuth::Optional
                };
                Some(
                    ServerTls::new(s.chain.clone(), s.key.clone_key())
                        .client_cas(cas, mode)
                        .build()?,
                )
            }
            None => None,
        };
        let state = Arc::new(AppState {
            auth: Authenticator::new(
                config.client_ca.clone(),
                config.requestheader.clone(),
                config.static_tokens.clone(),
                config.service_account_keys.clone(),
                config.service_account_issuer.clone(),
                store.clone(),
            ),
            alloc: ServiceAllocator::new(
                store.clone(),
                config.service_cluster_ip_range,
                config.service_node_port_range.clone(),
            ),
            store,
            max_body: config.max_request_body_bytes,
            bookmark_interval: config.bookmark_interval,
            default_watch_timeout: config.default_watch_timeout,
            sa_signing_key: config.service_account_signing_key.clone(),
            metrics: crate::metrics::ApiMetrics::new(config.metrics.clone()),
            sa_issuer: config.service_account_issuer.clone(),
            shutdown: CancellationToken::new(),
        });
        let port = addrs.first().map(|a| a.port()).unwrap_or(6443);
        let mut published = Vec::new();
        if config.bootstrap {
            published = match config.advertise_address {
                Some(a) => vec![a],
                None => addrs.iter().map(|a| a.ip()).collect(),
            };
            bootstrap(&state, &published, port).map_err(ServerError::Bootstrap)?;
        }
        let router = build_router(state.clone(), config.extra_routes);
        Ok(BoundApiServer {
            listeners,
            addrs,
            tls,
            router,
            state,
            published,
            published_port: port,
        })
    }
}

impl BoundApiServer {
    /// The bound addresses (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// The full router (authentication included), for serving it elsewhere or testing in-process.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves every listener until `shutdown` is cancelled, then drains (watches end at once).
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let state = self.state.clone();
        let watcher = shutdown.clone();
        tokio::spawn(async move {
            watcher.cancelled().await;
            state.shutdown.cancel();
        });
        let mut tasks = tokio::task::JoinSet::new();
        for (l, addr) in self.listeners.into_iter().zip(self.addrs.iter().copied()) {
            info!(%addr, tls = self.tls.is_some(), "apiserver listening");
            let tls = self.tls.clone();
            let router = self.router.clone();
            let token = shutdown.clone();
            tasks.spawn(async move {
                proxylab_core::serve::serve_http(l, tls, router, token)
                    .await
                    .map_err(|source| ServerError::Serve { addr, source })
            });
        }
        let mut result = Ok(());
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Err(e)) if result.is_ok() => result = Err(e),
                Err(e) => warn!(error = %e, "listener task failed"),
                _ => {}
            }
        }
        // Graceful shutdown: stop advertising ourselves, so clients of the `kubernetes` Service (and
        // anything balancing over its endpoints) stop picking this front-end.
        if !self.published.is_empty()
            && let Err(e) = reconcile_endpoints(
                &self.state.store,
                &[],
                &self.published,
                self.published_port,
                &meta::now_rfc3339(),
            )
        {
            warn!(error = %e, "could not withdraw from the kubernetes endpoints");
        }
        result
    }
}

fn build_router(state: Arc<AppState>, extra: Option<Router>) -> Router {
    let mut r: Router = Router::new().fallback(dispatch).with_state(state.clone());
    if let Some(extra) = extra {
        r = r.merge(extra);
    }
    r.layer(middleware::from_fn_with_state(state, authenticate))
}

/// Authentication + request log (kube-apiserver's httplog line: verb, URI, user, status, latency).
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let remote = conn
        .as_ref()
        .map(|c| c.remote.to_string())
        .unwrap_or_default();
    let user = match state.auth.authenticate(req.headers(), conn.as_ref()) {
        Ok(Some(u)) => Some(u),
        Ok(None) if anonymous_allowed(uri.path()) => Some(UserInfo::anonymous()),
        Ok(None) => None,
        Err(e) => {
            info!(%method, %uri, %remote, error = %e, "authentication failed");
            None
        }
    };
    let Some(user) = user else {
        let r = response::status(&Status::unauthorized());
        info!(%method, %uri, %remote, status = 401, "request");
        return r;
    };
    // Credentials stop here: nothing downstream (notably the bastion proxy) may forward them.
    let strip: Vec<String> = state.auth.requestheader_names();
    let prefixes = state.auth.requestheader_prefixes();
    let h = req.headers_mut();
    h.remove(http::header::AUTHORIZATION);
    for n in &strip {
        h.remove(n.as_str());
    }
    let extra_names: Vec<http::HeaderName> = h
        .keys()
        .filter(|k| prefixes.iter().any(|p| k.as_str().starts_with(p.as_str())))
        .cloned()
        .collect();
    for n in extra_names {
        h.remove(n);
    }
    let username = user.username.clone();
    req.extensions_mut().insert(user);
    let (verb, resource) = crate::metrics::classify(&method, uri.path(), uri.query());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            verb,
            resource,
            code: status,
        })
        .inc();
    let latency_ms = start.elapsed().as_millis() as u64;
    // Reads are the bulk (informers, health probes): log them at debug; writes and failures at info,
    // as kube-apiserver's httplog does at its default verbosity.
    if method == http::Method::GET && status < 400 {
        debug!(%method, %uri, %remote, user = %username, status, latency_ms, "request");
    } else {
        info!(%method, %uri, %remote, user = %username, status, latency_ms, "request");
    }
    resp
}

/// Routes everything that is not an extra route.
async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let q = Query::parse(parts.uri.query());
    let fmt = Format::from_request(&parts.headers, q.get("pretty"));
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let is_read = parts.method == http::Method::GET || parts.method == http::Method::HEAD;

    if let Some(r) = discovery::health(&state, &segs, &q) {
        return if is_read { r } else { method_not_allowed() };
    }
    match segs.as_slice() {
        ["metrics"] => {
            return if is_read {
                response::with_type(
                    StatusCode::OK,
                    state.metrics.registry.encode().into_bytes(),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            } else {
                method_not_allowed()
            };
        }
        ["version"] => {
            return if is_read {
                response::object(StatusCode::OK, &discovery::version(), fmt)
            } else {
                method_not_allowed()
            };
        }
        [] => {
            let paths = json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version"]});
            return response::object(StatusCode::OK, &paths, fmt);
        }
        _ => {}
    }
    let server_address = parts
        .extensions
        .get::<ConnInfo>()
        .map(|c| c.local.to_string())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    if is_read {
        if let Some(r) = discovery::discovery(&segs, &parts.headers, fmt, &server_address) {
            return r.unwrap_or_else(IntoResponse::into_response);
        }
        if let Some(r) = discovery::openapi(&segs, &parts.headers, fmt) {
            return r.unwrap_or_else(IntoResponse::into_response);
        }
    }
    if let ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"] = segs.as_slice() {
        return self_subject_review(&parts, fmt);
    }
    let target = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => rest::parse_target("", v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => rest::parse_target(g, v, rest),
        _ => Err(Status::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    };
    let target = match target {
        Ok(t) => t,
        Err(s) => {
            // Known discovery/openapi paths exist but only for GET.
            if !is_read
                && (discovery::discovery(&segs, &parts.headers, fmt, "").is_some()
                    || discovery::openapi(&segs, &parts.headers, fmt).is_some())
            {
                return method_not_allowed();
            }
            return response::status(&s);
        }
    };
    rest::handle(&state, &parts.method, target, &q, &parts.headers, body)
        .await
        .unwrap_or_else(|e: ApiError| e.into_response())
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`): tells the caller
/// who the apiserver thinks they are — useful in a lab about proxies that add or assert identities.
fn self_subject_review(parts: &http::request::Parts, fmt: Format) -> Response {
    if parts.method != http::Method::POST {
        return method_not_allowed();
    }
    let Some(user) = parts.extensions.get::<UserInfo>() else {
        return response::status(&Status::unauthorized());
    };
    let mut info = json!({"username": user.username, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    let review = json!({
        "kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null}, "status": {"userInfo": info},
    });
    response::object(StatusCode::CREATED, &review, fmt)
}

fn method_not_allowed() -> Response {
    response::status(&Status::new(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    ))
}

/// Ensures what kube-apiserver's bootstrap controller maintains: the system namespaces, and the
/// `default/kubernetes` Service (first ClusterIP of the range, port 443 → the secure port) with
/// Endpoints and an EndpointSlice listing every apiserver address (each front-end adds its own, as the
/// lease endpoint reconciler does).
fn bootstrap(
    state: &Arc<AppState>,
    advertise: &[std::net::IpAddr],
    port: u16,
) -> Result<(), String> {
    let store = &state.store;
    let now = meta::now_rfc3339();
    let create_if_missing = |key: ObjectKey, obj: Value| -> Result<(), String> {
        match store.create(&key, obj) {
            Ok(_) | Err(StoreError::AlreadyExists) => Ok(()),
            Err(e) => Err(format!("{key}: {e}")),
        }
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        create_if_missing(
            ObjectKey::new("namespaces", None, ns),
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now,
                    "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        )?;
    }
    let svc_key = ObjectKey::new("services", Some("default"), "kubernetes");
    if store.get(&svc_key).map_err(|e| e.to_string())?.is_none() {
        let mut svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now, "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
            "status": {"loadBalancer": {}}});
        if let Some(ip) = state.alloc.first_ip() {
            svc["spec"]["clusterIP"] = json!(ip.to_string());
        }
        let got = state
            .alloc
            .admit(&mut svc, None)
            .map_err(|s| s.message.clone())?;
        if let Err(e) = store.create(&svc_key, svc) {
            state.alloc.release(&got);
            if e != StoreError::AlreadyExists {
                return Err(e.to_string());
            }
        }
    }
    reconcile_endpoints(store, advertise, &[], port, &now)
}

/// Adds `add` to and removes `remove` from the `default/kubernetes` Endpoints and EndpointSlice
/// (compare-and-swap, retried) — kube-apiserver's endpoint reconciler: each apiserver publishes its
/// address while it serves and withdraws it on graceful shutdown.
fn reconcile_endpoints(
    store: &Arc<dyn Store>,
    add: &[std::net::IpAddr],
    remove: &[std::net::IpAddr],
    port: u16,
    now: &str,
) -> Result<(), String> {
    for _ in 0..16 {
        let key = ObjectKey::new("endpoints", Some("default"), "kubernetes");
        let cur = store.get(&key).map_err(|e| e.to_string())?;
        let mut ips: Vec<String> = cur
            .as_ref()
            .and_then(|c| c["subsets"][0]["addresses"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["ip"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let before = ips.clone();
        for a in add {
            if !ips.contains(&a.to_string()) {
                ips.push(a.to_string());
            }
        }
        ips.retain(|ip| !remove.iter().any(|r| r.to_string() == *ip));
        ips.sort();
        if cur.is_some() && ips == before {
            break;
        }
        let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        let subsets = if ips.is_empty() {
            json!([])
        } else {
            json!([{"addresses": addresses, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}])
        };
        let ep = json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default", "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": subsets});
        let endpoints: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}}))
            .collect();
        let family = if ips.iter().any(|i| i.contains(':')) {
            "IPv6"
        } else {
            "IPv4"
        };
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default", "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now,
                "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}},
            "addressType": family, "endpoints": endpoints,
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
        let res = match &cur {
            Some(c) => {
                let mut ep = ep;
                ep["metadata"]["uid"] = c["metadata"]["uid"].clone();
                ep["metadata"]["creationTimestamp"] = c["metadata"]["creationTimestamp"].clone();
                let rv = meta::resource_version(c).and_then(|s| s.parse().ok());
                store.update(&key, ep, rv)
            }
            None => store.create(&key, ep),
        };
        match res {
            Ok(_) => {
                let skey = ObjectKey::new(
                    "endpointslices.discovery.k8s.io",
                    Some("default"),
                    "kubernetes",
                );
                let r = match store.get(&skey).map_err(|e| e.to_string())? {
                    Some(old) => {
                        let mut s = slice;
                        s["metadata"]["uid"] = old["metadata"]["uid"].clone();
                        store.update(&skey, s, None)
                    }
                    None => store.create(&skey, slice),
                };
                match r {
                    Ok(_) | Err(StoreError::AlreadyExists) => {}
                    Err(e) => return Err(e.to_string()),
                }
                break;
            }
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists | StoreError::NotFound) => {
                continue;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}
