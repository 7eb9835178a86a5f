//! proxylab-core
