//! `preStop` hooks: what a container does between "you are being deleted" and "stop".
//!
//! When a Pod is deleted, two things start at the same moment and run independently: the
//! kubelet begins stopping the containers, and the endpoint controllers take the Pod out of its
//! Services' endpoints — after which every node's kube-proxy must notice and reprogram. A
//! container that stops at once can still be sent connections by a proxy that has not caught
//! up, and those fail. Kubernetes' answer is the `preStop` hook, run before the container is
//! signalled: a `sleep` there keeps the Pod serving while the endpoint removal spreads
//! (`lifecycle.preStop.sleep.seconds`, or the classic `exec: {command: ["sleep", "5"]}`).
//! The whole termination, hook included, is bounded by the Pod's grace period.
//!
//! The node agent runs the hooks that are sleeps: [`pre_stop_delay`] is the longest sleep any
//! container asks for, capped by the grace period. Other hooks (`exec` of another command,
//! `httpGet`, `tcpSocket`) are not run; [`unsupported_hooks`] names them so the agent can say so
//! in an Event, as a kubelet reports a failed hook.

use std::time::Duration;

use k8s_openapi::api::core::v1::{LifecycleHandler, Pod};

/// Seconds a hook sleeps, if it is a sleep: `sleep: {seconds: N}`, `exec: ["sleep", "N"]` or
/// `exec: ["sh", "-c", "sleep N"]` (any shell path).
fn sleep_seconds(hook: &LifecycleHandler) -> Option<u64> {
    if let Some(sleep) = &hook.sleep {
        return u64::try_from(sleep.seconds).ok();
    }
    let command = hook.exec.as_ref()?.command.as_ref()?;
    let words: Vec<&str> = match command.as_slice() {
        [shell, flag, script] if shell.ends_with("sh") && flag == "-c" => {
            script.split_whitespace().collect()
        }
        other => other.iter().map(String::as_str).collect(),
    };
    match words.as_slice() {
        [sleep, n] if sleep.rsplit('/').next() == Some("sleep") => n.parse().ok(),
        _ => None,
    }
}

fn hooks(pod: &Pod) -> impl Iterator<Item = (&str, &LifecycleHandler)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter_map(|c| {
            let hook = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
            Some((c.name.as_str(), hook))
        })
}

/// How long the Pod keeps serving after it is marked for deletion: the longest `preStop` sleep
/// of its containers (they run in parallel), at most the grace period.
pub fn pre_stop_delay(pod: &Pod) -> Duration {
    let longest = hooks(pod)
        .filter_map(|(_, h)| sleep_seconds(h))
        .max()
        .unwrap_or(0);
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(longest.min(u64::try_from(grace).unwrap_or(0)))
}

/// Containers whose `preStop` hook is not a sleep (and is therefore not run).
pub fn unsupported_hooks(pod: &Pod) -> Vec<String> {
    hooks(pod)
        .filter(|(_, h)| sleep_seconds(h).is_none())
        .map(|(name, _)| name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(lifecycles: serde_json::Value, grace: Option<i64>) -> Pod {
        let containers: Vec<serde_json::Value> = lifecycles
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, l)| json!({"name": format!("c{i}"), "image": "echo-http", "lifecycle": l}))
            .collect();
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"containers": containers}});
        if let Some(g) = grace {
            p["metadata"]["deletionGracePeriodSeconds"] = json!(g);
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn sleeps_in_every_spelling_bounded_by_the_grace_period() {
        let p = pod(
            json!([{"preStop": {"sleep": {"seconds": 3}}},
                   {"preStop": {"exec": {"command": ["sleep", "5"]}}},
                   {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 4"]}}}]),
            None,
        );
        assert_eq!(pre_stop_delay(&p), Duration::from_secs(5));
        assert!(unsupported_hooks(&p).is_empty());
        let p = pod(json!([{"preStop": {"sleep": {"seconds": 60}}}]), Some(2));
        assert_eq!(pre_stop_delay(&p), Duration::from_secs(2));
    }

    #[test]
    fn no_hook_no_delay_and_other_hooks_are_named() {
        assert_eq!(pre_stop_delay(&pod(json!([{}]), None)), Duration::ZERO);
        let p = pod(
            json!([{"preStop": {"exec": {"command": ["nginx", "-s", "quit"]}}},
                   {"preStop": {"httpGet": {"path": "/drain", "port": 8080}}}]),
            None,
        );
        assert_eq!(pre_stop_delay(&p), Duration::ZERO);
        assert_eq!(unsupported_hooks(&p), ["c0", "c1"]);
    }
}
