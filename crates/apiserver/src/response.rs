//! Turning results into HTTP responses: JSON (optionally pretty or YAML), `Status` errors, and content
//! negotiation of the `Accept` header (Table and aggregated discovery are chosen by media-type parameters,
//! as kube-apiserver does: `application/json;as=Table;v=v1;g=meta.k8s.io`).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use proxylab_apimachinery::status::Status;
use serde_json::Value;

pub(crate) const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// How the client wants the answer encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Format {
    pub pretty: bool,
    pub yaml: bool,
}

impl Format {
    pub fn from_request(headers: &HeaderMap, pretty_param: Option<&str>) -> Format {
        let accept = accept(headers);
        let yaml = accept
            .split(',')
            .next()
            .is_some_and(|first| first.trim().starts_with("application/yaml"));
        let pretty = match pretty_param {
            Some(p) => matches!(p, "" | "1" | "t" | "T" | "true" | "TRUE" | "True"),
            None => false,
        };
        Format { pretty, yaml }
    }
}

pub(crate) fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Whether any alternative of the Accept header asks for a media type with `as=<what>` (and, when
/// given, `v=<version>`).
pub(crate) fn accepts_as(headers: &HeaderMap, what: &str, version: Option<&str>) -> bool {
    accept(headers).split(',').any(|alt| {
        let mut has_as = false;
        let mut has_v = version.is_none();
        for p in alt.split(';').skip(1) {
            let Some((k, v)) = p.trim().split_once('=') else {
                continue;
            };
            if k == "as" && v == what {
                has_as = true;
            }
            if k == "v" && Some(v) == version {
                has_v = true;
            }
        }
        has_as && has_v
    })
}

/// Whether the client can take JSON at all (else 406).
pub(crate) fn accepts_json(headers: &HeaderMap) -> bool {
    let a = accept(headers);
    a.is_empty()
        || a.split(',').any(|alt| {
            let mt = alt.split(';').next().unwrap_or("").trim();
            matches!(
                mt,
                "" | "*/*"
                    | "application/*"
                    | "application/json"
                    | "application/yaml"
                    | "application/json-patch+json"
            )
        })
}

fn encode(v: &Value, fmt: Format) -> (Vec<u8>, &'static str) {
    if fmt.yaml
        && let Ok(s) = serde_saphyr::to_string(v)
    {
        return (s.into_bytes(), "application/yaml");
    }
    let bytes = if fmt.pretty {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    };
    (bytes.unwrap_or_default(), "application/json")
}

pub(crate) fn object(code: StatusCode, v: &Value, fmt: Format) -> Response {
    let (body, ct) = encode(v, fmt);
    with_type(code, body, ct)
}

pub(crate) fn with_type(code: StatusCode, body: Vec<u8>, content_type: &str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

/// A `Status` error as kube-apiserver sends it.
pub(crate) fn status(s: &Status) -> Response {
    let code = StatusCode::from_u16(s.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&s.to_value()).unwrap_or_default();
    with_type(code, body, "application/json")
}

/// Wrapper so handlers can `?` a `Status`.
#[derive(Debug)]
pub(crate) struct ApiError(pub Status);

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        ApiError(s)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        status(&self.0)
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn text(code: StatusCode, body: String) -> Response {
    with_type(code, body.into_bytes(), "text/plain; charset=utf-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_params() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert!(accepts_as(&h, "Table", None));
        assert!(accepts_as(&h, "Table", Some("v1")));
        assert!(!accepts_as(&h, "APIGroupDiscoveryList", None));
        assert!(accepts_json(&h));
        h.insert(
            header::ACCEPT,
            "application/vnd.kubernetes.protobuf".parse().unwrap(),
        );
        assert!(!accepts_json(&h));
    }
}
