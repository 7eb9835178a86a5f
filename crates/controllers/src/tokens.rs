//! The service-account token controller (kube-controller-manager's `serviceaccount-token`).
//!
//! A Secret of type `kubernetes.io/service-account-token` annotated
//! `kubernetes.io/service-account.name: <sa>` is a request for a long-lived token:
//! - the ServiceAccount is missing (or the Secret's `kubernetes.io/service-account.uid`
//!   annotation names an older ServiceAccount of the same name) → the Secret is deleted;
//! - otherwise the controller fills `data.token` (a JWT signed with the service-account
//!   key), `data.ca.crt` (the cluster CA) and `data.namespace`, and sets the
//!   `kubernetes.io/service-account.uid` annotation;
//! - deleting a ServiceAccount deletes its token Secrets — which here is the first rule seen
//!   from the other side, so the reconcile needs no separate path for it.
//!
//! Like the real `TokensController.generateTokenIfNeeded`, an existing token is never
//! re-signed: the Secret is written only when the token is empty, the CA differs, the
//! namespace is empty or the uid annotation is missing. The real controller also rewrites
//! the CA when it changes and drops references from `ServiceAccount.secrets` (a field
//! Kubernetes stopped populating in 1.24); this one does not track `secrets` at all.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proxylab_apimachinery::meta;
use serde_json::{Value, json};

use crate::action::{Action, Target, resources};
use crate::jwt::TokenSigner;

pub const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
pub const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

/// What the token controller needs besides the objects.
#[derive(Debug, Clone, Copy)]
pub struct TokenContext<'a> {
    pub signer: &'a TokenSigner,
    /// The cluster CA bundle (PEM) written into `data.ca.crt`; empty means "do not set".
    pub ca_pem: &'a str,
    /// The JWT `iss` claim.
    pub issuer: &'a str,
}

fn data_bytes(secret: &Value, key: &str) -> Vec<u8> {
    meta::at(secret, &["data", key])
        .and_then(Value::as_str)
        .and_then(|s| STANDARD.decode(s).ok())
        .unwrap_or_default()
}

/// Reconciles every token Secret against the ServiceAccounts.
pub fn reconcile(
    secrets: &[Value],
    service_accounts: &[Value],
    ctx: &TokenContext<'_>,
) -> Vec<Action> {
    let accounts: HashMap<(&str, &str), &Value> = service_accounts
        .iter()
        .map(|sa| {
            (
                (
                    meta::namespace(sa).unwrap_or(""),
                    meta::name(sa).unwrap_or(""),
                ),
                sa,
            )
        })
        .collect();
    let mut actions = Vec::new();
    for secret in secrets {
        if meta::str_at(secret, &["type"]) != Some(SERVICE_ACCOUNT_TOKEN_TYPE)
            || meta::is_terminating(secret)
        {
            continue;
        }
        let ns = meta::namespace(secret).unwrap_or("");
        let name = meta::name(secret).unwrap_or("");
        let target = Target::new(resources::SECRETS, Some(ns), name);
        let rv = meta::resource_version_u64(secret);
        let Some(sa_name) = meta::annotation(secret, SA_NAME_ANNOTATION) else {
            // Validation requires the annotation; a Secret without it is none of our business.
            continue;
        };
        let sa = accounts.get(&(ns, sa_name));
        let sa_uid = sa.map(|sa| meta::uid(sa).unwrap_or(""));
        let stale_uid = match (meta::annotation(secret, SA_UID_ANNOTATION), sa_uid) {
            (Some(want), Some(have)) => !want.is_empty() && want != have,
            _ => false,
        };
        let Some(sa) = sa.filter(|_| !stale_uid) else {
            actions.push(Action::Delete {
                target,
                precondition_rv: rv,
                unless_present: sa
                    .is_none()
                    .then(|| Target::new(resources::SERVICE_ACCOUNTS, Some(ns), sa_name)),
            });
            continue;
        };
        if let Some(updated) = fill_secret(secret, sa, ctx) {
            actions.push(Action::Update {
                target,
                object: updated,
                precondition_rv: rv,
            });
        }
    }
    actions
}

/// The Secret with token, CA, namespace and uid filled in, or `None` when nothing is missing.
fn fill_secret(secret: &Value, sa: &Value, ctx: &TokenContext<'_>) -> Option<Value> {
    let ns = meta::namespace(secret).unwrap_or("");
    let sa_uid = meta::uid(sa).unwrap_or("");
    let needs_token = data_bytes(secret, "token").is_empty();
    let needs_ca = !ctx.ca_pem.is_empty() && data_bytes(secret, "ca.crt") != ctx.ca_pem.as_bytes();
    let needs_namespace = data_bytes(secret, "namespace").is_empty();
    let needs_uid = meta::annotation(secret, SA_UID_ANNOTATION) != Some(sa_uid);
    if !(needs_token || needs_ca || needs_namespace || needs_uid) {
        return None;
    }
    let mut updated = secret.clone();
    if needs_token {
        match ctx.signer.sign_legacy(
            ctx.issuer,
            ns,
            meta::name(sa).unwrap_or(""),
            sa_uid,
            meta::name(secret).unwrap_or(""),
        ) {
            Ok(token) => {
                meta::object_mut(&mut updated, "data")
                    .insert("token".into(), json!(STANDARD.encode(token)));
            }
            Err(e) => {
                tracing::warn!(secret = %format!("{ns}/{}", meta::name(secret).unwrap_or("")), error = %e, "cannot sign service-account token");
                return None;
            }
        }
    }
    if needs_ca {
        meta::object_mut(&mut updated, "data")
            .insert("ca.crt".into(), json!(STANDARD.encode(ctx.ca_pem)));
    }
    if needs_namespace {
        meta::object_mut(&mut updated, "data")
            .insert("namespace".into(), json!(STANDARD.encode(ns)));
    }
    if needs_uid {
        let meta = meta::object_mut(&mut updated, "metadata");
        let ann = meta.entry("annotations").or_insert_with(|| json!({}));
        if !ann.is_object() {
            *ann = json!({});
        }
        if let Some(ann) = ann.as_object_mut() {
            ann.insert(SA_UID_ANNOTATION.into(), json!(sa_uid));
        }
    }
    Some(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{LEGACY_ISSUER, generate_test_key_pem};
    use std::sync::LazyLock;

    static SIGNER: LazyLock<TokenSigner> =
        LazyLock::new(|| TokenSigner::from_pkcs8_pem(&generate_test_key_pem()).unwrap());
    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn ctx() -> TokenContext<'static> {
        TokenContext {
            signer: &SIGNER,
            ca_pem: CA,
            issuer: LEGACY_ISSUER,
        }
    }

    fn sa(ns: &str, name: &str, uid: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": "3"}})
    }

    fn token_secret(ns: &str, name: &str, sa: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "type": SERVICE_ACCOUNT_TOKEN_TYPE,
               "metadata": {"name": name, "namespace": ns, "resourceVersion": "7",
                            "annotations": {SA_NAME_ANNOTATION: sa}}})
    }

    fn decode(v: &Value) -> Vec<u8> {
        STANDARD.decode(v.as_str().unwrap()).unwrap()
    }

    #[test]
    fn fills_token_ca_namespace_and_uid() {
        let secrets = [token_secret("default", "default-token", "default")];
        let actions = reconcile(&secrets, &[sa("default", "default", "uid-1")], &ctx());
        assert_eq!(actions.len(), 1);
        let Action::Update {
            target,
            object,
            precondition_rv,
        } = &actions[0]
        else {
            panic!("expected update, got {actions:?}")
        };
        assert_eq!(
            target,
            &Target::new("secrets", Some("default"), "default-token")
        );
        assert_eq!(*precondition_rv, Some(7));
        assert_eq!(decode(&object["data"]["ca.crt"]), CA.as_bytes());
        assert_eq!(decode(&object["data"]["namespace"]), b"default");
        assert_eq!(
            object["metadata"]["annotations"][SA_UID_ANNOTATION],
            "uid-1"
        );
        assert_eq!(
            object["metadata"]["annotations"][SA_NAME_ANNOTATION],
            "default"
        );
        let token = String::from_utf8(decode(&object["data"]["token"])).unwrap();
        let claims =
            proxylab_apimachinery::serviceaccount::verify_token(SIGNER.public_key(), &token)
                .unwrap();
        assert_eq!(claims.sub, "system:serviceaccount:default:default");
        assert_eq!(claims.service_account_uid, "uid-1");
        assert_eq!(claims.secret_name.as_deref(), Some("default-token"));
    }

    #[test]
    fn filled_secret_is_left_alone() {
        let secrets = [token_secret("default", "t", "default")];
        let sas = [sa("default", "default", "uid-1")];
        let first = reconcile(&secrets, &sas, &ctx());
        let filled = first[0].object().unwrap().clone();
        assert!(reconcile(&[filled], &sas, &ctx()).is_empty());
    }

    #[test]
    fn existing_token_is_kept_while_missing_fields_are_added() {
        let mut s = token_secret("ns1", "t", "builder");
        s["data"] = json!({"token": STANDARD.encode("keep.me.please")});
        let actions = reconcile(&[s], &[sa("ns1", "builder", "u")], &ctx());
        let obj = actions[0].object().unwrap();
        assert_eq!(decode(&obj["data"]["token"]), b"keep.me.please");
        assert_eq!(decode(&obj["data"]["namespace"]), b"ns1");
    }

    #[test]
    fn missing_service_account_deletes_secret() {
        let secrets = [token_secret("default", "t", "ghost")];
        let actions = reconcile(
            &secrets,
            &[sa("default", "default", "u"), sa("other", "ghost", "u2")],
            &ctx(),
        );
        assert_eq!(
            actions,
            vec![Action::Delete {
                target: Target::new("secrets", Some("default"), "t"),
                precondition_rv: Some(7),
                unless_present: Some(Target::new("serviceaccounts", Some("default"), "ghost")),
            }]
        );
    }

    #[test]
    fn secret_of_a_recreated_service_account_is_deleted() {
        let mut s = token_secret("default", "t", "default");
        s["metadata"]["annotations"][SA_UID_ANNOTATION] = json!("old-uid");
        let actions = reconcile(&[s], &[sa("default", "default", "new-uid")], &ctx());
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].verb(), "delete");
    }

    #[test]
    fn other_secrets_and_terminating_ones_are_ignored() {
        let opaque = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": {"name": "o", "namespace": "default",
                                         "annotations": {SA_NAME_ANNOTATION: "ghost"}}});
        let mut dying = token_secret("default", "d", "ghost");
        dying["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let mut unannotated = token_secret("default", "u", "x");
        unannotated["metadata"]["annotations"] = json!({});
        assert!(reconcile(&[opaque, dying, unannotated], &[], &ctx()).is_empty());
    }

    #[test]
    fn no_ca_configured_means_no_ca_field() {
        let c = TokenContext {
            ca_pem: "",
            ..ctx()
        };
        let actions = reconcile(
            &[token_secret("default", "t", "default")],
            &[sa("default", "default", "u")],
            &c,
        );
        assert!(actions[0].object().unwrap()["data"].get("ca.crt").is_none());
    }
}
