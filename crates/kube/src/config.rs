//! kubeconfig → one cluster, one user, with errors that name the file and the field.
//!
//! kubectl's loading rules (client-go `clientcmd`), which proxylab follows:
//!
//! 1. `--kubeconfig FILE` → that file only; it must exist.
//! 2. otherwise `KUBECONFIG` → a `:`-separated list; files that do not exist are skipped; the rest
//!    are merged with "the first file to set a value or a map key wins" (so `current-context` comes
//!    from the first file that sets it, and a user named in two files is the first file's user).
//! 3. otherwise `~/.kube/config`, when it exists.
//! 4. no file, and `--server` given → the flags alone (`--server URL --token T` needs no kubeconfig).
//! 5. no file, no `--server`, and `KUBERNETES_SERVICE_HOST` set → in-cluster config (the pod's
//!    service account token and CA).
//!
//! Then `--context` (else `current-context`) picks a context, and `--cluster` / `--user` override
//! the context's cluster and user. Last, kubectl's connection flags (`--server`, `--token`, `--as`,
//! `--certificate-authority`, … : [`ConfigOverrides`]) are laid over the chosen cluster and user,
//! flag winning over kubeconfig, and the result is checked as kubectl checks it
//! ([`crate::overrides`] has the rules). With `--server`, a context naming a missing cluster, or no
//! context at all, is not an error: the flags supply the cluster, as in kubectl.
//!
//! Where proxylab stops short of kubectl, on purpose: with no server at all kubectl falls back to
//! `http://localhost:8080` (the apiserver's insecure port, removed in Kubernetes 1.20) and here it is
//! an error saying what is missing; a context naming a user that does not exist is an error here
//! where kubectl carries on without credentials; and a user without credentials talking to an
//! `https://` server is not prompted for a username and password on the terminal (basic auth left
//! the apiserver in 1.19): the requests go out anonymous.
//!
//! The proxy towards the apiserver is the cluster's `proxy-url`, else — as client-go's fallback to
//! Go's `http.ProxyFromEnvironment` — `HTTPS_PROXY` / `HTTP_PROXY` unless `NO_PROXY` matches or the
//! server is loopback ([`crate::dialer::choose_proxy`]). The environment is read once, here; the
//! choice lands in `config.proxy_url`, which the upstream's dialer uses, and in
//! [`ClusterConfig::proxy`], which says where it came from.
//!
//! kube-rs does the parsing, merging and credential plumbing; this module keeps track of *which file*
//! (or which flag) defined each value, so that a broken configuration produces one line a user can
//! act on: `kubeconfig /home/me/.kube/config: users[alice].user.client-certificate: cannot read
//! /tmp/a.crt: No such file or directory`, or `--certificate-authority: cannot read /tmp/ca.crt: …`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};

use crate::dialer::{ProxyChoice, ProxyEnv, choose_proxy};
use crate::overrides::{ConfigOverrides, Effective, EntryAt, locate};

/// Which kubeconfig to load and which flags to lay over it, as kubectl's global flags say.
#[derive(Debug, Clone, Default)]
pub struct KubeconfigOptions {
    /// `--kubeconfig`: one explicit file.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`
    pub context: Option<String>,
    /// `--cluster`
    pub cluster: Option<String>,
    /// `--user`
    pub user: Option<String>,
    /// `--server`, `--token`, `--as`, … : flag over kubeconfig.
    pub overrides: ConfigOverrides,
}

/// A configuration problem: where (a file and field, or a flag), what.
#[derive(Debug, Clone, thiserror::Error)]
pub struct KubeconfigError {
    /// The file at fault (or the list of files merged), when known.
    pub file: Option<String>,
    /// The field path, kubectl-style: `contexts[dev].context.cluster`, `current-context`; or the
    /// flag (`--certificate-authority`) when the value came from one.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for KubeconfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, &self.field) {
            // A flag's value: the flag says where.
            (None, Some(flag)) if flag.starts_with("--") => {
                return write!(f, "{flag}: {}", self.message);
            }
            (Some(file), _) => write!(f, "kubeconfig {file}")?,
            (None, _) => f.write_str("kubeconfig")?,
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl KubeconfigError {
    fn new(file: Option<&Path>, field: Option<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.map(|p| p.display().to_string()),
            field,
            message: message.into(),
        }
    }
}

/// Where the configuration came from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// These kubeconfig files, merged in this order.
    Files(Vec<PathBuf>),
    /// The pod's service account.
    InCluster,
    /// No kubeconfig: `--server` and the other flags alone.
    Flags,
}

/// The chosen cluster and user, ready to build an upstream from.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// kube-rs's view: URL, CA, client identity, auth, impersonation, tls-server-name, and in
    /// `proxy_url` the proxy chosen by [`ClusterConfig::proxy`] (from the kubeconfig or the
    /// environment).
    pub config: kube::Config,
    /// The proxy towards the apiserver and where it came from, or why there is none.
    pub proxy: ProxyChoice,
    /// Where it came from.
    pub source: ConfigSource,
    /// The context used, if any.
    pub context: Option<String>,
    /// The cluster entry used (for error messages).
    pub cluster_name: Option<String>,
    /// The user entry used (for error messages).
    pub user_name: Option<String>,
    /// The file that defined the cluster entry.
    pub cluster_file: Option<PathBuf>,
    /// The file that defined the user entry.
    pub user_file: Option<PathBuf>,
    /// The server is `http://` and the user's credentials were left out (kubectl sends none over
    /// plain HTTP); impersonation still applies.
    pub plaintext_credentials_dropped: bool,
    cluster_at: EntryAt,
    user_at: EntryAt,
    flags: BTreeMap<&'static str, &'static str>,
}

impl ClusterConfig {
    /// The path part of the server URL (`https://gw/k8s/clusters/c-1` → `/k8s/clusters/c-1`),
    /// empty when the URL has none. kubectl proxy drops it unless `--append-server-path`.
    pub fn server_path(&self) -> &str {
        let p = self.config.cluster_url.path();
        if p == "/" {
            ""
        } else {
            p.trim_end_matches('/')
        }
    }

    /// A [`KubeconfigError`] about a field of the chosen user (named after the flag that set it,
    /// if one did).
    pub fn user_error(&self, field: &str, message: impl Into<String>) -> KubeconfigError {
        locate(&self.flags, &self.user_at, field, message)
    }

    /// A [`KubeconfigError`] about a field of the chosen cluster (named after the flag that set
    /// it, if one did).
    pub fn cluster_error(&self, field: &str, message: impl Into<String>) -> KubeconfigError {
        locate(&self.flags, &self.cluster_at, field, message)
    }
}

/// The kubeconfig files kubectl would read, in merge order.
fn candidate_files(opts: &KubeconfigOptions) -> Result<Vec<PathBuf>, KubeconfigError> {
    if let Some(path) = &opts.kubeconfig {
        if !path.exists() {
            return Err(KubeconfigError::new(
                Some(path),
                None,
                "file does not exist (given with --kubeconfig)",
            ));
        }
        return Ok(vec![path.clone()]);
    }
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        let files: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !files.is_empty() {
            // As clientcmd: missing files in KUBECONFIG are skipped, not errors.
            return Ok(files.into_iter().filter(|p| p.exists()).collect());
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    Ok(home
        .map(|h| h.join(".kube").join("config"))
        .filter(|p| p.exists())
        .into_iter()
        .collect())
}

/// Loads the configuration kubectl would use with these options. See the module docs.
pub async fn load(opts: &KubeconfigOptions) -> Result<ClusterConfig, KubeconfigError> {
    load_with_env(opts, &ProxyEnv::from_env()).await
}

/// The chosen entries before the flags: what [`Effective`] is built from.
struct Chosen {
    cluster: Cluster,
    user: AuthInfo,
    cluster_at: EntryAt,
    user_at: EntryAt,
    source: ConfigSource,
    context: Option<String>,
    cluster_name: Option<String>,
    user_name: Option<String>,
    cluster_file: Option<PathBuf>,
    user_file: Option<PathBuf>,
    /// The files merged, for errors that belong to no one entry.
    all_files: Option<PathBuf>,
}

/// [`load`], with the proxy variables given rather than read from the process environment (the
/// other variables — `KUBECONFIG`, `HOME`, `KUBERNETES_SERVICE_*` — are still read).
pub async fn load_with_env(
    opts: &KubeconfigOptions,
    proxy_env: &ProxyEnv,
) -> Result<ClusterConfig, KubeconfigError> {
    proxylab_core::tls::install_crypto_provider();
    let files = candidate_files(opts)?;
    let chosen = if !files.is_empty() {
        choose_from_files(opts, files)?
    } else if opts.overrides.server.is_some() {
        Chosen {
            cluster: Cluster::default(),
            user: AuthInfo::default(),
            cluster_at: EntryAt::default(),
            user_at: EntryAt::default(),
            source: ConfigSource::Flags,
            context: None,
            cluster_name: None,
            user_name: None,
            cluster_file: None,
            user_file: None,
            all_files: None,
        }
    } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        in_cluster()?
    } else {
        return Err(KubeconfigError::new(
            None,
            None,
            "no kubeconfig found (--kubeconfig not given, KUBECONFIG unset or naming no existing \
             file, no ~/.kube/config), no --server, and not running in a cluster",
        ));
    };

    let mut effective = Effective::new(
        chosen.cluster,
        chosen.user,
        chosen.cluster_at,
        chosen.user_at,
        &opts.overrides,
    );
    effective.validate()?;
    let plaintext_credentials_dropped = effective.drop_credentials_for_plaintext();

    // An empty proxy-url is an unset one (client-go), which lets the environment decide.
    let kubeconfig_proxy = effective
        .cluster
        .proxy_url
        .clone()
        .filter(|p| !p.trim().is_empty());
    if let Some(p) = &kubeconfig_proxy {
        let uri: Result<http::Uri, _> = p.parse();
        if !uri.as_ref().is_ok_and(|u| {
            matches!(
                u.scheme_str(),
                Some("http" | "https" | "socks5" | "socks5h")
            ) && u.host().is_some()
        }) {
            return Err(effective.cluster_error(
                "proxy-url",
                format!("{p:?} is not an http://, https:// or socks5:// URL"),
            ));
        }
    }
    // kube-rs falls back to HTTPS_PROXY itself when a cluster has no proxy-url — for http://
    // servers too, for loopback ones, and ignoring NO_PROXY unless its proxy features are
    // compiled in (they are not). Give it a placeholder proxy-url so that it never reads the
    // environment; the real choice, by Go's rules, replaces it below.
    let mut cluster = effective.cluster.clone();
    if kubeconfig_proxy.is_none() {
        cluster.proxy_url = Some(PROXY_PLACEHOLDER.to_owned());
    }

    // kube-rs builds its config from a kubeconfig: hand it one holding exactly the effective
    // cluster and user.
    const NAME: &str = "proxylab";
    let one = Kubeconfig {
        clusters: vec![NamedCluster {
            name: NAME.into(),
            cluster: Some(cluster),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: NAME.into(),
            auth_info: Some(effective.user.clone()),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: NAME.into(),
            context: Some(Context {
                cluster: NAME.into(),
                user: Some(NAME.into()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some(NAME.into()),
        ..Kubeconfig::default()
    };
    let config = kube::Config::from_custom_kubeconfig(one, &KubeConfigOptions::default())
        .await
        .map_err(|e| {
            use kube::config::KubeconfigError as K;
            let text = error_text(&e);
            match &e {
                K::LoadCertificateAuthority(_) | K::ParseCertificates(_) => {
                    let field = if effective.cluster.certificate_authority_data.is_some() {
                        "certificate-authority-data"
                    } else {
                        "certificate-authority"
                    };
                    effective.cluster_error(field, text)
                }
                K::LoadClientCertificate(_) => {
                    let field = if effective.user.client_certificate_data.is_some() {
                        "client-certificate-data"
                    } else {
                        "client-certificate"
                    };
                    effective.user_error(field, text)
                }
                K::LoadClientKey(_) => {
                    let field = if effective.user.client_key_data.is_some() {
                        "client-key-data"
                    } else {
                        "client-key"
                    };
                    effective.user_error(field, text)
                }
                K::ParseProxyUrl(_) => effective.cluster_error("proxy-url", text),
                K::MissingClusterUrl | K::ParseClusterUrl(_) => {
                    effective.cluster_error("server", text)
                }
                _ => KubeconfigError::new(chosen.all_files.as_deref(), None, text),
            }
        })?;
    let mut config = config;
    let kubeconfig_proxy = match kubeconfig_proxy {
        Some(_) => config.proxy_url.clone(),
        None => None,
    };
    let proxy = apply_proxy(&mut config, kubeconfig_proxy.as_ref(), proxy_env)?;
    Ok(ClusterConfig {
        config,
        proxy,
        source: chosen.source,
        context: chosen.context,
        cluster_name: chosen.cluster_name,
        user_name: chosen.user_name,
        cluster_file: chosen.cluster_file,
        user_file: chosen.user_file,
        plaintext_credentials_dropped,
        cluster_at: effective.cluster_at,
        user_at: effective.user_at,
        flags: effective.flags,
    })
}

/// The pod's service account, as client-go's `InClusterConfig`: the server from
/// `KUBERNETES_SERVICE_HOST`/`_PORT`, the mounted CA and token file.
fn in_cluster() -> Result<Chosen, KubeconfigError> {
    let in_cluster_error =
        |e: String| KubeconfigError::new(None, None, format!("in-cluster configuration: {e}"));
    let config = kube::Config::incluster().map_err(|e| in_cluster_error(error_text(&e)))?;
    // client-go's InClusterConfig reads the token up front and fails when it cannot; kube-rs only
    // records the path. Check it here so a pod without a mounted token gets an error that says
    // "in-cluster" rather than one about an unnamed user's tokenFile later.
    if let Some(token_file) = &config.auth_info.token_file
        && let Err(e) = std::fs::read(token_file)
    {
        return Err(in_cluster_error(format!(
            "cannot read token file {token_file}: {e}"
        )));
    }
    let cluster = Cluster {
        server: Some(config.cluster_url.to_string()),
        certificate_authority: config
            .root_cert_file
            .as_ref()
            .map(|p| p.display().to_string()),
        ..Cluster::default()
    };
    let at = |what: &str| EntryAt {
        file: None,
        path: format!("in-cluster {what}"),
    };
    Ok(Chosen {
        cluster,
        user: config.auth_info.clone(),
        cluster_at: at("cluster"),
        user_at: at("service account"),
        source: ConfigSource::InCluster,
        context: None,
        cluster_name: None,
        user_name: None,
        cluster_file: None,
        user_file: None,
        all_files: None,
    })
}

/// Merges the files (first wins) and picks the context, cluster and user as clientcmd does,
/// checking each reference and remembering which file defined each entry.
fn choose_from_files(
    opts: &KubeconfigOptions,
    files: Vec<PathBuf>,
) -> Result<Chosen, KubeconfigError> {
    let mut merged = Kubeconfig::default();
    let mut context_file: HashMap<String, PathBuf> = HashMap::new();
    let mut cluster_file: HashMap<String, PathBuf> = HashMap::new();
    let mut user_file: HashMap<String, PathBuf> = HashMap::new();
    let mut current_context_file: Option<PathBuf> = None;
    for path in &files {
        let kc = Kubeconfig::read_from(path)
            .map_err(|e| KubeconfigError::new(Some(path), None, error_text(&e)))?;
        for c in &kc.contexts {
            context_file.entry(c.name.clone()).or_insert(path.clone());
        }
        for c in &kc.clusters {
            cluster_file.entry(c.name.clone()).or_insert(path.clone());
        }
        for u in &kc.auth_infos {
            user_file.entry(u.name.clone()).or_insert(path.clone());
        }
        if current_context_file.is_none()
            && kc.current_context.as_deref().is_some_and(|c| !c.is_empty())
        {
            current_context_file = Some(path.clone());
        }
        merged = merged
            .merge(kc)
            .map_err(|e| KubeconfigError::new(Some(path), None, error_text(&e)))?;
    }
    let all_files = PathBuf::from(
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
    );
    let all = Some(all_files.as_path());
    // With --server the flags supply the cluster: a missing one is not an error (kubectl).
    let server_flag = opts.overrides.server.is_some();

    let context_name = opts
        .context
        .clone()
        .or_else(|| merged.current_context.clone().filter(|c| !c.is_empty()));
    let mut cluster_name = opts.cluster.clone();
    let mut user_name = opts.user.clone();
    if let Some(ctx) = &context_name {
        let (file, field) = if opts.context.is_some() {
            (all, "--context".to_owned())
        } else {
            (
                current_context_file.as_deref().or(all),
                "current-context".to_owned(),
            )
        };
        let Some(named) = merged.contexts.iter().find(|c| &c.name == ctx) else {
            return Err(KubeconfigError::new(
                file,
                Some(field),
                format!("no context named {ctx:?}"),
            ));
        };
        let cfile = context_file.get(ctx).map(PathBuf::as_path);
        let context = named.context.clone().unwrap_or_default();
        if cluster_name.is_none() {
            if context.cluster.is_empty() {
                if !server_flag {
                    return Err(KubeconfigError::new(
                        cfile,
                        Some(format!("contexts[{ctx}].context.cluster")),
                        "is empty",
                    ));
                }
            } else if merged.clusters.iter().any(|c| c.name == context.cluster) {
                cluster_name = Some(context.cluster.clone());
            } else if !server_flag {
                return Err(KubeconfigError::new(
                    cfile,
                    Some(format!("contexts[{ctx}].context.cluster")),
                    format!("no cluster named {:?}", context.cluster),
                ));
            }
        }
        if user_name.is_none()
            && let Some(user) = context.user.clone().filter(|u| !u.is_empty())
        {
            if !merged.auth_infos.iter().any(|u| u.name == user) {
                return Err(KubeconfigError::new(
                    cfile,
                    Some(format!("contexts[{ctx}].context.user")),
                    format!("no user named {user:?}"),
                ));
            }
            user_name = Some(user);
        }
    }
    if cluster_name.is_none() && !server_flag {
        return Err(KubeconfigError::new(
            all,
            Some("current-context".into()),
            "not set, and neither --context, --cluster nor --server given",
        ));
    }
    let cluster = match &cluster_name {
        Some(name) => merged
            .clusters
            .iter()
            .find(|c| &c.name == name)
            .ok_or_else(|| {
                KubeconfigError::new(
                    all,
                    Some("--cluster".into()),
                    format!("no cluster named {name:?}"),
                )
            })?
            .cluster
            .clone()
            .unwrap_or_default(),
        None => Cluster::default(),
    };
    let user = match &user_name {
        Some(name) => merged
            .auth_infos
            .iter()
            .find(|u| &u.name == name)
            .ok_or_else(|| {
                KubeconfigError::new(
                    all,
                    Some("--user".into()),
                    format!("no user named {name:?}"),
                )
            })?
            .auth_info
            .clone()
            .unwrap_or_default(),
        None => AuthInfo::default(),
    };
    let cfile = cluster_name
        .as_ref()
        .and_then(|c| cluster_file.get(c).cloned());
    let ufile = user_name.as_ref().and_then(|u| user_file.get(u).cloned());
    Ok(Chosen {
        cluster,
        user,
        cluster_at: EntryAt {
            file: cfile.clone(),
            path: format!(
                "clusters[{}].cluster",
                cluster_name.as_deref().unwrap_or("")
            ),
        },
        user_at: EntryAt {
            file: ufile.clone(),
            path: format!("users[{}].user", user_name.as_deref().unwrap_or("")),
        },
        source: ConfigSource::Files(files),
        context: context_name,
        cluster_name,
        user_name,
        cluster_file: cfile,
        user_file: ufile,
        all_files: Some(all_files),
    })
}

/// Stands in for a missing `proxy-url` while kube-rs builds its config (see [`load_with_env`]);
/// always replaced before the config is returned.
const PROXY_PLACEHOLDER: &str = "http://proxylab-placeholder.invalid";

/// Chooses the proxy (kubeconfig `proxy-url`, else the environment) and stores it in
/// `config.proxy_url`.
fn apply_proxy(
    config: &mut kube::Config,
    kubeconfig_proxy: Option<&http::Uri>,
    env: &ProxyEnv,
) -> Result<ProxyChoice, KubeconfigError> {
    let choice = choose_proxy(kubeconfig_proxy, &config.cluster_url, env).map_err(|e| {
        KubeconfigError::new(
            None,
            Some(format!("environment variable {}", e.var)),
            format!("{:?}: {}", e.value, e.message),
        )
    })?;
    config.proxy_url = choice.url().cloned();
    Ok(choice)
}

/// An error with its sources, on one line.
fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    proxylab_core::http::error_chain(e)
}
