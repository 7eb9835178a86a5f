//! The kubelet API only answers clients with a certificate from the client CA.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use proxylab_node::certs::{self, CertificateAuthority, CertifiedKey};
use proxylab_node::kubelet_api::RunningContainer;
use proxylab_node::workload::logs::ContainerLog;
use proxylab_node::{Node, NodeConfig};
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn client_config(
    ca: &CertificateAuthority,
    identity: Option<&CertifiedKey>,
) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(certs::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(ca.root_store());
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// GET `path` over TLS; Err when the TLS layer or the connection refuses us.
async fn get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(StatusCode, Bytes), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::IpAddress(LOCALHOST.into()), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "node-1")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// `follow=true` streams the backlog, then each new line as it is written.
async fn follow_logs(addr: SocketAddr, config: Arc<rustls::ClientConfig>, log: &ContainerLog) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::IpAddress(LOCALHOST.into()), tcp)
        .await
        .expect("handshake");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1");
    tokio::spawn(conn);
    let req = Request::get("/containerLogs/default/web-1/main?follow=true&tailLines=1")
        .header("host", "node-1")
        .body(Empty::<Bytes>::new())
        .expect("req");
    let mut body = sender.send_request(req).await.expect("resp").into_body();
    let mut received = String::new();
    while !received.ends_with("second\n") {
        let frame = body.frame().await.expect("open").expect("frame");
        received
            .push_str(std::str::from_utf8(&frame.into_data().unwrap_or_default()).expect("utf8"));
    }
    assert_eq!(received, "second\n");
    log.push("third");
    while !received.ends_with("third\n") {
        let frame = body.frame().await.expect("open").expect("frame");
        received
            .push_str(std::str::from_utf8(&frame.into_data().unwrap_or_default()).expect("utf8"));
    }
    assert_eq!(received, "second\nthird\n");
}

#[tokio::test]
async fn kubelet_api_requires_a_client_certificate_from_the_cluster_ca() {
    certs::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster_ca = CertificateAuthority::generate("cluster-ca").expect("ca");
    let serving =
        certs::issue_serving(&["node-1".into(), LOCALHOST.to_string()], Some(&cluster_ca))
            .expect("serving");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let mut config = NodeConfig::new("node-1", LOCALHOST, "127.0.30.0/25".parse().expect("cidr"));
    config.kubelet_port = 0;
    config.tls_cert_file = Some(write("kubelet.crt", &serving.cert_pem));
    config.tls_private_key_file = Some(write("kubelet.key", &serving.key_pem));
    config.client_ca_file = Some(write("ca.crt", cluster_ca.cert_pem()));
    // An apiserver that is not there: the agent keeps retrying registration in the background,
    // which does not concern the kubelet API.
    // An apiserver that is not there: registration retries in the background.
    config.kubeconfig = Some(
        proxylab_test_support::fake_apiserver::write_kubeconfig_with(
            dir.path(),
            "http://127.0.0.1:9",
            "",
            "    token: offline",
        ),
    );

    let bound = Node::bind(config).await.expect("bind");
    // A container log, as the pod manager registers one when it starts a container.
    let log = ContainerLog::new(100);
    log.push("first");
    log.push("second");
    bound.containers().insert(
        "default",
        "web-1",
        "main",
        RunningContainer::new(log.clone()),
    );
    let addr = bound.kubelet_addr();
    assert_eq!(bound.local_addrs(), vec![addr]);
    let shutdown = CancellationToken::new();
    let serving_task = tokio::spawn(bound.serve(shutdown.clone()));

    // The apiserver's kubelet client certificate: accepted.
    let apiserver = cluster_ca
        .issue_client("kube-apiserver-kubelet-client", &["kubeadm:cluster-admins"])
        .expect("client");
    let (status, body) = get(
        addr,
        client_config(&cluster_ca, Some(&apiserver)),
        "/healthz",
    )
    .await
    .expect("healthz");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "ok");
    let (status, body) = get(addr, client_config(&cluster_ca, Some(&apiserver)), "/pods")
        .await
        .expect("pods");
    assert_eq!(status, StatusCode::OK);
    let list: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"], serde_json::json!([]));
    let admin = || client_config(&cluster_ca, Some(&apiserver));
    let (status, body) = get(addr, admin(), "/containerLogs/default/web-1/main")
        .await
        .expect("logs");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "first\nsecond\n");
    let path = "/containerLogs/default/web-1/main?tailLines=1&timestamps=true";
    let (_, body) = get(addr, admin(), path).await.expect("logs");
    let text = String::from_utf8(body.to_vec()).expect("utf8");
    let (stamp, rest) = text.split_once(' ').expect("timestamp first");
    assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{stamp}");
    assert_eq!(rest, "second\n");
    let (status, _) = get(addr, admin(), "/containerLogs/default/web-1/other")
        .await
        .expect("404");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(
        addr,
        admin(),
        "/containerLogs/default/web-1/main?tailLines=x",
    )
    .await
    .expect("400");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    follow_logs(addr, admin(), &log).await;
    let (status, _) = get(addr, admin(), "/nope").await.expect("404");
    assert_eq!(status, StatusCode::NOT_FOUND);

    // No certificate: the handshake completes, the request is unauthorized.
    let (status, body) = get(addr, client_config(&cluster_ca, None), "/pods")
        .await
        .expect("401 response");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Plain text, as the kubelet's auth filter writes it.
    assert_eq!(body, "Unauthorized\n");

    // A certificate from another CA: refused by TLS, no response at all.
    let other_ca = CertificateAuthority::generate("someone-else").expect("ca");
    let stranger = other_ca
        .issue_client("kube-apiserver-kubelet-client", &[])
        .expect("client");
    let refused = get(addr, client_config(&cluster_ca, Some(&stranger)), "/pods").await;
    assert!(
        refused.is_err(),
        "a foreign client certificate got a response: {refused:?}"
    );

    shutdown.cancel();
    serving_task.await.expect("join").expect("serve");
}
