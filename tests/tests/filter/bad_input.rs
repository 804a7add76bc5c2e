//! Bad input never traps the VM: each gets the documented response.

use mcp_auth_tests::Headers;
use serde_json::json;

use crate::keys::{b64, keys};
use crate::support::{Gateway, Request};

#[test]
fn hostile_requests_get_a_response_and_never_trap_the_vm() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools mcp:admin");
    let huge = "a".repeat(200 * 1024);
    let cases: Vec<(&str, Request, u32)> = vec![
        (
            "huge bearer token",
            Request::get("/mcp").header("authorization", &format!("Bearer {huge}")),
            401,
        ),
        (
            "huge unrelated header",
            Request::get("/mcp").header("x-junk", &huge),
            401,
        ),
        (
            "invalid UTF-8 in Authorization",
            Request::get("/mcp").raw_header(b"authorization", b"Bearer \xff\xfe\xfd"),
            401,
        ),
        (
            "invalid UTF-8 in another header",
            Request::get("/mcp")
                .raw_header(b"x-junk", b"\xc3\x28")
                .bearer(&token),
            0,
        ),
        ("invalid UTF-8 in the path", raw_path(b"/mcp\xff"), 404),
        (
            "invalid UTF-8 in Mcp-Name",
            Request::tool_call("whoami")
                .header("mcp-method", "tools/call")
                .raw_header(b"mcp-name", b"\xff")
                .bearer(&token),
            400,
        ),
        (
            "invalid UTF-8 body",
            Request::new("POST", "/mcp")
                .body(b"\xff\xfe{")
                .bearer(&token),
            400,
        ),
        (
            "JSON body that is not JSON-RPC",
            Request::post(json!([1, 2, 3])).bearer(&token),
            400,
        ),
        (
            "deeply nested body",
            Request::new("POST", "/mcp")
                .body("[".repeat(4000).as_bytes())
                .bearer(&token),
            400,
        ),
        (
            "claims that are not an object",
            Request::get("/mcp").bearer(&format!(
                "{}.{}.{}",
                b64(br#"{"alg":"EdDSA","kid":"ed-1"}"#),
                b64(b"[1]"),
                b64(b"x")
            )),
            401,
        ),
        (
            "exp of the wrong type",
            Request::get("/mcp").bearer(
                &gw.jws(&keys().ed, "mcp:tools")
                    .claim("exp", json!("soon"))
                    .sign(&keys().ed),
            ),
            401,
        ),
        (
            "invalid base64url",
            Request::get("/mcp").bearer("@@@.###.$$$"),
            401,
        ),
        (
            "many headers",
            (0..2000).fold(Request::get("/mcp"), |r, i| {
                r.header(&format!("x-h{i}"), "v")
            }),
            401,
        ),
    ];
    // Rejected once the body is read: the headers had already gone on (valid token), the
    // body never did.
    let decided_from_the_body = [
        "invalid UTF-8 body",
        "JSON body that is not JSON-RPC",
        "deeply nested body",
    ];
    for (name, request, expected) in cases {
        let got = gw.send(request);
        assert_eq!(got.status(), expected, "{name}: {:?}", got.reply);
        if decided_from_the_body.contains(&name) {
            got.assert_denied_from_the_body(expected, name);
        } else if expected != 0 {
            assert!(!got.reached_upstream(), "{name}: {:?}", got.upstream);
        } else {
            assert!(got.delivered(), "{name}");
        }
    }
    assert!(gw.host.failure().is_none());
}

fn raw_path(path: &[u8]) -> Request {
    let mut request = Request::get("/");
    request.headers.retain(|(name, _)| name != b":path");
    request.raw_header(b":path", path)
}

#[test]
fn request_without_pseudo_headers_is_answered_locally_not_forwarded() {
    let mut gw = Gateway::inline();
    let stream = gw.host.new_http_stream().unwrap();
    gw.host
        .send_request_headers(stream, Headers::new(), true)
        .expect("no trap");
    let status = gw.host.local_response(stream).map(|r| r.status);
    assert!(
        status.is_some_and(|s| (400..500).contains(&s)),
        "{status:?}"
    );
    assert!(gw.host.upstream_request(stream).is_none());
}

#[test]
fn upstream_response_with_invalid_utf8_headers_still_gets_cors_headers() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let origin = crate::support::ALLOWED_ORIGIN;
    let got = gw.send(Request::get("/mcp").header("origin", origin).bearer(&token));
    let response = Headers::from_pairs([
        (&b":status"[..], &b"200"[..]),
        (b"x-upstream", b"\xff\xfe"),
        (b"mcp-session-id", b"abc"),
    ]);
    gw.host
        .send_response_headers(got.stream, response, false)
        .expect("no trap");
    gw.host
        .send_response_body(got.stream, b"\xff data", true)
        .expect("no trap");
    let downstream = gw.host.downstream_response(got.stream).expect("forwarded");
    assert_eq!(
        downstream.headers.get("access-control-allow-origin"),
        Some(origin)
    );
    assert_eq!(
        downstream.headers.get_bytes("x-upstream"),
        Some(&b"\xff\xfe"[..])
    );
    assert_eq!(downstream.body, b"\xff data");
}
