//! A real, single-member etcd on loopback for a test: free ports, a temporary data directory (in
//! `/dev/shm` when there is one, so etcd's fsyncs cost nothing), killed when dropped.
//!
//! [`start`] returns `None` (the test skips) when the `etcd` binary is missing, and panics instead
//! under `CI` ([`crate::require_tool`]); Debian's package is `etcd-server`.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::http::try_http_get_blocking;

/// A running etcd; killed (and its data removed) on drop.
pub struct Etcd {
    child: Child,
    /// The client URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The client address.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// etcd's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Kills etcd now (a test of what its clients do when it is gone).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Starts etcd and waits until it answers `/health`; `None` when etcd is not installed (and `CI`
/// is not set).
pub fn start() -> Option<Etcd> {
    if !crate::require_tool("etcd") {
        return None;
    }
    // Another process may take a port between our probe and etcd's bind: try a few times.
    let mut last_log = String::new();
    for _ in 0..3 {
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm"),
            false => tempfile::tempdir(),
        }
        .expect("a temporary directory");
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log file");
        let mut child = crate::without_proxy_env(&mut Command::new("etcd"))
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            // A one-member cluster elects itself; short timers make that immediate.
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=100")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        let addr: SocketAddr = ([127, 0, 0, 1], client).into();
        let healthy = crate::wait_until(crate::PATIENCE, || {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(false);
            }
            try_http_get_blocking(addr, "/health")
                .ok()
                .filter(|r| r.status == 200 && r.body.contains("true"))
                .map(|_| true)
        });
        if healthy == Some(true) {
            return Some(Etcd {
                child,
                url,
                addr,
                dir,
            });
        }
        let _ = child.kill();
        let _ = child.wait();
        last_log = std::fs::read_to_string(dir.path().join("etcd.log")).unwrap_or_default();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("etcd did not become healthy; its log:\n{last_log}");
}
