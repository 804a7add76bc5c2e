//! Token revocation (RFC 7009). Revoking a refresh token revokes its whole family. Access tokens
//! are self-contained JWTs: revoking one is accepted (200) but it stays valid at resource
//! servers until it expires.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::client_address::ClientAddress;
use crate::config::Config;
use crate::error::{ErrorCode, OAuthError};
use crate::form::OAuthForm;
use crate::state::AppState;
use crate::store::{self, RevokeOutcome};
use crate::{audit, secrets, time};

pub fn routes(config: &Config) -> Router<AppState> {
    Router::new().route(&format!("{}/revoke", config.issuer_path), post(revoke))
}

/// The answer to every accepted revocation, whether or not the token was known: 200, not cached.
struct Revoked;

impl IntoResponse for Revoked {
    fn into_response(self) -> Response {
        let mut response = StatusCode::OK.into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

async fn revoke(
    State(state): State<AppState>,
    peer: ClientAddress,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Result<Revoked, OAuthError> {
    let presented = params
        .single("token")
        .map_err(OAuthError::invalid_request)?
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?
        .to_string();
    let client_id = state
        .clients()
        .authenticate(&headers, &params, peer.ip())
        .await?;
    let hash = secrets::token_hash(&presented);
    let id = client_id.clone();
    let outcome = state
        .store
        .run(move |conn| store::revoke_refresh(conn, &hash, &id, time::now()))
        .await?;
    match outcome {
        RevokeOutcome::Revoked(family) => {
            audit::refresh_family_revoked(&client_id, &family.username, &family.resource);
            Ok(Revoked)
        }
        RevokeOutcome::OtherClient => Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the token was issued to another client",
        )),
        // Unknown tokens and access tokens: 200 with no effect (RFC 7009 §2.2).
        RevokeOutcome::NotFound => Ok(Revoked),
    }
}
