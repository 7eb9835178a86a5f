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
    let story = demo().await?;
    println!(
        "POST service: {}; admission allocated clusterIP {}",
        story.created, story.cluster_ip
    );
    println!(
        "POST invalid service: {} {:?}",
        story.invalid, story.invalid_message
    );
    for (name, service, endpoints) in &story.slices {
        println!("EndpointSlice {name} for service {service} with {endpoints} endpoints");
    }
    Ok(())
}

/// What the control plane answered.
#[derive(Debug)]
pub struct Story {
    /// The status of the valid Service's POST, and the ClusterIP admission gave it.
    pub created: u16,
    pub cluster_ip: String,
    /// The status and message of the invalid Service's POST.
    pub invalid: u16,
    pub invalid_message: String,
    /// The EndpointSlices of `default`: name, service (label), number of endpoints.
    pub slices: Vec<(String, String, usize)>,
}

/// Starts the control plane, makes the calls, stops it.
pub async fn demo() -> anyhow::Result<Story> {
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
    let created = status.as_u16();
    let cluster_ip = svc["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let (status, bad) = call(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "Bad_Name"},
            "spec": {"ports": [{"port": 70000}]}
        })),
    )
    .await?;
    let invalid = status.as_u16();
    let invalid_message = bad["message"].as_str().unwrap_or_default().to_owned();

    // The EndpointSlice controller reacts to the new Service on its own schedule: ask until its
    // slice is there (it has no endpoints: no pod matches the selector).
    let mut slices = Vec::new();
    for _ in 0..2000 {
        let (_, list) = call(
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
            None,
        )
        .await?;
        slices = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|slice| {
                (
                    slice["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    slice["metadata"]["labels"]["kubernetes.io/service-name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    slice["endpoints"].as_array().map_or(0, Vec::len),
                )
            })
            .collect();
        if slices.iter().any(|(_, service, _)| service == "web") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    Ok(Story {
        created,
        cluster_ip,
        invalid,
        invalid_message,
        slices,
    })
}
