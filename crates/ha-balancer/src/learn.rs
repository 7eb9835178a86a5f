//! Learned backends: the apiservers' own list instead of a hand-kept one.
//!
//! Every kube-apiserver publishes its address in the `kubernetes` Service's EndpointSlice in
//! `default` while it serves (the endpoint reconciler) and withdraws it on a graceful shutdown.
//! With `learn` set, the balancer starts from its configured backends (the *seeds*: enough to
//! reach one apiserver), then watches that EndpointSlice and balances over what it lists — an
//! apiserver added to the control plane gets traffic without touching the balancer, one removed
//! stops getting new connections (those it has run on until they end; nothing is cut).
//!
//! The rules, in order:
//! - a listing that names no apiserver (all withdrew, or the slice was emptied) is ignored: the
//!   last known list is kept, since an empty set could only refuse every client;
//! - a learned address that is also a seed keeps the seed's name and TLS server name; others are
//!   named by their address (or by the name the state file gave them);
//! - the learned list replaces the seeds (a seed the apiservers no longer list is not balanced to);
//! - the last learned list is written to the state file (JSON, a temporary file renamed over the
//!   old), and read at start: a balancer restarted while every apiserver is down still knows all of
//!   them, not only its seeds, and uses whichever comes back first.
//!
//! The watch goes through [`proxylab_kube`] (kube-rs's list/watch/re-list with backoff), with the
//! kubeconfig given; one naming the balancer itself makes the watch fail over like any client.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use proxylab_kube::watch::ObjectEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::config::BackendConfig;

/// Where the apiservers publish themselves.
pub const NAMESPACE: &str = "default";
/// The selector of the `kubernetes` Service's EndpointSlices.
pub const SELECTOR: &str = "kubernetes.io/service-name=kubernetes";

const VERSION: u32 = 1;

/// A state file that cannot be read or written; names the file.
#[derive(Debug, thiserror::Error)]
#[error("state file {}: {message}", path.display())]
pub struct StateError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StateFile {
    version: u32,
    /// When the list was learned.
    learned_at: jiff::Timestamp,
    backends: Vec<StateEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateEntry {
    name: String,
    address: SocketAddr,
}

/// Reads the last learned list; a missing file is nothing learned yet (the first start).
pub fn load_state(path: &Path) -> Result<Option<Vec<BackendConfig>>, StateError> {
    let err = |message: String| StateError {
        path: path.to_owned(),
        message,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let file: StateFile = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    if file.version != VERSION {
        return Err(err(format!(
            "version {} is not understood (expected {VERSION})",
            file.version
        )));
    }
    let list: Vec<BackendConfig> = file
        .backends
        .into_iter()
        .map(|e| BackendConfig {
            name: e.name,
            address: e.address,
            server_name: None,
        })
        .collect();
    Ok((!list.is_empty()).then_some(list))
}

/// Writes the learned list (a temporary file, then a rename: a crash leaves the old list whole).
pub fn save_state(path: &Path, list: &[BackendConfig]) -> Result<(), StateError> {
    let err = |message: String| StateError {
        path: path.to_owned(),
        message,
    };
    let file = StateFile {
        version: VERSION,
        learned_at: jiff::Timestamp::now(),
        backends: list
            .iter()
            .map(|b| StateEntry {
                name: b.name.clone(),
                address: b.address,
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| err(e.to_string()))?;
    text.push('\n');
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}

/// The backends to balance over: the learned list when there is one (a seed at the same address
/// lends its name and server name), else the seeds.
pub fn effective(seeds: &[BackendConfig], learned: Option<&[BackendConfig]>) -> Vec<BackendConfig> {
    match learned {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|b| {
                seeds
                    .iter()
                    .find(|s| s.address == b.address)
                    .cloned()
                    .unwrap_or_else(|| b.clone())
            })
            .collect(),
        _ => seeds.to_vec(),
    }
}

/// The apiserver addresses one EndpointSlice lists: each ready endpoint's addresses on the `https`
/// port (or the only port). Endpoints not ready (`conditions.ready: false`) are left out.
pub fn slice_addresses(slice: &Value) -> Vec<SocketAddr> {
    let ports = slice["ports"].as_array().cloned().unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p["name"] == "https")
        .or_else(|| (ports.len() == 1).then(|| &ports[0]))
        .and_then(|p| p["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok());
    let Some(port) = port else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ep in slice["endpoints"].as_array().into_iter().flatten() {
        if ep["conditions"]["ready"] == Value::Bool(false) {
            continue;
        }
        for a in ep["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = a.as_str().and_then(|s| s.parse::<IpAddr>().ok()) {
                out.push(SocketAddr::new(ip, port));
            }
        }
    }
    out
}

/// Names learned addresses: a seed's name, else the name known for that address, else the address.
fn name_list(
    addrs: &[SocketAddr],
    seeds: &[BackendConfig],
    known: &[BackendConfig],
) -> Vec<BackendConfig> {
    addrs
        .iter()
        .map(|a| {
            seeds
                .iter()
                .chain(known)
                .find(|b| b.address == *a)
                .cloned()
                .unwrap_or_else(|| BackendConfig {
                    name: a.to_string(),
                    address: *a,
                    server_name: None,
                })
        })
        .collect()
}

/// What `/stats` shows of learning.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnStats {
    /// Where the backends in use came from: `seeds`, `state-file` or `endpointslice`.
    pub source: &'static str,
    /// The watch has listed the EndpointSlices at least once since start.
    pub synced: bool,
    pub state_file: Option<PathBuf>,
    /// When the list last changed.
    pub last_update: Option<jiff::Timestamp>,
    /// The watch's last error (cleared by its next listing).
    pub last_error: Option<String>,
}

/// The learned list and how it came about.
pub(crate) struct Learned {
    /// The last learned list (from the watch or the state file); `None`: nothing learned yet.
    pub(crate) list: Option<Vec<BackendConfig>>,
    pub(crate) stats: LearnStats,
}

impl Learned {
    pub(crate) fn new(state_file: Option<PathBuf>, list: Option<Vec<BackendConfig>>) -> Self {
        Self {
            stats: LearnStats {
                source: if list.is_some() {
                    "state-file"
                } else {
                    "seeds"
                },
                synced: false,
                state_file,
                last_update: None,
                last_error: None,
            },
            list,
        }
    }
}

/// Watches the apiservers' EndpointSlices until `stop`, applying each change of the listed
/// addresses to the balancer.
pub(crate) async fn run(
    shared: Arc<Shared>,
    client: proxylab_kube::RestClient,
    stop: CancellationToken,
) {
    let mut stream = proxylab_kube::watch::watch_endpoint_slices_json(&client, NAMESPACE, SELECTOR);
    // Slice name → its addresses; `listing` collects a (re)listing until it is complete.
    let mut slices: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, Vec<SocketAddr>>> = None;
    let mut synced = false;
    let name_of = |o: &Value| {
        o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = stream.next() => match e { Some(e) => e, None => return },
        };
        match event {
            Ok(ObjectEvent::Init) => listing = Some(BTreeMap::new()),
            Ok(ObjectEvent::InitApply(o)) => {
                listing
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name_of(&o), slice_addresses(&o));
            }
            Ok(ObjectEvent::InitDone) => {
                slices = listing.take().unwrap_or_default();
                synced = true;
                {
                    let mut l = shared.learned.lock();
                    l.stats.synced = true;
                    l.stats.last_error = None;
                }
                update(&shared, &slices);
            }
            Ok(ObjectEvent::Apply(o)) => {
                slices.insert(name_of(&o), slice_addresses(&o));
                if synced {
                    update(&shared, &slices);
                }
            }
            Ok(ObjectEvent::Delete(o)) => {
                slices.remove(&name_of(&o));
                if synced {
                    update(&shared, &slices);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching the apiservers' EndpointSlice; retrying");
                shared.learned.lock().stats.last_error = Some(e.to_string());
            }
        }
    }
}

/// Takes on the addresses the slices list now, if they differ from what is learned.
fn update(shared: &Arc<Shared>, slices: &BTreeMap<String, Vec<SocketAddr>>) {
    let mut addrs: Vec<SocketAddr> = slices.values().flatten().copied().collect();
    addrs.sort();
    addrs.dedup();
    let list = {
        let mut learned = shared.learned.lock();
        if addrs.is_empty() {
            tracing::warn!(
                "the kubernetes EndpointSlice lists no apiserver; keeping the last known backends"
            );
            return;
        }
        let known = learned.list.clone().unwrap_or_default();
        let seeds = shared.seeds.lock().clone();
        let list = name_list(&addrs, &seeds, &known);
        let mut before: Vec<SocketAddr> = known.iter().map(|b| b.address).collect();
        before.sort();
        if learned.list.is_some() && before == addrs {
            learned.stats.source = "endpointslice";
            return;
        }
        let added: Vec<String> = addrs
            .iter()
            .filter(|a| !before.contains(a))
            .map(|a| a.to_string())
            .collect();
        let removed: Vec<String> = before
            .iter()
            .filter(|a| !addrs.contains(a))
            .map(|a| a.to_string())
            .collect();
        tracing::info!(
            ?added,
            ?removed,
            "learned the apiservers from the kubernetes EndpointSlice"
        );
        learned.list = Some(list.clone());
        learned.stats.source = "endpointslice";
        learned.stats.last_update = Some(jiff::Timestamp::now());
        if let Some(path) = &learned.stats.state_file
            && let Err(e) = save_state(path, &list)
        {
            tracing::warn!("{e}");
        }
        list
    };
    crate::apply_backends(shared, Some(&list));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b(name: &str, addr: &str) -> BackendConfig {
        BackendConfig {
            name: name.into(),
            address: addr.parse().unwrap(),
            server_name: None,
        }
    }

    #[test]
    fn a_slice_gives_its_ready_addresses_on_the_https_port() {
        let slice = json!({
            "ports": [{"name": "https", "port": 6443}],
            "endpoints": [
                {"addresses": ["127.0.10.1"], "conditions": {"ready": true}},
                {"addresses": ["127.0.10.2"]},
                {"addresses": ["127.0.10.3"], "conditions": {"ready": false}},
                {"addresses": ["not-an-ip"]}
            ]
        });
        assert_eq!(
            slice_addresses(&slice),
            vec![
                "127.0.10.1:6443".parse::<SocketAddr>().unwrap(),
                "127.0.10.2:6443".parse().unwrap()
            ]
        );
        assert!(slice_addresses(&json!({"endpoints": [{"addresses": ["127.0.0.1"]}]})).is_empty());
    }

    #[test]
    fn learned_addresses_keep_seed_names_and_replace_the_seeds() {
        let seeds = vec![
            b("apiserver-1", "127.0.10.1:6443"),
            b("old", "127.0.10.9:6443"),
        ];
        let addrs: Vec<SocketAddr> = vec![
            "127.0.10.1:6443".parse().unwrap(),
            "127.0.10.2:6443".parse().unwrap(),
        ];
        let list = name_list(&addrs, &seeds, &[]);
        assert_eq!(
            list,
            vec![
                b("apiserver-1", "127.0.10.1:6443"),
                b("127.0.10.2:6443", "127.0.10.2:6443")
            ]
        );
        assert_eq!(effective(&seeds, Some(&list)), list);
        assert_eq!(effective(&seeds, None), seeds);
        assert_eq!(effective(&seeds, Some(&[])), seeds);
    }

    #[test]
    fn the_state_file_round_trips_and_a_missing_or_bad_one_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned.json");
        assert!(load_state(&path).unwrap().is_none());
        let list = vec![
            b("apiserver-1", "127.0.10.1:6443"),
            b("127.0.10.2:6443", "127.0.10.2:6443"),
        ];
        save_state(&path, &list).unwrap();
        assert_eq!(load_state(&path).unwrap(), Some(list));
        std::fs::write(
            &path,
            "{\"version\": 7, \"learnedAt\": \"2026-01-01T00:00:00Z\", \"backends\": []}",
        )
        .unwrap();
        let e = load_state(&path).unwrap_err().to_string();
        assert!(e.contains("learned.json") && e.contains("version 7"), "{e}");
        std::fs::write(&path, "nonsense").unwrap();
        assert!(
            load_state(&path)
                .unwrap_err()
                .to_string()
                .contains("learned.json")
        );
    }
}
