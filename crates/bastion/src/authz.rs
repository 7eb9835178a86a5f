//! Who may use the bastion, and for what: the request's attributes as kube-apiserver computes them,
//! and the authorizer that decides.
//!
//! kube-apiserver authorizes every request on its *attributes*: user and groups, verb, resource,
//! subresource, namespace, name. For these subresources the verb comes from the HTTP method —
//! `GET`/`HEAD` → `get`, `POST` → `create`, `PUT` → `update`, `PATCH` → `patch`, `DELETE` →
//! `delete`, anything else its lower-case name — which is how RBAC rules like
//! `verbs: [get], resources: [services/proxy]` read.
//!
//! **KEP-4006.** kubectl ≥ 1.30 runs `exec`, `attach` and `port-forward` over WebSocket, and a
//! WebSocket upgrade is a `GET`: authorized as `get`, a user granted only `get` on `pods/exec` (a
//! "read-only" role) could run commands. kube-apiserver 1.35 (`AuthorizePodWebsocketUpgradeCreatePermission`)
//! therefore also requires `create` on those three subresources whatever the method (SPDY's `POST` is
//! `create` already). [`checks`] returns both checks; both must allow.
//!
//! **What the lab models.** The lab apiserver has no RBAC: every authenticated user may do
//! everything ([`AllowAll`]). So that the rule above can be seen and tested, the bastion takes an
//! optional policy in kube-apiserver's **ABAC** file format ([`Abac`], `--proxy-authorization-policy-file`):
//! one JSON `Policy` per line with `user`/`group`, `namespace`, `resource`, `apiGroup`, `readonly`.
//! It is consulted for the bastion's subresources only (the rest of the lab apiserver stays
//! allow-all). ABAC, like kube-apiserver's, matches the resource (`pods`) and not the subresource, so
//! a `readonly` user may read `pods/log` and `GET` through `services/proxy` but not `create`
//! `pods/exec` — exactly the role KEP-4006 is about.

use std::path::Path;

use serde::Deserialize;

use crate::path::{Resource, Subresource};

/// An authenticated user, as the host (the lab apiserver, or the standalone bastion's
/// authenticator) put it in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// What a request asks to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes<'a> {
    pub user: &'a User,
    pub verb: &'a str,
    pub resource: Resource,
    pub subresource: Subresource,
    /// Empty for nodes.
    pub namespace: &'a str,
    /// The path segment as written (`https:web:8443` for a proxy id), as kube's `RequestInfo.Name`.
    pub name: &'a str,
}

impl Attributes<'_> {
    /// kube-apiserver's 403 message: `pods "web-1" is forbidden: User "alice" cannot create resource
    /// "pods/exec" in API group "" in the namespace "default"`.
    pub fn forbidden_message(&self, reason: &str) -> String {
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_owned()
        } else {
            format!("in the namespace {:?}", self.namespace)
        };
        let mut m = format!(
            "{} {:?} is forbidden: User {:?} cannot {} resource \"{}/{}\" in API group \"\" {scope}",
            self.resource.plural(),
            self.name,
            self.user.name,
            self.verb,
            self.resource.plural(),
            self.subresource.as_str(),
        );
        if !reason.is_empty() {
            m.push_str(": ");
            m.push_str(reason);
        }
        m
    }
}

/// The verb of a request with this method (kube's `RequestInfoFactory`).
pub fn verb_of(method: &http::Method) -> String {
    match *method {
        http::Method::GET | http::Method::HEAD => "get".into(),
        http::Method::POST => "create".into(),
        http::Method::PUT => "update".into(),
        http::Method::PATCH => "patch".into(),
        http::Method::DELETE => "delete".into(),
        ref other => other.as_str().to_ascii_lowercase(),
    }
}

/// The verbs that must all be allowed: the method's, plus `create` for exec/attach/portforward
/// (KEP-4006; see the module docs).
pub fn checks(method: &http::Method, sub: Subresource) -> Vec<String> {
    let verb = verb_of(method);
    if sub.is_streaming() && verb != "create" {
        vec![verb, "create".into()]
    } else {
        vec![verb]
    }
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused, with a reason for the message (may be empty).
    Deny(String),
}

/// Decides requests. Implementations must be cheap: they run on every request.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, attrs: &Attributes<'_>) -> Decision;
}

/// Every authenticated user may do everything: the lab apiserver's model (no RBAC).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &Attributes<'_>) -> Decision {
        Decision::Allow
    }
}

/// One line of an ABAC policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyLine {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    spec: PolicySpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicySpec {
    #[serde(default)]
    user: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    readonly: bool,
    #[serde(default)]
    api_group: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    namespace: String,
    /// Accepted so that real ABAC files parse; non-resource paths are not the bastion's business.
    #[serde(default)]
    #[allow(dead_code)]
    non_resource_path: String,
}

/// A policy file that cannot be read: names the file, the line and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

/// kube-apiserver's ABAC authorizer (`--authorization-mode=ABAC`). See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Abac {
    policies: Vec<PolicySpec>,
}

const ABAC_VERSION: &str = "abac.authorization.kubernetes.io/v1beta1";

impl Abac {
    /// Reads a policy file: one JSON object per line; blank lines and `#` comments skipped.
    pub fn from_file(path: &Path) -> Result<Self, PolicyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, message)| PolicyFileError::Line {
            path: path.display().to_string(),
            line,
            message,
        })
    }

    /// Parses policy text; an error is (line, message).
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut policies = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let p: PolicyLine = serde_json::from_str(line).map_err(|e| (i + 1, e.to_string()))?;
            if p.api_version != ABAC_VERSION || p.kind != "Policy" {
                return Err((
                    i + 1,
                    format!(
                        "expected apiVersion {ABAC_VERSION:?} and kind \"Policy\", got {:?} {:?}",
                        p.api_version, p.kind
                    ),
                ));
            }
            if p.spec.user.is_empty() && p.spec.group.is_empty() {
                return Err((i + 1, "a policy names a user or a group".into()));
            }
            policies.push(p.spec);
        }
        Ok(Self { policies })
    }

    fn matches(p: &PolicySpec, a: &Attributes<'_>) -> bool {
        let subject = (!p.user.is_empty() && (p.user == "*" || p.user == a.user.name))
            || (!p.group.is_empty() && (p.group == "*" || a.user.groups.contains(&p.group)));
        if !subject {
            return false;
        }
        if p.readonly && !matches!(a.verb, "get" | "list" | "watch") {
            return false;
        }
        // kube's `resourceMatches`: each field is `*` or equal; an empty field matches only an
        // empty value (namespace "" is cluster scope, apiGroup "" the core group).
        let field = |policy: &str, value: &str| policy == "*" || policy == value;
        field(&p.namespace, a.namespace)
            && field(&p.resource, a.resource.plural())
            && field(&p.api_group, "")
    }
}

impl Authorizer for Abac {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        if self.policies.iter().any(|p| Self::matches(p, a)) {
            Decision::Allow
        } else {
            Decision::Deny(String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn attrs<'a>(u: &'a User, verb: &'a str, sub: Subresource) -> Attributes<'a> {
        Attributes {
            user: u,
            verb,
            resource: Resource::Pod,
            subresource: sub,
            namespace: "default",
            name: "web-1",
        }
    }

    #[test]
    fn verbs_and_the_kep_4006_create_check() {
        use http::Method;
        assert_eq!(checks(&Method::GET, Subresource::Proxy), ["get"]);
        assert_eq!(checks(&Method::HEAD, Subresource::Proxy), ["get"]);
        assert_eq!(checks(&Method::OPTIONS, Subresource::Proxy), ["options"]);
        assert_eq!(checks(&Method::PUT, Subresource::Proxy), ["update"]);
        assert_eq!(checks(&Method::GET, Subresource::Log), ["get"]);
        // WebSocket exec is a GET: get *and* create.
        assert_eq!(checks(&Method::GET, Subresource::Exec), ["get", "create"]);
        assert_eq!(
            checks(&Method::GET, Subresource::PortForward),
            ["get", "create"]
        );
        // SPDY exec is a POST: create.
        assert_eq!(checks(&Method::POST, Subresource::Attach), ["create"]);
    }

    #[test]
    fn abac_readonly_reads_but_cannot_create() {
        let abac = Abac::parse(concat!(
            "# alice reads pods in default; admins do everything\n",
            r#"{"apiVersion":"abac.authorization.kubernetes.io/v1beta1","kind":"Policy","spec":{"user":"alice","namespace":"default","resource":"pods","apiGroup":"*","readonly":true}}"#,
            "\n\n",
            r#"{"apiVersion":"abac.authorization.kubernetes.io/v1beta1","kind":"Policy","spec":{"group":"system:masters","namespace":"*","resource":"*","apiGroup":"*"}}"#,
            "\n"
        ))
        .unwrap();
        let alice = user("alice", &["system:authenticated"]);
        let admin = user("admin", &["system:masters"]);
        assert_eq!(
            abac.authorize(&attrs(&alice, "get", Subresource::Log)),
            Decision::Allow
        );
        assert!(matches!(
            abac.authorize(&attrs(&alice, "create", Subresource::Exec)),
            Decision::Deny(_)
        ));
        let mut other_ns = attrs(&alice, "get", Subresource::Proxy);
        other_ns.namespace = "kube-system";
        assert!(matches!(abac.authorize(&other_ns), Decision::Deny(_)));
        assert_eq!(
            abac.authorize(&attrs(&admin, "create", Subresource::Exec)),
            Decision::Allow
        );
        let bob = user("bob", &[]);
        assert!(matches!(
            abac.authorize(&attrs(&bob, "get", Subresource::Log)),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn abac_errors_name_the_line() {
        let e =
            Abac::parse("\n{\"apiVersion\":\"v1\",\"kind\":\"Policy\",\"spec\":{\"user\":\"a\"}}")
                .unwrap_err();
        assert_eq!(e.0, 2);
        let e = Abac::parse(r#"{"apiVersion":"abac.authorization.kubernetes.io/v1beta1","kind":"Policy","spec":{"usr":"a"}}"#).unwrap_err();
        assert!(e.1.contains("usr"), "{e:?}");
        let e = Abac::parse(r#"{"apiVersion":"abac.authorization.kubernetes.io/v1beta1","kind":"Policy","spec":{}}"#).unwrap_err();
        assert!(e.1.contains("user or a group"), "{e:?}");
    }

    #[test]
    fn forbidden_message_is_kube_apiservers() {
        let alice = user("alice", &[]);
        assert_eq!(
            attrs(&alice, "create", Subresource::Exec).forbidden_message(""),
            r#"pods "web-1" is forbidden: User "alice" cannot create resource "pods/exec" in API group "" in the namespace "default""#
        );
        let mut node = attrs(&alice, "get", Subresource::Proxy);
        node.resource = Resource::Node;
        node.namespace = "";
        node.name = "node-1";
        assert_eq!(
            node.forbidden_message(""),
            r#"nodes "node-1" is forbidden: User "alice" cannot get resource "nodes/proxy" in API group "" at the cluster scope"#
        );
    }
}
