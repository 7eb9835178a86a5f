//! The kubelet API: what the apiserver (and `kubectl` through it) asks a node directly.
//!
//! A real kubelet serves HTTPS on port 10250: `/healthz`, `/pods`, `/logs`, `/exec`, `/metrics`, …
//! The apiserver reaches it with its kubelet client certificate (`--kubelet-client-certificate`),
//! and the kubelet authenticates that certificate against `--client-ca-file`. This node serves the
//! part proxies need: `/healthz`, `/pods` (the PodList of the pods it runs) and
//! `/containerLogs/{namespace}/{pod}/{container}` (what `kubectl logs` reads through the apiserver;
//! query `tailLines`, `follow`, `timestamps`).
//!
//! Authentication follows the kubelet with anonymous auth disabled: a client must present a
//! certificate signed by the client CA. The TLS layer rejects certificates from any other CA during
//! the handshake; a client without a certificate completes the handshake and gets `401 Unauthorized`
//! (a Kubernetes `Status` document). Without a client CA no one can authenticate, so every request
//! gets 401. (A real kubelet would also ask the apiserver to authorize the user with a
//! SubjectAccessReview; here every authenticated client may read.)

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use http::{StatusCode, header};
use k8s_openapi::api::core::v1::Pod;
use proxylab_core::serve::ConnInfo;
use serde_json::json;
use tokio::sync::broadcast;

use crate::workload::logs::{ContainerLog, LogLine};

/// The pods this node runs, as last seen from the apiserver, keyed by (namespace, name).
/// Shared between the pod manager (writer) and the kubelet API (reader).
#[derive(Clone, Debug, Default)]
pub struct PodTable(Arc<RwLock<BTreeMap<(String, String), Pod>>>);

impl PodTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces a pod.
    pub fn upsert(&self, pod: Pod) {
        let key = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        // A poisoned lock only means a writer panicked mid-insert; the map itself is still usable.
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pod);
    }

    /// Removes a pod.
    pub fn remove(&self, namespace: &str, name: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Keeps only the pods for which `keep` is true.
    pub fn retain(&self, mut keep: impl FnMut(&Pod) -> bool) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, p| keep(p));
    }

    /// The pods, sorted by namespace and name.
    pub fn snapshot(&self) -> Vec<Pod> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

type LogKey = (String, String, String);

/// The logs of the containers this node runs, keyed by (namespace, pod, container).
#[derive(Clone, Debug, Default)]
pub struct ContainerLogs(Arc<RwLock<BTreeMap<LogKey, ContainerLog>>>);

impl ContainerLogs {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a started container's log.
    pub fn insert(&self, namespace: &str, pod: &str, container: &str, log: ContainerLog) {
        let key = (namespace.to_owned(), pod.to_owned(), container.to_owned());
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, log);
    }

    /// Forgets every container log of a pod (the pod is gone).
    pub fn remove_pod(&self, namespace: &str, pod: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(ns, p, _), _| !(ns == namespace && p == pod));
    }

    /// A container's log.
    pub fn get(&self, namespace: &str, pod: &str, container: &str) -> Option<ContainerLog> {
        let key = (namespace.to_owned(), pod.to_owned(), container.to_owned());
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
    }
}

/// What the kubelet API serves from.
#[derive(Clone, Debug, Default)]
pub struct KubeletState {
    /// The pods (for `/pods`).
    pub pods: PodTable,
    /// The container logs (for `/containerLogs`).
    pub logs: ContainerLogs,
}

/// The kubelet API router. Serve it with [`proxylab_core::serve::serve_http`] and a TLS configuration whose
/// client verifier trusts the cluster CA ([`crate::certs::server_config`] with client CAs).
pub fn kubelet_router(state: KubeletState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(list_pods))
        .route("/pods/", get(list_pods))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .fallback(|| async {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
        .layer(middleware::from_fn(require_client_certificate))
        .with_state(state)
}

async fn list_pods(State(state): State<KubeletState>) -> Response {
    let list = crate::agent::objects::pod_list(state.pods.snapshot());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        list.to_string(),
    )
        .into_response()
}

/// Query parameters of `/containerLogs` (names as the kubelet's).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    tail_lines: Option<usize>,
    follow: Option<bool>,
    timestamps: Option<bool>,
}

async fn container_logs(
    State(state): State<KubeletState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "invalid query: tailLines must be a number, follow and timestamps true or false",
        );
    };
    let Some(log) = state.logs.get(&namespace, &pod, &container) else {
        let message =
            format!("container {container:?} in pod {namespace}/{pod} is not running on this node");
        return status(StatusCode::NOT_FOUND, "NotFound", &message);
    };
    let timestamps = query.timestamps.unwrap_or(false);
    let format = move |line: &LogLine| {
        if timestamps {
            format!(
                "{} {}\n",
                line.time.strftime("%Y-%m-%dT%H:%M:%S.%9fZ"),
                line.text
            )
        } else {
            format!("{}\n", line.text)
        }
    };
    let (past, live) = log.follow(query.tail_lines);
    // Drop our handle: once the container's workloads stop and the registry forgets it, the
    // channel closes and a follower's stream ends.
    drop(log);
    let backlog: String = past.iter().map(&format).collect();
    if !query.follow.unwrap_or(false) {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            backlog,
        )
            .into_response();
    }
    let first = futures_util::stream::iter([Ok::<_, Infallible>(backlog)]);
    let rest = futures_util::stream::unfold(live, move |mut rx| {
        async move {
            loop {
                match rx.recv().await {
                    Ok(line) => return Some((Ok(format(&line)), rx)),
                    // A slow reader skips what it missed rather than stalling the workload.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(first.chain(rest)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn require_client_certificate(req: Request, next: Next) -> Response {
    let authenticated = req
        .extensions()
        .get::<ConnInfo>()
        .is_some_and(|c| c.tls && c.peer.is_some());
    if !authenticated {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    next.run(req).await
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
