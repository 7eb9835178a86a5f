//! The lab topology: one `Lab` document saying which machines exist and where, followed by ordinary
//! Kubernetes objects that `lab up` creates through the apiserver.
//!
//! Everything is checked before anything binds, and a mistake is one line naming the file, the line
//! and the field: `topology.yaml:23: Lab default: spec.nodes[1].address: 10.0.0.2 is outside
//! 127.0.0.0/8 (the lab lives on loopback)`. What is checked:
//!
//! - the `Lab` document's fields: unknown ones are refused (a misspelt `podCidr` must not be ignored);
//! - every address and CIDR lies in `127.0.0.0/8`, so nothing the lab runs, probes or allocates can
//!   dial off this machine, and none is the lab prober's own address (`127.0.0.254`);
//! - no two components share a socket address, no two nodes a name or an address, and the Service,
//!   LoadBalancer and pod ranges do not overlap each other or contain a component's address;
//! - ports are 1-65535; node names are DNS-1123 subdomains;
//! - every object is of a kind the lab apiserver serves, appears once, and passes the apiserver's own
//!   validation (`proxylab_apimachinery::validation`), with a `clusterIP` or `nodePort` it sets inside
//!   the lab's ranges and no address outside 127.0.0.0/8 anywhere in it (no `ExternalName` either).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net};
use proxylab_core::yaml::{Document, parse_documents};
use serde_json::Value;

/// The built-in topology (`lab/topology.yaml` in the repository).
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../lab/topology.yaml");

/// The lab's own readiness prober dials from this address (forwarders mark its hops as probes), so no
/// component may have it.
pub const PROBER_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 254));

/// A bad topology file, reported as one line: `file:line: object: field: message`.
#[derive(Debug, thiserror::Error)]
pub struct TopologyError {
    pub file: String,
    /// 1-based; 0 when the error is about the whole file.
    pub line: usize,
    /// `Lab default`, `Service default/web`, or empty.
    pub object: String,
    /// `spec.nodes[0].address`, or empty.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for TopologyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        f.write_str(": ")?;
        if !self.object.is_empty() {
            write!(f, "{}: ", self.object)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
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
    /// The lab's own admin endpoint (`spec.admin`, default `127.0.0.1:8400`).
    pub admin: SocketAddr,
    /// The HA balancer in front of the apiservers (`spec.haBalancer`, default `127.0.0.1:6443`):
    /// the address every kubeconfig of the lab names.
    pub ha_balancer: SocketAddr,
    pub service_cluster_ip_range: IpNet,
    pub service_node_port_range: (u16, u16),
    pub load_balancer_ip_range: IpNet,
    pub nodes: Vec<NodeSpec>,
}

impl LabSpec {
    /// The auth-proxy's admin endpoint: port 8002 next to it (as the address plan says).
    pub fn auth_proxy_admin(&self) -> SocketAddr {
        SocketAddr::new(self.auth_proxy.ip(), AUTH_PROXY_ADMIN_PORT)
    }

    /// The HA balancer's admin endpoint (`/stats`, hops, metrics): port 8404 next to it, HAProxy's
    /// customary stats port.
    pub fn ha_balancer_admin(&self) -> SocketAddr {
        SocketAddr::new(self.ha_balancer.ip(), HA_BALANCER_ADMIN_PORT)
    }
}

/// Port of the auth-proxy's admin endpoint, on the auth-proxy's address.
pub const AUTH_PROXY_ADMIN_PORT: u16 = 8002;
/// Port of the HA balancer's admin endpoint, on the balancer's address.
pub const HA_BALANCER_ADMIN_PORT: u16 = 8404;
/// Ports every node address serves: the kubelet API, the forwarder's healthz and admin.
pub const KUBELET_PORT: u16 = 10250;
pub const FORWARDER_HEALTHZ_PORT: u16 = 10256;
pub const FORWARDER_ADMIN_PORT: u16 = 10249;

/// A parsed topology: the lab and the objects to create, in file order.
#[derive(Debug, Clone)]
pub struct Topology {
    pub lab: LabSpec,
    pub objects: Vec<Value>,
}

/// Reads a topology file (or the default when `path` is `None`).
pub fn load(path: Option<&Path>) -> Result<Topology, TopologyError> {
    match path {
        None => parse("<built-in topology>", DEFAULT_TOPOLOGY),
        Some(p) => {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| TopologyError {
                file: name.clone(),
                line: 0,
                object: String::new(),
                field: String::new(),
                message: format!("cannot read: {e}"),
            })?;
            parse(&name, &text)
        }
    }
}

/// Errors about one document.
struct Ctx<'a> {
    file: &'a str,
    doc: &'a Document,
    object: String,
}

impl Ctx<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> TopologyError {
        TopologyError {
            file: self.file.to_owned(),
            line: self.doc.line_of(field),
            object: self.object.clone(),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn get(&self, field: &str) -> Option<&Value> {
        lookup(&self.doc.value, field)
    }

    fn str_at(&self, field: &str) -> Result<&str, TopologyError> {
        match self.get(field) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => {
                Err(self.err(field, format!("expected a string, got {}", kind_of(other))))
            }
            None => Err(self.err(field, "required")),
        }
    }

    /// An `IP:PORT` inside 127.0.0.0/8 with a port that is not 0.
    fn socket_at(&self, field: &str) -> Result<SocketAddr, TopologyError> {
        let s = self.str_at(field)?;
        let addr: SocketAddr = s.parse().map_err(|_| {
            self.err(
                field,
                format!("invalid address {s:?} (want IP:PORT with a port 1-65535)"),
            )
        })?;
        if addr.port() == 0 {
            return Err(self.err(
                field,
                format!("port 0 in {s:?}: the lab's components listen on fixed ports (1-65535)"),
            ));
        }
        self.loopback(field, addr.ip())?;
        Ok(addr)
    }

    fn ip_at(&self, field: &str) -> Result<IpAddr, TopologyError> {
        let s = self.str_at(field)?;
        let ip: IpAddr = s
            .parse()
            .map_err(|_| self.err(field, format!("invalid IP address {s:?}")))?;
        self.loopback(field, ip)?;
        Ok(ip)
    }

    fn cidr_at(&self, field: &str) -> Result<IpNet, TopologyError> {
        let s = self.str_at(field)?;
        let net: IpNet = s.parse().map_err(|_| {
            self.err(
                field,
                format!("invalid CIDR {s:?} (want e.g. 127.0.40.0/24)"),
            )
        })?;
        if net.network() != net.addr() {
            return Err(self.err(
                field,
                format!("{s} has host bits set (did you mean {}?)", net.trunc()),
            ));
        }
        if !loopback_net().contains(&net) {
            return Err(self.err(
                field,
                format!("{net} is outside 127.0.0.0/8 (the lab lives on loopback: nothing it allocates may be dialled off this machine)"),
            ));
        }
        if net.prefix_len() > 30 {
            return Err(self.err(field, format!("{net} is too small (at most /30)")));
        }
        if net.contains(&PROBER_ADDRESS) {
            return Err(self.err(
                field,
                format!("{net} contains {PROBER_ADDRESS}, the lab prober's own address"),
            ));
        }
        Ok(net)
    }

    fn loopback(&self, field: &str, ip: IpAddr) -> Result<(), TopologyError> {
        if !loopback_net().contains(&ip) {
            return Err(self.err(
                field,
                format!("{ip} is outside 127.0.0.0/8 (the lab lives on loopback and never dials off this machine)"),
            ));
        }
        if ip == PROBER_ADDRESS {
            return Err(self.err(
                field,
                format!("{ip} is the lab prober's own address; choose another"),
            ));
        }
        Ok(())
    }

    /// Refuses fields of the mapping at `field` that are not in `known`.
    fn only(&self, field: &str, known: &[&str]) -> Result<(), TopologyError> {
        let Some(v) = (if field.is_empty() {
            Some(&self.doc.value)
        } else {
            self.get(field)
        }) else {
            return Ok(());
        };
        let Some(map) = v.as_object() else {
            return Err(self.err(field, format!("expected a mapping, got {}", kind_of(v))));
        };
        for k in map.keys() {
            if !known.contains(&k.as_str()) {
                let path = if field.is_empty() {
                    k.clone()
                } else {
                    format!("{field}.{k}")
                };
                return Err(self.err(
                    &path,
                    format!("unknown field {k:?} (known: {})", known.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn list(&self, field: &str) -> Result<&Vec<Value>, TopologyError> {
        match self.get(field) {
            Some(Value::Array(a)) if !a.is_empty() => Ok(a),
            Some(Value::Array(_)) => Err(self.err(field, "must not be empty")),
            Some(other) => Err(self.err(field, format!("expected a list, got {}", kind_of(other)))),
            None => Err(self.err(field, "required")),
        }
    }
}

fn loopback_net() -> IpNet {
    IpNet::V4(Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8).expect("127.0.0.0/8"))
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

/// Parses and checks topology text; `file` is only used in messages.
pub fn parse(file: &str, text: &str) -> Result<Topology, TopologyError> {
    let docs = parse_documents(text).map_err(|e| TopologyError {
        file: file.to_owned(),
        line: e.line,
        object: String::new(),
        field: String::new(),
        message: e.message,
    })?;
    let mut lab = None;
    let mut objects: Vec<(Ctx<'_>, &Document)> = Vec::new();
    for doc in &docs {
        let kind = doc.value.get("kind").and_then(Value::as_str).unwrap_or("?");
        let name = doc
            .value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let ns = doc
            .value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        let ctx = Ctx {
            file,
            doc,
            object: match ns {
                Some(ns) => format!("{kind} {ns}/{name}"),
                None => format!("{kind} {name}"),
            },
        };
        if !doc.value.is_object() {
            return Err(ctx.err(
                "",
                format!(
                    "expected a Kubernetes object (a mapping), got {}",
                    kind_of(&doc.value)
                ),
            ));
        }
        ctx.str_at("apiVersion")?;
        ctx.str_at("kind")?;
        if kind == "Lab" {
            if lab.is_some() {
                return Err(ctx.err("kind", "a second Lab document; there must be exactly one"));
            }
            lab = Some(parse_lab(&ctx)?);
        } else {
            objects.push((ctx, doc));
        }
    }
    let lab = lab.ok_or_else(|| TopologyError {
        file: file.to_owned(),
        line: 0,
        object: String::new(),
        field: String::new(),
        message: "no Lab document (apiVersion: lab.proxylab.dev/v1alpha1, kind: Lab)".into(),
    })?;
    let mut seen: Vec<(String, String, String, String)> = Vec::new();
    let mut out = Vec::new();
    for (ctx, doc) in objects {
        let obj = check_object(&ctx, &lab, &doc.value)?;
        let id = (
            obj["apiVersion"].as_str().unwrap_or_default().to_owned(),
            obj["kind"].as_str().unwrap_or_default().to_owned(),
            obj.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            obj.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        );
        if seen.contains(&id) {
            return Err(ctx.err(
                "metadata.name",
                format!("{} {:?} appears twice in the topology", id.1, id.3),
            ));
        }
        seen.push(id);
        out.push(obj);
    }
    Ok(Topology { lab, objects: out })
}

fn parse_lab(ctx: &Ctx<'_>) -> Result<LabSpec, TopologyError> {
    ctx.only("", &["apiVersion", "kind", "metadata", "spec"])?;
    let api_version = ctx.str_at("apiVersion")?;
    if api_version != "lab.proxylab.dev/v1alpha1" {
        return Err(ctx.err(
            "apiVersion",
            format!("unsupported {api_version:?}: expected lab.proxylab.dev/v1alpha1"),
        ));
    }
    ctx.only("metadata", &["name", "labels", "annotations"])?;
    if ctx.get("spec").is_none() {
        return Err(ctx.err("spec", "required"));
    }
    ctx.only(
        "spec",
        &[
            "apiservers",
            "authProxy",
            "haBalancer",
            "admin",
            "serviceClusterIPRange",
            "serviceNodePortRange",
            "loadBalancerIPRange",
            "nodes",
        ],
    )?;

    // Every socket the lab listens on, with the field that gave it, to refuse two on one address.
    let mut sockets: Vec<(SocketAddr, String)> = Vec::new();
    let mut claim = |addr: SocketAddr, field: &str, what: &str| -> Result<(), TopologyError> {
        if let Some((_, other)) = sockets.iter().find(|(a, _)| *a == addr) {
            return Err(ctx.err(field, format!("{what} {addr} is already taken by {other}")));
        }
        sockets.push((addr, format!("{what} ({field})")));
        Ok(())
    };

    let mut apiservers: Vec<SocketAddr> = Vec::new();
    for i in 0..ctx.list("spec.apiservers")?.len() {
        let field = format!("spec.apiservers[{i}]");
        let a = ctx.socket_at(&field)?;
        if let Some(first) = apiservers.first()
            && first.port() != a.port()
        {
            return Err(ctx.err(
                &field,
                format!(
                    "port {} differs from spec.apiservers[0]'s {}: the apiservers of a lab share one --secure-port",
                    a.port(),
                    first.port()
                ),
            ));
        }
        claim(a, &field, &format!("apiserver-{}", i + 1))?;
        apiservers.push(a);
    }
    let auth_proxy = ctx.socket_at("spec.authProxy")?;
    claim(auth_proxy, "spec.authProxy", "the auth-proxy")?;
    claim(
        SocketAddr::new(auth_proxy.ip(), AUTH_PROXY_ADMIN_PORT),
        "spec.authProxy",
        "the auth-proxy's admin endpoint",
    )?;
    let ha_balancer = match ctx.get("spec.haBalancer") {
        None => SocketAddr::from(([127, 0, 0, 1], 6443)),
        Some(_) => ctx.socket_at("spec.haBalancer")?,
    };
    claim(ha_balancer, "spec.haBalancer", "the HA balancer")?;
    claim(
        SocketAddr::new(ha_balancer.ip(), HA_BALANCER_ADMIN_PORT),
        "spec.haBalancer",
        "the HA balancer's admin endpoint",
    )?;
    let admin = match ctx.get("spec.admin") {
        None => SocketAddr::from(([127, 0, 0, 1], 8400)),
        Some(_) => ctx.socket_at("spec.admin")?,
    };
    claim(admin, "spec.admin", "the lab admin endpoint")?;

    let service_cluster_ip_range = ctx.cidr_at("spec.serviceClusterIPRange")?;
    let load_balancer_ip_range = ctx.cidr_at("spec.loadBalancerIPRange")?;
    let mut ranges: Vec<(IpNet, String)> = vec![(
        service_cluster_ip_range,
        "spec.serviceClusterIPRange".into(),
    )];
    let mut claim_range = |net: IpNet, field: &str| -> Result<(), TopologyError> {
        if let Some((other, f)) = ranges
            .iter()
            .find(|(o, f)| f != field && (o.contains(&net) || net.contains(o)))
        {
            return Err(ctx.err(field, format!("{net} overlaps {f} ({other})")));
        }
        ranges.push((net, field.to_owned()));
        Ok(())
    };
    claim_range(load_balancer_ip_range, "spec.loadBalancerIPRange")?;

    let range = ctx.str_at("spec.serviceNodePortRange")?;
    let service_node_port_range = range
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        .filter(|(a, b)| a <= b && *a > 0)
        .ok_or_else(|| {
            ctx.err(
                "spec.serviceNodePortRange",
                format!(
                    "invalid port range {range:?} (want LOW-HIGH within 1-65535, e.g. 30000-32767)"
                ),
            )
        })?;
    let node_port = |p: u16| (service_node_port_range.0..=service_node_port_range.1).contains(&p);
    for p in [KUBELET_PORT, FORWARDER_HEALTHZ_PORT, FORWARDER_ADMIN_PORT] {
        if node_port(p) {
            return Err(ctx.err(
                "spec.serviceNodePortRange",
                format!("{range} contains port {p}, which every node serves itself (kubelet 10250, forwarder 10249 and 10256)"),
            ));
        }
    }

    let mut nodes: Vec<NodeSpec> = Vec::new();
    for i in 0..ctx.list("spec.nodes")?.len() {
        let f = |s: &str| format!("spec.nodes[{i}].{s}");
        ctx.only(&format!("spec.nodes[{i}]"), &["name", "address", "podCIDR"])?;
        let name = ctx.str_at(&f("name"))?.to_owned();
        if !proxylab_apimachinery::selector::is_dns1123_subdomain(&name) {
            return Err(ctx.err(
                &f("name"),
                format!("invalid node name {name:?}: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (DNS-1123)"),
            ));
        }
        if nodes.iter().any(|n| n.name == name) {
            return Err(ctx.err(&f("name"), format!("duplicate node name {name:?}")));
        }
        let address = ctx.ip_at(&f("address"))?;
        if let Some(other) = nodes.iter().find(|n| n.address == address) {
            return Err(ctx.err(
                &f("address"),
                format!("{address} is already node {}'s address", other.name),
            ));
        }
        if let Some((_, other)) = sockets.iter().find(|(a, _)| a.ip() == address) {
            return Err(ctx.err(
                &f("address"),
                format!("{address} is already used by {other}; a node needs an address of its own"),
            ));
        }
        let pod_cidr = ctx.cidr_at(&f("podCIDR"))?;
        claim_range(pod_cidr, &f("podCIDR"))?;
        nodes.push(NodeSpec {
            name,
            address,
            pod_cidr,
        });
    }
    // No component address inside a range the lab allocates from.
    let mut addresses: Vec<(IpAddr, String)> = sockets
        .iter()
        .map(|(a, what)| (a.ip(), what.clone()))
        .collect();
    addresses.extend(nodes.iter().enumerate().map(|(i, n)| {
        (
            n.address,
            format!("node {} (spec.nodes[{i}].address)", n.name),
        )
    }));
    for (net, field) in &ranges {
        if let Some((ip, what)) = addresses.iter().find(|(ip, _)| net.contains(ip)) {
            return Err(ctx.err(field, format!("{net} contains {ip}, the address of {what}")));
        }
    }
    Ok(LabSpec {
        apiservers,
        auth_proxy,
        admin,
        ha_balancer,
        service_cluster_ip_range,
        service_node_port_range,
        load_balancer_ip_range,
        nodes,
    })
}

/// One Kubernetes object: a kind the lab serves, the namespace the apiserver would give it, and the
/// apiserver's own validation.
fn check_object(ctx: &Ctx<'_>, lab: &LabSpec, obj: &Value) -> Result<Value, TopologyError> {
    let api_version = ctx.str_at("apiVersion")?;
    let kind = ctx.str_at("kind")?;
    let info =
        proxylab_apimachinery::registry::lookup_kind(api_version, kind).ok_or_else(|| {
            ctx.err(
                "kind",
                format!("the lab apiserver does not serve {api_version} {kind}"),
            )
        })?;
    let mut obj = obj.clone();
    if info.namespaced
        && obj.pointer("/metadata/namespace").is_none()
        && let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut)
    {
        m.insert("namespace".into(), Value::from("default"));
    }
    // Nothing the lab runs may be pointed off this machine: any address an object carries (an
    // EndpointSlice's endpoints, a Service's externalIPs, …) must be loopback, and a Service of type
    // ExternalName (a DNS name the lab would hand out) is refused.
    if let Some((field, ip)) = first_foreign_address(&obj, String::new()) {
        return Err(ctx.err(
            &field,
            format!("{ip} is outside 127.0.0.0/8 (the lab never dials off this machine)"),
        ));
    }
    if kind == "Service"
        && obj.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName")
    {
        return Err(ctx.err(
            "spec.type",
            "ExternalName services point outside the lab; the lab never dials off this machine",
        ));
    }
    if let Some(cause) = proxylab_apimachinery::validation::validate(info, &obj)
        .into_iter()
        .next()
    {
        return Err(ctx.err(&cause.field, cause.message));
    }
    if kind == "Service" && info.group.is_empty() {
        if let Some(ip) = obj.pointer("/spec/clusterIP").and_then(Value::as_str)
            && !ip.is_empty()
            && ip != "None"
        {
            let inside = ip
                .parse::<IpAddr>()
                .is_ok_and(|a| lab.service_cluster_ip_range.contains(&a));
            if !inside {
                return Err(ctx.err(
                    "spec.clusterIP",
                    format!(
                        "{ip} is outside spec.serviceClusterIPRange ({})",
                        lab.service_cluster_ip_range
                    ),
                ));
            }
        }
        let ports = obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, p) in ports.iter().enumerate() {
            if let Some(np) = p.get("nodePort").and_then(Value::as_u64)
                && np != 0
            {
                let (lo, hi) = lab.service_node_port_range;
                if !(u64::from(lo)..=u64::from(hi)).contains(&np) {
                    return Err(ctx.err(
                        &format!("spec.ports[{i}].nodePort"),
                        format!("{np} is outside spec.serviceNodePortRange ({lo}-{hi})"),
                    ));
                }
            }
        }
    }
    Ok(obj)
}

/// The first string in `v` that is an IP address or CIDR outside 127.0.0.0/8, with its field path.
fn first_foreign_address(v: &Value, path: String) -> Option<(String, String)> {
    match v {
        Value::String(s) => {
            let ip = s
                .parse::<IpAddr>()
                .ok()
                .or_else(|| s.parse::<IpNet>().ok().map(|n| n.addr()))?;
            (!loopback_net().contains(&ip)).then(|| (path, s.clone()))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| first_foreign_address(x, format!("{path}[{i}]"))),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            first_foreign_address(x, p)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_topology_parses() {
        let t = parse("default", DEFAULT_TOPOLOGY).unwrap();
        assert_eq!(t.lab.apiservers.len(), 3);
        assert_eq!(t.lab.nodes.len(), 2);
        assert_eq!(t.lab.admin, "127.0.0.1:8400".parse().unwrap());
        assert!(
            t.objects
                .iter()
                .any(|o| o["kind"] == "Service" && o["metadata"]["name"] == "web")
        );
    }

    fn err(text: &str) -> String {
        parse("t.yaml", text).unwrap_err().to_string()
    }

    const LAB: &str = "\
apiVersion: lab.proxylab.dev/v1alpha1
kind: Lab
metadata: {name: x}
spec:
  apiservers: [127.0.10.1:6443]
  authProxy: 127.0.0.1:8001
  serviceClusterIPRange: 127.0.40.0/24
  serviceNodePortRange: 30000-32767
  loadBalancerIPRange: 127.0.50.0/24
  nodes:
    - {name: node-1, address: 127.0.20.1, podCIDR: 127.0.30.0/25}
    - name: node-2
      address: 127.0.20.2
      podCIDR: 127.0.30.128/25
";

    #[test]
    fn a_minimal_lab_parses() {
        let t = parse("t.yaml", LAB).unwrap();
        assert_eq!(t.lab.nodes[1].name, "node-2");
        assert_eq!(t.lab.auth_proxy_admin(), "127.0.0.1:8002".parse().unwrap());
        assert_eq!(t.lab.ha_balancer, "127.0.0.1:6443".parse().unwrap());
        assert_eq!(t.lab.ha_balancer_admin(), "127.0.0.1:8404".parse().unwrap());
        let moved = LAB.replace("spec:\n", "spec:\n  haBalancer: 127.0.0.5:7443\n");
        let t = parse("t.yaml", &moved).unwrap();
        assert_eq!(t.lab.ha_balancer_admin(), "127.0.0.5:8404".parse().unwrap());
        let clash = LAB.replace("spec:\n", "spec:\n  haBalancer: 127.0.10.1:6443\n");
        assert!(
            err(&clash).contains(
                "spec.haBalancer: the HA balancer 127.0.10.1:6443 is already taken by apiserver-1"
            ),
            "{}",
            err(&clash)
        );
    }

    #[test]
    fn lab_errors_name_file_line_and_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "127.0.20.2\n",
                "not-an-ip\n",
                "t.yaml:13: Lab x: spec.nodes[1].address: invalid IP address \"not-an-ip\"",
            ),
            (
                "127.0.20.2\n",
                "10.0.0.2\n",
                "t.yaml:13: Lab x: spec.nodes[1].address: 10.0.0.2 is outside 127.0.0.0/8",
            ),
            (
                "127.0.20.2\n",
                "127.0.20.1\n",
                "t.yaml:13: Lab x: spec.nodes[1].address: 127.0.20.1 is already node node-1's address",
            ),
            (
                "127.0.20.2\n",
                "127.0.0.1\n",
                "t.yaml:13: Lab x: spec.nodes[1].address: 127.0.0.1 is already used by the auth-proxy (spec.authProxy)",
            ),
            (
                "127.0.20.2\n",
                "127.0.0.254\n",
                "t.yaml:13: Lab x: spec.nodes[1].address: 127.0.0.254 is the lab prober's own address",
            ),
            (
                "127.0.40.0/24",
                "10.96.0.0/12",
                "t.yaml:7: Lab x: spec.serviceClusterIPRange: 10.96.0.0/12 is outside 127.0.0.0/8",
            ),
            (
                "127.0.40.0/24",
                "127.0.40.1/24",
                "t.yaml:7: Lab x: spec.serviceClusterIPRange: 127.0.40.1/24 has host bits set (did you mean 127.0.40.0/24?)",
            ),
            (
                "127.0.50.0/24",
                "127.0.40.128/25",
                "t.yaml:9: Lab x: spec.loadBalancerIPRange: 127.0.40.128/25 overlaps spec.serviceClusterIPRange (127.0.40.0/24)",
            ),
            (
                "127.0.30.128/25",
                "127.0.30.0/24",
                "t.yaml:14: Lab x: spec.nodes[1].podCIDR: 127.0.30.0/24 overlaps spec.nodes[0].podCIDR (127.0.30.0/25)",
            ),
            (
                "127.0.40.0/24",
                "127.0.0.0/24",
                "t.yaml:7: Lab x: spec.serviceClusterIPRange: 127.0.0.0/24 contains 127.0.0.254, the lab prober's own address",
            ),
            (
                "127.0.50.0/24",
                "127.0.20.0/24",
                "t.yaml:9: Lab x: spec.loadBalancerIPRange: 127.0.20.0/24 contains 127.0.20.1, the address of node node-1",
            ),
            (
                "30000-32767",
                "32767-30000",
                "t.yaml:8: Lab x: spec.serviceNodePortRange: invalid port range \"32767-30000\"",
            ),
            (
                "30000-32767",
                "10000-32767",
                "t.yaml:8: Lab x: spec.serviceNodePortRange: 10000-32767 contains port 10250",
            ),
            (
                "127.0.0.1:8001",
                "127.0.0.1:0",
                "t.yaml:6: Lab x: spec.authProxy: port 0 in \"127.0.0.1:0\"",
            ),
            (
                "127.0.0.1:8001",
                "127.0.0.1:80800",
                "t.yaml:6: Lab x: spec.authProxy: invalid address \"127.0.0.1:80800\"",
            ),
            (
                "127.0.0.1:8001",
                "\"[::1]:8001\"",
                "t.yaml:6: Lab x: spec.authProxy: ::1 is outside 127.0.0.0/8",
            ),
            (
                "127.0.0.1:8001",
                "127.0.0.1:8002",
                "t.yaml:6: Lab x: spec.authProxy: the auth-proxy's admin endpoint 127.0.0.1:8002 is already taken by the auth-proxy (spec.authProxy)",
            ),
            (
                "[127.0.10.1:6443]",
                "[127.0.10.1:6443, 127.0.10.1:6443]",
                "t.yaml:5: Lab x: spec.apiservers[1]: apiserver-2 127.0.10.1:6443 is already taken by apiserver-1 (spec.apiservers[0])",
            ),
            (
                "[127.0.10.1:6443]",
                "[127.0.10.1:6443, 127.0.10.2:6444]",
                "t.yaml:5: Lab x: spec.apiservers[1]: port 6444 differs",
            ),
            (
                "name: node-2",
                "name: Node-2",
                "t.yaml:12: Lab x: spec.nodes[1].name: invalid node name \"Node-2\"",
            ),
            (
                "podCIDR: 127.0.30.128/25\n",
                "podCidr: 127.0.30.128/25\n",
                "t.yaml:14: Lab x: spec.nodes[1].podCidr: unknown field \"podCidr\"",
            ),
            (
                "  authProxy:",
                "  authproxy:",
                "t.yaml:6: Lab x: spec.authproxy: unknown field \"authproxy\"",
            ),
            (
                "[127.0.10.1:6443]",
                "[]",
                "t.yaml:5: Lab x: spec.apiservers: must not be empty",
            ),
        ];
        for (from, to, want) in cases {
            assert!(LAB.contains(from), "{from}");
            let got = err(&LAB.replacen(from, to, 1));
            assert!(
                got.starts_with(want),
                "{from} -> {to}:\n got {got}\nwant {want}"
            );
        }
        let extra = LAB.replace("spec:\n", "spec:\n  admin: 127.0.10.1:6443\n");
        assert!(
            err(&extra).starts_with("t.yaml:5: Lab x: spec.admin: the lab admin endpoint 127.0.10.1:6443 is already taken by apiserver-1"),
            "{}",
            err(&extra)
        );
    }

    #[test]
    fn object_errors_use_the_apiservers_validation() {
        let pod = |spec: &str| {
            format!("{LAB}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{spec}")
        };
        let ok = "  containers:\n    - name: c\n      image: proxylab/echo-http:1\n";
        assert!(parse("t.yaml", &pod(ok)).is_ok());
        let e = err(&pod("  containers:\n    - name: c\n"));
        assert!(
            e.starts_with("t.yaml:22: Pod p: spec.containers[0].image: Required value"),
            "{e}"
        );
        let e = err(&pod(&ok.replace("name: c", "name: C_1")));
        assert!(
            e.starts_with("t.yaml:22: Pod p: spec.containers[0].name: Invalid value"),
            "{e}"
        );
        let e = err(&format!(
            "{}---\n{}",
            pod(ok),
            pod(ok).split_once("---\n").unwrap().1
        ));
        assert!(
            e.contains("Pod p: metadata.name: Pod \"p\" appears twice"),
            "{e}"
        );
        let e = err(&format!(
            "{LAB}---\napiVersion: apps/v9\nkind: Thing\nmetadata: {{name: t}}\n"
        ));
        assert!(
            e.starts_with(
                "t.yaml:17: Thing t: kind: the lab apiserver does not serve apps/v9 Thing"
            ),
            "{e}"
        );
        let svc = format!(
            "{LAB}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec:\n  clusterIP: 10.96.0.10\n  ports: [{{port: 80}}]\n"
        );
        let e = err(&svc);
        assert!(
            e.starts_with(
                "t.yaml:20: Service s: spec.clusterIP: 10.96.0.10 is outside 127.0.0.0/8"
            ),
            "{e}"
        );
        let e = err(&svc.replace("10.96.0.10", "127.0.41.10"));
        assert!(e.starts_with("t.yaml:20: Service s: spec.clusterIP: 127.0.41.10 is outside spec.serviceClusterIPRange"), "{e}");
        let e = err(&svc.replace("clusterIP: 10.96.0.10", "externalIPs: [192.168.1.5]"));
        assert!(
            e.starts_with(
                "t.yaml:20: Service s: spec.externalIPs[0]: 192.168.1.5 is outside 127.0.0.0/8"
            ),
            "{e}"
        );
        let e = err(&svc.replace(
            "clusterIP: 10.96.0.10",
            "type: ExternalName\n  externalName: example.com",
        ));
        assert!(
            e.contains("Service s: spec.type: ExternalName services point outside the lab"),
            "{e}"
        );
    }

    #[test]
    fn file_errors() {
        assert!(err("a: [").starts_with("t.yaml:"), "{}", err("a: ["));
        assert!(err("a: [").contains("invalid YAML"));
        assert_eq!(
            err("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"),
            "t.yaml: no Lab document (apiVersion: lab.proxylab.dev/v1alpha1, kind: Lab)"
        );
        assert!(err(&format!("{LAB}---\n{LAB}")).contains("a second Lab document"));
    }
}
