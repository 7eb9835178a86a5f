//! The `auth-proxy` binary: startup line, flag and kubeconfig errors (one line, exit 2), shutdown.

mod common;

use std::process::{Command, Stdio};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_auth-proxy");

fn run_expect_exit_2(args: &[&str]) -> String {
    expect_one_line_exit_2(Command::new(BIN).args(args).env_remove("KUBECONFIG"))
}

#[test]
fn missing_client_certificate_names_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = test_pki();
    let kc = write_kubeconfig(
        dir.path(),
        "https://127.0.0.1:6443",
        &ca,
        "    client-certificate: /nonexistent/admin.crt\n    client-key: /nonexistent/admin.key",
    );
    let line = run_expect_exit_2(&["--kubeconfig", kc.to_str().unwrap()]);
    assert!(line.contains(kc.to_str().unwrap()), "{line}");
    assert!(
        line.contains("users[tester].user.client-certificate"),
        "{line}"
    );
    assert!(line.contains("/nonexistent/admin.crt"), "{line}");
}

#[test]
fn context_pointing_to_missing_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("config");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\ncontexts:\n- name: dev\n  context:\n    cluster: nowhere\n    user: u\nusers:\n- name: u\n  user:\n    token: t\n",
    )
    .unwrap();
    let line = run_expect_exit_2(&["--kubeconfig", kc.to_str().unwrap()]);
    assert!(line.contains("contexts[dev].context.cluster"), "{line}");
    assert!(line.contains("nowhere"), "{line}");
    let line = run_expect_exit_2(&["--kubeconfig", kc.to_str().unwrap(), "--context", "prod"]);
    assert!(
        line.contains("--context") && line.contains("prod"),
        "{line}"
    );
}

#[test]
fn unparseable_kubeconfig_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("config");
    std::fs::write(&kc, "clusters: [this is: not: valid").unwrap();
    let line = run_expect_exit_2(&["--kubeconfig", kc.to_str().unwrap()]);
    assert!(line.contains(kc.to_str().unwrap()), "{line}");
    let line = run_expect_exit_2(&["--kubeconfig", "/nonexistent/kubeconfig"]);
    assert!(line.contains("/nonexistent/kubeconfig"), "{line}");
}

#[test]
fn kubeconfig_list_merges_first_wins() {
    // KUBECONFIG=a:b — current-context from a, the cluster from b; the user "u" of a wins over b's.
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::write(&a, "apiVersion: v1\nkind: Config\ncurrent-context: dev\ncontexts:\n- name: dev\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    client-certificate: /nonexistent/from-a.crt\n").unwrap();
    std::fs::write(&b, "apiVersion: v1\nkind: Config\ncurrent-context: other\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\nusers:\n- name: u\n  user:\n    token: from-b\n").unwrap();
    let out = Command::new(BIN)
        .env(
            "KUBECONFIG",
            format!("{}:{}:/nonexistent/skipped", a.display(), b.display()),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // The user came from file a (first wins), and the error says so.
    assert!(stderr.contains(a.to_str().unwrap()), "{stderr}");
    assert!(
        stderr.contains("users[u].user.client-certificate"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = test_pki();
    let kc = write_kubeconfig(dir.path(), "https://127.0.0.1:6443", &ca, "    token: t");
    let line = run_expect_exit_2(&[
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--unix-socket",
        "/tmp/x.sock",
        "--port",
        "9999",
    ]);
    assert!(line.contains("--unix-socket"), "{line}");
    let line = run_expect_exit_2(&["--kubeconfig", kc.to_str().unwrap(), "--reject-paths", "("]);
    assert!(line.contains("--reject-paths"), "{line}");
}

#[tokio::test]
async fn prints_starting_line_and_serves_then_exits_on_sigterm() {
    let api = start_apiserver().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = write_kubeconfig(
        dir.path(),
        &format!("https://{}", api.addr),
        &api.ca_pem,
        "    token: t",
    );
    let mut child = Command::new(BIN)
        .args([
            "--kubeconfig",
            kc.to_str().unwrap(),
            "-p",
            "0",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving_addr(&mut child).await;
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    let (status, _, body) = get(addr, "/version", &[]).await;
    assert_eq!(status, 200, "{body}");

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    // One JSON access line for the request, flushed before exit.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let access: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect();
    assert_eq!(access.len(), 1, "{stderr}");
    assert_eq!(access[0]["path"], "/version");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["outcome"], "ok");
}

/// Go-syntax mistakes are flag errors like any other: one line, exit 2 (kubectl exits 1). The
/// side-by-side comparison with kubectl is `kubectl_flags.rs`; this holds without kubectl.
#[test]
fn go_syntax_errors_are_one_line_exit_2() {
    for (args, names) in [
        (&["--bogus"][..], "--bogus"),
        (&["--keepalive=30"], "missing unit"),
        (&["--disable-filter=yes"], "ParseBool"),
        (&["-p", "70000"], "70000"),
        (
            &[
                "--as-group",
                "g",
                "--server",
                "https://127.0.0.1:1",
                "--token",
                "t",
            ],
            "--as-group",
        ),
        (&["--server", "ftp://x", "--token", "t"], "--server"),
    ] {
        let line = run_expect_exit_2(args);
        assert!(line.starts_with("auth-proxy: "), "{line}");
        assert!(line.contains(names), "{args:?}: {line}");
    }
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--as-group"));
}
