//! The agent against a small in-test apiserver: enough of the Kubernetes REST API (create, merge
//! patch, delete, list and watch) to watch the agent register, renew its lease, run pods and finish
//! a graceful deletion. The lab apiserver tests (written with the real control plane) go further.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use proxylab_node::certs::{self, CertificateAuthority};
use proxylab_node::{Node, NodeConfig};
use proxylab_test_support::eventually;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Store {
    rv: u64,
    /// key: "resource/namespace/name"
    objects: BTreeMap<String, Value>,
    /// (rv, type, pod) — the pods' watch history
    history: Vec<(u64, &'static str, Value)>,
    /// every write request, in order: "METHOD path body"
    log: Vec<String>,
}

#[derive(Clone)]
struct Fake {
    store: Arc<Mutex<Store>>,
    events: broadcast::Sender<(u64, &'static str, Value)>,
}

fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let Value::Object(t) = target else { return };
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}))).into_response()
}

impl Fake {
    /// Stores an object and, for pods, records a watch event.
    fn put(&self, s: &mut Store, key: &str, mut obj: Value, event: &'static str) -> Value {
        s.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = json!(format!("uid-{}", s.rv));
        }
        if event == "DELETED" {
            s.objects.remove(key);
        } else {
            s.objects.insert(key.to_owned(), obj.clone());
        }
        if key.starts_with("pods/") {
            s.history.push((s.rv, event, obj.clone()));
            let _ = self.events.send((s.rv, event, obj.clone()));
        }
        obj
    }

    fn get(&self, key: &str) -> Option<Value> {
        self.store.lock().expect("lock").objects.get(key).cloned()
    }

    fn log(&self) -> Vec<String> {
        self.store.lock().expect("lock").log.clone()
    }

    fn create_pod(&self, pod: Value) {
        let key = format!(
            "pods/{}/{}",
            pod["metadata"]["namespace"].as_str().expect("ns"),
            pod["metadata"]["name"].as_str().expect("name")
        );
        let mut s = self.store.lock().expect("lock");
        self.put(&mut s, &key, pod, "ADDED");
    }

    fn mark_deleted(&self, ns: &str, name: &str) {
        let key = format!("pods/{ns}/{name}");
        let mut s = self.store.lock().expect("lock");
        let mut pod = s.objects.get(&key).cloned().expect("pod");
        pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        self.put(&mut s, &key, pod, "MODIFIED");
    }
}

async fn handle(State(fake): State<Fake>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // The TokenRequest API (what the kubelet asks for a projected service-account token).
    if let [
        "api",
        "v1",
        "namespaces",
        _,
        "serviceaccounts",
        account,
        "token",
    ] = segs.as_slice()
    {
        let pod = body["spec"]["boundObjectRef"]["name"]
            .as_str()
            .unwrap_or("");
        let answer = json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "spec": body["spec"], "status": {"token": format!("token-of-{account}-for-{pod}")}});
        return (StatusCode::CREATED, axum::Json(answer)).into_response();
    }
    // (resource, namespace, name, subresource)
    let (resource, ns, name, sub) = match segs.as_slice() {
        ["api", "v1", "nodes"] => ("nodes", "", None, None),
        ["api", "v1", "nodes", n] => ("nodes", "", Some(*n), None),
        ["api", "v1", "nodes", n, "status"] => ("nodes", "", Some(*n), Some("status")),
        ["api", "v1", "namespaces"] => ("namespaces", "", None, None),
        ["api", "v1", "pods"] => ("pods", "", None, None),
        ["api", "v1", "namespaces", ns, "events"] => ("events", *ns, None, None),
        ["api", "v1", "namespaces", ns, "pods", n] => ("pods", *ns, Some(*n), None),
        ["api", "v1", "namespaces", ns, "configmaps", n] => ("configmaps", *ns, Some(*n), None),
        ["api", "v1", "namespaces", ns, "secrets", n] => ("secrets", *ns, Some(*n), None),
        ["api", "v1", "namespaces", ns, "pods", n, "status"] => {
            ("pods", *ns, Some(*n), Some("status"))
        }
        [
            "apis",
            "coordination.k8s.io",
            "v1",
            "namespaces",
            ns,
            "leases",
        ] => ("leases", *ns, None, None),
        [
            "apis",
            "coordination.k8s.io",
            "v1",
            "namespaces",
            ns,
            "leases",
            n,
        ] => ("leases", *ns, Some(*n), None),
        _ => return not_found(),
    };
    if method != Method::GET {
        fake.store
            .lock()
            .expect("lock")
            .log
            .push(format!("{method} {path} {body}"));
    }
    match (method, name) {
        (Method::POST, None) => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let ns = if ns.is_empty() {
                body["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            } else {
                ns.to_owned()
            };
            let key = format!("{resource}/{ns}/{name}");
            let mut s = fake.store.lock().expect("lock");
            if s.objects.contains_key(&key) {
                let status = json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"AlreadyExists","code":409});
                return (StatusCode::CONFLICT, axum::Json(status)).into_response();
            }
            let mut obj = body.clone();
            if resource == "nodes" {
                obj.as_object_mut().map(|o| o.remove("status"));
            }
            (
                StatusCode::CREATED,
                axum::Json(fake.put(&mut s, &key, obj, "ADDED")),
            )
                .into_response()
        }
        (Method::PATCH, Some(name)) => {
            let key = format!("{resource}/{ns}/{name}");
            let mut s = fake.store.lock().expect("lock");
            let Some(mut obj) = s.objects.get(&key).cloned() else {
                return not_found();
            };
            let patch = if sub.is_none() && resource != "leases" {
                // the main resource ignores status, the status subresource ignores the rest
                let mut p = body.clone();
                p.as_object_mut().map(|o| o.remove("status"));
                p
            } else if sub == Some("status") {
                json!({"status": body["status"].clone()})
            } else {
                body.clone()
            };
            merge(&mut obj, &patch);
            axum::Json(fake.put(&mut s, &key, obj, "MODIFIED")).into_response()
        }
        (Method::DELETE, Some(name)) => {
            let key = format!("{resource}/{ns}/{name}");
            let mut s = fake.store.lock().expect("lock");
            let Some(obj) = s.objects.get(&key).cloned() else {
                return not_found();
            };
            assert_eq!(
                body["gracePeriodSeconds"], 0,
                "the agent deletes with grace 0"
            );
            assert_eq!(
                body["preconditions"]["uid"], obj["metadata"]["uid"],
                "with a uid precondition"
            );
            axum::Json(fake.put(&mut s, &key, obj, "DELETED")).into_response()
        }
        (Method::GET, None) if resource == "pods" => list_or_watch(fake, &query).await,
        (Method::GET, Some(name)) => match fake.get(&format!("{resource}/{ns}/{name}")) {
            Some(obj) => axum::Json(obj).into_response(),
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn node_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or("")
}

async fn list_or_watch(fake: Fake, query: &str) -> Response {
    let decoded = query.replace("%3D", "=");
    let node = decoded
        .split('&')
        .find_map(|kv| kv.strip_prefix("fieldSelector=spec.nodeName="))
        .unwrap_or("")
        .to_owned();
    let param = |name: &str| {
        decoded
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    if param("watch").as_deref() != Some("true") && param("watch").as_deref() != Some("1") {
        let s = fake.store.lock().expect("lock");
        let items: Vec<Value> = s
            .objects
            .iter()
            .filter(|(k, v)| k.starts_with("pods/") && node_of(v) == node)
            .map(|(_, v)| v.clone())
            .collect();
        return axum::Json(json!({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion": s.rv.to_string()},"items": items}))
            .into_response();
    }
    let since: u64 = param("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (backlog, live) = {
        let s = fake.store.lock().expect("lock");
        let live = fake.events.subscribe();
        let backlog: Vec<_> = s
            .history
            .iter()
            .filter(|(rv, _, _)| *rv > since)
            .cloned()
            .collect();
        (backlog, live)
    };
    let node2 = node.clone();
    let backlog = futures_util::stream::iter(backlog);
    let live = futures_util::stream::unfold(live, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => return Some((ev, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    use futures_util::StreamExt;
    let lines = backlog
        .chain(live)
        .filter(move |(_, _, obj)| std::future::ready(node_of(obj) == node2))
        .map(|(_, kind, obj)| {
            let mut line =
                serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
            line.push(b'\n');
            Ok::<_, std::convert::Infallible>(line)
        });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(lines))
        .expect("response")
}

fn pod(name: &str, image: &str, ports: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": "node-t", "containers": [{"name": "main", "image": image, "ports": ports}]},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
    })
}

#[tokio::test]
async fn agent_registers_renews_runs_pods_and_finishes_graceful_deletion() {
    let (events, _) = broadcast::channel(1024);
    let fake = Fake {
        store: Arc::default(),
        events,
    };
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api_addr = listener.local_addr().expect("addr");
    let api_shutdown = CancellationToken::new();
    let api_stop = api_shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(api_stop.cancelled_owned())
            .await;
    });

    let node_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut config = NodeConfig::new("node-t", node_ip, "127.0.93.0/29".parse().expect("cidr"));
    config.kubelet_port = 0;
    config
        .labels
        .insert("node-role.kubernetes.io/worker".into(), "".into());
    // Pods' HTTPS certificates are signed by this CA (--workload-ca-cert-file/--workload-ca-key-file).
    let workload_ca = CertificateAuthority::generate("lab-ca").expect("ca");
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_crt, ca_key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
    std::fs::write(&ca_crt, workload_ca.cert_pem()).expect("write");
    std::fs::write(&ca_key, workload_ca.key_pem()).expect("write");
    config.workload_ca = Some((ca_crt, ca_key));
    config.lease_renew_interval = Duration::from_millis(100);
    config.status_update_interval = Duration::from_millis(100);
    config.kubeconfig = Some(
        proxylab_test_support::fake_apiserver::write_kubeconfig_with(
            dir.path(),
            &format!("http://{api_addr}"),
            "",
            "    token: agent",
        ),
    );
    let bound = Node::bind(config).await.expect("bind");
    let kubelet_port = bound.kubelet_addr().port();
    let table = bound.pods();
    let containers = bound.containers();
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(bound.serve(shutdown.clone()));

    // Registration: labels, podCIDR, addresses, kubelet port, Ready.
    let node = eventually("node status", || {
        fake.get("nodes//node-t").filter(|n| !n["status"].is_null())
    })
    .await;
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "node-t"
    );
    assert_eq!(
        node["metadata"]["labels"]["node-role.kubernetes.io/worker"],
        ""
    );
    assert_eq!(node["spec"]["podCIDR"], "127.0.93.0/29");
    assert_eq!(node["status"]["addresses"][0]["address"], "127.0.0.1");
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        kubelet_port
    );
    assert!(
        node["status"]["conditions"]
            .as_array()
            .expect("conds")
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    );

    // Lease: created (with the namespace), owned by the node, then renewed.
    let lease = eventually("lease", || fake.get("leases/kube-node-lease/node-t")).await;
    assert_eq!(lease["spec"]["holderIdentity"], "node-t");
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"],
        node["metadata"]["uid"]
    );
    let first_renew = lease["spec"]["renewTime"].clone();
    eventually("lease renewal", || {
        fake.get("leases/kube-node-lease/node-t")
            .filter(|l| l["spec"]["renewTime"] != first_renew)
    })
    .await;

    // A pod: started on the first usable IP, reported Running, reachable.
    fake.create_pod(pod(
        "web-1",
        "proxylab/echo-http:1",
        json!([{"name": "http", "containerPort": 8080}, {"name": "https", "containerPort": 8443}]),
    ));
    let running = eventually("web-1 running", || {
        fake.get("pods/default/web-1")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    assert_eq!(running["status"]["podIP"], "127.0.93.2");
    assert_eq!(running["status"]["hostIP"], "127.0.0.1");
    assert_eq!(running["status"]["containerStatuses"][0]["ready"], true);
    let web: SocketAddr = "127.0.93.2:8080".parse().expect("addr");
    let mut conn = TcpStream::connect(web).await.expect("pod reachable");
    conn.write_all(b"GET /hostname HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.expect("read");
    assert!(answer.ends_with("web-1"), "{answer}");
    let log = containers
        .get("default", "web-1", "main")
        .expect("container")
        .log;
    assert!(
        log.tail(None)
            .iter()
            .any(|l| l.text.contains("\"GET /hostname HTTP/1.1\""))
    );
    // The pod's HTTPS port presents a certificate from the workload CA, valid for Service names.
    let mut tls_client = rustls::ClientConfig::builder_with_provider(certs::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(workload_ca.root_store())
        .with_no_client_auth();
    tls_client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect("127.0.93.2:8443")
        .await
        .expect("https port");
    let name = rustls_pki_types::ServerName::try_from("web.default.svc").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(tls_client))
        .connect(name, tcp)
        .await
        .expect("verified handshake");
    tls.write_all(b"GET /hostname HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    assert!(String::from_utf8_lossy(&answer).contains("web-1"));

    eventually("pod in the kubelet table", || {
        table
            .snapshot()
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some("web-1"))
            .then_some(())
    })
    .await;

    // An image the node cannot run: waiting, not ready; it still gets the next IP.
    fake.create_pod(pod("bad", "nginx:1.27", json!([])));
    let bad = eventually("bad pod status", || {
        fake.get("pods/default/bad")
            .filter(|p| !p["status"]["containerStatuses"].is_null())
    })
    .await;
    assert_eq!(bad["status"]["phase"], "Pending");
    assert_eq!(
        bad["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "ImagePullBackOff"
    );
    assert_eq!(bad["status"]["podIP"], "127.0.93.3");

    // Graceful deletion: Ready=False first, then DELETE with grace 0; the workload is gone.
    fake.mark_deleted("default", "web-1");
    eventually("web-1 removed", || {
        fake.get("pods/default/web-1").is_none().then_some(())
    })
    .await;
    let log = fake.log();
    let not_ready = log
        .iter()
        .position(|l| {
            l.starts_with("PATCH /api/v1/namespaces/default/pods/web-1/status")
                && l.contains("PodTerminating")
        })
        .expect("Ready=False patch");
    let delete = log
        .iter()
        .position(|l| l.starts_with("DELETE /api/v1/namespaces/default/pods/web-1"))
        .expect("delete");
    assert!(not_ready < delete, "{log:#?}");
    assert!(
        TcpStream::connect(web).await.is_err(),
        "the workload stopped before the final delete"
    );
    eventually("pod gone from the kubelet table", || {
        (!table
            .snapshot()
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some("web-1")))
        .then_some(())
    })
    .await;

    assert!(
        containers.get("default", "web-1", "main").is_none(),
        "logs go with the pod"
    );
    // Kubelet Events are best effort and sent in the background: wait for each.
    for (pod, reason) in [
        ("web-1", "Started"),
        ("web-1", "Killing"),
        ("bad", "Failed"),
    ] {
        eventually(&format!("{reason} event for {pod}"), || {
            let s = fake.store.lock().expect("lock");
            s.objects
                .iter()
                .any(|(k, e)| {
                    k.starts_with("events/default/")
                        && e["involvedObject"]["name"] == pod
                        && e["reason"] == reason
                        && e["source"]["host"] == "node-t"
                })
                .then_some(())
        })
        .await;
    }

    // The freed IP is not handed out at once: the next pod gets .4.
    fake.create_pod(pod("web-2", "echo-tcp", json!([{"containerPort": 7000}])));
    let web2 = eventually("web-2 running", || {
        fake.get("pods/default/web-2")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    assert_eq!(web2["status"]["podIP"], "127.0.93.4");

    // Volumes become the files `kubectl exec … cat` sees: a ConfigMap, a Secret, the projected
    // service-account volume admission adds (a TokenRequest token bound to the pod), the downward
    // API; a missing ConfigMap is a FailedMount warning.
    {
        let mut s = fake.store.lock().expect("lock");
        s.objects.insert(
            "configmaps/default/cfg".into(),
            json!({"data": {"greeting": "hello"}}),
        );
        s.objects.insert(
            "configmaps/default/kube-root-ca.crt".into(),
            json!({"data": {"ca.crt": "CA PEM"}}),
        );
        s.objects.insert(
            "secrets/default/creds".into(),
            json!({"data": {"password": "czNjcmV0"}}),
        );
    }
    let mut files_pod = pod("files", "echo-tcp", json!([{"containerPort": 7001}]));
    files_pod["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "cfg", "mountPath": "/etc/config"},
        {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
        {"name": "nope", "mountPath": "/etc/nope"},
    ]);
    files_pod["spec"]["volumes"] = json!([
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "kube-api-access-x", "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
        ]}},
        {"name": "nope", "configMap": {"name": "does-not-exist"}},
    ]);
    fake.create_pod(files_pod);
    let shell = eventually("files container", || {
        containers
            .get("default", "files", "main")
            .and_then(|c| c.shell)
    })
    .await;
    let read = |path: &str| {
        String::from_utf8(
            shell
                .files
                .read(path)
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .to_vec(),
        )
        .expect("utf8")
    };
    assert_eq!(read("/etc/config/greeting"), "hello");
    assert_eq!(read("/etc/creds/password"), "s3cret");
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(read(&format!("{sa}/token")), "token-of-default-for-files");
    assert_eq!(read(&format!("{sa}/ca.crt")), "CA PEM");
    assert_eq!(read(&format!("{sa}/namespace")), "default");
    assert!(
        shell.files.is_dir("/etc/nope"),
        "the mount point exists, empty"
    );
    eventually("FailedMount event", || {
        let s = fake.store.lock().expect("lock");
        s.objects
            .values()
            .any(|e| e["reason"] == "FailedMount" && e["involvedObject"]["name"] == "files")
            .then_some(())
    })
    .await;

    // A busybox container runs its command to completion: output in its log, exit code in its
    // terminated state, the Pod Failed (restartPolicy Never), and its IP (.6, the last free one of
    // the /29) given back at once.
    let mut job_pod = pod("job-1", "busybox", json!([]));
    job_pod["spec"]["restartPolicy"] = json!("Never");
    job_pod["spec"]["containers"][0]["command"] = json!(["sh", "-c"]);
    job_pod["spec"]["containers"][0]["args"] = json!(["echo working; exit 3"]);
    fake.create_pod(job_pod);
    let done = eventually("job-1 failed", || {
        fake.get("pods/default/job-1")
            .filter(|p| p["status"]["phase"] == "Failed")
    })
    .await;
    assert_eq!(done["status"]["podIP"], "127.0.93.6");
    let state = &done["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (state["exitCode"].as_i64(), state["reason"].as_str()),
        (Some(3), Some("Error"))
    );
    let log = containers
        .get("default", "job-1", "main")
        .expect("a finished container keeps its log")
        .log;
    let lines: Vec<String> = log.tail(None).into_iter().map(|l| l.text).collect();
    assert_eq!(lines, ["working"]);
    for (name, ip) in [("after-1", "127.0.93.2"), ("after-2", "127.0.93.6")] {
        fake.create_pod(pod(name, "echo-tcp", json!([{"containerPort": 7002}])));
        let p = eventually(&format!("{name} running"), || {
            fake.get(&format!("pods/default/{name}"))
                .filter(|p| p["status"]["phase"] == "Running")
        })
        .await;
        assert_eq!(p["status"]["podIP"], ip, "{name}");
    }

    shutdown.cancel();
    agent.await.expect("join").expect("serve");
    assert!(
        TcpStream::connect("127.0.93.4:7000").await.is_err(),
        "agent shutdown stops pods"
    );
    api_shutdown.cancel();
}
