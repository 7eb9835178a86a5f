//! TCP dialling: kube-proxy's retry schedule over a pick function, and a `connect` that can leave
//! from a chosen local address.
//!
//! **Why a source address.** In the lab every role has its own loopback address (a node is
//! 127.0.20.N, a pod 127.0.30.M), so that an address says where a packet was. A socket that is
//! not bound before `connect` gets the kernel's choice of source — on loopback always 127.0.0.1 —
//! and every hop record would show the same client. [`connect_from`] binds the socket to the
//! role's address first, as a node's kube-proxy (or a cloud load balancer's node side) dials from
//! the node's own address.
//!
//! The port is still the kernel's choice, and on Linux it is chosen at `connect` time, not at
//! `bind` time (`IP_BIND_ADDRESS_NO_PORT`): a port picked at `bind` cannot be shared between
//! destinations, so a proxy dialling many endpoints from one address would run out of ports at
//! about 28,000 connections (the ephemeral range) instead of 28,000 per endpoint.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

/// kube-proxy's dial schedule: one attempt per timeout, the next endpoint each time (≤ 3.75 s in all).
pub const KUBE_PROXY_DIAL_TIMEOUTS: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// One failed dial attempt.
#[derive(Debug)]
pub struct DialFailure {
    pub addr: SocketAddr,
    pub error: io::Error,
}

/// No endpoint could be reached.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("no endpoint to dial")]
    NoEndpoint,
    #[error("all {} dial attempts failed (last: {})", .0.len(), .0.last().map(|f| format!("{}: {}", f.addr, f.error)).unwrap_or_default())]
    Exhausted(Vec<DialFailure>),
}

/// Dials with a schedule of timeouts, one attempt per entry. Before each attempt `pick` is asked for an
/// endpoint, given those that failed so far (so it can choose another and bypass affinity). `pick`
/// returns the address and any value the caller wants back with the winning stream (e.g. a balancer
/// pick that counts as an active connection). Returns the stream, the value and the failures.
pub async fn dial<T>(
    schedule: &[Duration],
    pick: impl FnMut(&[SocketAddr]) -> Option<(SocketAddr, T)>,
) -> Result<(TcpStream, T, Vec<DialFailure>), DialError> {
    dial_from(None, schedule, pick).await
}

/// [`dial`], every attempt leaving from `local` (see [`connect_from`]).
pub async fn dial_from<T>(
    local: Option<IpAddr>,
    schedule: &[Duration],
    mut pick: impl FnMut(&[SocketAddr]) -> Option<(SocketAddr, T)>,
) -> Result<(TcpStream, T, Vec<DialFailure>), DialError> {
    let mut failures: Vec<DialFailure> = Vec::new();
    let mut tried: Vec<SocketAddr> = Vec::new();
    for timeout in schedule {
        let Some((addr, value)) = pick(&tried) else {
            break;
        };
        let result = match tokio::time::timeout(*timeout, connect_from(local, addr)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            )),
        };
        match result {
            Ok(stream) => return Ok((stream, value, failures)),
            Err(error) => {
                tried.push(addr);
                failures.push(DialFailure { addr, error });
            }
        }
    }
    if failures.is_empty() {
        Err(DialError::NoEndpoint)
    } else {
        Err(DialError::Exhausted(failures))
    }
}

/// Connects to `addr` from a kernel-chosen source address: [`connect_from`] with `None`.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    connect_from(None, addr).await
}

/// Connects to `addr`, leaving from `local` (any free port) when given, else from the kernel's
/// choice. `local` must be of `addr`'s family and an address of this host; otherwise the error
/// names both addresses.
///
/// On Linux this is tokio's `TcpStream::connect` without its `getsockopt(SO_ERROR)`: a
/// non-blocking connect is finished when epoll reports the socket writable, and a failed connect
/// is always reported with `EPOLLERR` (and `EPOLLHUP`), so when the event says only "writable" the
/// connect succeeded and there is nothing to ask — one syscall fewer on every successful dial, as
/// HAProxy and nginx save it. The socket gets no other options here (callers set TCP_NODELAY or
/// keepalive as they need).
#[cfg(target_os = "linux")]
pub async fn connect_from(local: Option<IpAddr>, addr: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    use tokio::io::Interest;

    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    if let Some(ip) = local {
        check_family(ip, addr)?;
        // Best effort: without it (kernels before 4.2) the bind below picks the port itself.
        let _ = bind_address_no_port(&socket);
        socket
            .bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot dial {addr} from {ip}: {e}")))?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(socket.into())?;
    let ready = stream.ready(Interest::WRITABLE | Interest::ERROR).await?;
    if (ready.is_error() || ready.is_write_closed())
        && let Some(e) = stream.take_error()?
    {
        return Err(e);
    }
    Ok(stream)
}

/// Connects to `addr`, leaving from `local` when given (tokio's connect; the Linux version saves a
/// syscall and defers the port choice).
#[cfg(not(target_os = "linux"))]
pub async fn connect_from(local: Option<IpAddr>, addr: SocketAddr) -> io::Result<TcpStream> {
    let Some(ip) = local else {
        return TcpStream::connect(addr).await;
    };
    check_family(ip, addr)?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket
        .bind(SocketAddr::new(ip, 0))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot dial {addr} from {ip}: {e}")))?;
    socket.connect(addr).await
}

/// A source of the other family cannot reach `addr`; say so instead of the kernel's EINVAL.
pub(crate) fn check_family(local: IpAddr, addr: SocketAddr) -> io::Result<()> {
    if local.is_ipv4() == addr.is_ipv4() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot dial {addr} from {local}: the addresses are of different families"),
        ))
    }
}

/// `IP_BIND_ADDRESS_NO_PORT`: a `bind` to (ip, 0) leaves the port to `connect`, which can then
/// reuse a port towards another destination (see the module docs).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a plain setsockopt on a descriptor we own, with a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn dial_moves_to_the_next_endpoint() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        // a port that was just free: connecting is refused
        let dead_addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let order = [dead_addr, live_addr];
        let (_s, picked, failures) = dial(&KUBE_PROXY_DIAL_TIMEOUTS, |tried| {
            order.iter().find(|a| !tried.contains(a)).map(|a| (*a, *a))
        })
        .await
        .unwrap();
        assert_eq!(picked, live_addr);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].addr, dead_addr);
        // The refusal is reported as such (the Linux connect reads the error only when epoll
        // flags one).
        assert_eq!(
            failures[0].error.kind(),
            io::ErrorKind::ConnectionRefused,
            "{}",
            failures[0].error
        );
    }

    /// The server sees the chosen source address (any loopback address will do on Linux), the
    /// dialler's own socket says the same, and without a source the kernel picks 127.0.0.1.
    #[tokio::test]
    async fn connect_from_leaves_from_the_chosen_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for (source, seen) in [
            (Some("127.0.20.7".parse().unwrap()), "127.0.20.7"),
            (Some("127.0.20.8".parse().unwrap()), "127.0.20.8"),
            (None, "127.0.0.1"),
        ] {
            let stream = connect_from(source, addr).await.unwrap();
            let (_, peer) = listener.accept().await.unwrap();
            assert_eq!(peer.ip().to_string(), seen);
            assert_eq!(stream.local_addr().unwrap(), peer);
        }
        // dial_from passes the source to every attempt.
        let (stream, (), _) = dial_from(
            Some("127.0.20.9".parse().unwrap()),
            &KUBE_PROXY_DIAL_TIMEOUTS,
            |_| Some((addr, ())),
        )
        .await
        .unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.20.9");
        assert_eq!(stream.local_addr().unwrap(), peer);
    }

    /// A source the dial cannot use is an error naming both addresses, never a silent fallback to
    /// another source.
    #[tokio::test]
    async fn connect_from_a_bad_source_names_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let err = connect_from(Some("::1".parse().unwrap()), addr)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        assert!(err.to_string().contains("::1"), "{err}");
        // 192.0.2.1 (TEST-NET-1) is not an address of this host: binding to it fails, nothing is
        // sent.
        let err = connect_from(Some("192.0.2.1".parse().unwrap()), addr)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err}");
        assert!(err.to_string().contains("from 192.0.2.1"), "{err}");
    }
}
