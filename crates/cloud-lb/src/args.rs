//! Command-line flags and their translation into a [`CloudLbConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use proxylab_core::telemetry::LogFormat;

use crate::pool::{Pool, Pools};
use crate::{CloudLbConfig, DEFAULT_CLASS};

/// An address flag that an empty value turns off (an alias, so clap takes the whole `Option` from
/// the value parser).
pub type OptionalAddr = Option<SocketAddr>;

/// The `cloud-lb` flags. The lab builds the same flags for its in-process copy.
#[derive(Debug, Clone, clap::Args)]
pub struct CloudLbArgs {
    /// The kubeconfig to watch Services, Nodes and EndpointSlices through and to write statuses,
    /// finalizers and Events with (kubectl's rules when absent: KUBECONFIG, ~/.kube/config,
    /// in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// An address pool, repeatable: `[NAME=]RANGE[,RANGE…][,auto-assign=false][,avoid-buggy-ips=true]`
    /// where a RANGE is a CIDR (127.0.50.0/24), `first-last` or one address; without a NAME the pool
    /// is called `default`. Without any --pool: `default=127.0.50.0/24,avoid-buggy-ips=true`, the
    /// lab's range.
    #[arg(long = "pool", value_name = "POOL", value_parser = parse_pool)]
    pub pools: Vec<Pool>,

    /// Keeps the allocations across restarts, so a Service gets the same address back (JSON,
    /// replaced atomically). Without it the addresses shown in the Services' statuses are adopted.
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,

    /// The admin endpoint: /healthz, /readyz, /metrics, /debug/hops. Empty disables it. (10258 is
    /// the cloud-controller-manager's port.)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:10258", value_parser = parse_opt_addr)]
    pub admin: OptionalAddr,

    /// The `spec.loadBalancerClass` this load balancer serves. With the default it also serves
    /// Services without a class; with another class, only that class (so a second instance can
    /// run beside the first).
    #[arg(long, value_name = "CLASS", default_value = DEFAULT_CLASS)]
    pub class: String,

    /// kube-proxy's health port on every node, checked for `externalTrafficPolicy: Cluster`.
    #[arg(long, value_name = "PORT", default_value_t = 10256)]
    pub node_health_port: u16,

    /// How often each node is health-checked (a Go duration: 2s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = proxylab_core::duration::parse_std)]
    pub health_interval: Duration,

    /// Idle time after which a UDP flow through the load balancer ends.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = proxylab_core::duration::parse_std)]
    pub udp_timeout: Duration,

    /// The instance name in hop records and Events.
    #[arg(long, value_name = "NAME", default_value = "cloud-lb")]
    pub instance: String,

    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// A flag value that the parser could not reject but the whole set can (two pools overlapping).
#[derive(Debug, thiserror::Error)]
#[error("--pool: {0}")]
pub struct ArgsError(#[from] crate::pool::PoolError);

impl CloudLbArgs {
    pub fn to_config(&self) -> Result<CloudLbConfig, ArgsError> {
        let pools = if self.pools.is_empty() {
            Pools::lab_default()
        } else {
            Pools::new(self.pools.clone())?
        };
        let mut cfg = CloudLbConfig::new(pools);
        cfg.kubeconfig = self.kubeconfig.clone();
        cfg.state_file = self.state_file.clone();
        cfg.admin_address = self.admin;
        cfg.class = self.class.clone();
        cfg.dataplane.instance = self.instance.clone();
        cfg.dataplane.health.proxy_port = self.node_health_port;
        cfg.dataplane.health.interval = self.health_interval;
        cfg.dataplane.udp.idle_timeout = self.udp_timeout;
        Ok(cfg)
    }
}

fn parse_pool(s: &str) -> Result<Pool, String> {
    let named = match s.split_once('=') {
        // `NAME=RANGE…`; an `=` only inside an option (`127.0.50.0/24,auto-assign=false`) is not a name.
        Some((name, _)) if !name.contains(',') => s.to_owned(),
        _ => format!("default={s}"),
    };
    named
        .parse()
        .map_err(|e: crate::pool::PoolError| e.to_string())
}

fn parse_opt_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("{s:?} is not an ip:port address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CloudLbArgs,
    }

    #[test]
    fn pools_take_a_name_or_default_and_overlaps_are_refused() {
        let cli = Cli::parse_from(["cloud-lb"]);
        let cfg = cli.args.to_config().unwrap();
        assert_eq!(cfg.pools, Pools::lab_default());
        assert_eq!(cli.args.admin, Some("127.0.0.1:10258".parse().unwrap()));
        let cli = Cli::parse_from([
            "cloud-lb",
            "--pool",
            "127.0.50.0/25,auto-assign=false",
            "--pool",
            "blue=127.0.51.1-127.0.51.9",
            "--admin",
            "",
        ]);
        let cfg = cli.args.to_config().unwrap();
        let names: Vec<&str> = cfg.pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["default", "blue"]);
        assert!(!cfg.pools.get("default").unwrap().auto_assign);
        assert_eq!(cfg.admin_address, None);
        let cli = Cli::parse_from([
            "cloud-lb",
            "--pool",
            "a=127.0.50.0/24",
            "--pool",
            "b=127.0.50.7",
        ]);
        let e = cli.args.to_config().unwrap_err().to_string();
        assert!(e.contains("overlap at 127.0.50.7"), "{e}");
        assert!(Cli::try_parse_from(["cloud-lb", "--pool", "x=nope"]).is_err());
    }
}
