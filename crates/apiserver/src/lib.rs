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
//! | generic REST storage per resource | `rest` — one generic implementation over the registry of `proxylab-apimachinery` |
//! | watch cache, bookmarks, 410 Gone | `rest::watch` — store channels, periodic bookmarks, `ERROR` event with a 410 Status |
//! | discovery (aggregated and legacy), OpenAPI v2/v3 | documents from `proxylab-apimachinery`, negotiated by `Accept` |
//! | authentication union: requestheader, x509, token file, service-account JWT | [`auth`] |
//! | impersonation (`Impersonate-*`, `kubectl --as`) | [`impersonation`]: allowed to `system:masters` only |
//! | authorization (RBAC) | **none**: every authenticated user may do everything |
//! | service IP / node port allocators (bitmaps in etcd) | [`allocator`]: `RangeAllocation` objects in the store |
//! | bootstrap controller (system namespaces, `default/kubernetes`) | done once at [`ApiServer::bind`] |
//! | finalizers, graceful pod deletion | `rest::delete`: the object is marked (`deletionTimestamp`) and removed when its last finalizer is (pods: when the node deletes it with grace 0) |
//! | protobuf | request bodies of the kinds typed clients send (`kubectl create …`) are decoded (`protobuf`); answers are always JSON (or YAML) |
//! | the apiserver proxy: `nodes/proxy`, `pods/proxy`, `services/proxy`, `pods/log\|exec\|attach\|portforward` | [`bastion`]: `proxylab-bastion`'s router, mounted after authentication, fed from the store |
//! | admission webhooks, managedFields, CRDs, strict field validation | not modelled |
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
//! Modules import "downwards" only (no module imports one that imports it back):
//!
//! ```text
//! server ─▶ authn, routes, bootstrap           bind/serve; the pipeline; the bootstrap objects
//! routes ─▶ discovery, rest                    non-resource paths, then resources
//! rest ─▶ rest::{read, watch, write, delete, subresources}   one module per verb family
//! all of them ─▶ request, errors, response, state            parsing, Status builders, encoding, shared state
//! ```
//! - [`config`]: `ApiServerArgs` (kube-apiserver's flags, for clap) → [`ApiServerConfig`].
//! - `server`: [`ApiServer::bind`] / [`BoundApiServer::serve`]; `authn`: the authentication middleware
//!   and request log; `routes`: health, `/version`, `/metrics`, discovery, OpenAPI, then `rest`;
//!   `bootstrap`: system namespaces and the `default/kubernetes` Service and endpoints.
//! - `request`: `RequestInfo` (kube's parse of a request path), `Target`, query parameters, selectors,
//!   bodies, DeleteOptions. `errors`: the Status answers of routing and storage. `response`: encoding
//!   and content negotiation. `state`: what every handler shares.
//! - `rest`: the verbs; `discovery`: discovery, version, health and OpenAPI documents; `protobuf`:
//!   decoding the protobuf bodies typed clients send.
//! - [`auth`]: authenticators and [`UserInfo`]; [`serviceaccount`]: ES256 service-account JWTs.
//! - [`allocator`]: Service ClusterIP/NodePort admission. `metrics`: request and watch counters.
#![forbid(unsafe_code)]
// `Status` (the Kubernetes error object, ~160 bytes) is the error currency of every handler; errors are
// the rare path, and boxing it everywhere would only add noise.
#![allow(clippy::result_large_err)]

pub mod allocator;
pub mod auth;
mod authn;
pub mod bastion;
mod bootstrap;
pub mod config;
mod discovery;
mod errors;
pub mod impersonation;
mod metrics;
mod protobuf;
mod request;
mod response;
mod rest;
mod routes;
mod server;
pub mod serviceaccount;
mod state;
pub mod switch;

pub use auth::{AuthMethod, UserInfo};
pub use config::{ApiServerArgs, ApiServerConfig, ConfigError, ServingCert};
pub use discovery::GIT_VERSION;
pub use server::{ApiServer, BoundApiServer, ServerError};
pub use switch::{ListenerSwitch, SwitchError};
