//! `proxylab trace` against a real lab: every lab path (kubectl proxy → apiserver proxy → pod,
//! an apiserver directly, ClusterIP over TCP and UDP, NodePort), paths that fail (a service
//! without endpoints, behind the forwarder and behind the bastion; a port nothing listens on), the
//! table and the JSON; and bad input without a lab.

use std::process::Command;

use proxylab_test_support::expect_one_line_exit_2;
use proxylab_test_support::lab::Lab;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");

/// A service whose selector matches no pod: it has a ClusterIP and a forwarder listener, but no
/// endpoints.
const EMPTY_SERVICE: &str = "
---
apiVersion: v1
kind: Service
metadata:
  name: empty
  namespace: default
spec:
  selector: {app: nothing}
  ports:
    - {name: http, port: 80}
";

fn trace(lab: &Lab, output: &str, target: &str) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["trace", "--state-dir"])
        .arg(lab.state_dir())
        .args(["--output", output, target])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run proxylab trace");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs trace with `--output json`; checks the exit code matches `ok`.
fn trace_json(lab: &Lab, target: &str) -> Value {
    let (code, stdout, stderr) = trace(lab, "json", target);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "trace {target}: not JSON ({e}):\n{stdout}\nstderr: {stderr}\nlab log:\n{}",
            lab.log()
        )
    });
    let expected = if v["ok"] == true { 0 } else { 1 };
    assert_eq!(code, expected, "trace {target}: exit code vs ok: {v:#}");
    v
}

fn service<'a>(info: &'a Value, name: &str) -> &'a Value {
    info["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("service {name} missing from lab.json: {info}"))
}

fn hops(v: &Value) -> &Vec<Value> {
    v["hops"].as_array().expect("hops")
}

/// `ip:port` is in the lab's pod range `127.N.30.0/24`.
fn is_pod(addr: &Value, octet: u8) -> bool {
    addr.as_str()
        .is_some_and(|a| a.starts_with(&format!("127.{octet}.30.")))
}

#[test]
fn trace_follows_every_lab_path_and_names_the_hop_that_refused() {
    let lab = Lab::start_with(BIN, |t| format!("{t}{EMPTY_SERVICE}"));
    let o = lab.octet;
    let info = lab.info.clone();

    // kubectl proxy → HA balancer → apiserver proxy (bastion) → pod. The auth-proxy records the
    // local address of the pooled connection it used; that connection through the balancer is
    // still open (shown as `open`), and the bastion's hop joins the balancer's exactly.
    let v = trace_json(
        &lab,
        &format!("http://127.{o}.0.1:8001/api/v1/namespaces/default/services/web/proxy/hostname"),
    );
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["request"]["status"], 200, "{v:#}");
    assert!(
        v["request"]["answer"].as_str().unwrap().starts_with("web-"),
        "{v:#}"
    );
    let h = hops(&v);
    assert_eq!(h.len(), 3, "{v:#}");
    assert_eq!(h[0]["proxy"], "auth-proxy");
    assert_eq!(h[0]["type"], "kubectl proxy");
    assert_eq!(h[0]["from"], v["request"]["from"]);
    assert_eq!(h[0]["join"], "start");
    assert_eq!(h[0]["to"], format!("127.{o}.0.1:6443"));
    assert_eq!(h[1]["proxy"], "ha-balancer");
    assert_eq!(h[1]["type"], "apiserver balancer");
    assert_eq!(h[1]["join"], "exact");
    assert_eq!(h[1]["from"], h[0]["upstreamLocal"]);
    // Still held by the auth-proxy's pool (or, if the pool let it go, finished).
    assert!(
        ["open", "ok"].contains(&h[1]["outcome"].as_str().unwrap()),
        "{v:#}"
    );
    assert!(
        h[1]["toName"].as_str().unwrap().starts_with("apiserver-"),
        "{v:#}"
    );
    assert_eq!(h[2]["proxy"], "bastion");
    assert_eq!(h[2]["type"], "apiserver proxy");
    assert_eq!(h[2]["join"], "exact");
    assert_eq!(h[2]["from"], h[1]["upstreamLocal"]);
    assert_eq!(h[2]["instance"], h[1]["endpoint"]);
    assert_eq!(
        h[2]["source"].as_str().unwrap().split('/').next(),
        Some("apiservers")
    );
    assert!(is_pod(&h[2]["to"], o), "{v:#}");
    assert!(
        h[2]["toName"].as_str().unwrap().starts_with("pod on node-"),
        "{v:#}"
    );
    assert!(
        h[2]["endpoint"].is_string() && h[2]["reason"].is_string(),
        "{v:#}"
    );
    assert!(h[0]["micros"].as_u64().unwrap() >= h[2]["micros"].as_u64().unwrap());
    assert_eq!(v["failedHop"], Value::Null);

    // The same path as a table.
    let (code, table, _) = trace(
        &lab,
        "table",
        &format!("http://127.{o}.0.1:8001/api/v1/namespaces/default/services/web/proxy/hostname"),
    );
    assert_eq!(code, 0, "{table}");
    for want in [
        "HOP",
        "TYPE",
        "ENDPOINT (WHY)",
        "kubectl proxy",
        "apiserver balancer",
        "apiserver proxy",
        "pod on node-",
        "HTTP/1.1 200",
        "ok: 3 hop(s)",
    ] {
        assert!(table.contains(want), "{want:?} missing:\n{table}");
    }

    // An apiserver directly, with the lab kubeconfig's credentials: one hop, the bastion's.
    let v = trace_json(
        &lab,
        &format!("https://127.{o}.10.2:6443/api/v1/namespaces/default/services/web/proxy/hostname"),
    );
    assert_eq!(v["ok"], true, "{v:#}");
    let h = hops(&v);
    assert_eq!(h.len(), 1, "{v:#}");
    assert_eq!(h[0]["proxy"], "bastion");
    assert_eq!(h[0]["instance"], "apiserver-2");
    assert_eq!(h[0]["from"], v["request"]["from"]);
    assert!(is_pod(&h[0]["to"], o), "{v:#}");

    // ClusterIP → forwarder → pod.
    let web_ip = service(&info, "web")["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = trace_json(&lab, &format!("tcp://{web_ip}:80"));
    assert_eq!(v["ok"], true, "{v:#}");
    let h = hops(&v);
    assert_eq!(h.len(), 1, "{v:#}");
    assert_eq!(h[0]["proxy"], "forwarder");
    assert_eq!(h[0]["type"], "kube-proxy");
    assert_eq!(h[0]["protocol"], "tcp");
    assert_eq!(h[0]["listener"], format!("{web_ip}:80"));
    assert_eq!(h[0]["listenerName"], "service default/web:http");
    assert_eq!(h[0]["target"], "default/web:http");
    assert!(is_pod(&h[0]["to"], o), "{v:#}");
    assert_eq!(h[0]["endpoint"], h[0]["to"]);
    assert!(h[0]["bytes"]["up"].as_u64().unwrap() > 0, "{v:#}");
    assert!(h[0]["bytes"]["down"].as_u64().unwrap() > 0, "{v:#}");
    assert!(
        v["request"]["answer"].as_str().unwrap().contains("web-"),
        "{v:#}"
    );

    // UDP: ClusterIP → forwarder → pod, one datagram each way.
    let udp_ip = service(&info, "udp-echo")["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = trace_json(&lab, &format!("udp://{udp_ip}:53"));
    assert_eq!(v["ok"], true, "{v:#}");
    let h = hops(&v);
    assert_eq!(h.len(), 1, "{v:#}");
    assert_eq!(
        (&h[0]["proxy"], &h[0]["protocol"]),
        (&"forwarder".into(), &"udp".into())
    );
    assert!(is_pod(&h[0]["to"], o), "{v:#}");
    assert!(
        v["request"]["answer"]
            .as_str()
            .unwrap()
            .contains("pod=udp-echo-"),
        "{v:#}"
    );

    // NodePort on node-2: the forwarder of node-2 takes it.
    let node_port = service(&info, "web-lb")["ports"][0]["nodePort"]
        .as_u64()
        .unwrap();
    let v = trace_json(&lab, &format!("tcp://127.{o}.20.2:{node_port}"));
    assert_eq!(v["ok"], true, "{v:#}");
    let h = hops(&v);
    assert_eq!(h[0]["proxy"], "forwarder");
    assert_eq!(h[0]["instance"], "node-2");
    assert_eq!(h[0]["listenerName"], "NodePort of default/web-lb on node-2");
    assert!(is_pod(&h[0]["to"], o), "{v:#}");

    // A service without endpoints, through the forwarder: the forwarder resets the connection.
    let empty_ip = service(&info, "empty")["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = trace_json(&lab, &format!("tcp://{empty_ip}:80"));
    assert_eq!(v["ok"], false, "{v:#}");
    let f = &v["failedHop"];
    assert_eq!(f["hop"], 1, "{v:#}");
    assert_eq!(f["outcome"], "no-endpoints");
    assert!(
        f["why"].as_str().unwrap().contains("default/empty"),
        "{v:#}"
    );
    assert_eq!(hops(&v)[0]["proxy"], "forwarder");
    let (code, table, _) = trace(&lab, "table", &format!("tcp://{empty_ip}:80"));
    assert_eq!(code, 1);
    assert!(
        table.contains("FAILED at hop 1 (forwarder node-") && table.contains("no-endpoints"),
        "{table}"
    );

    // The same service through kubectl proxy (and the HA balancer): the auth-proxy passes the
    // apiserver's 503 on; the bastion is the hop that refused.
    let v = trace_json(
        &lab,
        &format!("http://127.{o}.0.1:8001/api/v1/namespaces/default/services/empty/proxy/"),
    );
    assert_eq!(v["ok"], false, "{v:#}");
    assert_eq!(v["request"]["status"], 503, "{v:#}");
    let f = &v["failedHop"];
    assert_eq!(f["hop"], 3, "{v:#}");
    assert_eq!(f["outcome"], "no-endpoints");
    assert_eq!(hops(&v)[2]["proxy"], "bastion");
    assert!(
        f["why"].as_str().unwrap().contains("no ready endpoints"),
        "{v:#}"
    );

    // A port the service does not have: nothing listens, no proxy recorded anything, and trace
    // says why from lab.json.
    let v = trace_json(&lab, &format!("tcp://{web_ip}:81"));
    assert_eq!(v["ok"], false, "{v:#}");
    assert!(hops(&v).is_empty(), "{v:#}");
    let f = &v["failedHop"];
    assert_eq!(f["hop"], Value::Null);
    assert_eq!(f["outcome"], "unreachable");
    let why = f["why"].as_str().unwrap();
    assert!(why.contains("connection refused"), "{why}");
    assert!(
        why.contains("service default/web has no port 81/TCP (its ports: 80/TCP, 443/TCP)"),
        "{why}"
    );
}

#[test]
fn bad_input_and_no_lab_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.arg("trace").arg("--state-dir").arg(&state).args(args);
        expect_one_line_exit_2(&mut c)
    };
    let line = run(&["ftp://127.0.0.1/"]);
    assert!(line.contains("unknown scheme \"ftp\""), "{line}");
    let line = run(&["http://10.1.2.3/"]);
    assert!(line.contains("not a loopback address"), "{line}");
    let line = run(&["tcp://127.0.0.1"]);
    assert!(line.contains("a port is required"), "{line}");
    // A bad flag value is clap's (usage follows its error line), still exit 2.
    let out = Command::new(BIN)
        .args(["trace", "--output", "yaml", "tcp://127.0.0.1:80"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'yaml'"));

    let line = run(&["tcp://127.0.0.1:80"]);
    assert!(line.contains("no lab is running in"), "{line}");
    assert!(!line.contains("stale"), "{line}");

    // A lab.json left by a killed lab: nobody holds the state dir's lock.
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("lab.json"), r#"{"pid": 1, "admin": {}}"#).unwrap();
    let line = run(&["tcp://127.0.0.1:80"]);
    assert!(line.contains("lab.json is stale"), "{line}");
}
