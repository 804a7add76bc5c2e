//! Clients from three sources: the configuration file (verified), dynamic registration and
//! Client ID Metadata Documents (both self-asserted, shown as unverified). Also client
//! authentication at the token and revocation endpoints.

use std::net::IpAddr;
use std::time::Instant;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::audit;
use crate::cimd::{self, Fetcher, KeySource};
use crate::client_address::rate_key;
use crate::client_assertion::{self, AssertionError, Expected, Jwks};
use crate::config::Config;
use crate::error::{ErrorCode, OAuthError};
use crate::metrics::Metrics;
use crate::oauth::{AuthMethod, GrantType};
use crate::params::Params;
use crate::password_check::PasswordChecker;
use crate::ratelimit::{self, RateLimiter};
use crate::secrets;
use crate::store::{self, Store};
use crate::time;

/// Refuses a self-asserted client name that holds an invisible formatting character (Unicode
/// category Cf: bidirectional embeddings, overrides and isolates, zero-width characters, the
/// Arabic letter mark, the byte order mark...). Such characters make the name on the consent
/// page read differently from what it is, for example reversing part of it.
pub fn check_client_name(name: &str) -> Result<(), String> {
    use unicode_general_category::{GeneralCategory, get_general_category};
    match name
        .chars()
        .find(|c| get_general_category(*c) == GeneralCategory::Format)
    {
        Some(c) => Err(format!(
            "client_name must not contain invisible formatting or bidirectional control characters (it contains U+{:04X})",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// The one answer for a metadata document that could not be resolved, fetched or validated.
const UNUSABLE_METADATA_DOCUMENT: &str = "its metadata document could not be fetched or was not accepted (the server log has the reason)";

/// The answer when a client's `jwks_uri` could not be fetched or held no usable keys. The
/// reason stays in the log for the same reason as a document's.
const UNUSABLE_JWKS: &str = "the client's jwks_uri could not be fetched or was not accepted (the server log has the reason)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Static,
    Registered,
    MetadataDocument,
}

/// A client as the authorization endpoint sees it.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub kind: ClientKind,
    /// Registered for the `authorization_code` grant, so it may be given codes.
    pub allows_authorization_code: bool,
    pub allows_refresh: bool,
}

impl Client {
    /// Only operator-configured clients have a verified name.
    pub fn verified(&self) -> bool {
        self.kind == ClientKind::Static
    }
}

/// Where clients come from (the configuration file, the registration table, metadata
/// documents) and what checking their secrets needs.
pub struct Clients<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub fetcher: &'a Fetcher,
    pub password_checker: &'a PasswordChecker,
    pub auth_failures: &'a AuthFailureLimits,
    pub metrics: &'a Metrics,
}

/// Failed client authentications allowed per minute, per client address and per client.
pub struct AuthFailureLimits {
    pub per_address: RateLimiter<IpAddr>,
    pub per_client: RateLimiter<String>,
}

impl AuthFailureLimits {
    pub fn new(per_address: u32, per_client: u32) -> Self {
        AuthFailureLimits {
            per_address: RateLimiter::new(per_address),
            per_client: RateLimiter::new(per_client),
        }
    }
}

/// The answer once a limit on failed client authentications is reached: 429, retry after the
/// window. No credential was checked.
fn too_many_failures(whom: &str) -> OAuthError {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        format!("too many failed client authentications {whom}; try again in a minute"),
    )
    .with_retry_after(ratelimit::WINDOW.as_secs())
}

/// How a client's secret is stored.
enum StoredSecret {
    /// Chosen by the operator (static clients): argon2 PHC string.
    Argon2(String),
    /// Generated at registration (256 random bits): hex SHA-256.
    Sha256(String),
}

/// What a client must present at the token and revocation endpoints.
struct Credentials {
    method: AuthMethod,
    secret: Option<StoredSecret>,
    /// For `private_key_jwt`: where the client's keys are and the algorithm it declared.
    keys: Option<ClientKeys>,
}

struct ClientKeys {
    source: KeySource,
    signing_alg: Option<String>,
}

impl Clients<'_> {
    /// Finds the client for an authorization request from `requester`. Errors are shown on an
    /// error page.
    pub async fn resolve(&self, client_id: &str, requester: IpAddr) -> Result<Client, String> {
        if cimd::is_metadata_url(client_id) {
            let fetched = self.fetcher.resolve_for(client_id, Some(requester)).await;
            self.metrics.client_metadata_fetch(fetched.is_ok());
            let doc = fetched.map_err(|reason| {
                audit::client_metadata_fetch_failed(client_id, &reason);
                self.metadata_failure_shown(client_id, reason)
            })?;
            return Ok(Client {
                client_id: doc.client_id,
                client_name: doc.client_name,
                redirect_uris: doc.redirect_uris,
                kind: ClientKind::MetadataDocument,
                allows_authorization_code: doc.allows_authorization_code,
                allows_refresh: doc.allows_refresh,
            });
        }
        if let Some(c) = self.config.static_client(client_id) {
            return Ok(Client {
                client_id: c.client_id.clone(),
                client_name: Some(c.client_name.clone()),
                redirect_uris: c.redirect_uris.clone(),
                kind: ClientKind::Static,
                allows_authorization_code: true,
                allows_refresh: true,
            });
        }
        let id = client_id.to_string();
        let registered = self
            .store
            .run(move |conn| store::use_client(conn, &id, time::now()))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "client lookup failed");
                "internal error while looking up the client".to_string()
            })?;
        match registered {
            Some(c) => Ok(Client {
                client_id: c.client_id,
                client_name: c.client_name,
                redirect_uris: c.redirect_uris,
                kind: ClientKind::Registered,
                allows_authorization_code: c.allows_authorization_code,
                allows_refresh: c.allows_refresh,
            }),
            None => Err("unknown client_id".into()),
        }
    }

    /// What the requester is told when a metadata document cannot be used. A broken URL is
    /// explained, since it follows from the client_id alone. Anything found while resolving,
    /// fetching or validating stays in the log: anyone can name any URL, and the reason would
    /// tell them which internal names exist and which private addresses they resolve to.
    fn metadata_failure_shown(&self, client_id: &str, reason: String) -> String {
        match cimd::validate_client_id_url(
            client_id,
            self.config.allow_insecure_localhost_client_metadata,
        ) {
            Err(_) => reason,
            Ok(_) => UNUSABLE_METADATA_DOCUMENT.to_string(),
        }
    }

    /// Did the (authenticated) client register for `grant`? Static clients may use every grant.
    /// A metadata-document client's grants are not checked against its current document: its
    /// codes and refresh tokens exist only if its document allowed them when they were issued.
    pub async fn registered_for(
        &self,
        client_id: &str,
        grant: GrantType,
    ) -> Result<bool, OAuthError> {
        if cimd::is_metadata_url(client_id) || self.config.static_client(client_id).is_some() {
            return Ok(true);
        }
        let id = client_id.to_string();
        let registered = self
            .store
            .run(move |conn| store::get_client(conn, &id))
            .await?;
        Ok(registered.is_some_and(|c| match grant {
            GrantType::AuthorizationCode => c.allows_authorization_code,
            GrantType::RefreshToken => c.allows_refresh,
        }))
    }

    /// Authenticates the client of a token or revocation request sent `from` an address;
    /// returns its client_id.
    ///
    /// Failures are limited per address and, where a secret or assertion is checked, per
    /// client: each attempt is counted before its credential is checked (and given back when
    /// it succeeds), so a flood of wrong secrets gets no more argon2 checks than the limits
    /// allow and cannot crowd out sign-ins.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        params: &Params,
        from: IpAddr,
    ) -> Result<String, OAuthError> {
        let p = presented_credentials(headers, params)?;
        let now = Instant::now();
        let limits = self.auth_failures;
        let Some(by_address) = limits.per_address.count_attempt(rate_key(from), now) else {
            return Err(too_many_failures("from this address"));
        };
        let expected = self.expected_credentials(&p).await?;
        let by_client = if expected.method == AuthMethod::None {
            None
        } else {
            match limits.per_client.count_attempt(p.client_id.clone(), now) {
                Some(attempt) => Some(attempt),
                None => {
                    // Nothing was checked: the address is not charged for this one.
                    limits.per_address.refund(by_address);
                    return Err(too_many_failures("for this client"));
                }
            }
        };
        let authenticated = self.check_credentials(&p, expected).await?;
        limits.per_address.refund(by_address);
        if let Some(attempt) = by_client {
            limits.per_client.refund(attempt);
        }
        Ok(authenticated)
    }

    /// What the presented client must authenticate with.
    async fn expected_credentials(&self, p: &Presented) -> Result<Credentials, OAuthError> {
        let fail = |msg: &str| OAuthError::invalid_client(msg).with_basic_challenge(p.via_basic);
        Ok(if cimd::is_metadata_url(&p.client_id) {
            cimd::validate_client_id_url(
                &p.client_id,
                self.config.allow_insecure_localhost_client_metadata,
            )
            .map_err(|e| fail(&e))?;
            // The document says how the client authenticates (a document that declares
            // private_key_jwt must not be downgraded to `none` by leaving the assertion out),
            // so it is looked up here too: from the cache while its Cache-Control allows.
            let fetched = self.fetcher.resolve(&p.client_id).await;
            self.metrics.client_metadata_fetch(fetched.is_ok());
            let doc = fetched.map_err(|reason| {
                audit::client_metadata_fetch_failed(&p.client_id, &reason);
                fail(UNUSABLE_METADATA_DOCUMENT)
            })?;
            Credentials {
                method: doc.auth_method,
                secret: None,
                keys: doc.keys.map(|source| ClientKeys {
                    source,
                    signing_alg: doc.signing_alg,
                }),
            }
        } else if let Some(c) = self.config.static_client(&p.client_id) {
            Credentials {
                method: c.auth_method,
                secret: c.client_secret_hash.clone().map(StoredSecret::Argon2),
                keys: c.jwks.clone().map(|jwks| ClientKeys {
                    source: KeySource::Inline(jwks),
                    signing_alg: c.signing_alg.clone(),
                }),
            }
        } else {
            let id = p.client_id.clone();
            match self
                .store
                .run(move |conn| store::use_client(conn, &id, time::now()))
                .await?
            {
                Some(c) => Credentials {
                    method: c.auth_method,
                    secret: c.secret_hash.map(StoredSecret::Sha256),
                    keys: None,
                },
                None => return Err(fail("unknown client")),
            }
        })
    }

    /// Checks the presented credentials against the expected ones.
    async fn check_credentials(
        &self,
        p: &Presented,
        expected: Credentials,
    ) -> Result<String, OAuthError> {
        let fail = |msg: &str| OAuthError::invalid_client(msg).with_basic_challenge(p.via_basic);
        if expected.method == AuthMethod::PrivateKeyJwt {
            if p.secret.is_some() {
                return Err(fail(
                    "this client authenticates with private_key_jwt; it must not send a client secret",
                ));
            }
            let Some(assertion) = &p.assertion else {
                return Err(fail(
                    "this client authenticates with private_key_jwt: send client_assertion and client_assertion_type",
                ));
            };
            let Some(keys) = &expected.keys else {
                return Err(fail("this client has no keys"));
            };
            self.verify_assertion(&p.client_id, assertion, keys)
                .await
                .map_err(|reason| fail(&reason))?;
            return Ok(p.client_id.clone());
        }
        if p.assertion.is_some() {
            return Err(fail(&format!(
                "this client authenticates with `{}`, not private_key_jwt; it must not send client_assertion",
                expected.method.as_str()
            )));
        }
        match (expected.method, expected.secret, &p.secret) {
            (AuthMethod::None, _, None) => Ok(p.client_id.clone()),
            (AuthMethod::None, _, Some(_)) => {
                Err(fail("this is a public client; it must not send a secret"))
            }
            (_, _, None) => Err(fail("client authentication is required")),
            (_, None, Some(_)) => Err(fail("client has no secret")),
            (_, Some(stored), Some(secret)) => {
                let ok = match stored {
                    StoredSecret::Argon2(hash) => {
                        self.password_checker
                            .verify_client_secret(hash, secret.clone())
                            .await
                    }
                    StoredSecret::Sha256(hash) => {
                        secrets::constant_time_eq(&hash, &secrets::token_hash(secret))
                    }
                };
                if ok {
                    Ok(p.client_id.clone())
                } else {
                    Err(fail("client authentication failed"))
                }
            }
        }
    }

    /// Verifies a `private_key_jwt` assertion with the client's keys (refetching a `jwks_uri`
    /// once when the `kid` is unknown) and spends its `jti`. The error says which check failed.
    async fn verify_assertion(
        &self,
        client_id: &str,
        assertion: &str,
        keys: &ClientKeys,
    ) -> Result<(), String> {
        let audiences = [self.config.endpoint("/token"), self.config.issuer.clone()];
        let now = time::now();
        let expected = Expected {
            client_id,
            audiences: &audiences,
            declared_alg: keys.signing_alg.as_deref(),
            now,
        };
        let check = |jwks: &Jwks| client_assertion::verify(assertion, jwks, &expected);
        let unusable = |reason: String| {
            audit::client_metadata_fetch_failed(client_id, &format!("jwks_uri: {reason}"));
            UNUSABLE_JWKS.to_string()
        };
        let verified = match &keys.source {
            KeySource::Inline(jwks) => check(jwks),
            KeySource::Uri(uri) => {
                let (jwks, fetched_now) =
                    self.fetcher.jwks(uri, client_id).await.map_err(unusable)?;
                match check(&jwks) {
                    Err(AssertionError::UnknownKid(kid)) if !fetched_now => {
                        match self
                            .fetcher
                            .refetch_jwks(uri, client_id)
                            .await
                            .map_err(unusable)?
                        {
                            Some(fresh) => check(&fresh),
                            None => Err(AssertionError::UnknownKid(kid)),
                        }
                    }
                    other => other,
                }
            }
        }
        .map_err(|e| e.description())?;
        let (id, jti) = (client_id.to_string(), verified.jti);
        let first_use = self
            .store
            .run(move |conn| {
                store::use_assertion_jti(conn, &id, &jti, verified.remember_until, now)
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "recording a client assertion jti failed");
                "internal error while checking the client_assertion jti".to_string()
            })?;
        if !first_use {
            return Err(
                "client_assertion jti was already used (an assertion is single-use)".into(),
            );
        }
        Ok(())
    }
}

/// The credentials of an `Authorization: Basic ...` value. The scheme name is
/// case-insensitive (RFC 9110 §11.1), so `BASIC` and `basic` work like `Basic`.
fn basic_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("basic")
        .then_some(credentials.trim())
}

/// Credentials presented at the token or revocation endpoint.
#[derive(Debug)]
struct Presented {
    client_id: String,
    secret: Option<String>,
    /// A `private_key_jwt` assertion, its type already checked.
    assertion: Option<String>,
    via_basic: bool,
}

fn presented_credentials(headers: &HeaderMap, params: &Params) -> Result<Presented, OAuthError> {
    let body_id = params
        .single("client_id")
        .map_err(OAuthError::invalid_request)?;
    let body_secret = params
        .single("client_secret")
        .map_err(OAuthError::invalid_request)?;
    let assertion = presented_assertion(params)?;
    let basic = match headers
        .get_all(axum::http::header::AUTHORIZATION)
        .iter()
        .count()
    {
        0 => None,
        1 => headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(basic_credentials),
        _ => {
            return Err(OAuthError::invalid_request(
                "more than one Authorization header",
            ));
        }
    };
    if headers.contains_key(axum::http::header::AUTHORIZATION) && basic.is_none() {
        return Err(OAuthError::invalid_client(
            "only HTTP Basic client authentication is supported in the Authorization header",
        )
        .with_basic_challenge(true));
    }
    if let Some(encoded) = basic {
        let bad = || {
            OAuthError::invalid_client("malformed HTTP Basic credentials")
                .with_basic_challenge(true)
        };
        let decoded = STANDARD.decode(encoded).map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (id, secret) = text.split_once(':').ok_or_else(bad)?;
        let decode = |s: &str| -> String {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let (id, secret) = (decode(id), decode(secret));
        if body_secret.is_some() || assertion.is_some() {
            return Err(OAuthError::invalid_request(
                "use only one client authentication method",
            ));
        }
        if body_id.is_some_and(|b| b != id) {
            return Err(OAuthError::invalid_request(
                "client_id in the body differs from the authenticated client",
            ));
        }
        return Ok(Presented {
            client_id: id,
            secret: Some(secret),
            assertion: None,
            via_basic: true,
        });
    }
    if body_secret.is_some() && assertion.is_some() {
        return Err(OAuthError::invalid_request(
            "use only one client authentication method",
        ));
    }
    // RFC 7521 §4.2: with an assertion, client_id may be left out; the assertion's subject
    // names the client (and must equal it once verified).
    let client_id = match (body_id, &assertion) {
        (Some(id), _) => id.to_string(),
        (None, Some(a)) => client_assertion::unverified_subject(a).ok_or_else(|| {
            OAuthError::invalid_client("client_id is required (the client_assertion has no sub)")
        })?,
        (None, None) => return Err(OAuthError::invalid_client("client_id is required")),
    };
    Ok(Presented {
        client_id,
        secret: body_secret.map(str::to_string),
        assertion,
        via_basic: false,
    })
}

/// `client_assertion` with its `client_assertion_type`, which must be the JWT bearer type.
fn presented_assertion(params: &Params) -> Result<Option<String>, OAuthError> {
    let assertion = params
        .single("client_assertion")
        .map_err(OAuthError::invalid_request)?;
    let assertion_type = params
        .single("client_assertion_type")
        .map_err(OAuthError::invalid_request)?;
    match (assertion, assertion_type) {
        (None, None) => Ok(None),
        (Some(a), Some(t)) if t == client_assertion::ASSERTION_TYPE => Ok(Some(a.to_string())),
        (Some(_), Some(t)) => Err(OAuthError::invalid_client(format!(
            "client_assertion_type `{t}` is not supported; use {}",
            client_assertion::ASSERTION_TYPE
        ))),
        (Some(_), None) => Err(OAuthError::invalid_client(format!(
            "client_assertion_type is required with client_assertion ({})",
            client_assertion::ASSERTION_TYPE
        ))),
        (None, Some(_)) => Err(OAuthError::invalid_client(
            "client_assertion is required with client_assertion_type",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_with_invisible_formatting_characters_are_refused() {
        for name in [
            "Good App\u{202E}ppA liveE",
            "a\u{202A}b",
            "a\u{2066}b\u{2069}",
            "a\u{200B}b",
            "a\u{200F}b",
            "a\u{061C}b",
            "\u{FEFF}App",
            "a\u{00AD}b",
            "a\u{E0041}b",
        ] {
            let refused = check_client_name(name).unwrap_err();
            assert!(refused.starts_with("client_name "), "{refused}");
        }
        for name in ["My App", "Приложение", "تطبيق", "アプリ 🚀"] {
            assert_eq!(check_client_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn the_basic_scheme_name_is_case_insensitive() {
        for value in ["Basic YTpi", "basic YTpi", "BASIC YTpi", "bAsIc   YTpi "] {
            assert_eq!(basic_credentials(value), Some("YTpi"), "{value}");
        }
        for value in ["Bearer YTpi", "BasicYTpi", "Basic", "Digest Basic x"] {
            assert_eq!(basic_credentials(value), None, "{value}");
        }
    }
}
