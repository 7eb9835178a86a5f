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

/// The (verb, resource) labels of a request path, as kube-apiserver's request info resolver sees them.
pub(crate) fn classify(method: &http::Method, path: &str, query: Option<&str>) -> (String, String) {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, rest): (&str, &[&str]) = match segs.as_slice() {
        ["api", _v, rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (g, rest),
        _ => return (method.as_str().to_ascii_lowercase(), String::new()),
    };
    let (watch_path, rest) = match rest.first() {
        Some(&"watch") => (true, &rest[1..]),
        _ => (false, rest),
    };
    let (resource, has_name) = match rest {
        ["namespaces", _ns, r, more @ ..] => (*r, !more.is_empty()),
        ["namespaces", more @ ..] => ("namespaces", !more.is_empty()),
        [r, more @ ..] => (*r, !more.is_empty()),
        [] => return (method.as_str().to_ascii_lowercase(), String::new()),
    };
    let watch_param = query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| {
            k == "watch" && matches!(v.as_ref(), "1" | "t" | "T" | "true" | "TRUE" | "True" | "")
        })
    });
    let verb = match *method {
        http::Method::GET | http::Method::HEAD if watch_path || watch_param => "watch",
        http::Method::GET | http::Method::HEAD if has_name => "get",
        http::Method::GET | http::Method::HEAD => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if has_name => "delete",
        http::Method::DELETE => "deletecollection",
        _ => return (method.as_str().to_ascii_lowercase(), String::new()),
    };
    let resource = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    };
    (verb.to_owned(), resource)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn classify_paths() {
        let c = |m: Method, p: &str, q: Option<&str>| classify(&m, p, q);
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/d/pods", None),
            ("list".into(), "pods".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/d/pods/x", None),
            ("get".into(), "pods".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/pods", Some("watch=true")),
            ("watch".into(), "pods".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/watch/namespaces/d/pods", None),
            ("watch".into(), "pods".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/d", None),
            ("get".into(), "namespaces".into())
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/d/pods", None),
            ("deletecollection".into(), "pods".into())
        );
        assert_eq!(
            c(
                Method::POST,
                "/apis/discovery.k8s.io/v1/namespaces/d/endpointslices",
                None
            ),
            ("create".into(), "endpointslices.discovery.k8s.io".into())
        );
        assert_eq!(
            c(Method::GET, "/healthz", None),
            ("get".into(), String::new())
        );
    }
}
