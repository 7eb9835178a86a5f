//! `--config FILE` as a user meets it: every kind of mistake stops the binary at start with one line
//! naming the file, the line and the field (exit 2), and a bad edit while it runs is logged and
//! changes nothing — a half-written or emptied file must not take the listeners away.
//!
//! Addresses: 127.81.30.0/24 (the echo server on .1, ClusterIPs .10 and .11).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use proxylab_test_support::echo::tcp_echo;
use proxylab_test_support::{eventually, eventually_async, expect_one_line_exit_2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The first line the endpoint behind `to` writes (its name), or `None` when nothing answers.
async fn hello(to: &str) -> Option<String> {
    let mut s = TcpStream::connect(to).await.ok()?;
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).await.ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).trim_end().to_string())
}

fn service(name: &str, ip: &str, endpoint: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  clusterIP: {ip}
  ports:
  - name: t
    port: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
- name: t
  port: {}
endpoints:
- addresses: [\"{}\"]
",
        endpoint.port(),
        endpoint.ip()
    )
}

/// Runs the binary on `file`, expecting it to refuse it: the one line it prints.
fn refused(file: &Path) -> String {
    expect_one_line_exit_2(
        Command::new(env!("CARGO_BIN_EXE_forwarder"))
            .arg("--config")
            .arg(file)
            .args(["--healthz-bind-address", "", "--admin-address", ""]),
    )
}

#[test]
fn each_kind_of_mistake_is_one_line_with_file_line_and_field_and_exit_2() {
    let ep: SocketAddr = "127.81.30.1:9".parse().unwrap();
    let good = service("web", "127.81.30.10", ep);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown kind",
            format!("{good}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\n"),
            ":27: kind: \"Deployment\" is not read by the forwarder",
        ),
        (
            "unknown field",
            good.replace("  clusterIP:", "  sessionAfinity: ClientIP\n  clusterIP:"),
            ":7: Service default/web: spec.sessionAfinity: unknown field (did you mean \"sessionAffinity\"?)",
        ),
        (
            "duplicated object",
            format!("{good}---\n{good}"),
            ":29: Service default/web: metadata.name: defined twice (first at line 4)",
        ),
        (
            "List with a bad item",
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  metadata: {name: a}\n".into(),
            ":4: items[0].kind: missing",
        ),
        (
            "empty file",
            "\n# nothing yet\n".into(),
            ":1: file: no Kubernetes objects in it",
        ),
        (
            "bad value",
            good.replace("port: 8080", "port: 99999"),
            ":10: Service default/web: spec.ports[0].port: 99999 is not a port number 1-65535",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, text, want) in cases {
        let path = dir.path().join("cluster.yaml");
        std::fs::write(&path, &text).unwrap();
        let line = refused(&path);
        let expected = format!("forwarder: {}{want}", path.display());
        assert!(
            line.starts_with(&expected),
            "{what}: {line:?} does not start with {expected:?}"
        );
    }
}

/// A bad flag is one line naming the binary and exit 2, as every proxylab binary reports it
/// (clap's own report adds a usage block on further lines).
#[test]
fn a_bad_flag_is_one_line_and_exit_2() {
    let line = expect_one_line_exit_2(
        Command::new(env!("CARGO_BIN_EXE_forwarder")).args(["--no-such-flag"]),
    );
    assert!(
        line.starts_with("forwarder: ") && line.contains("--no-such-flag"),
        "{line}"
    );
}

/// Reloads keep the previous configuration when the new file is refused: a typo, then an empty
/// file (a writer that truncated it and has not written yet). The listener answers throughout,
/// each refusal is logged as its one line, and the next good file applies.
#[tokio::test]
async fn a_refused_reload_keeps_the_previous_configuration() {
    let ep = tcp_echo("127.81.30.1:0", "hello").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, service("web", "127.81.30.10", ep)).unwrap();
    let log_path = dir.path().join("forwarder.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .arg("--config")
        .arg(&path)
        .args([
            "--healthz-bind-address",
            "",
            "--admin-address",
            "",
            "--worker-threads",
            "1",
        ])
        .env("RUST_LOG", "info,hop=warn")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    eventually_async("the ClusterIP", async || {
        hello("127.81.30.10:8080").await.as_deref() == Some("hello")
    })
    .await;

    let typo = service("web", "127.81.30.10", ep).replace("  ports:", "  portz:");
    std::fs::write(&path, typo).unwrap();
    eventually("the typo's error in the log", || {
        log().contains("spec.portz: unknown field (did you mean \"ports\"?) (keeping the previous configuration)")
    })
    .await;
    assert_eq!(
        hello("127.81.30.10:8080").await.as_deref(),
        Some("hello"),
        "{}",
        log()
    );

    std::fs::write(&path, "").unwrap();
    eventually("the empty file's error in the log", || {
        log().contains("cluster.yaml:1: file: no Kubernetes objects in it")
    })
    .await;
    assert_eq!(
        hello("127.81.30.10:8080").await.as_deref(),
        Some("hello"),
        "{}",
        log()
    );

    // A good file applies: the second service's listener opens.
    let two = format!(
        "{}---\n{}",
        service("web", "127.81.30.10", ep),
        service("api", "127.81.30.11", ep)
    );
    std::fs::write(&path, two).unwrap();
    eventually_async("the new service", async || {
        hello("127.81.30.11:8080").await.as_deref() == Some("hello")
    })
    .await;
    assert_eq!(hello("127.81.30.10:8080").await.as_deref(), Some("hello"));

    let _ = child.kill().await;
}
