//! Containers that end: running a `busybox` container's program and reporting how it ended.
//!
//! An echo container serves until its Pod is deleted; a `busybox` container runs its `command` +
//! `args` (in the node's built-in shell, output into the container log) and exits with a code.
//! What happens next is the kubelet's `restartPolicy` logic:
//!
//! | `restartPolicy` | exit 0 | exit ≠ 0 |
//! |---|---|---|
//! | `Always` (the Pod default) | restarted | restarted |
//! | `OnFailure` | stays `terminated` (reason `Completed`) | restarted, `restartCount` + 1 |
//! | `Never` (what Jobs use) | stays `terminated` (`Completed`) | stays `terminated` (reason `Error`) |
//!
//! A restart waits the kubelet's crash-loop back-off (10 s, doubled per restart, at most 5 min),
//! during which the container is `waiting` with reason `CrashLoopBackOff` and its last run is in
//! `lastState`. The Pod's phase follows its containers: once every container has terminated for
//! good it is `Succeeded` when all exited 0, else `Failed` — the phase the Job controller counts.
//! Until then it is `Running`, not Ready while a container is not running. A finished Pod gives its
//! IP back to the node's pod CIDR at once, as a kubelet tears its sandbox down; its logs stay until
//! the Pod is deleted.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::objects::k8s_time;
use super::pods::{PodApi, PodIp, patch_status};
use crate::shell::{self, ShellContext};
use crate::streaming::remotecommand::{ExecStreams, ExitStatus};
use crate::workload::logs::ContainerLog;

/// The first crash-loop back-off (the kubelet's `initialBackOff`).
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest crash-loop back-off (the kubelet's `MaxContainerBackOff`).
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// A Pod's `spec.restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// Parses the field; absent or unknown is `Always`, the Pod default.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("OnFailure") => Self::OnFailure,
            Some("Never") => Self::Never,
            _ => Self::Always,
        }
    }

    /// Whether a container that exited with `code` is started again.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => code != 0,
            Self::Never => false,
        }
    }
}

/// The crash-loop back-off before restart number `restarts + 1`.
pub fn backoff(restarts: u32) -> Duration {
    BACKOFF_INITIAL
        .checked_mul(1 << restarts.min(16))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX)
}

/// How one run of a program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub started: Timestamp,
    pub finished: Timestamp,
}

fn terminated(status: &Value, exit: Exit) -> Value {
    json!({"terminated": {
        "exitCode": exit.code,
        "reason": if exit.code == 0 { "Completed" } else { "Error" },
        "startedAt": k8s_time(exit.started),
        "finishedAt": k8s_time(exit.finished),
        "containerID": status["containerID"],
    }})
}

/// The containerStatus after a run ended: `terminated` for good, or `waiting` in back-off with
/// the run in `lastState` when it will be restarted.
pub fn after_exit(status: &Value, exit: Exit, restart_in: Option<Duration>) -> Value {
    let mut s = status.clone();
    s["ready"] = json!(false);
    s["started"] = json!(false);
    match restart_in {
        None => s["state"] = terminated(status, exit),
        Some(delay) => {
            s["lastState"] = terminated(status, exit);
            s["state"] = json!({"waiting": {
                "reason": "CrashLoopBackOff",
                "message": format!("back-off {}s restarting failed container={}",
                    delay.as_secs(), status["name"].as_str().unwrap_or("")),
            }});
        }
    }
    s
}

/// The containerStatus when a restart begins.
pub fn restarted(status: &Value, now: Timestamp) -> Value {
    let mut s = status.clone();
    s["ready"] = json!(true);
    s["started"] = json!(true);
    s["restartCount"] = json!(s["restartCount"].as_i64().unwrap_or(0) + 1);
    s["state"] = json!({"running": {"startedAt": k8s_time(now)}});
    s
}

/// The kubelet's `getPhase` for containers that have all started: `Succeeded` / `Failed` once
/// every one has terminated for good, else `Running`.
pub fn phase(statuses: &[Value]) -> &'static str {
    let codes: Option<Vec<i64>> = statuses
        .iter()
        .map(|s| s["state"]["terminated"]["exitCode"].as_i64())
        .collect();
    match codes {
        Some(codes) if codes.iter().all(|c| *c == 0) => "Succeeded",
        Some(_) => "Failed",
        None => "Running",
    }
}

/// The status patch for the containers as they are now: phase, readiness conditions (the others
/// kept from `conditions`) and every containerStatus.
pub fn status_patch(statuses: &[Value], conditions: &[Value], now: Timestamp) -> Value {
    let phase = phase(statuses);
    let now_s = k8s_time(now);
    let not_ready: Vec<&str> = statuses
        .iter()
        .filter(|s| s["ready"] != json!(true))
        .filter_map(|s| s["name"].as_str())
        .collect();
    let mut out: Vec<Value> = conditions
        .iter()
        .filter(|c| c["type"] != "Ready" && c["type"] != "ContainersReady")
        .cloned()
        .collect();
    for kind in ["Ready", "ContainersReady"] {
        out.push(if phase != "Running" {
            json!({"type": kind, "status": "False", "lastProbeTime": null,
                   "lastTransitionTime": now_s, "reason": "PodCompleted"})
        } else if not_ready.is_empty() {
            json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": now_s})
        } else {
            json!({"type": kind, "status": "False", "lastProbeTime": null,
                   "lastTransitionTime": now_s, "reason": "ContainersNotReady",
                   "message": format!("containers with unready status: [{}]", not_ready.join(" "))})
        });
    }
    json!({"status": {"phase": phase, "conditions": out, "containerStatuses": statuses}})
}

/// One Pod's containers that run to completion, and what the agent last reported about them.
pub(crate) struct PodRun {
    pub(crate) api: PodApi,
    pub(crate) name: String,
    pub(crate) policy: RestartPolicy,
    /// Given back when the pod has finished: its containers (all of them programs that ended)
    /// hold no sockets any more.
    pub(crate) ip: PodIp,
    /// The containerStatuses and conditions last reported (held across a patch, so reports of
    /// two containers of one Pod do not overtake each other).
    pub(crate) state: Mutex<(Vec<Value>, Vec<Value>)>,
}

impl PodRun {
    async fn update(&self, index: usize, change: impl FnOnce(&Value) -> Value) {
        let mut state = self.state.lock().await;
        let (statuses, conditions) = &mut *state;
        let Some(current) = statuses.get(index) else {
            return;
        };
        statuses[index] = change(current);
        let patch = status_patch(statuses, conditions, Timestamp::now());
        if let Some(c) = patch["status"]["conditions"].as_array() {
            *conditions = c.clone();
        }
        patch_status(&self.api, &self.name, &patch).await;
        if patch["status"]["phase"] != "Running" {
            self.ip.release();
        }
    }
}

/// Runs `argv` once in the container's shell, its stdout and stderr into the log.
async fn run_once(shell: &Arc<ShellContext>, argv: &[String], log: &ContainerLog) -> i32 {
    // busybox's default command is `sh`, which ends at once without stdin.
    let argv = if argv.is_empty() {
        vec!["sh".to_owned()]
    } else {
        argv.to_vec()
    };
    let streams = ExecStreams {
        stdin: None,
        stdout: Some(Box::new(log.writer())),
        stderr: Some(Box::new(log.writer())),
        resize: None,
        tty: false,
    };
    match shell::exec(shell.clone(), argv, streams).await {
        ExitStatus::Success => 0,
        ExitStatus::Code(code) => code,
        ExitStatus::Error(message) => {
            log.push(message);
            128
        }
    }
}

/// The life of one `busybox` container: run, report, and restart as the policy says, until the
/// program ends for good or the Pod is stopped.
pub(crate) async fn run_container(
    run: Arc<PodRun>,
    index: usize,
    shell: Arc<ShellContext>,
    argv: Vec<String>,
    log: ContainerLog,
    shutdown: CancellationToken,
) {
    let mut restarts = 0u32;
    let mut started = Timestamp::now();
    loop {
        let code = tokio::select! {
            _ = shutdown.cancelled() => return,
            code = run_once(&shell, &argv, &log) => code,
        };
        let exit = Exit {
            code,
            started,
            finished: Timestamp::now(),
        };
        let restart_in = run.policy.restarts(code).then(|| backoff(restarts));
        tracing::info!(pod = %run.name, container = %shell.container, code, restart_in = ?restart_in, "container exited");
        run.update(index, |s| after_exit(s, exit, restart_in)).await;
        let Some(delay) = restart_in else { return };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        restarts += 1;
        started = Timestamp::now();
        run.update(index, |s| restarted(s, started)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn running(name: &str) -> Value {
        json!({"name": name, "image": "busybox", "containerID": format!("proxylab://{name}"),
               "ready": true, "started": true, "restartCount": 0,
               "state": {"running": {"startedAt": "2026-11-28T10:00:00Z"}}})
    }

    fn exit(code: i32) -> Exit {
        Exit {
            code,
            started: ts("2026-11-28T10:00:00Z"),
            finished: ts("2026-11-28T10:00:02Z"),
        }
    }

    #[test]
    fn restart_policies() {
        assert!(RestartPolicy::parse(None).restarts(0));
        assert!(!RestartPolicy::parse(Some("OnFailure")).restarts(0));
        assert!(RestartPolicy::parse(Some("OnFailure")).restarts(2));
        assert!(!RestartPolicy::parse(Some("Never")).restarts(2));
        assert_eq!(backoff(0), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(40));
        assert_eq!(backoff(10), Duration::from_secs(300));
    }

    #[test]
    fn a_clean_exit_completes_the_pod() {
        let done = after_exit(&running("c"), exit(0), None);
        assert_eq!(
            done["state"],
            json!({"terminated": {"exitCode": 0, "reason": "Completed",
                "startedAt": "2026-11-28T10:00:00Z", "finishedAt": "2026-11-28T10:00:02Z",
                "containerID": "proxylab://c"}})
        );
        assert_eq!(done["ready"], false);
        let conditions = [json!({"type": "PodScheduled", "status": "True"})];
        let patch = status_patch(&[done], &conditions, ts("2026-11-28T10:00:03Z"));
        assert_eq!(patch["status"]["phase"], "Succeeded");
        let cs = patch["status"]["conditions"]
            .as_array()
            .expect("conditions");
        assert_eq!(cs[0]["type"], "PodScheduled");
        assert_eq!(cs[1]["type"], "Ready");
        assert_eq!(cs[1]["reason"], "PodCompleted");
    }

    #[test]
    fn one_failed_container_fails_the_pod_once_all_ended() {
        let failed = after_exit(&running("a"), exit(3), None);
        assert_eq!(failed["state"]["terminated"]["reason"], "Error");
        assert_eq!(failed["state"]["terminated"]["exitCode"], 3);
        // The other container still runs: the Pod runs, not ready.
        let patch = status_patch(
            &[failed.clone(), running("b")],
            &[],
            ts("2026-11-28T10:00:03Z"),
        );
        assert_eq!(patch["status"]["phase"], "Running");
        assert_eq!(
            patch["status"]["conditions"][0]["message"],
            "containers with unready status: [a]"
        );
        let ok = after_exit(&running("b"), exit(0), None);
        assert_eq!(phase(&[failed, ok]), "Failed");
    }

    #[test]
    fn a_restart_keeps_the_last_run() {
        let waiting = after_exit(&running("c"), exit(1), Some(Duration::from_secs(10)));
        assert_eq!(waiting["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(waiting["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(phase(std::slice::from_ref(&waiting)), "Running");
        let again = restarted(&waiting, ts("2026-11-28T10:00:12Z"));
        assert_eq!(again["restartCount"], 1);
        assert_eq!(
            again["state"]["running"]["startedAt"],
            "2026-11-28T10:00:12Z"
        );
        assert_eq!(again["lastState"]["terminated"]["exitCode"], 1);
    }
}
