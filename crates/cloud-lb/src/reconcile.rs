//! The controller's pure half: from the Services as they are and the allocations held, what must be
//! written back — finalizers, `status.loadBalancer`, Events — and the allocations after.
//!
//! Level-triggered, as every Kubernetes controller (see `proxylab-controllers`): the function looks
//! at the whole picture, never at "which event happened", so a missed or repeated watch event costs
//! nothing, and a converged picture yields no actions. Three passes keep it stable and deterministic:
//!
//! 1. **keep**: every Service that still holds a valid address keeps it (pools, requests, sharing
//!    partners re-checked), so a newcomer can never take an address from an existing Service;
//! 2. **adopt**: a Service without an allocation whose status already shows an address of ours
//!    (the state file was lost) gets that address back if it is free;
//! 3. **allocate**: the rest, in namespace/name order.
//!
//! Events follow MetalLB's reasons: `IPAllocated` when an address is assigned or changes,
//! `AllocationFailed` (Warning) when none can be — once per distinct failure, not on every pass —
//! and `ClearAssignment` when a Service stops being ours (type or class changed) and its address is
//! released.

use std::collections::BTreeMap;
use std::net::IpAddr;

use proxylab_core::cluster::ServiceKey;
use serde_json::{Value, json};

use crate::alloc::{Allocation, Allocations, allocate, compatible, still_valid};
use crate::pool::Pools;
use crate::service::{FINALIZER, LbService};

/// `status.loadBalancer.ingress[].ipMode`: `Proxy` — traffic reaches the nodes from the load
/// balancer's own address, so kube-proxy must not short-circuit the ingress IP inside the cluster
/// (KEP-1860).
pub const IP_MODE: &str = "Proxy";

/// An Event to record on a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub key: ServiceKey,
    pub uid: String,
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// One write the controller wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Replace `metadata.finalizers` (with the resourceVersion read, so a concurrent change wins).
    SetFinalizers {
        key: ServiceKey,
        finalizers: Vec<String>,
        resource_version: Option<String>,
    },
    /// Replace `status.loadBalancer.ingress` (an empty list clears it).
    SetStatus {
        key: ServiceKey,
        ingress: Value,
    },
    Event(EventSpec),
}

/// What a pass decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub allocations: Allocations,
    /// The last failure message per Service, so the same failure is reported once.
    pub failures: BTreeMap<ServiceKey, String>,
    pub actions: Vec<Action>,
}

/// The status a Service with `alloc` must show.
pub fn desired_ingress(svc: &LbService, alloc: &Allocation) -> Value {
    let ports: Vec<Value> = svc
        .port_set()
        .into_iter()
        .map(|(proto, port)| json!({"port": port, "protocol": proto.as_str()}))
        .collect();
    json!([{"ip": alloc.ip.to_string(), "ipMode": IP_MODE, "ports": ports}])
}

fn is_empty_ingress(v: &Value) -> bool {
    v.as_array().is_none_or(Vec::is_empty)
}

/// One reconcile pass over every Service (the complete listing, not a delta).
pub fn reconcile(
    services: &BTreeMap<ServiceKey, LbService>,
    prev: &Allocations,
    prev_failures: &BTreeMap<ServiceKey, String>,
    pools: &Pools,
    class: &str,
) -> Plan {
    let mut plan = Plan::default();
    let wants = |s: &LbService| s.is_ours(class) && !s.deleting;

    // 1. keep
    for (key, cur) in prev {
        let Some(svc) = services
            .get(key)
            .filter(|s| wants(s) && s.problems.is_empty())
        else {
            continue;
        };
        if still_valid(svc, cur, pools, &plan.allocations).is_ok() {
            let mut kept = cur.clone();
            kept.ports = svc.port_set();
            kept.sharing_key = svc.sharing_key.clone();
            kept.uid = svc.uid.clone();
            plan.allocations.insert(key.clone(), kept);
        }
    }
    // 2. adopt
    for svc in services
        .values()
        .filter(|s| wants(s) && s.problems.is_empty())
    {
        if plan.allocations.contains_key(&svc.key) || prev.contains_key(&svc.key) {
            continue;
        }
        if let [ip] = svc.status_ips().as_slice()
            && let Some(pool) = pools.pool_of(*ip)
        {
            let candidate = Allocation {
                ip: *ip,
                pool: pool.name.clone(),
                sharing_key: svc.sharing_key.clone(),
                ports: svc.port_set(),
                uid: svc.uid.clone(),
            };
            if still_valid(svc, &candidate, pools, &plan.allocations).is_ok() {
                plan.allocations.insert(svc.key.clone(), candidate);
            }
        }
    }
    // 3. allocate, and write what each Service must show.
    for svc in services.values() {
        let key = &svc.key;
        let had: Option<IpAddr> = prev.get(key).map(|a| a.ip);
        if !wants(svc) {
            plan.allocations.remove(key);
            // The finalizer's name is shared by every load balancer implementation (it is the
            // cloud-controller-manager's), so it is only taken off a Service that was ours or that
            // no load balancer needs any more (not of type LoadBalancer): never off a Service that
            // another class's controller serves.
            let ours_to_clean =
                had.is_some() || svc.is_ours(class) || (!svc.load_balancer && svc.has_finalizer());
            if svc.deleting {
                // The Service is going: its address is free once the finalizer is off.
                if svc.has_finalizer() && ours_to_clean {
                    plan.actions.push(remove_finalizer(svc));
                }
                continue;
            }
            // No longer ours: the type changed from LoadBalancer, or the class changed. Only
            // addresses of our pools are cleared from the status; another controller's stay.
            let shows_ours = svc
                .status_ips()
                .iter()
                .any(|ip| pools.pool_of(*ip).is_some());
            if ours_to_clean && shows_ours {
                plan.actions.push(Action::SetStatus {
                    key: key.clone(),
                    ingress: json!([]),
                });
            }
            if let Some(ip) = had {
                plan.actions.push(event(
                    svc,
                    "Normal",
                    "ClearAssignment",
                    format!(
                        "Released IP {ip}: the Service is no longer a LoadBalancer of class {class}"
                    ),
                ));
            }
            if svc.has_finalizer() && ours_to_clean {
                plan.actions.push(remove_finalizer(svc));
            }
            continue;
        }
        if !svc.has_finalizer() {
            let mut finalizers = svc.finalizers.clone();
            finalizers.push(FINALIZER.to_owned());
            plan.actions.push(Action::SetFinalizers {
                key: key.clone(),
                finalizers,
                resource_version: svc.resource_version.clone(),
            });
        }
        if !plan.allocations.contains_key(key) {
            match allocate(svc, pools, &plan.allocations) {
                Ok(a) => {
                    plan.allocations.insert(key.clone(), a);
                }
                Err(e) => {
                    let message = format!("Failed to allocate IP for \"{key}\": {e}");
                    if prev_failures.get(key) != Some(&message) {
                        plan.actions.push(event(
                            svc,
                            "Warning",
                            "AllocationFailed",
                            message.clone(),
                        ));
                    }
                    plan.failures.insert(key.clone(), message);
                    if !is_empty_ingress(&svc.status_ingress) {
                        plan.actions.push(Action::SetStatus {
                            key: key.clone(),
                            ingress: json!([]),
                        });
                    }
                    continue;
                }
            }
        }
        let alloc = &plan.allocations[key];
        let ingress = desired_ingress(svc, alloc);
        if svc.status_ingress != ingress {
            plan.actions.push(Action::SetStatus {
                key: key.clone(),
                ingress,
            });
        }
        if had != Some(alloc.ip) && !svc.status_ips().contains(&alloc.ip) {
            plan.actions.push(event(
                svc,
                "Normal",
                "IPAllocated",
                format!("Assigned IP [\"{}\"]", alloc.ip),
            ));
        }
    }
    debug_assert!(plan.allocations.iter().all(|(k, a)| {
        services
            .get(k)
            .is_some_and(|s| compatible(s, a.ip, &plan.allocations).is_ok())
    }));
    plan
}

fn remove_finalizer(svc: &LbService) -> Action {
    Action::SetFinalizers {
        key: svc.key.clone(),
        finalizers: svc
            .finalizers
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect(),
        resource_version: svc.resource_version.clone(),
    }
}

fn event(svc: &LbService, type_: &'static str, reason: &'static str, message: String) -> Action {
    Action::Event(EventSpec {
        key: svc.key.clone(),
        uid: svc.uid.clone(),
        type_,
        reason,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::DEFAULT_CLASS;

    type Services = BTreeMap<ServiceKey, LbService>;

    fn pools() -> Pools {
        Pools::new(vec!["default=127.0.50.1-127.0.50.2".parse().unwrap()]).unwrap()
    }

    fn obj(name: &str, spec: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "resourceVersion": "1"},
               "spec": spec})
    }

    fn lb(name: &str) -> Value {
        obj(
            name,
            json!({"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
        )
    }

    fn services(objs: &[Value]) -> Services {
        objs.iter()
            .map(|o| {
                let s = LbService::from_json(o).unwrap();
                (s.key.clone(), s)
            })
            .collect()
    }

    /// Applies a plan's writes to the objects, as the apiserver would (finalizers, status).
    fn apply(objs: &mut [Value], plan: &Plan) {
        for a in &plan.actions {
            let (key, pointer, value) = match a {
                Action::SetFinalizers {
                    key, finalizers, ..
                } => (key, "/metadata", ("finalizers", json!(finalizers))),
                Action::SetStatus { key, ingress } => (
                    key,
                    "",
                    ("status", json!({"loadBalancer": {"ingress": ingress}})),
                ),
                Action::Event(_) => continue,
            };
            for o in objs.iter_mut() {
                if o["metadata"]["name"] == key.name
                    && let Some(target) = o.pointer_mut(pointer)
                {
                    target[value.0] = value.1.clone();
                }
            }
        }
    }

    /// Runs passes until nothing is left to do; returns the plans.
    fn converge(
        objs: &mut [Value],
        allocs: &mut Allocations,
        failures: &mut BTreeMap<ServiceKey, String>,
    ) -> Vec<Plan> {
        let mut plans = Vec::new();
        for _ in 0..5 {
            let plan = reconcile(&services(objs), allocs, failures, &pools(), DEFAULT_CLASS);
            apply(objs, &plan);
            *allocs = plan.allocations.clone();
            *failures = plan.failures.clone();
            let done = plan.actions.is_empty();
            plans.push(plan);
            if done {
                return plans;
            }
        }
        panic!("no convergence: {plans:#?}");
    }

    fn reasons(plans: &[Plan]) -> Vec<&'static str> {
        plans
            .iter()
            .flat_map(|p| &p.actions)
            .filter_map(|a| match a {
                Action::Event(e) => Some(e.reason),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn allocates_writes_status_and_finalizer_then_converges() {
        let mut objs = vec![lb("web")];
        let (mut allocs, mut failures) = Default::default();
        let plans = converge(&mut objs, &mut allocs, &mut failures);
        assert_eq!(
            plans.len(),
            2,
            "one pass of writes, then nothing: {plans:#?}"
        );
        assert_eq!(reasons(&plans), ["IPAllocated"]);
        assert_eq!(objs[0]["metadata"]["finalizers"], json!([FINALIZER]));
        assert_eq!(
            objs[0]["status"]["loadBalancer"]["ingress"],
            json!([{"ip": "127.0.50.1", "ipMode": "Proxy", "ports": [{"port": 80, "protocol": "TCP"}]}])
        );
        match &plans[0].actions[2] {
            Action::Event(e) => {
                assert_eq!(e.message, "Assigned IP [\"127.0.50.1\"]");
                assert_eq!(e.uid, "uid-web");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exhausted_pool_is_one_warning_event_until_an_address_frees_up() {
        let mut objs = vec![lb("a"), lb("b"), lb("c")];
        let (mut allocs, mut failures) = Default::default();
        let plans = converge(&mut objs, &mut allocs, &mut failures);
        assert_eq!(
            reasons(&plans),
            ["IPAllocated", "IPAllocated", "AllocationFailed"]
        );
        let failed = plans[0].actions.iter().find_map(|a| match a {
            Action::Event(e) if e.reason == "AllocationFailed" => Some(e.clone()),
            _ => None,
        });
        let failed = failed.unwrap();
        assert_eq!(failed.type_, "Warning");
        assert_eq!(
            failed.message,
            "Failed to allocate IP for \"default/c\": no available IPs"
        );
        assert!(objs[2]["status"].is_null());
        // Still failing on later passes: no new Event.
        let again = reconcile(
            &services(&objs),
            &allocs,
            &failures,
            &pools(),
            DEFAULT_CLASS,
        );
        assert!(again.actions.is_empty(), "{again:#?}");
        // "a" becomes a ClusterIP Service: its address is released and "c" gets it.
        objs[0]["spec"]["type"] = json!("ClusterIP");
        let plans = converge(&mut objs, &mut allocs, &mut failures);
        assert_eq!(reasons(&plans), ["ClearAssignment", "IPAllocated"]);
        assert_eq!(objs[0]["status"]["loadBalancer"]["ingress"], json!([]));
        assert_eq!(objs[0]["metadata"]["finalizers"], json!([]));
        assert_eq!(
            objs[2]["status"]["loadBalancer"]["ingress"][0]["ip"],
            "127.0.50.1"
        );
        assert!(failures.is_empty());
    }

    #[test]
    fn deletion_releases_and_removes_only_our_finalizer() {
        let mut objs = vec![lb("a")];
        objs[0]["metadata"]["finalizers"] = json!(["example.com/other"]);
        let (mut allocs, mut failures) = Default::default();
        converge(&mut objs, &mut allocs, &mut failures);
        assert_eq!(
            objs[0]["metadata"]["finalizers"],
            json!(["example.com/other", FINALIZER])
        );
        objs[0]["metadata"]["deletionTimestamp"] = json!("2026-12-05T04:00:00Z");
        let plans = converge(&mut objs, &mut allocs, &mut failures);
        assert!(allocs.is_empty());
        assert!(reasons(&plans).is_empty());
        assert_eq!(
            objs[0]["metadata"]["finalizers"],
            json!(["example.com/other"])
        );
        // A Service that vanished altogether (its finalizer removed by hand) frees its address too.
        let mut objs = vec![lb("x")];
        let (mut allocs, mut failures) = Default::default();
        converge(&mut objs, &mut allocs, &mut failures);
        let plan = reconcile(
            &Services::new(),
            &allocs,
            &failures,
            &pools(),
            DEFAULT_CLASS,
        );
        assert!(plan.allocations.is_empty() && plan.actions.is_empty());
    }

    #[test]
    fn a_restart_keeps_addresses_from_the_state_or_from_the_status() {
        let mut objs = vec![lb("a"), lb("b")];
        let (mut allocs, mut failures) = Default::default();
        converge(&mut objs, &mut allocs, &mut failures);
        // Delete "a" and re-create nothing: "b" keeps .2, and a newcomer gets .1, not .2.
        objs.remove(0);
        objs.push(lb("c"));
        converge(&mut objs, &mut allocs, &mut failures);
        assert_eq!(
            allocs[&ServiceKey::new("default", "b")].ip.to_string(),
            "127.0.50.2"
        );
        assert_eq!(
            allocs[&ServiceKey::new("default", "c")].ip.to_string(),
            "127.0.50.1"
        );
        // State lost: the addresses in the statuses are adopted, nothing is written.
        let plan = reconcile(
            &services(&objs),
            &Allocations::new(),
            &BTreeMap::new(),
            &pools(),
            DEFAULT_CLASS,
        );
        assert!(plan.actions.is_empty(), "{plan:#?}");
        assert_eq!(plan.allocations, allocs);
    }

    #[test]
    fn a_controller_of_another_class_leaves_unset_class_services_and_their_finalizer_alone() {
        let mut objs = vec![lb("web")];
        objs[0]["metadata"]["finalizers"] = json!([FINALIZER]);
        objs[0]["status"] = json!({"loadBalancer": {"ingress": [{"ip": "127.0.50.1"}]}});
        let plan = reconcile(
            &services(&objs),
            &Allocations::new(),
            &BTreeMap::new(),
            &pools(),
            "example.com/second",
        );
        assert!(plan.actions.is_empty(), "{plan:#?}");
        assert!(plan.allocations.is_empty());
        // Deleting it: the default controller's finalizer is not ours to remove.
        objs[0]["metadata"]["deletionTimestamp"] = json!("2026-12-05T04:00:00Z");
        let plan = reconcile(
            &services(&objs),
            &Allocations::new(),
            &BTreeMap::new(),
            &pools(),
            "example.com/second",
        );
        assert!(plan.actions.is_empty(), "{plan:#?}");
    }

    #[test]
    fn other_classes_are_left_alone() {
        let mut objs = vec![obj(
            "x",
            json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb", "ports": [{"port": 80}]}),
        )];
        objs[0]["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}});
        let (mut allocs, mut failures) = Default::default();
        let plans = converge(&mut objs, &mut allocs, &mut failures);
        assert_eq!(plans.len(), 1);
        assert_eq!(
            objs[0]["status"]["loadBalancer"]["ingress"][0]["ip"],
            "192.0.2.1"
        );
    }

    #[test]
    fn a_changed_request_moves_the_address_and_a_bad_one_clears_it() {
        let mut objs = vec![lb("a")];
        let (mut allocs, mut failures) = Default::default();
        converge(&mut objs, &mut allocs, &mut failures);
        objs[0]["spec"]["loadBalancerIP"] = json!("127.0.50.2");
        let plans = converge(&mut objs, &mut allocs, &mut failures);
        assert_eq!(reasons(&plans), ["IPAllocated"]);
        assert_eq!(
            objs[0]["status"]["loadBalancer"]["ingress"][0]["ip"],
            "127.0.50.2"
        );
        objs[0]["spec"]["loadBalancerIP"] = json!("127.0.99.9");
        let plans = converge(&mut objs, &mut allocs, &mut failures);
        assert_eq!(reasons(&plans), ["AllocationFailed"]);
        assert_eq!(objs[0]["status"]["loadBalancer"]["ingress"], json!([]));
        assert!(allocs.is_empty());
        assert!(
            failures[&ServiceKey::new("default", "a")]
                .contains("127.0.99.9 is not in any address pool")
        );
    }

    #[test]
    fn ports_in_the_status_follow_the_spec() {
        let mut objs = vec![lb("a")];
        let (mut allocs, mut failures) = Default::default();
        converge(&mut objs, &mut allocs, &mut failures);
        objs[0]["spec"]["ports"] =
            json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]);
        let plans = converge(&mut objs, &mut allocs, &mut failures);
        assert!(reasons(&plans).is_empty(), "same address, no new Event");
        assert_eq!(
            objs[0]["status"]["loadBalancer"]["ingress"][0]["ports"],
            json!([{"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}])
        );
    }
}
