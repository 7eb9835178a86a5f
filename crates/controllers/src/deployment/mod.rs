//! The Deployment controller: one ReplicaSet per revision of the pod template, and rollouts
//! between them.
//!
//! A Deployment never runs Pods itself. kube's `deployment` controller, per Deployment:
//! 1. claims its ReplicaSets (controller reference, adoption, release — as the ReplicaSet
//!    controller claims Pods);
//! 2. finds the **new** ReplicaSet: the one whose pod template equals the Deployment's,
//!    ignoring the `pod-template-hash` label. If there is none it creates
//!    `<deployment>-<hash>`, where the hash is FNV-32a of the template encoded in kube's safe
//!    alphabet; the ReplicaSet's selector, template and labels gain `pod-template-hash: <hash>`,
//!    so the Pods of different revisions never match each other's ReplicaSet. Every other
//!    ReplicaSet it owns is **old**;
//! 3. numbers revisions: the new ReplicaSet's `deployment.kubernetes.io/revision` annotation is
//!    one more than the highest old one — also when an old template comes back (`kubectl
//!    rollout undo`): the old ReplicaSet becomes the new one with a new revision, and no new Pods
//!    are made for a template that already has a ReplicaSet. The Deployment carries the same
//!    annotation; `kubernetes.io/change-cause` and other annotations are copied to the ReplicaSet,
//!    where `kubectl rollout history` reads them;
//! 4. moves Pods from old to new by changing `spec.replicas` of the ReplicaSets — the ReplicaSet
//!    controller does the creating and deleting:
//!    - `RollingUpdate`: the new set grows while all sets together stay within
//!      `replicas + maxSurge`; old sets shrink while available Pods stay at or above
//!      `replicas - maxUnavailable` ([`rollout`]). Availability is the Pods' `Ready` condition
//!      held for `minReadySeconds`, as the node agent reports it;
//!    - `Recreate`: every old set to 0, wait until none of their Pods is left (terminating ones
//!      included), then the new set to `replicas`;
//! 5. keeps `revisionHistoryLimit` old, empty ReplicaSets (the rollback targets) and deletes
//!    older ones once a rollout is complete;
//! 6. writes `status` and the `Available`/`Progressing` conditions ([`status`]).
//!
//! `spec.replicas` changed while several ReplicaSets have Pods (`kubectl scale` mid-rollout) is
//! shared out in proportion to their sizes, as kube does ([`rollout::proportional`]), so a stalled
//! rollout does not suddenly complete or lose capacity. `spec.paused` stops rollouts (status is
//! still written). Left out: the hash of a real cluster — kube hashes Go's printed form of the
//! template, this controller its canonical JSON: same algorithm and alphabet, different values.

pub mod rollout;
pub mod status;

use proxylab_apimachinery::meta;
use serde_json::{Map, Value, json};

use crate::action::{Action, Target, resources};
use crate::events;
use crate::ownership::{self, ALPHANUMS, claim, workload_selector};
use rollout::Counts;

pub const COMPONENT: &str = "deployment-controller";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations not copied to its ReplicaSets (kube's `skipCopyAnnotation`).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// What a pass decided, and when to look again (the progress deadline).
#[derive(Debug, Default)]
pub struct Outcome {
    pub actions: Vec<Action>,
    pub next_check: Option<jiff::Timestamp>,
}

/// Reconciles every Deployment with its ReplicaSets and their Pods.
pub fn reconcile(
    deployments: &[Value],
    replicasets: &[Value],
    pods: &[Value],
    now: jiff::Timestamp,
) -> Outcome {
    let mut out = Outcome::default();
    for d in deployments {
        sync(d, replicasets, pods, now, &mut out);
    }
    out
}

/// The pod-template-hash: FNV-32a over the template's canonical JSON (and the collision
/// count, if any), its decimal form mapped onto [`ALPHANUMS`] (kube's `SafeEncodeString`).
pub fn template_hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(canonical(&normalized(template)).as_bytes());
    if let Some(c) = collision_count {
        feed(&(c as u32).to_le_bytes());
    }
    h.to_string()
        .bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// JSON with object keys sorted at every level, so equal templates hash equally whatever the
/// order their fields arrived in.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// Drops what Go's semantic equality does not see: null, `""`, `{}` and `[]` fields (a client
/// that sends `"creationTimestamp": null` in a template — `kubectl rollout undo` does — sends the
/// same template as one that leaves it out).
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The template without the `pod-template-hash` label, normalized (kube's `EqualIgnoreHash`).
fn without_hash(template: &Value) -> Value {
    let mut t = normalized(template);
    if let Some(labels) = t
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(Value::as_object_mut)
    {
        labels.shift_remove(POD_TEMPLATE_HASH);
    }
    normalized(&t)
}

fn revision(rs: &Value) -> i64 {
    meta::annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicas_of(obj: &Value) -> i64 {
    meta::at(obj, &["spec", "replicas"])
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0)
}

fn counts_of(rs: &Value) -> Counts {
    Counts {
        replicas: replicas_of(rs),
        available: meta::at(rs, &["status", "availableReplicas"])
            .and_then(Value::as_i64)
            .unwrap_or(0),
    }
}

fn scaling_event(d: &Value, rs_name: &str, from: i64, to: i64, now: jiff::Timestamp) -> Action {
    let verb = if to > from { "up" } else { "down" };
    events::create(events::object_event(
        d,
        "apps/v1",
        "Deployment",
        COMPONENT,
        "Normal",
        "ScalingReplicaSet",
        &format!("Scaled {verb} replica set {rs_name} from {from} to {to}"),
        now,
    ))
}

/// The annotations a ReplicaSet of this Deployment carries: the Deployment's (minus
/// [`NOT_COPIED`]), the revision, and the desired/max replica counts.
fn sync_rs_annotations(rs: &mut Value, d: &Value, revision: Option<i64>, max_surge: i64) {
    let d_replicas = replicas_of(d);
    let mut wanted: Map<String, Value> = meta::annotations(rs).cloned().unwrap_or_default();
    for (k, v) in meta::annotations(d).into_iter().flatten() {
        if !NOT_COPIED.contains(&k.as_str()) {
            wanted.insert(k.clone(), v.clone());
        }
    }
    if let Some(r) = revision {
        wanted.insert(REVISION.into(), json!(r.to_string()));
    }
    wanted.insert(DESIRED_REPLICAS.into(), json!(d_replicas.to_string()));
    wanted.insert(
        MAX_REPLICAS.into(),
        json!((d_replicas + max_surge).to_string()),
    );
    meta::set_path(
        rs,
        &["metadata", "annotations"],
        Some(Value::Object(wanted)),
    );
}

/// The new ReplicaSet for the Deployment's current template.
fn new_replicaset(
    d: &Value,
    hash: &str,
    replicas: i64,
    revision: i64,
    max_surge: i64,
    now: jiff::Timestamp,
) -> Value {
    let ns = meta::namespace(d).unwrap_or("");
    let name = format!("{}-{hash}", meta::name(d).unwrap_or(""));
    let mut template = meta::at(d, &["spec", "template"])
        .cloned()
        .unwrap_or_else(|| json!({}));
    meta::set_path(
        &mut template,
        &["metadata", "labels", POD_TEMPLATE_HASH],
        Some(json!(hash)),
    );
    let mut selector = meta::at(d, &["spec", "selector"])
        .cloned()
        .unwrap_or_else(|| json!({}));
    meta::set_path(
        &mut selector,
        &["matchLabels", POD_TEMPLATE_HASH],
        Some(json!(hash)),
    );
    let mut metadata =
        meta::new_object_meta(Some(ns), &name, &uuid::Uuid::new_v4().to_string(), now);
    metadata["generation"] = json!(1);
    metadata["labels"] = template["metadata"]["labels"].clone();
    metadata["ownerReferences"] =
        json!([ownership::controller_reference(d, "apps/v1", "Deployment")]);
    let mut spec = json!({"replicas": replicas, "selector": selector, "template": template});
    if let Some(m) =
        meta::at(d, &["spec", "minReadySeconds"]).filter(|v| v.as_i64().is_some_and(|m| m > 0))
    {
        spec["minReadySeconds"] = m.clone();
    }
    let mut rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": metadata,
                        "spec": spec, "status": {"replicas": 0}});
    sync_rs_annotations(&mut rs, d, Some(revision), max_surge);
    rs
}

/// Pods (any state but finished) whose controller is one of `uids`.
fn pods_left(pods: &[Value], uids: &[&str]) -> bool {
    pods.iter().any(|p| {
        ownership::controller_uid(p).is_some_and(|u| uids.contains(&u))
            && !matches!(
                meta::str_at(p, &["status", "phase"]),
                Some("Succeeded" | "Failed")
            )
    })
}

fn sync(d: &Value, replicasets: &[Value], pods: &[Value], now: jiff::Timestamp, out: &mut Outcome) {
    let Some(selector) = workload_selector(d) else {
        return;
    };
    let ns = meta::namespace(d).unwrap_or("");
    let name = meta::name(d).unwrap_or("");
    let claimed = claim(
        d,
        "apps/v1",
        "Deployment",
        &selector,
        resources::REPLICA_SETS,
        replicasets,
    );
    out.actions.extend(claimed.actions);
    let mut sets: Vec<&Value> = claimed
        .owned
        .into_iter()
        .filter(|rs| !meta::is_terminating(rs))
        .collect();
    sets.sort_by(|a, b| {
        (meta::creation_timestamp(a), meta::name(a))
            .cmp(&(meta::creation_timestamp(b), meta::name(b)))
    });
    let template = meta::at(d, &["spec", "template"])
        .cloned()
        .unwrap_or(Value::Null);
    let wanted_template = without_hash(&template);
    let new_idx = sets.iter().position(|rs| {
        meta::at(rs, &["spec", "template"]).is_some_and(|t| without_hash(t) == wanted_template)
    });
    let replicas = replicas_of(d);
    let strategy = meta::str_at(d, &["spec", "strategy", "type"]).unwrap_or("RollingUpdate");
    let recreate = strategy == "Recreate";
    let (max_surge, unavailable) = if recreate {
        (0, 0)
    } else {
        rollout::fenceposts(
            meta::at(d, &["spec", "strategy", "rollingUpdate"]),
            replicas,
        )
    };
    let max_unavailable = rollout::max_unavailable(unavailable, replicas);
    let paused = meta::at(d, &["spec", "paused"]).and_then(Value::as_bool) == Some(true);
    let deleting = meta::is_terminating(d);

    let max_old_revision = sets
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_idx)
        .map(|(_, rs)| revision(rs))
        .max()
        .unwrap_or(0);
    // planned[i]: the spec.replicas this pass gives sets[i].
    let mut planned: Vec<i64> = sets.iter().map(|rs| replicas_of(rs)).collect();
    let mut conditions: Vec<Value> = meta::array_at(d, &["status", "conditions"]).to_vec();
    let now_s = meta::format_time(now);
    let mut d_revision = meta::annotation(d, REVISION).map(str::to_string);
    let mut collision_count = meta::at(d, &["status", "collisionCount"]).and_then(Value::as_i64);
    let mut created_rs = false;

    if !paused && !deleting {
        let old_idx: Vec<usize> = (0..sets.len()).filter(|i| Some(*i) != new_idx).collect();
        let old_counts: Vec<Counts> = old_idx.iter().map(|i| counts_of(sets[*i])).collect();
        match new_idx {
            None => {
                let old_pods_gone = !recreate
                    || (old_counts.iter().all(|c| c.replicas == 0)
                        && !pods_left(
                            pods,
                            &old_idx
                                .iter()
                                .filter_map(|i| meta::uid(sets[*i]))
                                .collect::<Vec<_>>(),
                        ));
                if recreate {
                    scale_old_to_zero(d, &sets, &old_idx, &mut planned, now, out);
                }
                if old_pods_gone {
                    let start = if recreate {
                        replicas
                    } else {
                        rollout::new_replicas(
                            replicas,
                            max_surge,
                            Counts {
                                replicas: 0,
                                available: 0,
                            },
                            &old_counts,
                        )
                    };
                    let hash = template_hash(&template, collision_count);
                    let rs_name = format!("{name}-{hash}");
                    let taken = replicasets.iter().any(|rs| {
                        meta::namespace(rs) == Some(ns) && meta::name(rs) == Some(rs_name.as_str())
                    });
                    if taken {
                        // A ReplicaSet of another template holds the name: hash again with
                        // a bumped collision count (kube's `status.collisionCount`).
                        collision_count = Some(collision_count.unwrap_or(0) + 1);
                    } else {
                        let revision = max_old_revision + 1;
                        let rs = new_replicaset(d, &hash, start, revision, max_surge, now);
                        out.actions.push(Action::Create {
                            target: Target::new(resources::REPLICA_SETS, Some(ns), &rs_name),
                            object: rs,
                        });
                        if start > 0 {
                            out.actions.push(scaling_event(d, &rs_name, 0, start, now));
                        }
                        d_revision = Some(revision.to_string());
                        created_rs = true;
                        status::set(
                            &mut conditions,
                            status::condition(
                                status::PROGRESSING,
                                "True",
                                status::REASON_NEW_RS_CREATED,
                                &format!("Created new replica set {rs_name:?}"),
                                &now_s,
                            ),
                        );
                    }
                }
            }
            Some(ni) => {
                let new_rs = sets[ni];
                let new_counts = counts_of(new_rs);
                let mut next_new = new_counts.replicas;
                let mut next_old: Vec<i64> = old_counts.iter().map(|c| c.replicas).collect();
                let mut rescaled = false;
                if recreate {
                    let old_pods_gone = old_counts.iter().all(|c| c.replicas == 0)
                        && !pods_left(
                            pods,
                            &old_idx
                                .iter()
                                .filter_map(|i| meta::uid(sets[*i]))
                                .collect::<Vec<_>>(),
                        );
                    next_old = vec![0; old_idx.len()];
                    if old_pods_gone {
                        next_new = replicas;
                    }
                } else if is_scaling_event(&sets, replicas) && !saturated(new_counts, replicas) {
                    // `spec.replicas` changed mid-rollout: resize every active set in
                    // proportion, and roll on in the next pass.
                    let active: Vec<usize> = (0..sets.len()).filter(|i| planned[*i] > 0).collect();
                    let sized: Vec<rollout::Sized> = active
                        .iter()
                        .map(|i| rollout::Sized {
                            replicas: planned[*i],
                            annotated_max: annotation_i64(sets[*i], MAX_REPLICAS),
                        })
                        .collect();
                    let status_replicas = meta::at(d, &["status", "replicas"])
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let sizes = rollout::proportional(replicas, max_surge, status_replicas, &sized);
                    for (i, size) in active.iter().zip(sizes) {
                        if *i == ni {
                            next_new = size;
                        } else if let Some(k) = old_idx.iter().position(|o| o == i) {
                            next_old[k] = size;
                        }
                    }
                    rescaled = true;
                } else {
                    next_new = rollout::new_replicas(replicas, max_surge, new_counts, &old_counts);
                    if next_new == new_counts.replicas {
                        let new_now = Counts {
                            replicas: next_new,
                            ..new_counts
                        };
                        next_old = rollout::scale_down_old(
                            replicas,
                            max_unavailable,
                            new_now,
                            &old_counts,
                        );
                    }
                }
                // Revision: a template that came back (rollout undo) gets the next number.
                let rev = revision(new_rs);
                let new_rev = if rev <= max_old_revision {
                    max_old_revision + 1
                } else {
                    rev
                };
                d_revision = Some(new_rev.to_string());
                let mut updated = new_rs.clone();
                sync_rs_annotations(&mut updated, d, Some(new_rev), max_surge);
                meta::set_path(&mut updated, &["spec", "replicas"], Some(json!(next_new)));
                let min_ready = meta::at(d, &["spec", "minReadySeconds"]).cloned();
                if meta::at(&updated, &["spec", "minReadySeconds"]) != min_ready.as_ref() {
                    meta::set_path(&mut updated, &["spec", "minReadySeconds"], min_ready);
                }
                planned[ni] = next_new;
                if &updated != new_rs {
                    out.actions.push(rs_update(&updated));
                }
                if next_new != new_counts.replicas {
                    out.actions.push(scaling_event(
                        d,
                        meta::name(new_rs).unwrap_or(""),
                        new_counts.replicas,
                        next_new,
                        now,
                    ));
                }
                for (k, i) in old_idx.iter().enumerate() {
                    let rs = sets[*i];
                    let mut updated = rs.clone();
                    sync_rs_annotations(&mut updated, d, None, max_surge);
                    if rescaled && next_old[k] == old_counts[k].replicas && &updated != rs {
                        // Same size, new desired/max annotations: the scaling event is over.
                        out.actions.push(rs_update(&updated));
                    } else if next_old[k] != old_counts[k].replicas {
                        meta::set_path(
                            &mut updated,
                            &["spec", "replicas"],
                            Some(json!(next_old[k])),
                        );
                        out.actions.push(scaling_event(
                            d,
                            meta::name(rs).unwrap_or(""),
                            old_counts[k].replicas,
                            next_old[k],
                            now,
                        ));
                        planned[*i] = next_old[k];
                        out.actions.push(rs_update(&updated));
                    }
                }
                if get_progressing(&conditions).is_none() {
                    status::set(
                        &mut conditions,
                        status::condition(
                            status::PROGRESSING,
                            "True",
                            status::REASON_FOUND_NEW_RS,
                            &format!(
                                "Found new replica set {:?}",
                                meta::name(new_rs).unwrap_or("")
                            ),
                            &now_s,
                        ),
                    );
                }
                let settled = next_new == new_counts.replicas
                    && next_old
                        .iter()
                        .zip(&old_counts)
                        .all(|(n, c)| *n == c.replicas);
                if settled {
                    cleanup_history(d, &sets, &old_idx, out);
                }
            }
        }
    }

    // Status: counts over the sets as seen, conditions from old and new counts.
    let new_name = new_idx.map(|i| meta::name(sets[i]).unwrap_or("").to_string());
    let mut wanted = status::counts(d, &sets, &planned, new_idx);
    let old_status = d.get("status").cloned().unwrap_or_else(|| json!({}));
    if paused {
        set_paused(&mut conditions, true, &now_s);
    } else if get_progressing(&conditions).is_some_and(|c| c["reason"] == status::REASON_PAUSED) {
        set_paused(&mut conditions, false, &now_s);
    } else if !created_rs {
        let r = status::Rollout {
            name,
            new_rs: new_name.as_deref(),
            replicas,
            max_unavailable,
            progress_deadline_seconds: meta::at(d, &["spec", "progressDeadlineSeconds"])
                .and_then(Value::as_i64),
            generation: meta::generation(d).unwrap_or(1),
        };
        let next = status::progress(&r, &old_status, &wanted, &mut conditions, now);
        out.next_check = match (out.next_check, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    wanted["conditions"] = Value::Array(conditions);
    if let Some(c) = collision_count {
        wanted["collisionCount"] = json!(c);
    }
    let mut updated = crate::replicaset::with_status(d, &wanted).unwrap_or_else(|| d.clone());
    if let Some(rev) = d_revision.filter(|r| meta::annotation(d, REVISION) != Some(r.as_str())) {
        meta::set_annotation(&mut updated, REVISION, &rev);
    }
    if &updated != d {
        out.actions.push(Action::Update {
            target: Target::new(resources::DEPLOYMENTS, Some(ns), name),
            object: updated,
            precondition_rv: meta::resource_version_u64(d),
        });
    }
}

fn annotation_i64(obj: &Value, key: &str) -> Option<i64> {
    meta::annotation(obj, key).and_then(|v| v.parse().ok())
}

/// kube's `isScalingEvent`: an active ReplicaSet was last sized for another `spec.replicas`.
fn is_scaling_event(sets: &[&Value], replicas: i64) -> bool {
    let active: Vec<&&Value> = sets.iter().filter(|rs| replicas_of(rs) > 0).collect();
    active.len() > 1
        && active
            .iter()
            .any(|rs| annotation_i64(rs, DESIRED_REPLICAS).is_some_and(|d| d != replicas))
}

/// The new ReplicaSet has all the Pods the Deployment wants, all available.
fn saturated(new: Counts, replicas: i64) -> bool {
    new.replicas == replicas && new.available >= replicas
}

fn get_progressing(conditions: &[Value]) -> Option<&Value> {
    status::get(conditions, status::PROGRESSING)
}

fn set_paused(conditions: &mut Vec<Value>, paused: bool, now: &str) {
    let (reason, message) = if paused {
        (status::REASON_PAUSED, "Deployment is paused")
    } else {
        (status::REASON_RESUMED, "Deployment is resumed")
    };
    status::set(
        conditions,
        status::condition(status::PROGRESSING, "Unknown", reason, message, now),
    );
}

fn rs_update(rs: &Value) -> Action {
    Action::Update {
        target: Target::new(
            resources::REPLICA_SETS,
            meta::namespace(rs),
            meta::name(rs).unwrap_or(""),
        ),
        object: rs.clone(),
        precondition_rv: meta::resource_version_u64(rs),
    }
}

/// Recreate's first step: every old set with replicas goes to 0.
fn scale_old_to_zero(
    d: &Value,
    sets: &[&Value],
    old_idx: &[usize],
    planned: &mut [i64],
    now: jiff::Timestamp,
    out: &mut Outcome,
) {
    for i in old_idx {
        let rs = sets[*i];
        let from = replicas_of(rs);
        if from > 0 {
            let mut updated = rs.clone();
            meta::set_path(&mut updated, &["spec", "replicas"], Some(json!(0)));
            out.actions.push(rs_update(&updated));
            out.actions
                .push(scaling_event(d, meta::name(rs).unwrap_or(""), from, 0, now));
            planned[*i] = 0;
        }
    }
}

/// Deletes the oldest empty old ReplicaSets beyond `revisionHistoryLimit`.
fn cleanup_history(d: &Value, sets: &[&Value], old_idx: &[usize], out: &mut Outcome) {
    let Some(limit) = meta::at(d, &["spec", "revisionHistoryLimit"]).and_then(Value::as_i64) else {
        return;
    };
    let mut empty: Vec<&Value> = old_idx
        .iter()
        .map(|i| sets[*i])
        .filter(|rs| {
            replicas_of(rs) == 0
                && meta::at(rs, &["status", "replicas"])
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    == 0
        })
        .collect();
    let excess = empty.len() as i64 - limit.max(0);
    if excess <= 0 {
        return;
    }
    empty.sort_by_key(|rs| revision(rs));
    for rs in empty.into_iter().take(excess as usize) {
        out.actions.push(Action::Delete {
            target: Target::new(
                resources::REPLICA_SETS,
                meta::namespace(rs),
                meta::name(rs).unwrap_or(""),
            ),
            precondition_rv: meta::resource_version_u64(rs),
            unless_present: None,
        });
    }
}

#[cfg(test)]
mod tests;
