//! The command line: `kubectl proxy`'s flags with its names and defaults, plus proxylab's own.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use proxylab_core::route::filter::{
    DEFAULT_ACCEPT_HOSTS, DEFAULT_ACCEPT_PATHS, DEFAULT_REJECT_METHODS, DEFAULT_REJECT_PATHS,
};

/// kubectl proxy's default port.
pub const DEFAULT_PORT: u16 = 8001;

/// Flags of `auth-proxy` (and of the lab's auth-proxy, which flattens this struct).
///
/// Every `kubectl proxy` flag exists with the same name, short form and default, so a script written
/// for `kubectl proxy` runs unchanged. The flags after `--user` are proxylab's additions.
#[derive(Debug, Clone, Args)]
pub struct AuthProxyArgs {
    /// The port on which to run the proxy. Set to 0 to pick a random port.
    #[arg(short = 'p', long, default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// The IP address on which to serve on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,

    /// Regular expression for hosts that the proxy should accept.
    #[arg(long, default_value = DEFAULT_ACCEPT_HOSTS)]
    pub accept_hosts: String,

    /// Regular expression for paths that the proxy should accept.
    #[arg(long, default_value = DEFAULT_ACCEPT_PATHS)]
    pub accept_paths: String,

    /// Regular expression for paths that the proxy should reject. Paths specified here will be
    /// rejected even accepted by --accept-paths.
    #[arg(long, default_value = DEFAULT_REJECT_PATHS)]
    pub reject_paths: String,

    /// Regular expression for HTTP methods that the proxy should reject (example
    /// --reject-methods='POST,PUT,PATCH').
    #[arg(long, default_value = DEFAULT_REJECT_METHODS)]
    pub reject_methods: String,

    /// Prefix to serve the proxied API under.
    #[arg(long, default_value = "/")]
    pub api_prefix: String,

    /// Also serve static files from the given directory under the specified prefix.
    #[arg(short = 'w', long, default_value = "")]
    pub www: String,

    /// Prefix to serve static files under, if static file directory is specified.
    #[arg(short = 'P', long, default_value = "/static/")]
    pub www_prefix: String,

    /// Unix socket on which to run the proxy.
    #[arg(short = 'u', long, default_value = "")]
    pub unix_socket: String,

    /// If true, disable request filtering in the proxy. This is dangerous, and can leave you
    /// vulnerable to XSRF attacks, when used with an accessible port.
    #[arg(long)]
    pub disable_filter: bool,

    /// keepalive specifies the keep-alive period for an active network connection. Set to 0 to
    /// disable keepalive. (Go duration: 30s, 1m, 500ms.)
    #[arg(long, default_value = "0", value_parser = proxylab_core::duration::parse_std)]
    pub keepalive: Duration,

    /// If true, enables automatic path appending of the kube context server path to each request.
    #[arg(long)]
    pub append_server_path: bool,

    /// Path to the kubeconfig file to use (else KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// The name of the kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,

    /// The name of the kubeconfig cluster to use.
    #[arg(long)]
    pub cluster: Option<String>,

    /// The name of the kubeconfig user to use.
    #[arg(long)]
    pub user: Option<String>,

    /// proxylab: forward a client's own Authorization and Impersonate-* headers instead of replacing
    /// them with the kubeconfig's (kubectl proxy's behaviour; lets any local process choose its
    /// identity, including impersonating others when the kubeconfig user may impersonate).
    #[arg(long)]
    pub pass_client_credentials: bool,

    /// proxylab: serve HTTPS with this certificate chain (PEM); needs --tls-private-key-file.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// proxylab: the private key (PEM) for --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,

    /// proxylab: serving threads, each a single-threaded event loop that accepts from the one
    /// listening socket and keeps its own connection pool to the apiserver; 0 = one per CPU.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl Default for AuthProxyArgs {
    fn default() -> Self {
        Self {
            port: DEFAULT_PORT,
            address: "127.0.0.1".into(),
            accept_hosts: DEFAULT_ACCEPT_HOSTS.into(),
            accept_paths: DEFAULT_ACCEPT_PATHS.into(),
            reject_paths: DEFAULT_REJECT_PATHS.into(),
            reject_methods: DEFAULT_REJECT_METHODS.into(),
            api_prefix: "/".into(),
            www: String::new(),
            www_prefix: "/static/".into(),
            unix_socket: String::new(),
            disable_filter: false,
            keepalive: Duration::ZERO,
            append_server_path: false,
            kubeconfig: None,
            context: None,
            cluster: None,
            user: None,
            pass_client_credentials: false,
            tls_cert_file: None,
            tls_private_key_file: None,
            threads: 0,
        }
    }
}
