//! The `cloud-lb` binary's contract for mistakes: one line naming what is wrong, exit 2.

use std::process::Command;

use proxylab_test_support::expect_one_line_exit_2;

const BIN: &str = env!("CARGO_BIN_EXE_cloud-lb");

#[test]
fn bad_flags_and_files_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let line = expect_one_line_exit_2(Command::new(BIN).args(["--pool", "blue=10.0.0.9-10.0.0.1"]));
    assert!(line.contains("ends before it starts"), "{line}");
    let line = expect_one_line_exit_2(Command::new(BIN).args([
        "--pool",
        "a=127.0.50.0/24",
        "--pool",
        "b=127.0.50.9",
    ]));
    assert_eq!(
        line,
        "cloud-lb: --pool: pools \"a\" and \"b\" overlap at 127.0.50.9"
    );
    let line = expect_one_line_exit_2(Command::new(BIN).args(["--health-interval", "soon"]));
    assert!(line.contains("--health-interval"), "{line}");
    let missing = dir.path().join("nope.yaml");
    let line = expect_one_line_exit_2(
        Command::new(BIN)
            .arg("--kubeconfig")
            .arg(&missing)
            .args(["--admin", ""]),
    );
    assert!(line.contains("nope.yaml"), "{line}");
    // A kubeconfig that loads, and a state file that does not.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n\
         users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n\
         current-context: x\n",
    )
    .unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, "{\"version\": 9, \"allocations\": []}").unwrap();
    let line = expect_one_line_exit_2(
        Command::new(BIN)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--state-file")
            .arg(&state)
            .args(["--admin", ""]),
    );
    assert!(
        line.starts_with(&format!(
            "cloud-lb: state file {}: version 9",
            state.display()
        )),
        "{line}"
    );
}
