//! The HA balancer's `http` mode with real processes: `proxylab apiserver` processes configured
//! for requestheader authentication (`--requestheader-client-ca-file` = the front-proxy CA,
//! `--requestheader-allowed-names=front-proxy-client`), the `ha-balancer` binary in front of them
//! terminating TLS, and real `kubectl` and `curl`.
//!
//! What must hold:
//! - identity survives termination: `kubectl auth whoami` through the balancer shows the client
//!   certificate's CN and every O, for a user the apiservers never saw a certificate of;
//! - a client's own `X-Remote-User`/`X-Remote-Group` are never honoured — with a certificate (the
//!   certificate wins) or without (anonymous: 401);
//! - a token client is passed through (the apiserver authenticates the token); a bad token gets
//!   the apiserver's 401; a certificate from a CA the balancer does not trust fails the handshake;
//! - moving load back by GOAWAY: watches (`kubectl wait`, an informer that resumes) piled on one
//!   apiserver while the other was down are moved to it when it comes back — counted by the
//!   balancer's metrics and connection counts, and the watches still deliver the event they wait
//!   for afterwards;
//! - upgrades pass through: `kubectl exec` (output, stdin, exit code) and `kubectl port-forward`
//!   through an http-mode balancer in front of a lab's apiservers.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use proxylab_test_support::http::http_get_blocking;
use proxylab_test_support::lab::reserve_octet;
use proxylab_test_support::{PATIENCE, etcd, require_tool, wait_until, workspace_binary};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");
const TOKEN: &str = "s3cret-token-of-tina";

/// A child process killed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    octet: u8,
    admin: SocketAddr,
    /// The apiservers' shared store, when the test needs one cluster behind every backend.
    etcd: Option<etcd::Etcd>,
}

impl Setup {
    fn start(with_etcd: bool) -> Option<(Setup, std::fs::File)> {
        if !require_tool("curl") || !require_tool("kubectl") || !require_tool("openssl") {
            return None;
        }
        let etcd = match with_etcd {
            true => Some(etcd::start()?),
            false => None,
        };
        workspace_binary(BIN, "proxylab-ha-balancer", "ha-balancer");
        let (o, lock) = reserve_octet();
        let dir = tempfile::tempdir().unwrap();
        let d = |f: &str| dir.path().join(f).display().to_string();
        let out = Command::new(BIN)
            .args(["pki", "--dir", &d("pki")])
            .args(["--apiserver-ip", &format!("127.{o}.10.1")])
            .args(["--apiserver-ip", &format!("127.{o}.10.2")])
            .args(["--apiserver-ip", &format!("127.{o}.0.1")])
            .args(["--kubeconfig", &d("kubeconfig"), "--server"])
            .arg(format!("https://127.{o}.0.1:6443"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A user the apiservers only ever meet through the balancer: jane in dev and ops, signed
        // by the cluster CA with openssl (rcgen's distinguished names hold one O at most).
        std::fs::write(d("pki/client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for args in [
            vec![
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &d("pki/jane.key"),
            ],
            vec![
                "req",
                "-new",
                "-key",
                &d("pki/jane.key"),
                "-subj",
                "/O=dev/O=ops/CN=jane",
                "-out",
                &d("pki/jane.csr"),
            ],
            vec![
                "x509",
                "-req",
                "-in",
                &d("pki/jane.csr"),
                "-CA",
                &d("pki/ca.crt"),
                "-CAkey",
                &d("pki/ca.key"),
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &d("pki/client.ext"),
                "-out",
                &d("pki/jane.crt"),
            ],
        ] {
            let out = Command::new("openssl").args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Kubeconfigs for jane (her certificate) and tina (a token), beside the admin's.
        let users = [
            (
                "jane",
                format!(
                    "client-certificate: {}\n    client-key: {}",
                    d("pki/jane.crt"),
                    d("pki/jane.key")
                ),
            ),
            ("tina", format!("token: {TOKEN}")),
        ];
        for (name, creds) in users {
            std::fs::write(
                dir.path().join(format!("kubeconfig-{name}")),
                format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://127.{o}.0.1:6443\n    certificate-authority: {}\n\
                     users:\n- name: {name}\n  user:\n    {creds}\ncontexts:\n- name: {name}\n  context: {{cluster: lab, user: {name}}}\ncurrent-context: {name}\n",
                    d("pki/ca.crt")
                ),
            )
            .unwrap();
        }
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{TOKEN},tina,tina-uid,\"token-group\"\n"),
        )
        .unwrap();
        let admin = format!("127.{o}.0.1:8404").parse().unwrap();
        Some((
            Setup {
                dir,
                octet: o,
                admin,
                etcd,
            },
            lock,
        ))
    }

    fn pki(&self, f: &str) -> String {
        self.dir.path().join("pki").join(f).display().to_string()
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn logs(&self) -> String {
        ["apiserver-1", "apiserver-2", "ha-balancer"]
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.log(n)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!(
                    "--- {n} (last lines)\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `proxylab apiserver` on 127.N.10.i:6443 with requestheader authentication (and the shared
    /// etcd, when there is one).
    fn apiserver(&self, i: u8) -> Proc {
        let o = self.octet;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(&format!("apiserver-{i}")))
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("apiserver")
            .arg(format!("--bind-address=127.{o}.10.{i}"))
            .arg("--secure-port=6443")
            .arg(format!("--tls-cert-file={}", self.pki("apiserver.crt")))
            .arg(format!(
                "--tls-private-key-file={}",
                self.pki("apiserver.key")
            ))
            .arg(format!("--client-ca-file={}", self.pki("ca.crt")))
            .arg(format!(
                "--requestheader-client-ca-file={}",
                self.pki("front-proxy-ca.crt")
            ))
            .arg("--requestheader-allowed-names=front-proxy-client")
            .arg(format!(
                "--token-auth-file={}",
                self.dir.path().join("tokens.csv").display()
            ))
            .arg(format!("--service-cluster-ip-range=127.{o}.40.0/24"));
        if let Some(e) = &self.etcd {
            cmd.args(["--etcd-servers", &e.url]);
        }
        Proc(
            cmd.stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn proxylab apiserver"),
        )
    }

    /// The balancer in http mode in front of both apiservers, once its admin endpoint answers.
    fn balancer(&self, extra: &[&str]) -> Proc {
        let o = self.octet;
        let bin = workspace_binary(BIN, "proxylab-ha-balancer", "ha-balancer");
        let p = Proc(
            Command::new(bin)
                .args(["--mode", "http"])
                .arg(format!("--listen=127.{o}.0.1:6443"))
                .arg(format!("--admin-address={}", self.admin))
                .arg(format!("--ca-file={}", self.pki("ca.crt")))
                // The apiservers' certificate names the balancer's address too (kubeadm puts the
                // load balancer in the apiserver certificate's SANs): it serves as ours.
                .arg(format!("--tls-cert-file={}", self.pki("apiserver.crt")))
                .arg(format!(
                    "--tls-private-key-file={}",
                    self.pki("apiserver.key")
                ))
                .arg(format!("--client-ca-file={}", self.pki("ca.crt")))
                .arg(format!(
                    "--proxy-client-cert-file={}",
                    self.pki("front-proxy-client.crt")
                ))
                .arg(format!(
                    "--proxy-client-key-file={}",
                    self.pki("front-proxy-client.key")
                ))
                .arg("--check-interval=300ms")
                .arg(format!("--backend=apiserver-1=127.{o}.10.1:6443"))
                .arg(format!("--backend=apiserver-2=127.{o}.10.2:6443"))
                .args(extra)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.log("ha-balancer"))
                        .unwrap(),
                )
                .spawn()
                .expect("spawn ha-balancer"),
        );
        assert!(
            wait_until(PATIENCE, || std::net::TcpStream::connect(self.admin)
                .is_ok())
            .is_some(),
            "the balancer's admin endpoint never answered\n{}",
            self.logs()
        );
        p
    }

    fn stats(&self) -> Value {
        let r = http_get_blocking(self.admin, "/stats?format=json");
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
    }

    /// Each backend's (state, active connections), in order.
    fn backends(&self) -> Vec<(String, u64)> {
        self.stats()["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["state"].as_str().unwrap().to_owned(),
                    b["activeConnections"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn wait_for_states(&self, want: &[&str]) {
        let got = wait_until(PATIENCE, || {
            let states: Vec<String> = self.backends().into_iter().map(|b| b.0).collect();
            (states == want).then_some(())
        });
        assert!(
            got.is_some(),
            "backends never {want:?}: {:?}\n{}",
            self.stats(),
            self.logs()
        );
    }

    /// A metric's value on the admin endpoint (0 when absent).
    fn metric(&self, line_start: &str) -> f64 {
        let r = http_get_blocking(self.admin, "/metrics");
        r.body
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    fn kubectl_cmd(&self) -> Command {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"));
        c
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd().args(args).output().expect("run kubectl")
    }

    /// `kubectl auth whoami -o json` as `user` (`admin`, `jane`, `tina`): (username, groups).
    fn whoami(&self, user: &str) -> (String, Vec<String>) {
        let mut cmd = self.kubectl_cmd();
        if user != "admin" {
            cmd.env(
                "KUBECONFIG",
                self.dir.path().join(format!("kubeconfig-{user}")),
            );
        }
        let out = cmd
            .args(["auth", "whoami", "-o", "json"])
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl auth whoami as {user}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let u = &v["status"]["userInfo"];
        (
            u["username"].as_str().unwrap().to_owned(),
            u["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g.as_str().unwrap().to_owned())
                .collect(),
        )
    }

    /// A SelfSubjectReview through the balancer with curl and these arguments: (HTTP status, body);
    /// status 0 when the exchange failed (curl's complaint as the body).
    fn review(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(["--cacert", &self.pki("ca.crt")])
            .args(["-H", "Content-Type: application/json"])
            .args([
                "-d",
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
            ])
            .args(args)
            .arg(format!(
                "https://127.{}.0.1:6443/apis/authentication.k8s.io/v1/selfsubjectreviews",
                self.octet
            ))
            .output()
            .unwrap();
        if !out.status.success() {
            return (0, String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.trim().parse().unwrap(), body.to_owned())
    }
}

#[test]
fn identity_survives_termination_and_spoofed_headers_are_not_honoured() {
    let Some((setup, _lock)) = Setup::start(false) else {
        return;
    };
    let _a1 = setup.apiserver(1);
    let _a2 = setup.apiserver(2);
    let _b = setup.balancer(&[]);
    setup.wait_for_states(&["up", "up"]);

    // kubectl with jane's certificate: the apiserver learns jane from the balancer's headers.
    let (user, groups) = setup.whoami("jane");
    assert_eq!(user, "jane");
    assert_eq!(groups, ["dev", "ops", "system:authenticated"]);
    // The admin kubeconfig's certificate, on both backends (round robin, a connection each).
    for _ in 0..2 {
        let (user, groups) = setup.whoami("admin");
        assert_eq!(user, "kubernetes-admin");
        assert!(groups.contains(&"system:masters".to_owned()), "{groups:?}");
    }

    // Spoofing with a certificate: the certificate wins.
    let (code, body) = setup.review(&[
        "--cert",
        &setup.pki("jane.crt"),
        "--key",
        &setup.pki("jane.key"),
        "-H",
        "X-Remote-User: system:admin",
        "-H",
        "X-Remote-Group: system:masters",
        "-H",
        "X-Remote-Extra-Scopes: all",
    ]);
    assert_eq!(code, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"]["userInfo"]["username"], "jane", "{body}");
    assert!(!body.contains("system:masters"), "{body}");
    // Spoofing without any credentials: anonymous, refused by the apiserver.
    let (code, body) = setup.review(&["-H", "X-Remote-User: system:admin"]);
    assert_eq!(code, 401, "{body}");

    // A token client is passed through: the apiserver verifies the token.
    let (user, groups) = setup.whoami("tina");
    assert_eq!(user, "tina");
    assert_eq!(groups, ["token-group", "system:authenticated"]);
    let (code, body) = setup.review(&[
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        "-H",
        "X-Remote-User: system:admin",
    ]);
    assert_eq!(code, 201, "{body}");
    assert!(body.contains("\"username\":\"tina\""), "{body}");
    let (code, body) = setup.review(&["-H", "Authorization: Bearer wrong"]);
    assert_eq!(code, 401, "{body}");

    // A certificate from a CA the balancer does not trust (the front-proxy CA's own client
    // certificate!) is refused in the handshake: it must not reach the apiservers as a front
    // proxy.
    let (code, complaint) = setup.review(&[
        "--cert",
        &setup.pki("front-proxy-client.crt"),
        "--key",
        &setup.pki("front-proxy-client.key"),
        "-H",
        "X-Remote-User: system:admin",
    ]);
    assert_eq!(code, 0, "the handshake went through: {complaint}");

    // Everything kubectl does works through it, and hop records say who and where.
    let out = setup.kubectl(&["get", "namespaces", "-o", "name"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("namespace/default"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hops = http_get_blocking(setup.admin, "/debug/hops").body;
    assert!(
        hops.contains("user jane from the client certificate"),
        "{hops}"
    );
    assert!(
        hops.contains("no client certificate, credentials passed through"),
        "{hops}"
    );
}

/// A `kubectl wait` for a label on a namespace: an informer (list, then watch; resumed when the
/// watch ends), one connection through the balancer.
struct Wait(Proc);

impl Wait {
    fn start(setup: &Setup, ns: &str) -> Wait {
        let child = setup
            .kubectl_cmd()
            .args(["wait", &format!("namespace/{ns}")])
            .arg("--for=jsonpath={.metadata.labels.moved}=yes")
            .arg("--timeout=300s")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl wait");
        Wait(Proc(child))
    }

    fn running(&mut self) -> bool {
        matches!(self.0.0.try_wait(), Ok(None))
    }
}

#[test]
fn watches_piled_on_one_apiserver_are_moved_back_by_goaway() {
    let Some((setup, _lock)) = Setup::start(true) else {
        return;
    };
    let _a1 = setup.apiserver(1);
    // Rebalancing quickly (a step per ~300 ms, connections a second old, a GOAWAY's streams
    // closed a second later) to keep the test short; what is asserted is counted, not timed.
    let _b = setup.balancer(&[
        "--rebalance-interval=300ms",
        "--rebalance-min-age=1s",
        "--goaway-grace=1s",
    ]);
    setup.wait_for_states(&["up", "down"]);
    const WATCHES: usize = 4;
    let names: Vec<String> = (0..WATCHES).map(|i| format!("moved-{i}")).collect();
    for n in &names {
        let out = setup.kubectl(&["create", "namespace", n]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut waits: Vec<Wait> = names.iter().map(|n| Wait::start(&setup, n)).collect();
    // Every watch is on apiserver-1, the only one up.
    let piled = wait_until(PATIENCE, || {
        let b = setup.backends();
        (b[0].1 >= WATCHES as u64).then_some(b)
    });
    assert!(
        piled.is_some(),
        "the watches never all connected: {:?}\n{}",
        setup.backends(),
        setup.logs()
    );
    let before = setup.metric("proxylab_ha_connections_rebalanced_total{backend=\"apiserver-1\"}");

    // apiserver-2 comes (back) up: the balancer sends GOAWAY to apiserver-1's oldest connections
    // until the counts are even, and the watches' clients reconnect — to apiserver-2.
    let _a2 = setup.apiserver(2);
    setup.wait_for_states(&["up", "up"]);
    let even = wait_until(PATIENCE, || {
        let b = setup.backends();
        let moved = setup
            .metric("proxylab_ha_connections_rebalanced_total{backend=\"apiserver-1\"}")
            - before;
        (moved >= 1.0 && b[1].1 >= 1 && b[0].1.abs_diff(b[1].1) <= 1).then_some((b, moved))
    });
    let (counts, moved) = even.unwrap_or_else(|| {
        panic!(
            "the connections were never moved back: {:?}\n{}",
            setup.backends(),
            setup.logs()
        )
    });
    assert!(
        moved <= WATCHES as f64,
        "more moved than there were: {moved} {counts:?}"
    );
    // The round ends at its next step, when it reads the even counts.
    let ended = wait_until(PATIENCE, || {
        std::fs::read_to_string(setup.log("ha-balancer"))
            .unwrap_or_default()
            .contains("rebalanced: connection counts are even")
    });
    assert!(ended.is_some(), "the round never ended\n{}", setup.logs());

    // Every watch survived the move: each still runs, and sees its label when it comes.
    for w in waits.iter_mut() {
        assert!(
            w.running(),
            "a kubectl wait ended before its label\n{}",
            setup.logs()
        );
    }
    for n in &names {
        let out = setup.kubectl(&["label", "namespace", n, "moved=yes"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (w, n) in waits.iter_mut().zip(&names) {
        let done = wait_until(PATIENCE, || (!w.running()).then_some(()));
        assert!(
            done.is_some(),
            "kubectl wait for {n} never saw its label\n{}",
            setup.logs()
        );
        let out = w.0.0.wait_with_output_ref();
        assert!(
            out.0.success(),
            "kubectl wait for {n}: {}\n{}",
            out.1,
            setup.logs()
        );
    }
    // Some watch request was served by apiserver-2 after the recovery.
    let hops = http_get_blocking(setup.admin, "/debug/hops").body;
    let hops: Vec<Value> = serde_json::from_str(&hops).unwrap();
    assert!(
        hops.iter().any(|h| h["endpoint"] == "apiserver-2"
            && h["http"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/api/v1/namespaces"))),
        "no request reached apiserver-2\n{}",
        setup.logs()
    );
}

/// The exit status and stderr of a finished child whose pipes are still ours.
trait WaitOutput {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String);
}

impl WaitOutput for Child {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        let _ = std::io::stderr().flush();
        (status, err)
    }
}

/// Upgrades through http mode: `kubectl exec` (stdout, stdin, exit code) and `kubectl port-forward`
/// through an http-mode balancer in front of a lab's three apiservers (which reach the pods through
/// their kubelets). The balancer terminates the client's TLS and opens a dedicated HTTP/1.1
/// connection per upgrade with its front-proxy certificate; the apiserver authorizes the user the
/// balancer asserted.
#[test]
fn kubectl_exec_and_port_forward_pass_through_http_mode() {
    if !require_tool("kubectl") || !require_tool("curl") {
        return;
    }
    let lab = proxylab_test_support::lab::Lab::start(BIN);
    let o = lab.octet;
    let pki = |f: &str| lab.state_dir().join("pki").join(f).display().to_string();
    // The lab's apiserver certificate names 127.0.0.1: it serves as the balancer's.
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bin = workspace_binary(BIN, "proxylab-ha-balancer", "ha-balancer");
    let log = lab.dir.path().join("ha-http.log");
    let _b = Proc(
        Command::new(bin)
            .args(["--mode", "http", "--admin-address", ""])
            .arg(format!("--listen={listen}"))
            .arg(format!("--ca-file={}", pki("ca.crt")))
            .arg(format!("--client-ca-file={}", pki("ca.crt")))
            .arg(format!("--tls-cert-file={}", pki("apiserver.crt")))
            .arg(format!("--tls-private-key-file={}", pki("apiserver.key")))
            .arg(format!(
                "--proxy-client-cert-file={}",
                pki("front-proxy-client.crt")
            ))
            .arg(format!(
                "--proxy-client-key-file={}",
                pki("front-proxy-client.key")
            ))
            .args((1..=3).map(|i| format!("--backend=apiserver-{i}=127.{o}.10.{i}:6443")))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn ha-balancer"),
    );
    let server = format!("https://{listen}");
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let kubectl = || {
        let mut c = lab.kubectl_cmd();
        c.args(["--server", &server]);
        c
    };
    let up = wait_until(PATIENCE, || {
        kubectl()
            .args(["get", "ns", "default"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(up.is_some(), "kubectl never got through\n{}", logs());

    // exec: output, stdin, exit code.
    let out = kubectl()
        .args(["exec", "web-1", "--", "hostname"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "web-1",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    let mut cat = kubectl()
        .args(["exec", "-i", "web-2", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cat.stdin
        .take()
        .unwrap()
        .write_all(b"through the balancer\n")
        .unwrap();
    let out = cat.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "through the balancer\n",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    let out = kubectl()
        .args(["exec", "web-1", "--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", logs());

    // port-forward: a local port to the pod, through the balancer, an apiserver and a kubelet.
    let mut pf = Proc(
        kubectl()
            .args(["port-forward", "pod/web-2", ":8080"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = pf.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // "Forwarding from 127.0.0.1:NNNNN -> 8080"
    let line = rx
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("port-forward never started\n{}", logs()));
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}/hostname"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "web-2",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
}
