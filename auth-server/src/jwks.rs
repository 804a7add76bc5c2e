//! The public signing keys (`/jwks.json`), read from the key table on every request so that a
//! rotation shows without a restart.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::config::Config;
use crate::error::OAuthError;
use crate::state::AppState;
use crate::time;

pub fn routes(config: &Config) -> Router<AppState> {
    Router::new().route(&format!("{}/jwks.json", config.issuer_path), get(serve))
}

async fn serve(State(state): State<AppState>) -> Result<Response, OAuthError> {
    let jwks = state.keyring.jwks(time::now()).await?;
    let mut response = Json(jwks).into_response();
    // Short caching so a rotation is seen quickly; verifiers refetch on unknown kid anyway.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    Ok(response)
}
