//! Configuration: one TOML file plus `MCP_AUTH_SERVER__*` environment overrides, validated once
//! into [`Config`], a form that cannot be invalid. Every error names the offending field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::client_assertion::{self, Jwks};
use crate::oauth::AuthMethod;
use crate::redirect_uri::{self, PrivateUseSchemes};

/// Prefix of environment variables that override configuration fields. Nested fields are
/// separated by a double underscore: `MCP_AUTH_SERVER__REGISTRATION__RATE_LIMIT_PER_MINUTE`.
pub const ENV_PREFIX: &str = "MCP_AUTH_SERVER__";

/// The scope that must never be a resource scope (it names a grant property, not an access right).
pub const OFFLINE_ACCESS: &str = "offline_access";

// Defaults and bounds of the optional fields. The README's configuration tables state the same
// values; `the_readme_states_every_default_and_bound` below keeps the two in step.

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";
pub const DEFAULT_STORAGE_PATH: &str = "mcp-auth-server.sqlite";
pub const DEFAULT_SIGNING_ALGORITHM: SigningAlgorithm = SigningAlgorithm::EdDsa;
pub const DEFAULT_REGISTRATION_ENABLED: bool = true;
pub const DEFAULT_REGISTRATION_RATE_LIMIT_PER_MINUTE: u32 = 20;
/// `private_use_redirect_schemes` when the file does not set it: every private-use scheme that
/// is not refused outright, as native MCP clients (Cursor, VS Code extensions) need.
pub const DEFAULT_PRIVATE_USE_REDIRECT_SCHEMES: &str = ANY_PRIVATE_USE_SCHEME;
/// The `private_use_redirect_schemes` value that accepts every private-use scheme.
pub const ANY_PRIVATE_USE_SCHEME: &str = "any";
/// The `private_use_redirect_schemes` value that accepts none: https and loopback http only.
pub const NO_PRIVATE_USE_SCHEME: &str = "none";
/// `[branding] product_name` when the file does not set it: the heading of every page.
pub const DEFAULT_PRODUCT_NAME: &str = "MCP sign-in";
/// Longest `[branding] product_name`, in characters.
pub const MAX_PRODUCT_NAME_CHARS: usize = 80;
/// Longest `[branding] logo_url`, in bytes: the logo is inlined in every page.
pub const MAX_LOGO_URL_BYTES: usize = 32 * 1024;
/// Longest scope description, in characters.
pub const MAX_SCOPE_DESCRIPTION_CHARS: usize = 200;
/// The image types a `logo_url` data URI may carry.
pub const LOGO_MEDIA_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/svg+xml",
];

/// A numeric field with a default and inclusive bounds.
#[derive(Debug, Clone, Copy)]
pub struct Bounded {
    /// The field's name in the file.
    pub field: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
}

impl Bounded {
    /// The value given, or the default; an error naming the field when out of bounds.
    fn check(&self, value: Option<u64>) -> Result<u64, ConfigError> {
        let v = value.unwrap_or(self.default);
        if (self.min..=self.max).contains(&v) {
            Ok(v)
        } else if self.min == 0 {
            Err(field_error(
                self.field,
                format!("must be at most {}", self.max),
            ))
        } else {
            Err(field_error(
                self.field,
                format!("must be between {} and {}", self.min, self.max),
            ))
        }
    }

    fn seconds(&self, value: Option<u64>) -> Result<Duration, ConfigError> {
        self.check(value).map(Duration::from_secs)
    }

    /// A count per minute (bounds within `u32`).
    fn per_minute(&self, value: Option<u32>) -> Result<u32, ConfigError> {
        u32::try_from(self.check(value.map(u64::from))?)
            .map_err(|_| field_error(self.field, "out of range"))
    }
}

const DAY_SECS: u64 = 86_400;

pub const ACCESS_TOKEN_LIFETIME_SECS: Bounded = Bounded {
    field: "access_token_lifetime_secs",
    default: 600,
    min: 1,
    max: DAY_SECS,
};
pub const REFRESH_TOKEN_LIFETIME_SECS: Bounded = Bounded {
    field: "refresh_token_lifetime_secs",
    default: 30 * DAY_SECS,
    min: 1,
    max: 365 * DAY_SECS,
};
pub const AUTHORIZATION_CODE_LIFETIME_SECS: Bounded = Bounded {
    field: "authorization_code_lifetime_secs",
    default: 300,
    min: 1,
    max: 600,
};
pub const LOGIN_SESSION_LIFETIME_SECS: Bounded = Bounded {
    field: "login_session_lifetime_secs",
    default: 8 * 3600,
    min: 1,
    max: 30 * DAY_SECS,
};
pub const KEY_PUBLISH_DELAY_SECS: Bounded = Bounded {
    field: "key_publish_delay_secs",
    default: 300,
    min: 0,
    max: 7 * DAY_SECS,
};
pub const CLIENT_METADATA_FETCH_TIMEOUT_SECS: Bounded = Bounded {
    field: "client_metadata_fetch_timeout_secs",
    default: 5,
    min: 1,
    max: 60,
};
pub const CLIENT_METADATA_FAILURE_CACHE_SECS: Bounded = Bounded {
    field: "client_metadata_failure_cache_secs",
    default: crate::cimd::FAILURE_CACHE.as_secs(),
    min: 0,
    max: 300,
};
pub const REQUEST_TIMEOUT_SECS: Bounded = Bounded {
    field: "request_timeout_secs",
    default: 30,
    min: 1,
    max: 300,
};
pub const HEADER_READ_TIMEOUT_SECS: Bounded = Bounded {
    field: "header_read_timeout_secs",
    default: 10,
    min: 1,
    max: 300,
};
pub const UPSTREAM_LOGIN_LIFETIME_SECS: Bounded = Bounded {
    field: "upstream_login_lifetime_secs",
    default: 600,
    min: 30,
    max: 3600,
};
pub const LOGIN_FAILURES_PER_MINUTE: Bounded = Bounded {
    field: "login_failures_per_minute",
    default: 10,
    min: 1,
    max: 10_000,
};

pub const REGISTERED_CLIENT_MAX_IDLE_SECS: Bounded = Bounded {
    field: "registered_client_max_idle_secs",
    default: 90 * DAY_SECS,
    min: 0,
    max: 3650 * DAY_SECS,
};
pub const CLIENT_AUTH_FAILURES_PER_MINUTE: Bounded = Bounded {
    field: "client_auth_failures_per_minute",
    default: 20,
    min: 1,
    max: 10_000,
};
pub const CLIENT_AUTH_FAILURES_PER_CLIENT_PER_MINUTE: Bounded = Bounded {
    field: "client_auth_failures_per_client_per_minute",
    default: 30,
    min: 1,
    max: 10_000,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config field `{field}`: {message}")]
    Field { field: String, message: String },
}

pub(crate) fn field_error(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    EdDsa,
    Es256,
    Rs256,
}

impl SigningAlgorithm {
    pub fn jwa_name(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDsa => "EdDSA",
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::Rs256 => "RS256",
        }
    }

    pub fn from_jwa_name(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(SigningAlgorithm::EdDsa),
            "ES256" => Some(SigningAlgorithm::Es256),
            "RS256" => Some(SigningAlgorithm::Rs256),
            _ => None,
        }
    }
}

/// A protected resource the server issues tokens for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub url: String,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
}

/// What every page shows of the operator: the product name and an optional logo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branding {
    pub product_name: String,
    /// A `data:image/...` URI, so that the pages load nothing from another origin.
    pub logo_url: Option<String>,
}

impl Default for Branding {
    fn default() -> Self {
        Branding {
            product_name: DEFAULT_PRODUCT_NAME.to_string(),
            logo_url: None,
        }
    }
}

/// A client listed in the configuration file (verified by the operator).
#[derive(Debug, Clone)]
pub struct StaticClient {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    /// Argon2 PHC hash of the secret; `None` for a public client.
    pub client_secret_hash: Option<String>,
    pub auth_method: AuthMethod,
    /// The public keys of a `private_key_jwt` client.
    pub jwks: Option<Jwks>,
    /// Its `token_endpoint_auth_signing_alg`, when configured.
    pub signing_alg: Option<String>,
}

/// Dynamic client registration (the `[registration]` table).
#[derive(Debug, Clone)]
pub struct Registration {
    pub enabled: bool,
    /// Registrations allowed per client address per minute (at least 1).
    pub rate_limit_per_minute: u32,
}

/// The validated configuration. Each field is the checked form of the file field of the same
/// name (see [`RawConfig`] for what each means, its default and its bounds).
#[derive(Debug, Clone)]
pub struct Config {
    /// Exact issuer identifier, no trailing slash.
    pub issuer: String,
    /// Path component of the issuer ("" when the issuer has no path), prefix of every endpoint.
    pub issuer_path: String,
    /// Cookies are `Secure` when the issuer is https.
    pub issuer_is_https: bool,
    pub listen: SocketAddr,
    /// Where `GET /metrics` is served; `None` serves no metrics.
    pub admin_listen: Option<SocketAddr>,
    /// Resolved against the configuration file's directory. Unused with `postgres`.
    pub storage_path: PathBuf,
    /// `[postgres]`: the shared database of several replicas, instead of the SQLite file.
    pub postgres: Option<crate::postgres::PostgresConfig>,
    pub signing_algorithm: SigningAlgorithm,
    pub allow_insecure_localhost_client_metadata: bool,
    pub access_token_lifetime: Duration,
    pub refresh_token_lifetime: Duration,
    pub authorization_code_lifetime: Duration,
    pub login_session_lifetime: Duration,
    pub key_publish_delay: Duration,
    pub client_metadata_fetch_timeout: Duration,
    pub client_metadata_failure_cache: Duration,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub login_failures_per_minute: u32,
    pub client_auth_failures_per_minute: u32,
    /// Zero keeps registered clients forever.
    pub registered_client_max_idle: Duration,
    pub client_auth_failures_per_client_per_minute: u32,
    /// Which native-app redirect URI schemes clients may register and use.
    pub private_use_redirect_schemes: PrivateUseSchemes,
    pub registration: Registration,
    /// Whose `X-Forwarded-For` / `Forwarded` header names the client address.
    pub proxy: crate::client_address::TrustedProxies,
    pub resources: Vec<Resource>,
    /// username -> argon2 PHC hash
    pub users: BTreeMap<String, String>,
    pub clients: Vec<StaticClient>,
    /// Upstream OpenID providers people may sign in with.
    pub identity_providers: Vec<crate::idp::IdentityProvider>,
    pub upstream_login_lifetime: Duration,
    pub branding: Branding,
    /// Resource URL -> scope -> what the consent page says the scope allows.
    pub scope_descriptions: BTreeMap<String, BTreeMap<String, String>>,
}

impl Config {
    /// The consent page's descriptions of the scopes of the resource at `url`.
    pub fn scope_descriptions(&self, url: &str) -> Option<&BTreeMap<String, String>> {
        self.scope_descriptions.get(url)
    }

    /// Absolute URL of an endpoint path such as `/token`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    pub fn identity_provider(&self, id: &str) -> Option<&crate::idp::IdentityProvider> {
        self.identity_providers.iter().find(|p| p.id == id)
    }

    pub fn static_client(&self, client_id: &str) -> Option<&StaticClient> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }
}

/// The configuration file as written (after environment overrides). These comments and the
/// README's configuration tables say the same thing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Required. The issuer identifier, used byte for byte in metadata, in the token `iss`
    /// claim and in the `iss` redirect parameter: `https://` (or `http://` for local
    /// development), no trailing slash, query, fragment or user information, in normalized form.
    /// A path prefixes every endpoint, and the RFC 8414 metadata is served path-inserted.
    issuer: String,
    /// Socket address to listen on. Default [`DEFAULT_LISTEN`].
    listen: Option<String>,
    /// Socket address of the admin listener, which serves Prometheus metrics at `/metrics` and
    /// nothing else. Must differ from `listen`. Default: none (no admin listener, no metrics).
    admin_listen: Option<String>,
    /// SQLite database file, relative to the configuration file's directory; created with mode
    /// 0600 (and its directory) if missing. Default [`DEFAULT_STORAGE_PATH`].
    storage_path: Option<String>,
    /// Algorithm for new signing keys: `EdDSA`, `ES256` or `RS256`; a change takes effect at
    /// the next `keys rotate`. Default [`DEFAULT_SIGNING_ALGORITHM`].
    signing_algorithm: Option<String>,
    /// Development switch: also fetch Client ID Metadata Documents from `http://` loopback
    /// URLs, then from loopback addresses only. Default `false`.
    #[serde(default)]
    allow_insecure_localhost_client_metadata: bool,
    /// Access token lifetime, seconds. [`ACCESS_TOKEN_LIFETIME_SECS`].
    access_token_lifetime_secs: Option<u64>,
    /// Absolute lifetime of a refresh-token family from the code exchange, seconds.
    /// [`REFRESH_TOKEN_LIFETIME_SECS`].
    refresh_token_lifetime_secs: Option<u64>,
    /// Authorization code lifetime, seconds. [`AUTHORIZATION_CODE_LIFETIME_SECS`].
    authorization_code_lifetime_secs: Option<u64>,
    /// Lifetime of the login session cookie and its stored session, seconds.
    /// [`LOGIN_SESSION_LIFETIME_SECS`].
    login_session_lifetime_secs: Option<u64>,
    /// How long `keys rotate` publishes a new key before it signs, seconds.
    /// [`KEY_PUBLISH_DELAY_SECS`].
    key_publish_delay_secs: Option<u64>,
    /// Timeout for resolving and fetching a Client ID Metadata Document, seconds.
    /// [`CLIENT_METADATA_FETCH_TIMEOUT_SECS`].
    client_metadata_fetch_timeout_secs: Option<u64>,
    /// How long a failed Client ID Metadata Document lookup is remembered, seconds.
    /// [`CLIENT_METADATA_FAILURE_CACHE_SECS`].
    client_metadata_failure_cache_secs: Option<u64>,
    /// Timeout for handling any request (slower ones get 408), seconds.
    /// [`REQUEST_TIMEOUT_SECS`].
    request_timeout_secs: Option<u64>,
    /// How long a client may take to send the request line and headers, and how long a
    /// kept-alive connection may sit idle, seconds. [`HEADER_READ_TIMEOUT_SECS`].
    header_read_timeout_secs: Option<u64>,
    /// Failed sign-ins allowed per client IP address per minute; beyond them every sign-in
    /// from that address gets 429 until the minute is over. [`LOGIN_FAILURES_PER_MINUTE`].
    login_failures_per_minute: Option<u32>,
    /// Failed client authentications at `/token` and `/revoke` allowed per client address per
    /// minute; beyond them every client authentication from it gets 429.
    /// [`CLIENT_AUTH_FAILURES_PER_MINUTE`].
    client_auth_failures_per_minute: Option<u32>,
    /// Dynamically registered clients with no authorization or token request for this long are
    /// deleted, with their refresh tokens, by the hourly purge; `0` keeps them forever.
    /// [`REGISTERED_CLIENT_MAX_IDLE_SECS`].
    registered_client_max_idle_secs: Option<u64>,
    /// Failed authentications allowed per client (one that has a secret or keys) per minute,
    /// from all addresses together. [`CLIENT_AUTH_FAILURES_PER_CLIENT_PER_MINUTE`].
    client_auth_failures_per_client_per_minute: Option<u32>,
    /// Which private-use URI schemes (RFC 8252 §7.1, native apps: `cursor://...`,
    /// `com.example.app:/...`) redirect URIs may use: `"any"` (every scheme that is not refused
    /// outright), `"none"` (https and loopback http only), or a list of lower-case schemes.
    /// Default [`DEFAULT_PRIVATE_USE_REDIRECT_SCHEMES`].
    private_use_redirect_schemes: Option<RawSchemes>,
    /// `[registration]`: dynamic client registration.
    #[serde(default)]
    registration: RawRegistration,
    /// `[proxy]`: the reverse proxies whose client address headers are believed.
    #[serde(default)]
    proxy: crate::client_address::RawProxy,
    /// `[postgres]`: store everything in PostgreSQL instead of the SQLite file.
    postgres: Option<crate::postgres::RawPostgres>,
    /// `[[resources]]`: at least one.
    #[serde(default)]
    resources: Vec<RawResource>,
    /// `[[users]]`: the built-in login.
    #[serde(default)]
    users: Vec<RawUser>,
    /// `[branding]`: what the pages show of the operator.
    #[serde(default)]
    branding: RawBranding,
    /// `[[clients]]`: static clients, shown as verified.
    #[serde(default)]
    clients: Vec<RawClient>,
    /// `[[identity_providers]]`: upstream OpenID providers (see `idp.rs`).
    #[serde(default)]
    identity_providers: Vec<crate::idp::RawIdentityProvider>,
    /// How long a sign-in at an upstream provider may take from our redirect to its callback,
    /// seconds. [`UPSTREAM_LOGIN_LIFETIME_SECS`].
    upstream_login_lifetime_secs: Option<u64>,
}

/// `private_use_redirect_schemes` as written: a keyword or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSchemes {
    Keyword(String),
    List(Vec<String>),
}

const PRIVATE_USE_FIELD: &str = "private_use_redirect_schemes";

fn validate_private_use_schemes(raw: Option<RawSchemes>) -> Result<PrivateUseSchemes, ConfigError> {
    let raw =
        raw.unwrap_or_else(|| RawSchemes::Keyword(DEFAULT_PRIVATE_USE_REDIRECT_SCHEMES.into()));
    match raw {
        RawSchemes::Keyword(k) if k == ANY_PRIVATE_USE_SCHEME => Ok(PrivateUseSchemes::Any),
        RawSchemes::Keyword(k) if k == NO_PRIVATE_USE_SCHEME => Ok(PrivateUseSchemes::None),
        RawSchemes::Keyword(k) => Err(field_error(
            PRIVATE_USE_FIELD,
            format!(
                "`{k}` is neither `{ANY_PRIVATE_USE_SCHEME}`, `{NO_PRIVATE_USE_SCHEME}` nor a list of schemes"
            ),
        )),
        RawSchemes::List(list) if list.is_empty() => Err(field_error(
            PRIVATE_USE_FIELD,
            format!(
                "an empty list; write `\"{NO_PRIVATE_USE_SCHEME}\"` to accept no private-use scheme"
            ),
        )),
        RawSchemes::List(list) => {
            for scheme in &list {
                redirect_uri::check_private_use_scheme(scheme)
                    .map_err(|m| field_error(PRIVATE_USE_FIELD, m))?;
            }
            Ok(PrivateUseSchemes::Only(list))
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRegistration {
    /// Serve `/register` and advertise `registration_endpoint`; when `false`, `/register`
    /// answers 404. Default [`DEFAULT_REGISTRATION_ENABLED`].
    enabled: Option<bool>,
    /// Registrations allowed per client IP address per minute, at least 1; further ones get
    /// 429 `temporarily_unavailable`. Default [`DEFAULT_REGISTRATION_RATE_LIMIT_PER_MINUTE`].
    rate_limit_per_minute: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBranding {
    /// The heading of every page and the start of its title. Default [`DEFAULT_PRODUCT_NAME`];
    /// at most [`MAX_PRODUCT_NAME_CHARS`] characters.
    product_name: Option<String>,
    /// A `data:` URI of one of [`LOGO_MEDIA_TYPES`], at most [`MAX_LOGO_URL_BYTES`] bytes,
    /// shown above the heading. Only data URIs: the pages load nothing from other origins.
    logo_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    /// The resource URL, exactly as clients send it in `resource` and as the token `aud`:
    /// http(s), no fragment, unique.
    url: String,
    /// The scopes that can be granted for this resource (never `offline_access`).
    scopes: Vec<String>,
    /// Granted when a request names no scope; a subset of `scopes`. When empty, requests must
    /// name scopes.
    #[serde(default)]
    default_scopes: Vec<String>,
    /// Scope -> what it allows, in words, shown on the consent page next to the scope name.
    /// Every key is one of `scopes`; at most [`MAX_SCOPE_DESCRIPTION_CHARS`] characters each.
    #[serde(default)]
    scope_descriptions: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    /// Login name, also the token `sub` claim.
    username: String,
    /// Argon2 PHC string from `mcp-auth-server hash-password`.
    password_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    /// Any id without spaces; URL-shaped ids are reserved for metadata documents.
    client_id: String,
    /// Name shown on the login and consent pages. Default: the id.
    client_name: Option<String>,
    /// Registered redirect URIs, at least one.
    redirect_uris: Vec<String>,
    /// Argon2 hash of the client secret; makes the client confidential. Default: none (public).
    client_secret_hash: Option<String>,
    /// `none`, `client_secret_basic`, `client_secret_post` or `private_key_jwt`. Default:
    /// `none`, or `client_secret_basic` with a secret.
    token_endpoint_auth_method: Option<String>,
    /// For `private_key_jwt`: the client's JWKS as JSON text. Exactly one of `jwks` and
    /// `jwks_file`.
    jwks: Option<String>,
    /// For `private_key_jwt`: a file holding the client's JWKS, resolved against the
    /// configuration file's directory and read at startup.
    jwks_file: Option<String>,
    /// For `private_key_jwt`: the one algorithm the client signs with. Default: any of
    /// [`client_assertion::SIGNING_ALGS`] that fits the key.
    token_endpoint_auth_signing_alg: Option<String>,
}

/// Read the file, apply environment overrides from `env`, validate.
pub fn load(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse(&text, &base_dir, env).map_err(|e| match e {
        ConfigError::Syntax { message, .. } => ConfigError::Syntax {
            path: path.to_path_buf(),
            message,
        },
        other => other,
    })
}

/// Parse configuration text; relative storage paths are resolved against `base_dir`.
pub fn parse(
    text: &str,
    base_dir: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let syntax = |e: toml::de::Error| ConfigError::Syntax {
        path: PathBuf::new(),
        message: e.to_string(),
    };
    let mut table: toml::Table = toml::from_str(text).map_err(syntax)?;
    let env: BTreeMap<String, String> = env.into_iter().collect();
    apply_env_overrides(&mut table, env.clone())?;
    let rendered = toml::to_string(&table).map_err(|e| ConfigError::Syntax {
        path: PathBuf::new(),
        message: e.to_string(),
    })?;
    let raw: RawConfig = toml::from_str(&rendered).map_err(syntax)?;
    validate(raw, base_dir, &env)
}

fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, value) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if segments.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "empty field name".into(),
            });
        }
        let Some((last, parents)) = segments.split_last() else {
            continue;
        };
        let mut current = &mut *table;
        for parent in parents {
            let entry = current
                .entry(parent.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            current = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        message: format!("`{parent}` is not a table"),
                    });
                }
            };
        }
        current.insert(last.clone(), env_value(&value));
    }
    Ok(())
}

/// Environment values are typed by their look: integers and booleans, otherwise strings.
fn env_value(value: &str) -> toml::Value {
    if let Ok(i) = value.parse::<i64>() {
        toml::Value::Integer(i)
    } else if value == "true" || value == "false" {
        toml::Value::Boolean(value == "true")
    } else {
        toml::Value::String(value.to_string())
    }
}

fn validate(
    mut raw: RawConfig,
    base_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Config, ConfigError> {
    let issuer = validate_issuer(&raw.issuer)?;
    let listen: SocketAddr = raw
        .listen
        .as_deref()
        .unwrap_or(DEFAULT_LISTEN)
        .parse()
        .map_err(|e| field_error("listen", format!("not a socket address: {e}")))?;
    let admin_listen = match raw.admin_listen.as_deref() {
        None => None,
        Some(text) => {
            let address: SocketAddr = text
                .parse()
                .map_err(|e| field_error("admin_listen", format!("not a socket address: {e}")))?;
            if address == listen {
                return Err(field_error(
                    "admin_listen",
                    "must differ from listen (metrics are never served on the public port)",
                ));
            }
            Some(address)
        }
    };
    if raw.postgres.is_some() && raw.storage_path.is_some() {
        return Err(field_error(
            "storage_path",
            "is the SQLite file; with [postgres] everything is stored in PostgreSQL: remove one",
        ));
    }
    let postgres = crate::postgres::validate(raw.postgres.take(), base_dir)
        .map_err(|(field, message)| field_error(field, message))?;
    let storage = raw
        .storage_path
        .unwrap_or_else(|| DEFAULT_STORAGE_PATH.to_string());
    if storage.trim().is_empty() {
        return Err(field_error("storage_path", "must not be empty"));
    }
    let storage_path = base_dir.join(storage);
    let signing_algorithm = match raw.signing_algorithm.as_deref() {
        None => DEFAULT_SIGNING_ALGORITHM,
        Some(name) => SigningAlgorithm::from_jwa_name(name).ok_or_else(|| {
            field_error(
                "signing_algorithm",
                format!("`{name}` is not one of EdDSA, ES256, RS256"),
            )
        })?,
    };
    let access_token_lifetime =
        ACCESS_TOKEN_LIFETIME_SECS.seconds(raw.access_token_lifetime_secs)?;
    let refresh_token_lifetime =
        REFRESH_TOKEN_LIFETIME_SECS.seconds(raw.refresh_token_lifetime_secs)?;
    let authorization_code_lifetime =
        AUTHORIZATION_CODE_LIFETIME_SECS.seconds(raw.authorization_code_lifetime_secs)?;
    let login_session_lifetime =
        LOGIN_SESSION_LIFETIME_SECS.seconds(raw.login_session_lifetime_secs)?;
    let key_publish_delay = KEY_PUBLISH_DELAY_SECS.seconds(raw.key_publish_delay_secs)?;
    let client_metadata_fetch_timeout =
        CLIENT_METADATA_FETCH_TIMEOUT_SECS.seconds(raw.client_metadata_fetch_timeout_secs)?;
    let client_metadata_failure_cache =
        CLIENT_METADATA_FAILURE_CACHE_SECS.seconds(raw.client_metadata_failure_cache_secs)?;
    let request_timeout = REQUEST_TIMEOUT_SECS.seconds(raw.request_timeout_secs)?;
    let header_read_timeout = HEADER_READ_TIMEOUT_SECS.seconds(raw.header_read_timeout_secs)?;
    let login_failures_per_minute = u32::try_from(
        LOGIN_FAILURES_PER_MINUTE.check(raw.login_failures_per_minute.map(u64::from))?,
    )
    .map_err(|_| field_error(LOGIN_FAILURES_PER_MINUTE.field, "out of range"))?;
    let client_auth_failures_per_minute =
        CLIENT_AUTH_FAILURES_PER_MINUTE.per_minute(raw.client_auth_failures_per_minute)?;
    let client_auth_failures_per_client_per_minute = CLIENT_AUTH_FAILURES_PER_CLIENT_PER_MINUTE
        .per_minute(raw.client_auth_failures_per_client_per_minute)?;
    let registered_client_max_idle =
        REGISTERED_CLIENT_MAX_IDLE_SECS.seconds(raw.registered_client_max_idle_secs)?;
    let registration = Registration {
        enabled: raw
            .registration
            .enabled
            .unwrap_or(DEFAULT_REGISTRATION_ENABLED),
        rate_limit_per_minute: raw
            .registration
            .rate_limit_per_minute
            .unwrap_or(DEFAULT_REGISTRATION_RATE_LIMIT_PER_MINUTE),
    };
    if registration.rate_limit_per_minute == 0 {
        return Err(field_error(
            "registration.rate_limit_per_minute",
            "must be at least 1 (set registration.enabled = false to turn registration off)",
        ));
    }

    let private_use_redirect_schemes =
        validate_private_use_schemes(raw.private_use_redirect_schemes)?;
    let proxy = crate::client_address::validate(raw.proxy)
        .map_err(|(field, message)| field_error(field, message))?;
    let scope_descriptions = validate_scope_descriptions(&raw.resources)?;
    let resources = validate_resources(raw.resources)?;
    let branding = validate_branding(raw.branding)?;
    let users = validate_users(raw.users)?;
    let clients = validate_clients(raw.clients, base_dir, &private_use_redirect_schemes)?;
    let identity_providers = crate::idp::validate(raw.identity_providers, base_dir, env)?;
    check_federation(&identity_providers, &users, &resources)?;
    let upstream_login_lifetime =
        UPSTREAM_LOGIN_LIFETIME_SECS.seconds(raw.upstream_login_lifetime_secs)?;

    Ok(Config {
        issuer: issuer.identifier,
        issuer_path: issuer.path,
        issuer_is_https: issuer.is_https,
        listen,
        admin_listen,
        storage_path,
        postgres,
        signing_algorithm,
        allow_insecure_localhost_client_metadata: raw.allow_insecure_localhost_client_metadata,
        access_token_lifetime,
        refresh_token_lifetime,
        authorization_code_lifetime,
        login_session_lifetime,
        key_publish_delay,
        client_metadata_fetch_timeout,
        client_metadata_failure_cache,
        request_timeout,
        header_read_timeout,
        login_failures_per_minute,
        client_auth_failures_per_minute,
        client_auth_failures_per_client_per_minute,
        registered_client_max_idle,
        private_use_redirect_schemes,
        registration,
        proxy,
        resources,
        users,
        clients,
        identity_providers,
        upstream_login_lifetime,
        branding,
        scope_descriptions,
    })
}

fn validate_branding(raw: RawBranding) -> Result<Branding, ConfigError> {
    let product_name = match raw.product_name {
        None => DEFAULT_PRODUCT_NAME.to_string(),
        Some(name) => {
            let name = name.trim().to_string();
            if name.is_empty() || name.chars().count() > MAX_PRODUCT_NAME_CHARS {
                return Err(field_error(
                    "branding.product_name",
                    format!("must be 1 to {MAX_PRODUCT_NAME_CHARS} characters"),
                ));
            }
            name
        }
    };
    let logo_url = match raw.logo_url {
        None => None,
        Some(url) => {
            check_logo_url(&url).map_err(|m| field_error("branding.logo_url", m))?;
            Some(url)
        }
    };
    Ok(Branding {
        product_name,
        logo_url,
    })
}

/// A logo is a `data:` URI of an image type: the Content-Security-Policy lets pages load
/// images from data URIs and from nowhere else.
fn check_logo_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_LOGO_URL_BYTES {
        return Err(format!("longer than {MAX_LOGO_URL_BYTES} bytes"));
    }
    let Some((header, data)) = url.strip_prefix("data:").and_then(|r| r.split_once(',')) else {
        return Err(
            "must be a data: URI (data:image/png;base64,...); the pages load nothing from other origins"
                .into(),
        );
    };
    let media_type = header.split(';').next().unwrap_or_default();
    if !LOGO_MEDIA_TYPES.contains(&media_type) {
        return Err(format!(
            "the media type `{media_type}` is not one of {}",
            LOGO_MEDIA_TYPES.join(", ")
        ));
    }
    if data.is_empty() {
        return Err("the data URI has no data".into());
    }
    Ok(())
}

/// Each resource's scope descriptions, keyed by resource URL; every described scope must be
/// one of the resource's scopes.
fn validate_scope_descriptions(
    raw: &[RawResource],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, ConfigError> {
    let mut out = BTreeMap::new();
    for (i, r) in raw.iter().enumerate() {
        let field = format!("resources[{i}].scope_descriptions");
        for (scope, description) in &r.scope_descriptions {
            if !r.scopes.contains(scope) {
                return Err(field_error(
                    &field,
                    format!("`{scope}` is not listed in scopes"),
                ));
            }
            let chars = description.trim().chars().count();
            if chars == 0 || chars > MAX_SCOPE_DESCRIPTION_CHARS {
                return Err(field_error(
                    &field,
                    format!(
                        "the description of `{scope}` must be 1 to {MAX_SCOPE_DESCRIPTION_CHARS} characters"
                    ),
                ));
            }
        }
        if !r.scope_descriptions.is_empty() {
            let trimmed = r
                .scope_descriptions
                .iter()
                .map(|(s, d)| (s.clone(), d.trim().to_string()))
                .collect();
            out.insert(r.url.clone(), trimmed);
        }
    }
    Ok(out)
}

/// What identity providers and the rest of the configuration must agree on: no local username
/// looks like a provider's subject, and every scope rule names a scope some resource offers.
fn check_federation(
    providers: &[crate::idp::IdentityProvider],
    users: &BTreeMap<String, String>,
    resources: &[Resource],
) -> Result<(), ConfigError> {
    for (i, p) in providers.iter().enumerate() {
        let prefix = crate::identity::subject_prefix(&p.id);
        if let Some(user) = users.keys().find(|u| u.starts_with(&prefix)) {
            return Err(field_error(
                format!("identity_providers[{i}].id"),
                format!(
                    "local user `{user}` would share subjects with this provider; rename the user"
                ),
            ));
        }
        for (j, rule) in p.scope_rules.iter().enumerate() {
            if !resources.iter().any(|r| r.scopes.contains(&rule.scope)) {
                return Err(field_error(
                    format!("identity_providers[{i}].scope_rules[{j}].scope"),
                    format!("`{}` is not a scope of any resource", rule.scope),
                ));
            }
        }
    }
    Ok(())
}

/// A checked issuer identifier and what the server derives from it.
struct Issuer {
    identifier: String,
    /// The path without a trailing slash ("" when there is none).
    path: String,
    is_https: bool,
}

fn validate_issuer(issuer: &str) -> Result<Issuer, ConfigError> {
    let err = |m: &str| field_error("issuer", m);
    let url = url::Url::parse(issuer).map_err(|e| err(&format!("not a URL: {e}")))?;
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err(err("scheme must be https (or http for local development)")),
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err("must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err("must not contain user information"));
    }
    if issuer.ends_with('/') {
        return Err(err("must not end with a slash"));
    }
    let path = url.path().trim_end_matches('/').to_string();
    // The issuer is used byte for byte; it must already be in normalized form.
    let normalized = format!(
        "{}{}",
        url.origin().ascii_serialization(),
        if path.is_empty() { "" } else { &path }
    );
    if normalized != issuer {
        return Err(err(&format!(
            "must be written in normalized form (`{normalized}`)"
        )));
    }
    Ok(Issuer {
        identifier: issuer.to_string(),
        path,
        is_https: https,
    })
}

fn validate_scope_token(field: &str, scope: &str) -> Result<(), ConfigError> {
    if scope.is_empty()
        || !scope
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
    {
        return Err(field_error(
            field,
            format!("`{scope}` is not a valid scope token"),
        ));
    }
    if scope == OFFLINE_ACCESS {
        return Err(field_error(
            field,
            "`offline_access` is not a resource scope (refresh tokens are issued without it)",
        ));
    }
    Ok(())
}

fn validate_resources(raw: Vec<RawResource>) -> Result<Vec<Resource>, ConfigError> {
    if raw.is_empty() {
        return Err(field_error(
            "resources",
            "at least one resource is required",
        ));
    }
    let mut out: Vec<Resource> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let field = format!("resources[{i}].url");
        let url = url::Url::parse(&r.url).map_err(|e| field_error(&field, e.to_string()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(field_error(&field, "scheme must be https or http"));
        }
        if url.fragment().is_some() || r.url.contains('#') {
            return Err(field_error(&field, "must not contain a fragment"));
        }
        if out.iter().any(|o| o.url == r.url) {
            return Err(field_error(&field, "duplicate resource URL"));
        }
        if r.scopes.is_empty() {
            return Err(field_error(
                format!("resources[{i}].scopes"),
                "at least one scope is required",
            ));
        }
        for s in &r.scopes {
            validate_scope_token(&format!("resources[{i}].scopes"), s)?;
        }
        for s in &r.default_scopes {
            if !r.scopes.contains(s) {
                return Err(field_error(
                    format!("resources[{i}].default_scopes"),
                    format!("`{s}` is not listed in scopes"),
                ));
            }
        }
        out.push(Resource {
            url: r.url,
            scopes: r.scopes,
            default_scopes: r.default_scopes,
        });
    }
    Ok(out)
}

fn validate_users(raw: Vec<RawUser>) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut users = BTreeMap::new();
    for (i, u) in raw.into_iter().enumerate() {
        if u.username.is_empty() || u.username.chars().any(char::is_control) {
            return Err(field_error(
                format!("users[{i}].username"),
                "must be non-empty without control characters",
            ));
        }
        crate::secrets::check_password_hash_format(&u.password_hash)
            .map_err(|m| field_error(format!("users[{i}].password_hash"), m))?;
        if users.insert(u.username, u.password_hash).is_some() {
            return Err(field_error(
                format!("users[{i}].username"),
                "duplicate username",
            ));
        }
    }
    Ok(users)
}

/// The JWKS and signing algorithm of a static client that uses `private_key_jwt`; none for
/// other methods, which must not configure them.
fn static_client_keys(
    i: usize,
    c: &RawClient,
    method: AuthMethod,
    base_dir: &Path,
) -> Result<(Option<Jwks>, Option<String>), ConfigError> {
    if method != AuthMethod::PrivateKeyJwt {
        for (name, set) in [
            ("jwks", c.jwks.is_some()),
            ("jwks_file", c.jwks_file.is_some()),
            (
                "token_endpoint_auth_signing_alg",
                c.token_endpoint_auth_signing_alg.is_some(),
            ),
        ] {
            if set {
                return Err(field_error(
                    format!("clients[{i}].{name}"),
                    "only for token_endpoint_auth_method = \"private_key_jwt\"",
                ));
            }
        }
        return Ok((None, None));
    }
    let (field, text) = match (&c.jwks, &c.jwks_file) {
        (Some(text), None) => ("jwks", text.clone()),
        (None, Some(file)) => {
            let path = base_dir.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                field_error(
                    format!("clients[{i}].jwks_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            ("jwks_file", text)
        }
        (Some(_), Some(_)) => {
            return Err(field_error(
                format!("clients[{i}].jwks"),
                "set either jwks or jwks_file, not both",
            ));
        }
        (None, None) => {
            return Err(field_error(
                format!("clients[{i}].jwks"),
                "private_key_jwt needs the client's public keys: jwks or jwks_file",
            ));
        }
    };
    let jwks = Jwks::parse(text.as_bytes())
        .map_err(|m| field_error(format!("clients[{i}].{field}"), m))?;
    let alg = match c.token_endpoint_auth_signing_alg.as_deref() {
        None => None,
        Some(a) if client_assertion::SIGNING_ALGS.contains(&a) => Some(a.to_string()),
        Some(a) => {
            return Err(field_error(
                format!("clients[{i}].token_endpoint_auth_signing_alg"),
                format!(
                    "`{a}` is not one of {}",
                    client_assertion::SIGNING_ALGS.join(", ")
                ),
            ));
        }
    };
    Ok((Some(jwks), alg))
}

fn validate_clients(
    raw: Vec<RawClient>,
    base_dir: &Path,
    policy: &PrivateUseSchemes,
) -> Result<Vec<StaticClient>, ConfigError> {
    let mut out: Vec<StaticClient> = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        if c.client_id.is_empty() || c.client_id.chars().any(|ch| ch.is_control() || ch == ' ') {
            return Err(field_error(
                format!("clients[{i}].client_id"),
                "must be non-empty without spaces or control characters",
            ));
        }
        if c.client_id.starts_with("https://") || c.client_id.starts_with("http://") {
            return Err(field_error(
                format!("clients[{i}].client_id"),
                "URL client ids are reserved for Client ID Metadata Documents",
            ));
        }
        if out.iter().any(|o| o.client_id == c.client_id) {
            return Err(field_error(
                format!("clients[{i}].client_id"),
                "duplicate client_id",
            ));
        }
        if c.redirect_uris.is_empty() {
            return Err(field_error(
                format!("clients[{i}].redirect_uris"),
                "at least one redirect URI is required",
            ));
        }
        for uri in &c.redirect_uris {
            redirect_uri::validate_registered(uri, policy).map_err(|m| {
                field_error(
                    format!("clients[{i}].redirect_uris"),
                    format!("`{uri}`: {m}"),
                )
            })?;
        }
        let auth_method = match (
            &c.client_secret_hash,
            c.token_endpoint_auth_method.as_deref(),
        ) {
            (None, None | Some("none")) => AuthMethod::None,
            (None, Some("private_key_jwt")) => AuthMethod::PrivateKeyJwt,
            (Some(_), Some("private_key_jwt")) => {
                return Err(field_error(
                    format!("clients[{i}].token_endpoint_auth_method"),
                    "`private_key_jwt` contradicts client_secret_hash",
                ));
            }
            (None, Some(_)) => {
                return Err(field_error(
                    format!("clients[{i}].token_endpoint_auth_method"),
                    "a secret-based method needs client_secret_hash",
                ));
            }
            (Some(_), Some("none")) => {
                return Err(field_error(
                    format!("clients[{i}].token_endpoint_auth_method"),
                    "`none` contradicts client_secret_hash",
                ));
            }
            (Some(_), None) => AuthMethod::ClientSecretBasic,
            (Some(_), Some(m)) => AuthMethod::parse(m).ok_or_else(|| {
                field_error(
                    format!("clients[{i}].token_endpoint_auth_method"),
                    format!(
                        "`{m}` is not one of none, client_secret_basic, client_secret_post, private_key_jwt"
                    ),
                )
            })?,
        };
        if let Some(hash) = &c.client_secret_hash {
            crate::secrets::check_password_hash_format(hash)
                .map_err(|m| field_error(format!("clients[{i}].client_secret_hash"), m))?;
        }
        let (jwks, signing_alg) = static_client_keys(i, &c, auth_method, base_dir)?;
        out.push(StaticClient {
            jwks,
            signing_alg,
            client_name: c.client_name.unwrap_or_else(|| c.client_id.clone()),
            client_id: c.client_id,
            redirect_uris: c.redirect_uris,
            client_secret_hash: c.client_secret_hash,
            auth_method,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
issuer = "http://localhost:9000"
[[resources]]
url = "http://localhost:10000/mcp"
scopes = ["mcp:tools", "mcp:admin"]
default_scopes = ["mcp:tools"]
"#;

    fn parse_with(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        parse(
            text,
            Path::new("/etc/mcp"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse_with(MINIMAL, &[]).unwrap();
        assert_eq!(c.issuer, "http://localhost:9000");
        assert_eq!(c.issuer_path, "");
        assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(
            c.storage_path,
            PathBuf::from("/etc/mcp/mcp-auth-server.sqlite")
        );
        assert_eq!(c.signing_algorithm, SigningAlgorithm::EdDsa);
        assert_eq!(c.access_token_lifetime, Duration::from_secs(600));
        assert!(!c.allow_insecure_localhost_client_metadata);
        assert!(c.registration.enabled);
        assert_eq!(c.admin_listen, None);
        assert_eq!(c.private_use_redirect_schemes, PrivateUseSchemes::Any);
    }

    #[test]
    fn private_use_redirect_schemes_can_be_narrowed() {
        let with = |line: &str| {
            let text = MINIMAL.replace("\n[[resources]]", &format!("\n{line}\n[[resources]]"));
            parse_with(&text, &[])
        };
        let none = with("private_use_redirect_schemes = \"none\"").unwrap();
        assert_eq!(none.private_use_redirect_schemes, PrivateUseSchemes::None);
        let list = with("private_use_redirect_schemes = [\"cursor\", \"vscode\"]").unwrap();
        assert_eq!(
            list.private_use_redirect_schemes,
            PrivateUseSchemes::Only(vec!["cursor".into(), "vscode".into()])
        );
        let env = parse_with(
            MINIMAL,
            &[("MCP_AUTH_SERVER__PRIVATE_USE_REDIRECT_SCHEMES", "none")],
        )
        .unwrap();
        assert_eq!(env.private_use_redirect_schemes, PrivateUseSchemes::None);
        for bad in [
            "private_use_redirect_schemes = \"all\"",
            "private_use_redirect_schemes = []",
            "private_use_redirect_schemes = [\"javascript\"]",
            "private_use_redirect_schemes = [\"Cursor\"]",
            "private_use_redirect_schemes = [\"https\"]",
        ] {
            assert_eq!(field_of(with(bad)), PRIVATE_USE_FIELD, "{bad}");
        }
        let js = with("private_use_redirect_schemes = [\"javascript\"]")
            .unwrap_err()
            .to_string();
        assert!(js.contains("scheme `javascript`"), "{js}");
    }

    #[test]
    fn static_clients_follow_the_redirect_uri_rules_and_policy() {
        let client = |uri: &str| {
            format!("{MINIMAL}\n[[clients]]\nclient_id = \"app\"\nredirect_uris = [\"{uri}\"]\n")
        };
        let cursor = "cursor://anysphere.cursor-mcp/oauth/callback";
        assert!(parse_with(&client(cursor), &[]).is_ok());
        assert_eq!(
            field_of(parse_with(
                &client(cursor),
                &[("MCP_AUTH_SERVER__PRIVATE_USE_REDIRECT_SCHEMES", "none")]
            )),
            "clients[0].redirect_uris"
        );
        let err = parse_with(&client("javascript:/x"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("scheme `javascript`"), "{err}");
    }

    #[test]
    fn env_overrides_top_level_and_nested_fields() {
        let c = parse_with(
            MINIMAL,
            &[
                ("MCP_AUTH_SERVER__ISSUER", "https://auth.example.com/tenant"),
                ("MCP_AUTH_SERVER__STORAGE_PATH", "/var/lib/as.sqlite"),
                ("MCP_AUTH_SERVER__SIGNING_ALGORITHM", "ES256"),
                ("MCP_AUTH_SERVER__REGISTRATION__RATE_LIMIT_PER_MINUTE", "3"),
                (
                    "MCP_AUTH_SERVER__ALLOW_INSECURE_LOCALHOST_CLIENT_METADATA",
                    "true",
                ),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.issuer, "https://auth.example.com/tenant");
        assert_eq!(c.issuer_path, "/tenant");
        assert!(c.issuer_is_https);
        assert_eq!(c.storage_path, PathBuf::from("/var/lib/as.sqlite"));
        assert_eq!(c.signing_algorithm, SigningAlgorithm::Es256);
        assert_eq!(c.registration.rate_limit_per_minute, 3);
        assert!(c.allow_insecure_localhost_client_metadata);
    }

    fn field_of(result: Result<Config, ConfigError>) -> String {
        match result {
            Err(ConfigError::Field { field, .. }) => field,
            Err(other) => format!("other error: {other}"),
            Ok(_) => "accepted".into(),
        }
    }

    #[test]
    fn private_key_jwt_clients_need_one_jwks_and_no_secret() {
        let jwk = mcp_auth_test_support::ec_key("k").public_jwk();
        let jwks = format!(r#"{{"keys":[{jwk}]}}"#);
        let client = |fields: &str| {
            format!(
                "{MINIMAL}\n[[clients]]\nclient_id = \"c\"\nredirect_uris = [\"https://a.example/cb\"]\n{fields}\n"
            )
        };
        let pkjwt = "token_endpoint_auth_method = \"private_key_jwt\"";
        let inline = parse_with(
            &client(&format!(
                "{pkjwt}\ntoken_endpoint_auth_signing_alg = \"ES256\"\njwks = '{jwks}'"
            )),
            &[],
        )
        .unwrap();
        let c = inline.static_client("c").unwrap();
        assert_eq!(c.auth_method, AuthMethod::PrivateKeyJwt);
        assert_eq!(c.signing_alg.as_deref(), Some("ES256"));
        assert!(c.jwks.is_some());

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("client.jwks"), &jwks).unwrap();
        let from_file = parse(
            &client(&format!("{pkjwt}\njwks_file = \"client.jwks\"")),
            dir.path(),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(from_file.static_client("c").unwrap().jwks, c.jwks);

        let cases = [
            (pkjwt.to_string(), "clients[0].jwks"),
            (
                format!("{pkjwt}\njwks = '{jwks}'\njwks_file = \"x\""),
                "clients[0].jwks",
            ),
            (
                format!("{pkjwt}\njwks = '{{\"keys\":[]}}'"),
                "clients[0].jwks",
            ),
            (
                format!("{pkjwt}\njwks_file = \"missing.jwks\""),
                "clients[0].jwks_file",
            ),
            (
                format!("{pkjwt}\njwks = '{jwks}'\ntoken_endpoint_auth_signing_alg = \"HS256\""),
                "clients[0].token_endpoint_auth_signing_alg",
            ),
            (
                format!("{pkjwt}\njwks = '{jwks}'\nclient_secret_hash = \"x\""),
                "clients[0].token_endpoint_auth_method",
            ),
            (format!("jwks = '{jwks}'"), "clients[0].jwks"),
        ];
        for (fields, field) in cases {
            assert_eq!(
                field_of(parse_with(&client(&fields), &[])),
                field,
                "{fields}"
            );
        }
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases: &[(&str, &str)] = &[
            ("issuer = \"http://localhost:9000/\"", "issuer"),
            ("issuer = \"ftp://localhost\"", "issuer"),
            ("issuer = \"http://LOCALHOST:9000\"", "issuer"),
            (
                "issuer = \"http://localhost:9000\"\nsigning_algorithm = \"HS256\"",
                "signing_algorithm",
            ),
            (
                "issuer = \"http://localhost:9000\"\nlisten = \"nowhere\"",
                "listen",
            ),
            (
                "issuer = \"http://localhost:9000\"\nadmin_listen = \"127.0.0.1:9000\"",
                "admin_listen",
            ),
        ];
        for (head, field) in cases {
            let text = format!("{head}\n[[resources]]\nurl = \"http://r/mcp\"\nscopes = [\"a\"]\n");
            assert_eq!(field_of(parse_with(&text, &[])), *field, "{head}");
        }
    }

    #[test]
    fn resource_rules_are_enforced() {
        let base = "issuer = \"http://localhost:9000\"\n";
        let cases: &[(&str, &str)] = &[
            (
                "url = \"http://r/mcp#x\"\nscopes = [\"a\"]",
                "resources[0].url",
            ),
            (
                "url = \"http://r/mcp\"\nscopes = [\"a\", \"offline_access\"]",
                "resources[0].scopes",
            ),
            (
                "url = \"http://r/mcp\"\nscopes = [\"a\"]\ndefault_scopes = [\"b\"]",
                "resources[0].default_scopes",
            ),
            ("url = \"http://r/mcp\"\nscopes = []", "resources[0].scopes"),
        ];
        for (body, field) in cases {
            let text = format!("{base}[[resources]]\n{body}\n");
            assert_eq!(field_of(parse_with(&text, &[])), *field, "{body}");
        }
        assert_eq!(field_of(parse_with(base, &[])), "resources");
    }

    #[test]
    fn the_proxy_table_is_checked_and_named() {
        let with = |table: &str| parse_with(&format!("{MINIMAL}\n[proxy]\n{table}\n"), &[]);
        let trusted = with("trusted_addresses = [\"10.0.0.0/8\", \"::1\"]").unwrap();
        let headers = axum::http::HeaderMap::from_iter([(
            axum::http::header::HeaderName::from_static("x-forwarded-for"),
            axum::http::HeaderValue::from_static("203.0.113.9"),
        )]);
        let from = |peer: &str| {
            trusted
                .proxy
                .client_address(peer.parse().unwrap(), &headers)
                .to_string()
        };
        assert_eq!(from("10.0.0.1"), "203.0.113.9");
        assert_eq!(from("192.0.2.1"), "192.0.2.1");
        assert_eq!(
            field_of(with("trusted_addresses = [\"nope\"]")),
            "proxy.trusted_addresses[0]"
        );
        assert_eq!(
            field_of(with("client_address_header = \"x-real-ip\"")),
            "proxy.client_address_header"
        );
        let env = parse_with(
            MINIMAL,
            &[("MCP_AUTH_SERVER__PROXY__CLIENT_ADDRESS_HEADER", "x-real-ip")],
        );
        assert_eq!(field_of(env), "proxy.client_address_header");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = format!("{MINIMAL}\n[registration]\nenabeld = true\n");
        let err = parse_with(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("enabeld"), "{err}");
    }

    #[test]
    fn user_hash_must_be_a_phc_string() {
        let text = format!("{MINIMAL}\n[[users]]\nusername = \"demo\"\npassword_hash = \"demo\"\n");
        assert_eq!(field_of(parse_with(&text, &[])), "users[0].password_hash");
    }

    #[test]
    fn branding_and_scope_descriptions_are_checked() {
        let config = parse_with(MINIMAL, &[]).unwrap();
        assert_eq!(config.branding, Branding::default());
        let described = MINIMAL.replace(
            "default_scopes = [\"mcp:tools\"]",
            "default_scopes = [\"mcp:tools\"]\nscope_descriptions = { \"mcp:admin\" = \" Run administrative tools \" }",
        );
        let config = parse_with(
            &format!("{described}\n[branding]\nproduct_name = \"Acme\"\nlogo_url = \"data:image/svg+xml;base64,PHN2Zy8+\"\n"),
            &[],
        )
        .unwrap();
        assert_eq!(config.branding.product_name, "Acme");
        assert_eq!(
            config
                .scope_descriptions("http://localhost:10000/mcp")
                .and_then(|d| d.get("mcp:admin"))
                .map(String::as_str),
            Some("Run administrative tools")
        );
        let unknown = MINIMAL.replace(
            "default_scopes = [\"mcp:tools\"]",
            "default_scopes = [\"mcp:tools\"]\nscope_descriptions = { \"mcp:nope\" = \"x\" }",
        );
        assert_eq!(
            field_of(parse_with(&unknown, &[])),
            "resources[0].scope_descriptions"
        );
        for logo in [
            "https://cdn.example/logo.png",
            "data:text/html,<script>",
            "data:image/png;base64,",
        ] {
            let text = format!("{MINIMAL}\n[branding]\nlogo_url = \"{logo}\"\n");
            assert_eq!(
                field_of(parse_with(&text, &[])),
                "branding.logo_url",
                "{logo}"
            );
        }
        let long = "x".repeat(MAX_PRODUCT_NAME_CHARS + 1);
        let text = format!("{MINIMAL}\n[branding]\nproduct_name = \"{long}\"\n");
        assert_eq!(field_of(parse_with(&text, &[])), "branding.product_name");
    }

    /// The cells of the README's configuration table row for `field`.
    fn readme_row(field: &str) -> Vec<&'static str> {
        let readme = include_str!("../README.md");
        let start = format!("| `{field}` |");
        let line = readme
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("the README has no row for `{field}`"));
        line.trim_start_matches("| ")
            .trim_end_matches(" |")
            .splitn(3, " | ")
            .collect()
    }

    #[test]
    fn the_readme_states_every_default_and_bound() {
        for b in [
            ACCESS_TOKEN_LIFETIME_SECS,
            REFRESH_TOKEN_LIFETIME_SECS,
            AUTHORIZATION_CODE_LIFETIME_SECS,
            LOGIN_SESSION_LIFETIME_SECS,
            KEY_PUBLISH_DELAY_SECS,
            CLIENT_METADATA_FETCH_TIMEOUT_SECS,
            REQUEST_TIMEOUT_SECS,
            HEADER_READ_TIMEOUT_SECS,
            LOGIN_FAILURES_PER_MINUTE,
            UPSTREAM_LOGIN_LIFETIME_SECS,
            CLIENT_AUTH_FAILURES_PER_MINUTE,
            CLIENT_AUTH_FAILURES_PER_CLIENT_PER_MINUTE,
            REGISTERED_CLIENT_MAX_IDLE_SECS,
        ] {
            let row = readme_row(b.field);
            assert!(
                row[1].starts_with(&format!("`{}`", b.default)),
                "{}: {row:?}",
                b.field
            );
            assert!(
                row[2].contains(&format!("({} to {})", b.min, b.max)),
                "{}: {row:?}",
                b.field
            );
        }
        let defaults = [
            ("listen", DEFAULT_LISTEN.to_string()),
            ("storage_path", DEFAULT_STORAGE_PATH.to_string()),
            (
                "signing_algorithm",
                DEFAULT_SIGNING_ALGORITHM.jwa_name().to_string(),
            ),
            ("allow_insecure_localhost_client_metadata", "false".into()),
            (
                PRIVATE_USE_FIELD,
                DEFAULT_PRIVATE_USE_REDIRECT_SCHEMES.to_string(),
            ),
            ("enabled", DEFAULT_REGISTRATION_ENABLED.to_string()),
            (
                "rate_limit_per_minute",
                DEFAULT_REGISTRATION_RATE_LIMIT_PER_MINUTE.to_string(),
            ),
            ("trusted_addresses", "[]".into()),
            (
                "client_address_header",
                crate::client_address::DEFAULT_CLIENT_ADDRESS_HEADER.to_string(),
            ),
            ("product_name", DEFAULT_PRODUCT_NAME.to_string()),
        ];
        for (field, default) in defaults {
            assert_eq!(readme_row(field)[1], format!("`{default}`"), "{field}");
        }
    }

    #[test]
    fn out_of_bounds_numbers_are_refused_with_their_bounds() {
        let cases = [
            (
                "access_token_lifetime_secs = 0",
                "must be between 1 and 86400",
            ),
            ("key_publish_delay_secs = 604801", "must be at most 604800"),
            (
                "login_failures_per_minute = 10001",
                "must be between 1 and 10000",
            ),
        ];
        for (line, message) in cases {
            let text = MINIMAL.replace("\n[[resources]]", &format!("\n{line}\n[[resources]]"));
            let err = parse_with(&text, &[]).unwrap_err().to_string();
            assert!(err.contains(message), "{line}: {err}");
        }
    }
}
