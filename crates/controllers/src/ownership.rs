//! Owner references, and the rules the workload controllers share about Pods.
//!
//! Kubernetes ties an object to the object that made it with `metadata.ownerReferences`: a Pod
//! created by a ReplicaSet names the ReplicaSet (`apiVersion`, `kind`, `name`, `uid`) with
//! `controller: true` — its *controller reference*. At most one owner is the controller. Two
//! machines read these references:
//! - each workload controller, to know which objects it manages. It counts only the objects
//!   whose controller reference carries its own uid, *adopts* orphans that its selector matches
//!   (adds itself as controller) and *releases* objects it owns that its selector no longer
//!   matches (drops its reference) — kube's `ControllerRefManager`;
//! - the garbage collector, which deletes an object once every owner it names is gone
//!   ([`crate::garbagecollector`]).
//!
//! The uid is what identifies an owner: a Deployment deleted and created again under the same
//! name is a new owner, and the old one's ReplicaSets are orphans to be collected, not adopted.

use proxylab_apimachinery::{meta, selector::LabelSelector};
use serde_json::{Value, json};

use crate::action::{Action, Target, resources};

/// The alphabet of kube's `utilrand.String` and `SafeEncodeString`: no vowels (no words in
/// generated names), no digits that look like letters (0, 1, 3).
pub const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Five random characters of [`ALPHANUMS`]: the suffix of `generateName` (`web-6d9f7c8b5-x2k4q`).
pub fn random_suffix() -> String {
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| char::from(ALPHANUMS[usize::from(*b) % ALPHANUMS.len()]))
        .collect()
}

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    meta::owner_references(obj)
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true))
}

/// The uid of the object's controller, if it has one.
pub fn controller_uid(obj: &Value) -> Option<&str> {
    controller_ref(obj).and_then(|r| r["uid"].as_str())
}

/// A controller reference to `owner` (what `metav1.NewControllerRef` builds).
pub fn controller_reference(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": meta::name(owner).unwrap_or(""),
        "uid": meta::uid(owner).unwrap_or(""),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A Pod that counts towards replicas: not finished and not being deleted (kube's
/// `FilterActivePods`).
pub fn is_pod_active(pod: &Value) -> bool {
    !matches!(
        meta::str_at(pod, &["status", "phase"]),
        Some("Succeeded" | "Failed")
    ) && !meta::is_terminating(pod)
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    meta::array_at(pod, &["status", "conditions"])
        .iter()
        .find(|c| c["type"] == "Ready")
}

/// The Pod's `Ready` condition is `True` (the node agent sets it when the containers run).
pub fn is_pod_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some_and(|c| c["status"] == "True")
}

/// Availability as kube's `IsPodAvailable`: ready for at least `min_ready_seconds`. Returns
/// whether it is available at `now` and, if it is ready but not yet available, when it will be.
pub fn pod_availability(
    pod: &Value,
    min_ready_seconds: i64,
    now: jiff::Timestamp,
) -> (bool, Option<jiff::Timestamp>) {
    if !is_pod_ready(pod) {
        return (false, None);
    }
    if min_ready_seconds <= 0 {
        return (true, None);
    }
    let since = ready_condition(pod)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(meta::parse_time);
    let Some(at) = since.and_then(|t| {
        t.checked_add(jiff::SignedDuration::from_secs(min_ready_seconds))
            .ok()
    }) else {
        // Ready with no transition time: nothing to wait for.
        return (true, None);
    };
    if at <= now {
        (true, None)
    } else {
        (false, Some(at))
    }
}

/// Deletes a Pod as a controller's `DELETE` through the apiserver would: a Pod bound to a Node
/// is only marked (`deletionTimestamp` = now + grace, `deletionGracePeriodSeconds`), so its node
/// agent can take it out of its Services' endpoints and stop it gracefully before removing it
/// for good; an unbound Pod has nothing running and is removed at once.
pub fn delete_pod(pod: &Value, now: jiff::Timestamp) -> Action {
    let ns = meta::namespace(pod).unwrap_or("");
    let name = meta::name(pod).unwrap_or("");
    let target = Target::new(resources::PODS, Some(ns), name);
    let rv = meta::resource_version_u64(pod);
    let bound = meta::str_at(pod, &["spec", "nodeName"]).is_some_and(|n| !n.is_empty());
    let grace = meta::at(pod, &["spec", "terminationGracePeriodSeconds"])
        .and_then(Value::as_i64)
        .unwrap_or(30)
        .max(0);
    if !bound || grace == 0 {
        return Action::Delete {
            target,
            precondition_rv: rv,
            unless_present: None,
        };
    }
    let when = now
        .checked_add(jiff::SignedDuration::from_secs(grace))
        .unwrap_or(now);
    let mut marked = pod.clone();
    meta::set_deletion_timestamp(&mut marked, &meta::format_time(when));
    marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    Action::Update {
        target,
        object: marked,
        precondition_rv: rv,
    }
}

/// An owner's view of the candidates in its namespace after adoption and release.
pub struct Claimed<'a> {
    /// Objects whose controller is the owner (after the adoptions below).
    pub owned: Vec<&'a Value>,
    /// Adoption and release updates to apply.
    pub actions: Vec<Action>,
}

/// kube's `ClaimPods`/`ClaimReplicaSets`: of `candidates` (objects of `resource` in the owner's
/// namespace), the ones the owner controls, adopting matching orphans and releasing owned
/// objects its selector no longer matches. An owner being deleted adopts nothing.
pub fn claim<'a>(
    owner: &Value,
    owner_api_version: &str,
    owner_kind: &str,
    selector: &LabelSelector,
    resource: &'static str,
    candidates: &'a [Value],
) -> Claimed<'a> {
    let owner_uid = meta::uid(owner).unwrap_or("");
    let ns = meta::namespace(owner).unwrap_or("");
    let mut out = Claimed {
        owned: Vec::new(),
        actions: Vec::new(),
    };
    for obj in candidates
        .iter()
        .filter(|o| meta::namespace(o).unwrap_or("") == ns)
    {
        let target = || Target::new(resource, Some(ns), meta::name(obj).unwrap_or(""));
        let matches = selector.matches_object(obj);
        match controller_uid(obj) {
            Some(uid) if uid == owner_uid => {
                if matches || meta::is_terminating(obj) {
                    out.owned.push(obj);
                } else {
                    // Release: keep the other owners, drop ours.
                    let mut released = obj.clone();
                    let refs: Vec<Value> = meta::owner_references(obj)
                        .iter()
                        .filter(|r| r["uid"] != owner_uid)
                        .cloned()
                        .collect();
                    meta::set_path(
                        &mut released,
                        &["metadata", "ownerReferences"],
                        (!refs.is_empty()).then(|| Value::Array(refs)),
                    );
                    out.actions.push(Action::Update {
                        target: target(),
                        object: released,
                        precondition_rv: meta::resource_version_u64(obj),
                    });
                }
            }
            Some(_) => {}
            None => {
                if !matches || meta::is_terminating(obj) || meta::is_terminating(owner) {
                    continue;
                }
                let mut adopted = obj.clone();
                let mut refs = meta::owner_references(obj).to_vec();
                refs.push(controller_reference(owner, owner_api_version, owner_kind));
                meta::set_path(
                    &mut adopted,
                    &["metadata", "ownerReferences"],
                    Some(Value::Array(refs)),
                );
                out.actions.push(Action::Update {
                    target: target(),
                    object: adopted,
                    precondition_rv: meta::resource_version_u64(obj),
                });
                out.owned.push(obj);
            }
        }
    }
    out
}

/// `spec.selector` of a workload; `None` when absent or invalid (validation refuses both, so
/// only objects written below the REST layer can have one; a controller leaves them alone, as
/// kube's does with a selector it cannot parse).
pub fn workload_selector(obj: &Value) -> Option<LabelSelector> {
    let sel = meta::at(obj, &["spec", "selector"]).filter(|s| s.is_object())?;
    let parsed = LabelSelector::from_label_selector(sel).ok()?;
    // An empty selector would select every Pod of the namespace.
    (!parsed.is_empty()).then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-28T10:00:00Z".parse().unwrap()
    }

    fn pod(name: &str, labels: Value, owner: Option<&str>) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "5", "labels": labels},
            "spec": {"nodeName": "node-1"}});
        if let Some(o) = owner {
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": o, "uid": format!("uid-{o}"), "controller": true}]);
        }
        p
    }

    #[test]
    fn suffixes_use_the_safe_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| ALPHANUMS.contains(&b)));
    }

    #[test]
    fn claim_adopts_orphans_and_releases_strays() {
        let rs = json!({"metadata": {"name": "rs", "namespace": "default", "uid": "uid-rs"}});
        let sel = LabelSelector::from_match_labels(&json!({"app": "web"}));
        let pods = [
            pod("mine", json!({"app": "web"}), Some("rs")),
            pod("orphan", json!({"app": "web"}), None),
            pod("stray", json!({"app": "other"}), Some("rs")),
            pod("theirs", json!({"app": "web"}), Some("other")),
            pod("unrelated", json!({"app": "db"}), None),
        ];
        let c = claim(&rs, "apps/v1", "ReplicaSet", &sel, "pods", &pods);
        let owned: Vec<&str> = c.owned.iter().map(|p| meta::name(p).unwrap()).collect();
        assert_eq!(owned, ["mine", "orphan"]);
        assert_eq!(c.actions.len(), 2);
        let adopted = c.actions[0].object().unwrap();
        assert_eq!(adopted["metadata"]["ownerReferences"][0]["uid"], "uid-rs");
        assert_eq!(
            adopted["metadata"]["ownerReferences"][0]["controller"],
            true
        );
        let released = c.actions[1].object().unwrap();
        assert_eq!(c.actions[1].target().name, "stray");
        assert!(released["metadata"].get("ownerReferences").is_none());
    }

    #[test]
    fn bound_pods_are_deleted_gracefully() {
        let mut p = pod("p", json!({}), None);
        match delete_pod(&p, now()) {
            Action::Update { object, .. } => {
                assert_eq!(
                    object["metadata"]["deletionTimestamp"],
                    "2026-11-28T10:00:30Z"
                );
                assert_eq!(object["metadata"]["deletionGracePeriodSeconds"], 30);
            }
            other => panic!("{other:?}"),
        }
        p["spec"] = json!({});
        assert_eq!(delete_pod(&p, now()).verb(), "delete");
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let mut p = pod("p", json!({}), None);
        assert_eq!(pod_availability(&p, 0, now()), (false, None));
        p["status"] = json!({"conditions": [{"type": "Ready", "status": "True",
                                             "lastTransitionTime": "2026-11-28T09:59:55Z"}]});
        assert_eq!(pod_availability(&p, 0, now()), (true, None));
        assert_eq!(
            pod_availability(&p, 10, now()),
            (false, Some("2026-11-28T10:00:05Z".parse().unwrap()))
        );
        assert_eq!(pod_availability(&p, 5, now()), (true, None));
    }
}
