//! Dynamic client registration (RFC 7591), with strict redirect URI validation, size limits
//! and a per-address rate limit. Generated secrets are stored as SHA-256 hashes.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use crate::client_address::{ClientAddress, rate_key};
use crate::client_metadata::{self, Refused};
use crate::config::{Config, Resource};
use crate::error::{ErrorCode, OAuthError};
use crate::oauth::{ApplicationType, AuthMethod, GrantType};
use crate::params::has_content_type;
use crate::redirect_uri::PrivateUseSchemes;
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

/// The members this server reads; every other member is ignored (RFC 7591 §2).
#[derive(Deserialize)]
struct Request {
    redirect_uris: Option<Vec<String>>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    application_type: Option<String>,
    scope: Option<String>,
}

fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

impl From<Refused> for OAuthError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::RedirectUri(d) => OAuthError::new(ErrorCode::InvalidRedirectUri, d),
            Refused::Metadata(d) => metadata_error(d),
        }
    }
}

/// A validated registration request: what takes effect.
struct Accepted {
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    method: AuthMethod,
    grant_types: Vec<GrantType>,
    response_types: Vec<&'static str>,
    application_type: ApplicationType,
    scope: Option<String>,
}

/// Validates a registration request into the client to store (without id and secret), under
/// the operator's private-use scheme `policy` and the configured `resources` (for `scope`).
fn validate(
    body: &[u8],
    policy: &PrivateUseSchemes,
    resources: &[Resource],
) -> Result<Accepted, OAuthError> {
    if body.len() > MAX_REGISTRATION_BYTES {
        return Err(metadata_error(format!(
            "registration request larger than {MAX_REGISTRATION_BYTES} bytes"
        )));
    }
    let req: Request = serde_json::from_slice(body)
        .map_err(|e| metadata_error(format!("the body is not valid client metadata JSON: {e}")))?;
    let uris = req.redirect_uris.unwrap_or_default();
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            format!("at most {MAX_REDIRECT_URIS} redirect URIs"),
        ));
    }
    let application_type =
        client_metadata::redirect_uris(&uris, req.application_type.as_deref(), policy)?;
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
    let grant_types = client_metadata::grant_types(req.grant_types.as_deref())?;
    let response_types = client_metadata::response_types(req.response_types.as_deref())?;
    Ok(Accepted {
        redirect_uris: uris,
        client_name: req.client_name,
        method,
        grant_types,
        response_types,
        application_type,
        scope: client_metadata::scope(req.scope.as_deref(), resources),
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
    peer: ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Registered, OAuthError> {
    if !state
        .registration_limiter
        .allow(rate_key(peer.ip()))
        .await?
    {
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
        response_types,
        application_type,
        scope,
    } = validate(
        &body,
        &state.config.private_use_redirect_schemes,
        &state.config.resources,
    )?;
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
        application_type,
        scope: scope.clone(),
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
        application_type.as_str(),
        &redirect_uris
            .iter()
            .map(|u| redirect_uri::without_query(u))
            .collect::<Vec<_>>()
            .join(" "),
        peer.ip(),
    );
    let mut body = serde_json::json!({
        "client_id": client_id,
        "client_id_issued_at": now,
        "redirect_uris": redirect_uris,
        "grant_types": grant_types,
        "response_types": response_types,
        "token_endpoint_auth_method": method.as_str(),
        "application_type": application_type.as_str(),
    });
    if let Some(obj) = body.as_object_mut() {
        if let Some(scope) = scope {
            obj.insert("scope".into(), serde_json::Value::String(scope));
        }
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

    fn resources() -> Vec<Resource> {
        vec![Resource {
            url: "http://localhost:10000/mcp".into(),
            scopes: vec!["mcp:tools".into(), "mcp:admin".into()],
            default_scopes: vec!["mcp:tools".into()],
        }]
    }

    fn accept(body: &str) -> Result<Accepted, OAuthError> {
        validate(body.as_bytes(), &PrivateUseSchemes::Any, &resources())
    }

    fn code_of(body: &str) -> &'static str {
        match accept(body) {
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
            code_of(r#"{"redirect_uris":["https://a.example/cb"],"response_types":["token"]}"#),
            "invalid_client_metadata"
        );
        assert_eq!(
            code_of(r#"{"redirect_uris":["https://a.example/cb"],"application_type":"desktop"}"#),
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
        let refused = accept(body).err().unwrap();
        assert_eq!(refused.code.as_str(), "invalid_client_metadata");
        assert!(
            refused.description.contains("client_name"),
            "{}",
            refused.description
        );
        let plain = r#"{"redirect_uris":["https://a.example/cb"],"client_name":"Good App"}"#;
        assert_eq!(code_of(plain), "ok");
    }

    #[test]
    fn what_real_clients_register_takes_effect_without_what_is_not_served() {
        // Cursor: a private-use, an https and a loopback redirect URI in one registration.
        let cursor = accept(
            r#"{"client_name":"Cursor","redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback",
            "https://cursor.com/oauth/callback","http://127.0.0.1:41234/callback"],
            "token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],
            "response_types":["code"]}"#,
        )
        .unwrap();
        assert_eq!(cursor.application_type, ApplicationType::Native);
        assert_eq!(cursor.redirect_uris.len(), 3);
        // VS Code: the device-code grant is dropped, unknown members are ignored.
        let vscode = accept(
            r#"{"client_name":"Visual Studio Code","redirect_uris":["http://127.0.0.1:33418/","https://vscode.dev/redirect"],
            "grant_types":["authorization_code","refresh_token","urn:ietf:params:oauth:grant-type:device_code"],
            "response_types":["code","token"],"token_endpoint_auth_method":"none","software_id":"x",
            "logo_uri":"https://example.com/x.png","scope":"openid mcp:tools offline_access"}"#,
        )
        .unwrap();
        assert_eq!(
            vscode.grant_types,
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert_eq!(vscode.response_types, vec!["code"]);
        assert_eq!(vscode.scope.as_deref(), Some("mcp:tools"));
        // A declared web client may not register loopback or app URIs.
        let refused =
            accept(r#"{"application_type":"web","redirect_uris":["http://127.0.0.1:3000/cb"]}"#)
                .err()
                .unwrap();
        assert_eq!(refused.code.as_str(), "invalid_redirect_uri");
        // A dangerous scheme is named.
        let refused = accept(r#"{"redirect_uris":["data:text/html,x"]}"#)
            .err()
            .unwrap();
        assert!(
            refused.description.contains("scheme `data`"),
            "{}",
            refused.description
        );
    }

    #[test]
    fn the_operator_policy_applies_to_registration() {
        let body = br#"{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback"]}"#;
        let refused = validate(body, &PrivateUseSchemes::None, &resources())
            .err()
            .unwrap();
        assert_eq!(refused.code.as_str(), "invalid_redirect_uri");
        assert!(refused.description.contains("scheme `cursor`"));
        let only = PrivateUseSchemes::Only(vec!["cursor".into()]);
        assert!(validate(body, &only, &resources()).is_ok());
    }
}
