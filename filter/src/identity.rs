//! The verified identity passed upstream: which claims become which headers.

use crate::claims::Loose;
use crate::config::IdentityHeader;
use crate::jwks::KeyFingerprint;
use crate::token::{TokenError, VerifiedToken};

const MAX_HEADER_VALUE: usize = 8 * 1024;

/// What a successful verification yields (and what the token cache stores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Token `exp`, seconds since the Unix epoch.
    pub exp: u64,
    /// The issuer (index in the configuration) and key that verified the token: the cached
    /// identity is used only while that issuer still publishes that key.
    pub issuer: usize,
    /// See `issuer`.
    pub key: KeyFingerprint,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// One value per configured identity header, in configuration order (`None`: claim absent).
    pub header_values: Vec<Option<String>>,
    /// The `sub` claim, if a string (for the audit record).
    pub subject: Option<String>,
    /// The `client_id` claim, if a string (for the audit record).
    pub client_id: Option<String>,
}

fn header_safe(s: &str) -> bool {
    s.len() <= MAX_HEADER_VALUE
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

impl Identity {
    /// Extracts the configured claims of a token `issuer` (configuration index) signed; a claim
    /// value that cannot be a header value fails closed. The token must have been decoded with
    /// the same `headers` (`token::decode`), which chose the claims it kept.
    pub fn from_token(
        headers: &[IdentityHeader],
        issuer: usize,
        token: VerifiedToken,
    ) -> Result<Identity, TokenError> {
        let mut header_values = Vec::with_capacity(headers.len());
        for (i, h) in headers.iter().enumerate() {
            let value = if h.claim == "scope" {
                Some(token.scopes.join(" ")).filter(|s| !s.is_empty())
            } else {
                token
                    .claims
                    .identity_claim(headers, i)
                    .and_then(Loose::render)
            };
            if let Some(v) = &value
                && !header_safe(v)
            {
                return Err(TokenError::IdentityClaim);
            }
            header_values.push(value);
        }
        let string_claim = |claim: Option<Loose>| match claim {
            Some(Loose::Str(s)) => Some(s),
            _ => None,
        };
        Ok(Identity {
            exp: token.exp,
            issuer,
            key: token.key,
            scopes: token.scopes,
            header_values,
            subject: string_claim(token.claims.sub),
            client_id: string_claim(token.claims.client_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers() -> Vec<IdentityHeader> {
        [
            ("sub", "x-mcp-subject"),
            ("client_id", "x-mcp-client-id"),
            ("scope", "x-mcp-scope"),
            ("groups", "x-groups"),
            ("n", "x-n"),
        ]
        .iter()
        .map(|(c, h)| IdentityHeader {
            claim: c.to_string(),
            header: h.to_string(),
        })
        .collect()
    }

    fn token(claims: serde_json::Value, scopes: &[&str]) -> VerifiedToken {
        VerifiedToken {
            claims: crate::claims::parse_claims(claims.to_string().as_bytes(), &headers())
                .expect("claims"),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            exp: 99,
            key: [5; 16],
        }
    }

    #[test]
    fn claims_become_header_values() {
        let t = token(
            json!({"sub": "alice", "client_id": "c1", "groups": ["a", "b"], "n": 5}),
            &["mcp:tools", "x"],
        );
        let id = Identity::from_token(&headers(), 2, t).expect("valid");
        assert_eq!(
            id.header_values,
            [
                Some("alice"),
                Some("c1"),
                Some("mcp:tools x"),
                Some("a b"),
                Some("5")
            ]
            .map(|v| v.map(String::from))
        );
        assert_eq!((id.exp, id.issuer, id.key), (99, 2, [5; 16]));
        assert_eq!(
            (id.subject.as_deref(), id.client_id.as_deref()),
            (Some("alice"), Some("c1"))
        );
    }

    #[test]
    fn absent_or_structured_claims_set_no_header() {
        let t = token(json!({"sub": {"nested": 1}, "groups": [1, 2]}), &[]);
        let id = Identity::from_token(&headers(), 2, t).expect("valid");
        assert!(id.header_values.iter().all(Option::is_none));
    }

    #[test]
    fn header_injection_through_claims_fails_closed() {
        for bad in ["alice\r\nx-admin: 1", "caf\u{e9}", " padded", "a\u{0}b"] {
            let t = token(json!({"sub": bad}), &[]);
            assert_eq!(
                Identity::from_token(&headers(), 2, t),
                Err(TokenError::IdentityClaim),
                "{bad:?}"
            );
        }
    }
}
