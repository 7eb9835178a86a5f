//! proxylab-node
