//! A shared informer: one list + watch loop per resource, feeding a cache that several
//! controllers read, and waking the controllers that subscribed.
//!
//! This is client-go's `SharedIndexInformer` in miniature. The loop lists the resource
//! (all namespaces), replaces the cache with the result, then watches from the list's
//! resourceVersion, applying each event to the cache. When the watch ends — the store closed
//! it because this watcher fell behind, or the start version is older than the retained
//! history (`Expired`, HTTP 410 in the real protocol) — it lists again. Every change pokes a
//! `Notify` per subscriber; a `Notify` keeps one pending permit, so a burst of events wakes a
//! controller once, and an event arriving while the controller is busy wakes it again
//! afterwards. Nothing is lost, and nothing is processed per event: the controllers are
//! level-triggered, they look at the whole cache each time.
//!
//! The cache only moves forward: an object is replaced only by a version with a greater or
//! equal resourceVersion. That lets a controller put the objects its own writes returned into
//! the cache at once ([`Informer::observe_write`]) — the scheduler's "assume" step — without
//! a late watch event of an older version undoing it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use proxylab_apimachinery::meta;
use proxylab_store::{EventType, Store, StoreError};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

type CacheKey = (String, String);

/// A list + watch loop and its cache for one store resource.
pub struct Informer {
    resource: &'static str,
    cache: RwLock<BTreeMap<CacheKey, Value>>,
    synced: AtomicBool,
    subscribers: Mutex<Vec<Arc<Notify>>>,
}

impl std::fmt::Debug for Informer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer")
            .field("resource", &self.resource)
            .field("objects", &self.cache.read().len())
            .field("synced", &self.has_synced())
            .finish()
    }
}

fn key_of(v: &Value) -> CacheKey {
    (
        meta::namespace(v).unwrap_or("").to_string(),
        meta::name(v).unwrap_or("").to_string(),
    )
}

impl Informer {
    pub fn new(resource: &'static str) -> Arc<Self> {
        Arc::new(Informer {
            resource,
            cache: RwLock::new(BTreeMap::new()),
            synced: AtomicBool::new(false),
            subscribers: Mutex::new(Vec::new()),
        })
    }

    pub fn resource(&self) -> &'static str {
        self.resource
    }

    /// True once the first list has filled the cache. Controllers act only on synced caches:
    /// an empty cache before the first list would look like "everything was deleted".
    pub fn has_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Wake `notify` on every change (and on each (re)list).
    pub fn subscribe(&self, notify: Arc<Notify>) {
        self.subscribers.lock().push(notify);
    }

    /// A copy of the cached objects, sorted by (namespace, name).
    pub fn snapshot(&self) -> Vec<Value> {
        self.cache.read().values().cloned().collect()
    }

    fn notify_all(&self) {
        for n in self.subscribers.lock().iter() {
            n.notify_one();
        }
    }

    /// Puts an object returned by a successful create/update into the cache if it is newer
    /// than what is there.
    pub fn observe_write(&self, object: &Value) {
        let rv = meta::resource_version_u64(object).unwrap_or(0);
        let mut cache = self.cache.write();
        let key = key_of(object);
        let newer = cache
            .get(&key)
            .is_none_or(|old| meta::resource_version_u64(old).unwrap_or(0) <= rv);
        if newer {
            cache.insert(key, object.clone());
        }
    }

    /// Removes an object this controller just deleted.
    pub fn observe_delete(&self, namespace: Option<&str>, name: &str) {
        self.cache
            .write()
            .remove(&(namespace.unwrap_or("").to_string(), name.to_string()));
    }

    fn apply(&self, event_type: EventType, object: &Value, event_rv: u64) {
        let key = key_of(object);
        let mut cache = self.cache.write();
        let cached_rv = cache.get(&key).and_then(meta::resource_version_u64);
        if cached_rv.is_some_and(|c| c > event_rv) {
            // Our own write-through is already newer than this event.
            return;
        }
        match event_type {
            EventType::Added | EventType::Modified => {
                cache.insert(key, object.clone());
            }
            EventType::Deleted => {
                cache.remove(&key);
            }
        }
    }

    /// The list + watch loop; returns when `shutdown` is cancelled.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, shutdown: CancellationToken) {
        // Back-off between failed lists, as reflectors do (capped; reset after a good list).
        let mut backoff = Duration::from_millis(50);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let (items, rv) = match store.list(self.resource, None) {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(resource = self.resource, error = %e, "list failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            {
                let mut cache = self.cache.write();
                *cache = items.into_iter().map(|o| (key_of(&o), o)).collect();
            }
            self.synced.store(true, Ordering::Release);
            self.notify_all();

            let mut rx = match store.watch(self.resource, None, rv) {
                Ok(rx) => rx,
                Err(StoreError::Expired { .. }) => {
                    tracing::debug!(resource = self.resource, "watch start expired; re-listing");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(resource = self.resource, error = %e, "watch failed; re-listing");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    ev = rx.recv() => match ev {
                        Some(ev) => {
                            self.apply(ev.event_type, &ev.object, ev.resource_version);
                            self.notify_all();
                        }
                        None => {
                            tracing::debug!(resource = self.resource, "watch ended; re-listing");
                            break;
                        }
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxylab_store::{MemoryStore, ObjectKey};
    use serde_json::json;

    fn pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}})
    }

    async fn wait_for(inf: &Informer, notify: &Notify, pred: impl Fn(&[Value]) -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !(inf.has_synced() && pred(&inf.snapshot())) {
                notify.notified().await;
            }
        })
        .await
        .expect("informer did not reach the expected state");
    }

    #[tokio::test]
    async fn lists_then_follows_the_watch() {
        // A history of 2 events: a watcher that falls behind must re-list.
        let store = Arc::new(MemoryStore::new(2));
        let key = |n: &str| ObjectKey::new("pods", Some("default"), n);
        store.create(&key("a"), pod("a")).unwrap();
        let inf = Informer::new("pods");
        let notify = Arc::new(Notify::new());
        inf.subscribe(notify.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(inf.clone().run(store.clone(), shutdown.clone()));
        wait_for(&inf, &notify, |s| s.len() == 1).await;

        store.create(&key("b"), pod("b")).unwrap();
        store.delete(&key("a"), None).unwrap();
        wait_for(&inf, &notify, |s| {
            s.len() == 1 && meta::name(&s[0]).unwrap_or("") == "b"
        })
        .await;

        // Many writes at once: whatever the store does with this watcher, the cache converges.
        for i in 0..50 {
            store
                .create(&key(&format!("p{i:02}")), pod(&format!("p{i:02}")))
                .unwrap();
        }
        wait_for(&inf, &notify, |s| s.len() == 51).await;
        shutdown.cancel();
        task.await.unwrap();
    }

    /// A store whose first watch is refused as Expired and whose second ends at once.
    struct FlakyStore {
        inner: MemoryStore,
        watches: Mutex<u32>,
        lists: Mutex<u32>,
    }

    impl Store for FlakyStore {
        fn get(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
            self.inner.get(key)
        }
        fn list(
            &self,
            resource: &str,
            namespace: Option<&str>,
        ) -> Result<(Vec<Value>, u64), StoreError> {
            *self.lists.lock() += 1;
            self.inner.list(resource, namespace)
        }
        fn create(&self, key: &ObjectKey, obj: Value) -> Result<Value, StoreError> {
            self.inner.create(key, obj)
        }
        fn update(
            &self,
            key: &ObjectKey,
            obj: Value,
            rv: Option<u64>,
        ) -> Result<Value, StoreError> {
            self.inner.update(key, obj, rv)
        }
        fn delete(&self, key: &ObjectKey, rv: Option<u64>) -> Result<Value, StoreError> {
            self.inner.delete(key, rv)
        }
        fn watch(
            &self,
            resource: &str,
            namespace: Option<&str>,
            since: u64,
        ) -> Result<tokio::sync::mpsc::Receiver<proxylab_store::WatchEvent>, StoreError> {
            let n = {
                let mut w = self.watches.lock();
                *w += 1;
                *w
            };
            match n {
                1 => Err(StoreError::Expired { oldest: since + 1 }),
                2 => Ok(tokio::sync::mpsc::channel(1).1),
                _ => self.inner.watch(resource, namespace, since),
            }
        }
        fn current_resource_version(&self) -> u64 {
            self.inner.current_resource_version()
        }
    }

    #[tokio::test]
    async fn relists_when_the_watch_expires_or_ends() {
        let store = Arc::new(FlakyStore {
            inner: MemoryStore::new(100),
            watches: Mutex::new(0),
            lists: Mutex::new(0),
        });
        let inf = Informer::new("pods");
        let notify = Arc::new(Notify::new());
        inf.subscribe(notify.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(inf.clone().run(store.clone(), shutdown.clone()));
        // Only the third watch is real; an object created now must still arrive.
        store
            .create(
                &ObjectKey::new("pods", Some("default"), "late"),
                pod("late"),
            )
            .unwrap();
        wait_for(&inf, &notify, |s| s.len() == 1).await;
        // Bounded polling: the third watch call has no event of its own to wait on.
        tokio::time::timeout(Duration::from_secs(10), async {
            while *store.watches.lock() < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        // And the real watch delivers.
        store
            .create(
                &ObjectKey::new("pods", Some("default"), "later"),
                pod("later"),
            )
            .unwrap();
        wait_for(&inf, &notify, |s| s.len() == 2).await;
        assert!(
            *store.lists.lock() >= 3,
            "each failed watch is followed by a list"
        );
        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn write_through_is_not_undone_by_older_events() {
        let inf = Informer::new("pods");
        let mut newer = pod("a");
        newer["metadata"]["resourceVersion"] = json!("9");
        inf.observe_write(&newer);
        let mut older = pod("a");
        older["metadata"]["resourceVersion"] = json!("5");
        inf.apply(EventType::Modified, &older, 5);
        assert_eq!(inf.snapshot()[0]["metadata"]["resourceVersion"], "9");
        inf.observe_write(&older);
        assert_eq!(inf.snapshot()[0]["metadata"]["resourceVersion"], "9");
        inf.apply(EventType::Deleted, &newer, 10);
        assert!(inf.snapshot().is_empty());
    }
}
