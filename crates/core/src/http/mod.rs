//! The one reverse-proxy forwarding path.
//!
//! Every HTTP proxy in proxylab — the auth-proxy (`kubectl proxy`) and the bastion (the apiserver's
//! node/pod/service proxy) — forwards a request the same way, so it is written once, here:
//!
//! ```text
//!  downstream request ──► [headers] strip hop-by-hop, append X-Forwarded-For, set X-Forwarded-Host/
//!                         Proto when absent, append Via
//!                    ──► ordinary?  Transport::send          (pooled; HTTP/2 when the backend offers it)
//!                        upgrade?   Transport::send_upgrade  (a fresh HTTP/1.1 connection, never pooled)
//!  upstream response ──► ordinary: strip hop-by-hop, append Via, stream the body through unbuffered
//!                        101:      answer 101, then splice the two upgraded connections
//!                        ≥ 400:    relay the response and close the downstream connection
//!                        other:    502 "invalid upgrade response: status code N", close
//! ```
//!
//! What each rule is for:
//! - **Hop-by-hop headers** (`Connection` and every header it names, `Keep-Alive`, `TE`,
//!   `Transfer-Encoding`, `Upgrade`, `Proxy-*`) describe one connection and must not leak to the
//!   next (RFC 9110 §7.6.1).
//! - **Upgrades** (exec, attach, port-forward over SPDY or WebSocket) need HTTP/1.1: HTTP/2 cannot
//!   carry a 101. The upgrade connection is dedicated, so after a failed upgrade nothing can reuse it.
//! - **After a failed upgrade both sides close.** CVE-2018-1002105: kube-apiserver relayed a backend's
//!   error to an upgrade request but kept both connections open, so the client's next bytes reached
//!   the backend over the proxy's authenticated connection. Here the upstream connection is dropped
//!   with its response and the downstream response carries `Connection: close`.
//! - **Only 101 tunnels.** CVE-2020-8559: a backend answering an upgrade with a 3xx had the client
//!   follow it with the proxy's credentials. Any non-101 status below 400 becomes an error, and
//!   redirects are never followed anywhere ([`Transport`] implementations must not follow them;
//!   hyper's client never does).
//! - **Streaming.** Bodies are passed as they arrive, chunk by chunk, so the first event of a watch
//!   reaches the client when the apiserver sends it (kubectl proxy flushes every 200 ms instead).
//! - **Errors** are typed ([`ProxyError`]) and say whose fault they were: upstream (502/504),
//!   downstream (400) or internal (500). Each proxy turns them into its own response body in one
//!   place; [`ProxyError::status`] and [`ProxyError::closes_connection`] tell it how. A TLS failure a
//!   user must fix in the trust settings (certificate not trusted, not for the name dialled, our
//!   client certificate refused, no TLS on the port) is [`ProxyError::UpstreamTls`], never "cannot
//!   connect".
//! - **Accounting.** A proxied request is over when its response body ends or its tunnel closes,
//!   not when the handler returns: [`Meter`], [`meter_request`] and [`PendingHop`] count the bytes
//!   and finish the hop record then, recording a stream the upstream cut as `upstream-cut` (see
//!   `meter.rs`). Every HTTP proxy records hops this way.

mod client;
mod dialed;
mod error;
mod forward;
pub mod headers;
mod meter;

pub use client::HyperTransport;
pub use dialed::Dialed;
pub use error::{ProxyError, Side, error_chain};
pub use forward::{Forward, Transport, forward, is_upgrade_request};
pub use meter::{Meter, PendingHop, TunnelEnd, meter_request};
