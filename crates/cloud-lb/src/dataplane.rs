//! The data plane: a TCP or UDP listener per frontend (ingress address, protocol, port), relaying
//! to the chosen nodes' NodePorts on core's L4 relay — the same `proxylab_core::l4` the forwarder
//! uses, never the forwarder's own code.
//!
//! - **Listeners follow the frontends.** A new frontend is bound; a changed one keeps its socket
//!   and gets the new configuration atomically (`ArcSwap`); a removed one stops accepting. No
//!   change ever touches an established connection: each connection owns its two sockets and ends
//!   on its own (or at shutdown, after the drain bound).
//! - **Backends follow the cluster.** On every change of the frontends, the cluster (Nodes,
//!   EndpointSlices) or a health verdict, each listener's balancer gets the node set
//!   ([`crate::nodes`]) minus nodes whose check fails ([`crate::health`]), as `node-ip:nodePort`.
//!   A node that leaves the set gets no new connections; UDP sessions to it end at once, so the
//!   client's next datagram goes to a live node.
//! - **Per connection**: `loadBalancerSourceRanges` checked first (a client outside is reset and
//!   recorded as `rejected`; a cloud's firewall would drop its SYN instead), then kube-proxy's dial
//!   schedule over the balancer (round-robin, the next node after a failed dial), then `splice(2)`
//!   both ways. A hop record per TCP connection and per UDP session (`proxy: cloud-lb`), whose
//!   upstream local address is the client address the node's forwarder records: the path stitches.
//! - **PROXY protocol** (`proxylab.io/proxy-protocol: v1|v2` on the Service): a header naming the
//!   client and the ingress address is written to the node before the client's bytes, so the pod
//!   (through the forwarder, which relays it untouched) learns who the client was. TCP only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use proxylab_core::balance::{Algorithm, Balancer};
use proxylab_core::cluster::{ClusterSnapshot, ClusterView, Protocol};
use proxylab_core::l4::proxy_protocol::{Transport, encode_v1, encode_v2};
use proxylab_core::l4::tcp::{
    DialError, KUBE_PROXY_DIAL_TIMEOUTS, RelayOptions, dial, relay, reset_on_close,
};
use proxylab_core::l4::udp::{SessionSummary, UdpConfig, UdpProxy, UdpTarget};
use proxylab_core::runtime::{ListenOptions, bind_tcp, bind_udp};
use proxylab_core::telemetry::{AdminState, HopRecord};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::frontend::Frontend;
use crate::health::{HealthConfig, NodeHealth};
use crate::nodes::{NodeTarget, nodes_for};
use crate::service::ProxyProtocol;

/// Data-plane settings.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// The instance name in hop records.
    pub instance: String,
    pub health: HealthConfig,
    pub udp: UdpConfig,
    /// How long established connections may finish after shutdown before they are cut.
    pub drain_timeout: Duration,
    /// TCP keepalive idle time on both legs.
    pub keepalive: Duration,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            instance: "cloud-lb".into(),
            health: HealthConfig::default(),
            // Cloud UDP load balancers keep a flow far longer than kube-proxy's 250 ms.
            udp: UdpConfig {
                idle_timeout: Duration::from_secs(30),
                ..UdpConfig::default()
            },
            drain_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(60),
        }
    }
}

/// A listener as observers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    pub frontend: Frontend,
    /// The nodes it forwards to now (after health checks), by name.
    pub nodes: Vec<String>,
    /// `node-ip:nodePort` of each.
    pub backends: Vec<SocketAddr>,
}

struct Listener {
    spec: Arc<ArcSwap<Frontend>>,
    balancer: Balancer,
    nodes: ArcSwap<Vec<NodeTarget>>,
    cancel: CancellationToken,
    udp: Option<Arc<UdpProxy>>,
}

/// The data plane's state; cheap to share.
pub struct DataPlane {
    cfg: DataPlaneConfig,
    admin: AdminState,
    health: Arc<NodeHealth>,
    listeners: Mutex<HashMap<(Protocol, SocketAddr), Arc<Listener>>>,
    checks: watch::Sender<Vec<SocketAddr>>,
    tracker: TaskTracker,
    /// Cancelled when the drain bound is over: ends the connections still open.
    cut: CancellationToken,
}

impl DataPlane {
    pub fn new(cfg: DataPlaneConfig, admin: AdminState) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            admin,
            health: Arc::new(NodeHealth::default()),
            listeners: Mutex::new(HashMap::new()),
            checks: watch::channel(Vec::new()).0,
            tracker: TaskTracker::new(),
            cut: CancellationToken::new(),
        })
    }

    /// The node health verdicts (tests and the binary's log read them).
    pub fn health(&self) -> Arc<NodeHealth> {
        self.health.clone()
    }

    /// The listeners open now, sorted by address and protocol.
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        let mut v: Vec<ListenerInfo> = self
            .listeners
            .lock()
            .values()
            .map(|l| {
                let nodes = l.nodes.load();
                ListenerInfo {
                    frontend: Frontend::clone(&l.spec.load()),
                    nodes: nodes.iter().map(|n| n.name.clone()).collect(),
                    backends: l.balancer.endpoints(),
                }
            })
            .collect();
        v.sort_by_key(|i| (i.frontend.listen, i.frontend.protocol));
        for i in &mut v {
            i.backends.sort();
        }
        v
    }

    /// Brings listeners and backends in line with `frontends` on the cluster `snap`. Listeners that
    /// cannot be bound are logged and tried again on the next call.
    pub fn apply(self: &Arc<Self>, frontends: &[Frontend], snap: &ClusterSnapshot) {
        let mut table = self.listeners.lock();
        let wanted: Vec<(Protocol, SocketAddr)> =
            frontends.iter().map(|f| (f.protocol, f.listen)).collect();
        table.retain(|key, l| {
            let keep = wanted.contains(key);
            if !keep {
                // Stops accepting; established connections are not the listener's.
                l.cancel.cancel();
                tracing::info!(listen = %key.1, protocol = %key.0, "load balancer listener closed");
            }
            keep
        });
        let mut checks: Vec<SocketAddr> = Vec::new();
        for f in frontends {
            let key = (f.protocol, f.listen);
            let listener = match table.get(&key) {
                Some(l) => {
                    if **l.spec.load() != *f {
                        l.spec.store(Arc::new(f.clone()));
                    }
                    l.clone()
                }
                None => match self.open(f) {
                    Ok(l) => {
                        tracing::info!(listen = %f.listen, protocol = %f.protocol, service = %f.service, "load balancer listener open");
                        table.insert(key, l.clone());
                        l
                    }
                    Err(e) => {
                        tracing::warn!(listen = %f.listen, protocol = %f.protocol, error = %e, "cannot open load balancer listener");
                        continue;
                    }
                },
            };
            let candidates = nodes_for(snap, &f.service, f.policy);
            let proxy_port = self.cfg.health.proxy_port;
            checks.extend(candidates.iter().map(|n| f.check_addr(n.ip, proxy_port)));
            let healthy: Vec<NodeTarget> = candidates
                .into_iter()
                .filter(|n| self.health.is_up(f.check_addr(n.ip, proxy_port)))
                .collect();
            let backends: Vec<SocketAddr> = healthy
                .iter()
                .map(|n| SocketAddr::new(n.ip, f.node_port))
                .collect();
            if listener.balancer.update(&backends)
                && let Some(udp) = &listener.udp
            {
                udp.retain_upstreams(|a| backends.contains(&a));
            }
            if **listener.nodes.load() != healthy {
                listener.nodes.store(Arc::new(healthy));
            }
        }
        checks.sort();
        checks.dedup();
        self.checks.send_if_modified(|cur| {
            let changed = *cur != checks;
            *cur = checks;
            changed
        });
    }

    fn open(self: &Arc<Self>, f: &Frontend) -> std::io::Result<Arc<Listener>> {
        let spec = Arc::new(ArcSwap::from_pointee(f.clone()));
        let cancel = CancellationToken::new();
        match f.protocol {
            Protocol::Tcp => {
                let socket = bind_tcp(
                    f.listen,
                    ListenOptions {
                        backlog: 4096,
                        nodelay: true,
                        keepalive: Some(self.cfg.keepalive),
                        ..Default::default()
                    },
                )?;
                let l = Arc::new(Listener {
                    spec,
                    balancer: Balancer::new(Algorithm::RoundRobin, None),
                    nodes: ArcSwap::from_pointee(Vec::new()),
                    cancel: cancel.clone(),
                    udp: None,
                });
                tokio::spawn(accept_loop(self.clone(), socket, l.clone()));
                Ok(l)
            }
            Protocol::Udp => {
                let socket = bind_udp(f.listen, false)?;
                let weak: Weak<Self> = Arc::downgrade(self);
                let spec_for_end = spec.clone();
                let proxy = UdpProxy::new(socket, self.cfg.udp, move |s| {
                    if let Some(dp) = weak.upgrade() {
                        dp.record_udp(&s, &spec_for_end.load());
                    }
                })?;
                let l = Arc::new(Listener {
                    spec,
                    balancer: Balancer::new(Algorithm::RoundRobin, None),
                    nodes: ArcSwap::from_pointee(Vec::new()),
                    cancel: cancel.clone(),
                    udp: Some(proxy.clone()),
                });
                let (dp, lp) = (self.clone(), l.clone());
                let pick = move |client: SocketAddr| {
                    let spec = lp.spec.load();
                    if !spec.admits(client.ip()) {
                        dp.record_rejected("udp", client, spec.listen, &spec);
                        return None;
                    }
                    let p = lp.balancer.pick(Some(client.ip()), &[])?;
                    let reason = describe_pick(&spec, &lp.nodes.load(), p.addr, &p.reason);
                    Some(UdpTarget {
                        addr: p.addr,
                        reason,
                        guard: Some(Box::new(p)),
                    })
                };
                tokio::spawn(self.tracker.track_future(proxy.run(pick, cancel)));
                Ok(l)
            }
            Protocol::Sctp => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "SCTP is not relayed",
            )),
        }
    }

    /// Follows `frontends`, the cluster and the health verdicts until `stop`; then stops accepting
    /// and lets established connections finish for up to the drain bound.
    pub async fn run(
        self: Arc<Self>,
        mut frontends: watch::Receiver<Arc<Vec<Frontend>>>,
        view: ClusterView,
        stop: CancellationToken,
    ) {
        let checker = tokio::spawn(crate::health::run(
            self.health.clone(),
            self.checks.subscribe(),
            self.cfg.health,
            stop.clone(),
        ));
        let mut cluster = view.subscribe();
        let mut verdicts = self.health.subscribe();
        loop {
            let current = frontends.borrow_and_update().clone();
            self.apply(&current, &view.snapshot());
            tokio::select! {
                _ = stop.cancelled() => break,
                r = frontends.changed() => if r.is_err() { break },
                r = cluster.changed() => if r.is_err() { break },
                r = verdicts.changed() => if r.is_err() { break },
            }
        }
        for l in self.listeners.lock().drain().map(|(_, l)| l) {
            l.cancel.cancel();
        }
        let _ = checker.await;
        self.tracker.close();
        if tokio::time::timeout(self.cfg.drain_timeout, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.tracker.len(),
                "connections still open after the drain bound; closing them"
            );
            self.cut.cancel();
            self.tracker.wait().await;
        }
    }

    fn record_rejected(
        &self,
        protocol: &'static str,
        client: SocketAddr,
        listener: SocketAddr,
        spec: &Frontend,
    ) {
        let mut hop = HopRecord::start("cloud-lb", &self.cfg.instance, protocol, client, listener);
        hop.target = Some(spec.target());
        hop.outcome = "rejected".into();
        hop.reason = Some("client address not in spec.loadBalancerSourceRanges".into());
        self.admin.hops.record(hop);
    }

    fn record_udp(&self, s: &SessionSummary, spec: &Frontend) {
        let mut hop = HopRecord::start("cloud-lb", &self.cfg.instance, "udp", s.client, s.listener);
        if let Ok(t) = jiff::Timestamp::try_from(s.wall_start) {
            hop.time = t;
        }
        hop.target = Some(spec.target());
        hop.upstream = Some(s.upstream);
        hop.upstream_local = s.upstream_local;
        hop.endpoint = Some(s.upstream.to_string());
        hop.reason = Some(s.reason.clone());
        hop.bytes_up = s.bytes_up;
        hop.bytes_down = s.bytes_down;
        hop.duration_ms = s.started.elapsed().as_secs_f64() * 1000.0;
        hop.outcome = s.end.as_str().into();
        self.admin.hops.record(hop);
    }
}

/// `round-robin to node-2 (127.0.20.2:30080), 2 of nodes [node-1, node-2], policy Cluster`.
fn describe_pick(
    spec: &Frontend,
    nodes: &[NodeTarget],
    addr: SocketAddr,
    reason: &impl std::fmt::Display,
) -> String {
    let name = nodes
        .iter()
        .find(|n| n.ip == addr.ip())
        .map_or("?", |n| n.name.as_str());
    let all: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    format!(
        "{reason} to {name} ({addr}) of nodes [{}], externalTrafficPolicy {:?}",
        all.join(", "),
        spec.policy
    )
}

async fn accept_loop(dp: Arc<DataPlane>, listener: TcpListener, l: Arc<Listener>) {
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            _ = l.cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let listen = local.unwrap_or(peer);
                let (dp2, l2, cut) = (dp.clone(), l.clone(), dp.cut.clone());
                dp.tracker.spawn(async move {
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = handle_tcp(&dp2, &l2, stream, peer, listen) => {}
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = l.cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

async fn handle_tcp(
    dp: &DataPlane,
    l: &Listener,
    client: TcpStream,
    peer: SocketAddr,
    listen: SocketAddr,
) {
    let started = Instant::now();
    let spec = l.spec.load_full();
    if !spec.admits(peer.ip()) {
        reset_on_close(&client);
        dp.record_rejected("tcp", peer, listen, &spec);
        return;
    }
    let mut hop = HopRecord::start("cloud-lb", &dp.cfg.instance, "tcp", peer, listen);
    hop.target = Some(spec.target());
    let dialled = dial(&KUBE_PROXY_DIAL_TIMEOUTS, |tried| {
        l.balancer.pick(Some(peer.ip()), tried).map(|p| (p.addr, p))
    })
    .await;
    match dialled {
        Err(DialError::NoEndpoint) => {
            // No healthy node: reset, so the client fails at once rather than reading an empty
            // answer.
            reset_on_close(&client);
            hop.outcome = "no-endpoints".into();
            hop.reason = Some(format!(
                "no node can take {} (externalTrafficPolicy {:?}: none Ready, healthy{})",
                spec.target(),
                spec.policy,
                if spec.policy == proxylab_core::cluster::TrafficPolicy::Local {
                    " and with a local endpoint"
                } else {
                    ""
                }
            ));
        }
        Err(DialError::Exhausted(failures)) => {
            reset_on_close(&client);
            hop.outcome = "connect-failed".into();
            hop.upstream = failures.last().map(|f| f.addr);
            let parts: Vec<String> = failures
                .iter()
                .map(|f| format!("{}: {}", f.addr, f.error))
                .collect();
            hop.reason = Some(format!("every dial failed: {}", parts.join(", ")));
        }
        Ok((upstream, pick, failures)) => {
            let _ = upstream.set_nodelay(true);
            hop.upstream = Some(pick.addr);
            hop.upstream_local = upstream.local_addr().ok();
            hop.endpoint = Some(pick.addr.to_string());
            let mut reason = describe_pick(&spec, &l.nodes.load(), pick.addr, &pick.reason);
            if !failures.is_empty() {
                let parts: Vec<String> = failures
                    .iter()
                    .map(|f| format!("{}: {}", f.addr, f.error))
                    .collect();
                reason = format!("{reason}; after failed dials: {}", parts.join(", "));
            }
            // The client's address for the node, ahead of the client's first byte.
            let header = match spec.proxy_protocol {
                ProxyProtocol::None => None,
                ProxyProtocol::V1 => Some(("v1", encode_v1(peer, listen))),
                ProxyProtocol::V2 => Some(("v2", encode_v2(peer, listen, Transport::Stream))),
            };
            let mut upstream = upstream;
            if let Some((version, bytes)) = header {
                if let Err(e) = upstream.write_all(&bytes).await {
                    reset_on_close(&client);
                    hop.outcome = "connect-failed".into();
                    hop.reason = Some(format!("{reason}; writing the PROXY {version} header: {e}"));
                    hop.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
                    dp.admin.hops.record(hop);
                    return;
                }
                reason = format!("{reason}; PROXY {version} header sent");
            }
            hop.reason = Some(reason);
            let opts = RelayOptions {
                upstream_keepalive: Some(dp.cfg.keepalive),
                ..Default::default()
            };
            let (stats, result) = relay(client, upstream, opts).await;
            drop(pick);
            hop.bytes_up = stats.client_to_upstream;
            hop.bytes_down = stats.upstream_to_client;
            if let Err(e) = result {
                hop.outcome = match e.kind() {
                    std::io::ErrorKind::ConnectionReset => "reset".into(),
                    std::io::ErrorKind::BrokenPipe => "broken-pipe".into(),
                    _ => format!("relay-error: {e}").into(),
                };
            }
        }
    }
    hop.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    dp.admin.hops.record(hop);
}
