//! `core::serve`'s limits, each against a real socket: the head deadline (TCP, unix socket, before
//! protocol sniffing, TLS handshake), head size and field count caps (HTTP/1 and HTTP/2), the
//! connection limit, and the idle timeout — which closes idle connections but never a live stream
//! (a slow response, an HTTP/2 stream, an upgraded connection).
//!
//! Deadlines here are short (hundreds of milliseconds) and every wait for the server has a
//! generous hang guard; no assertion depends on how fast the machine is.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxylab_core::serve::{ConnInfo, Listener, ServeOptions, serve_http_with};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long a test waits for something the server must do (a hang guard, not a measurement).
const GUARD: Duration = Duration::from_secs(20);

fn short() -> ServeOptions {
    ServeOptions {
        handshake_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    }
}

/// A tick every `gap`, `n` times: a response that is alive but quiet for longer than the idle
/// timeout between chunks.
fn slow_body(n: usize, gap: Duration) -> Body {
    let stream = futures_util::stream::unfold(0, move |i| async move {
        if i == n {
            return None;
        }
        tokio::time::sleep(gap).await;
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("tick {i}\n"))),
            i + 1,
        ))
    });
    Body::from_stream(stream)
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/who",
            get(|axum::Extension(c): axum::Extension<ConnInfo>| async move {
                format!("unix={}", c.unix)
            }),
        )
        .route(
            "/slow",
            get(|| async { slow_body(4, Duration::from_millis(250)) }),
        )
        .route("/upgrade", get(upgrade))
}

/// Answers 101 and echoes the upgraded connection.
async fn upgrade(mut req: axum::extract::Request) -> http::Response<Body> {
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(up) = on.await {
            let mut io = TokioIo::new(up);
            let mut buf = [0u8; 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    http::Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(Body::empty())
        .unwrap()
}

struct Server {
    addr: std::net::SocketAddr,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(options: ServeOptions) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve_http_with(l, None, app(), stop.clone(), options));
    Server { addr, stop }
}

/// Reads until the server closes the connection; returns what it sent. Panics past the guard.
async fn until_closed<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(GUARD, s.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open: {}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

async fn request(addr: std::net::SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    until_closed(&mut s).await
}

#[tokio::test]
async fn a_head_not_finished_in_time_is_dropped_at_every_stage() {
    let server = start(short()).await;
    // Nothing at all (the protocol sniffing before HTTP/1 or HTTP/2 has no timer of its own).
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(until_closed(&mut s).await, "");
    // Half an HTTP/1 head.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let out = until_closed(&mut s).await;
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 408"), "{out}");
    // Half an HTTP/2 preface.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    until_closed(&mut s).await;
    // A finished request on a fresh connection is still answered.
    let out = request(
        server.addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test]
async fn a_tls_handshake_not_finished_in_time_is_dropped() {
    proxylab_core::tls::install_crypto_provider();
    let pki = proxylab_core::tls::pki::LabPki::generate(&Default::default()).unwrap();
    let (chain, key) = pki.apiserver.der().unwrap();
    let tls = proxylab_core::tls::ServerTls::new(chain, key)
        .build()
        .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve_http_with(l, Some(tls), app(), stop.clone(), short()));
    let mut s = TcpStream::connect(addr).await.unwrap();
    // A ClientHello that never comes.
    assert_eq!(until_closed(&mut s).await, "");
    stop.cancel();
}

#[tokio::test]
async fn a_unix_socket_gets_the_same_limits_and_says_so_in_conn_info() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let l = tokio::net::UnixListener::bind(&path).unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve_http_with(
        Listener::Unix(l),
        None,
        app(),
        stop.clone(),
        short(),
    ));
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let out = until_closed(&mut s).await;
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("unix=true"),
        "{out}"
    );
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let out = until_closed(&mut s).await;
    assert!(!out.contains("200"), "{out}");
    let big = "a".repeat(16 * 1024);
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(
        format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {big}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    // Under the default 1 MiB cap: answered.
    let out = until_closed(&mut s).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    stop.cancel();
}

#[tokio::test]
async fn oversized_heads_and_too_many_fields_get_431_and_harm_no_one() {
    let server = start(ServeOptions {
        max_header_bytes: 8192,
        max_headers: 20,
        ..ServeOptions::default()
    })
    .await;
    let big = "a".repeat(64 * 1024);
    let out = request(
        server.addr,
        &format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"),
    )
    .await;
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 431"), "{out}");
    let many: String = (0..21).map(|i| format!("X-H{i}: v\r\n")).collect();
    let out = request(
        server.addr,
        &format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    // Just under both caps: answered.
    let some: String = (0..18).map(|i| format!("X-H{i}: v\r\n")).collect();
    let out = request(
        server.addr,
        &format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{some}\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    // HTTP/2 (prior knowledge): the field count is checked too.
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(TcpStream::connect(server.addr).await.unwrap()),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(format!("http://{}/", server.addr));
    for i in 0..25 {
        req = req.header(format!("x-h{i}"), "v");
    }
    let resp = h2
        .send_request(req.body(http_body_util::Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let resp = h2
        .send_request(
            http::Request::get(format!("http://{}/", server.addr))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn at_the_connection_limit_new_connections_wait_until_one_closes() {
    let server = start(ServeOptions {
        max_connections: 2,
        ..ServeOptions::default()
    })
    .await;
    // Two connections fill the listener (they send nothing; the head deadline is 30 s).
    let first = TcpStream::connect(server.addr).await.unwrap();
    let _second = TcpStream::connect(server.addr).await.unwrap();
    // A third is taken by the kernel (backlog) but not served…
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf))
            .await
            .is_err(),
        "served beyond the limit"
    );
    // …until one of the first two closes: then it is served, in order, without a retry.
    drop(first);
    let out = until_closed(&mut third).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

fn idle_quickly() -> ServeOptions {
    ServeOptions {
        // Long enough that hyper's own between-requests timer is not what closes connections.
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_millis(200),
        ..ServeOptions::default()
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = start(idle_quickly()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let out = until_closed(&mut s).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("ok"), "{out}");

    // HTTP/2: GOAWAY, and the connection ends.
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(TcpStream::connect(server.addr).await.unwrap()),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let resp = h2
        .send_request(
            http::Request::get(format!("http://{}/", server.addr))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    tokio::time::timeout(GUARD, conn)
        .await
        .expect("the idle HTTP/2 connection was kept")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_live_stream_quieter_than_the_idle_timeout_is_never_cut() {
    let server = start(idle_quickly()).await;
    // HTTP/1: four chunks, 250 ms apart, with a 200 ms idle timeout.
    let out = request(
        server.addr,
        "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    for i in 0..4 {
        assert!(out.contains(&format!("tick {i}")), "{out}");
    }
    // HTTP/2: the same stream on a multiplexed connection.
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(TcpStream::connect(server.addr).await.unwrap()),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let resp = h2
        .send_request(
            http::Request::get(format!("http://{}/slow", server.addr))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.iter().filter(|b| **b == b'\n').count(), 4);
}

#[tokio::test]
async fn an_upgraded_connection_outlives_the_idle_timeout() {
    let server = start(idle_quickly()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let head = proxylab_test_support::http::read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Quiet for several idle timeouts, then still a tunnel.
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    tokio::time::timeout(GUARD, s.read_exact(&mut buf))
        .await
        .expect("the tunnel was cut")
        .unwrap();
    assert_eq!(&buf, b"still here");
}
