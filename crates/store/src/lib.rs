//! proxylab-store
