//! Authentication, as kube-apiserver does it.
//!
//! kube-apiserver runs a *union* of authenticators over each request; the first that recognises the
//! credentials decides who the user is. The lab models the four a kubeadm cluster enables, in the same
//! order:
//!
//! 1. **Front-proxy (requestheader)**: a client certificate that chains to the *front-proxy* CA
//!    (`--requestheader-client-ca-file`) and whose CN is in `--requestheader-allowed-names` (empty: any)
//!    may assert another user in headers: `X-Remote-User`, `X-Remote-Group` (repeatable),
//!    `X-Remote-Extra-<key>`. This is how aggregated API servers and authenticating proxies speak for a
//!    user. A front-proxy certificate is *not* itself a user.
//! 2. **Client certificates** chaining to the cluster CA (`--client-ca-file`): CN → user name, each O →
//!    a group (`system:masters` for the admin).
//! 3. **Static tokens** (`--token-auth-file`, CSV `token,user,uid,"group1,group2"`).
//! 4. **Service-account JWTs** verified with `--service-account-key-file`; legacy Secret tokens are only
//!    valid while their Secret exists and still holds that very token (and the ServiceAccount's uid
//!    matches), which is what makes deleting a token Secret revoke it.
//!
//! Every authenticated user also gets the group `system:authenticated`. With no credentials at all the
//! request is anonymous (`system:anonymous` / `system:unauthenticated`), which the lab allows only for
//! `/healthz`, `/livez`, `/readyz` and `/version` (kubeadm's `system:public-info-viewer` role); anything
//! else gets `401` with a `Status` body. Presenting *bad* credentials is a 401 on every path.
//!
//! **Authorization**: there is none yet — any authenticated user may do anything (as with
//! `--authorization-mode=AlwaysAllow`). RBAC is future work. Impersonation (`Impersonate-*`) is the
//! exception: only `system:masters` may, see [`crate::impersonation`].
//!
//! After authenticating, the `Authorization` header and the requestheader headers are removed from the
//! request (as kube-apiserver does), so nothing downstream — notably the bastion's proxy — can forward a
//! client's credentials, and the [`UserInfo`] is put into the request's extensions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::HeaderMap;
use proxylab_core::serve::ConnInfo;
use proxylab_core::tls::PeerIdentity;
use proxylab_store::{ObjectKey, Store};
use rustls_pki_types::CertificateDer;
use serde::Serialize;

use crate::serviceaccount::{self, LEGACY_ISSUER, VerifyingKey};

/// How a user was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthMethod {
    ClientCertificate,
    RequestHeader,
    StaticToken,
    ServiceAccountToken,
    Anonymous,
}

/// Who is making a request (kube's `user.Info`). Inserted into every request's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
    #[serde(skip)]
    pub method: AuthMethod,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            username: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
            method: AuthMethod::Anonymous,
        }
    }

    fn new(username: String, uid: String, groups: Vec<String>, method: AuthMethod) -> Self {
        let mut u = UserInfo {
            username,
            uid,
            groups,
            extra: BTreeMap::new(),
            method,
        };
        if !u.groups.iter().any(|g| g == "system:authenticated") {
            u.groups.push("system:authenticated".into());
        }
        u
    }
}

pub use proxylab_core::authn::{TokenEntry, TokenFileError, bearer_token, parse_token_file};

/// Front-proxy authentication settings (`--requestheader-*`).
#[derive(Debug, Clone)]
pub struct RequestHeaderConfig {
    pub ca: Vec<CertificateDer<'static>>,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_headers_prefix: Vec<String>,
}

/// Why credentials were refused (logged; the client only sees 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("invalid bearer token")]
    InvalidToken,
    #[error("service account token: {0}")]
    ServiceAccount(String),
    #[error("front-proxy certificate CN {0:?} is not in --requestheader-allowed-names")]
    ProxyNotAllowed(String),
    #[error("client certificate is not from a trusted CA")]
    UntrustedCertificate,
}

/// The union of authenticators. Cheap to share (`Arc`).
pub struct Authenticator {
    client_ca: Vec<CertificateDer<'static>>,
    requestheader: Option<RequestHeaderConfig>,
    tokens: HashMap<String, TokenEntry>,
    sa_keys: Vec<VerifyingKey>,
    issuers: Vec<String>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("client_ca", &self.client_ca.len())
            .field("requestheader", &self.requestheader.is_some())
            .field("tokens", &self.tokens.len())
            .field("sa_keys", &self.sa_keys.len())
            .finish_non_exhaustive()
    }
}

/// Every value of header `name` that is text.
pub(crate) fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

/// The user extras carried by headers named `<prefix><key>` (the prefix lowercase), into `extra`:
/// keys are percent-encoded in header names (kube's convention) and compared lowercase.
pub(crate) fn extra_headers(
    headers: &HeaderMap,
    prefix: &str,
    extra: &mut BTreeMap<String, Vec<String>>,
) {
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(prefix)
            && let Ok(v) = value.to_str()
        {
            let key = percent_encoding::percent_decode_str(key)
                .decode_utf8_lossy()
                .to_lowercase();
            extra.entry(key).or_default().push(v.to_owned());
        }
    }
}

impl Authenticator {
    pub fn new(
        client_ca: Vec<CertificateDer<'static>>,
        requestheader: Option<RequestHeaderConfig>,
        static_tokens: Vec<TokenEntry>,
        sa_keys: Vec<VerifyingKey>,
        issuer: String,
        store: Arc<dyn Store>,
    ) -> Self {
        Authenticator {
            client_ca,
            requestheader,
            tokens: static_tokens
                .into_iter()
                .map(|t| (t.token.clone(), t))
                .collect(),
            sa_keys,
            issuers: vec![issuer, LEGACY_ISSUER.to_owned()],
            store,
        }
    }

    /// The header names requestheader authentication reads (to be stripped after authentication).
    pub fn requestheader_names(&self) -> Vec<String> {
        self.requestheader
            .as_ref()
            .map(|r| {
                r.username_headers
                    .iter()
                    .chain(&r.group_headers)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn requestheader_prefixes(&self) -> Vec<String> {
        self.requestheader
            .as_ref()
            .map(|r| {
                r.extra_headers_prefix
                    .iter()
                    .map(|p| p.to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `Ok(None)`: no credentials presented. `Err`: credentials presented but not valid.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        conn: Option<&ConnInfo>,
    ) -> Result<Option<UserInfo>, AuthError> {
        let mut failure = None;
        if let Some(peer) = conn.and_then(|c| c.peer.as_ref()) {
            match self.by_requestheader(peer, headers) {
                Ok(Some(u)) => return Ok(Some(u)),
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
            if self.client_ca.iter().any(|ca| peer.issued_by(ca)) {
                return Ok(Some(UserInfo::new(
                    peer.user.clone(),
                    String::new(),
                    peer.groups.clone(),
                    AuthMethod::ClientCertificate,
                )));
            }
        }
        if let Some(token) = bearer_token(headers) {
            return self.by_token(token).map(Some);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    fn by_requestheader(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
    ) -> Result<Option<UserInfo>, AuthError> {
        let Some(rh) = &self.requestheader else {
            return Ok(None);
        };
        if !rh.ca.iter().any(|ca| peer.issued_by(ca)) {
            return Ok(None);
        }
        if !rh.allowed_names.is_empty() && !rh.allowed_names.contains(&peer.user) {
            return Err(AuthError::ProxyNotAllowed(peer.user.clone()));
        }
        let Some(user) = rh
            .username_headers
            .iter()
            .flat_map(|h| header_values(headers, h))
            .find(|v| !v.is_empty())
        else {
            return Ok(None);
        };
        let groups = rh
            .group_headers
            .iter()
            .flat_map(|h| header_values(headers, h))
            .collect();
        let mut u = UserInfo::new(user, String::new(), groups, AuthMethod::RequestHeader);
        for prefix in &rh.extra_headers_prefix {
            extra_headers(headers, &prefix.to_ascii_lowercase(), &mut u.extra);
        }
        Ok(Some(u))
    }

    fn by_token(&self, token: &str) -> Result<UserInfo, AuthError> {
        if let Some(t) = self.tokens.get(token) {
            return Ok(UserInfo::new(
                t.user.clone(),
                t.uid.clone(),
                t.groups.clone(),
                AuthMethod::StaticToken,
            ));
        }
        if !serviceaccount::looks_like_jwt(token) || self.sa_keys.is_empty() {
            return Err(AuthError::InvalidToken);
        }
        let claims = serviceaccount::verify_with_any(&self.sa_keys, token)
            .map_err(|e| AuthError::ServiceAccount(e.to_string()))?;
        if !self.issuers.contains(&claims.iss) {
            return Err(AuthError::ServiceAccount(format!(
                "issuer {:?} not accepted",
                claims.iss
            )));
        }
        let sa_err = |m: String| AuthError::ServiceAccount(m);
        let ns = claims.namespace.as_str();
        let internal = |e: proxylab_store::StoreError| sa_err(e.to_string());
        let sa = self
            .store
            .get(&ObjectKey::new(
                "serviceaccounts",
                Some(ns),
                &claims.service_account_name,
            ))
            .map_err(internal)?
            .ok_or_else(|| {
                sa_err(format!(
                    "service account {ns}/{} not found",
                    claims.service_account_name
                ))
            })?;
        let sa_uid = sa["metadata"]["uid"].as_str().unwrap_or("");
        if !claims.service_account_uid.is_empty() && sa_uid != claims.service_account_uid {
            return Err(sa_err("service account uid does not match".into()));
        }
        if let Some(secret_name) = &claims.secret_name {
            let secret = self
                .store
                .get(&ObjectKey::new("secrets", Some(ns), secret_name))
                .map_err(internal)?
                .ok_or_else(|| sa_err(format!("secret {ns}/{secret_name} not found")))?;
            if claims.iss == LEGACY_ISSUER {
                // A legacy token is only as valid as the Secret holding it.
                use base64::Engine;
                let stored = secret["data"]["token"]
                    .as_str()
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
                if stored.as_deref() != Some(token.as_bytes()) {
                    return Err(sa_err(format!(
                        "token does not match secret {ns}/{secret_name}"
                    )));
                }
            }
        }
        let u = UserInfo::new(
            claims.user(),
            sa_uid.to_owned(),
            vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ],
            AuthMethod::ServiceAccountToken,
        );
        Ok(u)
    }
}

/// Paths anonymous users may read (kubeadm's `system:public-info-viewer`).
pub fn anonymous_allowed(path: &str) -> bool {
    let base = path.split('/').nth(1).unwrap_or("");
    matches!(base, "healthz" | "livez" | "readyz" | "version")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_paths() {
        assert!(anonymous_allowed("/healthz"));
        assert!(anonymous_allowed("/readyz/ping"));
        assert!(anonymous_allowed("/version"));
        assert!(!anonymous_allowed("/api"));
        assert!(!anonymous_allowed("/healthzx"));
    }
}
