use super::*;

fn now() -> jiff::Timestamp {
    "2026-11-28T10:00:00Z".parse().unwrap()
}

fn job(completions: Option<i64>, parallelism: i64) -> Value {
    let mut j = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": "uid-job",
                     "resourceVersion": "3", "generation": 1},
        "spec": {"parallelism": parallelism, "backoffLimit": 1, "completionMode": "NonIndexed",
                 "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "uid-job"}},
                 "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "uid-job"}},
                              "spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "c", "image": "busybox"}]}}},
        "status": {}});
    if let Some(c) = completions {
        j["spec"]["completions"] = json!(c);
    }
    j
}

fn pod(name: &str, phase: &str, finished: Option<&str>) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "resourceVersion": "4", "creationTimestamp": "2026-11-28T09:59:00Z",
                     "labels": {"batch.kubernetes.io/controller-uid": "uid-job"},
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                         "name": "pi", "uid": "uid-job", "controller": true}]},
        "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 30},
        "status": {"phase": phase}});
    if let Some(t) = finished {
        p["status"]["containerStatuses"] =
            json!([{"name": "c", "restartCount": 0, "state": {"terminated": {"finishedAt": t}}}]);
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

fn created(out: &Outcome) -> Vec<&Value> {
    out.actions
        .iter()
        .filter(|a| a.verb() == "create" && a.target().resource == resources::PODS)
        .filter_map(Action::object)
        .collect()
}

fn status(out: &Outcome) -> Option<&Value> {
    out.actions
        .iter()
        .find(|a| a.target().resource == resources::JOBS && a.verb() == "update")
        .and_then(Action::object)
        .map(|j| &j["status"])
}

fn converged(j: &Value, out: &Outcome) -> Value {
    let mut j = j.clone();
    j["status"] = status(out).cloned().unwrap_or(json!({}));
    j
}

#[test]
fn starts_parallelism_pods_owned_by_the_job() {
    let j = job(Some(3), 2);
    let out = reconcile(std::slice::from_ref(&j), &[], now(), &mut counter());
    let pods = created(&out);
    assert_eq!(pods.len(), 2);
    assert_eq!(pods[0]["metadata"]["name"], "pi-x1");
    assert_eq!(pods[0]["metadata"]["generateName"], "pi-");
    assert_eq!(pods[0]["metadata"]["ownerReferences"][0]["kind"], "Job");
    assert_eq!(pods[0]["metadata"]["ownerReferences"][0]["uid"], "uid-job");
    assert_eq!(pods[0]["spec"]["restartPolicy"], "Never");
    assert!(pods[0]["spec"].get("hostname").is_none());
    assert_eq!(
        status(&out).unwrap(),
        &json!({"startTime": "2026-11-28T10:00:00Z"})
    );
}

#[test]
fn completions_three_at_parallelism_two_complete() {
    let j = job(Some(3), 2);
    // One done, one running: one more is started (2 active, never more than the 2 missing).
    let pods = [
        pod("a", "Succeeded", Some("2026-11-28T09:59:30Z")),
        pod("b", "Running", None),
    ];
    let out = reconcile(std::slice::from_ref(&j), &pods, now(), &mut counter());
    assert_eq!(created(&out).len(), 1);
    assert_eq!(status(&out).unwrap()["succeeded"], 1);
    assert_eq!(status(&out).unwrap()["active"], 1);
    // Two done, one running: nothing to start.
    let pods = [
        pod("a", "Succeeded", None),
        pod("b", "Succeeded", None),
        pod("c", "Running", None),
    ];
    let out = reconcile(std::slice::from_ref(&j), &pods, now(), &mut counter());
    assert!(created(&out).is_empty());
    // Three done: Complete, with a completion time and an Event.
    let pods = [
        pod("a", "Succeeded", None),
        pod("b", "Succeeded", None),
        pod("c", "Succeeded", None),
    ];
    let out = reconcile(std::slice::from_ref(&j), &pods, now(), &mut counter());
    assert!(created(&out).is_empty());
    let st = status(&out).unwrap();
    assert_eq!(st["succeeded"], 3);
    assert_eq!(st["completionTime"], "2026-11-28T10:00:00Z");
    assert_eq!(st["conditions"][0]["type"], "Complete");
    assert_eq!(st["conditions"][0]["status"], "True");
    assert!(
        out.actions
            .iter()
            .any(|a| a.object().is_some_and(|o| o["reason"] == "Completed"))
    );
    // A finished Job writes nothing more.
    let done = converged(&j, &out);
    assert!(
        reconcile(&[done], &pods, now(), &mut counter())
            .actions
            .is_empty()
    );
}

#[test]
fn a_running_job_converges() {
    let j = job(Some(3), 2);
    let pods = [pod("a", "Running", None), pod("b", "Running", None)];
    let out = reconcile(std::slice::from_ref(&j), &pods, now(), &mut counter());
    assert!(created(&out).is_empty());
    let again = converged(&j, &out);
    assert!(
        reconcile(&[again], &pods, now(), &mut counter())
            .actions
            .is_empty()
    );
}

#[test]
fn failures_back_off_then_exceed_the_limit() {
    let j = job(Some(1), 1);
    let failed_at = "2026-11-28T09:59:55Z";
    let pods = [pod("a", "Failed", Some(failed_at))];
    // One failure (backoffLimit 1): a replacement, but only 10 s after the failure.
    let out = reconcile(std::slice::from_ref(&j), &pods, now(), &mut counter());
    assert!(created(&out).is_empty());
    assert_eq!(
        out.next_check,
        Some("2026-11-28T10:00:05Z".parse().unwrap())
    );
    assert_eq!(status(&out).unwrap()["failed"], 1);
    let later: jiff::Timestamp = "2026-11-28T10:00:06Z".parse().unwrap();
    let out = reconcile(std::slice::from_ref(&j), &pods, later, &mut counter());
    assert_eq!(created(&out).len(), 1);
    // A second failure: over the limit. The Job fails and stops what still runs.
    let pods = [
        pod("a", "Failed", Some(failed_at)),
        pod("b", "Failed", Some("2026-11-28T10:00:10Z")),
        pod("c", "Running", None),
    ];
    let out = reconcile(std::slice::from_ref(&j), &pods, now(), &mut counter());
    assert!(created(&out).is_empty());
    let st = status(&out).unwrap();
    assert_eq!(st["failed"], 2);
    assert_eq!(st["conditions"][0]["type"], "Failed");
    assert_eq!(st["conditions"][0]["reason"], "BackoffLimitExceeded");
    assert!(st.get("completionTime").is_none());
    assert!(st.get("active").is_none());
    let deleted: Vec<&str> = out
        .actions
        .iter()
        .filter(|a| a.target().resource == resources::PODS)
        .map(|a| a.target().name.as_str())
        .collect();
    assert_eq!(deleted, ["c"]);
}

#[test]
fn on_failure_restarts_count_towards_the_limit() {
    let mut j = job(Some(1), 1);
    j["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    let mut p = pod("a", "Running", None);
    p["status"]["containerStatuses"] = json!([{"name": "c", "restartCount": 2}]);
    let out = reconcile(&[j], &[p], now(), &mut counter());
    assert_eq!(
        status(&out).unwrap()["conditions"][0]["reason"],
        "BackoffLimitExceeded"
    );
}

#[test]
fn the_active_deadline_fails_the_job() {
    let mut j = job(Some(1), 1);
    j["spec"]["activeDeadlineSeconds"] = json!(30);
    j["status"]["startTime"] = json!("2026-11-28T09:59:50Z");
    let pods = [pod("a", "Running", None)];
    let out = reconcile(std::slice::from_ref(&j), &pods, now(), &mut counter());
    assert_eq!(
        out.next_check,
        Some("2026-11-28T10:00:20Z".parse().unwrap())
    );
    let late: jiff::Timestamp = "2026-11-28T10:00:21Z".parse().unwrap();
    let out = reconcile(&[j], &pods, late, &mut counter());
    assert_eq!(
        status(&out).unwrap()["conditions"][0]["reason"],
        "DeadlineExceeded"
    );
}

#[test]
fn indexed_pods_carry_their_index() {
    let mut j = job(Some(3), 2);
    j["spec"]["completionMode"] = json!("Indexed");
    let mut done = pod("pi-0-a", "Succeeded", None);
    done["metadata"]["annotations"] = json!({COMPLETION_INDEX: "0"});
    let out = reconcile(std::slice::from_ref(&j), &[done], now(), &mut counter());
    let pods = created(&out);
    let names: Vec<&str> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pi-1-x1", "pi-2-x2"]);
    let p = pods[0];
    assert_eq!(p["metadata"]["annotations"][COMPLETION_INDEX], "1");
    assert_eq!(p["metadata"]["labels"][COMPLETION_INDEX], "1");
    assert_eq!(p["spec"]["hostname"], "pi-1");
    assert_eq!(
        p["spec"]["containers"][0]["env"][0],
        json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"apiVersion": "v1",
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}})
    );
    assert_eq!(status(&out).unwrap()["completedIndexes"], "0");
}

#[test]
fn a_work_queue_completes_when_one_succeeded_and_none_runs() {
    let j = job(None, 2);
    let out = reconcile(std::slice::from_ref(&j), &[], now(), &mut counter());
    assert_eq!(created(&out).len(), 2);
    let pods = [pod("a", "Succeeded", None), pod("b", "Running", None)];
    let out = reconcile(std::slice::from_ref(&j), &pods, now(), &mut counter());
    assert!(created(&out).is_empty());
    assert!(status(&out).unwrap().get("conditions").is_none());
    let pods = [pod("a", "Succeeded", None), pod("b", "Succeeded", None)];
    let out = reconcile(&[j], &pods, now(), &mut counter());
    assert_eq!(status(&out).unwrap()["conditions"][0]["type"], "Complete");
}

#[test]
fn suspended_jobs_run_nothing() {
    let mut j = job(Some(2), 2);
    j["spec"]["suspend"] = json!(true);
    let pods = [pod("a", "Running", None)];
    let out = reconcile(&[j], &pods, now(), &mut counter());
    assert!(created(&out).is_empty());
    assert!(
        out.actions
            .iter()
            .any(|a| a.target().name == "a" && a.target().resource == resources::PODS)
    );
    assert_eq!(status(&out).unwrap()["conditions"][0]["type"], "Suspended");
}

#[test]
fn finished_jobs_are_deleted_after_their_ttl() {
    let mut j = job(Some(1), 1);
    j["spec"]["ttlSecondsAfterFinished"] = json!(60);
    j["status"] = json!({"completionTime": "2026-11-28T09:59:30Z",
        "conditions": [{"type": "Complete", "status": "True"}]});
    let out = reconcile(std::slice::from_ref(&j), &[], now(), &mut counter());
    assert!(out.actions.is_empty());
    assert_eq!(
        out.next_check,
        Some("2026-11-28T10:00:30Z".parse().unwrap())
    );
    let late: jiff::Timestamp = "2026-11-28T10:00:30Z".parse().unwrap();
    let out = reconcile(&[j], &[], late, &mut counter());
    assert_eq!(out.actions.len(), 1);
    assert_eq!(out.actions[0].verb(), "delete");
    assert_eq!(out.actions[0].target().resource, resources::JOBS);
}

#[test]
fn indexes_format_as_ranges() {
    let set: BTreeSet<i64> = [0, 1, 2, 4, 6, 7].into_iter().collect();
    assert_eq!(format_indexes(&set), "0-2,4,6-7");
    assert_eq!(format_indexes(&BTreeSet::new()), "");
}
