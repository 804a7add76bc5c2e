use serde_json::json;

use crate::support::{Gateway, ISSUER, RESOURCE, Request};

fn expected_document() -> serde_json::Value {
    json!({
        "resource": RESOURCE,
        "authorization_servers": [ISSUER],
        "scopes_supported": ["mcp:tools", "mcp:admin"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Demo MCP server",
        "resource_documentation": "http://localhost:10000/docs"
    })
}

#[test]
fn path_inserted_metadata_is_public_json_cacheable_and_cors_readable() {
    let mut gw = Gateway::inline();
    let got = gw.send(Request::get("/.well-known/oauth-protected-resource/mcp"));
    assert_eq!(got.status(), 200);
    assert_eq!(got.json(), expected_document());
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        got.header("cache-control").as_deref(),
        Some("public, max-age=3600")
    );
    assert_eq!(
        got.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(!got.reached_upstream());
    assert_eq!(gw.metric("metadata.served"), 1);
}

#[test]
fn root_metadata_serves_the_default_resource() {
    let mut gw = Gateway::inline();
    let got = gw.send(Request::get("/.well-known/oauth-protected-resource"));
    assert_eq!((got.status(), got.json()), (200, expected_document()));
}

#[test]
fn metadata_resource_comes_from_configuration_not_the_host_header() {
    let mut gw = Gateway::inline();
    let mut request = Request::get("/.well-known/oauth-protected-resource/mcp");
    request.headers.retain(|(name, _)| name != b":authority");
    let got = gw.send(request.header(":authority", "evil.example:666"));
    assert_eq!(got.json()["resource"], json!(RESOURCE));
}

#[test]
fn unknown_well_known_paths_are_404_never_401() {
    let mut gw = Gateway::inline();
    for path in [
        "/.well-known/oauth-protected-resource/other",
        "/.well-known/oauth-protected-resource/mcp/extra",
        "/.well-known/oauth-protected-resourcex",
    ] {
        let got = gw.send(Request::get(path));
        assert_eq!(got.status(), 404, "{path}");
        assert_eq!(got.json()["error"], json!("not_found"), "{path}");
        assert_eq!(got.header("www-authenticate"), None, "{path}");
        assert!(!got.reached_upstream(), "{path}");
    }
}

#[test]
fn metadata_preflight_is_answered_for_any_origin() {
    let mut gw = Gateway::inline();
    let got = gw.send(
        Request::new("OPTIONS", "/.well-known/oauth-protected-resource/mcp")
            .header("origin", "http://somewhere.example")
            .header("access-control-request-method", "GET"),
    );
    assert_eq!(got.status(), 204);
    assert_eq!(
        got.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(
        got.header("access-control-allow-methods").as_deref(),
        Some("GET, HEAD, OPTIONS")
    );
}

#[test]
fn metadata_rejects_other_methods_with_405_and_allow() {
    let mut gw = Gateway::inline();
    let got = gw.send(Request::new(
        "POST",
        "/.well-known/oauth-protected-resource/mcp",
    ));
    assert_eq!(got.status(), 405);
    assert_eq!(got.header("allow").as_deref(), Some("GET, HEAD, OPTIONS"));
}

#[test]
fn head_on_metadata_gets_the_same_status_and_headers() {
    let mut gw = Gateway::inline();
    let got = gw.send(Request::new(
        "HEAD",
        "/.well-known/oauth-protected-resource/mcp",
    ));
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        got.header("cache-control").as_deref(),
        Some("public, max-age=3600")
    );
}
