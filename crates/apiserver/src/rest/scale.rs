//! The `scale` subresource: `deployments/{name}/scale` and `replicasets/{name}/scale` answer an
//! `autoscaling/v1` `Scale` — the one shape `kubectl scale` and autoscalers use for every
//! scalable kind (`spec.replicas` in, `status.replicas` and the selector as a string out).
//!
//! A write of the Scale changes only the parent's `spec.replicas`; it goes through the parent's
//! update path (validation, generation, resourceVersion precondition), so a stale
//! `metadata.resourceVersion` in the Scale is a 409 as it is in kube-apiserver.

use http::StatusCode;
use proxylab_apimachinery::status::{CONFLICT_MODIFIED, Cause, Status};
use proxylab_apimachinery::{meta, patch, table};
use serde_json::{Value, json};

use crate::errors::store_err;
use crate::request::Target;
use crate::response::ApiError;
use crate::rest::write::finish_update;
use crate::state::AppState;

const SCALE: (&str, &str) = ("autoscaling", "Scale");

/// The Scale view of a Deployment or ReplicaSet.
pub(crate) fn scale_of(obj: &Value) -> Value {
    let mut m = json!({
        "name": meta::name(obj).unwrap_or(""),
        "namespace": meta::namespace(obj).unwrap_or(""),
        "uid": meta::uid(obj).unwrap_or(""),
        "resourceVersion": meta::resource_version(obj).unwrap_or(""),
        "creationTimestamp": meta::creation_timestamp(obj),
    });
    if m["creationTimestamp"].is_null()
        && let Some(o) = m.as_object_mut()
    {
        o.remove("creationTimestamp");
    }
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": m,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": table::format_label_selector(meta::at(obj, &["spec", "selector"])),
        },
    })
}

fn current(state: &AppState, target: &Target, name: &str) -> Result<Value, ApiError> {
    state
        .store
        .get(&target.key(name))
        .map_err(|e| store_err(target.info, name, e))?
        .ok_or_else(|| Status::not_found(target.info, name).into())
}

/// `GET …/{name}/scale`.
pub(crate) fn get(state: &AppState, target: &Target, name: &str) -> Result<Value, ApiError> {
    Ok(scale_of(&current(state, target, name)?))
}

fn replicas_of(scale: &Value, name: &str) -> Result<i64, Status> {
    match scale["spec"]["replicas"].as_i64() {
        Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(n),
        _ => Err(Status::invalid(
            SCALE,
            name,
            vec![Cause::invalid(
                "spec.replicas",
                &scale["spec"]["replicas"],
                "must be greater than or equal to 0",
            )],
        )),
    }
}

/// `PUT …/{name}/scale`: sets the parent's `spec.replicas`.
pub(crate) fn update(
    state: &AppState,
    target: &Target,
    name: &str,
    scale: &Value,
    dry_run: bool,
) -> Result<(StatusCode, Value), ApiError> {
    let info = target.info;
    let replicas = replicas_of(scale, name)?;
    let precondition = meta::resource_version(scale).filter(|s| !s.is_empty());
    for _ in 0..8 {
        let old = current(state, target, name)?;
        if let Some(p) = precondition
            && Some(p) != meta::resource_version(&old)
        {
            return Err(Status::conflict(info, name, CONFLICT_MODIFIED).into());
        }
        let mut obj = old.clone();
        obj["spec"]["replicas"] = json!(replicas);
        match finish_update(
            state,
            target,
            name,
            None,
            &old,
            obj,
            meta::resource_version_u64(&old),
            dry_run,
        ) {
            Ok(out) => return Ok((StatusCode::OK, scale_of(&out))),
            Err(ApiError(s)) if precondition.is_none() && s.code() == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Status::conflict(info, name, CONFLICT_MODIFIED).into())
}

/// `PATCH …/{name}/scale` (`kubectl scale` sends a merge patch `{"spec":{"replicas":N}}`): the
/// patch applies to the Scale, then as [`update`].
pub(crate) fn patch(
    state: &AppState,
    target: &Target,
    name: &str,
    content_type: &str,
    body: &[u8],
    dry_run: bool,
) -> Result<(StatusCode, Value), ApiError> {
    let mut scale = get(state, target, name)?;
    let rv = meta::resource_version(&scale).map(str::to_owned);
    patch::apply_patch(content_type, &mut scale, body, target.info).map_err(|e| e.to_status())?;
    if meta::resource_version(&scale).map(str::to_owned) == rv {
        // A patch that does not name a resourceVersion is no precondition.
        meta::remove_meta(&mut scale, "resourceVersion");
    }
    update(state, target, name, &scale, dry_run)
}
