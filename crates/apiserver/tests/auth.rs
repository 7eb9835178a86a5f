//! Authentication: static tokens, service-account JWTs, client certificates and front-proxy headers over
//! real TLS, anonymous paths, 401s — plus the discovery and health endpoints.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine;
use common::*;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use proxylab_apiserver::auth::RequestHeaderConfig;
use proxylab_apiserver::serviceaccount::{SaClaims, sign_legacy_token, verifying_keys_from_pem};
use proxylab_apiserver::{ApiServer, ServingCert, UserInfo};
use proxylab_core::tls::pki::{CaSigner, LabPki, PkiSpec};
use proxylab_core::tls::{ClientTls, install_crypto_provider};
use proxylab_store::MemoryStore;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn whoami_routes() -> Router {
    Router::new().route(
        "/whoami",
        get(|Extension(u): Extension<UserInfo>| async move { Json(u) }),
    )
}

fn anon(lab: &Lab, path: &str) -> Request<Body> {
    let _ = lab;
    Request::builder().uri(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn static_tokens_anonymous_and_401() {
    let mut cfg = config();
    cfg.extra_routes = Some(whoami_routes());
    let lab = lab_with(cfg, 100).await;
    let r = lab.send(anon(&lab, "/api")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["reason"], "Unauthorized");
    assert_eq!(r.json()["kind"], "Status");
    for p in [
        "/version",
        "/healthz",
        "/livez",
        "/readyz",
        "/readyz?verbose",
    ] {
        assert_eq!(lab.send(anon(&lab, p)).await.status, 200, "{p}");
    }
    // a bad token is refused even where anonymous would be allowed
    let bad = Request::builder()
        .uri("/version")
        .header("authorization", "Bearer nope")
        .body(Body::empty())
        .unwrap();
    assert_eq!(lab.send(bad).await.status, 401);
    let r = lab.call("GET", "/whoami", None).await;
    assert_eq!(r.status, 200);
    let u = r.json();
    assert_eq!(u["username"], "admin");
    assert_eq!(
        u["groups"],
        json!(["system:masters", "system:authenticated"])
    );
    assert_eq!(lab.send(anon(&lab, "/whoami")).await.status, 401);
    let r = lab
        .call(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["status"]["userInfo"]["username"], "admin");
}

#[tokio::test]
async fn service_account_tokens_live_as_long_as_their_secret() {
    let pki = LabPki::generate(&PkiSpec::default()).unwrap();
    let mut cfg = config();
    cfg.extra_routes = Some(whoami_routes());
    cfg.service_account_keys =
        verifying_keys_from_pem(pki.service_account_pub_pem.as_bytes()).unwrap();
    let lab = lab_with(cfg, 1000).await;
    let sa = lab
        .call("POST", "/api/v1/namespaces/default/serviceaccounts", Some(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})))
        .await
        .json();
    let uid = sa["metadata"]["uid"].as_str().unwrap();
    let token = sign_legacy_token(
        &pki.service_account_key_pem,
        &SaClaims::legacy("default", "default", uid, "default-token"),
    )
    .unwrap();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "default-token", "annotations": {"kubernetes.io/service-account.name": "default"}},
        "data": {"token": base64::engine::general_purpose::STANDARD.encode(&token)}});
    assert_eq!(
        lab.call("POST", "/api/v1/namespaces/default/secrets", Some(secret))
            .await
            .status,
        201
    );
    let with = |path: &str, t: &str| {
        Request::builder()
            .uri(path)
            .header("authorization", format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap()
    };
    let r = lab.send(with("/api", &token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["kind"], "APIVersions");
    let u = lab.send(with("/whoami", &token)).await.json();
    assert_eq!(u["username"], "system:serviceaccount:default:default");
    assert!(
        u["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:serviceaccounts:default"))
    );
    // a token signed by another key
    let other = LabPki::generate(&PkiSpec::default()).unwrap();
    let forged = sign_legacy_token(
        &other.service_account_key_pem,
        &SaClaims::legacy("default", "default", uid, "default-token"),
    )
    .unwrap();
    assert_eq!(lab.send(with("/api", &forged)).await.status, 401);
    // deleting the Secret revokes the token
    assert_eq!(
        lab.call(
            "DELETE",
            "/api/v1/namespaces/default/secrets/default-token",
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(lab.send(with("/api", &token)).await.status, 401);
}

#[tokio::test]
async fn discovery_health_openapi() {
    let lab = lab().await;
    let r = lab.call("GET", "/api", None).await;
    assert_eq!(r.json()["kind"], "APIVersions");
    assert_eq!(
        lab.call("GET", "/api/v1", None).await.json()["kind"],
        "APIResourceList"
    );
    assert_eq!(
        lab.call("GET", "/apis", None).await.json()["kind"],
        "APIGroupList"
    );
    assert_eq!(
        lab.call("GET", "/apis/discovery.k8s.io", None).await.status,
        200
    );
    assert_eq!(
        lab.call("GET", "/apis/discovery.k8s.io/v1", None)
            .await
            .status,
        200
    );
    assert_eq!(lab.call("GET", "/apis/nope.io", None).await.status, 404);
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    for p in ["/api", "/apis"] {
        let r = lab
            .raw("GET", p, "application/json", vec![], &[("accept", accept)])
            .await;
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .contains("as=APIGroupDiscoveryList")
        );
        assert_eq!(r.json()["kind"], "APIGroupDiscoveryList");
    }
    let v = lab.call("GET", "/version", None).await.json();
    assert_eq!(v["major"], "1");
    let r = lab.call("GET", "/readyz?verbose", None).await;
    let t = r.text();
    assert!(
        t.contains("[+]ping ok") && t.ends_with("readyz check passed\n"),
        "{t}"
    );
    assert_eq!(lab.call("GET", "/healthz", None).await.text(), "ok");
    assert_eq!(lab.call("GET", "/livez/ping", None).await.text(), "ok");
    assert_eq!(lab.call("GET", "/livez/nope", None).await.status, 404);
    assert_eq!(lab.call("POST", "/version", None).await.status, 405);
    let idx = lab.call("GET", "/openapi/v3", None).await;
    assert_eq!(idx.status, 200);
    assert!(idx.json()["paths"].is_object());
    assert_eq!(
        lab.call("GET", "/openapi/v3/api/v1", None).await.status,
        200
    );
    assert_eq!(
        lab.call("GET", "/openapi/v3/apis/nope/v1", None)
            .await
            .status,
        404
    );
    assert_eq!(lab.call("GET", "/openapi/v2", None).await.status, 200);
    let root = lab.call("GET", "/", None).await.json();
    assert!(root["paths"].as_array().unwrap().contains(&json!("/api")));
}

/// One HTTPS request with an optional client certificate.
async fn https_get(
    addr: std::net::SocketAddr,
    ca: &LabPki,
    client: Option<&proxylab_core::tls::pki::CertAndKey>,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut tls = ClientTls::new()
        .ca(vec![ca.ca_der().unwrap()])
        .alpn(&[b"http/1.1"]);
    if let Some(c) = client {
        let (chain, key) = c.der().unwrap();
        tls = tls.client_cert(chain, key);
    }
    let connector = tokio_rustls::TlsConnector::from(tls.build().unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = Request::builder().uri(path).header("host", "localhost");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = sender
        .send_request(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn client_certificates_and_front_proxy_over_tls() {
    install_crypto_provider();
    let pki = LabPki::generate(&PkiSpec::default()).unwrap();
    let mut cfg = config();
    let (chain, key) = pki.apiserver.der().unwrap();
    cfg.serving = Some(ServingCert { chain, key });
    cfg.client_ca = vec![pki.ca_der().unwrap()];
    cfg.requestheader = Some(RequestHeaderConfig {
        ca: vec![pki.front_proxy_ca_der().unwrap()],
        allowed_names: vec!["front-proxy-client".into()],
        username_headers: vec!["X-Remote-User".into()],
        group_headers: vec!["X-Remote-Group".into()],
        extra_headers_prefix: vec!["X-Remote-Extra-".into()],
    });
    cfg.extra_routes = Some(whoami_routes());
    let store = Arc::new(MemoryStore::new(100));
    let bound = ApiServer::bind(cfg, store).await.unwrap();
    let addr = bound.local_addrs()[0];
    let stop = CancellationToken::new();
    let server = tokio::spawn(bound.serve(stop.clone()));

    let (s, u) = https_get(addr, &pki, Some(&pki.admin), "/whoami", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(u["username"], "kubernetes-admin");
    assert!(
        u["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:masters"))
    );

    // front-proxy: the certificate speaks for the user in the headers
    let hdrs = [
        ("X-Remote-User", "alice"),
        ("X-Remote-Group", "devs"),
        ("X-Remote-Extra-Scopes", "read"),
    ];
    let (s, u) = https_get(addr, &pki, Some(&pki.front_proxy_client), "/whoami", &hdrs).await;
    assert_eq!(s, 200);
    assert_eq!(u["username"], "alice");
    assert_eq!(u["groups"], json!(["devs", "system:authenticated"]));
    assert_eq!(u["extra"]["scopes"], json!(["read"]));
    // ... but is nobody without them
    let (s, _) = https_get(addr, &pki, Some(&pki.front_proxy_client), "/whoami", &[]).await;
    assert_eq!(s, 401);
    // a front-proxy CA certificate with a CN that is not allowed
    let other = CaSigner::new(&pki.front_proxy_ca)
        .unwrap()
        .client("intruder", &[])
        .unwrap();
    let (s, _) = https_get(addr, &pki, Some(&other), "/whoami", &hdrs).await;
    assert_eq!(s, 401);
    // headers from a cluster-CA client are ignored (it is itself the user)
    let (_, u) = https_get(addr, &pki, Some(&pki.admin), "/whoami", &hdrs).await;
    assert_eq!(u["username"], "kubernetes-admin");
    // no certificate, no token
    let (s, st) = https_get(addr, &pki, None, "/api", &[]).await;
    assert_eq!(s, 401);
    assert_eq!(st["code"], 401);
    let (s, _) = https_get(addr, &pki, None, "/readyz", &[]).await;
    assert_eq!(s, 200);
    // serverAddressByClientCIDRs names the address the client reached
    let (_, api) = https_get(addr, &pki, Some(&pki.admin), "/api", &[]).await;
    assert_eq!(
        api["serverAddressByClientCIDRs"][0]["serverAddress"],
        addr.to_string()
    );

    stop.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn metrics_count_requests_and_watches() {
    let lab = lab().await;
    lab.call("GET", "/api/v1/namespaces/default/pods", None)
        .await;
    let (_, body) = lab
        .watch("/api/v1/namespaces/default/pods?watch=true")
        .await;
    let m = lab.call("GET", "/metrics", None).await.text();
    assert!(
        m.contains(
            r#"proxylab_apiserver_requests_total{verb="list",resource="pods",code="200"} 1"#
        ),
        "{m}"
    );
    assert!(m.contains("proxylab_apiserver_watches 1"), "{m}");
    drop(body);
    assert_eq!(lab.send(anon(&lab, "/metrics")).await.status, 401);
}
