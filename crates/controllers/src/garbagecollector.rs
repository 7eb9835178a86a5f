//! The garbage collector: deletes objects whose owners are gone.
//!
//! Kubernetes never deletes a Deployment's ReplicaSets or a ReplicaSet's Pods "as part of"
//! deleting the owner. The apiserver deletes the one object it was asked to; the garbage
//! collector in kube-controller-manager watches `metadata.ownerReferences` across the cluster
//! and acts on what the `DELETE` asked for with `propagationPolicy`:
//!
//! | policy | the apiserver | the garbage collector |
//! |---|---|---|
//! | `Background` (kubectl's default) | removes the owner at once | deletes each dependent whose every owner is gone |
//! | `Foreground` | keeps the owner, marked, with finalizer `foregroundDeletion` | deletes the dependents (in foreground too, so a Deployment waits for its ReplicaSets, which wait for their Pods), then removes the finalizer — the owner goes last |
//! | `Orphan` | keeps the owner, marked, with finalizer `orphan` | removes the owner's reference from each dependent, then the finalizer: the dependents live on, ownerless |
//!
//! An owner is identified by its uid, so a Deployment deleted and created again under the same
//! name does not keep its predecessor's ReplicaSets alive. A dependent with one owner gone and
//! another present loses only the dangling reference. Pods are deleted gracefully (marked; their
//! node agent stops them), so collection drains endpoints like any other Pod deletion.
//!
//! This collector covers the ownership graph of the lab's workloads: Deployments, ReplicaSets,
//! Jobs and Pods (the resources it watches), with owners of those kinds. References to other kinds
//! are left alone (treated as present), where the real collector discovers every resource of
//! the cluster. Before deleting for an absent owner it reads the owner from the store, as the
//! real collector does, since informer caches of different resources lag each other.

use std::collections::HashMap;

use proxylab_apimachinery::meta;
use serde_json::{Value, json};

use crate::action::{Action, Target, resources};
use crate::ownership;

pub const FINALIZER_ORPHAN: &str = "orphan";
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// The store resource of an owner reference's kind, if the collector watches it.
fn owner_resource(reference: &Value) -> Option<&'static str> {
    let group = reference["apiVersion"]
        .as_str()
        .unwrap_or("")
        .split('/')
        .rev()
        .nth(1)
        .unwrap_or("");
    match (group, reference["kind"].as_str().unwrap_or("")) {
        ("apps", "Deployment") => Some(resources::DEPLOYMENTS),
        ("apps", "ReplicaSet") => Some(resources::REPLICA_SETS),
        ("batch", "Job") => Some(resources::JOBS),
        ("", "Pod") => Some(resources::PODS),
        _ => None,
    }
}

/// The objects the collector sees, by store resource.
pub struct Snapshot<'a> {
    pub objects: &'a [(&'static str, Vec<Value>)],
}

struct OwnerState<'a> {
    uid: &'a str,
    deleting_foreground: bool,
    deleting_orphan: bool,
}

type Key<'a> = (&'static str, &'a str, &'a str);

fn has_finalizer(obj: &Value, f: &str) -> bool {
    meta::is_terminating(obj) && meta::finalizers(obj).contains(&f)
}

/// Deletes a dependent: Pods gracefully; other objects in the foreground when their owner is
/// deleted in the foreground (marked with the finalizer, so their own dependents go first), or
/// outright. An object that carries finalizers is only marked, as the apiserver would.
fn delete_dependent(
    resource: &'static str,
    obj: &Value,
    foreground: bool,
    now: jiff::Timestamp,
) -> Option<Action> {
    if meta::is_terminating(obj) {
        return None;
    }
    if resource == resources::PODS {
        return Some(ownership::delete_pod(obj, now));
    }
    let target = Target::new(
        resource,
        meta::namespace(obj),
        meta::name(obj).unwrap_or(""),
    );
    let rv = meta::resource_version_u64(obj);
    let mut finalizers: Vec<Value> = meta::finalizers(obj).into_iter().map(Value::from).collect();
    if foreground {
        finalizers.push(json!(FINALIZER_FOREGROUND));
    }
    if finalizers.is_empty() {
        return Some(Action::Delete {
            target,
            precondition_rv: rv,
            unless_present: None,
        });
    }
    let mut marked = obj.clone();
    meta::set_deletion_timestamp(&mut marked, &meta::format_time(now));
    marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    marked["metadata"]["finalizers"] = Value::Array(finalizers);
    Some(Action::Update {
        target,
        object: marked,
        precondition_rv: rv,
    })
}

/// One pass over the ownership graph.
pub fn reconcile(snap: &Snapshot<'_>, now: jiff::Timestamp) -> Vec<Action> {
    let mut owners: HashMap<Key<'_>, OwnerState<'_>> = HashMap::new();
    for (resource, objs) in snap.objects {
        for o in objs {
            owners.insert(
                (
                    resource,
                    meta::namespace(o).unwrap_or(""),
                    meta::name(o).unwrap_or(""),
                ),
                OwnerState {
                    uid: meta::uid(o).unwrap_or(""),
                    deleting_foreground: has_finalizer(o, FINALIZER_FOREGROUND),
                    deleting_orphan: has_finalizer(o, FINALIZER_ORPHAN),
                },
            );
        }
    }
    let mut actions = Vec::new();
    // uids of owners that still have dependents (their finalizers must wait).
    let mut has_dependents: std::collections::HashSet<&str> = Default::default();

    for (resource, objs) in snap.objects {
        for obj in objs {
            let refs = meta::owner_references(obj);
            if refs.is_empty() {
                continue;
            }
            let ns = meta::namespace(obj).unwrap_or("");
            let mut keep = Vec::new();
            let mut dangling = Vec::new();
            let mut orphaned_by = Vec::new();
            let mut foreground = false;
            for r in refs {
                let uid = r["uid"].as_str().unwrap_or("");
                let Some(owner_res) = owner_resource(r) else {
                    keep.push(r.clone());
                    continue;
                };
                let name = r["name"].as_str().unwrap_or("");
                match owners.get(&(owner_res, ns, name)).filter(|o| o.uid == uid) {
                    None => dangling.push((owner_res, name, uid)),
                    Some(o) if o.deleting_orphan => orphaned_by.push(uid),
                    Some(o) => {
                        has_dependents.insert(o.uid);
                        foreground |= o.deleting_foreground;
                        keep.push(r.clone());
                    }
                }
            }
            let target = Target::new(resource, Some(ns), meta::name(obj).unwrap_or(""));
            let rv = meta::resource_version_u64(obj);
            if foreground {
                // Every live owner must be going for the dependent to go; a dependent
                // shared with a live owner only loses the reference (as below).
                let all_going = refs.iter().all(|r| {
                    let uid = r["uid"].as_str().unwrap_or("");
                    owner_resource(r).is_some_and(|res| {
                        owners
                            .get(&(res, ns, r["name"].as_str().unwrap_or("")))
                            .is_none_or(|o| o.uid != uid || o.deleting_foreground)
                    })
                });
                if all_going {
                    actions.extend(delete_dependent(resource, obj, true, now));
                    continue;
                }
            }
            if keep.is_empty() && orphaned_by.is_empty() {
                // Every owner is gone: collect it, after a live read of one owner proves the
                // cache right (the driver skips the delete if that owner exists after all).
                let (owner_res, name, uid) = dangling[0];
                let guard = Target::new(owner_res, Some(ns), name).with_uid(uid);
                match delete_dependent(resource, obj, false, now) {
                    Some(Action::Delete {
                        target,
                        precondition_rv,
                        ..
                    }) => actions.push(Action::Delete {
                        target,
                        precondition_rv,
                        unless_present: Some(guard),
                    }),
                    other => actions.extend(other),
                }
                continue;
            }
            if !dangling.is_empty() || !orphaned_by.is_empty() {
                let mut updated = obj.clone();
                meta::set_path(
                    &mut updated,
                    &["metadata", "ownerReferences"],
                    (!keep.is_empty()).then(|| Value::Array(keep)),
                );
                actions.push(Action::Update {
                    target,
                    object: updated,
                    precondition_rv: rv,
                });
            }
        }
    }

    // Owners waiting on the collector: drop the finalizer once no dependent refers to them.
    for (resource, objs) in snap.objects {
        for obj in objs {
            let uid = meta::uid(obj).unwrap_or("");
            let mine = [FINALIZER_ORPHAN, FINALIZER_FOREGROUND];
            if !meta::is_terminating(obj)
                || !meta::finalizers(obj).iter().any(|f| mine.contains(f))
                || has_dependents.contains(uid)
                || orphan_pending(snap, uid)
            {
                continue;
            }
            let rest: Vec<&str> = meta::finalizers(obj)
                .into_iter()
                .filter(|f| !mine.contains(f))
                .collect();
            let target = Target::new(
                resource,
                meta::namespace(obj),
                meta::name(obj).unwrap_or(""),
            );
            let rv = meta::resource_version_u64(obj);
            let grace = obj["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0);
            if rest.is_empty() && grace == 0 {
                actions.push(Action::Delete {
                    target,
                    precondition_rv: rv,
                    unless_present: None,
                });
            } else {
                let mut updated = obj.clone();
                meta::set_path(
                    &mut updated,
                    &["metadata", "finalizers"],
                    (!rest.is_empty()).then(|| json!(rest)),
                );
                actions.push(Action::Update {
                    target,
                    object: updated,
                    precondition_rv: rv,
                });
            }
        }
    }
    actions
}

/// Does any object still carry a reference to `uid` (an orphaning owner must wait until every
/// dependent has lost it)?
fn orphan_pending(snap: &Snapshot<'_>, uid: &str) -> bool {
    snap.objects.iter().any(|(_, objs)| {
        objs.iter().any(|o| {
            meta::owner_references(o)
                .iter()
                .any(|r| r["uid"].as_str() == Some(uid))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-28T10:00:00Z".parse().unwrap()
    }

    fn obj(kind: &str, name: &str, owner: Option<(&str, &str)>) -> Value {
        let api = if kind == "Pod" { "v1" } else { "apps/v1" };
        let mut o = json!({"apiVersion": api, "kind": kind,
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "9"},
            "spec": {"nodeName": "node-1"}});
        if let Some((okind, oname)) = owner {
            o["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": okind,
                "name": oname, "uid": format!("uid-{oname}"), "controller": true}]);
        }
        o
    }

    fn deleting(mut o: Value, finalizer: &str) -> Value {
        o["metadata"]["deletionTimestamp"] = json!("2026-11-28T09:59:00Z");
        o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        o["metadata"]["finalizers"] = json!([finalizer]);
        o
    }

    fn run(deploys: Vec<Value>, rss: Vec<Value>, pods: Vec<Value>) -> Vec<Action> {
        let objects = [
            (resources::DEPLOYMENTS, deploys),
            (resources::REPLICA_SETS, rss),
            (resources::PODS, pods),
        ];
        reconcile(&Snapshot { objects: &objects }, now())
    }

    fn summary(actions: &[Action]) -> Vec<(String, &'static str)> {
        actions
            .iter()
            .map(|a| (a.target().name.clone(), a.verb()))
            .collect()
    }

    #[test]
    fn background_collects_dependents_of_a_vanished_owner() {
        let actions = run(
            vec![],
            vec![obj("ReplicaSet", "web-1", Some(("Deployment", "web")))],
            vec![obj("Pod", "web-1-a", Some(("ReplicaSet", "web-1")))],
        );
        assert_eq!(summary(&actions), [("web-1".to_string(), "delete")]);
        let Action::Delete { unless_present, .. } = &actions[0] else {
            panic!()
        };
        assert_eq!(
            unless_present.as_ref().unwrap(),
            &Target::new(resources::DEPLOYMENTS, Some("default"), "web").with_uid("uid-web")
        );
        // Once the ReplicaSet is gone its Pod goes, gracefully (it is bound to a node).
        let actions = run(
            vec![],
            vec![],
            vec![obj("Pod", "web-1-a", Some(("ReplicaSet", "web-1")))],
        );
        assert_eq!(summary(&actions), [("web-1-a".to_string(), "update")]);
        assert!(actions[0].object().unwrap()["metadata"]["deletionTimestamp"].is_string());
    }

    #[test]
    fn a_recreated_owner_does_not_adopt_by_name() {
        let mut new_web = obj("Deployment", "web", None);
        new_web["metadata"]["uid"] = json!("uid-web-2");
        let actions = run(
            vec![new_web],
            vec![obj("ReplicaSet", "web-1", Some(("Deployment", "web")))],
            vec![],
        );
        assert_eq!(summary(&actions), [("web-1".to_string(), "delete")]);
    }

    #[test]
    fn present_owners_keep_their_dependents() {
        let actions = run(
            vec![obj("Deployment", "web", None)],
            vec![obj("ReplicaSet", "web-1", Some(("Deployment", "web")))],
            vec![obj("Pod", "web-1-a", Some(("ReplicaSet", "web-1")))],
        );
        assert!(actions.is_empty(), "{actions:?}");
    }

    #[test]
    fn orphan_removes_references_then_the_finalizer() {
        let web = deleting(obj("Deployment", "web", None), FINALIZER_ORPHAN);
        let rs = obj("ReplicaSet", "web-1", Some(("Deployment", "web")));
        let actions = run(vec![web.clone()], vec![rs.clone()], vec![]);
        assert_eq!(summary(&actions), [("web-1".to_string(), "update")]);
        assert!(
            actions[0].object().unwrap()["metadata"]
                .get("ownerReferences")
                .is_none()
        );
        let freed = actions[0].object().unwrap().clone();
        let actions = run(vec![web], vec![freed], vec![]);
        assert_eq!(summary(&actions), [("web".to_string(), "delete")]);
    }

    #[test]
    fn foreground_deletes_bottom_up() {
        let web = deleting(obj("Deployment", "web", None), FINALIZER_FOREGROUND);
        let rs = obj("ReplicaSet", "web-1", Some(("Deployment", "web")));
        let pod = obj("Pod", "web-1-a", Some(("ReplicaSet", "web-1")));
        // The ReplicaSet is marked in the foreground; the Deployment waits.
        let actions = run(vec![web.clone()], vec![rs], vec![pod.clone()]);
        assert_eq!(summary(&actions), [("web-1".to_string(), "update")]);
        let marked_rs = actions[0].object().unwrap().clone();
        assert_eq!(
            marked_rs["metadata"]["finalizers"],
            json!([FINALIZER_FOREGROUND])
        );
        // Now the Pod goes; both owners wait for it.
        let actions = run(vec![web.clone()], vec![marked_rs.clone()], vec![pod]);
        assert_eq!(summary(&actions), [("web-1-a".to_string(), "update")]);
        // Pod gone: the ReplicaSet goes, then the Deployment.
        let actions = run(vec![web.clone()], vec![marked_rs], vec![]);
        assert_eq!(summary(&actions), [("web-1".to_string(), "delete")]);
        let actions = run(vec![web], vec![], vec![]);
        assert_eq!(summary(&actions), [("web".to_string(), "delete")]);
    }

    #[test]
    fn one_dangling_owner_of_two_only_loses_its_reference() {
        let mut rs = obj("ReplicaSet", "shared", Some(("Deployment", "a")));
        rs["metadata"]["ownerReferences"]
            .as_array_mut()
            .unwrap()
            .push(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "b", "uid": "uid-b"}),
            );
        let actions = run(vec![obj("Deployment", "b", None)], vec![rs], vec![]);
        assert_eq!(summary(&actions), [("shared".to_string(), "update")]);
        assert_eq!(
            actions[0].object().unwrap()["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "b", "uid": "uid-b"}])
        );
    }
}
