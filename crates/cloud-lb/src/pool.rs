//! IP address pools: where ingress addresses come from.
//!
//! Modelled on MetalLB's `IPAddressPool`: a named set of ranges (CIDRs or `first-last`), whether
//! addresses are handed out to any Service (`autoAssign`, default true) or only to Services that ask
//! for the pool or an address in it, and `avoidBuggyIPs` (skip the `.0` and `.255` addresses some old
//! client stacks mistake for network and broadcast addresses). On the command line a pool is
//! `NAME=RANGE[,RANGE…][,auto-assign=false][,avoid-buggy-ips=true]`.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.first, self.last, ip) {
            (IpAddr::V4(f), IpAddr::V4(l), IpAddr::V4(x)) => f <= x && x <= l,
            (IpAddr::V6(f), IpAddr::V6(l), IpAddr::V6(x)) => f <= x && x <= l,
            _ => false,
        }
    }

    /// Every address of the range, in order. Lazy: a v6 range of 2^64 addresses costs nothing until
    /// walked, and allocation stops at the first free one.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + use<> {
        let (first, last, v4) = match (self.first, self.last) {
            (IpAddr::V4(f), IpAddr::V4(l)) => (u32::from(f) as u128, u32::from(l) as u128, true),
            (IpAddr::V6(f), IpAddr::V6(l)) => (u128::from(f), u128::from(l), false),
            _ => (1, 0, true),
        };
        let mut next = Some(first).filter(|f| *f <= last);
        std::iter::from_fn(move || {
            let cur = next?;
            next = if cur < last { Some(cur + 1) } else { None };
            Some(if v4 {
                IpAddr::V4((cur as u32).into())
            } else {
                IpAddr::V6(cur.into())
            })
        })
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// A named pool of ingress addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub ranges: Vec<IpRange>,
    /// Hand addresses out to Services that did not ask for this pool or one of its addresses.
    pub auto_assign: bool,
    /// Skip addresses ending in `.0` or `.255` (IPv4 only).
    pub avoid_buggy_ips: bool,
}

impl Pool {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip)) && !(self.avoid_buggy_ips && is_buggy(ip))
    }

    /// The pool's addresses in allocation order (ranges as given, each ascending).
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ranges
            .iter()
            .flat_map(|r| r.iter())
            .filter(|ip| !(self.avoid_buggy_ips && is_buggy(*ip)))
    }
}

fn is_buggy(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => matches!(v4.octets()[3], 0 | 255),
        IpAddr::V6(_) => false,
    }
}

/// A pool flag that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("{0:?}: expected NAME=RANGE[,RANGE…][,auto-assign=false][,avoid-buggy-ips=true]")]
    Syntax(String),
    #[error(
        "pool {pool:?}: {range:?} is not a CIDR (127.0.50.0/24) or a range (127.0.50.10-127.0.50.20)"
    )]
    Range { pool: String, range: String },
    #[error("pool {pool:?}: range {range:?} ends before it starts or mixes IPv4 and IPv6")]
    Order { pool: String, range: String },
    #[error("pool {pool:?}: {option:?}: expected true or false")]
    Option { pool: String, option: String },
    #[error("pool {0:?} is defined twice")]
    Duplicate(String),
    #[error("pools {a:?} and {b:?} overlap at {ip}")]
    Overlap { a: String, b: String, ip: IpAddr },
}

impl FromStr for Pool {
    type Err = PoolError;

    fn from_str(s: &str) -> Result<Self, PoolError> {
        let (name, rest) = s
            .split_once('=')
            .filter(|(n, r)| is_dns_label(n) && !r.is_empty())
            .ok_or_else(|| PoolError::Syntax(s.to_owned()))?;
        let mut pool = Pool {
            name: name.to_owned(),
            ranges: Vec::new(),
            auto_assign: true,
            avoid_buggy_ips: false,
        };
        for item in rest.split(',').map(str::trim) {
            if let Some((key, value)) = item.split_once('=') {
                let flag = match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(PoolError::Option {
                            pool: pool.name,
                            option: item.to_owned(),
                        });
                    }
                };
                match key {
                    "auto-assign" => pool.auto_assign = flag,
                    "avoid-buggy-ips" => pool.avoid_buggy_ips = flag,
                    _ => return Err(PoolError::Syntax(s.to_owned())),
                }
                continue;
            }
            pool.ranges.push(parse_range(&pool.name, item)?);
        }
        if pool.ranges.is_empty() {
            return Err(PoolError::Syntax(s.to_owned()));
        }
        Ok(pool)
    }
}

fn parse_range(pool: &str, item: &str) -> Result<IpRange, PoolError> {
    let bad = || PoolError::Range {
        pool: pool.to_owned(),
        range: item.to_owned(),
    };
    let range = if let Ok(net) = item.parse::<IpNet>() {
        IpRange {
            first: net.network(),
            last: net.broadcast(),
        }
    } else if let Ok(ip) = item.parse::<IpAddr>() {
        IpRange {
            first: ip,
            last: ip,
        }
    } else {
        let (a, b) = item.split_once('-').ok_or_else(bad)?;
        IpRange {
            first: a.trim().parse().map_err(|_| bad())?,
            last: b.trim().parse().map_err(|_| bad())?,
        }
    };
    let ordered = match (range.first, range.last) {
        (IpAddr::V4(f), IpAddr::V4(l)) => f <= l,
        (IpAddr::V6(f), IpAddr::V6(l)) => f <= l,
        _ => false,
    };
    if !ordered {
        return Err(PoolError::Order {
            pool: pool.to_owned(),
            range: item.to_owned(),
        });
    }
    Ok(range)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The configured pools, in the order they are tried for automatic assignment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pools(Vec<Pool>);

impl Pools {
    /// Checks names are unique and ranges do not overlap (an address in two pools would make the
    /// `address-pool` annotation ambiguous).
    pub fn new(pools: Vec<Pool>) -> Result<Self, PoolError> {
        for (i, a) in pools.iter().enumerate() {
            for b in &pools[i + 1..] {
                if a.name == b.name {
                    return Err(PoolError::Duplicate(a.name.clone()));
                }
                for ra in &a.ranges {
                    for rb in &b.ranges {
                        let lo = if rb.contains(ra.first) {
                            Some(ra.first)
                        } else if ra.contains(rb.first) {
                            Some(rb.first)
                        } else {
                            None
                        };
                        if let Some(ip) = lo {
                            return Err(PoolError::Overlap {
                                a: a.name.clone(),
                                b: b.name.clone(),
                                ip,
                            });
                        }
                    }
                }
            }
        }
        Ok(Self(pools))
    }

    /// The lab's default: `default=127.0.50.0/24` without `.0` and `.255`.
    pub fn lab_default() -> Self {
        Self(vec![
            "default=127.0.50.0/24,avoid-buggy-ips=true"
                .parse()
                .expect("the built-in pool parses"),
        ])
    }

    pub fn get(&self, name: &str) -> Option<&Pool> {
        self.0.iter().find(|p| p.name == name)
    }

    /// The pool holding `ip`.
    pub fn pool_of(&self, ip: IpAddr) -> Option<&Pool> {
        self.0.iter().find(|p| p.contains(ip))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pool> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_cidrs_ranges_single_addresses_and_options() {
        let p: Pool = "web=127.0.50.0/30,127.0.51.7-127.0.51.8,127.0.52.1,auto-assign=false"
            .parse()
            .unwrap();
        assert_eq!(p.name, "web");
        assert!(!p.auto_assign);
        let all: Vec<IpAddr> = p.addresses().collect();
        assert_eq!(
            all,
            [
                "127.0.50.0",
                "127.0.50.1",
                "127.0.50.2",
                "127.0.50.3",
                "127.0.51.7",
                "127.0.51.8",
                "127.0.52.1"
            ]
            .map(ip)
        );
        assert!(p.contains(ip("127.0.51.8")));
        assert!(!p.contains(ip("127.0.51.9")));
        assert!(!p.contains(ip("::1")));
    }

    #[test]
    fn avoid_buggy_ips_skips_dot_zero_and_dot_255() {
        let p: Pool = "a=127.0.50.0/23,avoid-buggy-ips=true".parse().unwrap();
        assert_eq!(p.addresses().next(), Some(ip("127.0.50.1")));
        assert!(!p.contains(ip("127.0.50.255")));
        assert!(!p.contains(ip("127.0.51.0")));
        assert_eq!(p.addresses().count(), 512 - 4);
        assert_eq!(
            Pools::lab_default()
                .iter()
                .next()
                .unwrap()
                .addresses()
                .next(),
            Some(ip("127.0.50.1"))
        );
    }

    #[test]
    fn v6_ranges_are_lazy() {
        let p: Pool = "six=fd00::/64".parse().unwrap();
        assert_eq!(p.addresses().nth(2), Some(ip("fd00::2")));
        assert!(p.contains(ip("fd00::ffff")));
    }

    #[test]
    fn bad_pools_say_what_is_wrong() {
        for (flag, want) in [
            ("nopool", "expected NAME=RANGE"),
            ("Web=127.0.50.0/24", "expected NAME=RANGE"),
            ("web=", "expected NAME=RANGE"),
            ("web=127.0.50.0/33", "is not a CIDR"),
            ("web=127.0.50.9-127.0.50.1", "ends before it starts"),
            ("web=127.0.50.1-::1", "mixes IPv4 and IPv6"),
            (
                "web=127.0.50.0/24,auto-assign=maybe",
                "expected true or false",
            ),
            ("web=127.0.50.0/24,colour=true", "expected NAME=RANGE"),
            ("web=auto-assign=false", "expected NAME=RANGE"),
        ] {
            let err = flag.parse::<Pool>().unwrap_err().to_string();
            assert!(err.contains(want), "{flag}: {err}");
        }
    }

    #[test]
    fn pools_must_not_overlap_or_share_names() {
        let a: Pool = "a=127.0.50.0/24".parse().unwrap();
        let b: Pool = "b=127.0.50.128-127.0.51.3".parse().unwrap();
        let c: Pool = "a=127.0.60.0/24".parse().unwrap();
        assert!(matches!(
            Pools::new(vec![a.clone(), b]),
            Err(PoolError::Overlap { .. })
        ));
        assert_eq!(
            Pools::new(vec![a.clone(), c]),
            Err(PoolError::Duplicate("a".into()))
        );
        let d: Pool = "d=127.0.51.0/24".parse().unwrap();
        let pools = Pools::new(vec![a, d]).unwrap();
        assert_eq!(pools.pool_of(ip("127.0.51.9")).unwrap().name, "d");
        assert!(pools.pool_of(ip("127.0.52.9")).is_none());
    }
}
