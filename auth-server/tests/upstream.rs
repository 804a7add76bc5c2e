// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod common;

use common::*;
use reqwest::StatusCode;

/// A server with the demo user and two identity providers nobody listens for (port 1 of the
/// loopback address refuses connections).
async fn server_with_providers(secrets: &tempfile::TempDir) -> TestServer {
    let secret = secrets.path().join("idp.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let secret = secret.display();
    TestServer::start_with(
        "",
        &format!(
            r#"
[[identity_providers]]
id = "corp"
display_name = "Corp SSO"
issuer = "http://127.0.0.1:1"
client_id = "mcp"
client_secret_file = "{secret}"

[[identity_providers]]
id = "partner"
display_name = "Partner login"
issuer = "http://127.0.0.1:1/partner"
client_id = "mcp"
client_secret_file = "{secret}"
"#
        ),
    )
    .await
}

/// The fields of the page's first form (each provider button has a form of its own).
fn first_form(html: &str) -> Vec<(String, String)> {
    let end = html.find("</form>").expect("a form");
    form_fields(&html[..end])
}

#[tokio::test]
async fn the_login_page_offers_each_provider_and_the_password_form_for_local_users() {
    let secrets = tempfile::tempdir().unwrap();
    let server = server_with_providers(&secrets).await;
    let pkce = pkce();
    let html = page(
        &browser(),
        &authorize_url(&server, &standard_params(&pkce, "st")),
    )
    .await;
    assert!(html.contains("Sign in with Corp SSO"), "{html}");
    assert!(html.contains("Sign in with Partner login"), "{html}");
    assert!(html.contains("value=\"upstream:corp\""), "{html}");
    assert!(html.contains("name=\"password\""), "{html}");
}

#[tokio::test]
async fn a_login_page_without_local_users_has_no_password_form() {
    let secrets = tempfile::tempdir().unwrap();
    let server = server_with_providers(&secrets).await;
    let (base, _dir) = server
        .variant(|config| {
            let start = config.find("[[users]]").unwrap();
            let end = config[start..].find("[[clients]]").unwrap() + start;
            format!("{}{}", &config[..start], &config[end..])
        })
        .await;
    let pkce = pkce();
    let params = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(standard_params(&pkce, "st"))
        .finish();
    let html = page(&browser(), &format!("{base}/authorize?{params}")).await;
    assert!(html.contains("Sign in with Corp SSO"), "{html}");
    assert!(!html.contains("name=\"password\""), "{html}");
}

#[tokio::test]
async fn an_unreachable_provider_ends_on_a_page_naming_it_with_a_way_back() {
    let secrets = tempfile::tempdir().unwrap();
    let server = server_with_providers(&secrets).await;
    let browser = browser();
    let pkce = pkce();
    let html = page(
        &browser,
        &authorize_url(&server, &standard_params(&pkce, "st")),
    )
    .await;
    let resp = submit(
        &browser,
        &server,
        &first_form(&html),
        &[("action", "upstream:corp")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let text = resp.text().await.unwrap();
    assert!(text.contains("Corp SSO cannot be reached"), "{text}");
    assert!(
        text.contains("`corp`") && text.contains("discovery"),
        "{text}"
    );
    assert!(text.contains("href=\"/authorize?"), "{text}");
}

#[tokio::test]
async fn an_unknown_provider_or_callback_is_a_clear_page_never_a_server_error() {
    let secrets = tempfile::tempdir().unwrap();
    let server = server_with_providers(&secrets).await;
    let browser = browser();
    let pkce = pkce();
    let html = page(
        &browser,
        &authorize_url(&server, &standard_params(&pkce, "st")),
    )
    .await;
    let resp = submit(
        &browser,
        &server,
        &first_form(&html),
        &[("action", "upstream:nobody")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let forged = browser
        .get(server.url("/upstream/corp/callback?code=c&state=never-issued"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert!(
        forged
            .text()
            .await
            .unwrap()
            .contains("not started in this browser")
    );
    let no_state = browser
        .get(server.url("/upstream/corp/callback?error=access_denied"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_state.status(), StatusCode::BAD_REQUEST);
    let unknown = browser
        .get(server.url("/upstream/nobody/callback?code=c&state=s"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}
