//! The `bastion` binary on its own, watching a cluster through a kubeconfig — the lab apiserver
//! (in-process) plays the cluster — and serving the proxy paths over HTTPS to users it
//! authenticates itself (bearer tokens, client certificates).

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use proxylab_apiserver::{ApiServer, ApiServerConfig, ServingCert};
use proxylab_core::tls::pki::{LabPki, PkiSpec};
use proxylab_store::{MemoryStore, ObjectKey, Store};
use proxylab_test_support::{expect_one_line_exit_2, require_tool};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_bastion");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn put(store: &dyn Store, resource: &str, obj: serde_json::Value) {
    let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
    let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
    store
        .create(&ObjectKey::new(resource, ns.as_deref(), name), obj)
        .unwrap();
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_owned(), code.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_bastion_serves_a_cluster_it_watches() {
    if !require_tool("curl") {
        return;
    }
    proxylab_core::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = LabPki::generate(&PkiSpec::default()).unwrap();
    pki.write_to(&dir.path().join("pki")).unwrap();
    let f = |n: &str| dir.path().join("pki").join(n).display().to_string();

    // The cluster: the lab apiserver over a store holding a service, its slices, a pod.
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(10_000));
    let mut cfg = ApiServerConfig::new(vec!["127.0.0.1:0".parse().unwrap()]);
    let (chain, key) = pki.apiserver.der().unwrap();
    cfg.serving = Some(ServingCert { chain, key });
    cfg.client_ca = vec![pki.ca_der().unwrap()];
    let apiserver = ApiServer::bind(cfg, store.clone()).await.unwrap();
    let api_addr = apiserver.local_addrs()[0];
    let stop = CancellationToken::new();
    tokio::spawn(apiserver.serve(stop.clone()));
    let pod = common::start_pod("web-1").await;
    for obj in common::objects(std::slice::from_ref(&pod), "127.0.0.1:1".parse().unwrap()) {
        let resource = match obj["kind"].as_str().unwrap() {
            "Service" => "services",
            "Node" => "nodes",
            "Pod" => "pods",
            _ => "endpointslices.discovery.k8s.io",
        };
        put(&*store, resource, obj);
    }
    let kubeconfig = proxylab_test_support::fake_apiserver::write_kubeconfig(
        dir.path(),
        &format!("https://{api_addr}"),
        &pki.ca.cert_pem,
        &format!(
            "    client-certificate: {}\n    client-key: {}",
            f("admin.crt"),
            f("admin.key")
        ),
    );
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "tok-alice,alice,1,\"devs\"\n").unwrap();

    let mut child = Command::new(BIN)
        .args(["--kubeconfig", &kubeconfig.display().to_string()])
        .args(["--listen", "127.0.0.1:0", "--admin-address", ""])
        .args([
            "--tls-cert-file",
            &f("apiserver.crt"),
            "--tls-private-key-file",
            &f("apiserver.key"),
        ])
        .args([
            "--client-ca-file",
            &f("ca.crt"),
            "--token-auth-file",
            &tokens.display().to_string(),
        ])
        .args([
            "--allowed-networks",
            "127.0.0.1",
            "--kubelet-preferred-address-types",
            "InternalIP",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut l = String::new();
        std::io::BufReader::new(stdout).read_line(&mut l).unwrap();
        l
    });
    let line = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .unwrap()
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("Serving the apiserver proxy on https://")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let url = format!("https://{addr}/api/v1/namespaces/default/services/web:http/proxy/hostname");
    let ca = f("ca.crt");

    // A token user.
    let (body, code) = curl(&[
        "--cacert",
        &ca,
        "-H",
        "Authorization: Bearer tok-alice",
        &url,
    ]);
    assert_eq!((body.as_str(), code.as_str()), ("web-1", "200"));
    // A client-certificate user.
    let (body, code) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &f("admin.crt"),
        "--key",
        &f("admin.key"),
        &url,
    ]);
    assert_eq!((body.as_str(), code.as_str()), ("web-1", "200"));
    // Nobody: 401, and the pod never saw a request.
    let before = pod.seen.lock().len();
    let (body, code) = curl(&["--cacert", &ca, "-H", "Authorization: Bearer wrong", &url]);
    assert_eq!(code, "401", "{body}");
    assert_eq!(pod.seen.lock().len(), before);
    // The user's token did not reach the pod.
    assert!(
        pod.seen
            .lock()
            .iter()
            .all(|r| r.headers.get("authorization").is_none())
    );
    // Anything but the proxy paths: 404 saying what is served.
    let (body, code) = curl(&[
        "--cacert",
        &ca,
        "-H",
        "Authorization: Bearer tok-alice",
        &format!("https://{addr}/api/v1/pods"),
    ]);
    assert_eq!(code, "404");
    assert!(
        body.contains("serves only the proxy subresources"),
        "{body}"
    );
    // A change in the cluster is seen: the service loses its endpoints.
    store
        .delete(
            &ObjectKey::new(
                "endpointslices.discovery.k8s.io",
                Some("default"),
                "web-web-1",
            ),
            None,
        )
        .unwrap();
    let mut last = String::new();
    for _ in 0..200 {
        let (body, code) = curl(&[
            "--cacert",
            &ca,
            "-H",
            "Authorization: Bearer tok-alice",
            &url,
        ]);
        if code == "503" {
            assert!(
                body.contains(r#"no endpoints available for service \"web\""#),
                "{body}"
            );
            last.clear();
            break;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last.is_empty(), "still answered: {last}");
    stop.cancel();
}

#[test]
fn bad_flags_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let line = expect_one_line_exit_2(Command::new(BIN).args(["--listen", "127.0.0.1:0"]));
    assert!(line.contains("--tls-cert-file"), "{line}");
    let missing = dir.path().join("missing.crt");
    let line = expect_one_line_exit_2(Command::new(BIN).args([
        "--tls-cert-file",
        &missing.display().to_string(),
        "--tls-private-key-file",
        &missing.display().to_string(),
    ]));
    // The file named once (its error names it; the flag's message does not repeat it).
    assert_eq!(
        line,
        format!(
            "bastion: --tls-cert-file: {}: cannot read: No such file or directory (os error 2)",
            missing.display()
        )
    );
    let pki = LabPki::generate(&PkiSpec::default()).unwrap();
    pki.write_to(dir.path()).unwrap();
    let f = |n: &str| dir.path().join(n).display().to_string();
    let tls = [
        "--tls-cert-file".to_string(),
        f("apiserver.crt"),
        "--tls-private-key-file".into(),
        f("apiserver.key"),
        "--client-ca-file".into(),
        f("ca.crt"),
    ];
    let line = expect_one_line_exit_2(
        Command::new(BIN)
            .args(&tls)
            .args(["--allowed-networks", "169.254.0.0/16"]),
    );
    assert!(line.contains("link-local"), "{line}");
    let line = expect_one_line_exit_2(Command::new(BIN).args(["--allowed-networks", "node-1"]));
    assert!(line.contains("node-1"), "{line}");
    let line = expect_one_line_exit_2(Command::new(BIN).args(&tls[..4]));
    assert!(line.contains("no way to authenticate users"), "{line}");
    let line = expect_one_line_exit_2(
        Command::new(BIN)
            .args(&tls)
            .args(["--service-balancing", "fastest"]),
    );
    assert!(line.contains("fastest"), "{line}");
}
