//! Several front-ends over one store (the lab's three apiservers): consistent allocation under
//! concurrency, shared watches, and the `kubernetes` endpoints listing every front-end.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use proxylab_apiserver::ApiServer;
use proxylab_store::MemoryStore;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frontends_allocate_unique_ips_and_ports_concurrently() {
    let store = Arc::new(MemoryStore::new(10_000));
    let mut a_cfg = config();
    a_cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let mut b_cfg = config();
    b_cfg.listen = vec!["127.0.0.2:0".parse().unwrap()];
    let a = ApiServer::bind(a_cfg, store.clone()).await.unwrap();
    let b = ApiServer::bind(b_cfg, store.clone()).await.unwrap();
    let labs = [
        Lab {
            router: a.router(),
            store: store.clone(),
            bound: a,
        },
        Lab {
            router: b.router(),
            store: store.clone(),
            bound: b,
        },
    ];
    let labs = Arc::new(labs);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let labs = labs.clone();
        tasks.push(tokio::spawn(async move {
            let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("s{i}")},
                "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
            let r = labs[i % 2].call("POST", "/api/v1/namespaces/default/services", Some(svc)).await;
            assert_eq!(r.status, 201, "{}", r.text());
            let v = r.json();
            (
                v["spec"]["clusterIP"].as_str().unwrap().to_owned(),
                v["spec"]["ports"][0]["nodePort"].as_u64().unwrap(),
            )
        }));
    }
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for t in tasks {
        let (ip, port) = t.await.unwrap();
        assert!(ips.insert(ip.clone()), "duplicate ClusterIP {ip}");
        assert!(ports.insert(port), "duplicate nodePort {port}");
    }
    // both front-ends are in the kubernetes endpoints
    let ep = labs[0]
        .call(
            "GET",
            "/api/v1/namespaces/default/endpoints/kubernetes",
            None,
        )
        .await
        .json();
    let addrs: Vec<&str> = ep["subsets"][0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ip"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, ["127.0.0.1", "127.0.0.2"]);
    let slice = labs[1]
        .call(
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes",
            None,
        )
        .await
        .json();
    assert_eq!(slice["endpoints"].as_array().unwrap().len(), 2);
    // a write through one front-end is seen through the other
    let (_, mut body) = labs[1]
        .watch("/api/v1/namespaces/default/configmaps?watch=true")
        .await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    labs[0]
        .call("POST", "/api/v1/namespaces/default/configmaps", Some(cm))
        .await;
    let mut buf = Vec::new();
    assert_eq!(
        next_event(&mut body, &mut buf).await.unwrap()["object"]["metadata"]["name"],
        "x"
    );
}

#[tokio::test]
async fn a_front_end_withdraws_from_the_kubernetes_endpoints_on_shutdown() {
    let store = Arc::new(MemoryStore::new(1000));
    let mut a_cfg = config();
    a_cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let mut b_cfg = config();
    b_cfg.listen = vec!["127.0.0.3:0".parse().unwrap()];
    let a = ApiServer::bind(a_cfg, store.clone()).await.unwrap();
    let b = ApiServer::bind(b_cfg, store.clone()).await.unwrap();
    let a_router = a.router();
    let stop_b = tokio_util::sync::CancellationToken::new();
    let serving_b = tokio::spawn(b.serve(stop_b.clone()));
    stop_b.cancel();
    serving_b.await.unwrap().unwrap();
    let lab = Lab {
        router: a_router,
        store: store.clone(),
        bound: a,
    };
    let ep = lab
        .call(
            "GET",
            "/api/v1/namespaces/default/endpoints/kubernetes",
            None,
        )
        .await
        .json();
    let addrs: Vec<&str> = ep["subsets"][0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ip"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, ["127.0.0.1"]);
    let slice = lab
        .call(
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes",
            None,
        )
        .await
        .json();
    assert_eq!(slice["endpoints"].as_array().unwrap().len(), 1);
}

/// The lab's failure drill: one listen address of a server stopped as a crash would stop it (its
/// listener closes, its watches are cut without a graceful end) while the other serves on, then
/// started again on the same address.
#[tokio::test]
async fn a_switch_stops_one_listener_like_a_crash_and_starts_it_again() {
    use proxylab_apiserver::SwitchError;
    use proxylab_test_support::http::{raw_exchange, read_head};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let store = Arc::new(MemoryStore::new(1000));
    let mut cfg = config();
    cfg.listen = vec![
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.4:0".parse().unwrap(),
    ];
    let bound = ApiServer::bind(cfg, store).await.unwrap();
    let addrs = bound.local_addrs();
    let switches = bound.switches();
    assert_eq!(switches.iter().map(|s| s.addr()).collect::<Vec<_>>(), addrs);
    let stop = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(bound.serve(stop.clone()));
    let readyz = |addr| async move {
        raw_exchange(
            addr,
            "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
    };
    proxylab_test_support::eventually_async("both listeners answer", || async {
        switches.iter().all(|s| s.is_running())
    })
    .await;
    assert!(readyz(addrs[1]).await.starts_with("HTTP/1.1 200"));

    // A watch on the second address, streaming (bookmarks every 50 ms).
    let mut watch = tokio::net::TcpStream::connect(addrs[1]).await.unwrap();
    watch
        .write_all(
            format!(
                "GET /api/v1/namespaces/default/configmaps?watch=true&allowWatchBookmarks=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert!(read_head(&mut watch).await.starts_with("HTTP/1.1 200"));

    switches[1].stop().await.unwrap();
    assert!(!switches[1].is_running());
    // The watch ends without the chunked body's last chunk: cut, not finished.
    let mut rest = Vec::new();
    let _ = watch.read_to_end(&mut rest).await;
    assert!(
        !rest.ends_with(b"0\r\n\r\n"),
        "the watch was ended gracefully"
    );
    assert!(tokio::net::TcpStream::connect(addrs[1]).await.is_err());
    assert!(readyz(addrs[0]).await.starts_with("HTTP/1.1 200"));
    assert!(matches!(
        switches[1].stop().await,
        Err(SwitchError::NotRunning(_))
    ));

    switches[1].start().await.unwrap();
    assert!(switches[1].is_running());
    assert!(readyz(addrs[1]).await.starts_with("HTTP/1.1 200"));
    assert!(matches!(
        switches[1].start().await,
        Err(SwitchError::AlreadyRunning(_))
    ));

    stop.cancel();
    served.await.unwrap().unwrap();
    assert!(matches!(
        switches[0].start().await,
        Err(SwitchError::ShuttingDown)
    ));
}
