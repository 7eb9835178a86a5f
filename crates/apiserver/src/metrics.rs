//! The apiserver's own metrics, in the spirit of kube-apiserver's `apiserver_request_total{verb,
//! resource,code}` and its count of open watches. They are registered in the process's shared
//! [`Metrics`] registry (so the lab's admin endpoint shows them) and also served, authenticated, at
//! `/metrics` on the secure port as kube-apiserver does.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use proxylab_core::telemetry::Metrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// kube's verb vocabulary: get, list, watch, create, update, patch, delete, deletecollection — or the
    /// HTTP method for non-resource paths.
    pub verb: String,
    /// The resource (`pods`, `endpointslices.discovery.k8s.io`), or `""` for non-resource paths.
    pub resource: String,
    pub code: u16,
}

#[derive(Debug, Clone)]
pub(crate) struct ApiMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub watches: Gauge,
    pub registry: Arc<Metrics>,
}

impl ApiMetrics {
    pub fn new(registry: Option<Arc<Metrics>>) -> Self {
        // Not `unwrap_or_default`: `Metrics::new` sets the `proxylab` prefix, `Default` does not.
        let registry = match registry {
            Some(r) => r,
            None => Metrics::new(),
        };
        let m = ApiMetrics {
            requests: Family::default(),
            watches: Gauge::default(),
            registry,
        };
        m.registry.register(
            "apiserver_requests",
            "Requests answered by the lab apiserver, by verb, resource and HTTP code",
            m.requests.clone(),
        );
        m.registry.register(
            "apiserver_watches",
            "Watch streams currently open",
            m.watches.clone(),
        );
        m
    }
}

/// Decrements the open-watch gauge when a watch stream ends, however it ends.
pub(crate) struct WatchGuard(pub Gauge);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
