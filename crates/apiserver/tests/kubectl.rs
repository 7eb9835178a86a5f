//! The real `kubectl` against the apiserver over TLS with a client certificate: discovery, OpenAPI-based
//! validation, apply (create then strategic-merge patch), get with Table output, describe (events field
//! selectors), label/patch/replace, services, delete with its wait-for-deletion watch, namespaces.
//! Skips when kubectl is missing, unless CI is set.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use base64::Engine;
use proxylab_apiserver::{ApiServer, ApiServerConfig, ServingCert};
use proxylab_core::tls::install_crypto_provider;
use proxylab_core::tls::pki::{LabPki, PkiSpec};
use proxylab_store::MemoryStore;
use proxylab_test_support::require_tool;
use tokio_util::sync::CancellationToken;

struct Kubectl {
    kubeconfig: String,
    cache: String,
}

impl Kubectl {
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            use tokio::io::AsyncWriteExt;
            let mut s = child.stdin.take().expect("stdin");
            s.write_all(input.as_bytes()).await.expect("write stdin");
        }
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .expect("kubectl finished within 60s")
                .expect("kubectl output");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.run(args, None).await;
        assert!(ok, "kubectl {args:?} failed:\n{out}");
        out
    }
}

fn kubeconfig(dir: &Path, server: &str, pki: &LabPki) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\n\
users:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n\
contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: admin\n    namespace: default\ncurrent-context: lab\n",
        b64(&pki.ca.cert_pem),
        b64(&pki.admin.cert_pem),
        b64(&pki.admin.key_pem)
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");
    path.display().to_string()
}

/// An apiserver config serving HTTPS with the lab PKI's certificate and trusting its CA for clients.
fn tls_config(pki: &LabPki) -> ApiServerConfig {
    let mut cfg = ApiServerConfig::new(vec!["127.0.0.1:0".parse().unwrap()]);
    let (chain, key) = pki.apiserver.der().unwrap();
    cfg.serving = Some(ServingCert { chain, key });
    cfg.client_ca = vec![pki.ca_der().unwrap()];
    cfg
}

/// Binds and serves `cfg` on an in-memory store keeping `history` events: its address, the token
/// that stops it, and the serving task.
async fn start(
    cfg: ApiServerConfig,
    history: usize,
) -> (
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), proxylab_apiserver::ServerError>>,
) {
    let bound = ApiServer::bind(cfg, Arc::new(MemoryStore::new(history)))
        .await
        .unwrap();
    let addr = bound.local_addrs()[0];
    let stop = CancellationToken::new();
    let server = tokio::spawn(bound.serve(stop.clone()));
    (addr, stop, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_end_to_end() {
    if !require_tool("kubectl") {
        return;
    }
    install_crypto_provider();
    let pki = LabPki::generate(&PkiSpec::default()).unwrap();
    let mut cfg = tls_config(&pki);
    cfg.service_account_keys = proxylab_apiserver::serviceaccount::verifying_keys_from_pem(
        pki.service_account_pub_pem.as_bytes(),
    )
    .unwrap();
    cfg.service_account_signing_key = Some(
        proxylab_apiserver::serviceaccount::pkcs8_from_pem(&pki.service_account_key_pem).unwrap(),
    );
    let (addr, stop, server) = start(cfg, 10_000).await;
    let dir = tempfile::tempdir().unwrap();
    let k = Kubectl {
        kubeconfig: kubeconfig(dir.path(), &format!("https://{addr}"), &pki),
        cache: dir.path().join("cache").display().to_string(),
    };

    let who = k.ok(&["auth", "whoami"]).await;
    assert!(
        who.contains("kubernetes-admin") && who.contains("system:masters"),
        "{who}"
    );
    let v = k.ok(&["version", "-o", "json"]).await;
    assert!(v.contains("\"serverVersion\""), "{v}");
    let r = k.ok(&["api-resources"]).await;
    assert!(r.contains("pods") && r.contains("endpointslices"), "{r}");

    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: default-token\n  annotations:\n    kubernetes.io/service-account.name: default\ntype: kubernetes.io/service-account-token\n";
    let (ok, out) = k.run(&["apply", "-f", "-"], Some(secret)).await;
    assert!(ok && out.contains("secret/default-token created"), "{out}");
    let changed = secret.replace("name: default\n", "name: default\n    team: lab\n");
    let (ok, out) = k.run(&["apply", "-f", "-"], Some(&changed)).await;
    assert!(ok && out.contains("configured"), "{out}");
    let out = k.ok(&["get", "secret", "default-token"]).await;
    assert!(
        out.contains("NAME") && out.contains("TYPE") && out.contains("default-token"),
        "{out}"
    );
    let out = k
        .ok(&[
            "get",
            "secret",
            "default-token",
            "-o",
            "jsonpath={.metadata.annotations.team}",
        ])
        .await;
    assert_eq!(out.trim(), "lab");

    k.ok(&[
        "run",
        "web",
        "--image=proxylab/echo-http:1",
        "--port=8080",
        "--labels=app=web",
    ])
    .await;
    let out = k.ok(&["get", "pods", "-o", "wide"]).await;
    assert!(
        out.contains("web") && out.contains("Pending") && out.contains("NODE"),
        "{out}"
    );
    let out = k.ok(&["describe", "pod", "web"]).await;
    assert!(out.contains("Name:") && out.contains("web"), "{out}");
    k.ok(&["label", "pod", "web", "tier=front"]).await;
    k.ok(&["annotate", "pod", "web", "note=hi"]).await;
    k.ok(&[
        "patch",
        "pod",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/x","value":"y"}]"#,
    ])
    .await;
    let out = k
        .ok(&["get", "pods", "-l", "tier=front,x=y", "-o", "name"])
        .await;
    assert_eq!(out.trim(), "pod/web");

    // Typed `kubectl create` subcommands send protobuf bodies.
    k.ok(&["create", "configmap", "pb", "--from-literal=a=b"])
        .await;
    k.ok(&["create", "secret", "generic", "pb", "--from-literal=a=b"])
        .await;
    k.ok(&["create", "serviceaccount", "pb"]).await;
    k.ok(&["create", "service", "clusterip", "pb", "--tcp=80:8080"])
        .await;
    let out = k
        .ok(&["get", "secret", "pb", "-o", "jsonpath={.data.a}"])
        .await;
    assert_eq!(out.trim(), "Yg==");
    let out = k
        .ok(&[
            "get",
            "svc",
            "pb",
            "-o",
            "jsonpath={.spec.ports[0].targetPort} {.spec.selector.app}",
        ])
        .await;
    assert_eq!(out.trim(), "8080 pb");
    k.ok(&["create", "service", "nodeport", "web", "--tcp=80:8080"])
        .await;
    let out = k.ok(&["get", "svc", "web"]).await;
    assert!(
        out.contains("NodePort") && out.contains("127.0.40."),
        "{out}"
    );
    let out = k
        .ok(&[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .await;
    assert_eq!(out.trim(), "127.0.40.1");

    k.ok(&["create", "namespace", "team"]).await;
    k.ok(&[
        "create",
        "configmap",
        "c",
        "-n",
        "team",
        "--from-literal=a=b",
    ])
    .await;
    let out = k
        .ok(&["get", "configmap", "c", "-n", "team", "-o", "yaml"])
        .await;
    assert!(out.contains("a: b"), "{out}");
    let out = k.ok(&["get", "cm", "c", "-n", "team", "-o", "json"]).await;
    let mut cm: serde_json::Value = serde_json::from_str(&out).unwrap();
    cm["data"]["a"] = serde_json::json!("z");
    let (ok, out) = k.run(&["replace", "-f", "-"], Some(&cm.to_string())).await;
    assert!(ok, "{out}");
    let (ok, out) = k.run(&["delete", "namespace", "team"], None).await;
    assert!(ok, "{out}");
    let (ok, _) = k.run(&["get", "configmap", "c", "-n", "team"], None).await;
    assert!(!ok);

    let out = k.ok(&["delete", "pod", "web"]).await;
    assert!(out.contains("deleted"), "{out}");
    let (ok, out) = k.run(&["get", "pod", "web"], None).await;
    assert!(!ok && out.contains("NotFound"), "{out}");
    // server-side apply (application/apply-patch+yaml), create then update
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n";
    let (ok, out) = k
        .run(&["apply", "--server-side", "-f", "-"], Some(cm))
        .await;
    assert!(ok && out.contains("serverside-applied"), "{out}");
    let (ok, out) = k
        .run(
            &["apply", "--server-side", "-f", "-"],
            Some(&cm.replace("\"1\"", "\"2\"")),
        )
        .await;
    assert!(ok, "{out}");
    let out = k
        .ok(&["get", "cm", "ssa", "-o", "jsonpath={.data.a}"])
        .await;
    assert_eq!(out.trim(), "2");
    // more everyday commands
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n  labels:\n    kubernetes.io/hostname: node-1\n";
    let (ok, out) = k.run(&["apply", "-f", "-"], Some(node)).await;
    assert!(ok, "{out}");
    k.ok(&["cordon", "node-1"]).await;
    let out = k
        .ok(&[
            "get",
            "node",
            "node-1",
            "-o",
            "jsonpath={.spec.unschedulable}",
        ])
        .await;
    assert_eq!(out.trim(), "true");
    k.ok(&["uncordon", "node-1"]).await;
    k.ok(&[
        "run",
        "w2",
        "--image=proxylab/echo-http:1",
        "--port=8080",
        "--labels=app=w2",
    ])
    .await;
    let out = k
        .ok(&["expose", "pod", "w2", "--port=80", "--target-port=8080"])
        .await;
    assert!(out.contains("service/w2 exposed"), "{out}");
    let out = k.ok(&["get", "all"]).await;
    assert!(
        out.contains("pod/w2") && out.contains("service/w2"),
        "{out}"
    );
    k.ok(&["get", "events", "-A"]).await;
    let out = k.ok(&["delete", "pods", "-l", "app=w2"]).await;
    assert!(out.contains("deleted"), "{out}");
    let (ok, out) = k
        .run(&["wait", "--for=delete", "pod/w2", "--timeout=10s"], None)
        .await;
    assert!(ok || out.contains("not found"), "{out}");
    // kubectl create token → TokenRequest (protobuf); the token then authenticates
    let token = k.ok(&["create", "token", "pb", "--duration=20m"]).await;
    let token = token.trim();
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        1200,
        "{claims}"
    );
    // only the token (no client certificate): a kubeconfig-less invocation
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &pki.ca.cert_pem).unwrap();
    let bare = Kubectl {
        kubeconfig: "/dev/null".into(),
        cache: k.cache.clone(),
    };
    let server_flag = format!("--server=https://{addr}");
    let ca_flag = format!("--certificate-authority={}", ca.display());
    let tok_flag = format!("--token={token}");
    let out = bare
        .ok(&[&server_flag, &ca_flag, &tok_flag, "get", "--raw", "/api"])
        .await;
    assert!(out.contains("APIVersions"), "{out}");
    let (ok, out) = bare
        .run(
            &[
                &server_flag,
                &ca_flag,
                "--token=bogus",
                "get",
                "--raw",
                "/api",
            ],
            None,
        )
        .await;
    assert!(!ok && out.contains("Unauthorized"), "{out}");
    let out = k.ok(&["get", "--raw", "/readyz?verbose"]).await;
    assert!(out.contains("readyz check passed"), "{out}");

    stop.cancel();
    server.await.unwrap().unwrap();
}

/// `kubectl --as`: the admin (`system:masters`) acts as another user with the groups asked for, and
/// a user who is not a cluster-admin is refused with kube's 403 (the lab's stand-in for RBAC's
/// `impersonate` verb, see `proxylab_apiserver::impersonation`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_as_impersonates_for_admins_only() {
    if !require_tool("kubectl") {
        return;
    }
    install_crypto_provider();
    let pki = LabPki::generate(&PkiSpec::default()).unwrap();
    let mut cfg = tls_config(&pki);
    cfg.static_tokens = vec![proxylab_apiserver::auth::TokenEntry {
        token: "bob-token".into(),
        user: "bob".into(),
        uid: "7".into(),
        groups: vec!["devs".into()],
    }];
    let (addr, stop, server) = start(cfg, 1_000).await;
    let dir = tempfile::tempdir().unwrap();
    let admin = Kubectl {
        kubeconfig: kubeconfig(dir.path(), &format!("https://{addr}"), &pki),
        cache: dir.path().join("cache").display().to_string(),
    };

    let who = admin
        .ok(&[
            "auth",
            "whoami",
            "--as",
            "alice",
            "--as-group",
            "qa",
            "-o",
            "json",
        ])
        .await;
    let v: serde_json::Value = serde_json::from_str(&who).unwrap_or_else(|e| panic!("{e}: {who}"));
    assert_eq!(v["status"]["userInfo"]["username"], "alice", "{who}");
    assert_eq!(
        v["status"]["userInfo"]["groups"],
        serde_json::json!(["qa", "system:authenticated"]),
        "{who}"
    );
    let who = admin
        .ok(&["auth", "whoami", "--as", "system:serviceaccount:team:bot"])
        .await;
    assert!(
        who.contains("system:serviceaccount:team:bot")
            && who.contains("system:serviceaccounts:team"),
        "{who}"
    );

    // bob authenticates with a token and is no cluster-admin: his --as is refused. (`auth whoami`
    // hides the 403 behind "the selfsubjectreviews API is not enabled …", and kubectl's discovery
    // client reports it as "Forbidden: unknown", so a raw read shows kube's message.)
    let bob_config = dir.path().join("bob");
    std::fs::write(
        &bob_config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {}\n\
users:\n- name: bob\n  user:\n    token: bob-token\n\
contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: bob\ncurrent-context: lab\n",
            base64::engine::general_purpose::STANDARD.encode(&pki.ca.cert_pem)
        ),
    )
    .unwrap();
    let bob = Kubectl {
        kubeconfig: bob_config.display().to_string(),
        cache: dir.path().join("cache-bob").display().to_string(),
    };
    let who = bob.ok(&["auth", "whoami"]).await;
    assert!(who.contains("bob") && who.contains("devs"), "{who}");
    let (ok, out) = bob
        .run(
            &[
                "get",
                "--raw",
                "/api/v1/namespaces",
                "--as",
                "kubernetes-admin",
                "--as-group",
                "system:masters",
            ],
            None,
        )
        .await;
    assert!(!ok, "{out}");
    assert!(
        out.contains(r#"users "kubernetes-admin" is forbidden: User "bob" cannot impersonate resource "users""#),
        "{out}"
    );
    stop.cancel();
    let _ = server.await;
}
