//! Echo workloads on real loopback sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxylab_node::certs::{self, CertificateAuthority};
use proxylab_node::workload::logs::ContainerLog;
use proxylab_node::workload::{
    ContainerSpec, Listening, PodContext, PodIdentity, PortProtocol, PortSpec, WorkloadError,
    start_container,
};
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn port(name: &str, protocol: PortProtocol) -> PortSpec {
    PortSpec {
        name: Some(name.into()),
        port: 0,
        protocol,
    }
}

struct Pod {
    ctx: PodContext,
    listening: Vec<Listening>,
    log: ContainerLog,
    ca: CertificateAuthority,
}

impl Pod {
    async fn start(image: &str, ports: Vec<PortSpec>) -> Pod {
        certs::install_crypto_provider();
        let ca = CertificateAuthority::generate("test-ca").expect("CA");
        let identity = PodIdentity {
            name: "web-1".into(),
            namespace: "default".into(),
            node: "node-1".into(),
            ip: LOCALHOST,
        };
        let serving = certs::issue_serving(&["web-1".into(), LOCALHOST.to_string()], Some(&ca))
            .expect("cert");
        let ctx = PodContext {
            identity: Arc::new(identity),
            tls: Some(certs::server_config(&serving, Vec::new()).expect("tls")),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        let container = ContainerSpec {
            name: "main".into(),
            image: image.into(),
            ports,
            argv: Vec::new(),
        };
        let started = start_container(&container, &ctx).await.expect("start");
        Pod {
            ctx,
            listening: started.listening,
            log: started.log,
            ca,
        }
    }

    fn http(&self) -> SocketAddr {
        self.listening
            .iter()
            .find_map(|l| {
                if let Listening::Http(a) = l {
                    Some(*a)
                } else {
                    None
                }
            })
            .expect("http port")
    }

    fn https(&self) -> SocketAddr {
        self.listening
            .iter()
            .find_map(|l| {
                if let Listening::Https(a) = l {
                    Some(*a)
                } else {
                    None
                }
            })
            .expect("https port")
    }

    async fn stop(self) {
        self.ctx.shutdown.cancel();
        self.ctx.tracker.close();
        self.ctx.tracker.wait().await;
    }
}

async fn http_pod() -> Pod {
    Pod::start(
        "proxylab/echo-http:1",
        vec![
            port("http", PortProtocol::Tcp),
            port("https", PortProtocol::Tcp),
        ],
    )
    .await
}

/// Sends one HTTP/1.1 request on a fresh connection; returns status, headers and the body frames.
async fn h1(addr: SocketAddr, req: Request<Full<Bytes>>) -> (http::response::Parts, Vec<Bytes>) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("response");
    let (parts, mut body) = resp.into_parts();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            frames.push(data);
        }
    }
    (parts, frames)
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "echo.test")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

fn json(frames: &[Bytes]) -> Value {
    let all: Vec<u8> = frames.iter().flat_map(|b| b.iter().copied()).collect();
    serde_json::from_slice(&all).expect("JSON body")
}

#[tokio::test]
async fn http_echo_reports_request_and_connection() {
    let pod = http_pod().await;
    let addr = pod.http();
    let req = Request::post("/some/path?x=1&y=two")
        .header("host", "web.default.svc")
        .header("x-forwarded-for", "203.0.113.7, 10.0.0.1")
        .header("forwarded", "for=203.0.113.7;proto=https")
        .header("via", "1.1 auth-proxy")
        .body(Full::new(Bytes::from_static(b"payload")))
        .expect("request");
    let (parts, frames) = h1(addr, req).await;
    assert_eq!(parts.status, StatusCode::OK);
    let v = json(&frames);
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/some/path");
    assert_eq!(v["query"], "x=1&y=two");
    assert_eq!(v["host"], "web.default.svc");
    assert_eq!(v["body"], "payload");
    assert_eq!(v["headers"]["x-forwarded-for"], "203.0.113.7, 10.0.0.1");
    assert_eq!(v["headers"]["forwarded"], "for=203.0.113.7;proto=https");
    assert_eq!(v["headers"]["via"], "1.1 auth-proxy");
    assert_eq!(v["pod"], "web-1");
    assert_eq!(v["namespace"], "default");
    assert_eq!(v["node"], "node-1");
    assert_eq!(v["tls"], false);
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["localAddress"], addr.to_string());
    let client: SocketAddr = v["clientAddress"]
        .as_str()
        .expect("client")
        .parse()
        .expect("addr");
    assert_eq!(client.ip(), LOCALHOST);

    let (_, frames) = h1(addr, get("/hostname")).await;
    assert_eq!(frames.concat(), b"web-1");
    let (_, frames) = h1(addr, get("/clientip")).await;
    assert_eq!(frames.concat(), b"127.0.0.1");

    // The container log has one access line per request, with the forwarding headers.
    let lines: Vec<String> = pod.log.tail(None).into_iter().map(|l| l.text).collect();
    let post = lines
        .iter()
        .find(|l| l.contains("\"POST /some/path?x=1&y=two HTTP/1.1\""))
        .expect("access line");
    assert!(post.starts_with(&format!("{client} -> {addr} ")), "{post}");
    assert!(
        post.contains("x-forwarded-for=\"203.0.113.7, 10.0.0.1\""),
        "{post}"
    );
    assert!(post.ends_with(" 200"), "{post}");
    pod.stop().await;
}

#[tokio::test]
async fn http_echo_speaks_h2_prior_knowledge() {
    let pod = http_pod().await;
    let stream = TcpStream::connect(pod.http()).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2");
    tokio::spawn(conn);
    let uri = format!("http://{}/h2", pod.http());
    let resp = sender
        .send_request(Request::get(uri).body(Empty::<Bytes>::new()).expect("req"))
        .await
        .expect("resp");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["protocol"], "HTTP/2");
    assert_eq!(v["host"], pod.http().to_string());
    pod.stop().await;
}

#[tokio::test]
async fn status_codes_and_redirects() {
    let pod = http_pod().await;
    let addr = pod.http();
    let (parts, frames) = h1(addr, get("/status/418")).await;
    assert_eq!(parts.status.as_u16(), 418);
    assert_eq!(json(&frames)["path"], "/status/418");
    let (parts, frames) = h1(addr, get("/status/503")).await;
    assert_eq!(parts.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!frames.is_empty());
    let (parts, frames) = h1(addr, get("/status/204")).await;
    assert_eq!(parts.status, StatusCode::NO_CONTENT);
    assert!(frames.concat().is_empty());
    for bad in ["/status/abc", "/status/99", "/status/600", "/status/70000"] {
        let (parts, _) = h1(addr, get(bad)).await;
        assert_eq!(parts.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (parts, _) = h1(addr, get("/redirect?to=%2Felsewhere%3Fa%3Db")).await;
    assert_eq!(parts.status, StatusCode::FOUND);
    assert_eq!(parts.headers["location"], "/elsewhere?a=b");
    let (parts, _) = h1(addr, get("/redirect")).await;
    assert_eq!(parts.headers["location"], "/");
    pod.stop().await;
}

#[tokio::test]
async fn delay_waits_then_echoes_and_ends_at_pod_shutdown() {
    let pod = http_pod().await;
    let addr = pod.http();
    let (parts, frames) = h1(addr, get("/delay/30")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(json(&frames)["delayMs"], 30);
    let (parts, _) = h1(addr, get("/delay/soon")).await;
    assert_eq!(parts.status, StatusCode::BAD_REQUEST);

    // A delay far beyond the cap: the pod's removal must end it, not the client's patience.
    // Over one HTTP/2 connection, a first answered request proves the connection is being served;
    // on shutdown the server's GOAWAY still lets streams it has received finish, and a handler that
    // starts after the cancellation sees it at once — so the delayed request deterministically ends
    // with 503, whichever comes first.
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2");
    tokio::spawn(conn);
    let warmup = sender
        .send_request(
            Request::get(format!("http://{addr}/hostname"))
                .body(Empty::<Bytes>::new())
                .expect("req"),
        )
        .await
        .expect("resp");
    assert_eq!(warmup.status(), StatusCode::OK);
    let pending = sender.send_request(
        Request::get(format!("http://{addr}/delay/999999999"))
            .body(Empty::<Bytes>::new())
            .expect("req"),
    );
    let pending = tokio::spawn(pending);
    tokio::task::yield_now().await;
    pod.ctx.shutdown.cancel();
    let resp = pending.await.expect("join").expect("response");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    pod.stop().await;
}

#[tokio::test]
async fn stream_arrives_in_chunks() {
    let pod = http_pod().await;
    let (parts, frames) = h1(pod.http(), get("/stream?n=4&interval_ms=20")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["transfer-encoding"], "chunked");
    // One chunk per line, in order.
    assert_eq!(frames.len(), 4, "{frames:?}");
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(
            frame.as_ref(),
            format!("line {} of 4 from web-1\n", i + 1).as_bytes()
        );
    }
    let (_, frames) = h1(pod.http(), get("/stream?n=0")).await;
    assert!(frames.concat().is_empty());
    pod.stop().await;
}

#[tokio::test]
async fn websocket_round_trip() {
    let pod = http_pod().await;
    let stream = TcpStream::connect(pod.http()).await.expect("connect");
    let url = format!("ws://{}/ws", pod.http());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("ws handshake");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(
        ws.next().await.expect("reply").expect("ok"),
        Message::text("hello")
    );
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send");
    assert_eq!(
        ws.next().await.expect("reply").expect("ok"),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    // The pod going away closes the socket from the server side.
    pod.ctx.shutdown.cancel();
    match ws.next().await {
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {}
        other => panic!("expected close, got {other:?}"),
    }
    pod.stop().await;
}

async fn tls_request(pod: &Pod, alpn: &[u8]) -> (Option<Vec<u8>>, Value) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pod.ca.cert_der().clone()).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(certs::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(pod.https()).await.expect("connect");
    let tls = connector
        .connect(ServerName::IpAddress(LOCALHOST.into()), tcp)
        .await
        .expect("handshake verifies");
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(tls);
    let uri = format!("https://{}/secure", pod.https());
    let resp = if negotiated.as_deref() == Some(b"h2") {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2");
        tokio::spawn(conn);
        sender
            .send_request(Request::get(uri).body(Empty::<Bytes>::new()).expect("req"))
            .await
            .expect("resp")
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.expect("h1");
        tokio::spawn(conn);
        let req = Request::get("/secure")
            .header("host", "web-1")
            .body(Empty::<Bytes>::new())
            .expect("req");
        sender.send_request(req).await.expect("resp")
    };
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (negotiated, serde_json::from_slice(&body).expect("json"))
}

#[tokio::test]
async fn tls_with_alpn_h2_and_http11() {
    let pod = http_pod().await;
    let (alpn, v) = tls_request(&pod, b"h2").await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(v["tls"], true);
    assert_eq!(v["alpn"], "h2");
    assert_eq!(v["protocol"], "HTTP/2");
    let (alpn, v) = tls_request(&pod, b"http/1.1").await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(v["tls"], true);
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["localAddress"], pod.https().to_string());
    pod.stop().await;
}

#[tokio::test]
async fn tcp_echo_is_half_close_aware() {
    let pod = Pod::start(
        "echo-tcp",
        vec![PortSpec {
            name: None,
            port: 0,
            protocol: PortProtocol::Tcp,
        }],
    )
    .await;
    let Listening::Tcp(addr) = pod.listening[0] else {
        panic!("tcp listener expected")
    };
    let pod_log = pod.log.clone();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = stream.split();
    let writer = async {
        w.write_all(&payload).await.expect("write");
        // FIN: the server must still send everything back, then close.
        w.shutdown().await.expect("shutdown");
    };
    let mut echoed = Vec::new();
    let reader = r.read_to_end(&mut echoed);
    let ((), read) = tokio::join!(writer, reader);
    read.expect("read to the server's FIN");
    assert_eq!(echoed, payload);
    let local = stream.local_addr().expect("addr");
    pod.stop().await;
    let lines: Vec<String> = pod_log.tail(None).into_iter().map(|l| l.text).collect();
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("{local} -> {addr} closed after echoing 200000 bytes")),
        "{lines:?}"
    );
    // Stopped: nothing listens any more.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn udp_echo_and_whoami() {
    let pod = Pod::start(
        "echo-udp:latest",
        vec![PortSpec {
            name: None,
            port: 0,
            protocol: PortProtocol::Udp,
        }],
    )
    .await;
    let Listening::Udp(addr) = pod.listening[0] else {
        panic!("udp socket expected")
    };
    let client = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let mut buf = [0u8; 2048];
    client.send_to(b"ping \x00\xff", addr).await.expect("send");
    let (n, from) = client.recv_from(&mut buf).await.expect("recv");
    assert_eq!(&buf[..n], b"ping \x00\xff");
    assert_eq!(from, addr);
    client.send_to(b"whoami\n", addr).await.expect("send");
    let (n, _) = client.recv_from(&mut buf).await.expect("recv");
    let expected = format!(
        "pod=web-1 node=node-1 client={}",
        client.local_addr().expect("addr")
    );
    assert_eq!(std::str::from_utf8(&buf[..n]).expect("utf8"), expected);
    // One line for the new client and one for its whoami — not one per datagram.
    let me = client.local_addr().expect("addr");
    let lines: Vec<String> = pod.log.tail(None).into_iter().map(|l| l.text).collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with(&me.to_string()))
            .count(),
        2,
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("{me} -> {addr}/udp whoami")),
        "{lines:?}"
    );
    pod.stop().await;
}

#[tokio::test]
async fn unknown_images_and_bind_conflicts_are_errors() {
    certs::install_crypto_provider();
    let ctx = PodContext {
        identity: Arc::new(PodIdentity {
            name: "p".into(),
            namespace: "d".into(),
            node: "n".into(),
            ip: LOCALHOST,
        }),
        tls: None,
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
    };
    let nginx = ContainerSpec {
        name: "c".into(),
        image: "nginx:1.27".into(),
        ports: vec![],
        argv: Vec::new(),
    };
    assert!(matches!(
        start_container(&nginx, &ctx).await,
        Err(WorkloadError::UnknownImage { .. })
    ));

    let taken = std::net::TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let busy = taken.local_addr().expect("addr").port();
    let tcp = ContainerSpec {
        name: "c".into(),
        image: "echo-tcp".into(),
        ports: vec![
            PortSpec {
                name: None,
                port: 0,
                protocol: PortProtocol::Tcp,
            },
            PortSpec {
                name: None,
                port: busy,
                protocol: PortProtocol::Tcp,
            },
        ],
        argv: Vec::new(),
    };
    assert!(matches!(
        start_container(&tcp, &ctx).await,
        Err(WorkloadError::Bind { .. })
    ));
    let https = ContainerSpec {
        name: "c".into(),
        image: "echo-http".into(),
        ports: vec![port("https", PortProtocol::Tcp)],
        argv: Vec::new(),
    };
    assert!(matches!(
        start_container(&https, &ctx).await,
        Err(WorkloadError::NoTls(_))
    ));
    // Nothing was spawned by the failed starts.
    ctx.tracker.close();
    assert!(ctx.tracker.is_empty());
}
