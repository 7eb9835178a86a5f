//! `GET /containerLogs/{namespace}/{pod}/{container}`: what `kubectl logs` reads.
//!
//! Query parameters are the kubelet's (`PodLogOptions`, v1): `follow`, `tailLines` (or the older
//! `tail`, where `all` means no limit), `sinceSeconds`, `sinceTime` (RFC 3339), `timestamps`,
//! `previous`, `limitBytes`, and `stream` (`All`, `Stdout`, `Stderr`: the echo workloads write
//! stdout only). The kubelet's answers are kept: 400 when the query does not decode, 422 when it
//! breaks a validation rule (both sinceSeconds and sinceTime, a negative tailLines…), 404 for an
//! unknown pod or container, 400 for `previous=true` (no container here has restarted) and for a
//! container that never started. Messages say which rule, where the kubelet says only
//! "Invalid request.".

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use futures_util::StreamExt;
use http::{StatusCode, header};
use jiff::Timestamp;
use tokio::sync::broadcast;

use super::KubeletState;
use crate::streaming::{query_map, text_error};
use crate::workload::logs::LogLine;

/// `PodLogOptions` as the kubelet reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new lines.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Only lines written at or after this time.
    pub since: Option<Timestamp>,
    /// Prefix each line with its RFC 3339 (nanosecond) time.
    pub timestamps: bool,
    /// The previous instance of the container.
    pub previous: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<usize>,
    /// Only stderr (which the echo workloads never write).
    pub stderr_only: bool,
}

/// Why a query was refused, with the kubelet's status code.
#[derive(Debug, PartialEq, Eq)]
pub struct QueryError {
    /// 400 (does not decode) or 422 (fails validation).
    pub status: StatusCode,
    /// What is wrong.
    pub message: String,
}

fn decode_error(message: String) -> QueryError {
    QueryError {
        status: StatusCode::BAD_REQUEST,
        message: format!("Unable to decode query: {message}"),
    }
}

fn invalid(message: &str) -> QueryError {
    QueryError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: format!("Invalid request: {message}"),
    }
}

impl LogOptions {
    /// Decodes and validates a query string, at time `now` (for `sinceSeconds`).
    pub fn parse(query: Option<&str>, now: Timestamp) -> Result<Self, QueryError> {
        let mut query: BTreeMap<String, Vec<String>> = query_map(query);
        // Backwards compatibility, as the kubelet: `tail` is `tailLines`, `tail=all` is no limit.
        if let Some(tail) = query.remove("tail").and_then(|v| v.into_iter().next()) {
            if tail != "all" {
                query.insert("tailLines".into(), vec![tail]);
            } else {
                query.remove("tailLines");
            }
        }
        let one = |name: &str| query.get(name).and_then(|v| v.first()).cloned();
        let boolean = |name: &str| -> Result<bool, QueryError> {
            match one(name).as_deref() {
                None => Ok(false),
                Some("true" | "1" | "True" | "TRUE" | "t" | "T") => Ok(true),
                Some("false" | "0" | "False" | "FALSE" | "f" | "F") => Ok(false),
                Some(other) => Err(decode_error(format!("{name}={other:?} is not a boolean"))),
            }
        };
        let integer = |name: &str| -> Result<Option<i64>, QueryError> {
            one(name)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| decode_error(format!("{name}={v:?} is not an integer")))
                })
                .transpose()
        };
        let tail_lines = integer("tailLines")?;
        let since_seconds = integer("sinceSeconds")?;
        let limit_bytes = integer("limitBytes")?;
        let since_time = one("sinceTime")
            .map(|v| {
                v.parse::<Timestamp>()
                    .map_err(|_| decode_error(format!("sinceTime={v:?} is not an RFC 3339 time")))
            })
            .transpose()?;
        if since_seconds.is_some() && since_time.is_some() {
            return Err(invalid(
                "at most one of sinceTime or sinceSeconds may be specified",
            ));
        }
        if tail_lines.is_some_and(|n| n < 0) {
            return Err(invalid("tailLines must be greater than or equal to 0"));
        }
        if since_seconds.is_some_and(|n| n < 1) {
            return Err(invalid("sinceSeconds must be greater than 0"));
        }
        if limit_bytes.is_some_and(|n| n < 1) {
            return Err(invalid("limitBytes must be greater than 0"));
        }
        let stderr_only = match one("stream").as_deref() {
            None | Some("All") | Some("Stdout") => false,
            Some("Stderr") => true,
            Some(other) => {
                return Err(invalid(&format!(
                    "stream {other:?}: supported values are All, Stdout, Stderr"
                )));
            }
        };
        let since = match (since_seconds, since_time) {
            (Some(secs), _) => Some(
                now.checked_sub(jiff::SignedDuration::from_secs(secs))
                    .unwrap_or(Timestamp::MIN),
            ),
            (None, t) => t,
        };
        Ok(Self {
            follow: boolean("follow")?,
            tail_lines: tail_lines.map(|n| n as usize),
            since,
            timestamps: boolean("timestamps")?,
            previous: boolean("previous")?,
            limit_bytes: limit_bytes.map(|n| n as usize),
            stderr_only,
        })
    }

    fn format(&self, line: &LogLine) -> String {
        if self.timestamps {
            format!(
                "{} {}\n",
                line.time.strftime("%Y-%m-%dT%H:%M:%S.%9fZ"),
                line.text
            )
        } else {
            format!("{}\n", line.text)
        }
    }
}

/// Cuts a stream of chunks at `limit` bytes (mid-line, as the kubelet's `LimitWriter`).
struct Limit {
    left: Option<usize>,
}

impl Limit {
    fn take(&mut self, mut chunk: String) -> Option<String> {
        match &mut self.left {
            None => Some(chunk),
            Some(0) => None,
            Some(left) => {
                if chunk.len() > *left {
                    let mut cut = *left;
                    while !chunk.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    chunk.truncate(cut);
                    *left = 0;
                } else {
                    *left -= chunk.len();
                }
                Some(chunk)
            }
        }
    }
}

/// The handler.
pub async fn container_logs(
    State(state): State<KubeletState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let options = match LogOptions::parse(req.uri().query(), Timestamp::now()) {
        Ok(o) => o,
        Err(err) => return text_error(err.status, &err.message),
    };
    let Some(running) = state.containers.get(&namespace, &pod, &container) else {
        let message = match state.pods.get(&namespace, &pod) {
            None if state.containers.of_pod(&namespace, &pod).is_empty() => {
                return text_error(
                    StatusCode::NOT_FOUND,
                    &format!("pod {pod:?} does not exist"),
                );
            }
            Some(p) if spec_has_container(&p, &container) => format!(
                "container {container:?} in pod {pod:?} is waiting to start: its image is not a proxylab workload"
            ),
            _ => {
                return text_error(
                    StatusCode::NOT_FOUND,
                    &format!("container {container:?} not found in pod {pod:?}"),
                );
            }
        };
        return text_error(StatusCode::BAD_REQUEST, &message);
    };
    if options.previous {
        return text_error(
            StatusCode::BAD_REQUEST,
            &format!("previous terminated container {container:?} in pod {pod:?} not found"),
        );
    }
    let (past, live) = running.log.follow(options.tail_lines);
    // Drop our handle: once the container stops and the registry forgets it, the channel closes
    // and a follower's stream ends.
    drop(running);
    let since = options.since;
    let stderr_only = options.stderr_only;
    let keep = move |line: &LogLine| !stderr_only && since.is_none_or(|t| line.time >= t);
    let mut limit = Limit {
        left: options.limit_bytes,
    };
    let backlog: String = past
        .iter()
        .filter(|l| keep(l))
        .map(|l| options.format(l))
        .collect();
    let backlog = limit.take(backlog).unwrap_or_default();
    let done = limit.left == Some(0);
    let response = Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::CACHE_CONTROL, "no-cache");
    if !options.follow || done {
        return response
            .body(Body::from(backlog))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response_text());
    }
    let first = futures_util::stream::iter([Ok::<_, Infallible>(backlog)]);
    let rest = futures_util::stream::unfold((live, limit), move |(mut rx, mut limit)| {
        let options = options.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(line) if keep(&line) => {
                        let chunk = limit.take(options.format(&line))?;
                        return Some((Ok(chunk), (rx, limit)));
                    }
                    Ok(_) => continue,
                    // A slow reader skips what it missed rather than stalling the workload.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let shutdown = state.shutdown.clone();
    let body = first.chain(rest).take_until(shutdown.cancelled_owned());
    response
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response_text())
}

trait IntoText {
    fn into_response_text(self) -> Response;
}

impl IntoText for StatusCode {
    fn into_response_text(self) -> Response {
        text_error(self, self.canonical_reason().unwrap_or("error"))
    }
}

fn spec_has_container(pod: &k8s_openapi::api::core::v1::Pod, name: &str) -> bool {
    pod.spec
        .as_ref()
        .is_some_and(|s| s.containers.iter().any(|c| c.name == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-04T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn query_decoding_and_validation() {
        let o = LogOptions::parse(
            Some("follow=true&tailLines=5&timestamps=1&limitBytes=10"),
            now(),
        )
        .expect("ok");
        assert!(o.follow && o.timestamps);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.limit_bytes, Some(10));
        let o = LogOptions::parse(Some("sinceSeconds=60"), now()).expect("ok");
        assert_eq!(o.since, Some("2026-12-04T11:59:00Z".parse().expect("t")));
        let o = LogOptions::parse(Some("sinceTime=2026-12-04T11:00:00Z"), now()).expect("ok");
        assert_eq!(o.since, Some("2026-12-04T11:00:00Z".parse().expect("t")));
        assert_eq!(
            LogOptions::parse(Some("tail=3"), now())
                .expect("ok")
                .tail_lines,
            Some(3)
        );
        assert_eq!(
            LogOptions::parse(Some("tail=all&tailLines=2"), now())
                .expect("ok")
                .tail_lines,
            None
        );
        for (query, status) in [
            ("tailLines=x", StatusCode::BAD_REQUEST),
            ("follow=maybe", StatusCode::BAD_REQUEST),
            ("sinceTime=yesterday", StatusCode::BAD_REQUEST),
            ("tailLines=-1", StatusCode::UNPROCESSABLE_ENTITY),
            ("sinceSeconds=0", StatusCode::UNPROCESSABLE_ENTITY),
            ("limitBytes=0", StatusCode::UNPROCESSABLE_ENTITY),
            (
                "sinceSeconds=5&sinceTime=2026-12-04T11:00:00Z",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            ("stream=Both", StatusCode::UNPROCESSABLE_ENTITY),
        ] {
            assert_eq!(
                LogOptions::parse(Some(query), now())
                    .expect_err(query)
                    .status,
                status,
                "{query}"
            );
        }
    }

    #[test]
    fn limit_cuts_on_char_boundaries() {
        let mut limit = Limit { left: Some(5) };
        assert_eq!(limit.take("abc".into()).as_deref(), Some("abc"));
        assert_eq!(
            limit.take("dé f".into()).as_deref(),
            Some("d"),
            "é is two bytes"
        );
        assert_eq!(limit.take("more".into()), None);
        let mut unlimited = Limit { left: None };
        assert_eq!(unlimited.take("x".into()).as_deref(), Some("x"));
    }
}
