//! Watches of Services, EndpointSlices, Nodes and Pods feeding a [`ClusterView`]; and single watches
//! for programs that need more than the model: a node agent's Pods ([`watch_pods`]), Services as
//! plain JSON for a controller that writes them back ([`watch_services_json`]), the apiservers'
//! own EndpointSlice as plain JSON ([`watch_endpoint_slices_json`]).
//!
//! This is what kube-proxy does at start: list and watch the objects it routes on, keep a local cache,
//! and react to every change. Here kube-rs's `watcher` does the list/watch/re-list protocol (with
//! bookmarks and a re-list after `410 Gone`), each object is serialised back to Kubernetes JSON and
//! converted by `proxylab_core::cluster::convert` — the same converter a static manifest file goes
//! through, so a proxy cannot tell (and need not care) where its model came from.
//!
//! A re-list (`Init` … `InitDone`) replaces all objects of that kind in one published change, so a
//! proxy never sees a half-listed cluster. The snapshot is marked `synced` once every watched kind
//! has completed its first listing: proxies report ready only then.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use proxylab_core::cluster::{ClusterObject, ClusterView, ConvertError, ObjectKind, convert};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// The client type the watches run on (kube-rs's), re-exported so callers need not depend on kube-rs.
pub type WatchClient = Client;

/// Which kinds to watch. Services and EndpointSlices are always watched.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// Watch Nodes (needed for NodePort addresses and zones when they are not given on the command line).
    pub nodes: bool,
    /// Watch Pods (all namespaces; only proxies that route to pods by name need this).
    pub pods: bool,
    /// Restrict the Pod watch to one node (`spec.nodeName=<node>`), as a node agent would.
    pub pods_on_node: Option<String>,
}

/// Failure to start the watches.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] crate::config::KubeconfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A kube-rs client from kubectl's loading rules (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`,
/// in-cluster).
pub async fn client(opts: &crate::config::KubeconfigOptions) -> Result<Client, WatchError> {
    let cfg = crate::config::load(opts).await?;
    Ok(Client::try_from(cfg.config)?)
}

/// Runs the watches until `shutdown` is cancelled, applying every change to `view`. Watch errors are
/// logged and retried with kube-rs's default backoff; they never end the function.
pub async fn watch_cluster(
    client: Client,
    view: ClusterView,
    opts: WatchOptions,
    shutdown: CancellationToken,
) {
    let mut wanted: u8 = bit(ObjectKind::Service) | bit(ObjectKind::EndpointSlice);
    if opts.nodes {
        wanted |= bit(ObjectKind::Node);
    }
    if opts.pods {
        wanted |= bit(ObjectKind::Pod);
    }
    let synced = Arc::new(Synced {
        wanted,
        done: AtomicU8::new(0),
    });
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(run::<Service>(
        Api::all(client.clone()),
        watcher::Config::default(),
        ObjectKind::Service,
        view.clone(),
        synced.clone(),
        |v| convert::service_from_k8s(v).map(ClusterObject::Service),
    ));
    tasks.spawn(run::<EndpointSlice>(
        Api::all(client.clone()),
        watcher::Config::default(),
        ObjectKind::EndpointSlice,
        view.clone(),
        synced.clone(),
        |v| convert::endpoint_slice_from_k8s(v).map(ClusterObject::EndpointSlice),
    ));
    if opts.nodes {
        tasks.spawn(run::<Node>(
            Api::all(client.clone()),
            watcher::Config::default(),
            ObjectKind::Node,
            view.clone(),
            synced.clone(),
            |v| convert::node_from_k8s(v).map(ClusterObject::Node),
        ));
    }
    if opts.pods {
        let mut cfg = watcher::Config::default();
        if let Some(node) = &opts.pods_on_node {
            cfg = cfg.fields(&format!("spec.nodeName={node}"));
        }
        tasks.spawn(run::<Pod>(
            Api::all(client.clone()),
            cfg,
            ObjectKind::Pod,
            view.clone(),
            synced.clone(),
            |v| convert::pod_from_k8s(v).map(ClusterObject::Pod),
        ));
    }
    shutdown.cancelled().await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// What a watch of one kind reports, as kube-rs's watcher does: a (re)listing framed by `Init` and
/// `InitDone`, then single changes.
#[derive(Debug)]
pub enum ObjectEvent<K> {
    /// A (re)listing starts: objects not listed before `InitDone` are gone.
    Init,
    /// An object of the listing.
    InitApply(K),
    /// The listing is complete.
    InitDone,
    /// An object was added or changed.
    Apply(K),
    /// An object was deleted.
    Delete(K),
}

/// A watch failed; the stream retries with backoff and goes on.
#[derive(Debug, thiserror::Error)]
#[error("watch failed: {0}")]
pub struct WatchFailed(String);

/// Watches Pods in all namespaces, narrowed by a field selector (`spec.nodeName=node-1`: a node
/// agent's own pods). Lists with `limit=500`, watches with bookmarks, re-lists after `410 Gone`,
/// backs off on errors without ending.
pub fn watch_pods(
    client: &crate::RestClient,
    field_selector: Option<&str>,
) -> futures_util::stream::BoxStream<'static, Result<ObjectEvent<Pod>, WatchFailed>> {
    let mut cfg = watcher::Config::default();
    if let Some(selector) = field_selector {
        cfg = cfg.fields(selector);
    }
    watcher::watcher(Api::<Pod>::all(client.watch_client()), cfg)
        .default_backoff()
        .map(|event| {
            event
                .map(|e| match e {
                    Event::Init => ObjectEvent::Init,
                    Event::InitApply(o) => ObjectEvent::InitApply(o),
                    Event::InitDone => ObjectEvent::InitDone,
                    Event::Apply(o) => ObjectEvent::Apply(o),
                    Event::Delete(o) => ObjectEvent::Delete(o),
                })
                .map_err(|e| WatchFailed(e.to_string()))
        })
        .boxed()
}

/// Watches Services in all namespaces as plain Kubernetes JSON, every field kept: annotations,
/// finalizers, `deletionTimestamp`, `status.loadBalancer` — what a controller that writes Services
/// back (the cloud load balancer) reads, and more than the [`ClusterView`] model keeps. Read as
/// kube-rs's `DynamicObject`, so no field is lost to a typed struct of an older API version.
/// Lists, watches with bookmarks, re-lists after `410 Gone`, backs off on errors without ending.
pub fn watch_services_json(
    client: &crate::RestClient,
) -> futures_util::stream::BoxStream<'static, Result<ObjectEvent<serde_json::Value>, WatchFailed>> {
    let resource = ApiResource::erase::<Service>(&());
    let api = Api::<DynamicObject>::all_with(client.watch_client(), &resource);
    watch_json(api, watcher::Config::default(), "v1", "Service")
}

/// Watches the EndpointSlices of one namespace that match `label_selector` as plain Kubernetes
/// JSON — `kubernetes.io/service-name=kubernetes` in `default` is where every apiserver publishes
/// its address (kube-apiserver's endpoint reconciler), which is what the HA balancer learns its
/// backends from. Same protocol as [`watch_services_json`].
pub fn watch_endpoint_slices_json(
    client: &crate::RestClient,
    namespace: &str,
    label_selector: &str,
) -> futures_util::stream::BoxStream<'static, Result<ObjectEvent<serde_json::Value>, WatchFailed>> {
    let resource = ApiResource::erase::<EndpointSlice>(&());
    let api = Api::<DynamicObject>::namespaced_with(client.watch_client(), namespace, &resource);
    let cfg = watcher::Config::default().labels(label_selector);
    watch_json(api, cfg, "discovery.k8s.io/v1", "EndpointSlice")
}

fn watch_json(
    api: Api<DynamicObject>,
    cfg: watcher::Config,
    api_version: &'static str,
    kind: &'static str,
) -> futures_util::stream::BoxStream<'static, Result<ObjectEvent<serde_json::Value>, WatchFailed>> {
    let to_json = move |mut o: DynamicObject| {
        // A watch event carries no type meta for some servers; the consumer reads plain objects.
        o.types = Some(kube::core::TypeMeta {
            api_version: api_version.into(),
            kind: kind.into(),
        });
        serde_json::to_value(o).unwrap_or(serde_json::Value::Null)
    };
    watcher::watcher(api, cfg)
        .default_backoff()
        .map(move |event| {
            event
                .map(|e| match e {
                    Event::Init => ObjectEvent::Init,
                    Event::InitApply(o) => ObjectEvent::InitApply(to_json(o)),
                    Event::InitDone => ObjectEvent::InitDone,
                    Event::Apply(o) => ObjectEvent::Apply(to_json(o)),
                    Event::Delete(o) => ObjectEvent::Delete(to_json(o)),
                })
                .map_err(|e| WatchFailed(e.to_string()))
        })
        .boxed()
}

struct Synced {
    wanted: u8,
    done: AtomicU8,
}

fn bit(kind: ObjectKind) -> u8 {
    match kind {
        ObjectKind::Service => 1,
        ObjectKind::EndpointSlice => 2,
        ObjectKind::Node => 4,
        ObjectKind::Pod => 8,
    }
}

async fn run<K>(
    api: Api<K>,
    cfg: watcher::Config,
    kind: ObjectKind,
    view: ClusterView,
    synced: Arc<Synced>,
    convert: fn(&serde_json::Value) -> Result<ClusterObject, ConvertError>,
) where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug + Send + Sync + 'static,
{
    let to_model = |obj: &K| -> Option<ClusterObject> {
        let value = match serde_json::to_value(obj) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(?kind, error = %e, "cannot serialise object");
                return None;
            }
        };
        match convert(&value) {
            Ok(o) => Some(o),
            Err(e) => {
                // One bad object must not stop routing for the others; kube-proxy skips it too.
                tracing::warn!(error = %e, "skipping object the cluster model cannot use");
                None
            }
        }
    };
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut buffer: Vec<ClusterObject> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(obj)) => buffer.extend(to_model(&obj)),
            Ok(Event::InitDone) => {
                let objs = std::mem::take(&mut buffer);
                let now = synced.done.fetch_or(bit(kind), Ordering::AcqRel) | bit(kind);
                let all = now & synced.wanted == synced.wanted;
                view.update(|s| {
                    s.clear(kind);
                    for o in objs {
                        s.apply(o);
                    }
                    if all {
                        s.synced = true;
                    }
                });
            }
            Ok(Event::Apply(obj)) => {
                if let Some(o) = to_model(&obj) {
                    view.update(|s| s.apply(o));
                }
            }
            Ok(Event::Delete(obj)) => {
                let ns = obj.namespace().unwrap_or_default();
                let name = obj.name_any();
                view.update(|s| s.remove(kind, &ns, &name));
            }
            Err(e) => tracing::warn!(?kind, error = %e, "watch error; retrying"),
        }
    }
}
