//! The routes of everything that is not an extra (mounted) route: health, `/metrics`, `/version`,
//! discovery, OpenAPI, `selfsubjectreviews`, then the resource REST of [`crate::rest`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use proxylab_apimachinery::status::Status;
use proxylab_core::serve::ConnInfo;
use serde_json::json;

use crate::auth::UserInfo;
use crate::discovery;
use crate::errors;
use crate::request::{self, Query, RequestInfo};
use crate::response::{self, ApiError, Format};
use crate::rest;
use crate::state::AppState;

/// Routes everything that is not an extra route.
pub(crate) async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let q = Query::parse(parts.uri.query());
    let fmt = Format::from_request(&parts.headers, q.get("pretty"));
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let is_read = parts.method == http::Method::GET || parts.method == http::Method::HEAD;

    if let Some(r) = discovery::health(&state, &segs, &q) {
        return if is_read {
            r
        } else {
            method_not_allowed(&parts.method, &path)
        };
    }
    match segs.as_slice() {
        ["metrics"] => {
            return if is_read {
                response::with_type(
                    StatusCode::OK,
                    state.metrics.registry.encode().into_bytes(),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            } else {
                method_not_allowed(&parts.method, &path)
            };
        }
        ["version"] => {
            return if is_read {
                response::object(StatusCode::OK, &discovery::version(), fmt)
            } else {
                method_not_allowed(&parts.method, &path)
            };
        }
        [] => {
            let paths = json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version"]});
            return response::object(StatusCode::OK, &paths, fmt);
        }
        _ => {}
    }
    let server_address = parts
        .extensions
        .get::<ConnInfo>()
        .map(|c| c.local.to_string())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    if is_read {
        if let Some(r) = discovery::discovery(&segs, &parts.headers, fmt, &server_address) {
            return r.unwrap_or_else(IntoResponse::into_response);
        }
        if let Some(r) = discovery::openapi(&segs, &parts.headers, fmt) {
            return r.unwrap_or_else(IntoResponse::into_response);
        }
    }
    if let ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"] = segs.as_slice() {
        return self_subject_review(&parts, &path, fmt);
    }
    let ri = RequestInfo::parse(&parts.method, &path, parts.uri.query());
    let target = match request::parse_target(&ri, &path) {
        Ok(t) => t,
        Err(s) => {
            // Known discovery/openapi paths exist but only for GET.
            if !is_read
                && (discovery::discovery(&segs, &parts.headers, fmt, "").is_some()
                    || discovery::openapi(&segs, &parts.headers, fmt).is_some())
            {
                return method_not_allowed(&parts.method, &path);
            }
            return response::status(&s);
        }
    };
    rest::handle(&state, &parts.method, target, &q, &parts.headers, body)
        .await
        .unwrap_or_else(|e: ApiError| e.into_response())
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`): tells the caller
/// who the apiserver thinks they are — useful in a lab about proxies that add or assert identities.
fn self_subject_review(parts: &http::request::Parts, path: &str, fmt: Format) -> Response {
    if parts.method != http::Method::POST {
        return response::status(&errors::path_method_not_allowed(
            &parts.method,
            path,
            "POST",
        ));
    }
    let Some(user) = parts.extensions.get::<UserInfo>() else {
        return response::status(&Status::unauthorized());
    };
    let mut info = json!({"username": user.username, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    let review = json!({
        "kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null}, "status": {"userInfo": info},
    });
    response::object(StatusCode::CREATED, &review, fmt)
}

/// 405 for a read-only path.
fn method_not_allowed(method: &http::Method, path: &str) -> Response {
    response::status(&errors::path_method_not_allowed(method, path, "GET"))
}
