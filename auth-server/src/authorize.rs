//! The authorization endpoint: validation (never redirecting to an unverified URI), login and
//! consent pages, remembered consent, code issuance. Every redirect carries `iss` and `state`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};

use crate::app::AppState;
use crate::clients::{self, Client};
use crate::config::Resource;
use crate::params::Params;
use crate::{pages, pkce, redirect_uri, resource, secrets, store, time};

pub const SESSION_COOKIE: &str = "mcp_as_session";
pub const CSRF_COOKIE: &str = "mcp_as_csrf";

/// The authorization request parameters carried through the login and consent forms.
const REQUEST_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
];

/// A request that passed every check.
struct Validated {
    client: Client,
    request: Checked,
    /// The authorization parameters, carried through the login and consent forms.
    params: Params,
}

fn error_page(status: StatusCode, message: &str) -> Response {
    pages::respond(status, pages::error("Authorization failed", message), &[])
}

fn see_other(location: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    response
}

/// Redirect to the client with `extra` plus `state` (when sent) and `iss` (RFC 9207).
fn redirect_to_client(
    state: &AppState,
    uri: &str,
    client_state: Option<&str>,
    extra: &[(&str, &str)],
) -> Response {
    let mut params: Vec<(&str, &str)> = extra.to_vec();
    if let Some(s) = client_state {
        params.push(("state", s));
    }
    params.push(("iss", &state.config.issuer));
    see_other(&redirect_uri::with_params(uri, &params), &[])
}

fn error_redirect(
    state: &AppState,
    uri: &str,
    client_state: Option<&str>,
    code: &str,
    description: &str,
) -> Response {
    redirect_to_client(
        state,
        uri,
        client_state,
        &[("error", code), ("error_description", description)],
    )
}

/// Why an authorization request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The client or redirect URI cannot be trusted: show an error page, never redirect.
    Page(String),
    /// The redirect URI is verified: send `error` back to it (with `state` and `iss`).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

/// The parts of an accepted request (the client is resolved separately).
#[derive(Debug)]
pub struct Checked {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: Resource,
    pub scopes: Vec<String>,
}

/// Step 1: the `client_id` and `redirect_uri` parameters, needed before anything is trusted.
pub fn client_and_redirect(params: &Params) -> Result<(&str, &str), Rejection> {
    let page = |m: String| Rejection::Page(m);
    let client_id = params
        .single("client_id")
        .map_err(page)?
        .ok_or_else(|| page("The request has no client_id.".into()))?;
    let redirect = params
        .single("redirect_uri")
        .map_err(page)?
        .ok_or_else(|| page("The request has no redirect_uri.".into()))?;
    Ok((client_id, redirect))
}

/// Step 2: decides a request for a resolved client. Until the redirect URI is verified,
/// rejections are pages; after that, they go back to the client.
pub fn check_request(
    params: &Params,
    registered_redirect_uris: &[String],
    resources: &[Resource],
) -> Result<Checked, Rejection> {
    let (_, requested_redirect) = client_and_redirect(params)?;
    if !redirect_uri::matches_registered(requested_redirect, registered_redirect_uris) {
        return Err(Rejection::Page(
            "The redirect_uri is not registered for this client; not redirecting.".into(),
        ));
    }
    let redirect = requested_redirect.to_string();
    // From here on the redirect URI is trusted. `state` is echoed only when it is unambiguous.
    let client_state = params.single("state").ok().flatten().map(str::to_string);
    let fail = |error: &'static str, description: String| Rejection::Redirect {
        redirect_uri: redirect.clone(),
        state: client_state.clone(),
        error,
        description,
    };
    for name in REQUEST_PARAMS.iter().filter(|n| **n != "resource") {
        params
            .single(name)
            .map_err(|e| fail("invalid_request", e))?;
    }
    match params.single("response_type").ok().flatten() {
        Some("code") => {}
        None => return Err(fail("invalid_request", "response_type is required".into())),
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported".into(),
            ));
        }
    }
    let challenge = params.single("code_challenge").ok().flatten();
    let method = params.single("code_challenge_method").ok().flatten();
    pkce::validate_challenge(challenge, method).map_err(|e| fail("invalid_request", e))?;
    let resource = resource::select(resources, &params.all("resource"))
        .map_err(|e| fail("invalid_target", e))?
        .clone();
    let scopes = resource::grant(&resource, params.single("scope").ok().flatten())
        .map_err(|e| fail("invalid_scope", e))?;
    Ok(Checked {
        redirect_uri: redirect.clone(),
        state: client_state.clone(),
        code_challenge: challenge.unwrap_or_default().to_string(),
        resource,
        scopes,
    })
}

fn reject(state: &AppState, rejection: Rejection) -> Response {
    match rejection {
        Rejection::Page(message) => error_page(StatusCode::BAD_REQUEST, &message),
        Rejection::Redirect {
            redirect_uri,
            state: client_state,
            error,
            description,
        } => error_redirect(
            state,
            &redirect_uri,
            client_state.as_deref(),
            error,
            &description,
        ),
    }
}

/// Resolves the client and checks the request; a refusal is already rendered.
async fn validate(state: &AppState, params: &Params) -> Result<Validated, Response> {
    let (client_id, _) = client_and_redirect(params).map_err(|r| reject(state, r))?;
    let client = clients::resolve(state, client_id).await.map_err(|e| {
        error_page(
            StatusCode::BAD_REQUEST,
            &format!("The client could not be verified: {e}"),
        )
    })?;
    let checked = check_request(params, &client.redirect_uris, &state.config.resources)
        .map_err(|r| reject(state, r))?;
    Ok(Validated {
        client,
        request: checked,
        params: params.only(REQUEST_PARAMS),
    })
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
}

fn cookie_header(state: &AppState, name: &str, value: &str, max_age_secs: i64) -> String {
    let path = if state.config.issuer_path.is_empty() {
        "/".to_string()
    } else {
        state.config.issuer_path.clone()
    };
    Cookie::build((name.to_string(), value.to_string()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.issuer_is_https)
        .path(path)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build()
        .to_string()
}

async fn session_user(state: &AppState, headers: &HeaderMap) -> Result<Option<String>, Response> {
    let Some(session) = cookie_value(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = secrets::token_hash(&session);
    let user = state
        .store
        .run(move |conn| store::session_user(conn, &hash, time::now()))
        .await
        .map_err(internal)?;
    // A session outlives nothing: a user removed from the configuration is signed out.
    Ok(user.filter(|u| state.config.users.contains_key(u)))
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "authorization endpoint failure");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal error; please try again.",
    )
}

/// The CSRF token of this browser: the cookie's value, or a fresh one to set.
fn csrf_token(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, Vec<String>), getrandom::Error> {
    match cookie_value(headers, CSRF_COOKIE) {
        Some(v) => Ok((v, Vec::new())),
        None => {
            let v = secrets::random_token()?;
            let c = cookie_header(
                state,
                CSRF_COOKIE,
                &v,
                state.config.login_session_lifetime.as_secs() as i64,
            );
            Ok((v, vec![c]))
        }
    }
}

fn view<'a>(v: &'a Validated, action: &'a str) -> pages::RequestView<'a> {
    pages::RequestView {
        client_id: &v.client.client_id,
        client_name: v.client.client_name.as_deref(),
        verified: v.client.verified(),
        redirect_host: redirect_uri::display_host(&v.request.redirect_uri),
        scopes: &v.request.scopes,
        resource: &v.request.resource.url,
        action,
    }
}

fn consent_key(v: &Validated, username: &str) -> store::ConsentKey {
    store::ConsentKey {
        username: username.to_string(),
        client_id: v.client.client_id.clone(),
        redirect_uri: v.request.redirect_uri.clone(),
        scope: resource::join(&v.request.scopes),
        resource: v.request.resource.url.clone(),
    }
}

/// Stores a fresh code (and, when asked, the consent) and redirects to the client with it.
async fn issue_code(state: &AppState, v: &Validated, username: &str, remember: bool) -> Response {
    let code = match secrets::random_token() {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let grant = store::CodeGrant {
        client_id: v.client.client_id.clone(),
        redirect_uri: v.request.redirect_uri.clone(),
        code_challenge: v.request.code_challenge.clone(),
        scope: resource::join(&v.request.scopes),
        resource: v.request.resource.url.clone(),
        username: username.to_string(),
        allows_refresh: v.client.allows_refresh,
    };
    let hash = secrets::token_hash(&code);
    let now = time::now();
    let expires_at = now + state.config.authorization_code_lifetime.as_secs() as i64;
    let consent = remember.then(|| consent_key(v, username));
    let stored = state
        .store
        .run(move |conn| {
            let tx = conn.transaction()?;
            if let Some(k) = consent {
                store::insert_consent(&tx, &k, now)?;
            }
            store::insert_code(&tx, &hash, &grant, expires_at)?;
            tx.commit()?;
            Ok(())
        })
        .await;
    if let Err(e) = stored {
        return internal(e);
    }
    redirect_to_client(
        state,
        &v.request.redirect_uri,
        v.request.state.as_deref(),
        &[("code", &code)],
    )
}

fn action_path(state: &AppState) -> String {
    format!("{}/authorize", state.config.issuer_path)
}

pub async fn get_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let v = match validate(&state, &params).await {
        Ok(v) => v,
        Err(response) => return response,
    };
    let (csrf, cookies) = match csrf_token(&state, &headers) {
        Ok(x) => x,
        Err(e) => return internal(e),
    };
    let action = action_path(&state);
    let user = match session_user(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Some(username) = user else {
        return pages::respond(
            StatusCode::OK,
            pages::login(&view(&v, &action), &v.params, &csrf, None),
            &cookies,
        );
    };
    let key = consent_key(&v, &username);
    match state
        .store
        .run(move |conn| store::has_consent(conn, &key))
        .await
    {
        Ok(true) => issue_code(&state, &v, &username, false).await,
        Ok(false) => pages::respond(
            StatusCode::OK,
            pages::consent(&view(&v, &action), &v.params, &csrf, &username),
            &cookies,
        ),
        Err(e) => internal(e),
    }
}

/// A password check that takes about as long for unknown users as for known ones.
async fn check_password(state: &AppState, username: &str, password: &str) -> bool {
    let (hash, known) = match state.config.users.get(username) {
        Some(h) => (h.clone(), true),
        None => (state.dummy_password_hash.to_string(), false),
    };
    let ok = state
        .password_checker
        .verify(hash, password.to_string())
        .await;
    ok && known
}

pub async fn post_handler(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body);
    // CSRF first: the form must carry the token bound to this browser's cookie.
    let cookie_csrf = cookie_value(&headers, CSRF_COOKIE);
    let form_csrf = form.single("csrf_token").ok().flatten();
    match (cookie_csrf.as_deref(), form_csrf) {
        (Some(c), Some(f)) if secrets::constant_time_eq(c, f) => {}
        _ => {
            return error_page(
                StatusCode::FORBIDDEN,
                "The form is missing a valid CSRF token. Go back to the application and start again.",
            );
        }
    }
    let csrf = form_csrf.unwrap_or_default().to_string();
    let v = match validate(&state, &form).await {
        Ok(v) => v,
        Err(response) => return response,
    };
    let action = action_path(&state);
    match form.single("action").ok().flatten() {
        Some("login") => {
            let username = form
                .single("username")
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_string();
            let password = form
                .single("password")
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_string();
            // Brute-force bound: once an address has used up its failures for the minute,
            // no password is checked at all, right or wrong.
            if state
                .login_limiter
                .exhausted(peer.ip(), std::time::Instant::now())
            {
                tracing::warn!(address = %peer.ip(), "login refused: too many failed attempts");
                let mut response = pages::respond(
                    StatusCode::TOO_MANY_REQUESTS,
                    pages::login(
                        &view(&v, &action),
                        &v.params,
                        &csrf,
                        Some(
                            "Too many failed sign-in attempts from your address. Wait a minute and try again.",
                        ),
                    ),
                    &[],
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
                return response;
            }
            if !check_password(&state, &username, &password).await {
                state
                    .login_limiter
                    .allow(peer.ip(), std::time::Instant::now());
                tracing::info!(address = %peer.ip(), "failed login attempt");
                return pages::respond(
                    StatusCode::UNAUTHORIZED,
                    pages::login(
                        &view(&v, &action),
                        &v.params,
                        &csrf,
                        Some("Wrong username or password."),
                    ),
                    &[],
                );
            }
            let session = match secrets::random_token() {
                Ok(s) => s,
                Err(e) => return internal(e),
            };
            let lifetime = state.config.login_session_lifetime.as_secs() as i64;
            let hash = secrets::token_hash(&session);
            let user = username.clone();
            let expires_at = time::now() + lifetime;
            if let Err(e) = state
                .store
                .run(move |conn| store::insert_session(conn, &hash, &user, expires_at))
                .await
            {
                return internal(e);
            }
            let cookie = cookie_header(&state, SESSION_COOKIE, &session, lifetime);
            see_other(&format!("{action}?{}", v.params.to_query()), &[cookie])
        }
        Some(decision @ ("approve" | "deny")) => {
            let username = match session_user(&state, &headers).await {
                Ok(Some(u)) => u,
                Ok(None) => {
                    return pages::respond(
                        StatusCode::UNAUTHORIZED,
                        pages::login(
                            &view(&v, &action),
                            &v.params,
                            &csrf,
                            Some("Your session has ended; sign in again."),
                        ),
                        &[],
                    );
                }
                Err(r) => return r,
            };
            if decision == "deny" {
                return error_redirect(
                    &state,
                    &v.request.redirect_uri,
                    v.request.state.as_deref(),
                    "access_denied",
                    "the user denied the request",
                );
            }
            issue_code(&state, &v, &username, true).await
        }
        _ => error_page(StatusCode::BAD_REQUEST, "The form has no valid action."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const REDIRECT: &str = "http://127.0.0.1:3000/cb";

    fn resources() -> Vec<Resource> {
        vec![Resource {
            url: "http://localhost:10000/mcp".into(),
            scopes: vec!["mcp:tools".into(), "mcp:admin".into()],
            default_scopes: vec!["mcp:tools".into()],
        }]
    }

    fn check(query: &str) -> Result<Checked, Rejection> {
        check_request(
            &Params::parse(query.as_bytes()),
            &[REDIRECT.to_string()],
            &resources(),
        )
    }

    fn good() -> String {
        format!(
            "response_type=code&client_id=c&redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256&state=s",
            url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
        )
    }

    fn error_of(query: &str) -> &'static str {
        match check(query) {
            Err(Rejection::Redirect { error, state, .. }) => {
                assert_eq!(state.as_deref(), Some("s"));
                error
            }
            Err(Rejection::Page(_)) => "page",
            Ok(_) => "accepted",
        }
    }

    #[test]
    fn valid_request_gets_default_scope_and_the_single_resource() {
        let c = check(&good()).unwrap();
        assert_eq!(c.redirect_uri, REDIRECT);
        assert_eq!(c.scopes, vec!["mcp:tools"]);
        assert_eq!(c.resource.url, "http://localhost:10000/mcp");
        assert_eq!(c.state.as_deref(), Some("s"));
    }

    #[test]
    fn an_unverified_redirect_uri_wins_over_every_other_error() {
        let q = "response_type=token&client_id=c&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&code_challenge_method=plain&scope=nope&state=s";
        assert!(matches!(check(q), Err(Rejection::Page(_))));
        assert!(matches!(check("client_id=c"), Err(Rejection::Page(_))));
        let dup = format!("{}&redirect_uri=x", good());
        assert!(matches!(check(&dup), Err(Rejection::Page(_))));
    }

    #[test]
    fn errors_after_the_redirect_check_go_back_to_the_client() {
        let g = good();
        assert_eq!(
            error_of(&g.replace("response_type=code", "response_type=token")),
            "unsupported_response_type"
        );
        assert_eq!(
            error_of(&g.replace("response_type=code&", "")),
            "invalid_request"
        );
        assert_eq!(error_of(&g.replace("S256", "plain")), "invalid_request");
        assert_eq!(
            error_of(&g.replace(&format!("code_challenge={CHALLENGE}&"), "")),
            "invalid_request"
        );
        assert_eq!(error_of(&format!("{g}&scope=mcp%3Aother")), "invalid_scope");
        assert_eq!(
            error_of(&format!(
                "{g}&resource=http%3A%2F%2Flocalhost%3A10000%2Fmcp%23x"
            )),
            "invalid_target"
        );
        assert_eq!(error_of(&format!("{g}&scope=a&scope=b")), "invalid_request");
    }
}
