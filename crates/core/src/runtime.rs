//! Process plumbing every proxylab binary shares: shutdown on signals, listeners with the socket
//! options proxies need, and the file-descriptor limit.
//!
//! Shutdown is one [`CancellationToken`] per process: signals cancel it, every component watches it,
//! stops accepting, and drains what it has in flight up to its own bound.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM (Ctrl-C elsewhere). A second signal is left to the
/// default handler's successor: the process keeps draining, so callers should bound their drains.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; draining");
        t.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can still be killed; never cancel spuriously.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Options for a listening socket.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// SO_REUSEPORT: several sockets (or processes) share one address; the kernel spreads connections.
    pub reuse_port: bool,
    pub backlog: i32,
    /// TCP_NODELAY and keepalive (see [`set_keepalive`]) for the accepted sockets, set once on the
    /// listener: Linux copies both to every socket it accepts, so a connection costs no
    /// `setsockopt` for them. (Elsewhere, set them on each accepted socket too.)
    pub nodelay: bool,
    pub keepalive: Option<Duration>,
    /// TCP_USER_TIMEOUT for the accepted sockets (see [`set_user_timeout`]), inherited the same way.
    pub user_timeout: Option<Duration>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        Self {
            reuse_port: false,
            backlog: 1024,
            nodelay: false,
            keepalive: None,
            user_timeout: None,
        }
    }
}

/// Binds a TCP listener with SO_REUSEADDR (so a restarted proxy rebinds at once, past its old
/// connections in TIME_WAIT) and, when asked, SO_REUSEPORT and the accepted sockets' options.
/// Without SO_REUSEPORT the address is this listener's alone: on Linux SO_REUSEADDR never lets a
/// second socket bind an address that a socket listens on, whatever options that one sets. Errors
/// say which address failed.
pub fn bind_tcp(addr: SocketAddr, opts: ListenOptions) -> io::Result<TcpListener> {
    let with_addr =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(with_addr)?;
    socket.set_reuse_address(true).map_err(with_addr)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    if opts.reuse_port {
        socket.set_reuse_port(true).map_err(with_addr)?;
    }
    if opts.nodelay {
        socket.set_tcp_nodelay(true).map_err(with_addr)?;
    }
    if let Some(idle) = opts.keepalive {
        set_keepalive(&socket, idle).map_err(with_addr)?;
    }
    if let Some(t) = opts.user_timeout {
        set_user_timeout(&socket, t).map_err(with_addr)?;
    }
    socket.set_nonblocking(true).map_err(with_addr)?;
    socket.bind(&addr.into()).map_err(with_addr)?;
    socket.listen(opts.backlog).map_err(with_addr)?;
    TcpListener::from_std(socket.into()).map_err(with_addr)
}

/// Binds a UDP socket; SO_REUSEPORT when asked. Without it the address is this socket's alone.
///
/// Unlike [`bind_tcp`], no SO_REUSEADDR: UDP has no TIME_WAIT to rebind past, and on Linux two UDP
/// sockets that both set SO_REUSEADDR may bind the same address — another process could then take
/// the datagrams meant for this one. Errors say which address failed.
pub fn bind_udp(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let with_addr = |e: io::Error| io::Error::new(e.kind(), format!("cannot bind udp {addr}: {e}"));
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(with_addr)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    if reuse_port {
        socket.set_reuse_port(true).map_err(with_addr)?;
    }
    #[cfg(not(unix))]
    let _ = reuse_port;
    socket.set_nonblocking(true).map_err(with_addr)?;
    socket.bind(&addr.into()).map_err(with_addr)?;
    UdpSocket::from_std(socket.into()).map_err(with_addr)
}

/// TCP keepalive as Go's dialer (and so kube-proxy and client-go) sets it: probes after `idle`
/// without traffic, then every `idle / 3` (at least a second). On a listener it applies to every
/// socket accepted from it.
pub fn set_keepalive<S: std::os::fd::AsFd>(socket: &S, idle: Duration) -> io::Result<()> {
    let ka = TcpKeepalive::new()
        .with_time(idle)
        .with_interval((idle / 3).max(Duration::from_secs(1)));
    SockRef::from(socket).set_tcp_keepalive(&ka)
}

/// TCP_USER_TIMEOUT: how long data sent on `socket` (keepalive probes included) may stay
/// unacknowledged before the kernel drops the connection (RFC 5482). Together with keepalive it
/// detects a dead peer in about `timeout` while never cutting a connection that is merely quiet,
/// where an idle timer cuts both (Talos' KubePrism uses 30 s of each). On a listener it applies to
/// every socket accepted from it. A no-op outside Linux.
pub fn set_user_timeout<S: std::os::fd::AsFd>(socket: &S, timeout: Duration) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    {
        SockRef::from(socket).set_tcp_user_timeout(Some(timeout))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
    {
        let _ = (socket, timeout);
        Ok(())
    }
}

/// Raises the soft open-file limit towards `want` (bounded by the hard limit), as kube-proxy raised
/// its own to 64,000: a relaying proxy holds two descriptors per connection. Returns the new soft limit.
#[cfg(unix)]
#[allow(unsafe_code)]
pub fn raise_nofile_limit(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; RLIMIT_NOFILE is a valid resource.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let target = (want as libc::rlim_t).min(lim.rlim_max);
    if target > lim.rlim_cur {
        lim.rlim_cur = target;
        // SAFETY: setrlimit reads the struct we own; lowering or raising the soft limit up to the hard
        // limit is always permitted.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // rlim_t is u64 on Linux but not on every Unix.
    #[allow(clippy::unnecessary_cast)]
    Ok(lim.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn raise_nofile_limit(_want: u64) -> io::Result<u64> {
    Ok(0)
}

/// The soft open-file limit: how many descriptors this process may hold.
#[cfg(unix)]
#[allow(unsafe_code)]
pub fn nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; RLIMIT_NOFILE is a valid resource.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(lim.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn nofile_limit() -> io::Result<u64> {
    Ok(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reuse_port_lets_two_listeners_share_an_address() {
        let a = bind_tcp(
            "127.0.0.1:0".parse().unwrap(),
            ListenOptions {
                reuse_port: true,
                ..Default::default()
            },
        )
        .unwrap();
        let addr = a.local_addr().unwrap();
        let b = bind_tcp(
            addr,
            ListenOptions {
                reuse_port: true,
                ..Default::default()
            },
        );
        assert!(b.is_ok());
    }

    /// The accepted-socket options are set on the listener and reach every accepted socket
    /// (Linux copies them on accept), where a default listener's sockets have neither.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_and_keepalive() {
        for (tuned, opts) in [
            (
                true,
                ListenOptions {
                    nodelay: true,
                    keepalive: Some(Duration::from_secs(30)),
                    user_timeout: Some(Duration::from_secs(20)),
                    ..Default::default()
                },
            ),
            (false, ListenOptions::default()),
        ] {
            let l = bind_tcp("127.0.0.1:0".parse().unwrap(), opts).unwrap();
            let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap();
            let (s, _) = l.accept().await.unwrap();
            let s = SockRef::from(&s);
            assert_eq!(s.tcp_nodelay().unwrap(), tuned);
            assert_eq!(s.keepalive().unwrap(), tuned);
            if tuned {
                assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(30));
                assert_eq!(s.tcp_user_timeout().unwrap(), Some(Duration::from_secs(20)));
            } else {
                assert_eq!(s.tcp_user_timeout().unwrap(), None);
            }
        }
    }

    /// Without SO_REUSEPORT an address is ours alone: a second socket that asks for every sharing
    /// option there is (SO_REUSEADDR and SO_REUSEPORT) is refused with "address in use", TCP and
    /// UDP alike.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn an_exclusive_bind_refuses_any_second_socket() {
        let tcp = bind_tcp("127.0.0.1:0".parse().unwrap(), ListenOptions::default()).unwrap();
        let udp = bind_udp("127.0.0.1:0".parse().unwrap(), false).unwrap();
        for (ty, addr) in [
            (Type::STREAM, tcp.local_addr().unwrap()),
            (Type::DGRAM, udp.local_addr().unwrap()),
        ] {
            let intruder = Socket::new(Domain::IPV4, ty, None).unwrap();
            intruder.set_reuse_address(true).unwrap();
            intruder.set_reuse_port(true).unwrap();
            let err = intruder.bind(&addr.into()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{ty:?} {addr}: {err}");
        }
        let err = bind_udp(udp.local_addr().unwrap(), true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(
            err.to_string()
                .contains(&udp.local_addr().unwrap().to_string()),
            "{err}"
        );
    }

    #[tokio::test]
    async fn bind_errors_name_the_address() {
        let a = bind_tcp("127.0.0.1:0".parse().unwrap(), ListenOptions::default()).unwrap();
        let addr = a.local_addr().unwrap();
        let err = bind_tcp(addr, ListenOptions::default()).unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn nofile_limit_can_be_raised_to_the_hard_limit() {
        let n = raise_nofile_limit(4096).unwrap();
        assert!(n > 0);
    }
}

/// Threads that each run a single-threaded tokio runtime: thread per core, HAProxy's and nginx's
/// model. A proxy spawns onto [`handles`](Self::handles) whatever should stay on one thread — an
/// accept loop and every connection it accepts — so that nothing is handed between cores per
/// connection or request. The runtimes run until this value is dropped (or [`stop`](Self::stop)),
/// so tasks spawned on them outlive the spawning future, as on any runtime.
#[derive(Debug)]
pub struct ServingThreads {
    handles: Vec<tokio::runtime::Handle>,
    stop: CancellationToken,
}

impl ServingThreads {
    /// Starts `n` threads, the `i`-th named `name(i)`; `n = 0` starts none.
    pub fn start(n: usize, name: impl Fn(usize) -> String) -> io::Result<Self> {
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            let s = stop.clone();
            std::thread::Builder::new().name(name(i)).spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    // A timer that is always due within 100 ms. tokio interrupts its event loop
                    // (an eventfd write and an extra epoll_wait) whenever a new timer is due
                    // before every pending one; a forwarder registers a 250 ms dial deadline per
                    // connection, which without this made that nearly every connection (14,474
                    // such writes in 2 s under load, 986 with it).
                    while tokio::time::timeout(Duration::from_millis(100), s.cancelled())
                        .await
                        .is_err()
                    {}
                });
            })?;
            let handle = rx
                .recv()
                .map_err(|_| io::Error::other("a serving thread exited at start"))??;
            handles.push(handle);
        }
        Ok(Self { handles, stop })
    }

    /// One handle per thread, to spawn onto.
    pub fn handles(&self) -> &[tokio::runtime::Handle] {
        &self.handles
    }

    /// Ends the threads' runtimes; tasks still on them are dropped.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for ServingThreads {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
