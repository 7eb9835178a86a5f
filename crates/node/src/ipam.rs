//! Pod IP allocation from the node's `--pod-cidr`.
//!
//! In a cluster, each node owns a slice of the pod network (its `spec.podCIDR`) and a CNI IPAM plugin
//! (e.g. `host-local`) hands out addresses from it. Like `host-local`, this allocator skips the network
//! address, the first host address (the gateway the bridge would own) and the broadcast address, and
//! continues after the last address it gave out instead of reusing a just-freed one at once — so a
//! pod that was deleted a moment ago is not confused with its successor by a proxy that still holds
//! the old endpoint.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Errors of the allocator.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    /// Every usable address is taken.
    #[error("pod CIDR {0} is exhausted")]
    Exhausted(Ipv4Net),
    /// A reservation asked for an address outside the usable range.
    #[error("{ip} is not a usable address of {cidr}")]
    OutOfRange {
        /// The address asked for.
        ip: Ipv4Addr,
        /// The pod CIDR.
        cidr: Ipv4Net,
    },
    /// A reservation asked for an address already in use.
    #[error("{0} is already allocated")]
    InUse(Ipv4Addr),
}

/// Hands out pod IPs from one IPv4 CIDR.
#[derive(Debug, Clone)]
pub struct PodIpAllocator {
    cidr: Ipv4Net,
    /// First and last usable addresses as integers (inclusive); `first > last` when none are usable.
    first: u32,
    last: u32,
    allocated: BTreeSet<u32>,
    /// Where the next search starts: one past the last address handed out.
    next: u32,
}

impl PodIpAllocator {
    /// An allocator over `cidr` (normalised to its network address).
    ///
    /// For prefixes up to /30, the network, gateway (first host) and broadcast addresses are skipped.
    /// A /31 has two usable addresses and a /32 one (RFC 3021 style: nothing to skip).
    pub fn new(cidr: Ipv4Net) -> Self {
        let cidr = cidr.trunc();
        let network = u32::from(cidr.network());
        let broadcast = u32::from(cidr.broadcast());
        let (first, last) = if cidr.prefix_len() >= 31 {
            (network, broadcast)
        } else {
            (network + 2, broadcast - 1)
        };
        Self {
            cidr,
            first,
            last,
            allocated: BTreeSet::new(),
            next: first,
        }
    }

    /// The CIDR addresses come from.
    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// How many addresses can be allocated in total.
    pub fn capacity(&self) -> usize {
        if self.first > self.last {
            0
        } else {
            (self.last - self.first) as usize + 1
        }
    }

    /// How many addresses are allocated now.
    pub fn allocated(&self) -> usize {
        self.allocated.len()
    }

    /// Whether `ip` is allocated now.
    pub fn is_allocated(&self, ip: Ipv4Addr) -> bool {
        self.allocated.contains(&u32::from(ip))
    }

    /// Whether `ip` lies in the usable range.
    pub fn is_usable(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.first <= ip && ip <= self.last
    }

    /// Allocates the next free address after the last one handed out, wrapping around.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, IpamError> {
        let capacity = self.capacity();
        if self.allocated.len() >= capacity {
            return Err(IpamError::Exhausted(self.cidr));
        }
        let mut candidate = if self.is_usable(Ipv4Addr::from(self.next)) {
            self.next
        } else {
            self.first
        };
        // At least one address is free, so this visits at most `capacity` candidates.
        for _ in 0..capacity {
            if !self.allocated.contains(&candidate) {
                self.allocated.insert(candidate);
                self.next = if candidate >= self.last {
                    self.first
                } else {
                    candidate + 1
                };
                return Ok(Ipv4Addr::from(candidate));
            }
            candidate = if candidate >= self.last {
                self.first
            } else {
                candidate + 1
            };
        }
        Err(IpamError::Exhausted(self.cidr))
    }

    /// Marks a specific address as allocated (a pod that already has a podIP when the agent restarts).
    pub fn reserve(&mut self, ip: Ipv4Addr) -> Result<(), IpamError> {
        if !self.is_usable(ip) {
            return Err(IpamError::OutOfRange {
                ip,
                cidr: self.cidr,
            });
        }
        if !self.allocated.insert(u32::from(ip)) {
            return Err(IpamError::InUse(ip));
        }
        Ok(())
    }

    /// Returns an address to the pool; returns whether it was allocated.
    pub fn release(&mut self, ip: Ipv4Addr) -> bool {
        self.allocated.remove(&u32::from(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test CIDR")
    }

    #[test]
    fn skips_network_gateway_and_broadcast() {
        let mut a = PodIpAllocator::new(net("127.0.30.0/30"));
        assert_eq!(a.capacity(), 1);
        assert_eq!(a.allocate(), Ok(Ipv4Addr::new(127, 0, 30, 2)));
        assert_eq!(
            a.allocate(),
            Err(IpamError::Exhausted(net("127.0.30.0/30")))
        );
    }

    #[test]
    fn lab_halves() {
        let mut a = PodIpAllocator::new(net("127.0.30.0/25"));
        assert_eq!(a.capacity(), 125);
        assert_eq!(a.allocate(), Ok(Ipv4Addr::new(127, 0, 30, 2)));
        let mut b = PodIpAllocator::new(net("127.0.30.128/25"));
        assert_eq!(b.allocate(), Ok(Ipv4Addr::new(127, 0, 30, 130)));
        assert!(!b.is_usable(Ipv4Addr::new(127, 0, 30, 255)));
        assert!(!b.is_usable(Ipv4Addr::new(127, 0, 30, 129)));
        assert!(b.is_usable(Ipv4Addr::new(127, 0, 30, 254)));
    }

    #[test]
    fn does_not_reuse_a_freed_address_at_once_and_wraps() {
        let mut a = PodIpAllocator::new(net("10.0.0.0/29")); // usable .2 ..= .6
        let first = a.allocate().expect("free");
        let second = a.allocate().expect("free");
        assert!(a.release(first));
        assert!(!a.release(first));
        let third = a.allocate().expect("free");
        assert_ne!(third, first);
        assert_eq!(u32::from(third), u32::from(second) + 1);
        // Fill the rest, then the freed one is the only candidate left.
        let mut got = vec![];
        while let Ok(ip) = a.allocate() {
            got.push(ip);
        }
        assert!(got.contains(&first));
        assert_eq!(a.allocated(), a.capacity());
    }

    #[test]
    fn reservations() {
        let mut a = PodIpAllocator::new(net("127.0.30.0/24"));
        let ip = Ipv4Addr::new(127, 0, 30, 7);
        assert_eq!(a.reserve(ip), Ok(()));
        assert_eq!(a.reserve(ip), Err(IpamError::InUse(ip)));
        assert!(matches!(
            a.reserve(Ipv4Addr::new(127, 0, 30, 0)),
            Err(IpamError::OutOfRange { .. })
        ));
        assert!(matches!(
            a.reserve(Ipv4Addr::new(127, 0, 31, 5)),
            Err(IpamError::OutOfRange { .. })
        ));
        // Allocation steps over the reserved address.
        for _ in 0..5 {
            a.allocate().expect("free");
        }
        assert_eq!(a.allocate(), Ok(Ipv4Addr::new(127, 0, 30, 8)));
    }

    #[test]
    fn tiny_prefixes() {
        let mut a = PodIpAllocator::new(net("127.0.30.9/32"));
        assert_eq!(a.allocate(), Ok(Ipv4Addr::new(127, 0, 30, 9)));
        assert!(a.allocate().is_err());
        let b = PodIpAllocator::new(net("127.0.30.8/31"));
        assert_eq!(b.capacity(), 2);
        // A host address with a prefix is normalised to its network.
        assert_eq!(
            PodIpAllocator::new(net("127.0.30.77/25")).cidr(),
            net("127.0.30.0/25")
        );
    }
}
