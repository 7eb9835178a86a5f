//! The command line: `kubectl proxy`'s flags and kubectl's global options, with their names,
//! defaults and Go syntax ([`crate::goflag`]), plus proxylab's own.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};
use proxylab_core::duration::GoDuration;
use proxylab_core::route::filter::{
    DEFAULT_ACCEPT_HOSTS, DEFAULT_ACCEPT_PATHS, DEFAULT_REJECT_METHODS, DEFAULT_REJECT_PATHS,
};

use proxylab_kube::{ConfigOverrides, KubeconfigOptions};

use crate::goflag;

/// kubectl proxy's default port.
pub const DEFAULT_PORT: u16 = 8001;

/// Flags of `auth-proxy` (and of the lab's auth-proxy, which flattens this struct).
///
/// Every `kubectl proxy` flag exists with the same name, short form, default and Go syntax
/// ([`crate::goflag`]), and so does every global kubectl option (`kubectl options`): those that
/// change the connection do what they do in kubectl, the others are checked as kubectl checks them
/// and have no effect, as in `kubectl proxy` or because they configure something a Rust program does
/// not have (the table in `docs/auth-proxy.md` says which and why). The flags after `--v` are
/// proxylab's additions.
#[derive(Debug, Clone, Args)]
pub struct AuthProxyArgs {
    // ---- kubectl proxy ----------------------------------------------------------------------
    /// The port on which to run the proxy. Set to 0 to pick a random port.
    #[arg(short = 'p', long, default_value = "8001", value_parser = goflag::parse_port, allow_hyphen_values = true)]
    pub port: u16,

    /// Whether `--port` was on the command line (kubectl refuses it with `--unix-socket` even when it
    /// says 8001). Set by the binary from clap's matches; struct literals leave it false.
    #[arg(skip)]
    pub port_given: bool,

    /// The IP address on which to serve on.
    #[arg(long, default_value = "127.0.0.1", allow_hyphen_values = true)]
    pub address: String,

    /// Regular expression for hosts that the proxy should accept.
    #[arg(long, default_value = DEFAULT_ACCEPT_HOSTS, allow_hyphen_values = true)]
    pub accept_hosts: String,

    /// Regular expression for paths that the proxy should accept.
    #[arg(long, default_value = DEFAULT_ACCEPT_PATHS, allow_hyphen_values = true)]
    pub accept_paths: String,

    /// Regular expression for paths that the proxy should reject. Paths specified here will be
    /// rejected even accepted by --accept-paths.
    #[arg(long, default_value = DEFAULT_REJECT_PATHS, allow_hyphen_values = true)]
    pub reject_paths: String,

    /// Regular expression for HTTP methods that the proxy should reject (example
    /// --reject-methods='POST,PUT,PATCH').
    #[arg(long, default_value = DEFAULT_REJECT_METHODS, allow_hyphen_values = true)]
    pub reject_methods: String,

    /// Prefix to serve the proxied API under.
    #[arg(long, default_value = "/", allow_hyphen_values = true)]
    pub api_prefix: String,

    /// Also serve static files from the given directory under the specified prefix.
    #[arg(short = 'w', long, default_value = "", allow_hyphen_values = true)]
    pub www: String,

    /// Prefix to serve static files under, if static file directory is specified.
    #[arg(
        short = 'P',
        long,
        default_value = "/static/",
        allow_hyphen_values = true
    )]
    pub www_prefix: String,

    /// Unix socket on which to run the proxy.
    #[arg(short = 'u', long, default_value = "", allow_hyphen_values = true)]
    pub unix_socket: String,

    /// If true, disable request filtering in the proxy. This is dangerous, and can leave you
    /// vulnerable to XSRF attacks, when used with an accessible port.
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflag::parse_bool, action = ArgAction::Set)]
    pub disable_filter: bool,

    /// keepalive specifies the keep-alive period for an active network connection. Set to 0 to
    /// disable keepalive. (A Go duration: 30s, 1m0s, 500ms; negative also disables.)
    #[arg(long, default_value = "0s", value_parser = goflag::parse_keepalive, allow_hyphen_values = true)]
    pub keepalive: Duration,

    /// If true, enables automatic path appending of the kube context server path to each request.
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflag::parse_bool, action = ArgAction::Set)]
    pub append_server_path: bool,

    /// Arguments that are not flags. `kubectl proxy` ignores them; so does auth-proxy, with a
    /// warning, since the usual one is a boolean's value written apart (`--disable-filter false` is
    /// `--disable-filter`, i.e. true, in Go's syntax).
    #[arg(hide = true)]
    pub extra: Vec<String>,

    // ---- kubectl's global options (`kubectl options`), alphabetical as kubectl lists them ------
    /// Username to impersonate for the operation. User could be a regular user or a service account
    /// in a namespace.
    #[arg(
        long = "as",
        value_name = "USER",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub as_user: String,

    /// Group to impersonate for the operation, this flag can be repeated to specify multiple
    /// groups.
    #[arg(long = "as-group", value_name = "GROUP", action = ArgAction::Append, allow_hyphen_values = true)]
    pub as_group: Vec<String>,

    /// UID to impersonate for the operation.
    #[arg(
        long = "as-uid",
        value_name = "UID",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub as_uid: String,

    /// Default cache directory (kubectl's discovery cache; a proxy does no discovery: unused).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub cache_dir: String,

    /// Path to a cert file for the certificate authority
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub certificate_authority: String,

    /// Path to a client certificate file for TLS
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub client_certificate: String,

    /// Path to a client key file for TLS
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub client_key: String,

    /// The name of the kubeconfig cluster to use
    #[arg(long, allow_hyphen_values = true)]
    pub cluster: Option<String>,

    /// The name of the kubeconfig context to use
    #[arg(long, allow_hyphen_values = true)]
    pub context: Option<String>,

    /// If true, opt-out of response compression for all requests to the server (auth-proxy never
    /// asks for compression itself: no effect).
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflag::parse_bool, action = ArgAction::Set)]
    pub disable_compression: bool,

    /// If true, the server's certificate will not be checked for validity. This will make your
    /// HTTPS connections insecure
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflag::parse_bool, action = ArgAction::Set)]
    pub insecure_skip_tls_verify: bool,

    /// Path to the kubeconfig file to use (else KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long, allow_hyphen_values = true)]
    pub kubeconfig: Option<PathBuf>,

    /// Maximum number of seconds between log flushes (a Go duration; auth-proxy's log writer
    /// flushes as soon as it has caught up: no effect).
    #[arg(long, default_value = "5s", value_parser = goflag::parse_duration, allow_hyphen_values = true)]
    pub log_flush_frequency: GoDuration,

    /// Require server version to match client version (auth-proxy forwards bytes and has no
    /// Kubernetes client version to match: no effect, with a warning).
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflag::parse_bool, action = ArgAction::Set)]
    pub match_server_version: bool,

    /// If present, the namespace scope for this CLI request (a proxy serves every namespace: no
    /// effect, as in kubectl proxy).
    #[arg(short = 'n', long, default_value = "", allow_hyphen_values = true)]
    pub namespace: String,

    /// Password for basic authentication to the API server
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub password: String,

    /// Name of profile to capture. One of (none|cpu|heap|goroutine|threadcreate|block|mutex) (Go
    /// runtime profiles: checked, and ignored with a warning).
    #[arg(long, default_value = "none", value_parser = goflag::parse_profile, allow_hyphen_values = true)]
    pub profile: String,

    /// Name of the file to write the profile to (with --profile: unused).
    #[arg(long, default_value = "profile.pprof", allow_hyphen_values = true)]
    pub profile_output: String,

    /// The length of time to wait before giving up on a single server request. Non-zero values
    /// should contain a corresponding time unit (e.g. 1s, 2m, 3h). A value of zero means don't
    /// timeout requests. (kubectl proxy checks it and does not apply it to proxied requests; nor
    /// does auth-proxy, so watches and exec sessions are never cut.)
    #[arg(long, default_value = "0", value_parser = goflag::parse_request_timeout, allow_hyphen_values = true)]
    pub request_timeout: GoDuration,

    /// The address and port of the Kubernetes API server
    #[arg(short = 's', long, default_value = "", allow_hyphen_values = true)]
    pub server: String,

    /// Server name to use for server certificate validation. If it is not provided, the hostname
    /// used to contact the server is used
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub tls_server_name: String,

    /// Bearer token for authentication to the API server
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub token: String,

    /// The name of the kubeconfig user to use
    #[arg(long, allow_hyphen_values = true)]
    pub user: Option<String>,

    /// Username for basic authentication to the API server
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub username: String,

    /// number for the log level verbosity (0–3: requests in the access log, warnings and errors; 4
    /// and 5: auth-proxy's own debug events and hop records; 6 and more: everything at debug, 8
    /// and more at trace). RUST_LOG, when set, wins.
    #[arg(short = 'v', long = "v", value_name = "LEVEL", default_value = "0", value_parser = goflag::parse_level, allow_hyphen_values = true)]
    pub verbosity: i32,

    /// comma-separated list of pattern=N settings for file-filtered logging (Go source files:
    /// checked, no effect)
    #[arg(long, default_value = "", value_parser = goflag::parse_vmodule, allow_hyphen_values = true)]
    pub vmodule: String,

    /// Treat warnings received from the server as errors and exit with a non-zero exit code (kubectl
    /// proxy relays the apiserver's warnings to the client untouched; so does auth-proxy: no effect)
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflag::parse_bool, action = ArgAction::Set)]
    pub warnings_as_errors: bool,

    // ---- proxylab's additions -----------------------------------------------------------------
    /// proxylab: forward a client's own Authorization and Impersonate-* headers instead of replacing
    /// them with the kubeconfig's (kubectl proxy's behaviour; lets any local process choose its
    /// identity, including impersonating others when the kubeconfig user may impersonate).
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflag::parse_bool, action = ArgAction::Set)]
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
            port_given: false,
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
            extra: Vec::new(),
            as_user: String::new(),
            as_group: Vec::new(),
            as_uid: String::new(),
            cache_dir: String::new(),
            certificate_authority: String::new(),
            client_certificate: String::new(),
            client_key: String::new(),
            cluster: None,
            context: None,
            disable_compression: false,
            insecure_skip_tls_verify: false,
            kubeconfig: None,
            log_flush_frequency: GoDuration::from_nanos(5_000_000_000),
            match_server_version: false,
            namespace: String::new(),
            password: String::new(),
            profile: "none".into(),
            profile_output: "profile.pprof".into(),
            request_timeout: GoDuration::ZERO,
            server: String::new(),
            tls_server_name: String::new(),
            token: String::new(),
            user: None,
            username: String::new(),
            verbosity: 0,
            vmodule: String::new(),
            warnings_as_errors: false,
            pass_client_credentials: false,
            tls_cert_file: None,
            tls_private_key_file: None,
            threads: 0,
        }
    }
}

impl AuthProxyArgs {
    /// The kubeconfig to load and kubectl's connection flags over it, as `proxylab-kube` takes them.
    /// An empty value is an unset one, as in kubectl (`--context=` is no `--context`).
    pub fn kubeconfig_options(&self) -> KubeconfigOptions {
        let set = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let named = |s: &Option<String>| s.as_deref().and_then(set);
        KubeconfigOptions {
            kubeconfig: self
                .kubeconfig
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            context: named(&self.context),
            cluster: named(&self.cluster),
            user: named(&self.user),
            overrides: ConfigOverrides {
                server: set(&self.server),
                certificate_authority: set(&self.certificate_authority).map(PathBuf::from),
                insecure_skip_tls_verify: self.insecure_skip_tls_verify,
                tls_server_name: set(&self.tls_server_name),
                token: set(&self.token),
                username: set(&self.username),
                password: set(&self.password),
                client_certificate: set(&self.client_certificate).map(PathBuf::from),
                client_key: set(&self.client_key).map(PathBuf::from),
                impersonate: set(&self.as_user),
                impersonate_uid: set(&self.as_uid),
                impersonate_groups: self.as_group.clone(),
            },
        }
    }

    /// The default log filter for `-v` (used when `RUST_LOG` is unset). kubectl's levels: 0–3 say
    /// what the user needs (here: the access log, warnings, errors), 4 and 5 debug a component, 6
    /// and more show requests and their details.
    pub fn log_filter(&self) -> &'static str {
        match self.verbosity {
            ..=3 => "info,hop=warn",
            4..=5 => {
                "info,hop=info,proxylab_auth_proxy=debug,proxylab_kube=debug,proxylab_core=debug"
            }
            6..=7 => "debug",
            _ => "trace",
        }
    }

    /// What the flags that have no effect here would have done in kubectl, one warning each, for
    /// the binary to print at start (empty for the usual command line).
    pub fn ignored_flag_warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.extra.is_empty() {
            w.push(format!(
                "ignoring arguments {:?}: kubectl proxy takes none (a boolean flag's value is written with `=`, e.g. --disable-filter=false; `--disable-filter false` means --disable-filter=true)",
                self.extra
            ));
        }
        if self.match_server_version {
            w.push(
                "--match-server-version has no effect: auth-proxy forwards requests and has no Kubernetes client version to compare with the server's".into(),
            );
        }
        if self.profile != "none" {
            w.push(format!(
                "--profile={} has no effect: Go runtime profiles do not exist in auth-proxy (profile it with perf; see docs/benchmarks.md)",
                self.profile
            ));
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Debug, Parser)]
    #[command(args_override_self = true)]
    struct Cli {
        #[command(flatten)]
        args: AuthProxyArgs,
    }

    /// As the binary parses: kubectl's flag-name normalisation, then clap.
    fn parse(args: &[&str]) -> Result<AuthProxyArgs, clap::Error> {
        let cmd = Cli::command();
        let argv = std::iter::once("auth-proxy")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        let argv = goflag::normalize_word_separators(argv, &cmd);
        Cli::from_arg_matches(&cmd.try_get_matches_from(argv)?).map(|c| c.args)
    }

    #[test]
    fn defaults_are_kubectls_and_match_default() {
        let parsed = parse(&[]).unwrap();
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", AuthProxyArgs::default())
        );
        assert_eq!(parsed.port, 8001);
        assert_eq!(parsed.keepalive, Duration::ZERO);
        assert_eq!(parsed.log_flush_frequency.to_string(), "5s");
        assert_eq!(parsed.profile, "none");
    }

    #[test]
    fn go_boolean_syntax() {
        assert!(parse(&["--disable-filter"]).unwrap().disable_filter);
        assert!(parse(&["--disable-filter=true"]).unwrap().disable_filter);
        assert!(parse(&["--disable-filter=T"]).unwrap().disable_filter);
        assert!(!parse(&["--disable-filter=false"]).unwrap().disable_filter);
        assert!(!parse(&["--disable-filter=0"]).unwrap().disable_filter);
        assert!(
            parse(&["--append-server-path=1"])
                .unwrap()
                .append_server_path
        );
        assert!(
            !parse(&["--append-server-path=False"])
                .unwrap()
                .append_server_path
        );
        // A value written apart is an argument, and the flag alone means true (as in Go).
        let apart = parse(&["--disable-filter", "false"]).unwrap();
        assert!(apart.disable_filter);
        assert_eq!(apart.extra, ["false"]);
        assert!(!apart.ignored_flag_warnings().is_empty());
        assert!(parse(&["--disable-filter=yes"]).is_err());
    }

    #[test]
    fn go_values_repeats_and_names() {
        assert_eq!(parse(&["-p", "0"]).unwrap().port, 0);
        assert_eq!(parse(&["-p0"]).unwrap().port, 0);
        assert_eq!(parse(&["-p=0"]).unwrap().port, 0);
        assert_eq!(parse(&["--port=0x1F41"]).unwrap().port, 8001);
        assert_eq!(
            parse(&["-p", "1", "--port", "2"]).unwrap().port,
            2,
            "last wins"
        );
        assert_eq!(
            parse(&["--accept_paths=^/api"]).unwrap().accept_paths,
            "^/api"
        );
        assert_eq!(parse(&["--accept-paths", "-x"]).unwrap().accept_paths, "-x");
        let a = parse(&["--as", "alice", "--as-group", "a,b", "--as-group=c"]).unwrap();
        assert_eq!(a.as_group, ["a,b", "c"], "repeated, never split at commas");
        assert_eq!(parse(&["-v=4"]).unwrap().verbosity, 4);
        assert_eq!(parse(&["--v", "-1"]).unwrap().verbosity, -1);
        assert_eq!(
            parse(&["--keepalive=15m0s"]).unwrap().keepalive,
            Duration::from_secs(900)
        );
        assert_eq!(
            parse(&["--keepalive=-1s"]).unwrap().keepalive,
            Duration::ZERO
        );
        assert_eq!(
            parse(&["--request-timeout", "30"])
                .unwrap()
                .request_timeout
                .to_string(),
            "30s"
        );
        for bad in [
            &["--keepalive=30"][..],
            &["-p", "70000"],
            &["--v=x"],
            &["--vmodule=bad"],
            &["--profile=bogus"],
            &["--log-flush-frequency=5"],
            &["--bogus"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn connection_flags_become_overrides() {
        let a = parse(&[
            "--server=https://k:6443",
            "--token",
            "t",
            "--as",
            "alice",
            "--as-group",
            "g",
            "--certificate-authority",
            "/ca",
            "--insecure-skip-tls-verify",
            "--context=",
            "--user",
            "u",
        ])
        .unwrap();
        let o = a.kubeconfig_options();
        assert_eq!(o.context, None, "an empty flag is an unset one");
        assert_eq!(o.user.as_deref(), Some("u"));
        assert_eq!(o.overrides.server.as_deref(), Some("https://k:6443"));
        assert_eq!(o.overrides.token.as_deref(), Some("t"));
        assert_eq!(o.overrides.impersonate.as_deref(), Some("alice"));
        assert_eq!(o.overrides.impersonate_groups, ["g"]);
        assert_eq!(
            o.overrides.certificate_authority,
            Some(PathBuf::from("/ca"))
        );
        assert!(o.overrides.insecure_skip_tls_verify);
        assert!(
            parse(&[])
                .unwrap()
                .kubeconfig_options()
                .overrides
                .is_empty()
        );
    }

    #[test]
    fn verbosity_sets_the_default_log_filter() {
        let at = |v: &str| parse(&["-v", v]).unwrap().log_filter();
        assert_eq!(at("0"), "info,hop=warn");
        assert_eq!(at("3"), "info,hop=warn");
        assert!(at("4").contains("proxylab_auth_proxy=debug"));
        assert_eq!(at("6"), "debug");
        assert_eq!(at("9"), "trace");
    }
}
