//! The bastion (proxy type 2, the apiserver proxy) mounted in your own axum app.
//!
//! kube-apiserver serves `/api/v1/namespaces/{ns}/services/{name}/proxy/…` (and the pod and node
//! forms) next to its other routes; the lab apiserver mounts [`Bastion::router`] the same way. Any
//! axum app can: the router needs only
//! - a [`ClusterView`] to resolve services and pods in (here built from Kubernetes-shaped JSON),
//! - the host's authentication: a middleware that puts a [`User`] in the request's extensions
//!   (a request without one gets 401 `Unauthorized`, as from kube-apiserver),
//! - to be served by `proxylab_core::serve` (it reads the connection's addresses from there).
//!
//! The program starts two "pods" (`web-1`, `web-2`), its app with a route of its own (`/`) and
//! the bastion's, and sends requests through it: without a token, through the Service (the
//! answers alternate between the pods), to one pod by a named container port, to a Service that
//! does not exist; then it prints the bastion's hop records.
//!
//!     cargo run --example bastion_in_axum

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use proxylab_bastion::{Bastion, BastionConfig, User};
use proxylab_core::balance::Algorithm;
use proxylab_core::cluster::{ClusterSnapshot, ClusterView};
use proxylab_core::telemetry::HopRecord;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The one token this app accepts (a real app would ask its identity provider).
const TOKEN: &str = "example-token";
const SERVICE: &str = "/api/v1/namespaces/default/services/web:http/proxy";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let story = demo().await?;
    println!("GET /                          → {}", story.home);
    println!(
        "GET {SERVICE}/hostname without a token → {}",
        story.anonymous
    );
    for a in &story.through_service {
        println!("GET {SERVICE}/hostname → {a}");
    }
    println!("what the pod saw           → {}", story.pod_saw);
    println!("GET …/pods/web-2:http/proxy/hostname → {}", story.by_pod);
    println!("GET …/services/shop/proxy/ → {}", story.missing);
    println!("hop records:");
    for h in &story.hops {
        let http = h.http.as_ref();
        println!(
            "  {} {} → {} ({}) {}",
            h.client,
            http.map(|x| x.path.as_str()).unwrap_or("-"),
            h.endpoint.as_deref().unwrap_or("-"),
            h.reason.as_deref().unwrap_or("-"),
            http.and_then(|x| x.status).unwrap_or_default(),
        );
    }
    Ok(())
}

/// What the demonstration saw: each answer as `status body`.
#[derive(Debug)]
pub struct Story {
    pub home: String,
    pub anonymous: String,
    pub through_service: Vec<String>,
    /// What `/echo` on the pod reports about the request it got.
    pub pod_saw: String,
    pub by_pod: String,
    pub missing: String,
    pub hops: Vec<HopRecord>,
}

pub async fn demo() -> anyhow::Result<Story> {
    proxylab_core::tls::install_crypto_provider();
    let pods = [start_pod("web-1").await?, start_pod("web-2").await?];
    let view = ClusterView::new(
        ClusterSnapshot::from_objects(objects(&pods).iter())
            .map_err(|(i, e)| anyhow::anyhow!("object {i}: {e}"))?,
    );

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = BastionConfig::new(view);
    // The destination policy: by default the bastion dials only global-unicast addresses, never
    // loopback (a proxy on a server must not become a way into that server). These pods are on
    // 127.0.0.1, so allow it explicitly — and never our own listener.
    config.allowed_networks = vec!["127.0.0.0/8".parse()?];
    config.own_addresses = vec![addr];
    // kube-apiserver picks a ready endpoint at random; round-robin makes the output predictable.
    config.resolve.algorithm = Algorithm::RoundRobin;
    let bastion = Bastion::new(config)?;

    // The app: a route of its own, and the bastion's routes behind its authentication.
    let app = Router::new()
        .route("/", get(|| async { "my app" }))
        .merge(bastion.router().layer(middleware::from_fn(authenticate)));
    let stop = CancellationToken::new();
    let serving = tokio::spawn(proxylab_core::serve::serve_http(
        listener,
        None,
        app,
        stop.clone(),
    ));

    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let get = |path: String, token: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut req = hyper::Request::get(format!("http://{addr}{path}"));
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let resp = client.request(req.body(Empty::new())?).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok(format!("{status} {}", String::from_utf8_lossy(&body)))
        }
    };

    let home = get("/".into(), None).await?;
    let anonymous = get(format!("{SERVICE}/hostname"), None).await?;
    let mut through_service = Vec::new();
    for _ in 0..4 {
        through_service.push(get(format!("{SERVICE}/hostname"), Some(TOKEN)).await?);
    }
    let pod_saw = get(format!("{SERVICE}/echo?x=1"), Some(TOKEN)).await?;
    let by_pod = get(
        "/api/v1/namespaces/default/pods/web-2:http/proxy/hostname".into(),
        Some(TOKEN),
    )
    .await?;
    let missing = get(
        "/api/v1/namespaces/default/services/shop/proxy/".into(),
        Some(TOKEN),
    )
    .await?;

    // A hop is recorded when its response is over, a moment after the client has read it.
    let instance = &bastion.instances()[0];
    for _ in 0..2000 {
        if instance.hops().recent(100).len() >= 8 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let hops = instance.hops().recent(100);
    stop.cancel();
    serving.await??;
    Ok(Story {
        home,
        anonymous,
        through_service,
        pod_saw,
        by_pod,
        missing,
        hops,
    })
}

/// The app's authentication: a known bearer token makes a [`User`]. The bastion authorizes it
/// (allow-all by default; see `proxylab_bastion::authz`) and strips `Authorization` before the
/// request goes on: a pod never sees the user's credentials.
async fn authenticate(mut req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer == Some(TOKEN) {
        req.extensions_mut().insert(User {
            name: "example-user".into(),
            groups: vec!["system:authenticated".into()],
        });
    }
    next.run(req).await
}

/// A "pod": `/hostname` answers its name, `/echo` what it was sent.
async fn start_pod(name: &'static str) -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let app = Router::new()
        .route("/hostname", get(move || async move { name }))
        .route(
            "/echo",
            get(|req: Request| async move {
                let h = |n: &str| {
                    req.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                format!(
                    "uri={} x-forwarded-uri={} x-forwarded-for={} authorization={}",
                    req.uri(),
                    h("x-forwarded-uri"),
                    h("x-forwarded-for"),
                    h("authorization"),
                )
            }),
        );
    tokio::spawn(proxylab_core::serve::serve_http(
        l,
        None,
        app,
        CancellationToken::new(),
    ));
    Ok(addr)
}

/// The Service `web` (port `http`), and per pod a Pod and an EndpointSlice. Real pods each have
/// an IP; these share 127.0.0.1 and differ by port, so each needs its own slice (a slice has one
/// port list for all its endpoints).
fn objects(pods: &[SocketAddr]) -> Vec<Value> {
    let mut objs = vec![json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.10",
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    })];
    for (i, addr) in pods.iter().enumerate() {
        let name = format!("web-{}", i + 1);
        objs.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "echo",
                                      "ports": [{"name": "http", "containerPort": addr.port()}]}]},
            "status": {"phase": "Running", "podIP": addr.ip().to_string(),
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        objs.push(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": addr.port(), "protocol": "TCP"}],
            "endpoints": [{"addresses": [addr.ip().to_string()], "conditions": {"ready": true},
                           "targetRef": {"kind": "Pod", "namespace": "default", "name": name}}]
        }));
    }
    objs
}
