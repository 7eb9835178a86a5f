//! proxylab-node
#![forbid(unsafe_code)]
pub mod agent;
pub mod certs;
pub mod ipam;
pub mod kubelet_api;
pub mod serve;
pub mod workload;

pub use agent::{BoundNode, KubeSource, Node, NodeArgs, NodeConfig, NodeError};
