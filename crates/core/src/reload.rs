//! Following a configuration file: reload when it changes on disk and on SIGHUP, as HAProxy and
//! nginx reload on a signal and as Kubernetes components re-read mounted ConfigMaps.
//!
//! Three details make this worth one shared implementation:
//! - **the directory is watched, not the file**: editors and ConfigMap mounts replace a file (write a
//!   new one, rename it over the old), which ends a watch on the file itself;
//! - **bursts settle**: one save raises several events (create, write, chmod, rename); they are
//!   collapsed into one reload 50 ms after the first;
//! - **only changes count**: a file whose bytes did not change is not reloaded (reading it raises
//!   access events of its own), while SIGHUP always reloads — the operator asked.
//!
//! What a reload *does* is the caller's business: [`FileFollower::next`] only says when to read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

/// Why a reload is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The file's contents changed on disk.
    Changed,
    /// SIGHUP was received.
    Signal,
}

/// Watches one file (through its directory) and SIGHUP. See the module docs.
pub struct FileFollower {
    path: PathBuf,
    events: mpsc::Receiver<()>,
    // Kept alive for as long as the follower: dropping it ends the watch.
    _watcher: Option<notify::RecommendedWatcher>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
    last: Option<Vec<u8>>,
}

impl std::fmt::Debug for FileFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileFollower")
            .field("path", &self.path)
            .field("watching", &self._watcher.is_some())
            .finish_non_exhaustive()
    }
}

impl FileFollower {
    /// Starts following `path` (its current contents are the baseline). Must be called inside a
    /// tokio runtime. When the file system cannot be watched the reason is logged and SIGHUP still
    /// works.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        use notify::{RecursiveMode, Watcher};
        let path = path.into();
        let (tx, events) = mpsc::channel::<()>(1);
        let file_name = path.file_name().map(|n| n.to_os_string());
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev
                && matches!(
                    ev.kind,
                    notify::EventKind::Create(_)
                        | notify::EventKind::Modify(_)
                        | notify::EventKind::Remove(_)
                )
                && ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == file_name)
            {
                let _ = tx.try_send(());
            }
        });
        let watcher = match watcher {
            Ok(mut w) => {
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                match w.watch(dir, RecursiveMode::NonRecursive) {
                    Ok(()) => Some(w),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "cannot watch the file; reload with SIGHUP");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot watch the file; reload with SIGHUP");
                None
            }
        };
        #[cfg(unix)]
        let hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGHUP");
                None
            }
        };
        let last = std::fs::read(&path).ok();
        Self {
            path,
            events,
            _watcher: watcher,
            #[cfg(unix)]
            hup,
            last,
        }
    }

    /// The followed file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until a reload is due: the file's bytes changed, or SIGHUP arrived.
    pub async fn next(&mut self) -> Trigger {
        loop {
            #[cfg(unix)]
            let hup = async {
                match self.hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<()>();
            let trigger = tokio::select! {
                got = self.events.recv() => {
                    if got.is_none() {
                        // The watcher is gone (it never sends again): wait for SIGHUP only.
                        self.events = mpsc::channel(1).1;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while self.events.try_recv().is_ok() {}
                    Trigger::Changed
                }
                _ = hup => Trigger::Signal,
            };
            let now = std::fs::read(&self.path).ok();
            if trigger == Trigger::Changed && now.is_some() && now == self.last {
                continue;
            }
            self.last = now;
            return trigger;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_is_reported_once_and_an_unchanged_rewrite_not_at_all() {
        let dir = std::env::temp_dir().join(format!("proxylab-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let mut f = FileFollower::new(&file);
        // Replaced the way editors do it: write elsewhere, rename over.
        let tmp = dir.join("config.yaml.tmp");
        std::fs::write(&tmp, "a: 2\n").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), f.next()).await;
        assert_eq!(got.unwrap(), Trigger::Changed);
        // The same bytes again: no reload.
        std::fs::write(&file, "a: 2\n").unwrap();
        let got = tokio::time::timeout(Duration::from_millis(500), f.next()).await;
        assert!(got.is_err(), "an unchanged file was reported");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
