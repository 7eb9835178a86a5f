//! TCP: dialling an endpoint with retries, and relaying a connection pair both ways.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// kube-proxy's dial schedule: one attempt per timeout, the next endpoint each time (≤ 3.75 s in all).
pub const KUBE_PROXY_DIAL_TIMEOUTS: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// How [`relay`] moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayMode {
    /// `splice(2)` on Linux, the copy loop elsewhere.
    #[default]
    Auto,
    /// The portable user-space copy loop (large buffers), everywhere.
    Copy,
}

/// Copy-loop buffer per direction: large enough for bulk transfer to need few syscalls.
pub const COPY_BUFFER: usize = 64 * 1024;

/// What a relay moved, also when it ended with an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes from the client (the accepted side) to the upstream.
    pub client_to_upstream: u64,
    /// Bytes from the upstream to the client.
    pub upstream_to_client: u64,
}

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
    mut pick: impl FnMut(&[SocketAddr]) -> Option<(SocketAddr, T)>,
) -> Result<(TcpStream, T, Vec<DialFailure>), DialError> {
    let mut failures: Vec<DialFailure> = Vec::new();
    let mut tried: Vec<SocketAddr> = Vec::new();
    for timeout in schedule {
        let Some((addr, value)) = pick(&tried) else {
            break;
        };
        let result = match tokio::time::timeout(*timeout, TcpStream::connect(addr)).await {
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

/// Relays `client` ⇄ `upstream` until both directions have ended, keeping half-close: when one side
/// finishes sending, the other side gets a FIN (`shutdown(SHUT_WR)`) and the opposite direction keeps
/// flowing. An error in either direction ends the relay at once (both sockets close when dropped).
///
/// The stats are returned in both cases, so a hop record can say how far a failed relay got.
pub async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    mode: RelayMode,
) -> (RelayStats, io::Result<()>) {
    #[cfg(target_os = "linux")]
    if mode == RelayMode::Auto {
        return splice_relay(&client, &upstream).await;
    }
    let _ = mode;
    copy_relay(client, upstream).await
}

async fn copy_relay(
    mut client: TcpStream,
    mut upstream: TcpStream,
) -> (RelayStats, io::Result<()>) {
    let (mut up, mut down) = (0u64, 0u64);
    let result = {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        let a = copy_one(&mut cr, &mut uw, &mut up);
        let b = copy_one(&mut ur, &mut cw, &mut down);
        both(a, b).await
    };
    (
        RelayStats {
            client_to_upstream: up,
            upstream_to_client: down,
        },
        result,
    )
}

async fn copy_one(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    count: &mut u64,
) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    // Allocated when the direction first has data, so idle connections cost no buffer.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        if buf.is_empty() {
            // Wait for the first byte with a tiny buffer, then grow to the full size.
            let mut first = [0u8; 1];
            let n = from.read(&mut first).await?;
            if n == 0 {
                break;
            }
            to.write_all(&first[..n]).await?;
            *count += n as u64;
            buf = vec![0u8; COPY_BUFFER];
            continue;
        }
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).await?;
        *count += n as u64;
    }
    to.shutdown().await
}

/// Runs both directions; finishes when both have finished, or at the first error.
async fn both(
    a: impl Future<Output = io::Result<()>>,
    b: impl Future<Output = io::Result<()>>,
) -> io::Result<()> {
    tokio::pin!(a, b);
    let (mut a_done, mut b_done) = (false, false);
    while !(a_done && b_done) {
        tokio::select! {
            r = &mut a, if !a_done => { r?; a_done = true; }
            r = &mut b, if !b_done => { r?; b_done = true; }
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
async fn splice_relay(client: &TcpStream, upstream: &TcpStream) -> (RelayStats, io::Result<()>) {
    let (mut up, mut down) = (0u64, 0u64);
    let result = both(
        splice_one(client, upstream, &mut up),
        splice_one(upstream, client, &mut down),
    )
    .await;
    (
        RelayStats {
            client_to_upstream: up,
            upstream_to_client: down,
        },
        result,
    )
}

/// One direction with splice: socket → pipe → socket. A pipe is borrowed from the pool when data
/// arrives and given back when the source runs dry, so idle connections hold no pipe.
#[cfg(target_os = "linux")]
async fn splice_one(from: &TcpStream, to: &TcpStream, count: &mut u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    use super::splice::{Pipe, give_pipe, take_pipe};

    let (from_fd, to_fd) = (from.as_raw_fd(), to.as_raw_fd());
    let mut pipe: Option<Pipe> = None;
    loop {
        from.readable().await?;
        let p = match &pipe {
            Some(p) => p,
            None => pipe.insert(take_pipe()?),
        };
        let n = match from.try_io(Interest::READABLE, || p.fill_from(from_fd, p.capacity)) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing more for now; the pipe is empty (drained below), so it can serve others.
                if let Some(p) = pipe.take() {
                    give_pipe(p);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        // Everything that entered the pipe leaves it before the next read, so the pipe is empty
        // whenever we fill it and a fill can never block on a full pipe. On an error the pipe is
        // dropped (it may hold bytes), never returned to the pool.
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || p.drain_to(to_fd, left)) {
                Ok(m) => {
                    left -= m;
                    *count += m as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
    if let Some(p) = pipe.take() {
        give_pipe(p);
    }
    match SockRef::from(to).shutdown(std::net::Shutdown::Write) {
        // The peer may already be gone; the other direction will notice on its own.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        r => r,
    }
}

/// Sets the options every relayed socket gets: TCP_NODELAY (relays must not add Nagle delay to small
/// exchanges; the sender already decided when to push) and keepalive (to notice vanished peers on long
/// idle connections such as watches).
pub fn tune(stream: &TcpStream, keepalive: Duration) {
    let _ = stream.set_nodelay(true);
    let ka = socket2::TcpKeepalive::new()
        .with_time(keepalive)
        .with_interval((keepalive / 3).max(Duration::from_secs(1)));
    let _ = SockRef::from(stream).set_tcp_keepalive(&ka);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    async fn half_close(mode: RelayMode) {
        // client_outer <-> [client_inner relay upstream_inner] <-> upstream_outer
        let (mut client_outer, client_inner) = pair().await;
        let (upstream_inner, mut upstream_outer) = pair().await;
        let relay = tokio::spawn(relay(client_inner, upstream_inner, mode));
        client_outer.write_all(b"hello").await.unwrap();
        client_outer.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream_outer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        // the other direction still works after the client's FIN
        upstream_outer
            .write_all(b"world, after your FIN")
            .await
            .unwrap();
        upstream_outer.shutdown().await.unwrap();
        let mut back = Vec::new();
        client_outer.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"world, after your FIN");
        let (stats, res) = relay.await.unwrap();
        res.unwrap();
        assert_eq!(
            stats,
            RelayStats {
                client_to_upstream: 5,
                upstream_to_client: 21
            }
        );
    }

    #[tokio::test]
    async fn half_close_auto() {
        half_close(RelayMode::Auto).await;
    }

    #[tokio::test]
    async fn half_close_copy() {
        half_close(RelayMode::Copy).await;
    }

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
    }
}
