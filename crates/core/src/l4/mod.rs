//! # L4 relaying: what kube-proxy's userspace mode did with bytes
//!
//! A layer-4 proxy does not parse what it carries. For TCP it accepts a connection, dials an endpoint
//! and moves bytes both ways until both sides are done; for UDP, which has no connections, it invents
//! *sessions*: a client `ip:port` gets its own upstream socket, so replies find their way back, and the
//! session ends after an idle timeout.
//!
//! - [`dial`]: dialling with kube-proxy's retry schedule, from a chosen source address when the
//!   caller has one ([`dial::connect_from`]: in the lab each role dials from its own address, so hop
//!   records show the path).
//! - [`tcp`]: [`tcp::relay`], which keeps half-close (one side's FIN is passed on as a FIN; the other
//!   direction keeps flowing). On Linux the bytes move with `splice(2)` through a pipe and never
//!   enter user space ([`splice`]); elsewhere a copy loop with large buffers is used.
//! - [`udp`]: the session table: per client, its own connected upstream socket (bound to the
//!   configured source address, if any), an idle timeout, bounded size with least-recently-used
//!   eviction, and sessions dropped *at once* when their endpoint leaves the service — the fix for
//!   the stale-conntrack black hole users hit with kube-proxy.
//!
//! - [`proxy_protocol`]: HAProxy's PROXY protocol v1/v2, written by a relay so the next hop learns
//!   the client's address, and read by a server told to expect it.
//!
//! Nothing here knows about Services: callers pass in a pick function, so the cloud load balancer
//! reuses this module as the forwarder does.

pub mod dial;
pub mod proxy_protocol;
#[cfg(target_os = "linux")]
pub mod splice;
pub mod tcp;
pub mod udp;
