//! Discovery documents (RFC 8414 and OpenID Connect Discovery).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::client_assertion;
use crate::config::Config;
use crate::oauth::{AuthMethod, GrantType, RESPONSE_TYPE_CODE};
use crate::state::AppState;

/// The metadata at its RFC 8414 path (path-inserted when the issuer has a path) and at the
/// OpenID Connect Discovery paths.
pub fn routes(config: &Config) -> Router<AppState> {
    let prefix = &config.issuer_path;
    let router = Router::new()
        .route(
            &format!("/.well-known/oauth-authorization-server{prefix}"),
            get(serve),
        )
        .route(
            &format!("/.well-known/openid-configuration{prefix}"),
            get(serve),
        );
    if prefix.is_empty() {
        return router;
    }
    // OpenID Connect Discovery appends the well-known suffix to the issuer.
    router.route(
        &format!("{prefix}/.well-known/openid-configuration"),
        get(serve),
    )
}

async fn serve(State(state): State<AppState>) -> Response {
    let mut response = Json(document(&state.config)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

/// The authorization server metadata document; also served as the OpenID configuration.
pub fn document(config: &Config) -> Value {
    let mut scopes: Vec<&str> = Vec::new();
    for r in &config.resources {
        for s in &r.scopes {
            if !scopes.contains(&s.as_str()) {
                scopes.push(s);
            }
        }
    }
    let auth_methods = AuthMethod::ALL.map(AuthMethod::as_str);
    let mut doc = json!({
        "issuer": config.issuer,
        "authorization_endpoint": config.endpoint("/authorize"),
        "token_endpoint": config.endpoint("/token"),
        "revocation_endpoint": config.endpoint("/revoke"),
        "jwks_uri": config.endpoint("/jwks.json"),
        "response_types_supported": [RESPONSE_TYPE_CODE],
        "response_modes_supported": ["query"],
        "grant_types_supported": GrantType::ALL.map(GrantType::as_str),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        // For private_key_jwt (RFC 8414 §2): the algorithms a client assertion may use.
        "token_endpoint_auth_signing_alg_values_supported": client_assertion::SIGNING_ALGS,
        "revocation_endpoint_auth_signing_alg_values_supported": client_assertion::SIGNING_ALGS,
        "scopes_supported": scopes,
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [config.signing_algorithm.jwa_name()],
    });
    if config.registration.enabled
        && let Some(obj) = doc.as_object_mut()
    {
        obj.insert(
            "registration_endpoint".into(),
            json!(config.endpoint("/register")),
        );
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_names_every_endpoint_under_the_issuer() {
        let config = crate::config::parse(
            "issuer = \"https://as.example.com/tenant\"\n[[resources]]\nurl = \"https://r.example/mcp\"\nscopes = [\"a\", \"b\"]\n",
            std::path::Path::new("."),
            Vec::new(),
        )
        .unwrap();
        let doc = document(&config);
        assert_eq!(doc["issuer"], "https://as.example.com/tenant");
        assert_eq!(
            doc["authorization_endpoint"],
            "https://as.example.com/tenant/authorize"
        );
        assert_eq!(doc["jwks_uri"], "https://as.example.com/tenant/jwks.json");
        assert_eq!(
            doc["registration_endpoint"],
            "https://as.example.com/tenant/register"
        );
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(
            doc["grant_types_supported"],
            json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            json!([
                "none",
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt"
            ])
        );
        assert_eq!(
            doc["token_endpoint_auth_signing_alg_values_supported"],
            json!(["RS256", "PS256", "ES256", "EdDSA"])
        );
        assert_eq!(
            doc["revocation_endpoint_auth_signing_alg_values_supported"],
            doc["token_endpoint_auth_signing_alg_values_supported"]
        );
        assert_eq!(
            doc["revocation_endpoint_auth_methods_supported"],
            doc["token_endpoint_auth_methods_supported"]
        );
        assert_eq!(doc["scopes_supported"], json!(["a", "b"]));
        assert_eq!(doc["client_id_metadata_document_supported"], true);
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    }
}
