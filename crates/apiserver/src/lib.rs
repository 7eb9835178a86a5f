//! # proxylab-apiserver — the lab's kube-apiserver
//!
//! kube-apiserver is the only component of Kubernetes that talks to storage. Everything else — kubectl,
//! the scheduler, controllers, kubelets, kube-proxy — reads and writes cluster state through its REST
//! API, and learns about changes through *watches*. This crate is a compact model of it, faithful on the
//! wire where real clients look (kubectl 1.27–1.33, client-go/kube-rs informers, curl, the Python
//! client), simplified inside:
//!
//! | kube-apiserver | here |
//! |---|---|
//! | etcd, one revision counter, compaction | [`proxylab_store`]: `MemoryStore`, one resourceVersion counter, bounded history |
//! | generic REST storage per resource | [`rest`](crate) — one generic implementation over the registry of `proxylab-apimachinery` |
//! | watch cache, bookmarks, 410 Gone | [`watch`](crate) — store channels, periodic bookmarks, `ERROR` event with a 410 Status |
//! | discovery (aggregated and legacy), OpenAPI v2/v3 | documents from `proxylab-apimachinery`, negotiated by `Accept` |
//! | authentication union: requestheader, x509, token file, service-account JWT | [`auth`] |
//! | authorization (RBAC) | **none**: every authenticated user may do everything |
//! | service IP / node port allocators (bitmaps in etcd) | [`allocator`]: `RangeAllocation` objects in the store |
//! | bootstrap controller (system namespaces, `default/kubernetes`) | done once at [`ApiServer::bind`] |
//! | admission webhooks, managedFields, finalizers, protobuf, CRDs | not modelled |
//!
//! ## Use
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use proxylab_apiserver::{ApiServer, ApiServerConfig};
//! use proxylab_store::MemoryStore;
//!
//! let store = Arc::new(MemoryStore::new(10_000));
//! let cfg = ApiServerConfig::new(vec!["127.0.0.1:0".parse()?]);
//! let bound = ApiServer::bind(cfg, store).await?;
//! println!("listening on {:?}", bound.local_addrs());
//! bound.serve(tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(()) }
//! ```
//! Several front-ends over one store (the lab's three apiservers) are one `bind` with several listen
//! addresses, or several `bind`s sharing the `Arc<dyn Store>`.
//!
//! ## Layout
//! - [`config`]: `ApiServerArgs` (kube-apiserver's flags, for clap) → [`ApiServerConfig`].
//! - [`server`](crate::ApiServer): bind/serve, the router, the authentication middleware, bootstrap.
//! - `rest`, `watch`: resource URLs and verbs; `discovery`: discovery, version, health, OpenAPI.
//! - [`auth`]: authenticators and [`UserInfo`]; [`serviceaccount`]: ES256 service-account JWTs.
//! - [`allocator`]: Service ClusterIP/NodePort admission.
#![forbid(unsafe_code)]
// `Status` (the Kubernetes error object, ~160 bytes) is the error currency of every handler; errors are
// the rare path, and boxing it everywhere would only add noise.
#![allow(clippy::result_large_err)]

pub mod allocator;
pub mod auth;
pub mod config;
mod discovery;
mod metrics;
mod protobuf;
mod response;
mod rest;
mod server;
pub mod serviceaccount;
mod watch;

pub use auth::{AuthMethod, UserInfo};
pub use config::{ApiServerArgs, ApiServerConfig, ConfigError, ServingCert};
pub use discovery::GIT_VERSION;
pub use server::{ApiServer, BoundApiServer, ServerError};
