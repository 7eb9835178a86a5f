//! Test fixtures: an auth-proxy in front of the shared fake apiserver
//! (`proxylab_test_support::fake_apiserver`, re-exported here with the other shared helpers).
//! Everything on 127.0.0.1 with port 0.

#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use proxylab_auth_proxy::{AuthProxy, AuthProxyArgs, AuthProxyConfig};
use proxylab_kube::KubeconfigOptions;
use tokio_util::sync::CancellationToken;

pub use proxylab_test_support::fake_apiserver::*;
pub use proxylab_test_support::http::{client, get, raw_exchange, read_head};
pub use proxylab_test_support::{
    eventually, expect_one_line_exit_2, require_tool, thread_names, without_proxy_env,
};

/// A running auth-proxy.
pub struct Proxy {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub hops: Arc<proxylab_core::telemetry::HopLog>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn start_proxy(kubeconfig: &Path, tweak: impl FnOnce(&mut AuthProxyArgs)) -> Proxy {
    let mut args = AuthProxyArgs {
        port: 0,
        kubeconfig: Some(kubeconfig.to_owned()),
        ..AuthProxyArgs::default()
    };
    tweak(&mut args);
    let cluster = proxylab_kube::load(&KubeconfigOptions {
        kubeconfig: args.kubeconfig.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut cfg = AuthProxyConfig::from_args_with_cluster(&args, &cluster).unwrap();
    let metrics = proxylab_core::telemetry::Metrics::new();
    let hops = proxylab_core::telemetry::HopLog::new(256, &metrics);
    cfg.hops = Some(hops.clone());
    let bound = AuthProxy::bind(cfg).await.unwrap();
    let addr = bound.local_addr().tcp().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        bound.serve(s).await.unwrap();
    });
    Proxy {
        addr,
        stop,
        hops,
        task,
    }
}

/// Reads a started `auth-proxy` child's first stdout line, `Starting to serve on ADDR` (kubectl's
/// line), and returns ADDR.
pub async fn serving_addr(child: &mut std::process::Child) -> SocketAddr {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().expect("stdout piped");
    let line = tokio::task::spawn_blocking(move || {
        let mut l = String::new();
        BufReader::new(stdout).read_line(&mut l).unwrap();
        l
    })
    .await
    .unwrap();
    line.trim()
        .strip_prefix("Starting to serve on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap()
}
