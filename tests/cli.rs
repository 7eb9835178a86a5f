//! The `proxylab` binary's handling of bad input: one clear line, exit code 2, no panic.

use std::process::Command;

fn proxylab(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_proxylab"))
        .args(args)
        .output()
        .expect("run proxylab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_builtin_topology_checks_ok() {
    let (code, stdout, _) = proxylab(&["lab", "check"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("ok: 3 apiservers, 2 nodes"), "{stdout}");
}

#[test]
fn a_malformed_topology_is_one_line_naming_file_document_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/lab/topology.yaml"))
        .unwrap()
        .replace("address: 127.0.20.2", "address: 127.0.20.300");
    std::fs::write(&file, text).unwrap();
    let path = file.to_str().unwrap();
    for cmd in [
        vec!["lab", "check", "--topology", path],
        vec![
            "lab",
            "up",
            "--topology",
            path,
            "--state-dir",
            dir.path().join("s").to_str().unwrap(),
        ],
    ] {
        let (code, stdout, stderr) = proxylab(&cmd);
        assert_eq!(code, 2, "{cmd:?}: {stdout}{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines,
            vec![format!(
                "{path}: document 1 (Lab/default): field spec.nodes[1].address: invalid IP address \"127.0.20.300\""
            )],
            "{cmd:?}"
        );
    }
}

#[test]
fn unreadable_and_invalid_yaml_files_are_reported() {
    let (code, _, stderr) = proxylab(&["lab", "check", "--topology", "/nonexistent/t.yaml"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("/nonexistent/t.yaml: cannot read"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, "kind: [unclosed\n").unwrap();
    let (code, _, stderr) = proxylab(&["lab", "check", "--topology", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid YAML"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bad_flags_exit_2() {
    let (code, _, stderr) = proxylab(&["pki", "--node", "node-1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("want NAME=IP"), "{stderr}");
    let (code, _, stderr) = proxylab(&[
        "pki",
        "--kubeconfig",
        "/tmp/never-written",
        "--server",
        "http://127.0.10.1:6443",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("want an https:// URL"), "{stderr}");
    assert!(!std::path::Path::new("/tmp/never-written").exists());
    let (code, _, stderr) = proxylab(&["--log-format", "xml", "lab", "check"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn pki_writes_a_kubeadm_layout() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let (code, stdout, stderr) = proxylab(&[
        "pki",
        "--dir",
        pki.to_str().unwrap(),
        "--apiserver-ip",
        "127.0.10.1",
        "--node",
        "node-1=127.0.20.1",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for f in [
        "ca.crt",
        "ca.key",
        "apiserver.crt",
        "admin.crt",
        "kubelet-node-1.crt",
        "sa.key",
        "sa.pub",
        "front-proxy-ca.crt",
    ] {
        assert!(pki.join(f).is_file(), "{f} missing");
    }
}
