//! `private_key_jwt` client authentication with real signed assertions: a metadata-document
//! client shaped like ChatGPT's (RS256, keys at a `jwks_uri` served by a local fixture), and a
//! configured client with an inline JWKS.

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Response};
use common::*;
use mcp_auth_test_support::{Jws, TestKey, ec_key, jwks, rsa_key};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Serves `/{name}` from a table the test changes, counting requests.
#[derive(Clone, Default)]
struct Fixture {
    files: Arc<Mutex<HashMap<String, (String, &'static str)>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Fixture {
    fn serve(&self, name: &str, body: String, cache_control: &'static str) {
        self.files
            .lock()
            .unwrap()
            .insert(name.to_string(), (body, cache_control));
    }
    fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

async fn serve_file(State(f): State<Fixture>, Path(name): Path<String>) -> Response {
    *f.hits.lock().unwrap().entry(name.clone()).or_default() += 1;
    match f.files.lock().unwrap().get(&name).cloned() {
        Some((body, cc)) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static(cc)),
            ],
            body,
        )
            .into_response(),
        None => AxumStatus::NOT_FOUND.into_response(),
    }
}

async fn start_fixture() -> (Fixture, String) {
    let fixture = Fixture::default();
    let app = axum::Router::new()
        .route("/{name}", axum::routing::get(serve_file))
        .with_state(fixture.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fixture, base)
}

fn now() -> i64 {
    mcp_auth_server::time::now()
}

/// A client assertion for `client_id`, signed by `key`, naming it by `kid`.
fn assertion(key: &TestKey, client_id: &str, aud: &str, jti: &str) -> String {
    Jws {
        header: json!({ "alg": key.alg(), "kid": key.kid, "typ": "JWT" }),
        claims: json!({
            "iss": client_id, "sub": client_id, "aud": aud,
            "iat": now(), "exp": now() + 60, "jti": jti,
        }),
    }
    .sign(key)
}

fn authenticated<'a>(client_id: &'a str, assertion: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("client_id", client_id),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ]
}

/// Logs in and consents for `client_id`; returns the code and the PKCE verifier.
async fn code_for(server: &TestServer, client_id: &str) -> (String, String) {
    let p = pkce();
    let mut params = standard_params(&p, "st");
    params.retain(|(k, _)| *k != "client_id");
    params.push(("client_id", client_id));
    let redirect = authorize(&browser(), server, &authorize_url(server, &params)).await;
    assert!(redirect.starts_with(PUBLIC_REDIRECT), "{redirect}");
    (query_param(&redirect, "code").unwrap(), p.verifier)
}

async fn refresh_with(
    server: &TestServer,
    refresh_token: &str,
    auth: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut fields = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    fields.extend_from_slice(auth);
    json(post_form(&server.url("/token"), &fields).await).await
}

#[track_caller]
fn assert_invalid_client(status: StatusCode, body: &Value, says: &str) {
    assert_oauth_error(status, body, StatusCode::UNAUTHORIZED, "invalid_client");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(description.contains(says), "{body}");
}

#[tokio::test]
async fn a_metadata_document_client_with_a_jwks_uri_authenticates_with_signed_assertions() {
    let server =
        TestServer::start_with("allow_insecure_localhost_client_metadata = true", "").await;
    let (fixture, base) = start_fixture().await;
    let client_id = format!("{base}/client.json");
    let key = rsa_key("chatgpt-1");
    fixture.serve("jwks.json", jwks(&[&key]).to_string(), "max-age=300");
    fixture.serve(
        "client.json",
        json!({
            "client_id": client_id,
            "client_name": "ChatGPT",
            "redirect_uris": [PUBLIC_REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks_uri": format!("{base}/jwks.json"),
        })
        .to_string(),
        "max-age=300",
    );
    let token_url = server.url("/token");
    let (code, verifier) = code_for(&server, &client_id).await;

    // Leaving the assertion out is a downgrade to `none`: refused, and the code stays usable.
    let (status, body) = redeem_code(
        &token_url,
        &client_id,
        PUBLIC_REDIRECT,
        &code,
        &verifier,
        &[],
    )
    .await;
    assert_invalid_client(status, &body, "authenticates with private_key_jwt");

    let first = assertion(&key, &client_id, &token_url, "jti-1");
    let (status, body) = redeem_code(
        &token_url,
        &client_id,
        PUBLIC_REDIRECT,
        &code,
        &verifier,
        &authenticated(&client_id, &first)[1..],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        payload(body["access_token"].as_str().unwrap())["client_id"],
        client_id.as_str()
    );
    let refresh_token = body["refresh_token"].as_str().unwrap().to_string();

    // The same assertion again is a replay.
    let (status, body) =
        refresh_with(&server, &refresh_token, &authenticated(&client_id, &first)).await;
    assert_invalid_client(status, &body, "jti was already used");

    // A fresh one, audience the issuer this time, refreshes.
    let second = assertion(&key, &client_id, &server.issuer, "jti-2");
    let (status, body) =
        refresh_with(&server, &refresh_token, &authenticated(&client_id, &second)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rotated = body["refresh_token"].as_str().unwrap().to_string();

    // Revocation authenticates the same way.
    let third = assertion(&key, &client_id, &token_url, "jti-3");
    let mut fields = vec![("token", rotated.as_str())];
    fields.extend_from_slice(&authenticated(&client_id, &third));
    let revoked = post_form(&server.url("/revoke"), &fields).await;
    assert_eq!(revoked.status(), StatusCode::OK);
    let fourth = assertion(&key, &client_id, &token_url, "jti-4");
    let (status, body) = refresh_with(&server, &rotated, &authenticated(&client_id, &fourth)).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");

    // Another algorithm than the declared one, another audience, another assertion type:
    // each refused by name.
    let ps256 = Jws {
        header: json!({ "alg": "PS256", "kid": key.kid }),
        claims: json!({}),
    }
    .sign(&key);
    let (status, body) = refresh_with(&server, &rotated, &authenticated(&client_id, &ps256)).await;
    assert_invalid_client(
        status,
        &body,
        "declared token_endpoint_auth_signing_alg `RS256`",
    );
    let elsewhere = assertion(&key, &client_id, "https://other.example/token", "jti-5");
    let (status, body) =
        refresh_with(&server, &rotated, &authenticated(&client_id, &elsewhere)).await;
    assert_invalid_client(status, &body, "aud must name this server");
    let (status, body) = refresh_with(
        &server,
        &rotated,
        &[
            ("client_id", client_id.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            ("client_assertion", fourth.as_str()),
        ],
    )
    .await;
    assert_invalid_client(status, &body, "client_assertion_type");
    let (status, body) = refresh_with(
        &server,
        &rotated,
        &[
            ("client_id", client_id.as_str()),
            ("client_assertion", fourth.as_str()),
        ],
    )
    .await;
    assert_invalid_client(status, &body, "client_assertion_type is required");
    // Cached for max-age: one fetch of the keys for every request above.
    assert_eq!(fixture.hits("jwks.json"), 1);
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_once() {
    let server =
        TestServer::start_with("allow_insecure_localhost_client_metadata = true", "").await;
    let (fixture, base) = start_fixture().await;
    let client_id = format!("{base}/client.json");
    let old = rsa_key("old");
    fixture.serve("jwks.json", jwks(&[&old]).to_string(), "max-age=300");
    fixture.serve(
        "client.json",
        json!({
            "client_id": client_id,
            "redirect_uris": [PUBLIC_REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": format!("{base}/jwks.json"),
        })
        .to_string(),
        "max-age=300",
    );
    let token_url = server.url("/token");
    let revoke = |a: String| {
        let (client_id, url) = (client_id.clone(), server.url("/revoke"));
        async move {
            json(
                post_form(
                    &url,
                    &[
                        ("token", "unknown"),
                        ("client_id", &client_id),
                        ("client_assertion_type", ASSERTION_TYPE),
                        ("client_assertion", &a),
                    ],
                )
                .await,
            )
            .await
        }
    };
    let (status, body) = revoke(assertion(&old, &client_id, &token_url, "a")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fixture.hits("jwks.json"), 1);

    // The client rotates to a new key while the old JWKS is still cached.
    let new = ec_key("new");
    fixture.serve("jwks.json", jwks(&[&new]).to_string(), "max-age=300");
    let (status, body) = revoke(assertion(&new, &client_id, &token_url, "b")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fixture.hits("jwks.json"), 2);

    // A kid nobody published right after: refused without another fetch.
    let (status, body) = revoke(assertion(&ec_key("made-up"), &client_id, &token_url, "c")).await;
    assert_invalid_client(status, &body, "kid `made-up` is not in the client's JWKS");
    assert_eq!(fixture.hits("jwks.json"), 2);
}

#[tokio::test]
async fn a_configured_client_authenticates_with_its_inline_jwks() {
    let key = ec_key("static-key");
    let jwks_text = jwks(&[&key]).to_string();
    let server = TestServer::start_with(
        "",
        &format!(
            r#"[[clients]]
client_id = "pkjwt-client"
redirect_uris = ["{PUBLIC_REDIRECT}"]
token_endpoint_auth_method = "private_key_jwt"
token_endpoint_auth_signing_alg = "ES256"
jwks = '{jwks_text}'
"#
        ),
    )
    .await;
    let (code, verifier) = code_for(&server, "pkjwt-client").await;
    let signed = assertion(&key, "pkjwt-client", &server.issuer, "s-1");
    // No client_id in the body: the assertion's subject names the client (RFC 7521 §4.2).
    let (status, body) = json(
        post_form(
            &server.url("/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", PUBLIC_REDIRECT),
                ("code_verifier", &verifier),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &signed),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A public client may not send an assertion instead of nothing.
    let other = assertion(&key, PUBLIC_CLIENT, &server.issuer, "s-2");
    let (status, body) = refresh_with(&server, "x", &authenticated(PUBLIC_CLIENT, &other)).await;
    assert_invalid_client(status, &body, "not private_key_jwt");
}
