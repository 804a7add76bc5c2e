//! The token endpoint: `authorization_code` (PKCE, single use, replay revokes the family) and
//! `refresh_token` (rotation, reuse detection, scope narrowing). Access tokens follow RFC 9068.

use std::sync::Arc;

use crate::db::Sql;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jwt_simple::prelude::{Claims, Duration};

use crate::client_address::ClientAddress;
use crate::config::{Config, Resource};
use crate::error::{ErrorCode, OAuthError};
use crate::form::OAuthForm;
use crate::keys::{AccessClaims, KeyPair};
use crate::oauth::GrantType;
use crate::params::Params;
use crate::state::AppState;
use crate::store::{self, Family, Redemption, Rotation};
use crate::{audit, pkce, resource, secrets, time};

pub fn routes(config: &Config) -> Router<AppState> {
    Router::new().route(&format!("{}/token", config.issuer_path), post(token))
}

/// Checks a `resource` parameter at the token endpoint against the resource of the grant.
fn check_resource(
    resources: &[Resource],
    params: &Params,
    granted: &str,
) -> Result<(), OAuthError> {
    let requested = params.all("resource");
    if requested.is_empty() {
        return Ok(());
    }
    let selected = resource::select(resources, &requested).map_err(OAuthError::invalid_target)?;
    if selected.url != granted {
        return Err(OAuthError::invalid_target(
            "resource differs from the one authorized",
        ));
    }
    Ok(())
}

/// A stored grant (code or refresh family) is only honoured while its user, its resource and
/// every one of its scopes are still in the configuration: removing a user or a resource ends
/// the grants made for it.
fn check_still_configured(
    config: &Config,
    username: &str,
    resource_url: &str,
    scope: &str,
) -> Result<(), OAuthError> {
    if !crate::identity::is_configured(config, username) {
        return Err(OAuthError::invalid_grant(
            "the user of this grant no longer exists",
        ));
    }
    let Some(resource) = config.resources.iter().find(|r| r.url == resource_url) else {
        return Err(OAuthError::invalid_grant(
            "the resource of this grant is no longer served",
        ));
    };
    if let Some(gone) = resource::split(scope)
        .into_iter()
        .find(|s| !resource.scopes.contains(s))
    {
        return Err(OAuthError::invalid_grant(format!(
            "scope `{gone}` of this grant is no longer offered"
        )));
    }
    Ok(())
}

/// The scope of a refresh: the family's `granted` scope, narrowed to what was `requested`.
fn narrowed(
    config: &Config,
    resource_url: &str,
    granted: &str,
    requested: Option<&str>,
) -> Result<Vec<String>, OAuthError> {
    let resource = config
        .resources
        .iter()
        .find(|r| r.url == resource_url)
        .ok_or_else(|| {
            OAuthError::invalid_grant("the resource of this grant is no longer served")
        })?;
    resource::narrow(resource, &resource::split(granted), requested)
        .map_err(OAuthError::invalid_scope)
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, OAuthError> {
    params
        .single(name)
        .map_err(OAuthError::invalid_request)?
        .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
}

/// What an access token is issued for.
struct Grant {
    grant_type: GrantType,
    client_id: String,
    username: String,
    scope: String,
    resource: String,
}

/// What signing an access token needs, gathered before the transaction that consumes the code
/// or rotates the refresh token, so that the token is signed inside that transaction and a
/// failure to sign leaves the code or refresh token usable.
struct Signer {
    key: Arc<KeyPair>,
    jti: String,
    issuer: String,
    lifetime_secs: u64,
    config: Arc<Config>,
}

impl Signer {
    async fn prepare(state: &AppState) -> Result<Self, OAuthError> {
        Ok(Signer {
            key: state.keyring.signing_key(time::now()).await?,
            jti: secrets::random_token()?,
            issuer: state.config.issuer.clone(),
            lifetime_secs: state.config.access_token_lifetime.as_secs(),
            config: state.config.clone(),
        })
    }

    /// The signed RFC 9068 access token of `grant`, with the upstream claims copied for a
    /// federated person (read in the same transaction that consumes the code or rotates the
    /// refresh token).
    fn sign(&self, conn: &dyn Sql, grant: &Grant) -> Result<String, OAuthError> {
        let upstream = copied_claims(conn, &self.config, &grant.username)?;
        let claims = Claims::with_custom_claims(
            AccessClaims {
                client_id: grant.client_id.clone(),
                scope: grant.scope.clone(),
                upstream,
            },
            Duration::from_secs(self.lifetime_secs),
        )
        .with_issuer(&self.issuer)
        .with_subject(&grant.username)
        .with_audience(&grant.resource)
        .with_jwt_id(&self.jti);
        self.key.sign(claims).map_err(OAuthError::server_error)
    }
}

/// Records an access token that was signed and committed (audit event, metric) and builds the
/// response, with `refresh_token` when one was stored.
fn issued(
    state: &AppState,
    jti: &str,
    grant: Grant,
    access_token: String,
    refresh_token: Option<String>,
) -> Issued {
    audit::token_issued(
        grant.grant_type.as_str(),
        &grant.client_id,
        &grant.username,
        &grant.resource,
        &grant.scope,
        jti,
        refresh_token.is_some(),
    );
    state.metrics.token_issued(grant.grant_type.as_str());
    Issued {
        access_token,
        expires_in: state.config.access_token_lifetime.as_secs(),
        scope: grant.scope,
        refresh_token,
    }
}

/// The claims a federated person's provider sent at their latest sign-in that the provider's
/// `copy_claims` names (none for local users).
fn copied_claims(
    conn: &dyn Sql,
    config: &Config,
    subject: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, OAuthError> {
    let Some(provider) = crate::identity::provider_of(config, subject) else {
        return Ok(serde_json::Map::new());
    };
    let who = crate::upstream_store::identity(conn, subject)?;
    // Only what the configuration still names: removing a claim from `copy_claims` takes
    // effect at once, not at the person's next sign-in.
    Ok(who
        .map(|w| w.copied)
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, _)| provider.copy_claims.contains(name))
        .collect())
}

/// A successful token response; never cached.
struct Issued {
    access_token: String,
    expires_in: u64,
    scope: String,
    refresh_token: Option<String>,
}

impl IntoResponse for Issued {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        });
        if let (Some(r), Some(obj)) = (self.refresh_token, body.as_object_mut()) {
            obj.insert("refresh_token".into(), serde_json::Value::String(r));
        }
        let mut response = axum::Json(body).into_response();
        let h = response.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

async fn token(
    State(state): State<AppState>,
    peer: ClientAddress,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Result<Issued, OAuthError> {
    let name = required(&params, "grant_type")?;
    let grant_type = GrantType::parse(name).ok_or_else(|| {
        OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!("grant_type `{name}` is not supported"),
        )
    })?;
    let client_id = state
        .clients()
        .authenticate(&headers, &params, peer.ip())
        .await?;
    if !state
        .clients()
        .registered_for(&client_id, grant_type)
        .await?
    {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!(
                "the client is not registered for the {} grant",
                grant_type.as_str()
            ),
        ));
    }
    match grant_type {
        GrantType::AuthorizationCode => authorization_code(&state, &params, client_id).await,
        GrantType::RefreshToken => refresh_token(&state, &params, client_id).await,
    }
}

async fn authorization_code(
    state: &AppState,
    params: &Params,
    client_id: String,
) -> Result<Issued, OAuthError> {
    let code = required(params, "code")?;
    let redirect_uri = required(params, "redirect_uri")?.to_string();
    let verifier = params
        .single("code_verifier")
        .map_err(OAuthError::invalid_request)?
        .map(str::to_string);
    let requested_resource: Vec<String> = params
        .all("resource")
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !requested_resource.is_empty() {
        let refs: Vec<&str> = requested_resource.iter().map(String::as_str).collect();
        resource::select(&state.config.resources, &refs).map_err(OAuthError::invalid_target)?;
    }
    let code_hash = secrets::token_hash(code);
    let family_id = secrets::random_token()?;
    let refresh = secrets::random_token()?;
    let refresh_hash = secrets::token_hash(&refresh);
    let now = time::now();
    let family_expires = now + state.config.refresh_token_lifetime.as_secs() as i64;
    let authenticated = client_id.clone();
    let config = state.config.clone();
    let signer = Signer::prepare(state).await?;
    let jti = signer.jti.clone();
    let outcome = state
        .store
        .run(move |conn| {
            store::redeem_code(
                conn,
                &code_hash,
                &family_id,
                &refresh_hash,
                now,
                family_expires,
                |g| {
                    if g.client_id != authenticated {
                        return Err(OAuthError::invalid_grant(
                            "the code was issued to another client",
                        ));
                    }
                    if g.redirect_uri != redirect_uri {
                        return Err(OAuthError::invalid_grant(
                            "redirect_uri differs from the authorization request",
                        ));
                    }
                    let Some(verifier) = verifier.as_deref() else {
                        return Err(OAuthError::invalid_grant(
                            "code_verifier is required (PKCE)",
                        ));
                    };
                    pkce::verify(&g.code_challenge, verifier).map_err(OAuthError::invalid_grant)?;
                    if let Some(r) = requested_resource.first()
                        && *r != g.resource
                    {
                        return Err(OAuthError::invalid_target(
                            "resource differs from the one authorized",
                        ));
                    }
                    check_still_configured(&config, &g.username, &g.resource, &g.scope)
                },
                |conn, g| {
                    let grant = Grant {
                        grant_type: GrantType::AuthorizationCode,
                        client_id: g.client_id.clone(),
                        username: g.username.clone(),
                        scope: g.scope.clone(),
                        resource: g.resource.clone(),
                    };
                    let access_token = signer.sign(conn, &grant)?;
                    Ok((grant, access_token))
                },
            )
        })
        .await?;
    match outcome {
        Redemption::Issued {
            refresh_token_issued,
            signed: (grant, access_token),
            ..
        } => Ok(issued(
            state,
            &jti,
            grant,
            access_token,
            refresh_token_issued.then_some(refresh),
        )),
        Redemption::Rejected(e) => Err(e),
        Redemption::Replayed => {
            audit::authorization_code_replayed(&client_id);
            state.metrics.authorization_code_replayed();
            Err(OAuthError::invalid_grant(
                "the authorization code was already used",
            ))
        }
        Redemption::Expired => Err(OAuthError::invalid_grant(
            "the authorization code has expired",
        )),
        Redemption::Unknown => Err(OAuthError::invalid_grant("unknown authorization code")),
    }
}

async fn refresh_token(
    state: &AppState,
    params: &Params,
    client_id: String,
) -> Result<Issued, OAuthError> {
    let presented = required(params, "refresh_token")?;
    let requested_scope = params
        .single("scope")
        .map_err(OAuthError::invalid_request)?
        .map(str::to_string);
    let token_hash = secrets::token_hash(presented);
    let new_refresh = secrets::random_token()?;
    let new_hash = secrets::token_hash(&new_refresh);
    let now = time::now();
    let authenticated = client_id.clone();
    let config = state.config.clone();
    let check_params = params.clone();
    let signer = Signer::prepare(state).await?;
    let jti = signer.jti.clone();
    let outcome = state
        .store
        .run(move |conn| {
            let check = |f: &Family| {
                if f.client_id != authenticated {
                    return Err(OAuthError::invalid_grant(
                        "the refresh token was issued to another client",
                    ));
                }
                check_resource(&config.resources, &check_params, &f.resource)?;
                check_still_configured(&config, &f.username, &f.resource, &f.scope)?;
                narrowed(&config, &f.resource, &f.scope, requested_scope.as_deref())?;
                Ok(())
            };
            let sign = |conn: &dyn Sql, f: &Family| {
                let scopes = narrowed(&config, &f.resource, &f.scope, requested_scope.as_deref())?;
                let grant = Grant {
                    grant_type: GrantType::RefreshToken,
                    client_id: f.client_id.clone(),
                    username: f.username.clone(),
                    scope: resource::join(&scopes),
                    resource: f.resource.clone(),
                };
                let access_token = signer.sign(conn, &grant)?;
                Ok((grant, access_token))
            };
            store::rotate_refresh(conn, &token_hash, &new_hash, now, check, sign)
        })
        .await?;
    match outcome {
        Rotation::Rotated(_, (grant, access_token)) => {
            Ok(issued(state, &jti, grant, access_token, Some(new_refresh)))
        }
        Rotation::Rejected(e) => Err(e),
        Rotation::Reused(family) => {
            audit::refresh_token_reused(&client_id, &family.username, &family.resource);
            state.metrics.refresh_token_reused();
            Err(OAuthError::invalid_grant(
                "the refresh token was already used; the grant is revoked",
            ))
        }
        Rotation::Revoked => Err(OAuthError::invalid_grant(
            "the refresh token has been revoked",
        )),
        Rotation::Expired => Err(OAuthError::invalid_grant("the refresh token has expired")),
        Rotation::Unknown => Err(OAuthError::invalid_grant("unknown refresh token")),
    }
}
