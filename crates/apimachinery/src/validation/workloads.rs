//! Validation of the workload kinds (`apps/v1` Deployment and ReplicaSet, `batch/v1` Job): kube's
//! `pkg/apis/apps/validation` and `pkg/apis/batch/validation`, with the same field paths and
//! messages for the rules the lab checks.
//!
//! A workload is a pod template plus a selector that must find the pods made from it: an empty or
//! mismatching selector would let a controller create pods it then cannot count, forever. So the
//! selector is required, non-empty and must match the template's labels, and it may not change
//! afterwards (the pods of the old selector would be orphaned).

use serde_json::Value;

use super::{V, validate_pod_spec};
use crate::intstr::{IntOrPercent, IntOrPercentError};
use crate::selector::{LabelSelector, validate_label_key, validate_label_value};
use crate::status::Cause;

fn non_negative(v: &mut V, spec: &Value, key: &str) {
    if let Some(x) = spec.get(key).filter(|x| !x.is_null())
        && x.as_i64().is_none_or(|n| n < 0 || n > i64::from(i32::MAX))
    {
        v.push(Cause::invalid(
            format!("spec.{key}"),
            x,
            "must be greater than or equal to 0",
        ));
    }
}

/// `spec.selector` and `spec.template` of a Deployment, ReplicaSet (and their shared rules).
fn selector_and_template(v: &mut V, spec: &Value, restart_policies: &[&str]) {
    let selector = match spec.get("selector").filter(|s| !s.is_null()) {
        None => {
            v.push(Cause::required("spec.selector"));
            None
        }
        Some(s) if !s.is_object() => {
            v.push(Cause::type_invalid("spec.selector", s, "must be an object"));
            None
        }
        Some(s) => match LabelSelector::from_label_selector(s) {
            Ok(sel) if sel.is_empty() => {
                v.push(Cause::invalid(
                    "spec.selector",
                    s,
                    "empty selector is invalid for deployment",
                ));
                None
            }
            Ok(sel) => Some(sel),
            Err(e) => {
                v.push(Cause::invalid("spec.selector", s, &e.to_string()));
                None
            }
        },
    };
    let Some(template) = spec.get("template").filter(|t| t.is_object()) else {
        v.push(Cause::required("spec.template"));
        return;
    };
    let labels = template.get("metadata").and_then(|m| m.get("labels"));
    match labels {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, val) in m {
                if let Err(e) = validate_label_key(k) {
                    v.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        &Value::from(k.as_str()),
                        &e.to_string(),
                    ));
                }
                if let Err(e) = val.as_str().map_or(Ok(()), validate_label_value) {
                    v.push(Cause::invalid(
                        format!("spec.template.metadata.labels.{k}"),
                        val,
                        &e.to_string(),
                    ));
                }
            }
        }
        Some(other) => v.push(Cause::type_invalid(
            "spec.template.metadata.labels",
            other,
            "must be a map of strings",
        )),
    }
    if let Some(sel) = selector
        && !sel.matches(labels.and_then(Value::as_object))
    {
        v.push(Cause::invalid(
            "spec.template.metadata.labels",
            labels.unwrap_or(&Value::Null),
            "`selector` does not match template `labels`",
        ));
    }
    let Some(pod_spec) = template.get("spec").filter(|s| s.is_object()) else {
        v.push(Cause::required("spec.template.spec"));
        return;
    };
    validate_pod_spec(v, pod_spec, "spec.template.spec");
    if let Some(rp) = pod_spec.get("restartPolicy").filter(|x| !x.is_null())
        && !rp.as_str().is_some_and(|s| restart_policies.contains(&s))
    {
        v.push(Cause::not_supported(
            "spec.template.spec.restartPolicy",
            rp,
            restart_policies,
        ));
    }
}

fn int_or_percent(v: &mut V, parent: &Value, key: &str, path: &str) -> Option<IntOrPercent> {
    let x = parent.get(key).filter(|x| !x.is_null())?;
    match IntOrPercent::parse(x) {
        Ok(IntOrPercent::Percent(p)) if p > 100 && key == "maxUnavailable" => {
            v.push(Cause::invalid(
                format!("{path}.{key}"),
                x,
                "must not be greater than 100%",
            ));
            None
        }
        Ok(p) => Some(p),
        Err(IntOrPercentError::WrongType) => {
            v.push(Cause::type_invalid(
                format!("{path}.{key}"),
                x,
                &IntOrPercentError::WrongType.to_string(),
            ));
            None
        }
        Err(e) => {
            v.push(Cause::invalid(format!("{path}.{key}"), x, &e.to_string()));
            None
        }
    }
}

fn strategy(v: &mut V, spec: &Value) {
    let Some(strategy) = spec.get("strategy").filter(|s| !s.is_null()) else {
        return;
    };
    const TYPES: &[&str] = &["Recreate", "RollingUpdate"];
    let ty = strategy.get("type").and_then(Value::as_str);
    match ty {
        Some(t) if TYPES.contains(&t) => {}
        None => v.push(Cause::required("spec.strategy.type")),
        Some(t) => v.push(Cause::not_supported(
            "spec.strategy.type",
            &Value::from(t),
            TYPES,
        )),
    }
    let Some(ru) = strategy.get("rollingUpdate").filter(|r| !r.is_null()) else {
        return;
    };
    if ty == Some("Recreate") {
        v.push(Cause::forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        ));
        return;
    }
    let path = "spec.strategy.rollingUpdate";
    let surge = int_or_percent(v, ru, "maxSurge", path);
    let unavailable = int_or_percent(v, ru, "maxUnavailable", path);
    if let (Some(s), Some(u)) = (surge, unavailable)
        && s.is_zero()
        && u.is_zero()
    {
        v.push(Cause::invalid(
            format!("{path}.maxUnavailable"),
            ru.get("maxUnavailable").unwrap_or(&Value::Null),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
}

fn spec_of<'a>(v: &mut V, obj: &'a Value) -> Option<&'a Value> {
    let spec = obj.get("spec").filter(|s| s.is_object());
    if spec.is_none() {
        v.push(Cause::required("spec"));
    }
    spec
}

pub(super) fn validate_deployment(v: &mut V, obj: &Value) {
    let Some(spec) = spec_of(v, obj) else { return };
    for key in [
        "replicas",
        "minReadySeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
    ] {
        non_negative(v, spec, key);
    }
    if let (Some(deadline), min_ready) = (
        spec.get("progressDeadlineSeconds").and_then(Value::as_i64),
        spec.get("minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    ) && deadline <= min_ready
    {
        v.push(Cause::invalid(
            "spec.progressDeadlineSeconds",
            &Value::from(deadline),
            "must be greater than minReadySeconds",
        ));
    }
    selector_and_template(v, spec, &["Always"]);
    strategy(v, spec);
}

pub(super) fn validate_replicaset(v: &mut V, obj: &Value) {
    let Some(spec) = spec_of(v, obj) else { return };
    non_negative(v, spec, "replicas");
    non_negative(v, spec, "minReadySeconds");
    selector_and_template(v, spec, &["Always"]);
}

pub(super) fn validate_job(v: &mut V, obj: &Value) {
    let Some(spec) = spec_of(v, obj) else { return };
    for key in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        non_negative(v, spec, key);
    }
    if spec.get("activeDeadlineSeconds").and_then(Value::as_i64) == Some(0) {
        v.push(Cause::invalid(
            "spec.activeDeadlineSeconds",
            &Value::from(0),
            "must be greater than 0",
        ));
    }
    const MODES: &[&str] = &["NonIndexed", "Indexed"];
    match spec.get("completionMode").filter(|m| !m.is_null()) {
        None => {}
        Some(m) if !m.as_str().is_some_and(|s| MODES.contains(&s)) => {
            v.push(Cause::not_supported("spec.completionMode", m, MODES));
        }
        Some(m) if m == "Indexed" && spec.get("completions").is_none_or(Value::is_null) => {
            v.push(Cause::new(
                "FieldValueRequired",
                "spec.completions",
                "Required value: when completion mode is Indexed",
            ));
        }
        Some(_) => {}
    }
    // A Job's Pods run to completion: a restart policy of Always would never let one finish.
    selector_and_template(v, spec, &["OnFailure", "Never"]);
    if spec
        .get("template")
        .and_then(|t| t.get("spec"))
        .and_then(|s| s.get("restartPolicy"))
        .is_none_or(Value::is_null)
    {
        v.push(Cause::required("spec.template.spec.restartPolicy"));
    }
}

/// A Job's selector, pod template and completion mode are immutable (kube's
/// `ValidateJobSpecUpdate`); parallelism, the deadline, the TTL and `suspend` may change.
pub(super) fn validate_job_update(v: &mut V, old: &Value, new: &Value) {
    validate_selector_unchanged(v, old, new);
    for key in ["template", "completionMode", "completions"] {
        let get = |o: &Value| o.get("spec").and_then(|s| s.get(key)).cloned();
        if get(old) != get(new) {
            v.push(Cause::invalid(
                format!("spec.{key}"),
                &get(new).unwrap_or(Value::Null),
                super::IMMUTABLE,
            ));
        }
    }
}

/// The selector of an `apps/v1` workload is immutable.
pub(super) fn validate_selector_unchanged(v: &mut V, old: &Value, new: &Value) {
    let sel = |o: &Value| o.get("spec").and_then(|s| s.get("selector")).cloned();
    if sel(old) != sel(new) {
        v.push(Cause::invalid(
            "spec.selector",
            &sel(new).unwrap_or(Value::Null),
            super::IMMUTABLE,
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::registry::lookup;
    use crate::validation::{validate, validate_update};
    use serde_json::{Value, json};

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "proxylab/echo-http:1"}]}}}})
    }

    fn fields(obj: &Value) -> Vec<String> {
        let info = lookup("apps", "v1", "deployments").expect("deployments");
        validate(info, obj)
            .into_iter()
            .map(|c| c.describe())
            .collect()
    }

    #[test]
    fn a_plain_deployment_is_valid() {
        assert_eq!(fields(&deployment()), Vec::<String>::new());
        let mut rs = deployment();
        rs["kind"] = json!("ReplicaSet");
        let info = lookup("apps", "v1", "replicasets").expect("rs");
        assert!(validate(info, &rs).is_empty());
    }

    #[test]
    fn selector_template_and_strategy_rules() {
        let mut d = deployment();
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        let got = fields(&d);
        for want in [
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`",
            "spec.template.spec.containers[0].image: Required value",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0",
        ] {
            assert!(
                got.iter().any(|g| g == want),
                "missing {want:?} in {got:#?}"
            );
        }
        let mut d = deployment();
        d["spec"]["selector"] = json!({});
        d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
        let got = fields(&d);
        assert!(
            got.iter()
                .any(|g| g.starts_with("spec.selector: Invalid value")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|g| g.starts_with("spec.strategy.rollingUpdate: Forbidden")),
            "{got:?}"
        );
        let mut d = deployment();
        d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x", "maxUnavailable": "120%"}});
        let got = fields(&d);
        assert_eq!(got.len(), 2, "{got:?}");
        let mut d = deployment();
        if let Some(m) = d["spec"].as_object_mut() {
            m.remove("selector");
            m.remove("template");
        }
        assert_eq!(
            fields(&d),
            [
                "spec.selector: Required value",
                "spec.template: Required value"
            ]
        );
    }

    fn job() -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default"},
            "spec": {"completions": 3, "parallelism": 2, "backoffLimit": 1,
                "selector": {"matchLabels": {"job-name": "pi"}},
                "template": {"metadata": {"labels": {"job-name": "pi"}},
                    "spec": {"restartPolicy": "Never",
                        "containers": [{"name": "pi", "image": "busybox"}]}}}})
    }

    #[test]
    fn job_rules() {
        let info = lookup("batch", "v1", "jobs").expect("jobs");
        let describe = |o: &Value| -> Vec<String> {
            validate(info, o)
                .into_iter()
                .map(|c| c.describe())
                .collect()
        };
        assert_eq!(describe(&job()), Vec::<String>::new());
        let mut j = job();
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        j["spec"]["backoffLimit"] = json!(-1);
        j["spec"]["completionMode"] = json!("Indexed");
        j["spec"]["completions"] = Value::Null;
        j["spec"]["activeDeadlineSeconds"] = json!(0);
        let got = describe(&j);
        for want in [
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
            "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
            "spec.completions: Required value: when completion mode is Indexed",
            "spec.activeDeadlineSeconds: Invalid value: 0: must be greater than 0",
        ] {
            assert!(
                got.iter().any(|g| g == want),
                "missing {want:?} in {got:#?}"
            );
        }
        let mut j = job();
        j["spec"]["completionMode"] = json!("Sometimes");
        assert!(describe(&j)[0].starts_with("spec.completionMode: Unsupported value"));
        // Updates: parallelism may change, the template may not.
        let old = job();
        let mut new = job();
        new["spec"]["parallelism"] = json!(5);
        assert!(validate_update(info, &old, &new).is_empty());
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:2");
        let causes = validate_update(info, &old, &new);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template");
    }

    #[test]
    fn the_selector_is_immutable() {
        let info = lookup("apps", "v1", "deployments").expect("deployments");
        let old = deployment();
        let mut new = deployment();
        assert!(validate_update(info, &old, &new).is_empty());
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "tier": "x"}});
        let causes = validate_update(info, &old, &new);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.selector");
    }
}
