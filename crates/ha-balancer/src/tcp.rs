//! `tcp` mode: TLS passes through. Accept, pick a backend, connect (retrying a failed connect on
//! another backend — nothing has been sent yet, so nothing can be sent twice), then relay bytes both
//! ways until either side ends or the balancer ends the connection (its backend went down, load is
//! being moved, the drain ran out).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proxylab_core::balance::Algorithm;
use proxylab_core::l4::tcp::{
    DialError, DialFailure, Interrupt, RelayEnd, RelayOptions, dial, relay_until, reset_on_close,
};
use proxylab_core::telemetry::HopRecord;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::pool::Source;

/// Accepts until `stop`; at most the process's connection limit at once (beyond it new
/// connections wait in the kernel's backlog, as HAProxy's `maxconn`).
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    limit: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let local = listener.local_addr().ok();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let sh = shared.clone();
                let listener_addr = local.unwrap_or(peer);
                shared.tracker.spawn(async move {
                    handle(&sh, stream, peer, listener_addr).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

async fn handle(shared: &Shared, client: TcpStream, peer: SocketAddr, listener: SocketAddr) {
    let started = Instant::now();
    let config = shared.config.load_full();
    let mut hop = HopRecord::start("ha-balancer", &config.instance, "tcp", peer, listener);
    let pool = &shared.pool;
    let balancer = pool.balancer();
    let backends = pool.backends().len();
    let attempts = match config.retries {
        Some(r) => (r as usize + 1).min(backends.max(1)),
        None => backends.max(1),
    };
    let schedule = vec![config.timeouts.connect; attempts];
    let last_resort = pool.all_down();
    // While load moves back to a recovered backend, the emptiest backend takes each connection,
    // so every connection the rebalancer closes lands where connections are missing.
    let rebalancing = pool.rebalancing() && balancer.algorithm() != Algorithm::SourceHash;
    let dialled = dial(&schedule, |tried| {
        let p = if rebalancing {
            balancer.pick_as(Algorithm::LeastConn, Some(peer.ip()), tried)?
        } else {
            balancer.pick(Some(peer.ip()), tried)?
        };
        // Every backend already failed for this connection: stop instead of trying one twice.
        if tried.contains(&p.addr) {
            return None;
        }
        Some((p.addr, p))
    })
    .await;
    let failures: &[DialFailure] = match &dialled {
        Ok((_, _, f)) => f,
        Err(DialError::Exhausted(f)) => f,
        Err(DialError::NoEndpoint) => &[],
    };
    for f in failures {
        if let Some(b) = pool.by_addr(f.addr) {
            b.connect_failures.fetch_add(1, Ordering::Relaxed);
            pool.observe(&b, false, Source::Passive, &format!("connect: {}", f.error));
        }
    }
    match dialled {
        Err(DialError::NoEndpoint) => {
            reset_on_close(&client);
            hop.outcome = "no-backends".into();
        }
        Err(DialError::Exhausted(failures)) => {
            reset_on_close(&client);
            hop.outcome = "connect-failed".into();
            hop.reason = Some(describe_failures(&failures));
            hop.upstream = failures.last().map(|f| f.addr);
        }
        Ok((upstream, pick, failures)) => {
            let _ = upstream.set_nodelay(true);
            let backend = pool.by_addr(pick.addr);
            hop.upstream = Some(pick.addr);
            hop.upstream_local = upstream.local_addr().ok();
            hop.endpoint = Some(
                backend
                    .as_ref()
                    .map_or_else(|| pick.addr.to_string(), |b| b.name().to_string()),
            );
            let mut reason = pick.reason.to_string();
            if rebalancing {
                reason.push_str(" (rebalancing)");
            }
            if last_resort {
                reason.push_str("; every backend is down, trying anyway");
            }
            if !failures.is_empty() {
                reason = format!("{reason}; {}", describe_failures(&failures));
            }
            hop.reason = Some(reason);
            // Shown at `/debug/hops?open=true` while it lasts: a pooled connection or a watch
            // may stay open for hours, and a path through it should be traceable meanwhile.
            let open = shared.admin.hops.open(hop);
            let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
            let rx = backend.as_ref().map(|b| b.open(id));
            // Who ended the relay, when someone did: the rebalancer or a mark-down (through the
            // backend's registry) or the drain; an interrupt from none of them is the idle limit.
            let why = std::sync::OnceLock::<&'static str>::new();
            let stop = async {
                let told = async {
                    match rx {
                        Some(rx) => match rx.await {
                            Ok(how) => how,
                            // Forgotten without a word (the backend left the configuration):
                            // the connection runs on.
                            Err(_) => std::future::pending().await,
                        },
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    how = told => {
                        let _ = why.set(match how {
                            Interrupt::Reset => "backend-down",
                            Interrupt::Close => "rebalanced",
                        });
                        how
                    }
                    _ = shared.cut.cancelled() => {
                        let _ = why.set("drain-timeout");
                        Interrupt::Close
                    }
                }
            };
            let opts = RelayOptions {
                upstream_keepalive: Some(config.timeouts.keepalive),
                upstream_user_timeout: Some(config.timeouts.user_timeout),
                idle_timeout: config.timeouts.idle,
                ..Default::default()
            };
            let (stats, end) = relay_until(client, upstream, opts, stop).await;
            drop(pick);
            if let Some(b) = &backend {
                b.close(id, stats.client_to_upstream, stats.upstream_to_client);
            }
            let Some(back) = open.close() else {
                return;
            };
            hop = back;
            hop.bytes_up = stats.client_to_upstream;
            hop.bytes_down = stats.upstream_to_client;
            hop.outcome = match end {
                RelayEnd::Done => "ok".into(),
                RelayEnd::Stopped(_) => why.get().copied().unwrap_or("idle-timeout").into(),
                RelayEnd::Failed {
                    upstream: true,
                    error,
                } => {
                    if let Some(b) = &backend {
                        pool.observe(b, false, Source::Passive, &format!("connection: {error}"));
                    }
                    "upstream-reset".into()
                }
                RelayEnd::Failed {
                    upstream: false, ..
                } => "client-reset".into(),
            };
        }
    }
    hop.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    shared.admin.hops.record(hop);
}

fn describe_failures(failures: &[DialFailure]) -> String {
    let parts: Vec<String> = failures
        .iter()
        .map(|f| format!("{}: {}", f.addr, f.error))
        .collect();
    format!(
        "after {} failed connect(s): {}",
        failures.len(),
        parts.join(", ")
    )
}
