// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod common;

use common::*;
use reqwest::StatusCode;

fn without<'a>(params: &[(&'a str, &'a str)], name: &str) -> Vec<(&'a str, &'a str)> {
    params.iter().filter(|(k, _)| *k != name).cloned().collect()
}

fn with<'a>(
    params: &[(&'a str, &'a str)],
    name: &'a str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut p = without(params, name);
    p.push((name, value));
    p
}

/// Asserts an error redirect back to the client carrying `error`, `state` and `iss`, no code.
fn assert_error_redirect(server: &TestServer, resp: &reqwest::Response, error: &str) {
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let loc = location(resp);
    assert!(loc.starts_with(PUBLIC_REDIRECT), "{loc}");
    assert_eq!(query_param(&loc, "error").as_deref(), Some(error), "{loc}");
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st"));
    assert_eq!(
        query_param(&loc, "iss").as_deref(),
        Some(server.issuer.as_str())
    );
    assert!(query_param(&loc, "code").is_none());
}

#[tokio::test]
async fn login_page_is_a_plain_form_that_cannot_be_framed() {
    let server = TestServer::start().await;
    let p = pkce();
    let resp = browser()
        .get(authorize_url(&server, &standard_params(&p, "st")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "http issuer: no Secure flag");
    let html = resp.text().await.unwrap();
    let fields = form_fields(&html);
    for name in [
        "csrf_token",
        "client_id",
        "redirect_uri",
        "code_challenge",
        "state",
        "resource",
    ] {
        assert!(fields.iter().any(|(k, _)| k == name), "{name} in {html}");
    }
    assert!(html.contains("name=\"username\"") && html.contains("name=\"password\""));
    assert!(html.contains("Static Test Client"));
    assert!(
        !html.contains("class=\"unverified\""),
        "configured clients are verified"
    );
}

#[tokio::test]
async fn full_browser_flow_yields_a_code_with_state_and_iss_and_remembers_consent() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let url = authorize_url(&server, &standard_params(&p, "st"));
    // Login.
    let html = page(&b, &url).await;
    let resp = sign_in(&b, &server, &form_fields(&html)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let session_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        session_cookie.starts_with("mcp_as_session=")
            && session_cookie.contains("HttpOnly")
            && session_cookie.contains("SameSite=Lax")
    );
    // Consent page shows the redirect host, the scopes and the resource.
    let consent = follow(&b, &server, &resp).await;
    assert_eq!(consent.status(), StatusCode::OK);
    assert_eq!(consent.headers()["x-frame-options"], "DENY");
    let html = consent.text().await.unwrap();
    assert!(
        html.contains("127.0.0.1") && html.contains("mcp:tools") && html.contains(RESOURCE),
        "{html}"
    );
    let resp = submit(&b, &server, &form_fields(&html), &[("action", "approve")]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let loc = location(&resp);
    assert!(loc.starts_with(PUBLIC_REDIRECT));
    assert!(query_param(&loc, "code").is_some());
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st"));
    assert_eq!(
        query_param(&loc, "iss").as_deref(),
        Some(server.issuer.as_str())
    );
    // Same user, client, redirect URI, scope and resource: no consent page this time.
    let again = b.get(&url).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert!(query_param(&location(&again), "code").is_some());
    // A different scope asks again.
    let wider = with(&standard_params(&p, "st"), "scope", "mcp:tools mcp:admin");
    let asks = b.get(authorize_url(&server, &wider)).send().await.unwrap();
    assert_eq!(asks.status(), StatusCode::OK);
    assert!(asks.text().await.unwrap().contains("mcp:admin"));
}

#[tokio::test]
async fn wrong_password_shows_the_login_page_again() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let html = page(&b, &authorize_url(&server, &standard_params(&p, "st"))).await;
    let resp = submit(
        &b,
        &server,
        &form_fields(&html),
        &[
            ("username", "demo"),
            ("password", "nope"),
            ("action", "login"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get("location").is_none());
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Wrong username or password")
    );
}

#[tokio::test]
async fn denying_consent_redirects_access_denied_with_state_and_iss() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let url = authorize_url(&server, &standard_params(&p, "st"));
    let consent = consent_page_after_sign_in(&b, &server, &url).await;
    let resp = submit(&b, &server, &form_fields(&consent), &[("action", "deny")]).await;
    assert_error_redirect(&server, &resp, "access_denied");
}

#[tokio::test]
async fn pkce_is_required_and_only_s256_is_accepted() {
    let server = TestServer::start().await;
    let p = pkce();
    let base = standard_params(&p, "st");
    let cases = [
        without(&without(&base, "code_challenge"), "code_challenge_method"),
        without(&base, "code_challenge_method"),
        with(&base, "code_challenge_method", "plain"),
        with(&base, "code_challenge_method", "S512"),
    ];
    for params in cases {
        let resp = browser()
            .get(authorize_url(&server, &params))
            .send()
            .await
            .unwrap();
        assert_error_redirect(&server, &resp, "invalid_request");
    }
}

#[tokio::test]
async fn redirect_uri_tricks_get_an_error_page_and_no_location() {
    let server = TestServer::start().await;
    let p = pkce();
    let base = standard_params(&p, "st");
    for bad in [
        "http://127.0.0.1:7777/callback/",
        "http://127.0.0.1:7777/Callback",
        "http://127.0.0.1:7777/callback?x=1",
        "http://127.0.0.1:7777/callback#frag",
        "http://localhost@evil.example/callback",
        "https://app.example.com/callback/",
        "https://APP.example.com/callback",
        "https://app.example.com@evil.example/callback",
        "https://evil.example/callback",
        "javascript:alert(1)",
    ] {
        let resp = browser()
            .get(authorize_url(&server, &with(&base, "redirect_uri", bad)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(resp.headers().get("location").is_none(), "{bad}");
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
    }
    // Unknown client and missing redirect_uri: error page too.
    let resp = browser()
        .get(authorize_url(&server, &with(&base, "client_id", "nobody")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("location").is_none());
    let resp = browser()
        .get(authorize_url(&server, &without(&base, "redirect_uri")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn loopback_redirect_with_another_port_is_accepted() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let params = with(
        &standard_params(&p, "st"),
        "redirect_uri",
        "http://127.0.0.1:45678/callback",
    );
    let loc = authorize(&b, &server, &authorize_url(&server, &params)).await;
    assert!(loc.starts_with("http://127.0.0.1:45678/callback?"), "{loc}");
    let code = query_param(&loc, "code").unwrap();
    // The token request must repeat the exact redirect URI used.
    let (status, body) = redeem_code(
        &server.url("/token"),
        PUBLIC_CLIENT,
        "http://127.0.0.1:45678/callback",
        &code,
        &p.verifier,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn scope_and_resource_errors_redirect_with_the_oauth_code() {
    let server = TestServer::start().await;
    let p = pkce();
    let base = standard_params(&p, "st");
    let cases = [
        (
            with(&base, "resource", "http://localhost:10000/mcp#frag"),
            "invalid_target",
        ),
        (
            with(&base, "resource", "http://localhost:10000/other"),
            "invalid_target",
        ),
        (
            with(&base, "response_type", "token"),
            "unsupported_response_type",
        ),
    ];
    for (params, error) in cases {
        let resp = browser()
            .get(authorize_url(&server, &params))
            .send()
            .await
            .unwrap();
        assert_error_redirect(&server, &resp, error);
    }
    // Duplicate parameters are rejected.
    let mut dup = base.clone();
    dup.push(("scope", "mcp:tools"));
    dup.push(("scope", "mcp:admin"));
    let resp = browser()
        .get(authorize_url(&server, &dup))
        .send()
        .await
        .unwrap();
    assert_error_redirect(&server, &resp, "invalid_request");
}

#[tokio::test]
async fn script_in_state_scope_or_client_name_is_escaped_on_every_page() {
    let server = TestServer::start().await;
    let evil = "<script>alert(1)</script>";
    // Register a client whose name is a script.
    let reg = register_client(
        &server,
        serde_json::json!({
            "client_name": evil,
            "redirect_uris": [PUBLIC_REDIRECT],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap().to_string();
    let b = browser();
    let p = pkce();
    let params = with(
        &with(&standard_params(&p, evil), "client_id", &client_id),
        "scope",
        "mcp:tools",
    );
    let login = b.get(authorize_url(&server, &params)).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let html = login.text().await.unwrap();
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(
        html.contains("class=\"unverified\""),
        "registered client names are marked unverified"
    );
    let resp = sign_in(&b, &server, &form_fields(&html)).await;
    let consent = follow(&b, &server, &resp).await.text().await.unwrap();
    assert!(!consent.contains("<script"), "{consent}");
    assert!(consent.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // An unknown scope with a script is dropped: the consent page asks for the default scope
    // and reflects the script only as an escaped hidden form value.
    let bad_scope = with(
        &with(&standard_params(&p, evil), "client_id", &client_id),
        "scope",
        evil,
    );
    let resp = b
        .get(authorize_url(&server, &bad_scope))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let consent = resp.text().await.unwrap();
    assert!(!consent.contains("<script"), "{consent}");
    assert!(
        consent.contains("<li><span class=\"what\"><code>mcp:tools</code></span></li>"),
        "{consent}"
    );
    // Error pages escape too.
    let error_page = page(
        &b,
        &authorize_url(
            &server,
            &[("client_id", evil), ("redirect_uri", PUBLIC_REDIRECT)],
        ),
    )
    .await;
    assert!(!error_page.contains("<script"), "{error_page}");
}

#[tokio::test]
async fn login_and_consent_posts_without_the_csrf_token_are_forbidden() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let html = page(&b, &authorize_url(&server, &standard_params(&p, "st"))).await;
    let fields: Vec<(String, String)> = form_fields(&html)
        .into_iter()
        .filter(|(k, _)| k != "csrf_token")
        .collect();
    let resp = sign_in(&b, &server, &fields).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let forged = [DEMO_SIGN_IN.as_slice(), &[("csrf_token", "forged")]].concat();
    let resp = submit(&b, &server, &fields, &forged).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // A token from another browser does not match this browser's cookie.
    let other = browser();
    let resp = sign_in(&other, &server, &form_fields(&html)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Consent POST without the token.
    let resp = sign_in(&b, &server, &form_fields(&html)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let consent = follow(&b, &server, &resp).await.text().await.unwrap();
    let fields: Vec<(String, String)> = form_fields(&consent)
        .into_iter()
        .filter(|(k, _)| k != "csrf_token")
        .collect();
    let resp = submit(&b, &server, &fields, &[("action", "approve")]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get("location").is_none());
}

#[tokio::test]
async fn cookies_are_secure_when_the_issuer_is_https() {
    let server = TestServer::start().await;
    let issuer = server.issuer.clone();
    let (base, _dir) = server
        .variant(|text| {
            text.replace(
                &format!("issuer = \"{issuer}\""),
                "issuer = \"https://auth.example.com\"",
            )
        })
        .await;
    let p = pkce();
    let url = authorize_url(&server, &standard_params(&p, "st")).replace(&issuer, &base);
    let resp = browser().get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}

#[tokio::test]
async fn after_too_many_failed_logins_the_address_is_refused_even_with_the_right_password() {
    let server = TestServer::start_with("login_failures_per_minute = 3", "").await;
    let b = browser();
    let p = pkce();
    let html = page(&b, &authorize_url(&server, &standard_params(&p, "st"))).await;
    let fields = form_fields(&html);
    let login = |password: &'static str| {
        let (b, server, fields) = (&b, &server, &fields);
        async move {
            submit(
                b,
                server,
                fields,
                &[
                    ("username", "demo"),
                    ("password", password),
                    ("action", "login"),
                ],
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(login("nope").await.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = login("demo").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "60");
    assert!(resp.headers().get("location").is_none());
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Too many failed sign-in attempts")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_parallel_wrong_passwords_gets_no_more_checks_than_the_limit() {
    let server = TestServer::start_with("login_failures_per_minute = 3", "").await;
    let b = browser();
    let p = pkce();
    let html = page(&b, &authorize_url(&server, &standard_params(&p, "st"))).await;
    let mut fields = form_fields(&html);
    fields.retain(|(k, _)| !["username", "password", "action"].contains(&k.as_str()));
    fields.extend(
        [
            ("username", "demo"),
            ("password", "nope"),
            ("action", "login"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter())
        .finish();
    let attempts: Vec<_> = (0..9)
        .map(|_| {
            let request = b
                .post(server.url("/authorize"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone());
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (3, 6), "{statuses:?}");
}

#[tokio::test]
async fn successful_logins_do_not_count_against_the_limit() {
    let server = TestServer::start_with("login_failures_per_minute = 1", "").await;
    for _ in 0..3 {
        let b = browser();
        let code = get_code(&b, &server, &pkce()).await;
        assert!(!code.is_empty());
    }
}

/// The value of cookie `name` among the response's `Set-Cookie` headers.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

#[tokio::test]
async fn login_issues_a_fresh_session_id_and_a_planted_one_grants_nothing() {
    let server = TestServer::start().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let p = pkce();
    let url = authorize_url(&server, &standard_params(&p, "st"));
    let planted = "mcp_as_session=planted-by-an-attacker";
    let resp = client
        .get(&url)
        .header("cookie", planted)
        .send()
        .await
        .unwrap();
    // The sign-in form's CSRF token is bound to the session cookie the browser sent (even a
    // planted one: it stands in for the pre-session cookie), so no CSRF cookie is needed.
    assert_eq!(set_cookie(&resp, "mcp_as_csrf"), None);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("name=\"password\""),
        "a planted id is no session"
    );
    let cookies = planted.to_string();
    let mut fields = form_fields(&html);
    fields.extend(DEMO_SIGN_IN.map(|(k, v)| (k.to_string(), v.to_string())));
    let resp = client
        .post(server.url("/authorize"))
        .header("cookie", &cookies)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let session = set_cookie(&resp, "mcp_as_session").expect("session cookie");
    assert_ne!(session, "planted-by-an-attacker");
    assert_eq!(session.len(), 43);
    // The planted id still signs nobody in; the issued one does.
    let again = client
        .get(&url)
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert!(again.text().await.unwrap().contains("name=\"password\""));
    let signed_in = client
        .get(&url)
        .header("cookie", format!("mcp_as_session={session}"))
        .send()
        .await
        .unwrap();
    assert!(signed_in.text().await.unwrap().contains("Authorize access"));
}

#[tokio::test]
async fn a_client_registered_without_the_code_grant_gets_no_code() {
    let server = TestServer::start().await;
    let registration = register_client(
        &server,
        serde_json::json!({
            "redirect_uris": [PUBLIC_REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["refresh_token"],
        }),
    )
    .await;
    let client_id = registration["client_id"].as_str().unwrap();
    let p = pkce();
    let params = with(&standard_params(&p, "st"), "client_id", client_id);
    let resp = browser()
        .get(authorize_url(&server, &params))
        .send()
        .await
        .unwrap();
    assert_error_redirect(&server, &resp, "unauthorized_client");
}

#[tokio::test]
async fn a_native_app_with_a_private_use_redirect_completes_the_flow_and_is_named() {
    let server = TestServer::start().await;
    let app = "cursor://anysphere.cursor-mcp/oauth/callback";
    // Cursor registers its app URI with an https and a loopback URI, in one request.
    let registered = register_client(
        &server,
        serde_json::json!({
            "client_name": "Cursor",
            "redirect_uris": [app, "https://cursor.com/oauth/callback", "http://127.0.0.1:41234/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }),
    )
    .await;
    assert_eq!(registered["application_type"], "native", "{registered}");
    assert_eq!(registered["redirect_uris"][0], app, "{registered}");
    let client_id = registered["client_id"].as_str().unwrap();
    let p = pkce();
    let params = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", app),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "st"),
        // Claude.ai-style scope the server does not know: dropped, the default granted.
        ("scope", "claudeai"),
    ];
    let b = browser();
    let consent = consent_page_after_sign_in(&b, &server, &authorize_url(&server, &params)).await;
    assert!(
        consent.contains("the app that handles <code>cursor://</code> links: <strong>anysphere.cursor-mcp</strong>"),
        "{consent}"
    );
    assert!(consent.contains("unverified"), "{consent}");
    let resp = submit(
        &b,
        &server,
        &form_fields(&consent),
        &[("action", "approve")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let loc = location(&resp);
    assert!(loc.starts_with(&format!("{app}?code=")), "{loc}");
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st"));
    assert_eq!(
        query_param(&loc, "iss").as_deref(),
        Some(server.issuer.as_str())
    );
    let code = query_param(&loc, "code").unwrap();
    let (status, body) = redeem_code(
        &server.url("/token"),
        client_id,
        app,
        &code,
        &p.verifier,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["scope"], "mcp:tools",
        "the granted scope, not the requested one"
    );
    // Any app can claim the scheme, so the same request again asks the user again rather than
    // issuing a code on remembered consent.
    let p_again = pkce();
    let again: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| {
            if *k == "code_challenge" {
                (*k, p_again.challenge.as_str())
            } else {
                (*k, *v)
            }
        })
        .collect();
    let asked = b.get(authorize_url(&server, &again)).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::OK, "no code without the user");
    assert!(asked.text().await.unwrap().contains("cursor://"));
    // A denial goes back to the app with iss and state as well.
    let p2 = pkce();
    let params2 = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", app),
        ("code_challenge", p2.challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "st"),
        ("scope", "mcp:admin"),
    ];
    let consent = page(&b, &authorize_url(&server, &params2)).await;
    let resp = submit(&b, &server, &form_fields(&consent), &[("action", "deny")]).await;
    let loc = location(&resp);
    assert!(
        loc.starts_with(&format!("{app}?error=access_denied")),
        "{loc}"
    );
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st"));
    assert_eq!(
        query_param(&loc, "iss").as_deref(),
        Some(server.issuer.as_str())
    );
}

#[tokio::test]
async fn dangerous_redirect_schemes_are_refused_naming_the_scheme() {
    let server = TestServer::start().await;
    for (uri, scheme) in [
        ("javascript:alert(document.domain)", "javascript"),
        ("data:text/html,<script>alert(1)</script>", "data"),
        ("file:///etc/passwd", "file"),
        ("vbscript:msgbox(1)", "vbscript"),
        ("blob:https://a.example/x", "blob"),
    ] {
        let resp = reqwest::Client::new()
            .post(server.url("/register"))
            .json(&serde_json::json!({"redirect_uris": [uri]}))
            .send()
            .await
            .unwrap();
        let (status, body) = json(resp).await;
        assert_oauth_error(
            status,
            &body,
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
        );
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.contains(&format!("scheme `{scheme}`")),
            "{description}"
        );
    }
}

#[tokio::test]
async fn an_operator_who_accepts_no_private_use_scheme_gets_https_and_loopback_only() {
    let server = TestServer::start_with("private_use_redirect_schemes = \"none\"", "").await;
    let resp = reqwest::Client::new()
        .post(server.url("/register"))
        .json(
            &serde_json::json!({"redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback"]}),
        )
        .send()
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_oauth_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_redirect_uri",
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("scheme `cursor`"),
        "{body}"
    );
}

#[tokio::test]
async fn continue_registers_a_loopback_uri_with_a_query_and_uses_it_without() {
    let server = TestServer::start().await;
    let registered_uri = "http://localhost:3000/?state=0b6a0f3e-9a7e-4bd4-b1b1-2f1c6f1f0a11";
    // The TypeScript SDK presents the provider's redirect URL as written: the bare origin.
    let used = "http://localhost:3000";
    let registered = register_client(
        &server,
        serde_json::json!({
            "client_name": "Continue",
            "redirect_uris": [registered_uri],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }),
    )
    .await;
    let client_id = registered["client_id"].as_str().unwrap();
    let p = pkce();
    let url = authorize_url(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", used),
            ("code_challenge", p.challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", "st"),
        ],
    );
    let loc = authorize(&browser(), &server, &url).await;
    assert!(loc.starts_with("http://localhost:3000/?code="), "{loc}");
    let code = query_param(&loc, "code").unwrap();
    // The token request must repeat the URI used at /authorize, not the registered one.
    let (status, body) = redeem_code(
        &server.url("/token"),
        client_id,
        registered_uri,
        &code,
        &p.verifier,
        &[],
    )
    .await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, body) = redeem_code(
        &server.url("/token"),
        client_id,
        used,
        &code,
        &p.verifier,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
