//! `Status`: how a Kubernetes apiserver reports failure.
//!
//! Every error answer of kube-apiserver is a `v1 Status` object:
//! `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":…,"reason":…,"details":{…},"code":…}`.
//! Clients branch on `reason` (kubectl prints `Error from server (NotFound): pods "x" not found`, client-go's
//! `IsNotFound`/`IsConflict` look at `reason` and `code`), so the reason strings and message formats below
//! copy `k8s.io/apimachinery/pkg/api/errors` closely.

use serde_json::{Map, Value, json};

use crate::registry::ResourceInfo;

/// A group and plural resource, as kube-apiserver names a resource in error messages
/// (`pods`, `endpointslices.discovery.k8s.io`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    /// `resource` for the core group, `resource.group` otherwise.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

impl From<&ResourceInfo> for GroupResource {
    fn from(i: &ResourceInfo) -> Self {
        GroupResource {
            group: i.group.to_string(),
            resource: i.resource.to_string(),
        }
    }
}

/// A bare resource name: `"pods"` (core group) or a qualified `"leases.coordination.k8s.io"`.
impl From<&str> for GroupResource {
    fn from(s: &str) -> Self {
        match s.split_once('.') {
            Some((resource, group)) => GroupResource {
                group: group.to_string(),
                resource: resource.to_string(),
            },
            None => GroupResource {
                group: String::new(),
                resource: s.to_string(),
            },
        }
    }
}

impl From<(&str, &str)> for GroupResource {
    /// `(group, resource)`.
    fn from((group, resource): (&str, &str)) -> Self {
        GroupResource {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

/// A group and kind, as used in `Invalid` errors (`Pod "x" is invalid: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

impl From<&ResourceInfo> for GroupKind {
    fn from(i: &ResourceInfo) -> Self {
        GroupKind {
            group: i.group.to_string(),
            kind: i.kind.to_string(),
        }
    }
}

/// A bare kind in the core group.
impl From<&str> for GroupKind {
    fn from(kind: &str) -> Self {
        GroupKind {
            group: String::new(),
            kind: kind.to_string(),
        }
    }
}

impl From<(&str, &str)> for GroupKind {
    /// `(group, kind)`.
    fn from((group, kind): (&str, &str)) -> Self {
        GroupKind {
            group: group.to_string(),
            kind: kind.to_string(),
        }
    }
}

/// One field problem of an `Invalid` error (a `StatusCause`). The JSON key of the cause type is `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldValueDuplicate`,
    /// `FieldValueForbidden`, `FieldValueTooLong`, `FieldValueTypeInvalid`.
    pub reason: String,
    /// The error body without the field path (`Required value`, `Invalid value: "x": …`).
    pub message: String,
    /// JSON-path-like field (`spec.containers[0].image`, `metadata.name`).
    pub field: String,
}

/// Renders a value the way Go's `%#v`-ish field errors print it: strings quoted, others as JSON.
fn show(value: &Value) -> String {
    value.to_string()
}

impl Cause {
    pub fn new(reason: &str, field: impl Into<String>, message: impl Into<String>) -> Cause {
        Cause {
            reason: reason.to_string(),
            message: message.into(),
            field: field.into(),
        }
    }

    /// The field is missing or empty.
    pub fn required(field: impl Into<String>) -> Cause {
        Cause::new("FieldValueRequired", field, "Required value")
    }

    /// The field has a value that breaks a rule; `detail` says which.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
        let mut msg = format!("Invalid value: {}", show(value));
        if !detail.is_empty() {
            msg.push_str(": ");
            msg.push_str(detail);
        }
        Cause::new("FieldValueInvalid", field, msg)
    }

    /// The value is not one of an enumeration.
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Cause {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause::new(
            "FieldValueNotSupported",
            field,
            format!(
                "Unsupported value: {}: supported values: {}",
                show(value),
                list.join(", ")
            ),
        )
    }

    /// The value repeats one that must be unique.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Cause {
        Cause::new(
            "FieldValueDuplicate",
            field,
            format!("Duplicate value: {}", show(value)),
        )
    }

    /// The field may not be set or changed.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Cause {
        Cause::new("FieldValueForbidden", field, format!("Forbidden: {detail}"))
    }

    /// The value is longer than allowed.
    pub fn too_long(field: impl Into<String>, max: usize) -> Cause {
        Cause::new(
            "FieldValueTooLong",
            field,
            format!("Too long: may not be more than {max} bytes"),
        )
    }

    /// The value has the wrong JSON type.
    pub fn type_invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
        Cause::new(
            "FieldValueTypeInvalid",
            field,
            format!("Invalid value: {}: {detail}", show(value)),
        )
    }

    /// `field: message`, as kube-apiserver joins them into the Status message.
    pub fn describe(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }

    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("reason".into(), Value::String(self.reason.clone()));
        m.insert("message".into(), Value::String(self.message.clone()));
        if !self.field.is_empty() {
            m.insert("field".into(), Value::String(self.field.clone()));
        }
        Value::Object(m)
    }
}

/// `StatusDetails`: which object the error is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    pub name: String,
    pub group: String,
    /// For most errors the plural resource (`pods`), for `Invalid` the kind (`Pod`), as kube-apiserver does.
    pub kind: String,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: Option<u32>,
}

/// A failure (or, rarely, success) `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Status {
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, … (empty for success).
    pub reason: String,
    pub message: String,
    pub details: Option<Details>,
    /// `Success` or `Failure`.
    pub success: bool,
}

impl Status {
    /// A failure with the given code, reason and message.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Status {
        Status {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
            success: false,
        }
    }

    /// The `Status` kube-apiserver returns for a DELETE that finished (code 200).
    pub fn success(gr: impl Into<GroupResource>, name: &str) -> Status {
        let gr = gr.into();
        Status {
            code: 200,
            reason: String::new(),
            message: String::new(),
            details: Some(Details {
                name: name.to_string(),
                group: gr.group,
                kind: gr.resource,
                ..Details::default()
            }),
            success: true,
        }
    }

    fn with_resource(mut self, gr: GroupResource, name: &str) -> Status {
        self.details = Some(Details {
            name: name.to_string(),
            group: gr.group,
            kind: gr.resource,
            ..Details::default()
        });
        self
    }

    /// 404 `pods "x" not found`.
    pub fn not_found(gr: impl Into<GroupResource>, name: &str) -> Status {
        let gr = gr.into();
        Status::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", gr.qualified()),
        )
        .with_resource(gr, name)
    }

    /// 409 `pods "x" already exists`.
    pub fn already_exists(gr: impl Into<GroupResource>, name: &str) -> Status {
        let gr = gr.into();
        Status::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", gr.qualified()),
        )
        .with_resource(gr, name)
    }

    /// 409 Conflict: `Operation cannot be fulfilled on pods "x": <msg>`. For a stale resourceVersion
    /// pass [`CONFLICT_MODIFIED`].
    pub fn conflict(gr: impl Into<GroupResource>, name: &str, msg: &str) -> Status {
        let gr = gr.into();
        Status::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {msg}",
                gr.qualified()
            ),
        )
        .with_resource(gr, name)
    }

    /// 422 Invalid: `Pod "x" is invalid: spec.containers[0].image: Required value` (several causes are
    /// listed in brackets, as kube-apiserver's aggregate error prints them).
    pub fn invalid(gk: impl Into<GroupKind>, name: &str, causes: Vec<Cause>) -> Status {
        let gk = gk.into();
        let qualified = if gk.group.is_empty() {
            gk.kind.clone()
        } else {
            format!("{}.{}", gk.kind, gk.group)
        };
        let body = match causes.len() {
            0 => String::new(),
            1 => format!(": {}", causes[0].describe()),
            _ => format!(
                ": [{}]",
                causes
                    .iter()
                    .map(Cause::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut s = Status::new(
            422,
            "Invalid",
            format!("{qualified} {name:?} is invalid{body}"),
        );
        s.details = Some(Details {
            name: name.to_string(),
            group: gk.group,
            kind: gk.kind,
            causes,
            retry_after_seconds: None,
        });
        s
    }

    /// 400 BadRequest.
    pub fn bad_request(msg: impl Into<String>) -> Status {
        Status::new(400, "BadRequest", msg)
    }

    /// 401 Unauthorized (message `Unauthorized`, as kube-apiserver says it).
    pub fn unauthorized() -> Status {
        Status::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden with the authorizer's message
    /// (`pods is forbidden: User "x" cannot list resource "pods" …`).
    pub fn forbidden(msg: impl Into<String>) -> Status {
        Status::new(403, "Forbidden", msg)
    }

    /// 405 MethodNotAllowed: `<action> is not supported on resources of kind "pods"`.
    pub fn method_not_allowed(gr: impl Into<GroupResource>, action: &str) -> Status {
        let gr = gr.into();
        Status::new(
            405,
            "MethodNotAllowed",
            format!(
                "{action} is not supported on resources of kind {:?}",
                gr.qualified()
            ),
        )
        .with_resource(gr, "")
    }

    /// 406 NotAcceptable: none of the `Accept` types can be produced.
    pub fn not_acceptable(accept: &str) -> Status {
        Status::new(
            406,
            "NotAcceptable",
            format!(
                "the server was unable to respond with a content type that the client supports ({accept})"
            ),
        )
    }

    /// 413 RequestEntityTooLarge.
    pub fn request_entity_too_large(msg: impl Into<String>) -> Status {
        Status::new(413, "RequestEntityTooLarge", msg)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Status {
        Status::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"
            ),
        )
    }

    /// 410 Expired (Gone): a watch or list asked for a resourceVersion older than the history.
    pub fn expired(msg: impl Into<String>) -> Status {
        Status::new(410, "Expired", msg)
    }

    /// 429 TooManyRequests with a retry hint.
    pub fn too_many_requests(msg: impl Into<String>, retry_after_seconds: u32) -> Status {
        let mut s = Status::new(429, "TooManyRequests", msg);
        s.details = Some(Details {
            retry_after_seconds: Some(retry_after_seconds),
            ..Details::default()
        });
        s
    }

    /// 500 InternalError: `Internal error occurred: <msg>`.
    pub fn internal(msg: impl std::fmt::Display) -> Status {
        let mut s = Status::new(
            500,
            "InternalError",
            format!("Internal error occurred: {msg}"),
        );
        s.details = Some(Details {
            causes: vec![Cause::new("UnexpectedServerResponse", "", msg.to_string())],
            ..Details::default()
        });
        s
    }

    /// 503 ServiceUnavailable.
    pub fn service_unavailable(msg: impl Into<String>) -> Status {
        Status::new(503, "ServiceUnavailable", msg)
    }

    /// 504 Timeout.
    pub fn timeout(msg: impl Into<String>) -> Status {
        Status::new(504, "Timeout", msg)
    }

    /// Parses a `Status` object received from an apiserver (`None` if `v` is not a Status). Unknown
    /// fields are ignored; a missing `code` reads as 500.
    pub fn from_value(v: &Value) -> Option<Status> {
        if v.get("kind").and_then(Value::as_str) != Some("Status") {
            return None;
        }
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let details = v.get("details").filter(|d| d.is_object()).map(|d| {
            let ds = |k: &str| {
                d.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            Details {
                name: ds("name"),
                group: ds("group"),
                kind: ds("kind"),
                causes: d
                    .get("causes")
                    .and_then(Value::as_array)
                    .map(|cs| {
                        cs.iter()
                            .map(|c| {
                                let cs = |k: &str| {
                                    c.get(k)
                                        .and_then(Value::as_str)
                                        .unwrap_or_default()
                                        .to_string()
                                };
                                Cause {
                                    reason: cs("reason"),
                                    message: cs("message"),
                                    field: cs("field"),
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                retry_after_seconds: d
                    .get("retryAfterSeconds")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok()),
            }
        });
        Some(Status {
            code: v
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500),
            reason: s("reason"),
            message: s("message"),
            details,
            success: s("status") == "Success",
        })
    }

    /// HTTP status code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The `http::StatusCode` for the response (500 if `code` is not a valid status code).
    pub fn http_status(&self) -> http::StatusCode {
        http::StatusCode::from_u16(self.code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The JSON object to send.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert(
            "status".into(),
            json!(if self.success { "Success" } else { "Failure" }),
        );
        if !self.message.is_empty() {
            m.insert("message".into(), json!(self.message));
        }
        if !self.reason.is_empty() {
            m.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = &self.details {
            let mut dm = Map::new();
            if !d.name.is_empty() {
                dm.insert("name".into(), json!(d.name));
            }
            if !d.group.is_empty() {
                dm.insert("group".into(), json!(d.group));
            }
            if !d.kind.is_empty() {
                dm.insert("kind".into(), json!(d.kind));
            }
            if !d.causes.is_empty() {
                dm.insert(
                    "causes".into(),
                    Value::Array(d.causes.iter().map(Cause::to_value).collect()),
                );
            }
            if let Some(r) = d.retry_after_seconds {
                dm.insert("retryAfterSeconds".into(), json!(r));
            }
            m.insert("details".into(), Value::Object(dm));
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }
}

/// The message kube-apiserver uses for a stale resourceVersion on update.
pub const CONFLICT_MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;

    #[test]
    fn not_found_matches_kube() {
        let s = Status::not_found(lookup("", "v1", "pods").expect("pods"), "web");
        assert_eq!(s.code(), 404);
        assert_eq!(
            s.to_value(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"pods \"web\" not found","reason":"NotFound",
                "details":{"name":"web","kind":"pods"},"code":404})
        );
        let s = Status::not_found("endpointslices.discovery.k8s.io", "x");
        assert_eq!(s.message, "endpointslices.discovery.k8s.io \"x\" not found");
        assert_eq!(s.to_value()["details"]["group"], "discovery.k8s.io");
    }

    #[test]
    fn conflict_and_exists() {
        let s = Status::conflict("pods", "a", CONFLICT_MODIFIED);
        assert_eq!(s.code(), 409);
        assert_eq!(s.reason, "Conflict");
        assert!(
            s.message
                .starts_with("Operation cannot be fulfilled on pods \"a\": the object")
        );
        assert_eq!(
            Status::already_exists("secrets", "t").message,
            "secrets \"t\" already exists"
        );
    }

    #[test]
    fn invalid_lists_causes() {
        let one = Status::invalid("Pod", "p", vec![Cause::required("spec.containers")]);
        assert_eq!(
            one.message,
            "Pod \"p\" is invalid: spec.containers: Required value"
        );
        let two = Status::invalid(
            ("discovery.k8s.io", "EndpointSlice"),
            "e",
            vec![
                Cause::required("addressType"),
                Cause::not_supported("addressType", &json!("IPX"), &["IPv4", "IPv6", "FQDN"]),
            ],
        );
        assert_eq!(two.code(), 422);
        assert_eq!(
            two.message,
            "EndpointSlice.discovery.k8s.io \"e\" is invalid: [addressType: Required value, addressType: Unsupported value: \"IPX\": supported values: \"IPv4\", \"IPv6\", \"FQDN\"]"
        );
        let v = two.to_value();
        assert_eq!(
            v["details"]["causes"][1]["reason"],
            "FieldValueNotSupported"
        );
        assert_eq!(v["details"]["causes"][1]["field"], "addressType");
        assert_eq!(v["details"]["kind"], "EndpointSlice");
    }

    #[test]
    fn round_trips_through_json() {
        for s in [
            Status::not_found("pods", "a"),
            Status::invalid(
                "Pod",
                "p",
                vec![
                    Cause::required("spec"),
                    Cause::invalid("metadata.name", &json!("A"), "bad"),
                ],
            ),
            Status::too_many_requests("slow down", 3),
            Status::success("pods", "x"),
            Status::unauthorized(),
        ] {
            assert_eq!(Status::from_value(&s.to_value()), Some(s));
        }
        assert_eq!(Status::from_value(&json!({"kind":"Pod"})), None);
        assert_eq!(
            Status::from_value(&json!({"kind":"Status"})).map(|s| s.code()),
            Some(500)
        );
    }

    #[test]
    fn codes() {
        assert_eq!(Status::unauthorized().code(), 401);
        assert_eq!(Status::forbidden("no").code(), 403);
        assert_eq!(
            Status::method_not_allowed("pods", "deletecollection").code(),
            405
        );
        assert_eq!(Status::not_acceptable("x").code(), 406);
        assert_eq!(Status::expired("too old").code(), 410);
        assert_eq!(Status::request_entity_too_large("big").code(), 413);
        assert_eq!(Status::unsupported_media_type("text/plain").code(), 415);
        assert_eq!(Status::internal("boom").code(), 500);
        assert_eq!(Status::service_unavailable("later").code(), 503);
        assert_eq!(
            Status::bad_request("bad").http_status(),
            http::StatusCode::BAD_REQUEST
        );
        let ok = Status::success("pods", "x").to_value();
        assert_eq!(ok["status"], "Success");
        assert_eq!(ok["code"], 200);
    }
}
