//! A Deployment's `status`: counts summed over its ReplicaSets, and the two conditions
//! `kubectl rollout status` and users read.
//!
//! - `Available`: True (`MinimumReplicasAvailable`) while at least `replicas - maxUnavailable`
//!   Pods are available, else False (`MinimumReplicasUnavailable`).
//! - `Progressing`: True with reason `NewReplicaSetCreated`, then `ReplicaSetUpdated` each time
//!   the rollout moves (more updated, ready or available Pods, fewer old ones), then
//!   `NewReplicaSetAvailable` once complete; False with `ProgressDeadlineExceeded` when it has
//!   not moved for `progressDeadlineSeconds` (then `kubectl rollout status` gives up with an
//!   error). Unknown with `DeploymentPaused` / `DeploymentResumed` around a pause.
//!
//! `kubectl rollout status` itself only compares numbers: `observedGeneration` must have caught
//! up with `metadata.generation`, then it waits until `updatedReplicas == spec.replicas`,
//! `replicas == updatedReplicas` (no old Pods left) and `availableReplicas == updatedReplicas`.

use proxylab_apimachinery::meta;
use serde_json::{Value, json};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REASON_NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const REASON_FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const REASON_RS_UPDATED: &str = "ReplicaSetUpdated";
pub const REASON_NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const REASON_TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const REASON_PAUSED: &str = "DeploymentPaused";
pub const REASON_RESUMED: &str = "DeploymentResumed";

fn count(obj: &Value, path: &[&str]) -> i64 {
    meta::at(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

/// The numbers of a status, summed over the ReplicaSets (`replicas` planned: the
/// `spec.replicas` this pass decided for each set, in the same order as `sets`).
pub fn counts(
    deployment: &Value,
    sets: &[&Value],
    planned: &[i64],
    new_rs: Option<usize>,
) -> Value {
    let sum = |path: &[&str]| sets.iter().map(|s| count(s, path)).sum::<i64>();
    let available = sum(&["status", "availableReplicas"]);
    let total: i64 = planned.iter().sum();
    json!({
        "observedGeneration": meta::generation(deployment).unwrap_or(1),
        "replicas": sum(&["status", "replicas"]),
        "updatedReplicas": new_rs.map_or(0, |i| count(sets[i], &["status", "replicas"])),
        "readyReplicas": sum(&["status", "readyReplicas"]),
        "availableReplicas": available,
        "unavailableReplicas": (total - available).max(0),
    })
}

/// A condition as kube builds them: `lastUpdateTime` and `lastTransitionTime` both now.
pub fn condition(kind: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": kind, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
           "reason": reason, "message": message})
}

pub fn get<'a>(conditions: &'a [Value], kind: &str) -> Option<&'a Value> {
    conditions.iter().find(|c| c["type"] == kind)
}

/// kube's `SetDeploymentCondition`: no change when status and reason are the same; the
/// transition time kept when only the reason changes.
pub fn set(conditions: &mut Vec<Value>, mut cond: Value) {
    if let Some(cur) = get(conditions, cond["type"].as_str().unwrap_or("")) {
        if cur["status"] == cond["status"] && cur["reason"] == cond["reason"] {
            return;
        }
        if cur["status"] == cond["status"] {
            cond["lastTransitionTime"] = cur["lastTransitionTime"].clone();
        }
    }
    let kind = cond["type"].clone();
    conditions.retain(|c| c["type"] != kind);
    conditions.push(cond);
}

/// What [`progress`] needs of the Deployment.
pub struct Rollout<'a> {
    pub name: &'a str,
    pub new_rs: Option<&'a str>,
    pub replicas: i64,
    pub max_unavailable: i64,
    pub progress_deadline_seconds: Option<i64>,
    pub generation: i64,
}

/// Sets `Available` and `Progressing` on `conditions` given the old and the new counts
/// (kube's `calculateStatus` + `syncRolloutStatus`). Returns when the progress deadline will
/// pass if the rollout is still under way.
pub fn progress(
    r: &Rollout<'_>,
    old: &Value,
    new: &Value,
    conditions: &mut Vec<Value>,
    now: jiff::Timestamp,
) -> Option<jiff::Timestamp> {
    let now_s = meta::format_time(now);
    let n = |v: &Value, k: &str| v[k].as_i64().unwrap_or(0);
    if n(new, "availableReplicas") >= r.replicas - r.max_unavailable {
        set(
            conditions,
            condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                &now_s,
            ),
        );
    } else {
        set(
            conditions,
            condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                &now_s,
            ),
        );
    }
    let Some(deadline) = r.progress_deadline_seconds else {
        conditions.retain(|c| c["type"] != PROGRESSING);
        return None;
    };
    let current = get(conditions, PROGRESSING).cloned();
    let complete_before = n(new, "replicas") == n(new, "updatedReplicas")
        && current
            .as_ref()
            .is_some_and(|c| c["reason"] == REASON_NEW_RS_AVAILABLE);
    if complete_before {
        return None;
    }
    let subject = match r.new_rs {
        Some(rs) => format!("ReplicaSet {rs:?}"),
        None => format!("Deployment {:?}", r.name),
    };
    let complete = n(new, "updatedReplicas") == r.replicas
        && n(new, "replicas") == r.replicas
        && n(new, "availableReplicas") == r.replicas
        && n(new, "observedGeneration") >= r.generation;
    let progressing = n(new, "updatedReplicas") > n(old, "updatedReplicas")
        || n(new, "replicas") < n(old, "replicas")
        || n(new, "readyReplicas") > n(old, "readyReplicas")
        || n(new, "availableReplicas") > n(old, "availableReplicas");
    let timeout_at = current
        .as_ref()
        .filter(|c| c["reason"] != REASON_TIMED_OUT && c["status"] != "Unknown")
        .and_then(|c| c["lastUpdateTime"].as_str())
        .and_then(meta::parse_time)
        .and_then(|t| {
            t.checked_add(jiff::SignedDuration::from_secs(deadline))
                .ok()
        });
    if complete {
        set(
            conditions,
            condition(
                PROGRESSING,
                "True",
                REASON_NEW_RS_AVAILABLE,
                &format!("{subject} has successfully progressed."),
                &now_s,
            ),
        );
        None
    } else if progressing {
        let mut cond = condition(
            PROGRESSING,
            "True",
            REASON_RS_UPDATED,
            &format!("{subject} is progressing."),
            &now_s,
        );
        // Progress refreshes lastUpdateTime (the deadline restarts) but not the transition.
        if let Some(cur) = current.as_ref().filter(|c| c["status"] == "True") {
            cond["lastTransitionTime"] = cur["lastTransitionTime"].clone();
        }
        conditions.retain(|c| c["type"] != PROGRESSING);
        conditions.push(cond);
        now.checked_add(jiff::SignedDuration::from_secs(deadline))
            .ok()
    } else if timeout_at.is_some_and(|t| t <= now) {
        set(
            conditions,
            condition(
                PROGRESSING,
                "False",
                REASON_TIMED_OUT,
                &format!("{subject} has timed out progressing."),
                &now_s,
            ),
        );
        None
    } else {
        timeout_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-28T10:00:00Z".parse().unwrap()
    }

    fn rollout() -> Rollout<'static> {
        Rollout {
            name: "web",
            new_rs: Some("web-abc"),
            replicas: 3,
            max_unavailable: 0,
            progress_deadline_seconds: Some(600),
            generation: 2,
        }
    }

    fn st(updated: i64, replicas: i64, available: i64) -> Value {
        json!({"observedGeneration": 2, "updatedReplicas": updated, "replicas": replicas,
               "readyReplicas": available, "availableReplicas": available})
    }

    #[test]
    fn progressing_then_complete_then_quiet() {
        let mut conds = vec![condition(
            PROGRESSING,
            "True",
            REASON_NEW_RS_CREATED,
            "Created new replica set \"web-abc\"",
            "2026-11-28T09:59:00Z",
        )];
        let next = progress(&rollout(), &st(0, 3, 3), &st(1, 4, 3), &mut conds, now());
        assert_eq!(next, Some("2026-11-28T10:10:00Z".parse().unwrap()));
        let p = get(&conds, PROGRESSING).unwrap();
        assert_eq!(p["reason"], REASON_RS_UPDATED);
        assert_eq!(p["message"], "ReplicaSet \"web-abc\" is progressing.");
        assert_eq!(p["lastTransitionTime"], "2026-11-28T09:59:00Z");
        assert_eq!(get(&conds, AVAILABLE).unwrap()["status"], "True");

        progress(&rollout(), &st(1, 4, 3), &st(3, 3, 3), &mut conds, now());
        let p = get(&conds, PROGRESSING).unwrap();
        assert_eq!(p["reason"], REASON_NEW_RS_AVAILABLE);
        assert_eq!(
            p["message"],
            "ReplicaSet \"web-abc\" has successfully progressed."
        );
        let settled = conds.clone();
        let later: jiff::Timestamp = "2026-11-28T11:00:00Z".parse().unwrap();
        assert_eq!(
            progress(&rollout(), &st(3, 3, 3), &st(3, 3, 3), &mut conds, later),
            None
        );
        assert_eq!(conds, settled, "a converged status is not rewritten");
    }

    #[test]
    fn no_progress_past_the_deadline_times_out() {
        let mut conds = vec![condition(
            PROGRESSING,
            "True",
            REASON_RS_UPDATED,
            "x",
            "2026-11-28T09:00:00Z",
        )];
        progress(&rollout(), &st(1, 4, 2), &st(1, 4, 2), &mut conds, now());
        let p = get(&conds, PROGRESSING).unwrap();
        assert_eq!(
            (p["status"].as_str(), p["reason"].as_str()),
            (Some("False"), Some(REASON_TIMED_OUT))
        );
        assert_eq!(
            get(&conds, AVAILABLE).unwrap()["reason"],
            "MinimumReplicasUnavailable"
        );
    }
}
