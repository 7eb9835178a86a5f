//! The end-to-end harness: starts `proxylab lab up` as a real process on its own loopback addresses,
//! waits for `lab.json`, and runs the real `kubectl` and `curl` against it.
//!
//! Only the root package's tests have the `proxylab` binary (`env!("CARGO_BIN_EXE_proxylab")`), so
//! they pass its path in. [`reserve_octet`] is for any test that wants a `127.N.0.0/16` of its own.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The lab's built-in topology (`lab/topology.yaml`), which every harness lab starts from.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../../lab/topology.yaml");

/// Each test's lab gets its own second octet, so labs in parallel tests never share an address:
/// the default topology's `127.0.` prefix becomes `127.N.`.
///
/// nextest runs every test in its own process, so the octet is reserved across processes: an
/// exclusive lock on `$TMPDIR/proxylab-test-octets/N.lock`, held for the lab's lifetime (the lock is
/// the file handle; the kernel drops it when the test process ends, however it ends). Deriving the
/// octet from the pid alone collided: two test processes whose pids differ by the modulus got the
/// same addresses, and the second lab failed with "address in use".
pub fn reserve_octet() -> (u8, std::fs::File) {
    let dir = std::env::temp_dir().join("proxylab-test-octets");
    std::fs::create_dir_all(&dir).expect("create the octet lock directory");
    // Start at a pid-derived place so processes usually take different, untried locks first.
    let start = std::process::id() as usize;
    for i in 0..150 {
        let octet = 100 + ((start + i) % 150) as u8;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{octet}.lock")))
            .expect("open an octet lock file");
        match file.try_lock() {
            Ok(()) => return (octet, file),
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => panic!("locking octet {octet}: {e}"),
        }
    }
    panic!("all 150 lab octets (127.100-249.x.x) are taken by running tests");
}

/// A running lab, killed (SIGTERM, then SIGKILL) on drop.
pub struct Lab {
    /// The `proxylab` binary.
    pub bin: String,
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub info: Value,
    pub octet: u8,
    /// The octet's reservation; declared last so it is released after `Drop` has reaped the lab.
    _octet_lock: std::fs::File,
}

impl Lab {
    /// Starts `bin lab up` with the default topology moved to `127.N.x.x`.
    pub fn start(bin: &str) -> Lab {
        Self::start_with(bin, |t| t)
    }

    /// Starts a lab whose topology is the default one passed through `edit` after the address move.
    pub fn start_with(bin: &str, edit: impl FnOnce(String) -> String) -> Lab {
        let (octet, octet_lock) = reserve_octet();
        let dir = tempfile::tempdir().expect("tempdir");
        let topology = edit(DEFAULT_TOPOLOGY.replace("127.0.", &format!("127.{octet}.")));
        std::fs::write(dir.path().join("topology.yaml"), topology).unwrap();
        let child = spawn_up(bin, dir.path(), &[]);
        let mut lab = Lab {
            bin: bin.to_owned(),
            dir,
            child,
            info: Value::Null,
            octet,
            _octet_lock: octet_lock,
        };
        lab.wait_for_lab_json();
        lab
    }

    /// The `lab up` command line this lab runs (state dir, topology, log), plus `extra` flags.
    pub fn up_command(&self, extra: &[&str]) -> Command {
        up_command(&self.bin, self.dir.path(), extra)
    }

    /// Waits until `lab.json` is written by this lab's process (a file left by an earlier, killed
    /// process names another pid and is not taken for this one).
    fn wait_for_lab_json(&mut self) {
        let lab_json = self.state_dir().join("lab.json");
        let pid = self.child.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = std::fs::read_to_string(&lab_json)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .filter(|v| v["pid"] == pid)
            {
                self.info = v;
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("lab exited early with {status}; log:\n{}", self.log());
            }
            if Instant::now() > deadline {
                panic!("lab not ready after 60 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the lab with SIGTERM and waits for it; returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                panic!("lab did not stop within 20 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the lab with SIGKILL (no cleanup at all) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts `lab up` again on the same state dir and topology (after [`Lab::stop`] or
    /// [`Lab::kill9`]), with `extra` flags, and waits until it is ready.
    pub fn restart(&mut self, extra: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_up(&self.bin, self.dir.path(), extra);
        self.wait_for_lab_json();
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(
            self.info["kubeconfig"]
                .as_str()
                .expect("kubeconfig in lab.json"),
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("lab.log")).unwrap_or_default()
    }

    /// A `kubectl` command with this lab's kubeconfig and its own discovery cache.
    pub fn kubectl_cmd(&self) -> Command {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"));
        c
    }

    /// Runs kubectl with `args`; panics with its output when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_cmd().args(args).output().expect("run kubectl");
        check(&format!("kubectl {}", args.join(" ")), out, self)
    }

    /// Runs kubectl with `args` and `stdin`.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        check(&format!("kubectl {}", args.join(" ")), out, self)
    }

    /// Polls `f` until it holds, for up to [`crate::PATIENCE`]; the panic carries the lab's log.
    pub fn eventually<O: crate::Outcome>(&self, what: &str, f: impl FnMut() -> O) -> O::Output {
        crate::wait_until(crate::PATIENCE, f)
            .unwrap_or_else(|| panic!("timed out waiting for {what}; lab log:\n{}", self.log()))
    }
}

/// `bin lab up` on `dir`'s `state/` and `topology.yaml`, logging (appending) to `lab.log`.
fn up_command(bin: &str, dir: &std::path::Path, extra: &[&str]) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("lab.log"))
        .expect("open lab.log");
    let mut c = Command::new(bin);
    c.args(["lab", "up", "--state-dir"])
        .arg(dir.join("state"))
        .arg("--topology")
        .arg(dir.join("topology.yaml"))
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
    c
}

fn spawn_up(bin: &str, dir: &std::path::Path, extra: &[&str]) -> Child {
    up_command(bin, dir, extra)
        .spawn()
        .expect("spawn proxylab lab up")
}

fn check(what: &str, out: Output, lab: &Lab) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\nlab log (tail):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&lab.log(), 40)
        );
    }
    stdout
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Lab {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs curl with `args` and returns (exit ok, stdout).
pub fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
