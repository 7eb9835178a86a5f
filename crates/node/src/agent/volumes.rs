//! A container's volumes, as the files its shell sees: the kubelet's volume manager, reduced to
//! reading each source once when the container starts.
//!
//! Supported sources: `configMap`, `secret`, `downwardAPI`, `emptyDir` and `projected`
//! (`serviceAccountToken` through the TokenRequest API, `configMap`, `secret`, `downwardAPI`) — which
//! covers the service-account volume (`kube-api-access-…`) admission adds to pods. `items` select and
//! rename keys; a mount's `subPath` picks one entry. A source that cannot be read (a missing
//! ConfigMap that is not `optional`) is reported as a `FailedMount` warning and the mount stays empty:
//! a real kubelet would hold the container in `ContainerCreating` instead.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use super::api::ApiClient;
use crate::shell::files::field_value;

/// One entry of a mounted volume: a file (Some) or a directory (None), by absolute path.
pub type MountEntry = (String, Option<Vec<u8>>);

/// What mounting produced: the entries, and the problems to report.
#[derive(Debug, Default)]
pub struct Mounted {
    /// Files and directories, absolute paths.
    pub entries: Vec<MountEntry>,
    /// One message per volume that could not be read.
    pub failures: Vec<String>,
}

/// Reads every volume `container` mounts.
pub async fn mount(
    api: &ApiClient,
    pod: &Pod,
    container: &Container,
    pod_ip: IpAddr,
    host_ip: IpAddr,
) -> Mounted {
    let mut mounted = Mounted::default();
    let Some(spec) = pod.spec.as_ref() else {
        return mounted;
    };
    let volumes: Value =
        serde_json::to_value(spec.volumes.clone().unwrap_or_default()).unwrap_or_default();
    let pod_value = serde_json::to_value(pod).unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == mount.name.as_str())
        else {
            mounted.failures.push(format!(
                "volume {:?} is mounted but not declared",
                mount.name
            ));
            continue;
        };
        let files =
            match read_volume(api, &pod_value, pod, namespace, volume, pod_ip, host_ip).await {
                Ok(files) => files,
                Err(message) => {
                    mounted.failures.push(format!(
                        "MountVolume.SetUp failed for volume {:?}: {message}",
                        mount.name
                    ));
                    Vec::new()
                }
            };
        let base = mount.mount_path.trim_end_matches('/').to_owned();
        match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                if let Some((_, content)) = files.into_iter().find(|(p, _)| p == sub) {
                    mounted.entries.push((base, Some(content)));
                }
            }
            None => {
                mounted.entries.push((base.clone(), None));
                for (path, content) in files {
                    mounted
                        .entries
                        .push((format!("{base}/{path}"), Some(content)));
                }
            }
        }
    }
    mounted
}

/// The files of one volume, relative to its root.
async fn read_volume(
    api: &ApiClient,
    pod_value: &Value,
    pod: &Pod,
    namespace: &str,
    volume: &Value,
    pod_ip: IpAddr,
    host_ip: IpAddr,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    if volume["emptyDir"].is_object() {
        return Ok(Vec::new());
    }
    if let Some(source) = volume.get("configMap") {
        return config_map(api, namespace, source).await;
    }
    if let Some(source) = volume.get("secret") {
        return secret(api, namespace, source, "secretName").await;
    }
    if let Some(source) = volume.get("downwardAPI") {
        return downward_api(pod, source, pod_ip, host_ip);
    }
    if let Some(projected) = volume.get("projected") {
        let mut files = Vec::new();
        for source in projected["sources"].as_array().into_iter().flatten() {
            if let Some(token) = source.get("serviceAccountToken") {
                files.push(service_account_token(api, pod_value, namespace, token).await?);
            } else if let Some(s) = source.get("configMap") {
                files.extend(config_map(api, namespace, s).await?);
            } else if let Some(s) = source.get("secret") {
                files.extend(secret(api, namespace, s, "name").await?);
            } else if let Some(s) = source.get("downwardAPI") {
                files.extend(downward_api(pod, s, pod_ip, host_ip)?);
            }
        }
        return Ok(files);
    }
    let kind = volume
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        .unwrap_or_default();
    Err(format!("{kind} volumes are not supported by this node"))
}

/// Keys → files, honouring `items` (key → path) as the kubelet does.
fn select(data: Vec<(String, Vec<u8>)>, source: &Value) -> Result<Vec<(String, Vec<u8>)>, String> {
    let Some(items) = source["items"].as_array() else {
        return Ok(data);
    };
    let mut out = Vec::new();
    for item in items {
        let key = item["key"].as_str().unwrap_or("");
        let path = item["path"].as_str().unwrap_or(key);
        match data.iter().find(|(k, _)| k == key) {
            Some((_, content)) => out.push((path.to_owned(), content.clone())),
            None if source["optional"] == true => {}
            None => return Err(format!("configuration key {key:?} not found")),
        }
    }
    Ok(out)
}

async fn config_map(
    api: &ApiClient,
    namespace: &str,
    source: &Value,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let name = source["name"].as_str().unwrap_or("");
    let path = format!("/api/v1/namespaces/{namespace}/configmaps/{name}");
    let object = match api.call(Method::GET, &path, None).await {
        Ok(o) => o,
        Err(e) if e.is_not_found() && source["optional"] == true => return Ok(Vec::new()),
        Err(e) if e.is_not_found() => return Err(format!("configmap {name:?} not found")),
        Err(e) => return Err(e.to_string()),
    };
    let mut data: Vec<(String, Vec<u8>)> = object["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").as_bytes().to_vec()))
        .collect();
    for (k, v) in object["binaryData"].as_object().into_iter().flatten() {
        if let Ok(bytes) = STANDARD.decode(v.as_str().unwrap_or("")) {
            data.push((k.clone(), bytes));
        }
    }
    select(data, source)
}

async fn secret(
    api: &ApiClient,
    namespace: &str,
    source: &Value,
    name_field: &str,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let name = source[name_field].as_str().unwrap_or("");
    let path = format!("/api/v1/namespaces/{namespace}/secrets/{name}");
    let object = match api.call(Method::GET, &path, None).await {
        Ok(o) => o,
        Err(e) if e.is_not_found() && source["optional"] == true => return Ok(Vec::new()),
        Err(e) if e.is_not_found() => return Err(format!("secret {name:?} not found")),
        Err(e) => return Err(e.to_string()),
    };
    let data = object["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                STANDARD
                    .decode(v.as_str().unwrap_or(""))
                    .unwrap_or_default(),
            )
        })
        .collect();
    select(data, source)
}

fn downward_api(
    pod: &Pod,
    source: &Value,
    pod_ip: IpAddr,
    host_ip: IpAddr,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files = Vec::new();
    for item in source["items"].as_array().into_iter().flatten() {
        let path = item["path"].as_str().unwrap_or("").to_owned();
        let Some(field) = item["fieldRef"]["fieldPath"].as_str() else {
            // resourceFieldRef (limits, requests): nothing is accounted here.
            continue;
        };
        let value = match field {
            "metadata.labels" | "metadata.annotations" => {
                let map = if field == "metadata.labels" {
                    &pod.metadata.labels
                } else {
                    &pod.metadata.annotations
                };
                map.iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}=\"{v}\"\n"))
                    .collect::<String>()
            }
            f => field_value(pod, f, pod_ip, host_ip)
                .ok_or_else(|| format!("unsupported fieldPath {f:?}"))?,
        };
        files.push((path, value.into_bytes()));
    }
    Ok(files)
}

/// A token from the TokenRequest API, bound to the pod, as the kubelet's token manager gets it.
async fn service_account_token(
    api: &ApiClient,
    pod: &Value,
    namespace: &str,
    source: &Value,
) -> Result<(String, Vec<u8>), String> {
    let account = pod["spec"]["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let mut spec = json!({
        "expirationSeconds": source["expirationSeconds"].as_i64().unwrap_or(3607),
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
            "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]},
    });
    if let Some(audience) = source["audience"].as_str().filter(|a| !a.is_empty()) {
        spec["audiences"] = json!([audience]);
    }
    let request =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token");
    let answer = api
        .call(Method::POST, &path, Some(&request))
        .await
        .map_err(|e| format!("token for service account {account:?}: {e}"))?;
    let token = answer["status"]["token"].as_str().ok_or_else(|| {
        format!("token for service account {account:?}: no status.token in the answer")
    })?;
    let file = source["path"].as_str().unwrap_or("token").to_owned();
    Ok((file, token.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_select_and_rename() {
        let data = vec![
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"2".to_vec()),
        ];
        assert_eq!(select(data.clone(), &json!({})).expect("all"), data);
        let picked = select(
            data.clone(),
            &json!({"items": [{"key": "b", "path": "dir/b.txt"}]}),
        )
        .expect("items");
        assert_eq!(picked, vec![("dir/b.txt".to_owned(), b"2".to_vec())]);
        assert!(select(data.clone(), &json!({"items": [{"key": "c", "path": "c"}]})).is_err());
        assert!(
            select(
                data,
                &json!({"optional": true, "items": [{"key": "c", "path": "c"}]})
            )
            .expect("optional")
            .is_empty()
        );
    }

    #[test]
    fn downward_api_files() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": []}
        }))
        .expect("pod");
        let files = downward_api(
            &pod,
            &json!({"items": [
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}
            ]}),
            "127.0.30.5".parse().expect("ip"),
            "127.0.20.1".parse().expect("ip"),
        )
        .expect("files");
        assert_eq!(files[0], ("name".to_owned(), b"p".to_vec()));
        assert_eq!(files[1], ("labels".to_owned(), b"app=\"web\"\n".to_vec()));
        assert_eq!(files[2], ("ip".to_owned(), b"127.0.30.5".to_vec()));
    }
}
