//! The proxy subresources against test backends: URL forms and their errors, resolution (spread
//! over ready endpoints, named and numeric ports), the handler rules (301, headers, CORS,
//! Location, HTML, streaming, upgrades) and the hop records.

mod common;

use std::collections::BTreeSet;

use common::{Options, json_body, start};
use http::StatusCode;

const SVC: &str = "/api/v1/namespaces/default/services";
const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn service_proxy_spreads_over_ready_endpoints_by_every_port_form() {
    let env = start(Options::default()).await;
    for id in ["web", "web:http", "web:80", "http:web:80", "http:web:"] {
        let mut seen = BTreeSet::new();
        for _ in 0..40 {
            let (code, _, body) = env
                .get(&format!("{SVC}/{id}/proxy/hostname"), "alice")
                .await;
            assert_eq!(code, StatusCode::OK, "{id}: {body}");
            seen.insert(body);
            if seen.len() == 3 {
                break;
            }
        }
        assert_eq!(seen.len(), 3, "{id}: random choice reached {seen:?}");
    }
}

#[tokio::test]
async fn service_errors_are_kube_apiservers() {
    let env = start(Options::default()).await;
    for (path, code, reason, message) in [
        (
            format!("{SVC}/nope/proxy/"),
            404,
            "NotFound",
            r#"services "nope" not found"#,
        ),
        (
            format!("{SVC}/empty/proxy/"),
            503,
            "ServiceUnavailable",
            r#"no endpoints available for service "empty""#,
        ),
        (
            format!("{SVC}/web:9090/proxy/"),
            503,
            "ServiceUnavailable",
            r#"no endpoints available for service "web""#,
        ),
        (
            format!("{SVC}/web:81/proxy/"),
            503,
            "ServiceUnavailable",
            r#"no service port 81 found for service "web""#,
        ),
        (
            format!("{SVC}/web:nope/proxy/"),
            503,
            "ServiceUnavailable",
            r#"no endpoints available for service "web""#,
        ),
        (
            format!("{SVC}/a:b:c:d/proxy/"),
            400,
            "BadRequest",
            r#"invalid service request "a:b:c:d""#,
        ),
        (
            format!("{SVC}/ftp:web:80/proxy/"),
            400,
            "BadRequest",
            r#"invalid service request "ftp:web:80""#,
        ),
        (
            format!("{SVC}/:80/proxy/"),
            400,
            "BadRequest",
            r#"invalid service request ":80""#,
        ),
        (
            format!("{PODS}/nope/proxy/"),
            404,
            "NotFound",
            r#"pods "nope" not found"#,
        ),
        (
            format!("{PODS}/a:b:c:d/proxy/"),
            400,
            "BadRequest",
            r#"invalid pod request "a:b:c:d""#,
        ),
        (
            format!("{PODS}/web-1:nope/proxy/"),
            400,
            "BadRequest",
            r#"pod "web-1" has no container port named "nope""#,
        ),
        (
            "/api/v1/nodes/nope/proxy/".into(),
            404,
            "NotFound",
            r#"nodes "nope" not found"#,
        ),
        (
            "/api/v1/nodes/a:b:c:d/proxy/".into(),
            400,
            "BadRequest",
            r#"invalid node request "a:b:c:d""#,
        ),
    ] {
        let (got, headers, body) = env.get(&path, "alice").await;
        assert_eq!(got.as_u16(), code, "{path}: {body}");
        assert_eq!(headers["content-type"], "application/json", "{path}");
        let s = json_body(&body);
        assert_eq!(s["kind"], "Status", "{path}");
        assert_eq!(s["reason"], reason, "{path}");
        assert_eq!(s["message"], message, "{path}");
    }
}

#[tokio::test]
async fn pod_proxy_by_default_named_and_numeric_port() {
    let env = start(Options::default()).await;
    let port = env.pods[1].addr.port();
    for id in [
        "web-2".to_string(),
        "web-2:http".into(),
        format!("web-2:{port}"),
        format!("http:web-2:{port}"),
    ] {
        let (code, _, body) = env
            .get(&format!("{PODS}/{id}/proxy/hostname"), "alice")
            .await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "web-2"), "{id}");
    }
}

#[tokio::test]
async fn https_to_a_pod_port_is_dialled_without_verification() {
    // The stand-in kubelet is an HTTPS server with a certificate the generic transport does not
    // trust: reaching it at all proves TLS was spoken without verification; it answers 401 because
    // pods are not sent the kubelet client certificate.
    let env = start(Options::default()).await;
    let port = env.kubelet.addr.port();
    env.view.update(|s| {
        s.apply(
            proxylab_core::cluster::from_k8s(&common::pod_object("tls", port))
                .unwrap()
                .unwrap(),
        )
    });
    let (code, _, body) = env
        .get(&format!("{PODS}/https:tls:{port}/proxy/healthz"), "alice")
        .await;
    assert_eq!((code.as_u16(), body.as_str()), (401, "Unauthorized"));
    // Plain http to a TLS port fails at the backend, and the Status says so.
    let (code, _, body) = env
        .get(&format!("{PODS}/tls:{port}/proxy/healthz"), "alice")
        .await;
    assert_eq!(code.as_u16(), 503, "{body}");
    assert!(
        json_body(&body)["message"]
            .as_str()
            .unwrap()
            .starts_with("error trying to reach service: "),
        "{body}"
    );
}

#[tokio::test]
async fn node_proxy_reaches_the_kubelet_with_the_client_certificate() {
    let env = start(Options::default()).await;
    let kport = env.kubelet.addr.port();
    for id in [
        "node-1".to_string(),
        format!("node-1:{kport}"),
        format!("https:node-1:{kport}"),
    ] {
        let (code, _, body) = env
            .get(&format!("/api/v1/nodes/{id}/proxy/healthz"), "alice")
            .await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "ok"), "{id}");
    }
    // Another port of the node: plain http with the generic transport (here: a pod's server).
    let pport = env.pods[0].addr.port();
    let (code, _, body) = env
        .get(
            &format!("/api/v1/nodes/node-1:{pport}/proxy/hostname"),
            "alice",
        )
        .await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "web-1"));
    let (code, _, body) = env.get("/api/v1/nodes/node-1:http/proxy/", "alice").await;
    assert_eq!(code.as_u16(), 400, "{body}");
    // The kubelet saw the client certificate every time (it answers 401 otherwise).
    assert!(env.kubelet.seen.lock().len() >= 3);
}

#[tokio::test]
async fn empty_backend_path_redirects_with_a_slash_for_get_and_head_only() {
    let env = start(Options::default()).await;
    let (code, headers, _) = env.get(&format!("{SVC}/web/proxy?a=1&b=2"), "alice").await;
    assert_eq!(code, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], format!("{SVC}/web/proxy/?a=1&b=2"));
    let raw = env
        .raw("HEAD /api/v1/nodes/node-1/proxy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nConnection: close\r\n\r\n")
        .await;
    assert!(raw.starts_with("HTTP/1.1 301"), "{raw}");
    // Not for other methods: POST goes to "/".
    let raw = env
        .raw(&format!("POST {SVC}/web/proxy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"))
        .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let body = json_body(raw.split_once("\r\n\r\n").unwrap().1);
    assert_eq!(
        (body["method"].as_str(), body["path"].as_str()),
        (Some("POST"), Some("/"))
    );
    // And not before resolution: an unknown service is a 404, not a redirect.
    let (code, _, _) = env.get(&format!("{SVC}/nope/proxy"), "alice").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_method_is_forwarded_with_path_query_and_proxy_headers() {
    let env = start(Options::default()).await;
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let raw = env
            .raw(&format!(
                "{method} {PODS}/web-1/proxy/a/b/?x=1&y=%2F HTTP/1.1\r\nHost: api.example:6443\r\n\
                 Authorization: Bearer alice\r\nImpersonate-User: admin\r\nImpersonate-Group: system:masters\r\n\
                 X-Remote-User: admin\r\nX-Forwarded-For: 10.9.9.9\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert!(raw.starts_with("HTTP/1.1 200"), "{method}: {raw}");
        let body = json_body(raw.split_once("\r\n\r\n").unwrap().1);
        assert_eq!(body["method"], method);
        assert_eq!(body["path"], "/a/b/");
        assert_eq!(body["query"], "x=1&y=%2F");
        let h = &body["headers"];
        for secret in [
            "authorization",
            "impersonate-user",
            "impersonate-group",
            "x-remote-user",
        ] {
            assert!(
                h.get(secret).is_none(),
                "{method}: {secret} reached the backend: {h}"
            );
        }
        assert_eq!(h["x-forwarded-for"], "10.9.9.9, 127.0.0.1");
        assert_eq!(h["x-forwarded-uri"], format!("{PODS}/web-1/proxy/a/b/"));
        assert_eq!(h["x-forwarded-host"], "api.example:6443");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["via"], "1.1 bastion");
    }
    let raw = env
        .raw(&format!("HEAD {PODS}/web-1/proxy/hostname HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nConnection: close\r\n\r\n"))
        .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
}

#[tokio::test]
async fn cors_is_removed_and_location_rewritten_never_followed() {
    let env = start(Options::default()).await;
    let (code, h, body) = env.get(&format!("{PODS}/web-1/proxy/cors"), "alice").await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "cors"));
    for cors in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-headers",
        "access-control-allow-methods",
    ] {
        assert!(h.get(cors).is_none(), "{cors} kept");
    }
    assert_eq!(h["cache-control"], "no-store");

    let prefix = format!("{PODS}/web-1/proxy");
    for (to, want) in [
        ("/login", format!("{prefix}/login")),
        ("/a/b/", format!("{prefix}/a/b/")),
        ("https://example.com/x", "https://example.com/x".to_string()),
        ("relative", "relative".to_string()),
        (
            &format!("http://{}/x", env.pods[0].addr),
            format!("{prefix}/x"),
        ),
    ] {
        let before = env.pods[0].seen.lock().len();
        let (code, h, _) = env
            .get(&format!("{prefix}/redirect?to={}", urlenc(to)), "alice")
            .await;
        assert_eq!(code, StatusCode::FOUND, "{to}");
        assert_eq!(h["location"], want.as_str(), "{to}");
        // One request reached the backend: the redirect was passed on, not followed.
        assert_eq!(env.pods[0].seen.lock().len(), before + 1, "{to}");
    }
}

fn urlenc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn html_links_are_rewritten_plain_and_gzipped() {
    let env = start(Options::default()).await;
    let prefix = format!("{SVC}/web:http/proxy");
    let want = common::PAGE
        .replace(
            "\"/static/app.css\"",
            &format!("\"{prefix}/static/app.css\""),
        )
        .replace("\"/login\"", &format!("\"{prefix}/login\""));
    let (code, h, body) = env.get(&format!("{prefix}/html"), "alice").await;
    assert_eq!(code, StatusCode::OK);
    assert!(h.get("content-length").is_none());
    assert_eq!(body, want);
    // gzip: decoded, rewritten, re-encoded.
    let raw = env
        .raw(&format!("GET {prefix}/html-gzip HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nConnection: close\r\n\r\n"))
        .await;
    assert!(raw.contains("content-encoding: gzip"), "{raw}");
    let (code, _, _) = env.get(&format!("{prefix}/html-gzip"), "alice").await;
    assert_eq!(code, StatusCode::OK);
    let client = proxylab_test_support::http::client();
    let resp = client
        .request(
            http::Request::get(format!("http://{}{prefix}/html-gzip", env.addr))
                .header("authorization", "Bearer a")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    use http_body_util::BodyExt;
    let gz = resp.into_body().collect().await.unwrap().to_bytes();
    let mut s = String::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, want);
}

#[tokio::test]
async fn bodies_stream_through_unbuffered() {
    let env = start(Options::default()).await;
    let mut s = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        format!(
            "GET {PODS}/web-3/proxy/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The first line arrives while the backend still holds the second.
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("first") {
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(!String::from_utf8_lossy(&got).contains("second"));
    env.pods[2].release.notify_one();
    while !String::from_utf8_lossy(&got).contains("second") {
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn websocket_upgrades_pass_through_the_pod_proxy() {
    let env = start(Options::default()).await;
    let mut s = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        format!(
            "GET {PODS}/web-1/proxy/ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = proxylab_test_support::http::read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    s.write_all(b"ping-bytes").await.unwrap();
    let mut buf = [0u8; 10];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping-bytes");
    // The backend never saw the user's token on the upgrade either.
    let seen = env.pods[0].seen.lock().clone();
    assert!(
        seen.iter()
            .all(|r| r.headers.get("authorization").is_none())
    );
}

#[tokio::test]
async fn round_robin_is_an_option() {
    let env = start(Options {
        balance: proxylab_core::balance::Algorithm::RoundRobin,
        ..Default::default()
    })
    .await;
    let mut order = Vec::new();
    for _ in 0..6 {
        let (_, _, body) = env.get(&format!("{SVC}/web/proxy/hostname"), "alice").await;
        order.push(body);
    }
    assert_eq!(
        order[0..3].iter().collect::<BTreeSet<_>>().len(),
        3,
        "{order:?}"
    );
    assert_eq!(order[0..3], order[3..6], "{order:?}");
}

#[tokio::test]
async fn not_ready_endpoints_get_nothing() {
    let env = start(Options {
        edit: Box::new(|objs| {
            for o in objs.iter_mut() {
                if o["kind"] == "EndpointSlice" && o["metadata"]["name"] != "web-web-2" {
                    o["endpoints"][0]["conditions"]["ready"] = false.into();
                }
            }
        }),
        ..Default::default()
    })
    .await;
    for _ in 0..10 {
        let (_, _, body) = env.get(&format!("{SVC}/web/proxy/hostname"), "alice").await;
        assert_eq!(body, "web-2");
    }
}

#[tokio::test]
async fn hop_records_name_the_path() {
    let env = start(Options::default()).await;
    let (code, _, body) = env
        .get(&format!("{PODS}/web-1/proxy/hostname"), "alice")
        .await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "web-1"));
    let h = env.hop(1).await;
    assert_eq!(h.proxy, "bastion");
    assert_eq!(h.instance, "test");
    assert_eq!(h.target.as_deref(), Some("pods/default/web-1"));
    assert_eq!(h.endpoint.as_deref(), Some("default/web-1"));
    assert_eq!(h.upstream, Some(env.pods[0].addr));
    // Dialled from the listener's address (the lab: the apiserver's own address).
    assert_eq!(h.upstream_local.map(|a| a.ip()), Some(env.addr.ip()));
    assert_eq!(h.http.as_ref().unwrap().status, Some(200));
    assert_eq!(h.outcome, "ok");
    assert_eq!(h.bytes_down, 5);
    let (_, _, _) = env.get(&format!("{SVC}/empty/proxy/"), "alice").await;
    let h = env.hop(2).await;
    assert_eq!(
        (h.outcome.as_ref(), h.http.as_ref().unwrap().status),
        ("no-endpoints", Some(503))
    );
    let (_, _, body) = env.get(&format!("{SVC}/web/proxy/hostname"), "alice").await;
    let h = env.hop(3).await;
    // The record names the pod that answered (the test pods share 127.0.0.1: told apart by port).
    let pod = env.pods.iter().find(|p| p.name == body).unwrap();
    assert_eq!(
        h.endpoint.as_deref(),
        Some(format!("default/{} {}", pod.name, pod.addr).as_str())
    );
    assert_eq!(h.reason.as_deref(), Some("random over 3 ready endpoints"));
}

#[tokio::test]
async fn requests_without_a_user_are_refused() {
    let env = start(Options::default()).await;
    let (code, _) = {
        let r = proxylab_test_support::http::get(
            env.addr,
            &format!("{PODS}/web-1/proxy/hostname"),
            &[],
        )
        .await;
        (r.0, r.2)
    };
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(env.pods[0].seen.lock().is_empty());
}
