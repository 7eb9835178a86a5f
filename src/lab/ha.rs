//! The HA balancer (proxy type 4) in the lab, and the apiserver failure drills behind it.
//!
//! The lab runs three apiserver front-ends; as in a kubeadm HA cluster, nobody talks to one of
//! them by its own address: every kubeconfig the lab writes (the admin's, each node's, so also the
//! auth-proxy's and the forwarders') names the balancer on `spec.haBalancer` (`127.0.0.1:6443`),
//! which passes TLS through to a live apiserver (`ha-balancer`'s `tcp` mode, with the kubeadm
//! recipe's checks: `GET /readyz` every 2 s, fall 3, rise 2). Its admin endpoint (`/stats`,
//! `/metrics`, `/debug/hops`) is port 8404 next to it.
//!
//! Each apiserver front-end is registered with the lab's admin endpoint as a component, so
//! `proxylab lab stop apiserver-2` closes that front-end's listener and drops its connections as a
//! crash would (see `proxylab_apiserver::switch`), and `proxylab lab start apiserver-2` brings it
//! back: the balancer marks it down and moves its clients to the others, then up again.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use proxylab_apiserver::ListenerSwitch;
use proxylab_ha_balancer::{HaBalancer, HaBalancerArgs, HaBalancerHandle};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::admin::{ComponentControl, ControlFuture, LabAdmin};
use super::topology::LabSpec;

/// The balancer's command line, as `ha-balancer` takes it (the lab prints it).
pub fn flags(lab: &LabSpec, ca_file: &Path) -> Vec<String> {
    let mut flags = vec![
        format!("--listen={}", lab.ha_balancer),
        format!("--admin-address={}", lab.ha_balancer_admin()),
        format!("--ca-file={}", ca_file.display()),
    ];
    flags.extend(super::bastion::names(lab).map(|(name, addr)| format!("--backend={name}={addr}")));
    flags
}

/// Binds the balancer and serves it in `tasks` until `shutdown`.
pub async fn start(
    flags: &[String],
    tasks: &mut JoinSet<(String, anyhow::Result<()>)>,
    shutdown: &CancellationToken,
) -> anyhow::Result<HaBalancerHandle> {
    let args: HaBalancerArgs = super::parse_flags("ha-balancer", flags)?;
    let (config, _) = args
        .to_config()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("ha-balancer configuration")?;
    let balancer = HaBalancer::bind(config, None, None)
        .await
        .context("starting the ha-balancer")?;
    let handle = balancer.handle();
    let token = shutdown.clone();
    tasks.spawn(async move {
        balancer.serve(token).await;
        ("ha-balancer".into(), Ok(()))
    });
    Ok(handle)
}

/// One apiserver front-end as a component of the lab's admin endpoint.
struct Apiserver(ListenerSwitch);

impl ComponentControl for Apiserver {
    fn stop(&self) -> ControlFuture {
        let s = self.0.clone();
        Box::pin(async move { s.stop().await.map_err(|e| e.to_string()) })
    }
    fn start(&self) -> ControlFuture {
        let s = self.0.clone();
        Box::pin(async move { s.start().await.map_err(|e| e.to_string()) })
    }
    fn running(&self) -> bool {
        self.0.is_running()
    }
}

/// Makes every apiserver front-end stoppable and startable by name through the admin endpoint.
pub fn register_apiservers(admin: &LabAdmin, lab: &LabSpec, switches: Vec<ListenerSwitch>) {
    for (name, addr) in super::bastion::names(lab) {
        // A listen address of port 0 resolves to another port: match by IP (each apiserver has
        // its own).
        if let Some(s) = switches.iter().find(|s| s.addr().ip() == addr.ip()) {
            admin.register(&name, Arc::new(Apiserver(s.clone())));
        }
    }
}
