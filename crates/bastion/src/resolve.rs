//! Where a proxy request goes, read from the cluster model ([`ClusterView`]) as kube-apiserver's
//! `ResourceLocation` reads its storage.
//!
//! | object | address | port | scheme and credentials |
//! |---|---|---|---|
//! | service `[s:]name[:port]` | a **ready** endpoint of its EndpointSlices, chosen at random (kube-apiserver) or by another [`Algorithm`] | the slice's port for the service port (a number is mapped to the service port's name first) | `s` (http), https unverified |
//! | pod `[s:]name[:port]` | `status.podIPs[0]` | as given; a *name* is resolved through the containers' ports (kube-apiserver leaves that as a TODO); none: the first container port | `s` (http), https unverified |
//! | node `[s:]name[:port]` | the first address of a preferred type | none or the kubelet port: the kubelet, https with the kubelet client certificate; another: that port with `s` | |
//!
//! The Status answers are kube-apiserver's: 404 `services "x" not found`, 400
//! `invalid service request "a:b:c:d"`, 503 `no service port 81 found for service "web"`, 503
//! `no endpoints available for service "web"`, 400 `address not allowed`.
//!
//! One deliberate difference: for a service id without a port kube-apiserver looks for the
//! *unnamed* port, so `services/web/proxy/` answers 503 as soon as the service names its ports.
//! By default the bastion takes the service's first port instead (as `kubectl port-forward svc/web`
//! does), so the short URL works; [`ServicePortDefault::Unnamed`] restores kube-apiserver's rule.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;
use proxylab_core::balance::{Algorithm, Balancer, Pick};
use proxylab_core::cluster::{
    ClusterSnapshot, ClusterView, Node, Pod, Protocol, ServiceKey, ServicePort, TargetPort,
};
use proxylab_core::route::{ProxyId, Scheme};

use crate::dial::BackendKind;
use crate::path::Resource;
use crate::policy::DestinationPolicy;

/// The kubelet port when a node does not publish one (`ports.KubeletPort`).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// kube-apiserver's default `--kubelet-preferred-address-types`.
pub const DEFAULT_PREFERRED_ADDRESS_TYPES: [&str; 5] = [
    "Hostname",
    "InternalDNS",
    "InternalIP",
    "ExternalDNS",
    "ExternalIP",
];

/// Which service port an id without a port means. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServicePortDefault {
    /// The service's first port (the bastion's default).
    #[default]
    First,
    /// The unnamed port, as kube-apiserver: a service whose ports are all named answers 503.
    Unnamed,
}

/// A host to dial: an address, or a name the dialler resolves (once, checked; see [`crate::dial`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

impl Host {
    fn parse(s: &str) -> Host {
        match s.parse() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(s.to_owned()),
        }
    }
}

/// Where to send a request, and why there.
#[derive(Debug)]
pub struct Destination {
    pub scheme: Scheme,
    pub host: Host,
    /// `None`: the scheme's default port (a pod without container ports, as kube-apiserver).
    pub port: Option<u16>,
    pub kind: BackendKind,
    /// What the hop record calls the chosen backend (`default/web-2`, `node-1`).
    pub endpoint: String,
    /// Why it was chosen (`random over 3 ready endpoints`).
    pub reason: String,
    /// The chosen endpoint counts as busy (least-conn) until this is dropped.
    pub pick: Option<Pick>,
}

impl Destination {
    /// `scheme://host[:port]`.
    pub fn authority_url(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{}", self.scheme.as_str(), self.host, p),
            None => format!("{}://{}", self.scheme.as_str(), self.host),
        }
    }

    /// The socket address, when the host is an IP.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match (&self.host, self.port) {
            (Host::Ip(ip), Some(p)) => Some(SocketAddr::new(*ip, p)),
            (Host::Ip(ip), None) => Some(SocketAddr::new(
                *ip,
                if self.scheme == Scheme::Https {
                    443
                } else {
                    80
                },
            )),
            _ => None,
        }
    }
}

/// Why a destination could not be found: each maps to kube-apiserver's Status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// 404 `<resource> "<name>" not found`.
    #[error("{resource} {name:?} not found")]
    NotFound {
        resource: &'static str,
        name: String,
    },
    /// 400 with this message.
    #[error("{0}")]
    BadRequest(String),
    /// 503 with this message.
    #[error("{0}")]
    Unavailable(String),
    /// 500 with this message.
    #[error("{0}")]
    Internal(String),
}

/// How destinations are chosen.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// `--kubelet-preferred-address-types`.
    pub preferred_address_types: Vec<String>,
    /// How a service's ready endpoints are chosen (kube-apiserver: random).
    pub algorithm: Algorithm,
    pub service_port_default: ServicePortDefault,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        Self {
            preferred_address_types: DEFAULT_PREFERRED_ADDRESS_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            algorithm: Algorithm::Random,
            service_port_default: ServicePortDefault::First,
        }
    }
}

/// A service and one of its port names.
type BalancerKey = (ServiceKey, String);

/// Resolves ids to destinations over a live [`ClusterView`].
pub struct Resolver {
    view: ClusterView,
    options: ResolveOptions,
    policy: Arc<DestinationPolicy>,
    /// One balancer per (service, port name), refreshed when the snapshot revision moves.
    balancers: Mutex<HashMap<BalancerKey, (u64, Arc<Balancer>)>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("view", &self.view)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn bad_id(resource: Resource, raw: &str) -> ResolveError {
    ResolveError::BadRequest(format!("invalid {} request {raw:?}", resource.singular()))
}

impl Resolver {
    pub fn new(view: ClusterView, options: ResolveOptions, policy: Arc<DestinationPolicy>) -> Self {
        Self {
            view,
            options,
            policy,
            balancers: Mutex::new(HashMap::new()),
        }
    }

    /// The view resolved against.
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// A proxy id of `resource` in `namespace` (ignored for nodes).
    pub fn proxy(
        &self,
        resource: Resource,
        namespace: &str,
        raw_id: &str,
        client: Option<IpAddr>,
    ) -> Result<Destination, ResolveError> {
        let id = ProxyId::parse(raw_id).map_err(|_| bad_id(resource, raw_id))?;
        let snap = self.view.snapshot();
        match resource {
            Resource::Service => self.service(&snap, namespace, &id, client),
            Resource::Pod => self.pod(&snap, namespace, &id),
            Resource::Node => self.node(&snap, &id),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), ResolveError> {
        self.policy
            .check_ip(ip)
            .map_err(|_| ResolveError::BadRequest("address not allowed".into()))
    }

    fn service(
        &self,
        snap: &ClusterSnapshot,
        namespace: &str,
        id: &ProxyId,
        client: Option<IpAddr>,
    ) -> Result<Destination, ResolveError> {
        let key = ServiceKey::new(namespace, &id.name);
        let svc = snap.service(&key).ok_or_else(|| ResolveError::NotFound {
            resource: "services",
            name: id.name.clone(),
        })?;
        let port_name = match (&id.port, id.port_number()) {
            (Some(_), Some(n)) => svc
                .ports
                .iter()
                .find(|p| p.port == n)
                .map(|p| p.name.clone())
                .ok_or_else(|| {
                    ResolveError::Unavailable(format!(
                        "no service port {n} found for service {:?}",
                        id.name
                    ))
                })?,
            (Some(name), None) => name.clone(),
            (None, _) => match self.options.service_port_default {
                ServicePortDefault::Unnamed => String::new(),
                ServicePortDefault::First => svc
                    .ports
                    .first()
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
            },
        };
        let no_endpoints = || {
            ResolveError::Unavailable(format!("no endpoints available for service {:?}", id.name))
        };
        // The slices carry the target port under the service port's name; a TCP port of that name.
        let port = ServicePort {
            name: port_name.clone(),
            protocol: Protocol::Tcp,
            port: 0,
            target_port: TargetPort::Number(0),
            node_port: None,
        };
        let mut ready: Vec<SocketAddr> = snap
            .endpoints_for(&key, &port)
            .into_iter()
            .filter(|e| e.conditions.ready)
            .map(|e| e.addr)
            .collect();
        // The primary IP family first (kube-apiserver orders slices so): keep it when present.
        if let Some(primary) = svc.cluster_ips.first()
            && ready.iter().any(|a| a.is_ipv4() == primary.is_ipv4())
        {
            ready.retain(|a| a.is_ipv4() == primary.is_ipv4());
        }
        if ready.is_empty() {
            return Err(no_endpoints());
        }
        let balancer = self.balancer(snap.revision, &key, &port_name, &ready);
        let pick = balancer.pick(client, &[]).ok_or_else(no_endpoints)?;
        let addr = pick.addr;
        self.check_ip(addr.ip())?;
        // The pod behind the chosen address, for the hop record: the endpoint with that IP in a
        // slice whose port of this name is the chosen port (pods sharing an IP, as on a test
        // host's loopback, differ by port).
        let pod = snap
            .slices_for(&key)
            .filter(|s| {
                s.ports
                    .iter()
                    .any(|p| p.name == port.name && p.port == addr.port())
            })
            .flat_map(|s| s.endpoints.iter())
            .find(|e| e.addresses.first() == Some(&addr.ip()))
            .and_then(|e| e.target_ref.as_ref())
            .map(|r| format!("{}/{}", r.namespace, r.name));
        Ok(Destination {
            scheme: id.scheme,
            host: Host::Ip(addr.ip()),
            port: Some(addr.port()),
            kind: BackendKind::Generic,
            endpoint: match pod {
                Some(p) => format!("{p} {addr}"),
                None => addr.to_string(),
            },
            reason: format!(
                "{} over {} ready endpoint{}",
                pick.reason,
                ready.len(),
                if ready.len() == 1 { "" } else { "s" }
            ),
            pick: Some(pick),
        })
    }

    fn balancer(
        &self,
        revision: u64,
        key: &ServiceKey,
        port: &str,
        ready: &[SocketAddr],
    ) -> Arc<Balancer> {
        let mut all = self.balancers.lock();
        let entry = all
            .entry((key.clone(), port.to_owned()))
            .or_insert_with(|| {
                (
                    u64::MAX,
                    Arc::new(Balancer::new(self.options.algorithm, None)),
                )
            });
        if entry.0 != revision {
            entry.1.update(ready);
            entry.0 = revision;
        }
        entry.1.clone()
    }

    fn pod(
        &self,
        snap: &ClusterSnapshot,
        namespace: &str,
        id: &ProxyId,
    ) -> Result<Destination, ResolveError> {
        let pod = self.get_pod(snap, namespace, &id.name)?;
        let port = match (&id.port, id.port_number()) {
            (Some(_), Some(n)) => Some(n),
            (Some(name), None) => Some(named_container_port(pod, name).ok_or_else(|| {
                ResolveError::BadRequest(format!(
                    "pod {:?} has no container port named {name:?}",
                    pod.name
                ))
            })?),
            (None, _) => pod
                .containers
                .iter()
                .find_map(|c| c.ports.first())
                .map(|p| p.port),
        };
        let ip = pod_ip(pod)?;
        self.check_ip(ip)?;
        Ok(Destination {
            scheme: id.scheme,
            host: Host::Ip(ip),
            port,
            kind: BackendKind::Generic,
            endpoint: format!("{}/{}", pod.namespace, pod.name),
            reason: "pod".into(),
            pick: None,
        })
    }

    /// The pod `namespace/name` (for the kubelet subresources too).
    pub fn get_pod<'s>(
        &self,
        snap: &'s ClusterSnapshot,
        namespace: &str,
        name: &str,
    ) -> Result<&'s Arc<Pod>, ResolveError> {
        snap.pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .ok_or_else(|| ResolveError::NotFound {
                resource: "pods",
                name: name.to_owned(),
            })
    }

    fn node(&self, snap: &ClusterSnapshot, id: &ProxyId) -> Result<Destination, ResolveError> {
        let node = snap
            .nodes
            .get(&id.name)
            .ok_or_else(|| ResolveError::NotFound {
                resource: "nodes",
                name: id.name.clone(),
            })?;
        let (host, address_type) = self.node_address(node)?;
        if let Host::Ip(ip) = host {
            self.check_ip(ip)?;
        }
        let kubelet_port = node.kubelet_port.unwrap_or(DEFAULT_KUBELET_PORT);
        let requested = match (&id.port, id.port_number()) {
            (None, _) => None,
            (Some(_), Some(n)) => Some(n),
            (Some(p), None) => {
                return Err(ResolveError::BadRequest(format!(
                    "invalid node request {:?}: port {p:?} is not a number",
                    id.to_string()
                )));
            }
        };
        let (scheme, port, kind, what) = match requested {
            None => (Scheme::Https, kubelet_port, BackendKind::Kubelet, "kubelet"),
            Some(p) if p == kubelet_port => {
                (Scheme::Https, kubelet_port, BackendKind::Kubelet, "kubelet")
            }
            Some(p) => (id.scheme, p, BackendKind::Generic, "node port"),
        };
        Ok(Destination {
            scheme,
            host,
            port: Some(port),
            kind,
            endpoint: node.name.clone(),
            reason: format!("{what} at the node's {address_type}"),
            pick: None,
        })
    }

    /// The kubelet of the node a pod runs on (pods/log, exec, attach, portforward).
    pub fn kubelet_of(
        &self,
        snap: &ClusterSnapshot,
        pod: &Pod,
    ) -> Result<Destination, ResolveError> {
        let Some(node_name) = pod.node_name.as_deref().filter(|n| !n.is_empty()) else {
            return Err(ResolveError::BadRequest(format!(
                "pod {} does not have a host assigned",
                pod.name
            )));
        };
        let node = snap
            .nodes
            .get(node_name)
            .ok_or_else(|| ResolveError::NotFound {
                resource: "nodes",
                name: node_name.to_owned(),
            })?;
        let (host, address_type) = self.node_address(node)?;
        if let Host::Ip(ip) = host {
            self.check_ip(ip)?;
        }
        Ok(Destination {
            scheme: Scheme::Https,
            host,
            port: Some(node.kubelet_port.unwrap_or(DEFAULT_KUBELET_PORT)),
            kind: BackendKind::Kubelet,
            endpoint: node.name.clone(),
            reason: format!("kubelet of {} at the node's {address_type}", pod.name),
            pick: None,
        })
    }

    /// `nodeutil.GetPreferredNodeAddress`: the first address of the first preferred type.
    fn node_address(&self, node: &Node) -> Result<(Host, String), ResolveError> {
        for t in &self.options.preferred_address_types {
            if let Some((_, a)) = node
                .all_addresses
                .iter()
                .find(|(ty, a)| ty == t && !a.is_empty())
            {
                return Ok((Host::parse(a), t.clone()));
            }
        }
        let known: Vec<String> = node
            .all_addresses
            .iter()
            .map(|(t, a)| format!("{{{t} {a}}}"))
            .collect();
        Err(ResolveError::Internal(format!(
            "no preferred addresses found; known addresses: [{}]",
            known.join(" ")
        )))
    }
}

fn pod_ip(pod: &Pod) -> Result<IpAddr, ResolveError> {
    pod.pod_ips.first().copied().ok_or_else(|| {
        ResolveError::BadRequest(format!(
            "address not allowed: pod {:?} has no IP address yet",
            pod.name
        ))
    })
}

/// A TCP container port named `name` in any container of the pod.
fn named_container_port(pod: &Pod, name: &str) -> Option<u16> {
    pod.containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .find(|p| p.name == name && p.protocol == Protocol::Tcp)
        .map(|p| p.port)
}

/// The container a pods/log, exec or attach request means (`validateContainer`): the one named, or
/// the only one; with several and none named, 400 listing them.
pub fn container_of(pod: &Pod, requested: Option<&str>) -> Result<String, ResolveError> {
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if pod.containers.iter().any(|x| x.name == c) {
                Ok(c.to_owned())
            } else {
                Err(ResolveError::BadRequest(format!(
                    "container {c} is not valid for pod {}",
                    pod.name
                )))
            }
        }
        None => match pod.containers.as_slice() {
            [only] => Ok(only.name.clone()),
            [] => Err(ResolveError::BadRequest(format!(
                "a container name must be specified for pod {}",
                pod.name
            ))),
            many => Err(ResolveError::BadRequest(format!(
                "a container name must be specified for pod {}, choose one of: [{}]",
                pod.name,
                many.iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ))),
        },
    }
}
