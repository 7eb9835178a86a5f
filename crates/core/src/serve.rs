//! The one accept loop every HTTP(S) listener in proxylab runs: TCP, TLS and unix sockets; proxies,
//! the lab's apiservers and kubelets, and every admin and health endpoint.
//!
//! Why not `axum::serve`? It has none of the limits a server facing untrusted clients needs, and
//! none of the connection facts a proxy records. Here every connection gets:
//!
//! 1. **TLS with client certificates.** The handshake runs in the connection's own task (never in the
//!    accept loop, so one slow handshake cannot stall others) within [`ServeOptions::handshake_timeout`],
//!    and the verified client certificate is turned into a [`PeerIdentity`] handlers authenticate with.
//! 2. **The connection's facts on every request.** [`ConnInfo`] (remote and local address, TLS, peer
//!    identity, ALPN, unix socket) is inserted into each request's extensions — the apiserver
//!    authenticates on it and every proxy writes its hop record from it.
//! 3. **Limits on what a client may hold** (the defaults are [`ServeOptions::default`] for a data
//!    plane, [`ServeOptions::admin`] for admin and health endpoints):
//!    - *request heads*: the first request's head must arrive within `header_read_timeout` of the
//!      connection (or of its TLS handshake) — this covers HTTP/2 and the protocol sniffing before
//!      it, which hyper's own HTTP/1 timer does not; later HTTP/1 heads get the same deadline from
//!      hyper, which starts it when the connection goes idle. A head is at most `max_header_bytes`
//!      (HTTP/1 and the HTTP/2 header list) and `max_headers` fields; beyond either the answer is
//!      431 (HTTP/1 then closes).
//!    - *idle connections*: a connection with no request in flight for `idle_timeout` is closed
//!      gracefully (HTTP/1: closed; HTTP/2: GOAWAY). "In flight" lasts until the response body
//!      ends, so a watch, `logs -f` or any long response is never cut by the timer, however quiet;
//!      an upgraded connection (exec, attach, port-forward) has left HTTP and is never timed here.
//!    - *connections*: at most `max_connections` per listener, and all listeners of the process
//!      together at most half its open-file limit (see [`process_connection_limit`]), so the
//!      process's other sockets — a forwarder's ClusterIP data plane, a proxy's upstream
//!      connections — always have descriptors left. At a limit the loop **stops accepting**
//!      (HAProxy's `maxconn`, Go's `netutil.LimitListener`): new connections wait in the kernel's
//!      backlog and are served in order as others close, instead of being accepted and dropped; a
//!      warning is logged at most every ten seconds per listener. The permit travels with the
//!      socket, so an upgraded connection still counts until its tunnel closes.
//! 4. **Shutdown**: on cancellation the listener closes at once; established connections finish
//!    their in-flight requests (HTTP/2: GOAWAY) for up to `drain_timeout`, then are cut.
//!    [`serve_http_abortable`] adds the other ending, a crash's: when its `abort` token is
//!    cancelled the listener closes and every connection is dropped at once — no GOAWAY, no
//!    drain, in-flight responses (watches included) end mid-stream. The lab's failure drills
//!    (`proxylab lab stop apiserver-2`) stop one apiserver this way, so the proxies in front
//!    see what they would see if kube-apiserver were killed.
//! 5. **A handle on each connection** ([`ConnControl`]): whoever serves the connection can ask it to
//!    finish gracefully — HTTP/2 GOAWAY (streams in flight finish, the client opens a new
//!    connection for its next request), HTTP/1 `Connection: close` after the response in flight —
//!    or to close at once. [`serve_http_per_connection`] hands it, with the connection's
//!    [`ConnInfo`], to a factory that makes the connection's router (the HA balancer binds each
//!    client connection to one apiserver this way and moves it with a GOAWAY); every request also
//!    carries it in its extensions.
//!
//! HTTP/1.1 and HTTP/2 are both served (ALPN decides under TLS; the preface decides in clear text),
//! with HTTP/1.1 upgrades (WebSocket, SPDY).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use http::{Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::tls::PeerIdentity;

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address (`0.0.0.0:0` on a unix socket).
    pub remote: SocketAddr,
    /// The listener's address (`0.0.0.0:0` on a unix socket).
    pub local: SocketAddr,
    pub tls: bool,
    /// The verified client certificate's identity, when one was presented.
    pub peer: Option<PeerIdentity>,
    /// The ALPN protocol agreed under TLS (`h2`, `http/1.1`).
    pub alpn: Option<Vec<u8>>,
    /// Whether the connection came through a unix socket (then `remote` and `local` say nothing).
    pub unix: bool,
    /// The addresses a PROXY protocol header gave, when the listener expects one
    /// ([`ServeOptions::proxy_protocol`]) and the client sent it: the original client behind an
    /// L4 load balancer. `remote` stays the socket's peer.
    pub proxied: Option<crate::l4::proxy_protocol::ProxyHeader>,
}

/// A handle on one served connection (see the module docs, item 5). Cheap to clone; every clone
/// steers the same connection. Asking a connection that already ended does nothing.
#[derive(Debug, Clone, Default)]
pub struct ConnControl {
    graceful: CancellationToken,
    close: CancellationToken,
    ended: CancellationToken,
}

impl ConnControl {
    /// Finish gracefully: HTTP/2 sends GOAWAY (the streams in flight run to their end, new ones go
    /// to a new connection); HTTP/1 closes after the response in flight. A response that never
    /// ends (a watch) keeps the connection open: [`close`](Self::close) ends it.
    pub fn graceful_shutdown(&self) {
        self.graceful.cancel();
    }

    /// Close now: the connection is dropped with whatever is in flight (its client sees the
    /// connection end mid-response). An upgraded connection (exec, port-forward) has left HTTP
    /// and is not affected.
    pub fn close(&self) {
        self.close.cancel();
    }

    /// Whether a graceful shutdown or a close was asked for.
    pub fn is_closing(&self) -> bool {
        self.graceful.is_cancelled() || self.close.is_cancelled()
    }

    /// Whether the connection's HTTP serving has ended.
    pub fn has_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    /// Resolves when the connection's HTTP serving has ended (closed by either side, cut, or
    /// upgraded and handed to its tunnel).
    pub async fn ended(&self) {
        self.ended.cancelled().await;
    }
}

/// Marks a connection's control as ended when its serving task ends, however it ends.
struct EndGuard(CancellationToken);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Makes each connection's router from its facts and its control handle; see
/// [`serve_http_per_connection`].
pub type MakeRouter = Arc<dyn Fn(&ConnInfo, &ConnControl) -> Router + Send + Sync>;

/// Limits and deadlines for a listener. See the module docs for what each protects against.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long a client may take to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long a client may take to send a request's head: the first one from the connection's
    /// start, later ones (HTTP/1) from the end of the previous response.
    pub header_read_timeout: Duration,
    /// The largest request head accepted, in bytes (HTTP/1 request line and headers; HTTP/2
    /// header list).
    pub max_header_bytes: usize,
    /// The most header fields a request may carry.
    pub max_headers: usize,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// The most connections this listener holds open at once (TLS handshakes and upgraded
    /// connections included); beyond it, new connections wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long established connections may run on after shutdown starts.
    pub drain_timeout: Duration,
    /// Read an optional PROXY protocol header (v1 or v2) before TLS or HTTP, within the header read
    /// timeout. Off by default: a listener that accepts it lets any client claim any address, so
    /// only one behind a load balancer that sends it (or a test pod) turns it on.
    pub proxy_protocol: bool,
}

impl Default for ServeOptions {
    /// A data-plane listener (an apiserver, a kubelet, a proxy's front).
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            // kube-apiserver's ReadHeaderTimeout is 32 s; hyper's default is 30 s.
            header_read_timeout: Duration::from_secs(30),
            // kube-apiserver and Go's net/http default to 1 MiB of headers.
            max_header_bytes: 1 << 20,
            // hyper's default; HAProxy's tune.http.maxhdr is 101.
            max_headers: 100,
            // Go's HTTP/2 server (and so kube-apiserver) closes idle connections after 90 s.
            idle_timeout: Duration::from_secs(90),
            max_connections: 4096,
            drain_timeout: Duration::from_secs(5),
            proxy_protocol: false,
        }
    }
}

impl ServeOptions {
    /// An admin or health endpoint (`/metrics`, `/healthz`, a healthCheckNodePort): a few probes
    /// and scrapers with small requests, so small limits — a flood of clients on it holds at most
    /// 128 descriptors and cannot starve the component's real work.
    pub fn admin() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            idle_timeout: Duration::from_secs(30),
            max_connections: 128,
            drain_timeout: Duration::from_secs(1),
            ..Self::default()
        }
    }
}

/// A listening socket to serve: TCP (plain or TLS) or a unix socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Listener::Tcp(l)
    }
}

impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Self {
        Listener::Unix(l)
    }
}

/// Serves `router` on `listener` with the default limits until `shutdown` is cancelled, then
/// drains. See the module docs.
pub async fn serve_http(
    listener: impl Into<Listener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_http_with(listener, tls, router, shutdown, ServeOptions::default()).await
}

/// [`serve_http`] with explicit limits.
pub async fn serve_http_with(
    listener: impl Into<Listener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: CancellationToken,
    options: ServeOptions,
) -> std::io::Result<()> {
    let never = CancellationToken::new();
    serve_http_abortable(listener, tls, router, shutdown, never, options).await
}

/// [`serve_http_with`] that can also end as a crash would: cancelling `abort` closes the
/// listener and drops every connection at once (the peers see their connections close
/// mid-request), where cancelling `shutdown` drains. Upgraded connections (exec, port-forward)
/// have left this loop and are not dropped.
pub async fn serve_http_abortable(
    listener: impl Into<Listener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: CancellationToken,
    abort: CancellationToken,
    options: ServeOptions,
) -> std::io::Result<()> {
    let make: MakeRouter = Arc::new(move |_: &ConnInfo, _: &ConnControl| router.clone());
    serve_http_per_connection(listener, tls, make, shutdown, abort, options).await
}

/// [`serve_http_abortable`] with a router made for each connection by `make`, once the connection
/// is established (after its TLS handshake, so the client certificate's identity is known),
/// from its [`ConnInfo`] and its [`ConnControl`]. A proxy that binds a client connection to one
/// upstream (the HA balancer's `http` mode) keeps the control handle to move the client later.
pub async fn serve_http_per_connection(
    listener: impl Into<Listener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    make: MakeRouter,
    shutdown: CancellationToken,
    abort: CancellationToken,
    options: ServeOptions,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    match listener.into() {
        Listener::Tcp(l) => {
            let local = l.local_addr()?;
            let name = local.to_string();
            let ends = Ends { shutdown, abort };
            accept_loop(TcpAccept(l, local), name, acceptor, make, ends, options).await
        }
        Listener::Unix(l) => {
            let name = l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(PathBuf::from))
                .map(|p| format!("unix:{}", p.display()))
                .unwrap_or_else(|| "unix socket".to_owned());
            let ends = Ends { shutdown, abort };
            accept_loop(UnixAccept(l), name, acceptor, make, ends, options).await
        }
    }
}

/// The addresses of an accepted connection.
#[derive(Clone, Copy)]
struct Addrs {
    remote: SocketAddr,
    local: SocketAddr,
    unix: bool,
    proxied: Option<crate::l4::proxy_protocol::ProxyHeader>,
}

/// What the accept loop needs from a listening socket.
trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Io, Addrs)>> + Send;
    /// Reads an optional PROXY protocol header off a new connection (TCP only).
    fn proxy_header(
        io: &mut Self::Io,
        timeout: Duration,
    ) -> impl Future<Output = std::io::Result<Option<crate::l4::proxy_protocol::ProxyHeader>>> + Send;
}

struct TcpAccept(TcpListener, SocketAddr);

impl Accept for TcpAccept {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<(Self::Io, Addrs)> {
        let (s, remote) = self.0.accept().await?;
        let _ = s.set_nodelay(true);
        Ok((
            s,
            Addrs {
                remote,
                local: self.1,
                unix: false,
                proxied: None,
            },
        ))
    }

    async fn proxy_header(
        io: &mut Self::Io,
        timeout: Duration,
    ) -> std::io::Result<Option<crate::l4::proxy_protocol::ProxyHeader>> {
        crate::l4::proxy_protocol::read_header(io, timeout).await
    }
}

struct UnixAccept(UnixListener);

impl Accept for UnixAccept {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<(Self::Io, Addrs)> {
        let (s, _) = self.0.accept().await?;
        let none = SocketAddr::from(([0, 0, 0, 0], 0));
        Ok((
            s,
            Addrs {
                remote: none,
                local: none,
                unix: true,
                proxied: None,
            },
        ))
    }

    async fn proxy_header(
        _io: &mut Self::Io,
        _timeout: Duration,
    ) -> std::io::Result<Option<crate::l4::proxy_protocol::ProxyHeader>> {
        Ok(None)
    }
}

/// How an accept loop may end: drained (`shutdown`) or dropped at once (`abort`).
struct Ends {
    shutdown: CancellationToken,
    abort: CancellationToken,
}

async fn accept_loop<A: Accept>(
    listener: A,
    name: String,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    make: MakeRouter,
    ends: Ends,
    options: ServeOptions,
) -> std::io::Result<()> {
    let Ends { shutdown, abort } = ends;
    let tracker = TaskTracker::new();
    // Connections get their own token so that the drain deadline (or an abort) can cut them
    // without touching the caller's token.
    let conns_stop = CancellationToken::new();
    // Either ending stops the accepting; only the abort skips the drain.
    let stop_accepting = CancellationToken::new();
    {
        let (s, a, stop) = (shutdown.clone(), abort.clone(), stop_accepting.clone());
        let cut = conns_stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = s.cancelled() => {}
                _ = a.cancelled() => cut.cancel(),
                _ = stop.cancelled() => {}
            }
            stop.cancel();
        });
    }
    let shutdown_all = shutdown;
    let shutdown = stop_accepting.clone();
    let options = Arc::new(options);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let process_cap = process_connection_limit();
    let mut full_warning = Throttle::default();
    let mut accept_warning = Throttle::default();

    'accept: loop {
        // Room first, then accept: a full listener leaves new connections in the kernel's backlog.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                full_warning.warn(|suppressed| {
                    warn!(listener = %name, limit = options.max_connections, suppressed,
                        "connection limit reached: not accepting until a connection closes")
                });
                tokio::select! {
                    _ = shutdown.cancelled() => break 'accept,
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break 'accept, // never closed
                    },
                }
            }
        };
        let slot = loop {
            if let Some(s) = ProcessSlot::take(process_cap) {
                break s;
            }
            full_warning.warn(|suppressed| {
                warn!(listener = %name, limit = process_cap, suppressed,
                    "process-wide connection limit reached (half the open-file limit): not accepting until a connection closes")
            });
            tokio::select! {
                _ = shutdown.cancelled() => break 'accept,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        };
        let (io, addrs) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) if is_resource_exhaustion(&err) => {
                    // Out of descriptors or memory despite the limits (another part of the process
                    // used them): the connection stays in the backlog; back off instead of spinning.
                    accept_warning.warn(|suppressed| {
                        warn!(listener = %name, error = %err, suppressed, "accept failed; retrying")
                    });
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(err) => {
                    // One connection's problem (aborted before accept, a firewall's EPERM).
                    debug!(listener = %name, error = %err, "accept failed");
                    continue;
                }
            },
        };
        let mut io = Guarded {
            io,
            _permit: permit,
            _slot: slot,
        };
        let make = make.clone();
        let acceptor = acceptor.clone();
        let options = options.clone();
        let stop = conns_stop.clone();
        // Connections drain on the caller's shutdown only: an abort drops them without a GOAWAY.
        let drain = shutdown_all.clone();
        tracker.spawn(async move {
            let mut addrs = addrs;
            if options.proxy_protocol {
                let read = tokio::select! {
                    r = A::proxy_header(&mut io.io, options.header_read_timeout) => r,
                    _ = stop.cancelled() => return,
                };
                match read {
                    Ok(h) => addrs.proxied = h,
                    Err(err) => {
                        debug!(remote = %addrs.remote, error = %err, "bad PROXY protocol header; closing");
                        return;
                    }
                }
            }
            serve_connection(io, addrs, acceptor, make, &options, drain, stop).await;
        });
    }
    drop(listener);
    stop_accepting.cancel();
    tracker.close();
    if abort.is_cancelled() {
        conns_stop.cancel();
        tracker.wait().await;
        return Ok(());
    }
    if tokio::time::timeout(options.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        debug!(listener = %name, "drain deadline reached; closing remaining connections");
        conns_stop.cancel();
        tracker.wait().await;
    }
    Ok(())
}

fn is_resource_exhaustion(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// A warning at most every ten seconds, counting the ones left out.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn warn(&mut self, emit: impl FnOnce(u64)) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(10))
        {
            self.suppressed += 1;
            return;
        }
        emit(self.suppressed);
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Connections open across every listener of the process.
static PROCESS_OPEN: AtomicUsize = AtomicUsize::new(0);

/// The most connections all listeners of this process may hold together: half the soft open-file
/// limit, leaving the other half to everything else (upstream connections, L4 relays, files).
///
/// The first call raises the soft limit to the hard one, as Go's runtime does for every program
/// (so a Go server like kubectl proxy or kube-apiserver gets the same room).
pub fn process_connection_limit() -> usize {
    static RAISE: std::sync::Once = std::sync::Once::new();
    RAISE.call_once(|| {
        let _ = crate::runtime::raise_nofile_limit(u64::MAX);
    });
    match crate::runtime::nofile_limit() {
        Ok(n) => usize::try_from(n / 2).unwrap_or(usize::MAX).max(64),
        Err(_) => 4096,
    }
}

/// One connection's share of the process-wide limit.
struct ProcessSlot;

impl ProcessSlot {
    fn take(cap: usize) -> Option<Self> {
        if PROCESS_OPEN.fetch_add(1, Ordering::Relaxed) >= cap {
            PROCESS_OPEN.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ProcessSlot)
    }
}

impl Drop for ProcessSlot {
    fn drop(&mut self) {
        PROCESS_OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// An accepted socket with its places in the listener's and the process's limits: they are
    /// given back when the socket is dropped, wherever it went (an upgraded connection lives on
    /// in its tunnel).
    struct Guarded<S> {
        #[pin]
        io: S,
        _permit: OwnedSemaphorePermit,
        _slot: ProcessSlot,
    }
}

impl<S: AsyncRead> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

async fn serve_connection<S>(
    stream: S,
    addrs: Addrs,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    make: MakeRouter,
    options: &ServeOptions,
    drain: CancellationToken,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let control = ConnControl::default();
    let _ended = EndGuard(control.ended.clone());
    let Addrs {
        remote,
        local,
        unix,
        proxied,
    } = addrs;
    match acceptor {
        None => {
            let info = ConnInfo {
                remote,
                local,
                tls: false,
                peer: None,
                alpn: None,
                unix,
                proxied,
            };
            let router = make(&info, &control);
            let conn = Conn {
                info,
                router,
                control,
            };
            run_http(TokioIo::new(stream), conn, options, drain, stop).await;
        }
        Some(acceptor) => {
            let handshake = tokio::select! {
                h = tokio::time::timeout(options.handshake_timeout, acceptor.accept(stream)) => h,
                _ = stop.cancelled() => return,
            };
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    debug!(%remote, %local, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%remote, %local, "TLS handshake timed out");
                    return;
                }
            };
            let (_, session) = tls.get_ref();
            let peer = session
                .peer_certificates()
                .and_then(PeerIdentity::from_chain);
            let info = ConnInfo {
                remote,
                local,
                tls: true,
                peer,
                alpn: session.alpn_protocol().map(<[u8]>::to_vec),
                unix,
                proxied,
            };
            let router = make(&info, &control);
            let conn = Conn {
                info,
                router,
                control,
            };
            run_http(TokioIo::new(tls), conn, options, drain, stop).await;
        }
    }
}

/// Whether a connection has requests in flight, and since when it has had none: what the idle
/// timer reads. Updated by [`InFlight`] guards, which live as long as each response body.
struct Activity {
    /// Requests whose response body has not ended.
    active: AtomicUsize,
    /// Requests seen so far (0: the first head has not arrived).
    seen: AtomicU64,
    /// When `active` last dropped to 0, in milliseconds since `base`.
    idle_since_ms: AtomicU64,
    base: Instant,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.seen.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One request in flight on a connection.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            let now = self.0.now_ms();
            self.0.idle_since_ms.fetch_max(now, Ordering::Relaxed);
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it ends or is dropped.
    struct ServedBody {
        #[pin]
        inner: axum::body::Body,
        _in_flight: InFlight,
    }
}

impl http_body::Body for ServedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What one connection is served with.
struct Conn {
    info: ConnInfo,
    router: Router,
    control: ConnControl,
}

async fn run_http<I>(
    io: TokioIo<I>,
    conn: Conn,
    options: &ServeOptions,
    drain: CancellationToken,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        info,
        router,
        control,
    } = conn;
    let remote = info.remote;
    let activity = Arc::new(Activity {
        active: AtomicUsize::new(0),
        seen: AtomicU64::new(0),
        idle_since_ms: AtomicU64::new(0),
        base: Instant::now(),
    });
    let max_headers = options.max_headers;
    let service = {
        let activity = activity.clone();
        let control = control.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let in_flight = activity.begin();
            // HTTP/1 heads are capped by hyper before this; HTTP/2 header lists only by size.
            let too_many = req.headers().len() > max_headers;
            req.extensions_mut().insert(info.clone());
            req.extensions_mut().insert(control.clone());
            let router = router.clone();
            async move {
                let resp = if too_many {
                    let mut r = Response::new(axum::body::Body::empty());
                    *r.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
                    r
                } else {
                    router
                        .oneshot(req.map(axum::body::Body::new))
                        .await
                        .unwrap_or_else(|never: Infallible| match never {})
                };
                Ok::<_, Infallible>(resp.map(|inner| ServedBody {
                    inner,
                    _in_flight: in_flight,
                }))
            }
        })
    };

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_headers(options.max_headers)
        // The read buffer's cap is the head's cap (hyper-util's builder has no max_header_size);
        // hyper answers 431 when a head does not fit.
        .max_buf_size(options.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);

    // One timer per connection, re-armed when it fires: first the deadline for the first request's
    // head, then the idle deadline (checked again later while requests are in flight).
    let timer = tokio::time::sleep(options.header_read_timeout.min(options.idle_timeout));
    tokio::pin!(timer);
    let mut closing = false;
    loop {
        tokio::select! {
            // A cut (drain deadline, abort) wins over everything else that is ready.
            biased;
            _ = stop.cancelled() => return,
            _ = control.close.cancelled() => {
                debug!(%remote, "connection closed by its control handle");
                return;
            }
            res = conn.as_mut() => {
                if let Err(err) = res {
                    debug!(%remote, error = %err, "connection ended with an error");
                }
                return;
            }
            _ = drain.cancelled(), if !closing => {
                // Finish in-flight requests, accept no new ones on this connection.
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = control.graceful.cancelled(), if !closing => {
                // Asked by whoever serves the connection (HTTP/2: GOAWAY).
                debug!(%remote, "graceful shutdown asked by the connection's control handle");
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut timer => {
                let now = activity.now_ms();
                let next = if activity.active.load(Ordering::Relaxed) > 0 {
                    // A live request (a watch, a long response): never cut; look again later.
                    now + millis(options.idle_timeout)
                } else if activity.seen.load(Ordering::Relaxed) == 0 {
                    let deadline = millis(options.header_read_timeout);
                    if now >= deadline {
                        debug!(%remote, "no request head within the header read timeout; closing");
                        return;
                    }
                    // Not yet; when the idle timeout is the shorter, look again at its pace (a
                    // first request may have come and gone by then).
                    deadline.min(now + millis(options.idle_timeout))
                } else {
                    let idle_since = activity.idle_since_ms.load(Ordering::Relaxed);
                    let due = idle_since + millis(options.idle_timeout);
                    if now < due {
                        due
                    } else if closing {
                        // Still open a while after a graceful close (a peer that never reads
                        // its GOAWAY): drop it.
                        return;
                    } else {
                        debug!(%remote, "idle connection; closing");
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                        now + millis(options.header_read_timeout.min(options.idle_timeout))
                    }
                };
                timer.as_mut().reset(tokio::time::Instant::from_std(
                    activity.base + Duration::from_millis(next),
                ));
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn who(axum::Extension(info): axum::Extension<ConnInfo>) -> String {
        format!("{} tls={}", info.remote.ip(), info.tls)
    }

    #[tokio::test]
    async fn plain_http_gets_conn_info_and_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let app = Router::new().route("/", get(who));
        let server = tokio::spawn(serve_http(listener, None, app, token.clone()));

        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("127.0.0.1 tls=false"), "{out}");

        token.cancel();
        server.await.unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn an_abort_drops_streaming_responses_at_once_without_a_drain() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, abort) = (CancellationToken::new(), CancellationToken::new());
        // A response that never ends, like a watch.
        let app = Router::new().route(
            "/watch",
            get(|| async {
                let stream = futures_util::stream::pending::<Result<Bytes, Infallible>>();
                axum::body::Body::from_stream(stream)
            }),
        );
        // A drain this long would hold the test for an hour: returning at all shows none ran.
        let options = ServeOptions {
            drain_timeout: Duration::from_secs(3600),
            ..ServeOptions::default()
        };
        let server = tokio::spawn(serve_http_abortable(
            listener,
            None,
            app,
            shutdown.clone(),
            abort.clone(),
            options,
        ));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /watch HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the head");
            head.extend_from_slice(&buf[..n]);
        }
        assert!(head.starts_with(b"HTTP/1.1 200"));

        abort.cancel();
        let served = tokio::time::timeout(Duration::from_secs(60), server)
            .await
            .expect("the abort did not end the server");
        served.unwrap().unwrap();
        // The watch's connection is gone: the rest of the stream never comes (the chunked body
        // has no terminating chunk), and the listener is closed.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        assert!(!rest.ends_with(b"0\r\n\r\n"), "{rest:?}");
        assert!(TcpStream::connect(addr).await.is_err());
        assert!(!shutdown.is_cancelled());
    }

    /// An HTTP/2 client (prior knowledge over clear text) on `addr`, and its connection task.
    async fn h2_client(
        addr: SocketAddr,
    ) -> (
        hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>,
        tokio::task::JoinHandle<hyper::Result<()>>,
    ) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        (send, tokio::spawn(conn))
    }

    fn h2_get(path: &str) -> http::Request<http_body_util::Empty<Bytes>> {
        http::Request::get(format!("http://x{path}"))
            .body(http_body_util::Empty::new())
            .unwrap()
    }

    #[tokio::test]
    async fn a_control_handle_sends_goaway_that_lets_streams_finish_or_closes_at_once() {
        use http_body_util::BodyExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let controls = Arc::new(parking_lot::Mutex::new(Vec::<ConnControl>::new()));
        // Each connection's streaming response takes its chunks from a channel the test holds.
        let (chunks_tx, chunks_rx) = tokio::sync::mpsc::unbounded_channel::<
            tokio::sync::mpsc::UnboundedReceiver<Result<Bytes, Infallible>>,
        >();
        let chunks_rx = Arc::new(tokio::sync::Mutex::new(chunks_rx));
        let make: MakeRouter = {
            let controls = controls.clone();
            Arc::new(move |_: &ConnInfo, c: &ConnControl| {
                controls.lock().push(c.clone());
                let chunks_rx = chunks_rx.clone();
                Router::new().route(
                    "/stream",
                    get(move || {
                        let chunks_rx = chunks_rx.clone();
                        async move {
                            let rx = chunks_rx.lock().await.recv().await.unwrap();
                            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                                rx.recv().await.map(|c| (c, rx))
                            });
                            axum::body::Body::from_stream(stream)
                        }
                    }),
                )
            })
        };
        let token = CancellationToken::new();
        let server = tokio::spawn(serve_http_per_connection(
            listener,
            None,
            make,
            token.clone(),
            CancellationToken::new(),
            ServeOptions::default(),
        ));

        // GOAWAY: the stream in flight runs to its end, then the connection ends by itself.
        let (mut send, conn) = h2_client(addr).await;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        chunks_tx.send(rx).unwrap();
        let resp = send.send_request(h2_get("/stream")).await.unwrap();
        let control = controls.lock()[0].clone();
        assert!(!control.is_closing());
        control.graceful_shutdown();
        assert!(control.is_closing());
        tx.send(Ok(Bytes::from_static(b"after the GOAWAY")))
            .unwrap();
        drop(tx);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"after the GOAWAY");
        conn.await.unwrap().unwrap();
        control.ended().await;
        assert!(send.send_request(h2_get("/stream")).await.is_err());

        // Close: the stream in flight is cut.
        let (mut send, conn) = h2_client(addr).await;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        chunks_tx.send(rx).unwrap();
        let resp = send.send_request(h2_get("/stream")).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"first"))).unwrap();
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"first");
        let control = controls.lock()[1].clone();
        control.close();
        control.ended().await;
        assert!(body.collect().await.is_err(), "the stream was not cut");
        let _ = conn.await;
        drop(tx);

        token.cancel();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn throttle_emits_once_per_period_and_counts_the_rest() {
        let mut t = Throttle::default();
        let mut emitted = Vec::new();
        for _ in 0..5 {
            t.warn(|n| emitted.push(n));
        }
        assert_eq!(emitted, vec![0]);
        assert_eq!(t.suppressed, 4);
    }

    #[test]
    fn the_process_limit_leaves_half_the_descriptors() {
        let cap = process_connection_limit();
        let soft = crate::runtime::nofile_limit().unwrap();
        assert_eq!(cap as u64, (soft / 2).max(64));
    }
}
