//! From flags to a ready configuration: every check that can fail before a socket is opened.

use std::path::PathBuf;
use std::sync::Arc;

use proxylab_core::route::{Filter, FilterError};
use proxylab_core::telemetry::HopLog;
use proxylab_kube::{ClusterConfig, KubeconfigError, Upstream, UpstreamOptions};

use crate::args::{AuthProxyArgs, DEFAULT_PORT};

/// What goes wrong turning flags into a configuration. The binary prints it as one line and exits 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A kubeconfig problem, naming the file and field.
    #[error("{0}")]
    Kubeconfig(#[from] KubeconfigError),
    /// A filter flag's regex does not compile.
    #[error("{0}")]
    Filter(#[from] FilterError),
    /// Any other flag problem.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag at fault.
        flag: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// Where the proxy listens.
#[derive(Debug, Clone)]
pub enum Listen {
    /// `--address`:`--port`. A host name (e.g. `localhost`) is resolved at bind time.
    Tcp {
        /// `--address`
        host: String,
        /// `--port`
        port: u16,
    },
    /// `--unix-socket`.
    Unix(PathBuf),
}

/// A validated auth-proxy configuration.
#[derive(Clone)]
pub struct AuthProxyConfig {
    /// Where to listen.
    pub listen: Listen,
    /// The request filter; `None` with `--disable-filter`.
    pub filter: Option<Arc<Filter>>,
    /// `--api-prefix`, always ending in `/`.
    pub api_prefix: String,
    /// `--www` and `--www-prefix` (ending in `/`), when static files are served.
    pub www: Option<(PathBuf, String)>,
    /// `--append-server-path`: keep the kubeconfig server URL's path in front of each request path.
    pub append_server_path: bool,
    /// `--pass-client-credentials`.
    pub pass_client_credentials: bool,
    /// The apiserver and how to reach it.
    pub upstream: Upstream,
    /// The server URL's path (`/k8s/clusters/c-1`), empty when none.
    pub server_path: String,
    /// HTTPS on the listener.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Where hop records go; `None` keeps a private log.
    pub hops: Option<Arc<HopLog>>,
    /// Where access lines go; `None` emits them as `tracing` events (target `access`).
    pub access_log: Option<crate::logging::AccessLog>,
    /// Without `access_log`, whether to emit access lines as `tracing` events (default true; the
    /// binary turns it off with `--access-log=false`).
    pub access_via_tracing: bool,
    /// This instance's name in hop records and `Via` (default `auth-proxy`).
    pub name: String,
    /// Serving threads (at least 1): see [`crate::AuthProxy`] and `--threads`.
    pub threads: usize,
}

impl std::fmt::Debug for AuthProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthProxyConfig")
            .field("listen", &self.listen)
            .field("api_prefix", &self.api_prefix)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl AuthProxyConfig {
    /// Validates the flags, loads the kubeconfig (kubectl's rules) and builds the upstream stack.
    /// Prints kubectl proxy's warnings to stderr.
    pub async fn from_args(args: &AuthProxyArgs) -> Result<Self, ConfigError> {
        let cluster = proxylab_kube::load(&args.kubeconfig_options()).await?;
        Self::from_args_with_cluster(args, &cluster)
    }

    /// As [`Self::from_args`] with an already loaded cluster (the lab passes its own).
    pub fn from_args_with_cluster(
        args: &AuthProxyArgs,
        cluster: &ClusterConfig,
    ) -> Result<Self, ConfigError> {
        let listen = if args.unix_socket.is_empty() {
            Listen::Tcp {
                // Go listens on every interface for an empty host (`:8001`).
                host: if args.address.is_empty() {
                    "0.0.0.0".into()
                } else {
                    args.address.clone()
                },
                port: args.port,
            }
        } else {
            // kubectl refuses any --port given with --unix-socket, even 8001.
            if args.port_given || args.port != DEFAULT_PORT {
                return Err(ConfigError::Flag {
                    flag: "--unix-socket",
                    message: "cannot set --unix-socket and --port at the same time".into(),
                });
            }
            Listen::Unix(PathBuf::from(&args.unix_socket))
        };
        let filter = if args.disable_filter {
            if matches!(listen, Listen::Tcp { .. }) {
                eprintln!(
                    "W auth-proxy: Request filter disabled, your proxy is vulnerable to XSRF attacks, please be cautious"
                );
            }
            None
        } else {
            let f = Filter::new(
                &args.accept_paths,
                &args.reject_paths,
                &args.accept_hosts,
                &args.reject_methods,
            )?;
            if f.reject_paths.is_empty() && f.reject_methods.is_empty() {
                eprintln!(
                    "W auth-proxy: --reject-paths and --reject-methods are empty: every path and method the other rules accept is allowed, exec and attach included"
                );
            }
            Some(Arc::new(f))
        };
        let mut api_prefix = args.api_prefix.clone();
        if !api_prefix.starts_with('/') {
            api_prefix.insert(0, '/');
        }
        if !api_prefix.ends_with('/') {
            api_prefix.push('/');
        }
        let www = if args.www.is_empty() {
            None
        } else {
            let dir = PathBuf::from(&args.www);
            // kubectl warns and serves anyway (the directory may appear later); so does auth-proxy.
            if let Err(e) = std::fs::metadata(&dir) {
                eprintln!(
                    "W auth-proxy: Failed to stat static file directory {}: {e}",
                    dir.display()
                );
            }
            let mut prefix = args.www_prefix.clone();
            if !prefix.starts_with('/') {
                prefix.insert(0, '/');
            }
            if !prefix.ends_with('/') {
                prefix.push('/');
            }
            Some((dir, prefix))
        };
        let tls = match (&args.tls_cert_file, &args.tls_private_key_file) {
            (Some(cert), Some(key)) => Some(
                proxylab_core::tls::ServerTls::from_files(cert, key)
                    .and_then(|t| t.build())
                    .map_err(|e| ConfigError::Flag {
                        flag: "--tls-cert-file",
                        message: e.to_string(),
                    })?,
            ),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Flag {
                    flag: "--tls-cert-file",
                    message: "--tls-cert-file and --tls-private-key-file go together".into(),
                });
            }
        };
        if cluster.plaintext_credentials_dropped {
            eprintln!(
                "W auth-proxy: the server {} is plain http://: the user's credentials are not sent over it (as kubectl); impersonation still is",
                cluster.config.cluster_url
            );
        }
        let server_path = cluster.server_path().to_owned();
        if !server_path.is_empty() && !args.append_server_path {
            eprintln!(
                "W auth-proxy: Your kube context contains a server path {server_path}, use --append-server-path to automatically append the path to each request"
            );
        }
        let upstream = Upstream::new(
            cluster,
            &UpstreamOptions {
                keepalive: (!args.keepalive.is_zero()).then_some(args.keepalive),
                ..UpstreamOptions::default()
            },
        )?;
        Ok(Self {
            listen,
            filter,
            api_prefix,
            www,
            append_server_path: args.append_server_path,
            pass_client_credentials: args.pass_client_credentials,
            upstream,
            server_path,
            tls,
            hops: None,
            access_log: None,
            access_via_tracing: true,
            name: "auth-proxy".into(),
            threads: match args.threads {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
        })
    }
}
