//! TCP dialling towards the apiserver, directly or through the kubeconfig's `proxy-url`.
//!
//! client-go honours a cluster's `proxy-url` (HTTP CONNECT or SOCKS5) for ordinary requests but
//! `kubectl proxy` dials upgrades itself and ignores it (kubernetes#120318), so exec through a
//! corporate proxy fails. Here both the pooled and the upgrade connections come from this one
//! dialer, so `proxy-url` applies to both.
//!
//! When a cluster has no `proxy-url`, client-go falls back to Go's `http.ProxyFromEnvironment`
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), and so does `kubectl proxy`. [`choose_proxy`] models
//! that choice as a pure function of the server URL and a [`ProxyEnv`] read once, so the rules can
//! be tested without touching the process environment; [`crate::config::load`] applies it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy from `proxy-url`.
#[derive(Debug, Clone)]
pub enum ProxyUrl {
    /// `http://[user:pass@]host:port` — HTTP `CONNECT`.
    HttpConnect {
        /// host:port of the proxy.
        addr: String,
        /// `Proxy-Authorization` value when the URL carried credentials.
        auth: Option<String>,
    },
    /// `socks5://` or `socks5h://[user:pass@]host:port`.
    Socks5 {
        /// host:port of the proxy.
        addr: String,
        /// username and password when the URL carried them.
        auth: Option<(String, String)>,
    },
}

impl ProxyUrl {
    /// Parses a `proxy-url`. `https://` proxies (TLS to the proxy itself) are not supported.
    pub fn parse(uri: &Uri) -> Result<Self, String> {
        let authority = uri.authority().ok_or("has no host")?;
        let (userinfo, hostport) = match authority.as_str().rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority.as_str()),
        };
        let creds = userinfo.map(|u| {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(user), dec(pass))
        });
        match uri.scheme_str() {
            Some("http") => {
                let addr = with_default_port(hostport, 80);
                let auth = creds.map(|(u, p)| {
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                    )
                });
                Ok(ProxyUrl::HttpConnect { addr, auth })
            }
            Some("socks5" | "socks5h") => Ok(ProxyUrl::Socks5 {
                addr: with_default_port(hostport, 1080),
                auth: creds,
            }),
            Some(other) => Err(format!(
                "proxy scheme {other:?} is not supported (use http or socks5)"
            )),
            None => Err("has no scheme".into()),
        }
    }
}

fn with_default_port(hostport: &str, port: u16) -> String {
    let has_port = match hostport.rfind(']') {
        Some(end) => hostport[end..].contains(':'),
        None => hostport.contains(':'),
    };
    if has_port {
        hostport.to_owned()
    } else {
        format!("{hostport}:{port}")
    }
}

/// A `tower::Service<Uri>` that opens TCP connections, for hyper-rustls to wrap.
#[derive(Debug, Clone)]
pub struct Dialer {
    proxy: Option<Arc<ProxyUrl>>,
    keepalive: Option<Duration>,
    connect_timeout: Duration,
}

impl Dialer {
    /// Dials directly, or through `proxy`. `keepalive` sets TCP keepalive (kubectl's `--keepalive`).
    pub fn new(
        proxy: Option<ProxyUrl>,
        keepalive: Option<Duration>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            proxy: proxy.map(Arc::new),
            keepalive,
            connect_timeout,
        }
    }
}

/// host (brackets removed) and port of a target URI.
fn host_port(uri: &Uri) -> io::Result<(String, u16)> {
    let host = uri
        .host()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URI has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    Ok((host, port))
}

impl tower::Service<Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (host, port) = host_port(&uri)?;
            let dial = async {
                let stream = match this.proxy.as_deref() {
                    None => TcpStream::connect((host.as_str(), port)).await?,
                    Some(ProxyUrl::HttpConnect { addr, auth }) => {
                        let mut s = TcpStream::connect(addr.as_str()).await?;
                        http_connect(&mut s, &host, port, auth.as_deref()).await?;
                        s
                    }
                    Some(ProxyUrl::Socks5 { addr, auth }) => {
                        let mut s = TcpStream::connect(addr.as_str()).await?;
                        socks5_connect(&mut s, &host, port, auth.as_ref()).await?;
                        s
                    }
                };
                Ok::<_, io::Error>(stream)
            };
            let stream = tokio::time::timeout(this.connect_timeout, dial)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            let _ = stream.set_nodelay(true);
            if let Some(idle) = this.keepalive {
                let _ = proxylab_core::runtime::set_keepalive(&stream, idle);
            }
            Ok(TokioIo::new(stream))
        })
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn http_connect(
    s: &mut TcpStream,
    host: &str,
    port: u16,
    auth: Option<&str>,
) -> io::Result<()> {
    let target = authority(host, port);
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    // Read the response head byte by byte: anything past it belongs to the TLS stream.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(io::Error::other("proxy response head too large"));
        }
        let b = s.read_u8().await?;
        head.push(b);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let ok = line
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'));
    if !ok {
        return Err(io::Error::other(format!(
            "proxy refused CONNECT: {}",
            line.trim()
        )));
    }
    Ok(())
}

async fn socks5_connect(
    s: &mut TcpStream,
    host: &str,
    port: u16,
    auth: Option<&(String, String)>,
) -> io::Result<()> {
    let method: u8 = if auth.is_some() { 2 } else { 0 };
    s.write_all(&[5, 1, method]).await?;
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).await?;
    if reply[0] != 5 || reply[1] != method {
        return Err(io::Error::other(
            "SOCKS5 proxy refused the authentication method",
        ));
    }
    if let Some((user, pass)) = auth {
        let (u, p) = (user.as_bytes(), pass.as_bytes());
        if u.len() > 255 || p.len() > 255 {
            return Err(io::Error::other("SOCKS5 username or password too long"));
        }
        let mut msg = vec![1, u.len() as u8];
        msg.extend_from_slice(u);
        msg.push(p.len() as u8);
        msg.extend_from_slice(p);
        s.write_all(&msg).await?;
        s.read_exact(&mut reply).await?;
        if reply[1] != 0 {
            return Err(io::Error::other("SOCKS5 proxy rejected the credentials"));
        }
    }
    let mut msg = vec![5, 1, 0];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            msg.push(1);
            msg.extend_from_slice(&ip.octets());
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            msg.push(4);
            msg.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            if host.len() > 255 {
                return Err(io::Error::other("host name too long for SOCKS5"));
            }
            msg.push(3);
            msg.push(host.len() as u8);
            msg.extend_from_slice(host.as_bytes());
        }
    }
    msg.extend_from_slice(&port.to_be_bytes());
    s.write_all(&msg).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[1] != 0 {
        return Err(io::Error::other(format!(
            "SOCKS5 proxy refused the connection (code {})",
            head[1]
        )));
    }
    let skip = match head[3] {
        1 => 4,
        4 => 16,
        3 => usize::from(s.read_u8().await?),
        _ => return Err(io::Error::other("SOCKS5 reply with unknown address type")),
    };
    let mut rest = vec![0u8; skip + 2];
    s.read_exact(&mut rest).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The proxy from the environment (Go's `http.ProxyFromEnvironment`, golang.org/x/net/http/httpproxy)
// ---------------------------------------------------------------------------------------------

/// The proxy variables of the environment, read once. As Go's `httpproxy.FromEnvironment`, each
/// is the upper-case variable when it is set and non-empty, else the lower-case one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// `HTTPS_PROXY` / `https_proxy`: the variable's name (for error messages) and its value.
    pub https_proxy: Option<(&'static str, String)>,
    /// `HTTP_PROXY` / `http_proxy`.
    pub http_proxy: Option<(&'static str, String)>,
    /// `NO_PROXY` / `no_proxy`.
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    /// Reads the process environment (a value that is not UTF-8 counts as unset).
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get`: the seam that lets tests pass values without
    /// `std::env::set_var` (unsafe in edition 2024, and racing other tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let any = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|n| get(n).filter(|v| !v.is_empty()).map(|v| (n, v)))
        };
        Self {
            https_proxy: any(["HTTPS_PROXY", "https_proxy"]),
            http_proxy: any(["HTTP_PROXY", "http_proxy"]),
            no_proxy: any(["NO_PROXY", "no_proxy"]).map(|(_, v)| v),
        }
    }
}

/// Where the proxy towards the apiserver comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxySource {
    /// The cluster's `proxy-url` in the kubeconfig.
    Kubeconfig,
    /// This environment variable (`HTTPS_PROXY`, `https_proxy`, `HTTP_PROXY` or `http_proxy`).
    Environment(&'static str),
}

/// Why the apiserver is dialled directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectReason {
    /// No `proxy-url`, and no proxy variable for the server's scheme.
    NotConfigured,
    /// The server is `localhost` or a loopback address, which Go never sends through a proxy.
    Loopback,
    /// `NO_PROXY` matches the server.
    NoProxy,
}

/// The proxy chosen for an apiserver, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyChoice {
    /// Dial through this proxy.
    Proxy {
        /// The proxy URL (normalised: a scheme-less environment value gets `http://`).
        url: Uri,
        /// Where it came from.
        source: ProxySource,
    },
    /// Dial the apiserver itself.
    Direct(DirectReason),
}

impl ProxyChoice {
    /// The proxy URL, if any.
    pub fn url(&self) -> Option<&Uri> {
        match self {
            ProxyChoice::Proxy { url, .. } => Some(url),
            ProxyChoice::Direct(_) => None,
        }
    }
}

/// A proxy variable that would be used but cannot be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?}: {message}")]
pub struct EnvProxyError {
    /// The variable.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub message: String,
}

/// The proxy to reach `server` through, as client-go decides it.
///
/// 1. A kubeconfig `proxy-url` always wins (client-go sets `Transport.Proxy` to it).
/// 2. Otherwise Go's `ProxyFromEnvironment`: `HTTPS_PROXY` for an `https://` server, `HTTP_PROXY`
///    for an `http://` one (no fallback from one to the other); none set → direct.
/// 3. `localhost` and loopback addresses (127.0.0.0/8, `::1`, and IPv4-mapped forms) are never
///    proxied, whatever the variables say: Go hard-codes this in `httpproxy`'s `useProxy`, so a
///    kubeconfig for a local cluster keeps working in a shell with a corporate `HTTPS_PROXY`.
///    (Only those exact forms: `foo.localhost` or a name that resolves to 127.0.0.1 is proxied.)
/// 4. `NO_PROXY` matching the server → direct (see [`no_proxy_matches`]).
/// 5. A value without a scheme (`proxy.corp:3128`) means `http://` (Go's `parseProxy`).
///
/// Deliberate differences from Go: a value that would be used but cannot be (unparseable, or a
/// scheme this dialer does not speak, such as `https://`) is an error here, where Go silently
/// ignores an unparseable one and speaks TLS to an `https://` proxy; and an `http://` server is
/// reached through the proxy with `CONNECT` too, where Go sends absolute-form requests. Go's
/// refusal of `HTTP_PROXY` under CGI (`REQUEST_METHOD` set) and IDNA conversion of non-ASCII
/// host names are not modelled.
pub fn choose_proxy(
    kubeconfig_proxy: Option<&Uri>,
    server: &Uri,
    env: &ProxyEnv,
) -> Result<ProxyChoice, EnvProxyError> {
    if let Some(url) = kubeconfig_proxy {
        return Ok(ProxyChoice::Proxy {
            url: url.clone(),
            source: ProxySource::Kubeconfig,
        });
    }
    let (var, default_port) = match server.scheme_str() {
        Some("https") => (env.https_proxy.as_ref(), 443),
        Some("http") => (env.http_proxy.as_ref(), 80),
        _ => (None, 0),
    };
    let Some((name, value)) = var else {
        return Ok(ProxyChoice::Direct(DirectReason::NotConfigured));
    };
    let host = server
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = server.port_u16().unwrap_or(default_port);
    if is_loopback_host(host) {
        return Ok(ProxyChoice::Direct(DirectReason::Loopback));
    }
    if env
        .no_proxy
        .as_deref()
        .is_some_and(|np| no_proxy_matches(np, host, port))
    {
        return Ok(ProxyChoice::Direct(DirectReason::NoProxy));
    }
    let err = |message: String| EnvProxyError {
        var: name,
        value: value.clone(),
        message,
    };
    let url = parse_env_proxy(value).map_err(err)?;
    ProxyUrl::parse(&url).map_err(err)?;
    Ok(ProxyChoice::Proxy {
        url,
        source: ProxySource::Environment(name),
    })
}

/// Go's `parseProxy`: the value as a URL, else (no scheme or no host) with `http://` in front.
fn parse_env_proxy(value: &str) -> Result<Uri, String> {
    let parsed = value.trim().parse::<Uri>();
    if let Ok(u) = &parsed
        && u.scheme().is_some()
        && u.host().is_some_and(|h| !h.is_empty())
    {
        return Ok(u.clone());
    }
    if let Ok(u) = format!("http://{}", value.trim()).parse::<Uri>()
        && u.host().is_some_and(|h| !h.is_empty())
    {
        return Ok(u);
    }
    Err(match parsed {
        Err(e) => format!("not a proxy URL: {e}"),
        Ok(_) => "not a proxy URL (no host)".to_owned(),
    })
}

/// `localhost` (any case) or a loopback IP address: the hosts Go never proxies.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Whether a `NO_PROXY` value exempts `host:port` from the proxy, by Go's `httpproxy` rules:
///
/// - entries are comma-separated, trimmed, compared case-insensitively; empty ones are skipped;
/// - `*` (as an entry) matches everything;
/// - an IP address matches that address, a CIDR (`10.0.0.0/8`, `fd00::/8`) any address inside
///   it (IPv4-mapped IPv6 hosts count as IPv4); neither matches a host *name*;
/// - a name matches itself and its subdomains (`example.com` matches `api.example.com`); with a
///   leading `.` or `*.`, only subdomains (`.example.com` does not match `example.com`);
/// - an entry may carry a port (`example.com:6443`, `10.0.0.1:443`, `[::1]:6443`): then only that
///   port matches; the port of an `https://` server without one is 443, `http://` 80.
///
/// Loopback is not this function's business: see [`choose_proxy`].
pub fn no_proxy_matches(no_proxy: &str, host: &str, port: u16) -> bool {
    use std::net::IpAddr;
    let host = host
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    let port = port.to_string();
    for entry in no_proxy.split(',') {
        let p = entry.trim().to_ascii_lowercase();
        if p.is_empty() {
            continue;
        }
        if p == "*" {
            return true;
        }
        if let Some((net, bits)) = parse_cidr(&p) {
            if ip.is_some_and(|ip| cidr_contains(net, bits, ip)) {
                return true;
            }
            continue;
        }
        let (phost, pport) = match split_host_port(&p) {
            // `:443` and the like: no host, a malformed entry Go ignores.
            Some(("", _)) => continue,
            Some(hp) => hp,
            None => (p.as_str(), ""),
        };
        let port_ok = pport.is_empty() || pport == port;
        if let Ok(pip) = phost.parse::<IpAddr>() {
            if ip == Some(pip.to_canonical()) && port_ok {
                return true;
            }
            continue;
        }
        // Domain: `*.x` → `.x`; `x` → `.x` that also matches `x` itself.
        let phost = phost
            .strip_prefix('*')
            .filter(|r| r.starts_with('.'))
            .unwrap_or(phost);
        let (suffix, match_host) = match phost.strip_prefix('.') {
            Some(_) => (phost.to_owned(), false),
            None => (format!(".{phost}"), true),
        };
        if (host.ends_with(&suffix) || (match_host && host == suffix[1..])) && port_ok {
            return true;
        }
    }
    false
}

/// Go's `net.SplitHostPort`, returning `None` where it errors (no port, too many colons, stray
/// brackets). The host comes back without brackets.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let port = rest[end + 1..].strip_prefix(':')?;
        (&rest[..end], port)
    } else {
        let i = s.rfind(':')?;
        let host = &s[..i];
        if host.contains(':') {
            return None;
        }
        (host, &s[i + 1..])
    };
    if host.contains(['[', ']']) || port.contains(['[', ']']) {
        return None;
    }
    Some((host, port))
}

/// `addr/bits` as Go's `net.ParseCIDR` accepts it.
fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, bits) = s.split_once('/')?;
    let addr: std::net::IpAddr = addr.parse().ok()?;
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) || bits.len() > 3 {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

fn cidr_contains(net: std::net::IpAddr, bits: u8, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let prefix_eq = |a: u128, b: u128, width: u32| {
        let bits = u32::from(bits);
        bits == 0 || (a ^ b) >> (width - bits) == 0
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            prefix_eq(u128::from(u32::from(n)), u128::from(u32::from(i)), 32)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => prefix_eq(u128::from(n), u128::from(i), 128),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls() {
        let p = ProxyUrl::parse(&"http://u:p%40ss@proxy.local:3128".parse().unwrap()).unwrap();
        match p {
            ProxyUrl::HttpConnect { addr, auth } => {
                assert_eq!(addr, "proxy.local:3128");
                assert_eq!(
                    auth.unwrap(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode("u:p@ss")
                    )
                );
            }
            other => panic!("{other:?}"),
        }
        match ProxyUrl::parse(&"socks5://127.0.0.1".parse().unwrap()).unwrap() {
            ProxyUrl::Socks5 { addr, auth } => {
                assert_eq!(addr, "127.0.0.1:1080");
                assert!(auth.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(ProxyUrl::parse(&"https://proxy:443".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn dials_through_http_connect() {
        use tokio::net::TcpListener;
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_addr = target.local_addr().unwrap();
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        let seen = tokio::spawn(async move {
            let (mut c, _) = proxy.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = c.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let mut up = TcpStream::connect(target_addr).await.unwrap();
            c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .unwrap();
            let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
            head
        });
        tokio::spawn(async move {
            let (mut s, _) = target.accept().await.unwrap();
            s.write_all(b"hello").await.unwrap();
        });
        let proxy = ProxyUrl::parse(&format!("http://{proxy_addr}").parse().unwrap()).unwrap();
        let mut d = Dialer::new(Some(proxy), None, Duration::from_secs(5));
        let uri: Uri = format!("https://{target_addr}/").parse().unwrap();
        let io = tower::Service::call(&mut d, uri).await.unwrap();
        let mut s = io.into_inner();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hello");
        drop(s);
        let head = seen.await.unwrap();
        assert!(
            head.starts_with(&format!("CONNECT {target_addr} HTTP/1.1\r\n")),
            "{head}"
        );
    }
}

#[cfg(test)]
mod env_proxy_tests {
    use super::*;

    #[test]
    fn no_proxy_matcher_follows_go() {
        // (NO_PROXY, host, port, matches)
        let table: &[(&str, &str, u16, bool)] = &[
            ("", "example.com", 443, false),
            (",, ,", "example.com", 443, false),
            ("*", "example.com", 443, true),
            ("*", "10.0.0.1", 6443, true),
            ("other.org, *", "example.com", 443, true),
            // Names: the name itself and its subdomains, nothing else.
            ("example.com", "example.com", 443, true),
            ("example.com", "api.example.com", 443, true),
            ("example.com", "notexample.com", 443, false),
            ("example.com", "example.com.evil.org", 443, false),
            // A leading dot or `*.`: subdomains only.
            (".example.com", "api.example.com", 443, true),
            (".example.com", "example.com", 443, false),
            ("*.example.com", "a.b.example.com", 443, true),
            ("*.example.com", "example.com", 443, false),
            // Case-insensitive both ways; whitespace around entries ignored.
            ("EXAMPLE.com", "Api.Example.COM", 443, true),
            (" other.org ,  example.com ", "example.com", 443, true),
            // Ports: only the named one.
            ("example.com:6443", "example.com", 6443, true),
            ("example.com:6443", "example.com", 443, false),
            (".example.com:443", "api.example.com", 443, true),
            ("example.com:", "example.com", 8443, true),
            (":443", "example.com", 443, false),
            // IP addresses.
            ("10.0.0.1", "10.0.0.1", 443, true),
            ("10.0.0.1", "10.0.0.2", 443, false),
            ("10.0.0.1:6443", "10.0.0.1", 6443, true),
            ("10.0.0.1:6443", "10.0.0.1", 443, false),
            ("2001:db8::1", "2001:db8::1", 443, true),
            ("2001:db8::1", "[2001:db8::1]", 443, true),
            ("[2001:db8::1]:6443", "2001:db8::1", 6443, true),
            ("[2001:db8::1]:6443", "2001:db8::1", 443, false),
            ("10.0.0.1", "::ffff:10.0.0.1", 443, true),
            // CIDR ranges, for addresses only.
            ("10.0.0.0/8", "10.96.0.1", 443, true),
            ("10.0.0.0/8", "11.0.0.1", 443, false),
            ("10.96.0.0/12", "10.111.255.255", 443, true),
            ("10.96.0.0/12", "10.112.0.0", 443, false),
            ("0.0.0.0/0", "192.0.2.7", 443, true),
            ("10.0.0.0/8", "::ffff:10.1.2.3", 443, true),
            ("2001:db8::/32", "2001:db8:ffff::1", 443, true),
            ("2001:db8::/32", "2001:db9::1", 443, false),
            ("10.0.0.0/8", "ten.example.com", 443, false),
            ("example.com", "10.0.0.1", 443, false),
            // A malformed CIDR is a (non-matching) name, not an error.
            ("10.0.0.0/33", "10.0.0.1", 443, false),
        ];
        for (no_proxy, host, port, want) in table {
            assert_eq!(
                no_proxy_matches(no_proxy, host, *port),
                *want,
                "NO_PROXY={no_proxy:?} host={host} port={port}"
            );
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LocalHost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "localhost.example.com",
            "foo.localhost",
            "10.0.0.1",
            "128.0.0.1",
            "::2",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn env_lookup_prefers_upper_case_and_skips_empty() {
        let env = ProxyEnv::from_lookup(|n| match n {
            "HTTPS_PROXY" => Some(String::new()),
            "https_proxy" => Some("http://lower:3128".into()),
            "HTTP_PROXY" => Some("http://upper:3128".into()),
            "http_proxy" => Some("http://lower:3128".into()),
            "no_proxy" => Some(".svc".into()),
            _ => None,
        });
        assert_eq!(
            env,
            ProxyEnv {
                https_proxy: Some(("https_proxy", "http://lower:3128".into())),
                http_proxy: Some(("HTTP_PROXY", "http://upper:3128".into())),
                no_proxy: Some(".svc".into()),
            }
        );
        assert_eq!(ProxyEnv::from_lookup(|_| None), ProxyEnv::default());
    }

    fn env(https: Option<&str>, http: Option<&str>, no_proxy: Option<&str>) -> ProxyEnv {
        ProxyEnv {
            https_proxy: https.map(|v| ("HTTPS_PROXY", v.to_owned())),
            http_proxy: http.map(|v| ("HTTP_PROXY", v.to_owned())),
            no_proxy: no_proxy.map(str::to_owned),
        }
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    /// (proxy-url, server, HTTPS_PROXY, HTTP_PROXY, NO_PROXY, expected)
    type Row = (
        Option<&'static str>,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        ProxyChoice,
    );

    #[test]
    fn choice_follows_client_go() {
        use DirectReason::*;
        let direct = ProxyChoice::Direct;
        let from_env = |var: &'static str, url: &str| ProxyChoice::Proxy {
            url: uri(url),
            source: ProxySource::Environment(var),
        };
        let from_kubeconfig = |url: &str| ProxyChoice::Proxy {
            url: uri(url),
            source: ProxySource::Kubeconfig,
        };
        let corp = Some("http://proxy.corp:3128");
        let via_corp = from_env("HTTPS_PROXY", "http://proxy.corp:3128");
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            // Nothing configured.
            (None, "https://api.example.com", None, None, None, direct(NotConfigured)),
            // HTTPS_PROXY for https servers, HTTP_PROXY for http ones, no fallback between them.
            (None, "https://api.example.com", corp, None, None, via_corp.clone()),
            (None, "https://api.example.com", None, corp, None, direct(NotConfigured)),
            (None, "http://api.example.com", None, corp, None, from_env("HTTP_PROXY", "http://proxy.corp:3128")),
            (None, "http://api.example.com", corp, None, None, direct(NotConfigured)),
            // Loopback is never proxied, NO_PROXY or not; names that merely look local are.
            (None, "https://127.0.0.1:6443", corp, None, None, direct(Loopback)),
            (None, "https://127.0.10.1:6443", corp, None, None, direct(Loopback)),
            (None, "https://[::1]:6443", corp, None, None, direct(Loopback)),
            (None, "https://localhost:6443", corp, None, None, direct(Loopback)),
            (None, "https://LOCALHOST:6443", corp, None, None, direct(Loopback)),
            (None, "https://kind.localhost:6443", corp, None, None, via_corp.clone()),
            // NO_PROXY, with the scheme's default port when the URL has none.
            (None, "https://10.96.0.1", corp, None, Some("10.0.0.0/8"), direct(NoProxy)),
            (None, "https://api.example.com", corp, None, Some("example.com:443"), direct(NoProxy)),
            (None, "https://api.example.com:6443", corp, None, Some("example.com:443"), via_corp.clone()),
            (None, "https://api.example.com", corp, None, Some("other.org"), via_corp.clone()),
            // A scheme-less value is http://; socks5 is fine.
            (None, "https://api.example.com", Some("proxy.corp:3128"), None, None, via_corp.clone()),
            (None, "https://api.example.com", Some("socks5://127.0.0.1:1080"), None, None, from_env("HTTPS_PROXY", "socks5://127.0.0.1:1080")),
            // The kubeconfig's proxy-url wins over everything, even loopback and NO_PROXY.
            (Some("socks5://10.1.1.1:1080"), "https://api.example.com", corp, None, None, from_kubeconfig("socks5://10.1.1.1:1080")),
            (Some("http://10.1.1.1:3128"), "https://127.0.0.1:6443", None, None, Some("*"), from_kubeconfig("http://10.1.1.1:3128")),
        ];
        for (kc, server, https, http, no_proxy, want) in table {
            let kc = kc.map(uri);
            let env = env(https, http, no_proxy);
            let got = choose_proxy(kc.as_ref(), &uri(server), &env);
            assert_eq!(
                got.as_ref(),
                Ok(&want),
                "proxy-url={kc:?} server={server} {env:?}"
            );
        }
    }

    #[test]
    fn unusable_env_proxy_is_an_error_only_when_it_would_be_used() {
        let server = uri("https://api.example.com");
        let err = choose_proxy(
            None,
            &server,
            &env(Some("https://proxy.corp:443"), None, None),
        )
        .unwrap_err();
        assert_eq!(err.var, "HTTPS_PROXY");
        assert!(
            err.to_string()
                .starts_with("HTTPS_PROXY=\"https://proxy.corp:443\": "),
            "{err}"
        );
        assert!(err.message.contains("not supported"), "{err}");
        assert!(choose_proxy(None, &server, &env(Some("http://bad host:1"), None, None)).is_err());
        // The same values are harmless where no proxy would be used.
        for (server, no_proxy) in [
            ("https://127.0.0.1:6443", None),
            ("https://api.example.com", Some("*")),
        ] {
            let got = choose_proxy(
                None,
                &uri(server),
                &env(Some("https://proxy.corp:443"), None, no_proxy),
            );
            assert!(
                matches!(got, Ok(ProxyChoice::Direct(_))),
                "{server}: {got:?}"
            );
        }
    }
}
