//! # proxylab-cloud-lb — proxy type 5: the cloud load balancer for `type: LoadBalancer`
//!
//! A cloud provider answers a Service of `type: LoadBalancer` by creating a load balancer with an
//! address of its own, writing that address into `status.loadBalancer.ingress` (so
//! `kubectl get svc` shows an EXTERNAL-IP instead of `<pending>`) and forwarding L4 traffic from it
//! to the nodes' NodePorts. The models: cloud-provider-kind (one Envoy per Service), MetalLB (address
//! pools, annotations, Events), k3s ServiceLB.
//!
//! Two halves, as a cloud's own load balancer has them: a **controller** that gives Services their
//! addresses and says so in the API, and a **data plane** that forwards the traffic.
//!
//! Controller (pure, tested on its own, as every controller in the workspace):
//!
//! - [`pool`]: address pools (MetalLB's `IPAddressPool`: CIDRs or ranges, `autoAssign`,
//!   `avoidBuggyIPs`); the lab's default is `127.0.50.0/24`.
//! - [`service`]: a Service as the load balancer reads it — `spec.loadBalancerClass` (unset or
//!   [`service::DEFAULT_CLASS`]), `spec.loadBalancerIP`, MetalLB's `metallb.io/loadBalancerIPs`,
//!   `address-pool` and `allow-shared-ip` annotations, ports, traffic policy, source ranges.
//! - [`alloc`]: which address a Service may hold: requested addresses, named pools, sharing (same key,
//!   disjoint ports), first free address otherwise.
//! - [`reconcile`]: the pass over all Services: keep valid addresses, adopt addresses shown in
//!   statuses, allocate the rest; the finalizer `service.kubernetes.io/load-balancer-cleanup`,
//!   `status.loadBalancer.ingress` (ip, `ipMode: Proxy`, ports), Events with MetalLB's reasons
//!   (`IPAllocated`, `AllocationFailed`, `ClearAssignment`); release on deletion and on type or
//!   class change.
//! - [`state`]: the allocations in a state file, so the same Service gets the same address after a
//!   restart.
//! - [`controller`]: the driver — a Service watch through `proxylab-kube`, a pass per burst of
//!   changes, the writes (merge patches of finalizers and of the status subresource, Events).
//!
//! Data plane:
//!
//! - [`frontend`]: a listener's configuration per ingress address, protocol and port.
//! - [`nodes`]: which nodes get a Service's traffic (Ready, not excluded, and for
//!   `externalTrafficPolicy: Local` only those with endpoints).
//! - [`health`]: node checks on kube-proxy's `:10256/healthz` or the `healthCheckNodePort`.
//! - [`dataplane`]: TCP and UDP listeners on `proxylab_core::l4`, source ranges, PROXY protocol
//!   v1/v2 towards the nodes, hop records.
//!
//! [`CloudLb`] puts them together the workspace's two-step way: [`CloudLb::bind`] reads the
//! kubeconfig and the state file and binds the admin socket (errors here are the user's to fix),
//! [`CloudLb::serve`] runs until its token is cancelled. The `cloud-lb` binary and the lab both use
//! it; docs/cloud-lb.md is the guide.

#![forbid(unsafe_code)]

pub mod alloc;
pub mod args;
pub mod controller;
pub mod dataplane;
pub mod frontend;
pub mod health;
pub mod nodes;
pub mod pool;
pub mod reconcile;
pub mod service;
pub mod state;

pub use alloc::{AllocError, Allocation, Allocations};
pub use args::CloudLbArgs;
pub use pool::{Pool, PoolError, Pools};
pub use reconcile::{Action, EventSpec, Plan, reconcile};
pub use service::{DEFAULT_CLASS, FINALIZER, LbService};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use proxylab_core::cluster::ClusterView;
use proxylab_core::telemetry::AdminState;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use controller::{Controller, ControllerConfig, Published};
use dataplane::{DataPlane, DataPlaneConfig, ListenerInfo};

/// Everything a cloud load balancer needs. [`CloudLbArgs::to_config`] builds one from flags.
#[derive(Debug, Clone)]
pub struct CloudLbConfig {
    /// kubectl's loading rules when `None`.
    pub kubeconfig: Option<PathBuf>,
    pub pools: Pools,
    pub class: String,
    pub state_file: Option<PathBuf>,
    /// The admin endpoint (`None`: off).
    pub admin_address: Option<SocketAddr>,
    pub dataplane: DataPlaneConfig,
    /// Shared hop log and metrics (the lab passes one); a fresh one otherwise.
    pub admin: Option<AdminState>,
}

impl CloudLbConfig {
    /// Defaults with `pools`: kubectl's kubeconfig, the proxylab class, no state file, no admin.
    pub fn new(pools: Pools) -> Self {
        Self {
            kubeconfig: None,
            pools,
            class: DEFAULT_CLASS.to_owned(),
            state_file: None,
            admin_address: None,
            dataplane: DataPlaneConfig::default(),
            admin: None,
        }
    }
}

/// Why the load balancer could not start. [`CloudLbError::is_config`] errors exit 2.
#[derive(Debug, thiserror::Error)]
pub enum CloudLbError {
    #[error("{0}")]
    Kube(String),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("admin address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl CloudLbError {
    /// A bad kubeconfig or state file (as opposed to a runtime failure).
    pub fn is_config(&self) -> bool {
        matches!(self, CloudLbError::Kube(_) | CloudLbError::State(_))
    }
}

/// A bound cloud load balancer, ready to [`serve`](CloudLb::serve).
pub struct CloudLb {
    rest: proxylab_kube::RestClient,
    cfg: CloudLbConfig,
    allocations: Allocations,
    admin_listener: Option<TcpListener>,
    admin: AdminState,
    dataplane: Arc<DataPlane>,
    view: ClusterView,
    published: watch::Sender<Published>,
}

/// A cheap handle to observe a running load balancer (tests, the lab).
#[derive(Clone)]
pub struct CloudLbHandle {
    dataplane: Arc<DataPlane>,
    published: watch::Receiver<Published>,
    admin: AdminState,
}

impl CloudLb {
    /// Reads the kubeconfig and the state file and binds the admin endpoint.
    pub async fn bind(cfg: CloudLbConfig) -> Result<Self, CloudLbError> {
        let opts = proxylab_kube::KubeconfigOptions {
            kubeconfig: cfg.kubeconfig.clone(),
            ..Default::default()
        };
        let rest = proxylab_kube::RestClient::new(&opts)
            .await
            .map_err(|e| CloudLbError::Kube(e.to_string()))?;
        let allocations = match &cfg.state_file {
            Some(p) => state::load(p)?,
            None => Allocations::new(),
        };
        let admin_listener = match cfg.admin_address {
            Some(addr) => Some(
                proxylab_core::runtime::bind_tcp(addr, Default::default())
                    .map_err(|source| CloudLbError::Bind { addr, source })?,
            ),
            None => None,
        };
        let admin = cfg.admin.clone().unwrap_or_default();
        let dataplane = DataPlane::new(cfg.dataplane.clone(), admin.clone());
        Ok(Self {
            rest,
            cfg,
            allocations,
            admin_listener,
            admin,
            dataplane,
            view: ClusterView::default(),
            published: watch::channel(Published::default()).0,
        })
    }

    /// The admin endpoint's address, when it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn handle(&self) -> CloudLbHandle {
        CloudLbHandle {
            dataplane: self.dataplane.clone(),
            published: self.published.subscribe(),
            admin: self.admin.clone(),
        }
    }

    /// Watches, allocates, writes and forwards until `shutdown`; then stops accepting and drains.
    pub async fn serve(self, shutdown: CancellationToken) {
        let CloudLb {
            rest,
            cfg,
            allocations,
            admin_listener,
            admin,
            dataplane,
            view,
            published,
        } = self;
        let stop = shutdown.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(l) = admin_listener {
            let router = proxylab_core::telemetry::admin_router(admin.clone());
            let stop = stop.clone();
            tasks.spawn(async move {
                let options = proxylab_core::serve::ServeOptions::admin();
                if let Err(e) =
                    proxylab_core::serve::serve_http_with(l, None, router, stop, options).await
                {
                    tracing::warn!(error = %e, "admin endpoint failed");
                }
            });
        }
        tasks.spawn(proxylab_kube::watch::watch_cluster(
            rest.watch_client(),
            view.clone(),
            proxylab_kube::watch::WatchOptions {
                nodes: true,
                ..Default::default()
            },
            stop.clone(),
        ));
        let (frontends_tx, frontends_rx) = watch::channel(Arc::new(Vec::new()));
        let controller = Controller::new(
            rest,
            ControllerConfig {
                pools: cfg.pools.clone(),
                class: cfg.class.clone(),
                state_file: cfg.state_file.clone(),
                instance: cfg.dataplane.instance.clone(),
            },
            allocations,
        );
        // Ready once the Services are listed and reconciled and the cluster model has synced.
        {
            let (admin, view, mut rx, stop) = (
                admin.clone(),
                view.clone(),
                published.subscribe(),
                stop.clone(),
            );
            tasks.spawn(async move {
                let mut cluster = view.subscribe();
                loop {
                    admin.set_ready(rx.borrow_and_update().synced && view.snapshot().synced);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        r = rx.changed() => if r.is_err() { break },
                        r = cluster.changed() => if r.is_err() { break },
                    }
                }
            });
        }
        tasks.spawn(controller.run(published, frontends_tx, stop.clone()));
        dataplane.run(frontends_rx, view, stop.clone()).await;
        admin.set_ready(false);
        stop.cancel();
        while tasks.join_next().await.is_some() {}
    }
}

impl CloudLbHandle {
    /// The listeners open now, with the nodes each forwards to.
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        self.dataplane.listeners()
    }

    /// The allocations after the controller's last pass.
    pub fn allocations(&self) -> Allocations {
        self.published.borrow().allocations.clone()
    }

    /// The hop log and metrics.
    pub fn admin(&self) -> AdminState {
        self.admin.clone()
    }
}
