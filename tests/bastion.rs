//! The apiserver proxy (the bastion) in the lab, as real clients use it: `kubectl get --raw` and
//! `curl` through the auth-proxy to the service/pod/node proxy paths, and unmodified `kubectl logs
//! -f`, `exec` (also `-it` under a pty), `attach` and `port-forward` (apiserver → kubelet → pod);
//! the hop records of every proxy on the way; discovery.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use proxylab_test_support::lab::{Lab, curl};
use proxylab_test_support::require_tool;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");

fn tools() -> bool {
    require_tool("kubectl") && require_tool("curl")
}

/// A long-running command whose stdout is handed over line by line; killed on drop.
struct Lines {
    child: Child,
    rx: mpsc::Receiver<String>,
}

impl Lines {
    fn spawn(cmd: &mut Command) -> Lines {
        let mut child = cmd
            .stdin(Stdio::piped())
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
        Lines { child, rx }
    }

    /// The first line containing `needle`, within the patience of the tests.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + proxylab_test_support::PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!("no line containing {needle:?}"),
            }
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every apiserver's hop records: the lab's kubeconfig names the HA balancer, which may pick any.
fn apiserver_hops(lab: &Lab) -> Vec<Value> {
    lab.info["admin"]["apiservers"]
        .as_object()
        .unwrap_or_else(|| panic!("admin.apiservers in lab.json: {}", lab.info))
        .values()
        .flat_map(|url| hops(url.as_str().unwrap()))
        .collect()
}

fn hops(url: &str) -> Vec<Value> {
    let (ok, body) = curl(&[&format!("{url}/debug/hops")]);
    assert!(ok, "{url}/debug/hops");
    serde_json::from_str::<Vec<Value>>(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn service_pod_and_node_proxy_through_kubectl_and_the_auth_proxy() {
    if !tools() {
        return;
    }
    let lab = Lab::start(BIN);
    let o = lab.octet;
    // kubectl → HA balancer → an apiserver → bastion → a web pod.
    let got = lab.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:http/proxy/hostname",
    ]);
    assert!(["web-1", "web-2", "web-3"].contains(&got.as_str()), "{got}");
    // curl → auth-proxy → apiserver → bastion → pod, spread over the three pods.
    let auth_proxy = lab.info["authProxy"].as_str().unwrap().to_owned();
    let mut seen = std::collections::BTreeSet::new();
    lab.eventually("every web pod answered through the service proxy", || {
        let (ok, body) = curl(&[&format!(
            "{auth_proxy}/api/v1/namespaces/default/services/web/proxy/hostname"
        )]);
        assert!(ok, "{body}");
        seen.insert(body);
        seen.len() == 3
    });
    // The pod's TLS port over https, a named port, the node's kubelet.
    let tls = lab.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/https:web-1:8443/proxy/hostname",
    ]);
    assert_eq!(tls, "web-1");
    let named = lab.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/web-2:http/proxy/hostname",
    ]);
    assert_eq!(named, "web-2");
    assert_eq!(
        lab.kubectl(&["get", "--raw", "/api/v1/nodes/node-1/proxy/healthz"]),
        "ok"
    );
    let logs = lab.kubectl(&[
        "get",
        "--raw",
        "/api/v1/nodes/node-2/proxy/containerLogs/default/web-2/echo?tailLines=1",
    ]);
    assert!(logs.contains("GET /hostname"), "{logs}");
    // The other id forms: the service's numeric port, the scheme spelled out, https to the service's
    // TLS port by number and by name (the pod answers that it saw TLS), a numeric pod port.
    for id in ["web:80", "http:web:80", "https:web:443", "https:web:https"] {
        let got = lab.kubectl(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/services/{id}/proxy/echo"),
        ]);
        let echo: Value = serde_json::from_str(&got).unwrap_or_else(|e| panic!("{id}: {e}: {got}"));
        assert!(
            echo["pod"].as_str().is_some_and(|p| p.starts_with("web-")),
            "{id}: {echo}"
        );
        assert_eq!(echo["tls"], id.starts_with("https:"), "{id}: {echo}");
    }
    assert_eq!(
        lab.kubectl(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/web-3:8080/proxy/hostname",
        ]),
        "web-3"
    );
    // A service with no such port: kube-apiserver's Status, as kubectl prints it.
    let out = lab
        .kubectl_cmd()
        .args([
            "get",
            "--raw",
            "/api/v1/namespaces/default/services/web:81/proxy/",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"no service port 81 found for service \"web\""#)
            || err.contains(r#"no service port 81 found for service "web""#),
        "{err}"
    );

    // Refusals through the auth-proxy, as curl shows them: kube-apiserver's codes and Status messages
    // (`lonely` selects no pod, so it has no endpoints).
    lab.kubectl(&["create", "service", "clusterip", "lonely", "--tcp=80"]);
    for (path, code, message) in [
        (
            "services/nope/proxy/",
            404,
            r#"services \"nope\" not found"#,
        ),
        (
            "services/lonely/proxy/",
            503,
            r#"no endpoints available for service \"lonely\""#,
        ),
        (
            "services/web:81/proxy/",
            503,
            r#"no service port 81 found for service \"web\""#,
        ),
        (
            "pods/ftp:web-1:8080/proxy/",
            400,
            r#"invalid pod request \"ftp:web-1:8080\""#,
        ),
        (
            "pods/web-1:nope/proxy/",
            400,
            r#"pod \"web-1\" has no container port named \"nope\""#,
        ),
        (
            "services/a:b:c:d/proxy/",
            400,
            r#"invalid service request \"a:b:c:d\""#,
        ),
    ] {
        let (ok, out) = curl(&[
            "-w",
            "\n%{http_code}",
            &format!("{auth_proxy}/api/v1/namespaces/default/{path}"),
        ]);
        assert!(ok, "{path}: {out}");
        let (body, got) = out.rsplit_once('\n').unwrap();
        assert_eq!(got, code.to_string(), "{path}: {body}");
        assert!(body.contains(message), "{path}: {body}");
    }
    for (path, code, message) in [
        ("nope/proxy/", 404, r#"nodes \"nope\" not found"#),
        (
            "ftp:node-1:10250/proxy/",
            400,
            r#"invalid node request \"ftp:node-1:10250\""#,
        ),
        (":10250/proxy/", 400, r#"invalid node request \":10250\""#),
    ] {
        let (ok, out) = curl(&[
            "-w",
            "\n%{http_code}",
            &format!("{auth_proxy}/api/v1/nodes/{path}"),
        ]);
        assert!(ok, "{path}: {out}");
        let (body, got) = out.rsplit_once('\n').unwrap();
        assert_eq!(got, code.to_string(), "{path}: {body}");
        assert!(body.contains(message), "{path}: {body}");
    }
    // GET without the backend path's slash: kube's 301 to the same path with it, query kept.
    let (ok, out) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &format!("{auth_proxy}/api/v1/namespaces/default/services/web/proxy?x=1"),
    ]);
    assert!(ok, "{out}");
    assert!(out.starts_with("301 "), "{out}");
    assert!(
        out.ends_with("/api/v1/namespaces/default/services/web/proxy/?x=1"),
        "{out}"
    );

    // The hop records: an apiserver's bastion dialled from that apiserver's address to a pod.
    let all = apiserver_hops(&lab);
    let h = all
        .iter()
        .rev()
        .find(|h| h["target"] == "services/default/web" && h["outcome"] == "ok")
        .unwrap_or_else(|| panic!("no answered service hop: {all:?}"));
    assert_eq!(h["proxy"], "bastion");
    let instance = h["instance"].as_str().unwrap();
    let n = instance.strip_prefix("apiserver-").expect("apiserver-N");
    assert!(
        h["upstreamLocal"]
            .as_str()
            .unwrap()
            .starts_with(&format!("127.{o}.10.{n}:")),
        "{h}"
    );
    assert!(
        h["upstream"]
            .as_str()
            .unwrap()
            .starts_with(&format!("127.{o}.30.")),
        "{h}"
    );
    assert!(
        h["endpoint"].as_str().unwrap().starts_with("default/web-"),
        "{h}"
    );
    // The auth-proxy's hops lead into the HA balancer (the kubeconfig's server).
    let (ok, body) = curl(&[&format!(
        "{}/debug/hops",
        lab.info["admin"]["authProxy"].as_str().unwrap()
    )]);
    assert!(ok);
    assert!(
        body.contains(&format!("\"upstream\":\"127.{o}.0.1:6443\"")),
        "{body}"
    );
    // Discovery lists the subresources as kube-apiserver does.
    let v1 = lab.kubectl(&["get", "--raw", "/api/v1"]);
    for sub in [
        "nodes/proxy",
        "pods/proxy",
        "services/proxy",
        "pods/log",
        "pods/exec",
        "pods/attach",
        "pods/portforward",
    ] {
        assert!(
            v1.contains(&format!("\"{sub}\"")),
            "{sub} missing from /api/v1"
        );
    }
}

#[test]
fn kubectl_logs_exec_attach_and_port_forward_through_the_bastion() {
    if !tools() {
        return;
    }
    let lab = Lab::start(BIN);
    let o = lab.octet;
    // exec: output and exit codes.
    assert_eq!(
        lab.kubectl(&["exec", "web-1", "--", "hostname"]).trim(),
        "web-1"
    );
    let out = lab
        .kubectl_cmd()
        .args(["exec", "web-1", "--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    // stdin through exec.
    let cat = lab.kubectl_stdin(
        &["exec", "-i", "web-2", "--", "cat"],
        "through the bastion\n",
    );
    assert_eq!(cat, "through the bastion\n");

    // logs -f: a line for a request made after the stream opened.
    let follow = Lines::spawn(lab.kubectl_cmd().args(["logs", "-f", "web-3", "--tail=1"]));
    std::thread::sleep(Duration::from_millis(300));
    let marker = format!("/follow-marker-{o}");
    lab.eventually("the marker request answered", || {
        curl(&[&format!(
            "{}/api/v1/namespaces/default/pods/web-3/proxy{marker}",
            lab.info["authProxy"].as_str().unwrap()
        )])
        .0
    });
    let line = follow.wait_for(&marker);
    // The pod saw the bastion's address as its client: an apiserver's.
    assert!(line.starts_with(&format!("127.{o}.10.")), "{line}");
    drop(follow);

    // attach: the workload's log stream, as it is written.
    let attach = Lines::spawn(lab.kubectl_cmd().args(["attach", "web-1"]));
    std::thread::sleep(Duration::from_millis(300));
    let marker = format!("/attach-marker-{o}");
    lab.eventually("the attach marker request answered", || {
        lab.kubectl_cmd()
            .args([
                "get",
                "--raw",
                &format!("/api/v1/namespaces/default/pods/web-1/proxy{marker}"),
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    attach.wait_for(&marker);
    drop(attach);

    // port-forward: a local port to the pod, through apiserver and kubelet.
    let pf = Lines::spawn(
        lab.kubectl_cmd()
            .args(["port-forward", "pod/web-2", ":8080"]),
    );
    // "Forwarding from 127.0.0.1:NNNNN -> 8080"
    let line = pf.wait_for("Forwarding from 127.0.0.1:");
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_default()
        .to_owned();
    let (ok, body) = curl(&[&format!("http://127.0.0.1:{port}/hostname")]);
    assert!(ok && body == "web-2", "{body}");
    drop(pf);

    // The exec's hop: apiserver → kubelet of the pod's node, upgraded, with bytes.
    let all = apiserver_hops(&lab);
    let exec = all
        .iter()
        .find(|h| h["target"] == "pods/default/web-1/exec")
        .unwrap_or_else(|| panic!("no exec hop: {all:?}"));
    assert_eq!(exec["outcome"], "upgraded");
    assert!(
        exec["upstream"].as_str().unwrap().ends_with(":10250"),
        "{exec}"
    );
    assert!(exec["bytesDown"].as_u64().unwrap() > 0, "{exec}");
}

#[test]
fn kubectl_exec_it_under_a_pty() {
    if !tools() || !require_tool("script") {
        return;
    }
    let lab = Lab::start(BIN);
    let kubeconfig = lab.kubeconfig();
    let cmd = format!(
        "kubectl --kubeconfig {} --cache-dir {} exec -it web-1 -- sh",
        kubeconfig.display(),
        lab.dir.path().join("kube-cache").display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("HOME", lab.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script");
    let mut stdin = child.stdin.take().unwrap();
    // Typed like a user: one command, then exit.
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(b"hostname -i\r").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(b"exit\r").unwrap();
    drop(stdin);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(proxylab_test_support::PATIENCE)
        .expect("kubectl exec -it ended")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web-1:/#"), "no prompt: {text}");
    assert!(
        text.contains(&format!("127.{}.30.", lab.octet)),
        "no pod IP: {text}"
    );
}

/// The official Python client's calls of the proxy subresources, against the lab (the client is
/// generated from the OpenAPI the lab apiserver publishes): `connect_*_proxy_with_path` for services,
/// pods and nodes with GET and POST, `read_namespaced_pod_log`, and the refusals as `ApiException`s.
const PYTHON_PROXY_CALLS: &str = r#"
import json, sys
from kubernetes import client, config
from kubernetes.client.rest import ApiException
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
seen = set()
for _ in range(60):
    seen.add(v1.connect_get_namespaced_service_proxy_with_path("web:http", "default", "hostname"))
    if len(seen) == 3:
        break
print("service", ",".join(sorted(seen)))
print("pod", v1.connect_get_namespaced_pod_proxy_with_path("web-2:8080", "default", "hostname"))
echo = v1.connect_post_namespaced_pod_proxy_with_path("web-1", "default", "a/b", _preload_content=False)
e = json.loads(echo.data)
print("post", e["method"], e["path"], e["pod"], "authorization" in e["headers"])
print("node", v1.connect_get_node_proxy_with_path("node-1", "healthz"))
print("log", "GET /hostname" in v1.read_namespaced_pod_log("web-2", "default", tail_lines=5))
for name in ["web:81", "nope", "a:b:c:d"]:
    try:
        v1.connect_get_namespaced_service_proxy_with_path(name, "default", "x")
        print("refused", name, "no")
    except ApiException as ex:
        print("refused", name, ex.status, json.loads(ex.body)["reason"])
"#;

#[test]
fn the_python_clients_proxy_calls_against_the_lab() {
    let available = std::process::Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !proxylab_test_support::require(
        "python3 with the kubernetes module (pip install kubernetes)",
        available,
    ) {
        return;
    }
    let lab = Lab::start(BIN);
    let out = Command::new("python3")
        .args(["-c", PYTHON_PROXY_CALLS])
        .arg(lab.kubeconfig())
        .env("HOME", lab.dir.path())
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}\nlab log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        lab.log()
    );
    let want = [
        "service web-1,web-2,web-3",
        "pod web-2",
        "post POST /a/b web-1 False",
        "node ok",
        "log True",
        "refused web:81 503 ServiceUnavailable",
        "refused nope 404 NotFound",
        "refused a:b:c:d 400 BadRequest",
    ];
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got, want, "{stdout}");
}
