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
