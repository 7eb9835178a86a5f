//! Making every hop visible: tracing, hop records, metrics and the admin endpoint.
//!
//! proxylab exists to teach and test network paths, so each proxy leaves a record of every connection
//! (L4) or request (HTTP) it handles — a [`HopRecord`]. A record names the client address, the listener,
//! the upstream local address and the upstream address. Because one hop's upstream local address is the
//! next hop's client address, records from several proxies can be stitched into the full path of a
//! request without touching its payload — which matters for L4 hops, which cannot add a header.
//!
//! A record goes three places at once ([`HopLog::record`]):
//! - a `tracing` event with target `hop` (so `RUST_LOG=hop=info` prints the path as it happens),
//! - a bounded ring buffer served as JSON at the admin endpoint's `/debug/hops`,
//! - Prometheus counters (`proxylab_hops_total`, `proxylab_hop_bytes_total`) and a duration histogram.
//!
//! Records from several proxies are joined into paths by [`stitch`].
//!
//! An L4 hop is recorded when its connection ends, which may be hours later for a pooled
//! connection or a watch. A proxy can also show the connections it holds now ([`HopLog::open`]):
//! `/debug/hops?open=true` adds them after the finished records, with outcome `open` and the
//! bytes and duration so far unknown (0) — HAProxy's `show sess`. So a path through an open
//! connection (kubectl proxy's pooled connection through the HA balancer) can be stitched now.
//!
//! Every binary serves [`admin_router`] on its `--admin-address` (loopback by default):
//! `/healthz`, `/readyz`, `/metrics`, `/debug/hops`.
//!
//! A proxy's requests end in a [`HopSink`] (the hop log plus, when asked, one access line each);
//! [`init_logging`] runs every log line through a writer thread so that logging costs the request
//! path no `write(2)`.

mod log;
pub mod stitch;

pub use log::{AccessEntry, AccessLog, HopSink, LogWriter, init_logging};

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

/// How logs are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "invalid log format {other:?}: expected \"text\" or \"json\""
            )),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Installs the global tracing subscriber, filtered by `RUST_LOG` (default `info`), writing to stderr.
/// A second call is a no-op, so tests and embedded components may all call it.
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The HTTP part of a hop, for proxies that understand HTTP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpHop {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub status: Option<u16>,
}

/// One connection or request through one proxy. See the module docs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HopRecord {
    /// When the hop started (RFC 3339 in JSON). Kept as a timestamp and formatted only when
    /// someone reads the record: most records are overwritten in the ring unread.
    pub time: jiff::Timestamp,
    /// Which kind of proxy: `auth-proxy`, `bastion`, `forwarder`, `ha-balancer`, `cloud-lb`.
    /// (`Cow`: these, the protocol and the outcome are nearly always static strings, so a hop
    /// record and its metric labels cost no allocation for them.)
    pub proxy: Cow<'static, str>,
    /// Which instance (e.g. the node a forwarder runs on).
    pub instance: String,
    /// `tcp`, `udp`, `http`, `https`.
    pub protocol: Cow<'static, str>,
    pub client: SocketAddr,
    pub listener: SocketAddr,
    pub upstream_local: Option<SocketAddr>,
    pub upstream: Option<SocketAddr>,
    /// The service (`namespace/name:port`) or route the hop was for.
    pub target: Option<String>,
    /// The endpoint chosen, as the proxy names it (an address, a pod, an apiserver).
    pub endpoint: Option<String>,
    /// Why that endpoint: algorithm, affinity, health, retries.
    pub reason: Option<String>,
    /// Bytes from the client towards the upstream.
    pub bytes_up: u64,
    /// Bytes from the upstream towards the client.
    pub bytes_down: u64,
    pub duration_ms: f64,
    /// `ok`, or what went wrong (`connect-failed`, `no-endpoints`, `rejected`, `upstream-reset`, …).
    pub outcome: Cow<'static, str>,
    pub http: Option<HttpHop>,
    /// The client is a health prober (see [`HopLog::set_probe_clients`]): the hop is counted but
    /// `/debug/hops` leaves it out unless asked for `?probes=true`.
    #[serde(default)]
    pub probe: bool,
}

impl HopRecord {
    /// A record started now, with the fields every hop has; fill in the rest as the hop proceeds.
    pub fn start(
        proxy: impl Into<Cow<'static, str>>,
        instance: &str,
        protocol: &'static str,
        client: SocketAddr,
        listener: SocketAddr,
    ) -> Self {
        Self {
            time: jiff::Timestamp::now(),
            proxy: proxy.into(),
            instance: instance.to_owned(),
            protocol: Cow::Borrowed(protocol),
            client,
            listener,
            upstream_local: None,
            upstream: None,
            target: None,
            endpoint: None,
            reason: None,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0.0,
            outcome: Cow::Borrowed("ok"),
            http: None,
            probe: false,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HopLabels {
    proxy: Cow<'static, str>,
    protocol: Cow<'static, str>,
    outcome: Cow<'static, str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByteLabels {
    proxy: Cow<'static, str>,
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabel {
    proxy: Cow<'static, str>,
}

/// The Prometheus registry of one process, shared by all its components.
#[derive(Debug, Default)]
pub struct Metrics {
    registry: Mutex<Registry>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            registry: Mutex::new(Registry::with_prefix("proxylab")),
        })
    }

    /// Registers a metric; components call this once at start.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry.lock().register(name, help, metric);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail except on a formatter error, which String never raises.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry.lock());
        out
    }
}

/// The bounded record of recent hops plus their counters. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct HopLog {
    ring: Mutex<VecDeque<HopRecord>>,
    capacity: usize,
    /// Whether records are kept in the ring (see [`HopLog::set_retain`]).
    retain: AtomicBool,
    /// Client addresses of health probers (see [`HopLog::set_probe_clients`]); usually empty, so
    /// `has_probes` spares every record the lock.
    probe_clients: Mutex<Vec<IpAddr>>,
    has_probes: AtomicBool,
    /// Connections open now (see [`HopLog::open`]), by a number of their own.
    open: Mutex<std::collections::HashMap<u64, (std::time::Instant, HopRecord)>>,
    next_open: std::sync::atomic::AtomicU64,
    hops: Family<HopLabels, Counter>,
    bytes: Family<ByteLabels, Counter>,
    duration: Family<ProxyLabel, Histogram>,
}

impl HopLog {
    /// A log keeping the last `capacity` records, registering its counters in `metrics`.
    pub fn new(capacity: usize, metrics: &Metrics) -> Arc<Self> {
        let log = Self {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            retain: AtomicBool::new(true),
            probe_clients: Mutex::new(Vec::new()),
            has_probes: AtomicBool::new(false),
            open: Mutex::new(std::collections::HashMap::new()),
            next_open: std::sync::atomic::AtomicU64::new(0),
            hops: Family::default(),
            bytes: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 4.0, 10))
            }),
        };
        metrics.register(
            "hops",
            "Connections (L4) or requests (HTTP) handled, by proxy, protocol and outcome",
            log.hops.clone(),
        );
        metrics.register(
            "hop_bytes",
            "Bytes relayed, by proxy and direction",
            log.bytes.clone(),
        );
        metrics.register(
            "hop_duration_seconds",
            "Hop durations, by proxy",
            log.duration.clone(),
        );
        Arc::new(log)
    }

    /// Keeps records in the ring (the default) or not. A component whose ring nobody can read
    /// (a binary started without its admin endpoint) turns it off; the counters still count.
    pub fn set_retain(&self, retain: bool) {
        self.retain.store(retain, Ordering::Relaxed);
    }

    /// Marks the hops of clients at these addresses as probes (`HopRecord::probe`): a lab's or a
    /// load balancer's health checks, which would otherwise fill `/debug/hops` with their own
    /// traffic. They are still counted in the metrics.
    pub fn set_probe_clients(&self, clients: impl IntoIterator<Item = IpAddr>) {
        let mut list = self.probe_clients.lock();
        *list = clients.into_iter().collect();
        self.has_probes.store(!list.is_empty(), Ordering::Relaxed);
    }

    /// Whether anyone can see a finished hop's details: the ring is kept, or the `hop` tracing
    /// target is enabled. When not, a proxy may skip what only the record needs (at 15,000
    /// connections/s, the forwarder's `getsockname` for the upstream's local address and two
    /// formatted strings are a few per cent of its CPU), as HAProxy formats no log line when
    /// logging is off.
    pub fn detailed(&self) -> bool {
        self.retain.load(Ordering::Relaxed)
            || tracing::enabled!(target: "hop", tracing::Level::INFO)
    }

    /// Records a finished hop: tracing event, ring buffer (unless [`set_retain`](Self::set_retain)
    /// turned it off), metrics.
    pub fn record(&self, mut hop: HopRecord) {
        if self.has_probes.load(Ordering::Relaxed)
            && self.probe_clients.lock().contains(&hop.client.ip())
        {
            hop.probe = true;
        }
        tracing::info!(
            target: "hop",
            proxy = %hop.proxy,
            instance = %hop.instance,
            protocol = %hop.protocol,
            client = %hop.client,
            listener = %hop.listener,
            upstream_local = ?hop.upstream_local,
            upstream = ?hop.upstream,
            target_name = ?hop.target,
            endpoint = ?hop.endpoint,
            reason = ?hop.reason,
            bytes_up = hop.bytes_up,
            bytes_down = hop.bytes_down,
            duration_ms = hop.duration_ms,
            outcome = %hop.outcome,
            probe = hop.probe,
            "hop"
        );
        self.hops
            .get_or_create(&HopLabels {
                proxy: hop.proxy.clone(),
                protocol: hop.protocol.clone(),
                outcome: hop.outcome.clone(),
            })
            .inc();
        for (direction, n) in [("up", hop.bytes_up), ("down", hop.bytes_down)] {
            if n > 0 {
                self.bytes
                    .get_or_create(&ByteLabels {
                        proxy: hop.proxy.clone(),
                        direction,
                    })
                    .inc_by(n);
            }
        }
        self.duration
            .get_or_create(&ProxyLabel {
                proxy: hop.proxy.clone(),
            })
            .observe(hop.duration_ms / 1000.0);
        if !self.retain.load(Ordering::Relaxed) {
            return;
        }
        let mut ring = self.ring.lock();
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(hop);
    }

    /// Shows `hop` (a connection just established, its fields known so far) as open until
    /// [`OpenHop::close`] hands it back to be finished and recorded (or the guard is dropped). The
    /// record moves into the list and back, so showing it costs no copy. Nothing is listed when the
    /// ring is off ([`set_retain`](Self::set_retain)).
    pub fn open(self: &Arc<Self>, mut hop: HopRecord) -> OpenHop {
        if !self.retain.load(Ordering::Relaxed) {
            return OpenHop {
                log: None,
                id: 0,
                local: Some(hop),
            };
        }
        if self.has_probes.load(Ordering::Relaxed)
            && self.probe_clients.lock().contains(&hop.client.ip())
        {
            hop.probe = true;
        }
        hop.outcome = Cow::Borrowed("open");
        let id = self.next_open.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .insert(id, (std::time::Instant::now(), hop));
        OpenHop {
            log: Some(self.clone()),
            id,
            local: None,
        }
    }

    /// The connections open now, oldest first, their duration so far filled in.
    pub fn open_now(&self) -> Vec<HopRecord> {
        let mut open: Vec<(std::time::Instant, HopRecord)> =
            self.open.lock().values().cloned().collect();
        open.sort_by_key(|(since, _)| *since);
        open.into_iter()
            .map(|(since, mut h)| {
                h.duration_ms = since.elapsed().as_secs_f64() * 1000.0;
                h
            })
            .collect()
    }

    /// The most recent records, oldest first, at most `limit`.
    pub fn recent(&self, limit: usize) -> Vec<HopRecord> {
        let ring = self.ring.lock();
        let skip = ring.len().saturating_sub(limit);
        ring.iter().skip(skip).cloned().collect()
    }
}

/// A connection shown as open by [`HopLog::open`]; [`close`](Self::close) (or dropping it) takes
/// it off the list.
#[derive(Debug)]
#[must_use = "the hop is shown as open only while this guard lives"]
pub struct OpenHop {
    log: Option<Arc<HopLog>>,
    id: u64,
    /// The record, when it is not on the list (the ring is off).
    local: Option<HopRecord>,
}

impl OpenHop {
    /// Takes the record off the list and hands it back, outcome `ok` again, to be finished and
    /// [recorded](HopLog::record). `None` only if it was taken already.
    pub fn close(mut self) -> Option<HopRecord> {
        let mut hop = match self.log.take() {
            Some(log) => log.open.lock().remove(&self.id).map(|(_, h)| h),
            None => self.local.take(),
        }?;
        hop.outcome = Cow::Borrowed("ok");
        Some(hop)
    }
}

impl Drop for OpenHop {
    fn drop(&mut self) {
        if let Some(log) = &self.log {
            log.open.lock().remove(&self.id);
        }
    }
}

/// What the admin endpoint serves.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub hops: Arc<HopLog>,
    pub metrics: Arc<Metrics>,
    /// Flipped by the component when it is ready to serve (`/readyz`).
    pub ready: Arc<AtomicBool>,
}

impl AdminState {
    /// A fresh registry and a hop log of 1,024 records.
    pub fn new() -> Self {
        let metrics = Metrics::new();
        let hops = HopLog::new(1024, &metrics);
        Self {
            hops,
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

impl Default for AdminState {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Deserialize)]
struct HopQuery {
    limit: Option<usize>,
    proxy: Option<String>,
    client: Option<String>,
    /// Include the hops of health probes (left out by default).
    #[serde(default)]
    probes: bool,
    /// Add the connections open now, after the finished hops (see [`HopLog::open`]).
    #[serde(default)]
    open: bool,
}

/// `/healthz`, `/readyz`, `/metrics`,
/// `/debug/hops[?limit=N&proxy=KIND&client=ADDR&probes=true&open=true]`.
pub fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<AdminState>| async move {
                if s.ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<AdminState>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.metrics.encode(),
                )
            }),
        )
        .route(
            "/debug/hops",
            get(
                |State(s): State<AdminState>, Query(q): Query<HopQuery>| async move {
                    let limit = q.limit.unwrap_or(1024);
                    let mut all = s.hops.recent(usize::MAX);
                    if q.open {
                        all.extend(s.hops.open_now());
                    }
                    let hops: Vec<HopRecord> = all
                        .into_iter()
                        .filter(|h| q.probes || !h.probe)
                        .filter(|h| q.proxy.as_ref().is_none_or(|p| &h.proxy == p))
                        .filter(|h| {
                            q.client.as_ref().is_none_or(|c| {
                                h.client.to_string() == *c || h.client.ip().to_string() == *c
                            })
                        })
                        .collect();
                    let skip = hops.len().saturating_sub(limit);
                    axum::Json(hops.into_iter().skip(skip).collect::<Vec<_>>()).into_response()
                },
            ),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(n: u16) -> HopRecord {
        let mut h = HopRecord::start(
            "forwarder",
            "node-1",
            "tcp",
            SocketAddr::from(([127, 0, 0, 1], n)),
            SocketAddr::from(([127, 0, 40, 10], 80)),
        );
        h.bytes_up = 10;
        h
    }

    #[test]
    fn without_retain_only_the_counters_count() {
        let metrics = Metrics::new();
        let log = HopLog::new(3, &metrics);
        assert!(
            log.detailed(),
            "a ring is kept by default, so details are read"
        );
        log.set_retain(false);
        // No tracing subscriber in this test: the `hop` target is off too.
        assert!(!log.detailed());
        log.record(hop(1));
        assert!(log.recent(10).is_empty());
        let text = metrics.encode();
        assert!(
            text.contains(
                "proxylab_hops_total{proxy=\"forwarder\",protocol=\"tcp\",outcome=\"ok\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn ring_keeps_the_latest_and_metrics_count_all() {
        let metrics = Metrics::new();
        let log = HopLog::new(3, &metrics);
        for n in 1..=5 {
            log.record(hop(n));
        }
        let recent = log.recent(10);
        assert_eq!(
            recent.iter().map(|h| h.client.port()).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        let text = metrics.encode();
        assert!(
            text.contains(
                "proxylab_hops_total{proxy=\"forwarder\",protocol=\"tcp\",outcome=\"ok\"} 5"
            ),
            "{text}"
        );
        assert!(text.contains("direction=\"up\"} 50"), "{text}");
    }

    /// Probes are counted and kept, marked, and left out of `/debug/hops` unless asked for.
    #[tokio::test]
    async fn probes_are_marked_and_hidden_unless_asked_for() {
        use tower::ServiceExt;
        let state = AdminState::new();
        state
            .hops
            .set_probe_clients(["127.0.0.254".parse().unwrap()]);
        state.hops.record(hop(1));
        let mut probe = hop(2);
        probe.client = "127.0.0.254:40000".parse().unwrap();
        state.hops.record(probe);
        let recent = state.hops.recent(10);
        assert_eq!(
            recent.iter().map(|h| h.probe).collect::<Vec<_>>(),
            [false, true]
        );
        let get = |uri: &'static str| {
            let router = admin_router(state.clone());
            async move {
                let resp = router
                    .oneshot(
                        axum::http::Request::get(uri)
                            .body(axum::body::Body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap();
                serde_json::from_slice::<Vec<HopRecord>>(&body).unwrap()
            }
        };
        let shown = get("/debug/hops").await;
        assert_eq!(shown.len(), 1);
        assert!(!shown[0].probe);
        let all = get("/debug/hops?probes=true").await;
        assert_eq!(all.len(), 2);
        assert!(all[1].probe);
        assert!(state.metrics.encode().contains(
            "proxylab_hops_total{proxy=\"forwarder\",protocol=\"tcp\",outcome=\"ok\"} 2"
        ));
    }

    /// An open connection is listed only when asked for, after the finished hops, as `open`,
    /// and leaves the list when its guard is dropped.
    #[tokio::test]
    async fn open_connections_are_shown_when_asked_until_they_end() {
        use tower::ServiceExt;
        let state = AdminState::new();
        state.hops.record(hop(1));
        let guard = state.hops.open(hop(2));
        let get = |uri: &'static str| {
            let router = admin_router(state.clone());
            async move {
                let resp = router
                    .oneshot(
                        axum::http::Request::get(uri)
                            .body(axum::body::Body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap();
                serde_json::from_slice::<Vec<HopRecord>>(&body).unwrap()
            }
        };
        assert_eq!(get("/debug/hops").await.len(), 1);
        let with_open = get("/debug/hops?open=true").await;
        assert_eq!(
            with_open
                .iter()
                .map(|h| (h.client.port(), h.outcome.as_ref()))
                .collect::<Vec<_>>(),
            [(1, "ok"), (2, "open")]
        );
        let back = guard.close().unwrap();
        assert_eq!((back.client.port(), back.outcome.as_ref()), (2, "ok"));
        assert_eq!(get("/debug/hops?open=true").await.len(), 1);
        // Dropping the guard also takes it off.
        drop(state.hops.open(hop(4)));
        assert!(state.hops.open_now().is_empty());
        // Not listed when nobody can read the ring, but handed back all the same.
        state.hops.set_retain(false);
        let quiet = state.hops.open(hop(3));
        assert!(state.hops.open_now().is_empty());
        assert_eq!(quiet.close().unwrap().client.port(), 3);
    }

    #[test]
    fn log_format_parses_and_rejects() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert!("xml".parse::<LogFormat>().unwrap_err().contains("xml"));
    }
}
