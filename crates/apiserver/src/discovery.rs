//! Non-resource endpoints: discovery, version, health and OpenAPI.
//!
//! Clients learn what a server serves before they use it. kubectl asks `/api` and `/apis` first —
//! preferably as *aggregated discovery* (one `APIGroupDiscoveryList` with every resource of every group,
//! requested through the `Accept` header and recognised by the response `Content-Type`), falling back
//! to the older per-group lists `/api/v1`, `/apis/{group}/{version}`. `/version` decides which kubectl
//! the machine's dispatcher runs. `/openapi/v3` tells `kubectl apply` that the server validates fields
//! itself. The documents come from `proxylab-apimachinery`; this module only routes and negotiates.
//!
//! Health follows kube-apiserver: `/healthz`, `/livez`, `/readyz` answer `ok`; with `?verbose` they list
//! each check (`[+]ping ok` …) and end with `<endpoint> check passed`; `/readyz/<check>` runs one check.
//! `/readyz` fails (503) once shutdown has begun, so load balancers stop sending new requests first.

use axum::response::Response;
use http::{HeaderMap, StatusCode};
use proxylab_apimachinery::discovery;
use proxylab_apimachinery::openapi;
use proxylab_apimachinery::status::Status;
use serde_json::Value;

use crate::errors;
use crate::protobuf;
use crate::request::Query;
use crate::response::{self, ApiResult, Format};
use crate::state::AppState;

pub use proxylab_apimachinery::discovery::GIT_VERSION;

pub(crate) fn version() -> Value {
    discovery::version_info()
}

/// The aggregated discovery version the client asked for first (`v2`, `v2beta1`), if any.
fn wants_aggregated(headers: &HeaderMap) -> Option<&'static str> {
    discovery::negotiate_aggregated(response::accept(headers))
}

fn aggregated(legacy_core: bool, version: &str, fmt: Format) -> Response {
    let (body, ct) = if version == "v2beta1" {
        (
            discovery::aggregated_discovery_as(legacy_core, "apidiscovery.k8s.io/v2beta1"),
            discovery::AGGREGATED_V2BETA1_CONTENT_TYPE,
        )
    } else {
        (
            discovery::aggregated_discovery(legacy_core),
            discovery::AGGREGATED_V2_CONTENT_TYPE,
        )
    };
    let mut r = response::object(StatusCode::OK, &body, fmt);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ct),
    );
    r
}

/// `/api`, `/api/v1`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`. `server_address` is the `host:port` the
/// client reached (for `serverAddressByClientCIDRs`).
pub(crate) fn discovery(
    segs: &[&str],
    headers: &HeaderMap,
    fmt: Format,
    server_address: &str,
) -> Option<ApiResult> {
    let nf = || Err(errors::path_not_served(&format!("/{}", segs.join("/"))).into());
    let ok = |v: Value| Ok(response::object(StatusCode::OK, &v, fmt));
    Some(match segs {
        ["api"] if wants_aggregated(headers).is_some() => Ok(aggregated(
            true,
            wants_aggregated(headers).unwrap_or("v2"),
            fmt,
        )),
        ["api"] => ok(discovery::api_versions(server_address)),
        ["api", v] => match discovery::api_resource_list("", v) {
            Some(l) => ok(l),
            None => nf(),
        },
        ["apis"] if wants_aggregated(headers).is_some() => Ok(aggregated(
            false,
            wants_aggregated(headers).unwrap_or("v2"),
            fmt,
        )),
        ["apis"] => ok(discovery::api_group_list()),
        ["apis", g] => match discovery::api_group(g) {
            Some(l) => ok(l),
            None => nf(),
        },
        ["apis", g, v] => match discovery::api_resource_list(g, v) {
            Some(l) => ok(l),
            None => nf(),
        },
        _ => return None,
    })
}

pub(crate) fn openapi(segs: &[&str], headers: &HeaderMap, fmt: Format) -> Option<ApiResult> {
    let nf = || Err(errors::openapi_not_served(&format!("/{}", segs.join("/"))).into());
    Some(match segs {
        // kubectl asks /openapi/v2 for protobuf only (gnostic's openapi.v2.Document), JSON clients
        // for JSON; anything else is 406.
        ["openapi", "v2"] if protobuf::openapi_v2::wanted(response::accept(headers)) => {
            Ok(response::with_type(
                StatusCode::OK,
                protobuf::openapi_v2::document(&openapi::v2_document()),
                protobuf::openapi_v2::MEDIA_TYPE,
            ))
        }
        ["openapi", "v2"] if !response::accepts_json(headers) => {
            Err(Status::not_acceptable(response::accept(headers)).into())
        }
        ["openapi", "v2"] => Ok(response::object(
            StatusCode::OK,
            &openapi::v2_document(),
            fmt,
        )),
        ["openapi", "v3"] => Ok(response::object(StatusCode::OK, &openapi::v3_index(), fmt)),
        ["openapi", "v3", rest @ ..] if !rest.is_empty() => {
            match openapi::v3_document(&rest.join("/")) {
                Some(d) => Ok(response::object(StatusCode::OK, &d, fmt)),
                None => nf(),
            }
        }
        _ => return None,
    })
}

/// `/healthz`, `/livez`, `/readyz` and their per-check paths.
pub(crate) fn health(state: &AppState, segs: &[&str], q: &Query) -> Option<Response> {
    let endpoint = *segs.first()?;
    if !matches!(endpoint, "healthz" | "livez" | "readyz") || segs.len() > 2 {
        return None;
    }
    let store_ok = state.store.list("namespaces", None).is_ok();
    let shutting_down = state.shutdown.is_cancelled();
    let mut checks: Vec<(&str, bool)> = vec![
        ("ping", true),
        ("log", true),
        ("etcd", store_ok),
        ("poststarthook/start-apiextensions-informers", true),
        ("poststarthook/bootstrap-controller", true),
    ];
    if endpoint == "readyz" {
        checks.push(("informer-sync", true));
        checks.push(("shutdown", !shutting_down));
    }
    if let Some(one) = segs.get(1) {
        return Some(match checks.iter().find(|(n, _)| n == one) {
            Some((_, true)) => response::text(StatusCode::OK, "ok".into()),
            Some((n, false)) => response::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal server error: {n} check failed\n"),
            ),
            None => response::text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
        });
    }
    let excluded: Vec<&str> = q
        .get("exclude")
        .map(|e| e.split(',').collect())
        .unwrap_or_default();
    let all_ok = checks
        .iter()
        .filter(|(n, _)| !excluded.contains(n))
        .all(|(_, ok)| *ok);
    let verbose = q.get("verbose").is_some();
    if !verbose && all_ok {
        return Some(response::text(StatusCode::OK, "ok".into()));
    }
    let mut out = String::new();
    for (n, ok) in &checks {
        if excluded.contains(n) {
            out.push_str(&format!("[+]{n} excluded: ok\n"));
        } else if *ok {
            out.push_str(&format!("[+]{n} ok\n"));
        } else {
            out.push_str(&format!("[-]{n} failed: reason withheld\n"));
        }
    }
    let code = if all_ok {
        out.push_str(&format!("{endpoint} check passed\n"));
        StatusCode::OK
    } else {
        out.push_str(&format!("{endpoint} check failed\n"));
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Some(response::text(code, out))
}
