// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod common;

use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn code_exchange_issues_an_rfc9068_access_token_verifiable_with_the_jwks() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let code = get_code(&b, &server, &p).await;
    let resp = redeem(&server, &code, &p.verifier).await;
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let (status, body) = json(resp).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "mcp:tools");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    assert!(body["refresh_token"].as_str().is_some());
    let token = body["access_token"].as_str().unwrap();
    let header = header(token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].as_str().is_some());
    let claims = payload(token);
    assert_eq!(claims["iss"], server.issuer.as_str());
    assert_eq!(claims["sub"], "demo");
    assert_eq!(
        claims["aud"], RESOURCE,
        "aud is the resource URL as a string"
    );
    assert_eq!(claims["client_id"], PUBLIC_CLIENT);
    assert_eq!(claims["scope"], "mcp:tools");
    for c in ["iat", "exp", "jti"] {
        assert!(claims.get(c).is_some(), "{c}");
    }
    let verified = verify_with_jwks(&server, token).await.unwrap();
    assert_eq!(verified.custom.client_id, PUBLIC_CLIENT);
}

#[tokio::test]
async fn wrong_or_missing_verifier_is_invalid_grant() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let code = get_code(&b, &server, &p).await;
    let other = pkce();
    let (status, body) = json(redeem(&server, &code, &other.verifier).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, body) = json(
        post_form(
            &server.url("/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", PUBLIC_REDIRECT),
                ("client_id", PUBLIC_CLIENT),
            ],
        )
        .await,
    )
    .await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    // A failed verifier does not burn the code for its rightful owner.
    let (status, _) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemption_succeeds_once_and_revokes_what_it_issued() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let code = get_code(&b, &server, &p).await;
    let url = server.url("/token");
    let attempts =
        (0..6).map(|_| {
            let (url, code, verifier) = (url.clone(), code.clone(), p.verifier.clone());
            async move {
                redeem_code(&url, PUBLIC_CLIENT, PUBLIC_REDIRECT, &code, &verifier, &[]).await
            }
        });
    let results = futures_join_all(attempts).await;
    let mut ok = Vec::new();
    let mut failed = 0;
    for (status, body) in results {
        if status == StatusCode::OK {
            ok.push(body);
        } else {
            assert_eq!(body["error"], "invalid_grant", "{body}");
            failed += 1;
        }
    }
    assert_eq!(ok.len(), 1, "exactly one redemption succeeds");
    assert_eq!(failed, 5);
    // The replay revoked the refresh token the first redemption issued.
    let first_refresh = ok[0]["refresh_token"].as_str().unwrap();
    let (status, body) = json(refresh(&server, first_refresh, &[]).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
}

async fn futures_join_all<
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
>(
    futures: impl Iterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn sequential_replay_is_invalid_grant_and_revokes_the_refresh_family() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let code = get_code(&b, &server, &p).await;
    let (status, first) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, _) =
        json(refresh(&server, first["refresh_token"].as_str().unwrap(), &[]).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let server = TestServer::start().await;
    let t0 = tokens(&server).await;
    let r0 = t0["refresh_token"].as_str().unwrap().to_string();
    let (status, t1) = json(refresh(&server, &r0, &[]).await).await;
    assert_eq!(status, StatusCode::OK, "{t1}");
    let r1 = t1["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r0, r1, "a new refresh token each time");
    assert_ne!(t0["access_token"], t1["access_token"]);
    verify_with_jwks(&server, t1["access_token"].as_str().unwrap())
        .await
        .unwrap();
    let (status, t2) = json(refresh(&server, &r1, &[]).await).await;
    assert_eq!(status, StatusCode::OK);
    let r2 = t2["refresh_token"].as_str().unwrap().to_string();
    // Reusing r0: invalid_grant, and the whole family (including the current r2) is revoked.
    let (status, body) = json(refresh(&server, &r0, &[]).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, body) = json(refresh(&server, &r2, &[]).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn refresh_can_narrow_but_never_widen_the_scope() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let mut params = standard_params(&p, "st");
    params.push(("scope", "mcp:tools mcp:admin"));
    let loc = authorize(&b, &server, &authorize_url(&server, &params)).await;
    let code = query_param(&loc, "code").unwrap();
    let (_, t0) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_eq!(t0["scope"], "mcp:admin mcp:tools");
    let r0 = t0["refresh_token"].as_str().unwrap();
    let (status, t1) = json(refresh(&server, r0, &[("scope", "mcp:tools")]).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(t1["scope"], "mcp:tools");
    assert_eq!(
        payload(t1["access_token"].as_str().unwrap())["scope"],
        "mcp:tools"
    );
    // The family keeps its full grant: the next refresh may ask for admin again.
    let r1 = t1["refresh_token"].as_str().unwrap();
    let (status, t2) = json(refresh(&server, r1, &[]).await).await;
    assert_eq!(
        (status, t2["scope"].as_str()),
        (StatusCode::OK, Some("mcp:admin mcp:tools"))
    );
    // Widening beyond the grant fails without consuming the token.
    let b2 = browser();
    let p2 = pkce();
    let narrow = tokens_with_browser(&server, &b2, &p2).await;
    let rn = narrow["refresh_token"].as_str().unwrap();
    let (status, body) =
        json(refresh(&server, rn, &[("scope", "mcp:tools mcp:admin")]).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_scope");
    let (status, _) = json(refresh(&server, rn, &[]).await).await;
    assert_eq!(status, StatusCode::OK);
}

async fn tokens_with_browser(
    server: &TestServer,
    b: &reqwest::Client,
    p: &Pkce,
) -> serde_json::Value {
    let code = get_code(b, server, p).await;
    json(redeem(server, &code, &p.verifier).await).await.1
}

#[tokio::test]
async fn resource_changed_between_authorize_and_token_is_invalid_target() {
    let server = TestServer::start_with(
        "",
        "[[resources]]\nurl = \"https://other.example/api\"\nscopes = [\"read\"]\ndefault_scopes = [\"read\"]\n",
    )
    .await;
    let b = browser();
    let p = pkce();
    let code = get_code(&b, &server, &p).await;
    let token_with = |resource: &'static str| {
        let (server, code, verifier) = (&server, &code, &p.verifier);
        async move {
            let resource = [("resource", resource)];
            redeem_code(
                &server.url("/token"),
                PUBLIC_CLIENT,
                PUBLIC_REDIRECT,
                code,
                verifier,
                &resource,
            )
            .await
        }
    };
    for bad in [
        "https://other.example/api",
        "http://localhost:10000/mcp#x",
        "https://unknown.example/",
    ] {
        let (status, body) = token_with(bad).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_target")),
            "{bad}"
        );
    }
    let (status, body) = token_with(RESOURCE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = body["refresh_token"].as_str().unwrap();
    let (status, body) =
        json(refresh(&server, r, &[("resource", "https://other.example/api")]).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_target");
    // With two resources configured, an authorization request must name one.
    let mut params = standard_params(&p, "st");
    params.retain(|(k, _)| *k != "resource");
    let resp = browser()
        .get(authorize_url(&server, &params))
        .send()
        .await
        .unwrap();
    assert_eq!(
        query_param(&location(&resp), "error").as_deref(),
        Some("invalid_target")
    );
}

#[tokio::test]
async fn request_without_resource_gets_the_single_configured_resource() {
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let mut params = standard_params(&p, "st");
    params.retain(|(k, _)| *k != "resource");
    let loc = authorize(&b, &server, &authorize_url(&server, &params)).await;
    let code = query_param(&loc, "code").unwrap();
    let (status, body) = redeem_code(
        &server.url("/token"),
        PUBLIC_CLIENT,
        PUBLIC_REDIRECT,
        &code,
        &p.verifier,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        payload(body["access_token"].as_str().unwrap())["aud"],
        RESOURCE
    );
}

/// Form fields, expected status, expected error code.
type Case = (Vec<(&'static str, &'static str)>, StatusCode, &'static str);

#[tokio::test]
async fn malformed_token_requests_get_rfc6749_errors_never_500() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    // No form content type.
    let resp = client
        .post(server.url("/token"))
        .body("grant_type=authorization_code")
        .send()
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    let cases: Vec<Case> = vec![
        (vec![], StatusCode::BAD_REQUEST, "invalid_request"),
        (
            vec![("grant_type", "password")],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", "client_credentials")],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", PUBLIC_CLIENT),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", PUBLIC_CLIENT),
                ("code", "garbage"),
                ("redirect_uri", PUBLIC_REDIRECT),
                ("code_verifier", "x"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            vec![("grant_type", "authorization_code"), ("code", "x")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", "nobody"),
                ("refresh_token", "x"),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", PUBLIC_CLIENT),
                ("refresh_token", "garbage"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("grant_type", "refresh_token"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", PUBLIC_CLIENT),
                ("client_secret", "s"),
                ("refresh_token", "x"),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
    ];
    for (fields, expected_status, expected_error) in cases {
        let resp = post_form(&server.url("/token"), &fields).await;
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let (status, body) = json(resp).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (expected_status, Some(expected_error)),
            "{fields:?}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    // Oversized body.
    let big = format!(
        "grant_type=refresh_token&refresh_token={}",
        "a".repeat(200_000)
    );
    let resp = client
        .post(server.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Invalid UTF-8 and garbage Basic credentials.
    let resp = client
        .post(server.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", "Basic !!!notbase64")
        .body(b"grant_type=authorization_code&code=\xff\xfe".to_vec())
        .send()
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn confidential_clients_authenticate_with_basic_or_post_and_secrets_are_checked() {
    let server = TestServer::start().await;
    let reg = reqwest::Client::new()
        .post(server.url("/register"))
        .json(&serde_json::json!({
            "client_name": "Confidential",
            "redirect_uris": [PUBLIC_REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(reg.status(), StatusCode::CREATED);
    assert_eq!(reg.headers()["cache-control"], "no-store");
    let reg: serde_json::Value = reg.json().await.unwrap();
    let id = reg["client_id"].as_str().unwrap().to_string();
    let secret = reg["client_secret"].as_str().unwrap().to_string();
    // The secret is stored hashed only.
    let db = std::fs::read(server.db_path()).unwrap_or_default();
    let wal = std::fs::read(server.db_path().with_extension("sqlite-wal")).unwrap_or_default();
    let needle = secret.as_bytes();
    assert!(!db.windows(needle.len()).any(|w| w == needle));
    assert!(!wal.windows(needle.len()).any(|w| w == needle));

    let b = browser();
    for method in ["basic", "post", "wrong"] {
        let p = pkce();
        let mut params = standard_params(&p, "st");
        params.retain(|(k, _)| *k != "client_id");
        params.push(("client_id", &id));
        let loc = authorize(&b, &server, &authorize_url(&server, &params)).await;
        let code = query_param(&loc, "code").unwrap();
        let mut fields = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", PUBLIC_REDIRECT),
            ("code_verifier", p.verifier.as_str()),
        ];
        let client = reqwest::Client::new();
        let mut req = client
            .post(server.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded");
        match method {
            "basic" => req = req.basic_auth(&id, Some(&secret)),
            "post" => {
                fields.push(("client_id", &id));
                fields.push(("client_secret", &secret));
            }
            _ => req = req.basic_auth(&id, Some("wrong-secret")),
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&fields)
            .finish();
        let resp = req.body(body).send().await.unwrap();
        if method == "wrong" {
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            assert!(
                resp.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic")
            );
            let (_, body) = json(resp).await;
            assert_eq!(body["error"], "invalid_client");
        } else {
            let (status, body) = json(resp).await;
            assert_eq!(status, StatusCode::OK, "{method}: {body}");
        }
    }
    // Without any secret: invalid_client.
    let (status, body) = refresh_without_secret(&server, &id).await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn registration_validates_metadata_and_is_rate_limited_per_address() {
    let server = TestServer::start_with("", "[registration]\nrate_limit_per_minute = 4\n").await;
    let client = reqwest::Client::new();
    let register =
        |body: serde_json::Value| client.post(server.url("/register")).json(&body).send();
    let resp = register(serde_json::json!({"redirect_uris": ["javascript:alert(1)"]}))
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_oauth_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_redirect_uri",
    );
    let resp = register(serde_json::json!({"redirect_uris": ["http://127.0.0.1:1/cb"], "token_endpoint_auth_method": "none"}))
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        body.get("client_secret").is_none(),
        "public clients get no secret"
    );
    let resp = client
        .post(server.url("/register"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::BAD_REQUEST,
        "needs application/json"
    );
    let resp = register(serde_json::json!({"redirect_uris": ["http://127.0.0.1:1/cb"]}))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = register(serde_json::json!({"redirect_uris": ["http://127.0.0.1:1/cb"]}))
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_oauth_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
    );
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_grant_and_unknown_tokens_are_ignored() {
    let server = TestServer::start().await;
    let t = tokens(&server).await;
    let r = t["refresh_token"].as_str().unwrap();
    let revoke = |token: String, client: &'static str| {
        let url = server.url("/revoke");
        async move { post_form(&url, &[("token", &token), ("client_id", client)]).await }
    };
    // Another client cannot revoke it.
    let other = register_client(
        &server,
        serde_json::json!({"redirect_uris": [PUBLIC_REDIRECT], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let other_id = other["client_id"].as_str().unwrap().to_string();
    let resp = post_form(
        &server.url("/revoke"),
        &[("token", r), ("client_id", &other_id)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (status, _) = json(refresh(&server, r, &[]).await).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "still valid after the refused revocation"
    );
    // The rightful client revokes the current token: the grant ends.
    let t = tokens(&server).await;
    let r = t["refresh_token"].as_str().unwrap().to_string();
    let resp = revoke(r.clone(), PUBLIC_CLIENT).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, body) = json(refresh(&server, &r, &[]).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    // Unknown tokens and access tokens: 200, nothing happens.
    assert_eq!(
        revoke("unknown".into(), PUBLIC_CLIENT).await.status(),
        StatusCode::OK
    );
    let access = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(revoke(access, PUBLIC_CLIENT).await.status(), StatusCode::OK);
    // Missing token parameter.
    let (status, body) =
        json(post_form(&server.url("/revoke"), &[("client_id", PUBLIC_CLIENT)]).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn expired_codes_are_invalid_grant() {
    let server = TestServer::start_with("authorization_code_lifetime_secs = 1", "").await;
    let b = browser();
    let p = pkce();
    let code = get_code(&b, &server, &p).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn static_confidential_client_authenticates_with_its_argon2_secret() {
    let server = TestServer::start_with(
        "",
        &format!(
            "[[clients]]\nclient_id = \"static-confidential\"\nredirect_uris = [\"{PUBLIC_REDIRECT}\"]\nclient_secret_hash = \"{DEMO_HASH}\"\ntoken_endpoint_auth_method = \"client_secret_post\"\n"
        ),
    )
    .await;
    let b = browser();
    for (secret, expected) in [
        ("wrong", StatusCode::UNAUTHORIZED),
        ("demo", StatusCode::OK),
    ] {
        let p = pkce();
        let mut params = standard_params(&p, "st");
        params.retain(|(k, _)| *k != "client_id");
        params.push(("client_id", "static-confidential"));
        let loc = authorize(&b, &server, &authorize_url(&server, &params)).await;
        let code = query_param(&loc, "code").unwrap();
        let (status, body) = redeem_code(
            &server.url("/token"),
            "static-confidential",
            PUBLIC_REDIRECT,
            &code,
            &p.verifier,
            &[("client_secret", secret)],
        )
        .await;
        assert_eq!(status, expected, "{secret}: {body}");
    }
    // Without its secret the confidential client is refused.
    let (status, body) = refresh_without_secret(&server, "static-confidential").await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn the_basic_scheme_is_accepted_in_any_letter_case() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let reg = register_client(
        &server,
        serde_json::json!({"redirect_uris": [PUBLIC_REDIRECT]}),
    )
    .await;
    use base64::Engine;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        reg["client_id"].as_str().unwrap(),
        reg["client_secret"].as_str().unwrap()
    ));
    for scheme in ["Basic", "basic", "BASIC"] {
        let resp = client
            .post(server.url("/revoke"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("{scheme} {credentials}"))
            .body("token=unknown-token")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn a_client_registered_without_the_refresh_grant_cannot_use_it() {
    let server = TestServer::start().await;
    let registration = register_client(
        &server,
        serde_json::json!({
            "redirect_uris": [PUBLIC_REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
        }),
    )
    .await;
    let client_id = registration["client_id"].as_str().unwrap();
    let (status, body) = refresh_without_secret(&server, client_id).await;
    assert_oauth_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
}

/// Makes the signing key unusable (no key is active) or usable again, from outside the server.
fn shift_signing_keys(server: &TestServer, by_secs: i64) {
    let conn = rusqlite::Connection::open(server.db_path()).unwrap();
    conn.execute(
        "UPDATE signing_keys SET active_from = active_from + ?1",
        [by_secs],
    )
    .unwrap();
}

#[tokio::test]
async fn a_failure_to_sign_leaves_the_code_and_the_refresh_token_usable() {
    const FAR: i64 = 100 * 365 * 86_400;
    let server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let code = get_code(&b, &server, &p).await;
    shift_signing_keys(&server, FAR);
    let (status, body) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    shift_signing_keys(&server, -FAR);
    // The retry is served: the failed attempt consumed nothing, so it is no replay.
    let (status, first) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let r0 = first["refresh_token"].as_str().unwrap().to_string();

    shift_signing_keys(&server, FAR);
    let (status, body) = json(refresh(&server, &r0, &[]).await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    shift_signing_keys(&server, -FAR);
    // Not taken for reuse: the same token rotates, and the family lives on.
    let (status, t1) = json(refresh(&server, &r0, &[]).await).await;
    assert_eq!(status, StatusCode::OK, "{t1}");
    let (status, t2) =
        json(refresh(&server, t1["refresh_token"].as_str().unwrap(), &[]).await).await;
    assert_eq!(status, StatusCode::OK, "{t2}");
}
