//! The terminal half of the shell: output (with a TTY's `\n` → `\r\n`) and input (a TTY's line
//! discipline: echo, backspace, Ctrl-C, Ctrl-D, Ctrl-U).
//!
//! With `kubectl exec -t`, the client puts its own terminal in raw mode and expects the far side
//! to behave like a pseudo-terminal: echo what is typed, edit the line, turn Enter into a newline,
//! Ctrl-C into an interrupt and Ctrl-D on an empty line into end-of-file, and end output lines with
//! CR LF. A container runtime gets that from the kernel's pty; these pods run no processes, so this
//! module is that pty. Without a TTY, stdin is a plain byte stream and output goes out unchanged.

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::pipe::ChanReader;
use crate::streaming::remotecommand::Output;

/// Where a command's output goes.
pub struct Io {
    stdout: Option<Output>,
    stderr: Option<Output>,
    tty: bool,
}

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").field("tty", &self.tty).finish()
    }
}

impl Io {
    /// Output to the given streams; `tty` translates newlines.
    pub fn new(stdout: Option<Output>, stderr: Option<Output>, tty: bool) -> Self {
        Self {
            stdout,
            stderr,
            tty,
        }
    }

    /// Whether the client has a terminal.
    pub fn tty(&self) -> bool {
        self.tty
    }

    /// Writes to stdout (dropped when the client did not ask for stdout, or went away).
    pub async fn out(&mut self, text: &str) {
        self.out_bytes(text.as_bytes()).await;
    }

    /// Writes raw bytes to stdout.
    pub async fn out_bytes(&mut self, bytes: &[u8]) {
        let tty = self.tty;
        if let Some(out) = self.stdout.as_mut() {
            write_translated(out, bytes, tty).await;
        }
    }

    /// Writes to stderr; with a TTY (one output) it goes to stdout, as on a terminal.
    pub async fn err(&mut self, text: &str) {
        let tty = self.tty;
        match (self.stderr.as_mut(), self.stdout.as_mut()) {
            (Some(err), _) => write_translated(err, text.as_bytes(), tty).await,
            (None, Some(out)) if tty => write_translated(out, text.as_bytes(), tty).await,
            _ => {}
        }
    }

    /// Writes bytes to stdout without translation (terminal control sequences).
    pub async fn raw(&mut self, bytes: &[u8]) {
        if let Some(out) = self.stdout.as_mut() {
            let _ = out.write_all(bytes).await;
        }
    }

    /// Closes both outputs (the client sees EOF on them).
    pub async fn close(&mut self) {
        for out in [self.stdout.as_mut(), self.stderr.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = out.shutdown().await;
        }
    }
}

async fn write_translated(out: &mut Output, bytes: &[u8], tty: bool) {
    if !tty {
        let _ = out.write_all(bytes).await;
        return;
    }
    let mut translated = Vec::with_capacity(bytes.len() + 16);
    let mut previous = 0u8;
    for &b in bytes {
        if b == b'\n' && previous != b'\r' {
            translated.push(b'\r');
        }
        translated.push(b);
        previous = b;
    }
    let _ = out.write_all(&translated).await;
}

/// What reading a line produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its newline.
    Text(String),
    /// Ctrl-C (TTY only).
    Interrupt,
    /// End of input: stdin closed, or Ctrl-D on an empty line.
    Eof,
}

/// The client's stdin, cooked when it is a terminal.
#[derive(Debug)]
pub struct Input {
    reader: Option<ChanReader>,
    tty: bool,
    /// Bytes received but not consumed yet (typed ahead while a command ran).
    pending: Vec<u8>,
    eof: bool,
}

impl Input {
    /// Input from `reader` (None: the client sent no stdin — always EOF).
    pub fn new(reader: Option<ChanReader>, tty: bool) -> Self {
        let eof = reader.is_none();
        Self {
            reader,
            tty,
            pending: Vec::new(),
            eof,
        }
    }

    /// Whether stdin is attached at all.
    pub fn attached(&self) -> bool {
        self.reader.is_some()
    }

    async fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        match self.reader.as_mut() {
            Some(reader) => match reader.chunk().await {
                Some(chunk) => {
                    self.pending.extend_from_slice(&chunk);
                    true
                }
                None => {
                    self.eof = true;
                    false
                }
            },
            None => false,
        }
    }

    /// The next raw chunk (a non-terminal `cat`); None at EOF.
    pub async fn chunk(&mut self) -> Option<Bytes> {
        if self.pending.is_empty() && !self.fill().await {
            return None;
        }
        Some(Bytes::from(std::mem::take(&mut self.pending)))
    }

    /// Reads one line. With a TTY, edits it and echoes to `io` as a terminal would.
    pub async fn line(&mut self, io: &mut Io) -> Line {
        let mut line: Vec<u8> = Vec::new();
        let mut consumed = 0;
        loop {
            while consumed < self.pending.len() {
                let b = self.pending[consumed];
                consumed += 1;
                if !self.tty {
                    if b == b'\n' {
                        self.pending.drain(..consumed);
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        return Line::Text(String::from_utf8_lossy(&line).into_owned());
                    }
                    line.push(b);
                    continue;
                }
                match b {
                    b'\r' | b'\n' => {
                        // A terminal sends CR for Enter; swallow the LF of a CR LF pair.
                        if b == b'\r' && self.pending.get(consumed) == Some(&b'\n') {
                            consumed += 1;
                        }
                        self.pending.drain(..consumed);
                        io.raw(b"\r\n").await;
                        return Line::Text(String::from_utf8_lossy(&line).into_owned());
                    }
                    0x03 => {
                        self.pending.drain(..consumed);
                        io.raw(b"^C\r\n").await;
                        return Line::Interrupt;
                    }
                    0x04 if line.is_empty() => {
                        self.pending.drain(..consumed);
                        return Line::Eof;
                    }
                    0x7f | 0x08 => {
                        // Remove one character (all bytes of a UTF-8 sequence).
                        while let Some(last) = line.pop() {
                            if last & 0xc0 != 0x80 {
                                break;
                            }
                        }
                        io.raw(b"\x08 \x08").await;
                    }
                    0x15 => {
                        for _ in 0..String::from_utf8_lossy(&line).chars().count() {
                            io.raw(b"\x08 \x08").await;
                        }
                        line.clear();
                    }
                    0x1b => {
                        // An escape sequence (arrow keys…): skip ESC [ … final byte.
                        let rest = &self.pending[consumed..];
                        let skip = match rest.first() {
                            Some(b'[') | Some(b'O') => rest
                                .iter()
                                .skip(1)
                                .position(|c| (0x40..=0x7e).contains(c))
                                .map_or(rest.len(), |p| p + 2),
                            _ => 0,
                        };
                        consumed += skip;
                    }
                    b'\t' => {
                        line.push(b' ');
                        io.raw(b" ").await;
                    }
                    b if b < 0x20 => {}
                    b => {
                        line.push(b);
                        io.raw(&[b]).await;
                    }
                }
            }
            self.pending.clear();
            consumed = 0;
            if !self.fill().await {
                if line.is_empty() {
                    return Line::Eof;
                }
                return Line::Text(String::from_utf8_lossy(&line).into_owned());
            }
        }
    }

    /// Resolves when the user presses Ctrl-C (TTY only; never otherwise). Other bytes typed
    /// meanwhile are kept for the next read.
    pub async fn interrupted(&mut self) {
        if !self.tty {
            return std::future::pending().await;
        }
        loop {
            if let Some(at) = self.pending.iter().position(|&b| b == 0x03) {
                self.pending.drain(..=at);
                return;
            }
            if !self.fill().await {
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::task::Poll;
    use tokio::sync::mpsc;

    /// Collects what is written.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl tokio::io::AsyncWrite for Sink {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn input(bytes: &'static [u8], tty: bool) -> Input {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Bytes::from_static(bytes)).expect("send");
        drop(tx);
        Input::new(Some(ChanReader::new(rx)), tty)
    }

    #[tokio::test]
    async fn tty_lines_are_edited_and_echoed() {
        let sink = Sink::default();
        let mut io = Io::new(Some(Box::new(sink.clone())), None, true);
        let mut input = input(b"ecx\x7fho hi\r\x1b[Als\r\n\x03\x04", true);
        assert_eq!(input.line(&mut io).await, Line::Text("echo hi".into()));
        assert_eq!(input.line(&mut io).await, Line::Text("ls".into()));
        assert_eq!(input.line(&mut io).await, Line::Interrupt);
        assert_eq!(input.line(&mut io).await, Line::Eof);
        let echoed = String::from_utf8(sink.0.lock().expect("lock").clone()).expect("utf8");
        assert_eq!(echoed, "ecx\x08 \x08ho hi\r\nls\r\n^C\r\n");
        io.out("a\nb\r\n").await;
        assert!(
            String::from_utf8(sink.0.lock().expect("lock").clone())
                .expect("utf8")
                .ends_with("a\r\nb\r\n")
        );
    }

    #[tokio::test]
    async fn plain_lines_and_eof() {
        let mut io = Io::new(None, None, false);
        let mut input = input(b"one\r\ntwo\nthree", false);
        assert_eq!(input.line(&mut io).await, Line::Text("one".into()));
        assert_eq!(input.line(&mut io).await, Line::Text("two".into()));
        assert_eq!(input.line(&mut io).await, Line::Text("three".into()));
        assert_eq!(input.line(&mut io).await, Line::Eof);
        assert!(Input::new(None, false).chunk().await.is_none());
    }

    #[tokio::test]
    async fn interrupt_keeps_typeahead() {
        let mut io = Io::new(None, None, true);
        let mut input = input(b"ab\x03cd\r", true);
        input.interrupted().await;
        assert_eq!(input.line(&mut io).await, Line::Text("cd".into()));
    }
}
