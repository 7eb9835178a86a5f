//! # proxylab-controllers — kube-controller-manager and kube-scheduler for the lab
//!
//! In Kubernetes the apiserver only stores objects; everything that *happens* to them is done
//! by controllers: separate programs that watch the API, compare what exists with what
//! should exist, and write the difference back through the same API. A Service becomes
//! reachable because the EndpointSlice controller writes its Pods' addresses into slices; a Pod
//! starts because the scheduler writes a Node name into it and the kubelet on that Node is
//! watching; a token Secret gets its token because the token controller fills it in. None of
//! them talk to each other — they meet only in the stored objects.
//!
//! This crate is the lab's version of those programs. They run inside the lab process against
//! the shared [`proxylab_store::Store`] (the lab's etcd), below the REST layer, so they see
//! exactly what every apiserver front-end serves.
//!
//! ## The controllers
//!
//! | module | models | does |
//! |---|---|---|
//! | [`namespaces`] | kube-apiserver's system-namespaces controller + kube-controller-manager's `serviceaccount` controller | `default`, `kube-system`, `kube-public`, `kube-node-lease` exist; every namespace has a ServiceAccount `default` (recreated when deleted) |
//! | [`tokens`] | `serviceaccount-token` controller | fills `kubernetes.io/service-account-token` Secrets with a signed JWT, `ca.crt`, `namespace` and the SA uid annotation; deletes them when their ServiceAccount is gone |
//! | [`endpointslices`] | `endpointslice` + `endpoints` controllers | publishes the Pods selected by each Service as EndpointSlices (ready/serving/terminating, node, zone, per-Pod resolved ports) and as a legacy Endpoints object |
//! | [`scheduler`] | kube-scheduler | binds Pods without a Node to a Ready, matching, least-loaded Node; records `Scheduled` / `FailedScheduling` Events and the `PodScheduled` condition |
//! | [`replicaset`] | `replicaset` controller | keeps `spec.replicas` Pods of a ReplicaSet's template: creates `<rs>-<5 chars>` Pods with a controller reference, adopts matching orphans, deletes the Pods it misses least (gracefully), writes `status` counts |
//! | [`deployment`] | `deployment` controller | one ReplicaSet per pod template (`<deploy>-<pod-template-hash>`, revision annotations), RollingUpdate within maxSurge/maxUnavailable and Pod readiness, Recreate, `revisionHistoryLimit`, the `Available`/`Progressing` conditions `kubectl rollout status` waits on |
//! | [`job`] | `job` + `ttl-after-finished` controllers | runs a Job's Pods to completion: `parallelism` at a time up to `completions` (NonIndexed or Indexed with `JOB_COMPLETION_INDEX`), back-off after failures, `backoffLimit` and `activeDeadlineSeconds` fail it, the `Complete`/`Failed` conditions `kubectl wait` reads, deletion `ttlSecondsAfterFinished` after it finished |
//! | [`garbagecollector`] | `garbagecollector` controller | deletes Deployments' ReplicaSets and ReplicaSets' and Jobs' Pods whose owners (by uid) are gone; carries out `propagationPolicy` Orphan and Foreground through the `orphan` / `foregroundDeletion` finalizers |
//! | [`nodelifecycle`] | `nodelifecycle` controller | a Node whose Lease has not been renewed for the grace period gets `Ready=Unknown` and the `unreachable` NoSchedule taint; its Pods are marked not ready, so they leave the Services' ready endpoints |
//!
//! Each module's doc says what the real controller does and what this one leaves out.
//!
//! ## How a controller is built here
//!
//! Every controller is split into a **pure reconcile function** and a shared **driver**:
//!
//! ```text
//!   store ──list+watch──▶ Informer cache (one per resource, shared)      [informer]
//!                              │ "something changed" (coalesced)
//!                              ▼
//!   reconcile(snapshots of the caches, now) ──▶ Vec<Action>              [namespaces, tokens, …]
//!                              │ pure: same input, same output; converged input → no actions
//!                              ▼
//!   apply: create / update (with the resourceVersion read) / delete      [manager]
//!          and put the store's answer back into the cache
//! ```
//!
//! This is the *level-triggered* design Kubernetes controllers follow: a controller never
//! acts on "what event happened" but on "what the world looks like now", so a missed or
//! duplicated event costs nothing; the next pass sees the same world and computes the same
//! answer. Idempotence ("emit no duplicate updates") is then a property of each pure
//! function — a reconcile over a converged snapshot returns no actions — and the unit tests
//! check exactly that.
//!
//! Where the real controllers keep a work queue keyed by object, these recompute everything
//! in one pass: the lab holds hundreds of objects, not hundreds of thousands, and whole-world
//! passes make the functions trivially testable and order-independent.
//!
//! Three details carry over from client-go because they matter for correctness:
//! - **Optimistic concurrency.** Updates carry the resourceVersion the controller read; if
//!   anyone wrote in between, the store answers Conflict and the controller simply waits for
//!   the watch event that will show it the newer object.
//! - **Write-through ("assume") cache.** After a successful write, the returned object goes
//!   straight into the informer cache. Without it the scheduler, reconciling again before its
//!   own binding comes back through the watch, would count the Node as emptier than it is.
//! - **No deleting on a cache miss.** Caches of different resources lag each other. A delete
//!   justified by the *absence* of another object (a Secret whose ServiceAccount is gone, a
//!   slice whose Service is gone) is confirmed with a live read first
//!   ([`Action::Delete::unless_present`]), as the real token controller does.
//!
//! ## Using it
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn proxylab_store::Store>, ca: String, key: String) {
//! use proxylab_controllers::{ControllerManager, ControllersConfig};
//! let config = ControllersConfig {
//!     ca_pem: ca,                      // → data.ca.crt of token Secrets
//!     sa_signing_key_pkcs8_pem: key,   // P-256 PKCS#8; the apiservers verify with its public half
//!     ..ControllersConfig::default()  // issuer "kubernetes/serviceaccount", grace 40 s, resync 30 s
//! };
//! let manager = ControllerManager::new(store, config).expect("a valid signing key");
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let task = tokio::spawn(manager.run(shutdown.clone()));
//! // … the lab runs …
//! shutdown.cancel();
//! task.await.ok();
//! # }
//! ```
//!
//! Objects the controllers create get `uid` and `creationTimestamp` themselves (the store sets
//! only `resourceVersion`), so `kubectl get endpointslices`, `kubectl describe secret` and
//! `kubectl get events` show them as they would in a real cluster.
#![forbid(unsafe_code)]

pub mod action;
pub mod deployment;
pub mod endpointslices;
pub mod events;
pub mod garbagecollector;
pub mod informer;
pub mod job;
pub mod jwt;
mod manager;
pub mod namespaces;
pub mod nodelifecycle;
pub mod ownership;
pub mod replicaset;
pub mod scheduler;
pub mod tokens;

pub use action::{Action, Target};
pub use manager::{ControllerError, ControllerManager, ControllersConfig, EnabledControllers};
