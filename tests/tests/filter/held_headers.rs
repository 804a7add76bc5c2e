//! Per-tool decisions on a host that holds paused request headers while the filter reads the
//! body (Envoy 1.35+ `allow_on_headers_stop_iteration` with `hold_headers_for_body`): a tool
//! call the filter refuses never reaches the upstream, not even its headers.

use mcp_auth_tests::{Action, Callback, Host, StreamId};
use serde_json::json;

use crate::keys::keys;
use crate::support::{Exchange, Gateway, MAX_BODY, Request, inline_jwks, look, remote_jwks};

fn holding() -> Gateway {
    let k = keys();
    Gateway::holding(inline_jwks(&[&k.ed, &k.ec, &k.rsa]))
}

/// Headers (not ending the stream), then each chunk, the last one ending the stream.
fn send_chunks(host: &mut Host, request: Request, chunks: &[&[u8]]) -> Exchange {
    let stream = host.new_http_stream().expect("context create");
    host.send_request_headers(stream, request.headers, false)
        .expect("on_request_headers");
    for (i, chunk) in chunks.iter().enumerate() {
        host.send_request_body(stream, chunk, i + 1 == chunks.len())
            .expect("on_request_body");
    }
    look(host, stream)
}

fn headers_only(host: &mut Host, request: Request) -> StreamId {
    let stream = host.new_http_stream().expect("context create");
    host.send_request_headers(stream, request.headers, false)
        .expect("on_request_headers");
    stream
}

/// Refused by the filter with `status` while the upstream saw nothing at all.
fn assert_refused_before_the_upstream(got: &Exchange, status: u32, what: &str) {
    assert_eq!(got.status(), status, "{what}: {:?}", got.reply);
    assert_eq!(
        got.header_action(),
        Some(Action::Pause),
        "{what}: header phase"
    );
    assert!(
        !got.reached_upstream(),
        "{what}: the upstream got {:?}",
        got.upstream
    );
}

#[test]
fn a_refused_tool_call_of_a_client_without_mcp_method_never_reaches_the_upstream() {
    let mut gw = holding();
    let token = gw.token(&keys().ed, "mcp:tools");
    let got = gw.send(Request::tool_call("admin_report").bearer(&token));
    assert_refused_before_the_upstream(&got, 403, "admin_report without mcp:admin");
    assert_eq!(
        got.challenge().get("error").map(String::as_str),
        Some("insufficient_scope")
    );
    assert_eq!(gw.metric("denied.insufficient_scope"), 1);
}

#[test]
fn a_permitted_tool_call_goes_on_with_its_headers_and_body_together() {
    let mut gw = holding();
    let token = gw.token(&keys().ed, "mcp:tools");
    let request = Request::tool_call("whoami").bearer(&token);
    let body = request.body.clone().unwrap_or_default();
    let got = gw.send(request);
    assert_eq!(got.actions, [Action::Pause, Action::Continue]);
    assert!(got.delivered(), "{got:?}");
    assert_eq!(got.upstream.as_ref().map(|u| u.body.clone()), Some(body));
    assert_eq!(got.upstream_header("authorization"), None);
    assert_eq!(
        got.upstream_header("x-mcp-subject").as_deref(),
        Some("user-42")
    );
    assert_eq!(gw.metric("allowed"), 1);
}

#[test]
fn a_body_in_many_chunks_keeps_everything_held_until_the_last() {
    let mut gw = holding();
    let token = gw.token(&keys().ed, "mcp:tools");
    for (tool, delivered) in [("whoami", true), ("admin_report", false)] {
        let request = Request::tool_call(tool).bearer(&token);
        let body = request.body.clone().unwrap_or_default();
        let chunks: Vec<&[u8]> = body.chunks(7).collect();
        let stream = headers_only(&mut gw.host, request);
        let (last, first) = chunks.split_last().expect("chunks");
        for chunk in first {
            let action = gw.host.send_request_body(stream, chunk, false).unwrap();
            assert_eq!(action, Some(Action::Pause), "{tool}");
            assert!(gw.host.upstream_request(stream).is_none(), "{tool}");
            assert!(gw.host.request_headers_held(stream), "{tool}");
        }
        gw.host.send_request_body(stream, last, true).unwrap();
        let got = look(&gw.host, stream);
        if delivered {
            assert!(got.delivered(), "{got:?}");
            assert_eq!(got.upstream.map(|u| u.body), Some(body));
        } else {
            assert_refused_before_the_upstream(&got, 403, tool);
        }
    }
}

#[test]
fn requests_that_need_no_body_are_not_held() {
    let mut gw = holding();
    let token = gw.token(&keys().ed, "mcp:tools");
    let stream = gw.send(
        Request::get("/mcp")
            .header("accept", "text/event-stream")
            .bearer(&token),
    );
    assert_eq!(stream.actions, [Action::Continue]);
    assert!(stream.delivered());
    let delete = gw.send(Request::new("DELETE", "/mcp").bearer(&token));
    assert_eq!(delete.actions, [Action::Continue]);
    let mut config = crate::support::config(inline_jwks(&[&keys().ed]));
    config["hold_headers_for_body"] = json!(true);
    config["resources"][0]["tool_scopes"] = json!([]);
    let mut rule_less = Gateway::with_config(config);
    rule_less.host.set_headers_stop_iteration(true);
    let token = rule_less.token(&keys().ed, "mcp:tools");
    let got = rule_less.host.new_http_stream().unwrap();
    let action = rule_less
        .host
        .send_request_headers(
            got,
            Request::tool_call("admin_report").bearer(&token).headers,
            false,
        )
        .unwrap();
    assert_eq!(
        action,
        Action::Continue,
        "a route without tool_scopes never waits for the body"
    );
    assert!(rule_less.host.upstream_request(got).is_some());
}

#[test]
fn an_oversize_or_empty_body_is_refused_before_the_upstream() {
    let mut gw = holding();
    let token = gw.token(&keys().ed, "mcp:tools");
    let huge = "x".repeat(MAX_BODY + 1);
    let oversize = gw.send(Request::tool_call(&huge).bearer(&token));
    assert_refused_before_the_upstream(&oversize, 413, "oversize");
    let empty = send_chunks(
        &mut gw.host,
        Request::new("POST", "/mcp").bearer(&token),
        &[b""],
    );
    assert_refused_before_the_upstream(&empty, 400, "empty body ending the stream");
    assert_eq!(
        empty.json()["error_description"],
        json!("missing JSON-RPC body")
    );
}

#[test]
fn trailers_end_the_body_and_the_decision_on_a_holding_host() {
    let mut gw = holding();
    let token = gw.token(&keys().ed, "mcp:tools");
    for (tool, delivered) in [("whoami", true), ("admin_report", false)] {
        let request = Request::tool_call(tool).bearer(&token);
        let body = request.body.clone().unwrap_or_default();
        let stream = headers_only(&mut gw.host, request);
        assert_eq!(
            gw.host.send_request_body(stream, &body, false).unwrap(),
            Some(Action::Pause)
        );
        gw.host
            .send_request_trailers(stream, vec![(b"x-checksum".to_vec(), b"abc".to_vec())])
            .unwrap();
        let got = look(&gw.host, stream);
        if delivered {
            assert!(got.delivered(), "{got:?}");
            assert!(got.upstream.as_ref().is_some_and(|u| u.trailers.is_some()));
        } else {
            assert_refused_before_the_upstream(&got, 403, "admin_report ended by trailers");
        }
    }
}

#[test]
fn a_call_waiting_for_keys_stays_held_and_is_answered_when_they_arrive() {
    let mut gw = Gateway::holding(remote_jwks());
    let k = keys();
    let token = gw.token(&k.ed, "mcp:tools");
    let refused = gw.send(Request::tool_call("admin_report").bearer(&token));
    let permitted_request = Request::tool_call("whoami").bearer(&token);
    let body = permitted_request.body.clone().unwrap_or_default();
    let permitted = gw.send(permitted_request);
    // Keys that arrive before the body is complete must not release what the host holds.
    let (first, rest) = body.split_at(10);
    let split = headers_only(&mut gw.host, Request::tool_call("whoami").bearer(&token));
    gw.host.send_request_body(split, first, false).unwrap();
    for waiting in [&refused, &permitted] {
        assert_eq!(
            waiting.callbacks,
            [
                (Callback::RequestHeaders, Action::Pause),
                (
                    Callback::RequestBody {
                        size: waiting_body_len(waiting, &gw),
                        end_of_stream: true
                    },
                    Action::Pause
                )
            ],
            "the body reached the filter while the headers are held"
        );
        assert!(waiting.reply.is_none() && !waiting.reached_upstream());
    }

    gw.serve_jwks(&[&k.ed]);
    let refused = gw.look(&refused);
    assert_refused_before_the_upstream(&refused, 403, "admin_report after the keys");
    let permitted = gw.look(&permitted);
    assert!(permitted.delivered(), "{permitted:?}");
    assert_eq!(
        permitted.upstream.as_ref().map(|u| u.body.clone()),
        Some(body.clone())
    );
    assert_eq!(gw.host.request_continue_calls(permitted.stream), 1);
    assert!(
        gw.host.upstream_request(split).is_none(),
        "keys before the whole body: still held"
    );
    gw.host.send_request_body(split, rest, true).unwrap();
    let split = look(&gw.host, split);
    assert!(split.delivered(), "{split:?}");
    assert_eq!(split.upstream.map(|u| u.body), Some(body));
}

fn waiting_body_len(waiting: &Exchange, gw: &Gateway) -> usize {
    gw.host
        .buffered_request_body(waiting.stream)
        .map_or(0, <[u8]>::len)
}

#[test]
fn headers_that_disagree_with_the_body_get_a_header_mismatch_before_the_upstream() {
    let mut gw = holding();
    let token = gw.token(&keys().ed, "mcp:tools mcp:admin");
    let got = gw.send(
        Request::tool_call("admin_report")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "whoami")
            .bearer(&token),
    );
    assert_refused_before_the_upstream(&got, 400, "Mcp-Name whoami, body admin_report");
    assert_eq!(got.json()["error"]["code"], json!(-32020));
    assert_eq!(got.json()["id"], json!(1));
}
