//! proxylab-apiserver
