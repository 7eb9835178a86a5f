//! Which nodes may receive a Service's traffic: the load balancer's backend set, before health.
//!
//! A cloud load balancer does not know pods. It forwards to *nodes* (their `NodePort`), and the
//! node's kube-proxy takes it from there. Which nodes, is decided the way the cloud-controller-
//! manager's service controller and cloud-provider-kind decide it:
//!
//! - a node must be **Ready**; a node going NotReady leaves the set at once (drained: no new
//!   connections; established ones run on until they end);
//! - a node labelled [`EXCLUDE_LABEL`] is never used (control-plane nodes, nodes being retired);
//! - `externalTrafficPolicy: Cluster`: every remaining node — kube-proxy on any node forwards to any
//!   endpoint (one more hop, the client's address lost);
//! - `externalTrafficPolicy: Local`: only nodes that run a ready (or, when none is ready, a serving)
//!   endpoint of the Service, by the EndpointSlices. The health checks on `healthCheckNodePort`
//!   (see [`crate::health`]) say the same thing from the node's side; both must agree.
//!
//! A pure function of the cluster snapshot, tested on its own.

use std::net::IpAddr;

use proxylab_core::cluster::{ClusterSnapshot, Node, ServiceKey, TrafficPolicy};

/// The label that keeps a node out of every external load balancer's backend set.
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// A node the load balancer may forward to, and the address it forwards to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeTarget {
    pub name: String,
    pub ip: IpAddr,
}

/// Why a node is left out (for logs and `/debug/hops` reasons).
pub fn excluded_because(node: &Node) -> Option<&'static str> {
    if !node.ready {
        Some("not Ready")
    } else if node.labels.contains_key(EXCLUDE_LABEL) {
        Some("labelled exclude-from-external-load-balancers")
    } else if node.ips().is_empty() {
        Some("no address")
    } else {
        None
    }
}

/// The nodes usable for every Service (Ready, not excluded, with an address), by name.
pub fn usable_nodes(snap: &ClusterSnapshot) -> Vec<NodeTarget> {
    snap.nodes
        .values()
        .filter(|n| excluded_because(n).is_none())
        .map(|n| NodeTarget {
            name: n.name.clone(),
            ip: n.ips()[0],
        })
        .collect()
}

/// The nodes for `service` under `policy` (before health checks), sorted by name.
pub fn nodes_for(
    snap: &ClusterSnapshot,
    service: &ServiceKey,
    policy: TrafficPolicy,
) -> Vec<NodeTarget> {
    let nodes = usable_nodes(snap);
    match policy {
        TrafficPolicy::Cluster => nodes,
        TrafficPolicy::Local => {
            let local = nodes_with_endpoints(snap, service);
            nodes
                .into_iter()
                .filter(|n| local.contains(&n.name))
                .collect()
        }
    }
}

/// Nodes that host an endpoint of `service`: ready ones, or, when no endpoint anywhere is ready,
/// serving-and-terminating ones (kube-proxy's fallback, so the last pod of a rolling update still
/// gets traffic).
pub fn nodes_with_endpoints(snap: &ClusterSnapshot, service: &ServiceKey) -> Vec<String> {
    let endpoints: Vec<_> = snap
        .slices_for(service)
        .filter(|s| s.address_type != "FQDN")
        .flat_map(|s| s.endpoints.iter())
        .collect();
    let any_ready = endpoints.iter().any(|e| e.conditions.ready);
    let mut names: Vec<String> = endpoints
        .iter()
        .filter(|e| {
            if any_ready {
                e.conditions.ready
            } else {
                e.conditions.serving
            }
        })
        .filter_map(|e| e.node_name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn node(name: &str, ip: &str, ready: bool, labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    fn slice(endpoints: Value) -> Value {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints})
    }

    fn snap(objs: &[Value]) -> ClusterSnapshot {
        ClusterSnapshot::from_objects(objs).unwrap()
    }

    fn names(v: &[NodeTarget]) -> Vec<&str> {
        v.iter().map(|n| n.name.as_str()).collect()
    }

    #[test]
    fn cluster_policy_takes_every_ready_node_not_excluded() {
        let s = snap(&[
            node("node-1", "127.0.20.1", true, json!({})),
            node("node-2", "127.0.20.2", false, json!({})),
            node("node-3", "127.0.20.3", true, json!({EXCLUDE_LABEL: ""})),
            node("node-4", "127.0.20.4", true, json!({"other": "x"})),
        ]);
        let key = ServiceKey::new("default", "web");
        let got = nodes_for(&s, &key, TrafficPolicy::Cluster);
        assert_eq!(names(&got), ["node-1", "node-4"]);
        assert_eq!(got[0].ip.to_string(), "127.0.20.1");
        assert_eq!(excluded_because(&s.nodes["node-2"]), Some("not Ready"));
    }

    #[test]
    fn local_policy_picks_only_nodes_with_ready_endpoints() {
        let nodes = [
            node("node-1", "127.0.20.1", true, json!({})),
            node("node-2", "127.0.20.2", true, json!({})),
            node("node-3", "127.0.20.3", true, json!({})),
        ];
        let key = ServiceKey::new("default", "web");
        let mut objs = nodes.to_vec();
        objs.push(slice(json!([
            {"addresses": ["127.0.30.2"], "nodeName": "node-2", "conditions": {"ready": true}},
            {"addresses": ["127.0.30.3"], "nodeName": "node-3", "conditions": {"ready": false, "serving": false}},
        ])));
        assert_eq!(
            names(&nodes_for(&snap(&objs), &key, TrafficPolicy::Local)),
            ["node-2"]
        );
        // No endpoints at all: no node, so the load balancer refuses rather than forwarding to a
        // node that would drop the traffic.
        assert!(nodes_for(&snap(&nodes), &key, TrafficPolicy::Local).is_empty());
        // Only terminating-but-serving endpoints left: their nodes keep the traffic.
        objs.pop();
        objs.push(slice(json!([
            {"addresses": ["127.0.30.3"], "nodeName": "node-3",
             "conditions": {"ready": false, "serving": true, "terminating": true}},
        ])));
        assert_eq!(
            names(&nodes_for(&snap(&objs), &key, TrafficPolicy::Local)),
            ["node-3"]
        );
    }

    #[test]
    fn a_not_ready_node_with_endpoints_is_still_left_out_under_local() {
        let key = ServiceKey::new("default", "web");
        let objs = [
            node("node-1", "127.0.20.1", false, json!({})),
            slice(json!([{"addresses": ["127.0.30.2"], "nodeName": "node-1"}])),
        ];
        assert!(nodes_for(&snap(&objs), &key, TrafficPolicy::Local).is_empty());
    }
}
