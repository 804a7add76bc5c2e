//! Who a federated person is to us: the subject derived from the provider and its `sub`, and the
//! upstream claims the policy reads and the access token carries. Pure functions, no IO.
//!
//! Subject scheme: `<provider id>:<upstream sub>`. Provider ids are unique and contain no `:`,
//! so two providers never produce the same subject, and configuration loading refuses a local
//! username that starts with a configured provider's prefix. The upstream `sub` is stable per
//! person at a provider (OpenID Connect Core 1.0 §2), so the subject is stable too, as long as
//! the operator keeps the provider's `id` (renaming the id changes every subject).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::idp::IdentityProvider;

/// Longest upstream `sub` accepted (OpenID Connect Core 1.0 §2 allows 255 ASCII characters).
pub const MAX_UPSTREAM_SUB_LEN: usize = 255;

/// What every subject of provider `id` starts with.
pub fn subject_prefix(provider_id: &str) -> String {
    format!("{provider_id}:")
}

/// The access token `sub` of the person `upstream_sub` at provider `provider_id`.
pub fn subject(provider_id: &str, upstream_sub: &str) -> String {
    format!("{}{upstream_sub}", subject_prefix(provider_id))
}

/// The provider a subject belongs to, when it belongs to a configured one.
pub fn provider_of<'a>(config: &'a Config, subject: &str) -> Option<&'a IdentityProvider> {
    let (id, _) = subject.split_once(':')?;
    config.identity_provider(id)
}

/// Does `subject` still name someone who may hold grants: a configured local user, or a person
/// of a configured identity provider. Removing either from the configuration ends their grants.
pub fn is_configured(config: &Config, subject: &str) -> bool {
    config.users.contains_key(subject) || provider_of(config, subject).is_some()
}

/// A person as their provider described them at their latest sign-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamIdentity {
    pub provider_id: String,
    pub upstream_sub: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub groups: Vec<String>,
    /// The provider's `copy_claims` present in the ID token, copied into access tokens.
    pub copied: Map<String, Value>,
}

impl UpstreamIdentity {
    pub fn subject(&self) -> String {
        subject(&self.provider_id, &self.upstream_sub)
    }

    /// A name for logs and the consent page: the email when there is one.
    pub fn display(&self) -> String {
        self.email.clone().unwrap_or_else(|| self.subject())
    }
}

/// Can `value` go into an HTTP header as the filter forwards identity claims? Values it cannot
/// send would make the filter refuse every request with the token.
fn header_safe(value: &str) -> bool {
    value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A claim value in the form the filter forwards: strings, numbers, booleans and arrays of
/// strings whose text fits in a header. Anything else is left out of the access token.
fn copyable(value: &Value) -> bool {
    match value {
        Value::String(s) => header_safe(s),
        Value::Number(_) | Value::Bool(_) => true,
        Value::Array(items) => items.iter().all(|i| {
            i.as_str()
                .is_some_and(|s| header_safe(s) && !s.contains(' '))
        }),
        _ => false,
    }
}

/// Group names from the groups claim: an array of strings, or one string.
fn groups(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The identity in verified ID token claims (signature, `iss`, `aud`, `exp` and `nonce` are
/// checked before this is called). Errors say what is wrong, for the log.
pub fn from_claims(
    provider: &IdentityProvider,
    claims: &Map<String, Value>,
) -> Result<UpstreamIdentity, String> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or("the ID token has no sub")?;
    if sub.is_empty() || sub.len() > MAX_UPSTREAM_SUB_LEN || !header_safe(sub) {
        return Err(format!(
            "the ID token sub is not 1 to {MAX_UPSTREAM_SUB_LEN} printable ASCII characters"
        ));
    }
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .map(str::to_string);
    // Some providers send `"email_verified": "true"` as a string.
    let email_verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    let mut copied = Map::new();
    for name in &provider.copy_claims {
        match claims.get(name) {
            Some(v) if copyable(v) => {
                copied.insert(name.clone(), v.clone());
            }
            Some(_) => {
                tracing::info!(
                    provider = %provider.id,
                    claim = %name,
                    "claim not copied into the access token: not a header-safe string, number, boolean or array of strings"
                );
            }
            None => {}
        }
    }
    Ok(UpstreamIdentity {
        provider_id: provider.id.clone(),
        upstream_sub: sub.to_string(),
        email,
        email_verified,
        groups: groups(claims.get(&provider.groups_claim)),
        copied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn provider(id: &str) -> IdentityProvider {
        IdentityProvider {
            id: id.into(),
            display_name: id.into(),
            issuer: "https://idp.example".into(),
            client_id: "c".into(),
            client_auth: crate::idp::ClientAuth::Secret("s".into()),
            scopes: vec!["openid".into()],
            authorization_params: Default::default(),
            id_token_signing_algs: vec!["RS256".into()],
            copy_claims: vec!["email".into(), "name".into(), "groups".into()],
            groups_claim: "groups".into(),
            allowed_email_domains: vec![],
            require_verified_email: true,
            required_groups: vec![],
            scope_rules: vec![],
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn subjects_of_different_providers_never_collide() {
        // The same upstream sub at two providers, and a sub that itself contains the separator.
        assert_ne!(subject("a", "x"), subject("b", "x"));
        assert_ne!(subject("a", "b:x"), subject("a-b", "x"));
        assert_eq!(subject("corp", "248289761001"), "corp:248289761001");
    }

    #[test]
    fn claims_become_an_identity_with_only_header_safe_copies() {
        let id = from_claims(
            &provider("corp"),
            &claims(json!({
                "sub": "u1", "email": "a@example.com", "email_verified": "true",
                "name": "Zoë", "groups": ["mcp-users", "mcp-admins"]
            })),
        )
        .unwrap();
        assert_eq!(id.subject(), "corp:u1");
        assert!(id.email_verified);
        assert_eq!(id.groups, vec!["mcp-users", "mcp-admins"]);
        assert_eq!(id.copied.get("email"), Some(&json!("a@example.com")));
        assert_eq!(
            id.copied.get("groups"),
            Some(&json!(["mcp-users", "mcp-admins"]))
        );
        // Not representable in a header: left out rather than breaking every request.
        assert!(!id.copied.contains_key("name"));
    }

    #[test]
    fn a_missing_or_unusable_sub_is_refused() {
        let p = provider("corp");
        assert!(from_claims(&p, &claims(json!({"email": "a@b"}))).is_err());
        assert!(from_claims(&p, &claims(json!({"sub": ""}))).is_err());
        assert!(from_claims(&p, &claims(json!({"sub": "a\nb"}))).is_err());
        assert!(from_claims(&p, &claims(json!({"sub": "x".repeat(256)}))).is_err());
    }

    #[test]
    fn a_single_group_string_counts_as_one_group() {
        let id = from_claims(
            &provider("corp"),
            &claims(json!({"sub": "u", "groups": "admins"})),
        )
        .unwrap();
        assert_eq!(id.groups, vec!["admins"]);
        assert!(!id.email_verified);
    }
}
