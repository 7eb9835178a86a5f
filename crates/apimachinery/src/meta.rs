//! Accessors for objects held as `serde_json::Value`: `metadata` (ObjectMeta), any field by path, and
//! `metav1.Time`.
//!
//! Every Kubernetes object carries `metadata.{name, namespace, uid, resourceVersion, labels,
//! annotations, creationTimestamp, …}`. Keeping objects as untyped JSON (rather than typed structs)
//! lets the lab store whatever a client sends and hand it back unchanged — and a controller that edits
//! only the fields it knows keeps every field it does not understand intact when it writes an object
//! back (the reason kube-controller-manager uses `DeepCopy` + field edits rather than rebuilding
//! objects). These helpers are the typed edge, and the only copy of them in the workspace: the
//! apiserver, the controllers, validation and Table printing all read objects through them. Getters
//! never panic: a missing or ill-typed field reads as `None`; setters replace what is in the way.

use jiff::Timestamp;
use serde_json::{Map, Value};

fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(key)?.as_str()
}

/// `metadata`, if present and an object.
pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.as_object()
}

/// `metadata` as a mutable map, created when absent. Returns `None` only when `obj` is not a JSON object
/// (or `metadata` exists but is not an object).
pub fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    map.entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name")
}

pub fn generate_name(obj: &Value) -> Option<&str> {
    meta_str(obj, "generateName")
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace")
}

pub fn uid(obj: &Value) -> Option<&str> {
    meta_str(obj, "uid")
}

/// `metadata.resourceVersion` as sent (a decimal string in the lab).
pub fn resource_version(obj: &Value) -> Option<&str> {
    meta_str(obj, "resourceVersion")
}

/// `metadata.resourceVersion` parsed as the store's u64 (None when absent or not a number).
pub fn resource_version_u64(obj: &Value) -> Option<u64> {
    resource_version(obj)?.parse().ok()
}

pub fn creation_timestamp(obj: &Value) -> Option<&str> {
    meta_str(obj, "creationTimestamp")
}

pub fn deletion_timestamp(obj: &Value) -> Option<&str> {
    meta_str(obj, "deletionTimestamp")
}

pub fn generation(obj: &Value) -> Option<i64> {
    obj.get("metadata")?.get("generation")?.as_i64()
}

pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.get("labels")?.as_object()
}

pub fn annotations(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.get("annotations")?.as_object()
}

/// One label value.
pub fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    labels(obj)?.get(key)?.as_str()
}

/// One annotation value.
pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    annotations(obj)?.get(key)?.as_str()
}

pub fn owner_references(obj: &Value) -> &[Value] {
    obj.get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub fn finalizers(obj: &Value) -> Vec<&str> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

pub fn api_version(obj: &Value) -> Option<&str> {
    obj.get("apiVersion")?.as_str()
}

pub fn kind(obj: &Value) -> Option<&str> {
    obj.get("kind")?.as_str()
}

/// Sets `metadata.<key>` to a string; no-op when `obj` is not an object.
fn set_meta(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = metadata_mut(obj) {
        m.insert(key.to_string(), value);
    }
}

pub fn set_name(obj: &mut Value, name: &str) {
    set_meta(obj, "name", Value::String(name.to_string()));
}

pub fn set_namespace(obj: &mut Value, namespace: &str) {
    set_meta(obj, "namespace", Value::String(namespace.to_string()));
}

pub fn set_uid(obj: &mut Value, uid: &str) {
    set_meta(obj, "uid", Value::String(uid.to_string()));
}

pub fn set_resource_version(obj: &mut Value, rv: &str) {
    set_meta(obj, "resourceVersion", Value::String(rv.to_string()));
}

pub fn set_creation_timestamp(obj: &mut Value, ts: &str) {
    set_meta(obj, "creationTimestamp", Value::String(ts.to_string()));
}

pub fn set_deletion_timestamp(obj: &mut Value, ts: &str) {
    set_meta(obj, "deletionTimestamp", Value::String(ts.to_string()));
}

pub fn set_generation(obj: &mut Value, generation: i64) {
    set_meta(obj, "generation", Value::from(generation));
}

/// Removes `metadata.<key>`.
pub fn remove_meta(obj: &mut Value, key: &str) -> Option<Value> {
    obj.get_mut("metadata")?.as_object_mut()?.shift_remove(key)
}

fn map_entry<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let m = metadata_mut(obj)?;
    let entry = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        // `labels: null` (or garbage) is replaced by an empty map rather than refused.
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut()
}

pub fn set_label(obj: &mut Value, key: &str, value: &str) {
    if let Some(m) = map_entry(obj, "labels") {
        m.insert(key.to_string(), Value::String(value.to_string()));
    }
}

pub fn set_annotation(obj: &mut Value, key: &str, value: &str) {
    if let Some(m) = map_entry(obj, "annotations") {
        m.insert(key.to_string(), Value::String(value.to_string()));
    }
}

pub fn remove_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    obj.get_mut("metadata")?
        .get_mut("annotations")?
        .as_object_mut()?
        .shift_remove(key)
}

/// Whether the object is being deleted (`metadata.deletionTimestamp` is set).
pub fn is_terminating(obj: &Value) -> bool {
    deletion_timestamp(obj).is_some()
}

/// The value at a JSON path (`["spec", "template", "metadata"]`).
pub fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = obj;
    for p in path {
        cur = cur.get(p)?;
    }
    Some(cur)
}

/// The string at a JSON path.
pub fn str_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(obj, path)?.as_str()
}

/// The array at a JSON path, empty when absent or not an array.
pub fn array_at<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    at(obj, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Sets (`Some`) or removes (`None`) the value at a JSON path, creating intermediate objects (and
/// replacing non-objects on the way, so no write can panic on odd input).
pub fn set_path(obj: &mut Value, path: &[&str], value: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for p in parents {
        cur = object_mut_self(cur)
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let map = object_mut_self(cur);
    match value {
        Some(value) => {
            map.insert(last.to_string(), value);
        }
        None => {
            map.shift_remove(*last);
        }
    }
}

/// `obj` itself as a map, replacing a non-object with `{}`.
fn object_mut_self(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    match obj {
        Value::Object(m) => m,
        _ => unreachable!("obj was just made an object"),
    }
}

/// Mutable access to `obj[key]` as a map, creating it (or replacing a non-object) as `{}`; `obj`
/// itself becomes an object if it was not one.
pub fn object_mut<'a>(obj: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let map = object_mut_self(obj);
    object_mut_self(
        map.entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new())),
    )
}

/// `metadata` for an object created below the REST layer (by a controller writing to the store
/// directly): the REST layer would set `uid` and `creationTimestamp`, so the caller supplies them.
pub fn new_object_meta(namespace: Option<&str>, name: &str, uid: &str, now: Timestamp) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), Value::String(name.to_string()));
    if let Some(ns) = namespace {
        m.insert("namespace".into(), Value::String(ns.to_string()));
    }
    m.insert("uid".into(), Value::String(uid.to_string()));
    m.insert("creationTimestamp".into(), Value::String(format_time(now)));
    Value::Object(m)
}

/// RFC 3339 at second precision in UTC (`2026-11-28T10:10:11Z`): Kubernetes' `metav1.Time` format.
pub fn format_time(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The current time as `metav1.Time`.
pub fn now_rfc3339() -> String {
    format_time(Timestamp::now())
}

/// Microsecond precision (`metav1.MicroTime`, used by Lease `renewTime` and Event `eventTime`).
pub fn format_micro_time(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn now_rfc3339_micro() -> String {
    format_micro_time(Timestamp::now())
}

/// Parses an RFC 3339 timestamp (any precision, any offset); `None` if malformed.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn getters_and_setters() {
        let mut o = json!({"kind":"Pod","metadata":{"name":"a","labels":{"app":"x"}}});
        assert_eq!(name(&o), Some("a"));
        assert_eq!(namespace(&o), None);
        assert_eq!(label(&o, "app"), Some("x"));
        set_namespace(&mut o, "default");
        set_uid(&mut o, "u1");
        set_resource_version(&mut o, "42");
        set_annotation(&mut o, "k", "v");
        set_label(&mut o, "tier", "web");
        assert_eq!(namespace(&o), Some("default"));
        assert_eq!(uid(&o), Some("u1"));
        assert_eq!(resource_version_u64(&o), Some(42));
        assert_eq!(annotation(&o, "k"), Some("v"));
        assert_eq!(labels(&o).map(|l| l.len()), Some(2));
        assert_eq!(remove_annotation(&mut o, "k"), Some(json!("v")));
        let mut empty = json!({});
        set_name(&mut empty, "n");
        assert_eq!(name(&empty), Some("n"));
        let mut not_obj = json!([1]);
        set_name(&mut not_obj, "n");
        assert_eq!(not_obj, json!([1]));
        let mut bad_labels = json!({"metadata":{"labels":null}});
        set_label(&mut bad_labels, "a", "b");
        assert_eq!(label(&bad_labels, "a"), Some("b"));
    }

    #[test]
    fn paths() {
        let mut o =
            json!({"spec": {"ports": [1, 2], "x": 3}, "metadata": {"deletionTimestamp": null}});
        assert_eq!(at(&o, &["spec", "x"]), Some(&json!(3)));
        assert_eq!(str_at(&o, &["spec", "x"]), None);
        assert_eq!(array_at(&o, &["spec", "ports"]).len(), 2);
        assert!(array_at(&o, &["spec", "nope"]).is_empty());
        assert!(!is_terminating(&o));
        set_path(&mut o, &["spec", "x", "y"], Some(json!("z")));
        assert_eq!(str_at(&o, &["spec", "x", "y"]), Some("z"));
        set_path(&mut o, &["status", "a"], Some(json!(1)));
        assert_eq!(at(&o, &["status", "a"]), Some(&json!(1)));
        set_path(&mut o, &["status", "a"], None);
        assert_eq!(o["status"], json!({}));
        let mut not_obj = json!(7);
        object_mut(&mut not_obj, "k").insert("a".into(), json!(1));
        assert_eq!(not_obj, json!({"k": {"a": 1}}));
        let ts: Timestamp = "2026-11-28T10:10:11Z".parse().expect("ts");
        assert_eq!(
            new_object_meta(Some("d"), "n", "u", ts),
            json!({"name": "n", "namespace": "d", "uid": "u", "creationTimestamp": "2026-11-28T10:10:11Z"})
        );
    }

    #[test]
    fn time_formats() {
        let ts: Timestamp = "2026-11-28T10:10:11.123456789Z".parse().expect("ts");
        assert_eq!(format_time(ts), "2026-11-28T10:10:11Z");
        assert_eq!(format_micro_time(ts), "2026-11-28T10:10:11.123456Z");
        assert_eq!(
            parse_time("2026-11-28T10:10:11Z").map(format_time),
            Some("2026-11-28T10:10:11Z".into())
        );
        assert!(parse_time("yesterday").is_none());
        assert!(now_rfc3339().ends_with('Z'));
    }
}
