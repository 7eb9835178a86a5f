//! The server: binding listeners, building the router (the request pipeline), serving and draining.
//!
//! The request pipeline is, outermost first:
//! 1. `core::serve` — TLS handshake (client certificate verified against the cluster CA and the
//!    front-proxy CA), HTTP/1.1 or HTTP/2, [`ConnInfo`](proxylab_core::serve::ConnInfo) in the request extensions;
//! 2. [`crate::authn`] — logs the request, authenticates it (see [`crate::auth`]), strips credentials,
//!    inserts [`UserInfo`](crate::UserInfo), or answers 401;
//! 3. the apiserver proxy's routes ([`crate::bastion`]: `…/proxy`, `pods/log|exec|attach|portforward`)
//!    and any [`ApiServerConfig::extra_routes`], else
//!    [`crate::routes`] — health, version, discovery, OpenAPI, then the resource REST of
//!    [`crate::rest`].
//!
//! Errors become `Status` JSON in one place ([`crate::response`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use proxylab_apimachinery::meta;
use proxylab_core::tls::{ClientAuth, ServerTls};
use proxylab_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::allocator::ServiceAllocator;
use crate::auth::Authenticator;
use crate::bootstrap::{bootstrap, reconcile_endpoints};
use crate::config::ApiServerConfig;
use crate::state::AppState;
use crate::switch::ListenerSwitch;

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
    #[error("the apiserver proxy: {0}")]
    Proxy(#[from] proxylab_bastion::ConfigError),
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
    /// One per listen address, each stoppable on its own (see [`crate::switch`]).
    switches: Vec<ListenerSwitch>,
    /// Cancelled when [`BoundApiServer::serve`]'s shutdown is: every listener drains.
    serving: CancellationToken,
    addrs: Vec<SocketAddr>,
    tls: bool,
    router: Router,
    state: Arc<AppState>,
    /// Addresses published in the `kubernetes` endpoints (withdrawn on shutdown), and their port.
    published: Vec<std::net::IpAddr>,
    published_port: u16,
    proxy: crate::bastion::Mounted,
}

impl std::fmt::Debug for BoundApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundApiServer")
            .field("addrs", &self.addrs)
            .field("tls", &self.tls)
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
        let proxy = crate::bastion::mount(config.proxy, config.kubelet_client.as_ref(), &addrs)?;
        // Fed from now on (also when only `router()` is used, in-process), until shutdown.
        proxy.feed(state.store.clone(), state.shutdown.clone());
        let extra = match config.extra_routes {
            Some(extra) => proxy.router().merge(extra),
            None => proxy.router(),
        };
        let router = build_router(state.clone(), Some(extra));
        let serving = CancellationToken::new();
        let switches = listeners
            .into_iter()
            .zip(addrs.iter().copied())
            .map(|(l, addr)| {
                ListenerSwitch::new(l, addr, tls.clone(), router.clone(), serving.clone())
            })
            .collect();
        Ok(BoundApiServer {
            switches,
            serving,
            addrs,
            tls: tls.is_some(),
            router,
            state,
            published,
            published_port: port,
            proxy,
        })
    }
}

impl BoundApiServer {
    /// The bound addresses (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// The apiserver proxy: its instances (one per listen address) carry the hop records.
    pub fn proxy(&self) -> &proxylab_bastion::Bastion {
        &self.proxy.bastion
    }

    /// One switch per listen address (in `local_addrs` order): stop one to see the apiserver on
    /// that address crash, start it to see it come back. Valid once [`BoundApiServer::serve`] runs.
    pub fn switches(&self) -> Vec<ListenerSwitch> {
        self.switches.clone()
    }

    /// The full router (authentication included), for serving it elsewhere or testing in-process.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves every listener until `shutdown` is cancelled, then drains (watches end at once).
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let state = self.state.clone();
        {
            // Open exec sessions and port-forwards end when the server stops.
            let (proxy, token) = (self.proxy.bastion.clone(), shutdown.clone());
            tokio::spawn(async move {
                token.cancelled().await;
                proxy.shutdown().await;
            });
        }
        let watcher = shutdown.clone();
        tokio::spawn(async move {
            watcher.cancelled().await;
            state.shutdown.cancel();
        });
        for s in &self.switches {
            s.begin().await;
        }
        // Listeners come and go with their switches until the server's shutdown; then every one
        // that serves drains.
        shutdown.cancelled().await;
        self.serving.cancel();
        let mut result = Ok(());
        let proxy = self.proxy.bastion.clone();
        for s in &self.switches {
            if let Err(e) = s.finish().await
                && result.is_ok()
            {
                result = Err(e);
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
        proxy.shutdown().await;
        result
    }
}

fn build_router(state: Arc<AppState>, extra: Option<Router>) -> Router {
    let mut r: Router = Router::new()
        .fallback(crate::routes::dispatch)
        .with_state(state.clone());
    if let Some(extra) = extra {
        r = r.merge(extra);
    }
    r.layer(middleware::from_fn_with_state(
        state,
        crate::authn::authenticate,
    ))
}
