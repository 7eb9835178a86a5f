//! Validation: the checks that turn a bad object into `422 Invalid` with field-level causes.
//!
//! kube-apiserver validates every create and update against hand-written rules per kind
//! (`pkg/apis/core/validation`). This module implements the subset the lab relies on, with the same
//! field paths and cause types so clients print familiar errors
//! (`spec.containers[0].image: Required value`):
//! - object names: DNS-1123 subdomain for most kinds, DNS-1123 label for namespaces, DNS-1035 label
//!   (starts with a letter) for services; namespace set exactly for namespaced kinds;
//! - label keys/values and annotation keys syntax, annotation total size;
//! - per kind ([`workloads`] for Deployments, ReplicaSets and Jobs): pod containers (name, image, unique names, ports 1–65535, protocols, env names), service
//!   type/ports/targetPorts/nodePorts/clusterIP/ExternalName, secret and configmap keys and base64 data,
//!   endpoints and endpointslice addresses and ports, lease durations, event involvedObject.
//!
//! [`validate_update`] adds the immutability rules for updates (names, service clusterIP, pod container
//! set and node binding, secret type, immutable secrets/configmaps, endpointslice addressType). It does
//! not repeat [`validate`]; call both on update. A service update that leaves `clusterIP` empty passes:
//! the caller is expected to carry the allocated address over, as kube-apiserver does.
//!
//! Not modelled: defaulting (the apiserver fills defaults before validating), resource quantities,
//! probes, volumes beyond their names, security contexts.

mod workloads;

use std::net::IpAddr;

use base64::Engine;
use serde_json::{Map, Value};

use crate::meta;
use crate::registry::ResourceInfo;
use crate::selector::{
    is_dns1123_label, is_dns1123_subdomain, validate_label_key, validate_label_value,
};
use crate::status::Cause;

const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
/// kube-apiserver's limit on the total size of annotations.
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// kube-apiserver's limit on a Secret's data and a ConfigMap's data + binaryData (`core.MaxSecretSize`):
/// values are mounted as files and kept in every kubelet's memory.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

/// Collects causes while walking an object.
struct V {
    causes: Vec<Cause>,
}

impl V {
    fn push(&mut self, c: Cause) {
        self.causes.push(c);
    }
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// IANA service name, as port names must be: ≤ 15 characters, lowercase alphanumerics and '-', at least
/// one letter, no leading/trailing/double '-'.
fn is_iana_svc_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// Secret and ConfigMap keys: `[-._a-zA-Z0-9]+`, ≤ 253 characters, not `.` or `..`.
fn is_config_map_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn validate_name(v: &mut V, info: &ResourceInfo, obj: &Value) {
    let Some(name_val) = obj.get("metadata").and_then(|m| m.get("name")) else {
        v.push(Cause::required("metadata.name"));
        return;
    };
    let Some(name) = name_val.as_str() else {
        v.push(Cause::type_invalid(
            "metadata.name",
            name_val,
            "must be a string",
        ));
        return;
    };
    if name.is_empty() {
        v.push(Cause::required("metadata.name"));
        return;
    }
    let (ok, msg) = match info.kind {
        "Namespace" => (is_dns1123_label(name), DNS1123_LABEL_MSG),
        "Service" => (is_dns1035_label(name), DNS1035_LABEL_MSG),
        _ => (is_dns1123_subdomain(name), DNS1123_SUBDOMAIN_MSG),
    };
    if !ok {
        v.push(Cause::invalid("metadata.name", name_val, msg));
    }
}

fn validate_metadata(v: &mut V, info: &ResourceInfo, obj: &Value) {
    let Some(meta) = obj.get("metadata") else {
        v.push(Cause::required("metadata"));
        return;
    };
    if !meta.is_object() {
        v.push(Cause::type_invalid("metadata", meta, "must be an object"));
        return;
    }
    validate_name(v, info, obj);
    let ns = meta.get("namespace");
    let ns_str = ns.and_then(Value::as_str).unwrap_or_default();
    if info.namespaced {
        if ns_str.is_empty() {
            v.push(Cause::required("metadata.namespace"));
        } else if !is_dns1123_label(ns_str) {
            v.push(Cause::invalid(
                "metadata.namespace",
                &Value::from(ns_str),
                DNS1123_LABEL_MSG,
            ));
        }
    } else if !ns_str.is_empty() {
        v.push(Cause::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    match meta.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (k, val) in labels {
                if let Err(e) = validate_label_key(k) {
                    v.push(Cause::invalid(
                        "metadata.labels",
                        &Value::from(k.as_str()),
                        &e.to_string(),
                    ));
                }
                match val.as_str() {
                    Some(s) => {
                        if let Err(e) = validate_label_value(s) {
                            v.push(Cause::invalid(
                                format!("metadata.labels.{k}"),
                                val,
                                &e.to_string(),
                            ));
                        }
                    }
                    None => v.push(Cause::type_invalid(
                        format!("metadata.labels.{k}"),
                        val,
                        "must be a string",
                    )),
                }
            }
        }
        Some(other) => v.push(Cause::type_invalid(
            "metadata.labels",
            other,
            "must be a map of strings",
        )),
    }
    match meta.get("annotations") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ann)) => {
            let mut total = 0;
            for (k, val) in ann {
                if let Err(e) = validate_label_key(&k.to_ascii_lowercase()) {
                    v.push(Cause::invalid(
                        "metadata.annotations",
                        &Value::from(k.as_str()),
                        &e.to_string(),
                    ));
                }
                match val.as_str() {
                    Some(s) => total += k.len() + s.len(),
                    None => v.push(Cause::type_invalid(
                        format!("metadata.annotations.{k}"),
                        val,
                        "must be a string",
                    )),
                }
            }
            if total > TOTAL_ANNOTATION_SIZE_LIMIT {
                v.push(Cause::too_long(
                    "metadata.annotations",
                    TOTAL_ANNOTATION_SIZE_LIMIT,
                ));
            }
        }
        Some(other) => v.push(Cause::type_invalid(
            "metadata.annotations",
            other,
            "must be a map of strings",
        )),
    }
}

/// The array at `obj[key]`: `None` when absent/null, a cause when not an array.
fn array_field<'a>(v: &mut V, obj: &'a Value, key: &str, path: &str) -> Option<&'a Vec<Value>> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a),
        Some(other) => {
            v.push(Cause::type_invalid(
                path.to_string(),
                other,
                "must be a list",
            ));
            None
        }
    }
}

fn validate_port_number(v: &mut V, val: &Value, path: String, allow_zero: bool) {
    match val.as_i64() {
        Some(n) if (1..=65535).contains(&n) || (allow_zero && n == 0) => {}
        Some(_) => v.push(Cause::invalid(
            path,
            val,
            "must be between 1 and 65535, inclusive",
        )),
        None => v.push(Cause::type_invalid(path, val, "must be an integer")),
    }
}

fn validate_protocol(v: &mut V, port: &Value, path: &str) {
    if let Some(p) = port.get("protocol").filter(|p| !p.is_null())
        && !p.as_str().is_some_and(|s| PROTOCOLS.contains(&s))
    {
        v.push(Cause::not_supported(
            format!("{path}.protocol"),
            p,
            PROTOCOLS,
        ));
    }
}

fn validate_containers(v: &mut V, spec: &Value, spec_path: &str, key: &str, required: bool) {
    let path = format!("{spec_path}.{key}");
    let Some(containers) = array_field(v, spec, key, &path) else {
        if required {
            v.push(Cause::required(path));
        }
        return;
    };
    if required && containers.is_empty() {
        v.push(Cause::required(path));
        return;
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let cp = format!("{path}[{i}]");
        if !c.is_object() {
            v.push(Cause::type_invalid(cp, c, "must be an object"));
            continue;
        }
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => v.push(Cause::required(format!("{cp}.name"))),
            Some(n) => {
                if !is_dns1123_label(n) {
                    v.push(Cause::invalid(
                        format!("{cp}.name"),
                        &Value::from(n),
                        DNS1123_LABEL_MSG,
                    ));
                } else if names.contains(&n) {
                    v.push(Cause::duplicate(format!("{cp}.name"), &Value::from(n)));
                }
                names.push(n);
            }
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(|s| s.trim().is_empty())
        {
            v.push(Cause::required(format!("{cp}.image")));
        }
        if let Some(ports) = array_field(v, c, "ports", &format!("{cp}.ports")) {
            let mut port_names: Vec<&str> = Vec::new();
            for (j, p) in ports.iter().enumerate() {
                let pp = format!("{cp}.ports[{j}]");
                match p.get("containerPort") {
                    None | Some(Value::Null) => {
                        v.push(Cause::required(format!("{pp}.containerPort")))
                    }
                    Some(n) => validate_port_number(v, n, format!("{pp}.containerPort"), false),
                }
                if let Some(hp) = p.get("hostPort").filter(|x| !x.is_null()) {
                    validate_port_number(v, hp, format!("{pp}.hostPort"), true);
                }
                validate_protocol(v, p, &pp);
                if let Some(name) = p
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    if !is_iana_svc_name(name) {
                        v.push(Cause::invalid(
                            format!("{pp}.name"),
                            &Value::from(name),
                            "must be no more than 15 characters, contain only lowercase alphanumerics and '-', and contain at least one letter",
                        ));
                    } else if port_names.contains(&name) {
                        v.push(Cause::duplicate(format!("{pp}.name"), &Value::from(name)));
                    }
                    port_names.push(name);
                }
            }
        }
        if let Some(env) = array_field(v, c, "env", &format!("{cp}.env")) {
            for (j, e) in env.iter().enumerate() {
                if e.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    v.push(Cause::required(format!("{cp}.env[{j}].name")));
                }
            }
        }
    }
}

fn validate_pod(v: &mut V, obj: &Value) {
    let Some(spec) = obj.get("spec").filter(|s| s.is_object()) else {
        v.push(Cause::required("spec"));
        return;
    };
    validate_pod_spec(v, spec, "spec");
}

/// A PodSpec at `spec_path` (`spec` of a Pod, `spec.template.spec` of a workload).
fn validate_pod_spec(v: &mut V, spec: &Value, spec_path: &str) {
    validate_containers(v, spec, spec_path, "containers", true);
    validate_containers(v, spec, spec_path, "initContainers", false);
    if let Some(rp) = spec.get("restartPolicy").filter(|x| !x.is_null()) {
        const POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
        if !rp.as_str().is_some_and(|s| POLICIES.contains(&s)) {
            v.push(Cause::not_supported(
                format!("{spec_path}.restartPolicy"),
                rp,
                POLICIES,
            ));
        }
    }
    if let Some(g) = spec
        .get("terminationGracePeriodSeconds")
        .filter(|x| !x.is_null())
        && g.as_i64().is_none_or(|n| n < 0)
    {
        v.push(Cause::invalid(
            format!("{spec_path}.terminationGracePeriodSeconds"),
            g,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = spec
        .get("nodeName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        && !is_dns1123_subdomain(n)
    {
        v.push(Cause::invalid(
            format!("{spec_path}.nodeName"),
            &Value::from(n),
            DNS1123_SUBDOMAIN_MSG,
        ));
    }
}

fn valid_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

fn validate_service(v: &mut V, obj: &Value) {
    let Some(spec) = obj.get("spec").filter(|s| s.is_object()) else {
        v.push(Cause::required("spec"));
        return;
    };
    const TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    let ty = match spec.get("type") {
        None | Some(Value::Null) => "ClusterIP",
        Some(t) => match t.as_str() {
            Some(s) if TYPES.contains(&s) => s,
            _ => {
                v.push(Cause::not_supported("spec.type", t, TYPES));
                "ClusterIP"
            }
        },
    };
    let cluster_ip = meta::str_at(spec, &["clusterIP"]).unwrap_or_default();
    let headless = cluster_ip == "None";
    if !cluster_ip.is_empty() && !headless && !valid_ip(cluster_ip) {
        v.push(Cause::invalid(
            "spec.clusterIP",
            &Value::from(cluster_ip),
            "must be empty, 'None', or a valid IP address",
        ));
    }
    if let Some(ips) = array_field(v, spec, "clusterIPs", "spec.clusterIPs") {
        for (i, ip) in ips.iter().enumerate() {
            if !ip.as_str().is_some_and(|s| s == "None" || valid_ip(s)) {
                v.push(Cause::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    ip,
                    "must be a valid IP address",
                ));
            }
        }
    }
    if ty == "ExternalName" {
        match meta::str_at(spec, &["externalName"]) {
            None | Some("") => v.push(Cause::required("spec.externalName")),
            Some(n) if !is_dns1123_subdomain(n.trim_end_matches('.')) => {
                v.push(Cause::invalid(
                    "spec.externalName",
                    &Value::from(n),
                    DNS1123_SUBDOMAIN_MSG,
                ));
            }
            _ => {}
        }
    }
    let ports = array_field(v, spec, "ports", "spec.ports");
    let no_ports = ports.is_none_or(|p| p.is_empty());
    if no_ports && !headless && ty != "ExternalName" {
        v.push(Cause::required("spec.ports"));
    }
    if let Some(ports) = ports {
        let multiple = ports.len() > 1;
        let mut seen_names: Vec<&str> = Vec::new();
        let mut seen_ports: Vec<(i64, &str)> = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let pp = format!("spec.ports[{i}]");
            match p
                .get("name")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                None if multiple => v.push(Cause::required(format!("{pp}.name"))),
                None => {}
                Some(n) => {
                    if !is_dns1123_label(n) {
                        v.push(Cause::invalid(
                            format!("{pp}.name"),
                            &Value::from(n),
                            DNS1123_LABEL_MSG,
                        ));
                    } else if seen_names.contains(&n) {
                        v.push(Cause::duplicate(format!("{pp}.name"), &Value::from(n)));
                    }
                    seen_names.push(n);
                }
            }
            match p.get("port") {
                None | Some(Value::Null) => v.push(Cause::required(format!("{pp}.port"))),
                Some(n) => validate_port_number(v, n, format!("{pp}.port"), false),
            }
            validate_protocol(v, p, &pp);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            if let Some(n) = p.get("port").and_then(Value::as_i64) {
                if seen_ports.contains(&(n, proto)) {
                    v.push(Cause::duplicate(
                        pp.clone(),
                        &serde_json::json!({"port": n, "protocol": proto}),
                    ));
                }
                seen_ports.push((n, proto));
            }
            match p.get("targetPort") {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if is_iana_svc_name(s) => {}
                Some(t @ Value::Number(_)) => {
                    validate_port_number(v, t, format!("{pp}.targetPort"), false)
                }
                Some(t) => v.push(Cause::invalid(
                    format!("{pp}.targetPort"),
                    t,
                    "must be a port number between 1 and 65535 or a valid port name",
                )),
            }
            if let Some(np) = p
                .get("nodePort")
                .filter(|x| !x.is_null() && x.as_i64() != Some(0))
            {
                if ty == "ClusterIP" || ty == "ExternalName" {
                    v.push(Cause::forbidden(
                        format!("{pp}.nodePort"),
                        &format!("may not be used when `type` is '{ty}'"),
                    ));
                } else {
                    validate_port_number(v, np, format!("{pp}.nodePort"), false);
                }
            }
        }
    }
    match spec.get("selector") {
        None | Some(Value::Null) => {}
        Some(Value::Object(sel)) => {
            for (k, val) in sel {
                if let Err(e) = validate_label_key(k) {
                    v.push(Cause::invalid(
                        "spec.selector",
                        &Value::from(k.as_str()),
                        &e.to_string(),
                    ));
                }
                if let Err(e) = val.as_str().map_or(Ok(()), validate_label_value) {
                    v.push(Cause::invalid(
                        format!("spec.selector.{k}"),
                        val,
                        &e.to_string(),
                    ));
                }
                if !val.is_string() {
                    v.push(Cause::type_invalid(
                        format!("spec.selector.{k}"),
                        val,
                        "must be a string",
                    ));
                }
            }
        }
        Some(other) => v.push(Cause::type_invalid(
            "spec.selector",
            other,
            "must be a map of strings",
        )),
    }
    for (field, allowed) in [
        ("sessionAffinity", &["None", "ClientIP"][..]),
        ("externalTrafficPolicy", &["Cluster", "Local"][..]),
        ("internalTrafficPolicy", &["Cluster", "Local"][..]),
    ] {
        if let Some(val) = spec.get(field).filter(|x| !x.is_null())
            && !val.as_str().is_some_and(|s| allowed.contains(&s))
        {
            v.push(Cause::not_supported(format!("spec.{field}"), val, allowed));
        }
    }
    if let Some(ips) = array_field(v, spec, "externalIPs", "spec.externalIPs") {
        for (i, ip) in ips.iter().enumerate() {
            if !ip.as_str().is_some_and(valid_ip) {
                v.push(Cause::invalid(
                    format!("spec.externalIPs[{i}]"),
                    ip,
                    "must be a valid IP address",
                ));
            }
        }
    }
}

/// Keys and (for `base64_values`) base64 values of a `data`-like map.
fn validate_data_map(v: &mut V, obj: &Value, field: &str, base64_values: bool) {
    match obj.get(field) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, val) in m {
                if !is_config_map_key(k) {
                    v.push(Cause::invalid(
                        field,
                        &Value::from(k.as_str()),
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                    ));
                }
                match val.as_str() {
                    Some(s) if base64_values => {
                        if base64::engine::general_purpose::STANDARD.decode(s).is_err() {
                            v.push(Cause::invalid(
                                format!("{field}[{k}]"),
                                &Value::from("<value omitted>"),
                                "must be base64-encoded",
                            ));
                        }
                    }
                    Some(_) => {}
                    None => v.push(Cause::type_invalid(
                        format!("{field}[{k}]"),
                        val,
                        "must be a string",
                    )),
                }
            }
        }
        Some(other) => v.push(Cause::type_invalid(field, other, "must be a map")),
    }
}

/// The total size of a data map's values, base64-decoded when `base64_values` (undecodable values count
/// as their text; they are reported on their own).
fn data_size(obj: &Value, field: &str, base64_values: bool) -> usize {
    let Some(m) = obj.get(field).and_then(Value::as_object) else {
        return 0;
    };
    m.values()
        .filter_map(Value::as_str)
        .map(|s| {
            if base64_values {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_or(s.len(), |b| b.len())
            } else {
                s.len()
            }
        })
        .sum()
}

fn validate_secret(v: &mut V, obj: &Value) {
    validate_data_map(v, obj, "data", true);
    validate_data_map(v, obj, "stringData", false);
    // `stringData` is merged into `data` before validation by the apiserver (as kube's conversion
    // does); counting both covers a caller that validates an unmerged object.
    if data_size(obj, "data", true) + data_size(obj, "stringData", false) > MAX_DATA_SIZE {
        v.push(Cause::too_long("data", MAX_DATA_SIZE));
    }
    let has_key = |k: &str| {
        obj.get("data").and_then(|d| d.get(k)).is_some()
            || obj.get("stringData").and_then(|d| d.get(k)).is_some()
    };
    match obj.get("type").and_then(Value::as_str).unwrap_or("Opaque") {
        "kubernetes.io/service-account-token"
            if crate::meta::annotation(obj, "kubernetes.io/service-account.name")
                .is_none_or(str::is_empty) =>
        {
            v.push(Cause::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
            ));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has_key(k) {
                    v.push(Cause::required(format!("data[{k}]")));
                }
            }
        }
        "kubernetes.io/dockerconfigjson" if !has_key(".dockerconfigjson") => {
            v.push(Cause::required("data[.dockerconfigjson]"));
        }
        _ => {}
    }
}

fn validate_configmap(v: &mut V, obj: &Value) {
    validate_data_map(v, obj, "data", false);
    validate_data_map(v, obj, "binaryData", true);
    if data_size(obj, "data", false) + data_size(obj, "binaryData", true) > MAX_DATA_SIZE {
        // kube-apiserver reports it against the whole object, whose field path prints as `[]`.
        v.push(Cause::too_long("[]", MAX_DATA_SIZE));
    }
    if let (Some(d), Some(b)) = (
        obj.get("data").and_then(Value::as_object),
        obj.get("binaryData").and_then(Value::as_object),
    ) {
        for k in d.keys().filter(|k| b.contains_key(*k)) {
            v.push(Cause::invalid(
                "data",
                &Value::from(k.as_str()),
                "duplicate of key present in binaryData",
            ));
        }
    }
}

fn validate_endpoints(v: &mut V, obj: &Value) {
    let Some(subsets) = array_field(v, obj, "subsets", "subsets") else {
        return;
    };
    for (i, ss) in subsets.iter().enumerate() {
        for key in ["addresses", "notReadyAddresses"] {
            if let Some(addrs) = array_field(v, ss, key, &format!("subsets[{i}].{key}")) {
                for (j, a) in addrs.iter().enumerate() {
                    let ip = a.get("ip").and_then(Value::as_str).unwrap_or_default();
                    if ip.is_empty() {
                        v.push(Cause::required(format!("subsets[{i}].{key}[{j}].ip")));
                    } else if !valid_ip(ip) {
                        v.push(Cause::invalid(
                            format!("subsets[{i}].{key}[{j}].ip"),
                            &Value::from(ip),
                            "must be a valid IP address",
                        ));
                    }
                }
            }
        }
        if let Some(ports) = array_field(v, ss, "ports", &format!("subsets[{i}].ports")) {
            for (j, p) in ports.iter().enumerate() {
                let pp = format!("subsets[{i}].ports[{j}]");
                match p.get("port") {
                    None | Some(Value::Null) => v.push(Cause::required(format!("{pp}.port"))),
                    Some(n) => validate_port_number(v, n, format!("{pp}.port"), false),
                }
                validate_protocol(v, p, &pp);
            }
        }
    }
}

fn validate_endpointslice(v: &mut V, obj: &Value) {
    const TYPES: &[&str] = &["IPv4", "IPv6", "FQDN"];
    let at = match obj.get("addressType") {
        None | Some(Value::Null) => {
            v.push(Cause::required("addressType"));
            None
        }
        Some(t) => match t.as_str() {
            Some(s) if TYPES.contains(&s) => Some(s),
            _ => {
                v.push(Cause::not_supported("addressType", t, TYPES));
                None
            }
        },
    };
    if let Some(eps) = array_field(v, obj, "endpoints", "endpoints") {
        if eps.len() > 1000 {
            v.push(Cause::too_long("endpoints", 1000));
        }
        for (i, e) in eps.iter().enumerate() {
            let ep = format!("endpoints[{i}]");
            let addrs = array_field(v, e, "addresses", &format!("{ep}.addresses"));
            match addrs {
                None => v.push(Cause::required(format!("{ep}.addresses"))),
                Some(a) if a.is_empty() || a.len() > 100 => v.push(Cause::invalid(
                    format!("{ep}.addresses"),
                    &Value::from(a.len()),
                    "must contain at least 1 and at most 100 addresses",
                )),
                Some(a) => {
                    for (j, addr) in a.iter().enumerate() {
                        let s = addr.as_str().unwrap_or_default();
                        let ok = match at {
                            Some("IPv4") => s.parse::<std::net::Ipv4Addr>().is_ok(),
                            Some("IPv6") => s.parse::<std::net::Ipv6Addr>().is_ok(),
                            Some("FQDN") => is_dns1123_subdomain(s),
                            _ => true,
                        };
                        if !ok {
                            v.push(Cause::invalid(
                                format!("{ep}.addresses[{j}]"),
                                addr,
                                &format!("must be a valid {} address", at.unwrap_or_default()),
                            ));
                        }
                    }
                }
            }
            if let Some(conds) = e.get("conditions").filter(|c| !c.is_null()) {
                for k in ["ready", "serving", "terminating"] {
                    if let Some(b) = conds.get(k).filter(|b| !b.is_null() && !b.is_boolean()) {
                        v.push(Cause::type_invalid(
                            format!("{ep}.conditions.{k}"),
                            b,
                            "must be a boolean",
                        ));
                    }
                }
            }
        }
    }
    if let Some(ports) = array_field(v, obj, "ports", "ports") {
        for (i, p) in ports.iter().enumerate() {
            let pp = format!("ports[{i}]");
            if let Some(n) = p.get("port").filter(|x| !x.is_null()) {
                validate_port_number(v, n, format!("{pp}.port"), true);
            }
            validate_protocol(v, p, &pp);
            if let Some(name) = p
                .get("name")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                && !is_dns1123_label(name)
            {
                v.push(Cause::invalid(
                    format!("{pp}.name"),
                    &Value::from(name),
                    DNS1123_LABEL_MSG,
                ));
            }
        }
    }
}

fn validate_lease(v: &mut V, obj: &Value) {
    if let Some(d) = obj
        .get("spec")
        .and_then(|s| s.get("leaseDurationSeconds"))
        .filter(|x| !x.is_null())
        && d.as_i64().is_none_or(|n| n <= 0)
    {
        v.push(Cause::invalid(
            "spec.leaseDurationSeconds",
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = obj
        .get("spec")
        .and_then(|s| s.get("leaseTransitions"))
        .filter(|x| !x.is_null())
        && t.as_i64().is_none_or(|n| n < 0)
    {
        v.push(Cause::invalid(
            "spec.leaseTransitions",
            t,
            "must be greater than or equal to 0",
        ));
    }
}

fn validate_event(v: &mut V, obj: &Value) {
    match obj.get("involvedObject") {
        Some(Value::Object(io)) => {
            let ev_ns = crate::meta::namespace(obj).unwrap_or_default();
            if let Some(ns) = io.get("namespace").and_then(Value::as_str)
                && !ns.is_empty()
                && !ev_ns.is_empty()
                && ns != ev_ns
            {
                v.push(Cause::invalid(
                    "involvedObject.namespace",
                    &Value::from(ns),
                    "does not match event.namespace",
                ));
            }
        }
        _ => v.push(Cause::required("involvedObject")),
    }
    if let Some(t) = obj.get("type").filter(|x| !x.is_null()) {
        const TYPES: &[&str] = &["Normal", "Warning"];
        if !t.as_str().is_some_and(|s| TYPES.contains(&s)) {
            v.push(Cause::not_supported("type", t, TYPES));
        }
    }
}

fn validate_node(v: &mut V, obj: &Value) {
    let Some(spec) = obj.get("spec") else { return };
    if let Some(cidrs) = array_field(v, spec, "podCIDRs", "spec.podCIDRs") {
        for (i, c) in cidrs.iter().enumerate() {
            let ok = c
                .as_str()
                .and_then(|s| s.split_once('/'))
                .is_some_and(|(ip, len)| {
                    let max = if ip.contains(':') { 128 } else { 32 };
                    valid_ip(ip) && len.parse::<u8>().is_ok_and(|l| l <= max)
                });
            if !ok {
                v.push(Cause::invalid(
                    format!("spec.podCIDRs[{i}]"),
                    c,
                    "must be a valid CIDR",
                ));
            }
        }
    }
}

/// Validates an object for create (and, with [`validate_update`], update). Empty means valid.
pub fn validate(info: &ResourceInfo, obj: &Value) -> Vec<Cause> {
    let mut v = V { causes: Vec::new() };
    if !obj.is_object() {
        v.push(Cause::type_invalid("", obj, "must be an object"));
        return v.causes;
    }
    validate_metadata(&mut v, info, obj);
    match info.kind {
        "Pod" => validate_pod(&mut v, obj),
        "Service" => validate_service(&mut v, obj),
        "Secret" => validate_secret(&mut v, obj),
        "ConfigMap" => validate_configmap(&mut v, obj),
        "Endpoints" => validate_endpoints(&mut v, obj),
        "EndpointSlice" => validate_endpointslice(&mut v, obj),
        "Lease" => validate_lease(&mut v, obj),
        "Event" => validate_event(&mut v, obj),
        "Node" => validate_node(&mut v, obj),
        "Deployment" => workloads::validate_deployment(&mut v, obj),
        "ReplicaSet" => workloads::validate_replicaset(&mut v, obj),
        "Job" => workloads::validate_job(&mut v, obj),
        _ => {}
    }
    v.causes
}

const IMMUTABLE: &str = "field is immutable";

fn container_names(obj: &Value, key: &str) -> Vec<String> {
    obj.get("spec")
        .and_then(|s| s.get(key))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| {
                    c.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The extra rules of an update from `old` to `new` (immutable fields). Empty means allowed.
pub fn validate_update(info: &ResourceInfo, old: &Value, new: &Value) -> Vec<Cause> {
    let mut v = V { causes: Vec::new() };
    for field in ["name", "namespace", "uid"] {
        let o = old
            .get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Value::as_str);
        let n = new
            .get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Value::as_str);
        // uid may be omitted by the client (the apiserver carries it over); it may not change.
        if o != n && !(field == "uid" && n.is_none()) {
            v.push(Cause::invalid(
                format!("metadata.{field}"),
                &Value::from(n.unwrap_or_default()),
                IMMUTABLE,
            ));
        }
    }
    match info.kind {
        "Service" => {
            let o = meta::str_at(old, &["spec", "clusterIP"]).unwrap_or_default();
            let n = meta::str_at(new, &["spec", "clusterIP"]).unwrap_or_default();
            let to_external = meta::str_at(new, &["spec", "type"]) == Some("ExternalName");
            // An empty clusterIP in the new object means "keep the allocated one": kube-apiserver copies
            // allocated values from the old object before validating, and the lab's apiserver should too.
            if !o.is_empty() && !n.is_empty() && o != n && !to_external {
                v.push(Cause::invalid("spec.clusterIP", &Value::from(n), IMMUTABLE));
            }
        }
        "Pod" => {
            for key in ["containers", "initContainers"] {
                if container_names(old, key) != container_names(new, key) {
                    v.push(Cause::forbidden(
                        format!("spec.{key}"),
                        "pod updates may not add or remove containers",
                    ));
                }
            }
            let o = meta::str_at(old, &["spec", "nodeName"]).unwrap_or_default();
            let n = meta::str_at(new, &["spec", "nodeName"]).unwrap_or_default();
            if !o.is_empty() && o != n {
                v.push(Cause::invalid("spec.nodeName", &Value::from(n), IMMUTABLE));
            }
        }
        "Secret" | "ConfigMap" => {
            if info.kind == "Secret" {
                let o = old.get("type").and_then(Value::as_str).unwrap_or("Opaque");
                let n = new.get("type").and_then(Value::as_str).unwrap_or("Opaque");
                if o != n {
                    v.push(Cause::invalid("type", &Value::from(n), IMMUTABLE));
                }
            }
            if old.get("immutable").and_then(Value::as_bool) == Some(true) {
                if new.get("immutable").and_then(Value::as_bool) != Some(true) {
                    v.push(Cause::forbidden(
                        "immutable",
                        "field is immutable when `immutable` is set",
                    ));
                }
                for field in ["data", "binaryData"] {
                    let empty = Value::Object(Map::new());
                    let norm = |o: &Value| {
                        o.get(field)
                            .filter(|d| !d.is_null())
                            .cloned()
                            .unwrap_or_else(|| empty.clone())
                    };
                    if norm(old) != norm(new) {
                        v.push(Cause::forbidden(
                            field,
                            "field is immutable when `immutable` is set",
                        ));
                    }
                }
            }
        }
        "Deployment" | "ReplicaSet" => workloads::validate_selector_unchanged(&mut v, old, new),
        "Job" => workloads::validate_job_update(&mut v, old, new),
        "EndpointSlice" if old.get("addressType") != new.get("addressType") => {
            v.push(Cause::invalid(
                "addressType",
                new.get("addressType").unwrap_or(&Value::Null),
                IMMUTABLE,
            ));
        }
        _ => {}
    }
    v.causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{lookup, resources};
    use serde_json::json;

    fn info(g: &str, r: &str) -> &'static ResourceInfo {
        lookup(g, "v1", r).expect("resource")
    }

    fn fields(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(|c| c.field.clone()).collect()
    }

    fn pod() -> Value {
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default","labels":{"app":"web"}},
            "spec":{"containers":[{"name":"app","image":"proxylab/echo-http:1",
                "ports":[{"name":"http","containerPort":8080,"protocol":"TCP"},{"name":"https","containerPort":8443}],
                "env":[{"name":"A","value":"1"}]}]}})
    }

    #[test]
    fn valid_objects_pass() {
        assert_eq!(validate(info("", "pods"), &pod()), vec![]);
        let svc = json!({"metadata":{"name":"web","namespace":"default"},"spec":{"type":"NodePort","selector":{"app":"web"},
            "ports":[{"name":"http","port":80,"targetPort":"http","nodePort":30080},{"name":"dns","port":53,"protocol":"UDP","targetPort":5353}]}});
        assert_eq!(validate(info("", "services"), &svc), vec![]);
        let ns = json!({"metadata":{"name":"kube-system"}});
        assert_eq!(validate(info("", "namespaces"), &ns), vec![]);
        let es = json!({"metadata":{"name":"web-abc","namespace":"default"},"addressType":"IPv4",
            "endpoints":[{"addresses":["127.0.30.5"],"conditions":{"ready":true}}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]});
        assert_eq!(
            validate(
                lookup("discovery.k8s.io", "v1", "endpointslices").expect("es"),
                &es
            ),
            vec![]
        );
        let sec = json!({"metadata":{"name":"default-token","namespace":"default","annotations":{"kubernetes.io/service-account.name":"default"}},
            "type":"kubernetes.io/service-account-token"});
        assert_eq!(validate(info("", "secrets"), &sec), vec![]);
        let lease = json!({"metadata":{"name":"node-1","namespace":"kube-node-lease"},"spec":{"holderIdentity":"node-1","leaseDurationSeconds":40}});
        assert_eq!(
            validate(
                lookup("coordination.k8s.io", "v1", "leases").expect("lease"),
                &lease
            ),
            vec![]
        );
    }

    #[test]
    fn pod_errors() {
        let mut p = pod();
        p["metadata"]["name"] = json!("Web_1");
        p["metadata"]["labels"] = json!({"bad key!":"x","ok":"-bad"});
        p["spec"]["containers"] = json!([
            {"name":"app","ports":[{"containerPort":0},{"containerPort":80,"protocol":"HTTP"},{"containerPort":81,"name":"way-too-long-port-name"}]},
            {"name":"app","image":"x","env":[{"value":"no name"}]}
        ]);
        p["spec"]["restartPolicy"] = json!("Sometimes");
        let causes = validate(info("", "pods"), &p);
        assert_eq!(
            fields(&causes),
            [
                "metadata.name",
                "metadata.labels",
                "metadata.labels.ok",
                "spec.containers[0].image",
                "spec.containers[0].ports[0].containerPort",
                "spec.containers[0].ports[1].protocol",
                "spec.containers[0].ports[2].name",
                "spec.containers[1].name",
                "spec.containers[1].env[0].name",
                "spec.restartPolicy",
            ]
        );
        assert_eq!(causes[3].reason, "FieldValueRequired");
        assert_eq!(causes[7].reason, "FieldValueDuplicate");
        assert_eq!(causes[9].reason, "FieldValueNotSupported");
        let no_spec = json!({"metadata":{"name":"a","namespace":"default"}});
        assert_eq!(fields(&validate(info("", "pods"), &no_spec)), ["spec"]);
        let empty = json!({"metadata":{"name":"a","namespace":"default"},"spec":{"containers":[]}});
        assert_eq!(
            fields(&validate(info("", "pods"), &empty)),
            ["spec.containers"]
        );
        assert_eq!(
            fields(&validate(info("", "pods"), &json!({}))),
            ["metadata", "spec"]
        );
        assert_eq!(fields(&validate(info("", "pods"), &json!("x"))), [""]);
    }

    #[test]
    fn scope_and_names() {
        let no_ns = json!({"metadata":{"name":"a"},"data":{}});
        assert_eq!(
            fields(&validate(info("", "configmaps"), &no_ns)),
            ["metadata.namespace"]
        );
        let node_ns = json!({"metadata":{"name":"node-1","namespace":"default"}});
        assert_eq!(
            fields(&validate(info("", "nodes"), &node_ns)),
            ["metadata.namespace"]
        );
        let dotted_ns = json!({"metadata":{"name":"a.b"}});
        assert_eq!(
            fields(&validate(info("", "namespaces"), &dotted_ns)),
            ["metadata.name"]
        );
        let svc_digit =
            json!({"metadata":{"name":"1web","namespace":"d"},"spec":{"ports":[{"port":80}]}});
        assert_eq!(
            fields(&validate(info("", "services"), &svc_digit)),
            ["metadata.name"]
        );
        let unnamed = json!({"metadata":{"namespace":"d"}});
        assert_eq!(
            fields(&validate(info("", "configmaps"), &unnamed)),
            ["metadata.name"]
        );
    }

    #[test]
    fn service_errors() {
        let svc = json!({"metadata":{"name":"web","namespace":"d"},"spec":{"type":"Weird","clusterIP":"1.2.3",
            "ports":[{"port":70000,"nodePort":30000},{"port":80,"targetPort":"Not_A_Name"},{"name":"x","port":80}],
            "sessionAffinity":"Sticky"}});
        let c = validate(info("", "services"), &svc);
        assert_eq!(
            fields(&c),
            [
                "spec.type",
                "spec.clusterIP",
                "spec.ports[0].name",
                "spec.ports[0].port",
                "spec.ports[0].nodePort",
                "spec.ports[1].name",
                "spec.ports[1].targetPort",
                "spec.ports[2]",
                "spec.sessionAffinity"
            ]
        );
        let headless = json!({"metadata":{"name":"h","namespace":"d"},"spec":{"clusterIP":"None"}});
        assert_eq!(validate(info("", "services"), &headless), vec![]);
        let no_ports = json!({"metadata":{"name":"h","namespace":"d"},"spec":{}});
        assert_eq!(
            fields(&validate(info("", "services"), &no_ports)),
            ["spec.ports"]
        );
        let ext = json!({"metadata":{"name":"e","namespace":"d"},"spec":{"type":"ExternalName"}});
        assert_eq!(
            fields(&validate(info("", "services"), &ext)),
            ["spec.externalName"]
        );
    }

    #[test]
    fn data_and_slices() {
        let sec = json!({"metadata":{"name":"s","namespace":"d"},"type":"kubernetes.io/service-account-token","data":{"ok":"aGk=","bad":"***","bad key":"aGk="}});
        assert_eq!(
            fields(&validate(info("", "secrets"), &sec)),
            [
                "data[bad]",
                "data",
                "metadata.annotations[kubernetes.io/service-account.name]"
            ]
        );
        let cm = json!({"metadata":{"name":"c","namespace":"d"},"data":{"a":"1"},"binaryData":{"a":"AA=="}});
        assert_eq!(fields(&validate(info("", "configmaps"), &cm)), ["data"]);
        let es = json!({"metadata":{"name":"e","namespace":"d"},"addressType":"IPv4",
            "endpoints":[{"addresses":["::1"]},{"addresses":[]},{}],"ports":[{"port":-1,"protocol":"ICMP"}]});
        assert_eq!(
            fields(&validate(
                lookup("discovery.k8s.io", "v1", "endpointslices").expect("es"),
                &es
            )),
            [
                "endpoints[0].addresses[0]",
                "endpoints[1].addresses",
                "endpoints[2].addresses",
                "ports[0].port",
                "ports[0].protocol"
            ]
        );
        let no_type = json!({"metadata":{"name":"e","namespace":"d"}});
        assert_eq!(
            fields(&validate(
                lookup("discovery.k8s.io", "v1", "endpointslices").expect("es"),
                &no_type
            )),
            ["addressType"]
        );
        let ep = json!({"metadata":{"name":"e","namespace":"d"},"subsets":[{"addresses":[{"ip":"x"}],"ports":[{"port":0}]}]});
        assert_eq!(
            fields(&validate(info("", "endpoints"), &ep)),
            ["subsets[0].addresses[0].ip", "subsets[0].ports[0].port"]
        );
        let ev = json!({"metadata":{"name":"e","namespace":"d"},"type":"Info"});
        assert_eq!(
            fields(&validate(info("", "events"), &ev)),
            ["involvedObject", "type"]
        );
        let lease =
            json!({"metadata":{"name":"l","namespace":"d"},"spec":{"leaseDurationSeconds":0}});
        assert_eq!(
            fields(&validate(
                lookup("coordination.k8s.io", "v1", "leases").expect("l"),
                &lease
            )),
            ["spec.leaseDurationSeconds"]
        );
        let node = json!({"metadata":{"name":"n"},"spec":{"podCIDRs":["127.0.30.0/25","nope"]}});
        assert_eq!(
            fields(&validate(info("", "nodes"), &node)),
            ["spec.podCIDRs[1]"]
        );
    }

    #[test]
    fn updates() {
        let svc = |ip: &str| json!({"metadata":{"name":"web","namespace":"d","uid":"u"},"spec":{"clusterIP":ip,"ports":[{"port":80}]}});
        let s = info("", "services");
        assert_eq!(
            validate_update(s, &svc("127.0.40.1"), &svc("127.0.40.1")),
            vec![]
        );
        assert_eq!(
            fields(&validate_update(s, &svc("127.0.40.1"), &svc("127.0.40.2"))),
            ["spec.clusterIP"]
        );
        assert_eq!(validate_update(s, &svc(""), &svc("127.0.40.2")), vec![]);
        assert_eq!(validate_update(s, &svc("127.0.40.1"), &svc("")), vec![]);
        let mut renamed = svc("127.0.40.1");
        renamed["metadata"]["name"] = json!("other");
        assert_eq!(
            fields(&validate_update(s, &svc("127.0.40.1"), &renamed)),
            ["metadata.name"]
        );

        let p = info("", "pods");
        let mut bound = pod();
        bound["spec"]["nodeName"] = json!("node-1");
        assert_eq!(validate_update(p, &pod(), &bound), vec![]);
        let mut moved = bound.clone();
        moved["spec"]["nodeName"] = json!("node-2");
        assert_eq!(
            fields(&validate_update(p, &bound, &moved)),
            ["spec.nodeName"]
        );
        let mut more = pod();
        more["spec"]["containers"][0]["name"] = json!("renamed");
        assert_eq!(
            fields(&validate_update(p, &pod(), &more)),
            ["spec.containers"]
        );

        let sec = |ty: &str, data: Value| json!({"metadata":{"name":"s","namespace":"d"},"type":ty,"immutable":true,"data":data});
        let se = info("", "secrets");
        assert_eq!(
            fields(&validate_update(
                se,
                &sec("Opaque", json!({})),
                &sec("x", json!({}))
            )),
            ["type"]
        );
        assert_eq!(
            fields(&validate_update(
                se,
                &sec("Opaque", json!({})),
                &sec("Opaque", json!({"a":"AA=="}))
            )),
            ["data"]
        );
        let es = lookup("discovery.k8s.io", "v1", "endpointslices").expect("es");
        assert_eq!(
            fields(&validate_update(
                es,
                &json!({"addressType":"IPv4"}),
                &json!({"addressType":"IPv6"})
            )),
            ["addressType"]
        );
    }

    #[test]
    fn never_panics_on_odd_shapes() {
        let odd = [
            json!({"metadata":[],"spec":"x"}),
            json!({"metadata":{"name":5,"labels":[1],"annotations":"a"},"spec":{"containers":{"a":1},"ports":5}}),
            json!({"metadata":{"name":"a","namespace":"d"},"spec":{"containers":[1,null,{"ports":[null,"x"]}],"ports":[null,{"port":"80"}],"selector":[]},
                "data":[],"subsets":[{"addresses":"x"}],"endpoints":[5],"addressType":7,"involvedObject":1}),
            Value::Null,
        ];
        for info in resources() {
            for o in &odd {
                let _ = validate(info, o);
                let _ = validate_update(info, o, &odd[0]);
            }
        }
    }
}
