//! `cloud-lb`: proxy type 5, the cloud load balancer for Services of `type: LoadBalancer`. See the
//! crate docs and docs/cloud-lb.md.

use clap::Parser;
use proxylab_cloud_lb::{CloudLb, CloudLbArgs};

#[derive(Parser)]
#[command(
    name = "cloud-lb",
    version,
    about = "The cloud load balancer for Services of type LoadBalancer (proxy type 5): addresses from pools, status and Events, TCP/UDP to the nodes' NodePorts"
)]
struct Cli {
    #[command(flatten)]
    args: CloudLbArgs,
}

fn main() {
    // `BINARY health URL`: the container healthcheck (images hold no curl).
    proxylab_core::health::run_if_requested();
    // A flag mistake is one line and exit 2, as every proxylab binary reports it.
    let cli: Cli = proxylab_core::cli::parse_or_exit("cloud-lb");
    let rt = proxylab_core::cli::runtime_or_exit("cloud-lb", true);
    rt.block_on(run(cli));
}

async fn run(cli: Cli) {
    proxylab_core::tls::install_crypto_provider();
    proxylab_core::telemetry::init_tracing(cli.args.log_format);
    if let Err(e) = proxylab_core::runtime::raise_nofile_limit(1 << 20) {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    let config = match cli.args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cloud-lb: {e}");
            std::process::exit(2);
        }
    };
    let lb = match CloudLb::bind(config).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cloud-lb: {e}");
            std::process::exit(if e.is_config() { 2 } else { 1 });
        }
    };
    let admin = lb.admin_addr();
    if admin.is_none() {
        lb.handle().admin().hops.set_retain(false);
    }
    tracing::info!(admin = ?admin, "cloud-lb started");
    lb.serve(proxylab_core::runtime::shutdown_token()).await;
}
