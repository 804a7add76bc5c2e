//! Per-address limits behind a reverse proxy: the client address a trusted proxy reports is
//! counted (an IPv6 /64 as one), and a header from anyone else is not believed.
#![cfg(test)]

mod common;

use common::*;
use reqwest::StatusCode;

async fn register_via(server: &TestServer, forwarded_for: &str) -> StatusCode {
    reqwest::Client::new()
        .post(server.url("/register"))
        .header("x-forwarded-for", forwarded_for)
        .json(&serde_json::json!({
            "redirect_uris": ["http://127.0.0.1:7777/cb"],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .unwrap()
        .status()
}

const ONE_REGISTRATION_PER_MINUTE: &str = "[registration]\nrate_limit_per_minute = 1\n";

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_address_has_its_own_allowance() {
    let server = TestServer::start_with(
        "",
        &format!("{ONE_REGISTRATION_PER_MINUTE}\n[proxy]\ntrusted_addresses = [\"127.0.0.1\"]\n"),
    )
    .await;
    assert_eq!(
        register_via(&server, "203.0.113.1").await,
        StatusCode::CREATED
    );
    assert_eq!(
        register_via(&server, "203.0.113.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another person behind the same proxy is not held back by the first.
    assert_eq!(
        register_via(&server, "203.0.113.2").await,
        StatusCode::CREATED
    );
    // What the client writes before the proxy's entry is not believed.
    assert_eq!(
        register_via(&server, "198.51.100.7, 203.0.113.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // An IPv6 /64 counts as one client.
    assert_eq!(
        register_via(&server, "2001:db8::1").await,
        StatusCode::CREATED
    );
    assert_eq!(
        register_via(&server, "2001:db8::2").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        register_via(&server, "2001:db8:0:1::1").await,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_forwarding_header_from_an_untrusted_peer_is_ignored() {
    let server = TestServer::start_with("", ONE_REGISTRATION_PER_MINUTE).await;
    assert_eq!(
        register_via(&server, "203.0.113.1").await,
        StatusCode::CREATED
    );
    assert_eq!(
        register_via(&server, "203.0.113.2").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
