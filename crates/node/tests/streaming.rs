//! The kubelet API's streaming endpoints driven at the protocol level: a SPDY/3.1 client built on
//! the crate's own frame codec, and a WebSocket client (tokio-tungstenite), both over TLS with
//! the apiserver's kubelet client certificate — what kube-apiserver (and so `kubectl exec`,
//! `attach`, `port-forward`) sends. The real kubectl runs against the same endpoints in
//! `kubectl_streaming.rs`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use proxylab_node::certs::{self, CertificateAuthority};
use proxylab_node::kubelet_api::RunningContainer;
use proxylab_node::shell::ShellContext;
use proxylab_node::shell::dns::ClusterDns;
use proxylab_node::shell::fetch::FetchContext;
use proxylab_node::shell::files;
use proxylab_node::spdy::{Frame, Headers, SpdyCodec};
use proxylab_node::workload::PodIdentity;
use proxylab_node::workload::logs::ContainerLog;
use proxylab_node::{Node, NodeConfig};
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);

struct Kubelet {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    log: ContainerLog,
    /// A TCP echo server standing for the pod's port.
    echo_port: u16,
    shutdown: CancellationToken,
}

async fn kubelet() -> Kubelet {
    certs::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::generate("cluster-ca").expect("ca");
    let serving = certs::issue_serving(&["node-1".into(), LOCALHOST.to_string()], Some(&ca))
        .expect("serving");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let mut config = NodeConfig::new("node-1", LOCALHOST, "127.0.30.0/25".parse().expect("cidr"));
    config.kubelet_port = 0;
    config.tls_cert_file = Some(write("kubelet.crt", &serving.cert_pem));
    config.tls_private_key_file = Some(write("kubelet.key", &serving.key_pem));
    config.client_ca_file = Some(write("ca.crt", ca.cert_pem()));
    // An apiserver that is not there: registration retries in the background.
    config.kubeconfig = Some(
        proxylab_test_support::fake_apiserver::write_kubeconfig_with(
            dir.path(),
            "http://127.0.0.1:9",
            "",
            "    token: offline",
        ),
    );
    let bound = Node::bind(config).await.expect("bind");

    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-1", "namespace": "default", "uid": "uid-1"},
        "spec": {"containers": [{"name": "main", "image": "echo-http",
            "env": [{"name": "GREETING", "value": "hello"}]}]}
    }))
    .expect("pod");
    let container = pod.spec.as_ref().expect("spec").containers[0].clone();
    let log = ContainerLog::new(100);
    log.push("started");
    let identity = Arc::new(PodIdentity {
        name: "web-1".into(),
        namespace: "default".into(),
        node: "node-1".into(),
        ip: LOCALHOST,
    });
    bound.pods().upsert(pod.clone());
    let shell = ShellContext {
        pod: identity,
        container: "main".into(),
        hostname: "web-1".into(),
        env: files::environment(&pod, &container, LOCALHOST, LOCALHOST, None),
        files: files::container_files(&pod, LOCALHOST, &[]),
        fetch: FetchContext {
            pod_ip: LOCALHOST,
            dns: ClusterDns::new(None, "default", LOCALHOST),
            tls: None,
        },
        shutdown: CancellationToken::new(),
    };
    let mut running = RunningContainer::new(log.clone()).with_shell(Arc::new(shell));
    running.stdin = true;
    bound
        .containers()
        .insert("default", "web-1", "main", running);
    let addr = bound.kubelet_addr();
    let shutdown = CancellationToken::new();
    tokio::spawn(bound.serve(shutdown.clone()));

    let apiserver = ca
        .issue_client("kube-apiserver-kubelet-client", &[])
        .expect("client");
    let mut tls = rustls::ClientConfig::builder_with_provider(certs::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(ca.root_store())
        .with_client_auth_cert(apiserver.chain.clone(), apiserver.key.clone_key())
        .expect("client cert");
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::mem::forget(dir);
    Kubelet {
        addr,
        tls: Arc::new(tls),
        log,
        echo_port: proxylab_test_support::echo::tcp_echo("127.0.0.1:0", "")
            .await
            .port(),
        shutdown,
    }
}

impl Kubelet {
    async fn connect(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(ServerName::IpAddress(LOCALHOST.into()), tcp)
            .await
            .expect("tls")
    }

    /// Sends an HTTP/1.1 request and reads the response head; returns (status, headers, rest).
    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (
        u16,
        BTreeMap<String, Vec<String>>,
        TlsStream<TcpStream>,
        BytesMut,
    ) {
        let mut conn = self.connect().await;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: node-1\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes()).await.expect("write");
        let mut buf = BytesMut::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = tokio::time::timeout(WAIT, conn.read_buf(&mut buf))
                .await
                .expect("response in time")
                .expect("read");
            assert!(n > 0, "connection closed before the response head");
        };
        let head = String::from_utf8(buf.split_to(end + 4).to_vec()).expect("utf8");
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status");
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once(':').expect("header");
            map.entry(k.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_owned());
        }
        (status, map, conn, buf)
    }

    /// A plain GET: (status, body).
    async fn get(&self, path: &str) -> (u16, String) {
        let (status, headers, mut conn, mut rest) =
            self.request("GET", path, &[("Connection", "close")]).await;
        let mut tail = Vec::new();
        let _ = tokio::time::timeout(WAIT, conn.read_to_end(&mut tail)).await;
        rest.extend_from_slice(&tail);
        let body = rest;
        let text = String::from_utf8_lossy(&body).into_owned();
        let text = if headers
            .get("transfer-encoding")
            .is_some_and(|v| v[0] == "chunked")
        {
            dechunk(&text)
        } else {
            text
        };
        (status, text)
    }
}

fn dechunk(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A small SPDY client session: opens streams, collects what arrives on each.

struct Spdy<S> {
    io: S,
    codec: SpdyCodec,
    buf: BytesMut,
    next_id: u32,
    data: BTreeMap<u32, Vec<u8>>,
    fin: BTreeMap<u32, bool>,
    goaway: bool,
    replies: Vec<u32>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Spdy<S> {
    fn new(io: S, buf: BytesMut) -> Self {
        Self {
            io,
            codec: SpdyCodec::new(),
            buf,
            next_id: 1,
            data: BTreeMap::new(),
            fin: BTreeMap::new(),
            goaway: false,
            replies: Vec::new(),
        }
    }

    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        self.codec.encode(frame, &mut out).expect("encode");
        self.io.write_all(&out).await.expect("write");
    }

    async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let mut h = Headers::new();
        for (k, v) in headers {
            h.add(k, v);
        }
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: h,
        })
        .await;
        id
    }

    async fn data(&mut self, id: u32, bytes: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id: id,
            fin,
            data: Bytes::copy_from_slice(bytes),
        })
        .await;
    }

    /// Reads one frame (None at EOF).
    async fn read(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self
                .codec
                .decode(&mut self.buf)
                .expect("valid frames from the server")
            {
                match &frame {
                    Frame::Data {
                        stream_id,
                        fin,
                        data,
                    } => {
                        self.data
                            .entry(*stream_id)
                            .or_default()
                            .extend_from_slice(data);
                        if *fin {
                            self.fin.insert(*stream_id, true);
                        }
                    }
                    Frame::SynReply { stream_id, .. } => self.replies.push(*stream_id),
                    Frame::GoAway { .. } => self.goaway = true,
                    _ => {}
                }
                return Some(frame);
            }
            let n = tokio::time::timeout(WAIT, self.io.read_buf(&mut self.buf))
                .await
                .expect("frames in time")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads until `done` holds or the connection ends.
    async fn until(&mut self, done: impl Fn(&Self) -> bool) {
        while !done(self) {
            if self.read().await.is_none() {
                return;
            }
        }
    }

    fn text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.data.get(&id).map_or(&[][..], |v| v)).into_owned()
    }
}

async fn spdy_upgrade(
    k: &Kubelet,
    path: &str,
    protocols: &[&str],
) -> (
    u16,
    BTreeMap<String, Vec<String>>,
    Spdy<TlsStream<TcpStream>>,
) {
    let mut headers = vec![("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];
    for p in protocols {
        headers.push(("X-Stream-Protocol-Version", p));
    }
    let (status, h, conn, rest) = k.request("POST", path, &headers).await;
    (status, h, Spdy::new(conn, rest))
}

/// Runs a command over SPDY with the given protocol: (stdout, stderr, error stream text).
async fn spdy_exec(
    k: &Kubelet,
    protocol: &str,
    command: &[&str],
    stdin: Option<&[u8]>,
) -> (String, String, String) {
    let mut query = String::from("output=1&error=1");
    if stdin.is_some() {
        query.push_str("&input=1");
    }
    for c in command {
        query.push_str(&format!(
            "&command={}",
            percent_encoding::utf8_percent_encode(c, percent_encoding::NON_ALPHANUMERIC)
        ));
    }
    let (status, headers, mut s) =
        spdy_upgrade(k, &format!("/exec/default/web-1/main?{query}"), &[protocol]).await;
    assert_eq!(status, 101);
    assert_eq!(headers["x-stream-protocol-version"], [protocol]);
    let error = s.open(&[("streamType", "error")]).await;
    let input = if stdin.is_some() {
        Some(s.open(&[("streamType", "stdin")]).await)
    } else {
        None
    };
    let out = s.open(&[("streamType", "stdout")]).await;
    let err = s.open(&[("streamType", "stderr")]).await;
    if let (Some(id), Some(bytes)) = (input, stdin) {
        s.until(|s| s.replies.contains(&id)).await;
        s.data(id, bytes, true).await;
    }
    s.until(|s| s.goaway).await;
    s.until(|_| false).await; // to EOF: the server half-closes after GOAWAY
    (s.text(out), s.text(err), s.text(error))
}

#[tokio::test]
async fn exec_over_spdy_v4_reports_output_and_exit_codes() {
    let k = kubelet().await;
    let (out, err, status) = spdy_exec(&k, "v4.channel.k8s.io", &["hostname"], None).await;
    assert_eq!(out, "web-1\n");
    assert_eq!(err, "");
    assert_eq!(status, r#"{"metadata":{},"status":"Success"}"#);

    let (out, _, status) = spdy_exec(
        &k,
        "v4.channel.k8s.io",
        &["sh", "-c", "echo $GREETING; exit 3"],
        None,
    )
    .await;
    assert_eq!(out, "hello\n");
    let status: Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // stdin, then its FIN: cat copies and ends.
    let (out, _, status) = spdy_exec(
        &k,
        "v4.channel.k8s.io",
        &["cat"],
        Some(b"line one\nline two\n"),
    )
    .await;
    assert_eq!(out, "line one\nline two\n");
    assert!(status.contains("Success"));

    // Files and a program that does not exist here.
    let (out, _, _) = spdy_exec(&k, "v4.channel.k8s.io", &["cat", "/etc/hostname"], None).await;
    assert_eq!(out, "web-1\n");
    let (_, err, status) = spdy_exec(&k, "v4.channel.k8s.io", &["bash"], None).await;
    assert!(err.contains("executable file not found"), "{err}");
    assert!(status.contains(r#""message":"126""#), "{status}");
    k.shutdown.cancel();
}

#[tokio::test]
async fn exec_over_older_spdy_protocols_reports_text_errors() {
    let k = kubelet().await;
    for protocol in ["v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"] {
        let (out, _, status) = spdy_exec(&k, protocol, &["echo", "x"], None).await;
        assert_eq!(out, "x\n", "{protocol}");
        assert_eq!(status, "", "{protocol}: success writes nothing before v4");
        let (_, _, status) = spdy_exec(&k, protocol, &["false"], None).await;
        assert!(
            status.contains("non-zero exit code"),
            "{protocol}: {status}"
        );
    }
    k.shutdown.cancel();
}

#[tokio::test]
async fn exec_with_a_tty_echoes_and_resizes() {
    let k = kubelet().await;
    let (status, _, mut s) = spdy_upgrade(
        &k,
        "/exec/default/web-1/main?command=sh&input=1&output=1&tty=1",
        &["v4.channel.k8s.io"],
    )
    .await;
    assert_eq!(status, 101);
    let error = s.open(&[("streamType", "error")]).await;
    let stdin = s.open(&[("streamType", "stdin")]).await;
    let stdout = s.open(&[("streamType", "stdout")]).await;
    let resize = s.open(&[("streamType", "resize")]).await;
    s.until(|s| s.replies.len() == 4).await;
    s.data(resize, br#"{"Width":120,"Height":40}"#, false).await;
    s.until(|s| s.text(stdout).contains("web-1:/# ")).await;
    s.data(stdin, b"stty size\r", false).await;
    s.until(|s| s.text(stdout).contains("40 120")).await;
    s.data(stdin, b"exit 4\r", false).await;
    s.until(|s| s.goaway).await;
    s.until(|_| false).await;
    let out = s.text(stdout);
    assert!(
        out.contains("stty size\r\n40 120\r\n"),
        "typed text echoed, CR LF line ends: {out:?}"
    );
    assert!(s.text(error).contains(r#""message":"4""#));
}

async fn websocket(
    k: &Kubelet,
    path: &str,
    protocols: &str,
) -> tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>> {
    let conn = k.connect().await;
    let mut request = format!("wss://127.0.0.1{path}")
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().expect("header"));
    let (ws, response) = tokio_tungstenite::client_async(request, conn)
        .await
        .expect("websocket upgrade");
    assert_eq!(response.status(), 101);
    ws
}

/// Reads binary channel messages until the server closes: channel → bytes.
async fn ws_collect(
    ws: &mut tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>,
) -> (BTreeMap<u8, Vec<u8>>, Vec<u8>) {
    let mut channels: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    let mut order = Vec::new();
    while let Some(Ok(message)) = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("messages in time")
    {
        match message {
            Message::Binary(data) if !data.is_empty() => {
                order.push(data[0]);
                channels
                    .entry(data[0])
                    .or_default()
                    .extend_from_slice(&data[1..]);
            }
            Message::Close(frame) => {
                assert_eq!(
                    frame.map(|f| u16::from(f.code)),
                    Some(1000),
                    "a normal closure"
                );
                break;
            }
            _ => {}
        }
    }
    (channels, order)
}

#[tokio::test]
async fn exec_over_websocket_v5_with_the_close_signal() {
    let k = kubelet().await;
    let mut ws = websocket(
        &k,
        "/exec/default/web-1/main?command=echo&command=hi&output=1&error=1",
        "v5.channel.k8s.io",
    )
    .await;
    let (channels, order) = ws_collect(&mut ws).await;
    assert_eq!(
        order.first(),
        Some(&1),
        "the first message is the empty 'ready' on stdout"
    );
    assert_eq!(channels[&1], b"hi\n");
    assert_eq!(channels[&3], br#"{"metadata":{},"status":"Success"}"#);

    // stdin, then the v5 CLOSE signal for channel 0: cat sees EOF and the command ends.
    let mut ws = websocket(
        &k,
        "/exec/default/web-1/main?command=cat&input=1&output=1&error=1",
        "v5.channel.k8s.io",
    )
    .await;
    ws.send(Message::Binary(Bytes::from_static(b"\x00ping\n")))
        .await
        .expect("send");
    ws.send(Message::Binary(Bytes::from_static(&[255, 0])))
        .await
        .expect("close signal");
    let (channels, _) = ws_collect(&mut ws).await;
    assert_eq!(channels[&1], b"ping\n");
    assert!(String::from_utf8_lossy(&channels[&3]).contains("Success"));
    k.shutdown.cancel();
}

#[tokio::test]
async fn exec_over_websocket_v4_and_base64() {
    let k = kubelet().await;
    let mut ws = websocket(
        &k,
        "/exec/default/web-1/main?command=sh&command=-c&command=exit+7&output=1",
        "v4.channel.k8s.io",
    )
    .await;
    let (channels, _) = ws_collect(&mut ws).await;
    let status: Value = serde_json::from_slice(&channels[&3]).expect("json");
    assert_eq!(status["details"]["causes"][0]["message"], "7");

    let mut ws = websocket(
        &k,
        "/exec/default/web-1/main?command=hostname&output=1",
        "base64.channel.k8s.io",
    )
    .await;
    let mut texts = Vec::new();
    while let Some(Ok(message)) = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("in time")
    {
        match message {
            Message::Text(t) => texts.push(t.to_string()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(texts[0], "1", "ready: channel '1', no payload");
    assert!(
        texts.contains(&"1d2ViLTEK".to_owned()),
        "base64 of 'web-1\\n' on channel 1: {texts:?}"
    );
    k.shutdown.cancel();
}

#[tokio::test]
async fn attach_follows_the_container_output_and_reads_stdin() {
    let k = kubelet().await;
    let mut ws = websocket(
        &k,
        "/attach/default/web-1/main?input=1&output=1",
        "v5.channel.k8s.io",
    )
    .await;
    // The ready message, then a line the workload writes after the attach.
    let ready = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("ready")
        .expect("open")
        .expect("message");
    assert_eq!(ready, Message::Binary(Bytes::from_static(&[1])));
    k.log.push("GET /hostname 200");
    ws.send(Message::Binary(Bytes::from_static(b"\x00typed\n")))
        .await
        .expect("stdin");
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains("stdin: typed\n") {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("output in time")
        {
            Some(Ok(Message::Binary(data))) if data.first() == Some(&1) => {
                out.extend_from_slice(&data[1..])
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("GET /hostname 200\n"), "{text}");
    assert!(
        k.log.tail(None).iter().any(|l| l.text == "stdin: typed"),
        "stdin lands in the container log"
    );
    k.shutdown.cancel();
}

async fn spdy_forward_pair(
    s: &mut Spdy<impl AsyncRead + AsyncWrite + Unpin>,
    port: u16,
    request: &str,
) -> (u32, u32) {
    let port = port.to_string();
    let error = s
        .open(&[
            ("streamType", "error"),
            ("port", &port),
            ("requestID", request),
        ])
        .await;
    let data = s
        .open(&[
            ("streamType", "data"),
            ("port", &port),
            ("requestID", request),
        ])
        .await;
    (error, data)
}

#[tokio::test]
async fn port_forward_over_spdy_relays_with_half_close() {
    let k = kubelet().await;
    let (status, headers, mut s) =
        spdy_upgrade(&k, "/portForward/default/web-1", &["portforward.k8s.io"]).await;
    assert_eq!(status, 101);
    assert_eq!(headers["x-stream-protocol-version"], ["portforward.k8s.io"]);
    let (error, data) = spdy_forward_pair(&mut s, k.echo_port, "0").await;
    s.until(|s| s.replies.contains(&data)).await;
    s.data(data, b"ping", false).await;
    s.until(|s| s.text(data) == "ping").await;
    // Our FIN half-closes the pod connection; the echo server closes, we get its FIN.
    s.data(data, b"", true).await;
    s.until(|s| s.fin.contains_key(&data) && s.fin.contains_key(&error))
        .await;
    assert_eq!(s.text(error), "");

    // A second pair on the same session, to a port nothing listens on: the error stream says so.
    let closed = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let dead = closed.local_addr().expect("addr").port();
    drop(closed);
    let (error, _) = spdy_forward_pair(&mut s, dead, "1").await;
    s.until(|s| s.fin.contains_key(&error)).await;
    let message = s.text(error);
    assert!(
        message.starts_with(&format!("error forwarding port {dead} to pod web-1, uid ")),
        "{message}"
    );
    k.shutdown.cancel();
}

#[tokio::test]
async fn port_forward_tunnelled_spdy_over_websocket() {
    let k = kubelet().await;
    let ws = websocket(
        &k,
        "/portForward/default/web-1",
        "SPDY/3.1+portforward.k8s.io",
    )
    .await;
    // The SPDY session rides in binary messages: adapt the WebSocket to a byte stream.
    let (mut sink, mut stream) = ws.split();
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if sink
                .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Binary(data) = message
                && server_write.write_all(&data).await.is_err()
            {
                break;
            }
        }
    });
    let mut s = Spdy::new(client, BytesMut::new());
    let (_, data) = spdy_forward_pair(&mut s, k.echo_port, "0").await;
    s.until(|s| s.replies.contains(&data)).await;
    s.data(data, b"through the tunnel", true).await;
    s.until(|s| s.fin.contains_key(&data)).await;
    assert_eq!(s.text(data), "through the tunnel");
    k.shutdown.cancel();
}

#[tokio::test]
async fn port_forward_over_websocket_channels() {
    let k = kubelet().await;
    let mut ws = websocket(
        &k,
        &format!("/portForward/default/web-1?port={}", k.echo_port),
        "v4.channel.k8s.io",
    )
    .await;
    let port = k.echo_port.to_le_bytes();
    let mut seen = BTreeMap::new();
    while seen.len() < 2 {
        let Some(Ok(Message::Binary(data))) = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")
        else {
            panic!("expected the port prefixes");
        };
        seen.insert(data[0], data[1..].to_vec());
    }
    assert_eq!(
        seen[&0], port,
        "data channel starts with the port, little-endian"
    );
    assert_eq!(seen[&1], port, "error channel too");
    ws.send(Message::Binary(Bytes::from_static(b"\x00hello")))
        .await
        .expect("send");
    let mut echoed = Vec::new();
    while echoed != b"hello" {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Binary(data))) if data[0] == 0 => echoed.extend_from_slice(&data[1..]),
            Some(Ok(_)) => {}
            other => panic!("ended: {other:?}"),
        }
    }
    k.shutdown.cancel();
}

/// (method, path, headers, expected status, expected text in the body)
type BadCase<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test]
async fn bad_requests_get_the_kubelets_errors() {
    let k = kubelet().await;
    let spdy = [
        ("Connection", "Upgrade"),
        ("Upgrade", "SPDY/3.1"),
        ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
    ];
    let cases: Vec<BadCase<'_>> = vec![
        (
            "POST",
            "/exec/default/nope/main?command=ls&output=1",
            spdy.to_vec(),
            404,
            "pod does not exist",
        ),
        (
            "POST",
            "/exec/default/web-1/other?command=ls&output=1",
            spdy.to_vec(),
            404,
            "container not found (\"other\")",
        ),
        (
            "POST",
            "/exec/default/web-1/wrong-uid/main?command=ls&output=1",
            spdy.to_vec(),
            404,
            "pod not found",
        ),
        (
            "POST",
            "/exec/default/web-1/main?output=1",
            spdy.to_vec(),
            400,
            "command is required",
        ),
        (
            "POST",
            "/exec/default/web-1/main?command=ls",
            spdy.to_vec(),
            400,
            "at least 1 of stdin, stdout, stderr",
        ),
        (
            "POST",
            "/exec/default/web-1/main?command=ls&output=1",
            vec![],
            400,
            "missing upgrade headers",
        ),
        (
            "POST",
            "/exec/default/web-1/main?command=ls&output=1",
            vec![
                ("Connection", "Upgrade"),
                ("Upgrade", "SPDY/3.1"),
                ("X-Stream-Protocol-Version", "v9.channel.k8s.io"),
            ],
            403,
            "unable to negotiate protocol",
        ),
        (
            "GET",
            "/exec/default/web-1/main?command=ls&output=1",
            vec![
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Protocol", "v9.channel.k8s.io"),
            ],
            403,
            "not supported",
        ),
        (
            "POST",
            "/portForward/default/web-1",
            vec![
                ("Connection", "Upgrade"),
                ("Upgrade", "SPDY/3.1"),
                ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
            ],
            403,
            "unable to negotiate",
        ),
        (
            "GET",
            "/portForward/default/web-1?port=http",
            vec![
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Protocol", "v4.channel.k8s.io"),
            ],
            400,
            "as a port",
        ),
        (
            "GET",
            "/portForward/default/nope",
            spdy.to_vec(),
            404,
            "pod does not exist",
        ),
    ];
    for (method, path, mut headers, want, message) in cases {
        headers.push(("Connection", "close"));
        let (status, response_headers, mut conn, mut rest) =
            k.request(method, path, &headers).await;
        let _ = tokio::time::timeout(WAIT, async {
            let mut tail = Vec::new();
            let _ = conn.read_to_end(&mut tail).await;
            rest.extend_from_slice(&tail);
        })
        .await;
        let body = String::from_utf8_lossy(&rest).into_owned();
        assert_eq!(status, want, "{method} {path}: {body}");
        assert!(
            body.contains(message),
            "{method} {path}: {body:?} lacks {message:?}"
        );
        if status == 403 && path.starts_with("/portForward") {
            assert_eq!(
                response_headers["x-accepted-stream-protocol-versions"],
                ["portforward.k8s.io"]
            );
        }
    }
    k.shutdown.cancel();
}

#[tokio::test]
async fn garbage_after_an_upgrade_ends_that_session_only() {
    let k = kubelet().await;
    // A SYN_STREAM whose header block is not zlib; a SPDY/2 PING; a data frame on stream 0; and
    // bytes that parse as a control frame of version 0x7fff.
    for garbage in [
        &b"\x80\x03\x00\x01\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xde\xad"[..],
        b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01",
        b"\x00\x00\x00\x00\x00\x00\x00\x01x",
        &[0xff; 64],
    ] {
        let (status, _, mut s) = spdy_upgrade(
            &k,
            "/exec/default/web-1/main?command=sleep&command=60&output=1",
            &["v4.channel.k8s.io"],
        )
        .await;
        assert_eq!(status, 101);
        s.io.write_all(garbage).await.expect("write");
        // The session answers GOAWAY (protocol error) and closes; nothing hangs.
        let mut saw_goaway = false;
        loop {
            let mut chunk = vec![0u8; 4096];
            match tokio::time::timeout(WAIT, s.io.read(&mut chunk))
                .await
                .expect("closed in time")
            {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    s.buf.extend_from_slice(&chunk[..n]);
                    while let Ok(Some(frame)) = s.codec.decode(&mut s.buf) {
                        saw_goaway |= matches!(frame, Frame::GoAway { status: 1, .. });
                    }
                }
            }
        }
        assert!(saw_goaway, "a protocol error is answered with GOAWAY");
    }
    // The kubelet still serves.
    let (out, _, _) = spdy_exec(&k, "v4.channel.k8s.io", &["hostname"], None).await;
    assert_eq!(out, "web-1\n");
    k.shutdown.cancel();
}

#[tokio::test]
async fn container_logs_query_parameters() {
    let k = kubelet().await;
    for i in 0..5 {
        k.log.push(format!("line {i}"));
    }
    let (status, body) = k.get("/containerLogs/default/web-1/main?tailLines=2").await;
    assert_eq!((status, body.as_str()), (200, "line 3\nline 4\n"));
    let (_, body) = k.get("/containerLogs/default/web-1/main?tail=1").await;
    assert_eq!(body, "line 4\n");
    let (_, body) = k
        .get("/containerLogs/default/web-1/main?limitBytes=9")
        .await;
    assert_eq!(body, "started\nl");
    let (_, body) = k
        .get("/containerLogs/default/web-1/main?sinceTime=2099-01-01T00:00:00Z")
        .await;
    assert_eq!(body, "");
    let (_, body) = k
        .get("/containerLogs/default/web-1/main?sinceSeconds=3600&tailLines=1&timestamps=true")
        .await;
    let (stamp, text) = body.split_once(' ').expect("timestamp");
    assert!(stamp.parse::<jiff::Timestamp>().is_ok());
    assert_eq!(text, "line 4\n");
    for (query, status, message) in [
        (
            "previous=true",
            400,
            "previous terminated container \"main\" in pod \"web-1\" not found",
        ),
        ("tailLines=-1", 422, "tailLines"),
        (
            "sinceSeconds=1&sinceTime=2026-01-01T00:00:00Z",
            422,
            "at most one of sinceTime or sinceSeconds",
        ),
        ("tailLines=many", 400, "Unable to decode query"),
    ] {
        let (got, body) = k
            .get(&format!("/containerLogs/default/web-1/main?{query}"))
            .await;
        assert_eq!(got, status, "{query}: {body}");
        assert!(body.contains(message), "{query}: {body}");
    }
    let (status, body) = k.get("/containerLogs/default/nope/main").await;
    assert_eq!((status, body.trim()), (404, "pod \"nope\" does not exist"));
    let (status, body) = k.get("/containerLogs/default/web-1/other").await;
    assert_eq!(
        (status, body.trim()),
        (404, "container \"other\" not found in pod \"web-1\"")
    );
    k.shutdown.cancel();
}
