//! Routing decisions that Kubernetes proxies make before a byte goes upstream.
//!
//! Two proxy types decide *whether* and *where* to send a request by looking only at its URL and
//! headers, and both decisions are easy to get subtly wrong, so they live here as pure functions:
//!
//! - [`filter`] — `kubectl proxy`'s request filter (`--accept-paths`, `--reject-paths`,
//!   `--reject-methods`, `--accept-hosts`): comma-separated regex lists, checked in kubectl's order.
//!   proxylab takes the same decisions as kubectl except where kubectl has holes: the path is
//!   checked in the form the apiserver will actually act on ([`path`]), and `[::1]:8001` is a
//!   localhost Host (kubernetes#77496).
//! - [`path`] — percent-decoding and dot-segment/slash cleaning of a request path, so that a
//!   filter and the backend agree on what path a request names.
//! - [`id`] — the `[scheme:]name[:port]` id of the apiserver proxy subresources
//!   (`/api/v1/namespaces/ns/services/https:web:8443/proxy/`).
//!
//! Nothing here does I/O; everything is table- and property-tested.

pub mod filter;
pub mod id;
pub mod path;

pub use filter::{Decision, Filter, FilterError, RegexList};
pub use id::{ProxyId, ProxyIdError, Scheme};
pub use path::{CanonicalPath, PathError, canonicalize};
