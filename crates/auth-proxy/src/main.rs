//! `auth-proxy`: a drop-in `kubectl proxy`. See the crate docs and `docs/auth-proxy.md`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

// Small, short-lived allocations (headers, URIs, body chunks) dominate a proxy's allocations;
// mimalloc's thread-local free lists serve them cheaper than glibc's arenas.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use proxylab_auth_proxy::logging;
use proxylab_auth_proxy::{AuthProxy, AuthProxyArgs, AuthProxyConfig};
use proxylab_core::telemetry::{AdminState, LogFormat, admin_router};

/// Creates a proxy server or application-level gateway between localhost and the Kubernetes API
/// server, as `kubectl proxy` does — with a safer filter and credentials policy, streaming, and
/// observability.
#[derive(Debug, Parser)]
#[command(name = "auth-proxy", version, args_override_self = true)]
struct Cli {
    #[command(flatten)]
    proxy: AuthProxyArgs,

    /// Log format: text or json (the access log is the `access` target).
    #[arg(long, default_value = "text")]
    log_format: LogFormat,

    /// Write one access line per request to stderr (`--access-log=false` to turn off).
    #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = proxylab_auth_proxy::goflag::parse_bool, action = clap::ArgAction::Set)]
    access_log: bool,

    /// Admin endpoint (/healthz, /readyz, /metrics, /debug/hops); empty to disable.
    #[arg(long, default_value = "127.0.0.1:0", allow_hyphen_values = true)]
    admin_address: String,
}

/// Parses the command line as kubectl would read it (Go's flag syntax, see `goflag`). A bad flag is
/// one line and exit 2; `--help` prints the help and exits 0.
fn parse_cli() -> Result<Cli, ExitCode> {
    let cmd = Cli::command();
    let argv =
        proxylab_auth_proxy::goflag::normalize_word_separators(std::env::args_os().collect(), &cmd);
    let matches = cmd.try_get_matches_from(argv).map_err(|e| {
        if proxylab_core::cli::is_display(&e) {
            let _ = e.print();
            ExitCode::SUCCESS
        } else {
            eprintln!(
                "auth-proxy: {} (see auth-proxy --help)",
                proxylab_core::cli::error_line(&e)
            );
            ExitCode::from(2)
        }
    })?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| {
        eprintln!("auth-proxy: {}", one_line(&e.to_string()));
        ExitCode::from(2)
    })?;
    cli.proxy.port_given = matches.value_source("port") == Some(ValueSource::CommandLine);
    Ok(cli)
}

fn main() -> ExitCode {
    // `BINARY health URL`: the container healthcheck (images hold no curl).
    proxylab_core::health::run_if_requested();
    proxylab_core::tls::install_crypto_provider();
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    for warning in cli.proxy.ignored_flag_warnings() {
        eprintln!("W auth-proxy: {warning}");
    }
    // Single-threaded: this thread serves the first listener; `--threads` adds one thread (with
    // its own single-threaded runtime) per extra core, see `Bound::serve`.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("auth-proxy: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    // `-v` chooses the default filter (RUST_LOG, when set, wins), as kubectl's -v sets its verbosity.
    let log = proxylab_core::telemetry::init_logging(cli.log_format, cli.proxy.log_filter());
    let access = cli
        .access_log
        .then(|| logging::AccessLog::new(&log, cli.log_format));
    let code = serve(cli, access).await;
    log.flush();
    code
}

async fn serve(cli: Cli, access: Option<logging::AccessLog>) -> ExitCode {
    let admin = AdminState::new();
    let mut config = match AuthProxyConfig::from_args(&cli.proxy).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("auth-proxy: {}", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    config.hops = Some(admin.hops.clone());
    config.access_via_tracing = access.is_some();
    config.access_log = access;
    let bound = match AuthProxy::bind(config).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("auth-proxy: {e}");
            return ExitCode::from(1);
        }
    };
    let shutdown = proxylab_core::runtime::shutdown_token();
    if !cli.admin_address.is_empty() {
        match tokio::net::TcpListener::bind(&cli.admin_address).await {
            Ok(l) => {
                if let Ok(a) = l.local_addr() {
                    eprintln!("Admin endpoint on http://{a}");
                }
                let router = admin_router(admin.clone());
                let token = shutdown.clone();
                tokio::spawn(async move {
                    let options = proxylab_core::serve::ServeOptions::admin();
                    let _ = proxylab_core::serve::serve_http_with(l, None, router, token, options)
                        .await;
                });
            }
            Err(e) => {
                eprintln!("auth-proxy: --admin-address {}: {e}", cli.admin_address);
                return ExitCode::from(2);
            }
        }
    }
    // kubectl prints this to stdout; scripts wait for it.
    println!("Starting to serve on {}", bound.local_addr());
    admin.set_ready(true);
    match bound.serve(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auth-proxy: {e}");
            ExitCode::from(1)
        }
    }
}

/// Folds a multi-line error (regex and YAML parsers draw code frames) into the one line a user
/// reads: the message lines are kept, the frame drawing (`-->`, `|`, `^` lines) dropped.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| {
            let frame = l.starts_with("-->")
                || l.starts_with('|')
                || l.starts_with('^')
                || l.split_once('|')
                    .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()));
            !frame
        })
        .collect::<Vec<_>>()
        .join(" ")
}
