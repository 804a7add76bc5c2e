//! Clients from three sources: the configuration file (verified), dynamic registration and
//! Client ID Metadata Documents (both self-asserted, shown as unverified). Also client
//! authentication at the token and revocation endpoints.

use std::net::IpAddr;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::audit;
use crate::cimd::{self, Fetcher};
use crate::config::Config;
use crate::error::OAuthError;
use crate::metrics::Metrics;
use crate::oauth::{AuthMethod, GrantType};
use crate::params::Params;
use crate::password_check::PasswordChecker;
use crate::secrets;
use crate::store::{self, Store};

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
    pub metrics: &'a Metrics,
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
            .run(move |conn| store::get_client(conn, &id))
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
    /// A metadata-document client's document is not fetched at the token endpoint: its codes
    /// and refresh tokens exist only if its document allowed them when they were issued.
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

    /// Authenticates the client of a token or revocation request; returns its client_id.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<String, OAuthError> {
        let p = presented_credentials(headers, params)?;
        let fail = |msg: &str| OAuthError::invalid_client(msg).with_basic_challenge(p.via_basic);
        let expected = if cimd::is_metadata_url(&p.client_id) {
            cimd::validate_client_id_url(
                &p.client_id,
                self.config.allow_insecure_localhost_client_metadata,
            )
            .map_err(|e| fail(&e))?;
            Credentials {
                method: AuthMethod::None,
                secret: None,
            }
        } else if let Some(c) = self.config.static_client(&p.client_id) {
            Credentials {
                method: c.auth_method,
                secret: c.client_secret_hash.clone().map(StoredSecret::Argon2),
            }
        } else {
            let id = p.client_id.clone();
            match self
                .store
                .run(move |conn| store::get_client(conn, &id))
                .await?
            {
                Some(c) => Credentials {
                    method: c.auth_method,
                    secret: c.secret_hash.map(StoredSecret::Sha256),
                },
                None => return Err(fail("unknown client")),
            }
        };
        match (expected.method, expected.secret, &p.secret) {
            (AuthMethod::None, _, None) => Ok(p.client_id),
            (AuthMethod::None, _, Some(_)) => {
                Err(fail("this is a public client; it must not send a secret"))
            }
            (_, _, None) => Err(fail("client authentication is required")),
            (_, None, Some(_)) => Err(fail("client has no secret")),
            (_, Some(stored), Some(secret)) => {
                let ok = match stored {
                    StoredSecret::Argon2(hash) => {
                        self.password_checker.verify(hash, secret.clone()).await
                    }
                    StoredSecret::Sha256(hash) => {
                        secrets::constant_time_eq(&hash, &secrets::token_hash(secret))
                    }
                };
                if ok {
                    Ok(p.client_id)
                } else {
                    Err(fail("client authentication failed"))
                }
            }
        }
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
    via_basic: bool,
}

fn presented_credentials(headers: &HeaderMap, params: &Params) -> Result<Presented, OAuthError> {
    let body_id = params
        .single("client_id")
        .map_err(OAuthError::invalid_request)?;
    let body_secret = params
        .single("client_secret")
        .map_err(OAuthError::invalid_request)?;
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
        if body_secret.is_some() {
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
            via_basic: true,
        });
    }
    let client_id = body_id
        .ok_or_else(|| OAuthError::invalid_client("client_id is required"))?
        .to_string();
    Ok(Presented {
        client_id,
        secret: body_secret.map(str::to_string),
        via_basic: false,
    })
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
