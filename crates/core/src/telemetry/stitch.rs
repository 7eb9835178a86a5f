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
//! `proxylab trace` follows one request from its own socket; the lab page draws the paths of all
//! recent requests. Both use this module, so they always agree.

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
