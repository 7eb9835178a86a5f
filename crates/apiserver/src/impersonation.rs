//! Impersonation, as kube-apiserver's impersonation filter does it.
//!
//! After authentication, a request may ask to act as someone else with headers:
//! `Impersonate-User`, `Impersonate-Group` (repeatable), `Impersonate-Uid` and
//! `Impersonate-Extra-<key>` (the key percent-encoded, as in kube). This is what `kubectl --as alice
//! --as-group devs` sends, and what an authenticating proxy uses when its own credentials may
//! impersonate. The rules kept from kube:
//!
//! - groups, a uid or extras without `Impersonate-User` are a 400 (`requested … without
//!   impersonating a user`);
//! - a service-account user name (`system:serviceaccount:NS:NAME`) with no groups given gets the
//!   service-account groups (`system:serviceaccounts`, `system:serviceaccounts:NS`);
//! - the impersonated user gets `system:authenticated` (or `system:unauthenticated` when it is
//!   `system:anonymous`), whatever groups were asked for;
//! - the headers are removed once read, so nothing downstream (the bastion) sees them.
//!
//! **Who may impersonate.** kube asks its authorizer for the `impersonate` verb on `users`, `groups`,
//! `uids` and `userextras`. The lab has no RBAC, so it grants what a kubeadm cluster grants: members of
//! `system:masters` (cluster-admin) may impersonate anyone; everyone else gets kube's 403
//! (`users "alice" is forbidden: User "bob" cannot impersonate resource "users" …`). This is where the
//! lab differs from `--authorization-mode=AlwaysAllow`, under which anyone could, so that a client's
//! own identity matters when it tries.

use std::collections::BTreeMap;

use http::HeaderMap;

use crate::auth::{UserInfo, extra_headers, header_values};

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// Why an impersonation request was refused; the middleware answers it as a `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImpersonationError {
    /// 400: groups, uid or extras asked for without a user.
    #[error("requested {0} without impersonating a user")]
    WithoutUser(String),
    /// 403: the authenticated user may not impersonate.
    #[error(
        "{resource} \"{name}\" is forbidden: User \"{by}\" cannot impersonate resource \"{resource}\" in API group \"{group}\" at the cluster scope"
    )]
    Forbidden {
        resource: &'static str,
        group: &'static str,
        name: String,
        by: String,
    },
}

impl ImpersonationError {
    /// The HTTP status kube answers with.
    pub fn code(&self) -> u16 {
        match self {
            ImpersonationError::WithoutUser(_) => 400,
            ImpersonationError::Forbidden { .. } => 403,
        }
    }
}

/// Whether `headers` ask for impersonation at all.
pub fn requested(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-"))
}

/// The user to act as, if the headers ask for one and `user` may impersonate; `Ok(None)` when no
/// impersonation is asked. Does not touch the headers (see [`strip`]).
pub fn impersonate(
    user: &UserInfo,
    headers: &HeaderMap,
) -> Result<Option<UserInfo>, ImpersonationError> {
    let groups = header_values(headers, GROUP);
    let uid = header_values(headers, UID).into_iter().next();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    extra_headers(headers, EXTRA_PREFIX, &mut extra);
    let Some(username) = header_values(headers, USER)
        .into_iter()
        .next()
        .filter(|u| !u.is_empty())
    else {
        let mut asked = Vec::new();
        if !groups.is_empty() {
            asked.push(format!("groups {groups:?}"));
        }
        if let Some(uid) = &uid {
            asked.push(format!("uid {uid:?}"));
        }
        if !extra.is_empty() {
            asked.push(format!("extra {:?}", extra.keys().collect::<Vec<_>>()));
        }
        return if asked.is_empty() {
            Ok(None)
        } else {
            Err(ImpersonationError::WithoutUser(asked.join(", ")))
        };
    };
    let service_account = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .map(|(ns, _)| ns.to_owned());
    if !may_impersonate(user) {
        let (resource, group) = if service_account.is_some() {
            ("serviceaccounts", "")
        } else {
            ("users", "")
        };
        return Err(ImpersonationError::Forbidden {
            resource,
            group,
            name: username,
            by: user.username.clone(),
        });
    }
    let mut groups = groups;
    if let Some(ns) = service_account
        && groups.is_empty()
    {
        groups = vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ];
    }
    let implied = if username == "system:anonymous" {
        "system:unauthenticated"
    } else {
        "system:authenticated"
    };
    if !groups.iter().any(|g| g == implied) {
        groups.push(implied.into());
    }
    Ok(Some(UserInfo {
        username,
        uid: uid.unwrap_or_default(),
        groups,
        extra,
        method: user.method,
    }))
}

/// Removes every `Impersonate-*` header: they are for this apiserver only.
pub fn strip(headers: &mut HeaderMap) {
    let names: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// The lab's stand-in for RBAC's `impersonate` verb: cluster-admins only (see the module docs).
fn may_impersonate(user: &UserInfo) -> bool {
    user.groups.iter().any(|g| g == "system:masters")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthMethod;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: BTreeMap::new(),
            method: AuthMethod::ClientCertificate,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn admin() -> UserInfo {
        user(
            "kubernetes-admin",
            &["system:masters", "system:authenticated"],
        )
    }

    #[test]
    fn no_headers_no_impersonation() {
        assert_eq!(impersonate(&admin(), &HeaderMap::new()), Ok(None));
        assert!(!requested(&headers(&[("authorization", "Bearer x")])));
    }

    #[test]
    fn an_admin_becomes_the_user_with_the_groups_asked_and_authenticated() {
        let h = headers(&[
            ("impersonate-user", "alice"),
            ("impersonate-group", "devs"),
            ("impersonate-group", "ops"),
            ("impersonate-uid", "42"),
            ("impersonate-extra-scopes%2Fview", "a"),
        ]);
        let u = impersonate(&admin(), &h).unwrap().unwrap();
        assert_eq!(u.username, "alice");
        assert_eq!(u.uid, "42");
        assert_eq!(u.groups, ["devs", "ops", "system:authenticated"]);
        assert_eq!(u.extra["scopes/view"], ["a"]);
    }

    #[test]
    fn a_service_account_gets_its_groups_unless_groups_are_given() {
        let h = headers(&[("impersonate-user", "system:serviceaccount:team:bot")]);
        let u = impersonate(&admin(), &h).unwrap().unwrap();
        assert_eq!(
            u.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                "system:authenticated"
            ]
        );
        let h = headers(&[
            ("impersonate-user", "system:serviceaccount:team:bot"),
            ("impersonate-group", "g"),
        ]);
        let u = impersonate(&admin(), &h).unwrap().unwrap();
        assert_eq!(u.groups, ["g", "system:authenticated"]);
    }

    #[test]
    fn anonymous_is_unauthenticated() {
        let h = headers(&[("impersonate-user", "system:anonymous")]);
        let u = impersonate(&admin(), &h).unwrap().unwrap();
        assert_eq!(u.groups, ["system:unauthenticated"]);
    }

    #[test]
    fn groups_without_a_user_are_a_400() {
        let h = headers(&[("impersonate-group", "system:masters")]);
        let e = impersonate(&admin(), &h).unwrap_err();
        assert_eq!(e.code(), 400);
        assert_eq!(
            e.to_string(),
            "requested groups [\"system:masters\"] without impersonating a user"
        );
    }

    #[test]
    fn only_cluster_admins_may_impersonate() {
        let bob = user("bob", &["devs", "system:authenticated"]);
        let h = headers(&[
            ("impersonate-user", "kubernetes-admin"),
            ("impersonate-group", "system:masters"),
        ]);
        let e = impersonate(&bob, &h).unwrap_err();
        assert_eq!(e.code(), 403);
        assert_eq!(
            e.to_string(),
            "users \"kubernetes-admin\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
    }

    #[test]
    fn strip_removes_every_impersonate_header() {
        let mut h = headers(&[
            ("impersonate-user", "a"),
            ("impersonate-extra-x", "1"),
            ("accept", "*/*"),
        ]);
        strip(&mut h);
        assert_eq!(h.len(), 1);
    }
}
