//! `proxylab`: the lab — a Kubernetes-API-compatible control plane, kubelet-like nodes and the proxies,
//! together from one command (`proxylab lab up`) or one process per component.

mod lab;
mod pki_cmd;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use proxylab_core::telemetry::{LogFormat, init_tracing};
use proxylab_core::tls::install_crypto_provider;

#[derive(Debug, Parser)]
#[command(
    name = "proxylab",
    version,
    about = "Kubernetes' five kinds of proxy, and a lab to run them in"
)]
struct Cli {
    /// Log format: text or json (filter with RUST_LOG; `RUST_LOG=hop=info` prints every hop).
    #[arg(long, global = true, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the whole lab, or check a topology file.
    Lab {
        #[command(subcommand)]
        cmd: LabCmd,
    },
    /// Run a lab control plane: a store (in memory, or etcd with --etcd-servers), apiserver
    /// front-ends and the controllers.
    Apiserver(Box<ApiserverCmd>),
    /// Run a kubelet-like node agent whose pods are echo servers.
    Node(proxylab_node::NodeArgs),
    /// Write a kubeadm-style PKI (cluster CA, apiserver, admin, kubelets, front proxy, SA key).
    Pki(pki_cmd::PkiArgs),
    /// Send one request through the running lab and show every proxy it crossed (and, if it
    /// failed, which hop refused and why). Exit 0 ok, 1 the request failed, 2 bad input.
    Trace(trace::TraceArgs),
}

#[derive(Debug, Subcommand)]
enum LabCmd {
    /// Start the lab and serve until SIGINT/SIGTERM; writes `lab.json` when everything answers.
    Up(lab::LabUpArgs),
    /// Is a lab running in this state dir? Prints its lab.json (exit 0), or says that none is and
    /// whether a lab.json left by a killed lab is stale (exit 3).
    Status {
        /// The state dir of `lab up`.
        #[arg(long, default_value = ".lab")]
        state_dir: PathBuf,
    },
    /// Stop one component of the running lab (a failure drill): `apiserver-2` closes its listener
    /// and drops its connections, as a crash would. Exit 0 done, 1 refused, 3 no lab running.
    Stop(LabComponentArgs),
    /// Start a stopped component of the running lab again. Exit 0 done, 1 refused, 3 no lab.
    Start(LabComponentArgs),
    /// Parse and check a topology file; exit 2 with one line naming file, line and field.
    Check {
        /// The topology file (default: the built-in one).
        #[arg(long)]
        topology: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct LabComponentArgs {
    /// The component, e.g. `apiserver-2` (`curl ADMIN/components` lists them).
    component: String,
    /// The state dir of `lab up`.
    #[arg(long, default_value = ".lab")]
    state_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ApiserverCmd {
    #[command(flatten)]
    apiserver: proxylab_apiserver::ApiServerArgs,
    /// Where the objects live: etcd (`--etcd-servers`), or this process's memory when absent.
    #[command(flatten)]
    etcd: proxylab_store_etcd::EtcdArgs,
    /// The cluster CA (PEM) that the token controller writes into service-account token Secrets
    /// (kube-controller-manager's flag). Without it, controllers do not run.
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    /// How long a Node may go without renewing its Lease before the node lifecycle controller
    /// marks it `Ready=Unknown` and its pods' endpoints not ready (kube-controller-manager's flag;
    /// a Go duration such as `40s`).
    #[arg(long, default_value = "40s", value_parser = proxylab_core::duration::parse_std)]
    node_monitor_grace_period: std::time::Duration,
}

fn main() -> ExitCode {
    // `BINARY health URL`: the container healthcheck (images hold no curl).
    proxylab_core::health::run_if_requested();
    install_crypto_provider();
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxylab: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli.cmd))
}

async fn run(cmd: Cmd) -> ExitCode {
    let shutdown = proxylab_core::runtime::shutdown_token();
    match cmd {
        Cmd::Lab {
            cmd: LabCmd::Check { topology },
        } => match lab::topology::load(topology.as_deref()) {
            Ok(t) => {
                println!(
                    "ok: {} apiservers, {} nodes, {} objects",
                    t.lab.apiservers.len(),
                    t.lab.nodes.len(),
                    t.objects.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Cmd::Lab {
            cmd: LabCmd::Status { state_dir },
        } => match lab::state::status(&state_dir) {
            Ok(lab::state::Status::Running {
                info: Some(info), ..
            }) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&info).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Ok(lab::state::Status::Running { holder, info: None }) => {
                println!("a lab is starting in {} ({holder})", state_dir.display());
                ExitCode::SUCCESS
            }
            Ok(lab::state::Status::Stopped { stale_lab_json }) => {
                let stale = if stale_lab_json {
                    " (its lab.json is stale: the lab that wrote it is gone)"
                } else {
                    ""
                };
                println!("no lab is running in {}{stale}", state_dir.display());
                ExitCode::from(3)
            }
            Err(e) => {
                eprintln!("proxylab lab status: {}", error_chain(&e));
                ExitCode::from(1)
            }
        },
        Cmd::Lab {
            cmd: LabCmd::Stop(args),
        } => lab_control(args, lab::control::Action::Stop).await,
        Cmd::Lab {
            cmd: LabCmd::Start(args),
        } => lab_control(args, lab::control::Action::Start).await,
        Cmd::Lab {
            cmd: LabCmd::Up(args),
        } => match lab::up(args, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(lab::LabError::Topology(e)) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
            Err(lab::LabError::Busy(e)) => {
                eprintln!("proxylab lab up: {e}");
                ExitCode::from(1)
            }
            Err(lab::LabError::Other(e)) => {
                eprintln!("proxylab lab up: {}", error_chain(&e));
                ExitCode::from(1)
            }
        },
        Cmd::Apiserver(args) => report(run_apiserver(*args, shutdown).await),
        Cmd::Node(args) => {
            let config = match args.into_config() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("proxylab node: {e}");
                    return ExitCode::from(2);
                }
            };
            let result = async {
                let bound = proxylab_node::Node::bind(config).await?;
                for addr in bound.local_addrs() {
                    println!("kubelet API serving on https://{addr}");
                }
                bound.serve(shutdown).await?;
                anyhow::Ok(())
            }
            .await;
            report(result)
        }
        Cmd::Pki(args) => report(pki_cmd::run(&args)),
        Cmd::Trace(args) => trace::run(args).await,
    }
}

async fn lab_control(args: LabComponentArgs, action: lab::control::Action) -> ExitCode {
    match lab::control::run(&args.state_dir, &args.component, action).await {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("proxylab lab {}: {e}", action.as_str());
            ExitCode::from(match e {
                lab::control::ControlError::NoLab(_) => 3,
                lab::control::ControlError::Failed(_) => 1,
            })
        }
    }
}

async fn run_apiserver(
    args: ApiserverCmd,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let config = match args.apiserver.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("proxylab apiserver: {e}");
            std::process::exit(2);
        }
    };
    let store: Arc<dyn proxylab_store::Store> = match args.etcd.to_config() {
        Err(e) => {
            eprintln!("proxylab apiserver: {e}");
            std::process::exit(2);
        }
        Ok(None) => Arc::new(proxylab_store::MemoryStore::new(100_000)),
        Ok(Some(etcd)) => {
            let servers = etcd.endpoints.join(",");
            // Connecting waits (up to --etcd-startup-wait) for etcd to answer: off the runtime.
            let store =
                tokio::task::spawn_blocking(move || proxylab_store_etcd::EtcdStore::connect(etcd))
                    .await
                    .context("connecting to etcd")??;
            println!("store: etcd at {servers}");
            Arc::new(store)
        }
    };
    let bound = proxylab_apiserver::ApiServer::bind(config, store.clone()).await?;
    for addr in bound.local_addrs() {
        println!("apiserver serving on {addr}");
    }
    let mut controllers = None;
    if let Some(ca) = &args.root_ca_file {
        let ca_pem = std::fs::read_to_string(ca)
            .with_context(|| format!("--root-ca-file {}", ca.display()))?;
        let key = args
            .apiserver
            .service_account_signing_key_file
            .as_ref()
            .context("--root-ca-file needs --service-account-signing-key-file to sign tokens")?;
        let key_pem = std::fs::read_to_string(key)
            .with_context(|| format!("--service-account-signing-key-file {}", key.display()))?;
        let cm = proxylab_controllers::ControllerManager::new(
            store.clone(),
            proxylab_controllers::ControllersConfig {
                ca_pem,
                sa_signing_key_pkcs8_pem: key_pem,
                node_monitor_grace_period: args.node_monitor_grace_period,
                ..Default::default()
            },
        )?;
        controllers = Some(tokio::spawn(cm.run(shutdown.clone())));
    }
    bound.serve(shutdown).await?;
    if let Some(c) = controllers {
        let _ = c.await;
    }
    Ok(())
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxylab: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes on one line, like anyhow's `{:#}`, but without repeating a cause whose
/// text its wrapper already printed: many error types say "cannot listen on ADDR: {source}" and also
/// expose that source, which `{:#}` would print twice.
pub(crate) fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:1: {source}")]
    struct Bind {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_its_wrapper_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(Bind { source: io }).context("starting the apiservers");
        assert_eq!(
            error_chain(&e),
            "starting the apiservers: cannot listen on 127.0.0.1:1: Address already in use"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&plain), "outer: inner");
    }
}
