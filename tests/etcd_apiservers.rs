//! Two `proxylab apiserver` processes on one real etcd (`--etcd-servers`), driven with `kubectl`:
//! a write through one is seen by a watch on the other, both serve the same objects at the same
//! resourceVersions, and a stale write through one is refused because of a write through the other
//! (compare-and-swap on etcd's revision, across processes).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use proxylab_test_support::{PATIENCE, etcd, wait_until};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn two_apiservers_on_one_etcd_serve_one_cluster() {
    if !proxylab_test_support::require_tool("kubectl") {
        return;
    }
    let Some(etcd) = etcd::start() else { return };
    let (octet, _lock) = proxylab_test_support::lab::reserve_octet();
    let dir = tempfile::tempdir().unwrap();
    let addrs = [format!("127.{octet}.10.1"), format!("127.{octet}.10.2")];
    // kubectl sends credentials over TLS only: a PKI covering both addresses, an admin kubeconfig.
    let pki = dir.path().join("pki");
    let kubeconfig = dir.path().join("kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_proxylab"))
        .arg("pki")
        .arg(format!("--dir={}", pki.display()))
        .args(["--apiserver-ip", &addrs[0], "--apiserver-ip", &addrs[1]])
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--server=https://{}:6443", addrs[0]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = |f: &str| pki.join(f).display().to_string();
    let log = |i: usize| dir.path().join(format!("apiserver-{i}.log"));
    let _apiservers: Vec<Killed> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            Killed(
                Command::new(env!("CARGO_BIN_EXE_proxylab"))
                    .args(["apiserver", "--bind-address", a, "--secure-port", "6443"])
                    .arg(format!("--tls-cert-file={}", p("apiserver.crt")))
                    .arg(format!("--tls-private-key-file={}", p("apiserver.key")))
                    .arg(format!("--client-ca-file={}", p("ca.crt")))
                    .arg(format!("--service-cluster-ip-range=127.{octet}.40.0/24"))
                    .args(["--etcd-servers", &etcd.url])
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(log(i)).unwrap())
                    .spawn()
                    .expect("spawn proxylab apiserver"),
            )
        })
        .collect();
    let logs = || {
        format!(
            "apiserver-0:\n{}\napiserver-1:\n{}\netcd:\n{}",
            std::fs::read_to_string(log(0)).unwrap_or_default(),
            std::fs::read_to_string(log(1)).unwrap_or_default(),
            etcd.log()
        )
    };
    let kubectl = |i: usize| {
        let mut c = Command::new("kubectl");
        proxylab_test_support::without_proxy_env(&mut c)
            .env("HOME", dir.path())
            .env("KUBECONFIG", &kubeconfig)
            .arg(format!("--server=https://{}:6443", addrs[i]));
        c
    };
    for i in 0..2 {
        let ready = wait_until(PATIENCE, || {
            kubectl(i)
                .args(["get", "--raw", "/readyz"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(ready.is_some(), "apiserver-{i} never ready\n{}", logs());
    }
    let run = |i: usize, args: &[&str]| {
        let out = kubectl(i).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?} via apiserver-{i}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            logs()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };

    // A watch on apiserver-1 (`kubectl get -w`), a write through apiserver-0.
    let mut watch = Killed(
        kubectl(1)
            .args(["get", "configmaps", "-w", "-o", "name"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let stdout = watch.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The watch is open once kubectl has listed (nothing yet): wait until the apiserver has it,
    // by writing a first object and waiting for it to show.
    run(0, &["create", "configmap", "first"]);
    let got = rx
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("no watch output\n{}", logs()));
    assert_eq!(got, "configmap/first");
    run(
        0,
        &["create", "configmap", "shared", "--from-literal=k=one"],
    );
    let got = rx
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("watch missed the write\n{}", logs()));
    assert_eq!(got, "configmap/shared");

    // Both serve the same object at the same resourceVersion.
    let jsonpath = "jsonpath={.data.k} {.metadata.resourceVersion}";
    let via0 = run(0, &["get", "configmap", "shared", "-o", jsonpath]);
    assert_eq!(
        run(1, &["get", "configmap", "shared", "-o", jsonpath]),
        via0
    );
    assert!(via0.starts_with("one "), "{via0}");

    // A stale copy read through apiserver-0 loses to a write through apiserver-1.
    let stale = run(0, &["get", "configmap", "shared", "-o", "json"]);
    run(
        1,
        &[
            "patch",
            "configmap",
            "shared",
            "-p",
            r#"{"data":{"k":"two"}}"#,
        ],
    );
    let stale = stale.replace("\"one\"", "\"three\"");
    let mut replace = kubectl(0)
        .args(["replace", "--validate=false", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    replace
        .stdin
        .take()
        .unwrap()
        .write_all(stale.as_bytes())
        .unwrap();
    let out = replace.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a stale replace succeeded");
    assert!(err.contains("the object has been modified"), "{err}");
    assert_eq!(
        run(
            0,
            &["get", "configmap", "shared", "-o", "jsonpath={.data.k}"]
        ),
        "two"
    );

    // The kubernetes Service's endpoints list both apiservers (each one's endpoint reconciler
    // added itself to the same object).
    let eps = run(
        1,
        &[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}",
        ],
    );
    let mut ips: Vec<&str> = eps.split(' ').collect();
    ips.sort();
    assert_eq!(ips, [addrs[0].as_str(), addrs[1].as_str()]);
    drop(watch);
    // Nothing was written twice: one `kubernetes` Service, one ClusterIP allocation.
    assert_eq!(
        run(0, &["get", "services", "-A", "-o", "name"]),
        "service/kubernetes"
    );
}
