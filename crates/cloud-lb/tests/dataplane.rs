//! The data plane on real loopback sockets, fed a cluster model directly: nodes are echo servers on
//! their own `127.N.20.x` addresses (the "NodePort"), each with a health endpoint where kube-proxy's
//! would be. What a cloud load balancer must get right: which nodes get traffic, and that changing
//! that set never breaks a connection already established.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use proxylab_cloud_lb::dataplane::{DataPlane, DataPlaneConfig};
use proxylab_cloud_lb::frontend::Frontend;
use proxylab_cloud_lb::service::ProxyProtocol;
use proxylab_core::cluster::{ClusterSnapshot, ClusterView, Protocol, ServiceKey, TrafficPolicy};
use proxylab_core::telemetry::AdminState;
use proxylab_test_support::echo::{tcp_echo, udp_echo};
use proxylab_test_support::eventually;
use proxylab_test_support::http::status_server;
use proxylab_test_support::lab::reserve_octet;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Two nodes with a TCP and UDP "NodePort" each (the same port number on both), the health
/// endpoints, and a running data plane.
struct Rig {
    o: u8,
    node_port: u16,
    view: ClusterView,
    dp: Arc<DataPlane>,
    admin: AdminState,
    frontends: watch::Sender<Arc<Vec<Frontend>>>,
    stop: CancellationToken,
    _lock: std::fs::File,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn node(o: u8, n: u8, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{n}")},
        "status": {"addresses": [{"type": "InternalIP", "address": format!("127.{o}.20.{n}")}],
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
}

fn slice_on(o: u8, nodes: &[u8]) -> Value {
    let eps: Vec<Value> = nodes
        .iter()
        .map(|n| json!({"addresses": [format!("127.{o}.30.{n}")], "nodeName": format!("node-{n}")}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps})
}

async fn rig() -> Rig {
    let (o, lock) = reserve_octet();
    // Node 1 picks the port; node 2, on an address nobody else uses, takes the same one.
    let first = tcp_echo(&format!("127.{o}.20.1:0"), "node-1").await;
    let node_port = first.port();
    tcp_echo(&format!("127.{o}.20.2:{node_port}"), "node-2").await;
    udp_echo(&format!("127.{o}.20.1:{node_port}"), "node-1").await;
    udp_echo(&format!("127.{o}.20.2:{node_port}"), "node-2").await;
    let (h1, _) = status_server(&format!("127.{o}.20.1:0"), "200 OK").await;
    let health_port = h1.port();
    status_server(&format!("127.{o}.20.2:{health_port}"), "200 OK").await;
    let view = ClusterView::new(
        ClusterSnapshot::from_objects(&[node(o, 1, true), node(o, 2, true)]).unwrap(),
    );
    let mut cfg = DataPlaneConfig::default();
    cfg.health.proxy_port = health_port;
    cfg.health.interval = std::time::Duration::from_millis(100);
    let admin = AdminState::new();
    let dp = DataPlane::new(cfg, admin.clone());
    let (frontends, rx) = watch::channel(Arc::new(Vec::new()));
    let stop = CancellationToken::new();
    tokio::spawn(dp.clone().run(rx, view.clone(), stop.clone()));
    Rig {
        o,
        node_port,
        view,
        dp,
        admin,
        frontends,
        stop,
        _lock: lock,
    }
}

impl Rig {
    fn ingress(&self, port: u16) -> SocketAddr {
        format!("127.{}.50.1:{port}", self.o).parse().unwrap()
    }

    fn frontend(&self, protocol: Protocol, policy: TrafficPolicy) -> Frontend {
        Frontend {
            service: ServiceKey::new("default", "web"),
            port_name: "http".into(),
            protocol,
            listen: self.ingress(8080),
            node_port: self.node_port,
            policy,
            health_check_node_port: None,
            source_ranges: Vec::new(),
            proxy_protocol: ProxyProtocol::None,
        }
    }

    fn set(&self, f: Vec<Frontend>) {
        self.frontends.send_replace(Arc::new(f));
    }

    fn set_objects(&self, objs: &[Value]) {
        self.view
            .replace(ClusterSnapshot::from_objects(objs).unwrap());
    }

    fn nodes_now(&self) -> Vec<String> {
        self.dp
            .listeners()
            .first()
            .map(|l| l.nodes.clone())
            .unwrap_or_default()
    }

    async fn wait_nodes(&self, want: &[&str]) {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        eventually(&format!("load balancer nodes {want:?}"), || {
            let now = self
                .dp
                .listeners()
                .first()
                .map(|l| l.nodes.clone())
                .unwrap_or_default();
            now == want
        })
        .await;
    }
}

/// Connects through the load balancer and returns the greeting (the node's name) and the stream.
async fn greet(addr: SocketAddr) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the ingress");
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).await.expect("greeting");
    (String::from_utf8_lossy(&buf).trim().to_string(), s)
}

async fn still_echoes(s: &mut TcpStream) {
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn a_not_ready_node_is_drained_without_breaking_its_connections() {
    let rig = rig().await;
    rig.set(vec![rig.frontend(Protocol::Tcp, TrafficPolicy::Cluster)]);
    rig.wait_nodes(&["node-1", "node-2"]).await;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..4 {
        let (name, s) = greet(rig.ingress(8080)).await;
        seen.insert(name, s);
    }
    assert_eq!(
        seen.len(),
        2,
        "round-robin over both nodes: {:?}",
        seen.keys()
    );
    let mut on_node_2 = seen.remove("node-2").unwrap();

    rig.set_objects(&[node(rig.o, 1, true), node(rig.o, 2, false)]);
    rig.wait_nodes(&["node-1"]).await;
    for _ in 0..4 {
        assert_eq!(greet(rig.ingress(8080)).await.0, "node-1");
    }
    // Drained, not cut: the connection to the NotReady node goes on.
    still_echoes(&mut on_node_2).await;
    // Hop records name the node and why.
    let hops = rig.admin.hops.recent(100);
    let hop = hops.iter().find(|h| h.outcome == "ok").unwrap();
    assert_eq!(hop.proxy, "cloud-lb");
    assert!(
        hop.reason
            .as_deref()
            .unwrap()
            .contains("round-robin to node-"),
        "{hop:?}"
    );
}

#[tokio::test]
async fn local_policy_picks_only_nodes_with_endpoints_and_a_failing_check() {
    let rig = rig().await;
    let o = rig.o;
    rig.set_objects(&[node(o, 1, true), node(o, 2, true), slice_on(o, &[2])]);
    let mut local = rig.frontend(Protocol::Tcp, TrafficPolicy::Local);
    // The healthCheckNodePort: 200 on node 2 only (node 1 has nothing there at all).
    let (hc, answer) = status_server(&format!("127.{o}.20.2:0"), "200 OK").await;
    local.health_check_node_port = Some(hc.port());
    rig.set(vec![local]);
    rig.wait_nodes(&["node-2"]).await;
    for _ in 0..3 {
        assert_eq!(greet(rig.ingress(8080)).await.0, "node-2");
    }
    let backends = rig.dp.listeners()[0].backends.clone();
    assert_eq!(
        backends,
        [SocketAddr::new(
            format!("127.{o}.20.2").parse::<IpAddr>().unwrap(),
            rig.node_port
        )]
    );
    // The node's proxy says it has no local endpoint any more (503): the node leaves the set,
    // and with no node left a connection is refused with a reset and a `no-endpoints` hop.
    answer.send_replace("503 Service Unavailable");
    rig.wait_nodes(&[]).await;
    let mut s = TcpStream::connect(rig.ingress(8080)).await.unwrap();
    let mut buf = [0u8; 8];
    assert!(matches!(s.read(&mut buf).await, Err(_) | Ok(0)));
    eventually("a no-endpoints hop", || {
        rig.admin
            .hops
            .recent(100)
            .iter()
            .any(|h| h.outcome == "no-endpoints")
    })
    .await;
    assert!(rig.nodes_now().is_empty());
}

#[tokio::test]
async fn source_ranges_reject_clients_outside_and_udp_is_relayed() {
    let rig = rig().await;
    let mut closed = rig.frontend(Protocol::Tcp, TrafficPolicy::Cluster);
    closed.source_ranges = vec!["10.0.0.0/8".parse().unwrap()];
    let udp = rig.frontend(Protocol::Udp, TrafficPolicy::Cluster);
    rig.set(vec![closed.clone(), udp]);
    eventually("both listeners with nodes", || {
        let l = rig.dp.listeners();
        l.len() == 2 && l.iter().all(|l| l.nodes.len() == 2)
    })
    .await;
    // TCP from 127.x: outside 10.0.0.0/8, reset and recorded.
    let mut s = TcpStream::connect(rig.ingress(8080)).await.unwrap();
    let mut buf = [0u8; 8];
    assert!(matches!(s.read(&mut buf).await, Err(_) | Ok(0)));
    eventually("a rejected hop", || {
        rig.admin.hops.recent(100).iter().any(|h| {
            h.outcome == "rejected"
                && h.reason.as_deref()
                    == Some("client address not in spec.loadBalancerSourceRanges")
        })
    })
    .await;
    // Opening the range lets the same client in, on the same listener.
    closed.source_ranges = vec!["127.0.0.0/8".parse().unwrap()];
    rig.set(vec![
        closed,
        rig.frontend(Protocol::Udp, TrafficPolicy::Cluster),
    ]);
    eventually_async_greet(rig.ingress(8080)).await;
    // UDP on the same address and port: a node answers, from the ingress address.
    let sock = tokio::net::UdpSocket::bind(format!("127.{}.0.9:0", rig.o))
        .await
        .unwrap();
    sock.send_to(b"hello", rig.ingress(8080)).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, from) =
        tokio::time::timeout(std::time::Duration::from_secs(10), sock.recv_from(&mut buf))
            .await
            .expect("a UDP answer")
            .unwrap();
    assert_eq!(from, rig.ingress(8080));
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text == "node-1:hello" || text == "node-2:hello", "{text}");
}

async fn eventually_async_greet(addr: SocketAddr) {
    proxylab_test_support::eventually_async("the client admitted", async || {
        match TcpStream::connect(addr).await {
            Ok(mut s) => {
                let mut buf = [0u8; 7];
                s.read_exact(&mut buf).await.is_ok()
            }
            Err(_) => false,
        }
    })
    .await;
}
