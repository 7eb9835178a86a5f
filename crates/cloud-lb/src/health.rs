//! Health checks of the nodes, as a cloud load balancer runs them.
//!
//! The load balancer cannot see pods, so it asks each node's kube-proxy (here: the forwarder):
//!
//! - `externalTrafficPolicy: Cluster` → `GET /healthz` on the node's kube-proxy health port
//!   (`:10256`): "this node's proxy is up and in sync", so any node can take the traffic;
//! - `externalTrafficPolicy: Local` → `GET` on the Service's `healthCheckNodePort`, which kube-proxy
//!   answers 200 only while the node runs a ready endpoint of that Service (503 otherwise).
//!
//! Timing is cloud-provider-kind's (Envoy's health checks): every 2 s, a 3 s timeout, down after 2
//! failures, up after 1 success — except that a node never checked yet is up and goes down at its
//! first failure ([`HealthState::starting`], HAProxy's way), so a new Service answers at once and a
//! dead node is left out after one check, not two.
//!
//! A check is one HTTP/1.1 request on a fresh connection; only the status line is read. The probes
//! go to node addresses only — the targets come from Node objects, never from a client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use parking_lot::Mutex;
use proxylab_core::balance::health::{Health, HealthState, RiseFall};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How nodes are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub limits: RiseFall,
    /// kube-proxy's health port on every node (`--healthz-bind-address`'s port): 10256.
    pub proxy_port: u16,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(3),
            limits: RiseFall { rise: 1, fall: 2 },
            proxy_port: 10256,
        }
    }
}

/// The verdicts on every checked address (`node-ip:port`), and a counter bumped on each change.
#[derive(Debug)]
pub struct NodeHealth {
    states: Mutex<HashMap<SocketAddr, HealthState>>,
    changed: watch::Sender<u64>,
}

impl Default for NodeHealth {
    fn default() -> Self {
        Self {
            states: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
        }
    }
}

impl NodeHealth {
    /// Up unless a check said otherwise (an address never checked is up: see the module docs).
    pub fn is_up(&self, addr: SocketAddr) -> bool {
        self.states.lock().get(&addr).is_none_or(HealthState::is_up)
    }

    /// Counts one check result; returns the new verdict when it changed.
    pub fn observe(&self, addr: SocketAddr, ok: bool, limits: RiseFall) -> Option<Health> {
        let changed = self
            .states
            .lock()
            .entry(addr)
            .or_insert_with(HealthState::starting)
            .observe(ok, limits);
        if changed.is_some() {
            self.changed.send_modify(|n| *n += 1);
        }
        changed
    }

    /// Forgets addresses no longer checked (their node or Service went away).
    pub fn retain(&self, keep: &[SocketAddr]) {
        self.states.lock().retain(|a, _| keep.contains(a));
    }

    /// Wakes on every change of a verdict.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// One check: `GET path` answered `200` within `timeout`.
pub async fn check(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    let attempt = async {
        let mut s = proxylab_core::l4::tcp::connect(addr).await.ok()?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: proxylab-cloud-lb\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200")
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

/// Checks every address in `targets` each interval until `stop`; verdicts go into `health`.
pub async fn run(
    health: std::sync::Arc<NodeHealth>,
    mut targets: watch::Receiver<Vec<SocketAddr>>,
    cfg: HealthConfig,
    stop: CancellationToken,
) {
    loop {
        let now: Vec<SocketAddr> = targets.borrow_and_update().clone();
        health.retain(&now);
        let checks = now.iter().map(|addr| {
            let health = health.clone();
            async move {
                let ok = check(*addr, "/healthz", cfg.timeout).await;
                if let Some(verdict) = health.observe(*addr, ok, cfg.limits) {
                    tracing::info!(target = %addr, %verdict, "node health check changed");
                }
            }
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = futures_util::future::join_all(checks) => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(cfg.interval) => {}
            // A new target is checked at once rather than up to an interval later.
            r = targets.changed() => if r.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_check_wants_200_and_a_refused_port_is_down() {
        use proxylab_test_support::http::status_server;
        let t = Duration::from_secs(5);
        let (ok, _) = status_server("127.0.0.1:0", "200 OK").await;
        assert!(check(ok, "/healthz", t).await);
        let (bad, set) = status_server("127.0.0.1:0", "503 Service Unavailable").await;
        assert!(!check(bad, "/healthz", t).await);
        set.send_replace("200 OK");
        assert!(check(bad, "/healthz", t).await);
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert!(!check(closed, "/healthz", t).await);
    }

    #[test]
    fn unchecked_is_up_first_failure_downs_then_one_success_ups() {
        let h = NodeHealth::default();
        let a: SocketAddr = "127.0.20.1:10256".parse().unwrap();
        let limits = HealthConfig::default().limits;
        assert!(h.is_up(a));
        assert_eq!(h.observe(a, false, limits), Some(Health::Down));
        assert!(!h.is_up(a));
        assert_eq!(h.observe(a, true, limits), Some(Health::Up));
        assert_eq!(
            h.observe(a, false, limits),
            None,
            "fall 2: one failure is not enough"
        );
        assert!(h.is_up(a));
        h.retain(&[]);
        assert!(h.is_up(a));
    }
}
