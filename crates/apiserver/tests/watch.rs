//! Watch semantics: initial state, replay from a resourceVersion, 410 Expired, bookmarks, selectors,
//! timeouts, Table events.

mod common;

use common::*;
use serde_json::json;

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn watch_without_rv_sends_current_state_then_live() {
    let lab = lab().await;
    lab.call("POST", PODS, Some(pod("a"))).await;
    let (status, mut body) = lab.watch(&format!("{PODS}?watch=true")).await;
    assert_eq!(status, 200);
    let mut buf = Vec::new();
    let e = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("a"))
    );
    lab.call(
        "PATCH",
        &format!("{PODS}/a"),
        Some(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await;
    let e = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"]["metadata"]["labels"]["x"], "1");
    lab.call("DELETE", &format!("{PODS}/a"), None).await;
    let e = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(e["type"], "DELETED");
}

#[tokio::test]
async fn watch_from_rv_replays_and_legacy_path() {
    let lab = lab().await;
    let rv = lab.call("GET", PODS, None).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.call("POST", PODS, Some(pod("a"))).await;
    lab.call("POST", PODS, Some(pod("b"))).await;
    let (_, mut body) = lab
        .watch(&format!(
            "/api/v1/watch/namespaces/default/pods?resourceVersion={rv}"
        ))
        .await;
    let mut buf = Vec::new();
    let a = next_event(&mut body, &mut buf).await.unwrap();
    let b = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(a["object"]["metadata"]["name"], "a");
    assert_eq!(b["object"]["metadata"]["name"], "b");
    assert_eq!(b["type"], "ADDED");
    // single-object legacy watch
    let (_, mut one) = lab.watch("/api/v1/watch/namespaces/default/pods/b").await;
    let mut buf1 = Vec::new();
    let e = next_event(&mut one, &mut buf1).await.unwrap();
    assert_eq!(e["object"]["metadata"]["name"], "b");
    lab.call(
        "PATCH",
        &format!("{PODS}/a"),
        Some(json!({"metadata": {"labels": {"q": "1"}}})),
    )
    .await;
    lab.call(
        "PATCH",
        &format!("{PODS}/b"),
        Some(json!({"metadata": {"labels": {"q": "2"}}})),
    )
    .await;
    let e = next_event(&mut one, &mut buf1).await.unwrap();
    assert_eq!(
        (
            e["type"].as_str(),
            e["object"]["metadata"]["labels"]["q"].as_str()
        ),
        (Some("MODIFIED"), Some("2"))
    );
}

#[tokio::test]
async fn too_old_resource_version_is_410_error_event() {
    let lab = lab_with(config(), 4).await;
    for i in 0..10 {
        lab.call("POST", PODS, Some(pod(&format!("p{i}")))).await;
    }
    let (status, mut body) = lab
        .watch(&format!("{PODS}?watch=1&resourceVersion=2"))
        .await;
    assert_eq!(status, 200);
    let mut buf = Vec::new();
    let e = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["kind"], "Status");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(
        next_event(&mut body, &mut buf).await.is_none(),
        "stream ends after the error"
    );
    // a version from the future
    let (_, mut body) = lab
        .watch(&format!("{PODS}?watch=1&resourceVersion=99999"))
        .await;
    let mut buf = Vec::new();
    let e = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 504);
}

#[tokio::test]
async fn bookmarks_and_timeout() {
    let lab = lab().await;
    let rv = lab.call("GET", PODS, None).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, mut body) = lab
        .watch(&format!(
            "{PODS}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true"
        ))
        .await;
    let mut buf = Vec::new();
    let e = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(e["type"], "BOOKMARK");
    assert_eq!(e["object"]["kind"], "Pod");
    assert_eq!(e["object"]["metadata"]["resourceVersion"], rv.as_str());

    // progress elsewhere in the store moves the bookmarks of a quiet watch forward
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "elsewhere"}});
    lab.call("POST", "/api/v1/namespaces/default/configmaps", Some(cm))
        .await;
    let now_rv: u64 = lab.call("GET", PODS, None).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    loop {
        let e = next_event(&mut body, &mut buf).await.unwrap();
        assert_eq!(e["type"], "BOOKMARK");
        let brv: u64 = e["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        if brv == now_rv {
            break;
        }
        assert!(brv < now_rv);
    }

    let (_, mut body) = lab
        .watch(&format!("{PODS}?watch=True&timeoutSeconds=1"))
        .await;
    let mut buf = Vec::new();
    assert!(
        next_event(&mut body, &mut buf).await.is_none(),
        "ends after timeoutSeconds"
    );

    // streaming list: initial events end with an annotated bookmark
    lab.call("POST", PODS, Some(pod("s"))).await;
    let (_, mut body) = lab
        .watch(&format!("{PODS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion={rv}"))
        .await;
    let mut buf = Vec::new();
    assert_eq!(
        next_event(&mut body, &mut buf).await.unwrap()["type"],
        "ADDED"
    );
    let b = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(
        b["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn field_selector_watch_sees_binding_as_added_and_moves_out_as_deleted() {
    let lab = lab().await;
    let (_, mut body) = lab
        .watch("/api/v1/pods?watch=true&fieldSelector=spec.nodeName%3Dnode-1")
        .await;
    let mut buf = Vec::new();
    lab.call("POST", PODS, Some(pod("p"))).await;
    lab.call("POST", PODS, Some(pod("q"))).await;
    let binding = |n: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": n}, "target": {"kind": "Node", "name": "node-1"}});
    lab.call("POST", &format!("{PODS}/q/binding"), Some(binding("q")))
        .await;
    let e = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("q"))
    );
    // label change on a bound pod: MODIFIED
    lab.call(
        "PATCH",
        &format!("{PODS}/q"),
        Some(json!({"metadata": {"labels": {"z": "1"}}})),
    )
    .await;
    assert_eq!(
        next_event(&mut body, &mut buf).await.unwrap()["type"],
        "MODIFIED"
    );
    // graceful deletion marks it (MODIFIED), the final delete is DELETED
    lab.call("DELETE", &format!("{PODS}/q"), None).await;
    let e = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(e["type"], "MODIFIED");
    assert!(e["object"]["metadata"]["deletionTimestamp"].is_string());
    lab.call("DELETE", &format!("{PODS}/q?gracePeriodSeconds=0"), None)
        .await;
    assert_eq!(
        next_event(&mut body, &mut buf).await.unwrap()["type"],
        "DELETED"
    );

    // label-selector watch: moving out of the selection is DELETED
    let (_, mut lw) = lab
        .watch(&format!("{PODS}?watch=true&labelSelector=app%3Dweb"))
        .await;
    let mut lbuf = Vec::new();
    assert_eq!(
        next_event(&mut lw, &mut lbuf).await.unwrap()["object"]["metadata"]["name"],
        "p"
    );
    lab.call(
        "PATCH",
        &format!("{PODS}/p"),
        Some(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await;
    assert_eq!(
        next_event(&mut lw, &mut lbuf).await.unwrap()["type"],
        "DELETED"
    );
}

#[tokio::test]
async fn table_watch_events() {
    let lab = lab().await;
    lab.call("POST", PODS, Some(pod("t"))).await;
    let req = http::Request::builder()
        .uri(format!("{PODS}?watch=true"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(axum::body::Body::empty())
        .unwrap();
    use tower::ServiceExt;
    let resp = lab.router.clone().oneshot(req).await.unwrap();
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let e = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["kind"], "Table");
    assert_eq!(e["object"]["rows"][0]["cells"][0], "t");
}

#[tokio::test]
async fn selector_watch_from_rv_sees_changes_made_before_it_started() {
    let lab = lab().await;
    let mut p = pod("gone");
    p["spec"]["nodeName"] = json!("node-1");
    lab.call("POST", PODS, Some(p)).await;
    let sel = "fieldSelector=spec.nodeName%3Dnode-1";
    let list = lab
        .call("GET", &format!("/api/v1/pods?{sel}"), None)
        .await
        .json();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // deleted between the list and the watch: the watch must still report it
    lab.call("DELETE", &format!("{PODS}/gone?gracePeriodSeconds=0"), None)
        .await;
    let (_, mut body) = lab
        .watch(&format!(
            "/api/v1/pods?watch=true&{sel}&resourceVersion={rv}"
        ))
        .await;
    let mut buf = Vec::new();
    let e = next_event(&mut body, &mut buf).await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("gone"))
    );
}
