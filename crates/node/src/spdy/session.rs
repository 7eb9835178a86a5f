//! The server side of a SPDY/3.1 session, as client-go's peer (moby/spdystream) expects it.
//!
//! ```text
//!   socket ──read──▶ reader task ──SYN_REPLY, PING echo──┐
//!                       │  per-stream payloads            ▼
//!                       ▼  (bounded channels)         writer task ──write──▶ socket
//!                   SpdyStream.reader                     ▲
//!                   SpdyStream.writer ── DATA / FIN ──────┘
//! ```
//! - The client opens every stream (odd ids, increasing); each `SYN_STREAM` is answered with an
//!   empty `SYN_REPLY` *before* the stream is handed to the handler, so the reply precedes any data
//!   the handler writes (both go through the one writer queue).
//! - `DATA` with `FIN` ends the stream's reader (EOF); [`SpdyStream`]'s writer shutdown sends our
//!   `FIN`. `RST_STREAM` from the client ends the reader and breaks the writer.
//! - Client `PING`s (odd ids) are echoed. `SETTINGS`, `WINDOW_UPDATE` and `HEADERS` are read and
//!   ignored: spdystream implements no flow control, so neither side waits for window credit — the
//!   bounded per-stream channels and TCP carry the back-pressure instead.
//! - [`SessionHandle::close`] sends `GOAWAY` and half-closes the socket after everything queued;
//!   the session ends when the client closes its side (or [`LINGER`] later). Closing our side
//!   first, and reading on, avoids the TCP reset that discards data the client has not read yet.
//! - A malformed frame ends the session with `GOAWAY PROTOCOL_ERROR`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::frame::{Frame, Headers, SpdyCodec, SpdyError, goaway, rst};
use crate::pipe::{ChanReader, ChanWriter};

/// How long the session keeps reading after our `GOAWAY` for the client to close.
pub const LINGER: Duration = Duration::from_secs(10);
/// Payload chunks buffered per stream before the reader stops reading the socket.
const STREAM_BUFFER: usize = 32;
/// Largest DATA frame we send.
const MAX_DATA_FRAME: usize = 32 * 1024;
/// Most streams a session may have open (port-forward opens two per connection).
pub const MAX_STREAMS: usize = 2048;

/// What the writer task sends.
#[derive(Debug)]
pub enum Outbound {
    /// A frame.
    Frame(Frame),
    /// Flush, then half-close the socket.
    Shutdown,
}

/// One client-opened stream.
#[derive(Debug)]
pub struct SpdyStream {
    /// The stream id.
    pub id: u32,
    /// Headers of its `SYN_STREAM` (Kubernetes: `streamtype`, `port`, `requestid`).
    pub headers: Headers,
    /// What the client sends on it; EOF at the client's `FIN`.
    pub reader: ChanReader,
    /// What we send; shutdown sends our `FIN`.
    pub writer: ChanWriter<Outbound>,
    reset: CancellationToken,
    out: mpsc::Sender<Outbound>,
}

impl SpdyStream {
    /// Aborts the stream with `RST_STREAM CANCEL` (both directions end).
    pub async fn reset(self) {
        self.reset.cancel();
        let _ = self
            .out
            .send(Outbound::Frame(Frame::RstStream {
                stream_id: self.id,
                status: rst::CANCEL,
            }))
            .await;
    }
}

/// Sends session-level frames.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    out: mpsc::Sender<Outbound>,
    last_stream: Arc<AtomicU32>,
    closing: CancellationToken,
}

impl SessionHandle {
    /// `GOAWAY OK` and a half-close after everything queued so far.
    pub async fn close(&self) {
        if self.closing.is_cancelled() {
            return;
        }
        self.closing.cancel();
        let last = self.last_stream.load(Ordering::Acquire);
        let _ = self
            .out
            .send(Outbound::Frame(Frame::GoAway {
                last_good_stream_id: last,
                status: goaway::OK,
            }))
            .await;
        let _ = self.out.send(Outbound::Shutdown).await;
    }
}

/// A running session: the streams the client opens, and the task that ends with the connection.
#[derive(Debug)]
pub struct Session {
    /// Sends `GOAWAY`.
    pub handle: SessionHandle,
    /// Streams as the client opens them.
    pub incoming: mpsc::Receiver<SpdyStream>,
    /// Ends when the connection is closed (Err on protocol or I/O failure).
    pub task: JoinHandle<Result<(), SpdyError>>,
}

struct StreamState {
    inbound: Option<mpsc::Sender<Bytes>>,
    reset: CancellationToken,
}

/// Starts serving a session on an upgraded connection. `shutdown` (the node stopping) ends it.
pub fn start<IO>(io: IO, shutdown: CancellationToken) -> Session
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel::<Outbound>(64);
    let (in_tx, in_rx) = mpsc::channel::<SpdyStream>(16);
    let handle = SessionHandle {
        out: out_tx.clone(),
        last_stream: Arc::new(AtomicU32::new(0)),
        closing: CancellationToken::new(),
    };
    let writer = tokio::spawn(write_loop(wr, out_rx));
    let reader_handle = handle.clone();
    let task = tokio::spawn(async move {
        let result = tokio::select! {
            r = read_loop(rd, out_tx.clone(), in_tx, &reader_handle) => r,
            _ = shutdown.cancelled() => Ok(()),
            _ = linger(&reader_handle.closing) => Ok(()),
        };
        if let Err(err) = &result {
            tracing::debug!(error = %err, "SPDY session failed");
            let _ = out_tx
                .send(Outbound::Frame(Frame::GoAway {
                    last_good_stream_id: reader_handle.last_stream.load(Ordering::Acquire),
                    status: goaway::PROTOCOL_ERROR,
                }))
                .await;
        }
        let _ = out_tx.send(Outbound::Shutdown).await;
        drop(out_tx);
        // The writer ends once every sender (streams included) is gone or it was told to shut
        // down; bound the wait for handlers that still hold a stream.
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
        result
    });
    Session {
        handle,
        incoming: in_rx,
        task,
    }
}

async fn linger(closing: &CancellationToken) {
    closing.cancelled().await;
    tokio::time::sleep(LINGER).await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    rd: R,
    out: mpsc::Sender<Outbound>,
    incoming: mpsc::Sender<SpdyStream>,
    handle: &SessionHandle,
) -> Result<(), SpdyError> {
    let mut frames = FramedRead::new(rd, SpdyCodec::new());
    let mut streams: HashMap<u32, StreamState> = HashMap::new();
    let mut going_away = false;
    let result = loop {
        let frame = match frames.next().await {
            Some(Ok(frame)) => frame,
            Some(Err(err)) => break Err(err),
            None => break Ok(()),
        };
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                let last = handle.last_stream.load(Ordering::Acquire);
                if stream_id % 2 == 0 || stream_id <= last {
                    // spdystream answers an id that is not new and odd the same way.
                    send(
                        &out,
                        Frame::RstStream {
                            stream_id,
                            status: rst::PROTOCOL_ERROR,
                        },
                    )
                    .await;
                    continue;
                }
                handle.last_stream.store(stream_id, Ordering::Release);
                if going_away || handle.closing.is_cancelled() || streams.len() >= MAX_STREAMS {
                    send(
                        &out,
                        Frame::RstStream {
                            stream_id,
                            status: rst::REFUSED_STREAM,
                        },
                    )
                    .await;
                    continue;
                }
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                let reset = CancellationToken::new();
                let fin = flags & super::frame::FLAG_FIN != 0;
                streams.insert(
                    stream_id,
                    StreamState {
                        inbound: (!fin).then_some(tx),
                        reset: reset.clone(),
                    },
                );
                send(
                    &out,
                    Frame::SynReply {
                        stream_id,
                        flags: 0,
                        headers: Headers::new(),
                    },
                )
                .await;
                let writer = ChanWriter::new(
                    out.clone(),
                    Arc::new(move |data| {
                        Outbound::Frame(Frame::Data {
                            stream_id,
                            fin: false,
                            data,
                        })
                    }),
                    Some(Outbound::Frame(Frame::Data {
                        stream_id,
                        fin: true,
                        data: Bytes::new(),
                    })),
                    reset.clone(),
                    MAX_DATA_FRAME,
                );
                let stream = SpdyStream {
                    id: stream_id,
                    headers,
                    reader: ChanReader::new(rx),
                    writer,
                    reset,
                    out: out.clone(),
                };
                if incoming.send(stream).await.is_err() {
                    // Nobody takes streams any more (the handler finished).
                    send(
                        &out,
                        Frame::RstStream {
                            stream_id,
                            status: rst::REFUSED_STREAM,
                        },
                    )
                    .await;
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let Some(state) = streams.get_mut(&stream_id) else {
                    continue; // as spdystream: data for a stream that is gone is dropped
                };
                if let Some(tx) = &state.inbound
                    && !data.is_empty()
                    && tx.send(data).await.is_err()
                {
                    // The handler stopped reading this stream; later data is dropped.
                    state.inbound = None;
                }
                if fin {
                    state.inbound = None;
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if let Some(state) = streams.remove(&stream_id) {
                    state.reset.cancel();
                }
            }
            Frame::Ping { id } => {
                if id % 2 == 1 {
                    send(&out, Frame::Ping { id }).await;
                }
            }
            Frame::GoAway { .. } => going_away = true,
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. } => {}
        }
    };
    // The connection is gone: every reader sees EOF, every writer breaks.
    for state in streams.into_values() {
        state.reset.cancel();
    }
    result
}

async fn send(out: &mpsc::Sender<Outbound>, frame: Frame) {
    let _ = out.send(Outbound::Frame(frame)).await;
}

async fn write_loop<W: AsyncWrite + Unpin>(wr: W, mut rx: mpsc::Receiver<Outbound>) {
    let mut framed = FramedWrite::new(wr, SpdyCodec::new());
    'outer: while let Some(item) = rx.recv().await {
        let mut next = Some(item);
        // Batch whatever is queued into one write.
        while let Some(item) = next.take() {
            match item {
                Outbound::Frame(frame) => {
                    if framed.feed(frame).await.is_err() {
                        break 'outer;
                    }
                }
                Outbound::Shutdown => {
                    let _ = framed.flush().await;
                    let _ = framed.get_mut().shutdown().await;
                    break 'outer;
                }
            }
            next = rx.try_recv().ok();
        }
        if framed.flush().await.is_err() {
            break;
        }
    }
    // Keep draining so stream writers never block on a dead session.
    rx.close();
}
