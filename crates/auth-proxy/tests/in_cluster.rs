//! In-cluster configuration, end to end through the `auth-proxy` binary.
//!
//! With no kubeconfig anywhere (no `--kubeconfig`, no `KUBECONFIG`, an empty `HOME`) and
//! `KUBERNETES_SERVICE_HOST` set, kubectl — and auth-proxy — use the pod's service account: the
//! apiserver at `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, the CA in
//! `ca.crt` and the bearer token in `token`, both under the fixed directory
//! `/var/run/secrets/kubernetes.io/serviceaccount`.
//!
//! That directory is machine-global, so this file holds exactly one test, which:
//! - runs only when the directory does not exist (inside a real pod it does: then the test prints
//!   why and skips, even under CI, since nothing is missing from the machine);
//! - claims it with one atomic `mkdir` of the topmost missing component, so two concurrent runs
//!   (two checkouts, two engineers) cannot both use it: the loser skips;
//! - removes exactly what it created, from a guard's `Drop`, so a failed assertion cleans up too;
//! - checks the error paths first, in a fixed order (directory absent, directory empty, token
//!   missing), then serves.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_auth-proxy");
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const TOKEN: &str = "in-cluster-test-token";

/// The topmost directory this test created; removed (with everything under it) on drop.
struct CreatedDir(PathBuf);

impl Drop for CreatedDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: could not remove {}: {e}", self.0.display());
        }
    }
}

/// Why the service-account directory cannot be used by this test.
enum Unavailable {
    /// It (or a concurrent run's claim on it) exists: not ours to touch.
    Exists(String),
    /// Creating it failed (not root?).
    CannotCreate(String),
}

/// Creates [`SA_DIR`] when it does not exist. The topmost missing component is created with a
/// plain `create_dir`, which fails if it appeared meanwhile: that is the claim.
fn claim_sa_dir() -> Result<CreatedDir, Unavailable> {
    let target = Path::new(SA_DIR);
    // symlink_metadata: a dangling symlink also counts as "exists, not ours".
    if target.symlink_metadata().is_ok() {
        return Err(Unavailable::Exists(format!("{SA_DIR} exists")));
    }
    let mut top = target;
    while let Some(parent) = top.parent() {
        if parent.symlink_metadata().is_ok() {
            break;
        }
        top = parent;
    }
    match std::fs::create_dir(top) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Unavailable::Exists(format!(
                "{} appeared meanwhile (another run?)",
                top.display()
            )));
        }
        Err(e) => {
            return Err(Unavailable::CannotCreate(format!(
                "cannot create {}: {e}",
                top.display()
            )));
        }
    }
    let guard = CreatedDir(top.to_owned());
    std::fs::create_dir_all(target)
        .map_err(|e| Unavailable::CannotCreate(format!("cannot create {SA_DIR}: {e}")))?;
    Ok(guard)
}

/// Kills the child on drop, so a failed assertion leaves no process behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary with no kubeconfig reachable and the in-cluster variables set.
fn in_cluster_command(home: &Path, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("HOME", home)
        .env_remove("KUBECONFIG")
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", port.to_string());
    // The apiserver is on loopback, which is never proxied; remove the variables anyway so the
    // machine's environment cannot change what this test exercises.
    without_proxy_env(&mut cmd);
    cmd
}

/// Runs the binary to completion, expecting exit code 2 and one line on stderr.
fn expect_exit_2(home: &Path, port: u16) -> String {
    expect_one_line_exit_2(in_cluster_command(home, port).args(["-p", "0"]))
}

#[tokio::test]
async fn in_cluster_service_account_end_to_end() {
    let api = start_apiserver().await;
    let home = tempfile::tempdir().unwrap();
    let port = api.addr.port();
    let dir = Path::new(SA_DIR);

    // 1. No service-account directory at all (only checked when it is absent; if it exists, the
    //    claim below fails and the test skips). Reading only: nothing is created yet.
    if dir.symlink_metadata().is_err() {
        let line = expect_exit_2(home.path(), port);
        assert!(line.contains("in-cluster configuration"), "{line}");
    }

    let sa_dir = match claim_sa_dir() {
        Ok(guard) => guard,
        Err(Unavailable::Exists(why)) => {
            eprintln!("skipping: {why}; this test only runs where it can own that directory");
            return;
        }
        Err(Unavailable::CannotCreate(why)) => {
            if std::env::var_os("CI").is_some() {
                panic!("{why} (CI runs tests as root)");
            }
            eprintln!("skipping: {why}");
            return;
        }
    };

    // 2. The directory, still empty: kube-rs fails on the namespace file.
    let line = expect_exit_2(home.path(), port);
    assert!(line.contains("in-cluster configuration"), "{line}");

    // 3. CA and namespace, but no token: the error says in-cluster and names the token file.
    std::fs::write(dir.join("ca.crt"), &api.ca_pem).unwrap();
    std::fs::write(dir.join("namespace"), "default").unwrap();
    let line = expect_exit_2(home.path(), port);
    assert!(line.contains("in-cluster configuration"), "{line}");
    assert!(line.contains(&format!("{SA_DIR}/token")), "{line}");

    // 4. The token, with the trailing newline a mounted secret may have: serves.
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let child = in_cluster_command(home.path(), port)
        .args(["-p", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let addr = serving_addr(&mut child.0).await;

    let (status, _, body) = get(addr, "/version", &[]).await;
    assert_eq!(status, 200, "{body}");
    let version: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(version["gitVersion"], "v1.31.0", "{body}");

    let seen = api.seen_path("/version");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {TOKEN}").as_str()),
    );

    drop(child);
    drop(sa_dir);
    assert!(
        !dir.exists(),
        "{SA_DIR} should have been removed with what the test created"
    );
}
