//! What a reconcile function asks for: writes to the store, as plain data.
//!
//! Every controller in this crate is split in two: a pure `reconcile` function from a
//! snapshot of the objects it watches to a list of [`Action`]s, and a driver that applies
//! those actions to the store. The split makes each rule testable without a store, and it
//! is the whole of idempotence: a reconcile over a snapshot that already matches the desired
//! state returns no actions.

use serde_json::Value;

/// Store resource names: the plural, group-qualified for non-core groups — the keys the apiserver
/// stores objects under (`ResourceInfo::store_resource` in `proxylab-apimachinery`).
pub mod resources {
    pub const NAMESPACES: &str = "namespaces";
    pub const SERVICE_ACCOUNTS: &str = "serviceaccounts";
    pub const SECRETS: &str = "secrets";
    pub const SERVICES: &str = "services";
    pub const PODS: &str = "pods";
    pub const NODES: &str = "nodes";
    pub const ENDPOINTS: &str = "endpoints";
    pub const ENDPOINT_SLICES: &str = "endpointslices.discovery.k8s.io";
    pub const LEASES: &str = "leases.coordination.k8s.io";
    pub const EVENTS: &str = "events";
    pub const REPLICA_SETS: &str = "replicasets.apps";
    pub const DEPLOYMENTS: &str = "deployments.apps";
    pub const JOBS: &str = "jobs.batch";
}

/// Which object an action touches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// Store resource, one of [`resources`].
    pub resource: &'static str,
    /// `None` for cluster-scoped objects (namespaces, nodes).
    pub namespace: Option<String>,
    pub name: String,
    /// Set when one incarnation of the name is meant: a guard ([`Action::Delete::unless_present`])
    /// with a uid is satisfied only by an object carrying that uid, so an owner deleted and
    /// recreated under the same name does not keep its predecessor's dependents alive.
    pub uid: Option<String>,
}

impl Target {
    pub fn new(resource: &'static str, namespace: Option<&str>, name: &str) -> Self {
        Target {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            uid: None,
        }
    }

    /// The same target, narrowed to the object with this uid.
    pub fn with_uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.to_string());
        self
    }
}

/// One write a controller wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create `object` (AlreadyExists means someone else did it first: fine).
    Create { target: Target, object: Value },
    /// Replace the object. `precondition_rv` is the resourceVersion the controller read; a
    /// Conflict means its snapshot was stale, and the watch event that made it stale will
    /// trigger the next reconcile.
    Update {
        target: Target,
        object: Value,
        precondition_rv: Option<u64>,
    },
    /// Delete the object (NotFound is success: it is already gone).
    Delete {
        target: Target,
        precondition_rv: Option<u64>,
        /// Set when the deletion is justified by the *absence* of another object (a token
        /// Secret whose ServiceAccount is gone, a slice whose Service is gone): the driver
        /// first reads that object from the store and skips the delete if it exists after
        /// all. Informer caches of different resources lag each other; a cache miss is not
        /// proof of absence (the real token controller does the same live lookup).
        unless_present: Option<Target>,
    },
}

impl Action {
    pub fn target(&self) -> &Target {
        match self {
            Action::Create { target, .. }
            | Action::Update { target, .. }
            | Action::Delete { target, .. } => target,
        }
    }

    /// Short verb for logs and tests.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Update { .. } => "update",
            Action::Delete { .. } => "delete",
        }
    }

    /// The object written by a create or update.
    pub fn object(&self) -> Option<&Value> {
        match self {
            Action::Create { object, .. } | Action::Update { object, .. } => Some(object),
            Action::Delete { .. } => None,
        }
    }
}
