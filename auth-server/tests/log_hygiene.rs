//! The server's logs, at the most verbose level, never contain a code, token, secret,
//! password, PKCE verifier or `state` value. (One test in this binary: it installs the global
//! log subscriber.)

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use reqwest::StatusCode;

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

#[tokio::test]
async fn verbose_logs_hold_no_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "mcp_auth_server=trace,tower_http=trace",
        ))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let state = "state-value-4f1c9a";
    let url = authorize_url(&server, &standard_params(&p, state));
    // A failed login first, with a password that must not be logged.
    let wrong_password = "wrong-password-7d2e";
    let redirect = authorize_after_a_wrong_password(&b, &server, &url, wrong_password).await;
    let code = query_param(&redirect, "code").unwrap();
    let (status, t) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    // Replay, so the replay warning is logged too.
    let _ = redeem(&server, &code, &p.verifier).await;
    let t = tokens(&server).await;
    let access = t["access_token"].as_str().unwrap().to_string();
    let first_refresh = t["refresh_token"].as_str().unwrap().to_string();
    let (_, t2) = json(refresh(&server, &first_refresh, &[]).await).await;
    let second_refresh = t2["refresh_token"].as_str().unwrap().to_string();
    // Reuse of a rotated token (logged as a warning), then revocation.
    let _ = refresh(&server, &first_refresh, &[]).await;
    let _ = post_form(
        &server.url("/revoke"),
        &[("token", &second_refresh), ("client_id", PUBLIC_CLIENT)],
    )
    .await;
    let reg = register_client(
        &server,
        serde_json::json!({"redirect_uris": [PUBLIC_REDIRECT]}),
    )
    .await;
    let client_secret = reg["client_secret"].as_str().unwrap().to_string();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The capture works: the events around the secrets are there.
    for expected in [
        "failed login attempt",
        "authorization code replayed",
        "refresh token reused",
        "client registered",
        "/token",
    ] {
        assert!(logs.contains(expected), "missing `{expected}` in:\n{logs}");
    }
    for (what, secret) in [
        ("code", code.as_str()),
        ("verifier", p.verifier.as_str()),
        ("state", state),
        ("password", wrong_password),
        ("access token", access.as_str()),
        ("refresh token", first_refresh.as_str()),
        ("rotated refresh token", second_refresh.as_str()),
        ("client secret", client_secret.as_str()),
    ] {
        assert!(!logs.contains(secret), "the {what} appears in the logs");
    }
}
