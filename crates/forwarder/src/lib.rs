//! proxylab-forwarder
