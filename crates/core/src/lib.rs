//! # proxylab-core — the shared TLS and routing core
//!
//! Every proxy in proxylab — the auth-proxy (`kubectl proxy`), the bastion (the apiserver proxy), the
//! forwarder (kube-proxy), the HA balancer and the cloud load balancer — is built from the same few
//! pieces, and they live here so that each is written once:
//!
//! - [`tls`]: PEM loading, rustls server and client configurations, the identity a client certificate
//!   carries (CN → user, O → groups, as kube-apiserver reads it), and the lab's PKI generated with rcgen.
//! - [`serve`]: the one accept loop of every HTTP listener (TCP, TLS, unix socket): a TLS handshake
//!   per connection in its own task, HTTP/1.1 and HTTP/2 with upgrades, the connection's facts
//!   ([`serve::ConnInfo`]) handed to every request, and the same limits everywhere (head deadline,
//!   size and field caps, idle timeout that spares live streams, connection limits).
//! - [`telemetry`]: tracing setup (with an off-thread log writer for proxies), hop records (one per
//!   connection or request, so a path through several proxies can be stitched together), the
//!   access log, Prometheus metrics and the admin endpoint.
//! - [`authn`]: the `--token-auth-file` format and bearer tokens, as kube-apiserver reads them.
//! - [`runtime`]: shutdown on SIGINT/SIGTERM, socket options, the open-file limit, thread-per-core
//!   serving threads.
//! - [`duration`]: Go's `time.Duration` syntax (`15m0s`, `1h2m3.5s`, `500ms`), parsed and printed as Go
//!   does, for every duration flag (the programs proxylab replaces are Go programs).
//! - [`reload`]: following a configuration file (changes on disk, SIGHUP).
//! - [`cli`]: one-line flag errors (exit 2) and the runtime every binary starts (exit 1 if it cannot).
//! - [`health`]: `BINARY health URL`, the healthcheck of every binary (container images hold no curl).
//!
//! The routing half (`cluster`, `balance`, `l4`, `route`, `http`) models what Kubernetes routes on:
//! services, endpoints and their conditions, and how kube-proxy and the apiserver proxy pick and reach them.
//! [`http`] also meters each proxied request and finishes its hop record when the response is really
//! over, so every HTTP proxy records hops the same way.
//!
//! This crate knows nothing of kube-rs: whatever feeds the cluster model (a YAML file, the lab, a real
//! cluster through `proxylab-kube`) hands it plain Kubernetes JSON.

pub mod authn;
pub mod balance;
pub mod cli;
pub mod cluster;
pub mod duration;
pub mod health;
pub mod http;
pub mod l4;
pub mod reload;
pub mod route;
pub mod runtime;
pub mod serve;
pub mod telemetry;
pub mod tls;
pub mod yaml;
