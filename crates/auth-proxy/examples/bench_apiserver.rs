//! A stand-in apiserver for benchmarking proxies of type 1 (`kubectl proxy`, `auth-proxy`).
//!
//! It answers `/version` and `/api/v1/namespaces/default/pods` (a list of `PODS` pods, default 20)
//! over HTTPS with ALPN h2 + http/1.1, checks a bearer token, and writes a kubeconfig for itself. It
//! does nothing else, so that a benchmark through a proxy measures the proxy, not the apiserver.
//!
//! ```text
//! cargo run --release -p proxylab-auth-proxy --example bench_apiserver -- DIR
//! # prints "serving on https://127.0.0.1:PORT"; DIR/kubeconfig points at it
//! ```

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use bytes::Bytes;

const TOKEN: &str = "bench-token";

fn authorized(h: &HeaderMap) -> bool {
    h.get(header::AUTHORIZATION).is_some_and(|v| {
        v.as_bytes()
            .strip_prefix(b"Bearer ")
            .is_some_and(|t| t == TOKEN.as_bytes())
    })
}

/// The body is shared, not copied, per response: the server should cost as little as it can, so
/// that it is not what saturates first.
fn json(body: &Bytes, h: &HeaderMap) -> Response {
    if !authorized(h) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

// One thread: the benchmark pins this server and wrk to one core and the proxy under test to the
// other; a multi-threaded runtime would only add wake-ups between its own workers on that core.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    proxylab_core::tls::install_crypto_provider();
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: bench_apiserver DIR")?,
    );
    std::fs::create_dir_all(&dir)?;
    let pods: usize = std::env::var("PODS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(20);

    // A throwaway CA and serving certificate for 127.0.0.1.
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse()?));
    let cert = params.signed_by(&key, &rcgen::Issuer::new(ca_params, ca_key))?;
    let tls = proxylab_core::tls::ServerTls::new(
        proxylab_core::tls::certs_from_pem(cert.pem().as_bytes())?,
        proxylab_core::tls::private_key_from_pem(key.serialize_pem().as_bytes())?,
    )
    .build()?;

    let version = Bytes::from(
        serde_json::json!({"major":"1","minor":"31","gitVersion":"v1.31.0","gitCommit":"bench",
            "gitTreeState":"clean","buildDate":"2026-01-01T00:00:00Z","goVersion":"go1.22",
            "compiler":"gc","platform":"linux/amd64"})
        .to_string(),
    );
    let items: Vec<_> = (0..pods)
        .map(|i| {
            serde_json::json!({"kind":"Pod","apiVersion":"v1","metadata":{"name":format!("web-{i}"),
                "namespace":"default","uid":format!("00000000-0000-0000-0000-{i:012}"),
                "resourceVersion":"100","creationTimestamp":"2026-01-01T00:00:00Z",
                "labels":{"app":"web"}},
                "spec":{"nodeName":"node-1","containers":[{"name":"echo","image":"proxylab/echo-http:1",
                    "ports":[{"name":"http","containerPort":8080,"protocol":"TCP"}]}]},
                "status":{"phase":"Running","podIP":format!("127.0.30.{}", i % 250 + 1),
                    "conditions":[{"type":"Ready","status":"True"}]}})
        })
        .collect();
    let list = Bytes::from(
        serde_json::json!({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"100"},"items":items})
            .to_string(),
    );
    let router = Router::new()
        .route(
            "/version",
            get(move |h: HeaderMap| {
                let v = version.clone();
                async move { json(&v, &h) }
            }),
        )
        .route(
            "/api/v1/namespaces/default/pods",
            get(move |h: HeaderMap| {
                let l = list.clone();
                async move { json(&l, &h) }
            }),
        );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca.pem());
    std::fs::write(
        dir.join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: bench\nclusters:\n- name: bench\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {ca_b64}\ncontexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\nusers:\n- name: bench\n  user:\n    token: {TOKEN}\n"
        ),
    )?;
    println!("serving on https://{addr}");
    let shutdown = proxylab_core::runtime::shutdown_token();
    proxylab_core::serve::serve_http(listener, Some(tls), router, shutdown).await?;
    Ok(())
}
