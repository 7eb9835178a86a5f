//! Command-line flags (kube-proxy's names where kube-proxy has the flag) and their translation into a
//! [`ForwarderConfig`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use proxylab_core::balance::Algorithm;
use proxylab_core::l4::tcp::RelayMode;
use proxylab_core::l4::udp::UdpConfig;
use proxylab_core::telemetry::LogFormat;

use crate::{ForwarderConfig, Source};

/// An address flag that an empty value turns off. (An alias, so clap takes the whole `Option` from the
/// value parser instead of treating the flag as optional.)
pub type OptionalAddr = Option<SocketAddr>;

/// The forwarder's flags. The lab flattens this struct into its own command line.
#[derive(Debug, Clone, clap::Args)]
pub struct ForwarderArgs {
    /// A file of Kubernetes manifests (Services and EndpointSlices, multi-document YAML as `kubectl get
    /// -o yaml` prints them). Reloaded when it changes and on SIGHUP. Without it, the cluster named by
    /// the kubeconfig is watched.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The kubeconfig to watch Services, EndpointSlices and Nodes through (kubectl's rules when absent:
    /// KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The node this forwarder runs on: decides which endpoints are local for
    /// `externalTrafficPolicy`/`internalTrafficPolicy: Local`, and whose addresses get NodePorts.
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// The node's addresses, where NodePorts and health-check node ports listen (repeat or
    /// comma-separate). Default: the Node object's addresses, else 127.0.0.1.
    #[arg(long = "node-ip", value_name = "IP", value_delimiter = ',')]
    pub node_ips: Vec<IpAddr>,

    /// The address upstream connections and UDP sessions leave from (any free port), so endpoints
    /// and hop records see this node rather than the kernel's choice. Must be an address of this
    /// host, of the endpoints' family. Default: the kernel's choice.
    #[arg(long, value_name = "IP")]
    pub source_address: Option<IpAddr>,

    /// Idle time after which a UDP session ends (kube-proxy's default: 250ms). A Go duration, as
    /// kube-proxy reads it: `250ms`, `2s`, `1m30s`, `15m0s` (a bare number other than 0 is an error).
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = proxylab_core::duration::parse_std)]
    pub udp_timeout: Duration,

    /// Most UDP sessions at once per listener; beyond it the least recently used is evicted.
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    pub udp_max_sessions: usize,

    /// Where kube-proxy's `/healthz` and `/livez` are served. kube-proxy defaults to 0.0.0.0:10256; we
    /// default to loopback (listen on loopback unless told otherwise). Empty disables it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:10256", value_parser = parse_opt_addr)]
    pub healthz_bind_address: OptionalAddr,

    /// The admin endpoint: /healthz, /readyz, /metrics, /debug/hops. Empty disables it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:10249", value_parser = parse_opt_addr)]
    pub admin_address: OptionalAddr,

    /// How an endpoint is picked: round-robin (kube-proxy's, over a list shuffled on each change),
    /// random, or least-conn.
    #[arg(long, value_name = "ALGORITHM", default_value = "round-robin")]
    pub balance: Algorithm,

    /// How TCP bytes are moved: splice (Linux, zero-copy through a pipe; the default) or copy.
    #[arg(long, value_name = "MODE", default_value = "splice", value_parser = parse_relay)]
    pub relay: RelayMode,

    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

impl ForwarderArgs {
    /// The configuration these flags describe. The file source wins over the kubeconfig.
    pub fn to_config(&self) -> ForwarderConfig {
        let source = match &self.config {
            Some(f) => Source::File(f.clone()),
            None => Source::Kube {
                kubeconfig: self.kubeconfig.clone(),
            },
        };
        ForwarderConfig {
            source,
            node_name: self.node_name.clone(),
            node_ips: self.node_ips.clone(),
            udp: UdpConfig {
                idle_timeout: self.udp_timeout,
                max_sessions: self.udp_max_sessions,
                ..UdpConfig::default()
            },
            healthz_address: self.healthz_bind_address,
            admin_address: self.admin_address,
            algorithm: self.balance,
            relay_mode: self.relay,
            source_address: self.source_address,
            ..ForwarderConfig::new(Source::View(Default::default()))
        }
    }
}

fn parse_opt_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("{s:?} is not an ip:port address"))
}

fn parse_relay(s: &str) -> Result<RelayMode, String> {
    match s {
        "splice" | "auto" => Ok(RelayMode::Auto),
        "copy" => Ok(RelayMode::Copy),
        other => Err(format!("{other:?}: expected splice or copy")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ForwarderArgs,
    }

    #[test]
    fn defaults_match_kube_proxy_except_the_bind_address() {
        let cli = Cli::parse_from(["forwarder"]);
        assert_eq!(cli.args.udp_timeout, Duration::from_millis(250));
        assert_eq!(
            cli.args.healthz_bind_address,
            Some("127.0.0.1:10256".parse().unwrap())
        );
        let cli = Cli::parse_from([
            "forwarder",
            "--node-ip",
            "127.0.20.1,127.0.20.9",
            "--balance",
            "least-conn",
            "--healthz-bind-address",
            "",
        ]);
        assert_eq!(cli.args.node_ips.len(), 2);
        assert_eq!(cli.args.balance, Algorithm::LeastConn);
        assert_eq!(cli.args.healthz_bind_address, None);
    }

    /// `--udp-timeout` is a Go duration, as kube-proxy's: what Go prints (`15m0s`) parses, a bare
    /// number of seconds does not.
    #[test]
    fn udp_timeout_takes_go_durations() {
        let parse =
            |v: &str| Cli::try_parse_from(["forwarder".into(), format!("--udp-timeout={v}")]);
        let timeout = |v: &str| parse(v).unwrap().args.udp_timeout;
        assert_eq!(timeout("15m0s"), Duration::from_secs(900));
        assert_eq!(timeout("1h2m3.5s"), Duration::from_millis(3_723_500));
        assert_eq!(timeout("1.5s"), Duration::from_millis(1500));
        assert_eq!(timeout("500ms"), Duration::from_millis(500));
        assert_eq!(timeout("0"), Duration::ZERO);
        for bad in ["30", "fast", "-1s", "1d", ""] {
            let err = parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
    }
}
