//! Local responses: RFC 6750 challenges (401/403/400) and the small JSON error bodies.

use serde_json::json;

use crate::resource::Resource;
use crate::stats::Counter;
use crate::token::TokenError;

/// A response the filter sends instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status.
    pub status: u32,
    /// Lower-case header names and values.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl LocalResponse {
    /// The first value of a header.
    #[cfg(test)]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds headers (e.g. CORS).
    pub fn with_headers(mut self, extra: Vec<(String, String)>) -> Self {
        self.headers.extend(extra);
        self
    }
}

/// `resource_metadata="<url>", scope="<scopes>"` (the parameters every challenge carries).
pub fn params(metadata_url: &str, scopes: &[String]) -> String {
    format!(
        r#"resource_metadata="{metadata_url}", scope="{}""#,
        scopes.join(" ")
    )
}

/// A JSON error response without a challenge.
pub fn json_error(status: u32, error: &str, description: &str) -> LocalResponse {
    let body = json!({"error": error, "error_description": description}).to_string();
    LocalResponse {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: body.into_bytes(),
    }
}

fn with_challenge(status: u32, error: &str, description: &str, challenge: String) -> LocalResponse {
    let mut r = json_error(status, error, description);
    r.headers.push(("www-authenticate".into(), challenge));
    r
}

/// Why a request is denied. One variant per response shape and counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No `Authorization` header: 401 without `error`.
    MissingToken,
    /// Malformed request per RFC 6750 (two Authorization headers): 400 `invalid_request`.
    InvalidRequest(&'static str),
    /// 401 `invalid_token`.
    InvalidToken(&'static str),
    /// 403 `insufficient_scope` with every needed scope.
    InsufficientScope(Vec<String>),
    /// 403 disallowed `Origin`.
    Origin,
    /// 400 malformed MCP request.
    BadMcpRequest(&'static str),
    /// 400 with the JSON-RPC error `HeaderMismatch`: `Mcp-Method` / `Mcp-Name` are malformed,
    /// missing where the body needs them, or disagree with the body (2026-07-28 transport).
    HeaderMismatch {
        /// The `message` (static text, never the header or body values).
        description: &'static str,
        /// The request's JSON-RPC `id` as JSON text (a string or number), when the body was
        /// read and has one.
        id: Option<String>,
    },
    /// 413.
    BodyTooLarge,
    /// 503 no keys.
    KeysUnavailable,
    /// 404 unmatched path.
    UnmatchedPath,
}

impl From<TokenError> for Denial {
    /// A failed token check is a 401 `invalid_token` that names the check.
    fn from(e: TokenError) -> Self {
        Denial::InvalidToken(e.description())
    }
}

impl Denial {
    /// The counter this denial increments.
    pub fn counter(&self) -> Counter {
        match self {
            Denial::MissingToken => Counter::MissingToken,
            Denial::InvalidRequest(_) => Counter::InvalidRequest,
            Denial::InvalidToken(_) => Counter::InvalidToken,
            Denial::InsufficientScope(_) => Counter::InsufficientScope,
            Denial::Origin => Counter::Origin,
            Denial::BadMcpRequest(_) | Denial::HeaderMismatch { .. } => Counter::BadMcpRequest,
            Denial::BodyTooLarge => Counter::BodyTooLarge,
            Denial::KeysUnavailable => Counter::KeysUnavailable,
            Denial::UnmatchedPath => Counter::UnmatchedPath,
        }
    }

    /// Short reason for the log line.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::MissingToken => "no bearer token",
            Denial::InvalidRequest(d) | Denial::InvalidToken(d) | Denial::BadMcpRequest(d) => d,
            Denial::HeaderMismatch { description, .. } => description,
            Denial::InsufficientScope(_) => "required scope missing",
            Denial::Origin => "origin not allowed",
            Denial::BodyTooLarge => "request body exceeds max_body_bytes",
            Denial::KeysUnavailable => "signing keys not available",
            Denial::UnmatchedPath => "no resource for this path",
        }
    }

    /// The response; `resource` gives the challenge parameters where one applies.
    pub fn response(&self, resource: Option<&Resource>) -> LocalResponse {
        let params = resource.map(|r| r.challenge_params.as_str());
        let challenge = |error: Option<&str>, desc: &str| {
            let attrs = match error {
                Some(e) => format!(r#"error="{e}", error_description="{desc}""#),
                None => String::new(),
            };
            match (attrs.is_empty(), params) {
                (true, Some(p)) => format!("Bearer {p}"),
                (false, Some(p)) => format!("Bearer {attrs}, {p}"),
                (true, None) => "Bearer".to_string(),
                (false, None) => format!("Bearer {attrs}"),
            }
        };
        match self {
            Denial::MissingToken => with_challenge(
                401,
                "unauthorized",
                "bearer token required",
                challenge(None, ""),
            ),
            Denial::InvalidRequest(d) => with_challenge(
                400,
                "invalid_request",
                d,
                challenge(Some("invalid_request"), d),
            ),
            Denial::InvalidToken(d) => {
                with_challenge(401, "invalid_token", d, challenge(Some("invalid_token"), d))
            }
            Denial::InsufficientScope(needed) => {
                let desc = self.reason();
                let value = match resource {
                    Some(r) => format!(
                        r#"Bearer error="insufficient_scope", error_description="{desc}", {}"#,
                        self::params(&r.metadata_url, needed)
                    ),
                    None => {
                        format!(r#"Bearer error="insufficient_scope", error_description="{desc}""#)
                    }
                };
                let mut resp = with_challenge(403, "insufficient_scope", desc, value);
                resp.body = json!({"error": "insufficient_scope", "error_description": desc, "scope": needed.join(" ")})
                    .to_string()
                    .into_bytes();
                resp
            }
            Denial::Origin => json_error(403, "forbidden_origin", "origin not allowed"),
            Denial::BadMcpRequest(d) => json_error(400, "invalid_request", d),
            Denial::HeaderMismatch { description, id } => {
                header_mismatch(description, id.as_deref())
            }
            Denial::BodyTooLarge => json_error(413, "invalid_request", self.reason()),
            Denial::KeysUnavailable => {
                let mut r = json_error(503, "temporarily_unavailable", self.reason());
                r.headers.push(("retry-after".into(), "5".into()));
                r
            }
            Denial::UnmatchedPath => json_error(404, "not_found", self.reason()),
        }
    }
}

/// The JSON-RPC error code the 2026-07-28 Streamable HTTP transport gives a request whose
/// `Mcp-Method` / `Mcp-Name` (or other mirrored headers) are missing, malformed, or disagree with
/// the body (`HeaderMismatch`, answered with status 400).
pub const HEADER_MISMATCH_CODE: i32 = -32020;

/// 400 with a JSON-RPC error response `HeaderMismatch`, carrying the request's `id` (JSON text)
/// when known (MCP's error responses leave `id` out when it is not). `description` is one of the
/// static descriptions, which need no escaping inside a JSON string.
fn header_mismatch(description: &str, id: Option<&str>) -> LocalResponse {
    let id = id.map(|id| format!(r#""id":{id},"#)).unwrap_or_default();
    let body = format!(
        r#"{{"jsonrpc":"2.0",{id}"error":{{"code":{HEADER_MISMATCH_CODE},"message":"{description}"}}}}"#
    );
    LocalResponse {
        status: 400,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: body.into_bytes(),
    }
}

/// 404 for unknown metadata paths.
pub fn metadata_not_found() -> LocalResponse {
    json_error(
        404,
        "not_found",
        "no protected resource metadata at this path",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{demo_json, parse};

    const RM: &str =
        r#"resource_metadata="http://localhost:10000/.well-known/oauth-protected-resource/mcp""#;

    fn body(r: &LocalResponse) -> serde_json::Value {
        serde_json::from_slice(&r.body).expect("json body")
    }

    #[test]
    fn challenges_carry_resource_metadata_and_scope() {
        let c = parse(&demo_json()).expect("valid");
        let res = Some(&c.resources[0]);
        let table: Vec<(Denial, u32, String)> = vec![
            (
                Denial::MissingToken,
                401,
                format!(r#"Bearer {RM}, scope="mcp:tools""#),
            ),
            (
                Denial::InvalidToken("token expired"),
                401,
                format!(
                    r#"Bearer error="invalid_token", error_description="token expired", {RM}, scope="mcp:tools""#
                ),
            ),
            (
                Denial::InvalidRequest("multiple Authorization headers"),
                400,
                format!(
                    r#"Bearer error="invalid_request", error_description="multiple Authorization headers", {RM}, scope="mcp:tools""#
                ),
            ),
            (
                Denial::InsufficientScope(vec!["mcp:tools".into(), "mcp:admin".into()]),
                403,
                format!(
                    r#"Bearer error="insufficient_scope", error_description="required scope missing", {RM}, scope="mcp:tools mcp:admin""#
                ),
            ),
        ];
        for (denial, status, www) in table {
            let r = denial.response(res);
            assert_eq!(r.status, status, "{denial:?}");
            assert_eq!(
                r.header("www-authenticate"),
                Some(www.as_str()),
                "{denial:?}"
            );
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.header("cache-control"), Some("no-store"));
        }
        let missing = Denial::MissingToken.response(res);
        assert!(
            !missing
                .header("www-authenticate")
                .unwrap_or("")
                .contains("error=")
        );
        assert_eq!(body(&missing)["error"], "unauthorized");
        let scope = Denial::InsufficientScope(vec!["a".into(), "b".into()]).response(res);
        assert_eq!(body(&scope)["scope"], "a b");
    }

    #[test]
    fn non_challenge_denials_have_json_bodies_and_no_www_authenticate() {
        let table = [
            (Denial::Origin, 403, "forbidden_origin"),
            (
                Denial::BadMcpRequest("body is not a JSON-RPC message"),
                400,
                "invalid_request",
            ),
            (Denial::BodyTooLarge, 413, "invalid_request"),
            (Denial::KeysUnavailable, 503, "temporarily_unavailable"),
            (Denial::UnmatchedPath, 404, "not_found"),
        ];
        for (denial, status, error) in table {
            let r = denial.response(None);
            assert_eq!(r.status, status);
            assert_eq!(r.header("www-authenticate"), None);
            assert_eq!(body(&r)["error"], error);
        }
        assert_eq!(
            Denial::KeysUnavailable.response(None).header("retry-after"),
            Some("5")
        );
    }

    #[test]
    fn a_header_mismatch_is_a_json_rpc_error_with_the_requests_id() {
        let with_id = Denial::HeaderMismatch {
            description: "Mcp-Name header does not match the body",
            id: Some(r#""req-7""#.into()),
        }
        .response(None);
        assert_eq!(with_id.status, 400);
        assert_eq!(with_id.header("content-type"), Some("application/json"));
        assert_eq!(with_id.header("www-authenticate"), None);
        assert_eq!(
            body(&with_id),
            json!({"jsonrpc": "2.0", "id": "req-7",
                "error": {"code": -32020, "message": "Mcp-Name header does not match the body"}})
        );
        let numeric = Denial::HeaderMismatch {
            description: "d",
            id: Some("3".into()),
        };
        assert_eq!(body(&numeric.response(None))["id"], json!(3));
        let unknown = Denial::HeaderMismatch {
            description: "invalid Mcp-Name header encoding",
            id: None,
        }
        .response(None);
        let unknown = body(&unknown);
        assert_eq!(unknown["error"]["code"], json!(HEADER_MISMATCH_CODE));
        assert!(unknown.get("id").is_none(), "{unknown}");
        assert_eq!(numeric.counter(), Counter::BadMcpRequest);
    }

    #[test]
    fn descriptions_are_safe_inside_a_quoted_string() {
        use TokenError::*;
        for e in [
            Malformed,
            TooLarge,
            HeaderJson,
            PayloadJson,
            AlgNone,
            AlgHmac,
            AlgUnsupported,
            Typ,
            Crit,
            KidAmbiguous,
            UnknownKid,
            AlgKeyMismatch,
            Signature,
            IssMissing,
            IssMismatch,
            AudMissing,
            AudMismatch,
            ExpMissing,
            Expired,
            NotYetValid,
            IssuedInFuture,
            ClaimType,
            IdentityClaim,
            Duplicate,
        ] {
            let d = e.description();
            assert!(
                d.bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
                "{d}"
            );
        }
    }
}
