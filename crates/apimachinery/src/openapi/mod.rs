//! OpenAPI documents: what `kubectl apply` reads before it writes.
//!
//! kubectl validates manifests by default (`--validate=strict`). It first fetches the OpenAPI v3 index
//! (`/openapi/v3`, [`v3_index`]) and the document of the object's group-version
//! (`/openapi/v3/api/v1`, [`v3_document`]). If that document has, for the object's kind, a PATCH
//! operation tagged `x-kubernetes-group-version-kind` with a `fieldValidation` query parameter, kubectl
//! concludes that the server validates fields itself and sends `?fieldValidation=Strict` instead of
//! validating client-side. Without either document kubectl refuses to apply unless told
//! `--validate=false`.
//!
//! So the documents here are generated from [`crate::registry`] with every REST path and operation the
//! lab serves (list/create/read/replace/patch/delete, `/status`, list across namespaces), each with its
//! GVK extension and query parameters, and the connect operations of the apiserver proxy
//! subresources and `pods/log` ([`connect`]). They deliberately carry **no per-kind schemas tagged with a GVK**:
//! kubectl's client-side apply computes its strategic merge patch from a GVK-tagged schema when it finds
//! one, and a partial schema would make that fail (with a warning on every apply); without one it uses
//! its compiled-in Go types, which is exactly right for the built-in kinds the lab serves. The cost is
//! that `kubectl explain` has nothing to explain.
//!
//! [`v2_document`] is a Swagger 2.0 rendering of the same paths. kubectl asks `/openapi/v2` for
//! protobuf only (when it computes a strategic merge patch for `kubectl apply`, and for client-side
//! validation against servers without `fieldValidation`); the apiserver encodes this same document as
//! gnostic's `openapi.v2.Document` for it (`proxylab-apiserver`'s `protobuf::openapi_v2`).

mod connect;

use serde_json::{Map, Value, json};

use crate::discovery::GIT_VERSION;
use crate::registry::{self, ResourceInfo};

/// The index path of a group-version: `api/v1`, `apis/discovery.k8s.io/v1`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every served group-version as (group, version), core first.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in registry::resources() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out.sort_by_key(|(g, _)| (!g.is_empty(), *g));
    out
}

/// Upper-case hex SHA-512 of the document's JSON, as kube-apiserver hashes its v3 documents. Clients cache
/// documents by this hash, so it must change exactly when the document does.
fn doc_hash(doc: &Value) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA512, doc.to_string().as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

/// `/openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}, …}}`.
pub fn v3_index() -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        let p = gv_path(g, v);
        if let Some(doc) = v3_document(&p) {
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", doc_hash(&doc))}),
            );
        }
    }
    json!({"paths": paths})
}

/// `Core`, `Discovery`, `Coordination`: the operationId fragment of a group.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    let first = group.split('.').next().unwrap_or(group);
    let mut c = first.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn version_camel(version: &str) -> String {
    let mut c = version.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn tag(info: &ResourceInfo) -> String {
    let g = if info.group.is_empty() {
        "core".to_string()
    } else {
        info.group
            .split('.')
            .next()
            .unwrap_or(info.group)
            .to_string()
    };
    format!("{g}_{}", info.version)
}

/// The schema name of a kind (`io.k8s.api.core.v1.Pod`, `io.k8s.api.discovery.v1.EndpointSlice`).
fn schema_name(info: &ResourceInfo, kind: &str) -> String {
    let g = if info.group.is_empty() {
        "core"
    } else {
        info.group.split('.').next().unwrap_or(info.group)
    };
    format!("io.k8s.api.{g}.{}.{kind}", info.version)
}

struct Param {
    name: &'static str,
    ty: &'static str,
    description: &'static str,
}

const fn p(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param {
        name,
        ty,
        description,
    }
}

const PRETTY: Param = p(
    "pretty",
    "string",
    "If 'true', then the output is pretty printed.",
);
const DRY_RUN: Param = p(
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted.",
);
const FIELD_MANAGER: Param = p(
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes.",
);
const FIELD_VALIDATION: Param = p(
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
);
const FORCE: Param = p(
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests.",
);
const LIST_PARAMS: [Param; 9] = [
    p(
        "allowWatchBookmarks",
        "boolean",
        "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
    ),
    p(
        "continue",
        "string",
        "The continue option should be set when retrieving more results from the server.",
    ),
    p(
        "fieldSelector",
        "string",
        "A selector to restrict the list of returned objects by their fields.",
    ),
    p(
        "labelSelector",
        "string",
        "A selector to restrict the list of returned objects by their labels.",
    ),
    p(
        "limit",
        "integer",
        "limit is a maximum number of responses to return for a list call.",
    ),
    p(
        "resourceVersion",
        "string",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
    ),
    p(
        "resourceVersionMatch",
        "string",
        "resourceVersionMatch determines how resourceVersion is applied to list calls.",
    ),
    p(
        "timeoutSeconds",
        "integer",
        "Timeout for the list/watch call.",
    ),
    p(
        "watch",
        "boolean",
        "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
    ),
];
const DELETE_PARAMS: [Param; 3] = [
    p(
        "gracePeriodSeconds",
        "integer",
        "The duration in seconds before the object should be deleted.",
    ),
    p(
        "propagationPolicy",
        "string",
        "Whether and how garbage collection will be performed.",
    ),
    DRY_RUN,
];

/// Which flavour of document a parameter goes into: OpenAPI 3 nests the type in `schema`, Swagger 2 not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    V3,
    V2,
}

fn query_param(param: &Param, flavor: Flavor) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(param.name));
    m.insert("in".into(), json!("query"));
    m.insert("description".into(), json!(param.description));
    match flavor {
        Flavor::V3 => {
            m.insert(
                "schema".into(),
                json!({"type": param.ty, "uniqueItems": true}),
            );
        }
        Flavor::V2 => {
            m.insert("type".into(), json!(param.ty));
            m.insert("uniqueItems".into(), json!(true));
        }
    }
    Value::Object(m)
}

fn path_param(name: &str, description: &str, flavor: Flavor) -> Value {
    match flavor {
        Flavor::V3 => {
            json!({"name": name, "in": "path", "required": true, "description": description,
            "schema": {"type": "string", "uniqueItems": true}})
        }
        Flavor::V2 => {
            json!({"name": name, "in": "path", "required": true, "description": description,
            "type": "string", "uniqueItems": true})
        }
    }
}

const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

fn schema_ref(name: &str, flavor: Flavor) -> Value {
    match flavor {
        Flavor::V3 => json!({"$ref": format!("#/components/schemas/{name}")}),
        Flavor::V2 => json!({"$ref": format!("#/definitions/{name}")}),
    }
}

struct OpSpec<'a> {
    /// `x-kubernetes-action`.
    action: &'static str,
    description: String,
    params: Vec<&'a Param>,
    body: Option<&'static [&'static str]>,
    response_schema: String,
}

fn operation(info: &ResourceInfo, op_id: String, spec: OpSpec<'_>, flavor: Flavor) -> Value {
    let mut m = Map::new();
    m.insert("tags".into(), json!([tag(info)]));
    m.insert("description".into(), json!(spec.description));
    m.insert("operationId".into(), json!(op_id));
    m.insert(
        "parameters".into(),
        Value::Array(spec.params.iter().map(|p| query_param(p, flavor)).collect()),
    );
    let body_schema = schema_ref(&schema_name(info, info.kind), flavor);
    let response = schema_ref(&spec.response_schema, flavor);
    match flavor {
        Flavor::V3 => {
            if let Some(types) = spec.body {
                let content: Map<String, Value> = types
                    .iter()
                    .map(|t| {
                        let schema = if spec.action == "patch" {
                            schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Patch", flavor)
                        } else {
                            body_schema.clone()
                        };
                        (t.to_string(), json!({"schema": schema}))
                    })
                    .collect();
                m.insert(
                    "requestBody".into(),
                    json!({"required": true, "content": content}),
                );
            }
            m.insert(
                "responses".into(),
                json!({
                    "200": {"description": "OK", "content": {"application/json": {"schema": response}}},
                    "401": {"description": "Unauthorized"}
                }),
            );
        }
        Flavor::V2 => {
            if let Some(types) = spec.body {
                m.insert("consumes".into(), json!(types));
                if let Some(Value::Array(params)) = m.get_mut("parameters") {
                    params.insert(0, json!({"name": "body", "in": "body", "required": true, "schema": body_schema}));
                }
            }
            m.insert(
                "produces".into(),
                json!(["application/json", "application/yaml"]),
            );
            m.insert("schemes".into(), json!(["https"]));
            m.insert(
                "responses".into(),
                json!({"200": {"description": "OK", "schema": response}, "401": {"description": "Unauthorized"}}),
            );
        }
    }
    m.insert("x-kubernetes-action".into(), json!(spec.action));
    m.insert(
        "x-kubernetes-group-version-kind".into(),
        json!({"group": info.group, "version": info.version, "kind": info.kind}),
    );
    Value::Object(m)
}

/// The paths of one resource, with their operations, into `paths`.
fn resource_paths(info: &ResourceInfo, flavor: Flavor, paths: &mut Map<String, Value>) {
    let base = format!("/{}", gv_path(info.group, info.version));
    let gv = format!("{}{}", group_camel(info.group), version_camel(info.version));
    let ns_word = if info.namespaced { "Namespaced" } else { "" };
    let kind = info.kind;
    let collection = if info.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", info.resource)
    } else {
        format!("{base}/{}", info.resource)
    };
    let item = format!("{collection}/{{name}}");
    let obj = schema_name(info, kind);
    let list = schema_name(info, &info.list_kind());
    let status_schema = "io.k8s.apimachinery.pkg.apis.meta.v1.Status".to_string();

    let mut common = vec![];
    if info.namespaced {
        common.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
            flavor,
        ));
    }
    let list_params: Vec<&Param> = std::iter::once(&PRETTY).chain(LIST_PARAMS.iter()).collect();
    let write_params: Vec<&Param> = vec![&PRETTY, &DRY_RUN, &FIELD_MANAGER, &FIELD_VALIDATION];
    let patch_params: Vec<&Param> =
        vec![&PRETTY, &DRY_RUN, &FIELD_MANAGER, &FIELD_VALIDATION, &FORCE];
    let delete_params: Vec<&Param> = std::iter::once(&PRETTY)
        .chain(DELETE_PARAMS.iter())
        .collect();

    let op = |verb: &'static str,
              action: &'static str,
              id_suffix: &str,
              description: String,
              params: Vec<&Param>,
              body: Option<&'static [&'static str]>,
              response: &str| {
        operation(
            info,
            format!("{verb}{gv}{id_suffix}"),
            OpSpec {
                action,
                description,
                params,
                body,
                response_schema: response.to_string(),
            },
            flavor,
        )
    };
    const JSON_BODY: &[&str] = &["application/json", "application/yaml"];

    // Collection: list + create.
    let mut coll = Map::new();
    coll.insert("parameters".into(), Value::Array(common.clone()));
    if info.supports_verb("list") {
        coll.insert(
            "get".into(),
            op(
                "list",
                "list",
                &format!("{ns_word}{kind}"),
                format!("list or watch objects of kind {kind}"),
                list_params.clone(),
                None,
                &list,
            ),
        );
    }
    if info.supports_verb("create") {
        coll.insert(
            "post".into(),
            op(
                "create",
                "post",
                &format!("{ns_word}{kind}"),
                format!("create a {kind}"),
                write_params.clone(),
                Some(JSON_BODY),
                &obj,
            ),
        );
    }
    if info.supports_verb("deletecollection") {
        let params: Vec<&Param> = delete_params
            .iter()
            .copied()
            .chain(LIST_PARAMS.iter())
            .collect();
        coll.insert(
            "delete".into(),
            op(
                "deleteCollection",
                "deletecollection",
                &format!("{ns_word}{kind}"),
                format!("delete collection of {kind}"),
                params,
                None,
                &status_schema,
            ),
        );
    }
    if coll.len() > 1 {
        paths.insert(collection.clone(), Value::Object(coll));
    }

    // Item: read, replace, patch, delete.
    let mut item_params = vec![path_param("name", &format!("name of the {kind}"), flavor)];
    item_params.extend(common.iter().cloned());
    let mut it = Map::new();
    it.insert("parameters".into(), Value::Array(item_params.clone()));
    if info.supports_verb("get") {
        it.insert(
            "get".into(),
            op(
                "read",
                "get",
                &format!("{ns_word}{kind}"),
                format!("read the specified {kind}"),
                vec![&PRETTY],
                None,
                &obj,
            ),
        );
    }
    if info.supports_verb("update") {
        it.insert(
            "put".into(),
            op(
                "replace",
                "put",
                &format!("{ns_word}{kind}"),
                format!("replace the specified {kind}"),
                write_params.clone(),
                Some(JSON_BODY),
                &obj,
            ),
        );
    }
    if info.supports_verb("patch") {
        it.insert(
            "patch".into(),
            op(
                "patch",
                "patch",
                &format!("{ns_word}{kind}"),
                format!("partially update the specified {kind}"),
                patch_params.clone(),
                Some(&PATCH_TYPES),
                &obj,
            ),
        );
    }
    if info.supports_verb("delete") {
        it.insert(
            "delete".into(),
            op(
                "delete",
                "delete",
                &format!("{ns_word}{kind}"),
                format!("delete a {kind}"),
                delete_params.clone(),
                None,
                &status_schema,
            ),
        );
    }
    // Create-only resources (SelfSubjectReview) have no item path.
    if it.len() > 1 {
        paths.insert(item.clone(), Value::Object(it));
    }

    // Status subresource: read, replace, patch.
    if info.has_subresource("status") {
        let mut st = Map::new();
        st.insert("parameters".into(), Value::Array(item_params));
        st.insert(
            "get".into(),
            op(
                "read",
                "get",
                &format!("{ns_word}{kind}Status"),
                format!("read status of the specified {kind}"),
                vec![&PRETTY],
                None,
                &obj,
            ),
        );
        st.insert(
            "put".into(),
            op(
                "replace",
                "put",
                &format!("{ns_word}{kind}Status"),
                format!("replace status of the specified {kind}"),
                write_params.clone(),
                Some(JSON_BODY),
                &obj,
            ),
        );
        st.insert(
            "patch".into(),
            op(
                "patch",
                "patch",
                &format!("{ns_word}{kind}Status"),
                format!("partially update status of the specified {kind}"),
                patch_params,
                Some(&PATCH_TYPES),
                &obj,
            ),
        );
        paths.insert(format!("{item}/status"), Value::Object(st));
    }

    // Namespaced resources can also be listed across all namespaces.
    if info.namespaced && info.supports_verb("list") {
        let mut all = Map::new();
        all.insert("parameters".into(), json!([]));
        all.insert(
            "get".into(),
            op(
                "list",
                "list",
                &format!("{kind}ForAllNamespaces"),
                format!("list or watch objects of kind {kind}"),
                list_params,
                None,
                &list,
            ),
        );
        paths.insert(format!("{base}/{}", info.resource), Value::Object(all));
    }
}

/// Schemas referenced by the operations. Deliberately free of `x-kubernetes-group-version-kind` (see the
/// module docs): each kind is an object that preserves unknown fields.
fn schemas(infos: &[&ResourceInfo]) -> Map<String, Value> {
    let mut s = Map::new();
    for info in infos {
        s.insert(
            schema_name(info, info.kind),
            json!({
                "description": format!("{} ({}). proxylab publishes no field schema; the server validates.", info.kind, info.api_version()),
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
            }),
        );
        s.insert(
            schema_name(info, &info.list_kind()),
            json!({
                "description": format!("{} is a list of {}.", info.list_kind(), info.kind),
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "items": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                },
            }),
        );
    }
    s.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".into(),
        json!({
            "description": "Status is a return value for calls that don't return other objects.",
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "code": {"type": "integer", "format": "int32"},
                "details": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "message": {"type": "string"}, "reason": {"type": "string"}, "status": {"type": "string"},
                "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            },
        }),
    );
    s.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.", "type": "object"}),
    );
    s
}

/// `/openapi/v3/{group_version_path}` for `api/v1` or `apis/{group}/{version}`; `None` if not served.
pub fn v3_document(group_version_path: &str) -> Option<Value> {
    let path = group_version_path.trim_matches('/');
    let (group, version) = if let Some(v) = path.strip_prefix("api/") {
        ("", v)
    } else {
        let rest = path.strip_prefix("apis/")?;
        rest.split_once('/')?
    };
    let infos: Vec<&ResourceInfo> = registry::resources_in(group, version).collect();
    if infos.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for info in &infos {
        resource_paths(info, Flavor::V3, &mut paths);
        connect::connect_paths(info, Flavor::V3, &mut paths);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas(&infos),
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        },
    }))
}

/// `/openapi/v2` as Swagger 2.0 JSON: every served path, same rules as [`v3_document`].
pub fn v2_document() -> Value {
    let infos: Vec<&ResourceInfo> = registry::resources().iter().collect();
    let mut paths = Map::new();
    for info in &infos {
        resource_paths(info, Flavor::V2, &mut paths);
        connect::connect_paths(info, Flavor::V2, &mut paths);
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "definitions": schemas(&infos),
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What kubectl's `supportsQueryParamV3` does: find the first PATCH operation for the GVK and look for
    /// a `fieldValidation` query parameter among the operation's own parameters.
    fn kubectl_sees_field_validation(
        doc: &Value,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<(), String> {
        let paths = doc["paths"].as_object().ok_or("no paths")?;
        for item in paths.values() {
            let Some(op) = item.get("patch") else {
                continue;
            };
            let gvk = &op["x-kubernetes-group-version-kind"];
            if gvk != &json!({"group": group, "version": version, "kind": kind}) {
                continue;
            }
            let ok = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query");
            return if ok {
                Ok(())
            } else {
                Err("param missing".into())
            };
        }
        Err(format!("no PATCH for {kind}"))
    }

    #[test]
    fn index_lists_every_group_version() {
        let idx = v3_index();
        let paths = idx["paths"].as_object().expect("paths");
        let keys: Vec<&String> = paths.keys().collect();
        assert_eq!(
            keys,
            [
                "api/v1",
                "apis/apps/v1",
                "apis/authentication.k8s.io/v1",
                "apis/batch/v1",
                "apis/coordination.k8s.io/v1",
                "apis/discovery.k8s.io/v1"
            ]
        );
        let url = paths["api/v1"]["serverRelativeURL"].as_str().expect("url");
        assert!(url.starts_with("/openapi/v3/api/v1?hash="));
        assert_eq!(url.len(), "/openapi/v3/api/v1?hash=".len() + 128);
        assert_eq!(v3_index(), idx, "deterministic");
    }

    #[test]
    fn every_kind_has_patch_with_field_validation() {
        for info in registry::resources()
            .iter()
            .filter(|i| i.supports_verb("patch"))
        {
            let p = gv_path(info.group, info.version);
            let doc = v3_document(&p).expect("doc");
            kubectl_sees_field_validation(&doc, info.group, info.version, info.kind)
                .expect(info.kind);
            kubectl_sees_field_validation(&v2_document(), info.group, info.version, info.kind)
                .expect(info.kind);
        }
    }

    #[test]
    fn secret_item_path_like_the_observed_minimal_document() {
        let doc = v3_document("api/v1").expect("doc");
        let op = &doc["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"];
        assert_eq!(
            op["x-kubernetes-group-version-kind"],
            json!({"group":"","version":"v1","kind":"Secret"})
        );
        assert_eq!(op["operationId"], "patchCoreV1NamespacedSecret");
        assert!(
            op["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_some()
        );
        assert!(doc["paths"].get("/api/v1/nodes/{name}/status").is_some());
        assert!(
            doc["paths"].get("/api/v1/pods").is_some(),
            "list across namespaces"
        );
        assert!(
            doc["paths"]
                .get("/api/v1/namespaces/{namespace}/namespaces")
                .is_none(),
            "cluster scope"
        );
        let es = v3_document("/apis/discovery.k8s.io/v1").expect("es");
        assert!(
            es["paths"]
                .get("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices/{name}")
                .is_some()
        );
        let authn = v3_document("apis/authentication.k8s.io/v1").expect("authn");
        let ssr = &authn["paths"]["/apis/authentication.k8s.io/v1/selfsubjectreviews"];
        assert_eq!(
            ssr["post"]["x-kubernetes-group-version-kind"]["kind"],
            "SelfSubjectReview"
        );
        assert!(ssr.get("get").is_none(), "create only");
        assert_eq!(
            authn["paths"].as_object().map(Map::len),
            Some(1),
            "no item path"
        );
        assert!(v3_document("apis/policy/v1").is_none());
        assert!(v3_document("nonsense").is_none());
    }

    #[test]
    fn no_gvk_tagged_schemas() {
        // See the module docs: a GVK-tagged partial schema would break kubectl's client-side apply.
        for (g, v) in group_versions() {
            let doc = v3_document(&gv_path(g, v)).expect("doc");
            for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
                assert!(
                    schema.get("x-kubernetes-group-version-kind").is_none(),
                    "{name}"
                );
            }
        }
    }
}
