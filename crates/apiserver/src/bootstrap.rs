//! What kube-apiserver's bootstrap controller and endpoint reconciler maintain: the system namespaces,
//! the `default/kubernetes` Service, and its Endpoints/EndpointSlice listing every serving front-end.

use std::sync::Arc;

use proxylab_apimachinery::meta;
use proxylab_store::{ObjectKey, Store, StoreError};
use serde_json::{Value, json};

use crate::state::AppState;

/// Ensures what kube-apiserver's bootstrap controller maintains: the system namespaces, and the
/// `default/kubernetes` Service (first ClusterIP of the range, port 443 → the secure port) with
/// Endpoints and an EndpointSlice listing every apiserver address (each front-end adds its own, as the
/// lease endpoint reconciler does).
pub(crate) fn bootstrap(
    state: &Arc<AppState>,
    advertise: &[std::net::IpAddr],
    port: u16,
) -> Result<(), String> {
    let store = &state.store;
    let now = meta::now_rfc3339();
    let create_if_missing = |key: ObjectKey, obj: Value| -> Result<(), String> {
        match store.create(&key, obj) {
            Ok(_) | Err(StoreError::AlreadyExists) => Ok(()),
            Err(e) => Err(format!("{key}: {e}")),
        }
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        create_if_missing(
            ObjectKey::new("namespaces", None, ns),
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now,
                    "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        )?;
    }
    let svc_key = ObjectKey::new("services", Some("default"), "kubernetes");
    // Several apiservers on one store (etcd) start together: another one may have allocated the
    // ClusterIP and not yet created the Service. Its Service then appears shortly; wait for it.
    let mut attempts = 0;
    while store.get(&svc_key).map_err(|e| e.to_string())?.is_none() {
        let mut svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now, "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
            "status": {"loadBalancer": {}}});
        if let Some(ip) = state.alloc.first_ip() {
            svc["spec"]["clusterIP"] = json!(ip.to_string());
        }
        let got = match state.alloc.admit(&mut svc, None) {
            Ok(got) => got,
            Err(s) if attempts < 50 => {
                attempts += 1;
                tracing::debug!(error = %s.message, "the kubernetes Service's IP is taken; waiting for the Service");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            Err(s) => return Err(s.message.clone()),
        };
        if let Err(e) = store.create(&svc_key, svc) {
            state.alloc.release(&got);
            if e != StoreError::AlreadyExists {
                return Err(e.to_string());
            }
        }
    }
    reconcile_endpoints(store, advertise, &[], port, &now)
}

/// Adds `add` to and removes `remove` from the `default/kubernetes` Endpoints and EndpointSlice
/// (compare-and-swap, retried) — kube-apiserver's endpoint reconciler: each apiserver publishes its
/// address while it serves and withdraws it on graceful shutdown.
pub(crate) fn reconcile_endpoints(
    store: &Arc<dyn Store>,
    add: &[std::net::IpAddr],
    remove: &[std::net::IpAddr],
    port: u16,
    now: &str,
) -> Result<(), String> {
    for _ in 0..16 {
        let key = ObjectKey::new("endpoints", Some("default"), "kubernetes");
        let cur = store.get(&key).map_err(|e| e.to_string())?;
        let mut ips: Vec<String> = cur
            .as_ref()
            .and_then(|c| c["subsets"][0]["addresses"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["ip"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let before = ips.clone();
        for a in add {
            if !ips.contains(&a.to_string()) {
                ips.push(a.to_string());
            }
        }
        ips.retain(|ip| !remove.iter().any(|r| r.to_string() == *ip));
        ips.sort();
        if cur.is_some() && ips == before {
            break;
        }
        let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        let subsets = if ips.is_empty() {
            json!([])
        } else {
            json!([{"addresses": addresses, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}])
        };
        let ep = json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default", "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": subsets});
        let endpoints: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}}))
            .collect();
        let family = if ips.iter().any(|i| i.contains(':')) {
            "IPv6"
        } else {
            "IPv4"
        };
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default", "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now,
                "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}},
            "addressType": family, "endpoints": endpoints,
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
        let res = match &cur {
            Some(c) => {
                let mut ep = ep;
                ep["metadata"]["uid"] = c["metadata"]["uid"].clone();
                ep["metadata"]["creationTimestamp"] = c["metadata"]["creationTimestamp"].clone();
                let rv = meta::resource_version(c).and_then(|s| s.parse().ok());
                store.update(&key, ep, rv)
            }
            None => store.create(&key, ep),
        };
        match res {
            Ok(_) => {
                let skey = ObjectKey::new(
                    "endpointslices.discovery.k8s.io",
                    Some("default"),
                    "kubernetes",
                );
                let r = match store.get(&skey).map_err(|e| e.to_string())? {
                    Some(old) => {
                        let mut s = slice;
                        s["metadata"]["uid"] = old["metadata"]["uid"].clone();
                        store.update(&skey, s, None)
                    }
                    None => store.create(&skey, slice),
                };
                match r {
                    Ok(_) | Err(StoreError::AlreadyExists) => {}
                    Err(e) => return Err(e.to_string()),
                }
                break;
            }
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists | StoreError::NotFound) => {
                continue;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}
