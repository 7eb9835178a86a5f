//! Small helpers for reading and building Kubernetes objects held as `serde_json::Value`.
//!
//! The controllers never deserialize into typed structs: the store holds plain JSON, and a
//! controller that only reads the fields it needs keeps every field it does not understand
//! intact when it writes an object back (the same reason kube-controller-manager uses
//! `DeepCopy` + field edits rather than rebuilding objects).

use serde_json::{Map, Value, json};

/// Reads a string at a JSON path (`["metadata", "name"]`).
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// Reads any value at a JSON path.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    Some(cur)
}

pub(crate) fn name(v: &Value) -> &str {
    str_at(v, &["metadata", "name"]).unwrap_or("")
}

pub(crate) fn namespace(v: &Value) -> &str {
    str_at(v, &["metadata", "namespace"]).unwrap_or("")
}

pub(crate) fn uid(v: &Value) -> &str {
    str_at(v, &["metadata", "uid"]).unwrap_or("")
}

pub(crate) fn labels(v: &Value) -> Option<&Map<String, Value>> {
    at(v, &["metadata", "labels"]).and_then(Value::as_object)
}

pub(crate) fn label<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    labels(v).and_then(|l| l.get(key)).and_then(Value::as_str)
}

pub(crate) fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    at(v, &["metadata", "annotations", key]).and_then(Value::as_str)
}

/// The object's resourceVersion as the store's integer (the store writes it as a decimal string).
pub(crate) fn resource_version(v: &Value) -> Option<u64> {
    str_at(v, &["metadata", "resourceVersion"]).and_then(|s| s.parse().ok())
}

pub(crate) fn is_terminating(v: &Value) -> bool {
    at(v, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null())
}

/// Mutable access to `obj[key]` as an object, creating (or replacing a non-object with) `{}`.
pub(crate) fn object_mut<'a>(obj: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    if !obj.get(key).is_some_and(Value::is_object) {
        obj[key] = json!({});
    }
    match obj.get_mut(key) {
        Some(Value::Object(m)) => m,
        // Both branches above made `obj[key]` an object.
        _ => unreachable!("obj[key] was just made an object"),
    }
}

/// Kubernetes `Time` (RFC 3339, second precision, UTC), as the apiserver serializes it.
pub(crate) fn rfc3339(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a `Time` or `MicroTime` string.
pub(crate) fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// Metadata for an object a controller creates directly in the store. The store sets only
/// `resourceVersion`; the apiserver's REST layer would set `uid` and `creationTimestamp`,
/// and since the controllers write below that layer they set them here.
pub(crate) fn new_metadata(namespace: Option<&str>, name: &str, now: jiff::Timestamp) -> Value {
    let mut m = json!({
        "name": name,
        "uid": uuid::Uuid::new_v4().to_string(),
        "creationTimestamp": rfc3339(now),
    });
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// Does `labels` carry every key/value pair of the equality-based `selector` map?
/// (A Service's `spec.selector` and a Pod's `spec.nodeSelector` are such maps.)
pub(crate) fn map_selector_matches(
    selector: &Map<String, Value>,
    labels: Option<&Map<String, Value>>,
) -> bool {
    // Built per call: selectors are tiny and the lab's object counts are small, so caching
    // compiled selectors would buy nothing measurable.
    proxylab_apimachinery::selector::LabelSelector::from_match_labels(&Value::Object(
        selector.clone(),
    ))
    .matches(labels)
}

/// Sets (`Some`) or removes (`None`) the value at a JSON path, creating intermediate objects
/// (and replacing non-objects on the way, so no write can panic on odd input).
pub(crate) fn set_path(v: &mut Value, path: &[&str], value: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Value::Object(map) = cur else { return };
        cur = map.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    if !cur.is_object() {
        *cur = json!({});
    }
    let Value::Object(map) = cur else { return };
    match value {
        Some(value) => {
            map.insert(last.to_string(), value);
        }
        None => {
            map.shift_remove(*last);
        }
    }
}
