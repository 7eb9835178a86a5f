//! The driver: watches Services through `proxylab-kube`, runs [`reconcile`] on the whole picture,
//! and writes what it decided back to the apiserver — the part of a cloud-controller-manager's
//! service controller that talks to Kubernetes.
//!
//! - **Input**: a watch of every Service as plain JSON ([`proxylab_kube::watch::watch_services_json`]):
//!   the first listing, then changes. Nothing is decided before the first listing is complete, so
//!   a restart never hands out an address some unlisted Service still holds.
//! - **Writes**, one request per [`Action`]:
//!   - finalizer: a JSON merge patch of `metadata.finalizers` carrying the `resourceVersion` read,
//!     so a concurrent change makes it fail with 409 and the next pass decides again;
//!   - status: a merge patch of the **status subresource** (`…/services/NAME/status`), which is
//!     what `kubectl get svc` shows as EXTERNAL-IP;
//!   - Events: a core/v1 Event about the Service (`involvedObject` by name and uid), which is what
//!     `kubectl describe svc` lists.
//! - **After each pass**: the allocations go to the state file (only when they changed) and the
//!   frontends to the data plane.
//!
//! A write that fails is not retried on its own: the pass is run again a second later, and being
//! level-triggered it asks for whatever is still missing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use proxylab_core::cluster::ServiceKey;
use proxylab_kube::RestClient;
use proxylab_kube::watch::ObjectEvent;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::alloc::Allocations;
use crate::frontend::{Frontend, frontends};
use crate::pool::Pools;
use crate::reconcile::{Action, EventSpec, reconcile};
use crate::service::LbService;

/// The component name in Events (`kubectl describe svc`'s "From" column).
pub const COMPONENT: &str = "cloud-lb";

/// What the controller needs besides its client.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub pools: Pools,
    /// `spec.loadBalancerClass` this load balancer answers to (besides an unset class).
    pub class: String,
    /// Where allocations are kept across restarts (`None`: only in the Services' statuses).
    pub state_file: Option<PathBuf>,
    /// The reporting instance in Events.
    pub instance: String,
}

/// What the controller publishes after each pass.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub allocations: Allocations,
    pub frontends: Arc<Vec<Frontend>>,
    /// The first listing is complete (the component is ready).
    pub synced: bool,
}

/// The controller's loop. `allocations` is what the state file held at start.
pub struct Controller {
    rest: RestClient,
    cfg: ControllerConfig,
    allocations: Allocations,
    failures: BTreeMap<ServiceKey, String>,
    services: BTreeMap<ServiceKey, LbService>,
    event_seq: u64,
}

impl Controller {
    pub fn new(rest: RestClient, cfg: ControllerConfig, allocations: Allocations) -> Self {
        Self {
            rest,
            cfg,
            allocations,
            failures: BTreeMap::new(),
            services: BTreeMap::new(),
            event_seq: 0,
        }
    }

    /// Watches and reconciles until `stop`, publishing on `out` and the frontends on `frontends`.
    pub async fn run(
        mut self,
        out: watch::Sender<Published>,
        frontends_out: watch::Sender<Arc<Vec<Frontend>>>,
        stop: CancellationToken,
    ) {
        let mut stream = proxylab_kube::watch::watch_services_json(&self.rest);
        let mut listing: Option<BTreeMap<ServiceKey, LbService>> = None;
        let mut synced = false;
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            let retry = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                ev = stream.next() => match ev {
                    None => return,
                    Some(ev) => synced |= self.take(ev, &mut listing),
                },
                _ = retry => {}
            }
            // Everything already queued joins this pass: a burst of changes is one pass.
            while let Some(Some(ev)) = stream.next().now_or_never() {
                synced |= self.take(ev, &mut listing);
            }
            if !synced {
                continue;
            }
            let ok = self.pass().await;
            retry_at = (!ok).then(|| tokio::time::Instant::now() + Duration::from_secs(1));
            let fe = Arc::new(frontends(&self.services, &self.allocations));
            frontends_out.send_if_modified(|cur| {
                let changed = **cur != *fe;
                if changed {
                    *cur = fe.clone();
                }
                changed
            });
            out.send_replace(Published {
                allocations: self.allocations.clone(),
                frontends: fe,
                synced: true,
            });
        }
    }

    /// Applies one watch event; true when a (re)listing completed.
    fn take(
        &mut self,
        ev: Result<ObjectEvent<Value>, proxylab_kube::watch::WatchFailed>,
        listing: &mut Option<BTreeMap<ServiceKey, LbService>>,
    ) -> bool {
        match ev {
            Ok(ObjectEvent::Init) => *listing = Some(BTreeMap::new()),
            Ok(ObjectEvent::InitApply(o)) => {
                if let (Some(l), Some(s)) = (listing.as_mut(), LbService::from_json(&o)) {
                    l.insert(s.key.clone(), s);
                }
            }
            Ok(ObjectEvent::InitDone) => {
                self.services = listing.take().unwrap_or_default();
                return true;
            }
            Ok(ObjectEvent::Apply(o)) => {
                if let Some(s) = LbService::from_json(&o) {
                    self.services.insert(s.key.clone(), s);
                }
            }
            Ok(ObjectEvent::Delete(o)) => {
                if let Some(s) = LbService::from_json(&o) {
                    self.services.remove(&s.key);
                }
            }
            Err(e) => tracing::warn!(error = %e, "service watch failed; retrying"),
        }
        false
    }

    /// One reconcile pass and its writes; false when a write failed.
    async fn pass(&mut self) -> bool {
        let plan = reconcile(
            &self.services,
            &self.allocations,
            &self.failures,
            &self.cfg.pools,
            &self.cfg.class,
        );
        let mut ok = true;
        for action in &plan.actions {
            match self.write(action).await {
                Ok(()) => {}
                // Expected when the Service changed since it was read (our own status write
                // bumps its resourceVersion): the next pass reads it again.
                Err(WriteError::Conflict(path)) => {
                    tracing::debug!(%path, "conflict; the next pass decides again");
                    ok = false;
                }
                Err(WriteError::Failed(e)) => {
                    tracing::warn!(error = %e, "cloud-lb write failed; the next pass retries");
                    ok = false;
                }
            }
        }
        if plan.allocations != self.allocations {
            for (key, a) in &plan.allocations {
                if self.allocations.get(key).map(|p| p.ip) != Some(a.ip) {
                    tracing::info!(service = %key, ip = %a.ip, pool = %a.pool, "address allocated");
                }
            }
            for (key, a) in &self.allocations {
                if !plan.allocations.contains_key(key) {
                    tracing::info!(service = %key, ip = %a.ip, "address released");
                }
            }
            if let Some(path) = &self.cfg.state_file
                && let Err(e) = crate::state::save(path, &plan.allocations)
            {
                tracing::warn!(error = %e, "cannot save the allocations");
            }
        }
        self.allocations = plan.allocations;
        self.failures = plan.failures;
        ok
    }

    async fn write(&mut self, action: &Action) -> Result<(), WriteError> {
        let (path, method_patch, body) = match action {
            Action::SetFinalizers {
                key,
                finalizers,
                resource_version,
            } => {
                let mut meta = json!({"finalizers": finalizers});
                if let Some(rv) = resource_version {
                    meta["resourceVersion"] = json!(rv);
                }
                (service_path(key, ""), true, json!({"metadata": meta}))
            }
            Action::SetStatus { key, ingress } => (
                service_path(key, "/status"),
                true,
                json!({"status": {"loadBalancer": {"ingress": ingress}}}),
            ),
            Action::Event(e) => {
                self.event_seq += 1;
                (
                    format!("/api/v1/namespaces/{}/events", e.key.namespace),
                    false,
                    event_object(
                        e,
                        &self.cfg.instance,
                        jiff::Timestamp::now(),
                        self.event_seq,
                    ),
                )
            }
        };
        let answer = if method_patch {
            self.rest.merge_patch(&path, &body).await
        } else {
            self.rest
                .request(http::Method::POST, &path, Some(&body))
                .await
        };
        match answer {
            Ok((200..=299, _)) => Ok(()),
            // The Service went away meanwhile: nothing left to write on it.
            Ok((404, _)) if !matches!(action, Action::Event(_)) => Ok(()),
            Ok((409, _)) => Err(WriteError::Conflict(path)),
            Ok((code, body)) => Err(WriteError::Failed(format!(
                "{path}: {code} {}",
                body["message"].as_str().unwrap_or_default()
            ))),
            Err(e) => Err(WriteError::Failed(e.to_string())),
        }
    }
}

/// Why a write did not happen.
enum WriteError {
    /// 409: the object changed since it was read.
    Conflict(String),
    Failed(String),
}

fn service_path(key: &ServiceKey, sub: &str) -> String {
    format!(
        "/api/v1/namespaces/{}/services/{}{sub}",
        key.namespace, key.name
    )
}

/// A core/v1 Event about a Service, as client-go's recorder writes one (`<service>.<nanos hex>`).
pub fn event_object(e: &EventSpec, instance: &str, now: jiff::Timestamp, seq: u64) -> Value {
    let ts = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": format!("{}.{:x}{:x}", e.key.name, now.as_nanosecond(), seq),
            "namespace": e.key.namespace,
        },
        "involvedObject": {
            "apiVersion": "v1", "kind": "Service",
            "namespace": e.key.namespace, "name": e.key.name, "uid": e.uid,
        },
        "reason": e.reason,
        "message": e.message,
        "type": e.type_,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "eventTime": null,
        "count": 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_service_by_uid_and_say_who_reported() {
        let e = EventSpec {
            key: ServiceKey::new("shop", "web"),
            uid: "u-1".into(),
            type_: "Warning",
            reason: "AllocationFailed",
            message: "no available IPs".into(),
        };
        let t: jiff::Timestamp = "2026-12-05T13:00:00Z".parse().unwrap();
        let v = event_object(&e, "lab", t, 7);
        assert_eq!(v["involvedObject"]["uid"], "u-1");
        assert_eq!(v["involvedObject"]["kind"], "Service");
        assert_eq!(v["metadata"]["namespace"], "shop");
        assert!(v["metadata"]["name"].as_str().unwrap().starts_with("web."));
        assert_eq!(v["firstTimestamp"], "2026-12-05T13:00:00Z");
        assert_eq!(v["source"]["component"], COMPONENT);
        assert_eq!(v["type"], "Warning");
    }
}
