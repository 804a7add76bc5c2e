//! The router: every endpoint module's routes, merged, with the layers that apply across them
//! (CORS, body limits, the request timeout, request logging, panic recovery).

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Request, StatusCode, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;
use crate::{authorize, jwks, metadata, register, revoke, token};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long browsers may cache a CORS preflight answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(600);

pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    // Endpoints that browser-based clients call from their own origin get CORS; the
    // authorization endpoint never does, so no other origin can read its pages or drive its
    // forms.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .max_age(CORS_MAX_AGE);
    let cors_routes = Router::new()
        .merge(metadata::routes(&config))
        .merge(token::routes(&config))
        .merge(register::routes(&config))
        .merge(revoke::routes(&config))
        .merge(jwks::routes(&config))
        .layer(cors);
    Router::new()
        .merge(cors_routes)
        .merge(authorize::routes(&config))
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        // Log method and path only: queries and bodies may carry codes, tokens or secrets.
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(CatchPanicLayer::new())
}
