//! Envoy stats an operator watches: one counter per outcome.

use crate::keys::keys;
use crate::support::{ALLOWED_ORIGIN, Gateway, MAX_BODY, Request};

#[test]
fn each_outcome_increments_exactly_its_counter() {
    let mut gw = Gateway::inline();
    let k = keys();
    let tools = gw.token(&k.ed, "mcp:tools");
    let expired = gw
        .jws(&k.ed, "mcp:tools")
        .claim("exp", serde_json::json!(gw.now() - 3600))
        .claim("iat", serde_json::json!(gw.now() - 7200))
        .sign(&k.ed);
    let requests = [
        Request::get("/mcp").bearer(&tools),
        Request::get("/mcp").bearer(&tools),
        Request::get("/mcp"),
        Request::get("/mcp").bearer(&expired),
        Request::get("/mcp").bearer(&tools).bearer(&tools), // rejected before validation
        Request::tool_call("admin_report").bearer(&tools),
        Request::get("/mcp").header("origin", "http://evil.example"),
        Request::tool_call("whoami")
            .header("mcp-method", "tools/list")
            .bearer(&tools),
        Request::tool_call(&"x".repeat(MAX_BODY)).bearer(&tools),
        Request::get("/elsewhere"),
        Request::get("/.well-known/oauth-protected-resource/mcp"),
        Request::new("OPTIONS", "/mcp").header("origin", ALLOWED_ORIGIN),
    ];
    for request in requests {
        gw.send(request);
    }
    let counters: Vec<(&str, i64)> = [
        "allowed",
        "denied.missing_token",
        "denied.invalid_token",
        "denied.invalid_request",
        "denied.insufficient_scope",
        "denied.origin",
        "denied.bad_mcp_request",
        "denied.body_too_large",
        "denied.unmatched_path",
        "metadata.served",
        "preflight",
        "cache.miss",
        "cache.hit",
        "denied.keys_unavailable",
    ]
    .into_iter()
    .map(|name| (name, gw.metric(name)))
    .collect();
    assert_eq!(
        counters,
        [
            ("allowed", 2),
            ("denied.missing_token", 1),
            ("denied.invalid_token", 1),
            ("denied.invalid_request", 1),
            ("denied.insufficient_scope", 1),
            ("denied.origin", 1),
            ("denied.bad_mcp_request", 1),
            ("denied.body_too_large", 1),
            ("denied.unmatched_path", 1),
            ("metadata.served", 1),
            ("preflight", 1),
            // Misses: the first use of the good token and the expired token. The token is
            // checked before the body, so the three later requests carrying it are hits.
            ("cache.miss", 2),
            ("cache.hit", 4),
            ("denied.keys_unavailable", 0),
        ]
    );
}
