//! The behaviour every [`Store`] must have, as tests any backend can run (feature `testsuite`).
//!
//! The apiserver, its allocator and the controllers rely on these properties whichever store is
//! behind them, so the memory store and the etcd store run the *same* cases:
//! [`store_conformance_tests!`](crate::store_conformance_tests) expands to one `#[tokio::test]` per
//! case, given an expression that makes a fresh, empty [`Subject`] (or `None` to skip, when the
//! backend's engine is missing outside CI).
//!
//! Versions are asserted relative to the store's version when the case starts (etcd's first write
//! is revision 2, the memory store's is 1), but strictly: one write is one version, across all
//! resources, as with etcd's single revision counter.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::{EventType, ObjectKey, Store, StoreError};

/// A fresh, empty store under test and its backend's compaction.
pub struct Subject {
    pub store: Arc<dyn Store>,
    /// Drops the history before a revision (etcd's compaction): a watch from before
    /// `revision - 1` must then fail with [`StoreError::Expired`].
    pub compact: Box<dyn Fn(u64) + Send + Sync>,
    /// Whatever must live as long as the store (a test etcd process).
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

/// One `#[tokio::test]` per case of this module, each on a fresh [`Subject`] made by `$make`
/// (an expression of type `Option<Subject>`; `None` skips).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@cases $make;
            create_get_list_sorted_and_global_rv,
            conflict_on_stale_rv,
            missing_objects_are_not_found_whatever_the_precondition,
            non_object_rejected,
            watch_replays_then_goes_live,
            watch_namespace_filter,
            expired_after_compaction,
            concurrent_writers_get_unique_increasing_versions,
            contended_key_conflicts_are_detected,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let subject: Option<$crate::testsuite::Subject> = $make;
                if let Some(subject) = subject {
                    $crate::testsuite::$case(&subject).await;
                }
            }
        )*
    };
}

fn pod(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}})
}

fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("resourceVersion")
}

fn pods(ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new("pods", Some(ns), name)
}

pub async fn create_get_list_sorted_and_global_rv(t: &Subject) {
    let s = &t.store;
    let base = s.current_resource_version();
    let a = s.create(&pods("b", "x"), pod("b", "x")).unwrap();
    let b = s.create(&pods("a", "y"), pod("a", "y")).unwrap();
    let n = s
        .create(
            &ObjectKey::new("nodes", None, "n1"),
            json!({"metadata": {"name": "n1"}}),
        )
        .unwrap();
    // "a-b" sorts after "a" by namespace, though its etcd key `/pods/a-b/` sorts before `/pods/a/`.
    let c = s.create(&pods("a-b", "w"), pod("a-b", "w")).unwrap();
    assert_eq!(
        (rv_of(&a), rv_of(&b), rv_of(&n), rv_of(&c)),
        (base + 1, base + 2, base + 3, base + 4)
    );
    assert_eq!(
        s.create(&pods("a", "y"), pod("a", "y")),
        Err(StoreError::AlreadyExists)
    );
    let (items, rv) = s.list("pods", None).unwrap();
    assert_eq!(rv, base + 4);
    let names: Vec<_> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["y", "w", "x"]);
    let (items, _) = s.list("pods", Some("b")).unwrap();
    assert_eq!(items, std::slice::from_ref(&a));
    let (items, _) = s.list("pods", Some("a")).unwrap();
    assert_eq!(items, [b]);
    assert_eq!(s.list("services", None).unwrap().0.len(), 0);
    assert_eq!(s.get(&pods("b", "x")).unwrap(), Some(a));
    assert_eq!(s.get(&pods("a", "x")).unwrap(), None);
    let (nodes, _) = s.list("nodes", None).unwrap();
    assert_eq!(nodes, [n]);
    assert_eq!(s.current_resource_version(), base + 4);
}

pub async fn conflict_on_stale_rv(t: &Subject) {
    let s = &t.store;
    let k = pods("d", "p");
    let v1 = s.create(&k, pod("d", "p")).unwrap();
    let r1 = rv_of(&v1);
    let v2 = s.update(&k, v1.clone(), Some(r1)).unwrap();
    assert_eq!(rv_of(&v2), r1 + 1);
    assert_eq!(s.get(&k).unwrap(), Some(v2));
    assert_eq!(
        s.update(&k, v1.clone(), Some(r1)),
        Err(StoreError::Conflict { current: r1 + 1 })
    );
    assert_eq!(
        s.delete(&k, Some(r1)),
        Err(StoreError::Conflict { current: r1 + 1 })
    );
    // An unconditional update still works.
    assert_eq!(rv_of(&s.update(&k, v1, None).unwrap()), r1 + 2);
    let gone = s.delete(&k, Some(r1 + 2)).unwrap();
    // The deleted object comes back with the deletion's version.
    assert_eq!(rv_of(&gone), r1 + 3);
    assert_eq!(gone["metadata"]["name"], "p");
    assert_eq!(s.get(&k).unwrap(), None);
    assert_eq!(s.delete(&k, None), Err(StoreError::NotFound));
    assert_eq!(s.update(&k, pod("d", "p"), None), Err(StoreError::NotFound));
    // A deleted name can be created again.
    assert_eq!(rv_of(&s.create(&k, pod("d", "p")).unwrap()), r1 + 4);
}

pub async fn missing_objects_are_not_found_whatever_the_precondition(t: &Subject) {
    let s = &t.store;
    let k = pods("d", "never");
    let base = s.current_resource_version();
    for pre in [None, Some(0), Some(base), Some(base + 1)] {
        assert_eq!(
            s.update(&k, pod("d", "never"), pre),
            Err(StoreError::NotFound)
        );
        assert_eq!(s.delete(&k, pre), Err(StoreError::NotFound));
    }
    // Nothing was written.
    assert_eq!(s.get(&k).unwrap(), None);
    assert_eq!(s.current_resource_version(), base);
}

pub async fn non_object_rejected(t: &Subject) {
    let s = &t.store;
    let base = s.current_resource_version();
    let r = s.create(&pods("d", "p"), json!([1]));
    assert!(matches!(r, Err(StoreError::Internal(_))), "{r:?}");
    assert_eq!(s.current_resource_version(), base);
}

pub async fn watch_replays_then_goes_live(t: &Subject) {
    let s = &t.store;
    let k = pods("d", "p");
    let v = s.create(&k, pod("d", "p")).unwrap();
    let r1 = rv_of(&v);
    s.update(&k, v, None).unwrap(); // r1 + 1
    s.create(&ObjectKey::new("services", Some("d"), "s"), pod("d", "s"))
        .unwrap(); // r1 + 2
    let mut rx = s.watch("pods", None, r1).unwrap();
    let e = rx.recv().await.unwrap();
    assert_eq!(
        (e.event_type, e.resource_version),
        (EventType::Modified, r1 + 1)
    );
    assert_eq!(rv_of(&e.object), r1 + 1);
    assert_eq!(e.prev_object.as_deref().map(rv_of), Some(r1));
    s.delete(&k, None).unwrap(); // r1 + 3
    let e = rx.recv().await.unwrap();
    assert_eq!(
        (e.event_type, e.resource_version),
        (EventType::Deleted, r1 + 3)
    );
    assert_eq!(rv_of(&e.object), r1 + 3);
    assert_eq!(e.prev_object.as_deref().map(rv_of), Some(r1 + 1));
    s.create(&k, pod("d", "p")).unwrap(); // r1 + 4
    let e = rx.recv().await.unwrap();
    assert_eq!(
        (e.event_type, e.resource_version),
        (EventType::Added, r1 + 4)
    );
    assert!(e.prev_object.is_none());
    assert!(rx.try_recv().is_err());
    // From the start of what is kept: the whole story of the pod, in order.
    let mut all = s.watch("pods", None, r1 - 1).unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let e = all.recv().await.unwrap();
        seen.push((e.event_type, e.resource_version));
    }
    assert_eq!(
        seen,
        [
            (EventType::Added, r1),
            (EventType::Modified, r1 + 1),
            (EventType::Deleted, r1 + 3),
            (EventType::Added, r1 + 4)
        ]
    );
}

pub async fn watch_namespace_filter(t: &Subject) {
    let s = &t.store;
    let base = s.current_resource_version();
    let mut rx = s.watch("pods", Some("a"), base).unwrap();
    s.create(&pods("b", "x"), pod("b", "x")).unwrap();
    s.create(&pods("ab", "z"), pod("ab", "z")).unwrap();
    s.create(&pods("a", "y"), pod("a", "y")).unwrap();
    let e = rx.recv().await.unwrap();
    assert_eq!(e.object["metadata"]["name"], "y");
    assert!(rx.try_recv().is_err());
    // The replay is filtered by namespace too.
    let mut rx2 = s.watch("pods", Some("b"), base).unwrap();
    assert_eq!(rx2.recv().await.unwrap().object["metadata"]["name"], "x");
    assert!(rx2.try_recv().is_err());
}

pub async fn expired_after_compaction(t: &Subject) {
    let s = &t.store;
    let mut rvs = Vec::new();
    for i in 0..5 {
        let o = s
            .create(&pods("d", &format!("p{i}")), pod("d", "p"))
            .unwrap();
        rvs.push(rv_of(&o));
    }
    // Keep the history from the fourth write on.
    (t.compact)(rvs[3]);
    assert_eq!(
        s.watch("pods", None, rvs[1]).unwrap_err(),
        StoreError::Expired { oldest: rvs[2] }
    );
    let mut rx = s.watch("pods", None, rvs[2]).unwrap();
    assert_eq!(rx.recv().await.unwrap().resource_version, rvs[3]);
    assert_eq!(rx.recv().await.unwrap().resource_version, rvs[4]);
    assert!(s.watch("pods", None, rvs[4]).is_ok());
    // The objects themselves are all still there: compaction drops history, not state.
    assert_eq!(s.list("pods", None).unwrap().0.len(), 5);
}

pub async fn concurrent_writers_get_unique_increasing_versions(t: &Subject) {
    const THREADS: usize = 4;
    const UPDATES: usize = 25;
    let s = t.store.clone();
    let base = s.current_resource_version();
    let mut rx = s.watch("pods", None, base).unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                let k = pods("d", &format!("t{i}"));
                s.create(&k, pod("d", "x")).unwrap();
                let mut conflicts = 0;
                for _ in 0..UPDATES {
                    let cur = s.get(&k).unwrap().unwrap();
                    if s.update(&k, cur.clone(), Some(rv_of(&cur))).is_err() {
                        conflicts += 1;
                    }
                }
                conflicts
            })
        })
        .collect();
    for h in handles {
        // Each thread owns its key, so there are no conflicts.
        assert_eq!(h.join().unwrap(), 0);
    }
    let writes = (THREADS * (UPDATES + 1)) as u64;
    assert_eq!(s.current_resource_version(), base + writes);
    let mut last = base;
    for _ in 0..writes {
        let e = rx.recv().await.unwrap();
        assert_eq!(e.resource_version, last + 1);
        last = e.resource_version;
    }
}

pub async fn contended_key_conflicts_are_detected(t: &Subject) {
    const THREADS: usize = 4;
    const INCREMENTS: u64 = 20;
    let s = t.store.clone();
    let k = pods("d", "shared");
    s.create(&k, json!({"metadata": {"name": "shared"}, "n": 0}))
        .unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let s = s.clone();
            let k = k.clone();
            std::thread::spawn(move || {
                for _ in 0..INCREMENTS {
                    loop {
                        let mut cur = s.get(&k).unwrap().unwrap();
                        let rv = rv_of(&cur);
                        let n = cur["n"].as_u64().unwrap();
                        cur["n"] = json!(n + 1);
                        match s.update(&k, cur, Some(rv)) {
                            Ok(_) => break,
                            Err(StoreError::Conflict { current }) => assert!(current > rv),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Optimistic concurrency: no lost updates.
    assert_eq!(
        s.get(&k).unwrap().unwrap()["n"],
        THREADS as u64 * INCREMENTS
    );
}
