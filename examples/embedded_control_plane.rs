//! A Kubernetes control plane inside your own program: one in-memory store, an apiserver front-end on
//! plain HTTP with a static token, and the controllers. Creates a Service, sends an invalid one, and
//! shows what admission (ClusterIP allocation), validation (422 with causes) and the EndpointSlice
//! controller did — all over the real REST API.
//!
//!     cargo run --example embedded_control_plane

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proxylab_apiserver::auth::TokenEntry;
use proxylab_apiserver::{ApiServer, ApiServerConfig};
use proxylab_controllers::{ControllerManager, ControllersConfig, EnabledControllers};
use proxylab_store::{MemoryStore, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    proxylab_core::tls::install_crypto_provider();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(10_000));

    let mut config = ApiServerConfig::new(vec!["127.0.0.1:0".parse()?]);
    config.static_tokens = vec![TokenEntry {
        token: "demo-token".into(),
        user: "demo".into(),
        uid: "1".into(),
        groups: vec!["system:masters".into()],
    }];
    let apiserver = ApiServer::bind(config, store.clone()).await?;
    let addr = apiserver.local_addrs()[0];
    let shutdown = CancellationToken::new();
    tokio::spawn(apiserver.serve(shutdown.clone()));

    // Everything but the token controller (it needs a signing key, which this example does not make).
    let controllers = ControllerManager::new(
        store.clone(),
        ControllersConfig {
            enabled: EnabledControllers {
                tokens: false,
                ..EnabledControllers::default()
            },
            ..ControllersConfig::default()
        },
    )?;
    tokio::spawn(controllers.run(shutdown.clone()));

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let call = |method: &str, path: &str, body: Option<Value>| {
        let client = client.clone();
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("authorization", "Bearer demo-token")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )));
        async move {
            let resp = client.request(req?).await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, serde_json::from_slice::<Value>(&bytes)?))
        }
    };

    // The bootstrap creates `default`; wait for it as a client would.
    while call("GET", "/api/v1/namespaces/default", None).await?.0 != 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, svc) = call(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        })),
    )
    .await?;
    println!(
        "POST service: {status}; admission allocated clusterIP {}",
        svc["spec"]["clusterIP"]
    );

    let (status, bad) = call(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "Bad_Name"},
            "spec": {"ports": [{"port": 70000}]}
        })),
    )
    .await?;
    println!("POST invalid service: {status} {}", bad["message"]);

    let (_, list) = call(
        "GET",
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
        None,
    )
    .await?;
    for slice in list["items"].as_array().into_iter().flatten() {
        println!(
            "EndpointSlice {} for service {} with {} endpoints",
            slice["metadata"]["name"],
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            slice["endpoints"].as_array().map_or(0, Vec::len)
        );
    }
    shutdown.cancel();
    Ok(())
}
