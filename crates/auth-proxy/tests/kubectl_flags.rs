//! `kubectl proxy` and `auth-proxy`, flag by flag, side by side.
//!
//! For each flag `kubectl proxy --help` lists, and each global option `kubectl options` lists (those
//! that change the connection with their effect checked, the others for being accepted or refused
//! alike), both binaries run with the same command line against the same fake apiservers, one after
//! the other, and the test compares what can be seen from outside:
//!
//! - accepted (prints `Starting to serve on ADDR`) or refused (exits non-zero: kubectl with 1, or 255
//!   for a bad regex; auth-proxy always with 2 and one line), or exited 0 (`--help`);
//! - where it listens (the address printed; a random port counts as the same port);
//! - for each probe request: the status, the body where it matters, and what reached an apiserver:
//!   which one (the HTTPS one or the plain HTTP one), the method and path, `Authorization`,
//!   `Impersonate-User`/`-Group`/`-Uid` and the CN of the client certificate presented.
//!
//! A few differences are deliberate (`docs/auth-proxy.md` explains each): those cases name the
//! difference and the test checks that it is exactly that one. Upstream failures compare as one
//! status: kubectl answers them 500, auth-proxy 502 (on purpose, see the docs).
//!
//! Which kubectl: `/usr/bin/kubectl` on the development machine is the Google Cloud SDK's
//! dispatcher, which asks the server for its version and then runs `kubectl.1.<minor>` from its own
//! directory (1.27–1.33). The test runs the newest `kubectl.1.N` found next to the `kubectl` on PATH,
//! else `kubectl` itself, so that the apiserver sees no extra `/version` request and the flags are
//! the newest kubectl's. Skipped without kubectl (failing when `CI` is set).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use proxylab_test_support::fake_apiserver::{
    FakeApiserver, FakeApiserverOptions, Seen, start_apiserver_with,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const AUTH_PROXY: &str = env!("CARGO_BIN_EXE_auth-proxy");

/// The newest `kubectl.1.N` beside the `kubectl` on PATH, else that `kubectl`.
fn find_kubectl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let kubectl = std::env::split_paths(&path)
        .map(|p| p.join("kubectl"))
        .find(|p| p.is_file())?;
    let real = std::fs::canonicalize(&kubectl).unwrap_or(kubectl.clone());
    let newest = real.parent().and_then(|dir| {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let minor: u32 = name.strip_prefix("kubectl.1.")?.parse().ok()?;
                Some((minor, e.path()))
            })
            .max_by_key(|(minor, _)| *minor)
            .map(|(_, p)| p)
    });
    Some(newest.unwrap_or(real))
}

/// The two apiservers, the files the flags name, and an empty HOME.
struct World {
    dir: tempfile::TempDir,
    tls: FakeApiserver,
    plain: FakeApiserver,
}

impl World {
    async fn new() -> Self {
        let client_ca = proxylab_core::tls::pki::generate_ca("client-ca").unwrap();
        let client = proxylab_core::tls::pki::CaSigner::new(&client_ca)
            .unwrap()
            .client("flag-user", &["flag-group"])
            .unwrap();
        let tls = start_apiserver_with(FakeApiserverOptions {
            names: vec!["localhost".into(), "apiserver.test".into()],
            client_ca_pem: Some(client_ca.cert_pem.clone()),
            ..FakeApiserverOptions::default()
        })
        .await;
        let plain = start_apiserver_with(FakeApiserverOptions {
            plain_http: true,
            ..FakeApiserverOptions::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("home")).unwrap();
        std::fs::create_dir(d.join("www")).unwrap();
        std::fs::write(d.join("www/index.html"), "<h1>static</h1>\n").unwrap();
        std::fs::write(d.join("www/page.txt"), "a page\n").unwrap();
        std::fs::write(d.join("ca.crt"), &tls.ca_pem).unwrap();
        std::fs::write(d.join("client-ca.crt"), &client_ca.cert_pem).unwrap();
        std::fs::write(d.join("client.crt"), &client.cert_pem).unwrap();
        std::fs::write(d.join("client.key"), &client.key_pem).unwrap();
        use base64::Engine;
        let ca_data = base64::engine::general_purpose::STANDARD.encode(&tls.ca_pem);
        let (https, http) = (
            format!("https://{}", tls.addr),
            format!("http://{}", plain.addr),
        );
        std::fs::write(
            d.join("kubeconfig"),
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
                 clusters:\n\
                 - name: test\n  cluster:\n    server: {https}\n    certificate-authority-data: {ca_data}\n\
                 - name: gw\n  cluster:\n    server: {https}/k8s/clusters/c1\n    certificate-authority-data: {ca_data}\n\
                 - name: plain\n  cluster:\n    server: {http}\n\
                 contexts:\n\
                 - name: test\n  context:\n    cluster: test\n    user: tester\n\
                 - name: other\n  context:\n    cluster: test\n    user: other\n\
                 - name: gw\n  context:\n    cluster: gw\n    user: tester\n\
                 - name: broken\n  context:\n    cluster: nowhere\n    user: tester\n\
                 users:\n\
                 - name: tester\n  user:\n    token: kubeconfig-token\n\
                 - name: other\n  user:\n    token: other-token\n\
                 - name: nocreds\n  user: {{}}\n"
            ),
        )
        .unwrap();
        Self { dir, tls, plain }
    }

    /// `{kc}`, `{tls}`, … in a case's arguments, made concrete for one run.
    fn expand(&self, arg: &str, case: usize, port: u16) -> String {
        let d = self.dir.path().display();
        arg.replace("{kc}", &format!("{d}/kubeconfig"))
            .replace("{tls}", &format!("https://{}", self.tls.addr))
            .replace("{plain}", &format!("http://{}", self.plain.addr))
            .replace("{ca}", &format!("{d}/ca.crt"))
            .replace("{client-ca}", &format!("{d}/client-ca.crt"))
            .replace("{cert}", &format!("{d}/client.crt"))
            .replace("{key}", &format!("{d}/client.key"))
            .replace("{www}", &format!("{d}/www"))
            .replace("{dir}", &d.to_string())
            .replace("{sock}", &format!("{d}/proxy-{case}.sock"))
            .replace("{port}", &port.to_string())
    }
}

/// A request made to each running proxy.
#[derive(Clone, Copy)]
struct Probe {
    method: &'static str,
    path: &'static str,
    host: &'static str,
    /// Compare the body too (static files, the filter's `Forbidden`).
    body: bool,
}

const VERSION: Probe = Probe {
    method: "GET",
    path: "/version",
    host: "localhost",
    body: false,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Serves,
    Refused,
}

struct Case {
    name: &'static str,
    args: Vec<&'static str>,
    probes: Vec<Probe>,
    /// A deliberate difference: what each does, and why (documented in docs/auth-proxy.md).
    differs: Option<(Kind, Kind, &'static str)>,
}

/// The kubeconfig of the world and a random port, then `args`.
fn case(name: &'static str, args: &[&'static str]) -> Case {
    let mut all = vec!["--kubeconfig", "{kc}", "-p", "0"];
    all.extend_from_slice(args);
    bare(name, &all)
}

/// Exactly `args` (no kubeconfig, no port unless given).
fn bare(name: &'static str, args: &[&'static str]) -> Case {
    Case {
        name,
        args: args.to_vec(),
        probes: vec![VERSION],
        differs: None,
    }
}

impl Case {
    fn probes(mut self, probes: &[Probe]) -> Self {
        self.probes = probes.to_vec();
        self
    }
    fn differs(mut self, kubectl: Kind, auth_proxy: Kind, why: &'static str) -> Self {
        self.differs = Some((kubectl, auth_proxy, why));
        self
    }
}

fn get(path: &'static str) -> Probe {
    Probe { path, ..VERSION }
}

fn cases() -> Vec<Case> {
    let evil = Probe {
        host: "evil.example",
        ..VERSION
    };
    let with_body = |p: Probe| Probe { body: true, ..p };
    vec![
        // ---- kubectl proxy --help ------------------------------------------------------------
        case("-p 0", &[]),
        bare("--port fixed", &["--kubeconfig", "{kc}", "--port={port}"]),
        bare("-p0 attached", &["--kubeconfig", "{kc}", "-p0"]),
        bare(
            "--port=0x0 (Go integer)",
            &["--kubeconfig", "{kc}", "--port=0x0"],
        ),
        bare("-p 70000", &["--kubeconfig", "{kc}", "-p", "70000"]),
        bare("-p -1", &["--kubeconfig", "{kc}", "-p", "-1"]),
        bare("--port= (empty)", &["--kubeconfig", "{kc}", "--port="]),
        case("--address 127.0.0.1", &["--address", "127.0.0.1"]),
        case(
            "--address=0.0.0.0",
            &["--address=0.0.0.0", "--accept-hosts=.*"],
        ),
        case("--accept-hosts", &["--accept-hosts=^nothing$"]).probes(&[with_body(VERSION)]),
        case("--accept_hosts (underscore)", &["--accept_hosts=^nothing$"]),
        case(
            "--accept-hosts widened",
            &["--accept-hosts=^evil\\.example$"],
        )
        .probes(&[evil]),
        case("--accept-paths", &["--accept-paths=^/api"]).probes(&[VERSION, get("/api")]),
        case("--reject-paths", &["--reject-paths=^/version"]).probes(&[VERSION, get("/api")]),
        case("--reject-paths bad regex", &["--reject-paths=("]),
        case("--reject-methods", &["--reject-methods=POST"]).probes(&[
            VERSION,
            Probe {
                method: "POST",
                ..VERSION
            },
        ]),
        case("--api-prefix /k8s/", &["--api-prefix=/k8s/"]).probes(&[get("/k8s/version"), VERSION]),
        case("--api-prefix /k8s", &["--api-prefix", "/k8s"]).probes(&[get("/k8s/version")]),
        case(
            "--www --www-prefix",
            &["--www={www}", "--www-prefix=/files/"],
        )
        .probes(&[
            with_body(get("/files/")),
            with_body(get("/files/page.txt")),
            get("/files/missing"),
            VERSION,
        ]),
        case("-w -P", &["-w", "{www}", "-P", "/files/"])
            .probes(&[with_body(get("/files/page.txt"))]),
        case("--www missing directory", &["--www=/nonexistent/www"]),
        bare(
            "--unix-socket",
            &["--kubeconfig", "{kc}", "--unix-socket", "{sock}"],
        ),
        bare("-u", &["--kubeconfig", "{kc}", "-u", "{sock}"]),
        case("--unix-socket with --port", &["-u", "{sock}"]),
        case("--disable-filter", &["--disable-filter"]).probes(&[evil]),
        case("--disable-filter=true", &["--disable-filter=true"]).probes(&[evil]),
        case("--disable-filter=false", &["--disable-filter=false"]).probes(&[evil]),
        case("--disable-filter=F", &["--disable-filter=F"]).probes(&[evil]),
        case(
            "--disable-filter false (apart)",
            &["--disable-filter", "false"],
        )
        .probes(&[evil]),
        case("--disable-filter=yes", &["--disable-filter=yes"]),
        case("--keepalive 30s", &["--keepalive", "30s"]),
        case("--keepalive=15m0s", &["--keepalive=15m0s"]),
        case("--keepalive=-1s", &["--keepalive=-1s"]),
        case("--keepalive=30 (no unit)", &["--keepalive=30"]),
        case(
            "--append-server-path",
            &["--context", "gw", "--append-server-path"],
        ),
        case(
            "--append-server-path=false",
            &["--context", "gw", "--append-server-path=false"],
        ),
        // ---- kubectl options: where the cluster and the user come from ----------------------
        bare(
            "--kubeconfig missing",
            &["--kubeconfig", "/nonexistent/kc", "-p", "0"],
        ),
        bare(
            "--server --token, no kubeconfig",
            &[
                "-p",
                "0",
                "--server",
                "{tls}",
                "--token",
                "flag-token",
                "--certificate-authority",
                "{ca}",
            ],
        ),
        bare(
            "-s, no kubeconfig",
            &[
                "-p",
                "0",
                "-s",
                "{tls}",
                "--token=flag-token",
                "--certificate-authority={ca}",
            ],
        ),
        bare(
            "-s http:// with --token and --as, no kubeconfig",
            &["-p", "0", "-s", "{plain}", "--token", "t", "--as", "bob"],
        ),
        case("--server over the kubeconfig's", &["--server", "{plain}"]),
        case("--token over the kubeconfig's", &["--token", "flag-token"]),
        case("--context", &["--context", "other"]),
        case("--context missing", &["--context", "nope"]),
        case("--cluster", &["--cluster", "plain"]),
        case("--cluster missing", &["--cluster", "nope"]),
        case("--user", &["--user", "other"]),
        case("--user missing", &["--user", "nope"]),
        case(
            "--context naming a missing cluster, with --server",
            &[
                "--context",
                "broken",
                "--server",
                "{tls}",
                "--certificate-authority",
                "{ca}",
            ],
        ),
        case(
            "--username --password for a user without credentials",
            &["--user", "nocreds", "--username", "u", "--password", "p"],
        ),
        case(
            "--username --password with a token",
            &["--username", "u", "--password", "p"],
        ),
        bare("no kubeconfig and no --server", &["-p", "0"])
            .probes(&[])
            .differs(
                Kind::Serves,
                Kind::Refused,
                "kubectl falls back to http://localhost:8080 (the insecure port, gone since 1.20); \
             auth-proxy says what is missing",
            ),
        case(
            "a context naming a missing cluster",
            &["--context", "broken"],
        )
        .probes(&[])
        .differs(
            Kind::Serves,
            Kind::Refused,
            "kubectl falls back to http://localhost:8080; auth-proxy names the context's field",
        ),
        case("a user without credentials", &["--user", "nocreds"]).differs(
            Kind::Refused,
            Kind::Serves,
            "kubectl prompts on stdin for a basic-auth username (EOF here); basic auth left the \
             apiserver in 1.19, auth-proxy sends the requests anonymous",
        ),
        // ---- kubectl options: impersonation -------------------------------------------------
        case(
            "--as --as-group --as-group --as-uid",
            &[
                "--as",
                "alice",
                "--as-group",
                "g1",
                "--as-group=g2",
                "--as-uid",
                "u-1",
            ],
        ),
        case("--as-group without --as", &["--as-group", "g1"]),
        case("--as-uid without --as", &["--as-uid", "u-1"]),
        // ---- kubectl options: TLS -----------------------------------------------------------
        case(
            "--certificate-authority",
            &["--certificate-authority", "{ca}"],
        ),
        case(
            "--certificate-authority missing file",
            &["--certificate-authority=/nonexistent/ca.crt"],
        ),
        case(
            "--certificate-authority of another CA",
            &["--certificate-authority", "{client-ca}"],
        ),
        case(
            "--insecure-skip-tls-verify",
            &["--insecure-skip-tls-verify"],
        ),
        case(
            "--insecure-skip-tls-verify=false",
            &["--insecure-skip-tls-verify=false"],
        ),
        case(
            "--insecure-skip-tls-verify with --certificate-authority",
            &[
                "--insecure-skip-tls-verify",
                "--certificate-authority",
                "{ca}",
            ],
        ),
        case(
            "--tls-server-name on the certificate",
            &["--tls-server-name", "apiserver.test"],
        ),
        case(
            "--tls-server-name not on it",
            &["--tls-server-name=wrong.test"],
        ),
        case(
            "--client-certificate --client-key",
            &["--client-certificate", "{cert}", "--client-key", "{key}"],
        ),
        case(
            "--client-certificate without a key",
            &["--client-certificate", "{cert}"],
        ),
        case(
            "--client-key missing file",
            &[
                "--client-certificate",
                "{cert}",
                "--client-key",
                "/nonexistent/client.key",
            ],
        ),
        // ---- kubectl options that change nothing a proxy does -------------------------------
        case("--request-timeout 30", &["--request-timeout", "30"]),
        case("--request-timeout=1m", &["--request-timeout=1m"]),
        case("--request-timeout=30x", &["--request-timeout=30x"]),
        case("-n", &["-n", "kube-system"]),
        case("--namespace=", &["--namespace=other"]),
        case("--cache-dir", &["--cache-dir", "{dir}/cache"]),
        case("--disable-compression", &["--disable-compression"]),
        case("--warnings-as-errors", &["--warnings-as-errors"]),
        case(
            "--warnings-as-errors=maybe",
            &["--warnings-as-errors=maybe"],
        ),
        case("-v=4", &["-v=4"]),
        case("--v 6", &["--v", "6"]),
        case("-v2 attached", &["-v2"]),
        case("-v without a level", &["-v"]),
        case("--v=x", &["--v=x"]),
        case("--vmodule", &["--vmodule=proxy*=4,filter=2"]),
        case("--vmodule bad", &["--vmodule=bad"]),
        case("--log-flush-frequency=1s", &["--log-flush-frequency=1s"]),
        case(
            "--log-flush-frequency=5 (no unit)",
            &["--log-flush-frequency=5"],
        ),
        case("--profile=none", &["--profile=none"]),
        case("--profile=bogus", &["--profile=bogus"]),
        case(
            "--profile=cpu",
            &["--profile=cpu", "--profile-output={dir}/cpu.pprof"],
        ),
        case("--match-server-version", &["--match-server-version"]).differs(
            Kind::Refused,
            Kind::Serves,
            "kubectl compares its own version with the apiserver's (v1.31.0 here) and exits; \
             auth-proxy has no Kubernetes client version, accepts the flag and warns",
        ),
        // ---- the command line itself --------------------------------------------------------
        case("an unknown flag", &["--bogus"]),
        case("a stray argument", &["stray"]),
        bare("--help", &["--help"]),
    ]
}

/// What one run showed, ready to compare.
#[derive(Debug, PartialEq)]
enum Observed {
    Serving { listen: String, probes: Vec<Answer> },
    Exited { success: bool },
}

impl Observed {
    fn kind(&self) -> Option<Kind> {
        match self {
            Observed::Serving { .. } => Some(Kind::Serves),
            Observed::Exited { success: false } => Some(Kind::Refused),
            Observed::Exited { success: true } => None,
        }
    }
}

#[derive(Debug, PartialEq)]
struct Answer {
    /// The status; 500, 502 and 504 (an upstream failure in kubectl's or auth-proxy's words) as 502.
    status: u16,
    body: Option<String>,
    /// What reached an apiserver, if anything.
    upstream: Option<Upstream>,
}

#[derive(Debug, PartialEq)]
struct Upstream {
    server: &'static str,
    method: String,
    path: String,
    authorization: Option<String>,
    impersonate_user: Option<String>,
    impersonate_groups: Vec<String>,
    impersonate_uid: Option<String>,
    client_cn: Option<String>,
}

/// One run's raw facts, for the report.
struct Run {
    observed: Observed,
    code: Option<i32>,
    stderr: String,
}

/// Runs `bin` (with `subcommand` first: `proxy` for kubectl) and probes it while it serves.
async fn run(
    world: &World,
    bin: &Path,
    subcommand: Option<&str>,
    args: &[String],
    probes: &[Probe],
    tag: &str,
) -> Run {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(subcommand)
        .args(args)
        .current_dir(world.dir.path())
        .env("HOME", world.dir.path().join("home"))
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for var in proxylab_test_support::PROXY_ENV_VARS {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn().expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s).await;
        s
    });
    let started = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = stdout.next_line().await {
            if let Some(addr) = line.strip_prefix("Starting to serve on ") {
                return Some(addr.trim().to_owned());
            }
        }
        None
    })
    .await
    .expect("neither served nor exited within 60 s");
    let Some(listen) = started else {
        let status = child.wait().await.unwrap();
        return Run {
            observed: Observed::Exited {
                success: status.success(),
            },
            code: status.code(),
            stderr: stderr_task.await.unwrap(),
        };
    };
    let mut answers = Vec::new();
    for (i, probe) in probes.iter().enumerate() {
        answers.push(send(world, &listen, probe, &format!("{tag}-{i}")).await);
    }
    let _ = child.kill().await;
    let stderr = stderr_task.await.unwrap();
    Run {
        observed: Observed::Serving {
            listen: normalize_listen(&listen, args),
            probes: answers,
        },
        code: None,
        stderr,
    }
}

/// A random port is any port; Go's dual-stack `[::]` for `0.0.0.0` is `0.0.0.0`.
fn normalize_listen(listen: &str, args: &[String]) -> String {
    if listen.starts_with('/') {
        return "unix socket".into();
    }
    let listen = listen.replace("[::]", "0.0.0.0");
    let random = !args
        .iter()
        .any(|a| a.starts_with("--port=") && a != "--port=0x0" && a != "--port=0");
    match listen.rsplit_once(':') {
        Some((host, _)) if random => format!("{host}:PORT"),
        _ => listen,
    }
}

async fn send(world: &World, listen: &str, probe: &Probe, tag: &str) -> Answer {
    let req = Request::builder()
        .method(probe.method)
        .uri(probe.path)
        .header("host", probe.host)
        .header("x-probe", tag)
        .header("connection", "close")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let exchange = async {
        if listen.starts_with('/') {
            let io = tokio::net::UnixStream::connect(listen).await.unwrap();
            exchange(io, req).await
        } else {
            let port = listen.rsplit_once(':').unwrap().1;
            let io = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .unwrap();
            exchange(io, req).await
        }
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("probe answered within 30 s");
    let status = match status {
        500 | 502 | 504 => 502,
        s => s,
    };
    let find = |api: &FakeApiserver, name: &'static str| {
        api.seen()
            .into_iter()
            .find(|s| s.headers.get("x-probe").is_some_and(|v| v == tag))
            .map(|s| upstream(name, &s))
    };
    Answer {
        status,
        body: probe
            .body
            .then(|| String::from_utf8_lossy(&body).into_owned()),
        upstream: find(&world.tls, "https").or_else(|| find(&world.plain, "http")),
    }
}

async fn exchange<IO>(io: IO, req: Request<Empty<Bytes>>) -> (u16, Bytes)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

fn upstream(server: &'static str, s: &Seen) -> Upstream {
    let header = |name: &str| {
        s.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    Upstream {
        server,
        method: s.method.clone(),
        path: s.path_and_query.clone(),
        authorization: header("authorization"),
        impersonate_user: header("impersonate-user"),
        impersonate_groups: s
            .headers
            .get_all("impersonate-group")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect(),
        impersonate_uid: header("impersonate-uid"),
        client_cn: s
            .client_cert
            .as_ref()
            .and_then(proxylab_core::tls::common_name),
    }
}

/// Reserves a free port for a case that names one (released at once; both runs then bind it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flag_behaves_as_in_kubectl() {
    if !proxylab_test_support::require_tool("kubectl") {
        return;
    }
    let kubectl = find_kubectl().expect("kubectl on PATH");
    eprintln!("comparing with {}", kubectl.display());
    let world = Arc::new(World::new().await);
    // Two cases at a time: each starts two processes in turn, and the machine may be busy.
    let slots = Arc::new(tokio::sync::Semaphore::new(2));
    let mut tasks = Vec::new();
    for (i, c) in cases().into_iter().enumerate() {
        let (world, slots, kubectl) = (world.clone(), slots.clone(), kubectl.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            let port = free_port();
            let args: Vec<String> = c.args.iter().map(|a| world.expand(a, i, port)).collect();
            let k = run(
                &world,
                &kubectl,
                Some("proxy"),
                &args,
                &c.probes,
                &format!("{i}-kubectl"),
            )
            .await;
            let a = run(
                &world,
                Path::new(AUTH_PROXY),
                None,
                &args,
                &c.probes,
                &format!("{i}-ours"),
            )
            .await;
            (c, args, k, a)
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        let (c, args, k, a) = t.await.unwrap();
        let first_line = |r: &Run| {
            r.stderr
                .lines()
                .find(|l| !l.trim().is_empty() && !l.starts_with('W'))
                .unwrap_or("")
                .to_owned()
        };
        let summary = |r: &Run| match &r.observed {
            Observed::Serving { listen, probes } => format!(
                "serves on {listen}: {}",
                probes
                    .iter()
                    .map(|p| format!(
                        "{}{}",
                        p.status,
                        if p.upstream.is_some() {
                            "+upstream"
                        } else {
                            ""
                        }
                    ))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Observed::Exited { .. } => format!("exit {:?}: {}", r.code, first_line(r)),
        };
        eprintln!(
            "{:<55} kubectl: {}\n{:<55} ours:    {}",
            c.name,
            summary(&k),
            "",
            summary(&a)
        );
        // auth-proxy's refusals are one line and exit 2, whatever kubectl's exit code.
        if a.observed == (Observed::Exited { success: false }) {
            let lines: Vec<_> = a
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("W "))
                .collect();
            if a.code != Some(2) || lines.len() != 1 {
                failures.push(format!(
                    "{}: auth-proxy refused with exit {:?} and {} lines: {}",
                    c.name,
                    a.code,
                    lines.len(),
                    a.stderr
                ));
            }
        }
        match c.differs {
            None if k.observed == a.observed => {}
            None => failures.push(format!(
                "{} ({args:?}):\n  kubectl:    {:?}\n  auth-proxy: {:?}\n  kubectl stderr: {}\n  auth-proxy stderr: {}",
                c.name,
                k.observed,
                a.observed,
                first_line(&k),
                first_line(&a)
            )),
            Some((want_k, want_a, why)) => {
                if k.observed.kind() != Some(want_k) || a.observed.kind() != Some(want_a) {
                    failures.push(format!(
                        "{}: the documented difference ({why}) is gone or changed: kubectl {:?}, auth-proxy {:?}",
                        c.name, k.observed, a.observed
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
