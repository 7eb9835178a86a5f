//! The apiserver proxy, mounted: kube-apiserver registers `nodes/proxy`, `pods/proxy`,
//! `services/proxy` and `pods/log|exec|attach|portforward` as subresources served by its built-in
//! proxy; here they are [`proxylab_bastion`]'s router, merged after authentication.
//!
//! What this module adds around the bastion:
//! - its **cluster model**, read straight from the store as kube-apiserver reads its own storage:
//!   an informer (list + watch, `proxylab-controllers`) per kind — Services, EndpointSlices,
//!   Nodes, Pods — feeding one [`ClusterView`], marked synced once every kind is listed;
//! - the **user**: the request's [`UserInfo`] (set by the authentication layer) as the bastion's
//!   [`User`];
//! - the **configuration** from kube-apiserver's flags (`--kubelet-client-certificate/-key`,
//!   `--kubelet-certificate-authority`, `--kubelet-preferred-address-types`) and the lab's own
//!   (`--proxy-allowed-networks`, `--proxy-authorization-policy-file`, `--proxy-source-address`);
//! - one **instance** per listen address, each with its own hop log and metrics, so the lab can
//!   serve each apiserver's hop records on its own admin endpoint.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware;
use ipnet::IpNet;
use proxylab_bastion::{
    Abac, AllowAll, Authorizer, Bastion, BastionConfig, Instance, KubeletClient, SourceAddress,
    User,
};
use proxylab_controllers::informer::Informer;
use proxylab_core::cluster::{ClusterObject, ClusterSnapshot, ClusterView, convert};
use proxylab_core::telemetry::Metrics;
use proxylab_store::Store;
use rustls_pki_types::CertificateDer;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::auth::UserInfo;
use crate::config::ServingCert;

/// The flags of the apiserver proxy (`#[command(flatten)]` into [`crate::ApiServerArgs`]).
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// CA bundle kubelet serving certificates are verified against (default: not verified, as
    /// kube-apiserver without this flag).
    #[arg(long = "kubelet-certificate-authority")]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Node address types to reach kubelets and nodes at, in order of preference.
    #[arg(
        long = "kubelet-preferred-address-types",
        value_delimiter = ',',
        default_value = "Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP"
    )]
    pub kubelet_preferred_address_types: Vec<String>,
    /// (lab) Networks the apiserver proxy may dial besides global-unicast addresses, e.g. the lab's
    /// loopback node and pod ranges. Link-local ranges are refused.
    #[arg(
        long = "proxy-allowed-networks",
        value_delimiter = ',',
        value_parser = proxylab_bastion::policy::parse_network
    )]
    pub proxy_allowed_networks: Vec<IpNet>,
    /// (lab) An ABAC policy file (kube-apiserver's format) consulted for the proxy subresources
    /// only; default: every authenticated user may (the lab apiserver has no RBAC).
    #[arg(long = "proxy-authorization-policy-file")]
    pub proxy_authorization_policy_file: Option<PathBuf>,
    /// (lab) Dial backends from this address, or `listener`: from the address the request arrived
    /// on (so the next hop sees which apiserver called).
    #[arg(long = "proxy-source-address")]
    pub proxy_source_address: Option<String>,
}

/// The resolved proxy configuration (part of [`crate::ApiServerConfig`]).
pub struct ProxyConfig {
    pub kubelet_ca: Vec<CertificateDer<'static>>,
    pub preferred_address_types: Vec<String>,
    pub allowed_networks: Vec<IpNet>,
    pub authorizer: Arc<dyn Authorizer>,
    pub source: SourceAddress,
    /// Instance names by listen IP (the lab: `apiserver-1` for `127.0.10.1`); unnamed listeners
    /// are `apiserver`.
    pub instance_names: Vec<(IpAddr, String)>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            kubelet_ca: Vec::new(),
            preferred_address_types: proxylab_bastion::resolve::DEFAULT_PREFERRED_ADDRESS_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            allowed_networks: Vec::new(),
            authorizer: Arc::new(AllowAll),
            source: SourceAddress::System,
            instance_names: Vec::new(),
        }
    }
}

impl ProxyArgs {
    /// Reads the files the flags name; an error is (flag, message).
    pub fn to_config(&self) -> Result<ProxyConfig, (&'static str, String)> {
        let mut c = ProxyConfig::default();
        if let Some(p) = &self.kubelet_certificate_authority {
            c.kubelet_ca = proxylab_core::tls::load_certs(p).map_err(|e| {
                (
                    "--kubelet-certificate-authority",
                    format!("{}: {e}", p.display()),
                )
            })?;
        }
        if self
            .kubelet_preferred_address_types
            .iter()
            .any(|t| t.trim().is_empty())
        {
            return Err(("--kubelet-preferred-address-types", "an empty type".into()));
        }
        c.preferred_address_types = self.kubelet_preferred_address_types.clone();
        proxylab_bastion::DestinationPolicy::new(self.proxy_allowed_networks.clone(), Vec::new())
            .map_err(|e| ("--proxy-allowed-networks", e.to_string()))?;
        c.allowed_networks = self.proxy_allowed_networks.clone();
        if let Some(p) = &self.proxy_authorization_policy_file {
            c.authorizer = Arc::new(
                Abac::from_file(p)
                    .map_err(|e| ("--proxy-authorization-policy-file", e.to_string()))?,
            );
        }
        c.source = match self.proxy_source_address.as_deref() {
            None | Some("") => SourceAddress::System,
            Some("listener") => SourceAddress::Listener,
            Some(s) => SourceAddress::Fixed(s.parse().map_err(|_| {
                (
                    "--proxy-source-address",
                    format!("{s:?} is not an IP address or \"listener\""),
                )
            })?),
        };
        Ok(c)
    }
}

/// The mounted proxy: its router, and what feeds it.
pub(crate) struct Mounted {
    pub bastion: Bastion,
    view: ClusterView,
    informers: Vec<Arc<Informer>>,
}

/// The store resources the bastion routes on.
const RESOURCES: [&str; 4] = [
    "services",
    "endpointslices.discovery.k8s.io",
    "nodes",
    "pods",
];

/// Builds the bastion over a (not yet fed) cluster view. See the module docs.
pub(crate) fn mount(
    proxy: ProxyConfig,
    kubelet_client: Option<&ServingCert>,
    addrs: &[SocketAddr],
) -> Result<Mounted, proxylab_bastion::ConfigError> {
    let view = ClusterView::default();
    let mut config = BastionConfig::new(view.clone());
    config.resolve.preferred_address_types = proxy.preferred_address_types;
    config.allowed_networks = proxy.allowed_networks;
    config.own_addresses = addrs.to_vec();
    config.kubelet_client = kubelet_client.map(|k| KubeletClient {
        chain: k.chain.clone(),
        key: k.key.clone_key(),
        ca: proxy.kubelet_ca.clone(),
    });
    config.source = proxy.source;
    config.authorizer = proxy.authorizer;
    config.via = "apiserver".into();
    config.instances = addrs
        .iter()
        .map(|a| {
            let name = proxy
                .instance_names
                .iter()
                .find(|(ip, _)| *ip == a.ip())
                .map(|(_, n)| n.clone())
                .unwrap_or_else(|| "apiserver".into());
            Instance::new(&name, Some(a.ip()), &Metrics::new())
        })
        .collect();
    Ok(Mounted {
        bastion: Bastion::new(config)?,
        view,
        informers: RESOURCES.iter().map(|r| Informer::new(r)).collect(),
    })
}

impl Mounted {
    /// The bastion's routes, with the authenticated [`UserInfo`] handed over as its [`User`].
    pub fn router(&self) -> Router {
        self.bastion
            .router()
            .layer(middleware::map_request(|mut req: Request| async move {
                if let Some(u) = req.extensions().get::<UserInfo>() {
                    let user = User {
                        name: u.username.clone(),
                        groups: u.groups.clone(),
                    };
                    req.extensions_mut().insert(user);
                }
                req
            }))
    }

    /// Runs the informers and keeps the view current until `shutdown`.
    pub fn feed(&self, store: Arc<dyn Store>, shutdown: CancellationToken) {
        let changed = Arc::new(Notify::new());
        for inf in &self.informers {
            inf.subscribe(changed.clone());
            tokio::spawn(inf.clone().run(store.clone(), shutdown.clone()));
        }
        let (informers, view) = (self.informers.clone(), self.view.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = changed.notified() => {}
                }
                view.replace(snapshot(&informers));
            }
        });
    }
}

/// One consistent picture from the informers' caches. An object the model cannot read is left out
/// (and logged): one odd object must not take the proxy down.
fn snapshot(informers: &[Arc<Informer>]) -> ClusterSnapshot {
    let mut snap = ClusterSnapshot {
        synced: informers.iter().all(|i| i.has_synced()),
        ..Default::default()
    };
    for inf in informers {
        for obj in inf.snapshot() {
            let converted = match inf.resource() {
                "services" => convert::service_from_k8s(&obj).map(ClusterObject::Service),
                "nodes" => convert::node_from_k8s(&obj).map(ClusterObject::Node),
                "pods" => convert::pod_from_k8s(&obj).map(ClusterObject::Pod),
                _ => convert::endpoint_slice_from_k8s(&obj).map(ClusterObject::EndpointSlice),
            };
            match converted {
                Ok(o) => snap.apply(o),
                Err(e) => debug!(error = %e, "the apiserver proxy skips an object"),
            }
        }
    }
    snap
}
