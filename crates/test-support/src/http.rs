//! Small HTTP/1.1 clients for tests: raw bytes when the test is about what goes over the wire, hyper
//! when it is about the answer.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` as raw bytes and returns everything read until the server closes (a 10 s guard
/// turns a server that never closes into a short answer rather than a hang).
pub async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    raw_exchange_bytes(addr, request.as_bytes()).await
}

/// [`raw_exchange`] with a request that is not text (a binary PROXY protocol header first).
pub async fn raw_exchange_bytes(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.write_all(request).await.expect("write request");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from `s` until the end of an HTTP response head (or EOF).
pub async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        match s.read(&mut b).await {
            Ok(0) | Err(_) => break,
            Ok(_) => head.push(b[0]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An answer split into its parts; `status` is 0 when the head did not parse.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    fn parse(raw: &str) -> Reply {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Reply {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: proxylab-test\r\nConnection: close\r\n\r\n")
}

/// `GET path` over a fresh connection with `Connection: close`.
pub async fn http_get(addr: SocketAddr, path: &str) -> Reply {
    Reply::parse(&raw_exchange(addr, &get_request(path)).await)
}

/// [`http_get`] for synchronous tests.
pub fn http_get_blocking(addr: SocketAddr, path: &str) -> Reply {
    try_http_get_blocking(addr, path).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// [`http_get_blocking`] that reports a failed connect, write or read instead of panicking — for
/// tests that count failures (a client hitting a Service during a rollout).
pub fn try_http_get_blocking(addr: SocketAddr, path: &str) -> std::io::Result<Reply> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(get_request(path).as_bytes())?;
    let mut out = Vec::new();
    // A reset after some bytes still yields what arrived (a cut-off answer parses as status 0).
    if let Err(e) = s.read_to_end(&mut out)
        && out.is_empty()
    {
        return Err(e);
    }
    Ok(Reply::parse(&String::from_utf8_lossy(&out)))
}

/// A plain-HTTP hyper client (HTTP/1.1, pooled).
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `GET http://{addr}{path}` with these headers through [`client`]: status, headers, body.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut b = Request::builder().uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client()
        .request(b.body(Full::new(Bytes::new())).expect("request"))
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// A health endpoint on `addr` (port 0 for any) that answers every request with `status` (e.g.
/// `"200 OK"`, `"503 Service Unavailable"`) and an empty body, then closes; what a load balancer's
/// checks are pointed at in a test (kube-proxy's `/healthz`, a `healthCheckNodePort`). The status
/// can be changed while it runs through the returned sender. Returns the bound address.
pub async fn status_server(
    addr: &str,
    status: &'static str,
) -> (SocketAddr, tokio::sync::watch::Sender<&'static str>) {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("status server on {addr}: {e}"));
    let bound = listener.local_addr().expect("local address");
    let (tx, rx) = tokio::sync::watch::channel(status);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let status = *rx.borrow();
            tokio::spawn(async move {
                let _ = read_head(&mut s).await;
                let answer =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    (bound, tx)
}
