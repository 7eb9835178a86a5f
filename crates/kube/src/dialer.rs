//! TCP dialling towards the apiserver, directly or through the kubeconfig's `proxy-url`.
//!
//! client-go honours a cluster's `proxy-url` (HTTP CONNECT or SOCKS5) for ordinary requests but
//! `kubectl proxy` dials upgrades itself and ignores it (kubernetes#120318), so exec through a
//! corporate proxy fails. Here both the pooled and the upgrade connections come from this one
//! dialer, so `proxy-url` applies to both.

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
