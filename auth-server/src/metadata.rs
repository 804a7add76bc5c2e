//! Discovery documents (RFC 8414 and OpenID Connect Discovery).

use serde_json::{Value, json};

use crate::config::Config;

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
    let auth_methods = ["none", "client_secret_basic", "client_secret_post"];
    let mut doc = json!({
        "issuer": config.issuer,
        "authorization_endpoint": config.endpoint("/authorize"),
        "token_endpoint": config.endpoint("/token"),
        "revocation_endpoint": config.endpoint("/revoke"),
        "jwks_uri": config.endpoint("/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
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
        assert_eq!(doc["scopes_supported"], json!(["a", "b"]));
        assert_eq!(doc["client_id_metadata_document_supported"], true);
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    }
}
