#![cfg(test)]
//! Two replicas of the server on one PostgreSQL database, as behind a load balancer: whatever
//! replica a person's or a client's next request reaches, it sees what the other one did.

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

/// Replica A, and the base URL of replica B: the same configuration (issuer included) and the
/// same fresh database, on another port. `None` when no PostgreSQL test server is configured
/// (under `cargo xtask test` one always is; a missing one fails there).
async fn two_replicas(extra_top: &str) -> Option<(TestServer, String, tempfile::TempDir)> {
    // The synchronous client must not run on the test's async runtime.
    let database = tokio::task::spawn_blocking(mcp_auth_test_support::postgres::fresh_database)
        .await
        .unwrap()?;
    let a = TestServer::start_on_postgres(&database, extra_top).await;
    let (b, dir) = a.variant(|text| text).await;
    Some((a, b, dir))
}

async fn post(
    browser: &reqwest::Client,
    url: &str,
    fields: &[(String, String)],
) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter())
        .finish();
    browser
        .post(url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn token_request(code: &str, verifier: &str) -> Vec<(String, String)> {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", PUBLIC_REDIRECT),
        ("code_verifier", verifier),
        ("client_id", PUBLIC_CLIENT),
        ("resource", RESOURCE),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_at_one_replica_holds_at_the_other_and_a_code_is_redeemed_once_across_them() {
    let Some((a, b, _dir)) = two_replicas("").await else {
        return;
    };
    let browser = browser();
    let p = pkce();
    let at_a = authorize_url(&a, &standard_params(&p, "st"));
    // Signed in at A: the consent page.
    let consent = consent_page_after_sign_in(&browser, &a, &at_a).await;
    assert!(consent.contains("action"), "{consent}");
    // The same request at B finds the session: its consent page, no sign-in form.
    let at_b = at_a.replacen(&a.issuer, &b, 1);
    let page_b = page(&browser, &at_b).await;
    assert!(
        !page_b.contains("name=\"password\""),
        "B asked to sign in again"
    );
    // B accepts its own consent form (its CSRF token is bound to the session made at A).
    let mut fields = form_fields(&page_b);
    fields.push(("action".into(), "approve".into()));
    let approved = post(&browser, &format!("{b}/authorize"), &fields).await;
    assert_eq!(approved.status(), StatusCode::SEE_OTHER);
    let redirect = location(&approved);
    assert!(redirect.starts_with(PUBLIC_REDIRECT), "{redirect}");
    let code = query_param(&redirect, "code").expect("code");

    // Redeemed at B, replayed at A: the replay fails and revokes what B issued.
    let first = post(
        &browser,
        &format!("{b}/token"),
        &token_request(&code, &p.verifier),
    )
    .await;
    let (status, tokens) = json(first).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let replay = post(
        &browser,
        &a.url("/token"),
        &token_request(&code, &p.verifier),
    )
    .await;
    let (status, body) = json(replay).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let refresh_token = tokens["refresh_token"].as_str().expect("refresh token");
    let refreshed = refresh(&a, refresh_token, &[]).await;
    assert_eq!(json(refreshed).await.1["error"], "invalid_grant");
}

#[tokio::test]
async fn failed_sign_ins_at_one_replica_count_at_the_other() {
    let Some((a, b, _dir)) = two_replicas("login_failures_per_minute = 2").await else {
        return;
    };
    let browser = browser();
    let p = pkce();
    let at_a = authorize_url(&a, &standard_params(&p, "st"));
    let login = form_fields(&page(&browser, &at_a).await);
    for _ in 0..2 {
        let wrong = submit(
            &browser,
            &a,
            &login,
            &[
                ("username", "demo"),
                ("password", "nope"),
                ("action", "login"),
            ],
        )
        .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    // At B, the right password from the same address is refused without being checked.
    let mut fields: Vec<(String, String)> = login
        .into_iter()
        .filter(|(k, _)| !["username", "password", "action"].contains(&k.as_str()))
        .collect();
    fields.extend(DEMO_SIGN_IN.map(|(k, v)| (k.to_string(), v.to_string())));
    let at_b = post(&browser, &format!("{b}/authorize"), &fields).await;
    assert_eq!(at_b.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(at_b.headers()["retry-after"], "60");
}

#[tokio::test]
async fn every_replica_publishes_the_same_keys_and_a_rotation_reaches_both_before_it_signs() {
    let Some((a, b, _dir)) = two_replicas("").await else {
        return;
    };
    let keys_of = |base: String| async move {
        reqwest::get(format!("{base}/jwks.json"))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let before = keys_of(a.issuer.clone()).await;
    assert_eq!(before, keys_of(b.clone()).await);
    assert_eq!(before["keys"].as_array().unwrap().len(), 1);
    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-auth-server"))
        .args(["--config"])
        .arg(&a.config_path)
        .args(["keys", "rotate", "--publish-delay-secs", "300"])
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    let after = keys_of(a.issuer.clone()).await;
    assert_eq!(after["keys"].as_array().unwrap().len(), 2);
    assert_eq!(
        after,
        keys_of(b.clone()).await,
        "both replicas publish the new key"
    );
    // Neither signs with it yet: a token from B still carries the first key's kid.
    let p = pkce();
    let browser = browser();
    let code = get_code(&browser, &a, &p).await;
    let issued = post(
        &browser,
        &format!("{b}/token"),
        &token_request(&code, &p.verifier),
    )
    .await;
    let (status, tokens) = json(issued).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let kid = header(tokens["access_token"].as_str().unwrap())["kid"].clone();
    assert_eq!(kid, before["keys"][0]["kid"]);
}
