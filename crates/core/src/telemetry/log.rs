//! Logging off the request path: a writer thread for every log line, the access log, and
//! [`HopSink`], where a proxy's finished requests go.
//!
//! An access log is a write per request; done synchronously to stderr (one `write(2)` per line,
//! under a lock) it halved the auth-proxy's throughput in `bench/auth-proxy.sh`. Here each
//! formatted line is handed to a writer thread that writes through a buffer and flushes whenever it
//! has caught up, so a burst of requests costs a few large writes and an idle proxy still shows
//! each line at once. The access line itself is formatted directly, not through `tracing`'s
//! formatter, which costs as much as the proxying at tens of thousands of requests a second.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use super::{HopLog, HopRecord, LogFormat};

enum Msg {
    Line(Vec<u8>),
    Flush(mpsc::SyncSender<()>),
}

/// The writer thread behind [`init_logging`]: flush it before the process exits.
#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogWriter")
    }
}

impl LogWriter {
    /// Starts a writer thread writing to `out` (stderr for [`init_logging`]).
    pub fn start(out: impl Write + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel::<Msg>();
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                let mut out = io::BufWriter::with_capacity(64 * 1024, out);
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
            });
        if let Err(e) = spawned {
            // Lines sent to a writer that never started are dropped; say so once, directly.
            eprintln!("cannot start the log writer thread: {e}");
        }
        Self { tx }
    }

    /// Waits until every line logged so far is written.
    pub fn flush(&self) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }

    fn send(&self, line: Vec<u8>) {
        let _ = self.tx.send(Msg::Line(line));
    }
}

/// The `MakeWriter` given to tracing: each event is formatted into its own buffer, sent on drop.
#[derive(Clone)]
struct Batched {
    writer: LogWriter,
}

/// One event's bytes.
struct Line {
    buf: Vec<u8>,
    writer: LogWriter,
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
            self.writer.send(std::mem::take(&mut self.buf));
        }
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line {
            buf: Vec::with_capacity(256),
            writer: self.writer.clone(),
        }
    }
}

/// Installs the global tracing subscriber (text or JSON; `RUST_LOG`, else `default_filter`)
/// writing to stderr through a writer thread, and returns that thread's handle. For a proxy
/// binary: [`init_tracing`](super::init_tracing) writes synchronously. A second call installs
/// nothing but still returns a working writer (for an [`AccessLog`]).
pub fn init_logging(format: LogFormat, default_filter: &str) -> LogWriter {
    let writer = LogWriter::start(io::stderr());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Batched {
            writer: writer.clone(),
        });
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    writer
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
    /// `ok`, `upgraded`, `rejected`, `upstream-connect`, `upstream-cut`, …
    pub outcome: &'a str,
    /// Request body bytes (tunnel bytes client → upstream for an upgrade).
    pub bytes_up: u64,
    /// Response body bytes (tunnel bytes upstream → client for an upgrade).
    pub bytes_down: u64,
    /// Time until the response body (or the tunnel) ended, in milliseconds.
    pub duration_ms: f64,
}

/// The access log: one line per request, in the format of the process's other log lines (text:
/// `TIME  INFO access: request client=… method=…`; JSON: one object with `target: "access"`),
/// written by a [`LogWriter`]'s thread.
#[derive(Clone)]
pub struct AccessLog {
    writer: LogWriter,
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
    /// An access log writing through `writer`'s thread in `format`.
    pub fn new(writer: &LogWriter, format: LogFormat) -> Self {
        Self {
            writer: writer.clone(),
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
        self.writer.send(line);
    }
}

/// Where a proxy's finished requests go: its [`HopLog`] and, when configured, one access line
/// each. [`crate::http::PendingHop`] hands every finished hop to one.
#[derive(Debug, Clone)]
pub struct HopSink {
    hops: Arc<HopLog>,
    access: Access,
}

#[derive(Debug, Clone)]
enum Access {
    Off,
    /// Formatted here, written by a writer thread.
    Log(AccessLog),
    /// As `tracing` events (target `access`), for a process whose subscriber is not ours.
    Tracing,
}

impl HopSink {
    /// Hops into `hops`, no access lines.
    pub fn new(hops: Arc<HopLog>) -> Self {
        Self {
            hops,
            access: Access::Off,
        }
    }

    /// Also one access line per hop, through `log`.
    pub fn with_access_log(mut self, log: AccessLog) -> Self {
        self.access = Access::Log(log);
        self
    }

    /// Also one access line per hop, as a `tracing` event (target `access`, level INFO).
    pub fn with_access_tracing(mut self) -> Self {
        self.access = Access::Tracing;
        self
    }

    /// The hop log records go to.
    pub fn hops(&self) -> &Arc<HopLog> {
        &self.hops
    }

    /// Writes the access line (if any) and records the hop. A hop whose protocol is `unix` shows
    /// its client as `unix`.
    pub fn finish(&self, hop: HopRecord) {
        let (method, path, host, status) = match &hop.http {
            Some(h) => (
                h.method.as_str(),
                h.path.as_str(),
                h.host.as_deref().unwrap_or(""),
                h.status.unwrap_or(0),
            ),
            None => ("", "", "", 0),
        };
        // Formatted only when a line is written: most runs of a busy proxy log nothing per request.
        let client = || {
            if hop.protocol == "unix" {
                "unix".to_owned()
            } else {
                hop.client.to_string()
            }
        };
        match &self.access {
            Access::Log(log) => log.log(&AccessEntry {
                time: &hop.time.to_string(),
                client: &client(),
                method,
                path,
                host,
                status,
                outcome: &hop.outcome,
                bytes_up: hop.bytes_up,
                bytes_down: hop.bytes_down,
                duration_ms: hop.duration_ms,
            }),
            Access::Tracing => tracing::info!(
                target: "access",
                client = %client(),
                method,
                path,
                host,
                status,
                outcome = %hop.outcome,
                bytes_up = hop.bytes_up,
                bytes_down = hop.bytes_down,
                duration_ms = hop.duration_ms,
                "request"
            ),
            Access::Off => {}
        }
        self.hops.record(hop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{HttpHop, Metrics};

    /// A `Write` whose bytes a test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<parking_lot::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn hop(protocol: &'static str, outcome: &'static str) -> HopRecord {
        let mut h = HopRecord::start(
            "auth-proxy",
            "auth-proxy",
            protocol,
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:8001".parse().unwrap(),
        );
        h.outcome = outcome.into();
        h.bytes_down = 42;
        h.http = Some(HttpHop {
            method: "GET".into(),
            path: "/api".into(),
            host: Some("localhost".into()),
            status: Some(200),
        });
        h
    }

    #[test]
    fn access_lines_in_text_and_json_and_the_hop_recorded() {
        let out = Shared::default();
        let writer = LogWriter::start(out.clone());
        let hops = HopLog::new(8, &Metrics::new());
        let text =
            HopSink::new(hops.clone()).with_access_log(AccessLog::new(&writer, LogFormat::Text));
        let json =
            HopSink::new(hops.clone()).with_access_log(AccessLog::new(&writer, LogFormat::Json));
        text.finish(hop("http", "upstream-cut"));
        json.finish(hop("unix", "ok"));
        writer.flush();
        let written = String::from_utf8(out.0.lock().clone()).unwrap();
        let mut lines = written.lines();
        let first = lines.next().unwrap();
        assert!(
            first.contains(" INFO access: request client=127.0.0.1:5000 method=GET path=/api host=localhost status=200 outcome=upstream-cut bytes_up=0 bytes_down=42 "),
            "{first}"
        );
        let second: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(second["target"], "access");
        assert_eq!(second["client"], "unix");
        assert_eq!(second["outcome"], "ok");
        assert_eq!(hops.recent(10).len(), 2);
    }
}
