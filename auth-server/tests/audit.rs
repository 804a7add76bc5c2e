//! Audit events: each security-relevant action is logged once, as JSON under the target
//! `mcp_auth_server::audit`, with the fields the README lists, and no log line holds a secret.
//! (One test in this binary: it installs the global log subscriber.)

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod common;

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use reqwest::StatusCode;
use serde_json::Value;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `jti` claim of an access token (read without verifying; the token came from the server).
fn jti_of(access_token: &str) -> String {
    let payload = access_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_string()
}

/// The one audit event named `name`.
#[track_caller]
fn only<'a>(events: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = events.iter().filter(|e| e["event"] == name).collect();
    assert_eq!(found.len(), 1, "`{name}` events: {found:#?}");
    found[0]
}

#[track_caller]
fn assert_fields(event: &Value, expected: &[(&str, Value)]) {
    for (field, value) in expected {
        assert_eq!(&event[*field], value, "field `{field}` of {event:#}");
    }
}

#[tokio::test]
async fn each_action_is_logged_once_with_its_fields_and_without_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "mcp_auth_server=trace,tower_http=trace",
        ))
        .with_writer(move || writer.clone())
        .init();

    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let state = "state-value-5e0b2d";
    let url = authorize_url(&server, &standard_params(&p, state));
    // A wrong password, then the full sign-in and consent.
    let wrong_password = "wrong-password-81c4";
    let redirect = authorize_after_a_wrong_password(&b, &server, &url, wrong_password).await;
    let code = query_param(&redirect, "code").unwrap();
    // Code exchange, one refresh, reuse of the rotated token, revocation, code replay.
    let (status, first) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let first_refresh = first["refresh_token"].as_str().unwrap().to_string();
    let (status, second) = json(refresh(&server, &first_refresh, &[]).await).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let second_refresh = second["refresh_token"].as_str().unwrap().to_string();
    let (status, _) = json(refresh(&server, &first_refresh, &[]).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let resp = post_form(
        &server.url("/revoke"),
        &[("token", &second_refresh), ("client_id", PUBLIC_CLIENT)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, _) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A registration, and a metadata document that cannot be fetched (a loopback address).
    let registration = register_client(
        &server,
        serde_json::json!({"redirect_uris": [PUBLIC_REDIRECT]}),
    )
    .await;
    let registered_id = registration["client_id"].as_str().unwrap().to_string();
    let client_secret = registration["client_secret"].as_str().unwrap().to_string();
    let document_url = "https://127.0.0.1/client.json";
    let resp = b
        .get(authorize_url(
            &server,
            &[
                ("client_id", document_url),
                ("redirect_uri", PUBLIC_REDIRECT),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let events: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["target"] == "mcp_auth_server::audit")
        .collect();
    let client = || Value::from(PUBLIC_CLIENT);
    let demo = || Value::from("demo");
    let address = || Value::from("127.0.0.1");
    assert_fields(
        only(&events, "sign_in.failed"),
        &[
            ("reason", "wrong_password".into()),
            ("username", demo()),
            ("client_id", client()),
            ("address", address()),
        ],
    );
    assert_fields(
        only(&events, "sign_in.succeeded"),
        &[
            ("username", demo()),
            ("client_id", client()),
            ("address", address()),
        ],
    );
    assert_fields(
        only(&events, "consent.given"),
        &[
            ("username", demo()),
            ("client_id", client()),
            ("scope", "mcp:tools".into()),
            ("resource", RESOURCE.into()),
        ],
    );
    let issued: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "token.issued")
        .collect();
    assert_eq!(issued.len(), 2, "{issued:#?}");
    for (event, (grant_type, response)) in issued
        .iter()
        .zip([("authorization_code", &first), ("refresh_token", &second)])
    {
        let access = response["access_token"].as_str().unwrap();
        assert_fields(
            event,
            &[
                ("grant_type", grant_type.into()),
                ("client_id", client()),
                ("username", demo()),
                ("resource", RESOURCE.into()),
                ("scope", "mcp:tools".into()),
                ("jti", jti_of(access).into()),
                ("refresh_token_issued", true.into()),
                ("level", "INFO".into()),
            ],
        );
    }
    assert_fields(
        only(&events, "refresh_token.reuse_detected"),
        &[
            ("client_id", client()),
            ("username", demo()),
            ("resource", RESOURCE.into()),
            ("level", "WARN".into()),
        ],
    );
    assert_fields(
        only(&events, "token.revoked"),
        &[
            ("client_id", client()),
            ("username", demo()),
            ("resource", RESOURCE.into()),
        ],
    );
    assert_fields(
        only(&events, "authorization_code.replay_detected"),
        &[("client_id", client()), ("level", "WARN".into())],
    );
    assert_fields(
        only(&events, "client.registered"),
        &[
            ("client_id", registered_id.into()),
            ("token_endpoint_auth_method", "client_secret_basic".into()),
            ("grant_types", "authorization_code".into()),
            ("application_type", "native".into()),
            ("redirect_uris", PUBLIC_REDIRECT.into()),
            ("address", address()),
        ],
    );
    let fetch_failed = only(&events, "client_metadata.fetch_failed");
    assert_fields(fetch_failed, &[("client_id", document_url.into())]);
    assert!(
        fetch_failed["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{fetch_failed:#}"
    );
    assert!(events.iter().all(|e| e["event"].is_string()), "{events:#?}");
    // Every event seen is documented in the README's table of audit events.
    let readme = include_str!("../README.md");
    for event in &events {
        let name = event["event"].as_str().unwrap();
        assert!(
            readme.contains(&format!("| `{name}`")),
            "`{name}` is not in the README"
        );
    }
    assert!(!events.iter().any(|e| e["event"] == "consent.denied"));

    for (what, secret) in [
        ("code", code.as_str()),
        ("verifier", p.verifier.as_str()),
        ("state", state),
        ("password", wrong_password),
        (
            "first access token",
            first["access_token"].as_str().unwrap(),
        ),
        (
            "second access token",
            second["access_token"].as_str().unwrap(),
        ),
        ("refresh token", first_refresh.as_str()),
        ("rotated refresh token", second_refresh.as_str()),
        ("client secret", client_secret.as_str()),
    ] {
        assert!(!logs.contains(secret), "the {what} appears in the logs");
    }
}
