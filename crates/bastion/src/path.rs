//! Which subresource a request path names, exactly as kube-apiserver splits it.
//!
//! ```text
//! /api/v1/nodes/{id}/proxy[/{path}]
//! /api/v1/namespaces/{ns}/pods/{id}/proxy[/{path}]
//! /api/v1/namespaces/{ns}/services/{id}/proxy[/{path}]
//! /api/v1/namespaces/{ns}/pods/{name}/log | exec | attach | portforward
//! ```
//!
//! The `{id}` of a proxy path is `[scheme:]name[:port]` ([`ProxyId`]); it is percent-decoded as Go's
//! `req.URL.Path` is. The backend path is everything after `/proxy`; [`backend_path`] gives it as
//! kube-apiserver sends it on: decoded, then escaped again as Go's `URL.EscapedPath` escapes (so a
//! client that encodes `/` as `%2F` — the official Python client does, for the `path` argument —
//! reaches `/a/b`, as with kube-apiserver). A trailing `/` is kept; the query travels separately.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// The three kinds of object a proxy path can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Node,
    Pod,
    Service,
}

impl Resource {
    /// The plural resource name (`nodes`, `pods`, `services`), as in URLs, RBAC and Status details.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Node => "nodes",
            Resource::Pod => "pods",
            Resource::Service => "services",
        }
    }

    /// The word kube-apiserver uses in `invalid <kind> request "<id>"`.
    pub fn singular(self) -> &'static str {
        match self {
            Resource::Node => "node",
            Resource::Pod => "pod",
            Resource::Service => "service",
        }
    }
}

/// The subresource a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subresource {
    Proxy,
    Log,
    Exec,
    Attach,
    PortForward,
}

impl Subresource {
    /// As written in the URL and in RBAC rules (`pods/portforward`).
    pub fn as_str(self) -> &'static str {
        match self {
            Subresource::Proxy => "proxy",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
        }
    }

    /// exec, attach and portforward: the streaming subresources that only work as upgrades.
    pub fn is_streaming(self) -> bool {
        matches!(
            self,
            Subresource::Exec | Subresource::Attach | Subresource::PortForward
        )
    }
}

/// A parsed request path. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPath<'a> {
    pub resource: Resource,
    /// `None` for nodes.
    pub namespace: Option<String>,
    /// The object segment, percent-decoded: a proxy id (`https:web:8443`) or a pod name.
    pub name: String,
    pub sub: Subresource,
    /// The raw request path up to and including `/proxy` (kube's `PathPrepend`). Empty for the
    /// non-proxy subresources.
    pub prefix: &'a str,
    /// The raw remainder after `/proxy`: `""`, `"/"` or `"/a/b"`. Empty for the non-proxy
    /// subresources.
    pub backend_path: &'a str,
}

/// A path that names a proxy subresource but cannot be read (a segment that is not UTF-8 once
/// decoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the path segment {segment:?} is not valid UTF-8 once percent-decoded")]
pub struct PathError {
    pub segment: String,
}

fn decode(segment: &str) -> Result<String, PathError> {
    match percent_decode_str(segment).decode_utf8() {
        Ok(Cow::Borrowed(s)) => Ok(s.to_owned()),
        Ok(Cow::Owned(s)) => Ok(s),
        Err(_) => Err(PathError {
            segment: segment.to_owned(),
        }),
    }
}

/// Bytes Go's `URL.EscapedPath` leaves as they are: unreserved characters and `$&+,/:;=@`.
const PATH_KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b',')
    .remove(b'/')
    .remove(b':')
    .remove(b';')
    .remove(b'=')
    .remove(b'@');

/// The backend path as kube-apiserver forwards it: percent-decoded, then re-escaped as Go does.
pub fn backend_path(raw: &str) -> String {
    let bytes: Vec<u8> = percent_decode_str(raw).collect();
    percent_encoding::percent_encode(&bytes, PATH_KEEP).to_string()
}

/// Parses `raw` (the request path, not decoded). `Ok(None)`: not one of the bastion's paths.
pub fn parse(raw: &str) -> Result<Option<ProxyPath<'_>>, PathError> {
    let Some(rest) = raw.strip_prefix("/api/v1/") else {
        return Ok(None);
    };
    // Byte offset of `rest` within `raw`.
    let base = raw.len() - rest.len();
    let mut segs = rest.split('/');
    let (resource, namespace) = match segs.next() {
        Some("nodes") => (Resource::Node, None),
        Some("namespaces") => {
            let Some(ns) = segs.next() else {
                return Ok(None);
            };
            let resource = match segs.next() {
                Some("pods") => Resource::Pod,
                Some("services") => Resource::Service,
                _ => return Ok(None),
            };
            (resource, Some(ns))
        }
        _ => return Ok(None),
    };
    let Some(name) = segs.next() else {
        return Ok(None);
    };
    let Some(sub) = segs.next() else {
        return Ok(None);
    };
    let sub = match (resource, sub) {
        (_, "proxy") => Subresource::Proxy,
        (Resource::Pod, "log") => Subresource::Log,
        (Resource::Pod, "exec") => Subresource::Exec,
        (Resource::Pod, "attach") => Subresource::Attach,
        (Resource::Pod, "portforward") => Subresource::PortForward,
        _ => return Ok(None),
    };
    // The byte offset just past the subresource segment: the segments consumed so far, each
    // followed by a separator except the last.
    let consumed = if namespace.is_some() { 5 } else { 3 };
    let end = base
        + rest
            .split('/')
            .take(consumed)
            .map(|s| s.len() + 1)
            .sum::<usize>()
        - 1;
    let remainder = &raw[end..];
    let (prefix, backend_path) = match sub {
        Subresource::Proxy => (&raw[..end], remainder),
        // `/pods/x/log/anything` is not a path kube-apiserver serves.
        _ if !remainder.is_empty() => return Ok(None),
        _ => ("", ""),
    };
    Ok(Some(ProxyPath {
        resource,
        namespace: namespace.map(decode).transpose()?,
        name: decode(name)?,
        sub,
        prefix,
        backend_path,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &str) -> Option<ProxyPath<'_>> {
        parse(raw).unwrap()
    }

    #[test]
    fn proxy_forms() {
        let x = p("/api/v1/namespaces/default/services/https:web:8443/proxy/a/b/").unwrap();
        assert_eq!(x.resource, Resource::Service);
        assert_eq!(x.namespace.as_deref(), Some("default"));
        assert_eq!(x.name, "https:web:8443");
        assert_eq!(x.sub, Subresource::Proxy);
        assert_eq!(
            x.prefix,
            "/api/v1/namespaces/default/services/https:web:8443/proxy"
        );
        assert_eq!(x.backend_path, "/a/b/");

        let x = p("/api/v1/nodes/node-1/proxy").unwrap();
        assert_eq!((x.resource, x.namespace), (Resource::Node, None));
        assert_eq!(x.prefix, "/api/v1/nodes/node-1/proxy");
        assert_eq!(x.backend_path, "");

        let x = p("/api/v1/nodes/node-1:10250/proxy/").unwrap();
        assert_eq!(x.name, "node-1:10250");
        assert_eq!(x.backend_path, "/");

        let x = p("/api/v1/namespaces/default/pods/web-1/proxy/x%2Fy").unwrap();
        assert_eq!(x.resource, Resource::Pod);
        assert_eq!(x.backend_path, "/x%2Fy");
    }

    #[test]
    fn ids_are_decoded() {
        let x = p("/api/v1/namespaces/default/services/http%3Aweb%3A80/proxy/").unwrap();
        assert_eq!(x.name, "http:web:80");
        assert!(parse("/api/v1/namespaces/default/services/%ff/proxy/").is_err());
    }

    #[test]
    fn pod_streaming_subresources() {
        for (s, sub) in [
            ("log", Subresource::Log),
            ("exec", Subresource::Exec),
            ("attach", Subresource::Attach),
            ("portforward", Subresource::PortForward),
        ] {
            let raw = format!("/api/v1/namespaces/ns/pods/web-1/{s}");
            let x = p(&raw).unwrap();
            assert_eq!((x.sub, x.name.as_str()), (sub, "web-1"));
            assert_eq!((x.prefix, x.backend_path), ("", ""));
        }
        assert_eq!(p("/api/v1/namespaces/ns/pods/web-1/log/extra"), None);
        assert_eq!(p("/api/v1/namespaces/ns/services/web/log"), None);
        assert_eq!(p("/api/v1/nodes/n/exec"), None);
    }

    #[test]
    fn other_paths_are_not_ours() {
        for raw in [
            "/api/v1/namespaces/default/pods/web-1",
            "/api/v1/namespaces/default/pods",
            "/api/v1/nodes",
            "/api/v1/nodes/n",
            "/api/v1/namespaces/default/pods/web-1/status",
            "/apis/apps/v1/namespaces/default/deployments/x/proxy",
            "/api/v1/namespaces/default/configmaps/x/proxy",
            "/healthz",
            "/api/v1/proxy/nodes/n",
        ] {
            assert_eq!(p(raw), None, "{raw}");
        }
    }

    #[test]
    fn backend_paths_are_decoded_and_escaped_as_go_does() {
        assert_eq!(backend_path("/a%2Fb"), "/a/b");
        assert_eq!(backend_path("/a%20b/c%3Fd"), "/a%20b/c%3Fd");
        assert_eq!(backend_path("/x:y@z;k=v&$,+"), "/x:y@z;k=v&$,+");
        assert_eq!(backend_path("/%C3%A9t%C3%A9"), "/%C3%A9t%C3%A9");
        assert_eq!(backend_path("/é"), "/%C3%A9");
        assert_eq!(backend_path(""), "");
    }

    proptest::proptest! {
        /// Whatever follows `/proxy` comes back unchanged as the backend path.
        #[test]
        fn backend_path_round_trips(tail in "(/[a-zA-Z0-9._~%-]{0,6}){0,4}/?") {
            let raw = format!("/api/v1/namespaces/ns/services/web/proxy{tail}");
            let x = parse(&raw).unwrap().unwrap();
            proptest::prop_assert_eq!(x.backend_path, tail.as_str());
            proptest::prop_assert_eq!(format!("{}{}", x.prefix, x.backend_path), raw);
        }
    }
}
