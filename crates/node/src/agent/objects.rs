//! The Kubernetes objects and patches the agent sends, as pure functions.
//!
//! Everything the agent writes to the API — its Node, its Lease, each pod's status — is built here
//! from plain inputs (names, addresses, the time), so what a kubelet reports can be read and tested
//! without an apiserver. The agent module only decides *when* to send them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::Ipv4Net;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::workload::{ContainerSpec, PortProtocol, PortSpec};

/// The kubelet version the node reports (the API version it speaks, marked as ours).
pub const KUBELET_VERSION: &str = "v1.33.0-proxylab";
/// The container runtime the node reports: there is none, workloads are in-process tasks.
pub const CONTAINER_RUNTIME_VERSION: &str = "proxylab://0.1";
/// Where node leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// `metav1.Time`: RFC 3339 in UTC with whole seconds.
pub fn k8s_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `metav1.MicroTime`: RFC 3339 in UTC with microseconds (what Lease renewTime carries).
pub fn k8s_micro_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// What a node reports about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    /// metadata.name.
    pub name: String,
    /// The InternalIP address (where the kubelet API and NodePorts listen).
    pub address: IpAddr,
    /// The kubelet API port (status.daemonEndpoints.kubeletEndpoint.port).
    pub kubelet_port: u16,
    /// spec.podCIDR.
    pub pod_cidr: Ipv4Net,
    /// Extra labels (`--node-labels`), on top of kubernetes.io/hostname, os and arch.
    pub labels: BTreeMap<String, String>,
    /// Capacity: CPUs.
    pub cpu: u32,
    /// Capacity: memory in KiB.
    pub memory_kib: u64,
    /// Capacity: pods.
    pub max_pods: u32,
    /// nodeInfo.kernelVersion.
    pub kernel_version: String,
    /// nodeInfo.osImage.
    pub os_image: String,
    /// nodeInfo.architecture, in Go's naming (amd64, arm64).
    pub architecture: String,
}

impl NodeFacts {
    /// Facts for this machine: CPU count, memory, kernel and OS from /proc and /etc/os-release
    /// (with neutral fallbacks where they cannot be read).
    pub fn local(
        name: &str,
        address: IpAddr,
        kubelet_port: u16,
        pod_cidr: Ipv4Net,
        max_pods: u32,
    ) -> Self {
        let cpu = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| parse_meminfo_total(&m))
            .unwrap_or(1024 * 1024);
        let kernel_version = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| parse_os_release_pretty_name(&s))
            .unwrap_or_else(|| "proxylab".into());
        Self {
            name: name.to_owned(),
            address,
            kubelet_port,
            pod_cidr,
            labels: BTreeMap::new(),
            cpu,
            memory_kib,
            max_pods,
            kernel_version,
            os_image,
            architecture: go_arch(std::env::consts::ARCH).to_owned(),
        }
    }

    /// All labels of the Node: the well-known ones plus `labels`.
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_owned(), self.name.clone()),
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("kubernetes.io/arch".to_owned(), self.architecture.clone()),
            ("beta.kubernetes.io/os".to_owned(), "linux".to_owned()),
            (
                "beta.kubernetes.io/arch".to_owned(),
                self.architecture.clone(),
            ),
        ]);
        labels.extend(self.labels.clone());
        labels
    }
}

/// Go's GOARCH name for a Rust target architecture.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn parse_os_release_pretty_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// The Node object to create: metadata (labels), spec (podCIDR) and status.
/// (The apiserver ignores status on create, so the agent also patches [`node_status`].)
pub fn node_object(facts: &NodeFacts, now: Timestamp, ready_since: Timestamp) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": node_metadata_patch(facts)["metadata"],
        "spec": node_spec(facts),
        "status": node_status(facts, now, ready_since)["status"],
    })
}

/// A merge patch setting the node's labels (used when the Node already exists).
pub fn node_metadata_patch(facts: &NodeFacts) -> Value {
    json!({ "metadata": { "name": facts.name, "labels": facts.all_labels() } })
}

/// The node's spec: its pod CIDR.
pub fn node_spec(facts: &NodeFacts) -> Value {
    let cidr = facts.pod_cidr.to_string();
    json!({ "podCIDR": cidr, "podCIDRs": [cidr] })
}

/// A merge patch for the status subresource: addresses, endpoints, capacity, node info and the
/// conditions, with `now` as heartbeat and `ready_since` as the Ready transition time.
pub fn node_status(facts: &NodeFacts, now: Timestamp, ready_since: Timestamp) -> Value {
    let now = k8s_time(now);
    let since = k8s_time(ready_since);
    let resources = json!({
        "cpu": facts.cpu.to_string(),
        "memory": format!("{}Ki", facts.memory_kib),
        "pods": facts.max_pods.to_string(),
        "ephemeral-storage": "10Gi",
    });
    let healthy = |kind: &str, reason: &str, message: &str| {
        json!({
            "type": kind, "status": "False", "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since,
        })
    };
    json!({
        "status": {
            "addresses": [
                { "type": "InternalIP", "address": facts.address.to_string() },
                { "type": "Hostname", "address": facts.name },
            ],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": facts.kubelet_port } },
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                healthy("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                healthy("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                healthy("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                {
                    "type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": now, "lastTransitionTime": since,
                },
            ],
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": facts.kernel_version,
                "osImage": facts.os_image,
                "containerRuntimeVersion": CONTAINER_RUNTIME_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": facts.architecture,
            },
        }
    })
}

/// The node's Lease in `kube-node-lease`, owned by the Node (so it goes when the Node goes).
pub fn lease_object(
    node: &str,
    node_uid: Option<&str>,
    duration_seconds: u32,
    now: Timestamp,
) -> Value {
    let mut lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": node, "namespace": LEASE_NAMESPACE },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": k8s_micro_time(now),
        },
    });
    if let Some(uid) = node_uid {
        lease["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "v1", "kind": "Node", "name": node, "uid": uid,
        }]);
    }
    lease
}

/// A merge patch renewing the lease.
pub fn lease_renewal(node: &str, duration_seconds: u32, now: Timestamp) -> Value {
    json!({ "spec": {
        "holderIdentity": node,
        "leaseDurationSeconds": duration_seconds,
        "renewTime": k8s_micro_time(now),
    }})
}

/// When the pod's PodScheduled condition turned True, if it says.
pub fn scheduled_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// The containers of a pod as the workload layer sees them.
pub fn container_specs(pod: &Pod) -> Vec<ContainerSpec> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .map(|c| ContainerSpec {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            ports: c
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some(PortSpec {
                        name: p.name.clone(),
                        // Ports outside 1..=65535 are invalid; the apiserver should have refused them.
                        port: u16::try_from(p.container_port).ok().filter(|p| *p != 0)?,
                        protocol: PortProtocol::parse(p.protocol.as_deref()),
                    })
                })
                .collect(),
            argv: c
                .command
                .iter()
                .flatten()
                .chain(c.args.iter().flatten())
                .cloned()
                .collect(),
        })
        .collect()
}

/// How starting one container went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerOutcome {
    /// Serving since the given time.
    Running {
        /// The container's name.
        name: String,
        /// Its image.
        image: String,
    },
    /// Not running: a kubelet-style waiting reason (`ImagePullBackOff`, `CreateContainerError`).
    Waiting {
        /// The container's name.
        name: String,
        /// Its image.
        image: String,
        /// The waiting reason.
        reason: String,
        /// The human-readable cause.
        message: String,
    },
}

impl ContainerOutcome {
    fn name(&self) -> &str {
        match self {
            Self::Running { name, .. } | Self::Waiting { name, .. } => name,
        }
    }
}

/// Facts of a started pod that go into its status.
#[derive(Clone, Debug)]
pub struct StartedPod<'a> {
    /// metadata.uid (for containerIDs).
    pub uid: &'a str,
    /// The pod's IP.
    pub pod_ip: IpAddr,
    /// The node's IP.
    pub host_ip: IpAddr,
    /// When the agent started it.
    pub started_at: Timestamp,
    /// When the scheduler bound the pod (its PodScheduled condition), kept as it was: a merge
    /// patch replaces the whole conditions list.
    pub scheduled_at: Option<Timestamp>,
    /// One outcome per container, in spec order.
    pub containers: &'a [ContainerOutcome],
}

/// The status patch after starting a pod: Running (all containers up) or Pending (some waiting), the
/// IPs, the conditions and a containerStatus per container.
pub fn pod_started_status(started: &StartedPod<'_>, now: Timestamp) -> Value {
    let now_s = k8s_time(now);
    let started_s = k8s_time(started.started_at);
    let not_ready: Vec<&str> = started
        .containers
        .iter()
        .filter(|c| matches!(c, ContainerOutcome::Waiting { .. }))
        .map(ContainerOutcome::name)
        .collect();
    let all_ready = not_ready.is_empty();
    let statuses: Vec<Value> = started
        .containers
        .iter()
        .map(|c| match c {
            ContainerOutcome::Running { name, image } => json!({
                "name": name, "image": image, "imageID": image_id(image),
                "containerID": container_id(started.uid, name),
                "ready": true, "started": true, "restartCount": 0,
                "state": { "running": { "startedAt": started_s } },
            }),
            ContainerOutcome::Waiting {
                name,
                image,
                reason,
                message,
            } => json!({
                "name": name, "image": image, "imageID": "",
                "ready": false, "started": false, "restartCount": 0,
                "state": { "waiting": { "reason": reason, "message": message } },
            }),
        })
        .collect();
    let ready_condition = |kind: &str| {
        if all_ready {
            json!({ "type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": now_s })
        } else {
            json!({
                "type": kind, "status": "False", "lastProbeTime": null, "lastTransitionTime": now_s,
                "reason": "ContainersNotReady",
                "message": format!("containers with unready status: [{}]", not_ready.join(" ")),
            })
        }
    };
    let pod_ip = started.pod_ip.to_string();
    let host_ip = started.host_ip.to_string();
    json!({ "status": {
        "phase": if all_ready { "Running" } else { "Pending" },
        "podIP": pod_ip, "podIPs": [{ "ip": pod_ip }],
        "hostIP": host_ip, "hostIPs": [{ "ip": host_ip }],
        "startTime": started_s,
        "conditions": [
            { "type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null, "lastTransitionTime": started_s },
            { "type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": started_s },
            ready_condition("Ready"),
            ready_condition("ContainersReady"),
            { "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": scheduled_time(started) },
        ],
        "containerStatuses": statuses,
    }})
}

fn scheduled_time(started: &StartedPod<'_>) -> String {
    // Without the scheduler's own time, the start time is the closest fact.
    k8s_time(started.scheduled_at.unwrap_or(started.started_at))
}

/// The status patch when a pod is being deleted: Ready and ContainersReady turn False (so endpoint
/// controllers stop sending new traffic), other conditions are kept as they were, and every
/// container is reported not ready.
pub fn pod_terminating_status(pod: &Pod, now: Timestamp) -> Value {
    let now_s = k8s_time(now);
    let status = pod.status.as_ref();
    let mut conditions: Vec<Value> = status
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| c.type_ != "Ready" && c.type_ != "ContainersReady")
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default();
    for kind in ["Ready", "ContainersReady"] {
        conditions.push(json!({
            "type": kind, "status": "False", "lastProbeTime": null, "lastTransitionTime": now_s,
            "reason": "PodTerminating", "message": "the pod is being deleted",
        }));
    }
    let statuses: Vec<Value> = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| {
            cs.iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .map(|mut c| {
                    c["ready"] = Value::Bool(false);
                    c
                })
                .collect()
        })
        .unwrap_or_default();
    let mut patch = json!({ "status": { "conditions": conditions } });
    if !statuses.is_empty() {
        patch["status"]["containerStatuses"] = Value::Array(statuses);
    }
    patch
}

/// The status patch that puts Ready and ContainersReady back to True, when the pod's object says
/// otherwise although its containers run here and are ready; `None` when it already says True.
/// This is the kubelet's status manager: the node's own view of a running pod is the truth, so when
/// the node lifecycle controller marked the pod not ready while the node was unreachable (or its
/// mark landed after the node came back and reported), the node reports again, and the endpoint
/// controllers take the pod back. Other conditions are kept as they are.
pub fn pod_ready_again_status(pod: &Pod, now: Timestamp) -> Option<Value> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    if ready.status == "True" {
        return None;
    }
    let now_s = k8s_time(now);
    let conditions: Vec<Value> = conditions
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .map(|mut c| {
            if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                c = json!({ "type": c["type"], "status": "True", "lastProbeTime": null, "lastTransitionTime": now_s });
            }
            c
        })
        .collect();
    Some(json!({ "status": { "conditions": conditions } }))
}

/// The status patch when a pod cannot run here at all (e.g. its IP range is exhausted).
pub fn pod_failed_to_start_status(
    reason: &str,
    message: &str,
    host_ip: IpAddr,
    now: Timestamp,
) -> Value {
    let now_s = k8s_time(now);
    json!({ "status": {
        "phase": "Pending",
        "hostIP": host_ip.to_string(), "hostIPs": [{ "ip": host_ip.to_string() }],
        "conditions": [
            { "type": "Ready", "status": "False", "lastProbeTime": null, "lastTransitionTime": now_s, "reason": reason, "message": message },
            { "type": "ContainersReady", "status": "False", "lastProbeTime": null, "lastTransitionTime": now_s, "reason": reason, "message": message },
            { "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_s },
        ],
    }})
}

fn image_id(image: &str) -> String {
    format!("proxylab://{}", crate::workload::image_base_name(image))
}

fn container_id(uid: &str, name: &str) -> String {
    format!("proxylab://{uid}/{name}")
}

/// What an Event is about and says.
#[derive(Clone, Debug)]
pub struct EventFacts<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's name.
    pub pod: &'a str,
    /// The pod's uid.
    pub uid: &'a str,
    /// The container, when the event is about one (becomes `involvedObject.fieldPath`).
    pub container: Option<&'a str>,
    /// `Normal` or `Warning`.
    pub kind: &'a str,
    /// The machine-readable reason (`Started`, `Killing`, `Failed`).
    pub reason: &'a str,
    /// The human-readable message.
    pub message: &'a str,
    /// The reporting node.
    pub node: &'a str,
}

/// A core/v1 Event as a kubelet reports it (`kubectl describe pod` and `kubectl get events` show
/// these). `seq` makes names unique among events created in the same nanosecond.
pub fn pod_event(facts: &EventFacts<'_>, now: Timestamp, seq: u64) -> Value {
    let t = k8s_time(now);
    let mut involved = json!({
        "apiVersion": "v1", "kind": "Pod",
        "namespace": facts.namespace, "name": facts.pod, "uid": facts.uid,
    });
    if let Some(container) = facts.container {
        involved["fieldPath"] = json!(format!("spec.containers{{{container}}}"));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": format!("{}.{:x}{:x}", facts.pod, now.as_nanosecond(), seq),
            "namespace": facts.namespace,
        },
        "involvedObject": involved,
        "reason": facts.reason,
        "message": facts.message,
        "type": facts.kind,
        "source": { "component": "kubelet", "host": facts.node },
        "reportingComponent": "kubelet",
        "reportingInstance": facts.node,
        "firstTimestamp": t,
        "lastTimestamp": t,
        "eventTime": null,
        "count": 1,
    })
}

/// The PodList the kubelet API's `/pods` answers with.
pub fn pod_list(pods: impl IntoIterator<Item = Pod>) -> Value {
    let items: Vec<Value> = pods
        .into_iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect();
    json!({ "kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items })
}

/// Parses `--node-labels` entries (`key=value`, comma-separated on the command line).
pub fn parse_labels(entries: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for entry in entries
        .iter()
        .flat_map(|e| e.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| format!("label {entry:?} is not key=value"))?;
        if key.is_empty() || key.len() > 316 || value.len() > 63 {
            return Err(format!(
                "label {entry:?} has an empty or overlong key or value"
            ));
        }
        let ok = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        };
        if !ok(key) || !ok(value) || value.contains('/') {
            return Err(format!(
                "label {entry:?} has characters Kubernetes does not allow"
            ));
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NodeFacts {
        let mut f = NodeFacts::local(
            "node-1",
            "127.0.20.1".parse().expect("ip"),
            10250,
            "127.0.30.0/25".parse().expect("cidr"),
            110,
        );
        f.labels
            .insert("node-role.kubernetes.io/worker".into(), "".into());
        f
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn time_formats() {
        let t = ts("2026-11-28T10:10:11.123456789Z");
        assert_eq!(k8s_time(t), "2026-11-28T10:10:11Z");
        assert_eq!(k8s_micro_time(t), "2026-11-28T10:10:11.123456Z");
        assert_eq!(
            k8s_micro_time(ts("2026-11-28T10:10:11Z")),
            "2026-11-28T10:10:11.000000Z"
        );
    }

    #[test]
    fn node_object_has_what_a_kubelet_registers() {
        let f = facts();
        let node = node_object(&f, ts("2026-01-01T00:00:10Z"), ts("2026-01-01T00:00:00Z"));
        assert_eq!(node["metadata"]["name"], "node-1");
        assert_eq!(
            node["metadata"]["labels"]["kubernetes.io/hostname"],
            "node-1"
        );
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
        assert_eq!(
            node["metadata"]["labels"]["node-role.kubernetes.io/worker"],
            ""
        );
        assert_eq!(node["spec"]["podCIDR"], "127.0.30.0/25");
        assert_eq!(node["spec"]["podCIDRs"][0], "127.0.30.0/25");
        let status = &node["status"];
        assert_eq!(
            status["addresses"][0],
            json!({"type": "InternalIP", "address": "127.0.20.1"})
        );
        assert_eq!(
            status["addresses"][1],
            json!({"type": "Hostname", "address": "node-1"})
        );
        assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(status["capacity"]["pods"], "110");
        assert_eq!(status["allocatable"]["pods"], "110");
        assert!(
            status["capacity"]["memory"]
                .as_str()
                .expect("memory")
                .ends_with("Ki")
        );
        assert_eq!(status["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        assert_eq!(
            status["nodeInfo"]["containerRuntimeVersion"],
            "proxylab://0.1"
        );
        assert_eq!(status["nodeInfo"]["operatingSystem"], "linux");
        let ready = status["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Ready")
            .expect("Ready");
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["lastHeartbeatTime"], "2026-01-01T00:00:10Z");
        assert_eq!(ready["lastTransitionTime"], "2026-01-01T00:00:00Z");
        // It must deserialize as a real Node.
        let typed: k8s_openapi::api::core::v1::Node =
            serde_json::from_value(node).expect("typed Node");
        assert_eq!(
            typed
                .status
                .and_then(|s| s.daemon_endpoints)
                .and_then(|d| d.kubelet_endpoint)
                .map(|e| e.port),
            Some(10250)
        );
    }

    #[test]
    fn lease_objects() {
        let lease = lease_object("node-1", Some("uid-1"), 40, ts("2026-01-01T00:00:00.5Z"));
        assert_eq!(lease["metadata"]["namespace"], "kube-node-lease");
        assert_eq!(lease["spec"]["holderIdentity"], "node-1");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(lease["spec"]["renewTime"], "2026-01-01T00:00:00.500000Z");
        assert_eq!(lease["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        let typed: k8s_openapi::api::coordination::v1::Lease =
            serde_json::from_value(lease).expect("typed Lease");
        assert!(typed.spec.and_then(|s| s.renew_time).is_some());
        let renewal = lease_renewal("node-1", 40, ts("2026-01-01T00:00:10Z"));
        assert_eq!(renewal["spec"]["renewTime"], "2026-01-01T00:00:10.000000Z");
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": "node-1", "containers": [
                {"name": "web", "image": "proxylab/echo-http:1", "ports": [
                    {"name": "http", "containerPort": 8080},
                    {"name": "https", "containerPort": 8443, "protocol": "TCP"},
                    {"containerPort": 5353, "protocol": "UDP"}]},
                {"name": "side", "image": "nginx"}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": true, "restartCount": 0}]}
        }))
        .expect("pod")
    }

    #[test]
    fn container_specs_from_pod() {
        assert_eq!(
            scheduled_at(&pod()),
            None,
            "the test pod's condition has no time"
        );
        let specs = container_specs(&pod());
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].image, "proxylab/echo-http:1");
        assert_eq!(
            specs[0].ports[1],
            PortSpec {
                name: Some("https".into()),
                port: 8443,
                protocol: PortProtocol::Tcp
            }
        );
        assert_eq!(specs[0].ports[2].protocol, PortProtocol::Udp);
        assert!(specs[1].ports.is_empty());
    }

    #[test]
    fn a_pod_marked_not_ready_behind_the_nodes_back_is_reported_ready_again() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "uid": "u"},
            "status": {"conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "ContainersReady", "status": "True"}]}
        }))
        .unwrap();
        let patch = pod_ready_again_status(&pod, Timestamp::UNIX_EPOCH).expect("a patch");
        let conds = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 3);
        assert_eq!(conds[0]["type"], "Initialized");
        assert_eq!(conds[1]["type"], "Ready");
        assert_eq!(conds[1]["status"], "True");
        assert_eq!(conds[1]["lastTransitionTime"], "1970-01-01T00:00:00Z");
        assert_eq!(conds[2]["status"], "True");
        let ready: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        assert_eq!(pod_ready_again_status(&ready, Timestamp::UNIX_EPOCH), None);
    }

    #[test]
    fn started_status_running_and_waiting() {
        let running = [ContainerOutcome::Running {
            name: "web".into(),
            image: "proxylab/echo-http:1".into(),
        }];
        let started = StartedPod {
            uid: "u1",
            pod_ip: "127.0.30.2".parse().expect("ip"),
            host_ip: "127.0.20.1".parse().expect("ip"),
            started_at: ts("2026-01-01T00:00:00Z"),
            scheduled_at: Some(ts("2025-12-31T23:59:59Z")),
            containers: &running,
        };
        let patch = pod_started_status(&started, ts("2026-01-01T00:00:01Z"));
        let s = &patch["status"];
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "127.0.30.2");
        assert_eq!(s["podIPs"], json!([{"ip": "127.0.30.2"}]));
        assert_eq!(s["hostIPs"], json!([{"ip": "127.0.20.1"}]));
        assert_eq!(s["startTime"], "2026-01-01T00:00:00Z");
        let scheduled = s["conditions"]
            .as_array()
            .expect("conds")
            .iter()
            .find(|c| c["type"] == "PodScheduled")
            .expect("kept");
        assert_eq!(scheduled["lastTransitionTime"], "2025-12-31T23:59:59Z");
        for kind in ["Initialized", "Ready", "ContainersReady", "PodScheduled"] {
            let c = s["conditions"]
                .as_array()
                .expect("conds")
                .iter()
                .find(|c| c["type"] == kind)
                .expect(kind);
            assert_eq!(c["status"], "True", "{kind}");
        }
        let cs = &s["containerStatuses"][0];
        assert_eq!(cs["ready"], true);
        assert_eq!(cs["started"], true);
        assert_eq!(cs["restartCount"], 0);
        assert_eq!(cs["containerID"], "proxylab://u1/web");
        assert_eq!(cs["imageID"], "proxylab://echo-http");
        assert_eq!(cs["state"]["running"]["startedAt"], "2026-01-01T00:00:00Z");
        let _: k8s_openapi::api::core::v1::PodStatus =
            serde_json::from_value(s.clone()).expect("typed status");

        let mixed = [
            running[0].clone(),
            ContainerOutcome::Waiting {
                name: "side".into(),
                image: "nginx".into(),
                reason: "ImagePullBackOff".into(),
                message: "not a proxylab workload".into(),
            },
        ];
        let patch = pod_started_status(
            &StartedPod {
                containers: &mixed,
                ..started
            },
            ts("2026-01-01T00:00:01Z"),
        );
        let s = &patch["status"];
        assert_eq!(s["phase"], "Pending");
        let ready = s["conditions"]
            .as_array()
            .expect("conds")
            .iter()
            .find(|c| c["type"] == "Ready")
            .expect("Ready");
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["message"], "containers with unready status: [side]");
        assert_eq!(
            s["containerStatuses"][1]["state"]["waiting"]["reason"],
            "ImagePullBackOff"
        );
        assert_eq!(s["containerStatuses"][1]["ready"], false);
    }

    #[test]
    fn terminating_status_turns_ready_false_and_keeps_the_rest() {
        let patch = pod_terminating_status(&pod(), ts("2026-01-01T00:01:00Z"));
        let conds = patch["status"]["conditions"].as_array().expect("conds");
        let get = |kind: &str| conds.iter().find(|c| c["type"] == kind).cloned();
        assert_eq!(get("PodScheduled").expect("kept")["status"], "True");
        assert_eq!(get("Ready").expect("ready")["status"], "False");
        assert_eq!(get("ContainersReady").expect("cr")["status"], "False");
        assert_eq!(conds.iter().filter(|c| c["type"] == "Ready").count(), 1);
        assert_eq!(patch["status"]["containerStatuses"][0]["ready"], false);
    }

    #[test]
    fn events() {
        let facts = EventFacts {
            namespace: "default",
            pod: "web-1",
            uid: "u1",
            container: Some("web"),
            kind: "Normal",
            reason: "Started",
            message: "Started container web",
            node: "node-1",
        };
        let a = pod_event(&facts, ts("2026-01-01T00:00:00Z"), 1);
        let b = pod_event(&facts, ts("2026-01-01T00:00:00Z"), 2);
        assert_ne!(a["metadata"]["name"], b["metadata"]["name"]);
        assert_eq!(a["involvedObject"]["fieldPath"], "spec.containers{web}");
        assert_eq!(a["source"]["host"], "node-1");
        let typed: k8s_openapi::api::core::v1::Event =
            serde_json::from_value(a).expect("typed Event");
        assert_eq!(typed.reason.as_deref(), Some("Started"));
    }

    #[test]
    fn labels_parse() {
        let l = parse_labels(&["a=b,node-role.kubernetes.io/edge=".into(), "zone=z1".into()])
            .expect("labels");
        assert_eq!(l["a"], "b");
        assert_eq!(l["node-role.kubernetes.io/edge"], "");
        assert_eq!(l["zone"], "z1");
        assert!(parse_labels(&["novalue".into()]).is_err());
        assert!(parse_labels(&["a=b c".into()]).is_err());
        assert!(parse_labels(&["=x".into()]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn label_parsing_never_panics(s in ".*") {
            let _ = parse_labels(&[s]);
        }

        #[test]
        fn image_names_never_panic(s in ".*") {
            let base = crate::workload::image_base_name(&s);
            proptest::prop_assert!(!base.contains('/') && !base.contains(':') && !base.contains('@'));
        }
    }

    #[test]
    fn host_facts_parsers() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       16318360 kB\nMemFree: 1 kB\n"),
            Some(16318360)
        );
        assert_eq!(parse_meminfo_total("garbage"), None);
        assert_eq!(
            parse_os_release_pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 13\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 13")
        );
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }
}
