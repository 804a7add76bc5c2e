//! Per-tool scopes from `Mcp-Method`/`Mcp-Name` headers and from the JSON-RPC body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mcp_auth_tests::Action;
use serde_json::json;

use crate::keys::keys;
use crate::support::{Gateway, MAX_BODY, METADATA_URL, Request};

fn scope_set(scope: &str) -> Vec<&str> {
    let mut scopes: Vec<&str> = scope.split_whitespace().collect();
    scopes.sort_unstable();
    scopes
}

fn sentinel(name: &str) -> String {
    format!("=?base64?{}?=", STANDARD.encode(name))
}

fn assert_insufficient_scope(got: &crate::support::Exchange, what: &str) {
    let challenge = got.challenge();
    assert_eq!(got.status(), 403, "{what}");
    assert_eq!(
        challenge.get("error").map(String::as_str),
        Some("insufficient_scope"),
        "{what}"
    );
    assert_eq!(
        scope_set(challenge.get("scope").map_or("", String::as_str)),
        ["mcp:admin", "mcp:tools"],
        "{what}"
    );
    assert_eq!(
        challenge.get("resource_metadata").map(String::as_str),
        Some(METADATA_URL),
        "{what}"
    );
    assert!(!got.reached_upstream(), "{what}");
}

#[test]
fn tool_needing_an_extra_scope_gets_403_listing_every_needed_scope() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let from_body = gw.send(Request::tool_call("admin_report").bearer(&token));
    let from_headers = gw.send(
        Request::tool_call("admin_report")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "admin_report")
            .header("mcp-protocol-version", "2026-07-28")
            .bearer(&token),
    );
    let from_sentinel = gw.send(
        Request::tool_call("admin_report")
            .header("mcp-method", "tools/call")
            .header("mcp-name", &sentinel("admin_report"))
            .bearer(&token),
    );
    assert_insufficient_scope(&from_body, "JSON-RPC body only");
    assert_insufficient_scope(&from_headers, "Mcp-Method/Mcp-Name headers");
    assert_insufficient_scope(&from_sentinel, "Base64 sentinel Mcp-Name");
    assert_eq!(gw.metric("denied.insufficient_scope"), 3);
}

#[test]
fn non_ascii_tool_name_in_sentinel_form_is_matched_against_the_rules() {
    let mut gw = Gateway::inline();
    let k = keys();
    let (narrow, wide) = (
        gw.token(&k.ed, "mcp:tools"),
        gw.token(&k.ed, "mcp:tools mcp:admin"),
    );
    let request = |token: &str| {
        Request::tool_call("admin_résumé")
            .header("mcp-method", "tools/call")
            .header("mcp-name", &sentinel("admin_résumé"))
            .bearer(token)
    };
    assert_insufficient_scope(&gw.send(request(&narrow)), "narrow token");
    assert!(gw.send(request(&wide)).reached_upstream());
}

#[test]
fn token_with_the_extra_scope_calls_the_tool_and_the_body_reaches_upstream_intact() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ec, "mcp:tools mcp:admin");
    let request = Request::tool_call("admin_report").bearer(&token);
    let body = request.body.clone().unwrap_or_default();
    let got = gw.send(request);
    assert_eq!(
        got.actions,
        [Action::Pause, Action::Continue],
        "headers held while the body is read"
    );
    assert_eq!(got.upstream.as_ref().map(|u| u.body.clone()), Some(body));
}

#[test]
fn body_arriving_in_chunks_is_buffered_until_complete() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let request = Request::tool_call("whoami").bearer(&token);
    let body = request.body.clone().unwrap_or_default();
    let (first, second) = body.split_at(body.len() / 2);
    let host = &mut gw.host;
    let stream = host.new_http_stream().unwrap();
    let on_headers = host
        .send_request_headers(stream, request.headers, false)
        .unwrap();
    let on_first = host.send_request_body(stream, first, false).unwrap();
    let upstream_after_first = host.upstream_request(stream).is_some();
    let on_second = host.send_request_body(stream, second, true).unwrap();
    assert_eq!(
        (on_headers, on_first, on_second),
        (Action::Pause, Action::Pause, Action::Continue)
    );
    assert!(!upstream_after_first);
    assert_eq!(
        host.upstream_request(stream).map(|u| u.body.clone()),
        Some(body)
    );
}

#[test]
fn ordinary_tools_and_get_streams_need_only_the_default_scope() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().rsa, "mcp:tools");
    assert!(
        gw.send(Request::tool_call("whoami").bearer(&token))
            .reached_upstream()
    );
    assert!(
        gw.send(
            Request::get("/mcp")
                .header("accept", "text/event-stream")
                .bearer(&token)
        )
        .reached_upstream()
    );
}

#[test]
fn token_without_the_default_scope_gets_403_for_any_request() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "profile");
    let got = gw.send(Request::get("/mcp").bearer(&token));
    assert_eq!(got.status(), 403);
    assert_eq!(
        got.challenge().get("scope").map(String::as_str),
        Some("mcp:tools")
    );
    assert!(!got.reached_upstream());
}

#[test]
fn header_that_disagrees_with_the_body_is_rejected_with_400() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools mcp:admin");
    let cases = [
        (
            "name differs",
            Request::tool_call("admin_report")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "whoami"),
        ),
        (
            "method differs",
            Request::tool_call("whoami").header("mcp-method", "tools/list"),
        ),
        (
            "Mcp-Name missing",
            Request::tool_call("whoami").header("mcp-method", "tools/call"),
        ),
        (
            "bad sentinel",
            Request::tool_call("whoami")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "=?base64?@@@?="),
        ),
    ];
    for (name, request) in cases {
        let got = gw.send(request.bearer(&token));
        assert_eq!(got.status(), 400, "{name}");
        assert_eq!(got.json()["error"], json!("invalid_request"), "{name}");
        assert!(!got.reached_upstream(), "{name}");
    }
    assert_eq!(gw.metric("denied.bad_mcp_request"), 4);
}

#[test]
fn unparsable_or_oversize_bodies_on_a_rule_bearing_route_are_rejected() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools mcp:admin");
    let unparsable = gw.send(
        Request::new("POST", "/mcp")
            .body(b"{\"jsonrpc\":\"2.0\",")
            .bearer(&token),
    );
    let huge_name = "x".repeat(MAX_BODY + 1);
    let oversize = gw.send(Request::tool_call(&huge_name).bearer(&token));
    assert_eq!(unparsable.status(), 400);
    assert!(!unparsable.reached_upstream());
    assert_eq!(oversize.status(), 413);
    assert!(!oversize.reached_upstream());
    assert_eq!(gw.metric("denied.body_too_large"), 1);
}

#[test]
fn a_batch_needs_the_scopes_of_every_message_and_cannot_carry_mcp_method() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami"}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "admin_report"}}
    ]);
    let plain = gw.send(Request::post(batch.clone()).bearer(&token));
    let with_header = gw.send(
        Request::post(batch)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "whoami")
            .bearer(&token),
    );
    assert_insufficient_scope(&plain, "batch");
    assert_eq!(with_header.status(), 400);
    assert!(!with_header.reached_upstream());
}
