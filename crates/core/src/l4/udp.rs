//! UDP: sessions over a connectionless protocol.
//!
//! A UDP proxy receives datagrams from many clients on one socket. To send replies back it must
//! remember who talked to which endpoint: a **session** per client `ip:port`, each with its own upstream
//! socket *connected* to the chosen endpoint (so the kernel filters replies for us and the endpoint
//! sees a distinct source per client). A reply read from that socket is sent to the client from the
//! listening socket, so it comes from the address the client spoke to.
//!
//! UDP has no close, so sessions end by **idle timeout** (kube-proxy's `--udp-timeout`, 250 ms by
//! default), refreshed by packets either way. The table is **bounded**: a new client beyond the bound
//! evicts the least recently used session. And when an endpoint leaves the service,
//! [`UdpProxy::retain_upstreams`] ends its sessions **at once**, so the client's next datagram opens a
//! session to a live endpoint — instead of the stale-conntrack black hole kube-proxy users know
//! (kubernetes#19029, #125467).
//!
//! Buffers live on the stack between readiness and the non-blocking receive, never across an `await`,
//! so an idle session costs a socket and a small task, not a 64 KiB buffer.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use socket2::SockRef;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_536;

/// Session table settings.
#[derive(Debug, Clone, Copy)]
pub struct UdpConfig {
    pub idle_timeout: Duration,
    pub max_sessions: usize,
    /// The address every session's upstream socket is bound to (any free port), so endpoints and
    /// hop records see the proxy's own address (a node's, in the lab) rather than the kernel's
    /// choice. `None`: the kernel's choice. Must be of the endpoints' family and of this host.
    pub source: Option<IpAddr>,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_millis(250),
            max_sessions: 65_536,
            source: None,
        }
    }
}

/// The endpoint chosen for a new session, as the caller's pick function returns it.
pub struct UdpTarget {
    pub addr: SocketAddr,
    /// Why it was chosen (for the hop record).
    pub reason: String,
    /// Held for the session's life (e.g. a balancer pick counting an active connection).
    pub guard: Option<Box<dyn Send + Sync>>,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    Idle,
    EndpointRemoved,
    Evicted,
    Shutdown,
    UpstreamError,
}

impl SessionEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::Idle => "idle-timeout",
            SessionEnd::EndpointRemoved => "endpoint-removed",
            SessionEnd::Evicted => "evicted",
            SessionEnd::Shutdown => "shutdown",
            SessionEnd::UpstreamError => "upstream-error",
        }
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => SessionEnd::Idle,
            2 => SessionEnd::EndpointRemoved,
            3 => SessionEnd::Evicted,
            4 => SessionEnd::Shutdown,
            5 => SessionEnd::UpstreamError,
            _ => return None,
        })
    }
}

/// A finished session, handed to the `on_end` callback (the hop record of a UDP flow).
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub client: SocketAddr,
    pub listener: SocketAddr,
    pub upstream_local: Option<SocketAddr>,
    pub upstream: SocketAddr,
    pub reason: String,
    pub started: Instant,
    pub wall_start: std::time::SystemTime,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
    pub end: SessionEnd,
}

struct Session {
    upstream: SocketAddr,
    socket: Arc<UdpSocket>,
    /// Microseconds since the proxy's epoch of the last packet either way.
    last_seen: AtomicU64,
    cancel: CancellationToken,
    end: AtomicU8,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    packets_up: AtomicU64,
    packets_down: AtomicU64,
}

impl Session {
    fn end_with(&self, why: SessionEnd) {
        let _ = self
            .end
            .compare_exchange(0, why.code(), Ordering::AcqRel, Ordering::Acquire);
        self.cancel.cancel();
    }
}

type OnEnd = Arc<dyn Fn(SessionSummary) + Send + Sync>;

/// One UDP listener and its session table.
pub struct UdpProxy {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    config: UdpConfig,
    epoch: Instant,
    sessions: Mutex<HashMap<SocketAddr, Arc<Session>>>,
    on_end: OnEnd,
}

impl UdpProxy {
    /// Wraps a bound socket, which [`run`](Self::run) reads. `on_end` is called once per finished
    /// session.
    pub fn new(
        socket: UdpSocket,
        config: UdpConfig,
        on_end: impl Fn(SessionSummary) + Send + Sync + 'static,
    ) -> io::Result<Arc<Self>> {
        Self::replying_on(Arc::new(socket), config, on_end)
    }

    /// A session table that sends its replies from `socket` but leaves reading it to the caller,
    /// who hands each datagram to [`receive`](Self::receive) (see [`receive_datagrams`]). So one
    /// socket can serve several tables, each for its own clients — the forwarders of a process
    /// share a ClusterIP's socket this way. The caller ends the sessions with
    /// [`end_all`](Self::end_all).
    pub fn replying_on(
        socket: Arc<UdpSocket>,
        config: UdpConfig,
        on_end: impl Fn(SessionSummary) + Send + Sync + 'static,
    ) -> io::Result<Arc<Self>> {
        let local = socket.local_addr()?;
        Ok(Arc::new(Self {
            socket,
            local,
            config,
            epoch: Instant::now(),
            sessions: Mutex::new(HashMap::new()),
            on_end: Arc::new(on_end),
        }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// The upstream of the live session of `client`, if any.
    pub fn session_upstream(&self, client: SocketAddr) -> Option<SocketAddr> {
        self.sessions.lock().get(&client).map(|s| s.upstream)
    }

    /// Ends, at once, every session whose endpoint `keep` rejects (the endpoint left the service).
    pub fn retain_upstreams(&self, keep: impl Fn(SocketAddr) -> bool) {
        let mut table = self.sessions.lock();
        table.retain(|_, s| {
            if keep(s.upstream) {
                true
            } else {
                s.end_with(SessionEnd::EndpointRemoved);
                false
            }
        });
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Receives datagrams until `shutdown`, creating sessions through `pick` (given the client address;
    /// `None` drops the datagram: no endpoint). All sessions end when it returns.
    pub async fn run(
        self: Arc<Self>,
        pick: impl Fn(SocketAddr) -> Option<UdpTarget>,
        shutdown: CancellationToken,
    ) {
        let socket = self.socket.clone();
        receive_datagrams(&socket, &shutdown, |data, client| {
            self.receive(data, client, &pick)
        })
        .await;
        self.end_all();
    }

    /// Ends every session now (reported as [`SessionEnd::Shutdown`]).
    pub fn end_all(&self) {
        let all: Vec<Arc<Session>> = self.sessions.lock().drain().map(|(_, s)| s).collect();
        for s in all {
            s.end_with(SessionEnd::Shutdown);
        }
    }

    /// Relays one datagram from `client`: into its session, or into a new one to the endpoint
    /// `pick` chooses (`None` drops the datagram: no endpoint).
    pub fn receive(
        self: &Arc<Self>,
        data: &[u8],
        client: SocketAddr,
        pick: &impl Fn(SocketAddr) -> Option<UdpTarget>,
    ) {
        let existing = self.sessions.lock().get(&client).cloned();
        let session = match existing {
            Some(s) => s,
            None => match self.open(client, pick) {
                Some(s) => s,
                None => return,
            },
        };
        session.last_seen.store(self.now_us(), Ordering::Relaxed);
        // A full socket buffer drops the datagram, as the network would; never stall the loop. The send
        // goes straight to the (non-blocking) socket: tokio's try_send would refuse until the reactor
        // has reported the new socket writable, dropping every session's first datagram.
        if SockRef::from(&*session.socket).send(data).is_ok() {
            session
                .bytes_up
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            session.packets_up.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn open(
        self: &Arc<Self>,
        client: SocketAddr,
        pick: &impl Fn(SocketAddr) -> Option<UdpTarget>,
    ) -> Option<Arc<Session>> {
        let target = pick(client)?;
        let socket = match connect_upstream(self.config.source, target.addr) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::debug!(upstream = %target.addr, error = %e, "udp upstream socket failed");
                return None;
            }
        };
        let session = Arc::new(Session {
            upstream: target.addr,
            socket,
            last_seen: AtomicU64::new(self.now_us()),
            cancel: CancellationToken::new(),
            end: AtomicU8::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            packets_up: AtomicU64::new(0),
            packets_down: AtomicU64::new(0),
        });
        {
            let mut table = self.sessions.lock();
            if table.len() >= self.config.max_sessions.max(1) {
                let lru = table
                    .iter()
                    .min_by_key(|(_, s)| s.last_seen.load(Ordering::Relaxed))
                    .map(|(k, _)| *k);
                if let Some(k) = lru
                    && let Some(old) = table.remove(&k)
                {
                    old.end_with(SessionEnd::Evicted);
                }
            }
            table.insert(client, session.clone());
        }
        let me = self.clone();
        let s = session.clone();
        let reason = target.reason;
        let guard = target.guard;
        tokio::spawn(async move {
            let _guard = guard;
            me.session_loop(client, s, reason).await;
        });
        Some(session)
    }

    async fn session_loop(self: Arc<Self>, client: SocketAddr, s: Arc<Session>, reason: String) {
        let started = Instant::now();
        let wall_start = std::time::SystemTime::now();
        let idle_us = self.config.idle_timeout.as_micros() as u64;
        loop {
            let last = s.last_seen.load(Ordering::Relaxed);
            let now = self.now_us();
            if now >= last + idle_us {
                s.end_with(SessionEnd::Idle);
                break;
            }
            let wait = Duration::from_micros(last + idle_us - now);
            tokio::select! {
                _ = s.cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => continue,
                r = s.socket.readable() => {
                    if r.is_err() {
                        s.end_with(SessionEnd::UpstreamError);
                        break;
                    }
                    let mut buf = [0u8; MAX_DATAGRAM];
                    let mut failed = false;
                    loop {
                        match s.socket.try_recv(&mut buf) {
                            Ok(n) => {
                                s.last_seen.store(self.now_us(), Ordering::Relaxed);
                                if SockRef::from(&*self.socket).send_to(&buf[..n], &client.into()).is_ok() {
                                    s.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
                                    s.packets_down.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            // ECONNREFUSED: the endpoint's port is closed (ICMP port unreachable). End the
                            // session so the client's next datagram picks again.
                            Err(_) => {
                                failed = true;
                                break;
                            }
                        }
                    }
                    if failed {
                        s.end_with(SessionEnd::UpstreamError);
                        break;
                    }
                }
            }
        }
        {
            let mut table = self.sessions.lock();
            if table.get(&client).is_some_and(|cur| Arc::ptr_eq(cur, &s)) {
                table.remove(&client);
            }
        }
        let end =
            SessionEnd::from_code(s.end.load(Ordering::Acquire)).unwrap_or(SessionEnd::Shutdown);
        (self.on_end)(SessionSummary {
            client,
            listener: self.local,
            upstream_local: s.socket.local_addr().ok(),
            upstream: s.upstream,
            reason,
            started,
            wall_start,
            bytes_up: s.bytes_up.load(Ordering::Relaxed),
            bytes_down: s.bytes_down.load(Ordering::Relaxed),
            packets_up: s.packets_up.load(Ordering::Relaxed),
            packets_down: s.packets_down.load(Ordering::Relaxed),
            end,
        });
    }
}

/// Reads `socket` until `shutdown`, handing every datagram and its sender to `each`. The buffer
/// lives only between readiness and the non-blocking receives, never across an `await`.
pub async fn receive_datagrams(
    socket: &UdpSocket,
    shutdown: &CancellationToken,
    mut each: impl FnMut(&[u8], SocketAddr),
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.readable() => {
                if let Err(e) = r {
                    let local = socket.local_addr().ok();
                    tracing::warn!(listener = ?local, error = %e, "udp listener failed");
                    break;
                }
            }
        }
        // Drain everything queued.
        let mut buf = [0u8; MAX_DATAGRAM];
        loop {
            let (n, client) = match socket.try_recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors surfacing on the listening socket concern one earlier reply; keep going.
                Err(_) => continue,
            };
            each(&buf[..n], client);
        }
    }
}

impl std::fmt::Debug for UdpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpProxy")
            .field("local", &self.local)
            .field("sessions", &self.session_count())
            .finish()
    }
}

/// A socket connected to `addr`, bound to `source` (any port) or to the kernel's choice: connected,
/// so the kernel delivers only that endpoint's replies to it.
fn connect_upstream(source: Option<IpAddr>, addr: SocketAddr) -> io::Result<UdpSocket> {
    let ip = match source {
        Some(ip) => {
            crate::l4::dial::check_family(ip, addr)?;
            ip
        }
        None if addr.is_ipv4() => IpAddr::from([0u8; 4]),
        None => IpAddr::from([0u16; 8]),
    };
    let std = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot send to {addr} from {ip}: {e}")))?;
    std.connect(addr)?;
    std.set_nonblocking(true)?;
    UdpSocket::from_std(std)
}

#[cfg(test)]
mod tests {
    use super::*;

    use proxylab_test_support::echo::udp_echo;

    #[tokio::test]
    async fn sessions_relay_and_move_off_removed_endpoints() {
        let e1 = udp_echo("127.0.0.1:0", "").await;
        let e2 = udp_echo("127.0.0.1:0", "").await;
        let ends = Arc::new(Mutex::new(Vec::new()));
        let ends2 = ends.clone();
        let proxy = UdpProxy::new(
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            UdpConfig {
                idle_timeout: Duration::from_secs(60),
                max_sessions: 16,
                source: None,
            },
            move |s| ends2.lock().push(s),
        )
        .unwrap();
        let front = proxy.local_addr();
        let current = Arc::new(Mutex::new(e1));
        let cur = current.clone();
        let stop = CancellationToken::new();
        let run = tokio::spawn(proxy.clone().run(
            move |_| {
                Some(UdpTarget {
                    addr: *cur.lock(),
                    reason: "test".into(),
                    guard: None,
                })
            },
            stop.clone(),
        ));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(front).await.unwrap();
        let mut buf = [0u8; 64];
        client.send(b"one").await.unwrap();
        let n = client.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"one");
        let me = client.local_addr().unwrap();
        assert_eq!(proxy.session_upstream(me), Some(e1));
        // e1 leaves the service: the session ends now, the next datagram goes to e2
        *current.lock() = e2;
        proxy.retain_upstreams(|a| a == e2);
        assert_eq!(proxy.session_upstream(me), None);
        client.send(b"two").await.unwrap();
        let n = client.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"two");
        assert_eq!(proxy.session_upstream(me), Some(e2));
        stop.cancel();
        run.await.unwrap();
        // both sessions reported their end
        while ends.lock().len() < 2 {
            tokio::task::yield_now().await;
        }
        let ends = ends.lock();
        assert!(
            ends.iter().any(|s| s.upstream == e1
                && s.end == SessionEnd::EndpointRemoved
                && s.bytes_up == 3)
        );
    }

    /// With a source address, the endpoint sees datagrams from it, its reply still reaches the
    /// client (from the listener's address), and the session's summary names the source.
    #[tokio::test]
    async fn sessions_leave_from_the_configured_source() {
        let endpoint = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let endpoint_addr = endpoint.local_addr().unwrap();
        let ends = Arc::new(Mutex::new(Vec::new()));
        let ends2 = ends.clone();
        let proxy = UdpProxy::new(
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            UdpConfig {
                idle_timeout: Duration::from_secs(60),
                source: Some("127.0.20.7".parse().unwrap()),
                ..UdpConfig::default()
            },
            move |s| ends2.lock().push(s),
        )
        .unwrap();
        let front = proxy.local_addr();
        let stop = CancellationToken::new();
        let run = tokio::spawn(proxy.clone().run(
            move |_| {
                Some(UdpTarget {
                    addr: endpoint_addr,
                    reason: "test".into(),
                    guard: None,
                })
            },
            stop.clone(),
        ));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(front).await.unwrap();
        client.send(b"ping").await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = endpoint.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from.ip().to_string(), "127.0.20.7");
        endpoint.send_to(b"pong", from).await.unwrap();
        let n = client.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"pong");
        stop.cancel();
        run.await.unwrap();
        while ends.lock().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(ends.lock()[0].upstream_local, Some(from));
    }
}
