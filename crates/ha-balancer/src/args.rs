//! Command-line flags: the quick form (`--listen`, repeated `--backend`, `--health-check
//! https:/readyz`) or `--config FILE` (see [`crate::config`]), not both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use proxylab_core::balance::Algorithm;
use proxylab_core::telemetry::LogFormat;

use crate::config::{self, BackendConfig, CheckKind, Config, HttpConfig, Mode};

/// An address flag an empty value turns off (an alias, so clap takes the whole `Option` from the
/// value parser instead of treating the flag as optional).
pub type OptionalAddr = Option<SocketAddr>;

const QUICK: &[&str] = &[
    "mode",
    "tls_cert_file",
    "tls_private_key_file",
    "client_ca_file",
    "proxy_client_cert_file",
    "proxy_client_key_file",
    "goaway_grace",
    "listen",
    "backends",
    "health_check",
    "ca_file",
    "insecure_skip_tls_verify",
    "balance",
    "admin_address",
    "check_interval",
    "rise",
    "fall",
    "connect_timeout",
    "drain_timeout",
    "idle_timeout",
    "rebalance_interval",
    "rebalance_min_age",
    "learn_kubeconfig",
    "state_file",
];

/// The balancer's flags. The lab builds a [`Config`] directly.
#[derive(Debug, Clone, clap::Args)]
pub struct HaBalancerArgs {
    /// A YAML configuration file (listeners, backends, checks, algorithm, timeouts), reloaded on
    /// change and on SIGHUP. Excludes the quick-form flags below.
    #[arg(long, value_name = "FILE", conflicts_with_all = QUICK)]
    pub config: Option<PathBuf>,

    /// tcp: TLS passes through untouched. http: TLS is terminated, client certificates are verified
    /// here and the user is passed on with a front-proxy certificate and X-Remote-User/Group
    /// (needs the five certificate flags below and --ca-file).
    #[arg(long, value_name = "MODE", default_value = "tcp")]
    pub mode: Mode,

    /// http mode: the serving certificate clients see (PEM; it must name the balancer's address).
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// http mode: the serving certificate's key.
    #[arg(long, value_name = "FILE")]
    pub tls_private_key_file: Option<PathBuf>,

    /// http mode: the CA users' client certificates are verified against (CN → user, O → groups).
    #[arg(long, value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,

    /// http mode: the front-proxy client certificate presented to the apiservers (signed by the CA
    /// of their --requestheader-client-ca-file).
    #[arg(long, value_name = "FILE")]
    pub proxy_client_cert_file: Option<PathBuf>,

    /// http mode: the front-proxy client certificate's key.
    #[arg(long, value_name = "FILE")]
    pub proxy_client_key_file: Option<PathBuf>,

    /// http mode: how long streams in flight on a connection sent GOAWAY to rebalance may run on
    /// before it is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = proxylab_core::duration::parse_std)]
    pub goaway_grace: Duration,

    /// Where clients connect.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6443", value_parser = config::parse_addr)]
    pub listen: SocketAddr,

    /// An apiserver: ADDRESS or NAME=ADDRESS (repeat, or comma-separate).
    #[arg(long = "backend", value_name = "[NAME=]ADDR", value_delimiter = ',', value_parser = config::parse_backend)]
    pub backends: Vec<BackendConfig>,

    /// The active check: https:/PATH (GET PATH over verified TLS, 200 passes), tcp, or none.
    #[arg(long, value_name = "CHECK", default_value = "https:/readyz", value_parser = config::parse_check)]
    pub health_check: CheckKind,

    /// The CA that signed the apiservers' serving certificates (for https checks).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Do not verify the apiservers' certificates in checks (HAProxy's `verify none`).
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,

    /// round-robin, least-conn, random, random-two or source-hash.
    #[arg(long, value_name = "ALGORITHM", default_value = "round-robin")]
    pub balance: Algorithm,

    /// The admin endpoint (/stats, /metrics, /debug/hops, /healthz, /readyz); empty turns it off.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8404", value_parser = config::parse_opt_addr)]
    pub admin_address: OptionalAddr,

    /// Time between checks of a backend (a Go duration).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = positive_duration)]
    pub check_interval: Duration,

    /// Consecutive passed checks that bring a down backend up.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub rise: u32,

    /// Consecutive failures that take an up backend down.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub fall: u32,

    /// One connect attempt to a backend.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = positive_duration)]
    pub connect_timeout: Duration,

    /// How long established connections may run on after SIGTERM.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = proxylab_core::duration::parse_std)]
    pub drain_timeout: Duration,

    /// Close connections idle this long (0: never, the default; below 30s is warned about).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = proxylab_core::duration::parse_std)]
    pub idle_timeout: Duration,

    /// After a backend recovers, close one long-lived connection on the busiest backend per this
    /// interval (jittered), oldest first, until connection counts are even (0: never).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = proxylab_core::duration::parse_std)]
    pub rebalance_interval: Duration,

    /// Connections younger than this are never closed to rebalance.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = proxylab_core::duration::parse_std)]
    pub rebalance_min_age: Duration,

    /// Learn the backends from the `kubernetes` Service's EndpointSlice in `default` (every
    /// apiserver publishes itself there), seeded by --backend, watching with this kubeconfig (best
    /// one naming this balancer).
    #[arg(long, value_name = "FILE")]
    pub learn_kubeconfig: Option<PathBuf>,

    /// Keep the last learned list of backends here (with --learn-kubeconfig), so a restart during
    /// an outage still knows every apiserver.
    #[arg(long, value_name = "FILE", requires = "learn_kubeconfig")]
    pub state_file: Option<PathBuf>,

    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match proxylab_core::duration::parse_std(s) {
        Ok(d) if d.is_zero() => Err("must be more than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

impl HaBalancerArgs {
    /// The configuration these flags describe (read from `--config` when given), and the file to
    /// follow for reloads.
    pub fn to_config(&self) -> Result<(Config, Option<PathBuf>), crate::Error> {
        if let Some(path) = &self.config {
            return Ok((config::load(path)?, Some(path.clone())));
        }
        if let Some(ca) = &self.ca_file
            && !ca.is_file()
        {
            return Err(crate::Error::Config(format!(
                "--ca-file {}: not a readable file",
                ca.display()
            )));
        }
        for (flag, file) in [
            ("--learn-kubeconfig", &self.learn_kubeconfig),
            ("--tls-cert-file", &self.tls_cert_file),
            ("--tls-private-key-file", &self.tls_private_key_file),
            ("--client-ca-file", &self.client_ca_file),
            ("--proxy-client-cert-file", &self.proxy_client_cert_file),
            ("--proxy-client-key-file", &self.proxy_client_key_file),
        ] {
            if let Some(f) = file
                && !f.is_file()
            {
                return Err(crate::Error::Config(format!(
                    "{flag} {}: not a readable file",
                    f.display()
                )));
            }
        }
        if self.mode == Mode::Http {
            for (flag, file, what) in [
                (
                    "--tls-cert-file",
                    &self.tls_cert_file,
                    "the serving certificate clients see",
                ),
                (
                    "--tls-private-key-file",
                    &self.tls_private_key_file,
                    "its key",
                ),
                (
                    "--client-ca-file",
                    &self.client_ca_file,
                    "the CA of users' client certificates",
                ),
                (
                    "--proxy-client-cert-file",
                    &self.proxy_client_cert_file,
                    "the front-proxy client certificate",
                ),
                (
                    "--proxy-client-key-file",
                    &self.proxy_client_key_file,
                    "its key",
                ),
                (
                    "--ca-file",
                    &self.ca_file,
                    "the CA of the apiservers' serving certificates",
                ),
            ] {
                if file.is_none() {
                    return Err(crate::Error::Config(format!(
                        "--mode http needs {flag} ({what})"
                    )));
                }
            }
        }
        let mut c = Config {
            mode: self.mode,
            http: HttpConfig {
                cert_file: self.tls_cert_file.clone(),
                key_file: self.tls_private_key_file.clone(),
                client_ca_file: self.client_ca_file.clone(),
                proxy_cert_file: self.proxy_client_cert_file.clone(),
                proxy_key_file: self.proxy_client_key_file.clone(),
            },
            listen: self.listen,
            admin: self.admin_address,
            algorithm: self.balance,
            backends: self.backends.clone(),
            ..Config::default()
        };
        c.check.kind = self.health_check.clone();
        c.check.ca_file = self.ca_file.clone();
        c.check.insecure_skip_verify = self.insecure_skip_tls_verify;
        c.check.interval = self.check_interval;
        c.check.rise_fall.rise = self.rise;
        c.check.rise_fall.fall = self.fall;
        c.timeouts.connect = self.connect_timeout;
        c.timeouts.drain = self.drain_timeout;
        c.timeouts.idle = (!self.idle_timeout.is_zero()).then_some(self.idle_timeout);
        c.rebalance.enabled = !self.rebalance_interval.is_zero();
        if c.rebalance.enabled {
            c.rebalance.interval = self.rebalance_interval;
        }
        c.rebalance.min_age = self.rebalance_min_age;
        c.rebalance.goaway_grace = self.goaway_grace;
        c.learn = self
            .learn_kubeconfig
            .clone()
            .map(|kubeconfig| config::Learn {
                kubeconfig,
                state_file: self.state_file.clone(),
            });
        c.validate().map_err(|e| {
            crate::Error::Config(
                e.replace(
                    "no backends: give at least one",
                    "no backends: give --backend (repeat it) or --config",
                )
                .replace(
                    "give caFile (--ca-file), or insecureSkipVerify: true",
                    "give --ca-file, or --insecure-skip-tls-verify",
                )
                .replace("give caFile (--ca-file)", "give --ca-file"),
            )
        })?;
        Ok((c, None))
    }
}
