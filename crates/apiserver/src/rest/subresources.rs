//! The subresources with their own verbs: `pods/binding` (the scheduler's API) and
//! `serviceaccounts/token` (the TokenRequest API, `kubectl create token`).

use proxylab_apimachinery::meta;
use proxylab_apimachinery::status::{CONFLICT_MODIFIED, Cause, Status};
use proxylab_store::StoreError;
use serde_json::{Map, Value, json};

use crate::errors::{self, store_err};
use crate::request::Target;
use crate::response::ApiError;
use crate::serviceaccount;
use crate::state::AppState;

/// `POST serviceaccounts/{name}/token` (the TokenRequest API, `kubectl create token`): a short-lived
/// token signed with `--service-account-signing-key-file`. kube-apiserver issues bound tokens with an
/// `aud` claim and nested `kubernetes.io` claims; the lab signs the shared claim shape of
/// `proxylab-apimachinery::serviceaccount` with the configured issuer, `iat` and `exp` (no `aud`, and a
/// `boundObjectRef` is recorded only when it names a Secret).
pub(crate) fn token_request(
    state: &AppState,
    target: &Target,
    name: &str,
    req: &Value,
) -> Result<Value, ApiError> {
    let info = target.info;
    let Some(key) = &state.sa_signing_key else {
        return Err(errors::token_request_off().into());
    };
    let ns = target.namespace.clone().unwrap_or_default();
    let sa = state
        .store
        .get(&target.key(name))
        .map_err(|e| store_err(info, name, e))?
        .ok_or_else(|| Status::not_found(info, name))?;
    let spec = &req["spec"];
    let expiration = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    if !(600..=(1i64 << 32)).contains(&expiration) {
        return Err(Status::invalid(
            ("authentication.k8s.io", "TokenRequest"),
            name,
            vec![Cause::invalid(
                "spec.expirationSeconds",
                &json!(expiration),
                "may not specify a duration less than 10 minutes",
            )],
        )
        .into());
    }
    let audiences = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => Value::Array(a.clone()),
        _ => json!([state.sa_issuer]),
    };
    let bound = &spec["boundObjectRef"];
    let secret_name = (bound["kind"] == "Secret")
        .then(|| bound["name"].as_str().map(str::to_owned))
        .flatten();
    let now = jiff::Timestamp::now();
    let mut claims = serviceaccount::SaClaims::legacy(&ns, name, meta::uid(&sa).unwrap_or(""), "");
    claims.iss = state.sa_issuer.clone();
    claims.secret_name = secret_name;
    claims.iat = Some(now.as_second());
    claims.exp = Some(now.as_second() + expiration);
    let token = serviceaccount::sign_token(key, &claims).map_err(Status::internal)?;
    let expires = jiff::Timestamp::from_second(now.as_second() + expiration).unwrap_or(now);
    Ok(json!({
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": {"audiences": audiences, "expirationSeconds": expiration,
            "boundObjectRef": if bound.is_object() { bound.clone() } else { Value::Null }},
        "status": {"token": token, "expirationTimestamp": meta::format_time(expires)},
    }))
}

/// `POST pods/{name}/binding`: the scheduler's way of assigning a pod to a node.
pub(crate) fn bind_pod(
    state: &AppState,
    target: &Target,
    name: &str,
    binding: &Value,
) -> Result<(), ApiError> {
    let info = target.info;
    let node = binding["target"]["name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Status::invalid(
                info,
                meta::name(binding).unwrap_or(""),
                vec![Cause::required("target.name")],
            )
        })?;
    for _ in 0..8 {
        let pod = state
            .store
            .get(&target.key(name))
            .map_err(|e| store_err(info, name, e))?
            .ok_or_else(|| Status::not_found(info, name))?;
        if let Some(cur) = pod["spec"]["nodeName"].as_str().filter(|s| !s.is_empty()) {
            return Err(Status::conflict(
                info,
                name,
                &format!("pod {name} is already assigned to node \"{cur}\""),
            )
            .into());
        }
        let mut p = pod.clone();
        p["spec"]["nodeName"] = json!(node);
        let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": meta::now_rfc3339()});
        let mut conds: Vec<Value> = p["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conds.retain(|c| c["type"] != "PodScheduled");
        conds.push(cond);
        if !p["status"].is_object() {
            p["status"] = Value::Object(Map::new());
        }
        p["status"]["conditions"] = Value::Array(conds);
        match state
            .store
            .update(&target.key(name), p, meta::resource_version_u64(&pod))
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(info, name, e).into()),
        }
    }
    Err(Status::conflict(info, name, CONFLICT_MODIFIED).into())
}
