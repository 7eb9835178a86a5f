//! Defaulting: the fields kube-apiserver fills in when a client leaves them out
//! (`pkg/apis/core/v1/defaults.go`, `pkg/apis/apps/v1/defaults.go`, `pkg/apis/batch/v1/defaults.go`).
//!
//! Pods get their spec defaults on create. Workloads (Deployments, ReplicaSets, Jobs) are defaulted on
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

/// A `batch/v1` Job's defaults: one completion at parallelism one when neither is given (a work
/// queue when only parallelism is), `backoffLimit` 6, `completionMode` NonIndexed, not suspended,
/// `podReplacementPolicy` TerminatingOrFailed; the pod template's defaults.
pub(crate) fn job(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let unset =
        |spec: &serde_json::Map<String, Value>, k: &str| spec.get(k).is_none_or(Value::is_null);
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    for (key, value) in [
        ("parallelism", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
    ] {
        if unset(spec, key) {
            spec.insert(key.into(), value);
        }
    }
    if let Some(t) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(t);
    }
}

/// The label a generated Job selector matches: the Job's uid.
pub(crate) const JOB_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

/// kube's `generateSelector` for a Job without `manualSelector: true`: the template gets the
/// `controller-uid` and `job-name` labels (both spellings) and the selector matches the uid, which
/// no other Job can share. Runs once the Job has its final name and uid.
pub(crate) fn job_selector(obj: &mut Value) {
    if obj["spec"]["manualSelector"] == json!(true) || !obj["spec"].is_object() {
        return;
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_owned();
    let template = &mut obj["spec"]["template"];
    if !template.is_object() {
        return;
    }
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        for (key, value) in [
            (JOB_CONTROLLER_UID, &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.entry(key).or_insert(json!(value));
        }
    }
    let selector = &mut obj["spec"]["selector"];
    if !selector.is_object() {
        *selector = json!({});
    }
    if !selector["matchLabels"].is_object() {
        selector["matchLabels"] = json!({});
    }
    if let Some(m) = selector["matchLabels"].as_object_mut() {
        m.entry(JOB_CONTROLLER_UID).or_insert(json!(uid));
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

    #[test]
    fn job_defaults_and_generated_selector() {
        let mut j = json!({"metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "pi", "image": "busybox"}]}}}});
        job(&mut j);
        job_selector(&mut j);
        let spec = &j["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(
            spec["template"]["metadata"]["labels"],
            json!({"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi",
                   "controller-uid": "u-1", "job-name": "pi"})
        );
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
        let mut again = j.clone();
        job(&mut again);
        job_selector(&mut again);
        assert_eq!(again, j, "idempotent");
        // A work queue: parallelism without completions stays without completions.
        let mut q = json!({"spec": {"parallelism": 3}});
        job(&mut q);
        assert!(q["spec"].get("completions").is_none());
        // manualSelector: the user's selector is kept as it is.
        let mut m = json!({"metadata": {"name": "m", "uid": "u"}, "spec": {"manualSelector": true,
            "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}});
        let before = m.clone();
        job_selector(&mut m);
        assert_eq!(m, before);
    }
}
