//! Metrics: the admin listener serves Prometheus counters that move with what the server does;
//! the public port has no `/metrics`, and the admin listener serves nothing else.

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod common;

use common::*;
use reqwest::StatusCode;

async fn scrape(server: &TestServer) -> String {
    let admin = server.admin_addr.unwrap();
    let resp = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        resp.headers()
    );
    resp.text().await.unwrap()
}

#[track_caller]
fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            text.lines().any(|l| l == *line),
            "missing `{line}` in:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_flow_moves_the_counters_on_the_admin_listener() {
    let server = TestServer::start_with_admin().await;
    let before = scrape(&server).await;
    assert_lines(
        &before,
        &[
            "mcp_auth_server_refresh_token_reuse_total 0",
            "mcp_auth_server_database_errors_total 0",
        ],
    );

    let b = browser();
    let p = pkce();
    let url = authorize_url(&server, &standard_params(&p, "st"));
    let redirect = authorize_after_a_wrong_password(&b, &server, &url, "nope").await;
    let code = query_param(&redirect, "code").unwrap();
    let (status, t) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let first_refresh = t["refresh_token"].as_str().unwrap();
    let (status, _) = json(refresh(&server, first_refresh, &[]).await).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = json(refresh(&server, first_refresh, &[]).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, body) = json(
        post_form(
            &server.url("/token"),
            &[("grant_type", "password"), ("client_id", PUBLIC_CLIENT)],
        )
        .await,
    )
    .await;
    assert_oauth_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );
    let resp = b
        .get(authorize_url(
            &server,
            &[
                ("client_id", "https://127.0.0.1/client.json"),
                ("redirect_uri", PUBLIC_REDIRECT),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let after = scrape(&server).await;
    assert_lines(
        &after,
        &[
            "mcp_auth_server_sign_ins_total{outcome=\"wrong_password\"} 1",
            "mcp_auth_server_sign_ins_total{outcome=\"success\"} 1",
            "mcp_auth_server_tokens_issued_total{grant_type=\"authorization_code\"} 1",
            "mcp_auth_server_tokens_issued_total{grant_type=\"refresh_token\"} 1",
            "mcp_auth_server_refresh_token_reuse_total 1",
            "mcp_auth_server_client_metadata_fetches_total{outcome=\"failure\"} 1",
            "mcp_auth_server_http_requests_total{endpoint=\"token\"} 4",
            "mcp_auth_server_http_request_duration_seconds_count{endpoint=\"token\"} 4",
            "mcp_auth_server_http_failures_total{endpoint=\"token\",status=\"400\",error=\"invalid_grant\"} 1",
            "mcp_auth_server_http_failures_total{endpoint=\"token\",status=\"400\",error=\"unsupported_grant_type\"} 1",
            "mcp_auth_server_http_failures_total{endpoint=\"authorize\",status=\"401\",error=\"none\"} 1",
            "mcp_auth_server_http_failures_total{endpoint=\"authorize\",status=\"400\",error=\"none\"} 1",
            "mcp_auth_server_database_errors_total 0",
        ],
    );
}

#[tokio::test]
async fn metrics_are_never_on_the_public_port_and_the_admin_port_serves_only_metrics() {
    let server = TestServer::start_with_admin().await;
    let resp = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let admin = server.admin_addr.unwrap();
    for path in ["/token", "/authorize", "/jwks.json"] {
        let resp = reqwest::get(format!("http://{admin}{path}")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // Without `admin_listen` there is no metrics endpoint at all.
    let plain = TestServer::start().await;
    let resp = reqwest::get(plain.url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
