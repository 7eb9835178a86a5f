//! The delete verbs: delete, deletecollection, and finishing deletions that waited.
//!
//! - Pods bound to a node are deleted *gracefully*: the apiserver only stamps `deletionTimestamp` /
//!   `deletionGracePeriodSeconds` and the node agent finishes the job with a `gracePeriodSeconds=0`
//!   delete, as a kubelet does.
//! - An object with `metadata.finalizers` is only marked (`deletionTimestamp`) and disappears when an
//!   update removes its last finalizer ([`finalize_if_done`]).
//! - Deleting a Namespace deletes everything in it *synchronously* (kube-apiserver marks it Terminating
//!   and the namespace controller empties it asynchronously; the lab keeps it simple).

use proxylab_apimachinery::meta;
use proxylab_apimachinery::registry;
use proxylab_apimachinery::status::Status;
use proxylab_store::ObjectKey;
use serde_json::{Value, json};

use crate::allocator::ServiceAllocator;
use crate::errors::store_err;
use crate::request::{DeleteOptions, Query, Selectors, Target};
use crate::response::ApiError;
use crate::state::AppState;

const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

fn is_service(target: &Target) -> bool {
    target.info.group.is_empty() && target.info.resource == "services"
}

/// The finalizers through which the garbage collector implements `propagationPolicy`.
const GC_FINALIZERS: &[&str] = &["orphan", "foregroundDeletion"];

/// The finalizer a `DELETE` with `propagationPolicy: Orphan` or `Foreground` puts on the object,
/// for the kinds whose dependents the lab's garbage collector follows (Deployments own
/// ReplicaSets, ReplicaSets and Jobs own Pods). `Background` (the default) deletes the object at once and
/// the collector removes the dependents afterwards. Other kinds have no dependents in the lab and
/// are deleted at once whatever the policy.
fn gc_finalizer(target: &Target, opts: &DeleteOptions) -> Option<&'static str> {
    if !matches!(
        (target.info.group, target.info.resource),
        ("apps", "deployments" | "replicasets") | ("batch", "jobs")
    ) {
        return None;
    }
    match opts.propagation_policy.as_deref() {
        Some("Orphan") => Some("orphan"),
        Some("Foreground") => Some("foregroundDeletion"),
        _ => None,
    }
}

/// Finishes a deletion that was waiting on finalizers: kube-apiserver removes an object on update once
/// it has a `deletionTimestamp`, no `metadata.finalizers` left and a grace period of zero (so a pod in
/// graceful termination is not removed by a status update; its node deletes it).
pub(crate) fn finalize_if_done(state: &AppState, target: &Target, name: &str, obj: &Value) {
    let pending = meta::deletion_timestamp(obj).is_some()
        && meta::finalizers(obj).is_empty()
        && obj["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            == 0;
    if pending
        && let Ok(gone) = state
            .store
            .delete(&target.key(name), meta::resource_version_u64(obj))
        && is_service(target)
    {
        state.alloc.release(&ServiceAllocator::held_by(&gone));
    }
}

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
        .update(
            &target.key(name),
            marked,
            meta::resource_version_u64(current),
        )
        .map_err(|e| store_err(target.info, name, e).into())
}

/// `DELETE …/{resource}/{name}`.
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
        && Some(rv) != meta::resource_version_u64(&current)
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
    if let Some(finalizer) = gc_finalizer(target, opts) {
        // Orphan / Foreground: the object stays, marked, until the garbage collector has
        // released or deleted its dependents and removed this finalizer.
        if meta::deletion_timestamp(&current).is_some()
            && meta::finalizers(&current).contains(&finalizer)
        {
            return Ok(current);
        }
        let mut held = current.clone();
        let mut finalizers: Vec<Value> = meta::finalizers(&current)
            .into_iter()
            .filter(|f| !GC_FINALIZERS.contains(f))
            .map(Value::from)
            .collect();
        finalizers.push(json!(finalizer));
        held["metadata"]["finalizers"] = Value::Array(finalizers);
        let now = jiff::Timestamp::now();
        return mark_deleting(state, target, name, &held, now, 0, opts.dry_run);
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
    if is_service(target) {
        state.alloc.release(&ServiceAllocator::held_by(&gone));
    }
    Ok(gone)
}

/// `DELETE …/{resource}` with selectors: deletes each match as [`delete`] would, and answers the list
/// of what was deleted (or marked).
pub(crate) fn delete_collection(
    state: &AppState,
    target: &Target,
    q: &Query,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let info = target.info;
    let sel = Selectors::parse(info, q, None)?;
    let (items, _) = state
        .store
        .list(&info.store_resource(), target.namespace.as_deref())
        .map_err(|e| store_err(info, "", e))?;
    let mut deleted = Vec::new();
    for obj in items.into_iter().filter(|o| sel.matches(o)) {
        let mut t = target.clone();
        t.namespace = meta::namespace(&obj).map(str::to_owned);
        match delete(state, &t, meta::name(&obj).unwrap_or(""), opts) {
            Ok(v) => deleted.push(v),
            Err(ApiError(s)) if s.code() == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(
        json!({"apiVersion": info.api_version(), "kind": info.list_kind(),
        "metadata": {"resourceVersion": state.store.current_resource_version().to_string()},
        "items": deleted}),
    )
}

/// Deletes every namespaced object in `ns`, synchronously (see the module docs).
fn delete_namespace_contents(state: &AppState, ns: &str) {
    for info in registry::resources().iter().filter(|i| i.namespaced) {
        let Ok((items, _)) = state.store.list(&info.store_resource(), Some(ns)) else {
            continue;
        };
        for obj in items {
            let key = ObjectKey::new(
                info.store_resource(),
                Some(ns),
                meta::name(&obj).unwrap_or(""),
            );
            if let Ok(gone) = state.store.delete(&key, None)
                && info.group.is_empty()
                && info.resource == "services"
            {
                state.alloc.release(&ServiceAllocator::held_by(&gone));
            }
        }
    }
}
