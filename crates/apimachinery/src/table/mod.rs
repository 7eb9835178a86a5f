//! Server-side printing: the `meta.k8s.io/v1 Table` that `kubectl get` renders.
//!
//! Since Kubernetes 1.11 kubectl does not know how to print a Pod: it asks the apiserver for
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints the `columnDefinitions` and
//! `rows[].cells` it gets back. Columns with `priority: 0` are the default view; `priority: 1` columns
//! appear with `-o wide`. The server always fills every cell (kube-apiserver prints "wide"), kubectl
//! hides what it does not need.
//!
//! The column sets and cell formats below follow kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`) for the kinds the lab serves: the pod STATUS column is
//! computed from container states the same way (`Running`, `ContainerCreating`, `Init:0/1`,
//! `Terminating`, …), ages use kubectl's `HumanDuration`, lists are cut at three entries
//! (`a,b,c + 2 more...`).

mod apps;
pub use apps::format_label_selector;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use crate::meta;
use crate::registry::ResourceInfo;

/// What each row carries in `object` (the `includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` with the object's `metadata` (kube-apiserver's default).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses `includeObject=None|Metadata|Object`; unknown values are `None` of this function's result
    /// (the apiserver answers 400).
    pub fn parse(s: &str) -> Option<IncludeObject> {
        match s {
            "None" => Some(IncludeObject::None),
            "Metadata" | "" => Some(IncludeObject::Metadata),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

/// kubectl's `duration.HumanDuration`: `45s`, `2m5s`, `15m`, `3h20m`, `2d5h`, `400d`, `3y20d`.
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Age of an RFC 3339 timestamp at `now`, `<unknown>` when absent or unparsable.
pub fn translate_timestamp_since(ts: Option<&str>, now: Timestamp) -> String {
    match ts.and_then(meta::parse_time) {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".into(),
    }
}

struct Column {
    name: &'static str,
    ty: &'static str,
    priority: u8,
    description: &'static str,
}

const fn col(
    name: &'static str,
    ty: &'static str,
    priority: u8,
    description: &'static str,
) -> Column {
    Column {
        name,
        ty,
        priority,
        description,
    }
}

const NAME: Column = col(
    "Name",
    "string",
    0,
    "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically.",
);
const AGE: Column = col(
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

fn columns(kind: &str) -> Vec<Column> {
    if let Some(c) = apps::columns(kind) {
        return c;
    }
    match kind {
        "Pod" => vec![
            NAME,
            col(
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            col(
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            col(
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            AGE,
            col(
                "IP",
                "string",
                1,
                "IP address allocated to the pod. Routable at least within the cluster.",
            ),
            col(
                "Node",
                "string",
                1,
                "NodeName indicates in which node this pod is scheduled.",
            ),
            col(
                "Nominated Node",
                "string",
                1,
                "nominatedNodeName is set when this pod preempts other pods on the node.",
            ),
            col(
                "Readiness Gates",
                "string",
                1,
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        "Service" => vec![
            NAME,
            col(
                "Type",
                "string",
                0,
                "type determines how the Service is exposed.",
            ),
            col(
                "Cluster-IP",
                "string",
                0,
                "clusterIP is the IP address of the service.",
            ),
            col(
                "External-IP",
                "string",
                0,
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            col(
                "Port(s)",
                "string",
                0,
                "The list of ports that are exposed by this service.",
            ),
            AGE,
            col(
                "Selector",
                "string",
                1,
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        "Node" => vec![
            NAME,
            col("Status", "string", 0, "The status of the node"),
            col("Roles", "string", 0, "The roles of the node"),
            AGE,
            col(
                "Version",
                "string",
                0,
                "Kubelet Version reported by the node.",
            ),
            col(
                "Internal-IP",
                "string",
                1,
                "List of addresses reachable to the node.",
            ),
            col(
                "External-IP",
                "string",
                1,
                "List of addresses reachable to the node.",
            ),
            col(
                "OS-Image",
                "string",
                1,
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            col(
                "Kernel-Version",
                "string",
                1,
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            col(
                "Container-Runtime",
                "string",
                1,
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        "EndpointSlice" => vec![
            NAME,
            col(
                "AddressType",
                "string",
                0,
                "addressType specifies the type of address carried by this EndpointSlice.",
            ),
            col(
                "Ports",
                "string",
                0,
                "ports specifies the list of network ports exposed by each endpoint in this slice.",
            ),
            col(
                "Endpoints",
                "string",
                0,
                "endpoints is a list of unique endpoints in this slice.",
            ),
            AGE,
        ],
        "Endpoints" => vec![
            NAME,
            col(
                "Endpoints",
                "string",
                0,
                "Endpoints is the list of endpoints (ip:port) of the service.",
            ),
            AGE,
        ],
        "Secret" => vec![
            NAME,
            col(
                "Type",
                "string",
                0,
                "Used to facilitate programmatic handling of secret data.",
            ),
            col("Data", "integer", 0, "Number of keys in the secret data."),
            AGE,
        ],
        "ServiceAccount" => vec![
            NAME,
            col(
                "Secrets",
                "integer",
                0,
                "Number of secrets referenced by this service account.",
            ),
            AGE,
        ],
        "ConfigMap" => vec![
            NAME,
            col(
                "Data",
                "integer",
                0,
                "Number of keys in the config map (data and binaryData).",
            ),
            AGE,
        ],
        "Namespace" => vec![
            NAME,
            col("Status", "string", 0, "The status of the namespace"),
            AGE,
        ],
        "Lease" => vec![
            NAME,
            col(
                "Holder",
                "string",
                0,
                "holderIdentity contains the identity of the holder of a current lease.",
            ),
            AGE,
        ],
        "Event" => vec![
            col(
                "Last Seen",
                "string",
                0,
                "The time at which the most recent occurrence of this event was recorded.",
            ),
            col("Type", "string", 0, "Type of this event (Normal, Warning)."),
            col(
                "Reason",
                "string",
                0,
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            col(
                "Object",
                "string",
                0,
                "The object that this event is about.",
            ),
            col(
                "Subobject",
                "string",
                1,
                "The field of the involved object this event is about.",
            ),
            col("Source", "string", 1, "The component reporting this event."),
            col(
                "Message",
                "string",
                0,
                "A human-readable description of the status of this operation.",
            ),
            col(
                "First Seen",
                "string",
                1,
                "The time at which the event was first recorded.",
            ),
            col(
                "Count",
                "string",
                1,
                "The number of times this event has occurred.",
            ),
            col("Name", "string", 1, "Name of the event."),
        ],
        _ => vec![NAME, AGE],
    }
}

/// String at a path; "" when absent or not a string.
/// The string at `path`, `""` when absent (Table cells print absent strings as empty).
fn s<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    meta::str_at(obj, path).unwrap_or_default()
}

fn count_keys(obj: &Value, key: &str) -> usize {
    obj.get(key).and_then(Value::as_object).map_or(0, Map::len)
}

fn or_none(v: &str, none: &str) -> String {
    if v.is_empty() {
        none.to_string()
    } else {
        v.to_string()
    }
}

/// `a,b,c + N more...` with at most three entries, `empty` when there are none.
fn list_with_more(all: &[String], empty: &str) -> String {
    const MAX: usize = 3;
    if all.is_empty() {
        return empty.to_string();
    }
    let shown = all[..all.len().min(MAX)].join(",");
    if all.len() > MAX {
        format!("{shown} + {} more...", all.len() - MAX)
    } else {
        shown
    }
}

fn age(obj: &Value, now: Timestamp) -> Value {
    Value::String(translate_timestamp_since(
        meta::creation_timestamp(obj),
        now,
    ))
}

fn name_cell(obj: &Value) -> Value {
    Value::String(meta::name(obj).unwrap_or_default().to_string())
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let total = meta::array_at(pod, &["spec", "containers"]).len();
    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut last_restart: Option<Timestamp> = None;
    let status_reason = s(pod, &["status", "reason"]);
    let mut reason = if status_reason.is_empty() {
        s(pod, &["status", "phase"]).to_string()
    } else {
        status_reason.to_string()
    };
    let note_restart = |c: &Value, last: &mut Option<Timestamp>| {
        if let Some(t) = meta::at(c, &["lastState", "terminated", "finishedAt"])
            .and_then(Value::as_str)
            .and_then(meta::parse_time)
        {
            *last = Some(last.map_or(t, |l| l.max(t)));
        }
    };
    let exit_reason = |term: &Value, prefix: &str| -> String {
        let r = s(term, &["reason"]);
        if !r.is_empty() {
            return format!("{prefix}{r}");
        }
        let signal = term.get("signal").and_then(Value::as_i64).unwrap_or(0);
        if signal != 0 {
            format!("{prefix}Signal:{signal}")
        } else {
            format!(
                "{prefix}ExitCode:{}",
                term.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
            )
        }
    };

    let init_specs = meta::array_at(pod, &["spec", "initContainers"]).len();
    let mut initializing = false;
    for (i, c) in meta::array_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        note_restart(c, &mut last_restart);
        let terminated = meta::at(c, &["state", "terminated"]);
        let waiting_reason = s(c, &["state", "waiting", "reason"]);
        if terminated
            .and_then(|t| t.get("exitCode"))
            .and_then(Value::as_i64)
            == Some(0)
        {
            continue;
        }
        if let Some(t) = terminated {
            reason = exit_reason(t, "Init:");
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{init_specs}");
        }
        initializing = true;
        break;
    }
    let initialized = meta::array_at(pod, &["status", "conditions"])
        .iter()
        .any(|c| s(c, &["type"]) == "Initialized" && s(c, &["status"]) == "True");
    if !initializing || initialized {
        // As kube-apiserver: once the pod is initialized, (non-sidecar) init container restarts no longer
        // count.
        restarts = 0;
        let mut has_running = false;
        for c in meta::array_at(pod, &["status", "containerStatuses"])
            .iter()
            .rev()
        {
            restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            note_restart(c, &mut last_restart);
            let waiting_reason = s(c, &["state", "waiting", "reason"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = meta::at(c, &["state", "terminated"]) {
                reason = exit_reason(t, "");
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && meta::at(c, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = meta::array_at(pod, &["status", "conditions"])
                .iter()
                .any(|c| s(c, &["type"]) == "Ready" && s(c, &["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }
    let phase = s(pod, &["status", "phase"]);
    if meta::deletion_timestamp(pod).is_some() {
        if status_reason == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", human_duration(now.duration_since(t)))
        }
        _ => restarts.to_string(),
    };

    let pod_ip = meta::array_at(pod, &["status", "podIPs"])
        .first()
        .map(|p| s(p, &["ip"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| s(pod, &["status", "podIP"]));
    let gates = meta::array_at(pod, &["spec", "readinessGates"]);
    let gates_str = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conds = meta::array_at(pod, &["status", "conditions"]);
        let true_count = gates
            .iter()
            .filter(|g| {
                let t = s(g, &["conditionType"]);
                conds
                    .iter()
                    .find(|c| s(c, &["type"]) == t)
                    .is_some_and(|c| s(c, &["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        name_cell(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        age(pod, now),
        json!(or_none(pod_ip, "<none>")),
        json!(or_none(s(pod, &["spec", "nodeName"]), "<none>")),
        json!(or_none(s(pod, &["status", "nominatedNodeName"]), "<none>")),
        json!(gates_str),
    ]
}

/// `k=v,k2=v2` sorted by key, `<none>` when empty (labels.FormatLabels).
fn format_labels(map: Option<&Value>) -> String {
    let Some(m) = map.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(",")
}

fn strings(v: &[Value]) -> Vec<String> {
    v.iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    let ty = match s(svc, &["spec", "type"]) {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = meta::array_at(svc, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| s(svc, &["spec", "clusterIP"]));
    let external_ips = strings(meta::array_at(svc, &["spec", "externalIPs"]));
    let external = match ty {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(","), "<none>"),
        "LoadBalancer" => {
            let mut all: Vec<String> = meta::array_at(svc, &["status", "loadBalancer", "ingress"])
                .iter()
                .map(|i| {
                    let ip = s(i, &["ip"]);
                    if ip.is_empty() {
                        s(i, &["hostname"]).to_string()
                    } else {
                        ip.to_string()
                    }
                })
                .filter(|x| !x.is_empty())
                .collect();
            all.extend(external_ips);
            or_none(&all.join(","), "<pending>")
        }
        "ExternalName" => s(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = meta::array_at(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = match s(p, &["protocol"]) {
                "" => "TCP",
                x => x,
            };
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) if np != 0 => format!("{port}:{np}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    vec![
        name_cell(svc),
        json!(ty),
        json!(or_none(cluster_ip, "<none>")),
        json!(external),
        json!(or_none(&ports.join(","), "<none>")),
        age(svc, now),
        json!(format_labels(meta::at(svc, &["spec", "selector"]))),
    ]
}

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = meta::array_at(node, &["status", "conditions"])
        .iter()
        .find(|c| s(c, &["type"]) == "Ready")
    {
        status.push(
            if s(c, &["status"]) == "True" {
                "Ready"
            } else {
                "NotReady"
            }
            .into(),
        );
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if meta::at(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = meta::labels(node) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str().filter(|v| !v.is_empty())
            {
                roles.push(v.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    let address = |ty: &str| {
        meta::array_at(node, &["status", "addresses"])
            .iter()
            .find(|a| s(a, &["type"]) == ty)
            .map(|a| s(a, &["address"]).to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let info = |k: &str| or_none(s(node, &["status", "nodeInfo", k]), "<unknown>");
    vec![
        name_cell(node),
        json!(status.join(",")),
        json!(or_none(&roles.join(","), "<none>")),
        age(node, now),
        json!(s(node, &["status", "nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn endpointslice_cells(es: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = meta::array_at(es, &["ports"])
        .iter()
        .map(|p| match p.get("port").and_then(Value::as_i64) {
            Some(n) => n.to_string(),
            None => match s(p, &["name"]) {
                "" => "*".into(),
                n => n.to_string(),
            },
        })
        .collect();
    let addrs: Vec<String> = meta::array_at(es, &["endpoints"])
        .iter()
        .flat_map(|e| strings(meta::array_at(e, &["addresses"])))
        .collect();
    vec![
        name_cell(es),
        json!(s(es, &["addressType"])),
        json!(list_with_more(&ports, "<unset>")),
        json!(list_with_more(&addrs, "<unset>")),
        age(es, now),
    ]
}

fn endpoints_cells(ep: &Value, now: Timestamp) -> Vec<Value> {
    let subsets = meta::array_at(ep, &["subsets"]);
    let mut list = Vec::new();
    for ss in subsets {
        let addrs: Vec<&str> = meta::array_at(ss, &["addresses"])
            .iter()
            .map(|a| s(a, &["ip"]))
            .collect();
        let ports = meta::array_at(ss, &["ports"]);
        if ports.is_empty() {
            list.extend(addrs.iter().map(|a| a.to_string()));
        } else {
            for p in ports {
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                for a in &addrs {
                    // net.JoinHostPort brackets IPv6 addresses.
                    if a.contains(':') {
                        list.push(format!("[{a}]:{port}"));
                    } else {
                        list.push(format!("{a}:{port}"));
                    }
                }
            }
        }
    }
    let cell = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        list_with_more(&list, "")
    };
    vec![name_cell(ep), json!(cell), age(ep, now)]
}

fn event_cells(ev: &Value, now: Timestamp) -> Vec<Value> {
    let since = |path: &[&str]| {
        meta::at(ev, path)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| translate_timestamp_since(Some(t), now))
    };
    let first = since(&["firstTimestamp"])
        .or_else(|| since(&["eventTime"]))
        .unwrap_or_else(|| "<unknown>".into());
    let mut last = since(&["lastTimestamp"]).unwrap_or_else(|| first.clone());
    let mut count = ev.get("count").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = ev.get("series").filter(|s| s.is_object()) {
        last = since(&["series", "lastObservedTime"]).unwrap_or_else(|| "<unknown>".into());
        count = series.get("count").and_then(Value::as_i64).unwrap_or(count);
    } else if count == 0 {
        count = 1;
    }
    let kind = s(ev, &["involvedObject", "kind"]).to_lowercase();
    let name = s(ev, &["involvedObject", "name"]);
    let target = if name.is_empty() {
        kind
    } else {
        format!("{kind}/{name}")
    };
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(
        s(ev, &["source", "component"]),
        s(ev, &["reportingComponent"]),
    );
    let instance = first_non_empty(s(ev, &["source", "host"]), s(ev, &["reportingInstance"]));
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(s(ev, &["type"])),
        json!(s(ev, &["reason"])),
        json!(target),
        json!(s(ev, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(s(ev, &["message"]).trim()),
        json!(first),
        json!(count),
        name_cell(ev),
    ]
}

fn cells(kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    if let Some(c) = apps::cells(kind, obj, now) {
        return c;
    }
    match kind {
        "Pod" => pod_cells(obj, now),
        "Service" => service_cells(obj, now),
        "Node" => node_cells(obj, now),
        "EndpointSlice" => endpointslice_cells(obj, now),
        "Endpoints" => endpoints_cells(obj, now),
        "Event" => event_cells(obj, now),
        "Secret" => vec![
            name_cell(obj),
            json!(s(obj, &["type"])),
            json!(count_keys(obj, "data")),
            age(obj, now),
        ],
        "ServiceAccount" => vec![
            name_cell(obj),
            json!(meta::array_at(obj, &["secrets"]).len()),
            age(obj, now),
        ],
        "ConfigMap" => vec![
            name_cell(obj),
            json!(count_keys(obj, "data") + count_keys(obj, "binaryData")),
            age(obj, now),
        ],
        "Namespace" => vec![
            name_cell(obj),
            json!(s(obj, &["status", "phase"])),
            age(obj, now),
        ],
        "Lease" => vec![
            name_cell(obj),
            json!(s(obj, &["spec", "holderIdentity"])),
            age(obj, now),
        ],
        _ => vec![name_cell(obj), age(obj, now)],
    }
}

/// The column definitions of a resource's Table (`name`, `type`, `format`, `description`, `priority`).
pub fn column_definitions(info: &ResourceInfo) -> Vec<Value> {
    columns(info.kind)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.ty,
                "format": if c.name == "Name" && c.priority == 0 { "name" } else { "" },
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// The cells of one object's row, in column order.
pub fn row_cells(info: &ResourceInfo, obj: &Value, now: Timestamp) -> Vec<Value> {
    cells(info.kind, obj, now)
}

/// A `meta.k8s.io/v1 Table` of `objects`, ages computed at `now`. The caller sets
/// `metadata.resourceVersion` (and `continue`) for lists.
pub fn to_table(
    info: &ResourceInfo,
    objects: &[Value],
    include_object: IncludeObject,
    now: Timestamp,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells(info.kind, obj, now)));
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert(
                        "object".into(),
                        json!({
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                        }),
                    );
                }
                IncludeObject::Object => {
                    row.insert("object".into(), obj.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions(info),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{lookup, lookup_kind, resources};

    fn now() -> Timestamp {
        "2026-11-28T12:00:00Z".parse().expect("ts")
    }

    fn header(info: &ResourceInfo, wide: bool) -> Vec<String> {
        column_definitions(info)
            .iter()
            .filter(|c| wide || c["priority"] == 0)
            .map(|c| c["name"].as_str().unwrap_or_default().to_uppercase())
            .collect()
    }

    fn row(kind_api: (&str, &str), obj: Value) -> Vec<Value> {
        let info = lookup_kind(kind_api.0, kind_api.1).expect("kind");
        let t = to_table(info, &[obj], IncludeObject::None, now());
        t["rows"][0]["cells"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn human_durations_like_kubectl() {
        let d = |s: i64| human_duration(SignedDuration::from_secs(s));
        assert_eq!(d(-5), "<invalid>");
        assert_eq!(d(-1), "0s");
        assert_eq!(d(0), "0s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(120), "2m");
        assert_eq!(d(125), "2m5s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(3 * 3600 + 20 * 60), "3h20m");
        assert_eq!(d(5 * 3600), "5h");
        assert_eq!(d(20 * 3600), "20h");
        assert_eq!(d(50 * 3600), "2d2h");
        assert_eq!(d(3 * 86400), "3d");
        assert_eq!(d(400 * 86400), "400d");
        assert_eq!(d(3 * 365 * 86400 + 20 * 86400), "3y20d");
        assert_eq!(d(10 * 365 * 86400), "10y");
        assert_eq!(translate_timestamp_since(None, now()), "<unknown>");
        assert_eq!(
            translate_timestamp_since(Some("2026-11-28T11:55:00Z"), now()),
            "5m"
        );
    }

    #[test]
    fn headers_match_kubectl() {
        let h =
            |r: &str, g: &str, wide: bool| header(lookup(g, "v1", r).expect("r"), wide).join(" ");
        assert_eq!(h("pods", "", false), "NAME READY STATUS RESTARTS AGE");
        assert_eq!(
            h("pods", "", true),
            "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES"
        );
        assert_eq!(
            h("services", "", false),
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE"
        );
        assert_eq!(h("nodes", "", false), "NAME STATUS ROLES AGE VERSION");
        assert_eq!(
            h("endpointslices", "discovery.k8s.io", false),
            "NAME ADDRESSTYPE PORTS ENDPOINTS AGE"
        );
        assert_eq!(h("secrets", "", false), "NAME TYPE DATA AGE");
        assert_eq!(h("serviceaccounts", "", false), "NAME SECRETS AGE");
        assert_eq!(h("namespaces", "", false), "NAME STATUS AGE");
        assert_eq!(
            h("events", "", false),
            "LAST SEEN TYPE REASON OBJECT MESSAGE"
        );
        assert_eq!(h("leases", "coordination.k8s.io", false), "NAME HOLDER AGE");
        assert_eq!(h("configmaps", "", false), "NAME DATA AGE");
        assert_eq!(h("endpoints", "", false), "NAME ENDPOINTS AGE");
        let apps =
            |r: &str, wide: bool| header(lookup("apps", "v1", r).expect("r"), wide).join(" ");
        assert_eq!(
            apps("deployments", false),
            "NAME READY UP-TO-DATE AVAILABLE AGE"
        );
        assert_eq!(
            apps("deployments", true),
            "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR"
        );
        assert_eq!(apps("replicasets", false), "NAME DESIRED CURRENT READY AGE");
    }

    #[test]
    fn every_row_has_one_cell_per_column() {
        for info in resources() {
            let t = to_table(
                info,
                &[json!({}), json!({"metadata":{"name":"x"}})],
                IncludeObject::Metadata,
                now(),
            );
            let ncols = t["columnDefinitions"].as_array().map_or(0, Vec::len);
            for r in t["rows"].as_array().into_iter().flatten() {
                assert_eq!(
                    r["cells"].as_array().map_or(0, Vec::len),
                    ncols,
                    "{}",
                    info.kind
                );
                assert_eq!(r["object"]["kind"], "PartialObjectMetadata");
            }
        }
    }

    #[test]
    fn running_pod_row() {
        let pod = json!({"metadata":{"name":"web","creationTimestamp":"2026-11-28T11:58:00Z"},
            "spec":{"nodeName":"node-1","containers":[{"name":"a"},{"name":"b"}]},
            "status":{"phase":"Running","podIP":"127.0.30.5","podIPs":[{"ip":"127.0.30.5"}],
                "conditions":[{"type":"Ready","status":"True"}],
                "containerStatuses":[
                    {"name":"a","ready":true,"restartCount":0,"state":{"running":{}}},
                    {"name":"b","ready":true,"restartCount":2,"state":{"running":{}},
                     "lastState":{"terminated":{"finishedAt":"2026-11-28T11:59:00Z"}}}]}});
        assert_eq!(
            row(("v1", "Pod"), pod),
            vec![
                json!("web"),
                json!("2/2"),
                json!("Running"),
                json!("2 (60s ago)"),
                json!("2m"),
                json!("127.0.30.5"),
                json!("node-1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn pod_status_reasons() {
        let pending = json!({"spec":{"containers":[{"name":"a"}]},"status":{"phase":"Pending"}});
        assert_eq!(row(("v1", "Pod"), pending.clone())[2], "Pending");
        assert_eq!(row(("v1", "Pod"), pending)[5], "<none>");
        let creating = json!({"spec":{"containers":[{"name":"a"}]},"status":{"phase":"Pending",
            "containerStatuses":[{"name":"a","ready":false,"state":{"waiting":{"reason":"ContainerCreating"}}}]}});
        assert_eq!(row(("v1", "Pod"), creating)[2], "ContainerCreating");
        let crashed = json!({"spec":{"containers":[{"name":"a"}]},"status":{"phase":"Running",
            "containerStatuses":[{"name":"a","state":{"terminated":{"exitCode":2}}}]}});
        assert_eq!(row(("v1", "Pod"), crashed)[2], "ExitCode:2");
        let init = json!({"spec":{"initContainers":[{"name":"i"}],"containers":[{"name":"a"}]},"status":{"phase":"Pending",
            "initContainerStatuses":[{"name":"i","state":{"running":{}}}]}});
        assert_eq!(row(("v1", "Pod"), init)[2], "Init:0/1");
        let deleting = json!({"metadata":{"deletionTimestamp":"2026-11-28T11:59:59Z"},"spec":{"containers":[{"name":"a"}]},
            "status":{"phase":"Running","containerStatuses":[{"name":"a","ready":true,"state":{"running":{}}}]}});
        let cells = row(("v1", "Pod"), deleting);
        assert_eq!(
            (cells[1].clone(), cells[2].clone()),
            (json!("1/1"), json!("Terminating"))
        );
        let gated = json!({"spec":{"containers":[],"readinessGates":[{"conditionType":"x"},{"conditionType":"y"}]},
            "status":{"conditions":[{"type":"x","status":"True"}]}});
        assert_eq!(row(("v1", "Pod"), gated)[8], "1/2");
    }

    #[test]
    fn service_rows() {
        let cip = json!({"metadata":{"name":"web"},"spec":{"clusterIP":"127.0.40.10","clusterIPs":["127.0.40.10"],
            "ports":[{"port":80,"protocol":"TCP"},{"port":53,"protocol":"UDP"}],"selector":{"tier":"f","app":"web"}}});
        let c = row(("v1", "Service"), cip);
        assert_eq!(
            &c[1..5],
            &[
                json!("ClusterIP"),
                json!("127.0.40.10"),
                json!("<none>"),
                json!("80/TCP,53/UDP")
            ]
        );
        assert_eq!(c[6], "app=web,tier=f");
        let np = json!({"spec":{"type":"NodePort","clusterIP":"127.0.40.11","ports":[{"port":80,"nodePort":30080}]}});
        assert_eq!(row(("v1", "Service"), np)[4], "80:30080/TCP");
        let lb = json!({"spec":{"type":"LoadBalancer","clusterIP":"None","ports":[]}});
        let c = row(("v1", "Service"), lb);
        assert_eq!(
            (c[2].clone(), c[3].clone(), c[4].clone()),
            (json!("None"), json!("<pending>"), json!("<none>"))
        );
        let lb = json!({"spec":{"type":"LoadBalancer","externalIPs":["1.2.3.4"]},"status":{"loadBalancer":{"ingress":[{"ip":"127.0.50.1"}]}}});
        assert_eq!(row(("v1", "Service"), lb)[3], "127.0.50.1,1.2.3.4");
        let en = json!({"spec":{"type":"ExternalName","externalName":"example.com"}});
        assert_eq!(row(("v1", "Service"), en)[3], "example.com");
    }

    #[test]
    fn node_rows() {
        let node = json!({"metadata":{"name":"node-1","labels":{"node-role.kubernetes.io/worker":"","node-role.kubernetes.io/control-plane":""}},
            "spec":{"unschedulable":true},
            "status":{"conditions":[{"type":"Ready","status":"True"}],"addresses":[{"type":"InternalIP","address":"127.0.20.1"}],
                "nodeInfo":{"kubeletVersion":"v1.33.0-proxylab"}}});
        let c = row(("v1", "Node"), node);
        assert_eq!(
            &c[1..3],
            &[
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,worker")
            ]
        );
        assert_eq!(c[4], "v1.33.0-proxylab");
        assert_eq!(
            &c[5..8],
            &[json!("127.0.20.1"), json!("<none>"), json!("<unknown>")]
        );
        let down = json!({"status":{"conditions":[{"type":"Ready","status":"Unknown"}]}});
        assert_eq!(row(("v1", "Node"), down)[1], "NotReady");
        assert_eq!(
            row(("v1", "Node"), json!({}))[1..3],
            [json!("Unknown"), json!("<none>")]
        );
    }

    #[test]
    fn endpoint_rows() {
        let es = json!({"addressType":"IPv4","ports":[{"port":8080},{"name":"x"}],
            "endpoints":[{"addresses":["127.0.30.1"]},{"addresses":["127.0.30.2"]},{"addresses":["127.0.30.3"]},{"addresses":["127.0.30.4"]},{"addresses":["127.0.30.5"]}]});
        let c = row(("discovery.k8s.io/v1", "EndpointSlice"), es);
        assert_eq!(
            &c[1..4],
            &[
                json!("IPv4"),
                json!("8080,x"),
                json!("127.0.30.1,127.0.30.2,127.0.30.3 + 2 more...")
            ]
        );
        assert_eq!(
            row(("discovery.k8s.io/v1", "EndpointSlice"), json!({}))[2..4],
            [json!("<unset>"), json!("<unset>")]
        );
        let ep = json!({"subsets":[{"addresses":[{"ip":"127.0.30.1"},{"ip":"127.0.30.2"}],"ports":[{"port":80}]}]});
        assert_eq!(
            row(("v1", "Endpoints"), ep)[1],
            "127.0.30.1:80,127.0.30.2:80"
        );
        assert_eq!(row(("v1", "Endpoints"), json!({}))[1], "<none>");
    }

    #[test]
    fn other_rows() {
        let sec = json!({"metadata":{"name":"t"},"type":"kubernetes.io/service-account-token","data":{"token":"x","ca.crt":"y","namespace":"z"}});
        assert_eq!(
            row(("v1", "Secret"), sec)[1..3],
            [json!("kubernetes.io/service-account-token"), json!(3)]
        );
        assert_eq!(
            row(("v1", "ServiceAccount"), json!({"secrets":[{"name":"a"}]}))[1],
            1
        );
        assert_eq!(
            row(
                ("v1", "ConfigMap"),
                json!({"data":{"a":"1"},"binaryData":{"b":"AA=="}})
            )[1],
            2
        );
        assert_eq!(
            row(("v1", "Namespace"), json!({"status":{"phase":"Active"}}))[1],
            "Active"
        );
        assert_eq!(
            row(
                ("coordination.k8s.io/v1", "Lease"),
                json!({"spec":{"holderIdentity":"node-1"}})
            )[1],
            "node-1"
        );
        let ev = json!({"metadata":{"name":"web.1"},"type":"Normal","reason":"Scheduled","message":" Successfully assigned default/web to node-1 ",
            "involvedObject":{"kind":"Pod","name":"web"},"source":{"component":"default-scheduler"},
            "firstTimestamp":"2026-11-28T11:50:00Z","lastTimestamp":"2026-11-28T11:59:00Z","count":3});
        assert_eq!(
            row(("v1", "Event"), ev),
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/web"),
                json!(""),
                json!("default-scheduler"),
                json!("Successfully assigned default/web to node-1"),
                json!("10m"),
                json!(3),
                json!("web.1")
            ]
        );
    }

    #[test]
    fn include_object_modes() {
        let info = lookup("", "v1", "configmaps").expect("cm");
        let obj = json!({"kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"b"}});
        let t = to_table(
            info,
            std::slice::from_ref(&obj),
            IncludeObject::Object,
            now(),
        );
        assert_eq!(t["rows"][0]["object"], obj);
        let t = to_table(info, std::slice::from_ref(&obj), IncludeObject::None, now());
        assert!(t["rows"][0].get("object").is_none());
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(IncludeObject::parse("Object"), Some(IncludeObject::Object));
        assert_eq!(IncludeObject::parse("bogus"), None);
    }
}
