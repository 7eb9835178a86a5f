//! Watch: a long-running GET that streams changes as newline-delimited JSON.
//!
//! `GET …/pods?watch=true&resourceVersion=RV` (or the legacy `/api/v1/watch/…` paths) answers `200` and
//! then writes one `{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": …}` per line
//! for as long as the watch lasts. What the starting resourceVersion means follows kube-apiserver:
//!
//! - **absent or `0`**: "start from now, but tell me the current state first" — a synthetic `ADDED` for
//!   every object that currently matches, then live changes (this is `kubectl get -w`).
//! - **`N`**: every change after `N`, replayed from the store's history, then live. If `N` is older than
//!   the history the stream carries a single `ERROR` event whose object is a `410 Expired` Status; the
//!   client must list again (the informer "relist").
//!
//! `allowWatchBookmarks=true` adds periodic `BOOKMARK` events that carry only a resourceVersion, so a
//! client can resume from a recent point even when nothing it watches has changed.
//! `sendInitialEvents=true` (streaming lists) ends the synthetic `ADDED`s with a bookmark annotated
//! `k8s.io/initial-events-end: "true"`. `timeoutSeconds` ends the stream cleanly.
//!
//! With a label or field selector, a change that moves an object *into* the selection is sent as
//! `ADDED`, and *out of* it as `DELETED` — e.g. a node agent watching `spec.nodeName=node-1` sees a pod
//! appear when the scheduler binds it. Like kube's watch cache, the store keeps each event's previous
//! object, so the decision compares old and new state exactly.
//!
//! If the client asked for a Table (`kubectl get -w`), every event's object is a one-row Table.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use proxylab_apimachinery::status::Status;
use proxylab_apimachinery::table;
use proxylab_store::{EventType, StoreError};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::errors;
use crate::request::{Query, Selectors, Target, table_request};
use crate::response::{self, ApiError, ApiResult};
use crate::state::AppState;

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut v =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

pub(crate) async fn watch(
    state: &Arc<AppState>,
    target: &Target,
    q: &Query,
    headers: &HeaderMap,
) -> ApiResult {
    let info = target.info;
    // The same selectors as a list: a watch resuming from a list sees exactly what the list selected.
    let selectors = Selectors::parse(info, q, target.name.as_deref())?;
    let filtered = selectors.is_filtering();
    let matches = move |o: &Value| selectors.matches(o);
    let timeout =
        match q.get("timeoutSeconds").filter(|s| !s.is_empty()) {
            Some(t) => std::time::Duration::from_secs(t.parse::<u64>().map_err(|_| {
                ApiError(Status::bad_request(format!("invalid timeoutSeconds {t:?}")))
            })?),
            None => state.default_watch_timeout,
        };
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.flag("sendInitialEvents");
    let table_mode = table_request(headers, q);
    let resource = info.store_resource();
    let ns = target.namespace.clone();

    let rv_param = q.get("resourceVersion").filter(|s| !s.is_empty());
    let explicit_rv = match rv_param {
        None | Some("0") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError(Status::bad_request(format!(
                "invalid resourceVersion {s:?}"
            )))
        })?),
    };
    let (current, list_rv) = state
        .store
        .list(&resource, ns.as_deref())
        .map_err(|e| ApiError(Status::internal(e)))?;
    let mut initial = Vec::new();
    let since = match explicit_rv {
        Some(rv) if !send_initial => rv,
        _ => {
            initial.extend(current.into_iter().filter(|o| matches(o)));
            explicit_rv.map_or(list_rv, |rv| list_rv.max(rv))
        }
    };

    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let too_large = explicit_rv.filter(|rv| *rv > list_rv);
    let watched = match too_large {
        // A version from the future (a client that talked to another, newer store): kube-apiserver
        // waits briefly for its cache, then answers 504 "Too large resource version".
        Some(rv) => {
            let st = errors::watch_rv_too_large(rv, list_rv);
            let _ = tx.try_send(Ok(line("ERROR", &st.to_value())));
            Ok(None)
        }
        None => state.store.watch(&resource, ns.as_deref(), since).map(Some),
    };
    let mut events = match watched {
        Ok(r) => r,
        Err(StoreError::Expired { oldest }) => {
            let st = errors::watch_rv_expired(since, oldest);
            let _ = tx.try_send(Ok(line("ERROR", &st.to_value())));
            None
        }
        Err(e) => return Err(ApiError(Status::internal(e))),
    };

    let now = jiff::Timestamp::now;
    let render = move |o: &Value| -> Value {
        match table_mode {
            Some(inc) => table::to_table(info, std::slice::from_ref(o), inc, now()),
            None => o.clone(),
        }
    };
    let bookmark_obj = move |rv: u64, initial_end: bool| {
        let mut m = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            m["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": m})
    };
    let interval = state.bookmark_interval;
    let store = state.store.clone();
    let shutdown = state.shutdown.clone();
    state.metrics.watches.inc();
    let guard = crate::metrics::WatchGuard(state.metrics.watches.clone());
    tokio::spawn(async move {
        let _guard = guard;
        let Some(mut events) = events.take() else {
            return;
        };
        let send = |b: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(b)).await.is_ok() }
        };
        for o in &initial {
            if !send(line("ADDED", &render(o))).await {
                return;
            }
        }
        let mut last_rv = since;
        if send_initial && !send(line("BOOKMARK", &bookmark_obj(last_rv, true))).await {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    last_rv = ev.resource_version;
                    let obj = ev.object.as_ref();
                    let ty = if filtered {
                        // As kube's watch cache: compare the old and new state against the selector.
                        let now_matches = matches(obj);
                        let was = ev.prev_object.as_deref().is_some_and(&matches);
                        match (ev.event_type, was, now_matches) {
                            (EventType::Added, _, true) => Some("ADDED"),
                            (EventType::Deleted, true, _) => Some("DELETED"),
                            (EventType::Modified, true, true) => Some("MODIFIED"),
                            (EventType::Modified, false, true) => Some("ADDED"),
                            (EventType::Modified, true, false) => Some("DELETED"),
                            _ => None,
                        }
                    } else {
                        Some(ev.event_type.as_str())
                    };
                    if let Some(ty) = ty
                        && !send(line(ty, &render(obj))).await
                    {
                        break;
                    }
                }
                _ = tick.tick(), if bookmarks => {
                    // Like kube's watch cache, a bookmark may carry the store's progress even when
                    // nothing this watch selects changed — but only if nothing is still queued for
                    // it, so resuming from the bookmark can never skip an event. (Read the version
                    // first: anything published before that read is already in the queue.)
                    // A store whose watches receive events asynchronously (etcd) offers no such
                    // version: the bookmark then carries the last delivered event's.
                    let progress = store.bookmark_progress();
                    // (A closed queue means the store dropped this watcher as too slow: events
                    // after that are not coming, so its progress must not be claimed.)
                    if let Some(progress) = progress
                        && events.is_empty()
                        && !events.is_closed()
                    {
                        last_rv = last_rv.max(progress);
                    }
                    if !send(line("BOOKMARK", &bookmark_obj(last_rv, false))).await {
                        break;
                    }
                }
                _ = &mut deadline => break,
                _ = tx.closed() => break,
                _ = shutdown.cancelled() => break,
            }
        }
    });

    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *resp.status_mut() = StatusCode::OK;
    let ct = if table_mode.is_some() {
        response::TABLE_CONTENT_TYPE
    } else {
        "application/json"
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}
