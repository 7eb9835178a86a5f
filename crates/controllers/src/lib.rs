//! proxylab-controllers (crate doc written below)
#![forbid(unsafe_code)]

pub mod action;
pub mod endpointslices;
pub mod jwt;
pub mod namespaces;
mod obj;
pub mod tokens;
