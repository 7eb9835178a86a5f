//! # proxylab-auth-proxy — proxy type 1, `kubectl proxy`
//!
//! The Kubernetes docs' first kind of proxy: it runs on the user's machine, listens for plain HTTP on
//! localhost, finds the apiserver from the kubeconfig and adds the user's credentials, so that any
//! local HTTP client — `curl`, a browser, a script — can talk to the cluster. `auth-proxy` is a
//! drop-in replacement for `kubectl proxy`: the same flags with the same defaults, the same filter
//! decisions, the same `Starting to serve on ADDR` line.
//!
//! Where it differs, it is on purpose (each is explained in `docs/auth-proxy.md`):
//! - the filter checks the path the apiserver will act on (decoded, dot-segments and `//` removed),
//!   and accepts `[::1]:8001` as a localhost Host;
//! - a client's own `Authorization` and `Impersonate-*` headers are replaced by the kubeconfig's,
//!   unless `--pass-client-credentials` restores kubectl's pass-through;
//! - responses stream chunk by chunk (no 200 ms flush interval); upgrades honour `proxy-url`;
//! - an unreachable apiserver is a 502 that says so; TLS on the listener, `Via`, an access log,
//!   hop records and Prometheus metrics, graceful shutdown.
//!
//! Layout: [`args`] (the flags: kubectl proxy's and kubectl's global options, read with Go's syntax by
//! [`goflag`]) → [`config`] (validated configuration, kubeconfig through
//! `proxylab-kube`) → [`server`] (`AuthProxy::bind`, `Bound::serve`, the request handler). The
//! forwarding itself — hop-by-hop headers, `X-Forwarded-*`, upgrades and their failure rules — is
//! `proxylab_core::http`, shared with the bastion; the filter is `proxylab_core::route`.

#![forbid(unsafe_code)]

pub mod args;
pub mod config;
pub mod goflag;
pub mod logging;
pub mod server;

pub use args::AuthProxyArgs;
pub use config::{AuthProxyConfig, ConfigError, Listen};
pub use server::{AuthProxy, Bound, ListenAddr, ServeError};
