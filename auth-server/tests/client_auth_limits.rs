//! Failed client authentications at /token are limited per address and per client, counted
//! before the secret is checked, and a flood of them does not keep people from signing in.
#![cfg(test)]

mod common;

use std::net::IpAddr;

use common::*;
use reqwest::StatusCode;

const CONFIDENTIAL: &str = "static-confidential";

fn confidential_client() -> String {
    format!(
        "[[clients]]\nclient_id = \"{CONFIDENTIAL}\"\nredirect_uris = [\"{PUBLIC_REDIRECT}\"]\nclient_secret_hash = \"{DEMO_HASH}\"\ntoken_endpoint_auth_method = \"client_secret_post\"\n"
    )
}

/// A refresh request by the confidential client with `secret`, sent from `from` (a loopback
/// address); 400 `invalid_grant` means the client authenticated (the token is made up).
async fn refresh_from(server: &TestServer, from: IpAddr, secret: &str) -> reqwest::Response {
    send_from(server.url("/token"), from, secret.to_string()).await
}

async fn send_from(token_url: String, from: IpAddr, secret: String) -> reqwest::Response {
    reqwest::Client::builder()
        .local_address(from)
        .build()
        .unwrap()
        .post(token_url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "made-up"),
            ("client_id", CONFIDENTIAL),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap()
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

async fn statuses(responses: Vec<reqwest::Response>) -> Vec<StatusCode> {
    let mut out = Vec::new();
    for r in responses {
        let status = r.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.headers()["retry-after"], "60");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        }
        out.push(status);
    }
    out
}

fn count(statuses: &[StatusCode], wanted: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == wanted).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_bad_secrets_gets_the_limit_of_checks_and_sign_ins_still_work() {
    let server = TestServer::start_with(
        "client_auth_failures_per_minute = 3",
        &confidential_client(),
    )
    .await;
    let flood: Vec<_> = (0..24)
        .map(|_| send_from(server.url("/token"), loopback(1), "wrong".into()))
        .collect();
    let answered = statuses(futures_join_all(flood).await).await;
    // Counted before the secret is checked: exactly the limit got a check, however parallel.
    assert_eq!(
        count(&answered, StatusCode::UNAUTHORIZED),
        3,
        "{answered:?}"
    );
    assert_eq!(count(&answered, StatusCode::TOO_MANY_REQUESTS), 21);
    // The address is refused without a check even with the right secret...
    let right = refresh_from(&server, loopback(1), "demo").await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    // ...while a person at that address signs in and gets a code as usual.
    let code = get_code(&browser(), &server, &pkce()).await;
    assert!(!code.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_for_one_client_are_limited_across_addresses_and_successes_do_not_count() {
    let server = TestServer::start_with(
        "client_auth_failures_per_client_per_minute = 2",
        &confidential_client(),
    )
    .await;
    // Successes are given back: more of them than the limit are all served.
    for _ in 0..3 {
        let ok = refresh_from(&server, loopback(1), "demo").await;
        assert_eq!(ok.status(), StatusCode::BAD_REQUEST);
    }
    let flood: Vec<_> = (2..8)
        .map(|last| send_from(server.url("/token"), loopback(last), "wrong".into()))
        .collect();
    let answered = statuses(futures_join_all(flood).await).await;
    assert_eq!(
        count(&answered, StatusCode::UNAUTHORIZED),
        2,
        "{answered:?}"
    );
    assert_eq!(count(&answered, StatusCode::TOO_MANY_REQUESTS), 4);
    // The client's allowance is used up, from every address.
    let right = refresh_from(&server, loopback(9), "demo").await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    // A public client has no secret to guess and is not held back.
    let (status, body) = refresh_without_secret(&server, PUBLIC_CLIENT).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: Vec<F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
