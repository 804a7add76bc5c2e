//! The decisions on one request as pure functions of its headers, body and the current
//! key/cache state: route, CORS, bearer syntax, token verification behind the cache, scopes, and
//! the header edits for upstream. [`crate::flow`] strings them together over the request's
//! callbacks; the proxy-wasm glue only moves data between the host and them.

use std::borrow::Cow;
use std::rc::Rc;

use crate::cache::{EntryShape, SharedStore, TokenCache};
use crate::config::{Config, IdentityHeader, UnmatchedPaths};
use crate::cors::{self, OriginCheck};
use crate::identity::Identity;
use crate::jwks::{KeyFingerprint, KeySet};
use crate::mcp_request::{self, McpCall, McpHeaders};
use crate::policy;
use crate::response::{Denial, LocalResponse, json_error, metadata_not_found};
use crate::routing::{Route, route};
use crate::stats::Counter;
use crate::token::{self, Expectations, TokenError};

/// What the filter needs from the request headers.
#[derive(Debug, Clone, Default)]
pub struct RequestHead<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`.
    pub path: &'a str,
    /// `Origin`, if present.
    pub origin: Option<&'a str>,
    /// Every `Authorization` value (normally zero or one).
    pub authorization: Vec<&'a str>,
    /// `Mcp-Method`.
    pub mcp_method: Option<&'a str>,
    /// `Mcp-Name`.
    pub mcp_name: Option<&'a str>,
}

/// The request headers the filter reads (the first value of each, every `Authorization`, how
/// many values of each identity header), gathered in one pass over the host's header map and
/// borrowing from its buffer: this runs on every request. Values that are not UTF-8 (client
/// input) are decoded lossily and then fail the check they are part of.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SeenHeaders<'a> {
    method: Option<Cow<'a, str>>,
    path: Option<Cow<'a, str>>,
    origin: Option<Cow<'a, str>>,
    mcp_method: Option<Cow<'a, str>>,
    mcp_name: Option<Cow<'a, str>>,
    authorization: Vec<Cow<'a, str>>,
    /// How many values of each configured identity header the client sent, in configuration
    /// order (saturating at 255).
    pub identity: Vec<u8>,
}

/// A header value as text: borrowed when it is UTF-8 (every header of a real request; the
/// validation has an ASCII fast path that `String::from_utf8_lossy`'s chunk iterator lacks),
/// otherwise the lossy text with replacement characters, as the checks always received it.
fn header_text(value: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value),
    }
}
impl<'a> SeenHeaders<'a> {
    /// Gathers from raw `(name, value)` pairs; names compare case-insensitively.
    pub fn gather(pairs: &[(&'a [u8], &'a [u8])], identity_headers: &[IdentityHeader]) -> Self {
        let mut seen = SeenHeaders {
            identity: vec![0; identity_headers.len()],
            ..SeenHeaders::default()
        };
        for &(name, value) in pairs {
            if name.eq_ignore_ascii_case(b"authorization") {
                seen.authorization.push(header_text(value));
                continue;
            }
            let slot = if name.eq_ignore_ascii_case(b":method") {
                &mut seen.method
            } else if name.eq_ignore_ascii_case(b":path") {
                &mut seen.path
            } else if name.eq_ignore_ascii_case(b"origin") {
                &mut seen.origin
            } else if name.eq_ignore_ascii_case(b"mcp-method") {
                &mut seen.mcp_method
            } else if name.eq_ignore_ascii_case(b"mcp-name") {
                &mut seen.mcp_name
            } else {
                if let Some(i) = identity_headers
                    .iter()
                    .position(|h| name.eq_ignore_ascii_case(h.header.as_bytes()))
                    && let Some(n) = seen.identity.get_mut(i)
                {
                    *n = n.saturating_add(1);
                }
                continue;
            };
            if slot.is_none() {
                *slot = Some(header_text(value));
            }
        }
        seen
    }

    /// The headers as the decisions read them (an absent `:method` or `:path` is empty).
    pub fn head(&self) -> RequestHead<'_> {
        RequestHead {
            method: self.method.as_deref().unwrap_or_default(),
            path: self.path.as_deref().unwrap_or_default(),
            origin: self.origin.as_deref(),
            authorization: self.authorization.iter().map(AsRef::as_ref).collect(),
            mcp_method: self.mcp_method.as_deref(),
            mcp_name: self.mcp_name.as_deref(),
        }
    }
}

/// A denial with what is needed to render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Why.
    pub denial: Denial,
    /// The resource, for the challenge parameters.
    pub resource: Option<usize>,
    /// Allowed origin to echo in CORS headers.
    pub cors_origin: Option<String>,
}

impl Denied {
    /// The full response, with CORS headers for an allowed origin.
    pub fn response(&self, cfg: &Config) -> LocalResponse {
        let resource = self.resource.and_then(|i| cfg.resources.get(i));
        let r = self.denial.response(resource);
        match &self.cors_origin {
            Some(o) => r.with_headers(cors::response_headers(o)),
            None => r,
        }
    }
}

/// How the MCP method/name will be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpNeed {
    /// The route has no tool rules, or the request is not a POST: no per-tool scopes.
    NotNeeded,
    /// Read the JSON-RPC body, then check it against these headers.
    FromBody(McpHeaders),
    /// `Mcp-Method`/`Mcp-Name` are malformed: answered after the token check, so a client with
    /// an invalid token still learns that first (401 with its challenge).
    Malformed(Denial),
}

/// A request that needs a token check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAuth {
    /// Resource index.
    pub resource: usize,
    /// The bearer token.
    pub token: String,
    /// Allowed origin, for CORS on the answer.
    pub cors_origin: Option<String>,
    /// How the MCP call is determined.
    pub mcp: McpNeed,
}

/// Outcome of the header phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadDecision {
    /// Answer locally without auth (metadata, preflight, 404 on metadata paths).
    Serve(LocalResponse, Counter),
    /// Deny.
    Deny(Denied),
    /// Forward untouched (unmatched path with `unmatched_paths: pass`).
    Pass,
    /// Check the token (and maybe the body).
    Authenticate(PendingAuth),
}

fn metadata_response(cfg: &Config, i: usize, method: &str) -> HeadDecision {
    let Some(r) = cfg.resources.get(i) else {
        return HeadDecision::Serve(metadata_not_found(), Counter::MetadataServed);
    };
    match method {
        "GET" | "HEAD" => {
            let mut headers = vec![
                ("content-type".to_string(), "application/json".to_string()),
                (
                    "cache-control".to_string(),
                    format!("public, max-age={}", cfg.metadata_max_age),
                ),
            ];
            headers.extend(cors::metadata_headers());
            let body = if method == "HEAD" {
                Vec::new()
            } else {
                r.metadata_json.clone().into_bytes()
            };
            HeadDecision::Serve(
                LocalResponse {
                    status: 200,
                    headers,
                    body,
                },
                Counter::MetadataServed,
            )
        }
        "OPTIONS" => HeadDecision::Serve(
            LocalResponse {
                status: 204,
                headers: cors::metadata_preflight_headers(),
                body: Vec::new(),
            },
            Counter::Preflight,
        ),
        _ => {
            let mut resp = json_error(405, "method_not_allowed", "use GET");
            resp.headers
                .push(("allow".into(), "GET, HEAD, OPTIONS".into()));
            resp.headers.extend(cors::metadata_headers());
            HeadDecision::Serve(resp, Counter::MetadataServed)
        }
    }
}

/// Parses `Authorization`: exactly one `Bearer <token68>`.
pub fn bearer_token<'a>(values: &[&'a str]) -> Result<&'a str, Denial> {
    let value = match values {
        [] => return Err(Denial::MissingToken),
        [one] => *one,
        _ => return Err(Denial::InvalidRequest("multiple Authorization headers")),
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Denial::InvalidToken("authorization scheme must be Bearer"));
    }
    let token = rest.trim_start_matches(' ');
    // One table lookup per byte: this runs over the whole token on every request.
    if !token.is_empty()
        && token
            .bytes()
            .all(|b| TOKEN68.get(usize::from(b)) == Some(&true))
    {
        return Ok(token);
    }
    if token.contains(',') {
        // Envoy joins repeated Authorization headers with a comma.
        return Err(Denial::InvalidRequest("multiple Authorization headers"));
    }
    Err(Denial::InvalidToken("malformed bearer token"))
}

/// The bytes of RFC 6750's `b64token` (RFC 7235 `token68`, without the trailing `=` rule: a JWS
/// never has one, and a token that is not a JWS fails its decoding anyway).
// Evaluated at compile time: an out-of-range index would fail the build, not panic at run time.
#[allow(clippy::indexing_slicing)]
const TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0u8;
    loop {
        table[b as usize] = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        if b == u8::MAX {
            break table;
        }
        b += 1;
    }
};

/// Decides what to do with a request from its headers alone.
pub fn on_headers(cfg: &Config, head: &RequestHead<'_>) -> HeadDecision {
    let resource = match route(cfg, head.path) {
        Route::Metadata(i) => return metadata_response(cfg, i, head.method),
        Route::UnknownMetadata => {
            return HeadDecision::Serve(metadata_not_found(), Counter::MetadataServed);
        }
        Route::Unmatched => {
            return match cfg.unmatched_paths {
                UnmatchedPaths::Pass => HeadDecision::Pass,
                UnmatchedPaths::Reject => HeadDecision::Deny(Denied {
                    denial: Denial::UnmatchedPath,
                    resource: None,
                    cors_origin: None,
                }),
            };
        }
        Route::Protected(i) => i,
    };
    let cors_origin = match cors::check_origin(&cfg.allowed_origins, head.origin) {
        OriginCheck::Forbidden => {
            return HeadDecision::Deny(Denied {
                denial: Denial::Origin,
                resource: Some(resource),
                cors_origin: None,
            });
        }
        OriginCheck::Allowed(o) => Some(o),
        OriginCheck::Absent => None,
    };
    if head.method == "OPTIONS"
        && let Some(o) = &cors_origin
    {
        let resp = LocalResponse {
            status: 204,
            headers: cors::preflight_headers(o),
            body: Vec::new(),
        };
        return HeadDecision::Serve(resp, Counter::Preflight);
    }
    let deny = |denial| {
        HeadDecision::Deny(Denied {
            denial,
            resource: Some(resource),
            cors_origin: cors_origin.clone(),
        })
    };
    let token = match bearer_token(&head.authorization) {
        Ok(t) => t.to_string(),
        Err(d) => return deny(d),
    };
    let has_rules = cfg
        .resources
        .get(resource)
        .is_some_and(|r| !r.tool_rules.is_empty());
    let mcp = if has_rules && head.method == "POST" {
        match mcp_request::parse_headers(head.mcp_method, head.mcp_name) {
            Ok(h) => McpNeed::FromBody(h),
            // Decided before the body is read: its id is unknown.
            Err(e) => McpNeed::Malformed(Denial::HeaderMismatch {
                description: e.description(),
                id: None,
            }),
        }
    } else {
        McpNeed::NotNeeded
    };
    HeadDecision::Authenticate(PendingAuth {
        resource,
        token,
        cors_origin,
        mcp,
    })
}

/// The call announced by `Mcp-Method` / `Mcp-Name` (2026-07-28), if any; used to authorize
/// before the body arrives. The body must later agree ([`mcp_calls`]).
pub fn calls_from_headers(headers: &McpHeaders) -> Vec<McpCall> {
    headers
        .method
        .as_ref()
        .map(|method| McpCall {
            method: method.clone(),
            name: headers.name.clone(),
        })
        .into_iter()
        .collect()
}

/// The MCP calls of a buffered body, checked against the headers: a body that cannot be
/// authorized is a 400 `invalid_request`, headers that disagree with a readable body a 400
/// `HeaderMismatch` carrying the request's id.
pub fn mcp_calls(headers: &McpHeaders, body: &[u8]) -> Result<Vec<McpCall>, Denial> {
    let parsed =
        mcp_request::parse_body(body).map_err(|e| Denial::BadMcpRequest(e.description()))?;
    mcp_request::reconcile(headers, parsed).map_err(|e| Denial::HeaderMismatch {
        description: e.description(),
        id: mcp_request::request_id(body),
    })
}

/// Result of a token check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOutcome {
    /// Valid. Shared with the token cache, which hands out the same identity on every hit.
    Verified(Rc<Identity>),
    /// Invalid.
    Denied(Denial),
    /// The token's issuer has no keys yet: wait.
    AwaitKeys {
        /// Issuer index.
        issuer: usize,
    },
    /// The token's `kid` is not in the issuer's keys (a refetch may help).
    UnknownKid {
        /// Issuer index.
        issuer: usize,
    },
}

/// Verifies a token for a resource. `keys(i)` gives issuer `i`'s keys if loaded.
pub fn verify_token<'k>(
    cfg: &Config,
    resource: usize,
    token: &str,
    keys: &dyn Fn(usize) -> Option<&'k KeySet>,
    now: u64,
) -> TokenOutcome {
    let invalid = |e: TokenError| TokenOutcome::Denied(e.into());
    let Some(res) = cfg.resources.get(resource) else {
        return invalid(TokenError::IssMismatch);
    };
    let jwt = match token::decode(token, &cfg.identity_headers) {
        Ok(j) => j,
        Err(e) => return invalid(e),
    };
    let Some(iss) = jwt.issuer() else {
        return invalid(TokenError::IssMissing);
    };
    let Some((issuer_idx, issuer)) = res
        .issuers
        .iter()
        .filter_map(|&i| cfg.issuers.get(i).map(|x| (i, x)))
        .find(|(_, x)| x.issuer == iss)
    else {
        return invalid(TokenError::IssMismatch);
    };
    let Some(key_set) = keys(issuer_idx) else {
        return TokenOutcome::AwaitKeys { issuer: issuer_idx };
    };
    let expect = Expectations {
        issuer: &issuer.issuer,
        audiences: &res.audiences,
        now,
        skew: cfg.clock_skew,
    };
    match jwt.verify(key_set, &expect) {
        Ok(verified) => match Identity::from_token(&cfg.identity_headers, issuer_idx, verified) {
            Ok(id) => TokenOutcome::Verified(Rc::new(id)),
            Err(e) => invalid(e),
        },
        Err(TokenError::UnknownKid) => TokenOutcome::UnknownKid { issuer: issuer_idx },
        Err(e) => invalid(e),
    }
}

/// Whether the verified-token cache answered a token check (`mcp_auth.cache.hit` / `.miss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLookup {
    /// A valid entry was found.
    Hit,
    /// No valid entry (also for tokens that then fail verification).
    Miss,
    /// The cache is disabled, or no token was checked.
    Skipped,
}

/// The result of [`authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// What the token check decided.
    pub outcome: TokenOutcome,
    /// Whether the cache answered.
    pub cache: CacheLookup,
}

/// The verified-token cache of a configuration: its namespace, size, and the shape its shared
/// entries must have.
pub fn token_cache(cfg: &Config) -> TokenCache {
    let shape = EntryShape {
        identity_headers: cfg.identity_headers.len(),
        issuers: cfg.issuers.len(),
    };
    TokenCache::new(&cfg.fingerprint, cfg.token_cache_slots, shape)
}

/// [`verify_token`] behind the verified-token cache.
pub fn authenticate<'k>(
    cfg: &Config,
    cache: &mut TokenCache,
    store: &dyn SharedStore,
    resource: usize,
    token: &str,
    keys: &dyn Fn(usize) -> Option<&'k KeySet>,
    now: u64,
) -> Authenticated {
    let published =
        |issuer: usize, key: &KeyFingerprint| keys(issuer).is_some_and(|k| k.contains(key));
    let miss = match cache.lookup(store, resource, token, now, &published) {
        Ok(id) => {
            return Authenticated {
                outcome: TokenOutcome::Verified(id),
                cache: CacheLookup::Hit,
            };
        }
        Err(miss) => miss,
    };
    let outcome = verify_token(cfg, resource, token, keys, now);
    if let TokenOutcome::Verified(id) = &outcome {
        cache.insert(store, miss, resource, token, id);
    }
    let cache = if cfg.token_cache_slots > 0 {
        CacheLookup::Miss
    } else {
        CacheLookup::Skipped
    };
    Authenticated { outcome, cache }
}

/// Final decision once identity and calls are known.
pub fn authorize(
    cfg: &Config,
    resource: usize,
    identity: &Identity,
    calls: &[McpCall],
) -> Result<(), Denial> {
    let Some(res) = cfg.resources.get(resource) else {
        return Err(Denial::UnmatchedPath);
    };
    if policy::calls_allowed(
        &res.required_scopes,
        &res.tool_rules,
        calls,
        &identity.scopes,
    ) {
        return Ok(());
    }
    let needed = policy::required_scopes(&res.required_scopes, &res.tool_rules, calls);
    Err(Denial::InsufficientScope(needed))
}

/// One change to the request headers before they go upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderEdit<'a> {
    /// Remove every value of the header.
    Remove(&'a str),
    /// Replace the header's only value.
    Replace(&'a str, &'a str),
    /// Add a value (the header is absent).
    Add(&'a str, &'a str),
}

/// Header edits for the upstream request on success: the token goes, and each identity header
/// ends up with exactly the verified value or not at all. `sent[i]` is how many values of the
/// `i`-th identity header the client sent, so the edits touch only what is there: each edit is a
/// host call on every request. A header sent several times is removed before it is added, since
/// a replace changes only the first value on some Envoy versions
/// (`http_set_copy_replace_all_headers`).
///
/// An iterator, not a list: the glue makes one host call per edit as it goes, and a cache hit
/// allocates nothing for them.
pub fn upstream_edits<'a>(
    cfg: &'a Config,
    identity: &'a Identity,
    sent: &'a [u8],
) -> impl Iterator<Item = HeaderEdit<'a>> + 'a {
    let identity_edits = cfg.identity_headers.iter().enumerate().flat_map(|(i, h)| {
        // Every configured header is handled even if the identity had fewer values: a missing
        // value removes what the client sent.
        let value = identity.header_values.get(i).and_then(Option::as_deref);
        let name = h.header.as_str();
        let sent = sent.get(i).copied().unwrap_or(u8::MAX);
        let (first, second) = match (value, sent) {
            (None, 0) => (None, None),
            (None, _) => (Some(HeaderEdit::Remove(name)), None),
            (Some(v), 0) => (Some(HeaderEdit::Add(name, v)), None),
            (Some(v), 1) => (Some(HeaderEdit::Replace(name, v)), None),
            (Some(v), _) => (
                Some(HeaderEdit::Remove(name)),
                Some(HeaderEdit::Add(name, v)),
            ),
        };
        first.into_iter().chain(second)
    });
    std::iter::once(HeaderEdit::Remove("authorization")).chain(identity_edits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{MemStore, Miss};
    use crate::config::tests::{demo_json, parse};
    use mcp_auth_test_support::{TestKey, ed_key, rsa_key};
    use serde_json::{Value, json};

    const NOW: u64 = 1_800_000_000;

    fn cfg() -> Config {
        parse(&demo_json()).expect("valid")
    }

    fn head<'a>(method: &'a str, path: &'a str, auth: &[&'a str]) -> RequestHead<'a> {
        RequestHead {
            method,
            path,
            authorization: auth.to_vec(),
            ..Default::default()
        }
    }

    fn denial_of(d: HeadDecision) -> Denial {
        match d {
            HeadDecision::Deny(d) => d.denial,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    fn claims() -> Value {
        json!({"iss": "http://localhost:9000", "sub": "alice", "aud": "http://localhost:10000/mcp",
            "client_id": "c1", "scope": "mcp:tools", "iat": NOW, "exp": NOW + 600})
    }

    #[test]
    fn seen_headers_keep_the_first_value_every_authorization_and_identity_counts() {
        let c = cfg();
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":path", b"/mcp"),
            (b":PATH", b"/other"),
            (b"Authorization", b"Bearer a"),
            (b"authorization", b"Bearer \xff"),
            (b"Origin", b"http://localhost:6274"),
            (b"mcp-method", b"tools/call"),
            (b"MCP-Name", b"echo"),
            (b"X-MCP-Subject", b"mallory"),
            (b"x-mcp-subject", b"eve"),
            (b"x-mcp-scope", b"mcp:admin"),
            (b"x-other", b"1"),
        ];
        let seen = SeenHeaders::gather(&pairs, &c.identity_headers);
        let head = seen.head();
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/mcp", "the first value wins");
        assert_eq!(head.origin, Some("http://localhost:6274"));
        assert_eq!(head.mcp_method, Some("tools/call"));
        assert_eq!(head.mcp_name, Some("echo"));
        assert_eq!(
            head.authorization,
            vec!["Bearer a", "Bearer \u{fffd}"],
            "every value, decoded lossily"
        );
        // Configuration order: client_id, scope, sub.
        assert_eq!(seen.identity, vec![0, 1, 2]);
        let none = SeenHeaders::gather(&[], &c.identity_headers);
        assert_eq!((none.head().method, none.head().path), ("", ""));
        let many: Vec<(&[u8], &[u8])> = vec![(b"x-mcp-scope", b"x"); 300];
        assert_eq!(
            SeenHeaders::gather(&many, &c.identity_headers).identity,
            vec![0, 255, 0],
            "counts saturate"
        );
    }

    #[test]
    fn metadata_is_served_without_auth_and_unknown_well_known_is_404() {
        let c = cfg();
        let HeadDecision::Serve(r, Counter::MetadataServed) = on_headers(
            &c,
            &head("GET", "/.well-known/oauth-protected-resource/mcp", &[]),
        ) else {
            panic!("metadata expected")
        };
        assert_eq!(r.status, 200);
        assert_eq!(r.header("cache-control"), Some("public, max-age=3600"));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        let doc: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(doc["resource"], "http://localhost:10000/mcp");
        let root = on_headers(
            &c,
            &head("GET", "/.well-known/oauth-protected-resource", &[]),
        );
        assert!(matches!(root, HeadDecision::Serve(ref r, _) if r.status == 200));
        let unknown = on_headers(
            &c,
            &head(
                "GET",
                "/.well-known/oauth-protected-resource/nope",
                &["Bearer x"],
            ),
        );
        assert!(matches!(unknown, HeadDecision::Serve(ref r, _) if r.status == 404));
        let pre = on_headers(
            &c,
            &head("OPTIONS", "/.well-known/oauth-protected-resource/mcp", &[]),
        );
        assert!(matches!(pre, HeadDecision::Serve(ref r, Counter::Preflight) if r.status == 204));
        let post = on_headers(
            &c,
            &head("POST", "/.well-known/oauth-protected-resource/mcp", &[]),
        );
        assert!(matches!(post, HeadDecision::Serve(ref r, _) if r.status == 405));
    }

    #[test]
    fn authorization_header_shapes() {
        let c = cfg();
        let table: Vec<(Vec<&str>, Option<Denial>)> = vec![
            (vec![], Some(Denial::MissingToken)),
            (
                vec!["Bearer a.b.c", "Bearer d.e.f"],
                Some(Denial::InvalidRequest("multiple Authorization headers")),
            ),
            (
                vec!["Bearer a.b.c,Bearer d.e.f"],
                Some(Denial::InvalidRequest("multiple Authorization headers")),
            ),
            (
                vec!["Basic dXNlcjpwYXNz"],
                Some(Denial::InvalidToken("authorization scheme must be Bearer")),
            ),
            (
                vec!["Bearer"],
                Some(Denial::InvalidToken("malformed bearer token")),
            ),
            (
                vec!["Bearer "],
                Some(Denial::InvalidToken("malformed bearer token")),
            ),
            (
                vec!["Bearer a b"],
                Some(Denial::InvalidToken("malformed bearer token")),
            ),
            (
                vec!["Bearer a\"b"],
                Some(Denial::InvalidToken("malformed bearer token")),
            ),
            (
                vec!["Bearer a.b.c\u{e9}"],
                Some(Denial::InvalidToken("malformed bearer token")),
            ),
            (
                vec!["Bearer a.b.c\u{0}"],
                Some(Denial::InvalidToken("malformed bearer token")),
            ),
            (vec!["bearer a.b.c"], None),
            (vec!["Bearer  a.b.c"], None),
        ];
        let every_token68_byte =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=";
        assert_eq!(
            bearer_token(&[&format!("Bearer {every_token68_byte}")]),
            Ok(every_token68_byte)
        );
        for b in (0u8..=127).filter(|b| !every_token68_byte.as_bytes().contains(b) && *b != b',') {
            let value = format!("Bearer a{}b", char::from(b));
            assert_eq!(
                bearer_token(&[&value]),
                Err(Denial::InvalidToken("malformed bearer token")),
                "{b:#x}"
            );
        }
        for (auth, want) in table {
            let got = on_headers(&c, &head("GET", "/mcp", &auth));
            match want {
                Some(d) => assert_eq!(denial_of(got), d, "{auth:?}"),
                None => assert!(
                    matches!(got, HeadDecision::Authenticate(ref p) if p.token == "a.b.c"),
                    "{auth:?}"
                ),
            }
        }
    }

    #[test]
    fn query_access_token_is_ignored() {
        let d = on_headers(&cfg(), &head("POST", "/mcp?access_token=abc", &[]));
        assert_eq!(denial_of(d), Denial::MissingToken);
    }

    #[test]
    fn origin_rules_and_preflight() {
        let c = cfg();
        let mut h = head("POST", "/mcp", &[]);
        h.origin = Some("http://evil.example");
        assert_eq!(denial_of(on_headers(&c, &h)), Denial::Origin);
        let resp = match on_headers(&c, &h) {
            HeadDecision::Deny(d) => d.response(&c),
            _ => unreachable!(),
        };
        assert_eq!(resp.status, 403);
        assert_eq!(resp.header("access-control-allow-origin"), None);

        h.origin = Some("http://localhost:6274");
        let HeadDecision::Deny(d) = on_headers(&c, &h) else {
            panic!("401 expected")
        };
        let resp = d.response(&c);
        assert_eq!(resp.status, 401);
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some("http://localhost:6274")
        );
        assert!(
            resp.header("access-control-expose-headers")
                .is_some_and(|v| v.contains("WWW-Authenticate"))
        );

        h.method = "OPTIONS";
        let HeadDecision::Serve(r, Counter::Preflight) = on_headers(&c, &h) else {
            panic!("preflight")
        };
        assert_eq!(r.status, 204);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("http://localhost:6274")
        );

        let mut no_origin = head("OPTIONS", "/mcp", &[]);
        no_origin.origin = None;
        assert_eq!(denial_of(on_headers(&c, &no_origin)), Denial::MissingToken);
    }

    #[test]
    fn unmatched_paths_are_rejected_or_passed() {
        let c = cfg();
        assert_eq!(
            denial_of(on_headers(&c, &head("GET", "/other", &[]))),
            Denial::UnmatchedPath
        );
        let mut v = demo_json();
        v["unmatched_paths"] = json!("pass");
        let pass = parse(&v).expect("valid");
        assert_eq!(
            on_headers(&pass, &head("GET", "/other", &[])),
            HeadDecision::Pass
        );
    }

    #[test]
    fn body_is_needed_only_for_posts_on_rule_bearing_routes() {
        let c = cfg();
        let post = on_headers(&c, &head("POST", "/mcp", &["Bearer t"]));
        assert!(matches!(
            post,
            HeadDecision::Authenticate(PendingAuth {
                mcp: McpNeed::FromBody(_),
                ..
            })
        ));
        let get = on_headers(&c, &head("GET", "/mcp", &["Bearer t"]));
        assert!(matches!(
            get,
            HeadDecision::Authenticate(PendingAuth {
                mcp: McpNeed::NotNeeded,
                ..
            })
        ));
        let mut v = demo_json();
        v["resources"][0]
            .as_object_mut()
            .expect("obj")
            .remove("tool_scopes");
        let no_rules = parse(&v).expect("valid");
        let post = on_headers(&no_rules, &head("POST", "/mcp", &["Bearer t"]));
        assert!(matches!(
            post,
            HeadDecision::Authenticate(PendingAuth {
                mcp: McpNeed::NotNeeded,
                ..
            })
        ));
        let mut bad = head("POST", "/mcp", &["Bearer t"]);
        bad.mcp_method = Some("tools/call");
        bad.mcp_name = Some("=?base64?!!!?=");
        assert!(matches!(
            on_headers(&c, &bad),
            HeadDecision::Authenticate(PendingAuth {
                mcp: McpNeed::Malformed(Denial::HeaderMismatch {
                    description: "invalid Mcp-Name header encoding",
                    id: None
                }),
                ..
            })
        ));
    }

    #[test]
    fn token_outcomes_by_key_state() {
        let c = cfg();
        let key = ed_key("k1");
        let ks = KeySet::from_value(&json!({"keys": [key.public_jwk()]}))
            .expect("keys")
            .keys;
        let ready = |_: usize| Some(&ks);
        let awaiting = |_: usize| None;
        let good = key.jwt(&claims());
        assert!(matches!(
            verify_token(&c, 0, &good, &ready, NOW),
            TokenOutcome::Verified(_)
        ));
        assert_eq!(
            verify_token(&c, 0, &good, &awaiting, NOW),
            TokenOutcome::AwaitKeys { issuer: 0 }
        );
        let rotated = ed_key("k2").jwt(&claims());
        assert_eq!(
            verify_token(&c, 0, &rotated, &ready, NOW),
            TokenOutcome::UnknownKid { issuer: 0 }
        );
        let mut other_iss = claims();
        other_iss["iss"] = json!("http://evil");
        assert_eq!(
            verify_token(&c, 0, &key.jwt(&other_iss), &awaiting, NOW),
            TokenOutcome::Denied(Denial::InvalidToken("issuer not accepted")),
            "an unknown issuer is rejected without waiting for keys"
        );
        assert_eq!(
            verify_token(&c, 0, "garbage", &awaiting, NOW),
            TokenOutcome::Denied(Denial::InvalidToken(
                "token is not a JWS compact serialization"
            ))
        );
        let rsa = rsa_key("k1").jwt(&claims());
        assert_eq!(
            verify_token(&c, 0, &rsa, &ready, NOW),
            TokenOutcome::Denied(Denial::InvalidToken("alg does not match the key type"))
        );
    }

    #[test]
    fn cache_answers_the_second_time_and_not_after_expiry() {
        let c = cfg();
        let key = ed_key("k1");
        let ks = KeySet::from_value(&json!({"keys": [key.public_jwk()]}))
            .expect("keys")
            .keys;
        let store = MemStore::default();
        let mut cache = token_cache(&c);
        let token = key.jwt(&claims());
        let ready = |_: usize| Some(&ks);
        let Authenticated {
            outcome: first,
            cache: hit,
        } = authenticate(&c, &mut cache, &store, 0, &token, &ready, NOW);
        assert!(matches!(first, TokenOutcome::Verified(_)));
        assert_eq!(hit, CacheLookup::Miss);
        let Authenticated {
            outcome: second,
            cache: hit,
        } = authenticate(&c, &mut cache, &store, 0, &token, &ready, NOW + 1);
        assert_eq!(second, first);
        assert_eq!(hit, CacheLookup::Hit);
        let Authenticated {
            outcome: late,
            cache: hit,
        } = authenticate(&c, &mut cache, &store, 0, &token, &ready, NOW + 600);
        assert_eq!(hit, CacheLookup::Miss);
        assert!(
            matches!(late, TokenOutcome::Verified(_)),
            "within skew the token still verifies"
        );
        let Authenticated {
            outcome: expired,
            cache: _,
        } = authenticate(&c, &mut cache, &store, 0, &token, &ready, NOW + 700);
        assert_eq!(
            expired,
            TokenOutcome::Denied(Denial::InvalidToken("token expired"))
        );
        let Authenticated {
            outcome: bad,
            cache: _,
        } = authenticate(&c, &mut cache, &store, 0, "x.y.z", &ready, NOW);
        assert!(matches!(bad, TokenOutcome::Denied(_)));
        assert_eq!(store.0.borrow().len(), 1, "failures are never cached");
    }

    #[test]
    fn a_cached_token_is_revoked_when_its_key_leaves_the_jwks() {
        let c = cfg();
        let (old, new) = (ed_key("k1"), ed_key("k2"));
        let jwks = |keys: Vec<Value>| {
            KeySet::from_value(&json!({ "keys": keys }))
                .expect("keys")
                .keys
        };
        let both = jwks(vec![old.public_jwk(), new.public_jwk()]);
        let rotated = jwks(vec![new.public_jwk()]);
        // The same kid now naming another key is a removal too.
        let impostor = TestKey {
            kid: "k1".into(),
            ..ed_key("k3")
        };
        let reused_kid = jwks(vec![impostor.public_jwk()]);
        let store = MemStore::default();
        let mut cache = token_cache(&c);
        let token = old.jwt(&claims());
        let Authenticated {
            outcome: first,
            cache: _,
        } = authenticate(&c, &mut cache, &store, 0, &token, &|_| Some(&both), NOW);
        assert!(matches!(first, TokenOutcome::Verified(_)));
        let Authenticated {
            outcome: still,
            cache: hit,
        } = authenticate(&c, &mut cache, &store, 0, &token, &|_| Some(&both), NOW);
        assert_eq!(
            (still, hit),
            (first.clone(), CacheLookup::Hit),
            "a new key changes nothing"
        );
        let Authenticated {
            outcome: gone,
            cache: hit,
        } = authenticate(&c, &mut cache, &store, 0, &token, &|_| Some(&rotated), NOW);
        assert_eq!(gone, TokenOutcome::UnknownKid { issuer: 0 });
        assert_eq!(hit, CacheLookup::Miss);
        let Authenticated {
            outcome: replaced,
            cache: _,
        } = authenticate(
            &c,
            &mut cache,
            &store,
            0,
            &token,
            &|_| Some(&reused_kid),
            NOW,
        );
        assert_eq!(
            replaced,
            TokenOutcome::Denied(Denial::InvalidToken("signature verification failed"))
        );
        // A JWKS with no usable key left (the issuer revoked everything).
        let revoked = KeySet::default();
        let Authenticated {
            outcome: none_left,
            cache: hit,
        } = authenticate(&c, &mut cache, &store, 0, &token, &|_| Some(&revoked), NOW);
        assert_eq!(none_left, TokenOutcome::UnknownKid { issuer: 0 });
        assert_eq!(hit, CacheLookup::Miss);
        let Authenticated {
            outcome: awaiting,
            cache: hit,
        } = authenticate(&c, &mut cache, &store, 0, &token, &|_| None, NOW);
        assert_eq!(awaiting, TokenOutcome::AwaitKeys { issuer: 0 });
        assert_eq!(hit, CacheLookup::Miss);
    }

    #[test]
    fn authorization_per_tool_and_upstream_edits() {
        let c = cfg();
        let key = ed_key("k1");
        let ks = KeySet::from_value(&json!({"keys": [key.public_jwk()]}))
            .expect("keys")
            .keys;
        let TokenOutcome::Verified(id) =
            verify_token(&c, 0, &key.jwt(&claims()), &|_| Some(&ks), NOW)
        else {
            panic!("valid")
        };
        let admin = mcp_calls(
            &McpHeaders::default(),
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_report"}}"#,
        )
        .expect("parses");
        assert_eq!(
            authorize(&c, 0, &id, &admin),
            Err(Denial::InsufficientScope(vec![
                "mcp:tools".into(),
                "mcp:admin".into()
            ]))
        );
        assert_eq!(authorize(&c, 0, &id, &[]), Ok(()));
        let announced = calls_from_headers(
            &mcp_request::parse_headers(Some("tools/call"), Some("=?base64?YWRtaW5fcmVwb3J0?="))
                .expect("valid"),
        );
        assert_eq!(
            authorize(&c, 0, &id, &announced),
            Err(Denial::InsufficientScope(vec![
                "mcp:tools".into(),
                "mcp:admin".into()
            ])),
            "a tool announced in headers is authorized before the body arrives"
        );
        assert!(calls_from_headers(&McpHeaders::default()).is_empty());
        // Configuration order: client_id, scope, sub (sorted by claim).
        assert_eq!(
            upstream_edits(&c, &id, &[0, 0, 0]).collect::<Vec<_>>(),
            vec![
                HeaderEdit::Remove("authorization"),
                HeaderEdit::Add("x-mcp-client-id", "c1"),
                HeaderEdit::Add("x-mcp-scope", "mcp:tools"),
                HeaderEdit::Add("x-mcp-subject", "alice"),
            ]
        );
        assert_eq!(
            upstream_edits(&c, &id, &[1, 2, 0]).collect::<Vec<_>>(),
            vec![
                HeaderEdit::Remove("authorization"),
                HeaderEdit::Replace("x-mcp-client-id", "c1"),
                HeaderEdit::Remove("x-mcp-scope"),
                HeaderEdit::Add("x-mcp-scope", "mcp:tools"),
                HeaderEdit::Add("x-mcp-subject", "alice"),
            ],
            "a spoofed header sent twice is removed, not replaced"
        );
        let anonymous = Identity {
            header_values: vec![None, None, None],
            ..(*id).clone()
        };
        assert_eq!(
            upstream_edits(&c, &anonymous, &[0, 1, 3]).collect::<Vec<_>>(),
            vec![
                HeaderEdit::Remove("authorization"),
                HeaderEdit::Remove("x-mcp-scope"),
                HeaderEdit::Remove("x-mcp-subject"),
            ],
            "a claim the token lacks leaves no client-sent value behind"
        );
        assert_eq!(
            upstream_edits(&c, &id, &[]).collect::<Vec<_>>(),
            vec![
                HeaderEdit::Remove("authorization"),
                HeaderEdit::Remove("x-mcp-client-id"),
                HeaderEdit::Add("x-mcp-client-id", "c1"),
                HeaderEdit::Remove("x-mcp-scope"),
                HeaderEdit::Add("x-mcp-scope", "mcp:tools"),
                HeaderEdit::Remove("x-mcp-subject"),
                HeaderEdit::Add("x-mcp-subject", "alice"),
            ],
            "unknown counts are treated as many"
        );
    }

    #[test]
    fn a_shared_entry_with_fewer_identity_headers_is_a_miss_and_spoofed_headers_still_go() {
        let c = cfg();
        let key = ed_key("k1");
        let ks = KeySet::from_value(&json!({"keys": [key.public_jwk()]}))
            .expect("keys")
            .keys;
        let token = key.jwt(&claims());
        let store = MemStore::default();
        // Written under a configuration with only the client_id header (same cache namespace).
        let narrower = EntryShape {
            identity_headers: 1,
            issuers: c.issuers.len(),
        };
        let mut writer = TokenCache::new(&c.fingerprint, c.token_cache_slots, narrower);
        let TokenOutcome::Verified(full) = verify_token(&c, 0, &token, &|_| Some(&ks), NOW) else {
            panic!("valid")
        };
        let short = Rc::new(Identity {
            header_values: full.header_values.get(..1).expect("3 headers").to_vec(),
            ..(*full).clone()
        });
        writer.insert(&store, Miss::default(), 0, &token, &short);
        let Authenticated { outcome, cache } = authenticate(
            &c,
            &mut token_cache(&c),
            &store,
            0,
            &token,
            &|_| Some(&ks),
            NOW,
        );
        assert_eq!(cache, CacheLookup::Miss);
        let TokenOutcome::Verified(id) = outcome else {
            panic!("verified again")
        };
        assert_eq!(id, full);
        assert!(
            upstream_edits(&c, &id, &[0, 0, 1])
                .any(|e| e == HeaderEdit::Replace("x-mcp-subject", "alice")),
            "the client-sent subject is overwritten with the verified one"
        );
        assert_eq!(
            upstream_edits(&c, &short, &[0, 0, 1]).collect::<Vec<_>>(),
            vec![
                HeaderEdit::Remove("authorization"),
                HeaderEdit::Add("x-mcp-client-id", "c1"),
                HeaderEdit::Remove("x-mcp-subject"),
            ],
            "an identity short of values still leaves no client-sent header behind"
        );
    }
}
