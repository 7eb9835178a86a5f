//! A fake apiserver: HTTPS on `127.0.0.1:0` with its own CA, recording every request it receives,
//! answering the few paths a proxy test needs (`/version`, `/readyz` and its kin, discovery, a pod list, a watch whose second
//! event the test releases, `/api/v1/cut` whose body fails after its first chunk once released,
//! `/echo`, redirects) and upgrades (`?mode=ok|ws|403|302`).
//!
//! For proxies in front of an apiserver (the auth-proxy, the bastion): the test looks at what arrived
//! (`seen`), how many connections are open (`open`) and what crossed an upgraded tunnel
//! (`tunnel_bytes`). [`start_apiserver_with`] serves plain HTTP instead, or asks clients for a
//! certificate and records the one presented (for flags such as `--client-certificate`). Tests of
//! the apiserver itself use the real one (`proxylab-apiserver`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// One request as the fake apiserver saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// The client certificate the connection presented (only asked for with
    /// [`FakeApiserverOptions::client_ca_pem`]).
    pub client_cert: Option<CertificateDer<'static>>,
    /// The address the connection came from (a proxy's upstream local address).
    pub peer: SocketAddr,
}

/// The fake apiserver.
pub struct FakeApiserver {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections currently open.
    pub open: Arc<AtomicUsize>,
    /// Releases the second event of a watch.
    pub release: Arc<Notify>,
    /// Bytes the backend read on upgraded connections (to prove nothing leaks after a refusal).
    pub tunnel_bytes: Arc<AtomicUsize>,
    pub stop: CancellationToken,
}

impl Drop for FakeApiserver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeApiserver {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    pub fn seen_path(&self, prefix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path_and_query.starts_with(prefix))
            .collect()
    }
}

/// A CA and a serving certificate for 127.0.0.1 / localhost.
pub fn test_pki() -> (String, String, String) {
    test_pki_for(&["localhost"], true)
}

/// A CA and a serving certificate for these DNS names (and 127.0.0.1 when `loopback_ip`).
pub fn test_pki_for(names: &[&str], loopback_ip: bool) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test-ca");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    if loopback_ip {
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    }
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

pub async fn start_apiserver() -> FakeApiserver {
    start_apiserver_for(&["localhost"], true).await
}

/// The fake apiserver with a certificate for these names.
pub async fn start_apiserver_for(names: &[&str], loopback_ip: bool) -> FakeApiserver {
    start_apiserver_with(FakeApiserverOptions {
        names: names.iter().map(|n| n.to_string()).collect(),
        loopback_ip,
        ..FakeApiserverOptions::default()
    })
    .await
}

/// How [`start_apiserver_with`] serves.
#[derive(Debug, Clone)]
pub struct FakeApiserverOptions {
    /// DNS names on the serving certificate.
    pub names: Vec<String>,
    /// 127.0.0.1 on the serving certificate too.
    pub loopback_ip: bool,
    /// Ask clients for a certificate issued by this CA (not required; what was presented is
    /// recorded in [`Seen::client_cert`]).
    pub client_ca_pem: Option<String>,
    /// Plain HTTP instead of HTTPS (`ca_pem` is then unused).
    pub plain_http: bool,
}

impl Default for FakeApiserverOptions {
    fn default() -> Self {
        Self {
            names: vec!["localhost".into()],
            loopback_ip: true,
            client_ca_pem: None,
            plain_http: false,
        }
    }
}

/// The fake apiserver, as `options` say.
pub async fn start_apiserver_with(options: FakeApiserverOptions) -> FakeApiserver {
    // Clients under test (kube-rs among them) may want a process-wide provider, as the binaries
    // install one first thing; ring, the workspace's one provider. Idempotent.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let names: Vec<&str> = options.names.iter().map(String::as_str).collect();
    let (ca_pem, cert_pem, key_pem) = test_pki_for(&names, options.loopback_ip);
    let mut tls = server_tls(&cert_pem, &key_pem);
    if let Some(client_ca) = &options.client_ca_pem {
        tls = with_optional_client_auth(&tls, client_ca);
    }
    let acceptor = (!options.plain_http).then(|| tokio_rustls::TlsAcceptor::from(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let open = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let tunnel_bytes = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let ctx = Arc::new(Ctx {
        seen: seen.clone(),
        release: release.clone(),
        tunnel_bytes: tunnel_bytes.clone(),
        addr,
    });
    let (o, s) = (open.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = s.cancelled() => return,
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            let acceptor = acceptor.clone();
            let ctx = ctx.clone();
            let open = o.clone();
            open.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let serve = |io, client_cert: Option<CertificateDer<'static>>| async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let ctx = ctx.clone();
                        let client_cert = client_cert.clone();
                        async move { Ok::<_, Infallible>(handle(ctx, req, client_cert, peer).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(io, svc)
                        .await;
                };
                match acceptor {
                    None => serve(TokioIo::new(Box::new(tcp) as Box<dyn Io>), None).await,
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let cert = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| c.clone().into_owned());
                            serve(TokioIo::new(Box::new(tls) as Box<dyn Io>), cert).await;
                        }
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    FakeApiserver {
        addr,
        ca_pem,
        seen,
        open,
        release,
        tunnel_bytes,
        stop,
    }
}

struct Ctx {
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<Notify>,
    tunnel_bytes: Arc<AtomicUsize>,
    addr: SocketAddr,
}

fn json(body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A plain or TLS connection.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn handle(
    ctx: Arc<Ctx>,
    mut req: Request<Incoming>,
    client_cert: Option<CertificateDer<'static>>,
    peer: SocketAddr,
) -> Response<Body> {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    ctx.seen.lock().push(Seen {
        method: req.method().to_string(),
        path_and_query: pq.clone(),
        version: req.version(),
        headers: req.headers().clone(),
        client_cert,
        peer,
    });
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let is_upgrade = req
        .headers()
        .get("connection")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    if is_upgrade {
        let mode = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("mode="))
            .unwrap_or("ok")
            .to_owned();
        return match mode.as_str() {
            "ok" => {
                let on = hyper::upgrade::on(&mut req);
                let counter = ctx.tunnel_bytes.clone();
                tokio::spawn(async move {
                    if let Ok(up) = on.await {
                        let mut io = TokioIo::new(up);
                        let mut buf = [0u8; 4096];
                        loop {
                            match io.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    counter.fetch_add(n, Ordering::SeqCst);
                                    if io.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                });
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("connection", "Upgrade")
                    .header(
                        "upgrade",
                        req.headers()
                            .get("upgrade")
                            .cloned()
                            .unwrap_or_else(|| "x".parse().unwrap()),
                    )
                    .body(Body::empty())
                    .unwrap()
            }
            "ws" => {
                let key = req
                    .headers()
                    .get("sec-websocket-key")
                    .map(|k| k.as_bytes().to_vec())
                    .unwrap_or_default();
                let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(up) = on.await {
                        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                            TokioIo::new(up),
                            tokio_tungstenite::tungstenite::protocol::Role::Server,
                            None,
                        )
                        .await;
                        while let Some(Ok(msg)) = ws.next().await {
                            if msg.is_text() || msg.is_binary() {
                                if ws.send(msg).await.is_err() {
                                    break;
                                }
                            } else if msg.is_close() {
                                break;
                            }
                        }
                    }
                });
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("connection", "Upgrade")
                    .header("upgrade", "websocket")
                    .header("sec-websocket-accept", accept)
                    .body(Body::empty())
                    .unwrap()
            }
            "403" => Response::builder()
                .status(StatusCode::FORBIDDEN)
                .body(Body::from("denied"))
                .unwrap(),
            "302" => Response::builder()
                .status(StatusCode::FOUND)
                .header("location", "http://127.0.0.1:9/elsewhere")
                .body(Body::empty())
                .unwrap(),
            _ => Response::builder()
                .status(StatusCode::OK)
                .body(Body::from("not an upgrade"))
                .unwrap(),
        };
    }
    match path.as_str() {
        "/version" => json(serde_json::json!({
            "major": "1", "minor": "31", "gitVersion": "v1.31.0", "gitCommit": "test",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22",
            "compiler": "gc", "platform": "linux/amd64"
        })),
        "/api" => json(serde_json::json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ctx.addr.to_string()}]
        })),
        "/apis" => json(serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})),
        "/api/v1" => json(serde_json::json!({
            "kind": "APIResourceList", "groupVersion": "v1",
            "resources": [{"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                           "verbs": ["get", "list", "watch", "create", "delete"], "shortNames": ["po"]}]
        })),
        "/api/v1/namespaces/default/pods" if query.contains("watch=true") || query.contains("watch=1") => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            let release = ctx.release.clone();
            tokio::spawn(async move {
                let ev = |name: &str, rv: u32| {
                    Frame::data(Bytes::from(format!(
                        "{{\"type\":\"ADDED\",\"object\":{{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{{\"name\":\"{name}\",\"namespace\":\"default\",\"resourceVersion\":\"{rv}\"}}}}}}\n"
                    )))
                };
                let _ = tx.send(Ok(ev("first", 11))).await;
                release.notified().await;
                let _ = tx.send(Ok(ev("second", 12))).await;
            });
            let stream = tokio_stream_from(rx);
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::new(StreamBody::new(stream)))
                .unwrap()
        }
        "/api/v1/namespaces/default/pods" => json(serde_json::json!({
            "kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "10"},
            "items": [{"kind": "Pod", "apiVersion": "v1",
                       "metadata": {"name": "web-1", "namespace": "default", "resourceVersion": "10",
                                    "creationTimestamp": "2026-01-01T00:00:00Z"}}]
        })),
        // A response the apiserver cuts mid-body: one chunk, then, once released, the stream
        // fails (the connection is reset under it).
        "/api/v1/cut" => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
            let release = ctx.release.clone();
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"partial")))).await;
                release.notified().await;
                let _ = tx.send(Err(std::io::Error::other("apiserver went away"))).await;
            });
            Response::new(Body::new(StreamBody::new(tokio_stream_from(rx))))
        }
        // What a balancer's health checks ask (kube-apiserver answers them to anyone).
        "/readyz" | "/livez" | "/healthz" => Response::builder()
            .header("content-type", "text/plain; charset=utf-8")
            .body(Body::from("ok"))
            .unwrap(),
        "/redirect" => Response::builder()
            .status(StatusCode::FOUND)
            .header("location", "http://127.0.0.1:9/elsewhere")
            .body(Body::empty())
            .unwrap(),
        "/echo" => {
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Response::new(Body::from(body))
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#,
            ))
            .unwrap(),
    }
}

fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// Writes a kubeconfig for `server` with `ca_pem` and a user with `user_yaml` (indented fields).
pub fn write_kubeconfig(dir: &Path, server: &str, ca_pem: &str, user_yaml: &str) -> PathBuf {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    write_kubeconfig_with(
        dir,
        server,
        &format!("    certificate-authority-data: {ca}"),
        user_yaml,
    )
}

/// As [`write_kubeconfig`], with the cluster's fields other than `server` given as YAML lines.
pub fn write_kubeconfig_with(
    dir: &Path,
    server: &str,
    cluster_yaml: &str,
    user_yaml: &str,
) -> PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster:\n    server: {server}\n{cluster_yaml}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: tester\nusers:\n- name: tester\n  user:\n{user_yaml}\n"
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    path
}

/// A rustls server configuration for this certificate, ALPN `h2` and `http/1.1`, ring as the
/// provider (the one the whole workspace uses).
pub fn server_tls(cert_pem: &str, key_pem: &str) -> Arc<rustls::ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// `config` asking for (not requiring) a client certificate issued by `client_ca_pem`.
fn with_optional_client_auth(
    config: &rustls::ServerConfig,
    client_ca_pem: &str,
) -> Arc<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(ca.expect("client CA PEM")).expect("client CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .expect("client verifier");
    let mut with_auth = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(config.cert_resolver.clone());
    with_auth.alpn_protocols = config.alpn_protocols.clone();
    Arc::new(with_auth)
}
