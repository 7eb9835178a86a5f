//! The lab as real clients see it: the installed `kubectl` and `curl`, no extra flags.
//! Each test starts its own lab on its own loopback addresses (see `proxylab_test_support::lab`).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use proxylab_test_support::lab::{Lab, curl};
use proxylab_test_support::require_tool;

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");

/// Starts a long-running command (`kubectl get -w`) and hands its stdout over line by line.
fn spawn_lines(cmd: &mut std::process::Command) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn tools() -> bool {
    require_tool("kubectl") && require_tool("curl")
}

#[test]
fn get_lists_show_the_usual_columns() {
    if !tools() {
        return;
    }
    let lab = Lab::start(BIN);
    let nodes = lab.kubectl(&["get", "nodes"]);
    assert!(nodes.starts_with("NAME"), "{nodes}");
    for col in ["STATUS", "ROLES", "AGE", "VERSION"] {
        assert!(nodes.lines().next().unwrap().contains(col), "{nodes}");
    }
    assert!(
        nodes.contains("node-1") && nodes.contains("Ready"),
        "{nodes}"
    );

    let pods = lab.kubectl(&["get", "pods", "-o", "wide"]);
    let header = pods.lines().next().unwrap();
    for col in ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"] {
        assert!(header.contains(col), "{pods}");
    }
    let web1 = pods
        .lines()
        .find(|l| l.starts_with("web-1 "))
        .expect("web-1 row");
    assert!(web1.contains("1/1") && web1.contains("Running"), "{pods}");
    assert!(web1.contains(&format!("127.{}.30.", lab.octet)), "{pods}");

    let svc = lab.kubectl(&["get", "svc"]);
    let header = svc.lines().next().unwrap();
    for col in ["TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"] {
        assert!(header.contains(col), "{svc}");
    }
    let web = svc
        .lines()
        .find(|l| l.starts_with("web "))
        .expect("web row");
    assert!(
        web.contains("ClusterIP") && web.contains("80/TCP,443/TCP"),
        "{svc}"
    );
    let udp = svc
        .lines()
        .find(|l| l.starts_with("udp-echo "))
        .expect("udp row");
    assert!(udp.contains("53/UDP"), "{svc}");

    let slices = lab.kubectl(&["get", "endpointslices"]);
    assert!(
        slices.lines().next().unwrap().contains("ADDRESSTYPE"),
        "{slices}"
    );
    assert!(slices.lines().any(|l| l.starts_with("web-")), "{slices}");

    // A fresh cluster has no Secrets (no auto-created token Secrets since 1.24); make one.
    lab.kubectl(&[
        "create",
        "secret",
        "generic",
        "db-pass",
        "-n",
        "kube-system",
        "--from-literal=password=s3cret",
    ]);
    let secrets = lab.kubectl(&["get", "secrets", "--all-namespaces"]);
    assert!(secrets.starts_with("NAMESPACE"), "{secrets}");
    let row = secrets
        .lines()
        .find(|l| l.starts_with("kube-system") && l.contains("db-pass"))
        .expect("db-pass row");
    assert!(row.contains("Opaque") && row.contains(" 1 "), "{secrets}");
    let sas = lab.kubectl(&["get", "sa", "-A"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            sas.lines()
                .any(|l| l.starts_with(ns) && l.contains(" default ")),
            "no default SA in {ns}: {sas}"
        );
    }
    let raw = lab.kubectl(&["get", "--raw", "/api"]);
    assert!(raw.contains("\"kind\":\"APIVersions\""), "{raw}");
}

#[test]
fn describe_shows_objects_and_their_events() {
    if !tools() {
        return;
    }
    let lab = Lab::start(BIN);
    let pod = lab.kubectl(&["describe", "pod", "web-1"]);
    assert!(pod.contains("Name:") && pod.contains("web-1"), "{pod}");
    assert!(pod.contains("Node:") && pod.contains("node-"), "{pod}");
    assert!(
        pod.contains("Scheduled"),
        "the scheduler's event is listed:\n{pod}"
    );
    let node = lab.kubectl(&["describe", "node", "node-1"]);
    assert!(node.contains("InternalIP"), "{node}");
    let svc = lab.kubectl(&["describe", "svc", "web"]);
    assert!(svc.contains("Endpoints:") || svc.contains("IP:"), "{svc}");
}

#[test]
fn apply_reapply_and_delete_a_manifest() {
    if !tools() {
        return;
    }
    let lab = Lab::start(BIN);
    let manifest = |value: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  labels: {{app: demo}}\ndata:\n  greeting: {value}\n"
        )
    };
    let out = lab.kubectl_stdin(&["apply", "-f", "-"], &manifest("hello"));
    assert!(out.contains("configmap/demo created"), "{out}");
    let out = lab.kubectl_stdin(&["apply", "-f", "-"], &manifest("bonjour"));
    assert!(out.contains("configmap/demo configured"), "{out}");
    let got = lab.kubectl(&[
        "get",
        "configmap",
        "demo",
        "-o",
        "jsonpath={.data.greeting}",
    ]);
    assert_eq!(got, "bonjour");
    let out = lab.kubectl_stdin(&["apply", "-f", "-"], &manifest("bonjour"));
    assert!(out.contains("configmap/demo unchanged"), "{out}");
    let out = lab.kubectl_stdin(&["delete", "-f", "-"], &manifest("bonjour"));
    assert!(out.contains("configmap \"demo\" deleted"), "{out}");
    let gone = lab
        .kubectl_cmd()
        .args(["get", "configmap", "demo"])
        .output()
        .unwrap();
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"));
}

#[test]
fn get_pods_watch_sees_a_new_pod() {
    if !tools() {
        return;
    }
    let lab = Lab::start(BIN);
    let (mut watch, rx) = spawn_lines(lab.kubectl_cmd().args(["get", "pods", "-w"]));
    // The initial listing arrives first.
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("initial list");
    assert!(first.starts_with("NAME"), "{first}");
    lab.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: watched\nspec:\n  containers:\n  - name: c\n    image: proxylab/echo-tcp:1\n    ports: [{containerPort: 7000}]\n",
    );
    let mut seen = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        if line.starts_with("watched ") {
            seen = true;
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen, "kubectl get pods -w never showed the new pod");
}

/// The "Accessing Clusters" walkthrough from the Kubernetes docs, verbatim in spirit: every command
/// a user pastes, with the real kubectl proxy and then proxylab's own auth-proxy.
#[test]
fn accessing_clusters_walkthrough() {
    if !tools() {
        return;
    }
    let lab = Lab::start(BIN);
    let view = lab.kubectl(&["config", "view"]);
    assert!(view.contains("server: https://"), "{view}");

    // kubectl proxy --port=0, then curl /api/ through it.
    let mut proxy = lab
        .kubectl_cmd()
        .args(["proxy", "--port=0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(proxy.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("Starting to serve on ")
        .unwrap_or_else(|| panic!("unexpected kubectl proxy output {line:?}"))
        .to_string();
    let (ok, body) = curl(&[&format!("http://{addr}/api/")]);
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert!(
        ok && body.contains("\"kind\": \"APIVersions\"")
            || body.contains("\"kind\":\"APIVersions\""),
        "{body}"
    );

    lab.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: default-token\n  annotations:\n    kubernetes.io/service-account.name: default\ntype: kubernetes.io/service-account-token\n",
    );
    // while ! kubectl describe secret default-token | grep -E '^token' >/dev/null; do sleep 1; done
    let describe = lab.eventually("the token controller to fill the secret", || {
        let out = lab.kubectl(&["describe", "secret", "default-token"]);
        out.lines().any(|l| l.starts_with("token")).then_some(out)
    });
    // APISERVER=$(kubectl config view --minify | grep server | cut -f 2- -d ":" | tr -d " ")
    let minify = lab.kubectl(&["config", "view", "--minify"]);
    let apiserver: String = minify
        .lines()
        .find(|l| l.contains("server"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, rest)| rest.replace(' ', ""))
        .expect("server line");
    // TOKEN=$(kubectl describe secret default-token | grep -E '^token' | cut -f2 -d':' | tr -d " ")
    let token: String = describe
        .lines()
        .find(|l| l.starts_with("token"))
        .and_then(|l| l.split(':').nth(1))
        .map(|t| t.replace(' ', ""))
        .expect("token line");
    let auth = format!("Authorization: Bearer {token}");
    let (ok, body) = curl(&[&format!("{apiserver}/api"), "--header", &auth, "--insecure"]);
    assert!(ok && body.contains("APIVersions"), "{body}");

    // The jsonpath variant.
    let apiserver2 = lab.kubectl(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    assert_eq!(apiserver2, apiserver);
    let b64 = lab.kubectl(&[
        "get",
        "secret",
        "default-token",
        "-o",
        "jsonpath={.data.token}",
    ]);
    use base64::Engine;
    let token2 = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(token2, token);

    // Without a token: 401 Status JSON.
    let (_, body) = curl(&[&format!("{apiserver}/api"), "--insecure"]);
    assert!(
        body.contains("\"code\":401") || body.contains("\"code\": 401"),
        "{body}"
    );
    assert!(body.contains("Unauthorized"), "{body}");

    // The same /api/ through proxylab's auth-proxy instead of kubectl proxy.
    let auth_proxy = lab.info["authProxy"]
        .as_str()
        .expect("authProxy in lab.json");
    let (ok, body) = curl(&[&format!("{auth_proxy}/api/")]);
    assert!(ok && body.contains("APIVersions"), "{body}");
}

/// Real kubectl pointed at proxylab's auth-proxy with `--server http://…`, as users point it at
/// `kubectl proxy`: reads, a watch, and a client-side apply (create, then patch).
#[test]
fn kubectl_through_the_auth_proxy() {
    if !tools() {
        return;
    }
    let lab = Lab::start(BIN);
    let server = lab.info["authProxy"].as_str().unwrap().to_string();
    let via = |args: &[&str]| {
        let mut all = vec!["--server", server.as_str()];
        all.extend_from_slice(args);
        all.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.kubectl(&refs)
    };
    let pods = run(via(&["get", "pods"]));
    assert!(pods.lines().any(|l| l.starts_with("web-1 ")), "{pods}");

    let manifest = |v: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: via-proxy\ndata:\n  k: {v}\n")
    };
    let args = via(&["apply", "-f", "-"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.kubectl_stdin(&refs, &manifest("one"));
    assert!(out.contains("configmap/via-proxy created"), "{out}");
    let out = lab.kubectl_stdin(&refs, &manifest("two"));
    assert!(out.contains("configmap/via-proxy configured"), "{out}");
    let got = run(via(&[
        "get",
        "configmap",
        "via-proxy",
        "-o",
        "jsonpath={.data.k}",
    ]));
    assert_eq!(got, "two");

    // A watch through the proxy streams: the change arrives while the request is open.
    let (mut watch, rx) = spawn_lines(lab.kubectl_cmd().args(via(&[
        "get",
        "configmaps",
        "-w",
        "--output-watch-events",
    ])));
    // Wait for the initial listing (which includes via-proxy) before changing anything.
    let mut listed = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        if line.contains("via-proxy") {
            listed = true;
            break;
        }
    }
    assert!(listed, "the watch never listed via-proxy");
    lab.kubectl_stdin(&refs, &manifest("three"));
    let mut modified = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        if line.starts_with("MODIFIED") && line.contains("via-proxy") {
            modified = true;
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        modified,
        "the MODIFIED event never came through the auth-proxy"
    );
}
