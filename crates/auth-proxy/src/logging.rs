//! Logging for the `auth-proxy` binary: one access line per request, written off the request path.
//!
//! An access log is a write per request; done synchronously to stderr (one `write(2)` per line, under
//! a lock) it halved the proxy's throughput in `bench/auth-proxy.sh`. Here each formatted line is
//! handed to a writer thread that writes through a buffer and flushes whenever it has caught up, so
//! a burst of requests costs a few large writes and an idle proxy still shows each line at once.
//!
//! The default filter is `info,hop=warn`: the access line (target `access`) already carries
//! everything the per-hop event (target `hop`, from `core::telemetry`) says, plus the HTTP fields.
//! `RUST_LOG=hop=info` brings the hop events back.

use std::io::{self, Write};
use std::sync::mpsc;

use proxylab_core::telemetry::LogFormat;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

enum Msg {
    Line(Vec<u8>),
    Flush(mpsc::SyncSender<()>),
}

/// A handle to the writer thread, to flush before the process exits.
#[derive(Clone)]
pub struct LogHandle {
    tx: mpsc::Sender<Msg>,
}

impl LogHandle {
    /// Waits until every line logged so far is written.
    pub fn flush(&self) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }
}

/// The `MakeWriter` given to tracing: each event is formatted into its own buffer, sent on drop.
#[derive(Clone)]
struct Batched {
    tx: mpsc::Sender<Msg>,
}

/// One event's bytes.
struct Line {
    buf: Vec<u8>,
    tx: mpsc::Sender<Msg>,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.tx.send(Msg::Line(std::mem::take(&mut self.buf)));
        }
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line {
            buf: Vec::with_capacity(256),
            tx: self.tx.clone(),
        }
    }
}

/// Installs the global subscriber (text or JSON, `RUST_LOG` honoured) and starts the writer thread.
pub fn init(format: LogFormat) -> LogHandle {
    let (tx, rx) = mpsc::channel::<Msg>();
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            let mut out = io::BufWriter::with_capacity(64 * 1024, io::stderr());
            while let Ok(msg) = rx.recv() {
                let mut next = Some(msg);
                // Drain what is queued, then flush once: batching under load, prompt when idle.
                while let Some(m) = next.take() {
                    match m {
                        Msg::Line(l) => {
                            let _ = out.write_all(&l);
                        }
                        Msg::Flush(done) => {
                            let _ = out.flush();
                            let _ = done.send(());
                        }
                    }
                    next = rx.try_recv().ok();
                }
                let _ = out.flush();
            }
        })
        .ok();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,hop=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Batched { tx: tx.clone() });
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    LogHandle { tx }
}

/// One access-log entry.
#[derive(Debug, serde::Serialize)]
pub struct AccessEntry<'a> {
    /// RFC 3339 time the request arrived.
    pub time: &'a str,
    /// The client's address (`unix` for a unix-socket client).
    pub client: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// The path as received.
    pub path: &'a str,
    /// The Host header.
    pub host: &'a str,
    /// The status answered.
    pub status: u16,
    /// `ok`, `upgraded`, `rejected`, `upstream-connect`, …
    pub outcome: &'a str,
    /// Request body bytes (tunnel bytes client → apiserver for an upgrade).
    pub bytes_up: u64,
    /// Response body bytes (tunnel bytes apiserver → client for an upgrade).
    pub bytes_down: u64,
    /// Time until the response body (or the tunnel) ended, in milliseconds.
    pub duration_ms: f64,
}

/// The access log, formatted directly (not through `tracing`'s formatter, which costs as much as
/// the proxying itself at tens of thousands of requests a second) and written by the log thread.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Msg>,
    json: bool,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("json", &self.json)
            .finish()
    }
}

impl AccessLog {
    /// An access log writing through `handle`'s thread in `format`.
    pub fn new(handle: &LogHandle, format: LogFormat) -> Self {
        Self {
            tx: handle.tx.clone(),
            json: format == LogFormat::Json,
        }
    }

    /// Writes one line.
    pub fn log(&self, e: &AccessEntry<'_>) {
        let mut line = Vec::with_capacity(192);
        if self.json {
            #[derive(serde::Serialize)]
            struct J<'a> {
                timestamp: &'a str,
                level: &'static str,
                target: &'static str,
                message: &'static str,
                #[serde(flatten)]
                entry: &'a AccessEntry<'a>,
            }
            let _ = serde_json::to_writer(
                &mut line,
                &J {
                    timestamp: e.time,
                    level: "INFO",
                    target: "access",
                    message: "request",
                    entry: e,
                },
            );
            line.push(b'\n');
        } else {
            let _ = writeln!(
                line,
                "{}  INFO access: request client={} method={} path={} host={} status={} outcome={} bytes_up={} bytes_down={} duration_ms={:.3}",
                e.time,
                e.client,
                e.method,
                e.path,
                e.host,
                e.status,
                e.outcome,
                e.bytes_up,
                e.bytes_down,
                e.duration_ms
            );
        }
        let _ = self.tx.send(Msg::Line(line));
    }
}
