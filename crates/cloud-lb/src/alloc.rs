//! The address allocator: which ingress address a Service may have, MetalLB's rules.
//!
//! - A Service asking for an address (`spec.loadBalancerIP`, `metallb.io/loadBalancerIPs`) gets that
//!   address or nothing: it must lie in a pool (the one named by `metallb.io/address-pool`, if any)
//!   and be free or shareable.
//! - Otherwise it gets the first free address of the named pool, or of the first pool with
//!   `autoAssign` that has one. With a sharing key it first tries the addresses already held by
//!   Services with the same key.
//! - Two Services share an address only when both carry the same `metallb.io/allow-shared-ip` key
//!   and their (protocol, port) pairs are disjoint — one listener per address and port.
//!
//! One address per Service: a dual-stack request (an IPv4 and an IPv6 address) is refused with a
//! message rather than half served.

use std::collections::BTreeMap;
use std::net::IpAddr;

use proxylab_core::cluster::{Protocol, ServiceKey};

use crate::pool::Pools;
use crate::service::LbService;

/// The address a Service holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub pool: String,
    pub sharing_key: Option<String>,
    /// The (protocol, port) pairs the Service occupies on `ip`.
    pub ports: Vec<(Protocol, u16)>,
    /// The Service's uid when allocated (for the state file's reader; keys are namespace/name).
    pub uid: String,
}

/// Every allocation, by Service.
pub type Allocations = BTreeMap<ServiceKey, Allocation>;

/// Why a Service cannot have an address. The text goes into the `AllocationFailed` Event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("{0}")]
    Invalid(String),
    #[error("asks for {0} addresses; this load balancer gives one address per Service")]
    TooManyRequested(usize),
    #[error("unknown pool {0:?}")]
    UnknownPool(String),
    #[error("{ip} is not in any address pool")]
    NotInPool { ip: IpAddr },
    #[error("{ip} is not in the requested pool {pool:?}")]
    NotInRequestedPool { ip: IpAddr, pool: String },
    #[error(
        "{ip} is in use by {holder} (sharing needs the same metallb.io/allow-shared-ip key on both)"
    )]
    InUse { ip: IpAddr, holder: ServiceKey },
    #[error("{ip} is shared with {holder}, whose ports overlap: {ports}")]
    PortsOverlap {
        ip: IpAddr,
        holder: ServiceKey,
        ports: String,
    },
    #[error("no available IPs")]
    Exhausted,
}

/// Whether `svc` may hold `ip` beside the allocations in `others` (its own entry is ignored).
pub fn compatible(svc: &LbService, ip: IpAddr, others: &Allocations) -> Result<(), AllocError> {
    let ports = svc.port_set();
    for (key, a) in others {
        if a.ip != ip || *key == svc.key {
            continue;
        }
        if svc.sharing_key.is_none() || svc.sharing_key != a.sharing_key {
            return Err(AllocError::InUse {
                ip,
                holder: key.clone(),
            });
        }
        let overlap: Vec<String> = ports
            .iter()
            .filter(|p| a.ports.contains(p))
            .map(|(proto, port)| format!("{proto}/{port}"))
            .collect();
        if !overlap.is_empty() {
            return Err(AllocError::PortsOverlap {
                ip,
                holder: key.clone(),
                ports: overlap.join(","),
            });
        }
    }
    Ok(())
}

/// Whether `svc` may keep `current` as things are now (pools may have changed, the Service may now
/// ask for another address or pool, a sharing partner may have changed its ports).
pub fn still_valid(
    svc: &LbService,
    current: &Allocation,
    pools: &Pools,
    others: &Allocations,
) -> Result<(), AllocError> {
    check_requested(svc, current.ip, pools)?;
    if svc.requested_ips.is_empty() {
        let Some(pool) = pools.pool_of(current.ip) else {
            return Err(AllocError::NotInPool { ip: current.ip });
        };
        // An address from a manual pool stays only while the Service names that pool.
        if !pool.auto_assign && svc.pool.as_deref() != Some(pool.name.as_str()) {
            return Err(AllocError::NotInPool { ip: current.ip });
        }
    }
    compatible(svc, current.ip, others)
}

/// Picks an address for `svc` given everyone else's allocations.
pub fn allocate(
    svc: &LbService,
    pools: &Pools,
    others: &Allocations,
) -> Result<Allocation, AllocError> {
    if let Some(p) = svc.problems.first() {
        return Err(AllocError::Invalid(p.clone()));
    }
    let make = |ip: IpAddr, pool: &str| Allocation {
        ip,
        pool: pool.to_owned(),
        sharing_key: svc.sharing_key.clone(),
        ports: svc.port_set(),
        uid: svc.uid.clone(),
    };
    if let Some(name) = &svc.pool
        && pools.get(name).is_none()
    {
        return Err(AllocError::UnknownPool(name.clone()));
    }
    match svc.requested_ips.as_slice() {
        [] => {}
        [ip] => {
            let pool = check_requested(svc, *ip, pools)?;
            compatible(svc, *ip, others)?;
            return Ok(make(*ip, &pool));
        }
        many => return Err(AllocError::TooManyRequested(many.len())),
    }
    let candidates: Vec<_> = match &svc.pool {
        Some(name) => pools.get(name).into_iter().collect(),
        None => pools.iter().filter(|p| p.auto_assign).collect(),
    };
    // Sharing first: an address already held under the same key, lowest first.
    if svc.sharing_key.is_some() {
        let mut shared: Vec<IpAddr> = others
            .iter()
            .filter(|(k, a)| **k != svc.key && a.sharing_key == svc.sharing_key)
            .map(|(_, a)| a.ip)
            .collect();
        shared.sort();
        shared.dedup();
        for ip in shared {
            if let Some(pool) = candidates.iter().find(|p| p.contains(ip))
                && compatible(svc, ip, others).is_ok()
            {
                return Ok(make(ip, &pool.name));
            }
        }
    }
    let used: std::collections::HashSet<IpAddr> = others
        .iter()
        .filter(|(k, _)| **k != svc.key)
        .map(|(_, a)| a.ip)
        .collect();
    for pool in candidates {
        // Bounded: at most `used.len() + 1` addresses are looked at before a free one is found.
        if let Some(ip) = pool.addresses().find(|ip| !used.contains(ip)) {
            return Ok(make(ip, &pool.name));
        }
    }
    Err(AllocError::Exhausted)
}

/// A requested address must lie in a pool (the named one, when a pool is named); returns the pool.
fn check_requested(svc: &LbService, ip: IpAddr, pools: &Pools) -> Result<String, AllocError> {
    if !svc.requested_ips.is_empty() && !svc.requested_ips.contains(&ip) {
        return Err(AllocError::Invalid(format!(
            "{ip} is not the address the Service asks for"
        )));
    }
    let pool = pools.pool_of(ip).ok_or(AllocError::NotInPool { ip })?;
    if let Some(want) = &svc.pool
        && *want != pool.name
    {
        return Err(AllocError::NotInRequestedPool {
            ip,
            pool: want.clone(),
        });
    }
    Ok(pool.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Pool;
    use serde_json::json;

    fn pools() -> Pools {
        Pools::new(vec![
            "manual=127.0.51.0/30,auto-assign=false"
                .parse::<Pool>()
                .unwrap(),
            "default=127.0.50.1-127.0.50.3".parse().unwrap(),
        ])
        .unwrap()
    }

    fn svc(name: &str, annotations: serde_json::Value, ports: &[(u16, &str)]) -> LbService {
        let ports: Vec<_> = ports
            .iter()
            .map(|(p, proto)| json!({"port": p, "protocol": proto}))
            .collect();
        LbService::from_json(
            &json!({"metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {"type": "LoadBalancer", "ports": ports}}),
        )
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn hold(all: &mut Allocations, s: &LbService, p: &Pools) -> IpAddr {
        let a = allocate(s, p, all).unwrap();
        let ip = a.ip;
        all.insert(s.key.clone(), a);
        ip
    }

    #[test]
    fn first_free_address_of_the_first_auto_assign_pool() {
        let p = pools();
        let mut all = Allocations::new();
        assert_eq!(
            hold(&mut all, &svc("a", json!({}), &[(80, "TCP")]), &p),
            ip("127.0.50.1")
        );
        assert_eq!(
            hold(&mut all, &svc("b", json!({}), &[(80, "TCP")]), &p),
            ip("127.0.50.2")
        );
        // Re-allocating for a holder ignores its own entry.
        assert_eq!(
            allocate(&svc("a", json!({}), &[]), &p, &all).unwrap().ip,
            ip("127.0.50.1")
        );
        assert_eq!(
            hold(&mut all, &svc("c", json!({}), &[(80, "TCP")]), &p),
            ip("127.0.50.3")
        );
        assert_eq!(
            allocate(&svc("d", json!({}), &[(80, "TCP")]), &p, &all),
            Err(AllocError::Exhausted)
        );
    }

    #[test]
    fn requested_addresses_and_pools() {
        let p = pools();
        let mut all = Allocations::new();
        let want = svc(
            "a",
            json!({"metallb.io/loadBalancerIPs": "127.0.50.3"}),
            &[(80, "TCP")],
        );
        assert_eq!(hold(&mut all, &want, &p), ip("127.0.50.3"));
        // Taken, no sharing key.
        let again = svc(
            "b",
            json!({"metallb.io/loadBalancerIPs": "127.0.50.3"}),
            &[(81, "TCP")],
        );
        assert!(matches!(
            allocate(&again, &p, &all),
            Err(AllocError::InUse { .. })
        ));
        // Manual pools only by name or by address.
        let named = svc(
            "c",
            json!({"metallb.io/address-pool": "manual"}),
            &[(80, "TCP")],
        );
        assert_eq!(hold(&mut all, &named, &p), ip("127.0.51.0"));
        let by_ip = svc(
            "d",
            json!({"metallb.io/loadBalancerIPs": "127.0.51.2"}),
            &[(80, "TCP")],
        );
        assert_eq!(hold(&mut all, &by_ip, &p), ip("127.0.51.2"));
        for (ann, err) in [
            (
                json!({"metallb.io/loadBalancerIPs": "127.0.60.1"}),
                "not in any address pool",
            ),
            (
                json!({"metallb.io/address-pool": "gold"}),
                "unknown pool \"gold\"",
            ),
            (
                json!({"metallb.io/address-pool": "default", "metallb.io/loadBalancerIPs": "127.0.51.1"}),
                "not in the requested pool",
            ),
            (
                json!({"metallb.io/loadBalancerIPs": "127.0.50.1,127.0.50.2"}),
                "asks for 2 addresses",
            ),
            (
                json!({"metallb.io/loadBalancerIPs": "banana"}),
                "is not an IP address",
            ),
        ] {
            let e = allocate(&svc("e", ann, &[(80, "TCP")]), &p, &all)
                .unwrap_err()
                .to_string();
            assert!(e.contains(err), "{e}");
        }
    }

    #[test]
    fn sharing_needs_the_same_key_and_disjoint_ports() {
        let p = pools();
        let mut all = Allocations::new();
        let key = |k: &str| json!({"metallb.io/allow-shared-ip": k});
        let dns_tcp = svc("dns-tcp", key("dns"), &[(53, "TCP")]);
        let first = hold(&mut all, &dns_tcp, &p);
        // Same key, another protocol on the same port: shares (one IP for TCP and UDP, metallb#121).
        let dns_udp = svc("dns-udp", key("dns"), &[(53, "UDP")]);
        assert_eq!(hold(&mut all, &dns_udp, &p), first);
        // Same key, overlapping port: its own address.
        let dns_tcp2 = svc("dns-tcp2", key("dns"), &[(53, "TCP")]);
        assert_ne!(hold(&mut all, &dns_tcp2, &p), first);
        // Asking for the shared address with an overlapping port names the holder and the port.
        let mut ann = key("dns");
        ann["metallb.io/loadBalancerIPs"] = json!(first.to_string());
        let e = allocate(&svc("x", ann, &[(53, "UDP"), (54, "UDP")]), &p, &all).unwrap_err();
        assert_eq!(
            e.to_string(),
            "127.0.50.1 is shared with default/dns-udp, whose ports overlap: UDP/53"
        );
        // Another key: not shared.
        let other = svc("web", key("web"), &[(80, "TCP")]);
        assert_ne!(hold(&mut all, &other, &p), first);
    }

    #[test]
    fn validity_follows_spec_and_config_changes() {
        let p = pools();
        let mut all = Allocations::new();
        let a = svc("a", json!({}), &[(80, "TCP")]);
        hold(&mut all, &a, &p);
        let cur = all[&a.key].clone();
        assert!(still_valid(&a, &cur, &p, &all).is_ok());
        // Now asks for another address.
        let moved = svc(
            "a",
            json!({"metallb.io/loadBalancerIPs": "127.0.50.2"}),
            &[(80, "TCP")],
        );
        assert!(still_valid(&moved, &cur, &p, &all).is_err());
        // The pool was removed from the configuration.
        let shrunk = Pools::new(vec!["other=127.0.52.0/24".parse().unwrap()]).unwrap();
        assert!(still_valid(&a, &cur, &shrunk, &all).is_err());
        // A partner on the shared address now uses the same port.
        let key = json!({"metallb.io/allow-shared-ip": "k"});
        let mut all = Allocations::new();
        let x = svc("x", key.clone(), &[(80, "TCP")]);
        let y = svc("y", key.clone(), &[(81, "TCP")]);
        hold(&mut all, &x, &p);
        hold(&mut all, &y, &p);
        let y2 = svc("y", key, &[(80, "TCP")]);
        assert!(matches!(
            still_valid(&y2, &all[&y.key].clone(), &p, &all),
            Err(AllocError::PortsOverlap { .. })
        ));
    }

    proptest::proptest! {
        /// Whatever the order of requests, no address is ever held by two Services without a common
        /// key, no port is ever used twice on one address, and every address lies in a pool.
        #[test]
        fn allocations_never_conflict(reqs in proptest::collection::vec((0u8..4, 0u8..3, 0u8..4, proptest::bool::ANY), 1..30)) {
            let p = pools();
            let mut all = Allocations::new();
            for (i, (want, key, port, udp)) in reqs.into_iter().enumerate() {
                let mut ann = json!({});
                if want > 0 { ann["metallb.io/loadBalancerIPs"] = json!(format!("127.0.50.{want}")); }
                if key > 0 { ann["metallb.io/allow-shared-ip"] = json!(format!("k{key}")); }
                let s = svc(&format!("s{i}"), ann, &[(80 + u16::from(port), if udp { "UDP" } else { "TCP" })]);
                if let Ok(a) = allocate(&s, &p, &all) {
                    all.insert(s.key.clone(), a);
                }
            }
            for (k1, a) in &all {
                proptest::prop_assert!(p.pool_of(a.ip).is_some());
                for (k2, b) in &all {
                    if k1 >= k2 || a.ip != b.ip { continue; }
                    proptest::prop_assert!(a.sharing_key.is_some() && a.sharing_key == b.sharing_key);
                    proptest::prop_assert!(a.ports.iter().all(|x| !b.ports.contains(x)));
                }
            }
        }
    }
}
