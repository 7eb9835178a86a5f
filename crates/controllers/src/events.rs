//! core/v1 Events, as client-go's event recorder writes them.
//!
//! Controllers explain themselves through Events: `kubectl describe pod` lists the Events whose
//! `involvedObject` is the Pod (by uid, name and namespace), showing `type`, `reason`, the
//! age from `firstTimestamp`/`lastTimestamp`, `source.component` as "From", and `message`.
//! The real recorder also aggregates repeats into one Event with a growing `count`; the
//! controllers here avoid repeats instead, by emitting an Event only when they change
//! something.

use proxylab_apimachinery::meta;
use serde_json::{Value, json};

use crate::action::{Action, Target, resources};

/// An Event about a Pod from `component` (e.g. `default-scheduler`, `node-controller`).
pub fn pod_event(
    pod: &Value,
    component: &str,
    event_type: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> Value {
    object_event(
        pod, "v1", "Pod", component, event_type, reason, message, now,
    )
}

/// An Event about any namespaced object (`kubectl describe deployment` lists the
/// `ScalingReplicaSet` Events of the Deployment controller this way).
// The arguments are the Event's own fields; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn object_event(
    obj: &Value,
    api_version: &str,
    kind: &str,
    component: &str,
    event_type: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> Value {
    let pod = obj;
    let ns = meta::namespace(pod).unwrap_or("");
    // client-go's recorder names events "<object>.<unix nanos in hex>". One reconcile pass
    // shares one `now`, and may say several things about one object (a ReplicaSet creating
    // three Pods): a process-wide sequence added to the nanoseconds keeps the names apart.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!(
        "{}.{:x}",
        meta::name(pod).unwrap_or(""),
        now.as_nanosecond().wrapping_add(i128::from(seq))
    );
    let ts = meta::format_time(now);
    let mut involved = json!({
        "apiVersion": api_version,
        "kind": kind,
        "namespace": ns,
        "name": meta::name(pod).unwrap_or(""),
        "uid": meta::uid(pod).unwrap_or(""),
    });
    if let Some(rv) = meta::str_at(pod, &["metadata", "resourceVersion"]) {
        involved["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": meta::new_object_meta(Some(ns), &name, &uuid::Uuid::new_v4().to_string(), now),
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "source": { "component": component },
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
        "type": event_type,
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": component,
    })
}

/// The action that stores an Event.
pub fn create(event: Value) -> Action {
    Action::Create {
        target: Target::new(
            resources::EVENTS,
            Some(meta::namespace(&event).unwrap_or("")),
            meta::name(&event).unwrap_or(""),
        ),
        object: event,
    }
}
