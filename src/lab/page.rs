//! The live lab page, served by the lab's admin endpoint (`http://127.0.0.1:8400/` by default).
//!
//! It draws the lab as a learner would sketch it — a client on the left, the proxies a request
//! meets (kubectl proxy, the HA balancer, the apiservers with the apiserver proxy inside, a cloud
//! load balancer), Services with their ClusterIPs, and the nodes with their kube-proxy (forwarder),
//! kubelet and pods — and, as requests happen, the path each one took, stitched from the proxies'
//! hop records. A click on a hop shows its record.
//!
//! Routes (merged into the admin endpoint's router):
//! - `GET /` — the page; `GET /page.js`, `GET /page.css` — its script and style. Plain files
//!   compiled into the binary (`include_str!`): no build step, nothing fetched from elsewhere.
//! - `GET /topology` — what the page draws, as JSON: proxies (type, instance, address, admin URL,
//!   the node or apiserver they run on), apiservers, nodes, pods and services, read live from the
//!   lab's store, so pods and LoadBalancer IPs appear as they change. The admin token in `lab.json`
//!   is not in it.
//! - `GET /hops?after=N` — the hop records published since id N (JSON array of `{id, source, hop}`).
//! - `GET /hops/stream` — the same as server-sent events (`event: hop`, `id: N`), live; a
//!   reconnecting browser sends `Last-Event-ID` and gets what it missed (see [`feed`]).
//!
//! Where each record is drawn is decided in the page: a hop's `proxy` and `instance` name its box,
//! its addresses name the boxes before and after it (a pod IP is a pod, a ClusterIP a Service, a
//! node address a node's NodePort). Hops are stitched into paths by addresses — one hop's
//! `upstreamLocal` is the next hop's `client`, as `proxylab trace` does — and, for HTTP proxies
//! that pool their upstream connections and so record no `upstreamLocal`, by the request line and
//! time (drawn dashed: inferred, not proven).

pub mod feed;

use std::convert::Infallible;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use proxylab_store::Store;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use feed::{FeedEvent, HopFeed};

const INDEX_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/page.js");
const PAGE_CSS: &str = include_str!("page/page.css");

/// The page's state: the lab description, the store it reads pods and services from, the feed.
#[derive(Clone)]
pub struct Page {
    pub(super) info: Arc<RwLock<Option<Value>>>,
    store: Arc<RwLock<Option<Arc<dyn Store>>>>,
    pub(super) feed: Arc<HopFeed>,
    /// Ends the open event streams when the lab stops (the admin endpoint drains them).
    pub(super) shutdown: CancellationToken,
}

impl Page {
    pub fn new(info: Arc<RwLock<Option<Value>>>) -> Self {
        Self {
            info,
            store: Default::default(),
            feed: HopFeed::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// The store the topology's pods and services are read from.
    pub fn set_store(&self, store: Arc<dyn Store>) {
        *self.store.write().unwrap_or_else(|e| e.into_inner()) = Some(store);
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/",
                get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
            )
            .route(
                "/page.js",
                get(|| async { asset("text/javascript; charset=utf-8", PAGE_JS) }),
            )
            .route(
                "/page.css",
                get(|| async { asset("text/css; charset=utf-8", PAGE_CSS) }),
            )
            .route("/topology", get(topology))
            .route("/hops", get(hops))
            .route("/hops/stream", get(stream))
            .with_state(self.clone())
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The page comes from the binary: a new binary is a new page, so never cache it.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn topology(State(page): State<Page>) -> axum::Json<Value> {
    let info = page.info.read().unwrap_or_else(|e| e.into_inner()).clone();
    let store = page.store.read().unwrap_or_else(|e| e.into_inner()).clone();
    axum::Json(view(info.as_ref(), store.as_deref()))
}

/// What the page draws. `info` is `lab.json` (None until the lab is ready).
pub fn view(info: Option<&Value>, store: Option<&dyn Store>) -> Value {
    let Some(info) = info else {
        return json!({"ready": false});
    };
    let list = |resource: &str| -> Vec<Value> {
        store
            .and_then(|s| s.list(resource, None).ok())
            .map(|(items, _)| items)
            .unwrap_or_default()
    };
    let nodes_ready: Map<String, Value> = list("nodes")
        .iter()
        .filter_map(|n| {
            let name = n.pointer("/metadata/name")?.as_str()?.to_owned();
            Some((name, json!(condition_true(n, "Ready"))))
        })
        .collect();
    let nodes: Vec<Value> = info["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let mut n = n.clone();
            let ready = n["name"]
                .as_str()
                .and_then(|name| nodes_ready.get(name))
                .cloned()
                .unwrap_or(Value::Null);
            n["ready"] = ready;
            n
        })
        .collect();
    let pods: Vec<Value> = list("pods").iter().map(pod_view).collect();
    let services: Vec<Value> = list("services").iter().map(service_view).collect();
    let apiservers: Vec<Value> = info["apiservers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, url)| {
            json!({
                "name": format!("apiserver-{}", i + 1),
                "address": url.as_str().map(strip_scheme),
            })
        })
        .collect();
    json!({
        "ready": true,
        "admin": info["admin"]["lab"],
        "proxies": proxies(info),
        "apiservers": apiservers,
        "nodes": nodes,
        "pods": pods,
        "services": services,
    })
}

/// The proxies of the lab, one per admin endpoint in `lab.json` → `admin`. Known keys get their
/// proxy type's name (as hop records spell it); a key the page does not know yet is shown under
/// its own name, so a proxy added to the lab appears without a change here.
fn proxies(info: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let Some(admin) = info["admin"].as_object() else {
        return out;
    };
    for (key, v) in admin {
        if key == "lab" {
            continue;
        }
        let kind = proxy_type(key);
        match v {
            Value::Object(m) => {
                for (instance, url) in m {
                    // Forwarders run on a node, bastions inside an apiserver: both named by the key.
                    let address = match kind.as_str() {
                        "bastion" => apiserver_address(info, instance),
                        _ => None,
                    };
                    out.push(json!({
                        "type": kind, "instance": instance, "admin": url,
                        "on": instance, "address": address,
                    }));
                }
            }
            Value::String(_) => {
                let address = info[key].as_str().map(strip_scheme);
                out.push(json!({
                    "type": kind, "instance": kind, "admin": v,
                    "on": Value::Null, "address": address,
                }));
            }
            _ => {}
        }
    }
    out
}

fn proxy_type(key: &str) -> String {
    match key {
        "authProxy" => "auth-proxy".into(),
        "forwarders" => "forwarder".into(),
        "apiservers" => "bastion".into(),
        "haBalancer" | "haBalancers" => "ha-balancer".into(),
        "cloudLb" | "cloudLbs" | "cloudLB" => "cloud-lb".into(),
        other => {
            let mut s = String::new();
            for c in other.chars() {
                if c.is_ascii_uppercase() {
                    s.push('-');
                    s.push(c.to_ascii_lowercase());
                } else {
                    s.push(c);
                }
            }
            s
        }
    }
}

fn apiserver_address(info: &Value, name: &str) -> Option<String> {
    let n: usize = name.strip_prefix("apiserver-")?.parse().ok()?;
    info["apiservers"]
        .get(n.checked_sub(1)?)?
        .as_str()
        .map(strip_scheme)
}

fn strip_scheme(url: &str) -> String {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/')
        .to_owned()
}

fn pod_view(p: &Value) -> Value {
    let ports: Vec<Value> = p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .map(|port| json!({"name": port["name"], "port": port["containerPort"]}))
        .collect();
    json!({
        "namespace": p.pointer("/metadata/namespace"),
        "name": p.pointer("/metadata/name"),
        "node": p.pointer("/spec/nodeName"),
        "ip": p.pointer("/status/podIP"),
        "phase": p.pointer("/status/phase"),
        "ready": condition_true(p, "Ready"),
        "labels": p.pointer("/metadata/labels"),
        "ports": ports,
    })
}

fn service_view(s: &Value) -> Value {
    let ports: Vec<Value> = s
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            json!({
                "name": p["name"], "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP")),
                "port": p["port"], "targetPort": p["targetPort"], "nodePort": p["nodePort"],
            })
        })
        .collect();
    let ingress: Vec<Value> = s
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("ip").cloned())
        .collect();
    json!({
        "namespace": s.pointer("/metadata/namespace"),
        "name": s.pointer("/metadata/name"),
        "type": s.pointer("/spec/type").cloned().unwrap_or(json!("ClusterIP")),
        "clusterIP": s.pointer("/spec/clusterIP"),
        "ports": ports,
        "loadBalancerIngress": ingress,
    })
}

fn condition_true(obj: &Value, kind: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

async fn hops(State(page): State<Page>, Query(q): Query<After>) -> Response {
    let events = page.feed.snapshot(q.after).await;
    let mut body = String::from("[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.data);
    }
    body.push(']');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn stream(
    State(page): State<Page>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let (backlog, rx) = page.feed.subscribe(after);
    let state = (
        std::collections::VecDeque::from(backlog),
        rx,
        after,
        page.shutdown.clone(),
    );
    let events = futures_util::stream::unfold(
        state,
        |(mut queue, mut rx, mut last, shutdown)| async move {
            loop {
                if let Some(e) = queue.pop_front() {
                    if e.id <= last {
                        continue;
                    }
                    last = e.id;
                    return Some((Ok(sse_event(&e)), (queue, rx, last, shutdown)));
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    got = rx.recv() => match got {
                        Ok(e) => queue.push_back(e),
                        // A reader too slow for the feed misses some records; the page says so
                        // through the gap in ids, and the stream goes on.
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return None,
                    },
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn sse_event(e: &FeedEvent) -> Event {
    Event::default()
        .event("hop")
        .id(e.id.to_string())
        .data(&*e.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_names_every_proxy_and_leaves_the_token_out() {
        let info = json!({
            "token": "secret-token",
            "authProxy": "http://127.0.0.1:8001",
            "haBalancer": "https://127.0.0.1:6443",
            "apiservers": ["https://127.0.10.1:6443", "https://127.0.10.2:6443"],
            "nodes": [{"name": "node-1", "address": "127.0.20.1", "podCIDR": "127.0.30.0/25"}],
            "admin": {
                "lab": "http://127.0.0.1:8400",
                "authProxy": "http://127.0.0.1:8002",
                "haBalancer": "http://127.0.0.1:8404",
                "forwarders": {"node-1": "http://127.0.20.1:10249"},
                "apiservers": {"apiserver-2": "http://127.0.10.2:6444"},
                "someNewProxy": "http://127.0.0.1:8499",
            },
        });
        let store = proxylab_store::MemoryStore::new(10);
        let v = view(Some(&info), Some(&store));
        assert!(!v.to_string().contains("secret-token"));
        let mut summary: Vec<String> = v["proxies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{} {} {}",
                    p["type"].as_str().unwrap(),
                    p["instance"].as_str().unwrap(),
                    p["address"].as_str().unwrap_or("-")
                )
            })
            .collect();
        summary.sort();
        assert_eq!(
            summary,
            [
                "auth-proxy auth-proxy 127.0.0.1:8001",
                "bastion apiserver-2 127.0.10.2:6443",
                "forwarder node-1 -",
                "ha-balancer ha-balancer 127.0.0.1:6443",
                "some-new-proxy some-new-proxy -",
            ]
        );
        assert_eq!(v["apiservers"][1]["address"], "127.0.10.2:6443");
        assert_eq!(v["nodes"][0]["name"], "node-1");
        assert_eq!(view(None, None), json!({"ready": false}));
    }
}
