//! The kubelet API: what the apiserver (and `kubectl` through it) asks a node directly.
//!
//! A real kubelet serves HTTPS on port 10250, and the apiserver reaches it with its kubelet client
//! certificate (`--kubelet-client-certificate`), which the kubelet authenticates against
//! `--client-ca-file`. This node serves, with the kubelet's paths and query parameters:
//!
//! | path | what |
//! |---|---|
//! | `GET /healthz` | `ok` |
//! | `GET /pods` | the PodList of the pods bound to this node |
//! | `GET /containerLogs/{ns}/{pod}/{container}` | `kubectl logs` ([`logs`]): `follow`, `tailLines` (`tail`), `sinceSeconds`, `sinceTime`, `timestamps`, `previous`, `limitBytes` |
//! | `GET,POST /exec/{ns}/{pod}[/{uid}]/{container}?command=…&input=1&output=1&error=1&tty=1` | `kubectl exec` ([`crate::streaming`], [`crate::shell`]) |
//! | `GET,POST /attach/{ns}/{pod}[/{uid}]/{container}?input=1&output=1&error=1&tty=1` | `kubectl attach`: the container's output (its log) and its stdin |
//! | `GET,POST /portForward/{ns}/{pod}[/{uid}]` | `kubectl port-forward` (WebSocket: `?port=N`) |
//!
//! Authentication follows the kubelet with anonymous auth disabled: a client must present a
//! certificate signed by the client CA. The TLS layer rejects certificates from any other CA during
//! the handshake; a client without a certificate completes the handshake and gets `401
//! Unauthorized`. Without a client CA no one can authenticate, so every request gets 401. (A real
//! kubelet would also ask the apiserver to authorize the user with a SubjectAccessReview; here
//! every authenticated client may use every endpoint.) Errors are plain text, as the kubelet's
//! go-restful handlers write them.

pub mod logs;
pub mod streams;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, get, on};
use http::{StatusCode, header};
use k8s_openapi::api::core::v1::Pod;
use proxylab_core::serve::ConnInfo;
use tokio_util::sync::CancellationToken;

use crate::shell::ShellContext;
use crate::streaming::text_error;
use crate::workload::logs::ContainerLog;

/// The pods this node runs, as last seen from the apiserver, keyed by (namespace, name).
/// Shared between the pod manager (writer) and the kubelet API (reader).
#[derive(Clone, Debug, Default)]
pub struct PodTable(Arc<RwLock<BTreeMap<(String, String), Pod>>>);

impl PodTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces a pod.
    pub fn upsert(&self, pod: Pod) {
        let key = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        // A poisoned lock only means a writer panicked mid-insert; the map itself is still usable.
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pod);
    }

    /// Removes a pod.
    pub fn remove(&self, namespace: &str, name: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Keeps only the pods for which `keep` is true.
    pub fn retain(&self, mut keep: impl FnMut(&Pod) -> bool) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, p| keep(p));
    }

    /// One pod.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The pods, sorted by namespace and name.
    pub fn snapshot(&self) -> Vec<Pod> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

type ContainerKey = (String, String, String);

/// A started container, as the kubelet API reaches it.
#[derive(Clone, Debug)]
pub struct RunningContainer {
    /// Its log (what `containerLogs` serves and `attach` follows).
    pub log: ContainerLog,
    /// What `exec` runs with; None when the container offers no shell.
    pub shell: Option<Arc<ShellContext>>,
    /// `stdin: true` in its spec: `attach` may write to it.
    pub stdin: bool,
    /// `tty: true` in its spec.
    pub tty: bool,
}

impl RunningContainer {
    /// A container with a log only (no shell, no stdin).
    pub fn new(log: ContainerLog) -> Self {
        Self {
            log,
            shell: None,
            stdin: false,
            tty: false,
        }
    }

    /// Adds the shell `exec` runs.
    pub fn with_shell(mut self, shell: Arc<ShellContext>) -> Self {
        self.shell = Some(shell);
        self
    }
}

/// The containers this node runs, keyed by (namespace, pod, container).
#[derive(Clone, Debug, Default)]
pub struct Containers(Arc<RwLock<BTreeMap<ContainerKey, RunningContainer>>>);

impl Containers {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a started container.
    pub fn insert(&self, namespace: &str, pod: &str, container: &str, running: RunningContainer) {
        let key = (namespace.to_owned(), pod.to_owned(), container.to_owned());
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, running);
    }

    /// Forgets every container of a pod (the pod is gone).
    pub fn remove_pod(&self, namespace: &str, pod: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(ns, p, _), _| !(ns == namespace && p == pod));
    }

    /// A container.
    pub fn get(&self, namespace: &str, pod: &str, container: &str) -> Option<RunningContainer> {
        let key = (namespace.to_owned(), pod.to_owned(), container.to_owned());
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
    }

    /// The running containers of a pod.
    pub fn of_pod(&self, namespace: &str, pod: &str) -> Vec<(String, RunningContainer)> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((ns, p, _), _)| ns == namespace && p == pod)
            .map(|((_, _, c), r)| (c.clone(), r.clone()))
            .collect()
    }
}

/// What the kubelet API serves from.
#[derive(Clone, Debug, Default)]
pub struct KubeletState {
    /// The pods (for `/pods`, and to tell "no such pod" from "no such container").
    pub pods: PodTable,
    /// The running containers (logs, exec, attach, port-forward).
    pub containers: Containers,
    /// Cancelled when the node stops: open exec/attach/port-forward sessions end.
    pub shutdown: CancellationToken,
    /// The node's address: port-forward dials pods from it.
    pub node_ip: Option<std::net::IpAddr>,
}

/// The kubelet API router. Serve it with [`proxylab_core::serve::serve_http`] and a TLS configuration whose
/// client verifier trusts the cluster CA ([`crate::certs::server_config`] with client CAs).
pub fn kubelet_router(state: KubeletState) -> Router {
    let get_post = MethodFilter::GET.or(MethodFilter::POST);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(list_pods))
        .route("/pods/", get(list_pods))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(logs::container_logs),
        )
        .route(
            "/exec/{namespace}/{pod}/{container}",
            on(get_post, streams::exec),
        )
        .route(
            "/exec/{namespace}/{pod}/{uid}/{container}",
            on(get_post, streams::exec_uid),
        )
        .route(
            "/attach/{namespace}/{pod}/{container}",
            on(get_post, streams::attach),
        )
        .route(
            "/attach/{namespace}/{pod}/{uid}/{container}",
            on(get_post, streams::attach_uid),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            on(get_post, streams::port_forward),
        )
        .route(
            "/portForward/{namespace}/{pod}/{uid}",
            on(get_post, streams::port_forward_uid),
        )
        .fallback(|| async { text_error(StatusCode::NOT_FOUND, "404 page not found") })
        .layer(middleware::from_fn(require_client_certificate))
        .with_state(state)
}

async fn list_pods(State(state): State<KubeletState>) -> Response {
    let list = crate::agent::objects::pod_list(state.pods.snapshot());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        list.to_string(),
    )
        .into_response()
}

async fn require_client_certificate(req: Request, next: Next) -> Response {
    let authenticated = req
        .extensions()
        .get::<ConnInfo>()
        .is_some_and(|c| c.tls && c.peer.is_some());
    if !authenticated {
        return text_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    next.run(req).await
}
