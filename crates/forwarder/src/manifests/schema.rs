//! The fields Kubernetes defines for the kinds a manifest file may hold, so that a misspelt or
//! invented field is refused instead of silently ignored — what `kubectl apply` does with
//! `--validate=strict` (the apiserver's `fieldValidation=Strict`).
//!
//! Every field of the API types is known here, also those the forwarder does not use
//! (`metadata.managedFields`, `spec.ipFamilies`, `status.conditions`, …), so that the output of
//! `kubectl get -o yaml` is accepted as it is. Values are checked for shape (map, list, scalar);
//! the values the forwarder uses are checked further by `proxylab_core::cluster`'s converter.
//! The field sets are those of Kubernetes 1.33's `core/v1` and `discovery.k8s.io/v1`.

use serde_json::Value;

/// What a field may hold.
#[derive(Debug)]
pub(super) enum Shape {
    /// A string, number or boolean.
    Scalar,
    /// Anything (free-form fields such as `managedFields[].fieldsV1`).
    Any,
    /// A map with free keys and scalar values (`labels`, `selector`, `capacity`).
    ScalarMap,
    /// A map of known fields.
    Object(&'static [(&'static str, Shape)]),
    /// A list of elements of one shape.
    List(&'static Shape),
}

use Shape::{Any, List, Object, Scalar, ScalarMap};

const OWNER_REFERENCE: Shape = Object(&[
    ("apiVersion", Scalar),
    ("kind", Scalar),
    ("name", Scalar),
    ("uid", Scalar),
    ("controller", Scalar),
    ("blockOwnerDeletion", Scalar),
]);

const MANAGED_FIELDS_ENTRY: Shape = Object(&[
    ("manager", Scalar),
    ("operation", Scalar),
    ("apiVersion", Scalar),
    ("time", Scalar),
    ("fieldsType", Scalar),
    ("fieldsV1", Any),
    ("subresource", Scalar),
]);

const OBJECT_META: Shape = Object(&[
    ("name", Scalar),
    ("generateName", Scalar),
    ("namespace", Scalar),
    ("selfLink", Scalar),
    ("uid", Scalar),
    ("resourceVersion", Scalar),
    ("generation", Scalar),
    ("creationTimestamp", Scalar),
    ("deletionTimestamp", Scalar),
    ("deletionGracePeriodSeconds", Scalar),
    ("labels", ScalarMap),
    ("annotations", ScalarMap),
    ("ownerReferences", List(&OWNER_REFERENCE)),
    ("finalizers", List(&Scalar)),
    ("managedFields", List(&MANAGED_FIELDS_ENTRY)),
]);

const LIST_META: Shape = Object(&[
    ("selfLink", Scalar),
    ("resourceVersion", Scalar),
    ("continue", Scalar),
    ("remainingItemCount", Scalar),
]);

const CONDITION: Shape = Object(&[
    ("type", Scalar),
    ("status", Scalar),
    ("observedGeneration", Scalar),
    ("lastHeartbeatTime", Scalar),
    ("lastTransitionTime", Scalar),
    ("reason", Scalar),
    ("message", Scalar),
]);

const SERVICE_PORT: Shape = Object(&[
    ("name", Scalar),
    ("protocol", Scalar),
    ("appProtocol", Scalar),
    ("port", Scalar),
    ("targetPort", Scalar),
    ("nodePort", Scalar),
]);

const SERVICE: Shape = Object(&[
    ("apiVersion", Scalar),
    ("kind", Scalar),
    ("metadata", OBJECT_META),
    (
        "spec",
        Object(&[
            ("ports", List(&SERVICE_PORT)),
            ("selector", ScalarMap),
            ("clusterIP", Scalar),
            ("clusterIPs", List(&Scalar)),
            ("type", Scalar),
            ("externalIPs", List(&Scalar)),
            ("sessionAffinity", Scalar),
            ("loadBalancerIP", Scalar),
            ("loadBalancerSourceRanges", List(&Scalar)),
            ("externalName", Scalar),
            ("externalTrafficPolicy", Scalar),
            ("healthCheckNodePort", Scalar),
            ("publishNotReadyAddresses", Scalar),
            (
                "sessionAffinityConfig",
                Object(&[("clientIP", Object(&[("timeoutSeconds", Scalar)]))]),
            ),
            ("ipFamilies", List(&Scalar)),
            ("ipFamilyPolicy", Scalar),
            ("allocateLoadBalancerNodePorts", Scalar),
            ("loadBalancerClass", Scalar),
            ("internalTrafficPolicy", Scalar),
            ("trafficDistribution", Scalar),
        ]),
    ),
    (
        "status",
        Object(&[
            (
                "loadBalancer",
                Object(&[(
                    "ingress",
                    List(&Object(&[
                        ("ip", Scalar),
                        ("hostname", Scalar),
                        ("ipMode", Scalar),
                        (
                            "ports",
                            List(&Object(&[
                                ("port", Scalar),
                                ("protocol", Scalar),
                                ("error", Scalar),
                            ])),
                        ),
                    ])),
                )]),
            ),
            ("conditions", List(&CONDITION)),
        ]),
    ),
]);

const FOR_NAME: Shape = Object(&[("name", Scalar)]);

const ENDPOINT_SLICE: Shape = Object(&[
    ("apiVersion", Scalar),
    ("kind", Scalar),
    ("metadata", OBJECT_META),
    ("addressType", Scalar),
    (
        "endpoints",
        List(&Object(&[
            ("addresses", List(&Scalar)),
            (
                "conditions",
                Object(&[
                    ("ready", Scalar),
                    ("serving", Scalar),
                    ("terminating", Scalar),
                ]),
            ),
            ("hostname", Scalar),
            (
                "targetRef",
                Object(&[
                    ("kind", Scalar),
                    ("namespace", Scalar),
                    ("name", Scalar),
                    ("uid", Scalar),
                    ("apiVersion", Scalar),
                    ("resourceVersion", Scalar),
                    ("fieldPath", Scalar),
                ]),
            ),
            ("deprecatedTopology", ScalarMap),
            ("nodeName", Scalar),
            ("zone", Scalar),
            (
                "hints",
                Object(&[("forZones", List(&FOR_NAME)), ("forNodes", List(&FOR_NAME))]),
            ),
        ])),
    ),
    (
        "ports",
        List(&Object(&[
            ("name", Scalar),
            ("protocol", Scalar),
            ("port", Scalar),
            ("appProtocol", Scalar),
        ])),
    ),
]);

const NODE: Shape = Object(&[
    ("apiVersion", Scalar),
    ("kind", Scalar),
    ("metadata", OBJECT_META),
    (
        "spec",
        Object(&[
            ("podCIDR", Scalar),
            ("podCIDRs", List(&Scalar)),
            ("providerID", Scalar),
            ("unschedulable", Scalar),
            (
                "taints",
                List(&Object(&[
                    ("key", Scalar),
                    ("value", Scalar),
                    ("effect", Scalar),
                    ("timeAdded", Scalar),
                ])),
            ),
            ("configSource", Any),
            ("externalID", Scalar),
        ]),
    ),
    (
        "status",
        Object(&[
            ("capacity", ScalarMap),
            ("allocatable", ScalarMap),
            ("phase", Scalar),
            ("conditions", List(&CONDITION)),
            (
                "addresses",
                List(&Object(&[("type", Scalar), ("address", Scalar)])),
            ),
            (
                "daemonEndpoints",
                Object(&[("kubeletEndpoint", Object(&[("Port", Scalar)]))]),
            ),
            (
                "nodeInfo",
                Object(&[
                    ("machineID", Scalar),
                    ("systemUUID", Scalar),
                    ("bootID", Scalar),
                    ("kernelVersion", Scalar),
                    ("osImage", Scalar),
                    ("containerRuntimeVersion", Scalar),
                    ("kubeletVersion", Scalar),
                    ("kubeProxyVersion", Scalar),
                    ("operatingSystem", Scalar),
                    ("architecture", Scalar),
                    ("swap", Any),
                ]),
            ),
            (
                "images",
                List(&Object(&[("names", List(&Scalar)), ("sizeBytes", Scalar)])),
            ),
            ("volumesInUse", List(&Scalar)),
            (
                "volumesAttached",
                List(&Object(&[("name", Scalar), ("devicePath", Scalar)])),
            ),
            ("config", Any),
            ("runtimeHandlers", List(&Any)),
            ("features", Any),
        ]),
    ),
]);

/// A kind a manifest file may hold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Kind {
    pub name: &'static str,
    pub api_version: &'static str,
    pub shape: &'static Shape,
}

/// What the forwarder reads: Services and EndpointSlices (what it routes on) and Nodes (their
/// addresses and zones, with `--node-name`).
pub(super) const KINDS: [Kind; 3] = [
    Kind {
        name: "Service",
        api_version: "v1",
        shape: &SERVICE,
    },
    Kind {
        name: "EndpointSlice",
        api_version: "discovery.k8s.io/v1",
        shape: &ENDPOINT_SLICE,
    },
    Kind {
        name: "Node",
        api_version: "v1",
        shape: &NODE,
    },
];

/// The top-level fields of a `kind: List` (or `ServiceList`, …).
pub(super) const LIST: Shape = Object(&[
    ("apiVersion", Scalar),
    ("kind", Scalar),
    ("metadata", LIST_META),
    ("items", Any),
]);

pub(super) fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// A field that does not fit: its path from the object's root (`spec.ports[0].prot`) and why.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Misfit {
    pub path: String,
    pub message: String,
}

/// Checks `value` against `shape`; the first misfit in document order.
pub(super) fn check(value: &Value, shape: &Shape) -> Result<(), Misfit> {
    walk(value, shape, String::new())
}

fn walk(value: &Value, shape: &Shape, path: String) -> Result<(), Misfit> {
    let misfit = |path: String, message: String| Err(Misfit { path, message });
    match (shape, value) {
        // A null is an absent field, as the API reads it.
        (_, Value::Null) | (Any, _) => Ok(()),
        (Scalar, Value::String(_) | Value::Number(_) | Value::Bool(_)) => Ok(()),
        (Scalar, _) => misfit(
            path,
            format!("expected a single value, got {}", what(value)),
        ),
        (ScalarMap, Value::Object(m)) => {
            for (k, v) in m {
                if v.is_object() || v.is_array() {
                    return misfit(
                        join(&path, k),
                        format!("expected a single value, got {}", what(v)),
                    );
                }
            }
            Ok(())
        }
        (Object(fields), Value::Object(m)) => {
            for (k, v) in m {
                let Some((_, inner)) = fields.iter().find(|(name, _)| name == k) else {
                    let mut message = "unknown field".to_string();
                    if let Some(near) = nearest(k, fields.iter().map(|(n, _)| *n)) {
                        message = format!("unknown field (did you mean {near:?}?)");
                    }
                    return misfit(join(&path, k), message);
                };
                walk(v, inner, join(&path, k))?;
            }
            Ok(())
        }
        (ScalarMap | Object(_), _) => misfit(path, format!("expected a map, got {}", what(value))),
        (List(inner), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, inner, format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (List(_), _) => misfit(path, format!("expected a list, got {}", what(value))),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn what(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// The known name closest to a misspelt one, when it is close enough to be the likely intent (an
/// edit distance of at most a third of its length, or a difference in case only).
fn nearest<'a>(wrong: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = wrong.to_ascii_lowercase();
    known
        .map(|k| {
            let d = if k.to_ascii_lowercase() == lower {
                0
            } else {
                distance(&lower, &k.to_ascii_lowercase())
            };
            (d, k)
        })
        .filter(|(d, k)| *d <= (k.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn every_field_kubectl_prints_is_known() {
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7",
                "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"app": "web"},
                "annotations": {"a": "b"},
                "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                    "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:ports": {}}}}]},
            "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
                "selector": {"app": "web"}, "sessionAffinity": "None", "type": "ClusterIP"},
            "status": {"loadBalancer": {}}
        });
        assert_eq!(check(&svc, &SERVICE), Ok(()));
    }

    #[test]
    fn unknown_fields_are_named_with_their_path_and_a_suggestion() {
        let e = check(&service(json!({"sessionAfinity": "ClientIP"})), &SERVICE).unwrap_err();
        assert_eq!(e.path, "spec.sessionAfinity");
        assert_eq!(
            e.message,
            "unknown field (did you mean \"sessionAffinity\"?)"
        );
        let e = check(
            &service(json!({"ports": [{"port": 80}, {"port": 81, "prot": "UDP"}]})),
            &SERVICE,
        )
        .unwrap_err();
        assert_eq!(e.path, "spec.ports[1].prot");
        let e = check(&service(json!({"colour": "blue"})), &SERVICE).unwrap_err();
        assert_eq!(e.message, "unknown field");
    }

    #[test]
    fn shapes_are_checked() {
        let e = check(&service(json!({"ports": {"port": 80}})), &SERVICE).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("spec.ports", "expected a list, got a map")
        );
        let e = check(&service(json!({"selector": {"app": ["web"]}})), &SERVICE).unwrap_err();
        assert_eq!(e.path, "spec.selector.app");
        let e = check(&json!({"kind": "Service", "spec": "x"}), &SERVICE).unwrap_err();
        assert_eq!(e.message, "expected a map, got a string");
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(
            nearest("clusterIp", ["clusterIP", "clusterIPs"].into_iter()),
            Some("clusterIP")
        );
        assert_eq!(nearest("zzz", ["clusterIP"].into_iter()), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
