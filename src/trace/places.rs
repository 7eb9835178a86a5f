//! What each address of the lab is, read from `lab.json`: so a trace can say "pod on node-1" or
//! "service default/web" next to an address, tell whether a proxy that records hops listens where a
//! hop went (and so whether the path goes on), and explain a refused connection.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde_json::Value;

#[derive(Debug, Clone)]
struct ServicePort {
    name: Option<String>,
    protocol: String,
    port: u16,
    node_port: Option<u16>,
}

#[derive(Debug, Clone)]
struct Service {
    namespace: String,
    name: String,
    cluster_ip: Option<IpAddr>,
    ports: Vec<ServicePort>,
    ingress: Vec<IpAddr>,
}

impl Service {
    fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn port_list(&self) -> String {
        let ps: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.port, p.protocol))
            .collect();
        if ps.is_empty() {
            "none".into()
        } else {
            ps.join(", ")
        }
    }
}

/// The lab's addresses, by role.
#[derive(Debug, Clone, Default)]
pub struct Places {
    auth_proxy: Option<SocketAddr>,
    ha_balancer: Option<SocketAddr>,
    apiservers: Vec<SocketAddr>,
    nodes: Vec<(String, IpAddr, Option<IpNet>)>,
    services: Vec<Service>,
}

/// `http(s)://IP:PORT[/]` → the address.
fn url_addr(v: &Value) -> Option<SocketAddr> {
    let s = v.as_str()?;
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    rest.trim_end_matches('/').parse().ok()
}

impl Places {
    pub fn from_info(info: &Value) -> Self {
        let str_of = |v: &Value| v.as_str().map(str::to_owned);
        let nodes = info["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| {
                Some((
                    str_of(&n["name"])?,
                    n["address"].as_str()?.parse().ok()?,
                    n["podCIDR"].as_str().and_then(|c| c.parse().ok()),
                ))
            })
            .collect();
        let services = info["services"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| Service {
                namespace: str_of(&s["namespace"]).unwrap_or_else(|| "default".into()),
                name: str_of(&s["name"]).unwrap_or_default(),
                cluster_ip: s["clusterIP"].as_str().and_then(|ip| ip.parse().ok()),
                ports: s["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        Some(ServicePort {
                            name: str_of(&p["name"]),
                            protocol: str_of(&p["protocol"]).unwrap_or_else(|| "TCP".into()),
                            port: u16::try_from(p["port"].as_u64()?).ok()?,
                            node_port: p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()),
                        })
                    })
                    .collect(),
                ingress: s["loadBalancerIngress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| {
                        i.as_str()
                            .or_else(|| i["ip"].as_str())
                            .and_then(|ip| ip.parse().ok())
                    })
                    .collect(),
            })
            .collect();
        Self {
            auth_proxy: url_addr(&info["authProxy"]),
            ha_balancer: url_addr(&info["haBalancer"]),
            apiservers: info["apiservers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(url_addr)
                .collect(),
            nodes,
            services,
        }
    }

    /// Whether `addr` is an apiserver or the HA balancer in front of them: where the kubeconfig's
    /// credentials may go.
    pub fn is_api(&self, addr: SocketAddr) -> bool {
        self.apiservers.contains(&addr) || self.ha_balancer == Some(addr)
    }

    fn node_of(&self, ip: IpAddr) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(_, a, _)| *a == ip)
            .map(|(n, _, _)| n.as_str())
    }

    fn pod_node(&self, ip: IpAddr) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(_, _, cidr)| cidr.is_some_and(|c| c.contains(&ip)))
            .map(|(n, _, _)| n.as_str())
    }

    /// What is at `addr`, in a few words, when the lab says.
    pub fn name(&self, addr: SocketAddr) -> Option<String> {
        if self.auth_proxy == Some(addr) {
            return Some("auth-proxy".into());
        }
        if self.ha_balancer == Some(addr) {
            return Some("ha-balancer".into());
        }
        if let Some(i) = self.apiservers.iter().position(|a| *a == addr) {
            return Some(format!("apiserver-{}", i + 1));
        }
        for s in &self.services {
            if s.cluster_ip == Some(addr.ip()) {
                return Some(match s.ports.iter().find(|p| p.port == addr.port()) {
                    Some(p) => format!(
                        "service {}:{}",
                        s.id(),
                        p.name.clone().unwrap_or_else(|| p.port.to_string())
                    ),
                    None => format!("service {} (no port {})", s.id(), addr.port()),
                });
            }
            if s.ingress.contains(&addr.ip()) {
                return Some(format!("load balancer of {}", s.id()));
            }
        }
        if let Some(node) = self.node_of(addr.ip()) {
            if addr.port() == 10250 {
                return Some(format!("kubelet of {node}"));
            }
            if let Some(s) = self
                .services
                .iter()
                .find(|s| s.ports.iter().any(|p| p.node_port == Some(addr.port())))
            {
                return Some(format!("NodePort of {} on {node}", s.id()));
            }
            return Some(node.to_owned());
        }
        self.pod_node(addr.ip())
            .map(|node| format!("pod on {node}"))
    }

    /// Whether a lab proxy that records hops listens at `addr` for this request — so that a hop
    /// that went there should be followed by another. An apiserver records a hop only for its
    /// proxy subresources (`…/proxy/…`: the bastion); other API requests end there.
    pub fn records_next_hop(&self, addr: SocketAddr, request_path: Option<&str>) -> bool {
        if self.auth_proxy == Some(addr) || self.ha_balancer == Some(addr) {
            return true;
        }
        if self.apiservers.contains(&addr) {
            return request_path.is_some_and(|p| p.contains("/proxy"));
        }
        self.services.iter().any(|s| {
            let ip = addr.ip();
            (s.cluster_ip == Some(ip) || s.ingress.contains(&ip))
                && s.ports.iter().any(|p| p.port == addr.port())
        }) || (self.node_of(addr.ip()).is_some()
            && self
                .services
                .iter()
                .any(|s| s.ports.iter().any(|p| p.node_port == Some(addr.port()))))
    }

    /// Why nothing may have answered at `addr`, as far as the lab can tell.
    pub fn explain_unreachable(&self, addr: SocketAddr, protocol: &str) -> String {
        let proto = if protocol == "udp" { "UDP" } else { "TCP" };
        for s in &self.services {
            if s.cluster_ip == Some(addr.ip()) || s.ingress.contains(&addr.ip()) {
                let has = s
                    .ports
                    .iter()
                    .any(|p| p.port == addr.port() && p.protocol.eq_ignore_ascii_case(proto));
                return if has {
                    format!(
                        "service {} has port {}/{proto}, but no forwarder accepted the connection (is the lab's forwarder stopped?)",
                        s.id(),
                        addr.port()
                    )
                } else {
                    format!(
                        "service {} has no port {}/{proto} (its ports: {}), so nothing listens there",
                        s.id(),
                        addr.port(),
                        s.port_list()
                    )
                };
            }
        }
        if let Some(node) = self.node_of(addr.ip()) {
            return format!(
                "{node} has no NodePort {} (no service uses it) and nothing else listens there",
                addr.port()
            );
        }
        if let Some(node) = self.pod_node(addr.ip()) {
            return format!(
                "{addr} is a pod address on {node}: no pod listens on port {}",
                addr.port()
            );
        }
        if let Some(name) = self.name(addr) {
            return format!("{name} does not answer at {addr} (is it stopped?)");
        }
        format!("nothing of the lab is at {addr} (`proxylab lab status` lists the lab's addresses)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn places() -> Places {
        Places::from_info(&json!({
            "authProxy": "http://127.0.0.1:8001",
            "haBalancer": null,
            "apiservers": ["https://127.0.10.1:6443", "https://127.0.10.2:6443"],
            "nodes": [{"name": "node-1", "address": "127.0.20.1", "podCIDR": "127.0.30.0/25"}],
            "services": [
                {"namespace": "default", "name": "web", "type": "ClusterIP", "clusterIP": "127.0.40.10",
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "nodePort": null}],
                 "loadBalancerIngress": []},
                {"namespace": "default", "name": "web-lb", "type": "LoadBalancer", "clusterIP": "127.0.40.12",
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "nodePort": 30080}],
                 "loadBalancerIngress": ["127.0.50.1"]},
            ],
        }))
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_named_by_role() {
        let p = places();
        for (addr, name) in [
            ("127.0.0.1:8001", "auth-proxy"),
            ("127.0.10.2:6443", "apiserver-2"),
            ("127.0.40.10:80", "service default/web:http"),
            ("127.0.40.10:81", "service default/web (no port 81)"),
            ("127.0.50.1:80", "load balancer of default/web-lb"),
            ("127.0.20.1:30080", "NodePort of default/web-lb on node-1"),
            ("127.0.20.1:10250", "kubelet of node-1"),
            ("127.0.30.7:8080", "pod on node-1"),
        ] {
            assert_eq!(p.name(a(addr)).as_deref(), Some(name), "{addr}");
        }
        assert_eq!(p.name(a("127.0.99.1:1")), None);
        assert!(p.is_api(a("127.0.10.1:6443")));
        assert!(!p.is_api(a("127.0.0.1:8001")));
    }

    #[test]
    fn the_path_goes_on_where_a_recording_proxy_listens() {
        let p = places();
        assert!(p.records_next_hop(a("127.0.0.1:8001"), None));
        assert!(p.records_next_hop(a("127.0.40.10:80"), None));
        assert!(p.records_next_hop(a("127.0.20.1:30080"), None));
        assert!(p.records_next_hop(a("127.0.50.1:80"), None));
        assert!(p.records_next_hop(
            a("127.0.10.1:6443"),
            Some("/api/v1/namespaces/default/services/web/proxy/")
        ));
        assert!(!p.records_next_hop(a("127.0.10.1:6443"), Some("/api/v1/pods")));
        assert!(!p.records_next_hop(a("127.0.30.7:8080"), None));
    }

    #[test]
    fn an_unreachable_address_is_explained() {
        let p = places();
        let e = p.explain_unreachable(a("127.0.40.10:81"), "tcp");
        assert!(
            e.contains("service default/web has no port 81/TCP (its ports: 80/TCP)"),
            "{e}"
        );
        let e = p.explain_unreachable(a("127.0.40.10:80"), "udp");
        assert!(e.contains("no port 80/UDP"), "{e}");
        let e = p.explain_unreachable(a("127.0.20.1:31111"), "tcp");
        assert!(e.contains("node-1 has no NodePort 31111"), "{e}");
        let e = p.explain_unreachable(a("127.0.99.1:1"), "tcp");
        assert!(e.contains("nothing of the lab"), "{e}");
    }
}
