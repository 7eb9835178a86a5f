//! # proxylab-store — the etcd of the lab
//!
//! kube-apiserver keeps no state of its own: every object lives in etcd, a replicated key-value store
//! with a single, cluster-wide *revision* counter. Each write (create, update, delete) bumps that
//! revision, and the object's `metadata.resourceVersion` is simply the revision at which it was last
//! written. Two properties of that design are what clients build on:
//!
//! - **Optimistic concurrency.** A client that read an object at resourceVersion `N` may send it back with
//!   that version as a precondition; if someone else wrote in between, the write fails with `409 Conflict`
//!   and the client re-reads. No locks are ever held across requests.
//! - **Watch from a version.** Because versions are totally ordered, "give me every change after `N`" is a
//!   well-defined question. etcd answers it from its history until compaction removes old revisions; then
//!   the apiserver answers `410 Gone` ("too old resource version") and the client must list again. This is
//!   the list-then-watch loop every informer, kube-proxy and `kubectl get -w` runs.
//!
//! This crate models exactly that, in memory, behind the [`Store`] trait:
//!
//! - one global, strictly increasing resourceVersion across all resources (as etcd's revision);
//! - a bounded history of events (the model of etcd compaction): a watch from a version older than the
//!   history fails with [`StoreError::Expired`];
//! - live events delivered through bounded tokio channels. A watcher that does not keep up is *dropped*
//!   (its channel closes) rather than slowing writers down — kube-apiserver's watch cache does the same
//!   to slow watchers, and the client's answer is the same as for `Expired`: re-list and watch again.
//!
//! Objects are plain `serde_json::Value`s (full Kubernetes objects); the store only touches
//! `metadata.resourceVersion`. Everything else (uids, timestamps, validation, admission) is the
//! apiserver's job, as it is in Kubernetes.
//!
//! Opened on a directory ([`MemoryStore::open`]), the store saves every committed write in an
//! append-only log folded into periodic snapshots (see [`journal`] for the durability policy), so a
//! lab keeps its objects across restarts and resourceVersions keep increasing.
//!
//! What is simplified: no multi-key transactions, no leases/TTLs, and no
//! per-resource history (etcd's history is global too, but the watch cache in kube-apiserver is per
//! resource; here one ring of events serves every resource, so a busy resource can expire the history of a
//! quiet one sooner than a real cluster would).
#![forbid(unsafe_code)]

pub mod journal;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

use journal::{Entry, Journal, Objects};
pub use journal::{Loaded, PersistError};

/// Where an object lives: `resource` is the plural resource name, qualified by its API group for
/// non-core groups (`"pods"`, `"endpointslices.discovery.k8s.io"`); `namespace` is `None` for
/// cluster-scoped resources (nodes, namespaces).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(
        resource: impl Into<String>,
        namespace: Option<&str>,
        name: impl Into<String>,
    ) -> Self {
        ObjectKey {
            resource: resource.into(),
            namespace: namespace.map(str::to_owned),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.resource, ns, self.name),
            None => write!(f, "{}/{}", self.resource, self.name),
        }
    }
}

/// The kind of change a [`WatchEvent`] reports, as in the Kubernetes watch protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The wire name used in watch streams (`"ADDED"`, `"MODIFIED"`, `"DELETED"`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change. `object` is the state after the change (for `Deleted`: the last state, carrying the
/// deletion's resourceVersion). The object is shared (`Arc`) because one event fans out to many watchers.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub event_type: EventType,
    pub object: Arc<Value>,
    pub resource_version: u64,
    /// The state before the change (`Modified`, `Deleted`; `None` for `Added`). kube-apiserver's watch
    /// cache keeps it too: a watch with a label or field selector needs it to turn "no longer matches"
    /// into `DELETED` and "now matches" into `ADDED`.
    pub prev_object: Option<Arc<Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    /// The precondition resourceVersion did not match; `current` is the stored one.
    #[error("the object has been modified; current resourceVersion is {current}")]
    Conflict { current: u64 },
    /// The requested watch start is older than the retained history; `oldest` is the oldest version a
    /// watch can still start from.
    #[error("too old resource version (oldest available: {oldest})")]
    Expired { oldest: u64 },
    #[error("internal store error: {0}")]
    Internal(String),
}

/// The storage interface the apiserver front-ends share. Implementations must be usable from many
/// tasks at once; all methods are synchronous and short (no I/O), so callers may use them from async
/// code directly.
pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError>;
    /// All objects of a resource (in one namespace, or all when None), sorted by (namespace, name), and
    /// the store's current resourceVersion.
    fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<(Vec<Value>, u64), StoreError>;
    /// Stores `obj` under a new resourceVersion (written into metadata.resourceVersion as a decimal
    /// string); AlreadyExists if present.
    fn create(&self, key: &ObjectKey, obj: Value) -> Result<Value, StoreError>;
    /// Replaces; when `precondition_rv` is Some and differs from the stored one → Conflict; NotFound if
    /// absent.
    fn update(
        &self,
        key: &ObjectKey,
        obj: Value,
        precondition_rv: Option<u64>,
    ) -> Result<Value, StoreError>;
    /// Removes and returns the last state (the DELETED event carries it with a new resourceVersion).
    fn delete(&self, key: &ObjectKey, precondition_rv: Option<u64>) -> Result<Value, StoreError>;
    /// Events with resourceVersion > `since` for that resource (and namespace), first from the bounded
    /// history, then live. `since` older than the history → Err(Expired). The receiver closing means the
    /// watch ended (client re-lists).
    fn watch(
        &self,
        resource: &str,
        namespace: Option<&str>,
        since: u64,
    ) -> Result<mpsc::Receiver<WatchEvent>, StoreError>;
    fn current_resource_version(&self) -> u64;
    /// A resourceVersion a watch `BOOKMARK` may claim when its queue is empty: every event up to it
    /// has already been queued to every open watch. The memory store queues events before a write
    /// returns, so its current version qualifies (the default); a store whose watches receive
    /// events asynchronously (etcd) answers `None` and bookmarks carry the last delivered event.
    fn bookmark_progress(&self) -> Option<u64> {
        Some(self.current_resource_version())
    }
}

/// How many live events a watcher may have queued (beyond its replay) before it is considered too slow
/// and dropped.
const LIVE_BUFFER: usize = 1024;

struct HistoryItem {
    resource: String,
    namespace: Option<String>,
    event: WatchEvent,
}

struct Watcher {
    resource: String,
    namespace: Option<String>,
    tx: mpsc::Sender<WatchEvent>,
}

struct Inner {
    rv: u64,
    /// resource → (namespace or "", name) → entry. BTreeMap gives the (namespace, name) order `list`
    /// promises for free.
    objects: Objects,
    history: VecDeque<HistoryItem>,
    /// Every event with a resourceVersion > `compacted` is still in `history` (etcd's compaction point).
    compacted: u64,
    watchers: Vec<Watcher>,
    /// Where committed writes are saved, for a store opened on a directory.
    journal: Option<Journal>,
}

/// The in-memory [`Store`]. Share it as `Arc<MemoryStore>` (or `Arc<dyn Store>`) between the apiserver
/// front-ends of one process, as several kube-apiservers share one etcd.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    history_capacity: usize,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("MemoryStore")
            .field("resource_version", &inner.rv)
            .field("history", &inner.history.len())
            .field("watchers", &inner.watchers.len())
            .finish()
    }
}

impl MemoryStore {
    /// `history_capacity` is how many events (across all resources) are kept for watches that start in
    /// the past; at least 1.
    pub fn new(history_capacity: usize) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner {
                rv: 0,
                objects: HashMap::new(),
                history: VecDeque::new(),
                compacted: 0,
                watchers: Vec::new(),
                journal: None,
            }),
            history_capacity: history_capacity.max(1),
        }
    }

    /// A store saved in `dir` (see [`journal`]): loads what is there, then saves every committed
    /// write before it becomes visible. The watch history starts empty at the loaded version.
    pub fn open(dir: &Path, history_capacity: usize) -> Result<(Self, Loaded), PersistError> {
        let (objects, rv, loaded) = journal::load(dir)?;
        // Start from a fresh snapshot: restarts stay fast however long the old log was.
        let journal = Journal::create(dir, &objects, rv)?;
        let store = MemoryStore::new(history_capacity);
        {
            let mut inner = store.inner.lock();
            inner.objects = objects;
            inner.rv = rv;
            inner.compacted = rv;
            inner.journal = Some(journal);
        }
        Ok((store, loaded))
    }

    /// Drops the watch history before `revision`, as etcd's compaction does: a watch may then start
    /// at `revision - 1` or later (it is sent the events from `revision` on); an older one fails
    /// with [`StoreError::Expired`].
    pub fn compact(&self, revision: u64) {
        let mut inner = self.inner.lock();
        while inner
            .history
            .front()
            .is_some_and(|h| h.event.resource_version < revision)
        {
            inner.history.pop_front();
        }
        let oldest = revision.saturating_sub(1).min(inner.rv);
        inner.compacted = inner.compacted.max(oldest);
    }

    /// Number of currently registered live watchers (for tests and metrics).
    pub fn watcher_count(&self) -> usize {
        let mut inner = self.inner.lock();
        inner.watchers.retain(|w| !w.tx.is_closed());
        inner.watchers.len()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(10_000)
    }
}

fn ns_key(ns: Option<&str>) -> String {
    ns.unwrap_or("").to_owned()
}

/// Writes `rv` into `obj`'s `metadata.resourceVersion` (a decimal string, as Kubernetes sends it);
/// an object that is not a JSON object is an [`StoreError::Internal`].
pub fn set_resource_version(obj: &mut Value, rv: u64) -> Result<(), StoreError> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| StoreError::Internal("object is not a JSON object".into()))?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let meta = meta
        .as_object_mut()
        .ok_or_else(|| StoreError::Internal("metadata is not a JSON object".into()))?;
    meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    Ok(())
}

impl Inner {
    /// Saves a write before it becomes visible (write-ahead); a store without a journal saves nothing.
    fn save(&mut self, rv: u64, key: &ObjectKey, obj: Option<&Value>) -> Result<(), StoreError> {
        if let Some(j) = &mut self.journal {
            j.append(
                rv,
                &key.resource,
                key.namespace.as_deref().unwrap_or(""),
                &key.name,
                obj,
            )
            .map_err(|e| StoreError::Internal(format!("saving the write: {e}")))?;
        }
        Ok(())
    }

    /// Folds a long log into a snapshot. The write that triggered it is already saved, so a failure
    /// here only means a longer log: logged, not returned.
    fn maybe_compact(&mut self) {
        if let Some(j) = &mut self.journal
            && let Err(e) = j.maybe_compact(&self.objects, self.rv)
        {
            tracing::warn!(error = %e, "store compaction failed; the log keeps growing");
        }
    }

    /// The object must exist and, when a precondition is given, still be at that resourceVersion.
    fn check_precondition(
        &self,
        resource: &str,
        k: &(String, String),
        precondition_rv: Option<u64>,
    ) -> Result<u64, StoreError> {
        let current = self
            .objects
            .get(resource)
            .and_then(|m| m.get(k))
            .map(|e| e.rv)
            .ok_or(StoreError::NotFound)?;
        match precondition_rv {
            Some(pre) if pre != current => Err(StoreError::Conflict { current }),
            _ => Ok(current),
        }
    }

    /// Records an event in the history and fans it out to matching live watchers, dropping any that
    /// are closed or full. Called with the lock held; never blocks.
    fn publish(
        &mut self,
        capacity: usize,
        key: &ObjectKey,
        event_type: EventType,
        object: Value,
        prev: Option<Value>,
        rv: u64,
    ) {
        let event = WatchEvent {
            event_type,
            object: Arc::new(object),
            resource_version: rv,
            prev_object: prev.map(Arc::new),
        };
        self.watchers.retain(|w| {
            if w.resource != key.resource {
                return !w.tx.is_closed();
            }
            if let Some(ns) = &w.namespace
                && key.namespace.as_deref() != Some(ns.as_str())
            {
                return !w.tx.is_closed();
            }
            match w.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(resource = %w.resource, "dropping slow watcher");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.history.push_back(HistoryItem {
            resource: key.resource.clone(),
            namespace: key.namespace.clone(),
            event,
        });
        while self.history.len() > capacity {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.event.resource_version;
            }
        }
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        let inner = self.inner.lock();
        Ok(inner
            .objects
            .get(&key.resource)
            .and_then(|m| m.get(&(ns_key(key.namespace.as_deref()), key.name.clone())))
            .map(|e| e.value.clone()))
    }

    fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<(Vec<Value>, u64), StoreError> {
        let inner = self.inner.lock();
        let items = match inner.objects.get(resource) {
            None => Vec::new(),
            Some(m) => match namespace {
                None => m.values().map(|e| e.value.clone()).collect(),
                Some(ns) => m
                    .range((ns.to_owned(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, e)| e.value.clone())
                    .collect(),
            },
        };
        Ok((items, inner.rv))
    }

    fn create(&self, key: &ObjectKey, mut obj: Value) -> Result<Value, StoreError> {
        let mut inner = self.inner.lock();
        let k = (ns_key(key.namespace.as_deref()), key.name.clone());
        if inner
            .objects
            .get(&key.resource)
            .is_some_and(|m| m.contains_key(&k))
        {
            return Err(StoreError::AlreadyExists);
        }
        let rv = inner.rv + 1;
        set_resource_version(&mut obj, rv)?;
        inner.save(rv, key, Some(&obj))?;
        inner.rv = rv;
        inner
            .objects
            .entry(key.resource.clone())
            .or_default()
            .insert(
                k,
                Entry {
                    value: obj.clone(),
                    rv,
                },
            );
        inner.publish(
            self.history_capacity,
            key,
            EventType::Added,
            obj.clone(),
            None,
            rv,
        );
        inner.maybe_compact();
        Ok(obj)
    }

    fn update(
        &self,
        key: &ObjectKey,
        mut obj: Value,
        precondition_rv: Option<u64>,
    ) -> Result<Value, StoreError> {
        let mut inner = self.inner.lock();
        let k = (ns_key(key.namespace.as_deref()), key.name.clone());
        inner.check_precondition(&key.resource, &k, precondition_rv)?;
        let rv = inner.rv + 1;
        set_resource_version(&mut obj, rv)?;
        inner.save(rv, key, Some(&obj))?;
        inner.rv = rv;
        let mut prev = None;
        if let Some(e) = inner
            .objects
            .get_mut(&key.resource)
            .and_then(|m| m.get_mut(&k))
        {
            prev = Some(std::mem::replace(&mut e.value, obj.clone()));
            e.rv = rv;
        }
        inner.publish(
            self.history_capacity,
            key,
            EventType::Modified,
            obj.clone(),
            prev,
            rv,
        );
        inner.maybe_compact();
        Ok(obj)
    }

    fn delete(&self, key: &ObjectKey, precondition_rv: Option<u64>) -> Result<Value, StoreError> {
        let mut inner = self.inner.lock();
        let k = (ns_key(key.namespace.as_deref()), key.name.clone());
        inner.check_precondition(&key.resource, &k, precondition_rv)?;
        let rv = inner.rv + 1;
        inner.save(rv, key, None)?;
        let mut obj = inner
            .objects
            .get_mut(&key.resource)
            .and_then(|m| m.remove(&k))
            .map(|e| e.value)
            .ok_or(StoreError::NotFound)?;
        inner.rv = rv;
        // A non-object can never have been stored (create/update reject it), so this cannot fail; keep
        // the result anyway rather than unwrap.
        let prev = obj.clone();
        set_resource_version(&mut obj, rv)?;
        inner.publish(
            self.history_capacity,
            key,
            EventType::Deleted,
            obj.clone(),
            Some(prev),
            rv,
        );
        inner.maybe_compact();
        Ok(obj)
    }

    fn watch(
        &self,
        resource: &str,
        namespace: Option<&str>,
        since: u64,
    ) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
        let mut inner = self.inner.lock();
        if since < inner.compacted {
            return Err(StoreError::Expired {
                oldest: inner.compacted,
            });
        }
        let replay: Vec<WatchEvent> = inner
            .history
            .iter()
            .filter(|h| h.event.resource_version > since)
            .filter(|h| h.resource == resource)
            .filter(|h| namespace.is_none() || h.namespace.as_deref() == namespace)
            .map(|h| h.event.clone())
            .collect();
        let (tx, rx) = mpsc::channel(replay.len() + LIVE_BUFFER);
        for ev in replay {
            // Capacity was sized for the replay, so this cannot be Full; and the receiver is in hand.
            if tx.try_send(ev).is_err() {
                return Err(StoreError::Internal("watch replay did not fit".into()));
            }
        }
        inner.watchers.push(Watcher {
            resource: resource.to_owned(),
            namespace: namespace.map(str::to_owned),
            tx,
        });
        Ok(rx)
    }

    fn current_resource_version(&self) -> u64 {
        self.inner.lock().rv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn memory_subject() -> Option<testsuite::Subject> {
        let store = Arc::new(MemoryStore::new(10_000));
        let compacting = store.clone();
        Some(testsuite::Subject {
            store,
            compact: Box::new(move |rv| compacting.compact(rv)),
            guard: Box::new(()),
        })
    }

    // The cases every backend must pass (crates/store-etcd runs them on a real etcd).
    crate::store_conformance_tests!(memory_subject());

    fn pod(ns: &str, name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}})
    }

    fn rv_of(v: &Value) -> u64 {
        v["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("resourceVersion")
    }

    #[test]
    fn expired_when_older_than_history() {
        let s = MemoryStore::new(2);
        for i in 0..5 {
            s.create(
                &ObjectKey::new("pods", Some("d"), format!("p{i}")),
                pod("d", "p"),
            )
            .unwrap();
        }
        // history holds rv 4 and 5; compaction point is 3
        assert_eq!(
            s.watch("pods", None, 2).unwrap_err(),
            StoreError::Expired { oldest: 3 }
        );
        assert!(s.watch("pods", None, 3).is_ok());
        assert!(s.watch("pods", None, 5).is_ok());
    }

    #[tokio::test]
    async fn slow_watcher_is_dropped_not_blocking() {
        let s = MemoryStore::new(10);
        let mut rx = s.watch("pods", None, 0).unwrap();
        for i in 0..(LIVE_BUFFER + 10) {
            s.create(
                &ObjectKey::new("pods", Some("d"), format!("p{i}")),
                pod("d", "p"),
            )
            .unwrap();
        }
        assert_eq!(s.watcher_count(), 0);
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, LIVE_BUFFER);
    }

    #[tokio::test]
    async fn dropped_receiver_unregisters() {
        let s = MemoryStore::new(10);
        let rx = s.watch("pods", None, 0).unwrap();
        assert_eq!(s.watcher_count(), 1);
        drop(rx);
        s.create(&ObjectKey::new("pods", Some("d"), "p"), pod("d", "p"))
            .unwrap();
        assert_eq!(s.watcher_count(), 0);
    }

    fn reopen(dir: &std::path::Path) -> (MemoryStore, Loaded) {
        MemoryStore::open(dir, 100).unwrap()
    }

    #[test]
    fn an_opened_store_keeps_objects_and_versions_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (s, loaded) = reopen(dir.path());
        assert_eq!(loaded, Loaded::default());
        let k = ObjectKey::new("pods", Some("d"), "p");
        let v = s.create(&k, pod("d", "p")).unwrap(); // 1
        s.update(&k, v, None).unwrap(); // 2
        let gone = ObjectKey::new("pods", Some("d"), "gone");
        s.create(&gone, pod("d", "gone")).unwrap(); // 3
        s.delete(&gone, None).unwrap(); // 4
        let n = ObjectKey::new("nodes", None, "n1");
        s.create(&n, json!({"metadata": {"name": "n1"}})).unwrap(); // 5
        drop(s);

        let (s, loaded) = reopen(dir.path());
        assert_eq!(loaded.objects, 2);
        assert_eq!(loaded.resource_version, 5);
        assert_eq!(loaded.replayed, 5);
        assert_eq!(rv_of(&s.get(&k).unwrap().unwrap()), 2);
        assert_eq!(s.get(&gone).unwrap(), None);
        assert!(s.get(&n).unwrap().is_some());
        // Versions continue; the history starts at the loaded version: older watches get 410.
        assert_eq!(rv_of(&s.create(&gone, pod("d", "gone")).unwrap()), 6);
        assert_eq!(
            s.watch("pods", None, 4).unwrap_err(),
            StoreError::Expired { oldest: 5 }
        );
        assert!(s.watch("pods", None, 5).is_ok());
        drop(s);
        // The second open started from a snapshot; the write after it is in the log.
        let (s, loaded) = reopen(dir.path());
        assert_eq!(
            (loaded.objects, loaded.resource_version, loaded.replayed),
            (3, 6, 1)
        );
        assert_eq!(s.current_resource_version(), 6);
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_a_corrupt_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = reopen(dir.path());
        s.create(&ObjectKey::new("pods", Some("d"), "a"), pod("d", "a"))
            .unwrap();
        s.create(&ObjectKey::new("pods", Some("d"), "b"), pod("d", "b"))
            .unwrap();
        // What a crash in the middle of a write leaves (the store is not dropped: as after kill -9).
        std::mem::forget(s);
        let log = dir.path().join("store.log");
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.push_str("{\"rv\":3,\"put\":\"pods\",\"ns\":\"d\",\"na");
        std::fs::write(&log, &text).unwrap();
        let (s, loaded) = reopen(dir.path());
        assert!(loaded.torn_tail);
        assert_eq!((loaded.objects, loaded.resource_version), (2, 2));
        drop(s);

        let mut text = std::fs::read_to_string(&log).unwrap();
        text.insert_str(0, "garbage\n");
        text.push_str("{\"rv\":9,\"del\":\"pods\",\"ns\":\"d\",\"name\":\"a\"}\n");
        std::fs::write(&log, text).unwrap();
        let err = MemoryStore::open(dir.path(), 10).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("store.log: line 1: not a store record"),
            "{err}"
        );
    }

    #[test]
    fn a_long_log_is_folded_into_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = reopen(dir.path());
        let k = ObjectKey::new("pods", Some("d"), "p");
        s.create(&k, pod("d", "p")).unwrap();
        for _ in 0..journal::COMPACT_AFTER + 5 {
            s.update(&k, pod("d", "p"), None).unwrap();
        }
        let log_lines = std::fs::read_to_string(dir.path().join("store.log"))
            .unwrap()
            .lines()
            .count();
        assert!(
            log_lines < 10,
            "the log was not compacted: {log_lines} lines"
        );
        drop(s);
        let (s, loaded) = reopen(dir.path());
        let want = journal::COMPACT_AFTER as u64 + 6;
        assert_eq!(loaded.resource_version, want);
        assert_eq!(rv_of(&s.get(&k).unwrap().unwrap()), want);
    }

    #[test]
    fn fresh_removes_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = reopen(dir.path());
        s.create(&ObjectKey::new("pods", Some("d"), "a"), pod("d", "a"))
            .unwrap();
        drop(s);
        journal::remove_files(dir.path()).unwrap();
        let (s, loaded) = reopen(dir.path());
        assert_eq!(loaded, Loaded::default());
        assert_eq!(s.current_resource_version(), 0);
    }
}
