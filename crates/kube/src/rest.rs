//! A JSON REST client for a program's own calls to the apiserver: the lab creating its topology's
//! objects, a readiness check. It runs on kube-rs's client built from a kubeconfig, so TLS, the
//! user's credentials and the proxy are exactly what kubectl would use with that file — the lab's own
//! calls go through the same kubeconfig it hands to its users.
//!
//! Answers of every status come back as `(status, JSON)`: the caller decides what a 404 or a 409
//! means. Only a failure to get an answer is an error.

use bytes::Bytes;
use http::{Method, Request};
use serde_json::Value;

use crate::config::{KubeconfigError, KubeconfigOptions};

/// Failure to build the client or to exchange a request.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(kube::Error),
    /// The request did not get an answer (connect, TLS, credentials).
    #[error("{method} {path}: {source}")]
    Request {
        method: Method,
        path: String,
        source: kube::Error,
    },
}

/// A client for raw JSON requests (paths relative to the kubeconfig's server).
#[derive(Clone)]
pub struct RestClient {
    client: kube::Client,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient").finish_non_exhaustive()
    }
}

impl RestClient {
    /// A client from kubectl's loading rules (`--kubeconfig`, `KUBECONFIG`, …).
    pub async fn new(opts: &KubeconfigOptions) -> Result<Self, RestError> {
        let cfg = crate::config::load(opts).await?;
        let client = kube::Client::try_from(cfg.config).map_err(RestError::Client)?;
        Ok(Self { client })
    }

    /// The client under it, for the watches of [`crate::watch`] (the same credentials and TLS).
    pub fn watch_client(&self) -> crate::watch::WatchClient {
        self.client.clone()
    }

    /// Sends `body` (as JSON) with `method` to `path` and returns the status and the answer as JSON
    /// (an answer that is not JSON, such as `/readyz`'s `ok`, as a JSON string).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), RestError> {
        self.send(method, path, "application/json", body).await
    }

    /// A JSON merge patch (`application/merge-patch+json`, RFC 7386) of `path`, as kubectl's
    /// `patch --type=merge`: what a kubelet sends for its Node, Lease and pod statuses.
    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<(u16, Value), RestError> {
        self.send(
            Method::PATCH,
            path,
            "application/merge-patch+json",
            Some(patch),
        )
        .await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), RestError> {
        let fail = |source| RestError::Request {
            method: method.clone(),
            path: path.to_owned(),
            source,
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::ACCEPT, "application/json");
        let bytes = match body {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, content_type);
                serde_json::to_vec(v).unwrap_or_default()
            }
            None => Vec::new(),
        };
        let req = req
            .body(kube::client::Body::from(bytes))
            .map_err(|e| fail(kube::Error::HttpError(e)))?;
        let resp = self.client.send(req).await.map_err(fail)?;
        let status = resp.status().as_u16();
        let text: Bytes = resp.into_body().collect_bytes().await.map_err(fail)?;
        let value = serde_json::from_slice(&text)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&text).into_owned()));
        Ok((status, value))
    }
}
