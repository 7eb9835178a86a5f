//! The state file: allocations survive a restart, so a Service keeps its address
//! (cloud-provider-kind#66 and #250: users want stable load balancer IPs).
//!
//! JSON, written whole to a temporary file and renamed over the old one, so a crash mid-write
//! leaves the previous state, never half of one. The Services' own `status.loadBalancer` is the
//! second source (see `reconcile`'s adopt pass): losing this file costs nothing while the Services
//! still show their addresses.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use proxylab_core::cluster::{Protocol, ServiceKey};
use serde::{Deserialize, Serialize};

use crate::alloc::{Allocation, Allocations};

const VERSION: u32 = 1;

/// A state file that cannot be read or written; names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path}: {message}")]
    Format { path: PathBuf, message: String },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    version: u32,
    allocations: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    namespace: String,
    name: String,
    #[serde(default)]
    uid: String,
    ip: IpAddr,
    pool: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sharing_key: Option<String>,
    #[serde(default)]
    ports: Vec<PortEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortEntry {
    protocol: String,
    port: u16,
}

/// Reads the allocations; a missing file is an empty state (the first start).
pub fn load(path: &Path) -> Result<Allocations, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Allocations::new()),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let format = |message: String| StateError::Format {
        path: path.to_owned(),
        message,
    };
    let file: File = serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
    if file.version != VERSION {
        return Err(format(format!(
            "version {} is not understood (expected {VERSION})",
            file.version
        )));
    }
    let mut out = Allocations::new();
    for e in file.allocations {
        let mut ports = Vec::new();
        for p in e.ports {
            let protocol = match p.protocol.as_str() {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                other => {
                    return Err(format(format!(
                        "protocol {other:?} of {}/{}",
                        e.namespace, e.name
                    )));
                }
            };
            ports.push((protocol, p.port));
        }
        out.insert(
            ServiceKey::new(e.namespace, e.name),
            Allocation {
                ip: e.ip,
                pool: e.pool,
                sharing_key: e.sharing_key,
                ports,
                uid: e.uid,
            },
        );
    }
    Ok(out)
}

/// Writes the allocations (temporary file, then rename).
pub fn save(path: &Path, allocations: &Allocations) -> Result<(), StateError> {
    let file = File {
        version: VERSION,
        allocations: allocations
            .iter()
            .map(|(k, a)| Entry {
                namespace: k.namespace.clone(),
                name: k.name.clone(),
                uid: a.uid.clone(),
                ip: a.ip,
                pool: a.pool.clone(),
                sharing_key: a.sharing_key.clone(),
                ports: a
                    .ports
                    .iter()
                    .map(|(proto, port)| PortEntry {
                        protocol: proto.as_str().to_owned(),
                        port: *port,
                    })
                    .collect(),
            })
            .collect(),
    };
    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| StateError::Format {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    text.push('\n');
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cloud-lb.json");
        assert!(load(&path).unwrap().is_empty());
        let mut all = Allocations::new();
        all.insert(
            ServiceKey::new("default", "dns"),
            Allocation {
                ip: "127.0.50.4".parse().unwrap(),
                pool: "default".into(),
                sharing_key: Some("dns".into()),
                ports: vec![(Protocol::Tcp, 53), (Protocol::Udp, 53)],
                uid: "u1".into(),
            },
        );
        save(&path, &all).unwrap();
        assert_eq!(load(&path).unwrap(), all);
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn a_bad_file_names_itself_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        for (text, want) in [
            ("{", "EOF"),
            (
                r#"{"version":2,"allocations":[]}"#,
                "version 2 is not understood",
            ),
            (
                r#"{"version":1,"allocations":[{"namespace":"a","name":"b","ip":"x","pool":"p"}]}"#,
                "invalid IP",
            ),
            (
                r#"{"version":1,"allocations":[],"extra":1}"#,
                "unknown field",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = load(&path).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("state file {}: ", path.display())),
                "{e}"
            );
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
