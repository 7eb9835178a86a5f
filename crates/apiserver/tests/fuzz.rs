//! No request may panic the server or get a malformed answer: arbitrary methods, paths, queries,
//! headers and bodies are thrown at the router in-process.

mod common;

use axum::body::Body;
use common::*;
use http::Request;
use proptest::prelude::*;

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("api".to_string()),
        Just("apis".to_string()),
        Just("v1".to_string()),
        Just("namespaces".to_string()),
        Just("default".to_string()),
        Just("pods".to_string()),
        Just("services".to_string()),
        Just("nodes".to_string()),
        Just("status".to_string()),
        Just("binding".to_string()),
        Just("watch".to_string()),
        Just("discovery.k8s.io".to_string()),
        Just("endpointslices".to_string()),
        Just("openapi".to_string()),
        Just("v3".to_string()),
        Just("readyz".to_string()),
        "[a-z0-9.%-]{0,12}",
        "\\PC{0,6}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let kv = prop_oneof![
        Just("watch=true".to_string()),
        Just("timeoutSeconds=0".to_string()),
        Just("limit=1".to_string()),
        "limit=[-0-9a-z]{0,4}",
        "continue=[A-Za-z0-9_=-]{0,20}",
        "labelSelector=[a-z=!,() ]{0,12}",
        "fieldSelector=[a-zA-Z.=!,]{0,16}",
        "resourceVersion=[0-9a-z]{0,4}",
        "gracePeriodSeconds=[-0-9]{0,3}",
        "pretty",
        "[a-z]{1,6}=[a-z0-9]{0,6}",
    ];
    prop::collection::vec(kv, 0..4).prop_map(|v| v.join("&"))
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"fz"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#.to_vec()),
        Just(br#"{"metadata":{"name":"fz","labels":{"a":"b"}},"spec":{"type":"NodePort","ports":[{"port":80}]}}"#.to_vec()),
        Just(br#"[{"op":"add","path":"/metadata/labels/x","value":"y"}]"#.to_vec()),
        Just(br#"{"metadata":{"resourceVersion":"abc"}}"#.to_vec()),
        Just(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fz}\n".to_vec()),
        Just(br#"{"metadata":"x"}"#.to_vec()),
        Just(br#"{"metadata":{"name":"fz","labels":[1]},"spec":"x","status":7}"#.to_vec()),
        Just(br#"{"metadata":{"name":"fz","namespace":5},"spec":{"containers":{"a":1},"ports":"x"}}"#.to_vec()),
        Just(br#"{"metadata":{"name":"fz","finalizers":"x"},"spec":{"type":"LoadBalancer","clusterIP":"x","ports":[{"nodePort":99999999999}]}}"#.to_vec()),
        Just(br#"{"metadata":{"generateName":"x-"},"target":{"name":"n"},"gracePeriodSeconds":"z","preconditions":7}"#.to_vec()),
        Just(br#"[{"op":"remove","path":"/metadata"}]"#.to_vec()),
        Just(br#"[{"op":"replace","path":"/spec","value":"x"}]"#.to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
        "\\PC{0,40}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]
    #[test]
    fn arbitrary_requests_get_well_formed_answers(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
        segs in prop::collection::vec(segment(), 0..7),
        q in query(),
        ct in prop::sample::select(vec!["application/json", "application/yaml", "application/merge-patch+json",
            "application/json-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml",
            "text/plain", "", "application/json;as=Table;v=v1;g=meta.k8s.io"]),
        accept in prop::sample::select(vec!["", "application/json", "application/json;as=Table;v=v1;g=meta.k8s.io",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", "application/yaml", "*/*", "foo/bar;;;="]),
        auth in prop::sample::select(vec![true, true, true, false]),
        body in body(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut cfg = config();
            cfg.default_watch_timeout = std::time::Duration::from_millis(20);
            let lab = lab_with(cfg, 100).await;
            let encoded: Vec<String> = segs
                .iter()
                .map(|s| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string())
                .collect();
            let mut uri = format!("/{}", encoded.join("/"));
            if !q.is_empty() {
                uri = format!("{uri}?{}", percent_encoding::utf8_percent_encode(&q, percent_encoding::CONTROLS).to_string().replace(' ', "%20"));
            }
            let mut b = Request::builder().method(method).uri(&uri);
            if auth {
                b = b.header("authorization", format!("Bearer {ADMIN}"));
            }
            if !ct.is_empty() {
                b = b.header("content-type", ct);
            }
            if !accept.is_empty() {
                b = b.header("accept", accept);
            }
            let Ok(req) = b.body(Body::from(body.clone())) else { return };
            // Watches would run until their timeout; cap how long we read.
            let resp = tokio::time::timeout(std::time::Duration::from_secs(5), lab.send(req)).await;
            let Ok(resp) = resp else { return }; // an open watch stream is a well-formed answer too
            let code = resp.status.as_u16();
            assert!((200..600).contains(&code), "{code}");
            if code >= 400 && method != "HEAD" {
                let ct = resp.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
                if ct.starts_with("application/json") {
                    let v: serde_json::Value = serde_json::from_slice(&resp.body).expect("error body is JSON");
                    assert_eq!(v["kind"], "Status", "{uri}: {v}");
                    assert_eq!(v["code"].as_u64(), Some(code as u64));
                }
            }
        });
    }
}

/// Malformed shapes written onto objects that exist (random paths rarely hit them).
#[tokio::test]
async fn malformed_writes_to_existing_objects() {
    let lab = lab().await;
    lab.call("POST", "/api/v1/namespaces/default/pods", Some(pod("p")))
        .await;
    let svc = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    lab.call("POST", "/api/v1/namespaces/default/services", Some(svc))
        .await;
    let bodies: &[&[u8]] = &[
        br#"{"metadata":"x"}"#,
        br#"{"metadata":{"name":"p","labels":[1]},"spec":"x","status":7}"#,
        br#"{"metadata":{"name":"s"},"spec":{"ports":"x","type":7,"clusterIP":5}}"#,
        br#"{"metadata":{"name":"s"},"spec":{"ports":[{"port":80,"nodePort":-1}],"type":"NodePort"}}"#,
        br#"{"metadata":{"name":"p","finalizers":"x","deletionTimestamp":3}}"#,
        br#"[{"op":"remove","path":"/metadata"}]"#,
        br#"[{"op":"replace","path":"/spec","value":"x"}]"#,
        br#"[{"op":"replace","path":"/status","value":[]}]"#,
        br#"{"status":"x"}"#,
        br#"null"#,
        br#"{}"#,
    ];
    let urls = [
        "/api/v1/namespaces/default/pods/p",
        "/api/v1/namespaces/default/pods/p/status",
        "/api/v1/namespaces/default/services/s",
        "/api/v1/namespaces/default/services/s/status",
        "/api/v1/namespaces/default",
        "/api/v1/namespaces/default/status",
        "/api/v1/namespaces/default/pods/p/binding",
    ];
    let cts = [
        "application/json",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];
    for url in urls {
        for body in bodies {
            for (method, ct) in [("PUT", cts[0]), ("POST", cts[0]), ("DELETE", cts[0])]
                .into_iter()
                .chain(cts[1..].iter().map(|c| ("PATCH", *c)))
            {
                let r = lab.raw(method, url, ct, body.to_vec(), &[]).await;
                let code = r.status.as_u16();
                assert!((200..600).contains(&code));
                assert!(
                    code < 500,
                    "{method} {url} {ct} {}: {code} {}",
                    String::from_utf8_lossy(body),
                    r.text()
                );
            }
        }
    }
}
