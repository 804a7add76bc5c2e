//! Dynamic client registration (RFC 7591), with strict redirect URI validation, size limits
//! and a per-address rate limit. Generated secrets are stored as SHA-256 hashes.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use crate::config::Config;
use crate::error::{ErrorCode, OAuthError};
use crate::oauth::{AuthMethod, GrantType, RESPONSE_TYPE_CODE};
use crate::params::has_content_type;
use crate::state::AppState;
use crate::store::{self, RegisteredClient};
use crate::{audit, clients, ratelimit, redirect_uri, secrets, time};

/// `/register` while registration is enabled; otherwise the path answers 404.
pub fn routes(config: &Config) -> Router<AppState> {
    let path = format!("{}/register", config.issuer_path);
    if config.registration.enabled {
        Router::new().route(&path, post(register))
    } else {
        Router::new().route(&path, post(|| async { StatusCode::NOT_FOUND }))
    }
}

pub const MAX_REGISTRATION_BYTES: usize = 16 * 1024;
const MAX_REDIRECT_URIS: usize = 10;
const MAX_CLIENT_NAME_CHARS: usize = 200;

#[derive(Deserialize)]
struct Request {
    redirect_uris: Option<Vec<String>>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
}

fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

/// A validated registration request.
struct Accepted {
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    method: AuthMethod,
    grant_types: Vec<GrantType>,
}

/// Validates a registration request into the client to store (without id and secret).
fn validate(body: &[u8]) -> Result<Accepted, OAuthError> {
    if body.len() > MAX_REGISTRATION_BYTES {
        return Err(metadata_error(format!(
            "registration request larger than {MAX_REGISTRATION_BYTES} bytes"
        )));
    }
    let req: Request = serde_json::from_slice(body)
        .map_err(|e| metadata_error(format!("the body is not valid client metadata JSON: {e}")))?;
    let uris = req.redirect_uris.unwrap_or_default();
    if uris.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            "redirect_uris is required",
        ));
    }
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            format!("at most {MAX_REDIRECT_URIS} redirect URIs"),
        ));
    }
    for uri in &uris {
        redirect_uri::validate_registered(uri)
            .map_err(|e| OAuthError::new(ErrorCode::InvalidRedirectUri, format!("`{uri}`: {e}")))?;
    }
    if let Some(name) = &req.client_name
        && (name.chars().count() > MAX_CLIENT_NAME_CHARS || name.chars().any(char::is_control))
    {
        return Err(metadata_error(format!(
            "client_name must be at most {MAX_CLIENT_NAME_CHARS} characters without control characters"
        )));
    }
    if let Some(name) = &req.client_name {
        clients::check_client_name(name).map_err(metadata_error)?;
    }
    // RFC 7591 §2: the default is client_secret_basic.
    let method_name = req
        .token_endpoint_auth_method
        .as_deref()
        .unwrap_or("client_secret_basic");
    let method = AuthMethod::parse(method_name).ok_or_else(|| {
        metadata_error(format!(
            "token_endpoint_auth_method `{method_name}` is not supported"
        ))
    })?;
    // Registered clients keep no keys: a client with its own keys publishes them in a client
    // ID metadata document (what the clients that use private_key_jwt do) or is configured.
    if method == AuthMethod::PrivateKeyJwt {
        return Err(metadata_error(
            "token_endpoint_auth_method `private_key_jwt` is accepted from client ID metadata \
             documents and configured clients, not at dynamic registration; use a metadata \
             document (client_id = its https URL) with jwks_uri or jwks",
        ));
    }
    let grant_types = match req.grant_types {
        None => vec![GrantType::AuthorizationCode],
        Some(names) if names.is_empty() => {
            return Err(metadata_error("grant_types must not be empty"));
        }
        Some(names) => names
            .iter()
            .map(|g| {
                GrantType::parse(g)
                    .ok_or_else(|| metadata_error(format!("grant type `{g}` is not supported")))
            })
            .collect::<Result<_, _>>()?,
    };
    if let Some(rt) = req.response_types
        && rt.iter().any(|t| t != RESPONSE_TYPE_CODE)
    {
        return Err(metadata_error("only the `code` response type is supported"));
    }
    Ok(Accepted {
        redirect_uris: uris,
        client_name: req.client_name,
        method,
        grant_types,
    })
}

/// A registered client's metadata, answered with 201 and never cached.
struct Registered(serde_json::Value);

impl IntoResponse for Registered {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::CREATED, axum::Json(self.0)).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Registered, OAuthError> {
    if !state.registration_limiter.allow(peer.ip(), Instant::now()) {
        return Err(OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "too many registrations from this address; try again in a minute",
        )
        .with_retry_after(ratelimit::WINDOW.as_secs()));
    }
    if !has_content_type(&headers, "application/json") {
        return Err(OAuthError::invalid_request(
            "the body must be application/json",
        ));
    }
    let Accepted {
        redirect_uris,
        client_name,
        method,
        grant_types,
    } = validate(&body)?;
    let client_id = secrets::random_token()?;
    let secret = match method {
        AuthMethod::None => None,
        _ => Some(secrets::random_token()?),
    };
    let client = RegisteredClient {
        client_id: client_id.clone(),
        client_name: client_name.clone(),
        redirect_uris: redirect_uris.clone(),
        secret_hash: secret.as_deref().map(secrets::token_hash),
        auth_method: method,
        allows_authorization_code: grant_types.contains(&GrantType::AuthorizationCode),
        allows_refresh: grant_types.contains(&GrantType::RefreshToken),
    };
    let now = time::now();
    state
        .store
        .run(move |conn| store::insert_client(conn, &client, now))
        .await?;
    let grant_types: Vec<&str> = grant_types.iter().map(|g| g.as_str()).collect();
    audit::client_registered(
        &client_id,
        method.as_str(),
        &grant_types.join(" "),
        peer.ip(),
    );
    let mut body = serde_json::json!({
        "client_id": client_id,
        "client_id_issued_at": now,
        "redirect_uris": redirect_uris,
        "grant_types": grant_types,
        "response_types": [RESPONSE_TYPE_CODE],
        "token_endpoint_auth_method": method.as_str(),
    });
    if let Some(obj) = body.as_object_mut() {
        if let Some(name) = client_name {
            obj.insert("client_name".into(), serde_json::Value::String(name));
        }
        if let Some(s) = secret {
            obj.insert("client_secret".into(), serde_json::Value::String(s));
            obj.insert("client_secret_expires_at".into(), serde_json::json!(0));
        }
    }
    Ok(Registered(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(body: &str) -> &'static str {
        match validate(body.as_bytes()) {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        }
    }

    #[test]
    fn registration_validation() {
        assert_eq!(
            code_of(
                r#"{"redirect_uris":["http://127.0.0.1:3000/cb"],"token_endpoint_auth_method":"none"}"#
            ),
            "ok"
        );
        assert_eq!(code_of(r#"{"redirect_uris":[]}"#), "invalid_redirect_uri");
        assert_eq!(
            code_of(r#"{"redirect_uris":["javascript:alert(1)"]}"#),
            "invalid_redirect_uri"
        );
        assert_eq!(
            code_of(r#"{"redirect_uris":["https://a.example/cb#f"]}"#),
            "invalid_redirect_uri"
        );
        assert_eq!(
            code_of(r#"{"redirect_uris":["https://u@a.example/cb"]}"#),
            "invalid_redirect_uri"
        );
        assert_eq!(
            code_of(
                r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}"#
            ),
            "invalid_client_metadata"
        );
        assert_eq!(
            code_of(r#"{"redirect_uris":["https://a.example/cb"],"grant_types":["password"]}"#),
            "invalid_client_metadata"
        );
        assert_eq!(
            code_of(r#"{"redirect_uris":"https://a.example/cb"}"#),
            "invalid_client_metadata"
        );
        assert_eq!(code_of("not json"), "invalid_client_metadata");
    }

    #[test]
    fn client_names_that_disguise_themselves_are_refused_naming_the_field() {
        let body = r#"{"redirect_uris":["https://a.example/cb"],"client_name":"Good\u202eevil"}"#;
        let refused = validate(body.as_bytes()).err().unwrap();
        assert_eq!(refused.code.as_str(), "invalid_client_metadata");
        assert!(
            refused.description.contains("client_name"),
            "{}",
            refused.description
        );
        let plain = r#"{"redirect_uris":["https://a.example/cb"],"client_name":"Good App"}"#;
        assert_eq!(code_of(plain), "ok");
    }
}
