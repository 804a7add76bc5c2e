//! Verified-token cache in proxy-wasm shared data, shared by all workers of the plugin.

use std::time::Duration;

use serde_json::json;

use crate::keys::keys;
use crate::support::{Gateway, Request, send};

#[test]
fn second_request_with_the_same_token_is_a_cache_hit() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().rsa, "mcp:tools");
    let first = gw.send(Request::get("/mcp").bearer(&token));
    let second = gw.send(Request::get("/mcp").bearer(&token));
    assert!(first.reached_upstream() && second.reached_upstream());
    assert_eq!(
        second.upstream_header("x-mcp-subject").as_deref(),
        Some("user-42")
    );
    assert_eq!((gw.metric("cache.miss"), gw.metric("cache.hit")), (1, 1));
}

#[test]
fn token_verified_on_one_worker_is_a_cache_hit_on_another() {
    let mut gw = Gateway::inline();
    let mut other_worker = gw.another_worker();
    let token = gw.token(&keys().ec, "mcp:tools");
    assert!(
        gw.send(Request::get("/mcp").bearer(&token))
            .reached_upstream()
    );
    let on_other = send(&mut other_worker, Request::get("/mcp").bearer(&token));
    assert!(on_other.reached_upstream());
    assert_eq!((gw.metric("cache.miss"), gw.metric("cache.hit")), (1, 1));
}

#[test]
fn cached_token_stops_working_when_it_expires() {
    let mut gw = Gateway::inline();
    let now = gw.now();
    let token = gw
        .jws(&keys().ed, "mcp:tools")
        .claim("exp", json!(now + 30))
        .sign(&keys().ed);
    assert!(
        gw.send(Request::get("/mcp").bearer(&token))
            .reached_upstream()
    );
    gw.plugin.advance_clock(Duration::from_secs(120));
    let later = gw.send(Request::get("/mcp").bearer(&token));
    assert_eq!(later.status(), 401);
    assert_eq!(
        later
            .challenge()
            .get("error_description")
            .map(String::as_str),
        Some("token expired")
    );
}

#[test]
fn a_cached_token_still_needs_the_tools_scope() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    assert!(
        gw.send(Request::tool_call("whoami").bearer(&token))
            .reached_upstream()
    );
    assert_eq!(
        gw.send(Request::tool_call("admin_report").bearer(&token))
            .status(),
        403
    );
}

#[test]
fn a_disabled_cache_verifies_every_time() {
    let k = keys();
    let mut config = crate::support::config(crate::support::inline_jwks(&[&k.ed]));
    config["token_cache"] = json!({ "max_entries": 0 });
    let mut gw = Gateway::with_config(config);
    let token = gw.token(&k.ed, "mcp:tools");
    assert!(
        gw.send(Request::get("/mcp").bearer(&token))
            .reached_upstream()
    );
    assert!(
        gw.send(Request::get("/mcp").bearer(&token))
            .reached_upstream()
    );
    assert_eq!(gw.metric("cache.hit"), 0);
    assert!(gw.plugin.shared_data_keys().is_empty());
}

#[test]
fn the_shared_cache_holds_no_copy_of_the_token() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    gw.send(Request::get("/mcp").bearer(&token));
    let keys = gw.plugin.shared_data_keys();
    let signature = token
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .as_bytes()
        .to_vec();
    assert!(!keys.is_empty());
    for key in keys {
        let value = gw.plugin.shared_data(&key).unwrap_or_default();
        for stored in [&key, &value] {
            assert!(
                !stored
                    .windows(signature.len())
                    .any(|w| w == signature.as_slice())
            );
        }
    }
}
