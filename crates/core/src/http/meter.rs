//! Metering one request through a proxy, and finishing its hop record when it is really over.
//!
//! A proxied request is not over when the handler returns: its response body may stream for
//! minutes (a watch, `logs -f`), and an upgrade becomes a tunnel that lives until either side
//! closes. So a proxy builds its [`HopRecord`] when the response head is ready and hands it to a
//! [`PendingHop`], which finishes it — duration, bytes each way, and how it ended — when the body
//! ends or the tunnel closes, then gives it to a [`HopSink`] (hop log, access line):
//!
//! ```text
//!  request  ──► meter_request(req, &meter)        counts request body bytes into meter.up
//!           ──► forward(…, Forward { meter: Some(meter), … })   a tunnel counts into meter.up/down
//!  response ──► PendingHop::new(record, started, meter, sink).attach(resp)
//!                 body ends            → outcome kept            (`ok`)
//!                 body fails           → `upstream-cut`          the upstream cut the stream
//!                 body dropped early   → `client-closed`         the client went away mid-body
//!                 101 → tunnel closes  → `upgraded`, or `upstream-cut` if the upstream side failed
//! ```
//!
//! A cut stream is recorded as cut, never as `ok`: the status (already sent) stays what it was,
//! the outcome says the client did not get the whole body. Only an `ok` (or `upgraded`) outcome is
//! refined this way; a hop that already failed keeps its reason.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;

use crate::telemetry::{HopRecord, HopSink};

/// Byte counts of one request's exchange, and how its tunnel ended. Shared by the request body
/// wrapper, [`forward`](super::forward)'s tunnel and the [`PendingHop`].
#[derive(Debug, Default)]
pub struct Meter {
    /// Client → upstream: request body bytes, then tunnel bytes.
    pub up: AtomicU64,
    /// Upstream → client: response body bytes, then tunnel bytes.
    pub down: AtomicU64,
    /// How the tunnel ended ([`TunnelEnd`] as u8).
    end: AtomicU8,
    done: AtomicBool,
    closed: tokio::sync::Notify,
}

/// How an upgraded tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TunnelEnd {
    /// Not ended (or never set up).
    Open = 0,
    /// A side closed its half in order (EOF): the usual end of an exec or port-forward.
    Closed = 1,
    /// The upstream side failed (reset, read or write error).
    UpstreamCut = 2,
    /// The client side failed.
    ClientCut = 3,
    /// The proxy shut down.
    Shutdown = 4,
    /// The upgrade did not complete on one side.
    Failed = 5,
}

impl Meter {
    /// A fresh meter, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Marks the tunnel ended (once; later calls are ignored) and wakes whoever waits for it.
    pub fn close_tunnel(&self, how: TunnelEnd) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        self.end.store(how as u8, Ordering::Release);
        // A stored permit: a waiter that comes later still wakes.
        self.closed.notify_one();
    }

    /// Whether the tunnel has ended.
    pub fn tunnel_closed(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// How the tunnel ended.
    pub fn tunnel_end(&self) -> TunnelEnd {
        match self.end.load(Ordering::Acquire) {
            1 => TunnelEnd::Closed,
            2 => TunnelEnd::UpstreamCut,
            3 => TunnelEnd::ClientCut,
            4 => TunnelEnd::Shutdown,
            5 => TunnelEnd::Failed,
            _ => TunnelEnd::Open,
        }
    }

    /// Waits until the tunnel has ended.
    pub async fn tunnel_ended(&self) {
        if !self.tunnel_closed() {
            self.closed.notified().await;
        }
    }
}

/// Counts `req`'s body bytes into `meter.up`. A request without a body is passed as it is (no
/// wrapper, no allocation).
pub fn meter_request(req: Request<Body>, meter: &Arc<Meter>) -> Request<Body> {
    if http_body::Body::is_end_stream(req.body()) {
        return req;
    }
    let meter = meter.clone();
    req.map(|inner| Body::new(CountedBody { inner, meter }))
}

struct CountedBody {
    inner: Body,
    meter: Arc<Meter>,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(d) = frame.data_ref()
        {
            self.meter.up.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A hop record waiting for its request to be over. See the module docs.
pub struct PendingHop {
    record: HopRecord,
    started: Instant,
    meter: Arc<Meter>,
    sink: Arc<HopSink>,
}

impl std::fmt::Debug for PendingHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingHop")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl PendingHop {
    /// `record` as built when the response head is known (status in `record.http`, outcome `ok`,
    /// `upgraded` or an error kind); `started` when the request arrived.
    pub fn new(record: HopRecord, started: Instant, meter: Arc<Meter>, sink: Arc<HopSink>) -> Self {
        Self {
            record,
            started,
            meter,
            sink,
        }
    }

    /// Finishes the hop when `resp` is over: for a 101, when the tunnel closes (a task waits for
    /// it); otherwise when the body ends, fails or is dropped.
    pub fn attach(self, resp: Response<Body>) -> Response<Body> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            tokio::spawn(async move {
                self.meter.tunnel_ended().await;
                let cut = match self.meter.tunnel_end() {
                    TunnelEnd::UpstreamCut => Some("upstream-cut"),
                    _ => None,
                };
                self.finish(cut);
            });
            return resp;
        }
        // Bodies a client never reads: hyper drops them unpolled, which is not a cut.
        let bodiless = self
            .record
            .http
            .as_ref()
            .is_some_and(|h| h.method == Method::HEAD.as_str())
            || resp.status().is_informational()
            || resp.status() == StatusCode::NO_CONTENT
            || resp.status() == StatusCode::NOT_MODIFIED;
        resp.map(|inner| {
            Body::new(FinishingBody {
                inner,
                bodiless,
                pending: Some(self),
            })
        })
    }

    /// Records the hop now, with `cut` as its outcome when it was `ok` or `upgraded`.
    fn finish(self, cut: Option<&'static str>) {
        let PendingHop {
            mut record,
            started,
            meter,
            sink,
        } = self;
        record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        record.bytes_up = meter.up.load(Ordering::Relaxed);
        record.bytes_down = meter.down.load(Ordering::Relaxed);
        if let Some(cut) = cut
            && (record.outcome == "ok" || record.outcome == "upgraded")
        {
            record.outcome = cut.into();
        }
        sink.finish(record);
    }
}

/// A response body that counts its bytes into the meter and finishes the hop at its end.
struct FinishingBody {
    inner: Body,
    bodiless: bool,
    pending: Option<PendingHop>,
}

impl http_body::Body for FinishingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(d), Some(p)) = (frame.data_ref(), &this.pending) {
                    p.meter.down.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(None) => {
                if let Some(p) = this.pending.take() {
                    p.finish(None);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                // The response body comes from the upstream: its failure is the upstream's.
                if let Some(p) = this.pending.take() {
                    p.finish(Some("upstream-cut"));
                }
            }
            Poll::Pending => {}
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for FinishingBody {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            // hyper stops polling once `is_end_stream` says the body is complete (a known length
            // fully sent): that is an end, not a client leaving.
            let complete = self.bodiless || http_body::Body::is_end_stream(&self.inner);
            p.finish((!complete).then_some("client-closed"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{HopLog, HttpHop, Metrics};
    use http_body_util::BodyExt;

    fn pending(method: &str) -> (PendingHop, Arc<HopLog>, Arc<Meter>) {
        let hops = HopLog::new(8, &Metrics::new());
        let mut record = HopRecord::start(
            "auth-proxy",
            "auth-proxy",
            "http",
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        record.http = Some(HttpHop {
            method: method.into(),
            path: "/".into(),
            host: None,
            status: Some(200),
        });
        let meter = Meter::new();
        let sink = Arc::new(HopSink::new(hops.clone()));
        (
            PendingHop::new(record, Instant::now(), meter.clone(), sink),
            hops,
            meter,
        )
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_is_ok_with_its_bytes() {
        let (p, hops, meter) = pending("POST");
        let req = meter_request(Request::new(Body::from("12345")), &meter);
        let _ = req.into_body().collect().await.unwrap();
        let resp = p.attach(Response::new(Body::from("abc")));
        let _ = resp.into_body().collect().await.unwrap();
        let h = &hops.recent(1)[0];
        assert_eq!((&*h.outcome, h.bytes_up, h.bytes_down), ("ok", 5, 3));
    }

    #[tokio::test]
    async fn a_failing_body_is_an_upstream_cut_and_a_dropped_one_client_closed() {
        let (p, hops, _) = pending("GET");
        let failing = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"chunk")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let resp = p.attach(Response::new(Body::from_stream(failing)));
        assert!(resp.into_body().collect().await.is_err());
        assert_eq!(&*hops.recent(1)[0].outcome, "upstream-cut");
        assert_eq!(hops.recent(1)[0].bytes_down, 5);

        let (p, hops, _) = pending("GET");
        let endless = futures_util::stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::new()));
        let resp = p.attach(Response::new(Body::from_stream(endless)));
        drop(resp);
        assert_eq!(&*hops.recent(1)[0].outcome, "client-closed");
    }

    #[tokio::test]
    async fn unpolled_bodies_of_head_and_known_length_are_not_cuts() {
        let (p, hops, _) = pending("HEAD");
        let endless = futures_util::stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::new()));
        drop(p.attach(Response::new(Body::from_stream(endless))));
        assert_eq!(&*hops.recent(1)[0].outcome, "ok");

        let (p, hops, _) = pending("GET");
        drop(p.attach(Response::new(Body::empty())));
        assert_eq!(&*hops.recent(1)[0].outcome, "ok");
    }

    #[tokio::test]
    async fn a_tunnel_finishes_when_it_closes() {
        let (p, hops, meter) = pending("GET");
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let _ = p.attach(resp);
        meter.up.store(4, Ordering::Relaxed);
        meter.close_tunnel(TunnelEnd::UpstreamCut);
        meter.close_tunnel(TunnelEnd::Closed); // ignored: already closed
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while hops.recent(1).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let h = &hops.recent(1)[0];
        assert_eq!((&*h.outcome, h.bytes_up), ("upstream-cut", 4));
    }
}
