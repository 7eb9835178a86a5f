//! The workload controllers (ReplicaSet, garbage collector) running against a real
//! `MemoryStore`: objects are written as the apiserver would write them, and the test waits on
//! store watches, bounded by a timeout, for the controllers' answer.

use std::sync::Arc;
use std::time::Duration;

use proxylab_controllers::{ControllerManager, ControllersConfig, EnabledControllers};
use proxylab_store::{MemoryStore, ObjectKey, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const RS: &str = "replicasets.apps";

fn start(store: Arc<MemoryStore>) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let config = ControllersConfig {
        enabled: EnabledControllers {
            replica_sets: true,
            garbage_collector: true,
            ..EnabledControllers::none()
        },
        ..ControllersConfig::default()
    };
    let manager = ControllerManager::new(store, config).expect("valid config");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(manager.run(shutdown.clone()));
    (shutdown, task)
}

fn replicaset(uid: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default", "uid": uid, "generation": 1,
                     "creationTimestamp": "2026-11-28T09:00:00Z"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "proxylab/echo-http"}]}}},
        "status": {}})
}

/// Waits (on a watch, at most 10 s) until `pred` holds for the pods.
async fn wait_pods(store: &MemoryStore, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let wait = async {
        loop {
            let (items, rv) = store.list("pods", None).unwrap();
            if pred(&items) {
                return items;
            }
            let Ok(mut rx) = store.watch("pods", None, rv) else {
                continue;
            };
            while rx.recv().await.is_some() {
                let (items, _) = store.list("pods", None).unwrap();
                if pred(&items) {
                    return items;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "timed out waiting for {what}: {:#?}",
                store.list("pods", None)
            )
        })
}

fn owner_uid(p: &Value) -> &str {
    p["metadata"]["ownerReferences"][0]["uid"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn a_replicaset_makes_its_pods_and_the_collector_removes_them_with_it() {
    let store = Arc::new(MemoryStore::new(10_000));
    let (shutdown, task) = start(store.clone());
    let key = ObjectKey::new(RS, Some("default"), "web");
    store.create(&key, replicaset("uid-1", 3)).unwrap();
    let pods = wait_pods(&store, "3 pods", |p| p.len() == 3).await;
    for p in &pods {
        assert!(p["metadata"]["name"].as_str().unwrap().starts_with("web-"));
        assert_eq!(owner_uid(p), "uid-1");
    }

    // Deleted and created again under the same name before the collector ran: the new set is
    // another owner (another uid), so the old Pods are collected and the new set makes its own.
    store.delete(&key, None).unwrap();
    store.create(&key, replicaset("uid-2", 2)).unwrap();
    wait_pods(&store, "only the new set's 2 pods", |p| {
        p.len() == 2 && p.iter().all(|p| owner_uid(p) == "uid-2")
    })
    .await;

    // Gone for good: its Pods follow.
    store.delete(&key, None).unwrap();
    wait_pods(&store, "no pods", |p| p.is_empty()).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic");
}
