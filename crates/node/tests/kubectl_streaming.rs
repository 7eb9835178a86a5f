//! The real `kubectl` (every version the installed dispatcher runs, 1.27–1.33) against this
//! kubelet: `exec` (exit codes, stdin), `logs`, `attach` and `port-forward`.
//!
//! Until the bastion (the lab apiserver's proxy) exists, a small stand-in apiserver answers what
//! these commands ask first (`/version`, which picks the kubectl version; discovery; the pod) and
//! relays the subresource requests to the kubelet as kube-apiserver does — path rewritten
//! (`pods/web-1/exec?container=main&…` → `/exec/default/web-1/main?…`), the kubelet client
//! certificate presented, the upgrade passed through byte for byte. Each upgrade it relays is
//! recorded, so the test also documents what each kubectl version negotiates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proxylab_node::certs::{self, CertificateAuthority};
use proxylab_node::kubelet_api::RunningContainer;
use proxylab_node::shell::ShellContext;
use proxylab_node::shell::dns::ClusterDns;
use proxylab_node::shell::fetch::FetchContext;
use proxylab_node::shell::files;
use proxylab_node::workload::PodIdentity;
use proxylab_node::workload::logs::ContainerLog;
use proxylab_node::{Node, NodeConfig};
use rustls_pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One relayed upgrade: (path, Upgrade, X-Stream-Protocol-Version…, Sec-WebSocket-Protocol).
type Seen = Arc<Mutex<Vec<String>>>;

struct Lab {
    log: ContainerLog,
    echo_port: u16,
    seen: Seen,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    /// Extra environment for kubectl (the protocol feature switches).
    env: Vec<(&'static str, &'static str)>,
}

async fn lab(minor: u32) -> Lab {
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
    let pod = pod_json();
    let pod_obj: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod.clone()).expect("pod");
    let container = pod_obj.spec.as_ref().expect("spec").containers[0].clone();
    bound.pods().upsert(pod_obj.clone());
    let log = ContainerLog::new(100);
    log.push("GET /hostname 200");
    let shell = ShellContext {
        pod: Arc::new(PodIdentity {
            name: "web-1".into(),
            namespace: "default".into(),
            node: "node-1".into(),
            ip: LOCALHOST,
        }),
        container: "main".into(),
        hostname: "web-1".into(),
        env: files::environment(&pod_obj, &container, LOCALHOST, LOCALHOST, None),
        files: files::container_files(&pod_obj, LOCALHOST, &[]),
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
    let kubelet = bound.kubelet_addr();
    let shutdown = CancellationToken::new();
    tokio::spawn(bound.serve(shutdown.clone()));

    let client = ca
        .issue_client("kube-apiserver-kubelet-client", &[])
        .expect("client");
    let mut tls = rustls::ClientConfig::builder_with_provider(certs::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(ca.root_store())
        .with_client_auth_cert(client.chain.clone(), client.key.clone_key())
        .expect("client cert");
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = Arc::new(tls);
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let api = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let seen_by_api = seen.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                c = listener.accept() => c,
                _ = stop.cancelled() => return,
            };
            let Ok((conn, _)) = conn else { return };
            tokio::spawn(serve_api(
                conn,
                minor,
                kubelet,
                tls.clone(),
                seen_by_api.clone(),
            ));
        }
    });
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: http://{api}\n\
         contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: me\n    namespace: default\n\
         current-context: lab\nusers:\n- name: me\n  user: {{}}\n"
    );
    std::fs::write(dir.path().join("kubeconfig"), kubeconfig).expect("kubeconfig");
    Lab {
        log,
        echo_port: proxylab_test_support::echo::tcp_echo("127.0.0.1:0", "")
            .await
            .port(),
        seen,
        dir,
        shutdown,
        env: Vec::new(),
    }
}

fn pod_json() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default", "uid": "uid-1", "creationTimestamp": "2026-12-04T00:00:00Z"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "proxylab/echo-http:1", "stdin": true}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1",
            "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0, "image": "proxylab/echo-http:1",
                "imageID": "", "state": {"running": {"startedAt": "2026-12-04T00:00:00Z"}}}]}
    })
}

/// The stand-in apiserver: one request per connection (`Connection: close`).
async fn serve_api(
    conn: TcpStream,
    minor: u32,
    kubelet: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    seen: Seen,
) {
    let mut reader = BufReader::new(conn);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let pod_prefix = "/api/v1/namespaces/default/pods/web-1";
    let reply = |status: &str, body: String| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let canned = match path {
        "/version" => Some(reply("200 OK", json!({"major": "1", "minor": minor.to_string(), "gitVersion": format!("v1.{minor}.0"),
            "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22",
            "compiler": "gc", "platform": "linux/amd64"}).to_string())),
        "/api" => Some(reply("200 OK", json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}).to_string())),
        "/apis" => Some(reply("200 OK", json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}).to_string())),
        "/api/v1" => Some(reply("200 OK", json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "shortNames": ["po"],
             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
            {"name": "pods/attach", "singularName": "", "namespaced": true, "kind": "PodAttachOptions", "verbs": ["create", "get"]},
            {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]},
            {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
            {"name": "pods/portforward", "singularName": "", "namespaced": true, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}
        ]}).to_string())),
        p if p == pod_prefix => Some(reply("200 OK", pod_json().to_string())),
        p if p.starts_with("/api/v1/namespaces/default/pods/") && !p.starts_with(pod_prefix) => Some(reply(
            "404 Not Found",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                "message": "pods not found"}).to_string(),
        )),
        _ => None,
    };
    let mut conn = reader.into_inner();
    if let Some(response) = canned {
        let _ = conn.write_all(response.as_bytes()).await;
        return;
    }
    // A subresource: rewrite the path as kube-apiserver's pod strategy does, and relay.
    let sub = path.strip_prefix(&format!("{pod_prefix}/")).unwrap_or("");
    let mut container = "main".to_owned();
    let mut rest: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("container", c)) => container = c.to_owned(),
            _ => rest.push(pair),
        }
    }
    let kubelet_path = match sub {
        "exec" => format!("/exec/default/web-1/{container}"),
        "attach" => format!("/attach/default/web-1/{container}"),
        "log" => format!("/containerLogs/default/web-1/{container}"),
        "portforward" => "/portForward/default/web-1".to_owned(),
        _ => {
            let _ = conn
                .write_all(reply("404 Not Found", "{}".into()).as_bytes())
                .await;
            return;
        }
    };
    let upgrade = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("upgrade"))
        .map(|(_, v)| v.clone());
    if let Some(upgrade) = &upgrade {
        let protocols: Vec<String> = headers
            .iter()
            .filter(|(k, _)| {
                k.eq_ignore_ascii_case("x-stream-protocol-version")
                    || k.eq_ignore_ascii_case("sec-websocket-protocol")
            })
            .map(|(_, v)| v.clone())
            .collect();
        seen.lock()
            .expect("lock")
            .push(format!("{sub} {upgrade} {}", protocols.join(",")));
    }
    let mut upstream_head = format!(
        "{method} {kubelet_path}?{} HTTP/1.1\r\nHost: node-1\r\n",
        rest.join("&")
    );
    for (k, v) in &headers {
        if ["host", "authorization", "accept-encoding"].contains(&k.to_ascii_lowercase().as_str())
            || (upgrade.is_none() && k.eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        upstream_head.push_str(&format!("{k}: {v}\r\n"));
    }
    if upgrade.is_none() {
        upstream_head.push_str("Connection: close\r\n");
    }
    upstream_head.push_str("\r\n");
    let Ok(tcp) = TcpStream::connect(kubelet).await else {
        return;
    };
    let Ok(mut upstream) = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::IpAddress(LOCALHOST.into()), tcp)
        .await
    else {
        return;
    };
    if upstream.write_all(upstream_head.as_bytes()).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn kubectl(lab: &Lab, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.args(args)
        .env("KUBECONFIG", lab.dir.path().join("kubeconfig"))
        .env("HOME", lab.dir.path())
        .envs(lab.env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    proxylab_test_support::without_proxy_env(cmd.as_std_mut());
    let mut child = cmd.spawn().expect("kubectl runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
        drop(pipe);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finished in time")
        .expect("kubectl output");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn port_forward(lab: &Lab) {
    let mut child = tokio::process::Command::new("kubectl")
        .args(["port-forward", "pod/web-1", &format!(":{}", lab.echo_port)])
        .env("KUBECONFIG", lab.dir.path().join("kubeconfig"))
        .env("HOME", lab.dir.path())
        .envs(lab.env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl port-forward");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), out.next_line())
        .await
        .expect("port-forward announced in time")
        .expect("read")
        .unwrap_or_default();
    // "Forwarding from 127.0.0.1:41234 -> 9000"
    let local: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected port-forward output: {line}"));
    for round in 0..2 {
        let mut conn = TcpStream::connect((LOCALHOST, local))
            .await
            .expect("connect to the forwarded port");
        let message = format!("hello through kubectl port-forward {round}");
        conn.write_all(message.as_bytes()).await.expect("write");
        conn.shutdown().await.expect("half-close");
        let mut echoed = String::new();
        tokio::time::timeout(Duration::from_secs(20), conn.read_to_string(&mut echoed))
            .await
            .expect("echo in time")
            .expect("read");
        assert_eq!(echoed, message);
    }
    child.kill().await.expect("stop kubectl port-forward");
}

#[tokio::test]
async fn every_kubectl_version_execs_logs_attaches_and_forwards() {
    if !proxylab_test_support::require_tool("kubectl") {
        return;
    }
    let mut report = Vec::new();
    for minor in 27..=33 {
        let lab = lab(minor).await;
        let run = kubectl(&lab, &["exec", "web-1", "--", "hostname"], None).await;
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (0, "web-1\n"),
            "1.{minor} exec: {}",
            run.stderr
        );

        let run = kubectl(
            &lab,
            &["exec", "web-1", "--", "sh", "-c", "echo out; exit 3"],
            None,
        )
        .await;
        assert_eq!(
            run.code, 3,
            "1.{minor}: kubectl exits with the command's code: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "out\n");

        let run = kubectl(
            &lab,
            &["exec", "-i", "web-1", "--", "sh"],
            Some("hostname -i\ncat /etc/hostname\nexit 5\n"),
        )
        .await;
        assert_eq!(run.code, 5, "1.{minor} exec -i: {}", run.stderr);
        assert_eq!(run.stdout, "127.0.0.1\nweb-1\n");

        let run = kubectl(&lab, &["logs", "web-1"], None).await;
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (0, "GET /hostname 200\n"),
            "1.{minor} logs: {}",
            run.stderr
        );
        let run = kubectl(&lab, &["logs", "web-1", "--tail=1", "--timestamps"], None).await;
        assert!(
            run.stdout.ends_with(" GET /hostname 200\n"),
            "1.{minor} logs --timestamps: {}",
            run.stdout
        );

        // attach: the output written after attaching (the log's new lines), until stopped.
        let log = lab.log.clone();
        let writer = tokio::spawn(async move {
            for i in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                log.push(format!("request {i}"));
            }
        });
        let mut child = tokio::process::Command::new("kubectl")
            .args(["attach", "web-1"])
            .env("KUBECONFIG", lab.dir.path().join("kubeconfig"))
            .env("HOME", lab.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl attach");
        let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .expect("attach output in time")
            .expect("read")
            .unwrap_or_default();
        assert!(line.starts_with("request "), "1.{minor} attach: {line:?}");
        child.kill().await.expect("stop kubectl attach");
        writer.abort();

        port_forward(&lab).await;
        let seen = lab.seen.lock().expect("lock").clone();
        // What the installed kubectl versions negotiate by default (docs/lab.md has the table).
        let exec = if minor >= 30 {
            "exec websocket v5.channel.k8s.io"
        } else if minor == 29 {
            "exec SPDY/3.1 v5.channel.k8s.io,v4.channel.k8s.io,v3.channel.k8s.io,v2.channel.k8s.io,channel.k8s.io"
        } else {
            "exec SPDY/3.1 v4.channel.k8s.io,v3.channel.k8s.io,v2.channel.k8s.io,channel.k8s.io"
        };
        let forward = if minor >= 31 {
            "portforward websocket SPDY/3.1+portforward.k8s.io"
        } else {
            "portforward SPDY/3.1 portforward.k8s.io"
        };
        assert_eq!(seen.first().map(String::as_str), Some(exec), "1.{minor}");
        assert_eq!(seen.last().map(String::as_str), Some(forward), "1.{minor}");
        report.push(format!("1.{minor}: {}", seen.join(" | ")));
        lab.shutdown.cancel();
    }
    // The feature switches turn the other protocol on (or off) in the versions that have them.
    for (minor, value, exec, forward) in [
        (
            29,
            "true",
            "exec websocket v5.channel.k8s.io",
            "portforward SPDY/3.1 portforward.k8s.io",
        ),
        (
            30,
            "true",
            "exec websocket v5.channel.k8s.io",
            "portforward websocket SPDY/3.1+portforward.k8s.io",
        ),
        (
            33,
            "false",
            "exec SPDY/3.1 v5.channel.k8s.io,v4.channel.k8s.io,v3.channel.k8s.io,v2.channel.k8s.io,channel.k8s.io",
            "portforward SPDY/3.1 portforward.k8s.io",
        ),
    ] {
        let mut lab = lab(minor).await;
        lab.env = vec![
            ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", value),
            ("KUBECTL_PORT_FORWARD_WEBSOCKETS", value),
        ];
        let run = kubectl(&lab, &["exec", "web-1", "--", "sh", "-c", "exit 9"], None).await;
        assert_eq!(
            run.code, 9,
            "1.{minor} with websockets={value}: {}",
            run.stderr
        );
        port_forward(&lab).await;
        let seen = lab.seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            [exec, forward],
            "1.{minor} with KUBECTL_*_WEBSOCKETS={value}"
        );
        report.push(format!(
            "1.{minor} KUBECTL_*_WEBSOCKETS={value}: {}",
            seen.join(" | ")
        ));
        lab.shutdown.cancel();
    }
    // What each version negotiated (visible with --nocapture; docs/lab.md records it).
    for line in &report {
        println!("{line}");
    }
}
