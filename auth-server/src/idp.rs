//! `[[identity_providers]]`: upstream OpenID providers people sign in with, validated into
//! [`IdentityProvider`]. The README's "Identity providers" table documents every field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::config::{ConfigError, field_error};

/// Scopes asked of the provider when `scopes` is not given.
pub const DEFAULT_UPSTREAM_SCOPES: &[&str] = &["openid", "email", "profile"];
/// ID token signature algorithms accepted when `id_token_signing_algs` is not given.
pub const DEFAULT_ID_TOKEN_SIGNING_ALGS: &[&str] = &["RS256", "ES256"];
/// The claim that carries group (or role) names when `groups_claim` is not given.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
/// Whether an allowed email domain needs `email_verified: true` when not configured.
pub const DEFAULT_REQUIRE_VERIFIED_EMAIL: bool = true;
/// Longest provider id: it prefixes every subject of the provider.
pub const MAX_PROVIDER_ID_LEN: usize = 32;

/// Asymmetric algorithms an ID token may be signed with. HMAC algorithms (keyed with the client
/// secret) are never accepted: the secret is shared with the provider's whole tenant admin
/// surface, and a public signature ties the token to the provider's published keys.
pub const SUPPORTED_ID_TOKEN_SIGNING_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Authorization parameters the upstream leg sets itself; `authorization_params` may not.
const RESERVED_AUTHORIZATION_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "request",
    "request_uri",
    "response_mode",
];

/// Claims the access token sets itself; `copy_claims` may not name them.
const RESERVED_TOKEN_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "scp",
    "azp",
    "nonce",
    "auth_time",
    "acr",
    "amr",
    "sid",
    "at_hash",
    "c_hash",
    "cnf",
    "act",
];

/// A scope only people in one of `groups` may be granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRule {
    pub scope: String,
    pub groups: Vec<String>,
}

/// How this server authenticates to the provider's token endpoint.
#[derive(Clone)]
pub enum ClientAuth {
    /// `client_secret_basic` (or `client_secret_post` when the provider offers only that).
    Secret(String),
    /// `private_key_jwt` (RFC 7523): a short-lived assertion signed with this key, which the
    /// operator registered (its public half) at the provider.
    PrivateKeyJwt(AssertionKey),
}

impl std::fmt::Debug for ClientAuth {
    /// Never prints the secret or the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::Secret(_) => f.write_str("Secret(..)"),
            ClientAuth::PrivateKeyJwt(k) => write!(f, "PrivateKeyJwt({})", k.alg),
        }
    }
}

/// A private key for client assertions: its PEM text (checked at load), algorithm and key ID.
#[derive(Clone)]
pub struct AssertionKey {
    pub pem: String,
    /// `ES256` (a P-256 key) or `RS256` (an RSA key).
    pub alg: &'static str,
    pub kid: Option<String>,
}

/// The algorithm of a PEM private key usable for client assertions.
fn assertion_alg(pem: &str) -> Option<&'static str> {
    use jwt_simple::prelude::{ES256KeyPair, RS256KeyPair};
    if ES256KeyPair::from_pem(pem).is_ok() {
        Some("ES256")
    } else if RS256KeyPair::from_pem(pem).is_ok() {
        Some("RS256")
    } else {
        None
    }
}

/// A validated upstream OpenID provider.
#[derive(Debug, Clone)]
pub struct IdentityProvider {
    pub id: String,
    pub display_name: String,
    /// Exactly as the provider states it in its discovery document and in `iss`.
    pub issuer: String,
    pub client_id: String,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub authorization_params: BTreeMap<String, String>,
    pub id_token_signing_algs: Vec<String>,
    /// Claims of the ID token copied into access tokens.
    pub copy_claims: Vec<String>,
    pub groups_claim: String,
    /// Lower-case domains; empty allows every email (and none).
    pub allowed_email_domains: Vec<String>,
    pub require_verified_email: bool,
    /// Sign-in needs one of these groups; empty requires none.
    pub required_groups: Vec<String>,
    pub scope_rules: Vec<ScopeRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentityProvider {
    id: String,
    display_name: Option<String>,
    issuer: String,
    client_id: String,
    client_secret_file: Option<String>,
    client_secret_env: Option<String>,
    private_key_file: Option<String>,
    private_key_id: Option<String>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    authorization_params: BTreeMap<String, String>,
    id_token_signing_algs: Option<Vec<String>>,
    #[serde(default)]
    copy_claims: Vec<String>,
    groups_claim: Option<String>,
    #[serde(default)]
    allowed_email_domains: Vec<String>,
    require_verified_email: Option<bool>,
    #[serde(default)]
    required_groups: Vec<String>,
    #[serde(default)]
    scope_rules: Vec<RawScopeRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopeRule {
    scope: String,
    groups: Vec<String>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PROVIDER_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

/// The client authentication: a private key file for `private_key_jwt`, else the secret.
fn client_auth(
    raw: &RawIdentityProvider,
    field: &str,
    base_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<ClientAuth, ConfigError> {
    let Some(file) = &raw.private_key_file else {
        if raw.private_key_id.is_some() {
            return Err(field_error(
                format!("{field}.private_key_id"),
                "needs private_key_file",
            ));
        }
        return client_secret(raw, field, base_dir, env).map(ClientAuth::Secret);
    };
    if raw.client_secret_file.is_some() || raw.client_secret_env.is_some() {
        return Err(field_error(
            format!("{field}.private_key_file"),
            "set a private key or a client secret, not both",
        ));
    }
    let f = format!("{field}.private_key_file");
    let path = base_dir.join(file);
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| field_error(&f, format!("cannot read {}: {e}", path.display())))?;
    let alg = assertion_alg(&pem).ok_or_else(|| {
        field_error(
            &f,
            "not a PEM private key for ES256 (P-256) or RS256 (RSA): use PKCS#8 PEM",
        )
    })?;
    Ok(ClientAuth::PrivateKeyJwt(AssertionKey {
        pem,
        alg,
        kid: raw.private_key_id.clone(),
    }))
}

/// Reads the client secret from its file (relative to `base_dir`) or environment variable.
fn client_secret(
    raw: &RawIdentityProvider,
    field: &str,
    base_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<String, ConfigError> {
    let secret = match (&raw.client_secret_file, &raw.client_secret_env) {
        (Some(_), Some(_)) => {
            return Err(field_error(
                format!("{field}.client_secret_file"),
                "set client_secret_file or client_secret_env, not both",
            ));
        }
        (None, None) => {
            return Err(field_error(
                format!("{field}.client_secret_file"),
                "a client secret is required: set client_secret_file or client_secret_env (or private_key_file)",
            ));
        }
        (Some(file), None) => {
            let path = base_dir.join(file);
            std::fs::read_to_string(&path).map_err(|e| {
                field_error(
                    format!("{field}.client_secret_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?
        }
        (None, Some(var)) => env.get(var).cloned().ok_or_else(|| {
            field_error(
                format!("{field}.client_secret_env"),
                format!("the environment variable {var} is not set"),
            )
        })?,
    };
    // Files usually end with a newline that is not part of the secret.
    let secret = secret.trim().to_string();
    if secret.is_empty() {
        return Err(field_error(
            format!("{field}.client_secret_file"),
            "the client secret is empty",
        ));
    }
    Ok(secret)
}

fn validate_issuer(field: &str, issuer: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(issuer)
        .map_err(|e| field_error(format!("{field}.issuer"), format!("not a URL: {e}")))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(field_error(
                format!("{field}.issuer"),
                "must be https (http only for a provider on localhost)",
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(field_error(
            format!("{field}.issuer"),
            "must not have a query or fragment",
        ));
    }
    Ok(())
}

pub(crate) fn validate(
    raw: Vec<RawIdentityProvider>,
    base_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Vec<IdentityProvider>, ConfigError> {
    let mut out: Vec<IdentityProvider> = Vec::new();
    for (i, p) in raw.into_iter().enumerate() {
        let field = format!("identity_providers[{i}]");
        let f = |name: &str| format!("{field}.{name}");
        if !valid_id(&p.id) {
            return Err(field_error(
                f("id"),
                format!(
                    "must be 1 to {MAX_PROVIDER_ID_LEN} characters of a-z, 0-9 and `-`, not starting with `-`"
                ),
            ));
        }
        if out.iter().any(|o| o.id == p.id) {
            return Err(field_error(f("id"), "duplicate identity provider id"));
        }
        validate_issuer(&field, &p.issuer)?;
        if p.client_id.is_empty() {
            return Err(field_error(f("client_id"), "must not be empty"));
        }
        let client_auth = client_auth(&p, &field, base_dir, env)?;
        let scopes = p.scopes.clone().unwrap_or_else(|| {
            DEFAULT_UPSTREAM_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        if !scopes.iter().any(|s| s == "openid") {
            return Err(field_error(f("scopes"), "must include `openid`"));
        }
        for name in p.authorization_params.keys() {
            if RESERVED_AUTHORIZATION_PARAMS.contains(&name.as_str()) {
                return Err(field_error(
                    f("authorization_params"),
                    format!("`{name}` is set by the server itself"),
                ));
            }
        }
        let algs = p.id_token_signing_algs.clone().unwrap_or_else(|| {
            DEFAULT_ID_TOKEN_SIGNING_ALGS
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        if algs.is_empty() {
            return Err(field_error(f("id_token_signing_algs"), "must not be empty"));
        }
        for alg in &algs {
            if !SUPPORTED_ID_TOKEN_SIGNING_ALGS.contains(&alg.as_str()) {
                return Err(field_error(
                    f("id_token_signing_algs"),
                    format!(
                        "`{alg}` is not one of {}",
                        SUPPORTED_ID_TOKEN_SIGNING_ALGS.join(", ")
                    ),
                ));
            }
        }
        for claim in &p.copy_claims {
            if claim.is_empty() || RESERVED_TOKEN_CLAIMS.contains(&claim.as_str()) {
                return Err(field_error(
                    f("copy_claims"),
                    format!("`{claim}` cannot be copied (the access token sets it itself)"),
                ));
            }
        }
        let mut allowed_email_domains = Vec::new();
        for d in &p.allowed_email_domains {
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
                return Err(field_error(
                    f("allowed_email_domains"),
                    format!("`{d}` is not a domain"),
                ));
            }
            allowed_email_domains.push(d);
        }
        let mut scope_rules: Vec<ScopeRule> = Vec::new();
        for (j, r) in p.scope_rules.into_iter().enumerate() {
            if r.groups.is_empty() {
                return Err(field_error(
                    format!("{field}.scope_rules[{j}].groups"),
                    "at least one group is required",
                ));
            }
            if scope_rules.iter().any(|o| o.scope == r.scope) {
                return Err(field_error(
                    format!("{field}.scope_rules[{j}].scope"),
                    "duplicate rule for this scope",
                ));
            }
            scope_rules.push(ScopeRule {
                scope: r.scope,
                groups: r.groups,
            });
        }
        out.push(IdentityProvider {
            display_name: p.display_name.unwrap_or_else(|| p.id.clone()),
            id: p.id,
            issuer: p.issuer,
            client_id: p.client_id,
            client_auth,
            scopes,
            authorization_params: p.authorization_params,
            id_token_signing_algs: algs,
            copy_claims: p.copy_claims,
            groups_claim: p
                .groups_claim
                .unwrap_or_else(|| DEFAULT_GROUPS_CLAIM.to_string()),
            allowed_email_domains,
            require_verified_email: p
                .require_verified_email
                .unwrap_or(DEFAULT_REQUIRE_VERIFIED_EMAIL),
            required_groups: p.required_groups,
            scope_rules,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `[[identity_providers]]` table of the README, as (field, default) pairs.
    fn readme_rows() -> Vec<(String, String)> {
        let readme = include_str!("../README.md");
        let start = readme
            .find("### `[[identity_providers]]`")
            .expect("the README documents identity providers");
        let section = &readme[start..];
        let end = section[4..].find("\n### ").map_or(section.len(), |e| e + 4);
        section[..end]
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
                (
                    cells[0].trim().trim_matches('`').to_string(),
                    cells[1].trim().to_string(),
                )
            })
            .collect()
    }

    fn quoted(list: &[&str]) -> String {
        let items: Vec<String> = list.iter().map(|s| format!("\"{s}\"")).collect();
        format!("`[{}]`", items.join(", "))
    }

    #[test]
    fn the_readme_documents_every_field_and_default() {
        let rows = readme_rows();
        let default_of = |field: &str| {
            rows.iter()
                .find(|(f, _)| f == field)
                .map(|(_, d)| d.clone())
                .unwrap_or_else(|| panic!("no README row for `{field}`"))
        };
        assert_eq!(default_of("scopes"), quoted(DEFAULT_UPSTREAM_SCOPES));
        assert_eq!(
            default_of("id_token_signing_algs"),
            quoted(DEFAULT_ID_TOKEN_SIGNING_ALGS)
        );
        assert_eq!(
            default_of("groups_claim"),
            format!("`{DEFAULT_GROUPS_CLAIM}`")
        );
        assert_eq!(
            default_of("require_verified_email"),
            format!("`{DEFAULT_REQUIRE_VERIFIED_EMAIL}`")
        );
        // Every field of the file format has a row (deny_unknown_fields names them all).
        for field in [
            "id",
            "display_name",
            "issuer",
            "client_id",
            "client_secret_file",
            "client_secret_env",
            "private_key_file",
            "private_key_id",
            "authorization_params",
            "copy_claims",
            "allowed_email_domains",
            "required_groups",
            "scope_rules",
        ] {
            default_of(field);
        }
    }

    const BASE: &str = "issuer = \"http://localhost:9000\"\n[[resources]]\nurl = \"http://localhost:10000/mcp\"\nscopes = [\"mcp:tools\", \"mcp:admin\"]\n";

    fn parse(provider: &str, env: &[(&str, &str)]) -> Result<crate::config::Config, ConfigError> {
        let text = format!("{BASE}\n[[identity_providers]]\n{provider}");
        crate::config::parse(
            &text,
            Path::new("/nonexistent"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    const GOOD: &str = "id = \"corp\"\nissuer = \"https://login.example.com\"\nclient_id = \"abc\"\nclient_secret_env = \"CORP_SECRET\"\n";

    fn field_of(r: Result<crate::config::Config, ConfigError>) -> String {
        match r {
            Err(ConfigError::Field { field, .. }) => field,
            Err(e) => format!("other: {e}"),
            Ok(_) => "accepted".into(),
        }
    }

    #[test]
    fn a_provider_gets_its_secret_from_the_environment_and_the_defaults() {
        let c = parse(GOOD, &[("CORP_SECRET", " s3cret\n")]).unwrap();
        let p = c.identity_provider("corp").unwrap();
        assert!(matches!(&p.client_auth, ClientAuth::Secret(s) if s == "s3cret"));
        assert_eq!(p.display_name, "corp");
        assert_eq!(p.scopes, DEFAULT_UPSTREAM_SCOPES);
        assert_eq!(p.groups_claim, DEFAULT_GROUPS_CLAIM);
        assert_eq!(p.id_token_signing_algs, DEFAULT_ID_TOKEN_SIGNING_ALGS);
        assert!(p.require_verified_email);
    }

    #[test]
    fn a_secret_file_is_read_relative_to_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("corp.secret"), "from-file\n").unwrap();
        let text = format!(
            "{BASE}\n[[identity_providers]]\nid = \"corp\"\nissuer = \"https://login.example.com\"\nclient_id = \"abc\"\nclient_secret_file = \"corp.secret\"\n"
        );
        let c = crate::config::parse(&text, dir.path(), std::iter::empty()).unwrap();
        assert!(matches!(
            &c.identity_providers[0].client_auth,
            ClientAuth::Secret(s) if s == "from-file"
        ));
    }

    #[test]
    fn bad_provider_fields_are_named() {
        let env = [("CORP_SECRET", "s")];
        let cases: &[(&str, &str)] = &[
            (
                "id = \"Corp\"\nissuer = \"https://x\"\nclient_id = \"a\"\nclient_secret_env = \"CORP_SECRET\"\n",
                "identity_providers[0].id",
            ),
            (
                "id = \"corp\"\nissuer = \"http://idp.example\"\nclient_id = \"a\"\nclient_secret_env = \"CORP_SECRET\"\n",
                "identity_providers[0].issuer",
            ),
            (
                "id = \"corp\"\nissuer = \"https://x\"\nclient_id = \"a\"\nclient_secret_env = \"MISSING\"\n",
                "identity_providers[0].client_secret_env",
            ),
            (
                "id = \"corp\"\nissuer = \"https://x\"\nclient_id = \"a\"\n",
                "identity_providers[0].client_secret_file",
            ),
            (
                &format!("{GOOD}private_key_file = \"key.pem\"\n"),
                "identity_providers[0].private_key_file",
            ),
            (
                &format!("{GOOD}private_key_id = \"k1\"\n"),
                "identity_providers[0].private_key_id",
            ),
            (
                "id = \"corp\"\nissuer = \"https://x\"\nclient_id = \"a\"\nprivate_key_file = \"missing.pem\"\n",
                "identity_providers[0].private_key_file",
            ),
            (
                &format!("{GOOD}scopes = [\"email\"]\n"),
                "identity_providers[0].scopes",
            ),
            (
                &format!("{GOOD}id_token_signing_algs = [\"HS256\"]\n"),
                "identity_providers[0].id_token_signing_algs",
            ),
            (
                &format!("{GOOD}copy_claims = [\"sub\"]\n"),
                "identity_providers[0].copy_claims",
            ),
            (
                &format!("{GOOD}authorization_params = {{ nonce = \"x\" }}\n"),
                "identity_providers[0].authorization_params",
            ),
            (
                &format!(
                    "{GOOD}[[identity_providers.scope_rules]]\nscope = \"mcp:nope\"\ngroups = [\"g\"]\n"
                ),
                "identity_providers[0].scope_rules[0].scope",
            ),
        ];
        for (provider, field) in cases {
            assert_eq!(field_of(parse(provider, &env)), *field, "{provider}");
        }
    }

    #[test]
    fn a_private_key_file_selects_private_key_jwt_and_a_non_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = jwt_simple::prelude::ES256KeyPair::generate();
        std::fs::write(dir.path().join("key.pem"), key.to_pem().unwrap()).unwrap();
        std::fs::write(dir.path().join("junk.pem"), "not a key").unwrap();
        let text = |file: &str| {
            format!(
                "{BASE}\n[[identity_providers]]\nid = \"corp\"\nissuer = \"https://x\"\nclient_id = \"a\"\nprivate_key_file = \"{file}\"\nprivate_key_id = \"k1\"\n"
            )
        };
        let c = crate::config::parse(&text("key.pem"), dir.path(), std::iter::empty()).unwrap();
        assert!(matches!(
            &c.identity_providers[0].client_auth,
            ClientAuth::PrivateKeyJwt(k) if k.alg == "ES256" && k.kid.as_deref() == Some("k1")
        ));
        let junk = crate::config::parse(&text("junk.pem"), dir.path(), std::iter::empty());
        assert_eq!(field_of(junk), "identity_providers[0].private_key_file");
    }

    #[test]
    fn a_local_user_cannot_take_a_providers_subjects() {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$0LQGysyfTNAzlfElyTi+Mw$qvctgKZegMuatVJN1MxPZ2YIGSkWphTF2OCxnO1ojss";
        let text = format!(
            "{BASE}\n[[users]]\nusername = \"corp:alice\"\npassword_hash = \"{hash}\"\n[[identity_providers]]\n{GOOD}"
        );
        let r = crate::config::parse(
            &text,
            Path::new("/x"),
            [("CORP_SECRET".to_string(), "s".to_string())],
        );
        assert_eq!(field_of(r), "identity_providers[0].id");
    }
}
