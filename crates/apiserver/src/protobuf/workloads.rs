//! Field tables of the workload kinds typed clients send as protobuf: `apps/v1` Deployment
//! (`kubectl create deployment`), `batch/v1` Job (`kubectl create job`) and the pod template
//! inside them (from `k8s.io/api`'s
//! `generated.proto`). Only the fields `kubectl create` fills, and those a user commonly adds, are
//! listed; others are skipped as the module docs say.

use super::{F, OBJECT_META, Ty, f, r};

const CONTAINER_PORT: &[F] = &[
    f(1, "name", Ty::Str),
    f(2, "hostPort", Ty::Int),
    f(3, "containerPort", Ty::Int),
    f(4, "protocol", Ty::Str),
    f(5, "hostIP", Ty::Str),
];

const ENV_VAR: &[F] = &[f(1, "name", Ty::Str), f(2, "value", Ty::Str)];

const CONTAINER: &[F] = &[
    f(1, "name", Ty::Str),
    f(2, "image", Ty::Str),
    r(3, "command", Ty::Str),
    r(4, "args", Ty::Str),
    f(5, "workingDir", Ty::Str),
    r(6, "ports", Ty::Msg(CONTAINER_PORT)),
    r(7, "env", Ty::Msg(ENV_VAR)),
    f(13, "terminationMessagePath", Ty::Str),
    f(14, "imagePullPolicy", Ty::Str),
    f(16, "stdin", Ty::Bool),
    f(17, "stdinOnce", Ty::Bool),
    f(18, "tty", Ty::Bool),
    f(20, "terminationMessagePolicy", Ty::Str),
];

const POD_SPEC: &[F] = &[
    r(2, "containers", Ty::Msg(CONTAINER)),
    f(3, "restartPolicy", Ty::Str),
    f(4, "terminationGracePeriodSeconds", Ty::OptInt),
    f(6, "dnsPolicy", Ty::Str),
    f(7, "nodeSelector", Ty::MapStr),
    f(8, "serviceAccountName", Ty::Str),
    f(10, "nodeName", Ty::Str),
    f(11, "hostNetwork", Ty::Bool),
    f(16, "hostname", Ty::Str),
    f(17, "subdomain", Ty::Str),
    f(19, "schedulerName", Ty::Str),
    r(20, "initContainers", Ty::Msg(CONTAINER)),
];

const POD_TEMPLATE_SPEC: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(POD_SPEC)),
];

const LABEL_SELECTOR: &[F] = &[
    f(1, "matchLabels", Ty::MapStr),
    r(
        2,
        "matchExpressions",
        Ty::Msg(&[
            f(1, "key", Ty::Str),
            f(2, "operator", Ty::Str),
            r(3, "values", Ty::Str),
        ]),
    ),
];

const DEPLOYMENT_STRATEGY: &[F] = &[
    f(1, "type", Ty::Str),
    f(
        2,
        "rollingUpdate",
        Ty::Msg(&[
            f(1, "maxUnavailable", Ty::IntOrString),
            f(2, "maxSurge", Ty::IntOrString),
        ]),
    ),
];

const DEPLOYMENT_SPEC: &[F] = &[
    f(1, "replicas", Ty::OptInt),
    f(2, "selector", Ty::Msg(LABEL_SELECTOR)),
    f(3, "template", Ty::Msg(POD_TEMPLATE_SPEC)),
    f(4, "strategy", Ty::Msg(DEPLOYMENT_STRATEGY)),
    f(5, "minReadySeconds", Ty::Int),
    f(6, "revisionHistoryLimit", Ty::OptInt),
    f(7, "paused", Ty::Bool),
    f(9, "progressDeadlineSeconds", Ty::OptInt),
];

pub(super) const DEPLOYMENT: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(DEPLOYMENT_SPEC)),
];

const JOB_SPEC: &[F] = &[
    f(1, "parallelism", Ty::OptInt),
    f(2, "completions", Ty::OptInt),
    f(3, "activeDeadlineSeconds", Ty::OptInt),
    f(4, "selector", Ty::Msg(LABEL_SELECTOR)),
    f(5, "manualSelector", Ty::OptBool),
    f(6, "template", Ty::Msg(POD_TEMPLATE_SPEC)),
    f(7, "backoffLimit", Ty::OptInt),
    f(8, "ttlSecondsAfterFinished", Ty::OptInt),
    f(9, "completionMode", Ty::Str),
    f(10, "suspend", Ty::OptBool),
    f(14, "podReplacementPolicy", Ty::Str),
];

pub(super) const JOB: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(JOB_SPEC)),
];

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::super::tests::{bytes_field, entry, envelope_as, int_field};
    use serde_json::json;

    #[test]
    fn deployment_like_kubectl_create_sends() {
        let labels = entry("app", b"web");
        let mut meta = Vec::new();
        bytes_field(1, b"web", &mut meta);
        bytes_field(8, b"", &mut meta);
        bytes_field(11, &labels, &mut meta);
        let mut sel = Vec::new();
        bytes_field(1, &labels, &mut sel);
        let mut port = Vec::new();
        int_field(3, 8080, &mut port);
        let mut c = Vec::new();
        bytes_field(1, b"echo-http", &mut c);
        bytes_field(2, b"proxylab/echo-http:1", &mut c);
        bytes_field(6, &port, &mut c);
        bytes_field(8, b"", &mut c); // resources: an empty message
        let mut pod_spec = Vec::new();
        bytes_field(2, &c, &mut pod_spec);
        bytes_field(14, b"", &mut pod_spec); // securityContext, unknown here: skipped
        let mut tmeta = Vec::new();
        bytes_field(11, &labels, &mut tmeta);
        let mut template = Vec::new();
        bytes_field(1, &tmeta, &mut template);
        bytes_field(2, &pod_spec, &mut template);
        let mut spec = Vec::new();
        int_field(1, 0, &mut spec); // --replicas=0 is a pointer: kept
        bytes_field(2, &sel, &mut spec);
        bytes_field(3, &template, &mut spec);
        bytes_field(4, b"", &mut spec); // strategy: an empty message
        int_field(5, 0, &mut spec);
        let mut d = Vec::new();
        bytes_field(1, &meta, &mut d);
        bytes_field(2, &spec, &mut d);
        bytes_field(3, b"", &mut d); // status: not decoded
        let v = decode(&envelope_as("apps/v1", "Deployment", &d)).expect("decoded");
        assert_eq!(
            v,
            json!({"metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "echo-http", "image": "proxylab/echo-http:1",
                            "ports": [{"containerPort": 8080}]}]}},
                    "strategy": {}},
                "apiVersion": "apps/v1", "kind": "Deployment"})
        );
        assert_eq!(
            decode(&envelope_as("apps/v1", "StatefulSet", &d))
                .expect_err("not decoded")
                .code(),
            415
        );
    }

    #[test]
    fn job_like_kubectl_create_sends() {
        let mut meta = Vec::new();
        bytes_field(1, b"pi", &mut meta);
        let mut c = Vec::new();
        bytes_field(1, b"pi", &mut c);
        bytes_field(2, b"busybox", &mut c);
        for arg in [&b"sh"[..], b"-c", b"echo hi"] {
            bytes_field(3, arg, &mut c);
        }
        let mut pod_spec = Vec::new();
        bytes_field(2, &c, &mut pod_spec);
        bytes_field(3, b"Never", &mut pod_spec);
        let mut template = Vec::new();
        bytes_field(1, b"", &mut template);
        bytes_field(2, &pod_spec, &mut template);
        let mut spec = Vec::new();
        bytes_field(6, &template, &mut spec);
        int_field(7, 2, &mut spec);
        let mut j = Vec::new();
        bytes_field(1, &meta, &mut j);
        bytes_field(2, &spec, &mut j);
        let v = decode(&envelope_as("batch/v1", "Job", &j)).expect("decoded");
        assert_eq!(
            v,
            json!({"metadata": {"name": "pi"},
                "spec": {"template": {"metadata": {}, "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "pi", "image": "busybox", "command": ["sh", "-c", "echo hi"]}]}},
                    "backoffLimit": 2},
                "apiVersion": "batch/v1", "kind": "Job"})
        );
    }
}
