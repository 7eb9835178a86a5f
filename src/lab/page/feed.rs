//! The hop feed behind the live page: every proxy's `/debug/hops`, merged into one numbered stream.
//!
//! Each component keeps its own hop records (`core::telemetry::HopLog`) and serves them on its admin
//! endpoint. The lab page wants them all, as they happen, so the feed polls every admin endpoint
//! named in `lab.json` → `admin` (whatever is registered there: auth-proxy, forwarders, apiservers,
//! and any proxy added later under a new key) and publishes each record it has not seen before with
//! a sequence number. Browsers read it as server-sent events (`/hops/stream`), resuming with
//! `Last-Event-ID` after a reconnect.
//!
//! Why polling and not a push from each component: `/debug/hops` is the one interface every proxy
//! already has, also when it runs as a separate process (the same way `proxylab trace` reads it),
//! and nothing in the proxies' hot path changes for the page.
//!
//! The feed polls only while someone watches (an open stream, or a snapshot asked for in the last
//! ten seconds), so an idle lab spends nothing on it. Records carry no identity of their own; a
//! record is new when its JSON was not in the previous answer of the same endpoint. Connections
//! still open are asked for too (`open=true`): a request over kubectl proxy's pooled connection
//! through the HA balancer has no path without it; each is published once while open (see
//! [`record_key`]). Each poll asks
//! for the last [`POLL_LIMIT`] records: a burst of more hops than that between two polls (every
//! [`POLL_EVERY`]) shows only its last ones — the page is for watching paths, not for counting;
//! `/metrics` counts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How often the feed asks every admin endpoint while someone watches.
pub const POLL_EVERY: Duration = Duration::from_millis(300);
/// How many records each poll asks for (`/debug/hops?limit=`).
pub const POLL_LIMIT: usize = 256;
/// How many published records the feed keeps for a page that opens (or reconnects) later.
pub const BACKLOG: usize = 500;
/// How long a snapshot request keeps the feed polling.
const INTEREST: Duration = Duration::from_secs(10);

/// One admin endpoint to poll: `name` is its place in `lab.json` → `admin` (`forwarders/node-1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub addr: SocketAddr,
}

/// A published record: `{"id": N, "source": "...", "hop": {...}}`, serialized once.
#[derive(Debug, Clone)]
pub struct FeedEvent {
    pub id: u64,
    pub data: Arc<str>,
}

/// The feed; share it as `Arc<HopFeed>`.
pub struct HopFeed {
    sources: Mutex<Vec<Source>>,
    backlog: Mutex<VecDeque<FeedEvent>>,
    next_id: Mutex<u64>,
    tx: broadcast::Sender<FeedEvent>,
    wake: Notify,
    last_interest: Mutex<Option<Instant>>,
    /// Advances after every poll round, so a snapshot can wait for a fresh one.
    rounds: watch::Sender<u64>,
}

impl Default for HopFeed {
    fn default() -> Self {
        Self {
            sources: Mutex::new(Vec::new()),
            backlog: Mutex::new(VecDeque::with_capacity(BACKLOG)),
            next_id: Mutex::new(1),
            tx: broadcast::channel(1024).0,
            wake: Notify::new(),
            last_interest: Mutex::new(None),
            rounds: watch::channel(0).0,
        }
    }
}

/// The admin endpoints named in `lab.json` → `admin`, except the lab's own: a string value is one
/// endpoint (`authProxy`), an object of strings is one per entry (`forwarders/node-1`). Only
/// loopback `http://IP:PORT` URLs are taken: the lab never dials off the machine.
pub fn sources_from_info(info: &Value) -> Vec<Source> {
    let mut out = Vec::new();
    let Some(admin) = info.get("admin").and_then(Value::as_object) else {
        return out;
    };
    let mut add = |name: String, url: &Value| {
        if let Some(addr) = url
            .as_str()
            .and_then(|u| u.strip_prefix("http://"))
            .map(|u| u.trim_end_matches('/'))
            .and_then(|u| u.parse::<SocketAddr>().ok())
            .filter(|a| a.ip().is_loopback())
        {
            out.push(Source { name, addr });
        }
    };
    for (key, v) in admin {
        if key == "lab" {
            continue;
        }
        match v {
            Value::Object(m) => m.iter().for_each(|(k, u)| add(format!("{key}/{k}"), u)),
            other => add(key.clone(), other),
        }
    }
    out
}

impl HopFeed {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces the endpoints to poll (the lab calls this when `lab.json` is published or changes).
    pub fn set_sources(&self, sources: Vec<Source>) {
        *self.sources.lock() = sources;
        self.wake.notify_one();
    }

    pub fn sources(&self) -> Vec<Source> {
        self.sources.lock().clone()
    }

    /// A live subscription, plus the backlog after `after` (events published before the
    /// subscription and not yet seen). Subscribing first, then reading the backlog, loses nothing:
    /// an event in both is skipped by its id.
    pub fn subscribe(&self, after: u64) -> (Vec<FeedEvent>, broadcast::Receiver<FeedEvent>) {
        let rx = self.tx.subscribe();
        self.wake.notify_one();
        let backlog = self
            .backlog
            .lock()
            .iter()
            .filter(|e| e.id > after)
            .cloned()
            .collect();
        (backlog, rx)
    }

    /// The backlog after `after`, once a poll round that started after this call has finished (or a
    /// second has passed): what a page that asks now can know.
    pub async fn snapshot(&self, after: u64) -> Vec<FeedEvent> {
        *self.last_interest.lock() = Some(Instant::now());
        let mut rounds = self.rounds.subscribe();
        let seen = *rounds.borrow_and_update();
        self.wake.notify_one();
        // Two rounds: the one running now may have started before this request.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while *rounds.borrow_and_update() < seen + 2 {
                if rounds.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        self.backlog
            .lock()
            .iter()
            .filter(|e| e.id > after)
            .cloned()
            .collect()
    }

    fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
            || self
                .last_interest
                .lock()
                .is_some_and(|t| t.elapsed() < INTEREST)
    }

    fn publish(&self, source: &str, hop: Value) {
        let mut next = self.next_id.lock();
        let id = *next;
        *next += 1;
        let data: Arc<str> = json!({"id": id, "source": source, "hop": hop})
            .to_string()
            .into();
        let event = FeedEvent { id, data };
        {
            let mut backlog = self.backlog.lock();
            if backlog.len() == BACKLOG {
                backlog.pop_front();
            }
            backlog.push_back(event.clone());
        }
        // No receiver is not an error: the backlog keeps it.
        let _ = self.tx.send(event);
    }

    /// Polls while watched, until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        // Per endpoint, the records of its last answer.
        let mut seen: HashMap<SocketAddr, HashSet<String>> = HashMap::new();
        loop {
            if !self.watched() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => continue,
                    // Interest from a snapshot expires on its own; look again now and then.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
            let sources = self.sources();
            let mut polls = tokio::task::JoinSet::new();
            for s in sources {
                let client = client.clone();
                polls.spawn(async move {
                    let got = tokio::time::timeout(
                        Duration::from_secs(2),
                        fetch(&client, s.addr, POLL_LIMIT, true),
                    )
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()));
                    (s, got)
                });
            }
            let mut answers = Vec::new();
            while let Some(r) = polls.join_next().await {
                if let Ok(a) = r {
                    answers.push(a);
                }
            }
            // A stable order (by source name) so that ids follow the same order on every round.
            answers.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            for (source, got) in answers {
                let records = match got {
                    Ok(r) => r,
                    // A stopped component (a failure drill) simply has nothing to say.
                    Err(e) => {
                        debug!(source = %source.name, error = %e, "hop feed: poll failed");
                        continue;
                    }
                };
                let prev = seen.remove(&source.addr).unwrap_or_default();
                let mut now = HashSet::with_capacity(records.len());
                for hop in records {
                    let key = record_key(&hop);
                    if !prev.contains(&key) {
                        self.publish(&source.name, hop);
                    }
                    now.insert(key);
                }
                seen.insert(source.addr, now);
            }
            self.rounds.send_modify(|n| *n += 1);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }
}

/// When a record is new: a finished record is new when its JSON was not in the last answer; an open
/// connection (outcome `open`, its duration growing on every poll) by its identity — the proxy, its
/// instance, the client, the listener and the start — so it is published once while open, and its
/// closed record once more when it ends (the page replaces the one by the other).
fn record_key(hop: &Value) -> String {
    if hop.get("outcome").and_then(Value::as_str) != Some("open") {
        return hop.to_string();
    }
    let field = |k: &str| hop.get(k).map(Value::to_string).unwrap_or_default();
    format!(
        "open {} {} {} {} {}",
        field("proxy"),
        field("instance"),
        field("client"),
        field("listener"),
        field("time")
    )
}

/// One admin endpoint's last `limit` hop records (`/debug/hops`), as JSON values; with `open`,
/// also the connections open now (outcome `open`). `proxylab trace` reads the proxies the same way.
pub(crate) async fn fetch(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    limit: usize,
    open: bool,
) -> Result<Vec<Value>, String> {
    let uri = format!("http://{addr}/debug/hops?limit={limit}&open={open}");
    let resp = client
        .get(uri.parse().map_err(|e| format!("{uri}: {e}"))?)
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{uri}: {}", resp.status()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("{uri}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_connection_is_new_once_and_again_when_it_closes() {
        let open = |ms: f64| {
            json!({"proxy": "ha-balancer", "instance": "ha-balancer",
            "client": "127.0.0.1:5000", "listener": "127.0.0.1:6443",
            "time": "2026-12-05T16:25:07.6Z", "outcome": "open", "durationMs": ms})
        };
        assert_eq!(record_key(&open(10.0)), record_key(&open(310.0)));
        let mut closed = open(600.0);
        closed["outcome"] = json!("ok");
        assert_ne!(record_key(&closed), record_key(&open(600.0)));
        let mut other = open(10.0);
        other["client"] = json!("127.0.0.1:5001");
        assert_ne!(record_key(&other), record_key(&open(10.0)));
    }

    #[test]
    fn sources_are_every_loopback_admin_url_but_the_labs_own() {
        let info = json!({"admin": {
            "lab": "http://127.0.0.1:8400",
            "authProxy": "http://127.0.0.1:8002",
            "forwarders": {"node-1": "http://127.0.20.1:10249", "node-2": "http://127.0.20.2:10249"},
            "haBalancer": "http://127.0.0.1:8404/",
            "elsewhere": "http://10.0.0.1:8404",
            "odd": 7,
        }});
        let names: Vec<String> = sources_from_info(&info)
            .into_iter()
            .map(|s| format!("{}={}", s.name, s.addr))
            .collect();
        assert_eq!(
            names,
            [
                "authProxy=127.0.0.1:8002",
                "forwarders/node-1=127.0.20.1:10249",
                "forwarders/node-2=127.0.20.2:10249",
                "haBalancer=127.0.0.1:8404",
            ]
        );
        assert!(sources_from_info(&json!({})).is_empty());
    }

    #[tokio::test]
    async fn new_records_are_published_once_numbered_and_kept_for_late_readers() {
        use proxylab_core::telemetry::{AdminState, HopRecord, admin_router};
        let admin = AdminState::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(proxylab_core::serve::serve_http(
            listener,
            None,
            admin_router(admin.clone()),
            stop.clone(),
        ));
        let hop = |port: u16| {
            HopRecord::start(
                "forwarder",
                "node-1",
                "tcp",
                SocketAddr::from(([127, 0, 0, 1], port)),
                SocketAddr::from(([127, 0, 40, 10], 80)),
            )
        };
        admin.hops.record(hop(1));

        let feed = HopFeed::new();
        feed.set_sources(vec![Source {
            name: "forwarders/node-1".into(),
            addr,
        }]);
        let task = tokio::spawn(feed.clone().run(stop.clone()));
        let (backlog, mut rx) = feed.subscribe(0);
        assert!(backlog.is_empty(), "nothing polled yet");
        let first = rx.recv().await.unwrap();
        assert_eq!(first.id, 1);
        assert!(
            first.data.contains("\"client\":\"127.0.0.1:1\""),
            "{}",
            first.data
        );
        assert!(first.data.contains("\"source\":\"forwarders/node-1\""));

        admin.hops.record(hop(2));
        let second = rx.recv().await.unwrap();
        assert_eq!(second.id, 2);
        assert!(second.data.contains("127.0.0.1:2"), "{}", second.data);
        // Polls go on; nothing is published twice.
        let more = tokio::time::timeout(POLL_EVERY * 3, rx.recv()).await;
        assert!(more.is_err(), "published again: {more:?}");

        let late = feed.snapshot(1).await;
        assert_eq!(late.iter().map(|e| e.id).collect::<Vec<_>>(), [2]);
        stop.cancel();
        task.await.unwrap();
        server.await.unwrap().unwrap();
    }
}
