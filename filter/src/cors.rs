//! CORS and `Origin` handling (DNS-rebinding protection, browser clients).

/// Request headers a browser MCP client may send.
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID";
/// Response headers a browser MCP client must be able to read.
pub const EXPOSE_HEADERS: &str = "WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version";
const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const METADATA_METHODS: &str = "GET, HEAD, OPTIONS";
const MAX_AGE: &str = "600";

/// The `Origin` of a request compared with the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin` header (non-browser client).
    Absent,
    /// Listed origin (the value, for echoing).
    Allowed(String),
    /// Present but not listed: 403.
    Forbidden,
}

/// Compares the `Origin` header with the exact allow-list.
pub fn check_origin(allowed: &[String], origin: Option<&str>) -> OriginCheck {
    match origin {
        None => OriginCheck::Absent,
        Some(o) if allowed.iter().any(|a| a == o) => OriginCheck::Allowed(o.to_string()),
        Some(_) => OriginCheck::Forbidden,
    }
}

type Headers = Vec<(String, String)>;

fn h(name: &str, value: &str) -> (String, String) {
    (name.to_string(), value.to_string())
}

/// Headers for an actual (non-preflight) response to an allowed origin.
pub fn response_headers(origin: &str) -> Headers {
    vec![
        h("access-control-allow-origin", origin),
        h("vary", "Origin"),
        h("access-control-expose-headers", EXPOSE_HEADERS),
    ]
}

/// Headers of the 204 preflight answer for an allowed origin.
pub fn preflight_headers(origin: &str) -> Headers {
    let mut headers = response_headers(origin);
    headers.push(h("access-control-allow-methods", ALLOW_METHODS));
    headers.push(h("access-control-allow-headers", ALLOW_HEADERS));
    headers.push(h("access-control-max-age", MAX_AGE));
    headers
}

/// Headers making metadata readable from any origin.
pub fn metadata_headers() -> Headers {
    vec![
        h("access-control-allow-origin", "*"),
        h("access-control-expose-headers", EXPOSE_HEADERS),
    ]
}

/// Headers of a metadata preflight answer.
pub fn metadata_preflight_headers() -> Headers {
    vec![
        h("access-control-allow-origin", "*"),
        h("access-control-allow-methods", METADATA_METHODS),
        h("access-control-allow-headers", ALLOW_HEADERS),
        h("access-control-max-age", MAX_AGE),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_must_match_exactly() {
        let allowed = vec!["http://localhost:6274".to_string()];
        assert_eq!(check_origin(&allowed, None), OriginCheck::Absent);
        assert_eq!(
            check_origin(&allowed, Some("http://localhost:6274")),
            OriginCheck::Allowed("http://localhost:6274".into())
        );
        for bad in [
            "http://localhost:6275",
            "http://localhost:6274/",
            "HTTP://localhost:6274",
            "null",
            "http://evil.localhost:6274",
        ] {
            assert_eq!(
                check_origin(&allowed, Some(bad)),
                OriginCheck::Forbidden,
                "{bad}"
            );
        }
        assert_eq!(check_origin(&[], Some("http://a")), OriginCheck::Forbidden);
    }

    #[test]
    fn preflight_allows_mcp_headers_and_exposes_the_challenge() {
        let headers = preflight_headers("http://a");
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("access-control-allow-origin"), Some("http://a"));
        for name in [
            "Authorization",
            "Content-Type",
            "MCP-Protocol-Version",
            "Mcp-Session-Id",
            "Mcp-Method",
            "Mcp-Name",
            "Last-Event-ID",
        ] {
            assert!(
                get("access-control-allow-headers").is_some_and(|v| v.contains(name)),
                "{name}"
            );
        }
        assert_eq!(
            get("access-control-expose-headers"),
            Some("WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version")
        );
    }
}
