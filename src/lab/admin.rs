//! The lab's own admin endpoint (`127.0.0.1:8400` in the default topology, `lab.json` → `admin.lab`).
//!
//! Every component has an admin endpoint of its own (hops, metrics); this one is about the lab as a
//! whole, served through `core::serve` like every other HTTP listener:
//!
//! - `GET /` — the live lab page: the topology and the paths of requests as they happen (see
//!   [`super::page`], which also serves `/topology`, `/hops` and `/hops/stream`).
//! - `GET /healthz` — `ok` while the lab process serves.
//! - `GET /lab.json` — what `lab.json` says (404 until the lab is ready).
//! - `GET /components` — the components that can be stopped and started, and whether they run.
//! - `POST /components/{name}/stop`, `POST /components/{name}/start` — failure drills: stop one
//!   component (an apiserver front-end, say) and watch what the proxies in front of it do, then start
//!   it again. Components register a [`ComponentControl`]; an unknown name is a 404 that lists the
//!   known ones.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::page::{Page, feed};

/// What a stop or start returns: `Err` with a message the caller sees.
pub type ControlFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A component the admin endpoint can stop and start.
pub trait ComponentControl: Send + Sync + 'static {
    fn stop(&self) -> ControlFuture;
    fn start(&self) -> ControlFuture;
    fn running(&self) -> bool;
}

/// The endpoint's state: the lab description and the registered components.
#[derive(Clone)]
pub struct LabAdmin {
    info: Arc<RwLock<Option<Value>>>,
    components: Arc<RwLock<BTreeMap<String, Arc<dyn ComponentControl>>>>,
    page: Page,
}

impl Default for LabAdmin {
    fn default() -> Self {
        let info = Arc::new(RwLock::new(None));
        Self {
            page: Page::new(info.clone()),
            info,
            components: Default::default(),
        }
    }
}

impl LabAdmin {
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes the lab description (`GET /lab.json`); the page's hop feed polls every admin
    /// endpoint it names.
    pub fn set_info(&self, info: Value) {
        self.page.feed.set_sources(feed::sources_from_info(&info));
        *self.info.write().unwrap_or_else(|e| e.into_inner()) = Some(info);
    }

    /// The store the page reads pods and services from.
    pub fn set_store(&self, store: Arc<dyn proxylab_store::Store>) {
        self.page.set_store(store);
    }

    /// Makes `name` stoppable and startable through `/components/{name}/stop|start`.
    // The lab registers no component yet: the HA-balancer work registers the apiserver front-ends.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn register(&self, name: &str, control: Arc<dyn ComponentControl>) {
        self.components
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), control);
    }

    fn component(&self, name: &str) -> Result<Arc<dyn ComponentControl>, Box<Response>> {
        let map = self.components.read().unwrap_or_else(|e| e.into_inner());
        map.get(name).cloned().ok_or_else(|| {
            Box::new({
                let known: Vec<&str> = map.keys().map(String::as_str).collect();
                status(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "no component {name:?} can be stopped or started; known: {}",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })
        })
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/lab.json", get(lab_json))
            .route("/components", get(components))
            .route("/components/{name}/{action}", post(control))
            .with_state(self.clone())
            .merge(self.page.router())
    }

    /// Binds `addr`; the error names the address and says whose it is.
    pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
        proxylab_core::runtime::bind_tcp(addr, Default::default())
            .map_err(|e| std::io::Error::new(e.kind(), format!("lab admin endpoint: {e}")))
    }

    /// Serves on `listener` until `shutdown`, with `core::serve`'s admin-endpoint limits.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let options = proxylab_core::serve::ServeOptions::admin();
        let feed = tokio::spawn(self.page.feed.clone().run(shutdown.clone()));
        let streams = self.page.shutdown.clone();
        let end_streams = shutdown.clone();
        tokio::spawn(async move {
            end_streams.cancelled().await;
            streams.cancel();
        });
        let served =
            proxylab_core::serve::serve_http_with(listener, None, self.router(), shutdown, options)
                .await;
        let _ = feed.await;
        served
    }
}

/// A Kubernetes-style Status body, so kubectl-minded clients read the message where they expect it.
fn status(code: StatusCode, message: &str) -> Response {
    (
        code,
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": message, "code": code.as_u16(),
        })),
    )
        .into_response()
}

async fn lab_json(State(admin): State<LabAdmin>) -> Response {
    match admin.info.read().unwrap_or_else(|e| e.into_inner()).clone() {
        Some(v) => Json(v).into_response(),
        None => status(StatusCode::NOT_FOUND, "the lab is not ready yet"),
    }
}

async fn components(State(admin): State<LabAdmin>) -> Json<Value> {
    let map = admin.components.read().unwrap_or_else(|e| e.into_inner());
    Json(Value::Object(
        map.iter()
            .map(|(name, c)| (name.clone(), json!({"running": c.running()})))
            .collect(),
    ))
}

async fn control(
    State(admin): State<LabAdmin>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let c = match admin.component(&name) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let result = match action.as_str() {
        "stop" => c.stop().await,
        "start" => c.start().await,
        other => {
            return status(
                StatusCode::NOT_FOUND,
                &format!("unknown action {other:?}: use stop or start"),
            );
        }
    };
    match result {
        Ok(()) => Json(json!({"name": name, "running": c.running()})).into_response(),
        Err(msg) => status(StatusCode::CONFLICT, &format!("{action} {name}: {msg}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Flag(Arc<AtomicBool>);

    impl ComponentControl for Flag {
        fn stop(&self) -> ControlFuture {
            let f = self.0.clone();
            Box::pin(async move {
                if !f.swap(false, Ordering::SeqCst) {
                    return Err("already stopped".into());
                }
                Ok(())
            })
        }
        fn start(&self) -> ControlFuture {
            let f = self.0.clone();
            Box::pin(async move {
                f.store(true, Ordering::SeqCst);
                Ok(())
            })
        }
        fn running(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn serves_info_and_stops_and_starts_registered_components() {
        use proxylab_test_support::http::raw_exchange;
        let admin = LabAdmin::new();
        let flag = Arc::new(AtomicBool::new(true));
        admin.register("apiserver-2", Arc::new(Flag(flag.clone())));
        let listener = LabAdmin::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(admin.clone().serve(listener, stop.clone()));
        let post = |path: &str| {
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        };
        let get =
            |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");

        assert!(
            raw_exchange(addr, &get("/lab.json"))
                .await
                .starts_with("HTTP/1.1 404")
        );
        admin.set_info(json!({"kubeconfig": "k"}));
        assert!(
            raw_exchange(addr, &get("/lab.json"))
                .await
                .contains("\"kubeconfig\":\"k\"")
        );

        let r = raw_exchange(addr, &post("/components/apiserver-2/stop")).await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.contains("\"running\":false"),
            "{r}"
        );
        assert!(!flag.load(Ordering::SeqCst));
        let r = raw_exchange(addr, &post("/components/apiserver-2/stop")).await;
        assert!(
            r.starts_with("HTTP/1.1 409") && r.contains("already stopped"),
            "{r}"
        );
        let r = raw_exchange(addr, &post("/components/apiserver-2/start")).await;
        assert!(r.contains("\"running\":true"), "{r}");
        let r = raw_exchange(addr, &post("/components/nope/stop")).await;
        assert!(
            r.starts_with("HTTP/1.1 404") && r.contains("known: apiserver-2"),
            "{r}"
        );
        let r = raw_exchange(addr, &get("/components")).await;
        assert!(r.contains("\"apiserver-2\":{\"running\":true}"), "{r}");

        stop.cancel();
        task.await.unwrap().unwrap();
    }
}
