//! proxylab-controllers (crate doc written below)
#![forbid(unsafe_code)]

pub mod action;
pub mod endpointslices;
pub mod informer;
pub mod jwt;
mod manager;
pub mod namespaces;
pub mod nodelifecycle;
mod obj;
pub mod scheduler;
pub mod tokens;

pub use action::{Action, Target};
pub use manager::{ControllerError, ControllerManager, ControllersConfig, EnabledControllers};
