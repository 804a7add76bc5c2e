//! What the upstream MCP server receives for an allowed request.

use mcp_auth_tests::Action;
use serde_json::{Value, json};

use crate::keys::keys;
use crate::support::{Gateway, Request};

#[test]
fn valid_tokens_of_each_key_type_are_forwarded_without_the_token_and_with_identity_headers() {
    let mut gw = Gateway::inline();
    let k = keys();
    for key in [&k.ed, &k.ec, &k.rsa] {
        let token = gw.token(key, "mcp:tools");
        let got = gw.send(Request::get("/mcp").bearer(&token));
        assert_eq!(got.status(), 0, "{} not answered locally", key.alg());
        assert_eq!(got.actions, [Action::Continue], "{}", key.alg());
        assert_eq!(got.upstream_header("authorization"), None, "{}", key.alg());
        assert_eq!(
            got.upstream_header("x-mcp-subject").as_deref(),
            Some("user-42"),
            "{}",
            key.alg()
        );
        assert_eq!(
            got.upstream_header("x-mcp-client-id").as_deref(),
            Some("client-7"),
            "{}",
            key.alg()
        );
        assert_eq!(
            got.upstream_header("x-mcp-scope").as_deref(),
            Some("mcp:tools"),
            "{}",
            key.alg()
        );
    }
    assert_eq!(gw.metric("allowed"), 3);
}

#[test]
fn client_sent_identity_headers_are_replaced_by_verified_values() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let got = gw.send(
        Request::get("/mcp")
            .header("x-mcp-subject", "admin")
            .header("X-MCP-Subject", "root")
            .header("x-mcp-scope", "mcp:admin")
            .bearer(&token),
    );
    let upstream = got.upstream.expect("forwarded");
    assert_eq!(upstream.headers.get_all("x-mcp-subject"), ["user-42"]);
    assert_eq!(upstream.headers.get_all("x-mcp-scope"), ["mcp:tools"]);
}

#[test]
fn client_sent_identity_header_is_removed_even_when_the_claim_is_absent() {
    let mut gw = Gateway::inline();
    let token = gw
        .jws(&keys().ed, "mcp:tools")
        .claim("client_id", Value::Null)
        .sign(&keys().ed);
    let got = gw.send(
        Request::get("/mcp")
            .header("x-mcp-client-id", "spoofed")
            .bearer(&token),
    );
    assert_eq!(got.upstream_header("x-mcp-client-id"), None);
}

#[test]
fn token_with_an_array_audience_containing_the_resource_and_scp_claim_is_accepted() {
    let mut gw = Gateway::inline();
    let token = gw
        .jws(&keys().ed, "")
        .claim("scope", Value::Null)
        .claim("scp", json!(["mcp:tools"]))
        .claim(
            "aud",
            json!(["http://other.example", crate::support::RESOURCE]),
        )
        .header("typ", json!("JWT"))
        .sign(&keys().ed);
    let got = gw.send(Request::get("/mcp").bearer(&token));
    assert!(got.reached_upstream(), "{:?}", got.reply);
}

#[test]
fn mcp_param_headers_reach_the_upstream_untouched() {
    // 2026-07-28 clients mirror tool arguments marked `x-mcp-header` into `Mcp-Param-<Name>`,
    // plain or in the Base64 sentinel form; an intermediary that does not know the tool's
    // schema forwards them as they are, on either host behaviour.
    let params = [
        ("Mcp-Param-Region", "us-west1"),
        ("mcp-param-greeting", "=?base64?SGVsbG8sIOS4lueVjA==?="),
        ("Mcp-Param-Count", "42"),
    ];
    let k = keys();
    for mut gw in [
        Gateway::inline(),
        Gateway::holding(crate::support::inline_jwks(&[&k.ed])),
    ] {
        let token = gw.token(&k.ed, "mcp:tools");
        let mut request = Request::tool_call("whoami")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "whoami")
            .bearer(&token);
        for (name, value) in params {
            request = request.header(name, value);
        }
        let got = gw.send(request);
        assert!(got.delivered(), "{got:?}");
        for (name, value) in params {
            assert_eq!(got.upstream_header(name).as_deref(), Some(value), "{name}");
        }
    }
}
