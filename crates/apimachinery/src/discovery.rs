//! Discovery: how clients learn which resources a server has.
//!
//! Before doing anything, kubectl and client libraries read:
//! - `/version` ([`version_info`]) — kubectl's dispatcher picks a kubectl binary from `major`/`minor`;
//! - `/api` ([`api_versions`]) — the versions of the legacy core group (`v1`);
//! - `/api/v1` and `/apis/{group}/{version}` ([`api_resource_list`]) — every resource with its kind,
//!   scope, verbs, short names (`po`, `svc`), categories (`all`) and subresources (`pods/status`);
//! - `/apis` ([`api_group_list`]) and `/apis/{group}` ([`api_group`]) — the named groups;
//! - *aggregated discovery* ([`aggregated_discovery`]): since 1.26 kubectl first asks `/api` and `/apis`
//!   with `Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,…` and gets
//!   everything in two requests. If the server answers with a plain `APIVersions`/`APIGroupList`
//!   (Content-Type without `as=APIGroupDiscoveryList`) kubectl falls back to the per-group lists, so
//!   aggregated discovery is an optimisation. An apiserver that serves it must set the response
//!   Content-Type to [`AGGREGATED_V2_CONTENT_TYPE`] (or the v2beta1 one).
//!
//! All of it is generated from [`crate::registry`], so discovery can never list a resource the
//! registry does not know (or miss one it does).

use serde_json::{Map, Value, json};

use crate::registry::{self, ResourceInfo};

/// Content-Type of an aggregated discovery v2 response.
pub const AGGREGATED_V2_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
/// Content-Type of an aggregated discovery v2beta1 response (kubectl ≤ 1.29 asks for it).
pub const AGGREGATED_V2BETA1_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// The Kubernetes version the lab claims to be.
pub const GIT_VERSION: &str = "v1.33.0-proxylab";

/// `/version`: a kube-apiserver `version.Info`. The lab reports 1.33 (the dispatcher in front of kubectl
/// picks kubectl 1.33). Build fields are fixed strings so the answer is deterministic; `goVersion` and
/// `compiler` say honestly that this server is not built with Go.
pub fn version_info() -> Value {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "none (proxylab is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{arch}", std::env::consts::OS),
    })
}

/// Which aggregated discovery version an `Accept` header asks for first, if any: `Some("v2")`,
/// `Some("v2beta1")` or `None` (plain lists). Media ranges are considered in order, as kubectl lists
/// its preference first.
pub fn negotiate_aggregated(accept: &str) -> Option<&'static str> {
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        if media != "application/json" {
            // Anything else kubectl sends after the aggregated types (`application/json` plain, `*/*`)
            // means "plain is fine"; keep looking only for later aggregated ranges.
            continue;
        }
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let has = |k: &str, v: &str| {
            params
                .iter()
                .any(|(pk, pv)| pk.trim() == k && pv.trim() == v)
        };
        if has("g", "apidiscovery.k8s.io") && has("as", "APIGroupDiscoveryList") {
            if has("v", "v2") {
                return Some("v2");
            }
            if has("v", "v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

/// `/api`: the legacy group's versions. `server_address` is `host:port` as clients should reach it.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// kube-apiserver's `storageVersionHash`: base64 of the first 8 bytes of SHA-256 of `group/version/kind`.
/// Clients use it only to notice storage migrations; it is stable per kind.
pub fn storage_version_hash(info: &ResourceInfo) -> String {
    use base64::Engine;
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{}/{}/{}", info.group, info.version, info.kind).as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(&digest.as_ref()[..8])
}

/// Group, version, kind and verbs of a served subresource (most answer with the parent's kind).
fn subresource_kind_verbs(
    info: &ResourceInfo,
    sub: &str,
) -> (&'static str, &'static str, String, &'static [&'static str]) {
    let (group, version): (&'static str, &'static str) = (info.group, info.version);
    let own = |kind: String, verbs: &'static [&'static str]| (group, version, kind, verbs);
    match sub {
        "status" => own(info.kind.to_string(), &["get", "patch", "update"]),
        "proxy" => own(
            format!("{}ProxyOptions", info.kind),
            &["create", "delete", "get", "patch", "update"],
        ),
        "binding" => own("Binding".to_string(), &["create"]),
        "log" => own("Pod".to_string(), &["get"]),
        "exec" => own("PodExecOptions".to_string(), &["create", "get"]),
        "attach" => own("PodAttachOptions".to_string(), &["create", "get"]),
        "portforward" => own("PodPortForwardOptions".to_string(), &["create", "get"]),
        "scale" => (
            "autoscaling",
            "v1",
            "Scale".to_string(),
            &["get", "patch", "update"],
        ),
        "token" => (
            "authentication.k8s.io",
            "v1",
            "TokenRequest".to_string(),
            &["create"],
        ),
        _ => own(info.kind.to_string(), &["get"]),
    }
}

fn resource_entry(info: &ResourceInfo) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(info.resource));
    m.insert("singularName".into(), json!(info.singular));
    m.insert("namespaced".into(), json!(info.namespaced));
    m.insert("kind".into(), json!(info.kind));
    m.insert("verbs".into(), json!(info.verbs));
    if !info.short_names.is_empty() {
        m.insert("shortNames".into(), json!(info.short_names));
    }
    if !info.categories.is_empty() {
        m.insert("categories".into(), json!(info.categories));
    }
    m.insert(
        "storageVersionHash".into(),
        json!(storage_version_hash(info)),
    );
    Value::Object(m)
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// `/api/v1` (group `""`) or `/apis/{group}/{version}`: an `APIResourceList`, sorted by name like
/// kube-apiserver, subresources (`pods/status`) right after their resource. `None` for an unknown
/// group-version.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let infos: Vec<&ResourceInfo> = registry::resources_in(group, version).collect();
    if infos.is_empty() {
        return None;
    }
    let mut entries: Vec<(String, Value)> = Vec::new();
    for info in infos {
        entries.push((info.resource.to_string(), resource_entry(info)));
        for sub in info.subresources {
            let (group, version, kind, verbs) = subresource_kind_verbs(info, sub);
            let name = format!("{}/{sub}", info.resource);
            let mut entry = Map::new();
            entry.insert("name".into(), json!(name));
            entry.insert("singularName".into(), json!(""));
            entry.insert("namespaced".into(), json!(info.namespaced));
            // APIResource names the group/version only when it differs from the list's.
            if group != info.group || version != info.version {
                entry.insert("group".into(), json!(group));
                entry.insert("version".into(), json!(version));
            }
            entry.insert("kind".into(), json!(kind));
            entry.insert("verbs".into(), json!(verbs));
            entries.push((name, Value::Object(entry)));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": entries.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    }))
}

fn group_entry(group: &str) -> Value {
    let versions: Vec<Value> = registry::versions_of(group)
        .iter()
        .map(|v| json!({"groupVersion": group_version(group, v), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// `/apis`: every named group (the core group is not listed here, as in Kubernetes).
pub fn api_group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": registry::groups().into_iter().map(group_entry).collect::<Vec<_>>(),
    })
}

/// `/apis/{group}`: one `APIGroup`, `None` if the lab does not serve it.
pub fn api_group(group: &str) -> Option<Value> {
    if group.is_empty() || !registry::groups().contains(&group) {
        return None;
    }
    let mut v = group_entry(group);
    if let Value::Object(m) = &mut v {
        m.insert("kind".into(), json!("APIGroup"));
        m.insert("apiVersion".into(), json!("v1"));
    }
    Some(v)
}

fn aggregated_resource(info: &ResourceInfo) -> Value {
    let gvk = |kind: &str| json!({"group": info.group, "version": info.version, "kind": kind});
    let mut m = Map::new();
    m.insert("resource".into(), json!(info.resource));
    m.insert("responseKind".into(), gvk(info.kind));
    m.insert(
        "scope".into(),
        json!(if info.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        }),
    );
    m.insert("singularResource".into(), json!(info.singular));
    m.insert("verbs".into(), json!(info.verbs));
    if !info.short_names.is_empty() {
        m.insert("shortNames".into(), json!(info.short_names));
    }
    if !info.categories.is_empty() {
        m.insert("categories".into(), json!(info.categories));
    }
    if !info.subresources.is_empty() {
        let subs: Vec<Value> = info
            .subresources
            .iter()
            .map(|sub| {
                let (group, version, kind, verbs) = subresource_kind_verbs(info, sub);
                json!({"subresource": sub,
                    "responseKind": {"group": group, "version": version, "kind": kind},
                    "verbs": verbs})
            })
            .collect();
        m.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(m)
}

fn aggregated_group(group: &str) -> Value {
    let versions: Vec<Value> = registry::versions_of(group)
        .iter()
        .map(|v| {
            let mut resources: Vec<&ResourceInfo> = registry::resources_in(group, v).collect();
            resources.sort_by_key(|r| r.resource);
            json!({
                "version": v,
                "resources": resources.into_iter().map(aggregated_resource).collect::<Vec<_>>(),
                "freshness": "Current",
            })
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`): for `/api` when
/// `legacy_core` (one item, the core group, name `""`), else for `/apis` (one item per named group).
pub fn aggregated_discovery(legacy_core: bool) -> Value {
    aggregated_discovery_as(legacy_core, "apidiscovery.k8s.io/v2")
}

/// [`aggregated_discovery`] with another `apiVersion` (`apidiscovery.k8s.io/v2beta1` has the same shape).
pub fn aggregated_discovery_as(legacy_core: bool, api_version: &str) -> Value {
    let items: Vec<Value> = if legacy_core {
        vec![aggregated_group("")]
    } else {
        registry::groups()
            .into_iter()
            .map(aggregated_group)
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &Value) -> Vec<String> {
        list["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn core_resource_list() {
        let l = api_resource_list("", "v1").expect("v1");
        assert_eq!(l["groupVersion"], "v1");
        assert_eq!(
            names(&l),
            [
                "configmaps",
                "endpoints",
                "events",
                "namespaces",
                "namespaces/status",
                "nodes",
                "nodes/proxy",
                "nodes/status",
                "pods",
                "pods/attach",
                "pods/binding",
                "pods/exec",
                "pods/log",
                "pods/portforward",
                "pods/proxy",
                "pods/status",
                "secrets",
                "serviceaccounts",
                "serviceaccounts/token",
                "services",
                "services/proxy",
                "services/status"
            ]
        );
        let at = |name: &str| {
            names(&l)
                .iter()
                .position(|n| n == name)
                .unwrap_or_else(|| panic!("{name}"))
        };
        let pods = &l["resources"][at("pods")];
        assert_eq!(pods["kind"], "Pod");
        assert_eq!(pods["singularName"], "pod");
        assert_eq!(pods["namespaced"], true);
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(
            pods["verbs"]
                .as_array()
                .is_some_and(|v| v.contains(&json!("watch")))
        );
        let token = names(&l)
            .iter()
            .position(|n| n == "serviceaccounts/token")
            .expect("token");
        assert_eq!(
            l["resources"][token],
            json!({"name":"serviceaccounts/token","singularName":"","namespaced":true,
                "group":"authentication.k8s.io","version":"v1","kind":"TokenRequest","verbs":["create"]})
        );
        let ssr = api_resource_list("authentication.k8s.io", "v1").expect("authn");
        assert_eq!(ssr["resources"][0]["kind"], "SelfSubjectReview");
        assert_eq!(ssr["resources"][0]["verbs"], json!(["create"]));
        let verbs = |i: usize| {
            l["resources"][i]["verbs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        };
        assert!(verbs(at("pods")).contains(&json!("deletecollection")));
        assert!(!verbs(3).contains(&json!("deletecollection")), "namespaces");
        // The value kube-apiserver publishes for pods, which proves the hash recipe.
        assert_eq!(pods["storageVersionHash"], "xPOwRZ+Yhw8=");
        assert_eq!(
            l["resources"][at("pods/binding")],
            json!({"name":"pods/binding","singularName":"","namespaced":true,"kind":"Binding","verbs":["create"]})
        );
        let status = &l["resources"][at("pods/status")];
        assert_eq!(
            status,
            &json!({"name":"pods/status","singularName":"","namespaced":true,"kind":"Pod","verbs":["get","patch","update"]})
        );
        assert_eq!(l["resources"][3]["namespaced"], false);
        assert!(api_resource_list("", "v2").is_none());
        assert!(api_resource_list("policy", "v1").is_none());
        let batch = api_resource_list("batch", "v1").expect("batch");
        assert_eq!(names(&batch), ["jobs", "jobs/status"]);
        let apps = api_resource_list("apps", "v1").expect("apps");
        assert_eq!(
            names(&apps),
            [
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status"
            ]
        );
        assert_eq!(
            apps["resources"][1],
            json!({"name":"deployments/scale","singularName":"","namespaced":true,"group":"autoscaling",
                "version":"v1","kind":"Scale","verbs":["get","patch","update"]})
        );
    }

    #[test]
    fn groups() {
        let l = api_group_list();
        assert_eq!(l["kind"], "APIGroupList");
        assert_eq!(l["groups"][0]["name"], "apps");
        assert_eq!(l["groups"][1]["name"], "authentication.k8s.io");
        assert_eq!(l["groups"][2]["name"], "batch");
        assert_eq!(l["groups"][3]["name"], "coordination.k8s.io");
        assert_eq!(
            l["groups"][4]["preferredVersion"],
            json!({"groupVersion":"discovery.k8s.io/v1","version":"v1"})
        );
        assert_eq!(
            api_group("discovery.k8s.io").expect("g")["kind"],
            "APIGroup"
        );
        assert!(api_group("").is_none());
        assert!(api_group("policy").is_none());
        let es = api_resource_list("discovery.k8s.io", "v1").expect("es");
        assert_eq!(es["groupVersion"], "discovery.k8s.io/v1");
        assert_eq!(names(&es), ["endpointslices"]);
        let v = api_versions("127.0.10.1:6443");
        assert_eq!(
            v["serverAddressByClientCIDRs"][0]["serverAddress"],
            "127.0.10.1:6443"
        );
    }

    #[test]
    fn aggregated() {
        let core = aggregated_discovery(true);
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(core["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let res = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(res.len(), 9);
        let nodes = res
            .iter()
            .find(|r| r["resource"] == "nodes")
            .expect("nodes");
        assert_eq!(nodes["scope"], "Cluster");
        assert_eq!(
            nodes["subresources"][0]["responseKind"]["kind"],
            "NodeProxyOptions"
        );
        assert_eq!(nodes["subresources"][1]["responseKind"]["kind"], "Node");
        let pods = res.iter().find(|r| r["resource"] == "pods").expect("pods");
        let sub = |name: &str| {
            pods["subresources"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["subresource"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("pods/{name}"))
        };
        assert_eq!(sub("binding")["responseKind"]["kind"], "Binding");
        assert_eq!(sub("exec")["responseKind"]["kind"], "PodExecOptions");
        assert_eq!(sub("exec")["verbs"], json!(["create", "get"]));
        assert_eq!(
            sub("portforward")["responseKind"]["kind"],
            "PodPortForwardOptions"
        );
        assert_eq!(sub("log")["verbs"], json!(["get"]));
        let apis = aggregated_discovery(false);
        assert_eq!(apis["items"].as_array().map(Vec::len), Some(5));
        assert_eq!(
            apis["items"][4]["versions"][0]["resources"][0]["responseKind"]["group"],
            "discovery.k8s.io"
        );
        assert_eq!(
            aggregated_discovery_as(false, "apidiscovery.k8s.io/v2beta1")["apiVersion"],
            "apidiscovery.k8s.io/v2beta1"
        );
    }

    #[test]
    fn accept_negotiation() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate_aggregated(kubectl), Some("v2"));
        assert_eq!(
            negotiate_aggregated(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList, application/json"
            ),
            Some("v2beta1")
        );
        assert_eq!(negotiate_aggregated("application/json"), None);
        assert_eq!(negotiate_aggregated(""), None);
    }

    #[test]
    fn version() {
        let v = version_info();
        assert_eq!(
            (v["major"].as_str(), v["minor"].as_str()),
            (Some("1"), Some("33"))
        );
        for k in [
            "gitVersion",
            "gitCommit",
            "gitTreeState",
            "buildDate",
            "goVersion",
            "compiler",
            "platform",
        ] {
            assert!(v[k].as_str().is_some_and(|s| !s.is_empty()), "{k}");
        }
        assert!(
            v["gitVersion"]
                .as_str()
                .is_some_and(|s| s.starts_with("v1.33."))
        );
    }
}
