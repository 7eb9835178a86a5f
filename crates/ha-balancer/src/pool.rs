//! The backends and what the balancer knows of each: health verdict, check results, the
//! connections open to it. Every change of verdict goes through `Pool::observe`, which logs
//! it, counts it, updates the balancing set and — when a backend goes down — closes its
//! connections at once, so clients reconnect to a live apiserver instead of waiting for their own
//! timeouts on a dead one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use proxylab_core::balance::Balancer;
use proxylab_core::balance::health::{Health, HealthState, RiseFall};
use proxylab_core::l4::tcp::Interrupt;
use proxylab_core::telemetry::Metrics;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::config::{BackendConfig, Config};

/// Where a health result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An active check.
    Check,
    /// A client connection: a failed connect or a reset by the backend.
    Passive,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Check => "check",
            Source::Passive => "passive",
        }
    }
}

/// The last active check's outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    pub time: jiff::Timestamp,
    pub ok: bool,
    /// `HTTP 200`, `connect: Connection refused`, `timed out after 2s`, …
    pub detail: String,
    pub duration_ms: f64,
}

/// An open client connection through the balancer to one backend.
struct Conn {
    started: Instant,
    stop: Stopper,
    /// Told to move (http mode's GOAWAY) and still open: counted, since it is still here, but
    /// never chosen again. Leaves when the connection ends.
    moving: bool,
}

/// How the balancer ends one connection — the pluggable action behind every policy that ends
/// connections (a mark-down resets all of a backend's, a rebalancing round moves the oldest):
/// the policies say *which* connections and [`Interrupt::Reset`] ("this backend failed") or
/// [`Interrupt::Close`] ("move"); each mode says what that means for its connections.
enum Stopper {
    /// `tcp` mode: the relay is told, and closes both sockets (RST or FIN).
    Relay(Option<oneshot::Sender<Interrupt>>),
    /// `http` mode: `Reset` closes the client connection at once; `Close` sends it GOAWAY
    /// (HTTP/1: closes it after the response in flight), and closes it after `grace` if streams
    /// are still open then (a watch never ends by itself; client-go resumes it elsewhere).
    Http {
        control: proxylab_core::serve::ConnControl,
        grace: std::time::Duration,
    },
}

impl Stopper {
    /// Whether the connection stays open a while after being told `how` (a GOAWAY's grace).
    fn lingers(&self, how: Interrupt) -> bool {
        matches!((self, how), (Stopper::Http { .. }, Interrupt::Close))
    }

    fn stop(&mut self, how: Interrupt) {
        match self {
            Stopper::Relay(tx) => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(how);
                }
            }
            Stopper::Http { control, grace } => match how {
                Interrupt::Reset => control.close(),
                Interrupt::Close => {
                    control.graceful_shutdown();
                    let (control, grace) = (control.clone(), *grace);
                    match tokio::runtime::Handle::try_current() {
                        Ok(rt) => {
                            rt.spawn(async move {
                                tokio::select! {
                                    _ = control.ended() => {}
                                    _ = tokio::time::sleep(grace) => control.close(),
                                }
                            });
                        }
                        Err(_) => control.close(),
                    }
                }
            },
        }
    }
}

/// One backend and everything known of it.
pub struct BackendState {
    pub config: BackendConfig,
    health: Mutex<HealthState>,
    last_change: Mutex<(jiff::Timestamp, String)>,
    last_check: Mutex<Option<CheckResult>>,
    conns: Mutex<HashMap<u64, Conn>>,
    pub checks_ok: AtomicU64,
    pub checks_failed: AtomicU64,
    pub total_connections: AtomicU64,
    pub connect_failures: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub state_changes: AtomicU64,
}

impl BackendState {
    fn new(config: BackendConfig) -> Self {
        Self {
            config,
            health: Mutex::new(HealthState::starting()),
            last_change: Mutex::new((jiff::Timestamp::now(), "started".into())),
            last_check: Mutex::new(None),
            conns: Mutex::new(HashMap::new()),
            checks_ok: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            total_connections: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            state_changes: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.config.address
    }

    pub fn health(&self) -> Health {
        self.health.lock().health()
    }

    pub fn is_up(&self) -> bool {
        self.health.lock().is_up()
    }

    /// Connections open to this backend now.
    pub fn active(&self) -> usize {
        self.conns.lock().len()
    }

    /// Connections told to move that are still open (http mode, during a GOAWAY's grace).
    pub fn moving(&self) -> usize {
        self.conns.lock().values().filter(|c| c.moving).count()
    }

    /// Registers an open connection; the receiver resolves when the balancer wants it closed.
    pub fn open(&self, id: u64) -> oneshot::Receiver<Interrupt> {
        let (tx, rx) = oneshot::channel();
        self.register(id, Instant::now(), Stopper::Relay(Some(tx)));
        rx
    }

    /// Registers an `http` mode client connection, steered through its control handle: closed
    /// when this backend goes down, sent GOAWAY (then closed after `grace`) to move it. `started`
    /// is when the client connected (kept when a failed connect moves it to another backend).
    pub fn open_http(
        &self,
        id: u64,
        started: Instant,
        control: proxylab_core::serve::ConnControl,
        grace: std::time::Duration,
    ) {
        self.register(id, started, Stopper::Http { control, grace });
    }

    fn register(&self, id: u64, started: Instant, stop: Stopper) {
        self.conns.lock().insert(
            id,
            Conn {
                started,
                stop,
                moving: false,
            },
        );
        self.total_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets a connection without ending it (it moved to another backend before carrying
    /// anything here).
    pub fn forget(&self, id: u64) {
        self.conns.lock().remove(&id);
    }

    /// Forgets a finished connection and adds what it carried.
    pub fn close(&self, id: u64, up: u64, down: u64) {
        self.conns.lock().remove(&id);
        self.bytes_up.fetch_add(up, Ordering::Relaxed);
        self.bytes_down.fetch_add(down, Ordering::Relaxed);
    }

    /// Ends every open connection as `how` says; returns how many.
    fn interrupt_all(&self, how: Interrupt) -> usize {
        let conns: Vec<Conn> = self.conns.lock().drain().map(|(_, c)| c).collect();
        let n = conns.len();
        for mut c in conns {
            c.stop.stop(how);
        }
        n
    }

    /// Ends the `n` oldest connections that have been open at least `min_age` as `how` says;
    /// returns how many were ended.
    pub fn interrupt_oldest(
        &self,
        n: usize,
        min_age: std::time::Duration,
        how: Interrupt,
    ) -> usize {
        let mut conns = self.conns.lock();
        let mut ids: Vec<(Instant, u64)> = conns
            .iter()
            .filter(|(_, c)| !c.moving && c.started.elapsed() >= min_age)
            .map(|(id, c)| (c.started, *id))
            .collect();
        ids.sort();
        let mut ended = 0;
        for (_, id) in ids.into_iter().take(n) {
            let Some(c) = conns.get_mut(&id) else {
                continue;
            };
            if c.stop.lingers(how) {
                c.stop.stop(how);
                c.moving = true;
            } else if let Some(mut c) = conns.remove(&id) {
                c.stop.stop(how);
            }
            ended += 1;
        }
        ended
    }

    pub fn last_check(&self) -> Option<CheckResult> {
        self.last_check.lock().clone()
    }

    fn snapshot(&self) -> BackendStats {
        let h = *self.health.lock();
        let (since, why) = self.last_change.lock().clone();
        BackendStats {
            name: self.config.name.clone(),
            address: self.config.address,
            state: h.health().as_str(),
            streak: h.streak(),
            last_change: since,
            last_change_reason: why,
            last_check: self.last_check(),
            checks_ok: self.checks_ok.load(Ordering::Relaxed),
            checks_failed: self.checks_failed.load(Ordering::Relaxed),
            active_connections: self.active(),
            total_connections: self.total_connections.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
            state_changes: self.state_changes.load(Ordering::Relaxed),
        }
    }
}

/// One backend as `/stats?format=json` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendStats {
    pub name: String,
    pub address: SocketAddr,
    /// `up` or `down`.
    pub state: &'static str,
    /// Consecutive results against the current state (how close it is to changing).
    pub streak: u32,
    pub last_change: jiff::Timestamp,
    pub last_change_reason: String,
    pub last_check: Option<CheckResult>,
    pub checks_ok: u64,
    pub checks_failed: u64,
    pub active_connections: usize,
    pub total_connections: u64,
    pub connect_failures: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub state_changes: u64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    backend: String,
    to: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    backend: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The balancer's own metrics (hop counters come from the hop log).
#[derive(Clone, Default)]
pub(crate) struct PoolMetrics {
    up: Family<BackendLabel, Gauge>,
    changes: Family<ChangeLabels, Counter>,
    checks: Family<CheckLabels, Counter>,
    closed_on_down: Family<BackendLabel, Counter>,
    rebalanced: Family<BackendLabel, Counter>,
    reloads: Family<ResultLabel, Counter>,
}

impl PoolMetrics {
    fn register(&self, m: &Metrics) {
        m.register(
            "ha_backend_up",
            "1 when the HA balancer judges the backend up",
            self.up.clone(),
        );
        m.register(
            "ha_backend_state_changes",
            "Backend verdict changes, by backend and new state",
            self.changes.clone(),
        );
        m.register(
            "ha_checks",
            "Active health checks, by backend and result",
            self.checks.clone(),
        );
        m.register(
            "ha_connections_closed_on_down",
            "Connections closed because their backend was marked down",
            self.closed_on_down.clone(),
        );
        m.register(
            "ha_connections_rebalanced",
            "Connections moved off a busier backend (tcp mode: closed; http mode: sent GOAWAY)",
            self.rebalanced.clone(),
        );
        m.register(
            "ha_reloads",
            "Configuration reloads, by result",
            self.reloads.clone(),
        );
    }

    pub(crate) fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "refused" },
            })
            .inc();
    }
}

/// The backends, their verdicts and the balancer over the ones that are up.
pub struct Pool {
    backends: ArcSwap<Vec<Arc<BackendState>>>,
    balancer: ArcSwap<Balancer>,
    rise_fall: Mutex<RiseFall>,
    pub(crate) metrics: PoolMetrics,
    ready: Arc<std::sync::atomic::AtomicBool>,
    /// Serialises changes of the balancing set.
    update: Mutex<()>,
    /// Woken when a backend comes back up: the rebalancer moves load back to it.
    pub(crate) recovered: tokio::sync::Notify,
    /// Set while a rebalancing round runs: new connections go where the fewest are.
    rebalancing: std::sync::atomic::AtomicBool,
}

impl Pool {
    pub(crate) fn new(
        config: &Config,
        metrics: &Metrics,
        ready: Arc<std::sync::atomic::AtomicBool>,
    ) -> Arc<Self> {
        let m = PoolMetrics::default();
        m.register(metrics);
        let pool = Arc::new(Self {
            backends: ArcSwap::from_pointee(Vec::new()),
            balancer: ArcSwap::from_pointee(Balancer::new(config.algorithm, None)),
            rise_fall: Mutex::new(config.check.rise_fall),
            metrics: m,
            ready,
            update: Mutex::new(()),
            recovered: tokio::sync::Notify::new(),
            rebalancing: std::sync::atomic::AtomicBool::new(false),
        });
        pool.apply(config);
        pool
    }

    /// Takes on a (re)loaded configuration: backends that stay keep their verdicts, counters and
    /// connections; new ones start on probation; removed ones leave the balancing set while
    /// their established connections run on. A new algorithm gets a new balancer.
    pub(crate) fn apply(&self, config: &Config) {
        let _g = self.update.lock();
        *self.rise_fall.lock() = config.check.rise_fall;
        let cur = self.backends.load_full();
        let next: Vec<Arc<BackendState>> = config
            .backends
            .iter()
            .map(|b| match cur.iter().find(|s| s.config == *b) {
                Some(s) => s.clone(),
                None => {
                    // Same address, other name or server name: keep what is known of it.
                    match cur.iter().find(|s| s.config.address == b.address) {
                        Some(old) => {
                            let s = BackendState::new(b.clone());
                            *s.health.lock() = *old.health.lock();
                            Arc::new(s)
                        }
                        None => Arc::new(BackendState::new(b.clone())),
                    }
                }
            })
            .collect();
        for b in &next {
            self.metrics
                .up
                .get_or_create(&BackendLabel {
                    backend: b.name().to_string(),
                })
                .set(i64::from(b.is_up()));
        }
        for old in cur.iter() {
            if !next.iter().any(|n| n.config.name == old.config.name) {
                self.metrics.up.remove(&BackendLabel {
                    backend: old.name().to_string(),
                });
            }
        }
        self.backends.store(Arc::new(next));
        if self.balancer.load().algorithm() != config.algorithm {
            self.balancer
                .store(Arc::new(Balancer::new(config.algorithm, None)));
        }
        self.refresh_locked();
    }

    pub fn backends(&self) -> Arc<Vec<Arc<BackendState>>> {
        self.backends.load_full()
    }

    pub fn balancer(&self) -> Arc<Balancer> {
        self.balancer.load_full()
    }

    /// The backend at `addr` in the current configuration.
    pub fn by_addr(&self, addr: SocketAddr) -> Option<Arc<BackendState>> {
        self.backends
            .load()
            .iter()
            .find(|b| b.addr() == addr)
            .cloned()
    }

    pub fn stats(&self) -> Vec<BackendStats> {
        self.backends.load().iter().map(|b| b.snapshot()).collect()
    }

    /// Records an active check's result.
    pub(crate) fn check_result(&self, b: &BackendState, result: CheckResult) {
        let ok = result.ok;
        let detail = result.detail.clone();
        if ok {
            b.checks_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            b.checks_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics
            .checks
            .get_or_create(&CheckLabels {
                backend: b.name().to_string(),
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
        *b.last_check.lock() = Some(result);
        self.observe(b, ok, Source::Check, &detail);
    }

    /// Counts one result for `b` (see [`HealthState::observe`]); on a change of verdict: logs,
    /// counts, updates the balancing set and, going down, closes the backend's connections.
    pub(crate) fn observe(&self, b: &BackendState, ok: bool, source: Source, detail: &str) {
        let limits = *self.rise_fall.lock();
        let changed = b.health.lock().observe(ok, limits);
        if let Some(to) = changed {
            self.changed(b, to, &format!("{}: {detail}", source.as_str()));
        }
    }

    fn changed(&self, b: &BackendState, to: Health, why: &str) {
        *b.last_change.lock() = (jiff::Timestamp::now(), why.to_string());
        b.state_changes.fetch_add(1, Ordering::Relaxed);
        let label = BackendLabel {
            backend: b.name().to_string(),
        };
        self.metrics
            .changes
            .get_or_create(&ChangeLabels {
                backend: label.backend.clone(),
                to: to.as_str(),
            })
            .inc();
        self.metrics
            .up
            .get_or_create(&label)
            .set(i64::from(to == Health::Up));
        {
            let _g = self.update.lock();
            self.refresh_locked();
        }
        match to {
            Health::Down => {
                let closed = b.interrupt_all(Interrupt::Reset);
                self.metrics
                    .closed_on_down
                    .get_or_create(&label)
                    .inc_by(closed as u64);
                tracing::warn!(backend = %b.name(), address = %b.addr(), reason = %why, closed_connections = closed, "backend is down");
            }
            Health::Up => {
                tracing::info!(backend = %b.name(), address = %b.addr(), reason = %why, "backend is up");
                // A stored permit: a recovery during a rebalancing round starts another after it.
                self.recovered.notify_one();
            }
        }
    }

    /// The balancing set: the backends that are up — or, when none is, all of them. A balancer
    /// that refuses everything because its checks fail is worse than one that tries: the checks
    /// may be what is wrong (k3s#10240), and a connect to a dead backend fails fast and moves on.
    fn refresh_locked(&self) {
        let all = self.backends.load();
        let up: Vec<SocketAddr> = all.iter().filter(|b| b.is_up()).map(|b| b.addr()).collect();
        self.ready
            .store(!up.is_empty(), std::sync::atomic::Ordering::SeqCst);
        let set = if up.is_empty() {
            all.iter().map(|b| b.addr()).collect()
        } else {
            up
        };
        self.balancer.load().update(&set);
    }

    /// Whether a rebalancing round runs now.
    pub fn rebalancing(&self) -> bool {
        self.rebalancing.load(Ordering::Relaxed)
    }

    pub(crate) fn set_rebalancing(&self, on: bool) {
        self.rebalancing.store(on, Ordering::Relaxed);
    }

    /// Counts connections closed on `b` to move load.
    pub(crate) fn rebalanced(&self, b: &BackendState, n: usize) {
        self.metrics
            .rebalanced
            .get_or_create(&BackendLabel {
                backend: b.name().to_string(),
            })
            .inc_by(n as u64);
    }

    /// True when no backend is up (the set is every backend, as a last resort).
    pub fn all_down(&self) -> bool {
        !self.backends.load().iter().any(|b| b.is_up())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(n: u8) -> Config {
        Config {
            backends: (1..=n)
                .map(|i| BackendConfig {
                    name: format!("apiserver-{i}"),
                    address: SocketAddr::from(([127, 0, 10, i], 6443)),
                    server_name: None,
                })
                .collect(),
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn a_backend_going_down_leaves_the_set_and_has_its_connections_reset() {
        let metrics = Metrics::new();
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pool = Pool::new(&config(3), &metrics, ready.clone());
        assert!(ready.load(Ordering::SeqCst));
        let b = pool.backends()[1].clone();
        let rx = b.open(7);
        // A starting backend goes down at its first failure.
        pool.observe(&b, false, Source::Check, "HTTP 500");
        assert_eq!(rx.await.unwrap(), Interrupt::Reset);
        assert_eq!(b.active(), 0);
        assert!(!pool.balancer().endpoints().contains(&b.addr()));
        // Back after rise (2) successes.
        pool.observe(&b, true, Source::Check, "HTTP 200");
        assert!(!b.is_up());
        pool.observe(&b, true, Source::Check, "HTTP 200");
        assert!(b.is_up());
        assert!(pool.balancer().endpoints().contains(&b.addr()));
        let text = metrics.encode();
        assert!(
            text.contains(
                "proxylab_ha_backend_state_changes_total{backend=\"apiserver-2\",to=\"down\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "proxylab_ha_connections_closed_on_down_total{backend=\"apiserver-2\"} 1"
            ),
            "{text}"
        );
        assert_eq!(pool.stats()[1].state_changes, 2);
    }

    #[test]
    fn with_every_backend_down_all_are_tried_and_not_ready() {
        let metrics = Metrics::new();
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pool = Pool::new(&config(2), &metrics, ready.clone());
        for b in pool.backends().iter() {
            pool.observe(b, false, Source::Passive, "connect refused");
        }
        assert!(pool.all_down());
        assert!(!ready.load(Ordering::SeqCst));
        assert_eq!(pool.balancer().endpoints().len(), 2);
    }

    #[test]
    fn a_reload_keeps_known_backends_and_their_verdicts() {
        let metrics = Metrics::new();
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pool = Pool::new(&config(2), &metrics, ready);
        let first = pool.backends()[0].clone();
        pool.observe(&first, false, Source::Check, "x");
        let _rx = pool.backends()[1].open(1);
        let mut next = config(3);
        next.algorithm = proxylab_core::balance::Algorithm::LeastConn;
        pool.apply(&next);
        let now = pool.backends();
        assert_eq!(now.len(), 3);
        assert!(Arc::ptr_eq(&now[0], &first));
        assert!(!now[0].is_up());
        assert_eq!(now[1].active(), 1);
        assert_eq!(
            pool.balancer().algorithm(),
            proxylab_core::balance::Algorithm::LeastConn
        );
        assert_eq!(pool.balancer().endpoints().len(), 2);
    }

    #[test]
    fn oldest_connections_are_interrupted_first() {
        let metrics = Metrics::new();
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pool = Pool::new(&config(1), &metrics, ready);
        let b = pool.backends()[0].clone();
        let mut rx: Vec<_> = (0..3)
            .map(|i| {
                let r = b.open(i);
                std::thread::sleep(std::time::Duration::from_millis(2));
                r
            })
            .collect();
        // None is old enough yet.
        assert_eq!(
            b.interrupt_oldest(2, std::time::Duration::from_secs(3600), Interrupt::Close),
            0
        );
        assert_eq!(
            b.interrupt_oldest(2, std::time::Duration::ZERO, Interrupt::Close),
            2
        );
        assert_eq!(rx[0].try_recv().unwrap(), Interrupt::Close);
        assert_eq!(rx[1].try_recv().unwrap(), Interrupt::Close);
        assert!(rx[2].try_recv().is_err());
        assert_eq!(b.active(), 1);
    }
}
