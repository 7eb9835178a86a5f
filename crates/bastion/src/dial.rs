//! How the bastion reaches pods, service endpoints and kubelets.
//!
//! One [`Dialer`] makes every upstream connection, pooled or for an upgrade, and on the way:
//!
//! 1. **resolves a name once** (node addresses of type `Hostname`/`InternalDNS`) through a
//!    [`Resolve`] it was given, and checks **every** answer against the [`DestinationPolicy`]
//!    (kube-apiserver's `IsProxyableHostname`: one forbidden answer refuses the name);
//! 2. **dials only addresses it checked** — the pinning that closes CVE-2020-8562, where the name was
//!    checked with one lookup and dialled with another, and a rebinding DNS server answered
//!    differently the second time;
//! 3. **binds the source address** it was built for, so that in the lab a request that arrived at
//!    apiserver-2 leaves from `127.0.10.2` and the next hop's record names it;
//! 4. speaks **TLS** when the scheme is `https`: to pods and services without verifying (as the
//!    apiserver proxy does), to kubelets with the apiserver's kubelet client certificate and, when a
//!    CA is configured, verifying the kubelet's serving certificate;
//! 5. reports the connection's local and remote address ([`UpstreamAddrs`]) in the response's
//!    extensions, for the hop record.
//!
//! [`Transports`] keeps one pooled [`HyperTransport`] per (source address, kind of backend), so a
//! pooled connection made from one apiserver's address is never reused for another's request.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use parking_lot::RwLock;
use proxylab_core::http::{Dialed, HyperTransport};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

use crate::policy::{DestinationPolicy, Refusal};

/// Name resolution the dialler uses. The system resolver by default; tests give their own (a
/// rebinding resolver) to prove that what is checked is what is dialled.
pub trait Resolve: Send + Sync + 'static {
    /// Every address `host` resolves to.
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;
}

/// The system resolver (`getaddrinfo` through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// The two ends of an upstream connection, put in every response's extensions (and kept by the
/// pool with the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamAddrs {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Why a dial failed. Display texts name the destination.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("cannot resolve {host:?}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("{host:?} resolves to no address")]
    NoAddress { host: String },
    #[error("dial tcp {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("dial tcp {addr}: i/o timeout")]
    Timeout { addr: SocketAddr },
    #[error("TLS handshake with {addr}: {source}")]
    Tls { addr: SocketAddr, source: io::Error },
    #[error("{0}")]
    Uri(String),
}

/// A connection the dialler made: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// What the dialler hands hyper: the stream and its addresses (core's [`Dialed`]).
pub type Conn = Dialed<Stream, UpstreamAddrs>;

/// The connector. See the module docs.
#[derive(Clone)]
pub struct Dialer {
    policy: Arc<DestinationPolicy>,
    resolver: Arc<dyn Resolve>,
    /// Bound before connecting, when the destination has the same address family.
    source: Option<IpAddr>,
    /// The TLS configuration for `https` (`None`: https is refused).
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("source", &self.source)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Dialer {
    pub fn new(
        policy: Arc<DestinationPolicy>,
        resolver: Arc<dyn Resolve>,
        source: Option<IpAddr>,
        tls: Option<Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            policy,
            resolver,
            source,
            tls,
            connect_timeout,
        }
    }

    /// Resolves (once), checks every address, dials the first that answers, TLS if `https`.
    pub async fn dial(&self, uri: &Uri) -> Result<Conn, DialError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") | None => false,
            Some(other) => return Err(DialError::Uri(format!("unsupported scheme {other:?}"))),
        };
        let host = uri
            .host()
            .ok_or_else(|| DialError::Uri(format!("{uri} has no host")))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let ips = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                let ips =
                    self.resolver
                        .lookup(bare)
                        .await
                        .map_err(|source| DialError::Resolve {
                            host: bare.to_owned(),
                            source,
                        })?;
                if ips.is_empty() {
                    return Err(DialError::NoAddress {
                        host: bare.to_owned(),
                    });
                }
                ips
            }
        };
        // Every answer must pass: a name with one forbidden address is refused outright.
        let addrs: Vec<SocketAddr> = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        for a in &addrs {
            self.policy.check(*a)?;
        }
        let mut last = None;
        for addr in addrs {
            match self.connect(addr).await {
                Ok(tcp) => {
                    let local = tcp
                        .local_addr()
                        .map_err(|source| DialError::Connect { addr, source })?;
                    let addrs = UpstreamAddrs {
                        local,
                        remote: addr,
                    };
                    let stream = if https {
                        Stream::Tls(Box::new(self.handshake(bare, addr, tcp).await?))
                    } else {
                        Stream::Plain(tcp)
                    };
                    return Ok(Conn::new(stream, addrs));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| DialError::NoAddress {
            host: bare.to_owned(),
        }))
    }

    async fn connect(&self, addr: SocketAddr) -> Result<TcpStream, DialError> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|source| DialError::Connect { addr, source })?;
        if let Some(src) = self.source
            && src.is_ipv4() == addr.is_ipv4()
        {
            socket
                .bind(SocketAddr::new(src, 0))
                .map_err(|source| DialError::Connect { addr, source })?;
        }
        let tcp = tokio::time::timeout(self.connect_timeout, socket.connect(addr))
            .await
            .map_err(|_| DialError::Timeout { addr })?
            .map_err(|source| DialError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    async fn handshake(
        &self,
        host: &str,
        addr: SocketAddr,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, DialError> {
        let Some(tls) = &self.tls else {
            return Err(DialError::Uri(
                "https is not configured for this backend".into(),
            ));
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| DialError::Uri(format!("{host:?} is not a TLS server name: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(tls.clone());
        tokio::time::timeout(self.connect_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| DialError::Timeout { addr })?
            .map_err(|source| DialError::Tls { addr, source })
    }
}

impl tower::Service<Uri> for Dialer {
    type Response = Conn;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move { me.dial(&uri).await })
    }
}

/// The transport type of one kind of backend from one source address.
pub type BackendTransport = HyperTransport<Dialer, Dialer>;

/// Which credentials a backend is reached with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Pods and service endpoints (and nodes on a non-kubelet port): http, or https without
    /// verification and without a client certificate.
    Generic,
    /// A kubelet: https with the apiserver's kubelet client certificate.
    Kubelet,
}

/// What every [`Dialer`] of a [`Transports`] shares.
#[derive(Clone)]
pub struct DialSettings {
    pub policy: Arc<DestinationPolicy>,
    pub resolver: Arc<dyn Resolve>,
    /// For `https` to pods and services (no verification).
    pub generic_tls: Arc<rustls::ClientConfig>,
    /// For kubelets (`None`: no kubelet client certificate configured; kubelet paths fail).
    pub kubelet_tls: Option<Arc<rustls::ClientConfig>>,
    pub connect_timeout: Duration,
}

/// One pooled transport per (source address, backend kind), made on first use.
pub struct Transports {
    settings: DialSettings,
    made: RwLock<HashMap<(Option<IpAddr>, BackendKind), BackendTransport>>,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transports")
            .field("made", &self.made.read().len())
            .finish_non_exhaustive()
    }
}

impl Transports {
    pub fn new(settings: DialSettings) -> Self {
        Self {
            settings,
            made: RwLock::new(HashMap::new()),
        }
    }

    /// The policy every dial is checked against.
    pub fn policy(&self) -> &DestinationPolicy {
        &self.settings.policy
    }

    /// The transport for `kind` dialling from `source` (`None`: the system chooses).
    pub fn get(&self, source: Option<IpAddr>, kind: BackendKind) -> BackendTransport {
        if let Some(t) = self.made.read().get(&(source, kind)) {
            return t.clone();
        }
        let tls = match kind {
            BackendKind::Generic => Some(self.settings.generic_tls.clone()),
            BackendKind::Kubelet => self.settings.kubelet_tls.clone(),
        };
        let dialer = Dialer::new(
            self.settings.policy.clone(),
            self.settings.resolver.clone(),
            source,
            tls,
            self.settings.connect_timeout,
        );
        let t = HyperTransport::new(dialer.clone(), dialer)
            .with_connect_timeout(self.settings.connect_timeout);
        self.made.write().entry((source, kind)).or_insert(t).clone()
    }
}
