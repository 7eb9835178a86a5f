//! `--config FILE` as a user meets it: every kind of mistake stops the binary at start with one line
//! naming the file, the line and the field (exit 2), and a bad edit while it runs is logged and
//! changes nothing — a half-written or emptied file must not take the listeners away.
//!
//! Addresses: 127.81.30.0/24 (the echo server on .1, ClusterIPs .10 and .11).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP server answering every connection with `hello` and closing.
fn hello_server(addr: &str) -> SocketAddr {
    let l = TcpListener::bind(addr).unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"hello");
        }
    });
    a
}

fn hello(to: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&to.parse().unwrap(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
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

/// Runs the binary on `file` until it exits (it must, at once): status and stderr.
fn start_with(file: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .arg("--config")
        .arg(file)
        .args(["--healthz-bind-address", "", "--admin-address", ""])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
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
        let (code, err) = start_with(&path);
        assert_eq!(code, Some(2), "{what}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{what}: one line, got {err}");
        let expected = format!("forwarder: {}{want}", path.display());
        assert!(
            lines[0].starts_with(&expected),
            "{what}: {:?} does not start with {expected:?}",
            lines[0]
        );
    }
}

/// Reloads keep the previous configuration when the new file is refused: a typo, then an empty
/// file (a writer that truncated it and has not written yet). The listener answers throughout,
/// each refusal is logged as its one line, and the next good file applies.
#[test]
fn a_refused_reload_keeps_the_previous_configuration() {
    let ep = hello_server("127.81.30.1:0");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, service("web", "127.81.30.10", ep)).unwrap();
    let log_path = dir.path().join("forwarder.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_forwarder"))
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
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    eventually("the ClusterIP", || {
        hello("127.81.30.10:8080").as_deref() == Some("hello")
    });

    let typo = service("web", "127.81.30.10", ep).replace("  ports:", "  portz:");
    std::fs::write(&path, typo).unwrap();
    eventually("the typo's error in the log", || {
        log().contains("spec.portz: unknown field (did you mean \"ports\"?) (keeping the previous configuration)")
    });
    assert_eq!(
        hello("127.81.30.10:8080").as_deref(),
        Some("hello"),
        "{}",
        log()
    );

    std::fs::write(&path, "").unwrap();
    eventually("the empty file's error in the log", || {
        log().contains("cluster.yaml:1: file: no Kubernetes objects in it")
    });
    assert_eq!(
        hello("127.81.30.10:8080").as_deref(),
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
    eventually("the new service", || {
        hello("127.81.30.11:8080").as_deref() == Some("hello")
    });
    assert_eq!(hello("127.81.30.10:8080").as_deref(), Some("hello"));

    let _ = child.kill();
    let _ = child.wait();
}
