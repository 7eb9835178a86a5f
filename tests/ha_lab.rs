//! The HA balancer in the lab: every kubeconfig names it, it spreads over the three apiservers,
//! and the failure drill (`proxylab lab stop|start apiserver-N`) shows failover — the stopped
//! apiserver is marked down, kubectl keeps working, the lab's own watchers (forwarders, nodes)
//! resume on the others, and the apiserver comes back up when started again and gets connections
//! back.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use proxylab_test_support::http::http_get_blocking;
use proxylab_test_support::lab::Lab;
use proxylab_test_support::require_tool;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");

/// `proxylab lab stop|start NAME --state-dir DIR`: (exit code, stdout, stderr).
fn drill(lab: &Lab, action: &str, name: &str) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["lab", action, name, "--state-dir"])
        .arg(lab.state_dir())
        .output()
        .expect("run proxylab lab stop|start");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

/// Each backend's state on the balancer's `/stats?format=json`, by name.
fn states(admin: SocketAddr) -> Vec<(String, String)> {
    let r = http_get_blocking(admin, "/stats?format=json");
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_owned(),
                b["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn state_of(admin: SocketAddr, name: &str) -> String {
    states(admin)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

#[test]
fn kubectl_goes_through_the_balancer_and_survives_an_apiserver_stopped_and_started() {
    if !require_tool("kubectl") {
        return;
    }
    let lab = Lab::start(BIN);
    let o = lab.octet;
    let info = lab.info.clone();

    // lab.json and the kubeconfig name the balancer.
    assert_eq!(info["haBalancer"], format!("https://127.{o}.0.1:6443"));
    assert_eq!(
        info["admin"]["haBalancer"],
        format!("http://127.{o}.0.1:8404")
    );
    let kubeconfig = std::fs::read_to_string(lab.kubeconfig()).unwrap();
    assert!(
        kubeconfig.contains(&format!("server: https://127.{o}.0.1:6443")),
        "{kubeconfig}"
    );
    let admin: SocketAddr = format!("127.{o}.0.1:8404").parse().unwrap();
    assert_eq!(
        states(admin),
        (1..=3)
            .map(|i| (format!("apiserver-{i}"), "up".to_owned()))
            .collect::<Vec<_>>()
    );
    let pods = lab.kubectl(&["get", "pods", "-o", "name"]);
    assert!(pods.contains("pod/web-1"), "{pods}");
    // The balancer recorded kubectl's connection, passed through to an apiserver.
    let hops = http_get_blocking(admin, "/debug/hops").body;
    assert!(
        hops.contains("\"proxy\":\"ha-balancer\"") && hops.contains("\"endpoint\":\"apiserver-"),
        "{hops}"
    );

    // Stop apiserver-1 and -3: every watch of the lab's components (forwarders, nodes) is cut and
    // resumes on apiserver-2, the only one left.
    for name in ["apiserver-1", "apiserver-3"] {
        let (code, out, err) = drill(&lab, "stop", name);
        assert_eq!(
            (code, out.as_str()),
            (0, &*format!("{name} stopped")),
            "{err}"
        );
    }
    lab.eventually("apiserver-1 and -3 marked down", || {
        state_of(admin, "apiserver-1") == "down" && state_of(admin, "apiserver-3") == "down"
    });
    assert!(TcpStream::connect(format!("127.{o}.10.1:6443")).is_err());
    lab.kubectl(&["get", "pods"]);
    for name in ["apiserver-1", "apiserver-3"] {
        let (code, out, err) = drill(&lab, "start", name);
        assert_eq!(
            (code, out.as_str()),
            (0, &*format!("{name} running")),
            "{err}"
        );
    }
    lab.eventually("apiserver-1 and -3 back up", || {
        state_of(admin, "apiserver-1") == "up" && state_of(admin, "apiserver-3") == "up"
    });

    // Now stop apiserver-2, where those watches are.
    let (code, out, err) = drill(&lab, "stop", "apiserver-2");
    assert_eq!((code, out.as_str()), (0, "apiserver-2 stopped"), "{err}");
    let (code, _, err) = drill(&lab, "stop", "apiserver-2");
    assert_eq!(code, 1);
    assert!(err.contains("already stopped"), "{err}");
    let (code, _, err) = drill(&lab, "stop", "apiserver-9");
    assert_eq!(code, 1);
    assert!(
        err.contains("known: apiserver-1, apiserver-2, apiserver-3"),
        "{err}"
    );
    // kubectl keeps working at once: a connect to the stopped apiserver is retried on another.
    for _ in 0..6 {
        lab.kubectl(&["get", "pods", "-o", "name"]);
    }
    lab.eventually("apiserver-2 marked down", || {
        state_of(admin, "apiserver-2") == "down"
    });
    // The forwarders' watches resumed on another apiserver: a new Service gets its ClusterIP
    // listener.
    lab.kubectl(&[
        "create",
        "service",
        "clusterip",
        "after-failover",
        "--tcp=80:8080",
    ]);
    let ip = lab.kubectl(&[
        "get",
        "service",
        "after-failover",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let service: SocketAddr = format!("{}:80", ip.trim()).parse().unwrap();
    lab.eventually("the forwarders serve the new ClusterIP", || {
        TcpStream::connect(service).is_ok()
    });

    // Started again, it comes back up.
    let (code, out, err) = drill(&lab, "start", "apiserver-2");
    assert_eq!((code, out.as_str()), (0, "apiserver-2 running"), "{err}");
    lab.eventually("apiserver-2 back up", || {
        state_of(admin, "apiserver-2") == "up"
    });
    // The lab's long-lived connections (nodes' and forwarders' watches, the auth-proxy's pool) all
    // went to apiserver-1 and -3; the balancer moves some back, oldest first.
    lab.eventually("connections moved back to apiserver-2", || {
        let r = http_get_blocking(admin, "/stats?format=json");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        let metrics = http_get_blocking(admin, "/metrics").body;
        v["backends"][1]["activeConnections"].as_u64() > Some(0)
            && metrics.contains("proxylab_ha_connections_rebalanced_total{backend=\"apiserver-")
    });
    let components =
        http_get_blocking(format!("127.{o}.0.1:8400").parse().unwrap(), "/components").body;
    assert!(
        components.contains("\"apiserver-2\":{\"running\":true}"),
        "{components}"
    );
}

#[test]
fn a_drill_without_a_lab_says_so_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["lab", "stop", "apiserver-2", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no lab is running in"), "{err}");
}
