//! The upstream client stack: how a proxy reaches the apiserver a kubeconfig names.
//!
//! ```text
//!  Credentials  kube-rs ConfigExt::auth_layer + extra_headers_layer, run over a header-only request:
//!               bearer token · token file (re-read) · exec plugin (refreshed) · basic auth
//!               · Impersonate-User/-Group/-Uid/-Extra-*
//!  TLS          kube-rs ConfigExt::rustls_client_config: CA (or insecure-skip-tls-verify), client
//!               certificate and key (files, inline, or from an exec plugin); tls-server-name for SNI
//!               and verification
//!  Dialer       TCP, directly or through proxy-url (HTTP CONNECT / SOCKS5), TCP keepalive
//!  Transport    core::http::HyperTransport: a pool speaking HTTP/2 when the apiserver offers it
//!               (ALPN h2, http/1.1), plus a fresh HTTP/1.1 connection per upgrade
//! ```
//!
//! Credentials are kept apart from the transport on purpose: the proxy decides per request whether a
//! client's own `Authorization` wins (kubectl's behaviour) or is replaced (proxylab's default), so
//! [`Credentials::headers`] returns what the kubeconfig wants to add and the proxy applies it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use axum::body::Body;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Empty;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use kube::client::ConfigExt;
use proxylab_core::http::{HyperTransport, ProxyError, Transport};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

use crate::config::{ClusterConfig, KubeconfigError};
use crate::dialer::{Dialer, ProxyUrl};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type HeaderOnly = Request<Empty<Bytes>>;

/// The headers a kubeconfig user adds to each request.
#[derive(Clone)]
pub struct Credentials {
    // kube-rs's layers wrapped around a service that returns its request: calling it yields the
    // request with the kubeconfig's headers added (refreshing exec tokens when due).
    svc: Option<BoxCloneSyncService<HeaderOnly, Response<HeaderMap>, BoxError>>,
    // `tokenFile` is read here rather than by kube-rs: client-go trims surrounding whitespace
    // (a file written by `echo` ends in a newline) and kube-rs does not.
    token_file: Option<Arc<TokenFile>>,
    // The headers, computed once, when nothing in them can change (no exec plugin or auth
    // provider): the common case of a static token or a client certificate costs one clone.
    fixed: Option<HeaderMap>,
}

/// A bearer token read from a file, re-read at most once a minute so rotated tokens are picked up
/// (client-go's `tokenFile` behaviour).
#[derive(Debug)]
struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<(HeaderValue, Instant)>>,
}

impl TokenFile {
    const REFRESH: Duration = Duration::from_secs(60);

    fn read(&self) -> Result<HeaderValue, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read token file {}: {e}", self.path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("token file {} is empty", self.path.display()));
        }
        let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            format!(
                "token file {} holds characters not allowed in a header",
                self.path.display()
            )
        })?;
        v.set_sensitive(true);
        Ok(v)
    }

    fn header(&self) -> Result<HeaderValue, String> {
        let mut cached = self.cached.lock();
        if let Some((v, at)) = cached.as_ref()
            && at.elapsed() < Self::REFRESH
        {
            return Ok(v.clone());
        }
        let v = self.read()?;
        *cached = Some((v.clone(), Instant::now()));
        Ok(v)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("configured", &self.svc.is_some())
            .finish()
    }
}

impl Credentials {
    /// From a chosen cluster/user. Runs an exec plugin once, so its failure shows at start.
    pub fn new(cluster: &ClusterConfig) -> Result<Self, KubeconfigError> {
        let mut cfg = cluster.config.clone();
        let token_file = match (&cfg.auth_info.token, cfg.auth_info.token_file.take()) {
            (None, Some(path)) => {
                let tf = TokenFile {
                    path: PathBuf::from(path),
                    cached: Mutex::new(None),
                };
                tf.header()
                    .map_err(|e| cluster.user_error("tokenFile", e))?;
                Some(Arc::new(tf))
            }
            _ => None,
        };
        let cfg = &cfg;
        // tower-http's AddAuthorization wants an inner service answering `Response<_>`: hand the
        // finished headers back as the response body.
        let capture = tower::service_fn(|r: HeaderOnly| async move {
            Ok::<_, BoxError>(Response::new(r.into_parts().0.headers))
        });
        let extra = cfg
            .extra_headers_layer()
            .map_err(|e| cluster.user_error("as", e.to_string()))?;
        let with_extra = extra.layer(capture);
        let auth = cfg.auth_layer().map_err(|e| {
            let field = if cfg.auth_info.exec.is_some() {
                "exec"
            } else if cfg.auth_info.token_file.is_some() {
                "tokenFile"
            } else {
                "user"
            };
            cluster.user_error(field, proxylab_core::http::error_chain(&e))
        })?;
        let svc = match auth {
            Some(layer) => BoxCloneSyncService::new(layer.layer(with_extra)),
            None => BoxCloneSyncService::new(with_extra),
        };
        let refreshable = cfg.auth_info.exec.is_some() || cfg.auth_info.auth_provider.is_some();
        let fixed = if refreshable {
            None
        } else {
            // Static layers answer at once; poll once instead of needing a runtime here.
            use futures_util::FutureExt;
            match svc
                .clone()
                .oneshot(Request::new(Empty::new()))
                .now_or_never()
            {
                Some(Ok(resp)) => Some(resp.into_body()),
                _ => None,
            }
        };
        Ok(Self {
            svc: Some(svc),
            token_file,
            fixed,
        })
    }

    /// No credentials at all.
    pub fn none() -> Self {
        Self {
            svc: None,
            token_file: None,
            fixed: None,
        }
    }

    /// Calls `f` with the headers to add, without copying them when they are fixed (a static
    /// token, basic auth, impersonation only): the per-request path of a proxy.
    pub async fn with_headers<R>(&self, f: impl FnOnce(&HeaderMap) -> R) -> Result<R, ProxyError> {
        match (&self.fixed, &self.token_file) {
            (Some(fixed), None) => Ok(f(fixed)),
            _ => {
                let h = self.headers().await?;
                Ok(f(&h))
            }
        }
    }

    /// The headers to add: `Authorization` (when the user has a token, basic auth or an exec
    /// plugin), `Impersonate-*`. Fails when a token cannot be obtained (exec plugin error,
    /// unreadable token file) — an internal error from the client's point of view.
    pub async fn headers(&self) -> Result<HeaderMap, ProxyError> {
        let mut headers = match (&self.fixed, &self.svc) {
            (Some(fixed), _) => fixed.clone(),
            (None, None) => HeaderMap::new(),
            (None, Some(svc)) => svc
                .clone()
                .oneshot(Request::new(Empty::new()))
                .await
                .map_err(|e| {
                    ProxyError::Internal(format!(
                        "obtaining credentials: {}",
                        proxylab_core::http::error_chain(e.as_ref())
                    ))
                })?
                .into_body(),
        };
        if let Some(tf) = &self.token_file {
            let v = tf
                .header()
                .map_err(|e| ProxyError::Internal(format!("obtaining credentials: {e}")))?;
            headers.insert(http::header::AUTHORIZATION, v);
        }
        Ok(headers)
    }
}

/// Knobs of the upstream stack that are not in the kubeconfig.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// TCP keepalive on upstream connections (kubectl proxy's `--keepalive`; `None` = OS default).
    pub keepalive: Option<Duration>,
    /// Deadline for a TCP (and proxy) connect.
    pub connect_timeout: Duration,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            keepalive: None,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

type Connector = HttpsConnector<Dialer>;

/// The apiserver a kubeconfig names, with its credentials and connection pool.
#[derive(Clone)]
pub struct Upstream {
    base: Uri,
    credentials: Credentials,
    transport: HyperTransport<Connector, Connector>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .finish()
    }
}

/// The TLS client configuration a kubeconfig's cluster and user ask for (the CA, or
/// insecure-skip-tls-verify; the client certificate), for a caller that opens its own connections
/// (`proxylab trace`). Errors name the kubeconfig field.
pub fn tls_client_config(cluster: &ClusterConfig) -> Result<rustls::ClientConfig, KubeconfigError> {
    proxylab_core::tls::install_crypto_provider();
    cluster.config.rustls_client_config().map_err(|e| {
        let msg = proxylab_core::http::error_chain(&e);
        if msg.contains("identity") || msg.contains("private key") {
            cluster.user_error("client-certificate", msg)
        } else {
            cluster.cluster_error("certificate-authority", msg)
        }
    })
}

impl Upstream {
    /// Builds the stack; every kubeconfig problem found here names its file and field.
    pub fn new(cluster: &ClusterConfig, opts: &UpstreamOptions) -> Result<Self, KubeconfigError> {
        proxylab_core::tls::install_crypto_provider();
        let cfg = &cluster.config;
        let tls = tls_client_config(cluster)?;
        let proxy = cfg
            .proxy_url
            .as_ref()
            .map(ProxyUrl::parse)
            .transpose()
            .map_err(|e| cluster.cluster_error("proxy-url", e))?;
        let dialer = Dialer::new(proxy, opts.keepalive, opts.connect_timeout);
        let server_name = cfg
            .tls_server_name
            .as_ref()
            .map(|n| {
                rustls::pki_types::ServerName::try_from(n.clone())
                    .map_err(|e| cluster.cluster_error("tls-server-name", e.to_string()))
            })
            .transpose()?;

        let pooled = {
            let b = HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http();
            let b = match &server_name {
                Some(n) => b.with_server_name_resolver(FixedServerNameResolver::new(n.clone())),
                None => b,
            };
            b.enable_http1()
                .enable_http2()
                .wrap_connector(dialer.clone())
        };
        // Upgrades: HTTP/1.1 only (no ALPN h2 offered), as kubectl's upgrade dialer.
        let upgrade = {
            let b = HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http();
            let b = match &server_name {
                Some(n) => b.with_server_name_resolver(FixedServerNameResolver::new(n.clone())),
                None => b,
            };
            b.enable_http1().wrap_connector(dialer)
        };
        let transport =
            HyperTransport::new(pooled, upgrade).with_connect_timeout(opts.connect_timeout);
        Ok(Self {
            base: cfg.cluster_url.clone(),
            credentials: Credentials::new(cluster)?,
            transport,
        })
    }

    /// The same upstream (credentials shared) with a connection pool of its own: one per
    /// single-threaded runtime when a proxy serves thread-per-core (see
    /// [`HyperTransport::with_own_pool`]).
    pub fn with_own_pool(&self) -> Self {
        Self {
            base: self.base.clone(),
            credentials: self.credentials.clone(),
            transport: self.transport.with_own_pool(),
        }
    }

    /// The server URL from the kubeconfig.
    pub fn base(&self) -> &Uri {
        &self.base
    }

    /// The kubeconfig user's headers.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
}

impl Transport for Upstream {
    fn send(
        &self,
        req: Request<Body>,
    ) -> impl std::future::Future<Output = Result<Response<Body>, ProxyError>> + Send {
        self.transport.send(req)
    }

    fn send_upgrade(
        &self,
        req: Request<Body>,
    ) -> impl std::future::Future<Output = Result<Response<Body>, ProxyError>> + Send {
        self.transport.send_upgrade(req)
    }
}
