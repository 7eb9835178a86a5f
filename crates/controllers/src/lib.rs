//! proxylab-controllers (crate doc written below)
#![forbid(unsafe_code)]

pub mod action;
pub mod endpointslices;
pub mod jwt;
pub mod namespaces;
pub mod nodelifecycle;
mod obj;
pub mod scheduler;
pub mod tokens;
