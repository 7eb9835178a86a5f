//! Real `kubectl --server http://<auth-proxy>` against the in-test apiserver: what a user of
//! `kubectl proxy` does. Skipped (with a reason) when kubectl is missing, unless CI is set.

mod common;

use std::process::{Command, Stdio};

use common::*;

fn kubectl(home: &std::path::Path, server: &str, args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .args(["--server", server, "--cache-dir"])
        .arg(home.join("cache"))
        .args(args)
        .output()
        .unwrap()
}

async fn setup() -> Option<(FakeApiserver, Proxy, tempfile::TempDir)> {
    if !require_tool("kubectl") {
        return None;
    }
    let api = start_apiserver().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = write_kubeconfig(
        dir.path(),
        &format!("https://{}", api.addr),
        &api.ca_pem,
        "    token: test-token",
    );
    let proxy = start_proxy(&kc, |_| {}).await;
    Some((api, proxy, dir))
}

#[tokio::test(flavor = "multi_thread")]
async fn get_raw_version_and_api() {
    let Some((api, proxy, dir)) = setup().await else {
        return;
    };
    let server = format!("http://127.0.0.1:{}", proxy.addr.port());
    let home = dir.path().to_owned();
    let out = tokio::task::spawn_blocking({
        let (home, server) = (home.clone(), server.clone());
        move || kubectl(&home, &server, &["get", "--raw", "/version"])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("v1.31.0"));

    let out =
        tokio::task::spawn_blocking(move || kubectl(&home, &server, &["get", "--raw", "/api"]))
            .await
            .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("APIVersions"));
    // kubectl sent no credentials; the apiserver saw the kubeconfig's.
    let seen = api.seen_path("/api").pop().unwrap();
    assert_eq!(seen.headers["authorization"], "Bearer test-token");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_pods() {
    let Some((_api, proxy, dir)) = setup().await else {
        return;
    };
    let server = format!("http://127.0.0.1:{}", proxy.addr.port());
    let home = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        kubectl(
            &home,
            &server,
            &["get", "pods", "-n", "default", "-o", "name"],
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pod/web-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_watch_streams_events() {
    use std::io::{BufRead, BufReader};
    let Some((api, proxy, dir)) = setup().await else {
        return;
    };
    let server = format!("http://127.0.0.1:{}", proxy.addr.port());
    let mut child = Command::new("kubectl")
        .env("HOME", dir.path())
        .env_remove("KUBECONFIG")
        .args(["--server", &server, "--cache-dir"])
        .arg(dir.path().join("cache"))
        .args(["get", "pods", "-n", "default", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The list, then the first watch event — which the backend sends while holding the second.
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("first")) {
        match tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv()).await {
            Ok(Some(l)) => lines.push(l),
            other => panic!("watch output ended early: {other:?} after {lines:?}"),
        }
    }
    assert_eq!(lines[0], "pod/web-1");
    api.release.notify_one();
    while !lines.iter().any(|l: &String| l.contains("second")) {
        match tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv()).await {
            Ok(Some(l)) => lines.push(l),
            other => panic!("second event missing: {other:?} after {lines:?}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
