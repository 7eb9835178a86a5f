//! The one place that builds the `Status` answers of the apiserver's own routing and storage layer.
//!
//! Object-level errors (`pods "x" not found`, `… is invalid`, conflicts) come from
//! [`proxylab_apimachinery::status::Status`]'s constructors, which copy kube-apiserver's wording. What is
//! left is what only a server says — a path it does not serve, a method a path does not take, a body over
//! the limit, a storage failure — and each of those is built here, once.
//!
//! ## Honest answers
//! Where kube-apiserver answers a bare `404 the server could not find the requested resource`, the lab
//! says what it does not serve, and tells apart the two reasons a request can miss (using the catalogue
//! of [`proxylab_apimachinery::upstream`]):
//!
//! | the request names | answer |
//! |---|---|
//! | something no kube-apiserver serves (a typo, a custom resource, an unknown path) | `404 NotFound`, "the lab apiserver does not serve …, and neither does kube-apiserver" |
//! | a resource, subresource or path kube-apiserver serves and the lab leaves out | `501 NotImplemented`, "the lab apiserver does not serve …: <why>" |
//! | the discovery document of a group the lab leaves out (`/apis/rbac.authorization.k8s.io/v1`) | `404 NotFound` with the same explanation — discovery clients read 404 as "this server has no such group", which is true |
//! | a verb the resource does not take | `405 MethodNotAllowed` |

use proxylab_apimachinery::registry::{self, ResourceInfo};
use proxylab_apimachinery::status::{CONFLICT_MODIFIED, Details, Status};
use proxylab_apimachinery::upstream;
use proxylab_store::StoreError;

use crate::request::RequestInfo;

/// Where a reader finds what the lab models.
const SEE: &str = "docs/lab.md lists what the lab models";

fn gv(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

fn with_details(mut s: Status, group: &str, kind: &str, name: &str) -> Status {
    s.details = Some(Details {
        name: name.to_owned(),
        group: group.to_owned(),
        kind: kind.to_owned(),
        ..Details::default()
    });
    s
}

/// 404: the request names something neither the lab nor kube-apiserver serves.
fn nobody_serves(what: String) -> Status {
    Status::new(
        404,
        "NotFound",
        format!("the lab apiserver does not serve {what}, and neither does kube-apiserver"),
    )
}

/// 501: kube-apiserver serves it; the lab does not model it.
fn lab_leaves_out(what: String, why: &str) -> Status {
    Status::new(
        501,
        "NotImplemented",
        format!("the lab apiserver does not serve {what}: {why} (kube-apiserver does; {SEE})"),
    )
}

/// A path that is not a resource request and not one the lab serves (`/foo`, `/openid/v1/jwks`,
/// `/apis/rbac.authorization.k8s.io/v1`).
pub(crate) fn path_not_served(path: &str) -> Status {
    if let Some(why) = upstream::non_resource(path) {
        return lab_leaves_out(path.to_owned(), why);
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version) = match segs.as_slice() {
        ["api", v] => ("", Some(*v)),
        ["apis", g] => (*g, None),
        ["apis", g, v] => (*g, Some(*v)),
        _ => return nobody_serves(path.to_owned()),
    };
    // A discovery document of a group (version) the lab does not serve: 404, so discovery clients
    // conclude the group is absent, with the reason in the message.
    let upstream_group = upstream::groups()
        .iter()
        .find(|g| g.group == group && version.is_none_or(|v| g.versions.contains(&v)));
    let what = match version {
        Some(v) => format!("the API group version {}", gv(group, v)),
        None => format!("the API group {group}"),
    };
    match upstream_group {
        Some(g) => Status::new(
            404,
            "NotFound",
            format!(
                "the lab apiserver does not serve {what}: {} (kube-apiserver does; {SEE})",
                g.why
            ),
        ),
        None => nobody_serves(what),
    }
}

/// A resource request for a group/version/resource the lab's registry does not have.
pub(crate) fn resource_not_served(ri: &RequestInfo) -> Status {
    let gr = qualified(&ri.group, &ri.resource);
    let s = if upstream::resource(&ri.group, &ri.version, &ri.resource).is_some() {
        let why = upstream::group_version(&ri.group, &ri.version).map_or("not modelled", |g| g.why);
        lab_leaves_out(format!("{gr} ({})", gv(&ri.group, &ri.version)), why)
    } else if registry::versions_of(&ri.group).is_empty()
        && upstream::group_version(&ri.group, &ri.version).is_none()
    {
        nobody_serves(format!(
            "the API group version {}",
            gv(&ri.group, &ri.version)
        ))
    } else {
        nobody_serves(format!(
            "the resource {:?} in {}",
            ri.resource,
            gv(&ri.group, &ri.version)
        ))
    };
    with_details(s, &ri.group, &ri.resource, ri.name.as_deref().unwrap_or(""))
}

/// A resource the lab serves, named in a path of the wrong shape (a namespaced object without its
/// namespace, a cluster-scoped one inside a namespace, segments after the subresource).
pub(crate) fn bad_resource_path(info: &ResourceInfo, path: &str) -> Status {
    let scope = if info.namespaced {
        format!(
            "{} are namespaced: one is named under /namespaces/{{namespace}}/{}",
            info.resource, info.resource
        )
    } else {
        format!("{} are cluster-scoped", info.resource)
    };
    with_details(
        Status::new(
            404,
            "NotFound",
            format!("the lab apiserver does not serve {path}: {scope}"),
        ),
        info.group,
        info.resource,
        "",
    )
}

/// A subresource the lab does not serve on a resource it does.
pub(crate) fn subresource_not_served(info: &ResourceInfo, sub: &str) -> Status {
    let name = format!("{}/{sub}", qualified(info.group, info.resource));
    let kube = upstream::resource(info.group, info.version, info.resource)
        .is_some_and(|subs| subs.contains(&sub));
    let s = if kube {
        let why = match sub {
            "proxy" | "log" | "exec" | "attach" | "portforward" => {
                "the apiserver proxy (the bastion) is not mounted in this apiserver"
            }
            "eviction" => "the eviction API (and disruption budgets) is not modelled",
            "ephemeralcontainers" | "resize" => "pods are not changed in place",
            "finalize" => "namespaces are emptied synchronously when deleted",
            "approval" => "certificate signing requests are not modelled",
            _ => "not modelled",
        };
        lab_leaves_out(name, why)
    } else {
        nobody_serves(name)
    };
    with_details(s, info.group, info.resource, "")
}

/// `serviceaccounts/{name}/token` when the server has no signing key.
pub(crate) fn token_request_off() -> Status {
    Status::new(
        404,
        "NotFound",
        "the lab apiserver does not serve serviceaccounts/token: it was started without \
         --service-account-signing-key-file (kube-apiserver does not serve it then either)",
    )
}

/// 405 for a non-resource path (discovery, `/version`, health; `selfsubjectreviews`) asked with a
/// method other than the one it takes.
pub(crate) fn path_method_not_allowed(method: &http::Method, path: &str, allowed: &str) -> Status {
    Status::new(
        405,
        "MethodNotAllowed",
        format!("{method} is not supported on {path}: it takes {allowed} only"),
    )
}

/// An OpenAPI v3 document the lab does not publish.
pub(crate) fn openapi_not_served(path: &str) -> Status {
    Status::new(
        404,
        "NotFound",
        format!(
            "the lab apiserver does not serve {path}: it publishes a document for each group version \
             it serves, listed at /openapi/v3"
        ),
    )
}

/// 413: the request body is larger than `limit` bytes (kube-apiserver's wording).
pub(crate) fn body_too_large(limit: usize) -> Status {
    Status::request_entity_too_large(format!("Request entity too large: limit is {limit}"))
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
