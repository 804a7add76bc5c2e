//! Counter names (Envoy shows them as `wasmcustom.<name>`).

/// Every counter the filter defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Request forwarded upstream after a successful check.
    Allowed,
    /// 401 without token.
    MissingToken,
    /// 400 for a malformed Authorization.
    InvalidRequest,
    /// 401 `invalid_token`.
    InvalidToken,
    /// 403 `insufficient_scope`.
    InsufficientScope,
    /// 403 disallowed Origin.
    Origin,
    /// 400 bad MCP request (headers/body).
    BadMcpRequest,
    /// 413.
    BodyTooLarge,
    /// 503 no keys.
    KeysUnavailable,
    /// 404 unmatched path.
    UnmatchedPath,
    /// JWKS fetch succeeded.
    JwksFetchOk,
    /// JWKS fetch failed.
    JwksFetchFailed,
    /// Verified-token cache hit.
    CacheHit,
    /// Verified-token cache miss.
    CacheMiss,
    /// Metadata document served.
    MetadataServed,
    /// Preflight answered.
    Preflight,
}

impl Counter {
    /// All counters, in definition order.
    pub const ALL: [Counter; 16] = [
        Counter::Allowed,
        Counter::MissingToken,
        Counter::InvalidRequest,
        Counter::InvalidToken,
        Counter::InsufficientScope,
        Counter::Origin,
        Counter::BadMcpRequest,
        Counter::BodyTooLarge,
        Counter::KeysUnavailable,
        Counter::UnmatchedPath,
        Counter::JwksFetchOk,
        Counter::JwksFetchFailed,
        Counter::CacheHit,
        Counter::CacheMiss,
        Counter::MetadataServed,
        Counter::Preflight,
    ];

    /// Position in [`Counter::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The stat name.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Allowed => "mcp_auth.allowed",
            Counter::MissingToken => "mcp_auth.denied.missing_token",
            Counter::InvalidRequest => "mcp_auth.denied.invalid_request",
            Counter::InvalidToken => "mcp_auth.denied.invalid_token",
            Counter::InsufficientScope => "mcp_auth.denied.insufficient_scope",
            Counter::Origin => "mcp_auth.denied.origin",
            Counter::BadMcpRequest => "mcp_auth.denied.bad_mcp_request",
            Counter::BodyTooLarge => "mcp_auth.denied.body_too_large",
            Counter::KeysUnavailable => "mcp_auth.denied.keys_unavailable",
            Counter::UnmatchedPath => "mcp_auth.denied.unmatched_path",
            Counter::JwksFetchOk => "mcp_auth.jwks_fetch.ok",
            Counter::JwksFetchFailed => "mcp_auth.jwks_fetch.failed",
            Counter::CacheHit => "mcp_auth.cache.hit",
            Counter::CacheMiss => "mcp_auth.cache.miss",
            Counter::MetadataServed => "mcp_auth.metadata.served",
            Counter::Preflight => "mcp_auth.preflight",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_counter_at_its_index_with_a_unique_name() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert!(c.name().starts_with("mcp_auth."));
            assert_eq!(
                Counter::ALL.iter().filter(|o| o.name() == c.name()).count(),
                1
            );
        }
    }
}
