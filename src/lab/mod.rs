//! `proxylab lab up`: the whole lab in one process.
//!
//! The lab is assembled exactly as a cluster is: a store (the lab's etcd), several apiserver
//! front-ends over it, the controllers and scheduler, kubelet-like nodes, a forwarder (kube-proxy) per
//! node and the auth-proxy (kubectl proxy). Components talk to each other only through the Kubernetes
//! API, with the same flags they take as separate processes — `lab up` builds each one's command
//! line and prints it, so what the lab runs can be re-run by hand, one process per component.
//!
//! Start-up order: the topology, checked whole (`topology`) → the state dir's lock (`state`; nothing in
//! the directory changes before it is ours) → the lab's admin endpoint (`admin`) → PKI, token and
//! kubeconfig (reused when present) → the store, loaded from the state dir → apiservers, controllers →
//! nodes → the topology's missing objects (created through the apiserver, so admission allocates
//! ClusterIPs and NodePorts as for any client) → forwarders, the auth-proxy and cloud-lb (`cloud_lb`) → readiness checks, which
//! dial from the prober's address `127.0.0.254` → `lab.json`, written last, so a script that waits for
//! it knows everything answers.

pub mod admin;
pub mod bastion;
pub mod cloud_lb;
pub mod control;
pub mod ha;
pub mod kubeconfig;
pub mod page;
pub mod state;
pub mod topology;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use proxylab_core::tls::pki::PkiSpec;
use proxylab_store::{MemoryStore, Store};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use topology::Topology;

/// `proxylab lab up` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LabUpArgs {
    /// Where the lab writes `pki/`, `kubeconfig`, `tokens.csv` and, once everything answers, `lab.json`.
    #[arg(long, default_value = ".lab")]
    pub state_dir: PathBuf,
    /// A topology file (Kubernetes YAML: one `Lab` document plus objects). Default: the built-in one,
    /// `lab/topology.yaml` in the repository.
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Exit once the lab is ready instead of serving until SIGINT/SIGTERM (for timing start-up).
    #[arg(long, hide = true)]
    pub exit_when_ready: bool,
    /// Start with an empty store: the objects of the last run are dropped (the PKI and the
    /// kubeconfig are kept, so clients keep working).
    #[arg(long)]
    pub fresh: bool,
}

/// What went wrong, split by who must act: a bad topology is the user's file (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Topology(#[from] topology::TopologyError),
    #[error(transparent)]
    Busy(state::Busy),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// Parses clap flags for an embedded component, as its own binary would.
fn parse_flags<T: clap::Args>(name: &str, flags: &[String]) -> anyhow::Result<T> {
    #[derive(Parser)]
    struct Wrap<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }
    let argv = std::iter::once(name.to_owned()).chain(flags.iter().cloned());
    Wrap::<T>::try_parse_from(argv)
        .map(|w| w.args)
        .with_context(|| format!("internal: {name} flags {flags:?}"))
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Runs `lab up` until shutdown.
pub async fn up(args: LabUpArgs, shutdown: CancellationToken) -> Result<(), LabError> {
    let started = Instant::now();
    let topo = topology::load(args.topology.as_deref())?;
    let lab = &topo.lab;
    let admin_url = format!("http://{}", lab.admin);
    // The lock first: until it is ours, nothing in the directory may change.
    let state = match state::StateDir::claim(&absolute(&args.state_dir)?, &admin_url) {
        Ok(s) => s,
        Err(state::ClaimError::Busy(b)) => return Err(LabError::Busy(b)),
        Err(state::ClaimError::Other(e)) => return Err(e.into()),
    };
    // A lab.json here describes a lab that is not running (we hold the lock): remove it before
    // anything can fail, so a script never waits on a dead lab's file.
    let lab_json = state.lab_json();
    match std::fs::remove_file(&lab_json) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(
                anyhow::anyhow!("cannot remove the stale {}: {e}", lab_json.display()).into(),
            );
        }
        _ => {}
    }

    let mut tasks: JoinSet<(String, anyhow::Result<()>)> = JoinSet::new();

    // --- the lab's own admin endpoint, first: it answers while the rest starts ------------------
    let admin = admin::LabAdmin::new();
    let admin_listener = admin::LabAdmin::bind(lab.admin).map_err(anyhow::Error::from)?;
    {
        let (admin, token) = (admin.clone(), shutdown.clone());
        tasks.spawn(async move {
            (
                "lab admin endpoint".into(),
                admin
                    .serve(admin_listener, token)
                    .await
                    .map_err(anyhow::Error::from),
            )
        });
    }

    // --- PKI, tokens, kubeconfig: reused when present, so clients keep working ------------------
    let pki_dir = state.pki_dir();
    let mut apiserver_ips: Vec<_> = lab.apiservers.iter().map(|a| a.ip()).collect();
    apiserver_ips.push(lab.auth_proxy.ip());
    // TLS passes through the HA balancer: the apiservers' certificate must name its address too.
    apiserver_ips.push(lab.ha_balancer.ip());
    let (pki, pki_reused) = state.pki(&PkiSpec {
        apiserver_ips,
        apiserver_dns: vec![],
        nodes: lab
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.address))
            .collect(),
    })?;
    let token = state.token()?;
    let tokens_csv = state.tokens_csv();
    // Every client of the lab, its own components included, reaches the apiservers through the
    // HA balancer, as in a kubeadm HA cluster (the "control-plane endpoint").
    let server_url = format!("https://{}", lab.ha_balancer);
    let kubeconfig_path = state.kubeconfig();
    state::write_private(
        &kubeconfig_path,
        &kubeconfig::render(
            &server_url,
            &pki.ca.cert_pem,
            &pki.admin.cert_pem,
            &pki.admin.key_pem,
            &token,
        ),
    )
    .context("writing the kubeconfig")?;

    // --- the store (the lab's etcd), saved in the state dir ------------------------------------
    let store_dir = state.store_dir();
    if args.fresh {
        proxylab_store::journal::remove_files(&store_dir)
            .with_context(|| format!("--fresh: emptying {}", store_dir.display()))?;
    }
    let (store, loaded) = MemoryStore::open(&store_dir, 100_000)
        .context("opening the lab store (remove the directory, or use --fresh, to start empty)")?;
    info!(
        objects = loaded.objects,
        resource_version = loaded.resource_version,
        pki_reused,
        "state loaded"
    );
    if loaded.torn_tail {
        warn!("the store's last record was cut short by a crash and was dropped");
    }
    let store: Arc<dyn Store> = Arc::new(store);
    admin.set_store(store.clone());

    // --- apiservers, controllers ----------------------------------------------------------------
    let p = |name: &str| path(&pki_dir.join(name));
    let mut apiserver_flags: Vec<String> = vec![
        format!(
            "--bind-address={}",
            lab.apiservers
                .iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        format!("--secure-port={}", lab.apiservers[0].port()),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        format!("--client-ca-file={}", p("ca.crt")),
        format!("--token-auth-file={}", path(&tokens_csv)),
        format!("--service-account-key-file={}", p("sa.pub")),
        format!("--service-account-signing-key-file={}", p("sa.key")),
        format!("--requestheader-client-ca-file={}", p("front-proxy-ca.crt")),
        "--requestheader-allowed-names=front-proxy-client".into(),
        format!(
            "--kubelet-client-certificate={}",
            p("apiserver-kubelet-client.crt")
        ),
        format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")),
        format!(
            "--service-cluster-ip-range={}",
            lab.service_cluster_ip_range
        ),
        format!(
            "--service-node-port-range={}-{}",
            lab.service_node_port_range.0, lab.service_node_port_range.1
        ),
    ];
    apiserver_flags.extend(bastion::apiserver_flags(lab, p));
    let apiserver_args: proxylab_apiserver::ApiServerArgs =
        parse_flags("apiserver", &apiserver_flags)?;
    let mut apiserver_config = apiserver_args
        .to_config()
        .context("apiserver configuration")?;
    bastion::name_instances(lab, &mut apiserver_config);
    let apiserver = proxylab_apiserver::ApiServer::bind(apiserver_config, store.clone())
        .await
        .context("starting the apiservers")?;
    let apiserver_addrs = apiserver.local_addrs();
    ha::register_apiservers(&admin, lab, apiserver.switches());
    bastion::serve_admin(&apiserver, &mut tasks, &shutdown)?;
    {
        let token = shutdown.clone();
        tasks.spawn(async move {
            (
                "apiserver".into(),
                apiserver.serve(token).await.map_err(anyhow::Error::from),
            )
        });
    }
    let controllers = proxylab_controllers::ControllerManager::new(
        store.clone(),
        proxylab_controllers::ControllersConfig {
            ca_pem: pki.ca.cert_pem.clone(),
            sa_signing_key_pkcs8_pem: pki.service_account_key_pem.clone(),
            ..Default::default()
        },
    )
    .context("starting the controllers")?;
    {
        let token = shutdown.clone();
        tasks.spawn(async move {
            controllers.run(token).await;
            ("controllers".into(), Ok(()))
        });
    }

    // --- the HA balancer in front of them (proxy type 4) -----------------------------------------
    let ha_flags = ha::flags(lab, &pki_dir.join("ca.crt"));
    ha::start(&ha_flags, &mut tasks, &shutdown).await?;

    let client = client::ApiClient::new(&kubeconfig_path)
        .await
        .context("lab API client")?;
    client
        .wait_ready(Duration::from_secs(10))
        .await
        .context("apiserver readiness")?;

    // --- nodes -------------------------------------------------------------------------------
    let mut printed: Vec<String> = vec![
        format!("proxylab apiserver {}", apiserver_flags.join(" ")),
        format!("ha-balancer {}", ha_flags.join(" ")),
    ];
    // Each node talks to the apiserver as itself (`system:node:<name>`), not as the admin, so the
    // apiserver's request log says which node made each call.
    let mut node_kubeconfigs = std::collections::BTreeMap::new();
    for node in &lab.nodes {
        let cert = pki
            .node_clients
            .get(&node.name)
            .with_context(|| format!("no client certificate for node {}", node.name))?;
        let file = state.dir.join(format!("kubeconfig-{}", node.name));
        state::write_private(
            &file,
            &kubeconfig::render(
                &server_url,
                &pki.ca.cert_pem,
                &cert.cert_pem,
                &cert.key_pem,
                "",
            ),
        )?;
        node_kubeconfigs.insert(node.name.clone(), file);
    }
    for node in &lab.nodes {
        let flags = vec![
            format!("--kubeconfig={}", path(&node_kubeconfigs[&node.name])),
            format!("--hostname-override={}", node.name),
            format!("--node-ip={}", node.address),
            format!("--pod-cidr={}", node.pod_cidr),
            format!(
                "--tls-cert-file={}",
                p(&format!("kubelet-{}.crt", node.name))
            ),
            format!(
                "--tls-private-key-file={}",
                p(&format!("kubelet-{}.key", node.name))
            ),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--workload-ca-cert-file={}", p("ca.crt")),
            format!("--workload-ca-key-file={}", p("ca.key")),
        ];
        let node_args: proxylab_node::NodeArgs = parse_flags("node", &flags)?;
        let config = node_args
            .into_config()
            .with_context(|| format!("node {} configuration", node.name))?;
        let bound = proxylab_node::Node::bind(config)
            .await
            .with_context(|| format!("starting node {}", node.name))?;
        let token = shutdown.clone();
        let name = node.name.clone();
        tasks.spawn(async move {
            (
                format!("node {name}"),
                bound.serve(token).await.map_err(anyhow::Error::from),
            )
        });
        printed.push(format!("proxylab node {}", flags.join(" ")));
    }

    // Nodes register before any pod exists, so the scheduler spreads pods over all of them
    // instead of binding everything to whichever node registered first.
    wait_until_ready(
        &*store,
        &lab.nodes,
        &BTreeSet::new(),
        Duration::from_secs(30),
    )
    .await
    .context("waiting for the nodes to become Ready")?;

    // --- the topology's objects, through the apiserver ----------------------------------------
    // Objects kept from the last run stay as they are (a user may have changed them): only the
    // missing ones are created, as `kubectl create` would.
    let mut kept = 0usize;
    for obj in &topo.objects {
        if !client
            .create(obj)
            .await
            .with_context(|| describe_obj(obj))?
        {
            kept += 1;
        }
    }
    if kept > 0 {
        info!(kept, "topology objects kept from the last run");
    }

    // --- a forwarder (kube-proxy) per node, and the auth-proxy (kubectl proxy) ------------------
    // Every forwarder watches the apiserver as kube-proxy does. On one machine all nodes share the
    // loopback "network": the forwarders share one exclusive socket per ClusterIP (a ListenerSet),
    // and a client is served by its node's forwarder (a node address or pod CIDR; anyone else:
    // node-1's, started first), so affinity holds. Each dials pods from its node's address and
    // marks the lab prober's connections as probes. NodePorts and healthz listen on each node's
    // own address.
    let service_sockets = proxylab_forwarder::ListenerSet::new();
    let mut forwarder_handles = Vec::new();
    for node in &lab.nodes {
        let flags = vec![
            format!("--kubeconfig={}", path(&node_kubeconfigs[&node.name])),
            format!("--node-name={}", node.name),
            format!("--node-ip={}", node.address),
            format!("--source-address={}", node.address),
            format!("--healthz-bind-address={}:10256", node.address),
            format!("--admin-address={}:10249", node.address),
        ];
        let fargs: proxylab_forwarder::ForwarderArgs = parse_flags("forwarder", &flags)?;
        let mut fconfig = fargs.to_config();
        fconfig.listeners = Some(service_sockets.clone());
        let bound = proxylab_forwarder::Forwarder::bind(fconfig)
            .await
            .with_context(|| format!("starting the forwarder on {}", node.name))?;
        bound
            .handle()
            .admin()
            .hops
            .set_probe_clients([topology::PROBER_ADDRESS]);
        forwarder_handles.push(bound.handle());
        let token = shutdown.clone();
        let name = node.name.clone();
        tasks.spawn(async move {
            (
                format!("forwarder {name}"),
                bound.serve(token).await.map_err(anyhow::Error::from),
            )
        });
        printed.push(format!("forwarder {}", flags.join(" ")));
    }
    let auth_flags = vec![
        format!("--kubeconfig={}", path(&kubeconfig_path)),
        format!("--address={}", lab.auth_proxy.ip()),
        format!("--port={}", lab.auth_proxy.port()),
        // kubectl proxy's Host check, widened by the lab's own address when it is not 127.0.0.1.
        format!(
            "--accept-hosts=^localhost$,^127\\.0\\.0\\.1$,^\\[::1\\]$,^{}$",
            regex_escape(&lab.auth_proxy.ip().to_string())
        ),
    ];
    let aargs: proxylab_auth_proxy::AuthProxyArgs = parse_flags("auth-proxy", &auth_flags)?;
    let mut aconfig = proxylab_auth_proxy::AuthProxyConfig::from_args(&aargs)
        .await
        .context("auth-proxy configuration")?;
    // The auth-proxy's admin endpoint (hops, metrics) next to it, on port 8002 of its address.
    let auth_admin = proxylab_core::telemetry::AdminState::new();
    aconfig.hops = Some(auth_admin.hops.clone());
    let auth_admin_addr = lab.auth_proxy_admin();
    let auth_admin_listener = proxylab_core::runtime::bind_tcp(auth_admin_addr, Default::default())
        .context("auth-proxy admin endpoint")?;
    auth_admin.set_ready(true);
    {
        let token = shutdown.clone();
        let router = proxylab_core::telemetry::admin_router(auth_admin);
        tasks.spawn(async move {
            (
                "auth-proxy admin".into(),
                proxylab_core::serve::serve_http_with(
                    auth_admin_listener,
                    None,
                    router,
                    token,
                    proxylab_core::serve::ServeOptions::admin(),
                )
                .await
                .map_err(anyhow::Error::from),
            )
        });
    }
    let auth_proxy = proxylab_auth_proxy::AuthProxy::bind(aconfig)
        .await
        .context("starting the auth-proxy")?;
    {
        let token = shutdown.clone();
        tasks.spawn(async move {
            (
                "auth-proxy".into(),
                auth_proxy.serve(token).await.map_err(anyhow::Error::from),
            )
        });
    }
    printed.push(format!("auth-proxy {}", auth_flags.join(" ")));
    // --- the cloud load balancer (proxy type 5): EXTERNAL-IPs for LoadBalancer Services ---------
    let (cloud_lb, cloud_lb_cmd) =
        cloud_lb::start(lab, &kubeconfig_path, &state.dir, &mut tasks, &shutdown).await?;
    printed.push(cloud_lb_cmd);

    // --- wait until the lab answers --------------------------------------------------------------
    let expected_pods: BTreeSet<(String, String)> = topo
        .objects
        .iter()
        .filter(|o| o["kind"] == "Pod")
        .map(|o| {
            (
                o.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    .to_owned(),
                o.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    wait_until_ready(&*store, &lab.nodes, &expected_pods, Duration::from_secs(30))
        .await
        .context("waiting for the lab to become ready")?;

    wait_for_service_listeners(&*store, Duration::from_secs(30))
        .await
        .context("waiting for the forwarders' service listeners")?;
    wait_for_http(lab.auth_proxy, "/api/", Duration::from_secs(10))
        .await
        .context("waiting for the auth-proxy")?;
    cloud_lb::wait_ready(&cloud_lb, Duration::from_secs(30))
        .await
        .context("waiting for cloud-lb")?;
    drop((forwarder_handles, cloud_lb));

    let ready_in = started.elapsed();
    let info = lab_info(&*store, &topo, &kubeconfig_path, &token, &apiserver_addrs)?;
    admin.set_info(info.clone());
    write_atomically(
        &lab_json,
        &serde_json::to_string_pretty(&info).unwrap_or_default(),
    )?;
    print_summary(&state.dir, &info, ready_in, &printed);
    info!(ready_ms = ready_in.as_millis() as u64, "lab ready");

    if args.exit_when_ready {
        shutdown.cancel();
    }
    // Serve until a signal, or until a component fails (which takes the lab down: a half-lab teaches
    // the wrong lessons).
    let mut failed: Option<String> = None;
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {}
        Some(res) = tasks.join_next() => {
            match res {
                Ok((name, Err(e))) => failed = Some(format!("{name} failed: {}", crate::error_chain(&e))),
                // A component that returns cleanly because shutdown began (the signal raced this
                // branch) is not a failure.
                Ok((_, Ok(()))) if shutdown.is_cancelled() => {}
                Ok((name, Ok(()))) => failed = Some(format!("{name} stopped unexpectedly")),
                Err(e) => failed = Some(format!("a component panicked: {e}")),
            }
            shutdown.cancel();
        }
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        warn!("components did not stop within 10 s");
    }
    let _ = std::fs::remove_file(&lab_json);
    match failed {
        Some(msg) => Err(anyhow::anyhow!(msg).into()),
        None => {
            eprintln!("lab stopped");
            Ok(())
        }
    }
}

fn regex_escape(s: &str) -> String {
    s.replace('.', "\\.")
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_owned())
    } else {
        Ok(std::env::current_dir()
            .context("current directory")?
            .join(p))
    }
}

fn describe_obj(obj: &Value) -> String {
    format!(
        "creating {} {}/{}",
        obj["kind"].as_str().unwrap_or("?"),
        obj.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default"),
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
    )
}

fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

async fn wait_until_ready(
    store: &dyn Store,
    nodes: &[topology::NodeSpec],
    pods: &BTreeSet<(String, String)>,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let mut missing = Vec::new();
        let (node_objs, _) = store.list("nodes", None)?;
        for n in nodes {
            let ready = node_objs.iter().any(|o| {
                o.pointer("/metadata/name").and_then(Value::as_str) == Some(n.name.as_str())
                    && condition_true(o, "Ready")
            });
            if !ready {
                missing.push(format!("node {} Ready", n.name));
            }
        }
        let (pod_objs, _) = store.list("pods", None)?;
        for (ns, name) in pods {
            let running = pod_objs.iter().any(|o| {
                o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns.as_str())
                    && o.pointer("/metadata/name").and_then(Value::as_str) == Some(name.as_str())
                    && condition_true(o, "Ready")
            });
            if !running {
                missing.push(format!("pod {ns}/{name} Ready"));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("still waiting for: {}", missing.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every TCP ClusterIP:port of every service accepts a connection: the forwarders have caught up with
/// the apiserver.
async fn wait_for_service_listeners(store: &dyn Store, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let (services, _) = store.list("services", None)?;
    let mut targets = Vec::new();
    for s in &services {
        let Some(ip) = s
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        else {
            continue;
        };
        // The `kubernetes` service points at the apiservers; it is served like any other.
        for p in s
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let tcp = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == "TCP";
            if let (true, Some(port)) = (tcp, p.get("port").and_then(Value::as_u64)) {
                targets.push(SocketAddr::new(ip, port as u16));
            }
        }
    }
    for addr in targets {
        loop {
            if probe_connect(addr).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                if addr.port() < 1024 {
                    bail!(
                        "nothing listens on service address {addr}: ports below 1024 need root, \
                         CAP_NET_BIND_SERVICE, or `sysctl net.ipv4.ip_unprivileged_port_start=0` \
                         (see the forwarder's log above)"
                    );
                }
                bail!("nothing listens on service address {addr} (see the forwarder's log above)");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Connects as the lab's readiness prober: from [`topology::PROBER_ADDRESS`], so the proxies on the
/// way can tell (and `/debug/hops` can leave out) the lab's own probes, and only to loopback — the
/// lab never dials off this machine, whatever an object in the store says.
async fn probe_connect(addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("the lab does not probe {addr}: outside 127.0.0.0/8"),
        ));
    }
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(topology::PROBER_ADDRESS, 0))?;
    socket.connect(addr).await
}

/// An HTTP GET answers 200.
async fn wait_for_http(addr: SocketAddr, path: &str, limit: Duration) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(mut s) = probe_connect(addr).await {
            let req =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.write_all(req.as_bytes()).await.is_ok()
                && s.read_exact(&mut buf).await.is_ok()
                && buf.starts_with(b"HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("http://{addr}{path} does not answer 200");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn condition_true(obj: &Value, kind: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

fn lab_info(
    store: &dyn Store,
    topo: &Topology,
    kubeconfig: &Path,
    token: &str,
    apiservers: &[SocketAddr],
) -> anyhow::Result<Value> {
    let (services, _) = store.list("services", None)?;
    let services: Vec<Value> = services
        .iter()
        .map(|s| {
            let ports: Vec<Value> = s
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            json!({
                                "name": p.get("name").cloned().unwrap_or(Value::Null),
                                "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP")),
                                "port": p.get("port").cloned().unwrap_or(Value::Null),
                                "nodePort": p.get("nodePort").cloned().unwrap_or(Value::Null),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let ingress: Vec<Value> = s
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|i| i.iter().filter_map(|e| e.get("ip").cloned()).collect())
                .unwrap_or_default();
            json!({
                "namespace": s.pointer("/metadata/namespace"),
                "name": s.pointer("/metadata/name"),
                "type": s.pointer("/spec/type"),
                "clusterIP": s.pointer("/spec/clusterIP"),
                "ports": ports,
                "loadBalancerIngress": ingress,
            })
        })
        .collect();
    Ok(json!({
        // The process serving this lab: a lab.json whose pid is gone is stale (`lab status`).
        "pid": std::process::id(),
        "kubeconfig": path(kubeconfig),
        "token": token,
        "authProxy": format!("http://{}", topo.lab.auth_proxy),
        // The HA balancer (proxy type 4): the address every kubeconfig names.
        "haBalancer": format!("https://{}", topo.lab.ha_balancer),
        "apiservers": apiservers.iter().map(|a| format!("https://{a}")).collect::<Vec<_>>(),
        "nodes": topo.lab.nodes.iter().map(|n| json!({
            "name": n.name, "address": n.address.to_string(), "podCIDR": n.pod_cidr.to_string()
        })).collect::<Vec<_>>(),
        "services": services,
        // The cloud load balancer: its admin endpoint and the range it hands EXTERNAL-IPs from.
        "cloudLb": cloud_lb::info(&topo.lab),
        // Admin endpoints (/healthz, /readyz, /metrics, /debug/hops): where every hop is recorded.
        "admin": {
            "lab": format!("http://{}", topo.lab.admin),
            "authProxy": format!("http://{}", topo.lab.auth_proxy_admin()),
            "haBalancer": format!("http://{}", topo.lab.ha_balancer_admin()),
            "forwarders": topo.lab.nodes.iter().map(|n| (n.name.clone(), Value::String(format!("http://{}:10249", n.address)))).collect::<serde_json::Map<String, Value>>(),
            "apiservers": bastion::admin_urls(&topo.lab),
            "cloudLb": format!("http://{}", cloud_lb::admin_address(&topo.lab)),
        },
    }))
}

fn print_summary(state: &Path, info: &Value, ready_in: Duration, commands: &[String]) {
    let kubeconfig = info["kubeconfig"].as_str().unwrap_or_default();
    let mut out = String::new();
    out.push_str(&format!(
        "\nproxylab lab ready in {} ms — state in {}\n\n",
        ready_in.as_millis(),
        state.display()
    ));
    out.push_str("  apiservers: ");
    out.push_str(
        &info["apiservers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
    );
    out.push_str(&format!(
        "\n  ha-balancer: {} in front of them, the kubeconfig's server (stats {}/stats)",
        info["haBalancer"].as_str().unwrap_or_default(),
        info["admin"]["haBalancer"].as_str().unwrap_or_default(),
    ));
    out.push_str(&format!(
        "\n  auth-proxy: {} (admin {})\n  lab admin: {}\n  cloud-lb: EXTERNAL-IPs from {} (admin {})\n",
        info["authProxy"].as_str().unwrap_or_default(),
        info["admin"]["authProxy"].as_str().unwrap_or_default(),
        info["admin"]["lab"].as_str().unwrap_or_default(),
        info["cloudLb"]["pools"][0]["range"].as_str().unwrap_or_default(),
        info["cloudLb"]["admin"].as_str().unwrap_or_default(),
    ));
    if let Some(nodes) = info["nodes"].as_array() {
        for n in nodes {
            out.push_str(&format!(
                "  {}: {} (pods {})\n",
                n["name"].as_str().unwrap_or_default(),
                n["address"].as_str().unwrap_or_default(),
                n["podCIDR"].as_str().unwrap_or_default()
            ));
        }
    }
    if let Some(svcs) = info["services"].as_array() {
        for s in svcs {
            let ports: Vec<String> = s["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "  service {}/{}: {} {}{}\n",
                s["namespace"].as_str().unwrap_or_default(),
                s["name"].as_str().unwrap_or_default(),
                s["clusterIP"].as_str().unwrap_or("-"),
                ports.join(","),
                cloud_lb::external_ip_suffix(s),
            ));
        }
    }
    out.push_str(&format!(
        "\nTry:\n  export KUBECONFIG={kubeconfig}\n  kubectl get pods -o wide\n  curl -s {}/api/\n",
        info["authProxy"].as_str().unwrap_or_default()
    ));
    out.push_str(&format!(
        "  kubectl get pods -w    # then, from another terminal, a failure drill:\n  \
         proxylab lab stop apiserver-2 --state-dir {dir}   # and: proxylab lab start apiserver-2 --state-dir {dir}\n\n",
        dir = state.display()
    ));
    out.push_str("The same components as separate processes:\n");
    for c in commands {
        out.push_str(&format!("  {c}\n"));
    }
    println!("{out}");
}

mod client {
    //! The lab's own API calls (readiness, creating the topology's objects) through
    //! `proxylab_kube::RestClient`, with the admin kubeconfig the lab writes for its users: the same
    //! path `kubectl create` takes.

    use std::path::Path;
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail};
    use proxylab_kube::{KubeconfigOptions, RestClient};
    use serde_json::Value;

    pub struct ApiClient {
        rest: RestClient,
    }

    impl ApiClient {
        pub async fn new(kubeconfig: &Path) -> anyhow::Result<Self> {
            let rest = RestClient::new(&KubeconfigOptions {
                kubeconfig: Some(kubeconfig.to_owned()),
                ..Default::default()
            })
            .await?;
            Ok(Self { rest })
        }

        pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
            let deadline = Instant::now() + limit;
            loop {
                match self.rest.request(http::Method::GET, "/readyz", None).await {
                    Ok((200, _)) => return Ok(()),
                    Ok(_) | Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok((code, body)) => bail!("/readyz answered {code}: {body}"),
                    Err(e) => return Err(anyhow::Error::from(e).context("/readyz")),
                }
            }
        }

        /// POSTs an object to its collection: true when created, false when it already exists. The
        /// default namespace is created by the apiserver's bootstrap, so a namespaced create may
        /// briefly race it: retry a NotFound namespace.
        pub async fn create(&self, obj: &Value) -> anyhow::Result<bool> {
            let api_version = obj["apiVersion"].as_str().unwrap_or_default();
            let kind = obj["kind"].as_str().unwrap_or_default();
            let info = proxylab_apimachinery::registry::lookup_kind(api_version, kind)
                .with_context(|| {
                    format!("the lab apiserver does not serve {api_version} {kind}")
                })?;
            let prefix = if info.group.is_empty() {
                format!("/api/{}", info.version)
            } else {
                format!("/apis/{}/{}", info.group, info.version)
            };
            let path = if info.namespaced {
                let ns = obj
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                format!("{prefix}/namespaces/{ns}/{}", info.resource)
            } else {
                format!("{prefix}/{}", info.resource)
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let (code, body) = self
                    .rest
                    .request(http::Method::POST, &path, Some(obj))
                    .await?;
                match code {
                    200..=299 => return Ok(true),
                    409 if body["reason"] == "AlreadyExists" => return Ok(false),
                    404 if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    _ => bail!(
                        "{code}: {}",
                        body["message"]
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or(body.to_string())
                    ),
                }
            }
        }
    }
}
