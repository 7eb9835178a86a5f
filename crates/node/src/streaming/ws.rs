//! Kubernetes' channel protocols over WebSocket (`channel.k8s.io` and friends).
//!
//! Every WebSocket message carries one channel's bytes, prefixed with the channel number:
//! - binary protocols (`channel.k8s.io`, `v4.channel.k8s.io`, `v5.channel.k8s.io`, no protocol):
//!   a binary message `[channel, payload…]`;
//! - base64 protocols (`base64.channel.k8s.io`, `v4.base64.channel.k8s.io`): a text message
//!   `'0'+channel` followed by the payload in standard base64;
//! - `v5.channel.k8s.io` adds the CLOSE signal `[255, channel]`: the client will send no more on
//!   that channel (stdin EOF), which the older protocols cannot say;
//! - raw (the `SPDY/3.1+portforward.k8s.io` tunnel): binary messages are a plain byte stream
//!   carrying a SPDY session, no channel byte.
//!
//! [`start`] runs a reader task (demultiplexing into one [`ChanReader`] per readable channel;
//! WebSocket pings are answered by tungstenite as the reader polls) and a writer task fed by
//! [`ChanWriter`]s, and [`WsConn::close`] ends with a normal closure (1000), which is how a v5
//! client learns that every stream has ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;

use crate::pipe::{ChanReader, ChanWriter};

/// The v5 CLOSE signal's channel byte.
pub const CLOSE_SIGNAL: u8 = 255;
/// Largest payload per message we send.
const MAX_MESSAGE: usize = 32 * 1024;

/// How channel bytes are framed in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// `[channel, payload…]` binary messages.
    Binary,
    /// `'0'+channel` then base64, text messages.
    Base64,
    /// No channels: binary payloads are one byte stream (a tunnelled SPDY session).
    Raw,
}

/// What the writer task sends.
#[derive(Debug)]
pub enum WsOut {
    /// Bytes on a channel (ignored channel number in `Raw`).
    Data(u8, Bytes),
    /// A normal closure, then stop.
    Close,
}

/// An open channel connection.
#[derive(Debug)]
pub struct WsConn {
    /// One reader per readable channel (in `Raw`: channel 0).
    pub readers: HashMap<u8, ChanReader>,
    out: mpsc::Sender<WsOut>,
    broken: CancellationToken,
    /// Ends when the connection is closed.
    pub task: JoinHandle<()>,
}

impl WsConn {
    /// A writer for `channel`.
    pub fn writer(&self, channel: u8) -> ChanWriter<WsOut> {
        ChanWriter::new(
            self.out.clone(),
            Arc::new(move |data| WsOut::Data(channel, data)),
            None,
            self.broken.clone(),
            MAX_MESSAGE,
        )
    }

    /// Sends an empty message on `channel` (the kubelet's "connection established" signal).
    pub async fn announce(&self, channel: u8) {
        let _ = self.out.send(WsOut::Data(channel, Bytes::new())).await;
    }

    /// Sends a normal closure after everything queued and waits (bounded) for the connection to end.
    pub async fn close(self) {
        let _ = self.out.send(WsOut::Close).await;
        drop(self.out);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Wraps an upgraded connection (the 101 already sent) and starts its reader and writer.
pub async fn start<IO>(
    io: IO,
    codec: Codec,
    readable: &[u8],
    close_signal: bool,
    shutdown: CancellationToken,
) -> WsConn
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(16 << 20);
    config.max_frame_size = Some(16 << 20);
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (mut sink, mut stream) = ws.split();
    let mut senders = HashMap::new();
    let mut readers = HashMap::new();
    for &channel in readable {
        let (tx, rx) = mpsc::channel::<Bytes>(32);
        senders.insert(channel, tx);
        readers.insert(channel, ChanReader::new(rx));
    }
    let (out_tx, mut out_rx) = mpsc::channel::<WsOut>(64);
    let broken = CancellationToken::new();
    let writer_broken = broken.clone();
    let writer = tokio::spawn(async move {
        while let Some(item) = out_rx.recv().await {
            let message = match item {
                WsOut::Data(channel, data) => encode(codec, channel, &data),
                WsOut::Close => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code: CloseCode::Normal,
                            reason: "".into(),
                        })))
                        .await;
                    break;
                }
            };
            if sink.send(message).await.is_err() {
                break;
            }
        }
        writer_broken.cancel();
        out_rx.close();
    });
    let reader_broken = broken.clone();
    let task = tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                m = stream.next() => m,
                _ = shutdown.cancelled() => break,
                _ = reader_broken.cancelled() => {
                    // Our side closed: wait (bounded) for the client's close reply, then stop.
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while let Some(Ok(m)) = stream.next().await {
                            if m.is_close() { break; }
                        }
                    }).await;
                    break;
                }
            };
            let Some(Ok(message)) = message else { break };
            let (channel, payload) = match (codec, message) {
                (Codec::Raw, Message::Binary(data)) => (0, data),
                (Codec::Binary, Message::Binary(data)) => match data.split_first() {
                    Some((&channel, rest)) => (channel, data.slice_ref(rest)),
                    None => continue,
                },
                (Codec::Base64, Message::Text(text)) => match decode_base64(text.as_bytes()) {
                    Some(decoded) => decoded,
                    None => continue,
                },
                (_, Message::Close(_)) => break,
                // Pings are answered by tungstenite; other message kinds are not ours.
                _ => continue,
            };
            if close_signal && codec != Codec::Raw && channel == CLOSE_SIGNAL {
                if let Some(&target) = payload.first() {
                    senders.remove(&target);
                }
                continue;
            }
            if let Some(tx) = senders.get(&channel)
                && !payload.is_empty()
                && tx.send(payload).await.is_err()
            {
                senders.remove(&channel);
            }
        }
        // Readers see EOF; writers break.
        drop(senders);
        reader_broken.cancel();
        let _ = writer.await;
    });
    WsConn {
        readers,
        out: out_tx,
        broken,
        task,
    }
}

fn encode(codec: Codec, channel: u8, data: &[u8]) -> Message {
    match codec {
        Codec::Raw => Message::Binary(Bytes::copy_from_slice(data)),
        Codec::Binary => {
            let mut buf = BytesMut::with_capacity(data.len() + 1);
            buf.put_u8(channel);
            buf.put_slice(data);
            Message::Binary(buf.freeze())
        }
        Codec::Base64 => {
            let mut text = String::with_capacity(data.len() * 4 / 3 + 4);
            text.push(char::from(b'0'.wrapping_add(channel)));
            STANDARD.encode_string(data, &mut text);
            Message::Text(text.into())
        }
    }
}

fn decode_base64(text: &[u8]) -> Option<(u8, Bytes)> {
    let (&first, rest) = text.split_first()?;
    let channel = first.wrapping_sub(b'0');
    let decoded = STANDARD.decode(rest).ok()?;
    Some((channel, Bytes::from(decoded)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        let Message::Text(text) = encode(Codec::Base64, 1, b"foo\n") else {
            panic!("text expected");
        };
        assert_eq!(text.as_str(), "1Zm9vCg==");
        assert_eq!(
            decode_base64(text.as_bytes()),
            Some((1, Bytes::from_static(b"foo\n")))
        );
        assert_eq!(decode_base64(b"0!!!"), None);
        assert_eq!(decode_base64(b""), None);
    }

    #[test]
    fn binary_prefixes_the_channel() {
        assert_eq!(
            encode(Codec::Binary, 3, b"x"),
            Message::Binary(Bytes::from_static(&[3, b'x']))
        );
        assert_eq!(
            encode(Codec::Raw, 3, b"x"),
            Message::Binary(Bytes::from_static(b"x"))
        );
    }
}
