//! One forwarder per client, as on a real node; service sockets nobody else can join.
//!
//! Two forwarders in one process (two nodes, as the lab runs them) share one exclusive socket per
//! service address through a `ListenerSet`; the client's source address picks the forwarder: a
//! node's address or pod CIDR → that node's, anything else → the first that joined. These tests
//! own 127.81.40.0/22.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proxylab_core::cluster::{ClusterSnapshot, ClusterView, Protocol};
use proxylab_core::telemetry::HopRecord;
use proxylab_forwarder::{
    Forwarder, ForwarderConfig, ForwarderError, ForwarderHandle, ListenerSet, Source,
};
use proxylab_test_support::echo::tcp_echo;
use proxylab_test_support::{eventually, eventually_async};
use serde_json::{Value, json};
use socket2::{Domain, Socket, Type};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

const N1: &str = "127.81.40.101";
const N2: &str = "127.81.40.102";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn node(name: &str, address: &str, pod_cidr: &str) -> Value {
    json!({"apiVersion":"v1","kind":"Node","metadata":{"name":name},"spec":{"podCIDR":pod_cidr},
        "status":{"addresses":[{"type":"InternalIP","address":address}]}})
}

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion":"v1","kind":"Service","metadata":{"name":name,"namespace":"default"},"spec":spec})
}

fn slice(service: &str, proto: &str, endpoints: &[SocketAddr]) -> Value {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|a| json!({"addresses":[a.ip().to_string()],"conditions":{"ready":true}}))
        .collect();
    json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
        "metadata":{"name":service,"namespace":"default","labels":{"kubernetes.io/service-name":service}},
        "addressType":"IPv4","ports":[{"name":"p","port":endpoints[0].port(),"protocol":proto}],
        "endpoints":eps})
}

/// The nodes of these tests: n1 owns 127.81.41.0/25, n2 127.81.41.128/25.
fn cluster(extra: Vec<Value>) -> ClusterView {
    let mut objs = vec![
        node("n1", N1, "127.81.41.0/25"),
        node("n2", N2, "127.81.41.128/25"),
    ];
    objs.extend(extra);
    ClusterView::new(ClusterSnapshot::from_objects(objs.iter()).unwrap())
}

struct Running {
    handle: ForwarderHandle,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ForwarderError>>,
}

impl Running {
    /// The forwarder of node `name` (dialling from `address`) on `view`, in `set`.
    async fn start(view: &ClusterView, name: &str, address: &str, set: &ListenerSet) -> Self {
        let mut cfg = ForwarderConfig::new(Source::View(view.clone()));
        cfg.node_name = Some(name.into());
        cfg.node_ips = vec![ip(address)];
        cfg.source_address = Some(ip(address));
        cfg.listeners = Some(set.clone());
        cfg.drain_timeout = Duration::from_secs(1);
        let f = Forwarder::bind(cfg).await.unwrap();
        let handle = f.handle();
        let stop = CancellationToken::new();
        let task = tokio::spawn(f.serve(stop.clone()));
        handle.applied(view.snapshot().revision).await;
        Self { handle, stop, task }
    }

    fn hops(&self) -> Vec<HopRecord> {
        self.handle.admin().hops.recent(1000)
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn connect_from(to: SocketAddr, from: &str) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(ip(from), 0)).unwrap();
    sock.connect(to).await.unwrap()
}

/// The name line of the echo endpoint that answered a connection from `from`.
async fn hello_from(to: SocketAddr, from: &str) -> String {
    let mut s = connect_from(to, from).await;
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).await.unwrap() == 1 && b[0] != b'\n' {
        out.push(b[0]);
    }
    String::from_utf8(out).unwrap()
}

/// `sessionAffinity: ClientIP` holds for a client across many connections, because one forwarder
/// (one balancer, one affinity table) serves it; which one follows the client's address; and each
/// forwarder dials the pod from its node's address.
#[tokio::test]
async fn one_forwarder_serves_a_client_so_client_ip_affinity_holds() {
    let a = tcp_echo("127.81.40.1:0", "a").await;
    let b = tcp_echo("127.81.40.2:0", "b").await;
    let c = tcp_echo("127.81.40.3:0", "c").await;
    let view = cluster(vec![
        service(
            "sticky",
            json!({"clusterIP":"127.81.40.10","sessionAffinity":"ClientIP","ports":[{"name":"p","port":8080}]}),
        ),
        slice("sticky", "TCP", &[a, b, c]),
    ]);
    let set = ListenerSet::new();
    let n1 = Running::start(&view, "n1", N1, &set).await;
    let n2 = Running::start(&view, "n2", N2, &set).await;
    let cip: SocketAddr = "127.81.40.10:8080".parse().unwrap();
    // One socket for the address, both forwarders routed on it, n1 first.
    assert_eq!(
        set.routes(),
        vec![(Protocol::Tcp, cip, vec!["n1".to_string(), "n2".to_string()])]
    );

    // Clients of no node (n1 serves them), of n1's pods, of n2's pods and n2 itself: each sticks
    // to one endpoint over 12 connections.
    let clients = [
        ("127.81.40.50", "n1"),
        ("127.81.41.5", "n1"),
        ("127.81.41.130", "n2"),
        (N2, "n2"),
    ];
    for (client, _) in clients {
        let first = hello_from(cip, client).await;
        for _ in 0..11 {
            assert_eq!(hello_from(cip, client).await, first, "client {client}");
        }
    }
    eventually("every connection's hop", || {
        n1.hops().len() + n2.hops().len() == 48
    })
    .await;
    for (client, serving) in clients {
        let (mine, other) = if serving == "n1" {
            (&n1, &n2)
        } else {
            (&n2, &n1)
        };
        let of = |r: &Running| -> Vec<HopRecord> {
            r.hops()
                .into_iter()
                .filter(|h| h.client.ip() == ip(client))
                .collect()
        };
        assert_eq!(of(mine).len(), 12, "{client} is {serving}'s client");
        assert!(of(other).is_empty(), "{client} reached the other forwarder");
        // The forwarder dialled the pod from its node's address.
        let node_ip = ip(if serving == "n1" { N1 } else { N2 });
        for h in of(mine) {
            assert_eq!(h.instance, serving);
            assert_eq!(h.upstream_local.map(|a| a.ip()), Some(node_ip), "{h:?}");
        }
    }

    // The endpoint itself sees the node's address as its client.
    let endpoint = TcpListener::bind("127.81.40.4:0").await.unwrap();
    let ep = endpoint.local_addr().unwrap();
    view.replace(
        ClusterSnapshot::from_objects(
            [
                node("n1", N1, "127.81.41.0/25"),
                node("n2", N2, "127.81.41.128/25"),
                service(
                    "plain",
                    json!({"clusterIP":"127.81.40.11","ports":[{"name":"p","port":8080}]}),
                ),
                slice("plain", "TCP", &[ep]),
            ]
            .iter(),
        )
        .unwrap(),
    );
    n1.handle.applied(view.snapshot().revision).await;
    n2.handle.applied(view.snapshot().revision).await;
    let plain: SocketAddr = "127.81.40.11:8080".parse().unwrap();
    for (client, node_ip) in [("127.81.41.140", N2), ("127.81.40.60", N1)] {
        let _c = connect_from(plain, client).await;
        let (_, peer) = endpoint.accept().await.unwrap();
        assert_eq!(peer.ip(), ip(node_ip), "client {client}");
    }
    // The sticky service left: its socket is closed, the new one has both routes.
    assert_eq!(
        set.routes(),
        vec![(
            Protocol::Tcp,
            plain,
            vec!["n1".to_string(), "n2".to_string()]
        )]
    );
    // The socket closes when its accept loops next run (they own it): wait for that, not assume it.
    eventually_async("the sticky service's socket to close", async || {
        TcpStream::connect(cip).await.is_err()
    })
    .await;
    n1.stop().await;
    // n2 alone serves everyone now, n1's clients too.
    let _c = connect_from(plain, "127.81.40.61").await;
    let (_, peer) = endpoint.accept().await.unwrap();
    assert_eq!(peer.ip(), ip(N2));
    n2.stop().await;
    assert!(
        set.routes().is_empty(),
        "the last forwarder closed the socket"
    );
}

/// UDP: one socket, the client's node's forwarder holds its session and sends from the node's
/// address; the reply comes back from the ClusterIP.
#[tokio::test]
async fn udp_sessions_belong_to_the_clients_node() {
    let endpoint = UdpSocket::bind("127.81.42.1:0").await.unwrap();
    let ep = endpoint.local_addr().unwrap();
    let view = cluster(vec![
        service(
            "dns",
            json!({"clusterIP":"127.81.42.10","ports":[{"name":"p","port":5353,"protocol":"UDP"}]}),
        ),
        slice("dns", "UDP", &[ep]),
    ]);
    let set = ListenerSet::new();
    let n1 = Running::start(&view, "n1", N1, &set).await;
    let n2 = Running::start(&view, "n2", N2, &set).await;
    let front: SocketAddr = "127.81.42.10:5353".parse().unwrap();
    for (client, node_ip, mine, other) in [
        ("127.81.41.150", N2, &n2, &n1),
        ("127.81.40.70", N1, &n1, &n2),
    ] {
        let sock = UdpSocket::bind(SocketAddr::new(ip(client), 0))
            .await
            .unwrap();
        sock.send_to(b"q", front).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = endpoint.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"q");
        assert_eq!(from.ip(), ip(node_ip), "client {client}");
        endpoint.send_to(b"a", from).await.unwrap();
        let (n, replier) = sock.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], replier), (&b"a"[..], front));
        let me = sock.local_addr().unwrap();
        assert_eq!(mine.handle.udp_session(front, me), Some(ep));
        assert_eq!(other.handle.udp_session(front, me), None);
    }
    n1.stop().await;
    n2.stop().await;
}

/// A service address is the forwarder's alone: another socket asking for every sharing option
/// (SO_REUSEADDR and SO_REUSEPORT) gets "address in use", TCP and UDP; a forwarder of another set
/// (another process, in effect) started on the same service fails with the address named.
#[tokio::test]
async fn nobody_else_can_bind_a_service_address() {
    let a = tcp_echo("127.81.43.1:0", "a").await;
    let u = UdpSocket::bind("127.81.43.1:0").await.unwrap();
    let view = cluster(vec![
        service(
            "both",
            json!({"clusterIP":"127.81.43.10","ports":[{"name":"p","port":8080},
                {"name":"u","port":8080,"protocol":"UDP"}]}),
        ),
        slice("both", "TCP", &[a]),
        json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
            "metadata":{"name":"both-u","namespace":"default","labels":{"kubernetes.io/service-name":"both"}},
            "addressType":"IPv4","ports":[{"name":"u","port":u.local_addr().unwrap().port(),"protocol":"UDP"}],
            "endpoints":[{"addresses":["127.81.43.1"],"conditions":{"ready":true}}]}),
    ]);
    let n1 = Running::start(&view, "n1", N1, &ListenerSet::new()).await;
    let addr: SocketAddr = "127.81.43.10:8080".parse().unwrap();
    assert_eq!(hello_from(addr, "127.81.43.50").await, "a");
    for ty in [Type::STREAM, Type::DGRAM] {
        let intruder = Socket::new(Domain::IPV4, ty, None).unwrap();
        intruder.set_reuse_address(true).unwrap();
        intruder.set_reuse_port(true).unwrap();
        let err = intruder.bind(&addr.into()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{ty:?}: {err}");
    }
    // A second forwarder that does not share the first one's set.
    let mut cfg = ForwarderConfig::new(Source::View(view.clone()));
    cfg.node_name = Some("n2".into());
    let second = Forwarder::bind(cfg).await.unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        second.serve(CancellationToken::new()),
    )
    .await
    .expect("the second forwarder gives up")
    .unwrap_err();
    assert!(matches!(err, ForwarderError::InUse(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("service listener: cannot ")
            && msg.contains("127.81.43.10:8080")
            && msg.ends_with("Address already in use (os error 98)"),
        "{msg}"
    );
    // The first one never noticed.
    assert_eq!(hello_from(addr, "127.81.43.51").await, "a");
    n1.stop().await;
}

/// The binary started beside a process that holds one of its service addresses: exit 1, the
/// address and the OS error named once.
#[tokio::test]
async fn the_binary_exits_1_naming_a_service_address_in_use() {
    let holder = std::net::TcpListener::bind("127.81.43.20:8080").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1
kind: Service
metadata: {name: held, namespace: default}
spec:
  clusterIP: 127.81.43.20
  ports:
  - {name: t, protocol: TCP, port: 8080}
",
    )
    .unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .args(["--config", path.to_str().unwrap()])
        .args(["--healthz-bind-address", "", "--admin-address", ""])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the forwarder exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some(
            "forwarder: service listener: cannot listen on 127.81.43.20:8080: \
             Address already in use (os error 98)"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.matches("os error 98").count(), 1, "{stderr}");
    // The holder still has its address: a connection reaches its queue.
    let _c = TcpStream::connect("127.81.43.20:8080").await.unwrap();
    let (_, peer) = holder.accept().unwrap();
    assert_eq!(peer.ip(), ip("127.0.0.1"));
}
