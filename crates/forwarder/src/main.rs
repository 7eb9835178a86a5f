//! `forwarder`: proxy type 3, kube-proxy as an L4 TCP/UDP load balancer. See the crate docs and
//! docs/forwarder.md.

use clap::Parser;
use proxylab_forwarder::{Forwarder, ForwarderArgs};

// No #[global_allocator]: the system allocator, deliberately. mimalloc (the auth-proxy's) measured no CPU difference
// per connection here within the noise (60-71 us either way), and it raised the RSS by 10 MiB
// at rest and by 0.5 KiB per idle relayed connection (57 vs 43 MiB with 9,000).

#[derive(Parser)]
#[command(
    name = "forwarder",
    version,
    about = "kube-proxy as a real L4 TCP/UDP load balancer (proxy type 3)"
)]
struct Cli {
    #[command(flatten)]
    args: ForwarderArgs,

    /// Threads that relay TCP and UDP, each a single-threaded event loop (default: one per CPU).
    /// Watches, reconciling and the health and admin servers run on the main thread.
    #[arg(long, value_name = "N")]
    worker_threads: Option<usize>,
}

fn main() {
    // `BINARY health URL`: the container healthcheck (images hold no curl).
    proxylab_core::health::run_if_requested();
    // A flag mistake is one line and exit 2, as every proxylab binary reports it.
    let cli: Cli = proxylab_core::cli::parse_or_exit("forwarder");
    let rt = proxylab_core::cli::runtime_or_exit("forwarder", false);
    rt.block_on(run(cli));
}

async fn run(cli: Cli) {
    proxylab_core::tls::install_crypto_provider();
    proxylab_core::telemetry::init_tracing(cli.args.log_format);
    // Two descriptors per relayed connection (plus two pipes while splicing): raise the limit as
    // kube-proxy did.
    if let Err(e) = proxylab_core::runtime::raise_nofile_limit(1 << 20) {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    let mut config = cli.args.to_config();
    config.serving_threads = cli
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let forwarder = match Forwarder::bind(config).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("forwarder: {e}");
            std::process::exit(if e.is_config() { 2 } else { 1 });
        }
    };
    let addrs = forwarder.local_addrs();
    if addrs.admin.is_none() {
        // Nobody can read the hop ring without the admin endpoint: keep the counters only.
        forwarder.handle().admin().hops.set_retain(false);
    }
    tracing::info!(healthz = ?addrs.healthz, admin = ?addrs.admin, "forwarder started");
    let shutdown = proxylab_core::runtime::shutdown_token();
    if let Err(e) = forwarder.serve(shutdown).await {
        eprintln!("forwarder: {e}");
        std::process::exit(1);
    }
}
