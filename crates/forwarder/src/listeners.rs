//! Service sockets: one per address in a process, shared by the forwarders in it, each client
//! served by exactly one of them.
//!
//! On a real node, kube-proxy serves the traffic of that node's clients only: a pod's packet to a
//! ClusterIP meets the rules of the node the pod runs on, and a node's own processes meet its own.
//! So for one client there is one kube-proxy, one balancer, one affinity table. The lab runs every
//! node's forwarder in one process on one loopback "network", where all of them want the same
//! ClusterIP:port. Giving each its own socket in a SO_REUSEPORT group let the kernel spread a
//! client's connections over the nodes (two affinity tables: `sessionAffinity: ClientIP` answered
//! from two pods), and let *any* process of the same user join the group and silently take a share.
//!
//! So here:
//! - **Every service socket is exclusive.** No SO_REUSEPORT, and no SO_REUSEADDR on UDP (on Linux
//!   that too lets a second UDP socket bind the address). Another process binding the address gets
//!   "address in use" — and so does a forwarder started while another process holds it (see
//!   [`ForwarderError::InUse`](crate::ForwarderError)).
//! - **One socket per address per process**, in a [`ListenerSet`] every forwarder of the process
//!   joins (the lab passes one set to all its nodes' forwarders; a forwarder given none has a set
//!   of its own). A forwarder that wants an address adds its *route* to the address's socket; the
//!   socket closes when the last route leaves.
//! - **The rule that picks the forwarder for a client**: a client whose source address is one of
//!   a forwarder's node addresses, or lies in its node's pod CIDRs (`spec.podCIDRs`, as kube-proxy's
//!   `--detect-local-mode=NodeCIDR` tells local traffic), is served by that node's forwarder; any
//!   other client by the forwarder that joined the set first (node-1 in the lab, which starts its
//!   nodes' forwarders in order). When the chosen forwarder does not serve the address (yet), the
//!   first-joined one that does serves it, so nothing is refused while a forwarder catches up.
//!
//! With serving threads (the standalone binary), the one socket is served by every thread: each
//! registers its own duplicate of the descriptor and accepts from the shared queue (all threads
//! wake for a connection and one wins — there is no per-thread socket without SO_REUSEPORT). A UDP
//! socket is read by one thread (chosen by the address), which also runs its sessions: a client's
//! datagrams must meet one session table.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use parking_lot::Mutex;
use proxylab_core::cluster::Protocol;
use proxylab_core::runtime::{ListenOptions, bind_tcp, bind_udp};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

/// Serves one accepted connection: (index of the accepting loop, stream, client, listener address).
/// The index lets the forwarder keep per-loop state (a child of its drain token per loop, so the
/// threads do not share one lock per connection).
pub(crate) type TcpRoute = Arc<dyn Fn(usize, TcpStream, SocketAddr, SocketAddr) + Send + Sync>;
/// Serves one datagram: (payload, client).
pub(crate) type UdpRoute = Arc<dyn Fn(&[u8], SocketAddr) + Send + Sync>;

/// The service sockets of one process, shared by the forwarders in it (see the module docs for the
/// rule that picks a client's forwarder). Cheap to clone; pass one to every forwarder of a process
/// through [`ForwarderConfig::listeners`](crate::ForwarderConfig).
#[derive(Clone, Default)]
pub struct ListenerSet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ListenerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSet")
            .field("sockets", &self.inner.sockets.lock().len())
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    /// Join order: the first member serves the clients no member claims.
    joined: AtomicU64,
    sockets: Mutex<HashMap<(Protocol, SocketAddr), Entry>>,
}

/// One forwarder in a set.
pub(crate) struct Member {
    rank: u64,
    name: String,
    /// The client addresses this forwarder's node owns: its node addresses and pod CIDRs.
    claims: ArcSwap<Vec<IpNet>>,
}

impl Member {
    /// Replaces the addresses this member's node owns (on every cluster change).
    pub(crate) fn set_claims(&self, claims: Vec<IpNet>) {
        if **self.claims.load() != claims {
            self.claims.store(Arc::new(claims));
        }
    }

    fn claims(&self, ip: IpAddr) -> bool {
        self.claims.load().iter().any(|n| n.contains(&ip))
    }
}

struct Route<H> {
    member: Arc<Member>,
    handler: H,
}

impl<H: Clone> Clone for Route<H> {
    fn clone(&self) -> Self {
        Self {
            member: self.member.clone(),
            handler: self.handler.clone(),
        }
    }
}

/// The routes of one socket, read on every connection or datagram without a lock.
type Routes<H> = Arc<ArcSwap<Vec<Route<H>>>>;

enum Routing {
    Tcp(Routes<TcpRoute>),
    /// The routes, and the socket every route's session table replies through.
    Udp(Routes<UdpRoute>, Arc<UdpSocket>),
}

struct Entry {
    /// Stops the socket's loops (closing it) when the last route leaves.
    cancel: CancellationToken,
    routing: Routing,
}

/// The route that serves `client`: the claiming member's, else the first-joined member's.
fn choose<H>(routes: &[Route<H>], client: IpAddr) -> Option<&H> {
    if let [only] = routes {
        return Some(&only.handler);
    }
    routes
        .iter()
        .find(|r| r.member.claims(client))
        .or_else(|| routes.iter().min_by_key(|r| r.member.rank))
        .map(|r| &r.handler)
}

/// Adds or replaces `member`'s route in `routes`.
fn put<H: Clone>(routes: &ArcSwap<Vec<Route<H>>>, member: &Arc<Member>, handler: H) {
    let mut next: Vec<Route<H>> = routes
        .load()
        .iter()
        .filter(|r| !Arc::ptr_eq(&r.member, member))
        .cloned()
        .collect();
    next.push(Route {
        member: member.clone(),
        handler,
    });
    routes.store(Arc::new(next));
}

/// Removes `member`'s route; true when none is left.
fn remove<H: Clone>(routes: &ArcSwap<Vec<Route<H>>>, member: &Arc<Member>) -> bool {
    let next: Vec<Route<H>> = routes
        .load()
        .iter()
        .filter(|r| !Arc::ptr_eq(&r.member, member))
        .cloned()
        .collect();
    let empty = next.is_empty();
    routes.store(Arc::new(next));
    empty
}

/// How the socket's loops run: where, and with which TCP options.
pub(crate) struct Serving<'a> {
    /// Serving threads to run the loops on (empty: the caller's runtime).
    pub workers: &'a [tokio::runtime::Handle],
    /// Keepalive for accepted connections (set on the listener; Linux copies it on accept).
    pub keepalive: Duration,
}

impl ListenerSet {
    /// A new, empty set: the sockets of one process (or of one forwarder, when it has its own).
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins the set as the forwarder `name`; the first to join serves unclaimed clients.
    pub(crate) fn join(&self, name: &str) -> Arc<Member> {
        Arc::new(Member {
            rank: self.inner.joined.fetch_add(1, Ordering::Relaxed),
            name: name.to_owned(),
            claims: ArcSwap::from_pointee(Vec::new()),
        })
    }

    /// The addresses with a socket open now, and the forwarders routed on each, by name (tests,
    /// debugging).
    pub fn routes(&self) -> Vec<(Protocol, SocketAddr, Vec<String>)> {
        let sockets = self.inner.sockets.lock();
        let mut v: Vec<_> = sockets
            .iter()
            .map(|((p, a), e)| {
                let mut names: Vec<String> = match &e.routing {
                    Routing::Tcp(r) => r.load().iter().map(|r| r.member.name.clone()).collect(),
                    Routing::Udp(r, _) => r.load().iter().map(|r| r.member.name.clone()).collect(),
                };
                // By name: the routes' own order is whichever forwarder applied a change first.
                names.sort();
                (*p, *a, names)
            })
            .collect();
        v.sort_by_key(|(p, a, _)| (*a, *p));
        v
    }

    /// Routes `member`'s TCP connections to `addr` through `route`, binding the socket if this is
    /// the first route. An error is the bind's (naming the address).
    pub(crate) fn route_tcp(
        &self,
        member: &Arc<Member>,
        addr: SocketAddr,
        serving: Serving<'_>,
        route: TcpRoute,
    ) -> io::Result<()> {
        let mut sockets = self.inner.sockets.lock();
        if let Some(e) = sockets.get(&(Protocol::Tcp, addr)) {
            if let Routing::Tcp(routes) = &e.routing {
                put(routes, member, route);
            }
            return Ok(());
        }
        // TCP_NODELAY (a relay must not add Nagle delay to small exchanges) and keepalive (to
        // notice vanished peers on idle connections such as watches), as kube-proxy's Go listener
        // has them: set on the listening socket, inherited by every client socket.
        let opts = ListenOptions {
            reuse_port: false,
            backlog: 4096,
            nodelay: true,
            keepalive: Some(serving.keepalive),
            ..Default::default()
        };
        let listener = bind_tcp(addr, opts)?;
        let routes: Routes<TcpRoute> = Arc::new(ArcSwap::from_pointee(Vec::new()));
        put(&routes, member, route);
        let cancel = CancellationToken::new();
        if serving.workers.is_empty() {
            tokio::spawn(accept_loop(0, listener, routes.clone(), cancel.clone()));
        } else {
            // One registration per thread, each with its own descriptor of the one socket (a
            // descriptor registers with one reactor).
            let std = listener.into_std()?;
            for (i, handle) in serving.workers.iter().enumerate() {
                let copy = std.try_clone()?;
                let (routes, cancel) = (routes.clone(), cancel.clone());
                handle.spawn(async move {
                    match TcpListener::from_std(copy) {
                        Ok(l) => accept_loop(i, l, routes, cancel).await,
                        Err(e) => tracing::warn!(%addr, error = %e, "cannot serve listener"),
                    }
                });
            }
        }
        sockets.insert(
            (Protocol::Tcp, addr),
            Entry {
                cancel,
                routing: Routing::Tcp(routes),
            },
        );
        Ok(())
    }

    /// Routes `member`'s datagrams to `addr` through the route `make` builds from the socket (a
    /// session table replies through it), binding the socket if this is the first route.
    pub(crate) fn route_udp(
        &self,
        member: &Arc<Member>,
        addr: SocketAddr,
        serving: Serving<'_>,
        make: impl FnOnce(Arc<UdpSocket>) -> io::Result<UdpRoute>,
    ) -> io::Result<()> {
        let mut sockets = self.inner.sockets.lock();
        if let Some(e) = sockets.get(&(Protocol::Udp, addr)) {
            if let Routing::Udp(routes, socket) = &e.routing {
                put(routes, member, make(socket.clone())?);
            }
            return Ok(());
        }
        // The thread that reads the socket also runs its sessions; spread addresses over threads.
        let handle = (!serving.workers.is_empty()).then(|| {
            let i = (addr.port() as usize + ip_low_bits(addr.ip())) % serving.workers.len();
            &serving.workers[i]
        });
        let socket = {
            // Registered with the reactor of the thread that will read it.
            let _in_thread = handle.map(|h| h.enter());
            Arc::new(bind_udp(addr, false)?)
        };
        let routes: Routes<UdpRoute> = Arc::new(ArcSwap::from_pointee(Vec::new()));
        put(&routes, member, make(socket.clone())?);
        let cancel = CancellationToken::new();
        let run = udp_loop(socket.clone(), routes.clone(), cancel.clone());
        match handle {
            Some(h) => drop(h.spawn(run)),
            None => drop(tokio::spawn(run)),
        }
        sockets.insert(
            (Protocol::Udp, addr),
            Entry {
                cancel,
                routing: Routing::Udp(routes, socket),
            },
        );
        Ok(())
    }

    /// Removes `member`'s route to `addr`; the socket closes with the last route.
    pub(crate) fn unroute(&self, member: &Arc<Member>, protocol: Protocol, addr: SocketAddr) {
        let mut sockets = self.inner.sockets.lock();
        let Some(e) = sockets.get(&(protocol, addr)) else {
            return;
        };
        let empty = match &e.routing {
            Routing::Tcp(r) => remove(r, member),
            Routing::Udp(r, _) => remove(r, member),
        };
        if empty && let Some(e) = sockets.remove(&(protocol, addr)) {
            e.cancel.cancel();
        }
    }
}

fn ip_low_bits(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(v4) => v4.octets()[3] as usize,
        IpAddr::V6(v6) => v6.octets()[15] as usize,
    }
}

async fn accept_loop(
    index: usize,
    listener: TcpListener,
    routes: Routes<TcpRoute>,
    cancel: CancellationToken,
) {
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let routes = routes.load();
                // No route: the last one left after this accept; the close resets the client.
                if let Some(route) = choose(&routes, peer.ip()) {
                    route(index, stream, peer, local.unwrap_or(peer));
                }
            }
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning; the listener stays.
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

async fn udp_loop(socket: Arc<UdpSocket>, routes: Routes<UdpRoute>, cancel: CancellationToken) {
    proxylab_core::l4::udp::receive_datagrams(&socket, &cancel, |data, client| {
        if let Some(route) = choose(&routes.load(), client.ip()) {
            route(data, client);
        }
    })
    .await;
}
