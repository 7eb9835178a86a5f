//! One test per class of the apiserver proxy's security history (reference/apiserver-proxy.md),
//! plus credentials and authentication. Each says which CVE it carries.

mod common;

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Options, json_body, pod_object, raw_backend, start};
use http::StatusCode;
use proxylab_bastion::{Abac, Resolve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Sends an upgrade through the bastion to a raw backend answering `answer`, then more bytes; returns
/// what the client read and what the backend received after its answer.
async fn refused_upgrade(answer: &'static str) -> (String, Vec<u8>, usize) {
    let backend = raw_backend(answer).await;
    let port = backend.addr.port();
    let env = start(Options {
        edit: Box::new(move |objs| objs.push(pod_object("raw", port))),
        ..Default::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    s.write_all(upgrade_request(&format!("{PODS}/raw/proxy/ws")).as_bytes())
        .await
        .unwrap();
    // What a client that does not wait for the answer sends next: tunnel bytes, or a smuggled
    // request meant to ride the bastion's connection to the backend.
    let _ = s
        .write_all(b"GET /secret HTTP/1.1\r\nHost: backend\r\n\r\nTUNNEL-BYTES")
        .await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the bastion kept the client connection open");
    // Give a (wrong) relay a moment to deliver bytes; the backend records for 5 s after its answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = backend.after.lock().clone();
    (
        String::from_utf8_lossy(&out).into_owned(),
        after,
        backend.connections.load(Ordering::SeqCst),
    )
}

/// CVE-2018-1002105: an error answer to an upgrade is relayed, both sides are closed, and nothing
/// the client sends afterwards reaches the backend.
#[tokio::test]
async fn cve_2018_1002105_refused_upgrade_closes_both_sides() {
    let (client, after, conns) = refused_upgrade(
        "HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nContent-Type: text/plain\r\n\r\nforbidden",
    )
    .await;
    assert!(client.starts_with("HTTP/1.1 403"), "{client}");
    assert!(
        client.to_ascii_lowercase().contains("connection: close"),
        "{client}"
    );
    assert!(client.ends_with("forbidden"), "{client}");
    assert!(
        after.is_empty(),
        "bytes reached the backend: {:?}",
        String::from_utf8_lossy(&after)
    );
    assert_eq!(conns, 1);
}

/// CVE-2020-8559: a 2xx or 3xx to an upgrade is neither a tunnel nor relayed: an error, nothing
/// tunnelled, the connection closed.
#[tokio::test]
async fn cve_2020_8559_non_101_below_400_is_an_error() {
    for answer in [
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/steal\r\nContent-Length: 0\r\n\r\n",
    ] {
        let (client, after, _) = refused_upgrade(answer).await;
        assert!(client.starts_with("HTTP/1.1 500"), "{answer}: {client}");
        assert!(
            client.contains("invalid upgrade response: status code"),
            "{client}"
        );
        assert!(
            !client.to_ascii_lowercase().contains("location:"),
            "{client}"
        );
        assert!(after.is_empty(), "{answer}: bytes reached the backend");
    }
}

/// CVE-2018-1002102: a redirect answering an upgrade is never followed (one connection to the
/// backend, none to the Location).
#[tokio::test]
async fn cve_2018_1002102_redirect_on_upgrade_is_not_followed() {
    let target = raw_backend(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    let answer: &'static str = Box::leak(
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{}/ws\r\nContent-Length: 0\r\n\r\n",
            target.addr
        )
        .into_boxed_str(),
    );
    let (client, _, conns) = refused_upgrade(answer).await;
    assert!(!client.starts_with("HTTP/1.1 101"), "{client}");
    assert_eq!(conns, 1);
    assert_eq!(
        target.connections.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}

/// CVE-2020-8561 / CVE-2022-3172: a backend's 3xx is passed to the client (its Location kept
/// inside the proxy), never followed by the proxy.
#[tokio::test]
async fn cve_2020_8561_backend_redirects_are_not_followed() {
    let elsewhere = raw_backend("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen").await;
    let env = start(Options::default()).await;
    let to = format!("http%3A%2F%2F{}%2Fsteal", elsewhere.addr);
    let (code, h, _) = env
        .get(&format!("{PODS}/web-1/proxy/redirect?to={to}"), "alice")
        .await;
    assert_eq!(code, StatusCode::FOUND);
    assert_eq!(h["location"], format!("http://{}/steal", elsewhere.addr));
    assert_eq!(elsewhere.connections.load(Ordering::SeqCst), 0);
    // A redirect into the backend's own paths cannot climb out of the proxy prefix.
    let (_, h, _) = env
        .get(
            &format!("{PODS}/web-1/proxy/redirect?to=%2F..%2F..%2F..%2F..%2Fapi%2Fv1%2Fsecrets"),
            "alice",
        )
        .await;
    assert_eq!(h["location"], format!("{PODS}/web-1/proxy/api/v1/secrets"));
}

/// Answers a fixed sequence of address lists, counting lookups.
struct Rebinding {
    answers: Vec<Vec<IpAddr>>,
    calls: AtomicUsize,
}

impl Resolve for Rebinding {
    fn lookup(
        &self,
        _host: &str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let a = self.answers[n.min(self.answers.len() - 1)].clone();
        Box::pin(async move { Ok(a) })
    }
}

/// CVE-2020-8562: a name is resolved once, and the address checked is the address dialled — a
/// rebinding resolver that answers an allowed address, then a forbidden one, cannot redirect the
/// dial; when it answers the forbidden one, nothing is dialled.
#[tokio::test]
async fn cve_2020_8562_resolved_names_are_pinned() {
    // Only 127.0.0.1 is allowed; the "secret" listens on 127.0.0.2 at the kubelet's port.
    let resolver = Arc::new(Rebinding {
        answers: vec![
            vec!["127.0.0.1".parse().unwrap()],
            vec!["127.0.0.2".parse().unwrap()],
        ],
        calls: AtomicUsize::new(0),
    });
    let env = start(Options {
        resolver: Some(resolver.clone()),
        allowed: vec!["127.0.0.1/32"],
        edit: Box::new(|objs| {
            for o in objs.iter_mut() {
                if o["kind"] == "Node" {
                    // Only a name: the dialler must resolve it.
                    o["status"]["addresses"] =
                        serde_json::json!([{"type": "Hostname", "address": "node-1"}]);
                }
            }
        }),
        ..Default::default()
    })
    .await;
    let secret = tokio::net::TcpListener::bind(("127.0.0.2", env.kubelet.addr.port())).await;
    let secret_hits = Arc::new(AtomicUsize::new(0));
    if let Ok(l) = secret {
        let hits = secret_hits.clone();
        tokio::spawn(async move {
            while l.accept().await.is_ok() {
                hits.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let (code, _, body) = env.get("/api/v1/nodes/node-1/proxy/healthz", "alice").await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(
        resolver.calls.load(Ordering::SeqCst),
        1,
        "resolved more than once"
    );
    // The pooled connection is reused; a new one (an upgrade) resolves again and gets the
    // forbidden answer: refused before any dial.
    let raw = env
        .raw(&upgrade_request(&format!(
            "{PODS}/web-1/exec?command=ls&stdout=true"
        )))
        .await;
    assert!(raw.starts_with("HTTP/1.1 500"), "{raw}");
    assert!(raw.contains("address not allowed: 127.0.0.2"), "{raw}");
    assert_eq!(
        secret_hits.load(Ordering::SeqCst),
        0,
        "the forbidden address was dialled"
    );
}

/// CVE-2022-3294: node addresses that are (or resolve to) loopback, link-local or otherwise not
/// global unicast are refused — default port, explicit port, and upgrades (exec to a pod on it).
#[tokio::test]
async fn cve_2022_3294_node_addresses_are_validated_for_every_path() {
    // No allowed networks: the default policy, under which 127.0.0.1 is loopback.
    let env = start(Options {
        allowed: vec![],
        ..Default::default()
    })
    .await;
    let pport = env.pods[0].addr.port();
    for path in [
        "/api/v1/nodes/node-1/proxy/healthz".to_string(),
        format!("/api/v1/nodes/node-1:{pport}/proxy/hostname"),
        format!("{PODS}/web-1/log"),
        format!("{PODS}/web-1/proxy/hostname"),
    ] {
        let (code, _, body) = env.get(&path, "alice").await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(json_body(&body)["message"], "address not allowed", "{path}");
    }
    let raw = env
        .raw(&upgrade_request(&format!(
            "{PODS}/web-1/exec?command=ls&stdout=true"
        )))
        .await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("address not allowed"), "{raw}");
    assert!(env.kubelet.seen.lock().is_empty());
    assert!(env.pods[0].seen.lock().is_empty());

    // A name that resolves to the cloud metadata address: refused at the dial, never connected.
    let resolver = Arc::new(Rebinding {
        answers: vec![vec!["169.254.169.254".parse().unwrap()]],
        calls: AtomicUsize::new(0),
    });
    let env = start(Options {
        resolver: Some(resolver),
        edit: Box::new(|objs| {
            for o in objs.iter_mut() {
                if o["kind"] == "Node" {
                    o["status"]["addresses"] =
                        serde_json::json!([{"type": "Hostname", "address": "metadata.test"}]);
                }
            }
        }),
        ..Default::default()
    })
    .await;
    let (code, _, body) = env
        .get("/api/v1/nodes/node-1/proxy/latest/meta-data", "alice")
        .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("address not allowed: 169.254.169.254:"),
        "{body}"
    );
    assert!(body.contains("link-local"), "{body}");
}

/// kubernetes#119270: the proxy never dials its own listen address (nodes/proxy made the apiserver
/// call itself with its own credentials).
#[tokio::test]
async fn kubernetes_119270_the_proxy_never_dials_itself() {
    let env = start(Options::default()).await;
    let own = env.addr.port();
    // A node whose kubelet port is the bastion's own, and a pod port that is too.
    env.view.update(|s| {
        s.apply(
            proxylab_core::cluster::from_k8s(&serde_json::json!({"apiVersion":"v1","kind":"Node",
                "metadata":{"name":"loop"},
                "status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}],
                          "daemonEndpoints":{"kubeletEndpoint":{"Port": own}}}}))
            .unwrap()
            .unwrap(),
        )
    });
    for path in [
        "/api/v1/nodes/loop/proxy/api/v1/nodes/loop/proxy/".to_string(),
        format!("{PODS}/web-1:{own}/proxy/api/v1/namespaces/default/pods/web-1/proxy/"),
    ] {
        let (code, _, body) = env.get(&path, "alice").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert!(body.contains("this proxy's own listen address"), "{body}");
    }
    // Exactly two requests reached the bastion: nothing was proxied back into it.
    let hops = env.hops();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while env.hops().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(hops.len() <= 2 && env.hops().len() == 2, "{:?}", env.hops());
}

const READONLY_ALICE: &str = concat!(
    r#"{"apiVersion":"abac.authorization.kubernetes.io/v1beta1","kind":"Policy","spec":{"user":"alice","namespace":"*","resource":"*","apiGroup":"*","readonly":true}}"#,
    "\n",
    r#"{"apiVersion":"abac.authorization.kubernetes.io/v1beta1","kind":"Policy","spec":{"group":"system:masters","namespace":"*","resource":"*","apiGroup":"*"}}"#,
);

/// KEP-4006: a WebSocket exec is a GET, but needs `create`: a `get`-only user is refused, while
/// reading logs and GETs through the proxy stay allowed.
#[tokio::test]
async fn kep_4006_exec_attach_portforward_need_create() {
    let env = start(Options {
        authorizer: Some(Arc::new(Abac::parse(READONLY_ALICE).unwrap())),
        ..Default::default()
    })
    .await;
    let (code, _, _) = env
        .get(&format!("{PODS}/web-1/proxy/hostname"), "alice")
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _, body) = env.get(&format!("{PODS}/web-1/log"), "alice").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    for sub in [
        "exec?command=ls&stdout=true",
        "attach?stdout=true",
        "portforward?ports=8080",
    ] {
        let raw = env
            .raw(&upgrade_request(&format!("{PODS}/web-1/{sub}")))
            .await;
        assert!(raw.starts_with("HTTP/1.1 403"), "{sub}: {raw}");
        let name = sub.split('?').next().unwrap();
        assert!(
            raw.contains(&format!(
                r#"pods \"web-1\" is forbidden: User \"alice\" cannot create resource \"pods/{name}\" in API group \"\" in the namespace \"default\""#
            )),
            "{raw}"
        );
    }
    // SPDY's POST is create: refused too. A write through the proxy (POST) as well.
    let raw = env
        .raw(&format!(
            "POST {PODS}/web-1/proxy/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ))
        .await;
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    assert!(
        env.kubelet
            .seen
            .lock()
            .iter()
            .all(|r| !r.path_and_query.starts_with("/exec"))
    );
    // An admin may.
    let mut s = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    s.write_all(
        upgrade_request(&format!("{PODS}/web-1/exec?command=ls&stdout=true"))
            .replace(
                "Authorization: Bearer alice\r\n",
                "Authorization: Bearer root\r\nX-Test-Groups: system:masters\r\n",
            )
            .as_bytes(),
    )
    .await
    .unwrap();
    let head = proxylab_test_support::http::read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

/// Credentials never reach a backend: not the user's token, not impersonation, not a front
/// proxy's identity headers — for the proxy, for upgrades, for the kubelet.
#[tokio::test]
async fn credentials_never_reach_a_backend() {
    let env = start(Options::default()).await;
    let secrets = "Impersonate-User: admin\r\nImpersonate-Group: system:masters\r\nX-Remote-User: admin\r\nX-Remote-Group: system:masters\r\n";
    let _ = env
        .raw(&format!(
            "GET {PODS}/web-1/proxy/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n{secrets}Connection: close\r\n\r\n"
        ))
        .await;
    let mut s = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    s.write_all(
        upgrade_request(&format!("{PODS}/web-1/exec?command=ls&stdout=true"))
            .replace("\r\n\r\n", &format!("\r\n{secrets}\r\n"))
            .as_bytes(),
    )
    .await
    .unwrap();
    let head = proxylab_test_support::http::read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (code, _, _) = env.get(&format!("{PODS}/web-1/log"), "alice").await;
    assert_eq!(code, StatusCode::OK);
    let mut seen = env.pods[0].seen.lock().clone();
    seen.extend(env.kubelet.seen.lock().clone());
    assert!(seen.len() >= 3, "{seen:?}");
    for r in &seen {
        for h in [
            "authorization",
            "impersonate-user",
            "impersonate-group",
            "x-remote-user",
            "x-remote-group",
        ] {
            assert!(
                r.headers.get(h).is_none(),
                "{h} reached {}",
                r.path_and_query
            );
        }
    }
}
