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

/// The default topology with `from` replaced by `to`, written to a file; and the 1-based line of
/// `to` in it.
fn bad_topology(dir: &std::path::Path, from: &str, to: &str) -> (String, usize) {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/lab/topology.yaml")).unwrap();
    let at = text.find(from).unwrap_or_else(|| panic!("{from}"));
    let line = text[..at].matches('\n').count() + 1;
    let text = text.replacen(from, to, 1);
    let file = dir.join("bad.yaml");
    std::fs::write(&file, text).unwrap();
    (file.to_str().unwrap().to_owned(), line)
}

#[test]
fn a_bad_topology_is_one_line_naming_file_line_and_field_before_anything_binds() {
    let cases = [
        (
            "address: 127.0.20.2",
            "address: 127.0.20.300",
            "Lab default: spec.nodes[1].address: invalid IP address \"127.0.20.300\"",
        ),
        (
            "serviceClusterIPRange: 127.0.40.0/24",
            "serviceClusterIPRange: 10.96.0.0/12",
            "Lab default: spec.serviceClusterIPRange: 10.96.0.0/12 is outside 127.0.0.0/8",
        ),
        (
            "podCIDR: 127.0.30.128/25",
            "podCidr: 127.0.30.128/25",
            "Lab default: spec.nodes[1].podCidr: unknown field \"podCidr\"",
        ),
        (
            "authProxy: 127.0.0.1:8001",
            "authProxy: 127.0.0.1:80800",
            "Lab default: spec.authProxy: invalid address \"127.0.0.1:80800\"",
        ),
        (
            "name: node-2",
            "name: node-1",
            "Lab default: spec.nodes[1].name: duplicate node name \"node-1\"",
        ),
        (
            "name: web-2",
            "name: web-1",
            "Pod default/web-1: metadata.name: Pod \"web-1\" appears twice",
        ),
        (
            "image: proxylab/echo-udp:1",
            "image: \"\"",
            "Pod default/udp-echo-1: spec.containers[0].image: Required value",
        ),
    ];
    for (from, to, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (path, line) = bad_topology(dir.path(), from, to);
        let state = dir.path().join("s");
        for cmd in [
            vec!["lab", "check", "--topology", &path],
            vec![
                "lab",
                "up",
                "--topology",
                &path,
                "--state-dir",
                state.to_str().unwrap(),
            ],
        ] {
            let (code, stdout, stderr) = proxylab(&cmd);
            assert_eq!(code, 2, "{cmd:?}: {stdout}{stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            let prefix = format!("{path}:{line}: {want}");
            assert!(
                lines.len() == 1 && lines[0].starts_with(&prefix),
                "{cmd:?}:\n got {stderr}\nwant {prefix}"
            );
        }
        assert!(
            !state.exists(),
            "lab up touched its state dir for a bad topology"
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

#[test]
fn pki_if_missing_keeps_an_existing_ca_and_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let kubeconfig = dir.path().join("kubeconfig");
    let run = || {
        proxylab(&[
            "pki",
            "--if-missing",
            "--dir",
            pki.to_str().unwrap(),
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--server",
            "https://ha-balancer:6443",
        ])
    };
    let (code, stdout, stderr) = run();
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("wrote the lab PKI"), "{stdout}");
    let ca = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    let config = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        config.contains("server: https://ha-balancer:6443"),
        "{config}"
    );

    // A second run (the next `up`) keeps both; without --if-missing a new CA is written.
    let (code, stdout, stderr) = run();
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("kept the lab PKI"), "{stdout}");
    assert_eq!(std::fs::read_to_string(pki.join("ca.crt")).unwrap(), ca);
    assert_eq!(std::fs::read_to_string(&kubeconfig).unwrap(), config);
    let (code, _, stderr) = proxylab(&["pki", "--dir", pki.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_ne!(std::fs::read_to_string(pki.join("ca.crt")).unwrap(), ca);
}
