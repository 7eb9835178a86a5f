//! Where the bastion may connect: the destination check every dial passes.
//!
//! The apiserver proxy sits inside the control plane with the apiserver's network position and, for
//! nodes, its kubelet client certificate. A user who can make it dial anywhere can reach what the
//! control plane reaches: its own loopback services, the cloud metadata endpoint at
//! `169.254.169.254`, the apiserver itself. So, as kube-apiserver since CVE-2022-3294:
//!
//! - by default only **global unicast** addresses are dialled (Go's `IP.IsGlobalUnicast`: private
//!   RFC 1918 space is fine; loopback, link-local, multicast, unspecified and broadcast are not);
//! - networks outside that can be allowed explicitly (the lab allows its own `127.0.20.0/24` nodes and
//!   `127.0.30.0/24` pods), but never link-local: `169.254.0.0/16` and `fe80::/10` stay refused
//!   whatever the configuration says (configuring them is an error);
//! - the bastion's own listen addresses are always refused (kubernetes#119270: `nodes/proxy` made the
//!   apiserver call itself with its own credentials).
//!
//! The check runs in the dialler on the address actually connected to, so a name resolved to an
//! allowed address and then to a forbidden one (DNS rebinding, CVE-2020-8562) cannot slip through:
//! what is checked is what is dialled. See [`crate::dial`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not global unicast and not in an allowed network.
    #[error("address not allowed: {addr} is {what}")]
    NotAllowed {
        addr: SocketAddr,
        what: &'static str,
    },
    /// Link-local: never allowed.
    #[error("address not allowed: {addr} is link-local (cloud metadata lives there)")]
    LinkLocal { addr: SocketAddr },
    /// One of the bastion's own listen addresses.
    #[error("address not allowed: {addr} is this proxy's own listen address")]
    Own { addr: SocketAddr },
}

/// A configuration the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{net}: {message}")]
pub struct PolicyError {
    pub net: IpNet,
    pub message: &'static str,
}

/// Parses a network flag value: a CIDR (`127.0.30.0/24`) or a bare address (`127.0.20.1`, one
/// host).
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is neither a CIDR (10.0.0.0/8) nor an IP address"))
}

/// The destination check. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct DestinationPolicy {
    allowed: Vec<IpNet>,
    own: Vec<SocketAddr>,
}

impl DestinationPolicy {
    /// Global unicast only, plus the `allowed` networks; never link-local, never `own`.
    pub fn new(allowed: Vec<IpNet>, own: Vec<SocketAddr>) -> Result<Self, PolicyError> {
        for net in &allowed {
            let link_local = match net {
                IpNet::V4(n) => {
                    n.contains(&Ipv4Addr::new(169, 254, 0, 0)) || n.network().is_link_local()
                }
                IpNet::V6(n) => {
                    n.contains(&Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0))
                        || is_link_local_v6(&n.network())
                }
            };
            if link_local {
                return Err(PolicyError {
                    net: *net,
                    message: "link-local addresses (169.254.0.0/16, fe80::/10) can never be allowed",
                });
            }
            if net.network().is_unspecified() && net.prefix_len() == 0 {
                return Err(PolicyError {
                    net: *net,
                    message: "allowing every address defeats the check; name the networks",
                });
            }
        }
        Ok(Self { allowed, own })
    }

    /// Adds listen addresses (e.g. once port 0 is resolved).
    pub fn add_own(&mut self, addrs: impl IntoIterator<Item = SocketAddr>) {
        self.own.extend(addrs);
    }

    /// The networks allowed besides global unicast.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Checks one destination.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Refusal> {
        // `::ffff:127.0.0.1` is 127.0.0.1 (Go reads it so too).
        let ip = addr.ip().to_canonical();
        let addr = SocketAddr::new(ip, addr.port());
        if is_link_local(ip) {
            return Err(Refusal::LinkLocal { addr });
        }
        if self.own.iter().any(|own| {
            own.port() == addr.port()
                && (own.ip().to_canonical() == ip || own.ip().is_unspecified())
        }) {
            return Err(Refusal::Own { addr });
        }
        if self.allowed.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match not_global_unicast(ip) {
            None => Ok(()),
            Some(what) => Err(Refusal::NotAllowed { addr, what }),
        }
    }

    /// The same check for a bare IP (no port known yet): own addresses are not considered.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        let probe = Self {
            allowed: self.allowed.clone(),
            own: Vec::new(),
        };
        probe.check(SocketAddr::new(ip, 0))
    }
}

fn is_link_local_v6(ip: &Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => is_link_local_v6(&v6),
    }
}

/// `None` when Go's `IsGlobalUnicast` holds; otherwise what the address is.
fn not_global_unicast(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_multicast() {
        return Some("multicast");
    }
    if is_link_local(ip) {
        return Some("link-local");
    }
    if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Some("broadcast");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn global_unicast_by_default() {
        let p = DestinationPolicy::default();
        for ok in [
            "10.0.0.1:80",
            "192.168.1.1:443",
            "8.8.8.8:53",
            "[2001:db8::1]:80",
        ] {
            assert_eq!(p.check(sa(ok)), Ok(()), "{ok}");
        }
        for (bad, what) in [
            ("127.0.0.1:80", "loopback"),
            ("127.0.30.5:8080", "loopback"),
            ("0.0.0.0:80", "unspecified"),
            ("224.0.0.1:80", "multicast"),
            ("255.255.255.255:80", "broadcast"),
            ("[::1]:80", "loopback"),
            ("[::]:80", "unspecified"),
            ("[ff02::1]:80", "multicast"),
            ("[::ffff:127.0.0.1]:80", "loopback"),
        ] {
            match p.check(sa(bad)) {
                Err(Refusal::NotAllowed { what: w, .. }) => assert_eq!(w, what, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        for ll in ["169.254.169.254:80", "[fe80::1]:80"] {
            assert!(
                matches!(p.check(sa(ll)), Err(Refusal::LinkLocal { .. })),
                "{ll}"
            );
        }
    }

    #[test]
    fn allowed_networks_but_never_link_local_or_self() {
        let p = DestinationPolicy::new(
            vec![
                "127.0.30.0/24".parse().unwrap(),
                "127.0.20.0/24".parse().unwrap(),
            ],
            vec![sa("127.0.20.1:6443")],
        )
        .unwrap();
        assert_eq!(p.check(sa("127.0.30.7:8080")), Ok(()));
        assert_eq!(p.check(sa("127.0.20.1:10250")), Ok(()));
        assert!(matches!(
            p.check(sa("127.0.20.1:6443")),
            Err(Refusal::Own { .. })
        ));
        assert!(matches!(
            p.check(sa("127.0.0.1:80")),
            Err(Refusal::NotAllowed { .. })
        ));
        for bad in [
            "169.254.0.0/16",
            "169.254.169.254/32",
            "169.0.0.0/8",
            "fe80::/64",
            "fe00::/7",
        ] {
            assert!(
                DestinationPolicy::new(vec![bad.parse().unwrap()], vec![]).is_err(),
                "{bad}"
            );
        }
        assert!(DestinationPolicy::new(vec!["0.0.0.0/0".parse().unwrap()], vec![]).is_err());
    }

    #[test]
    fn network_flags_take_cidrs_and_addresses() {
        assert_eq!(
            parse_network("127.0.20.1").unwrap().to_string(),
            "127.0.20.1/32"
        );
        assert_eq!(
            parse_network("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
        assert!(parse_network("node-1").is_err());
    }

    #[test]
    fn unspecified_listener_refuses_its_port_everywhere() {
        let p = DestinationPolicy::new(
            vec!["127.0.0.0/8".parse().unwrap()],
            vec![sa("0.0.0.0:6443")],
        )
        .unwrap();
        assert!(matches!(
            p.check(sa("127.0.0.5:6443")),
            Err(Refusal::Own { .. })
        ));
        assert_eq!(p.check(sa("127.0.0.5:6444")), Ok(()));
    }
}
