//! Writes every document this crate generates into a directory, one JSON file per URL path, so they can
//! be read, diffed against a real cluster's, or served by a throwaway static server to try real clients.
//!
//! `cargo run -p proxylab-apimachinery --example dump_documents -- /tmp/docs`
//!
//! File names are the URL path with `/` replaced by `_` (`api_v1.json`, `openapi_v3_api_v1.json`), plus
//! `table_<resource>.json` with a Table of sample objects for the resources that have them.

use std::path::PathBuf;

use proxylab_apimachinery::{discovery, openapi, registry, table};
use serde_json::{Value, json};

fn sample_objects(resource: &str) -> Vec<Value> {
    let created = "2026-11-28T11:00:00Z";
    match resource {
        "pods" => vec![json!({"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":"web-1","namespace":"default","uid":"u-1","creationTimestamp":created},
            "spec":{"nodeName":"node-1","containers":[{"name":"app","image":"proxylab/echo-http:1"}]},
            "status":{"phase":"Running","podIP":"127.0.30.5","podIPs":[{"ip":"127.0.30.5"}],
                "conditions":[{"type":"Ready","status":"True"}],
                "containerStatuses":[{"name":"app","ready":true,"restartCount":0,"state":{"running":{"startedAt":created}}}]}})],
        "services" => vec![json!({"apiVersion":"v1","kind":"Service",
            "metadata":{"name":"web","namespace":"default","uid":"u-2","creationTimestamp":created},
            "spec":{"type":"NodePort","clusterIP":"127.0.40.10","clusterIPs":["127.0.40.10"],"selector":{"app":"web"},
                "ports":[{"name":"http","port":80,"targetPort":"http","nodePort":30080,"protocol":"TCP"}]}})],
        "nodes" => vec![json!({"apiVersion":"v1","kind":"Node",
            "metadata":{"name":"node-1","uid":"u-3","creationTimestamp":created,"labels":{"node-role.kubernetes.io/worker":""}},
            "status":{"conditions":[{"type":"Ready","status":"True"}],"addresses":[{"type":"InternalIP","address":"127.0.20.1"}],
                "nodeInfo":{"kubeletVersion":"v1.33.0-proxylab"}}})],
        "endpointslices" => vec![
            json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
            "metadata":{"name":"web-abcde","namespace":"default","creationTimestamp":created,"labels":{"kubernetes.io/service-name":"web"}},
            "addressType":"IPv4","ports":[{"name":"http","port":8080,"protocol":"TCP"}],
            "endpoints":[{"addresses":["127.0.30.5"],"conditions":{"ready":true,"serving":true,"terminating":false},"nodeName":"node-1"}]}),
        ],
        "endpoints" => vec![
            json!({"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"web","namespace":"default","creationTimestamp":created},
            "subsets":[{"addresses":[{"ip":"127.0.30.5"}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}]}),
        ],
        "secrets" => vec![
            json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"default-token","namespace":"default","creationTimestamp":created},
            "type":"kubernetes.io/service-account-token","data":{"token":"dA==","ca.crt":"Yw==","namespace":"ZGVmYXVsdA=="}}),
        ],
        "serviceaccounts" => vec![
            json!({"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"default","namespace":"default","creationTimestamp":created}}),
        ],
        "namespaces" => vec![
            json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default","creationTimestamp":created},"status":{"phase":"Active"}}),
        ],
        "configmaps" => vec![
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"kube-root-ca.crt","namespace":"default","creationTimestamp":created},"data":{"ca.crt":"x"}}),
        ],
        "leases" => vec![
            json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"node-1","namespace":"kube-node-lease","creationTimestamp":created},
            "spec":{"holderIdentity":"node-1","leaseDurationSeconds":40}}),
        ],
        "events" => vec![
            json!({"apiVersion":"v1","kind":"Event","metadata":{"name":"web-1.1","namespace":"default","creationTimestamp":created},
            "involvedObject":{"kind":"Pod","name":"web-1","namespace":"default","uid":"u-1"},"reason":"Scheduled","type":"Normal",
            "message":"Successfully assigned default/web-1 to node-1","source":{"component":"default-scheduler"},
            "firstTimestamp":created,"lastTimestamp":created,"count":1}),
        ],
        _ => vec![],
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "docs-dump".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let write = |name: &str, v: &Value| -> std::io::Result<()> {
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_vec_pretty(v)?,
        )
    };
    write("version", &discovery::version_info())?;
    write("api", &discovery::api_versions("127.0.0.1:6443"))?;
    write("apis", &discovery::api_group_list())?;
    write("aggregated_api", &discovery::aggregated_discovery(true))?;
    write("aggregated_apis", &discovery::aggregated_discovery(false))?;
    for g in registry::groups() {
        if let Some(v) = discovery::api_group(g) {
            write(&format!("apis_{g}"), &v)?;
        }
    }
    for info in registry::resources() {
        let gv = info.group_version_path();
        let key = gv.trim_start_matches('/').replace('/', "_");
        if let Some(v) = discovery::api_resource_list(info.group, info.version) {
            write(&key, &v)?;
        }
        if let Some(v) = openapi::v3_document(gv.trim_start_matches('/')) {
            write(&format!("openapi_v3_{key}"), &v)?;
        }
        let objects = sample_objects(info.resource);
        if !objects.is_empty() {
            let now = "2026-11-28T12:00:00Z".parse()?;
            let mut t = table::to_table(info, &objects, table::IncludeObject::Metadata, now);
            t["metadata"] = json!({"resourceVersion": "1"});
            write(&format!("table_{}", info.resource), &t)?;
        }
    }
    write("openapi_v3", &openapi::v3_index())?;
    write("openapi_v2", &openapi::v2_document())?;
    println!("wrote documents to {}", dir.display());
    Ok(())
}
