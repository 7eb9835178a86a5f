//! # proxylab-node — a kubelet-like node agent and the echo pods it runs
//!
//! ## What a kubelet does
//! Every Kubernetes node runs a *kubelet*, the agent that turns "this pod is bound to this node" in
//! the API into running processes, and reports back. Its main jobs:
//!
//! 1. **Register the node.** It creates (or updates) its `Node` object: addresses (`InternalIP`,
//!    `Hostname`), the kubelet API port (`status.daemonEndpoints.kubeletEndpoint.port`), capacity,
//!    `nodeInfo` (versions, OS, architecture), labels, and its slice of the pod network
//!    (`spec.podCIDR`).
//! 2. **Prove it is alive.** It renews a `Lease` in `kube-node-lease` every few seconds and posts the
//!    node's `Ready` condition. When both stop, the node lifecycle controller marks the node
//!    `NotReady` and, later, evicts its pods.
//! 3. **Run pods.** It watches pods whose `spec.nodeName` is its name, asks the container runtime to
//!    create a sandbox (network namespace and IP, from the CNI plugin's IPAM) and start the
//!    containers, then patches `status`: phase, `podIP`/`podIPs`, `hostIP`, conditions and one
//!    `containerStatus` per container.
//! 4. **Finish graceful deletion.** A `DELETE` of a running pod only sets
//!    `metadata.deletionTimestamp`. The kubelet sees that, reports the pod not ready (so endpoint
//!    controllers mark it `terminating` and proxies stop sending new traffic), stops the containers
//!    within the grace period, and then deletes the pod with `gracePeriodSeconds=0`, which really
//!    removes it.
//! 5. **Serve the kubelet API** on port 10250 over HTTPS (`/healthz`, `/pods`, logs, exec, …),
//!    authenticating the apiserver by its client certificate. `kubectl logs` and the apiserver's
//!    node proxy go through it.
//!
//! ## What this agent simplifies
//! - **No containers.** A pod's containers are in-process tasks chosen by image name
//!   ([`workload`]): `echo-http`, `echo-tcp` and `echo-udp` (any registry/tag: `proxylab/echo-http:1`
//!   works). Any other image is reported as a waiting container with reason `ImagePullBackOff` and
//!   the pod stays not ready — as a kubelet reports an image it cannot pull.
//! - **No network namespaces.** The "pod network" is loopback: each pod gets its own address from
//!   `--pod-cidr` (127.0.30.0/25 for node-1 in the lab, see [`ipam`]) and its servers bind to it, so
//!   an address still says which pod answered and which address the client came from.
//! - **No probes, restarts or resource accounting.** A container that binds its sockets is ready; one
//!   that cannot is waiting (`CreateContainerError`) for good. Capacity is reported, never enforced.
//! - **Logs are access logs.** Each container keeps a bounded in-memory log with one line per HTTP
//!   request, TCP connection or UDP client (who connected, from which address, to which), served at
//!   `/containerLogs/…` — so `kubectl logs` on a backend shows what the proxies in front of it did.
//! - **The kubelet API's debugging endpoints, no runtime behind them** ([`kubelet_api`]):
//!   `/healthz`, `/pods`, `/containerLogs`, and `exec`, `attach`, `portForward` over SPDY/3.1
//!   ([`spdy`]) and WebSocket ([`streaming`]); `exec` runs a small shell of built-in commands
//!   ([`shell`]) — never a host process. Every client with a certificate from `--client-ca-file`
//!   is allowed (no SubjectAccessReview).
//! - `hostNetwork: true` pods bind to the node's address instead of getting their own. Events
//!   (`Started`, `Failed`, `Killing`) are reported as a kubelet reports them, best effort.
//! - **Stopping the agent stops its pods** (a real kubelet's containers would outlive it).
//!
//! ## Layout
//! - [`agent`]: [`Node::bind`] / [`BoundNode::serve`], [`NodeConfig`], the clap [`NodeArgs`], and
//!   [`agent::objects`] — pure functions building every object and patch the agent sends.
//! - [`workload`]: the echo servers and how a container spec maps onto them.
//! - [`ipam`]: the pod IP allocator. [`certs`]: certificates minted for pods and the node.
//! - [`kubelet_api`]: the HTTPS API, the table of pods and the registry of running containers.
//! - [`streaming`]: the exec/attach/port-forward protocols; [`spdy`]: SPDY/3.1 framing and
//!   sessions; [`pipe`]: channel-backed byte pipes between them.
//! - [`shell`]: what `exec` runs: built-in commands, the pod's files, cluster DNS, `fetch`.
#![forbid(unsafe_code)]
pub mod agent;
pub mod certs;
pub mod ipam;
pub mod kubelet_api;
pub mod pipe;
pub mod shell;
pub mod spdy;
pub mod streaming;
pub mod workload;

pub use agent::{BoundNode, KubeSource, Node, NodeArgs, NodeConfig, NodeError};
