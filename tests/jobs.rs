//! Jobs as users drive them: the installed `kubectl` against a lab, with the lab's Job controller,
//! garbage collector and node agents (running `busybox` programs to completion) doing the work.

use proxylab_test_support::lab::Lab;
use proxylab_test_support::require_tool;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");

fn json(lab: &Lab, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&lab.kubectl(&all)).expect("kubectl -o json")
}

fn job_pods(lab: &Lab, job: &str) -> Vec<Value> {
    json(lab, &["get", "pods", "-l", &format!("job-name={job}")])["items"]
        .as_array()
        .expect("items")
        .clone()
}

fn second_row(table: &str) -> Vec<String> {
    table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

const INDEXED: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: three
spec:
  completions: 3
  parallelism: 2
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox:1.36
        command: ["sh", "-c", "echo index $JOB_COMPLETION_INDEX on $HOSTNAME; sleep 1; exit 0"]
"#;

#[test]
fn jobs_run_to_completion_show_logs_and_are_deleted_with_their_pods() {
    if !require_tool("kubectl") {
        return;
    }
    let lab = Lab::start(BIN);

    // kubectl create job: one Pod, its output in kubectl logs job/…
    lab.kubectl(&[
        "create",
        "job",
        "hello",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "echo hello from $HOSTNAME; sleep 1; echo bye",
    ]);
    let waited = lab.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/hello",
        "--timeout=60s",
    ]);
    assert!(waited.contains("job.batch/hello condition met"), "{waited}");
    let pod = job_pods(&lab, "hello")[0].clone();
    let pod_name = pod["metadata"]["name"].as_str().expect("name");
    assert_eq!(
        lab.kubectl(&["logs", "job/hello"]),
        format!("hello from {pod_name}\nbye\n")
    );
    assert_eq!(pod["status"]["phase"], "Succeeded");
    let state = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (state["exitCode"].as_i64(), state["reason"].as_str()),
        (Some(0), Some("Completed"))
    );
    let row = second_row(&lab.kubectl(&["get", "jobs", "hello"]));
    assert_eq!(row[..3], ["hello", "Complete", "1/1"], "{row:?}");

    // completions 3 at parallelism 2, Indexed: each index once, JOB_COMPLETION_INDEX in its Pod.
    lab.kubectl_stdin(&["apply", "-f", "-"], INDEXED);
    lab.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/three",
        "--timeout=60s",
    ]);
    let job = json(&lab, &["get", "job", "three"]);
    let status = &job["status"];
    assert_eq!(status["succeeded"], 3, "{status}");
    assert_eq!(status["completedIndexes"], "0-2", "{status}");
    assert!(
        status["failed"].is_null() && status["active"].is_null(),
        "{status}"
    );
    assert!(status["completionTime"].is_string() && status["startTime"].is_string());
    let pods = job_pods(&lab, "three");
    assert_eq!(pods.len(), 3);
    let mut lines: Vec<String> = pods
        .iter()
        .map(|p| {
            assert_eq!(p["status"]["phase"], "Succeeded");
            lab.kubectl(&["logs", p["metadata"]["name"].as_str().expect("name")])
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "index 0 on three-0\n",
            "index 1 on three-1\n",
            "index 2 on three-2\n"
        ]
    );

    // kubectl delete job: the garbage collector removes the Pods with it.
    lab.kubectl(&["delete", "job", "three"]);
    lab.eventually("the job's pods are gone", || {
        job_pods(&lab, "three").is_empty()
    });
    assert_eq!(job_pods(&lab, "hello").len(), 1, "other jobs' pods stay");
}

const FAILING: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: flaky
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox
        command: ["sh", "-c", "echo trying; exit 3"]
"#;

#[test]
fn a_failing_job_retries_then_fails_at_its_backoff_limit() {
    if !require_tool("kubectl") {
        return;
    }
    let lab = Lab::start(BIN);
    lab.kubectl_stdin(&["apply", "-f", "-"], FAILING);
    // Two Pods (the first and one retry after the 10 s back-off), both exit 3: over the limit.
    lab.kubectl(&[
        "wait",
        "--for=condition=failed",
        "job/flaky",
        "--timeout=90s",
    ]);
    let job = json(&lab, &["get", "job", "flaky"]);
    assert_eq!(job["status"]["failed"], 2, "{}", job["status"]);
    let failed = job["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Failed")
        .expect("Failed condition")
        .clone();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    let pods = job_pods(&lab, "flaky");
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Failed");
        let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(
            (t["exitCode"].as_i64(), t["reason"].as_str()),
            (Some(3), Some("Error"))
        );
        let name = p["metadata"]["name"].as_str().expect("name");
        assert_eq!(lab.kubectl(&["logs", name]), "trying\n");
    }
    let row = second_row(&lab.kubectl(&["get", "jobs"]));
    assert_eq!(row[..3], ["flaky", "Failed", "0/1"], "{row:?}");
    let events = lab.kubectl(&[
        "get",
        "events",
        "--field-selector=involvedObject.name=flaky",
    ]);
    assert!(events.contains("BackoffLimitExceeded"), "{events}");
}
