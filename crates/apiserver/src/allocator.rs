//! Service admission: ClusterIP and NodePort allocation and the defaults kube-apiserver fills in.
//!
//! In Kubernetes, a Service's virtual IP and node ports are not chosen by any controller: the apiserver's
//! service REST storage allocates them *while admitting the create*, so that the object is never seen
//! without them. The allocation state lives in etcd as two `RangeAllocation` objects (a bitmap over
//! `--service-cluster-ip-range` and one over `--service-node-port-range`) updated with compare-and-swap;
//! that is what keeps several apiservers from handing out the same IP.
//!
//! The lab models exactly that: two `RangeAllocation` objects in the shared [`Store`] (resource
//! `rangeallocations`, names `serviceips` and `servicenodeports`, not served over REST) holding the set of
//! allocated values, changed with resourceVersion preconditions and retried on conflict. So the lab's
//! three front-ends allocate consistently. An allocation is rolled back if the Service write then fails,
//! and released when the Service is deleted (or its type no longer needs it).
//!
//! Defaults set here mirror kube-apiserver's: `type: ClusterIP`, `sessionAffinity: None`,
//! `ipFamilies: [IPv4]` (or IPv6 by the range), `ipFamilyPolicy: SingleStack`, `internalTrafficPolicy:
//! Cluster`, `externalTrafficPolicy: Cluster` for NodePort/LoadBalancer, each port's `protocol: TCP` and
//! `targetPort` = `port`. `clusterIP: None` makes a headless Service. ClusterIPs are chosen at random in the
//! range (as kube does), except the first address, which the bootstrap reserves for `default/kubernetes`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use ipnet::IpNet;
use proxylab_apimachinery::status::{Cause, Status};
use proxylab_store::{ObjectKey, Store, StoreError};
use rand::Rng;
use serde_json::{Value, json};

const RANGE_RESOURCE: &str = "rangeallocations";
const IPS: &str = "serviceips";
const PORTS: &str = "servicenodeports";

/// What one admission allocated (to roll back if the write fails).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Allocated {
    pub ips: Vec<IpAddr>,
    pub ports: Vec<u16>,
}

/// Allocates ClusterIPs and NodePorts from the configured ranges, keeping state in the store.
pub struct ServiceAllocator {
    store: Arc<dyn Store>,
    cidr: IpNet,
    ports: RangeInclusive<u16>,
}

impl std::fmt::Debug for ServiceAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAllocator")
            .field("cidr", &self.cidr)
            .field("ports", &self.ports)
            .finish()
    }
}

fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

fn invalid(svc: &Value, causes: Vec<Cause>) -> Status {
    let name = svc["metadata"]["name"].as_str().unwrap_or("");
    Status::invalid("Service", name, causes)
}

fn store_status(e: StoreError) -> Status {
    Status::internal(format!("allocator: {e}"))
}

impl ServiceAllocator {
    pub fn new(store: Arc<dyn Store>, cidr: IpNet, ports: RangeInclusive<u16>) -> Self {
        ServiceAllocator { store, cidr, ports }
    }

    /// The first usable address of the range (reserved for the `kubernetes` Service).
    pub fn first_ip(&self) -> Option<IpAddr> {
        self.offset_ip(1)
    }

    fn offset_ip(&self, off: u128) -> Option<IpAddr> {
        let base = ip_to_u128(self.cidr.network());
        let v = base.checked_add(off)?;
        let ip = match self.cidr {
            IpNet::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(u32::try_from(v).ok()?)),
            IpNet::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(v)),
        };
        self.cidr.contains(&ip).then_some(ip)
    }

    /// Usable offsets within the range: [1, size-2] for IPv4 (no network/broadcast), [1, size-1] for IPv6.
    fn usable(&self) -> (u128, u128) {
        let bits = self.cidr.max_prefix_len() - self.cidr.prefix_len();
        let size: u128 = if bits >= 128 {
            u128::MAX
        } else {
            1u128 << bits
        };
        match self.cidr {
            IpNet::V4(_) => (1, size.saturating_sub(2)),
            IpNet::V6(_) => (1, size.saturating_sub(1)),
        }
    }

    /// Runs `f` on the allocation set named `name` under compare-and-swap, retrying on conflict.
    fn modify<T>(
        &self,
        name: &str,
        range: &str,
        mut f: impl FnMut(&mut BTreeSet<String>) -> Result<T, Status>,
    ) -> Result<T, Status> {
        let key = ObjectKey::new(RANGE_RESOURCE, None, name);
        for _ in 0..64 {
            let current = self.store.get(&key).map_err(store_status)?;
            let (mut set, rv): (BTreeSet<String>, Option<u64>) = match &current {
                Some(obj) => (
                    obj["data"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    obj["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|s| s.parse().ok()),
                ),
                None => (BTreeSet::new(), None),
            };
            let before = set.clone();
            let out = f(&mut set)?;
            if set == before {
                return Ok(out);
            }
            let obj = json!({
                "apiVersion": "v1", "kind": "RangeAllocation",
                "metadata": {"name": name}, "range": range,
                "data": set.iter().collect::<Vec<_>>(),
            });
            let res = match rv {
                Some(rv) => self.store.update(&key, obj, Some(rv)).map(|_| ()),
                None => self.store.create(&key, obj).map(|_| ()),
            };
            match res {
                Ok(()) => return Ok(out),
                Err(
                    StoreError::Conflict { .. } | StoreError::AlreadyExists | StoreError::NotFound,
                ) => continue,
                Err(e) => return Err(store_status(e)),
            }
        }
        Err(Status::internal("allocator: too much contention"))
    }

    fn allocate_ip(&self, svc: &Value, requested: Option<IpAddr>) -> Result<IpAddr, Status> {
        let range = self.cidr.to_string();
        let (lo, hi) = self.usable();
        if let Some(ip) = requested {
            let off = ip_to_u128(ip).wrapping_sub(ip_to_u128(self.cidr.network()));
            if !self.cidr.contains(&ip) || off < lo || off > hi {
                return Err(invalid(
                    svc,
                    vec![Cause::invalid(
                        "spec.clusterIPs[0]",
                        &json!(ip.to_string()),
                        &format!(
                            "failed to allocate IP {ip}: provided IP is not in the valid range. The range of valid IPs is {range}"
                        ),
                    )],
                ));
            }
            return self.modify(IPS, &range, |set| {
                if !set.insert(ip.to_string()) {
                    return Err(invalid(
                        svc,
                        vec![Cause::invalid(
                            "spec.clusterIPs[0]",
                            &json!(ip.to_string()),
                            &format!(
                                "failed to allocate IP {ip}: provided IP is already allocated"
                            ),
                        )],
                    ));
                }
                Ok(ip)
            });
        }
        self.modify(IPS, &range, |set| {
            // Random probing first (kube picks at random), skipping the reserved first address, then a
            // scan so that a nearly full range still allocates.
            let mut rng = rand::rng();
            let from = lo.saturating_add(1).min(hi);
            for _ in 0..64 {
                let off = rng.random_range(from..=hi);
                if let Some(ip) = self.offset_ip(off)
                    && set.insert(ip.to_string())
                {
                    return Ok(ip);
                }
            }
            let mut off = from;
            while off <= hi && off - from < 1 << 20 {
                if let Some(ip) = self.offset_ip(off)
                    && set.insert(ip.to_string())
                {
                    return Ok(ip);
                }
                off += 1;
            }
            Err(Status::internal(format!(
                "failed to allocate a serviceIP: range {range} is full"
            )))
        })
    }

    fn port_range_str(&self) -> String {
        format!("{}-{}", self.ports.start(), self.ports.end())
    }

    fn allocate_port(
        &self,
        svc: &Value,
        field: &str,
        requested: Option<u16>,
    ) -> Result<u16, Status> {
        let range = self.port_range_str();
        if let Some(p) = requested {
            if !self.ports.contains(&p) {
                return Err(invalid(
                    svc,
                    vec![Cause::invalid(
                        field,
                        &json!(p),
                        &format!(
                            "provided port is not in the valid range. The range of valid ports is {range}"
                        ),
                    )],
                ));
            }
            return self.modify(PORTS, &range, |set| {
                if !set.insert(p.to_string()) {
                    return Err(invalid(
                        svc,
                        vec![Cause::invalid(
                            field,
                            &json!(p),
                            "provided port is already allocated",
                        )],
                    ));
                }
                Ok(p)
            });
        }
        self.modify(PORTS, &range, |set| {
            let mut rng = rand::rng();
            for _ in 0..64 {
                let p = rng.random_range(self.ports.clone());
                if set.insert(p.to_string()) {
                    return Ok(p);
                }
            }
            for p in self.ports.clone() {
                if set.insert(p.to_string()) {
                    return Ok(p);
                }
            }
            Err(Status::internal(format!(
                "failed to allocate a nodePort: range {range} is full"
            )))
        })
    }

    /// Gives back what an admission (or a deleted Service) held.
    pub fn release(&self, a: &Allocated) {
        if !a.ips.is_empty() {
            let range = self.cidr.to_string();
            let _ = self.modify(IPS, &range, |set| {
                for ip in &a.ips {
                    set.remove(&ip.to_string());
                }
                Ok(())
            });
        }
        if !a.ports.is_empty() {
            let range = self.port_range_str();
            let _ = self.modify(PORTS, &range, |set| {
                for p in &a.ports {
                    set.remove(&p.to_string());
                }
                Ok(())
            });
        }
    }

    /// Everything a stored Service holds.
    pub fn held_by(svc: &Value) -> Allocated {
        let spec = &svc["spec"];
        let mut a = Allocated::default();
        let mut ips: Vec<&str> = spec["clusterIPs"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(ip) = spec["clusterIP"].as_str() {
            ips.push(ip);
        }
        for ip in ips {
            if let Ok(ip) = ip.parse::<IpAddr>()
                && !a.ips.contains(&ip)
            {
                a.ips.push(ip);
            }
        }
        for p in spec["ports"].as_array().into_iter().flatten() {
            if let Some(n) = p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok())
                && n != 0
                && !a.ports.contains(&n)
            {
                a.ports.push(n);
            }
        }
        if let Some(n) = spec["healthCheckNodePort"]
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            && n != 0
            && !a.ports.contains(&n)
        {
            a.ports.push(n);
        }
        a
    }

    fn family(&self) -> &'static str {
        match self.cidr {
            IpNet::V4(_) => "IPv4",
            IpNet::V6(_) => "IPv6",
        }
    }

    /// Defaults and allocations for a Service being created (`old` = None) or updated. On error nothing
    /// stays allocated. On success the caller must [`release`](Self::release) the returned value if its
    /// own write fails; after a successful update, the caller releases `held_by(old)` minus
    /// `held_by(new)` (see [`ServiceAllocator::released_by_update`]).
    pub fn admit(&self, svc: &mut Value, old: Option<&Value>) -> Result<Allocated, Status> {
        let mut got = Allocated::default();
        match self.admit_inner(svc, old, &mut got) {
            Ok(()) => Ok(got),
            Err(e) => {
                self.release(&got);
                Err(e)
            }
        }
    }

    fn admit_inner(
        &self,
        svc: &mut Value,
        old: Option<&Value>,
        got: &mut Allocated,
    ) -> Result<(), Status> {
        if !svc["spec"].is_object() {
            svc["spec"] = json!({});
        }
        let old_spec = old.map(|o| o["spec"].clone()).unwrap_or(Value::Null);
        let svc_ro = svc.clone();
        let spec = svc["spec"]
            .as_object_mut()
            .ok_or_else(|| Status::bad_request("spec must be an object"))?;
        let ty = spec
            .get("type")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("ClusterIP")
            .to_owned();
        spec.insert("type".into(), json!(ty));
        if ty == "ExternalName" {
            // No virtual IP, no ports to allocate.
            for k in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                spec.remove(k);
            }
            return Ok(());
        }
        spec.entry("sessionAffinity").or_insert(json!("None"));
        spec.entry("internalTrafficPolicy")
            .or_insert(json!("Cluster"));

        // ClusterIP: immutable once set, so an update keeps the old one unless the type needed none.
        let requested = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| {
                spec.get("clusterIPs")
                    .and_then(|v| v.get(0))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            })
            .map(str::to_owned);
        let old_ip = old_spec["clusterIP"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let ip_str = match (requested, old_ip) {
            (None, Some(o)) => o,
            (Some(r), Some(o)) if r == o => o,
            (Some(r), _) if r == "None" => "None".to_owned(),
            (Some(r), _) => {
                let ip: IpAddr = r.parse().map_err(|_| {
                    invalid(
                        &svc_ro,
                        vec![Cause::invalid(
                            "spec.clusterIPs[0]",
                            &json!(r),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        )],
                    )
                })?;
                self.allocate_ip(&svc_ro, Some(ip))?;
                got.ips.push(ip);
                ip.to_string()
            }
            (None, None) => {
                let ip = self.allocate_ip(&svc_ro, None)?;
                got.ips.push(ip);
                ip.to_string()
            }
        };
        spec.insert("clusterIP".into(), json!(ip_str));
        spec.insert("clusterIPs".into(), json!([ip_str]));
        spec.entry("ipFamilies").or_insert(json!([self.family()]));
        spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));

        let node_ports = ty == "NodePort"
            || (ty == "LoadBalancer"
                && spec
                    .get("allocateLoadBalancerNodePorts")
                    .and_then(Value::as_bool)
                    .unwrap_or(true));
        if ty == "LoadBalancer" {
            spec.entry("allocateLoadBalancerNodePorts")
                .or_insert(json!(true));
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            spec.entry("externalTrafficPolicy")
                .or_insert(json!("Cluster"));
        } else {
            spec.remove("externalTrafficPolicy");
        }

        let old_ports: Vec<Value> = old_spec["ports"].as_array().cloned().unwrap_or_default();
        let old_held = old.map(Self::held_by).unwrap_or_default();
        let mut ports: Vec<Value> = spec
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // node ports already claimed by this admission (a service may reuse one nodePort for TCP and UDP)
        let mut mine: Vec<u16> = Vec::new();
        for (i, p) in ports.iter_mut().enumerate() {
            let Some(pm) = p.as_object_mut() else {
                continue;
            };
            pm.entry("protocol").or_insert(json!("TCP"));
            if !pm.contains_key("targetPort")
                && let Some(port) = pm.get("port").cloned()
            {
                pm.insert("targetPort".into(), port);
            }
            if !node_ports {
                pm.remove("nodePort");
                continue;
            }
            let requested = pm
                .get("nodePort")
                .and_then(Value::as_u64)
                .filter(|n| *n != 0)
                .map(|n| u16::try_from(n).unwrap_or(0));
            let field = format!("spec.ports[{i}].nodePort");
            let requested = requested.or_else(|| {
                // On update an unspecified nodePort keeps the old one of the same port.
                old_ports
                    .iter()
                    .find(|op| {
                        op["port"] == pm["port"]
                            && op["protocol"].as_str().unwrap_or("TCP")
                                == pm["protocol"].as_str().unwrap_or("TCP")
                    })
                    .and_then(|op| op["nodePort"].as_u64())
                    .and_then(|n| u16::try_from(n).ok())
            });
            let n = match requested {
                Some(n) if old_held.ports.contains(&n) || mine.contains(&n) => n,
                Some(n) => {
                    let n = self.allocate_port(&svc_ro, &field, Some(n))?;
                    got.ports.push(n);
                    n
                }
                None => {
                    let n = self.allocate_port(&svc_ro, &field, None)?;
                    got.ports.push(n);
                    n
                }
            };
            mine.push(n);
            pm.insert("nodePort".into(), json!(n));
        }
        if spec.contains_key("ports") {
            spec.insert("ports".into(), Value::Array(ports));
        }

        let needs_hc = ty == "LoadBalancer"
            && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local");
        if needs_hc {
            let requested = spec
                .get("healthCheckNodePort")
                .and_then(Value::as_u64)
                .filter(|n| *n != 0)
                .map(|n| u16::try_from(n).unwrap_or(0));
            let n = match requested {
                Some(n) if old_held.ports.contains(&n) => n,
                Some(n) => {
                    let n = self.allocate_port(&svc_ro, "spec.healthCheckNodePort", Some(n))?;
                    got.ports.push(n);
                    n
                }
                None => {
                    let n = self.allocate_port(&svc_ro, "spec.healthCheckNodePort", None)?;
                    got.ports.push(n);
                    n
                }
            };
            spec.insert("healthCheckNodePort".into(), json!(n));
        } else {
            spec.remove("healthCheckNodePort");
        }
        Ok(())
    }

    /// What an update gave up: held by `old` but not by `new`.
    pub fn released_by_update(old: &Value, new: &Value) -> Allocated {
        let o = Self::held_by(old);
        let n = Self::held_by(new);
        Allocated {
            ips: o.ips.into_iter().filter(|ip| !n.ips.contains(ip)).collect(),
            ports: o
                .ports
                .into_iter()
                .filter(|p| !n.ports.contains(p))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxylab_store::MemoryStore;

    fn alloc() -> ServiceAllocator {
        ServiceAllocator::new(
            Arc::new(MemoryStore::new(100)),
            "127.0.40.0/29".parse().unwrap(),
            30000..=30002,
        )
    }

    #[test]
    fn defaults_and_unique_ips() {
        let a = alloc();
        let mut seen = BTreeSet::new();
        // /29: offsets 1..=6 usable, 1 reserved for the kubernetes service → 5 random ones
        for i in 0..5 {
            let mut s =
                json!({"metadata": {"name": format!("s{i}")}, "spec": {"ports": [{"port": 80}]}});
            a.admit(&mut s, None).unwrap();
            assert_eq!(s["spec"]["type"], "ClusterIP");
            assert_eq!(s["spec"]["sessionAffinity"], "None");
            assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
            assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
            assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
            assert!(seen.insert(s["spec"]["clusterIP"].as_str().unwrap().to_owned()));
        }
        assert!(!seen.contains("127.0.40.1"));
        let mut s = json!({"metadata": {"name": "x"}, "spec": {}});
        assert_eq!(a.admit(&mut s, None).unwrap_err().code(), 500);
    }

    #[test]
    fn requested_ip_and_headless() {
        let a = alloc();
        let mut s = json!({"metadata": {"name": "k"}, "spec": {"clusterIP": "127.0.40.1"}});
        a.admit(&mut s, None).unwrap();
        let mut s2 = json!({"metadata": {"name": "k2"}, "spec": {"clusterIP": "127.0.40.1"}});
        assert_eq!(a.admit(&mut s2, None).unwrap_err().code(), 422);
        let mut s3 = json!({"metadata": {"name": "k3"}, "spec": {"clusterIP": "10.0.0.1"}});
        assert_eq!(a.admit(&mut s3, None).unwrap_err().code(), 422);
        let mut h = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}});
        a.admit(&mut h, None).unwrap();
        assert_eq!(h["spec"]["clusterIPs"], json!(["None"]));
        // release makes it available again
        a.release(&ServiceAllocator::held_by(&s));
        a.admit(&mut s2, None).unwrap();
    }

    #[test]
    fn node_ports_and_health_check() {
        let a = alloc();
        let mut s = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "ports": [{"port": 80}]}});
        let got = a.admit(&mut s, None).unwrap();
        assert_eq!(got.ports.len(), 2);
        assert!(s["spec"]["healthCheckNodePort"].as_u64().is_some());
        let mut n = json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30005}]}});
        assert_eq!(a.admit(&mut n, None).unwrap_err().code(), 422);
        let mut n = json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}});
        // only one port left in the range: the first succeeds, the second fails and is rolled back
        assert_eq!(a.admit(&mut n, None).unwrap_err().code(), 500);
        let mut n = json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        a.admit(&mut n, None).unwrap();
        // update to ClusterIP gives the node port back, keeping the IP
        let old = n.clone();
        let mut upd = n.clone();
        upd["spec"]["type"] = json!("ClusterIP");
        a.admit(&mut upd, Some(&old)).unwrap();
        assert_eq!(upd["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        assert!(upd["spec"]["ports"][0].get("nodePort").is_none());
        let rel = ServiceAllocator::released_by_update(&old, &upd);
        assert_eq!(rel.ports.len(), 1);
        assert!(rel.ips.is_empty());
    }
}
