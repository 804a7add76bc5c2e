//! Dynamically registered clients that are not used are deleted by the purge (which also runs
//! at startup); any authorization or token request keeps a client alive.
#![cfg(test)]

mod common;

use common::*;
use reqwest::StatusCode;

const REDIRECT: &str = "http://127.0.0.1:7777/cb";
const DAY: i64 = 86_400;

async fn register_public(server: &TestServer) -> String {
    let reg = register_client(
        server,
        serde_json::json!({
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }),
    )
    .await;
    reg["client_id"].as_str().unwrap().to_string()
}

/// Makes every registered client look unused for `days`, from outside the server.
fn age_all_clients(server: &TestServer, days: i64) {
    let conn = rusqlite::Connection::open(server.db_path()).unwrap();
    conn.execute(
        "UPDATE clients SET last_used_at = last_used_at - ?1",
        [days * DAY],
    )
    .unwrap();
}

async fn authorize_page_status(server: &TestServer, client_id: &str) -> StatusCode {
    let p = pkce();
    let mut params = standard_params(&p, "st");
    params.retain(|(k, _)| *k != "client_id" && *k != "redirect_uri");
    params.push(("client_id", client_id));
    params.push(("redirect_uri", REDIRECT));
    browser()
        .get(authorize_url(server, &params))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn registered_clients_unused_for_too_long_are_deleted_and_used_ones_kept() {
    let mut server = TestServer::start_with("registered_client_max_idle_secs = 7776000", "").await;
    let idle = register_public(&server).await;
    let seen_at_authorize = register_public(&server).await;
    let seen_at_token = register_public(&server).await;
    age_all_clients(&server, 100);
    // Each of these requests counts as a use.
    assert_eq!(
        authorize_page_status(&server, &seen_at_authorize).await,
        StatusCode::OK
    );
    let (status, body) = refresh_without_secret(&server, &seen_at_token).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");

    // The purge runs at startup (and hourly), before the first request is answered.
    server.restart().await;
    let (status, body) = refresh_without_secret(&server, &idle).await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(
        authorize_page_status(&server, &idle).await,
        StatusCode::BAD_REQUEST
    );
    for kept in [&seen_at_authorize, &seen_at_token] {
        assert_eq!(authorize_page_status(&server, kept).await, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_deleted_clients_refresh_tokens_stop_working() {
    let mut server = TestServer::start().await;
    let client = register_public(&server).await;
    let p = pkce();
    let mut params = standard_params(&p, "st");
    params.retain(|(k, _)| *k != "client_id" && *k != "redirect_uri");
    params.push(("client_id", &client));
    params.push(("redirect_uri", REDIRECT));
    let redirect = authorize(&browser(), &server, &authorize_url(&server, &params)).await;
    let code = query_param(&redirect, "code").unwrap();
    let (status, tokens) = redeem_code(
        &server.url("/token"),
        &client,
        REDIRECT,
        &code,
        &p.verifier,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    age_all_clients(&server, 91);
    server.restart().await;
    let (status, body) = json(
        post_form(
            &server.url("/token"),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                ("client_id", &client),
            ],
        )
        .await,
    )
    .await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    let conn = rusqlite::Connection::open(server.db_path()).unwrap();
    let families: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM refresh_families WHERE client_id = ?1",
            [&client],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(families, 0);
}
