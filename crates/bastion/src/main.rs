//! `bastion`: the apiserver proxy on its own, for any cluster. See `proxylab_bastion::standalone`
//! and `docs/bastion.md`.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use proxylab_bastion::Bastion;
use proxylab_bastion::standalone::{self, BastionArgs};
use proxylab_core::telemetry::{AdminState, LogFormat, Metrics, admin_router};
use tracing::{info, warn};

// Small, short-lived allocations (headers, URIs, body chunks) dominate a proxy's allocations;
// mimalloc's thread-local free lists serve them cheaper than glibc's arenas.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The apiserver proxy (a bastion into the cluster): node, pod and service proxy paths and
/// pods/log, exec, attach and portforward, served on their own over HTTPS.
#[derive(Debug, Parser)]
#[command(name = "bastion", version)]
struct Cli {
    #[command(flatten)]
    bastion: BastionArgs,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    // `BINARY health URL`: the container healthcheck (images hold no curl).
    proxylab_core::health::run_if_requested();
    proxylab_core::tls::install_crypto_provider();
    // A flag mistake is one line and exit 2, as every proxylab binary reports it.
    let cli: Cli = proxylab_core::cli::parse_or_exit("bastion");
    let runtime = proxylab_core::cli::runtime_or_exit("bastion", true);
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    proxylab_core::telemetry::init_tracing(cli.log_format);
    let metrics = Metrics::new();
    let resolved = match cli.bastion.resolve(&metrics) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bastion: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match proxylab_kube::watch::client(&resolved.kubeconfig).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bastion: {e}");
            return ExitCode::from(2);
        }
    };
    let view = resolved.config.view.clone();
    let mut config = resolved.config;
    // The admin endpoint serves the bastion's own hop log and the registry its counters are in.
    let admin = AdminState {
        hops: config.instances[0].hops().clone(),
        metrics,
        ready: Arc::new(AtomicBool::new(false)),
    };
    let listener = match tokio::net::TcpListener::bind(resolved.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bastion: cannot listen on {}: {e}", resolved.listen);
            return ExitCode::from(1);
        }
    };
    let local = listener.local_addr().unwrap_or(resolved.listen);
    // The bastion never dials itself: its listen address with the real port (port 0 resolved).
    config.own_addresses.push(local);
    let bastion = match Bastion::new(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bastion: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = proxylab_core::runtime::shutdown_token();
    if let Some(addr) = resolved.admin_address {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                if let Ok(a) = l.local_addr() {
                    eprintln!("Admin endpoint on http://{a}");
                }
                let router = admin_router(admin.clone());
                let token = shutdown.clone();
                tokio::spawn(async move {
                    let _ = proxylab_core::serve::serve_http_with(
                        l,
                        None,
                        router,
                        token,
                        proxylab_core::serve::ServeOptions::admin(),
                    )
                    .await;
                });
            }
            Err(e) => {
                eprintln!("bastion: cannot listen on --admin-address {addr}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    {
        let (view, token) = (view.clone(), shutdown.clone());
        tokio::spawn(proxylab_kube::watch::watch_cluster(
            client,
            view,
            proxylab_kube::watch::WatchOptions {
                nodes: true,
                pods: true,
                pods_on_node: None,
            },
            token,
        ));
    }
    {
        // Ready once the first listing of every kind is in.
        let (admin, view) = (admin.clone(), view.clone());
        tokio::spawn(async move {
            let mut rx = view.subscribe();
            loop {
                if view.snapshot().synced {
                    admin.set_ready(true);
                    info!("cluster synced");
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    let router = standalone::router(&bastion, resolved.authn);
    println!("Serving the apiserver proxy on https://{local}");
    let result =
        proxylab_core::serve::serve_http(listener, Some(resolved.tls), router, shutdown).await;
    bastion.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn!(error = %e, "serving failed");
            eprintln!("bastion: serving {local}: {e}");
            ExitCode::from(1)
        }
    }
}
