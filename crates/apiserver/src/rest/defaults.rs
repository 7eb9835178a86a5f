//! Defaulting: the fields kube-apiserver fills in when a client leaves them out
//! (`pkg/apis/core/v1/defaults.go`, `pkg/apis/apps/v1/defaults.go`).
//!
//! Pods get their spec defaults on create. Workloads (Deployments, ReplicaSets) are defaulted on
//! every write, as kube defaults every object it decodes: a `kubectl replace` without `strategy`
//! keeps the default strategy instead of failing validation. Their pod template gets the pod
//! defaults too, so the pods a controller makes from it look like pods a user created.

use serde_json::{Value, json};

/// A PodSpec's defaults (restart policy, grace period, DNS policy, scheduler, service account,
/// image pull policy by tag, termination message, port protocols).
pub(crate) fn pod_spec(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    m.entry("restartPolicy").or_insert(json!("Always"));
    m.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    m.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    m.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    m.entry("serviceAccountName").or_insert(json!("default"));
    m.entry("securityContext").or_insert(json!({}));
    m.entry("enableServiceLinks").or_insert(json!(true));
    m.entry("priority").or_insert(json!(0));
    for c in spec["containers"].as_array_mut().into_iter().flatten() {
        let Some(c) = c.as_object_mut() else { continue };
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let tag_latest =
            !image.rsplit('/').next().unwrap_or("").contains(':') || image.ends_with(":latest");
        let policy = if tag_latest { "Always" } else { "IfNotPresent" };
        c.entry("imagePullPolicy").or_insert(json!(policy));
        c.entry("terminationMessagePath")
            .or_insert(json!("/dev/termination-log"));
        c.entry("terminationMessagePolicy").or_insert(json!("File"));
        c.entry("resources").or_insert(json!({}));
        for p in c
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(p) = p.as_object_mut() {
                p.entry("protocol").or_insert(json!("TCP"));
            }
        }
    }
}

/// An `apps/v1` Deployment's or ReplicaSet's defaults: one replica; for Deployments a
/// RollingUpdate strategy of 25% surge and 25% unavailability, ten old ReplicaSets kept, a
/// progress deadline of 600 s; the pod template's defaults.
pub(crate) fn workload(resource: &str, obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("replicas").is_none_or(Value::is_null) {
        spec.insert("replicas".into(), json!(1));
    }
    if resource == "deployments" {
        if spec.get("revisionHistoryLimit").is_none_or(Value::is_null) {
            spec.insert("revisionHistoryLimit".into(), json!(10));
        }
        if spec
            .get("progressDeadlineSeconds")
            .is_none_or(Value::is_null)
        {
            spec.insert("progressDeadlineSeconds".into(), json!(600));
        }
        let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
        if let Some(st) = strategy.as_object_mut() {
            let ty = st
                .entry("type")
                .or_insert_with(|| json!("RollingUpdate"))
                .clone();
            if ty == "RollingUpdate" {
                let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                if let Some(ru) = ru.as_object_mut() {
                    ru.entry("maxSurge").or_insert(json!("25%"));
                    ru.entry("maxUnavailable").or_insert(json!("25%"));
                }
            }
        }
    }
    if let Some(t) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_fill_only_what_is_missing() {
        let mut d = json!({"spec": {"replicas": 0, "strategy": {},
            "template": {"spec": {"containers": [{"name": "a", "image": "proxylab/echo-http",
                "ports": [{"containerPort": 8080}]}]}}}});
        workload("deployments", &mut d);
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        let mut again = d.clone();
        workload("deployments", &mut again);
        assert_eq!(again, d, "idempotent");
        let mut r = json!({"spec": {"strategy": {"type": "Recreate"}}});
        workload("deployments", &mut r);
        assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(r["spec"]["replicas"], 1);
        let mut rs = json!({"spec": {}});
        workload("replicasets", &mut rs);
        assert_eq!(rs, json!({"spec": {"replicas": 1}}));
    }
}
