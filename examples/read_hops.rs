//! Reading hop records from admin endpoints and stitching them into paths.
//!
//! Every proxy in proxylab records each connection (L4) or request (HTTP) it handles — a
//! `HopRecord` — and serves the recent ones as JSON at its admin endpoint's `/debug/hops`. A record
//! names the client address, the listener, the upstream local address and the upstream. One hop's
//! *upstream local address* is the next hop's *client address*, so records of several proxies join
//! into a request's whole path without touching its bytes (an L4 proxy cannot add a header).
//! `proxylab trace` does this for the lab; this program shows the mechanism in ~100 lines.
//!
//! Without arguments it builds a two-proxy path of its own — a forwarder `edge` in front of a
//! Service served by a second forwarder `node-1`, in front of a "pod" — sends three connections
//! through it, reads both admin endpoints over HTTP and prints the stitched paths:
//!
//!     cargo run --example read_hops
//!
//! With arguments it reads the admin endpoints given instead, e.g. a running lab's (their URLs are
//! in `lab.json` under `admin`):
//!
//!     cargo run --example read_hops -- http://127.0.10.1:6444 http://127.0.20.1:10249

use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proxylab_core::cluster::{ClusterSnapshot, ClusterView};
use proxylab_core::telemetry::HopRecord;
use proxylab_forwarder::{Forwarder, ForwarderConfig, Source};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let urls: Vec<String> = std::env::args().skip(1).collect();
    let hops = if urls.is_empty() {
        demo().await?
    } else {
        read_all(&urls).await?
    };
    for path in stitch(&hops) {
        let first = path[0];
        print!("{}", first.client);
        for hop in &path {
            print!(
                " → [{} {} {}] → {}",
                hop.proxy,
                hop.instance,
                hop.listener,
                hop.upstream.map_or("-".to_owned(), |u| u.to_string()),
            );
        }
        let last = path[path.len() - 1];
        println!("  ({}, {} bytes back)", last.outcome, first.bytes_down);
    }
    Ok(())
}

/// Fetches `/debug/hops` from every admin endpoint (`http://host:port`), all records together.
pub async fn read_all(urls: &[String]) -> anyhow::Result<Vec<HopRecord>> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut all = Vec::new();
    for base in urls {
        let url = format!("{}/debug/hops", base.trim_end_matches('/'));
        let resp = client
            .get(url.parse()?)
            .await
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
        let body = resp.into_body().collect().await?.to_bytes();
        let hops: Vec<HopRecord> =
            serde_json::from_slice(&body).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        all.extend(hops);
    }
    Ok(all)
}

/// Joins records into paths: a hop follows another when its client address is the other's
/// upstream local address. Paths start at hops no other hop leads to; oldest first.
pub fn stitch(hops: &[HopRecord]) -> Vec<Vec<&HopRecord>> {
    let is_next = |from: &HopRecord, to: &HopRecord| from.upstream_local == Some(to.client);
    let mut starts: Vec<&HopRecord> = hops
        .iter()
        .filter(|h| !hops.iter().any(|prev| is_next(prev, h)))
        .collect();
    starts.sort_by_key(|h| h.time);
    starts
        .into_iter()
        .map(|start| {
            let mut path = vec![start];
            // Bounded by the number of records: a (broken) cycle cannot loop for ever.
            while path.len() <= hops.len() {
                let last = path[path.len() - 1];
                match hops.iter().find(|h| is_next(last, h)) {
                    Some(next) => path.push(next),
                    None => break,
                }
            }
            path
        })
        .collect()
}

const EDGE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 202, 10);
const WEB_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 202, 20);

/// Two forwarders in a row, three connections through them; returns what their admin endpoints
/// serve.
pub async fn demo() -> anyhow::Result<Vec<HopRecord>> {
    // The "pod": answers `hello` and closes.
    let pod = TcpListener::bind("127.0.0.1:0").await?;
    let pod_addr = pod.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = pod.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(b"hello").await;
            });
        }
    });
    let web = SocketAddr::new(WEB_IP.into(), free_port(WEB_IP).await?);
    let edge = SocketAddr::new(EDGE_IP.into(), free_port(EDGE_IP).await?);

    // node-1 serves Service `web` (its endpoint: the pod); edge serves Service `front`, whose
    // endpoint is web's ClusterIP:port — so a connection to front crosses both.
    let stop = CancellationToken::new();
    let mut admins = Vec::new();
    for (instance, service, endpoint) in [("node-1", web, pod_addr), ("edge", edge, web)] {
        let name = if instance == "edge" { "front" } else { "web" };
        let view = ClusterView::new(
            ClusterSnapshot::from_objects(
                [
                    json!({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": name, "namespace": "default"},
                       "spec": {"clusterIP": service.ip().to_string(),
                                "ports": [{"name": "tcp", "port": service.port()}]}}),
                    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": name, "namespace": "default",
                                    "labels": {"kubernetes.io/service-name": name}},
                       "addressType": "IPv4",
                       "ports": [{"name": "tcp", "port": endpoint.port()}],
                       "endpoints": [{"addresses": [endpoint.ip().to_string()]}]}),
                ]
                .iter(),
            )
            .map_err(|(i, e)| anyhow::anyhow!("object {i}: {e}"))?,
        );
        let mut config = ForwarderConfig::new(Source::View(view.clone()));
        config.instance = Some(instance.into());
        config.admin_address = Some("127.0.0.1:0".parse()?);
        let forwarder = Forwarder::bind(config).await?;
        let admin = forwarder.local_addrs().admin;
        let admin = admin.ok_or_else(|| anyhow::anyhow!("{instance}: no admin endpoint"))?;
        admins.push(format!("http://{admin}"));
        let handle = forwarder.handle();
        tokio::spawn(forwarder.serve(stop.clone()));
        handle.applied(view.snapshot().revision).await;
    }

    for _ in 0..3 {
        let mut c = TcpStream::connect(edge).await?;
        let mut answer = String::new();
        c.read_to_string(&mut answer).await?;
        anyhow::ensure!(answer == "hello", "unexpected answer {answer:?}");
    }
    // Each forwarder records a connection when its relay has ended, a moment after the client
    // read the answer: wait for all six records.
    let mut hops = Vec::new();
    for _ in 0..2000 {
        hops = read_all(&admins).await?;
        if hops.len() >= 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.cancel();
    Ok(hops)
}

/// A port free on `ip` now.
async fn free_port(ip: Ipv4Addr) -> anyhow::Result<u16> {
    Ok(TcpListener::bind((ip, 0)).await?.local_addr()?.port())
}
