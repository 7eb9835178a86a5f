//! proxylab-apimachinery
