//! Decoding Kubernetes protobuf request bodies for the kinds `kubectl create …` sends.
//!
//! Built-in Kubernetes types have a second wire format besides JSON: protobuf, wrapped in an envelope.
//! The body is the 4 magic bytes `k8s\0` followed by a `runtime.Unknown` message
//! `{typeMeta{apiVersion=1, kind=2}=1, raw=2, contentEncoding=3, contentType=4}` whose `raw` is the object
//! encoded as its Go-generated message (`k8s.io.api.core.v1.Service`, …). Typed client-go clients — and
//! so the `kubectl create namespace|configmap|secret|serviceaccount|service|deployment` subcommands — send that
//! (`Content-Type: application/vnd.kubernetes.protobuf`) while accepting JSON back; so does
//! `kubectl create token` (an `authentication.k8s.io/v1` TokenRequest).
//!
//! The lab stores JSON, so this module translates the few message types those commands send into the
//! JSON object, using a hand-written table of field numbers taken from the types' `generated.proto`
//! schemas. Fields the table does not know are skipped, kinds it does not know get `415`. Because
//! gogo-protobuf writes non-pointer scalar fields even when they are empty, empty strings, zero numbers
//! and `false` are dropped (as JSON `omitempty` would), except for fields that are pointers in Go.
//! Responses are always JSON, which every client-go client accepts.

pub(crate) mod openapi_v2;
mod workloads;

use base64::Engine;
use proxylab_apimachinery::status::Status;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    /// A `*int32`/`*int64` in Go (`replicas`): written only when set, so `0` is meaningful.
    OptInt,
    Bool,
    /// A `*bool` in Go: written only when set, so `false` is meaningful.
    OptBool,
    Msg(&'static [F]),
    MapStr,
    MapBytes,
    IntOrString,
    Time,
}

struct F {
    num: u64,
    name: &'static str,
    ty: Ty,
    repeated: bool,
}

const fn f(num: u64, name: &'static str, ty: Ty) -> F {
    F {
        num,
        name,
        ty,
        repeated: false,
    }
}

const fn r(num: u64, name: &'static str, ty: Ty) -> F {
    F {
        num,
        name,
        ty,
        repeated: true,
    }
}

const OWNER_REFERENCE: &[F] = &[
    f(1, "kind", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "uid", Ty::Str),
    f(5, "apiVersion", Ty::Str),
    f(6, "controller", Ty::OptBool),
    f(7, "blockOwnerDeletion", Ty::OptBool),
];

const OBJECT_META: &[F] = &[
    f(1, "name", Ty::Str),
    f(2, "generateName", Ty::Str),
    f(3, "namespace", Ty::Str),
    f(5, "uid", Ty::Str),
    f(6, "resourceVersion", Ty::Str),
    f(7, "generation", Ty::Int),
    f(8, "creationTimestamp", Ty::Time),
    f(9, "deletionTimestamp", Ty::Time),
    f(10, "deletionGracePeriodSeconds", Ty::Int),
    f(11, "labels", Ty::MapStr),
    f(12, "annotations", Ty::MapStr),
    r(13, "ownerReferences", Ty::Msg(OWNER_REFERENCE)),
    r(14, "finalizers", Ty::Str),
];

const NAME_REF: &[F] = &[f(1, "name", Ty::Str)];

const OBJECT_REFERENCE: &[F] = &[
    f(1, "kind", Ty::Str),
    f(2, "namespace", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "uid", Ty::Str),
    f(5, "apiVersion", Ty::Str),
    f(6, "resourceVersion", Ty::Str),
    f(7, "fieldPath", Ty::Str),
];

const NAMESPACE: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(&[r(1, "finalizers", Ty::Str)])),
    f(3, "status", Ty::Msg(&[f(1, "phase", Ty::Str)])),
];

const CONFIG_MAP: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "data", Ty::MapStr),
    f(3, "binaryData", Ty::MapBytes),
    f(4, "immutable", Ty::OptBool),
];

const SECRET: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "data", Ty::MapBytes),
    f(3, "type", Ty::Str),
    f(4, "stringData", Ty::MapStr),
    f(5, "immutable", Ty::OptBool),
];

const SERVICE_ACCOUNT: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    r(2, "secrets", Ty::Msg(OBJECT_REFERENCE)),
    r(3, "imagePullSecrets", Ty::Msg(NAME_REF)),
    f(4, "automountServiceAccountToken", Ty::OptBool),
];

const SERVICE_PORT: &[F] = &[
    f(1, "name", Ty::Str),
    f(2, "protocol", Ty::Str),
    f(3, "port", Ty::Int),
    f(4, "targetPort", Ty::IntOrString),
    f(5, "nodePort", Ty::Int),
    f(6, "appProtocol", Ty::Str),
];

const SESSION_AFFINITY_CONFIG: &[F] = &[f(
    1,
    "clientIP",
    Ty::Msg(&[f(1, "timeoutSeconds", Ty::Int)]),
)];

const SERVICE_SPEC: &[F] = &[
    r(1, "ports", Ty::Msg(SERVICE_PORT)),
    f(2, "selector", Ty::MapStr),
    f(3, "clusterIP", Ty::Str),
    f(4, "type", Ty::Str),
    r(5, "externalIPs", Ty::Str),
    f(7, "sessionAffinity", Ty::Str),
    f(8, "loadBalancerIP", Ty::Str),
    r(9, "loadBalancerSourceRanges", Ty::Str),
    f(10, "externalName", Ty::Str),
    f(11, "externalTrafficPolicy", Ty::Str),
    f(12, "healthCheckNodePort", Ty::Int),
    f(13, "publishNotReadyAddresses", Ty::Bool),
    f(
        14,
        "sessionAffinityConfig",
        Ty::Msg(SESSION_AFFINITY_CONFIG),
    ),
    f(17, "ipFamilyPolicy", Ty::Str),
    r(18, "clusterIPs", Ty::Str),
    r(19, "ipFamilies", Ty::Str),
    f(20, "allocateLoadBalancerNodePorts", Ty::OptBool),
    f(21, "loadBalancerClass", Ty::Str),
    f(22, "internalTrafficPolicy", Ty::Str),
    f(23, "trafficDistribution", Ty::Str),
];

const SERVICE: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(SERVICE_SPEC)),
];

const TOKEN_REQUEST: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Ty::Msg(&[
            r(1, "audiences", Ty::Str),
            f(
                3,
                "boundObjectRef",
                Ty::Msg(&[
                    f(1, "kind", Ty::Str),
                    f(2, "apiVersion", Ty::Str),
                    f(3, "name", Ty::Str),
                    f(4, "uid", Ty::Str),
                ]),
            ),
            f(4, "expirationSeconds", Ty::Int),
        ]),
    ),
];

fn schema(api_version: &str, kind: &str) -> Option<&'static [F]> {
    match (api_version, kind) {
        ("authentication.k8s.io/v1", "TokenRequest") => return Some(TOKEN_REQUEST),
        ("apps/v1", "Deployment") => return Some(workloads::DEPLOYMENT),
        ("batch/v1", "Job") => return Some(workloads::JOB),
        _ => {}
    }
    if api_version != "v1" {
        return None;
    }
    Some(match kind {
        "Namespace" => NAMESPACE,
        "ConfigMap" => CONFIG_MAP,
        "Secret" => SECRET,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "Service" => SERVICE,
        _ => return None,
    })
}

fn bad(msg: &str) -> Status {
    Status::bad_request(format!("invalid protobuf body: {msg}"))
}

/// One field as read off the wire.
enum Raw<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Status> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| bad("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }

    fn next(&mut self) -> Result<Option<(u64, Raw<'a>)>, Status> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let (num, wire) = (tag >> 3, tag & 7);
        let raw = match wire {
            0 => Raw::Varint(self.varint()?),
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if self.buf.len() < n {
                    return Err(bad("truncated fixed field"));
                }
                self.buf = &self.buf[n..];
                Raw::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
                if self.buf.len() < len {
                    return Err(bad("truncated field"));
                }
                let (b, rest) = self.buf.split_at(len);
                self.buf = rest;
                Raw::Bytes(b)
            }
            _ => return Err(bad("unsupported wire type")),
        };
        Ok(Some((num, raw)))
    }
}

fn str_of(b: &[u8]) -> Result<String, Status> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("string is not UTF-8"))
}

fn map_entry(b: &[u8], bytes_values: bool) -> Result<(String, Value), Status> {
    let mut rd = Reader { buf: b };
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while let Some((num, raw)) = rd.next()? {
        if let Raw::Bytes(b) = raw {
            match num {
                1 => k = str_of(b)?,
                2 if bytes_values => v = json!(base64::engine::general_purpose::STANDARD.encode(b)),
                2 => v = Value::String(str_of(b)?),
                _ => {}
            }
        }
    }
    Ok((k, v))
}

fn decode_value(ty: Ty, raw: Raw<'_>, depth: usize) -> Result<Option<Value>, Status> {
    Ok(match (ty, raw) {
        (Ty::Str, Raw::Bytes(b)) => Some(Value::String(str_of(b)?)).filter(|s| s != ""),
        // int32 fields carry negative numbers sign-extended to 64 bits.
        (Ty::Int, Raw::Varint(v)) => Some(json!(v as i64)).filter(|n| n != &json!(0)),
        (Ty::OptInt, Raw::Varint(v)) => Some(json!(v as i64)),
        (Ty::Bool, Raw::Varint(v)) => (v != 0).then_some(Value::Bool(true)),
        (Ty::OptBool, Raw::Varint(v)) => Some(Value::Bool(v != 0)),
        (Ty::Msg(fields), Raw::Bytes(b)) => Some(decode_message(fields, b, depth + 1)?),
        (Ty::IntOrString, Raw::Bytes(b)) => {
            let mut rd = Reader { buf: b };
            let (mut kind, mut int, mut s) = (0, 0i64, String::new());
            while let Some((num, raw)) = rd.next()? {
                match (num, raw) {
                    (1, Raw::Varint(v)) => kind = v,
                    (2, Raw::Varint(v)) => int = v as i64,
                    (3, Raw::Bytes(b)) => s = str_of(b)?,
                    _ => {}
                }
            }
            Some(if kind == 1 { json!(s) } else { json!(int) })
        }
        (Ty::Time, Raw::Bytes(b)) => {
            let mut rd = Reader { buf: b };
            let mut secs = 0i64;
            while let Some((num, raw)) = rd.next()? {
                if let (1, Raw::Varint(v)) = (num, raw) {
                    secs = v as i64;
                }
            }
            if secs == 0 {
                None
            } else {
                let ts =
                    jiff::Timestamp::from_second(secs).map_err(|_| bad("time out of range"))?;
                Some(json!(proxylab_apimachinery::meta::format_time(ts)))
            }
        }
        _ => return Err(bad("field has an unexpected wire type")),
    })
}

fn decode_message(fields: &[F], buf: &[u8], depth: usize) -> Result<Value, Status> {
    if depth > 16 {
        return Err(bad("nesting too deep"));
    }
    let mut out = Map::new();
    let mut rd = Reader { buf };
    while let Some((num, raw)) = rd.next()? {
        let Some(fd) = fields.iter().find(|f| f.num == num) else {
            continue;
        };
        match (fd.ty, raw) {
            (Ty::MapStr | Ty::MapBytes, Raw::Bytes(b)) => {
                let (k, v) = map_entry(b, matches!(fd.ty, Ty::MapBytes))?;
                let m = out
                    .entry(fd.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
            }
            (_, raw) => {
                let v = decode_value(fd.ty, raw, depth)?;
                if fd.repeated {
                    let arr = out
                        .entry(fd.name)
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let (Some(a), Some(v)) = (arr.as_array_mut(), v) {
                        a.push(v);
                    }
                } else if let Some(v) = v {
                    out.insert(fd.name.to_owned(), v);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// Whether a Content-Type is Kubernetes protobuf.
pub(crate) fn is_protobuf(media_type: &str) -> bool {
    media_type == "application/vnd.kubernetes.protobuf"
}

/// Decodes a `k8s\0`-enveloped protobuf body into the JSON object.
pub(crate) fn decode(body: &[u8]) -> Result<Value, Status> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s protobuf envelope"))?;
    let mut rd = Reader { buf: rest };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    while let Some((num, v)) = rd.next()? {
        match (num, v) {
            (1, Raw::Bytes(b)) => {
                let mut t = Reader { buf: b };
                while let Some((n, v)) = t.next()? {
                    match (n, v) {
                        (1, Raw::Bytes(b)) => api_version = str_of(b)?,
                        (2, Raw::Bytes(b)) => kind = str_of(b)?,
                        _ => {}
                    }
                }
            }
            (2, Raw::Bytes(b)) => raw = Some(b),
            (3, Raw::Bytes(b)) if !b.is_empty() => {
                return Err(bad("content encodings are not supported"));
            }
            _ => {}
        }
    }
    let fields = schema(&api_version, &kind).ok_or_else(|| {
        Status::unsupported_media_type(&format!(
            "application/vnd.kubernetes.protobuf (the lab decodes protobuf only for v1 Namespace, ConfigMap, Secret, ServiceAccount, Service, TokenRequest, apps/v1 Deployment and batch/v1 Job; got {api_version} {kind}; send JSON)"
        ))
    })?;
    let mut obj = decode_message(fields, raw.unwrap_or(&[]), 0)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    pub(crate) fn bytes_field(num: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
    pub(crate) fn int_field(num: u64, v: u64, out: &mut Vec<u8>) {
        varint(num << 3, out);
        varint(v, out);
    }
    pub(crate) fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        bytes_field(1, k.as_bytes(), &mut e);
        bytes_field(2, v, &mut e);
        e
    }

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        envelope_as("v1", kind, raw)
    }

    pub(crate) fn envelope_as(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        bytes_field(1, api_version.as_bytes(), &mut tm);
        bytes_field(2, kind.as_bytes(), &mut tm);
        let mut body = MAGIC.to_vec();
        bytes_field(1, &tm, &mut body);
        bytes_field(2, raw, &mut body);
        bytes_field(3, b"", &mut body);
        bytes_field(4, b"", &mut body);
        body
    }

    #[test]
    fn service_like_kubectl_create_sends() {
        let mut meta = Vec::new();
        bytes_field(1, b"web", &mut meta);
        bytes_field(2, b"", &mut meta); // gogo writes empty strings
        int_field(7, 0, &mut meta);
        bytes_field(8, b"", &mut meta); // zero Time
        bytes_field(11, &entry("app", b"web"), &mut meta);
        let mut tp = Vec::new();
        int_field(1, 0, &mut tp);
        int_field(2, 8080, &mut tp);
        let mut port = Vec::new();
        bytes_field(1, b"80-8080", &mut port);
        bytes_field(2, b"TCP", &mut port);
        int_field(3, 80, &mut port);
        bytes_field(4, &tp, &mut port);
        int_field(5, 0, &mut port);
        let mut spec = Vec::new();
        bytes_field(1, &port, &mut spec);
        bytes_field(2, &entry("app", b"web"), &mut spec);
        bytes_field(4, b"NodePort", &mut spec);
        int_field(13, 0, &mut spec);
        let mut svc = Vec::new();
        bytes_field(1, &meta, &mut svc);
        bytes_field(2, &spec, &mut svc);
        bytes_field(3, b"", &mut svc);
        let v = decode(&envelope("Service", &svc)).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                    "selector": {"app": "web"}, "type": "NodePort"},
                "apiVersion": "v1", "kind": "Service"})
        );
    }

    #[test]
    fn secret_bytes_and_errors() {
        let mut meta = Vec::new();
        bytes_field(1, b"s", &mut meta);
        let mut sec = Vec::new();
        bytes_field(1, &meta, &mut sec);
        bytes_field(2, &entry("k", &[0, 255]), &mut sec);
        bytes_field(3, b"Opaque", &mut sec);
        let v = decode(&envelope("Secret", &sec)).unwrap();
        assert_eq!(v["data"]["k"], "AP8=");
        assert_eq!(v["type"], "Opaque");
        assert_eq!(decode(&envelope("Pod", &[])).unwrap_err().code(), 415);
        assert_eq!(decode(b"nope").unwrap_err().code(), 400);
        let mut trunc = envelope("Secret", &sec);
        trunc.truncate(trunc.len() - 3);
        assert!(decode(&trunc).is_err());
        assert!(decode(&[b'k', b'8', b's', 0, 0xff, 0xff, 0xff]).is_err());
    }
}
