//! Request parsing: what a resource URL names, its query parameters, selectors, bodies and
//! DeleteOptions — everything the verb handlers read from a request, parsed once, in one way.
//!
//! kube-apiserver serves every resource under one URL grammar:
//!
//! ```text
//! /api/v1/namespaces/{ns}/{resource}[/{name}[/{subresource}]]      core group, namespaced
//! /api/v1/{resource}[/{name}[/{subresource}]]                      cluster-scoped, or all namespaces
//! /apis/{group}/{version}/...                                      the same for named groups
//! /api/v1/watch/...                                                legacy watch paths (= ?watch=true)
//! ```

use std::collections::HashMap;

use http::{HeaderMap, header};
use proxylab_apimachinery::registry::{self, ResourceInfo};
use proxylab_apimachinery::selector::{FieldSelector, LabelSelector};
use proxylab_apimachinery::status::Status;
use proxylab_apimachinery::{meta, table};
use proxylab_store::ObjectKey;
use serde_json::Value;

use crate::errors;
use crate::response;

/// What a request names, before anything is looked up — kube-apiserver's `RequestInfo`, the one parse
/// of a request path shared by routing, the request log and the metrics' labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestInfo {
    /// `/api/{v}/…` or `/apis/{g}/{v}/…` with something after the version; everything else (health,
    /// discovery, `/version`, unknown paths) is a non-resource request.
    pub is_resource: bool,
    /// kube's verb vocabulary (get, list, watch, create, update, patch, delete, deletecollection) for
    /// resource requests; the lower-cased HTTP method otherwise.
    pub verb: String,
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Path segments after the subresource (`pods/x/proxy/<these>`).
    pub rest: Vec<String>,
    /// The legacy `/api/v1/watch/…` form.
    pub legacy_watch: bool,
}

/// Namespace subresources: `namespaces/{name}/status|finalize` name the namespace, not a resource in it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

impl RequestInfo {
    /// Parses `method path?query` as kube-apiserver's `RequestInfoFactory` does (a `GET` of one object
    /// with `?watch=true` counts as a watch, as the lab serves it).
    pub fn parse(method: &http::Method, path: &str, query: Option<&str>) -> RequestInfo {
        let segs: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let mut ri = RequestInfo {
            verb: method.as_str().to_ascii_lowercase(),
            ..RequestInfo::default()
        };
        let (group, version, mut parts): (&str, &str, &[&str]) = match segs.as_slice() {
            ["api", v, rest @ ..] if !rest.is_empty() => ("", v, rest),
            ["apis", g, v, rest @ ..] if !rest.is_empty() => (g, v, rest),
            _ => return ri,
        };
        if parts.first() == Some(&"watch") {
            ri.legacy_watch = true;
            parts = &parts[1..];
        }
        if parts.first() == Some(&"namespaces") && parts.len() > 1 {
            ri.namespace = Some(parts[1].to_owned());
            if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
                parts = &parts[2..];
            }
        }
        ri.is_resource = !parts.is_empty();
        ri.group = group.to_owned();
        ri.version = version.to_owned();
        ri.resource = parts.first().map(|s| s.to_string()).unwrap_or_default();
        ri.name = parts.get(1).map(|s| s.to_string());
        ri.subresource = parts.get(2).map(|s| s.to_string());
        ri.rest = parts.iter().skip(3).map(|s| s.to_string()).collect();
        if ri.resource == "namespaces" {
            // `namespaces/{name}` is the namespace itself, not something inside it.
            ri.namespace = None;
        }
        let watch_param = query.is_some_and(|q| {
            url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| {
                k == "watch"
                    && matches!(v.as_ref(), "1" | "t" | "T" | "true" | "TRUE" | "True" | "")
            })
        });
        let has_name = ri.name.is_some();
        ri.verb = match *method {
            http::Method::GET | http::Method::HEAD if ri.legacy_watch || watch_param => "watch",
            http::Method::GET | http::Method::HEAD if has_name => "get",
            http::Method::GET | http::Method::HEAD => "list",
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE if has_name => "delete",
            http::Method::DELETE => "deletecollection",
            _ => return ri,
        }
        .to_owned();
        ri
    }

    /// The resource qualified by its group (`pods`, `endpointslices.discovery.k8s.io`), as the metrics
    /// label it; empty for non-resource requests.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// A resource request resolved against the registry: what the REST handlers act on.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub legacy_watch: bool,
}

impl Target {
    pub fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::new(self.info.store_resource(), self.namespace.as_deref(), name)
    }
}

/// Resolves a resource request against the registry; `path` is the request path, for the messages of
/// what is not served.
pub(crate) fn parse_target(ri: &RequestInfo, path: &str) -> Result<Target, Status> {
    if !ri.is_resource {
        return Err(errors::path_not_served(path));
    }
    let info = registry::lookup(&ri.group, &ri.version, &ri.resource)
        .ok_or_else(|| errors::resource_not_served(ri))?;
    if !ri.rest.is_empty() {
        // Only proxy subresources take a path after them, and the lab serves none.
        return Err(match &ri.subresource {
            Some(sub) if !info.has_subresource(sub) => errors::subresource_not_served(info, sub),
            _ => errors::bad_resource_path(info, path),
        });
    }
    let in_namespace = ri.namespace.as_ref().is_some_and(|n| !n.is_empty());
    // A namespaced object is named only inside its namespace; a cluster-scoped one never is.
    if (info.namespaced && ri.name.is_some() && !in_namespace)
        || (!info.namespaced && ri.namespace.is_some())
        || ri.namespace.as_deref() == Some("")
    {
        return Err(errors::bad_resource_path(info, path));
    }
    Ok(Target {
        info,
        namespace: ri.namespace.clone(),
        name: ri.name.clone(),
        subresource: ri.subresource.clone(),
        legacy_watch: ri.legacy_watch,
    })
}

/// Query parameters (last occurrence wins).
#[derive(Debug, Default)]
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    /// A boolean parameter, parsed as Go's `strconv.ParseBool` (kube-apiserver's parser): the Python
    /// client sends `watch=True`. A bare `?watch` counts as true.
    pub fn flag(&self, k: &str) -> bool {
        matches!(
            self.get(k),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True" | "")
        )
    }
    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// The label and field selectors of a list, watch or deletecollection — one parser and one matcher for
/// all three, so a watch selects exactly what the list before it did.
pub(crate) struct Selectors {
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
}

impl Selectors {
    /// `name` (a watch on one object) adds `metadata.name=<name>` to the field selector, as
    /// kube-apiserver turns `GET …/pods/x?watch=true` into a watch with that selector.
    pub fn parse(info: &ResourceInfo, q: &Query, name: Option<&str>) -> Result<Selectors, Status> {
        let label = match q.get("labelSelector").filter(|s| !s.is_empty()) {
            Some(s) => {
                Some(LabelSelector::parse(s).map_err(|e| Status::bad_request(e.to_string()))?)
            }
            None => None,
        };
        let mut field_str = q.get("fieldSelector").unwrap_or("").to_owned();
        if let Some(n) = name {
            let extra = format!("metadata.name={n}");
            field_str = if field_str.is_empty() {
                extra
            } else {
                format!("{field_str},{extra}")
            };
        }
        let field = if field_str.is_empty() {
            None
        } else {
            let f =
                FieldSelector::parse(&field_str).map_err(|e| Status::bad_request(e.to_string()))?;
            f.validate(info)
                .map_err(|e| Status::bad_request(e.to_string()))?;
            Some(f)
        };
        Ok(Selectors { label, field })
    }

    /// Whether any selector was given (a watch then translates events crossing its boundary).
    pub fn is_filtering(&self) -> bool {
        self.label.is_some() || self.field.is_some()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.label
            .as_ref()
            .is_none_or(|l| l.matches(meta::labels(obj)))
            && self.field.as_ref().is_none_or(|f| f.matches(obj))
    }
}

/// Which form of Table the client asked for (`?includeObject=None|Metadata|Object`, default Metadata).
pub(crate) fn table_request(headers: &HeaderMap, q: &Query) -> Option<table::IncludeObject> {
    if !response::accepts_as(headers, "Table", None) {
        return None;
    }
    Some(match q.get("includeObject") {
        Some("None") => table::IncludeObject::None,
        Some("Object") => table::IncludeObject::Object,
        _ => table::IncludeObject::Metadata,
    })
}

/// The media type of the request body (`application/json` when absent), without parameters.
pub(crate) fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
}

/// Parses a request body (JSON, YAML or protobuf, by its Content-Type) into a JSON object.
pub(crate) fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, Status> {
    decode_as(content_type(headers), body)
}

/// Parses a body of media type `mt` into a JSON object.
pub(crate) fn decode_as(mt: &str, body: &[u8]) -> Result<Value, Status> {
    let v: Value = match mt {
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            Status::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let s =
                std::str::from_utf8(body).map_err(|_| Status::bad_request("body is not UTF-8"))?;
            serde_saphyr::from_str(s)
                .map_err(|e| Status::bad_request(format!("yaml parse error: {e}")))?
        }
        mt if crate::protobuf::is_protobuf(mt) => crate::protobuf::decode(body)?,
        other => return Err(Status::unsupported_media_type(other)),
    };
    if !v.is_object() {
        return Err(Status::bad_request("the body must be a JSON object"));
    }
    Ok(v)
}

/// DeleteOptions from the body and/or query.
#[derive(Debug, Default)]
pub(crate) struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_rv: Option<u64>,
    pub precondition_uid: Option<String>,
    pub propagation_policy: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn from_request(
        q: &Query,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<DeleteOptions, Status> {
        let mut o = DeleteOptions {
            grace_period_seconds: match q.get("gracePeriodSeconds") {
                Some(g) => Some(g.parse().map_err(|_| {
                    Status::bad_request(format!("invalid gracePeriodSeconds {g:?}"))
                })?),
                None => None,
            },
            propagation_policy: q.get("propagationPolicy").map(str::to_owned),
            dry_run: q.dry_run(),
            ..Default::default()
        };
        if body.iter().any(|b| !b.is_ascii_whitespace()) {
            let v = decode_body(headers, body)?;
            if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
                o.grace_period_seconds = Some(g);
            }
            if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
                o.propagation_policy = Some(p.to_owned());
            }
            if let Some(rv) = v["preconditions"]["resourceVersion"].as_str() {
                o.precondition_rv =
                    Some(rv.parse().map_err(|_| {
                        Status::bad_request("invalid preconditions.resourceVersion")
                    })?);
            }
            if let Some(u) = v["preconditions"]["uid"].as_str() {
                o.precondition_uid = Some(u.to_owned());
            }
            if v["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "All"))
            {
                o.dry_run = true;
            }
        }
        if let Some(p) = &o.propagation_policy
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(Status::bad_request(format!(
                "unsupported propagationPolicy {p:?}"
            )));
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Result<Target, Status> {
        parse_target(&RequestInfo::parse(&http::Method::GET, path, None), path)
    }

    #[test]
    fn paths() {
        let t = target("/api/v1/namespaces/d/pods/p/status").unwrap();
        assert_eq!(
            (
                t.info.resource,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("pods", Some("d"), Some("p"), Some("status"))
        );
        let t = target("/api/v1/namespaces/d").unwrap();
        assert_eq!(
            (t.info.resource, t.name.as_deref(), t.namespace.as_deref()),
            ("namespaces", Some("d"), None)
        );
        let t = target("/api/v1/namespaces/d/status").unwrap();
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = target("/api/v1/pods").unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        assert!(target("/api/v1/pods/x").is_err());
        assert!(target("/api/v1/namespaces/d/nodes").is_err());
        assert!(target("/api/v1/namespaces/d/pods/p/status/more").is_err());
        let t = target("/api/v1/watch/namespaces/d/pods").unwrap();
        assert!(t.legacy_watch);
        let code = |p: &str| target(p).err().map(|s| (s.code(), s.message));
        assert_eq!(code("/api/v1/nope").map(|c| c.0), Some(404));
        assert_eq!(code("/api/v1").map(|c| c.0), Some(404));
        // kube-apiserver serves these; the lab says it does not.
        let (c, m) = code("/apis/rbac.authorization.k8s.io/v1/clusterroles").unwrap();
        assert_eq!(c, 501, "{m}");
        assert!(
            m.starts_with(
                "the lab apiserver does not serve clusterroles.rbac.authorization.k8s.io"
            ),
            "{m}"
        );
        // The proxy subresources are served by the mounted apiserver proxy's routes, which answer
        // before the REST dispatcher; a path after a non-proxy subresource is no path at all.
        let (c, m) = code("/api/v1/namespaces/d/pods/p/status/x").unwrap();
        assert_eq!(c, 404, "{m}");
        // Nobody serves these.
        let (c, m) = code("/apis/example.com/v1/widgets").unwrap();
        assert_eq!(c, 404);
        assert!(m.contains("neither does kube-apiserver"), "{m}");
        let t = target("/apis/discovery.k8s.io/v1/namespaces/d/endpointslices").unwrap();
        assert_eq!(t.info.store_resource(), "endpointslices.discovery.k8s.io");
    }

    #[test]
    fn request_info_verbs_and_resources() {
        use http::Method;
        let c = |m: Method, p: &str, q: Option<&str>| {
            let ri = RequestInfo::parse(&m, p, q);
            (ri.verb.clone(), ri.qualified_resource())
        };
        let pair = |v: &str, r: &str| (v.to_owned(), r.to_owned());
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/d/pods", None),
            pair("list", "pods")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/d/pods/x", None),
            pair("get", "pods")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/pods", Some("watch=true")),
            pair("watch", "pods")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/watch/namespaces/d/pods", None),
            pair("watch", "pods")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/d", None),
            pair("get", "namespaces")
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/d/pods", None),
            pair("deletecollection", "pods")
        );
        assert_eq!(
            c(
                Method::POST,
                "/apis/discovery.k8s.io/v1/namespaces/d/endpointslices",
                None
            ),
            pair("create", "endpointslices.discovery.k8s.io")
        );
        assert_eq!(c(Method::GET, "/healthz", None), pair("get", ""));
        assert_eq!(c(Method::GET, "/apis/apps/v1", None), pair("get", ""));
        let ri = RequestInfo::parse(&Method::GET, "/api/v1/namespaces/d/pods/p/proxy/a/b", None);
        assert_eq!(
            (ri.subresource.as_deref(), ri.rest.len()),
            (Some("proxy"), 2)
        );
    }
}
