//! The cloud load balancer (proxy type 5) in the lab, driven with the real `kubectl` and `curl`:
//! EXTERNAL-IPs appear, traffic takes three hops (cloud-lb → a node's NodePort on its forwarder →
//! a pod), an exhausted pool is an Event and not a crash, a Service that stops being a
//! LoadBalancer gives its address back, a restart keeps addresses, UDP and source ranges work, and
//! with PROXY protocol v2 the pod learns the client's address.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use proxylab_test_support::http::http_get_blocking;
use proxylab_test_support::lab::{Lab, curl};
use proxylab_test_support::require_tool;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");

/// `kubectl get svc NAME`'s EXTERNAL-IP column (jsonpath of the first ingress address).
fn external_ip(lab: &Lab, name: &str) -> String {
    lab.kubectl(&[
        "get",
        "svc",
        name,
        "-o",
        "jsonpath={.status.loadBalancer.ingress[0].ip}",
    ])
}

fn wait_external_ip(lab: &Lab, name: &str) -> String {
    lab.eventually(&format!("an EXTERNAL-IP for {name}"), || {
        let ip = external_ip(lab, name);
        (!ip.is_empty()).then_some(ip)
    })
}

fn lb_service(name: &str, extra_spec: &str, ports: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: LoadBalancer\n{extra_spec}  ports:\n{ports}"
    )
}

const WEB_PORT: &str = "    - {name: http, port: 8080, targetPort: http}\n";

fn hops(admin_url: &str) -> Vec<Value> {
    let addr: SocketAddr = admin_url.trim_start_matches("http://").parse().unwrap();
    let r = http_get_blocking(addr, "/debug/hops");
    serde_json::from_str::<Value>(&r.body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn external_ip_three_hops_udp_and_source_ranges() {
    if !require_tool("kubectl") || !require_tool("curl") {
        return;
    }
    let lab = Lab::start(BIN);
    let o = lab.octet;
    let info = lab.info.clone();

    // The topology's web-lb got the pool's first address, shown by kubectl and in lab.json.
    assert_eq!(wait_external_ip(&lab, "web-lb"), format!("127.{o}.50.1"));
    let wide = lab.kubectl(&["get", "svc", "web-lb"]);
    assert!(wide.contains(&format!("127.{o}.50.1")), "{wide}");
    let web_lb = info["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web-lb")
        .unwrap();
    assert_eq!(
        web_lb["loadBalancerIngress"],
        serde_json::json!([format!("127.{o}.50.1")])
    );
    assert_eq!(
        info["cloudLb"]["pools"][0]["range"],
        format!("127.{o}.50.0/24")
    );
    let admin = info["cloudLb"]["admin"].as_str().unwrap().to_owned();
    assert_eq!(info["admin"]["cloudLb"], admin.as_str());
    let described = lab.kubectl(&["describe", "svc", "web-lb"]);
    assert!(
        described.contains("IPAllocated") && described.contains("cloud-lb"),
        "{described}"
    );

    // curl reaches a pod; the pod saw the forwarder's upstream address; the forwarder saw
    // cloud-lb's upstream address as its client: three hops, stitched by address.
    let (ok, body) = curl(&[&format!("http://127.{o}.50.1/")]);
    assert!(ok, "curl through the load balancer failed: {body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let pod_client = body["clientAddress"].as_str().unwrap().to_owned();
    let lb_hop = lab.eventually("cloud-lb's hop", || {
        hops(&admin)
            .into_iter()
            .rev()
            .find(|h| h["outcome"] == "ok" && h["listener"] == format!("127.{o}.50.1:80"))
    });
    assert_eq!(lb_hop["proxy"], "cloud-lb");
    assert_eq!(lb_hop["target"], "default/web-lb:http");
    let lb_upstream_local = lb_hop["upstreamLocal"].as_str().unwrap().to_owned();
    let fwd_hop = lab.eventually("the forwarder's hop for that connection", || {
        info["admin"]["forwarders"]
            .as_object()?
            .values()
            .flat_map(|url| hops(url.as_str().unwrap()))
            .find(|h| h["client"] == lb_upstream_local.as_str())
    });
    assert_eq!(fwd_hop["listener"], lb_hop["upstream"]);
    assert_eq!(fwd_hop["upstreamLocal"], pod_client.as_str());

    // PROXY protocol v2: the pod learns the client's address through both relays.
    assert!(
        body["proxyProtocol"].is_null(),
        "no header unless asked: {body}"
    );
    lab.kubectl(&["annotate", "svc", "web-lb", "proxylab.io/proxy-protocol=v2"]);
    let proxied = lab.eventually("the pod to see a PROXY header", || {
        let (ok, body) = curl(&[&format!("http://127.{o}.50.1/")]);
        let body: Value = serde_json::from_str(&body).ok().filter(|_| ok)?;
        (!body["proxyProtocol"].is_null()).then_some(body)
    });
    assert_eq!(
        proxied["proxyProtocol"]["destination"],
        format!("127.{o}.50.1:80")
    );
    let source = proxied["proxyProtocol"]["source"]
        .as_str()
        .unwrap()
        .to_owned();
    let hop = lab.eventually("cloud-lb's hop for the proxied client", || {
        hops(&admin)
            .into_iter()
            .find(|h| h["client"] == source.as_str())
    });
    assert!(
        hop["reason"]
            .as_str()
            .unwrap()
            .ends_with("PROXY v2 header sent"),
        "{hop}"
    );
    assert_ne!(
        proxied["clientAddress"],
        source.as_str(),
        "the socket still shows a proxy"
    );

    // UDP: a LoadBalancer in front of the UDP echo pods.
    lab.kubectl_stdin(
        &["apply", "-f", "-"],
        &lb_service(
            "dns-lb",
            "  selector: {app: udp-echo}\n",
            "    - {name: dns, port: 5353, targetPort: 5353, protocol: UDP}\n",
        ),
    );
    let ip: IpAddr = wait_external_ip(&lab, "dns-lb").parse().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let answer = lab.eventually("a UDP answer through the load balancer", || {
        sock.send_to(b"whoami", SocketAddr::new(ip, 5353)).ok()?;
        let mut buf = [0u8; 512];
        let (n, from) = sock.recv_from(&mut buf).ok()?;
        assert_eq!(
            from,
            SocketAddr::new(ip, 5353),
            "the answer comes from the ingress"
        );
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    assert!(answer.contains("pod=udp-echo-"), "{answer}");

    // Source ranges: a client outside is refused; widening the range lets it in.
    lab.kubectl_stdin(
        &["apply", "-f", "-"],
        &lb_service(
            "closed-lb",
            "  selector: {app: web}\n  loadBalancerSourceRanges: [\"10.0.0.0/8\"]\n",
            WEB_PORT,
        ),
    );
    let closed = wait_external_ip(&lab, "closed-lb");
    let url = format!("http://{closed}:8080/hostname");
    // The listener opens right after the status is written; a refusal before it is a different
    // failure, so wait for cloud-lb's own record of the rejection.
    lab.eventually("a rejected connection", || {
        let (ok, _) = curl(&[&url]);
        assert!(!ok, "a client outside loadBalancerSourceRanges got through");
        hops(&admin)
            .iter()
            .any(|h| h["outcome"] == "rejected" && h["listener"] == format!("{closed}:8080"))
    });
    lab.kubectl(&[
        "patch",
        "svc",
        "closed-lb",
        "-p",
        r#"{"spec":{"loadBalancerSourceRanges":["127.0.0.0/8"]}}"#,
    ]);
    let name = lab.eventually("the widened range admits curl", || {
        let (ok, body) = curl(&[&url]);
        ok.then_some(body)
    });
    assert!(name.trim().starts_with("web-"), "{name}");
}

#[test]
fn exhausted_pool_is_an_event_and_conversion_to_cluster_ip_frees_the_address() {
    if !require_tool("kubectl") {
        return;
    }
    // A pool of three addresses (.1-.3; .0 is avoided): web-lb takes one.
    let lab = Lab::start_with(BIN, |t| t.replace(".50.0/24", ".50.0/30"));
    let o = lab.octet;
    wait_external_ip(&lab, "web-lb");
    for name in ["a-lb", "b-lb", "c-lb"] {
        lab.kubectl_stdin(
            &["apply", "-f", "-"],
            &lb_service(name, "  selector: {app: web}\n", WEB_PORT),
        );
    }
    assert_eq!(wait_external_ip(&lab, "a-lb"), format!("127.{o}.50.2"));
    assert_eq!(wait_external_ip(&lab, "b-lb"), format!("127.{o}.50.3"));
    let why = lab.eventually("an AllocationFailed Event on c-lb", || {
        let d = lab.kubectl(&["describe", "svc", "c-lb"]);
        d.contains("AllocationFailed").then_some(d)
    });
    assert!(why.contains("no available IPs"), "{why}");
    assert!(lab.kubectl(&["get", "svc", "c-lb"]).contains("<pending>"));
    // Still alive and serving.
    let (ok, _) = curl(&[&format!("http://127.{o}.50.1/hostname")]);
    assert!(ok, "cloud-lb stopped serving after the pool ran out");

    // a-lb becomes a ClusterIP Service: its address is released (Event), its finalizer and
    // status are gone, and the waiting c-lb gets the address.
    lab.kubectl(&[
        "patch",
        "svc",
        "a-lb",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    assert_eq!(wait_external_ip(&lab, "c-lb"), format!("127.{o}.50.2"));
    let a = lab.kubectl(&["get", "svc", "a-lb", "-o", "json"]);
    let a: Value = serde_json::from_str(&a).unwrap();
    assert_eq!(a["spec"]["type"], "ClusterIP");
    assert!(
        a.pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty),
        "{a}"
    );
    assert!(
        !a["metadata"]["finalizers"]
            .to_string()
            .contains("load-balancer-cleanup"),
        "{a}"
    );
    assert!(
        lab.kubectl(&["describe", "svc", "a-lb"])
            .contains("ClearAssignment")
    );
    // Deleting a LoadBalancer Service goes through the finalizer and completes.
    lab.kubectl(&["delete", "svc", "b-lb", "--wait=true", "--timeout=20s"]);
}

#[test]
fn a_restart_keeps_every_address() {
    if !require_tool("kubectl") {
        return;
    }
    let mut lab = Lab::start(BIN);
    let o = lab.octet;
    wait_external_ip(&lab, "web-lb");
    for name in ["x-lb", "y-lb"] {
        lab.kubectl_stdin(
            &["apply", "-f", "-"],
            &lb_service(name, "  selector: {app: web}\n", WEB_PORT),
        );
    }
    assert_eq!(wait_external_ip(&lab, "x-lb"), format!("127.{o}.50.2"));
    assert_eq!(wait_external_ip(&lab, "y-lb"), format!("127.{o}.50.3"));
    // Free .2, so a controller that forgot its allocations would move y-lb there.
    lab.kubectl(&["delete", "svc", "x-lb", "--wait=true", "--timeout=20s"]);
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(lab.state_dir().join("cloud-lb.json")).unwrap(),
    )
    .unwrap();
    assert!(state.to_string().contains("y-lb"), "{state}");
    lab.stop();
    lab.restart(&[]);
    assert_eq!(wait_external_ip(&lab, "y-lb"), format!("127.{o}.50.3"));
    assert_eq!(wait_external_ip(&lab, "web-lb"), format!("127.{o}.50.1"));
    let (ok, body) = curl(&[&format!("http://127.{o}.50.3:8080/hostname")]);
    assert!(ok && body.trim().starts_with("web-"), "{body}");
}
