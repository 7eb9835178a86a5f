//! The request handler: one function per subresource family, the same first steps for all.
//!
//! ```text
//!  path ──► which subresource (path.rs)                      not ours: 404
//!  user ──► set by the host (apiserver authn / standalone)   none: 401
//!  verbs ─► method's verb, + create for exec/attach/portforward (KEP-4006) ─► authorizer   403
//!  proxy:       resolve id (resolve.rs) ─► 404 / 400 / 503
//!               GET|HEAD with empty backend path, not an upgrade ─► 301 to …/proxy/
//!               strip credentials, X-Forwarded-Uri ─► core::http::forward (dial.rs checks, pins, binds)
//!               response: CORS removed, Location rewritten, text/html links rewritten (html.rs)
//!  log:         pod ─► container ─► its node's kubelet /containerLogs/… ─► stream, or the kubelet's
//!               error as a Status
//!  exec/attach/portforward: upgrade required (400) ─► pod ─► container ─► kubelet
//!               /exec|/attach|/portForward with kube's query translation ─► core::http::forward
//!               (101 spliced; ≥400 relayed then closed; anything else an error, nothing tunnelled)
//!  always ──► a hop record (proxy kind `bastion`)
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Uri};
use http_body_util::BodyExt;
use proxylab_apimachinery::status::{Details, Status};
use proxylab_core::http::{
    Forward, Meter, PendingHop, ProxyError, forward, is_upgrade_request, meter_request,
};
use proxylab_core::serve::ConnInfo;
use proxylab_core::telemetry::{HopRecord, HttpHop};

use crate::Shared;
use crate::authz::{self, Attributes, Decision, User};
use crate::dial::UpstreamAddrs;
use crate::html::{Encoding, HtmlRewriter, RewriteBody};
use crate::path::{self, ProxyPath, Subresource};
use crate::resolve::{Destination, ResolveError, container_of};
use crate::rewrite;
use crate::status::{self, status_response};

/// The most of a kubelet's error body read into a Status.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What every branch knows about the request, for its hop record.
struct Ctx {
    started: Instant,
    /// Counts the request's bytes (body, then tunnel) for its hop record.
    meter: Arc<Meter>,
    client: SocketAddr,
    listener: SocketAddr,
    tls: bool,
    method: Method,
    path: String,
    host: String,
}

impl Ctx {
    fn hop(&self, shared: &Shared) -> HopRecord {
        let instance = shared.instance_for(self.listener.ip());
        let mut hop = HopRecord::start(
            "bastion",
            &instance.name,
            if self.tls { "https" } else { "http" },
            self.client,
            self.listener,
        );
        hop.http = Some(HttpHop {
            method: self.method.as_str().to_owned(),
            path: self.path.clone(),
            host: (!self.host.is_empty()).then(|| self.host.clone()),
            status: None,
        });
        hop
    }
}

/// Completes a hop with the response's status and, when it came from upstream, the connection's
/// addresses; it is recorded when the response is really over (body ended, tunnel closed: see
/// `core::http::PendingHop`).
fn record(
    shared: &Shared,
    ctx: &Ctx,
    mut hop: HopRecord,
    resp: Response,
    outcome: &'static str,
) -> Response {
    if let Some(h) = hop.http.as_mut() {
        h.status = Some(resp.status().as_u16());
    }
    if let Some(a) = resp.extensions().get::<UpstreamAddrs>() {
        hop.upstream_local = Some(a.local);
        hop.upstream = Some(a.remote);
    }
    hop.outcome = outcome.into();
    let sink = shared.instance_for(ctx.listener.ip()).sink.clone();
    PendingHop::new(hop, ctx.started, ctx.meter.clone(), sink).attach(resp)
}

fn not_ours() -> Response {
    status_response(&Status::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}

/// The handler every bastion route points at.
///
/// An upgrade request answered with anything but a 101 ends its connection (`Connection: close`),
/// whoever refused it: the client may already be sending tunnel bytes, which must never be read as
/// a next request (the rule behind CVE-2018-1002105, applied to the bastion's own refusals too).
pub(crate) async fn handle(state: State<Arc<Shared>>, req: Request) -> Response {
    let upgrade = is_upgrade_request(&req);
    let resp = handle_request(state, req).await;
    if upgrade && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        status::closing(resp)
    } else {
        resp
    }
}

async fn handle_request(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    let meter = Meter::new();
    let req = meter_request(req, &meter);
    let conn = req.extensions().get::<ConnInfo>();
    let ctx = Ctx {
        started: Instant::now(),
        meter,
        client: conn.map_or(unknown, |c| c.remote),
        listener: conn.map_or(unknown, |c| c.local),
        tls: conn.is_some_and(|c| c.tls),
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        host: request_host(&req),
    };
    let raw_path = req.uri().path().to_owned();
    let parsed = match path::parse(&raw_path) {
        Ok(Some(p)) => p,
        Ok(None) => return not_ours(),
        Err(e) => return status_response(&Status::bad_request(e.to_string())),
    };
    let mut hop = ctx.hop(&shared);
    hop.target = Some(target_name(&parsed));

    let Some(user) = req.extensions().get::<User>().cloned() else {
        let r = status_response(&Status::unauthorized());
        return record(&shared, &ctx, hop, r, "unauthenticated");
    };
    if let Some(r) = authorize(&shared, &user, &req, &parsed) {
        return record(&shared, &ctx, hop, r, "forbidden");
    }
    if !wait_for_sync(&shared).await {
        let r = status_response(&Status::service_unavailable(
            "the apiserver proxy has not read the cluster yet (its watches have not synced); try again",
        ));
        return record(&shared, &ctx, hop, r, "not-synced");
    }
    match parsed.sub {
        Subresource::Proxy => proxy(&shared, &ctx, hop, req, &parsed).await,
        Subresource::Log => log(&shared, &ctx, hop, req, &parsed).await,
        _ => stream(&shared, &ctx, hop, req, &parsed).await,
    }
}

/// How long a request waits for the cluster model's first complete listing before it is refused
/// (a proxy that has just started answers its first requests instead of failing them).
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn wait_for_sync(shared: &Shared) -> bool {
    let view = shared.resolver.view();
    if view.snapshot().synced {
        return true;
    }
    let mut changed = view.subscribe();
    let synced = async {
        loop {
            if view.snapshot().synced {
                return;
            }
            if changed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::time::timeout(SYNC_WAIT, synced).await.is_ok()
}

/// `services/default/web:http`, `pods/default/web-1/exec`.
fn target_name(p: &ProxyPath<'_>) -> String {
    let ns = p
        .namespace
        .as_deref()
        .map(|n| format!("{n}/"))
        .unwrap_or_default();
    match p.sub {
        Subresource::Proxy => format!("{}/{ns}{}", p.resource.plural(), p.name),
        s => format!("{}/{ns}{}/{}", p.resource.plural(), p.name, s.as_str()),
    }
}

fn request_host<B>(req: &http::Request<B>) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// Every verb [`authz::checks`] asks for must be allowed; the first refusal is the answer.
fn authorize(shared: &Shared, user: &User, req: &Request, p: &ProxyPath<'_>) -> Option<Response> {
    for verb in authz::checks(req.method(), p.sub) {
        let attrs = Attributes {
            user,
            verb: &verb,
            resource: p.resource,
            subresource: p.sub,
            namespace: p.namespace.as_deref().unwrap_or(""),
            name: &p.name,
        };
        if let Decision::Deny(reason) = shared.authorizer.authorize(&attrs) {
            let mut s = Status::forbidden(attrs.forbidden_message(&reason));
            s.details = Some(Details {
                name: p.name.clone(),
                group: String::new(),
                kind: p.resource.plural().to_owned(),
                causes: Vec::new(),
                retry_after_seconds: None,
            });
            return Some(status_response(&s));
        }
    }
    None
}

fn resolve_failed(shared: &Shared, ctx: &Ctx, hop: HopRecord, e: &ResolveError) -> Response {
    let r = status_response(&status::from_resolve(e));
    let outcome = match e {
        ResolveError::NotFound { .. } => "not-found",
        ResolveError::BadRequest(_) => "rejected",
        ResolveError::Unavailable(_) => "no-endpoints",
        ResolveError::Internal(_) => "internal",
    };
    record(shared, ctx, hop, r, outcome)
}

/// The source address for a request that arrived on `listener`.
fn source_for(shared: &Shared, listener: IpAddr) -> Option<IpAddr> {
    match shared.source {
        crate::SourceAddress::System => None,
        crate::SourceAddress::Fixed(ip) => Some(ip),
        crate::SourceAddress::Listener => (!listener.is_unspecified()).then_some(listener),
    }
}

fn uri(s: &str) -> Result<Uri, Status> {
    s.parse()
        .map_err(|e| Status::bad_request(format!("cannot build the backend URL {s:?}: {e}")))
}

async fn send(
    shared: &Shared,
    ctx: &Ctx,
    dest: &Destination,
    req: Request,
    target: Uri,
) -> Result<Response, ProxyError> {
    let transport = shared
        .transports
        .get(source_for(shared, ctx.listener.ip()), dest.kind);
    let fwd = Forward {
        target,
        client: Some(ctx.client).filter(|c| !c.ip().is_unspecified()),
        proto: if ctx.tls { "https" } else { "http" },
        via: shared.via.clone(),
        tunnels: Some(shared.tunnels.clone()),
        shutdown: Some(shared.shutdown.clone()),
        meter: Some(ctx.meter.clone()),
    };
    forward(&transport, req, &fwd).await
}

fn forward_failed(
    shared: &Shared,
    ctx: &Ctx,
    hop: HopRecord,
    e: &ProxyError,
    upgrade: bool,
) -> Response {
    let mut r = status_response(&status::from_proxy_error(e, upgrade));
    if e.closes_connection() {
        r = status::closing(r);
    }
    record(shared, ctx, hop, r, e.kind())
}

fn with_destination(hop: &mut HopRecord, dest: &Destination) {
    hop.endpoint = Some(dest.endpoint.clone());
    hop.reason = Some(dest.reason.clone());
    hop.upstream = dest.socket_addr();
}

/// `…/proxy[/path]`: the generic proxy to a service endpoint, a pod or a node.
async fn proxy(
    shared: &Shared,
    ctx: &Ctx,
    mut hop: HopRecord,
    mut req: Request,
    p: &ProxyPath<'_>,
) -> Response {
    let dest = match shared.resolver.proxy(
        p.resource,
        p.namespace.as_deref().unwrap_or(""),
        &p.name,
        Some(ctx.client.ip()),
    ) {
        Ok(d) => d,
        Err(e) => return resolve_failed(shared, ctx, hop, &e),
    };
    with_destination(&mut hop, &dest);
    let upgrade = is_upgrade_request(&req);
    let query = req.uri().query().map(str::to_owned);
    // kube-apiserver's `proxyRedirectsforRootPath` (after resolution, never for an upgrade).
    if !upgrade && p.backend_path.is_empty() && matches!(*req.method(), Method::GET | Method::HEAD)
    {
        let location = match &query {
            Some(q) => format!("{}/?{q}", ctx.path),
            None => format!("{}/", ctx.path),
        };
        let r = status::redirect(&location);
        return record(shared, ctx, hop, r, "redirect");
    }
    let path = match path::backend_path(p.backend_path) {
        p if p.is_empty() => "/".to_owned(),
        p => p,
    };
    let target = match &query {
        Some(q) => format!("{}{path}?{q}", dest.authority_url()),
        None => format!("{}{path}", dest.authority_url()),
    };
    let target = match uri(&target) {
        Ok(u) => u,
        Err(s) => {
            let r = status_response(&s);
            return record(shared, ctx, hop, r, "rejected");
        }
    };
    let backend_host = target
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let headers = req.headers_mut();
    rewrite::strip_credentials(headers);
    if let Ok(v) = HeaderValue::from_str(&rewrite::forwarded_uri(p.prefix, p.backend_path)) {
        headers.insert(rewrite::X_FORWARDED_URI, v);
    }
    let mut resp = match send(shared, ctx, &dest, req, target).await {
        Ok(r) => r,
        Err(e) => return forward_failed(shared, ctx, hop, &e, upgrade),
    };
    let status = resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        rewrite::strip_cors(resp.headers_mut());
        let had_location =
            rewrite::rewrite_location(resp.headers_mut(), &backend_host, &ctx.host, p.prefix);
        if !had_location && is_html(&resp) {
            resp = rewrite_html(resp, &backend_host, &ctx.host, p.prefix);
        }
    }
    let outcome = match status {
        StatusCode::SWITCHING_PROTOCOLS => "upgraded",
        _ if upgrade => "upgrade-refused",
        _ => "ok",
    };
    // The pick (least-conn's count) is held until the response head is ready.
    let resp = record(shared, ctx, hop, resp, outcome);
    drop(dest);
    resp
}

fn is_html(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"))
}

fn rewrite_html(resp: Response, backend_host: &str, request_host: &str, prefix: &str) -> Response {
    let encoding = Encoding::from_header(
        resp.headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let Some(encoding) = encoding else {
        // An encoding we cannot decode (br, zstd): passed through, as kube-apiserver does.
        return resp;
    };
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let rewriter = HtmlRewriter::new(backend_host, request_host, prefix);
    Response::from_parts(parts, Body::new(RewriteBody::new(body, encoding, rewriter)))
}

/// The query of a request as (key, value) pairs.
fn query_pairs(req: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn first<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Go's `strconv.ParseBool`, as kube reads boolean query parameters.
fn parse_bool(key: &str, v: &str) -> Result<bool, Status> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(Status::bad_request(format!(
            "invalid value {v:?} for query parameter {key:?}: expected true or false"
        ))),
    }
}

/// The pod and the kubelet of its node, for log/exec/attach/portforward.
fn pod_and_kubelet(
    shared: &Shared,
    p: &ProxyPath<'_>,
    container: Option<Option<&str>>,
) -> Result<(Destination, Option<String>), ResolveError> {
    let snap = shared.resolver.view().snapshot();
    let ns = p.namespace.as_deref().unwrap_or("");
    let pod = shared.resolver.get_pod(&snap, ns, &p.name)?;
    let container = match container {
        Some(requested) => Some(container_of(pod, requested)?),
        None => None,
    };
    let kubelet = shared.resolver.kubelet_of(&snap, pod)?;
    Ok((kubelet, container))
}

/// `pods/log`: the kubelet's `/containerLogs/{ns}/{pod}/{container}`, streamed; a kubelet error
/// becomes a Status.
async fn log(
    shared: &Shared,
    ctx: &Ctx,
    mut hop: HopRecord,
    req: Request,
    p: &ProxyPath<'_>,
) -> Response {
    let q = query_pairs(&req);
    let (kubelet, container) = match pod_and_kubelet(shared, p, Some(first(&q, "container"))) {
        Ok(x) => x,
        Err(e) => return resolve_failed(shared, ctx, hop, &e),
    };
    with_destination(&mut hop, &kubelet);
    let container = container.unwrap_or_default();
    let params = match log_params(&q) {
        Ok(p) => p,
        Err(s) => {
            let r = status_response(&s);
            return record(shared, ctx, hop, r, "rejected");
        }
    };
    let ns = p.namespace.as_deref().unwrap_or("");
    let mut target = format!(
        "{}/containerLogs/{ns}/{}/{container}",
        kubelet.authority_url(),
        p.name
    );
    if !params.is_empty() {
        target.push('?');
        target.push_str(&params);
    }
    let target = match uri(&target) {
        Ok(u) => u,
        Err(s) => {
            let r = status_response(&s);
            return record(shared, ctx, hop, r, "rejected");
        }
    };
    // A fresh request: none of the user's headers go to the kubelet (kube's LocationStreamer).
    let mut out = Request::new(Body::empty());
    *out.method_mut() = Method::GET;
    let resp = match send(shared, ctx, &kubelet, out, target).await {
        Ok(r) => r,
        Err(e) => return forward_failed(shared, ctx, hop, &e, false),
    };
    let code = resp.status();
    if !code.is_success() {
        let addrs = resp.extensions().get::<UpstreamAddrs>().copied();
        let body = read_limited(resp.into_body()).await;
        let s = status::from_kubelet(code.as_u16(), &body, "pods/log", &p.name);
        let mut r = status_response(&s);
        if let Some(a) = addrs {
            r.extensions_mut().insert(a);
        }
        return record(shared, ctx, hop, r, "upstream-error");
    }
    let (parts, body) = resp.into_parts();
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if let Some(a) = parts.extensions.get::<UpstreamAddrs>() {
        r.extensions_mut().insert(*a);
    }
    record(shared, ctx, hop, r, "ok")
}

/// PodLogOptions → the kubelet's parameters (kube's `LogLocation`): booleans only when true, the
/// rest as given (the kubelet validates them), anything else dropped.
fn log_params(q: &[(String, String)]) -> Result<String, Status> {
    let mut params = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in q {
        match k.as_str() {
            "follow" | "previous" | "timestamps" if parse_bool(k, v)? => {
                params.append_pair(k, "true");
            }
            "sinceSeconds" | "sinceTime" | "tailLines" | "limitBytes" | "stream" => {
                params.append_pair(k, v);
            }
            _ => {}
        }
    }
    Ok(params.finish())
}

async fn read_limited(body: Body) -> String {
    let mut body = body;
    let mut out = Vec::new();
    while out.len() < MAX_ERROR_BODY {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    out.extend_from_slice(&d);
                }
            }
            _ => break,
        }
    }
    out.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&out).into_owned()
}

/// exec, attach, portforward: upgrades to the kubelet, with kube's query translation.
async fn stream(
    shared: &Shared,
    ctx: &Ctx,
    mut hop: HopRecord,
    mut req: Request,
    p: &ProxyPath<'_>,
) -> Response {
    if !is_upgrade_request(&req) {
        let r = status_response(&Status::bad_request("Upgrade request required"));
        return record(shared, ctx, hop, r, "rejected");
    }
    let q = query_pairs(&req);
    let wants_container = p.sub != Subresource::PortForward;
    let (kubelet, container) =
        match pod_and_kubelet(shared, p, wants_container.then(|| first(&q, "container"))) {
            Ok(x) => x,
            Err(e) => return resolve_failed(shared, ctx, hop, &e),
        };
    with_destination(&mut hop, &kubelet);
    let params = match stream_params(p.sub, &q) {
        Ok(s) => s,
        Err(s) => {
            let r = status::closing(status_response(&s));
            return record(shared, ctx, hop, r, "rejected");
        }
    };
    let ns = p.namespace.as_deref().unwrap_or("");
    let mut target = match (p.sub, container) {
        (Subresource::PortForward, _) | (_, None) => {
            format!("{}/portForward/{ns}/{}", kubelet.authority_url(), p.name)
        }
        (sub, Some(c)) => format!(
            "{}/{}/{ns}/{}/{c}",
            kubelet.authority_url(),
            sub.as_str(),
            p.name
        ),
    };
    if !params.is_empty() {
        target.push('?');
        target.push_str(&params);
    }
    let target = match uri(&target) {
        Ok(u) => u,
        Err(s) => {
            let r = status::closing(status_response(&s));
            return record(shared, ctx, hop, r, "rejected");
        }
    };
    rewrite::strip_credentials(req.headers_mut());
    let resp = match send(shared, ctx, &kubelet, req, target).await {
        Ok(r) => r,
        Err(e) => return forward_failed(shared, ctx, hop, &e, true),
    };
    let outcome = if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        "upgraded"
    } else {
        "upgrade-refused"
    };
    record(shared, ctx, hop, resp, outcome)
}

/// kube's `streamParams`: `stdin/stdout/stderr/tty=true` → `input/output/error/tty=1`, `command`
/// kept in order; for portforward, `ports` → `port` (comma-joined).
fn stream_params(sub: Subresource, q: &[(String, String)]) -> Result<String, Status> {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    if sub == Subresource::PortForward {
        let ports: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "ports" || k == "port")
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        for port in &ports {
            if port.parse::<u16>().map_or(true, |n| n == 0) {
                return Err(Status::bad_request(format!(
                    "invalid port {port:?}: a port is a number from 1 to 65535"
                )));
            }
        }
        if !ports.is_empty() {
            out.append_pair("port", &ports.join(","));
        }
        return Ok(out.finish());
    }
    for (param, kubelet) in [
        ("stdin", "input"),
        ("stdout", "output"),
        ("stderr", "error"),
        ("tty", "tty"),
    ] {
        if let Some(v) = first(q, param)
            && parse_bool(param, v)?
        {
            out.append_pair(kubelet, "1");
        }
    }
    if sub == Subresource::Exec {
        for (k, v) in q {
            if k == "command" {
                out.append_pair("command", v);
            }
        }
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(s.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn exec_and_portforward_parameters_are_translated() {
        assert_eq!(
            stream_params(
                Subresource::Exec,
                &q("command=sh&command=-c&command=echo%20hi&stdin=true&stdout=1&stderr=false&tty=true&container=echo")
            )
            .unwrap(),
            "input=1&output=1&tty=1&command=sh&command=-c&command=echo+hi"
        );
        assert_eq!(
            stream_params(Subresource::Attach, &q("stdout=true&command=ignored")).unwrap(),
            "output=1"
        );
        assert_eq!(
            stream_params(Subresource::PortForward, &q("ports=8080&ports=8443")).unwrap(),
            "port=8080%2C8443"
        );
        assert!(stream_params(Subresource::PortForward, &q("ports=http")).is_err());
        assert!(stream_params(Subresource::Exec, &q("stdin=yes")).is_err());
    }

    #[test]
    fn hop_targets_name_the_subresource() {
        let p = path::parse("/api/v1/namespaces/default/pods/web-1/exec")
            .unwrap()
            .unwrap();
        assert_eq!(target_name(&p), "pods/default/web-1/exec");
        let p = path::parse("/api/v1/nodes/node-1:10250/proxy/healthz")
            .unwrap()
            .unwrap();
        assert_eq!(target_name(&p), "nodes/node-1:10250");
    }
}
