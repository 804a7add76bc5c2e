//! Router, shared state, middleware and the server loop.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::cimd::Fetcher;
use crate::config::Config;
use crate::error::OAuthError;
use crate::keyring::{self, KeyRing};
use crate::password_check::{MAX_CONCURRENT_CHECKS, PasswordChecker};
use crate::ratelimit::RateLimiter;
use crate::store::{self, Store};
use crate::{authorize, metadata, register, revoke, time, token};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted request line plus headers; beyond it hyper answers 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most headers accepted in one request; beyond it hyper answers 431.
pub const MAX_HEADERS: usize = 64;
/// How long open connections may finish their requests after shutdown begins.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub keyring: KeyRing,
    pub fetcher: Arc<Fetcher>,
    pub registration_limiter: Arc<RateLimiter>,
    pub login_limiter: Arc<RateLimiter>,
    /// Verified against for unknown usernames (same cost as the configured hashes).
    pub dummy_password_hash: Arc<String>,
    /// Bounds concurrent argon2 verifications (logins and static client secrets).
    pub password_checker: PasswordChecker,
}

impl AppState {
    pub fn open(config: Config) -> anyhow::Result<Self> {
        let store = Store::open(&config.storage_path)?;
        let dummy =
            crate::secrets::dummy_hash_like(crate::secrets::costliest_hash(config.users.values()))
                .map_err(|e| {
                    store::StoreError::Worker(format!("cannot prepare the login check: {e}"))
                })?;
        let config = Arc::new(config);
        Ok(AppState {
            keyring: KeyRing::new(store.clone(), &config),
            fetcher: Arc::new(Fetcher::new(
                config.allow_insecure_localhost_client_metadata,
                config.client_metadata_fetch_timeout,
            )),
            registration_limiter: Arc::new(RateLimiter::new(
                config.registration.rate_limit_per_minute,
            )),
            login_limiter: Arc::new(RateLimiter::new(config.login_failures_per_minute)),
            dummy_password_hash: Arc::new(dummy),
            password_checker: PasswordChecker::new(MAX_CONCURRENT_CHECKS),
            store,
            config,
        })
    }
}

async fn metadata_handler(State(state): State<AppState>) -> Response {
    let mut response = Json(metadata::document(&state.config)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

async fn jwks_handler(State(state): State<AppState>) -> Result<Response, OAuthError> {
    let jwks = state.keyring.jwks(time::now()).await?;
    let mut response = Json(jwks).into_response();
    // Short caching so a rotation is seen quickly; verifiers refetch on unknown kid anyway.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    Ok(response)
}

pub fn router(state: AppState) -> Router {
    let prefix = state.config.issuer_path.clone();
    // A14: CORS on metadata, token, registration, JWKS and revocation; never on /authorize.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .max_age(std::time::Duration::from_secs(600));
    let mut cors_routes = Router::new()
        .route(
            &format!("/.well-known/oauth-authorization-server{prefix}"),
            get(metadata_handler),
        )
        .route(
            &format!("/.well-known/openid-configuration{prefix}"),
            get(metadata_handler),
        )
        .route(&format!("{prefix}/token"), post(token::handler))
        .route(&format!("{prefix}/register"), post(register::handler))
        .route(&format!("{prefix}/revoke"), post(revoke::handler))
        .route(&format!("{prefix}/jwks.json"), get(jwks_handler));
    if !prefix.is_empty() {
        // OpenID Connect Discovery appends the well-known suffix to the issuer.
        cors_routes = cors_routes.route(
            &format!("{prefix}/.well-known/openid-configuration"),
            get(metadata_handler),
        );
    }
    let cors_routes = cors_routes.layer(cors);
    let authorize_routes = Router::new().route(
        &format!("{prefix}/authorize"),
        get(authorize::get_handler).post(authorize::post_handler),
    );
    let timeout = state.config.request_timeout;
    Router::new()
        .merge(cors_routes)
        .merge(authorize_routes)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        // Log method and path only: queries and bodies may carry codes, tokens or secrets.
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(CatchPanicLayer::new())
}

/// Opens storage, makes sure a signing key exists, and serves until `shutdown` resolves.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::open(config)?;
    let cfg = state.config.clone();
    state
        .store
        .run(move |conn| {
            keyring::ensure_signing_key(conn, &cfg, time::now())?;
            store::purge_expired(conn, time::now())
        })
        .await?;
    let purge_store = state.store.clone();
    let purger = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            if let Err(e) = purge_store
                .run(|c| store::purge_expired(c, time::now()))
                .await
            {
                tracing::warn!(error = %e, "purging expired rows failed");
            }
        }
    });
    tracing::info!(address = %listener.local_addr()?, issuer = %state.config.issuer, "listening");
    let header_read_timeout = state.config.header_read_timeout;
    let result = serve_connections(router(state), listener, header_read_timeout, shutdown).await;
    purger.abort();
    result
}

/// The HTTP/1 connection settings that protect against slow or oversized request heads.
fn http1_builder(header_read_timeout: std::time::Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    builder
}

/// Accepts connections until `shutdown` resolves, then lets open ones finish (bounded).
/// Each request carries the peer address as axum `ConnectInfo`.
async fn serve_connections(
    app: Router,
    listener: TcpListener,
    header_read_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let builder = http1_builder(header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                tower::ServiceExt::oneshot(app.clone(), request)
            });
        let connection =
            graceful.watch(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Header timeouts, oversized heads and resets end here; nothing secret is in `e`.
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
    Ok(())
}
