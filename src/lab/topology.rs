//! The lab topology: one `Lab` document saying which machines exist and where, followed by ordinary
//! Kubernetes objects that `lab up` creates through the apiserver.
//!
//! Errors name the file, the document (1-based, with its kind and name) and the field, because a
//! topology file is written by hand and the user must be able to find the mistake from one line.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use ipnet::IpNet;
use serde_json::Value;

/// The built-in topology (`lab/topology.yaml` in the repository).
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../lab/topology.yaml");

/// A bad topology file, reported as one line.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {location}{field}{message}")]
pub struct TopologyError {
    pub file: String,
    /// `document N (Kind/name): ` or empty for whole-file errors.
    pub location: String,
    /// `field F: ` or empty.
    pub field: String,
    pub message: String,
}

/// One node of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub address: IpAddr,
    pub pod_cidr: IpNet,
}

/// The `Lab` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    pub apiservers: Vec<SocketAddr>,
    pub auth_proxy: SocketAddr,
    pub service_cluster_ip_range: IpNet,
    pub service_node_port_range: (u16, u16),
    pub load_balancer_ip_range: IpNet,
    pub nodes: Vec<NodeSpec>,
}

/// A parsed topology: the lab and the objects to create, in file order.
#[derive(Debug, Clone)]
pub struct Topology {
    pub lab: LabSpec,
    pub objects: Vec<Value>,
}

struct Ctx<'a> {
    file: &'a str,
    location: String,
}

impl Ctx<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> TopologyError {
        TopologyError {
            file: self.file.to_owned(),
            location: self.location.clone(),
            field: if field.is_empty() {
                String::new()
            } else {
                format!("field {field}: ")
            },
            message: message.into(),
        }
    }

    fn str_at<'v>(&self, v: &'v Value, field: &str) -> Result<&'v str, TopologyError> {
        match lookup(v, field) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => {
                Err(self.err(field, format!("expected a string, got {}", kind_of(other))))
            }
            None => Err(self.err(field, "required")),
        }
    }

    fn parse_at<T: std::str::FromStr>(
        &self,
        v: &Value,
        field: &str,
        what: &str,
    ) -> Result<T, TopologyError> {
        let s = self.str_at(v, field)?;
        s.parse()
            .map_err(|_| self.err(field, format!("invalid {what} {s:?}")))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// `a.b[2].c` lookups.
fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = v;
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        cur = cur.get(key)?;
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// Reads a topology file (or the default when `path` is `None`).
pub fn load(path: Option<&Path>) -> Result<Topology, TopologyError> {
    match path {
        None => parse("<built-in topology>", DEFAULT_TOPOLOGY),
        Some(p) => {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| TopologyError {
                file: name.clone(),
                location: String::new(),
                field: String::new(),
                message: format!("cannot read: {e}"),
            })?;
            parse(&name, &text)
        }
    }
}

/// Parses topology text; `file` is only used in messages.
pub fn parse(file: &str, text: &str) -> Result<Topology, TopologyError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| TopologyError {
        file: file.to_owned(),
        location: String::new(),
        field: String::new(),
        message: format!(
            "invalid YAML: {}",
            e.to_string().lines().next().unwrap_or("")
        ),
    })?;
    let docs: Vec<(usize, Value)> = docs
        .into_iter()
        .enumerate()
        .filter(|(_, d)| !d.is_null())
        .map(|(i, d)| (i + 1, d))
        .collect();
    let mut lab = None;
    let mut objects = Vec::new();
    for (n, doc) in docs {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("?");
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let ctx = Ctx {
            file,
            location: format!("document {n} ({kind}/{name}): "),
        };
        if !doc.is_object() {
            return Err(ctx.err("", format!("expected a mapping, got {}", kind_of(&doc))));
        }
        ctx.str_at(&doc, "apiVersion")?;
        ctx.str_at(&doc, "kind")?;
        if kind == "Lab" {
            if lab.is_some() {
                return Err(ctx.err("kind", "a second Lab document; there must be exactly one"));
            }
            lab = Some(parse_lab(&ctx, &doc)?);
        } else {
            ctx.str_at(&doc, "metadata.name")?;
            objects.push(doc);
        }
    }
    let lab = lab.ok_or_else(|| TopologyError {
        file: file.to_owned(),
        location: String::new(),
        field: String::new(),
        message: "no Lab document (apiVersion: lab.proxylab.dev/v1alpha1, kind: Lab)".into(),
    })?;
    Ok(Topology { lab, objects })
}

fn parse_lab(ctx: &Ctx<'_>, doc: &Value) -> Result<LabSpec, TopologyError> {
    let api_version = ctx.str_at(doc, "apiVersion")?;
    if api_version != "lab.proxylab.dev/v1alpha1" {
        return Err(ctx.err(
            "apiVersion",
            format!("unsupported {api_version:?}: expected lab.proxylab.dev/v1alpha1"),
        ));
    }
    let spec = lookup(doc, "spec").ok_or_else(|| ctx.err("spec", "required"))?;
    let list = |field: &str| -> Result<&Vec<Value>, TopologyError> {
        match spec.get(field) {
            Some(Value::Array(a)) if !a.is_empty() => Ok(a),
            Some(Value::Array(_)) => Err(ctx.err(&format!("spec.{field}"), "must not be empty")),
            Some(other) => Err(ctx.err(
                &format!("spec.{field}"),
                format!("expected a list, got {}", kind_of(other)),
            )),
            None => Err(ctx.err(&format!("spec.{field}"), "required")),
        }
    };
    let mut apiservers = Vec::new();
    for (i, _) in list("apiservers")?.iter().enumerate() {
        apiservers.push(ctx.parse_at::<SocketAddr>(
            doc,
            &format!("spec.apiservers[{i}]"),
            "address (want IP:PORT)",
        )?);
    }
    let auth_proxy = ctx.parse_at(doc, "spec.authProxy", "address (want IP:PORT)")?;
    let service_cluster_ip_range = ctx.parse_at(doc, "spec.serviceClusterIPRange", "CIDR")?;
    let load_balancer_ip_range = ctx.parse_at(doc, "spec.loadBalancerIPRange", "CIDR")?;
    let range = ctx.str_at(doc, "spec.serviceNodePortRange")?;
    let service_node_port_range = range
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        .filter(|(a, b)| a <= b && *a > 0)
        .ok_or_else(|| {
            ctx.err(
                "spec.serviceNodePortRange",
                format!("invalid port range {range:?} (want LOW-HIGH, e.g. 30000-32767)"),
            )
        })?;
    let mut nodes: Vec<NodeSpec> = Vec::new();
    for (i, _) in list("nodes")?.iter().enumerate() {
        let f = |s: &str| format!("spec.nodes[{i}].{s}");
        let name = ctx.str_at(doc, &f("name"))?.to_owned();
        if name.is_empty()
            || name.len() > 63
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(ctx.err(&f("name"), format!("invalid node name {name:?} (DNS-1123)")));
        }
        if nodes.iter().any(|n| n.name == name) {
            return Err(ctx.err(&f("name"), format!("duplicate node name {name:?}")));
        }
        let address: IpAddr = ctx.parse_at(doc, &f("address"), "IP address")?;
        let pod_cidr: IpNet = ctx.parse_at(doc, &f("podCIDR"), "CIDR")?;
        if let Some(other) = nodes.iter().find(|n| {
            n.pod_cidr.contains(&pod_cidr.network()) || pod_cidr.contains(&n.pod_cidr.network())
        }) {
            return Err(ctx.err(
                &f("podCIDR"),
                format!(
                    "{pod_cidr} overlaps node {}'s {}",
                    other.name, other.pod_cidr
                ),
            ));
        }
        nodes.push(NodeSpec {
            name,
            address,
            pod_cidr,
        });
    }
    Ok(LabSpec {
        apiservers,
        auth_proxy,
        service_cluster_ip_range,
        service_node_port_range,
        load_balancer_ip_range,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_topology_parses() {
        let t = parse("default", DEFAULT_TOPOLOGY).unwrap();
        assert_eq!(t.lab.apiservers.len(), 3);
        assert_eq!(t.lab.nodes.len(), 2);
        assert!(
            t.objects
                .iter()
                .any(|o| o["kind"] == "Service" && o["metadata"]["name"] == "web")
        );
    }

    fn err(text: &str) -> String {
        parse("t.yaml", text).unwrap_err().to_string()
    }

    const LAB: &str = "apiVersion: lab.proxylab.dev/v1alpha1\nkind: Lab\nmetadata: {name: x}\nspec:\n  apiservers: [127.0.10.1:6443]\n  authProxy: 127.0.0.1:8001\n  serviceClusterIPRange: 127.0.40.0/24\n  serviceNodePortRange: 30000-32767\n  loadBalancerIPRange: 127.0.50.0/24\n  nodes:\n    - {name: node-1, address: 127.0.20.1, podCIDR: 127.0.30.0/25}\n";

    #[test]
    fn errors_name_file_document_and_field() {
        assert_eq!(
            err(&LAB.replace("127.0.20.1", "not-an-ip")),
            "t.yaml: document 1 (Lab/x): field spec.nodes[0].address: invalid IP address \"not-an-ip\""
        );
        assert_eq!(
            err(&LAB.replace("30000-32767", "32767-30000")),
            "t.yaml: document 1 (Lab/x): field spec.serviceNodePortRange: invalid port range \"32767-30000\" (want LOW-HIGH, e.g. 30000-32767)"
        );
        let two = format!("{LAB}---\napiVersion: v1\nkind: Pod\nmetadata: {{}}\n");
        assert_eq!(
            err(&two),
            "t.yaml: document 2 (Pod/?): field metadata.name: required"
        );
        assert!(err("a: [").starts_with("t.yaml: invalid YAML"));
        assert_eq!(
            err("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"),
            "t.yaml: no Lab document (apiVersion: lab.proxylab.dev/v1alpha1, kind: Lab)"
        );
        assert!(
            err(&LAB.replace("apiservers: [127.0.10.1:6443]", "apiservers: []"))
                .contains("field spec.apiservers: must not be empty")
        );
    }
}
