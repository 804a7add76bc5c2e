//! The login and consent forms only count when posted from this server's own pages, and the
//! consent form's CSRF token is bound to the login session, so a planted cookie forges nothing.
#![cfg(test)]

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

/// POSTs `fields` to /authorize from `browser` with extra request headers.
async fn post_with(
    browser: &reqwest::Client,
    server: &TestServer,
    fields: &[(String, String)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = browser
        .post(server.url("/authorize"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields.iter())
                .finish(),
        );
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.unwrap()
}

fn with(fields: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<_> = fields
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .cloned()
        .collect();
    out.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    out
}

#[tokio::test]
async fn forms_posted_from_another_origin_are_refused() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let login = page(&b, &authorize_url(&server, &standard_params(&p, "st"))).await;
    let fields = with(&form_fields(&login), &DEMO_SIGN_IN);
    for headers in [
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![
            ("origin", server.issuer.as_str()),
            ("sec-fetch-site", "same-site"),
        ],
    ] {
        let resp = post_with(&b, &server, &fields, &headers).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{headers:?}");
    }
    // The same form from the server's own page signs in.
    let own = [
        ("origin", server.issuer.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let resp = post_with(&b, &server, &fields, &own).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_planted_csrf_cookie_cannot_approve_for_a_signed_in_user() {
    let server = TestServer::start().await;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let b = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let p = pkce();
    let url = authorize_url(&server, &standard_params(&p, "st"));
    let consent = consent_page_after_sign_in(&b, &server, &url).await;
    let fields = form_fields(&consent);
    // Someone able to set cookies for this host plants a CSRF cookie they know and posts a
    // form repeating it, as a plain double-submit check would accept.
    let forged = with(&fields, &[("action", "approve"), ("csrf_token", "planted")]);
    jar.add_cookie_str(
        "mcp_as_csrf=planted; Path=/",
        &server.url("/").parse().unwrap(),
    );
    let resp = post_with(&b, &server, &forged, &[]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // The consent page's own token, bound to the session, works.
    let resp = submit(&b, &server, &fields, &[("action", "approve")]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(query_param(&location(&resp), "code").is_some());
}
