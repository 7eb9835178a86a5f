//! The kubeconfig `lab up` writes: one cluster, two users (the admin client certificate and a static
//! bearer token), a context for each, the certificate context current.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// Names used in the lab kubeconfig.
pub const CLUSTER: &str = "proxylab";
pub const CONTEXT_CERT: &str = "proxylab";
pub const CONTEXT_TOKEN: &str = "proxylab-token";

/// Builds the kubeconfig as a YAML string.
pub fn render(
    server: &str,
    ca_pem: &str,
    admin_cert_pem: &str,
    admin_key_pem: &str,
    token: &str,
) -> String {
    let b64 = |s: &str| STANDARD.encode(s.as_bytes());
    let mut users = vec![json!({"name": "kubernetes-admin", "user": {
        "client-certificate-data": b64(admin_cert_pem),
        "client-key-data": b64(admin_key_pem)
    }})];
    let mut contexts = vec![json!({"name": CONTEXT_CERT, "context": {
        "cluster": CLUSTER, "user": "kubernetes-admin", "namespace": "default"
    }})];
    // An empty token means the apiserver has no token file: leave the token context out.
    if !token.is_empty() {
        users.push(json!({"name": "admin-token", "user": {"token": token}}));
        contexts.push(json!({"name": CONTEXT_TOKEN, "context": {
            "cluster": CLUSTER, "user": "admin-token", "namespace": "default"
        }}));
    }
    let doc: Value = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{
            "name": CLUSTER,
            "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}
        }],
        "users": users,
        "contexts": contexts,
        "current-context": CONTEXT_CERT
    });
    // serde-saphyr renders any serde_json::Value; fall back to JSON (valid YAML) if it ever cannot.
    serde_saphyr::to_string(&doc).unwrap_or_else(|_| doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_yaml_that_reads_back() {
        let text = render("https://127.0.10.1:6443", "CA", "CERT", "KEY", "tok");
        let back: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            back["clusters"][0]["cluster"]["server"],
            "https://127.0.10.1:6443"
        );
        assert_eq!(back["users"][1]["user"]["token"], "tok");
        assert_eq!(back["current-context"], "proxylab");
        let no_token = render("https://x", "CA", "CERT", "KEY", "");
        let back: Value = serde_saphyr::from_str(&no_token).unwrap();
        assert_eq!(back["users"].as_array().unwrap().len(), 1);
        assert_eq!(back["contexts"].as_array().unwrap().len(), 1);
    }
}
