//! A small client for etcd's v3 JSON gateway: `POST /v3/kv/range`, `/v3/kv/txn`,
//! `/v3/kv/compaction` and the streaming `POST /v3/watch`.
//!
//! The gateway is grpc-gateway in front of etcd's gRPC services, on the client port itself. It speaks
//! protobuf's JSON mapping, which has three habits a reader must know:
//!
//! - `bytes` fields (keys, values) are **base64**;
//! - `int64` fields (revisions, counts) are **strings** (`"revision": "42"`);
//! - fields holding their default value are **omitted**: a successful `txn` says
//!   `"succeeded": true`, a failed one says nothing; a `PUT` watch event has no `"type"`, a deletion
//!   says `"type": "DELETE"`.
//!
//! An error is a non-200 answer with `{"error": "...", "code": N}` (N a gRPC code: 11 OutOfRange for
//! "required revision has been compacted", 14 Unavailable when the member has no leader). A watch is
//! one long response whose body is a sequence of `{"result": WatchResponse}` objects.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// What went wrong talking to etcd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// A flag value that cannot be used (`--etcd-servers` entry that is not `http://host:port`).
    #[error("{flag}: {value:?}: {message}")]
    BadFlag {
        flag: &'static str,
        value: String,
        message: String,
    },
    /// No endpoint could be reached (connection refused, no route, timeout).
    #[error("etcd {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    /// etcd answered with an error.
    #[error("etcd {endpoint}: {message} (gRPC code {code})")]
    Server {
        endpoint: String,
        code: u64,
        message: String,
    },
    /// etcd answered something this client does not understand.
    #[error("etcd {endpoint}: unexpected answer: {message}")]
    Protocol { endpoint: String, message: String },
}

impl EtcdError {
    /// etcd's "mvcc: required revision has been compacted".
    pub fn is_compacted(&self) -> bool {
        matches!(self, EtcdError::Server { code: 11, message, .. } if message.contains("compacted"))
    }

    /// etcd's "mvcc: required revision is a future revision".
    pub fn is_future_revision(&self) -> bool {
        matches!(self, EtcdError::Server { code: 11, message, .. } if message.contains("future"))
    }
}

/// The etcd members to talk to, and the HTTP/1.1 client (pooled keep-alive connections).
pub(crate) struct Gateway {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoints: Vec<String>,
    /// The endpoint that answered last: requests start there, and move on only when it cannot be
    /// connected to.
    preferred: AtomicUsize,
    timeout: Duration,
    /// The highest store revision any answer carried (what `current_resource_version` falls back to
    /// when etcd cannot be asked).
    pub(crate) seen_revision: AtomicU64,
}

/// Parses and checks `--etcd-servers` entries: `http://host:port`, nothing else.
pub fn parse_endpoints(urls: &[String]) -> Result<Vec<String>, EtcdError> {
    if urls.is_empty() {
        return Err(EtcdError::BadFlag {
            flag: "--etcd-servers",
            value: String::new(),
            message: "no URL given".into(),
        });
    }
    urls.iter()
        .map(|u| {
            let bad = |m: &str| EtcdError::BadFlag {
                flag: "--etcd-servers",
                value: u.clone(),
                message: m.into(),
            };
            let uri: Uri = u.trim().parse().map_err(|_| bad("not a URL"))?;
            match uri.scheme_str() {
                Some("http") => {}
                Some("https") => {
                    return Err(bad(
                        "TLS to etcd is not supported; use http:// on a network only the apiservers reach",
                    ));
                }
                _ => return Err(bad("expected http://host:port")),
            }
            let authority = uri.authority().ok_or_else(|| bad("no host"))?;
            if authority.port_u16().is_none() {
                return Err(bad("no port (etcd's client port is usually 2379)"));
            }
            if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
                return Err(bad("a path is not allowed"));
            }
            Ok(format!("http://{authority}"))
        })
        .collect()
}

/// Reads an int64 of protobuf's JSON mapping (a string, or a number from a lenient encoder); absent
/// means 0, the protobuf default.
pub(crate) fn int(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Decodes a base64 `bytes` field (absent: empty, the protobuf default).
pub(crate) fn unb64(v: &Value) -> Result<Vec<u8>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => B64.decode(s).map_err(|e| format!("bad base64: {e}")),
        other => Err(format!("expected base64, got {other}")),
    }
}

impl Gateway {
    pub(crate) fn new(endpoints: Vec<String>, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        Gateway {
            http: Client::builder(TokioExecutor::new()).build(connector),
            endpoints,
            preferred: AtomicUsize::new(0),
            timeout,
            seen_revision: AtomicU64::new(0),
        }
    }

    pub(crate) fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn note_header(&self, answer: &Value) {
        let rev = int(&answer["header"]["revision"]);
        self.seen_revision.fetch_max(rev, Ordering::Relaxed);
    }

    /// Sends `body` to `path` and returns the response head and body stream, trying each endpoint in
    /// turn when the current one cannot be *connected* to. A request that was sent and then failed
    /// (a timeout after sending) is not retried elsewhere: it may have been applied.
    async fn send(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(String, http::Response<Incoming>), EtcdError> {
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut last_err = None;
        for i in 0..n {
            let idx = (first + i) % n;
            let endpoint = &self.endpoints[idx];
            let req = Request::builder()
                .method(Method::POST)
                .uri(format!("{endpoint}{path}"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(bytes.clone()))
                .map_err(|e| EtcdError::BadFlag {
                    flag: "--etcd-servers",
                    value: endpoint.clone(),
                    message: e.to_string(),
                })?;
            let unreachable = |message: String| EtcdError::Unreachable {
                endpoint: endpoint.clone(),
                message,
            };
            match tokio::time::timeout(self.timeout, self.http.request(req)).await {
                Ok(Ok(resp)) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok((endpoint.clone(), resp));
                }
                Ok(Err(e)) if e.is_connect() => {
                    last_err = Some(unreachable(connect_message(&e)));
                }
                Ok(Err(e)) => return Err(unreachable(format!("request failed: {e}"))),
                Err(_) => {
                    return Err(unreachable(format!("no answer within {:?}", self.timeout)));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| EtcdError::Unreachable {
            endpoint: self.endpoints.join(","),
            message: "no endpoint".into(),
        }))
    }

    /// A unary call: the whole JSON answer, or etcd's error.
    pub(crate) async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let (endpoint, resp) = self.send(path, &body).await?;
        let status = resp.status();
        let collected = tokio::time::timeout(self.timeout, resp.into_body().collect())
            .await
            .map_err(|_| EtcdError::Unreachable {
                endpoint: endpoint.clone(),
                message: format!("answer incomplete after {:?}", self.timeout),
            })?
            .map_err(|e| EtcdError::Unreachable {
                endpoint: endpoint.clone(),
                message: format!("reading the answer: {e}"),
            })?
            .to_bytes();
        let answer: Value =
            serde_json::from_slice(&collected).map_err(|e| EtcdError::Protocol {
                endpoint: endpoint.clone(),
                message: format!("HTTP {status}, body is not JSON: {e}"),
            })?;
        if status != StatusCode::OK {
            return Err(server_error(&endpoint, &answer, status));
        }
        self.note_header(&answer);
        Ok(answer)
    }

    /// Opens a watch stream with one `create_request`.
    pub(crate) async fn watch(&self, create_request: Value) -> Result<WatchStream, EtcdError> {
        let body = json!({ "create_request": create_request });
        let (endpoint, resp) = self.send("/v3/watch", &body).await?;
        let status = resp.status();
        if status != StatusCode::OK {
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(server_error(&endpoint, &answer, status));
        }
        Ok(WatchStream {
            endpoint,
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }
}

/// A connect error's root cause ("Connection refused"), not hyper's wrapper text.
fn connect_message(e: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut text = e.to_string();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    format!("cannot connect: {text}")
}

fn server_error(endpoint: &str, answer: &Value, status: StatusCode) -> EtcdError {
    let message = answer["message"]
        .as_str()
        .or_else(|| answer["error"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {status}"));
    EtcdError::Server {
        endpoint: endpoint.to_owned(),
        code: int(&answer["code"]),
        message,
    }
}

/// The body of an open watch: `{"result": WatchResponse}` objects, one after another.
pub(crate) struct WatchStream {
    endpoint: String,
    body: Incoming,
    buf: Vec<u8>,
}

impl WatchStream {
    /// The next `WatchResponse`, or `None` when etcd ended the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<Value>, EtcdError> {
        loop {
            if let Some(v) = self.take_one()? {
                return match v.get("result") {
                    Some(r) => Ok(Some(r.clone())),
                    None => Err(server_error(
                        &self.endpoint,
                        v.get("error").unwrap_or(&v),
                        StatusCode::OK,
                    )),
                };
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(EtcdError::Unreachable {
                        endpoint: self.endpoint.clone(),
                        message: format!("watch stream broke: {e}"),
                    });
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// One whole JSON value off the front of the buffer, if one has arrived.
    fn take_one(&mut self) -> Result<Option<Value>, EtcdError> {
        let start = self
            .buf
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(self.buf.len());
        if start == self.buf.len() {
            self.buf.clear();
            return Ok(None);
        }
        let mut it = serde_json::Deserializer::from_slice(&self.buf[start..]).into_iter::<Value>();
        match it.next() {
            Some(Ok(v)) => {
                let used = start + it.byte_offset();
                self.buf.drain(..used);
                Ok(Some(v))
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            Some(Err(e)) => Err(EtcdError::Protocol {
                endpoint: self.endpoint.clone(),
                message: format!("watch stream is not JSON: {e}"),
            }),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        assert_eq!(
            parse_endpoints(&["http://127.0.0.1:2379".into(), "http://etcd:2379/".into()]).unwrap(),
            ["http://127.0.0.1:2379", "http://etcd:2379"]
        );
        for (bad, why) in [
            ("https://etcd:2379", "TLS"),
            ("etcd:2379", "expected http://"),
            ("http://etcd", "no port"),
            ("http://etcd:2379/x", "path"),
            ("http://etcd:notaport", "no port"),
            ("not a url at all", "not a URL"),
        ] {
            let e = parse_endpoints(&[bad.into()]).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
            assert!(e.to_string().starts_with("--etcd-servers: "), "{e}");
        }
        assert!(parse_endpoints(&[]).is_err());
    }

    #[test]
    fn int64_fields_are_strings_and_absent_is_zero() {
        assert_eq!(int(&json!("42")), 42);
        assert_eq!(int(&json!(7)), 7);
        assert_eq!(int(&Value::Null), 0);
        assert_eq!(
            unb64(&json!(b64(b"/registry/pods"))).unwrap(),
            b"/registry/pods"
        );
        assert!(unb64(&json!("***")).is_err());
    }
}
