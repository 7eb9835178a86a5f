//! Persistence: an append-only log of committed writes, folded into a snapshot now and then.
//!
//! etcd keeps its data in a write-ahead log plus periodic snapshots; this is the same idea at lab
//! scale, in two files of a directory:
//!
//! - `store.snapshot.json` — every object and the resourceVersion they were saved at, written to a
//!   temporary file, fsynced and renamed over the old one (so it is always whole).
//! - `store.log` — one JSON line per committed write after that snapshot (`put` with the new object,
//!   or `del`), appended *before* the write becomes visible, under the store's lock, so the log's
//!   order is the resourceVersion order.
//!
//! **Durability.** Each record goes to the kernel with one `write` (no user-space buffer), so a
//! process killed with `kill -9` loses nothing it had committed. A flusher thread `fdatasync`s the log
//! every [`SYNC_INTERVAL`] while there is something new, so a machine crash or power loss loses at
//! most that much. A record torn by a crash (the last line, without its newline) is dropped at load.
//!
//! **Compaction.** When the log holds more records than [`COMPACT_AFTER`] (or than twice the number
//! of objects, whichever is larger) the store writes a new snapshot and starts an empty log. A crash
//! between the two is harmless: load skips log records the snapshot already has.
//!
//! **After a restart** resourceVersions continue from the highest one saved, and the watch history
//! starts empty: a watch from the current version resumes, one from an older version gets `410 Gone`
//! ([`crate::StoreError::Expired`]) and re-lists — what a client sees after an etcd compaction.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{Value, json};

/// How often the flusher thread makes appended records durable against a machine crash.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// The log is folded into a new snapshot once it holds more records than this (or than twice the
/// number of objects).
pub const COMPACT_AFTER: usize = 10_000;

const SNAPSHOT: &str = "store.snapshot.json";
const LOG: &str = "store.log";

/// A persistence problem: which file, and what.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct PersistError {
    pub path: PathBuf,
    pub message: String,
}

fn perr(path: &Path, message: impl std::fmt::Display) -> PersistError {
    PersistError {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// What was found at load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    pub objects: usize,
    pub resource_version: u64,
    /// Log records replayed on top of the snapshot.
    pub replayed: usize,
    /// A last record torn by a crash was dropped.
    pub torn_tail: bool,
}

/// One stored object and the resourceVersion it was last written at.
pub(crate) struct Entry {
    pub(crate) value: Value,
    pub(crate) rv: u64,
}

/// Objects as the store keeps them: resource → (namespace or "", name) → entry.
pub(crate) type Objects = HashMap<String, BTreeMap<(String, String), Entry>>;

/// The open log (the store holds it under its lock).
pub(crate) struct Journal {
    dir: PathBuf,
    log: File,
    records: usize,
    shared: Arc<Shared>,
}

/// What the flusher thread shares with the journal.
struct Shared {
    file: File,
    dirty: AtomicBool,
}

/// Removes the store's files from `dir` (`lab up --fresh`).
pub fn remove_files(dir: &Path) -> std::io::Result<()> {
    for f in [SNAPSHOT, LOG] {
        match std::fs::remove_file(dir.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Reads the snapshot and the log of `dir` (either may be absent).
pub(crate) fn load(dir: &Path) -> Result<(Objects, u64, Loaded), PersistError> {
    let mut objects: Objects = HashMap::new();
    let mut rv = 0u64;
    let snap_path = dir.join(SNAPSHOT);
    match std::fs::read(&snap_path) {
        Ok(bytes) => {
            let snap: Value = serde_json::from_slice(&bytes)
                .map_err(|e| perr(&snap_path, format!("not a store snapshot: {e}")))?;
            rv = snap["resourceVersion"]
                .as_u64()
                .ok_or_else(|| perr(&snap_path, "no resourceVersion"))?;
            for (i, o) in snap["objects"].as_array().into_iter().flatten().enumerate() {
                let (res, ns, name, obj) = record_key(o)
                    .ok_or_else(|| perr(&snap_path, format!("object {i} is malformed")))?;
                let orv = o["rv"].as_u64().unwrap_or(rv);
                objects.entry(res).or_default().insert(
                    (ns, name),
                    Entry {
                        value: obj,
                        rv: orv,
                    },
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(perr(&snap_path, e)),
    }
    let mut loaded = Loaded::default();
    let log_path = dir.join(LOG);
    match File::open(&log_path) {
        Ok(f) => {
            let mut lines = BufReader::new(f).split(b'\n').peekable();
            let mut n = 0usize;
            let mut good_bytes = 0u64;
            while let Some(line) = lines.next() {
                n += 1;
                let line = line.map_err(|e| perr(&log_path, e))?;
                let last = lines.peek().is_none();
                let parsed: Option<Value> = serde_json::from_slice(&line).ok();
                let Some(rec) = parsed.filter(|r| r["rv"].is_u64()) else {
                    if last {
                        // A write cut short by a crash: everything before it is whole.
                        loaded.torn_tail = true;
                        break;
                    }
                    return Err(perr(&log_path, format!("line {n}: not a store record")));
                };
                good_bytes += line.len() as u64 + 1;
                let rrv = rec["rv"].as_u64().unwrap_or(0);
                if rrv <= rv {
                    continue; // already in the snapshot
                }
                let (res, ns, name, obj) = record_key(&rec)
                    .ok_or_else(|| perr(&log_path, format!("line {n}: malformed record")))?;
                if rec.get("del").is_some() {
                    if let Some(m) = objects.get_mut(&res) {
                        m.remove(&(ns, name));
                    }
                } else {
                    objects.entry(res).or_default().insert(
                        (ns, name),
                        Entry {
                            value: obj,
                            rv: rrv,
                        },
                    );
                }
                rv = rrv;
                loaded.replayed += 1;
            }
            if loaded.torn_tail {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&log_path)
                    .map_err(|e| perr(&log_path, e))?;
                f.set_len(good_bytes).map_err(|e| perr(&log_path, e))?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(perr(&log_path, e)),
    }
    loaded.objects = objects.values().map(BTreeMap::len).sum();
    loaded.resource_version = rv;
    Ok((objects, rv, loaded))
}

/// `(resource, namespace, name, object)` of a snapshot entry or log record.
fn record_key(r: &Value) -> Option<(String, String, String, Value)> {
    let res = r
        .get("put")
        .or_else(|| r.get("del"))
        .or_else(|| r.get("resource"))?
        .as_str()?
        .to_owned();
    let ns = r["ns"].as_str().unwrap_or_default().to_owned();
    let name = r["name"].as_str()?.to_owned();
    Some((res, ns, name, r.get("obj").cloned().unwrap_or(Value::Null)))
}

impl Journal {
    /// Writes a snapshot of `objects` and opens an empty log after it.
    pub(crate) fn create(dir: &Path, objects: &Objects, rv: u64) -> Result<Self, PersistError> {
        std::fs::create_dir_all(dir).map_err(|e| perr(dir, e))?;
        write_snapshot(dir, objects, rv)?;
        let log = open_empty_log(dir)?;
        let shared = Arc::new(Shared {
            file: log.try_clone().map_err(|e| perr(&dir.join(LOG), e))?,
            dirty: AtomicBool::new(false),
        });
        spawn_flusher(Arc::downgrade(&shared));
        Ok(Self {
            dir: dir.to_owned(),
            log,
            records: 0,
            shared,
        })
    }

    /// Appends one committed write. `obj` is `None` for a deletion.
    pub(crate) fn append(
        &mut self,
        rv: u64,
        resource: &str,
        ns: &str,
        name: &str,
        obj: Option<&Value>,
    ) -> Result<(), PersistError> {
        let rec = match obj {
            Some(o) => json!({"rv": rv, "put": resource, "ns": ns, "name": name, "obj": o}),
            None => json!({"rv": rv, "del": resource, "ns": ns, "name": name}),
        };
        let mut line = serde_json::to_vec(&rec).map_err(|e| perr(&self.dir.join(LOG), e))?;
        line.push(b'\n');
        self.log
            .write_all(&line)
            .map_err(|e| perr(&self.dir.join(LOG), e))?;
        self.shared.dirty.store(true, Ordering::Release);
        self.records += 1;
        Ok(())
    }

    /// Folds the log into a new snapshot when it has grown past the threshold.
    pub(crate) fn maybe_compact(&mut self, objects: &Objects, rv: u64) -> Result<(), PersistError> {
        let count: usize = objects.values().map(BTreeMap::len).sum();
        if self.records <= COMPACT_AFTER.max(count * 2) {
            return Ok(());
        }
        self.compact(objects, rv)
    }

    pub(crate) fn compact(&mut self, objects: &Objects, rv: u64) -> Result<(), PersistError> {
        write_snapshot(&self.dir, objects, rv)?;
        let log = open_empty_log(&self.dir)?;
        let shared = Arc::new(Shared {
            file: log.try_clone().map_err(|e| perr(&self.dir.join(LOG), e))?,
            dirty: AtomicBool::new(false),
        });
        spawn_flusher(Arc::downgrade(&shared));
        self.log = log;
        self.shared = shared;
        self.records = 0;
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.log.sync_data();
    }
}

fn write_snapshot(dir: &Path, objects: &Objects, rv: u64) -> Result<(), PersistError> {
    let path = dir.join(SNAPSHOT);
    let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
    let mut entries = Vec::new();
    let mut resources: Vec<&String> = objects.keys().collect();
    resources.sort();
    for res in resources {
        for ((ns, name), e) in &objects[res] {
            entries
                .push(json!({"resource": res, "ns": ns, "name": name, "rv": e.rv, "obj": e.value}));
        }
    }
    let body = serde_json::to_vec(&json!({"resourceVersion": rv, "objects": entries}))
        .map_err(|e| perr(&tmp, e))?;
    let mut f = File::create(&tmp).map_err(|e| perr(&tmp, e))?;
    f.write_all(&body).map_err(|e| perr(&tmp, e))?;
    f.sync_all().map_err(|e| perr(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| perr(&path, e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn open_empty_log(dir: &Path) -> Result<File, PersistError> {
    let path = dir.join(LOG);
    let tmp = dir.join(format!("{LOG}.tmp"));
    File::create(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| perr(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| perr(&path, e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| perr(&path, e))
}

/// Every [`SYNC_INTERVAL`], `fdatasync` the log if something was appended; ends with the journal
/// (or when the log is replaced by a compaction).
fn spawn_flusher(shared: Weak<Shared>) {
    let _ = std::thread::Builder::new()
        .name("store-fsync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(SYNC_INTERVAL);
                let Some(s) = shared.upgrade() else { return };
                if s.dirty.swap(false, Ordering::AcqRel)
                    && let Err(e) = s.file.sync_data()
                {
                    tracing::warn!(error = %e, "store log fdatasync failed");
                }
            }
        });
}
