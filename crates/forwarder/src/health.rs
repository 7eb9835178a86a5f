//! kube-proxy's two HTTP health servers.
//!
//! - The proxy's own `/healthz` (and `/livez`) on `--healthz-bind-address` (kube-proxy: `0.0.0.0:10256`;
//!   here loopback by default). Cloud load balancers probe it to decide whether a node can take
//!   `externalTrafficPolicy: Cluster` traffic. 200 when the proxier has applied the latest cluster
//!   state, 503 before the first sync or while a change is pending; a JSON body with `lastUpdated`,
//!   `currentTime` and `nodeEligible`, as kube-proxy writes.
//! - One server per `healthCheckNodePort` (LoadBalancer services with `externalTrafficPolicy: Local`):
//!   any path answers 200 when this node has local endpoints for the service, else 503, so the load
//!   balancer only sends traffic to nodes that can serve it without a second hop. The body is
//!   `{"service":{"namespace","name"},"localEndpoints":N,"serviceProxyHealthy":true}` and the header
//!   `X-Load-Balancing-Endpoint-Weight: N`, as kube-proxy's.
//!
//! Both are served by `core::serve` with its admin limits ([`ServeOptions::admin`]): a flood of
//! clients on them holds a bounded number of descriptors, so the data plane keeps working.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use proxylab_core::cluster::ServiceKey;
use proxylab_core::serve::{ServeOptions, serve_http_with};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::proxy::Shared;

pub(crate) async fn serve_healthz(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let handler = move || {
        let shared = shared.clone();
        async move {
            let snap = shared.view.snapshot();
            let applied = *shared.applied.borrow();
            let healthy = snap.synced && applied.is_some_and(|a| a >= snap.revision);
            let now = jiff::Timestamp::now().to_string();
            let last = shared.last_applied.lock().clone().unwrap_or_default();
            let body = json!({"lastUpdated": last, "currentTime": now, "nodeEligible": true});
            let status = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
        }
    };
    let router = Router::new()
        .route("/healthz", axum::routing::get(handler.clone()))
        .route("/livez", axum::routing::get(handler));
    if let Err(e) = serve_http_with(listener, None, router, stop, ServeOptions::admin()).await {
        tracing::warn!(error = %e, "healthz server failed");
    }
}

pub(crate) async fn serve_service_health(
    listener: TcpListener,
    service: ServiceKey,
    local: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    let handler = move || {
        let n = local.load(Ordering::Relaxed);
        let body = json!({
            "service": {"namespace": service.namespace, "name": service.name},
            "localEndpoints": n,
            "serviceProxyHealthy": true,
        });
        let status = if n > 0 {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        async move {
            (
                status,
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (
                        header::HeaderName::from_static("x-load-balancing-endpoint-weight"),
                        n.to_string(),
                    ),
                ],
                body.to_string(),
            )
                .into_response()
        }
    };
    let router = Router::new().fallback(handler);
    if let Err(e) = serve_http_with(listener, None, router, stop, ServeOptions::admin()).await {
        tracing::warn!(error = %e, "health-check node port failed");
    }
}
