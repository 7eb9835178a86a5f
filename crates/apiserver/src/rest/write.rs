//! The write verbs: create, update (PUT) and patch — kube's "registry strategy" for each write
//! before it reaches storage.
//!
//! - **create**: namespace must exist; `generateName` → name + 5 random characters; `uid`,
//!   `creationTimestamp`, `generation: 1` set; per-kind defaults (pods start `Pending`, namespaces
//!   `Active`, Services get their ClusterIP/NodePorts from [`crate::allocator`]); validation → 422.
//! - **update** (PUT) of the main resource keeps `.status` of resources with a status subresource;
//!   PUT/PATCH of `…/status` changes only `.status`. `generation` increments when `.spec` changes.
//!   A `metadata.resourceVersion` in the body is a precondition (stale → 409 Conflict); without it the
//!   update is unconditional (retried over concurrent writes, as kube's GuaranteedUpdate does).
//! - **patch**: JSON patch, merge patch, strategic merge patch and server-side apply (approximated as a
//!   strategic merge of the applied configuration, creating what does not exist); then as update.
//!
//! Simplifications: no admission webhooks, no managedFields, `fieldValidation` and `fieldManager` are
//! accepted and ignored.

use base64::Engine;
use http::StatusCode;
use proxylab_apimachinery::registry::ResourceInfo;
use proxylab_apimachinery::status::{CONFLICT_MODIFIED, Cause, Status};
use proxylab_apimachinery::{meta, patch, validation};
use proxylab_store::{ObjectKey, StoreError};
use rand::Rng;
use serde_json::{Value, json};

use crate::allocator::{Allocated, ServiceAllocator};
use crate::errors::store_err;
use crate::request::{Target, decode_as};
use crate::response::ApiError;
use crate::rest::defaults;
use crate::rest::delete::finalize_if_done;
use crate::state::AppState;

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

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix() -> String {
    let mut rng = rand::rng();
    (0..5)
        .map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char)
        .collect()
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
    Status::invalid(info, meta::name(obj).unwrap_or(""), causes)
}

/// What kube's conversion into the internal version does on every write: a Secret's write-only
/// `stringData` is merged into `data` (base64), winning over a `data` key of the same name, and is
/// never stored.
fn normalize(info: &ResourceInfo, obj: &mut Value) {
    let all_strings = obj
        .get("stringData")
        .and_then(Value::as_object)
        .is_some_and(|m| m.values().all(Value::is_string));
    // Anything else is left for validation to reject with its field path.
    if !(info.group.is_empty() && info.resource == "secrets" && all_strings) {
        return;
    }
    let Some(string_data) = obj
        .as_object_mut()
        .and_then(|m| m.shift_remove("stringData"))
    else {
        return;
    };
    if let Value::Object(sd) = string_data {
        let data = meta::object_mut(obj, "data");
        for (k, v) in sd {
            if let Some(s) = v.as_str() {
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
}

/// Per-kind defaults applied on create (kube's `PrepareForCreate` + defaulting).
fn defaults_on_create(info: &ResourceInfo, obj: &mut Value) {
    match (info.group, info.resource) {
        ("", "pods") => {
            defaults::pod_spec(&mut obj["spec"]);
            // The apiserver owns a new pod's status: Pending until a node reports otherwise.
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        ("", "namespaces") => {
            let name = meta::name(obj).unwrap_or("").to_owned();
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
        ("apps", "deployments" | "replicasets") => {
            defaults::workload(info.resource, obj);
            // The controllers own a workload's status.
            obj["status"] = json!({});
        }
        ("batch", "jobs") => {
            defaults::job(obj);
            obj["status"] = json!({});
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
    normalize(info, &mut obj);
    defaults_on_create(info, &mut obj);

    // A generated name may collide; retry with a fresh suffix as kube-apiserver does.
    let attempts = if explicit { 1 } else { 8 };
    for attempt in 0..attempts {
        if !explicit {
            let base = generate.clone().unwrap_or_default();
            meta::set_name(&mut obj, &format!("{base}{}", random_suffix()));
        }
        let mut candidate = obj.clone();
        if (info.group, info.resource) == ("batch", "jobs") {
            // The selector names the Job, so it is made once the name is final.
            defaults::job_selector(&mut candidate);
        }
        let name = meta::name(&candidate).unwrap_or("").to_owned();
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
    allocated: Option<Allocated>,
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
pub(crate) fn finish_update(
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
    if info.group == "apps" && sub.is_none() {
        // kube defaults every object it decodes, so a PUT without `strategy` keeps the default one.
        defaults::workload(info.resource, &mut obj);
    }
    if (info.group, info.resource) == ("batch", "jobs") && sub.is_none() {
        defaults::job(&mut obj);
    }
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
    normalize(info, &mut obj);
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

pub(crate) fn update(
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
            && Some(p) != meta::resource_version_u64(&old)
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
            meta::resource_version_u64(&old),
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

pub(crate) fn patch_object(
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
                let mut obj = decode_as("application/yaml", body)?;
                if meta::name(&obj).is_none_or(str::is_empty) {
                    meta::set_name(&mut obj, name);
                }
                return Ok((StatusCode::CREATED, create(state, target, obj, dry_run)?));
            }
            return Err(Status::not_found(info, name).into());
        };
        let mut patched = old.clone();
        patch::apply_patch(content_type, &mut patched, body, info)
            // 415 unknown content type, 400 malformed patch, 422 failed JSON-patch `test` (kube's mapping).
            .map_err(|e| e.to_status())?;
        let old_rv = meta::resource_version_u64(&old);
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
