//! The router: every endpoint module's routes, merged, with the layers that apply across them
//! (CORS, body limits, the request timeout, request logging, panic recovery).

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{Method, Request, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::ErrorCode;
use crate::state::AppState;
use crate::{account, authorize, jwks, metadata, pages, register, revoke, token, upstream};

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
        .merge(upstream::routes(&config))
        .merge(account::routes(&config))
        .with_state(state.clone())
        // Every page, error pages included, carries the operator's name and logo.
        .layer(middleware::from_fn_with_state(state.clone(), pages::brand))
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
        // Outermost, so timeouts, oversized bodies and panics are counted too.
        .layer(middleware::from_fn_with_state(state, count_request))
}

/// Counts every answered request with its endpoint, status, OAuth error code and duration.
async fn count_request(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let endpoint = endpoint_name(
        &state.config.issuer_path,
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let started = Instant::now();
    let response = next.run(request).await;
    let error = response.extensions().get::<ErrorCode>().map(|c| c.as_str());
    state.metrics.request(
        endpoint,
        response.status().as_u16(),
        error,
        started.elapsed(),
    );
    response
}

/// The metrics label of a matched route (`unmatched` when no route matched).
fn endpoint_name(issuer_path: &str, matched: Option<&str>) -> &'static str {
    let Some(path) = matched else {
        return "unmatched";
    };
    match path.strip_prefix(issuer_path) {
        Some("/authorize") => "authorize",
        Some("/token") => "token",
        Some("/register") => "register",
        Some("/revoke") => "revoke",
        Some("/jwks.json") => "jwks",
        Some("/account" | "/account/revoke" | "/account/sign-out") => "account",
        _ if path.contains("/.well-known/") => "metadata",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint_name;

    #[test]
    fn the_connected_apps_pages_have_their_own_metrics_label() {
        for path in ["/as/account", "/as/account/revoke", "/as/account/sign-out"] {
            assert_eq!(endpoint_name("/as", Some(path)), "account", "{path}");
        }
        assert_eq!(
            endpoint_name("/as", Some("/as/upstream/{provider}/callback")),
            "other"
        );
        assert_eq!(endpoint_name("", None), "unmatched");
    }
}
