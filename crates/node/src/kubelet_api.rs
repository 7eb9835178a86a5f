//! The kubelet API: what the apiserver (and `kubectl` through it) asks a node directly.
//!
//! A real kubelet serves HTTPS on port 10250: `/healthz`, `/pods`, `/logs`, `/exec`, `/metrics`, …
//! The apiserver reaches it with its kubelet client certificate (`--kubelet-client-certificate`),
//! and the kubelet authenticates that certificate against `--client-ca-file`. This node serves the
//! part proxies need: `/healthz` and `/pods` (the PodList of the pods it runs).
//!
//! Authentication follows the kubelet with anonymous auth disabled: a client must present a
//! certificate signed by the client CA. The TLS layer rejects certificates from any other CA during
//! the handshake; a client without a certificate completes the handshake and gets `401 Unauthorized`
//! (a Kubernetes `Status` document). Without a client CA no one can authenticate, so every request
//! gets 401. (A real kubelet would also ask the apiserver to authorize the user with a
//! SubjectAccessReview; here every authenticated client may read.)

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use proxylab_core::serve::ConnInfo;

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

/// The kubelet API router. Serve it with [`proxylab_core::serve::serve_http`] and a TLS configuration whose
/// client verifier trusts the cluster CA ([`crate::certs::server_config`] with client roots).
pub fn kubelet_router(pods: PodTable) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(list_pods))
        .route("/pods/", get(list_pods))
        .fallback(|| async {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
        .layer(middleware::from_fn(require_client_certificate))
        .with_state(pods)
}

async fn list_pods(State(pods): State<PodTable>) -> Response {
    let list = crate::agent::objects::pod_list(pods.snapshot());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        list.to_string(),
    )
        .into_response()
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
