//! The ReplicaSet controller: keeps `spec.replicas` Pods of a template running.
//!
//! kube-controller-manager's `replicaset` controller, per ReplicaSet:
//! 1. **claims** the Pods of its namespace: the ones whose controller reference carries its uid,
//!    plus orphans its selector matches (adopted: it adds itself as controller), minus owned Pods
//!    its selector no longer matches (released) — [`crate::ownership::claim`];
//! 2. counts the *active* ones (not finished, not being deleted) against `spec.replicas`;
//! 3. too few → creates Pods from `spec.template`, named `<replicaset>-<5 random characters>`
//!    (the `generateName` the real controller sends), owned by the ReplicaSet with
//!    `controller: true`; too many → deletes the ones it will miss least: unscheduled before
//!    scheduled, Pending before Running, not ready before ready, newest first;
//! 4. writes `status`: `replicas` (active Pods), `fullyLabeledReplicas`, `readyReplicas` (Pods
//!    whose `Ready` condition is True), `availableReplicas` (ready for `spec.minReadySeconds`)
//!    and `observedGeneration`. Status counts what it saw at the start of the pass, as the real
//!    controller does; the writes it makes show in the next pass.
//!
//! Deleting a Pod bound to a Node is graceful, as through the apiserver: the Pod is marked with
//! `deletionTimestamp`, leaves its Services' endpoints, and its node agent stops and removes it.
//! A marked Pod no longer counts, so a replacement starts at once — during a graceful stop a
//! ReplicaSet briefly has more Pods than replicas, as in Kubernetes.
//!
//! Left out: the 500-per-pass burst is kept but not the slow-start batching, the `expectations`
//! cache (the driver's write-through cache does its job: the next pass sees the Pods this pass
//! created), the `ReplicaFailure` condition, and `terminatingReplicas`.

use proxylab_apimachinery::meta;
use serde_json::{Map, Value, json};

use crate::action::{Action, Target, resources};
use crate::events;
use crate::ownership::{self, claim, workload_selector};

pub const COMPONENT: &str = "replicaset-controller";

/// The most Pods created or deleted for one ReplicaSet in one pass (kube's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// What a pass decided, and when to look again (a Pod becoming available after
/// `minReadySeconds` is a change no watch event announces).
#[derive(Debug, Default)]
pub struct Outcome {
    pub actions: Vec<Action>,
    pub next_check: Option<jiff::Timestamp>,
}

/// Reconciles every ReplicaSet with the Pods. `suffix` names new Pods
/// ([`ownership::random_suffix`] in the lab; a counter in tests).
pub fn reconcile(
    replicasets: &[Value],
    pods: &[Value],
    now: jiff::Timestamp,
    suffix: &mut dyn FnMut() -> String,
) -> Outcome {
    let mut out = Outcome::default();
    for rs in replicasets {
        reconcile_one(rs, pods, now, suffix, &mut out);
    }
    out
}

fn earliest(a: Option<jiff::Timestamp>, b: Option<jiff::Timestamp>) -> Option<jiff::Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Deletion preference, lowest first (kube's `ActivePods` ordering, reduced).
fn deletion_rank(pod: &Value) -> (u8, u8, u8, std::cmp::Reverse<String>) {
    let unscheduled = meta::str_at(pod, &["spec", "nodeName"]).is_none_or(str::is_empty);
    let phase = match meta::str_at(pod, &["status", "phase"]) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    };
    (
        u8::from(!unscheduled),
        phase,
        u8::from(ownership::is_pod_ready(pod)),
        std::cmp::Reverse(
            meta::creation_timestamp(pod).unwrap_or("").to_string() + meta::name(pod).unwrap_or(""),
        ),
    )
}

fn reconcile_one(
    rs: &Value,
    pods: &[Value],
    now: jiff::Timestamp,
    suffix: &mut dyn FnMut() -> String,
    out: &mut Outcome,
) {
    let Some(selector) = workload_selector(rs) else {
        return;
    };
    let ns = meta::namespace(rs).unwrap_or("");
    let name = meta::name(rs).unwrap_or("");
    let claimed = claim(
        rs,
        "apps/v1",
        "ReplicaSet",
        &selector,
        resources::PODS,
        pods,
    );
    out.actions.extend(claimed.actions);
    let active: Vec<&Value> = claimed
        .owned
        .iter()
        .copied()
        .filter(|p| ownership::is_pod_active(p))
        .collect();
    let replicas = meta::at(rs, &["spec", "replicas"])
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0) as usize;

    if !meta::is_terminating(rs) {
        if active.len() < replicas {
            let want = (replicas - active.len()).min(BURST_REPLICAS);
            for _ in 0..want {
                let pod = pod_from_template(rs, &format!("{name}-{}", suffix()), now);
                let msg = format!("Created pod: {}", meta::name(&pod).unwrap_or(""));
                out.actions.push(Action::Create {
                    target: Target::new(resources::PODS, Some(ns), meta::name(&pod).unwrap_or("")),
                    object: pod,
                });
                out.actions.push(events::create(events::object_event(
                    rs,
                    "apps/v1",
                    "ReplicaSet",
                    COMPONENT,
                    "Normal",
                    "SuccessfulCreate",
                    &msg,
                    now,
                )));
            }
        } else if active.len() > replicas {
            let mut victims = active.clone();
            victims.sort_by_key(|p| deletion_rank(p));
            for pod in victims
                .into_iter()
                .take((active.len() - replicas).min(BURST_REPLICAS))
            {
                out.actions.push(ownership::delete_pod(pod, now));
                out.actions.push(events::create(events::object_event(
                    rs,
                    "apps/v1",
                    "ReplicaSet",
                    COMPONENT,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", meta::name(pod).unwrap_or("")),
                    now,
                )));
            }
        }
    }

    let min_ready = meta::at(rs, &["spec", "minReadySeconds"])
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let template_labels = meta::at(rs, &["spec", "template", "metadata", "labels"])
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut ready = 0;
    let mut available = 0;
    let mut fully_labeled = 0;
    for pod in &active {
        if ownership::is_pod_ready(pod) {
            ready += 1;
        }
        let (is_available, when) = ownership::pod_availability(pod, min_ready, now);
        if is_available {
            available += 1;
        }
        out.next_check = earliest(out.next_check, when);
        if proxylab_apimachinery::selector::map_matches(&template_labels, meta::labels(pod)) {
            fully_labeled += 1;
        }
    }
    let wanted = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": meta::generation(rs).unwrap_or(1),
    });
    if let Some(updated) = with_status(rs, &wanted) {
        out.actions.push(Action::Update {
            target: Target::new(resources::REPLICA_SETS, Some(ns), name),
            object: updated,
            precondition_rv: meta::resource_version_u64(rs),
        });
    }
}

/// The object with `status` fields replaced by `wanted`, or `None` when they already match
/// (the idempotence rule: a converged pass writes nothing). Zero counts are written as absent,
/// as Go's `omitempty` leaves them, so `kubectl get -o yaml` looks as it does on a cluster.
pub(crate) fn with_status(obj: &Value, wanted: &Value) -> Option<Value> {
    let current = obj.get("status").and_then(Value::as_object);
    let mut status: Map<String, Value> = current.cloned().unwrap_or_default();
    let mut changed = false;
    for (k, v) in wanted.as_object().into_iter().flatten() {
        let omit = v == &json!(0) || v.is_null();
        let have = status.get(k);
        if omit {
            if have.is_some() {
                status.shift_remove(k);
                changed = true;
            }
        } else if have != Some(v) {
            status.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    if !changed && current.is_some() {
        return None;
    }
    let mut updated = obj.clone();
    updated["status"] = Value::Object(status);
    Some(updated)
}

/// A Pod made from the ReplicaSet's template (kube's `GetPodFromTemplate`).
fn pod_from_template(rs: &Value, name: &str, now: jiff::Timestamp) -> Value {
    let ns = meta::namespace(rs).unwrap_or("");
    let template = meta::at(rs, &["spec", "template"])
        .cloned()
        .unwrap_or(Value::Null);
    let mut metadata =
        meta::new_object_meta(Some(ns), name, &uuid::Uuid::new_v4().to_string(), now);
    metadata["generateName"] = json!(format!("{}-", meta::name(rs).unwrap_or("")));
    for field in ["labels", "annotations"] {
        if let Some(v) = template["metadata"].get(field).filter(|v| v.is_object()) {
            metadata[field] = v.clone();
        }
    }
    metadata["ownerReferences"] =
        json!([ownership::controller_reference(rs, "apps/v1", "ReplicaSet")]);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-28T10:00:00Z".parse().unwrap()
    }

    fn rs(replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "namespace": "default", "uid": "uid-rs",
                         "resourceVersion": "3", "generation": 2},
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "echo-http"}]}}},
            "status": {}})
    }

    fn owned_pod(name: &str, ready: bool, node: bool, created: &str) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "4", "creationTimestamp": created,
                         "labels": {"app": "web"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": "web-abc", "uid": "uid-rs", "controller": true}]},
            "spec": {"terminationGracePeriodSeconds": 30},
            "status": {"phase": if node { "Running" } else { "Pending" }}});
        if node {
            p["spec"]["nodeName"] = json!("node-1");
        }
        if ready {
            p["status"]["conditions"] = json!([{"type": "Ready", "status": "True",
                "lastTransitionTime": "2026-11-28T09:00:00Z"}]);
        }
        p
    }

    fn counter() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("x{n}")
        }
    }

    #[test]
    fn creates_pods_from_the_template_with_a_controller_reference() {
        let out = reconcile(&[rs(2)], &[], now(), &mut counter());
        let creates: Vec<&Value> = out
            .actions
            .iter()
            .filter(|a| a.verb() == "create" && a.target().resource == "pods")
            .filter_map(Action::object)
            .collect();
        assert_eq!(creates.len(), 2);
        let p = creates[0];
        assert_eq!(p["metadata"]["name"], "web-abc-x1");
        assert_eq!(p["metadata"]["generateName"], "web-abc-");
        assert_eq!(p["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            p["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc",
                    "uid": "uid-rs", "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(p["spec"]["containers"][0]["image"], "echo-http");
        assert_eq!(p["status"]["phase"], "Pending");
        let events: Vec<&str> = out
            .actions
            .iter()
            .filter(|a| a.target().resource == "events")
            .map(|a| a.object().unwrap()["message"].as_str().unwrap())
            .collect();
        assert_eq!(
            events,
            ["Created pod: web-abc-x1", "Created pod: web-abc-x2"]
        );
        // Nothing seen yet: status says so (zeroes omitted) and records the generation.
        let status = out
            .actions
            .iter()
            .find(|a| a.target().resource == "replicasets.apps")
            .unwrap();
        assert_eq!(
            status.object().unwrap()["status"],
            json!({"observedGeneration": 2})
        );
    }

    #[test]
    fn converged_set_writes_nothing() {
        let pods = [
            owned_pod("a", true, true, "2026-11-28T09:00:00Z"),
            owned_pod("b", true, true, "2026-11-28T09:00:01Z"),
        ];
        let out = reconcile(&[rs(2)], &pods, now(), &mut counter());
        let status = out.actions[0].object().unwrap()["status"].clone();
        assert_eq!(
            status,
            json!({"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2,
                   "availableReplicas": 2, "observedGeneration": 2})
        );
        let mut converged = rs(2);
        converged["status"] = status;
        assert!(
            reconcile(&[converged], &pods, now(), &mut counter())
                .actions
                .is_empty()
        );
    }

    #[test]
    fn scales_down_the_pods_it_misses_least() {
        let pods = [
            owned_pod("old-ready", true, true, "2026-11-28T09:00:00Z"),
            owned_pod("new-ready", true, true, "2026-11-28T09:10:00Z"),
            owned_pod("not-ready", false, true, "2026-11-28T09:00:00Z"),
            owned_pod("unscheduled", false, false, "2026-11-28T09:00:00Z"),
        ];
        let out = reconcile(&[rs(1)], &pods, now(), &mut counter());
        let deleted: Vec<(&str, &str)> = out
            .actions
            .iter()
            .filter(|a| a.target().resource == "pods")
            .map(|a| (a.target().name.as_str(), a.verb()))
            .collect();
        // The unscheduled one has nothing running: removed at once; the others are marked.
        assert_eq!(
            deleted,
            [
                ("unscheduled", "delete"),
                ("not-ready", "update"),
                ("new-ready", "update")
            ]
        );
        let marked = out.actions[2].object().unwrap();
        assert_eq!(
            marked["metadata"]["deletionTimestamp"],
            "2026-11-28T10:00:30Z"
        );
    }

    #[test]
    fn terminating_pods_do_not_count_and_a_deleted_set_creates_nothing() {
        let mut going = owned_pod("going", true, true, "2026-11-28T09:00:00Z");
        going["metadata"]["deletionTimestamp"] = json!("2026-11-28T10:00:30Z");
        let out = reconcile(
            &[rs(1)],
            std::slice::from_ref(&going),
            now(),
            &mut counter(),
        );
        assert_eq!(
            out.actions
                .iter()
                .filter(|a| a.verb() == "create" && a.target().resource == "pods")
                .count(),
            1
        );
        let mut deleting = rs(1);
        deleting["metadata"]["deletionTimestamp"] = json!("2026-11-28T10:00:00Z");
        let out = reconcile(&[deleting], &[], now(), &mut counter());
        assert!(out.actions.iter().all(|a| a.target().resource != "pods"));
    }

    #[test]
    fn min_ready_seconds_delays_availability_and_schedules_a_recheck() {
        let mut set = rs(1);
        set["spec"]["minReadySeconds"] = json!(7200);
        let pods = [owned_pod("a", true, true, "2026-11-28T09:00:00Z")];
        let out = reconcile(&[set], &pods, now(), &mut counter());
        let status = &out.actions[0].object().unwrap()["status"];
        assert_eq!(status["readyReplicas"], 1);
        assert!(status.get("availableReplicas").is_none());
        assert_eq!(
            out.next_check,
            Some("2026-11-28T11:00:00Z".parse().unwrap())
        );
    }
}
