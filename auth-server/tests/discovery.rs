// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod common;

use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn metadata_documents_name_the_exact_issuer_and_required_capabilities() {
    let server = TestServer::start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let resp = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let doc: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(doc["issuer"], server.issuer.as_str(), "{path}");
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        let methods = doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap();
        for m in [
            "none",
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ] {
            assert!(methods.iter().any(|v| v == m), "{m}");
        }
        assert_eq!(doc["client_id_metadata_document_supported"], true);
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(doc["jwks_uri"], server.url("/jwks.json"));
        assert_eq!(doc["registration_endpoint"], server.url("/register"));
        assert_eq!(doc["revocation_endpoint"], server.url("/revoke"));
        let scopes = doc["scopes_supported"].as_array().unwrap();
        assert!(!scopes.iter().any(|s| s == "offline_access"));
    }
}

#[tokio::test]
async fn issuer_with_a_path_serves_path_inserted_metadata_and_prefixed_endpoints() {
    let server = TestServer::start().await;
    let issuer = server.issuer.clone();
    let (base, _dir) = server
        .variant(|text| {
            text.replace(
                &format!("issuer = \"{issuer}\""),
                &format!("issuer = \"{issuer}/tenant\""),
            )
        })
        .await;
    // The issuer names the first server's port; requests go to the variant's listener.
    let doc: serde_json::Value = reqwest::get(format!(
        "{base}/.well-known/oauth-authorization-server/tenant"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(doc["issuer"], format!("{}/tenant", server.issuer));
    assert_eq!(
        doc["token_endpoint"],
        format!("{}/tenant/token", server.issuer)
    );
    let oidc = reqwest::get(format!("{base}/tenant/.well-known/openid-configuration"))
        .await
        .unwrap();
    assert_eq!(oidc.status(), StatusCode::OK);
    let jwks = reqwest::get(format!("{base}/tenant/jwks.json"))
        .await
        .unwrap();
    assert_eq!(jwks.status(), StatusCode::OK);
    let root = reqwest::get(format!("{base}/.well-known/oauth-authorization-server"))
        .await
        .unwrap();
    assert_eq!(root.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cors_is_allowed_on_metadata_token_register_jwks_revoke_but_not_authorize() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/token",
        "/register",
        "/jwks.json",
        "/revoke",
    ] {
        let resp = client
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("Origin", "https://app.example.com")
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        assert_eq!(
            resp.headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            Some("*"),
            "{path}"
        );
    }
    let preflight = client
        .request(reqwest::Method::OPTIONS, server.url("/authorize"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let get = client
        .get(server.url("/authorize"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(get.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn jwks_lists_the_signing_key_with_kid_and_alg() {
    let server = TestServer::start().await;
    let jwks = jwks(&server).await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(keys[0]["use"], "sig");
    assert!(keys[0]["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(
        keys[0].get("d").is_none(),
        "private key material must never be published"
    );
}

#[tokio::test]
async fn registration_can_be_turned_off() {
    let server = TestServer::start_with("", "[registration]\nenabled = false\n").await;
    let doc: serde_json::Value =
        reqwest::get(server.url("/.well-known/oauth-authorization-server"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert!(doc.get("registration_endpoint").is_none());
    let resp = reqwest::Client::new()
        .post(server.url("/register"))
        .json(&serde_json::json!({"redirect_uris": [PUBLIC_REDIRECT]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
