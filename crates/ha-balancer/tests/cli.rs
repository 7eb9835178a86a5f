//! The `ha-balancer` binary: bad flags and files are one line and exit 2; a good command line
//! serves, and SIGTERM drains and exits 0.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use proxylab_test_support::echo::tcp_echo;
use proxylab_test_support::{expect_one_line_exit_2, wait_until};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ha-balancer"))
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn bad_flags_and_files_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ha.yaml");
    std::fs::write(
        &bad,
        "backends: [127.0.10.1:6443]\nhealthCheck: {type: tcp, rise: many}\n",
    )
    .unwrap();
    // Any readable file stands for a certificate here: these cases stop before reading them.
    let some_file = bad.display().to_string();
    let http_yaml = dir.path().join("http.yaml");
    std::fs::write(
        &http_yaml,
        "mode: http\nbackends: [127.0.10.1:6443]\nhealthCheck: {caFile: ha.yaml}\nhttp: {certFile: ha.yaml, keyFile: ha.yaml}\n",
    )
    .unwrap();
    let garbage_certs = dir.path().join("garbage.yaml");
    std::fs::write(
        &garbage_certs,
        "mode: http\nbackends: [127.0.10.1:6443]\nhealthCheck: {caFile: ha.yaml}\n\
         http: {certFile: ha.yaml, keyFile: ha.yaml, clientCaFile: ha.yaml, proxyCertFile: ha.yaml, proxyKeyFile: ha.yaml}\n",
    )
    .unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "no backends: give --backend"),
        (
            vec![
                "--mode".into(),
                "udp".into(),
                "--backend".into(),
                "127.0.0.1:1".into(),
            ],
            "unknown mode \"udp\" (expected tcp or http)",
        ),
        (
            vec![
                "--mode".into(),
                "http".into(),
                "--backend".into(),
                "127.0.0.1:1".into(),
            ],
            "--mode http needs --tls-cert-file (the serving certificate clients see)",
        ),
        (
            vec![
                "--mode".into(),
                "http".into(),
                "--backend".into(),
                "127.0.0.1:1".into(),
                "--tls-cert-file".into(),
                some_file.clone(),
                "--tls-private-key-file".into(),
                some_file.clone(),
                "--client-ca-file".into(),
                some_file.clone(),
                "--proxy-client-cert-file".into(),
                some_file.clone(),
                "--proxy-client-key-file".into(),
                some_file.clone(),
            ],
            "--mode http needs --ca-file",
        ),
        (
            vec![
                "--mode".into(),
                "http".into(),
                "--backend".into(),
                "127.0.0.1:1".into(),
                "--tls-cert-file".into(),
                "/nonexistent/balancer.crt".into(),
            ],
            "--tls-cert-file /nonexistent/balancer.crt: not a readable file",
        ),
        (
            vec!["--config".into(), http_yaml.display().to_string()],
            "http.yaml:4: http.clientCaFile: http mode needs it (--client-ca-file)",
        ),
        (
            vec!["--config".into(), garbage_certs.display().to_string()],
            "no PEM certificate found",
        ),
        (
            vec!["--backend".into(), "nowhere".into()],
            "\"nowhere\" is not an ip:port address",
        ),
        (
            vec!["--backend".into(), "127.0.0.1:1".into()],
            "give --ca-file, or --insecure-skip-tls-verify",
        ),
        (
            vec![
                "--backend".into(),
                "127.0.0.1:1".into(),
                "--health-check".into(),
                "http:/readyz".into(),
            ],
            "expected https:/PATH",
        ),
        (
            vec![
                "--backend".into(),
                "127.0.0.1:1".into(),
                "--check-interval".into(),
                "2".into(),
            ],
            "--check-interval",
        ),
        (
            vec![
                "--backend".into(),
                "127.0.0.1:1".into(),
                "--ca-file".into(),
                "/nonexistent/ca.crt".into(),
            ],
            "--ca-file /nonexistent/ca.crt: not a readable file",
        ),
        (
            vec!["--config".into(), bad.display().to_string()],
            "ha.yaml:2: healthCheck.rise: expected a number",
        ),
        (
            vec![
                "--config".into(),
                bad.display().to_string(),
                "--backend".into(),
                "127.0.0.1:1".into(),
            ],
            "cannot be used with",
        ),
    ];
    for (args, want) in cases {
        let line = expect_one_line_exit_2(bin().args(&args));
        assert!(line.contains(want), "{args:?}: {line:?} lacks {want:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_and_drains_on_sigterm() {
    let a = tcp_echo("127.0.0.1:0", "a").await;
    let (listen, admin) = (free_port(), free_port());
    let mut child = bin()
        .args([
            "--listen",
            &listen.to_string(),
            "--admin-address",
            &admin.to_string(),
            "--backend",
            &format!("a={a}"),
            "--health-check",
            "tcp",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let up = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(20), || {
            // Not listening yet: try again (http_get_blocking panics on a refused connect).
            if std::net::TcpStream::connect(admin).is_err() {
                return false;
            }
            let r = proxylab_test_support::http::http_get_blocking(admin, "/stats?format=json");
            r.body.contains("\"checksOk\":1") || r.body.contains("\"checksOk\":2")
        })
    })
    .await
    .unwrap();
    assert!(up.is_some(), "the balancer never served its stats");
    let mut s = tokio::net::TcpStream::connect(listen).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"hi").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "a\nhi");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
