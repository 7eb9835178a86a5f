//! The etcd store on a real etcd (Debian's `etcd-server`): the same cases as the memory store
//! (`proxylab_store::testsuite`), then what only a networked store can get wrong — an unreachable
//! etcd, etcd going away under open watches, and two stores (two apiservers) on one etcd.

use std::sync::Arc;
use std::time::Duration;

use proxylab_store::testsuite::Subject;
use proxylab_store::{EventType, ObjectKey, Store, StoreError};
use proxylab_store_etcd::{EtcdConfig, EtcdError, EtcdStore};
use proxylab_test_support::etcd::{self, Etcd};
use serde_json::json;

fn connect(etcd: &Etcd) -> EtcdStore {
    EtcdStore::connect(EtcdConfig::new(vec![etcd.url.clone()])).expect("connect to the test etcd")
}

fn etcd_subject() -> Option<Subject> {
    let etcd = etcd::start()?;
    let store = Arc::new(connect(&etcd));
    let compacting = store.clone();
    Some(Subject {
        store,
        compact: Box::new(move |rv| compacting.compact(rv).expect("compact")),
        guard: Box::new(etcd),
    })
}

proxylab_store::store_conformance_tests!(etcd_subject());

fn pod(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "d"}})
}

#[test]
fn an_unreachable_etcd_is_a_clear_error_at_connect() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = EtcdConfig::new(vec![format!("http://127.0.0.1:{port}")]);
    config.startup_wait = Duration::ZERO;
    let err = EtcdStore::connect(config).unwrap_err();
    assert!(matches!(err, EtcdError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("etcd http://127.0.0.1:{port}: no answer within")),
        "{text}"
    );
    assert!(text.contains("cannot connect"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_going_away_is_an_error_and_ends_watches() {
    let Some(mut etcd) = etcd::start() else {
        return;
    };
    let store = connect(&etcd);
    let k = ObjectKey::new("pods", Some("d"), "p");
    store.create(&k, pod("p")).unwrap();
    let mut rx = store
        .watch("pods", None, store.current_resource_version())
        .unwrap();
    etcd.kill();
    // The open watch ends (its client re-lists), and every call is an Internal error, no panic.
    assert!(rx.recv().await.is_none());
    for r in [
        store.get(&k).map(|_| ()),
        store.list("pods", None).map(|_| ()),
        store
            .create(&ObjectKey::new("pods", Some("d"), "q"), pod("q"))
            .map(|_| ()),
        store.update(&k, pod("p"), Some(2)).map(|_| ()),
        store.delete(&k, None).map(|_| ()),
        store.watch("pods", None, 0).map(|_| ()),
    ] {
        match r {
            Err(StoreError::Internal(m)) => {
                assert!(m.starts_with(&format!("etcd {}: ", etcd.url)), "{m}")
            }
            other => panic!("expected an Internal error, got {other:?}"),
        }
    }
    // The last version seen stands in for the current one.
    assert!(store.current_resource_version() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_etcd_share_objects_versions_and_watches() {
    let Some(etcd) = etcd::start() else { return };
    let (one, two) = (connect(&etcd), connect(&etcd));
    let base = two.current_resource_version();
    let mut rx = two.watch("pods", Some("d"), base).unwrap();
    let k = ObjectKey::new("pods", Some("d"), "p");
    let created = one.create(&k, pod("p")).unwrap();
    let e = rx.recv().await.unwrap();
    assert_eq!(e.event_type, EventType::Added);
    assert_eq!(*e.object, created);
    assert_eq!(two.get(&k).unwrap(), Some(created.clone()));
    // A write through one makes the other's copy stale: compare-and-swap across processes.
    let rv = e.resource_version;
    two.update(&k, pod("p"), Some(rv)).unwrap();
    assert_eq!(
        one.update(&k, pod("p"), Some(rv)),
        Err(StoreError::Conflict { current: rv + 1 })
    );
    assert_eq!(one.create(&k, pod("p")), Err(StoreError::AlreadyExists));
    assert_eq!(rx.recv().await.unwrap().event_type, EventType::Modified);
}

#[test]
fn keys_are_laid_out_as_kube_apiserver_does() {
    let Some(etcd) = etcd::start() else { return };
    let store = connect(&etcd);
    store
        .create(&ObjectKey::new("pods", Some("d"), "p"), pod("p"))
        .unwrap();
    store
        .create(
            &ObjectKey::new("nodes", None, "n1"),
            json!({"metadata": {"name": "n1", "resourceVersion": "77"}}),
        )
        .unwrap();
    // Read etcd directly through its JSON gateway: the keys, and values without resourceVersion.
    let body = r#"{"key":"Lw==","range_end":"MA=="}"#; // "/" .. "0": every key
    let req = format!(
        "POST /v3/kv/range HTTP/1.1\r\nHost: etcd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw = rt.block_on(proxylab_test_support::http::raw_exchange(etcd.addr, &req));
    let answer: serde_json::Value =
        serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap();
    use base64::Engine as _;
    let d = |v: &serde_json::Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    let kvs: Vec<(String, String)> = answer["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (d(&kv["key"]), d(&kv["value"])))
        .collect();
    assert_eq!(
        kvs,
        [
            (
                "/registry/nodes/n1".to_string(),
                r#"{"metadata":{"name":"n1"}}"#.to_string()
            ),
            (
                "/registry/pods/d/p".to_string(),
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"d"}}"#
                    .to_string()
            ),
        ]
    );
}
