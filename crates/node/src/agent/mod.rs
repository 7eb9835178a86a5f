//! The agent: register the Node, keep its Lease, run its pods, serve the kubelet API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), proxylab_node::NodeError> {
//! use proxylab_node::{Node, NodeConfig};
//! let mut config = NodeConfig::new("node-1", "127.0.20.1".parse().unwrap(), "127.0.30.0/25".parse().unwrap());
//! config.kubeconfig = Some("lab/kubeconfig".into());
//! let bound = Node::bind(config).await?;          // loads certificates, binds the kubelet port
//! println!("kubelet API on {}", bound.kubelet_addr());
//! bound.serve(tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(()) }
//! ```
//!
//! `serve` starts four loops that share one cancellation token:
//! 1. registration, then a node status heartbeat every `status_update_interval`;
//! 2. the Lease renewal every `lease_renew_interval` (what the node lifecycle controller watches);
//! 3. the pod manager (the private `pods` module);
//! 4. the kubelet API server ([`crate::kubelet_api`]).

pub mod api;
pub mod completion;
pub mod lifecycle;
pub mod objects;
mod pods;
pub mod volumes;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use ipnet::Ipv4Net;
use jiff::Timestamp;
use proxylab_core::tls::{ClientAuth, ServerTls, load_certs};
use proxylab_kube::{KubeconfigOptions, RestClient, RestError};
use rustls::ServerConfig;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::certs::{self, CertError, CertificateAuthority};
use crate::ipam::PodIpAllocator;
use crate::kubelet_api::{Containers, KubeletState, PodTable, kubelet_router};
use api::{ApiClient, CallError};
use objects::NodeFacts;
use proxylab_core::cluster::ClusterView;

/// Errors of binding and running a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The kubeconfig could not be read or used (the error names the file and the field).
    #[error(transparent)]
    Kubeconfig(#[from] RestError),
    /// A certificate or key file is unusable.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The kubelet port could not be bound.
    #[error("bind kubelet API on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A flag value is invalid.
    #[error("invalid {flag}: {reason}")]
    InvalidFlag {
        /// The flag name.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The kubelet API server failed.
    #[error("kubelet API server: {0}")]
    Serve(std::io::Error),
}

/// Where the agent gets its Kubernetes client from.
#[derive(Clone, Default)]
pub enum KubeSource {
    /// `kubeconfig` / `context` fields of [`NodeConfig`] (or kube-rs' inference when None).
    #[default]
    Kubeconfig,
    /// A ready client (a lab that built one already).
    Client(RestClient),
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kubeconfig => f.write_str("Kubeconfig"),
            Self::Client(_) => f.write_str("Client(..)"),
        }
    }
}

/// Everything a node needs. Build with [`NodeConfig::new`] (lab defaults for the rest) or from
/// [`NodeArgs`].
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's name (metadata.name, kubernetes.io/hostname).
    pub node_name: String,
    /// The node's address: InternalIP, where the kubelet API listens, hostIP of its pods.
    pub node_ip: IpAddr,
    /// The kubelet API port (10250; 0 picks a free one).
    pub kubelet_port: u16,
    /// The pod IP range (spec.podCIDR).
    pub pod_cidr: Ipv4Net,
    /// Extra node labels.
    pub labels: BTreeMap<String, String>,
    /// Kubeconfig file; None: kubectl's rules (KUBECONFIG, ~/.kube/config, in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; None: the current context.
    pub context: Option<String>,
    /// Overrides `kubeconfig`/`context` with a ready client.
    pub kube: KubeSource,
    /// Kubelet serving certificate; None: a self-signed one is generated (as the kubelet does).
    pub tls_cert_file: Option<PathBuf>,
    /// Key for `tls_cert_file`.
    pub tls_private_key_file: Option<PathBuf>,
    /// CA whose client certificates may use the kubelet API; None: every request gets 401.
    pub client_ca_file: Option<PathBuf>,
    /// CA certificate and key that sign pods' serving certificates; None: self-signed per pod.
    pub workload_ca: Option<(PathBuf, PathBuf)>,
    /// leaseDurationSeconds of the node Lease.
    pub lease_duration_seconds: u32,
    /// How often the Lease is renewed.
    pub lease_renew_interval: Duration,
    /// How often the Node status (heartbeat) is posted.
    pub status_update_interval: Duration,
    /// Pod capacity reported (also capped by the pod CIDR's size).
    pub max_pods: u32,
}

impl NodeConfig {
    /// A configuration with the kubelet's defaults: port 10250, lease 40 s renewed every 10 s,
    /// status every 10 s, 110 pods.
    pub fn new(node_name: impl Into<String>, node_ip: IpAddr, pod_cidr: Ipv4Net) -> Self {
        Self {
            node_name: node_name.into(),
            node_ip,
            kubelet_port: 10250,
            pod_cidr,
            labels: BTreeMap::new(),
            kubeconfig: None,
            context: None,
            kube: KubeSource::Kubeconfig,
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: None,
            workload_ca: None,
            lease_duration_seconds: 40,
            lease_renew_interval: Duration::from_secs(10),
            status_update_interval: Duration::from_secs(10),
            max_pods: 110,
        }
    }
}

/// Command-line flags of `proxylab node`, named as the kubelet's where they mean the same.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// Kubeconfig used to reach the apiserver (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// The node's name.
    #[arg(long = "hostname-override", default_value = "node-1")]
    pub hostname_override: String,
    /// The node's IP address (InternalIP; the kubelet API listens here).
    #[arg(long = "node-ip", default_value = "127.0.20.1")]
    pub node_ip: IpAddr,
    /// The kubelet API port.
    #[arg(long = "port", default_value_t = 10250)]
    pub port: u16,
    /// The IPv4 range pods on this node get their IPs from.
    #[arg(long = "pod-cidr", default_value = "127.0.30.0/25")]
    pub pod_cidr: Ipv4Net,
    /// Kubelet serving certificate (PEM); generated self-signed when absent.
    #[arg(long = "tls-cert-file", requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Key for --tls-cert-file (PEM).
    #[arg(long = "tls-private-key-file", requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA bundle that authenticates kubelet API clients (the apiserver's kubelet client cert).
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<PathBuf>,
    /// Labels to add to the Node, key=value[,key=value…].
    #[arg(long = "node-labels", value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// CA certificate that signs the pods' HTTPS serving certificates (self-signed when absent).
    #[arg(long = "workload-ca-cert-file", requires = "workload_ca_key_file")]
    pub workload_ca_cert_file: Option<PathBuf>,
    /// Key for --workload-ca-cert-file.
    #[arg(long = "workload-ca-key-file", requires = "workload_ca_cert_file")]
    pub workload_ca_key_file: Option<PathBuf>,
    /// leaseDurationSeconds of the node's Lease in kube-node-lease.
    #[arg(long = "node-lease-duration-seconds", default_value_t = 40)]
    pub node_lease_duration_seconds: u32,
    /// Seconds between Lease renewals.
    #[arg(long = "node-lease-renew-interval-seconds", default_value_t = 10)]
    pub node_lease_renew_interval_seconds: u64,
    /// Seconds between Node status posts.
    #[arg(long = "node-status-update-frequency-seconds", default_value_t = 10)]
    pub node_status_update_frequency_seconds: u64,
    /// Pods this node reports it can run.
    #[arg(long = "max-pods", default_value_t = 110)]
    pub max_pods: u32,
}

impl NodeArgs {
    /// Checks the flags and turns them into a [`NodeConfig`].
    pub fn into_config(self) -> Result<NodeConfig, NodeError> {
        let labels =
            objects::parse_labels(&self.node_labels).map_err(|reason| NodeError::InvalidFlag {
                flag: "--node-labels",
                reason,
            })?;
        if self.node_lease_renew_interval_seconds == 0
            || self.node_status_update_frequency_seconds == 0
        {
            return Err(NodeError::InvalidFlag {
                flag: "--node-lease-renew-interval-seconds",
                reason: "must be > 0".into(),
            });
        }
        let mut config = NodeConfig::new(self.hostname_override, self.node_ip, self.pod_cidr);
        config.kubelet_port = self.port;
        config.labels = labels;
        config.kubeconfig = self.kubeconfig;
        config.context = self.context;
        config.tls_cert_file = self.tls_cert_file;
        config.tls_private_key_file = self.tls_private_key_file;
        config.client_ca_file = self.client_ca_file;
        config.workload_ca = self.workload_ca_cert_file.zip(self.workload_ca_key_file);
        config.lease_duration_seconds = self.node_lease_duration_seconds;
        config.lease_renew_interval = Duration::from_secs(self.node_lease_renew_interval_seconds);
        config.status_update_interval =
            Duration::from_secs(self.node_status_update_frequency_seconds);
        config.max_pods = self.max_pods;
        Ok(config)
    }
}

/// The node agent. See the module docs.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Loads the kubeconfig and certificates and binds the kubelet API port. Nothing talks to the
    /// apiserver yet: a node can be bound before the control plane answers.
    pub async fn bind(config: NodeConfig) -> Result<BoundNode, NodeError> {
        certs::install_crypto_provider();
        let client = kube_client(&config).await?;
        let serving = match (&config.tls_cert_file, &config.tls_private_key_file) {
            (Some(cert), Some(key)) => ServerTls::from_files(cert, key).map_err(CertError::from)?,
            (None, None) => {
                // As a kubelet without --tls-cert-file: a self-signed certificate for its name and address.
                let minted = certs::issue_serving(
                    &[config.node_name.clone(), config.node_ip.to_string()],
                    None,
                )?;
                ServerTls::new(minted.chain, minted.key)
            }
            _ => {
                return Err(NodeError::InvalidFlag {
                    flag: "--tls-cert-file",
                    reason: "--tls-cert-file and --tls-private-key-file go together".into(),
                });
            }
        };
        let serving = match &config.client_ca_file {
            Some(path) => serving.client_cas(
                load_certs(path).map_err(CertError::from)?,
                ClientAuth::Optional,
            ),
            None => {
                tracing::warn!(node = %config.node_name, "no --client-ca-file: every kubelet API request will get 401");
                serving
            }
        };
        let tls = serving.build().map_err(CertError::from)?;
        let workload_ca = match &config.workload_ca {
            Some((cert, key)) => Some(Arc::new(CertificateAuthority::from_files(cert, key)?)),
            None => None,
        };
        let addr = SocketAddr::new(config.node_ip, config.kubelet_port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Bind { addr, source })?;
        let kubelet_addr = listener
            .local_addr()
            .map_err(|source| NodeError::Bind { addr, source })?;
        Ok(BoundNode {
            config,
            client,
            listener,
            kubelet_addr,
            tls,
            workload_ca,
            kubelet: KubeletState::default(),
        })
    }
}

/// A node whose kubelet port is bound; [`BoundNode::serve`] runs it.
pub struct BoundNode {
    config: NodeConfig,
    client: ApiClient,
    listener: TcpListener,
    kubelet_addr: SocketAddr,
    tls: Arc<ServerConfig>,
    workload_ca: Option<Arc<CertificateAuthority>>,
    kubelet: KubeletState,
}

impl std::fmt::Debug for BoundNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundNode")
            .field("node", &self.config.node_name)
            .field("kubelet", &self.kubelet_addr)
            .finish()
    }
}

impl BoundNode {
    /// The kubelet API address (port 0 resolved).
    pub fn kubelet_addr(&self) -> SocketAddr {
        self.kubelet_addr
    }

    /// Every address this node listens on (today: the kubelet API).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        vec![self.kubelet_addr]
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        &self.config.node_name
    }

    /// The pods the node runs (the table `/pods` serves).
    pub fn pods(&self) -> PodTable {
        self.kubelet.pods.clone()
    }

    /// The containers the node runs (what `/containerLogs`, `/exec`, `/attach` and
    /// `/portForward` reach).
    pub fn containers(&self) -> Containers {
        self.kubelet.containers.clone()
    }

    /// Runs until `shutdown` is cancelled, then stops every pod workload and returns.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), NodeError> {
        let BoundNode {
            config,
            client,
            listener,
            kubelet_addr,
            tls,
            workload_ca,
            kubelet,
        } = self;
        let max_pods = config.max_pods.min(
            u32::try_from(PodIpAllocator::new(config.pod_cidr).capacity()).unwrap_or(u32::MAX),
        );
        let mut facts = NodeFacts::local(
            &config.node_name,
            config.node_ip,
            kubelet_addr.port(),
            config.pod_cidr,
            max_pods,
        );
        facts.labels = config.labels.clone();
        tracing::info!(node = %facts.name, kubelet = %kubelet_addr, pod_cidr = %facts.pod_cidr, "node agent starting");

        let tasks = TaskTracker::new();
        let mut kubelet = kubelet;
        // Open exec/attach/port-forward sessions end with the node.
        kubelet.shutdown = shutdown.child_token();
        kubelet.node_ip = Some(config.node_ip);
        // Services and EndpointSlices, for the pods' cluster DNS and Service variables.
        let view = ClusterView::default();
        tasks.spawn(proxylab_kube::watch::watch_cluster(
            client.rest().watch_client(),
            view.clone(),
            proxylab_kube::watch::WatchOptions::default(),
            shutdown.clone(),
        ));
        let fetch_tls = fetch_tls_config(&config, workload_ca.as_deref());
        let api_shutdown = shutdown.clone();
        let api = tasks.spawn(proxylab_core::serve::serve_http(
            listener,
            Some(tls),
            kubelet_router(kubelet.clone()),
            api_shutdown,
        ));

        let heartbeat = Heartbeat {
            client: client.clone(),
            facts,
            config: config.clone(),
        };
        tasks.spawn(heartbeat.run(shutdown.clone()));

        let manager = pods::PodManager::new(
            client,
            config.node_name.clone(),
            config.node_ip,
            PodIpAllocator::new(config.pod_cidr),
            workload_ca,
            kubelet.pods,
            kubelet.containers,
            view,
            fetch_tls,
        );
        tasks.spawn(manager.run(shutdown.clone()));
        tasks.close();
        tasks.wait().await;
        match api.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(NodeError::Serve(err)),
            Err(join) => Err(NodeError::Serve(std::io::Error::other(join))),
        }
    }
}

/// TLS trust for the pods' `fetch https://…`: the CA that signs pod certificates, else the
/// cluster CA of `--client-ca-file` (the same CA in the lab).
fn fetch_tls_config(
    config: &NodeConfig,
    workload_ca: Option<&CertificateAuthority>,
) -> Option<Arc<rustls::ClientConfig>> {
    let roots = match (workload_ca, &config.client_ca_file) {
        (Some(ca), _) => ca.root_store(),
        (None, Some(path)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(path).ok()? {
                let _ = roots.add(cert);
            }
            roots
        }
        (None, None) => return None,
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(certs::provider())
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(tls))
}

async fn kube_client(config: &NodeConfig) -> Result<ApiClient, NodeError> {
    if let KubeSource::Client(client) = &config.kube {
        return Ok(ApiClient::new(client.clone()));
    }
    // kubectl's loading rules, with errors that name the file and the field.
    let options = KubeconfigOptions {
        kubeconfig: config.kubeconfig.clone(),
        context: config.context.clone(),
        ..KubeconfigOptions::default()
    };
    Ok(ApiClient::new(RestClient::new(&options).await?))
}

/// Registration, node status and Lease: the node's "I am here and alive".
struct Heartbeat {
    client: ApiClient,
    facts: NodeFacts,
    config: NodeConfig,
}

impl Heartbeat {
    async fn run(self, shutdown: CancellationToken) {
        let ready_since = Timestamp::now();
        // The control plane may not answer yet (the lab starts everything at once): retry.
        let mut backoff = Duration::from_millis(250);
        let mut node_uid = loop {
            match self.register(ready_since).await {
                Ok(uid) => break uid,
                Err(err) => {
                    tracing::warn!(node = %self.facts.name, error = %err, "node registration failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        tracing::info!(node = %self.facts.name, "node registered");
        let mut lease_tick = tokio::time::interval(self.config.lease_renew_interval);
        let mut status_tick = tokio::time::interval(self.config.status_update_interval);
        // A tick missed (slow apiserver) is skipped, not fired in a burst.
        lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        status_tick.tick().await; // registration just posted the status
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = lease_tick.tick() => {
                    if let Err(err) = self.renew_lease(node_uid.as_deref()).await {
                        tracing::warn!(node = %self.facts.name, error = %err, "lease renewal failed");
                    }
                }
                _ = status_tick.tick() => {
                    match self.post_status(ready_since).await {
                        Ok(_) => {}
                        // Someone deleted the Node (`kubectl delete node`): register again.
                        Err(err) if err.is_not_found() => {
                            tracing::warn!(node = %self.facts.name, "Node object is gone; registering again");
                            match self.register(ready_since).await {
                                Ok(uid) => node_uid = uid,
                                Err(err) => tracing::warn!(node = %self.facts.name, error = %err, "re-registration failed"),
                            }
                        }
                        Err(err) => tracing::warn!(node = %self.facts.name, error = %err, "node status update failed"),
                    }
                }
            }
        }
    }

    /// Creates the Node, or updates labels and podCIDR of an existing one, then posts its status.
    /// Returns the Node's uid (owner of the Lease).
    async fn register(&self, ready_since: Timestamp) -> Result<Option<String>, CallError> {
        let object = objects::node_object(&self.facts, Timestamp::now(), ready_since);
        match self
            .client
            .call(Method::POST, "/api/v1/nodes", Some(&object))
            .await
        {
            Ok(_) => {}
            Err(err) if err.is_conflict() => {
                let mut patch = objects::node_metadata_patch(&self.facts);
                patch["spec"] = objects::node_spec(&self.facts);
                self.client
                    .merge_patch(&format!("/api/v1/nodes/{}", self.facts.name), &patch)
                    .await?;
            }
            Err(err) => return Err(err),
        }
        let posted = self.post_status(ready_since).await?;
        Ok(posted["metadata"]["uid"].as_str().map(str::to_owned))
    }

    async fn post_status(&self, ready_since: Timestamp) -> Result<serde_json::Value, CallError> {
        let status = objects::node_status(&self.facts, Timestamp::now(), ready_since);
        self.client
            .merge_patch(
                &format!("/api/v1/nodes/{}/status", self.facts.name),
                &status,
            )
            .await
    }

    async fn renew_lease(&self, node_uid: Option<&str>) -> Result<(), CallError> {
        let name = &self.facts.name;
        let duration = self.config.lease_duration_seconds;
        let leases = format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
            objects::LEASE_NAMESPACE
        );
        let renewal = objects::lease_renewal(name, duration, Timestamp::now());
        match self
            .client
            .merge_patch(&format!("{leases}/{name}"), &renewal)
            .await
        {
            Ok(_) => return Ok(()),
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err),
        }
        let lease = objects::lease_object(name, node_uid, duration, Timestamp::now());
        match self.client.call(Method::POST, &leases, Some(&lease)).await {
            Ok(_) => Ok(()),
            // kube-apiserver creates kube-node-lease itself; a bare control plane may not have it yet.
            Err(err) if err.is_not_found() => {
                let namespace = json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": { "name": objects::LEASE_NAMESPACE },
                });
                match self
                    .client
                    .call(Method::POST, "/api/v1/namespaces", Some(&namespace))
                    .await
                {
                    Ok(_) => {}
                    Err(err) if err.is_conflict() => {}
                    Err(err) => return Err(err),
                }
                self.client
                    .call(Method::POST, &leases, Some(&lease))
                    .await
                    .map(|_| ())
            }
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeArgs,
    }

    #[test]
    fn flags_map_to_config() {
        let cli = Cli::try_parse_from([
            "node",
            "--hostname-override",
            "node-2",
            "--node-ip",
            "127.0.20.2",
            "--port",
            "0",
            "--pod-cidr",
            "127.0.30.128/25",
            "--node-labels",
            "zone=b,node-role.kubernetes.io/worker=",
            "--node-lease-duration-seconds",
            "20",
            "--node-lease-renew-interval-seconds",
            "5",
        ])
        .expect("flags");
        let config = cli.node.into_config().expect("config");
        assert_eq!(config.node_name, "node-2");
        assert_eq!(config.node_ip, "127.0.20.2".parse::<IpAddr>().expect("ip"));
        assert_eq!(config.kubelet_port, 0);
        assert_eq!(config.pod_cidr.to_string(), "127.0.30.128/25");
        assert_eq!(config.labels["zone"], "b");
        assert_eq!(config.lease_duration_seconds, 20);
        assert_eq!(config.lease_renew_interval, Duration::from_secs(5));
        assert_eq!(config.status_update_interval, Duration::from_secs(10));

        assert!(
            Cli::try_parse_from(["node", "--tls-cert-file", "x.pem"]).is_err(),
            "cert needs its key"
        );
        let bad = Cli::try_parse_from(["node", "--node-labels", "oops"]).expect("parses");
        assert!(matches!(
            bad.node.into_config(),
            Err(NodeError::InvalidFlag { .. })
        ));
    }
}
