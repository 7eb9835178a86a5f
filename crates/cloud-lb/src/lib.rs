//! # proxylab-cloud-lb — proxy type 5: the cloud load balancer for `type: LoadBalancer`
//!
//! A cloud provider answers a Service of `type: LoadBalancer` by creating a load balancer with an
//! address of its own, writing that address into `status.loadBalancer.ingress` (so
//! `kubectl get svc` shows an EXTERNAL-IP instead of `<pending>`) and forwarding L4 traffic from it
//! to the nodes' NodePorts. The models: cloud-provider-kind (one Envoy per Service), MetalLB (address
//! pools, annotations, Events), k3s ServiceLB.
//!
//! This crate holds the controller half, written as every controller in the workspace is: a pure
//! function from what exists to what must be written, tested on its own.
//!
//! - [`pool`]: address pools (MetalLB's `IPAddressPool`: CIDRs or ranges, `autoAssign`,
//!   `avoidBuggyIPs`); the lab's default is `127.0.50.0/24`.
//! - [`service`]: a Service as the load balancer reads it — `spec.loadBalancerClass` (unset or
//!   [`service::DEFAULT_CLASS`]), `spec.loadBalancerIP`, MetalLB's `metallb.io/loadBalancerIPs`,
//!   `address-pool` and `allow-shared-ip` annotations, ports, traffic policy, source ranges.
//! - [`alloc`]: which address a Service may hold: requested addresses, named pools, sharing (same key,
//!   disjoint ports), first free address otherwise.
//! - [`reconcile`]: the pass over all Services: keep valid addresses, adopt addresses shown in
//!   statuses, allocate the rest; the finalizer `service.kubernetes.io/load-balancer-cleanup`,
//!   `status.loadBalancer.ingress` (ip, `ipMode: Proxy`, ports), Events with MetalLB's reasons
//!   (`IPAllocated`, `AllocationFailed`, `ClearAssignment`); release on deletion and on type or
//!   class change.
//! - [`state`]: the allocations in a state file, so the same Service gets the same address after a
//!   restart.
//!
//! Not here yet: the driver that watches the apiserver and applies the actions, the L4 data plane
//! and the `cloud-lb` binary (see docs/cloud-lb.md once they exist).

#![forbid(unsafe_code)]

pub mod alloc;
pub mod pool;
pub mod reconcile;
pub mod service;
pub mod state;

pub use alloc::{AllocError, Allocation, Allocations};
pub use pool::{Pool, PoolError, Pools};
pub use reconcile::{Action, EventSpec, Plan, reconcile};
pub use service::{DEFAULT_CLASS, FINALIZER, LbService};
