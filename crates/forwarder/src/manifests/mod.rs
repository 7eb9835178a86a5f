//! The static source: a file of plain Kubernetes manifests.
//!
//! Multi-document YAML (or JSON) of `v1/Service`, `discovery.k8s.io/v1/EndpointSlice` and `v1/Node`
//! objects, exactly as `kubectl get -o yaml` prints them — including a `kind: List` with `items`, and
//! the API's typed lists (`ServiceList`, …, whose items carry no `kind`).
//!
//! There is no new format to learn: the file goes through the same converter as the objects a watch
//! delivers. And nothing in it is ignored: the file is the whole cluster as the forwarder sees it, so
//! anything it would not act on is refused, as `kubectl apply --validate=strict` refuses it —
//! another kind (a Deployment), a field Kubernetes does not define for the kind (a misspelt
//! `sessionAfinity`, see [`schema`]), an object defined twice, a list with a bad item, and a file
//! with no objects at all (an empty or truncated file would otherwise remove every listener; a
//! `kind: List` with `items: []` says "no services" on purpose). A mistake is reported as one line
//! with the file, the line (from 1) and the field:
//! `svc.yaml:14: Service default/web: spec.ports[0].port: 0 is not a port number 1-65535`.

mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use proxylab_core::cluster::ClusterSnapshot;
use serde_json::Value;

/// A manifest file that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}:{line}: {field}: {message}", file.display())]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based line: of the offending field when it can be found, else of its object or document;
    /// 1 for what concerns the whole file.
    pub line: usize,
    /// What is at fault: a field path with its object (`Service default/web: spec.ports[0].port`), or
    /// `yaml` for syntax errors, or `file` for the file as a whole.
    pub field: String,
    pub message: String,
}

/// Reads and converts a manifest file.
pub fn load(path: &Path) -> Result<ClusterSnapshot, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
        file: path.to_path_buf(),
        line: 1,
        field: "file".into(),
        message: format!("cannot read it: {e}"),
    })?;
    parse(path, &text)
}

/// One object of the file and where it is.
struct Object {
    /// Index of its document among the non-empty ones.
    doc: usize,
    /// Its path inside the document: empty, or `items[3]` inside a list.
    prefix: String,
    value: Value,
}

/// Converts manifest text (`path` is only used in errors).
pub fn parse(path: &Path, text: &str) -> Result<ClusterSnapshot, ManifestError> {
    let err = |line: usize, field: String, message: String| ManifestError {
        file: path.to_path_buf(),
        line: line.max(1),
        field,
        message,
    };
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        let line = e.location().map(|l| l.line() as usize).unwrap_or(1);
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("invalid YAML").to_string();
        err(line, "yaml".into(), first)
    })?;
    let starts = document_starts(text);
    // The line of a path inside document `doc` (the document's first line when it cannot be found).
    let line_at = |doc: usize, path: &str| {
        let start = line_of_doc(&starts, doc);
        // A missing field is reported at its nearest present parent.
        let mut path = path;
        loop {
            if path.is_empty() {
                return start;
            }
            if let Some(line) = locate(text, start, path) {
                return line;
            }
            path = &path[..path.rfind(['.', '[']).unwrap_or(0)];
        }
    };
    let mut objects: Vec<Object> = Vec::new();
    let mut lists = 0usize;
    for (doc, value) in docs.into_iter().filter(|d| !d.is_null()).enumerate() {
        let here =
            |field: &str, message: String| err(line_at(doc, field), field.to_string(), message);
        let kind = match value.get("kind") {
            _ if !value.is_object() => {
                return Err(err(
                    line_at(doc, ""),
                    "document".into(),
                    "expected a Kubernetes object (a map)".into(),
                ));
            }
            Some(Value::String(k)) => k.clone(),
            Some(_) => return Err(here("kind", "expected a string".into())),
            None => {
                return Err(here(
                    "kind",
                    format!("missing: every object names its kind ({})", kind_names()),
                ));
            }
        };
        let Some(item_kind) = kind.strip_suffix("List") else {
            objects.push(Object {
                doc,
                prefix: String::new(),
                value,
            });
            continue;
        };
        // A list: `List` (kubectl's, items name their kind) or `ServiceList`, … (the API's, items
        // are of the list's kind and do not say so).
        lists += 1;
        let typed = match item_kind {
            "" => None,
            k => match schema::kind(k) {
                Some(k) => Some(k),
                None => return Err(here("kind", unknown_kind(&kind))),
            },
        };
        let api_version = typed.map_or("v1", |k| k.api_version);
        check_api_version(&value, &kind, api_version).map_err(|m| here("apiVersion", m))?;
        if let Err(m) = schema::check(&value, &schema::LIST) {
            return Err(here(&m.path, m.message));
        }
        let items = match value.get("items") {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => {
                return Err(here(
                    "items",
                    "missing: a list holds its objects in `items`".into(),
                ));
            }
            Some(_) => return Err(here("items", "expected a list of objects".into())),
        };
        for (j, item) in items.iter().enumerate() {
            let prefix = format!("items[{j}]");
            let Some(map) = item.as_object() else {
                return Err(here(&prefix, "expected a Kubernetes object (a map)".into()));
            };
            let mut item = item.clone();
            match (map.get("kind"), typed) {
                (None, Some(k)) => {
                    item["kind"] = k.name.into();
                    if map.get("apiVersion").is_none() {
                        item["apiVersion"] = k.api_version.into();
                    }
                }
                (None, None) => {
                    return Err(here(
                        &format!("{prefix}.kind"),
                        format!("missing: every item names its kind ({})", kind_names()),
                    ));
                }
                (Some(Value::String(k)), _) if k.ends_with("List") => {
                    return Err(here(
                        &format!("{prefix}.kind"),
                        format!("{k:?}: a list inside a list is not read"),
                    ));
                }
                (Some(Value::String(k)), Some(t)) if k != t.name => {
                    return Err(here(
                        &format!("{prefix}.kind"),
                        format!("{k:?} in a {kind}"),
                    ));
                }
                _ => {}
            }
            objects.push(Object {
                doc,
                prefix,
                value: item,
            });
        }
    }
    if objects.is_empty() && lists == 0 {
        return Err(err(
            1,
            "file".into(),
            "no Kubernetes objects in it (an empty file is refused rather than taken to remove every \
             service; to serve none, write `kind: List` with `items: []`)"
                .into(),
        ));
    }

    // Each object: a kind the forwarder reads, at its API version, with only fields Kubernetes
    // defines, defined once.
    let mut seen: HashMap<(&'static str, String), usize> = HashMap::new();
    for obj in &objects {
        let at = |path: &str| {
            let full = match (obj.prefix.is_empty(), path.is_empty()) {
                (true, _) => path.to_string(),
                (false, true) => obj.prefix.clone(),
                (false, false) => format!("{}.{path}", obj.prefix),
            };
            line_at(obj.doc, &full)
        };
        let full = |path: &str| {
            if obj.prefix.is_empty() {
                path.to_string()
            } else {
                format!("{}.{path}", obj.prefix)
            }
        };
        let v = &obj.value;
        let kind_name = v.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some(kind) = schema::kind(kind_name) else {
            let m = if kind_name.is_empty() {
                "expected a string".to_string()
            } else {
                unknown_kind(kind_name)
            };
            return Err(err(at("kind"), full("kind"), m));
        };
        let label = format!("{} {}", kind.name, object_name(v, kind.name));
        let object_err = |path: &str, message: String| {
            err(at(path), format!("{label}: {}", full(path)), message)
        };
        check_api_version(v, kind.name, kind.api_version)
            .map_err(|m| object_err("apiVersion", m))?;
        schema::check(v, kind.shape).map_err(|m| object_err(&m.path, m.message))?;
        if kind.name == "Service" {
            required_ports(v).map_err(|m| object_err("spec.ports", m))?;
        }
        let line = at("metadata.name");
        if let Some(first) = seen.insert((kind.name, object_name(v, kind.name)), line) {
            return Err(object_err(
                "metadata.name",
                format!("defined twice (first at line {first})"),
            ));
        }
    }

    let values: Vec<&Value> = objects.iter().map(|o| &o.value).collect();
    ClusterSnapshot::from_objects(values.iter().copied()).map_err(|(i, e)| {
        let obj = &objects[i];
        let full = if obj.prefix.is_empty() {
            e.field.clone()
        } else {
            format!("{}.{}", obj.prefix, e.field)
        };
        err(
            line_at(obj.doc, &full),
            format!("{} {}: {}", e.kind, e.object, full),
            e.message,
        )
    })
}

fn kind_names() -> String {
    let names: Vec<&str> = schema::KINDS.iter().map(|k| k.name).collect();
    names.join(", ")
}

fn unknown_kind(kind: &str) -> String {
    format!(
        "{kind:?} is not read by the forwarder (it reads {}, or a List of them)",
        kind_names()
    )
}

/// `namespace/name` (namespaced kinds; the namespace defaults to `default` as kubectl's does) or
/// `name` (Nodes).
fn object_name(v: &Value, kind: &str) -> String {
    let md = v.get("metadata");
    let name = md
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if kind == "Node" {
        return name.to_string();
    }
    let ns = md
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    format!("{ns}/{name}")
}

fn check_api_version(v: &Value, kind: &str, want: &str) -> Result<(), String> {
    match v.get("apiVersion") {
        Some(Value::String(s)) if s == want => Ok(()),
        Some(Value::String(s)) => Err(format!("{kind} is {want}, not {s:?}")),
        Some(_) => Err("expected a string".into()),
        None => Err(format!("missing ({kind} is {want})")),
    }
}

/// A Service needs ports unless it is headless or an ExternalName, as the apiserver's validation
/// says. (A file cut short while being written is the usual way to lose them.)
fn required_ports(v: &Value) -> Result<(), String> {
    let spec = v.get("spec");
    let get = |k: &str| spec.and_then(|s| s.get(k));
    let headless = get("clusterIP").and_then(Value::as_str) == Some("None");
    let external_name = get("type").and_then(Value::as_str) == Some("ExternalName");
    let has_ports = get("ports")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    if has_ports || headless || external_name {
        Ok(())
    } else {
        Err("missing: a Service needs at least one port".into())
    }
}

/// The first line (1-based) of each non-empty document.
fn document_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut current: Option<usize> = None;
    let mut has_content = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if line.starts_with("---") {
            if let (Some(s), true) = (current, has_content) {
                starts.push(s);
            }
            current = Some(i + 1);
            has_content = false;
            // `--- {...}` puts content on the marker line itself.
            if t.len() > 3 && !t[3..].trim().is_empty() && !t[3..].trim().starts_with('#') {
                has_content = true;
            }
            continue;
        }
        if current.is_none() {
            current = Some(i + 1);
        }
        if !t.is_empty() && !t.starts_with('#') && t != "..." {
            has_content = true;
        }
    }
    if let (Some(s), true) = (current, has_content) {
        starts.push(s);
    }
    starts
}

fn line_of_doc(starts: &[usize], doc: usize) -> usize {
    starts.get(doc).copied().unwrap_or(1)
}

/// Finds the line of a field path (`spec.ports[1].port`) in block YAML, starting at line `start`:
/// each key is searched after the previous one, and `[i]` skips to the i-th list item. Best effort:
/// `None` when the layout is not the plain block style `kubectl` prints.
fn locate(text: &str, start: usize, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut pos = start.saturating_sub(1);
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(b) => (&part[..b], &part[b..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            let found = (pos..lines.len()).find(|&i| {
                let t = lines[i].trim_start().trim_start_matches("- ");
                t.starts_with(&format!("{key}:")) || t.starts_with(&format!("\"{key}\":"))
            })?;
            pos = found;
        }
        if !indexes.is_empty() && lines.get(pos).is_some_and(|l| l.contains('[')) {
            // a flow-style list on the key's line: that line is as precise as we get
            return Some(pos + 1);
        }
        for idx in indexes.split(']').filter(|s| s.starts_with('[')) {
            let n: usize = idx[1..].parse().ok()?;
            // list items after the key line: lines whose trimmed text starts with "- " at one indent
            let mut item_indent: Option<usize> = None;
            let mut seen = 0usize;
            let mut hit = None;
            for (i, line) in lines.iter().enumerate().skip(pos + 1) {
                let indent = line.len() - line.trim_start().len();
                if line.trim().is_empty() {
                    continue;
                }
                if !line.trim_start().starts_with("- ") && !line.trim_start().starts_with('-') {
                    if item_indent.is_some_and(|ii| indent <= ii) {
                        break;
                    }
                    continue;
                }
                let ii = *item_indent.get_or_insert(indent);
                if indent < ii {
                    break;
                }
                if indent == ii {
                    if seen == n {
                        hit = Some(i);
                        break;
                    }
                    seen += 1;
                }
            }
            pos = hit?;
        }
    }
    Some(pos + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  clusterIP: 127.0.40.10
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
# a comment-only document is skipped
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: 8080
  protocol: TCP
endpoints:
- addresses: [127.0.30.1]
  conditions: {ready: true}
";

    #[test]
    fn loads_services_and_slices() {
        let s = parse(Path::new("x.yaml"), GOOD).unwrap();
        assert_eq!(s.services.len(), 1);
        assert_eq!(s.endpoint_slices.len(), 1);
    }

    #[test]
    fn points_at_the_bad_line() {
        let bad = GOOD.replace("port: 80\n", "port: 0\n");
        let e = parse(Path::new("x.yaml"), &bad).unwrap_err();
        assert_eq!(e.line, 10, "{e}");
        assert!(
            e.to_string()
                .starts_with("x.yaml:10: Service default/web: spec.ports[0].port:"),
            "{e}"
        );
        let bad = GOOD.replace("- addresses: [127.0.30.1]", "- addresses: [not-an-ip]");
        let e = parse(Path::new("x.yaml"), &bad).unwrap_err();
        assert_eq!(e.line, 28, "{e}");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = parse(Path::new("x.yaml"), "kind: Service\nmetadata: {name: [\n").unwrap_err();
        assert_eq!(e.field, "yaml");
        assert!(e.line >= 1, "{e}");
    }

    #[test]
    fn kubectl_lists_are_flattened() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: a\n  spec:\n    clusterIP: 127.0.40.2\n    ports:\n    - port: 53\n      protocol: UDP\n";
        let s = parse(Path::new("l.yaml"), list).unwrap();
        assert_eq!(s.services.len(), 1);
    }

    fn fails(text: &str) -> ManifestError {
        parse(Path::new("x.yaml"), text).unwrap_err()
    }

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: 127.0.40.10\n  ports:\n  - port: 80\n";

    #[test]
    fn other_kinds_are_refused_at_their_kind_line() {
        let e = fails(&format!(
            "{SVC}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\n"
        ));
        assert_eq!(e.line, 11, "{e}");
        assert_eq!(e.field, "kind");
        assert!(
            e.message
                .contains("\"Deployment\" is not read by the forwarder"),
            "{e}"
        );
        let e = fails("apiVersion: v1\nmetadata: {name: web}\n");
        assert_eq!((e.line, e.field.as_str()), (1, "kind"), "{e}");
    }

    #[test]
    fn api_versions_are_checked() {
        let e = fails(&GOOD.replace("discovery.k8s.io/v1", "discovery.k8s.io/v1beta1"));
        assert_eq!(e.line, 15, "{e}");
        assert_eq!(e.field, "EndpointSlice default/web-1: apiVersion");
        assert_eq!(
            e.message,
            "EndpointSlice is discovery.k8s.io/v1, not \"discovery.k8s.io/v1beta1\""
        );
    }

    #[test]
    fn unknown_fields_name_their_line() {
        let e = fails(&GOOD.replace(
            "    targetPort: 8080",
            "    targetPort: 8080\n    nodeport: 30080",
        ));
        assert_eq!(e.line, 12, "{e}");
        assert_eq!(e.field, "Service default/web: spec.ports[0].nodeport");
        assert_eq!(e.message, "unknown field (did you mean \"nodePort\"?)");
        assert_eq!(
            e.to_string(),
            "x.yaml:12: Service default/web: spec.ports[0].nodeport: unknown field (did you mean \"nodePort\"?)"
        );
        let e = fails(&GOOD.replace("addressType: IPv4", "addressType: IPv4\ntopology: {}"));
        assert_eq!(
            (e.line, e.field.as_str()),
            (23, "EndpointSlice default/web-1: topology"),
            "{e}"
        );
    }

    #[test]
    fn an_object_defined_twice_is_refused_at_the_second() {
        let e = fails(&format!("{SVC}---\n{SVC}"));
        assert_eq!(e.line, 13, "{e}");
        assert_eq!(e.field, "Service default/web: metadata.name");
        assert_eq!(e.message, "defined twice (first at line 4)");
        // Another namespace is another object; a Node of the same name is another kind.
        let other = SVC.replace("  name: web\n", "  name: web\n  namespace: other\n");
        parse(Path::new("x.yaml"), &format!("{SVC}---\n{other}")).unwrap();
        // A duplicated key inside one object is a YAML error.
        let e = fails("apiVersion: v1\nkind: Service\nkind: Service\n");
        assert_eq!(e.field, "yaml");
    }

    #[test]
    fn lists_with_bad_items_are_refused() {
        let head = "apiVersion: v1\nkind: List\nitems:\n";
        let e = fails(&format!("{head}- just a string\n"));
        assert_eq!((e.line, e.field.as_str()), (4, "items[0]"), "{e}");
        let e = fails(&format!(
            "{head}- apiVersion: v1\n  metadata: {{name: a}}\n"
        ));
        assert_eq!((e.line, e.field.as_str()), (4, "items[0].kind"), "{e}");
        let e = fails(&format!(
            "{head}- apiVersion: v1\n  kind: Service\n  metadata: {{name: a}}\n  spec: {{ports: [{{port: 1}}]}}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: b}}\n"
        ));
        assert_eq!((e.line, e.field.as_str()), (9, "items[1].kind"), "{e}");
        let e = fails(&format!(
            "{head}- apiVersion: v1\n  kind: List\n  items: []\n"
        ));
        assert_eq!((e.line, e.field.as_str()), (5, "items[0].kind"), "{e}");
        let e = fails("apiVersion: v1\nkind: List\n");
        assert_eq!((e.line, e.field.as_str()), (1, "items"), "{e}");
        let e = fails("apiVersion: v1\nkind: List\nitems: {a: 1}\n");
        assert_eq!((e.line, e.field.as_str()), (3, "items"), "{e}");
        let e = fails("apiVersion: v1\nkind: List\nitem: []\n");
        assert_eq!((e.line, e.field.as_str()), (3, "item"), "{e}");
        let e = fails("apiVersion: v1\nkind: DeploymentList\nitems: []\n");
        assert_eq!((e.line, e.field.as_str()), (2, "kind"), "{e}");
        // A field error inside an item names the item.
        let e = fails(&format!(
            "{head}- apiVersion: v1\n  kind: Service\n  metadata: {{name: a}}\n  spec:\n    ports: [{{port: 1}}]\n    clusterIp: 127.0.40.3\n"
        ));
        assert_eq!(
            (e.line, e.field.as_str()),
            (9, "Service default/a: items[0].spec.clusterIp"),
            "{e}"
        );
    }

    /// The API's typed lists (`kubectl get --raw`) leave `kind` out of their items.
    #[test]
    fn typed_lists_give_their_items_a_kind() {
        let list = "apiVersion: v1\nkind: ServiceList\nmetadata: {resourceVersion: \"5\"}\nitems:\n- metadata: {name: a, namespace: x}\n  spec: {clusterIP: 127.0.40.2, ports: [{port: 53}]}\n";
        let s = parse(Path::new("l.yaml"), list).unwrap();
        assert!(
            s.services
                .contains_key(&proxylab_core::cluster::ServiceKey::new("x", "a"))
        );
        let e = fails(&list.replace("- metadata", "- kind: Node\n  metadata"));
        assert_eq!((e.line, e.field.as_str()), (5, "items[0].kind"), "{e}");
    }

    #[test]
    fn an_empty_file_is_refused_but_an_empty_list_is_not() {
        for text in [
            "",
            "\n\n",
            "# nothing\n",
            "---\n---\n",
            "---\n# comment\n...\n",
        ] {
            let e = fails(text);
            assert_eq!((e.line, e.field.as_str()), (1, "file"), "{text:?}: {e}");
            assert!(e.message.starts_with("no Kubernetes objects"), "{e}");
        }
        let s = parse(
            Path::new("x.yaml"),
            "apiVersion: v1\nkind: List\nitems: []\n",
        )
        .unwrap();
        assert!(s.services.is_empty());
    }

    /// A file cut short while it is written usually loses a Service's ports: refused, as the
    /// apiserver refuses it.
    #[test]
    fn a_service_without_ports_is_refused() {
        let e = fails(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: 127.0.40.10\n",
        );
        assert_eq!(
            (e.line, e.field.as_str()),
            (5, "Service default/web: spec.ports"),
            "{e}"
        );
        parse(
            Path::new("x.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: h}\nspec: {clusterIP: None}\n",
        )
        .unwrap();
    }

    #[test]
    fn line_numbers_start_at_1() {
        let e = fails("kind: Deployment\napiVersion: apps/v1\n");
        assert_eq!(e.line, 1, "{e}");
        let e = fails("kind: [\n");
        assert!(e.line >= 1, "{e}");
        let e = load(Path::new("/nonexistent/cluster.yaml")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (1, "file"), "{e}");
    }

    proptest::proptest! {
        /// Whatever the text, an answer and no panic; an error always has a line from 1.
        #[test]
        fn never_panics(text in "(apiVersion: v1\n|kind: (Service|List|Node)\n|items:\n|- |  |metadata: \\{name: a\\}\n|spec:\n|ports: \\[\\{port: 80\\}\\]\n|---\n|[a-z:\\[\\]{} -]{0,8}\n){0,12}") {
            if let Err(e) = parse(Path::new("p.yaml"), &text) {
                proptest::prop_assert!(e.line >= 1);
            }
        }
    }
}
