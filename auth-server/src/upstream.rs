//! Sign-in at an upstream OpenID provider: the authorization code flow with PKCE, `state` and
//! `nonce` on the upstream leg, the ID token checked (signature from the provider's JWKS, `iss`,
//! `aud`, `azp`, `exp`, `nonce`, an algorithm allow-list) by the `openidconnect` crate, then the
//! sign-in policy, a login session, and back to the MCP client's authorization request.
//!
//! Every failure ends on a page that says what went wrong in the person's terms and links back
//! to the start; the log gets the provider's id and the failing step.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreErrorResponseType, CoreIdToken,
    CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    SignatureVerificationError, TokenResponse,
};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::identity::{self, UpstreamIdentity};
use crate::idp::{AssertionKey, ClientAuth, IdentityProvider};
use crate::params::Params;
use crate::policy::{self, SignInRefusal};
use crate::session::{self, Cookies};
use crate::state::AppState;
use crate::upstream_store::{self as ustore, Flow};
use crate::{audit, pages, secrets, time};

/// Timeout of every request to a provider (discovery, JWKS, token exchange).
pub const UPSTREAM_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a provider's discovery document and keys are used before they are fetched again.
/// An ID token signed with a key not in the cached set triggers one fetch at once.
pub const DISCOVERY_CACHE: Duration = Duration::from_secs(300);

/// The redirect URI registered at provider `id`. One per provider, so that a response can only
/// come back to the flow of the provider it was sent to (the OAuth mix-up defence).
pub fn callback_url(config: &Config, id: &str) -> String {
    format!("{}/upstream/{id}/callback", config.issuer)
}

pub fn routes(config: &Config) -> Router<AppState> {
    Router::new().route(
        &format!("{}/upstream/{{provider}}/callback", config.issuer_path),
        get(callback),
    )
}

/// The HTTP client for providers and the discovery cache.
pub struct Upstream {
    http: reqwest::Client,
    discovered: Mutex<HashMap<String, (Instant, CoreProviderMetadata)>>,
}

impl Upstream {
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(Upstream {
            // Redirects are not followed: a provider endpoint that redirects is misconfigured,
            // and following one could carry the client secret elsewhere.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(UPSTREAM_HTTP_TIMEOUT)
                .build()?,
            discovered: Mutex::new(HashMap::new()),
        })
    }

    /// The provider's metadata and keys: cached, or discovered from its issuer.
    async fn metadata(
        &self,
        p: &IdentityProvider,
        refresh: bool,
    ) -> Result<CoreProviderMetadata, Failure> {
        if !refresh
            && let Ok(cache) = self.discovered.lock()
            && let Some((at, m)) = cache.get(&p.id)
            && at.elapsed() < DISCOVERY_CACHE
        {
            return Ok(m.clone());
        }
        let issuer = IssuerUrl::new(p.issuer.clone())
            .map_err(|e| Failure::Discovery(format!("issuer: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| Failure::Discovery(error_chain(&e)))?;
        if let Ok(mut cache) = self.discovered.lock() {
            cache.insert(p.id.clone(), (Instant::now(), metadata.clone()));
        }
        Ok(metadata)
    }

    /// Discovers every provider once, so that a misconfigured one is reported at startup (the
    /// server starts anyway: the provider may come up later).
    pub async fn check_all(&self, config: &Config) {
        for p in &config.identity_providers {
            match self.metadata(p, true).await {
                Ok(_) => {
                    tracing::info!(provider = %p.id, issuer = %p.issuer, "identity provider discovered")
                }
                Err(e) => e.log(p),
            }
        }
    }
}

/// The display text of an error with its sources (which say what actually failed).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Why an upstream sign-in did not finish. The log gets the detail; the person a page.
#[derive(Debug)]
pub enum Failure {
    /// Discovery or key fetch failed: the provider is unreachable or misconfigured.
    Discovery(String),
    /// The callback names no flow this browser started (unknown, used, expired or another
    /// browser's `state`).
    UnknownFlow(&'static str),
    /// The provider answered the authorization request with an error.
    Denied { error: String },
    /// The code exchange failed.
    TokenExchange { detail: String, credentials: bool },
    /// The ID token did not pass the checks.
    IdToken(String),
    /// The sign-in policy refused the person.
    Refused(SignInRefusal),
    /// Storage or randomness failed.
    Internal(String),
}

impl Failure {
    fn step(&self) -> &'static str {
        match self {
            Failure::Discovery(_) => "discovery",
            Failure::UnknownFlow(_) => "callback state",
            Failure::Denied { .. } => "authorization",
            Failure::TokenExchange { .. } => "token exchange",
            Failure::IdToken(_) => "id token",
            Failure::Refused(_) => "sign-in policy",
            Failure::Internal(_) => "internal",
        }
    }

    fn log(&self, p: &IdentityProvider) {
        let detail = match self {
            Failure::Discovery(d)
            | Failure::IdToken(d)
            | Failure::Internal(d)
            | Failure::TokenExchange { detail: d, .. } => d.clone(),
            Failure::UnknownFlow(why) => (*why).to_string(),
            Failure::Denied { error } => format!("the provider answered error={error}"),
            Failure::Refused(r) => r.as_str().to_string(),
        };
        match self {
            Failure::Discovery(_) | Failure::TokenExchange { .. } | Failure::Internal(_) => {
                tracing::error!(provider = %p.id, step = self.step(), error = %detail, "upstream sign-in failed")
            }
            _ => {
                tracing::warn!(provider = %p.id, step = self.step(), error = %detail, "upstream sign-in failed")
            }
        }
    }

    /// Status, title and message of the page; never the provider's own words.
    fn page(&self, p: &IdentityProvider) -> (StatusCode, &'static str, String) {
        let name = &p.display_name;
        match self {
            Failure::Discovery(_) => (
                StatusCode::BAD_GATEWAY,
                "Sign-in unavailable",
                format!("{name} cannot be reached right now, so you cannot sign in with it. Try again in a few minutes; if it keeps happening, tell the operator of this server (identity provider `{}`, step: discovery).", p.id),
            ),
            Failure::UnknownFlow(_) => (
                StatusCode::BAD_REQUEST,
                "Sign-in not recognised",
                "This sign-in was not started in this browser, has already been used, or took too long. Start again from the application.".into(),
            ),
            Failure::Denied { error } if error == "access_denied" => (
                StatusCode::FORBIDDEN,
                "Sign-in cancelled",
                format!("{name} did not sign you in: the sign-in was cancelled or refused there."),
            ),
            Failure::Denied { .. } => (
                StatusCode::BAD_GATEWAY,
                "Sign-in failed",
                format!("{name} could not sign you in. Try again; if it keeps happening, tell the operator of this server (identity provider `{}`, step: authorization).", p.id),
            ),
            Failure::TokenExchange { credentials: true, .. } => (
                StatusCode::BAD_GATEWAY,
                "Sign-in failed",
                format!("{name} did not accept this server's credentials. The operator must check the client ID and secret of identity provider `{}` (step: token exchange).", p.id),
            ),
            Failure::TokenExchange { .. } => (
                StatusCode::BAD_GATEWAY,
                "Sign-in failed",
                format!("{name} could not complete the sign-in. Try again; if it keeps happening, tell the operator of this server (identity provider `{}`, step: token exchange).", p.id),
            ),
            Failure::IdToken(_) => (
                StatusCode::BAD_GATEWAY,
                "Sign-in failed",
                format!("The answer from {name} did not pass this server's checks, so you are not signed in. Try again; if it keeps happening, tell the operator of this server (identity provider `{}`, step: ID token).", p.id),
            ),
            Failure::Refused(r) => (StatusCode::FORBIDDEN, "Access not allowed", r.message()),
            Failure::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in failed",
                "Something went wrong on this server. Try again.".into(),
            ),
        }
    }

    /// Logs the failure and renders its page, linking to `back` (the authorization request
    /// to start again from) when known.
    pub fn respond(&self, p: &IdentityProvider, back: Option<&str>) -> Response {
        self.log(p);
        let (status, title, message) = self.page(p);
        pages::respond(status, pages::failure(title, &message, back), &[])
    }
}

/// RFC 7523's client assertion type.
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Lifetime of a client assertion: it is sent at once, and a short one limits replay.
pub const CLIENT_ASSERTION_LIFETIME_SECS: u64 = 60;

/// The client secret, for providers that authenticate us with one.
fn secret_of(p: &IdentityProvider) -> Option<ClientSecret> {
    match &p.client_auth {
        ClientAuth::Secret(s) => Some(ClientSecret::new(s.clone())),
        ClientAuth::PrivateKeyJwt(_) => None,
    }
}

/// A `private_key_jwt` client assertion: `iss` and `sub` our client ID, `aud` the provider's
/// token endpoint, a fresh `jti`, valid for [`CLIENT_ASSERTION_LIFETIME_SECS`].
pub fn client_assertion(
    key: &AssertionKey,
    client_id: &str,
    audience: &str,
) -> Result<String, String> {
    use jwt_simple::prelude::{
        Claims, Duration as JwtDuration, ECDSAP256KeyPairLike, ES256KeyPair, RS256KeyPair,
        RSAKeyPairLike,
    };
    let jti = secrets::random_token().map_err(|e| e.to_string())?;
    let claims = Claims::create(JwtDuration::from_secs(CLIENT_ASSERTION_LIFETIME_SECS))
        .with_issuer(client_id)
        .with_subject(client_id)
        .with_audience(audience)
        .with_jwt_id(jti);
    let signed = match key.alg {
        "ES256" => {
            let mut k = ES256KeyPair::from_pem(&key.pem).map_err(|e| e.to_string())?;
            if let Some(kid) = &key.kid {
                k = k.with_key_id(kid);
            }
            k.sign(claims)
        }
        _ => {
            let mut k = RS256KeyPair::from_pem(&key.pem).map_err(|e| e.to_string())?;
            if let Some(kid) = &key.kid {
                k = k.with_key_id(kid);
            }
            k.sign(claims)
        }
    };
    signed.map_err(|e| format!("signing the client assertion: {e}"))
}

fn authorize_url(config: &Config, request: &str) -> String {
    // A sign-in started on the connected-apps page carries no authorization request.
    if request.is_empty() {
        return crate::account::path(config);
    }
    format!("{}/authorize?{request}", config.issuer_path)
}

/// The configured algorithm names in the crate's form.
fn allowed_algs(p: &IdentityProvider) -> Vec<CoreJwsSigningAlgorithm> {
    p.id_token_signing_algs
        .iter()
        .filter_map(|a| serde_json::from_value(Value::String(a.clone())).ok())
        .collect()
}

/// Why an ID token was refused, and whether fetching the provider's keys again may help.
#[derive(Debug)]
pub struct IdTokenError {
    pub reason: String,
    pub unknown_key: bool,
}

/// Checks an ID token against the provider's keys: signature with an allowed algorithm, `iss`
/// equal to the configured issuer, `aud` containing our client ID (and no other untrusted
/// audience), `azp` (when present, or when there are several audiences) equal to our client ID,
/// `exp` in the future, `nonce` equal to the flow's. Returns the verified claims.
pub fn verify_id_token(
    p: &IdentityProvider,
    keys: &CoreJsonWebKeySet,
    id_token: &str,
    nonce: &str,
) -> Result<Map<String, Value>, IdTokenError> {
    let fail = |reason: String| IdTokenError {
        reason,
        unknown_key: false,
    };
    let issuer = IssuerUrl::new(p.issuer.clone()).map_err(|e| fail(e.to_string()))?;
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(p.client_id.clone()),
        issuer,
        keys.clone(),
    )
    .set_allowed_algs(allowed_algs(p));
    let token = CoreIdToken::from_str(id_token).map_err(|e| fail(format!("not a JWT: {e}")))?;
    token
        .claims(&verifier, &Nonce::new(nonce.to_string()))
        .map_err(|e| IdTokenError {
            unknown_key: matches!(
                e,
                ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey
                )
            ),
            reason: error_chain(&e),
        })?;
    // Verified above; read every claim (groups and the claims to copy are not standard ones).
    let payload = id_token
        .split('.')
        .nth(1)
        .ok_or_else(|| fail("no payload".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| fail(format!("payload: {e}")))?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("payload: {e}")))?;
    // The crate requires `azp` only with several audiences; a token issued to another party
    // and naming us as its audience is refused here too (OpenID Connect Core 3.1.3.7, step 5).
    if let Some(azp) = claims.get("azp")
        && azp.as_str() != Some(p.client_id.as_str())
    {
        return Err(fail(format!(
            "the ID token's azp {azp} is not our client ID"
        )));
    }
    Ok(claims)
}

/// Sends the browser to provider `p` to sign in, remembering the MCP client's request.
pub async fn start(
    state: &AppState,
    p: &IdentityProvider,
    request: &Params,
    csrf: &str,
    cookies: &[String],
) -> Response {
    let back = authorize_url(&state.config, &request.to_query());
    match begin(state, p, request, csrf).await {
        Ok(location) => pages::see_other(&location, cookies),
        Err(e) => {
            let mut response = e.respond(p, Some(&back));
            for c in cookies {
                if let Ok(v) = axum::http::HeaderValue::from_str(c) {
                    response
                        .headers_mut()
                        .append(axum::http::header::SET_COOKIE, v);
                }
            }
            response
        }
    }
}

async fn begin(
    state: &AppState,
    p: &IdentityProvider,
    request: &Params,
    csrf: &str,
) -> Result<String, Failure> {
    let metadata = state.upstream.metadata(p, false).await?;
    let redirect = RedirectUrl::new(callback_url(&state.config, &p.id))
        .map_err(|e| Failure::Internal(e.to_string()))?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(p.client_id.clone()),
        secret_of(p),
    )
    .set_redirect_uri(redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut auth = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in p.scopes.iter().filter(|s| *s != "openid") {
        auth = auth.add_scope(Scope::new(s.clone()));
    }
    for (name, value) in &p.authorization_params {
        auth = auth.add_extra_param(name.as_str(), value.as_str());
    }
    let (url, upstream_state, nonce) = auth.url();
    let now = time::now();
    let flow = Flow {
        provider_id: p.id.clone(),
        browser_hash: secrets::token_hash(csrf),
        pkce_verifier: verifier.secret().clone(),
        nonce: nonce.secret().clone(),
        request: request.to_query(),
        expires_at: now + state.config.upstream_login_lifetime.as_secs() as i64,
    };
    let state_hash = secrets::token_hash(upstream_state.secret());
    state
        .store
        .run(move |conn| ustore::insert_flow(conn, &state_hash, &flow, now))
        .await
        .map_err(|e| Failure::Internal(e.to_string()))?;
    Ok(url.to_string())
}

/// `GET {issuer}/upstream/{provider}/callback`: the provider's answer.
async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    cookies: Cookies,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(p) = state.config.identity_provider(&provider).cloned() else {
        return pages::respond(
            StatusCode::NOT_FOUND,
            pages::failure(
                "Sign-in not recognised",
                "This server has no such identity provider. Start again from the application.",
                None,
            ),
            &[],
        );
    };
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let flow = match take_flow(&state, &p, &params, &cookies).await {
        Ok(f) => f,
        Err(e) => return e.respond(&p, None),
    };
    let back = authorize_url(&state.config, &flow.request);
    match finish(&state, &p, &params, &flow).await {
        Ok(identity) => signed_in(&state, &identity, &back).await,
        Err(e) => e.respond(&p, Some(&back)),
    }
}

/// The flow named by the callback's `state`, if this browser started it for this provider and
/// it has not expired. It is consumed either way.
async fn take_flow(
    state: &AppState,
    p: &IdentityProvider,
    params: &Params,
    cookies: &Cookies,
) -> Result<Flow, Failure> {
    let Some(upstream_state) = params.single("state").ok().flatten() else {
        return Err(Failure::UnknownFlow("the callback has no state"));
    };
    let hash = secrets::token_hash(upstream_state);
    let flow = state
        .store
        .run(move |conn| ustore::take_flow(conn, &hash))
        .await
        .map_err(|e| Failure::Internal(e.to_string()))?
        .ok_or(Failure::UnknownFlow("no pending sign-in has this state"))?;
    if flow.provider_id != p.id {
        return Err(Failure::UnknownFlow(
            "the state belongs to a sign-in at another provider",
        ));
    }
    let same_browser = session::browser_tokens(&state.config, cookies)
        .iter()
        .any(|token| secrets::constant_time_eq(&secrets::token_hash(token), &flow.browser_hash));
    if !same_browser {
        return Err(Failure::UnknownFlow(
            "the sign-in was started in another browser",
        ));
    }
    if flow.expires_at <= time::now() {
        return Err(Failure::UnknownFlow("the sign-in took too long"));
    }
    Ok(flow)
}

/// The rest of the callback: the code exchanged, the ID token checked, the policy applied.
async fn finish(
    state: &AppState,
    p: &IdentityProvider,
    params: &Params,
    flow: &Flow,
) -> Result<UpstreamIdentity, Failure> {
    let get = |name| params.single(name).ok().flatten();
    if let Some(error) = get("error") {
        // Only a known code is kept; whatever else the provider sent stays out of the log.
        let error = if error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            error.to_string()
        } else {
            "(unreadable)".to_string()
        };
        return Err(Failure::Denied { error });
    }
    // RFC 9207: a provider that names itself must name the one this flow went to.
    if let Some(iss) = get("iss")
        && iss != p.issuer
    {
        return Err(Failure::IdToken(format!(
            "the callback's iss `{iss}` is not the provider's issuer"
        )));
    }
    let code = get("code").ok_or_else(|| Failure::Denied {
        error: "(no code)".into(),
    })?;
    let metadata = state.upstream.metadata(p, false).await?;
    let post = metadata
        .token_endpoint_auth_methods_supported()
        .is_some_and(|m| {
            !m.contains(&CoreClientAuthMethod::ClientSecretBasic)
                && m.contains(&CoreClientAuthMethod::ClientSecretPost)
        });
    let redirect = RedirectUrl::new(callback_url(&state.config, &p.id))
        .map_err(|e| Failure::Internal(e.to_string()))?;
    let assertion = match &p.client_auth {
        ClientAuth::Secret(_) => None,
        ClientAuth::PrivateKeyJwt(key) => {
            let audience = metadata
                .token_endpoint()
                .map(|t| t.as_str().to_string())
                .ok_or_else(|| Failure::Discovery("no token endpoint".into()))?;
            Some(client_assertion(key, &p.client_id, &audience).map_err(Failure::Internal)?)
        }
    };
    let client = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(p.client_id.clone()),
        secret_of(p),
    )
    .set_redirect_uri(redirect)
    // With an assertion, client_id goes in the body next to it (RFC 7523 section 2.2).
    .set_auth_type(if post || assertion.is_some() {
        AuthType::RequestBody
    } else {
        AuthType::BasicAuth
    });
    let mut exchange = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .map_err(|e| Failure::Discovery(format!("no token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()));
    if let Some(assertion) = assertion {
        exchange = exchange
            .add_extra_param("client_assertion_type", CLIENT_ASSERTION_TYPE)
            .add_extra_param("client_assertion", assertion);
    }
    let response = exchange
        .request_async(&state.upstream.http)
        .await
        .map_err(|e| {
            let credentials = matches!(
                &e,
                RequestTokenError::ServerResponse(r)
                    if *r.error() == CoreErrorResponseType::InvalidClient
                        || *r.error() == CoreErrorResponseType::UnauthorizedClient
            );
            let detail = match &e {
                RequestTokenError::ServerResponse(r) => {
                    format!("the token endpoint answered {}", r.error())
                }
                other => error_chain(other),
            };
            Failure::TokenExchange {
                detail,
                credentials,
            }
        })?;
    let id_token = response
        .id_token()
        .ok_or_else(|| Failure::IdToken("the token response has no id_token".into()))?
        .to_string();
    let claims = match verify_id_token(p, metadata.jwks(), &id_token, &flow.nonce) {
        Ok(c) => c,
        // The provider may have rotated its keys since they were fetched.
        Err(e) if e.unknown_key => {
            let fresh = state.upstream.metadata(p, true).await?;
            verify_id_token(p, fresh.jwks(), &id_token, &flow.nonce)
                .map_err(|e| Failure::IdToken(e.reason))?
        }
        Err(e) => return Err(Failure::IdToken(e.reason)),
    };
    let who = identity::from_claims(p, &claims).map_err(Failure::IdToken)?;
    policy::may_sign_in(p, &who).map_err(Failure::Refused)?;
    Ok(who)
}

/// Stores the person's claims, starts the login session and resumes the authorization request.
async fn signed_in(state: &AppState, who: &UpstreamIdentity, back: &str) -> Response {
    let stored = who.clone();
    let now = time::now();
    if let Err(e) = state
        .store
        .run(move |conn| ustore::save_identity(conn, &stored, now))
        .await
    {
        tracing::error!(error = %e, "storing a federated identity failed");
        return internal_page(back);
    }
    let subject = who.subject();
    let cookie = match session::start(state, &subject).await {
        Ok(c) => c,
        Err(_) => return internal_page(back),
    };
    audit::upstream_sign_in(&who.provider_id, &subject);
    state.metrics.sign_in("success");
    pages::see_other(back, &[cookie])
}

/// The page of an internal failure after the provider's steps succeeded.
fn internal_page(back: &str) -> Response {
    pages::respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::failure(
            "Sign-in failed",
            "Something went wrong on this server. Try again.",
            Some(back),
        ),
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::*;

    const ISSUER: &str = "https://idp.example";
    const CLIENT: &str = "mcp-as";

    fn provider() -> IdentityProvider {
        IdentityProvider {
            id: "corp".into(),
            display_name: "Corp".into(),
            issuer: ISSUER.into(),
            client_id: CLIENT.into(),
            client_auth: crate::idp::ClientAuth::Secret("secret".into()),
            scopes: vec!["openid".into()],
            authorization_params: Default::default(),
            id_token_signing_algs: vec!["RS256".into(), "ES256".into()],
            copy_claims: vec![],
            groups_claim: "groups".into(),
            allowed_email_domains: vec![],
            require_verified_email: true,
            required_groups: vec![],
            scope_rules: vec![],
        }
    }

    /// ES256: generating a key is fast even unoptimized (an RSA key takes seconds).
    struct Signer {
        key: ES256KeyPair,
    }

    impl Signer {
        fn new(kid: &str) -> Self {
            Signer {
                key: ES256KeyPair::generate().with_key_id(kid),
            }
        }

        fn jwks(&self) -> CoreJsonWebKeySet {
            let kid = self.key.key_id().clone().unwrap();
            let jwk: Value =
                serde_json::from_str(&self.key.public_key().with_key_id(&kid).to_jwk()).unwrap();
            serde_json::from_value(serde_json::json!({ "keys": [jwk] })).unwrap()
        }

        fn sign(&self, claims: Value) -> String {
            let custom: Map<String, Value> = claims.as_object().unwrap().clone();
            // jwt-simple would add its own registered claims; the test sets every claim itself.
            let mut c =
                Claims::with_custom_claims(custom, jwt_simple::prelude::Duration::from_secs(0));
            c.issued_at = None;
            c.expires_at = None;
            c.invalid_before = None;
            self.key.sign(c).unwrap()
        }
    }

    fn good_claims() -> Value {
        let now = time::now();
        serde_json::json!({
            "iss": ISSUER, "sub": "u1", "aud": CLIENT, "iat": now, "exp": now + 300,
            "nonce": "n-1", "email": "demo@example.com", "groups": ["mcp-users"]
        })
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn refusal(signer: &Signer, keys: &CoreJsonWebKeySet, claims: Value) -> String {
        let token = signer.sign(claims);
        verify_id_token(&provider(), keys, &token, "n-1")
            .unwrap_err()
            .reason
    }

    #[test]
    fn a_good_id_token_yields_all_its_claims() {
        let s = Signer::new("k1");
        let claims =
            verify_id_token(&provider(), &s.jwks(), &s.sign(good_claims()), "n-1").unwrap();
        assert_eq!(claims["sub"], "u1");
        assert_eq!(claims["groups"], serde_json::json!(["mcp-users"]));
    }

    #[test]
    fn a_wrong_nonce_is_refused() {
        let s = Signer::new("k1");
        let r = refusal(&s, &s.jwks(), with(good_claims(), "nonce", "other".into()));
        assert!(r.contains("nonce"), "{r}");
    }

    #[test]
    fn a_wrong_audience_is_refused() {
        let s = Signer::new("k1");
        let r = refusal(
            &s,
            &s.jwks(),
            with(good_claims(), "aud", "someone-else".into()),
        );
        assert!(r.to_lowercase().contains("audience"), "{r}");
        // Our client ID among other, untrusted audiences is refused too.
        let r = refusal(
            &s,
            &s.jwks(),
            with(good_claims(), "aud", serde_json::json!([CLIENT, "other"])),
        );
        assert!(r.to_lowercase().contains("audience"), "{r}");
    }

    #[test]
    fn another_authorized_party_is_refused() {
        let s = Signer::new("k1");
        let r = refusal(
            &s,
            &s.jwks(),
            with(good_claims(), "azp", "other-client".into()),
        );
        assert!(r.contains("azp") || r.contains("other-client"), "{r}");
    }

    #[test]
    fn an_expired_id_token_is_refused() {
        let s = Signer::new("k1");
        let r = refusal(
            &s,
            &s.jwks(),
            with(good_claims(), "exp", (time::now() - 60).into()),
        );
        assert!(r.to_lowercase().contains("expired"), "{r}");
    }

    #[test]
    fn another_issuer_is_refused() {
        let s = Signer::new("k1");
        let r = refusal(
            &s,
            &s.jwks(),
            with(good_claims(), "iss", "https://evil.example".into()),
        );
        assert!(r.to_lowercase().contains("issuer"), "{r}");
    }

    #[test]
    fn a_bad_signature_is_refused_and_an_unknown_key_says_so() {
        let good = Signer::new("k1");
        let forger = Signer::new("k1");
        let r = refusal(&forger, &good.jwks(), good_claims());
        assert!(r.to_lowercase().contains("signature"), "{r}");
        let other_kid = Signer::new("k2");
        let token = other_kid.sign(good_claims());
        let e = verify_id_token(&provider(), &good.jwks(), &token, "n-1").unwrap_err();
        assert!(e.unknown_key, "{}", e.reason);
    }

    #[test]
    fn a_client_assertion_names_us_and_the_token_endpoint() {
        let key = ES256KeyPair::generate();
        let pem = key.to_pem().unwrap();
        let assertion = client_assertion(
            &AssertionKey {
                pem,
                alg: "ES256",
                kid: Some("k-1".into()),
            },
            CLIENT,
            "https://idp.example/token",
        )
        .unwrap();
        let options = VerificationOptions {
            allowed_issuers: Some(HashSet::from([CLIENT.to_string()])),
            allowed_audiences: Some(HashSet::from(["https://idp.example/token".to_string()])),
            ..Default::default()
        };
        let claims = key
            .public_key()
            .verify_token::<NoCustomClaims>(&assertion, Some(options))
            .unwrap();
        assert_eq!(claims.subject.as_deref(), Some(CLIENT));
        assert!(claims.jwt_id.is_some());
        let lifetime = claims.expires_at.unwrap().as_secs() - claims.issued_at.unwrap().as_secs();
        assert_eq!(lifetime, CLIENT_ASSERTION_LIFETIME_SECS);
        assert_eq!(
            Token::decode_metadata(&assertion).unwrap().key_id(),
            Some("k-1")
        );
    }

    #[test]
    fn an_algorithm_outside_the_allow_list_is_refused() {
        let s = Signer::new("k1");
        let mut p = provider();
        p.id_token_signing_algs = vec!["RS256".into()];
        let e = verify_id_token(&p, &s.jwks(), &s.sign(good_claims()), "n-1").unwrap_err();
        assert!(e.reason.to_lowercase().contains("alg"), "{}", e.reason);
    }
}
