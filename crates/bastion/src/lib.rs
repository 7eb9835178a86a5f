//! # proxylab-bastion — proxy type 2, the apiserver proxy
//!
//! The Kubernetes docs list "the apiserver proxy" among the proxies a user meets: a **bastion built
//! into the apiserver**. It connects a user outside the cluster to addresses inside it that are
//! otherwise unreachable — pods, service endpoints, nodes — over the one connection the user already
//! has, the authenticated HTTPS connection to the apiserver. It is also the road every
//! `kubectl logs`, `exec`, `attach` and `port-forward` takes: apiserver → kubelet → container.
//!
//! ```text
//!  user ──https──► apiserver ─┬─ /api/v1/namespaces/ns/services/web:http/proxy/x ─► a ready endpoint of web
//!   (kubectl,     (authn,     ├─ /api/v1/namespaces/ns/pods/web-1:8080/proxy/x    ─► the pod's IP
//!    curl via      authz)     ├─ /api/v1/nodes/node-1/proxy/healthz                ─► the kubelet (client cert)
//!    kubectl proxy)           └─ /api/v1/namespaces/ns/pods/web-1/log|exec|…       ─► the kubelet ─► the container
//! ```
//!
//! This crate is that proxy. The lab apiserver mounts [`Bastion::router`] (as kube-apiserver
//! registers these subresources), and the `bastion` binary serves the same router on its own for
//! any cluster, watching it through `proxylab-kube`.
//!
//! ## Layout
//! - [`path`]: which subresource a URL names; [`resolve`]: where it goes, read from the
//!   [`ClusterView`] (services → ready EndpointSlice endpoints, load spread; pods → pod IP, named
//!   ports; nodes → preferred address, kubelet port).
//! - [`authz`]: the request's verb (and KEP-4006's extra `create` for exec/attach/portforward) and
//!   the authorizer hook ([`AllowAll`], or an ABAC policy).
//! - [`policy`] and [`dial`]: where the bastion may connect, checked on the address actually dialled
//!   (names resolved once and pinned), from which source address, with which TLS.
//! - [`rewrite`] and [`html`]: the request and response rules of kube's proxy handler (credentials
//!   stripped, `X-Forwarded-Uri`, CORS removed, `Location` and HTML links rewritten).
//! - `handler`: the pipeline, forwarding through `proxylab_core::http::forward` — the same path the
//!   auth-proxy uses (hop-by-hop headers, `X-Forwarded-For`, `Via`, upgrades with the
//!   CVE-2018-1002105 rules, streaming).
//! - [`status`]: every refusal as a Kubernetes `Status`.
//! - [`standalone`]: the `bastion` binary's flags, authentication and serving.
//!
//! Every request leaves a hop record (proxy kind `bastion`, instance the apiserver it arrived at),
//! so `proxylab trace` can stitch auth-proxy → apiserver → pod.

// `Status` (the Kubernetes error object, ~160 bytes) is the error currency of the handlers, as in the
// apiserver; errors are the rare path, and boxing it everywhere would only add noise.
#![allow(clippy::result_large_err)]

pub mod authz;
pub mod dial;
mod handler;
pub mod html;
pub mod path;
pub mod policy;
pub mod resolve;
pub mod rewrite;
pub mod standalone;
pub mod status;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use ipnet::IpNet;
use proxylab_core::cluster::ClusterView;
use proxylab_core::telemetry::{HopLog, HopSink, Metrics};
use proxylab_core::tls::ClientTls;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use authz::{Abac, AllowAll, Authorizer, User};
pub use dial::{Resolve, SystemResolver};
pub use policy::DestinationPolicy;
pub use resolve::{ResolveOptions, ServicePortDefault};

/// Which address the bastion dials from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceAddress {
    /// The system picks (the standalone default).
    #[default]
    System,
    /// The address the request arrived on (the lab: a request to apiserver-2 leaves from
    /// `127.0.10.2`, so the next hop's record names apiserver-2).
    Listener,
    /// Always this address.
    Fixed(IpAddr),
}

/// One named front of the bastion and its hop records: in the lab, one per apiserver address.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The hop records' `instance` (`apiserver-1`).
    pub name: String,
    /// Requests arriving on this IP belong to this instance (`None`: the default instance).
    pub listen_ip: Option<IpAddr>,
    /// Where its finished requests go (the hop log, and an access line when asked).
    pub sink: Arc<HopSink>,
    /// The registry its hop counters are in (its admin endpoint's `/metrics`).
    pub metrics: Arc<Metrics>,
}

impl Instance {
    /// An instance with a fresh hop log of 1,024 records whose counters go to `metrics`.
    pub fn new(name: &str, listen_ip: Option<IpAddr>, metrics: &Arc<Metrics>) -> Self {
        Self::with_sink(
            name,
            listen_ip,
            HopSink::new(HopLog::new(1024, metrics)),
            metrics.clone(),
        )
    }

    /// An instance whose requests end in `sink`, counted in `metrics`.
    pub fn with_sink(
        name: &str,
        listen_ip: Option<IpAddr>,
        sink: HopSink,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            listen_ip,
            sink: Arc::new(sink),
            metrics,
        }
    }

    /// Its hop log.
    pub fn hops(&self) -> &Arc<HopLog> {
        self.sink.hops()
    }
}

/// The kubelet client identity and how to verify kubelets.
#[derive(Debug)]
pub struct KubeletClient {
    /// `--kubelet-client-certificate` / `--kubelet-client-key`.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// `--kubelet-certificate-authority`: verify kubelet serving certificates against these.
    /// Empty: not verified (kube-apiserver's default without that flag).
    pub ca: Vec<CertificateDer<'static>>,
}

/// Everything a [`Bastion`] needs.
pub struct BastionConfig {
    /// The cluster model resolution reads (fed by the apiserver's store, or by watches).
    pub view: ClusterView,
    pub resolve: ResolveOptions,
    /// Networks allowed besides global unicast (never link-local). See [`policy`].
    pub allowed_networks: Vec<IpNet>,
    /// The bastion's own listen addresses: never dialled.
    pub own_addresses: Vec<SocketAddr>,
    /// `None`: node and kubelet paths fail with a clear error.
    pub kubelet_client: Option<KubeletClient>,
    pub source: SourceAddress,
    pub authorizer: Arc<dyn Authorizer>,
    pub resolver: Arc<dyn Resolve>,
    pub connect_timeout: Duration,
    /// At least one; the first is the default for requests on other addresses.
    pub instances: Vec<Instance>,
    /// This proxy's name in `Via`.
    pub via: String,
}

impl BastionConfig {
    /// Defaults over `view`: kube-apiserver's rules, no extra networks, no kubelet client,
    /// allow-all, the system resolver, one instance named `bastion`.
    pub fn new(view: ClusterView) -> Self {
        Self {
            view,
            resolve: ResolveOptions::default(),
            allowed_networks: Vec::new(),
            own_addresses: Vec::new(),
            kubelet_client: None,
            source: SourceAddress::System,
            authorizer: Arc::new(AllowAll),
            resolver: Arc::new(SystemResolver),
            connect_timeout: Duration::from_secs(30),
            instances: vec![Instance::new("bastion", None, &Metrics::new())],
            via: "bastion".into(),
        }
    }
}

/// A configuration the bastion cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("allowed network {0}")]
    Policy(#[from] policy::PolicyError),
    #[error("kubelet client TLS: {0}")]
    Tls(#[from] proxylab_core::tls::TlsError),
}

/// What every request shares.
pub(crate) struct Shared {
    resolver: resolve::Resolver,
    transports: dial::Transports,
    authorizer: Arc<dyn Authorizer>,
    instances: Vec<Instance>,
    source: SourceAddress,
    via: Arc<str>,
    tunnels: TaskTracker,
    shutdown: CancellationToken,
}

impl Shared {
    fn instance_for(&self, ip: IpAddr) -> &Instance {
        self.instances
            .iter()
            .find(|i| i.listen_ip == Some(ip))
            .unwrap_or(&self.instances[0])
    }
}

/// The apiserver proxy. See the crate docs.
#[derive(Clone)]
pub struct Bastion {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Bastion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bastion")
            .field("instances", &self.shared.instances.len())
            .finish_non_exhaustive()
    }
}

/// Every path the bastion serves, in axum's syntax.
const ROUTES: [&str; 13] = [
    "/api/v1/nodes/{id}/proxy",
    "/api/v1/nodes/{id}/proxy/",
    "/api/v1/nodes/{id}/proxy/{*path}",
    "/api/v1/namespaces/{ns}/pods/{id}/proxy",
    "/api/v1/namespaces/{ns}/pods/{id}/proxy/",
    "/api/v1/namespaces/{ns}/pods/{id}/proxy/{*path}",
    "/api/v1/namespaces/{ns}/services/{id}/proxy",
    "/api/v1/namespaces/{ns}/services/{id}/proxy/",
    "/api/v1/namespaces/{ns}/services/{id}/proxy/{*path}",
    "/api/v1/namespaces/{ns}/pods/{id}/log",
    "/api/v1/namespaces/{ns}/pods/{id}/exec",
    "/api/v1/namespaces/{ns}/pods/{id}/attach",
    "/api/v1/namespaces/{ns}/pods/{id}/portforward",
];

impl Bastion {
    pub fn new(config: BastionConfig) -> Result<Self, ConfigError> {
        let policy = Arc::new(DestinationPolicy::new(
            config.allowed_networks,
            config.own_addresses,
        )?);
        // Pods and services: https without verification and without a client certificate, as the
        // apiserver proxy dials them. HTTP/1.1 only: upgrades need it, and pods seldom offer h2.
        let generic_tls = ClientTls::new()
            .insecure(true)
            .alpn(&[b"http/1.1"])
            .build()?;
        let kubelet_tls = match &config.kubelet_client {
            Some(k) => Some(
                ClientTls::new()
                    .ca(k.ca.clone())
                    .insecure(k.ca.is_empty())
                    .client_cert(k.chain.clone(), k.key.clone_key())
                    .alpn(&[b"http/1.1"])
                    .build()?,
            ),
            None => None,
        };
        let transports = dial::Transports::new(dial::DialSettings {
            policy: policy.clone(),
            resolver: config.resolver,
            generic_tls,
            kubelet_tls,
            connect_timeout: config.connect_timeout,
        });
        let mut instances = config.instances;
        if instances.is_empty() {
            instances.push(Instance::new("bastion", None, &Metrics::new()));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                resolver: resolve::Resolver::new(config.view, config.resolve, policy),
                transports,
                authorizer: config.authorizer,
                instances,
                source: config.source,
                via: config.via.into(),
                tunnels: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        })
    }

    /// The routes of every proxy subresource. The host must have authenticated the request and put
    /// a [`User`] in its extensions (a request without one gets 401), and serve it through
    /// `proxylab_core::serve` (for [`ConnInfo`](proxylab_core::serve::ConnInfo)).
    pub fn router(&self) -> Router {
        let mut r = Router::new();
        for path in ROUTES {
            r = r.route(path, any(handler::handle));
        }
        r.with_state(self.shared.clone())
    }

    /// The instances and their hop logs (for admin endpoints).
    pub fn instances(&self) -> &[Instance] {
        &self.shared.instances
    }

    /// Closes every upgraded tunnel (exec sessions, port-forwards) and waits until they are gone.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        self.shared.tunnels.close();
        self.shared.tunnels.wait().await;
    }
}
