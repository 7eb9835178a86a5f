//! The Deployment controller together with the ReplicaSet controller and a stand-in for the
//! node agents, over an in-memory world: every pass applies the controllers' actions, then the
//! "kubelet" makes new Pods ready and removes Pods marked for deletion.

use std::collections::BTreeMap;

use proxylab_apimachinery::meta;
use serde_json::{Value, json};

use super::*;
use crate::replicaset;

#[derive(Default)]
struct World {
    objects: BTreeMap<(&'static str, String), Value>,
    rv: u64,
    /// Pods the kubelet leaves unready (by image), to hold a rollout.
    broken_image: Option<String>,
    max_pods_seen: usize,
    min_available_seen: usize,
}

fn now() -> jiff::Timestamp {
    "2026-11-28T10:00:00Z".parse().unwrap()
}

impl World {
    fn list(&self, resource: &str) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, _), _)| *r == resource)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn put(&mut self, resource: &'static str, mut obj: Value) {
        self.rv += 1;
        meta::set_resource_version(&mut obj, &self.rv.to_string());
        let name = meta::name(&obj).unwrap().to_string();
        self.objects.insert((resource, name), obj);
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            let t = a.target().clone();
            if t.resource == resources::EVENTS {
                continue;
            }
            let key = (t.resource, t.name.clone());
            match a {
                Action::Create { object, .. } => {
                    if !self.objects.contains_key(&key) {
                        self.put(t.resource, object);
                    }
                }
                Action::Update {
                    object,
                    precondition_rv,
                    ..
                } => {
                    let current = self.objects.get(&key).and_then(meta::resource_version_u64);
                    if current.is_some()
                        && (precondition_rv.is_none() || precondition_rv == current)
                    {
                        self.put(t.resource, object);
                    }
                }
                Action::Delete { .. } => {
                    self.objects.remove(&key);
                }
            }
        }
    }

    /// The node agents: bind and run new Pods (ready unless their image is broken), finish
    /// graceful deletions.
    fn kubelet(&mut self) {
        for pod in self.list(resources::PODS) {
            let name = meta::name(&pod).unwrap().to_string();
            if meta::is_terminating(&pod) {
                self.objects.remove(&(resources::PODS, name));
                continue;
            }
            if pod["status"]["phase"] == "Pending" {
                let mut p = pod.clone();
                let broken =
                    self.broken_image.as_deref() == p["spec"]["containers"][0]["image"].as_str();
                p["spec"]["nodeName"] = json!("node-1");
                p["status"] = json!({"phase": "Running", "conditions": [
                    {"type": "Ready", "status": if broken { "False" } else { "True" },
                     "lastTransitionTime": "2026-11-28T09:00:00Z"}]});
                self.put(resources::PODS, p);
            }
        }
    }

    /// One round: the controllers, then the kubelet. Returns whether anything was written.
    fn step(&mut self) -> bool {
        let before = self.rv;
        let mut n = self.rv;
        let d = reconcile(
            &self.list(resources::DEPLOYMENTS),
            &self.list(resources::REPLICA_SETS),
            &self.list(resources::PODS),
            now(),
        );
        self.apply(d.actions);
        let rs = replicaset::reconcile(
            &self.list(resources::REPLICA_SETS),
            &self.list(resources::PODS),
            now(),
            &mut || {
                n += 1;
                format!("p{n}")
            },
        );
        self.apply(rs.actions);
        let pods = self.list(resources::PODS);
        self.max_pods_seen = self.max_pods_seen.max(pods.len());
        self.kubelet();
        let ready = self
            .list(resources::PODS)
            .iter()
            .filter(|p| ownership::is_pod_ready(p) && !meta::is_terminating(p))
            .count();
        self.min_available_seen = self.min_available_seen.min(ready);
        self.rv != before
    }

    fn settle(&mut self) -> usize {
        for i in 0..100 {
            if !self.step() {
                return i;
            }
        }
        panic!("the controllers never converged");
    }

    fn deployment(&self) -> Value {
        self.objects[&(resources::DEPLOYMENTS, "web".to_string())].clone()
    }

    fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        let mut d = self.deployment();
        f(&mut d);
        let generation = meta::generation(&d).unwrap_or(1) + 1;
        meta::set_generation(&mut d, generation);
        self.put(resources::DEPLOYMENTS, d);
    }

    fn sets(&self) -> Vec<(String, i64, String)> {
        self.list(resources::REPLICA_SETS)
            .iter()
            .map(|rs| {
                (
                    rs["spec"]["template"]["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    replicas_of(rs),
                    meta::annotation(rs, REVISION).unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

fn deployment(replicas: i64, strategy: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web", "generation": 1,
                     "creationTimestamp": "2026-11-28T09:00:00Z"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": strategy, "progressDeadlineSeconds": 600, "revisionHistoryLimit": 10,
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "echo-http:1"}]}}}})
}

fn rolling() -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
}

fn set_image(w: &mut World, image: &str) {
    w.edit(|d| d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image));
}

#[test]
fn creates_a_hashed_replicaset_and_reports_a_complete_rollout() {
    let mut w = World::default();
    w.put(resources::DEPLOYMENTS, deployment(3, rolling()));
    w.settle();
    let rs = w.list(resources::REPLICA_SETS).remove(0);
    let hash = rs["metadata"]["labels"][POD_TEMPLATE_HASH]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(meta::name(&rs).unwrap(), format!("web-{hash}"));
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"][POD_TEMPLATE_HASH],
        hash.as_str()
    );
    assert_eq!(
        rs["spec"]["template"]["metadata"]["labels"][POD_TEMPLATE_HASH],
        hash.as_str()
    );
    assert_eq!(ownership::controller_uid(&rs), Some("uid-web"));
    assert_eq!(meta::annotation(&rs, REVISION), Some("1"));
    assert_eq!(w.list(resources::PODS).len(), 3);
    let d = w.deployment();
    assert_eq!(meta::annotation(&d, REVISION), Some("1"));
    let st = &d["status"];
    assert_eq!(
        (
            st["replicas"].as_i64(),
            st["updatedReplicas"].as_i64(),
            st["availableReplicas"].as_i64()
        ),
        (Some(3), Some(3), Some(3))
    );
    let progressing =
        status::get(st["conditions"].as_array().unwrap(), status::PROGRESSING).unwrap();
    assert_eq!(progressing["reason"], status::REASON_NEW_RS_AVAILABLE);
    // Converged: a pass writes nothing.
    assert!(!w.step());
}

#[test]
fn rolling_update_stays_within_surge_and_unavailability_then_undo_reuses_the_old_set() {
    let mut w = World::default();
    w.put(resources::DEPLOYMENTS, deployment(3, rolling()));
    w.settle();
    w.max_pods_seen = 0;
    w.min_available_seen = usize::MAX;
    set_image(&mut w, "echo-http:2");
    w.settle();
    assert!(
        w.max_pods_seen <= 4,
        "maxSurge 1: at most 4 Pods, saw {}",
        w.max_pods_seen
    );
    assert!(
        w.min_available_seen >= 3,
        "maxUnavailable 0: saw {} ready",
        w.min_available_seen
    );
    let mut sets = w.sets();
    sets.sort();
    assert_eq!(
        sets,
        [
            ("echo-http:1".into(), 0, "1".into()),
            ("echo-http:2".into(), 3, "2".into())
        ]
    );
    // Undo: the template of revision 1 comes back; its set is reused as revision 3.
    set_image(&mut w, "echo-http:1");
    w.settle();
    let mut sets = w.sets();
    sets.sort();
    assert_eq!(
        sets,
        [
            ("echo-http:1".into(), 3, "3".into()),
            ("echo-http:2".into(), 0, "2".into())
        ]
    );
    assert_eq!(meta::annotation(&w.deployment(), REVISION), Some("3"));
}

#[test]
fn unready_new_pods_stall_the_rollout_without_losing_capacity() {
    let mut w = World::default();
    w.put(resources::DEPLOYMENTS, deployment(3, rolling()));
    w.settle();
    w.broken_image = Some("echo-http:broken".into());
    set_image(&mut w, "echo-http:broken");
    w.settle();
    let mut sets = w.sets();
    sets.sort();
    // One surge Pod that never gets ready; the old set keeps all three.
    assert_eq!(
        sets,
        [
            ("echo-http:1".into(), 3, "1".into()),
            ("echo-http:broken".into(), 1, "2".into())
        ]
    );
    let st = &w.deployment()["status"];
    assert_eq!(st["updatedReplicas"], 1);
    assert_eq!(st["unavailableReplicas"], 1);
    let progressing =
        status::get(st["conditions"].as_array().unwrap(), status::PROGRESSING).unwrap();
    assert_eq!(progressing["reason"], status::REASON_RS_UPDATED);
}

#[test]
fn recreate_empties_the_old_set_before_starting_the_new() {
    let mut w = World::default();
    w.put(
        resources::DEPLOYMENTS,
        deployment(2, json!({"type": "Recreate"})),
    );
    w.settle();
    set_image(&mut w, "echo-http:2");
    // First pass: the old set goes to 0 and no new set exists yet.
    w.step();
    let sets = w.sets();
    assert_eq!(sets, [("echo-http:1".into(), 0, "1".into())]);
    w.settle();
    let mut sets = w.sets();
    sets.sort();
    assert_eq!(
        sets,
        [
            ("echo-http:1".into(), 0, "1".into()),
            ("echo-http:2".into(), 2, "2".into())
        ]
    );
}

#[test]
fn scaling_changes_the_current_set_only() {
    let mut w = World::default();
    w.put(resources::DEPLOYMENTS, deployment(1, rolling()));
    w.settle();
    w.edit(|d| d["spec"]["replicas"] = json!(4));
    w.settle();
    assert_eq!(w.sets(), [("echo-http:1".into(), 4, "1".into())]);
    assert_eq!(w.list(resources::PODS).len(), 4);
    w.edit(|d| d["spec"]["replicas"] = json!(2));
    w.settle();
    assert_eq!(w.list(resources::PODS).len(), 2);
}

#[test]
fn history_keeps_only_the_limit_of_old_sets() {
    let mut w = World::default();
    let mut d = deployment(1, rolling());
    d["spec"]["revisionHistoryLimit"] = json!(1);
    w.put(resources::DEPLOYMENTS, d);
    w.settle();
    for v in 2..=4 {
        set_image(&mut w, &format!("echo-http:{v}"));
        w.settle();
    }
    let mut sets = w.sets();
    sets.sort();
    assert_eq!(
        sets,
        [
            ("echo-http:3".into(), 0, "3".into()),
            ("echo-http:4".into(), 1, "4".into())
        ]
    );
}

#[test]
fn the_hash_ignores_key_order_and_uses_the_safe_alphabet() {
    let a = json!({"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"a": 1}});
    let b = json!({"spec": {"a": 1}, "metadata": {"labels": {"tier": "x", "app": "web"}}});
    assert_eq!(template_hash(&a, None), template_hash(&b, None));
    assert_ne!(template_hash(&a, None), template_hash(&a, Some(1)));
    assert!(
        template_hash(&a, None)
            .bytes()
            .all(|c| ALPHANUMS.contains(&c))
    );
}

#[test]
fn templates_compare_as_go_does() {
    let a = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "resources": {}}]}});
    let b = json!({"metadata": {"creationTimestamp": null, "labels": {"app": "web", POD_TEMPLATE_HASH: "x"}},
                   "spec": {"containers": [{"name": "c"}], "volumes": []}});
    assert_eq!(without_hash(&a), without_hash(&b));
    assert_eq!(
        template_hash(&a, None),
        template_hash(&without_hash(&b), None)
    );
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    let mut w = World::default();
    w.put(resources::DEPLOYMENTS, deployment(3, rolling()));
    w.settle();
    w.broken_image = Some("echo-http:broken".into());
    set_image(&mut w, "echo-http:broken");
    w.settle();
    w.edit(|d| d["spec"]["replicas"] = json!(6));
    w.settle();
    let mut sets = w.sets();
    sets.sort();
    // 3 old + 1 stuck new, sized for 3 (+1 surge); at 6 (+1) the same split: 5 + 2.
    assert_eq!(
        sets,
        [
            ("echo-http:1".into(), 5, "1".into()),
            ("echo-http:broken".into(), 2, "2".into())
        ]
    );
}
