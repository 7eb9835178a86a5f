//! # The cluster model every proxy routes on
//!
//! Kubernetes proxies do not route on "backends" someone typed into a config file: they route on
//! *Services* (a stable virtual address and ports), *EndpointSlices* (the pods currently behind a
//! Service, each with `ready` / `serving` / `terminating` conditions and the node it runs on), *Nodes*
//! (their addresses and zones) and *Pods*. kube-proxy watches exactly these objects on every node.
//!
//! This module is that model, as plain Rust data, and nothing more:
//!
//! - [`Service`], [`ServicePort`], [`EndpointSlice`], [`Endpoint`], [`Node`], [`Pod`] — the fields a proxy
//!   needs, converted from Kubernetes JSON by [`from_k8s`] (see [`convert`]). Because the converter takes a
//!   `serde_json::Value`, a static YAML file (parsed with serde-saphyr), the lab apiserver and a real
//!   cluster (kube-rs objects serialised to JSON) all feed the same model.
//! - [`ClusterSnapshot`] — one consistent, immutable picture of all of them.
//! - [`ClusterView`] — the current snapshot behind an `ArcSwap` (readers never block, never see a half
//!   applied change) plus a `tokio::sync::watch` channel that wakes whoever must react to a change
//!   (listeners to open or close, balancers to refresh).
//!
//! Nothing here depends on kube-rs: feeding the view is the job of the source (a file loader, or
//! `proxylab-kube`'s watches).

pub mod convert;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use parking_lot::Mutex;
use tokio::sync::watch;

pub use convert::{ConvertError, from_k8s};

/// The L4 protocol of a service port. SCTP is modelled so conversion does not fail on it; the proxies
/// here do not serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The spelling Kubernetes uses (`TCP`, `UDP`, `SCTP`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `spec.type` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`: `Cluster` may send traffic to any node's
/// endpoints; `Local` only to endpoints on the node that received it (and drops it when there are none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

/// `sessionAffinity`. `ClientIP` pins a client IP to one endpoint for `timeout` after its last use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionAffinity {
    #[default]
    None,
    ClientIP {
        timeout: Duration,
    },
}

/// The default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours), as in Kubernetes.
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10_800);

/// `targetPort`: a number, or the name of a container port (resolved by the EndpointSlice controller,
/// which is why proxies use the EndpointSlice's port and not this field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

/// Namespace and name: how Services are addressed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Empty when the service has a single unnamed port; EndpointSlice ports are matched on this name.
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub target_port: TargetPort,
    pub node_port: Option<u16>,
}

/// A Service, reduced to what proxies route on.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub type_: ServiceType,
    /// `spec.clusterIPs` (or `spec.clusterIP`); empty for headless services (`None`) and ExternalName.
    pub cluster_ips: Vec<IpAddr>,
    pub external_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    pub session_affinity: SessionAffinity,
    pub external_traffic_policy: TrafficPolicy,
    pub internal_traffic_policy: TrafficPolicy,
    pub health_check_node_port: Option<u16>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ingress: Vec<IpAddr>,
    pub load_balancer_source_ranges: Vec<IpNet>,
    pub selector: BTreeMap<String, String>,
    pub external_name: Option<String>,
}

impl Service {
    pub fn key(&self) -> ServiceKey {
        ServiceKey::new(&self.namespace, &self.name)
    }

    /// Headless services (`clusterIP: None`) have no virtual IP: DNS returns pod IPs, no proxy is involved.
    pub fn is_headless(&self) -> bool {
        self.cluster_ips.is_empty()
    }

    /// Whether this service gets NodePorts (NodePort and LoadBalancer types).
    pub fn has_node_ports(&self) -> bool {
        matches!(
            self.type_,
            ServiceType::NodePort | ServiceType::LoadBalancer
        )
    }
}

/// One entry of an EndpointSlice's `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    /// Matches [`ServicePort::name`] (empty for the unnamed port).
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// `endpoints[].conditions`. Absent `ready`/`serving` mean true and absent `terminating` false, as the
/// EndpointSlice API says ("nil should be interpreted as ready/serving").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointConditions {
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl Default for EndpointConditions {
    fn default() -> Self {
        Self {
            ready: true,
            serving: true,
            terminating: false,
        }
    }
}

/// A reference to the object behind an endpoint (normally a Pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Proxies use the first address, as kube-proxy does; the API allows more for future use.
    pub addresses: Vec<IpAddr>,
    pub conditions: EndpointConditions,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    /// `hints.forZones[].name`: topology-aware routing.
    pub hint_zones: Vec<String>,
    /// `hints.forNodes[].name` (PreferSameNode traffic distribution).
    pub hint_nodes: Vec<String>,
    pub target_ref: Option<ObjectRef>,
}

/// An EndpointSlice: part of the endpoint set of one Service (label `kubernetes.io/service-name`).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSlice {
    pub namespace: String,
    pub name: String,
    pub service_name: Option<String>,
    /// `IPv4`, `IPv6` or `FQDN`; proxies skip FQDN slices.
    pub address_type: String,
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

/// A Node: its addresses (NodePorts listen on them), its kubelet port and its zone (topology hints).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    /// `status.addresses` as (type, address) for the IP-typed entries (`InternalIP`, `ExternalIP`).
    pub addresses: Vec<(String, IpAddr)>,
    /// Every `status.addresses` entry as (type, address), names included (`Hostname`, `InternalDNS`),
    /// in the order the node reported them: the apiserver proxy picks the first of a preferred type.
    pub all_addresses: Vec<(String, String)>,
    /// `status.daemonEndpoints.kubeletEndpoint.Port`: where the kubelet API listens (`None`: unset).
    pub kubelet_port: Option<u16>,
    pub ready: bool,
    pub zone: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub unschedulable: bool,
    /// `spec.podCIDRs` (else `spec.podCIDR`): the pod addresses of this node. kube-proxy's
    /// `--detect-local-mode=NodeCIDR` tells the node's own pods' traffic by it; the lab's forwarders
    /// use it to decide which node's forwarder serves a client.
    pub pod_cidrs: Vec<IpNet>,
}

impl Node {
    /// InternalIP addresses first, then the others: the order in which kube-proxy considers them.
    pub fn ips(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .addresses
            .iter()
            .filter(|(t, _)| t == "InternalIP")
            .map(|(_, ip)| *ip)
            .collect();
        for (_, ip) in &self.addresses {
            if !v.contains(ip) {
                v.push(*ip);
            }
        }
        v
    }
}

/// A container port of a Pod (`spec.containers[].ports[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    /// Empty when unnamed.
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// A container of a Pod, reduced to its name and ports (named ports, the default container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub ports: Vec<ContainerPort>,
}

/// A Pod, reduced to what a proxy may need (addresses, node, readiness, labels, containers).
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// `metadata.uid` (empty when the source gave none).
    pub uid: String,
    /// `spec.containers`, in order (init and ephemeral containers are not modelled).
    pub containers: Vec<Container>,
    pub node_name: Option<String>,
    pub pod_ips: Vec<IpAddr>,
    pub phase: String,
    pub ready: bool,
    pub terminating: bool,
    pub labels: BTreeMap<String, String>,
}

/// Any object of the model, as [`from_k8s`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterObject {
    Service(Service),
    EndpointSlice(EndpointSlice),
    Node(Node),
    Pod(Pod),
}

/// The kinds of object the model holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Service,
    EndpointSlice,
    Node,
    Pod,
}

/// One endpoint of one service port, resolved from the EndpointSlices: where to connect and the facts
/// endpoint selection ([`crate::balance`]) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    pub addr: SocketAddr,
    pub conditions: EndpointConditions,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    pub hint_zones: Vec<String>,
    pub hint_nodes: Vec<String>,
}

/// One consistent picture of the cluster. Immutable once published in a [`ClusterView`]; changes are made
/// on a clone (cheap: objects are behind `Arc`).
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    pub services: BTreeMap<ServiceKey, Arc<Service>>,
    /// keyed by (namespace, slice name)
    pub endpoint_slices: BTreeMap<(String, String), Arc<EndpointSlice>>,
    pub nodes: BTreeMap<String, Arc<Node>>,
    /// keyed by (namespace, pod name)
    pub pods: BTreeMap<(String, String), Arc<Pod>>,
    /// Incremented on every published change.
    pub revision: u64,
    /// Whether the source has delivered its first complete listing (a proxy is not ready before).
    pub synced: bool,
}

impl ClusterSnapshot {
    /// Builds a snapshot from Kubernetes objects; unknown kinds are skipped (a manifest file may hold
    /// Deployments too). The first conversion error is returned with the index of the object.
    pub fn from_objects<'a>(
        objects: impl IntoIterator<Item = &'a serde_json::Value>,
    ) -> Result<Self, (usize, ConvertError)> {
        let mut snap = ClusterSnapshot {
            synced: true,
            ..Default::default()
        };
        for (i, obj) in objects.into_iter().enumerate() {
            match from_k8s(obj) {
                Ok(Some(o)) => snap.apply(o),
                Ok(None) => {}
                Err(e) => return Err((i, e)),
            }
        }
        Ok(snap)
    }

    /// Adds or replaces an object.
    pub fn apply(&mut self, obj: ClusterObject) {
        match obj {
            ClusterObject::Service(s) => {
                self.services.insert(s.key(), Arc::new(s));
            }
            ClusterObject::EndpointSlice(s) => {
                self.endpoint_slices
                    .insert((s.namespace.clone(), s.name.clone()), Arc::new(s));
            }
            ClusterObject::Node(n) => {
                self.nodes.insert(n.name.clone(), Arc::new(n));
            }
            ClusterObject::Pod(p) => {
                self.pods
                    .insert((p.namespace.clone(), p.name.clone()), Arc::new(p));
            }
        }
    }

    /// Removes an object (namespace is ignored for Nodes).
    pub fn remove(&mut self, kind: ObjectKind, namespace: &str, name: &str) {
        let k = (namespace.to_string(), name.to_string());
        match kind {
            ObjectKind::Service => {
                self.services.remove(&ServiceKey::new(namespace, name));
            }
            ObjectKind::EndpointSlice => {
                self.endpoint_slices.remove(&k);
            }
            ObjectKind::Node => {
                self.nodes.remove(name);
            }
            ObjectKind::Pod => {
                self.pods.remove(&k);
            }
        }
    }

    /// Drops every object of one kind (before a re-list replaces them).
    pub fn clear(&mut self, kind: ObjectKind) {
        match kind {
            ObjectKind::Service => self.services.clear(),
            ObjectKind::EndpointSlice => self.endpoint_slices.clear(),
            ObjectKind::Node => self.nodes.clear(),
            ObjectKind::Pod => self.pods.clear(),
        }
    }

    pub fn service(&self, key: &ServiceKey) -> Option<&Arc<Service>> {
        self.services.get(key)
    }

    /// The EndpointSlices of a service (by the `kubernetes.io/service-name` label).
    pub fn slices_for<'a>(
        &'a self,
        key: &'a ServiceKey,
    ) -> impl Iterator<Item = &'a Arc<EndpointSlice>> + 'a {
        self.endpoint_slices
            .range((key.namespace.clone(), String::new())..)
            .take_while(move |((ns, _), _)| *ns == key.namespace)
            .map(|(_, s)| s)
            .filter(move |s| s.service_name.as_deref() == Some(key.name.as_str()))
    }

    /// All endpoints of one service port, across its slices: the slice port with the same name and
    /// protocol gives the target port; the first address of each endpoint is used; duplicates (an
    /// endpoint briefly in two slices) are merged, keeping the first seen. Sorted by address so the
    /// result is deterministic.
    pub fn endpoints_for(&self, key: &ServiceKey, port: &ServicePort) -> Vec<ResolvedEndpoint> {
        let mut out: Vec<ResolvedEndpoint> = Vec::new();
        for slice in self.slices_for(key) {
            if slice.address_type == "FQDN" {
                continue;
            }
            let Some(sp) = slice
                .ports
                .iter()
                .find(|p| p.name == port.name && p.protocol == port.protocol)
            else {
                continue;
            };
            for ep in &slice.endpoints {
                let Some(ip) = ep.addresses.first() else {
                    continue;
                };
                let addr = SocketAddr::new(*ip, sp.port);
                if out.iter().any(|e| e.addr == addr) {
                    continue;
                }
                out.push(ResolvedEndpoint {
                    addr,
                    conditions: ep.conditions,
                    node_name: ep.node_name.clone(),
                    zone: ep.zone.clone(),
                    hint_zones: ep.hint_zones.clone(),
                    hint_nodes: ep.hint_nodes.clone(),
                });
            }
        }
        out.sort_by_key(|e| e.addr);
        out
    }
}

/// The live cluster model: the current [`ClusterSnapshot`] plus a change notification.
///
/// Cloning a `ClusterView` gives another handle to the same model, so one source (e.g. the lab's
/// watches) can feed several proxies in one process.
#[derive(Clone)]
pub struct ClusterView {
    inner: Arc<ViewInner>,
}

struct ViewInner {
    current: ArcSwap<ClusterSnapshot>,
    /// Writers read-modify-write under this lock so concurrent updates do not lose each other's changes;
    /// readers never take it.
    write: Mutex<()>,
    changed: watch::Sender<u64>,
}

impl Default for ClusterView {
    fn default() -> Self {
        Self::new(ClusterSnapshot::default())
    }
}

impl std::fmt::Debug for ClusterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("ClusterView")
            .field("revision", &s.revision)
            .field("services", &s.services.len())
            .field("endpoint_slices", &s.endpoint_slices.len())
            .finish()
    }
}

impl ClusterView {
    pub fn new(initial: ClusterSnapshot) -> Self {
        let rev = initial.revision;
        let (changed, _) = watch::channel(rev);
        Self {
            inner: Arc::new(ViewInner {
                current: ArcSwap::from_pointee(initial),
                write: Mutex::new(()),
                changed,
            }),
        }
    }

    /// The current snapshot (lock-free).
    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.inner.current.load_full()
    }

    /// Replaces the whole snapshot (a file reload); the revision continues from the current one.
    pub fn replace(&self, mut snapshot: ClusterSnapshot) {
        let _g = self.inner.write.lock();
        snapshot.revision = self.inner.current.load().revision + 1;
        let rev = snapshot.revision;
        self.inner.current.store(Arc::new(snapshot));
        self.inner.changed.send_replace(rev);
    }

    /// Applies a change to a copy of the current snapshot and publishes it.
    pub fn update(&self, f: impl FnOnce(&mut ClusterSnapshot)) {
        let _g = self.inner.write.lock();
        let mut next = ClusterSnapshot::clone(&self.inner.current.load());
        f(&mut next);
        next.revision += 1;
        let rev = next.revision;
        self.inner.current.store(Arc::new(next));
        self.inner.changed.send_replace(rev);
    }

    /// A receiver that wakes on every published change (its value is the snapshot revision).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc() -> serde_json::Value {
        json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},
            "spec":{"clusterIP":"127.0.40.10","ports":[{"name":"http","port":80,"targetPort":8080}]}})
    }

    fn slice(name: &str, ip: &str, ready: bool) -> serde_json::Value {
        json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
            "metadata":{"name":name,"namespace":"default","labels":{"kubernetes.io/service-name":"web"}},
            "addressType":"IPv4","ports":[{"name":"http","port":8080,"protocol":"TCP"}],
            "endpoints":[{"addresses":[ip],"conditions":{"ready":ready},"nodeName":"node-1"}]})
    }

    #[test]
    fn resolves_endpoints_across_slices() {
        let objs = [
            svc(),
            slice("web-a", "127.0.30.2", true),
            slice("web-b", "127.0.30.1", false),
        ];
        let snap = ClusterSnapshot::from_objects(objs.iter()).unwrap();
        let key = ServiceKey::new("default", "web");
        let s = snap.service(&key).unwrap().clone();
        let eps = snap.endpoints_for(&key, &s.ports[0]);
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].addr, "127.0.30.1:8080".parse().unwrap());
        assert!(!eps[0].conditions.ready);
        assert!(eps[1].conditions.ready);
    }

    #[test]
    fn view_publishes_changes() {
        let view = ClusterView::default();
        let mut rx = view.subscribe();
        view.update(|s| s.apply(from_k8s(&svc()).unwrap().unwrap()));
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
        assert_eq!(view.snapshot().services.len(), 1);
        view.update(|s| s.remove(ObjectKind::Service, "default", "web"));
        assert!(view.snapshot().services.is_empty());
    }
}
