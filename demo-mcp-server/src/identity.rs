//! The caller identity that the filter in Envoy verified and forwarded as request headers.
//!
//! Pure functions of a header map, unit-tested natively. The server trusts these headers only
//! because it listens on loopback and Envoy, which strips client-sent copies and sets them from
//! a verified token, is the only thing that can reach it (see README.md).

use http::HeaderMap;
use serde::Serialize;

/// `sub` of the verified access token.
pub const SUBJECT_HEADER: &str = "x-mcp-subject";
/// `client_id` of the verified access token.
pub const CLIENT_ID_HEADER: &str = "x-mcp-client-id";
/// `scope` of the verified access token, space separated.
pub const SCOPE_HEADER: &str = "x-mcp-scope";

/// Scope that the filter requires for `tools/call` of `admin_report`.
pub const ADMIN_SCOPE: &str = "mcp:admin";

/// Who is calling, as forwarded by the filter. A missing header is `None`/empty, never guessed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardedIdentity {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
}

impl ForwardedIdentity {
    /// Reads the identity headers; values that are not visible ASCII are treated as absent.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let scopes = text(SCOPE_HEADER)
            .map(|scope| scope.split_ascii_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Self {
            subject: text(SUBJECT_HEADER),
            client_id: text(CLIENT_ID_HEADER),
            scopes,
        }
    }

    /// True when the filter forwarded a subject, i.e. the request came through Envoy with a
    /// verified token.
    pub fn is_authenticated(&self) -> bool {
        self.subject.is_some()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                *name,
                HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
            );
        }
        map
    }

    #[test]
    fn reads_subject_client_and_space_separated_scopes() {
        let identity = ForwardedIdentity::from_headers(&headers(&[
            (SUBJECT_HEADER, "demo"),
            (CLIENT_ID_HEADER, "client-123"),
            (SCOPE_HEADER, "mcp:tools  mcp:admin"),
        ]));
        assert_eq!(
            identity,
            ForwardedIdentity {
                subject: Some("demo".into()),
                client_id: Some("client-123".into()),
                scopes: vec!["mcp:tools".into(), "mcp:admin".into()],
            }
        );
        assert!(identity.is_authenticated());
        assert!(identity.has_scope(ADMIN_SCOPE));
    }

    #[test]
    fn missing_or_empty_headers_mean_no_identity() {
        let identity = ForwardedIdentity::from_headers(&headers(&[(SUBJECT_HEADER, "  ")]));
        assert!(!identity.is_authenticated());
        assert!(identity.scopes.is_empty());
        assert!(!identity.has_scope(ADMIN_SCOPE));
    }

    #[test]
    fn scope_match_is_exact_not_prefix() {
        let identity =
            ForwardedIdentity::from_headers(&headers(&[(SCOPE_HEADER, "mcp:admin-lite")]));
        assert!(!identity.has_scope(ADMIN_SCOPE));
    }
}
