//! The state every handler of one [`crate::BoundApiServer`] shares (all its listeners).

use std::sync::Arc;
use std::time::Duration;

use proxylab_store::Store;
use tokio_util::sync::CancellationToken;

use crate::allocator::ServiceAllocator;
use crate::auth::Authenticator;
use crate::metrics::ApiMetrics;

pub(crate) struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    pub alloc: ServiceAllocator,
    pub max_body: usize,
    pub bookmark_interval: Duration,
    pub default_watch_timeout: Duration,
    /// Signs TokenRequest tokens (`None`: the API is off).
    pub sa_signing_key: Option<Vec<u8>>,
    pub sa_issuer: String,
    pub metrics: ApiMetrics,
    /// Cancelled when shutdown begins: ends watches, fails `/readyz`.
    pub shutdown: CancellationToken,
}
