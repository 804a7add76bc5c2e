//! Browser clients: preflight, `Origin` validation, CORS on challenges and upstream responses.

use crate::keys::keys;
use crate::support::{ALLOWED_ORIGIN, Gateway, Request};

#[test]
fn preflight_from_an_allowed_origin_is_answered_without_a_token() {
    let mut gw = Gateway::inline();
    let got = gw.send(
        Request::new("OPTIONS", "/mcp")
            .header("origin", ALLOWED_ORIGIN)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, mcp-method",
            ),
    );
    let allow_headers = got
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert_eq!(got.status(), 204);
    assert_eq!(
        got.header("access-control-allow-origin").as_deref(),
        Some(ALLOWED_ORIGIN)
    );
    for needed in [
        "authorization",
        "content-type",
        "mcp-protocol-version",
        "mcp-session-id",
        "mcp-method",
        "mcp-name",
    ] {
        assert!(
            allow_headers.split(", ").any(|h| h == needed),
            "{needed} in {allow_headers}"
        );
    }
    assert!(
        got.header("access-control-expose-headers")
            .unwrap_or_default()
            .contains("WWW-Authenticate")
    );
    assert!(!got.reached_upstream());
    assert_eq!(gw.metric("preflight"), 1);
}

#[test]
fn disallowed_origin_gets_403_even_with_a_valid_token() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let preflight =
        gw.send(Request::new("OPTIONS", "/mcp").header("origin", "http://evil.example"));
    let request = gw.send(
        Request::get("/mcp")
            .header("origin", "http://evil.example")
            .bearer(&token),
    );
    for got in [&preflight, &request] {
        assert_eq!(got.status(), 403);
        assert_eq!(got.json()["error"], "forbidden_origin");
        assert_eq!(got.header("access-control-allow-origin"), None);
        assert!(!got.reached_upstream());
    }
    assert_eq!(gw.metric("denied.origin"), 2);
}

#[test]
fn challenges_to_an_allowed_origin_expose_www_authenticate() {
    let mut gw = Gateway::inline();
    let got = gw.send(Request::get("/mcp").header("origin", ALLOWED_ORIGIN));
    assert_eq!(got.status(), 401);
    assert_eq!(
        got.header("access-control-allow-origin").as_deref(),
        Some(ALLOWED_ORIGIN)
    );
    assert!(
        got.header("access-control-expose-headers")
            .unwrap_or_default()
            .contains("WWW-Authenticate")
    );
}

#[test]
fn allowed_origin_with_a_valid_token_is_forwarded_and_the_response_gets_cors_headers() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let got = gw.send(
        Request::get("/mcp")
            .header("origin", ALLOWED_ORIGIN)
            .bearer(&token),
    );
    assert!(got.reached_upstream());
    gw.host
        .send_response_headers(
            got.stream,
            [(":status", "200"), ("content-type", "text/event-stream")],
            true,
        )
        .expect("on_response_headers does not trap");
    let response = gw
        .host
        .downstream_response(got.stream)
        .expect("response forwarded");
    assert_eq!(
        response.headers.get("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
}
