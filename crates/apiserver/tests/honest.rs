//! Honest answers: what the lab apiserver does not serve is said, with the code that tells "nobody
//! serves this" (404) from "kube-apiserver does, the lab leaves it out" (501); and the size limits of
//! a real apiserver (3 MiB request bodies → 413; ConfigMap and Secret data over 1 MiB → 422).

mod common;

use base64::Engine;
use common::*;
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn status(lab: &Lab, method: &str, path: &str) -> (u16, String, String) {
    let r = lab.call(method, path, None).await;
    let st = r.json();
    assert_eq!(st["kind"], "Status", "{path}: {st}");
    assert_eq!(st["code"], r.status.as_u16(), "{path}");
    (
        r.status.as_u16(),
        st["reason"].as_str().unwrap_or("").to_owned(),
        st["message"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn what_kube_apiserver_serves_and_the_lab_does_not_is_501() {
    let lab = lab().await;
    let (code, reason, msg) = status(
        &lab,
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    )
    .await;
    assert_eq!((code, reason.as_str()), (501, "NotImplemented"), "{msg}");
    assert_eq!(
        msg,
        "the lab apiserver does not serve clusterroles.rbac.authorization.k8s.io \
         (rbac.authorization.k8s.io/v1): authorization is not modelled: every authenticated user \
         may do everything (kube-apiserver does; docs/lab.md lists what the lab models)"
    );
    for path in [
        "/api/v1/namespaces/default/persistentvolumeclaims",
        "/api/v1/persistentvolumes/pv-1",
        "/apis/apps/v1/namespaces/default/statefulsets",
        "/apis/networking.k8s.io/v1/ingresses",
        "/openid/v1/jwks",
        "/.well-known/openid-configuration",
        "/debug/pprof/heap",
    ] {
        let (code, _, msg) = status(&lab, "GET", path).await;
        assert_eq!(code, 501, "{path}: {msg}");
        assert!(
            msg.starts_with("the lab apiserver does not serve "),
            "{msg}"
        );
    }
    // The apiserver proxy's subresources are served (here: of objects that do not exist).
    let (code, _, msg) = status(&lab, "GET", "/api/v1/namespaces/default/pods/web/log").await;
    assert_eq!((code, msg.as_str()), (404, r#"pods "web" not found"#));
    let (code, _, msg) = status(
        &lab,
        "GET",
        "/api/v1/namespaces/default/services/web/proxy/healthz",
    )
    .await;
    assert_eq!((code, msg.as_str()), (404, r#"services "web" not found"#));
    // A subresource the lab leaves out.
    let (code, _, msg) = status(&lab, "POST", "/api/v1/namespaces/default/pods/web/eviction").await;
    assert_eq!(code, 501);
    assert!(msg.contains("pods/eviction"), "{msg}");
}

#[tokio::test]
async fn what_nobody_serves_is_404_and_says_so() {
    let lab = lab().await;
    for (path, what) in [
        (
            "/apis/example.com/v1/widgets",
            "the API group version example.com/v1",
        ),
        (
            "/api/v1/namespaces/default/widgets",
            "the resource \"widgets\" in v1",
        ),
        (
            "/apis/apps/v1/widgets",
            "the resource \"widgets\" in apps/v1",
        ),
        ("/nothing/here", "/nothing/here"),
        (
            "/api/v1/namespaces/default/pods/web/nonsense",
            "pods/nonsense",
        ),
    ] {
        let (code, reason, msg) = status(&lab, "GET", path).await;
        assert_eq!((code, reason.as_str()), (404, "NotFound"), "{path}");
        assert_eq!(
            msg,
            format!("the lab apiserver does not serve {what}, and neither does kube-apiserver"),
            "{path}"
        );
    }
    // A group the lab leaves out has no discovery document: 404 (discovery clients read it as "no
    // such group here"), with the reason.
    let (code, _, msg) = status(&lab, "GET", "/apis/rbac.authorization.k8s.io/v1").await;
    assert_eq!(code, 404);
    assert!(
        msg.contains("rbac.authorization.k8s.io/v1") && msg.contains("kube-apiserver does"),
        "{msg}"
    );
    // A served resource in a path of the wrong shape.
    let (code, _, msg) = status(&lab, "GET", "/api/v1/pods/web").await;
    assert_eq!(code, 404);
    assert!(msg.contains("pods are namespaced"), "{msg}");
    let (code, _, msg) = status(&lab, "GET", "/api/v1/namespaces/default/nodes").await;
    assert_eq!(code, 404);
    assert!(msg.contains("nodes are cluster-scoped"), "{msg}");
    // Without a signing key there is no TokenRequest API (as in kube-apiserver).
    let r = lab
        .call(
            "POST",
            "/api/v1/namespaces/default/serviceaccounts/default/token",
            Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})),
        )
        .await;
    assert_eq!(r.status, 404);
    let msg = r.json()["message"].as_str().unwrap_or("").to_owned();
    assert!(msg.contains("--service-account-signing-key-file"), "{msg}");
    // An object that does not exist is still kube's NotFound.
    let (code, _, msg) = status(&lab, "GET", "/api/v1/namespaces/default/pods/nope").await;
    assert_eq!((code, msg.as_str()), (404, "pods \"nope\" not found"));
}

#[tokio::test]
async fn verbs_a_path_does_not_take_are_405() {
    let lab = lab().await;
    let (code, reason, msg) = status(&lab, "POST", "/version").await;
    assert_eq!((code, reason.as_str()), (405, "MethodNotAllowed"));
    assert_eq!(msg, "POST is not supported on /version: it takes GET only");
    let (code, _, msg) = status(&lab, "DELETE", "/api/v1").await;
    assert_eq!(code, 405, "{msg}");
    let (code, _, msg) = status(
        &lab,
        "GET",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    )
    .await;
    assert_eq!(code, 405);
    assert!(msg.ends_with("it takes POST only"), "{msg}");
    let (code, _, msg) = status(&lab, "DELETE", "/api/v1/namespaces").await;
    assert_eq!(code, 405);
    assert_eq!(
        msg,
        "deletecollection is not supported on resources of kind \"namespaces\""
    );
}

#[tokio::test]
async fn request_bodies_over_3_mib_are_413() {
    let lab = lab().await;
    let limit = 3 * 1024 * 1024;
    let r = lab
        .raw(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            vec![b' '; limit + 1],
            &[],
        )
        .await;
    assert_eq!(r.status, 413);
    let st = r.json();
    assert_eq!(st["reason"], "RequestEntityTooLarge");
    assert_eq!(
        st["message"],
        format!("Request entity too large: limit is {limit}")
    );
}

#[tokio::test]
async fn configmap_and_secret_data_over_1_mib_are_422() {
    let lab = lab().await;
    const MIB: usize = 1024 * 1024;
    let cm = |name: &str, n: usize| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"a": "x".repeat(n / 2), "b": "y".repeat(n - n / 2)}})
    };
    let path = "/api/v1/namespaces/default/configmaps";
    let r = lab.call("POST", path, Some(cm("at-limit", MIB))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = lab.call("POST", path, Some(cm("big", MIB + 1))).await;
    assert_eq!(r.status, 422);
    let st = r.json();
    assert_eq!(
        st["message"],
        "ConfigMap \"big\" is invalid: []: Too long: may not be more than 1048576 bytes"
    );
    assert_eq!(st["details"]["causes"][0]["reason"], "FieldValueTooLong");
    // binaryData counts decoded.
    let r = lab
        .call(
            "POST",
            path,
            Some(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bin"},
                "data": {"a": "x".repeat(MIB / 2)},
                "binaryData": {"b": B64.encode(vec![0u8; MIB / 2 + 1])}}),
            ),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    // Growing a stored ConfigMap past the limit is refused the same way.
    let r = lab
        .call(
            "PATCH",
            &format!("{path}/at-limit"),
            Some(json!({"data": {"c": "z"}})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());

    let secrets = "/api/v1/namespaces/default/secrets";
    let r = lab
        .call(
            "POST",
            secrets,
            Some(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "big"},
                "data": {"k": B64.encode(vec![1u8; MIB + 1])}}),
            ),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "Secret \"big\" is invalid: data: Too long: may not be more than 1048576 bytes"
    );
    // stringData is write-only: merged into data (base64), never stored, and counted.
    let r = lab
        .call(
            "POST",
            secrets,
            Some(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "data": {"a": B64.encode("old"), "b": B64.encode("kept")},
                "stringData": {"a": "new"}}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let s = r.json();
    assert_eq!(
        s["data"],
        json!({"a": B64.encode("new"), "b": B64.encode("kept")})
    );
    assert!(s.get("stringData").is_none(), "{s}");
    let r = lab
        .call(
            "POST",
            secrets,
            Some(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s2"},
                "stringData": {"a": "x".repeat(MIB + 1)}}),
            ),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
}
