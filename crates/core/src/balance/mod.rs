//! # Endpoint selection and load balancing, as kube-proxy does it
//!
//! Two questions are answered separately, in this order, because Kubernetes answers them separately:
//!
//! 1. **Which endpoints may receive this traffic at all?** [`usable_endpoints`] applies the traffic
//!    policy (`Cluster`: every node's endpoints; `Local`: only this node's), topology hints, and the
//!    endpoint conditions: `ready` endpoints, or — only when none is ready — the ones that are still
//!    `serving` while `terminating`, so a rolling update of the last pod does not black-hole traffic. This
//!    is kube-proxy's `CategorizeEndpoints`, computed separately for the Cluster and the Local set.
//! 2. **Which one of them gets this connection?** A [`Balancer`] holds the chosen set and picks with an
//!    [`Algorithm`]: round-robin over a list shuffled on each change (the userspace kube-proxy's
//!    `LoadBalancerRR`: shuffling spreads the first connections of many proxies that saw the same change),
//!    random, least-connections, random with two choices (HAProxy's `random(2)`, nginx's `random two`)
//!    or a hash of the client address (HAProxy's `balance source`, made a rendezvous hash); with
//!    `sessionAffinity: ClientIP` a client IP sticks to its endpoint for the affinity timeout after its
//!    last use.
//!
//! A [`Pick`] carries the endpoint and *why* it was chosen (for hop records) and counts as an active
//! connection on that endpoint until it is dropped (for least-connections and two choices).
//!
//! Balancers whose backends are health-checked (the HA balancer) judge each backend with
//! [`health::HealthState`]: rise/fall counting of check results, as HAProxy's `rise`/`fall`.
//!
//! Nothing here knows about sockets or the forwarder: the cloud load balancer reuses it.

pub mod health;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::cluster::{ResolvedEndpoint, TrafficPolicy};

/// How a [`Balancer`] picks among its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// kube-proxy's choice: round-robin over a list shuffled whenever the set changes.
    #[default]
    RoundRobin,
    Random,
    /// The endpoint with the fewest connections this balancer currently has open to it.
    LeastConn,
    /// Two endpoints drawn at random, the one with fewer connections wins ("the power of two
    /// choices"): nearly least-connections' spread, without every balancer that shares a stale view
    /// of the counts herding onto the same least-loaded endpoint.
    RandomTwo,
    /// The client address decides: the same client reaches the same endpoint while it is in the
    /// set. A rendezvous (highest-random-weight) hash, so when an endpoint leaves or joins only the
    /// clients that belong to it move, where HAProxy's default map-based `source` reshuffles many.
    /// Without a client address (a unix socket), round-robin.
    SourceHash,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round-robin",
            Algorithm::Random => "random",
            Algorithm::LeastConn => "least-conn",
            Algorithm::RandomTwo => "random-two",
            Algorithm::SourceHash => "source-hash",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown algorithm name.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown balancing algorithm {0:?} (expected round-robin, random, least-conn, random-two or source-hash)"
)]
pub struct UnknownAlgorithm(pub String);

impl std::str::FromStr for Algorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round-robin" | "roundrobin" | "rr" => Ok(Algorithm::RoundRobin),
            "random" => Ok(Algorithm::Random),
            "least-conn" | "leastconn" => Ok(Algorithm::LeastConn),
            // HAProxy spells it `random(2)`, nginx `random two`.
            "random-two" | "random(2)" | "random two" | "p2c" => Ok(Algorithm::RandomTwo),
            "source-hash" | "source" => Ok(Algorithm::SourceHash),
            other => Err(UnknownAlgorithm(other.to_string())),
        }
    }
}

/// Where the traffic is being routed from: the node the proxy runs on and its zone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Locality<'a> {
    pub node_name: Option<&'a str>,
    pub zone: Option<&'a str>,
}

/// The endpoints that may receive traffic under `policy`, in kube-proxy's order of preference:
///
/// - `Local` keeps only endpoints whose `nodeName` is this node (none when the node is unknown);
/// - for `Cluster`, topology hints narrow the ready set to this zone (or node) only when *every* ready
///   endpoint carries a hint and at least one matches; otherwise hints are ignored;
/// - `ready` endpoints are used; when none is ready, those both `serving` and `terminating` are.
pub fn usable_endpoints(
    eps: &[ResolvedEndpoint],
    policy: TrafficPolicy,
    here: Locality<'_>,
) -> Vec<SocketAddr> {
    let candidates: Vec<&ResolvedEndpoint> = match policy {
        TrafficPolicy::Cluster => eps.iter().collect(),
        TrafficPolicy::Local => eps
            .iter()
            .filter(|e| here.node_name.is_some() && e.node_name.as_deref() == here.node_name)
            .collect(),
    };
    let ready: Vec<&ResolvedEndpoint> = candidates
        .iter()
        .copied()
        .filter(|e| e.conditions.ready)
        .collect();
    if !ready.is_empty() {
        let mut chosen = ready.clone();
        if policy == TrafficPolicy::Cluster {
            if let Some(node) = here.node_name
                && ready.iter().all(|e| !e.hint_nodes.is_empty())
            {
                let same: Vec<_> = ready
                    .iter()
                    .copied()
                    .filter(|e| e.hint_nodes.iter().any(|n| n == node))
                    .collect();
                if !same.is_empty() {
                    chosen = same;
                }
            } else if let Some(zone) = here.zone
                && ready.iter().all(|e| !e.hint_zones.is_empty())
            {
                let same: Vec<_> = ready
                    .iter()
                    .copied()
                    .filter(|e| e.hint_zones.iter().any(|z| z == zone))
                    .collect();
                if !same.is_empty() {
                    chosen = same;
                }
            }
        }
        return chosen.iter().map(|e| e.addr).collect();
    }
    candidates
        .iter()
        .filter(|e| e.conditions.serving && e.conditions.terminating)
        .map(|e| e.addr)
        .collect()
}

/// Why an endpoint was picked; goes into hop records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickReason {
    /// The algorithm chose it.
    Algorithm(Algorithm),
    /// `sessionAffinity: ClientIP` sent the client back to its endpoint.
    Affinity,
}

impl std::fmt::Display for PickReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PickReason::Algorithm(a) => write!(f, "{a}"),
            PickReason::Affinity => f.write_str("client-ip-affinity"),
        }
    }
}

/// One endpoint inside a balancer, with its count of connections in flight.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    active: AtomicUsize,
}

impl Backend {
    /// Connections currently open through this balancer to this endpoint.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// A chosen endpoint. Counts as one active connection on it until dropped.
#[derive(Debug)]
pub struct Pick {
    pub addr: SocketAddr,
    pub reason: PickReason,
    backend: Arc<Backend>,
}

impl Drop for Pick {
    fn drop(&mut self) {
        self.backend.active.fetch_sub(1, Ordering::Relaxed);
    }
}

struct AffinityEntry {
    addr: SocketAddr,
    last_used: Instant,
}

/// A load balancer over one endpoint set (one service port, one traffic policy).
///
/// Reads are lock-free except for the affinity table; [`Balancer::update`] swaps the set atomically, so
/// picks made during an update see either the old or the new set, never a mix.
pub struct Balancer {
    algorithm: Algorithm,
    backends: ArcSwap<Vec<Arc<Backend>>>,
    next: AtomicUsize,
    /// `Some(ttl)` when ClientIP affinity is on.
    affinity_ttl: Mutex<Option<Duration>>,
    affinity: Mutex<HashMap<IpAddr, AffinityEntry>>,
}

/// The affinity table is pruned of expired entries once it grows past this many clients.
const AFFINITY_PRUNE_AT: usize = 4096;

impl Balancer {
    pub fn new(algorithm: Algorithm, affinity: Option<Duration>) -> Self {
        Self {
            algorithm,
            backends: ArcSwap::from_pointee(Vec::new()),
            next: AtomicUsize::new(0),
            affinity_ttl: Mutex::new(affinity),
            affinity: Mutex::new(HashMap::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Turns ClientIP affinity on (with its timeout) or off. Existing entries are kept when the timeout
    /// changes and dropped when affinity is turned off.
    pub fn set_affinity(&self, ttl: Option<Duration>) {
        let mut cur = self.affinity_ttl.lock();
        if ttl.is_none() {
            self.affinity.lock().clear();
        }
        *cur = ttl;
    }

    /// The current endpoints, in their (shuffled) order.
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.backends.load().iter().map(|b| b.addr).collect()
    }

    /// The current backends with their active-connection counts.
    pub fn backends(&self) -> Arc<Vec<Arc<Backend>>> {
        self.backends.load_full()
    }

    pub fn is_empty(&self) -> bool {
        self.backends.load().is_empty()
    }

    /// Replaces the endpoint set. When the set is unchanged nothing happens (no reshuffle, so a periodic
    /// resync does not disturb the rotation) and `false` is returned. Otherwise the new list is shuffled,
    /// the rotation restarts, endpoints that stay keep their connection counts, and affinity entries that
    /// point at removed endpoints are purged.
    pub fn update(&self, endpoints: &[SocketAddr]) -> bool {
        let cur = self.backends.load_full();
        let mut wanted: Vec<SocketAddr> = endpoints.to_vec();
        wanted.sort();
        wanted.dedup();
        let mut have: Vec<SocketAddr> = cur.iter().map(|b| b.addr).collect();
        have.sort();
        if have == wanted {
            return false;
        }
        let mut next: Vec<Arc<Backend>> = wanted
            .iter()
            .map(|a| {
                cur.iter()
                    .find(|b| b.addr == *a)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Backend {
                            addr: *a,
                            active: AtomicUsize::new(0),
                        })
                    })
            })
            .collect();
        next.shuffle(&mut rand::rng());
        self.backends.store(Arc::new(next));
        self.next.store(0, Ordering::Relaxed);
        self.affinity
            .lock()
            .retain(|_, e| wanted.binary_search(&e.addr).is_ok());
        true
    }

    /// Picks an endpoint for a connection from `client`.
    ///
    /// `tried` lists endpoints that already failed for this connection: they are avoided while another
    /// remains, and — as kube-proxy does — affinity is bypassed once anything has failed, so a client
    /// pinned to a dead endpoint is moved on. The new choice then becomes the client's affinity.
    pub fn pick(&self, client: Option<IpAddr>, tried: &[SocketAddr]) -> Option<Pick> {
        self.pick_as(self.algorithm, client, tried)
    }

    /// [`pick`](Self::pick) with another algorithm than the balancer's own, this once: the HA
    /// balancer places connections by least connections while it moves load back to a recovered
    /// backend, whatever its algorithm, so that each connection it closes lands where it is
    /// missing.
    pub fn pick_as(
        &self,
        algorithm: Algorithm,
        client: Option<IpAddr>,
        tried: &[SocketAddr],
    ) -> Option<Pick> {
        let list = self.backends.load();
        if list.is_empty() {
            return None;
        }
        let ttl = *self.affinity_ttl.lock();
        let now = Instant::now();
        if let (Some(ttl), Some(ip), true) = (ttl, client, tried.is_empty()) {
            let mut table = self.affinity.lock();
            if let Some(e) = table.get_mut(&ip)
                && now.duration_since(e.last_used) < ttl
                && let Some(b) = list.iter().find(|b| b.addr == e.addr)
            {
                e.last_used = now;
                return Some(Self::take(b, PickReason::Affinity));
            }
        }
        let allowed = |b: &Arc<Backend>| !tried.contains(&b.addr);
        let any_allowed = list.iter().any(allowed);
        let ok = |b: &Arc<Backend>| !any_allowed || allowed(b);
        let n = list.len();
        let chosen = match algorithm {
            Algorithm::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|i| &list[(start + i) % n]).find(|b| ok(b))
            }
            Algorithm::Random => {
                let start = rand::rng().random_range(0..n);
                (0..n).map(|i| &list[(start + i) % n]).find(|b| ok(b))
            }
            Algorithm::LeastConn => {
                // Ties rotate so equal endpoints share the load instead of the first one taking all.
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|i| &list[(start + i) % n])
                    .filter(|b| ok(b))
                    .min_by_key(|b| b.active())
            }
            Algorithm::RandomTwo => {
                let candidates: Vec<&Arc<Backend>> = list.iter().filter(|b| ok(b)).collect();
                let mut rng = rand::rng();
                match candidates.len() {
                    0 => None,
                    1 => Some(candidates[0]),
                    m => {
                        let a = rng.random_range(0..m);
                        // A second, different draw: shift by 1..m.
                        let b = (a + rng.random_range(1..m)) % m;
                        let (x, y) = (candidates[a], candidates[b]);
                        Some(if y.active() < x.active() { y } else { x })
                    }
                }
            }
            Algorithm::SourceHash => match client {
                Some(ip) => list
                    .iter()
                    .filter(|b| ok(b))
                    .max_by_key(|b| rendezvous_weight(ip, b.addr)),
                None => {
                    let start = self.next.fetch_add(1, Ordering::Relaxed);
                    (0..n).map(|i| &list[(start + i) % n]).find(|b| ok(b))
                }
            },
        }?;
        if let (Some(_), Some(ip)) = (ttl, client) {
            let mut table = self.affinity.lock();
            if table.len() >= AFFINITY_PRUNE_AT
                && let Some(ttl) = ttl
            {
                table.retain(|_, e| now.duration_since(e.last_used) < ttl);
            }
            table.insert(
                ip,
                AffinityEntry {
                    addr: chosen.addr,
                    last_used: now,
                },
            );
        }
        Some(Self::take(chosen, PickReason::Algorithm(algorithm)))
    }

    fn take(b: &Arc<Backend>, reason: PickReason) -> Pick {
        b.active.fetch_add(1, Ordering::Relaxed);
        Pick {
            addr: b.addr,
            reason,
            backend: b.clone(),
        }
    }
}

/// The weight of `backend` for `client` in rendezvous hashing: each client takes the backend with
/// the highest weight among those available. SipHash with fixed keys (`DefaultHasher::new`), so a
/// client maps to the same backend across restarts of the balancer too.
fn rendezvous_weight(client: IpAddr, backend: SocketAddr) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    client.hash(&mut h);
    backend.hash(&mut h);
    h.finish()
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("algorithm", &self.algorithm)
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::EndpointConditions;

    fn ep(
        addr: &str,
        node: &str,
        ready: bool,
        serving: bool,
        terminating: bool,
    ) -> ResolvedEndpoint {
        ResolvedEndpoint {
            addr: addr.parse().unwrap(),
            conditions: EndpointConditions {
                ready,
                serving,
                terminating,
            },
            node_name: Some(node.into()),
            zone: None,
            hint_zones: vec![],
            hint_nodes: vec![],
        }
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ready_first_then_serving_terminating_per_set() {
        let eps = vec![
            ep("127.0.30.1:80", "n1", true, true, false),
            ep("127.0.30.2:80", "n2", false, true, true),
            ep("127.0.30.3:80", "n2", false, false, true),
        ];
        let here = Locality {
            node_name: Some("n2"),
            zone: None,
        };
        assert_eq!(
            usable_endpoints(&eps, TrafficPolicy::Cluster, here),
            vec![a("127.0.30.1:80")]
        );
        // The Local set has no ready endpoint on n2, so it falls back to serving+terminating there.
        assert_eq!(
            usable_endpoints(&eps, TrafficPolicy::Local, here),
            vec![a("127.0.30.2:80")]
        );
        let nowhere = Locality {
            node_name: Some("n3"),
            zone: None,
        };
        assert!(usable_endpoints(&eps, TrafficPolicy::Local, nowhere).is_empty());
    }

    #[test]
    fn zone_hints_apply_only_when_complete() {
        let mut eps = vec![
            ep("127.0.30.1:80", "n1", true, true, false),
            ep("127.0.30.2:80", "n2", true, true, false),
        ];
        eps[0].hint_zones = vec!["a".into()];
        let here = Locality {
            node_name: None,
            zone: Some("a"),
        };
        assert_eq!(
            usable_endpoints(&eps, TrafficPolicy::Cluster, here).len(),
            2
        );
        eps[1].hint_zones = vec!["b".into()];
        assert_eq!(
            usable_endpoints(&eps, TrafficPolicy::Cluster, here),
            vec![a("127.0.30.1:80")]
        );
    }

    #[test]
    fn round_robin_visits_each_once_per_round() {
        let b = Balancer::new(Algorithm::RoundRobin, None);
        let set = [a("127.0.30.1:1"), a("127.0.30.2:1"), a("127.0.30.3:1")];
        assert!(b.update(&set));
        assert!(!b.update(&[set[2], set[0], set[1]]));
        let mut seen: Vec<SocketAddr> = (0..3).map(|_| b.pick(None, &[]).unwrap().addr).collect();
        seen.sort();
        assert_eq!(seen, set.to_vec());
    }

    #[test]
    fn tried_endpoints_are_avoided_and_affinity_bypassed() {
        let b = Balancer::new(Algorithm::RoundRobin, Some(Duration::from_secs(60)));
        b.update(&[a("127.0.30.1:1"), a("127.0.30.2:1")]);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let first = b.pick(Some(ip), &[]).unwrap().addr;
        assert_eq!(b.pick(Some(ip), &[]).unwrap().reason, PickReason::Affinity);
        let retry = b.pick(Some(ip), &[first]).unwrap();
        assert_ne!(retry.addr, first);
        // the retry's choice is the new affinity
        assert_eq!(b.pick(Some(ip), &[]).unwrap().addr, retry.addr);
    }

    #[test]
    fn affinity_expires_and_follows_removal() {
        let b = Balancer::new(Algorithm::RoundRobin, Some(Duration::ZERO));
        b.update(&[a("127.0.30.1:1"), a("127.0.30.2:1")]);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        b.pick(Some(ip), &[]).unwrap();
        assert_ne!(b.pick(Some(ip), &[]).unwrap().reason, PickReason::Affinity);
        b.set_affinity(Some(Duration::from_secs(60)));
        let p = b.pick(Some(ip), &[]).unwrap().addr;
        let other = if p == a("127.0.30.1:1") {
            a("127.0.30.2:1")
        } else {
            a("127.0.30.1:1")
        };
        b.update(&[other]);
        assert_eq!(b.pick(Some(ip), &[]).unwrap().addr, other);
    }

    #[test]
    fn algorithm_names_parse_in_haproxy_and_nginx_spellings() {
        for (name, want) in [
            ("roundrobin", Algorithm::RoundRobin),
            ("leastconn", Algorithm::LeastConn),
            ("random(2)", Algorithm::RandomTwo),
            ("random-two", Algorithm::RandomTwo),
            ("source", Algorithm::SourceHash),
            ("source-hash", Algorithm::SourceHash),
        ] {
            assert_eq!(name.parse::<Algorithm>().unwrap(), want, "{name}");
            // Display gives a name that parses back to the same algorithm.
            assert_eq!(want.to_string().parse::<Algorithm>().unwrap(), want);
        }
        assert!("first".parse::<Algorithm>().is_err());
    }

    #[test]
    fn random_two_avoids_the_busier_of_its_two_draws() {
        let b = Balancer::new(Algorithm::RandomTwo, None);
        b.update(&[a("127.0.30.1:1"), a("127.0.30.2:1")]);
        // With two endpoints both are always drawn, so every pick goes to the less busy one and
        // the held counts never drift apart by more than one.
        let held: Vec<Pick> = (0..21).map(|_| b.pick(None, &[]).unwrap()).collect();
        let counts: Vec<usize> = b.backends().iter().map(|x| x.active()).collect();
        assert_eq!(counts.iter().sum::<usize>(), held.len());
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
            "{counts:?}"
        );
        // A tried endpoint is avoided while another remains.
        let other = b.pick(None, &[a("127.0.30.1:1")]).unwrap();
        assert_eq!(other.addr, a("127.0.30.2:1"));
    }

    #[test]
    fn source_hash_is_stable_and_moves_only_the_clients_of_a_removed_endpoint() {
        let b = Balancer::new(Algorithm::SourceHash, None);
        let set = [
            a("127.0.10.1:6443"),
            a("127.0.10.2:6443"),
            a("127.0.10.3:6443"),
        ];
        b.update(&set);
        let clients: Vec<IpAddr> = (1..=200)
            .map(|i| IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]))
            .collect();
        let before: Vec<SocketAddr> = clients
            .iter()
            .map(|c| b.pick(Some(*c), &[]).unwrap().addr)
            .collect();
        // Stable: asking again gives the same answers, whatever the list order.
        b.update(&[set[2], set[1]]);
        b.update(&set);
        for (c, want) in clients.iter().zip(&before) {
            assert_eq!(b.pick(Some(*c), &[]).unwrap().addr, *want);
        }
        // Every endpoint gets a share.
        for e in &set {
            let n = before.iter().filter(|x| *x == e).count();
            assert!(n > 30, "{e} got only {n} of 200 clients");
        }
        // Remove one: its clients move, nobody else does.
        b.update(&[set[0], set[2]]);
        for (c, was) in clients.iter().zip(&before) {
            let now = b.pick(Some(*c), &[]).unwrap().addr;
            if *was != set[1] {
                assert_eq!(now, *was, "client {c} moved although its endpoint stayed");
            } else {
                assert_ne!(now, set[1]);
            }
        }
        // A tried endpoint is skipped for that client.
        let c = clients[0];
        let first = b.pick(Some(c), &[]).unwrap().addr;
        assert_ne!(b.pick(Some(c), &[first]).unwrap().addr, first);
    }

    #[test]
    fn least_conn_prefers_idle_endpoints() {
        let b = Balancer::new(Algorithm::LeastConn, None);
        b.update(&[a("127.0.30.1:1"), a("127.0.30.2:1")]);
        let held = b.pick(None, &[]).unwrap();
        for _ in 0..5 {
            let p = b.pick(None, &[]).unwrap();
            assert_ne!(p.addr, held.addr);
        }
        drop(held);
        assert!(b.backends().iter().all(|x| x.active() == 0));
    }
}
