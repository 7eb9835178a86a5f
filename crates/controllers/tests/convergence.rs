//! Property tests: for any cluster state, applying what a reconcile asks for converges — the
//! next reconcile asks for nothing — and what it publishes obeys the controller's rules.

use proptest::prelude::*;
use proxylab_controllers::action::Action;
use proxylab_controllers::{endpointslices, scheduler};
use serde_json::{Value, json};

fn now() -> jiff::Timestamp {
    "2026-11-28T10:00:00Z".parse().unwrap()
}

/// Applies actions to per-resource object lists the way the store would (bumping rv).
fn apply(actions: &[Action], lists: &mut [(&str, &mut Vec<Value>)], rv: &mut u64) {
    for a in actions {
        let t = a.target();
        let Some((_, list)) = lists.iter_mut().find(|(r, _)| *r == t.resource) else {
            continue;
        };
        let ns = t.namespace.clone().unwrap_or_default();
        list.retain(|o| {
            !(o["metadata"]["name"] == t.name.as_str()
                && o["metadata"]["namespace"].as_str().unwrap_or("") == ns)
        });
        if let Some(o) = a.object() {
            *rv += 1;
            let mut o = o.clone();
            o["metadata"]["resourceVersion"] = json!(rv.to_string());
            list.push(o);
        }
    }
}

#[derive(Debug, Clone)]
struct PodSpec {
    app: u8,
    tier: u8,
    ip: Option<u8>,
    ready: bool,
    terminating: bool,
    node: u8,
    named_port: Option<u16>,
}

fn pod_strategy() -> impl Strategy<Value = PodSpec> {
    (
        0u8..3,
        0u8..2,
        proptest::option::of(2u8..250),
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        proptest::option::of(8000u16..8003),
    )
        .prop_map(
            |(app, tier, ip, ready, terminating, node, named_port)| PodSpec {
                app,
                tier,
                ip,
                ready,
                terminating,
                node,
                named_port,
            },
        )
}

fn pod(i: usize, p: &PodSpec) -> Value {
    let mut ports = vec![];
    if let Some(n) = p.named_port {
        ports.push(json!({"name": "http", "containerPort": n, "protocol": "TCP"}));
    }
    let mut v = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": "default", "uid": format!("uid-{i}"),
                     "labels": {"app": format!("a{}", p.app), "tier": format!("t{}", p.tier)}},
        "spec": {"nodeName": format!("node-{}", p.node), "containers": [{"name": "c", "image": "x", "ports": ports}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if p.ready {"True"} else {"False"}}]}});
    if let Some(ip) = p.ip {
        v["status"]["podIP"] = json!(format!("127.0.30.{ip}"));
    }
    if p.terminating {
        v["metadata"]["deletionTimestamp"] = json!("2026-11-28T09:59:00Z");
    }
    v
}

fn service(i: usize, app: u8, by_tier: Option<u8>, named: bool) -> Value {
    let mut selector = json!({"app": format!("a{app}")});
    if let Some(t) = by_tier {
        selector["tier"] = json!(format!("t{t}"));
    }
    let target = if named { json!("http") } else { json!(9000) };
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": format!("svc-{i}"), "namespace": "default", "uid": format!("svc-uid-{i}")},
           "spec": {"selector": selector, "ports": [{"name": "p", "port": 80, "targetPort": target, "protocol": "TCP"}]}})
}

fn nodes() -> Vec<Value> {
    (0..3)
        .map(|i| json!({"apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": format!("node-{i}"), "labels": {"topology.kubernetes.io/zone": format!("z{i}")}},
                        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn endpointslices_converge_and_publish_only_matching_pods(
        pods in proptest::collection::vec(pod_strategy(), 0..12),
        services in proptest::collection::vec((0u8..3, proptest::option::of(0u8..2), any::<bool>()), 0..4),
        later in proptest::collection::vec(pod_strategy(), 0..12),
    ) {
        let nodes = nodes();
        let services: Vec<Value> = services.iter().enumerate().map(|(i, (a, t, n))| service(i, *a, *t, *n)).collect();
        let (mut slices, mut endpoints) = (Vec::new(), Vec::new());
        let mut rv = 0;
        // Two rounds: the cluster as generated, then with every pod replaced — convergence must
        // hold from a state the controller wrote itself, too.
        for pod_specs in [&pods, &later] {
            let pods: Vec<Value> = pod_specs.iter().enumerate().map(|(i, p)| pod(i, p)).collect();
            let snap = |s: &[Value], e: &[Value]| endpointslices::reconcile(
                &endpointslices::Snapshot { services: &services, pods: &pods, nodes: &nodes, endpoint_slices: s, endpoints: e },
                now(),
            );
            let actions = snap(&slices, &endpoints);
            apply(&actions, &mut [("endpointslices.discovery.k8s.io", &mut slices), ("endpoints", &mut endpoints)], &mut rv);
            let again = snap(&slices, &endpoints);
            prop_assert!(again.is_empty(), "not converged: {:#?}", again);

            for svc in &services {
                let name = svc["metadata"]["name"].as_str().unwrap();
                let selector = svc["spec"]["selector"].as_object().unwrap();
                let mine: Vec<&Value> = slices.iter().filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == name).collect();
                prop_assert!(!mine.is_empty(), "every selected Service has at least a placeholder slice");
                let mut published = 0;
                for s in &mine {
                    for ep in s["endpoints"].as_array().unwrap() {
                        published += 1;
                        let pod = pods.iter().find(|p| p["metadata"]["name"] == ep["targetRef"]["name"]).unwrap();
                        prop_assert!(selector.iter().all(|(k, v)| &pod["metadata"]["labels"][k] == v));
                        let c = &ep["conditions"];
                        let terminating = pod["metadata"].get("deletionTimestamp").is_some();
                        prop_assert_eq!(c["terminating"].as_bool(), Some(terminating));
                        prop_assert_eq!(c["ready"].as_bool(), Some(c["serving"] == true && !terminating));
                    }
                }
                let expected = pods.iter().filter(|p| p["status"]["podIP"].is_string()
                    && selector.iter().all(|(k, v)| &p["metadata"]["labels"][k] == v)).count();
                prop_assert_eq!(published, expected);
            }
        }
    }

    #[test]
    fn scheduler_converges_and_balances(
        bound in proptest::collection::vec(0u8..3, 0..10),
        pending in 0usize..10,
    ) {
        let nodes = nodes();
        let mut pods: Vec<Value> = bound.iter().enumerate().map(|(i, n)| json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("b-{i}"), "namespace": "default", "uid": format!("b{i}")},
            "spec": {"nodeName": format!("node-{n}")}, "status": {"phase": "Running"}})).collect();
        for i in 0..pending {
            pods.push(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("p-{i}"), "namespace": "default", "uid": format!("p{i}")},
                "spec": {}, "status": {"phase": "Pending"}}));
        }
        let count = |pods: &[Value], n: usize| pods.iter().filter(|p| p["spec"]["nodeName"] == format!("node-{n}")).count();
        let before: Vec<usize> = (0..3).map(|n| count(&pods, n)).collect();
        let mut events = Vec::new();
        let mut rv = 0;
        let actions = scheduler::reconcile(&pods, &nodes, now());
        apply(&actions, &mut [("pods", &mut pods), ("events", &mut events)], &mut rv);
        prop_assert!(scheduler::reconcile(&pods, &nodes, now()).is_empty());
        prop_assert!(pods.iter().all(|p| p["spec"]["nodeName"].is_string()));
        prop_assert_eq!(events.len(), pending);
        // Greedy least-loaded: no node gains a pod while another ends up two or more below it
        // after the pass, unless that node started out ahead.
        let after: Vec<usize> = (0..3).map(|n| count(&pods, n)).collect();
        for a in 0..3 {
            for b in 0..3 {
                if after[a] > before[a] {
                    prop_assert!(after[a] <= after[b] + 1, "before {:?} after {:?}", before, after);
                }
            }
        }
    }
}
