//! proxylab-controllers
