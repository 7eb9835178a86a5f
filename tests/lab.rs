//! `lab up` as a whole: `lab.json` describes a lab that really answers — services through the
//! forwarders, UDP included — and SIGTERM stops it cleanly.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use proxylab_test_support::http::http_get_blocking;
use proxylab_test_support::lab::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");
use serde_json::Value;

fn service<'a>(info: &'a Value, name: &str) -> &'a Value {
    info["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("service {name} missing from lab.json: {info}"))
}

/// The whole answer (head and body) to a GET.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let r = http_get_blocking(addr, path);
    format!("{}\r\n\r\n{}", r.head, r.body)
}

#[test]
fn lab_json_describes_a_lab_that_answers_and_sigterm_stops_it() {
    let mut lab = Lab::start(BIN);
    let info = lab.info.clone();
    let o = lab.octet;

    assert!(lab.kubeconfig().is_file());
    assert_eq!(info["token"].as_str().map(str::len), Some(32));
    assert_eq!(info["authProxy"], format!("http://127.{o}.0.1:8001"));
    let apiservers: Vec<&str> = info["apiservers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        apiservers,
        (1..=3)
            .map(|i| format!("https://127.{o}.10.{i}:6443"))
            .collect::<Vec<_>>()
    );
    assert_eq!(info["nodes"][1]["name"], "node-2");
    assert_eq!(info["nodes"][1]["address"], format!("127.{o}.20.2"));

    // TCP through the forwarders: the ClusterIP of `web`, spread over the three echo pods.
    let web = service(&info, "web");
    assert_eq!(web["type"], "ClusterIP");
    assert_eq!(web["ports"][0]["name"], "http");
    assert_eq!(web["ports"][0]["nodePort"], Value::Null);
    let ip: std::net::IpAddr = web["clusterIP"].as_str().unwrap().parse().unwrap();
    assert!(ip.to_string().starts_with(&format!("127.{o}.40.")));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let resp = http_get(SocketAddr::new(ip, 80), "/hostname");
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        seen.insert(resp.rsplit("\r\n\r\n").next().unwrap().trim().to_string());
    }
    assert!(seen.len() >= 2, "round-robin reached only {seen:?}");

    // Hops stitch: the echo pod saw the forwarder's upstream local address as its client, and one of
    // the forwarders recorded exactly that address for this connection.
    let resp = http_get(SocketAddr::new(ip, 80), "/");
    let body: Value = serde_json::from_str(resp.rsplit("\r\n\r\n").next().unwrap()).unwrap();
    let seen_by_pod = body["clientAddress"].as_str().unwrap().to_string();
    let hop = lab.eventually("the forwarder's hop record", || {
        info["admin"]["forwarders"]
            .as_object()?
            .values()
            .find_map(|admin| {
                let url: SocketAddr = admin.as_str()?.trim_start_matches("http://").parse().ok()?;
                let text = http_get(url, "/debug/hops");
                let hops: Value = serde_json::from_str(text.rsplit("\r\n\r\n").next()?).ok()?;
                hops.as_array()?
                    .iter()
                    .find(|h| h["upstreamLocal"] == seen_by_pod.as_str())
                    .cloned()
            })
    });
    assert_eq!(hop["proxy"], "forwarder");
    assert_eq!(hop["listener"], format!("{ip}:80"));
    assert_eq!(hop["target"], "default/web:http");

    // The auth-proxy records its hops too.
    let auth: SocketAddr = format!("127.{o}.0.1:8001").parse().unwrap();
    assert!(
        http_get(auth, "/api/").starts_with("HTTP/1.1 403"),
        "Host `lab` is not an accepted host"
    );
    let admin: SocketAddr = info["admin"]["authProxy"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let hops = lab.eventually("the auth-proxy's hop record", || {
        let text = http_get(admin, "/debug/hops");
        text.contains("\"proxy\":\"auth-proxy\"").then_some(text)
    });
    assert!(hops.contains("\"status\":403"), "{hops}");

    // NodePort of the LoadBalancer service, on a node address.
    let lb = service(&info, "web-lb");
    let node_port = lb["ports"][0]["nodePort"].as_u64().expect("nodePort") as u16;
    let node_addr: std::net::IpAddr = format!("127.{o}.20.2").parse().unwrap();
    let resp = http_get(SocketAddr::new(node_addr, node_port), "/hostname");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    // UDP through the forwarders: the echo pods answer `whoami` with their name.
    let udp = service(&info, "udp-echo");
    assert_eq!(udp["ports"][0]["protocol"], "UDP");
    let uip: std::net::IpAddr = udp["clusterIP"].as_str().unwrap().parse().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let target = SocketAddr::new(uip, 53);
    let mut answer = None;
    for _ in 0..10 {
        sock.send_to(b"whoami", target).unwrap();
        let mut buf = [0u8; 512];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            answer = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            break;
        }
    }
    let answer = answer.expect("no UDP answer through the forwarder");
    assert!(answer.contains("pod=udp-echo-"), "{answer}");

    // SIGTERM: the lab drains, removes lab.json and exits 0.
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(lab.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = lab.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "lab did not stop within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        exit.success(),
        "lab exited with {exit}; log:\n{}",
        lab.log()
    );
    assert!(!lab.state_dir().join("lab.json").exists());
    assert!(TcpStream::connect_timeout(&SocketAddr::new(ip, 80), Duration::from_secs(1)).is_err());
}

/// Connects from `from` (any loopback address) and sends one HTTP GET: the answer's body.
fn get_from(from: &str, to: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
        s.connect(to).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    let mut stream = stream;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out.rsplit("\r\n\r\n").next().unwrap().trim().to_string()
}

/// The recent hops of a forwarder (`?probes=true`: the lab prober's too).
fn forwarder_hops(info: &Value, node: &str, query: &str) -> Vec<Value> {
    let url: SocketAddr = info["admin"]["forwarders"][node]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let text = http_get(url, &format!("/debug/hops{query}"));
    serde_json::from_str::<Value>(text.rsplit("\r\n\r\n").next().unwrap())
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// One forwarder per client, as on a real node: `web-sticky` (sessionAffinity: ClientIP) answers a
/// client from one pod across many connections; the client's node's forwarder serves it (a pod of
/// node-2 → node-2's; anyone else → node-1's) and dials the pod from its node's address; the
/// prober's readiness connections are marked as probes; and no other process can bind a ClusterIP.
#[test]
fn one_forwarder_per_client_so_affinity_holds_and_service_addresses_are_the_labs() {
    let lab = Lab::start(BIN);
    let info = lab.info.clone();
    let o = lab.octet;
    let sticky = service(&info, "web-sticky");
    let ip: std::net::IpAddr = sticky["clusterIP"].as_str().unwrap().parse().unwrap();
    let addr = SocketAddr::new(ip, 80);
    let node2_pod = format!("127.{o}.30.200");
    for client in ["127.0.0.1", node2_pod.as_str()] {
        let first = get_from(client, addr, "/hostname");
        assert!(first.starts_with("web-"), "{first}");
        for _ in 0..15 {
            assert_eq!(
                get_from(client, addr, "/hostname"),
                first,
                "client {client}"
            );
        }
    }
    // Who served whom, and from which address it dialled the pod.
    for (node, client, other) in [
        ("node-1", "127.0.0.1", "node-2"),
        ("node-2", node2_pod.as_str(), "node-1"),
    ] {
        let of = |n: &str| -> Vec<Value> {
            forwarder_hops(&info, n, "")
                .into_iter()
                .filter(|h| {
                    h["target"] == "default/web-sticky:http"
                        && h["client"]
                            .as_str()
                            .unwrap()
                            .starts_with(&format!("{client}:"))
                })
                .collect()
        };
        let mine = lab.eventually("the hop records", || {
            let v = of(node);
            (v.len() == 16).then_some(v)
        });
        assert!(of(other).is_empty(), "{client} reached {other}");
        let node_addr = format!("127.{o}.20.{}", &node[5..]);
        for h in mine {
            let local = h["upstreamLocal"].as_str().unwrap();
            assert!(local.starts_with(&format!("{node_addr}:")), "{h}");
        }
    }
    // The readiness prober's connections are kept out of /debug/hops, and shown when asked for.
    let prober = |h: &Value| h["client"].as_str().unwrap().starts_with("127.0.0.254:");
    assert!(!forwarder_hops(&info, "node-1", "").iter().any(prober));
    let probes: Vec<Value> = forwarder_hops(&info, "node-1", "?probes=true")
        .into_iter()
        .filter(prober)
        .collect();
    assert!(!probes.is_empty());
    assert!(probes.iter().all(|h| h["probe"] == true), "{probes:?}");

    // Nobody else can bind a lab ClusterIP, even asking to share it.
    let intruder = tokio::net::TcpSocket::new_v4().unwrap();
    intruder.set_reuseaddr(true).unwrap();
    intruder.set_reuseport(true).unwrap();
    let err = intruder.bind(addr).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    let udp = service(&info, "udp-echo");
    let uip: std::net::IpAddr = udp["clusterIP"].as_str().unwrap().parse().unwrap();
    let err = UdpSocket::bind(SocketAddr::new(uip, 53)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
}
