//! Name resolution for the pod shell: cluster DNS answered from the cluster view.
//!
//! In a cluster, a pod's `/etc/resolv.conf` points at CoreDNS with the search path
//! `<ns>.svc.cluster.local svc.cluster.local cluster.local` and `ndots:5`, so `web`, `web.default` and
//! `web.default.svc.cluster.local` all reach Service `default/web`. The lab runs no DNS server: this
//! resolver answers the same questions CoreDNS's `kubernetes` plugin would, from the Services and
//! EndpointSlices the node watches:
//! - `<svc>.<ns>.svc.cluster.local` → the ClusterIP(s); a headless Service → its ready endpoints;
//!   an ExternalName Service → refused (there is no outside DNS to follow the CNAME);
//! - `<a-b-c-d>.<ns>.pod.cluster.local` → the address `a.b.c.d` (CoreDNS `pods insecure`);
//! - `localhost`, `127.0.0.1` and `::1` → the pod's own address: pods here share the host's loopback,
//!   so "myself" must mean the pod IP, where the pod's servers listen;
//! - an IP literal → itself. Any other name does not resolve.

use std::net::IpAddr;

use proxylab_core::cluster::{ClusterView, ServiceKey};

/// The cluster domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The name that matched, fully qualified (or the literal).
    pub name: String,
    /// The addresses, in answer order.
    pub addrs: Vec<IpAddr>,
    /// What the name is (`Service default/web (ClusterIP)`), for `fetch -v` and `nslookup`.
    pub what: String,
}

/// Resolves names the way a pod's cluster DNS would.
#[derive(Clone, Debug)]
pub struct ClusterDns {
    view: Option<ClusterView>,
    namespace: String,
    pod_ip: IpAddr,
}

impl ClusterDns {
    /// A resolver for a pod in `namespace` at `pod_ip`; without a view only literals resolve.
    pub fn new(view: Option<ClusterView>, namespace: &str, pod_ip: IpAddr) -> Self {
        Self {
            view,
            namespace: namespace.to_owned(),
            pod_ip,
        }
    }

    /// The search path of the pod's resolv.conf.
    pub fn search_path(&self) -> Vec<String> {
        vec![
            format!("{}.svc.{CLUSTER_DOMAIN}", self.namespace),
            format!("svc.{CLUSTER_DOMAIN}"),
            CLUSTER_DOMAIN.to_owned(),
        ]
    }

    /// Resolves `name` (search path applied as with `ndots:5`).
    pub fn resolve(&self, name: &str) -> Result<Resolved, String> {
        let trimmed = name.trim_end_matches('.');
        if let Ok(ip) = trimmed
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            // Only the classic loopback literals: the lab's own addresses are all in 127.0.0.0/8.
            if ip == IpAddr::from([127, 0, 0, 1])
                || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            {
                return Ok(Resolved {
                    name: name.to_owned(),
                    addrs: vec![self.pod_ip],
                    what: "this pod (the pod's loopback is its own address here)".into(),
                });
            }
            return Ok(Resolved {
                name: name.to_owned(),
                addrs: vec![ip],
                what: "an address".into(),
            });
        }
        let lower = trimmed.to_ascii_lowercase();
        if lower == "localhost" || lower == "localhost.localdomain" {
            return Ok(Resolved {
                name: "localhost".into(),
                addrs: vec![self.pod_ip],
                what: "this pod (the pod's loopback is its own address here)".into(),
            });
        }
        let absolute = name.ends_with('.');
        let dots = lower.matches('.').count();
        let mut candidates = Vec::new();
        if !absolute && dots < 5 {
            candidates.extend(self.search_path().iter().map(|s| format!("{lower}.{s}")));
        }
        candidates.push(lower.clone());
        let mut last_error = None;
        for fqdn in candidates {
            match self.lookup(&fqdn) {
                Some(Ok(resolved)) => return Ok(resolved),
                Some(Err(err)) => last_error = Some(err),
                None => {}
            }
        }
        Err(last_error.unwrap_or_else(|| {
            format!(
                "could not resolve host: {name} (the lab has no DNS server; Service names \
                 resolve from the cluster view as CoreDNS would, other names do not)"
            )
        }))
    }

    /// One fully qualified name; None when it names nothing (NXDOMAIN), Some(Err) when it names
    /// something without usable addresses.
    fn lookup(&self, fqdn: &str) -> Option<Result<Resolved, String>> {
        let rest = fqdn.strip_suffix(&format!(".{CLUSTER_DOMAIN}"))?;
        let labels: Vec<&str> = rest.split('.').collect();
        match labels.as_slice() {
            [service, namespace, "svc"] => self.service(fqdn, namespace, service),
            [ip, _namespace, "pod"] => {
                let ip: IpAddr = ip.replace('-', ".").parse().ok()?;
                Some(Ok(Resolved {
                    name: fqdn.to_owned(),
                    addrs: vec![ip],
                    what: "a pod address".into(),
                }))
            }
            _ => None,
        }
    }

    fn service(&self, fqdn: &str, namespace: &str, name: &str) -> Option<Result<Resolved, String>> {
        let snapshot = self.view.as_ref()?.snapshot();
        let key = ServiceKey::new(namespace, name);
        let service = snapshot.service(&key)?;
        if let Some(external) = &service.external_name {
            return Some(Err(format!(
                "{fqdn} is an ExternalName Service (CNAME {external}); the lab has no DNS server to follow it"
            )));
        }
        if !service.is_headless() {
            return Some(Ok(Resolved {
                name: fqdn.to_owned(),
                addrs: service.cluster_ips.clone(),
                what: format!("Service {namespace}/{name} (ClusterIP)"),
            }));
        }
        let mut addrs: Vec<IpAddr> = snapshot
            .slices_for(&key)
            .flat_map(|slice| slice.endpoints.iter())
            .filter(|e| e.conditions.ready)
            .flat_map(|e| e.addresses.iter().copied())
            .collect();
        addrs.dedup();
        if addrs.is_empty() {
            return Some(Err(format!(
                "{fqdn}: headless Service {namespace}/{name} has no ready endpoints"
            )));
        }
        Some(Ok(Resolved {
            name: fqdn.to_owned(),
            addrs,
            what: format!("headless Service {namespace}/{name} (its ready pods)"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxylab_core::cluster::ClusterSnapshot;
    use serde_json::json;

    fn view() -> ClusterView {
        let objects = [
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"namespace": "default", "name": "web"},
                "spec": {"clusterIP": "127.0.40.10", "clusterIPs": ["127.0.40.10"],
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"namespace": "default", "name": "db"},
                "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"namespace": "default", "name": "db-x",
                    "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4", "ports": [{"port": 5432}],
                "endpoints": [
                    {"addresses": ["127.0.30.7"], "conditions": {"ready": true}},
                    {"addresses": ["127.0.30.8"], "conditions": {"ready": false}}]}),
        ];
        ClusterView::new(ClusterSnapshot::from_objects(objects.iter()).expect("objects"))
    }

    #[test]
    fn service_names_in_every_form() {
        let dns = ClusterDns::new(Some(view()), "default", "127.0.30.5".parse().expect("ip"));
        for name in [
            "web",
            "web.default",
            "web.default.svc",
            "web.default.svc.cluster.local",
            "web.default.svc.cluster.local.",
        ] {
            let r = dns.resolve(name).expect(name);
            assert_eq!(
                r.addrs,
                vec!["127.0.40.10".parse::<IpAddr>().expect("ip")],
                "{name}"
            );
            assert_eq!(r.name, "web.default.svc.cluster.local");
        }
        let other_ns = ClusterDns::new(
            Some(view()),
            "kube-system",
            "127.0.30.5".parse().expect("ip"),
        );
        assert!(
            other_ns.resolve("web").is_err(),
            "web is not in kube-system's search path"
        );
        assert!(other_ns.resolve("web.default").is_ok());
        let db = dns.resolve("db").expect("headless");
        assert_eq!(db.addrs, vec!["127.0.30.7".parse::<IpAddr>().expect("ip")]);
        assert!(dns.resolve("example.com").is_err());
        assert!(
            dns.resolve("nope")
                .expect_err("nxdomain")
                .contains("no DNS server")
        );
    }

    #[test]
    fn literals_and_loopback() {
        let dns = ClusterDns::new(None, "default", "127.0.30.5".parse().expect("ip"));
        assert_eq!(
            dns.resolve("localhost").expect("lo").addrs,
            vec!["127.0.30.5".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(
            dns.resolve("127.0.0.1").expect("lo").addrs,
            vec!["127.0.30.5".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(
            dns.resolve("127.0.40.10").expect("ip").addrs,
            vec!["127.0.40.10".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(
            dns.resolve("127-0-30-9.default.pod.cluster.local")
                .expect("pod")
                .addrs,
            vec!["127.0.30.9".parse::<IpAddr>().expect("ip")]
        );
        assert!(dns.resolve("web").is_err(), "no view: only literals");
    }
}
