//! The PROXY protocol (HAProxy's, versions 1 and 2): how an L4 proxy tells the next hop who the
//! client was.
//!
//! A relaying load balancer opens its own connection to the backend, so the backend's socket shows
//! the balancer's address, not the client's (kubernetes#124876 for `type: LoadBalancer`). With the
//! PROXY protocol the balancer writes one header first — the client's and the listener's address —
//! and the backend, configured to expect it, reads it before its own protocol starts. AWS NLBs,
//! HAProxy, nginx and Envoy all speak it.
//!
//! - v1 is one text line: `PROXY TCP4 192.0.2.1 198.51.100.1 51234 80\r\n`.
//! - v2 is binary: a 12-byte signature, version/command, family/transport, a length, then the
//!   addresses (12 bytes for IPv4, 36 for IPv6) and optional TLVs. The `LOCAL` command (a health
//!   check by the balancer itself) carries no addresses.
//!
//! [`parse`] works on a prefix of the stream and says how many bytes the header took, so a server
//! can peek, decide, and then consume exactly the header; [`read_header`] does that on a
//! `TcpStream`. Only a server that was told to expect the header should look for it: accepting it
//! from anyone lets any client claim any address.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v1 line, CRLF included (the spec's bound).
pub const V1_MAX: usize = 107;

/// The addresses a header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The client, as the proxy saw it.
    pub source: SocketAddr,
    /// The address the client connected to (the proxy's listener).
    pub destination: SocketAddr,
}

/// The transport a v2 header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Stream,
    Datagram,
}

/// What a prefix of a stream holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Too few bytes to tell yet.
    Incomplete,
    /// The stream does not start with a PROXY header.
    NotProxy,
    /// A header of `len` bytes; `header` is `None` for v2 `LOCAL` and v1 `UNKNOWN`.
    Header {
        header: Option<ProxyHeader>,
        len: usize,
    },
    /// It starts like a header but is not a valid one.
    Invalid(String),
}

/// A v1 line for a TCP connection from `source` to `destination` (both of one family).
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => "TCP4",
        (IpAddr::V6(_), IpAddr::V6(_)) => "TCP6",
        _ => return b"PROXY UNKNOWN\r\n".to_vec(),
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// A v2 `PROXY` header (no TLVs). Mixed families are sent as `UNSPEC` (the receiver then uses the
/// socket's addresses), as the spec asks.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr, transport: Transport) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, command PROXY
    let t = match transport {
        Transport::Stream => 0x1,
        Transport::Datagram => 0x2,
    };
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x10 | t);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.push(0x20 | t);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => {
            out.push(0x00);
            out.extend_from_slice(&0u16.to_be_bytes());
            return out;
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

/// Reads a header from the start of `buf` (see [`Parsed`]). Never panics, whatever the bytes.
pub fn parse(buf: &[u8]) -> Parsed {
    let sig_len = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig_len] == V2_SIGNATURE[..sig_len] {
        return if buf.len() < 16 {
            Parsed::Incomplete
        } else {
            parse_v2(buf)
        };
    }
    let v1_len = buf.len().min(6);
    if buf[..v1_len] == b"PROXY "[..v1_len] {
        return if buf.len() < 6 {
            Parsed::Incomplete
        } else {
            parse_v1(buf)
        };
    }
    Parsed::NotProxy
}

fn parse_v2(buf: &[u8]) -> Parsed {
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid(format!("v2 header with version {}", ver_cmd >> 4));
    }
    let len = 16 + u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if buf.len() < len {
        return Parsed::Incomplete;
    }
    let body = &buf[16..len];
    let header = match ver_cmd & 0x0f {
        0x0 => None, // LOCAL: the proxy's own connection
        0x1 => match buf[13] >> 4 {
            0x1 if body.len() >= 12 => {
                let ip = |o: usize| IpAddr::from([body[o], body[o + 1], body[o + 2], body[o + 3]]);
                let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                Some(ProxyHeader {
                    source: SocketAddr::new(ip(0), port(8)),
                    destination: SocketAddr::new(ip(4), port(10)),
                })
            }
            0x2 if body.len() >= 36 => {
                let ip = |o: usize| {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&body[o..o + 16]);
                    IpAddr::from(a)
                };
                let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                Some(ProxyHeader {
                    source: SocketAddr::new(ip(0), port(32)),
                    destination: SocketAddr::new(ip(16), port(34)),
                })
            }
            // UNSPEC or UNIX: the socket's own addresses stand.
            0x0 | 0x3 => None,
            _ => return Parsed::Invalid("v2 header with a short or unknown address block".into()),
        },
        c => return Parsed::Invalid(format!("v2 header with command {c}")),
    };
    Parsed::Header { header, len }
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Parsed::Invalid("v1 line without CRLF in 107 bytes".into())
        } else {
            Parsed::Incomplete
        };
    };
    let len = end + 2;
    let Ok(line) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Invalid("v1 line is not text".into());
    };
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Parsed::Header { header: None, len },
        ["PROXY", fam @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let (Ok(s), Ok(d), Ok(sp), Ok(dp)) = (
                src.parse::<IpAddr>(),
                dst.parse::<IpAddr>(),
                sport.parse::<u16>(),
                dport.parse::<u16>(),
            ) else {
                return Parsed::Invalid(format!("v1 line {line:?}"));
            };
            if s.is_ipv4() != (*fam == "TCP4") || d.is_ipv4() != (*fam == "TCP4") {
                return Parsed::Invalid(format!("v1 line {line:?}: addresses of another family"));
            }
            Parsed::Header {
                header: Some(ProxyHeader {
                    source: SocketAddr::new(s, sp),
                    destination: SocketAddr::new(d, dp),
                }),
                len,
            }
        }
        _ => Parsed::Invalid(format!("v1 line {line:?}")),
    }
}

/// Reads an optional PROXY header from the start of `stream` within `timeout`: peeks until it can
/// tell, then consumes exactly the header (a stream without one is left untouched). A stream that
/// starts like a header but is not one is an `InvalidData` error; the caller should close it.
pub async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> io::Result<Option<ProxyHeader>> {
    let work = async {
        let mut buf = [0u8; 16 + 216];
        loop {
            let n = stream.peek(&mut buf).await?;
            match parse(&buf[..n]) {
                Parsed::NotProxy => return Ok(None),
                Parsed::Header { header, len } => {
                    let mut skip = vec![0u8; len];
                    stream.read_exact(&mut skip).await?;
                    return Ok(header);
                }
                Parsed::Invalid(why) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, why));
                }
                Parsed::Incomplete if n == 0 => return Ok(None),
                Parsed::Incomplete if n == buf.len() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "PROXY header too long",
                    ));
                }
                // A peek returns at once with what is queued; the rest of a header split over
                // segments follows within a round trip, so poll briefly.
                Parsed::Incomplete => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no complete PROXY header in time",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v2_round_trips_v4_and_v6_and_local_has_no_addresses() {
        for (s, d) in [
            (a("192.0.2.1:51234"), a("198.51.100.1:80")),
            (a("[2001:db8::1]:5353"), a("[2001:db8::2]:53")),
        ] {
            let h = encode_v2(s, d, Transport::Stream);
            let mut stream = h.clone();
            stream.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(
                parse(&stream),
                Parsed::Header {
                    header: Some(ProxyHeader {
                        source: s,
                        destination: d
                    }),
                    len: h.len()
                }
            );
            assert_eq!(parse(&h[..h.len() - 1]), Parsed::Incomplete);
        }
        let mixed = encode_v2(a("192.0.2.1:1"), a("[::1]:2"), Transport::Stream);
        assert_eq!(
            parse(&mixed),
            Parsed::Header {
                header: None,
                len: 16
            }
        );
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local),
            Parsed::Header {
                header: None,
                len: 16
            }
        );
    }

    #[test]
    fn v1_lines_and_what_is_not_a_header() {
        let line = encode_v1(a("192.0.2.1:51234"), a("198.51.100.1:80"));
        assert_eq!(line, b"PROXY TCP4 192.0.2.1 198.51.100.1 51234 80\r\n");
        assert_eq!(
            parse(&line),
            Parsed::Header {
                header: Some(ProxyHeader {
                    source: a("192.0.2.1:51234"),
                    destination: a("198.51.100.1:80")
                }),
                len: line.len()
            }
        );
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Parsed::Incomplete);
        assert_eq!(parse(b"PRO"), Parsed::Incomplete);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::NotProxy);
        assert_eq!(parse(b"\x16\x03\x01"), Parsed::NotProxy);
        assert!(matches!(
            parse(b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n"),
            Parsed::Invalid(_)
        ));
        assert!(matches!(parse(b"PROXY TCP9 x\r\n"), Parsed::Invalid(_)));
    }

    #[tokio::test]
    async fn read_header_consumes_exactly_the_header() {
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        for with in [true, false] {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let (mut s, _) = l.accept().await.unwrap();
            if with {
                let h = encode_v2(a("192.0.2.7:4000"), addr, Transport::Stream);
                // Split across writes: the reader must wait for the rest.
                c.write_all(&h[..10]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                c.write_all(&h[10..]).await.unwrap();
            }
            c.write_all(b"hello").await.unwrap();
            let got = read_header(&mut s, Duration::from_secs(5)).await.unwrap();
            assert_eq!(got.map(|h| h.source), with.then(|| a("192.0.2.7:4000")));
            let mut rest = [0u8; 5];
            s.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest, b"hello");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_after_a_signature(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = V2_SIGNATURE.to_vec();
            b.extend(tail);
            if let Parsed::Header { len, .. } = parse(&b) {
                prop_assert!(len <= b.len());
            }
        }
    }
}
