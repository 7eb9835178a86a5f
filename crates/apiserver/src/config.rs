//! Configuration: kube-apiserver's flags (the subset the lab models) and the resolved, file-free
//! [`ApiServerConfig`] the server is built from.
//!
//! The flags keep kube-apiserver's names where they mean the same thing, so that a reader who knows a
//! kubeadm manifest (`/etc/kubernetes/manifests/kube-apiserver.yaml`) recognises every one of them.
//! Two deliberate differences: `--bind-address` may be repeated (the lab runs several front-ends over one
//! store in one process, each on its own loopback address), and omitting `--tls-cert-file` serves plain
//! HTTP (useful in tests; kube-apiserver would generate a self-signed certificate instead).

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::auth::{RequestHeaderConfig, TokenEntry, parse_token_file};
use crate::serviceaccount::{self, VerifyingKey};

/// A configuration error, naming the flag or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

fn read_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        message: format!("cannot read: {e}"),
    })
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::File {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// kube-apiserver flags, for `clap` (`#[command(flatten)]` them into a binary's subcommand).
#[derive(Debug, Clone, clap::Args)]
pub struct ApiServerArgs {
    /// Addresses to listen on (repeat or comma-separate for several front-ends over one store).
    #[arg(
        long = "bind-address",
        value_delimiter = ',',
        default_value = "127.0.10.1"
    )]
    pub bind_address: Vec<IpAddr>,
    /// The port to serve HTTPS on.
    #[arg(long = "secure-port", default_value_t = 6443)]
    pub secure_port: u16,
    /// The address published in the `kubernetes` Service's endpoints (default: the first bind address).
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<IpAddr>,
    /// Serving certificate (PEM, leaf first). Without it the server speaks plain HTTP.
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA bundle that client certificates are verified against (CN → user, O → groups).
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<PathBuf>,
    /// Static bearer tokens: CSV `token,user,uid,"group1,group2"`.
    #[arg(long = "token-auth-file")]
    pub token_auth_file: Option<PathBuf>,
    /// Keys that verify service-account tokens (PEM public keys, or private keys whose public half is used).
    #[arg(long = "service-account-key-file")]
    pub service_account_key_file: Vec<PathBuf>,
    /// The private key (PKCS#8 P-256 PEM) that signs service-account tokens.
    #[arg(long = "service-account-signing-key-file")]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// The `iss` claim of tokens this server issues and accepts (besides legacy `kubernetes/serviceaccount`).
    #[arg(
        long = "service-account-issuer",
        default_value = "https://kubernetes.default.svc.cluster.local"
    )]
    pub service_account_issuer: String,
    /// CA bundle for front-proxy client certificates (requestheader authentication).
    #[arg(long = "requestheader-client-ca-file")]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names allowed to assert identities in headers (empty: any certificate of that CA).
    #[arg(long = "requestheader-allowed-names", value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    #[arg(
        long = "requestheader-username-headers",
        value_delimiter = ',',
        default_value = "X-Remote-User"
    )]
    pub requestheader_username_headers: Vec<String>,
    #[arg(
        long = "requestheader-group-headers",
        value_delimiter = ',',
        default_value = "X-Remote-Group"
    )]
    pub requestheader_group_headers: Vec<String>,
    #[arg(
        long = "requestheader-extra-headers-prefix",
        value_delimiter = ',',
        default_value = "X-Remote-Extra-"
    )]
    pub requestheader_extra_headers_prefix: Vec<String>,
    /// Client certificate the apiserver presents to kubelets (used by the node/pod proxy).
    #[arg(long = "kubelet-client-certificate")]
    pub kubelet_client_certificate: Option<PathBuf>,
    #[arg(long = "kubelet-client-key")]
    pub kubelet_client_key: Option<PathBuf>,
    /// The apiserver proxy's flags (see `crate::bastion`).
    #[command(flatten)]
    pub proxy: crate::bastion::ProxyArgs,
    /// CIDR that Service ClusterIPs are allocated from.
    #[arg(long = "service-cluster-ip-range", default_value = "127.0.40.0/24")]
    pub service_cluster_ip_range: IpNet,
    /// Port range for NodePorts, `first-last`.
    #[arg(long = "service-node-port-range", default_value = "30000-32767")]
    pub service_node_port_range: String,
}

/// Parses `30000-32767` (kube-apiserver also accepts `30000+2767`).
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, ConfigError> {
    let bad = |m: &str| ConfigError::Flag {
        flag: "--service-node-port-range",
        message: format!("{s:?}: {m}"),
    };
    let (a, b) = if let Some((a, b)) = s.split_once('-') {
        let a: u16 = a.trim().parse().map_err(|_| bad("not a port"))?;
        let b: u16 = b.trim().parse().map_err(|_| bad("not a port"))?;
        (a, b)
    } else if let Some((a, n)) = s.split_once('+') {
        let a: u16 = a.trim().parse().map_err(|_| bad("not a port"))?;
        let n: u16 = n.trim().parse().map_err(|_| bad("not a size"))?;
        (a, a.checked_add(n).ok_or_else(|| bad("overflows"))?)
    } else {
        return Err(bad("expected FIRST-LAST"));
    };
    if a == 0 || a > b {
        return Err(bad("empty range"));
    }
    Ok(a..=b)
}

/// The serving certificate and key.
#[derive(Debug)]
pub struct ServingCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Everything the server needs, resolved (files read, ranges parsed). Build it from [`ApiServerArgs`]
/// with [`ApiServerArgs::to_config`], or directly in tests and in the lab.
pub struct ApiServerConfig {
    /// Listen addresses; one front-end per address, all sharing the store.
    pub listen: Vec<SocketAddr>,
    /// Published in the `kubernetes` Service endpoints; defaults to each listener's own address.
    pub advertise_address: Option<IpAddr>,
    /// `None` serves plain HTTP.
    pub serving: Option<ServingCert>,
    /// Client-certificate authentication roots (`--client-ca-file`).
    pub client_ca: Vec<CertificateDer<'static>>,
    /// Front-proxy authentication (`--requestheader-*`).
    pub requestheader: Option<RequestHeaderConfig>,
    /// `--token-auth-file` entries.
    pub static_tokens: Vec<TokenEntry>,
    /// Service-account token verification keys.
    pub service_account_keys: Vec<VerifyingKey>,
    /// `--service-account-signing-key-file` as PKCS#8 DER: signs tokens issued through the TokenRequest
    /// API (`kubectl create token`). `None` disables that API.
    pub service_account_signing_key: Option<Vec<u8>>,
    /// `--service-account-issuer`.
    pub service_account_issuer: String,
    /// `--service-cluster-ip-range`.
    pub service_cluster_ip_range: IpNet,
    /// `--service-node-port-range`.
    pub service_node_port_range: RangeInclusive<u16>,
    /// The kubelet client identity: the apiserver proxy reaches kubelets with it.
    pub kubelet_client: Option<ServingCert>,
    /// The apiserver proxy (the bastion): how it reaches nodes, pods and services.
    pub proxy: crate::bastion::ProxyConfig,
    /// Extra routes merged into the router ahead of the REST fallback: the mount point for the
    /// bastion's `/api/v1/…/proxy` (and `pods/log|exec|…`) routes. Authentication runs before them, so
    /// they see the same [`crate::auth::UserInfo`] extension as the REST handlers and never the
    /// client's credentials.
    pub extra_routes: Option<axum::Router>,
    /// How often a watch that asked for bookmarks gets one (kube-apiserver: about every minute; the lab
    /// uses 10 s so that the effect is visible).
    pub bookmark_interval: Duration,
    /// Watches without `timeoutSeconds` end after this long (kube-apiserver: `--min-request-timeout`
    /// 1800 s, randomised ×[1,2)).
    pub default_watch_timeout: Duration,
    /// Largest request body accepted (kube-apiserver: 3 MiB).
    pub max_request_body_bytes: usize,
    /// The process's Prometheus registry to register the apiserver's metrics in (a private one when
    /// `None`); they are also served at `/metrics`.
    pub metrics: Option<std::sync::Arc<proxylab_core::telemetry::Metrics>>,
    /// Create the default namespaces and the `default/kubernetes` Service and endpoints at startup, as
    /// kube-apiserver's bootstrap controller does.
    pub bootstrap: bool,
}

impl std::fmt::Debug for ApiServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerConfig")
            .field("listen", &self.listen)
            .field("tls", &self.serving.is_some())
            .field("client_ca", &self.client_ca.len())
            .field("requestheader", &self.requestheader.is_some())
            .field("static_tokens", &self.static_tokens.len())
            .field("service_account_keys", &self.service_account_keys.len())
            .field("service_cluster_ip_range", &self.service_cluster_ip_range)
            .field("service_node_port_range", &self.service_node_port_range)
            .finish_non_exhaustive()
    }
}

impl ApiServerConfig {
    /// A plain-HTTP configuration on `listen` with the lab's default ranges and no authenticators
    /// configured (add tokens, CAs or keys before use; otherwise only anonymous paths answer).
    pub fn new(listen: Vec<SocketAddr>) -> Self {
        ApiServerConfig {
            listen,
            advertise_address: None,
            serving: None,
            client_ca: Vec::new(),
            requestheader: None,
            static_tokens: Vec::new(),
            service_account_keys: Vec::new(),
            service_account_signing_key: None,
            service_account_issuer: "https://kubernetes.default.svc.cluster.local".into(),
            service_cluster_ip_range: "127.0.40.0/24".parse().unwrap_or_else(|_| unreachable!()),
            service_node_port_range: 30000..=32767,
            kubelet_client: None,
            proxy: crate::bastion::ProxyConfig::default(),
            extra_routes: None,
            bookmark_interval: Duration::from_secs(10),
            default_watch_timeout: Duration::from_secs(1800),
            max_request_body_bytes: 3 * 1024 * 1024,
            metrics: None,
            bootstrap: true,
        }
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    proxylab_core::tls::load_certs(path).map_err(|e| file_err(path, e))
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    proxylab_core::tls::load_private_key(path).map_err(|e| file_err(path, e))
}

impl ApiServerArgs {
    /// Reads every file the flags name and returns the resolved configuration.
    pub fn to_config(&self) -> Result<ApiServerConfig, ConfigError> {
        if self.bind_address.is_empty() {
            return Err(ConfigError::Flag {
                flag: "--bind-address",
                message: "at least one address is required".into(),
            });
        }
        let mut cfg = ApiServerConfig::new(
            self.bind_address
                .iter()
                .map(|ip| SocketAddr::new(*ip, self.secure_port))
                .collect(),
        );
        cfg.advertise_address = self.advertise_address;
        cfg.serving = match (&self.tls_cert_file, &self.tls_private_key_file) {
            (Some(c), Some(k)) => Some(ServingCert {
                chain: load_certs(c)?,
                key: load_key(k)?,
            }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Flag {
                    flag: "--tls-cert-file",
                    message: "--tls-cert-file and --tls-private-key-file go together".into(),
                });
            }
        };
        if cfg.serving.is_none()
            && (self.client_ca_file.is_some() || self.requestheader_client_ca_file.is_some())
        {
            return Err(ConfigError::Flag {
                flag: "--client-ca-file",
                message:
                    "client certificates need TLS: give --tls-cert-file and --tls-private-key-file"
                        .into(),
            });
        }
        if let Some(p) = &self.client_ca_file {
            cfg.client_ca = load_certs(p)?;
        }
        if let Some(p) = &self.requestheader_client_ca_file {
            cfg.requestheader = Some(RequestHeaderConfig {
                ca: load_certs(p)?,
                allowed_names: self.requestheader_allowed_names.clone(),
                username_headers: self.requestheader_username_headers.clone(),
                group_headers: self.requestheader_group_headers.clone(),
                extra_headers_prefix: self.requestheader_extra_headers_prefix.clone(),
            });
        }
        if let Some(p) = &self.token_auth_file {
            let text = String::from_utf8(read_file(p)?).map_err(|e| file_err(p, e))?;
            cfg.static_tokens = parse_token_file(&text).map_err(|e| file_err(p, e))?;
        }
        if let Some(p) = &self.service_account_signing_key_file {
            let pem = String::from_utf8(read_file(p)?).map_err(|e| file_err(p, e))?;
            cfg.service_account_signing_key =
                Some(serviceaccount::pkcs8_from_pem(&pem).map_err(|e| file_err(p, e))?);
        }
        let mut key_files = self.service_account_key_file.clone();
        if key_files.is_empty()
            && let Some(p) = &self.service_account_signing_key_file
        {
            // kube-apiserver defaults the verifying keys to the signing key's public half.
            key_files.push(p.clone());
        }
        for p in &key_files {
            let pem = read_file(p)?;
            let keys = serviceaccount::verifying_keys_from_pem(&pem).map_err(|e| file_err(p, e))?;
            cfg.service_account_keys.extend(keys);
        }
        cfg.service_account_issuer = self.service_account_issuer.clone();
        if let (Some(c), Some(k)) = (&self.kubelet_client_certificate, &self.kubelet_client_key) {
            cfg.kubelet_client = Some(ServingCert {
                chain: load_certs(c)?,
                key: load_key(k)?,
            });
        }
        cfg.proxy = self
            .proxy
            .to_config()
            .map_err(|(flag, message)| ConfigError::Flag { flag, message })?;
        cfg.service_cluster_ip_range = self.service_cluster_ip_range;
        cfg.service_node_port_range = parse_port_range(&self.service_node_port_range)?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ApiServerArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: ApiServerArgs,
        }
        let mut argv = vec!["apiserver"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).a
    }

    #[test]
    fn flags_resolve_files_and_report_errors() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.csv");
        std::fs::write(&tokens, "t1,admin,1,\"system:masters\"\n").unwrap();
        let tokens_flag = format!("--token-auth-file={}", tokens.display());
        let a = args(&[
            "--bind-address=127.0.10.1,127.0.10.2",
            "--secure-port=7443",
            &tokens_flag,
            "--service-node-port-range=31000-31010",
        ]);
        let cfg = a.to_config().unwrap();
        assert_eq!(cfg.listen.len(), 2);
        assert_eq!(cfg.listen[1].to_string(), "127.0.10.2:7443");
        assert_eq!(cfg.static_tokens[0].groups, ["system:masters"]);
        assert_eq!(cfg.service_node_port_range, 31000..=31010);
        assert_eq!(cfg.service_cluster_ip_range.to_string(), "127.0.40.0/24");

        let err = args(&["--client-ca-file=/x"]).to_config().unwrap_err();
        assert!(err.to_string().contains("need TLS"), "{err}");
        let err = args(&["--token-auth-file=/nonexistent/t.csv"])
            .to_config()
            .unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/t.csv"), "{err}");
        let err = args(&["--tls-cert-file=/x"]).to_config().unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("30000-32767").unwrap(), 30000..=32767);
        assert_eq!(parse_port_range("30000+10").unwrap(), 30000..=30010);
        assert!(parse_port_range("5-4").is_err());
        assert!(parse_port_range("x").is_err());
        assert!(parse_port_range("0-4").is_err());
    }
}
