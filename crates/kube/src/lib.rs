//! proxylab-kube
