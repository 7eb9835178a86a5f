//! The authentication middleware: authenticates each request (see [`crate::auth`]), applies
//! impersonation ([`crate::impersonation`]), strips the
//! credentials so nothing downstream (notably a mounted proxy) can forward them, inserts
//! [`UserInfo`], or answers 401; and writes the request log line and metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use proxylab_apimachinery::status::Status;
use proxylab_core::serve::ConnInfo;
use tracing::{debug, info};

use crate::auth::{UserInfo, anonymous_allowed};
use crate::request::RequestInfo;
use crate::response;
use crate::state::AppState;

/// Authentication + request log (kube-apiserver's httplog line: verb, URI, user, status, latency).
pub(crate) async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let remote = conn
        .as_ref()
        .map(|c| c.remote.to_string())
        .unwrap_or_default();
    let user = match state.auth.authenticate(req.headers(), conn.as_ref()) {
        Ok(Some(u)) => Some(u),
        Ok(None) if anonymous_allowed(uri.path()) => Some(UserInfo::anonymous()),
        Ok(None) => None,
        Err(e) => {
            info!(%method, %uri, %remote, error = %e, "authentication failed");
            None
        }
    };
    let Some(user) = user else {
        let r = response::status(&Status::unauthorized());
        info!(%method, %uri, %remote, status = 401, "request");
        return r;
    };
    // Impersonation is decided on the authenticated user, then the request acts as the other one.
    let user = match crate::impersonation::impersonate(&user, req.headers()) {
        Ok(None) => user,
        Ok(Some(as_user)) => {
            debug!(%method, %uri, by = %user.username, to = %as_user.username, "impersonating");
            as_user
        }
        Err(e) => {
            let status = Status::new(
                e.code(),
                if e.code() == 403 {
                    "Forbidden"
                } else {
                    "BadRequest"
                },
                e.to_string(),
            );
            info!(%method, %uri, %remote, user = %user.username, status = e.code(), error = %e, "request");
            return response::status(&status);
        }
    };
    // Credentials stop here: nothing downstream (notably the bastion proxy) may forward them.
    let strip: Vec<String> = state.auth.requestheader_names();
    let prefixes = state.auth.requestheader_prefixes();
    let h = req.headers_mut();
    h.remove(http::header::AUTHORIZATION);
    crate::impersonation::strip(h);
    for n in &strip {
        h.remove(n.as_str());
    }
    let extra_names: Vec<http::HeaderName> = h
        .keys()
        .filter(|k| prefixes.iter().any(|p| k.as_str().starts_with(p.as_str())))
        .cloned()
        .collect();
    for n in extra_names {
        h.remove(n);
    }
    let username = user.username.clone();
    req.extensions_mut().insert(user);
    let ri = RequestInfo::parse(&method, uri.path(), uri.query());
    let (verb, resource) = (ri.verb.clone(), ri.qualified_resource());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            verb,
            resource,
            code: status,
        })
        .inc();
    let latency_ms = start.elapsed().as_millis() as u64;
    // Reads are the bulk (informers, health probes): log them at debug; writes and failures at info,
    // as kube-apiserver's httplog does at its default verbosity.
    if method == http::Method::GET && status < 400 {
        debug!(%method, %uri, %remote, user = %username, status, latency_ms, "request");
    } else {
        info!(%method, %uri, %remote, user = %username, status, latency_ms, "request");
    }
    resp
}
