//! The official Python client (`pip install kubernetes`) against the apiserver over TLS: typed
//! deserialisation of our objects, create/read/patch/delete, watch, 404 as ApiException, and the
//! apiserver proxy's connect operations (`connect_get_namespaced_service_proxy_with_path`,
//! `connect_get_node_proxy_with_path`) through to a backend.
//! Skips when python3 or its `kubernetes` module is missing, unless CI is set.

use std::sync::Arc;

use base64::Engine;
use proxylab_apiserver::{ApiServer, ApiServerConfig, ServingCert};
use proxylab_core::tls::install_crypto_provider;
use proxylab_core::tls::pki::{LabPki, PkiSpec};
use proxylab_store::MemoryStore;
use tokio_util::sync::CancellationToken;

fn python_client_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    proxylab_test_support::require(
        "python3 with the kubernetes module (pip install kubernetes)",
        ok,
    )
}

const SCRIPT: &str = r#"
import sys
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
names = sorted(n.metadata.name for n in v1.list_namespace().items)
print("namespaces", ",".join(names))
v1.create_namespaced_config_map("default", {"metadata": {"name": "py", "labels": {"k": "v"}}, "data": {"a": "b"}})
cm = v1.read_namespaced_config_map("py", "default")
print("read", cm.data["a"], cm.metadata.creation_timestamp is not None)
v1.patch_namespaced_config_map("py", "default", {"data": {"a": "c"}})
print("patched", v1.read_namespaced_config_map("py", "default").data["a"])
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_config_map, "default", label_selector="k=v", timeout_seconds=5):
    print("watch", ev["type"], ev["object"].metadata.name)
    w.stop()
svc = v1.create_namespaced_service("default", {"metadata": {"name": "pysvc"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}})
print("service", svc.spec.cluster_ip.startswith("127.0.40."), svc.spec.ports[0].target_port)
pod = v1.create_namespaced_pod("default", {"metadata": {"name": "pypod"}, "spec": {"containers": [{"name": "c", "image": "proxylab/echo-http:1"}]}})
print("pod", pod.status.phase)
print("pods", len(v1.list_pod_for_all_namespaces(limit=1).items))
port = int(sys.argv[2])
v1.create_namespaced_service("default", {"metadata": {"name": "pyweb"}, "spec": {"ports": [{"name": "http", "port": 80}]}})
client.DiscoveryV1Api().create_namespaced_endpoint_slice("default", {"metadata": {"name": "pyweb-1",
    "labels": {"kubernetes.io/service-name": "pyweb"}}, "addressType": "IPv4",
    "ports": [{"name": "http", "port": port}], "endpoints": [{"addresses": ["127.0.0.1"]}]})
v1.create_node({"metadata": {"name": "pynode"}})
v1.patch_node_status("pynode", {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}})
import time
def retry(f):
    for _ in range(100):
        try:
            return f()
        except ApiException as e:
            if e.status not in (404, 503):
                raise
            time.sleep(0.05)
    return f()
print("service proxy", retry(lambda: v1.connect_get_namespaced_service_proxy_with_path("pyweb:http", "default", "a/b")))
print("node proxy", retry(lambda: v1.connect_get_node_proxy_with_path("pynode:%d" % port, "c")))
try:
    v1.connect_get_namespaced_service_proxy_with_path("nope", "default", "x")
except ApiException as e:
    print("proxy error", e.status)
v1.delete_namespaced_config_map("py", "default")
try:
    v1.read_namespaced_config_map("py", "default")
except ApiException as e:
    print("gone", e.status)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_end_to_end() {
    if !python_client_available() {
        return;
    }
    install_crypto_provider();
    let pki = LabPki::generate(&PkiSpec::default()).unwrap();
    let mut cfg = ApiServerConfig::new(vec!["127.0.0.1:0".parse().unwrap()]);
    let (chain, key) = pki.apiserver.der().unwrap();
    cfg.serving = Some(ServingCert { chain, key });
    cfg.client_ca = vec![pki.ca_der().unwrap()];
    // The backend of the proxy calls listens on loopback: the lab's kind of explicit allowance.
    cfg.proxy.allowed_networks = vec!["127.0.0.0/8".parse().unwrap()];
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    let app = axum::Router::new()
        .fallback(|uri: axum::http::Uri| async move { format!("backend saw {}", uri.path()) });
    tokio::spawn(async move { axum::serve(backend, app).await });
    let bound = ApiServer::bind(cfg, Arc::new(MemoryStore::new(10_000)))
        .await
        .unwrap();
    let addr = bound.local_addrs()[0];
    let stop = CancellationToken::new();
    let server = tokio::spawn(bound.serve(stop.clone()));

    let dir = tempfile::tempdir().unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://localhost:{}\n    certificate-authority-data: {}\n\
users:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n\
contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: admin\ncurrent-context: lab\n",
            addr.port(),
            b64(&pki.ca.cert_pem),
            b64(&pki.admin.cert_pem),
            b64(&pki.admin.key_pem)
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&kubeconfig)
        .arg(backend_port.to_string())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("python finished within 60s")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let expect = [
        "namespaces default,kube-node-lease,kube-public,kube-system",
        "read b True",
        "patched c",
        "watch ADDED py",
        "service True 80",
        "pod Pending",
        "pods 1",
        "service proxy backend saw /a/b",
        "node proxy backend saw /c",
        "proxy error 404",
        "gone 404",
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, expect, "{stderr}");
    stop.cancel();
    server.await.unwrap().unwrap();
}
