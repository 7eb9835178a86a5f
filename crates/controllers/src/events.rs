//! core/v1 Events, as client-go's event recorder writes them.
//!
//! Controllers explain themselves through Events: `kubectl describe pod` lists the Events whose
//! `involvedObject` is the Pod (by uid, name and namespace), showing `type`, `reason`, the
//! age from `firstTimestamp`/`lastTimestamp`, `source.component` as "From", and `message`.
//! The real recorder also aggregates repeats into one Event with a growing `count`; the
//! controllers here avoid repeats instead, by emitting an Event only when they change
//! something.

use serde_json::{Value, json};

use crate::action::{Action, Target, resources};
use crate::obj;

/// An Event about a Pod from `component` (e.g. `default-scheduler`, `node-controller`).
pub fn pod_event(
    pod: &Value,
    component: &str,
    event_type: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> Value {
    let ns = obj::namespace(pod);
    // client-go's recorder names events "<object>.<unix nanos in hex>".
    let name = format!("{}.{:x}", obj::name(pod), now.as_nanosecond());
    let ts = obj::rfc3339(now);
    let mut involved = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": ns,
        "name": obj::name(pod),
        "uid": obj::uid(pod),
    });
    if let Some(rv) = obj::str_at(pod, &["metadata", "resourceVersion"]) {
        involved["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": obj::new_metadata(Some(ns), &name, now),
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
            Some(obj::namespace(&event)),
            obj::name(&event),
        ),
        object: event,
    }
}
