//! Entry points for the coverage-guided fuzz targets in `filter/fuzz` and for the V8 profile of
//! the request path in `filter/path-bench` (built only with the `fuzzing` feature, never into
//! the `.wasm`). Each takes raw bytes the way the host hands them
//! to the filter and runs the same parsing and checking code the filter runs; a panic, a crash
//! or an allocation beyond the fuzzer's limit is the finding. Where a parser accepts its input,
//! the entry point also checks what the acceptance promises.

use crate::config::Config;
use crate::jwks::KeySet;
use crate::keys::read_fetch_response;
use serde_json::{Map, Value};

use crate::mcp_request::{self, McpCall};
use crate::token::{self, Expectations};

/// A token from an `Authorization: Bearer` header: decoded, then verified against `keys` with the
/// fixed expectations below (the signature check runs whenever the key set has a matching key).
pub struct TokenTarget {
    keys: KeySet,
    audiences: Vec<String>,
}

/// The issuer and audience the token target expects (those of the seed tokens).
pub const TOKEN_ISSUER: &str = "http://127.0.0.1:9000";
pub const TOKEN_AUDIENCE: &str = "http://127.0.0.1:10000/mcp";
/// The `now` of the token target: inside the seed tokens' lifetimes.
pub const TOKEN_NOW: u64 = 1_800_000_000;

impl TokenTarget {
    /// `jwks` is a JWKS document with the keys the seed tokens are signed with.
    pub fn new(jwks: &[u8]) -> Option<Self> {
        let parsed = KeySet::parse(jwks).ok()?;
        Some(TokenTarget {
            keys: parsed.keys,
            audiences: vec![TOKEN_AUDIENCE.to_string()],
        })
    }

    /// Runs one input; returns whether the token verified.
    pub fn run(&self, input: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(input) else {
            return false;
        };
        let Ok(jwt) = token::decode(text, &[]) else {
            return false;
        };
        let expect = Expectations {
            issuer: TOKEN_ISSUER,
            audiences: &self.audiences,
            now: TOKEN_NOW,
            skew: 60,
        };
        match jwt.verify(&self.keys, &expect) {
            Ok(verified) => {
                // Accepted means every check held.
                assert!(verified.exp + 60 > TOKEN_NOW, "accepted an expired token");
                assert_eq!(
                    verified.claims.iss.as_ref().and_then(|v| v.as_str()),
                    Some(TOKEN_ISSUER),
                    "accepted a token of another issuer"
                );
                true
            }
            Err(_) => false,
        }
    }
}

/// A JWKS fetch answer: the document parser, and the fetch-answer reading around it.
pub fn jwks(input: &[u8]) {
    let parsed = KeySet::parse(input);
    let answered = read_fetch_response(Some(b"200"), input);
    // The fetch answer is the parser's verdict, not a second opinion.
    assert_eq!(
        parsed.is_ok(),
        answered.is_ok(),
        "fetch answer and parser disagree"
    );
}

/// The plugin configuration as Envoy hands it over.
pub fn config(input: &[u8]) {
    let _ = Config::parse(input);
}

/// An MCP request: input is `Mcp-Method` header, newline, `Mcp-Name` header, newline, body. An
/// empty header line means the header is absent. Returns the calls the filter would authorize.
///
/// When the body is accepted, it must be valid JSON to `serde_json::Value` too, and no object in
/// it may hold a key that a lenient parser would read as a protocol member although it is not
/// spelled exactly so (case folding as Go's `EqualFold` or Java's `equalsIgnoreCase` does it,
/// trailing NULs): such a body means one thing to the filter and another to the server behind it.
pub fn mcp_request(input: &[u8]) -> Option<Vec<McpCall>> {
    let mut parts = input.splitn(3, |b| *b == b'\n');
    let method = parts.next().and_then(header);
    let name = parts.next().and_then(header);
    let body = parts.next().unwrap_or_default();
    let parsed = mcp_request::parse_body(body);
    if parsed.is_ok() {
        assert_no_lenient_lookalikes(body);
        // The body is parsed into the few members the checks read, the rest skipped: it must
        // still be exactly as strict as a full parse.
        assert!(
            serde_json::from_slice::<serde_json::Value>(body).is_ok(),
            "accepted a body that is not valid JSON"
        );
    }
    let headers = mcp_request::parse_headers(method, name).ok()?;
    mcp_request::reconcile(&headers, parsed.ok()?).ok()
}

fn header(line: &[u8]) -> Option<&str> {
    if line.is_empty() {
        return None;
    }
    std::str::from_utf8(line).ok()
}

const MESSAGE_MEMBERS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS_MEMBERS: &[&str] = &["name", "uri", "arguments", "_meta"];

fn lenient_key(key: &str) -> String {
    key.trim_end_matches('\0')
        .chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            '\u{130}' | '\u{131}' => 'i',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn assert_no_lenient_lookalikes(body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let messages = match &value {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    for message in messages {
        let Some(object) = message.as_object() else {
            continue;
        };
        assert_members_exact(object, MESSAGE_MEMBERS);
        if let Some(params) = object.get("params").and_then(Value::as_object) {
            assert_members_exact(params, PARAMS_MEMBERS);
        }
    }
}

fn assert_members_exact(object: &Map<String, Value>, members: &[&str]) {
    for key in object.keys() {
        let lenient = lenient_key(key);
        if let Some(member) = members.iter().find(|m| **m == lenient) {
            assert_eq!(
                key, member,
                "accepted `{key}`, which lenient parsers read as `{member}`"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        let mut seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
        seeds
    }

    fn token_target() -> TokenTarget {
        let keys = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/keys.json"));
        TokenTarget::new(&keys.unwrap()).unwrap()
    }

    #[test]
    fn the_valid_seed_tokens_verify_and_the_broken_ones_do_not() {
        // A token target whose keys verify nothing would fuzz only the decoder.
        let target = token_target();
        for (name, token) in seeds("token") {
            assert_eq!(target.run(&token), name.starts_with("valid-"), "{name}");
        }
    }

    #[test]
    fn the_seed_configurations_are_valid() {
        for (name, config) in seeds("config") {
            assert!(Config::parse(&config).is_ok(), "{name}");
        }
    }

    #[test]
    fn the_seed_requests_are_decided_as_the_filter_decides_them() {
        for (name, request) in seeds("mcp_request") {
            let calls = mcp_request(&request);
            let ambiguous = [
                "case-variant",
                "nul-name",
                "duplicate",
                "folded",
                "mismatch",
            ];
            let expect_refused = ambiguous.iter().any(|a| name.contains(a));
            assert_eq!(calls.is_none(), expect_refused, "{name}");
        }
    }

    #[test]
    fn the_seed_key_sets_parse_like_a_fetch_answer() {
        for (_name, document) in seeds("jwks") {
            jwks(&document);
        }
    }

    #[test]
    #[should_panic(expected = "lenient parsers read as `method`")]
    fn a_case_variant_member_would_be_reported() {
        assert_no_lenient_lookalikes(br#"{"jsonrpc":"2.0","id":1,"Method":"tools/call"}"#);
    }
}

/// A request's headers through the whole decision path of the filter, as `on_http_request_headers`
/// runs it: routing, the bearer check, the token cache (shared data in memory), decoding and
/// verification, policy, the header edits. Also the way in of the V8 profile of that path
/// (BENCHMARKS.md), which is why it keeps its runtime and store across calls.
pub struct RequestTarget {
    rt: crate::flow::Runtime,
    store: crate::cache::MemStore,
    next_id: u32,
}

/// What the path decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestVerdict {
    /// Allowed on to the upstream (the token verified, from the cache or not).
    Allowed,
    /// Anything else: a denial, a local answer, a wait for keys.
    Other,
}

impl RequestTarget {
    /// `config` is a filter configuration (issuers with inline JWKS, so that keys are there at
    /// once).
    pub fn new(config: &[u8]) -> Result<Self, String> {
        let cfg = Config::parse(config).map_err(|e| e.to_string())?;
        Ok(RequestTarget {
            rt: crate::flow::Runtime::new(cfg),
            store: crate::cache::MemStore::default(),
            next_id: 1,
        })
    }

    /// Runs one request's headers (`end_of_stream`: no body follows) at `now_ms`.
    pub fn run(&mut self, headers: &[(&[u8], &[u8])], now_ms: u64) -> RequestVerdict {
        use crate::flow::{Next, RequestState, SharedRequest};
        use crate::front::SeenHeaders;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let request: SharedRequest = std::rc::Rc::new(std::cell::RefCell::new(RequestState::Start));
        let seen = SeenHeaders::gather(headers, &self.rt.cfg.identity_headers);
        let step = self
            .rt
            .request_headers(&self.store, id, &request, seen, true, &|| now_ms);
        let edits = step
            .upstream_headers
            .as_ref()
            .map_or(0, |h| h.edits(&self.rt.cfg).count());
        self.rt.forget(id);
        match step.next {
            Next::Allow { .. } if edits > 0 => RequestVerdict::Allowed,
            _ => RequestVerdict::Other,
        }
    }
}
