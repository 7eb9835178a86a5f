//! # proxylab-apimachinery — the pure core of the lab's Kubernetes API
//!
//! In Kubernetes, *apimachinery* (`k8s.io/apimachinery` and the generic parts of `k8s.io/apiserver`) is
//! the layer under every API object: object metadata, label and field selectors, the `Status` error type,
//! patch formats, discovery, OpenAPI publishing and the server-side `Table` printing that `kubectl get`
//! relies on. It knows nothing about what a Pod *does*; it knows how any object is named, filtered,
//! patched, validated and described.
//!
//! This crate is that layer for proxylab's Kubernetes-compatible apiserver, as pure functions over
//! objects held as [`serde_json::Value`]. It performs no I/O: the apiserver (HTTP, storage, watches) and
//! the controllers call into it. Modules:
//!
//! - [`registry`] — the static table of served resources (group, version, kind, plural, scope, verbs,
//!   short names, categories, subresources, field labels). Everything else is driven from it.
//! - [`meta`] — `metadata` getters/setters and `metav1.Time` formatting.
//! - [`selector`] — label selector (`app=web,tier in (a,b)`) and field selector (`spec.nodeName=n1`)
//!   parsing and matching.
//! - [`status`] — `v1 Status` errors with kube-apiserver's reasons, codes and message wording.
//! - [`patch`] — JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch (with the
//!   `$patch`, `$retainKeys`, `$deleteFromPrimitiveList/…` directives kubectl sends), and a dispatcher
//!   on the PATCH `Content-Type`.
//! - [`validation`] — name/label syntax and per-kind rules, returning `StatusCause`s for a 422.
//! - [`table`] — `meta.k8s.io/v1 Table` rows with the same columns kube-apiserver prints.
//! - [`discovery`] — `/api`, `/apis`, `APIResourceList`s, aggregated discovery v2 and `/version`.
//! - [`openapi`] — the OpenAPI v3 index and per-group-version documents kubectl needs for `apply`.
//! - [`serviceaccount`] — signing and verifying service-account JWTs (ES256 with `ring`), shared by the
//!   token controller (signs) and the apiserver's authenticator (verifies). Pure too: keys come in as bytes.
//!
//! ## What this crate simplifies on purpose
//! - **Untyped objects.** No generated structs; objects are JSON. Validation checks the fields the lab
//!   relies on, not the whole schema, and unknown fields are kept, not pruned.
//! - **Strategic merge patch metadata is a hand-written table** of the list merge keys for the kinds the
//!   lab serves (containers by `name`, ports by `containerPort`, service ports by `port`, …), instead of
//!   being read from Go struct tags. Ordering directives (`$setElementOrder/…`) are accepted and ignored.
//! - **Server-side apply is approximated** as a strategic merge of the applied configuration; there are
//!   no `managedFields` and no field-ownership conflicts.
//! - **OpenAPI documents carry paths and operations, not full schemas.** That is what kubectl needs to
//!   see that the server validates fields itself (`fieldValidation`) and to find each kind's PATCH
//!   operation; `kubectl explain` therefore has little to show.
//! - **One version per group** (`v1`), so there is no conversion between versions.
//!
//! Everything is deterministic: the same input yields the same output (discovery and OpenAPI hashes are
//! computed from the documents themselves), which keeps tests and client caches stable.

#![forbid(unsafe_code)]

pub mod discovery;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod registry;
pub mod selector;
pub mod serviceaccount;
pub mod status;
pub mod table;
pub mod validation;

pub use patch::{PatchError, apply_patch};
pub use registry::{ResourceInfo, lookup, lookup_kind, resources};
pub use selector::{FieldSelector, LabelSelector, SelectorError};
pub use status::{Cause, Status};
