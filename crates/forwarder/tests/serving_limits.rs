//! The forwarder's HTTP endpoints cannot take its data plane down (issue 8).
//!
//! Before `core::serve`'s limits, the admin and healthz ports were served by `axum::serve` with
//! none: clients holding thousands of half-sent requests there used up the process's descriptors,
//! and every ClusterIP and NodePort stopped answering until they left. Here the `forwarder` binary
//! runs with a small open-file limit (1,024) and 3,000 clients per port (6,000 in all, several
//! times what the forwarder could hold) open connections and send half a request head each, while
//! ClusterIP connections keep being relayed; once the flood leaves, both ports answer again.
//!
//! What the flood gets: the forwarder serves at most 128 connections per admin or health port
//! (`ServeOptions::admin`) and stops accepting beyond that, so the kernel queues a backlog's worth
//! more and drops the rest of the SYNs (those clients' connects hang). None of that costs the
//! forwarder a descriptor beyond the 128 per port.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proxylab_test_support::echo::tcp_echo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// This test's own loopback block, apart from `forwarder.rs`'s 127.81.N.0/24.
const NODE: &str = "127.83.1.100";
const CLUSTER_IP: &str = "127.83.1.10";
const ENDPOINT: &str = "127.83.1.1";

/// The forwarder's open-file limit in this test.
const FORWARDER_NOFILE: u32 = 1024;

/// One connection through the ClusterIP: the endpoint's greeting, then an echo.
async fn through_cluster_ip(to: SocketAddr) -> Result<(), String> {
    let attempt = async {
        let mut s = TcpStream::connect(to).await.map_err(|e| e.to_string())?;
        let mut hello = [0u8; 4];
        s.read_exact(&mut hello).await.map_err(|e| e.to_string())?;
        if &hello != b"web\n" {
            return Err(format!("greeting {hello:?}"));
        }
        s.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut echo = [0u8; 4];
        s.read_exact(&mut echo).await.map_err(|e| e.to_string())?;
        if &echo != b"ping" {
            return Err(format!("echo {echo:?}"));
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// `GET path` on a fresh connection: the status line, or why there was none.
async fn http_status(addr: SocketAddr, path: &str) -> Result<String, String> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// Opens up to `n` connections to `addr` (those the kernel does not complete within a couple of
/// seconds are given up: past the listener's limit and backlog, SYNs are dropped) and sends each
/// half a request head, never finished.
async fn hold_half_sent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        tasks.spawn(async move {
            let mut s = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
                .await
                .ok()?
                .ok()?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Never: ")
                .await
                .ok()?;
            Some(s)
        });
    }
    let mut held = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(Some(s)) = r {
            held.push(s);
        }
    }
    held
}

/// The forwarder process, killed when dropped (also when the test fails).
struct Forwarder {
    child: Child,
    stderr: std::path::PathBuf,
}

impl Forwarder {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn thousands_of_half_sent_requests_on_admin_and_healthz_leave_cluster_ips_working() {
    // The flood comes from this process: give it room.
    let ours = proxylab_core::runtime::raise_nofile_limit(1 << 16).unwrap();
    let per_port = usize::try_from(ours.saturating_sub(1000) / 2)
        .unwrap()
        .min(3000);
    assert!(
        per_port > FORWARDER_NOFILE as usize,
        "this process may open only {ours} files: too few to flood the forwarder"
    );

    let endpoint = tcp_echo(&format!("{ENDPOINT}:0"), "web").await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("cluster.yaml");
    std::fs::write(
        &manifests,
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  clusterIP: {CLUSTER_IP}\n  ports:\n  - name: http\n    port: 8080\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: web\naddressType: IPv4\nports:\n- name: http\n  port: {}\n  protocol: TCP\nendpoints:\n- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n",
            endpoint.port(),
            endpoint.ip()
        ),
    )
    .unwrap();
    let healthz: SocketAddr = format!("{NODE}:10256").parse().unwrap();
    let admin: SocketAddr = format!("{NODE}:10249").parse().unwrap();
    let stderr = dir.path().join("forwarder.log");
    // `ulimit -n` in sh sets the soft and hard limits: the forwarder cannot raise it back.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {FORWARDER_NOFILE} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_forwarder"))
        .args(["--config", manifests.to_str().unwrap(), "--node-ip", NODE])
        .args(["--healthz-bind-address", &healthz.to_string()])
        .args(["--admin-address", &admin.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let forwarder = Forwarder { child, stderr };
    let cluster_ip: SocketAddr = format!("{CLUSTER_IP}:8080").parse().unwrap();

    // Ready: the ClusterIP relays and both HTTP ports answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = through_cluster_ip(cluster_ip).await.is_ok()
            && http_status(admin, "/healthz")
                .await
                .is_ok_and(|s| s.contains(" 200"))
            && http_status(healthz, "/healthz")
                .await
                .is_ok_and(|s| s.contains(" 200"));
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "not ready:\n{}", forwarder.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The flood: more half-sent requests on each port than the forwarder has descriptors.
    let (mut on_admin, on_healthz) = tokio::join!(
        hold_half_sent(admin, per_port),
        hold_half_sent(healthz, per_port)
    );
    let held = on_admin.len() + on_healthz.len();
    // Both ports are saturated: past their connection limits, into the kernel's backlog.
    let limit = proxylab_core::serve::ServeOptions::admin().max_connections;
    assert!(
        on_admin.len() > limit && on_healthz.len() > limit,
        "the flood did not reach the limits: {} and {} connections",
        on_admin.len(),
        on_healthz.len()
    );
    // And they stay unanswered while held: the ports are really taken.
    assert!(http_status(admin, "/healthz").await.is_err());

    // While they are held: ClusterIP traffic as usual, every connection relayed.
    for i in 0..200 {
        if let Err(e) = through_cluster_ip(cluster_ip).await {
            panic!(
                "ClusterIP connection {i} failed with {held} of {} half-sent requests held: {e}\n{}",
                2 * per_port,
                forwarder.log()
            );
        }
    }
    // (The process is alive and has not run out of descriptors.)
    assert!(
        !forwarder.log().contains("Too many open files"),
        "{}",
        forwarder.log()
    );

    // The flood leaves; the admin endpoint and healthz answer again.
    on_admin.clear();
    drop(on_healthz);
    let deadline = Instant::now() + Duration::from_secs(30);
    for addr in [admin, healthz] {
        loop {
            match http_status(addr, "/healthz").await {
                Ok(s) if s.contains(" 200") => break,
                other => assert!(
                    Instant::now() < deadline,
                    "{addr} does not answer after the flood: {other:?}\n{}",
                    forwarder.log()
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    through_cluster_ip(cluster_ip).await.unwrap();
}
