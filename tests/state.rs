//! The state dir is owned: one lab per directory, restarts that keep clients and objects working,
//! `--fresh`, `kill -9`, and runtime failures that name the component and the address.

use std::process::{Command, Stdio};

use proxylab_test_support::lab::{DEFAULT_TOPOLOGY, Lab, reserve_octet};
use proxylab_test_support::require_tool;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");

fn cluster_ip(lab: &Lab, name: &str) -> String {
    lab.kubectl(&["get", "service", name, "-o", "jsonpath={.spec.clusterIP}"])
}

fn status(lab: &Lab) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["lab", "status", "--state-dir"])
        .arg(lab.state_dir())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn read(p: std::path::PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_second_lab_up_on_the_same_state_dir_says_who_holds_it_and_changes_nothing() {
    if !require_tool("kubectl") {
        return;
    }
    let lab = Lab::start(BIN);
    let state = lab.state_dir();
    let before: Vec<Vec<u8>> = ["kubeconfig", "pki/ca.crt", "pki/apiserver.crt", "lab.json"]
        .iter()
        .map(|f| read(state.join(f)))
        .collect();
    let out = lab
        .up_command(&[])
        .env("RUST_LOG", "off")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is in use by another lab"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", lab.child.id())),
        "{stderr}"
    );
    let after: Vec<Vec<u8>> = ["kubeconfig", "pki/ca.crt", "pki/apiserver.crt", "lab.json"]
        .iter()
        .map(|f| read(state.join(f)))
        .collect();
    assert!(before == after, "the second lab up changed the state dir");
    // The running lab is untouched: its kubeconfig still works.
    assert!(lab.kubectl(&["get", "pods"]).contains("web-1"));
    let (code, out) = status(&lab);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["pid"],
        lab.child.id()
    );
}

#[test]
fn a_restart_keeps_the_kubeconfig_the_objects_and_the_cluster_ips_and_fresh_empties_the_store() {
    if !require_tool("kubectl") {
        return;
    }
    let mut lab = Lab::start(BIN);
    // A copy of the kubeconfig as a user would have kept it.
    let old_kubeconfig = lab.dir.path().join("my-kubeconfig");
    std::fs::copy(lab.kubeconfig(), &old_kubeconfig).unwrap();
    lab.kubectl(&["create", "configmap", "kept", "--from-literal=a=b"]);
    let rv_before: u64 = lab
        .kubectl(&[
            "get",
            "configmap",
            "kept",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    let web_ip = cluster_ip(&lab, "web");
    let token = lab.info["token"].clone();

    assert!(lab.stop().success(), "{}", lab.log());
    assert!(!lab.state_dir().join("lab.json").exists());
    let (code, out) = status(&lab);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("no lab is running"), "{out}");

    lab.restart(&[]);
    assert_eq!(lab.info["token"], token, "the admin token is kept");
    let with_old = |lab: &Lab, args: &[&str]| {
        let out = lab
            .kubectl_cmd()
            .env("KUBECONFIG", &old_kubeconfig)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?} with the kubeconfig from before the restart: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        with_old(
            &lab,
            &["get", "configmap", "kept", "-o", "jsonpath={.data.a}"]
        ),
        "b"
    );
    assert_eq!(cluster_ip(&lab, "web"), web_ip, "ClusterIPs survive");
    lab.kubectl(&["create", "configmap", "after", "--from-literal=a=c"]);
    let rv_after: u64 = lab
        .kubectl(&[
            "get",
            "configmap",
            "after",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    assert!(
        rv_after > rv_before,
        "resourceVersions keep increasing: {rv_after} after {rv_before}"
    );
    // The services answer through the forwarders after the restart too.
    let web: std::net::SocketAddr = format!("{web_ip}:80").parse().unwrap();
    let reply = lab.eventually("web through its ClusterIP", || {
        let r = proxylab_test_support::http::http_get_blocking(web, "/hostname");
        (r.status == 200).then_some(r)
    });
    assert!(reply.body.trim().starts_with("web-"), "{reply:?}");

    // --fresh: the objects are gone, the credentials are not.
    assert!(lab.stop().success());
    lab.restart(&["--fresh"]);
    let out = lab
        .kubectl_cmd()
        .env("KUBECONFIG", &old_kubeconfig)
        .args(["get", "configmap", "kept"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "kept survived --fresh");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound")
            || String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(with_old(&lab, &["get", "pods"]).contains("web-1"));
}

#[test]
fn after_kill_9_lab_json_is_known_stale_and_a_restart_keeps_the_last_writes() {
    if !require_tool("kubectl") {
        return;
    }
    let mut lab = Lab::start(BIN);
    lab.kubectl(&["create", "configmap", "last", "--from-literal=k=v"]);
    lab.kill9();
    // The killed lab could not remove its lab.json: status says it is stale.
    assert!(lab.state_dir().join("lab.json").exists());
    let (code, out) = status(&lab);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("stale"), "{out}");

    lab.restart(&[]);
    assert_eq!(
        lab.kubectl(&["get", "configmap", "last", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    assert!(lab.kubectl(&["get", "pods"]).contains("Running"));
}

/// Starts `lab up` on a fresh octet with `occupy` bound first; returns (exit code, stderr).
fn up_with_address_taken(occupy: &str) -> (Option<i32>, String, String) {
    let (octet, _lock) = reserve_octet();
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("topology.yaml");
    std::fs::write(
        &topo,
        DEFAULT_TOPOLOGY.replace("127.0.", &format!("127.{octet}.")),
    )
    .unwrap();
    let addr = occupy.replace("127.0.", &format!("127.{octet}."));
    let _taken = std::net::TcpListener::bind(&addr).unwrap();
    let out = Command::new(BIN)
        .args(["lab", "up", "--exit-when-ready", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--topology")
        .arg(&topo)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        addr,
    )
}

#[test]
fn an_address_in_use_names_the_component_and_the_address_once() {
    for (occupy, component) in [
        ("127.0.0.1:8400", "lab admin endpoint"),
        ("127.0.10.2:6443", "starting the apiservers"),
        ("127.0.0.1:8002", "auth-proxy admin endpoint"),
    ] {
        let (code, stderr, addr) = up_with_address_taken(occupy);
        assert_eq!(code, Some(1), "{occupy}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{occupy}: {stderr}");
        assert!(lines[0].contains(component), "{stderr}");
        assert!(lines[0].contains(&addr), "{stderr}");
        assert_eq!(
            lines[0].matches("Address already in use").count(),
            1,
            "{stderr}"
        );
    }
}
