//! The audit fields the filter leaves in each decided request's filter state, where Envoy's
//! access log reads them (`%FILTER_STATE(wasm.mcp_auth_<field>:PLAIN)%`).

use std::time::Duration;

use mcp_auth_tests::Host;

use crate::keys::keys;
use crate::support::{Exchange, Gateway, KEY_WAIT_MS, RESOURCE, Request};

fn field(host: &Host, got: &Exchange, name: &str) -> Option<String> {
    host.filter_state(got.stream, &[&format!("mcp_auth_{name}")])
        .map(|v| String::from_utf8(v).expect("UTF-8"))
}

fn fields(host: &Host, got: &Exchange) -> Vec<(&'static str, Option<String>)> {
    [
        "decision",
        "resource",
        "subject",
        "client_id",
        "mcp_method",
        "mcp_name",
    ]
    .into_iter()
    .map(|name| (name, field(host, got, name)))
    .collect()
}

fn some(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn an_allowed_tool_call_is_attributed_to_the_verified_subject_and_client() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let got = gw.send(Request::tool_call("echo").bearer(&token));
    assert!(got.delivered());
    assert_eq!(
        fields(&gw.host, &got),
        [
            ("decision", some("allowed")),
            ("resource", some(RESOURCE)),
            ("subject", some("user-42")),
            ("client_id", some("client-7")),
            ("mcp_method", some("tools/call")),
            ("mcp_name", some("echo")),
        ]
    );
}

#[test]
fn a_denied_tool_call_names_the_missing_scope_and_a_bad_token_names_the_check() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let denied = gw.send(Request::tool_call("admin_report").bearer(&token));
    assert_eq!(denied.status(), 403);
    assert_eq!(
        field(&gw.host, &denied, "decision"),
        some("insufficient_scope: mcp:admin")
    );
    assert_eq!(field(&gw.host, &denied, "subject"), some("user-42"));
    assert_eq!(field(&gw.host, &denied, "mcp_name"), some("admin_report"));
    let garbage = gw.send(Request::get("/mcp").bearer("a.b.c"));
    assert_eq!(
        fields(&gw.host, &garbage),
        [
            (
                "decision",
                some("invalid_token: token is not a JWS compact serialization")
            ),
            ("resource", some(RESOURCE)),
            ("subject", None),
            ("client_id", None),
            ("mcp_method", None),
            ("mcp_name", None),
        ],
        "nothing from an unverified token"
    );
}

#[test]
fn a_request_answered_by_the_root_context_at_the_key_deadline_is_recorded_on_its_stream() {
    let mut gw = Gateway::remote();
    let token = gw.token(&keys().ed, "mcp:tools");
    let waiting = gw.send(Request::get("/mcp").bearer(&token));
    let other = gw.send(Request::get("/.well-known/oauth-protected-resource/mcp"));
    gw.host
        .advance(Duration::from_millis(KEY_WAIT_MS + 600))
        .unwrap();
    let after = gw.look(&waiting);
    assert_eq!(after.status(), 503);
    assert_eq!(
        field(&gw.host, &after, "decision"),
        some("keys_unavailable")
    );
    assert_eq!(
        field(&gw.host, &other, "decision"),
        None,
        "metadata is served, not decided on"
    );
}
