//! What a proxy's dialler hands hyper's client: the stream it connected, what hyper should know of
//! it (an HTTP/2 agreement by ALPN), and the proxy's own facts about the connection (its two
//! addresses, for hop records), which hyper gives back in every response's extensions through
//! [`Connected::extra`]. The bastion and the HA balancer each dial their own way (destination
//! checks, backend choice) and share this wrapper.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// A dialled stream `S` with its facts `E` (returned by hyper as a response extension).
#[derive(Debug)]
pub struct Dialed<S, E> {
    io: TokioIo<S>,
    extra: E,
    h2: bool,
}

impl<S, E> Dialed<S, E> {
    /// A connection that speaks HTTP/1.1 (or `h2` after [`Dialed::negotiated_h2`]).
    pub fn new(stream: S, extra: E) -> Self {
        Dialed {
            io: TokioIo::new(stream),
            extra,
            h2: false,
        }
    }

    /// Marks the connection as having agreed on HTTP/2 (by ALPN), so hyper speaks it.
    pub fn negotiated_h2(mut self, h2: bool) -> Self {
        self.h2 = h2;
        self
    }

    /// The facts the dialler attached.
    pub fn extra(&self) -> &E {
        &self.extra
    }
}

impl<S, E> Connection for Dialed<S, E>
where
    E: Clone + Send + Sync + 'static,
{
    fn connected(&self) -> Connected {
        let c = Connected::new().extra(self.extra.clone());
        if self.h2 { c.negotiated_h2() } else { c }
    }
}

impl<S: AsyncRead + Unpin, E: Unpin> hyper::rt::Read for Dialed<S, E> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin, E: Unpin> hyper::rt::Write for Dialed<S, E> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
