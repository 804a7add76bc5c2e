//! Plugin configuration: JSON → [`Config`], validated once. Every error names its field.
//!
//! The raw (serde) structs below are the configuration as written; their doc comments are the
//! field reference that `filter/README.md`'s tables repeat, and every default and accepted range
//! is a named constant in [`limits`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::issuer::{Issuer, JwksSource, RemoteJwks};
use crate::jwks::KeySet;
use crate::policy::{self, ToolRule};
use crate::resource::Resource;
use crate::urls::{check_origin, parse_http_url, parse_resource_url};
use crate::{metadata, response};

/// A configuration error: `field.path: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(field: impl std::fmt::Display, msg: impl std::fmt::Display) -> Result<T, ConfigError> {
    Err(ConfigError(format!("{field}: {msg}")))
}

/// What to do with paths that match no resource and no metadata path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedPaths {
    /// 404 (default, fail closed).
    #[default]
    Reject,
    /// Forward untouched.
    Pass,
}

/// Which scopes a resource's 401 challenges (and its other challenges without a needed-scope
/// list) ask for in `scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeScopes {
    /// `required_scopes` (default): a client asks for more when a 403 `insufficient_scope`
    /// tells it (step-up).
    #[default]
    Required,
    /// `required_scopes` and every scope a `tool_scopes` rule can require, so that the first
    /// token already covers every tool: for clients that cannot step up after a 403.
    All,
}

/// Default and accepted range of every numeric setting, in the unit its field name says.
pub mod limits {
    /// A numeric setting's default and inclusive range.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Bounds {
        /// Used when the field is absent.
        pub default: u64,
        /// Smallest accepted value.
        pub min: u64,
        /// Largest accepted value.
        pub max: u64,
    }

    /// `clock_skew_seconds`.
    pub const CLOCK_SKEW_SECONDS: Bounds = Bounds {
        default: 60,
        min: 0,
        max: 600,
    };
    /// `max_body_bytes`.
    pub const MAX_BODY_BYTES: Bounds = Bounds {
        default: 1024 * 1024,
        min: 1,
        max: 16 * 1024 * 1024,
    };
    /// `key_wait_timeout_ms`.
    pub const KEY_WAIT_TIMEOUT_MS: Bounds = Bounds {
        default: 5_000,
        min: 1,
        max: 60_000,
    };
    /// `token_cache.max_entries`.
    pub const TOKEN_CACHE_MAX_ENTRIES: Bounds = Bounds {
        default: 1024,
        min: 0,
        max: 1_000_000,
    };
    /// `metadata_max_age_seconds`.
    pub const METADATA_MAX_AGE_SECONDS: Bounds = Bounds {
        default: 3600,
        min: 0,
        max: 86_400,
    };
    /// `issuers[].jwks.refresh_interval_seconds`.
    pub const JWKS_REFRESH_INTERVAL_SECONDS: Bounds = Bounds {
        default: 300,
        min: 10,
        max: 86_400,
    };
    /// `issuers[].jwks.fetch_timeout_ms`.
    pub const JWKS_FETCH_TIMEOUT_MS: Bounds = Bounds {
        default: 5_000,
        min: 100,
        max: 60_000,
    };
    /// `issuers[].jwks.min_refetch_interval_seconds`.
    pub const JWKS_MIN_REFETCH_INTERVAL_SECONDS: Bounds = Bounds {
        default: 30,
        min: 0,
        max: 3600,
    };
    /// `issuers[].jwks.max_stale_seconds` (also at least `refresh_interval_seconds`).
    pub const JWKS_MAX_STALE_SECONDS: Bounds = Bounds {
        default: 86_400,
        min: 60,
        max: 604_800,
    };
}

use limits::Bounds;

// ---------- raw (as written) ----------

/// The plugin configuration, one JSON object. Unknown fields are rejected.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// The protected MCP endpoints; at least one.
    resources: Vec<RawResource>,
    /// Optional; must equal the `resource` of one entry, whose metadata is then also served at
    /// the root `/.well-known/oauth-protected-resource`.
    #[serde(default)]
    root_metadata_resource: Option<String>,
    /// Trusted token issuers and where their keys come from; at least one, issuer strings
    /// unique.
    issuers: Vec<RawIssuer>,
    /// Tolerance for `exp`, `nbf`, `iat` ([`limits::CLOCK_SKEW_SECONDS`]).
    #[serde(default = "default_clock_skew")]
    clock_skew_seconds: u64,
    /// Claim name → upstream header name, set from the verified token (default none). Header
    /// names are lower-cased, distinct, and not one the filter or HTTP itself relies on.
    #[serde(default)]
    identity_headers: BTreeMap<String, String>,
    /// Browser origins allowed to call the MCP endpoints (default none).
    #[serde(default)]
    cors: RawCors,
    /// Largest JSON-RPC body buffered on routes with `tool_scopes`; larger gets 413
    /// ([`limits::MAX_BODY_BYTES`]).
    #[serde(default = "default_max_body")]
    max_body_bytes: u64,
    /// How long a request waits (paused) for its issuer's first keys or an unknown-`kid`
    /// refetch ([`limits::KEY_WAIT_TIMEOUT_MS`]).
    #[serde(default = "default_key_wait")]
    key_wait_timeout_ms: u64,
    /// The verified-token cache.
    #[serde(default)]
    token_cache: RawCache,
    /// `Cache-Control: public, max-age` of metadata responses
    /// ([`limits::METADATA_MAX_AGE_SECONDS`]).
    #[serde(default = "default_max_age")]
    metadata_max_age_seconds: u64,
    /// Paths that match no resource and no metadata path: `reject` (404, the default) or
    /// `pass` (forwarded untouched).
    #[serde(default)]
    unmatched_paths: UnmatchedPaths,
    /// The host holds the request headers while the filter reads the body after pausing the
    /// header phase (Envoy 1.35+ `PluginConfig.allow_on_headers_stop_iteration: true`, which must
    /// be set together with this): per-tool decisions are then made before the upstream sees
    /// anything (default false).
    #[serde(default)]
    hold_headers_for_body: bool,
    /// Whether each decided request leaves its audit fields as properties for the access log
    /// (default [`DEFAULT_ACCESS_LOG_PROPERTIES`]).
    #[serde(default = "default_access_log_properties")]
    access_log_properties: bool,
}

/// `access_log_properties` when absent: on, because every access-log format in `envoy/` reads
/// the fields and an operator who never heard of the setting should find them in the log.
/// Turning it off saves four to six host calls per decided request.
pub const DEFAULT_ACCESS_LOG_PROPERTIES: bool = true;

fn default_access_log_properties() -> bool {
    DEFAULT_ACCESS_LOG_PROPERTIES
}

// serde's `default = "…"` takes a function path.
fn default_clock_skew() -> u64 {
    limits::CLOCK_SKEW_SECONDS.default
}
fn default_max_body() -> u64 {
    limits::MAX_BODY_BYTES.default
}
fn default_key_wait() -> u64 {
    limits::KEY_WAIT_TIMEOUT_MS.default
}
fn default_max_age() -> u64 {
    limits::METADATA_MAX_AGE_SECONDS.default
}
fn default_cache_entries() -> u64 {
    limits::TOKEN_CACHE_MAX_ENTRIES.default
}

/// One entry of `resources`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    /// Request paths this resource protects: exactly the prefix, or it followed by `/` or `?`.
    /// Starts with `/`, no trailing `/` (except `/`), no `?`, `#`, `//`, `.` or `..` segments;
    /// unique; the longest matching prefix wins.
    path_prefix: String,
    /// Public resource URL (RFC 9728 `resource`, RFC 8707 audience): absolute http(s), no
    /// userinfo, query, fragment or trailing `/`. Unique. Never taken from `Host`.
    resource: String,
    /// Metadata `authorization_servers`: absolute http(s) URLs, not empty.
    authorization_servers: Vec<String>,
    /// Accepted `iss` values, each listed in the top-level `issuers` (default:
    /// `authorization_servers`).
    #[serde(default)]
    issuers: Option<Vec<String>>,
    /// Accepted `aud` values; the token's `aud` must contain one (default: `[resource]`).
    #[serde(default)]
    audiences: Option<Vec<String>>,
    /// Metadata `scopes_supported` (default none; `offline_access` is refused: a resource
    /// never needs a refresh token).
    #[serde(default)]
    scopes_supported: Vec<String>,
    /// Scopes every request needs, also the `scope` of the 401 challenge (default none).
    #[serde(default)]
    required_scopes: Vec<String>,
    /// Per-method / per-tool extra scopes (default none).
    #[serde(default)]
    tool_scopes: Vec<RawToolRule>,
    /// The `scope` of 401 challenges: `required` (`required_scopes`, the default) or `all`
    /// (also every scope of `tool_scopes`, for clients that mishandle a 403 step-up).
    #[serde(default)]
    challenge_scopes: ChallengeScopes,
    /// Metadata `resource_name` (optional, not empty).
    #[serde(default)]
    resource_name: Option<String>,
    /// Metadata `resource_documentation` (optional absolute http(s) URL).
    #[serde(default)]
    resource_documentation: Option<String>,
}

/// One entry of `tool_scopes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolRule {
    /// Glob (`*`, `?`) on the JSON-RPC method.
    method: String,
    /// Glob on the tool/prompt name or resource URI; absent: every name, and methods without one.
    #[serde(default)]
    name: Option<String>,
    /// Scopes a matching call needs in addition (not empty).
    scopes: Vec<String>,
}

/// One entry of `issuers`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    /// Exact `iss` value (byte comparison).
    issuer: String,
    /// Exactly one of `inline` or `cluster` + `uri`.
    jwks: RawJwks,
}

/// Where an issuer's keys come from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    /// The JWKS document itself: keys ready at configure time.
    #[serde(default)]
    inline: Option<Value>,
    /// Envoy cluster the JWKS is fetched through.
    #[serde(default)]
    cluster: Option<String>,
    /// Absolute http(s) URL of the JWKS: its path and query become `:path`, its authority
    /// `:authority`.
    #[serde(default)]
    uri: Option<String>,
    /// Periodic refetch ([`limits::JWKS_REFRESH_INTERVAL_SECONDS`]).
    #[serde(default)]
    refresh_interval_seconds: Option<u64>,
    /// Timeout of one fetch ([`limits::JWKS_FETCH_TIMEOUT_MS`]).
    #[serde(default)]
    fetch_timeout_ms: Option<u64>,
    /// Least time between refetches caused by an unknown `kid`
    /// ([`limits::JWKS_MIN_REFETCH_INTERVAL_SECONDS`]).
    #[serde(default)]
    min_refetch_interval_seconds: Option<u64>,
    /// How long the last good keys stay in use while every refresh fails (error status,
    /// timeout, unreadable document), counted from the fetch that loaded them; past it the
    /// issuer's tokens are refused with 503 until a fetch succeeds
    /// ([`limits::JWKS_MAX_STALE_SECONDS`], at least `refresh_interval_seconds`).
    #[serde(default)]
    max_stale_seconds: Option<u64>,
}

/// `cors`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCors {
    /// Exact origins (`scheme://host[:port]`, lowercase, no path; `*` is refused).
    #[serde(default)]
    allowed_origins: Vec<String>,
}

/// `token_cache`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    /// Slots of each of the two cache tables; 0 disables the cache
    /// ([`limits::TOKEN_CACHE_MAX_ENTRIES`]).
    #[serde(default = "default_cache_entries")]
    max_entries: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            max_entries: default_cache_entries(),
        }
    }
}

// ---------- validated ----------

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Protected resources.
    pub resources: Vec<Resource>,
    /// Index of the resource served at the root metadata path.
    pub root_metadata: Option<usize>,
    /// Trusted issuers.
    pub issuers: Vec<Issuer>,
    /// Clock skew in seconds.
    pub clock_skew: u64,
    /// Claim → header mapping, in header-name order.
    pub identity_headers: Vec<IdentityHeader>,
    /// Exact allowed browser origins.
    pub allowed_origins: Vec<String>,
    /// Body buffering bound.
    pub max_body_bytes: usize,
    /// How long requests wait for keys.
    pub key_wait_timeout: Duration,
    /// Token cache slots (0 = off).
    pub token_cache_slots: u32,
    /// `Cache-Control: max-age` of metadata.
    pub metadata_max_age: u64,
    /// Policy for unmatched paths.
    pub unmatched_paths: UnmatchedPaths,
    /// The host holds the headers while body callbacks run after a paused header phase
    /// (Envoy's `allow_on_headers_stop_iteration`).
    pub hold_headers_for_body: bool,
    /// Leave the audit fields as properties for the access log (`access_log_properties`).
    pub access_log_properties: bool,
    /// Short hash of the configuration text, namespacing shared-data cache keys.
    pub fingerprint: String,
}

/// A claim copied to an upstream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeader {
    /// Claim name.
    pub claim: String,
    /// Lower-case header name.
    pub header: String,
}

fn in_range(field: &str, v: u64, bounds: Bounds) -> Result<u64, ConfigError> {
    if (bounds.min..=bounds.max).contains(&v) {
        Ok(v)
    } else {
        err(
            field,
            format!("must be between {} and {}", bounds.min, bounds.max),
        )
    }
}

fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn check_scopes(field: &str, scopes: &[String]) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for (i, s) in scopes.iter().enumerate() {
        if !is_scope_token(s) {
            return err(
                format!("{field}[{i}]"),
                "must be a scope token (printable ASCII, no space, quote or backslash)",
            );
        }
        if s == "offline_access" {
            return err(
                format!("{field}[{i}]"),
                "offline_access must not be advertised or required by a resource",
            );
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

fn check_path_prefix(field: &str, p: &str) -> Result<(), ConfigError> {
    const MSG: &str = "must start with / and contain no ?, #, //, . or .. segments, or trailing /";
    let ok = p.starts_with('/')
        && p.bytes().all(|b| b.is_ascii_graphic())
        && !p.contains(['?', '#'])
        && !p.contains("//")
        && (p == "/" || !p.ends_with('/'))
        && !p.split('/').any(|seg| seg == "." || seg == "..");
    if ok { Ok(()) } else { err(field, MSG) }
}

fn check_header_name(field: &str, h: &str) -> Result<String, ConfigError> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if h.is_empty() || !h.bytes().all(is_tchar) {
        return err(field, "must be a valid HTTP header name");
    }
    let lower = h.to_ascii_lowercase();
    const FORBIDDEN: &[&str] = &[
        "authorization",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "cookie",
        "mcp-method",
        "mcp-name",
        "mcp-session-id",
        "mcp-protocol-version",
        "origin",
    ];
    if FORBIDDEN.contains(&lower.as_str()) {
        return err(field, format!("{lower} cannot carry identity"));
    }
    Ok(lower)
}

fn check_url_list(field: &str, list: &[String]) -> Result<(), ConfigError> {
    for (i, u) in list.iter().enumerate() {
        parse_http_url(u).map_err(|m| ConfigError(format!("{field}[{i}]: {m}")))?;
    }
    Ok(())
}

impl Config {
    /// Parses and validates the plugin configuration.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return err("configuration", "must be a JSON object");
        }
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "configuration".to_string()
            } else {
                path
            };
            ConfigError(format!("{path}: {}", e.inner()))
        })?;
        let fingerprint = Sha256::digest(bytes)
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        Self::validate(raw, fingerprint)
    }

    fn validate(raw: RawConfig, fingerprint: String) -> Result<Config, ConfigError> {
        let issuers = validate_issuers(&raw.issuers)?;
        if raw.resources.is_empty() {
            return err("resources", "must list at least one resource");
        }
        let mut resources: Vec<Resource> = Vec::new();
        for (i, r) in raw.resources.iter().enumerate() {
            let res = validate_resource(&format!("resources[{i}]"), r, &issuers)?;
            if resources.iter().any(|o| o.path_prefix == res.path_prefix) {
                return err(
                    format!("resources[{i}].path_prefix"),
                    "duplicates another resource",
                );
            }
            if resources.iter().any(|o| o.resource == res.resource) {
                return err(
                    format!("resources[{i}].resource"),
                    "duplicates another resource",
                );
            }
            resources.push(res);
        }
        let root_metadata = match &raw.root_metadata_resource {
            None => None,
            Some(r) => match resources.iter().position(|x| &x.resource == r) {
                Some(i) => Some(i),
                None => {
                    return err(
                        "root_metadata_resource",
                        "must equal the resource of one entry of resources",
                    );
                }
            },
        };
        let mut identity_headers: Vec<IdentityHeader> = Vec::new();
        for (claim, header) in &raw.identity_headers {
            let field = format!("identity_headers.{claim}");
            if claim.is_empty() {
                return err("identity_headers", "claim names must not be empty");
            }
            let header = check_header_name(&field, header)?;
            if identity_headers.iter().any(|h| h.header == header) {
                return err(field, "header used for two claims");
            }
            identity_headers.push(IdentityHeader {
                claim: claim.clone(),
                header,
            });
        }
        for (i, o) in raw.cors.allowed_origins.iter().enumerate() {
            check_origin(o).map_err(|m| ConfigError(format!("cors.allowed_origins[{i}]: {m}")))?;
        }
        let max_body = in_range("max_body_bytes", raw.max_body_bytes, limits::MAX_BODY_BYTES)?;
        Ok(Config {
            resources,
            root_metadata,
            issuers,
            clock_skew: in_range(
                "clock_skew_seconds",
                raw.clock_skew_seconds,
                limits::CLOCK_SKEW_SECONDS,
            )?,
            identity_headers,
            allowed_origins: raw.cors.allowed_origins.clone(),
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
            key_wait_timeout: Duration::from_millis(in_range(
                "key_wait_timeout_ms",
                raw.key_wait_timeout_ms,
                limits::KEY_WAIT_TIMEOUT_MS,
            )?),
            token_cache_slots: u32::try_from(in_range(
                "token_cache.max_entries",
                raw.token_cache.max_entries,
                limits::TOKEN_CACHE_MAX_ENTRIES,
            )?)
            .unwrap_or(0),
            metadata_max_age: in_range(
                "metadata_max_age_seconds",
                raw.metadata_max_age_seconds,
                limits::METADATA_MAX_AGE_SECONDS,
            )?,
            unmatched_paths: raw.unmatched_paths,
            hold_headers_for_body: raw.hold_headers_for_body,
            access_log_properties: raw.access_log_properties,
            fingerprint,
        })
    }
}

fn validate_issuers(raw: &[RawIssuer]) -> Result<Vec<Issuer>, ConfigError> {
    if raw.is_empty() {
        return err("issuers", "must list at least one issuer");
    }
    let mut out: Vec<Issuer> = Vec::new();
    for (i, ri) in raw.iter().enumerate() {
        let field = format!("issuers[{i}]");
        if ri.issuer.is_empty() {
            return err(format!("{field}.issuer"), "must not be empty");
        }
        if out.iter().any(|o| o.issuer == ri.issuer) {
            return err(format!("{field}.issuer"), "duplicates another issuer");
        }
        let j = &ri.jwks;
        let jwks = match (&j.inline, &j.cluster, &j.uri) {
            (Some(doc), None, None) => {
                if j.refresh_interval_seconds.is_some()
                    || j.fetch_timeout_ms.is_some()
                    || j.min_refetch_interval_seconds.is_some()
                    || j.max_stale_seconds.is_some()
                {
                    return err(
                        format!("{field}.jwks"),
                        "refresh settings apply only to cluster+uri",
                    );
                }
                let parsed = KeySet::from_value(doc)
                    .map_err(|e| ConfigError(format!("{field}.jwks.inline: {e}")))?;
                JwksSource::Inline(parsed.keys)
            }
            (None, Some(cluster), Some(uri)) => {
                if cluster.is_empty() {
                    return err(format!("{field}.jwks.cluster"), "must not be empty");
                }
                let url = parse_http_url(uri)
                    .map_err(|m| ConfigError(format!("{field}.jwks.uri: {m}")))?;
                let setting = |name: &str, v: Option<u64>, bounds: Bounds| {
                    in_range(
                        &format!("{field}.jwks.{name}"),
                        v.unwrap_or(bounds.default),
                        bounds,
                    )
                };
                let refresh_interval = setting(
                    "refresh_interval_seconds",
                    j.refresh_interval_seconds,
                    limits::JWKS_REFRESH_INTERVAL_SECONDS,
                )?;
                let max_stale = setting(
                    "max_stale_seconds",
                    j.max_stale_seconds,
                    limits::JWKS_MAX_STALE_SECONDS,
                )?;
                if max_stale < refresh_interval {
                    // Keys would expire before their regular refresh is even due.
                    return err(
                        format!("{field}.jwks.max_stale_seconds"),
                        "must be at least refresh_interval_seconds",
                    );
                }
                JwksSource::Remote(RemoteJwks {
                    cluster: cluster.clone(),
                    authority: url.authority.to_string(),
                    path: url.path_and_query(),
                    refresh_interval: Duration::from_secs(refresh_interval),
                    fetch_timeout: Duration::from_millis(setting(
                        "fetch_timeout_ms",
                        j.fetch_timeout_ms,
                        limits::JWKS_FETCH_TIMEOUT_MS,
                    )?),
                    min_refetch_interval: Duration::from_secs(setting(
                        "min_refetch_interval_seconds",
                        j.min_refetch_interval_seconds,
                        limits::JWKS_MIN_REFETCH_INTERVAL_SECONDS,
                    )?),
                    max_stale: Duration::from_secs(max_stale),
                })
            }
            (None, Some(_), None) => {
                return err(format!("{field}.jwks.uri"), "required with cluster");
            }
            (None, None, Some(_)) => {
                return err(format!("{field}.jwks.cluster"), "required with uri");
            }
            _ => {
                return err(
                    format!("{field}.jwks"),
                    "must have exactly one of inline or cluster+uri",
                );
            }
        };
        out.push(Issuer {
            issuer: ri.issuer.clone(),
            jwks,
        });
    }
    Ok(out)
}

fn validate_resource(
    field: &str,
    r: &RawResource,
    issuers: &[Issuer],
) -> Result<Resource, ConfigError> {
    check_path_prefix(&format!("{field}.path_prefix"), &r.path_prefix)?;
    let url = parse_resource_url(&r.resource)
        .map_err(|m| ConfigError(format!("{field}.resource: {m}")))?;
    if r.authorization_servers.is_empty() {
        return err(
            format!("{field}.authorization_servers"),
            "must not be empty",
        );
    }
    check_url_list(
        &format!("{field}.authorization_servers"),
        &r.authorization_servers,
    )?;
    let (issuer_names, issuer_field) = match &r.issuers {
        Some(list) if list.is_empty() => {
            return err(format!("{field}.issuers"), "must not be empty");
        }
        Some(list) => (list, format!("{field}.issuers")),
        None => (
            &r.authorization_servers,
            format!("{field}.authorization_servers"),
        ),
    };
    let mut issuer_idx = Vec::new();
    for (i, name) in issuer_names.iter().enumerate() {
        match issuers.iter().position(|x| &x.issuer == name) {
            Some(ix) => issuer_idx.push(ix),
            None => {
                return err(
                    format!("{issuer_field}[{i}]"),
                    "is not in the top-level issuers list (set resources[].issuers to choose accepted issuers)",
                );
            }
        }
    }
    let audiences = match &r.audiences {
        None => vec![r.resource.clone()],
        Some(list) if list.is_empty() => {
            return err(format!("{field}.audiences"), "must not be empty");
        }
        Some(list) => {
            if let Some(i) = list.iter().position(String::is_empty) {
                return err(format!("{field}.audiences[{i}]"), "must not be empty");
            }
            list.clone()
        }
    };
    let scopes_supported = check_scopes(&format!("{field}.scopes_supported"), &r.scopes_supported)?;
    let required_scopes = check_scopes(&format!("{field}.required_scopes"), &r.required_scopes)?;
    let mut tool_rules = Vec::new();
    for (i, rule) in r.tool_scopes.iter().enumerate() {
        let rf = format!("{field}.tool_scopes[{i}]");
        if rule.method.is_empty() {
            return err(format!("{rf}.method"), "must not be empty");
        }
        if rule.name.as_deref() == Some("") {
            return err(
                format!("{rf}.name"),
                "must not be empty (omit it to match every name)",
            );
        }
        if rule.scopes.is_empty() {
            return err(format!("{rf}.scopes"), "must not be empty");
        }
        let scopes = check_scopes(&format!("{rf}.scopes"), &rule.scopes)?;
        tool_rules.push(ToolRule::new(&rule.method, rule.name.as_deref(), scopes));
    }
    if let Some(doc) = &r.resource_documentation {
        parse_http_url(doc)
            .map_err(|m| ConfigError(format!("{field}.resource_documentation: {m}")))?;
    }
    if r.resource_name.as_deref() == Some("") {
        return err(format!("{field}.resource_name"), "must not be empty");
    }
    let challenge_scopes = match r.challenge_scopes {
        ChallengeScopes::Required => required_scopes.clone(),
        ChallengeScopes::All => policy::every_scope(&required_scopes, &tool_rules),
    };
    let metadata_path = format!("{}{}", metadata::WELL_KNOWN, url.path);
    let metadata_url = format!("{}{}", url.origin(), metadata_path);
    let mut resource = Resource {
        path_prefix: r.path_prefix.clone(),
        resource: r.resource.clone(),
        metadata_path,
        metadata_url,
        authorization_servers: r.authorization_servers.clone(),
        issuers: issuer_idx,
        audiences,
        scopes_supported,
        required_scopes,
        tool_rules,
        resource_name: r.resource_name.clone(),
        resource_documentation: r.resource_documentation.clone(),
        metadata_json: String::new(),
        challenge_params: String::new(),
    };
    resource.metadata_json = metadata::document(&resource);
    resource.challenge_params = response::params(&resource.metadata_url, &challenge_scopes);
    Ok(resource)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mcp_auth_test_support::ed_key;
    use serde_json::json;

    pub(crate) fn demo_json() -> Value {
        mcp_auth_test_support::demo_filter_config()
    }

    pub(crate) fn parse(v: &Value) -> Result<Config, ConfigError> {
        Config::parse(v.to_string().as_bytes())
    }

    #[test]
    fn demo_configuration_normalizes_with_defaults() {
        let mut v = demo_json();
        // Only what has no default is left, so every value below comes from the filter.
        for pointer in [
            "/resources/0/issuers",
            "/resources/0/audiences",
            "/issuers/0/jwks/refresh_interval_seconds",
            "/issuers/0/jwks/fetch_timeout_ms",
            "/issuers/0/jwks/min_refetch_interval_seconds",
            "/clock_skew_seconds",
            "/max_body_bytes",
            "/key_wait_timeout_ms",
            "/token_cache",
            "/metadata_max_age_seconds",
            "/unmatched_paths",
            "/hold_headers_for_body",
            "/resources/0/challenge_scopes",
        ] {
            let (parent, member) = pointer.rsplit_once('/').expect("pointer");
            let removed = v
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .and_then(|object| object.remove(member));
            assert!(removed.is_some(), "the demo configuration sets {pointer}");
        }
        v["identity_headers"]["client_id"] = json!("X-MCP-Client-Id");
        let c = parse(&v).expect("valid");
        let r = &c.resources[0];
        assert_eq!(r.metadata_path, "/.well-known/oauth-protected-resource/mcp");
        assert_eq!(
            r.metadata_url,
            "http://localhost:10000/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(r.audiences, vec!["http://localhost:10000/mcp"]);
        assert_eq!(r.issuers, vec![0]);
        assert_eq!(
            r.challenge_params,
            r#"resource_metadata="http://localhost:10000/.well-known/oauth-protected-resource/mcp", scope="mcp:tools""#
        );
        assert_eq!(c.root_metadata, Some(0));
        assert_eq!(c.clock_skew, 60);
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!(c.key_wait_timeout, Duration::from_millis(5000));
        assert_eq!(c.token_cache_slots, 1024);
        assert_eq!(c.metadata_max_age, 3600);
        assert_eq!(c.unmatched_paths, UnmatchedPaths::Reject);
        assert!(!c.hold_headers_for_body);
        assert_eq!(c.access_log_properties, DEFAULT_ACCESS_LOG_PROPERTIES);
        let headers: Vec<(&str, &str)> = c
            .identity_headers
            .iter()
            .map(|h| (h.claim.as_str(), h.header.as_str()))
            .collect();
        assert_eq!(
            headers,
            vec![
                ("client_id", "x-mcp-client-id"),
                ("scope", "x-mcp-scope"),
                ("sub", "x-mcp-subject")
            ]
        );
        let JwksSource::Remote(remote) = &c.issuers[0].jwks else {
            panic!("remote expected")
        };
        assert_eq!(
            remote,
            &RemoteJwks {
                cluster: "auth_server".into(),
                authority: "localhost:9000".into(),
                path: "/jwks.json".into(),
                refresh_interval: Duration::from_secs(300),
                fetch_timeout: Duration::from_millis(5000),
                min_refetch_interval: Duration::from_secs(30),
                max_stale: Duration::from_secs(86_400),
            }
        );
    }

    #[test]
    fn challenge_scopes_all_asks_for_every_scope_a_rule_can_require() {
        let mut v = demo_json();
        v["resources"][0]["tool_scopes"] = json!([
            { "method": "tools/call", "name": "admin_*", "scopes": ["mcp:admin"] },
            { "method": "resources/*", "scopes": ["mcp:read", "mcp:tools"] }
        ]);
        let scope_of = |c: &Config| {
            c.resources[0]
                .challenge_params
                .split("scope=")
                .nth(1)
                .map(str::to_string)
        };
        let required = parse(&v).expect("valid");
        assert_eq!(scope_of(&required).as_deref(), Some(r#""mcp:tools""#));
        v["resources"][0]["challenge_scopes"] = json!("all");
        let all = parse(&v).expect("valid");
        assert_eq!(
            scope_of(&all).as_deref(),
            Some(r#""mcp:tools mcp:admin mcp:read""#)
        );
        assert_eq!(
            all.resources[0].required_scopes,
            vec!["mcp:tools"],
            "what a request needs is unchanged"
        );
        v["resources"][0]["challenge_scopes"] = json!("every");
        let e = parse(&v).expect_err("unknown value").0;
        assert!(
            e.starts_with("resources[0].challenge_scopes: unknown variant `every`"),
            "{e}"
        );
    }

    #[test]
    fn inline_keys_are_parsed_at_configure_time() {
        let mut v = demo_json();
        v["issuers"][0]["jwks"] = json!({"inline": {"keys": [ed_key("k1").public_jwk()]}});
        let c = parse(&v).expect("valid");
        assert!(matches!(&c.issuers[0].jwks, JwksSource::Inline(k) if k.len() == 1));
    }

    #[test]
    fn each_invalid_field_is_named() {
        let table: Vec<(&str, Value, &str)> = vec![
            (
                "/resources/0/resource",
                json!("localhost/mcp"),
                "resources[0].resource: must be an absolute http(s) URL",
            ),
            (
                "/resources/0/resource",
                json!("http://localhost:10000/mcp/"),
                "resources[0].resource: must be an absolute http(s) URL",
            ),
            (
                "/resources/0/resource",
                json!("http://localhost:10000/mcp#x"),
                "resources[0].resource:",
            ),
            (
                "/resources/0/path_prefix",
                json!("mcp"),
                "resources[0].path_prefix: must start with /",
            ),
            (
                "/resources/0/path_prefix",
                json!("/mcp/../x"),
                "resources[0].path_prefix:",
            ),
            (
                "/resources/0/authorization_servers",
                json!([]),
                "resources[0].authorization_servers: must not be empty",
            ),
            (
                "/resources/0/authorization_servers",
                json!(["http://other:9000"]),
                "resources[0].authorization_servers[0]: is not in the top-level issuers",
            ),
            (
                "/resources/0/issuers",
                json!(["http://nope"]),
                "resources[0].issuers[0]: is not in the top-level issuers",
            ),
            (
                "/resources/0/scopes_supported",
                json!(["mcp:tools", "offline_access"]),
                "resources[0].scopes_supported[1]: offline_access",
            ),
            (
                "/resources/0/required_scopes",
                json!(["a b"]),
                "resources[0].required_scopes[0]: must be a scope token",
            ),
            (
                "/resources/0/tool_scopes/0/scopes",
                json!([]),
                "resources[0].tool_scopes[0].scopes: must not be empty",
            ),
            (
                "/resources/0/tool_scopes/0/name",
                json!(""),
                "resources[0].tool_scopes[0].name: must not be empty",
            ),
            (
                "/resources/0/resource_documentation",
                json!("docs"),
                "resources[0].resource_documentation:",
            ),
            (
                "/resources/0/extra",
                json!(1),
                "resources[0].extra: unknown field `extra`",
            ),
            (
                "/resources/0/required_scopes",
                json!("mcp:tools"),
                "resources[0].required_scopes: invalid type",
            ),
            (
                "/root_metadata_resource",
                json!("http://localhost:10000/other"),
                "root_metadata_resource: must equal",
            ),
            (
                "/issuers/0/jwks",
                json!({}),
                "issuers[0].jwks: must have exactly one",
            ),
            (
                "/issuers/0/jwks",
                json!({"cluster": "c"}),
                "issuers[0].jwks.uri: required with cluster",
            ),
            (
                "/issuers/0/jwks",
                json!({"inline": {"keys": []}}),
                "issuers[0].jwks.inline: JWKS document has no usable signing key",
            ),
            (
                "/issuers/0/jwks",
                json!({"inline": {"keys": []}, "cluster": "c", "uri": "http://a/b"}),
                "issuers[0].jwks: must have exactly one",
            ),
            (
                "/issuers/0/jwks/uri",
                json!("not a url"),
                "issuers[0].jwks.uri: must start with http",
            ),
            (
                "/issuers/0/jwks/refresh_interval_seconds",
                json!(1),
                "issuers[0].jwks.refresh_interval_seconds: must be between 10",
            ),
            (
                "/issuers/0/jwks/max_stale_seconds",
                json!(59),
                "issuers[0].jwks.max_stale_seconds: must be between 60",
            ),
            (
                "/issuers/0/jwks/max_stale_seconds",
                json!(299),
                "issuers[0].jwks.max_stale_seconds: must be at least refresh_interval_seconds",
            ),
            (
                "/issuers",
                json!([]),
                "issuers: must list at least one issuer",
            ),
            (
                "/resources",
                json!([]),
                "resources: must list at least one resource",
            ),
            (
                "/identity_headers/sub",
                json!("bad header"),
                "identity_headers.sub: must be a valid HTTP header name",
            ),
            (
                "/identity_headers/sub",
                json!("Authorization"),
                "identity_headers.sub: authorization cannot carry identity",
            ),
            (
                "/identity_headers/client_id",
                json!("x-mcp-subject"),
                "identity_headers.sub: header used for two claims",
            ),
            (
                "/cors/allowed_origins",
                json!(["*"]),
                "cors.allowed_origins[0]: must be an origin",
            ),
            (
                "/clock_skew_seconds",
                json!(100000),
                "clock_skew_seconds: must be between 0 and 600",
            ),
            (
                "/clock_skew_seconds",
                json!(-1),
                "clock_skew_seconds: invalid value",
            ),
            (
                "/max_body_bytes",
                json!(0),
                "max_body_bytes: must be between 1",
            ),
            (
                "/key_wait_timeout_ms",
                json!(0),
                "key_wait_timeout_ms: must be between 1",
            ),
            (
                "/unmatched_paths",
                json!("allow"),
                "unmatched_paths: unknown variant",
            ),
            (
                "/token_cache",
                json!({"max_entries": 2_000_000}),
                "token_cache.max_entries: must be between 0",
            ),
        ];
        for (pointer, value, want) in table {
            let mut v = demo_json();
            // Without it, authorization_servers also name the accepted issuers.
            v["resources"][0]
                .as_object_mut()
                .expect("resource")
                .remove("issuers");
            let (parent, key) = pointer.rsplit_once('/').expect("pointer");
            let target = v.pointer_mut(parent).unwrap_or_else(|| panic!("{parent}"));
            match target {
                Value::Object(m) => {
                    m.insert(key.to_string(), value);
                }
                Value::Array(a) => a[key.parse::<usize>().expect("index")] = value,
                _ => panic!("{pointer}"),
            }
            let got = parse(&v)
                .err()
                .unwrap_or_else(|| panic!("{pointer} = should be rejected"))
                .0;
            assert!(
                got.starts_with(want),
                "{pointer}: got {got:?}, want prefix {want:?}"
            );
        }
    }

    #[test]
    fn duplicate_prefixes_and_resources_are_rejected() {
        let mut v = demo_json();
        let r0 = v["resources"][0].clone();
        let mut r1 = r0.clone();
        r1["resource"] = json!("http://localhost:10000/other");
        v["resources"] = json!([r0.clone(), r1]);
        assert!(
            parse(&v)
                .expect_err("dup prefix")
                .0
                .starts_with("resources[1].path_prefix: duplicates")
        );
        let mut r2 = r0.clone();
        r2["path_prefix"] = json!("/other");
        v["resources"] = json!([r0, r2]);
        assert!(
            parse(&v)
                .expect_err("dup resource")
                .0
                .starts_with("resources[1].resource: duplicates")
        );
    }

    #[test]
    fn the_readme_full_example_is_the_tested_demo_configuration() {
        let readme = include_str!("../README.md");
        let start = readme.find("### Full example").expect("section");
        let block = readme[start..].split("```json").nth(1).expect("json block");
        let json = block.split("```").next().expect("closed block");
        let shown: Value = serde_json::from_str(json).expect("README example is JSON");
        assert_eq!(shown, demo_json(), "README example and test fixture differ");
        let c = Config::parse(json.as_bytes()).unwrap_or_else(|e| panic!("README example: {e}"));
        assert_eq!(c.resources[0].resource, "http://localhost:10000/mcp");
        assert_eq!(c.identity_headers.len(), 3);
        assert_eq!(c.unmatched_paths, UnmatchedPaths::Reject);
    }

    #[test]
    fn the_readme_tables_state_the_defaults_and_ranges_of_the_code() {
        let readme = include_str!("../README.md");
        let table = [
            ("clock_skew_seconds", limits::CLOCK_SKEW_SECONDS),
            ("max_body_bytes", limits::MAX_BODY_BYTES),
            ("key_wait_timeout_ms", limits::KEY_WAIT_TIMEOUT_MS),
            ("metadata_max_age_seconds", limits::METADATA_MAX_AGE_SECONDS),
            (
                "refresh_interval_seconds",
                limits::JWKS_REFRESH_INTERVAL_SECONDS,
            ),
            ("fetch_timeout_ms", limits::JWKS_FETCH_TIMEOUT_MS),
            (
                "min_refetch_interval_seconds",
                limits::JWKS_MIN_REFETCH_INTERVAL_SECONDS,
            ),
            ("max_stale_seconds", limits::JWKS_MAX_STALE_SECONDS),
        ];
        for (field, bounds) in table {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{field}` |")))
                .unwrap_or_else(|| panic!("README has no row for {field}"));
            let range = format!("{}..={}", bounds.min, bounds.max);
            let default = format!("default `{}`", bounds.default);
            assert!(
                row.contains(&range) && row.contains(&default),
                "{field}: README says {row:?}, the code {range}, {default}"
            );
        }
        let cache = limits::TOKEN_CACHE_MAX_ENTRIES;
        let row = readme
            .lines()
            .find(|l| l.starts_with("| `token_cache` |"))
            .expect("token_cache row");
        assert!(
            row.contains(&format!(r#"{{"max_entries": {}}}"#, cache.default))
                && row.contains(&format!("`max_entries` {}..={}", cache.min, cache.max)),
            "token_cache: {row:?}"
        );
    }

    #[test]
    fn access_log_properties_default_to_on_and_can_be_turned_off_with_a_boolean_only() {
        let readme = include_str!("../README.md");
        let row = readme
            .lines()
            .find(|l| l.starts_with("| `access_log_properties` |"))
            .expect("README row for access_log_properties");
        assert!(
            row.contains(&format!("default `{DEFAULT_ACCESS_LOG_PROPERTIES}`")),
            "{row}"
        );
        let mut v = demo_json();
        assert!(parse(&v).expect("valid").access_log_properties);
        v["access_log_properties"] = json!(false);
        assert!(!parse(&v).expect("valid").access_log_properties);
        v["access_log_properties"] = json!("no");
        let err = parse(&v).expect_err("a string is no boolean").0;
        assert!(
            err.starts_with("access_log_properties: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn garbage_configuration_is_rejected() {
        assert!(Config::parse(b"").is_err());
        let e = Config::parse(b"[]").expect_err("array").0;
        assert_eq!(e, "configuration: must be a JSON object");
        assert!(
            Config::parse(b"{}")
                .expect_err("empty")
                .0
                .contains("missing field `resources`")
        );
        assert!(Config::parse(&[0xff, 0x00]).is_err());
    }
}
