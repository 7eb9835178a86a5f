//! The resource registry: which kinds of object the lab's apiserver serves.
//!
//! In Kubernetes every REST path names a *resource* (`pods`, `endpointslices`) inside a group and
//! version (`""`/`v1`, `discovery.k8s.io`/`v1`); each resource stores objects of one *kind* (`Pod`,
//! `EndpointSlice`). Discovery documents, OpenAPI documents, Table printing, validation, strategic merge
//! patch and field selectors all hang off that mapping, so it lives in one static table here.
//!
//! The table is static data (`&'static`) so that every other module can hand out references without
//! allocation, and so that tests can iterate over "every resource the lab knows".

/// Everything the lab knows about one served resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; `""` is the legacy core group served under `/api`.
    pub group: &'static str,
    /// API version inside the group (`v1` for everything the lab serves).
    pub version: &'static str,
    /// Kind of the objects (`Pod`).
    pub kind: &'static str,
    /// Plural resource name used in URLs (`pods`).
    pub resource: &'static str,
    /// Singular name (`pod`), which kubectl accepts as an alias.
    pub singular: &'static str,
    /// Namespaced resources live under `/namespaces/{ns}/`; cluster-scoped ones do not.
    pub namespaced: bool,
    /// Verbs the apiserver supports on the resource (discovery advertises exactly these).
    pub verbs: &'static [&'static str],
    /// kubectl short names (`po`, `svc`).
    pub short_names: &'static [&'static str],
    /// Categories; `all` makes `kubectl get all` include the resource.
    pub categories: &'static [&'static str],
    /// Subresources the lab serves (`status`, `binding`, `token`), and those the apiserver proxy
    /// (the bastion, mounted in every lab apiserver) serves: `proxy` on nodes, pods and services,
    /// `log`, `exec`, `attach`, `portforward` on pods.
    pub subresources: &'static [&'static str],
    /// Field labels usable in `fieldSelector=` besides `metadata.name` and `metadata.namespace`
    /// (which every resource supports, as in Kubernetes).
    pub field_selectors: &'static [&'static str],
}

impl ResourceInfo {
    /// The key the store uses: the plural, qualified by the group for non-core groups
    /// (`pods`, `endpointslices.discovery.k8s.io`). It is also the `group/resource` string Kubernetes
    /// prints in error messages.
    pub fn store_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `apiVersion` of the objects: `v1` for core, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Kind of a list of these objects (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// URL prefix of the group-version: `/api/v1` or `/apis/discovery.k8s.io/v1`.
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// Whether `verb` is supported.
    pub fn supports_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Whether the subresource (`status`, `proxy`) is served.
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }

    /// Whether `field` can be used in a field selector on this resource.
    pub fn supports_field_selector(&self, field: &str) -> bool {
        field == "metadata.name"
            || field == "metadata.namespace"
            || self.field_selectors.contains(&field)
    }
}

/// Verbs of the top-level resources: the lab's apiserver implements all of them, including
/// `deletecollection` (DELETE on a collection URL with selectors).
const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces cannot be deleted as a collection (as in Kubernetes).
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        resource: "configmaps",
        singular: "configmap",
        namespaced: true,
        verbs: VERBS,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        field_selectors: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Endpoints",
        resource: "endpoints",
        singular: "endpoints",
        namespaced: true,
        verbs: VERBS,
        short_names: &["ep"],
        categories: &[],
        subresources: &[],
        field_selectors: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Event",
        resource: "events",
        singular: "event",
        namespaced: true,
        verbs: VERBS,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        // The field labels kube-apiserver's event strategy exposes (`kubectl describe` uses the
        // involvedObject ones).
        field_selectors: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Namespace",
        resource: "namespaces",
        singular: "namespace",
        namespaced: false,
        verbs: NAMESPACE_VERBS,
        short_names: &["ns"],
        categories: &[],
        subresources: &["status"],
        field_selectors: &["status.phase"],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Node",
        resource: "nodes",
        singular: "node",
        namespaced: false,
        verbs: VERBS,
        short_names: &["no"],
        categories: &[],
        subresources: &["proxy", "status"],
        field_selectors: &["spec.unschedulable"],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Pod",
        resource: "pods",
        singular: "pod",
        namespaced: true,
        verbs: VERBS,
        short_names: &["po"],
        categories: &["all"],
        subresources: &[
            "attach",
            "binding",
            "exec",
            "log",
            "portforward",
            "proxy",
            "status",
        ],
        field_selectors: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Secret",
        resource: "secrets",
        singular: "secret",
        namespaced: true,
        verbs: VERBS,
        short_names: &[],
        categories: &[],
        subresources: &[],
        field_selectors: &["type"],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        resource: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        verbs: VERBS,
        short_names: &["sa"],
        categories: &[],
        // `token` is the TokenRequest API (`kubectl create token`).
        subresources: &["token"],
        field_selectors: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Service",
        resource: "services",
        singular: "service",
        namespaced: true,
        verbs: VERBS,
        short_names: &["svc"],
        categories: &["all"],
        subresources: &["proxy", "status"],
        field_selectors: &["spec.clusterIP", "spec.type"],
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        resource: "deployments",
        singular: "deployment",
        namespaced: true,
        verbs: VERBS,
        short_names: &["deploy"],
        categories: &["all"],
        // `scale` answers an `autoscaling/v1` Scale (`kubectl scale`); `status` is the controller's.
        subresources: &["scale", "status"],
        field_selectors: &[],
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        resource: "replicasets",
        singular: "replicaset",
        namespaced: true,
        verbs: VERBS,
        short_names: &["rs"],
        categories: &["all"],
        subresources: &["scale", "status"],
        field_selectors: &[],
    },
    ResourceInfo {
        // Not stored: the apiserver answers `kubectl auth whoami` with the caller's identity.
        group: "authentication.k8s.io",
        version: "v1",
        kind: "SelfSubjectReview",
        resource: "selfsubjectreviews",
        singular: "selfsubjectreview",
        namespaced: false,
        verbs: &["create"],
        short_names: &[],
        categories: &[],
        subresources: &[],
        field_selectors: &[],
    },
    ResourceInfo {
        group: "batch",
        version: "v1",
        kind: "Job",
        resource: "jobs",
        singular: "job",
        namespaced: true,
        verbs: VERBS,
        short_names: &[],
        categories: &["all"],
        // `status` is the Job controller's.
        subresources: &["status"],
        field_selectors: &[],
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        resource: "leases",
        singular: "lease",
        namespaced: true,
        verbs: VERBS,
        short_names: &[],
        categories: &[],
        subresources: &[],
        field_selectors: &[],
    },
    ResourceInfo {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        resource: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        verbs: VERBS,
        short_names: &[],
        categories: &[],
        subresources: &[],
        field_selectors: &["addressType"],
    },
];

/// Every resource the lab serves, core group first, then by group name; inside a group by resource name.
pub fn resources() -> &'static [ResourceInfo] {
    RESOURCES
}

/// The resource at `group`/`version`/`resource` (the plural, exactly as in a URL path).
pub fn lookup(group: &str, version: &str, resource: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.resource == resource)
}

/// The resource whose objects have this `apiVersion` (`v1`, `discovery.k8s.io/v1`) and `kind`.
pub fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The resource with this store key (`pods`, `endpointslices.discovery.k8s.io`).
pub fn lookup_store_resource(store_resource: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.store_resource() == store_resource)
}

/// Resolves a name the way kubectl accepts it on the command line: plural (`pods`), singular (`pod`),
/// short name (`po`), kind in any case (`Pod`), or any of those qualified by the group
/// (`endpointslices.discovery.k8s.io`, `lease.coordination.k8s.io`).
pub fn resolve(name: &str) -> Option<&'static ResourceInfo> {
    let lower = name.to_ascii_lowercase();
    let matches = |r: &ResourceInfo, n: &str| {
        r.resource == n
            || r.singular == n
            || r.short_names.contains(&n)
            || r.kind.eq_ignore_ascii_case(n)
    };
    RESOURCES
        .iter()
        .find(|r| r.group.is_empty() && matches(r, &lower))
        .or_else(|| RESOURCES.iter().find(|r| matches(r, &lower)))
        .or_else(|| {
            let (n, group) = lower.split_once('.')?;
            RESOURCES.iter().find(|r| r.group == group && matches(r, n))
        })
}

/// Resources of one group-version, in registry order.
pub fn resources_in(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceInfo> {
    let group = group.to_string();
    let version = version.to_string();
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// The non-core groups, sorted and deduplicated (`coordination.k8s.io`, `discovery.k8s.io`).
pub fn groups() -> Vec<&'static str> {
    let mut g: Vec<&'static str> = RESOURCES
        .iter()
        .map(|r| r.group)
        .filter(|g| !g.is_empty())
        .collect();
    g.sort_unstable();
    g.dedup();
    g
}

/// The versions served for `group` (every group of the lab serves exactly `v1`, but do not assume it).
pub fn versions_of(group: &str) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = RESOURCES
        .iter()
        .filter(|r| r.group == group)
        .map(|r| r.version)
        .collect();
    v.dedup();
    v
}

/// Splits an `apiVersion` into (group, version): `v1` → ("", "v1"), `discovery.k8s.io/v1` →
/// ("discovery.k8s.io", "v1").
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let pods = lookup("", "v1", "pods").expect("pods");
        assert_eq!(pods.kind, "Pod");
        assert_eq!(pods.store_resource(), "pods");
        assert_eq!(pods.api_version(), "v1");
        assert_eq!(pods.group_version_path(), "/api/v1");
        let es = lookup_kind("discovery.k8s.io/v1", "EndpointSlice").expect("eps");
        assert_eq!(es.store_resource(), "endpointslices.discovery.k8s.io");
        assert_eq!(es.api_version(), "discovery.k8s.io/v1");
        assert_eq!(
            lookup_store_resource("leases.coordination.k8s.io").map(|r| r.kind),
            Some("Lease")
        );
        assert!(lookup("", "v1", "deployments").is_none());
        assert_eq!(
            lookup("apps", "v1", "deployments").map(|r| r.store_resource()),
            Some("deployments.apps".to_string())
        );
        assert!(lookup_kind("v1", "EndpointSlice").is_none());
        assert_eq!(
            groups(),
            vec![
                "apps",
                "authentication.k8s.io",
                "batch",
                "coordination.k8s.io",
                "discovery.k8s.io"
            ]
        );
        for (name, kind) in [
            ("po", "Pod"),
            ("pod", "Pod"),
            ("Pods", "Pod"),
            ("svc", "Service"),
            ("ep", "Endpoints"),
            ("endpointslice", "EndpointSlice"),
            ("endpointslices.discovery.k8s.io", "EndpointSlice"),
            ("lease.coordination.k8s.io", "Lease"),
            ("ServiceAccount", "ServiceAccount"),
        ] {
            assert_eq!(resolve(name).map(|r| r.kind), Some(kind), "{name}");
        }
        assert_eq!(resolve("deploy").map(|r| r.kind), Some("Deployment"));
        assert_eq!(resolve("rs").map(|r| r.kind), Some("ReplicaSet"));
        assert_eq!(
            resolve("deployments.apps").map(|r| r.kind),
            Some("Deployment")
        );
        assert!(resolve("pods.apps").is_none());
    }

    #[test]
    fn every_required_resource_is_known_with_scope() {
        let expect = [
            ("", "namespaces", false),
            ("", "nodes", false),
            ("", "pods", true),
            ("", "services", true),
            ("", "endpoints", true),
            ("", "secrets", true),
            ("", "configmaps", true),
            ("", "serviceaccounts", true),
            ("", "events", true),
            ("discovery.k8s.io", "endpointslices", true),
            ("coordination.k8s.io", "leases", true),
            ("authentication.k8s.io", "selfsubjectreviews", false),
            ("apps", "deployments", true),
            ("apps", "replicasets", true),
            ("batch", "jobs", true),
        ];
        for (g, r, ns) in expect {
            let info = lookup(g, "v1", r).unwrap_or_else(|| panic!("{r} missing"));
            assert_eq!(info.namespaced, ns, "{r}");
        }
        assert_eq!(resources().len(), expect.len());
    }

    #[test]
    fn short_names_are_unique() {
        let mut all: Vec<&str> = resources()
            .iter()
            .flat_map(|r| r.short_names.iter().copied())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        for s in ["po", "svc", "no", "ns", "ep", "sa", "cm", "ev"] {
            assert!(all.contains(&s), "{s}");
        }
    }

    #[test]
    fn field_selector_support() {
        let ev = lookup("", "v1", "events").expect("events");
        assert!(ev.supports_field_selector("involvedObject.uid"));
        assert!(ev.supports_field_selector("metadata.name"));
        assert!(!ev.supports_field_selector("spec.nodeName"));
    }
}
