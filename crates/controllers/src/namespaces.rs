//! Namespace defaults: the system namespaces exist, and every namespace has a `default`
//! ServiceAccount.
//!
//! In a real cluster two pieces do this. kube-apiserver's "system namespaces" controller
//! (`pkg/controlplane/controller/systemnamespaces`) creates `default`, `kube-system`,
//! `kube-public` and `kube-node-lease` every minute if they are missing; and
//! kube-controller-manager's `serviceaccount` controller ensures each active namespace
//! holds the ServiceAccounts named by `--service-account-names` (just `default`),
//! recreating one whenever it is deleted. Here both are one reconcile over
//! (namespaces, serviceaccounts).

use proxylab_apimachinery::meta;
use serde_json::{Value, json};

use crate::action::{Action, Target, resources};

/// Namespaces that always exist (kube-apiserver's system namespaces).
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// A Namespace object as the apiserver creates it (with the immutable
/// `kubernetes.io/metadata.name` label the NamespaceDefaultLabelName feature adds).
pub fn namespace_object(name: &str, now: jiff::Timestamp) -> Value {
    let mut metadata = meta::new_object_meta(None, name, &uuid::Uuid::new_v4().to_string(), now);
    metadata["labels"] = json!({ "kubernetes.io/metadata.name": name });
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata,
        "spec": { "finalizers": ["kubernetes"] },
        "status": { "phase": "Active" },
    })
}

/// The `default` ServiceAccount of a namespace.
pub fn default_service_account(namespace: &str, now: jiff::Timestamp) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta::new_object_meta(Some(namespace), DEFAULT_SERVICE_ACCOUNT, &uuid::Uuid::new_v4().to_string(), now),
    })
}

/// Missing system namespaces are created; every namespace that is not terminating (no
/// `deletionTimestamp`, phase not `Terminating`) gets a `default` ServiceAccount if it lacks one.
pub fn reconcile(
    namespaces: &[Value],
    service_accounts: &[Value],
    now: jiff::Timestamp,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for sys in SYSTEM_NAMESPACES {
        if !namespaces
            .iter()
            .any(|n| meta::name(n).unwrap_or("") == sys)
        {
            actions.push(Action::Create {
                target: Target::new(resources::NAMESPACES, None, sys),
                object: namespace_object(sys, now),
            });
        }
    }
    // Namespaces being created in this same pass count as active.
    let existing = namespaces
        .iter()
        .filter(|n| {
            !meta::is_terminating(n) && meta::str_at(n, &["status", "phase"]) != Some("Terminating")
        })
        .map(|n| meta::name(n).unwrap_or("").to_string());
    let created = actions
        .iter()
        .map(|a| a.target().name.clone())
        .collect::<Vec<_>>();
    for ns in existing.chain(created) {
        let has_default = service_accounts.iter().any(|sa| {
            meta::namespace(sa).unwrap_or("") == ns
                && meta::name(sa).unwrap_or("") == DEFAULT_SERVICE_ACCOUNT
        });
        if !has_default && !ns.is_empty() {
            actions.push(Action::Create {
                target: Target::new(
                    resources::SERVICE_ACCOUNTS,
                    Some(&ns),
                    DEFAULT_SERVICE_ACCOUNT,
                ),
                object: default_service_account(&ns, now),
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-28T10:00:00Z".parse().unwrap()
    }

    fn ns(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}})
    }

    fn sa(ns: &str, name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})
    }

    #[test]
    fn empty_cluster_gets_system_namespaces_and_their_default_service_accounts() {
        let actions = reconcile(&[], &[], now());
        let created: Vec<(&str, Option<&str>, &str)> = actions
            .iter()
            .map(|a| {
                (
                    a.target().resource,
                    a.target().namespace.as_deref(),
                    a.target().name.as_str(),
                )
            })
            .collect();
        assert_eq!(
            created,
            vec![
                ("namespaces", None, "default"),
                ("namespaces", None, "kube-system"),
                ("namespaces", None, "kube-public"),
                ("namespaces", None, "kube-node-lease"),
                ("serviceaccounts", Some("default"), "default"),
                ("serviceaccounts", Some("kube-system"), "default"),
                ("serviceaccounts", Some("kube-public"), "default"),
                ("serviceaccounts", Some("kube-node-lease"), "default"),
            ]
        );
        let ns_obj = actions[1].object().unwrap();
        assert_eq!(
            ns_obj["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "kube-system"
        );
        assert!(
            ns_obj["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty())
        );
        assert_eq!(
            ns_obj["metadata"]["creationTimestamp"],
            "2026-11-28T10:00:00Z"
        );
        let sa_obj = actions[5].object().unwrap();
        assert_eq!(sa_obj["kind"], "ServiceAccount");
        assert_eq!(sa_obj["metadata"]["namespace"], "kube-system");
    }

    #[test]
    fn converged_state_needs_nothing() {
        let mut namespaces: Vec<Value> = SYSTEM_NAMESPACES.iter().map(|n| ns(n)).collect();
        namespaces.push(ns("team-a"));
        let sas: Vec<Value> = namespaces
            .iter()
            .map(|n| sa(meta::name(n).unwrap_or(""), "default"))
            .collect();
        assert!(reconcile(&namespaces, &sas, now()).is_empty());
    }

    #[test]
    fn deleted_default_service_account_is_recreated_only_where_missing() {
        let mut namespaces: Vec<Value> = SYSTEM_NAMESPACES.iter().map(|n| ns(n)).collect();
        namespaces.push(ns("team-a"));
        let mut sas: Vec<Value> = SYSTEM_NAMESPACES.iter().map(|n| sa(n, "default")).collect();
        sas.push(sa("team-a", "builder"));
        let actions = reconcile(&namespaces, &sas, now());
        assert_eq!(actions.len(), 1);
        assert_eq!(
            actions[0].target(),
            &Target::new("serviceaccounts", Some("team-a"), "default")
        );
    }

    #[test]
    fn terminating_namespace_gets_no_service_account() {
        let mut namespaces: Vec<Value> = SYSTEM_NAMESPACES.iter().map(|n| ns(n)).collect();
        let sas: Vec<Value> = SYSTEM_NAMESPACES.iter().map(|n| sa(n, "default")).collect();
        let mut dying = ns("going");
        dying["status"]["phase"] = json!("Terminating");
        namespaces.push(dying);
        let mut dying2 = ns("going2");
        dying2["metadata"]["deletionTimestamp"] = json!("2026-11-28T09:00:00Z");
        namespaces.push(dying2);
        assert!(reconcile(&namespaces, &sas, now()).is_empty());
    }
}
