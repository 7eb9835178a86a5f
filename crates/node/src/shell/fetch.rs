//! `fetch URL`: an HTTP request made *from the pod's own address*.
//!
//! The point is to watch a pod → Service → pod path: the request leaves from the pod IP (the socket
//! is bound to it before connecting, as a process in the pod's network namespace would), the name
//! resolves through cluster DNS ([`super::dns`]) to a ClusterIP, the forwarder (kube-proxy) picks
//! an endpoint, and the answering echo pod logs the client address. `-v` prints each step.
//!
//! Options (a curl-like subset): `-v` verbose, `-i` include response headers, `-I` HEAD,
//! `-X METHOD`, `-H 'Name: value'`, `-d DATA`, `-m SECONDS` (default 30), `-k` skip TLS
//! verification, `-f` fail (exit 22) on HTTP errors. Exit codes follow curl's: 6 could not
//! resolve, 7 could not connect, 28 timed out, 35 TLS failed, 22 HTTP error with `-f`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;

use super::dns::ClusterDns;
use super::term::Io;

/// The most response body bytes printed.
pub const MAX_BODY: usize = 16 << 20;

/// What `fetch` needs from its pod.
#[derive(Clone, Debug)]
pub struct FetchContext {
    /// The pod's address (the source of every connection).
    pub pod_ip: IpAddr,
    /// Name resolution.
    pub dns: ClusterDns,
    /// TLS trust for `https://` (the cluster CA); None: only `-k` works.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Debug)]
struct Options {
    verbose: bool,
    include: bool,
    fail: bool,
    insecure: bool,
    method: Option<Method>,
    headers: Vec<(HeaderName, HeaderValue)>,
    data: Option<String>,
    timeout: Duration,
    url: String,
}

fn usage() -> String {
    "usage: fetch [-v] [-i] [-I] [-f] [-k] [-X METHOD] [-H 'Name: value'] [-d DATA] [-m SECONDS] URL\n"
        .into()
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        verbose: false,
        include: false,
        fail: false,
        insecure: false,
        method: None,
        headers: Vec::new(),
        data: None,
        timeout: Duration::from_secs(30),
        url: String::new(),
    };
    let mut it = args.iter();
    let mut url = None;
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("fetch: option {flag} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "-v" | "--verbose" => o.verbose = true,
            "-i" | "--include" => o.include = true,
            "-I" | "--head" => {
                o.method = Some(Method::HEAD);
                o.include = true;
            }
            "-f" | "--fail" => o.fail = true,
            "-k" | "--insecure" => o.insecure = true,
            "-s" | "--silent" => {}
            "-X" | "--request" => {
                let m = value(arg)?;
                o.method = Some(
                    Method::from_bytes(m.as_bytes())
                        .map_err(|_| format!("fetch: invalid method {m:?}\n"))?,
                );
            }
            "-H" | "--header" => {
                let h = value(arg)?;
                let (name, val) = h
                    .split_once(':')
                    .ok_or_else(|| format!("fetch: header {h:?} is not 'Name: value'\n"))?;
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| format!("fetch: invalid header name in {h:?}\n"))?;
                let val = HeaderValue::from_str(val.trim())
                    .map_err(|_| format!("fetch: invalid header value in {h:?}\n"))?;
                o.headers.push((name, val));
            }
            "-d" | "--data" => o.data = Some(value(arg)?),
            "-m" | "--max-time" => {
                let s = value(arg)?;
                let secs: f64 = s
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                    .ok_or_else(|| format!("fetch: invalid time {s:?}\n"))?;
                o.timeout = Duration::from_secs_f64(secs);
            }
            a if a.starts_with('-') && a.len() > 1 => {
                return Err(format!("fetch: unknown option {a}\n{}", usage()));
            }
            a => {
                if url.replace(a.to_owned()).is_some() {
                    return Err(format!("fetch: one URL at a time\n{}", usage()));
                }
            }
        }
    }
    o.url = url.ok_or_else(usage)?;
    Ok(o)
}

/// Runs `fetch` with `args`; returns the exit code.
pub async fn fetch(ctx: &FetchContext, args: &[String], io: &mut Io) -> i32 {
    let options = match parse(args) {
        Ok(o) => o,
        Err(message) => {
            io.err(&message).await;
            return 2;
        }
    };
    let timeout = options.timeout;
    match tokio::time::timeout(timeout, run(ctx, &options, io)).await {
        Ok(code) => code,
        Err(_) => {
            io.err(&format!(
                "fetch: operation timed out after {} ms\n",
                timeout.as_millis()
            ))
            .await;
            28
        }
    }
}

async fn run(ctx: &FetchContext, o: &Options, io: &mut Io) -> i32 {
    let with_scheme = if o.url.contains("://") {
        o.url.clone()
    } else {
        format!("http://{}", o.url)
    };
    let uri: Uri = match with_scheme.parse() {
        Ok(uri) => uri,
        Err(err) => {
            io.err(&format!("fetch: invalid URL {:?}: {err}\n", o.url))
                .await;
            return 3;
        }
    };
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        other => {
            io.err(&format!(
                "fetch: unsupported scheme {:?} (http and https only)\n",
                other.unwrap_or("")
            ))
            .await;
            return 1;
        }
    };
    let Some(authority) = uri.authority().cloned() else {
        io.err("fetch: the URL has no host\n").await;
        return 3;
    };
    let host = authority.host().to_owned();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let resolved = match ctx.dns.resolve(&host) {
        Ok(r) => r,
        Err(err) => {
            io.err(&format!("fetch: {err}\n")).await;
            return 6;
        }
    };
    if o.verbose {
        let addrs: Vec<String> = resolved.addrs.iter().map(IpAddr::to_string).collect();
        io.err(&format!(
            "* resolved {host} to {} ({}: {})\n",
            addrs.join(", "),
            resolved.name,
            resolved.what
        ))
        .await;
    }
    let Some(&ip) = resolved.addrs.first() else {
        io.err(&format!("fetch: {host} has no addresses\n")).await;
        return 6;
    };
    let target = SocketAddr::new(ip, port);
    if o.verbose {
        io.err(&format!("* connecting from {} to {target}\n", ctx.pod_ip))
            .await;
    }
    let stream = match connect_from(ctx.pod_ip, target).await {
        Ok(s) => s,
        Err(err) => {
            io.err(&format!(
                "fetch: failed to connect to {host} port {port} from {}: {err}\n",
                ctx.pod_ip
            ))
            .await;
            return 7;
        }
    };
    if o.verbose {
        let local = stream
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        io.err(&format!("* connected: {local} -> {target}\n")).await;
    }
    let request = match build_request(o, &uri, &authority) {
        Ok(r) => r,
        Err(message) => {
            io.err(&message).await;
            return 2;
        }
    };
    if !https {
        return exchange(stream, request, o, io).await;
    }
    let config = if o.insecure {
        insecure_config()
    } else {
        match &ctx.tls {
            Some(config) => config.clone(),
            None => {
                io.err("fetch: no cluster CA to verify https with; use -k to skip verification\n")
                    .await;
                return 60;
            }
        }
    };
    let server_name = match ServerName::try_from(host.trim_matches(['[', ']']).to_owned()) {
        Ok(name) => name,
        Err(_) => {
            io.err(&format!("fetch: {host} is not a valid TLS server name\n"))
                .await;
            return 3;
        }
    };
    match tokio_rustls::TlsConnector::from(config)
        .connect(server_name, stream)
        .await
    {
        Ok(tls) => {
            if o.verbose {
                let (_, session) = tls.get_ref();
                io.err(&format!(
                    "* TLS {:?} established{}\n",
                    session
                        .protocol_version()
                        .map_or("?".into(), |v| format!("{v:?}")),
                    if o.insecure {
                        " (certificate not verified: -k)"
                    } else {
                        ", certificate verified"
                    }
                ))
                .await;
            }
            exchange(tls, request, o, io).await
        }
        Err(err) => {
            io.err(&format!("fetch: TLS handshake with {host} failed: {err}\n"))
                .await;
            35
        }
    }
}

async fn connect_from(
    source: IpAddr,
    target: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if source.is_ipv4() == target.is_ipv4() {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    tokio::time::timeout(Duration::from_secs(10), socket.connect(target))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

fn build_request(
    o: &Options,
    uri: &Uri,
    authority: &http::uri::Authority,
) -> Result<Request<Full<Bytes>>, String> {
    let method = o.method.clone().unwrap_or(if o.data.is_some() {
        Method::POST
    } else {
        Method::GET
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::USER_AGENT, "proxylab-fetch/1")
        .header(http::header::ACCEPT, "*/*");
    for (name, value) in &o.headers {
        builder = builder.header(name, value);
    }
    let body = o.data.clone().unwrap_or_default();
    builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("fetch: {e}\n"))
}

async fn exchange<S>(stream: S, request: Request<Full<Bytes>>, o: &Options, io: &mut Io) -> i32
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(err) => {
            io.err(&format!("fetch: {err}\n")).await;
            return 56;
        }
    };
    let driver = tokio::spawn(conn);
    if o.verbose {
        let mut text = format!("> {} {} HTTP/1.1\n", request.method(), request.uri());
        for (name, value) in request.headers() {
            text.push_str(&format!(
                "> {name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        text.push_str(">\n");
        io.err(&text).await;
    }
    let response = match sender.send_request(request).await {
        Ok(r) => r,
        Err(err) => {
            driver.abort();
            io.err(&format!("fetch: {err}\n")).await;
            return 56;
        }
    };
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        head.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    if o.verbose {
        let quoted: String = head.lines().map(|l| format!("< {l}\n")).collect();
        io.err(&format!("{quoted}<\n")).await;
    }
    if o.include {
        io.out(&format!("{head}\n")).await;
    }
    let mut body = response.into_body();
    let mut printed = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    let room = MAX_BODY.saturating_sub(printed);
                    io.out_bytes(&data[..data.len().min(room)]).await;
                    printed += data.len();
                    if printed >= MAX_BODY {
                        io.err(&format!("\nfetch: body cut at {MAX_BODY} bytes\n"))
                            .await;
                        break;
                    }
                }
            }
            Err(err) => {
                io.err(&format!("\nfetch: the response was cut: {err}\n"))
                    .await;
                driver.abort();
                return 18;
            }
        }
    }
    driver.abort();
    if o.fail && status.as_u16() >= 400 {
        io.err(&format!("fetch: the server answered {status}\n"))
            .await;
        return 22;
    }
    0
}

fn insecure_config() -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &[rustls_pki_types::CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = crate::certs::provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider.clone())))
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider.clone())))
                .with_no_client_auth()
        });
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn option_parsing() {
        let o = parse(&args(&[
            "-v", "-H", "X-A: 1", "-d", "hi", "-m", "2.5", "web/x",
        ]))
        .expect("ok");
        assert!(o.verbose);
        assert_eq!(o.headers[0].0.as_str(), "x-a");
        assert_eq!(o.data.as_deref(), Some("hi"));
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert_eq!(o.url, "web/x");
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["-X"])).is_err());
        assert!(parse(&args(&["-H", "nocolon", "u"])).is_err());
        assert!(parse(&args(&["-m", "-1", "u"])).is_err());
        assert!(parse(&args(&["--bogus", "u"])).is_err());
        assert!(parse(&args(&["a", "b"])).is_err());
    }
}
