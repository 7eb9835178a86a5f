//! # proxylab-kube — the one crate that speaks kube-rs
//!
//! Everything in proxylab that needs a real Kubernetes client goes through here, so that kube-rs
//! (and its long compile) stays in one crate and the proxies depend only on small, plain types:
//!
//! - [`config`]: kubectl's kubeconfig loading rules (`--kubeconfig`, `KUBECONFIG` with several files
//!   merged first-wins, `~/.kube/config`, in-cluster), `--context`/`--cluster`/`--user`, and errors
//!   that name the file and the field (or the flag).
//! - [`overrides`]: kubectl's connection flags (`--server`, `--token`, `--as`,
//!   `--certificate-authority`, …) laid over the kubeconfig, flag winning, and kubectl's checks of
//!   the result.
//! - [`upstream`]: the client stack a proxy uses to reach that apiserver — credentials (tokens, token
//!   files, exec plugins, basic auth, impersonation) from kube-rs's `ConfigExt`, rustls with the
//!   kubeconfig's CA, client certificate and `tls-server-name`, a pooled HTTP/2-capable client for
//!   ordinary requests and an HTTP/1.1 connection per upgrade, both honouring `proxy-url`.
//! - [`dialer`]: TCP connections, direct or through an HTTP CONNECT / SOCKS5 proxy: the kubeconfig's
//!   `proxy-url`, else `HTTPS_PROXY`/`HTTP_PROXY` minus `NO_PROXY` and loopback, as client-go.
//! - [`rest`]: raw JSON requests on kube-rs's client, for a program's own calls (the lab creating its
//!   objects).
//! - `watch`: watches of Services, EndpointSlices, Nodes and Pods feeding a `core::cluster` view; a
//!   node agent's Pod watch; Services as plain JSON for the cloud load balancer's controller.

#![forbid(unsafe_code)]

pub mod config;
pub mod dialer;
pub mod overrides;
pub mod rest;
pub mod upstream;
pub mod watch;

pub use config::{
    ClusterConfig, ConfigSource, KubeconfigError, KubeconfigOptions, load, load_with_env,
};
pub use dialer::{ProxyChoice, ProxyEnv, ProxySource};
pub use overrides::ConfigOverrides;
pub use rest::{RestClient, RestError};
pub use upstream::{Credentials, Upstream, UpstreamOptions};
