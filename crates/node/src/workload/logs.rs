//! Container logs: what `kubectl logs` shows.
//!
//! A container runtime captures each container's stdout/stderr into a file and the kubelet serves it
//! at `/containerLogs/{namespace}/{pod}/{container}` (the apiserver's `pods/log` proxies there). The
//! echo workloads have no stdout of their own; instead each container writes one line per HTTP
//! request, TCP connection or `whoami` datagram into a bounded in-memory log — who connected, from
//! which address, to which address — so `kubectl logs` on a backend shows what the proxies in front
//! of it did. A `busybox` container has output of its own: [`LogWriter`] turns what its program
//! writes into lines of the same log.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use tokio::sync::broadcast;

/// Lines kept per container (older ones are dropped, as log rotation would).
pub const DEFAULT_CAPACITY: usize = 2000;

/// One log line and when it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When the line was written.
    pub time: Timestamp,
    /// The text, without a trailing newline.
    pub text: String,
}

/// A container's log: a bounded ring of lines plus live followers.
#[derive(Clone, Debug)]
pub struct ContainerLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lines: Mutex<VecDeque<LogLine>>,
    capacity: usize,
    /// Followers (`kubectl logs -f`); a slow follower lags and skips, never blocks the workload.
    live: broadcast::Sender<LogLine>,
}

impl Default for ContainerLog {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl ContainerLog {
    /// An empty log keeping at most `capacity` lines.
    pub fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(256);
        Self {
            inner: Arc::new(Inner {
                lines: Mutex::new(VecDeque::new()),
                capacity: capacity.max(1),
                live,
            }),
        }
    }

    /// Appends a line.
    pub fn push(&self, text: impl Into<String>) {
        let line = LogLine {
            time: Timestamp::now(),
            text: text.into(),
        };
        let mut lines = self.inner.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() >= self.inner.capacity {
            lines.pop_front();
        }
        lines.push_back(line.clone());
        // Sent under the lock so a follower never sees a line twice or misses one between its
        // snapshot and its subscription.
        let _ = self.inner.live.send(line);
    }

    /// The last `tail` lines (all when None).
    pub fn tail(&self, tail: Option<usize>) -> Vec<LogLine> {
        self.follow(tail).0
    }

    /// The last `tail` lines and a receiver of every line written after them.
    pub fn follow(&self, tail: Option<usize>) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let lines = self.inner.lines.lock().unwrap_or_else(|e| e.into_inner());
        let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
        (
            lines.iter().skip(skip).cloned().collect(),
            self.inner.live.subscribe(),
        )
    }
}

impl ContainerLog {
    /// A writer whose output becomes lines of this log (a program's stdout and stderr, as a
    /// container runtime captures them). A last line without a newline is kept on shutdown.
    pub fn writer(&self) -> LogWriter {
        LogWriter {
            log: self.clone(),
            partial: Vec::new(),
        }
    }
}

/// An `AsyncWrite` into a [`ContainerLog`], one line per `\n`.
#[derive(Debug)]
pub struct LogWriter {
    log: ContainerLog,
    partial: Vec<u8>,
}

impl LogWriter {
    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            let text = String::from_utf8_lossy(&self.partial).into_owned();
            self.log.push(text);
            self.partial.clear();
        }
    }
}

impl tokio::io::AsyncWrite for LogWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        for &b in buf {
            if b == b'\n' {
                let text = String::from_utf8_lossy(&self.partial).into_owned();
                self.log.push(text);
                self.partial.clear();
            } else if self.partial.len() < 64 * 1024 {
                // A line longer than 64 KiB is cut, as runtimes split long lines.
                self.partial.push(b);
            }
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.flush_partial();
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_and_tail() {
        let log = ContainerLog::new(3);
        for i in 0..5 {
            log.push(format!("line {i}"));
        }
        let all: Vec<String> = log.tail(None).into_iter().map(|l| l.text).collect();
        assert_eq!(all, ["line 2", "line 3", "line 4"]);
        let last: Vec<String> = log.tail(Some(1)).into_iter().map(|l| l.text).collect();
        assert_eq!(last, ["line 4"]);
        assert!(log.tail(Some(0)).is_empty());
    }

    #[tokio::test]
    async fn follow_sees_new_lines() {
        let log = ContainerLog::new(10);
        log.push("before");
        let (past, mut rx) = log.follow(None);
        assert_eq!(past.len(), 1);
        log.push("after");
        assert_eq!(rx.recv().await.expect("line").text, "after");
    }

    #[tokio::test]
    async fn a_writer_splits_output_into_lines() {
        use tokio::io::AsyncWriteExt;
        let log = ContainerLog::new(10);
        let mut w = log.writer();
        w.write_all(b"hello\nwor").await.expect("write");
        w.write_all(b"ld\nno newline").await.expect("write");
        w.shutdown().await.expect("shutdown");
        let lines: Vec<String> = log.tail(None).into_iter().map(|l| l.text).collect();
        assert_eq!(lines, ["hello", "world", "no newline"]);
    }
}
