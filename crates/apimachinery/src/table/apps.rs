//! Table columns of the workload kinds (`apps/v1` Deployment and ReplicaSet, `batch/v1` Job), as
//! kube-apiserver's printers print them: `kubectl get deploy` shows `READY UP-TO-DATE AVAILABLE`,
//! `kubectl get rs` `DESIRED CURRENT READY`, `kubectl get jobs` `STATUS COMPLETIONS DURATION`, and
//! `-o wide` adds the containers, images and selector.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{AGE, Column, NAME, age, col, name_cell};
use crate::meta;

const CONTAINERS: Column = col(
    "Containers",
    "string",
    1,
    "Names of each container in the template.",
);
const IMAGES: Column = col(
    "Images",
    "string",
    1,
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = col(
    "Selector",
    "string",
    1,
    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
);

pub(super) fn columns(kind: &str) -> Option<Vec<Column>> {
    Some(match kind {
        "Deployment" => vec![
            NAME,
            col("Ready", "string", 0, "Number of the pod with ready state"),
            col(
                "Up-to-date",
                "integer",
                0,
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            col(
                "Available",
                "integer",
                0,
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "ReplicaSet" => vec![
            NAME,
            col(
                "Desired",
                "integer",
                0,
                "Replicas is the number of desired replicas.",
            ),
            col(
                "Current",
                "integer",
                0,
                "Replicas is the most recently observed number of replicas.",
            ),
            col(
                "Ready",
                "integer",
                0,
                "The number of ready replicas for this replica set.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "Job" => vec![
            NAME,
            col("Status", "string", 0, "Status of the job."),
            col(
                "Completions",
                "string",
                0,
                "The completion status of the job.",
            ),
            col(
                "Duration",
                "string",
                0,
                "Time required to complete the job.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        _ => return None,
    })
}

fn has_condition(obj: &Value, ty: &str) -> bool {
    meta::array_at(obj, &["status", "conditions"])
        .iter()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

/// kube's `printJob`: the STATUS word, `succeeded/completions` (or `/1 of parallelism` for a
/// work queue), and how long it ran (until now while it runs).
fn job_cells(obj: &Value, now: Timestamp) -> [Value; 3] {
    let succeeded = int(obj, &["status", "succeeded"]);
    let completions = match meta::at(obj, &["spec", "completions"]).and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(obj, &["spec", "parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let time = |k: &str| meta::str_at(obj, &["status", k]).and_then(meta::parse_time);
    let duration = match (time("startTime"), time("completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => super::human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => super::human_duration(end.duration_since(start)),
    };
    let status = if has_condition(obj, "Complete") {
        "Complete"
    } else if has_condition(obj, "Failed") {
        "Failed"
    } else if meta::is_terminating(obj) {
        "Terminating"
    } else if has_condition(obj, "Suspended") {
        "Suspended"
    } else if has_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(obj, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    [json!(status), json!(completions), json!(duration)]
}

fn int(obj: &Value, path: &[&str]) -> i64 {
    meta::at(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

/// `metav1.FormatLabelSelector`: `app=web,tier in (a,b)`, `<none>` for an empty selector.
pub fn format_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return "<none>".into();
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        let mut pairs: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        pairs.sort();
        parts.extend(pairs);
    }
    for e in meta::array_at(sel, &["matchExpressions"]) {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = meta::array_at(e, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn template_cells(obj: &Value) -> [Value; 3] {
    let containers = meta::array_at(obj, &["spec", "template", "spec", "containers"]);
    let join = |key: &str| {
        containers
            .iter()
            .map(|c| c[key].as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(",")
    };
    [
        json!(join("name")),
        json!(join("image")),
        json!(format_label_selector(meta::at(obj, &["spec", "selector"]))),
    ]
}

pub(super) fn cells(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    let [containers, images, selector] = template_cells(obj);
    Some(match kind {
        "Deployment" => vec![
            name_cell(obj),
            json!(format!(
                "{}/{}",
                int(obj, &["status", "readyReplicas"]),
                int(obj, &["spec", "replicas"])
            )),
            json!(int(obj, &["status", "updatedReplicas"])),
            json!(int(obj, &["status", "availableReplicas"])),
            age(obj, now),
            containers,
            images,
            selector,
        ],
        "ReplicaSet" => vec![
            name_cell(obj),
            json!(int(obj, &["spec", "replicas"])),
            json!(int(obj, &["status", "replicas"])),
            json!(int(obj, &["status", "readyReplicas"])),
            age(obj, now),
            containers,
            images,
            selector,
        ],
        "Job" => {
            let [status, completions, duration] = job_cells(obj, now);
            vec![
                name_cell(obj),
                status,
                completions,
                duration,
                age(obj, now),
                containers,
                images,
                selector,
            ]
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;
    use crate::table::{IncludeObject, to_table};

    #[test]
    fn deployment_and_replicaset_rows() {
        let now: Timestamp = "2026-11-28T12:00:00Z".parse().expect("ts");
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2026-11-28T11:58:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
                "template": {"spec": {"containers": [{"name": "app", "image": "proxylab/echo-http:1"},
                    {"name": "side", "image": "proxylab/echo-tcp:1"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let t = to_table(
            lookup("apps", "v1", "deployments").expect("deploy"),
            std::slice::from_ref(&d),
            IncludeObject::None,
            now,
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "2/3",
                3,
                2,
                "2m",
                "app,side",
                "proxylab/echo-http:1,proxylab/echo-tcp:1",
                "app=web,tier in (a,b)"
            ])
        );
        let t = to_table(
            lookup("apps", "v1", "replicasets").expect("rs"),
            &[d],
            IncludeObject::None,
            now,
        );
        assert_eq!(
            t["rows"][0]["cells"].as_array().map(|c| c[1..4].to_vec()),
            Some(vec![json!(3), json!(0), json!(2)])
        );
        assert_eq!(format_label_selector(None), "<none>");
    }

    #[test]
    fn job_rows() {
        let now: Timestamp = "2026-11-28T12:00:00Z".parse().expect("ts");
        let jobs = lookup("batch", "v1", "jobs").expect("jobs");
        let mut j = json!({"metadata": {"name": "pi", "creationTimestamp": "2026-11-28T11:58:00Z"},
            "spec": {"completions": 3, "parallelism": 2,
                "template": {"spec": {"containers": [{"name": "pi", "image": "busybox"}]}}},
            "status": {"succeeded": 1, "startTime": "2026-11-28T11:58:00Z"}});
        let row = |j: &Value| {
            to_table(jobs, std::slice::from_ref(j), IncludeObject::None, now)["rows"][0]["cells"]
                .as_array()
                .map(|c| c[1..4].to_vec())
                .unwrap_or_default()
        };
        assert_eq!(row(&j), [json!("Running"), json!("1/3"), json!("2m")]);
        j["status"]["completionTime"] = json!("2026-11-28T11:58:07Z");
        j["status"]["conditions"] = json!([{"type": "Complete", "status": "True"}]);
        j["spec"] = json!({"parallelism": 4});
        assert_eq!(row(&j), [json!("Complete"), json!("1/1 of 4"), json!("7s")]);
        j["status"] = json!({"conditions": [{"type": "Failed", "status": "True"}]});
        assert_eq!(row(&j), [json!("Failed"), json!("0/1 of 4"), json!("")]);
    }
}
