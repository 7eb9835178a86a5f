//! `Node::bind` reports bad files and flags as one clear error naming what is wrong.

use std::net::{IpAddr, Ipv4Addr};

use proxylab_node::{Node, NodeConfig, NodeError};

fn config() -> NodeConfig {
    let mut c = NodeConfig::new(
        "node-1",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "127.0.30.0/25".parse().expect("cidr"),
    );
    c.kubelet_port = 0;
    c
}

/// A kubeconfig for an apiserver that is not there (binding never calls it).
fn offline_kubeconfig(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    Some(
        proxylab_test_support::fake_apiserver::write_kubeconfig_with(
            dir,
            "http://127.0.0.1:9",
            "",
            "    token: offline",
        ),
    )
}

#[tokio::test]
async fn missing_kubeconfig_names_the_file() {
    let mut c = config();
    c.kubeconfig = Some("/nonexistent/kubeconfig".into());
    let err = Node::bind(c).await.expect_err("must fail");
    assert!(matches!(err, NodeError::Kubeconfig(_)), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
}

#[tokio::test]
async fn bad_certificate_files_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");

    let mut c = config();
    c.kubeconfig = offline_kubeconfig(dir.path());
    c.client_ca_file = Some(junk.clone());
    let err = Node::bind(c).await.expect_err("must fail");
    assert!(matches!(err, NodeError::Cert(_)), "{err:?}");
    assert!(err.to_string().contains("junk.pem"), "{err}");

    let mut c = config();
    c.kubeconfig = offline_kubeconfig(dir.path());
    c.tls_cert_file = Some(junk.clone());
    let err = Node::bind(c).await.expect_err("cert without key");
    assert!(matches!(err, NodeError::InvalidFlag { .. }), "{err:?}");

    let mut c = config();
    c.kubeconfig = offline_kubeconfig(dir.path());
    c.workload_ca = Some((junk.clone(), dir.path().join("missing.key")));
    let err = Node::bind(c).await.expect_err("must fail");
    assert!(matches!(err, NodeError::Cert(_)), "{err:?}");
}

#[tokio::test]
async fn busy_kubelet_port_is_a_bind_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config();
    c.kubeconfig = offline_kubeconfig(dir.path());
    c.kubelet_port = taken.local_addr().expect("addr").port();
    let err = Node::bind(c).await.expect_err("must fail");
    assert!(matches!(err, NodeError::Bind { .. }), "{err:?}");
}
