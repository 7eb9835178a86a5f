//! A Service as the cloud load balancer reads it: the fields and annotations that decide whether it
//! is ours, which address it may get, and what the data plane must forward.
//!
//! Read from plain Kubernetes JSON (what the watch delivers), so the controller's input is exactly
//! what `kubectl get svc -o json` shows. Bad values in annotations do not fail the parse: they are
//! kept as [`LbService::problems`] and reported on the Service as an `AllocationFailed` Event, the
//! way MetalLB reports them, so a Service never waits silently.

use std::net::IpAddr;

use ipnet::IpNet;
use proxylab_core::cluster::{Protocol, ServiceKey, TrafficPolicy};
use serde_json::Value;

/// The finalizer the cloud-controller-manager's service controller puts on LoadBalancer Services, so
/// the load balancer is torn down (here: the address released) before the Service disappears.
pub const FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";

/// `spec.loadBalancerClass` that selects this load balancer (besides an unset class).
pub const DEFAULT_CLASS: &str = "proxylab.io/cloud-lb";

/// The annotations read, MetalLB's (the `metallb.universe.tf/` spellings are deprecated but read).
pub mod annotations {
    /// Comma-separated addresses the Service wants (one per family).
    pub const LOAD_BALANCER_IPS: [&str; 2] = [
        "metallb.io/loadBalancerIPs",
        "metallb.universe.tf/loadBalancerIPs",
    ];
    /// The pool to allocate from.
    pub const ADDRESS_POOL: [&str; 2] = [
        "metallb.io/address-pool",
        "metallb.universe.tf/address-pool",
    ];
    /// A sharing key: Services with the same key may share an address if their ports differ.
    pub const ALLOW_SHARED_IP: [&str; 2] = [
        "metallb.io/allow-shared-ip",
        "metallb.universe.tf/allow-shared-ip",
    ];
    /// proxylab's own: `v1` or `v2` sends a PROXY protocol header to the nodes, so the client's
    /// address survives the hop (as AWS's `aws-load-balancer-proxy-protocol` does).
    pub const PROXY_PROTOCOL: &str = "proxylab.io/proxy-protocol";
}

/// Which PROXY protocol header, if any, starts every connection towards a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyProtocol {
    #[default]
    None,
    V1,
    V2,
}

/// One `spec.ports` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
}

/// A Service, reduced to what the cloud load balancer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LbService {
    pub key: ServiceKey,
    pub uid: String,
    pub resource_version: Option<String>,
    /// `spec.type == LoadBalancer`.
    pub load_balancer: bool,
    /// `spec.loadBalancerClass`.
    pub class: Option<String>,
    /// `spec.loadBalancerIP` and the `loadBalancerIPs` annotation, in that order, deduplicated.
    pub requested_ips: Vec<IpAddr>,
    pub pool: Option<String>,
    pub sharing_key: Option<String>,
    pub ports: Vec<LbPort>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    pub finalizers: Vec<String>,
    /// `status.loadBalancer.ingress` as it is now.
    pub status_ingress: Value,
    pub external_traffic_policy: TrafficPolicy,
    pub health_check_node_port: Option<u16>,
    pub source_ranges: Vec<IpNet>,
    pub proxy_protocol: ProxyProtocol,
    /// Values that could not be read (bad annotation, bad source range), one line each.
    pub problems: Vec<String>,
}

impl LbService {
    /// Reads a Service object. `None` when it has no name (not a stored object).
    pub fn from_json(obj: &Value) -> Option<Self> {
        let meta = obj.get("metadata")?;
        let name = meta.get("name")?.as_str()?;
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let annotation = |keys: [&str; 2]| {
            keys.iter().find_map(|k| {
                meta.get("annotations")
                    .and_then(|a| a.get(*k))
                    .and_then(Value::as_str)
            })
        };
        let mut problems = Vec::new();
        let mut requested_ips: Vec<IpAddr> = Vec::new();
        if let Some(ip) = str_of(spec, "loadBalancerIP").filter(|s| !s.is_empty()) {
            match ip.parse() {
                Ok(ip) => requested_ips.push(ip),
                Err(_) => problems.push(format!("spec.loadBalancerIP {ip:?} is not an IP address")),
            }
        }
        if let Some(list) = annotation(annotations::LOAD_BALANCER_IPS) {
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match item.parse::<IpAddr>() {
                    Ok(ip) if !requested_ips.contains(&ip) => requested_ips.push(ip),
                    Ok(_) => {}
                    Err(_) => problems.push(format!(
                        "annotation {}: {item:?} is not an IP address",
                        annotations::LOAD_BALANCER_IPS[0]
                    )),
                }
            }
        }
        let ports = spec
            .get("ports")
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| {
                        let port = u16::try_from(p.get("port")?.as_u64()?).ok()?;
                        let protocol = match str_of(p, "protocol").unwrap_or("TCP") {
                            "UDP" => Protocol::Udp,
                            "SCTP" => Protocol::Sctp,
                            _ => Protocol::Tcp,
                        };
                        Some(LbPort {
                            name: str_of(p, "name").unwrap_or("").to_owned(),
                            protocol,
                            port,
                            node_port: p
                                .get("nodePort")
                                .and_then(Value::as_u64)
                                .and_then(|n| u16::try_from(n).ok())
                                .filter(|n| *n != 0),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut source_ranges = Vec::new();
        for r in spec
            .get("loadBalancerSourceRanges")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            match r.trim().parse::<IpNet>() {
                Ok(n) => source_ranges.push(n.trunc()),
                // kube-apiserver validates these; from another source a bad one must not open the
                // load balancer to everyone, so it is a problem (no address) rather than skipped.
                Err(_) => problems.push(format!(
                    "spec.loadBalancerSourceRanges: {r:?} is not a CIDR"
                )),
            }
        }
        let proxy_protocol = match meta
            .get("annotations")
            .and_then(|a| a.get(annotations::PROXY_PROTOCOL))
            .and_then(Value::as_str)
        {
            None | Some("") => ProxyProtocol::None,
            Some("v1") => ProxyProtocol::V1,
            Some("v2") => ProxyProtocol::V2,
            Some(other) => {
                problems.push(format!(
                    "annotation {}: {other:?}: expected v1 or v2",
                    annotations::PROXY_PROTOCOL
                ));
                ProxyProtocol::None
            }
        };
        Some(LbService {
            key: ServiceKey::new(namespace, name),
            uid: meta
                .get("uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            resource_version: meta
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_owned),
            load_balancer: str_of(spec, "type") == Some("LoadBalancer"),
            class: str_of(spec, "loadBalancerClass")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            requested_ips,
            pool: annotation(annotations::ADDRESS_POOL)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            sharing_key: annotation(annotations::ALLOW_SHARED_IP)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            ports,
            deleting: meta.get("deletionTimestamp").is_some_and(|t| !t.is_null()),
            finalizers: meta
                .get("finalizers")
                .and_then(Value::as_array)
                .map(|f| {
                    f.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            status_ingress: obj
                .pointer("/status/loadBalancer/ingress")
                .cloned()
                .unwrap_or(Value::Null),
            external_traffic_policy: match str_of(spec, "externalTrafficPolicy") {
                Some("Local") => TrafficPolicy::Local,
                _ => TrafficPolicy::Cluster,
            },
            health_check_node_port: spec
                .get("healthCheckNodePort")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0),
            source_ranges,
            proxy_protocol,
            problems,
        })
    }

    /// Whether this load balancer serves the Service: type LoadBalancer and its class ours. A
    /// Service without a class belongs to the default implementation, so only a load balancer
    /// running with [`DEFAULT_CLASS`] takes it (MetalLB with `--lb-class` does the same); a second
    /// instance with a class of its own never fights the first over unclassed Services.
    pub fn is_ours(&self, class: &str) -> bool {
        self.load_balancer
            && match &self.class {
                None => class == DEFAULT_CLASS,
                Some(c) => c == class,
            }
    }

    pub fn has_finalizer(&self) -> bool {
        self.finalizers.iter().any(|f| f == FINALIZER)
    }

    /// The (protocol, port) pairs the Service occupies on its address.
    pub fn port_set(&self) -> Vec<(Protocol, u16)> {
        let mut v: Vec<(Protocol, u16)> = self.ports.iter().map(|p| (p.protocol, p.port)).collect();
        v.sort();
        v.dedup();
        v
    }

    /// The addresses currently in `status.loadBalancer.ingress`.
    pub fn status_ips(&self) -> Vec<IpAddr> {
        self.status_ingress
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("ip")?.as_str()?.parse().ok())
            .collect()
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_spec_annotations_and_status() {
        let svc = json!({"metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
                "finalizers": [FINALIZER],
                "annotations": {"metallb.universe.tf/loadBalancerIPs": "127.0.50.9, 127.0.50.7",
                    "metallb.io/address-pool": "blue", "metallb.io/allow-shared-ip": "k",
                    "proxylab.io/proxy-protocol": "v2"}},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": "127.0.50.7", "externalTrafficPolicy": "Local",
                "healthCheckNodePort": 32000, "loadBalancerSourceRanges": ["10.1.2.3/8"],
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "dns", "protocol": "UDP", "port": 53}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.50.7"}]}}});
        let s = LbService::from_json(&svc).unwrap();
        assert_eq!(s.key, ServiceKey::new("shop", "web"));
        assert!(s.is_ours(DEFAULT_CLASS) && s.has_finalizer() && !s.deleting);
        assert_eq!(
            s.requested_ips,
            [
                "127.0.50.7".parse::<IpAddr>().unwrap(),
                "127.0.50.9".parse().unwrap()
            ]
        );
        assert_eq!(s.pool.as_deref(), Some("blue"));
        assert_eq!(s.sharing_key.as_deref(), Some("k"));
        assert_eq!(s.proxy_protocol, ProxyProtocol::V2);
        assert_eq!(s.external_traffic_policy, TrafficPolicy::Local);
        assert_eq!(s.health_check_node_port, Some(32000));
        assert_eq!(s.source_ranges, ["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        assert_eq!(s.ports[0].node_port, Some(30080));
        assert_eq!(s.ports[1].protocol, Protocol::Udp);
        assert_eq!(s.port_set(), [(Protocol::Tcp, 80), (Protocol::Udp, 53)]);
        assert_eq!(s.status_ips(), ["127.0.50.7".parse::<IpAddr>().unwrap()]);
        assert!(s.problems.is_empty());
    }

    #[test]
    fn other_classes_and_types_are_not_ours() {
        let mk = |spec: Value| {
            LbService::from_json(&json!({"metadata": {"name": "a"}, "spec": spec})).unwrap()
        };
        assert!(!mk(json!({"type": "ClusterIP"})).is_ours(DEFAULT_CLASS));
        assert!(
            !mk(json!({"type": "LoadBalancer", "loadBalancerClass": "other.io/lb"}))
                .is_ours(DEFAULT_CLASS)
        );
        assert!(
            mk(json!({"type": "LoadBalancer", "loadBalancerClass": DEFAULT_CLASS}))
                .is_ours(DEFAULT_CLASS)
        );
        assert!(mk(json!({"type": "LoadBalancer"})).is_ours(DEFAULT_CLASS));
        assert!(!mk(json!({"type": "LoadBalancer"})).is_ours("other.io/lb"));
        assert!(
            mk(json!({"type": "LoadBalancer", "loadBalancerClass": "other.io/lb"}))
                .is_ours("other.io/lb")
        );
    }

    #[test]
    fn bad_values_become_problems_not_errors() {
        let s = LbService::from_json(&json!({"metadata": {"name": "a", "annotations": {
                "metallb.io/loadBalancerIPs": "nope", "proxylab.io/proxy-protocol": "v3"}},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": "1.2.3", "loadBalancerSourceRanges": ["x"]}}))
        .unwrap();
        assert_eq!(s.problems.len(), 4, "{:?}", s.problems);
        assert!(s.requested_ips.is_empty());
        assert!(LbService::from_json(&json!({"spec": {}})).is_none());
    }
}
