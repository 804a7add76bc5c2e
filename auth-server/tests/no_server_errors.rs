//! Hostile and malformed requests on every endpoint: each gets a 4xx (or a normal answer),
//! never a 5xx, and the server keeps serving.

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod common;

use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn malformed_requests_never_get_a_server_error() {
    let server = TestServer::start().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = "application/x-www-form-urlencoded";
    let junk_bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"%".to_vec(),
        b"%zz=%zz&&&==".to_vec(),
        vec![0xff, 0xfe, b'=', 0x80],
        b"grant_type=authorization_code&code=%00&redirect_uri=%FF&code_verifier=\x01".to_vec(),
        b"grant_type=refresh_token&refresh_token=x&client_id=https%3A%2F%2F%5B%3A%3A1%5D%2Fx"
            .to_vec(),
        b"grant_type=authorization_code&client_id=http%3A%2F%2F&code=a".to_vec(),
        format!("token={}&client_id=static-public", "a".repeat(60_000)).into_bytes(),
        b"csrf_token=x&action=login&username=demo&password=demo".to_vec(),
        b"{\"redirect_uris\": [\"http://127.0.0.1/cb\"], \"client_name\": 7}".to_vec(),
        b"{\"redirect_uris\": [\"http://[::1/cb\"]}".to_vec(),
        b"[]".to_vec(),
    ];
    let authorizations = [
        None,
        Some("Basic !!!"),
        Some("Basic bm9jb2xvbg=="), // "nocolon"
        Some("Basic /w=="),         // a non-UTF-8 byte
        Some("Basic OnNlY3JldA=="), // empty id
        Some("Bearer x"),
        Some("Basic"),
    ];
    let cookies = [
        None,
        Some("mcp_as_session=; mcp_as_csrf="),
        Some("mcp_as_session=\"q\"; mcp_as_csrf=%ZZ; =; ;;"),
    ];
    for path in ["/token", "/revoke", "/register", "/authorize"] {
        for body in &junk_bodies {
            for auth in authorizations {
                for cookie in cookies {
                    for content_type in [form, "application/json", "text/plain"] {
                        let mut req = client
                            .post(server.url(path))
                            .header("content-type", content_type)
                            .body(body.clone());
                        if let Some(a) = auth {
                            req = req.header("authorization", a);
                        }
                        if let Some(c) = cookie {
                            req = req.header("cookie", c);
                        }
                        let resp = req.send().await.unwrap();
                        assert!(
                            resp.status().is_client_error() || resp.status().is_success(),
                            "POST {path} {auth:?} {cookie:?} {content_type} {:?} -> {}",
                            String::from_utf8_lossy(body),
                            resp.status()
                        );
                    }
                }
            }
        }
    }
    for query in [
        "",
        "%",
        "client_id=%FF&redirect_uri=%FF",
        "client_id=https%3A%2F%2F%5B%3A%3A1%5D%2Fx&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb",
        "client_id=https%3A%2F%2F10.0.0.1%2Fx&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb",
        "client_id=http%3A%2F%2F&redirect_uri=x",
        "client_id=static-public&redirect_uri=http%3A%2F%2F127.0.0.1%3A99999%2Fcallback",
        "client_id=static-public&redirect_uri=http%3A%2F%2F127.0.0.1%3A7777%2Fcallback&resource=%00&scope=%FF",
    ] {
        for cookie in cookies {
            let mut req = client.get(format!("{}?{query}", server.url("/authorize")));
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let resp = req.send().await.unwrap();
            assert!(
                resp.status().is_client_error()
                    || resp.status().is_success()
                    || resp.status() == StatusCode::SEE_OTHER,
                "GET /authorize?{query} {cookie:?} -> {}",
                resp.status()
            );
        }
    }
    // Still serving.
    let resp = client.get(server.url("/jwks.json")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
