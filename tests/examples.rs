//! The programs in `examples/` are documentation: a reader runs them with `cargo run --example X`.
//! So that they cannot rot, each one is compiled into this test as a module (its `main` only prints
//! what its `demo` returns) and its `demo` is checked here: what the example claims to show must
//! happen.

#[allow(dead_code)]
#[path = "../examples/embed_relay.rs"]
mod embed_relay;

#[allow(dead_code)]
#[path = "../examples/custom_cluster_view.rs"]
mod custom_cluster_view;

#[allow(dead_code)]
#[path = "../examples/bastion_in_axum.rs"]
mod bastion_in_axum;

#[allow(dead_code)]
#[path = "../examples/read_hops.rs"]
mod read_hops;

#[allow(dead_code)]
#[path = "../examples/embedded_control_plane.rs"]
mod embedded_control_plane;

use std::collections::BTreeSet;

#[tokio::test]
async fn embed_relay_balances_and_records_the_failed_dial() {
    let hops = embed_relay::demo().await.unwrap();
    assert_eq!(hops.len(), 6, "one record per connection: {hops:#?}");
    // Every connection was answered (the demo checks the answers) and its record says by whom.
    let reached: BTreeSet<String> = hops.iter().filter_map(|h| h.endpoint.clone()).collect();
    assert_eq!(
        reached.len(),
        2,
        "both live backends were used: {reached:?}"
    );
    assert!(hops.iter().all(|h| h.outcome == "ok"), "{hops:#?}");
    // Round-robin over three endpoints meets the dead one within six connections: the dial to it
    // failed and the next endpoint was taken on the same connection.
    assert!(
        hops.iter()
            .any(|h| h.reason.as_deref().is_some_and(|r| r.contains("failed"))),
        "a record names the failed dial: {hops:#?}"
    );
    assert!(
        hops.iter()
            .all(|h| h.bytes_down == "backend-a".len() as u64)
    );
}

#[tokio::test]
async fn custom_cluster_view_drives_the_forwarder() {
    let story = custom_cluster_view::demo().await.unwrap();
    let set = |v: &[String]| -> BTreeSet<String> { v.iter().cloned().collect() };
    assert_eq!(story.all_ready.len(), 6);
    assert_eq!(
        set(&story.all_ready),
        set(&["catalog-1".into(), "catalog-2".into(), "catalog-3".into()]),
        "round-robin over three ready endpoints reaches each in six connections"
    );
    assert_eq!(
        set(&story.one_unready),
        set(&["catalog-1".into(), "catalog-3".into()]),
        "the not-ready endpoint gets no new connection"
    );
    assert_eq!(story.checkout_answer, "catalog-3");
    assert!(story.listeners.contains(&story.catalog), "{story:?}");
    assert!(story.listeners.contains(&story.checkout), "{story:?}");
    assert!(
        story.after_removal.contains("refused"),
        "the removed service's listener is closed: {}",
        story.after_removal
    );
}

#[tokio::test]
async fn bastion_mounts_in_an_axum_app() {
    let story = bastion_in_axum::demo().await.unwrap();
    assert_eq!(story.home, "200 my app");
    assert!(
        story.anonymous.starts_with("401 ") && story.anonymous.contains("Unauthorized"),
        "{}",
        story.anonymous
    );
    let answers: BTreeSet<&str> = story.through_service.iter().map(String::as_str).collect();
    assert_eq!(
        answers,
        BTreeSet::from(["200 web-1", "200 web-2"]),
        "round-robin over the two ready endpoints"
    );
    // The pod got the path after `proxy`, the original URL in X-Forwarded-Uri, and no credentials.
    assert!(
        story.pod_saw.starts_with("200 uri=/echo?x=1 "),
        "{}",
        story.pod_saw
    );
    // kube-apiserver's X-Forwarded-Uri is the request prefix and the backend path (no query).
    assert!(
        story
            .pod_saw
            .contains("x-forwarded-uri=/api/v1/namespaces/default/services/web:http/proxy/echo "),
        "{}",
        story.pod_saw
    );
    assert!(
        story.pod_saw.contains("x-forwarded-for=127.0.0.1"),
        "{}",
        story.pod_saw
    );
    assert!(
        story.pod_saw.ends_with("authorization=-"),
        "{}",
        story.pod_saw
    );
    assert_eq!(story.by_pod, "200 web-2", "a named container port resolves");
    assert!(
        story.missing.starts_with("404 ")
            && story.missing.contains(r#"services \"shop\" not found"#),
        "{}",
        story.missing
    );
    // One hop record per request that reached the bastion's handler.
    let hops = &story.hops;
    assert!(hops.len() >= 8, "{hops:#?}");
    let ok: Vec<_> = hops
        .iter()
        .filter(|h| h.http.as_ref().and_then(|x| x.status) == Some(200))
        .collect();
    assert_eq!(
        ok.len(),
        6,
        "four service, one echo, one pod request: {hops:#?}"
    );
    assert!(
        ok.iter()
            .all(|h| h.proxy == "bastion" && h.upstream.is_some())
    );
}

#[tokio::test]
async fn read_hops_stitches_two_forwarders() {
    let hops = read_hops::demo().await.unwrap();
    assert_eq!(hops.len(), 6, "three connections × two proxies: {hops:#?}");
    let paths = read_hops::stitch(&hops);
    assert_eq!(paths.len(), 3, "one path per connection: {paths:#?}");
    for path in &paths {
        let instances: Vec<&str> = path.iter().map(|h| h.instance.as_str()).collect();
        assert_eq!(instances, ["edge", "node-1"], "{path:#?}");
        // The edge's upstream is the listener of node-1's hop, which reached the pod.
        assert_eq!(path[0].upstream, Some(path[1].listener));
        assert_eq!(path[1].bytes_down, "hello".len() as u64);
    }
}

#[test]
fn stitch_leaves_unrelated_hops_apart() {
    use proxylab_core::telemetry::HopRecord;
    let addr = |s: &str| s.parse().unwrap();
    let mut a = HopRecord::start(
        "forwarder",
        "a",
        "tcp",
        addr("127.0.0.1:1000"),
        addr("127.0.0.2:80"),
    );
    a.upstream_local = Some(addr("127.0.0.2:2000"));
    let mut b = HopRecord::start(
        "forwarder",
        "b",
        "tcp",
        addr("127.0.0.2:2000"),
        addr("127.0.0.3:80"),
    );
    b.upstream_local = Some(addr("127.0.0.3:3000"));
    let c = HopRecord::start(
        "forwarder",
        "c",
        "tcp",
        addr("127.0.0.9:1000"),
        addr("127.0.0.3:80"),
    );
    let hops = [b.clone(), c.clone(), a.clone()];
    let paths = read_hops::stitch(&hops);
    let names: Vec<Vec<&str>> = paths
        .iter()
        .map(|p| p.iter().map(|h| h.instance.as_str()).collect())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&vec!["a", "b"]), "{names:?}");
    assert!(names.contains(&vec!["c"]), "{names:?}");
}

#[tokio::test]
async fn embedded_control_plane_admits_validates_and_reconciles() {
    let story = embedded_control_plane::demo().await.unwrap();
    assert_eq!(story.created, 201);
    let ip: std::net::IpAddr = story.cluster_ip.parse().expect("a ClusterIP was allocated");
    assert!(ip.is_loopback(), "from the lab's service range: {ip}");
    assert_eq!(story.invalid, 422);
    for field in ["metadata.name", "spec.ports[0].port"] {
        assert!(
            story.invalid_message.contains(field),
            "{field} in {}",
            story.invalid_message
        );
    }
    assert!(
        story
            .slices
            .iter()
            .any(|(_, service, endpoints)| service == "web" && *endpoints == 0),
        "the controller made web's (empty) slice: {:?}",
        story.slices
    );
}
