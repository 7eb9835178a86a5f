//! The read verbs: get and list (with paging), as objects or as server-side `Table`s.
//!
//! Lists are not consistent snapshots across pages: a continue token remembers where the previous page
//! stopped and the list's resourceVersion, and the next page lists the current state after that key.
//! `resourceVersion`/`resourceVersionMatch` on get and list are ignored (always the latest state).

use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, StatusCode, header};
use proxylab_apimachinery::registry::ResourceInfo;
use proxylab_apimachinery::status::Status;
use proxylab_apimachinery::{meta, table};
use serde_json::{Value, json};

use crate::errors::store_err;
use crate::request::{Query, Selectors, Target, table_request};
use crate::response::{self, ApiResult, Format};
use crate::state::AppState;

/// `GET …/{resource}/{name}`.
pub(crate) fn get(
    state: &AppState,
    target: &Target,
    name: &str,
    q: &Query,
    headers: &HeaderMap,
    fmt: Format,
) -> ApiResult {
    let info = target.info;
    let obj = state
        .store
        .get(&target.key(name))
        .map_err(|e| store_err(info, name, e))?
        .ok_or_else(|| Status::not_found(info, name))?;
    Ok(render_one(info, obj, q, headers, fmt))
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
            table_response(&t, fmt)
        }
        None => response::object(StatusCode::OK, &obj, fmt),
    }
}

fn table_response(t: &Value, fmt: Format) -> Response {
    let mut r = response::object(StatusCode::OK, t, fmt);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(response::TABLE_CONTENT_TYPE),
    );
    r
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

/// `GET …/{resource}`: selectors, `limit` and `continue`.
pub(crate) fn list(
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
            Ok(table_response(&t, fmt))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_token_roundtrip() {
        let t = encode_continue(7, "ns", "a");
        assert_eq!(decode_continue(&t).unwrap(), (7, "ns".into(), "a".into()));
        assert!(decode_continue("!!").is_err());
    }
}
