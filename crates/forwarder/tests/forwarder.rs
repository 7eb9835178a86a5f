//! Black-box tests of the forwarder on real loopback sockets.
//!
//! Each test owns a block of loopback addresses (127.81.N.0/24) so tests can run in parallel: endpoints
//! are echo servers on 127.81.N.1.., ClusterIPs 127.81.N.10.., the node 127.81.N.100. Every test feeds
//! the forwarder a `ClusterView` directly (the same model a manifest file or a watch produces), waits
//! until the forwarder has applied it, then talks to it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proxylab_core::cluster::{ClusterSnapshot, ClusterView, Protocol, ServiceKey};
use proxylab_forwarder::{Forwarder, ForwarderConfig, ForwarderHandle, Frontend, Source};
use proxylab_test_support::echo::{tcp_echo, udp_echo};
use proxylab_test_support::http::http_get;
use proxylab_test_support::{eventually, eventually_async, expect_one_line_exit_2, thread_names};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `GET /healthz`: status, body, head.
async fn get_healthz(addr: SocketAddr) -> (u16, String, String) {
    let r = http_get(addr, "/healthz").await;
    (r.status, r.body, r.head)
}

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion":"v1","kind":"Service","metadata":{"name":name,"namespace":"default"},"spec":spec})
}

/// One slice per endpoint, so a test can remove one endpoint by removing its slice.
fn slice(
    service: &str,
    slice: &str,
    port_name: &str,
    proto: &str,
    addr: SocketAddr,
    node: &str,
    ready: bool,
) -> Value {
    json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
        "metadata":{"name":slice,"namespace":"default","labels":{"kubernetes.io/service-name":service}},
        "addressType":"IPv4","ports":[{"name":port_name,"port":addr.port(),"protocol":proto}],
        "endpoints":[{"addresses":[addr.ip().to_string()],"conditions":{"ready":ready,"serving":ready},"nodeName":node}]})
}

fn snapshot(objs: &[Value]) -> ClusterSnapshot {
    ClusterSnapshot::from_objects(objs.iter()).unwrap()
}

struct Running {
    handle: ForwarderHandle,
    addrs: proxylab_forwarder::ForwarderAddrs,
    view: ClusterView,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(
        objs: &[Value],
        node: &str,
        node_ip: &str,
        tweak: impl FnOnce(&mut ForwarderConfig),
    ) -> Self {
        let view = ClusterView::new(snapshot(objs));
        let mut cfg = ForwarderConfig::new(Source::View(view.clone()));
        cfg.node_name = Some(node.into());
        cfg.node_ips = vec![ip(node_ip)];
        cfg.drain_timeout = Duration::from_secs(1);
        tweak(&mut cfg);
        let f = Forwarder::bind(cfg).await.unwrap();
        let handle = f.handle();
        let addrs = f.local_addrs();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            f.serve(s).await.unwrap();
        });
        let r = Self {
            handle,
            addrs,
            view,
            stop,
            task,
        };
        r.sync().await;
        r
    }

    /// Waits until the forwarder has applied the view's current snapshot.
    async fn sync(&self) {
        self.handle.applied(self.view.snapshot().revision).await;
    }

    async fn set(&self, objs: &[Value]) {
        self.view.replace(snapshot(objs));
        self.sync().await;
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// Connects (optionally from a chosen source IP), reads the endpoint's name line, checks an echo.
async fn tcp_hello(to: SocketAddr, from: Option<IpAddr>) -> String {
    let mut s = connect(to, from).await;
    let name = read_line(&mut s).await;
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    name
}

async fn connect(to: SocketAddr, from: Option<IpAddr>) -> TcpStream {
    match from {
        None => TcpStream::connect(to).await.unwrap(),
        Some(ip) => {
            let sock = TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(ip, 0)).unwrap();
            sock.connect(to).await.unwrap()
        }
    }
}

/// Connects to `to` and expects the forwarder to reset the connection: a refusal after the accept,
/// not an empty answer (see `reset_on_close` in the forwarder).
async fn assert_reset(to: &str) {
    let mut s = TcpStream::connect(to).await.unwrap();
    let mut buf = [0u8; 8];
    let err = s
        .read(&mut buf)
        .await
        .expect_err("a reset, not an empty answer");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
}

async fn read_line(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = s.read(&mut b).await.unwrap();
        assert!(n > 0, "connection closed before a line");
        if b[0] == b'\n' {
            break;
        }
        out.push(b[0]);
    }
    String::from_utf8(out).unwrap()
}

async fn udp_ask(sock: &UdpSocket, to: SocketAddr, msg: &str) -> String {
    sock.send_to(msg.as_bytes(), to).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = sock.recv_from(&mut buf).await.unwrap();
    assert_eq!(
        from, to,
        "the reply must come from the address the client spoke to"
    );
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("default", name)
}

#[tokio::test]
async fn tcp_and_udp_through_cluster_ip_and_node_port_spread_over_endpoints() {
    let a = tcp_echo("127.81.1.1:0", "a").await;
    let b = tcp_echo("127.81.1.2:0", "b").await;
    let ua = udp_echo("127.81.1.1:0", "a").await;
    let ub = udp_echo("127.81.1.2:0", "b").await;
    let objs = vec![
        service(
            "mixed",
            json!({"type":"NodePort","clusterIP":"127.81.1.10","ports":[
            {"name":"t","protocol":"TCP","port":8080,"nodePort":30080},
            {"name":"u","protocol":"UDP","port":5353,"nodePort":30053}]}),
        ),
        slice("mixed", "mixed-a", "t", "TCP", a, "n1", true),
        slice("mixed", "mixed-b", "t", "TCP", b, "n2", true),
        slice("mixed", "mixed-ua", "u", "UDP", ua, "n1", true),
        slice("mixed", "mixed-ub", "u", "UDP", ub, "n2", true),
    ];
    let fwd = Running::start(&objs, "n1", "127.81.1.100", |_| {}).await;
    assert!(fwd.handle.is_ready());
    let listeners = fwd.handle.listeners();
    assert_eq!(listeners.len(), 4, "{listeners:?}");

    // Round-robin over two endpoints: 20 connections, 10 each.
    let cip: SocketAddr = "127.81.1.10:8080".parse().unwrap();
    let mut counts = std::collections::HashMap::new();
    for _ in 0..20 {
        *counts.entry(tcp_hello(cip, None).await).or_insert(0) += 1;
    }
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");
    let np: SocketAddr = "127.81.1.100:30080".parse().unwrap();
    let name = tcp_hello(np, None).await;
    assert!(name == "a" || name == "b");

    // UDP: each client socket is a session; 4 clients over 2 endpoints.
    let mut udp_names = Vec::new();
    for _ in 0..4 {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let reply = udp_ask(&c, "127.81.1.10:5353".parse().unwrap(), "hi").await;
        // the same session answers again from the same endpoint
        let again = udp_ask(&c, "127.81.1.10:5353".parse().unwrap(), "hi").await;
        assert_eq!(reply, again);
        udp_names.push(reply);
    }
    assert!(
        udp_names.contains(&"a:hi".to_string()) && udp_names.contains(&"b:hi".to_string()),
        "{udp_names:?}"
    );
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let reply = udp_ask(&c, "127.81.1.100:30053".parse().unwrap(), "np").await;
    assert!(reply.ends_with(":np"));

    // every connection left a hop record, with the upstream leg's local address for stitching
    let hops = fwd.handle.admin().hops.recent(100);
    assert!(hops.iter().filter(|h| h.protocol == "tcp").count() >= 21);
    let h = hops.iter().find(|h| h.protocol == "tcp").unwrap();
    assert_eq!(h.target.as_deref(), Some("default/mixed:t"));
    assert!(h.upstream_local.is_some() && h.upstream.is_some());
    fwd.stop().await;
}

#[tokio::test]
async fn client_ip_affinity_and_its_timeout() {
    let a = tcp_echo("127.81.2.1:0", "a").await;
    let b = tcp_echo("127.81.2.2:0", "b").await;
    let objs = vec![
        service(
            "sticky",
            json!({"clusterIP":"127.81.2.10","sessionAffinity":"ClientIP",
            "sessionAffinityConfig":{"clientIP":{"timeoutSeconds":1}},"ports":[{"name":"t","port":8080}]}),
        ),
        slice("sticky", "s-a", "t", "TCP", a, "n1", true),
        slice("sticky", "s-b", "t", "TCP", b, "n1", true),
    ];
    let fwd = Running::start(&objs, "n1", "127.81.2.100", |_| {}).await;
    let cip: SocketAddr = "127.81.2.10:8080".parse().unwrap();
    let first = tcp_hello(cip, Some(ip("127.81.2.50"))).await;
    for _ in 0..8 {
        assert_eq!(tcp_hello(cip, Some(ip("127.81.2.50"))).await, first);
    }
    // After the timeout without use, the client is balanced again: round-robin's next pick is the
    // endpoint the client did not have (the 8 affinity hits did not advance the rotation).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = tcp_hello(cip, Some(ip("127.81.2.50"))).await;
    assert_ne!(second, first);
    // and it sticks to the new one
    assert_eq!(tcp_hello(cip, Some(ip("127.81.2.50"))).await, second);
    // another client IP has its own affinity
    let other = tcp_hello(cip, Some(ip("127.81.2.51"))).await;
    for _ in 0..3 {
        assert_eq!(tcp_hello(cip, Some(ip("127.81.2.51"))).await, other);
    }
    fwd.stop().await;
}

#[tokio::test]
async fn dead_endpoint_is_skipped_without_failed_connects() {
    let alive = tcp_echo("127.81.3.1:0", "alive").await;
    // a port that was just free on another address: connecting is refused
    let dead = TcpListener::bind("127.81.3.2:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let objs = vec![
        service(
            "half",
            json!({"clusterIP":"127.81.3.10","ports":[{"name":"t","port":8080}]}),
        ),
        slice("half", "h-a", "t", "TCP", alive, "n1", true),
        slice("half", "h-d", "t", "TCP", dead, "n1", true),
    ];
    let fwd = Running::start(&objs, "n1", "127.81.3.100", |_| {}).await;
    for _ in 0..10 {
        assert_eq!(
            tcp_hello("127.81.3.10:8080".parse().unwrap(), None).await,
            "alive"
        );
    }
    let hops = fwd.handle.admin().hops.recent(100);
    assert!(hops.iter().any(|h| {
        h.reason
            .as_deref()
            .is_some_and(|r| r.contains("failed dial"))
    }));
    // With only the dead endpoint left, every dial fails: the client is reset, not closed as
    // if the endpoint had answered nothing.
    fwd.set(
        &objs[..1]
            .iter()
            .chain(&objs[2..])
            .cloned()
            .collect::<Vec<_>>(),
    )
    .await;
    assert_reset("127.81.3.10:8080").await;
    let hops = fwd.handle.admin().hops.recent(100);
    assert_eq!(hops.last().map(|h| &*h.outcome), Some("connect-failed"));
    fwd.stop().await;
}

#[tokio::test]
async fn udp_sessions_move_off_a_removed_endpoint_at_once() {
    let ua = udp_echo("127.81.4.1:0", "a").await;
    let ub = udp_echo("127.81.4.2:0", "b").await;
    let svc = service(
        "dns",
        json!({"clusterIP":"127.81.4.10","ports":[{"name":"u","protocol":"UDP","port":5353}]}),
    );
    let objs = vec![
        svc.clone(),
        slice("dns", "d-a", "u", "UDP", ua, "n1", true),
        slice("dns", "d-b", "u", "UDP", ub, "n1", true),
    ];
    // A long idle timeout: the session would live on; only the endpoint removal may end it.
    let fwd = Running::start(&objs, "n1", "127.81.4.100", |c| {
        c.udp.idle_timeout = Duration::from_secs(300)
    })
    .await;
    let front: SocketAddr = "127.81.4.10:5353".parse().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let first = udp_ask(&client, front, "x").await;
    let (gone_slice, stays) = if first.starts_with("a:") {
        ("d-a", "b:x")
    } else {
        ("d-b", "a:x")
    };
    let remaining: Vec<Value> = objs
        .iter()
        .filter(|o| o["metadata"]["name"].as_str() != Some(gone_slice))
        .cloned()
        .collect();
    fwd.set(&remaining).await;
    assert_eq!(
        fwd.handle.udp_session(front, client.local_addr().unwrap()),
        None
    );
    assert_eq!(udp_ask(&client, front, "x").await, stays);
    let hops = fwd.handle.admin().hops.recent(100);
    assert!(
        hops.iter()
            .any(|h| h.protocol == "udp" && h.outcome == "endpoint-removed"),
        "{hops:?}"
    );
    fwd.stop().await;
}

#[tokio::test]
async fn traffic_policy_local_uses_only_this_nodes_endpoints() {
    let here = tcp_echo("127.81.5.1:0", "here").await;
    let there = tcp_echo("127.81.5.2:0", "there").await;
    let objs = vec![
        service(
            "etp",
            json!({"type":"NodePort","clusterIP":"127.81.5.10","externalTrafficPolicy":"Local",
            "ports":[{"name":"t","port":8080,"nodePort":30081}]}),
        ),
        slice("etp", "e-1", "t", "TCP", here, "n1", true),
        slice("etp", "e-2", "t", "TCP", there, "n2", true),
        service(
            "itp",
            json!({"clusterIP":"127.81.5.11","internalTrafficPolicy":"Local","ports":[{"name":"t","port":8080}]}),
        ),
        slice("itp", "i-2", "t", "TCP", there, "n2", true),
    ];
    let fwd = Running::start(&objs, "n1", "127.81.5.100", |_| {}).await;
    for _ in 0..6 {
        assert_eq!(
            tcp_hello("127.81.5.100:30081".parse().unwrap(), None).await,
            "here"
        );
    }
    // ClusterIP traffic of the same service is not restricted (internalTrafficPolicy: Cluster).
    assert_eq!(
        fwd.handle
            .endpoints(&key("etp"), "t", Protocol::Tcp, Frontend::ClusterIP),
        {
            let mut v = vec![here, there];
            v.sort();
            v
        }
    );
    // internalTrafficPolicy: Local with no endpoint on this node: reset at once (kube-proxy
    // drops it; a reset fails fast instead of leaving the client to time out).
    assert_reset("127.81.5.11:8080").await;
    fwd.stop().await;
}

#[tokio::test]
async fn half_close_is_kept_through_the_relay() {
    // a server that reads until the client's FIN, then answers with what it got, then closes
    let l = TcpListener::bind("127.81.6.1:0").await.unwrap();
    let ep = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got).await;
                let _ = s
                    .write_all(format!("got {} bytes", got.len()).as_bytes())
                    .await;
            });
        }
    });
    let objs = vec![
        service(
            "hc",
            json!({"clusterIP":"127.81.6.10","ports":[{"name":"t","port":8080}]}),
        ),
        slice("hc", "hc-1", "t", "TCP", ep, "n1", true),
    ];
    for relay in [
        proxylab_core::l4::tcp::RelayMode::Auto,
        proxylab_core::l4::tcp::RelayMode::Copy,
    ] {
        let fwd = Running::start(&objs, "n1", "127.81.6.100", |c| c.relay_mode = relay).await;
        let mut s = TcpStream::connect("127.81.6.10:8080").await.unwrap();
        s.write_all(&vec![7u8; 100_000]).await.unwrap();
        s.shutdown().await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "got 100000 bytes");
        fwd.stop().await;
    }
}

#[tokio::test]
async fn a_thousand_concurrent_connections() {
    let _ = proxylab_core::runtime::raise_nofile_limit(1 << 16);
    let a = tcp_echo("127.81.7.1:0", "a").await;
    let b = tcp_echo("127.81.7.2:0", "b").await;
    let objs = vec![
        service(
            "many",
            json!({"clusterIP":"127.81.7.10","ports":[{"name":"t","port":8080}]}),
        ),
        slice("many", "m-a", "t", "TCP", a, "n1", true),
        slice("many", "m-b", "t", "TCP", b, "n1", true),
    ];
    let fwd = Running::start(&objs, "n1", "127.81.7.100", |_| {}).await;
    let cip: SocketAddr = "127.81.7.10:8080".parse().unwrap();
    // open all first, so all 1,000 are established at once, then use them
    let mut conns = Vec::new();
    for _ in 0..1000 {
        conns.push(TcpStream::connect(cip).await.unwrap());
    }
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            tokio::spawn(async move {
                let name = read_line(&mut s).await;
                let msg = format!("message {i}");
                s.write_all(msg.as_bytes()).await.unwrap();
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back).await.unwrap();
                assert_eq!(back, msg.as_bytes());
                name
            })
        })
        .collect();
    let mut per = std::collections::HashMap::new();
    for t in tasks {
        *per.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(per.get("a"), Some(&500));
    assert_eq!(per.get("b"), Some(&500));
    fwd.stop().await;
}

#[tokio::test]
async fn garbage_and_slow_clients_do_not_disturb_others() {
    let a = tcp_echo("127.81.8.1:0", "a").await;
    let ua = udp_echo("127.81.8.1:0", "a").await;
    let objs = vec![
        service(
            "g",
            json!({"clusterIP":"127.81.8.10","ports":[{"name":"t","port":8080},{"name":"u","protocol":"UDP","port":8080}]}),
        ),
        slice("g", "g-a", "t", "TCP", a, "n1", true),
        slice("g", "g-ua", "u", "UDP", ua, "n1", true),
        service(
            "empty",
            json!({"clusterIP":"127.81.8.11","ports":[{"name":"t","port":8080},{"name":"u","protocol":"UDP","port":8080}]}),
        ),
    ];
    let fwd = Running::start(&objs, "n1", "127.81.8.100", |_| {}).await;
    let cip: SocketAddr = "127.81.8.10:8080".parse().unwrap();
    // slow clients: connected, say nothing, read nothing
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(cip).await.unwrap());
    }
    // a client that sends a lot and never reads the echo: its buffers fill, others are unaffected
    let mut hog = TcpStream::connect(cip).await.unwrap();
    let junk: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let hog_task = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), hog.write_all(&junk)).await;
        hog
    });
    // garbage: arbitrary binary is relayed byte for byte
    let mut s = TcpStream::connect(cip).await.unwrap();
    assert_eq!(read_line(&mut s).await, "a");
    let garbage: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let (mut r, mut w) = s.into_split();
    let g2 = garbage.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&g2).await.unwrap();
        w
    });
    let mut back = vec![0u8; garbage.len()];
    r.read_exact(&mut back).await.unwrap();
    assert_eq!(back, garbage);
    drop(writer.await.unwrap());
    // UDP garbage and empty datagrams: answered by the endpoint, nothing breaks
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.send_to(&[], cip).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = c.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"a:");
    // a service without endpoints: TCP is reset at once (kube-proxy REJECTs it), UDP is dropped,
    // the forwarder lives on
    assert_reset("127.81.8.11:8080").await;
    c.send_to(
        b"\x00\xff garbage",
        "127.81.8.11:8080".parse::<SocketAddr>().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(tcp_hello(cip, None).await, "a");
    drop(idle);
    drop(hog_task.await.unwrap());
    fwd.stop().await;
}

#[tokio::test]
async fn removing_a_service_closes_listeners_but_not_established_connections() {
    let a = tcp_echo("127.81.9.1:0", "a").await;
    let objs = vec![
        service(
            "gone",
            json!({"clusterIP":"127.81.9.10","ports":[{"name":"t","port":8080}]}),
        ),
        slice("gone", "gone-a", "t", "TCP", a, "n1", true),
    ];
    let fwd = Running::start(&objs, "n1", "127.81.9.100", |_| {}).await;
    let mut s = TcpStream::connect("127.81.9.10:8080").await.unwrap();
    assert_eq!(read_line(&mut s).await, "a");
    fwd.set(&[]).await;
    assert!(fwd.handle.listeners().is_empty());
    assert!(
        TcpStream::connect("127.81.9.10:8080").await.is_err(),
        "the listener must be closed"
    );
    s.write_all(b"still here").await.unwrap();
    let mut back = [0u8; 10];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"still here");
    fwd.stop().await;
}

#[tokio::test]
async fn health_check_node_port_and_healthz() {
    let a = tcp_echo("127.81.10.1:0", "a").await;
    let objs = vec![
        service(
            "lb",
            json!({"type":"LoadBalancer","clusterIP":"127.81.10.10","externalTrafficPolicy":"Local",
            "healthCheckNodePort":32100,"ports":[{"name":"t","port":8080,"nodePort":30082}]}),
        ),
        slice("lb", "lb-a", "t", "TCP", a, "n1", true),
    ];
    let fwd = Running::start(&objs, "n1", "127.81.10.100", |c| {
        c.healthz_address = Some("127.81.10.100:0".parse().unwrap())
    })
    .await;
    let (status, body, headers) = get_healthz("127.81.10.100:32100".parse().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["localEndpoints"], 1);
    assert_eq!(v["service"]["name"], "lb");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("x-load-balancing-endpoint-weight: 1")
    );
    // the endpoint moves to another node: this node must refuse LB traffic
    let moved = vec![
        objs[0].clone(),
        slice("lb", "lb-a", "t", "TCP", a, "n2", true),
    ];
    fwd.set(&moved).await;
    let (status, body, _) = get_healthz("127.81.10.100:32100".parse().unwrap()).await;
    assert_eq!(status, 503, "{body}");
    // kube-proxy's own /healthz: healthy once the latest snapshot is applied
    let (status, body, _) = get_healthz(fwd.addrs.healthz.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["nodeEligible"], true);
    assert!(v["lastUpdated"].as_str().is_some_and(|s| !s.is_empty()));
    fwd.stop().await;
}

#[tokio::test]
async fn manifest_file_source_reloads_on_change() {
    let a = tcp_echo("127.81.11.1:0", "a").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    let yaml = |port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: f\n  namespace: default\nspec:\n  clusterIP: 127.81.11.10\n  ports:\n  - name: t\n    port: {port}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: f-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: f\naddressType: IPv4\nports:\n- name: t\n  port: {}\nendpoints:\n- addresses: [\"{}\"]\n",
            a.port(),
            a.ip()
        )
    };
    std::fs::write(&path, yaml(8080)).unwrap();
    let f = Forwarder::bind(ForwarderConfig::new(Source::File(path.clone())))
        .await
        .unwrap();
    let handle = f.handle();
    let view = f.view();
    let stop = CancellationToken::new();
    let task = tokio::spawn(f.serve(stop.clone()));
    handle.applied(view.snapshot().revision).await;
    assert_eq!(
        tcp_hello("127.81.11.10:8080".parse().unwrap(), None).await,
        "a"
    );
    let mut changes = view.subscribe();
    std::fs::write(&path, yaml(8081)).unwrap();
    changes.changed().await.unwrap();
    handle.applied(view.snapshot().revision).await;
    assert_eq!(
        tcp_hello("127.81.11.10:8081".parse().unwrap(), None).await,
        "a"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[test]
fn bad_config_file_is_one_line_with_file_line_and_field_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: 127.0.40.10\n  ports:\n  - name: http\n    port: 99999\n",
    )
    .unwrap();
    let line = expect_one_line_exit_2(
        std::process::Command::new(env!("CARGO_BIN_EXE_forwarder")).args([
            "--config",
            path.to_str().unwrap(),
            "--healthz-bind-address",
            "",
            "--admin-address",
            "",
        ]),
    );
    assert!(line.contains("bad.yaml:9:"), "{line}");
    assert!(line.contains("spec.ports[0].port"), "{line}");
}

#[tokio::test]
async fn serving_threads_relay_follow_changes_and_stop() {
    let a = tcp_echo("127.81.20.1:0", "a").await;
    let b = tcp_echo("127.81.20.2:0", "b").await;
    let objs = vec![
        service(
            "threads",
            json!({"clusterIP":"127.81.20.10","ports":[{"name":"t","port":8080}]}),
        ),
        slice("threads", "t-a", "t", "TCP", a, "n1", true),
        slice("threads", "t-b", "t", "TCP", b, "n1", true),
    ];
    let fwd = Running::start(&objs, "n1", "127.81.20.100", |c| c.serving_threads = 2).await;
    let names = thread_names();
    for n in ["forwarder-0", "forwarder-1"] {
        assert!(names.iter().any(|t| t == n), "{n} missing in {names:?}");
    }
    let cip: SocketAddr = "127.81.20.10:8080".parse().unwrap();
    // Every serving thread accepts from the one (exclusive) socket; whichever gets a connection
    // relays it, and the round robin is still one per service across threads.
    let mut per = std::collections::HashMap::new();
    for _ in 0..40 {
        *per.entry(tcp_hello(cip, None).await).or_insert(0) += 1;
    }
    assert_eq!(per.get("a"), Some(&20), "{per:?}");
    assert_eq!(per.get("b"), Some(&20), "{per:?}");

    // An established connection outlives its service; new ones are refused on every thread.
    let mut s = TcpStream::connect(cip).await.unwrap();
    let first = read_line(&mut s).await;
    fwd.set(&[]).await;
    eventually_async("every thread's listener to close", async || {
        TcpStream::connect(cip).await.is_err()
    })
    .await;
    s.write_all(b"still here").await.unwrap();
    let mut back = [0u8; 10];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"still here", "relayed by {first}");
    drop(s);

    fwd.stop().await;
    eventually("the serving threads to end", || {
        !thread_names()
            .iter()
            .any(|t| t == "forwarder-0" || t == "forwarder-1")
    })
    .await;
}

/// The binary as a user runs it: a manifest file, TCP on its serving threads (one
/// single-threaded runtime each), UDP (sharded over the same threads), and SIGTERM ends it with 0.
#[tokio::test]
async fn the_binary_relays_tcp_on_its_threads_and_udp_and_exits_0_on_sigterm() {
    let a = tcp_echo("127.81.21.1:0", "a").await;
    let ua = udp_echo("127.81.21.1:0", "a").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Service
metadata: {{name: bin, namespace: default}}
spec:
  clusterIP: 127.81.21.10
  ports:
  - {{name: t, protocol: TCP, port: 8080, targetPort: t}}
  - {{name: u, protocol: UDP, port: 8081, targetPort: u}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: bin-1
  namespace: default
  labels: {{kubernetes.io/service-name: bin}}
addressType: IPv4
ports:
- {{name: t, protocol: TCP, port: {}}}
- {{name: u, protocol: UDP, port: {}}}
endpoints:
- addresses: [\"127.81.21.1\"]
  conditions: {{ready: true, serving: true, terminating: false}}
",
            a.port(),
            ua.port()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .args([
            "--config",
            path.to_str().unwrap(),
            "--healthz-bind-address",
            "",
            "--admin-address",
            "",
            "--worker-threads",
            "2",
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let cip: SocketAddr = "127.81.21.10:8080".parse().unwrap();
    eventually_async(&format!("the forwarder to listen on {cip}"), async || {
        TcpStream::connect(cip).await.is_ok()
    })
    .await;
    for _ in 0..10 {
        assert_eq!(tcp_hello(cip, None).await, "a");
    }
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let uip: SocketAddr = "127.81.21.10:8081".parse().unwrap();
    assert_eq!(udp_ask(&udp, uip, "hello").await, "a:hello");
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    for n in ["forwarder-0", "forwarder-1"] {
        assert!(threads.iter().any(|t| t == n), "{n} missing in {threads:?}");
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the forwarder exits after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A row of `/proc/net/tcp`: local and remote address, and the `tr` column (2 while a keepalive
/// timer is armed).
#[cfg(target_os = "linux")]
struct TcpRow {
    local: SocketAddr,
    remote: SocketAddr,
    timer: u8,
}

/// The IPv4 TCP sockets of this network namespace, as the kernel reports them.
#[cfg(target_os = "linux")]
fn tcp_table() -> Vec<TcpRow> {
    socket_table("/proc/net/tcp")
}

/// The rows of `/proc/net/tcp` or `/proc/net/udp`.
#[cfg(target_os = "linux")]
fn socket_table(path: &str) -> Vec<TcpRow> {
    let addr = |hex: &str| -> SocketAddr {
        let (ip, port) = hex.split_once(':').unwrap();
        let ip = u32::from_str_radix(ip, 16).unwrap().to_le_bytes();
        SocketAddr::from((ip, u16::from_str_radix(port, 16).unwrap()))
    };
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            TcpRow {
                local: addr(f[1]),
                remote: addr(f[2]),
                timer: f[5].split(':').next().unwrap().parse().unwrap(),
            }
        })
        .collect()
}

/// TCP keepalive on both of the forwarder's sockets, as kube-proxy's Go dialer and listener have
/// it: the client side inherits it from the listener (set once, no per-connection cost), the
/// upstream side is armed by the relay once the connection has lived a second. The client's own
/// socket, which sets nothing, shows that the check can tell the difference.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn both_relayed_sockets_get_keepalive() {
    const KEEPALIVE_TIMER: u8 = 2;
    let ep = tcp_echo("127.81.12.1:0", "ka").await;
    let objs = vec![
        service(
            "ka",
            json!({"clusterIP":"127.81.12.10","ports":[{"name":"t","port":8080}]}),
        ),
        slice("ka", "ka-1", "t", "TCP", ep, "n1", true),
    ];
    let fwd = Running::start(&objs, "n1", "127.81.12.100", |c| {
        c.keepalive = Duration::from_secs(30)
    })
    .await;
    let front: SocketAddr = "127.81.12.10:8080".parse().unwrap();
    let mut client = connect(front, None).await;
    assert_eq!(read_line(&mut client).await, "ka");
    let me = client.local_addr().unwrap();
    eventually("keepalive armed on both forwarder sockets", || {
        let rows = tcp_table();
        let client_side = rows.iter().any(|r| r.local == front && r.remote == me);
        let client_side_armed = rows
            .iter()
            .any(|r| r.local == front && r.remote == me && r.timer == KEEPALIVE_TIMER);
        // The endpoint has one connection: the forwarder's upstream socket is its peer.
        let upstream_armed = rows
            .iter()
            .any(|r| r.remote == ep && r.timer == KEEPALIVE_TIMER);
        assert!(client_side, "the forwarder's client-side socket is listed");
        client_side_armed && upstream_armed
    })
    .await;
    let own = tcp_table();
    let own = own.iter().find(|r| r.local == me && r.remote == front);
    assert_eq!(
        own.map(|r| r.timer),
        Some(0),
        "the client's own socket has no keepalive"
    );
    // Still relaying after the options changed under it.
    client.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    fwd.stop().await;
}

/// UDP on serving threads: one exclusive socket per address, read by one of the threads, with one
/// session table (a client's datagrams must meet one table). A client keeps its session, lookups
/// and endpoint removal reach it.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn udp_sessions_on_serving_threads_use_one_socket_and_table() {
    let ua = udp_echo("127.81.22.1:0", "a").await;
    let ub = udp_echo("127.81.22.2:0", "b").await;
    let objs = vec![
        service(
            "sharded",
            json!({"clusterIP":"127.81.22.10","ports":[{"name":"u","protocol":"UDP","port":5353}]}),
        ),
        slice("sharded", "s-a", "u", "UDP", ua, "n1", true),
        slice("sharded", "s-b", "u", "UDP", ub, "n1", true),
    ];
    let fwd = Running::start(&objs, "n1", "127.81.22.100", |c| {
        c.serving_threads = 2;
        c.udp.idle_timeout = Duration::from_secs(300);
    })
    .await;
    let front: SocketAddr = "127.81.22.10:5353".parse().unwrap();
    let sockets = socket_table("/proc/net/udp")
        .into_iter()
        .filter(|r| r.local == front)
        .count();
    assert_eq!(sockets, 1, "one UDP socket per address");
    let mut clients = Vec::new();
    for _ in 0..16 {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let first = udp_ask(&c, front, "x").await;
        // The same session (so the same endpoint) for the client's next datagram.
        assert_eq!(udp_ask(&c, front, "x").await, first);
        let upstream = fwd.handle.udp_session(front, c.local_addr().unwrap());
        assert_eq!(upstream, Some(if first == "a:x" { ua } else { ub }));
        clients.push(c);
    }
    // Removing endpoint a ends its sessions; every client now gets b.
    fwd.set(&[objs[0].clone(), objs[2].clone()]).await;
    for c in &clients {
        let me = c.local_addr().unwrap();
        assert_ne!(fwd.handle.udp_session(front, me), Some(ua));
        assert_eq!(udp_ask(c, front, "y").await, "b:y");
    }
    fwd.stop().await;
}
