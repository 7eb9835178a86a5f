//! The Job controller: runs Pods to completion.
//!
//! A Deployment keeps Pods *running*; a Job wants Pods to *finish*. kube-controller-manager's
//! `job` controller, per Job:
//! 1. **claims** its Pods as the ReplicaSet controller does ([`crate::ownership::claim`]); the
//!    apiserver gave the Job a selector on its own uid (`batch.kubernetes.io/controller-uid`), so
//!    no other Job can match them;
//! 2. sorts them into *active* (not finished, not being deleted), *succeeded* (phase `Succeeded`:
//!    every container exited 0) and *failed* (phase `Failed`);
//! 3. decides whether the Job is finished: **failed** when the failures exceed `backoffLimit`
//!    (failed Pods, plus container restarts under `restartPolicy: OnFailure`) or the Job has been
//!    active for `activeDeadlineSeconds`; **complete** when `completions` Pods succeeded (for
//!    `completionMode: Indexed`, one per index `0..completions`), or, for a work queue (no
//!    `completions`), when one Pod succeeded and none is still active;
//! 4. otherwise keeps `parallelism` Pods active — never more than the completions still missing.
//!    After a failure the next Pod waits an exponential back-off (10 s, 20 s, 40 s … at most
//!    6 min after the last failure), as kube's does;
//! 5. writes `status`: `active`, `ready`, `succeeded`, `failed`, `terminating`,
//!    `completedIndexes`, `startTime`, `completionTime` and the `Complete` / `Failed` /
//!    `Suspended` conditions (`kubectl wait --for=condition=complete` reads the first).
//!
//! Pods are named `<job>-<5 chars>`, or `<job>-<index>-<5 chars>` in Indexed mode, where each Pod
//! also carries its index as the `batch.kubernetes.io/job-completion-index` annotation and label,
//! the `JOB_COMPLETION_INDEX` environment variable (a downward-API reference to the annotation)
//! and the hostname `<job>-<index>`. A finished Job with `ttlSecondsAfterFinished` is deleted
//! that long after it finished (the `ttl-after-finished` controller's job, done here); the
//! garbage collector then removes its Pods. `suspend: true` deletes the active Pods and creates
//! none until it is cleared.
//!
//! Left out: the `batch.kubernetes.io/job-tracking` finalizer and `uncountedTerminatedPods` (the
//! counts come from the Pods that exist, so a finished Pod deleted by hand is forgotten), the
//! interim `FailureTarget` / `SuccessCriteriaMet` conditions (the final condition is written at
//! once), `podFailurePolicy`, `successPolicy`, `backoffLimitPerIndex` and `managedBy`.

use std::collections::BTreeSet;

use proxylab_apimachinery::meta;
use serde_json::{Value, json};

use crate::action::{Action, Target, resources};
use crate::events;
use crate::ownership::{self, claim, workload_selector};
use crate::replicaset::with_status;

pub const COMPONENT: &str = "job-controller";

/// The annotation (and label) carrying an Indexed Job Pod's index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The first back-off after a failed Pod, doubled per further failure (kube's `DefaultJobPodFailureBackOff`).
pub const BACKOFF_BASE: jiff::SignedDuration = jiff::SignedDuration::from_secs(10);
/// The longest back-off (kube's `MaxJobPodFailureBackOff`).
pub const BACKOFF_MAX: jiff::SignedDuration = jiff::SignedDuration::from_secs(360);

/// What a pass decided, and when to look again (a back-off ending, a deadline or a TTL passing
/// are changes no watch event announces).
#[derive(Debug, Default)]
pub struct Outcome {
    pub actions: Vec<Action>,
    pub next_check: Option<jiff::Timestamp>,
}

impl Outcome {
    fn check_at(&mut self, at: jiff::Timestamp) {
        self.next_check = Some(self.next_check.map_or(at, |t| t.min(at)));
    }
}

/// Reconciles every Job with the Pods. `suffix` names new Pods
/// ([`ownership::random_suffix`] in the lab; a counter in tests).
pub fn reconcile(
    jobs: &[Value],
    pods: &[Value],
    now: jiff::Timestamp,
    suffix: &mut dyn FnMut() -> String,
) -> Outcome {
    let mut out = Outcome::default();
    for job in jobs {
        reconcile_one(job, pods, now, suffix, &mut out);
    }
    out
}

fn int(obj: &Value, path: &[&str]) -> Option<i64> {
    meta::at(obj, path).and_then(Value::as_i64)
}

fn condition<'a>(job: &'a Value, ty: &str) -> Option<&'a Value> {
    meta::array_at(job, &["status", "conditions"])
        .iter()
        .find(|c| c["type"] == ty)
}

fn has_condition(job: &Value, ty: &str) -> bool {
    condition(job, ty).is_some_and(|c| c["status"] == "True")
}

fn time_at(obj: &Value, path: &[&str]) -> Option<jiff::Timestamp> {
    meta::str_at(obj, path).and_then(meta::parse_time)
}

fn after(t: jiff::Timestamp, secs: i64) -> jiff::Timestamp {
    t.checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap_or(t)
}

/// The index of an Indexed Job's Pod, if it carries a valid one below `completions`.
fn pod_index(pod: &Value, completions: i64) -> Option<i64> {
    meta::annotation(pod, COMPLETION_INDEX)
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|i| (0..completions).contains(i))
}

/// When a finished Pod finished: its last container's `finishedAt`, else its creation.
fn finished_at(pod: &Value) -> Option<jiff::Timestamp> {
    meta::array_at(pod, &["status", "containerStatuses"])
        .iter()
        .filter_map(|c| time_at(c, &["state", "terminated", "finishedAt"]))
        .max()
        .or_else(|| meta::creation_timestamp(pod).and_then(meta::parse_time))
}

fn restarts(pod: &Value) -> i64 {
    meta::array_at(pod, &["status", "containerStatuses"])
        .iter()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum()
}

/// kube's `formatIndexes`: `0-2,4,6-7`.
pub fn format_indexes(indexes: &BTreeSet<i64>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

fn new_condition(ty: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": ty, "status": status, "lastProbeTime": now, "lastTransitionTime": now,
           "reason": reason, "message": message})
}

/// The conditions with `cond` set (replacing one of its type only when the status changes, so a
/// converged pass writes nothing).
fn set_condition(conditions: &mut Vec<Value>, cond: Value) {
    match conditions.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(c) if c["status"] == cond["status"] => {}
        Some(c) => *c = cond,
        None => conditions.push(cond),
    }
}

struct Finish {
    condition: &'static str,
    reason: &'static str,
    message: &'static str,
}

fn reconcile_one(
    job: &Value,
    pods: &[Value],
    now: jiff::Timestamp,
    suffix: &mut dyn FnMut() -> String,
    out: &mut Outcome,
) {
    let Some(selector) = workload_selector(job) else {
        return;
    };
    let ns = meta::namespace(job).unwrap_or("");
    let name = meta::name(job).unwrap_or("");
    let event = |event_type: &str, reason: &str, message: &str| {
        events::create(events::object_event(
            job, "batch/v1", "Job", COMPONENT, event_type, reason, message, now,
        ))
    };

    if has_condition(job, "Complete") || has_condition(job, "Failed") {
        // Finished: only the TTL is left to watch.
        if let Some(ttl) = int(job, &["spec", "ttlSecondsAfterFinished"])
            && !meta::is_terminating(job)
        {
            let finished = time_at(job, &["status", "completionTime"]).or_else(|| {
                ["Complete", "Failed"]
                    .iter()
                    .filter_map(|t| condition(job, t))
                    .find_map(|c| c["lastTransitionTime"].as_str().and_then(meta::parse_time))
            });
            let expires = after(finished.unwrap_or(now), ttl);
            if expires <= now {
                out.actions.push(Action::Delete {
                    target: Target::new(resources::JOBS, Some(ns), name),
                    precondition_rv: meta::resource_version_u64(job),
                    unless_present: None,
                });
            } else {
                out.check_at(expires);
            }
        }
        return;
    }
    if meta::is_terminating(job) {
        return;
    }

    let claimed = claim(job, "batch/v1", "Job", &selector, resources::PODS, pods);
    out.actions.extend(claimed.actions);
    let phase = |p: &Value| meta::str_at(p, &["status", "phase"]).map(str::to_owned);
    let active: Vec<&Value> = claimed
        .owned
        .iter()
        .copied()
        .filter(|p| ownership::is_pod_active(p))
        .collect();
    let succeeded: Vec<&Value> = claimed
        .owned
        .iter()
        .copied()
        .filter(|p| phase(p).as_deref() == Some("Succeeded"))
        .collect();
    let failed: Vec<&Value> = claimed
        .owned
        .iter()
        .copied()
        .filter(|p| phase(p).as_deref() == Some("Failed"))
        .collect();
    let terminating = claimed
        .owned
        .iter()
        .filter(|p| {
            meta::is_terminating(p) && !matches!(phase(p).as_deref(), Some("Succeeded" | "Failed"))
        })
        .count();

    let spec = &job["spec"];
    let parallelism = int(job, &["spec", "parallelism"]).unwrap_or(1).max(0);
    let completions = int(job, &["spec", "completions"]).map(|c| c.max(0));
    let indexed = spec["completionMode"] == "Indexed" && completions.is_some();
    let backoff_limit = int(job, &["spec", "backoffLimit"]).unwrap_or(6).max(0);
    let suspended = spec["suspend"] == json!(true);
    let on_failure =
        meta::str_at(job, &["spec", "template", "spec", "restartPolicy"]) == Some("OnFailure");
    let now_s = meta::format_time(now);

    let start_time = time_at(job, &["status", "startTime"]).or((!suspended).then_some(now));
    let succeeded_indexes: BTreeSet<i64> = if indexed {
        succeeded
            .iter()
            .filter_map(|p| pod_index(p, completions.unwrap_or(0)))
            .collect()
    } else {
        BTreeSet::new()
    };
    let done = match completions {
        Some(c) if indexed => succeeded_indexes.len() as i64 >= c,
        Some(c) => succeeded.len() as i64 >= c,
        None => !succeeded.is_empty() && active.is_empty(),
    };
    let failures = failed.len() as i64
        + if on_failure {
            active.iter().map(|p| restarts(p)).sum()
        } else {
            0
        };
    let deadline = int(job, &["spec", "activeDeadlineSeconds"])
        .zip(start_time)
        .map(|(secs, start)| after(start, secs));

    let finish = if failures > backoff_limit {
        Some(Finish {
            condition: "Failed",
            reason: "BackoffLimitExceeded",
            message: "Job has reached the specified backoff limit",
        })
    } else if !suspended && deadline.is_some_and(|d| d <= now) {
        Some(Finish {
            condition: "Failed",
            reason: "DeadlineExceeded",
            message: "Job was active longer than specified deadline",
        })
    } else if done {
        Some(Finish {
            condition: "Complete",
            reason: "CompletionsReached",
            message: "Reached expected number of succeeded pods",
        })
    } else {
        None
    };
    if let (None, Some(d)) = (&finish, deadline)
        && !suspended
    {
        out.check_at(d);
    }

    let mut conditions: Vec<Value> = meta::array_at(job, &["status", "conditions"]).to_vec();
    let mut completion_time = time_at(job, &["status", "completionTime"]);
    let delete_active = |out: &mut Outcome, pods: &[&Value]| {
        for pod in pods {
            out.actions.push(ownership::delete_pod(pod, now));
            out.actions.push(event(
                "Normal",
                "SuccessfulDelete",
                &format!("Deleted pod: {}", meta::name(pod).unwrap_or("")),
            ));
        }
    };
    if let Some(f) = &finish {
        // A failed Job stops what still runs; a complete one has nothing left running.
        delete_active(out, &active);
        set_condition(
            &mut conditions,
            new_condition(f.condition, "True", f.reason, f.message, &now_s),
        );
        if f.condition == "Complete" {
            completion_time = Some(now);
            out.actions
                .push(event("Normal", "Completed", "Job completed"));
        } else {
            out.actions.push(event("Warning", f.reason, f.message));
        }
    } else if suspended {
        delete_active(out, &active);
        if !has_condition(job, "Suspended") {
            set_condition(
                &mut conditions,
                new_condition("Suspended", "True", "JobSuspended", "Job suspended", &now_s),
            );
            out.actions
                .push(event("Normal", "Suspended", "Job suspended"));
        }
    } else {
        if has_condition(job, "Suspended") {
            set_condition(
                &mut conditions,
                new_condition("Suspended", "False", "JobResumed", "Job resumed", &now_s),
            );
            out.actions.push(event("Normal", "Resumed", "Job resumed"));
        }
        // Back-off after failures: the next Pod waits, measured from the last failure.
        let backoff_until = failed
            .iter()
            .filter_map(|p| finished_at(p))
            .max()
            .map(|last| {
                let doublings = u32::try_from((failed.len() as i64 - 1).clamp(0, 16)).unwrap_or(16);
                let delay = BACKOFF_BASE
                    .checked_mul(1 << doublings)
                    .unwrap_or(BACKOFF_MAX)
                    .min(BACKOFF_MAX);
                last.checked_add(delay).unwrap_or(last)
            });
        let backing_off = backoff_until.is_some_and(|t| t > now);
        let mut to_create: Vec<Option<i64>> = Vec::new();
        if indexed {
            let busy: BTreeSet<i64> = active
                .iter()
                .filter_map(|p| pod_index(p, completions.unwrap_or(0)))
                .collect();
            let room = (parallelism - active.len() as i64).max(0) as usize;
            to_create = (0..completions.unwrap_or(0))
                .filter(|i| !succeeded_indexes.contains(i) && !busy.contains(i))
                .take(room)
                .map(Some)
                .collect();
        } else {
            let want = match completions {
                Some(c) => parallelism.min(c - succeeded.len() as i64).max(0),
                // A work queue: once one Pod succeeded, the rest only finish.
                None if !succeeded.is_empty() => active.len() as i64,
                None => parallelism,
            };
            let have = active.len() as i64;
            if want > have {
                to_create = vec![None; (want - have) as usize];
            } else if want < have {
                // parallelism lowered: stop the newest.
                let mut victims = active.clone();
                victims.sort_by_key(|p| {
                    std::cmp::Reverse(meta::creation_timestamp(p).unwrap_or("").to_owned())
                });
                delete_active(out, &victims[..(have - want) as usize]);
            }
        }
        if !to_create.is_empty() && backing_off {
            if let Some(t) = backoff_until {
                out.check_at(t);
            }
        } else {
            for index in to_create {
                let pod = pod_from_template(job, index, &suffix(), now);
                let pod_name = meta::name(&pod).unwrap_or("").to_owned();
                out.actions.push(Action::Create {
                    target: Target::new(resources::PODS, Some(ns), &pod_name),
                    object: pod,
                });
                out.actions.push(event(
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {pod_name}"),
                ));
            }
        }
    }

    let ready = active.iter().filter(|p| ownership::is_pod_ready(p)).count();
    let mut wanted = json!({
        "active": if finish.is_some() { 0 } else { active.len() },
        "ready": ready,
        "succeeded": succeeded.len(),
        "failed": failed.len(),
        "terminating": terminating,
        "startTime": start_time.map(meta::format_time),
        "completionTime": completion_time.map(meta::format_time),
        "conditions": if conditions.is_empty() { Value::Null } else { Value::Array(conditions) },
    });
    if indexed {
        let s = format_indexes(&succeeded_indexes);
        wanted["completedIndexes"] = if s.is_empty() { Value::Null } else { json!(s) };
    }
    if let Some(updated) = with_status(job, &wanted) {
        out.actions.push(Action::Update {
            target: Target::new(resources::JOBS, Some(ns), name),
            object: updated,
            precondition_rv: meta::resource_version_u64(job),
        });
    }
}

/// A Pod made from the Job's template (kube's `GetPodFromTemplate` plus the Indexed additions).
fn pod_from_template(job: &Value, index: Option<i64>, suffix: &str, now: jiff::Timestamp) -> Value {
    let ns = meta::namespace(job).unwrap_or("");
    let job_name = meta::name(job).unwrap_or("");
    let prefix = match index {
        Some(i) => format!("{job_name}-{i}-"),
        None => format!("{job_name}-"),
    };
    let template = meta::at(job, &["spec", "template"])
        .cloned()
        .unwrap_or(Value::Null);
    let mut metadata = meta::new_object_meta(
        Some(ns),
        &format!("{prefix}{suffix}"),
        &uuid::Uuid::new_v4().to_string(),
        now,
    );
    metadata["generateName"] = json!(prefix);
    for field in ["labels", "annotations"] {
        if let Some(v) = template["metadata"].get(field).filter(|v| v.is_object()) {
            metadata[field] = v.clone();
        }
    }
    metadata["ownerReferences"] = json!([ownership::controller_reference(job, "batch/v1", "Job")]);
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    if let Some(i) = index {
        for field in ["labels", "annotations"] {
            if !metadata[field].is_object() {
                metadata[field] = json!({});
            }
            metadata[field][COMPLETION_INDEX] = json!(i.to_string());
        }
        if spec["hostname"].as_str().is_none_or(str::is_empty) {
            spec["hostname"] = json!(format!("{job_name}-{i}"));
        }
        for list in ["initContainers", "containers"] {
            for c in spec[list].as_array_mut().into_iter().flatten() {
                if !c["env"].is_array() {
                    c["env"] = json!([]);
                }
                if let Some(env) = c["env"].as_array_mut() {
                    env.push(
                        json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                        "apiVersion": "v1",
                        "fieldPath": format!("metadata.annotations['{COMPLETION_INDEX}']")}}}),
                    );
                }
            }
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": spec,
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    })
}

#[cfg(test)]
mod tests;
