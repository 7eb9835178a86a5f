//! Header rules of a forwarding proxy: hop-by-hop removal, `X-Forwarded-*` and `Via`.

use std::net::IpAddr;

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection (RFC 9110 §7.6.1, plus the legacy `Proxy-Connection` and
/// `Keep-Alive`). `Upgrade` is among them: a proxy re-adds it itself when it forwards an upgrade.
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Whether a `Connection` header lists `token` (case-insensitive, comma-separated, possibly over
/// several header lines).
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes every hop-by-hop header: the fixed list, `Upgrade`, and every header the `Connection`
/// header names (so `Connection: close, X-Secret` also drops `X-Secret`).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP.iter() {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Appends the client address to `X-Forwarded-For` (`existing, client`), as Go's ReverseProxy and
/// the apiserver proxy do. Earlier entries are kept: they are the client's claim, this one is ours.
pub fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let ours = client.to_string();
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.is_empty() => format!("{prior}, {ours}"),
        _ => ours,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

/// Sets `X-Forwarded-Host` and `X-Forwarded-Proto` unless an earlier proxy already did: the first
/// proxy is the one that saw the host and scheme the user typed.
pub fn set_forwarded_host_proto(headers: &mut HeaderMap, host: Option<&HeaderValue>, proto: &str) {
    if let Some(host) = host
        && !headers.contains_key(&X_FORWARDED_HOST)
    {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    if !headers.contains_key(&X_FORWARDED_PROTO)
        && let Ok(v) = HeaderValue::from_str(proto)
    {
        headers.insert(X_FORWARDED_PROTO, v);
    }
}

/// The `received-protocol` of a `Via` entry for a message of this version.
pub fn via_protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Appends `Via: <protocol> <received_by>` (RFC 9110 §7.6.3) to a request or response, after any
/// earlier entries, so a chain of proxies reads left to right.
pub fn append_via(headers: &mut HeaderMap, version: Version, received_by: &str) {
    let entry = format!("{} {}", via_protocol(version), received_by);
    if let Ok(v) = HeaderValue::from_str(&entry) {
        headers.append(header::VIA, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("s"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "authorization"]);
    }

    #[test]
    fn connection_token_detection() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.append(header::CONNECTION, HeaderValue::from_static("foo, UPGRADE"));
        assert!(connection_has(&h, "upgrade"));
        assert!(!connection_has(&h, "close"));
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, "127.0.0.1".parse().unwrap());
        append_forwarded_for(&mut h, "::1".parse().unwrap());
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1, ::1");
    }

    #[test]
    fn forwarded_host_kept_from_first_proxy() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_HOST, HeaderValue::from_static("first"));
        set_forwarded_host_proto(&mut h, Some(&HeaderValue::from_static("second")), "http");
        assert_eq!(h[&X_FORWARDED_HOST], "first");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
    }

    #[test]
    fn via_chain() {
        let mut h = HeaderMap::new();
        append_via(&mut h, Version::HTTP_11, "auth-proxy");
        append_via(&mut h, Version::HTTP_2, "bastion");
        let v: Vec<_> = h.get_all(header::VIA).iter().collect();
        assert_eq!(v, ["1.1 auth-proxy", "2 bastion"]);
    }
}
