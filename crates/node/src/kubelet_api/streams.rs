//! The streaming handlers: find the pod and container, check the options, hand the upgrade to
//! [`crate::streaming`] with the work to run on it (a shell command, or attaching to the log).
//!
//! Errors before the upgrade are the kubelet's: 400 for bad options, 404 `pod does not exist`,
//! 404 for a uid that is not the pod's, 404 `container not found ("c")`.

use axum::extract::{Path, Request, State};
use axum::response::Response;
use futures_util::FutureExt;
use http::StatusCode;
use tokio::sync::broadcast;

use super::{KubeletState, RunningContainer};
use crate::shell;
use crate::shell::term::{Input, Io, Line};
use crate::streaming::remotecommand::{self, ExecStreams, ExitStatus, StreamOptions};
use crate::streaming::{portforward, query_map, text_error};

type PodPath = Path<(String, String, String)>;
type PodUidPath = Path<(String, String, String, String)>;

/// `/exec/{ns}/{pod}/{container}`.
pub async fn exec(
    State(state): State<KubeletState>,
    Path((ns, pod, c)): PodPath,
    req: Request,
) -> Response {
    start(state, ns, pod, None, c, req, Kind::Exec)
}

/// `/exec/{ns}/{pod}/{uid}/{container}`.
pub async fn exec_uid(
    State(state): State<KubeletState>,
    Path((ns, pod, uid, c)): PodUidPath,
    req: Request,
) -> Response {
    start(state, ns, pod, Some(uid), c, req, Kind::Exec)
}

/// `/attach/{ns}/{pod}/{container}`.
pub async fn attach(
    State(state): State<KubeletState>,
    Path((ns, pod, c)): PodPath,
    req: Request,
) -> Response {
    start(state, ns, pod, None, c, req, Kind::Attach)
}

/// `/attach/{ns}/{pod}/{uid}/{container}`.
pub async fn attach_uid(
    State(state): State<KubeletState>,
    Path((ns, pod, uid, c)): PodUidPath,
    req: Request,
) -> Response {
    start(state, ns, pod, Some(uid), c, req, Kind::Attach)
}

/// `/portForward/{ns}/{pod}`.
pub async fn port_forward(
    State(state): State<KubeletState>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    forward(state, ns, pod, None, req)
}

/// `/portForward/{ns}/{pod}/{uid}`.
pub async fn port_forward_uid(
    State(state): State<KubeletState>,
    Path((ns, pod, uid)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    forward(state, ns, pod, Some(uid), req)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exec,
    Attach,
}

/// The pod's uid (from the API's pod, else empty) after checking the one asked for.
fn check_pod(
    state: &KubeletState,
    namespace: &str,
    pod: &str,
    uid: Option<&str>,
) -> Result<String, (StatusCode, &'static str)> {
    let known = state.pods.get(namespace, pod);
    let running = !state.containers.of_pod(namespace, pod).is_empty();
    if known.is_none() && !running {
        return Err((StatusCode::NOT_FOUND, "pod does not exist"));
    }
    let actual = known.and_then(|p| p.metadata.uid).unwrap_or_default();
    if let Some(uid) = uid
        && !actual.is_empty()
        && uid != actual
    {
        return Err((StatusCode::NOT_FOUND, "pod not found"));
    }
    Ok(actual)
}

fn start(
    state: KubeletState,
    namespace: String,
    pod: String,
    uid: Option<String>,
    container: String,
    req: Request,
    kind: Kind,
) -> Response {
    let query = query_map(req.uri().query());
    let options = match StreamOptions::from_query(&query) {
        Ok(o) => o,
        Err(message) => return text_error(StatusCode::BAD_REQUEST, &message),
    };
    if let Err((status, message)) = check_pod(&state, &namespace, &pod, uid.as_deref()) {
        return text_error(status, message);
    }
    let Some(running) = state.containers.get(&namespace, &pod, &container) else {
        return text_error(
            StatusCode::NOT_FOUND,
            &format!("container not found ({container:?})"),
        );
    };
    // For attach, a terminal is the container's (spec `tty`), not the client's to choose.
    let options = StreamOptions {
        tty: options.tty && (kind == Kind::Exec || running.tty),
        ..options
    };
    let runner: remotecommand::Runner = match kind {
        Kind::Exec => {
            let command = query.get("command").cloned().unwrap_or_default();
            if command.is_empty() {
                return text_error(StatusCode::BAD_REQUEST, "command is required");
            }
            let Some(ctx) = running.shell.clone() else {
                return text_error(
                    StatusCode::BAD_REQUEST,
                    &format!("container {container:?} offers no shell to exec in"),
                );
            };
            tracing::info!(%namespace, %pod, %container, ?command, tty = options.tty, "exec");
            Box::new(move |streams| shell::exec(ctx, command, streams).boxed())
        }
        Kind::Attach => {
            tracing::info!(%namespace, %pod, %container, "attach");
            let attached = running.clone();
            Box::new(move |streams| attach_to(attached, streams).boxed())
        }
    };
    remotecommand::serve(req, options, runner, state.shutdown.clone())
}

/// Attaching to an echo container's main process: its output is its log (new lines only, as
/// attaching to a running process shows what it writes from then on); with `stdin: true` in its
/// spec, what the client types is read line by line and logged, so it shows up in the output
/// and in `kubectl logs` — the echo server's way of reading stdin. It ends when the container
/// stops (exit 0) or the client goes away.
async fn attach_to(container: RunningContainer, streams: ExecStreams) -> ExitStatus {
    let (_, mut live) = container.log.follow(Some(0));
    let stdin = if container.stdin { streams.stdin } else { None };
    let mut io = Io::new(streams.stdout, streams.stderr, streams.tty);
    let mut input = Input::new(stdin, streams.tty);
    let log = container.log.clone();
    drop(container);
    let mut reading = input.attached();
    loop {
        tokio::select! {
            line = live.recv() => match line {
                Ok(line) => io.out(&format!("{}\n", line.text)).await,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            line = input.line(&mut io), if reading => match line {
                Line::Text(text) => log.push(format!("stdin: {text}")),
                Line::Interrupt => {}
                Line::Eof => reading = false,
            },
        }
    }
    io.close().await;
    ExitStatus::Success
}

fn forward(
    state: KubeletState,
    namespace: String,
    pod: String,
    uid: Option<String>,
    req: Request,
) -> Response {
    let actual_uid = match check_pod(&state, &namespace, &pod, uid.as_deref()) {
        Ok(uid) => uid,
        Err((status, message)) => return text_error(status, message),
    };
    let running = state.containers.of_pod(&namespace, &pod);
    let Some(ip) = running
        .iter()
        .find_map(|(_, c)| c.shell.as_ref().map(|s| s.pod.ip))
    else {
        return text_error(
            StatusCode::BAD_REQUEST,
            &format!("pod {pod:?} has no running container to forward to"),
        );
    };
    tracing::info!(%namespace, %pod, "port-forward");
    let target = portforward::Target {
        pod: pod.clone(),
        uid: actual_uid,
        pod_ip: ip,
        source_ip: state.node_ip,
    };
    portforward::serve(req, target, state.shutdown.clone())
}
