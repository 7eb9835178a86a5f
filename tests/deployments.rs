//! Deployments as users drive them: the installed `kubectl` against a lab, with the lab's own
//! controllers (Deployment, ReplicaSet, garbage collector) and node agents doing the work.

use proxylab_test_support::lab::Lab;
use proxylab_test_support::require_tool;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");

fn json(lab: &Lab, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&lab.kubectl(&all)).expect("kubectl -o json")
}

/// `(image, spec.replicas, revision)` of each ReplicaSet of the Deployment, sorted by revision.
fn replicasets(lab: &Lab, app: &str) -> Vec<(String, i64, i64)> {
    let list = json(lab, &["get", "rs", "-l", &format!("app={app}")]);
    let mut out: Vec<(String, i64, i64)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            (
                rs["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                rs["spec"]["replicas"].as_i64().unwrap(),
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            )
        })
        .collect();
    out.sort_by_key(|r| r.2);
    out
}

/// Running, non-terminating Pods of the app.
fn running_pods(lab: &Lab, app: &str) -> Vec<Value> {
    json(lab, &["get", "pods", "-l", &format!("app={app}")])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running"
        })
        .cloned()
        .collect()
}

#[test]
fn create_scale_set_image_undo_restart_and_delete() {
    if !require_tool("kubectl") {
        return;
    }
    let lab = Lab::start(BIN);
    lab.kubectl(&[
        "create",
        "deployment",
        "web2",
        "--image=proxylab/echo-http:1",
        "--replicas=3",
    ]);
    let status = lab.kubectl(&["rollout", "status", "deployment/web2", "--timeout=60s"]);
    assert!(
        status.contains("\"web2\" successfully rolled out"),
        "{status}"
    );

    // One ReplicaSet named <deployment>-<pod-template-hash>, owning 3 ready Pods named after it.
    let rs = json(&lab, &["get", "rs", "-l", "app=web2"])["items"][0].clone();
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    let rs_name = rs["metadata"]["name"].as_str().unwrap();
    assert_eq!(rs_name, format!("web2-{hash}"));
    let owner = &rs["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["controller"].as_bool()),
        (Some("Deployment"), Some(true))
    );
    let pods = running_pods(&lab, "web2");
    assert_eq!(pods.len(), 3);
    for p in &pods {
        let name = p["metadata"]["name"].as_str().unwrap();
        let suffix = name
            .strip_prefix(&format!("{rs_name}-"))
            .expect("named after the set");
        assert_eq!(suffix.len(), 5, "{name}");
        assert_eq!(p["metadata"]["ownerReferences"][0]["name"], rs_name);
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash);
    }
    let table = lab.kubectl(&["get", "deployment", "web2"]);
    assert!(table.lines().nth(1).unwrap().contains("3/3"), "{table}");

    // kubectl scale: the same ReplicaSet grows.
    lab.kubectl(&["scale", "deployment/web2", "--replicas=4"]);
    lab.kubectl(&["rollout", "status", "deployment/web2", "--timeout=60s"]);
    assert_eq!(
        replicasets(&lab, "web2"),
        [("proxylab/echo-http:1".into(), 4, 1)]
    );
    lab.eventually("4 running pods", || running_pods(&lab, "web2").len() == 4);

    // kubectl set image: a second revision takes over.
    lab.kubectl(&[
        "set",
        "image",
        "deployment/web2",
        "echo-http=proxylab/echo-http:2",
    ]);
    lab.kubectl(&[
        "annotate",
        "deployment/web2",
        "kubernetes.io/change-cause=image 2",
    ]);
    lab.kubectl(&["rollout", "status", "deployment/web2", "--timeout=60s"]);
    assert_eq!(
        replicasets(&lab, "web2"),
        [
            ("proxylab/echo-http:1".into(), 0, 1),
            ("proxylab/echo-http:2".into(), 4, 2)
        ]
    );
    let history = lab.kubectl(&["rollout", "history", "deployment/web2"]);
    assert!(
        history.contains("REVISION") && history.contains("image 2"),
        "{history}"
    );

    // kubectl rollout undo: revision 1's ReplicaSet comes back as revision 3; no new set.
    lab.kubectl(&["rollout", "undo", "deployment/web2"]);
    lab.kubectl(&["rollout", "status", "deployment/web2", "--timeout=60s"]);
    assert_eq!(
        replicasets(&lab, "web2"),
        [
            ("proxylab/echo-http:2".into(), 0, 2),
            ("proxylab/echo-http:1".into(), 4, 3)
        ]
    );
    let dep = json(&lab, &["get", "deployment", "web2"]);
    assert_eq!(
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let conditions = dep["status"]["conditions"].as_array().unwrap();
    let progressing = conditions
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap();
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");
    let available = conditions
        .iter()
        .find(|c| c["type"] == "Available")
        .unwrap();
    assert_eq!(available["status"], "True");

    // kubectl rollout restart: a new template annotation, so a new revision.
    lab.kubectl(&["rollout", "restart", "deployment/web2"]);
    lab.kubectl(&["rollout", "status", "deployment/web2", "--timeout=60s"]);
    let sets = replicasets(&lab, "web2");
    assert_eq!(sets.len(), 3, "{sets:?}");
    assert_eq!(sets[2], ("proxylab/echo-http:1".into(), 4, 4));
    let describe = lab.kubectl(&["describe", "deployment", "web2"]);
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");

    // Deleting the Deployment (background cascade) removes its ReplicaSets and their Pods.
    lab.kubectl(&["delete", "deployment", "web2"]);
    lab.eventually("replicasets collected", || {
        replicasets(&lab, "web2").is_empty()
    });
    lab.eventually("pods collected", || {
        json(&lab, &["get", "pods", "-l", "app=web2"])["items"]
            .as_array()
            .unwrap()
            .is_empty()
    });
}

#[test]
fn cascade_orphan_keeps_the_replicasets_and_recreate_stops_before_starting() {
    if !require_tool("kubectl") {
        return;
    }
    let lab = Lab::start(BIN);
    lab.kubectl(&[
        "create",
        "deployment",
        "rec",
        "--image=proxylab/echo-http:1",
        "--replicas=2",
    ]);
    lab.kubectl(&[
        "patch",
        "deployment/rec",
        "-p",
        r#"{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}"#,
    ]);
    lab.kubectl(&["rollout", "status", "deployment/rec", "--timeout=60s"]);
    let old: Vec<String> = running_pods(&lab, "rec")
        .iter()
        .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
        .collect();
    lab.kubectl(&[
        "set",
        "image",
        "deployment/rec",
        "echo-http=proxylab/echo-http:2",
    ]);
    lab.kubectl(&["rollout", "status", "deployment/rec", "--timeout=60s"]);
    // Recreate: none of the old Pods is left (the controller's unit tests check the order).
    assert_eq!(
        replicasets(&lab, "rec"),
        [
            ("proxylab/echo-http:1".into(), 0, 1),
            ("proxylab/echo-http:2".into(), 2, 2)
        ]
    );
    let pods = json(&lab, &["get", "pods", "-l", "app=rec"]);
    assert!(
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| !old.contains(&p["metadata"]["uid"].as_str().unwrap().to_string())),
        "old pods remain: {pods}"
    );

    lab.kubectl(&["delete", "deployment", "rec", "--cascade=orphan"]);
    lab.eventually("deployment gone", || {
        json(&lab, &["get", "deployments"])["items"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    let sets = json(&lab, &["get", "rs", "-l", "app=rec"]);
    let items = sets["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{sets}");
    assert!(
        items
            .iter()
            .all(|rs| rs["metadata"]["ownerReferences"].is_null()),
        "{sets}"
    );
    assert_eq!(running_pods(&lab, "rec").len(), 2);
}

const ROLL: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: roll, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: roll}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: roll}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: echo
          image: proxylab/echo-http:1
          ports: [{name: http, containerPort: 8080}]
          # Keep serving while the endpoint removal reaches every forwarder.
          lifecycle: {preStop: {sleep: {seconds: 2}}}
---
apiVersion: v1
kind: Service
metadata: {name: roll, namespace: default}
spec:
  selector: {app: roll}
  ports: [{name: http, port: 80, targetPort: http}]
"#;

/// The headline: two rollouts while a client keeps hitting the Service's ClusterIP through the
/// forwarder, one new connection per request — and no request fails. It holds because a Pod
/// being replaced leaves the Service's endpoints first (Ready=False, terminating) and keeps
/// serving through its preStop sleep; only then does its node agent stop it.
#[test]
fn rolling_a_deployment_behind_a_service_fails_no_request() {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use proxylab_test_support::http::try_http_get_blocking;

    if !require_tool("kubectl") {
        return;
    }
    let lab = Lab::start(BIN);
    lab.kubectl_stdin(&["apply", "-f", "-"], ROLL);
    lab.kubectl(&["rollout", "status", "deployment/roll", "--timeout=60s"]);
    let ip = lab.kubectl(&["get", "svc", "roll", "-o", "jsonpath={.spec.clusterIP}"]);
    let addr: std::net::SocketAddr = format!("{}:80", ip.trim()).parse().unwrap();
    lab.eventually("the service answers", || {
        try_http_get_blocking(addr, "/hostname").is_ok_and(|r| r.status == 200)
    });
    let first: BTreeSet<String> = running_pods(&lab, "roll")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();

    // The forwarders' hop records of this Service: a dial the forwarder had to retry (a Pod
    // stopped before its endpoint was gone) shows there even when the retry hid it from the
    // client. Polled every 50 requests, so the bounded ring never drops one unseen.
    let admins: Vec<std::net::SocketAddr> = lab.info["admin"]["forwarders"]
        .as_object()
        .unwrap()
        .values()
        .map(|u| {
            u.as_str()
                .unwrap()
                .trim_start_matches("http://")
                .parse()
                .unwrap()
        })
        .collect();
    let hops = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
    let poll_hops = {
        let hops = hops.clone();
        move || {
            for admin in &admins {
                let Ok(reply) = try_http_get_blocking(*admin, "/debug/hops?proxy=forwarder") else {
                    continue;
                };
                let list: Vec<Value> = serde_json::from_str(&reply.body).unwrap_or_default();
                for h in list
                    .into_iter()
                    .filter(|h| h["listener"] == addr.to_string())
                {
                    let key = format!("{} {} {}", h["instance"], h["client"], h["time"]);
                    hops.lock().unwrap().insert(key, h);
                }
            }
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(BTreeSet::new()));
    let client = {
        let (stop, answered) = (stop.clone(), answered.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failures) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                if (ok + failures.len() as u64).is_multiple_of(50) {
                    poll_hops();
                }
                match try_http_get_blocking(addr, "/hostname") {
                    Ok(r) if r.status == 200 => {
                        ok += 1;
                        answered.lock().unwrap().insert(r.body.trim().to_string());
                    }
                    Ok(r) => failures.push(format!("status {}: {}", r.status, r.head)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            poll_hops();
            (ok, failures)
        })
    };

    lab.kubectl(&[
        "set",
        "image",
        "deployment/roll",
        "echo=proxylab/echo-http:2",
    ]);
    lab.kubectl(&["rollout", "status", "deployment/roll", "--timeout=60s"]);
    lab.kubectl(&["rollout", "restart", "deployment/roll"]);
    lab.kubectl(&["rollout", "status", "deployment/roll", "--timeout=60s"]);
    // Until every replaced Pod has finished its preStop and is gone, the client keeps going.
    lab.eventually("replaced pods gone", || {
        json(&lab, &["get", "pods", "-l", "app=roll"])["items"]
            .as_array()
            .unwrap()
            .len()
            == 3
    });
    let last: BTreeSet<String> = running_pods(&lab, "roll")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    // The new Pods answer too, so the traffic did cross both rollouts.
    lab.eventually("the last revision answers", || {
        last.iter().all(|p| answered.lock().unwrap().contains(p))
    });
    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = client.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        ok + failures.len() as u64
    );
    let hops = hops.lock().unwrap();
    let retried: Vec<&Value> = hops
        .values()
        .filter(|h| {
            h["outcome"] != "ok"
                || h["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("failed dial"))
        })
        .collect();
    assert!(
        !hops.is_empty(),
        "the forwarders recorded the client's connections"
    );
    assert!(
        retried.is_empty(),
        "{} of {} connections met a stopped Pod: {retried:#?}",
        retried.len(),
        hops.len()
    );
    let answered = answered.lock().unwrap();
    assert!(
        first.iter().any(|p| answered.contains(p)),
        "the first Pods answered: {answered:?}"
    );
    assert!(first.is_disjoint(&last));
    println!(
        "{ok} requests, none failed, {} forwarder hops without a retried dial, answered by {} pods",
        hops.len(),
        answered.len()
    );
}

/// `kubectl apply` of a Deployment, then of a changed one: kubectl fetches `/openapi/v2` in
/// protobuf to compute its patch (the lab answers it, no 406), and the change rolls out.
#[test]
fn apply_and_reapply_a_deployment() {
    if !require_tool("kubectl") {
        return;
    }
    let lab = Lab::start(BIN);
    let manifest = |image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: ap}}\nspec:\n  replicas: 2\n  \
             selector: {{matchLabels: {{app: ap}}}}\n  template:\n    metadata: {{labels: {{app: ap}}}}\n    \
             spec:\n      containers: [{{name: echo, image: \"{image}\"}}]\n"
        )
    };
    lab.kubectl_stdin(&["apply", "-f", "-"], &manifest("proxylab/echo-http:1"));
    lab.kubectl(&["rollout", "status", "deployment/ap", "--timeout=60s"]);
    let out = lab
        .kubectl_cmd()
        .args(["apply", "-f", "-", "-v=6"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(manifest("proxylab/echo-http:2").as_bytes())?;
            c.wait_with_output()
        })
        .expect("kubectl apply");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("configured"),
        "{stdout}\n{log}"
    );
    let v2 = log
        .lines()
        .find(|l| l.contains("/openapi/v2"))
        .unwrap_or_else(|| panic!("kubectl did not ask /openapi/v2:\n{log}"));
    assert!(v2.contains("200"), "{v2}");
    lab.kubectl(&["rollout", "status", "deployment/ap", "--timeout=60s"]);
    assert_eq!(
        replicasets(&lab, "ap"),
        [
            ("proxylab/echo-http:1".into(), 0, 1),
            ("proxylab/echo-http:2".into(), 2, 2)
        ]
    );
}

/// An image the nodes cannot run: the new Pod never gets ready, the old ones keep serving, and
/// once `progressDeadlineSeconds` passes without progress `kubectl rollout status` gives up.
#[test]
fn a_stuck_rollout_keeps_the_old_pods_and_exceeds_its_deadline() {
    if !require_tool("kubectl") {
        return;
    }
    let lab = Lab::start(BIN);
    lab.kubectl(&[
        "create",
        "deployment",
        "stuck",
        "--image=proxylab/echo-http:1",
        "--replicas=2",
    ]);
    lab.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"]);
    lab.kubectl(&[
        "patch",
        "deployment/stuck",
        "-p",
        r#"{"spec":{"progressDeadlineSeconds":2}}"#,
    ]);
    lab.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"]);
    lab.kubectl(&["set", "image", "deployment/stuck", "echo-http=nginx:1.27"]);
    let out = lab
        .kubectl_cmd()
        .args(["rollout", "status", "deployment/stuck", "--timeout=60s"])
        .output()
        .expect("kubectl rollout status");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rollout status should fail");
    assert!(
        stderr.contains("exceeded its progress deadline"),
        "{stderr}"
    );
    // maxUnavailable 25% of 2 rounds down to 0: both old Pods still serve.
    assert_eq!(
        replicasets(&lab, "stuck"),
        [
            ("proxylab/echo-http:1".into(), 2, 1),
            ("nginx:1.27".into(), 1, 2)
        ]
    );
    let dep = json(&lab, &["get", "deployment", "stuck"]);
    let conditions = dep["status"]["conditions"].as_array().unwrap();
    let progressing = conditions
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap();
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");
}

/// `kubectl rollout pause`: template changes wait; `resume` rolls them out in one go.
#[test]
fn pause_holds_template_changes_until_resume() {
    if !require_tool("kubectl") {
        return;
    }
    let lab = Lab::start(BIN);
    lab.kubectl(&[
        "create",
        "deployment",
        "pz",
        "--image=proxylab/echo-http:1",
        "--replicas=2",
    ]);
    lab.kubectl(&["rollout", "status", "deployment/pz", "--timeout=60s"]);
    lab.kubectl(&["rollout", "pause", "deployment/pz"]);
    lab.kubectl(&[
        "set",
        "image",
        "deployment/pz",
        "echo-http=proxylab/echo-http:2",
    ]);
    lab.eventually("the pause is reported", || {
        let dep = json(&lab, &["get", "deployment", "pz"]);
        dep["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "DeploymentPaused")
            && dep["status"]["observedGeneration"] == dep["metadata"]["generation"]
    });
    assert_eq!(
        replicasets(&lab, "pz"),
        [("proxylab/echo-http:1".into(), 2, 1)]
    );
    lab.kubectl(&["rollout", "resume", "deployment/pz"]);
    lab.kubectl(&["rollout", "status", "deployment/pz", "--timeout=60s"]);
    assert_eq!(
        replicasets(&lab, "pz"),
        [
            ("proxylab/echo-http:1".into(), 0, 1),
            ("proxylab/echo-http:2".into(), 2, 2)
        ]
    );
}
