//! Your own source of truth feeding the forwarder (kube-proxy's model) through a [`ClusterView`].
//!
//! Proxies in proxylab do not route on a list of backends: they route on the cluster model of
//! `proxylab_core::cluster` — Services, EndpointSlices (with `ready` conditions), Nodes, Pods —
//! held in a [`ClusterView`]. The lab feeds it from its apiserver's watches, the `forwarder` binary
//! from a manifest file or a kubeconfig; here the program feeds it itself, with plain Rust values
//! and no Kubernetes at all (think of a service registry or a config database of your own).
//!
//! The story it prints:
//! 1. a Service `shop/catalog` with three ready endpoints: the forwarder opens a listener on the
//!    Service's ClusterIP:port and spreads connections round-robin over the three;
//! 2. `catalog-2` turns not ready in the view: new connections skip it, without a restart;
//! 3. a second Service appears: its listener opens;
//! 4. `shop/catalog` is removed: its listener closes (the connection is refused).
//!
//!     cargo run --example custom_cluster_view
//!
//! The endpoints listen on 127.0.200.21–23 and the ClusterIPs are 127.0.200.10–11: on Linux the
//! whole of 127.0.0.0/8 is the loopback, so no set-up is needed.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proxylab_core::cluster::{
    ClusterObject, ClusterSnapshot, ClusterView, Endpoint, EndpointConditions, EndpointPort,
    EndpointSlice, ObjectKind, Protocol, Service, ServicePort, ServiceType, SessionAffinity,
    TargetPort, TrafficPolicy,
};
use proxylab_forwarder::{Forwarder, ForwarderConfig, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let story = demo().await?;
    println!(
        "1. {} answered {} times, by {:?}",
        story.catalog,
        story.all_ready.len(),
        distinct(&story.all_ready)
    );
    println!(
        "2. catalog-2 not ready: {} answers, by {:?}",
        story.one_unready.len(),
        distinct(&story.one_unready)
    );
    println!(
        "3. {} answered: {:?}",
        story.checkout, story.checkout_answer
    );
    println!("   listeners: {:?}", story.listeners);
    println!(
        "4. catalog removed, connecting to it: {}",
        story.after_removal
    );
    Ok(())
}

/// What the demonstration saw.
#[derive(Debug)]
pub struct Story {
    /// `shop/catalog`'s ClusterIP:port.
    pub catalog: SocketAddr,
    /// The answers of six connections to it with all three endpoints ready.
    pub all_ready: Vec<String>,
    /// The answers of six connections after `catalog-2` turned not ready.
    pub one_unready: Vec<String>,
    /// `shop/checkout`'s ClusterIP:port, and the answer through it.
    pub checkout: SocketAddr,
    pub checkout_answer: String,
    /// The forwarder's listeners once both services exist.
    pub listeners: Vec<SocketAddr>,
    /// What connecting to `shop/catalog` did once it was removed (an error message).
    pub after_removal: String,
}

const CATALOG_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 200, 10);
const CHECKOUT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 200, 11);
const POD_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 200, 21),
    Ipv4Addr::new(127, 0, 200, 22),
    Ipv4Addr::new(127, 0, 200, 23),
];

/// Runs the four steps and reports what each connection got.
pub async fn demo() -> anyhow::Result<Story> {
    // Three "pods", one per address, all on the same port: one EndpointSlice port fits them all,
    // as with real pods.
    let (pod_port, pods) = start_pods().await?;
    // Ports for the two Services, free on their ClusterIPs now (the kernel picks them).
    let catalog = SocketAddr::new(CATALOG_IP.into(), free_port(CATALOG_IP).await?);
    let checkout = SocketAddr::new(CHECKOUT_IP.into(), free_port(CHECKOUT_IP).await?);

    // The model, from our own data. `synced: true` says the source has delivered its first
    // complete picture; a forwarder does not call itself ready before.
    let mut snapshot = ClusterSnapshot {
        synced: true,
        ..ClusterSnapshot::default()
    };
    snapshot.apply(ClusterObject::Service(service("catalog", catalog)));
    snapshot.apply(ClusterObject::EndpointSlice(slice(
        "catalog",
        pod_port,
        &[(&pods[0], true), (&pods[1], true), (&pods[2], true)],
    )));
    let view = ClusterView::new(snapshot);

    // The forwarder routes on the view as given: `Source::View` means "someone else feeds it".
    let forwarder = Forwarder::bind(ForwarderConfig::new(Source::View(view.clone()))).await?;
    let handle = forwarder.handle();
    let stop = CancellationToken::new();
    let serving = tokio::spawn(forwarder.serve(stop.clone()));
    // Every change to the view gets a revision; `applied` waits until the forwarder's listeners
    // and balancers are in line with it.
    handle.applied(view.snapshot().revision).await;

    let mut all_ready = Vec::new();
    for _ in 0..6 {
        all_ready.push(ask(catalog).await?);
    }

    // 2. One endpoint turns not ready: publish a new slice. Readers never see half a change.
    view.update(|s| {
        s.apply(ClusterObject::EndpointSlice(slice(
            "catalog",
            pod_port,
            &[(&pods[0], true), (&pods[1], false), (&pods[2], true)],
        )))
    });
    handle.applied(view.snapshot().revision).await;
    let mut one_unready = Vec::new();
    for _ in 0..6 {
        one_unready.push(ask(catalog).await?);
    }

    // 3. A second service, served by the third pod only.
    view.update(|s| {
        s.apply(ClusterObject::Service(service("checkout", checkout)));
        s.apply(ClusterObject::EndpointSlice(slice(
            "checkout",
            pod_port,
            &[(&pods[2], true)],
        )));
    });
    handle.applied(view.snapshot().revision).await;
    let checkout_answer = ask(checkout).await?;
    let listeners = handle.listeners().iter().map(|l| l.addr).collect();

    // 4. The first service goes away: its listener closes, established connections (none here)
    // would have been left alone.
    view.update(|s| {
        s.remove(ObjectKind::Service, "shop", "catalog");
        s.remove(ObjectKind::EndpointSlice, "shop", "catalog-1");
    });
    handle.applied(view.snapshot().revision).await;
    let listeners_after: Vec<SocketAddr> = handle.listeners().iter().map(|l| l.addr).collect();
    anyhow::ensure!(
        !listeners_after.contains(&catalog),
        "{catalog} is still listed: {listeners_after:?}"
    );
    // `applied` means the forwarder has let go of the listener; its accept loop drops the socket
    // on its next turn, a moment later. Until then a connection may still be served.
    let mut after_removal = String::new();
    for _ in 0..2000 {
        match ask(catalog).await {
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            Err(e) => {
                after_removal = e.to_string();
                break;
            }
        }
    }

    stop.cancel();
    serving.await??;
    Ok(Story {
        catalog,
        all_ready,
        one_unready,
        checkout,
        checkout_answer,
        listeners,
        after_removal,
    })
}

/// A ClusterIP Service in namespace `shop` with one TCP port named `http`.
fn service(name: &str, cluster: SocketAddr) -> Service {
    Service {
        namespace: "shop".into(),
        name: name.into(),
        type_: ServiceType::ClusterIP,
        cluster_ips: vec![cluster.ip()],
        external_ips: Vec::new(),
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: cluster.port(),
            // Proxies take the port from the EndpointSlice; `targetPort` is the controller's input.
            target_port: TargetPort::Name("http".into()),
            node_port: None,
        }],
        session_affinity: SessionAffinity::None,
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        health_check_node_port: None,
        load_balancer_ingress: Vec::new(),
        load_balancer_source_ranges: Vec::new(),
        selector: Default::default(),
        external_name: None,
    }
}

/// The EndpointSlice `<service>-1` of a service: each pod with its readiness, on port `port`
/// named `http` (the name ties it to the Service's port).
fn slice(service: &str, port: u16, pods: &[(&IpAddr, bool)]) -> EndpointSlice {
    EndpointSlice {
        namespace: "shop".into(),
        name: format!("{service}-1"),
        // The `kubernetes.io/service-name` label: which Service these endpoints belong to.
        service_name: Some(service.into()),
        address_type: "IPv4".into(),
        ports: vec![EndpointPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port,
        }],
        endpoints: pods
            .iter()
            .map(|(ip, ready)| Endpoint {
                addresses: vec![**ip],
                conditions: EndpointConditions {
                    ready: *ready,
                    serving: *ready,
                    terminating: false,
                },
                node_name: None,
                zone: None,
                hint_zones: Vec::new(),
                hint_nodes: Vec::new(),
                target_ref: None,
            })
            .collect(),
    }
}

/// Three servers that write their name (`catalog-1`…) and close, on the same port of three
/// addresses. Returns the port and the addresses.
async fn start_pods() -> anyhow::Result<(u16, Vec<IpAddr>)> {
    // The first bind picks a free port; the others take the same one on their own address (free
    // there too, unless another program chose the same: then try again with another port).
    'attempt: for _ in 0..10 {
        let first = TcpListener::bind((POD_IPS[0], 0)).await?;
        let port = first.local_addr()?.port();
        let mut listeners = vec![first];
        for ip in &POD_IPS[1..] {
            match TcpListener::bind((*ip, port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'attempt,
            }
        }
        for (i, l) in listeners.into_iter().enumerate() {
            let name = format!("catalog-{}", i + 1);
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let name = name.clone();
                    tokio::spawn(async move {
                        let _ = s.write_all(name.as_bytes()).await;
                    });
                }
            });
        }
        return Ok((port, POD_IPS.iter().map(|ip| IpAddr::V4(*ip)).collect()));
    }
    anyhow::bail!("no port was free on all of {POD_IPS:?}")
}

/// A port free on `ip` now.
async fn free_port(ip: Ipv4Addr) -> anyhow::Result<u16> {
    Ok(TcpListener::bind((ip, 0)).await?.local_addr()?.port())
}

/// Connects, reads the answer until the server closes.
async fn ask(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| anyhow::anyhow!("connect to {addr}: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).await?;
    Ok(answer)
}

/// The distinct answers, sorted.
pub fn distinct(answers: &[String]) -> BTreeSet<&str> {
    answers.iter().map(String::as_str).collect()
}
