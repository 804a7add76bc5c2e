//! The state every handler shares: configuration, storage, signing keys, the metadata document
//! fetcher, the per-address limits and the bound on password checks.

use std::sync::Arc;

use crate::cimd::Fetcher;
use crate::clients::{AuthFailureLimits, Clients};
use crate::config::Config;
use crate::keyring::KeyRing;
use crate::metrics::Metrics;
use crate::password_check::{
    MAX_CONCURRENT_CHECKS, MAX_CONCURRENT_CLIENT_SECRET_CHECKS, PasswordChecker,
};
use crate::ratelimit::RateLimiter;
use crate::secrets;
use crate::store::{Location, Store, StoreError};
use crate::upstream::Upstream;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub keyring: KeyRing,
    pub fetcher: Arc<Fetcher>,
    pub registration_limiter: Arc<RateLimiter>,
    pub login_limiter: Arc<RateLimiter>,
    /// Failed client authentications at `/token` and `/revoke`, per address and per client.
    pub client_auth_failures: Arc<AuthFailureLimits>,
    /// Verified against for unknown usernames (same cost as the configured hashes).
    pub dummy_password_hash: Arc<String>,
    /// Bounds concurrent argon2 verifications (logins and static client secrets).
    pub password_checker: PasswordChecker,
    /// Served on the admin listener only.
    pub metrics: Arc<Metrics>,
    /// Upstream identity providers: the HTTP client and their discovered metadata.
    pub upstream: Arc<Upstream>,
}

impl AppState {
    /// Opens the database (applying pending schema migrations) and prepares what the handlers
    /// share.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let location = Location::of(&config);
        let errors = metrics.database_errors();
        // Both drivers block: connecting and migrating run off the async threads.
        let store =
            tokio::task::spawn_blocking(move || Store::connect(&location, errors, true)).await??;
        let dummy = secrets::dummy_hash_like(secrets::costliest_hash(config.users.values()))
            .map_err(|e| StoreError::Worker(format!("cannot prepare the login check: {e}")))?;
        let config = Arc::new(config);
        Ok(AppState {
            keyring: KeyRing::new(store.clone(), &config),
            fetcher: Arc::new(
                Fetcher::new(
                    config.allow_insecure_localhost_client_metadata,
                    config.client_metadata_fetch_timeout,
                )
                .with_failure_cache(config.client_metadata_failure_cache),
            ),
            registration_limiter: Arc::new(RateLimiter::new(
                config.registration.rate_limit_per_minute,
            )),
            login_limiter: Arc::new(RateLimiter::new(config.login_failures_per_minute)),
            client_auth_failures: Arc::new(AuthFailureLimits::new(
                config.client_auth_failures_per_minute,
                config.client_auth_failures_per_client_per_minute,
            )),
            dummy_password_hash: Arc::new(dummy),
            password_checker: PasswordChecker::new(
                MAX_CONCURRENT_CHECKS,
                MAX_CONCURRENT_CLIENT_SECRET_CHECKS,
            ),
            metrics,
            upstream: Arc::new(
                Upstream::new().map_err(|e| {
                    StoreError::Worker(format!("cannot prepare the HTTP client: {e}"))
                })?,
            ),
            store,
            config,
        })
    }

    /// The client sources and the means to check client credentials.
    pub fn clients(&self) -> Clients<'_> {
        Clients {
            config: &self.config,
            store: &self.store,
            fetcher: &self.fetcher,
            password_checker: &self.password_checker,
            auth_failures: &self.client_auth_failures,
            metrics: &self.metrics,
        }
    }
}
