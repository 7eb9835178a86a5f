//! The balancer in `tcp` mode with real sockets: spreading, marking down (and closing what was
//! open to the dead backend), coming back, retrying a failed connect elsewhere, HTTPS checks with
//! a verified CA, TLS and client certificates passing through, reload and drain.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use proxylab_core::balance::health::RiseFall;
use proxylab_ha_balancer::{BackendConfig, CheckKind, Config, HaBalancer, HaBalancerHandle};
use proxylab_test_support::echo::{tcp_echo, tcp_echo_until};
use proxylab_test_support::fake_apiserver::{FakeApiserverOptions, start_apiserver_with, test_pki};
use proxylab_test_support::{eventually, eventually_async};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

struct Running {
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    handle: HaBalancerHandle,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

fn backend(name: &str, addr: SocketAddr) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        address: addr,
        server_name: None,
    }
}

/// A configuration on 127.0.0.1:0 with fast TCP checks.
fn fast(backends: Vec<BackendConfig>) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: None,
        backends,
        ..Config::default()
    };
    c.check.kind = CheckKind::Tcp;
    c.check.interval = Duration::from_millis(100);
    c.check.timeout = Duration::from_millis(500);
    c.check.rise_fall = RiseFall { rise: 2, fall: 2 };
    c.timeouts.connect = Duration::from_secs(1);
    c
}

async fn start(config: Config, file: Option<std::path::PathBuf>) -> Running {
    let b = HaBalancer::bind(config, file, None).await.expect("bind");
    let (addr, admin) = b.local_addrs();
    let handle = b.handle();
    let stop = CancellationToken::new();
    let done = tokio::spawn(b.serve(stop.clone()));
    Running {
        addr,
        admin,
        handle,
        stop,
        done,
    }
}

/// Connects through the balancer and reads the echo backend's greeting: who answered.
async fn who(addr: SocketAddr) -> (String, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr)
        .await
        .expect("connect to the balancer");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await.expect("greeting");
    (line.trim().to_string(), r)
}

fn state_of(h: &HaBalancerHandle, name: &str) -> String {
    h.stats()
        .backends
        .iter()
        .find(|b| b.name == name)
        .map(|b| b.state.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn round_robin_spreads_and_every_connection_has_a_hop() {
    let mut backends = Vec::new();
    for name in ["a", "b", "c"] {
        backends.push(backend(name, tcp_echo("127.0.0.1:0", name).await));
    }
    let lb = start(fast(backends), None).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let (name, mut r) = who(lb.addr).await;
        r.write_all(b"ping").await.unwrap();
        r.get_mut().shutdown().await.unwrap();
        let mut rest = String::new();
        r.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "ping");
        *counts.entry(name).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|n| *n == 10), "{counts:?}");
    let hops = lb.handle.admin().hops.clone();
    eventually("30 hop records", || hops.recent(100).len() == 30).await;
    for h in hops.recent(100) {
        assert_eq!(h.proxy, "ha-balancer");
        assert_eq!(h.outcome, "ok");
        assert_eq!(h.bytes_up, 4);
        assert_eq!(h.bytes_down, 6);
        assert!(["a", "b", "c"].contains(&h.endpoint.as_deref().unwrap()));
        assert_eq!(h.reason.as_deref(), Some("round-robin"));
        assert!(h.upstream_local.is_some());
    }
    let stats = lb.handle.stats();
    assert!(stats.backends.iter().all(|b| b.total_connections == 10));
    lb.stop.cancel();
    lb.done.await.unwrap();
}

/// The failover story in small: a backend stops accepting (its checks fail) while a client is
/// connected to it. Within fall × interval it is marked down, that client's connection is reset at
/// once (rather than left to hang), new connections avoid it, and after it is back `rise` checks
/// bring it into rotation again.
#[tokio::test]
async fn a_backend_marked_down_has_its_connections_reset_and_comes_back() {
    let stop_b = CancellationToken::new();
    let a = tcp_echo("127.0.0.1:0", "a").await;
    let b = tcp_echo_until("127.0.0.1:0", "b", stop_b.clone()).await;
    let lb = start(fast(vec![backend("a", a), backend("b", b)]), None).await;
    // Wait for b to pass a check, so it is past probation.
    let h = lb.handle.clone();
    eventually("b checked", || h.stats().backends[1].checks_ok >= 1).await;
    let mut on_b = None;
    let mut keep = Vec::new();
    for _ in 0..4 {
        let (name, r) = who(lb.addr).await;
        if name == "a" {
            keep.push(r);
        } else if on_b.is_none() {
            on_b = Some(r);
        }
    }
    let mut on_b = on_b.expect("round-robin reached b");
    stop_b.cancel();
    eventually("b marked down", || state_of(&h, "b") == "down").await;
    let mut rest = Vec::new();
    let err = tokio::time::timeout(Duration::from_secs(10), on_b.read_to_end(&mut rest))
        .await
        .expect("the connection to b ends")
        .expect_err("reset, not a clean end");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    // Connections to a are untouched.
    for r in &mut keep {
        r.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        r.read_exact(&mut one).await.unwrap();
    }
    let stats = h.stats();
    let sb = &stats.backends[1];
    assert!(
        sb.last_change_reason.starts_with("check: connect"),
        "{sb:?}"
    );
    assert_eq!(sb.active_connections, 0);
    for _ in 0..6 {
        assert_eq!(who(lb.addr).await.0, "a");
    }
    let hops = h.admin().hops.clone();
    eventually("the reset hop", || {
        hops.recent(100).iter().any(|x| x.outcome == "backend-down")
    })
    .await;
    // b comes back on the same address.
    let _b2 = tcp_echo_until(&b.to_string(), "b", CancellationToken::new()).await;
    eventually("b up again", || state_of(&h, "b") == "up").await;
    let mut seen_b = false;
    for _ in 0..4 {
        seen_b |= who(lb.addr).await.0 == "b";
    }
    assert!(seen_b);
    let metrics = h.admin().metrics.encode();
    assert!(
        metrics.contains("proxylab_ha_backend_state_changes_total{backend=\"b\",to=\"down\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("proxylab_ha_connections_closed_on_down_total{backend=\"b\"} 1"),
        "{metrics}"
    );
    lb.stop.cancel();
    lb.done.await.unwrap();
}

/// A backend that refuses connections costs clients nothing: the connect is retried on another
/// backend (nothing was sent yet), and the refusal marks the backend down passively, without
/// active checks.
#[tokio::test]
async fn a_refused_connect_is_retried_elsewhere_and_marks_the_backend_down() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let live = tcp_echo("127.0.0.1:0", "live").await;
    let mut config = fast(vec![backend("dead", dead), backend("live", live)]);
    config.check.kind = CheckKind::None;
    let lb = start(config, None).await;
    for _ in 0..10 {
        assert_eq!(who(lb.addr).await.0, "live");
    }
    let h = lb.handle.clone();
    assert_eq!(state_of(&h, "dead"), "down");
    let stats = h.stats();
    assert!(
        stats.backends[0]
            .last_change_reason
            .starts_with("passive: connect:"),
        "{:?}",
        stats.backends[0]
    );
    // It went down on its first refusal (it was never seen up), so one connection at most paid
    // the retry.
    assert_eq!(stats.backends[0].connect_failures, 1);
    let hops = h.admin().hops.clone();
    eventually("hops", || hops.recent(100).len() == 10).await;
    let retried: Vec<_> = hops
        .recent(100)
        .into_iter()
        .filter(|x| x.reason.as_deref().unwrap_or("").contains("failed connect"))
        .collect();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].outcome, "ok");
    assert_eq!(retried[0].endpoint.as_deref(), Some("live"));
    lb.stop.cancel();
    lb.done.await.unwrap();
}

/// HTTPS checks verify the certificate: a backend whose certificate another CA signed fails
/// them, as does one answering `/readyz` with anything but 200. The balancer passes TLS through
/// untouched, client certificate included.
#[tokio::test]
async fn https_checks_verify_and_tls_passes_through_with_the_client_certificate() {
    let (client_ca, client_cert, client_key) = test_pki();
    let good = start_apiserver_with(FakeApiserverOptions {
        client_ca_pem: Some(client_ca.clone()),
        ..FakeApiserverOptions::default()
    })
    .await;
    let other_ca = start_apiserver_with(FakeApiserverOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &good.ca_pem).unwrap();
    let mut config = fast(vec![
        backend("good", good.addr),
        backend("other-ca", other_ca.addr),
    ]);
    config.check.kind = CheckKind::Https {
        path: "/readyz".into(),
    };
    config.check.ca_file = Some(ca_file);
    let lb = start(config, None).await;
    let h = lb.handle.clone();
    eventually("verdicts", || {
        let s = h.stats();
        s.backends[0].checks_ok >= 1 && s.backends[1].state == "down"
    })
    .await;
    let s = h.stats();
    assert_eq!(
        s.backends[0].last_check.as_ref().unwrap().detail,
        "HTTP 200"
    );
    let why = &s.backends[1].last_check.as_ref().unwrap().detail;
    assert!(why.starts_with("TLS: "), "{why}");
    assert!(
        good.seen_path("/readyz")
            .iter()
            .all(|r| r.headers["user-agent"] == "proxylab-ha-balancer")
    );

    // Through the balancer (only "good" is up): the client's TLS session is with the apiserver.
    let roots = proxylab_core::tls::certs_from_pem(good.ca_pem.as_bytes()).unwrap();
    let chain = proxylab_core::tls::certs_from_pem(client_cert.as_bytes()).unwrap();
    let key = proxylab_core::tls::private_key_from_pem(client_key.as_bytes()).unwrap();
    let tls = proxylab_core::tls::ClientTls::new()
        .ca(roots)
        .client_cert(chain.clone(), key)
        .alpn(&[b"http/1.1"])
        .build()
        .unwrap();
    let tcp = TcpStream::connect(lb.addr).await.unwrap();
    let mut s = tokio_rustls::TlsConnector::from(tls)
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .expect("the apiserver's own certificate, verified through the balancer");
    s.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("v1.31.0"), "{text}");
    let seen = good.seen_path("/version");
    assert_eq!(seen[0].client_cert.as_ref(), Some(&chain[0]));
    lb.stop.cancel();
    lb.done.await.unwrap();
}

#[tokio::test]
async fn a_readyz_other_than_200_fails_the_check() {
    let api = start_apiserver_with(FakeApiserverOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &api.ca_pem).unwrap();
    let mut config = fast(vec![backend("api", api.addr)]);
    config.check.kind = CheckKind::Https {
        path: "/not-a-health-path".into(),
    };
    config.check.ca_file = Some(ca_file);
    let lb = start(config, None).await;
    let h = lb.handle.clone();
    eventually("down on a 404", || state_of(&h, "api") == "down").await;
    let detail = h.stats().backends[0].last_check.clone().unwrap().detail;
    assert_eq!(detail, "HTTP 404 from GET /not-a-health-path");
    lb.stop.cancel();
    lb.done.await.unwrap();
}

/// Reload: a good file replaces backends and algorithm without touching established connections;
/// a bad one is refused, counted, and the running configuration kept.
#[tokio::test]
async fn reload_applies_good_files_keeps_connections_and_refuses_bad_ones() {
    let a = tcp_echo("127.0.0.1:0", "a").await;
    let b = tcp_echo("127.0.0.1:0", "b").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ha.yaml");
    let write = |text: String| {
        let tmp = dir.path().join("ha.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    let head = "listen: 127.0.0.1:0\nadmin: \"\"\nhealthCheck: {type: tcp, interval: 100ms}\n";
    // least-conn from the start: a balancer built anew (an algorithm change) does not know the
    // connections the old one placed until they end.
    write(format!("{head}algorithm: least-conn\nbackends: [a={a}]\n"));
    let config = proxylab_ha_balancer::config::load(&file).unwrap();
    let lb = start(config, Some(file.clone())).await;
    let (name, mut open) = who(lb.addr).await;
    assert_eq!(name, "a");
    write(format!(
        "{head}algorithm: least-conn\nbackends: [a={a}, b={b}]\ntimeouts: {{connect: 2s}}\n"
    ));
    let h = lb.handle.clone();
    eventually("two backends", || h.stats().backends.len() == 2).await;
    assert_eq!(h.config().timeouts.connect, Duration::from_secs(2));
    // least-conn: the open connection is on a, so the next goes to b.
    assert_eq!(who(lb.addr).await.0, "b");
    open.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still here");
    write(format!(
        "{head}backends: [a={a}, b={b}]\ntimeouts: {{connect: soon}}\n"
    ));
    let m = h.admin().metrics.clone();
    eventually("a refused reload", || {
        m.encode()
            .contains("proxylab_ha_reloads_total{result=\"refused\"} 1")
    })
    .await;
    assert_eq!(h.stats().backends.len(), 2);
    assert_eq!(h.config().algorithm.to_string(), "least-conn");
    lb.stop.cancel();
    drop(open);
    lb.done.await.unwrap();
}

/// SIGTERM's path: the listener closes at once, an open connection keeps working until it ends
/// on its own, and serving returns once it has.
#[tokio::test]
async fn shutdown_stops_accepting_and_drains_open_connections() {
    let a = tcp_echo("127.0.0.1:0", "a").await;
    let lb = start(fast(vec![backend("a", a)]), None).await;
    let (_, mut open) = who(lb.addr).await;
    lb.stop.cancel();
    let addr = lb.addr;
    eventually_async("the listener closed", async || {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(!lb.done.is_finished());
    open.write_all(b"after").await.unwrap();
    let mut buf = [0u8; 5];
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"after");
    open.get_mut().shutdown().await.unwrap();
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), lb.done)
        .await
        .expect("serve returns once drained")
        .unwrap();
}

/// A connection still open when the drain time is up is ended, and serving returns.
#[tokio::test]
async fn the_drain_is_bounded() {
    let a = tcp_echo("127.0.0.1:0", "a").await;
    let mut config = fast(vec![backend("a", a)]);
    config.timeouts.drain = Duration::from_millis(200);
    let lb = start(config, None).await;
    let (_, mut open) = who(lb.addr).await;
    lb.stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), lb.done)
        .await
        .expect("serve returns after the drain bound")
        .unwrap();
    let mut rest = Vec::new();
    assert_eq!(open.read_to_end(&mut rest).await.unwrap(), 0);
    let hops = lb.handle.admin().hops.recent(10);
    assert_eq!(hops[0].outcome, "drain-timeout");
}

#[tokio::test]
async fn the_admin_endpoint_serves_stats_as_html_and_json() {
    let a = tcp_echo("127.0.0.1:0", "a").await;
    let mut config = fast(vec![backend("a<&>", a)]);
    config.admin = Some("127.0.0.1:0".parse().unwrap());
    let lb = start(config, None).await;
    let admin = lb.admin.unwrap();
    let h = lb.handle.clone();
    eventually("a checked", || h.stats().backends[0].checks_ok >= 1).await;
    let json = proxylab_test_support::http::http_get(admin, "/stats?format=json").await;
    assert_eq!(json.status, 200);
    let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(v["mode"], "tcp");
    assert_eq!(v["backends"][0]["name"], "a<&>");
    assert_eq!(v["backends"][0]["state"], "up");
    assert_eq!(v["backends"][0]["lastCheck"]["ok"], true);
    let html = proxylab_test_support::http::http_get(admin, "/stats").await;
    assert!(html.head.contains("text/html"), "{}", html.head);
    assert!(html.body.contains("a&lt;&amp;&gt;"), "{}", html.body);
    let ready = proxylab_test_support::http::http_get(admin, "/readyz").await;
    assert_eq!(ready.status, 200);
    let metrics = proxylab_test_support::http::http_get(admin, "/metrics").await;
    assert!(
        metrics
            .body
            .contains("proxylab_ha_backend_up{backend=\"a<&>\"} 1"),
        "{}",
        metrics.body
    );
    let bad = proxylab_test_support::http::http_get(admin, "/stats?format=xml").await;
    assert_eq!(bad.status, 400);
    lb.stop.cancel();
    lb.done.await.unwrap();
}

/// kubernetes#76145 in small: nine long-lived clients (watches), one backend goes down and its
/// clients move to the other two; when it is back, the busiest backends' oldest connections are
/// closed one per step until the counts are even, and the clients that reconnect fill it again.
#[tokio::test]
async fn after_a_recovery_the_oldest_connections_move_back_until_counts_are_even() {
    let stop_b = CancellationToken::new();
    let a = tcp_echo("127.0.0.1:0", "a").await;
    let b = tcp_echo_until("127.0.0.1:0", "b", stop_b.clone()).await;
    let c = tcp_echo("127.0.0.1:0", "c").await;
    // Round-robin, the recipe's algorithm.
    let mut config = fast(vec![backend("a", a), backend("b", b), backend("c", c)]);
    config.rebalance.interval = Duration::from_millis(50);
    config.rebalance.batch = 1;
    // The clients' connections are young; in real life the moved watches are as old as the outage.
    config.rebalance.min_age = Duration::ZERO;
    let lb = start(config, None).await;
    let h = lb.handle.clone();
    eventually("every backend checked", || {
        h.stats().backends.iter().all(|b| b.checks_ok >= 1)
    })
    .await;
    let active = |h: &HaBalancerHandle| -> Vec<usize> {
        h.stats()
            .backends
            .iter()
            .map(|b| b.active_connections)
            .collect()
    };

    // Nine clients that hold a connection and reconnect whenever it ends, like informers.
    let stop_clients = CancellationToken::new();
    for _ in 0..9 {
        let (addr, stop) = (lb.addr, stop_clients.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let Ok(s) = TcpStream::connect(addr).await else {
                    continue;
                };
                let mut r = BufReader::new(s);
                let mut rest = Vec::new();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = r.read_to_end(&mut rest) => {}
                }
            }
        });
    }
    eventually("3/3/3", || active(&h) == [3, 3, 3]).await;

    stop_b.cancel();
    eventually("b down and its clients on a and c", || {
        state_of(&h, "b") == "down" && active(&h).iter().sum::<usize>() == 9
    })
    .await;
    let down_at = jiff::Timestamp::now();
    assert_eq!(active(&h)[1], 0);

    let _b2 = tcp_echo_until(&b.to_string(), "b", CancellationToken::new()).await;
    eventually("b up again", || state_of(&h, "b") == "up").await;
    eventually("even again", || {
        let n = active(&h);
        n.iter().sum::<usize>() == 9 && n.iter().max().unwrap() - n.iter().min().unwrap() <= 1
    })
    .await;
    assert!(active(&h)[1] >= 2, "{:?}", active(&h));

    // What moved: connections closed as `rebalanced`, counted, all of them among the oldest —
    // opened before the outage, none of the clients that had just moved.
    let hops = h.admin().hops.recent(1000);
    let moved: Vec<_> = hops.iter().filter(|x| x.outcome == "rebalanced").collect();
    // Nine connections over three: three had to move, and while the round ran every reconnect
    // went to the emptiest backend, so three closes were enough.
    assert_eq!(moved.len(), 3, "{hops:?}");
    // The moved clients, still connected, went to b by least connections.
    let open = h.admin().hops.open_now();
    assert!(
        open.iter()
            .filter(|x| x.reason.as_deref() == Some("least-conn (rebalancing)"))
            .all(|x| x.endpoint.as_deref() == Some("b")),
        "{open:?}"
    );
    assert!(
        open.iter()
            .any(|x| x.reason.as_deref() == Some("least-conn (rebalancing)")),
        "{open:?}"
    );
    for m in &moved {
        assert!(
            m.time < down_at,
            "a newer connection was closed first: {m:?}"
        );
        assert_ne!(m.endpoint.as_deref(), Some("b"));
    }
    let metrics = h.admin().metrics.encode();
    let counted: u64 = ["a", "c"]
        .iter()
        .filter_map(|n| {
            let key = format!("proxylab_ha_connections_rebalanced_total{{backend=\"{n}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&key))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum();
    assert_eq!(counted, moved.len() as u64, "{metrics}");
    stop_clients.cancel();
    lb.stop.cancel();
    lb.done.await.unwrap();
}
