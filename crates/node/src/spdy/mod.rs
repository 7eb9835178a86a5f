//! SPDY/3.1 as Kubernetes speaks it: the multiplexing under `kubectl exec`, `attach` and
//! `port-forward` when they upgrade with `Upgrade: SPDY/3.1`.
//!
//! Kubernetes' clients use moby/spdystream: SPDY/3 framing (the `3.1` of the upgrade header adds
//! only session flow control, which spdystream does not implement), zlib-compressed header blocks
//! with the SPDY/3 dictionary, streams opened by the client only. This is a small server-side
//! implementation of exactly that, written here because no maintained Rust crate speaks SPDY:
//! - [`zlib`]: header compression with the dictionary, one stream per direction;
//! - [`frame`]: the frames, a `tokio_util` codec, property and garbage tests;
//! - [`session`]: the session — stream table, `SYN_REPLY`s, `PING` echo, `GOAWAY`, half-close.

pub mod frame;
pub mod session;
pub mod zlib;

pub use frame::{Frame, Headers, SpdyCodec, SpdyError};
pub use session::{Session, SessionHandle, SpdyStream, start};
