//! Stitching hop records from several proxies into paths.
//!
//! Every proxy records its own hops ([`HopRecord`]) and knows nothing of the others. A request's
//! whole path is recovered afterwards, from addresses alone:
//!
//! - **exact**: hop B follows hop A when A's `upstream_local` (the source address of the connection
//!   A opened) is B's `client`. This works for every proxy that dials its own connection per hop —
//!   L4 relays, the bastion, an HTTP proxy that reads its pooled connection's local address — and
//!   needs nothing from the payload, so it works for TLS passed through and for UDP too.
//! - **inferred**: a hop that records no `upstream_local` (an HTTP proxy that cannot tell which
//!   pooled connection carried the request) is joined to an HTTP hop B when A's upstream is B's
//!   listener (same IP: a balancer in between may change the port), the request lines match (the
//!   same method; one path ends with the other, since a proxy may strip or add a prefix) and B
//!   started while A was in flight. Marked [`Join::Inferred`]: two identical requests at the same
//!   moment could be swapped.
//!
//! Source ports are reused, so an `upstream_local` may match several later `client`s; the parent
//! chosen is the latest that started no later than the child (clocks of one machine, with
//! [`SLACK_MS`] of tolerance: a child's record may be stamped a hair before its parent's).
//!
//! One connection may carry many requests, and one request may ride a connection opened long
//! before it: kubectl proxy's pooled connection through the HA balancer is one L4 hop (recorded
//! when it closes, or shown `open` meanwhile) under every request sent over it. [`parents`] gives
//! each record one parent, so such a connection hangs under the request that opened it.
//! [`request_path`] follows one request instead: from its first hop, each next hop is one that
//! was live *while that request was in flight* — an HTTP hop that started then, or a connection
//! that was open then — so the path goes through the shared connection to this request's own hop
//! behind it.
//!
//! `proxylab trace` follows one request from its own socket ([`request_path`]); the lab page draws
//! the paths of all recent requests ([`parents`], [`path_from`]).

use std::collections::HashMap;
use std::net::SocketAddr;

use super::HopRecord;

/// Tolerance, in milliseconds, when comparing start times across hops.
pub const SLACK_MS: f64 = 5.0;

/// How a hop was joined to the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Join {
    /// The previous hop's upstream local address is this hop's client address.
    Exact,
    /// Matched by request line and timing (see the module docs).
    Inferred,
}

/// The hop a record followed: its index in the slice given to [`parents`], and how it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub index: usize,
    pub join: Join,
}

/// Milliseconds since the epoch, for comparing start times.
fn start_ms(h: &HopRecord) -> f64 {
    h.time.as_nanosecond() as f64 / 1e6
}

/// For every record, the record it followed, if any (see the module docs). The order of `hops`
/// does not matter.
pub fn parents(hops: &[HopRecord]) -> Vec<Option<Parent>> {
    let mut by_upstream_local: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
    for (i, h) in hops.iter().enumerate() {
        if let Some(u) = h.upstream_local {
            by_upstream_local.entry(u).or_default().push(i);
        }
    }
    hops.iter()
        .enumerate()
        .map(|(ci, c)| {
            let c_start = start_ms(c);
            let exact = by_upstream_local
                .get(&c.client)
                .into_iter()
                .flatten()
                .copied()
                .filter(|&pi| pi != ci && start_ms(&hops[pi]) <= c_start + SLACK_MS)
                .max_by(|&a, &b| start_ms(&hops[a]).total_cmp(&start_ms(&hops[b])));
            if let Some(index) = exact {
                return Some(Parent {
                    index,
                    join: Join::Exact,
                });
            }
            inferred_parent(hops, ci).map(|index| Parent {
                index,
                join: Join::Inferred,
            })
        })
        .collect()
}

fn inferred_parent(hops: &[HopRecord], ci: usize) -> Option<usize> {
    let c = &hops[ci];
    let ch = c.http.as_ref()?;
    let c_start = start_ms(c);
    hops.iter()
        .enumerate()
        .filter(|&(pi, p)| {
            let Some(ph) = p.http.as_ref() else {
                return false;
            };
            let p_start = start_ms(p);
            pi != ci
                && p.upstream_local.is_none()
                && p.upstream.is_some_and(|u| u.ip() == c.listener.ip())
                && ph.method == ch.method
                && (ph.path.ends_with(&ch.path) || ch.path.ends_with(&ph.path))
                && p_start <= c_start + SLACK_MS
                && c_start <= p_start + p.duration_ms + SLACK_MS
        })
        .min_by(|(_, a), (_, b)| {
            (start_ms(a) - c_start)
                .abs()
                .total_cmp(&(start_ms(b) - c_start).abs())
        })
        .map(|(pi, _)| pi)
}

/// The path of the one request whose first hop is `root`: `root`, then each hop that followed it,
/// with how it was joined (`None` for `root`). See the module docs: a next hop is joined exactly
/// (its client is this hop's upstream local address) when it was live while the request was in
/// flight — an HTTP hop that started then, a connection hop that was open then — or else
/// inferred by request line and time. The request's time window is its first hop's, narrowed to
/// each HTTP hop's on the way.
pub fn request_path(hops: &[HopRecord], root: usize) -> Vec<(usize, Option<Join>)> {
    if root >= hops.len() {
        return Vec::new();
    }
    let mut seen = vec![false; hops.len()];
    seen[root] = true;
    let mut out = vec![(root, None)];
    let mut window = lifetime(&hops[root]);
    let mut cur = root;
    loop {
        let next = next_exact(hops, cur, window, &seen)
            .map(|i| (i, Join::Exact))
            .or_else(|| {
                (0..hops.len())
                    .find(|&ci| !seen[ci] && inferred_parent(hops, ci) == Some(cur))
                    .map(|i| (i, Join::Inferred))
            });
        let Some((i, join)) = next else {
            return out;
        };
        seen[i] = true;
        out.push((i, Some(join)));
        if hops[i].http.is_some() {
            window = lifetime(&hops[i]);
        }
        cur = i;
    }
}

/// From a hop's start to its end, widened by [`SLACK_MS`] each side.
fn lifetime(h: &HopRecord) -> (f64, f64) {
    let start = start_ms(h);
    (start - SLACK_MS, start + h.duration_ms + SLACK_MS)
}

fn next_exact(
    hops: &[HopRecord],
    cur: usize,
    (from, to): (f64, f64),
    seen: &[bool],
) -> Option<usize> {
    let up = hops[cur].upstream_local?;
    let live = |h: &HopRecord| {
        let start = start_ms(h);
        if h.http.is_some() {
            // A request hop of this request starts while the request is in flight.
            from <= start && start <= to
        } else {
            // A connection that was open at some point while the request was in flight.
            start <= to && from <= start + h.duration_ms + SLACK_MS
        }
    };
    hops.iter()
        .enumerate()
        .filter(|&(i, h)| !seen[i] && h.client == up && live(h))
        // Several: a source port reused within the window, or requests in parallel on one
        // connection; the one that started nearest the request's start.
        .min_by(|(_, a), (_, b)| {
            (start_ms(a) - from)
                .abs()
                .total_cmp(&(start_ms(b) - from).abs())
        })
        .map(|(i, _)| i)
}

/// The path that starts at `root`: it, then the hops that followed it, depth first, each level in
/// start order. Every entry is `(index, depth)`; a linear path has depths 0, 1, 2, …
pub fn path_from(
    hops: &[HopRecord],
    parents: &[Option<Parent>],
    root: usize,
) -> Vec<(usize, usize)> {
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    for (ci, p) in parents.iter().enumerate() {
        if let Some(p) = p {
            children.entry(p.index).or_default().push(ci);
        }
    }
    for list in children.values_mut() {
        list.sort_by(|&a, &b| start_ms(&hops[a]).total_cmp(&start_ms(&hops[b])));
    }
    let mut out = Vec::new();
    // An explicit stack (children pushed in reverse): no recursion, and a cycle — impossible with
    // real records, but records are input — is cut by the `seen` check.
    let mut seen = vec![false; hops.len()];
    let mut stack = vec![(root, 0usize)];
    while let Some((i, depth)) = stack.pop() {
        if i >= hops.len() || std::mem::replace(&mut seen[i], true) {
            continue;
        }
        out.push((i, depth));
        if let Some(cs) = children.get(&i) {
            stack.extend(cs.iter().rev().map(|&c| (c, depth + 1)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::HttpHop;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn hop(proxy: &'static str, client: &str, listener: &str, at_ms: i64) -> HopRecord {
        let mut h = HopRecord::start(proxy, "i", "tcp", addr(client), addr(listener));
        h.time = jiff::Timestamp::from_millisecond(1_700_000_000_000 + at_ms).unwrap();
        h
    }

    #[test]
    fn upstream_local_to_client_joins_exactly_in_any_order() {
        let mut lb = hop("cloud-lb", "127.0.0.1:5000", "127.0.50.1:80", 0);
        lb.upstream_local = Some(addr("127.0.50.1:40000"));
        lb.upstream = Some(addr("127.0.20.1:30080"));
        let mut fwd = hop("forwarder", "127.0.50.1:40000", "127.0.20.1:30080", 1);
        fwd.upstream_local = Some(addr("127.0.20.1:41000"));
        fwd.upstream = Some(addr("127.0.30.4:8080"));
        // Another connection that reused nothing of ours.
        let other = hop("forwarder", "127.0.0.1:5001", "127.0.40.10:80", 2);
        // The inner hop ends first, so it is usually recorded first.
        let hops = vec![fwd, other, lb];
        let ps = parents(&hops);
        assert_eq!(
            ps,
            [
                Some(Parent {
                    index: 2,
                    join: Join::Exact
                }),
                None,
                None
            ]
        );
        assert_eq!(path_from(&hops, &ps, 2), [(2, 0), (0, 1)]);
    }

    #[test]
    fn a_reused_source_port_joins_the_latest_earlier_hop_not_a_later_one() {
        let mut old = hop("forwarder", "127.0.0.1:1", "127.0.40.10:80", 0);
        old.upstream_local = Some(addr("127.0.20.1:41000"));
        let mut newer = hop("forwarder", "127.0.0.1:2", "127.0.40.10:80", 1000);
        newer.upstream_local = Some(addr("127.0.20.1:41000"));
        let mut later = hop("forwarder", "127.0.0.1:3", "127.0.40.10:80", 5000);
        later.upstream_local = Some(addr("127.0.20.1:41000"));
        let child = hop("x", "127.0.20.1:41000", "127.0.30.4:8080", 1001);
        let hops = vec![old, newer, later, child];
        assert_eq!(
            parents(&hops)[3],
            Some(Parent {
                index: 1,
                join: Join::Exact
            })
        );
    }

    #[test]
    fn a_pooled_http_hop_is_joined_by_request_line_and_time() {
        let http = |path: &str| {
            Some(HttpHop {
                method: "GET".into(),
                path: path.into(),
                host: None,
                status: Some(200),
            })
        };
        let mut auth = hop("auth-proxy", "127.0.0.1:5000", "127.0.0.1:8001", 0);
        auth.upstream = Some(addr("127.0.10.1:6443"));
        auth.duration_ms = 20.0;
        auth.http = http("/api/v1/namespaces/default/services/web/proxy/hostname");
        let mut bastion = hop("bastion", "127.0.0.1:43000", "127.0.10.1:6443", 3);
        bastion.http = http("/api/v1/namespaces/default/services/web/proxy/hostname");
        // The same request line, but after the auth-proxy's hop was over.
        let mut late = hop("bastion", "127.0.0.1:43000", "127.0.10.1:6443", 40);
        late.http = bastion.http.clone();
        // Within the window, but another path.
        let mut other = hop("bastion", "127.0.0.1:43000", "127.0.10.1:6443", 4);
        other.http = http("/api/v1/namespaces/default/pods/web-1/proxy/");
        let hops = vec![auth, bastion, late, other];
        let ps = parents(&hops);
        assert_eq!(
            ps[1],
            Some(Parent {
                index: 0,
                join: Join::Inferred
            })
        );
        assert_eq!(ps[2], None);
        assert_eq!(ps[3], None);
    }

    /// kubectl proxy's pooled connection through an L4 balancer carries two requests; each
    /// request's path goes through that one connection to its own apiserver hop.
    #[test]
    fn a_request_path_crosses_a_shared_connection_to_its_own_hop() {
        let http = |path: &str| {
            Some(HttpHop {
                method: "GET".into(),
                path: path.into(),
                host: None,
                status: Some(200),
            })
        };
        let request = |client: &str, at_ms: i64, path: &str| {
            let mut h = hop("auth-proxy", client, "127.0.0.1:8001", at_ms);
            h.upstream_local = Some(addr("127.0.0.1:40000"));
            h.upstream = Some(addr("127.0.0.1:6443"));
            h.duration_ms = 10.0;
            h.http = http(path);
            h
        };
        let first = request("127.0.0.1:5000", 0, "/a");
        // The connection the first request opened, still open 1 s later (`open`, duration so far).
        let mut conn = hop("ha-balancer", "127.0.0.1:40000", "127.0.0.1:6443", 2);
        conn.upstream_local = Some(addr("127.0.0.1:41000"));
        conn.upstream = Some(addr("127.0.10.2:6443"));
        conn.duration_ms = 1000.0;
        conn.outcome = "open".into();
        let bastion = |at_ms: i64, path: &str| {
            let mut h = hop("bastion", "127.0.0.1:41000", "127.0.10.2:6443", at_ms);
            h.duration_ms = 5.0;
            h.http = http(path);
            h
        };
        let second = request("127.0.0.1:5001", 500, "/b");
        let hops = vec![first, conn, bastion(3, "/a"), second, bastion(502, "/b")];
        let path = |root| {
            request_path(&hops, root)
                .into_iter()
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        assert_eq!(path(0), [0, 1, 2]);
        assert_eq!(path(3), [3, 1, 4]);
        assert_eq!(request_path(&hops, 3)[1].1, Some(Join::Exact));
        // The tree hangs the connection under the request that opened it.
        assert_eq!(parents(&hops)[1].map(|p| p.index), Some(0));
        // A request after the connection closed does not go through it.
        let mut closed = hops.clone();
        closed[1].duration_ms = 100.0;
        closed[1].outcome = "ok".into();
        assert_eq!(
            request_path(&closed, 3)
                .into_iter()
                .map(|(i, _)| i)
                .collect::<Vec<_>>(),
            [3]
        );
        assert!(request_path(&hops, 99).is_empty());
    }

    #[test]
    fn a_cycle_in_bad_input_ends_the_path() {
        let mut a = hop("a", "127.0.0.1:1", "127.0.0.1:2", 0);
        a.upstream_local = Some(addr("127.0.0.1:3"));
        let mut b = hop("b", "127.0.0.1:3", "127.0.0.1:4", 0);
        b.upstream_local = Some(addr("127.0.0.1:1"));
        let hops = vec![a, b];
        let ps = parents(&hops);
        assert_eq!(path_from(&hops, &ps, 0), [(0, 0), (1, 1)]);
    }
}
