//! Frontends: what the data plane listens on, derived from the controller's allocations.
//!
//! One frontend per ingress address, protocol and port — a mixed-protocol Service (`53/TCP` and
//! `53/UDP`) gets two on the same address. Each forwards to the same port on every chosen node:
//! the Service's `nodePort` for that port, where the node's kube-proxy listens.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use proxylab_core::cluster::{Protocol, ServiceKey, TrafficPolicy};

use crate::alloc::Allocations;
use crate::service::{LbService, ProxyProtocol};

/// One listener's worth of configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    pub service: ServiceKey,
    /// `spec.ports[].name` (empty for a single unnamed port).
    pub port_name: String,
    pub protocol: Protocol,
    /// The ingress address and the Service port.
    pub listen: SocketAddr,
    /// Where every node's kube-proxy takes this port.
    pub node_port: u16,
    pub policy: TrafficPolicy,
    pub health_check_node_port: Option<u16>,
    /// `loadBalancerSourceRanges`; empty admits every client.
    pub source_ranges: Vec<IpNet>,
    pub proxy_protocol: ProxyProtocol,
}

impl Frontend {
    /// `namespace/name:port` as hop records name a target.
    pub fn target(&self) -> String {
        let port = if self.port_name.is_empty() {
            self.listen.port().to_string()
        } else {
            self.port_name.clone()
        };
        format!("{}:{port}", self.service)
    }

    /// Whether `client` may use this load balancer (`loadBalancerSourceRanges`).
    pub fn admits(&self, client: IpAddr) -> bool {
        let client = match client {
            // A v4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        self.source_ranges.is_empty() || self.source_ranges.iter().any(|r| r.contains(&client))
    }

    /// Where a node is health-checked for this frontend: kube-proxy's port for `Cluster`, the
    /// Service's `healthCheckNodePort` for `Local`.
    pub fn check_addr(&self, node_ip: IpAddr, proxy_port: u16) -> SocketAddr {
        match (self.policy, self.health_check_node_port) {
            (TrafficPolicy::Local, Some(p)) => SocketAddr::new(node_ip, p),
            _ => SocketAddr::new(node_ip, proxy_port),
        }
    }
}

/// The frontends of every allocated Service: TCP and UDP ports that have a `nodePort`. (SCTP is not
/// relayed; a port without a `nodePort` — `allocateLoadBalancerNodePorts: false` — has nothing to
/// forward to.) Sorted by address, protocol and port.
pub fn frontends(
    services: &BTreeMap<ServiceKey, LbService>,
    allocations: &Allocations,
) -> Vec<Frontend> {
    let mut out = Vec::new();
    for (key, alloc) in allocations {
        let Some(svc) = services.get(key) else {
            continue;
        };
        for p in &svc.ports {
            let Some(node_port) = p.node_port else {
                continue;
            };
            if p.protocol == Protocol::Sctp {
                continue;
            }
            out.push(Frontend {
                service: key.clone(),
                port_name: p.name.clone(),
                protocol: p.protocol,
                listen: SocketAddr::new(alloc.ip, p.port),
                node_port,
                policy: svc.external_traffic_policy,
                health_check_node_port: svc.health_check_node_port,
                source_ranges: svc.source_ranges.clone(),
                proxy_protocol: svc.proxy_protocol,
            });
        }
    }
    out.sort_by_key(|f| (f.listen, f.protocol));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::Allocation;
    use serde_json::json;

    #[test]
    fn one_frontend_per_address_protocol_and_port_with_a_node_port() {
        let svc =
            LbService::from_json(&json!({"metadata": {"name": "dns", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/8"],
                "ports": [{"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053},
                          {"name": "dns-udp", "port": 53, "protocol": "UDP", "nodePort": 30053},
                          {"name": "none", "port": 54, "protocol": "TCP"}]}}))
            .unwrap();
        let mut allocs = Allocations::new();
        allocs.insert(
            svc.key.clone(),
            Allocation {
                ip: "127.0.50.3".parse().unwrap(),
                pool: "default".into(),
                sharing_key: None,
                ports: svc.port_set(),
                uid: String::new(),
            },
        );
        let services = BTreeMap::from([(svc.key.clone(), svc)]);
        let f = frontends(&services, &allocs);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!(f[0].listen.to_string(), "127.0.50.3:53");
        assert_eq!(
            (f[0].protocol, f[1].protocol),
            (Protocol::Tcp, Protocol::Udp)
        );
        assert_eq!(f[1].target(), "default/dns:dns-udp");
        assert!(f[0].admits("10.1.2.3".parse().unwrap()));
        assert!(f[0].admits("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!f[0].admits("127.0.0.1".parse().unwrap()));
    }
}
