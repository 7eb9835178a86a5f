//! The live lab page in a real browser: headless Chromium (Debian's `chromium`) driven over the
//! DevTools protocol. The page loads from the lab's admin endpoint, draws the nodes, pods, apiservers
//! and proxies, and requests made while it is open appear on it as paths stitched from hop records;
//! a click on a hop shows its record.
//!
//! `PROXYLAB_UPDATE_DOCS=1 cargo nextest run --test page` also writes the screenshot kept in
//! `docs/lab-page.png`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use proxylab_test_support::lab::{Lab, curl};
use proxylab_test_support::{eventually_async, require_tool, without_proxy_env};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_proxylab");

/// A headless Chromium with its DevTools endpoint on loopback, killed on drop.
struct Chromium {
    child: Child,
    _dir: tempfile::TempDir,
    ws_url: String,
}

impl Chromium {
    fn start() -> Chromium {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("chromium");
        without_proxy_env(&mut cmd);
        cmd.args([
            "--headless",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            // Tests run as root in CI containers, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
            "--window-size=1500,1000",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", dir.path().display()))
        .arg("about:blank")
        .env("HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start chromium");
        // Chromium writes the port it chose and the browser's WebSocket path here.
        let port_file = dir.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let ws_url = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromium exited with {status} before its DevTools endpoint was up");
            }
            assert!(
                Instant::now() < deadline,
                "chromium's DevTools endpoint not up after 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Chromium {
            child,
            _dir: dir,
            ws_url,
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One DevTools connection, attached to one page (a flattened session).
struct Tab {
    ws: Ws,
    next: u64,
    session: String,
}

impl Tab {
    async fn open(browser: &Chromium, url: &str) -> Tab {
        let (ws, _) = tokio_tungstenite::connect_async(&browser.ws_url)
            .await
            .expect("connect to chromium's DevTools endpoint");
        let mut tab = Tab {
            ws,
            next: 0,
            session: String::new(),
        };
        let target = tab
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = tab
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        tab.session = attached["sessionId"].as_str().unwrap().to_owned();
        tab.call("Page.enable", json!({})).await;
        tab.call("Page.navigate", json!({"url": url})).await;
        tab
    }

    /// Sends one command and waits for its answer, skipping events.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("send to chromium");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} in 30 s"))
                .expect("chromium closed the DevTools connection")
                .expect("DevTools frame");
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                if let Some(err) = v.get("error") {
                    panic!("{method}: {err}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expr` in the page and returns its value (JSON-serializable).
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true}),
            )
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("{expr}: {ex}");
        }
        r["result"]["value"].clone()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_page_draws_the_lab_and_the_paths_of_requests_made_while_it_is_open() {
    if !require_tool("chromium") || !require_tool("curl") {
        return;
    }
    let lab = Lab::start(BIN);
    let admin = lab.info["admin"]["lab"].as_str().unwrap().to_owned();

    // The page and what it reads are served by the admin endpoint itself.
    let (ok, html) = curl(&[&format!("{admin}/")]);
    assert!(ok && html.contains("<svg id=\"topo\""), "{html}");
    let (ok, topology) = curl(&[&format!("{admin}/topology")]);
    let topology: Value = serde_json::from_str(&topology).unwrap();
    assert!(ok && topology["ready"] == true, "{topology}");
    assert!(
        !topology
            .to_string()
            .contains(lab.info["token"].as_str().unwrap()),
        "the admin token stays out of the page"
    );

    let browser = Chromium::start();
    let mut tab = Tab::open(&browser, &format!("{admin}/")).await;

    // The topology: both nodes, the three web pods on them, three apiservers, the auth-proxy.
    let nodes = eventually_async("the page to draw the nodes", async || {
        let v = tab
            .eval("JSON.stringify([...document.querySelectorAll('[data-node]')].map(e => e.dataset.node))")
            .await;
        let names: Vec<String> = serde_json::from_str(v.as_str().unwrap_or("[]")).unwrap();
        (names.len() == 2).then_some(names)
    })
    .await;
    assert_eq!(nodes, ["node-1", "node-2"]);
    let pods = strings(
        &tab.eval("[...document.querySelectorAll('[data-pod]')].map(e => e.dataset.pod)")
            .await,
    );
    for p in ["default/web-1", "default/web-2", "default/web-3"] {
        assert!(pods.contains(&p.to_owned()), "{pods:?}");
    }
    let apiservers = tab
        .eval("document.querySelectorAll('[data-apiserver]').length")
        .await;
    assert_eq!(apiservers, 3);
    let auth = tab
        .eval("document.querySelector('[data-proxy=\"auth-proxy\"]').getAttribute('class')")
        .await;
    assert!(
        auth.as_str().unwrap().contains("proxy"),
        "the auth-proxy runs: {auth}"
    );
    let status = eventually_async("the page to connect to the hop stream", async || {
        let s = tab
            .eval("document.getElementById('status').className")
            .await;
        s.as_str().is_some_and(|c| c.contains("live")).then_some(s)
    })
    .await;
    assert!(status.as_str().unwrap().contains("live"));

    // A request through kubectl proxy → apiserver proxy → pod, made now that the page is open.
    let marker = format!("page-test-{}", std::process::id());
    let auth_proxy = lab.info["authProxy"].as_str().unwrap();
    let (ok, body) = curl(&[&format!(
        "{auth_proxy}/api/v1/namespaces/default/services/web:http/proxy/{marker}"
    )]);
    assert!(ok, "{body}");
    let chips = eventually_async("the request to appear on the page", async || {
        let v = tab
            .eval(&format!(
                "(() => {{ const li = [...document.querySelectorAll('#paths li')]
                     .find(l => (l.querySelector('.what') || {{}}).textContent?.includes('{marker}'));
                   return li ? [...li.querySelectorAll('.chip')].map(c => c.textContent) : null; }})()"
            ))
            .await;
        let chips = strings(&v);
        // Three hops, stitched into one path: the auth-proxy's, the HA balancer's pooled
        // connection (opened for an earlier request, still open) and the apiserver proxy's.
        (chips.len() >= 3).then_some(chips)
    })
    .await;
    assert!(chips[0].starts_with("auth-proxy"), "{chips:?}");
    assert!(
        chips[1].starts_with("ha-balancer → apiserver-"),
        "the auth-proxy's connection goes through the HA balancer: {chips:?}"
    );
    assert!(
        chips[2].starts_with("bastion apiserver-") && chips[2].contains("→ web-"),
        "the apiserver proxy's hop ends at a web pod: {chips:?}"
    );
    let drawn = tab
        .eval("document.querySelectorAll('#lines path.hop').length")
        .await;
    assert!(drawn.as_u64().unwrap() >= 2, "lines drawn: {drawn}");

    // A click on the apiserver proxy's hop shows its record.
    let record = tab
        .eval(&format!(
            "(() => {{ const li = [...document.querySelectorAll('#paths li')]
                 .find(l => l.querySelector('.what').textContent.includes('{marker}'));
               li.querySelectorAll('.chip')[2].click();
               return document.getElementById('record').textContent; }})()"
        ))
        .await;
    let record = record.as_str().unwrap();
    assert!(
        record.contains("\"proxy\": \"bastion\"") && record.contains(&marker),
        "{record}"
    );
    let selected = tab
        .eval("document.querySelectorAll('#lines path.hop.selected').length")
        .await;
    assert!(selected.as_u64().unwrap() >= 1, "the path is highlighted");

    // An L4 path: a client at its own address → the web Service's ClusterIP → a forwarder → a pod.
    let client_ip = format!("127.{}.0.77", lab.octet);
    let cluster_ip = lab.info["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .and_then(|s| s["clusterIP"].as_str())
        .unwrap()
        .to_owned();
    let (ok, body) = curl(&[
        "--interface",
        &client_ip,
        &format!("http://{cluster_ip}:80/hostname"),
    ]);
    assert!(ok, "{body}");
    let chips = eventually_async("the ClusterIP connection to appear on the page", async || {
        let v = tab
            .eval(&format!(
                "(() => {{ const li = [...document.querySelectorAll('#paths li')]
                     .find(l => l.querySelector('.what').textContent.includes('{client_ip}:'));
                   return li ? [...li.querySelectorAll('.chip')].map(c => c.textContent) : null; }})()"
            ))
            .await;
        let chips = strings(&v);
        (!chips.is_empty()).then_some(chips)
    })
    .await;
    assert!(
        chips[0].starts_with("forwarder node-") && chips[0].contains(&format!("→ {}", body.trim())),
        "the forwarder's hop ends at the pod that answered ({body}): {chips:?}"
    );

    let shot = tab
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    if std::env::var_os("PROXYLAB_UPDATE_DOCS").is_some() {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/lab-page.png");
        std::fs::write(&out, &png).unwrap();
        eprintln!("wrote {}", out.display());
    }
}
