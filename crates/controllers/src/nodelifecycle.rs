//! Node lifecycle: a Node that stops heartbeating goes `Ready=Unknown`.
//!
//! A kubelet proves it is alive in two ways: it renews its Lease `kube-node-lease/<node>`
//! every ~10 s, and it posts Node status (with each condition's `lastHeartbeatTime`) when
//! something changes or every 5 minutes. kube-controller-manager's `nodelifecycle`
//! controller checks every `--node-monitor-period` (5 s) when it last heard from each Node —
//! whichever of the two is newer — and once that is older than
//! `--node-monitor-grace-period` (40 s; 50 s since 1.32) it sets the Node's `Ready`,
//! `MemoryPressure`, `DiskPressure` and `PIDPressure` conditions to `Unknown`
//! (reason `NodeStatusUnknown`, "Kubelet stopped posting node status."). A Node that never
//! posted a status gets `Ready=Unknown` with reason `NodeStatusNeverUpdated`. It then taints
//! the Node `node.kubernetes.io/unreachable` (NoSchedule, NoExecute), and the taint manager
//! evicts Pods that do not tolerate it after their `tolerationSeconds` (300 s by default).
//!
//! When a Node's Ready condition leaves `True`, the controller also marks every Pod on it not
//! ready (`MarkPodsNotReady`: the Pod's `Ready` condition becomes `False`, plus a Warning Event
//! `NodeNotReady`, "Node is not ready"). That is what takes a dead Node's Pods out of the
//! Services' ready endpoints long before they are evicted — the fail-over a proxy user sees.
//!
//! Here: the condition change; the NoSchedule readiness taints (`not-ready` while Ready is
//! False, `unreachable` while it is Unknown, removed when it is True again — what
//! `TaintNodesByCondition` maintains, and what `kubectl describe node` shows under Taints);
//! and `MarkPodsNotReady`, only for Nodes whose Ready is `Unknown` (nobody else is updating
//! those Pods; a Node reporting `Ready=False` has a live kubelet that owns its Pods' status).
//! No NoExecute taints and no evictions. A never-heard-from Node
//! gets the grace period counted from its `creationTimestamp` (the real controller uses the
//! separate `--node-startup-grace-period`, 60 s). Instead of polling every 5 s, the reconcile
//! returns the instant at which the next Node would expire, and the driver sleeps until then
//! or until a Node or Lease changes.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use proxylab_apimachinery::meta;
use serde_json::{Value, json};

use crate::action::{Action, Target, resources};
use crate::events;

/// The event source of the real node lifecycle controller.
pub const COMPONENT: &str = "node-controller";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
pub const DEFAULT_NODE_MONITOR_GRACE_PERIOD: Duration = Duration::from_secs(40);
/// The conditions the real controller turns Unknown.
const MONITORED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The result of one pass: writes, and when to look again if nothing changes before then.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub actions: Vec<Action>,
    /// The earliest instant at which a currently healthy Node would run out of grace.
    pub next_check: Option<Timestamp>,
}

fn ts_at(v: &Value, path: &[&str]) -> Option<Timestamp> {
    meta::str_at(v, path).and_then(meta::parse_time)
}

/// When the control plane last heard from the Node: the newest of its Lease's `renewTime`,
/// its Ready condition's `lastHeartbeatTime` and, for a Node that never reported, its
/// `creationTimestamp`.
pub fn last_heard(node: &Value, leases: &[Value]) -> Option<Timestamp> {
    let name = meta::name(node).unwrap_or("");
    let lease = leases
        .iter()
        .find(|l| {
            meta::namespace(l).unwrap_or("") == NODE_LEASE_NAMESPACE
                && meta::name(l).unwrap_or("") == name
        })
        .and_then(|l| {
            ts_at(l, &["spec", "renewTime"]).or_else(|| ts_at(l, &["spec", "acquireTime"]))
        });
    let heartbeat = meta::at(node, &["status", "conditions"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["lastHeartbeatTime"].as_str())
        .and_then(meta::parse_time);
    let created = ts_at(node, &["metadata", "creationTimestamp"]);
    [lease, heartbeat, created].into_iter().flatten().max()
}

fn ready_status(node: &Value) -> Option<&str> {
    meta::at(node, &["status", "conditions"])
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
}

/// Sets the monitored conditions of a silent Node to Unknown; true if anything changed.
fn expire_conditions(node: &mut Value, created: Option<&str>, now_s: &str) -> bool {
    let mut changed = false;
    let conditions = meta::object_mut(node, "status")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return false;
    };
    for cond in list.iter_mut() {
        // A non-object entry has no "type" and is skipped, so these writes cannot panic.
        let kind = cond["type"].as_str().unwrap_or("");
        if MONITORED_CONDITIONS.contains(&kind) && cond["status"] != "Unknown" {
            cond["status"] = json!("Unknown");
            cond["reason"] = json!("NodeStatusUnknown");
            cond["message"] = json!("Kubelet stopped posting node status.");
            cond["lastTransitionTime"] = json!(now_s);
            changed = true;
        }
    }
    if !list.iter().any(|c| c["type"] == "Ready") {
        list.push(json!({
            "type": "Ready",
            "status": "Unknown",
            "reason": "NodeStatusNeverUpdated",
            "message": "Kubelet never posted node status.",
            "lastHeartbeatTime": created,
            "lastTransitionTime": now_s,
        }));
        changed = true;
    }
    changed
}

/// `TaintNodesByCondition` for readiness: `node.kubernetes.io/not-ready:NoSchedule` while Ready
/// is False, `node.kubernetes.io/unreachable:NoSchedule` while it is Unknown, neither
/// while it is True. Other taints are kept as they are. True if anything changed.
fn reconcile_taints(node: &mut Value) -> bool {
    let wanted = match ready_status(node) {
        Some("True") => None,
        Some("False") => Some(TAINT_NOT_READY),
        Some(_) => Some(TAINT_UNREACHABLE),
        // Not reported yet: the grace period decides (then Ready becomes Unknown).
        None => return false,
    };
    let current: Vec<Value> = meta::at(node, &["spec", "taints"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ours = |t: &Value| {
        t["effect"] == "NoSchedule"
            && (t["key"] == TAINT_NOT_READY || t["key"] == TAINT_UNREACHABLE)
    };
    let mut taints: Vec<Value> = current
        .iter()
        .filter(|t| !ours(t) || wanted.is_some_and(|w| t["key"] == w))
        .cloned()
        .collect();
    if let Some(w) = wanted
        && !taints
            .iter()
            .any(|t| t["key"] == w && t["effect"] == "NoSchedule")
    {
        taints.push(json!({ "key": w, "effect": "NoSchedule" }));
    }
    if taints == current {
        return false;
    }
    let value = (!taints.is_empty()).then_some(Value::Array(taints));
    meta::set_path(node, &["spec", "taints"], value);
    true
}

/// Marks Nodes whose heartbeat is older than `grace` as `Unknown`, keeps the readiness
/// taints in step with the Ready condition, and marks the Pods on `Unknown` Nodes not ready.
pub fn reconcile(
    nodes: &[Value],
    leases: &[Value],
    pods: &[Value],
    now: Timestamp,
    grace: Duration,
) -> Outcome {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    let now_s = meta::format_time(now);
    let mut actions = Vec::new();
    let mut next_check: Option<Timestamp> = None;
    let mut unknown: Vec<&str> = Vec::new();
    for node in nodes {
        let mut updated = node.clone();
        let mut changed = false;
        if let Some(last) = last_heard(node, leases) {
            let deadline = last.checked_add(grace).unwrap_or(Timestamp::MAX);
            if now <= deadline {
                next_check = Some(next_check.map_or(deadline, |n| n.min(deadline)));
            } else {
                let created = meta::str_at(node, &["metadata", "creationTimestamp"]);
                changed |= expire_conditions(&mut updated, created, &now_s);
            }
        }
        changed |= reconcile_taints(&mut updated);
        if ready_status(&updated) == Some("Unknown") {
            unknown.push(meta::name(node).unwrap_or(""));
        }
        if changed {
            actions.push(Action::Update {
                target: Target::new(resources::NODES, None, meta::name(node).unwrap_or("")),
                object: updated,
                precondition_rv: meta::resource_version_u64(node),
            });
        }
    }
    for pod in pods {
        let on_unknown =
            meta::str_at(pod, &["spec", "nodeName"]).is_some_and(|n| unknown.contains(&n));
        let finished = matches!(
            meta::str_at(pod, &["status", "phase"]),
            Some("Succeeded" | "Failed")
        );
        if on_unknown && !finished {
            actions.extend(mark_pod_not_ready(pod, now));
        }
    }
    Outcome {
        actions,
        next_check,
    }
}

/// `MarkPodsNotReady` for one Pod: its Ready condition to False (if it is not already), and
/// the `NodeNotReady` Event.
fn mark_pod_not_ready(pod: &Value, now: Timestamp) -> Vec<Action> {
    let Some(conditions) = meta::at(pod, &["status", "conditions"]).and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let Some(i) = conditions
        .iter()
        .position(|c| c["type"] == "Ready" && c["status"] != "False")
    else {
        return Vec::new();
    };
    let mut updated = pod.clone();
    let mut cond = conditions[i].clone();
    cond["status"] = json!("False");
    cond["lastTransitionTime"] = json!(meta::format_time(now));
    if let Some(list) = updated["status"]["conditions"].as_array_mut() {
        list[i] = cond;
    }
    vec![
        Action::Update {
            target: Target::new(
                resources::PODS,
                Some(meta::namespace(pod).unwrap_or("")),
                meta::name(pod).unwrap_or(""),
            ),
            object: updated,
            precondition_rv: meta::resource_version_u64(pod),
        },
        events::create(events::pod_event(
            pod,
            COMPONENT,
            "Warning",
            "NodeNotReady",
            "Node is not ready",
            now,
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn node(name: &str, heartbeat: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "resourceVersion": "4", "creationTimestamp": "2026-11-28T09:00:00Z"},
               "status": {"conditions": [
                   {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": heartbeat},
                   {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": heartbeat,
                    "lastTransitionTime": "2026-11-28T09:00:00Z"},
                   {"type": "NetworkUnavailable", "status": "False"}]}})
    }

    fn lease(name: &str, renew: &str) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
               "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew}})
    }

    const GRACE: Duration = Duration::from_secs(40);

    #[test]
    fn renewed_lease_keeps_node_ready_and_reports_next_deadline() {
        let nodes = [node("node-1", "2026-11-28T09:00:00Z")];
        let leases = [lease("node-1", "2026-11-28T10:00:00.250000Z")];
        let out = reconcile(&nodes, &leases, &[], t("2026-11-28T10:00:30Z"), GRACE);
        assert!(out.actions.is_empty());
        assert_eq!(out.next_check, Some(t("2026-11-28T10:00:40.25Z")));
    }

    #[test]
    fn expired_lease_turns_monitored_conditions_unknown_once() {
        let nodes = [
            node("node-1", "2026-11-28T09:00:00Z"),
            node("node-2", "2026-11-28T09:00:00Z"),
        ];
        let leases = [
            lease("node-1", "2026-11-28T10:00:00Z"),
            lease("node-2", "2026-11-28T10:00:50Z"),
        ];
        let now = t("2026-11-28T10:00:41Z");
        let out = reconcile(&nodes, &leases, &[], now, GRACE);
        assert_eq!(out.actions.len(), 1);
        let Action::Update {
            target,
            object,
            precondition_rv,
        } = &out.actions[0]
        else {
            panic!()
        };
        assert_eq!(target, &Target::new("nodes", None, "node-1"));
        assert_eq!(*precondition_rv, Some(4));
        let conds = object["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds[0]["status"], "Unknown");
        assert_eq!(conds[1]["status"], "Unknown");
        assert_eq!(conds[1]["reason"], "NodeStatusUnknown");
        assert_eq!(conds[1]["message"], "Kubelet stopped posting node status.");
        assert_eq!(conds[1]["lastTransitionTime"], "2026-11-28T10:00:41Z");
        assert_eq!(conds[1]["lastHeartbeatTime"], "2026-11-28T09:00:00Z");
        assert_eq!(
            conds[2]["status"], "False",
            "NetworkUnavailable is not monitored"
        );
        assert_eq!(out.next_check, Some(t("2026-11-28T10:01:30Z")));

        let again = reconcile(
            std::slice::from_ref(object),
            &leases,
            &[],
            t("2026-11-28T10:05:00Z"),
            GRACE,
        );
        assert!(again.actions.is_empty());
        assert_eq!(again.next_check, None);
    }

    #[test]
    fn status_heartbeat_counts_when_newer_than_lease() {
        let nodes = [node("node-1", "2026-11-28T10:00:30Z")];
        let leases = [lease("node-1", "2026-11-28T09:00:00Z")];
        assert!(
            reconcile(&nodes, &leases, &[], t("2026-11-28T10:01:00Z"), GRACE)
                .actions
                .is_empty()
        );
    }

    #[test]
    fn never_reported_node_gets_ready_unknown_after_grace_from_creation() {
        let n = json!({"apiVersion": "v1", "kind": "Node",
                       "metadata": {"name": "ghost", "creationTimestamp": "2026-11-28T10:00:00Z"}});
        assert!(
            reconcile(
                std::slice::from_ref(&n),
                &[],
                &[],
                t("2026-11-28T10:00:20Z"),
                GRACE
            )
            .actions
            .is_empty()
        );
        let out = reconcile(&[n], &[], &[], t("2026-11-28T10:01:00Z"), GRACE);
        let cond = &out.actions[0].object().unwrap()["status"]["conditions"][0];
        assert_eq!(cond["type"], "Ready");
        assert_eq!(cond["status"], "Unknown");
        assert_eq!(cond["reason"], "NodeStatusNeverUpdated");
    }

    #[test]
    fn pods_on_unknown_nodes_are_marked_not_ready_once() {
        let pod = |name: &str, node: &str, ready: &str| {
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"), "resourceVersion": "8"},
                   "spec": {"nodeName": node},
                   "status": {"phase": "Running", "conditions": [
                       {"type": "PodScheduled", "status": "True"},
                       {"type": "Ready", "status": ready, "lastTransitionTime": "2026-11-28T09:00:00Z"}]}})
        };
        let nodes = [
            node("node-1", "2026-11-28T09:00:00Z"),
            node("node-2", "2026-11-28T10:00:30Z"),
        ];
        let leases = [lease("node-1", "2026-11-28T10:00:00Z")];
        let pods = [
            pod("a", "node-1", "True"),
            pod("b", "node-2", "True"),
            pod("c", "node-1", "False"),
        ];
        let now = t("2026-11-28T10:00:41Z");
        let out = reconcile(&nodes, &leases, &pods, now, GRACE);
        let what: Vec<(&str, &str)> = out
            .actions
            .iter()
            .map(|a| (a.verb(), a.target().name.as_str()))
            .collect();
        assert_eq!(what.len(), 3, "{what:?}");
        assert_eq!(what[0], ("update", "node-1"));
        assert_eq!(what[1], ("update", "a"));
        let pod_a = out.actions[1].object().unwrap();
        assert_eq!(pod_a["status"]["conditions"][1]["status"], "False");
        assert_eq!(
            pod_a["status"]["conditions"][1]["lastTransitionTime"],
            "2026-11-28T10:00:41Z"
        );
        let ev = out.actions[2].object().unwrap();
        assert_eq!(ev["reason"], "NodeNotReady");
        assert_eq!(ev["involvedObject"]["uid"], "u-a");
        assert_eq!(ev["source"]["component"], "node-controller");

        // Next pass: the node is already Unknown, the pod already not ready → nothing.
        let nodes2 = [out.actions[0].object().unwrap().clone(), nodes[1].clone()];
        let pods2 = [pod_a.clone(), pods[1].clone(), pods[2].clone()];
        assert!(
            reconcile(&nodes2, &leases, &pods2, now, GRACE)
                .actions
                .is_empty()
        );
    }

    #[test]
    fn readiness_taints_follow_the_ready_condition() {
        let nodes = [node("node-1", "2026-11-28T09:00:00Z")];
        let leases = [lease("node-1", "2026-11-28T10:00:00Z")];
        let out = reconcile(&nodes, &leases, &[], t("2026-11-28T10:00:41Z"), GRACE);
        let lost = out.actions[0].object().unwrap().clone();
        assert_eq!(
            lost["spec"]["taints"],
            json!([{"key": TAINT_UNREACHABLE, "effect": "NoSchedule"}])
        );

        // The kubelet is back and says Ready=False: the taint becomes not-ready; other taints stay.
        let mut back = lost.clone();
        back["status"]["conditions"][1]["status"] = json!("False");
        back["spec"]["taints"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"}));
        let fresh = [lease("node-1", "2026-11-28T10:01:00Z")];
        let out = reconcile(
            std::slice::from_ref(&back),
            &fresh,
            &[],
            t("2026-11-28T10:01:01Z"),
            GRACE,
        );
        let taints = &out.actions[0].object().unwrap()["spec"]["taints"];
        assert_eq!(
            taints,
            &json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"},
                    {"key": TAINT_NOT_READY, "effect": "NoSchedule"}])
        );

        // Ready=True again: only the foreign taint is left; a converged node needs nothing.
        let mut ready = out.actions[0].object().unwrap().clone();
        ready["status"]["conditions"][1]["status"] = json!("True");
        let out = reconcile(
            std::slice::from_ref(&ready),
            &fresh,
            &[],
            t("2026-11-28T10:01:02Z"),
            GRACE,
        );
        let healed = out.actions[0].object().unwrap().clone();
        assert_eq!(
            healed["spec"]["taints"],
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
        );
        assert!(
            reconcile(&[healed], &fresh, &[], t("2026-11-28T10:01:03Z"), GRACE)
                .actions
                .is_empty()
        );

        // Without foreign taints the field goes away entirely.
        let mut plain = lost;
        plain["status"]["conditions"][1]["status"] = json!("True");
        let out = reconcile(&[plain], &fresh, &[], t("2026-11-28T10:01:02Z"), GRACE);
        assert!(
            out.actions[0].object().unwrap()["spec"]
                .get("taints")
                .is_none()
        );
    }
}
