//! The guides' commands are run, so the guides cannot rot.
//!
//! Every ```` ```console ```` block of `docs/*.md` and `README.md` is a transcript: a line starting
//! `$ ` is a command (a trailing `\` continues it on the next line, and a here-document `<<EOF` takes
//! the lines up to `EOF`), the lines after it are what it prints. This test starts one lab and runs
//! each block as one bash script, against that lab, and checks the transcript:
//!
//! - **Where it runs.** A fresh temporary directory per block, in which `.lab` is a symlink to the
//!   lab's state directory (so `proxylab trace` and `--kubeconfig .lab/kubeconfig` work as in the
//!   guides); `KUBECONFIG` is the lab's; `PATH` starts with the workspace's binaries (`proxylab`,
//!   `cloud-lb`, `forwarder`, …). stderr is merged into stdout, as a terminal shows it.
//! - **Addresses.** The test's lab lives on its own `127.N.x.x` (so it never meets a lab a person
//!   runs), so `127.0.` in a command becomes `127.N.`, and `127.N.` in the output reads as `127.0.`.
//! - **Loose comparison**, because ages, ports, hashes and timings change from run to run: on both
//!   sides every number becomes `N`, an IPv4 address (with its port) `<addr>`, runs of whitespace one
//!   space; `…` in an expected line matches anything, and a line that is only `...` or `…` stands for
//!   lines left out. The expected lines must each match a whole output line, in order (output lines
//!   in between are allowed).
//! - **Exit codes.** A command that shows no output in the guide must succeed; one that shows output
//!   is judged by it (the guide may show a failure, like curl's `(7) Failed to connect`); a
//!   following `$ echo $?` shows that failure's status, as in a terminal.
//! - **Not run**: a block fenced ```` ```console no-run REASON ```` is skipped; the reason is required,
//!   so a reader sees why that transcript is not checked. Blocks that change the lab create their own
//!   objects and delete them at the end, so the blocks do not depend on each other.
//!
//! A failure names the file and line of the block and of the command, and shows what was expected
//! against what came out; all failing blocks are reported together.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proxylab_test_support::lab::Lab;
use proxylab_test_support::{require_tool, without_proxy_env};

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");

/// A block that runs longer than this is killed (with everything it started) and fails: a guide's
/// command that hangs, e.g. a server left in the foreground.
const BLOCK_LIMIT: Duration = Duration::from_secs(30);

/// Marks the end of one command's output in a block's combined output: `\x1e` + exit code.
const END: char = '\u{1e}';

#[derive(Debug, PartialEq)]
struct Cmd {
    /// 1-based line in the file of the `$ ` line.
    line: usize,
    /// The command as bash reads it (continuations and here-documents kept, the `$ ` dropped).
    text: String,
    /// The lines the guide shows after it.
    expected: Vec<String>,
}

#[derive(Debug, PartialEq)]
struct Block {
    file: String,
    /// 1-based line of the opening fence.
    line: usize,
    /// `Some(reason)` for ```` ```console no-run REASON ````.
    no_run: Option<String>,
    cmds: Vec<Cmd>,
}

/// The here-document terminator a command line opens, if any (`<<EOF`, `<<'EOF'`, `<<-"EOF"`).
fn heredoc_end(line: &str) -> Option<String> {
    let at = line.find("<<")?;
    let rest = line[at + 2..].trim_start_matches('-').trim_start();
    let word: String = rest
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// The ```` ```console ```` blocks of one Markdown file.
fn parse(file: &str, text: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).peekable();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```console") else {
            continue;
        };
        let info = info.trim();
        let no_run = match info.strip_prefix("no-run") {
            Some(reason) if reason.trim().is_empty() => {
                return Err(format!(
                    "{file}:{n}: `console no-run` needs a reason after it (why is this transcript not run?)"
                ));
            }
            Some(reason) => Some(reason.trim().to_owned()),
            None if info.is_empty() => None,
            None => return Err(format!("{file}:{n}: unknown console fence option `{info}`")),
        };
        let mut block = Block {
            file: file.to_owned(),
            line: n,
            no_run,
            cmds: Vec::new(),
        };
        loop {
            let Some((m, l)) = lines.next() else {
                return Err(format!("{file}:{n}: console block never closed"));
            };
            if l.trim_start().starts_with("```") {
                break;
            }
            if let Some(cmd) = l.strip_prefix("$ ") {
                let mut text = cmd.to_owned();
                // Continuation lines.
                while text.ends_with('\\') {
                    let Some((_, next)) = lines.next() else {
                        return Err(format!(
                            "{file}:{m}: `\\` continues past the end of the file"
                        ));
                    };
                    text.push('\n');
                    text.push_str(next);
                }
                // A here-document is part of the command.
                if let Some(end) = heredoc_end(&text) {
                    loop {
                        let Some((_, next)) = lines.next() else {
                            return Err(format!("{file}:{m}: here-document never ends ({end})"));
                        };
                        text.push('\n');
                        text.push_str(next);
                        if next.trim() == end {
                            break;
                        }
                    }
                }
                block.cmds.push(Cmd {
                    line: m,
                    text,
                    expected: Vec::new(),
                });
            } else if let Some(cmd) = block.cmds.last_mut() {
                cmd.expected.push(l.to_owned());
            } else if !l.trim().is_empty() {
                return Err(format!(
                    "{file}:{m}: output before the first `$ ` command of the block"
                ));
            }
        }
        blocks.push(block);
    }
    Ok(blocks)
}

/// A line made comparable: numbers → `N`, IPv4 addresses (and ports) → `<addr>`, whitespace runs →
/// one space, `...` → `…`.
fn normalize(line: &str) -> String {
    let mut s = String::with_capacity(line.len());
    let mut in_number = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                s.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            s.push(c);
        }
    }
    let s = s
        .replace("N.N.N.N:N", "<addr>")
        .replace("N.N.N.N", "<addr>")
        .replace("...", "…");
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `line` (normalized) matches `pattern` (normalized) in full, `…` matching any run of
/// characters.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').map(str::trim).collect();
    let line = line.trim();
    if parts.len() == 1 {
        return parts[0] == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || !line[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Checks one command's output against the guide: every expected line, in order, matches a whole
/// output line. `Err` says which expected line was not found.
fn check_output(expected: &[String], got: &str) -> Result<(), String> {
    let got: Vec<String> = got
        .lines()
        .map(normalize)
        .filter(|l| !l.is_empty())
        .collect();
    let mut at = 0;
    for want in expected {
        let pattern = normalize(want);
        if pattern.is_empty() || pattern == "…" {
            continue;
        }
        match got[at..].iter().position(|l| matches(&pattern, l)) {
            Some(i) => at += i + 1,
            None => return Err(format!("no output line (in order) matches: {want}")),
        }
    }
    Ok(())
}

/// The bash script of a block: each command, then a marker line with its exit code.
fn script(block: &Block, octet: u8) -> String {
    let mut s = String::from("exec 2>&1\n");
    for cmd in &block.cmds {
        s.push_str(&cmd.text.replace("127.0.", &format!("127.{octet}.")));
        // `$?` is the command's status; the newline first ends output that has none. `(exit)` sets
        // `$?` back to it, so a guide's next `$ echo $?` shows this command's status, not printf's.
        let _ = writeln!(
            s,
            "\n__status=$?; printf '\\n{END}%d\\n' \"$__status\"; (exit $__status)"
        );
    }
    s
}

/// Splits a block's combined output into (output, exit code) per command, in order.
fn split_output(out: &str) -> Vec<(String, i32)> {
    let mut res = Vec::new();
    let mut cur = String::new();
    for line in out.lines() {
        if let Some(code) = line.strip_prefix(END) {
            res.push((std::mem::take(&mut cur), code.trim().parse().unwrap_or(-1)));
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    res
}

/// Everything a block needs to run against the lab.
struct Env {
    octet: u8,
    state_dir: PathBuf,
    kubeconfig: PathBuf,
    path: std::ffi::OsString,
    home: PathBuf,
}

/// Runs one block; `Err` is the failure report.
fn run_block(block: &Block, env: &Env) -> Result<(), String> {
    let cwd = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(&env.state_dir, cwd.path().join(".lab")).expect("symlink .lab");
    let script_path = cwd.path().join(".block.sh");
    std::fs::write(&script_path, script(block, env.octet)).expect("write the block's script");
    let out_path = cwd.path().join(".block.out");
    let out_file = std::fs::File::create(&out_path).expect("create the output file");
    let mut cmd = Command::new("bash");
    cmd.arg(&script_path)
        .current_dir(cwd.path())
        .env("PATH", &env.path)
        .env("KUBECONFIG", &env.kubeconfig)
        .env("HOME", &env.home)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(Stdio::null());
    without_proxy_env(&mut cmd);
    // Its own process group, so whatever the block starts in the background is killed with it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().expect("run bash");
    let pgid = child.id();
    let started = Instant::now();
    let timed_out = loop {
        if child.try_wait().expect("wait for bash").is_some() {
            break false;
        }
        if started.elapsed() > BLOCK_LIMIT {
            break true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let raw = std::fs::read_to_string(&out_path).unwrap_or_default();
    let out = raw.replace(&format!("127.{}.", env.octet), "127.0.");
    let results = split_output(&out);
    let here = format!("{}:{}", block.file, block.line);
    for (i, cmd) in block.cmds.iter().enumerate() {
        let Some((got, code)) = results.get(i) else {
            let why = if timed_out {
                format!("the block was killed after {BLOCK_LIMIT:?}")
            } else {
                "the block's script ended before it".to_owned()
            };
            let partial = out.rsplit(END).next().unwrap_or_default();
            return Err(format!(
                "{here}: command at line {}: `$ {}` did not finish: {why}\noutput so far:\n{}",
                cmd.line,
                cmd.text,
                indent(partial)
            ));
        };
        let verdict = if cmd.expected.iter().all(|l| l.trim().is_empty()) {
            if *code == 0 {
                Ok(())
            } else {
                Err(format!(
                    "exit code {code}, and the guide shows no output for it"
                ))
            }
        } else {
            check_output(&cmd.expected, got)
        };
        if let Err(why) = verdict {
            return Err(format!(
                "{here}: command at line {}: `$ {}`\n{why}\nexpected:\n{}\ngot (exit code {code}):\n{}",
                cmd.line,
                cmd.text,
                indent(&cmd.expected.join("\n")),
                indent(got)
            ));
        }
    }
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The guides: `README.md` and `docs/*.md`, relative to the workspace root.
fn guides(root: &Path) -> Vec<(String, String)> {
    let mut files = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.ends_with(".md").then(|| format!("docs/{name}"))
        })
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(root.join(&f)).expect("read a guide");
            (f, text)
        })
        .collect()
}

#[test]
fn every_console_block_of_the_guides_runs_as_shown() {
    for tool in ["kubectl", "curl", "jq", "python3"] {
        if !require_tool(tool) {
            return;
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut blocks = Vec::new();
    for (file, text) in guides(root) {
        blocks.extend(parse(&file, &text).unwrap_or_else(|e| panic!("{e}")));
    }
    let to_run: Vec<&Block> = blocks.iter().filter(|b| b.no_run.is_none()).collect();
    assert!(
        !to_run.is_empty(),
        "no console block to run: the guides lost their transcripts?"
    );

    // The guides call the workspace's binaries by name. scripts/test.sh builds them all before the
    // tests (`cargo build --workspace --bins`); building them here, per package, would rebuild
    // dependencies with other features and take minutes.
    let bin_dir = Path::new(BIN).parent().unwrap();
    for bin in [
        "auth-proxy",
        "bastion",
        "forwarder",
        "ha-balancer",
        "cloud-lb",
    ] {
        assert!(
            bin_dir.join(bin).is_file(),
            "{bin} is not built in {}: run `cargo build --workspace --bins` first (scripts/test.sh does)",
            bin_dir.display()
        );
    }
    let mut path = vec![bin_dir.to_path_buf()];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));

    let lab = Lab::start(BIN);
    let home = tempfile::tempdir().expect("tempdir");
    let env = Env {
        octet: lab.octet,
        state_dir: lab.state_dir(),
        kubeconfig: lab.kubeconfig(),
        path: std::env::join_paths(path).unwrap(),
        home: home.path().to_path_buf(),
    };
    let mut failures = Vec::new();
    for block in &to_run {
        let started = Instant::now();
        let result = run_block(block, &env);
        eprintln!(
            "{}:{} {} in {:.1?}",
            block.file,
            block.line,
            if result.is_ok() { "ok" } else { "FAILED" },
            started.elapsed()
        );
        if let Err(e) = result {
            failures.push(e);
        }
    }
    for b in blocks.iter().filter(|b| b.no_run.is_some()) {
        eprintln!(
            "{}:{} not run: {}",
            b.file,
            b.line,
            b.no_run.as_ref().unwrap()
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} guide blocks differ from what they show:\n\n{}\nlab log (tail):\n{}",
        failures.len(),
        to_run.len(),
        failures.join("\n"),
        lab.log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_transcript_is_parsed_into_commands_and_their_output() {
    let md = "text\n```console\n$ export A=1\n$ echo a \\\n  b\na b\n$ cat <<'EOF' | wc -l\nx\n$ y\nEOF\n2\n```\n\n```console no-run needs a cloud\n$ true\n```\n";
    let blocks = parse("g.md", md).unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].line, 2);
    assert_eq!(blocks[0].no_run, None);
    let cmds = &blocks[0].cmds;
    assert_eq!(cmds.len(), 3);
    assert_eq!(cmds[0].text, "export A=1");
    assert!(cmds[0].expected.is_empty());
    assert_eq!(cmds[1].text, "echo a \\\n  b");
    assert_eq!(cmds[1].line, 4);
    assert_eq!(cmds[1].expected, ["a b"]);
    // The here-document's `$ y` is input, not a command.
    assert_eq!(cmds[2].text, "cat <<'EOF' | wc -l\nx\n$ y\nEOF");
    assert_eq!(cmds[2].expected, ["2"]);
    assert_eq!(blocks[1].no_run.as_deref(), Some("needs a cloud"));

    // Bad guides are reported with their place.
    let e = parse("g.md", "```console no-run\n$ true\n```\n").unwrap_err();
    assert!(e.starts_with("g.md:1:") && e.contains("reason"), "{e}");
    let e = parse("g.md", "```console\noutput\n$ true\n```\n").unwrap_err();
    assert!(e.starts_with("g.md:2:"), "{e}");
    let e = parse("g.md", "```console\n$ true\n").unwrap_err();
    assert!(e.contains("never closed"), "{e}");
}

#[test]
fn output_is_compared_loosely_but_in_order() {
    assert_eq!(
        normalize("web-lb   LoadBalancer   127.0.40.190   80:31127/TCP   5s"),
        "web-lb LoadBalancer <addr> N:N/TCP Ns"
    );
    assert_eq!(normalize("from 127.0.0.1:51845 ..."), "from <addr> …");
    let got = "NAME AGE\nweb2-55748f7dfd-2dc4f 1/1 Running 0 3s\nweb2-55748f7dfd-hbjh5 1/1 Running 0 3s\n";
    assert!(
        check_output(
            &["NAME  AGE".into(), "web2-…  1/1  Running  0  0s".into()],
            got
        )
        .is_ok()
    );
    assert!(check_output(&["...".into(), "web2-… Running …".into()], got).is_ok());
    // Every expected line must match a whole line, in order.
    assert!(check_output(&["web2-… Pending …".into()], got).is_err());
    assert!(check_output(&["Running".into()], got).is_err());
    let e = check_output(&["web2-… 1/1 …".into(), "NAME AGE".into()], got).unwrap_err();
    assert!(e.contains("NAME AGE"), "{e}");
    assert!(matches("a … c … e", "a b c d e"));
    assert!(!matches("a … c … e", "a b d e"));
    assert!(matches("…", "anything"));
}

#[test]
fn a_failing_command_is_named_with_its_place_and_output() {
    let block = &parse(
        "docs/x.md",
        "\n```console\n$ echo hello\nhello\n$ echo 127.0.9.9; false\n127.0.9.9\n$ false\n```\n",
    )
    .unwrap()[0];
    let home = tempfile::tempdir().unwrap();
    let env = Env {
        octet: 201,
        state_dir: home.path().to_path_buf(),
        kubeconfig: home.path().join("kubeconfig"),
        path: std::env::var_os("PATH").unwrap_or_default(),
        home: home.path().to_path_buf(),
    };
    let e = run_block(block, &env).unwrap_err();
    assert!(
        e.starts_with("docs/x.md:2: command at line 7: `$ false`"),
        "{e}"
    );
    assert!(e.contains("exit code 1"), "{e}");
    // The address was moved to the lab's octet and back, and a shown failure is judged by output.
    let ok = &parse(
        "d.md",
        "```console\n$ echo 127.0.9.9; false\n127.0.9.9\n```\n",
    )
    .unwrap()[0];
    assert_eq!(run_block(ok, &env), Ok(()));
    // `$ echo $?` shows the status of the command before it (a failure shown without output
    // would fail the block; here the failure is what the guide shows).
    let status = &parse(
        "d.md",
        "```console\n$ sh -c 'echo failing; exit 3'\nfailing\n$ echo $?\n3\n```\n",
    )
    .unwrap()[0];
    assert_eq!(run_block(status, &env), Ok(()));
    let wrong = &parse("d.md", "```console\n$ echo one\ntwo\n```\n").unwrap()[0];
    let e = run_block(wrong, &env).unwrap_err();
    assert!(
        e.contains("expected:\n    two\ngot (exit code 0):\n    one"),
        "{e}"
    );
}
