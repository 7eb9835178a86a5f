//! # proxylab-test-support — the helpers every crate's tests share
//!
//! A dev-dependency only (`[dev-dependencies] proxylab-test-support.workspace = true`). Before it
//! existed each crate had its own copy of "skip when kubectl is missing", "wait until this holds", an
//! echo server and a fake apiserver, and the copies drifted (one skipped under CI, one polled for 5 s,
//! another for 20). One copy here, so a fix lands everywhere:
//!
//! - [`require_tool`] / [`require`]: a test needing a missing tool skips with a printed reason, except
//!   when `CI` is set, where it fails (CI must install what the tests use).
//! - [`eventually`], [`eventually_async`], [`wait_until`]: poll a condition with a generous deadline.
//!   The deadline only turns a hang into a failure with a message; it is never a timing assertion.
//! - [`echo`]: named TCP and UDP echo servers (the forwarder's and the L4 relays' backends), the TCP one
//!   also with a listener that can be closed under its live connections ([`echo::tcp_echo_until`]).
//! - [`PROXY_ENV_VARS`] / [`without_proxy_env`]: a child process whose proxy environment cannot change
//!   what a test exercises.
//! - [`expect_one_line_exit_2`]: the contract of every binary for a bad flag or file.
//! - [`thread_names`]: this process's threads, for "the serving threads stop with the server".
//! - [`workspace_binary`]: another package's binary for a test of this one (the `ha-balancer`
//!   binary in front of `proxylab apiserver` processes), built when missing.
//! - [`etcd`]: a real one-member etcd on loopback ports, for the etcd-backed store's tests.
//! - [`fake_apiserver`]: an HTTPS apiserver that records what it receives (for proxies in front of it).
//! - [`http`]: raw and hyper HTTP/1.1 clients (`http_get`, `raw_exchange`, `get`) and a health endpoint
//!   answering a settable status (`status_server`).
//! - [`lab`]: `proxylab lab up` as a real process on its own `127.N.x.x` addresses
//!   ([`lab::reserve_octet`] keeps parallel test processes apart).
//!
//! Nothing here depends on another proxylab crate, so every crate, `proxylab-core` included, can use
//! it without a dependency cycle.

pub mod echo;
pub mod etcd;
pub mod fake_apiserver;
pub mod http;
pub mod lab;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`eventually`] and friends wait before calling a condition hung. Generous: the machine
/// running the suite may be busy building other crates; a passing test returns as soon as it holds.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);

/// True when `tool` is an executable on `PATH`. When it is not: prints why the test is skipped and
/// returns false, or panics when `CI` is set (a skipped test in CI would hide a missing install step).
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()));
    require(&format!("{tool} (on PATH)"), found)
}

/// The general form of [`require_tool`]: `available` says whether `what` is there.
pub fn require(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{what} is required by this test and is missing (CI is set, so this fails instead of skipping)"
        );
    }
    eprintln!("skipping: {what} is missing");
    false
}

/// What a polled condition returns: `bool` (holds or not) or `Option<T>` (`Some` ends the wait and is
/// returned).
pub trait Outcome {
    type Output;
    fn ready(self) -> Option<Self::Output>;
}

impl Outcome for bool {
    type Output = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Output = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Polls `check` until it holds (or yields `Some`), for up to [`PATIENCE`]; panics naming `what` when
/// it never does.
pub async fn eventually<O: Outcome>(what: &str, mut check: impl FnMut() -> O) -> O::Output {
    eventually_within(PATIENCE, what, async || check()).await
}

/// [`eventually`] for a check that has to await (a connection, a request): pass an `async ||` closure.
pub async fn eventually_async<O: Outcome>(what: &str, check: impl AsyncFnMut() -> O) -> O::Output {
    eventually_within(PATIENCE, what, check).await
}

/// [`eventually_async`] with another deadline than [`PATIENCE`].
pub async fn eventually_within<O: Outcome>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> O,
) -> O::Output {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await.ready() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for synchronous tests (no runtime): sleeps the thread between polls. Returns `None`
/// instead of panicking, so a caller can add its own context (a log) to the failure.
pub fn wait_until<O: Outcome>(limit: Duration, mut check: impl FnMut() -> O) -> Option<O::Output> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().ready() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Every variable through which a Go or Rust HTTP client picks up a proxy from its environment.
pub const PROXY_ENV_VARS: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Removes [`PROXY_ENV_VARS`] from a child's environment, so the machine's settings cannot change
/// which path a test exercises.
pub fn without_proxy_env(cmd: &mut Command) -> &mut Command {
    for var in PROXY_ENV_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` to completion with no stdin, expects exit code 2 with exactly one non-empty line on
/// stderr (the contract of every proxylab binary for a bad flag or file), and returns that line.
pub fn expect_one_line_exit_2(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("run the command");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit 2 expected; stderr: {stderr}"
    );
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one clear line expected, got: {stderr}");
    lines[0].to_owned()
}

/// Names of this process's threads (`/proc/self/task/*/comm`).
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

/// The binary `bin` of the workspace package `package`, beside `beside` (a binary of the package
/// under test, `env!("CARGO_BIN_EXE_…")`): cargo gives a test only its own package's binaries, so
/// another package's is built in the same target directory (`cargo build -p PACKAGE --bin BIN`,
/// same profile; a no-op when it is up to date, so a test never runs a stale copy).
pub fn workspace_binary(beside: &str, package: &str, bin: &str) -> std::path::PathBuf {
    let beside = std::path::Path::new(beside);
    let path = beside.with_file_name(bin);
    let profile_dir = beside.parent().expect("a binary inside a target directory");
    let target_dir = profile_dir
        .parent()
        .expect("a profile directory inside a target directory");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args([
        "build",
        "--quiet",
        "-p",
        package,
        "--bin",
        bin,
        "--target-dir",
    ])
    .arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    assert!(path.is_file(), "{} missing after the build", path.display());
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_tool_finds_sh_and_reports_a_missing_tool() {
        assert!(require_tool("sh"));
        if std::env::var_os("CI").is_none() {
            assert!(!require_tool("no-such-tool-proxylab"));
        }
    }

    #[tokio::test]
    async fn eventually_returns_what_the_check_yields() {
        let mut n = 0;
        let v = eventually("the third poll", || {
            n += 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(v, 3);
        eventually("true", || true).await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for never")]
    async fn eventually_panics_naming_what_never_held() {
        eventually_within(Duration::from_millis(30), "never", async || false).await;
    }

    #[test]
    fn wait_until_gives_up_with_none() {
        assert_eq!(wait_until(Duration::from_millis(30), || false), None);
        assert_eq!(wait_until(Duration::from_secs(1), || Some(7)), Some(7));
    }

    #[test]
    fn one_line_exit_2() {
        let line = expect_one_line_exit_2(Command::new("sh").args(["-c", "echo bad >&2; exit 2"]));
        assert_eq!(line, "bad");
    }
}
