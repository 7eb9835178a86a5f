//! The apiserver proxy (the bastion) in the lab.
//!
//! Every lab apiserver mounts it (crates/apiserver/src/bastion.rs); the lab adds what only the lab
//! knows:
//! - **where it may go**: the lab's nodes and pods live on loopback addresses, which the proxy
//!   refuses by default (only global unicast); the lab allows exactly its nodes' addresses and pod
//!   CIDRs (`--proxy-allowed-networks`), never the apiservers' own range, never link-local;
//! - **how it reaches kubelets**: InternalIP first (the lab's node names resolve nowhere), the
//!   lab CA verifying each kubelet's serving certificate;
//! - **from where**: each apiserver dials from its own address (`--proxy-source-address=listener`),
//!   so a pod's log line and the next hop's record show which apiserver called;
//! - **where its hops are read**: one admin endpoint per apiserver on port 6444 of its address
//!   (`/debug/hops`, `/metrics`, `/healthz`), listed in `lab.json` under `admin.apiservers`.

use std::net::SocketAddr;

use anyhow::Context;
use proxylab_apiserver::{ApiServerConfig, BoundApiServer};
use proxylab_core::telemetry::{AdminState, admin_router};
use serde_json::{Map, Value};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::topology::LabSpec;

/// The port of each apiserver's admin endpoint (on the apiserver's own address).
pub const ADMIN_PORT: u16 = 6444;

/// The apiserver flags of the proxy. `p` names a file of the PKI directory.
pub fn apiserver_flags(lab: &LabSpec, p: impl Fn(&str) -> String) -> Vec<String> {
    let mut allowed: Vec<String> = lab.nodes.iter().map(|n| n.address.to_string()).collect();
    allowed.extend(lab.nodes.iter().map(|n| n.pod_cidr.to_string()));
    vec![
        format!("--kubelet-certificate-authority={}", p("ca.crt")),
        "--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP"
            .into(),
        format!("--proxy-allowed-networks={}", allowed.join(",")),
        "--proxy-source-address=listener".into(),
    ]
}

/// The instance names of the apiservers' proxies: `apiserver-N` for the N-th address.
pub fn name_instances(lab: &LabSpec, config: &mut ApiServerConfig) {
    config.proxy.instance_names = names(lab).map(|(name, addr)| (addr.ip(), name)).collect();
}

/// The apiservers' names in the lab, in address order: `apiserver-1`, …
pub(super) fn names(lab: &LabSpec) -> impl Iterator<Item = (String, SocketAddr)> + '_ {
    lab.apiservers
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("apiserver-{}", i + 1), *a))
}

/// Binds each apiserver's admin endpoint and serves it until `shutdown`.
pub fn serve_admin(
    bound: &BoundApiServer,
    tasks: &mut JoinSet<(String, anyhow::Result<()>)>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    for instance in bound.proxy().instances() {
        let Some(ip) = instance.listen_ip else {
            continue;
        };
        let addr = SocketAddr::new(ip, ADMIN_PORT);
        let listener = proxylab_core::runtime::bind_tcp(addr, Default::default())
            .with_context(|| format!("{} admin endpoint on {addr}", instance.name))?;
        let admin = AdminState {
            hops: instance.hops().clone(),
            metrics: instance.metrics.clone(),
            ready: Default::default(),
        };
        admin.set_ready(true);
        let (token, name) = (shutdown.clone(), instance.name.clone());
        tasks.spawn(async move {
            (
                format!("{name} admin"),
                proxylab_core::serve::serve_http_with(
                    listener,
                    None,
                    admin_router(admin),
                    token,
                    proxylab_core::serve::ServeOptions::admin(),
                )
                .await
                .map_err(anyhow::Error::from),
            )
        });
    }
    Ok(())
}

/// `lab.json` → `admin.apiservers`: `{"apiserver-1": "http://127.0.10.1:6444", …}`.
pub fn admin_urls(lab: &LabSpec) -> Value {
    Value::Object(
        names(lab)
            .map(|(name, a)| {
                (
                    name,
                    Value::String(format!("http://{}", SocketAddr::new(a.ip(), ADMIN_PORT))),
                )
            })
            .collect::<Map<String, Value>>(),
    )
}
