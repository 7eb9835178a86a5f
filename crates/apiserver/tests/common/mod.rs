//! Shared helpers for the apiserver's in-process tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use proxylab_apiserver::auth::TokenEntry;
use proxylab_apiserver::{ApiServer, ApiServerConfig, BoundApiServer};
use proxylab_store::MemoryStore;
use serde_json::Value;
use tower::ServiceExt;

pub const ADMIN: &str = "admin-token";

pub fn config() -> ApiServerConfig {
    let mut cfg = ApiServerConfig::new(vec!["127.0.0.1:0".parse().unwrap()]);
    cfg.static_tokens = vec![TokenEntry {
        token: ADMIN.into(),
        user: "admin".into(),
        uid: "1".into(),
        groups: vec!["system:masters".into()],
    }];
    cfg.bookmark_interval = Duration::from_millis(50);
    cfg
}

pub struct Lab {
    pub router: Router,
    pub store: Arc<MemoryStore>,
    pub bound: BoundApiServer,
}

pub async fn lab_with(cfg: ApiServerConfig, history: usize) -> Lab {
    let store = Arc::new(MemoryStore::new(history));
    let bound = ApiServer::bind(cfg, store.clone()).await.expect("bind");
    Lab {
        router: bound.router(),
        store,
        bound,
    }
}

pub async fn lab() -> Lab {
    lab_with(config(), 10_000).await
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Lab {
    pub async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let ct = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        self.raw(
            method,
            path,
            ct,
            body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            &[],
        )
        .await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        ct: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", ct);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    /// Starts a watch and returns its body to read events from.
    pub async fn watch(&self, path: &str) -> (StatusCode, Body) {
        let req = Request::builder()
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        (resp.status(), resp.into_body())
    }
}

/// Reads the next complete event line from a watch body (None when the stream ended).
pub async fn next_event(body: &mut Body, buf: &mut Vec<u8>) -> Option<Value> {
    loop {
        if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            return Some(serde_json::from_slice(&line).expect("event JSON"));
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("watch event within 10s")?
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
}

pub fn pod(name: &str) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "proxylab/echo-http:1", "ports": [{"name": "http", "containerPort": 8080}]}]}})
}
