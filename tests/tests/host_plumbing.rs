//! Self-tests of the test host against a hand-written WAT filter (`fixtures/plumbing.wat`),
//! so a failure in the filter suites can be told apart from a failure of the host.

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

use std::time::Duration;

use mcp_auth_tests::{Action, Callback, Headers, Host, LogLevel, Plugin};

fn plugin() -> Plugin {
    Plugin::from_bytes(include_str!("fixtures/plumbing.wat")).expect("the WAT fixture compiles")
}

fn configured(plugin: &Plugin) -> Host {
    let mut host = plugin.new_host().expect("VM starts");
    assert!(host.configure("{}").expect("on_configure runs"));
    host
}

const GET: [(&str, &str); 3] = [
    (":method", "GET"),
    (":path", "/"),
    (":authority", "example"),
];

#[test]
fn configuration_is_passed_to_on_configure_and_its_verdict_returned() {
    let plugin = plugin();
    let mut host = plugin.new_host().unwrap();
    assert!(!host.configure("not json").unwrap());
    assert!(host.logged(LogLevel::Error, "bad config"));
    assert!(host.configure("{\"ok\":true}").unwrap());
    assert_eq!(host.tick_period(), Some(Duration::from_secs(1)));
}

#[test]
fn wasi_stderr_is_captured() {
    let host = configured(&plugin());
    assert_eq!(host.stderr(), "hello stderr\n");
}

#[test]
fn continued_request_reaches_upstream_with_the_filters_header_edits() {
    let plugin = plugin();
    let mut host = configured(&plugin);
    let stream = host.new_http_stream().unwrap();
    let action = host.send_request_headers(stream, GET, true).unwrap();
    let upstream = host.upstream_request(stream).expect("forwarded");
    assert_eq!(action, Action::Continue);
    assert_eq!(upstream.headers.get("x-seen"), Some("yes"));
    assert_eq!(upstream.headers.get(":path"), Some("/"));
    assert!(host.local_response(stream).is_none());
    assert_eq!(plugin.metric("calls"), Some(1));
}

#[test]
fn local_response_is_recorded_and_the_upstream_is_not_reached() {
    let mut host = configured(&plugin());
    let stream = host.new_http_stream().unwrap();
    let mut headers = GET.to_vec();
    headers.push(("X-Reject", "1"));
    let action = host.send_request_headers(stream, headers, true).unwrap();
    let reply = host.local_response(stream).expect("local response");
    assert_eq!(action, Action::Pause);
    assert_eq!((reply.status, reply.details.as_str()), (403, "denied"));
    assert_eq!(reply.body_text(), "nope");
    assert_eq!(reply.headers.get("x-why"), Some("test"));
    assert!(host.upstream_request(stream).is_none());
}

#[test]
fn paused_request_is_resumed_when_the_http_call_is_answered() {
    let plugin = plugin();
    let mut host = configured(&plugin);
    let stream = host.new_http_stream().unwrap();
    let mut headers = GET.to_vec();
    headers.push(("x-wait", "1"));
    assert_eq!(
        host.send_request_headers(stream, headers, false).unwrap(),
        Action::Pause
    );
    // Envoy's StopAllIteration: the chunk waits in the host; the filter does not see it.
    assert_eq!(
        host.send_request_body(stream, b"part1 ", false).unwrap(),
        None
    );
    assert_eq!(plugin.metric("bodies"), Some(0));
    assert_eq!(
        host.held_request(stream),
        Some((Some(&b"part1 "[..]), None))
    );
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        (
            call.cluster.as_str(),
            call.method(),
            call.path(),
            call.authority()
        ),
        ("keys", Some("GET"), Some("/keys"), Some("as"))
    );
    assert_eq!(call.timeout, Duration::from_millis(500));
    assert!(host.upstream_request(stream).is_none());

    host.respond_http_call(
        call.token,
        200,
        [("content-type", "application/json")],
        b"{}",
    )
    .unwrap();
    // Continued: the headers go on, the held chunk reaches the body callback, which pauses.
    let upstream = host.upstream_request(stream).expect("resumed");
    assert_eq!(upstream.headers.get("x-seen"), Some("yes"));
    assert!(upstream.body.is_empty() && !upstream.complete);
    assert_eq!(
        host.callbacks(stream),
        [
            (Callback::RequestHeaders, Action::Pause),
            (
                Callback::RequestBody {
                    size: 6,
                    end_of_stream: false
                },
                Action::Pause
            )
        ]
    );
    assert_eq!(host.buffered_request_body(stream), Some(&b"part1 "[..]));
    assert_eq!(host.request_continue_calls(stream), 1);
    assert!(host.pending_http_calls().is_empty());

    assert_eq!(
        host.send_request_body(stream, b"part2", true).unwrap(),
        Some(Action::Continue)
    );
    let upstream = host.upstream_request(stream).unwrap();
    assert_eq!(upstream.body, b"part1 part2");
    assert!(upstream.complete && !upstream.reset);
}

#[test]
fn body_and_trailers_held_by_a_paused_header_phase_are_delivered_in_order_on_resume() {
    let plugin = plugin();
    let mut host = configured(&plugin);
    let stream = host.new_http_stream().unwrap();
    let mut headers = GET.to_vec();
    headers.push(("x-wait", "1"));
    host.send_request_headers(stream, headers, false).unwrap();
    assert_eq!(host.send_request_body(stream, b"ab", false).unwrap(), None);
    assert_eq!(host.send_request_body(stream, b"c", false).unwrap(), None);
    assert_eq!(
        host.send_request_trailers(stream, [("grpc-status", "0")])
            .unwrap(),
        None
    );
    assert_eq!(
        (plugin.metric("bodies"), plugin.metric("trailers")),
        (Some(0), Some(0))
    );
    let token = host.pending_http_calls()[0].token;
    host.respond_http_call(token, 200, Headers::new(), b"")
        .unwrap();
    // The held body arrives in one piece, not at end of stream (trailers follow); the
    // trailers callback continues and takes the buffered body along.
    assert_eq!(
        host.callbacks(stream)[1..],
        [
            (
                Callback::RequestBody {
                    size: 3,
                    end_of_stream: false
                },
                Action::Pause
            ),
            (Callback::RequestTrailers, Action::Continue)
        ]
    );
    let upstream = host.upstream_request(stream).expect("resumed");
    assert_eq!(upstream.body, b"abc");
    assert_eq!(
        upstream
            .trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status")),
        Some("0")
    );
    assert!(upstream.complete);
}

#[test]
fn http_call_times_out_as_the_clock_advances() {
    let plugin = plugin();
    let mut host = configured(&plugin);
    let stream = host.new_http_stream().unwrap();
    let mut headers = GET.to_vec();
    headers.push(("x-wait", "1"));
    host.send_request_headers(stream, headers, true).unwrap();
    host.advance(Duration::from_millis(499)).unwrap();
    assert!(host.local_response(stream).is_none());
    host.advance(Duration::from_millis(1)).unwrap();
    assert_eq!(host.local_response(stream).map(|r| r.status), Some(503));
    assert!(host.upstream_request(stream).is_none());
}

#[test]
fn ticks_fire_at_the_requested_period() {
    let plugin = plugin();
    let mut host = configured(&plugin);
    host.advance(Duration::from_millis(3500)).unwrap();
    assert_eq!(plugin.metric("ticks"), Some(3));
    host.tick().unwrap();
    assert_eq!(plugin.metric("ticks"), Some(4));
}

#[test]
fn metrics_are_shared_by_vms_of_one_plugin() {
    let plugin = plugin();
    let mut first = configured(&plugin);
    let mut second = configured(&plugin);
    for host in [&mut first, &mut second] {
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, GET, true).unwrap();
    }
    assert_eq!(plugin.metric("calls"), Some(2));
}

#[test]
fn calling_an_unimplemented_import_traps_naming_it_and_fails_the_vm() {
    let mut host = configured(&plugin());
    let stream = host.new_http_stream().unwrap();
    let mut headers = GET.to_vec();
    headers.push(("x-missing", "1"));
    let error = host
        .send_request_headers(stream, headers, true)
        .unwrap_err()
        .to_string();
    assert!(error.contains("env.proxy_not_a_real_hostcall"), "{error}");
    assert!(host.failure().is_some());
    assert!(host.new_http_stream().is_err());
}

#[test]
fn a_module_that_is_not_proxy_wasm_is_refused() {
    let plugin = Plugin::from_bytes("(module (memory (export \"memory\") 1))").unwrap();
    let error = plugin.new_host().err().expect("refused").to_string();
    assert!(error.contains("proxy_abi_version"), "{error}");
}

#[test]
fn finishing_a_stream_cancels_the_http_calls_it_dispatched() {
    let mut host = configured(&plugin());
    let stream = host.new_http_stream().unwrap();
    let mut headers = GET.to_vec();
    headers.push(("x-wait", "1"));
    host.send_request_headers(stream, headers, true).unwrap();
    assert_eq!(host.pending_http_calls().len(), 1);
    host.finish_stream(stream).unwrap();
    assert!(host.pending_http_calls().is_empty());
    assert_eq!(host.done_calls(), 0);
}

#[test]
fn shared_data_has_compare_and_swap_semantics_across_vms() {
    let plugin = plugin();
    let mut first = configured(&plugin);
    let mut second = configured(&plugin);
    let mut headers = GET.to_vec();
    headers.push(("x-cas", "1"));
    let stream = first.new_http_stream().unwrap();
    first
        .send_request_headers(stream, headers.clone(), true)
        .unwrap();
    // NotFound, Ok, Ok, Ok (fresh cas), CasMismatch (stale cas), Ok (cas 0 always writes)
    assert!(first.logged(LogLevel::Info, "100080"), "{:?}", first.logs());
    assert_eq!(plugin.shared_data(b"k"), Some(b"v3".to_vec()));

    let stream = second.new_http_stream().unwrap();
    second.send_request_headers(stream, headers, true).unwrap();
    // The key exists for the second VM too: its first get succeeds.
    assert!(
        second.logged(LogLevel::Info, "000080"),
        "{:?}",
        second.logs()
    );
}
