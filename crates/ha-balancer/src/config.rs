//! The balancer's configuration: a YAML file, or the quick form on the command line.
//!
//! The defaults are the kubeadm HA recipe's (HAProxy in `mode tcp` in front of the apiservers):
//! checks every 2 s, down after 3 failures, up after 2 successes, 5 s to connect. Where proxylab
//! chooses differently it says so here:
//!
//! - the check is `GET /readyz` with the apiservers' CA **verified** (the recipe uses `/healthz`
//!   with `verify none`): `/readyz` fails first during an apiserver's graceful shutdown, and a
//!   balancer should not trust whoever answers on a backend's port;
//! - no idle timeout by default (the recipe's `timeout client/server 35s` would cut a quiet
//!   `kubectl logs -f` if client-go did not ping); TCP keepalive and `TCP_USER_TIMEOUT` find dead
//!   peers instead. An idle limit below client-go's 30 s HTTP/2 ping is warned about;
//! - a failed connect is retried on every other backend (the recipe: `retries 1` + `redispatch`).
//!
//! ```yaml
//! mode: tcp                      # TLS passes through untouched
//! listen: 127.0.0.1:6443
//! admin: 127.0.0.1:8404          # "" turns it off
//! algorithm: round-robin         # random, least-conn, random-two, source-hash
//! backends:
//!   - {name: apiserver-1, address: 127.0.10.1:6443}
//!   - 127.0.10.2:6443            # the short form; named after its address
//!   - apiserver-3=127.0.10.3:6443
//! healthCheck:
//!   type: https                  # tcp, none
//!   path: /readyz
//!   caFile: pki/ca.crt           # relative to this file
//!   interval: 2s
//!   timeout: 2s
//!   rise: 2
//!   fall: 3
//! timeouts:
//!   connect: 5s
//!   drain: 30s
//!   idle: 0s                     # off
//!   keepalive: 30s
//!   userTimeout: 30s
//! learn:                         # follow the apiservers' own list (see crate::learn)
//!   kubeconfig: admin.conf       # best naming this balancer, so the watch fails over too
//!   stateFile: learned.json      # the last known list, for a restart during an outage
//! rebalance:                     # after a backend recovers, move connections back to it
//!   enabled: true
//!   interval: 1s                 # one step per interval, jittered over ±50%
//!   batch: 1                     # connections closed per step at most
//!   minAge: 5s                   # younger connections are left alone (they end by themselves)
//!   goawayGrace: 10s             # http mode: after a GOAWAY, streams still open are cut
//! ```
//!
//! `mode: http` terminates TLS and needs its certificates (see `crate::http`):
//!
//! ```yaml
//! mode: http
//! http:
//!   certFile: pki/balancer.crt         # what clients see (must name the balancer's address)
//!   keyFile: pki/balancer.key
//!   clientCaFile: pki/ca.crt           # verifies users' client certificates (CN → user, O → groups)
//!   proxyCertFile: pki/front-proxy-client.crt  # presented to the apiservers: a front-proxy
//!   proxyKeyFile: pki/front-proxy-client.key   # certificate their --requestheader-client-ca-file trusts
//! healthCheck:
//!   caFile: pki/ca.crt                 # verifies the apiservers, in checks and when forwarding
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proxylab_core::balance::Algorithm;
use proxylab_core::balance::health::RiseFall;
use proxylab_core::yaml::Document;
use serde_json::Value;

/// How the balancer treats what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// TLS passes through untouched: the apiservers see the clients' own handshakes and
    /// certificates (the kubeadm recipe's `mode tcp`).
    #[default]
    Tcp,
    /// TLS is terminated: the balancer verifies client certificates itself and forwards requests
    /// over its own TLS connections with a front-proxy certificate and `X-Remote-User`/
    /// `X-Remote-Group` (the apiservers' requestheader authentication), and moves clients with
    /// HTTP/2 GOAWAY.
    Http,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Tcp => "tcp",
            Mode::Http => "http",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Mode::Tcp),
            "http" => Ok(Mode::Http),
            other => Err(format!("unknown mode {other:?} (expected tcp or http)")),
        }
    }
}

/// One apiserver behind the balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// How logs, stats and hop records name it.
    pub name: String,
    pub address: SocketAddr,
    /// The name its certificate is checked against (default: its IP address).
    pub server_name: Option<String>,
}

/// What an active check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// `GET path` over TLS, the certificate verified, expecting 200.
    Https { path: String },
    /// A TCP connect.
    Tcp,
    /// No active checks: only passive detection (connect failures, resets).
    None,
}

/// The certificates `http` mode terminates and re-originates TLS with (unused in `tcp` mode).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpConfig {
    /// The serving certificate clients see (PEM, leaf first); it must name the balancer's address.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The CA users' client certificates are verified against (the cluster CA, kube-apiserver's
    /// `--client-ca-file`).
    pub client_ca_file: Option<PathBuf>,
    /// The front-proxy client certificate presented to the apiservers (kube-apiserver's
    /// `--proxy-client-cert-file`): signed by the CA in their `--requestheader-client-ca-file`.
    pub proxy_cert_file: Option<PathBuf>,
    pub proxy_key_file: Option<PathBuf>,
}

/// Active health checks.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    pub kind: CheckKind,
    pub interval: Duration,
    /// How long one check may take (connect, handshake, answer).
    pub timeout: Duration,
    pub rise_fall: RiseFall,
    /// The CA that signed the apiservers' serving certificates (HTTPS checks).
    pub ca_file: Option<PathBuf>,
    /// Do not verify the backends' certificates (the recipe's `verify none`). Off by default.
    pub insecure_skip_verify: bool,
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            kind: CheckKind::Https {
                path: "/readyz".into(),
            },
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            rise_fall: RiseFall::default(),
            ca_file: None,
            insecure_skip_verify: false,
        }
    }
}

/// Timeouts and socket options.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    /// One connect attempt to a backend (the recipe's `timeout connect 5s`).
    pub connect: Duration,
    /// How long established connections may run on after SIGTERM.
    pub drain: Duration,
    /// Closes a connection after this long without a byte either way. Off by default.
    pub idle: Option<Duration>,
    /// TCP keepalive idle time on both legs.
    pub keepalive: Duration,
    /// TCP_USER_TIMEOUT on both legs: how long sent data may stay unacknowledged.
    pub user_timeout: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            drain: Duration::from_secs(30),
            idle: None,
            // KubePrism's choice: a dead peer is found in about 30 s without cutting a quiet one.
            keepalive: Duration::from_secs(30),
            user_timeout: Duration::from_secs(30),
        }
    }
}

/// Moving load back to a backend that recovered (see `crate::rebalance`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rebalance {
    /// Off: connections stay where they are, as with HAProxy and every balancer in the reference.
    pub enabled: bool,
    /// Time between steps; each wait is drawn uniformly from ½ to 1½ of it.
    pub interval: Duration,
    /// The most connections closed in one step.
    pub batch: u32,
    /// Connections younger than this are never closed: short requests end by themselves, and
    /// closing one mid-request only makes it fail. What piles up on the others are long-lived ones.
    pub min_age: Duration,
    /// `http` mode: how long the streams in flight on a connection sent GOAWAY may run on before
    /// the connection is closed (a watch never ends by itself; its client resumes it elsewhere).
    pub goaway_grace: Duration,
}

impl Default for Rebalance {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(1),
            batch: 1,
            min_age: Duration::from_secs(5),
            goaway_grace: Duration::from_secs(10),
        }
    }
}

/// Learning the backends from the `kubernetes` Service's EndpointSlice (see `crate::learn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learn {
    /// The kubeconfig the watch uses. Best one that names this balancer: the watch then fails
    /// over with everything else instead of depending on one apiserver.
    pub kubeconfig: PathBuf,
    /// Where the last learned list is kept, so a restart while the apiservers are down still knows
    /// every one of them.
    pub state_file: Option<PathBuf>,
}

/// client-go pings HTTP/2 connections every 30 s (`ReadIdleTimeout`); an idle limit shorter than
/// that cuts quiet watches between pings.
pub const CLIENT_GO_PING: Duration = Duration::from_secs(30);

/// Everything the balancer runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mode: Mode,
    /// `http` mode's certificates.
    pub http: HttpConfig,
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub algorithm: Algorithm,
    pub backends: Vec<BackendConfig>,
    pub check: CheckConfig,
    pub timeouts: Timeouts,
    pub rebalance: Rebalance,
    /// Backends learned from the cluster, seeded by `backends` (off when `None`).
    pub learn: Option<Learn>,
    /// Extra connect attempts on other backends after a failed one (`None`: every other backend).
    pub retries: Option<u32>,
    /// The instance name in hop records.
    pub instance: String,
    /// Threads that accept and relay, each with a single-threaded runtime (0: the caller's
    /// runtime). Not in the file: the binary sets one per CPU, the lab and tests 0.
    pub serving_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Tcp,
            http: HttpConfig::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 8404))),
            algorithm: Algorithm::RoundRobin,
            backends: Vec::new(),
            check: CheckConfig::default(),
            timeouts: Timeouts::default(),
            rebalance: Rebalance::default(),
            learn: None,
            retries: None,
            instance: "ha-balancer".into(),
            serving_threads: 0,
        }
    }
}

impl Config {
    /// Problems no single field shows: no backend, two with one name or address, an HTTPS check
    /// with nothing to verify against.
    pub fn validate(&self) -> Result<(), String> {
        if self.backends.is_empty() {
            return Err("no backends: give at least one".into());
        }
        for (i, b) in self.backends.iter().enumerate() {
            if let Some(j) = self.backends[..i].iter().position(|o| o.name == b.name) {
                return Err(format!(
                    "backends[{i}]: the name {:?} is already used by backends[{j}]",
                    b.name
                ));
            }
            if let Some(j) = self.backends[..i]
                .iter()
                .position(|o| o.address == b.address)
            {
                return Err(format!(
                    "backends[{i}]: the address {} is already used by backends[{j}]",
                    b.address
                ));
            }
        }
        if matches!(self.check.kind, CheckKind::Https { .. })
            && self.check.ca_file.is_none()
            && !self.check.insecure_skip_verify
        {
            return Err(
                "healthCheck: HTTPS checks verify the apiservers' certificates: give caFile (--ca-file), or insecureSkipVerify: true"
                    .into(),
            );
        }
        if self.mode == Mode::Http {
            let h = &self.http;
            for (value, field, flag) in [
                (&h.cert_file, "http.certFile", "--tls-cert-file"),
                (&h.key_file, "http.keyFile", "--tls-private-key-file"),
                (&h.client_ca_file, "http.clientCaFile", "--client-ca-file"),
                (
                    &h.proxy_cert_file,
                    "http.proxyCertFile",
                    "--proxy-client-cert-file",
                ),
                (
                    &h.proxy_key_file,
                    "http.proxyKeyFile",
                    "--proxy-client-key-file",
                ),
            ] {
                if value.is_none() {
                    return Err(format!(
                        "{field}: http mode needs it ({flag}): see the http section of docs/ha-balancer.md"
                    ));
                }
            }
            if self.check.ca_file.is_none() {
                return Err(
                    "healthCheck: http mode forwards users' identities, so it verifies the apiservers: give caFile (--ca-file)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The warnings this configuration deserves (it still runs).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(idle) = self.timeouts.idle
            && idle < CLIENT_GO_PING
        {
            out.push(format!(
                "timeouts.idle {} is below client-go's 30s HTTP/2 ping: quiet watches, `kubectl logs -f` and exec sessions will be cut (kind#740, kubeadm#1685); leave it off and let keepalive find dead peers",
                proxylab_core::duration::format(idle)
            ));
        }
        if self.check.insecure_skip_verify {
            out.push("healthCheck.insecureSkipVerify: the backends' certificates are not verified; anything answering on their ports passes the checks".into());
        }
        out
    }
}

/// A configuration file that cannot be used: one line naming the file, line and field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}:{line}: {field}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        field: "file".into(),
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// Parses a configuration file's text (`path` names it in errors and anchors relative paths).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let err = |line: usize, field: &str, message: String| ConfigError {
        file: path.to_path_buf(),
        line: line.max(1),
        field: field.to_string(),
        message,
    };
    let docs =
        proxylab_core::yaml::parse_documents(text).map_err(|e| err(e.line, "yaml", e.message))?;
    let doc = match docs.len() {
        0 => {
            return Err(err(
                1,
                "file",
                "empty: expected a balancer configuration".into(),
            ));
        }
        1 => &docs[0],
        _ => {
            return Err(err(
                docs[1].line,
                "file",
                "one document expected, found several".into(),
            ));
        }
    };
    let base = path.parent().unwrap_or(Path::new(""));
    let r = Reader {
        doc,
        base,
        err: &err,
    };
    let config = r.config()?;
    config.validate().map_err(|m| {
        let field = m.split(':').next().unwrap_or("").to_string();
        err(
            doc.line_of(&field),
            &field,
            m[field.len()..].trim_start_matches(": ").to_string(),
        )
    })?;
    Ok(config)
}

type ErrFn<'a> = &'a dyn Fn(usize, &str, String) -> ConfigError;

/// Typed access to the document's fields, every error at the field's line.
struct Reader<'a> {
    doc: &'a Document,
    base: &'a Path,
    err: ErrFn<'a>,
}

const TOP: &[&str] = &[
    "mode",
    "http",
    "listen",
    "admin",
    "algorithm",
    "backends",
    "healthCheck",
    "timeouts",
    "rebalance",
    "learn",
    "retries",
    "instance",
];
const CHECK: &[&str] = &[
    "type",
    "path",
    "interval",
    "timeout",
    "rise",
    "fall",
    "caFile",
    "insecureSkipVerify",
];
const TIMEOUTS: &[&str] = &["connect", "drain", "idle", "keepalive", "userTimeout"];
const BACKEND: &[&str] = &["name", "address", "serverName"];
const REBALANCE: &[&str] = &["enabled", "interval", "batch", "minAge", "goawayGrace"];
const HTTP: &[&str] = &[
    "certFile",
    "keyFile",
    "clientCaFile",
    "proxyCertFile",
    "proxyKeyFile",
];
const LEARN: &[&str] = &["kubeconfig", "stateFile"];

impl Reader<'_> {
    fn fail(&self, field: &str, message: impl Into<String>) -> ConfigError {
        (self.err)(self.doc.line_of(field), field, message.into())
    }

    fn get(&self, path: &str) -> Option<&Value> {
        let mut v = &self.doc.value;
        for part in path.split('.') {
            let (key, index) = match part.split_once('[') {
                Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            v = v.get(key)?;
            if let Some(i) = index {
                v = v.get(i)?;
            }
        }
        (!v.is_null()).then_some(v)
    }

    fn known(&self, path: &str, fields: &[&str]) -> Result<(), ConfigError> {
        let obj = match path {
            "" => Some(&self.doc.value),
            p => self.get(p),
        };
        let Some(obj) = obj else { return Ok(()) };
        let Some(map) = obj.as_object() else {
            return Err(self.fail(path, "expected a mapping"));
        };
        for key in map.keys() {
            if !fields.contains(&key.as_str()) {
                let full = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                return Err(self.fail(
                    &full,
                    format!("unknown field (known here: {})", fields.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn string(&self, path: &str) -> Result<Option<String>, ConfigError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(self.fail(path, "expected a string")),
        }
    }

    /// A file named relative to the configuration file, which must be readable.
    fn file(&self, path: &str) -> Result<Option<PathBuf>, ConfigError> {
        let Some(f) = self.string(path)? else {
            return Ok(None);
        };
        let p = self.base.join(&f);
        if !p.is_file() {
            return Err(self.fail(path, format!("{} is not a readable file", p.display())));
        }
        Ok(Some(p))
    }

    fn duration(&self, path: &str) -> Result<Option<Duration>, ConfigError> {
        match self.string(path)? {
            None => Ok(None),
            Some(s) => proxylab_core::duration::parse_std(&s)
                .map(Some)
                .map_err(|e| self.fail(path, format!("{s:?}: {e}"))),
        }
    }

    fn number(&self, path: &str, min: u64) -> Result<Option<u64>, ConfigError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v >= min => Ok(Some(v)),
                _ => Err(self.fail(path, format!("expected a whole number ≥ {min}, got {n}"))),
            },
            Some(_) => Err(self.fail(path, "expected a number")),
        }
    }

    fn boolean(&self, path: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.fail(path, "expected true or false")),
        }
    }

    fn config(&self) -> Result<Config, ConfigError> {
        if !self.doc.value.is_object() {
            return Err(self.fail("", "expected a mapping of settings"));
        }
        self.known("", TOP)?;
        let mut c = Config::default();
        if let Some(m) = self.string("mode")? {
            c.mode = m.parse().map_err(|e: String| self.fail("mode", e))?;
        }
        if let Some(l) = self.string("listen")? {
            c.listen = parse_addr(&l).map_err(|e| self.fail("listen", e))?;
        }
        if let Some(a) = self.string("admin")? {
            c.admin = parse_opt_addr(&a).map_err(|e| self.fail("admin", e))?;
        }
        if let Some(a) = self.string("algorithm")? {
            c.algorithm = a
                .parse()
                .map_err(|e: proxylab_core::balance::UnknownAlgorithm| {
                    self.fail("algorithm", e.to_string())
                })?;
        }
        if let Some(n) = self.number("retries", 0)? {
            c.retries = Some(u32::try_from(n).unwrap_or(u32::MAX));
        }
        if let Some(i) = self.string("instance")? {
            c.instance = i;
        }
        match self.get("backends") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("backends[{i}]");
                    let b = match item {
                        Value::String(s) => parse_backend(s).map_err(|e| self.fail(&path, e))?,
                        Value::Object(_) => {
                            self.known(&path, BACKEND)?;
                            let address = self
                                .string(&format!("{path}.address"))?
                                .ok_or_else(|| self.fail(&format!("{path}.address"), "missing"))?;
                            let address = parse_addr(&address)
                                .map_err(|e| self.fail(&format!("{path}.address"), e))?;
                            BackendConfig {
                                name: self
                                    .string(&format!("{path}.name"))?
                                    .unwrap_or_else(|| address.to_string()),
                                address,
                                server_name: self.string(&format!("{path}.serverName"))?,
                            }
                        }
                        _ => {
                            return Err(self.fail(
                                &path,
                                "expected ADDRESS, NAME=ADDRESS or {name, address, serverName}",
                            ));
                        }
                    };
                    c.backends.push(b);
                }
            }
            Some(_) => return Err(self.fail("backends", "expected a list")),
        }
        self.known("healthCheck", CHECK)?;
        if let Some(t) = self.string("healthCheck.type")? {
            c.check.kind = match t.as_str() {
                "https" => CheckKind::Https {
                    path: "/readyz".into(),
                },
                "tcp" => CheckKind::Tcp,
                "none" => CheckKind::None,
                other => {
                    return Err(self.fail(
                        "healthCheck.type",
                        format!("unknown check {other:?} (expected https, tcp or none)"),
                    ));
                }
            };
        }
        if let Some(p) = self.string("healthCheck.path")? {
            match &mut c.check.kind {
                CheckKind::Https { path } => {
                    if !p.starts_with('/') {
                        return Err(self.fail("healthCheck.path", "must start with /"));
                    }
                    *path = p;
                }
                _ => {
                    return Err(self.fail("healthCheck.path", "only an https check has a path"));
                }
            }
        }
        if let Some(d) = self.duration("healthCheck.interval")? {
            if d.is_zero() {
                return Err(self.fail("healthCheck.interval", "must be more than 0"));
            }
            c.check.interval = d;
        }
        if let Some(d) = self.duration("healthCheck.timeout")? {
            if d.is_zero() {
                return Err(self.fail("healthCheck.timeout", "must be more than 0"));
            }
            c.check.timeout = d;
        }
        if let Some(n) = self.number("healthCheck.rise", 1)? {
            c.check.rise_fall.rise = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = self.number("healthCheck.fall", 1)? {
            c.check.rise_fall.fall = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(f) = self.string("healthCheck.caFile")? {
            let p = self.base.join(&f);
            if !p.is_file() {
                return Err(self.fail(
                    "healthCheck.caFile",
                    format!("{} is not a readable file", p.display()),
                ));
            }
            c.check.ca_file = Some(p);
        }
        if let Some(b) = self.boolean("healthCheck.insecureSkipVerify")? {
            c.check.insecure_skip_verify = b;
        }
        self.known("timeouts", TIMEOUTS)?;
        if let Some(d) = self.duration("timeouts.connect")? {
            if d.is_zero() {
                return Err(self.fail("timeouts.connect", "must be more than 0"));
            }
            c.timeouts.connect = d;
        }
        if let Some(d) = self.duration("timeouts.drain")? {
            c.timeouts.drain = d;
        }
        if let Some(d) = self.duration("timeouts.idle")? {
            c.timeouts.idle = (!d.is_zero()).then_some(d);
        }
        self.known("rebalance", REBALANCE)?;
        if let Some(b) = self.boolean("rebalance.enabled")? {
            c.rebalance.enabled = b;
        }
        if let Some(d) = self.duration("rebalance.interval")? {
            if d.is_zero() {
                return Err(self.fail("rebalance.interval", "must be more than 0"));
            }
            c.rebalance.interval = d;
        }
        if let Some(n) = self.number("rebalance.batch", 1)? {
            c.rebalance.batch = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(d) = self.duration("rebalance.minAge")? {
            c.rebalance.min_age = d;
        }
        if let Some(d) = self.duration("rebalance.goawayGrace")? {
            c.rebalance.goaway_grace = d;
        }
        self.known("http", HTTP)?;
        c.http = HttpConfig {
            cert_file: self.file("http.certFile")?,
            key_file: self.file("http.keyFile")?,
            client_ca_file: self.file("http.clientCaFile")?,
            proxy_cert_file: self.file("http.proxyCertFile")?,
            proxy_key_file: self.file("http.proxyKeyFile")?,
        };
        self.known("learn", LEARN)?;
        if self.get("learn").is_some() {
            let kubeconfig = self
                .string("learn.kubeconfig")?
                .ok_or_else(|| self.fail("learn.kubeconfig", "missing"))?;
            let kubeconfig = self.base.join(kubeconfig);
            if !kubeconfig.is_file() {
                return Err(self.fail(
                    "learn.kubeconfig",
                    format!("{} is not a readable file", kubeconfig.display()),
                ));
            }
            c.learn = Some(Learn {
                kubeconfig,
                state_file: self.string("learn.stateFile")?.map(|f| self.base.join(f)),
            });
        }
        if let Some(d) = self.duration("timeouts.keepalive")? {
            if d < Duration::from_secs(1) {
                return Err(self.fail("timeouts.keepalive", "must be at least 1s"));
            }
            c.timeouts.keepalive = d;
        }
        if let Some(d) = self.duration("timeouts.userTimeout")? {
            c.timeouts.user_timeout = d;
        }
        Ok(c)
    }
}

/// `ip:port`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an ip:port address"))
}

/// `ip:port`, or empty for "off".
pub fn parse_opt_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    parse_addr(s).map(Some)
}

/// A backend in the short form: `ADDRESS` or `NAME=ADDRESS`.
pub fn parse_backend(s: &str) -> Result<BackendConfig, String> {
    let (name, addr) = match s.split_once('=') {
        Some((n, a)) if !n.is_empty() => (Some(n.to_string()), a),
        Some(_) => return Err(format!("{s:?}: the name before = is empty")),
        None => (None, s),
    };
    let address = parse_addr(addr).map_err(|e| {
        format!("{e} (a backend is ADDRESS or NAME=ADDRESS, e.g. apiserver-1=127.0.10.1:6443)")
    })?;
    Ok(BackendConfig {
        name: name.unwrap_or_else(|| address.to_string()),
        address,
        server_name: None,
    })
}

/// The quick form of `--health-check`: `https:/readyz` (any path), `https`, `tcp`, `none`.
pub fn parse_check(s: &str) -> Result<CheckKind, String> {
    match s {
        "tcp" => Ok(CheckKind::Tcp),
        "none" => Ok(CheckKind::None),
        "https" => Ok(CheckKind::Https {
            path: "/readyz".into(),
        }),
        _ => match s.strip_prefix("https:") {
            Some(p) if p.starts_with('/') => Ok(CheckKind::Https { path: p.into() }),
            _ => Err(format!(
                "{s:?}: expected https:/PATH (e.g. https:/readyz), https, tcp or none"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/nonexistent/ha.yaml"), text)
    }

    #[test]
    fn the_recipe_defaults_apply_to_a_minimal_file() {
        let c = parse_str("backends: [127.0.10.1:6443]\nhealthCheck: {type: tcp}\n").unwrap();
        assert_eq!(c.check.interval, Duration::from_secs(2));
        assert_eq!(c.check.rise_fall, RiseFall { rise: 2, fall: 3 });
        assert_eq!(c.timeouts.connect, Duration::from_secs(5));
        assert_eq!(c.timeouts.idle, None);
        assert_eq!(c.backends[0].name, "127.0.10.1:6443");
        assert_eq!(c.algorithm, Algorithm::RoundRobin);
    }

    #[test]
    fn every_form_of_backend_and_setting_is_read() {
        let c = parse_str(
            "mode: tcp\nlisten: 127.0.0.1:7443\nadmin: \"\"\nalgorithm: leastconn\nretries: 1\n\
             backends:\n  - {name: a, address: 127.0.10.1:6443, serverName: apiserver}\n  - b=127.0.10.2:6443\n\
             healthCheck:\n  type: https\n  path: /livez\n  insecureSkipVerify: true\n  interval: 500ms\n  rise: 1\n  fall: 2\n\
             timeouts: {connect: 1s, idle: 10m, keepalive: 15s}\n\
             rebalance: {enabled: false, interval: 250ms, batch: 4, minAge: 1m}\n",
        )
        .unwrap();
        assert_eq!(
            c.rebalance,
            crate::config::Rebalance {
                enabled: false,
                interval: Duration::from_millis(250),
                batch: 4,
                min_age: Duration::from_secs(60),
                goaway_grace: Duration::from_secs(10),
            }
        );
        assert_eq!(c.listen, "127.0.0.1:7443".parse().unwrap());
        assert_eq!(c.admin, None);
        assert_eq!(c.algorithm, Algorithm::LeastConn);
        assert_eq!(c.retries, Some(1));
        assert_eq!(c.backends[0].server_name.as_deref(), Some("apiserver"));
        assert_eq!(c.backends[1].name, "b");
        assert_eq!(
            c.check.kind,
            CheckKind::Https {
                path: "/livez".into()
            }
        );
        assert_eq!(c.check.interval, Duration::from_millis(500));
        assert_eq!(c.timeouts.idle, Some(Duration::from_secs(600)));
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.contains("insecureSkipVerify"))
        );
    }

    #[test]
    fn mistakes_are_one_line_with_file_line_and_field() {
        for (text, want) in [
            (
                "backends: [127.0.10.1:6443]\nhealthCheck: {type: tcp}\ntimeout: {connect: 1s}\n",
                "/nonexistent/ha.yaml:3: timeout: unknown field",
            ),
            (
                "backends: [127.0.10.1:6443]\nhealthCheck:\n  type: tcp\n  interval: 2\n",
                "/nonexistent/ha.yaml:4: healthCheck.interval: \"2\":",
            ),
            (
                "backends:\n  - 127.0.10.1:6443\n  - nope\nhealthCheck: {type: tcp}\n",
                "/nonexistent/ha.yaml:3: backends[1]: \"nope\" is not an ip:port address",
            ),
            (
                "backends: [127.0.10.1:6443]\n",
                "/nonexistent/ha.yaml:1: healthCheck: HTTPS checks verify",
            ),
            (
                "backends: [a=127.0.10.1:6443, a=127.0.10.2:6443]\nhealthCheck: {type: tcp}\n",
                "backends[1]: the name \"a\" is already used by backends[0]",
            ),
            ("healthCheck: {type: tcp}\n", "no backends"),
            (
                "backends: [127.0.10.1:6443]\nhealthCheck: {type: tcp, fall: 0}\n",
                "healthCheck.fall: expected a whole number ≥ 1",
            ),
            ("mode: udp\n", "mode: unknown mode \"udp\""),
            (
                "mode: http\nbackends: [127.0.10.1:6443]\nhealthCheck: {type: tcp}\n",
                "/nonexistent/ha.yaml:1: http.certFile: http mode needs it (--tls-cert-file)",
            ),
            (
                "mode: http\nbackends: [127.0.10.1:6443]\nhttp: {certFile: nope.crt}\n",
                "/nonexistent/ha.yaml:3: http.certFile: /nonexistent/nope.crt is not a readable file",
            ),
            (
                "backends: [127.0.10.1:6443]\nhealthCheck: {type: tcp}\nhttp: {cert: x}\n",
                "http.cert: unknown field",
            ),
            (
                "backends: [127.0.10.1:6443]\nhealthCheck: {type: tcp}\nrebalance: {batch: 0}\n",
                "/nonexistent/ha.yaml:3: rebalance.batch: expected a whole number ≥ 1",
            ),
            ("backends: [\n", "yaml: invalid YAML"),
            ("", "file: empty"),
        ] {
            let e = parse_str(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn quick_forms_parse() {
        assert_eq!(
            parse_check("https:/readyz").unwrap(),
            CheckKind::Https {
                path: "/readyz".into()
            }
        );
        assert_eq!(parse_check("tcp").unwrap(), CheckKind::Tcp);
        assert!(parse_check("http:/readyz").is_err());
        assert_eq!(
            parse_backend("apiserver-1=127.0.10.1:6443").unwrap().name,
            "apiserver-1"
        );
        assert!(parse_backend("=127.0.0.1:1").is_err());
        assert!(parse_backend("127.0.0.1").is_err());
    }

    #[test]
    fn a_short_idle_limit_is_warned_about() {
        let mut c = Config::default();
        c.timeouts.idle = Some(Duration::from_secs(10));
        assert!(c.warnings()[0].contains("below client-go's 30s"));
        c.timeouts.idle = Some(Duration::from_secs(600));
        assert!(c.warnings().is_empty());
    }
}
