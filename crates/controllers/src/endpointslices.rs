//! The EndpointSlice controller and the legacy Endpoints controller.
//!
//! For every Service with a selector, kube-controller-manager's `endpointslice` controller
//! publishes the Pods that back it: each Pod in the Service's namespace whose labels match
//! the selector, that has an IP and has not finished (phase `Succeeded`/`Failed`), becomes an
//! endpoint with
//! - `addresses`: the Pod's IPs of the slice's address family,
//! - `conditions`: `serving` = Pod Ready; `terminating` = `deletionTimestamp` set;
//!   `ready` = serving and not terminating (or always, with `publishNotReadyAddresses`),
//! - `nodeName`, `zone` (the Node's `topology.kubernetes.io/zone` label), `targetRef` to the
//!   Pod, and `hostname` when the Pod's `subdomain` names the Service.
//!
//! Ports come from the Service's ports with each `targetPort` resolved *per Pod*: a number
//! is used as it is, a name is looked up among the Pod's container ports (name and protocol
//! must match). Because of that, Pods can expose different port sets; endpoints are grouped
//! into one slice per distinct port set, as the real controller does. A Service with no
//! matching Pods keeps one empty "placeholder" slice.
//!
//! The older `endpoints` controller writes the same information into a core/v1 Endpoints
//! object named after the Service: `subsets` of addresses grouped by identical port sets,
//! with ready Pods under `addresses` and the others under `notReadyAddresses`; terminating
//! Pods are left out (unless `publishNotReadyAddresses`).
//!
//! As in the real reconciler, existing slices are updated in place rather than replaced: a
//! desired port set goes to the existing slice with the same ports, else to any slice of the
//! Service that is no longer needed (the placeholder becomes the first populated slice), and
//! only then to a new slice named `<service>-<5 characters>`.
//!
//! What this one simplifies: slices are IPv4 only (the lab's pod network is IPv4); a new
//! slice's suffix is derived from a hash of the port set instead of being random (the
//! `generateName` is recorded all the same), which keeps reconciles deterministic and
//! testable; there is no 100-endpoints-per-slice split, no topology hints, and no
//! `last-change-trigger-time` annotation. Services without a selector are left alone (their
//! slices and Endpoints belong to whoever wrote them); objects of deleted Services are
//! deleted directly rather than by the garbage collector following `ownerReferences`.
//! Legacy Endpoints written here carry the label `endpoints.kubernetes.io/managed-by:
//! endpoint-controller`, as the real controller's do since 1.33, and only Endpoints with that
//! label are deleted when their Service goes (hand-written ones are left alone).

use std::collections::{BTreeMap, HashMap, HashSet};

use proxylab_apimachinery::{meta, selector};
use serde_json::{Map, Value, json};

use crate::action::{Action, Target, resources};

pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const LABEL_ENDPOINTS_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
pub const ENDPOINTS_CONTROLLER_NAME: &str = "endpoint-controller";
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// Everything the controller reads, all namespaces at once.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    pub services: &'a [Value],
    pub pods: &'a [Value],
    pub nodes: &'a [Value],
    pub endpoint_slices: &'a [Value],
    pub endpoints: &'a [Value],
}

/// Is the Pod's `Ready` condition `True`?
pub fn pod_is_ready(pod: &Value) -> bool {
    meta::at(pod, &["status", "conditions"])
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn pod_ipv4(pod: &Value) -> Option<String> {
    let from_list = meta::at(pod, &["status", "podIPs"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p["ip"].as_str());
    from_list
        .chain(meta::str_at(pod, &["status", "podIP"]))
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
}

/// One resolved port of one Pod for one Service port.
fn resolve_port(pod: &Value, service_port: &Value) -> Option<i64> {
    let protocol = service_port["protocol"].as_str().unwrap_or("TCP");
    match &service_port["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => find_named_port(pod, s, protocol),
        },
        // Defaulted by the apiserver to `port`; tolerate objects written without defaults.
        _ => service_port["port"].as_i64(),
    }
}

/// `podutil.FindPort` for a named port: the first container port with that name and protocol.
fn find_named_port(pod: &Value, name: &str, protocol: &str) -> Option<i64> {
    let containers = meta::at(pod, &["spec", "containers"]).and_then(Value::as_array)?;
    containers
        .iter()
        .filter_map(|c| c["ports"].as_array())
        .flatten()
        .find(|p| {
            p["name"].as_str() == Some(name) && p["protocol"].as_str().unwrap_or("TCP") == protocol
        })
        .and_then(|p| p["containerPort"].as_i64())
}

/// The Pod's endpoint ports for the Service (ports whose target cannot be resolved are left out).
fn endpoint_ports(service: &Value, pod: &Value) -> Vec<Value> {
    let ports = meta::at(service, &["spec", "ports"])
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    ports
        .iter()
        .filter_map(|sp| {
            let port = resolve_port(pod, sp)?;
            let mut p = json!({
                "name": sp["name"].as_str().unwrap_or(""),
                "port": port,
                "protocol": sp["protocol"].as_str().unwrap_or("TCP"),
            });
            if let Some(app) = sp["appProtocol"].as_str() {
                p["appProtocol"] = json!(app);
            }
            Some(p)
        })
        .collect()
}

fn should_set_hostname(pod: &Value, service: &Value) -> Option<String> {
    let hostname = meta::str_at(pod, &["spec", "hostname"]).filter(|h| !h.is_empty())?;
    (meta::str_at(pod, &["spec", "subdomain"]) == Some(meta::name(service).unwrap_or(""))
        && meta::namespace(pod).unwrap_or("") == meta::namespace(service).unwrap_or(""))
    .then(|| hostname.to_string())
}

fn target_ref(pod: &Value) -> Value {
    json!({
        "kind": "Pod",
        "namespace": meta::namespace(pod).unwrap_or(""),
        "name": meta::name(pod).unwrap_or(""),
        "uid": meta::uid(pod).unwrap_or(""),
    })
}

fn is_headless(service: &Value) -> bool {
    meta::str_at(service, &["spec", "clusterIP"]) == Some("None")
}

fn publish_not_ready(service: &Value) -> bool {
    meta::at(service, &["spec", "publishNotReadyAddresses"])
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The slice endpoint for one Pod (`podToEndpoint` in the real controller).
fn pod_to_endpoint(pod: &Value, ip: &str, service: &Value, zones: &HashMap<&str, &str>) -> Value {
    let serving = pod_is_ready(pod);
    let terminating = meta::is_terminating(pod);
    let ready = publish_not_ready(service) || (serving && !terminating);
    let mut ep = json!({
        "addresses": [ip],
        "conditions": { "ready": ready, "serving": serving, "terminating": terminating },
        "targetRef": target_ref(pod),
    });
    if let Some(node) = meta::str_at(pod, &["spec", "nodeName"]).filter(|n| !n.is_empty()) {
        ep["nodeName"] = json!(node);
        if let Some(zone) = zones.get(node) {
            ep["zone"] = json!(zone);
        }
    }
    if let Some(h) = should_set_hostname(pod, service) {
        ep["hostname"] = json!(h);
    }
    ep
}

/// Labels shared by the Service's slices and Endpoints: the Service's own labels plus the
/// headless marker.
fn inherited_labels(service: &Value) -> Map<String, Value> {
    let mut labels = meta::labels(service).cloned().unwrap_or_default();
    labels.remove(LABEL_SERVICE_NAME);
    labels.remove(LABEL_MANAGED_BY);
    if is_headless(service) {
        labels.insert(LABEL_HEADLESS.into(), json!(""));
    }
    labels
}

/// Deterministic 5-character suffix in the alphabet of apimachinery's `rand.String`
/// (no vowels, no easily-confused characters), from FNV-1a of the inputs.
fn name_suffix(parts: &[&str]) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (0..5)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Pods that back a Service (`ShouldPodBeInEndpoints` with terminating Pods included).
fn backing_pods<'a>(service: &Value, pods: &'a [Value]) -> Vec<(&'a Value, String)> {
    let Some(selector) = service_selector(service) else {
        return Vec::new();
    };
    let ns = meta::namespace(service).unwrap_or("");
    let mut out: Vec<(&Value, String)> = pods
        .iter()
        .filter(|p| meta::namespace(p).unwrap_or("") == ns)
        .filter(|p| {
            !matches!(
                meta::str_at(p, &["status", "phase"]),
                Some("Succeeded" | "Failed")
            )
        })
        .filter(|p| selector::map_matches(selector, meta::labels(p)))
        .filter_map(|p| pod_ipv4(p).map(|ip| (p, ip)))
        .collect();
    out.sort_by(|a, b| {
        meta::name(a.0)
            .unwrap_or("")
            .cmp(meta::name(b.0).unwrap_or(""))
    });
    out
}

/// A Service's non-empty selector, or `None` for selector-less and ExternalName Services
/// (which this controller does not manage).
fn service_selector(service: &Value) -> Option<&Map<String, Value>> {
    if meta::str_at(service, &["spec", "type"]) == Some("ExternalName") {
        return None;
    }
    meta::at(service, &["spec", "selector"])
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty())
}

/// The EndpointSlices a Service should have, by name.
pub fn desired_slices(service: &Value, pods: &[Value], nodes: &[Value]) -> BTreeMap<String, Value> {
    let zones: HashMap<&str, &str> = nodes
        .iter()
        .filter_map(|n| meta::label(n, LABEL_ZONE).map(|z| (meta::name(n).unwrap_or(""), z)))
        .collect();
    // Group endpoints by their resolved port set.
    let mut groups: BTreeMap<String, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for (pod, ip) in backing_pods(service, pods) {
        let ports = endpoint_ports(service, pod);
        let key = Value::Array(ports.clone()).to_string();
        let group = groups.entry(key).or_insert_with(|| (ports, Vec::new()));
        group.1.push(pod_to_endpoint(pod, &ip, service, &zones));
    }
    if groups.is_empty() {
        // The placeholder slice the real controller keeps for a Service without endpoints.
        groups.insert("placeholder".into(), (Vec::new(), Vec::new()));
    }
    let svc_name = meta::name(service).unwrap_or("");
    let ns = meta::namespace(service).unwrap_or("");
    let mut labels = inherited_labels(service);
    labels.insert(LABEL_SERVICE_NAME.into(), json!(svc_name));
    labels.insert(LABEL_MANAGED_BY.into(), json!(CONTROLLER_NAME));
    groups
        .into_iter()
        .map(|(key, (ports, endpoints))| {
            let name = format!("{svc_name}-{}", name_suffix(&[svc_name, &key]));
            let slice = json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": name,
                    "generateName": format!("{svc_name}-"),
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": [{
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": svc_name,
                        "uid": meta::uid(service).unwrap_or(""),
                        "controller": true,
                        "blockOwnerDeletion": true,
                    }],
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            });
            (name, slice)
        })
        .collect()
}

/// The addresses of one Endpoints subset, each with the IP it sorts by.
#[derive(Default)]
struct SubsetGroup {
    ports: Vec<Value>,
    ready: Vec<(String, Value)>,
    not_ready: Vec<(String, Value)>,
}

/// The core/v1 Endpoints `subsets` for a Service (`endpoints.RepackSubsets` order: subsets by
/// port set, addresses by IP).
pub fn desired_subsets(service: &Value, pods: &[Value]) -> Vec<Value> {
    let tolerate_unready = publish_not_ready(service);
    let mut groups: BTreeMap<String, SubsetGroup> = BTreeMap::new();
    for (pod, ip) in backing_pods(service, pods) {
        if meta::is_terminating(pod) && !tolerate_unready {
            continue;
        }
        let mut ports = endpoint_ports(service, pod);
        let has_service_ports = meta::at(service, &["spec", "ports"])
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty());
        // A (non-headless) Service port that resolves to nothing on this Pod contributes
        // nothing; a headless Service without ports still lists addresses.
        if ports.is_empty() && (has_service_ports || !is_headless(service)) {
            continue;
        }
        ports.sort_by_key(|p| p.to_string());
        let key = Value::Array(ports.clone()).to_string();
        let mut addr = json!({ "ip": ip, "targetRef": target_ref(pod) });
        if let Some(node) = meta::str_at(pod, &["spec", "nodeName"]).filter(|n| !n.is_empty()) {
            addr["nodeName"] = json!(node);
        }
        if let Some(h) = should_set_hostname(pod, service) {
            addr["hostname"] = json!(h);
        }
        let group = groups.entry(key).or_insert_with(|| SubsetGroup {
            ports,
            ..SubsetGroup::default()
        });
        if tolerate_unready || pod_is_ready(pod) {
            group.ready.push((ip, addr));
        } else {
            group.not_ready.push((ip, addr));
        }
    }
    groups
        .into_values()
        .map(|g| {
            let (ports, mut ready, mut not_ready) = (g.ports, g.ready, g.not_ready);
            ready.sort_by(|a, b| a.0.cmp(&b.0));
            not_ready.sort_by(|a, b| a.0.cmp(&b.0));
            let mut subset = Map::new();
            if !ready.is_empty() {
                subset.insert("addresses".into(), ready.into_iter().map(|a| a.1).collect());
            }
            if !not_ready.is_empty() {
                subset.insert(
                    "notReadyAddresses".into(),
                    not_ready.into_iter().map(|a| a.1).collect(),
                );
            }
            if !ports.is_empty() {
                subset.insert("ports".into(), Value::Array(ports));
            }
            Value::Object(subset)
        })
        .collect()
}

/// The Endpoints object for a Service.
pub fn desired_endpoints(service: &Value, pods: &[Value]) -> Value {
    let mut labels = inherited_labels(service);
    labels.insert(
        LABEL_ENDPOINTS_MANAGED_BY.into(),
        json!(ENDPOINTS_CONTROLLER_NAME),
    );
    let mut ep = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": meta::name(service).unwrap_or(""),
            "namespace": meta::namespace(service).unwrap_or(""),
            "labels": labels,
        },
    });
    let subsets = desired_subsets(service, pods);
    if !subsets.is_empty() {
        ep["subsets"] = Value::Array(subsets);
    }
    ep
}

fn field<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    meta::at(v, path).unwrap_or(&Value::Null)
}

fn empty_as_null(v: &Value) -> &Value {
    match v {
        Value::Array(a) if a.is_empty() => &Value::Null,
        Value::Object(o) if o.is_empty() => &Value::Null,
        other => other,
    }
}

/// Creates `desired` or, when an object exists, updates only the controller-owned fields
/// (`paths`) of it — and only if one of them differs.
fn upsert(
    resource: &'static str,
    ns: &str,
    name: &str,
    existing: Option<&Value>,
    mut desired: Value,
    owned: &[&[&str]],
    now: jiff::Timestamp,
) -> Option<Action> {
    let target = Target::new(resource, Some(ns), name);
    let Some(existing) = existing else {
        let mut meta =
            meta::new_object_meta(Some(ns), name, &uuid::Uuid::new_v4().to_string(), now);
        if let Some(m) = desired["metadata"].as_object() {
            for (k, v) in m {
                meta[k] = v.clone();
            }
        }
        desired["metadata"] = meta;
        return Some(Action::Create {
            target,
            object: desired,
        });
    };
    let differs = owned
        .iter()
        .any(|p| empty_as_null(field(existing, p)) != empty_as_null(field(&desired, p)));
    if !differs {
        return None;
    }
    let mut updated = existing.clone();
    for path in owned {
        meta::set_path(&mut updated, path, meta::at(&desired, path).cloned());
    }
    Some(Action::Update {
        target,
        object: updated,
        precondition_rv: meta::resource_version_u64(existing),
    })
}

/// Decides which slice each desired port set is written to. Like the real reconciler, it
/// prefers updating an existing slice over creating one: first an existing slice with the same
/// ports, then any existing slice this Service no longer needs (so a placeholder slice turns
/// into the populated one under the same name); only the rest are created, under their
/// generated names — salted again if such a name is already taken in the namespace.
fn assign_slice_names(
    desired: Vec<Value>,
    existing: &[&Value],
    name_taken: impl Fn(&str) -> bool,
) -> Vec<(String, Value)> {
    let same_ports = |e: &Value, d: &Value| {
        empty_as_null(field(e, &["ports"])) == empty_as_null(field(d, &["ports"]))
    };
    let mut unclaimed: Vec<&Value> = existing.to_vec();
    let mut placed: Vec<(Option<String>, Value)> = desired
        .into_iter()
        .map(|d| {
            let claimed = unclaimed
                .iter()
                .position(|e| same_ports(e, &d))
                .map(|i| meta::name(unclaimed.remove(i)).unwrap_or("").to_string());
            (claimed, d)
        })
        .collect();
    for (name, _) in placed.iter_mut().filter(|(n, _)| n.is_none()) {
        if !unclaimed.is_empty() {
            *name = Some(meta::name(unclaimed.remove(0)).unwrap_or("").to_string());
        }
    }
    let mut chosen: HashSet<String> = placed.iter().filter_map(|(n, _)| n.clone()).collect();
    placed
        .into_iter()
        .map(|(name, mut slice)| {
            let name = name.unwrap_or_else(|| {
                let base = meta::name(&slice).unwrap_or("").to_string();
                let svc = meta::label(&slice, LABEL_SERVICE_NAME)
                    .unwrap_or("")
                    .to_string();
                let mut candidate = base.clone();
                let mut salt = 0u32;
                while name_taken(&candidate) || chosen.contains(&candidate) {
                    salt += 1;
                    candidate = if salt < 1000 {
                        format!("{svc}-{}", name_suffix(&[&base, &salt.to_string()]))
                    } else {
                        // Practically unreachable; a bound on the loop all the same.
                        format!("{svc}-{}", uuid::Uuid::new_v4().simple())
                    };
                }
                chosen.insert(candidate.clone());
                candidate
            });
            meta::set_path(&mut slice, &["metadata", "name"], Some(json!(name)));
            (name, slice)
        })
        .collect()
}

const SLICE_FIELDS: &[&[&str]] = &[
    &["metadata", "labels"],
    &["metadata", "ownerReferences"],
    &["addressType"],
    &["endpoints"],
    &["ports"],
];
const ENDPOINTS_FIELDS: &[&[&str]] = &[&["metadata", "labels"], &["subsets"]];

/// Reconciles every Service's EndpointSlices and Endpoints.
pub fn reconcile(snap: &Snapshot<'_>, now: jiff::Timestamp) -> Vec<Action> {
    let mut actions = Vec::new();
    let slices_by_key: HashMap<(&str, &str), &Value> = snap
        .endpoint_slices
        .iter()
        .map(|s| {
            (
                (
                    meta::namespace(s).unwrap_or(""),
                    meta::name(s).unwrap_or(""),
                ),
                s,
            )
        })
        .collect();
    let endpoints_by_key: HashMap<(&str, &str), &Value> = snap
        .endpoints
        .iter()
        .map(|e| {
            (
                (
                    meta::namespace(e).unwrap_or(""),
                    meta::name(e).unwrap_or(""),
                ),
                e,
            )
        })
        .collect();
    let services: HashMap<(&str, &str), &Value> = snap
        .services
        .iter()
        .map(|s| {
            (
                (
                    meta::namespace(s).unwrap_or(""),
                    meta::name(s).unwrap_or(""),
                ),
                s,
            )
        })
        .collect();
    let mut wanted_slices: HashSet<(String, String)> = HashSet::new();

    for service in snap.services {
        if service_selector(service).is_none() || meta::is_terminating(service) {
            continue;
        }
        let ns = meta::namespace(service).unwrap_or("");
        let name = meta::name(service).unwrap_or("");
        let existing_for_service: Vec<&Value> = snap
            .endpoint_slices
            .iter()
            .filter(|s| {
                meta::namespace(s).unwrap_or("") == ns
                    && meta::label(s, LABEL_MANAGED_BY) == Some(CONTROLLER_NAME)
                    && meta::label(s, LABEL_SERVICE_NAME) == Some(name)
            })
            .collect();
        let desired: Vec<Value> = desired_slices(service, snap.pods, snap.nodes)
            .into_values()
            .collect();
        let placed = assign_slice_names(desired, &existing_for_service, |n| {
            slices_by_key.contains_key(&(ns, n))
        });
        for (slice_name, slice) in placed {
            let existing = slices_by_key.get(&(ns, slice_name.as_str())).copied();
            actions.extend(upsert(
                resources::ENDPOINT_SLICES,
                ns,
                &slice_name,
                existing,
                slice,
                SLICE_FIELDS,
                now,
            ));
            wanted_slices.insert((ns.to_string(), slice_name));
        }
        let existing = endpoints_by_key.get(&(ns, name)).copied();
        actions.extend(upsert(
            resources::ENDPOINTS,
            ns,
            name,
            existing,
            desired_endpoints(service, snap.pods),
            ENDPOINTS_FIELDS,
            now,
        ));
    }

    // Slices we manage that no Service wants any more: stale port sets, or deleted Services.
    for slice in snap.endpoint_slices {
        if meta::label(slice, LABEL_MANAGED_BY) != Some(CONTROLLER_NAME) {
            continue;
        }
        let ns = meta::namespace(slice).unwrap_or("");
        let svc = meta::label(slice, LABEL_SERVICE_NAME).unwrap_or("");
        let service = services.get(&(ns, svc)).copied();
        let service_managed =
            service.is_some_and(|s| service_selector(s).is_some() && !meta::is_terminating(s));
        let keep =
            wanted_slices.contains(&(ns.to_string(), meta::name(slice).unwrap_or("").to_string()));
        // A Service that lost its selector keeps its slices, as in the real controller.
        if !keep && (service_managed || service.is_none()) {
            actions.push(Action::Delete {
                target: Target::new(
                    resources::ENDPOINT_SLICES,
                    Some(ns),
                    meta::name(slice).unwrap_or(""),
                ),
                precondition_rv: meta::resource_version_u64(slice),
                unless_present: service
                    .is_none()
                    .then(|| Target::new(resources::SERVICES, Some(ns), svc)),
            });
        }
    }
    for ep in snap.endpoints {
        let ns = meta::namespace(ep).unwrap_or("");
        if meta::label(ep, LABEL_ENDPOINTS_MANAGED_BY) == Some(ENDPOINTS_CONTROLLER_NAME)
            && !services.contains_key(&(ns, meta::name(ep).unwrap_or("")))
        {
            actions.push(Action::Delete {
                target: Target::new(resources::ENDPOINTS, Some(ns), meta::name(ep).unwrap_or("")),
                precondition_rv: meta::resource_version_u64(ep),
                unless_present: Some(Target::new(
                    resources::SERVICES,
                    Some(ns),
                    meta::name(ep).unwrap_or(""),
                )),
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-28T10:00:00Z".parse().unwrap()
    }

    fn service(name: &str, selector: Value, ports: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "default", "uid": format!("svc-uid-{name}"),
                            "labels": {"app": name}},
               "spec": {"selector": selector, "ports": ports, "clusterIP": "127.0.40.10", "type": "ClusterIP"}})
    }

    fn pod(name: &str, ip: &str, node: &str, ready: bool) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                            "labels": {"app": "web"}},
               "spec": {"nodeName": node, "containers": [{"name": "c", "image": "proxylab/echo-http:1",
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
               "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                          "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    fn node(name: &str, zone: Option<&str>) -> Value {
        let mut n =
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {}}});
        if let Some(z) = zone {
            n["metadata"]["labels"][LABEL_ZONE] = json!(z);
        }
        n
    }

    fn web() -> Value {
        service(
            "web",
            json!({"app": "web"}),
            json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]),
        )
    }

    fn run(
        services: &[Value],
        pods: &[Value],
        nodes: &[Value],
        slices: &[Value],
        eps: &[Value],
    ) -> Vec<Action> {
        reconcile(
            &Snapshot {
                services,
                pods,
                nodes,
                endpoint_slices: slices,
                endpoints: eps,
            },
            now(),
        )
    }

    /// Applies creates/updates to the object lists, as the store would.
    fn apply(actions: &[Action], slices: &mut Vec<Value>, eps: &mut Vec<Value>) {
        for a in actions {
            let list = if a.target().resource == resources::ENDPOINT_SLICES {
                &mut *slices
            } else {
                &mut *eps
            };
            list.retain(|o| meta::name(o).unwrap_or("") != a.target().name);
            if let Some(o) = a.object() {
                let mut o = o.clone();
                o["metadata"]["resourceVersion"] = json!("5");
                list.push(o);
            }
        }
    }

    #[test]
    fn slice_has_kubernetes_shape_named_port_resolution_and_conditions() {
        let pods = [
            pod("web-1", "127.0.30.2", "node-1", true),
            pod("web-2", "127.0.30.130", "node-2", false),
        ];
        let nodes = [node("node-1", Some("zone-a")), node("node-2", None)];
        let actions = run(&[web()], &pods, &nodes, &[], &[]);
        assert_eq!(actions.len(), 2, "{actions:#?}");
        let slice = actions[0].object().unwrap();
        assert_eq!(actions[0].verb(), "create");
        assert_eq!(slice["kind"], "EndpointSlice");
        assert_eq!(slice["apiVersion"], "discovery.k8s.io/v1");
        let name = slice["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert_eq!(slice["metadata"]["labels"][LABEL_SERVICE_NAME], "web");
        assert_eq!(
            slice["metadata"]["labels"][LABEL_MANAGED_BY],
            CONTROLLER_NAME
        );
        assert_eq!(slice["metadata"]["labels"]["app"], "web");
        assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert_eq!(
            slice["metadata"]["ownerReferences"][0]["uid"],
            "svc-uid-web"
        );
        assert_eq!(slice["metadata"]["ownerReferences"][0]["controller"], true);
        assert!(slice["metadata"]["uid"].as_str().is_some());
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(
            slice["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
        let eps = slice["endpoints"].as_array().unwrap();
        assert_eq!(eps[0]["addresses"], json!(["127.0.30.2"]));
        assert_eq!(
            eps[0]["conditions"],
            json!({"ready": true, "serving": true, "terminating": false})
        );
        assert_eq!(eps[0]["nodeName"], "node-1");
        assert_eq!(eps[0]["zone"], "zone-a");
        assert_eq!(
            eps[0]["targetRef"],
            json!({"kind": "Pod", "namespace": "default", "name": "web-1", "uid": "uid-web-1"})
        );
        assert_eq!(
            eps[1]["conditions"],
            json!({"ready": false, "serving": false, "terminating": false})
        );
        assert!(eps[1].get("zone").is_none());

        let ep = actions[1].object().unwrap();
        assert_eq!(
            actions[1].target(),
            &Target::new("endpoints", Some("default"), "web")
        );
        assert_eq!(
            ep["subsets"],
            json!([{
                "addresses": [{"ip": "127.0.30.2", "nodeName": "node-1",
                               "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1", "uid": "uid-web-1"}}],
                "notReadyAddresses": [{"ip": "127.0.30.130", "nodeName": "node-2",
                               "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-2", "uid": "uid-web-2"}}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
            }])
        );
    }

    #[test]
    fn converged_state_writes_nothing_and_changes_write_once() {
        let mut pods = vec![pod("web-1", "127.0.30.2", "node-1", true)];
        let (mut slices, mut eps) = (Vec::new(), Vec::new());
        let a = run(&[web()], &pods, &[], &slices, &eps);
        apply(&a, &mut slices, &mut eps);
        assert!(run(&[web()], &pods, &[], &slices, &eps).is_empty());

        // The pod starts terminating: serving stays, ready goes, and it leaves the Endpoints.
        pods[0]["metadata"]["deletionTimestamp"] = json!("2026-11-28T10:00:00Z");
        let a = run(&[web()], &pods, &[], &slices, &eps);
        assert_eq!(
            a.iter().map(Action::verb).collect::<Vec<_>>(),
            ["update", "update"]
        );
        let Action::Update {
            precondition_rv,
            object,
            ..
        } = &a[0]
        else {
            panic!()
        };
        assert_eq!(*precondition_rv, Some(5));
        assert_eq!(
            object["endpoints"][0]["conditions"],
            json!({"ready": false, "serving": true, "terminating": true})
        );
        assert!(a[1].object().unwrap().get("subsets").is_none());
        apply(&a, &mut slices, &mut eps);
        assert!(run(&[web()], &pods, &[], &slices, &eps).is_empty());
    }

    #[test]
    fn numeric_and_missing_target_ports_and_unresolvable_names() {
        let svc = service(
            "web",
            json!({"app": "web"}),
            json!([{"name": "a", "port": 80, "targetPort": 9000},
                   {"name": "b", "port": 81},
                   {"name": "c", "port": 82, "targetPort": "nope"},
                   {"name": "d", "port": 53, "targetPort": "http", "protocol": "UDP"},
                   {"name": "e", "port": 83, "targetPort": "9001", "appProtocol": "h2c"}]),
        );
        let slices = desired_slices(&svc, &[pod("web-1", "127.0.30.2", "node-1", true)], &[]);
        let slice = slices.values().next().unwrap();
        assert_eq!(
            slice["ports"],
            json!([{"name": "a", "port": 9000, "protocol": "TCP"},
                   {"name": "b", "port": 81, "protocol": "TCP"},
                   {"name": "e", "port": 9001, "protocol": "TCP", "appProtocol": "h2c"}])
        );
    }

    #[test]
    fn pods_with_different_named_ports_get_separate_slices() {
        let mut p2 = pod("web-2", "127.0.30.3", "node-1", true);
        p2["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(9090);
        let slices = desired_slices(
            &web(),
            &[pod("web-1", "127.0.30.2", "node-1", true), p2],
            &[],
        );
        assert_eq!(slices.len(), 2);
        let mut ports: Vec<i64> = slices
            .values()
            .map(|s| s["ports"][0]["port"].as_i64().unwrap())
            .collect();
        ports.sort();
        assert_eq!(ports, [8080, 9090]);
        let subsets = desired_subsets(&web(), &[pod("web-1", "127.0.30.2", "node-1", true)]);
        assert_eq!(subsets.len(), 1);
    }

    #[test]
    fn selection_excludes_other_namespaces_labels_no_ip_and_finished_pods() {
        let mut other_ns = pod("a", "127.0.30.4", "node-1", true);
        other_ns["metadata"]["namespace"] = json!("other");
        let mut other_label = pod("b", "127.0.30.5", "node-1", true);
        other_label["metadata"]["labels"]["app"] = json!("db");
        let mut no_ip = pod("c", "", "node-1", false);
        no_ip["status"] = json!({"phase": "Pending"});
        let mut done = pod("d", "127.0.30.6", "node-1", false);
        done["status"]["phase"] = json!("Succeeded");
        let mut v6 = pod("e", "::1", "node-1", true);
        v6["status"]["podIPs"] = json!([{"ip": "::1"}]);
        let slices = desired_slices(&web(), &[other_ns, other_label, no_ip, done, v6], &[]);
        assert_eq!(slices.len(), 1);
        let placeholder = slices.values().next().unwrap();
        assert_eq!(placeholder["endpoints"], json!([]));
        assert_eq!(placeholder["ports"], json!([]));
    }

    #[test]
    fn publish_not_ready_and_hostname() {
        let mut svc = web();
        svc["spec"]["publishNotReadyAddresses"] = json!(true);
        svc["spec"]["clusterIP"] = json!("None");
        let mut p = pod("web-1", "127.0.30.2", "node-1", false);
        p["spec"]["hostname"] = json!("web-1");
        p["spec"]["subdomain"] = json!("web");
        let slices = desired_slices(&svc, std::slice::from_ref(&p), &[]);
        let slice = slices.values().next().unwrap();
        assert_eq!(slice["endpoints"][0]["conditions"]["ready"], true);
        assert_eq!(slice["endpoints"][0]["conditions"]["serving"], false);
        assert_eq!(slice["endpoints"][0]["hostname"], "web-1");
        assert_eq!(slice["metadata"]["labels"][LABEL_HEADLESS], "");
        let subsets = desired_subsets(&svc, &[p]);
        assert_eq!(subsets[0]["addresses"][0]["hostname"], "web-1");
    }

    #[test]
    fn deleted_service_loses_slices_and_managed_endpoints_only() {
        let pods = [pod("web-1", "127.0.30.2", "node-1", true)];
        let (mut slices, mut eps) = (Vec::new(), Vec::new());
        apply(&run(&[web()], &pods, &[], &[], &[]), &mut slices, &mut eps);
        // A hand-written Endpoints for a selector-less Service and a foreign slice stay.
        eps.push(json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual", "namespace": "default"}}));
        slices.push(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {"name": "manual-x", "namespace": "default",
                                        "labels": {LABEL_SERVICE_NAME: "web", LABEL_MANAGED_BY: "someone-else"}}}));
        let a = run(&[], &pods, &[], &slices, &eps);
        let mut deleted: Vec<(&str, &str)> =
            a.iter().map(|a| (a.verb(), a.target().resource)).collect();
        deleted.sort();
        assert_eq!(
            deleted,
            [
                ("delete", "endpoints"),
                ("delete", "endpointslices.discovery.k8s.io")
            ]
        );
        assert!(a.iter().all(|a| a.target().name.starts_with("web")));
    }

    #[test]
    fn selectorless_and_external_name_services_are_not_managed() {
        let mut svc = web();
        svc["spec"].as_object_mut().unwrap().remove("selector");
        let mut ext = web();
        ext["metadata"]["name"] = json!("ext");
        ext["spec"]["type"] = json!("ExternalName");
        let pods = [pod("web-1", "127.0.30.2", "node-1", true)];
        assert!(run(&[svc, ext], &pods, &[], &[], &[]).is_empty());
    }

    #[test]
    fn slices_are_reused_rather_than_recreated() {
        // Placeholder first (no pods), then the populated slice keeps the placeholder's name.
        let (mut slices, mut eps) = (Vec::new(), Vec::new());
        apply(&run(&[web()], &[], &[], &[], &[]), &mut slices, &mut eps);
        let placeholder = slices[0]["metadata"]["name"].as_str().unwrap().to_string();
        let pods = [pod("web-1", "127.0.30.2", "node-1", true)];
        let a = run(&[web()], &pods, &[], &slices, &eps);
        assert_eq!(a[0].verb(), "update");
        assert_eq!(a[0].target().name, placeholder);
        apply(&a, &mut slices, &mut eps);

        // A changed port set updates that slice in place too.
        let mut svc = web();
        svc["spec"]["ports"][0]["targetPort"] = json!(7000);
        let a = run(std::slice::from_ref(&svc), &pods, &[], &slices, &eps);
        let verbs: Vec<(&str, &str)> = a
            .iter()
            .map(|a| (a.verb(), a.target().name.as_str()))
            .collect();
        assert_eq!(verbs, [("update", placeholder.as_str()), ("update", "web")]);
        apply(&a, &mut slices, &mut eps);
        assert!(run(&[svc], &pods, &[], &slices, &eps).is_empty());
    }

    #[test]
    fn a_second_port_set_gets_a_new_slice_and_names_never_collide() {
        let mut p2 = pod("web-2", "127.0.30.3", "node-1", true);
        p2["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(9090);
        let pods = vec![pod("web-1", "127.0.30.2", "node-1", true), p2];
        let (mut slices, mut eps) = (Vec::new(), Vec::new());
        apply(
            &run(&[web()], &pods[..1], &[], &[], &[]),
            &mut slices,
            &mut eps,
        );
        // Squat on the name the second port set would be generated with.
        let generated: Vec<String> = desired_slices(&web(), &pods, &[]).into_keys().collect();
        for n in &generated {
            if !slices.iter().any(|s| meta::name(s).unwrap_or("") == n) {
                slices.push(
                    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                   "metadata": {"name": n, "namespace": "default", "labels": {}}}),
                );
            }
        }
        let a = run(&[web()], &pods, &[], &slices, &eps);
        let creates: Vec<&str> = a
            .iter()
            .filter(|a| a.verb() == "create")
            .map(|a| a.target().name.as_str())
            .collect();
        assert_eq!(creates.len(), 1, "{a:#?}");
        assert!(
            !generated.iter().any(|g| g == creates[0]),
            "salted away from the squatter"
        );
        assert!(creates[0].starts_with("web-"));
        assert!(
            a.iter().all(|a| a.verb() != "delete"),
            "the foreign slice is not ours to delete"
        );
    }
}
