//! # proxylab-store-etcd — the apiserver's objects in a real etcd
//!
//! [`proxylab_store::MemoryStore`] models etcd inside one process. This crate is the real thing:
//! [`EtcdStore`] implements the same [`Store`] trait on an etcd v3 cluster, so several apiserver
//! *processes* (`proxylab apiserver --etcd-servers http://etcd:2379`) share one set of objects, one
//! resourceVersion counter and one stream of changes — what a highly available control plane is.
//!
//! ## How kube-apiserver uses etcd (and so does this store)
//!
//! - **Keys.** Every object is one key, `/registry/<resource>/<namespace>/<name>` (cluster-scoped:
//!   `/registry/<resource>/<name>`); `--etcd-prefix` changes `/registry`. The value is the object's
//!   JSON *without* `metadata.resourceVersion` (kube-apiserver clears it before writing too: the
//!   version is not part of the value, it is where the value sits in etcd's history). Here the
//!   resource is the store's resource name, group-qualified for non-core groups
//!   (`/registry/endpointslices.discovery.k8s.io/default/kubernetes`).
//! - **resourceVersion = revision.** etcd numbers every write with a cluster-wide, strictly increasing
//!   *revision*; each key remembers its `create_revision` and `mod_revision`. An object's
//!   resourceVersion is its key's `mod_revision`; a list's is the revision the range was read at.
//! - **Create** is a transaction `if create_revision(key) == 0 then put` (the key has never existed or
//!   was deleted) `else get` → `409 AlreadyExists`.
//! - **Update and delete with a precondition** are a compare-and-swap on the revision:
//!   `if mod_revision(key) == N then put/delete else get` — the `else` branch tells `409 Conflict`
//!   (the current `mod_revision`) from `404` (no key). No lock is ever held; the client re-reads and
//!   retries, which is kube's optimistic concurrency.
//! - **Watch from N** is an etcd watch on the key prefix from revision `N + 1` with `prev_kv`, so a
//!   deletion carries the object's last state and a selector can compare old and new. A `PUT` whose
//!   `create_revision == mod_revision` is `ADDED`, any other `PUT` is `MODIFIED`, a `DELETE` is
//!   `DELETED`.
//! - **Compaction** drops the history before a revision (kube-apiserver asks for it every 5 minutes;
//!   [`EtcdStore::compact`] does the same on demand). A watch from before it fails with
//!   [`StoreError::Expired`], which the apiserver answers `410 Gone`: the client re-lists.
//!
//! ## The client: etcd's JSON gateway over HTTP/1.1
//!
//! etcd's own API is gRPC. Its Rust clients need `protoc` and tonic at build time; instead this crate
//! talks to the **JSON gateway** every etcd 3.4 serves on its client port (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/watch`; see [`gateway`]) with the hyper client the workspace already has. Same
//! semantics (it *is* the gRPC service behind a translator), no new build tools, and `curl` can show
//! what the store sends. The price: JSON and base64 instead of protobuf, and one HTTP connection per
//! open watch instead of gRPC streams multiplexed on one — fine at lab scale.
//!
//! ## Synchronous trait, asynchronous I/O
//!
//! [`Store`] is synchronous: the apiserver, its allocator and the controllers call it inline, because
//! the memory store never waits. An etcd store must wait for the network, so [`EtcdStore`] owns a
//! small tokio runtime (two threads, `etcd-client`) where its requests and watch streams run; a
//! [`Store`] call hands its request to that runtime and blocks the calling thread until the answer
//! (a loopback round trip is well under a millisecond; every request has a deadline, by default 5 s).
//! On a multi-threaded tokio runtime (the binaries') the wait is wrapped in
//! [`tokio::task::block_in_place`], so the worker's other tasks move to another thread meanwhile.
//! Making the trait `async` would remove that block but change every caller of the store;
//! this bridge keeps them as they are.
//!
//! ## What etcd cannot be reached means
//!
//! [`EtcdStore::connect`] asks etcd for its revision and waits up to `--etcd-startup-wait` for an
//! answer, then fails with a one-line reason (which endpoint, what error). After startup a failed
//! request is [`StoreError::Internal`] naming the endpoint, which the apiserver answers as a
//! `500` Status; an open watch whose stream breaks ends, and its client re-lists and watches again
//! (an informer's normal recovery). Several endpoints: a request moves to the next one only when
//! the current one refuses the *connection* — a request that was sent may have been applied, so it
//! is not replayed elsewhere.
//!
//! ## Watch progress and bookmarks
//!
//! The memory store delivers every event before it answers a later write, so the apiserver can stamp
//! a `BOOKMARK` with the store's current revision. etcd delivers watch events asynchronously: the
//! revision read now may be ahead of what an open watch has received. So this store answers
//! [`Store::bookmark_progress`] with `None` and bookmarks carry the last delivered event's version.
//!
//! What is not here: TLS and authentication to etcd (`--etcd-cafile`, `--etcd-certfile`), leases,
//! pagination of large lists (`limit`/`continue`), and automatic compaction (run etcd with
//! `--auto-compaction-retention`).
#![forbid(unsafe_code)]

pub mod gateway;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proxylab_store::{EventType, ObjectKey, Store, StoreError, WatchEvent, set_resource_version};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub use gateway::{EtcdError, parse_endpoints};
use gateway::{Gateway, WatchStream, b64, int, unb64};

/// How many events a watcher may have queued before it is considered too slow and its watch ends
/// (the memory store's rule too; the client re-lists).
const LIVE_BUFFER: usize = 1024;

/// The flags that select and tune the etcd store (kube-apiserver's names, plus one of proxylab's).
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdArgs {
    /// etcd client URLs, comma-separated (`http://host:2379`). When given, objects live in etcd
    /// instead of this process's memory, so several apiservers can serve the same cluster.
    #[arg(long = "etcd-servers", value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// The key prefix every object is stored under.
    #[arg(long = "etcd-prefix", default_value = "/registry")]
    pub etcd_prefix: String,
    /// How many seconds to wait at startup for etcd to answer before giving up (proxylab's flag:
    /// in a compose lab the apiservers may start before etcd is ready).
    #[arg(long = "etcd-startup-wait", default_value_t = 15)]
    pub etcd_startup_wait: u64,
}

impl EtcdArgs {
    /// The configuration these flags select: `None` when no `--etcd-servers` (the memory store).
    pub fn to_config(&self) -> Result<Option<EtcdConfig>, EtcdError> {
        if self.etcd_servers.is_empty() {
            return Ok(None);
        }
        let prefix = self.etcd_prefix.trim_end_matches('/');
        if !prefix.starts_with('/') {
            return Err(EtcdError::BadFlag {
                flag: "--etcd-prefix",
                value: self.etcd_prefix.clone(),
                message: "must start with /".into(),
            });
        }
        Ok(Some(EtcdConfig {
            endpoints: parse_endpoints(&self.etcd_servers)?,
            prefix: prefix.to_owned(),
            startup_wait: Duration::from_secs(self.etcd_startup_wait),
            request_timeout: Duration::from_secs(5),
        }))
    }
}

/// Where the store is and how patient it is.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `http://host:port` client URLs (see [`parse_endpoints`]).
    pub endpoints: Vec<String>,
    /// Key prefix without a trailing slash (`/registry`).
    pub prefix: String,
    /// How long [`EtcdStore::connect`] keeps trying before it fails.
    pub startup_wait: Duration,
    /// The deadline of each request.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    /// Defaults for `endpoints`: prefix `/registry`, a 15 s startup wait, 5 s requests.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: "/registry".into(),
            startup_wait: Duration::from_secs(15),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// The [`Store`] on etcd. See the crate docs for the mapping.
pub struct EtcdStore {
    gw: Arc<Gateway>,
    prefix: String,
    /// The runtime the requests and watch streams run on (taken in `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.gw.endpoints())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which is not allowed inside another runtime;
        // shut it down in the background (open watches end, their receivers see the close).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn internal(e: EtcdError) -> StoreError {
    StoreError::Internal(e.to_string())
}

fn protocol(gw: &Gateway, message: impl Into<String>) -> StoreError {
    internal(EtcdError::Protocol {
        endpoint: gw.endpoints().join(","),
        message: message.into(),
    })
}

/// The end of a prefix range: the prefix with its last byte incremented (etcd's `range_end`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// The stored form of an object: its JSON without `metadata.resourceVersion`.
fn encode(obj: &Value) -> Result<String, StoreError> {
    let mut obj = obj.clone();
    if !obj.is_object() {
        return Err(StoreError::Internal("object is not a JSON object".into()));
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let bytes = serde_json::to_vec(&obj).map_err(|e| StoreError::Internal(e.to_string()))?;
    Ok(b64(&bytes))
}

/// A key-value of an answer back into an object at resourceVersion `rv`.
fn decode(gw: &Gateway, kv: &Value, rv: u64) -> Result<Value, StoreError> {
    let bytes = unb64(&kv["value"]).map_err(|e| protocol(gw, e))?;
    let mut obj: Value = serde_json::from_slice(&bytes).map_err(|e| {
        let key = unb64(&kv["key"]).unwrap_or_default();
        protocol(
            gw,
            format!(
                "{} holds no JSON object: {e}",
                String::from_utf8_lossy(&key)
            ),
        )
    })?;
    set_resource_version(&mut obj, rv)?;
    Ok(obj)
}

/// A `txn` whose `else` branch reads the key, and what came of it.
struct TxnOutcome {
    succeeded: bool,
    revision: u64,
    /// The branch's first response (`response_put`, `response_delete_range`, `response_range`).
    response: Value,
}

async fn txn(
    gw: &Gateway,
    key: &str,
    compare: Vec<Value>,
    success: Value,
) -> Result<TxnOutcome, StoreError> {
    let body = json!({
        "compare": compare,
        "success": [success],
        "failure": [{"request_range": {"key": b64(key.as_bytes())}}],
    });
    let answer = gw.call("/v3/kv/txn", body).await.map_err(internal)?;
    let succeeded = answer["succeeded"].as_bool().unwrap_or(false);
    let first = answer["responses"]
        .get(0)
        .and_then(Value::as_object)
        .and_then(|m| m.values().next().cloned())
        .unwrap_or(Value::Null);
    Ok(TxnOutcome {
        succeeded,
        revision: int(&answer["header"]["revision"]),
        response: first,
    })
}

/// The compares of an update or delete: the key exists, and (with a precondition) is still at
/// revision `rv`.
fn exists_and_at(key: &str, precondition_rv: Option<u64>) -> Vec<Value> {
    let k = b64(key.as_bytes());
    let mut c = vec![json!({"target": "VERSION", "result": "GREATER", "key": k, "version": "0"})];
    if let Some(rv) = precondition_rv {
        c.push(
            json!({"target": "MOD", "result": "EQUAL", "key": k, "mod_revision": rv.to_string()}),
        );
    }
    c
}

/// Why a guarded write's compare failed, from its `else` read: Conflict with the current revision,
/// or NotFound.
fn failed_compare(outcome: &TxnOutcome) -> StoreError {
    match outcome.response["kvs"].get(0) {
        Some(kv) => StoreError::Conflict {
            current: int(&kv["mod_revision"]),
        },
        None => StoreError::NotFound,
    }
}

impl EtcdStore {
    /// Connects to etcd: builds the client and waits (up to `startup_wait`) until a member answers.
    pub fn connect(config: EtcdConfig) -> Result<Self, EtcdError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd-client")
            .enable_all()
            .build()
            .map_err(|e| EtcdError::Unreachable {
                endpoint: config.endpoints.join(","),
                message: format!("cannot start the client runtime: {e}"),
            })?;
        let store = EtcdStore {
            gw: Arc::new(Gateway::new(config.endpoints, config.request_timeout)),
            prefix: config.prefix,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        };
        let deadline = Instant::now() + config.startup_wait;
        loop {
            let gw = store.gw.clone();
            let probe = store
                .run(async move {
                    Ok(gw
                        .call(
                            "/v3/kv/range",
                            json!({"key": b64(b"/"), "count_only": true, "limit": "1"}),
                        )
                        .await)
                })
                .map_err(|e| e.to_string())
                .and_then(|answer| match answer {
                    Ok(_) => Ok(()),
                    Err(EtcdError::Unreachable { message, .. }) => Err(message),
                    Err(e) => Err(e.to_string()),
                });
            match probe {
                Ok(()) => return Ok(store),
                Err(why) if Instant::now() >= deadline => {
                    return Err(EtcdError::Unreachable {
                        endpoint: store.gw.endpoints().join(","),
                        message: format!(
                            "no answer within {}s (--etcd-startup-wait): {why}",
                            config.startup_wait.as_secs()
                        ),
                    });
                }
                Err(why) => {
                    tracing::warn!(error = %why, "etcd not answering yet; retrying");
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }

    /// The etcd client URLs this store talks to.
    pub fn endpoints(&self) -> &[String] {
        self.gw.endpoints()
    }

    /// Compacts etcd's history up to `revision` (what kube-apiserver's compactor does every five
    /// minutes): watches from before it then fail with [`StoreError::Expired`].
    pub fn compact(&self, revision: u64) -> Result<(), StoreError> {
        let gw = self.gw.clone();
        self.run(async move {
            gw.call(
                "/v3/kv/compaction",
                json!({"revision": revision.to_string(), "physical": true}),
            )
            .await
            .map(|_| ())
            .map_err(internal)
        })
    }

    /// Runs `fut` on the store's runtime and blocks this thread until it is done (see the crate
    /// docs: the trait is synchronous).
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        let wait = move || {
            rx.recv().unwrap_or_else(|_| {
                Err(StoreError::Internal(
                    "the etcd client runtime stopped".into(),
                ))
            })
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    fn key(&self, key: &ObjectKey) -> String {
        match &key.namespace {
            Some(ns) => format!("{}/{}/{}/{}", self.prefix, key.resource, ns, key.name),
            None => format!("{}/{}/{}", self.prefix, key.resource, key.name),
        }
    }

    fn range_prefix(&self, resource: &str, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) => format!("{}/{}/{}/", self.prefix, resource, ns),
            None => format!("{}/{}/", self.prefix, resource),
        }
    }
}

impl Store for EtcdStore {
    fn get(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        let gw = self.gw.clone();
        let k = self.key(key);
        self.run(async move {
            let answer = gw
                .call("/v3/kv/range", json!({"key": b64(k.as_bytes())}))
                .await
                .map_err(internal)?;
            match answer["kvs"].get(0) {
                None => Ok(None),
                Some(kv) => decode(&gw, kv, int(&kv["mod_revision"])).map(Some),
            }
        })
    }

    fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<(Vec<Value>, u64), StoreError> {
        let gw = self.gw.clone();
        let prefix = self.range_prefix(resource, namespace);
        self.run(async move {
            let answer = gw
                .call(
                    "/v3/kv/range",
                    json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(&prefix))}),
                )
                .await
                .map_err(internal)?;
            let mut items = Vec::new();
            for kv in answer["kvs"].as_array().into_iter().flatten() {
                items.push(decode(&gw, kv, int(&kv["mod_revision"]))?);
            }
            // etcd returns key order, where `a-b/x` sorts before `a/y` ('-' < '/'); the trait
            // promises (namespace, name) order.
            items.sort_by(|a, b| {
                let k = |o: &Value| {
                    (
                        o["metadata"]["namespace"].as_str().unwrap_or("").to_owned(),
                        o["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                    )
                };
                k(a).cmp(&k(b))
            });
            Ok((items, int(&answer["header"]["revision"])))
        })
    }

    fn create(&self, key: &ObjectKey, obj: Value) -> Result<Value, StoreError> {
        let gw = self.gw.clone();
        let k = self.key(key);
        let value = encode(&obj)?;
        self.run(async move {
            let kb = b64(k.as_bytes());
            let outcome = txn(
                &gw,
                &k,
                vec![json!({"target": "CREATE", "result": "EQUAL", "key": kb, "create_revision": "0"})],
                json!({"request_put": {"key": kb, "value": value}}),
            )
            .await?;
            if !outcome.succeeded {
                return Err(StoreError::AlreadyExists);
            }
            let mut obj = obj;
            set_resource_version(&mut obj, outcome.revision)?;
            Ok(obj)
        })
    }

    fn update(
        &self,
        key: &ObjectKey,
        obj: Value,
        precondition_rv: Option<u64>,
    ) -> Result<Value, StoreError> {
        let gw = self.gw.clone();
        let k = self.key(key);
        let value = encode(&obj)?;
        self.run(async move {
            let outcome = txn(
                &gw,
                &k,
                exists_and_at(&k, precondition_rv),
                json!({"request_put": {"key": b64(k.as_bytes()), "value": value}}),
            )
            .await?;
            if !outcome.succeeded {
                return Err(failed_compare(&outcome));
            }
            let mut obj = obj;
            set_resource_version(&mut obj, outcome.revision)?;
            Ok(obj)
        })
    }

    fn delete(&self, key: &ObjectKey, precondition_rv: Option<u64>) -> Result<Value, StoreError> {
        let gw = self.gw.clone();
        let k = self.key(key);
        self.run(async move {
            let outcome = txn(
                &gw,
                &k,
                exists_and_at(&k, precondition_rv),
                json!({"request_delete_range": {"key": b64(k.as_bytes()), "prev_kv": true}}),
            )
            .await?;
            if !outcome.succeeded {
                return Err(failed_compare(&outcome));
            }
            let prev = outcome.response["prev_kvs"]
                .get(0)
                .ok_or_else(|| protocol(&gw, "a delete without its previous value"))?;
            // The DELETED event, and the answer, carry the deletion's revision.
            decode(&gw, prev, outcome.revision)
        })
    }

    fn watch(
        &self,
        resource: &str,
        namespace: Option<&str>,
        since: u64,
    ) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
        let gw = self.gw.clone();
        let prefix = self.range_prefix(resource, namespace);
        self.run(async move { open_watch(gw, prefix, since).await })
    }

    fn current_resource_version(&self) -> u64 {
        let gw = self.gw.clone();
        let asked = self.run(async move {
            gw.call(
                "/v3/kv/range",
                json!({"key": b64(b"/"), "count_only": true, "limit": "1"}),
            )
            .await
            .map(|a| int(&a["header"]["revision"]))
            .map_err(internal)
        });
        match asked {
            Ok(rv) => rv,
            Err(e) => {
                // The trait has no error here; the last revision seen is a version that existed.
                tracing::warn!(error = %e, "etcd revision unavailable; using the last one seen");
                self.gw.seen_revision.load(Ordering::Relaxed)
            }
        }
    }

    fn bookmark_progress(&self) -> Option<u64> {
        None
    }
}

/// Opens an etcd watch on `prefix` from `since + 1` and starts pumping its events into a channel.
async fn open_watch(
    gw: Arc<Gateway>,
    prefix: String,
    since: u64,
) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
    let start = since + 1;
    let key = b64(prefix.as_bytes());
    let range_end = b64(&prefix_end(&prefix));
    // Is `start` still in etcd's history? A read at that revision says (etcd 3.4's watch first
    // answers "created" and only then "canceled: compacted", so the watch alone cannot tell quickly).
    let compacted = match gw
        .call(
            "/v3/kv/range",
            json!({"key": key, "range_end": range_end, "revision": start.to_string(), "count_only": true}),
        )
        .await
    {
        Ok(_) => false,
        Err(e) if e.is_compacted() => true,
        Err(e) if e.is_future_revision() => false,
        Err(e) => return Err(internal(e)),
    };
    let mut stream = gw
        .watch(json!({
            "key": key,
            "range_end": range_end,
            "start_revision": start.to_string(),
            "prev_kv": true,
        }))
        .await
        .map_err(internal)?;
    // Read up to "created"; when compacted, on to the cancel that names the compaction revision.
    loop {
        let Some(resp) = stream.next().await.map_err(internal)? else {
            return Err(protocol(&gw, "the watch stream ended before it started"));
        };
        let compact_revision = int(&resp["compact_revision"]);
        if compact_revision > 0 {
            // Events from `compact_revision` on are kept: a watch may start at compact_revision - 1.
            return Err(StoreError::Expired {
                oldest: compact_revision - 1,
            });
        }
        if resp["canceled"].as_bool() == Some(true) {
            let reason = resp["cancel_reason"].as_str().unwrap_or("no reason given");
            return Err(protocol(&gw, format!("watch canceled: {reason}")));
        }
        if resp["created"].as_bool() == Some(true) && !compacted {
            break;
        }
        if !resp["events"].is_null() && !compacted {
            return Err(protocol(&gw, "events before the watch was created"));
        }
    }
    let (tx, rx) = mpsc::channel(LIVE_BUFFER);
    tokio::spawn(pump(gw, stream, tx));
    Ok(rx)
}

/// Moves events from an etcd watch stream into the watcher's channel until either side ends.
async fn pump(gw: Arc<Gateway>, mut stream: WatchStream, tx: mpsc::Sender<WatchEvent>) {
    loop {
        let resp = tokio::select! {
            _ = tx.closed() => return,
            r = stream.next() => r,
        };
        let resp = match resp {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::debug!("etcd ended a watch stream");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "etcd watch stream failed; the watcher re-lists");
                return;
            }
        };
        if resp["canceled"].as_bool() == Some(true) {
            tracing::warn!(answer = %resp, "etcd canceled a watch; the watcher re-lists");
            return;
        }
        for ev in resp["events"].as_array().into_iter().flatten() {
            let event = match to_event(&gw, ev) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "bad etcd watch event; ending the watch");
                    return;
                }
            };
            match tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!("dropping slow watcher");
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

/// One etcd watch event as the store's [`WatchEvent`].
fn to_event(gw: &Gateway, ev: &Value) -> Result<WatchEvent, StoreError> {
    let kv = &ev["kv"];
    let rv = int(&kv["mod_revision"]);
    let prev = match ev.get("prev_kv") {
        Some(p) => Some(decode(gw, p, int(&p["mod_revision"]))?),
        None => None,
    };
    let (event_type, object) = if ev["type"].as_str() == Some("DELETE") {
        let last = ev
            .get("prev_kv")
            .ok_or_else(|| protocol(gw, "a DELETE event without prev_kv"))?;
        (EventType::Deleted, decode(gw, last, rv)?)
    } else if int(&kv["create_revision"]) == rv {
        (EventType::Added, decode(gw, kv, rv)?)
    } else {
        (EventType::Modified, decode(gw, kv, rv)?)
    };
    Ok(WatchEvent {
        event_type,
        object: Arc::new(object),
        resource_version: rv,
        prev_object: prev.map(Arc::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0");
    }

    #[test]
    fn stored_values_carry_no_resource_version() {
        let v = encode(&json!({"metadata": {"name": "a", "resourceVersion": "9"}})).unwrap();
        let back: Value = serde_json::from_slice(&unb64(&json!(v)).unwrap()).unwrap();
        assert_eq!(back, json!({"metadata": {"name": "a"}}));
        assert!(encode(&json!([1])).is_err());
    }

    #[test]
    fn flags_select_the_store() {
        let args = |servers: &[&str], prefix: &str| EtcdArgs {
            etcd_servers: servers.iter().map(|s| s.to_string()).collect(),
            etcd_prefix: prefix.into(),
            etcd_startup_wait: 1,
        };
        assert!(args(&[], "/registry").to_config().unwrap().is_none());
        let c = args(&["http://etcd:2379"], "/lab/")
            .to_config()
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.endpoints[0].as_str(), c.prefix.as_str()),
            ("http://etcd:2379", "/lab")
        );
        assert!(args(&["http://etcd:2379"], "lab").to_config().is_err());
        assert!(args(&["etcd:2379"], "/registry").to_config().is_err());
    }
}
