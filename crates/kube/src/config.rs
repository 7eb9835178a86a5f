//! kubeconfig → one cluster, one user, with errors that name the file and the field.
//!
//! kubectl's loading rules (client-go `clientcmd`), which proxylab follows:
//!
//! 1. `--kubeconfig FILE` → that file only; it must exist.
//! 2. otherwise `KUBECONFIG` → a `:`-separated list; files that do not exist are skipped; the rest
//!    are merged with "the first file to set a value or a map key wins" (so `current-context` comes
//!    from the first file that sets it, and a user named in two files is the first file's user).
//! 3. otherwise `~/.kube/config`, when it exists.
//! 4. nothing found, and `KUBERNETES_SERVICE_HOST` set → in-cluster config (the pod's service
//!    account token and CA).
//!
//! Then `--context` (else `current-context`) picks a context, and `--cluster` / `--user` override
//! the context's cluster and user.
//!
//! The proxy towards the apiserver is the cluster's `proxy-url`, else — as client-go's fallback to
//! Go's `http.ProxyFromEnvironment` — `HTTPS_PROXY` / `HTTP_PROXY` unless `NO_PROXY` matches or the
//! server is loopback ([`crate::dialer::choose_proxy`]). The environment is read once, here; the
//! choice lands in `config.proxy_url`, which the upstream's dialer uses, and in
//! [`ClusterConfig::proxy`], which says where it came from.
//!
//! kube-rs does the parsing, merging and credential plumbing; this module keeps track of *which file*
//! defined each entry, so that a broken kubeconfig produces one line a user can act on:
//! `kubeconfig /home/me/.kube/config: users[alice].client-certificate: cannot read /tmp/a.crt: No
//! such file or directory`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::dialer::{ProxyChoice, ProxyEnv, choose_proxy};

/// Which kubeconfig to load, as kubectl's global flags say.
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
}

/// A kubeconfig problem: where, which field, what.
#[derive(Debug, Clone, thiserror::Error)]
pub struct KubeconfigError {
    /// The file at fault (or the list of files merged), when known.
    pub file: Option<String>,
    /// The field path, kubectl-style: `contexts[dev].context.cluster`, `current-context`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for KubeconfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("kubeconfig")?;
        if let Some(file) = &self.file {
            write!(f, " {file}")?;
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

    /// A [`KubeconfigError`] about a field of the chosen user.
    pub fn user_error(&self, field: &str, message: impl Into<String>) -> KubeconfigError {
        KubeconfigError::new(
            self.user_file.as_deref(),
            Some(format!(
                "users[{}].{field}",
                self.user_name.as_deref().unwrap_or("")
            )),
            message,
        )
    }

    /// A [`KubeconfigError`] about a field of the chosen cluster.
    pub fn cluster_error(&self, field: &str, message: impl Into<String>) -> KubeconfigError {
        KubeconfigError::new(
            self.cluster_file.as_deref(),
            Some(format!(
                "clusters[{}].{field}",
                self.cluster_name.as_deref().unwrap_or("")
            )),
            message,
        )
    }
}

/// The kubeconfig files kubectl would read, in merge order, with whether the list was explicit.
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

/// [`load`], with the proxy variables given rather than read from the process environment (the
/// other variables — `KUBECONFIG`, `HOME`, `KUBERNETES_SERVICE_*` — are still read).
pub async fn load_with_env(
    opts: &KubeconfigOptions,
    proxy_env: &ProxyEnv,
) -> Result<ClusterConfig, KubeconfigError> {
    proxylab_core::tls::install_crypto_provider();
    let files = candidate_files(opts)?;
    if files.is_empty() {
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            let in_cluster_error = |e: String| {
                KubeconfigError::new(None, None, format!("in-cluster configuration: {e}"))
            };
            let config = kube::Config::incluster().map_err(|e| in_cluster_error(error_text(&e)))?;
            // client-go's InClusterConfig reads the token up front and fails when it cannot;
            // kube-rs only records the path. Check it here so a pod without a mounted token
            // gets an error that says "in-cluster" rather than one about an unnamed user's
            // tokenFile later.
            if let Some(token_file) = &config.auth_info.token_file
                && let Err(e) = std::fs::read(token_file)
            {
                return Err(in_cluster_error(format!(
                    "cannot read token file {token_file}: {e}"
                )));
            }
            let mut config = config;
            let proxy = apply_proxy(&mut config, None, proxy_env)?;
            return Ok(ClusterConfig {
                config,
                proxy,
                source: ConfigSource::InCluster,
                context: None,
                cluster_name: None,
                user_name: None,
                cluster_file: None,
                user_file: None,
            });
        }
        return Err(KubeconfigError::new(
            None,
            None,
            "no kubeconfig found (--kubeconfig not given, KUBECONFIG unset or naming no existing \
             file, no ~/.kube/config) and not running in a cluster",
        ));
    }

    // Read each file on its own to remember which file defined each entry (first wins).
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
    let all_files = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let all = Some(Path::new(&all_files));

    // Pick the context, cluster and user as clientcmd does, checking each reference.
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
                return Err(KubeconfigError::new(
                    cfile,
                    Some(format!("contexts[{ctx}].context.cluster")),
                    "is empty",
                ));
            }
            if !merged.clusters.iter().any(|c| c.name == context.cluster) {
                return Err(KubeconfigError::new(
                    cfile,
                    Some(format!("contexts[{ctx}].context.cluster")),
                    format!("no cluster named {:?}", context.cluster),
                ));
            }
            cluster_name = Some(context.cluster.clone());
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
    let Some(cluster) = cluster_name.clone() else {
        return Err(KubeconfigError::new(
            all,
            Some("current-context".into()),
            "not set, and neither --context nor --cluster given",
        ));
    };
    let Some(named_cluster) = merged.clusters.iter().find(|c| c.name == cluster) else {
        return Err(KubeconfigError::new(
            all,
            Some("--cluster".into()),
            format!("no cluster named {cluster:?}"),
        ));
    };
    if let Some(user) = &opts.user
        && !merged.auth_infos.iter().any(|u| &u.name == user)
    {
        return Err(KubeconfigError::new(
            all,
            Some("--user".into()),
            format!("no user named {user:?}"),
        ));
    }
    let cfile = cluster_file.get(&cluster).cloned();
    let ufile = user_name.as_ref().and_then(|u| user_file.get(u).cloned());
    let cluster_field = |f: &str| Some(format!("clusters[{cluster}].cluster.{f}"));
    let user_field = |f: &str| {
        Some(format!(
            "users[{}].user.{f}",
            user_name.as_deref().unwrap_or("")
        ))
    };

    // Check the fields kube-rs would otherwise report without saying which entry they belong to.
    let c = named_cluster.cluster.clone().unwrap_or_default();
    match &c.server {
        None => {
            return Err(KubeconfigError::new(
                cfile.as_deref(),
                cluster_field("server"),
                "is missing",
            ));
        }
        Some(s) => {
            let uri: http::Uri = s.parse().map_err(|e| {
                KubeconfigError::new(
                    cfile.as_deref(),
                    cluster_field("server"),
                    format!("{s:?}: {e}"),
                )
            })?;
            if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
                return Err(KubeconfigError::new(
                    cfile.as_deref(),
                    cluster_field("server"),
                    format!("{s:?} is not an http(s)://host[:port] URL"),
                ));
            }
        }
    }
    if c.certificate_authority_data.is_none() {
        check_readable(
            cfile.as_deref(),
            cluster_field("certificate-authority"),
            c.certificate_authority.as_deref(),
        )?;
    }
    // An empty proxy-url is an unset one (client-go), which lets the environment decide.
    let kubeconfig_proxy = c.proxy_url.as_deref().filter(|p| !p.trim().is_empty());
    if let Some(p) = kubeconfig_proxy {
        let uri: Result<http::Uri, _> = p.parse();
        if !uri.as_ref().is_ok_and(|u| {
            matches!(
                u.scheme_str(),
                Some("http" | "https" | "socks5" | "socks5h")
            ) && u.host().is_some()
        }) {
            return Err(KubeconfigError::new(
                cfile.as_deref(),
                cluster_field("proxy-url"),
                format!("{p:?} is not an http://, https:// or socks5:// URL"),
            ));
        }
    }
    if let Some(u) = user_name
        .as_ref()
        .and_then(|u| merged.auth_infos.iter().find(|a| &a.name == u))
        && let Some(a) = &u.auth_info
    {
        if a.client_certificate_data.is_none() {
            check_readable(
                ufile.as_deref(),
                user_field("client-certificate"),
                a.client_certificate.as_deref(),
            )?;
        }
        if a.client_key_data.is_none() {
            check_readable(
                ufile.as_deref(),
                user_field("client-key"),
                a.client_key.as_deref(),
            )?;
        }
        if a.token.is_none() {
            check_readable(
                ufile.as_deref(),
                user_field("tokenFile"),
                a.token_file.as_deref(),
            )?;
        }
    }

    // kube-rs falls back to HTTPS_PROXY itself when a cluster has no proxy-url — for http://
    // servers too, for loopback ones, and ignoring NO_PROXY unless its proxy features are
    // compiled in (they are not). Give it a placeholder proxy-url so that it never reads the
    // environment; the real choice, by Go's rules, replaces it below.
    if kubeconfig_proxy.is_none()
        && let Some(entry) = merged
            .clusters
            .iter_mut()
            .find(|n| n.name == cluster)
            .and_then(|n| n.cluster.as_mut())
    {
        entry.proxy_url = Some(PROXY_PLACEHOLDER.to_owned());
    }

    let options = KubeConfigOptions {
        context: context_name.clone(),
        cluster: Some(cluster.clone()),
        user: user_name.clone(),
    };
    let config = kube::Config::from_custom_kubeconfig(merged, &options)
        .await
        .map_err(|e| {
            use kube::config::KubeconfigError as K;
            let (file, field) = match &e {
                K::LoadCertificateAuthority(_) | K::ParseCertificates(_) => (
                    cfile.as_deref(),
                    cluster_field("certificate-authority-data"),
                ),
                K::LoadClientCertificate(_) => {
                    (ufile.as_deref(), user_field("client-certificate-data"))
                }
                K::LoadClientKey(_) => (ufile.as_deref(), user_field("client-key-data")),
                K::ParseProxyUrl(_) => (cfile.as_deref(), cluster_field("proxy-url")),
                K::MissingClusterUrl | K::ParseClusterUrl(_) => {
                    (cfile.as_deref(), cluster_field("server"))
                }
                _ => (all, None),
            };
            KubeconfigError::new(file, field, error_text(&e))
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
        source: ConfigSource::Files(files),
        context: context_name,
        cluster_name: Some(cluster),
        user_name,
        cluster_file: cfile,
        user_file: ufile,
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

fn check_readable(
    file: Option<&Path>,
    field: Option<String>,
    path: Option<&str>,
) -> Result<(), KubeconfigError> {
    if let Some(p) = path
        && let Err(e) = std::fs::metadata(p)
    {
        return Err(KubeconfigError::new(
            file,
            field,
            format!("cannot read {p}: {e}"),
        ));
    }
    Ok(())
}

/// An error with its sources, on one line.
fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    proxylab_core::http::error_chain(e)
}
