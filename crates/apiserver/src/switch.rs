//! One listen address of the apiserver that can be stopped and started while the others serve:
//! the lab's failure drill (`proxylab lab stop apiserver-2`).
//!
//! A lab runs several apiserver front-ends in one process over one store, one listen address
//! each. Stopping one must look, from outside, like that kube-apiserver crashing: its listener
//! closes (new connections are refused) and its established connections drop mid-request — no
//! HTTP/2 GOAWAY, no drain, watches cut. `core::serve::serve_http_abortable` ends a listener that
//! way; a [`ListenerSwitch`] runs it, and starting again binds the same address anew, as a
//! restarted apiserver would. The store, the controllers and the other front-ends are untouched
//! (as etcd and the other control-plane nodes would be), so the restarted front-end serves the same
//! cluster.
//!
//! What a crash would also do and a stop does not: end the exec and port-forward tunnels that
//! front-end opened (they have left the HTTP loop, and the bastion shares them across front-ends),
//! and leave its address in the `kubernetes` endpoints until they expire (they stay; a graceful
//! shutdown of the whole server withdraws them).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::server::ServerError;

/// Why a stop or start was refused.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("{0} is already stopped")]
    NotRunning(SocketAddr),
    #[error("{0} is already running")]
    AlreadyRunning(SocketAddr),
    #[error("the apiserver is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Bind(ServerError),
}

enum State {
    /// Bound at start-up, not served yet.
    Bound(TcpListener),
    Serving {
        abort: CancellationToken,
        task: JoinHandle<Result<(), ServerError>>,
    },
    Stopped,
}

struct Inner {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    /// The whole server's shutdown: listeners drain.
    shutdown: CancellationToken,
    state: tokio::sync::Mutex<State>,
    running: std::sync::atomic::AtomicBool,
}

/// A handle on one listen address of a running apiserver. Cheap to clone.
#[derive(Clone)]
pub struct ListenerSwitch(Arc<Inner>);

impl std::fmt::Debug for ListenerSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSwitch")
            .field("addr", &self.0.addr)
            .field("running", &self.is_running())
            .finish()
    }
}

impl ListenerSwitch {
    pub(crate) fn new(
        listener: TcpListener,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        router: Router,
        shutdown: CancellationToken,
    ) -> Self {
        Self(Arc::new(Inner {
            addr,
            tls,
            router,
            shutdown,
            state: tokio::sync::Mutex::new(State::Bound(listener)),
            running: false.into(),
        }))
    }

    /// The address this switch serves.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// Whether the address is being served now.
    pub fn is_running(&self) -> bool {
        self.0.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn spawn(&self, listener: TcpListener) -> State {
        let abort = CancellationToken::new();
        let (addr, tls, router) = (self.0.addr, self.0.tls.clone(), self.0.router.clone());
        let (shutdown, cut) = (self.0.shutdown.clone(), abort.clone());
        info!(%addr, tls = tls.is_some(), "apiserver listening");
        let task = tokio::spawn(async move {
            let options = proxylab_core::serve::ServeOptions::default();
            proxylab_core::serve::serve_http_abortable(
                listener, tls, router, shutdown, cut, options,
            )
            .await
            .map_err(|source| ServerError::Serve { addr, source })
        });
        self.0
            .running
            .store(true, std::sync::atomic::Ordering::SeqCst);
        State::Serving { abort, task }
    }

    /// Serves the listener bound at start-up (the server's `serve` calls this once).
    pub(crate) async fn begin(&self) {
        let mut state = self.0.state.lock().await;
        if let State::Bound(_) = &*state
            && let State::Bound(l) = std::mem::replace(&mut *state, State::Stopped)
        {
            *state = self.spawn(l);
        }
    }

    /// Stops serving as a crash would: the listener closes and every connection on it drops at
    /// once. Returns when both have happened.
    pub async fn stop(&self) -> Result<(), SwitchError> {
        let mut state = self.0.state.lock().await;
        match std::mem::replace(&mut *state, State::Stopped) {
            State::Serving { abort, task } => {
                abort.cancel();
                self.0
                    .running
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                match task.await {
                    Ok(Err(e)) => warn!(error = %e, "apiserver listener ended with an error"),
                    Err(e) => warn!(error = %e, "apiserver listener task failed"),
                    Ok(Ok(())) => {}
                }
                warn!(addr = %self.0.addr, "apiserver stopped: listener closed, connections dropped");
                Ok(())
            }
            // Bound but not served yet: dropping the socket here is the stop.
            State::Bound(_) => {
                self.0
                    .running
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
            State::Stopped => Err(SwitchError::NotRunning(self.0.addr)),
        }
    }

    /// Binds the address again and serves it (a restarted apiserver).
    pub async fn start(&self) -> Result<(), SwitchError> {
        if self.0.shutdown.is_cancelled() {
            return Err(SwitchError::ShuttingDown);
        }
        let mut state = self.0.state.lock().await;
        match &*state {
            State::Serving { .. } | State::Bound(_) => {
                return Err(SwitchError::AlreadyRunning(self.0.addr));
            }
            State::Stopped => {}
        }
        let addr = self.0.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SwitchError::Bind(ServerError::Bind { addr, source }))?;
        *state = self.spawn(listener);
        info!(%addr, "apiserver started again");
        Ok(())
    }

    /// Waits for the serving task after the server's shutdown (the listener drains).
    pub(crate) async fn finish(&self) -> Result<(), ServerError> {
        let mut state = self.0.state.lock().await;
        self.0
            .running
            .store(false, std::sync::atomic::Ordering::SeqCst);
        match std::mem::replace(&mut *state, State::Stopped) {
            State::Serving { task, .. } => match task.await {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "listener task failed");
                    Ok(())
                }
            },
            State::Bound(_) | State::Stopped => Ok(()),
        }
    }
}
