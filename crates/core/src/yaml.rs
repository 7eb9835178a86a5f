//! YAML documents that remember where each field was written.
//!
//! Files written by hand (a lab topology, a forwarder's manifests) deserve errors a user can act on
//! from one line: `topology.yaml:14: spec.nodes[1].address: …`. serde-saphyr records the location of
//! any node deserialized as `Spanned<T>`; [`parse_documents`] reads every node that way and returns
//! each document as plain JSON plus a map from field path (`spec.ports[0].port`, the form Kubernetes
//! validation errors use) to its 1-based line.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

/// A document and where its fields are.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    /// The document's first line (1-based).
    pub line: usize,
    /// Field path → line of its value (`""` is the document itself).
    lines: BTreeMap<String, usize>,
}

impl Document {
    /// The line of `path`, or of its nearest written parent (a missing field is reported at the
    /// mapping that should hold it), or of the document.
    pub fn line_of(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return *l;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.line,
            }
        }
    }

    /// Every field path written in the document, in order, with its line.
    pub fn fields(&self) -> impl Iterator<Item = (&str, usize)> {
        self.lines.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// YAML that does not parse: the line (1-based, 0 when unknown) and the parser's first line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

/// Parses multi-document YAML (or JSON); empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, YamlError> {
    let docs: Vec<Spanned<Node>> = serde_saphyr::from_multiple(text).map_err(|e| YamlError {
        line: e.location().map(|l| l.line() as usize).unwrap_or(0),
        message: clean_message(&e.to_string()),
    })?;
    Ok(docs
        .into_iter()
        .filter(|d| !matches!(d.value, Node::Scalar(Value::Null)))
        .map(|d| {
            let mut lines = BTreeMap::new();
            let line = d.referenced.line() as usize;
            let value = flatten(d, String::new(), &mut lines);
            Document { value, line, lines }
        })
        .collect())
}

/// The parser's first line without its own `error: line N column M:` prefix (the caller prints the
/// line once, its own way).
fn clean_message(full: &str) -> String {
    let first = full.lines().next().unwrap_or("invalid YAML");
    let rest = first.strip_prefix("error: ").unwrap_or(first);
    let rest = match rest.strip_prefix("line ") {
        Some(r) => r
            .split_once(": ")
            .filter(|(pos, _)| pos.contains("column"))
            .map_or(rest, |(_, msg)| msg),
        None => rest,
    };
    format!("invalid YAML: {rest}")
}

fn flatten(node: Spanned<Node>, path: String, lines: &mut BTreeMap<String, usize>) -> Value {
    lines.insert(path.clone(), node.referenced.line() as usize);
    match node.value {
        Node::Scalar(v) => v,
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, n)| flatten(n, format!("{path}[{i}]"), lines))
                .collect(),
        ),
        Node::Map(entries) => {
            let mut m = Map::new();
            for (k, n) in entries {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let v = flatten(n, p, lines);
                m.insert(k, v);
            }
            Value::Object(m)
        }
    }
}

/// One YAML node with its children spanned.
enum Node {
    Scalar(Value),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(String, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(
            Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Spanned<Node>>()? {
            items.push(n);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Spanned<Node>)> = Vec::new();
        while let Some(key) = map.next_key::<Value>()? {
            let key = match key {
                Value::String(s) => s,
                other => other.to_string(),
            };
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            entries.push((key, map.next_value::<Spanned<Node>>()?));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_map_to_their_lines() {
        let text = "\
# a comment
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
    - name: http
      port: 80
    - {name: https, port: 443}
---
---
kind: Pod
list: [1, 2.5, true, null]
";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        let d = &docs[0];
        assert_eq!(d.value["spec"]["ports"][1]["port"], 443);
        assert_eq!(d.line_of("kind"), 3);
        assert_eq!(d.line_of("metadata.name"), 5);
        assert_eq!(d.line_of("spec.ports[0].port"), 9);
        assert_eq!(d.line_of("spec.ports[1].port"), 10);
        // A field that is not there: the line of the mapping that should hold it.
        assert_eq!(
            d.line_of("spec.ports[0].targetPort"),
            d.line_of("spec.ports[0]")
        );
        assert_eq!(d.line_of("spec.selector"), 6.max(d.line_of("spec")));
        let p = &docs[1];
        assert_eq!(p.line_of("kind"), 13);
        assert_eq!(p.value["list"], serde_json::json!([1, 2.5, true, null]));
    }

    #[test]
    fn syntax_errors_and_duplicate_keys_have_a_line() {
        let e = parse_documents("a: 1\nb: [\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
        let e = parse_documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.starts_with("invalid YAML: duplicate"), "{e}");
        assert!(!e.message.contains("line 3"), "{e}");
    }
}
