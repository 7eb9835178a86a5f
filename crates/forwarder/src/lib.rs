//! # proxylab-forwarder — proxy type 3: kube-proxy as a real L4 TCP/UDP load balancer
//!
//! kube-proxy runs on every node. It proxies TCP and UDP, does not understand HTTP, load-balances, and
//! is used only to reach Services. Today it programs iptables/IPVS/nftables and never touches a byte;
//! before Kubernetes 1.26 its *userspace* mode really relayed bytes: one socket per service port,
//! accept, pick an endpoint, dial it, copy both ways. This crate is that proxy, with the Service
//! semantics of today:
//!
//! - **what it routes on**: `proxylab_core::cluster` — Services and EndpointSlices from a static file
//!   of plain manifests ([`manifests`]), from a cluster through `proxylab_kube::watch`, or from a
//!   [`ClusterView`] someone else feeds (the lab runs one forwarder per node on the lab apiserver's
//!   watches);
//! - **where it listens** (`proxy` module): every ClusterIP:port, every NodePort on the node's addresses,
//!   and externalIPs, TCP and UDP, opened and closed as services come and go — closing a listener never
//!   touches established connections. Every socket is exclusive (no SO_REUSEPORT: another process
//!   gets "address in use"), one per address in a process: the forwarders of one process (the lab's
//!   nodes) share it through a [`ListenerSet`], and a stated rule picks the one forwarder that
//!   serves each client — its node's, by the client's source address ([`listeners`]);
//! - **how it picks**: `proxylab_core::balance` — ready endpoints (else serving+terminating), the
//!   Cluster or Local set by traffic policy, round-robin over a shuffled list / random / least-conn,
//!   ClientIP affinity;
//! - **how it relays**: `proxylab_core::l4` — kube-proxy's dial schedule (250 ms, 500 ms, 1 s, 2 s, the
//!   next endpoint each time, from `--source-address` when given), then `splice(2)` both ways keeping half-close; UDP sessions per client
//!   with an idle timeout, dropped the moment their endpoint disappears;
//! - **how it is watched**: a hop record per TCP connection and per UDP session, kube-proxy's `/healthz`
//!   on `--healthz-bind-address` (:10256), the `healthCheckNodePort` servers for
//!   `externalTrafficPolicy: Local`, and the admin endpoint (`/metrics`, `/debug/hops`).
//!
//! The component follows the workspace's two-step pattern: [`Forwarder::bind`] loads the source and
//! binds the health and admin sockets (errors here are configuration errors), [`Forwarder::serve`]
//! runs until the token is cancelled, then drains.

#![deny(unsafe_code)]

pub mod args;
mod health;
pub mod listeners;
pub mod manifests;
mod proxy;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proxylab_core::balance::Algorithm;
use proxylab_core::cluster::{ClusterView, Protocol, ServiceKey};
use proxylab_core::l4::tcp::{KUBE_PROXY_DIAL_TIMEOUTS, RelayMode};
use proxylab_core::l4::udp::UdpConfig;
use proxylab_core::telemetry::AdminState;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use args::ForwarderArgs;
pub use listeners::ListenerSet;
pub use manifests::ManifestError;
pub use proxy::{Frontend, ListenerInfo};

/// Where the cluster model comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A manifest file, reloaded when it changes and on SIGHUP.
    File(PathBuf),
    /// A cluster, watched through a kubeconfig (kubectl's loading rules when `None`).
    Kube { kubeconfig: Option<PathBuf> },
    /// A view fed by someone else (the lab's shared watches, tests).
    View(ClusterView),
}

/// Everything a forwarder needs. [`ForwarderArgs::to_config`] builds one from flags.
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    pub source: Source,
    /// The node this forwarder stands for (Local traffic policies, Node addresses).
    pub node_name: Option<String>,
    /// Addresses for NodePorts; empty → the Node object's addresses, else 127.0.0.1.
    pub node_ips: Vec<IpAddr>,
    pub udp: UdpConfig,
    /// kube-proxy's `/healthz` server (`None`: off).
    pub healthz_address: Option<SocketAddr>,
    /// The admin endpoint (`None`: off).
    pub admin_address: Option<SocketAddr>,
    pub algorithm: Algorithm,
    pub relay_mode: RelayMode,
    /// One dial attempt per entry, the next endpoint each time.
    pub dial_timeouts: Vec<Duration>,
    /// How long established connections may finish after shutdown before they are cut.
    pub drain_timeout: Duration,
    /// TCP keepalive idle time on both legs.
    pub keepalive: Duration,
    /// Shared hop log and metrics (the lab passes one for all components); a fresh one otherwise.
    pub admin: Option<AdminState>,
    /// The instance name in hop records (default: the node name, else `forwarder`).
    pub instance: Option<String>,
    /// Threads that relay TCP and UDP, each with a single-threaded runtime and its own socket for
    /// every service port (UDP sessions are sharded by socket); 0 = on the caller's runtime (the
    /// lab's choice). The binary runs one per CPU.
    pub serving_threads: usize,
    /// The address upstream connections and UDP sessions leave from, so endpoints and hop records
    /// see this node (`None`: the kernel's choice). The lab sets each node's address.
    pub source_address: Option<IpAddr>,
    /// The process's service sockets, shared with the other forwarders of the process (the lab's
    /// nodes): one exclusive socket per address, each client served by one forwarder (see
    /// [`listeners`]). `None`: a set of this forwarder's own.
    pub listeners: Option<ListenerSet>,
}

impl ForwarderConfig {
    /// Defaults as kube-proxy's, with `source`, no health or admin server, NodePorts on 127.0.0.1.
    pub fn new(source: Source) -> Self {
        Self {
            source,
            node_name: None,
            node_ips: Vec::new(),
            udp: UdpConfig::default(),
            healthz_address: None,
            admin_address: None,
            algorithm: Algorithm::RoundRobin,
            relay_mode: RelayMode::Auto,
            dial_timeouts: KUBE_PROXY_DIAL_TIMEOUTS.to_vec(),
            drain_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(60),
            admin: None,
            instance: None,
            serving_threads: 0,
            source_address: None,
            listeners: None,
        }
    }
}

/// Why a forwarder could not start. [`ForwarderError::is_config`] errors are the user's to fix (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ForwarderError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    Kube(String),
    #[error("{what}: {source}")]
    Bind {
        what: &'static str,
        source: std::io::Error,
    },
    /// A service address was held by another socket when the forwarder started (the error names
    /// it).
    #[error("service listener: {0}")]
    InUse(std::io::Error),
}

impl ForwarderError {
    /// A bad file, kubeconfig or flag (as opposed to a runtime failure).
    pub fn is_config(&self) -> bool {
        matches!(self, ForwarderError::Manifest(_) | ForwarderError::Kube(_))
    }
}

/// The addresses a bound forwarder serves its own endpoints on (service listeners come and go with the
/// cluster; see [`ForwarderHandle::listeners`]).
#[derive(Debug, Clone, Copy)]
pub struct ForwarderAddrs {
    pub healthz: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

enum Feed {
    None,
    File(PathBuf),
    Kube(Box<proxylab_kube::watch::WatchClient>),
}

/// A bound forwarder, ready to [`serve`](Forwarder::serve).
pub struct Forwarder {
    shared: Arc<proxy::Shared>,
    healthz: Option<TcpListener>,
    admin: Option<TcpListener>,
    feed: Feed,
}

/// A cheap handle to observe a running forwarder (tests, the lab).
#[derive(Clone)]
pub struct ForwarderHandle {
    shared: Arc<proxy::Shared>,
}

impl Forwarder {
    /// Loads the source (a bad manifest file fails here, with file, line and field) and binds the
    /// health and admin sockets. Service listeners are opened by [`serve`](Forwarder::serve).
    pub async fn bind(config: ForwarderConfig) -> Result<Self, ForwarderError> {
        let (view, feed) = match &config.source {
            Source::File(path) => (
                ClusterView::new(manifests::load(path)?),
                Feed::File(path.clone()),
            ),
            Source::Kube { kubeconfig } => {
                let opts = proxylab_kube::KubeconfigOptions {
                    kubeconfig: kubeconfig.clone(),
                    ..Default::default()
                };
                let client = proxylab_kube::watch::client(&opts)
                    .await
                    .map_err(|e| ForwarderError::Kube(e.to_string()))?;
                (ClusterView::default(), Feed::Kube(Box::new(client)))
            }
            Source::View(v) => (v.clone(), Feed::None),
        };
        let healthz = match config.healthz_address {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|source| ForwarderError::Bind {
                        what: "healthz address",
                        source,
                    })?,
            ),
            None => None,
        };
        let admin = match config.admin_address {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|source| ForwarderError::Bind {
                        what: "admin address",
                        source,
                    })?,
            ),
            None => None,
        };
        let workers = proxylab_core::runtime::ServingThreads::start(config.serving_threads, |i| {
            format!("forwarder-{i}")
        })
        .map_err(|source| ForwarderError::Bind {
            what: "serving threads",
            source,
        })?;
        let shared = proxy::Shared::new(&config, view, workers);
        Ok(Self {
            shared,
            healthz,
            admin,
            feed,
        })
    }

    pub fn local_addrs(&self) -> ForwarderAddrs {
        ForwarderAddrs {
            healthz: self.healthz.as_ref().and_then(|l| l.local_addr().ok()),
            admin: self.admin.as_ref().and_then(|l| l.local_addr().ok()),
        }
    }

    /// The cluster model this forwarder routes on.
    pub fn view(&self) -> ClusterView {
        self.shared.view.clone()
    }

    pub fn handle(&self) -> ForwarderHandle {
        ForwarderHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` is cancelled: follows the source, keeps listeners in line with the
    /// cluster, relays. On shutdown, stops accepting and lets established connections finish for up to
    /// the drain timeout.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ForwarderError> {
        let Forwarder {
            shared,
            healthz,
            admin,
            feed,
        } = self;
        let stop = shutdown.child_token();
        if let Some(l) = healthz {
            tokio::spawn(health::serve_healthz(l, shared.clone(), stop.clone()));
        }
        if let Some(l) = admin {
            let router = proxylab_core::telemetry::admin_router(shared.admin.clone());
            let stop = stop.clone();
            tokio::spawn(async move {
                let options = proxylab_core::serve::ServeOptions::admin();
                let served = proxylab_core::serve::serve_http_with(l, None, router, stop, options);
                if let Err(e) = served.await {
                    tracing::warn!(error = %e, "admin endpoint failed");
                }
            });
        }
        match feed {
            Feed::None => {}
            Feed::File(path) => {
                tokio::spawn(proxy::follow_file(path, shared.view.clone(), stop.clone()));
            }
            Feed::Kube(client) => {
                let opts = proxylab_kube::watch::WatchOptions {
                    nodes: shared.node_name.is_some(),
                    ..Default::default()
                };
                tokio::spawn(proxylab_kube::watch::watch_cluster(
                    *client,
                    shared.view.clone(),
                    opts,
                    stop.clone(),
                ));
            }
        }
        proxy::run(shared, stop)
            .await
            .map_err(ForwarderError::InUse)
    }
}

impl ForwarderHandle {
    /// The service listeners open now.
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        self.shared.listeners()
    }

    /// Waits until the forwarder has applied snapshot revision `rev` (or a later one) to its listeners
    /// and balancers.
    pub async fn applied(&self, rev: u64) {
        let mut rx = self.shared.applied.subscribe();
        let _ = rx.wait_for(|r| r.is_some_and(|r| r >= rev)).await;
    }

    /// Ready as kube-proxy's `/healthz` says: the source has synced and its latest snapshot is applied.
    pub fn is_ready(&self) -> bool {
        let snap = self.shared.view.snapshot();
        let applied = *self.shared.applied.borrow();
        snap.synced && applied.is_some_and(|a| a >= snap.revision)
    }

    /// The endpoints the balancer of `service`/`port` would use from this kind of frontend.
    pub fn endpoints(
        &self,
        service: &ServiceKey,
        port: &str,
        protocol: Protocol,
        frontend: Frontend,
    ) -> Vec<SocketAddr> {
        self.shared.endpoints(service, port, protocol, frontend)
    }

    /// The upstream of the live UDP session of `client` on `listener`.
    pub fn udp_session(&self, listener: SocketAddr, client: SocketAddr) -> Option<SocketAddr> {
        self.shared.udp_session(listener, client)
    }

    /// The hop log and metrics.
    pub fn admin(&self) -> AdminState {
        self.shared.admin.clone()
    }
}
