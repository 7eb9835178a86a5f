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
//! - [`intstr`] — `IntOrString` values (`maxSurge: 25%`) and how Kubernetes rounds them.
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
//! - [`upstream`] — what kube-apiserver 1.33 serves (groups, resources, subresources, non-resource
//!   paths), so the apiserver can tell "nobody serves this" (404) from "the lab leaves this out" (501).
//! - [`serviceaccount`] — signing and verifying service-account JWTs (ES256 with `ring`), shared by the
//!   token controller (signs) and the apiserver's authenticator (verifies). Pure too: keys come in as bytes.
//!
//! ## What this crate simplifies on purpose
//! - **Untyped objects.** No generated structs; objects are JSON. Validation checks the fields the lab
//!   relies on, not the whole schema, and unknown fields are kept, not pruned.
//! - **Strategic merge patch metadata is a hand-written table** of the list merge keys for the kinds the
//!   lab serves (containers by `name`, ports by `containerPort`, service ports by `port`, …), instead of
//!   being read from Go struct tags. Lists not in the table are replaced, like Kubernetes' atomic lists.
//!   `$setElementOrder/…` is honoured for the elements it names and never an error.
//! - **Server-side apply is approximated** as a strategic merge of the applied configuration; there are
//!   no `managedFields` and no field-ownership conflicts.
//! - **OpenAPI documents carry paths and operations, not full schemas.** That is what kubectl needs to
//!   see that the server validates fields itself (`fieldValidation`) and to find each kind's PATCH
//!   operation; `kubectl explain` therefore has little to show.
//! - **One version per group** (`v1`), so there is no conversion between versions.
//!
//! Everything is deterministic: the same input yields the same output (discovery and OpenAPI hashes are
//! computed from the documents themselves), which keeps tests and client caches stable. The exceptions are
//! explicit: `meta::now_rfc3339`, `serviceaccount::verify_token` (reads the clock; `verify_token_at` does
//! not) and ECDSA signatures (randomised by design).
//!
//! ## Checked against real kubectl
//! `cargo run -p proxylab-apimachinery --example dump_documents -- DIR` writes every document as JSON.
//! Served by a throwaway static server, kubectl 1.33 used aggregated discovery, printed every Table with
//! its usual columns, and `kubectl apply` went the server-side validation way (`fieldValidation=Strict`)
//! without `--validate=false`; the strategic merge patches it then sent are unit tests in [`patch`].
//!
//! ## Example
//! ```
//! use proxylab_apimachinery::{lookup, patch, selector::LabelSelector, status::Status, validation};
//! use serde_json::json;
//!
//! let pods = lookup("", "v1", "pods").expect("pods are served");
//! let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
//!     "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
//!     "spec": {"containers": [{"name": "app", "image": "proxylab/echo-http:1",
//!                              "ports": [{"containerPort": 8080}]}]}});
//! assert!(validation::validate(pods, &pod).is_empty());
//!
//! // What `kubectl apply` sends when a port is added: the ports list merges by containerPort.
//! let body = br#"{"spec":{"containers":[{"name":"app","ports":[{"containerPort":8443}]}]}}"#;
//! patch::apply_patch("application/strategic-merge-patch+json", &mut pod, body, pods).unwrap();
//! assert_eq!(pod["spec"]["containers"][0]["ports"].as_array().unwrap().len(), 2);
//!
//! assert!(LabelSelector::parse("app in (web,api)").unwrap().matches_object(&pod));
//! assert_eq!(Status::not_found(pods, "db").to_value()["message"], "pods \"db\" not found");
//! ```

#![forbid(unsafe_code)]

pub mod discovery;
pub mod intstr;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod registry;
pub mod selector;
pub mod serviceaccount;
pub mod status;
pub mod table;
pub mod upstream;
pub mod validation;

pub use patch::{PatchError, apply_patch};
pub use registry::{ResourceInfo, lookup, lookup_kind, resources};
pub use selector::{FieldSelector, LabelSelector, SelectorError};
pub use status::{Cause, Status};
