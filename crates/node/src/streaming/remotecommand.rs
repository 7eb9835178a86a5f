//! `exec` and `attach`: the remote-command protocols, over SPDY and WebSocket.
//!
//! Both endpoints connect a client to a process's stdin/stdout/stderr, plus two control streams:
//! **error** (the result: nothing or a text message up to v3, a JSON `metav1.Status` from v4 on —
//! `Success`, or `Failure` with reason `NonZeroExitCode` and the code in `details.causes[0]`, which is
//! how `kubectl exec` exits with the command's code) and **resize** (JSON `{"Width":…,"Height":…}`
//! objects, v3 on, TTY only).
//!
//! Over SPDY the client opens one stream per channel (header `streamType`) and the server waits,
//! at most [`STREAM_CREATION_TIMEOUT`], for as many as the options ask for. Over WebSocket the channels
//! are numbered (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize), and the server first sends an empty
//! message on the lowest writable channel to say it is ready. In both, the server writes the status
//! last, then ends the connection: SPDY `GOAWAY` and a half-close; WebSocket a normal closure, which
//! a v5 client reads as the end of every stream. A v5 client also says "stdin is done" with the
//! CLOSE signal, where the older protocols could only close the whole connection.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use futures_util::future::BoxFuture;
use http::{StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ws::{self, Codec};
use super::{
    HEADER_PROTOCOL_VERSION, SPDY_UPGRADE, Upgrade, header_values, negotiate, negotiation_failed,
    switching_protocols, text_error, upgrade_kind,
};
use crate::pipe::ChanReader;
use crate::spdy;

/// How long the client may take to open the streams it asked for (the kubelet's default).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// SPDY remote-command protocols, newest first. v5 differs from v4 only on WebSocket.
pub const SPDY_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// WebSocket remote-command subprotocols ("" is a client that names none).
pub const WEBSOCKET_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// Which standard streams the client asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// Send stdin.
    pub stdin: bool,
    /// Receive stdout.
    pub stdout: bool,
    /// Receive stderr (never with a TTY: a terminal has one output).
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

impl StreamOptions {
    /// Reads the kubelet's query (`input=1`, `output=1`, `error=1`, `tty=1`, as kube-apiserver
    /// sends them) and also the `stdin=true`/`stdout`/`stderr` spelling of `PodExecOptions`.
    pub fn from_query(query: &BTreeMap<String, Vec<String>>) -> Result<Self, String> {
        let flag = |names: &[&str]| {
            names.iter().any(|n| {
                query
                    .get(*n)
                    .and_then(|v| v.first())
                    .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
            })
        };
        let tty = flag(&["tty"]);
        let options = Self {
            stdin: flag(&["input", "stdin"]),
            stdout: flag(&["output", "stdout"]),
            // A TTY merges stderr into stdout; the kubelet silently drops the request for it.
            stderr: flag(&["error", "stderr"]) && !tty,
            tty,
        };
        if !options.stdin && !options.stdout && !options.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(options)
    }
}

/// A terminal size as the resize stream sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// A writable standard stream.
pub type Output = Box<dyn AsyncWrite + Send + Unpin>;

/// What a command runs with.
pub struct ExecStreams {
    /// The client's stdin (EOF when the client closes it).
    pub stdin: Option<ChanReader>,
    /// Where stdout goes.
    pub stdout: Option<Output>,
    /// Where stderr goes (None with a TTY).
    pub stderr: Option<Output>,
    /// Terminal size changes (TTY, v3 and later).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    /// Whether the client's terminal is in raw mode and expects a terminal's behaviour.
    pub tty: bool,
}

impl std::fmt::Debug for ExecStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecStreams")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("tty", &self.tty)
            .finish()
    }
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exit code 0.
    Success,
    /// A non-zero exit code.
    Code(i32),
    /// The command could not run at all (`error executing command in container: …`).
    Error(String),
}

/// The work behind an upgrade: runs the command (or attaches) on the streams.
pub type Runner = Box<dyn FnOnce(ExecStreams) -> BoxFuture<'static, ExitStatus> + Send>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatusFormat {
    /// v1–v3: a text message for failures, nothing for success.
    Text,
    /// v4, v5: a JSON `metav1.Status`.
    Json,
}

impl StatusFormat {
    fn of(protocol: &str) -> Self {
        if protocol.starts_with("v4.") || protocol.starts_with("v5.") {
            Self::Json
        } else {
            Self::Text
        }
    }

    fn encode(self, status: &ExitStatus) -> Vec<u8> {
        let value = match status {
            ExitStatus::Success => json!({"metadata": {}, "status": "Success"}),
            ExitStatus::Code(code) => json!({
                "metadata": {}, "status": "Failure",
                "message": format!("command terminated with non-zero exit code: exit status {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            ExitStatus::Error(message) => json!({
                "metadata": {}, "status": "Failure",
                "message": format!("Internal error occurred: error executing command in container: {message}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": format!("error executing command in container: {message}")}]},
                "code": 500,
            }),
        };
        match self {
            Self::Json => value.to_string().into_bytes(),
            Self::Text if *status == ExitStatus::Success => Vec::new(),
            Self::Text => value["message"].as_str().unwrap_or("").as_bytes().to_vec(),
        }
    }
}

/// Answers an exec/attach upgrade request: negotiates, switches protocols, and runs `runner` on
/// the streams in a task of its own. Anything but an upgrade gets 400.
pub fn serve(
    mut req: Request,
    options: StreamOptions,
    runner: Runner,
    shutdown: CancellationToken,
) -> Response {
    match upgrade_kind(req.headers()) {
        Some(Upgrade::Spdy) => {
            let client = header_values(req.headers(), HEADER_PROTOCOL_VERSION);
            // A client that names no version speaks the original protocol (older kubelets did the same).
            let protocol = if client.is_empty() {
                "channel.k8s.io"
            } else {
                match negotiate(&client, SPDY_PROTOCOLS) {
                    Some(p) => p,
                    None => return negotiation_failed(&client, SPDY_PROTOCOLS),
                }
            };
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        run_spdy(TokioIo::new(upgraded), protocol, options, runner, shutdown).await
                    }
                    Err(err) => tracing::debug!(error = %err, "exec upgrade failed"),
                }
            });
            switching_protocols(&[
                ("connection", "Upgrade".into()),
                ("upgrade", SPDY_UPGRADE.into()),
                (HEADER_PROTOCOL_VERSION, protocol.into()),
            ])
        }
        Some(Upgrade::WebSocket) => {
            let client = header_values(req.headers(), "sec-websocket-protocol");
            let protocol = if client.is_empty() {
                ""
            } else {
                match negotiate(&client, WEBSOCKET_PROTOCOLS) {
                    Some(p) => p,
                    None => {
                        return text_error(
                            StatusCode::FORBIDDEN,
                            &format!(
                                "requested protocol(s) are not supported: {client:?}; supports {WEBSOCKET_PROTOCOLS:?}"
                            ),
                        );
                    }
                }
            };
            let accept = match websocket_accept(&req) {
                Ok(accept) => accept,
                Err(response) => return *response,
            };
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        run_websocket(TokioIo::new(upgraded), protocol, options, runner, shutdown)
                            .await
                    }
                    Err(err) => tracing::debug!(error = %err, "exec upgrade failed"),
                }
            });
            let mut headers = vec![
                ("connection", "Upgrade".to_owned()),
                ("upgrade", "websocket".to_owned()),
                ("sec-websocket-accept", accept),
            ];
            if !protocol.is_empty() {
                headers.push(("sec-websocket-protocol", protocol.to_owned()));
            }
            switching_protocols(&headers)
        }
        None => text_error(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request (SPDY/3.1 or websocket)",
        ),
    }
}

/// Checks the WebSocket handshake headers and computes `Sec-WebSocket-Accept`.
pub fn websocket_accept(req: &Request) -> Result<String, Box<Response>> {
    let version_ok = req
        .headers()
        .get("sec-websocket-version")
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = req.headers().get("sec-websocket-key");
    match (req.method() == http::Method::GET, version_ok, key) {
        (true, true, Some(key)) => {
            Ok(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
        }
        (false, _, _) => Err(Box::new(text_error(
            StatusCode::BAD_REQUEST,
            "websocket upgrades must use GET",
        ))),
        _ => {
            let mut response = text_error(
                StatusCode::BAD_REQUEST,
                "websocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13",
            );
            response.headers_mut().insert(
                "sec-websocket-version",
                header::HeaderValue::from_static("13"),
            );
            Err(Box::new(response))
        }
    }
}

async fn run_spdy<IO>(
    io: IO,
    protocol: &'static str,
    options: StreamOptions,
    runner: Runner,
    shutdown: CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let mut session = spdy::start(io, shutdown.clone());
    let resizes = protocol != "channel.k8s.io" && protocol != "v2.channel.k8s.io";
    let expected = 1
        + usize::from(options.stdin)
        + usize::from(options.stdout)
        + usize::from(options.stderr)
        + usize::from(options.tty && resizes);
    let mut streams: BTreeMap<&'static str, spdy::SpdyStream> = BTreeMap::new();
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    let mut received = 0;
    while received < expected {
        let stream = tokio::select! {
            s = session.incoming.recv() => s,
            _ = &mut deadline => None,
        };
        let Some(stream) = stream else {
            tracing::debug!(
                received,
                expected,
                "timed out waiting for client to create streams"
            );
            session.handle.close().await;
            return;
        };
        let kind = match stream.headers.get("streamtype") {
            Some("error") => "error",
            Some("stdin") => "stdin",
            Some("stdout") => "stdout",
            Some("stderr") => "stderr",
            Some("resize") if resizes => "resize",
            other => {
                tracing::debug!(stream_type = ?other, "unexpected stream type");
                continue;
            }
        };
        streams.insert(kind, stream);
        received += 1;
    }
    // Streams opened later are refused by the session.
    drop(session.incoming);
    let Some(mut error) = streams.remove("error") else {
        session.handle.close().await;
        return;
    };
    let mut stdin = streams.remove("stdin");
    if protocol == "channel.k8s.io"
        && let Some(stdin) = stdin.as_mut()
    {
        // v1 quirk kept from 1.0 kubelets: the server half-closes stdin's (unused) write side.
        let _ = stdin.writer.shutdown().await;
    }
    let resize = streams.remove("resize").map(|s| resize_channel(s.reader));
    let exec = ExecStreams {
        stdin: stdin.map(|s| s.reader),
        stdout: streams
            .remove("stdout")
            .map(|s| Box::new(s.writer) as Output),
        stderr: streams
            .remove("stderr")
            .map(|s| Box::new(s.writer) as Output),
        resize,
        tty: options.tty,
    };
    let status = run_until(runner(exec), &shutdown).await;
    let bytes = StatusFormat::of(protocol).encode(&status);
    if !bytes.is_empty() {
        let _ = error.writer.write_all(&bytes).await;
    }
    let _ = error.writer.shutdown().await;
    session.handle.close().await;
    let _ = session.task.await;
}

async fn run_websocket<IO>(
    io: IO,
    protocol: &'static str,
    options: StreamOptions,
    runner: Runner,
    shutdown: CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let codec = if protocol.contains("base64") {
        Codec::Base64
    } else {
        Codec::Binary
    };
    let mut readable = vec![RESIZE];
    if options.stdin {
        readable.push(STDIN);
    }
    let mut conn = ws::start(
        io,
        codec,
        &readable,
        protocol == "v5.channel.k8s.io",
        shutdown.clone(),
    )
    .await;
    // "Ready": an empty message on the lowest writable channel.
    let ready = if options.stdout {
        STDOUT
    } else if options.stderr {
        STDERR
    } else {
        ERROR
    };
    conn.announce(ready).await;
    let resize_reader = conn.readers.remove(&RESIZE);
    let exec = ExecStreams {
        stdin: conn.readers.remove(&STDIN),
        stdout: options
            .stdout
            .then(|| Box::new(conn.writer(STDOUT)) as Output),
        stderr: options
            .stderr
            .then(|| Box::new(conn.writer(STDERR)) as Output),
        resize: options
            .tty
            .then_some(resize_reader)
            .flatten()
            .map(resize_channel),
        tty: options.tty,
    };
    let status = run_until(runner(exec), &shutdown).await;
    let bytes = StatusFormat::of(protocol).encode(&status);
    if !bytes.is_empty() {
        let mut error = conn.writer(ERROR);
        let _ = error.write_all(&bytes).await;
    }
    conn.close().await;
}

async fn run_until(
    work: BoxFuture<'static, ExitStatus>,
    shutdown: &CancellationToken,
) -> ExitStatus {
    tokio::select! {
        status = work => status,
        _ = shutdown.cancelled() => ExitStatus::Error("the node is shutting down".into()),
    }
}

/// Decodes the resize stream's JSON objects into sizes (malformed input ends the stream, as the
/// kubelet's `json.Decoder` loop does).
fn resize_channel(mut reader: ChanReader) -> mpsc::Receiver<TerminalSize> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = reader.chunk().await {
            buf.extend_from_slice(&chunk);
            if buf.len() > 64 * 1024 {
                return;
            }
            let mut sizes = serde_json::Deserializer::from_slice(&buf).into_iter::<TerminalSize>();
            let mut consumed = 0;
            loop {
                match sizes.next() {
                    Some(Ok(size)) => {
                        consumed = sizes.byte_offset();
                        if tx.send(size).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(err)) if err.is_eof() => break,
                    Some(Err(_)) => return,
                    None => {
                        consumed = buf.len();
                        break;
                    }
                }
            }
            buf.drain(..consumed);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::super::query_map;
    use super::*;

    #[test]
    fn options_from_kubelet_and_apiserver_queries() {
        let o = StreamOptions::from_query(&query_map(Some("input=1&output=1&tty=1&error=1")))
            .expect("ok");
        assert_eq!(
            o,
            StreamOptions {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true
            }
        );
        let o = StreamOptions::from_query(&query_map(Some("stdout=true&stderr=true"))).expect("ok");
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        assert!(StreamOptions::from_query(&query_map(Some("tty=1"))).is_err());
        assert!(StreamOptions::from_query(&query_map(Some("output=0"))).is_err());
    }

    #[test]
    fn status_documents() {
        let ok = StatusFormat::Json.encode(&ExitStatus::Success);
        assert_eq!(ok, br#"{"metadata":{},"status":"Success"}"#);
        let failed: serde_json::Value =
            serde_json::from_slice(&StatusFormat::Json.encode(&ExitStatus::Code(3))).expect("json");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        assert!(StatusFormat::Text.encode(&ExitStatus::Success).is_empty());
        assert!(
            String::from_utf8(StatusFormat::Text.encode(&ExitStatus::Code(2)))
                .expect("utf8")
                .contains("non-zero exit code")
        );
        assert_eq!(StatusFormat::of("v5.channel.k8s.io"), StatusFormat::Json);
        assert_eq!(
            StatusFormat::of("v4.base64.channel.k8s.io"),
            StatusFormat::Json
        );
        assert_eq!(StatusFormat::of("v3.channel.k8s.io"), StatusFormat::Text);
        assert_eq!(StatusFormat::of(""), StatusFormat::Text);
    }

    #[tokio::test]
    async fn resize_stream_parses_split_objects() {
        let (tx, rx) = mpsc::channel(4);
        let mut sizes = resize_channel(ChanReader::new(rx));
        tx.send(bytes::Bytes::from_static(b"{\"Width\":80,"))
            .await
            .expect("send");
        tx.send(bytes::Bytes::from_static(
            b"\"Height\":24}\n{\"Width\":100,\"Height\":40}",
        ))
        .await
        .expect("send");
        assert_eq!(
            sizes.recv().await,
            Some(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(
            sizes.recv().await,
            Some(TerminalSize {
                width: 100,
                height: 40
            })
        );
        tx.send(bytes::Bytes::from_static(b"not json"))
            .await
            .expect("send");
        assert_eq!(sizes.recv().await, None);
    }
}
