//! `HTTPS_PROXY` / `NO_PROXY` end to end through `load_with_env` and the upstream stack: the
//! proxy variables are handed in as a `ProxyEnv` (never `std::env::set_var`), the kubeconfig is a
//! real file, and requests go through the real dialer to fake proxies on 127.0.0.1.
//!
//! The apiserver is named `apiserver.proxylab.test`: not loopback-looking, so the environment proxy
//! applies, and never resolved — through an HTTP CONNECT proxy the *proxy* resolves the name, and
//! these fake proxies only record the CONNECT line and refuse it. Whether the tunnel then carries
//! TLS is the dialer's own test (`dials_through_http_connect`); what is checked here is which way
//! each connection went. The direct path is checked with a loopback apiserver address (which the
//! environment proxy must not capture), since dialling a non-loopback name directly would need
//! DNS.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::Request;
use proxylab_core::http::Transport;
use proxylab_kube::{
    KubeconfigOptions, ProxyChoice, ProxyEnv, ProxySource, Upstream, UpstreamOptions, load_with_env,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SERVER: &str = "https://apiserver.proxylab.test:6443";

/// A proxy that records the first line of each request head and answers 403.
async fn refusing_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match c.read(&mut b).await {
                        Ok(1) => head.push(b[0]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&head);
                s.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or_default().to_owned());
                let _ = c.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
            });
        }
    });
    (addr, seen)
}

/// A TCP listener standing for a loopback apiserver: counts connections, closes them.
async fn counting_listener() -> (SocketAddr, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(Mutex::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            *c.lock().unwrap() += 1;
            drop(s);
        }
    });
    (addr, count)
}

fn kubeconfig(dir: &std::path::Path, server: &str, proxy_url: Option<&str>) -> KubeconfigOptions {
    let proxy = proxy_url
        .map(|p| format!("    proxy-url: {p}\n"))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n{proxy}contexts:\n- name: test\n  context:\n    cluster: test\n    user: tester\nusers:\n- name: tester\n  user:\n    token: t\n"
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    KubeconfigOptions {
        kubeconfig: Some(path),
        ..Default::default()
    }
}

fn env(https_proxy: Option<String>, no_proxy: Option<&str>) -> ProxyEnv {
    ProxyEnv::from_lookup(|name| match name {
        "HTTPS_PROXY" => https_proxy.clone(),
        "NO_PROXY" => no_proxy.map(str::to_owned),
        _ => None,
    })
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn upgrade(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn https_proxy_from_the_environment_carries_pooled_and_upgrade_connections() {
    let (proxy, seen) = refusing_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    let opts = kubeconfig(dir.path(), SERVER, None);
    let cluster = load_with_env(
        &opts,
        &env(Some(format!("http://{proxy}")), Some("10.0.0.0/8,.svc")),
    )
    .await
    .unwrap();
    assert_eq!(
        cluster.proxy,
        ProxyChoice::Proxy {
            url: format!("http://{proxy}").parse().unwrap(),
            source: ProxySource::Environment("HTTPS_PROXY"),
        }
    );
    let up = Upstream::new(&cluster, &UpstreamOptions::default()).unwrap();
    let err = up
        .send(get(&format!("{SERVER}/version")))
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("403"), "{err:?}");
    let err = up
        .send_upgrade(upgrade(&format!(
            "{SERVER}/api/v1/namespaces/default/pods/p/exec"
        )))
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("403"), "{err:?}");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            "CONNECT apiserver.proxylab.test:6443 HTTP/1.1".to_owned(),
            "CONNECT apiserver.proxylab.test:6443 HTTP/1.1".to_owned(),
        ]
    );
}

#[tokio::test]
async fn kubeconfig_proxy_url_wins_over_the_environment() {
    let (env_proxy, env_seen) = refusing_proxy().await;
    let (kc_proxy, kc_seen) = refusing_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    let opts = kubeconfig(dir.path(), SERVER, Some(&format!("http://{kc_proxy}")));
    let cluster = load_with_env(&opts, &env(Some(format!("http://{env_proxy}")), None))
        .await
        .unwrap();
    assert!(
        matches!(
            &cluster.proxy,
            ProxyChoice::Proxy {
                source: ProxySource::Kubeconfig,
                ..
            }
        ),
        "{:?}",
        cluster.proxy
    );
    let up = Upstream::new(&cluster, &UpstreamOptions::default()).unwrap();
    let _ = up
        .send(get(&format!("{SERVER}/version")))
        .await
        .unwrap_err();
    assert_eq!(kc_seen.lock().unwrap().len(), 1);
    assert!(env_seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn loopback_and_no_proxy_servers_are_dialled_directly() {
    let (proxy, seen) = refusing_proxy().await;
    let (api, connections) = counting_listener().await;
    let dir = tempfile::tempdir().unwrap();

    // A loopback apiserver: the environment proxy is not used, the connection goes straight there.
    let opts = kubeconfig(dir.path(), &format!("https://{api}"), None);
    let cluster = load_with_env(&opts, &env(Some(format!("http://{proxy}")), None))
        .await
        .unwrap();
    assert_eq!(
        cluster.proxy,
        ProxyChoice::Direct(proxylab_kube::dialer::DirectReason::Loopback)
    );
    assert!(cluster.config.proxy_url.is_none());
    let up = Upstream::new(&cluster, &UpstreamOptions::default()).unwrap();
    let _ = up.send(get(&format!("https://{api}/version"))).await;
    assert_eq!(*connections.lock().unwrap(), 1);
    assert!(seen.lock().unwrap().is_empty());

    // NO_PROXY naming the server: direct too (not dialled: that would need DNS).
    let opts = kubeconfig(dir.path(), SERVER, None);
    let cluster = load_with_env(
        &opts,
        &env(Some(format!("http://{proxy}")), Some("proxylab.test")),
    )
    .await
    .unwrap();
    assert_eq!(
        cluster.proxy,
        ProxyChoice::Direct(proxylab_kube::dialer::DirectReason::NoProxy)
    );
    assert!(cluster.config.proxy_url.is_none());
}

#[tokio::test]
async fn unusable_environment_proxy_is_a_load_error_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let opts = kubeconfig(dir.path(), SERVER, None);
    let err = load_with_env(&opts, &env(Some("https://proxy.corp:443".into()), None))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("environment variable HTTPS_PROXY"), "{text}");
    assert!(text.contains("https://proxy.corp:443"), "{text}");
}

/// `load` itself reads the process environment. Checked in child processes of this test binary,
/// which get the variables through `Command::env` — the parent never calls `std::env::set_var`.
/// The test runs itself again as the child when `PROXYLAB_ENV_PROXY_CHILD` names a scenario.
#[tokio::test]
async fn load_reads_the_process_environment() {
    const CHILD: &str = "PROXYLAB_ENV_PROXY_CHILD";
    if let Ok(scenario) = std::env::var(CHILD) {
        return child_scenario(&scenario).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let scenarios: [(&str, &[(&str, &str)]); 2] = [
        // Lower-case variables, a scheme-less value, NO_PROXY.
        (
            "lowercase",
            &[
                ("https_proxy", "proxy.corp:3128"),
                ("no_proxy", ".internal"),
            ],
        ),
        // A value http::Uri cannot parse, for a loopback server: unused, so harmless. (kube-rs,
        // left alone, would read it too and fail the whole load.)
        (
            "unparseable-unused",
            &[("HTTPS_PROXY", "http://bad host:1")],
        ),
    ];
    for (scenario, vars) in scenarios {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "load_reads_the_process_environment",
            "--nocapture",
        ])
        .env(CHILD, scenario)
        .env("PROXYLAB_ENV_PROXY_DIR", dir.path());
        proxylab_test_support::without_proxy_env(&mut cmd);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "child {scenario}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Make sure the child really ran the scenario rather than matching no test.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("1 passed"), "child {scenario}: {stdout}");
    }
}

async fn child_scenario(scenario: &str) {
    let base = std::path::PathBuf::from(std::env::var("PROXYLAB_ENV_PROXY_DIR").unwrap());
    let load = |name: &str, server: &str| {
        let dir = base.join(format!("{scenario}-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let opts = kubeconfig(&dir, server, None);
        async move { proxylab_kube::load(&opts).await }
    };
    use proxylab_kube::dialer::DirectReason;
    match scenario {
        "lowercase" => {
            let c = load("loopback", "https://127.0.0.1:6443").await.unwrap();
            assert_eq!(c.proxy, ProxyChoice::Direct(DirectReason::Loopback));
            let c = load("remote", SERVER).await.unwrap();
            assert_eq!(
                c.proxy,
                ProxyChoice::Proxy {
                    url: "http://proxy.corp:3128".parse().unwrap(),
                    source: ProxySource::Environment("https_proxy"),
                }
            );
            assert_eq!(c.config.proxy_url, c.proxy.url().cloned());
            let c = load("internal", "https://api.internal:6443").await.unwrap();
            assert_eq!(c.proxy, ProxyChoice::Direct(DirectReason::NoProxy));
        }
        "unparseable-unused" => {
            let c = load("loopback", "https://127.0.0.1:6443").await.unwrap();
            assert_eq!(c.proxy, ProxyChoice::Direct(DirectReason::Loopback));
            assert!(c.config.proxy_url.is_none());
            let err = load("remote", SERVER).await.unwrap_err().to_string();
            assert!(err.contains("environment variable HTTPS_PROXY"), "{err}");
        }
        other => panic!("unknown scenario {other}"),
    }
}

#[tokio::test]
async fn empty_proxy_url_is_unset_and_leaves_the_choice_to_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let opts = kubeconfig(dir.path(), SERVER, Some("\"\""));
    let cluster = load_with_env(&opts, &env(None, None)).await.unwrap();
    assert_eq!(
        cluster.proxy,
        ProxyChoice::Direct(proxylab_kube::dialer::DirectReason::NotConfigured)
    );
    let cluster = load_with_env(&opts, &env(Some("http://127.0.0.1:3128".into()), None))
        .await
        .unwrap();
    assert!(
        matches!(
            &cluster.proxy,
            ProxyChoice::Proxy {
                source: ProxySource::Environment("HTTPS_PROXY"),
                ..
            }
        ),
        "{:?}",
        cluster.proxy
    );
}
