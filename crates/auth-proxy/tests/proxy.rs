//! auth-proxy end to end against an in-test HTTPS apiserver: forwarding, credentials, filter,
//! streaming, upgrades (and their CVE classes), errors, unix socket, hop records.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN_USER: &str = "    token: test-token";

/// A temporary directory holding a kubeconfig for `api` with the token user.
fn token_kubeconfig(api: &FakeApiserver) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let kc = write_kubeconfig(
        dir.path(),
        &format!("https://{}", api.addr),
        &api.ca_pem,
        TOKEN_USER,
    );
    (dir, kc)
}

#[tokio::test]
async fn forwards_with_kubeconfig_credentials_over_h2() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let proxy = start_proxy(&kc, |_| {}).await;

    let (status, headers, body) = get(proxy.addr, "/version", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("v1.31.0"), "{body}");
    // The response came from the apiserver over HTTP/2: Via names the protocol we received it with.
    assert_eq!(headers["via"], "2 auth-proxy");

    let seen = api.seen_path("/version");
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.headers["authorization"], "Bearer test-token");
    assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(s.headers["x-forwarded-proto"], "http");
    assert_eq!(s.headers["via"], "1.1 auth-proxy");
    // ALPN picked HTTP/2 towards the apiserver for an ordinary request.
    assert_eq!(s.version, http::Version::HTTP_2);

    let hops = proxy.hops.recent(10);
    let hop = hops
        .iter()
        .find(|h| {
            h.http
                .as_ref()
                .is_some_and(|x| x.path == "/version" && x.status == Some(200))
        })
        .expect("a hop for /version");
    // The pooled connection's local address is recorded: the apiserver saw the request come from
    // it, so the next hop's record joins this one exactly (`proxylab trace`).
    assert_eq!(hop.upstream_local, Some(s.peer));
    assert_eq!(hop.upstream, Some(api.addr));
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_leak() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let proxy = start_proxy(&kc, |_| {}).await;
    let (status, _, _) = get(
        proxy.addr,
        "/api",
        &[
            ("connection", "x-secret"),
            ("x-secret", "s"),
            ("te", "trailers"),
            ("x-keep", "k"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let s = &api.seen_path("/api")[0];
    assert!(s.headers.get("x-secret").is_none());
    assert!(s.headers.get("te").is_none());
    assert_eq!(s.headers["x-keep"], "k");
}

#[tokio::test]
async fn client_credentials_replaced_by_default_and_passed_on_request() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let claims = [
        ("authorization", "Bearer someone-else"),
        ("impersonate-user", "system:admin"),
        ("impersonate-group", "system:masters"),
    ];

    let proxy = start_proxy(&kc, |_| {}).await;
    get(proxy.addr, "/version", &claims).await;
    let s = api.seen_path("/version").pop().unwrap();
    assert_eq!(s.headers["authorization"], "Bearer test-token");
    assert!(s.headers.get("impersonate-user").is_none());
    assert!(s.headers.get("impersonate-group").is_none());
    drop(proxy);

    let proxy = start_proxy(&kc, |a| a.pass_client_credentials = true).await;
    get(proxy.addr, "/version", &claims).await;
    let s = api.seen_path("/version").pop().unwrap();
    assert_eq!(s.headers["authorization"], "Bearer someone-else");
    assert_eq!(s.headers["impersonate-user"], "system:admin");
}

#[tokio::test]
async fn kubeconfig_impersonation_is_added() {
    let api = start_apiserver().await;
    let dir = tempfile::tempdir().unwrap();
    let user = "    token: test-token\n    as: jane\n    as-groups: [devs]";
    let kc = write_kubeconfig(
        dir.path(),
        &format!("https://{}", api.addr),
        &api.ca_pem,
        user,
    );
    let proxy = start_proxy(&kc, |_| {}).await;
    get(proxy.addr, "/version", &[]).await;
    let s = api.seen_path("/version").pop().unwrap();
    assert_eq!(s.headers["impersonate-user"], "jane");
    assert_eq!(s.headers["impersonate-group"], "devs");
}

#[tokio::test]
async fn filter_rejects_before_anything_is_sent() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let proxy = start_proxy(&kc, |_| {}).await;

    for path in [
        "/api/v1/namespaces/default/pods/p/exec?command=sh",
        "/api/v1/namespaces/default/pods/p/%65xec",
        "/api/v1/namespaces/default/pods/p%2Fattach",
    ] {
        let (status, headers, body) = get(proxy.addr, path, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body, "Forbidden\n");
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    }
    let (status, _, _) = get(proxy.addr, "/api", &[("host", "evil.example:8001")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // kubernetes#77496 fixed: an IPv6 localhost Host with a port is accepted.
    let (status, _, _) = get(proxy.addr, "/api", &[("host", "[::1]:8001")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        api.seen_path("/api/v1/namespaces/default/pods/p")
            .is_empty()
    );

    // A non-canonical path the filter refuses once clean gets kubectl's 403 at once, not a 301 that
    // sends the client to be refused there…
    for path in [
        "/api/v1/namespaces/default/pods/x/../p/exec",
        "/api/v1/namespaces/default/pods/p//attach",
        "/api/v1/namespaces/default/pods/p/./%65xec?command=sh",
    ] {
        let (status, headers, body) = get(proxy.addr, path, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body, "Forbidden\n", "{path}");
        assert!(headers.get("location").is_none(), "{path}");
    }
    // …while one it accepts is redirected to the clean path, as Go's mux does.
    let (status, headers, _) = get(
        proxy.addr,
        "/api/v1/namespaces/default/pods/x/../p?watch=1",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        headers["location"],
        "/api/v1/namespaces/default/pods/p?watch=1"
    );
    assert!(
        api.seen_path("/api/v1/namespaces/default/pods/p")
            .is_empty()
    );
}

#[tokio::test]
async fn api_prefix_is_stripped() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let proxy = start_proxy(&kc, |a| a.api_prefix = "/k8s".into()).await;
    let (status, _, body) = get(proxy.addr, "/k8s/version", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = get(proxy.addr, "/version", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The prefix itself without its slash: a 301 to it, as Go's ServeMux answers.
    let (status, headers, _) = get(proxy.addr, "/k8s", &[]).await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "/k8s/");
    assert_eq!(api.seen_path("/version").len(), 1);
}

#[tokio::test]
async fn append_server_path() {
    let api = start_apiserver().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = write_kubeconfig(
        dir.path(),
        &format!("https://{}/gw/c1", api.addr),
        &api.ca_pem,
        TOKEN_USER,
    );
    let proxy = start_proxy(&kc, |_| {}).await;
    get(proxy.addr, "/version", &[]).await;
    assert_eq!(api.seen_path("/version").len(), 1);
    drop(proxy);
    let proxy = start_proxy(&kc, |a| a.append_server_path = true).await;
    get(proxy.addr, "/version", &[]).await;
    assert_eq!(api.seen_path("/gw/c1/version").len(), 1);
}

#[tokio::test]
async fn watch_events_stream_unbuffered() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let proxy = start_proxy(&kc, |_| {}).await;
    let req = http::Request::get(format!(
        "http://{}/api/v1/namespaces/default/pods?watch=true",
        proxy.addr
    ))
    .body(http_body_util::Full::new(bytes::Bytes::new()))
    .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    // The backend holds the second event until released: the first must arrive on its own.
    let mut got = Vec::new();
    while !got.ends_with(b"\n") {
        let frame = body.frame().await.unwrap().unwrap();
        if let Ok(d) = frame.into_data() {
            got.extend_from_slice(&d);
        }
    }
    let first = String::from_utf8(got).unwrap();
    assert!(first.contains("\"first\""), "{first}");
    assert!(!first.contains("second"));
    api.release.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&rest).contains("\"second\""));
}

#[tokio::test]
async fn upgrade_tunnels_both_ways_over_http1() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let proxy = start_proxy(&kc, |_| {}).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"POST /api/v1/namespaces/default/pods/p/portforward?mode=ok HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n").await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: spdy/3.1"),
        "{head}"
    );
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    let seen = api
        .seen_path("/api/v1/namespaces/default/pods/p/portforward")
        .pop()
        .unwrap();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.headers["authorization"], "Bearer test-token");
    assert_eq!(seen.headers["upgrade"], "SPDY/3.1");
    // Closing the client closes the backend side too, and the hop records the tunnel's bytes.
    drop(s);
    eventually("the backend connection to close", || {
        api.open.load(Ordering::SeqCst) == 0
    })
    .await;
    eventually("an upgraded hop with 4 bytes each way", || {
        proxy
            .hops
            .recent(10)
            .iter()
            .any(|h| h.outcome == "upgraded" && h.bytes_up == 4 && h.bytes_down == 4)
    })
    .await;
}

#[tokio::test]
async fn websocket_round_trip() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let proxy = start_proxy(&kc, |_| {}).await;
    let url = format!(
        "ws://localhost:{}/api/v1/namespaces/default/pods/p/portforward?mode=ws",
        proxy.addr.port()
    );
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(tokio_tungstenite::tungstenite::Message::text("hello"))
        .await
        .unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "hello");
    ws.close(None).await.unwrap();
}

/// CVE-2018-1002105: an upgrade answered with an error is relayed, then both connections close and
/// nothing the client sends afterwards reaches the backend.
#[tokio::test]
async fn failed_upgrade_closes_both_sides() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let proxy = start_proxy(&kc, |_| {}).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"POST /api/v1/namespaces/default/pods/p/portforward?mode=403 HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n").await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    // The client now tries to smuggle a request (or tunnel bytes) on the same connection.
    let _ = s
        .write_all(b"GET /api/v1/secrets HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        !rest.contains("HTTP/1.1 "),
        "a second response came back: {rest}"
    );
    assert!(api.seen_path("/api/v1/secrets").is_empty());
    assert_eq!(api.tunnel_bytes.load(Ordering::SeqCst), 0);
    // The upstream connection used for the upgrade is closed too.
    eventually("the backend connection to close", || {
        api.open.load(Ordering::SeqCst) == 0
    })
    .await;
}

/// CVE-2020-8559 / CVE-2018-1002102: a redirect (or any non-101 below 400) to an upgrade is an
/// error; nothing is tunnelled and the redirect is not followed.
#[tokio::test]
async fn redirect_to_upgrade_is_an_error() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let proxy = start_proxy(&kc, |_| {}).await;
    for mode in ["302", "200"] {
        let out = raw_exchange(
            proxy.addr,
            &format!("POST /api/v1/namespaces/default/pods/p/portforward?mode={mode} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n"),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 502"), "{out}");
        assert!(
            out.contains(&format!("invalid upgrade response: status code {mode}")),
            "{out}"
        );
        assert!(!out.to_ascii_lowercase().contains("location:"), "{out}");
    }
    assert_eq!(api.tunnel_bytes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn redirects_are_relayed_not_followed() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let proxy = start_proxy(&kc, |_| {}).await;
    let (status, headers, _) = get(proxy.addr, "/redirect", &[]).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], "http://127.0.0.1:9/elsewhere");
    assert_eq!(api.seen().len(), 1);
}

#[tokio::test]
async fn upstream_down_is_502_naming_the_apiserver() {
    proxylab_core::tls::install_crypto_provider();
    let (ca, _, _) = test_pki();
    // A port with nothing listening: bind, note it, close.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap();
    drop(l);
    let dir = tempfile::tempdir().unwrap();
    let kc = write_kubeconfig(dir.path(), &format!("https://{dead}"), &ca, TOKEN_USER);
    let proxy = start_proxy(&kc, |_| {}).await;
    let (status, _, body) = get(proxy.addr, "/version", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        body.contains(&format!("cannot connect to https://{dead}")),
        "{body}"
    );
    eventually("an upstream-connect hop", || {
        proxy
            .hops
            .recent(1)
            .pop()
            .is_some_and(|h| h.outcome == "upstream-connect")
    })
    .await;
}

#[tokio::test]
async fn unix_socket_is_private_and_serves() {
    use std::os::unix::fs::PermissionsExt;
    let api = start_apiserver().await;
    let (dir, kc) = token_kubeconfig(&api);
    let sock = dir.path().join("proxy.sock");
    std::fs::write(&sock, b"stale").unwrap();

    let mut args = proxylab_auth_proxy::AuthProxyArgs {
        kubeconfig: Some(kc.clone()),
        unix_socket: sock.display().to_string(),
        ..Default::default()
    };
    args.port = proxylab_auth_proxy::args::DEFAULT_PORT;
    let cluster = proxylab_kube::load(&proxylab_kube::KubeconfigOptions {
        kubeconfig: Some(kc),
        ..Default::default()
    })
    .await
    .unwrap();
    let cfg =
        proxylab_auth_proxy::AuthProxyConfig::from_args_with_cluster(&args, &cluster).unwrap();
    let bound = proxylab_auth_proxy::AuthProxy::bind(cfg).await.unwrap();
    assert_eq!(bound.local_addr().to_string(), sock.display().to_string());
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(bound.serve(stop.clone()));

    let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
    // The Host check applies on a unix socket too (kubectl's default filter).
    s.write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("v1.31.0"));

    stop.cancel();
    task.await.unwrap().unwrap();
    assert!(!sock.exists(), "socket file removed at shutdown");

    // --port together with --unix-socket is refused, as kubectl does.
    args.port = 9999;
    assert!(proxylab_auth_proxy::AuthProxyConfig::from_args_with_cluster(&args, &cluster).is_err());
}

#[tokio::test]
async fn client_certificate_and_basic_auth_users() {
    let api = start_apiserver().await;
    let dir = tempfile::tempdir().unwrap();
    let user = "    username: admin\n    password: secret";
    let kc = write_kubeconfig(
        dir.path(),
        &format!("https://{}", api.addr),
        &api.ca_pem,
        user,
    );
    let proxy = start_proxy(&kc, |_| {}).await;
    get(proxy.addr, "/version", &[]).await;
    let s = api.seen_path("/version").pop().unwrap();
    assert_eq!(s.headers["authorization"], "Basic YWRtaW46c2VjcmV0");
}

#[tokio::test]
async fn token_file_is_used() {
    let api = start_apiserver().await;
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("token");
    std::fs::write(&tf, "from-file\n").unwrap();
    let user = format!("    tokenFile: {}", tf.display());
    let kc = write_kubeconfig(
        dir.path(),
        &format!("https://{}", api.addr),
        &api.ca_pem,
        &user,
    );
    let proxy = start_proxy(&kc, |_| {}).await;
    let (status, _, body) = get(proxy.addr, "/version", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let s = api.seen_path("/version").pop().unwrap();
    assert_eq!(s.headers["authorization"], "Bearer from-file");
}

#[tokio::test]
async fn exec_plugin_token() {
    let api = start_apiserver().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cred.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"from-exec\"}}'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let user = format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never",
        script.display()
    );
    let kc = write_kubeconfig(
        dir.path(),
        &format!("https://{}", api.addr),
        &api.ca_pem,
        &user,
    );
    let proxy = start_proxy(&kc, |_| {}).await;
    let (status, _, body) = get(proxy.addr, "/version", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let s = api.seen_path("/version").pop().unwrap();
    assert_eq!(s.headers["authorization"], "Bearer from-exec");
}

#[tokio::test]
async fn wrong_ca_is_refused() {
    let api = start_apiserver().await;
    let (other_ca, _, _) = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let kc = write_kubeconfig(
        dir.path(),
        &format!("https://{}", api.addr),
        &other_ca,
        TOKEN_USER,
    );
    let proxy = start_proxy(&kc, |_| {}).await;
    let (status, _, body) = get(proxy.addr, "/version", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    // The user is told what did not verify, and what to check — not to see whether it runs.
    assert!(
        body.contains("its certificate is not signed by a certificate authority we trust"),
        "{body}"
    );
    assert!(body.contains("certificate-authority"), "{body}");
    assert!(!body.contains("running and reachable"), "{body}");
    eventually("an upstream-tls hop", || {
        proxy
            .hops
            .recent(1)
            .pop()
            .is_some_and(|h| h.outcome == "upstream-tls")
    })
    .await;
    // The same for an upgrade, which dials its own connection.
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /api/v1/namespaces/default/pods/p/portforward HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n").await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(api.seen().is_empty());
}

#[tokio::test]
async fn a_stream_cut_by_the_apiserver_is_recorded_as_cut() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let proxy = start_proxy(&kc, |_| {}).await;
    let req = http::Request::get(format!("http://{}/api/v1/cut", proxy.addr))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    // The head and a first chunk reach the client…
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"partial");
    // …then the apiserver fails the stream, and the client sees an error, not a clean end.
    api.release.notify_one();
    assert!(body.collect().await.is_err());
    eventually(
        "a 200 hop recorded as upstream-cut with its 7 bytes",
        || {
            proxy.hops.recent(1).pop().is_some_and(|h| {
                h.outcome == "upstream-cut"
                    && h.bytes_down == 7
                    && h.http.as_ref().and_then(|h| h.status) == Some(200)
            })
        },
    )
    .await;
}

#[tokio::test]
async fn serves_https_when_given_a_certificate() {
    let api = start_apiserver().await;
    let (dir, kc) = token_kubeconfig(&api);
    // The listener's own certificate, from another CA than the apiserver's.
    let (ca, cert, key) = test_pki();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let proxy = start_proxy(&kc, |a| {
        a.tls_cert_file = Some(cert_path.clone());
        a.tls_private_key_file = Some(key_path.clone());
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    for c in proxylab_core::tls::certs_from_pem(ca.as_bytes()).unwrap() {
        roots.add(c).unwrap();
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(hyper_util::rt::TokioIo::new(tls))
    .await
    .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            http::Request::get("/version")
                .header("host", "localhost")
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let s = api.seen_path("/version").pop().unwrap();
    assert_eq!(s.headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn static_files_under_www_prefix() {
    let api = start_apiserver().await;
    let (dir, kc) = token_kubeconfig(&api);
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "<h1>hello</h1>").unwrap();
    let www_s = www.display().to_string();
    let proxy = start_proxy(&kc, |a| a.www = www_s.clone()).await;
    // Served from the directory, not filtered (kubectl does not filter --www either).
    let (status, _, body) = get(
        proxy.addr,
        "/static/index.html",
        &[("host", "elsewhere.example")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "<h1>hello</h1>");
    // No way out of the directory.
    let (status, _, _) = get(proxy.addr, "/static/../kubeconfig", &[]).await;
    assert_ne!(status, StatusCode::OK);
    let (status, _, _) = get(proxy.addr, "/static/%2e%2e/kubeconfig", &[]).await;
    assert_ne!(status, StatusCode::OK);
    // The prefix without its slash is redirected to it, as Go's ServeMux does for a subtree.
    let (status, headers, _) = get(proxy.addr, "/static?x=1", &[]).await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "/static/?x=1");
    // Everything else still goes to the apiserver.
    let (status, _, _) = get(proxy.addr, "/version", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(api.seen_path("/static").is_empty());
}

#[tokio::test]
async fn insecure_skip_tls_verify_only_when_the_kubeconfig_says_so() {
    let api = start_apiserver().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = write_kubeconfig_with(
        dir.path(),
        &format!("https://{}", api.addr),
        "    insecure-skip-tls-verify: true",
        TOKEN_USER,
    );
    let proxy = start_proxy(&kc, |_| {}).await;
    let (status, _, body) = get(proxy.addr, "/version", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// kubernetes#120318: kubectl proxy ignores `proxy-url` for upgrades. auth-proxy dials ordinary
/// requests and upgrades through it.
#[tokio::test]
async fn proxy_url_is_used_for_requests_and_upgrades() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    let api = start_apiserver().await;
    // A minimal HTTP CONNECT proxy that counts tunnels.
    let connects = Arc::new(AtomicUsize::new(0));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = l.local_addr().unwrap();
    let c = connects.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let c = c.clone();
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                let Some(target) = head
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split(' ').next())
                else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                if s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                }
            });
        }
    });
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(&api.ca_pem);
    let dir = tempfile::tempdir().unwrap();
    let kc = write_kubeconfig_with(
        dir.path(),
        &format!("https://{}", api.addr),
        &format!("    certificate-authority-data: {ca}\n    proxy-url: http://{proxy_addr}"),
        TOKEN_USER,
    );
    let proxy = start_proxy(&kc, |_| {}).await;
    let (status, _, body) = get(proxy.addr, "/version", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(connects.load(Ordering::SeqCst), 1);

    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"POST /api/v1/namespaces/default/pods/p/portforward?mode=ok HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n").await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The upgrade took its own connection, through the proxy too.
    assert_eq!(connects.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tls_server_name_drives_verification() {
    // The apiserver's certificate names only `apiserver.test`, not the IP the kubeconfig dials.
    let api = start_apiserver_for(&["apiserver.test"], false).await;
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(&api.ca_pem);
    let dir = tempfile::tempdir().unwrap();
    let server = format!("https://{}", api.addr);
    let kc = write_kubeconfig_with(
        dir.path(),
        &server,
        &format!("    certificate-authority-data: {ca}"),
        TOKEN_USER,
    );
    let proxy = start_proxy(&kc, |_| {}).await;
    let (status, _, body) = get(proxy.addr, "/version", &[]).await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "the IP is not in the certificate"
    );
    assert!(
        body.contains("its certificate is not valid for the name we dialled"),
        "{body}"
    );
    assert!(body.contains("tls-server-name"), "{body}");
    drop(proxy);
    let dir = tempfile::tempdir().unwrap();
    let kc = write_kubeconfig_with(
        dir.path(),
        &server,
        &format!("    certificate-authority-data: {ca}\n    tls-server-name: apiserver.test"),
        TOKEN_USER,
    );
    let proxy = start_proxy(&kc, |_| {}).await;
    let (status, _, body) = get(proxy.addr, "/version", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn serving_threads_share_one_socket_and_stop_with_the_proxy() {
    let api = start_apiserver().await;
    let (_dir, kc) = token_kubeconfig(&api);
    let cluster = proxylab_kube::load(&proxylab_kube::KubeconfigOptions {
        kubeconfig: Some(kc.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let config = |port: u16, threads: usize| {
        let args = proxylab_auth_proxy::AuthProxyArgs {
            port,
            threads,
            kubeconfig: Some(kc.clone()),
            ..Default::default()
        };
        let mut cfg =
            proxylab_auth_proxy::AuthProxyConfig::from_args_with_cluster(&args, &cluster).unwrap();
        // A name of its own, so that its threads can be told from other tests' proxies.
        cfg.name = "threads-test".into();
        cfg
    };
    let metrics = proxylab_core::telemetry::Metrics::new();
    let hops = proxylab_core::telemetry::HopLog::new(256, &metrics);
    let mut cfg = config(0, 3);
    cfg.hops = Some(hops.clone());
    let bound = proxylab_auth_proxy::AuthProxy::bind(cfg).await.unwrap();
    let addr = bound.local_addr().tcp().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(bound.serve(stop.clone()));
    // Two extra threads, each with its own single-threaded runtime.
    for n in ["threads-test-1", "threads-test-2"] {
        eventually(&format!("thread {n}"), || {
            thread_names().iter().any(|t| t == n)
        })
        .await;
    }

    // Many connections at once: whichever thread accepts one serves it, through its own pool.
    let answers = futures_util::future::join_all((0..30).map(|_| {
        raw_exchange(
            addr,
            "GET /version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
    }))
    .await;
    for a in &answers {
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
        assert!(a.contains("v1.31.0"), "{a}");
    }
    eventually("30 hop records", || hops.recent(100).len() >= 30).await;
    assert_eq!(api.seen_path("/version").len(), 30);

    // The socket is not shared with strangers: a second proxy on the same port fails as
    // kubectl proxy does, instead of silently taking half the connections (SO_REUSEPORT would).
    let err = proxylab_auth_proxy::AuthProxy::bind(config(addr.port(), 2))
        .await
        .err()
        .expect("a second bind on the same port must fail");
    assert!(err.to_string().contains("in use"), "{err}");

    // Shutdown ends every serving thread.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    eventually("the serving threads to end", || {
        !thread_names().iter().any(|t| t.starts_with("threads-test"))
    })
    .await;
}
