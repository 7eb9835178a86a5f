//! `ha-balancer`: proxy type 4, the balancer in front of several apiservers. See the crate docs
//! and docs/ha-balancer.md.

use clap::Parser;
use proxylab_ha_balancer::{HaBalancer, HaBalancerArgs};

#[derive(Parser)]
#[command(
    name = "ha-balancer",
    version,
    about = "The balancer in front of several apiservers (proxy type 4): TLS passthrough (tcp) or termination with front-proxy identity and GOAWAY (http), health checks, failover that loses nothing"
)]
struct Cli {
    #[command(flatten)]
    args: HaBalancerArgs,
}

fn main() {
    // `BINARY health URL`: the container healthcheck (images hold no curl).
    proxylab_core::health::run_if_requested();
    // A flag mistake is one line and exit 2, as every proxylab binary reports it.
    let cli: Cli = proxylab_core::cli::parse_or_exit("ha-balancer");
    let rt = proxylab_core::cli::runtime_or_exit("ha-balancer", true);
    rt.block_on(run(cli));
}

async fn run(cli: Cli) {
    proxylab_core::tls::install_crypto_provider();
    proxylab_core::telemetry::init_tracing(cli.args.log_format);
    // Two descriptors per relayed connection.
    if let Err(e) = proxylab_core::runtime::raise_nofile_limit(1 << 20) {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    let (mut config, file) = match cli.args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ha-balancer: {e}");
            std::process::exit(2);
        }
    };
    // A serving thread per CPU, as HAProxy's nbthread.
    config.serving_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let balancer = match HaBalancer::bind(config, file, None).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ha-balancer: {e}");
            std::process::exit(if e.is_config() { 2 } else { 1 });
        }
    };
    let (listen, admin) = balancer.local_addrs();
    if admin.is_none() {
        balancer.handle().admin().hops.set_retain(false);
    }
    tracing::info!(%listen, admin = ?admin, "ha-balancer started");
    let shutdown = proxylab_core::runtime::shutdown_token();
    balancer.serve(shutdown).await;
}
