//! A traced path, judged and printed: which hops it took, whether it worked, and if not, which hop
//! refused and why — as an mtr-like table or as JSON.

use std::fmt::Write as _;
use std::net::SocketAddr;

use proxylab_core::telemetry::HopRecord;
use proxylab_core::telemetry::stitch::Join;
use serde_json::{Value, json};

use super::places::Places;
use super::probe::Sent;
use super::target::Target;

/// One hop of the path.
#[derive(Debug, Clone)]
pub struct Hop {
    /// Which admin endpoint it came from (`forwarders/node-1`).
    pub source: String,
    /// How it was joined to the hop before (`None` for the first: it starts at trace's socket).
    pub join: Option<Join>,
    pub record: HopRecord,
}

/// Where and why the path failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// 1-based position in the path; `None` when no proxy recorded the request at all.
    pub hop: Option<usize>,
    pub at: SocketAddr,
    pub outcome: String,
    pub why: String,
}

/// Outcomes that mean the hop did its job. A UDP session has no close: it ends when idle. An
/// `open` connection (a pooled one the request rode on, still held) carried the request.
pub fn succeeded(outcome: &str) -> bool {
    matches!(outcome, "ok" | "upgraded" | "idle-timeout" | "open")
}

/// The Kubernetes docs' name for each kind of proxy (a kind added later shows as itself).
pub fn proxy_type(proxy: &str) -> &str {
    match proxy {
        "auth-proxy" => "kubectl proxy",
        "bastion" => "apiserver proxy",
        "forwarder" => "kube-proxy",
        "ha-balancer" => "apiserver balancer",
        "cloud-lb" => "cloud load balancer",
        other => other,
    }
}

/// Everything `trace` found.
#[derive(Debug)]
pub struct Report {
    pub target: Target,
    pub sent: Sent,
    pub hops: Vec<Hop>,
    pub failure: Option<Failure>,
    pub notes: Vec<String>,
    /// Admin endpoints that could not be read: `(source, error)`.
    pub unreadable: Vec<(String, String)>,
    places: Places,
}

impl Report {
    pub fn new(
        target: Target,
        sent: Sent,
        hops: Vec<Hop>,
        places: Places,
        unreadable: Vec<(String, String)>,
    ) -> Self {
        let mut r = Report {
            target,
            sent,
            hops,
            failure: None,
            notes: Vec::new(),
            unreadable,
            places,
        };
        r.judge();
        r
    }

    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }

    fn request_path(&self) -> Option<&str> {
        match &self.target {
            Target::Http { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Finds the failed hop: the deepest hop that did not succeed (the one that refused: hops
    /// before it only passed the failure on); else the exchange's own failure or a 5xx answer,
    /// blamed on the last hop. Also notes a path that stops where another proxy should have
    /// recorded a hop.
    fn judge(&mut self) {
        let protocol = self.target.protocol();
        if let Some((i, h)) = self
            .hops
            .iter()
            .enumerate()
            .rev()
            .find(|(_, h)| !succeeded(&h.record.outcome))
        {
            self.failure = Some(Failure {
                hop: Some(i + 1),
                at: h.record.listener,
                outcome: h.record.outcome.to_string(),
                why: explain_outcome(&h.record),
            });
        } else if let Some(err) = &self.sent.error {
            self.failure = Some(match self.hops.last() {
                None => Failure {
                    hop: None,
                    at: self.target.addr(),
                    outcome: "unreachable".into(),
                    why: format!(
                        "{err}: {}",
                        self.places
                            .explain_unreachable(self.target.addr(), protocol)
                    ),
                },
                Some(last) => Failure {
                    hop: Some(self.hops.len()),
                    at: last.record.upstream.unwrap_or(last.record.listener),
                    outcome: "client-error".into(),
                    why: format!("the exchange failed after the last hop: {err}"),
                },
            });
        } else if let Some(status) = self.sent.status.filter(|s| *s >= 500) {
            let n = self.hops.len();
            self.failure = Some(Failure {
                hop: (n > 0).then_some(n),
                at: self
                    .hops
                    .last()
                    .and_then(|h| h.record.upstream)
                    .unwrap_or(self.target.addr()),
                outcome: format!("http-{status}"),
                why: format!(
                    "answered {}",
                    self.sent.status_line.as_deref().unwrap_or("5xx")
                ),
            });
        }
        match self.hops.last() {
            None if self.sent.error.is_none() => self.notes.push(format!(
                "no proxy recorded this request: {} answered directly",
                self.describe(self.target.addr())
            )),
            Some(last) if succeeded(&last.record.outcome) => {
                if let Some(up) = last.record.upstream
                    && self.places.records_next_hop(up, self.request_path())
                {
                    self.notes.push(format!(
                        "the path stops at {}: it recorded no hop for this request (a connection it still holds open is recorded when it closes)",
                        self.describe(up)
                    ));
                }
            }
            _ => {}
        }
        if self.hops.iter().any(|h| h.join == Some(Join::Inferred)) {
            self.notes.push(
                "~ marks a hop joined by request line and time (its proxy did not record the connection it used)"
                    .into(),
            );
        }
    }

    fn describe(&self, addr: SocketAddr) -> String {
        match self.places.name(addr) {
            Some(n) => format!("{addr} ({n})"),
            None => addr.to_string(),
        }
    }

    /// Whether hop `i` is a connection that carried this request among others — an L4 hop under
    /// an HTTP one (kubectl proxy's pooled connection through the HA balancer): its duration is
    /// the connection's, not this request's.
    fn shared(&self, i: usize) -> bool {
        i > 0 && self.hops[i].record.http.is_none() && self.hops[i - 1].record.http.is_some()
    }

    /// Time spent in hop `i` itself: its duration less the next hop's (a shared connection's
    /// is not this request's: it is skipped, and has none of its own).
    fn own_micros(&self, i: usize) -> Option<u64> {
        if self.shared(i) {
            return None;
        }
        let total = micros(self.hops[i].record.duration_ms);
        let next = (i + 1..self.hops.len())
            .find(|&j| !self.shared(j))
            .map(|j| micros(self.hops[j].record.duration_ms))
            .unwrap_or(0);
        Some(total.saturating_sub(next))
    }

    pub fn to_json(&self) -> Value {
        let hops: Vec<Value> = self
            .hops
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let r = &h.record;
                let to = r.upstream;
                json!({
                    "hop": i + 1,
                    "proxy": r.proxy,
                    "type": proxy_type(&r.proxy),
                    "instance": r.instance,
                    "source": h.source,
                    "join": match h.join { None => "start", Some(Join::Exact) => "exact", Some(Join::Inferred) => "inferred" },
                    "protocol": r.protocol,
                    "time": r.time.to_string(),
                    "from": r.client.to_string(),
                    "listener": r.listener.to_string(),
                    "listenerName": self.places.name(r.listener),
                    "upstreamLocal": r.upstream_local.map(|a| a.to_string()),
                    "to": to.map(|a| a.to_string()),
                    "toName": to.and_then(|a| self.places.name(a)),
                    "target": r.target,
                    "endpoint": r.endpoint,
                    "reason": r.reason,
                    "bytes": {"up": r.bytes_up, "down": r.bytes_down},
                    "micros": micros(r.duration_ms),
                    "ownMicros": self.own_micros(i),
                    "outcome": r.outcome,
                    "http": r.http,
                })
            })
            .collect();
        let s = &self.sent;
        json!({
            "target": self.target.to_string(),
            "protocol": self.target.protocol(),
            "ok": self.ok(),
            "request": {
                "from": s.local.map(|a| a.to_string()),
                "to": self.target.addr().to_string(),
                "toName": self.places.name(self.target.addr()),
                "started": s.started.to_string(),
                "micros": s.micros,
                "bytesSent": s.bytes_sent,
                "bytesReceived": s.bytes_received,
                "statusLine": s.status_line,
                "status": s.status,
                "answer": preview(&s.body, 200),
                "error": s.error,
            },
            "hops": hops,
            "failedHop": self.failure.as_ref().map(|f| json!({
                "hop": f.hop,
                "at": f.at.to_string(),
                "atName": self.places.name(f.at),
                "outcome": f.outcome,
                "why": f.why,
            })),
            "notes": self.notes,
            "unreadable": self.unreadable.iter().map(|(s, e)| json!({"source": s, "error": e})).collect::<Vec<_>>(),
        })
    }

    /// The mtr-like table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let s = &self.sent;
        let from = s.local.map(|a| format!(" from {a}")).unwrap_or_default();
        let _ = writeln!(out, "trace {}{from}", self.target);
        let answer = match (&s.error, &s.status_line) {
            (Some(e), _) => format!("failed: {e}"),
            (None, Some(line)) => line.clone(),
            (None, None) => "answered".into(),
        };
        let body = preview(&s.body, 60);
        let body = if body.is_empty() {
            String::new()
        } else {
            format!(": {body}")
        };
        let _ = writeln!(
            out,
            "answer: {answer}, {} bytes sent, {} received, {}{body}",
            s.bytes_sent,
            s.bytes_received,
            ms(s.micros)
        );
        out.push('\n');
        let header = [
            "HOP",
            "TYPE",
            "PROXY",
            "INSTANCE",
            "FROM",
            "TO",
            "ENDPOINT (WHY)",
            "BYTES ↑/↓",
            "TIME",
            "OWN",
            "OUTCOME",
        ];
        let mut rows: Vec<Vec<String>> = Vec::new();
        for (i, h) in self.hops.iter().enumerate() {
            let r = &h.record;
            let mark = if h.join == Some(Join::Inferred) {
                "~"
            } else {
                ""
            };
            let to = r
                .upstream
                .map_or_else(|| "-".to_owned(), |a| self.describe(a));
            let to = if r.listener != r.upstream.unwrap_or(r.listener) && i == 0 {
                // The first hop: show where the request was sent, too, when it names something.
                match self.places.name(r.listener) {
                    Some(n)
                        if n.starts_with("service")
                            || n.starts_with("NodePort")
                            || n.starts_with("load balancer") =>
                    {
                        format!("{to} via {n}")
                    }
                    _ => to,
                }
            } else {
                to
            };
            let endpoint = match (&r.endpoint, &r.reason) {
                (Some(e), Some(why)) => format!("{e} ({why})"),
                (Some(e), None) => e.clone(),
                (None, Some(why)) => format!("({why})"),
                (None, None) => "-".into(),
            };
            let outcome = match r.http.as_ref().and_then(|x| x.status) {
                Some(code) => format!("{} {code}", r.outcome),
                None => r.outcome.to_string(),
            };
            rows.push(vec![
                format!("{mark}{}", i + 1),
                proxy_type(&r.proxy).to_owned(),
                r.proxy.to_string(),
                r.instance.clone(),
                r.client.to_string(),
                to,
                endpoint,
                format!("{}/{}", r.bytes_up, r.bytes_down),
                if self.shared(i) {
                    "-".to_owned()
                } else {
                    ms(micros(r.duration_ms))
                },
                self.own_micros(i).map_or_else(|| "-".to_owned(), ms),
                outcome,
            ]);
        }
        if rows.is_empty() {
            out.push_str("(no hop recorded)\n");
        } else {
            let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
            for row in &rows {
                for (w, c) in width.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: &[String]| {
                let mut l = String::new();
                for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
                    if i + 1 == cells.len() {
                        l.push_str(c);
                    } else {
                        l.push_str(c);
                        l.push_str(&" ".repeat(w - c.chars().count() + 2));
                    }
                }
                l.trim_end().to_owned()
            };
            let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
            let _ = writeln!(out, "{}", line(&header));
            for row in &rows {
                let _ = writeln!(out, "{}", line(row));
            }
        }
        out.push('\n');
        match &self.failure {
            None => {
                let _ = writeln!(out, "ok: {} hop(s)", self.hops.len());
            }
            Some(f) => {
                let hop = match f.hop {
                    Some(n) => {
                        let r = &self.hops[n - 1].record;
                        format!("hop {n} ({} {})", r.proxy, r.instance)
                    }
                    None => format!("the first hop, {}", self.describe(f.at)),
                };
                let _ = writeln!(out, "FAILED at {hop}: {} — {}", f.outcome, f.why);
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for (src, e) in &self.unreadable {
            let _ = writeln!(out, "note: could not read the hops of {src}: {e}");
        }
        out
    }
}

/// Why a hop that did not succeed failed, in words.
fn explain_outcome(r: &HopRecord) -> String {
    let target = r.target.clone().unwrap_or_else(|| r.listener.to_string());
    let reason = r
        .reason
        .as_ref()
        .map(|x| format!(": {x}"))
        .unwrap_or_default();
    let status = r
        .http
        .as_ref()
        .and_then(|h| h.status)
        .map(|s| format!(" (answered {s})"))
        .unwrap_or_default();
    match &*r.outcome {
        "no-endpoints" if r.proxy == "forwarder" || r.protocol == "tcp" || r.protocol == "udp" => {
            format!(
                "{target} has no ready endpoints, so the {} reset the connection (kube-proxy rejects it){reason}",
                r.proxy
            )
        }
        "no-endpoints" => format!("{target} has no ready endpoints{status}{reason}"),
        "connect-failed" => format!("no endpoint of {target} accepted the connection{reason}"),
        "rejected" => format!("the {} refused the request{status}{reason}", r.proxy),
        "not-found" => format!("{target} does not exist{status}{reason}"),
        other => format!("{other}{status}{reason}"),
    }
}

fn micros(duration_ms: f64) -> u64 {
    (duration_ms * 1000.0).max(0.0).round() as u64
}

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

/// The start of an answer on one line.
fn preview(text: &str, max: usize) -> String {
    let one: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one.chars().count() > max {
        let cut: String = one.chars().take(max).collect();
        format!("{cut}…")
    } else {
        one
    }
}
