//! `BINARY health URL`: the healthcheck every proxylab binary answers, because the container images
//! hold nothing but the binaries (no shell, no curl).
//!
//! Each binary's `main` calls [`run_if_requested`] before parsing its own flags, so one copy of this
//! probe serves all of them: `forwarder health http://127.0.0.1:10256/healthz` exits 0 when the URL
//! answers 2xx, 1 when it answers anything else or cannot be reached, 2 on bad arguments. It is a
//! blocking HTTP/1.1 GET over std sockets (and rustls for `https://`), so it needs no runtime and
//! finishes within the timeout even when the server accepts and never answers.
//!
//! ```text
//! health URL [--ca FILE | --insecure] [--cert FILE --key FILE] [--timeout DURATION]
//! ```
//!
//! `--cert`/`--key` present a client certificate, for servers that authenticate every path: the
//! kubelet API on 10250 answers its `/healthz` with 401 to an anonymous caller.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;

/// Why a probe did not pass. Bad arguments (exit 2) are told apart from an unhealthy target (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(
        "usage: health URL [--ca FILE | --insecure] [--cert FILE --key FILE] [--timeout DURATION]: {0}"
    )]
    Usage(String),
    #[error("{url}: {reason}")]
    Unhealthy { url: String, reason: String },
}

impl HealthError {
    /// The process exit code: 2 for bad input, 1 for a failed check.
    pub fn exit_code(&self) -> i32 {
        match self {
            HealthError::Usage(_) => 2,
            HealthError::Unhealthy { .. } => 1,
        }
    }
}

/// A parsed `health` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub ca: Option<PathBuf>,
    pub insecure: bool,
    /// A client certificate and its key (both or neither).
    pub identity: Option<(PathBuf, PathBuf)>,
    pub timeout: Duration,
}

impl Probe {
    /// Parses the arguments after `health`.
    pub fn parse(args: &[OsString]) -> Result<Self, HealthError> {
        let usage = |m: &str| HealthError::Usage(m.to_owned());
        let mut url = None;
        let mut ca = None;
        let mut insecure = false;
        let mut cert = None;
        let mut key = None;
        let mut timeout = Duration::from_secs(5);
        let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
        while let Some(a) = it.next() {
            match a.as_str() {
                "--insecure" => insecure = true,
                "--ca" => {
                    ca = Some(PathBuf::from(
                        it.next().ok_or_else(|| usage("--ca needs a file"))?,
                    ))
                }
                "--cert" => {
                    cert = Some(PathBuf::from(
                        it.next().ok_or_else(|| usage("--cert needs a file"))?,
                    ))
                }
                "--key" => {
                    key = Some(PathBuf::from(
                        it.next().ok_or_else(|| usage("--key needs a file"))?,
                    ))
                }
                "--timeout" => {
                    let v = it
                        .next()
                        .ok_or_else(|| usage("--timeout needs a duration"))?;
                    timeout = crate::duration::parse_std(&v)
                        .map_err(|e| usage(&format!("--timeout {v:?}: {e}")))?;
                }
                _ if a.starts_with("--") => return Err(usage(&format!("unknown flag {a}"))),
                _ if url.is_none() => url = Some(a),
                _ => return Err(usage(&format!("unexpected argument {a:?}"))),
            }
        }
        let url = url.ok_or_else(|| usage("no URL"))?;
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(usage("--cert and --key go together")),
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(usage(&format!("{url:?} is not an http:// or https:// URL")));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse()
                    .map_err(|_| usage(&format!("{url:?}: bad port {p:?}")))?,
            ),
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(usage(&format!("{url:?}: no host")));
        }
        Ok(Probe {
            tls,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            ca,
            insecure,
            identity,
            timeout,
        })
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}{}", self.host, self.port, self.path)
    }

    /// GETs the URL once; Ok with the status line when it answered 2xx.
    pub fn check(&self) -> Result<String, HealthError> {
        let fail = |reason: String| HealthError::Unhealthy {
            url: self.url(),
            reason,
        };
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| fail(format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| fail("no address".into()))?;
        let tcp = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| fail(format!("connect: {e}")))?;
        tcp.set_read_timeout(Some(self.timeout))
            .and_then(|_| tcp.set_write_timeout(Some(self.timeout)))
            .map_err(|e| fail(e.to_string()))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: proxylab-health\r\nConnection: close\r\n\r\n",
            self.path, self.host
        );
        let head = if self.tls {
            let mut tls = crate::tls::ClientTls::new().insecure(self.insecure);
            if let Some(ca) = &self.ca {
                tls = tls.ca(crate::tls::load_certs(ca).map_err(|e| fail(e.to_string()))?);
            }
            if let Some((cert, key)) = &self.identity {
                tls = tls.client_cert(
                    crate::tls::load_certs(cert).map_err(|e| fail(e.to_string()))?,
                    crate::tls::load_private_key(key).map_err(|e| fail(e.to_string()))?,
                );
            }
            let config = tls.build().map_err(|e| fail(e.to_string()))?;
            let name = ServerName::try_from(self.host.clone())
                .map_err(|e| fail(format!("server name: {e}")))?;
            let conn = rustls::ClientConnection::new(Arc::clone(&config), name)
                .map_err(|e| fail(e.to_string()))?;
            exchange(rustls::StreamOwned::new(conn, tcp), &request)
        } else {
            exchange(tcp, &request)
        }
        .map_err(|e| fail(e.to_string()))?;
        let status = head.lines().next().unwrap_or_default().to_owned();
        match status.split_whitespace().nth(1) {
            Some(code) if code.starts_with('2') && code.len() == 3 => Ok(status),
            _ => Err(fail(format!("answered {status:?}"))),
        }
    }
}

/// Sends the request and reads the response head (at most 8 KiB; the body is not needed).
fn exchange(mut s: impl Read + Write, request: &str) -> std::io::Result<String> {
    s.write_all(request.as_bytes())?;
    s.flush()?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while buf.len() < 8192 && !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// When the process was started as `BINARY health …`, runs the probe and exits; otherwise returns
/// so the binary parses its own flags. Call it first thing in `main`.
pub fn run_if_requested() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).map(|a| a == "health") != Some(true) {
        return;
    }
    crate::tls::install_crypto_provider();
    let code = match Probe::parse(&args[2..]).and_then(|p| p.check()) {
        Ok(status) => {
            println!("{status}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Probe, HealthError> {
        Probe::parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn parses_urls_and_flags() {
        let p = parse(&["https://apiserver-1:6443/readyz", "--ca", "/pki/ca.crt"]).unwrap();
        assert!(p.tls);
        assert_eq!(
            (p.host.as_str(), p.port, p.path.as_str()),
            ("apiserver-1", 6443, "/readyz")
        );
        assert_eq!(p.ca.as_deref(), Some(std::path::Path::new("/pki/ca.crt")));
        let p = parse(&["http://[::1]:10256", "--timeout", "2s"]).unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.path.as_str()),
            ("::1", 10256, "/")
        );
        assert_eq!(p.timeout, Duration::from_secs(2));
        assert_eq!(parse(&["http://h"]).unwrap().port, 80);
        let p = parse(&["https://h", "--cert", "c.pem", "--key", "k.pem"]).unwrap();
        assert_eq!(
            p.identity,
            Some((PathBuf::from("c.pem"), PathBuf::from("k.pem")))
        );
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &[][..],
            &["ftp://x"][..],
            &["http://h:port"][..],
            &["http://h", "--bogus"][..],
            &["http://h", "http://i"][..],
            &["http://h", "--timeout", "soon"][..],
            &["http://:80/"][..],
            &["https://h", "--cert", "c.pem"][..],
            &["https://h", "--key"][..],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn checks_a_real_listener() {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for answer in [
                "HTTP/1.1 200 OK\r\n\r\nok",
                "HTTP/1.1 503 Service Unavailable\r\n\r\n",
            ] {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).unwrap();
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        let url = format!("http://127.0.0.1:{port}/healthz");
        assert_eq!(parse(&[&url]).unwrap().check().unwrap(), "HTTP/1.1 200 OK");
        let e = parse(&[&url]).unwrap().check().unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("503"), "{e}");
        server.join().unwrap();
        // Nothing listens any more: unreachable is unhealthy, not a usage error.
        assert_eq!(parse(&[&url]).unwrap().check().unwrap_err().exit_code(), 1);
    }
}
