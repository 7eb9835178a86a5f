//! TCP: relaying a connection pair both ways. Dialling lives in [`super::dial`] and is re-exported
//! here, so `l4::tcp::{dial, connect, connect_from}` name it where callers always found it.

use std::io;
use std::pin::Pin;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::TcpStream;

pub use super::dial::{
    DialError, DialFailure, KUBE_PROXY_DIAL_TIMEOUTS, connect, connect_from, dial, dial_from,
};

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

/// How [`relay`] runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayOptions {
    pub mode: RelayMode,
    /// TCP keepalive idle time for the upstream socket (probes every third of it, at least 1 s),
    /// armed once the relay has run for [`KEEPALIVE_ARM_AFTER`]. The client socket is not touched:
    /// accepted sockets inherit keepalive from their listener, so callers set it there once.
    pub upstream_keepalive: Option<Duration>,
    /// TCP_USER_TIMEOUT for the upstream socket, armed with the keepalive: how long sent data (or
    /// keepalive probes) may go unacknowledged before the kernel gives up on the peer. With it a
    /// dead upstream is noticed in about this long, without any idle limit that would cut a quiet
    /// but healthy stream (a watch, `kubectl logs -f`). Linux only; ignored elsewhere.
    pub upstream_user_timeout: Option<Duration>,
    /// Ends the relay (both sockets closed with FIN) after this long without a byte either way.
    /// Off by default, and best left off for long-lived streams: a quiet watch or `logs -f` is
    /// healthy, and keepalive finds dead peers without cutting live ones. It ends as
    /// `RelayEnd::Stopped(Interrupt::Close)`.
    pub idle_timeout: Option<Duration>,
}

/// A byte count written by one direction of a relay and read by its idle watch. One writer, so a
/// load and a store suffice (plain moves, no locked instruction); atomic only so that the relay
/// future stays `Send`.
#[derive(Debug, Default)]
struct Counter(std::sync::atomic::AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.0.store(self.0.load(Relaxed) + n, Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Resolves (with [`Interrupt::Close`]) once neither direction has moved a byte for `limit`,
/// checking a few times per limit: the idle timeout HAProxy calls `timeout client`/`server`.
async fn idle_watch(limit: Duration, up: &Counter, down: &Counter) -> Interrupt {
    let step = (limit / 4).max(Duration::from_millis(10));
    let mut seen = (up.get(), down.get());
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(step).await;
        let now = (up.get(), down.get());
        if now != seen {
            seen = now;
            quiet_since = tokio::time::Instant::now();
        } else if quiet_since.elapsed() >= limit {
            return Interrupt::Close;
        }
    }
}

/// How [`relay_until`] ends a relay it was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// Both sockets are closed with RST: "this connection failed" (its backend was marked down).
    Reset,
    /// Both sockets are closed with FIN after what was already written: an orderly end the client
    /// reconnects from (moving a connection to another backend).
    Close,
}

/// How long a relay runs before it arms the upstream's keepalive.
///
/// Keepalive only matters after a connection has been idle for its idle time (a minute by
/// default), so setting it on a connection that lives a few milliseconds is three wasted
/// `setsockopt`s: a sixth of the syscalls of a short connection. Armed one second in, the first
/// probe goes out at most one second later than if it had been set at connect time.
pub const KEEPALIVE_ARM_AFTER: Duration = Duration::from_secs(1);

/// Relays `client` ⇄ `upstream` until both directions have ended, keeping half-close: when one side
/// finishes sending, the other side gets a FIN (`shutdown(SHUT_WR)`) and the opposite direction keeps
/// flowing. An error in either direction ends the relay at once.
///
/// **A reset is passed on as a reset.** When one side fails (typically it sent RST), the other
/// socket is closed with `SO_LINGER` 0, so that peer gets a RST too rather than an orderly FIN that
/// would read as a complete response or request. This is what a client sees through kube-proxy's
/// iptables or IPVS modes, where NAT carries the RST end to end; it also keeps the relay's own
/// sockets out of TIME_WAIT, which otherwise piled up (≈ 14,000 at 11,000 connections/s) and made
/// every new upstream `connect` search longer for a free port. The failed socket itself is already
/// dead, so only the survivor needs the option.
///
/// The stats are returned in both cases, so a hop record can say how far a failed relay got.
pub async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    opts: RelayOptions,
) -> (RelayStats, io::Result<()>) {
    let (stats, end) = relay_until(client, upstream, opts, std::future::pending()).await;
    match end {
        RelayEnd::Failed { error, .. } => (stats, Err(error)),
        RelayEnd::Done | RelayEnd::Stopped(_) => (stats, Ok(())),
    }
}

/// How a [`relay_until`] ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both directions finished.
    Done,
    /// `stop` resolved first; the sockets were closed as it said.
    Stopped(Interrupt),
    /// A socket failed; `upstream` says which one (a balancer counts an upstream reset against
    /// that backend, never a client's).
    Failed { upstream: bool, error: io::Error },
}

/// [`relay`], ended from outside: when `stop` resolves first, both sockets are closed as the
/// [`Interrupt`] says. A balancer closes the connections of a backend it marked down this way, and
/// moves connections off a busy backend. The end also says which socket failed, if one did.
pub async fn relay_until(
    client: TcpStream,
    upstream: TcpStream,
    opts: RelayOptions,
    stop: impl Future<Output = Interrupt>,
) -> (RelayStats, RelayEnd) {
    let (up, down) = (Counter::default(), Counter::default());
    let result = {
        // Pinned here and lent to `both` by reference: an async fn that takes a future by value
        // keeps room for it twice (argument and local), and every idle connection pays that.
        let a = direction(
            &client,
            &upstream,
            (Socket::Client, Socket::Upstream),
            opts.mode,
            &up,
        );
        let b = direction(
            &upstream,
            &client,
            (Socket::Upstream, Socket::Client),
            opts.mode,
            &down,
        );
        tokio::pin!(a, b);
        let work = both(a, b);
        tokio::pin!(work);
        let run = async {
            match opts.upstream_keepalive {
                None => work.await,
                Some(idle) => tokio::select! {
                    biased;
                    r = &mut work => r,
                    _ = tokio::time::sleep(KEEPALIVE_ARM_AFTER) => {
                        let _ = crate::runtime::set_keepalive(&upstream, idle);
                        if let Some(t) = opts.upstream_user_timeout {
                            let _ = crate::runtime::set_user_timeout(&upstream, t);
                        }
                        work.await
                    }
                },
            }
        };
        // Boxed, and only when asked for: its timer would otherwise add to every relay's state,
        // which is what an idle connection costs.
        let mut watch = opts
            .idle_timeout
            .map(|limit| Box::pin(idle_watch(limit, &up, &down)));
        let idle = async {
            match watch.as_mut() {
                Some(w) => w.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            r = run => r.map_err(Ended::Failed),
            i = stop => Err(Ended::Stopped(i)),
            i = idle => Err(Ended::Stopped(i)),
        }
    };
    let stats = RelayStats {
        client_to_upstream: up.get(),
        upstream_to_client: down.get(),
    };
    match result {
        Ok(()) => (stats, RelayEnd::Done),
        Err(Ended::Stopped(i)) => {
            if i == Interrupt::Reset {
                reset_on_close(&client);
                reset_on_close(&upstream);
            }
            (stats, RelayEnd::Stopped(i))
        }
        Err(Ended::Failed(Failed { socket, error })) => {
            let survivor = if socket == Socket::Client {
                &upstream
            } else {
                &client
            };
            reset_on_close(survivor);
            (
                stats,
                RelayEnd::Failed {
                    upstream: socket == Socket::Upstream,
                    error,
                },
            )
        }
    }
}

/// Makes the coming close of `stream` send RST instead of FIN: how a relay says "this failed"
/// rather than "this ended".
pub fn reset_on_close(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Why the relay's work stopped early.
enum Ended {
    Failed(Failed),
    Stopped(Interrupt),
}

/// Which of the relay's two sockets an operation failed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    Client,
    Upstream,
}

/// A relay error and the socket it came from (the one that is dead).
#[derive(Debug)]
struct Failed {
    socket: Socket,
    error: io::Error,
}

/// An error inside one direction: on its source (a read) or its sink (a write).
#[derive(Debug)]
enum DirError {
    Source(io::Error),
    Sink(io::Error),
}

/// One direction of the relay, `from` → `to`, by the mode's method; `sockets` names them, so an
/// error says which socket failed.
async fn direction(
    from: &TcpStream,
    to: &TcpStream,
    sockets: (Socket, Socket),
    mode: RelayMode,
    count: &Counter,
) -> Result<(), Failed> {
    #[cfg(target_os = "linux")]
    let result = if mode == RelayMode::Auto {
        splice_one(from, to, count).await
    } else {
        copy_one(from, to, count).await
    };
    #[cfg(not(target_os = "linux"))]
    let result = {
        let _ = mode;
        copy_one(from, to, count).await
    };
    result.map_err(|e| match e {
        DirError::Source(error) => Failed {
            socket: sockets.0,
            error,
        },
        DirError::Sink(error) => Failed {
            socket: sockets.1,
            error,
        },
    })
}

/// The portable direction: a user-space copy through a buffer allocated when the direction first
/// has data, so idle connections cost no buffer.
async fn copy_one(from: &TcpStream, to: &TcpStream, count: &Counter) -> Result<(), DirError> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        from.readable().await.map_err(DirError::Source)?;
        if buf.is_empty() {
            buf = vec![0u8; COPY_BUFFER];
        }
        let n = match from.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(DirError::Source(e)),
        };
        write_all(to, &buf[..n], count).await?;
    }
    shutdown_write(to)
}

/// Writes all of `data` to `to`, counting what was written.
async fn write_all(to: &TcpStream, mut data: &[u8], count: &Counter) -> Result<(), DirError> {
    while !data.is_empty() {
        to.writable().await.map_err(DirError::Sink)?;
        match to.try_write(data) {
            Ok(m) => {
                data = &data[m..];
                count.add(m as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(DirError::Sink(e)),
        }
    }
    Ok(())
}

/// Passes the end of a direction on as a FIN.
fn shutdown_write(to: &TcpStream) -> Result<(), DirError> {
    match SockRef::from(to).shutdown(std::net::Shutdown::Write) {
        // The peer may already be gone; the other direction will notice on its own.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        r => r.map_err(DirError::Sink),
    }
}

/// Runs both directions; finishes when both have finished, or at the first error.
async fn both<E>(
    mut a: Pin<&mut impl Future<Output = Result<(), E>>>,
    mut b: Pin<&mut impl Future<Output = Result<(), E>>>,
) -> Result<(), E> {
    let (mut a_done, mut b_done) = (false, false);
    while !(a_done && b_done) {
        tokio::select! {
            r = a.as_mut(), if !a_done => { r?; a_done = true; }
            r = b.as_mut(), if !b_done => { r?; b_done = true; }
        }
    }
    Ok(())
}

/// Reads smaller than this are relayed by copying through a per-thread scratch buffer; the first
/// read that fills it switches the direction to splice for good (HAProxy's `splice-auto` rule:
/// splice pays off for bulk, while for a request/response of a few bytes a `splice` pair costs
/// more than `recv` + `send`, and most connections a Service sees are small exchanges).
pub const SPLICE_AFTER: usize = 16 * 1024;

#[cfg(target_os = "linux")]
thread_local! {
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; SPLICE_AFTER].into_boxed_slice());
}

/// What one small read did.
#[cfg(target_os = "linux")]
enum Copied {
    /// End of stream.
    Eof,
    /// Nothing to read after all (readiness was stale).
    Nothing,
    /// `n` bytes read; `rest` holds those `to` did not take at once (usually none).
    Read { n: usize, rest: Vec<u8> },
}

/// One `recv` into `buf`; a short read also clears the socket's readiness, as nginx does.
///
/// A read that returns less than asked for emptied the receive queue, so the next read would only
/// say EAGAIN: a wasted syscall per exchange (a third of the reads on short connections). Clearing
/// readiness here is safe with tokio's edge-triggered epoll: data arriving after the read raises a
/// new edge, and FIN/RST set the closed bits, which tokio never clears.
#[cfg(target_os = "linux")]
fn read_draining(from: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    use tokio::io::Interest;
    let mut got = 0;
    match from.try_io(Interest::READABLE, || {
        got = (&*SockRef::from(from)).read(buf)?;
        if got > 0 && got < buf.len() {
            // Not an error: the bytes are in `got`; this only tells tokio the queue is empty.
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(got)
        }
    }) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        r => r,
    }
}

/// Reads once from `from` into the thread's scratch buffer and writes what it can to `to` right
/// away, without awaiting: the scratch buffer is shared by every task on the thread, so whatever
/// `to` does not take now is copied out before returning.
#[cfg(target_os = "linux")]
fn copy_small(from: &TcpStream, to: &TcpStream) -> Result<Copied, DirError> {
    SCRATCH.with_borrow_mut(|buf| {
        let n = match read_draining(from, buf) {
            Ok(0) => return Ok(Copied::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Copied::Nothing),
            Err(e) => return Err(DirError::Source(e)),
        };
        let mut sent = 0;
        while sent < n {
            match to.try_write(&buf[sent..n]) {
                Ok(m) => sent += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(DirError::Sink(e)),
            }
        }
        Ok(Copied::Read {
            n,
            rest: buf[sent..n].to_vec(),
        })
    })
}

/// One direction: small reads copied (see [`SPLICE_AFTER`]), then socket → pipe → socket with
/// splice once the direction carries bulk. A pipe is borrowed from the pool when data arrives and
/// given back when the source runs dry, so idle connections hold no pipe.
#[cfg(target_os = "linux")]
async fn splice_one(from: &TcpStream, to: &TcpStream, count: &Counter) -> Result<(), DirError> {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    use super::splice::{Pipe, give_pipe, take_pipe};

    let (from_fd, to_fd) = (from.as_raw_fd(), to.as_raw_fd());
    let mut pipe: Option<Pipe> = None;
    let mut bulk = false;
    loop {
        from.readable().await.map_err(DirError::Source)?;
        if !bulk {
            match copy_small(from, to)? {
                Copied::Eof => break,
                Copied::Nothing => continue,
                Copied::Read { n, rest } => {
                    count.add((n - rest.len()) as u64);
                    write_all(to, &rest, count).await?;
                    bulk = n == SPLICE_AFTER;
                    continue;
                }
            }
        }
        let p = match &pipe {
            Some(p) => p,
            // Out of pipes (descriptors) is neither socket's fault; it ends the relay as a failed
            // read would.
            None => pipe.insert(take_pipe().map_err(DirError::Source)?),
        };
        // Unlike a `recv`, a short splice does not prove the socket empty (the pipe can run out of
        // slots before bytes), so readiness is only cleared by an EAGAIN here.
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
            Err(e) => {
                // A failed fill moved nothing: the pipe is still empty and goes back to the pool
                // (a client closing with RST lands here on every short connection; dropping the
                // pipe cost a pipe2, an fcntl and two closes per connection).
                if let Some(p) = pipe.take() {
                    give_pipe(p);
                }
                return Err(DirError::Source(e));
            }
        };
        // Everything that entered the pipe leaves it before the next read, so the pipe is empty
        // whenever we fill it and a fill can never block on a full pipe. On an error the pipe is
        // dropped (it may hold bytes), never returned to the pool.
        let mut left = n;
        while left > 0 {
            to.writable().await.map_err(DirError::Sink)?;
            match to.try_io(Interest::WRITABLE, || p.drain_to(to_fd, left)) {
                Ok(m) => {
                    left -= m;
                    count.add(m as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(DirError::Sink(e)),
            }
        }
    }
    if let Some(p) = pipe.take() {
        give_pipe(p);
    }
    shutdown_write(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    /// The relay between the inner ends of two pairs, on its own task.
    fn spawn_relay(
        client: TcpStream,
        upstream: TcpStream,
        mode: RelayMode,
    ) -> tokio::task::JoinHandle<(RelayStats, io::Result<()>)> {
        tokio::spawn(relay(
            client,
            upstream,
            RelayOptions {
                mode,
                ..Default::default()
            },
        ))
    }

    async fn half_close(mode: RelayMode) {
        // client_outer <-> [client_inner relay upstream_inner] <-> upstream_outer
        let (mut client_outer, client_inner) = pair().await;
        let (upstream_inner, mut upstream_outer) = pair().await;
        let relay = spawn_relay(client_inner, upstream_inner, mode);
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

    /// Small exchanges first (the copy path), then 4 MiB each way at once (past SPLICE_AFTER, so
    /// splice takes over mid-stream), then small again: every byte arrives, in order.
    async fn small_then_bulk(mode: RelayMode) {
        let (mut client_outer, client_inner) = pair().await;
        let (upstream_inner, mut upstream_outer) = pair().await;
        let relay = spawn_relay(client_inner, upstream_inner, mode);
        client_outer.write_all(b"ping").await.unwrap();
        let mut four = [0u8; 4];
        upstream_outer.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"ping");
        let pattern = |seed: u8| -> Vec<u8> {
            (0..4 << 20)
                .map(|i: usize| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect()
        };
        let (up_data, down_data) = (pattern(1), pattern(7));
        let (up_copy, down_copy) = (up_data.clone(), down_data.clone());
        let (mut cr, mut cw) = client_outer.into_split();
        let (mut ur, mut uw) = upstream_outer.into_split();
        let send_up = tokio::spawn(async move {
            cw.write_all(&up_copy).await.unwrap();
            cw.write_all(b"end").await.unwrap();
            cw.shutdown().await.unwrap();
        });
        let send_down = tokio::spawn(async move {
            uw.write_all(&down_copy).await.unwrap();
            uw.shutdown().await.unwrap();
        });
        let mut got_up = Vec::new();
        ur.read_to_end(&mut got_up).await.unwrap();
        let mut got_down = Vec::new();
        cr.read_to_end(&mut got_down).await.unwrap();
        send_up.await.unwrap();
        send_down.await.unwrap();
        assert_eq!(got_up.len(), up_data.len() + 3);
        assert!(
            got_up[..up_data.len()] == up_data[..],
            "upstream got other bytes"
        );
        assert_eq!(&got_up[up_data.len()..], b"end");
        assert!(got_down == down_data, "client got other bytes");
        let (stats, res) = relay.await.unwrap();
        res.unwrap();
        assert_eq!(stats.client_to_upstream, 4 + (4 << 20) + 3);
        assert_eq!(stats.upstream_to_client, 4 << 20);
    }

    #[tokio::test]
    async fn small_then_bulk_auto() {
        small_then_bulk(RelayMode::Auto).await;
    }

    #[tokio::test]
    async fn small_then_bulk_copy() {
        small_then_bulk(RelayMode::Copy).await;
    }

    /// A side that aborts (RST) is passed on as an abort: the other peer reads ECONNRESET, not an
    /// orderly end of stream that would look like a complete request or response. Both ways, since
    /// the relay sets `SO_LINGER` 0 only on the socket whose peer survived.
    async fn reset_is_passed_on(mode: RelayMode, aborting: Socket) {
        let (client_outer, client_inner) = pair().await;
        let (upstream_inner, upstream_outer) = pair().await;
        let relay = spawn_relay(client_inner, upstream_inner, mode);
        let (mut aborter, mut survivor) = match aborting {
            Socket::Client => (client_outer, upstream_outer),
            Socket::Upstream => (upstream_outer, client_outer),
        };
        aborter.write_all(b"partial msg").await.unwrap();
        let mut got = [0u8; 11];
        survivor.read_exact(&mut got).await.unwrap();
        // Close with SO_LINGER 0: the kernel sends RST.
        SockRef::from(&aborter)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(aborter);
        let (_, res) = relay.await.unwrap();
        assert!(res.is_err(), "the relay saw the reset");
        let mut rest = Vec::new();
        let err = survivor
            .read_to_end(&mut rest)
            .await
            .expect_err("the survivor must see a reset, not EOF");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    }

    #[tokio::test]
    async fn reset_is_passed_on_auto() {
        reset_is_passed_on(RelayMode::Auto, Socket::Client).await;
        reset_is_passed_on(RelayMode::Auto, Socket::Upstream).await;
    }

    #[tokio::test]
    async fn reset_is_passed_on_copy() {
        reset_is_passed_on(RelayMode::Copy, Socket::Client).await;
        reset_is_passed_on(RelayMode::Copy, Socket::Upstream).await;
    }

    /// A relay told to stop ends at once, idle or not: `Reset` resets both peers, `Close` gives
    /// both an orderly end of stream.
    #[tokio::test]
    async fn relay_until_stops_on_demand() {
        for how in [Interrupt::Reset, Interrupt::Close] {
            let (mut client_outer, client_inner) = pair().await;
            let (upstream_inner, mut upstream_outer) = pair().await;
            let (tx, rx) = tokio::sync::oneshot::channel::<Interrupt>();
            let relay = tokio::spawn(relay_until(
                client_inner,
                upstream_inner,
                RelayOptions::default(),
                async move { rx.await.unwrap_or(Interrupt::Close) },
            ));
            client_outer.write_all(b"hi").await.unwrap();
            let mut two = [0u8; 2];
            upstream_outer.read_exact(&mut two).await.unwrap();
            tx.send(how).unwrap();
            let (stats, end) = relay.await.unwrap();
            assert!(matches!(end, RelayEnd::Stopped(i) if i == how), "{end:?}");
            assert_eq!(stats.client_to_upstream, 2);
            for peer in [&mut client_outer, &mut upstream_outer] {
                let mut rest = Vec::new();
                match how {
                    Interrupt::Reset => {
                        let err = peer.read_to_end(&mut rest).await.unwrap_err();
                        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
                    }
                    Interrupt::Close => {
                        assert_eq!(peer.read_to_end(&mut rest).await.unwrap(), 0);
                    }
                }
            }
        }
    }

    /// An idle limit ends a quiet relay, and traffic keeps a busy one open past it.
    #[tokio::test]
    async fn an_idle_limit_ends_only_quiet_relays() {
        let (mut client_outer, client_inner) = pair().await;
        let (upstream_inner, mut upstream_outer) = pair().await;
        let limit = Duration::from_millis(200);
        let relay = tokio::spawn(relay_until(
            client_inner,
            upstream_inner,
            RelayOptions {
                idle_timeout: Some(limit),
                ..Default::default()
            },
            std::future::pending(),
        ));
        // Busy for twice the limit: still open.
        for _ in 0..8 {
            client_outer.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            upstream_outer.read_exact(&mut one).await.unwrap();
            tokio::time::sleep(limit / 4).await;
        }
        assert!(!relay.is_finished());
        let (stats, end) = relay.await.unwrap();
        assert!(
            matches!(end, RelayEnd::Stopped(Interrupt::Close)),
            "{end:?}"
        );
        assert_eq!(stats.client_to_upstream, 8);
        let mut rest = Vec::new();
        assert_eq!(client_outer.read_to_end(&mut rest).await.unwrap(), 0);
    }

    /// The end of a failed relay names the socket that failed, so a balancer blames a backend only
    /// for its own resets.
    #[tokio::test]
    async fn relay_until_says_which_side_failed() {
        for upstream_fails in [true, false] {
            let (client_outer, client_inner) = pair().await;
            let (upstream_inner, upstream_outer) = pair().await;
            let relay = tokio::spawn(relay_until(
                client_inner,
                upstream_inner,
                RelayOptions::default(),
                std::future::pending(),
            ));
            let (aborter, _survivor) = if upstream_fails {
                (upstream_outer, client_outer)
            } else {
                (client_outer, upstream_outer)
            };
            SockRef::from(&aborter)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(aborter);
            let (_, end) = relay.await.unwrap();
            assert!(
                matches!(end, RelayEnd::Failed { upstream, .. } if upstream == upstream_fails),
                "{end:?}"
            );
        }
    }
}
