//! proxylab-auth-proxy
