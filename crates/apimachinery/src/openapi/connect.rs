//! The *connect* operations of the apiserver proxy subresources (`nodes/proxy`, `pods/proxy`,
//! `services/proxy`, `pods/exec`, `pods/attach`, `pods/portforward`) and `pods/log`, as
//! kube-apiserver publishes them.
//!
//! Client libraries are generated from these: the official Python client's
//! `connect_get_namespaced_service_proxy_with_path` is the operation `connectCoreV1GetNamespacedServiceProxyWithPath`
//! here, with the tag prefix dropped. Every proxy path gets `GET, HEAD, OPTIONS, POST, PUT, PATCH,
//! DELETE` twice: once on `…/proxy` with the backend path as a `path` query parameter, once on
//! `…/proxy/{path}`. They carry `x-kubernetes-action: connect` and the `*ProxyOptions` kinds.

use serde_json::{Map, Value, json};

use super::{Flavor, Param, gv_path, p, path_param, query_param, tag};
use crate::registry::ResourceInfo;

const METHODS: [(&str, &str); 7] = [
    ("delete", "Delete"),
    ("get", "Get"),
    ("head", "Head"),
    ("options", "Options"),
    ("patch", "Patch"),
    ("post", "Post"),
    ("put", "Put"),
];

const EXEC_PARAMS: [Param; 6] = [
    p(
        "command",
        "string",
        "Command is the remote command to execute. argv array. Not executed within a shell.",
    ),
    p(
        "container",
        "string",
        "Container in which to execute the command. Defaults to only container if there is only one container in the pod.",
    ),
    p(
        "stderr",
        "boolean",
        "Redirect the standard error stream of the pod for this call.",
    ),
    p(
        "stdin",
        "boolean",
        "Redirect the standard input stream of the pod for this call. Defaults to false.",
    ),
    p(
        "stdout",
        "boolean",
        "Redirect the standard output stream of the pod for this call.",
    ),
    p(
        "tty",
        "boolean",
        "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
    ),
];

const PORTFORWARD_PARAMS: [Param; 1] = [p(
    "ports",
    "integer",
    "List of ports to forward Required when using WebSockets",
)];

const LOG_PARAMS: [Param; 10] = [
    p(
        "container",
        "string",
        "The container for which to stream logs. Defaults to only container if there is one container in the pod.",
    ),
    p(
        "follow",
        "boolean",
        "Follow the log stream of the pod. Defaults to false.",
    ),
    p(
        "insecureSkipTLSVerifyBackend",
        "boolean",
        "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to.",
    ),
    p(
        "limitBytes",
        "integer",
        "If set, the number of bytes to read from the server before terminating the log output.",
    ),
    p(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed.",
    ),
    p(
        "previous",
        "boolean",
        "Return previous terminated container logs. Defaults to false.",
    ),
    p(
        "sinceSeconds",
        "integer",
        "A relative time in seconds before the current time from which to show logs.",
    ),
    p(
        "stream",
        "string",
        "Specify which container log stream to return to the client. Acceptable values are \"All\", \"Stdout\" and \"Stderr\".",
    ),
    p(
        "tailLines",
        "integer",
        "If set, the number of lines from the end of the logs to show.",
    ),
    p(
        "timestamps",
        "boolean",
        "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false.",
    ),
];

fn proxy_path_description(kind: &str) -> &'static str {
    match kind {
        "Service" => {
            "Path is the part of URLs that include service endpoints, suffixes, and parameters to use for the current proxy request to service. For example, the whole request URL is http://localhost/api/v1/namespaces/kube-system/services/elasticsearch-logging/_search?q=user:kimchy. Path is _search?q=user:kimchy."
        }
        "Node" => "Path is the URL path to use for the current proxy request to node.",
        _ => "Path is the URL path to use for the current proxy request to pod.",
    }
}

/// What differs between the connect operations.
struct Op<'a> {
    id: String,
    action: &'a str,
    kind: &'a str,
    description: String,
    params: &'a [&'a Param],
    produces: &'a [&'a str],
}

/// One operation of type `string`, the shape of every connect operation.
fn op(info: &ResourceInfo, o: Op<'_>, flavor: Flavor) -> Value {
    let Op {
        id: op_id,
        action,
        kind,
        description,
        params,
        produces,
    } = o;
    let mut m = Map::new();
    m.insert("tags".into(), json!([tag(info)]));
    m.insert("description".into(), json!(description));
    m.insert("operationId".into(), json!(op_id));
    m.insert(
        "parameters".into(),
        Value::Array(params.iter().map(|p| query_param(p, flavor)).collect()),
    );
    match flavor {
        Flavor::V3 => {
            let content: Map<String, Value> = produces
                .iter()
                .map(|t| (t.to_string(), json!({"schema": {"type": "string"}})))
                .collect();
            m.insert(
                "responses".into(),
                json!({"200": {"description": "OK", "content": content}, "401": {"description": "Unauthorized"}}),
            );
        }
        Flavor::V2 => {
            m.insert("consumes".into(), json!(["*/*"]));
            m.insert("produces".into(), json!(produces));
            m.insert("schemes".into(), json!(["https"]));
            m.insert(
                "responses".into(),
                json!({"200": {"description": "OK", "schema": {"type": "string"}}, "401": {"description": "Unauthorized"}}),
            );
        }
    }
    m.insert("x-kubernetes-action".into(), json!(action));
    m.insert(
        "x-kubernetes-group-version-kind".into(),
        json!({"group": info.group, "version": info.version, "kind": kind}),
    );
    Value::Object(m)
}

/// The connect (and log) paths of `info`'s served subresources, into `paths`.
pub(super) fn connect_paths(info: &ResourceInfo, flavor: Flavor, paths: &mut Map<String, Value>) {
    let gv = format!(
        "{}{}",
        super::group_camel(info.group),
        super::version_camel(info.version)
    );
    let ns_word = if info.namespaced { "Namespaced" } else { "" };
    let base = format!("/{}", gv_path(info.group, info.version));
    let item = if info.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", info.resource)
    } else {
        format!("{base}/{}/{{name}}", info.resource)
    };
    let common = |name_of: &str| {
        let mut v = vec![path_param(
            "name",
            &format!("name of the {name_of}"),
            flavor,
        )];
        if info.namespaced {
            v.push(path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
                flavor,
            ));
        }
        v
    };
    let kind = info.kind;
    if info.has_subresource("proxy") {
        let options = format!("{kind}ProxyOptions");
        let path_param_query = Param {
            name: "path",
            ty: "string",
            description: proxy_path_description(kind),
        };
        for with_path in [false, true] {
            let mut entry = Map::new();
            let mut params = common(&options);
            if with_path {
                params.push(path_param("path", "path to the resource", flavor));
            } else {
                params.push(query_param(&path_param_query, flavor));
            }
            entry.insert("parameters".into(), Value::Array(params));
            let suffix = if with_path { "ProxyWithPath" } else { "Proxy" };
            for (method, camel) in METHODS {
                entry.insert(
                    method.into(),
                    op(
                        info,
                        Op {
                            id: format!("connect{gv}{camel}{ns_word}{kind}{suffix}"),
                            action: "connect",
                            kind: &options,
                            description: format!(
                                "connect {} requests to proxy of {kind}",
                                camel.to_uppercase()
                            ),
                            params: &[],
                            produces: &["*/*"],
                        },
                        flavor,
                    ),
                );
            }
            let path = if with_path {
                format!("{item}/proxy/{{path}}")
            } else {
                format!("{item}/proxy")
            };
            paths.insert(path, Value::Object(entry));
        }
    }
    for (sub, options, camel, params) in [
        ("exec", "PodExecOptions", "Exec", &EXEC_PARAMS[..]),
        ("attach", "PodAttachOptions", "Attach", &EXEC_PARAMS[1..]),
        (
            "portforward",
            "PodPortForwardOptions",
            "Portforward",
            &PORTFORWARD_PARAMS[..],
        ),
    ] {
        if !info.has_subresource(sub) {
            continue;
        }
        let mut entry = Map::new();
        entry.insert("parameters".into(), Value::Array(common(options)));
        let refs: Vec<&Param> = params.iter().collect();
        for (method, m) in [("get", "Get"), ("post", "Post")] {
            entry.insert(
                method.into(),
                op(
                    info,
                    Op {
                        id: format!("connect{gv}{m}{ns_word}{kind}{camel}"),
                        action: "connect",
                        kind: options,
                        description: format!(
                            "connect {} requests to {sub} of {kind}",
                            m.to_uppercase()
                        ),
                        params: &refs,
                        produces: &["*/*"],
                    },
                    flavor,
                ),
            );
        }
        paths.insert(format!("{item}/{sub}"), Value::Object(entry));
    }
    if info.has_subresource("log") {
        let mut entry = Map::new();
        entry.insert("parameters".into(), Value::Array(common(kind)));
        let refs: Vec<&Param> = LOG_PARAMS.iter().collect();
        entry.insert(
            "get".into(),
            op(
                info,
                Op {
                    id: format!("read{gv}{ns_word}{kind}Log"),
                    action: "get",
                    kind,
                    description: format!("read log of the specified {kind}"),
                    params: &refs,
                    produces: &[
                        "text/plain",
                        "application/json",
                        "application/yaml",
                        "application/vnd.kubernetes.protobuf",
                    ],
                },
                flavor,
            ),
        );
        paths.insert(format!("{item}/log"), Value::Object(entry));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{v2_document, v3_document};

    #[test]
    fn the_python_clients_operations_are_published() {
        let v2 = v2_document();
        let ops: Vec<String> = v2["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| {
                op.get("operationId")
                    .and_then(|o| o.as_str())
                    .map(str::to_owned)
            })
            .collect();
        for id in [
            "connectCoreV1GetNamespacedServiceProxyWithPath",
            "connectCoreV1GetNodeProxyWithPath",
            "connectCoreV1HeadNamespacedPodProxy",
            "connectCoreV1OptionsNodeProxy",
            "connectCoreV1PostNamespacedPodExec",
            "connectCoreV1GetNamespacedPodAttach",
            "connectCoreV1GetNamespacedPodPortforward",
            "readCoreV1NamespacedPodLog",
        ] {
            assert!(ops.iter().any(|o| o == id), "{id} missing");
        }
        // 3 resources × 2 paths × 7 methods + 3 × 2 streaming + log.
        assert_eq!(ops.iter().filter(|o| o.starts_with("connect")).count(), 48);
        let p = &v2["paths"]["/api/v1/namespaces/{namespace}/services/{name}/proxy/{path}"];
        assert_eq!(p["get"]["x-kubernetes-action"], "connect");
        assert_eq!(
            p["get"]["x-kubernetes-group-version-kind"]["kind"],
            "ServiceProxyOptions"
        );
        assert!(
            p["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == "path" && x["in"] == "path")
        );
        let v3 = v3_document("api/v1").unwrap();
        assert!(v3["paths"]["/api/v1/nodes/{name}/proxy"]["get"].is_object());
        assert!(v3["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"].is_object());
    }
}
