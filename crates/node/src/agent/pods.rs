//! The pod half of the agent: watch the pods bound to this node, run them, report them, finish
//! their deletion.
//!
//! A kubelet's pod workers reconcile "pods the apiserver says I run" with "pods I actually run".
//! Here that is one loop over a watch of `spec.nodeName=<node>`:
//! - a new pod → an IP from the pod CIDR, its containers started as echo workloads, and a status
//!   patch (Running with IPs and conditions, or Pending with waiting containers);
//! - a pod with `metadata.deletionTimestamp` (graceful deletion) → Ready=False, the containers'
//!   `preStop` sleeps (still serving, see [`super::lifecycle`]), workloads stopped, IP released,
//!   then `DELETE` with `gracePeriodSeconds=0` (uid precondition) to really remove it;
//! - a pod that vanished (force-deleted, or gone while the watch was down) → workloads stopped.
//!
//! Terminations run in their own tasks so one pod draining its connections does not hold up the rest.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use http::Method;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use proxylab_kube::watch::ObjectEvent;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::api::ApiClient;
use super::completion::{self, PodRun, RestartPolicy};
use super::lifecycle;
use super::objects::{self, ContainerOutcome, StartedPod};
use super::volumes::{self, MountEntry};
use crate::certs::{self, CertificateAuthority};
use crate::ipam::PodIpAllocator;
use crate::kubelet_api::{Containers, PodTable, RunningContainer};
use crate::shell::{self, ShellContext, dns::ClusterDns, fetch::FetchContext};
use crate::workload::{self, PodContext, PodIdentity, WorkloadError, WorkloadKind};
use proxylab_core::cluster::ClusterView;

/// How long a stopping pod's servers may take to drain before the agent moves on.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

struct RunningPod {
    namespace: String,
    name: String,
    /// The allocated pod IP (None for hostNetwork pods, and once a finished pod gave it back).
    ip: PodIp,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Whether the pod runs long-lived workloads that all started ready (no programs that run to
    /// completion): then its Ready condition is this node's to assert, see
    /// `objects::pod_ready_again_status`.
    serving: bool,
}

pub(crate) struct PodManager {
    pub(crate) client: ApiClient,
    pub(crate) node_name: String,
    pub(crate) node_ip: IpAddr,
    pub(crate) ipam: Arc<Mutex<PodIpAllocator>>,
    pub(crate) ca: Option<Arc<CertificateAuthority>>,
    pub(crate) table: PodTable,
    pub(crate) containers: Containers,
    /// Services and endpoints, for the containers' DNS and Service environment variables.
    pub(crate) view: ClusterView,
    /// Trust for the shell's `fetch https://…` (the cluster CA).
    pub(crate) fetch_tls: Option<Arc<rustls::ClientConfig>>,
    /// Makes Event names unique.
    event_seq: AtomicU64,
    running: HashMap<String, RunningPod>,
    /// uids whose termination is in progress (duplicate MODIFIED events must not start another).
    terminating: Arc<Mutex<HashSet<String>>>,
    /// uids seen since the watcher (re)started listing; None outside a re-list.
    relist: Option<HashSet<String>>,
    tasks: TaskTracker,
}

impl PodManager {
    // Called once, from the agent; each argument is a distinct piece of node state.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        client: ApiClient,
        node_name: String,
        node_ip: IpAddr,
        ipam: PodIpAllocator,
        ca: Option<Arc<CertificateAuthority>>,
        table: PodTable,
        containers: Containers,
        view: ClusterView,
        fetch_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        Self {
            client,
            node_name,
            node_ip,
            ipam: Arc::new(Mutex::new(ipam)),
            ca,
            table,
            containers,
            view,
            fetch_tls,
            event_seq: AtomicU64::new(0),
            running: HashMap::new(),
            terminating: Arc::new(Mutex::new(HashSet::new())),
            relist: None,
            tasks: TaskTracker::new(),
        }
    }

    /// Watches this node's pods until `shutdown`; then stops every workload.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let selector = format!("spec.nodeName={}", self.node_name);
        let mut events = proxylab_kube::watch::watch_pods(self.client.rest(), Some(&selector));
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                event = events.next() => event,
            };
            match event {
                Some(Ok(event)) => self.handle(event).await,
                // The backoff already paces retries; the stream continues after an error.
                Some(Err(err)) => {
                    tracing::warn!(node = %self.node_name, error = %err, "pod watch error")
                }
                None => break,
            }
        }
        // The agent is going away; in-process workloads cannot outlive it (a real kubelet's
        // containers would). Stop them all and wait.
        let uids: Vec<String> = self.running.keys().cloned().collect();
        for uid in uids {
            self.stop_local(&uid);
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    async fn handle(&mut self, event: ObjectEvent<Pod>) {
        match event {
            ObjectEvent::Init => self.relist = Some(HashSet::new()),
            ObjectEvent::InitApply(pod) => {
                if let (Some(seen), Some(uid)) = (self.relist.as_mut(), pod.metadata.uid.clone()) {
                    seen.insert(uid);
                }
                self.apply(pod).await;
            }
            ObjectEvent::InitDone => {
                let seen = self.relist.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .running
                    .keys()
                    .filter(|uid| !seen.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.stop_local(&uid);
                }
                self.table
                    .retain(|p| p.metadata.uid.as_ref().is_some_and(|u| seen.contains(u)));
            }
            ObjectEvent::Apply(pod) => self.apply(pod).await,
            ObjectEvent::Delete(pod) => {
                self.table.remove(&namespace_of(&pod), &name_of(&pod));
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.stop_local(uid);
                    self.terminating
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(uid);
                }
            }
        }
    }

    async fn apply(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        // Defensive: a server that ignores the field selector must not make us run others' pods.
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(self.node_name.as_str()) {
            return;
        }
        self.table.upsert(pod.clone());
        if pod.metadata.deletion_timestamp.is_some() {
            self.begin_termination(pod, uid);
            return;
        }
        if let Some(running) = self.running.get(&uid) {
            if running.serving
                && let Some(patch) = objects::pod_ready_again_status(&pod, Timestamp::now())
            {
                tracing::info!(pod = %running.name, "reporting a running pod ready again");
                let api = PodApi::new(self.client.clone(), &running.namespace);
                patch_status(&api, &running.name, &patch).await;
            }
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return;
        }
        self.start(pod, uid).await;
    }

    async fn start(&mut self, pod: Pod, uid: String) {
        let namespace = namespace_of(&pod);
        let name = name_of(&pod);
        let api = PodApi::new(self.client.clone(), &namespace);
        // hostNetwork pods share the node's address (and need no IP of their own).
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let (pod_ip, allocated) = if host_network {
            (self.node_ip, None)
        } else {
            match self.assign_ip(&pod) {
                Ok(ip) => (IpAddr::V4(ip), Some(ip)),
                Err(err) => {
                    tracing::warn!(%namespace, %name, error = %err, "no pod IP");
                    let patch = objects::pod_failed_to_start_status(
                        "PodIPExhausted",
                        &err.to_string(),
                        self.node_ip,
                        Timestamp::now(),
                    );
                    patch_status(&api, &name, &patch).await;
                    return;
                }
            }
        };
        let identity = Arc::new(PodIdentity {
            name: name.clone(),
            namespace: namespace.clone(),
            node: self.node_name.clone(),
            ip: pod_ip,
        });
        let containers = objects::container_specs(&pod);
        let needs_tls = containers
            .iter()
            .any(|c| WorkloadKind::from_image(&c.image) == Some(WorkloadKind::EchoHttp));
        let tls = if needs_tls {
            self.pod_tls(&identity)
        } else {
            None
        };
        let ctx = PodContext {
            identity,
            tls,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        let ip = PodIp::new(allocated, self.ipam.clone());
        let started_at = Timestamp::now();
        let mut outcomes = Vec::with_capacity(containers.len());
        // The containers that run a program to completion: started once the Pod is reported.
        let mut programs = Vec::new();
        for (index, container) in containers.iter().enumerate() {
            let outcome = match workload::start_container(container, &ctx).await {
                Ok(started) => {
                    tracing::info!(%namespace, pod = %name, container = %container.name, listening = ?started.listening, "container started");
                    let mounts = self
                        .mount_volumes(&pod, &container.name, ctx.identity.ip)
                        .await;
                    let log = started.log.clone();
                    let running =
                        self.running_container(&pod, &container.name, &ctx, started.log, &mounts);
                    if started.runs_to_completion
                        && let Some(shell) = running.shell.clone()
                    {
                        programs.push((index, shell, container.argv.clone(), log));
                    }
                    self.containers
                        .insert(&namespace, &name, &container.name, running);
                    self.event(
                        &pod,
                        Some(&container.name),
                        "Normal",
                        "Started",
                        &format!("Started container {}", container.name),
                    );
                    ContainerOutcome::Running {
                        name: container.name.clone(),
                        image: container.image.clone(),
                    }
                }
                Err(err) => {
                    let reason = match err {
                        WorkloadError::UnknownImage { .. } => "ImagePullBackOff",
                        _ => "CreateContainerError",
                    };
                    tracing::warn!(%namespace, pod = %name, container = %container.name, error = %err, "container not started");
                    self.event(
                        &pod,
                        Some(&container.name),
                        "Warning",
                        "Failed",
                        &err.to_string(),
                    );
                    ContainerOutcome::Waiting {
                        name: container.name.clone(),
                        image: container.image.clone(),
                        reason: reason.into(),
                        message: err.to_string(),
                    }
                }
            };
            outcomes.push(outcome);
        }
        let serving = programs.is_empty()
            && outcomes
                .iter()
                .all(|o| matches!(o, ContainerOutcome::Running { .. }));
        self.running.insert(
            uid.clone(),
            RunningPod {
                namespace,
                name: name.clone(),
                ip: ip.clone(),
                shutdown: ctx.shutdown.clone(),
                tracker: ctx.tracker.clone(),
                serving,
            },
        );
        let started = StartedPod {
            uid: &uid,
            pod_ip,
            host_ip: self.node_ip,
            started_at,
            scheduled_at: objects::scheduled_at(&pod),
            containers: &outcomes,
        };
        let patch = objects::pod_started_status(&started, Timestamp::now());
        patch_status(&api, &name, &patch).await;
        if !programs.is_empty() {
            let list = |key: &str| patch["status"][key].as_array().cloned().unwrap_or_default();
            let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
            let run = Arc::new(PodRun {
                api,
                name,
                policy: RestartPolicy::parse(policy),
                ip,
                state: tokio::sync::Mutex::new((list("containerStatuses"), list("conditions"))),
            });
            for (index, shell, argv, log) in programs {
                ctx.tracker.spawn(completion::run_container(
                    run.clone(),
                    index,
                    shell,
                    argv,
                    log,
                    ctx.shutdown.clone(),
                ));
            }
        }
    }

    /// What the kubelet API needs of a started container: its log, and the shell `exec` runs
    /// with the pod's files, environment and network identity.
    fn running_container(
        &self,
        pod: &Pod,
        container: &str,
        ctx: &PodContext,
        log: crate::workload::logs::ContainerLog,
        mounts: &[MountEntry],
    ) -> RunningContainer {
        let spec = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == container))
            .cloned()
            .unwrap_or_default();
        let ip = ctx.identity.ip;
        let shell = ShellContext {
            pod: ctx.identity.clone(),
            container: container.to_owned(),
            hostname: shell::files::hostname(pod),
            env: shell::files::environment(pod, &spec, ip, self.node_ip, Some(&self.view)),
            files: shell::files::container_files(pod, ip, mounts),
            fetch: FetchContext {
                pod_ip: ip,
                dns: ClusterDns::new(Some(self.view.clone()), &ctx.identity.namespace, ip),
                tls: self.fetch_tls.clone(),
            },
            shutdown: ctx.shutdown.clone(),
        };
        RunningContainer {
            log,
            shell: Some(Arc::new(shell)),
            stdin: spec.stdin.unwrap_or(false),
            tty: spec.tty.unwrap_or(false),
        }
    }

    /// Reads the volumes a container mounts (for its shell's files); failures become
    /// `FailedMount` warnings, as the kubelet reports them.
    async fn mount_volumes(&self, pod: &Pod, container: &str, pod_ip: IpAddr) -> Vec<MountEntry> {
        let Some(spec) = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == container))
        else {
            return Vec::new();
        };
        let mounted = volumes::mount(&self.client, pod, spec, pod_ip, self.node_ip).await;
        for failure in &mounted.failures {
            tracing::warn!(pod = %name_of(pod), %container, %failure, "volume not mounted");
            self.event(pod, Some(container), "Warning", "FailedMount", failure);
        }
        mounted.entries
    }

    /// Reports a kubelet Event about a pod, in the background (events are best effort).
    fn event(&self, pod: &Pod, container: Option<&str>, kind: &str, reason: &str, message: &str) {
        let namespace = namespace_of(pod);
        let name = name_of(pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let facts = objects::EventFacts {
            namespace: &namespace,
            pod: &name,
            uid: &uid,
            container,
            kind,
            reason,
            message,
            node: &self.node_name,
        };
        let seq = self.event_seq.fetch_add(1, Ordering::Relaxed);
        let event = objects::pod_event(&facts, Timestamp::now(), seq);
        let client = self.client.clone();
        let path = format!("/api/v1/namespaces/{namespace}/events");
        self.tasks.spawn(async move {
            if let Err(err) = client.call(Method::POST, &path, Some(&event)).await {
                tracing::debug!(error = %err, "event not recorded");
            }
        });
    }

    /// Keeps the IP a pod already reports (the agent restarted) when it is free, else allocates.
    fn assign_ip(&self, pod: &Pod) -> Result<Ipv4Addr, crate::ipam::IpamError> {
        let mut ipam = self.ipam.lock().unwrap_or_else(|e| e.into_inner());
        let previous = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        if let Some(ip) = previous
            && ipam.reserve(ip).is_ok()
        {
            return Ok(ip);
        }
        ipam.allocate()
    }

    fn pod_tls(&self, identity: &PodIdentity) -> Option<Arc<rustls::ServerConfig>> {
        let names = vec![
            identity.name.clone(),
            identity.ip.to_string(),
            format!("{}.{}.pod", identity.name, identity.namespace),
            format!("{}.{}.pod.cluster.local", identity.name, identity.namespace),
            // Any Service of the namespace may front this pod; a wildcard lets clients verify the
            // pod's certificate whichever Service name they dialled.
            format!("*.{}.svc", identity.namespace),
            format!("*.{}.svc.cluster.local", identity.namespace),
        ];
        let minted = certs::issue_serving(&names, self.ca.as_deref())
            .and_then(|key| certs::server_config(&key, Vec::new()));
        match minted {
            Ok(config) => Some(config),
            Err(err) => {
                tracing::warn!(pod = %identity.name, error = %err, "could not mint the pod's serving certificate");
                None
            }
        }
    }

    /// Graceful deletion, the kubelet's half: report not ready, stop, release, remove for good.
    fn begin_termination(&mut self, pod: Pod, uid: String) {
        if !self
            .terminating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.clone())
        {
            return;
        }
        let running = self.running.remove(&uid);
        let namespace = namespace_of(&pod);
        let name = name_of(&pod);
        let api = PodApi::new(self.client.clone(), &namespace);
        let containers = self.containers.clone();
        let terminating = self.terminating.clone();
        let pre_stop = if running.is_some() {
            lifecycle::pre_stop_delay(&pod)
        } else {
            Duration::ZERO
        };
        if running.is_some() {
            for container in lifecycle::unsupported_hooks(&pod) {
                self.event(
                    &pod,
                    Some(&container),
                    "Warning",
                    "FailedPreStopHook",
                    "the lab's node agent runs only preStop hooks that sleep; this one was skipped",
                );
            }
            for container in objects::container_specs(&pod) {
                self.event(
                    &pod,
                    Some(&container.name),
                    "Normal",
                    "Killing",
                    &format!("Stopping container {}", container.name),
                );
            }
        }
        self.tasks.spawn(async move {
            tracing::info!(%namespace, pod = %name, "terminating");
            if running.is_some() {
                patch_status(
                    &api,
                    &name,
                    &objects::pod_terminating_status(&pod, Timestamp::now()),
                )
                .await;
            }
            if let Some(running) = running {
                // The Pod is out of its Services' endpoints (not ready, terminating) but keeps
                // serving through its preStop sleep while proxies catch up.
                if !pre_stop.is_zero() {
                    tracing::info!(%namespace, pod = %name, delay = ?pre_stop, "preStop: serving while endpoints drain");
                    tokio::time::sleep(pre_stop).await;
                }
                stop_and_release(running, &containers).await;
            }
            if !delete_for_good(&api, &name, &uid).await {
                // Let the next event about this pod try again.
                terminating
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&uid);
            }
        });
    }

    /// Stops a pod's workloads without touching the API (the pod is already gone there).
    fn stop_local(&mut self, uid: &str) {
        if let Some(running) = self.running.remove(uid) {
            tracing::info!(namespace = %running.namespace, pod = %running.name, "stopping workloads");
            let containers = self.containers.clone();
            self.tasks
                .spawn(async move { stop_and_release(running, &containers).await });
        }
    }
}

async fn stop_and_release(running: RunningPod, containers: &Containers) {
    running.shutdown.cancel();
    running.tracker.close();
    if tokio::time::timeout(STOP_TIMEOUT, running.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(namespace = %running.namespace, pod = %running.name, "workloads did not stop in time");
    }
    containers.remove_pod(&running.namespace, &running.name);
    // Only after the sockets are closed may another pod get this address.
    running.ip.release();
}

/// A pod's IP and the allocator it came from, released once by whoever is first: the pod's
/// removal, or the pod finishing (a kubelet tears a finished pod's sandbox down, so a Job's many
/// completed pods do not exhaust the node's pod CIDR; `status.podIP` still names the address).
#[derive(Clone)]
pub(crate) struct PodIp {
    ip: Arc<Mutex<Option<Ipv4Addr>>>,
    ipam: Arc<Mutex<PodIpAllocator>>,
}

impl PodIp {
    fn new(ip: Option<Ipv4Addr>, ipam: Arc<Mutex<PodIpAllocator>>) -> Self {
        Self {
            ip: Arc::new(Mutex::new(ip)),
            ipam,
        }
    }

    /// Gives the address back (once; later calls do nothing).
    pub(crate) fn release(&self) {
        let taken = self.ip.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(ip) = taken {
            self.ipam
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(ip);
        }
    }
}

/// The pods of one namespace, for the two calls a kubelet makes on them.
pub(crate) struct PodApi {
    client: ApiClient,
    base: String,
}

impl PodApi {
    fn new(client: ApiClient, namespace: &str) -> Self {
        Self {
            client,
            base: format!("/api/v1/namespaces/{namespace}/pods"),
        }
    }
}

fn namespace_of(pod: &Pod) -> String {
    pod.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// The final `DELETE` (grace 0, uid precondition), retried a few times; true when the pod is gone.
async fn delete_for_good(api: &PodApi, name: &str, uid: &str) -> bool {
    let options = json!({
        "apiVersion": "v1", "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": uid},
    });
    let path = format!("{}/{name}", api.base);
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=5 {
        match api.client.call(Method::DELETE, &path, Some(&options)).await {
            Ok(_) => {
                tracing::info!(pod = %name, "deleted");
                return true;
            }
            Err(err) if err.is_not_found() => return true,
            // A uid precondition failure means a new pod took the name: ours is gone already.
            Err(err) if err.is_conflict() => return true,
            Err(err) => {
                tracing::warn!(pod = %name, attempt, error = %err, "final delete failed");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    false
}

/// Patches a pod's status, retrying a few times: a lost status update would leave the pod
/// Pending until something else about it changes.
pub(crate) async fn patch_status(api: &PodApi, name: &str, patch: &serde_json::Value) {
    let path = format!("{}/{name}/status", api.base);
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=5 {
        match api.client.merge_patch(&path, patch).await {
            Ok(_) => return,
            Err(err) if err.is_not_found() => return,
            Err(err) => {
                tracing::warn!(pod = %name, attempt, error = %err, "pod status patch failed");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}
