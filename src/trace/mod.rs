//! `proxylab trace TARGET`: send one request through the lab and show every proxy it crossed.
//!
//! 1. The lab is found through its state dir (`lab.json`, checked live as `lab status` does).
//! 2. [`probe`] sends the request from a socket of its own, so trace knows the address the first
//!    proxy saw as its client.
//! 3. Every admin endpoint named in `lab.json` → `admin` is read (`/debug/hops`, as the lab page's
//!    feed reads them), and the records are stitched into paths
//!    (`proxylab_core::telemetry::stitch`: one hop's upstream local address is the next hop's
//!    client address). The path that starts at trace's socket is the request's path. Hops are
//!    recorded when they end, so the endpoints are read again until the path reaches something
//!    that records no hop (a pod, a kubelet, an apiserver answering for itself) or
//!    [`SETTLE`] has passed.
//! 4. [`report`] decides whether the path worked — the deepest hop that did not succeed is the one
//!    that refused — and prints the table or the JSON.
//!
//! Exit codes: 0 the request went through; 1 it failed (the path and the failed hop are printed);
//! 2 bad input (TARGET, flags, no lab running, a stale `lab.json`).

pub mod places;
pub mod probe;
pub mod report;
pub mod target;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use proxylab_core::telemetry::HopRecord;
use proxylab_core::telemetry::stitch;
use serde_json::Value;

use crate::lab::page::feed::{Source, fetch, sources_from_info};
use places::Places;
use report::{Hop, Report};
use target::Target;

/// How long trace keeps reading the proxies' records for a path that has not reached its end.
pub const SETTLE: Duration = Duration::from_secs(3);
/// How many records trace reads from each admin endpoint per round.
const READ_LIMIT: usize = 1024;

/// `proxylab trace` flags.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// The state dir of `lab up`.
    #[arg(long, default_value = ".lab")]
    pub state_dir: PathBuf,
    /// `table` (mtr-like) or `json`.
    #[arg(long, default_value = "table")]
    pub output: Output,
    /// What to send: http://HOST[:PORT]/PATH, https://HOST[:PORT]/PATH, tcp://HOST:PORT or
    /// udp://HOST:PORT, HOST an address of the lab.
    pub target: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Why trace could not run at all (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Target(#[from] target::TargetError),
    #[error(
        "no lab is running in {0} (start one with `proxylab lab up --state-dir {0}`, or name its state dir with --state-dir)"
    )]
    NoLab(String),
    #[error(
        "no lab is running in {0}: its lab.json is stale (the lab that wrote it is gone); start it again with `proxylab lab up --state-dir {0}`"
    )]
    Stale(String),
    #[error("the lab in {0} is still starting: its lab.json is not written yet")]
    Starting(String),
    #[error("{0}")]
    State(String),
    #[error("the lab kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
}

/// Runs `trace`; prints the report and returns the exit code.
pub async fn run(args: TraceArgs) -> ExitCode {
    match trace(&args).await {
        Ok(report) => {
            match args.output {
                Output::Table => print!("{}", report.to_table()),
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
                ),
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("proxylab trace: {e}");
            ExitCode::from(2)
        }
    }
}

/// The running lab's `lab.json`.
fn lab_info(dir: &Path) -> Result<Value, TraceError> {
    let shown = dir.display().to_string();
    match crate::lab::state::status(dir) {
        Ok(crate::lab::state::Status::Running {
            info: Some(info), ..
        }) => Ok(info),
        Ok(crate::lab::state::Status::Running { info: None, .. }) => {
            Err(TraceError::Starting(shown))
        }
        Ok(crate::lab::state::Status::Stopped {
            stale_lab_json: true,
        }) => Err(TraceError::Stale(shown)),
        Ok(crate::lab::state::Status::Stopped {
            stale_lab_json: false,
        }) => Err(TraceError::NoLab(shown)),
        Err(e) => Err(TraceError::State(format!(
            "cannot read the state dir {shown}: {e}"
        ))),
    }
}

async fn trace(args: &TraceArgs) -> Result<Report, TraceError> {
    let target = target::parse(&args.target)?;
    let info = lab_info(&args.state_dir)?;
    let places = Places::from_info(&info);
    let https = match &target {
        Target::Http {
            tls: true, addr, ..
        } => Some(https_for(&info, places.is_api(*addr)).await?),
        _ => None,
    };
    let sources = sources_from_info(&info);

    let sent = probe::send(&target, https.as_ref()).await;
    let request_path = match &target {
        Target::Http { path, .. } => Some(path.as_str()),
        _ => None,
    };
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut hops = Vec::new();
    let mut unreadable = Vec::new();
    // A refused connect reached no proxy (the kernel answered): nothing to read.
    if let Some(local) = sent.local.filter(|_| !sent.refused) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let (records, errors) = read_all(&client, &sources).await;
            unreadable = errors;
            hops = follow(&records, local, sent.started);
            let done = hops.last().is_some_and(|h: &Hop| {
                let r = &h.record;
                !report::succeeded(&r.outcome)
                    || r.upstream
                        .is_none_or(|up| !places.records_next_hop(up, request_path))
            });
            if done || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(Report::new(target, sent, hops, places, unreadable))
}

/// TLS for an https target from the lab kubeconfig: its CA, and for an apiserver or the HA
/// balancer its client certificate and token.
async fn https_for(info: &Value, credentials: bool) -> Result<probe::Https, TraceError> {
    let path = info["kubeconfig"].as_str().unwrap_or_default().to_owned();
    let err = |message: String| TraceError::Kubeconfig {
        path: path.clone(),
        message,
    };
    let cluster = proxylab_kube::config::load(&proxylab_kube::KubeconfigOptions {
        kubeconfig: Some(PathBuf::from(&path)),
        ..Default::default()
    })
    .await
    .map_err(|e| err(e.to_string()))?;
    let mut config =
        proxylab_kube::upstream::tls_client_config(&cluster).map_err(|e| err(e.to_string()))?;
    // trace speaks HTTP/1.1 on the socket it opened itself.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let headers = if credentials {
        let creds =
            proxylab_kube::upstream::Credentials::new(&cluster).map_err(|e| err(e.to_string()))?;
        let map = creds.headers().await.map_err(|e| err(e.to_string()))?;
        map.iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect()
    } else {
        Vec::new()
    };
    Ok(probe::Https {
        config: Arc::new(config),
        headers,
        send_credentials: credentials,
    })
}

/// One round over every admin endpoint: the records read, with their source, and the endpoints
/// that could not be read.
async fn read_all(
    client: &Client<HttpConnector, Empty<Bytes>>,
    sources: &[Source],
) -> (Vec<(String, HopRecord)>, Vec<(String, String)>) {
    let reads = sources.iter().map(|s| async move {
        let got = tokio::time::timeout(
            Duration::from_secs(2),
            fetch(client, s.addr, READ_LIMIT, true),
        )
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        (s.name.clone(), got)
    });
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (name, got) in futures_util::future::join_all(reads).await {
        match got {
            Ok(values) => records.extend(
                values
                    .into_iter()
                    .filter_map(|v| serde_json::from_value::<HopRecord>(v).ok())
                    .map(|r| (name.clone(), r)),
            ),
            Err(e) => errors.push((name, e)),
        }
    }
    (records, errors)
}

/// The path that starts at `local` (trace's own socket) no earlier than `started`.
fn follow(
    records: &[(String, HopRecord)],
    local: SocketAddr,
    started: jiff::Timestamp,
) -> Vec<Hop> {
    let plain: Vec<HopRecord> = records.iter().map(|(_, r)| r.clone()).collect();
    let since = started.as_nanosecond() as f64 / 1e6 - stitch::SLACK_MS;
    let Some(root) = plain
        .iter()
        .enumerate()
        .filter(|(_, r)| r.client == local && r.time.as_nanosecond() as f64 / 1e6 >= since)
        .min_by_key(|(_, r)| r.time)
        .map(|(i, _)| i)
    else {
        return Vec::new();
    };
    stitch::request_path(&plain, root)
        .into_iter()
        .map(|(i, join)| Hop {
            source: records[i].0.clone(),
            join,
            record: plain[i].clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(client: &str, listener: &str, upstream_local: Option<&str>, at_ms: i64) -> HopRecord {
        let mut h = HopRecord::start(
            "forwarder",
            "node-1",
            "tcp",
            client.parse().unwrap(),
            listener.parse().unwrap(),
        );
        h.time = jiff::Timestamp::from_millisecond(1_700_000_000_000 + at_ms).unwrap();
        h.upstream_local = upstream_local.map(|a| a.parse().unwrap());
        h
    }

    #[test]
    fn the_path_starts_at_our_socket_and_not_at_an_older_use_of_its_port() {
        let started = jiff::Timestamp::from_millisecond(1_700_000_000_000 + 1000).unwrap();
        let records = vec![
            // The same client port, used by an earlier trace.
            (
                "a".to_owned(),
                rec("127.0.0.1:5000", "127.0.40.10:80", Some("127.0.20.1:1"), 0),
            ),
            (
                "b".to_owned(),
                rec("127.0.20.1:2", "127.0.30.1:8080", None, 1001),
            ),
            (
                "a".to_owned(),
                rec(
                    "127.0.0.1:5000",
                    "127.0.40.10:80",
                    Some("127.0.20.1:2"),
                    1000,
                ),
            ),
        ];
        let path = follow(&records, "127.0.0.1:5000".parse().unwrap(), started);
        assert_eq!(path.len(), 2);
        assert_eq!(path[0].record.time, records[2].1.time);
        assert_eq!(path[0].join, None);
        assert_eq!(path[1].source, "b");
        assert_eq!(path[1].join, Some(stitch::Join::Exact));
        assert!(follow(&records, "127.0.0.1:5001".parse().unwrap(), started).is_empty());
    }
}
