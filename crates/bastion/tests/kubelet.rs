//! pods/log, exec, attach and portforward against the stand-in kubelet: the kubelet URL and query
//! kube-apiserver would build, the container rules, streaming, and kubelet errors as Statuses.
//! (The real kubelet and real kubectl are exercised end to end in the root `tests/`.)

mod common;

use common::{Options, json_body, start};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn last_kubelet_path(env: &common::Env) -> String {
    env.kubelet
        .seen
        .lock()
        .last()
        .unwrap()
        .path_and_query
        .clone()
}

#[tokio::test]
async fn logs_go_to_the_pods_node_with_translated_options() {
    let env = start(Options::default()).await;
    let (code, h, body) = env.get(&format!("{PODS}/web-1/log"), "alice").await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::OK, "log of default/web-1/echo\n")
    );
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(last_kubelet_path(&env), "/containerLogs/default/web-1/echo");
    let (code, _, _) = env
        .get(
            &format!("{PODS}/web-1/log?container=echo&tailLines=5&timestamps=true&previous=false&sinceSeconds=10&limitBytes=100&pretty=true"),
            "alice",
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        last_kubelet_path(&env),
        "/containerLogs/default/web-1/echo?tailLines=5&timestamps=true&sinceSeconds=10&limitBytes=100"
    );
    // The user's token was not sent to the kubelet; the bastion's client certificate was.
    assert!(
        env.kubelet
            .seen
            .lock()
            .iter()
            .all(|r| r.headers.get("authorization").is_none())
    );
}

#[tokio::test]
async fn log_container_rules_are_kube_apiservers() {
    let env = start(Options {
        edit: Box::new(|objs| {
            objs.push(serde_json::json!({"apiVersion":"v1","kind":"Pod",
                "metadata":{"name":"two","namespace":"default"},
                "spec":{"nodeName":"node-1","containers":[{"name":"app"},{"name":"sidecar"}]},
                "status":{"podIP":"127.0.0.1"}}));
            objs.push(serde_json::json!({"apiVersion":"v1","kind":"Pod",
                "metadata":{"name":"pending","namespace":"default"},
                "spec":{"containers":[{"name":"app"}]}}));
        }),
        ..Default::default()
    })
    .await;
    for (path, code, message) in [
        (
            format!("{PODS}/two/log"),
            400,
            "a container name must be specified for pod two, choose one of: [app sidecar]",
        ),
        (
            format!("{PODS}/web-1/log?container=nope"),
            400,
            "container nope is not valid for pod web-1",
        ),
        (format!("{PODS}/nope/log"), 404, r#"pods "nope" not found"#),
        (
            format!("{PODS}/pending/log"),
            400,
            "pod pending does not have a host assigned",
        ),
        (
            format!("{PODS}/web-1/log?follow=maybe"),
            400,
            r#"invalid value "maybe" for query parameter "follow": expected true or false"#,
        ),
    ] {
        let (got, _, body) = env.get(&path, "alice").await;
        assert_eq!(got.as_u16(), code, "{path}: {body}");
        assert_eq!(json_body(&body)["message"], message, "{path}");
    }
    let (code, _, body) = env
        .get(&format!("{PODS}/two/log?container=sidecar"), "alice")
        .await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::OK, "log of default/two/sidecar\n")
    );
}

#[tokio::test]
async fn a_kubelet_error_becomes_a_status() {
    let env = start(Options {
        edit: Box::new(|objs| {
            objs.push(serde_json::json!({"apiVersion":"v1","kind":"Pod",
                "metadata":{"name":"gone","namespace":"default"},
                "spec":{"nodeName":"node-1","containers":[{"name":"app"}]}}));
        }),
        ..Default::default()
    })
    .await;
    let (code, h, body) = env.get(&format!("{PODS}/gone/log"), "alice").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(h["content-type"], "application/json");
    let s = json_body(&body);
    assert_eq!(s["reason"], "NotFound");
    assert_eq!(
        s["message"],
        "the server could not find the requested resource ( pods/log gone)"
    );
    assert_eq!(s["details"]["causes"][0]["message"], "pod does not exist");
}

#[tokio::test]
async fn follow_streams_as_the_kubelet_writes() {
    let env = start(Options::default()).await;
    let mut s = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    s.write_all(format!("GET {PODS}/web-2/log?follow=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // The kubelet sends one line and keeps the stream open: the line arrives anyway.
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("log of default/web-2/echo") {
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        last_kubelet_path(&env),
        "/containerLogs/default/web-2/echo?follow=true"
    );
}

async fn upgrade(env: &common::Env, path: &str, extra: &str) -> (tokio::net::TcpStream, String) {
    let mut s = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    s.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\nConnection: Upgrade\r\n\
             Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n{extra}Content-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = proxylab_test_support::http::read_head(&mut s).await;
    (s, head)
}

#[tokio::test]
async fn exec_attach_portforward_upgrade_to_the_kubelet() {
    let env = start(Options::default()).await;
    let (mut s, head) = upgrade(
        &env,
        &format!("{PODS}/web-1/exec?command=sh&command=-c&command=echo%20hi&stdin=true&stdout=true&tty=true"),
        "",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );
    let mut buf = vec![0u8; 20];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"kubelet-stream-open\n");
    s.write_all(b"stdin bytes").await.unwrap();
    let mut buf = vec![0u8; 11];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"stdin bytes");
    assert_eq!(
        last_kubelet_path(&env),
        "/exec/default/web-1/echo?input=1&output=1&tty=1&command=sh&command=-c&command=echo+hi"
    );
    let seen = env.kubelet.seen.lock().last().cloned().unwrap();
    assert_eq!(
        seen.headers["x-stream-protocol-version"],
        "v4.channel.k8s.io"
    );
    assert!(seen.headers.get("authorization").is_none());

    let (_, head) = upgrade(
        &env,
        &format!("{PODS}/web-2/attach?stdout=true&stderr=1&container=echo"),
        "",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        last_kubelet_path(&env),
        "/attach/default/web-2/echo?output=1&error=1"
    );

    let (_, head) = upgrade(&env, &format!("{PODS}/web-3/portforward?ports=8080"), "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        last_kubelet_path(&env),
        "/portForward/default/web-3?port=8080"
    );

    // The exec's hop record — written when its tunnel closes — names the kubelet it went to, its
    // upstream ends and the bytes both ways.
    drop(s);
    let hop = proxylab_test_support::eventually("the exec's hop record", || {
        env.hops()
            .into_iter()
            .find(|h| h.target.as_deref() == Some("pods/default/web-1/exec"))
    })
    .await;
    assert_eq!(hop.outcome, "upgraded");
    assert_eq!((hop.bytes_up, hop.bytes_down), (11, 31));
    assert_eq!(hop.endpoint.as_deref(), Some("node-1"));
    assert_eq!(hop.upstream, Some(env.kubelet.addr));
    assert!(hop.upstream_local.is_some());
    assert_eq!(hop.http.as_ref().unwrap().status, Some(101));
}

#[tokio::test]
async fn streaming_subresources_require_an_upgrade() {
    let env = start(Options::default()).await;
    for sub in ["exec?command=ls", "attach", "portforward?ports=80"] {
        let raw = env
            .raw(&format!(
                "POST {PODS}/web-1/{sub} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{sub}: {raw}");
        assert!(raw.contains("Upgrade request required"), "{raw}");
    }
    assert!(env.kubelet.seen.lock().is_empty());
}
