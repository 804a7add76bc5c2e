//! Token revocation (RFC 7009). Revoking a refresh token revokes its whole family. Access tokens
//! are self-contained JWTs: revoking one is accepted (200) but it stays valid at resource
//! servers until it expires.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::{ErrorCode, OAuthError};
use crate::params::Params;
use crate::store::{self, RevokeOutcome};
use crate::{clients, secrets, time, token};

pub async fn handler(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(()) => {
            let mut r = StatusCode::OK.into_response();
            r.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
    token::require_form(headers)?;
    let params = Params::parse(body);
    let presented = params
        .single("token")
        .map_err(OAuthError::invalid_request)?
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?
        .to_string();
    let client_id = clients::authenticate(state, headers, &params).await?;
    let hash = secrets::token_hash(&presented);
    let id = client_id.clone();
    let outcome = state
        .store
        .run(move |conn| store::revoke_refresh(conn, &hash, &id, time::now()))
        .await?;
    match outcome {
        RevokeOutcome::Revoked => {
            tracing::info!(client_id = %client_id, "refresh token family revoked");
            Ok(())
        }
        RevokeOutcome::OtherClient => Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the token was issued to another client",
        )),
        // Unknown tokens and access tokens: 200 with no effect (RFC 7009 §2.2).
        RevokeOutcome::NotFound => Ok(()),
    }
}
