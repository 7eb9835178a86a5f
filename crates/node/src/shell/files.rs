//! What the kubelet gives every container: its files (`/etc/hosts`, `/etc/hostname`,
//! `/etc/resolv.conf`, volumes) and its environment (spec `env`, Service link variables).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, Pod};
use proxylab_core::cluster::ClusterView;

use super::dns::CLUSTER_DOMAIN;
use super::vfs::Vfs;

/// The pod's hostname: `spec.hostname`, else its name (truncated to 63 characters as the kubelet does).
pub fn hostname(pod: &Pod) -> String {
    let spec_hostname = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty());
    let name = spec_hostname.unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    name.chars().take(63).collect()
}

/// `/etc/hosts` as the kubelet writes it (`managedHostsFileContent`).
pub fn hosts_file(pod: &Pod, pod_ip: IpAddr) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let host = hostname(pod);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    match pod
        .spec
        .as_ref()
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        Some(subdomain) => text.push_str(&format!(
            "{pod_ip}\t{host}.{subdomain}.{namespace}.svc.{CLUSTER_DOMAIN}\t{host}\n"
        )),
        None => text.push_str(&format!("{pod_ip}\t{host}\n")),
    }
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.as_ref());
    if let Some(aliases) = aliases.filter(|a| !a.is_empty()) {
        text.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.clone().unwrap_or_default().join("\t");
            text.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    text
}

/// `/etc/resolv.conf`: the cluster search path, and a note that no server answers it.
pub fn resolv_conf(namespace: &str) -> String {
    format!(
        "# proxylab: the lab runs no DNS server. The shell's fetch and nslookup resolve names\n\
         # from the cluster view (Services, EndpointSlices) as CoreDNS would, with this search path.\n\
         search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n\
         options ndots:5\n"
    )
}

/// The container's files: the kubelet-managed ones plus the mounted volumes (path → file content,
/// or None for a directory), and an empty `/tmp` and `/root`.
pub fn container_files(pod: &Pod, pod_ip: IpAddr, volumes: &[(String, Option<Vec<u8>>)]) -> Vfs {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut fs = Vfs::new();
    fs.add_file("/etc/hostname", format!("{}\n", hostname(pod)));
    fs.add_file("/etc/hosts", hosts_file(pod, pod_ip));
    fs.add_file("/etc/resolv.conf", resolv_conf(namespace));
    fs.add_dir("/tmp");
    fs.add_dir("/root");
    for (path, content) in volumes {
        match content {
            Some(content) => fs.add_file(path, content.clone()),
            None => fs.add_dir(path),
        }
    }
    fs
}

/// The container's environment, in the order a runtime sets it: `PATH`, `HOSTNAME`, the spec's
/// `env` (values and the downward-API fields the kubelet resolves itself), the Service link
/// variables of the pod's namespace (unless `enableServiceLinks: false`; the `kubernetes` Service's
/// always), `HOME`.
pub fn environment(
    pod: &Pod,
    container: &Container,
    pod_ip: IpAddr,
    host_ip: IpAddr,
    view: Option<&ClusterView>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_owned(), super::PATH.to_owned()),
        ("HOSTNAME".to_owned(), hostname(pod)),
    ];
    let spec = pod.spec.as_ref();
    for var in container.env.iter().flatten() {
        let value = if let Some(v) = &var.value {
            Some(expand_refs(v, &env))
        } else {
            var.value_from
                .as_ref()
                .and_then(|f| f.field_ref.as_ref())
                .and_then(|f| field_value(pod, &f.field_path, pod_ip, host_ip))
        };
        if let Some(value) = value {
            env.retain(|(k, _)| *k != var.name);
            env.push((var.name.clone(), value));
        }
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = spec.and_then(|s| s.enable_service_links).unwrap_or(true);
    if let Some(view) = view {
        let snapshot = view.snapshot();
        for service in snapshot.services.values() {
            let master = service.namespace == "default" && service.name == "kubernetes";
            if !(master || links && service.namespace == namespace) {
                continue;
            }
            let Some(ip) = service.cluster_ips.first() else {
                continue;
            };
            let prefix = service.name.to_uppercase().replace('-', "_");
            if env
                .iter()
                .any(|(k, _)| *k == format!("{prefix}_SERVICE_HOST"))
            {
                continue;
            }
            let Some(first) = service.ports.first() else {
                continue;
            };
            env.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
            env.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
            for port in &service.ports {
                if !port.name.is_empty() {
                    env.push((
                        format!(
                            "{prefix}_SERVICE_PORT_{}",
                            port.name.to_uppercase().replace('-', "_")
                        ),
                        port.port.to_string(),
                    ));
                }
            }
            let proto = first.protocol.as_str().to_lowercase();
            env.push((
                format!("{prefix}_PORT"),
                format!("{proto}://{ip}:{}", first.port),
            ));
            for port in &service.ports {
                let proto = port.protocol.as_str().to_lowercase();
                let base = format!("{prefix}_PORT_{}_{}", port.port, proto.to_uppercase());
                env.push((base.clone(), format!("{proto}://{ip}:{}", port.port)));
                env.push((format!("{base}_PROTO"), proto.clone()));
                env.push((format!("{base}_PORT"), port.port.to_string()));
                env.push((format!("{base}_ADDR"), ip.to_string()));
            }
        }
    }
    env.push(("HOME".to_owned(), "/root".to_owned()));
    env
}

/// `$(VAR)` references to earlier variables, as the kubelet expands them in `env[].value`.
fn expand_refs(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) => {
                let name = &after[..end];
                match env.iter().rev().find(|(k, _)| k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The downward-API fields a `fieldRef` may name.
pub fn field_value(pod: &Pod, path: &str, pod_ip: IpAddr, host_ip: IpAddr) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(pod_ip.to_string()),
        "status.hostIP" | "status.hostIPs" => Some(host_ip.to_string()),
        p => {
            let key = p
                .strip_prefix("metadata.labels['")
                .map(|k| (k, true))
                .or_else(|| p.strip_prefix("metadata.annotations['").map(|k| (k, false)))?;
            let name = key.0.strip_suffix("']")?;
            let map = if key.1 {
                &meta.labels
            } else {
                &meta.annotations
            };
            map.as_ref()?.get(name).cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxylab_core::cluster::ClusterSnapshot;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "default", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {
                "nodeName": "node-1",
                "hostAliases": [{"ip": "127.0.0.9", "hostnames": ["db.local"]}],
                "containers": [{"name": "main", "image": "echo-http", "env": [
                    {"name": "GREETING", "value": "hi"},
                    {"name": "MSG", "value": "$(GREETING) from $(MY_POD)"},
                    {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}
                ]}]
            }
        }))
        .expect("pod")
    }

    #[test]
    fn kubelet_managed_files() {
        let pod = pod();
        let fs = container_files(
            &pod,
            "127.0.30.5".parse().expect("ip"),
            &[("/etc/config/a".into(), Some(b"1".to_vec()))],
        );
        let hosts =
            String::from_utf8(fs.read("/etc/hosts").expect("hosts").to_vec()).expect("utf8");
        assert!(hosts.starts_with("# Kubernetes-managed hosts file."));
        assert!(hosts.contains("127.0.30.5\tweb-1\n"));
        assert!(hosts.contains("127.0.0.9\tdb.local"));
        assert_eq!(fs.read("/etc/hostname").expect("hostname"), "web-1\n");
        assert!(
            String::from_utf8_lossy(fs.read("/etc/resolv.conf").expect("resolv"))
                .contains("search default.svc.cluster.local svc.cluster.local cluster.local")
        );
        assert_eq!(fs.read("/etc/config/a").expect("volume"), "1");
    }

    #[test]
    fn environment_in_runtime_order() {
        let pod = pod();
        let container = pod.spec.as_ref().expect("spec").containers[0].clone();
        let objects = [
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "kubernetes"},
                "spec": {"clusterIP": "127.0.40.1", "ports": [{"name": "https", "port": 443}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "web-svc"},
                "spec": {"clusterIP": "127.0.40.10", "ports": [{"name": "http", "port": 80}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "other", "name": "x"},
                "spec": {"clusterIP": "127.0.40.11", "ports": [{"port": 80}]}}),
        ];
        let view =
            ClusterView::new(ClusterSnapshot::from_objects(objects.iter()).expect("objects"));
        let env = environment(
            &pod,
            &container,
            "127.0.30.5".parse().expect("ip"),
            "127.0.20.1".parse().expect("ip"),
            Some(&view),
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(env[0].0, "PATH");
        assert_eq!(get("HOSTNAME"), Some("web-1"));
        assert_eq!(
            get("MSG"),
            Some("hi from $(MY_POD)"),
            "later variables are not expanded"
        );
        assert_eq!(get("MY_POD"), Some("web-1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("127.0.40.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(get("WEB_SVC_PORT_80_TCP_ADDR"), Some("127.0.40.10"));
        assert_eq!(
            get("X_SERVICE_HOST"),
            None,
            "another namespace's Services are not linked"
        );
        assert_eq!(env.last().map(|(k, _)| k.as_str()), Some("HOME"));
    }
}
