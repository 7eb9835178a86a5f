//! The PATCH formats a Kubernetes apiserver accepts.
//!
//! - **JSON merge patch** (RFC 7386, `application/merge-patch+json`): objects merge key by key, `null`
//!   deletes a key, anything else (including arrays) replaces.
//! - **JSON patch** (RFC 6902, `application/json-patch+json`): a list of `add`/`remove`/`replace`/
//!   `move`/`copy`/`test` operations addressed by JSON pointers; all or nothing.
//! - **Strategic merge patch** (`application/strategic-merge-patch+json`), Kubernetes' own: like a merge
//!   patch, except that some lists are *merged by a key* instead of replaced — a Pod's `containers` by
//!   `name`, a container's `ports` by `containerPort`, a Service's `ports` by `port` — and the patch may
//!   carry directives:
//!   - `$patch: delete` in a list element (delete the element with that key) or in a map (delete the map);
//!     `$patch: replace` in a map (replace instead of merge) or as a list element (replace the list);
//!   - `$retainKeys: [..]` in a map: after merging, drop every key not listed (used for union fields such as
//!     volume sources);
//!   - `$deleteFromPrimitiveList/<field>: [..]`: remove those values from a merged primitive list such as
//!     `metadata.finalizers`;
//!   - `$setElementOrder/<field>: [..]`: the order the client wants for a merged list. We honour it for
//!     the elements it names and keep the others after them; it is never an error.
//!
//!   `kubectl apply` (client-side) computes such a patch from the last-applied annotation and sends it.
//!   Which lists merge by which key comes from struct tags in Kubernetes (`patchStrategy:"merge"
//!   patchMergeKey:"name"`); here it is the table in [`list_strategy`], for the kinds the lab serves.
//!   Lists not in the table are replaced, which is what Kubernetes does for "atomic" lists.
//! - **Server-side apply** (`application/apply-patch+yaml`): approximated as a strategic merge of the
//!   applied (YAML or JSON) object into the live one. There is no field ownership: fields the applier
//!   stopped sending are *not* removed and no conflicts are reported.

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;
use crate::status::Status;

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("unsupported patch content type {0:?}")]
    UnsupportedContentType(String),
    #[error("invalid patch body: {0}")]
    InvalidBody(String),
    #[error("json patch operation {index}: {message}")]
    JsonPatch { index: usize, message: String },
    #[error("json patch operation {index}: test failed for path {path:?}")]
    TestFailed { index: usize, path: String },
    #[error("strategic merge patch: {0}")]
    Strategic(String),
}

impl PatchError {
    /// The `Status` kube-apiserver would send: 415 for an unknown content type, 400 otherwise (as its
    /// `interpretPatchError` maps patch failures to BadRequest); a failed JSON-patch `test` is 422.
    pub fn to_status(&self) -> Status {
        match self {
            PatchError::UnsupportedContentType(ct) => Status::unsupported_media_type(ct),
            PatchError::TestFailed { .. } => Status::new(422, "Invalid", self.to_string()),
            _ => Status::bad_request(self.to_string()),
        }
    }
}

/// RFC 7386 JSON merge patch, in place.
pub fn json_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (k, v) in patch_map {
        if v.is_null() {
            target_map.shift_remove(k);
        } else {
            json_merge_patch(target_map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Decodes one JSON pointer (RFC 6901) into its reference tokens.
fn parse_pointer(ptr: &str) -> Result<Vec<String>, String> {
    if ptr.is_empty() {
        return Ok(vec![]);
    }
    let Some(rest) = ptr.strip_prefix('/') else {
        return Err(format!("JSON pointer {ptr:?} must start with '/'"));
    };
    rest.split('/')
        .map(|t| {
            // `~1` first, then `~0`, as RFC 6901 requires; any other `~` escape is malformed.
            let mut out = String::with_capacity(t.len());
            let mut chars = t.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(format!("bad escape in JSON pointer {ptr:?}")),
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

/// An array index token: decimal without leading zeros.
fn parse_index(tok: &str) -> Option<usize> {
    if tok.is_empty()
        || (tok.len() > 1 && tok.starts_with('0'))
        || !tok.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    tok.parse().ok()
}

fn pointer_get<'a>(doc: &'a Value, toks: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(parse_index(t)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn pointer_get_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => a.get_mut(parse_index(t)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn op_add(doc: &mut Value, toks: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent_toks)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = pointer_get_mut(doc, parent_toks).ok_or("parent path does not exist")?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i = parse_index(last).ok_or_else(|| format!("invalid array index {last:?}"))?;
            if i > a.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err("parent is not an object or array".into()),
    }
}

fn op_remove(doc: &mut Value, toks: &[String]) -> Result<Value, String> {
    let Some((last, parent_toks)) = toks.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    let parent = pointer_get_mut(doc, parent_toks).ok_or("parent path does not exist")?;
    match parent {
        Value::Object(m) => m
            .shift_remove(last)
            .ok_or_else(|| format!("key {last:?} does not exist")),
        Value::Array(a) => {
            let i = parse_index(last).ok_or_else(|| format!("invalid array index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            Ok(a.remove(i))
        }
        _ => Err("parent is not an object or array".into()),
    }
}

/// RFC 6902 JSON patch. Operations apply to a copy; `target` changes only if all succeed.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), PatchError> {
    let Value::Array(ops) = ops else {
        return Err(PatchError::InvalidBody(
            "a JSON patch must be an array of operations".into(),
        ));
    };
    let mut doc = target.clone();
    for (index, op) in ops.iter().enumerate() {
        let fail = |message: String| PatchError::JsonPatch { index, message };
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("missing \"op\"".into()))?;
        let path_str = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("missing \"path\"".into()))?;
        let path = parse_pointer(path_str).map_err(&fail)?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| fail("missing \"value\"".into()))
        };
        let from = || -> Result<Vec<String>, PatchError> {
            let f = op
                .get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| fail("missing \"from\"".into()))?;
            parse_pointer(f).map_err(&fail)
        };
        match name {
            "add" => op_add(&mut doc, &path, value()?).map_err(&fail)?,
            "remove" => {
                op_remove(&mut doc, &path).map_err(&fail)?;
            }
            "replace" => {
                let v = value()?;
                let slot = pointer_get_mut(&mut doc, &path)
                    .ok_or_else(|| fail(format!("path {path_str:?} does not exist")))?;
                *slot = v;
            }
            "move" => {
                let from = from()?;
                if path.len() > from.len() && path[..from.len()] == from[..] {
                    return Err(fail("cannot move a value into one of its children".into()));
                }
                let v = op_remove(&mut doc, &from).map_err(&fail)?;
                op_add(&mut doc, &path, v).map_err(&fail)?;
            }
            "copy" => {
                let from = from()?;
                let v = pointer_get(&doc, &from)
                    .cloned()
                    .ok_or_else(|| fail("\"from\" path does not exist".into()))?;
                op_add(&mut doc, &path, v).map_err(&fail)?;
            }
            "test" => {
                let want = value()?;
                if pointer_get(&doc, &path) != Some(&want) {
                    return Err(PatchError::TestFailed {
                        index,
                        path: path_str.to_string(),
                    });
                }
            }
            other => return Err(fail(format!("unknown op {other:?}"))),
        }
    }
    *target = doc;
    Ok(())
}

/// How a strategic merge patch treats a list field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Atomic: the patch's list replaces the live one.
    Replace,
    /// A list of objects merged element by element, matched on this key.
    MergeKey(&'static str),
    /// A list of scalars merged as a set union (`metadata.finalizers`, `spec.podCIDRs`).
    MergePrimitive,
}

/// The strategic-merge behaviour of the list at `path` (field names from the object root; list
/// positions are not part of the path) in an object of `kind`. This mirrors the `patchStrategy` /
/// `patchMergeKey` tags of the Kubernetes Go types for the kinds in the registry.
pub fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    use ListStrategy::*;
    match path {
        ["metadata", "ownerReferences"] => return MergeKey("uid"),
        ["metadata", "finalizers"] => return MergePrimitive,
        _ => {}
    }
    match (kind, path) {
        // A workload's pod template merges exactly as a Pod does (`kubectl set image` sends
        // `spec.template.spec.containers` keyed by name).
        ("Deployment" | "ReplicaSet" | "Job", ["spec", "template", rest @ ..]) => {
            list_strategy("Pod", rest)
        }
        ("Deployment" | "ReplicaSet" | "Job", ["status", "conditions"]) => MergeKey("type"),
        (
            "Pod",
            [
                "spec",
                "containers" | "initContainers" | "ephemeralContainers",
            ],
        ) => MergeKey("name"),
        (
            "Pod",
            [
                "spec",
                "containers" | "initContainers" | "ephemeralContainers",
                field,
            ],
        ) => match *field {
            "ports" => MergeKey("containerPort"),
            "env" => MergeKey("name"),
            "volumeMounts" => MergeKey("mountPath"),
            "volumeDevices" => MergeKey("devicePath"),
            _ => Replace,
        },
        (
            "Pod",
            [
                "spec",
                "volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims",
            ],
        ) => MergeKey("name"),
        ("Pod", ["spec", "hostAliases"]) => MergeKey("ip"),
        ("Pod", ["spec", "topologySpreadConstraints"]) => MergeKey("topologyKey"),
        ("Pod", ["status", "conditions"]) => MergeKey("type"),
        ("Pod", ["status", "podIPs" | "hostIPs"]) => MergeKey("ip"),
        ("Pod", ["status", "resourceClaimStatuses"]) => MergeKey("name"),
        ("Service", ["spec", "ports"]) => MergeKey("port"),
        ("Service" | "Namespace" | "Node", ["status", "conditions"]) => MergeKey("type"),
        ("Node", ["status", "addresses"]) => MergeKey("type"),
        ("Node", ["spec", "podCIDRs"]) => MergePrimitive,
        ("ServiceAccount", ["secrets"]) => MergeKey("name"),
        _ => Replace,
    }
}

/// What happened to a map after merging: kept, or deleted by `$patch: delete`.
enum Outcome {
    Keep,
    Delete,
}

const DELETE_FROM_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

fn err(msg: impl Into<String>) -> PatchError {
    PatchError::Strategic(msg.into())
}

fn path_str(path: &[&str]) -> String {
    path.join(".")
}

/// Strategic merge patch of `patch` (a JSON object) into `target`, using the list strategies of
/// `info.kind`. All or nothing: on error `target` is unchanged.
pub fn strategic_merge_patch(
    target: &mut Value,
    patch: &Value,
    info: &ResourceInfo,
) -> Result<(), PatchError> {
    let Value::Object(patch_map) = patch else {
        return Err(err("the patch must be a JSON object"));
    };
    let mut doc = match target {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut path = Vec::new();
    match merge_map(&mut doc, patch_map, &mut path, info.kind)? {
        Outcome::Keep => {}
        Outcome::Delete => return Err(err("$patch: delete is not allowed on the whole object")),
    }
    *target = Value::Object(doc);
    Ok(())
}

fn merge_map<'p>(
    orig: &mut Map<String, Value>,
    patch: &'p Map<String, Value>,
    path: &mut Vec<&'p str>,
    kind: &str,
) -> Result<Outcome, PatchError> {
    match patch.get("$patch") {
        None => {}
        Some(Value::String(s)) if s == "merge" => {}
        Some(Value::String(s)) if s == "delete" => return Ok(Outcome::Delete),
        Some(Value::String(s)) if s == "replace" => {
            // Replace the map by the patch (without its directives), then let the rest of the patch's
            // directives/nulls apply to an empty base.
            orig.clear();
        }
        Some(other) => {
            return Err(err(format!(
                "unknown $patch value {other} at {:?}",
                path_str(path)
            )));
        }
    }

    let retain = match patch.get("$retainKeys") {
        None => None,
        Some(Value::Array(keys)) => Some(
            keys.iter()
                .map(|k| k.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| err("$retainKeys must be a list of strings"))?,
        ),
        Some(_) => return Err(err("$retainKeys must be a list of strings")),
    };

    // Deletions from primitive lists first, so a value both deleted and re-added ends up present.
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE) {
            let Value::Array(remove) = v else {
                return Err(err(format!("{k} must be a list")));
            };
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                list.retain(|x| !remove.contains(x));
            }
        }
    }

    for (k, v) in patch {
        if k.starts_with(DELETE_FROM_PRIMITIVE)
            || k.starts_with(SET_ELEMENT_ORDER)
            || k == "$patch"
            || k == "$retainKeys"
        {
            continue;
        }
        if k.starts_with('$') {
            return Err(err(format!("unknown directive {k:?}")));
        }
        path.push(k.as_str());
        let result = merge_field(orig, k, v, patch, path, kind);
        path.pop();
        result?;
    }

    if let Some(retain) = retain {
        orig.retain(|k, _| retain.iter().any(|r| r == k));
    }
    Ok(Outcome::Keep)
}

fn merge_field<'p>(
    orig: &mut Map<String, Value>,
    key: &str,
    value: &'p Value,
    parent_patch: &'p Map<String, Value>,
    path: &mut Vec<&'p str>,
    kind: &str,
) -> Result<(), PatchError> {
    match value {
        Value::Null => {
            orig.shift_remove(key);
        }
        Value::Object(pm) => {
            let slot = orig.entry(key.to_string()).or_insert(Value::Null);
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let outcome = match slot {
                Value::Object(m) => merge_map(m, pm, path, kind)?,
                _ => Outcome::Keep,
            };
            if let Outcome::Delete = outcome {
                orig.shift_remove(key);
            }
        }
        Value::Array(items) => {
            let order = parent_patch.get(&format!("{SET_ELEMENT_ORDER}{key}"));
            match list_strategy(kind, path) {
                ListStrategy::Replace => {
                    orig.insert(key.to_string(), Value::Array(items.clone()));
                }
                ListStrategy::MergePrimitive => {
                    let slot = orig.entry(key.to_string()).or_insert(Value::Array(vec![]));
                    if !slot.is_array() {
                        *slot = Value::Array(vec![]);
                    }
                    if let Value::Array(list) = slot {
                        if items
                            .iter()
                            .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
                        {
                            list.clear();
                        }
                        for it in items {
                            if it.is_object() {
                                continue; // a `{$patch: replace}` marker, handled above
                            }
                            if !list.contains(it) {
                                list.push(it.clone());
                            }
                        }
                        if let Some(Value::Array(order)) = order {
                            apply_order(list, order, |v| Some(v.clone()));
                        }
                    }
                }
                ListStrategy::MergeKey(mk) => {
                    let slot = orig.entry(key.to_string()).or_insert(Value::Array(vec![]));
                    if !slot.is_array() {
                        *slot = Value::Array(vec![]);
                    }
                    if let Value::Array(list) = slot {
                        merge_keyed_list(list, items, mk, path, kind)?;
                        if let Some(Value::Array(order)) = order {
                            apply_order(list, order, |v| v.get(mk).cloned());
                        }
                    }
                }
            }
        }
        scalar => {
            orig.insert(key.to_string(), scalar.clone());
        }
    }
    Ok(())
}

fn merge_keyed_list<'p>(
    list: &mut Vec<Value>,
    items: &'p [Value],
    mk: &str,
    path: &mut Vec<&'p str>,
    kind: &str,
) -> Result<(), PatchError> {
    let is_replace_marker = |v: &Value| {
        v.as_object().is_some_and(|m| {
            m.len() == 1 && m.get("$patch").and_then(Value::as_str) == Some("replace")
        })
    };
    if items.iter().any(is_replace_marker) {
        list.clear();
    }
    for item in items {
        if is_replace_marker(item) {
            continue;
        }
        let Value::Object(pm) = item else {
            return Err(err(format!(
                "list {:?} merges by {mk:?}, but an element is not an object",
                path_str(path)
            )));
        };
        let Some(key_value) = pm.get(mk) else {
            return Err(err(format!(
                "an element of {:?} does not contain its merge key {mk:?}",
                path_str(path)
            )));
        };
        let pos = list.iter().position(|e| e.get(mk) == Some(key_value));
        if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
            // Kubernetes deletes every element carrying that key.
            list.retain(|e| e.get(mk) != Some(key_value));
            continue;
        }
        match pos {
            Some(i) => {
                let outcome = match &mut list[i] {
                    Value::Object(m) => merge_map(m, pm, path, kind)?,
                    other => {
                        let mut m = Map::new();
                        let o = merge_map(&mut m, pm, path, kind)?;
                        *other = Value::Object(m);
                        o
                    }
                };
                if let Outcome::Delete = outcome {
                    list.remove(i);
                }
            }
            None => {
                let mut m = Map::new();
                if let Outcome::Keep = merge_map(&mut m, pm, path, kind)? {
                    list.push(Value::Object(m));
                }
            }
        }
    }
    Ok(())
}

/// Reorders `list` so the elements named by `order` come first, in that order; the others keep their
/// relative order after them. Stable and never fails.
fn apply_order(list: &mut [Value], order: &[Value], key_of: impl Fn(&Value) -> Option<Value>) {
    let order_keys: Vec<Value> = order
        .iter()
        .map(|o| match o {
            // `$setElementOrder` elements of keyed lists are `{mergeKey: value}` maps.
            Value::Object(m) if m.len() == 1 => m.values().next().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        })
        .collect();
    list.sort_by_key(|e| {
        key_of(e)
            .and_then(|k| order_keys.iter().position(|o| *o == k))
            .unwrap_or(usize::MAX)
    });
}

/// Parses a PATCH body and applies it according to its `Content-Type` (parameters such as
/// `; charset=utf-8` are ignored). `application/apply-patch+yaml` (server-side apply) is approximated as
/// a strategic merge of the YAML or JSON body — see the module docs.
pub fn apply_patch(
    content_type: &str,
    target: &mut Value,
    body: &[u8],
    info: &ResourceInfo,
) -> Result<(), PatchError> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let parse_json = || -> Result<Value, PatchError> {
        serde_json::from_slice(body).map_err(|e| PatchError::InvalidBody(e.to_string()))
    };
    match media.as_str() {
        "application/json-patch+json" => json_patch(target, &parse_json()?),
        "application/merge-patch+json" => {
            let patch = parse_json()?;
            if !patch.is_object() {
                return Err(PatchError::InvalidBody(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            json_merge_patch(target, &patch);
            Ok(())
        }
        "application/strategic-merge-patch+json" => {
            strategic_merge_patch(target, &parse_json()?, info)
        }
        "application/apply-patch+yaml" => {
            // kubectl --server-side sends JSON; other clients send YAML. JSON first: it is exact and cheap.
            let patch: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(_) => {
                    let text = std::str::from_utf8(body)
                        .map_err(|e| PatchError::InvalidBody(e.to_string()))?;
                    serde_saphyr::from_str(text)
                        .map_err(|e| PatchError::InvalidBody(e.to_string()))?
                }
            };
            if !patch.is_object() {
                return Err(PatchError::InvalidBody(
                    "an apply patch must be an object".into(),
                ));
            }
            strategic_merge_patch(target, &patch, info)
        }
        _ => Err(PatchError::UnsupportedContentType(media)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;
    use serde_json::json;

    fn info(resource: &str) -> &'static ResourceInfo {
        lookup("", "v1", resource).expect("resource")
    }

    #[test]
    fn merge_patch_rfc7386_examples() {
        let mut t = json!({"a":"b","c":{"d":"e","f":"g"}});
        json_merge_patch(&mut t, &json!({"a":"z","c":{"f":null}}));
        assert_eq!(t, json!({"a":"z","c":{"d":"e"}}));
        let mut t = json!({"a":[1,2]});
        json_merge_patch(&mut t, &json!({"a":[3],"n":{"x":null,"y":1}}));
        assert_eq!(t, json!({"a":[3],"n":{"y":1}}));
        let mut t = json!({"a":"b"});
        json_merge_patch(&mut t, &json!(["c"]));
        assert_eq!(t, json!(["c"]));
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"metadata":{"labels":{"a":"1"}},"list":[1,2,3]});
        json_patch(
            &mut t,
            &json!([
                {"op":"add","path":"/metadata/labels/b~1c","value":"2"},
                {"op":"remove","path":"/metadata/labels/a"},
                {"op":"replace","path":"/list/0","value":10},
                {"op":"add","path":"/list/-","value":4},
                {"op":"add","path":"/list/1","value":5},
                {"op":"copy","from":"/list/0","path":"/first"},
                {"op":"move","from":"/first","path":"/moved"},
                {"op":"test","path":"/moved","value":10}
            ]),
        )
        .expect("patch");
        assert_eq!(
            t,
            json!({"metadata":{"labels":{"b/c":"2"}},"list":[10,5,2,3,4],"moved":10})
        );
    }

    #[test]
    fn json_patch_is_atomic_and_reports_errors() {
        let orig = json!({"a":1});
        let mut t = orig.clone();
        let e = json_patch(
            &mut t,
            &json!([{"op":"add","path":"/b","value":2},{"op":"test","path":"/a","value":2}]),
        );
        assert_eq!(
            e,
            Err(PatchError::TestFailed {
                index: 1,
                path: "/a".into()
            })
        );
        assert_eq!(t, orig);
        for bad in [
            json!({"op":"add"}),
            json!([{"op":"remove","path":"/zz"}]),
            json!([{"op":"replace","path":"/zz","value":1}]),
            json!([{"op":"add","path":"/x/y","value":1}]),
            json!([{"op":"frobnicate","path":"/a"}]),
            json!([{"op":"add","path":"a","value":1}]),
            json!([{"op":"remove","path":""}]),
            json!([{"op":"move","from":"","path":"/a/b"}]),
        ] {
            assert!(json_patch(&mut t, &bad).is_err(), "{bad}");
        }
        assert_eq!(t, orig);
    }

    fn pod() -> Value {
        json!({
            "apiVersion":"v1","kind":"Pod",
            "metadata":{"name":"web","labels":{"app":"web","old":"x"},"finalizers":["a","b"]},
            "spec":{
                "containers":[
                    {"name":"app","image":"proxylab/echo-http:1",
                     "ports":[{"containerPort":8080,"name":"http"},{"containerPort":8443,"name":"https"}],
                     "env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]},
                    {"name":"side","image":"proxylab/echo-tcp:1"}
                ],
                "tolerations":[{"key":"a"}]
            }
        })
    }

    #[test]
    fn strategic_merges_containers_ports_env() {
        let mut p = pod();
        strategic_merge_patch(
            &mut p,
            &json!({
                "metadata":{"labels":{"old":null,"new":"y"}},
                "spec":{
                    "$setElementOrder/containers":[{"name":"app"},{"name":"side"}],
                    "containers":[{
                        "name":"app","image":"proxylab/echo-http:2",
                        "$setElementOrder/ports":[{"containerPort":8080},{"containerPort":9000},{"containerPort":8443}],
                        "ports":[{"containerPort":9000,"name":"metrics"}],
                        "env":[{"name":"B","value":"3"},{"name":"A","$patch":"delete"}]
                    }],
                    "tolerations":[{"key":"b"}]
                }
            }),
            info("pods"),
        )
        .expect("patch");
        let app = &p["spec"]["containers"][0];
        assert_eq!(app["image"], "proxylab/echo-http:2");
        assert_eq!(
            app["ports"],
            json!([{"containerPort":8080,"name":"http"},{"containerPort":9000,"name":"metrics"},{"containerPort":8443,"name":"https"}])
        );
        assert_eq!(app["env"], json!([{"name":"B","value":"3"}]));
        assert_eq!(
            p["spec"]["containers"][1]["name"], "side",
            "untouched container kept"
        );
        assert_eq!(
            p["spec"]["tolerations"],
            json!([{"key":"b"}]),
            "atomic list replaced"
        );
        assert_eq!(p["metadata"]["labels"], json!({"app":"web","new":"y"}));
    }

    #[test]
    fn strategic_delete_and_replace_directives() {
        let mut p = pod();
        strategic_merge_patch(
            &mut p,
            &json!({"spec":{"containers":[{"name":"side","$patch":"delete"}]}}),
            info("pods"),
        )
        .expect("delete element");
        assert_eq!(p["spec"]["containers"].as_array().map(Vec::len), Some(1));

        let mut p = pod();
        strategic_merge_patch(
            &mut p,
            &json!({"spec":{"containers":[{"$patch":"replace"},{"name":"only","image":"i"}]}}),
            info("pods"),
        )
        .expect("replace list");
        assert_eq!(
            p["spec"]["containers"],
            json!([{"name":"only","image":"i"}])
        );

        let mut p = pod();
        strategic_merge_patch(
            &mut p,
            &json!({"metadata":{"labels":{"$patch":"replace","z":"1"}}}),
            info("pods"),
        )
        .expect("replace map");
        assert_eq!(p["metadata"]["labels"], json!({"z":"1"}));

        let mut p = pod();
        strategic_merge_patch(
            &mut p,
            &json!({"metadata":{"labels":{"$patch":"delete"}}}),
            info("pods"),
        )
        .expect("delete map");
        assert!(p["metadata"].get("labels").is_none());

        let mut p = pod();
        strategic_merge_patch(
            &mut p,
            &json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"],"finalizers":["c"]}}),
            info("pods"),
        )
        .expect("primitive list");
        assert_eq!(p["metadata"]["finalizers"], json!(["b", "c"]));
    }

    #[test]
    fn strategic_retain_keys() {
        let mut p = json!({"kind":"Pod","spec":{"volumes":[{"name":"v","emptyDir":{},"x":1}]}});
        strategic_merge_patch(
            &mut p,
            &json!({"spec":{"volumes":[{"name":"v","$retainKeys":["configMap","name"],"configMap":{"name":"cm"}}]}}),
            info("pods"),
        )
        .expect("retain");
        assert_eq!(
            p["spec"]["volumes"],
            json!([{"name":"v","configMap":{"name":"cm"}}])
        );
    }

    #[test]
    fn strategic_service_ports_by_port() {
        let mut s = json!({"kind":"Service","spec":{"type":"ClusterIP","ports":[
            {"name":"http","port":80,"targetPort":8080,"protocol":"TCP"},
            {"name":"https","port":443,"targetPort":8443,"protocol":"TCP"}]}});
        strategic_merge_patch(
            &mut s,
            &json!({"spec":{"type":"NodePort","ports":[{"port":80,"targetPort":"http"},{"port":8000,"name":"alt"},{"port":443,"$patch":"delete"}]}}),
            info("services"),
        )
        .expect("svc");
        assert_eq!(
            s["spec"]["ports"],
            json!([{"name":"http","port":80,"targetPort":"http","protocol":"TCP"},{"port":8000,"name":"alt"}])
        );
        assert_eq!(s["spec"]["type"], "NodePort");
    }

    #[test]
    fn strategic_set_image_on_a_deployment_template() {
        // What `kubectl set image deployment/web app=proxylab/echo-http:2` sends.
        let mut d = json!({"kind":"Deployment","spec":{"replicas":2,"template":{"spec":{"containers":[
            {"name":"app","image":"proxylab/echo-http:1","ports":[{"containerPort":8080}]},
            {"name":"side","image":"proxylab/echo-tcp:1"}]}}}});
        let deployments = crate::registry::lookup("apps", "v1", "deployments").expect("deploy");
        strategic_merge_patch(
            &mut d,
            &json!({"spec":{"template":{"spec":{"containers":[{"name":"app","image":"proxylab/echo-http:2"}]}}}}),
            deployments,
        )
        .expect("patch");
        let containers = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "proxylab/echo-http:2");
        assert_eq!(containers[0]["ports"][0]["containerPort"], 8080);
        assert_eq!(
            containers[1]["name"], "side",
            "merged by name, not replaced"
        );
    }

    #[test]
    fn strategic_errors_leave_target_unchanged() {
        let orig = pod();
        let mut p = orig.clone();
        for bad in [
            json!({"spec":{"containers":[{"image":"no-name"}]}}),
            json!({"spec":{"containers":["x"]}}),
            json!({"$patch":"delete"}),
            json!({"spec":{"$patch":"explode"}}),
            json!({"spec":{"$bogus":1}}),
            json!({"spec":{"$retainKeys":"x"}}),
            json!([1]),
        ] {
            assert!(
                strategic_merge_patch(&mut p, &bad, info("pods")).is_err(),
                "{bad}"
            );
            assert_eq!(p, orig);
        }
    }

    /// The exact strategic merge patch kubectl 1.33 `apply` sent (captured from a logging server) when a
    /// manifest changed from pod1 (containers app+side, app ports 8080/8443, env A/B, labels app/old) to
    /// pod2 (only app, image :2, ports 8080/9000, env B=3, labels app/new).
    #[test]
    fn kubectl_apply_captured_pod_patch() {
        let mut live = json!({"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":"web","namespace":"default","uid":"u-9","labels":{"app":"web","old":"x"},
                "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"pod1"}},
            "spec":{"containers":[
                {"name":"app","image":"proxylab/echo-http:1",
                 "ports":[{"name":"http","containerPort":8080,"protocol":"TCP"},{"name":"https","containerPort":8443,"protocol":"TCP"}],
                 "env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]},
                {"name":"side","image":"proxylab/echo-tcp:1"}],
                "nodeName":"node-1"},
            "status":{"phase":"Running"}});
        let body = br#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"pod2"},"labels":{"new":"y","old":null}},"spec":{"$setElementOrder/containers":[{"name":"app"}],"containers":[{"$setElementOrder/env":[{"name":"B"}],"$setElementOrder/ports":[{"containerPort":8080},{"containerPort":9000}],"env":[{"name":"B","value":"3"},{"$patch":"delete","name":"A"}],"image":"proxylab/echo-http:2","name":"app","ports":[{"containerPort":9000,"name":"metrics"},{"$patch":"delete","containerPort":8443}]},{"$patch":"delete","name":"side"}]}}"#;
        apply_patch(
            "application/strategic-merge-patch+json",
            &mut live,
            body,
            info("pods"),
        )
        .expect("patch");
        assert_eq!(
            live,
            json!({"apiVersion":"v1","kind":"Pod",
                "metadata":{"name":"web","namespace":"default","uid":"u-9","labels":{"app":"web","new":"y"},
                    "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"pod2"}},
                "spec":{"containers":[
                    {"name":"app","image":"proxylab/echo-http:2",
                     "ports":[{"name":"http","containerPort":8080,"protocol":"TCP"},{"containerPort":9000,"name":"metrics"}],
                     "env":[{"name":"B","value":"3"}]}],
                    "nodeName":"node-1"},
                "status":{"phase":"Running"}})
        );
    }

    /// Captured from kubectl 1.33 `apply`: a Service going from http:80 + https:443 (ClusterIP) to
    /// http:80→8080 + dns:53/UDP (NodePort).
    #[test]
    fn kubectl_apply_captured_service_patch() {
        let mut live = json!({"kind":"Service","metadata":{"name":"web"},"spec":{"type":"ClusterIP","clusterIP":"127.0.40.7",
            "selector":{"app":"web"},"ports":[
                {"name":"http","port":80,"targetPort":"http","protocol":"TCP"},
                {"name":"https","port":443,"targetPort":"https","protocol":"TCP"}]}});
        let body = br#"{"spec":{"$setElementOrder/ports":[{"port":80},{"port":53}],"ports":[{"port":80,"targetPort":8080},{"name":"dns","port":53,"protocol":"UDP"},{"$patch":"delete","port":443}],"type":"NodePort"}}"#;
        apply_patch(
            "application/strategic-merge-patch+json",
            &mut live,
            body,
            info("services"),
        )
        .expect("patch");
        assert_eq!(
            live["spec"],
            json!({"type":"NodePort","clusterIP":"127.0.40.7","selector":{"app":"web"},"ports":[
                {"name":"http","port":80,"targetPort":8080,"protocol":"TCP"},
                {"name":"dns","port":53,"protocol":"UDP"}]})
        );
    }

    #[test]
    fn kubectl_apply_style_secret_patch() {
        // What kubectl apply sends after the user changed `stringData`/annotations of a Secret.
        let mut s = json!({"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/service-account-token",
            "metadata":{"name":"default-token","annotations":{
                "kubectl.kubernetes.io/last-applied-configuration":"{}","kubernetes.io/service-account.name":"default"}},
            "data":{"token":"dA=="}});
        let body = br#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"new\":1}\n","extra":"1"}}}"#;
        apply_patch(
            "application/strategic-merge-patch+json; charset=utf-8",
            &mut s,
            body,
            info("secrets"),
        )
        .expect("patch");
        assert_eq!(s["metadata"]["annotations"]["extra"], "1");
        assert_eq!(s["data"]["token"], "dA==");
    }

    #[test]
    fn apply_patch_dispatch() {
        let svc = info("services");
        let mut t = json!({"spec":{"ports":[{"port":80}]}});
        apply_patch(
            "application/merge-patch+json",
            &mut t,
            br#"{"spec":{"ports":[{"port":81}]}}"#,
            svc,
        )
        .expect("m");
        assert_eq!(t["spec"]["ports"], json!([{"port":81}]));
        apply_patch(
            "application/json-patch+json",
            &mut t,
            br#"[{"op":"add","path":"/x","value":1}]"#,
            svc,
        )
        .expect("j");
        assert_eq!(t["x"], 1);
        apply_patch(
            "application/apply-patch+yaml",
            &mut t,
            b"apiVersion: v1\nkind: Service\nspec:\n  ports:\n  - port: 82\n    name: b\n",
            svc,
        )
        .expect("apply");
        assert_eq!(
            t["spec"]["ports"],
            json!([{"port":81},{"port":82,"name":"b"}])
        );
        apply_patch(
            "application/apply-patch+yaml",
            &mut t,
            br#"{"apiVersion":"v1","kind":"Service","metadata":{"labels":{"a":"b"}}}"#,
            svc,
        )
        .expect("apply json");
        assert_eq!(t["metadata"]["labels"]["a"], "b");
        let e = apply_patch("text/plain", &mut t, b"{}", svc).expect_err("415");
        assert_eq!(e.to_status().code(), 415);
        assert_eq!(
            apply_patch("application/merge-patch+json", &mut t, b"{", svc)
                .map_err(|e| e.to_status().code()),
            Err(400)
        );
        assert!(apply_patch("application/merge-patch+json", &mut t, b"[]", svc).is_err());
        assert!(apply_patch("application/apply-patch+yaml", &mut t, b"- a", svc).is_err());
    }
}
