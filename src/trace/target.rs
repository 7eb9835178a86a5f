//! What `proxylab trace` is asked to follow: `http(s)://HOST[:PORT]/PATH`, `tcp://HOST:PORT` or
//! `udp://HOST:PORT`, where HOST is an IP address of the lab (127.0.0.0/8) or `localhost`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A parsed TARGET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Http {
        tls: bool,
        addr: SocketAddr,
        /// As written in the URL (`Host` header).
        authority: String,
        /// Path and query, at least `/`.
        path: String,
    },
    Tcp(SocketAddr),
    Udp(SocketAddr),
}

impl Target {
    /// Where the first packet goes.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Http { addr, .. } | Self::Tcp(addr) | Self::Udp(addr) => *addr,
        }
    }

    pub fn protocol(&self) -> &'static str {
        match self {
            Self::Http { tls: true, .. } => "https",
            Self::Http { tls: false, .. } => "http",
            Self::Tcp(_) => "tcp",
            Self::Udp(_) => "udp",
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http {
                tls,
                authority,
                path,
                ..
            } => write!(
                f,
                "{}://{authority}{path}",
                if *tls { "https" } else { "http" }
            ),
            Self::Tcp(a) => write!(f, "tcp://{a}"),
            Self::Udp(a) => write!(f, "udp://{a}"),
        }
    }
}

/// A TARGET that cannot be traced; the message is the whole error line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("TARGET {target:?}: {message}")]
pub struct TargetError {
    pub target: String,
    pub message: String,
}

const USAGE: &str = "expected http://HOST[:PORT]/PATH, https://HOST[:PORT]/PATH, tcp://HOST:PORT or udp://HOST:PORT";

/// Parses TARGET. Only loopback destinations are accepted: the lab lives on 127.0.0.0/8, and
/// `trace` never sends anything off this machine.
pub fn parse(text: &str) -> Result<Target, TargetError> {
    let err = |message: String| TargetError {
        target: text.to_owned(),
        message,
    };
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| err(USAGE.to_owned()))?;
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => {
            let tls = scheme.eq_ignore_ascii_case("https");
            let (authority, path) = match rest.find(['/', '?']) {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let path = if path.starts_with('?') {
                format!("/{path}")
            } else {
                path.to_owned()
            };
            if path.contains(['#', ' ']) || path.chars().any(|c| c.is_control()) {
                return Err(err(
                    "the path may not contain spaces, control characters or a fragment".into(),
                ));
            }
            if authority.contains('@') {
                return Err(err(
                    "user info in the URL is not supported: trace uses the lab kubeconfig's credentials"
                        .into(),
                ));
            }
            let addr = host_port(authority, Some(if tls { 443 } else { 80 })).map_err(err)?;
            Ok(Target::Http {
                tls,
                addr,
                authority: authority.to_owned(),
                path,
            })
        }
        "tcp" | "udp" => {
            let hp = rest.trim_end_matches('/');
            if hp.contains('/') {
                return Err(err(format!("{scheme}:// takes HOST:PORT, no path")));
            }
            let addr = host_port(hp, None).map_err(err)?;
            Ok(if scheme.eq_ignore_ascii_case("tcp") {
                Target::Tcp(addr)
            } else {
                Target::Udp(addr)
            })
        }
        other => Err(err(format!("unknown scheme {other:?}: {USAGE}"))),
    }
}

/// `HOST[:PORT]` with HOST an IP literal (IPv6 in brackets) or `localhost`.
fn host_port(text: &str, default_port: Option<u16>) -> Result<SocketAddr, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?}: unclosed '['"))?;
        (h, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{p:?} is not a port (1-65535)"))?,
        (None, Some(d)) => d,
        (None, None) => return Err("a port is required (HOST:PORT)".into()),
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().map_err(|_| {
            format!("{host:?} is not an IP address: the lab's addresses are IPs in 127.0.0.0/8")
        })?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "{ip} is not a loopback address: trace follows requests inside the lab (127.0.0.0/8) only"
        ));
    }
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_l4_targets_parse() {
        assert_eq!(
            parse("http://127.0.0.1:8001/api/v1/namespaces/default/services/web/proxy/hostname")
                .unwrap(),
            Target::Http {
                tls: false,
                addr: "127.0.0.1:8001".parse().unwrap(),
                authority: "127.0.0.1:8001".into(),
                path: "/api/v1/namespaces/default/services/web/proxy/hostname".into(),
            }
        );
        let t = parse("https://127.0.10.1:6443").unwrap();
        assert_eq!(t.addr(), "127.0.10.1:6443".parse().unwrap());
        assert_eq!(t.to_string(), "https://127.0.10.1:6443/");
        assert_eq!(
            parse("http://localhost?x=1").unwrap().to_string(),
            "http://localhost/?x=1"
        );
        assert_eq!(
            parse("tcp://127.0.40.10:80").unwrap(),
            Target::Tcp("127.0.40.10:80".parse().unwrap())
        );
        assert_eq!(
            parse("UDP://127.0.40.11:53").unwrap(),
            Target::Udp("127.0.40.11:53".parse().unwrap())
        );
        assert_eq!(
            parse("tcp://[::1]:80").unwrap().addr(),
            "[::1]:80".parse().unwrap()
        );
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        for (t, says) in [
            ("127.0.0.1:80", "expected http://"),
            ("ftp://127.0.0.1/", "unknown scheme"),
            ("tcp://127.0.0.1", "a port is required"),
            ("tcp://127.0.0.1:0", "is not a port"),
            ("tcp://127.0.0.1:99999", "is not a port"),
            ("tcp://127.0.0.1:80/x", "no path"),
            ("http://example.com/", "is not an IP address"),
            ("http://10.0.0.1/", "not a loopback address"),
            ("http://u:p@127.0.0.1/", "user info"),
            ("http://127.0.0.1/a b", "spaces"),
            ("tcp://[::1:80", "unclosed"),
        ] {
            let e = parse(t).unwrap_err().to_string();
            assert!(e.contains(says), "{t}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
