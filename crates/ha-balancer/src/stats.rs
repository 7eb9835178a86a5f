//! The admin endpoint: core's `/healthz`, `/readyz` (ready while some backend is up), `/metrics`,
//! `/debug/hops`, plus `/stats` — each backend's state, last check, connections, bytes and last
//! change, as an HTML table (HAProxy's stats page) or `?format=json`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use proxylab_core::telemetry::{AdminState, admin_router};
use serde::{Deserialize, Serialize};

use crate::Shared;
use crate::pool::BackendStats;

/// `/stats?format=json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub mode: &'static str,
    pub listen: std::net::SocketAddr,
    pub algorithm: String,
    /// `https:/readyz every 2s, rise 2, fall 3`.
    pub health_check: String,
    /// A round of moving load back to a recovered backend is running (see `crate::rebalance`).
    pub rebalancing: bool,
    /// Learning backends from the cluster, when on (see `crate::learn`).
    pub learn: Option<crate::learn::LearnStats>,
    pub backends: Vec<BackendStats>,
}

#[derive(Deserialize)]
struct StatsQuery {
    format: Option<String>,
}

pub(crate) fn router(admin: AdminState, shared: Arc<Shared>) -> Router {
    let stats = Router::new()
        .route("/stats", get(stats_handler))
        .with_state(shared);
    admin_router(admin).merge(stats)
}

pub(crate) fn collect(shared: &Shared) -> Stats {
    let config = shared.config.load();
    let check = &config.check;
    let kind = match &check.kind {
        crate::config::CheckKind::Https { path } => format!("https:{path}"),
        crate::config::CheckKind::Tcp => "tcp".into(),
        crate::config::CheckKind::None => "none".into(),
    };
    Stats {
        mode: config.mode.as_str(),
        listen: shared.listen,
        algorithm: config.algorithm.to_string(),
        health_check: format!(
            "{kind} every {}, timeout {}, rise {}, fall {}",
            proxylab_core::duration::format(check.interval),
            proxylab_core::duration::format(check.timeout),
            check.rise_fall.rise,
            check.rise_fall.fall
        ),
        rebalancing: shared.pool.rebalancing(),
        learn: config
            .learn
            .as_ref()
            .map(|_| shared.learned.lock().stats.clone()),
        backends: shared.pool.stats(),
    }
}

async fn stats_handler(State(shared): State<Arc<Shared>>, Query(q): Query<StatsQuery>) -> Response {
    let stats = collect(&shared);
    match q.format.as_deref() {
        Some("json") => axum::Json(stats).into_response(),
        None | Some("html") => Html(render(&stats)).into_response(),
        Some(other) => (
            http::StatusCode::BAD_REQUEST,
            format!("unknown format {other:?} (expected html or json)\n"),
        )
            .into_response(),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn render(s: &Stats) -> String {
    let mut rows = String::new();
    for b in &s.backends {
        let check = b.last_check.as_ref().map_or_else(
            || "—".to_string(),
            |c| {
                format!(
                    "{} {} ({:.1} ms, {})",
                    if c.ok { "✔" } else { "✘" },
                    esc(&c.detail),
                    c.duration_ms,
                    c.time.strftime("%H:%M:%S")
                )
            },
        );
        rows.push_str(&format!(
            "<tr class=\"{state}\"><td>{name}</td><td>{addr}</td><td>{state}</td><td>{check}</td>\
             <td>{ok}/{failed}</td><td>{active}</td><td>{total}</td><td>{cf}</td><td>{up}</td><td>{down}</td>\
             <td>{since} ({why}; {changes} changes)</td></tr>\n",
            state = b.state,
            name = esc(&b.name),
            addr = b.address,
            ok = b.checks_ok,
            failed = b.checks_failed,
            active = b.active_connections,
            total = b.total_connections,
            cf = b.connect_failures,
            up = b.bytes_up,
            down = b.bytes_down,
            since = b.last_change.strftime("%Y-%m-%d %H:%M:%S UTC"),
            why = esc(&b.last_change_reason),
            changes = b.state_changes,
        ));
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ha-balancer stats</title>\
         <meta http-equiv=\"refresh\" content=\"2\">\
         <style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:2px 6px}}\
         tr.up{{background:#dfd}}tr.down{{background:#fdd}}</style></head><body>\
         <h1>ha-balancer on {listen}</h1><p>mode {mode}, {algorithm}; checks: {check}. \
         {learn}<a href=\"?format=json\">JSON</a></p>\
         <table><tr><th>backend</th><th>address</th><th>state</th><th>last check</th><th>checks ok/failed</th>\
         <th>connections</th><th>total</th><th>connect failures</th><th>bytes up</th><th>bytes down</th><th>last change</th></tr>\n\
         {rows}</table></body></html>\n",
        listen = s.listen,
        learn = s.learn.as_ref().map_or_else(String::new, |l| format!(
            "backends from {} ({}); ",
            l.source,
            if l.synced {
                "watch synced"
            } else {
                "watch not synced yet"
            }
        )),
        mode = s.mode,
        algorithm = esc(&s.algorithm),
        check = esc(&s.health_check),
    )
}
