//! The controller manager: shared informers, one task per controller, and the code that turns
//! [`Action`]s into store writes.
//!
//! Each controller task is the same loop — kube-controller-manager's work queue reduced to a
//! single "something changed" flag:
//!
//! ```text
//!   wait for: a change in a watched resource | the controller's own deadline | resync | shutdown
//!   if every watched informer has synced:
//!       actions = reconcile(snapshots of the caches, now)      // pure, see each module
//!       apply each action to the store; put what the store returned back into the cache
//! ```
//!
//! Errors that mean "my cache was stale" — AlreadyExists on create, Conflict or NotFound on
//! update and delete — are expected and quiet: the watch event that made the cache stale is on
//! its way and will run the loop again. Other store errors schedule a retry after a short
//! back-off. A periodic resync (30 s by default, like an informer's resync period) is a safety
//! net, not the mechanism.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proxylab_apimachinery::meta;
use proxylab_store::{ObjectKey, Store, StoreError};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::action::{Action, Target, resources};
use crate::informer::Informer;
use crate::jwt::{JwtError, LEGACY_ISSUER, TokenSigner};
use crate::nodelifecycle::DEFAULT_NODE_MONITOR_GRACE_PERIOD;
use crate::{
    deployment, endpointslices, garbagecollector, job, namespaces, nodelifecycle, ownership,
    replicaset, scheduler, tokens,
};

/// Which controllers [`ControllerManager::run`] starts (all by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnabledControllers {
    pub namespaces: bool,
    pub tokens: bool,
    pub endpoint_slices: bool,
    pub scheduler: bool,
    pub node_lifecycle: bool,
    pub replica_sets: bool,
    pub deployments: bool,
    pub jobs: bool,
    pub garbage_collector: bool,
}

impl EnabledControllers {
    /// Every controller off; switch on the ones wanted with struct update syntax.
    pub fn none() -> Self {
        EnabledControllers {
            namespaces: false,
            tokens: false,
            endpoint_slices: false,
            scheduler: false,
            node_lifecycle: false,
            replica_sets: false,
            deployments: false,
            jobs: false,
            garbage_collector: false,
        }
    }
}

impl Default for EnabledControllers {
    fn default() -> Self {
        EnabledControllers {
            namespaces: true,
            tokens: true,
            endpoint_slices: true,
            scheduler: true,
            node_lifecycle: true,
            replica_sets: true,
            deployments: true,
            jobs: true,
            garbage_collector: true,
        }
    }
}

/// Configuration: the flags of kube-controller-manager the lab needs.
#[derive(Debug, Clone)]
pub struct ControllersConfig {
    /// Cluster CA bundle (PEM) written as `ca.crt` into token Secrets (`--root-ca-file`).
    pub ca_pem: String,
    /// The service-account signing key, PKCS#8 PEM, ECDSA P-256
    /// (`--service-account-private-key-file`). Required when the token controller is enabled.
    pub sa_signing_key_pkcs8_pem: String,
    /// The `iss` claim of legacy tokens; kube-controller-manager always writes
    /// `kubernetes/serviceaccount` ([`LEGACY_ISSUER`], the default).
    pub issuer: String,
    /// `--node-monitor-grace-period`: how long a Node may go without a heartbeat before its
    /// Ready condition becomes Unknown (default 40 s).
    pub node_monitor_grace_period: Duration,
    /// Full reconcile even without changes, as a safety net (default 30 s).
    pub resync_period: Duration,
    pub enabled: EnabledControllers,
}

impl Default for ControllersConfig {
    fn default() -> Self {
        ControllersConfig {
            ca_pem: String::new(),
            sa_signing_key_pkcs8_pem: String::new(),
            issuer: LEGACY_ISSUER.to_string(),
            node_monitor_grace_period: DEFAULT_NODE_MONITOR_GRACE_PERIOD,
            resync_period: Duration::from_secs(30),
            enabled: EnabledControllers::default(),
        }
    }
}

/// Errors starting the controller manager.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    SigningKey(#[from] JwtError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Namespaces,
    Tokens,
    EndpointSlices,
    Scheduler,
    NodeLifecycle,
    ReplicaSets,
    Deployments,
    Jobs,
    GarbageCollector,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Namespaces => "namespace-defaults",
            Kind::Tokens => "serviceaccount-token",
            Kind::EndpointSlices => "endpointslice",
            Kind::Scheduler => "scheduler",
            Kind::NodeLifecycle => "node-lifecycle",
            Kind::ReplicaSets => "replicaset",
            Kind::Deployments => "deployment",
            Kind::Jobs => "job",
            Kind::GarbageCollector => "garbage-collector",
        }
    }

    fn watches(self) -> &'static [&'static str] {
        use resources::*;
        match self {
            Kind::Namespaces => &[NAMESPACES, SERVICE_ACCOUNTS],
            Kind::Tokens => &[SECRETS, SERVICE_ACCOUNTS],
            Kind::EndpointSlices => &[SERVICES, PODS, NODES, ENDPOINT_SLICES, ENDPOINTS],
            Kind::Scheduler => &[PODS, NODES],
            Kind::NodeLifecycle => &[NODES, LEASES, PODS],
            Kind::ReplicaSets => &[REPLICA_SETS, PODS],
            Kind::Deployments => &[DEPLOYMENTS, REPLICA_SETS, PODS],
            Kind::Jobs => &[JOBS, PODS],
            Kind::GarbageCollector => &[DEPLOYMENTS, REPLICA_SETS, JOBS, PODS],
        }
    }
}

struct Shared {
    store: Arc<dyn Store>,
    config: ControllersConfig,
    signer: Option<TokenSigner>,
    informers: HashMap<&'static str, Arc<Informer>>,
}

impl Shared {
    fn snapshot(&self, resource: &str) -> Vec<serde_json::Value> {
        self.informers
            .get(resource)
            .map(|i| i.snapshot())
            .unwrap_or_default()
    }
}

/// kube-controller-manager + kube-scheduler for the lab, over one shared [`Store`].
pub struct ControllerManager {
    shared: Arc<Shared>,
    kinds: Vec<Kind>,
}

impl std::fmt::Debug for ControllerManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerManager")
            .field(
                "controllers",
                &self.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ControllerManager {
    /// Loads the signing key (when the token controller is enabled) and prepares the informers.
    pub fn new(store: Arc<dyn Store>, config: ControllersConfig) -> Result<Self, ControllerError> {
        let e = config.enabled;
        let kinds: Vec<Kind> = [
            (e.namespaces, Kind::Namespaces),
            (e.tokens, Kind::Tokens),
            (e.endpoint_slices, Kind::EndpointSlices),
            (e.scheduler, Kind::Scheduler),
            (e.node_lifecycle, Kind::NodeLifecycle),
            (e.replica_sets, Kind::ReplicaSets),
            (e.deployments, Kind::Deployments),
            (e.jobs, Kind::Jobs),
            (e.garbage_collector, Kind::GarbageCollector),
        ]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect();
        let signer = if e.tokens {
            Some(TokenSigner::from_pkcs8_pem(
                &config.sa_signing_key_pkcs8_pem,
            )?)
        } else {
            None
        };
        let mut informers = HashMap::new();
        for kind in &kinds {
            for r in kind.watches() {
                informers.entry(*r).or_insert_with(|| Informer::new(r));
            }
        }
        Ok(ControllerManager {
            shared: Arc::new(Shared {
                store,
                config,
                signer,
                informers,
            }),
            kinds,
        })
    }

    /// Runs the informers and controllers until `shutdown` is cancelled, then waits for them
    /// to stop. Spawn it: `tokio::spawn(manager.run(token.clone()))`.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        // Subscribe before the informers start so that no first-sync wake-up is missed.
        let mut wakers = Vec::new();
        for kind in &self.kinds {
            let notify = Arc::new(Notify::new());
            for r in kind.watches() {
                if let Some(inf) = self.shared.informers.get(r) {
                    inf.subscribe(notify.clone());
                }
            }
            wakers.push((*kind, notify));
        }
        for inf in self.shared.informers.values() {
            tracker.spawn(inf.clone().run(self.shared.store.clone(), shutdown.clone()));
        }
        for (kind, notify) in wakers {
            tracker.spawn(run_controller(
                kind,
                self.shared.clone(),
                notify,
                shutdown.clone(),
            ));
        }
        tracker.close();
        tracing::info!(controllers = ?self.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(), "controller manager started");
        shutdown.cancelled().await;
        tracker.wait().await;
    }
}

/// Converts a jiff instant to a tokio deadline (now if it is in the past), plus a little slack
/// so the deadline's reconcile sees the instant as passed.
fn deadline_from(ts: jiff::Timestamp, now: jiff::Timestamp) -> Option<Instant> {
    let wait = Duration::try_from(ts.duration_since(now)).unwrap_or(Duration::ZERO);
    // A renewTime far in the future (it comes from the network) must not overflow Instant.
    Instant::now().checked_add(wait.saturating_add(Duration::from_millis(5)))
}

async fn run_controller(
    kind: Kind,
    shared: Arc<Shared>,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let name = kind.name();
    let mut wake_at: Option<Instant> = None;
    loop {
        // A zero resync period would spin; a tenth of a second is the floor.
        let resync = Instant::now() + shared.config.resync_period.max(Duration::from_millis(100));
        let until = wake_at.map_or(resync, |w| w.min(resync));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = notify.notified() => {}
            _ = tokio::time::sleep_until(until) => {}
        }
        let synced = kind
            .watches()
            .iter()
            .all(|r| shared.informers.get(r).is_some_and(|i| i.has_synced()));
        if !synced {
            wake_at = None;
            continue;
        }
        let now = jiff::Timestamp::now();
        let (actions, next) = reconcile(kind, &shared, now);
        wake_at = next.and_then(|t| deadline_from(t, now));
        let mut failed = false;
        for action in actions {
            if let Err(e) = apply(name, &shared, &action) {
                failed = true;
                tracing::warn!(controller = name, verb = action.verb(), target = ?action.target(), error = %e, "write failed; will retry");
            }
        }
        if failed {
            let retry = Instant::now() + Duration::from_millis(500);
            wake_at = Some(wake_at.map_or(retry, |w| w.min(retry)));
        }
    }
}

fn reconcile(
    kind: Kind,
    shared: &Shared,
    now: jiff::Timestamp,
) -> (Vec<Action>, Option<jiff::Timestamp>) {
    use resources::*;
    match kind {
        Kind::Namespaces => (
            namespaces::reconcile(
                &shared.snapshot(NAMESPACES),
                &shared.snapshot(SERVICE_ACCOUNTS),
                now,
            ),
            None,
        ),
        Kind::Tokens => {
            let Some(signer) = shared.signer.as_ref() else {
                return (Vec::new(), None);
            };
            let ctx = tokens::TokenContext {
                signer,
                ca_pem: &shared.config.ca_pem,
                issuer: &shared.config.issuer,
            };
            (
                tokens::reconcile(
                    &shared.snapshot(SECRETS),
                    &shared.snapshot(SERVICE_ACCOUNTS),
                    &ctx,
                ),
                None,
            )
        }
        Kind::EndpointSlices => {
            let (services, pods, nodes) = (
                shared.snapshot(SERVICES),
                shared.snapshot(PODS),
                shared.snapshot(NODES),
            );
            let (slices, endpoints) =
                (shared.snapshot(ENDPOINT_SLICES), shared.snapshot(ENDPOINTS));
            let snap = endpointslices::Snapshot {
                services: &services,
                pods: &pods,
                nodes: &nodes,
                endpoint_slices: &slices,
                endpoints: &endpoints,
            };
            (endpointslices::reconcile(&snap, now), None)
        }
        Kind::Scheduler => (
            scheduler::reconcile(&shared.snapshot(PODS), &shared.snapshot(NODES), now),
            None,
        ),
        Kind::NodeLifecycle => {
            let out = nodelifecycle::reconcile(
                &shared.snapshot(NODES),
                &shared.snapshot(LEASES),
                &shared.snapshot(PODS),
                now,
                shared.config.node_monitor_grace_period,
            );
            (out.actions, out.next_check)
        }
        Kind::ReplicaSets => {
            let out = replicaset::reconcile(
                &shared.snapshot(REPLICA_SETS),
                &shared.snapshot(PODS),
                now,
                &mut ownership::random_suffix,
            );
            (out.actions, out.next_check)
        }
        Kind::Deployments => {
            let out = deployment::reconcile(
                &shared.snapshot(DEPLOYMENTS),
                &shared.snapshot(REPLICA_SETS),
                &shared.snapshot(PODS),
                now,
            );
            (out.actions, out.next_check)
        }
        Kind::Jobs => {
            let out = job::reconcile(
                &shared.snapshot(JOBS),
                &shared.snapshot(PODS),
                now,
                &mut ownership::random_suffix,
            );
            (out.actions, out.next_check)
        }
        Kind::GarbageCollector => {
            let objects = [
                (DEPLOYMENTS, shared.snapshot(DEPLOYMENTS)),
                (REPLICA_SETS, shared.snapshot(REPLICA_SETS)),
                (JOBS, shared.snapshot(JOBS)),
                (PODS, shared.snapshot(PODS)),
            ];
            (
                garbagecollector::reconcile(&garbagecollector::Snapshot { objects: &objects }, now),
                None,
            )
        }
    }
}

fn key(t: &Target) -> ObjectKey {
    ObjectKey::new(t.resource, t.namespace.as_deref(), t.name.clone())
}

/// Applies one action. Stale-cache outcomes are `Ok`: the next watch event re-runs the loop.
fn apply(controller: &str, shared: &Shared, action: &Action) -> Result<(), StoreError> {
    let store = &shared.store;
    let informer = shared.informers.get(action.target().resource);
    let result = match action {
        Action::Create { target, object } => store.create(&key(target), object.clone()).map(|o| {
            if let Some(i) = informer {
                i.observe_write(&o);
            }
        }),
        Action::Update {
            target,
            object,
            precondition_rv,
        } => store
            .update(&key(target), object.clone(), *precondition_rv)
            .map(|o| {
                if let Some(i) = informer {
                    i.observe_write(&o);
                }
            }),
        Action::Delete {
            target,
            precondition_rv,
            unless_present,
        } => {
            if let Some(guard) = unless_present
                && store.get(&key(guard))?.is_some_and(|live| {
                    guard
                        .uid
                        .as_deref()
                        .is_none_or(|uid| meta::uid(&live) == Some(uid))
                })
            {
                tracing::debug!(controller, target = ?target, guard = ?guard, "cache miss was not an absence; not deleting");
                return Ok(());
            }
            store.delete(&key(target), *precondition_rv).map(|_| {
                if let Some(i) = informer {
                    i.observe_delete(target.namespace.as_deref(), &target.name);
                }
            })
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(controller, verb = action.verb(), target = %key(action.target()), "controller write");
            Ok(())
        }
        Err(StoreError::AlreadyExists | StoreError::Conflict { .. } | StoreError::NotFound) => {
            tracing::debug!(controller, verb = action.verb(), target = %key(action.target()), "stale cache; waiting for the watch");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
