//! # proxylab-ha-balancer — proxy type 4: the balancer in front of several apiservers
//!
//! An HA control plane runs several apiservers; every client (kubectl, kubelets, controllers) is
//! given one address, and a balancer behind it spreads connections over the apiservers that are
//! alive. The kubeadm recipe puts HAProxy there (`mode tcp`, `option httpchk GET /healthz`, inter
//! 2 s, fall 3, rise 2); k3s, RKE2 and Talos embed their own. This crate is that balancer, and it
//! fixes what their users complain about:
//!
//! - **TLS passes through** (`tcp` mode): the balancer never sees the traffic, so client
//!   certificates, bearer tokens and the apiservers' own TLS work exactly as without it.
//! - **Or TLS is terminated** (`http` mode, `http`): the balancer verifies client certificates
//!   itself and forwards each request with core's forwarding path over its own TLS, presenting a
//!   front-proxy certificate and the user in `X-Remote-User`/`X-Remote-Group` — the apiservers'
//!   requestheader authentication — so identity survives termination; the client's own
//!   `X-Remote-*` headers are always removed, token clients pass through untouched. Each client
//!   connection is bound to one backend, as in `tcp` mode, and is moved with HTTP/2 GOAWAY.
//! - **Health** ([`pool`], [`check`]): active checks (`GET /readyz` over verified TLS, or a TCP
//!   connect) every `interval` plus passive detection (a failed connect, a reset by the backend),
//!   judged with rise/fall (`proxylab_core::balance::health`). Each verdict depends only on that
//!   backend's own recent results, so outages in turn never leave the state machine stuck
//!   (k3s#11349). Every change is logged, counted and shown on `/stats`.
//! - **A backend going down has its connections closed at once** (HAProxy's
//!   `on-marked-down shutdown-sessions`, which the recipe does not set): watches and `logs -f`
//!   reconnect to a live apiserver instead of hanging until their own timeouts.
//! - **A backend coming back gets its share again** ([`rebalance`]): the busiest backends'
//!   oldest connections are moved gradually (bounded rate, jittered) until connection counts are
//!   even — closed in `tcp` mode, sent GOAWAY in `http` mode (the policy is one; the action is
//!   the mode's) — so watches move back instead of staying on the others for hours
//!   (kubernetes#76145).
//! - **A failed connect is retried on another backend** — never once bytes have been sent, since
//!   nothing is read from the client before the backend's connect succeeds.
//! - **No idle timer cuts a live stream**: no idle limit by default; TCP keepalive and
//!   `TCP_USER_TIMEOUT` on both legs find dead peers instead (and an idle limit below client-go's
//!   30 s ping is warned about).
//! - **Backends learned from the cluster** ([`learn`], optional): seeded by the configured list,
//!   then following the `kubernetes` Service's EndpointSlice where every apiserver publishes
//!   itself, with the last known list in a state file for a restart during an outage.
//! - **Operations**: reload on SIGHUP or file change (a bad file keeps the running configuration
//!   and says why; established connections are untouched), SIGTERM drains up to a bound, the admin
//!   endpoint serves `/stats` (HTML and `?format=json`), `/metrics` and `/debug/hops`.
//!
//! Layout: [`config`] (the YAML file, flags, the recipe's defaults), [`pool`] (backends and their
//! verdicts, and how each mode ends a connection), [`check`] (active checks), `tcp` and `http`
//! (the two data paths; `http` is core's serving loop and forwarding path), [`rebalance`] (moving load back
//! after a recovery), [`learn`] (backends from the EndpointSlice), `stats` (the admin endpoint),
//! [`args`] (flags). [`HaBalancer::bind`] checks the configuration and binds (errors are the
//! user's to fix: exit 2); [`HaBalancer::serve`] runs until the token is cancelled, then drains.

pub mod args;
pub mod check;
pub mod config;
mod http;
pub mod learn;
pub mod pool;
pub mod rebalance;
mod stats;
mod tcp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use proxylab_core::runtime::{ListenOptions, bind_tcp};
use proxylab_core::telemetry::AdminState;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use args::HaBalancerArgs;
pub use config::{
    BackendConfig, CheckConfig, CheckKind, Config, ConfigError, Learn, Mode, Rebalance, Timeouts,
};
pub use learn::LearnStats;
pub use pool::BackendStats;
pub use stats::Stats;

/// Why the balancer could not start. [`Error::is_config`] errors are the user's to fix (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    File(#[from] ConfigError),
    #[error("{0}")]
    Config(String),
    #[error("{what}: {source}")]
    Bind {
        what: &'static str,
        source: std::io::Error,
    },
}

impl Error {
    /// A bad flag or file (as opposed to a runtime failure such as a taken port).
    pub fn is_config(&self) -> bool {
        matches!(self, Error::File(_) | Error::Config(_))
    }
}

/// What the data path, the checks and the admin endpoint share.
pub(crate) struct Shared {
    pub(crate) config: ArcSwap<Config>,
    pub(crate) pool: Arc<pool::Pool>,
    pub(crate) admin: AdminState,
    pub(crate) tracker: TaskTracker,
    /// Cancelled when the drain runs out: every relay still open ends.
    pub(crate) cut: CancellationToken,
    pub(crate) next_conn: AtomicU64,
    pub(crate) listen: SocketAddr,
    /// The running checkers; cancelled and replaced on reload.
    checks: Mutex<CancellationToken>,
    /// The configured backends: all there is without learning, the seeds with it.
    pub(crate) seeds: Mutex<Vec<BackendConfig>>,
    /// What was learned from the cluster (see [`learn`]).
    pub(crate) learned: Mutex<learn::Learned>,
    /// Serialises changes of the backend list (reloads, learned changes).
    reconfigure: Mutex<()>,
    /// The serving threads, kept here after their accept loops end so that the connections on
    /// them run until the drain is over.
    workers: Mutex<Option<proxylab_core::runtime::ServingThreads>>,
}

/// A bound balancer, ready to [`serve`](HaBalancer::serve).
pub struct HaBalancer {
    shared: Arc<Shared>,
    /// One socket per serving thread (one when there are none), in one `SO_REUSEPORT` group.
    listeners: Vec<std::net::TcpListener>,
    admin: Option<TcpListener>,
    config_file: Option<PathBuf>,
    checker: check::Checker,
    /// The client of the EndpointSlice watch, when learning.
    learn_client: Option<proxylab_kube::RestClient>,
    /// `http` mode's TLS configurations (`None` in `tcp` mode).
    http: Option<Arc<http::HttpMode>>,
}

/// A cheap handle to observe and steer a running balancer (tests, the lab).
#[derive(Clone)]
pub struct HaBalancerHandle {
    shared: Arc<Shared>,
}

impl HaBalancer {
    /// Checks `config` and binds the listener and the admin endpoint. `config_file` (where the
    /// configuration came from) is followed for reloads; `admin` shares a hop log and metrics
    /// registry (the lab's), else a fresh one is made.
    pub async fn bind(
        mut config: Config,
        config_file: Option<PathBuf>,
        admin: Option<AdminState>,
    ) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;
        let seeds = config.backends.clone();
        let mut learned = learn::Learned::new(None, None);
        let mut learn_client = None;
        if let Some(l) = &config.learn {
            let opts = proxylab_kube::KubeconfigOptions {
                kubeconfig: Some(l.kubeconfig.clone()),
                ..Default::default()
            };
            let client = proxylab_kube::RestClient::new(&opts)
                .await
                .map_err(|e| Error::Config(format!("learn.kubeconfig: {e}")))?;
            learn_client = Some(client);
            // A damaged state file must not keep the balancer from starting during an outage:
            // the seeds are still there.
            let known = match &l.state_file {
                Some(path) => learn::load_state(path).unwrap_or_else(|e| {
                    tracing::warn!("{e}; starting from the configured backends");
                    None
                }),
                None => None,
            };
            learned = learn::Learned::new(l.state_file.clone(), known);
            config.backends = learn::effective(&seeds, learned.list.as_deref());
            if let Err(e) = config.validate() {
                tracing::warn!(
                    "the state file's backends cannot be used ({e}); starting from the configured ones"
                );
                config.backends = seeds.clone();
                learned = learn::Learned::new(l.state_file.clone(), None);
            }
        }
        let checker =
            check::Checker::new(&config.check).map_err(|e| Error::Config(e.to_string()))?;
        for w in config.warnings() {
            tracing::warn!("{w}");
        }
        // Client sockets inherit these from the listener.
        let opts = ListenOptions {
            nodelay: true,
            keepalive: Some(config.timeouts.keepalive),
            user_timeout: Some(config.timeouts.user_timeout),
            backlog: 4096,
            ..Default::default()
        };
        let bind_error = |source| Error::Bind {
            what: "listen address",
            source,
        };
        // First without SO_REUSEPORT: an address another balancer holds (even one of ours, which
        // sets SO_REUSEPORT) is refused instead of shared.
        let probe = bind_tcp(config.listen, opts).map_err(bind_error)?;
        let listen = probe.local_addr().unwrap_or(config.listen);
        drop(probe);
        let shared_opts = ListenOptions {
            reuse_port: true,
            ..opts
        };
        let mut listeners = Vec::new();
        for _ in 0..config.serving_threads.max(1) {
            let l = bind_tcp(listen, shared_opts).map_err(bind_error)?;
            listeners.push(l.into_std().map_err(bind_error)?);
        }
        let admin_listener = match config.admin {
            Some(a) => {
                Some(
                    bind_tcp(a, ListenOptions::default()).map_err(|source| Error::Bind {
                        what: "admin address",
                        source,
                    })?,
                )
            }
            None => None,
        };
        let admin = admin.unwrap_or_default();
        let http = match config.mode {
            Mode::Tcp => None,
            Mode::Http => Some(Arc::new(
                http::HttpMode::new(&config, admin.hops.clone()).map_err(Error::Config)?,
            )),
        };
        let pool = pool::Pool::new(&config, &admin.metrics, admin.ready.clone());
        let shared = Arc::new(Shared {
            config: ArcSwap::from_pointee(config),
            pool,
            admin,
            tracker: TaskTracker::new(),
            cut: CancellationToken::new(),
            next_conn: AtomicU64::new(0),
            listen,
            checks: Mutex::new(CancellationToken::new()),
            seeds: Mutex::new(seeds),
            learned: Mutex::new(learned),
            reconfigure: Mutex::new(()),
            workers: Mutex::new(None),
        });
        Ok(Self {
            shared,
            listeners,
            admin: admin_listener,
            config_file,
            checker,
            learn_client,
            http,
        })
    }

    /// The balancer's address and its admin endpoint's.
    pub fn local_addrs(&self) -> (SocketAddr, Option<SocketAddr>) {
        (
            self.shared.listen,
            self.admin.as_ref().and_then(|l| l.local_addr().ok()),
        )
    }

    pub fn handle(&self) -> HaBalancerHandle {
        HaBalancerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` is cancelled: checks, reloads, accepts and relays. Then stops
    /// accepting (the listener closes at once), lets established connections run for up to
    /// `timeouts.drain`, ends the rest and returns.
    pub async fn serve(self, shutdown: CancellationToken) {
        let HaBalancer {
            shared,
            listeners,
            admin,
            config_file,
            checker,
            learn_client,
            http,
        } = self;
        let admin_stop = CancellationToken::new();
        if let Some(l) = admin {
            let router = stats::router(shared.admin.clone(), shared.clone());
            let stop = admin_stop.clone();
            tokio::spawn(async move {
                let options = proxylab_core::serve::ServeOptions::admin();
                let served = proxylab_core::serve::serve_http_with(l, None, router, stop, options);
                if let Err(e) = served.await {
                    tracing::warn!(error = %e, "admin endpoint failed");
                }
            });
        }
        start_checks(&shared, checker);
        tokio::spawn(rebalance::run(shared.clone(), shutdown.clone()));
        if let Some(client) = learn_client {
            tokio::spawn(learn::run(shared.clone(), client, shutdown.clone()));
        }
        if let Some(path) = config_file {
            tokio::spawn(follow(shared.clone(), path, shutdown.clone()));
        }
        tracing::info!(listen = %shared.listen, backends = shared.pool.backends().len(), "ha-balancer serving");
        serve_listeners(&shared, listeners, http, &shutdown).await;
        // The listener is closed (dropped by the loop): new clients are refused at once and go
        // to another balancer; established ones finish.
        let drain = shared.config.load().timeouts.drain;
        let open = shared.tracker.len();
        shared.tracker.close();
        if open > 0 {
            tracing::info!(connections = open, drain = %proxylab_core::duration::format(drain), "draining");
        }
        if tokio::time::timeout(drain, shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                connections = shared.tracker.len(),
                "drain time is up; closing what is left"
            );
            shared.cut.cancel();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), shared.tracker.wait())
                .await;
        }
        shared.checks.lock().cancel();
        admin_stop.cancel();
        shared.workers.lock().take();
    }
}

/// Runs an accept loop per listener — each on a serving thread of its own (a single-threaded
/// runtime: a connection is accepted, dialled and relayed on one thread, with no hand-off between
/// cores; the kernel spreads new connections over the `SO_REUSEPORT` group), or, without serving
/// threads, the one listener on the caller's runtime — until `stop`.
async fn serve_listeners(
    shared: &Arc<Shared>,
    listeners: Vec<std::net::TcpListener>,
    http: Option<Arc<http::HttpMode>>,
    stop: &CancellationToken,
) {
    // One bound on open connections for all the loops together.
    let limit = Arc::new(tokio::sync::Semaphore::new(
        proxylab_core::serve::process_connection_limit(),
    ));
    let threads = shared.config.load().serving_threads;
    let workers = match threads {
        0 => None,
        n => match proxylab_core::runtime::ServingThreads::start(n, |i| format!("ha-balancer-{i}"))
        {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start serving threads; serving on the main runtime");
                None
            }
        },
    };
    let mut loops = Vec::new();
    for (i, std_listener) in listeners.into_iter().enumerate() {
        let (sh, limit, stop) = (shared.clone(), limit.clone(), stop.clone());
        let http = http.clone();
        let run = async move {
            // Registered with the reactor of the runtime that serves it.
            let l = match TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => return tracing::warn!(error = %e, "cannot serve a listener"),
            };
            match http {
                None => tcp::accept_loop(sh, l, limit, stop).await,
                // core's serving loop: TLS, HTTP/1.1 and HTTP/2, its limits and drain.
                Some(mode) => {
                    let options = http::serve_options(&sh.config.load());
                    let tls = Some(mode.server.clone());
                    let make = http::make_router(sh, mode);
                    let never = CancellationToken::new();
                    let served = proxylab_core::serve::serve_http_per_connection(
                        l, tls, make, stop, never, options,
                    );
                    if let Err(e) = served.await {
                        tracing::warn!(error = %e, "serving failed");
                    }
                }
            }
        };
        match workers.as_ref().and_then(|w| w.handles().get(i)) {
            Some(h) => loops.push(h.spawn(run)),
            None => loops.push(tokio::spawn(run)),
        }
    }
    for l in loops {
        let _ = l.await;
    }
    // The serving threads end with their runtimes when `workers` drops: only once every
    // connection they carry has ended (the caller drains first).
    *shared.workers.lock() = workers;
}

fn start_checks(shared: &Arc<Shared>, checker: check::Checker) {
    let token = CancellationToken::new();
    let old = std::mem::replace(&mut *shared.checks.lock(), token.clone());
    old.cancel();
    for b in shared.pool.backends().iter() {
        tokio::spawn(
            checker
                .clone()
                .run(shared.pool.clone(), b.clone(), token.clone()),
        );
    }
}

/// Follows the configuration file: on a change or SIGHUP, a good file replaces the running
/// configuration (backends, checks, algorithm, timeouts for new connections; established
/// connections are untouched), a bad one is refused with its reason and the old one kept.
async fn follow(shared: Arc<Shared>, path: PathBuf, stop: CancellationToken) {
    let mut follower = proxylab_core::reload::FileFollower::new(&path);
    loop {
        let trigger = tokio::select! {
            _ = stop.cancelled() => return,
            t = follower.next() => t,
        };
        tracing::info!(file = %path.display(), ?trigger, "reloading the configuration");
        match reload(&shared, &path) {
            Ok(()) => shared.pool.metrics.reload(true),
            Err(e) => {
                shared.pool.metrics.reload(false);
                tracing::error!("configuration refused, the running one is kept: {e}");
            }
        }
    }
}

fn reload(shared: &Arc<Shared>, path: &std::path::Path) -> Result<(), Error> {
    let mut next = config::load(path)?;
    let checker = check::Checker::new(&next.check).map_err(|e| Error::Config(e.to_string()))?;
    let _g = shared.reconfigure.lock();
    let cur = shared.config.load_full();
    if next.learn != cur.learn {
        tracing::warn!("learn changes take effect at the next start; the running setting is kept");
        next.learn = cur.learn.clone();
    }
    if next.learn.is_some() {
        // The file's backends are the seeds; what was learned still stands.
        *shared.seeds.lock() = next.backends.clone();
        let learned = shared.learned.lock().list.clone();
        next.backends = learn::effective(&next.backends, learned.as_deref());
        next.validate().map_err(Error::Config)?;
    }
    if next.listen != cur.listen
        || next.admin != cur.admin
        || next.mode != cur.mode
        || next.http != cur.http
    {
        tracing::warn!(
            "listen, admin, mode and http (certificate) changes take effect at the next start; the running ones are kept"
        );
        next.listen = cur.listen;
        next.admin = cur.admin;
        next.mode = cur.mode;
        next.http = cur.http.clone();
    }
    // Not a file setting: the process's.
    next.serving_threads = cur.serving_threads;
    for w in next.warnings() {
        tracing::warn!("{w}");
    }
    shared.pool.apply(&next);
    shared.config.store(Arc::new(next));
    start_checks(shared, checker);
    tracing::info!(
        backends = shared.pool.backends().len(),
        "configuration reloaded"
    );
    Ok(())
}

/// Balances over `learned` (with the seeds' names) from now on: backends that stay keep their
/// verdicts and connections, new ones are checked, removed ones get no new connection while those
/// they carry run on.
pub(crate) fn apply_backends(shared: &Arc<Shared>, learned: Option<&[BackendConfig]>) {
    let _g = shared.reconfigure.lock();
    let cur = shared.config.load_full();
    let backends = learn::effective(&shared.seeds.lock(), learned);
    if backends == cur.backends {
        return;
    }
    let mut next = (*cur).clone();
    next.backends = backends;
    if let Err(e) = next.validate() {
        tracing::warn!("the learned backends cannot be used ({e}); keeping the running ones");
        return;
    }
    let checker = match check::Checker::new(&next.check) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the checks; keeping the running backends");
            return;
        }
    };
    shared.pool.apply(&next);
    shared.config.store(Arc::new(next));
    start_checks(shared, checker);
    tracing::info!(
        backends = shared.pool.backends().len(),
        "backends updated from the cluster"
    );
}

impl HaBalancerHandle {
    /// What `/stats?format=json` shows.
    pub fn stats(&self) -> Stats {
        stats::collect(&self.shared)
    }

    /// The running configuration.
    pub fn config(&self) -> Arc<Config> {
        self.shared.config.load_full()
    }

    /// The hop log and metrics.
    pub fn admin(&self) -> AdminState {
        self.shared.admin.clone()
    }

    /// Connections open through the balancer now.
    pub fn open_connections(&self) -> usize {
        self.shared.tracker.len()
    }
}
