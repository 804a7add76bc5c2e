//! Running the server: startup (storage, the first signing key, the hourly purge) and the accept
//! loop, a hyper HTTP/1 server with bounds on request heads and a graceful shutdown. The public
//! listener serves the OAuth endpoints; the optional admin listener serves only the metrics.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::state::AppState;
use crate::{app, keyring, metrics, store, time};

/// Largest accepted request line plus headers; beyond it hyper answers 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most headers accepted in one request; beyond it hyper answers 431.
pub const MAX_HEADERS: usize = 64;
/// How long open connections may finish their requests after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often expired codes, sessions and refresh families are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);
/// Pause after a failed accept (out of file descriptors and the like) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Where the server accepts connections.
pub struct Listeners {
    /// The OAuth endpoints.
    pub public: TcpListener,
    /// `GET /metrics` only; none unless configured (`admin_listen`).
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds `listen`, and `admin_listen` when it is set.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let public = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let admin = match config.admin_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (admin_listen)"))?,
            ),
            None => None,
        };
        Ok(Listeners { public, admin })
    }
}

impl From<TcpListener> for Listeners {
    fn from(public: TcpListener) -> Self {
        Listeners {
            public,
            admin: None,
        }
    }
}

/// Opens storage, makes sure a signing key exists, and serves until `shutdown` resolves.
pub async fn serve(
    config: Config,
    listeners: impl Into<Listeners>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Listeners {
        public: listener,
        admin,
    } = listeners.into();
    let state = AppState::open(config).await?;
    let cfg = state.config.clone();
    let max_idle = state.config.registered_client_max_idle.as_secs() as i64;
    state
        .store
        .run(move |conn| {
            keyring::ensure_signing_key(conn, &cfg, time::now())?;
            purge(conn, max_idle)
        })
        .await?;
    let purge_store = state.store.clone();
    let purger = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        loop {
            tick.tick().await;
            if let Err(e) = purge_store.run(move |c| purge(c, max_idle)).await {
                tracing::warn!(error = %e, "purging expired rows failed");
            }
        }
    });
    tracing::info!(address = %listener.local_addr()?, issuer = %state.config.issuer, "listening");
    // A misconfigured identity provider is reported now, not at the first person's sign-in.
    let checker = state.clone();
    let provider_check =
        tokio::spawn(async move { checker.upstream.check_all(&checker.config).await });
    let header_read_timeout = state.config.header_read_timeout;
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_server = match admin {
        Some(admin) => {
            tracing::info!(address = %admin.local_addr()?, "serving metrics on the admin listener");
            Some(tokio::spawn(serve_connections(
                metrics::admin_router(state.metrics.clone()),
                admin,
                header_read_timeout,
                async {
                    let _ = admin_stopped.await;
                },
            )))
        }
        None => None,
    };
    let result =
        serve_connections(app::router(state), listener, header_read_timeout, shutdown).await;
    drop(stop_admin);
    if let Some(admin_server) = admin_server {
        admin_server.await??;
    }
    purger.abort();
    provider_check.abort();
    result
}

/// Deletes what has expired, and registered clients unused for longer than `max_idle_secs`.
fn purge(conn: &mut dyn crate::db::Conn, max_idle_secs: i64) -> Result<(), store::StoreError> {
    let now = time::now();
    store::purge_expired(conn, now)?;
    let purged = store::purge_unused_clients(conn, now, max_idle_secs)?;
    if purged > 0 {
        tracing::info!(
            clients = purged,
            "deleted registered clients unused for too long"
        );
    }
    Ok(())
}

/// The HTTP/1 connection settings that protect against slow or oversized request heads.
fn http1_builder(header_read_timeout: Duration) -> hyper::server::conn::http1::Builder {
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
    header_read_timeout: Duration,
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
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
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
