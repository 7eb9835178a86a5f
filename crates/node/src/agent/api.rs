//! The agent's calls to the apiserver: JSON over `proxylab_kube::RestClient`, with the answers a
//! kubelet cares about (not found, conflict) told apart.
//!
//! kube-rs stays inside `crates/kube`; the agent builds its objects as plain JSON
//! ([`super::objects`]) and sends them here.

use http::Method;
use proxylab_kube::{RestClient, RestError};
use serde_json::Value;

/// A call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer (connection, TLS, credentials).
    #[error(transparent)]
    Upstream(#[from] RestError),
    /// The apiserver answered with an error status.
    #[error("{method} {path}: the apiserver answered {code}: {message}")]
    Status {
        /// The method.
        method: Method,
        /// The path.
        path: String,
        /// The HTTP status.
        code: u16,
        /// The Status message (or the body).
        message: String,
    },
}

impl CallError {
    /// 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { code: 404, .. })
    }

    /// 409 (AlreadyExists, Conflict, a failed precondition).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Status { code: 409, .. })
    }
}

/// The apiserver, as the agent calls it.
#[derive(Clone, Debug)]
pub struct ApiClient {
    rest: RestClient,
}

impl ApiClient {
    /// Calls through `rest`.
    pub fn new(rest: RestClient) -> Self {
        Self { rest }
    }

    /// The client under it (for watches).
    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    /// `method path` with an optional JSON body; the answer on 2xx.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let answer = self.rest.request(method.clone(), path, body).await?;
        check(method, path, answer)
    }

    /// A merge patch of `path`; the object on 2xx.
    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value, CallError> {
        let answer = self.rest.merge_patch(path, patch).await?;
        check(Method::PATCH, path, answer)
    }
}

fn check(method: Method, path: &str, (code, body): (u16, Value)) -> Result<Value, CallError> {
    if (200..300).contains(&code) {
        return Ok(body);
    }
    let message = body["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    Err(CallError::Status {
        method,
        path: path.to_owned(),
        code,
        message,
    })
}
