//! The cloud load balancer (proxy type 5) in the lab.
//!
//! `lab up` runs one `cloud-lb` in-process with the flags its binary takes, so it can be re-run
//! by hand. What the lab decides for it:
//! - **its pool**: the topology's `spec.loadBalancerIPRange` (default `127.0.50.0/24`), without the
//!   `.0` and `.255` addresses (`avoid-buggy-ips`): `web-lb` gets `127.0.50.1`;
//! - **its admin endpoint**: port [`ADMIN_PORT`] (the cloud-controller-manager's) on the
//!   auth-proxy's address, `127.0.0.1:10258` — outside the pool, so it never takes an address a
//!   Service could get;
//! - **its state file**: `cloud-lb.json` in the state dir, so a Service keeps its address across
//!   `lab up` runs;
//! - **its identity**: the admin kubeconfig (it writes statuses, finalizers and Events).
//!
//! Its traffic goes where a cloud's would: ingress IP → a node's NodePort (the node's forwarder)
//! → a pod; each of the three hops is in a `/debug/hops`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use proxylab_cloud_lb::{CloudLb, CloudLbArgs, CloudLbHandle};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::topology::LabSpec;

/// The port of cloud-lb's admin endpoint (on the auth-proxy's address).
pub const ADMIN_PORT: u16 = 10258;

/// The admin endpoint's address.
pub fn admin_address(lab: &LabSpec) -> SocketAddr {
    SocketAddr::new(lab.auth_proxy.ip(), ADMIN_PORT)
}

/// The flags the lab runs cloud-lb with.
pub fn flags(lab: &LabSpec, kubeconfig: &Path, state_dir: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!(
            "--pool=default={},avoid-buggy-ips=true",
            lab.load_balancer_ip_range
        ),
        format!("--state-file={}", state_dir.join("cloud-lb.json").display()),
        format!("--admin={}", admin_address(lab)),
    ]
}

/// Binds cloud-lb and serves it until `shutdown`; returns its handle and its command line.
pub async fn start(
    lab: &LabSpec,
    kubeconfig: &Path,
    state_dir: &Path,
    tasks: &mut JoinSet<(String, anyhow::Result<()>)>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(CloudLbHandle, String)> {
    let flags = flags(lab, kubeconfig, state_dir);
    let args: CloudLbArgs = super::parse_flags("cloud-lb", &flags)?;
    let config = args.to_config().context("cloud-lb configuration")?;
    let lb = CloudLb::bind(config).await.context("starting cloud-lb")?;
    let handle = lb.handle();
    let token = shutdown.clone();
    tasks.spawn(async move {
        lb.serve(token).await;
        ("cloud-lb".into(), Ok(()))
    });
    Ok((handle, format!("cloud-lb {}", flags.join(" "))))
}

/// Waits until cloud-lb has listed the Services, written their addresses and opened a listener
/// for each allocated TCP and UDP port.
pub async fn wait_ready(handle: &CloudLbHandle, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let ready = handle
            .admin()
            .ready
            .load(std::sync::atomic::Ordering::SeqCst);
        if ready {
            let open = handle.listeners();
            let missing: Vec<String> = handle
                .allocations()
                .iter()
                .flat_map(|(key, a)| {
                    a.ports
                        .iter()
                        .map(move |(proto, port)| (key, SocketAddr::new(a.ip, *port), *proto))
                })
                .filter(|(_, addr, proto)| {
                    !open
                        .iter()
                        .any(|l| l.frontend.listen == *addr && l.frontend.protocol == *proto)
                })
                .map(|(key, addr, proto)| format!("{key} on {addr}/{proto}"))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("cloud-lb has no listener for {}", missing.join(", "));
            }
        } else if Instant::now() > deadline {
            bail!("cloud-lb is not ready (Services not listed or not reconciled yet)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `lab.json`'s `cloudLb`: where it answers and which range it hands out.
pub fn info(lab: &LabSpec) -> Value {
    json!({
        "admin": format!("http://{}", admin_address(lab)),
        "pools": [{"name": "default", "range": lab.load_balancer_ip_range.to_string(), "avoidBuggyIPs": true}],
    })
}

/// ` EXTERNAL-IP a,b` for a `lab.json` service with ingress addresses (the printed summary).
pub fn external_ip_suffix(service: &Value) -> String {
    let external: Vec<&str> = service["loadBalancerIngress"]
        .as_array()
        .map(|i| i.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if external.is_empty() {
        String::new()
    } else {
        format!(" EXTERNAL-IP {}", external.join(","))
    }
}
