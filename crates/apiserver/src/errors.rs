//! The one place that builds the `Status` answers of the apiserver's own routing and storage layer.
//!
//! Object-level errors (`pods "x" not found`, `… is invalid`, conflicts) come from
//! [`proxylab_apimachinery::status::Status`]'s constructors, which copy kube-apiserver's wording. What is
//! left is what only a server says — a path it does not serve, a method a path does not take, a body over
//! the limit, a storage failure — and each of those is built here, once.

use proxylab_apimachinery::registry::ResourceInfo;
use proxylab_apimachinery::status::{CONFLICT_MODIFIED, Status};
use proxylab_store::StoreError;

/// 404 for a path that names nothing the server serves (kube-apiserver's generic wording).
pub(crate) fn path_not_found() -> Status {
    Status::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// 405 for a non-resource path (discovery, `/version`, health) asked with a method it does not take.
pub(crate) fn path_method_not_allowed() -> Status {
    Status::new(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    )
}

/// 413: the request body is larger than `limit` bytes.
pub(crate) fn body_too_large(limit: usize) -> Status {
    Status::request_entity_too_large(format!(
        "the request body is too large: limit is {limit} bytes"
    ))
}

/// A storage error as the client sees it, about object `name` of `info`.
pub(crate) fn store_err(info: &ResourceInfo, name: &str, e: StoreError) -> Status {
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

/// A watch from a resourceVersion older than the history: the single `ERROR` event's 410, after which
/// clients list again.
pub(crate) fn watch_rv_expired(since: u64, oldest: u64) -> Status {
    Status::expired(format!("too old resource version: {since} ({oldest})"))
}

/// A watch from a resourceVersion newer than the store's (a client that talked to another, newer
/// store): kube-apiserver waits briefly for its cache, then answers 504 this way.
pub(crate) fn watch_rv_too_large(rv: u64, current: u64) -> Status {
    Status::timeout(format!(
        "Too large resource version: {rv}, current: {current}"
    ))
}
