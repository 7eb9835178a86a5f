//! `ServeOptions::proxy_protocol`: a listener behind an L4 load balancer learns the client from a
//! PROXY header (v1 or v2) and still serves clients that send none; a broken header closes the
//! connection; with the option off a header is just bad HTTP.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use proxylab_core::l4::proxy_protocol::{Transport, encode_v1, encode_v2};
use proxylab_core::serve::{ConnInfo, ServeOptions, serve_http_with};
use proxylab_test_support::http::raw_exchange_bytes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn server(proxy_protocol: bool) -> (SocketAddr, CancellationToken) {
    let app = Router::new().route(
        "/",
        get(|req: Request| async move {
            let c = req.extensions().get::<ConnInfo>().unwrap();
            format!(
                "remote={} proxied={}",
                c.remote.ip(),
                c.proxied.map_or("none".into(), |h| h.source.to_string())
            )
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let stop = CancellationToken::new();
    let options = ServeOptions {
        proxy_protocol,
        ..Default::default()
    };
    tokio::spawn(serve_http_with(l, None, app, stop.clone(), options));
    (addr, stop)
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

fn with(header: Vec<u8>) -> Vec<u8> {
    let mut v = header;
    v.extend_from_slice(GET);
    v
}

#[tokio::test]
async fn the_header_names_the_client_and_is_optional() {
    let (addr, _stop) = server(true).await;
    let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let v2 = raw_exchange_bytes(addr, &with(encode_v2(client, addr, Transport::Stream))).await;
    assert!(
        v2.ends_with("remote=127.0.0.1 proxied=192.0.2.7:40000"),
        "{v2}"
    );
    let v1 = raw_exchange_bytes(addr, &with(encode_v1(client, addr))).await;
    assert!(v1.ends_with("proxied=192.0.2.7:40000"), "{v1}");
    let none = raw_exchange_bytes(addr, GET).await;
    assert!(none.ends_with("remote=127.0.0.1 proxied=none"), "{none}");
    let broken = raw_exchange_bytes(addr, &with(b"PROXY TCP4 nonsense\r\n".to_vec())).await;
    assert_eq!(broken, "", "a broken header closes the connection");
}

#[tokio::test]
async fn off_by_default_so_a_header_is_not_trusted() {
    let (addr, _stop) = server(false).await;
    let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let answer = raw_exchange_bytes(addr, &with(encode_v1(client, addr))).await;
    assert!(!answer.contains("192.0.2.7"), "{answer}");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}
