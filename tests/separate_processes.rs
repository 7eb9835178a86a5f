//! The components as separate processes, as `lab up` prints them: `proxylab pki`, then
//! `proxylab apiserver` (with its controllers) and `proxylab node`, joined only by a kubeconfig.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proxylab(args: &[String], log: &std::path::Path) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_proxylab"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn proxylab"),
    )
}

#[test]
fn pki_apiserver_and_node_as_separate_processes() {
    if !proxylab_test_support::require_tool("kubectl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).display().to_string();
    // An address block no other test uses.
    let api = "127.99.10.1";
    let node_ip = "127.99.20.1";
    let out = Command::new(env!("CARGO_BIN_EXE_proxylab"))
        .args(["pki", "--dir", &d("pki"), "--apiserver-ip", api])
        .args(["--node", &format!("node-1={node_ip}")])
        .args(["--kubeconfig", &d("kubeconfig"), "--server"])
        .arg(format!("https://{api}:6443"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let p = |f: &str| d(&format!("pki/{f}"));
    let _apiserver = proxylab(
        &[
            "apiserver".into(),
            format!("--bind-address={api}"),
            "--secure-port=6443".into(),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            format!("--root-ca-file={}", p("ca.crt")),
            "--service-cluster-ip-range=127.99.40.0/24".into(),
        ],
        &dir.path().join("apiserver.log"),
    );
    let _node = proxylab(
        &[
            "node".into(),
            format!("--kubeconfig={}", d("kubeconfig")),
            "--hostname-override=node-1".into(),
            format!("--node-ip={node_ip}"),
            "--pod-cidr=127.99.30.0/25".into(),
            format!("--tls-cert-file={}", p("kubelet-node-1.crt")),
            format!("--tls-private-key-file={}", p("kubelet-node-1.key")),
            format!("--client-ca-file={}", p("ca.crt")),
        ],
        &dir.path().join("node.log"),
    );
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .env("KUBECONFIG", d("kubeconfig"))
            .env("HOME", dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let logs = || {
        format!(
            "apiserver:\n{}\nnode:\n{}",
            std::fs::read_to_string(d("apiserver.log")).unwrap_or_default(),
            std::fs::read_to_string(d("node.log")).unwrap_or_default()
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = kubectl(&["get", "nodes", "--no-headers"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.starts_with("node-1") && text.contains(" Ready ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node never Ready: {text}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A pod scheduled by the apiserver process's scheduler, started by the node process.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: echo\nspec:\n  containers:\n  - name: c\n    image: proxylab/echo-http:1\n    ports: [{name: http, containerPort: 8080}]\n";
    let mut apply = Command::new("kubectl")
        .env("KUBECONFIG", d("kubeconfig"))
        .env("HOME", dir.path())
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(pod.as_bytes())
        .unwrap();
    assert!(apply.wait_with_output().unwrap().status.success());
    let ip = loop {
        let out = kubectl(&["get", "pod", "echo", "-o", "jsonpath={.status.podIP}"]);
        let ip = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !ip.is_empty() {
            break ip;
        }
        assert!(Instant::now() < deadline, "pod never got an IP\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(ip.starts_with("127.99.30."), "{ip}");
    let answer = loop {
        use std::io::Read;
        let got = std::net::TcpStream::connect((ip.as_str(), 8080)).and_then(|mut s| {
            s.write_all(b"GET /hostname HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        });
        if let Ok(text) = got {
            break text;
        }
        assert!(Instant::now() < deadline, "pod never answered\n{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(answer.ends_with("echo"), "{answer}");
}
