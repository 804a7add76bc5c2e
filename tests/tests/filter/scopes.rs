//! Per-tool scopes from `Mcp-Method`/`Mcp-Name` headers and from the JSON-RPC body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mcp_auth_tests::Action;
use serde_json::json;

use crate::keys::keys;
use crate::support::{Exchange, Gateway, MAX_BODY, METADATA_URL, Request};

fn scope_set(scope: &str) -> Vec<&str> {
    let mut scopes: Vec<&str> = scope.split_whitespace().collect();
    scopes.sort_unstable();
    scopes
}

fn sentinel(name: &str) -> String {
    format!("=?base64?{}?=", STANDARD.encode(name))
}

/// A 403 challenge asking for `mcp:admin` on top of `mcp:tools`.
fn assert_insufficient_scope(got: &Exchange, what: &str) {
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
}

/// Denied in the header phase (from the token or the `Mcp-Method`/`Mcp-Name` headers):
/// the upstream received nothing at all.
fn assert_denied_from_the_headers(got: &Exchange, what: &str) {
    assert_eq!(got.header_action(), Some(Action::Pause), "{what}");
    assert!(
        !got.reached_upstream(),
        "{what}: upstream got {:?}",
        got.upstream
    );
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
    // Pre-2026-07-28 client: only the body names the tool, so the headers went on first;
    // the tool call itself never reached the upstream.
    from_body.assert_denied_from_the_body(403, "JSON-RPC body only");
    assert_insufficient_scope(&from_headers, "Mcp-Method/Mcp-Name headers");
    assert_denied_from_the_headers(&from_headers, "Mcp-Method/Mcp-Name headers");
    assert_insufficient_scope(&from_sentinel, "Base64 sentinel Mcp-Name");
    assert_denied_from_the_headers(&from_sentinel, "Base64 sentinel Mcp-Name");
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
    let denied = gw.send(request(&narrow));
    assert_insufficient_scope(&denied, "narrow token");
    assert_denied_from_the_headers(&denied, "narrow token");
    assert!(gw.send(request(&wide)).delivered());
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
        [Action::Continue, Action::Continue],
        "headers go on once the token is valid; the body after it was authorized"
    );
    assert_eq!(got.upstream.as_ref().map(|u| u.body.clone()), Some(body));
    assert!(got.delivered());
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
    let body_after_first = host.upstream_request(stream).map(|u| u.body.len());
    let on_second = host.send_request_body(stream, second, true).unwrap();
    assert_eq!(
        (on_headers, on_first, on_second),
        (
            Action::Continue,
            Some(Action::Pause),
            Some(Action::Continue)
        )
    );
    assert_eq!(
        body_after_first,
        Some(0),
        "headers forwarded, no body byte before the whole body was checked"
    );
    let upstream = host.upstream_request(stream).expect("forwarded");
    assert_eq!(upstream.body, body);
    assert!(upstream.complete && !upstream.reset);
}

#[test]
fn ordinary_tools_and_get_streams_need_only_the_default_scope() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().rsa, "mcp:tools");
    assert!(
        gw.send(Request::tool_call("whoami").bearer(&token))
            .delivered()
    );
    assert!(
        gw.send(
            Request::get("/mcp")
                .header("accept", "text/event-stream")
                .bearer(&token)
        )
        .delivered()
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
    assert_denied_from_the_headers(&got, "no default scope");
}

#[test]
fn header_that_disagrees_with_the_body_is_rejected_with_400() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools mcp:admin");
    // (case, request, decided from the body: the headers alone were acceptable)
    let cases = [
        (
            "name differs",
            Request::tool_call("admin_report")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "whoami"),
            true,
        ),
        (
            "method differs",
            Request::tool_call("whoami").header("mcp-method", "tools/list"),
            true,
        ),
        (
            "Mcp-Name missing",
            Request::tool_call("whoami").header("mcp-method", "tools/call"),
            true,
        ),
        (
            "bad sentinel",
            Request::tool_call("whoami")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "=?base64?@@@?="),
            false,
        ),
    ];
    for (name, request, from_body) in cases {
        let got = gw.send(request.bearer(&token));
        assert_eq!(got.status(), 400, "{name}");
        // The 2026-07-28 transport's HeaderMismatch, with the request's id once the body was
        // read (before it, the id is unknown and left out).
        assert_eq!(got.json()["jsonrpc"], json!("2.0"), "{name}");
        assert_eq!(got.json()["error"]["code"], json!(-32020), "{name}");
        if from_body {
            assert_eq!(got.json()["id"], json!(1), "{name}");
            got.assert_denied_from_the_body(400, name);
        } else {
            assert_eq!(got.json().get("id"), None, "{name}");
            assert_denied_from_the_headers(&got, name);
        }
    }
    assert_eq!(gw.metric("denied.bad_mcp_request"), 4);
}

#[test]
fn headers_naming_a_permitted_tool_do_not_let_a_body_call_a_tool_needing_more_scope() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let got = gw.send(
        Request::tool_call("admin_report")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "whoami")
            .bearer(&token),
    );
    got.assert_denied_from_the_body(400, "Mcp-Name whoami, body admin_report");
    assert_eq!(
        got.json(),
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32020,
            "message": "Mcp-Name header does not match the body"}})
    );
    assert_eq!(got.header("www-authenticate"), None);
    assert_eq!(
        (
            gw.metric("denied.bad_mcp_request"),
            gw.metric("denied.insufficient_scope"),
            gw.metric("allowed")
        ),
        (1, 0, 0)
    );
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
    unparsable.assert_denied_from_the_body(400, "unparsable");
    assert_eq!(unparsable.json()["error"], json!("invalid_request"));
    oversize.assert_denied_from_the_body(413, "oversize");
    assert_eq!(oversize.json()["error"], json!("invalid_request"));
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
    plain.assert_denied_from_the_body(403, "batch");
    with_header.assert_denied_from_the_body(400, "batch with Mcp-Method");
}

/// Sends `request` with its body followed by trailers (HTTP/2, or HTTP/1 chunked with trailers):
/// the body's last chunk does not carry end of stream, the trailers do.
fn send_with_trailers(gw: &mut Gateway, request: Request) -> Exchange {
    let host = &mut gw.host;
    let stream = host
        .new_http_stream()
        .expect("context create does not trap");
    host.send_request_headers(stream, request.headers, false)
        .expect("on_request_headers does not trap");
    let body = request.body.unwrap_or_default();
    host.send_request_body(stream, &body, false)
        .expect("on_request_body does not trap");
    host.send_request_trailers(stream, vec![(b"x-checksum".to_vec(), b"abc".to_vec())])
        .expect("on_request_trailers does not trap");
    crate::support::look(host, stream)
}

#[test]
fn trailers_do_not_carry_a_tool_call_past_the_scope_check() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let denied = send_with_trailers(&mut gw, Request::tool_call("admin_report").bearer(&token));
    let allowed = send_with_trailers(&mut gw, Request::tool_call("whoami").bearer(&token));
    assert_insufficient_scope(&denied, "tool call ended by trailers");
    denied.assert_denied_from_the_body(403, "tool call ended by trailers");
    assert!(
        allowed.delivered(),
        "permitted call ended by trailers: {allowed:?}"
    );
    assert_eq!(
        allowed.upstream.as_ref().map(|u| u.body.clone()),
        Some(Request::tool_call("whoami").body.unwrap_or_default())
    );
}

#[test]
fn an_invalid_token_gets_its_401_even_when_the_mcp_headers_are_malformed() {
    let mut gw = Gateway::inline();
    let got = gw.send(
        Request::tool_call("whoami")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "=?base64?!!!?=")
            .bearer("not-a-jwt"),
    );
    assert_eq!(got.status(), 401);
    assert_eq!(
        got.challenge().get("error").map(String::as_str),
        Some("invalid_token")
    );
    assert!(!got.reached_upstream());
}

#[test]
fn bodies_whose_tool_depends_on_the_servers_json_parser_get_400_and_never_reach_it() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    // Each body names a permitted tool to this filter and `admin_report` to some server's parser.
    let cases = [
        (
            "case-variant name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","Name":"admin_report"}}"#,
            "ambiguous params.name key",
        ),
        (
            "NUL-terminated name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","name\u0000":"admin_report"}}"#,
            "ambiguous params.name key",
        ),
        (
            "duplicate name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_report","name":"whoami"}}"#,
            "ambiguous params.name key",
        ),
        (
            "duplicate method",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"admin_report"}}"#,
            "ambiguous method key",
        ),
        (
            "case-variant method alone",
            r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"admin_report"}}"#,
            "ambiguous method key",
        ),
        (
            "params key with a long s",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"},"paramſ":{"name":"admin_report"}}"#,
            "ambiguous params key",
        ),
    ];
    for (what, body, description) in cases {
        let got = gw.send(
            Request::new("POST", "/mcp")
                .header("content-type", "application/json")
                .body(body.as_bytes())
                .bearer(&token),
        );
        got.assert_denied_from_the_body(400, what);
        assert_eq!(
            got.json(),
            json!({"error": "invalid_request", "error_description": description}),
            "{what}"
        );
        assert_eq!(got.header("www-authenticate"), None, "{what}");
    }
    assert_eq!(
        (
            gw.metric("denied.bad_mcp_request"),
            gw.metric("denied.insufficient_scope"),
            gw.metric("allowed")
        ),
        (6, 0, 0)
    );
}
