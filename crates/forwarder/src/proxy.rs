//! The proxier: keeps one listener per service frontend in line with the cluster, and relays.
//!
//! kube-proxy's loop is "on every change, compute what should be, make it so". Here that is
//! [`reconcile`]: from a [`ClusterSnapshot`] it computes, per service port, the endpoint sets (one for
//! ClusterIP traffic under `internalTrafficPolicy`, one for NodePort/externalIP traffic under
//! `externalTrafficPolicy`), updates their balancers, then opens the listeners that should exist and
//! closes those that should not. Established connections belong to their own tasks, not to the
//! listener, so closing a listener or changing endpoints never breaks them — as with kube-proxy,
//! changes apply to new connections.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use parking_lot::Mutex;
use proxylab_core::balance::{Algorithm, Balancer, Locality, usable_endpoints};
use proxylab_core::cluster::{
    ClusterSnapshot, ClusterView, Protocol, ServiceKey, ServiceType, SessionAffinity, TrafficPolicy,
};
use proxylab_core::l4::tcp::{
    DialError, RelayMode, RelayOptions, dial_from, relay, reset_on_close,
};
use proxylab_core::l4::udp::{SessionSummary, UdpConfig, UdpProxy, UdpTarget};
use proxylab_core::runtime::{ListenOptions, ServingThreads, bind_tcp};
use proxylab_core::telemetry::{AdminState, HopRecord};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ForwarderConfig;
use crate::listeners::{ListenerSet, Member, Serving, TcpRoute, UdpRoute};

/// Which kind of address a listener serves; decides the traffic policy that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frontend {
    /// ClusterIP:port — `internalTrafficPolicy`.
    ClusterIP,
    /// NodeIP:nodePort — `externalTrafficPolicy`.
    NodePort,
    /// externalIP:port — `externalTrafficPolicy`.
    ExternalIP,
}

/// One open service listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    pub protocol: Protocol,
    pub addr: SocketAddr,
    pub service: ServiceKey,
    pub port_name: String,
    pub frontend: Frontend,
}

type PortKey = (ServiceKey, String, Protocol);

/// The balancers of one service port.
struct PortRuntime {
    key: PortKey,
    /// `namespace/name:port` for hop records.
    target: String,
    internal: Balancer,
    external: Balancer,
}

impl PortRuntime {
    fn balancer(&self, fe: Frontend) -> &Balancer {
        match fe {
            Frontend::ClusterIP => &self.internal,
            Frontend::NodePort | Frontend::ExternalIP => &self.external,
        }
    }
}

/// This forwarder's route on one of the process's service sockets (see [`crate::listeners`]).
struct Listener {
    port: Arc<PortRuntime>,
    frontend: Frontend,
    /// The UDP route's session table (for this forwarder's clients of the address); `None` for TCP.
    udp: Option<Arc<UdpProxy>>,
}

struct HealthServer {
    cancel: CancellationToken,
    local: Arc<AtomicUsize>,
}

#[derive(Default)]
struct State {
    ports: HashMap<PortKey, Arc<PortRuntime>>,
    listeners: HashMap<(Protocol, SocketAddr), Listener>,
    health: HashMap<SocketAddr, HealthServer>,
    /// Addresses that failed to bind, so the warning is logged once, not on every change.
    bind_failed: HashSet<(Protocol, SocketAddr)>,
    /// The first "address in use" of the last reconcile: fatal at start (see [`run`]).
    in_use: Option<std::io::Error>,
    /// A complete snapshot has been applied; before it, "address in use" is not logged (it is
    /// the error the forwarder ends with).
    started: bool,
}

/// State shared by the proxier's tasks.
pub(crate) struct Shared {
    pub(crate) node_name: Option<String>,
    node_ips: Vec<IpAddr>,
    algorithm: Algorithm,
    relay_mode: RelayMode,
    udp: UdpConfig,
    dial_timeouts: Vec<Duration>,
    drain_timeout: Duration,
    keepalive: Duration,
    /// Where upstream connections and UDP sessions leave from (`None`: the kernel's choice).
    source: Option<IpAddr>,
    instance: String,
    /// The process's service sockets, and this forwarder's place among their users.
    listeners: ListenerSet,
    member: Arc<Member>,
    pub(crate) view: ClusterView,
    pub(crate) admin: AdminState,
    /// Readiness is ours to flip only when the admin state is ours; a shared one (the lab's) belongs
    /// to the process.
    owns_admin: bool,
    /// The last snapshot revision applied; `None` before the first reconcile.
    pub(crate) applied: watch::Sender<Option<u64>>,
    /// When the last snapshot was applied (RFC 3339), for kube-proxy's `/healthz` body.
    pub(crate) last_applied: Mutex<Option<String>>,
    state: Mutex<State>,
    /// Connection tasks (drained on shutdown).
    tracker: TaskTracker,
    /// Cancelled when the drain bound is reached: cuts what is still relaying.
    cut: CancellationToken,
    /// One child of `cut` per accepting loop (per serving thread): each connection waits on its
    /// loop's own, since registering a waiter locks the token's node, and one node shared by
    /// every serving thread was a lock all of them took for every connection.
    cuts: Vec<CancellationToken>,
    /// The TCP serving threads (none: TCP is served on the caller's runtime). Every TCP listening
    /// socket is served on each thread; whichever thread accepts a connection relays it to the end
    /// there. Against tokio's work-stealing runtime this took the CPU cost of a short connection
    /// from ≈ 68 to ≈ 59 µs (docs/benchmarks.md).
    workers: ServingThreads,
}

impl Shared {
    pub(crate) fn new(
        cfg: &ForwarderConfig,
        view: ClusterView,
        workers: ServingThreads,
    ) -> Arc<Self> {
        let (applied, _) = watch::channel(None);
        let instance = cfg
            .instance
            .clone()
            .or_else(|| cfg.node_name.clone())
            .unwrap_or_else(|| "forwarder".into());
        let listeners = cfg.listeners.clone().unwrap_or_default();
        let member = listeners.join(&instance);
        let cut = CancellationToken::new();
        let cuts = (0..workers.handles().len().max(1))
            .map(|_| cut.child_token())
            .collect();
        Arc::new(Self {
            node_name: cfg.node_name.clone(),
            node_ips: cfg.node_ips.clone(),
            algorithm: cfg.algorithm,
            relay_mode: cfg.relay_mode,
            udp: cfg.udp,
            dial_timeouts: cfg.dial_timeouts.clone(),
            drain_timeout: cfg.drain_timeout,
            keepalive: cfg.keepalive,
            source: cfg.source_address,
            instance,
            listeners,
            member,
            view,
            admin: cfg.admin.clone().unwrap_or_default(),
            owns_admin: cfg.admin.is_none(),
            applied,
            last_applied: Mutex::new(None),
            state: Mutex::new(State::default()),
            tracker: TaskTracker::new(),
            cut,
            cuts,
            workers,
        })
    }

    pub(crate) fn listeners(&self) -> Vec<ListenerInfo> {
        let st = self.state.lock();
        let mut v: Vec<ListenerInfo> = st
            .listeners
            .iter()
            .map(|((protocol, addr), l)| ListenerInfo {
                protocol: *protocol,
                addr: *addr,
                service: l.port.key.0.clone(),
                port_name: l.port.key.1.clone(),
                frontend: l.frontend,
            })
            .collect();
        v.sort_by_key(|l| (l.addr, l.protocol));
        v
    }

    pub(crate) fn endpoints(
        &self,
        service: &ServiceKey,
        port: &str,
        protocol: Protocol,
        fe: Frontend,
    ) -> Vec<SocketAddr> {
        let st = self.state.lock();
        st.ports
            .get(&(service.clone(), port.to_string(), protocol))
            .map(|p| {
                let mut v = p.balancer(fe).endpoints();
                v.sort();
                v
            })
            .unwrap_or_default()
    }

    pub(crate) fn udp_session(
        &self,
        listener: SocketAddr,
        client: SocketAddr,
    ) -> Option<SocketAddr> {
        let st = self.state.lock();
        st.listeners
            .get(&(Protocol::Udp, listener))
            .and_then(|l| l.udp.as_ref()?.session_upstream(client))
    }

    /// Takes this forwarder's route off the address's socket (closed with the last route) and
    /// ends the UDP sessions of its clients there. Established TCP connections are not touched.
    fn close(&self, key: (Protocol, SocketAddr), l: &Listener) {
        self.listeners.unroute(&self.member, key.0, key.1);
        if let Some(u) = &l.udp {
            u.end_all();
        }
    }
}

/// The proxier loop: apply every published snapshot until `stop`, then drain.
///
/// A service address that another process holds when the first complete snapshot is applied ends
/// the forwarder with that error (the user started it beside something that owns its addresses);
/// later, one service's address in use is logged and the others are served, as kube-proxy does.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) -> std::io::Result<()> {
    let mut rx = shared.view.subscribe();
    let mut started = false;
    let mut fatal = None;
    loop {
        rx.borrow_and_update();
        let snap = shared.view.snapshot();
        reconcile(&shared, &snap, &stop);
        let in_use = shared.state.lock().in_use.take();
        if !started && snap.synced {
            started = true;
            shared.state.lock().started = true;
            if in_use.is_some() {
                fatal = in_use;
                break;
            }
        }
        if shared.owns_admin {
            shared.admin.set_ready(snap.synced);
        }
        *shared.last_applied.lock() = Some(jiff::Timestamp::now().to_string());
        shared.applied.send_replace(Some(snap.revision));
        tokio::select! {
            _ = stop.cancelled() => break,
            r = rx.changed() => if r.is_err() { stop.cancelled().await; break; },
        }
    }
    if shared.owns_admin {
        shared.admin.set_ready(false);
    }
    // Listeners close; established connections drain.
    {
        let mut st = shared.state.lock();
        for (k, l) in st.listeners.drain() {
            shared.close(k, &l);
        }
        for (_, h) in st.health.drain() {
            h.cancel.cancel();
        }
    }
    shared.tracker.close();
    if tokio::time::timeout(shared.drain_timeout, shared.tracker.wait())
        .await
        .is_err()
    {
        tracing::info!("drain bound reached; closing remaining connections");
        shared.cut.cancel();
        shared.tracker.wait().await;
    }
    // Every connection is done: the serving threads have nothing left to run.
    shared.workers.stop();
    fatal.map_or(Ok(()), Err)
}

/// Makes listeners and balancers match `snap`.
fn reconcile(shared: &Arc<Shared>, snap: &ClusterSnapshot, stop: &CancellationToken) {
    let node = shared.node_name.as_deref().and_then(|n| snap.nodes.get(n));
    let here = Locality {
        node_name: shared.node_name.as_deref(),
        zone: node.and_then(|n| n.zone.as_deref()),
    };
    let node_ips: Vec<IpAddr> = if !shared.node_ips.is_empty() {
        shared.node_ips.clone()
    } else if let Some(n) = node.filter(|n| !n.addresses.is_empty()) {
        n.ips()
    } else {
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
    };

    let mut desired: HashMap<(Protocol, SocketAddr), (PortKey, Frontend)> = HashMap::new();
    let mut desired_health: HashMap<SocketAddr, (ServiceKey, usize)> = HashMap::new();
    let mut live_ports: HashSet<PortKey> = HashSet::new();
    let mut st = shared.state.lock();
    for svc in snap.services.values() {
        if svc.type_ == ServiceType::ExternalName || svc.is_headless() {
            continue;
        }
        let key = svc.key();
        let affinity = match svc.session_affinity {
            SessionAffinity::ClientIP { timeout } => Some(timeout),
            SessionAffinity::None => None,
        };
        let mut local_endpoints = 0usize;
        for port in &svc.ports {
            if !matches!(port.protocol, Protocol::Tcp | Protocol::Udp) {
                continue;
            }
            let pk: PortKey = (key.clone(), port.name.clone(), port.protocol);
            let eps = snap.endpoints_for(&key, port);
            let rt = st
                .ports
                .entry(pk.clone())
                .or_insert_with(|| {
                    let label = if port.name.is_empty() {
                        port.port.to_string()
                    } else {
                        port.name.clone()
                    };
                    Arc::new(PortRuntime {
                        key: pk.clone(),
                        target: format!("{key}:{label}"),
                        internal: Balancer::new(shared.algorithm, affinity),
                        external: Balancer::new(shared.algorithm, affinity),
                    })
                })
                .clone();
            rt.internal.set_affinity(affinity);
            rt.external.set_affinity(affinity);
            rt.internal
                .update(&usable_endpoints(&eps, svc.internal_traffic_policy, here));
            rt.external
                .update(&usable_endpoints(&eps, svc.external_traffic_policy, here));
            local_endpoints =
                local_endpoints.max(usable_endpoints(&eps, TrafficPolicy::Local, here).len());
            live_ports.insert(pk.clone());
            for ip in &svc.cluster_ips {
                desired.insert(
                    (port.protocol, SocketAddr::new(*ip, port.port)),
                    (pk.clone(), Frontend::ClusterIP),
                );
            }
            for ip in &svc.external_ips {
                desired.insert(
                    (port.protocol, SocketAddr::new(*ip, port.port)),
                    (pk.clone(), Frontend::ExternalIP),
                );
            }
            if svc.has_node_ports()
                && let Some(np) = port.node_port
            {
                for ip in &node_ips {
                    desired.insert(
                        (port.protocol, SocketAddr::new(*ip, np)),
                        (pk.clone(), Frontend::NodePort),
                    );
                }
            }
        }
        if svc.type_ == ServiceType::LoadBalancer
            && svc.external_traffic_policy == TrafficPolicy::Local
            && let Some(hc) = svc.health_check_node_port
        {
            for ip in &node_ips {
                desired_health.insert(SocketAddr::new(*ip, hc), (key.clone(), local_endpoints));
            }
        }
    }
    st.ports.retain(|k, _| live_ports.contains(k));
    // The clients this node owns, for the process's rule of which forwarder serves whom.
    let mut claims: Vec<IpNet> = shared.node_ips.iter().map(|ip| IpNet::from(*ip)).collect();
    if let Some(n) = node {
        claims.extend(n.ips().into_iter().map(IpNet::from));
        claims.extend(n.pod_cidrs.iter().copied());
    }
    shared.member.set_claims(claims);
    // Close listeners that are gone or now mean something else.
    st.listeners.retain(|k, l| match desired.get(k) {
        Some((pk, fe)) if *pk == l.port.key && *fe == l.frontend => true,
        _ => {
            shared.close(*k, l);
            false
        }
    });
    // UDP sessions pinned to endpoints that left the set end now.
    for l in st.listeners.values() {
        if let Some(u) = &l.udp {
            let eps = l.port.balancer(l.frontend).endpoints();
            u.retain_upstreams(|a| eps.contains(&a));
        }
    }
    let bind_failed_before = std::mem::take(&mut st.bind_failed);
    for ((proto, addr), (pk, fe)) in desired {
        if st.listeners.contains_key(&(proto, addr)) {
            continue;
        }
        let Some(rt) = st.ports.get(&pk).cloned() else {
            continue;
        };
        match open_listener(shared, proto, addr, rt.clone(), fe) {
            Ok(l) => {
                st.listeners.insert((proto, addr), l);
            }
            Err(e) => {
                let in_use = e.kind() == std::io::ErrorKind::AddrInUse;
                if !bind_failed_before.contains(&(proto, addr)) && (st.started || !in_use) {
                    tracing::warn!(%addr, protocol = %proto, service = %rt.target, error = %e, "cannot open service listener");
                }
                st.bind_failed.insert((proto, addr));
                if in_use && st.in_use.is_none() {
                    st.in_use = Some(e);
                }
            }
        }
    }
    // Health-check node ports.
    st.health.retain(|addr, h| {
        if let Some((_, n)) = desired_health.get(addr) {
            h.local.store(*n, Ordering::Relaxed);
            true
        } else {
            h.cancel.cancel();
            false
        }
    });
    for (addr, (service, n)) in desired_health {
        if st.health.contains_key(&addr) {
            continue;
        }
        match bind_tcp(
            addr,
            ListenOptions {
                backlog: 128,
                ..Default::default()
            },
        ) {
            Ok(l) => {
                let local = Arc::new(AtomicUsize::new(n));
                let cancel = stop.child_token();
                tokio::spawn(crate::health::serve_service_health(
                    l,
                    service,
                    local.clone(),
                    cancel.clone(),
                ));
                st.health.insert(addr, HealthServer { cancel, local });
            }
            Err(e) => tracing::warn!(%addr, error = %e, "cannot open health-check node port"),
        }
    }
}

/// Adds this forwarder's route for `addr` to the process's socket (binding it if it is the first).
fn open_listener(
    shared: &Arc<Shared>,
    proto: Protocol,
    addr: SocketAddr,
    rt: Arc<PortRuntime>,
    fe: Frontend,
) -> std::io::Result<Listener> {
    let serving = Serving {
        workers: shared.workers.handles(),
        keepalive: shared.keepalive,
    };
    match proto {
        Protocol::Tcp => {
            // Weak: the route lives in the process's set, which may outlive this forwarder.
            let (weak, port) = (Arc::downgrade(shared), rt.clone());
            let route: TcpRoute = Arc::new(move |loop_index, stream, peer, listener| {
                let Some(sh) = weak.upgrade() else { return };
                let cut = sh.cuts[loop_index % sh.cuts.len()].clone();
                let port = port.clone();
                let tracker = sh.tracker.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = handle_tcp(&sh, &port, fe, stream, peer, listener) => {}
                    }
                });
            });
            shared
                .listeners
                .route_tcp(&shared.member, addr, serving, route)?;
            Ok(Listener {
                port: rt,
                frontend: fe,
                udp: None,
            })
        }
        Protocol::Udp => {
            let config = UdpConfig {
                source: shared.source,
                ..shared.udp
            };
            let mut table = None;
            shared
                .listeners
                .route_udp(&shared.member, addr, serving, |socket| {
                    let weak: Weak<Shared> = Arc::downgrade(shared);
                    let target = rt.target.clone();
                    let proxy = UdpProxy::replying_on(socket, config, move |s| {
                        if let Some(sh) = weak.upgrade() {
                            sh.record_udp(&s, &target);
                        }
                    })?;
                    table = Some(proxy.clone());
                    let port = rt.clone();
                    let pick = move |client: SocketAddr| {
                        let p = port.balancer(fe).pick(Some(client.ip()), &[])?;
                        Some(UdpTarget {
                            addr: p.addr,
                            reason: p.reason.to_string(),
                            guard: Some(Box::new(p)),
                        })
                    };
                    let route: UdpRoute =
                        Arc::new(move |data, client| proxy.receive(data, client, &pick));
                    Ok(route)
                })?;
            Ok(Listener {
                port: rt,
                frontend: fe,
                udp: table,
            })
        }
        Protocol::Sctp => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "SCTP is not proxied",
        )),
    }
}

async fn handle_tcp(
    shared: &Shared,
    rt: &PortRuntime,
    fe: Frontend,
    client: TcpStream,
    peer: SocketAddr,
    listener: SocketAddr,
) {
    let started = Instant::now();
    let mut hop = HopRecord::start("forwarder", &shared.instance, "tcp", peer, listener);
    // What only a reader of the record needs is skipped when nobody can read it (no admin
    // endpoint, `hop` logging off); the counters are kept either way.
    let detailed = shared.admin.hops.detailed();
    if detailed {
        hop.target = Some(rt.target.clone());
    }
    // Linux accepted sockets inherit the listener's options (see `open_listener`); elsewhere set
    // them here.
    #[cfg(not(target_os = "linux"))]
    {
        let _ = client.set_nodelay(true);
        let _ = proxylab_core::runtime::set_keepalive(&client, shared.keepalive);
    }
    let balancer = rt.balancer(fe);
    let dialled = dial_from(shared.source, &shared.dial_timeouts, |tried| {
        balancer.pick(Some(peer.ip()), tried).map(|p| (p.addr, p))
    })
    .await;
    match dialled {
        // Nothing to relay to: the client is reset, not closed. A FIN would read as an empty but
        // complete answer; kube-proxy's iptables and nftables modes REJECT a service without
        // endpoints (the client's connect fails), and a SYN to a dead endpoint is refused through
        // their NAT. A reset after the accept is the nearest a user-space proxy can come (the
        // userspace proxier closed with FIN). Traffic-policy `Local` with no local endpoint is
        // DROPped there (the client times out); here it is reset too, so it fails fast.
        Err(DialError::NoEndpoint) => {
            reset_on_close(&client);
            hop.outcome = "no-endpoints".into();
        }
        Err(DialError::Exhausted(failures)) => {
            reset_on_close(&client);
            hop.outcome = "connect-failed".into();
            hop.reason = Some(describe_failures(&failures));
            hop.upstream = failures.last().map(|f| f.addr);
        }
        Ok((upstream, pick, failures)) => {
            // TCP_NODELAY from the first byte; keepalive is armed by the relay once the
            // connection has lived a second (see `KEEPALIVE_ARM_AFTER`).
            let _ = upstream.set_nodelay(true);
            hop.upstream = Some(pick.addr);
            if detailed || !failures.is_empty() {
                hop.endpoint = Some(pick.addr.to_string());
                hop.upstream_local = upstream.local_addr().ok();
                let mut reason = pick.reason.to_string();
                if !failures.is_empty() {
                    reason = format!("{reason}; {}", describe_failures(&failures));
                }
                hop.reason = Some(reason);
            }
            let opts = RelayOptions {
                mode: shared.relay_mode,
                upstream_keepalive: Some(shared.keepalive),
                ..Default::default()
            };
            // Not boxed: a boxed relay measured no CPU difference and cost 0.6 KiB more per idle
            // connection (malloc's rounding).
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
    shared.admin.hops.record(hop);
}

fn describe_failures(failures: &[proxylab_core::l4::tcp::DialFailure]) -> String {
    let parts: Vec<String> = failures
        .iter()
        .map(|f| format!("{}: {}", f.addr, f.error))
        .collect();
    format!(
        "after {} failed dial(s): {}",
        failures.len(),
        parts.join(", ")
    )
}

impl Shared {
    fn record_udp(&self, s: &SessionSummary, target: &str) {
        let mut hop = HopRecord::start("forwarder", &self.instance, "udp", s.client, s.listener);
        if let Ok(t) = jiff::Timestamp::try_from(s.wall_start) {
            hop.time = t;
        }
        hop.target = Some(target.to_string());
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

/// Follows a manifest file: reload when it changes and on SIGHUP (core's `FileFollower` decides
/// when; see `proxylab_core::reload`). A bad edit is logged and the previous model kept.
pub(crate) async fn follow_file(path: PathBuf, view: ClusterView, stop: CancellationToken) {
    let mut follower = proxylab_core::reload::FileFollower::new(&path);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = follower.next() => {}
        }
        match crate::manifests::load(&path) {
            Ok(snap) => {
                tracing::info!(file = %path.display(), services = snap.services.len(), "configuration reloaded");
                view.replace(snap);
            }
            Err(e) => tracing::error!("{e} (keeping the previous configuration)"),
        }
    }
}
