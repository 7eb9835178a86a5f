//! The scheduler: binds each unscheduled Pod to a Node.
//!
//! kube-scheduler takes Pods without `spec.nodeName` from a priority queue, runs *filter*
//! plugins to find the Nodes that could run the Pod (NodeUnschedulable, NodeAffinity /
//! nodeSelector, TaintToleration, resources, ports, volumes…), *score* plugins to rank them,
//! and then *binds*: a POST to `pods/<name>/binding` that sets `spec.nodeName` and the
//! `PodScheduled=True` condition. It records an Event `Scheduled` ("Successfully assigned
//! ns/pod to node"). A Pod no Node fits gets `PodScheduled=False, reason=Unschedulable` with
//! a message counting why each Node was rejected, plus an Event `FailedScheduling`, and waits
//! in an "unschedulable" queue until a cluster change (a Node added or updated) might help.
//!
//! This scheduler keeps the shape and drops the breadth:
//! - filters: the Node's `Ready` condition must be `True` (a not-ready Node counts as carrying
//!   the `node.kubernetes.io/not-ready` or `…/unreachable` NoSchedule taint the real node
//!   lifecycle controller would add), `spec.unschedulable` must be false, the Pod's
//!   `spec.nodeSelector` and required node affinity must match the Node, and every
//!   NoSchedule/NoExecute taint must be tolerated. No resources, preferred affinity, pod
//!   (anti-)affinity, topology spread or host ports.
//! - score: fewest (non-finished) Pods on the Node, ties broken by Node name — a spreading
//!   policy that keeps the lab's traffic visibly split across nodes.
//! - all pending Pods are placed in one pass (oldest first), counting the Pods placed earlier in
//!   the same pass: the real scheduler's "assumed pods" cache, which keeps it from piling
//!   Pods onto one Node before the bindings come back through the watch.
//! - the "retry when nodes change" queue is the level-triggered driver: any Pod or Node event
//!   re-runs the reconcile; an unschedulable Pod is written again only if the reason changed.

use std::collections::HashMap;

use proxylab_apimachinery::{meta, selector};
use serde_json::{Map, Value, json};

use crate::action::{Action, Target, resources};
use crate::events;

pub const SCHEDULER_NAME: &str = "default-scheduler";

fn node_condition<'a>(node: &'a Value, kind: &str) -> Option<&'a str> {
    meta::at(node, &["status", "conditions"])
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
}

/// Is the Pod waiting for this scheduler?
fn is_pending(pod: &Value) -> bool {
    let unbound = meta::str_at(pod, &["spec", "nodeName"]).is_none_or(str::is_empty);
    let ours = meta::str_at(pod, &["spec", "schedulerName"])
        .is_none_or(|s| s.is_empty() || s == SCHEDULER_NAME);
    let finished = matches!(
        meta::str_at(pod, &["status", "phase"]),
        Some("Succeeded" | "Failed")
    );
    unbound && ours && !finished && !meta::is_terminating(pod)
}

/// A taint as (key, value, effect).
type Taint = (String, String, String);

/// The Node's NoSchedule/NoExecute taints, plus the ones the real node lifecycle controller
/// derives from its state (not ready, unreachable, cordoned).
fn effective_taints(node: &Value) -> Vec<Taint> {
    let mut taints: Vec<Taint> = meta::at(node, &["spec", "taints"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let effect = t["effect"].as_str()?;
            (effect == "NoSchedule" || effect == "NoExecute").then(|| {
                (
                    t["key"].as_str().unwrap_or("").to_string(),
                    t["value"].as_str().unwrap_or("").to_string(),
                    effect.to_string(),
                )
            })
        })
        .collect();
    match node_condition(node, "Ready") {
        Some("True") => {}
        Some("False") => taints.push((
            "node.kubernetes.io/not-ready".into(),
            String::new(),
            "NoSchedule".into(),
        )),
        _ => taints.push((
            "node.kubernetes.io/unreachable".into(),
            String::new(),
            "NoSchedule".into(),
        )),
    }
    taints
}

fn tolerates(tolerations: &[Value], taint: &Taint) -> bool {
    let (key, value, effect) = taint;
    tolerations.iter().any(|t| {
        let t_effect = t["effect"].as_str().unwrap_or("");
        let t_key = t["key"].as_str().unwrap_or("");
        let exists = t["operator"].as_str() == Some("Exists");
        (t_effect.is_empty() || t_effect == effect)
            && ((t_key.is_empty() && exists) || t_key == key)
            && (exists || t["value"].as_str().unwrap_or("") == value)
    })
}

/// One `NodeSelectorRequirement` against a value (a label, or the Node's name for
/// `matchFields`). `Gt`/`Lt` compare integers, as in the real NodeAffinity plugin.
fn requirement_matches(req: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = req["values"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let int = |s: &str| s.parse::<i64>().ok();
    match req["operator"].as_str().unwrap_or("") {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(int), values.first().and_then(|v| int(v))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((value.and_then(int), values.first().and_then(|v| int(v))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`: the terms are
/// ORed, the requirements within a term ANDed, and a term with no requirements matches nothing.
fn required_node_affinity_matches(pod: &Value, node: &Value) -> bool {
    let Some(required) = meta::at(
        pod,
        &[
            "spec",
            "affinity",
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
        ],
    )
    .filter(|v| !v.is_null()) else {
        return true;
    };
    let terms = required["nodeSelectorTerms"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    terms.iter().any(|term| {
        let exprs = term["matchExpressions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let fields = term["matchFields"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        (!exprs.is_empty() || !fields.is_empty())
            && exprs.iter().all(|r| {
                let key = r["key"].as_str().unwrap_or("");
                requirement_matches(r, meta::label(node, key))
            })
            && fields.iter().all(|r| {
                let value = (r["key"] == "metadata.name").then(|| meta::name(node).unwrap_or(""));
                requirement_matches(r, value)
            })
    })
}

/// Why a Node cannot take a Pod (the wording of the real filter plugins), or `None` if it can.
pub fn filter(pod: &Value, node: &Value) -> Option<String> {
    let tolerations = meta::at(pod, &["spec", "tolerations"])
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let cordoned =
        meta::at(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true);
    let unschedulable_taint = (
        "node.kubernetes.io/unschedulable".to_string(),
        String::new(),
        "NoSchedule".to_string(),
    );
    if cordoned && !tolerates(tolerations, &unschedulable_taint) {
        return Some("node(s) were unschedulable".into());
    }
    let selector_ok = meta::at(pod, &["spec", "nodeSelector"])
        .and_then(Value::as_object)
        .is_none_or(|sel| selector::map_matches(sel, meta::labels(node)));
    if !selector_ok || !required_node_affinity_matches(pod, node) {
        return Some("node(s) didn't match Pod's node affinity/selector".into());
    }
    if let Some((k, v, _)) = effective_taints(node)
        .into_iter()
        .find(|t| !tolerates(tolerations, t))
    {
        return Some(format!("node(s) had untolerated taint {{{k}: {v}}}"));
    }
    None
}

fn counts_against_node(pod: &Value) -> Option<&str> {
    let node = meta::str_at(pod, &["spec", "nodeName"]).filter(|n| !n.is_empty())?;
    (!matches!(
        meta::str_at(pod, &["status", "phase"]),
        Some("Succeeded" | "Failed")
    ))
    .then_some(node)
}

/// The `FailedScheduling` message: "0/N nodes are available: 1 node(s) …, 2 node(s) …."
fn unschedulable_message(total: usize, reasons: &[String]) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for r in reasons {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
        parts.join(", ")
    )
}

/// Replaces (or adds) the Pod condition of `kind`, keeping `lastTransitionTime` when the
/// status does not change.
fn set_condition(
    pod: &mut Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
    now: &str,
) {
    let conditions = meta::object_mut(pod, "status")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let previous = list.iter().position(|c| c["type"] == kind);
    let mut cond = Map::new();
    cond.insert("type".into(), json!(kind));
    cond.insert("status".into(), json!(status));
    cond.insert("lastProbeTime".into(), Value::Null);
    let transition = match previous.map(|i| &list[i]) {
        Some(old) if old["status"] == status => old["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    cond.insert("lastTransitionTime".into(), transition);
    if let Some(r) = reason {
        cond.insert("reason".into(), json!(r));
    }
    if let Some(m) = message {
        cond.insert("message".into(), json!(m));
    }
    match previous {
        Some(i) => list[i] = Value::Object(cond),
        None => list.push(Value::Object(cond)),
    }
}

/// Schedules every pending Pod. Returns, per Pod, either a bind (Pod update + `Scheduled`
/// Event) or, when the Pod's PodScheduled condition does not already say so, an
/// Unschedulable status (Pod update + `FailedScheduling` Event).
pub fn reconcile(pods: &[Value], nodes: &[Value], now: jiff::Timestamp) -> Vec<Action> {
    let now_s = meta::format_time(now);
    let mut load: HashMap<&str, usize> = nodes
        .iter()
        .map(|n| (meta::name(n).unwrap_or(""), 0))
        .collect();
    for pod in pods {
        if let Some(node) = counts_against_node(pod)
            && let Some(n) = load.get_mut(node)
        {
            *n += 1;
        }
    }
    let mut pending: Vec<&Value> = pods.iter().filter(|p| is_pending(p)).collect();
    // The real queue orders by priority, then by when the Pod was enqueued.
    pending.sort_by(|a, b| {
        let ka = (
            meta::str_at(a, &["metadata", "creationTimestamp"]).unwrap_or(""),
            meta::namespace(a).unwrap_or(""),
            meta::name(a).unwrap_or(""),
        );
        let kb = (
            meta::str_at(b, &["metadata", "creationTimestamp"]).unwrap_or(""),
            meta::namespace(b).unwrap_or(""),
            meta::name(b).unwrap_or(""),
        );
        ka.cmp(&kb)
    });

    let mut actions = Vec::new();
    for pod in pending {
        let target = Target::new(
            resources::PODS,
            Some(meta::namespace(pod).unwrap_or("")),
            meta::name(pod).unwrap_or(""),
        );
        let rv = meta::resource_version_u64(pod);
        let mut rejections = Vec::new();
        let mut best: Option<(usize, &str)> = None;
        for node in nodes {
            match filter(pod, node) {
                Some(reason) => rejections.push(reason),
                None => {
                    let name = meta::name(node).unwrap_or("");
                    let cand = (load.get(name).copied().unwrap_or(0), name);
                    if best.is_none_or(|b| cand < b) {
                        best = Some(cand);
                    }
                }
            }
        }
        let mut updated = pod.clone();
        if let Some((_, node)) = best {
            meta::set_path(&mut updated, &["spec", "nodeName"], Some(json!(node)));
            set_condition(&mut updated, "PodScheduled", "True", None, None, &now_s);
            if let Some(n) = load.get_mut(node) {
                *n += 1;
            }
            let msg = format!(
                "Successfully assigned {}/{} to {node}",
                meta::namespace(pod).unwrap_or(""),
                meta::name(pod).unwrap_or("")
            );
            actions.push(Action::Update {
                target,
                object: updated,
                precondition_rv: rv,
            });
            actions.push(events::create(events::pod_event(
                pod,
                SCHEDULER_NAME,
                "Normal",
                "Scheduled",
                &msg,
                now,
            )));
        } else {
            let msg = unschedulable_message(nodes.len(), &rejections);
            let already = meta::at(pod, &["status", "conditions"])
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "PodScheduled"
                        && c["status"] == "False"
                        && c["reason"] == "Unschedulable"
                        && c["message"] == msg.as_str()
                });
            if already {
                continue;
            }
            set_condition(
                &mut updated,
                "PodScheduled",
                "False",
                Some("Unschedulable"),
                Some(&msg),
                &now_s,
            );
            actions.push(Action::Update {
                target,
                object: updated,
                precondition_rv: rv,
            });
            actions.push(events::create(events::pod_event(
                pod,
                SCHEDULER_NAME,
                "Warning",
                "FailedScheduling",
                &msg,
                now,
            )));
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-28T10:00:00Z".parse().unwrap()
    }

    fn node(name: &str, ready: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
               "spec": {},
               "status": {"conditions": [{"type": "Ready", "status": ready}]}})
    }

    fn pod(name: &str, node: Option<&str>) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                            "resourceVersion": "11", "creationTimestamp": "2026-11-28T09:00:00Z"},
               "spec": {"containers": [{"name": "c", "image": "x"}]},
               "status": {"phase": "Pending"}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    }

    fn bound_to(actions: &[Action]) -> Vec<(String, String)> {
        actions
            .iter()
            .filter(|a| a.target().resource == "pods")
            .filter_map(|a| {
                let o = a.object()?;
                Some((
                    a.target().name.clone(),
                    o["spec"]["nodeName"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    #[test]
    fn binds_to_least_loaded_ready_node_with_condition_and_event() {
        let nodes = [
            node("node-2", "True"),
            node("node-1", "True"),
            node("node-3", "False"),
        ];
        let pods = [pod("old", Some("node-1")), pod("web", None)];
        let actions = reconcile(&pods, &nodes, now());
        assert_eq!(actions.len(), 2);
        let Action::Update {
            object,
            precondition_rv,
            ..
        } = &actions[0]
        else {
            panic!()
        };
        assert_eq!(*precondition_rv, Some(11));
        assert_eq!(object["spec"]["nodeName"], "node-2");
        assert_eq!(
            object["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                    "lastTransitionTime": "2026-11-28T10:00:00Z"}])
        );
        let Action::Create { target, object: ev } = &actions[1] else {
            panic!()
        };
        assert_eq!(target.resource, "events");
        assert_eq!(target.namespace.as_deref(), Some("default"));
        assert!(target.name.starts_with("web."));
        assert_eq!(ev["reason"], "Scheduled");
        assert_eq!(ev["type"], "Normal");
        assert_eq!(ev["message"], "Successfully assigned default/web to node-2");
        assert_eq!(ev["involvedObject"]["uid"], "uid-web");
        assert_eq!(ev["involvedObject"]["kind"], "Pod");
        assert_eq!(ev["source"]["component"], "default-scheduler");
    }

    #[test]
    fn spreads_within_one_pass_and_breaks_ties_by_name() {
        let nodes = [node("node-b", "True"), node("node-a", "True")];
        let pods = [pod("p1", None), pod("p2", None), pod("p3", None)];
        assert_eq!(
            bound_to(&reconcile(&pods, &nodes, now())),
            [
                ("p1".into(), "node-a".into()),
                ("p2".into(), "node-b".into()),
                ("p3".into(), "node-a".into())
            ]
        );
    }

    #[test]
    fn finished_pods_do_not_count() {
        let nodes = [node("node-a", "True"), node("node-b", "True")];
        let mut done = pod("done", Some("node-a"));
        done["status"]["phase"] = json!("Succeeded");
        let pods = [done, pod("running", Some("node-b")), pod("new", None)];
        assert_eq!(
            bound_to(&reconcile(&pods, &nodes, now())),
            [("new".into(), "node-a".into())]
        );
    }

    #[test]
    fn honours_node_selector_cordon_and_taints() {
        let mut labelled = node("node-z", "True");
        labelled["metadata"]["labels"]["disk"] = json!("ssd");
        let mut cordoned = node("node-a", "True");
        cordoned["metadata"]["labels"]["disk"] = json!("ssd");
        cordoned["spec"]["unschedulable"] = json!(true);
        let mut tainted = node("node-b", "True");
        tainted["metadata"]["labels"]["disk"] = json!("ssd");
        tainted["spec"]["taints"] =
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
        let nodes = [labelled, cordoned, tainted, node("node-c", "True")];
        let mut p = pod("p", None);
        p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        assert_eq!(
            bound_to(&reconcile(std::slice::from_ref(&p), &nodes, now())),
            [("p".into(), "node-z".into())]
        );

        // Tolerating the taint makes node-b eligible (and it sorts first by name among equals).
        p["spec"]["tolerations"] = json!([{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]);
        assert_eq!(
            bound_to(&reconcile(std::slice::from_ref(&p), &nodes, now())),
            [("p".into(), "node-b".into())]
        );
        // "Exists" with no key tolerates everything, even cordoned nodes.
        p["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        assert_eq!(
            bound_to(&reconcile(&[p], &nodes, now())),
            [("p".into(), "node-a".into())]
        );
    }

    #[test]
    fn unschedulable_pod_gets_condition_and_event_once() {
        let mut cordoned = node("node-a", "True");
        cordoned["spec"]["unschedulable"] = json!(true);
        let nodes = [cordoned, node("node-b", "Unknown"), node("node-c", "False")];
        let pods = [pod("p", None)];
        let actions = reconcile(&pods, &nodes, now());
        assert_eq!(actions.len(), 2);
        let cond = &actions[0].object().unwrap()["status"]["conditions"][0];
        assert_eq!(cond["status"], "False");
        assert_eq!(cond["reason"], "Unschedulable");
        assert_eq!(
            cond["message"],
            "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
             1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were unschedulable. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        assert_eq!(actions[1].object().unwrap()["reason"], "FailedScheduling");
        assert_eq!(actions[1].object().unwrap()["type"], "Warning");

        // Same situation again: nothing new to say.
        let marked = actions[0].object().unwrap().clone();
        assert!(reconcile(std::slice::from_ref(&marked), &nodes, now()).is_empty());

        // A node becomes ready: the pod is bound and the condition flips to True.
        let nodes2 = [node("node-c", "True")];
        let later: jiff::Timestamp = "2026-11-28T10:05:00Z".parse().unwrap();
        let actions = reconcile(&[marked], &nodes2, later);
        let conds = &actions[0].object().unwrap()["status"]["conditions"];
        assert_eq!(conds.as_array().unwrap().len(), 1);
        assert_eq!(conds[0]["status"], "True");
        assert_eq!(conds[0]["lastTransitionTime"], "2026-11-28T10:05:00Z");
        assert!(conds[0].get("reason").is_none());
    }

    #[test]
    fn no_nodes_message_and_skipped_pods() {
        let actions = reconcile(&[pod("p", None)], &[], now());
        assert_eq!(
            actions[0].object().unwrap()["status"]["conditions"][0]["message"],
            "no nodes available to schedule pods"
        );
        let mut other = pod("o", None);
        other["spec"]["schedulerName"] = json!("my-scheduler");
        let mut dying = pod("d", None);
        dying["metadata"]["deletionTimestamp"] = json!("2026-11-28T10:00:00Z");
        let mut failed = pod("f", None);
        failed["status"]["phase"] = json!("Failed");
        assert!(
            reconcile(
                &[other, dying, failed, pod("b", Some("node-1"))],
                &[node("node-1", "True")],
                now()
            )
            .is_empty()
        );
    }

    #[test]
    fn honours_required_node_affinity() {
        let mut big = node("node-big", "True");
        big["metadata"]["labels"]["cores"] = json!("16");
        big["metadata"]["labels"]["zone"] = json!("a");
        let mut small = node("node-small", "True");
        small["metadata"]["labels"]["cores"] = json!("2");
        small["metadata"]["labels"]["zone"] = json!("b");
        let nodes = [big, small];
        let with_affinity = |terms: Value| {
            let mut p = pod("p", None);
            p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                                           {"nodeSelectorTerms": terms}}});
            p
        };
        let place = |p: Value| bound_to(&reconcile(&[p], &nodes, now()));
        let on = |n: &str| vec![("p".to_string(), n.to_string())];
        assert_eq!(
            place(with_affinity(
                json!([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}])
            )),
            on("node-big")
        );
        assert_eq!(
            place(with_affinity(
                json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}])
            )),
            on("node-small")
        );
        assert_eq!(
            place(with_affinity(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-small"]}]}])
            )),
            on("node-small")
        );
        // ORed terms: the first matches nothing, the second picks node-big.
        assert_eq!(
            place(with_affinity(json!([
                {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]},
                {"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["100"]}, {"key": "zone", "operator": "In", "values": ["a"]}]}
            ]))),
            on("node-big")
        );
        // An empty term matches nothing.
        let actions = reconcile(&[with_affinity(json!([{}]))], &nodes, now());
        assert_eq!(
            actions[0].object().unwrap()["status"]["conditions"][0]["message"],
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
    }
}
