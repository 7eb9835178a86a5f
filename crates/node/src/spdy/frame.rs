//! SPDY/3 frames on the wire, and a `tokio_util` codec for them.
//!
//! ```text
//! data frame     |0|      stream id (31)      |  flags (8) | length (24) | data …
//! control frame  |1| version (15) | type (16) |  flags (8) | length (24) | payload …
//! ```
//! Control payloads (all integers big-endian):
//! - `SYN_STREAM` (1): stream id, associated stream id, priority (3 bits) + slot, header block
//! - `SYN_REPLY` (2) and `HEADERS` (8): stream id, header block
//! - `RST_STREAM` (3): stream id, status · `PING` (6): id · `GOAWAY` (7): last good stream id, status
//! - `SETTINGS` (4): count, then (flags 8 | id 24, value 32) · `WINDOW_UPDATE` (9): stream id, delta
//!
//! A header block is zlib-compressed ([`super::zlib`]) `count, (name length, name, value length,
//! value)*`, all lengths 32-bit; several values of one name are joined with NUL. Names are lower
//! case. Unknown control frame types are skipped, as the spec asks; everything malformed is a
//! [`SpdyError`], never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::zlib::{HeaderCompressor, HeaderDecompressor, ZlibError};

/// The SPDY version in every control frame.
pub const VERSION: u16 = 3;
/// The largest payload a frame can carry (24-bit length).
pub const MAX_FRAME_PAYLOAD: usize = (1 << 24) - 1;
/// The largest control frame payload accepted (a compressed header block and its prefix).
pub const MAX_CONTROL_PAYLOAD: usize = 1 << 20;
/// The largest header block (inflated) this implementation accepts.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The most header names in one block.
pub const MAX_HEADERS: usize = 1024;

/// Control frame flag: the sender half-closes the stream.
pub const FLAG_FIN: u8 = 0x01;
/// `SYN_STREAM` flag: the receiver may not send on this stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// `RST_STREAM` status codes (SPDY/3 §2.4.2).
pub mod rst {
    /// Generic protocol error.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// A frame for a stream that is not active.
    pub const INVALID_STREAM: u32 = 2;
    /// The stream was refused before any processing.
    pub const REFUSED_STREAM: u32 = 3;
    /// The stream is no longer needed.
    pub const CANCEL: u32 = 5;
    /// An internal error.
    pub const INTERNAL_ERROR: u32 = 6;
    /// A `SYN_STREAM` reused an active stream id.
    pub const STREAM_IN_USE: u32 = 8;
}

/// `GOAWAY` status codes.
pub mod goaway {
    /// Normal session teardown.
    pub const OK: u32 = 0;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// We failed.
    pub const INTERNAL_ERROR: u32 = 2;
}

/// A header block: names (lower case) with one or more values, in the order received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, Vec<String>)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value to `name` (lower-cased).
    pub fn add(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.to_owned()),
            None => self.0.push((name, vec![value.to_owned()])),
        }
    }

    /// Builder form of [`Headers::add`].
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.add(name, value);
        self
    }

    /// The first value of `name` (case-insensitive), as Go's `http.Header.Get`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_u32(self.0.len() as u32);
        for (name, values) in &self.0 {
            out.put_u32(name.len() as u32);
            out.put_slice(name.as_bytes());
            let joined = values.join("\0");
            out.put_u32(joined.len() as u32);
            out.put_slice(joined.as_bytes());
        }
        out
    }

    fn decode(mut block: &[u8]) -> Result<Self, SpdyError> {
        let bad = |what: &str| SpdyError::Protocol(format!("header block: {what}"));
        if block.remaining() < 4 {
            return Err(bad("truncated count"));
        }
        let count = block.get_u32() as usize;
        if count > MAX_HEADERS {
            return Err(bad("too many headers"));
        }
        let mut headers = Headers(Vec::with_capacity(count));
        let take = |block: &mut &[u8], what: &str| -> Result<String, SpdyError> {
            if block.remaining() < 4 {
                return Err(bad(&format!("truncated {what} length")));
            }
            let len = block.get_u32() as usize;
            if block.remaining() < len {
                return Err(bad(&format!("truncated {what}")));
            }
            let text = std::str::from_utf8(&block[..len])
                .map_err(|_| bad(&format!("{what} is not UTF-8")))?
                .to_owned();
            block.advance(len);
            Ok(text)
        };
        for _ in 0..count {
            let name = take(&mut block, "name")?;
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(bad(&format!("invalid header name {name:?}")));
            }
            if headers.0.iter().any(|(n, _)| *n == name) {
                return Err(bad(&format!("duplicate header {name:?}")));
            }
            let value = take(&mut block, "value")?;
            let values = value.split('\0').map(str::to_owned).collect();
            headers.0.push((name, values));
        }
        if block.has_remaining() {
            return Err(bad("trailing bytes"));
        }
        Ok(headers)
    }
}

/// One SPDY/3 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Stream data; `fin` half-closes the sender's side.
    Data {
        /// The stream.
        stream_id: u32,
        /// Last frame from this sender on the stream.
        fin: bool,
        /// The payload.
        data: Bytes,
    },
    /// Opens a stream.
    SynStream {
        /// The new stream's id (odd from clients, even from servers).
        stream_id: u32,
        /// The stream it is associated with (0: none).
        associated_to: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// `FLAG_FIN` / `FLAG_UNIDIRECTIONAL`.
        flags: u8,
        /// The stream's headers (Kubernetes puts `streamtype` etc. here).
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream.
        stream_id: u32,
        /// `FLAG_FIN`.
        flags: u8,
        /// Reply headers.
        headers: Headers,
    },
    /// Aborts a stream.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// One of [`rst`].
        status: u32,
    },
    /// Session settings (ignored: Kubernetes' peers send none that matter).
    Settings {
        /// `FLAG_SETTINGS_CLEAR_SETTINGS`.
        flags: u8,
        /// (flags, id, value).
        entries: Vec<(u8, u32, u32)>,
    },
    /// Liveness probe; echoed by the receiver when the id has the sender's parity.
    Ping {
        /// Odd from clients, even from servers.
        id: u32,
    },
    /// The sender will start no more streams; streams above `last_good_stream_id` were ignored.
    GoAway {
        /// The last stream the sender processed.
        last_good_stream_id: u32,
        /// One of [`goaway`].
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// `FLAG_FIN`.
        flags: u8,
        /// The headers.
        headers: Headers,
    },
    /// Flow-control credit (SPDY/3.1). Go's spdystream neither sends nor honours it.
    WindowUpdate {
        /// The stream (0: the session).
        stream_id: u32,
        /// Bytes of credit.
        delta: u32,
    },
}

/// A protocol failure; the session ends with `GOAWAY PROTOCOL_ERROR`.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// The peer sent something SPDY/3 does not allow.
    #[error("SPDY protocol error from the client: {0}")]
    Protocol(String),
    /// The peer's header compression stream is broken.
    #[error("SPDY header compression: {0}")]
    Zlib(#[from] ZlibError),
    /// The connection failed.
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes frames of one connection (each direction keeps its zlib stream).
#[derive(Debug)]
pub struct SpdyCodec {
    compressor: HeaderCompressor,
    decompressor: HeaderDecompressor,
}

impl Default for SpdyCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl SpdyCodec {
    /// A codec for a new connection.
    pub fn new() -> Self {
        Self {
            compressor: HeaderCompressor::new(),
            decompressor: HeaderDecompressor::new(MAX_HEADER_BLOCK),
        }
    }

    fn header_block(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut wire = Vec::new();
        self.compressor.compress(&headers.encode(), &mut wire)?;
        Ok(wire)
    }
}

fn control_header(dst: &mut BytesMut, kind: u16, flags: u8, len: usize) -> Result<(), SpdyError> {
    if len > MAX_FRAME_PAYLOAD {
        return Err(SpdyError::Protocol(format!(
            "frame payload of {len} bytes is too large"
        )));
    }
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    dst.put_u32((u32::from(flags) << 24) | len as u32);
    Ok(())
}

impl tokio_util::codec::Encoder<Frame> for SpdyCodec {
    type Error = SpdyError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), SpdyError> {
        match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if data.len() > MAX_FRAME_PAYLOAD {
                    return Err(SpdyError::Protocol("data frame too large".into()));
                }
                dst.reserve(8 + data.len());
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32((u32::from(u8::from(fin)) << 24) | data.len() as u32);
                dst.put_slice(&data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let block = self.header_block(&headers)?;
                control_header(dst, 1, flags, 10 + block.len())?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(associated_to & 0x7fff_ffff);
                dst.put_u8((priority & 7) << 5);
                dst.put_u8(0);
                dst.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.header_block(&headers)?;
                control_header(dst, 2, flags, 4 + block.len())?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_slice(&block);
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.header_block(&headers)?;
                control_header(dst, 8, flags, 4 + block.len())?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(dst, 3, 0, 8)?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(status);
            }
            Frame::Settings { flags, entries } => {
                control_header(dst, 4, flags, 4 + 8 * entries.len())?;
                dst.put_u32(entries.len() as u32);
                for (flag, id, value) in entries {
                    dst.put_u32((u32::from(flag) << 24) | (id & 0x00ff_ffff));
                    dst.put_u32(value);
                }
            }
            Frame::Ping { id } => {
                control_header(dst, 6, 0, 4)?;
                dst.put_u32(id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(dst, 7, 0, 8)?;
                dst.put_u32(last_good_stream_id & 0x7fff_ffff);
                dst.put_u32(status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(dst, 9, 0, 8)?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(delta & 0x7fff_ffff);
            }
        }
        Ok(())
    }
}

impl tokio_util::codec::Decoder for SpdyCodec {
    type Item = Frame;
    type Error = SpdyError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        loop {
            if src.len() < 8 {
                return Ok(None);
            }
            let word = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
            let flags = src[4];
            let len = u32::from_be_bytes([0, src[5], src[6], src[7]]) as usize;
            let control = word & 0x8000_0000 != 0;
            // Checked from the 8-byte header alone, so a bad frame fails at once instead of
            // making us wait for (and buffer) a payload of up to 16 MiB.
            if control {
                let version = ((word >> 16) & 0x7fff) as u16;
                if version != VERSION {
                    return Err(SpdyError::Protocol(format!(
                        "control frame of SPDY version {version}, expected {VERSION}"
                    )));
                }
                if len > MAX_CONTROL_PAYLOAD {
                    return Err(SpdyError::Protocol(format!(
                        "control frame of {len} bytes (at most {MAX_CONTROL_PAYLOAD})"
                    )));
                }
            } else if word & 0x7fff_ffff == 0 {
                return Err(SpdyError::Protocol("data frame on stream 0".into()));
            }
            if src.len() < 8 + len {
                // Not reserved ahead: a peer announcing 16 MiB must send it before we hold it.
                return Ok(None);
            }
            src.advance(8);
            let payload = src.split_to(len).freeze();
            if !control {
                return Ok(Some(Frame::Data {
                    stream_id: word & 0x7fff_ffff,
                    fin: flags & FLAG_FIN != 0,
                    data: payload,
                }));
            }
            let kind = (word & 0xffff) as u16;
            if let Some(frame) = self.control(kind, flags, payload)? {
                return Ok(Some(frame));
            }
            // An unknown control frame type: skipped (SPDY/3 §2.2.1), read on.
        }
    }
}

impl SpdyCodec {
    fn control(&mut self, kind: u16, flags: u8, mut p: Bytes) -> Result<Option<Frame>, SpdyError> {
        let short = |name: &str| SpdyError::Protocol(format!("{name} frame too short"));
        let exact = |name: &str, p: &Bytes, n: usize| {
            if p.len() == n {
                Ok(())
            } else {
                Err(SpdyError::Protocol(format!(
                    "{name} frame of {} bytes, expected {n}",
                    p.len()
                )))
            }
        };
        let nonzero = |name: &str, id: u32| {
            if id == 0 {
                Err(SpdyError::Protocol(format!("{name} on stream 0")))
            } else {
                Ok(id)
            }
        };
        let frame = match kind {
            1 => {
                if p.len() < 10 {
                    return Err(short("SYN_STREAM"));
                }
                let stream_id = nonzero("SYN_STREAM", p.get_u32() & 0x7fff_ffff)?;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let _slot = p.get_u8();
                let headers = Headers::decode(&self.decompressor.decompress(&p)?)?;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    flags,
                    headers,
                }
            }
            2 | 8 => {
                let name = if kind == 2 { "SYN_REPLY" } else { "HEADERS" };
                if p.len() < 4 {
                    return Err(short(name));
                }
                let stream_id = nonzero(name, p.get_u32() & 0x7fff_ffff)?;
                let headers = Headers::decode(&self.decompressor.decompress(&p)?)?;
                if kind == 2 {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            3 => {
                exact("RST_STREAM", &p, 8)?;
                let stream_id = nonzero("RST_STREAM", p.get_u32() & 0x7fff_ffff)?;
                let status = p.get_u32();
                if status == 0 {
                    return Err(SpdyError::Protocol("RST_STREAM with status 0".into()));
                }
                Frame::RstStream { stream_id, status }
            }
            4 => {
                if p.len() < 4 {
                    return Err(short("SETTINGS"));
                }
                let count = p.get_u32() as usize;
                if p.len() != count.saturating_mul(8) {
                    return Err(SpdyError::Protocol(
                        "SETTINGS count does not match its length".into(),
                    ));
                }
                let entries = (0..count)
                    .map(|_| {
                        let word = p.get_u32();
                        ((word >> 24) as u8, word & 0x00ff_ffff, p.get_u32())
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            6 => {
                exact("PING", &p, 4)?;
                Frame::Ping { id: p.get_u32() }
            }
            7 => {
                exact("GOAWAY", &p, 8)?;
                Frame::GoAway {
                    last_good_stream_id: p.get_u32() & 0x7fff_ffff,
                    status: p.get_u32(),
                }
            }
            9 => {
                exact("WINDOW_UPDATE", &p, 8)?;
                Frame::WindowUpdate {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio_util::codec::{Decoder, Encoder};

    fn round_trip(frames: Vec<Frame>) -> Vec<Frame> {
        let mut tx = SpdyCodec::new();
        let mut rx = SpdyCodec::new();
        let mut wire = BytesMut::new();
        for frame in frames {
            tx.encode(frame, &mut wire).expect("encode");
        }
        let mut out = Vec::new();
        while let Some(frame) = rx.decode(&mut wire).expect("decode") {
            out.push(frame);
        }
        assert!(wire.is_empty());
        out
    }

    #[test]
    fn kubernetes_stream_frames_round_trip() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: Headers::new()
                    .with("streamType", "error")
                    .with("port", "8080")
                    .with("requestID", "0"),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: Headers::new(),
            },
            Frame::Data {
                stream_id: 1,
                fin: false,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::new(),
            },
            Frame::Ping { id: 1 },
            Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, 7, 65536)],
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 1 << 20,
            },
            Frame::Headers {
                stream_id: 5,
                flags: FLAG_FIN,
                headers: Headers::new().with("a", "1").with("a", "2"),
            },
            Frame::GoAway {
                last_good_stream_id: 7,
                status: goaway::OK,
            },
        ];
        let decoded = round_trip(frames.clone());
        // Header names are lower-cased on the wire.
        let mut expected = frames;
        if let Frame::SynStream { headers, .. } = &mut expected[0] {
            *headers = Headers::new()
                .with("streamtype", "error")
                .with("port", "8080")
                .with("requestid", "0");
        }
        assert_eq!(decoded, expected);
        if let Frame::SynStream { headers, .. } = &decoded[0] {
            assert_eq!(headers.get("streamType"), Some("error"));
        }
    }

    #[test]
    fn partial_input_waits_for_more() {
        let mut tx = SpdyCodec::new();
        let mut wire = BytesMut::new();
        tx.encode(Frame::Ping { id: 9 }, &mut wire).expect("encode");
        let full = wire.clone();
        let mut rx = SpdyCodec::new();
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(rx.decode(&mut part).expect("partial"), None);
        }
    }

    #[test]
    fn unknown_control_frames_are_skipped() {
        let mut wire = BytesMut::new();
        wire.put_u16(0x8003);
        wire.put_u16(0x00ff);
        wire.put_u32(3);
        wire.put_slice(b"abc");
        SpdyCodec::new()
            .encode(Frame::Ping { id: 2 }, &mut wire)
            .expect("encode");
        let mut rx = SpdyCodec::new();
        assert_eq!(
            rx.decode(&mut wire).expect("decode"),
            Some(Frame::Ping { id: 2 })
        );
    }

    #[test]
    fn bad_frames_are_errors() {
        let cases: Vec<Vec<u8>> = vec![
            // data on stream 0
            vec![0, 0, 0, 0, 0, 0, 0, 1, b'x'],
            // SPDY/2 control frame
            vec![0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1],
            // PING with 3 bytes
            vec![0x80, 3, 0, 6, 0, 0, 0, 3, 0, 0, 1],
            // RST_STREAM status 0
            vec![0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0],
            // SYN_STREAM with a header block that is not zlib
            vec![
                0x80, 3, 0, 1, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xde, 0xad,
            ],
        ];
        for case in cases {
            let mut buf = BytesMut::from(&case[..]);
            assert!(SpdyCodec::new().decode(&mut buf).is_err(), "{case:?}");
        }
    }

    fn arb_headers() -> impl Strategy<Value = Headers> {
        proptest::collection::vec(
            (
                "[a-z][a-z0-9-]{0,12}",
                proptest::collection::vec("[ -~]{0,20}", 1..3),
            ),
            0..6,
        )
        .prop_map(|pairs| {
            let mut h = Headers::new();
            for (name, values) in pairs {
                if h.get(&name).is_none() {
                    for v in values {
                        h.add(&name, &v.replace('\0', ""));
                    }
                }
            }
            h
        })
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (
                1u32..0x7fff_ffff,
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(stream_id, fin, data)| Frame::Data {
                    stream_id,
                    fin,
                    data: data.into()
                }),
            (
                1u32..0x7fff_ffff,
                0u32..0x7fff_ffff,
                0u8..8,
                0u8..4,
                arb_headers()
            )
                .prop_map(|(stream_id, associated_to, priority, flags, headers)| {
                    Frame::SynStream {
                        stream_id,
                        associated_to,
                        priority,
                        flags,
                        headers,
                    }
                }),
            (1u32..0x7fff_ffff, 0u8..2, arb_headers()).prop_map(|(stream_id, flags, headers)| {
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers,
                }
            }),
            (1u32..0x7fff_ffff, 1u32..12)
                .prop_map(|(stream_id, status)| Frame::RstStream { stream_id, status }),
            any::<u32>().prop_map(|id| Frame::Ping { id }),
            (0u32..0x7fff_ffff, 0u32..3).prop_map(|(last_good_stream_id, status)| Frame::GoAway {
                last_good_stream_id,
                status
            }),
            (0u32..0x7fff_ffff, 0u32..0x7fff_ffff)
                .prop_map(|(stream_id, delta)| Frame::WindowUpdate { stream_id, delta }),
        ]
    }

    proptest! {
        #[test]
        fn any_frame_sequence_round_trips(frames in proptest::collection::vec(arb_frame(), 0..20)) {
            prop_assert_eq!(round_trip(frames.clone()), frames);
        }

        #[test]
        fn split_delivery_decodes_the_same(
            frames in proptest::collection::vec(arb_frame(), 1..8),
            chunk in 1usize..64,
        ) {
            let mut tx = SpdyCodec::new();
            let mut wire = BytesMut::new();
            for frame in frames.clone() {
                tx.encode(frame, &mut wire).expect("encode");
            }
            let mut rx = SpdyCodec::new();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(frame) = rx.decode(&mut buf).expect("decode") {
                    out.push(frame);
                }
            }
            prop_assert_eq!(out, frames);
        }

        /// Garbage never panics: every input either decodes, waits for more, or is an error.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut rx = SpdyCodec::new();
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = rx.decode(&mut buf) {}
        }

        /// Garbage that looks like control frames (valid version) reaches the deeper parsers.
        #[test]
        fn control_frame_garbage_never_panics(
            kind in 0u16..12, flags in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut buf = BytesMut::new();
            buf.put_u16(0x8003);
            buf.put_u16(kind);
            buf.put_u32((u32::from(flags) << 24) | payload.len() as u32);
            buf.put_slice(&payload);
            let _ = SpdyCodec::new().decode(&mut buf);
        }
    }
}
