//! Conversion from Kubernetes JSON (`serde_json::Value`) to the cluster model.
//!
//! The input is the object exactly as the API serves it (or `kubectl get -o yaml` prints it, once parsed
//! to a `Value`). Fields the model does not use are ignored; fields it uses are checked, and an error
//! names the object and the field path (`spec.ports[1].port`), so a file loader can point at the line.
//! Defaults follow the API server's defaulting (protocol TCP, conditions ready/serving when absent, …).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use super::*;

/// A field of a Kubernetes object that the model cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {object}: {field}: {message}")]
pub struct ConvertError {
    /// `Service`, `EndpointSlice`, …
    pub kind: String,
    /// `namespace/name` (or just the name), as far as it could be read.
    pub object: String,
    /// JSON path of the offending field, e.g. `spec.ports[0].port`.
    pub field: String,
    pub message: String,
}

struct Ctx {
    kind: &'static str,
    object: String,
}

impl Ctx {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConvertError {
        ConvertError {
            kind: self.kind.into(),
            object: self.object.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn str_opt<'a>(
        &self,
        v: &'a Value,
        key: &str,
        path: &str,
    ) -> Result<Option<&'a str>, ConvertError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(join(path, key), "expected a string")),
        }
    }

    fn array<'a>(&self, v: &'a Value, key: &str, path: &str) -> Result<&'a [Value], ConvertError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(self.err(join(path, key), "expected a list")),
        }
    }

    fn bool_opt(&self, v: &Value, key: &str, path: &str) -> Result<Option<bool>, ConvertError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(join(path, key), "expected true or false")),
        }
    }

    fn port(
        &self,
        v: &Value,
        key: &str,
        path: &str,
        required: bool,
    ) -> Result<Option<u16>, ConvertError> {
        match v.get(key) {
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => {
                Err(self.err(join(path, key), "missing (a port number 1-65535)"))
            }
            Some(Value::Number(n)) => match n.as_u64() {
                Some(p @ 1..=65535) => Ok(Some(p as u16)),
                Some(0) if !required => Ok(None),
                _ => Err(self.err(join(path, key), format!("{n} is not a port number 1-65535"))),
            },
            Some(other) => Err(self.err(
                join(path, key),
                format!("expected a port number 1-65535, got {other}"),
            )),
        }
    }

    fn ip(&self, s: &str, path: &str) -> Result<IpAddr, ConvertError> {
        s.parse()
            .map_err(|_| self.err(path, format!("{s:?} is not an IP address")))
    }

    fn protocol(&self, v: &Value, path: &str) -> Result<Protocol, ConvertError> {
        match self.str_opt(v, "protocol", path)? {
            None | Some("TCP") => Ok(Protocol::Tcp),
            Some("UDP") => Ok(Protocol::Udp),
            Some("SCTP") => Ok(Protocol::Sctp),
            Some(other) => Err(self.err(
                join(path, "protocol"),
                format!("{other:?} is not TCP, UDP or SCTP"),
            )),
        }
    }

    fn string_map(
        &self,
        v: &Value,
        key: &str,
        path: &str,
    ) -> Result<BTreeMap<String, String>, ConvertError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, val)| match val {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(self.err(format!("{}.{k}", join(path, key)), "expected a string")),
                })
                .collect(),
            Some(_) => Err(self.err(join(path, key), "expected a map of strings")),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Converts one Kubernetes object. Returns `Ok(None)` for kinds the model does not hold (a manifest file
/// may contain Deployments; they are not an error). The kind is taken from `kind`.
pub fn from_k8s(obj: &Value) -> Result<Option<ClusterObject>, ConvertError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    Ok(Some(match kind {
        "Service" => ClusterObject::Service(service_from_k8s(obj)?),
        "EndpointSlice" => ClusterObject::EndpointSlice(endpoint_slice_from_k8s(obj)?),
        "Node" => ClusterObject::Node(node_from_k8s(obj)?),
        "Pod" => ClusterObject::Pod(pod_from_k8s(obj)?),
        _ => return Ok(None),
    }))
}

fn meta(
    obj: &Value,
    kind: &'static str,
    namespaced: bool,
) -> Result<(Ctx, String, String), ConvertError> {
    let md = obj.get("metadata").unwrap_or(&Value::Null);
    let name = md
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let namespace = if namespaced {
        md.get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string()
    } else {
        String::new()
    };
    let object = if namespaced {
        format!("{namespace}/{name}")
    } else {
        name.clone()
    };
    let ctx = Ctx { kind, object };
    if name.is_empty() {
        return Err(ctx.err("metadata.name", "missing"));
    }
    Ok((ctx, namespace, name))
}

/// Converts a `v1/Service`.
pub fn service_from_k8s(obj: &Value) -> Result<Service, ConvertError> {
    let (c, namespace, name) = meta(obj, "Service", true)?;
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let type_ = match c.str_opt(spec, "type", "spec")? {
        None | Some("ClusterIP") => ServiceType::ClusterIP,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(other) => {
            return Err(c.err(
                "spec.type",
                format!("{other:?} is not ClusterIP, NodePort, LoadBalancer or ExternalName"),
            ));
        }
    };
    let mut cluster_ips = Vec::new();
    let ips = c.array(spec, "clusterIPs", "spec")?;
    if ips.is_empty() {
        if let Some(ip) = c.str_opt(spec, "clusterIP", "spec")?
            && !ip.is_empty()
            && ip != "None"
        {
            cluster_ips.push(c.ip(ip, "spec.clusterIP")?);
        }
    } else {
        for (i, ip) in ips.iter().enumerate() {
            match ip.as_str() {
                Some("None") | Some("") => {}
                Some(s) => cluster_ips.push(c.ip(s, &format!("spec.clusterIPs[{i}]"))?),
                None => return Err(c.err(format!("spec.clusterIPs[{i}]"), "expected a string")),
            }
        }
    }
    let mut external_ips = Vec::new();
    for (i, ip) in c.array(spec, "externalIPs", "spec")?.iter().enumerate() {
        let path = format!("spec.externalIPs[{i}]");
        let s = ip
            .as_str()
            .ok_or_else(|| c.err(&path, "expected a string"))?;
        external_ips.push(c.ip(s, &path)?);
    }
    let mut ports = Vec::new();
    for (i, p) in c.array(spec, "ports", "spec")?.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let port = c.port(p, "port", &path, true)?.unwrap_or_default();
        let target_port = match p.get("targetPort") {
            None | Some(Value::Null) => TargetPort::Number(port),
            Some(Value::String(s)) => match s.parse::<u16>() {
                Ok(n) if n > 0 => TargetPort::Number(n),
                _ => TargetPort::Name(s.clone()),
            },
            Some(_) => TargetPort::Number(c.port(p, "targetPort", &path, true)?.unwrap_or(port)),
        };
        ports.push(ServicePort {
            name: c.str_opt(p, "name", &path)?.unwrap_or("").to_string(),
            protocol: c.protocol(p, &path)?,
            port,
            target_port,
            node_port: c.port(p, "nodePort", &path, false)?,
        });
    }
    let session_affinity = match c.str_opt(spec, "sessionAffinity", "spec")? {
        None | Some("None") => SessionAffinity::None,
        Some("ClientIP") => {
            let path = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
            let t = spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds");
            let timeout = match t {
                None | Some(Value::Null) => DEFAULT_AFFINITY_TIMEOUT,
                Some(Value::Number(n)) => match n.as_u64() {
                    Some(s @ 1..=86_400) => Duration::from_secs(s),
                    _ => return Err(c.err(path, format!("{n} is not within 1-86400"))),
                },
                Some(_) => return Err(c.err(path, "expected a number of seconds")),
            };
            SessionAffinity::ClientIP { timeout }
        }
        Some(other) => {
            return Err(c.err(
                "spec.sessionAffinity",
                format!("{other:?} is not None or ClientIP"),
            ));
        }
    };
    let policy = |key: &str| -> Result<TrafficPolicy, ConvertError> {
        match c.str_opt(spec, key, "spec")? {
            None | Some("Cluster") => Ok(TrafficPolicy::Cluster),
            Some("Local") => Ok(TrafficPolicy::Local),
            Some(other) => Err(c.err(
                join("spec", key),
                format!("{other:?} is not Cluster or Local"),
            )),
        }
    };
    let external_traffic_policy = policy("externalTrafficPolicy")?;
    let internal_traffic_policy = policy("internalTrafficPolicy")?;
    let mut load_balancer_ingress = Vec::new();
    let status_lb = obj.pointer("/status/loadBalancer").unwrap_or(&Value::Null);
    for (i, ing) in c
        .array(status_lb, "ingress", "status.loadBalancer")?
        .iter()
        .enumerate()
    {
        if let Some(ip) = c.str_opt(ing, "ip", &format!("status.loadBalancer.ingress[{i}]"))? {
            load_balancer_ingress.push(c.ip(ip, &format!("status.loadBalancer.ingress[{i}].ip"))?);
        }
    }
    let mut load_balancer_source_ranges = Vec::new();
    for (i, r) in c
        .array(spec, "loadBalancerSourceRanges", "spec")?
        .iter()
        .enumerate()
    {
        let path = format!("spec.loadBalancerSourceRanges[{i}]");
        let s = r
            .as_str()
            .ok_or_else(|| c.err(&path, "expected a string"))?;
        let net = s
            .trim()
            .parse::<ipnet::IpNet>()
            .or_else(|_| s.trim().parse::<IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| c.err(&path, format!("{s:?} is not a CIDR")))?;
        load_balancer_source_ranges.push(net);
    }
    Ok(Service {
        namespace,
        name,
        type_,
        cluster_ips,
        external_ips,
        ports,
        session_affinity,
        external_traffic_policy,
        internal_traffic_policy,
        health_check_node_port: c.port(spec, "healthCheckNodePort", "spec", false)?,
        load_balancer_ingress,
        load_balancer_source_ranges,
        selector: c.string_map(spec, "selector", "spec")?,
        external_name: c.str_opt(spec, "externalName", "spec")?.map(str::to_string),
    })
}

/// Converts a `discovery.k8s.io/v1/EndpointSlice`.
pub fn endpoint_slice_from_k8s(obj: &Value) -> Result<EndpointSlice, ConvertError> {
    let (c, namespace, name) = meta(obj, "EndpointSlice", true)?;
    let labels = c.string_map(
        obj.get("metadata").unwrap_or(&Value::Null),
        "labels",
        "metadata",
    )?;
    let address_type = c
        .str_opt(obj, "addressType", "")?
        .unwrap_or("IPv4")
        .to_string();
    let mut ports = Vec::new();
    for (i, p) in c.array(obj, "ports", "")?.iter().enumerate() {
        let path = format!("ports[{i}]");
        // A nil port means "all ports" in the API; proxies cannot use such an endpoint, so skip it.
        let Some(port) = c.port(p, "port", &path, false)? else {
            continue;
        };
        ports.push(EndpointPort {
            name: c.str_opt(p, "name", &path)?.unwrap_or("").to_string(),
            protocol: c.protocol(p, &path)?,
            port,
        });
    }
    let mut endpoints = Vec::new();
    for (i, e) in c.array(obj, "endpoints", "")?.iter().enumerate() {
        let path = format!("endpoints[{i}]");
        let mut addresses = Vec::new();
        for (j, a) in c.array(e, "addresses", &path)?.iter().enumerate() {
            let apath = format!("{path}.addresses[{j}]");
            let s = a
                .as_str()
                .ok_or_else(|| c.err(&apath, "expected a string"))?;
            if address_type == "FQDN" {
                continue;
            }
            addresses.push(c.ip(s, &apath)?);
        }
        let cond = e.get("conditions").unwrap_or(&Value::Null);
        let cpath = format!("{path}.conditions");
        let terminating = c.bool_opt(cond, "terminating", &cpath)?.unwrap_or(false);
        let ready = c.bool_opt(cond, "ready", &cpath)?.unwrap_or(true);
        // serving was added later than ready; when absent it equals ready.
        let serving = c.bool_opt(cond, "serving", &cpath)?.unwrap_or(ready);
        let hints = e.get("hints").unwrap_or(&Value::Null);
        let names = |key: &str| -> Vec<String> {
            hints
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|h| h.get("name").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let target_ref = e.get("targetRef").and_then(|t| {
            Some(ObjectRef {
                kind: t.get("kind")?.as_str()?.to_string(),
                namespace: t
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(&namespace)
                    .to_string(),
                name: t.get("name")?.as_str()?.to_string(),
            })
        });
        endpoints.push(Endpoint {
            addresses,
            conditions: EndpointConditions {
                ready,
                serving,
                terminating,
            },
            node_name: c.str_opt(e, "nodeName", &path)?.map(str::to_string),
            zone: c.str_opt(e, "zone", &path)?.map(str::to_string),
            hint_zones: names("forZones"),
            hint_nodes: names("forNodes"),
            target_ref,
        });
    }
    Ok(EndpointSlice {
        namespace,
        name,
        service_name: labels.get("kubernetes.io/service-name").cloned(),
        address_type,
        ports,
        endpoints,
    })
}

/// Converts a `v1/Node`.
pub fn node_from_k8s(obj: &Value) -> Result<Node, ConvertError> {
    let (c, _, name) = meta(obj, "Node", false)?;
    let labels = c.string_map(
        obj.get("metadata").unwrap_or(&Value::Null),
        "labels",
        "metadata",
    )?;
    let status = obj.get("status").unwrap_or(&Value::Null);
    let mut addresses = Vec::new();
    let mut all_addresses = Vec::new();
    for a in c.array(status, "addresses", "status")? {
        let (Some(t), Some(addr)) = (
            a.get("type").and_then(Value::as_str),
            a.get("address").and_then(Value::as_str),
        ) else {
            continue;
        };
        all_addresses.push((t.to_string(), addr.to_string()));
        // Hostname entries are names, not IPs; skip anything that does not parse.
        if let Ok(ip) = addr.parse::<IpAddr>() {
            addresses.push((t.to_string(), ip));
        }
    }
    // The API spells this field `Port` (capital P), unlike every other port field.
    let kubelet_endpoint = status
        .pointer("/daemonEndpoints/kubeletEndpoint")
        .unwrap_or(&Value::Null);
    let kubelet_port = c.port(
        kubelet_endpoint,
        "Port",
        "status.daemonEndpoints.kubeletEndpoint",
        false,
    )?;
    let ready = c.array(status, "conditions", "status")?.iter().any(|cond| {
        cond.get("type").and_then(Value::as_str) == Some("Ready")
            && cond.get("status").and_then(Value::as_str) == Some("True")
    });
    // podCIDRs supersedes podCIDR (dual-stack); an apiserver sets both, older objects the latter.
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut cidrs: Vec<(String, &Value)> = c
        .array(spec, "podCIDRs", "spec")?
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("spec.podCIDRs[{i}]"), v))
        .collect();
    if cidrs.is_empty()
        && let Some(v) = spec.get("podCIDR")
    {
        cidrs.push(("spec.podCIDR".to_string(), v));
    }
    let mut pod_cidrs = Vec::new();
    for (path, v) in cidrs {
        let net = v
            .as_str()
            .and_then(|s| s.trim().parse::<IpNet>().ok())
            .ok_or_else(|| c.err(&path, format!("{v} is not a CIDR")))?;
        pod_cidrs.push(net);
    }
    Ok(Node {
        name,
        pod_cidrs,
        addresses,
        all_addresses,
        kubelet_port,
        ready,
        zone: labels.get("topology.kubernetes.io/zone").cloned(),
        unschedulable: obj
            .pointer("/spec/unschedulable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        labels,
    })
}

/// Converts a `v1/Pod`.
pub fn pod_from_k8s(obj: &Value) -> Result<Pod, ConvertError> {
    let (c, namespace, name) = meta(obj, "Pod", true)?;
    let md = obj.get("metadata").unwrap_or(&Value::Null);
    let status = obj.get("status").unwrap_or(&Value::Null);
    let mut pod_ips = Vec::new();
    for (i, p) in c.array(status, "podIPs", "status")?.iter().enumerate() {
        if let Some(ip) = c.str_opt(p, "ip", &format!("status.podIPs[{i}]"))? {
            pod_ips.push(c.ip(ip, &format!("status.podIPs[{i}].ip"))?);
        }
    }
    if pod_ips.is_empty()
        && let Some(ip) = c.str_opt(status, "podIP", "status")?
        && !ip.is_empty()
    {
        pod_ips.push(c.ip(ip, "status.podIP")?);
    }
    let ready = c.array(status, "conditions", "status")?.iter().any(|cond| {
        cond.get("type").and_then(Value::as_str) == Some("Ready")
            && cond.get("status").and_then(Value::as_str) == Some("True")
    });
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut containers = Vec::new();
    for (i, ct) in c.array(spec, "containers", "spec")?.iter().enumerate() {
        let path = format!("spec.containers[{i}]");
        let mut ports = Vec::new();
        for (j, p) in c.array(ct, "ports", &path)?.iter().enumerate() {
            let ppath = format!("{path}.ports[{j}]");
            let Some(port) = c.port(p, "containerPort", &ppath, true)? else {
                continue;
            };
            ports.push(ContainerPort {
                name: c.str_opt(p, "name", &ppath)?.unwrap_or("").to_string(),
                port,
                protocol: c.protocol(p, &ppath)?,
            });
        }
        containers.push(Container {
            name: c.str_opt(ct, "name", &path)?.unwrap_or("").to_string(),
            ports,
        });
    }
    Ok(Pod {
        namespace,
        name,
        uid: md
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        containers,
        node_name: obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .map(str::to_string),
        pod_ips,
        phase: status
            .get("phase")
            .and_then(Value::as_str)
            .unwrap_or("Pending")
            .to_string(),
        ready,
        terminating: md.get("deletionTimestamp").is_some_and(|v| !v.is_null()),
        labels: c.string_map(md, "labels", "metadata")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_defaults_and_fields() {
        let s = service_from_k8s(&json!({"kind":"Service","metadata":{"name":"dns","namespace":"kube-system"},
            "spec":{"type":"LoadBalancer","clusterIPs":["127.0.40.53"],"externalTrafficPolicy":"Local",
                "healthCheckNodePort":32000,"sessionAffinity":"ClientIP",
                "sessionAffinityConfig":{"clientIP":{"timeoutSeconds":60}},
                "loadBalancerSourceRanges":["10.0.0.0/8"],
                "ports":[{"name":"dns","protocol":"UDP","port":53,"targetPort":"dns","nodePort":30053},
                         {"name":"dns-tcp","port":53,"targetPort":5353}]},
            "status":{"loadBalancer":{"ingress":[{"ip":"127.0.50.1"}]}}}))
        .unwrap();
        assert_eq!(s.type_, ServiceType::LoadBalancer);
        assert_eq!(s.ports[0].protocol, Protocol::Udp);
        assert_eq!(s.ports[0].target_port, TargetPort::Name("dns".into()));
        assert_eq!(s.ports[1].protocol, Protocol::Tcp);
        assert_eq!(s.ports[1].node_port, None);
        assert_eq!(
            s.session_affinity,
            SessionAffinity::ClientIP {
                timeout: Duration::from_secs(60)
            }
        );
        assert_eq!(s.external_traffic_policy, TrafficPolicy::Local);
        assert_eq!(s.health_check_node_port, Some(32000));
        assert_eq!(
            s.load_balancer_ingress,
            vec!["127.0.50.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = service_from_k8s(&json!({"kind":"Service","metadata":{"name":"x"},
            "spec":{"ports":[{"port":80},{"port":"eighty"}]}}))
        .unwrap_err();
        assert_eq!(e.field, "spec.ports[1].port");
        assert_eq!(e.object, "default/x");
        let e = service_from_k8s(
            &json!({"kind":"Service","metadata":{"name":"x"},"spec":{"clusterIP":"1.2.3"}}),
        )
        .unwrap_err();
        assert_eq!(e.field, "spec.clusterIP");
    }

    #[test]
    fn slice_conditions_default_as_the_api_says() {
        let s = endpoint_slice_from_k8s(&json!({"kind":"EndpointSlice","metadata":{"name":"a","namespace":"n",
            "labels":{"kubernetes.io/service-name":"svc"}},"addressType":"IPv4",
            "ports":[{"port":80}],
            "endpoints":[{"addresses":["127.0.30.1"]},
                         {"addresses":["127.0.30.2"],"conditions":{"ready":false,"serving":true,"terminating":true},
                          "hints":{"forZones":[{"name":"z1"}]}}]}))
        .unwrap();
        assert_eq!(s.service_name.as_deref(), Some("svc"));
        assert_eq!(s.endpoints[0].conditions, EndpointConditions::default());
        assert!(s.endpoints[1].conditions.terminating && s.endpoints[1].conditions.serving);
        assert_eq!(s.endpoints[1].hint_zones, vec!["z1".to_string()]);
    }

    #[test]
    fn node_addresses_and_kubelet_port() {
        let n = node_from_k8s(&json!({"kind":"Node","metadata":{"name":"node-1"},
            "status":{"addresses":[{"type":"Hostname","address":"node-1"},
                                   {"type":"InternalIP","address":"127.0.20.1"}],
                      "daemonEndpoints":{"kubeletEndpoint":{"Port":10250}}}}))
        .unwrap();
        assert_eq!(n.kubelet_port, Some(10250));
        assert_eq!(
            n.all_addresses,
            vec![
                ("Hostname".to_string(), "node-1".to_string()),
                ("InternalIP".to_string(), "127.0.20.1".to_string())
            ]
        );
        assert_eq!(n.addresses.len(), 1);
        assert!(n.pod_cidrs.is_empty());
        // podCIDRs wins over podCIDR; either alone is read; a bad one names its field.
        let cidrs = |spec: Value| {
            node_from_k8s(&json!({"kind":"Node","metadata":{"name":"n"},"spec":spec})).map(|n| {
                n.pod_cidrs
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            cidrs(json!({"podCIDR":"127.0.30.0/25","podCIDRs":["127.0.30.0/25","fd00::/64"]}))
                .unwrap(),
            vec!["127.0.30.0/25", "fd00::/64"]
        );
        assert_eq!(
            cidrs(json!({"podCIDR":"127.0.30.128/25"})).unwrap(),
            vec!["127.0.30.128/25"]
        );
        assert_eq!(
            cidrs(json!({"podCIDRs":["127.0.30.0/25","nope"]}))
                .unwrap_err()
                .field,
            "spec.podCIDRs[1]"
        );
        let e = node_from_k8s(&json!({"kind":"Node","metadata":{"name":"n"},
            "status":{"daemonEndpoints":{"kubeletEndpoint":{"Port":"x"}}}}))
        .unwrap_err();
        assert_eq!(e.field, "status.daemonEndpoints.kubeletEndpoint.Port");
    }

    #[test]
    fn pod_containers_and_named_ports() {
        let p = pod_from_k8s(
            &json!({"kind":"Pod","metadata":{"name":"web-1","namespace":"default","uid":"u1"},
            "spec":{"containers":[{"name":"echo","ports":[{"name":"http","containerPort":8080},
                                                          {"containerPort":5353,"protocol":"UDP"}]},
                                  {"name":"side"}]},
            "status":{"podIP":"127.0.30.2"}}),
        )
        .unwrap();
        assert_eq!(p.uid, "u1");
        assert_eq!(p.containers.len(), 2);
        assert_eq!(
            p.containers[0].ports[0],
            ContainerPort {
                name: "http".into(),
                port: 8080,
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(p.containers[0].ports[1].protocol, Protocol::Udp);
        assert!(p.containers[1].ports.is_empty());
        let e = pod_from_k8s(&json!({"kind":"Pod","metadata":{"name":"x"},
            "spec":{"containers":[{"name":"c","ports":[{"containerPort":0}]}]}}))
        .unwrap_err();
        assert_eq!(e.field, "spec.containers[0].ports[0].containerPort");
    }

    #[test]
    fn unknown_kinds_are_skipped() {
        assert_eq!(
            from_k8s(&json!({"kind":"Deployment","metadata":{"name":"x"}})).unwrap(),
            None
        );
    }
}
