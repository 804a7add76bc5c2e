//! The gateway under test: the release filter loaded into the proxy-wasm test host with the
//! demo configuration, plus request builders and readers for what a client would see.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use mcp_auth_tests::{Action, Callback, Forwarded, Host, LocalResponse, Plugin, StreamId};
use serde_json::{Value, json};

use crate::keys::{Jws, TestKey, jwks, keys};

/// The demo configuration's resource, issuer and allowed browser origin.
pub const RESOURCE: &str = "http://localhost:10000/mcp";
pub const ISSUER: &str = "http://localhost:9000";
pub const METADATA_URL: &str = "http://localhost:10000/.well-known/oauth-protected-resource/mcp";
pub const ALLOWED_ORIGIN: &str = "http://localhost:6274";
pub const JWKS_CLUSTER: &str = "auth_server";
pub const JWKS_PATH: &str = "/jwks.json";
pub const MAX_BODY: usize = 4096;
pub const KEY_WAIT_MS: u64 = 2000;
pub const MIN_REFETCH_SECONDS: u64 = 30;
pub const REFRESH_SECONDS: u64 = 300;
/// Longer than the refresh interval: any scheduled fetch starts within it.
const FETCH_WAIT_LIMIT: Duration = Duration::from_secs(REFRESH_SECONDS + 10);

/// The release `.wasm`: `$MCP_AUTH_FILTER_WASM`, else the workspace's release build.
pub fn wasm_path() -> PathBuf {
    match std::env::var_os("MCP_AUTH_FILTER_WASM") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/wasm32-wasip1/release/mcp_auth_filter.wasm"),
    }
}

pub fn plugin() -> Plugin {
    let path = wasm_path();
    assert!(
        path.is_file(),
        "the release filter {} does not exist: run `cargo xtask build-wasm` (or set \
         MCP_AUTH_FILTER_WASM to the built mcp_auth_filter.wasm)",
        path.display()
    );
    Plugin::from_file(&path).expect("the filter .wasm loads")
}

pub fn inline_jwks(keys: &[&TestKey]) -> Value {
    json!({ "inline": jwks(keys) })
}

pub fn remote_jwks() -> Value {
    json!({
        "cluster": JWKS_CLUSTER,
        "uri": format!("{ISSUER}{JWKS_PATH}"),
        "refresh_interval_seconds": REFRESH_SECONDS,
        "fetch_timeout_ms": 1000,
        "min_refetch_interval_seconds": MIN_REFETCH_SECONDS,
    })
}

/// The demo configuration (`filter/README.md`, "Full example") with the given `jwks` source, a
/// smaller body limit and a shorter wait for keys, so tests reach both with small inputs.
pub fn config(jwks: Value) -> Value {
    let mut config = mcp_auth_test_support::demo_filter_config();
    config["issuers"][0]["jwks"] = jwks;
    config["max_body_bytes"] = json!(MAX_BODY);
    config["key_wait_timeout_ms"] = json!(KEY_WAIT_MS);
    config
}

/// The filter in one plugin, with its first VM ("worker") configured.
pub struct Gateway {
    pub plugin: Plugin,
    pub host: Host,
    pub config: Value,
}

impl Gateway {
    pub fn with_config(config: Value) -> Gateway {
        let plugin = plugin();
        let host = configured_vm(&plugin, &config);
        Gateway {
            plugin,
            host,
            config,
        }
    }

    /// Demo configuration with all three test keys inline.
    pub fn inline() -> Gateway {
        let k = keys();
        Gateway::with_config(config(inline_jwks(&[&k.ed, &k.ec, &k.rsa])))
    }

    /// Demo configuration fetching the JWKS from the `auth_server` cluster; nothing fetched yet.
    pub fn remote() -> Gateway {
        Gateway::with_config(config(remote_jwks()))
    }

    /// [`Gateway::inline`] / [`Gateway::remote`] on a host that holds paused request headers
    /// while the filter reads the body (Envoy's `allow_on_headers_stop_iteration`), with the
    /// filter told so (`hold_headers_for_body`).
    pub fn holding(jwks: Value) -> Gateway {
        let mut config = config(jwks);
        config["hold_headers_for_body"] = json!(true);
        let mut gw = Gateway::with_config(config);
        gw.host.set_headers_stop_iteration(true);
        gw
    }

    /// Another worker VM of the same plugin (shares clock, shared data and stats).
    pub fn another_worker(&self) -> Host {
        configured_vm(&self.plugin, &self.config)
    }

    pub fn metric(&self, name: &str) -> i64 {
        self.plugin.metric(&format!("mcp_auth.{name}")).unwrap_or(0)
    }

    pub fn now(&self) -> u64 {
        self.plugin.unix_now()
    }

    /// A valid access token for the demo resource signed by `key` with `scope`.
    pub fn token(&self, key: &TestKey, scope: &str) -> String {
        self.jws(key, scope).sign(key)
    }

    /// The claims of a valid token, ready to be broken by a test.
    pub fn jws(&self, key: &TestKey, scope: &str) -> Jws {
        let now = self.now();
        Jws::for_key(key)
            .claim("iss", json!(ISSUER))
            .claim("sub", json!("user-42"))
            .claim("aud", json!(RESOURCE))
            .claim("client_id", json!("client-7"))
            .claim("scope", json!(scope))
            .claim("iat", json!(now))
            .claim("exp", json!(now + 300))
            .claim("jti", json!(format!("jti-{now}-{scope}")))
    }

    pub fn send(&mut self, request: Request) -> Exchange {
        send(&mut self.host, request)
    }

    /// A fresh look at a stream (after an HTTP call answer resumed or answered it).
    pub fn look(&self, exchange: &Exchange) -> Exchange {
        look(&self.host, exchange.stream)
    }

    /// The pending JWKS fetch, after letting a tick pass if none is pending yet.
    pub fn jwks_fetch(&mut self) -> u32 {
        jwks_fetch(&mut self.host)
    }

    pub fn serve_jwks(&mut self, keys: &[&TestKey]) {
        let token = self.jwks_fetch();
        answer_jwks(&mut self.host, token, 200, &jwks(keys).to_string());
    }
}

pub fn configured_vm(plugin: &Plugin, config: &Value) -> Host {
    let mut host = plugin.new_host().expect("the filter VM starts");
    host.set_known_clusters(&[JWKS_CLUSTER]);
    let accepted = host
        .configure(config.to_string())
        .expect("on_configure does not trap");
    assert!(
        accepted,
        "the filter rejected the test configuration: {:?}",
        host.logs()
    );
    host
}

/// The pending JWKS fetch; if none is pending, lets time pass (in 100 ms steps, at most
/// `FETCH_WAIT_LIMIT`) until the filter dispatches one.
pub fn jwks_fetch(host: &mut Host) -> u32 {
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    loop {
        let pending = host
            .pending_http_calls()
            .into_iter()
            .find(|c| c.cluster == JWKS_CLUSTER && c.path() == Some(JWKS_PATH));
        if let Some(call) = pending {
            return call.token;
        }
        assert!(
            waited < FETCH_WAIT_LIMIT,
            "the filter dispatched no JWKS fetch to {JWKS_CLUSTER} within {FETCH_WAIT_LIMIT:?}"
        );
        host.advance(step).expect("timers do not trap");
        waited += step;
    }
}

pub fn answer_jwks(host: &mut Host, token: u32, status: u16, body: &str) {
    host.respond_http_call(
        token,
        status,
        [("content-type", "application/json")],
        body.as_bytes(),
    )
    .expect("on_http_call_response does not trap");
}

/// An HTTP request as Envoy hands it to the filter.
#[derive(Clone)]
pub struct Request {
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            headers: vec![
                (b":method".to_vec(), method.as_bytes().to_vec()),
                (b":path".to_vec(), path.as_bytes().to_vec()),
                (b":authority".to_vec(), b"localhost:10000".to_vec()),
                (b":scheme".to_vec(), b"http".to_vec()),
            ],
            body: None,
        }
    }

    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    /// A JSON-RPC POST to the MCP endpoint.
    pub fn post(body: Value) -> Request {
        Request::new("POST", "/mcp")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string().as_bytes())
    }

    /// `tools/call` of `tool`, as a pre-2026-07-28 client sends it (method only in the body).
    pub fn tool_call(tool: &str) -> Request {
        Request::post(json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": { "name": tool, "arguments": {} }
        }))
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
        self
    }

    pub fn raw_header(mut self, name: &[u8], value: &[u8]) -> Request {
        self.headers.push((name.to_vec(), value.to_vec()));
        self
    }

    pub fn bearer(self, token: &str) -> Request {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn body(mut self, body: &[u8]) -> Request {
        self.body = Some(body.to_vec());
        self
    }
}

/// Sends headers (and the body, in one chunk) through the filter. As in Envoy, a body
/// sent while the filter's header phase is paused waits in the host and reaches the filter
/// when the stream is continued; after a local reply it is dropped.
pub fn send(host: &mut Host, request: Request) -> Exchange {
    let stream = host
        .new_http_stream()
        .expect("context create does not trap");
    let has_body = request.body.is_some();
    host.send_request_headers(stream, request.headers, !has_body)
        .expect("on_request_headers does not trap");
    if let Some(body) = request.body
        && host.local_response(stream).is_none()
    {
        host.send_request_body(stream, &body, true)
            .expect("on_request_body does not trap");
    }
    look(host, stream)
}

pub fn look(host: &Host, stream: StreamId) -> Exchange {
    let callbacks = host.callbacks(stream).to_vec();
    Exchange {
        stream,
        actions: callbacks.iter().map(|(_, action)| *action).collect(),
        callbacks,
        reply: host.local_response(stream).cloned(),
        upstream: host.upstream_request(stream).cloned(),
    }
}

/// What the client (local reply) and the upstream (forwarded request) saw of one request.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub stream: StreamId,
    /// The filter's answers to the request callbacks the host made so far, in order.
    pub actions: Vec<Action>,
    /// The same with the callback each answer came from.
    pub callbacks: Vec<(Callback, Action)>,
    pub reply: Option<LocalResponse>,
    pub upstream: Option<Forwarded>,
}

impl Exchange {
    /// The local reply's status; 0 when the filter did not answer itself.
    pub fn status(&self) -> u32 {
        self.reply.as_ref().map_or(0, |r| r.status)
    }

    /// Whether the upstream received anything (at least the request headers).
    pub fn reached_upstream(&self) -> bool {
        self.upstream.is_some()
    }

    /// Whether the upstream received the whole request (headers, all of the body) and the
    /// stream was not reset afterwards: the request was delivered.
    pub fn delivered(&self) -> bool {
        self.upstream
            .as_ref()
            .is_some_and(|u| u.complete && !u.reset)
    }

    /// What the header callback answered.
    pub fn header_action(&self) -> Option<Action> {
        self.callbacks
            .iter()
            .find(|(callback, _)| *callback == Callback::RequestHeaders)
            .map(|(_, action)| *action)
    }

    /// A request denied from its body, as Envoy runs the filter: the header phase continued
    /// (the token was valid and the headers allowed the request), the upstream got the
    /// headers, then not one body byte, and the stream was reset: the call was never delivered.
    pub fn assert_denied_from_the_body(&self, status: u32, what: &str) {
        assert_eq!(self.status(), status, "{what}: {:?}", self.reply);
        assert_eq!(
            self.header_action(),
            Some(Action::Continue),
            "{what}: header phase"
        );
        let upstream = self
            .upstream
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: the headers were not forwarded"));
        assert!(
            upstream.body.is_empty(),
            "{what}: the upstream got body bytes {:?}",
            String::from_utf8_lossy(&upstream.body)
        );
        assert!(
            upstream.reset && !upstream.complete,
            "{what}: the upstream request was not reset: {upstream:?}"
        );
    }

    /// A header of the local reply.
    pub fn header(&self, name: &str) -> Option<String> {
        self.reply.as_ref()?.headers.get(name).map(str::to_string)
    }

    pub fn json(&self) -> Value {
        self.reply
            .as_ref()
            .map_or(Value::Null, LocalResponse::body_json)
    }

    /// The `WWW-Authenticate` challenge's parameters; `scheme` holds the auth scheme.
    pub fn challenge(&self) -> BTreeMap<String, String> {
        parse_challenge(&self.header("www-authenticate").unwrap_or_default())
    }

    /// The upstream request headers (panics when the request was not forwarded).
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        let upstream = self
            .upstream
            .as_ref()
            .expect("the request reached the upstream");
        upstream.headers.get(name).map(str::to_string)
    }
}

/// Parses `Bearer k="v", k2="v2"` (quoted strings with `\` escapes, or tokens).
pub fn parse_challenge(header: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    params.insert("scheme".to_string(), scheme.to_string());
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(name.trim().to_string(), value);
    }
    params
}
