//! What `kubectl exec` runs in an echo pod: a small shell of built-in commands. No host process is
//! ever started — a pod here is a set of sockets, not a process tree.
//!
//! | command | does |
//! |---|---|
//! | `hostname [-i]` | the pod's hostname (`-i`: its IP) |
//! | `env`, `printenv [NAME]` | the container's environment: spec `env`, Service variables, `HOSTNAME`, `PATH`, `HOME` |
//! | `cat [FILE|-]…`, `ls [-l] [-a] [PATH…]`, `cd`, `pwd` | the pod's files ([`vfs`]): `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, mounted volumes |
//! | `echo [-n] …`, `sleep N`, `exit [N]`, `true`, `false`, `export`, `unset` | as in sh |
//! | `fetch [-v] [-i] … URL` | an HTTP(S) request from the pod's own address ([`fetch`]) |
//! | `nslookup NAME` | cluster DNS as CoreDNS would answer, from the cluster view ([`dns`]) |
//! | `date`, `uname [-a]`, `whoami`, `id`, `stty size`, `help` | small facts |
//! | `sh [-c 'a; b && c || d']`, `sh` interactive | the [`parse`] subset; a prompt with a TTY |
//!
//! Anything else is "not found": exit 126 with the container runtime's message when `exec` names
//! it directly (as `kubectl exec POD -- bash` reports for an image without bash), 127 inside `sh`.

pub mod dns;
pub mod fetch;
pub mod files;
pub mod parse;
pub mod term;
pub mod vfs;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::streaming::remotecommand::{ExecStreams, ExitStatus, TerminalSize};
use crate::workload::PodIdentity;
use fetch::FetchContext;
use parse::Sep;
use term::{Input, Io, Line};
use vfs::{FsError, Vfs, normalize};

/// Directories whose programs the shell knows by their bare name.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The built-in commands, for `help` and "not found" hints.
pub const BUILTINS: &[&str] = &[
    "cat", "cd", "date", "echo", "env", "exit", "export", "false", "fetch", "help", "hostname",
    "id", "ls", "nslookup", "printenv", "pwd", "sh", "sleep", "stty", "true", "uname", "unset",
    "whoami",
];

/// Everything a container's shell knows about its pod.
#[derive(Clone, Debug)]
pub struct ShellContext {
    /// The pod.
    pub pod: Arc<PodIdentity>,
    /// The container exec'd into.
    pub container: String,
    /// The pod's hostname (`spec.hostname` or its name).
    pub hostname: String,
    /// The process environment, in order.
    pub env: Vec<(String, String)>,
    /// The container's files.
    pub files: Vfs,
    /// `fetch`'s network context (the pod's address, DNS, TLS trust).
    pub fetch: FetchContext,
    /// Cancelled when the pod stops: running commands end.
    pub shutdown: CancellationToken,
}

/// Runs `argv` in the container (`kubectl exec POD -- argv…`).
pub async fn exec(ctx: Arc<ShellContext>, argv: Vec<String>, streams: ExecStreams) -> ExitStatus {
    if argv.is_empty() {
        return ExitStatus::Error("no command specified".into());
    }
    let mut session = Session::new(ctx, streams);
    let code = session.run_top(argv).await;
    session.io.close().await;
    match code {
        0 => ExitStatus::Success,
        n => ExitStatus::Code(n),
    }
}

struct Session {
    shell: Shell,
    io: Io,
    input: Input,
}

impl Session {
    fn new(ctx: Arc<ShellContext>, streams: ExecStreams) -> Self {
        let size = Arc::new(Mutex::new(None));
        if let Some(mut resize) = streams.resize {
            let size = size.clone();
            tokio::spawn(async move {
                while let Some(s) = resize.recv().await {
                    *size.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
                }
            });
        }
        let mut vars: BTreeMap<String, String> = ctx.env.iter().cloned().collect();
        if streams.tty {
            vars.entry("TERM".into()).or_insert_with(|| "xterm".into());
        }
        Self {
            shell: Shell {
                ctx,
                vars,
                status: 0,
                cwd: "/".into(),
                size,
                exited: None,
            },
            io: Io::new(streams.stdout, streams.stderr, streams.tty),
            input: Input::new(streams.stdin, streams.tty),
        }
    }

    async fn run_top(&mut self, argv: Vec<String>) -> i32 {
        let name = program_name(&argv[0]);
        if !BUILTINS.contains(&name) {
            self.io
                .err(&format!(
                    "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{}\": \
                     executable file not found in $PATH: unknown\n(proxylab echo pods run no programs; \
                     built-in commands: {})\n",
                    argv[0],
                    BUILTINS.join(" ")
                ))
                .await;
            return 126;
        }
        self.shell.run(argv, &mut self.io, &mut self.input).await
    }
}

/// `/bin/ls` → `ls`: a path into a PATH directory names the built-in.
fn program_name(arg: &str) -> &str {
    match arg.rsplit_once('/') {
        Some((dir, name)) if PATH.split(':').any(|d| d == dir) => name,
        Some(_) => arg,
        None => arg,
    }
}

struct Shell {
    ctx: Arc<ShellContext>,
    vars: BTreeMap<String, String>,
    status: i32,
    cwd: String,
    size: Arc<Mutex<Option<TerminalSize>>>,
    /// Set by `exit`: the shell stops with this code.
    exited: Option<i32>,
}

type Boxed<'a> = Pin<Box<dyn Future<Output = i32> + Send + 'a>>;

impl Shell {
    fn lookup(&self, name: &str) -> Option<String> {
        match name {
            "?" => Some(self.status.to_string()),
            "$" => Some("1".into()),
            "0" => Some("sh".into()),
            "#" => Some("0".into()),
            "PWD" => Some(self.cwd.clone()),
            _ => self.vars.get(name).cloned(),
        }
    }

    /// Runs one command (built-in or not found) and returns its exit code.
    fn run<'a>(&'a mut self, argv: Vec<String>, io: &'a mut Io, input: &'a mut Input) -> Boxed<'a> {
        Box::pin(async move {
            let Some(first) = argv.first() else { return 0 };
            let name = program_name(first).to_owned();
            let args = &argv[1..];
            let code = match name.as_str() {
                "hostname" => self.hostname(args, io).await,
                "env" | "printenv" => self.env(&name, args, io).await,
                "echo" => echo(args, io).await,
                "cat" => self.cat(args, io, input).await,
                "ls" => self.ls(args, io).await,
                "cd" => self.cd(args, io).await,
                "pwd" => {
                    io.out(&format!("{}\n", self.cwd)).await;
                    0
                }
                "sleep" => self.sleep(args, io, input).await,
                "exit" => {
                    let code = match args.first().map(|a| a.parse::<i64>()) {
                        None => self.status,
                        Some(Ok(n)) => n.rem_euclid(256) as i32,
                        Some(Err(_)) => {
                            io.err(&format!(
                                "sh: exit: {}: numeric argument required\n",
                                args[0]
                            ))
                            .await;
                            2
                        }
                    };
                    self.exited = Some(code);
                    code
                }
                "true" => 0,
                "false" => 1,
                "export" => self.export(args, io).await,
                "unset" => {
                    for name in args {
                        self.vars.remove(name);
                    }
                    0
                }
                "fetch" => {
                    let ctx = self.ctx.clone();
                    tokio::select! {
                        code = fetch::fetch(&ctx.fetch, args, io) => code,
                        _ = input.interrupted() => 130,
                        _ = ctx.shutdown.cancelled() => 143,
                    }
                }
                "nslookup" => self.nslookup(args, io).await,
                "date" => {
                    let now = jiff::Timestamp::now();
                    io.out(&format!("{}\n", now.strftime("%a %b %e %H:%M:%S UTC %Y")))
                        .await;
                    0
                }
                "uname" => {
                    let text = if args.iter().any(|a| a == "-a") {
                        format!(
                            "Linux {} proxylab #1 {} GNU/Linux\n",
                            self.ctx.hostname,
                            std::env::consts::ARCH
                        )
                    } else {
                        "Linux\n".into()
                    };
                    io.out(&text).await;
                    0
                }
                "whoami" => {
                    io.out("root\n").await;
                    0
                }
                "id" => {
                    io.out("uid=0(root) gid=0(root) groups=0(root)\n").await;
                    0
                }
                "stty" => self.stty(args, io).await,
                "help" => {
                    io.out(&help_text()).await;
                    0
                }
                "sh" => self.sh(args, io, input).await,
                _ => {
                    let hint = match name.as_str() {
                        "curl" | "wget" => " (use: fetch URL)",
                        "bash" | "ash" | "zsh" => " (use: sh)",
                        _ => " (type help for the built-in commands)",
                    };
                    io.err(&format!("sh: {first}: not found{hint}\n")).await;
                    127
                }
            };
            self.status = code;
            code
        })
    }

    async fn hostname(&mut self, args: &[String], io: &mut Io) -> i32 {
        let text = match args.first().map(String::as_str) {
            None => self.ctx.hostname.clone(),
            Some("-i") => self.ctx.pod.ip.to_string(),
            Some(other) => {
                io.err(&format!(
                    "hostname: {other}: setting the hostname is not permitted\n"
                ))
                .await;
                return 1;
            }
        };
        io.out(&format!("{text}\n")).await;
        0
    }

    async fn env(&mut self, name: &str, args: &[String], io: &mut Io) -> i32 {
        if name == "printenv" && !args.is_empty() {
            let mut code = 0;
            for arg in args {
                match self.vars.get(arg) {
                    Some(v) => io.out(&format!("{v}\n")).await,
                    None => code = 1,
                }
            }
            return code;
        }
        if let Some(arg) = args.first() {
            io.err(&format!(
                "{name}: running {arg:?} with a changed environment is not supported here\n"
            ))
            .await;
            return 125;
        }
        // The container's order first (as the runtime set it), then what the shell added.
        let mut text = String::new();
        let mut seen = std::collections::BTreeSet::new();
        for (k, _) in &self.ctx.env {
            if let Some(v) = self.vars.get(k)
                && seen.insert(k.clone())
            {
                text.push_str(&format!("{k}={v}\n"));
            }
        }
        for (k, v) in &self.vars {
            if seen.insert(k.clone()) {
                text.push_str(&format!("{k}={v}\n"));
            }
        }
        io.out(&text).await;
        0
    }

    async fn cat(&mut self, args: &[String], io: &mut Io, input: &mut Input) -> i32 {
        let files: Vec<String> = if args.is_empty() {
            vec!["-".into()]
        } else {
            args.to_vec()
        };
        let mut code = 0;
        for file in files {
            if file == "-" {
                self.cat_stdin(io, input).await;
                continue;
            }
            let path = normalize(&self.cwd, &file);
            match self.ctx.files.read(&path) {
                Ok(content) => io.out_bytes(content).await,
                Err(err) => {
                    io.err(&format!("cat: {file}: {err}\n")).await;
                    code = 1;
                }
            }
        }
        code
    }

    async fn cat_stdin(&mut self, io: &mut Io, input: &mut Input) {
        if io.tty() {
            // A terminal delivers lines; Ctrl-D ends, Ctrl-C interrupts.
            loop {
                match input.line(io).await {
                    Line::Text(line) => io.out(&format!("{line}\n")).await,
                    Line::Interrupt | Line::Eof => return,
                }
            }
        }
        while let Some(chunk) = input.chunk().await {
            io.out_bytes(&chunk).await;
        }
    }

    async fn ls(&mut self, args: &[String], io: &mut Io) -> i32 {
        let long = args.iter().any(|a| a.starts_with('-') && a.contains('l'));
        let all = args.iter().any(|a| a.starts_with('-') && a.contains('a'));
        let mut paths: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
        let cwd = self.cwd.clone();
        if paths.is_empty() {
            paths.push(&cwd);
        }
        let many = paths.len() > 1;
        let mut code = 0;
        for (n, path) in paths.iter().enumerate() {
            let full = normalize(&self.cwd, path);
            let entries = match self.ctx.files.list(&full) {
                Ok(e) => e,
                Err(FsError::NotFound) => {
                    io.err(&format!("ls: {path}: No such file or directory\n"))
                        .await;
                    code = 2;
                    continue;
                }
                Err(err) => {
                    io.err(&format!("ls: {path}: {err}\n")).await;
                    code = 2;
                    continue;
                }
            };
            let mut text = String::new();
            if many && self.ctx.files.is_dir(&full) {
                if n > 0 {
                    text.push('\n');
                }
                text.push_str(&format!("{path}:\n"));
            }
            let mut names: Vec<(String, bool, usize)> = entries
                .into_iter()
                .map(|e| (e.name, e.dir, e.size))
                .collect();
            if all && self.ctx.files.is_dir(&full) {
                names.insert(0, ("..".into(), true, 0));
                names.insert(0, (".".into(), true, 0));
            }
            for (name, dir, size) in names {
                if long {
                    let mode = if dir { "drwxr-xr-x" } else { "-r--r--r--" };
                    text.push_str(&format!("{mode}    1 root     root     {size:>8} {name}\n"));
                } else {
                    text.push_str(&format!("{name}\n"));
                }
            }
            io.out(&text).await;
        }
        code
    }

    async fn cd(&mut self, args: &[String], io: &mut Io) -> i32 {
        let target = args.first().map_or("/root", String::as_str);
        let path = normalize(&self.cwd, target);
        if path == "/root" || self.ctx.files.is_dir(&path) {
            self.cwd = path;
            0
        } else {
            let why = if self.ctx.files.read(&path).is_ok() {
                "Not a directory"
            } else {
                "No such file or directory"
            };
            io.err(&format!("sh: cd: can't cd to {target}: {why}\n"))
                .await;
            2
        }
    }

    async fn sleep(&mut self, args: &[String], io: &mut Io, input: &mut Input) -> i32 {
        let Some(arg) = args.first() else {
            io.err("sleep: missing operand\n").await;
            return 1;
        };
        let (number, unit) = match arg.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&arg[..i], c),
            _ => (arg.as_str(), 's'),
        };
        let multiplier = match unit {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            _ => f64::NAN,
        };
        let secs = number.parse::<f64>().map(|n| n * multiplier);
        let Ok(secs) = secs else {
            io.err(&format!("sleep: invalid number '{arg}'\n")).await;
            return 1;
        };
        if !secs.is_finite() || secs < 0.0 {
            io.err(&format!("sleep: invalid number '{arg}'\n")).await;
            return 1;
        }
        let wait = Duration::from_secs_f64(secs.min(7.0 * 86400.0));
        tokio::select! {
            _ = tokio::time::sleep(wait) => 0,
            _ = input.interrupted() => 130,
            _ = self.ctx.shutdown.cancelled() => 143,
        }
    }

    async fn export(&mut self, args: &[String], io: &mut Io) -> i32 {
        if args.is_empty() {
            let text: String = self
                .vars
                .iter()
                .map(|(k, v)| format!("export {k}='{v}'\n"))
                .collect();
            io.out(&text).await;
            return 0;
        }
        for arg in args {
            if let Some((k, v)) = arg.split_once('=') {
                if !valid_name(k) {
                    io.err(&format!("sh: export: {arg}: bad variable name\n"))
                        .await;
                    return 1;
                }
                self.vars.insert(k.into(), v.into());
            }
        }
        0
    }

    async fn nslookup(&mut self, args: &[String], io: &mut Io) -> i32 {
        let Some(name) = args.first() else {
            io.err("usage: nslookup NAME\n").await;
            return 1;
        };
        match self.ctx.fetch.dns.resolve(name) {
            Ok(r) => {
                let mut text = format!(
                    "Server:\t\t(the cluster view; the lab runs no DNS server)\n\nName:\t{}\n",
                    r.name
                );
                for addr in &r.addrs {
                    text.push_str(&format!("Address: {addr}\n"));
                }
                text.push_str(&format!("({})\n", r.what));
                io.out(&text).await;
                0
            }
            Err(err) => {
                io.err(&format!("** server can't find {name}: NXDOMAIN\n{err}\n"))
                    .await;
                1
            }
        }
    }

    async fn stty(&mut self, args: &[String], io: &mut Io) -> i32 {
        if args.first().map(String::as_str) != Some("size") {
            io.err("stty: only 'stty size' is supported here\n").await;
            return 1;
        }
        let size = *self.size.lock().unwrap_or_else(|e| e.into_inner());
        match size {
            Some(s) if io.tty() => {
                io.out(&format!("{} {}\n", s.height, s.width)).await;
                0
            }
            _ => {
                io.err("stty: standard input: Not a tty\n").await;
                1
            }
        }
    }

    async fn sh(&mut self, args: &[String], io: &mut Io, input: &mut Input) -> i32 {
        match args.first().map(String::as_str) {
            Some("-c") => {
                let Some(script) = args.get(1) else {
                    io.err("sh: -c: option requires an argument\n").await;
                    return 2;
                };
                let code = self.run_script(script, io, input).await;
                self.exited = None;
                code
            }
            Some(other) if !other.starts_with('-') => {
                io.err(&format!(
                    "sh: can't open '{other}': scripts are not supported here (use sh -c '…')\n"
                ))
                .await;
                2
            }
            _ => self.interactive(io, input).await,
        }
    }

    /// Runs a command list; stops at `exit`.
    async fn run_script(&mut self, script: &str, io: &mut Io, input: &mut Input) -> i32 {
        let parsed = match parse::parse(script) {
            Ok(p) => p,
            Err(message) => {
                io.err(&format!("{message}\n")).await;
                self.status = 2;
                return 2;
            }
        };
        let mut skip = false;
        for (words, sep) in parsed {
            if !skip {
                let argv: Vec<String> = words
                    .iter()
                    .map(|w| parse::expand(w, &|n| self.lookup(n)))
                    .collect();
                // NAME=value alone sets a shell variable.
                if argv.len() == 1
                    && let Some((k, v)) = argv[0].split_once('=')
                    && valid_name(k)
                {
                    self.vars.insert(k.into(), v.into());
                    self.status = 0;
                } else {
                    self.run(argv, io, input).await;
                }
                if let Some(code) = self.exited {
                    return code;
                }
            }
            skip = match sep {
                Sep::Seq => false,
                Sep::And => self.status != 0,
                Sep::Or => self.status == 0,
            };
        }
        self.status
    }

    async fn interactive(&mut self, io: &mut Io, input: &mut Input) -> i32 {
        if !input.attached() {
            // `kubectl exec POD -- sh` without -i: stdin is empty, sh reads EOF and exits.
            return 0;
        }
        let tty = io.tty();
        if tty {
            io.out(&format!(
                "proxylab echo pod {}/{} ({}), container {}: a shell of built-in commands — type help\n",
                self.ctx.pod.namespace, self.ctx.pod.name, self.ctx.pod.ip, self.ctx.container
            ))
            .await;
        }
        loop {
            if tty {
                io.out(&format!("{}:{}# ", self.ctx.hostname, self.cwd))
                    .await;
            }
            let line = tokio::select! {
                line = input.line(io) => line,
                _ = self.ctx.shutdown.cancelled() => return 143,
            };
            match line {
                Line::Text(text) => {
                    let code = self.run_script(&text, io, input).await;
                    if let Some(code) = self.exited {
                        return code;
                    }
                    self.status = code;
                }
                Line::Interrupt => self.status = 130,
                Line::Eof => {
                    if tty {
                        io.out("exit\n").await;
                    }
                    return self.status;
                }
            }
        }
    }
}

async fn echo(args: &[String], io: &mut Io) -> i32 {
    let (newline, words) = match args.first().map(String::as_str) {
        Some("-n") => (false, &args[1..]),
        _ => (true, args),
    };
    let mut text = words.join(" ");
    if newline {
        text.push('\n');
    }
    io.out(&text).await;
    0
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn help_text() -> String {
    "Built-in commands of a proxylab echo pod (no programs run here):\n\
     \x20 hostname [-i]            the pod's name (-i: its IP)\n\
     \x20 env, printenv [NAME]     the container's environment\n\
     \x20 ls [-l] [-a] [PATH]      list the pod's files; cat FILE… prints them (cat alone copies stdin)\n\
     \x20 cd DIR, pwd              move around the files\n\
     \x20 fetch [-v] [-i] URL      HTTP(S) request from this pod's address (-v shows each hop)\n\
     \x20 nslookup NAME            cluster DNS as CoreDNS would answer (web, web.default, …)\n\
     \x20 echo, sleep N, exit [N], true, false, export NAME=V, unset NAME\n\
     \x20 date, uname [-a], whoami, id, stty size, help\n\
     \x20 sh -c 'a; b && c || d'   lists of commands with $VAR; no pipes, redirections or jobs\n"
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_names() {
        assert_eq!(program_name("/bin/ls"), "ls");
        assert_eq!(program_name("/usr/bin/env"), "env");
        assert_eq!(program_name("/opt/bin/ls"), "/opt/bin/ls");
        assert_eq!(program_name("sh"), "sh");
        assert!(valid_name("A_1"));
        assert!(!valid_name("1A"));
    }
}
