//! The controllers running against a real `MemoryStore`: every test starts a
//! `ControllerManager`, writes objects as the apiserver and node agents would, and waits —
//! on store watches, bounded by a timeout — for the controllers' answer.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proxylab_controllers::jwt::{TokenSigner, generate_test_key_pem};
use proxylab_controllers::{ControllerManager, ControllersConfig, EnabledControllers};
use proxylab_store::{MemoryStore, ObjectKey, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBlab\n-----END CERTIFICATE-----\n";

struct Lab {
    store: Arc<MemoryStore>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    key_pem: String,
}

impl Lab {
    fn start(tweak: impl FnOnce(&mut ControllersConfig)) -> Lab {
        let store = Arc::new(MemoryStore::new(10_000));
        let key_pem = generate_test_key_pem();
        let mut config = ControllersConfig {
            ca_pem: CA.into(),
            sa_signing_key_pkcs8_pem: key_pem.clone(),
            ..ControllersConfig::default()
        };
        tweak(&mut config);
        let manager = ControllerManager::new(store.clone(), config).expect("valid config");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(manager.run(shutdown.clone()));
        Lab {
            store,
            shutdown,
            task,
            key_pem,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("controller manager stops on cancel")
            .expect("no panic");
    }

    fn create(&self, resource: &str, obj: Value) -> Value {
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        self.store
            .create(&ObjectKey::new(resource, ns.as_deref(), name), obj)
            .unwrap()
    }

    fn get(&self, resource: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        self.store.get(&ObjectKey::new(resource, ns, name)).unwrap()
    }

    /// Read-modify-write with retries on Conflict (the controllers write the same objects).
    fn modify(
        &self,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        f: impl Fn(&mut Value),
    ) -> Value {
        let key = ObjectKey::new(resource, ns, name);
        loop {
            let mut obj = self.store.get(&key).unwrap().expect("object exists");
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            f(&mut obj);
            match self.store.update(&key, obj, Some(rv)) {
                Ok(o) => return o,
                Err(proxylab_store::StoreError::Conflict { .. }) => continue,
                Err(e) => panic!("update {key}: {e}"),
            }
        }
    }

    fn delete(&self, resource: &str, ns: Option<&str>, name: &str) {
        self.store
            .delete(&ObjectKey::new(resource, ns, name), None)
            .unwrap();
    }

    /// Waits (on a watch of `resource`, at most 10 s) until `pred` holds for its objects.
    async fn wait_for(
        &self,
        resource: &str,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let wait = async {
            loop {
                let (items, rv) = self.store.list(resource, None).unwrap();
                if pred(&items) {
                    return items;
                }
                let Ok(mut rx) = self.store.watch(resource, None, rv) else {
                    continue;
                };
                while rx.recv().await.is_some() {
                    let (items, _) = self.store.list(resource, None).unwrap();
                    if pred(&items) {
                        return items;
                    }
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), wait).await {
            Ok(items) => items,
            Err(_) => {
                let (items, _) = self.store.list(resource, None).unwrap();
                panic!("timed out waiting for {what}; {resource} now: {items:#?}")
            }
        }
    }
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn node(name: &str, zone: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "uid": format!("uid-{name}"),
                        "creationTimestamp": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}},
           "spec": {},
           "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                      "lastHeartbeatTime": micro_now()}]}})
}

fn pod(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels},
           "spec": {"containers": [{"name": "echo", "image": "proxylab/echo-http:1",
                                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
           "status": {"phase": "Pending"}})
}

/// What the node agent would do once the pod runs on it.
fn run_pod(p: &mut Value, ip: &str) {
    p["status"] = json!({
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
    });
}

#[tokio::test]
async fn system_namespaces_and_default_service_accounts_are_kept() {
    let lab = Lab::start(|_| {});
    lab.wait_for("namespaces", "system namespaces", |ns| ns.len() == 4)
        .await;
    lab.create(
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}),
    );
    let sas = lab
        .wait_for("serviceaccounts", "a default SA in each namespace", |s| {
            s.len() == 5
        })
        .await;
    assert!(sas.iter().all(|s| name(s) == "default"));
    let old_uid = lab
        .get("serviceaccounts", Some("team-a"), "default")
        .unwrap()["metadata"]["uid"]
        .clone();

    lab.delete("serviceaccounts", Some("team-a"), "default");
    lab.wait_for("serviceaccounts", "the deleted SA recreated", |s| {
        s.iter()
            .any(|s| s["metadata"]["namespace"] == "team-a" && s["metadata"]["uid"] != old_uid)
    })
    .await;
    lab.stop().await;
}

#[tokio::test]
async fn token_secret_is_filled_then_deleted_with_its_service_account() {
    let lab = Lab::start(|_| {});
    let signer = TokenSigner::from_pkcs8_pem(&lab.key_pem).unwrap();
    lab.wait_for("serviceaccounts", "default SAs", |s| s.len() == 4)
        .await;
    let sa = lab.create(
        "serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "builder", "namespace": "default", "uid": "uid-builder"}}),
    );
    for (secret, account) in [("default-token", "default"), ("builder-token", "builder")] {
        lab.create(
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                   "metadata": {"name": secret, "namespace": "default",
                                "annotations": {"kubernetes.io/service-account.name": account}}}),
        );
    }
    let secrets = lab
        .wait_for("secrets", "both tokens filled", |s| {
            s.len() == 2 && s.iter().all(|s| s["data"]["token"].is_string())
        })
        .await;
    let builder = secrets.iter().find(|s| name(s) == "builder-token").unwrap();
    assert_eq!(
        builder["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        sa["metadata"]["uid"]
    );
    assert_eq!(
        STANDARD
            .decode(builder["data"]["ca.crt"].as_str().unwrap())
            .unwrap(),
        CA.as_bytes()
    );
    assert_eq!(
        STANDARD
            .decode(builder["data"]["namespace"].as_str().unwrap())
            .unwrap(),
        b"default"
    );
    let token = String::from_utf8(
        STANDARD
            .decode(builder["data"]["token"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let claims = proxylab_apimachinery::serviceaccount::verify_token(signer.public_key(), &token)
        .expect("token verifies with the service-account key");
    assert_eq!(claims.secret_name.as_deref(), Some("builder-token"));
    assert_eq!(claims.sub, "system:serviceaccount:default:builder");

    // Filled secrets are not rewritten. To know the controller has reconciled again, give it
    // new work and wait for that to be done; the filled secrets must be untouched.
    let rvs_before: Vec<Value> = secrets
        .iter()
        .map(|s| s["metadata"]["resourceVersion"].clone())
        .collect();
    lab.create(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
               "metadata": {"name": "second-token", "namespace": "default",
                            "annotations": {"kubernetes.io/service-account.name": "default"}}}),
    );
    let secrets = lab
        .wait_for("secrets", "third token filled", |s| {
            s.len() == 3 && s.iter().all(|s| s["data"]["token"].is_string())
        })
        .await;
    let rvs_after: Vec<Value> = secrets
        .iter()
        .filter(|s| name(s) != "second-token")
        .map(|s| s["metadata"]["resourceVersion"].clone())
        .collect();
    assert_eq!(rvs_before, rvs_after, "no duplicate updates");
    lab.delete("secrets", Some("default"), "second-token");

    lab.delete("serviceaccounts", Some("default"), "builder");
    let left = lab
        .wait_for("secrets", "the builder token deleted", |s| {
            s.iter().all(|s| name(s) != "builder-token")
        })
        .await;
    assert_eq!(left.len(), 1, "the default token stays");
    assert!(
        lab.get("secrets", Some("default"), "builder-token")
            .is_none()
    );

    // A token for an account that does not exist is deleted.
    lab.create(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
               "metadata": {"name": "ghost-token", "namespace": "default",
                            "annotations": {"kubernetes.io/service-account.name": "ghost"}}}),
    );
    lab.wait_for("secrets", "ghost token deleted", |s| s.len() == 1)
        .await;
    lab.stop().await;
}

#[tokio::test]
async fn scheduler_binds_spreads_and_retries_when_nodes_change() {
    let lab = Lab::start(|c| {
        c.enabled = EnabledControllers {
            scheduler: true,
            ..EnabledControllers::none()
        }
    });
    lab.create("nodes", node("node-1", "a"));
    lab.create("nodes", node("node-2", "b"));
    for i in 1..=4 {
        lab.create("pods", pod(&format!("web-{i}"), json!({"app": "web"})));
    }
    let pods = lab
        .wait_for("pods", "4 pods bound", |p| {
            p.iter().all(|p| p["spec"]["nodeName"].is_string())
        })
        .await;
    let on1 = pods
        .iter()
        .filter(|p| p["spec"]["nodeName"] == "node-1")
        .count();
    assert_eq!(on1, 2, "fewest pods first spreads 4 pods 2/2: {pods:#?}");
    for p in &pods {
        let cond = p["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "PodScheduled")
            .unwrap();
        assert_eq!(cond["status"], "True");
    }
    let events = lab
        .wait_for("events", "4 Scheduled events", |e| e.len() == 4)
        .await;
    let ev = events
        .iter()
        .find(|e| e["involvedObject"]["name"] == "web-1")
        .unwrap();
    assert_eq!(ev["reason"], "Scheduled");
    assert_eq!(ev["involvedObject"]["uid"], "uid-web-1");
    let node_of_web1 = pods.iter().find(|p| name(p) == "web-1").unwrap()["spec"]["nodeName"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ev["message"],
        format!("Successfully assigned default/web-1 to {node_of_web1}")
    );

    // A pod that needs an SSD waits, with a reason, until such a node appears.
    let mut picky = pod("picky", json!({}));
    picky["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    lab.create("pods", picky);
    lab.wait_for("pods", "picky unschedulable", |p| {
        p.iter().any(|p| {
            name(p) == "picky" && p["status"]["conditions"][0]["reason"] == "Unschedulable"
        })
    })
    .await;
    lab.wait_for("events", "FailedScheduling event", |e| {
        e.iter().any(|e| e["reason"] == "FailedScheduling")
    })
    .await;
    let mut ssd = node("node-3", "c");
    ssd["metadata"]["labels"]["disk"] = json!("ssd");
    lab.create("nodes", ssd);
    let pods = lab
        .wait_for("pods", "picky bound to node-3", |p| {
            p.iter()
                .any(|p| name(p) == "picky" && p["spec"]["nodeName"] == "node-3")
        })
        .await;
    let picky = pods.iter().find(|p| name(p) == "picky").unwrap();
    assert_eq!(picky["status"]["conditions"][0]["status"], "True");
    lab.stop().await;
}

#[tokio::test]
async fn endpoint_slices_follow_pods_through_their_lifecycle() {
    let lab = Lab::start(|_| {});
    lab.create("nodes", node("node-1", "zone-a"));
    lab.create(
        "services",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default", "uid": "uid-svc-web"},
               "spec": {"selector": {"app": "web"}, "clusterIP": "127.0.40.10", "type": "ClusterIP",
                        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}),
    );
    // Before any pod: a placeholder slice and an empty Endpoints.
    let placeholder = lab
        .wait_for(
            "endpointslices.discovery.k8s.io",
            "placeholder slice",
            |s| s.len() == 1,
        )
        .await;
    let slice_name = name(&placeholder[0]).to_string();
    lab.wait_for("endpoints", "endpoints object", |e| e.len() == 1)
        .await;

    lab.create("pods", pod("web-1", json!({"app": "web"})));
    lab.create("pods", pod("db-1", json!({"app": "db"})));
    // The scheduler binds web-1; then "the node agent" runs it.
    lab.wait_for("pods", "web-1 bound", |p| {
        p.iter()
            .any(|p| name(p) == "web-1" && p["spec"]["nodeName"].is_string())
    })
    .await;
    lab.modify("pods", Some("default"), "web-1", |p| {
        run_pod(p, "127.0.30.2")
    });

    let slices = lab
        .wait_for("endpointslices.discovery.k8s.io", "a ready endpoint", |s| {
            s.len() == 1 && s[0]["endpoints"][0]["conditions"]["ready"] == true
        })
        .await;
    let slice = &slices[0];
    assert_eq!(
        name(slice),
        slice_name,
        "the placeholder slice is filled in, not replaced"
    );
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "web"
    );
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(
        slice["metadata"]["ownerReferences"][0]["uid"],
        "uid-svc-web"
    );
    assert_eq!(
        slice["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    let ep = &slice["endpoints"][0];
    assert_eq!(ep["addresses"], json!(["127.0.30.2"]));
    assert_eq!(ep["nodeName"], "node-1");
    assert_eq!(ep["zone"], "zone-a");
    assert_eq!(ep["targetRef"]["name"], "web-1");
    assert_eq!(
        slice["endpoints"].as_array().unwrap().len(),
        1,
        "db-1 does not match"
    );
    let eps = lab
        .wait_for("endpoints", "ready address", |e| {
            e[0]["subsets"][0]["addresses"][0]["ip"] == "127.0.30.2"
        })
        .await;
    assert_eq!(eps[0]["subsets"][0]["ports"][0]["port"], 8080);

    // Nothing changed for web → its objects are not rewritten when the controller runs for
    // another Service (whose slice appearing proves that it ran).
    let slice_rv = slice["metadata"]["resourceVersion"].clone();
    let ep_rv = eps[0]["metadata"]["resourceVersion"].clone();
    lab.create(
        "services",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "db", "namespace": "default", "uid": "uid-svc-db"},
               "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}}),
    );
    let slices = lab
        .wait_for("endpointslices.discovery.k8s.io", "db slice", |s| {
            s.len() == 2
        })
        .await;
    let web_slice = slices
        .iter()
        .find(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "web")
        .unwrap();
    assert_eq!(web_slice["metadata"]["resourceVersion"], slice_rv);
    let web_ep = lab.get("endpoints", Some("default"), "web").unwrap();
    assert_eq!(web_ep["metadata"]["resourceVersion"], ep_rv);
    lab.delete("services", Some("default"), "db");
    lab.wait_for("endpointslices.discovery.k8s.io", "db slice gone", |s| {
        s.len() == 1
    })
    .await;

    // Graceful deletion: the apiserver sets deletionTimestamp; the endpoint is terminating.
    lab.modify("pods", Some("default"), "web-1", |p| {
        p["metadata"]["deletionTimestamp"] = json!(
            jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        );
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    });
    lab.wait_for(
        "endpointslices.discovery.k8s.io",
        "terminating endpoint",
        |s| {
            s[0]["endpoints"][0]["conditions"]
                == json!({"ready": false, "serving": true, "terminating": true})
        },
    )
    .await;
    lab.wait_for("endpoints", "terminating pod leaves Endpoints", |e| {
        e[0].get("subsets").is_none()
    })
    .await;

    // The node agent marks it not ready, then removes it.
    lab.modify("pods", Some("default"), "web-1", |p| {
        p["status"]["conditions"][0]["status"] = json!("False");
    });
    lab.wait_for("endpointslices.discovery.k8s.io", "not serving", |s| {
        s[0]["endpoints"][0]["conditions"]["serving"] == false
    })
    .await;
    lab.delete("pods", Some("default"), "web-1");
    lab.wait_for("endpointslices.discovery.k8s.io", "no endpoints", |s| {
        s.len() == 1 && s[0]["endpoints"] == json!([])
    })
    .await;

    // Deleting the Service deletes its slices and Endpoints.
    lab.delete("services", Some("default"), "web");
    lab.wait_for("endpointslices.discovery.k8s.io", "slices gone", |s| {
        s.is_empty()
    })
    .await;
    lab.wait_for("endpoints", "endpoints gone", |e| e.is_empty())
        .await;
    lab.stop().await;
}

#[tokio::test]
async fn node_without_lease_renewal_becomes_unknown() {
    let lab = Lab::start(|c| {
        c.node_monitor_grace_period = Duration::from_millis(300);
        c.enabled.scheduler = false;
    });
    lab.create("nodes", node("node-1", "a"));
    lab.create(
        "leases.coordination.k8s.io",
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
               "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": micro_now()}}),
    );
    lab.create(
        "services",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default", "uid": "uid-svc-web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
    );
    let mut web = pod("web-1", json!({"app": "web"}));
    web["spec"]["nodeName"] = json!("node-1");
    run_pod(&mut web, "127.0.30.2");
    lab.create("pods", web);
    let nodes = lab
        .wait_for("nodes", "Ready=Unknown", |n| {
            n[0]["status"]["conditions"][0]["status"] == "Unknown"
        })
        .await;
    let cond = &nodes[0]["status"]["conditions"][0];
    assert_eq!(cond["reason"], "NodeStatusUnknown");
    assert_eq!(cond["message"], "Kubelet stopped posting node status.");
    assert_eq!(
        nodes[0]["spec"]["taints"],
        json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}])
    );

    // Its pod is marked not ready, so it leaves the Service's ready endpoints.
    lab.wait_for("pods", "pod on the lost node not ready", |p| {
        p[0]["status"]["conditions"][0]["type"] == "Ready"
            && p[0]["status"]["conditions"][0]["status"] == "False"
    })
    .await;
    lab.wait_for(
        "endpointslices.discovery.k8s.io",
        "endpoint not ready",
        |s| s.len() == 1 && s[0]["endpoints"][0]["conditions"]["ready"] == false,
    )
    .await;
    lab.wait_for("events", "NodeNotReady event", |e| {
        e.iter()
            .any(|e| e["reason"] == "NodeNotReady" && e["involvedObject"]["name"] == "web-1")
    })
    .await;

    // The kubelet comes back: it renews the lease and posts Ready=True; it stays Ready for now.
    lab.modify(
        "leases.coordination.k8s.io",
        Some("kube-node-lease"),
        "node-1",
        |l| {
            l["spec"]["renewTime"] = json!(micro_now());
        },
    );
    lab.modify("nodes", None, "node-1", |n| {
        n["status"]["conditions"][0] = json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
                                              "lastHeartbeatTime": micro_now()});
    });
    // ...and without further renewals it goes Unknown again.
    lab.wait_for("nodes", "Ready=Unknown again", |n| {
        n[0]["status"]["conditions"][0]["status"] == "Unknown"
    })
    .await;
    lab.stop().await;
}

#[test]
fn bad_signing_key_is_a_startup_error() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(10));
    let err = ControllerManager::new(store.clone(), ControllersConfig::default()).unwrap_err();
    assert!(err.to_string().contains("PRIVATE KEY"), "{err}");
    // Without the token controller no key is needed.
    let mut cfg = ControllersConfig::default();
    cfg.enabled.tokens = false;
    assert!(ControllerManager::new(store, cfg).is_ok());
}

#[tokio::test]
async fn converged_cluster_sees_no_write_storms() {
    let lab = Lab::start(|_| {});
    lab.wait_for("serviceaccounts", "default SAs", |s| s.len() == 4)
        .await;
    lab.create("nodes", node("node-1", "a"));
    lab.create("nodes", node("node-2", "b"));
    for svc in 0..5 {
        lab.create(
            "services",
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": format!("svc-{svc}"), "namespace": "default", "uid": format!("uid-svc-{svc}")},
                   "spec": {"selector": {"app": format!("app-{svc}")},
                            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
        );
    }
    for i in 0..50 {
        let mut p = pod(
            &format!("p-{i:02}"),
            json!({"app": format!("app-{}", i % 5)}),
        );
        p["spec"]["nodeName"] = json!(if i % 2 == 0 { "node-1" } else { "node-2" });
        run_pod(&mut p, &format!("127.0.30.{}", i + 2));
        lab.create("pods", p);
    }
    lab.wait_for(
        "endpointslices.discovery.k8s.io",
        "5 slices of 10 ready endpoints",
        |s| {
            s.len() == 5
                && s.iter().all(|s| {
                    s["endpoints"].as_array().is_some_and(|e| {
                        e.len() == 10 && e.iter().all(|e| e["conditions"]["ready"] == true)
                    })
                })
        },
    )
    .await;
    lab.wait_for("endpoints", "5 endpoints of 10 ready addresses", |e| {
        e.len() == 5
            && e.iter().all(|e| {
                e["subsets"][0]["addresses"]
                    .as_array()
                    .is_some_and(|a| a.len() == 10)
            })
    })
    .await;

    // Each probe Service costs exactly three writes (the Service, its slice, its Endpoints).
    // The second probe is processed after the first has settled, so any rewrite loop the
    // first one left behind would show up as extra writes by then.
    for probe in ["probe-1", "probe-2"] {
        let before = lab.store.current_resource_version();
        lab.create(
            "services",
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": probe, "namespace": "default", "uid": format!("uid-{probe}")},
                   "spec": {"selector": {"app": "nothing"}, "ports": [{"port": 80}]}}),
        );
        lab.wait_for("endpoints", "probe endpoints", |e| {
            e.iter().any(|e| name(e) == probe)
        })
        .await;
        lab.wait_for("endpointslices.discovery.k8s.io", "probe slice", |s| {
            s.iter()
                .any(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == probe)
        })
        .await;
        assert_eq!(
            lab.store.current_resource_version(),
            before + 3,
            "only the probe's writes"
        );
    }
    lab.stop().await;
}
