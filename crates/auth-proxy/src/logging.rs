//! Logging for the `auth-proxy` binary: one access line per request, written off the request path
//! by `core::telemetry`'s log writer thread (see `proxylab_core::telemetry::init_logging`).
//!
//! The default filter is `info,hop=warn`: the access line (target `access`) already carries
//! everything the per-hop event (target `hop`, from `core::telemetry`) says, plus the HTTP fields.
//! `RUST_LOG=hop=info` brings the hop events back.

use proxylab_core::telemetry::LogFormat;

pub use proxylab_core::telemetry::{AccessEntry, AccessLog, LogWriter as LogHandle};

/// Installs the global subscriber (text or JSON, `RUST_LOG` honoured, else `info,hop=warn`) and
/// starts the writer thread.
pub fn init(format: LogFormat) -> LogHandle {
    proxylab_core::telemetry::init_logging(format, "info,hop=warn")
}
