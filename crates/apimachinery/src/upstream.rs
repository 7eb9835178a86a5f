//! What kube-apiserver serves that the lab may not: the catalogue behind honest "not served" answers.
//!
//! A client that asks the lab for something it does not model deserves to know which of two things
//! happened: it asked for something no Kubernetes apiserver has (a typo, a custom resource), or for
//! something kube-apiserver has and the lab leaves out. The first is a plain `404 NotFound`; the second
//! is `501` with a message naming what is missing and why (see the apiserver's `errors` module).
//! This module is the list that tells them apart: the built-in API of kube-apiserver 1.33 with its
//! default feature gates — every group/version, resource and subresource, and the non-resource paths —
//! and, per group, why the lab does not model it.
//!
//! It is data, not behaviour: the lab's own [`crate::registry`] decides what is served, and a test
//! checks that everything the registry serves is in this catalogue (the lab serves nothing
//! kube-apiserver does not).

/// One API group of kube-apiserver 1.33 (`""` is the core group), with why the lab leaves out what it
/// leaves out of it.
#[derive(Debug)]
pub struct UpstreamGroup {
    pub group: &'static str,
    /// The versions served by default.
    pub versions: &'static [&'static str],
    /// Each resource (plural) with its subresources.
    pub resources: &'static [(&'static str, &'static [&'static str])],
    /// Why the lab does not serve this group's resources (those it does not), in a phrase that follows
    /// "the lab apiserver does not serve …: ".
    pub why: &'static str,
}

const NOT_MODELLED: &str = "the lab does not model this API";

static GROUPS: &[UpstreamGroup] = &[
    UpstreamGroup {
        group: "",
        versions: &["v1"],
        resources: &[
            ("bindings", &[]),
            ("componentstatuses", &[]),
            ("configmaps", &[]),
            ("endpoints", &[]),
            ("events", &[]),
            ("limitranges", &[]),
            ("namespaces", &["finalize", "status"]),
            ("nodes", &["proxy", "status"]),
            ("persistentvolumeclaims", &["status"]),
            ("persistentvolumes", &["status"]),
            (
                "pods",
                &[
                    "attach",
                    "binding",
                    "ephemeralcontainers",
                    "eviction",
                    "exec",
                    "log",
                    "portforward",
                    "proxy",
                    "resize",
                    "status",
                ],
            ),
            ("podtemplates", &[]),
            ("replicationcontrollers", &["scale", "status"]),
            ("resourcequotas", &["status"]),
            ("secrets", &[]),
            ("serviceaccounts", &["token"]),
            ("services", &["proxy", "status"]),
        ],
        why: "the lab models the core objects proxies route on (pods, services, endpoints, nodes) and \
              what clients need around them; volumes, quotas, limit ranges and replication controllers \
              are not modelled",
    },
    UpstreamGroup {
        group: "admissionregistration.k8s.io",
        versions: &["v1"],
        resources: &[
            ("mutatingwebhookconfigurations", &[]),
            ("validatingadmissionpolicies", &["status"]),
            ("validatingadmissionpolicybindings", &[]),
            ("validatingwebhookconfigurations", &[]),
        ],
        why: "admission webhooks and policies are not modelled",
    },
    UpstreamGroup {
        group: "apiextensions.k8s.io",
        versions: &["v1"],
        resources: &[("customresourcedefinitions", &["status"])],
        why: "custom resources are not modelled",
    },
    UpstreamGroup {
        group: "apiregistration.k8s.io",
        versions: &["v1"],
        resources: &[("apiservices", &["status"])],
        why: "API aggregation is not modelled",
    },
    UpstreamGroup {
        group: "apps",
        versions: &["v1"],
        resources: &[
            ("controllerrevisions", &[]),
            ("daemonsets", &["status"]),
            ("deployments", &["scale", "status"]),
            ("replicasets", &["scale", "status"]),
            ("statefulsets", &["scale", "status"]),
        ],
        why: "of the workload APIs the lab models Deployments and ReplicaSets (with their controllers)",
    },
    UpstreamGroup {
        group: "authentication.k8s.io",
        versions: &["v1"],
        resources: &[("selfsubjectreviews", &[]), ("tokenreviews", &[])],
        why: "the lab answers `kubectl auth whoami` only",
    },
    UpstreamGroup {
        group: "authorization.k8s.io",
        versions: &["v1"],
        resources: &[
            ("localsubjectaccessreviews", &[]),
            ("selfsubjectaccessreviews", &[]),
            ("selfsubjectrulesreviews", &[]),
            ("subjectaccessreviews", &[]),
        ],
        why: "authorization is not modelled: every authenticated user may do everything",
    },
    UpstreamGroup {
        group: "autoscaling",
        versions: &["v1", "v2"],
        resources: &[("horizontalpodautoscalers", &["status"])],
        why: "autoscaling is not modelled (the lab has no resource metrics)",
    },
    UpstreamGroup {
        group: "batch",
        versions: &["v1"],
        resources: &[("cronjobs", &["status"]), ("jobs", &["status"])],
        why: "of the batch APIs the lab models Jobs (with their controller); CronJobs are not modelled",
    },
    UpstreamGroup {
        group: "certificates.k8s.io",
        versions: &["v1"],
        resources: &[("certificatesigningrequests", &["approval", "status"])],
        why: "certificate signing requests are not modelled (the lab's PKI is made at `lab up`)",
    },
    UpstreamGroup {
        group: "coordination.k8s.io",
        versions: &["v1"],
        resources: &[("leases", &[])],
        why: NOT_MODELLED,
    },
    UpstreamGroup {
        group: "discovery.k8s.io",
        versions: &["v1"],
        resources: &[("endpointslices", &[])],
        why: NOT_MODELLED,
    },
    UpstreamGroup {
        group: "events.k8s.io",
        versions: &["v1"],
        resources: &[("events", &[])],
        why: "the lab serves events in the core group (`/api/v1/events`) only",
    },
    UpstreamGroup {
        group: "flowcontrol.apiserver.k8s.io",
        versions: &["v1"],
        resources: &[
            ("flowschemas", &["status"]),
            ("prioritylevelconfigurations", &["status"]),
        ],
        why: "API priority and fairness is not modelled",
    },
    UpstreamGroup {
        group: "networking.k8s.io",
        versions: &["v1"],
        resources: &[
            ("ingressclasses", &[]),
            ("ingresses", &["status"]),
            ("ipaddresses", &[]),
            ("networkpolicies", &[]),
            ("servicecidrs", &["status"]),
        ],
        why: "ingresses and network policies are not modelled (the lab's Service addresses come from \
              --service-cluster-ip-range)",
    },
    UpstreamGroup {
        group: "node.k8s.io",
        versions: &["v1"],
        resources: &[("runtimeclasses", &[])],
        why: "the lab's nodes have one runtime: echo workloads",
    },
    UpstreamGroup {
        group: "policy",
        versions: &["v1"],
        resources: &[("poddisruptionbudgets", &["status"])],
        why: "disruption budgets are not modelled (the lab has no eviction API)",
    },
    UpstreamGroup {
        group: "rbac.authorization.k8s.io",
        versions: &["v1"],
        resources: &[
            ("clusterrolebindings", &[]),
            ("clusterroles", &[]),
            ("rolebindings", &[]),
            ("roles", &[]),
        ],
        why: "authorization is not modelled: every authenticated user may do everything",
    },
    UpstreamGroup {
        group: "scheduling.k8s.io",
        versions: &["v1"],
        resources: &[("priorityclasses", &[])],
        why: "pod priority and preemption are not modelled",
    },
    UpstreamGroup {
        group: "storage.k8s.io",
        versions: &["v1"],
        resources: &[
            ("csidrivers", &[]),
            ("csinodes", &[]),
            ("csistoragecapacities", &[]),
            ("storageclasses", &[]),
            ("volumeattachments", &["status"]),
            ("volumeattributesclasses", &[]),
        ],
        why: "the lab has no volumes",
    },
];

/// Non-resource paths kube-apiserver serves (prefixes end with `/`), with why the lab does not.
static NON_RESOURCE: &[(&str, &str)] = &[
    (
        "/.well-known/openid-configuration",
        "service-account issuer discovery is not modelled",
    ),
    (
        "/openid/v1/jwks",
        "service-account issuer discovery is not modelled",
    ),
    ("/logs/", "the lab apiserver has no log files to serve"),
    ("/debug/", "the lab apiserver has no debug handlers"),
    ("/flowcontrol/", "API priority and fairness is not modelled"),
    ("/statusz", "component status pages are not modelled"),
    ("/flagz", "component flag pages are not modelled"),
];

/// Every built-in group of kube-apiserver, core first.
pub fn groups() -> &'static [UpstreamGroup] {
    GROUPS
}

/// The group, if kube-apiserver serves `group/version`.
pub fn group_version(group: &str, version: &str) -> Option<&'static UpstreamGroup> {
    GROUPS
        .iter()
        .find(|g| g.group == group && g.versions.contains(&version))
}

/// The subresources of `resource` if kube-apiserver serves it in `group/version`.
pub fn resource(group: &str, version: &str, resource: &str) -> Option<&'static [&'static str]> {
    group_version(group, version)?
        .resources
        .iter()
        .find(|(r, _)| *r == resource)
        .map(|(_, subs)| *subs)
}

/// Why the lab does not serve `path`, if kube-apiserver serves that non-resource path.
pub fn non_resource(path: &str) -> Option<&'static str> {
    NON_RESOURCE
        .iter()
        .find(|(p, _)| {
            if p.ends_with('/') {
                path.starts_with(p) || path == p.trim_end_matches('/')
            } else {
                path == *p
            }
        })
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn the_lab_serves_nothing_kube_apiserver_does_not() {
        for r in registry::resources() {
            let subs = resource(r.group, r.version, r.resource).unwrap_or_else(|| {
                panic!("{} is not a kube-apiserver resource", r.store_resource())
            });
            for s in r.subresources {
                assert!(subs.contains(s), "{}/{s}", r.store_resource());
            }
        }
    }

    #[test]
    fn lookups() {
        assert!(group_version("rbac.authorization.k8s.io", "v1").is_some());
        assert!(group_version("rbac.authorization.k8s.io", "v1beta1").is_none());
        assert!(group_version("example.com", "v1").is_none());
        assert_eq!(
            resource("", "v1", "pods").map(|s| s.contains(&"log")),
            Some(true)
        );
        assert!(resource("apps", "v1", "statefulsets").is_some());
        assert!(resource("apps", "v1", "widgets").is_none());
        assert!(non_resource("/openid/v1/jwks").is_some());
        assert!(non_resource("/debug/pprof/heap").is_some());
        assert!(non_resource("/logs").is_some());
        assert!(non_resource("/nope").is_none());
    }
}
