use serde_json::json;

use crate::keys::keys;
use crate::support::{Gateway, METADATA_URL, Request};

#[test]
fn request_without_token_gets_401_with_resource_metadata_and_scope_and_no_error() {
    let mut gw = Gateway::inline();
    let got = gw.send(Request::get("/mcp"));
    let challenge = got.challenge();
    assert_eq!(got.status(), 401);
    assert_eq!(challenge["scheme"], "Bearer");
    assert_eq!(challenge["resource_metadata"], METADATA_URL);
    assert_eq!(challenge["scope"], "mcp:tools");
    assert!(!challenge.contains_key("error"), "{challenge:?}");
    assert_eq!(got.json()["error"], json!("unauthorized"));
    assert_eq!(got.header("cache-control").as_deref(), Some("no-store"));
    assert!(!got.reached_upstream());
    assert_eq!(gw.metric("denied.missing_token"), 1);
}

#[test]
fn access_token_in_the_query_alone_is_ignored_and_gets_401() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let got = gw.send(Request::get(&format!("/mcp?access_token={token}")));
    assert_eq!(got.status(), 401);
    assert!(!got.challenge().contains_key("error"));
    assert!(!got.reached_upstream());
}

#[test]
fn denial_is_logged_once_at_debug_without_the_token() {
    let mut gw = Gateway::inline();
    let token = gw
        .jws(&keys().ed, "mcp:tools")
        .claim("aud", json!("http://other"))
        .sign(&keys().ed);
    let got = gw.send(Request::get("/mcp").bearer(&token));
    let denials: Vec<_> = gw
        .host
        .logs()
        .iter()
        .filter(|l| l.message.contains("mcp-auth: deny"))
        .collect();
    assert_eq!(got.status(), 401);
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!(denials[0].level, mcp_auth_tests::LogLevel::Debug);
    assert!(gw.host.logs().iter().all(|l| !l.message.contains(&token)));
}

#[test]
fn unmatched_paths_are_rejected_with_404() {
    let mut gw = Gateway::inline();
    let got = gw.send(Request::get("/admin"));
    assert_eq!(got.status(), 404);
    assert!(!got.reached_upstream());
    assert_eq!(gw.metric("denied.unmatched_path"), 1);
}

#[test]
fn challenge_scopes_all_asks_for_every_tool_scope_in_the_first_401() {
    let k = keys();
    let mut config = crate::support::config(crate::support::inline_jwks(&[&k.ed]));
    config["resources"][0]["challenge_scopes"] = json!("all");
    let mut gw = Gateway::with_config(config);
    let missing = gw.send(Request::get("/mcp"));
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.challenge()["scope"], "mcp:tools mcp:admin");
    let invalid = gw.send(Request::get("/mcp").bearer("not-a-jwt"));
    assert_eq!(invalid.challenge()["scope"], "mcp:tools mcp:admin");
    // A token with every scope the challenge asked for calls any tool: no 403 step-up.
    let full = gw.token(&k.ed, "mcp:tools mcp:admin");
    assert!(
        gw.send(Request::tool_call("admin_report").bearer(&full))
            .delivered()
    );
    // A token granted less still gets the 403 naming what the refused call needs.
    let narrow = gw.token(&k.ed, "mcp:tools");
    let refused = gw.send(Request::tool_call("admin_report").bearer(&narrow));
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.challenge()["scope"], "mcp:tools mcp:admin");
}
