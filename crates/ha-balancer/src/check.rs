//! Active health checks: one task per backend, every `interval`, each check bounded by `timeout`.
//!
//! - **HTTPS** (the default): a TLS handshake that verifies the backend's certificate against the
//!   configured CA (the name checked is the backend's `serverName`, else its IP address), then
//!   `GET /readyz` over HTTP/1.1; only a 200 passes. `/readyz` rather than the recipe's `/healthz`:
//!   during a graceful shutdown an apiserver fails `/readyz` first, so the balancer stops sending it
//!   new connections while it still finishes the old ones.
//! - **TCP**: the connect alone.
//!
//! A check that does not finish in time fails. The first check runs at a random point within the
//! first interval, so backends (and balancers started together) are not probed in lockstep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use proxylab_core::l4::tcp::connect;
use rand::Rng;
use rustls_pki_types::ServerName;
use tokio_util::sync::CancellationToken;

use crate::config::{BackendConfig, CheckConfig, CheckKind};
use crate::pool::{BackendState, CheckResult, Pool};

/// What every check of one configuration shares.
#[derive(Clone)]
pub(crate) struct Checker {
    config: CheckConfig,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// The check's TLS configuration cannot be built (a bad CA file).
#[derive(Debug, thiserror::Error)]
#[error("healthCheck.caFile {file}: {message}")]
pub struct CheckSetupError {
    pub file: String,
    pub message: String,
}

impl Checker {
    pub(crate) fn new(config: &CheckConfig) -> Result<Self, CheckSetupError> {
        let tls = match config.kind {
            CheckKind::Https { .. } => {
                let mut b = proxylab_core::tls::ClientTls::new()
                    .insecure(config.insecure_skip_verify)
                    .alpn(&[b"http/1.1"]);
                let file = config
                    .ca_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                if let Some(ca) = &config.ca_file {
                    let certs =
                        proxylab_core::tls::load_certs(ca).map_err(|e| CheckSetupError {
                            file: file.clone(),
                            message: e.to_string(),
                        })?;
                    b = b.ca(certs);
                }
                let cfg = b.build().map_err(|e| CheckSetupError {
                    file,
                    message: e.to_string(),
                })?;
                Some(tokio_rustls::TlsConnector::from(cfg))
            }
            _ => None,
        };
        Ok(Self {
            config: config.clone(),
            tls,
        })
    }

    /// Checks `backend` every interval until `stop`, feeding the results to `pool`.
    pub(crate) async fn run(
        self,
        pool: Arc<Pool>,
        backend: Arc<BackendState>,
        stop: CancellationToken,
    ) {
        if self.config.kind == CheckKind::None {
            return;
        }
        let interval = self.config.interval;
        let first = rand::rng().random_range(Duration::ZERO..=interval.min(Duration::from_secs(1)));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(first) => {}
        }
        loop {
            let started = Instant::now();
            let time = jiff::Timestamp::now();
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                r = tokio::time::timeout(self.config.timeout, self.check_once(&backend.config)) => r,
            };
            let (ok, detail) = match outcome {
                Ok(Ok(detail)) => (true, detail),
                Ok(Err(detail)) => (false, detail),
                Err(_) => (
                    false,
                    format!(
                        "timed out after {}",
                        proxylab_core::duration::format(self.config.timeout)
                    ),
                ),
            };
            pool.check_result(
                &backend,
                CheckResult {
                    time,
                    ok,
                    detail,
                    duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                },
            );
            let next = interval.saturating_sub(started.elapsed());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    /// One check; `Ok` with what passed, `Err` with why it failed.
    pub(crate) async fn check_once(&self, backend: &BackendConfig) -> Result<String, String> {
        let tcp = connect(backend.address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let path = match &self.config.kind {
            CheckKind::Tcp => return Ok("connected".into()),
            CheckKind::None => return Ok("not checked".into()),
            CheckKind::Https { path } => path,
        };
        let Some(tls) = &self.tls else {
            return Err("no TLS configuration".into());
        };
        let name = server_name(backend)?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let conn = tokio::spawn(conn);
        let host = match &backend.server_name {
            Some(n) => n.clone(),
            None => backend.address.to_string(),
        };
        let req = http::Request::get(path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "proxylab-ha-balancer")
            .header(http::header::ACCEPT, "text/plain")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let resp = send.send_request(req).await;
        conn.abort();
        let resp = resp.map_err(|e| format!("HTTP: {e}"))?;
        let status = resp.status();
        if status == http::StatusCode::OK {
            Ok(format!("HTTP {}", status.as_u16()))
        } else {
            Err(format!("HTTP {} from GET {path}", status.as_u16()))
        }
    }
}

/// The name a backend's certificate must carry.
fn server_name(backend: &BackendConfig) -> Result<ServerName<'static>, String> {
    match &backend.server_name {
        Some(n) => ServerName::try_from(n.clone()).map_err(|e| format!("serverName {n:?}: {e}")),
        None => Ok(ServerName::IpAddress(backend.address.ip().into())),
    }
}
