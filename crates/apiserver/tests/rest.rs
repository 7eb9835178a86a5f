//! REST verbs, status subresources, patches, selectors, pagination, errors — in-process over the router.

mod common;

use common::*;
use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn pod_crud_and_resource_versions() {
    let lab = lab().await;
    let r = lab.call("POST", PODS, Some(pod("web-1"))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    assert!(
        created["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    assert!(created["metadata"]["creationTimestamp"].as_str().is_some());
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["metadata"]["namespace"], "default");
    assert_eq!(created["status"]["phase"], "Pending");
    let rv1 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();

    let r = lab.call("POST", PODS, Some(pod("web-1"))).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "AlreadyExists");

    let r = lab.call("GET", &format!("{PODS}/web-1"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metadata"]["uid"], created["metadata"]["uid"]);

    // PUT with the current rv succeeds; the old rv is then stale → 409 Conflict.
    let mut upd = created.clone();
    upd["metadata"]["labels"]["tier"] = json!("front");
    upd["status"]["phase"] = json!("Running"); // ignored on the main resource
    let r = lab
        .call("PUT", &format!("{PODS}/web-1"), Some(upd.clone()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let updated = r.json();
    assert_ne!(updated["metadata"]["resourceVersion"], json!(rv1));
    assert_eq!(updated["metadata"]["labels"]["tier"], "front");
    assert_eq!(updated["status"]["phase"], "Pending");
    let r = lab.call("PUT", &format!("{PODS}/web-1"), Some(upd)).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "Conflict");

    // The status subresource changes only .status.
    let mut st = updated.clone();
    st["status"]["phase"] = json!("Running");
    st["metadata"]["labels"]["tier"] = json!("ignored");
    let r = lab
        .call("PUT", &format!("{PODS}/web-1/status"), Some(st))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"]["phase"], "Running");
    assert_eq!(r.json()["metadata"]["labels"]["tier"], "front");
    let r = lab
        .call(
            "PATCH",
            &format!("{PODS}/web-1/status"),
            Some(json!({"status": {"podIP": "127.0.30.5"}, "spec": {"nodeName": "x"}})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"]["podIP"], "127.0.30.5");
    assert!(r.json()["spec"].get("nodeName").is_none());

    // Name mismatch between URL and body.
    let r = lab
        .call("PUT", &format!("{PODS}/other"), Some(pod("web-1")))
        .await;
    assert!(r.status == 400 || r.status == 404, "{}", r.status);

    let r = lab.call("GET", PODS, None).await;
    assert_eq!(r.json()["kind"], "PodList");
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);
    assert!(r.json()["metadata"]["resourceVersion"].as_str().is_some());

    // Unscheduled pod: deleted at once.
    let r = lab.call("DELETE", &format!("{PODS}/web-1"), None).await;
    assert_eq!(r.status, 200);
    let r = lab.call("GET", &format!("{PODS}/web-1"), None).await;
    assert_eq!(r.status, 404);
    let st = r.json();
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["reason"], "NotFound");
    assert_eq!(st["details"]["name"], "web-1");
}

#[tokio::test]
async fn generate_name_and_missing_namespace() {
    let lab = lab().await;
    let mut p = pod("");
    p["metadata"].as_object_mut().unwrap().remove("name");
    p["metadata"]["generateName"] = json!("web-");
    let r = lab.call("POST", PODS, Some(p)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let name = r.json()["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");

    let r = lab
        .call("POST", "/api/v1/namespaces/nope/pods", Some(pod("a")))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["details"]["kind"], "namespaces");

    let mut p = pod("");
    p["metadata"].as_object_mut().unwrap().remove("name");
    let r = lab.call("POST", PODS, Some(p)).await;
    assert_eq!(r.status, 422, "{}", r.text());

    // namespace in body must match the URL
    let mut p = pod("x");
    p["metadata"]["namespace"] = json!("kube-system");
    assert_eq!(lab.call("POST", PODS, Some(p)).await.status, 400);
    // wrong kind
    let r = lab
        .call(
            "POST",
            PODS,
            Some(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}})),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn patches_all_content_types() {
    let lab = lab().await;
    assert_eq!(lab.call("POST", PODS, Some(pod("p"))).await.status, 201);
    let url = format!("{PODS}/p");

    let r = lab
        .raw(
            "PATCH",
            &url,
            "application/merge-patch+json",
            br#"{"metadata":{"labels":{"a":"1"}}}"#.to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["metadata"]["labels"]["a"], "1");

    let r = lab
        .raw(
            "PATCH",
            &url,
            "application/json-patch+json",
            br#"[{"op":"replace","path":"/metadata/labels/a","value":"2"}]"#.to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["metadata"]["labels"]["a"], "2");

    // strategic merge: containers merge by name, the existing one keeps its image
    let r = lab
        .raw(
            "PATCH",
            &url,
            "application/strategic-merge-patch+json",
            br#"{"spec":{"containers":[{"name":"c","env":[{"name":"X","value":"y"}]}]}}"#.to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let c = &r.json()["spec"]["containers"];
    assert_eq!(c.as_array().unwrap().len(), 1);
    assert_eq!(c[0]["image"], "proxylab/echo-http:1");
    assert_eq!(c[0]["env"][0]["value"], "y");
    assert_eq!(r.json()["metadata"]["generation"], 2);

    // server-side apply creates when absent
    let r = lab
        .raw(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/cm?fieldManager=t",
            "application/apply-patch+yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  k: v\n".to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["data"]["k"], "v");

    let r = lab
        .raw("PATCH", &url, "application/json", b"{}".to_vec(), &[])
        .await;
    assert_eq!(r.status, 415);
    let r = lab
        .raw(
            "PATCH",
            &url,
            "application/json-patch+json",
            br#"[{"op":"test","path":"/metadata/labels/a","value":"nope"}]"#.to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let r = lab
        .raw(
            "PATCH",
            &url,
            "application/merge-patch+json",
            b"{not json".to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    // a stale resourceVersion in a patch is a precondition
    let r = lab
        .raw(
            "PATCH",
            &url,
            "application/merge-patch+json",
            br#"{"metadata":{"resourceVersion":"1"}}"#.to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 409);
    let r = lab
        .raw(
            "PATCH",
            &format!("{PODS}/absent"),
            "application/merge-patch+json",
            b"{}".to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn selectors_and_pagination() {
    let lab = lab().await;
    for i in 0..5 {
        let mut p = pod(&format!("p{i}"));
        p["metadata"]["labels"]["idx"] = json!(i.to_string());
        if i % 2 == 0 {
            p["spec"]["nodeName"] = json!("node-1");
        }
        assert_eq!(lab.call("POST", PODS, Some(p)).await.status, 201);
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = lab
        .call(
            "GET",
            &format!("{PODS}?labelSelector=idx%20in%20(1,3)"),
            None,
        )
        .await;
    assert_eq!(names(&r.json()), ["p1", "p3"]);
    let r = lab
        .call(
            "GET",
            &format!("{PODS}?fieldSelector=spec.nodeName=node-1"),
            None,
        )
        .await;
    assert_eq!(names(&r.json()), ["p0", "p2", "p4"]);
    let r = lab
        .call(
            "GET",
            "/api/v1/pods?fieldSelector=spec.nodeName!=node-1,metadata.namespace=default",
            None,
        )
        .await;
    assert_eq!(names(&r.json()), ["p1", "p3"]);
    let r = lab
        .call("GET", &format!("{PODS}?fieldSelector=spec.bogus=1"), None)
        .await;
    assert_eq!(r.status, 400);
    let r = lab
        .call("GET", &format!("{PODS}?labelSelector=a%20in"), None)
        .await;
    assert_eq!(r.status, 400);

    let mut seen = Vec::new();
    let mut url = format!("{PODS}?limit=2");
    let mut pages = 0;
    let mut first_rv = None;
    loop {
        let r = lab.call("GET", &url, None).await.json();
        pages += 1;
        seen.extend(names(&r));
        first_rv.get_or_insert(r["metadata"]["resourceVersion"].clone());
        assert_eq!(Some(&r["metadata"]["resourceVersion"]), first_rv.as_ref());
        match r["metadata"]["continue"].as_str() {
            Some(c) => {
                assert!(r["metadata"]["remainingItemCount"].as_u64().unwrap() > 0);
                url = format!("{PODS}?limit=2&continue={c}");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["p0", "p1", "p2", "p3", "p4"]);
    let r = lab
        .call("GET", &format!("{PODS}?limit=2&continue=garbage"), None)
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn graceful_pod_deletion() {
    let lab = lab().await;
    let mut p = pod("bound");
    p["spec"]["nodeName"] = json!("node-1");
    assert_eq!(lab.call("POST", PODS, Some(p)).await.status, 201);
    let r = lab.call("DELETE", &format!("{PODS}/bound"), Some(json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["metadata"]["deletionTimestamp"].as_str().is_some());
    assert_eq!(r.json()["metadata"]["deletionGracePeriodSeconds"], 30);
    // still there, terminating
    let r = lab.call("GET", &format!("{PODS}/bound"), None).await;
    assert_eq!(r.status, 200);
    // the node agent's final delete
    let r = lab
        .call(
            "DELETE",
            &format!("{PODS}/bound?gracePeriodSeconds=0"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        lab.call("GET", &format!("{PODS}/bound"), None).await.status,
        404
    );

    let mut p = pod("bound2");
    p["spec"]["nodeName"] = json!("node-1");
    lab.call("POST", PODS, Some(p)).await;
    let r = lab
        .call(
            "DELETE",
            &format!("{PODS}/bound2"),
            Some(json!({"gracePeriodSeconds": 5})),
        )
        .await;
    assert_eq!(r.json()["metadata"]["deletionGracePeriodSeconds"], 5);
    let r = lab
        .call(
            "DELETE",
            &format!("{PODS}/bound2"),
            Some(json!({"preconditions": {"resourceVersion": "1"}})),
        )
        .await;
    assert_eq!(r.status, 409);
    let r = lab
        .call(
            "DELETE",
            &format!("{PODS}/bound2?propagationPolicy=Sideways"),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn deletecollection_and_namespace_deletion() {
    let lab = lab().await;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
    let r = lab.call("POST", "/api/v1/namespaces", Some(ns)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["status"]["phase"], "Active");
    for i in 0..3 {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}"), "labels": {"g": if i < 2 {"a"} else {"b"}}}});
        assert_eq!(
            lab.call("POST", "/api/v1/namespaces/team/configmaps", Some(cm))
                .await
                .status,
            201
        );
    }
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"clusterIP": "127.0.40.77", "ports": [{"port": 80}]}});
    assert_eq!(
        lab.call(
            "POST",
            "/api/v1/namespaces/team/services",
            Some(svc.clone())
        )
        .await
        .status,
        201
    );

    let r = lab
        .call(
            "DELETE",
            "/api/v1/namespaces/team/configmaps?labelSelector=g%3Da",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 2);
    let r = lab
        .call("GET", "/api/v1/namespaces/team/configmaps", None)
        .await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);

    assert_eq!(
        lab.call("DELETE", "/api/v1/namespaces/team", None)
            .await
            .status,
        200
    );
    assert_eq!(
        lab.call("GET", "/api/v1/namespaces/team/configmaps/c2", None)
            .await
            .status,
        404
    );
    assert_eq!(
        lab.call("GET", "/api/v1/namespaces/team", None)
            .await
            .status,
        404
    );
    // the service's ClusterIP was released with the namespace
    let mut svc2 = svc;
    svc2["metadata"]["name"] = json!("s2");
    assert_eq!(
        lab.call("POST", "/api/v1/namespaces/default/services", Some(svc2))
            .await
            .status,
        201
    );

    let r = lab.call("DELETE", "/api/v1/namespaces/default", None).await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn services_allocation() {
    let lab = lab().await;
    let url = "/api/v1/namespaces/default/services";
    // bootstrap: the kubernetes service holds the first IP
    let k = lab
        .call("GET", &format!("{url}/kubernetes"), None)
        .await
        .json();
    assert_eq!(k["spec"]["clusterIP"], "127.0.40.1");
    assert_eq!(
        lab.call(
            "GET",
            "/api/v1/namespaces/default/endpoints/kubernetes",
            None
        )
        .await
        .status,
        200
    );

    let svc = |name: &str, spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec});
    let r = lab
        .call(
            "POST",
            url,
            Some(svc(
                "web",
                json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}),
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let s = r.json();
    let ip: std::net::Ipv4Addr = s["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert_eq!(ip.octets()[..3], [127, 0, 40]);
    assert_eq!(s["spec"]["type"], "ClusterIP");
    assert_eq!(s["spec"]["sessionAffinity"], "None");
    assert_eq!(s["spec"]["ipFamilyPolicy"], "SingleStack");
    assert_eq!(s["spec"]["internalTrafficPolicy"], "Cluster");
    assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);

    let r = lab
        .call(
            "POST",
            url,
            Some(svc(
                "np",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["spec"]["externalTrafficPolicy"], "Cluster");
    let r = lab
        .call(
            "POST",
            url,
            Some(svc(
                "np2",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
            )),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["reason"], "Invalid");
    assert!(
        r.json()["details"]["causes"][0]["field"]
            .as_str()
            .unwrap()
            .contains("nodePort")
    );
    let r = lab
        .call(
            "POST",
            url,
            Some(svc(
                "np3",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}),
            )),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = lab
        .call(
            "POST",
            url,
            Some(svc(
                "ip2",
                json!({"clusterIP": ip.to_string(), "ports": [{"port": 80}]}),
            )),
        )
        .await;
    assert_eq!(r.status, 422);

    let r = lab
        .call("POST", url, Some(svc("lb", json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 443, "protocol": "TCP"}]}))))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let lb = r.json();
    let hc = lb["spec"]["healthCheckNodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&hc));
    assert!(lb["spec"]["ports"][0]["nodePort"].as_u64().is_some());

    let r = lab
        .call(
            "POST",
            url,
            Some(svc(
                "headless",
                json!({"clusterIP": "None", "ports": [{"port": 80}]}),
            )),
        )
        .await;
    assert_eq!(r.json()["spec"]["clusterIPs"], json!(["None"]));

    // delete releases: the nodePort can be taken again
    assert_eq!(
        lab.call("DELETE", &format!("{url}/np"), None).await.status,
        200
    );
    let r = lab
        .call(
            "POST",
            url,
            Some(svc(
                "np2",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // update keeps the ClusterIP and node port when unspecified
    let mut upd = r.json();
    let before_ip = upd["spec"]["clusterIP"].clone();
    upd["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("nodePort");
    upd["metadata"]["labels"] = json!({"x": "y"});
    let r = lab.call("PUT", &format!("{url}/np2"), Some(upd)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["spec"]["clusterIP"], before_ip);
    assert_eq!(r.json()["spec"]["ports"][0]["nodePort"], 30080);
}

#[tokio::test]
async fn table_output() {
    let lab = lab().await;
    lab.call("POST", PODS, Some(pod("t1"))).await;
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let r = lab
        .raw(
            "GET",
            &format!("{PODS}?limit=500"),
            "application/json",
            vec![],
            &[("accept", accept)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .contains("as=Table")
    );
    let t = r.json();
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        cols.contains(&"Name") && cols.contains(&"Status") && cols.contains(&"Age"),
        "{cols:?}"
    );
    assert_eq!(t["rows"][0]["cells"][0], "t1");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert!(t["metadata"]["resourceVersion"].as_str().is_some());
    let r = lab
        .raw(
            "GET",
            &format!("{PODS}/t1?includeObject=Object"),
            "application/json",
            vec![],
            &[("accept", accept)],
        )
        .await;
    assert_eq!(r.json()["rows"][0]["object"]["kind"], "Pod");
    // pretty printing
    let r = lab
        .call("GET", &format!("{PODS}/t1?pretty=true"), None)
        .await;
    assert!(r.text().contains("\n  "));
}

#[tokio::test]
async fn errors_413_405_404_406_415_422() {
    let lab = lab().await;
    let mut big = pod("big");
    big["metadata"]["annotations"] = json!({"x": "a".repeat(3 * 1024 * 1024 + 10)});
    let r = lab.call("POST", PODS, Some(big)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["code"], 413);
    assert_eq!(lab.call("PUT", PODS, Some(pod("x"))).await.status, 405);
    assert_eq!(
        lab.call("POST", "/api/v1/pods", Some(pod("x")))
            .await
            .status,
        405
    );
    assert_eq!(
        lab.call("GET", "/api/v1/namespaces/default/widgets", None)
            .await
            .status,
        404
    );
    assert_eq!(
        lab.call("GET", "/apis/nope.io/v1/things", None)
            .await
            .status,
        404
    );
    assert_eq!(lab.call("GET", "/nothing/here", None).await.status, 404);
    let r = lab
        .raw(
            "GET",
            PODS,
            "application/json",
            vec![],
            &[("accept", "application/vnd.kubernetes.protobuf")],
        )
        .await;
    assert_eq!(r.status, 406);
    let r = lab
        .raw("POST", PODS, "application/cbor", b"\x00".to_vec(), &[])
        .await;
    assert_eq!(r.status, 415);
    // protobuf is understood for a few kinds (see protobuf.rs); a broken envelope is a 400
    let r = lab
        .raw(
            "POST",
            PODS,
            "application/vnd.kubernetes.protobuf",
            b"\x00".to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = lab.call("POST", PODS, Some(pod("Bad_Name"))).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let st = r.json();
    assert_eq!(st["reason"], "Invalid");
    assert!(!st["details"]["causes"].as_array().unwrap().is_empty());
    // YAML bodies are accepted
    let r = lab
        .raw(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n"
                .to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn binding_subresource_and_cluster_scoped() {
    let lab = lab().await;
    lab.call("POST", PODS, Some(pod("b"))).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b"}, "target": {"kind": "Node", "name": "node-1"}});
    let r = lab
        .call("POST", &format!("{PODS}/b/binding"), Some(binding.clone()))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let p = lab.call("GET", &format!("{PODS}/b"), None).await.json();
    assert_eq!(p["spec"]["nodeName"], "node-1");
    assert_eq!(
        lab.call("POST", &format!("{PODS}/b/binding"), Some(binding))
            .await
            .status,
        409
    );

    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let r = lab.call("POST", "/api/v1/nodes", Some(node)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["status"]["conditions"][0]["type"], "Ready");
    assert!(r.json()["metadata"].get("namespace").is_none());
    let r = lab
        .call(
            "PATCH",
            "/api/v1/nodes/node-1/status",
            Some(
                json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.20.1"}]}}),
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-1"}, "spec": {"holderIdentity": "node-1"}});
    let r = lab
        .call(
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            Some(lease),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = lab
        .call("GET", "/apis/coordination.k8s.io/v1/leases", None)
        .await;
    assert_eq!(r.json()["kind"], "LeaseList");
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let lab = lab().await;
    let url = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/keep"]}});
    assert_eq!(lab.call("POST", url, Some(cm)).await.status, 201);
    let r = lab.call("DELETE", &format!("{url}/held"), None).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        lab.call("GET", &format!("{url}/held"), None).await.status,
        200
    );
    let r = lab
        .raw(
            "PATCH",
            &format!("{url}/held"),
            "application/json-patch+json",
            br#"[{"op":"remove","path":"/metadata/finalizers"}]"#.to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        lab.call("GET", &format!("{url}/held"), None).await.status,
        404
    );
}
