//! Remote JWKS: fetched through the configured cluster, waiting requests, failures, rotation.

use std::time::Duration;

use mcp_auth_tests::{Action, Callback, Host};
use serde_json::json;

use crate::keys::{TestKey, ed_key, jwks, keys};
use crate::support::{
    Exchange, Gateway, JWKS_CLUSTER, JWKS_PATH, KEY_WAIT_MS, MIN_REFETCH_SECONDS, Request,
    answer_jwks, config, jwks_fetch, look, remote_jwks, send,
};

/// The filter's tick period (README: it ticks every 500 ms).
const TICK: Duration = Duration::from_millis(500);

#[test]
fn jwks_is_fetched_with_a_get_through_the_configured_cluster() {
    let mut gw = Gateway::remote();
    let token = gw.jwks_fetch();
    let call = gw
        .host
        .pending_http_calls()
        .into_iter()
        .find(|c| c.token == token)
        .expect("pending");
    assert_eq!(call.cluster, JWKS_CLUSTER);
    assert_eq!(call.method(), Some("GET"));
    assert_eq!(call.path(), Some("/jwks.json"));
    assert_eq!(call.authority(), Some("localhost:9000"));
    assert_eq!(call.timeout, Duration::from_millis(1000));
}

#[test]
fn request_arriving_before_the_keys_waits_and_is_resumed_when_they_arrive() {
    let mut gw = Gateway::remote();
    let k = keys();
    let token = gw.token(&k.ed, "mcp:tools");
    let waiting = gw.send(Request::get("/mcp").bearer(&token));
    assert_eq!(waiting.actions, [Action::Pause]);
    assert!(waiting.reply.is_none() && !waiting.reached_upstream());

    gw.serve_jwks(&[&k.ed, &k.ec]);
    let resumed = gw.look(&waiting);
    assert!(resumed.reached_upstream(), "{:?}", resumed.reply);
    assert_eq!(
        resumed.upstream_header("x-mcp-subject").as_deref(),
        Some("user-42")
    );
    assert_eq!(resumed.upstream_header("authorization"), None);
    assert_eq!(gw.host.request_continue_calls(waiting.stream), 1);
    assert_eq!(gw.metric("jwks_fetch.ok"), 1);
}

#[test]
fn request_waiting_for_keys_that_never_come_gets_503_after_the_bounded_wait() {
    let mut gw = Gateway::remote();
    let token = gw.token(&keys().ed, "mcp:tools");
    let waiting = gw.send(Request::get("/mcp").bearer(&token));
    let fetch = gw.jwks_fetch();
    answer_jwks(&mut gw.host, fetch, 500, "oops");
    gw.host
        .advance(Duration::from_millis(KEY_WAIT_MS - 100))
        .unwrap();
    let before_deadline = gw.look(&waiting);
    gw.host.advance(Duration::from_millis(200)).unwrap();
    let after = gw.look(&waiting);
    assert!(before_deadline.reply.is_none() && !before_deadline.reached_upstream());
    assert_eq!(after.status(), 503);
    assert_eq!(after.header("retry-after").as_deref(), Some("5"));
    assert_eq!(after.json()["error"], json!("temporarily_unavailable"));
    assert!(!after.reached_upstream());
    assert!(gw.metric("jwks_fetch.failed") >= 1);
    assert_eq!(gw.metric("denied.keys_unavailable"), 1);
}

#[test]
fn failed_refresh_keeps_the_last_good_keys() {
    let mut gw = Gateway::remote();
    let k = keys();
    gw.serve_jwks(&[&k.ed]);
    let refresh = gw.jwks_fetch();
    answer_jwks(&mut gw.host, refresh, 503, "down");
    let token = gw.token(&k.ed, "mcp:tools");
    let got = gw.send(Request::get("/mcp").bearer(&token));
    assert!(got.reached_upstream(), "{:?}", got.reply);
    assert_eq!(
        (gw.metric("jwks_fetch.ok"), gw.metric("jwks_fetch.failed")),
        (1, 1)
    );
}

#[test]
fn absurd_jwks_documents_count_as_failed_fetches_and_keep_the_last_good_keys() {
    let mut gw = Gateway::remote();
    let k = keys();
    gw.serve_jwks(&[&k.ed]);
    let absurd = [
        "not json".to_string(),
        "[]".to_string(),
        json!({"keys": "nope"}).to_string(),
        json!({"keys": (0..500).map(|i| json!({"kty": "oct", "kid": i})).collect::<Vec<_>>()})
            .to_string(),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        json!({"keys": [], "pad": "x".repeat(300 * 1024)}).to_string(),
    ];
    for (i, document) in absurd.iter().enumerate() {
        let fetch = gw.jwks_fetch();
        answer_jwks(&mut gw.host, fetch, 200, document);
        let token = gw.token(&k.ed, "mcp:tools");
        let got = gw.send(Request::get("/mcp").bearer(&token));
        assert!(
            got.reached_upstream(),
            "document {i} dropped the good keys: {:?}",
            got.reply
        );
    }
    assert_eq!(gw.metric("jwks_fetch.failed"), absurd.len() as i64);
}

#[test]
fn unknown_kid_triggers_a_refetch_and_the_rotated_key_is_then_accepted() {
    let mut gw = Gateway::remote();
    let k = keys();
    gw.serve_jwks(&[&k.ed]);
    let token = gw.token(&k.rotated, "mcp:tools");
    let waiting = gw.send(Request::get("/mcp").bearer(&token));
    assert!(
        waiting.reply.is_none() && !waiting.reached_upstream(),
        "{:?}",
        waiting.reply
    );
    gw.host.advance(TICK).unwrap();
    assert_eq!(
        gw.host.pending_http_calls().len(),
        1,
        "refetch within a tick"
    );

    gw.serve_jwks(&[&k.ed, &k.rotated]);
    assert!(gw.look(&waiting).reached_upstream());
    assert!(
        gw.send(Request::get("/mcp").bearer(&token))
            .reached_upstream()
    );
    assert_eq!(gw.metric("jwks_fetch.ok"), 2);
}

/// Sends `token` to `host`; if the filter waits for a kid refetch, answers it with `keys`.
fn send_answering_a_refetch(host: &mut Host, token: &str, keys: &[&TestKey]) -> Exchange {
    let got = send(host, Request::get("/mcp").bearer(token));
    if got.reply.is_some() || got.reached_upstream() {
        return got;
    }
    let fetch = jwks_fetch(host);
    answer_jwks(host, fetch, 200, &jwks(keys).to_string());
    look(host, got.stream)
}

#[test]
fn a_cached_token_is_refused_once_its_key_leaves_the_jwks() {
    let mut gw = Gateway::remote();
    let k = keys();
    gw.serve_jwks(&[&k.ed, &k.rotated]);
    // Valid well past the scheduled refresh, so only the key's removal can end the cache entry.
    let long_lived = |key: &TestKey| {
        gw.jws(key, "mcp:tools")
            .claim("exp", json!(gw.now() + 3600))
            .sign(key)
    };
    let (retired, current) = (long_lived(&k.ed), long_lived(&k.rotated));
    for _ in 0..2 {
        assert!(
            gw.send(Request::get("/mcp").bearer(&retired))
                .reached_upstream()
        );
    }
    assert_eq!(
        gw.metric("cache.hit"),
        1,
        "cached in this worker and in shared data"
    );

    // A worker that loads the rotated JWKS finds the entry in shared data but not its key.
    let mut other = gw.another_worker();
    let fetch = jwks_fetch(&mut other);
    answer_jwks(&mut other, fetch, 200, &jwks(&[&k.rotated]).to_string());
    // The verifying worker drops the key at its scheduled refresh.
    gw.serve_jwks(&[&k.rotated]);

    for host in [&mut other, &mut gw.host] {
        let refused = send_answering_a_refetch(host, &retired, &[&k.rotated]);
        assert_eq!(refused.status(), 401);
        assert!(!refused.reached_upstream());
        assert_eq!(
            refused
                .challenge()
                .get("error_description")
                .map(String::as_str),
            Some("unknown key id")
        );
        let accepted = send_answering_a_refetch(host, &current, &[&k.rotated]);
        assert!(accepted.reached_upstream(), "{:?}", accepted.reply);
    }
}

#[test]
fn unknown_kid_refetches_are_rate_limited() {
    let mut gw = Gateway::remote();
    let k = keys();
    gw.serve_jwks(&[&k.ed]);
    let first_unknown = ed_key("ed-unknown-1");
    let waiting = gw.send(Request::get("/mcp").bearer(&gw.token(&first_unknown, "mcp:tools")));
    gw.serve_jwks(&[&k.ed]);
    let rejected_after_refetch = gw.look(&waiting);

    let second_unknown = ed_key("ed-unknown-2");
    let immediate = gw.send(Request::get("/mcp").bearer(&gw.token(&second_unknown, "mcp:tools")));
    gw.host.advance(TICK).unwrap();
    let fetches_while_limited = gw.host.pending_http_calls().len();
    assert_eq!(rejected_after_refetch.status(), 401);
    assert_eq!(
        immediate.status(),
        401,
        "rate-limited refetch rejects at once"
    );
    assert_eq!(
        immediate
            .challenge()
            .get("error_description")
            .map(String::as_str),
        Some("unknown key id")
    );
    assert_eq!(fetches_while_limited, 0);

    gw.host
        .advance(Duration::from_secs(MIN_REFETCH_SECONDS + 1))
        .unwrap();
    let later = gw.send(Request::get("/mcp").bearer(&gw.token(&second_unknown, "mcp:tools")));
    gw.host.advance(TICK).unwrap();
    assert!(
        later.reply.is_none(),
        "after the interval an unknown kid refetches again"
    );
    assert_eq!(gw.host.pending_http_calls().len(), 1);
}

#[test]
fn jwks_cluster_unknown_to_the_proxy_fails_closed_with_503() {
    let mut config = crate::support::config(crate::support::remote_jwks());
    config["issuers"][0]["jwks"]["cluster"] = json!("no_such_cluster");
    let mut gw = Gateway::with_config(config);
    let token = gw.token(&keys().ed, "mcp:tools");
    let waiting = gw.send(Request::get("/mcp").bearer(&token));
    gw.host
        .advance(Duration::from_millis(KEY_WAIT_MS + 100))
        .unwrap();
    let got = gw.look(&waiting);
    assert_eq!(got.status(), 503);
    assert!(!got.reached_upstream());
    assert!(gw.metric("jwks_fetch.failed") >= 1);
}

#[test]
fn client_that_gives_up_while_waiting_does_not_disturb_the_others() {
    let mut gw = Gateway::remote();
    let k = keys();
    let token = gw.token(&k.ed, "mcp:tools");
    let gone = gw.send(Request::get("/mcp").bearer(&token));
    let staying = gw.send(Request::get("/mcp").bearer(&token));
    gw.host
        .finish_stream(gone.stream)
        .expect("stream teardown does not trap");
    gw.serve_jwks(&[&k.ed]);
    assert!(gw.look(&staying).reached_upstream());
    assert!(!gw.look(&gone).reached_upstream());
    assert!(gw.host.failure().is_none());
}

#[test]
fn tool_call_waiting_for_keys_has_its_body_checked_once_the_keys_arrive() {
    let mut gw = Gateway::remote();
    let k = keys();
    let narrow = gw.token(&k.ed, "mcp:tools");
    let admin_call = gw.send(Request::tool_call("admin_report").bearer(&narrow));
    let request = Request::tool_call("whoami").bearer(&narrow);
    let whoami_body = request.body.clone().unwrap_or_default();
    let whoami = gw.send(request);
    for waiting in [&admin_call, &whoami] {
        // Envoy stops all iteration on the paused header phase: the body waits in the host,
        // the filter has not seen it, the upstream has nothing.
        assert_eq!(
            waiting.callbacks,
            [(Callback::RequestHeaders, Action::Pause)]
        );
        assert!(waiting.reply.is_none() && !waiting.reached_upstream());
    }

    gw.serve_jwks(&[&k.ed]);
    // Continued by the filter once the token verified: the headers went on, then the held
    // body reached the filter, which refused the tool before any body byte went on.
    let admin_call = gw.look(&admin_call);
    assert_eq!(admin_call.status(), 403, "{:?}", admin_call.reply);
    assert_eq!(gw.host.request_continue_calls(admin_call.stream), 1);
    let upstream = admin_call.upstream.as_ref().expect("headers forwarded");
    assert!(upstream.body.is_empty() && upstream.reset && !upstream.complete);
    assert_eq!(
        admin_call.challenge().get("error").map(String::as_str),
        Some("insufficient_scope")
    );
    let whoami = gw.look(&whoami);
    assert!(whoami.delivered(), "{:?}", whoami.reply);
    assert_eq!(
        whoami.upstream.as_ref().map(|u| u.body.clone()),
        Some(whoami_body)
    );
    assert_eq!(whoami.upstream_header("authorization"), None);
    assert_eq!(
        whoami.callbacks,
        [
            (Callback::RequestHeaders, Action::Pause),
            (
                Callback::RequestBody {
                    size: whoami.upstream.as_ref().map_or(0, |u| u.body.len()),
                    end_of_stream: true
                },
                Action::Continue
            )
        ]
    );
    assert_eq!(gw.metric("allowed"), 1);
}

#[test]
fn a_jwks_without_a_usable_key_revokes_the_issuers_tokens_cached_ones_included() {
    let k = keys();
    // An empty key set, and one whose keys are all unusable: the issuer publishes nothing the
    // filter can verify with.
    let revocations = [
        json!({"keys": []}).to_string(),
        json!({"keys": [{"kty": "RSA", "kid": "tiny", "n": "AQAB", "e": "AQAB"}]}).to_string(),
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA"}]})
            .to_string(),
    ];
    for (i, document) in revocations.iter().enumerate() {
        let mut gw = Gateway::remote();
        gw.serve_jwks(&[&k.ed]);
        let token = gw.token(&k.ed, "mcp:tools");
        for _ in 0..2 {
            assert!(
                gw.send(Request::get("/mcp").bearer(&token))
                    .reached_upstream()
            );
        }
        assert_eq!(
            gw.metric("cache.hit"),
            1,
            "document {i}: the token is cached"
        );
        let refresh = gw.jwks_fetch();
        answer_jwks(&mut gw.host, refresh, 200, document);
        let refused = gw.send(Request::get("/mcp").bearer(&token));
        let refused = if refused.reply.is_some() {
            refused
        } else {
            // The unknown kid waits for one refetch, which still publishes nothing usable.
            let fetch = gw.jwks_fetch();
            answer_jwks(&mut gw.host, fetch, 200, document);
            gw.look(&refused)
        };
        assert_eq!(refused.status(), 401, "document {i}: {:?}", refused.reply);
        assert!(!refused.reached_upstream());
        assert_eq!(gw.metric("jwks_fetch.failed"), 0, "document {i}");
    }
}

#[test]
fn keys_past_max_stale_while_every_refresh_fails_give_503_until_a_fetch_succeeds() {
    const MAX_STALE_SECONDS: u64 = 600;
    let mut jwks_source = remote_jwks();
    jwks_source["max_stale_seconds"] = json!(MAX_STALE_SECONDS);
    let mut gw = Gateway::with_config(config(jwks_source));
    let k = keys();
    gw.serve_jwks(&[&k.ed]);
    let loaded = gw.now();
    // Valid well past max_stale, so only the staleness of the keys can refuse it.
    let token = gw
        .jws(&k.ed, "mcp:tools")
        .claim("exp", json!(loaded + 3 * MAX_STALE_SECONDS))
        .sign(&k.ed);
    assert!(
        gw.send(Request::get("/mcp").bearer(&token))
            .reached_upstream()
    );

    // Every refresh fails (an error status, a timeout, garbage) up to max_stale: the keys stay.
    let failures: [(u16, &str); 3] = [(503, "down"), (504, ""), (200, "<html>")];
    let mut failure = failures.iter().cycle();
    while gw.now() + 20 < loaded + MAX_STALE_SECONDS {
        let fetch = gw.jwks_fetch();
        let (status, body) = failure.next().expect("cycles");
        answer_jwks(&mut gw.host, fetch, *status, body);
    }
    assert!(
        gw.send(Request::get("/mcp").bearer(&token))
            .reached_upstream(),
        "the last good keys are used up to max_stale"
    );
    while gw.now() <= loaded + MAX_STALE_SECONDS {
        let fetch = gw.jwks_fetch();
        answer_jwks(&mut gw.host, fetch, 503, "down");
    }

    let waiting = gw.send(Request::get("/mcp").bearer(&token));
    for _ in 0..(KEY_WAIT_MS / 100 + 2) {
        let pending = gw
            .host
            .pending_http_calls()
            .into_iter()
            .find(|c| c.cluster == JWKS_CLUSTER && c.path() == Some(JWKS_PATH));
        if let Some(fetch) = pending {
            answer_jwks(&mut gw.host, fetch.token, 503, "down");
        }
        gw.host.advance(Duration::from_millis(100)).unwrap();
    }
    let refused = gw.look(&waiting);
    assert_eq!(refused.status(), 503, "{:?}", refused.reply);
    assert_eq!(refused.json()["error"], json!("temporarily_unavailable"));
    assert!(!refused.reached_upstream());
    assert_eq!(gw.metric("denied.keys_unavailable"), 1);

    gw.serve_jwks(&[&k.ed]);
    assert!(
        gw.send(Request::get("/mcp").bearer(&token))
            .reached_upstream(),
        "a successful fetch brings the keys back"
    );
}
