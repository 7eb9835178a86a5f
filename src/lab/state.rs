//! The state directory, owned by one lab at a time.
//!
//! `lab up` takes an exclusive lock on `lab.lock` before it touches anything in the directory; the
//! lock file says who holds it (pid, start time, admin URL), so a second `lab up` on the same
//! directory can say which process to stop — and changes nothing. The kernel drops the lock when the
//! process ends, however it ends, so a `kill -9` never leaves the directory locked.
//!
//! What the directory keeps across restarts, so that clients keep working:
//!
//! - `pki/` — the cluster CA, the service-account key and the admin certificate are reused; the
//!   serving certificates are re-issued from the same CA for the current topology
//!   ([`LabPki::renew_for`]).
//! - `tokens.csv` — the admin token is reused.
//! - `kubeconfig` — rewritten with the same credentials, so an old copy still works.
//! - `store/` — the lab's etcd (see `proxylab_store::journal`): objects, and so ClusterIPs and
//!   NodePorts, survive a restart (`lab up --fresh` empties it).
//! - `lab.json` — written when everything answers and removed at exit. After a `kill -9` it stays
//!   behind, so it names its `pid`; `proxylab lab status` tells a live lab from a stale file (and a
//!   new `lab up` removes it first thing).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use proxylab_core::tls::pki::{LabPki, PkiSpec};
use serde_json::{Value, json};

/// The state directory, locked for this process.
pub struct StateDir {
    pub dir: PathBuf,
    /// Holding the file holds the lock.
    _lock: File,
}

/// Another process holds the directory.
#[derive(Debug, thiserror::Error)]
#[error(
    "state dir {dir} is in use by another lab ({holder}); stop it first, or give this one its own --state-dir"
)]
pub struct Busy {
    pub dir: String,
    pub holder: String,
}

/// Why the directory cannot be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join("lab.lock")
}

/// Who holds the lock, as its file says.
fn describe_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => format!(
            "pid {}, started {}, admin {}",
            v["pid"],
            v["startedAt"].as_str().unwrap_or("?"),
            v["admin"].as_str().unwrap_or("?")
        ),
        Err(_) => "a process that has not written its pid yet".into(),
    }
}

impl StateDir {
    /// Creates `dir` if needed and takes its lock; when another process holds it, returns [`Busy`]
    /// having changed nothing.
    pub fn claim(dir: &Path, admin_url: &str) -> Result<Self, ClaimError> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create state dir {}", dir.display()))?;
        let path = lock_path(dir);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Busy {
                    dir: dir.display().to_string(),
                    holder: describe_holder(&mut file),
                }
                .into());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot lock {}", path.display()))
                    .into());
            }
        }
        let me = json!({
            "pid": std::process::id(),
            "startedAt": jiff::Timestamp::now().to_string(),
            "admin": admin_url,
        });
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(me.to_string().as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            _lock: file,
        })
    }

    pub fn lab_json(&self) -> PathBuf {
        self.dir.join("lab.json")
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    pub fn tokens_csv(&self) -> PathBuf {
        self.dir.join("tokens.csv")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The PKI of the last run renewed for `spec`, or a new one. Returns whether it was reused.
    pub fn pki(&self, spec: &PkiSpec) -> anyhow::Result<(LabPki, bool)> {
        let dir = self.pki_dir();
        let (pki, reused) = if dir.join("ca.crt").is_file() {
            let old = LabPki::load_from(&dir).with_context(|| {
                format!(
                    "reading the lab PKI in {} (remove it to start over)",
                    dir.display()
                )
            })?;
            (old.renew_for(spec).context("renewing the lab PKI")?, true)
        } else {
            (
                LabPki::generate(spec).context("generating the lab PKI")?,
                false,
            )
        };
        pki.write_to(&dir).context("writing the lab PKI")?;
        Ok((pki, reused))
    }

    /// The admin token of the last run, or a new one; `tokens.csv` is (re)written either way.
    pub fn token(&self) -> anyhow::Result<String> {
        let path = self.tokens_csv();
        let old = std::fs::read_to_string(&path).ok().and_then(|t| {
            let tok = t.lines().next()?.split(',').next()?.trim().to_owned();
            (tok.len() >= 16 && tok.chars().all(|c| c.is_ascii_alphanumeric())).then_some(tok)
        });
        let token = old.unwrap_or_else(random_token);
        write_private(
            &path,
            &format!("{token},kubernetes-admin,admin-token,\"system:masters\"\n"),
        )?;
        Ok(token)
    }
}

/// What `proxylab lab status` finds in a state directory.
#[derive(Debug)]
pub enum Status {
    /// A lab holds the lock; its `lab.json` if it is ready.
    Running { holder: String, info: Option<Value> },
    /// Nobody holds the lock; a `lab.json` left behind is stale.
    Stopped { stale_lab_json: bool },
}

/// Looks without taking anything: the lock is only tested and released at once.
pub fn status(dir: &Path) -> anyhow::Result<Status> {
    let lab_json = dir.join("lab.json");
    let Ok(mut file) = File::options().read(true).write(true).open(lock_path(dir)) else {
        return Ok(Status::Stopped {
            stale_lab_json: lab_json.exists(),
        });
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            Ok(Status::Stopped {
                stale_lab_json: lab_json.exists(),
            })
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(Status::Running {
            holder: describe_holder(&mut file),
            info: std::fs::read_to_string(&lab_json)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok()),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect()
}

/// Writes a file only its owner can read (tokens, kubeconfigs with keys).
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_naming_the_holder_and_status_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDir::claim(dir.path(), "http://127.0.0.1:8400").unwrap();
        let err = StateDir::claim(dir.path(), "x").err().unwrap().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("admin http://127.0.0.1:8400"), "{err}");
        assert!(matches!(
            status(dir.path()).unwrap(),
            Status::Running { info: None, .. }
        ));
        drop(first);
        assert!(matches!(
            status(dir.path()).unwrap(),
            Status::Stopped {
                stale_lab_json: false
            }
        ));
        std::fs::write(dir.path().join("lab.json"), "{}").unwrap();
        assert!(matches!(
            status(dir.path()).unwrap(),
            Status::Stopped {
                stale_lab_json: true
            }
        ));
        let again = StateDir::claim(dir.path(), "y").unwrap();
        let t1 = again.token().unwrap();
        assert_eq!(again.token().unwrap(), t1, "the token is kept");
    }
}
