//! The static source: a file of plain Kubernetes manifests.
//!
//! Multi-document YAML (or JSON) of `v1/Service` and `discovery.k8s.io/v1/EndpointSlice` objects,
//! exactly as `kubectl get -o yaml` prints them — including a `kind: List` with `items`. Other kinds
//! are ignored, so the same file may also hold the Deployments that produced the endpoints.
//!
//! There is no new format to learn: the file goes through the same converter as the objects a watch
//! delivers. A mistake is reported as one line with the file, the line and the field:
//! `svc.yaml:14: Service default/web: spec.ports[0].port: 0 is not a port number 1-65535`.

use std::path::{Path, PathBuf};

use proxylab_core::cluster::ClusterSnapshot;
use serde_json::Value;

/// A manifest file that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}:{line}: {field}: {message}", file.display())]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based line; the line of the offending field when it can be found, else of its document.
    pub line: usize,
    /// What is at fault: a field path with its object (`Service default/web: spec.ports[0].port`), or
    /// `yaml` for syntax errors, or `file` when it cannot be read.
    pub field: String,
    pub message: String,
}

/// Reads and converts a manifest file.
pub fn load(path: &Path) -> Result<ClusterSnapshot, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
        file: path.to_path_buf(),
        line: 0,
        field: "file".into(),
        message: e.to_string(),
    })?;
    parse(path, &text)
}

/// Converts manifest text (`path` is only used in errors).
pub fn parse(path: &Path, text: &str) -> Result<ClusterSnapshot, ManifestError> {
    let err = |line: usize, field: String, message: String| ManifestError {
        file: path.to_path_buf(),
        line,
        field,
        message,
    };
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        let line = e.location().map(|l| l.line() as usize).unwrap_or(0);
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("invalid YAML").to_string();
        err(line, "yaml".into(), first)
    })?;
    let starts = document_starts(text);
    // (document index, path prefix inside the document, object)
    let mut objects: Vec<(usize, String, &Value)> = Vec::new();
    let mut doc_i = 0usize;
    for doc in &docs {
        if doc.is_null() {
            continue;
        }
        let this = doc_i;
        doc_i += 1;
        if !doc.is_object() {
            return Err(err(
                line_of_doc(&starts, this),
                "document".into(),
                "expected a Kubernetes object (a map)".into(),
            ));
        }
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind == "List" || (kind.ends_with("List") && doc.get("items").is_some()) {
            if let Some(items) = doc.get("items").and_then(Value::as_array) {
                for (j, item) in items.iter().enumerate() {
                    objects.push((this, format!("items[{j}]"), item));
                }
            }
        } else {
            objects.push((this, String::new(), doc));
        }
    }
    let values: Vec<&Value> = objects.iter().map(|(_, _, v)| *v).collect();
    ClusterSnapshot::from_objects(values.iter().copied()).map_err(|(i, e)| {
        let (doc, prefix, _) = &objects[i];
        let full = if prefix.is_empty() {
            e.field.clone()
        } else {
            format!("{prefix}.{}", e.field)
        };
        let start = line_of_doc(&starts, *doc);
        let line = locate(text, start, &full).unwrap_or(start);
        err(
            line,
            format!("{} {}: {}", e.kind, e.object, e.field),
            e.message,
        )
    })
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
}
