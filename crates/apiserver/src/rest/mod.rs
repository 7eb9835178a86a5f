//! The REST layer: resource URLs → verbs → store operations.
//!
//! kube-apiserver maps HTTP methods to verbs: GET → get / list / watch, POST → create, PUT → update,
//! PATCH → patch (JSON patch, merge patch, strategic merge patch, server-side apply), DELETE → delete /
//! deletecollection. [`handle`] does that mapping for a parsed [`Target`] and calls one module per
//! verb family, each over the [`Store`](proxylab_store::Store) and the pure functions of
//! `proxylab-apimachinery` (validation, patches, selectors, Table printing):
//!
//! | module | verbs |
//! |---|---|
//! | [`read`] | get, list (paging, Table output) |
//! | [`watch`] | watch (initial events, bookmarks, 410 Expired) |
//! | [`write`] | create, update, patch (registry strategy, admission, validation) |
//! | [`delete`] | delete, deletecollection, graceful pod deletion, finalizers |
//! | [`subresources`] | `pods/binding`, `serviceaccounts/token` |
//! | [`scale`] | `deployments/scale`, `replicasets/scale` (an `autoscaling/v1` Scale) |
//! | [`defaults`] | the fields kube fills in on writes (pods, workloads) |
//!
//! Requests are parsed in [`crate::request`]; errors are `Status` objects from
//! `proxylab-apimachinery` or [`crate::errors`].

pub(crate) mod defaults;
pub(crate) mod delete;
pub(crate) mod read;
pub(crate) mod scale;
pub(crate) mod subresources;
pub(crate) mod watch;
pub(crate) mod write;

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, Method, StatusCode, header};
use proxylab_apimachinery::status::Status;

use crate::errors;
use crate::request::{DeleteOptions, Query, Target, decode_body};
use crate::response::{self, ApiError, ApiResult, Format};
use crate::state::AppState;

/// The patch media types kube-apiserver accepts.
const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// The media type of a PATCH body, if it is one kube-apiserver accepts (else 415).
fn patch_content_type(headers: &HeaderMap) -> Result<String, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    if PATCH_TYPES.contains(&ct.as_str()) {
        Ok(ct)
    } else {
        Err(Status::unsupported_media_type(&ct).into())
    }
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
        let known = (info.has_subresource(sub) && (sub == "status" || sub == "scale"))
            || (sub == "binding" && core && info.resource == "pods")
            || (sub == "token" && core && info.resource == "serviceaccounts");
        if !known {
            return Err(errors::subresource_not_served(info, sub).into());
        }
        if target.name.is_none() {
            return Err(
                errors::bad_resource_path(info, &format!("{}/{sub}", info.resource)).into(),
            );
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
            .map_err(|_| ApiError(errors::body_too_large(state.max_body)))
    };
    match (
        method.clone(),
        target.name.clone(),
        target.subresource.as_deref(),
    ) {
        // A watch of the collection, or of one object (`…/pods/x?watch=true`, which kube-apiserver
        // serves as a watch with `metadata.name=x`).
        (Method::GET, ref name, sub) if watch && (name.is_none() || sub.is_none()) => {
            verb_ok("watch")?;
            watch::watch(state, &target, q, headers).await
        }
        (Method::GET, Some(name), Some("scale")) => {
            verb_ok("get")?;
            Ok(response::object(
                StatusCode::OK,
                &scale::get(state, &target, &name)?,
                fmt,
            ))
        }
        (Method::PUT, Some(name), Some("scale")) => {
            verb_ok("update")?;
            let bytes = read_body(body).await?;
            let obj = decode_body(headers, &bytes)?;
            let (code, out) = scale::update(state, &target, &name, &obj, q.dry_run())?;
            Ok(response::object(code, &out, fmt))
        }
        (Method::PATCH, Some(name), Some("scale")) => {
            verb_ok("patch")?;
            let ct = patch_content_type(headers)?;
            let bytes = read_body(body).await?;
            let (code, out) = scale::patch(state, &target, &name, &ct, &bytes, q.dry_run())?;
            Ok(response::object(code, &out, fmt))
        }
        (Method::GET, None, _) => {
            verb_ok("list")?;
            read::list(state, &target, q, headers, fmt)
        }
        (Method::GET, Some(name), _) => {
            verb_ok("get")?;
            read::get(state, &target, &name, q, headers, fmt)
        }
        (Method::POST, None, _) => {
            verb_ok("create")?;
            if info.namespaced && target.namespace.is_none() {
                return Err(Status::method_not_allowed(info, "create").into());
            }
            let bytes = read_body(body).await?;
            let obj = decode_body(headers, &bytes)?;
            let created = write::create(state, &target, obj, q.dry_run())?;
            Ok(response::object(StatusCode::CREATED, &created, fmt))
        }
        (Method::POST, Some(name), Some("binding")) => {
            let bytes = read_body(body).await?;
            let obj = decode_body(headers, &bytes)?;
            subresources::bind_pod(state, &target, &name, &obj)?;
            let ok = Status::success(info, &name);
            Ok(response::object(StatusCode::CREATED, &ok.to_value(), fmt))
        }
        (Method::POST, Some(name), Some("token")) => {
            let bytes = read_body(body).await?;
            let obj = decode_body(headers, &bytes)?;
            let out = subresources::token_request(state, &target, &name, &obj)?;
            Ok(response::object(StatusCode::CREATED, &out, fmt))
        }
        (Method::PUT, Some(name), sub) => {
            verb_ok("update")?;
            let bytes = read_body(body).await?;
            let obj = decode_body(headers, &bytes)?;
            let (code, out) = write::update(state, &target, &name, sub, obj, q.dry_run())?;
            Ok(response::object(code, &out, fmt))
        }
        (Method::PATCH, Some(name), sub) => {
            verb_ok("patch")?;
            let ct = patch_content_type(headers)?;
            let bytes = read_body(body).await?;
            let (code, out) =
                write::patch_object(state, &target, &name, sub, &ct, &bytes, q.dry_run())?;
            Ok(response::object(code, &out, fmt))
        }
        (Method::DELETE, Some(name), None) => {
            verb_ok("delete")?;
            let bytes = read_body(body).await?;
            let opts = DeleteOptions::from_request(q, headers, &bytes)?;
            let out = delete::delete(state, &target, &name, &opts)?;
            Ok(response::object(StatusCode::OK, &out, fmt))
        }
        (Method::DELETE, None, None) => {
            verb_ok("deletecollection")?;
            if info.resource == "namespaces" {
                return Err(Status::method_not_allowed(info, "deletecollection").into());
            }
            let bytes = read_body(body).await?;
            let opts = DeleteOptions::from_request(q, headers, &bytes)?;
            let list = delete::delete_collection(state, &target, q, &opts)?;
            Ok(response::object(StatusCode::OK, &list, fmt))
        }
        _ => Err(Status::method_not_allowed(info, method.as_str()).into()),
    }
}
