//! Several protected resources on one listener, each with its own URL, audience and scopes.

use serde_json::{Value, json};

use crate::keys::keys;
use crate::support::{Gateway, ISSUER, Request, inline_jwks};

const GITHUB: &str = "https://gw.example.com/mcp/github";
const JIRA: &str = "https://gw.example.com/mcp/jira";

fn two_resources(unmatched_paths: &str) -> Gateway {
    let k = keys();
    Gateway::with_config(json!({
        "resources": [
            { "path_prefix": "/mcp/github", "resource": GITHUB, "authorization_servers": [ISSUER],
              "scopes_supported": ["github"], "required_scopes": ["github"] },
            { "path_prefix": "/mcp/jira", "resource": JIRA, "authorization_servers": [ISSUER],
              "scopes_supported": ["jira", "jira:write"], "required_scopes": ["jira"],
              "tool_scopes": [{ "method": "tools/call", "name": "create_*", "scopes": ["jira:write"] }] }
        ],
        "issuers": [{ "issuer": ISSUER, "jwks": inline_jwks(&[&k.ed]) }],
        "identity_headers": { "sub": "x-mcp-subject" },
        "unmatched_paths": unmatched_paths
    }))
}

fn token_for(gw: &Gateway, audience: &str, scope: &str) -> String {
    gw.jws(&keys().ed, scope)
        .claim("aud", json!(audience))
        .sign(&keys().ed)
}

#[test]
fn each_resource_has_its_own_path_inserted_metadata_and_no_root_default() {
    let mut gw = two_resources("reject");
    let github = gw.send(Request::get(
        "/.well-known/oauth-protected-resource/mcp/github",
    ));
    let jira = gw.send(Request::get(
        "/.well-known/oauth-protected-resource/mcp/jira",
    ));
    let root = gw.send(Request::get("/.well-known/oauth-protected-resource"));
    assert_eq!(
        (github.status(), github.json()["resource"].clone()),
        (200, json!(GITHUB))
    );
    assert_eq!(
        (jira.status(), jira.json()["scopes_supported"].clone()),
        (200, json!(["jira", "jira:write"]))
    );
    assert_eq!(root.status(), 404);
}

#[test]
fn challenges_point_at_the_resource_of_the_requested_path() {
    let mut gw = two_resources("reject");
    let got = gw.send(Request::get("/mcp/jira"));
    let challenge = got.challenge();
    assert_eq!(got.status(), 401);
    assert_eq!(
        challenge.get("resource_metadata").map(String::as_str),
        Some("https://gw.example.com/.well-known/oauth-protected-resource/mcp/jira")
    );
    assert_eq!(challenge.get("scope").map(String::as_str), Some("jira"));
}

#[test]
fn a_token_issued_for_one_resource_is_refused_by_the_other() {
    let mut gw = two_resources("reject");
    let github_token = token_for(&gw, GITHUB, "github jira");
    let on_github = gw.send(Request::get("/mcp/github").bearer(&github_token));
    let on_jira = gw.send(Request::get("/mcp/jira").bearer(&github_token));
    assert!(on_github.reached_upstream(), "{:?}", on_github.reply);
    assert_eq!(on_jira.status(), 401);
    assert_eq!(
        on_jira
            .challenge()
            .get("error_description")
            .map(String::as_str),
        Some("audience not accepted")
    );
}

#[test]
fn tool_rules_apply_only_to_their_resource() {
    let mut gw = two_resources("reject");
    let jira_token = token_for(&gw, JIRA, "jira");
    let call = |tool: &str| {
        let body: Value =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}});
        let mut request = Request::post(body);
        request.headers.retain(|(name, _)| name != b":path");
        request.header(":path", "/mcp/jira")
    };
    let create = gw.send(call("create_issue").bearer(&jira_token));
    let search = gw.send(call("search").bearer(&jira_token));
    assert_eq!(create.status(), 403);
    assert_eq!(
        create.challenge().get("scope").map(String::as_str),
        Some("jira jira:write")
    );
    create.assert_denied_from_the_body(403, "create_issue");
    assert!(search.delivered());
}

#[test]
fn unmatched_paths_pass_untouched_when_configured_to() {
    let mut gw = two_resources("pass");
    let got = gw.send(Request::get("/health").header("authorization", "Basic abc"));
    assert!(got.reached_upstream());
    assert_eq!(
        got.upstream_header("authorization").as_deref(),
        Some("Basic abc")
    );
}
