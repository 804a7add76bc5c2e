// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

//! The connected-apps page against the real server: what a person sees, revoking an app,
//! signing out, and signing in from the page itself.

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

const BRANDING: &str = "[branding]\nproduct_name = \"Acme MCP\"\n";

/// POSTs `fields` to `path` in `browser`.
async fn post(
    browser: &reqwest::Client,
    server: &TestServer,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    browser
        .post(server.url(path))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn csrf_of(html: &str) -> String {
    form_fields(html)
        .into_iter()
        .find(|(k, _)| k == "csrf_token")
        .map(|(_, v)| v)
        .expect("a csrf_token field")
}

/// Signs in, consents and redeems the code in `browser`; returns the refresh token.
async fn connect(browser: &reqwest::Client, server: &TestServer) -> String {
    let p = pkce();
    let code = get_code(browser, server, &p).await;
    let (status, body) = json(redeem(server, &code, &p.verifier).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["refresh_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn revoking_an_app_ends_its_refresh_tokens_and_its_remembered_consent() {
    let server = TestServer::start_with("", BRANDING).await;
    let b = browser();
    let refresh_token = connect(&b, &server).await;

    let resp = b.get(server.url("/account")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let html = resp.text().await.unwrap();
    assert!(html.contains("Static Test Client"), "{html}");
    assert!(html.contains("<code>mcp:tools</code>"), "{html}");
    assert!(
        html.contains("<code>http://localhost:10000/mcp</code>"),
        "{html}"
    );
    assert!(
        html.contains("Acme MCP"),
        "the operator's name on every page: {html}"
    );
    let csrf = csrf_of(&html);

    // Without the browser's CSRF token nothing is revoked.
    let forged = post(
        &b,
        &server,
        "/account/revoke",
        &[("client_id", PUBLIC_CLIENT)],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let (status, _) = json(refresh(&server, &refresh_token, &[]).await).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a forged revocation must change nothing"
    );
    // That refresh rotated the token; the family is still the one to revoke.
    let html = page(&b, &server.url("/account")).await;
    assert!(html.contains("Static Test Client"), "{html}");

    let resp = post(
        &b,
        &server,
        "/account/revoke",
        &[("client_id", PUBLIC_CLIENT), ("csrf_token", &csrf)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/account?done=revoked");
    let html = follow(&b, &server, &resp).await.text().await.unwrap();
    assert!(html.contains("Access revoked."), "{html}");
    assert!(html.contains("No application has access"), "{html}");

    // Every refresh token of the family is refused now.
    let (status, body) = json(refresh(&server, &refresh_token, &[]).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    // The consent is no longer remembered: the next authorization asks again.
    let p = pkce();
    let again = page(&b, &authorize_url(&server, &standard_params(&p, "s2"))).await;
    assert!(again.contains("value=\"approve\""), "{again}");
}

#[tokio::test]
async fn signing_out_makes_the_next_authorization_ask_to_sign_in() {
    let server = TestServer::start().await;
    let b = browser();
    connect(&b, &server).await;
    let html = page(&b, &server.url("/account")).await;
    assert!(
        html.contains("Signed in as <strong>demo</strong>"),
        "{html}"
    );

    let forged = post(&b, &server, "/account/sign-out", &[]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let resp = post(
        &b,
        &server,
        "/account/sign-out",
        &[("csrf_token", &csrf_of(&html))],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/account?done=signed-out");
    let p = pkce();
    let url = authorize_url(&server, &standard_params(&p, "s"));
    let login = page(&b, &url).await;
    assert!(login.contains("name=\"password\""), "{login}");
    let account = follow(&b, &server, &resp).await.text().await.unwrap();
    assert!(account.contains("You are signed out."), "{account}");
    assert!(account.contains("name=\"password\""), "{account}");
}

#[tokio::test]
async fn the_page_signs_in_and_comes_back() {
    let server = TestServer::start().await;
    let b = browser();
    let html = page(&b, &server.url("/account")).await;
    assert!(
        html.contains("Sign in to see your connected apps"),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let wrong = post(
        &b,
        &server,
        "/account",
        &[
            ("username", "demo"),
            ("password", "nope"),
            ("action", "login"),
            ("csrf_token", &csrf),
        ],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("Wrong username or password.")
    );
    let resp = post(
        &b,
        &server,
        "/account",
        &[
            ("username", "demo"),
            ("password", "demo"),
            ("action", "login"),
            ("csrf_token", &csrf),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/account");
    let html = follow(&b, &server, &resp).await.text().await.unwrap();
    assert!(
        html.contains("Signed in as <strong>demo</strong>"),
        "{html}"
    );
    assert!(html.contains("No application has access"), "{html}");
}
