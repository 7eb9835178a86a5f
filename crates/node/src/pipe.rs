//! Byte pipes over channels: the glue between a multiplexed connection (SPDY streams, WebSocket
//! channels) and code that wants plain `AsyncRead` / `AsyncWrite`.
//!
//! A connection's reader task pushes each stream's payloads into a bounded channel; a
//! [`ChanReader`] reads them back as bytes (EOF when the sender is dropped: the peer half-closed).
//! A [`ChanWriter`] turns writes into items for the connection's single writer task, so frames from
//! many streams interleave on one socket without locks. Both are bounded: a slow peer or a slow
//! consumer pushes back instead of buffering without limit.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, PollSender};

/// Reads the payloads sent on a channel as one byte stream.
#[derive(Debug)]
pub struct ChanReader {
    rx: mpsc::Receiver<Bytes>,
    pending: Bytes,
}

impl ChanReader {
    /// Reads from `rx`.
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        Self {
            rx,
            pending: Bytes::new(),
        }
    }

    /// The next chunk as it arrived (None at EOF). Mixing this with `AsyncRead` is fine.
    pub async fn chunk(&mut self) -> Option<Bytes> {
        if !self.pending.is_empty() {
            return Some(std::mem::take(&mut self.pending));
        }
        loop {
            let chunk = self.rx.recv().await?;
            if !chunk.is_empty() {
                return Some(chunk);
            }
        }
    }
}

impl AsyncRead for ChanReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(chunk) => self.pending = chunk,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(self.pending.len());
        let chunk = self.pending.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

/// Turns writes into items for a connection's writer task.
pub struct ChanWriter<T: Send + 'static> {
    tx: PollSender<T>,
    wrap: Arc<dyn Fn(Bytes) -> T + Send + Sync>,
    /// Sent once on `shutdown` (a SPDY `FIN`), if any.
    close: Option<T>,
    /// Cancelled when the peer aborted the stream (`RST_STREAM`) or the connection is gone.
    broken: CancellationToken,
    max_chunk: usize,
    shut: bool,
}

impl<T: Send + 'static> std::fmt::Debug for ChanWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChanWriter")
            .field("shut", &self.shut)
            .finish()
    }
}

impl<T: Send + 'static> ChanWriter<T> {
    /// Each write of up to `max_chunk` bytes becomes `wrap(bytes)`; `close` is sent on shutdown.
    pub fn new(
        tx: mpsc::Sender<T>,
        wrap: Arc<dyn Fn(Bytes) -> T + Send + Sync>,
        close: Option<T>,
        broken: CancellationToken,
        max_chunk: usize,
    ) -> Self {
        Self {
            tx: PollSender::new(tx),
            wrap,
            close,
            broken,
            max_chunk: max_chunk.max(1),
            shut: false,
        }
    }

    /// Sends one item now, bypassing the byte interface (an empty "connected" message).
    pub async fn send_raw(&mut self, item: T) -> io::Result<()> {
        let sender = self.tx.get_ref().cloned().ok_or_else(broken_pipe)?;
        sender.send(item).await.map_err(|_| broken_pipe())
    }

    fn check(&self) -> io::Result<()> {
        if self.shut || self.broken.is_cancelled() {
            Err(broken_pipe())
        } else {
            Ok(())
        }
    }
}

// No field is ever pinned in place (the writer only moves items out), so pinning is irrelevant.
impl<T: Send + 'static> Unpin for ChanWriter<T> {}

fn broken_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the stream is closed")
}

impl<T: Send + 'static> AsyncWrite for ChanWriter<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.tx.poll_reserve(cx)).map_err(|_| broken_pipe())?;
        let n = buf.len().min(self.max_chunk);
        let item = (self.wrap)(Bytes::copy_from_slice(&buf[..n]));
        self.tx.send_item(item).map_err(|_| broken_pipe())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shut {
            return Poll::Ready(Ok(()));
        }
        if self.close.is_some()
            && !self.broken.is_cancelled()
            && ready!(self.tx.poll_reserve(cx)).is_ok()
            && let Some(item) = self.close.take()
        {
            let _ = self.tx.send_item(item);
        }
        self.shut = true;
        self.tx.close();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reader_joins_chunks_and_ends_at_eof() {
        let (tx, rx) = mpsc::channel(4);
        let mut reader = ChanReader::new(rx);
        tx.send(Bytes::from_static(b"ab")).await.expect("send");
        tx.send(Bytes::new()).await.expect("send");
        tx.send(Bytes::from_static(b"cd")).await.expect("send");
        drop(tx);
        let mut all = String::new();
        reader.read_to_string(&mut all).await.expect("read");
        assert_eq!(all, "abcd");
    }

    #[tokio::test]
    async fn writer_chunks_and_closes_once() {
        let (tx, mut rx) = mpsc::channel::<(bool, Bytes)>(16);
        let mut writer = ChanWriter::new(
            tx,
            Arc::new(|b| (false, b)),
            Some((true, Bytes::new())),
            CancellationToken::new(),
            3,
        );
        writer.write_all(b"abcdefg").await.expect("write");
        writer.shutdown().await.expect("shutdown");
        writer.shutdown().await.expect("twice is fine");
        assert!(writer.write_all(b"x").await.is_err());
        drop(writer);
        let mut items = Vec::new();
        while let Some(item) = rx.recv().await {
            items.push(item);
        }
        assert_eq!(
            items,
            vec![
                (false, Bytes::from_static(b"abc")),
                (false, Bytes::from_static(b"def")),
                (false, Bytes::from_static(b"g")),
                (true, Bytes::new()),
            ]
        );
    }

    #[tokio::test]
    async fn broken_writer_refuses_writes() {
        let (tx, _rx) = mpsc::channel::<Bytes>(1);
        let broken = CancellationToken::new();
        let mut writer = ChanWriter::new(tx, Arc::new(|b| b), None, broken.clone(), 16);
        broken.cancel();
        assert!(writer.write_all(b"x").await.is_err());
    }
}
