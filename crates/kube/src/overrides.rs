//! kubectl's connection flags laid over the kubeconfig, and the checks kubectl makes on the result
//! (client-go `clientcmd`: `ConfigOverrides`, `DirectClientConfig.getCluster/getAuthInfo`,
//! `validateClusterInfo`, `validateAuthInfo`, and `transport.TLSConfigFor`).
//!
//! Precedence is flag > kubeconfig entry > default, field by field: a flag that is set replaces the
//! chosen cluster's or user's value; an unset (or empty) flag leaves it. Three rules go further,
//! as in client-go:
//!
//! - `--certificate-authority` or `--insecure-skip-tls-verify=true` replace the whole trust
//!   setting: the kubeconfig's CA (file and data) and its `insecure-skip-tls-verify` are dropped, so
//!   a kubeconfig with a CA still works with `--insecure-skip-tls-verify`;
//! - `--server` drops the kubeconfig's `tls-server-name` (a name meant for the old address) unless
//!   `--tls-server-name` is given too;
//! - an `http://` server gets no credentials at all — no token, basic auth, client certificate or
//!   exec plugin — only impersonation ("only try to read the auth information if we are secure"):
//!   a bearer token is never sent in clear text.
//!
//! One deliberate difference: `--token` also drops the kubeconfig user's `tokenFile` (client-go
//! keeps both and, oddly, sends the file's token while it can read it).
//!
//! Then the checks, each an error naming where the bad value came from — the flag, or the
//! kubeconfig file and field: a server is required and must be an `http(s)://host` URL; a CA file
//! must be readable and cannot be combined with `insecure-skip-tls-verify`; a client certificate
//! needs its key, and a file and inline data cannot both be given for either; a token and basic
//! auth cannot both be given; impersonating a group or UID needs a user to impersonate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kube::config::{AuthInfo, Cluster};
use secrecy::SecretString;

use crate::config::KubeconfigError;

/// kubectl's global flags that change the connection (`kubectl options`), as client-go's
/// `ConfigOverrides` holds them. `None`/`false`/empty means "not given".
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    /// `--server`, `-s`
    pub server: Option<String>,
    /// `--certificate-authority`
    pub certificate_authority: Option<PathBuf>,
    /// `--insecure-skip-tls-verify` (only `true` overrides, as in client-go)
    pub insecure_skip_tls_verify: bool,
    /// `--tls-server-name`
    pub tls_server_name: Option<String>,
    /// `--token`
    pub token: Option<String>,
    /// `--username`
    pub username: Option<String>,
    /// `--password`
    pub password: Option<String>,
    /// `--client-certificate`
    pub client_certificate: Option<PathBuf>,
    /// `--client-key`
    pub client_key: Option<PathBuf>,
    /// `--as`
    pub impersonate: Option<String>,
    /// `--as-uid`
    pub impersonate_uid: Option<String>,
    /// `--as-group` (repeated; a non-empty list replaces the kubeconfig's)
    pub impersonate_groups: Vec<String>,
}

impl ConfigOverrides {
    /// Whether any flag is set.
    pub fn is_empty(&self) -> bool {
        self.server.is_none()
            && self.certificate_authority.is_none()
            && !self.insecure_skip_tls_verify
            && self.tls_server_name.is_none()
            && self.token.is_none()
            && self.username.is_none()
            && self.password.is_none()
            && self.client_certificate.is_none()
            && self.client_key.is_none()
            && self.impersonate.is_none()
            && self.impersonate_uid.is_none()
            && self.impersonate_groups.is_empty()
    }
}

/// Where a kubeconfig entry came from: its file (none for in-cluster or flags alone) and the
/// field path of the entry (`clusters[c].cluster`, `users[u].user`).
#[derive(Debug, Clone, Default)]
pub(crate) struct EntryAt {
    pub file: Option<PathBuf>,
    pub path: String,
}

/// The chosen cluster and user after the flags, with what came from which flag.
#[derive(Debug, Clone)]
pub(crate) struct Effective {
    pub cluster: Cluster,
    pub user: AuthInfo,
    pub cluster_at: EntryAt,
    pub user_at: EntryAt,
    /// kubeconfig field name (`server`, `token`, …) → the flag that set it.
    pub flags: BTreeMap<&'static str, &'static str>,
}

impl Effective {
    /// Lays `ov` over the chosen entries (see the module docs for the rules).
    pub fn new(
        mut cluster: Cluster,
        mut user: AuthInfo,
        cluster_at: EntryAt,
        user_at: EntryAt,
        ov: &ConfigOverrides,
    ) -> Self {
        let mut flags = BTreeMap::new();
        if let Some(server) = &ov.server {
            cluster.server = Some(server.clone());
            flags.insert("server", "--server");
            // A kubeconfig's tls-server-name belongs to its own server address.
            cluster.tls_server_name = None;
        }
        if let Some(name) = &ov.tls_server_name {
            cluster.tls_server_name = Some(name.clone());
            flags.insert("tls-server-name", "--tls-server-name");
        }
        if ov.insecure_skip_tls_verify || ov.certificate_authority.is_some() {
            cluster.insecure_skip_tls_verify = Some(ov.insecure_skip_tls_verify);
            cluster.certificate_authority = ov
                .certificate_authority
                .as_ref()
                .map(|p| p.display().to_string());
            cluster.certificate_authority_data = None;
            if ov.insecure_skip_tls_verify {
                flags.insert("insecure-skip-tls-verify", "--insecure-skip-tls-verify");
            }
            if ov.certificate_authority.is_some() {
                flags.insert("certificate-authority", "--certificate-authority");
            }
        }
        if let Some(token) = &ov.token {
            user.token = Some(SecretString::from(token.clone()));
            user.token_file = None;
            flags.insert("token", "--token");
        }
        if let Some(username) = &ov.username {
            user.username = Some(username.clone());
            flags.insert("username", "--username");
        }
        if let Some(password) = &ov.password {
            user.password = Some(SecretString::from(password.clone()));
            flags.insert("password", "--password");
        }
        if let Some(cert) = &ov.client_certificate {
            user.client_certificate = Some(cert.display().to_string());
            flags.insert("client-certificate", "--client-certificate");
        }
        if let Some(key) = &ov.client_key {
            user.client_key = Some(key.display().to_string());
            flags.insert("client-key", "--client-key");
        }
        if let Some(name) = &ov.impersonate {
            user.impersonate = Some(name.clone());
            flags.insert("as", "--as");
        }
        if let Some(uid) = &ov.impersonate_uid {
            user.impersonate_uid = Some(uid.clone());
            flags.insert("as-uid", "--as-uid");
        }
        if !ov.impersonate_groups.is_empty() {
            user.impersonate_groups = Some(ov.impersonate_groups.clone());
            flags.insert("as-groups", "--as-group");
        }
        Self {
            cluster,
            user,
            cluster_at,
            user_at,
            flags,
        }
    }

    /// An error about a cluster field: the flag that set it, else the file and field.
    pub fn cluster_error(&self, field: &str, message: impl Into<String>) -> KubeconfigError {
        locate(&self.flags, &self.cluster_at, field, message)
    }

    /// An error about a user field: the flag that set it, else the file and field.
    pub fn user_error(&self, field: &str, message: impl Into<String>) -> KubeconfigError {
        locate(&self.flags, &self.user_at, field, message)
    }

    /// kubectl's checks of the result (see the module docs).
    pub fn validate(&self) -> Result<(), KubeconfigError> {
        let c = &self.cluster;
        let Some(server) = c.server.as_deref().filter(|s| !s.is_empty()) else {
            return Err(self.cluster_error("server", "is missing (no --server flag either)"));
        };
        let uri: http::Uri = server
            .parse()
            .map_err(|e| self.cluster_error("server", format!("{server:?}: {e}")))?;
        if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
            return Err(self.cluster_error(
                "server",
                format!("{server:?} is not an http(s)://host[:port] URL"),
            ));
        }
        if c.certificate_authority_data.is_none() {
            check_readable(
                self,
                "certificate-authority",
                c.certificate_authority.as_deref(),
            )?;
        }
        if c.insecure_skip_tls_verify == Some(true)
            && (c.certificate_authority.is_some() || c.certificate_authority_data.is_some())
        {
            return Err(self.cluster_error(
                "insecure-skip-tls-verify",
                "specifying a root certificates file with the insecure flag is not allowed \
                 (certificate-authority is set too)",
            ));
        }

        let u = &self.user;
        let cert = u.client_certificate.is_some() || u.client_certificate_data.is_some();
        if u.client_certificate.is_some() && u.client_certificate_data.is_some() {
            return Err(self.user_error(
                "client-certificate",
                "client-certificate-data is set too: give one of them",
            ));
        }
        if u.client_key.is_some() && u.client_key_data.is_some() {
            return Err(
                self.user_error("client-key", "client-key-data is set too: give one of them")
            );
        }
        if cert && u.client_key.is_none() && u.client_key_data.is_none() {
            return Err(self.user_error(
                "client-certificate",
                "a client certificate needs client-key or client-key-data (--client-key)",
            ));
        }
        if u.client_certificate_data.is_none() {
            check_readable_user(self, "client-certificate", u.client_certificate.as_deref())?;
        }
        if u.client_key_data.is_none() {
            check_readable_user(self, "client-key", u.client_key.as_deref())?;
        }
        if u.token.is_none() {
            check_readable_user(self, "tokenFile", u.token_file.as_deref())?;
        }
        let basic = u.username.is_some() || u.password.is_some();
        if u.token.is_some() && basic {
            let field = if self.flags.contains_key("username") {
                "username"
            } else if self.flags.contains_key("password") {
                "password"
            } else {
                "token"
            };
            return Err(self.user_error(
                field,
                "more than one authentication method found: token and basic auth (username/password); only one is allowed",
            ));
        }
        let extra = u
            .impersonate_user_extra
            .as_ref()
            .is_some_and(|e| !e.is_empty());
        let groups = u.impersonate_groups.as_ref().is_some_and(|g| !g.is_empty());
        if (u.impersonate_uid.is_some() || groups || extra) && u.impersonate.is_none() {
            let field = if groups {
                "as-groups"
            } else if u.impersonate_uid.is_some() {
                "as-uid"
            } else {
                "as-user-extra"
            };
            return Err(self.user_error(
                field,
                "requesting uid, groups or user-extra without impersonating a user (--as)",
            ));
        }
        Ok(())
    }

    /// Whether the server is plain `http://`.
    pub fn is_plaintext(&self) -> bool {
        self.cluster
            .server
            .as_deref()
            .is_some_and(|s| s.len() >= 7 && s[..7].eq_ignore_ascii_case("http://"))
    }

    /// client-go's rule for an `http://` server: no credentials, impersonation only. Returns whether
    /// any credential was dropped (the binary says so).
    pub fn drop_credentials_for_plaintext(&mut self) -> bool {
        if !self.is_plaintext() {
            return false;
        }
        let u = &mut self.user;
        let had = u.token.is_some()
            || u.token_file.is_some()
            || u.username.is_some()
            || u.password.is_some()
            || u.client_certificate.is_some()
            || u.client_certificate_data.is_some()
            || u.client_key.is_some()
            || u.client_key_data.is_some()
            || u.exec.is_some()
            || u.auth_provider.is_some();
        u.token = None;
        u.token_file = None;
        u.username = None;
        u.password = None;
        u.client_certificate = None;
        u.client_certificate_data = None;
        u.client_key = None;
        u.client_key_data = None;
        u.exec = None;
        u.auth_provider = None;
        had
    }
}

/// The flag that set `field`, else `at`'s file and `at.path.field`.
pub(crate) fn locate(
    flags: &BTreeMap<&'static str, &'static str>,
    at: &EntryAt,
    field: &str,
    message: impl Into<String>,
) -> KubeconfigError {
    match flags.get(field) {
        Some(flag) => KubeconfigError {
            file: None,
            field: Some((*flag).to_owned()),
            message: message.into(),
        },
        None => KubeconfigError {
            file: at.file.as_ref().map(|p| p.display().to_string()),
            field: Some(if at.path.is_empty() {
                field.to_owned()
            } else {
                format!("{}.{field}", at.path)
            }),
            message: message.into(),
        },
    }
}

fn check_readable(e: &Effective, field: &str, path: Option<&str>) -> Result<(), KubeconfigError> {
    readable(path).map_err(|m| e.cluster_error(field, m))
}

fn check_readable_user(
    e: &Effective,
    field: &str,
    path: Option<&str>,
) -> Result<(), KubeconfigError> {
    readable(path).map_err(|m| e.user_error(field, m))
}

fn readable(path: Option<&str>) -> Result<(), String> {
    match path {
        Some(p) => std::fs::File::open(Path::new(p))
            .map(drop)
            .map_err(|e| format!("cannot read {p}: {e}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> EntryAt {
        EntryAt {
            file: Some(PathBuf::from("/kc")),
            path: path.into(),
        }
    }

    fn effective(cluster: Cluster, user: AuthInfo, ov: &ConfigOverrides) -> Effective {
        Effective::new(
            cluster,
            user,
            entry("clusters[c].cluster"),
            entry("users[u].user"),
            ov,
        )
    }

    fn server(s: &str) -> Cluster {
        Cluster {
            server: Some(s.into()),
            ..Cluster::default()
        }
    }

    #[test]
    fn flags_win_field_by_field() {
        let kc_user = AuthInfo {
            token: Some(SecretString::from("from-file".to_owned())),
            impersonate: Some("alice".into()),
            ..AuthInfo::default()
        };
        let mut cluster = server("https://old:6443");
        cluster.tls_server_name = Some("old-name".into());
        let ov = ConfigOverrides {
            server: Some("https://new:6443".into()),
            token: Some("from-flag".into()),
            impersonate_groups: vec!["g1".into(), "g2".into()],
            ..ConfigOverrides::default()
        };
        let e = effective(cluster, kc_user, &ov);
        assert_eq!(e.cluster.server.as_deref(), Some("https://new:6443"));
        assert_eq!(
            e.cluster.tls_server_name, None,
            "--server drops tls-server-name"
        );
        use secrecy::ExposeSecret;
        assert_eq!(e.user.token.as_ref().unwrap().expose_secret(), "from-flag");
        assert_eq!(
            e.user.impersonate.as_deref(),
            Some("alice"),
            "kept from the file"
        );
        assert_eq!(e.user.impersonate_groups.as_deref().unwrap(), ["g1", "g2"]);
        e.validate().unwrap();
    }

    #[test]
    fn trust_flags_replace_the_kubeconfig_ca() {
        let mut cluster = server("https://s:6443");
        cluster.certificate_authority_data = Some("Zm9v".into());
        let ov = ConfigOverrides {
            insecure_skip_tls_verify: true,
            ..ConfigOverrides::default()
        };
        let e = effective(cluster.clone(), AuthInfo::default(), &ov);
        assert_eq!(e.cluster.certificate_authority_data, None);
        assert_eq!(e.cluster.insecure_skip_tls_verify, Some(true));
        e.validate().unwrap();
        // Both flags at once: kubectl's TLS error, naming the flag.
        let ov = ConfigOverrides {
            insecure_skip_tls_verify: true,
            certificate_authority: Some("/dev/null".into()),
            ..ConfigOverrides::default()
        };
        let err = effective(cluster.clone(), AuthInfo::default(), &ov)
            .validate()
            .unwrap_err();
        assert_eq!(
            err.field.as_deref(),
            Some("--insecure-skip-tls-verify"),
            "{err}"
        );
        // Both in the file: the file's field.
        cluster.insecure_skip_tls_verify = Some(true);
        let err = effective(cluster, AuthInfo::default(), &ConfigOverrides::default())
            .validate()
            .unwrap_err();
        assert_eq!(err.file.as_deref(), Some("/kc"));
        assert_eq!(
            err.field.as_deref(),
            Some("clusters[c].cluster.insecure-skip-tls-verify")
        );
    }

    #[test]
    fn kubectl_checks_name_the_flag_or_the_field() {
        let check = |user: AuthInfo, ov: ConfigOverrides| {
            effective(server("https://s"), user, &ov)
                .validate()
                .err()
                .map(|e| e.to_string())
        };
        let token = || AuthInfo {
            token: Some(SecretString::from("t".to_owned())),
            ..AuthInfo::default()
        };
        let err = check(
            token(),
            ConfigOverrides {
                username: Some("u".into()),
                ..ConfigOverrides::default()
            },
        )
        .unwrap();
        assert!(
            err.starts_with("--username: more than one authentication method"),
            "{err}"
        );
        let err = check(
            AuthInfo::default(),
            ConfigOverrides {
                impersonate_groups: vec!["g".into()],
                ..ConfigOverrides::default()
            },
        )
        .unwrap();
        assert!(
            err.starts_with("--as-group: requesting uid, groups"),
            "{err}"
        );
        let err = check(
            AuthInfo::default(),
            ConfigOverrides {
                client_certificate: Some("/dev/null".into()),
                ..ConfigOverrides::default()
            },
        )
        .unwrap();
        assert!(err.contains("needs client-key"), "{err}");
        let err = check(
            AuthInfo {
                client_certificate_data: Some("Zm9v".into()),
                client_key_data: Some(SecretString::from("Zm9v".to_owned())),
                ..AuthInfo::default()
            },
            ConfigOverrides {
                client_certificate: Some("/dev/null".into()),
                ..ConfigOverrides::default()
            },
        )
        .unwrap();
        assert!(
            err.starts_with("--client-certificate: client-certificate-data is set too"),
            "{err}"
        );
        let err = check(
            AuthInfo::default(),
            ConfigOverrides {
                client_certificate: Some("/nonexistent/c.crt".into()),
                client_key: Some("/dev/null".into()),
                ..ConfigOverrides::default()
            },
        )
        .unwrap();
        assert!(
            err.starts_with("--client-certificate: cannot read /nonexistent/c.crt"),
            "{err}"
        );
        let err = check(
            AuthInfo {
                token_file: Some("/nonexistent/token".into()),
                ..AuthInfo::default()
            },
            ConfigOverrides::default(),
        )
        .unwrap();
        assert_eq!(
            err,
            "kubeconfig /kc: users[u].user.tokenFile: cannot read /nonexistent/token: No such file or directory (os error 2)"
        );
        assert_eq!(check(token(), ConfigOverrides::default()), None);
    }

    #[test]
    fn plain_http_gets_no_credentials_but_keeps_impersonation() {
        let user = AuthInfo {
            token: Some(SecretString::from("t".to_owned())),
            impersonate: Some("bob".into()),
            ..AuthInfo::default()
        };
        let mut e = effective(
            server("HTTP://s:8080"),
            user.clone(),
            &ConfigOverrides::default(),
        );
        assert!(e.drop_credentials_for_plaintext());
        assert!(e.user.token.is_none());
        assert_eq!(e.user.impersonate.as_deref(), Some("bob"));
        let mut e = effective(server("https://s"), user, &ConfigOverrides::default());
        assert!(!e.drop_credentials_for_plaintext());
        assert!(e.user.token.is_some());
    }
}
