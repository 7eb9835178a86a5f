//! proxylab-node
#![forbid(unsafe_code)]
pub mod certs;
pub mod ipam;
pub mod serve;
pub mod workload;
