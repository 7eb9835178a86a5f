//! The REST layer: Kubernetes resource URLs → store operations.
//!
//! kube-apiserver serves every resource under one URL grammar:
//!
//! ```text
//! /api/v1/namespaces/{ns}/{resource}[/{name}[/{subresource}]]      core group, namespaced
//! /api/v1/{resource}[/{name}[/{subresource}]]                      cluster-scoped, or all namespaces
//! /apis/{group}/{version}/...                                      the same for named groups
//! /api/v1/watch/...                                                legacy watch paths (= ?watch=true)
//! ```
//!
//! and maps HTTP methods to verbs: GET → get / list / watch, POST → create, PUT → update, PATCH → patch
//! (JSON patch, merge patch, strategic merge patch, server-side apply), DELETE → delete /
//! deletecollection. This module implements that grammar over the [`Store`](proxylab_store::Store) and
//! the pure functions of `proxylab-apimachinery` (validation, patches, selectors, Table printing).
//!
//! What each write does before it reaches storage (kube's "registry strategy"):
//! - **create**: namespace must exist; `generateName` → name + 5 random characters; `uid`,
//!   `creationTimestamp`, `generation: 1` set; per-kind defaults (pods start `Pending`, namespaces
//!   `Active`, Services get their ClusterIP/NodePorts from [`crate::allocator`]); validation → 422.
//! - **update** (PUT) of the main resource keeps `.status` of resources with a status subresource;
//!   PUT/PATCH of `…/status` changes only `.status`. `generation` increments when `.spec` changes.
//!   A `metadata.resourceVersion` in the body is a precondition (stale → 409 Conflict); without it the
//!   update is unconditional.
//! - **delete**: pods that are bound to a node are deleted *gracefully*: the apiserver only stamps
//!   `deletionTimestamp` / `deletionGracePeriodSeconds` and the node agent finishes the job with a
//!   `gracePeriodSeconds=0` delete (see CONTRACTS.md). Deleting a Namespace deletes everything in it
//!   *synchronously* (kube-apiserver marks it Terminating and the namespace controller empties it
//!   asynchronously; the lab keeps it simple). An object with `metadata.finalizers` is only marked
//!   (`deletionTimestamp`) and disappears when an update removes its last finalizer.
//!
//! Simplifications: no admission webhooks, no managedFields, `fieldValidation` and `fieldManager` are
//! accepted and ignored, lists are not consistent snapshots across pages (a continue token remembers
//! where it was and the list's resourceVersion, and the next page lists the current state after that
//! key), and `resourceVersion`/`resourceVersionMatch` on GET and list are ignored (always the latest).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, StatusCode, header};
use proxylab_apimachinery::registry::{self, ResourceInfo};
use proxylab_apimachinery::selector::{FieldSelector, LabelSelector};
use proxylab_apimachinery::status::{CONFLICT_MODIFIED, Cause, Status};
use proxylab_apimachinery::{meta, patch, table, validation};
use proxylab_store::{ObjectKey, StoreError};
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::allocator::ServiceAllocator;
use crate::response::{self, ApiError, ApiResult, Format};
use crate::server::AppState;
use crate::serviceaccount;

/// A parsed resource URL.
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

fn not_found_path() -> Status {
    Status::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Parses the part of a path after `/api/v1` or `/apis/{g}/{v}`.
pub(crate) fn parse_target(group: &str, version: &str, rest: &[&str]) -> Result<Target, Status> {
    let (legacy_watch, rest) = match rest.first() {
        Some(&"watch") => (true, &rest[1..]),
        _ => (false, rest),
    };
    let lookup = |r: &str| registry::lookup(group, version, r);
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && let Some(info) = lookup(rest[2]).filter(|i| i.namespaced)
    {
        if rest.len() > 5 || rest[1].is_empty() {
            return Err(not_found_path());
        }
        return Ok(Target {
            info,
            namespace: Some(rest[1].to_owned()),
            name: rest.get(3).map(|s| s.to_string()),
            subresource: rest.get(4).map(|s| s.to_string()),
            legacy_watch,
        });
    }
    let Some(first) = rest.first() else {
        return Err(not_found_path());
    };
    let info = lookup(first).ok_or_else(not_found_path)?;
    if rest.len() > 3 {
        return Err(not_found_path());
    }
    let name = rest.get(1).map(|s| s.to_string());
    if info.namespaced && name.is_some() {
        return Err(not_found_path());
    }
    Ok(Target {
        info,
        namespace: None,
        name,
        subresource: rest.get(2).map(|s| s.to_string()),
        legacy_watch,
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
    fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

fn store_err(info: &ResourceInfo, name: &str, e: StoreError) -> Status {
    match e {
        StoreError::NotFound => Status::not_found(info, name),
        StoreError::AlreadyExists => Status::already_exists(info, name),
        StoreError::Conflict { .. } => Status::conflict(info, name, CONFLICT_MODIFIED),
        StoreError::Expired { oldest } => Status::expired(format!(
            "too old resource version (oldest available: {oldest})"
        )),
        StoreError::Internal(m) => Status::internal(m),
    }
}

struct Selectors {
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
}

impl Selectors {
    fn parse(info: &ResourceInfo, q: &Query, name: Option<&str>) -> Result<Selectors, Status> {
        let label = match q.get("labelSelector").filter(|s| !s.is_empty()) {
            Some(s) => {
                Some(LabelSelector::parse(s).map_err(|e| Status::bad_request(e.to_string()))?)
            }
            None => None,
        };
        let mut field_str = q.get("fieldSelector").unwrap_or("").to_owned();
        if let Some(n) = name {
            // A watch on a single object is a watch with metadata.name=<name>.
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

    fn matches(&self, obj: &Value) -> bool {
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

/// Parses a request body (JSON, or YAML when the Content-Type says so).
fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, Status> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mt = ct.split(';').next().unwrap_or("").trim();
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

/// Checks (or fills in) apiVersion/kind against the resource of the URL.
fn check_kind(info: &ResourceInfo, obj: &mut Value) -> Result<(), Status> {
    let want_av = info.api_version();
    let av = obj["apiVersion"].as_str().unwrap_or("").to_owned();
    let kind = obj["kind"].as_str().unwrap_or("").to_owned();
    if (!av.is_empty() && av != want_av) || (!kind.is_empty() && kind != info.kind) {
        return Err(Status::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av}) or kind {kind} is not {}",
            info.kind
        )));
    }
    obj["apiVersion"] = json!(want_av);
    obj["kind"] = json!(info.kind);
    Ok(())
}

fn rv_u64(obj: &Value) -> Option<u64> {
    meta::resource_version(obj).and_then(|s| s.parse().ok())
}

fn name_of(obj: &Value) -> String {
    meta::name(obj).unwrap_or("").to_owned()
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix() -> String {
    let mut rng = rand::rng();
    (0..5)
        .map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char)
        .collect()
}

/// Entry point for resource URLs.
pub(crate) async fn handle(
    state: &Arc<AppState>,
    method: &Method,
    target: Target,
    q: &Query,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let fmt = Format::from_request(headers, q.get("pretty"));
    let info = target.info;
    // HEAD is GET without a body (hyper drops the body).
    let method = if *method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    if !response::accepts_json(headers) {
        return Err(Status::not_acceptable(response::accept(headers)).into());
    }
    if let Some(sub) = &target.subresource {
        // pods/binding is kube's scheduler API even where the registry does not list it.
        let core = info.group.is_empty();
        let known = (info.has_subresource(sub) && sub == "status")
            || (sub == "binding" && core && info.resource == "pods")
            || (sub == "token" && core && info.resource == "serviceaccounts");
        if !known || target.name.is_none() {
            return Err(not_found_path().into());
        }
    }
    let verb_ok = |v: &str| -> Result<(), ApiError> {
        if info.supports_verb(v) {
            Ok(())
        } else {
            Err(Status::method_not_allowed(info, v).into())
        }
    };
    let watch = target.legacy_watch || q.flag("watch");
    if target.legacy_watch && *method != Method::GET {
        return Err(Status::method_not_allowed(info, method.as_str()).into());
    }
    let read_body = |body: Body| async {
        axum::body::to_bytes(body, state.max_body)
            .await
            .map_err(|_| {
                ApiError(Status::request_entity_too_large(format!(
                    "the request body is too large: limit is {} bytes",
                    state.max_body
                )))
            })
    };
    match (
        method.clone(),
        target.name.clone(),
        target.subresource.as_deref(),
    ) {
        (Method::GET, None, _) if watch => {
            verb_ok("watch")?;
            crate::watch::watch(state, &target, q, headers).await
        }
        (Method::GET, Some(name), None) if watch => {
            verb_ok("watch")?;
            let mut t = target.clone();
            t.name = Some(name);
            crate::watch::watch(state, &t, q, headers).await
        }
        (Method::GET, None, _) => {
            verb_ok("list")?;
            list(state, &target, q, headers, fmt)
        }
        (Method::GET, Some(name), _) => {
            verb_ok("get")?;
            let obj = state
                .store
                .get(&target.key(&name))
                .map_err(|e| store_err(info, &name, e))?
                .ok_or_else(|| Status::not_found(info, &name))?;
            Ok(render_one(info, obj, q, headers, fmt))
        }
        (Method::POST, None, _) => {
            verb_ok("create")?;
            if info.namespaced && target.namespace.is_none() {
                return Err(Status::method_not_allowed(info, "create").into());
            }
            let bytes = read_body(body).await?;
            let obj = decode_body(headers, &bytes)?;
            let created = create(state, &target, obj, q.dry_run())?;
            Ok(response::object(StatusCode::CREATED, &created, fmt))
        }
        (Method::POST, Some(name), Some("binding")) => {
            let bytes = read_body(body).await?;
            let obj = decode_body(headers, &bytes)?;
            bind_pod(state, &target, &name, &obj)?;
            let ok = Status::success(info, &name);
            Ok(response::object(StatusCode::CREATED, &ok.to_value(), fmt))
        }
        (Method::POST, Some(name), Some("token")) => {
            let bytes = read_body(body).await?;
            let obj = decode_body(headers, &bytes)?;
            let out = token_request(state, &target, &name, &obj)?;
            Ok(response::object(StatusCode::CREATED, &out, fmt))
        }
        (Method::PUT, Some(name), sub) => {
            verb_ok("update")?;
            let bytes = read_body(body).await?;
            let obj = decode_body(headers, &bytes)?;
            let (code, out) = update(state, &target, &name, sub, obj, q.dry_run())?;
            Ok(response::object(code, &out, fmt))
        }
        (Method::PATCH, Some(name), sub) => {
            verb_ok("patch")?;
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            if !matches!(
                ct.as_str(),
                "application/json-patch+json"
                    | "application/merge-patch+json"
                    | "application/strategic-merge-patch+json"
                    | "application/apply-patch+yaml"
            ) {
                return Err(Status::unsupported_media_type(&ct).into());
            }
            let bytes = read_body(body).await?;
            let (code, out) = patch_object(state, &target, &name, sub, &ct, &bytes, q.dry_run())?;
            Ok(response::object(code, &out, fmt))
        }
        (Method::DELETE, Some(name), None) => {
            verb_ok("delete")?;
            let bytes = read_body(body).await?;
            let opts = DeleteOptions::from_request(q, headers, &bytes)?;
            let out = delete(state, &target, &name, &opts)?;
            Ok(response::object(StatusCode::OK, &out, fmt))
        }
        (Method::DELETE, None, None) => {
            verb_ok("deletecollection")?;
            if info.resource == "namespaces" {
                return Err(Status::method_not_allowed(info, "deletecollection").into());
            }
            let bytes = read_body(body).await?;
            let opts = DeleteOptions::from_request(q, headers, &bytes)?;
            let sel = Selectors::parse(info, q, None)?;
            let (items, _) = state
                .store
                .list(&info.store_resource(), target.namespace.as_deref())
                .map_err(|e| store_err(info, "", e))?;
            let mut deleted = Vec::new();
            for obj in items.into_iter().filter(|o| sel.matches(o)) {
                let mut t = target.clone();
                t.namespace = meta::namespace(&obj).map(str::to_owned);
                match delete(state, &t, &name_of(&obj), &opts) {
                    Ok(v) => deleted.push(v),
                    Err(ApiError(s)) if s.code() == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let list = json!({"apiVersion": info.api_version(), "kind": info.list_kind(),
                "metadata": {"resourceVersion": state.store.current_resource_version().to_string()},
                "items": deleted});
            Ok(response::object(StatusCode::OK, &list, fmt))
        }
        _ => Err(Status::method_not_allowed(info, method.as_str()).into()),
    }
}

fn render_one(
    info: &ResourceInfo,
    obj: Value,
    q: &Query,
    headers: &HeaderMap,
    fmt: Format,
) -> Response {
    match table_request(headers, q) {
        Some(inc) => {
            let t = table::to_table(
                info,
                std::slice::from_ref(&obj),
                inc,
                jiff::Timestamp::now(),
            );
            let mut r = response::object(StatusCode::OK, &t, fmt);
            set_table_type(&mut r);
            r
        }
        None => response::object(StatusCode::OK, &obj, fmt),
    }
}

fn set_table_type(r: &mut Response) {
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(response::TABLE_CONTENT_TYPE),
    );
}

/// The opaque continue token: where the previous page stopped and the list's resourceVersion.
fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({"v": 1, "rv": rv, "ns": ns, "name": name}).to_string())
}

fn decode_continue(tok: &str) -> Result<(u64, String, String), Status> {
    let bad = || {
        Status::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let v: Value = URL_SAFE_NO_PAD
        .decode(tok)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(bad)?;
    Ok((
        v["rv"].as_u64().ok_or_else(bad)?,
        v["ns"].as_str().ok_or_else(bad)?.to_owned(),
        v["name"].as_str().ok_or_else(bad)?.to_owned(),
    ))
}

fn list(
    state: &AppState,
    target: &Target,
    q: &Query,
    headers: &HeaderMap,
    fmt: Format,
) -> ApiResult {
    let info = target.info;
    let sel = Selectors::parse(info, q, None)?;
    let (items, current_rv) = state
        .store
        .list(&info.store_resource(), target.namespace.as_deref())
        .map_err(|e| store_err(info, "", e))?;
    let (rv, start) = match q.get("continue").filter(|s| !s.is_empty()) {
        Some(tok) => {
            let (rv, ns, name) = decode_continue(tok)?;
            (rv, Some((ns, name)))
        }
        None => (current_rv, None),
    };
    let limit: usize = match q.get("limit").filter(|s| !s.is_empty()) {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| Status::bad_request(format!("invalid limit {l:?}")))?
            .max(0) as usize,
        None => 0,
    };
    let key = |o: &Value| {
        (
            meta::namespace(o).unwrap_or("").to_owned(),
            meta::name(o).unwrap_or("").to_owned(),
        )
    };
    let mut matching: Vec<Value> = items
        .into_iter()
        .filter(|o| start.as_ref().is_none_or(|s| key(o) > *s))
        .filter(|o| sel.matches(o))
        .collect();
    let mut cont = None;
    let mut remaining = None;
    if limit > 0 && matching.len() > limit {
        remaining = Some(matching.len() - limit);
        matching.truncate(limit);
        if let Some(last) = matching.last() {
            let (ns, name) = key(last);
            cont = Some(encode_continue(rv, &ns, &name));
        }
    }
    let mut list_meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = &cont {
        list_meta["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        list_meta["remainingItemCount"] = json!(r);
    }
    match table_request(headers, q) {
        Some(inc) => {
            let mut t = table::to_table(info, &matching, inc, jiff::Timestamp::now());
            t["metadata"] = list_meta;
            let mut r = response::object(StatusCode::OK, &t, fmt);
            set_table_type(&mut r);
            Ok(r)
        }
        None => {
            let list = json!({
                "kind": info.list_kind(), "apiVersion": info.api_version(),
                "metadata": list_meta, "items": matching,
            });
            Ok(response::object(StatusCode::OK, &list, fmt))
        }
    }
}

fn namespace_must_exist(state: &AppState, ns: &str) -> Result<(), Status> {
    let key = ObjectKey::new("namespaces", None, ns);
    match state.store.get(&key) {
        Ok(Some(n)) if meta::deletion_timestamp(&n).is_some() => Err(Status::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        ))),
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Status::not_found("namespaces", ns)),
        Err(e) => Err(Status::internal(e)),
    }
}

fn invalid(info: &ResourceInfo, obj: &Value, causes: Vec<Cause>) -> Status {
    Status::invalid(info, &name_of(obj), causes)
}

/// Per-kind defaults applied on create (kube's `PrepareForCreate` + defaulting).
fn defaults_on_create(info: &ResourceInfo, obj: &mut Value) {
    match (info.group, info.resource) {
        ("", "pods") => {
            let spec = &mut obj["spec"];
            if spec.is_object() {
                if let Some(m) = spec.as_object_mut() {
                    m.entry("restartPolicy").or_insert(json!("Always"));
                    m.entry("terminationGracePeriodSeconds")
                        .or_insert(json!(30));
                    m.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
                    m.entry("schedulerName")
                        .or_insert(json!("default-scheduler"));
                    m.entry("serviceAccountName").or_insert(json!("default"));
                    m.entry("securityContext").or_insert(json!({}));
                    m.entry("enableServiceLinks").or_insert(json!(true));
                    m.entry("priority").or_insert(json!(0));
                }
                for c in obj["spec"]["containers"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    let Some(c) = c.as_object_mut() else { continue };
                    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                    let tag_latest = !image.rsplit('/').next().unwrap_or("").contains(':')
                        || image.ends_with(":latest");
                    let policy = if tag_latest { "Always" } else { "IfNotPresent" };
                    c.entry("imagePullPolicy").or_insert(json!(policy));
                    c.entry("terminationMessagePath")
                        .or_insert(json!("/dev/termination-log"));
                    c.entry("terminationMessagePolicy").or_insert(json!("File"));
                    c.entry("resources").or_insert(json!({}));
                    for p in c
                        .get_mut("ports")
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(p) = p.as_object_mut() {
                            p.entry("protocol").or_insert(json!("TCP"));
                        }
                    }
                }
            }
            // The apiserver owns a new pod's status: Pending until a node reports otherwise.
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        ("", "namespaces") => {
            let name = name_of(obj);
            meta::set_label(obj, "kubernetes.io/metadata.name", &name);
            if !obj["spec"].is_object() {
                obj["spec"] = json!({});
            }
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "secrets") if obj["type"].as_str().is_none_or(str::is_empty) => {
            obj["type"] = json!("Opaque");
        }
        ("", "services") => {
            obj["status"] = json!({"loadBalancer": {}});
        }
        ("", "nodes") if !obj["spec"].is_object() => {
            obj["spec"] = json!({});
        }
        _ => {}
    }
}

/// Creates an object at `target` (the namespace of the URL, if any). Returns the stored object.
pub(crate) fn create(
    state: &AppState,
    target: &Target,
    mut obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let info = target.info;
    check_kind(info, &mut obj)?;
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if let Some(ns) = &target.namespace {
        match meta::namespace(&obj) {
            Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                return Err(Status::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
                .into());
            }
            _ => meta::set_namespace(&mut obj, ns),
        }
        namespace_must_exist(state, ns)?;
    } else if let Some(m) = meta::metadata_mut(&mut obj) {
        m.remove("namespace");
    }
    let generate = meta::generate_name(&obj)
        .map(str::to_owned)
        .filter(|s| !s.is_empty());
    let explicit = meta::name(&obj).is_some_and(|n| !n.is_empty());
    if !explicit && generate.is_none() {
        return Err(invalid(info, &obj, vec![Cause::required("metadata.name")]).into());
    }
    if let Some(m) = meta::metadata_mut(&mut obj) {
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    meta::set_uid(&mut obj, &uuid::Uuid::new_v4().to_string());
    meta::set_creation_timestamp(&mut obj, &meta::now_rfc3339());
    meta::set_generation(&mut obj, 1);
    defaults_on_create(info, &mut obj);

    // A generated name may collide; retry with a fresh suffix as kube-apiserver does.
    let attempts = if explicit { 1 } else { 8 };
    for attempt in 0..attempts {
        if !explicit {
            let base = generate.clone().unwrap_or_default();
            meta::set_name(&mut obj, &format!("{base}{}", random_suffix()));
        }
        let mut candidate = obj.clone();
        let name = name_of(&candidate);
        let mut reserved = Reserved::new(&state.alloc);
        if info.group.is_empty() && info.resource == "services" {
            reserved.allocated = Some(state.alloc.admit(&mut candidate, None)?);
        }
        let causes = validation::validate(info, &candidate);
        if !causes.is_empty() {
            return Err(invalid(info, &candidate, causes).into());
        }
        if dry_run {
            return Ok(candidate);
        }
        match state.store.create(&target.key(&name), candidate) {
            Ok(v) => {
                reserved.keep();
                return Ok(v);
            }
            Err(e) => {
                drop(reserved);
                if matches!(e, StoreError::AlreadyExists) && !explicit && attempt + 1 < attempts {
                    continue;
                }
                return Err(store_err(info, &name, e).into());
            }
        }
    }
    Err(Status::internal("could not generate a unique name").into())
}

/// ClusterIPs and NodePorts admitted for a write that is not stored yet. Every way out of the write
/// other than a successful store (invalid object, dry run, store error) must give them back; dropping
/// the guard does that, so no exit path can leak an allocation.
struct Reserved<'a> {
    alloc: &'a ServiceAllocator,
    allocated: Option<crate::allocator::Allocated>,
}

impl<'a> Reserved<'a> {
    fn new(alloc: &'a ServiceAllocator) -> Self {
        Self {
            alloc,
            allocated: None,
        }
    }

    /// The write was stored: the allocations now belong to the object.
    fn keep(mut self) {
        self.allocated = None;
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if let Some(a) = self.allocated.take() {
            self.alloc.release(&a);
        }
    }
}

// The arguments are the parts of one write request; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
/// The shared tail of update and patch: merge with the stored object per the strategy, validate,
/// admit, store with `precondition`.
fn finish_update(
    state: &AppState,
    target: &Target,
    name: &str,
    sub: Option<&str>,
    old: &Value,
    mut new: Value,
    precondition: Option<u64>,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let info = target.info;
    check_kind(info, &mut new)?;
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    let body_name = meta::name(&new).unwrap_or("");
    if !body_name.is_empty() && body_name != name {
        return Err(Status::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        ))
        .into());
    }
    if let (Some(ns), Some(body_ns)) = (&target.namespace, meta::namespace(&new))
        && !body_ns.is_empty()
        && body_ns != ns
    {
        return Err(Status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )
        .into());
    }
    if let (Some(u), Some(old_u)) = (meta::uid(&new), meta::uid(old))
        && !u.is_empty()
        && u != old_u
    {
        return Err(Status::conflict(
            info,
            name,
            &format!("Precondition failed: UID in precondition: {old_u}, UID in object meta: {u}"),
        )
        .into());
    }
    let mut obj = if sub == Some("status") {
        // The status subresource changes only .status.
        let mut o = old.clone();
        o["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        if o["status"].is_null()
            && let Some(m) = o.as_object_mut()
        {
            m.remove("status");
        }
        o
    } else {
        if info.has_subresource("status") {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        new
    };
    // Fields the server owns.
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old["metadata"].get(k) {
            Some(v) => obj["metadata"][k] = v.clone(),
            None => {
                if let Some(m) = meta::metadata_mut(&mut obj) {
                    m.remove(k);
                }
            }
        }
    }
    meta::set_name(&mut obj, name);
    if let Some(ns) = &target.namespace {
        meta::set_namespace(&mut obj, ns);
    }
    let old_gen = meta::generation(old).unwrap_or(1);
    let gen_ = if sub.is_none() && old.get("spec") != obj.get("spec") {
        old_gen + 1
    } else {
        old_gen
    };
    meta::set_generation(&mut obj, gen_);
    if let Some(m) = meta::metadata_mut(&mut obj) {
        m.remove("managedFields");
        m.remove("selfLink");
    }
    let is_service = info.group.is_empty() && info.resource == "services" && sub.is_none();
    let mut reserved = Reserved::new(&state.alloc);
    if is_service {
        reserved.allocated = Some(state.alloc.admit(&mut obj, Some(old))?);
    }
    let mut causes = validation::validate(info, &obj);
    causes.extend(validation::validate_update(info, old, &obj));
    if !causes.is_empty() {
        return Err(invalid(info, &obj, causes).into());
    }
    if dry_run {
        return Ok(obj);
    }
    let key = target.key(name);
    match state.store.update(&key, obj, precondition) {
        Ok(stored) => {
            reserved.keep();
            if is_service {
                state
                    .alloc
                    .release(&ServiceAllocator::released_by_update(old, &stored));
            }
            Ok(stored)
        }
        Err(e) => Err(store_err(info, name, e).into()),
    }
}

fn is_create_on_update(info: &ResourceInfo) -> bool {
    info.group.is_empty() && matches!(info.resource, "endpoints" | "events")
}

fn update(
    state: &AppState,
    target: &Target,
    name: &str,
    sub: Option<&str>,
    new: Value,
    dry_run: bool,
) -> Result<(StatusCode, Value), ApiError> {
    let info = target.info;
    let precondition = match meta::resource_version(&new).filter(|s| !s.is_empty()) {
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
            invalid(
                info,
                &new,
                vec![Cause::invalid(
                    "metadata.resourceVersion",
                    &json!(rv),
                    "must be a number",
                )],
            )
        })?),
        None => None,
    };
    // An unconditional update (no resourceVersion in the body) is retried when a concurrent write
    // slips in between our read and write, as kube's GuaranteedUpdate does.
    for _ in 0..8 {
        let old = state
            .store
            .get(&target.key(name))
            .map_err(|e| store_err(info, name, e))?;
        let Some(old) = old else {
            if is_create_on_update(info) && sub.is_none() {
                let mut new = new;
                if meta::name(&new).is_none_or(str::is_empty) {
                    meta::set_name(&mut new, name);
                }
                return Ok((StatusCode::CREATED, create(state, target, new, dry_run)?));
            }
            return Err(Status::not_found(info, name).into());
        };
        if let Some(p) = precondition
            && Some(p) != rv_u64(&old)
        {
            return Err(Status::conflict(info, name, CONFLICT_MODIFIED).into());
        }
        match finish_update(
            state,
            target,
            name,
            sub,
            &old,
            new.clone(),
            rv_u64(&old),
            dry_run,
        ) {
            Ok(out) => {
                finalize_if_done(state, target, name, &out);
                return Ok((StatusCode::OK, out));
            }
            Err(ApiError(s))
                if precondition.is_none() && s.code() == 409 && s.reason == "Conflict" =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Status::conflict(info, name, CONFLICT_MODIFIED).into())
}

fn patch_object(
    state: &AppState,
    target: &Target,
    name: &str,
    sub: Option<&str>,
    content_type: &str,
    body: &[u8],
    dry_run: bool,
) -> Result<(StatusCode, Value), ApiError> {
    let info = target.info;
    // GuaranteedUpdate: re-read and re-apply when someone else wrote in between.
    for _ in 0..8 {
        let old = state
            .store
            .get(&target.key(name))
            .map_err(|e| store_err(info, name, e))?;
        let Some(old) = old else {
            if content_type == "application/apply-patch+yaml" && sub.is_none() {
                // Server-side apply creates what does not exist.
                let mut h = HeaderMap::new();
                h.insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/yaml"),
                );
                let mut obj = decode_body(&h, body)?;
                if meta::name(&obj).is_none_or(str::is_empty) {
                    meta::set_name(&mut obj, name);
                }
                return Ok((StatusCode::CREATED, create(state, target, obj, dry_run)?));
            }
            return Err(Status::not_found(info, name).into());
        };
        let mut patched = old.clone();
        patch::apply_patch(content_type, &mut patched, body, info)
            .map_err(|e| patch_error(info, name, e))?;
        let old_rv = rv_u64(&old);
        let precondition = match meta::resource_version(&patched) {
            Some(rv) if Some(rv) != meta::resource_version(&old) => {
                // The patch named a resourceVersion: it is a precondition, and it is stale.
                return Err(Status::conflict(info, name, CONFLICT_MODIFIED).into());
            }
            _ => old_rv,
        };
        match finish_update(
            state,
            target,
            name,
            sub,
            &old,
            patched,
            precondition,
            dry_run,
        ) {
            Ok(out) => {
                finalize_if_done(state, target, name, &out);
                return Ok((StatusCode::OK, out));
            }
            Err(ApiError(s)) if s.code() == 409 && s.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Status::conflict(info, name, CONFLICT_MODIFIED).into())
}

fn patch_error(_info: &ResourceInfo, _name: &str, e: patch::PatchError) -> Status {
    // 415 unknown content type, 400 malformed patch, 422 failed JSON-patch `test` (kube's mapping).
    e.to_status()
}

/// Finishes a deletion that was waiting on finalizers: kube-apiserver removes an object on update once
/// it has a `deletionTimestamp`, no `metadata.finalizers` left and a grace period of zero (so a pod in
/// graceful termination is not removed by a status update; its node deletes it).
fn finalize_if_done(state: &AppState, target: &Target, name: &str, obj: &Value) {
    let pending = meta::deletion_timestamp(obj).is_some()
        && meta::finalizers(obj).is_empty()
        && obj["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            == 0;
    if pending
        && let Ok(gone) = state.store.delete(&target.key(name), rv_u64(obj))
        && target.info.group.is_empty()
        && target.info.resource == "services"
    {
        state.alloc.release(&ServiceAllocator::held_by(&gone));
    }
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
    fn from_request(q: &Query, headers: &HeaderMap, body: &[u8]) -> Result<DeleteOptions, Status> {
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

const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// Deletion that waits (graceful pod deletion, finalizers): the object stays, marked with
/// `deletionTimestamp` and `deletionGracePeriodSeconds`, until its owner finishes.
fn mark_deleting(
    state: &AppState,
    target: &Target,
    name: &str,
    current: &Value,
    when: jiff::Timestamp,
    grace: i64,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let mut marked = current.clone();
    meta::set_deletion_timestamp(&mut marked, &meta::format_time(when));
    marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    if dry_run {
        return Ok(marked);
    }
    state
        .store
        .update(&target.key(name), marked, rv_u64(current))
        .map_err(|e| store_err(target.info, name, e).into())
}

pub(crate) fn delete(
    state: &AppState,
    target: &Target,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let info = target.info;
    let key = target.key(name);
    let current = state
        .store
        .get(&key)
        .map_err(|e| store_err(info, name, e))?
        .ok_or_else(|| Status::not_found(info, name))?;
    if let Some(rv) = opts.precondition_rv
        && Some(rv) != rv_u64(&current)
    {
        return Err(Status::conflict(
            info,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta::resource_version(&current).unwrap_or("")
            ),
        )
        .into());
    }
    if let Some(uid) = &opts.precondition_uid
        && Some(uid.as_str()) != meta::uid(&current)
    {
        return Err(Status::conflict(
            info,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::uid(&current).unwrap_or("")
            ),
        )
        .into());
    }
    let core = info.group.is_empty();
    if core && info.resource == "namespaces" && PROTECTED_NAMESPACES.contains(&name) {
        return Err(Status::forbidden(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        ))
        .into());
    }
    if core && info.resource == "pods" {
        let bound = current["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let default_grace = current["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        let grace = opts.grace_period_seconds.unwrap_or(default_grace).max(0);
        if bound && grace > 0 {
            // Graceful deletion: only mark it; the node agent stops the pod and deletes it with grace 0.
            let existing = current["metadata"]["deletionGracePeriodSeconds"].as_i64();
            if existing.is_some_and(|e| e <= grace) {
                return Ok(current);
            }
            let when = jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(grace))
                .unwrap_or_else(|_| jiff::Timestamp::now());
            return mark_deleting(state, target, name, &current, when, grace, opts.dry_run);
        }
    }
    if !meta::finalizers(&current).is_empty() {
        // Finalizers hold the object: mark it and let their owners finish (they remove their
        // finalizer; the last removal deletes the object, see finalize_if_done).
        if meta::deletion_timestamp(&current).is_some() {
            return Ok(current);
        }
        let now = jiff::Timestamp::now();
        return mark_deleting(state, target, name, &current, now, 0, opts.dry_run);
    }
    if opts.dry_run {
        return Ok(current);
    }
    if core && info.resource == "namespaces" {
        delete_namespace_contents(state, name);
    }
    let gone = state
        .store
        .delete(&key, opts.precondition_rv)
        .map_err(|e| store_err(info, name, e))?;
    if core && info.resource == "services" {
        state.alloc.release(&ServiceAllocator::held_by(&gone));
    }
    Ok(gone)
}

/// Deletes every namespaced object in `ns`, synchronously (see the module docs).
fn delete_namespace_contents(state: &AppState, ns: &str) {
    for info in registry::resources().iter().filter(|i| i.namespaced) {
        let Ok((items, _)) = state.store.list(&info.store_resource(), Some(ns)) else {
            continue;
        };
        for obj in items {
            let key = ObjectKey::new(info.store_resource(), Some(ns), name_of(&obj));
            if let Ok(gone) = state.store.delete(&key, None)
                && info.group.is_empty()
                && info.resource == "services"
            {
                state.alloc.release(&ServiceAllocator::held_by(&gone));
            }
        }
    }
}

/// `POST serviceaccounts/{name}/token` (the TokenRequest API, `kubectl create token`): a short-lived
/// token signed with `--service-account-signing-key-file`. kube-apiserver issues bound tokens with an
/// `aud` claim and nested `kubernetes.io` claims; the lab signs the shared claim shape of
/// `proxylab-apimachinery::serviceaccount` with the configured issuer, `iat` and `exp` (no `aud`, and a
/// `boundObjectRef` is recorded only when it names a Secret).
fn token_request(
    state: &AppState,
    target: &Target,
    name: &str,
    req: &Value,
) -> Result<Value, ApiError> {
    let info = target.info;
    let Some(key) = &state.sa_signing_key else {
        return Err(not_found_path().into());
    };
    let ns = target.namespace.clone().unwrap_or_default();
    let sa = state
        .store
        .get(&target.key(name))
        .map_err(|e| store_err(info, name, e))?
        .ok_or_else(|| Status::not_found(info, name))?;
    let spec = &req["spec"];
    let expiration = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    if !(600..=(1i64 << 32)).contains(&expiration) {
        return Err(Status::invalid(
            ("authentication.k8s.io", "TokenRequest"),
            name,
            vec![Cause::invalid(
                "spec.expirationSeconds",
                &json!(expiration),
                "may not specify a duration less than 10 minutes",
            )],
        )
        .into());
    }
    let audiences = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => Value::Array(a.clone()),
        _ => json!([state.sa_issuer]),
    };
    let bound = &spec["boundObjectRef"];
    let secret_name = (bound["kind"] == "Secret")
        .then(|| bound["name"].as_str().map(str::to_owned))
        .flatten();
    let now = jiff::Timestamp::now();
    let mut claims = serviceaccount::SaClaims::legacy(&ns, name, meta::uid(&sa).unwrap_or(""), "");
    claims.iss = state.sa_issuer.clone();
    claims.secret_name = secret_name;
    claims.iat = Some(now.as_second());
    claims.exp = Some(now.as_second() + expiration);
    let token = serviceaccount::sign_token(key, &claims).map_err(Status::internal)?;
    let expires = jiff::Timestamp::from_second(now.as_second() + expiration).unwrap_or(now);
    Ok(json!({
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": {"audiences": audiences, "expirationSeconds": expiration,
            "boundObjectRef": if bound.is_object() { bound.clone() } else { Value::Null }},
        "status": {"token": token, "expirationTimestamp": meta::format_time(expires)},
    }))
}

/// `POST pods/{name}/binding`: the scheduler's way of assigning a pod to a node.
fn bind_pod(
    state: &AppState,
    target: &Target,
    name: &str,
    binding: &Value,
) -> Result<(), ApiError> {
    let info = target.info;
    let node = binding["target"]["name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(info, binding, vec![Cause::required("target.name")]))?;
    for _ in 0..8 {
        let pod = state
            .store
            .get(&target.key(name))
            .map_err(|e| store_err(info, name, e))?
            .ok_or_else(|| Status::not_found(info, name))?;
        if let Some(cur) = pod["spec"]["nodeName"].as_str().filter(|s| !s.is_empty()) {
            return Err(Status::conflict(
                info,
                name,
                &format!("pod {name} is already assigned to node \"{cur}\""),
            )
            .into());
        }
        let mut p = pod.clone();
        p["spec"]["nodeName"] = json!(node);
        let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": meta::now_rfc3339()});
        let mut conds: Vec<Value> = p["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conds.retain(|c| c["type"] != "PodScheduled");
        conds.push(cond);
        if !p["status"].is_object() {
            p["status"] = Value::Object(Map::new());
        }
        p["status"]["conditions"] = Value::Array(conds);
        match state.store.update(&target.key(name), p, rv_u64(&pod)) {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(info, name, e).into()),
        }
    }
    Err(Status::conflict(info, name, CONFLICT_MODIFIED).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = parse_target("", "v1", &["namespaces", "d", "pods", "p", "status"]).unwrap();
        assert_eq!(
            (
                t.info.resource,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("pods", Some("d"), Some("p"), Some("status"))
        );
        let t = parse_target("", "v1", &["namespaces", "d"]).unwrap();
        assert_eq!(
            (t.info.resource, t.name.as_deref()),
            ("namespaces", Some("d"))
        );
        let t = parse_target("", "v1", &["namespaces", "d", "status"]).unwrap();
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = parse_target("", "v1", &["pods"]).unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        assert!(parse_target("", "v1", &["pods", "x"]).is_err());
        let t = parse_target("", "v1", &["watch", "namespaces", "d", "pods"]).unwrap();
        assert!(t.legacy_watch);
        assert!(parse_target("", "v1", &["nope"]).is_err());
        assert!(parse_target("", "v1", &[]).is_err());
        let t = parse_target(
            "discovery.k8s.io",
            "v1",
            &["namespaces", "d", "endpointslices"],
        )
        .unwrap();
        assert_eq!(t.info.store_resource(), "endpointslices.discovery.k8s.io");
    }

    #[test]
    fn continue_token_roundtrip() {
        let t = encode_continue(7, "ns", "a");
        assert_eq!(decode_continue(&t).unwrap(), (7, "ns".into(), "a".into()));
        assert!(decode_continue("!!").is_err());
    }
}
