//! The forwarder's relay in your own program: a small TCP load balancer built from the pieces
//! kube-proxy's model is made of in `proxylab-core` — a [`Balancer`] (round-robin, as kube-proxy),
//! [`tcp::dial`] with kube-proxy's retry schedule (a dead endpoint is skipped within the same
//! connection), [`tcp::relay`] (half-close kept, `splice(2)` on Linux) and a hop record per
//! connection ([`HopLog`]), the record `/debug/hops` serves.
//!
//! It starts three backends that answer with their names, stops one of them, and sends six
//! connections through the balancer: every one is answered, and the hop records say which backend
//! each reached and which dial failed on the way.
//!
//!     cargo run --example embed_relay

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use proxylab_core::balance::{Algorithm, Balancer};
use proxylab_core::l4::tcp::{self, KUBE_PROXY_DIAL_TIMEOUTS, RelayOptions};
use proxylab_core::telemetry::{HopLog, HopRecord, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    for hop in demo().await? {
        println!(
            "{} → {} → {}: {} ({}), {} bytes up, {} down",
            hop.client,
            hop.listener,
            hop.endpoint.as_deref().unwrap_or("-"),
            hop.outcome,
            hop.reason.as_deref().unwrap_or("-"),
            hop.bytes_up,
            hop.bytes_down,
        );
    }
    Ok(())
}

/// A backend that writes its name and closes.
async fn named_backend(name: &'static str) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(name.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

/// One accepted connection: pick, dial (the next endpoint on failure), relay, record.
async fn serve_one(
    client: tokio::net::TcpStream,
    peer: SocketAddr,
    balancer: Arc<Balancer>,
    hops: Arc<HopLog>,
) {
    let started = Instant::now();
    let listener = client.local_addr().unwrap_or(peer);
    let mut hop = HopRecord::start("embedded-relay", "example", "tcp", peer, listener);
    let dialled = tcp::dial(&KUBE_PROXY_DIAL_TIMEOUTS, |tried| {
        balancer.pick(Some(peer.ip()), tried).map(|p| (p.addr, p))
    })
    .await;
    match dialled {
        Ok((upstream, pick, failures)) => {
            hop.upstream_local = upstream.local_addr().ok();
            hop.upstream = Some(pick.addr);
            hop.endpoint = Some(pick.addr.to_string());
            let mut reason = pick.reason.to_string();
            for f in &failures {
                reason.push_str(&format!("; {} failed: {}", f.addr, f.error));
            }
            hop.reason = Some(reason);
            let (stats, result) = tcp::relay(client, upstream, RelayOptions::default()).await;
            hop.bytes_up = stats.client_to_upstream;
            hop.bytes_down = stats.upstream_to_client;
            if result.is_err() {
                hop.outcome = "upstream-reset".into();
            }
            drop(pick);
        }
        Err(e) => {
            hop.outcome = "connect-failed".into();
            hop.reason = Some(e.to_string());
        }
    }
    hop.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    hops.record(hop);
}

/// Runs the demonstration and returns the hop records, one per connection.
pub async fn demo() -> anyhow::Result<Vec<HopRecord>> {
    let a = named_backend("backend-a").await?;
    let b = named_backend("backend-b").await?;
    // A third endpoint that is gone: its port was taken and released, so a dial is refused.
    let gone = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;

    let balancer = Arc::new(Balancer::new(Algorithm::RoundRobin, None));
    balancer.update(&[a, b, gone]);
    let hops = HopLog::new(64, &Metrics::new());

    let front = TcpListener::bind("127.0.0.1:0").await?;
    let front_addr = front.local_addr()?;
    {
        let (balancer, hops) = (balancer.clone(), hops.clone());
        tokio::spawn(async move {
            while let Ok((client, peer)) = front.accept().await {
                tokio::spawn(serve_one(client, peer, balancer.clone(), hops.clone()));
            }
        });
    }

    for _ in 0..6 {
        let mut c = tokio::net::TcpStream::connect(front_addr).await?;
        let mut answer = String::new();
        c.read_to_string(&mut answer).await?;
        anyhow::ensure!(
            answer == "backend-a" || answer == "backend-b",
            "unexpected answer {answer:?}"
        );
    }
    // A hop is recorded when its relay has ended, a moment after the client read its answer.
    for _ in 0..2000 {
        if hops.recent(64).len() == 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(hops.recent(64))
}
