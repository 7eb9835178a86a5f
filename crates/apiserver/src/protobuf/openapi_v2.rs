//! `/openapi/v2` in protobuf: the Swagger 2.0 document as gnostic's `openapi.v2.Document`.
//!
//! kubectl never asks `/openapi/v2` for JSON. It sends
//! `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and parses the answer with
//! gnostic, whose `OpenAPIv2.proto` turns every JSON object of the Swagger document into a message:
//! maps become repeated `(name, value)` pairs (`NamedPathItem`, `NamedSchema`, …), alternatives become
//! `oneof`s (a parameter is a `BodyParameter` or one of four non-body kinds, a parameter or response may
//! be a `JsonReference`), and each `x-…` vendor extension is a `NamedAny` whose value carries the
//! extension as YAML text (JSON is YAML, so the JSON text is written). kube-apiserver builds its
//! protobuf the same way, from the same JSON document.
//!
//! This encoder covers what [`proxylab_apimachinery::openapi::v2_document`] contains: info, paths with
//! their operations, parameters and responses, definitions (schemas with type, properties, items,
//! required, additional properties, `$ref`), security definitions (API keys) and requirements, and
//! vendor extensions everywhere. Field numbers are those of gnostic's `openapiv2/OpenAPIv2.proto`.

use serde_json::{Map, Value};

/// The media type kubectl asks for.
pub(crate) const MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// Whether an Accept header asks for the protobuf document (also the older `.v2.v1.0` spelling).
pub(crate) fn wanted(accept: &str) -> bool {
    accept.split(',').any(|alt| {
        let mt = alt.split(';').next().unwrap_or("").trim();
        mt.starts_with("application/com.github.proto-openapi.spec.v2") && mt.ends_with("+protobuf")
    })
}

/// A protobuf message being written.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u64, wire: u64) {
        self.varint(field << 3 | wire);
    }

    fn bytes(&mut self, field: u64, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    /// proto3 scalars: the default value is not written.
    fn string(&mut self, field: u64, s: Option<&str>) {
        if let Some(s) = s.filter(|s| !s.is_empty()) {
            self.bytes(field, s.as_bytes());
        }
    }

    fn strings(&mut self, field: u64, v: Option<&Value>) {
        for s in v.and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                self.bytes(field, s.as_bytes());
            }
        }
    }

    fn boolean(&mut self, field: u64, b: Option<&Value>) {
        if b.and_then(Value::as_bool) == Some(true) {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u64, v: Option<&Value>) {
        if let Some(n) = v.and_then(Value::as_i64).filter(|n| *n != 0) {
            self.key(field, 0);
            self.varint(n as u64);
        }
    }

    fn double(&mut self, field: u64, v: Option<&Value>) {
        if let Some(x) = v.and_then(Value::as_f64).filter(|x| *x != 0.0) {
            self.key(field, 1);
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }

    /// An embedded message, written even when empty (a `oneof` member or a present object).
    fn message(&mut self, field: u64, m: W) {
        self.bytes(field, &m.0);
    }
}

/// `Any { yaml = 2 }`: a value as YAML text.
fn any(v: &Value) -> W {
    let mut w = W::default();
    w.string(2, Some(&format!("{v}\n")));
    w
}

/// The `x-…` keys of an object as repeated `NamedAny` in `field`.
fn vendor_extensions(w: &mut W, field: u64, obj: &Map<String, Value>) {
    for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = W::default();
        named.string(1, Some(k));
        named.message(2, any(v));
        w.message(field, named);
    }
}

fn obj(v: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    v.as_object().unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// The whole document.
pub(crate) fn document(doc: &Value) -> Vec<u8> {
    let d = obj(doc);
    let mut w = W::default();
    w.string(1, d.get("swagger").and_then(Value::as_str));
    if let Some(info) = d.get("info") {
        let i = obj(info);
        let mut m = W::default();
        m.string(1, i.get("title").and_then(Value::as_str));
        m.string(2, i.get("version").and_then(Value::as_str));
        m.string(3, i.get("description").and_then(Value::as_str));
        vendor_extensions(&mut m, 7, i);
        w.message(2, m);
    }
    w.string(3, d.get("host").and_then(Value::as_str));
    w.string(4, d.get("basePath").and_then(Value::as_str));
    w.strings(5, d.get("schemes"));
    w.strings(6, d.get("consumes"));
    w.strings(7, d.get("produces"));
    if let Some(paths) = d.get("paths") {
        let mut m = W::default();
        vendor_extensions(&mut m, 1, obj(paths));
        for (path, item) in obj(paths).iter().filter(|(k, _)| !k.starts_with("x-")) {
            let mut named = W::default();
            named.string(1, Some(path));
            named.message(2, path_item(item));
            m.message(2, named);
        }
        w.message(8, m);
    }
    if let Some(defs) = d.get("definitions") {
        w.message(9, named_schemas(defs));
    }
    for req in d
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut m = W::default();
        for (name, scopes) in obj(req) {
            let mut named = W::default();
            named.string(1, Some(name));
            let mut arr = W::default();
            arr.strings(1, Some(scopes));
            named.message(2, arr);
            m.message(1, named);
        }
        w.message(12, m);
    }
    if let Some(defs) = d.get("securityDefinitions") {
        let mut m = W::default();
        for (name, def) in obj(defs) {
            let s = obj(def);
            let mut item = W::default();
            let mut scheme = W::default();
            match s.get("type").and_then(Value::as_str) {
                Some("apiKey") => {
                    scheme.string(1, Some("apiKey"));
                    scheme.string(2, s.get("name").and_then(Value::as_str));
                    scheme.string(3, s.get("in").and_then(Value::as_str));
                    scheme.string(4, s.get("description").and_then(Value::as_str));
                    vendor_extensions(&mut scheme, 5, s);
                    item.message(2, scheme);
                }
                Some("basic") => {
                    scheme.string(1, Some("basic"));
                    scheme.string(2, s.get("description").and_then(Value::as_str));
                    vendor_extensions(&mut scheme, 3, s);
                    item.message(1, scheme);
                }
                // The lab declares no OAuth2 schemes.
                _ => continue,
            }
            let mut named = W::default();
            named.string(1, Some(name));
            named.message(2, item);
            m.message(1, named);
        }
        w.message(13, m);
    }
    vendor_extensions(&mut w, 16, d);
    w.0
}

fn path_item(v: &Value) -> W {
    let p = obj(v);
    let mut w = W::default();
    w.string(1, p.get("$ref").and_then(Value::as_str));
    for (field, verb) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(op) = p.get(verb) {
            w.message(field, operation(op));
        }
    }
    for param in p
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(9, parameters_item(param));
    }
    vendor_extensions(&mut w, 10, p);
    w
}

fn operation(v: &Value) -> W {
    let o = obj(v);
    let mut w = W::default();
    w.strings(1, o.get("tags"));
    w.string(2, o.get("summary").and_then(Value::as_str));
    w.string(3, o.get("description").and_then(Value::as_str));
    w.string(5, o.get("operationId").and_then(Value::as_str));
    w.strings(6, o.get("produces"));
    w.strings(7, o.get("consumes"));
    for param in o
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(8, parameters_item(param));
    }
    if let Some(responses) = o.get("responses") {
        let r = obj(responses);
        let mut m = W::default();
        for (code, resp) in r.iter().filter(|(k, _)| !k.starts_with("x-")) {
            let mut value = W::default();
            if let Some(reference) = resp.get("$ref").and_then(Value::as_str) {
                value.message(2, json_reference(reference, resp));
            } else {
                let rs = obj(resp);
                let mut response = W::default();
                response.string(1, rs.get("description").and_then(Value::as_str));
                if let Some(schema) = rs.get("schema") {
                    let mut item = W::default();
                    item.message(1, self::schema(schema));
                    response.message(2, item);
                }
                vendor_extensions(&mut response, 5, rs);
                value.message(1, response);
            }
            let mut named = W::default();
            named.string(1, Some(code));
            named.message(2, value);
            m.message(1, named);
        }
        vendor_extensions(&mut m, 2, r);
        w.message(9, m);
    }
    w.strings(10, o.get("schemes"));
    w.boolean(11, o.get("deprecated"));
    vendor_extensions(&mut w, 13, o);
    w
}

fn json_reference(reference: &str, v: &Value) -> W {
    let mut w = W::default();
    w.string(1, Some(reference));
    w.string(2, v.get("description").and_then(Value::as_str));
    w
}

/// `ParametersItem`: a `Parameter` (body or non-body) or a `JsonReference`.
fn parameters_item(v: &Value) -> W {
    let mut w = W::default();
    if let Some(reference) = v.get("$ref").and_then(Value::as_str) {
        w.message(2, json_reference(reference, v));
        return w;
    }
    let p = obj(v);
    let location = p.get("in").and_then(Value::as_str).unwrap_or("");
    let mut parameter = W::default();
    if location == "body" {
        let mut body = W::default();
        body.string(1, p.get("description").and_then(Value::as_str));
        body.string(2, p.get("name").and_then(Value::as_str));
        body.string(3, Some("body"));
        body.boolean(4, p.get("required"));
        if let Some(s) = p.get("schema") {
            body.message(5, schema(s));
        }
        vendor_extensions(&mut body, 6, p);
        parameter.message(1, body);
    } else {
        // (oneof member, whether the sub-schema has allowEmptyValue at 5 — shifting the rest by one)
        let (member, shifted) = match location {
            "header" => (1, false),
            "formData" => (2, true),
            "query" => (3, true),
            _ => (4, false),
        };
        let at = |n: u64| if shifted { n + 1 } else { n };
        let mut sub = W::default();
        sub.boolean(1, p.get("required"));
        sub.string(2, Some(location));
        sub.string(3, p.get("description").and_then(Value::as_str));
        sub.string(4, p.get("name").and_then(Value::as_str));
        if shifted {
            sub.boolean(5, p.get("allowEmptyValue"));
        }
        sub.string(at(5), p.get("type").and_then(Value::as_str));
        sub.string(at(6), p.get("format").and_then(Value::as_str));
        sub.string(at(8), p.get("collectionFormat").and_then(Value::as_str));
        if let Some(d) = p.get("default") {
            sub.message(at(9), any(d));
        }
        sub.double(at(10), p.get("maximum"));
        sub.double(at(12), p.get("minimum"));
        sub.int64(at(14), p.get("maxLength"));
        sub.int64(at(15), p.get("minLength"));
        sub.string(at(16), p.get("pattern").and_then(Value::as_str));
        sub.boolean(at(19), p.get("uniqueItems"));
        for e in p
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            sub.message(at(20), any(e));
        }
        vendor_extensions(&mut sub, at(22), p);
        let mut non_body = W::default();
        non_body.message(member, sub);
        parameter.message(2, non_body);
    }
    w.message(1, parameter);
    w
}

/// `Definitions`/`Properties`: an object of schemas as repeated `NamedSchema` at field 1.
fn named_schemas(v: &Value) -> W {
    let mut w = W::default();
    for (name, s) in obj(v) {
        let mut named = W::default();
        named.string(1, Some(name));
        named.message(2, schema(s));
        w.message(1, named);
    }
    w
}

fn schema(v: &Value) -> W {
    let s = obj(v);
    let mut w = W::default();
    w.string(1, s.get("$ref").and_then(Value::as_str));
    w.string(2, s.get("format").and_then(Value::as_str));
    w.string(3, s.get("title").and_then(Value::as_str));
    w.string(4, s.get("description").and_then(Value::as_str));
    if let Some(d) = s.get("default") {
        w.message(5, any(d));
    }
    w.double(6, s.get("multipleOf"));
    w.double(7, s.get("maximum"));
    w.boolean(8, s.get("exclusiveMaximum"));
    w.double(9, s.get("minimum"));
    w.boolean(10, s.get("exclusiveMinimum"));
    w.int64(11, s.get("maxLength"));
    w.int64(12, s.get("minLength"));
    w.string(13, s.get("pattern").and_then(Value::as_str));
    w.int64(14, s.get("maxItems"));
    w.int64(15, s.get("minItems"));
    w.boolean(16, s.get("uniqueItems"));
    w.int64(17, s.get("maxProperties"));
    w.int64(18, s.get("minProperties"));
    w.strings(19, s.get("required"));
    for e in s
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(20, any(e));
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = W::default();
            // A oneof bool is written even when false.
            item.key(2, 0);
            item.varint(u64::from(*b));
            w.message(21, item);
        }
        Some(sub @ Value::Object(_)) => {
            let mut item = W::default();
            item.message(1, schema(sub));
            w.message(21, item);
        }
        _ => {}
    }
    match s.get("type") {
        Some(Value::String(t)) => {
            let mut item = W::default();
            item.string(1, Some(t));
            w.message(22, item);
        }
        Some(types @ Value::Array(_)) => {
            let mut item = W::default();
            item.strings(1, Some(types));
            w.message(22, item);
        }
        _ => {}
    }
    match s.get("items") {
        Some(one @ Value::Object(_)) => {
            let mut item = W::default();
            item.message(1, schema(one));
            w.message(23, item);
        }
        Some(Value::Array(many)) => {
            let mut item = W::default();
            for one in many {
                item.message(1, schema(one));
            }
            w.message(23, item);
        }
        _ => {}
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(24, schema(sub));
    }
    if let Some(props) = s.get("properties") {
        w.message(25, named_schemas(props));
    }
    w.string(26, s.get("discriminator").and_then(Value::as_str));
    w.boolean(27, s.get("readOnly"));
    if let Some(e) = s.get("example") {
        w.message(30, any(e));
    }
    vendor_extensions(&mut w, 31, s);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protobuf reader just deep enough to check the structure by gnostic's field numbers.
    fn fields(mut b: &[u8]) -> Vec<(u64, Vec<u8>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let value = match key & 7 {
                0 => varint(&mut b).to_le_bytes().to_vec(),
                1 => {
                    let v = b[..8].to_vec();
                    b = &b[8..];
                    v
                }
                2 => {
                    let n = varint(&mut b) as usize;
                    let v = b[..n].to_vec();
                    b = &b[n..];
                    v
                }
                w => panic!("unexpected wire type {w}"),
            };
            out.push((key >> 3, value));
        }
        out
    }

    fn one(b: &[u8], field: u64) -> Vec<u8> {
        fields(b)
            .into_iter()
            .find(|(f, _)| *f == field)
            .unwrap_or_else(|| panic!("field {field} missing"))
            .1
    }

    fn text(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn accept_header_forms() {
        assert!(wanted(MEDIA_TYPE));
        assert!(wanted(
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        ));
        assert!(!wanted("application/json"));
    }

    #[test]
    fn the_lab_document_as_gnostic_reads_it() {
        let doc = proxylab_apimachinery::openapi::v2_document();
        let b = document(&doc);
        assert_eq!(text(one(&b, 1)), "2.0");
        assert_eq!(text(one(&one(&b, 2), 1)), "Kubernetes");
        // Paths: one NamedPathItem per JSON path, in order.
        let paths: Vec<(u64, Vec<u8>)> = fields(&one(&b, 8))
            .into_iter()
            .filter(|(f, _)| *f == 2)
            .collect();
        assert_eq!(paths.len(), doc["paths"].as_object().unwrap().len());
        let deploy = paths
            .iter()
            .map(|(_, p)| p)
            .find(|p| text(one(p, 1)) == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            .expect("the deployment path");
        let patch = one(&one(deploy, 2), 8);
        // The PATCH operation's GVK extension: a NamedAny whose Any carries it as YAML (JSON).
        let gvk = fields(&patch)
            .into_iter()
            .filter(|(f, _)| *f == 13)
            .map(|(_, ext)| (text(one(&ext, 1)), text(one(&one(&ext, 2), 2))))
            .find(|(name, _)| name == "x-kubernetes-group-version-kind")
            .expect("gvk extension")
            .1;
        let gvk: Value = serde_json::from_str(&gvk).unwrap();
        assert_eq!(gvk["kind"], "Deployment");
        assert_eq!(gvk["group"], "apps");
        // Its parameters include the query parameter fieldValidation (ParametersItem → Parameter →
        // NonBodyParameter → QueryParameterSubSchema, name at 4).
        let names: Vec<String> = fields(&patch)
            .into_iter()
            .filter(|(f, _)| *f == 8)
            .filter_map(|(_, item)| {
                let param = one(&item, 1);
                let non_body = fields(&param).into_iter().find(|(f, _)| *f == 2)?.1;
                let query = fields(&non_body).into_iter().find(|(f, _)| *f == 3)?.1;
                Some(text(one(&query, 4)))
            })
            .collect();
        assert!(names.contains(&"fieldValidation".to_string()), "{names:?}");
        // Definitions: NamedSchema entries, with the schema's type as a TypeItem.
        let defs = fields(&one(&b, 9));
        assert_eq!(defs.len(), doc["definitions"].as_object().unwrap().len());
        let (_, first) = &defs[0];
        let schema = one(first, 2);
        assert_eq!(text(one(&one(&schema, 22), 1)), "object");
        // Security definitions: the bearer token as an ApiKeySecurity.
        let sec = one(&one(&one(&one(&b, 13), 1), 2), 2);
        assert_eq!(text(one(&sec, 1)), "apiKey");
        assert_eq!(text(one(&sec, 2)), "authorization");
    }
}
