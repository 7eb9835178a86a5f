//! The bastion under test, served over plain HTTP on `127.0.0.1:0`, over a cluster model of test
//! backends: three "web" pods (each an HTTP server on its own port of 127.0.0.1) behind a service,
//! and a node whose "kubelet" is an HTTPS server that requires the kubelet client certificate.
//!
//! The test host stands in for the apiserver's authentication: `Authorization: Bearer <user>`
//! makes `<user>` (groups from `X-Test-Groups`) — and is left on the request, so tests can prove
//! the bastion removes it before anything reaches a backend.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use parking_lot::Mutex;
use proxylab_bastion::{
    Authorizer, Bastion, BastionConfig, Instance, KubeletClient, Resolve, SourceAddress, User,
};
use proxylab_core::cluster::{ClusterSnapshot, ClusterView};
use proxylab_core::telemetry::{HopRecord, Metrics};
use proxylab_core::tls::pki::{LabPki, PkiSpec};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What a test backend saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
}

/// One test "pod": an HTTP server with the routes below.
pub struct Pod {
    pub name: String,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// `/stream` sends its first line, then waits for this before the second.
    pub release: Arc<Notify>,
}

#[derive(Clone)]
struct PodState {
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<Notify>,
}

pub const PAGE: &str = "<html><head><link href=\"/static/app.css\"></head>\
    <body><a href=\"/login\">in</a> <a href=\"https://example.com/\">out</a>\
    <script>var u = \"/api/data\";</script></body></html>";

async fn pod_route(State(st): State<PodState>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    st.seen.lock().push(Seen {
        method: req.method().to_string(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: req.headers().clone(),
    });
    match path.as_str() {
        "/hostname" => st.name.clone().into_response(),
        "/redirect" => {
            let to = query.strip_prefix("to=").unwrap_or("/");
            let to = percent_encoding::percent_decode_str(to)
                .decode_utf8_lossy()
                .into_owned();
            (StatusCode::FOUND, [(header::LOCATION, to)], "moved").into_response()
        }
        "/html" => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response(),
        "/html-gzip" => {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(PAGE.as_bytes()).unwrap();
            (
                [
                    (header::CONTENT_TYPE, "text/html"),
                    (header::CONTENT_ENCODING, "gzip"),
                ],
                gz.finish().unwrap(),
            )
                .into_response()
        }
        "/cors" => (
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"),
                (header::ACCESS_CONTROL_ALLOW_HEADERS, "*"),
                (header::ACCESS_CONTROL_ALLOW_METHODS, "*"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            "cors",
        )
            .into_response(),
        "/stream" => {
            let release = st.release.clone();
            let s = async_stream(release);
            Response::new(Body::from_stream(s))
        }
        "/ws" => ws_echo(req).await,
        _ => {
            let headers: BTreeMap<String, String> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            axum::Json(json!({
                "pod": st.name, "method": req.method().as_str(), "path": path,
                "query": query, "headers": headers,
            }))
            .into_response()
        }
    }
}

fn async_stream(
    release: Arc<Notify>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(0u8, move |n| {
        let release = release.clone();
        async move {
            match n {
                0 => Some((Ok(Bytes::from_static(b"first\n")), 1)),
                1 => {
                    release.notified().await;
                    Some((Ok(Bytes::from_static(b"second\n")), 2))
                }
                _ => None,
            }
        }
    })
}

/// A minimal WebSocket echo (RFC 6455 handshake; frames echoed back unparsed, which is enough
/// for a test that only checks bytes flow both ways after a 101).
async fn ws_echo(req: Request) -> Response {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return (StatusCode::BAD_REQUEST, "not a websocket request").into_response();
    };
    let accept = websocket_accept(key.to_str().unwrap_or(""));
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(up) = on_upgrade.await {
            let mut io = hyper_util::rt::TokioIo::new(up);
            let mut buf = [0u8; 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-accept", accept)
        .body(Body::empty())
        .unwrap()
}

fn websocket_accept(key: &str) -> String {
    use base64::Engine;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// Starts one test pod on `127.0.0.1:0`.
pub async fn start_pod(name: &str) -> Pod {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let release = Arc::new(Notify::new());
    let app = Router::new().fallback(any(pod_route)).with_state(PodState {
        name: name.to_owned(),
        seen: seen.clone(),
        release: release.clone(),
    });
    tokio::spawn(proxylab_core::serve::serve_http(
        l,
        None,
        app,
        CancellationToken::new(),
    ));
    Pod {
        name: name.to_owned(),
        addr,
        seen,
        release,
    }
}

/// Everything a test talks to.
pub struct Env {
    pub bastion: Bastion,
    /// Where the bastion is served (plain HTTP, the test host's authentication).
    pub addr: SocketAddr,
    pub pods: Vec<Pod>,
    pub kubelet: Kubelet,
    pub view: ClusterView,
}

impl Env {
    /// The hop records so far.
    pub fn hops(&self) -> Vec<HopRecord> {
        self.bastion.instances()[0].hops().recent(1000)
    }

    /// Waits for the `n`-th hop record (a hop is recorded when its response is really over, a
    /// moment after the client has read it) and returns it.
    pub async fn hop(&self, n: usize) -> HopRecord {
        proxylab_test_support::eventually(&format!("hop record #{n}"), || {
            self.hops().get(n - 1).cloned()
        })
        .await
    }

    /// GET through the bastion as `user`.
    pub async fn get(&self, path: &str, user: &str) -> (StatusCode, HeaderMap, String) {
        proxylab_test_support::http::get(
            self.addr,
            path,
            &[("authorization", &format!("Bearer {user}"))],
        )
        .await
    }

    /// A request through the bastion as raw bytes; everything read until close.
    pub async fn raw(&self, request: &str) -> String {
        proxylab_test_support::http::raw_exchange(self.addr, request).await
    }
}

/// The cluster objects of [`Env`].
pub fn objects(pods: &[Pod], kubelet: SocketAddr) -> Vec<Value> {
    let mut objs = vec![
        json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},
            "spec":{"clusterIP":"10.96.0.10","ports":[
                {"name":"http","port":80,"targetPort":"http"},
                {"name":"metrics","port":9090,"targetPort":9090}]}}),
        json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"empty","namespace":"default"},
            "spec":{"clusterIP":"10.96.0.11","ports":[{"name":"http","port":80}]}}),
        json!({"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1"},
            "status":{"addresses":[{"type":"Hostname","address":"node-1.invalid"},
                                   {"type":"InternalIP","address":"127.0.0.1"}],
                      "daemonEndpoints":{"kubeletEndpoint":{"Port": kubelet.port()}}}}),
    ];
    for p in pods {
        objs.push(json!({"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":p.name,"namespace":"default","uid":format!("uid-{}", p.name)},
            "spec":{"nodeName":"node-1","containers":[{"name":"echo","ports":[
                {"name":"http","containerPort":p.addr.port()}]}]},
            "status":{"phase":"Running","podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}],
                      "conditions":[{"type":"Ready","status":"True"}]}}));
        objs.push(
            json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
            "metadata":{"name":format!("web-{}", p.name),"namespace":"default",
                        "labels":{"kubernetes.io/service-name":"web"}},
            "addressType":"IPv4","ports":[{"name":"http","port":p.addr.port(),"protocol":"TCP"}],
            "endpoints":[{"addresses":["127.0.0.1"],"conditions":{"ready":true},"nodeName":"node-1",
                          "targetRef":{"kind":"Pod","namespace":"default","name":p.name}}]}),
        );
    }
    objs
}

/// The test host: `Authorization: Bearer <user>` → [`User`]; the header stays on the request.
async fn test_authn(mut req: Request, next: Next) -> Response {
    let user = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let groups: Vec<String> = req
        .headers()
        .get("x-test-groups")
        .and_then(|v| v.to_str().ok())
        .map(|g| g.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(name) = user {
        req.extensions_mut().insert(User { name, groups });
    }
    next.run(req).await
}

/// Changes the cluster objects before the bastion sees them.
pub type EditObjects = Box<dyn FnOnce(&mut Vec<Value>) + Send>;

/// Knobs of [`start`].
pub struct Options {
    pub authorizer: Option<Arc<dyn Authorizer>>,
    pub resolver: Option<Arc<dyn Resolve>>,
    pub allowed: Vec<&'static str>,
    pub edit: EditObjects,
    pub balance: proxylab_core::balance::Algorithm,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            authorizer: None,
            resolver: None,
            allowed: vec!["127.0.0.0/8"],
            edit: Box::new(|_| {}),
            balance: proxylab_core::balance::Algorithm::Random,
        }
    }
}

pub async fn start(opts: Options) -> Env {
    proxylab_core::tls::install_crypto_provider();
    let mut pods = Vec::new();
    for name in ["web-1", "web-2", "web-3"] {
        pods.push(start_pod(name).await);
    }
    let kubelet = start_kubelet().await;
    let mut objs = objects(&pods, kubelet.addr);
    (opts.edit)(&mut objs);
    let view = ClusterView::new(ClusterSnapshot::from_objects(objs.iter()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = BastionConfig::new(view.clone());
    config.resolve.preferred_address_types = vec!["InternalIP".into(), "Hostname".into()];
    config.resolve.algorithm = opts.balance;
    config.allowed_networks = opts.allowed.iter().map(|n| n.parse().unwrap()).collect();
    config.own_addresses = vec![addr];
    config.source = SourceAddress::Listener;
    config.kubelet_client = Some(kubelet.client());
    config.instances = vec![Instance::new("test", None, &Metrics::new())];
    config.connect_timeout = Duration::from_secs(5);
    if let Some(a) = opts.authorizer {
        config.authorizer = a;
    }
    if let Some(r) = opts.resolver {
        config.resolver = r;
    }
    let bastion = Bastion::new(config).unwrap();
    let app = bastion.router().layer(middleware::from_fn(test_authn));
    tokio::spawn(proxylab_core::serve::serve_http(
        listener,
        None,
        app,
        CancellationToken::new(),
    ));
    Env {
        bastion,
        addr,
        pods,
        kubelet,
        view,
    }
}

/// A stand-in kubelet: HTTPS, client certificate from the test CA required.
pub struct Kubelet {
    pub addr: SocketAddr,
    pub pki: LabPki,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Kubelet {
    pub fn client(&self) -> KubeletClient {
        let (chain, key) = self.pki.apiserver_kubelet_client.der().unwrap();
        KubeletClient {
            chain,
            key,
            ca: vec![self.pki.ca_der().unwrap()],
        }
    }
}

async fn kubelet_route(State(seen): State<Arc<Mutex<Vec<Seen>>>>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<proxylab_core::serve::ConnInfo>()
        .and_then(|c| c.peer.clone());
    seen.lock().push(Seen {
        method: req.method().to_string(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: req.headers().clone(),
    });
    if peer.is_none() {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        return "ok".into_response();
    }
    if let Some(rest) = path.strip_prefix("/containerLogs/") {
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.get(1) == Some(&"gone") {
            return (StatusCode::NOT_FOUND, "pod does not exist\n").into_response();
        }
        let follow = req.uri().query().unwrap_or("").contains("follow=true");
        let first = format!("log of {}\n", parts.join("/"));
        if !follow {
            return ([(header::CONTENT_TYPE, "text/plain")], first).into_response();
        }
        let s = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(first))])
            .chain(futures_util::stream::pending());
        return Response::new(Body::from_stream(s));
    }
    if path.starts_with("/exec/")
        || path.starts_with("/attach/")
        || path.starts_with("/portForward/")
    {
        if req.headers().get(header::UPGRADE).is_none() {
            return (StatusCode::BAD_REQUEST, "upgrade required").into_response();
        }
        let on_upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                let mut io = hyper_util::rt::TokioIo::new(up);
                let _ = io.write_all(b"kubelet-stream-open\n").await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1")
            .header("x-stream-protocol-version", "v4.channel.k8s.io")
            .body(Body::empty())
            .unwrap();
    }
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

use futures_util::StreamExt;

/// Starts the stand-in kubelet on `127.0.0.1:0`.
pub async fn start_kubelet() -> Kubelet {
    let pki = LabPki::generate(&PkiSpec {
        nodes: vec![("node-1".into(), "127.0.0.1".parse().unwrap())],
        ..Default::default()
    })
    .unwrap();
    let (chain, key) = pki.kubelets["node-1"].der().unwrap();
    let tls = proxylab_core::tls::ServerTls::new(chain, key)
        .client_cas(
            vec![pki.ca_der().unwrap()],
            proxylab_core::tls::ClientAuth::Optional,
        )
        .build()
        .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .fallback(any(kubelet_route))
        .with_state(seen.clone());
    tokio::spawn(proxylab_core::serve::serve_http(
        l,
        Some(tls),
        app,
        CancellationToken::new(),
    ));
    Kubelet { addr, pki, seen }
}

/// A raw TCP "backend" that answers the first request head with `answer` and then records every
/// byte it still receives (for the upgrade-refusal CVE tests).
pub struct RawBackend {
    pub addr: SocketAddr,
    pub after: Arc<Mutex<Vec<u8>>>,
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

pub async fn raw_backend(answer: &'static str) -> RawBackend {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let after = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (a, c) = (after.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let a = a.clone();
            tokio::spawn(async move {
                let _ = proxylab_test_support::http::read_head(&mut s).await;
                let _ = s.write_all(answer.as_bytes()).await;
                let mut buf = [0u8; 1024];
                loop {
                    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => a.lock().extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
            });
        }
    });
    RawBackend {
        addr,
        after,
        connections,
    }
}

/// A pod object named `name` at `127.0.0.1:port` (for raw backends).
pub fn pod_object(name: &str, port: u16) -> Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":name,"namespace":"default"},
        "spec":{"nodeName":"node-1","containers":[{"name":"c","ports":[{"containerPort":port}]}]},
        "status":{"podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}]}})
}

/// A JSON body as a value.
pub fn json_body(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}
