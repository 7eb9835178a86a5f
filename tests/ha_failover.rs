//! Failover under load, with real processes: three `proxylab apiserver` processes behind the
//! `ha-balancer` binary, a steady stream of HTTPS requests (a new connection each, so every request
//! is balanced), then `SIGKILL` to one apiserver.
//!
//! What must hold, counted rather than timed:
//! - the killed apiserver is marked down within fall × interval: at most `fall` of its checks
//!   failed before the verdict (passive detection of refused connects may come first);
//! - no new connection goes to it after that: no hop record after the verdict names it, not even as
//!   a failed connect;
//! - requests keep succeeding: only requests in flight on the killed apiserver at the moment it
//!   died can fail (at most one per client), and every request sent after the verdict succeeds;
//! - watches: the `kubectl get -w` whose connection was on the killed apiserver ends (its stream was
//!   cut — kubectl does not re-establish a watch by itself), the others run on, and a new one is
//!   served by a live apiserver at once;
//! - outages in turn (k3s#11349): each apiserver killed and restarted in turn, the balancer follows
//!   every change and ends with all three up.
//!
//! The apiservers are separate processes, and the lab's store is in-process (`proxylab apiserver`
//! keeps its own in-memory store; only the front-ends of one process share one), so each process
//! has its own store. The load and the watches read what every apiserver has from its bootstrap
//! (the `default` namespace), which is the same everywhere.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use proxylab_test_support::http::http_get_blocking;
use proxylab_test_support::lab::reserve_octet;
use proxylab_test_support::{PATIENCE, require_tool, wait_until, workspace_binary};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");
/// Consecutive failed checks that take a backend down (the recipe's).
const FALL: u64 = 3;
/// Clients sending requests in parallel.
const CLIENTS: usize = 4;

/// A child process killed (SIGKILL) and reaped on drop.
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
    balancer_admin: SocketAddr,
}

impl Setup {
    fn pki(&self, f: &str) -> String {
        self.dir.path().join("pki").join(f).display().to_string()
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn logs(&self) -> String {
        ["apiserver-1", "apiserver-2", "apiserver-3", "ha-balancer"]
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.log(n)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- {n} (last lines)\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `proxylab apiserver` on 127.N.10.i:6443, with a store of its own.
    fn apiserver(&self, i: u8) -> Proc {
        self.apiservers(&[i])
    }

    /// One `proxylab apiserver` process with a front-end on 127.N.10.i:6443 for each `i`, over one
    /// store: each publishes itself in the `kubernetes` EndpointSlice. Logs as the first.
    fn apiservers(&self, front_ends: &[u8]) -> Proc {
        let o = self.octet;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(&format!("apiserver-{}", front_ends[0])))
            .unwrap();
        let binds: Vec<String> = front_ends
            .iter()
            .map(|i| format!("127.{o}.10.{i}"))
            .collect();
        Proc(
            Command::new(BIN)
                .arg("apiserver")
                .arg(format!("--bind-address={}", binds.join(",")))
                .arg("--secure-port=6443")
                .arg(format!("--tls-cert-file={}", self.pki("apiserver.crt")))
                .arg(format!(
                    "--tls-private-key-file={}",
                    self.pki("apiserver.key")
                ))
                .arg(format!("--client-ca-file={}", self.pki("ca.crt")))
                .arg(format!("--service-cluster-ip-range=127.{o}.40.0/24"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn proxylab apiserver"),
        )
    }

    fn stats(&self) -> Value {
        let r = http_get_blocking(self.balancer_admin, "/stats?format=json");
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
    }

    fn backend(&self, name: &str) -> Value {
        self.stats()["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no backend {name}"))
    }

    fn wait_for_state(&self, name: &str, state: &str) -> Value {
        wait_until(PATIENCE, || {
            let b = self.backend(name);
            (b["state"] == state).then_some(b)
        })
        .unwrap_or_else(|| panic!("{name} never {state}\n{}", self.logs()))
    }

    /// One request through the balancer on a new connection, with the admin client certificate.
    fn request(&self) -> bool {
        self.try_request().is_ok()
    }

    /// [`Setup::request`] with curl's complaint when it failed.
    fn try_request(&self) -> Result<(), String> {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "-o", "/dev/null"])
            .args(["--cacert", &self.pki("ca.crt")])
            .args(["--cert", &self.pki("admin.crt")])
            .args(["--key", &self.pki("admin.key")])
            .arg(format!(
                "https://127.{}.0.1:6443/api/v1/namespaces/default",
                self.octet
            ))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// kubectl through the balancer; panics with its stderr when it fails.
    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The balancer's backends by name, in its order.
    fn backend_names(&self) -> Vec<String> {
        self.stats()["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until the balancer's backends are exactly `names`, each up.
    fn wait_for_backends(&self, names: &[String]) {
        let got = wait_until(PATIENCE, || {
            let stats = self.stats();
            let backends = stats["backends"].as_array().unwrap();
            let now: Vec<&str> = backends
                .iter()
                .map(|b| b["name"].as_str().unwrap())
                .collect();
            (now == names && backends.iter().all(|b| b["state"] == "up")).then_some(())
        });
        assert!(
            got.is_some(),
            "the backends never became {names:?} (all up): {:?}\n{}",
            self.stats(),
            self.logs()
        );
    }

    fn kubectl_watch(&self) -> Watch {
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .args(["get", "namespaces", "-w", "--no-headers", "--cache-dir"])
            .arg(self.dir.path().join("kube-cache"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kubectl");
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, rx }
    }
}

/// A `kubectl get namespaces -w` and its output lines.
struct Watch {
    child: Child,
    rx: std::sync::mpsc::Receiver<String>,
}

impl Watch {
    /// Waits until the watch listed `default`: it is connected and served.
    fn served(&self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(line) if line.starts_with("default ") => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits until the watch shows the namespace `name`.
    fn sees(&self, name: &str) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(line) if line.starts_with(&format!("{name} ")) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request of the load: when it started and ended, and whether it succeeded.
#[derive(Clone)]
struct Sample {
    start: Instant,
    end: Instant,
    ok: bool,
    /// curl's complaint, when it failed.
    error: Option<String>,
}

/// `CLIENTS` threads sending requests back to back until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    /// Requests that succeeded so far.
    ok: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<Vec<Sample>>>,
}

impl Load {
    fn start(setup: &Arc<Setup>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let threads = (0..CLIENTS)
            .map(|_| {
                let (setup, stop, count) = (setup.clone(), stop.clone(), ok.clone());
                std::thread::spawn(move || {
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let start = Instant::now();
                        let result = setup.try_request();
                        if result.is_ok() {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        samples.push(Sample {
                            start,
                            end: Instant::now(),
                            ok: result.is_ok(),
                            error: result.err(),
                        });
                    }
                    samples
                })
            })
            .collect();
        Load { stop, ok, threads }
    }

    /// Waits until `n` more requests have succeeded.
    fn wait_for(&self, n: usize, setup: &Setup) {
        let target = self.ok.load(Ordering::SeqCst) + n;
        assert!(
            wait_until(PATIENCE, || self.ok.load(Ordering::SeqCst) >= target).is_some(),
            "the load stalled\n{}",
            setup.logs()
        );
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    }
}

fn start() -> Option<(Arc<Setup>, std::fs::File)> {
    if !require_tool("curl") || !require_tool("kubectl") {
        return None;
    }
    // Found (or built) first, so a build does not run while processes wait.
    workspace_binary(BIN, "proxylab-ha-balancer", "ha-balancer");
    let (o, lock) = reserve_octet();
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).display().to_string();
    let mut pki = Command::new(BIN);
    pki.args(["pki", "--dir", &d("pki")]);
    for ip in [
        format!("127.{o}.10.1"),
        format!("127.{o}.10.2"),
        format!("127.{o}.10.3"),
        format!("127.{o}.0.1"),
    ] {
        pki.args(["--apiserver-ip", &ip]);
    }
    let out = pki
        .args(["--kubeconfig", &d("kubeconfig"), "--server"])
        .arg(format!("https://127.{o}.0.1:6443"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let setup = Arc::new(Setup {
        dir,
        octet: o,
        balancer_admin: format!("127.{o}.0.1:8404").parse().unwrap(),
    });
    Some((setup, lock))
}

/// The `ha-balancer` binary in front of the three, once its admin endpoint answers.
fn balancer(setup: &Setup) -> Proc {
    balancer_with(setup, &[1, 2, 3], &[])
}

/// The `ha-balancer` binary with backends apiserver-`i` for each of `backends`, and `extra` flags.
fn balancer_with(setup: &Setup, backends: &[u8], extra: &[String]) -> Proc {
    let o = setup.octet;
    let bin = workspace_binary(BIN, "proxylab-ha-balancer", "ha-balancer");
    let p = Proc(
        Command::new(bin)
            .arg(format!("--listen=127.{o}.0.1:6443"))
            .arg(format!("--admin-address={}", setup.balancer_admin))
            .arg(format!("--ca-file={}", setup.pki("ca.crt")))
            // Quicker than the recipe's 2 s, to keep the test short; the bound is counted in checks.
            .arg("--check-interval=500ms")
            .arg(format!("--fall={FALL}"))
            .arg("--rise=2")
            .args(
                backends
                    .iter()
                    .map(|i| format!("--backend=apiserver-{i}=127.{o}.10.{i}:6443")),
            )
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(setup.log("ha-balancer"))
                    .unwrap(),
            )
            .spawn()
            .expect("spawn ha-balancer"),
    );
    assert!(
        wait_until(PATIENCE, || std::net::TcpStream::connect(
            setup.balancer_admin
        )
        .is_ok())
        .is_some(),
        "the balancer's admin endpoint never answered\n{}",
        setup.logs()
    );
    p
}

/// The balancer's hop records (the ring keeps the last 1024).
fn hops(setup: &Setup) -> Vec<Value> {
    let r = http_get_blocking(setup.balancer_admin, "/debug/hops");
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

fn timestamp(v: &Value) -> jiff::Timestamp {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

#[test]
fn sigkill_under_load_marks_down_within_fall_checks_and_requests_keep_succeeding() {
    let Some((setup, _lock)) = start() else {
        return;
    };
    let o = setup.octet;
    let mut apiservers: Vec<Proc> = (1..=3).map(|i| setup.apiserver(i)).collect();
    let _balancer = balancer(&setup);
    for i in 1..=3 {
        let b = wait_until(PATIENCE, || {
            let b = setup.backend(&format!("apiserver-{i}"));
            (b["state"] == "up" && b["checksOk"].as_u64() > Some(0)).then_some(b)
        });
        assert!(
            b.is_some(),
            "apiserver-{i} never checked up\n{}",
            setup.logs()
        );
    }
    assert!(
        wait_until(PATIENCE, || setup.request()).is_some(),
        "{}",
        setup.logs()
    );

    // Three watches, opened one after another with nothing else connecting: round robin puts one
    // on each apiserver.
    let mut watches: Vec<Watch> = Vec::new();
    for _ in 0..3 {
        let w = setup.kubectl_watch();
        assert!(w.served(), "a watch was not served\n{}", setup.logs());
        watches.push(w);
    }
    let open = http_get_blocking(setup.balancer_admin, "/debug/hops?open=true").body;
    let open: Vec<Value> = serde_json::from_str(&open).unwrap();
    let mut on: Vec<&str> = open
        .iter()
        .filter(|h| h["outcome"] == "open")
        .filter_map(|h| h["endpoint"].as_str())
        .collect();
    on.sort();
    assert_eq!(
        on,
        ["apiserver-1", "apiserver-2", "apiserver-3"],
        "{open:?}"
    );

    let load = Load::start(&setup);
    load.wait_for(30, &setup);

    let failed_before = setup.backend("apiserver-2")["checksFailed"]
        .as_u64()
        .unwrap();
    // Requests in flight between these two instants may be cut.
    let killed_at = Instant::now();
    drop(apiservers.remove(1)); // SIGKILL, and reaped: it is gone
    let dead_at = Instant::now();
    let down = setup.wait_for_state("apiserver-2", "down");
    let marked = Instant::now();
    let failed_checks = down["checksFailed"].as_u64().unwrap() - failed_before;
    assert!(
        failed_checks <= FALL,
        "{failed_checks} checks failed before the verdict (fall is {FALL}): {down}"
    );
    let verdict_at = timestamp(&down["lastChange"]);

    // The load runs on for a while after the verdict.
    load.wait_for(60, &setup);
    let samples = load.finish();

    let failed: Vec<&Sample> = samples.iter().filter(|s| !s.ok).collect();
    eprintln!(
        "{} requests, {} failed; {failed_checks} check(s) failed before the verdict ({})",
        samples.len(),
        failed.len(),
        down["lastChangeReason"]
    );
    let after_verdict: Vec<&Sample> = samples.iter().filter(|s| s.start > marked).collect();
    let ok_after_kill = samples.iter().filter(|s| s.ok && s.start > dead_at).count();
    assert!(
        after_verdict.iter().all(|s| s.ok),
        "a request sent after the verdict failed\n{}",
        setup.logs()
    );
    assert!(!after_verdict.is_empty());
    assert!(ok_after_kill > 0);
    // Only a request in flight when the apiserver died may fail: at most one per client, and it
    // was under way at the kill.
    assert!(
        failed.len() <= CLIENTS,
        "{} of {} requests failed\n{}",
        failed.len(),
        samples.len(),
        setup.logs()
    );
    for f in &failed {
        assert!(
            f.start <= dead_at && f.end >= killed_at,
            "a request not in flight at the kill failed: {:?} (started {:?} after the kill)\n{}",
            f.error,
            f.start.saturating_duration_since(killed_at),
            setup.logs()
        );
    }

    // No new connection to it after the verdict: not chosen, not even tried.
    let hops = hops(&setup);
    let dead = format!("127.{o}.10.2:6443");
    for h in hops.iter().filter(|h| timestamp(&h["time"]) > verdict_at) {
        assert_ne!(h["endpoint"], "apiserver-2", "{h}");
        assert!(
            !h["reason"].as_str().unwrap_or_default().contains(&dead),
            "tried after the verdict: {h}"
        );
    }
    assert!(
        hops.iter()
            .any(|h| timestamp(&h["time"]) > verdict_at && h["outcome"] == "ok"),
        "no hop after the verdict in the ring"
    );

    // The watch on the killed apiserver ended; the other two run on; a new one is served.
    let ended = wait_until(PATIENCE, || {
        let n = watches
            .iter_mut()
            .map(|w| !w.running())
            .filter(|&ended| ended)
            .count();
        (n >= 1).then_some(n)
    });
    assert_eq!(ended, Some(1), "{}", setup.logs());
    let again = setup.kubectl_watch();
    assert!(
        again.served(),
        "a new watch was not served\n{}",
        setup.logs()
    );
}

#[test]
fn outages_in_turn_are_followed_and_all_end_up() {
    let Some((setup, _lock)) = start() else {
        return;
    };
    let mut apiservers: Vec<Option<Proc>> = (1..=3).map(|i| Some(setup.apiserver(i))).collect();
    let _balancer = balancer(&setup);
    for i in 1..=3 {
        setup.wait_for_state(&format!("apiserver-{i}"), "up");
    }
    assert!(wait_until(PATIENCE, || setup.request()).is_some());
    let load = Load::start(&setup);
    // k3s#11349: apiservers down in turn, each back before the next goes.
    let order = [2u8, 3, 1, 2];
    let mut kills = Vec::new();
    for &i in &order {
        let name = format!("apiserver-{i}");
        let changes = setup.backend(&name)["stateChanges"].as_u64().unwrap();
        let killed_at = Instant::now();
        apiservers[usize::from(i - 1)] = None; // SIGKILL, and reaped
        kills.push((killed_at, Instant::now()));
        setup.wait_for_state(&name, "down");
        apiservers[usize::from(i - 1)] = Some(setup.apiserver(i));
        let up = setup.wait_for_state(&name, "up");
        assert_eq!(up["stateChanges"].as_u64().unwrap(), changes + 2, "{up}");
        // The others were never disturbed.
        for j in (1..=3).filter(|&j| j != i) {
            assert_eq!(setup.backend(&format!("apiserver-{j}"))["state"], "up");
        }
    }
    let samples = load.finish();
    let failed: Vec<&Sample> = samples.iter().filter(|s| !s.ok).collect();
    eprintln!(
        "{} requests over {} outages, {} failed",
        samples.len(),
        order.len(),
        failed.len()
    );
    assert!(
        failed.len() <= CLIENTS * order.len(),
        "{} of {} requests failed\n{}",
        failed.len(),
        samples.len(),
        setup.logs()
    );
    for f in &failed {
        assert!(
            kills
                .iter()
                .any(|&(killed, dead)| f.start <= dead && f.end >= killed),
            "a request not in flight at a kill failed: {:?}; kills at {:?} after the first, this request {:?} after it\n{}",
            f.error,
            kills
                .iter()
                .map(|(k, _)| k.saturating_duration_since(kills[0].0))
                .collect::<Vec<_>>(),
            f.start.saturating_duration_since(kills[0].0),
            setup.logs()
        );
    }
    for i in 1..=3 {
        assert_eq!(setup.backend(&format!("apiserver-{i}"))["state"], "up");
    }
    assert!(samples.iter().filter(|s| s.ok).count() > order.len() * CLIENTS);
}

/// Learned backends: the balancer is given one apiserver and learns the others from the
/// `kubernetes` EndpointSlice (one `proxylab apiserver` process with three front-ends over one
/// store, each publishing itself); it follows the slice when a front-end is removed from it (the
/// watches on that front-end run on) and added back; restarted while every apiserver is down, it
/// still knows all three from its state file and uses the one that comes back, which is not its
/// seed.
#[test]
fn learned_backends_follow_the_endpointslice_and_survive_a_restart_in_an_outage() {
    let Some((setup, _lock)) = start() else {
        return;
    };
    let o = setup.octet;
    let addr = |i: u8| format!("127.{o}.10.{i}:6443");
    let state = setup.dir.path().join("learned.json");
    let learn = [
        format!(
            "--learn-kubeconfig={}",
            setup.dir.path().join("kubeconfig").display()
        ),
        format!("--state-file={}", state.display()),
    ];
    let apiserver = setup.apiservers(&[1, 2, 3]);
    let balancer = balancer_with(&setup, &[1], &learn);
    let all = vec!["apiserver-1".to_string(), addr(2), addr(3)];
    setup.wait_for_backends(&all);
    let stats = setup.stats();
    assert_eq!(stats["learn"]["source"], "endpointslice", "{stats}");
    assert_eq!(stats["learn"]["synced"], true, "{stats}");
    let saved = std::fs::read_to_string(&state).unwrap();
    for i in 1..=3 {
        assert!(saved.contains(&addr(i)), "{saved}");
    }

    // Watches spread over the three; the one of 10.2 and 10.3 carrying the most is removed from
    // the slice.
    let watches: Vec<Watch> = (0..3)
        .map(|_| {
            let w = setup.kubectl_watch();
            assert!(w.served(), "a watch was not served\n{}", setup.logs());
            w
        })
        .collect();
    let active = |name: &str| setup.backend(name)["activeConnections"].as_u64().unwrap();
    let (victim, keep) = if active(&addr(2)) >= active(&addr(3)) {
        (2, 3)
    } else {
        (3, 2)
    };
    let carried = active(&addr(victim));
    assert!(carried > 0, "{}", setup.stats());
    let endpoints = |ips: &[u8]| {
        let eps: Vec<String> = ips
            .iter()
            .map(|i| format!(r#"{{"addresses":["127.{o}.10.{i}"],"conditions":{{"ready":true}}}}"#))
            .collect();
        format!(r#"{{"endpoints":[{}]}}"#, eps.join(","))
    };
    let patch = |ips: &[u8]| {
        setup.kubectl(&[
            "patch",
            "endpointslice",
            "kubernetes",
            "-n",
            "default",
            "--type=merge",
            "-p",
            &endpoints(ips),
        ]);
    };
    patch(&[1, keep]);
    setup.wait_for_backends(&["apiserver-1".to_string(), addr(keep)]);
    let removed_at = jiff::Timestamp::now();
    // Nothing established was cut: every watch still runs and still gets events.
    setup.kubectl(&["create", "namespace", "learned"]);
    for w in &watches {
        assert!(
            w.sees("learned"),
            "a watch missed an event\n{}",
            setup.logs()
        );
    }
    // New connections go to the two left.
    for _ in 0..6 {
        setup.try_request().unwrap();
    }
    for h in hops(&setup)
        .iter()
        .filter(|h| timestamp(&h["time"]) > removed_at)
    {
        assert_ne!(h["endpoint"], addr(victim).as_str(), "{h}");
    }

    // Back in the slice: balanced to again.
    patch(&[1, 2, 3]);
    setup.wait_for_backends(&all);
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains(&addr(victim)), "{saved}");
    drop(watches);

    // Every apiserver down, the balancer restarted with only its seed: the state file still
    // names all three.
    drop(balancer);
    drop(apiserver);
    let _balancer = balancer_with(&setup, &[1], &learn);
    assert_eq!(setup.backend_names(), all);
    assert_eq!(setup.stats()["learn"]["source"], "state-file");
    // The one that comes back is not the seed.
    let _back = setup.apiserver(3);
    assert!(
        wait_until(PATIENCE, || setup.request()).is_some(),
        "no request succeeded through the apiserver that came back\n{}",
        setup.logs()
    );
    // It publishes only itself: the balancer learns that.
    setup.wait_for_backends(&[addr(3)]);
}
