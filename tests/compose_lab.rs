//! The compose lab end to end (docker-compose.yml, docs/compose.md): builds the images with
//! `scripts/build-images.sh` (debug binaries, tag `e2e`), brings the lab up under a project name
//! and an address prefix of its own, sends kubectl and curl through each of the five proxy types
//! from the client container and from the host, runs the failure drills, and tears everything
//! down (containers, networks, volumes) in a Drop guard.
//!
//! Needs a reachable Docker engine and docker-compose (v1) or `docker compose` (v2). Without
//! them the test is skipped with a printed reason — except under `CI`, where it fails.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use proxylab_test_support::{require, require_tool, wait_until};

/// Long enough for a busy two-core machine to start or stop a container and for the lab's
/// controllers to notice (node grace period 10 s, balancer checks every 1 s).
const DEADLINE: Duration = Duration::from_secs(90);
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Projects this test creates are named `proxylab-e2e-<pid>`.
const PROJECT_PREFIX: &str = "proxylab-e2e-";

/// How this machine spells compose: `docker-compose` (v1) or `docker compose` (v2).
fn compose_command() -> Option<Vec<String>> {
    let works = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works(Command::new("docker-compose").arg("version")) {
        Some(vec!["docker-compose".into()])
    } else if works(Command::new("docker").args(["compose", "version"])) {
        Some(vec!["docker".into(), "compose".into()])
    } else {
        None
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        text(&out)
    );
    text(&out)
}

/// A compose project of this test; `down -v` when dropped, however the test ends.
struct ComposeLab {
    compose: Vec<String>,
    project: String,
    /// The first two octets of every lab address (PROXYLAB_SUBNET).
    subnet: String,
}

impl ComposeLab {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.compose[0]);
        c.args(&self.compose[1..])
            .args(["-p", &self.project, "-f"])
            .arg(Path::new(ROOT).join("docker-compose.yml"))
            .current_dir(ROOT)
            .env("PROXYLAB_SUBNET", &self.subnet)
            .env("PROXYLAB_TAG", "e2e")
            // Published ports: any free ones, so a lab a person runs keeps 16443, 18001, 18080.
            .env("PROXYLAB_HA_PORT", "0")
            .env("PROXYLAB_AUTH_PROXY_PORT", "0")
            .env("PROXYLAB_LB_PORT", "0");
        c
    }

    fn compose(&self, args: &[&str]) -> String {
        run_ok(self.cmd().args(args))
    }

    /// `exec -T SERVICE ARGS…`, its output whatever the exit code.
    fn exec(&self, service: &str, args: &[&str]) -> Output {
        self.cmd()
            .args(["exec", "-T", service])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn compose exec")
    }

    /// `exec` that must succeed; its stdout.
    fn exec_ok(&self, service: &str, args: &[&str]) -> String {
        let out = self.exec(service, args);
        assert!(
            out.status.success(),
            "{service}: {args:?}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            text(&out),
            self.logs()
        );
        text(&out)
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["kubectl"];
        all.extend_from_slice(args);
        self.exec_ok("client", &all)
    }

    /// The container id of a service.
    fn container(&self, service: &str) -> String {
        self.compose(&["ps", "-q", service])
    }

    fn network(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }

    /// `127.0.0.1:PORT` docker published for a service's container port.
    fn published(&self, service: &str, port: u16) -> String {
        self.compose(&["port", service, &port.to_string()])
    }

    fn logs(&self) -> String {
        let out = self
            .cmd()
            .args(["logs", "--no-color", "--tail=30"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        format!("--- compose logs (last 30 lines each) ---\n{out}")
    }

    /// Waits until every long-running service's container reports `healthy`.
    fn wait_healthy(&self, what: &str) {
        let services = [
            "etcd",
            "apiserver-1",
            "apiserver-2",
            "apiserver-3",
            "ha-balancer",
            "auth-proxy",
            "cloud-lb",
            "node-1",
            "node-2",
            "client",
        ];
        let ids: Vec<String> = services.iter().map(|s| self.container(s)).collect();
        let healthy = wait_until(DEADLINE, || {
            ids.iter().all(|id| {
                Command::new("docker")
                    .args(["inspect", "-f", "{{.State.Health.Status}}", id])
                    .output()
                    .is_ok_and(|o| text(&o) == "healthy")
            })
        });
        assert!(healthy.is_some(), "{what}: not healthy\n{}", self.logs());
    }

    /// Polls `check` until it yields, or fails naming `what` with the lab's logs.
    fn eventually<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> T {
        wait_until(DEADLINE, check)
            .unwrap_or_else(|| panic!("timed out waiting for {what}\n{}", self.logs()))
    }

    /// The balancer's view of one backend: "up" or "down".
    fn backend_state(&self, name: &str) -> Option<String> {
        let out = self.exec(
            "client",
            &["curl", "-sS", "http://ha-balancer:8404/stats?format=json"],
        );
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        stats["backends"]
            .as_array()?
            .iter()
            .find(|b| b["name"] == name)
            .and_then(|b| b["state"].as_str().map(str::to_owned))
    }

    /// GET `url` with curl inside `service` (busybox wget in the nodes, bounded by busybox
    /// timeout: the static busybox's `wget -T` crashes); the body when it answered.
    fn get_in(&self, service: &str, url: &str) -> Option<String> {
        let out = if service == "client" {
            self.exec(service, &["curl", "-sSf", "--max-time", "5", url])
        } else {
            self.exec(service, &["timeout", "5", "wget", "-qO-", url])
        };
        out.status.success().then(|| text(&out))
    }
}

impl Drop for ComposeLab {
    fn drop(&mut self) {
        let _ = self
            .cmd()
            .args(["down", "-v", "--remove-orphans", "-t", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes what an earlier run left behind when its process was killed before its Drop ran (a
/// nextest timeout kills the process): projects named `proxylab-e2e-PID` whose PID is gone.
fn remove_stale_projects(compose: &[String]) {
    let Ok(out) = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--format",
            "{{.Label \"com.docker.compose.project\"}}",
        ])
        .output()
    else {
        return;
    };
    let projects: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|p| p.starts_with(PROJECT_PREFIX))
        .map(str::to_owned)
        .collect();
    for project in projects {
        let pid = &project[PROJECT_PREFIX.len()..];
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        eprintln!("removing the stale compose project {project}");
        let _ = Command::new(&compose[0])
            .args(&compose[1..])
            .args(["-p", &project, "-f"])
            .arg(Path::new(ROOT).join("docker-compose.yml"))
            .args(["down", "-v", "--remove-orphans", "-t", "1"])
            .status();
    }
}

/// A `10.N` prefix no docker network uses (the default lab's 10.213 included).
fn free_subnet() -> String {
    let ids = run_ok(Command::new("docker").args(["network", "ls", "-q"]));
    let mut inspect = Command::new("docker");
    inspect.args([
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
    ]);
    inspect.args(ids.split_whitespace());
    let used = run_ok(&mut inspect);
    (214..=254)
        .map(|n| format!("10.{n}"))
        .find(|p| {
            !used
                .split_whitespace()
                .any(|s| s.starts_with(&format!("{p}.")))
        })
        .expect("a free 10.N prefix for the lab's networks")
}

/// Runs the host's kubectl against the lab with the admin kubeconfig, through the published
/// balancer port.
fn host_kubectl(kubeconfig: &Path, server: &str, args: &[&str]) -> String {
    let mut c = Command::new("kubectl");
    proxylab_test_support::without_proxy_env(&mut c)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap())
        .arg(format!("--server=https://{server}"))
        .args(args);
    run_ok(&mut c)
}

fn host_curl(url: &str) -> Option<String> {
    let mut c = Command::new("curl");
    proxylab_test_support::without_proxy_env(&mut c).args(["-sSf", "--max-time", "5", url]);
    let out = c.output().ok()?;
    out.status.success().then(|| text(&out))
}

/// Pod name → (IP, node) for the web pods.
fn web_pods(lab: &ComposeLab) -> Vec<(String, String, String)> {
    lab.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.spec.nodeName}{\"\\n\"}{end}",
    ])
    .lines()
    .filter_map(|l| {
        let mut f = l.split_whitespace().map(str::to_owned);
        Some((f.next()?, f.next()?, f.next()?))
    })
    .collect()
}

/// The addresses of the `web` Service's ready endpoints.
fn ready_web_endpoints(lab: &ComposeLab) -> BTreeSet<String> {
    lab.kubectl(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]} {end}",
    ])
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

#[test]
fn the_compose_lab_serves_all_five_proxies_and_survives_the_drills() {
    let docker = require_tool("docker");
    if !docker {
        return;
    }
    let engine = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !require("a reachable Docker engine (`docker info`)", engine) {
        return;
    }
    let compose = compose_command();
    if !require("docker-compose or `docker compose`", compose.is_some()) {
        return;
    }
    if !(require_tool("kubectl") && require_tool("curl")) {
        return;
    }
    let compose = compose.unwrap();
    remove_stale_projects(&compose);

    // The images: debug binaries (scripts/test.sh built them), tag e2e so a person's :local
    // images stay as they are.
    run_ok(
        Command::new("bash")
            .arg("scripts/build-images.sh")
            .current_dir(ROOT)
            .env("PROFILE", "debug")
            .env("TAG", "e2e"),
    );

    let lab = ComposeLab {
        compose,
        project: format!("{PROJECT_PREFIX}{}", std::process::id()),
        subnet: free_subnet(),
    };
    let s = lab.subnet.clone();
    lab.compose(&["up", "-d"]);
    lab.wait_healthy("after up");

    // --- kubectl through the HA balancer (type 4), from the client container -----------------
    let nodes = lab.kubectl(&["get", "nodes", "-o", "wide", "--no-headers"]);
    assert!(
        nodes.contains("node-1") && nodes.contains("node-2"),
        "{nodes}"
    );
    let pods = lab.eventually("the web pods running on both nodes", || {
        let pods = web_pods(&lab);
        let nodes: BTreeSet<&str> = pods.iter().map(|p| p.2.as_str()).collect();
        (pods.len() == 3 && nodes.len() == 2 && pods.iter().all(|p| !p.1.is_empty()))
            .then_some(pods)
    });
    for (name, ip, node) in &pods {
        // Pods get addresses of their node's range in the nodes network (not loopback).
        let range = if node == "node-1" { 128..192 } else { 192..256 };
        let last: u16 = ip
            .strip_prefix(&format!("{s}.20."))
            .and_then(|o| o.parse().ok())
            .unwrap_or_else(|| panic!("{name} has {ip}, outside {s}.20.0/24"));
        assert!(range.contains(&last), "{name} on {node} has {ip}");
    }
    let on = |node: &str| -> BTreeSet<String> {
        pods.iter()
            .filter(|p| p.2 == node)
            .map(|p| p.0.clone())
            .collect()
    };
    let all_web: BTreeSet<String> = pods.iter().map(|p| p.0.clone()).collect();

    // --- the auth-proxy (type 1) -------------------------------------------------------------
    let listed = lab.eventually("the auth-proxy listing pods", || {
        lab.get_in(
            "client",
            "http://auth-proxy:8001/api/v1/namespaces/default/pods",
        )
    });
    assert!(listed.contains("\"web-1\""), "{listed}");

    // --- the apiserver proxy (type 2): a pod on each node, and a Service ---------------------
    for (name, _, _) in &pods {
        let path = format!("/api/v1/namespaces/default/pods/{name}:8080/proxy/hostname");
        assert_eq!(&lab.kubectl(&["get", "--raw", &path]), name);
    }
    let via_service = lab.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:http/proxy/hostname",
    ]);
    assert!(all_web.contains(&via_service), "{via_service}");

    // --- the forwarder (type 3): the ClusterIP inside node-1 reaches every pod, node-2's too --
    let cluster_ip = lab.kubectl(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(cluster_ip.starts_with(&format!("{s}.40.")), "{cluster_ip}");
    let mut seen = BTreeSet::new();
    lab.eventually("node-1's forwarder reaching all three web pods", || {
        seen.extend(lab.get_in("node-1", &format!("http://{cluster_ip}/hostname")));
        (seen == all_web).then_some(())
    });
    let node_port = lab.kubectl(&[
        "get",
        "service",
        "web-lb",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let via_node_port = lab.eventually("node-1's NodePort answering node-2", || {
        lab.get_in("node-2", &format!("http://{s}.20.21:{node_port}/hostname"))
    });
    assert!(all_web.contains(&via_node_port), "{via_node_port}");

    // --- cloud-lb (type 5): the LoadBalancer IP from the client network ----------------------
    let lb_ip = lab.eventually("web-lb's LoadBalancer IP", || {
        let ip = lab.kubectl(&[
            "get",
            "service",
            "web-lb",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        (!ip.is_empty()).then_some(ip)
    });
    assert_eq!(lb_ip, format!("{s}.1.6"));
    let lb_url = format!("http://{lb_ip}/hostname");
    let answer = lab.eventually("web-lb answering the client", || {
        lab.get_in("client", &lb_url)
    });
    assert!(all_web.contains(&answer), "{answer}");

    // --- from the host: the published balancer, auth-proxy and cloud-lb ports ----------------
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        lab.exec_ok("client", &["cat", "/pki/kubeconfig"]),
    )
    .unwrap();
    let ha = lab.published("ha-balancer", 6443);
    let host_pods = host_kubectl(&kubeconfig, &ha, &["get", "pods", "-o", "name"]);
    assert!(host_pods.contains("pod/web-1"), "{host_pods}");
    let auth = lab.published("auth-proxy", 8001);
    let (name, _, _) = &pods[0];
    assert_eq!(
        host_curl(&format!(
            "http://{auth}/api/v1/namespaces/default/pods/{name}/proxy/hostname"
        ))
        .as_deref(),
        Some(name.as_str())
    );
    let lb = lab.published("cloud-lb", 80);
    let answer = lab.eventually("web-lb through the published port", || {
        host_curl(&format!("http://{lb}/hostname"))
    });
    assert!(all_web.contains(&answer), "{answer}");

    // A ConfigMap and the pods' identities, to compare after the whole lab restarts.
    lab.kubectl(&["create", "configmap", "survivor", "--from-literal=k=v"]);
    let uid_before = lab.kubectl(&[
        "get",
        "configmap",
        "survivor",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);

    // --- drill: stop apiserver-2; the balancer takes it out and kubectl keeps working -------
    lab.compose(&["stop", "-t", "1", "apiserver-2"]);
    lab.eventually("the balancer marking apiserver-2 down", || {
        (lab.backend_state("apiserver-2").as_deref() == Some("down")).then_some(())
    });
    for i in 0..10 {
        lab.kubectl(&["get", "configmap", "survivor", "-o", "name"]);
        lab.kubectl(&[
            "label",
            "configmap",
            "survivor",
            &format!("round={i}"),
            "--overwrite",
        ]);
    }
    lab.compose(&["start", "apiserver-2"]);
    lab.eventually("the balancer taking apiserver-2 back", || {
        (lab.backend_state("apiserver-2").as_deref() == Some("up")).then_some(())
    });

    // --- drill: cut the control network between the balancer and apiserver-3 -----------------
    let apiserver_3 = lab.container("apiserver-3");
    let control = lab.network("control");
    run_ok(Command::new("docker").args(["network", "disconnect", "-f", &control, &apiserver_3]));
    lab.eventually("the balancer marking the cut-off apiserver-3 down", || {
        (lab.backend_state("apiserver-3").as_deref() == Some("down")).then_some(())
    });
    for _ in 0..10 {
        lab.kubectl(&["get", "pods", "-o", "name"]);
    }
    run_ok(Command::new("docker").args([
        "network",
        "connect",
        "--ip",
        &format!("{s}.10.13"),
        &control,
        &apiserver_3,
    ]));
    lab.eventually("the balancer taking apiserver-3 back", || {
        (lab.backend_state("apiserver-3").as_deref() == Some("up")).then_some(())
    });

    // --- drill: kill node-1; its pods leave the endpoints, node-2 keeps answering -----------
    let node_2_ips: BTreeSet<String> = pods
        .iter()
        .filter(|p| p.2 == "node-2")
        .map(|p| p.1.clone())
        .collect();
    lab.compose(&["kill", "node-1"]);
    lab.eventually("node-1's pods leaving web's ready endpoints", || {
        (ready_web_endpoints(&lab) == node_2_ips).then_some(())
    });
    // cloud-lb's node health check takes node-1 out: then every answer comes from node-2.
    lab.eventually(
        "web-lb answering only from node-2's pods, 6 times in a row",
        || {
            (0..6)
                .all(|_| {
                    lab.get_in("client", &lb_url)
                        .is_some_and(|a| on("node-2").contains(&a))
                })
                .then_some(())
        },
    );
    for _ in 0..10 {
        let a = lab
            .get_in("client", &lb_url)
            .expect("web-lb with node-1 dead");
        assert!(on("node-2").contains(&a), "{a} answered, node-1 is dead");
        let a = lab
            .get_in("node-2", &format!("http://{cluster_ip}/hostname"))
            .expect("the ClusterIP on node-2 with node-1 dead");
        assert!(on("node-2").contains(&a), "{a} answered, node-1 is dead");
    }
    lab.compose(&["start", "node-1"]);
    lab.eventually("node-1 Ready again", || {
        (lab.kubectl(&[
            "get",
            "node",
            "node-1",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]) == "True")
            .then_some(())
    });
    // Its pods rejoin web's ready endpoints: the node agent reports a running pod ready again
    // when the node lifecycle controller's Ready=False lands after the node came back (a kubelet's
    // status manager), and they run again at their old addresses (the apiserver proxy reaches them).
    let all_ips: BTreeSet<String> = pods.iter().map(|p| p.1.clone()).collect();
    lab.eventually("node-1's pods back in web's ready endpoints", || {
        (ready_web_endpoints(&lab) == all_ips).then_some(())
    });
    for name in on("node-1") {
        let path = format!("/api/v1/namespaces/default/pods/{name}:8080/proxy/hostname");
        lab.eventually(&format!("{name} answering after node-1 restarted"), || {
            let out = lab.exec("client", &["kubectl", "get", "--raw", &path]);
            (text(&out) == name).then_some(())
        });
    }

    // --- drill: restart the whole lab; addresses and objects stay -----------------------------
    let address_of = |service: &str| {
        run_ok(Command::new("docker").args([
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}",
            &lab.container(service),
        ]))
    };
    let services = [
        "etcd",
        "apiserver-1",
        "ha-balancer",
        "cloud-lb",
        "node-1",
        "node-2",
        "client",
    ];
    let addresses_before: Vec<String> = services.iter().map(|s| address_of(s)).collect();
    lab.compose(&["restart", "-t", "1"]);
    lab.wait_healthy("after restart");
    let addresses_after: Vec<String> = services.iter().map(|s| address_of(s)).collect();
    assert_eq!(addresses_before, addresses_after);
    let uid_after = lab.kubectl(&[
        "get",
        "configmap",
        "survivor",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    assert_eq!(uid_before, uid_after, "the ConfigMap did not survive");
    lab.eventually("the web pods running with their old addresses", || {
        let now = web_pods(&lab);
        (now == pods).then_some(())
    });
    for (name, _, _) in &pods {
        let path = format!("/api/v1/namespaces/default/pods/{name}:8080/proxy/hostname");
        lab.eventually(&format!("{name} answering after the restart"), || {
            let out = lab.exec("client", &["kubectl", "get", "--raw", &path]);
            (&text(&out) == name).then_some(())
        });
    }
    drop(lab);
}
