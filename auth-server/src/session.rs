//! The browser side of the authorization endpoint: its cookies, the login session, the sign-in
//! password check, and the CSRF token that ties the login and consent forms to the browser that
//! was shown them.

use std::convert::Infallible;
use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};

use crate::audit::{self, SignInFailure};
use crate::client_address::rate_key;
use crate::config::Config;
use crate::error::AuthorizeError;
use crate::params::Params;
use crate::state::AppState;
use crate::store::{self, StoreError};
use crate::{csrf, ratelimit, secrets, time};

/// Carries the login session id (only its SHA-256 hash is stored).
pub const SESSION_COOKIE: &str = "mcp_as_session";
/// Carries the browser's pre-session CSRF token, which the sign-in form must repeat.
pub const CSRF_COOKIE: &str = "mcp_as_csrf";
/// Prefix of both cookie names when the issuer is https with no path: browsers then accept
/// the cookie only if it is Secure, for path `/` and without a Domain, so no other host (a
/// sibling subdomain) and no plain-http response can plant or overwrite it.
const HOST_PREFIX: &str = "__Host-";

/// The name `base` is sent under for this issuer.
pub fn cookie_name(config: &Config, base: &str) -> String {
    if config.issuer_is_https && config.issuer_path.is_empty() {
        format!("{HOST_PREFIX}{base}")
    } else {
        base.to_string()
    }
}

/// The cookies a request carries, in the order sent.
pub struct Cookies(Vec<(String, String)>);

impl Cookies {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Cookies(
            headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| Cookie::split_parse(v.to_string()))
                .filter_map(Result::ok)
                .map(|c| (c.name().to_string(), c.value().to_string()))
                .collect(),
        )
    }

    /// The value of the first cookie with this name; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Cookies {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Cookies::from_headers(&parts.headers))
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, scoped to the issuer path, Secure when the
/// issuer is https.
fn set_cookie(config: &Config, name: &str, value: &str, max_age_secs: i64) -> String {
    let path = if config.issuer_path.is_empty() {
        "/".to_string()
    } else {
        config.issuer_path.clone()
    };
    Cookie::build((name.to_string(), value.to_string()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(config.issuer_is_https)
        .path(path)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build()
        .to_string()
}

/// The origin (`scheme://host[:port]`) of the issuer, the only one forms may be posted from.
fn issuer_origin(config: &Config) -> String {
    url::Url::parse(&config.issuer)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

fn session_lifetime_secs(config: &Config) -> i64 {
    config.login_session_lifetime.as_secs() as i64
}

/// Every CSRF token this browser's forms may carry: the session-bound one when it sends a login
/// session cookie, its pre-session cookie when it sends one. A pending sign-in at an identity
/// provider is bound to the token its form carried, and its callback must come from a browser
/// that still holds that token (a stale or expired session cookie counts as well: it is what
/// the browser was shown the form with).
pub fn browser_tokens(config: &Config, cookies: &Cookies) -> Vec<String> {
    let bound = cookies
        .get(&cookie_name(config, SESSION_COOKIE))
        .map(csrf::session_bound_token);
    let pre_session = cookies
        .get(&cookie_name(config, CSRF_COOKIE))
        .map(str::to_string);
    bound.into_iter().chain(pre_session).collect()
}

/// The CSRF token of this browser: its cookie's value, or a fresh one with the cookie to set.
pub struct CsrfToken {
    pub value: String,
    /// The `Set-Cookie` value when the token is new.
    pub set_cookie: Option<String>,
}

impl CsrfToken {
    /// Bound to the browser's login session when it has one (see `csrf`), otherwise its
    /// pre-session cookie, made if missing.
    pub fn for_browser(config: &Config, cookies: &Cookies) -> Result<Self, getrandom::Error> {
        if let Some(session) = cookies.get(&cookie_name(config, SESSION_COOKIE)) {
            return Ok(CsrfToken {
                value: csrf::session_bound_token(session),
                set_cookie: None,
            });
        }
        if let Some(value) = cookies.get(&cookie_name(config, CSRF_COOKIE)) {
            return Ok(CsrfToken {
                value: value.to_string(),
                set_cookie: None,
            });
        }
        let value = secrets::random_token()?;
        let set_cookie = set_cookie(
            config,
            &cookie_name(config, CSRF_COOKIE),
            &value,
            session_lifetime_secs(config),
        );
        Ok(CsrfToken {
            value,
            set_cookie: Some(set_cookie),
        })
    }
}

/// A form posted by the browser it was shown to: posted from this server's origin (as far as
/// the browser says), with the `csrf_token` that browser was given (see `csrf`). Anything else
/// is refused with 403 before the form is looked at.
pub struct CsrfCheckedForm {
    pub fields: Params,
    /// The checked token, repeated in any form shown in answer.
    pub csrf: String,
}

impl FromRequest<AppState> for CsrfCheckedForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let config = &state.config;
        if let Err(reason) = csrf::check_origin(request.headers(), &issuer_origin(config)) {
            tracing::info!(%reason, "refused a cross-origin form post");
            return Err(AuthorizeError::page(
                StatusCode::FORBIDDEN,
                "The form was not sent from this server's own page. Go back to the application and start again.",
            )
            .into_response());
        }
        let cookies = Cookies::from_headers(request.headers());
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let fields = Params::parse(&body);
        let expected = csrf::Expected {
            session_id: cookies.get(&cookie_name(config, SESSION_COOKIE)),
            pre_session: cookies.get(&cookie_name(config, CSRF_COOKIE)),
            // Signing in with the password form or at an identity provider: either may have
            // been shown before a session existed.
            is_sign_in: matches!(
                fields.single("action"),
                Ok(Some(action)) if action == "login" || action.starts_with("upstream:")
            ),
        };
        let csrf = match fields.single("csrf_token") {
            Ok(Some(field)) if csrf::token_fits(&expected, field) => field.to_string(),
            _ => {
                return Err(AuthorizeError::page(
                    StatusCode::FORBIDDEN,
                    "The form is missing a valid CSRF token. Go back to the application and start again.",
                )
                .into_response());
            }
        };
        Ok(CsrfCheckedForm { fields, csrf })
    }
}

/// The user signed in on this browser: its session is live and the user (or their identity
/// provider) is still configured: removing either from the configuration signs them out.
pub async fn signed_in_user(
    state: &AppState,
    cookies: &Cookies,
) -> Result<Option<String>, StoreError> {
    let Some(session) = cookies.get(&cookie_name(&state.config, SESSION_COOKIE)) else {
        return Ok(None);
    };
    let hash = secrets::token_hash(session);
    let user = state
        .store
        .run(move |conn| store::session_user(conn, &hash, time::now()))
        .await?;
    Ok(user.filter(|u| crate::identity::is_configured(&state.config, u)))
}

/// Stores a new login session for `username`; returns the `Set-Cookie` value that carries it.
pub async fn start(state: &AppState, username: &str) -> Result<String, AuthorizeError> {
    let session = secrets::random_token()?;
    let lifetime = session_lifetime_secs(&state.config);
    let hash = secrets::token_hash(&session);
    let user = username.to_string();
    let expires_at = time::now() + lifetime;
    state
        .store
        .run(move |conn| store::insert_session(conn, &hash, &user, expires_at))
        .await?;
    Ok(set_cookie(
        &state.config,
        &cookie_name(&state.config, SESSION_COOKIE),
        &session,
        lifetime,
    ))
}

/// Does `password` belong to `username`? Takes about as long for unknown users as for known
/// ones, so response times do not reveal which usernames exist.
pub async fn check_password(state: &AppState, username: &str, password: &str) -> bool {
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

/// What a password sign-in came to.
pub enum PasswordSignIn {
    /// Signed in: the `Set-Cookie` value of the new login session.
    SignedIn(String),
    /// The address used up its failed attempts for the minute; no password was checked.
    RateLimited,
    /// Wrong username or password.
    Refused,
}

/// Signs a person in with a username and password from one of the sign-in forms (`client_id`
/// names what the form was for, in the audit log). Brute-force bound: each attempt is counted
/// against the address before its password is checked, so a burst of parallel attempts gets no
/// more checks than the limit allows; once the address has used up its attempts for the minute
/// no password is checked at all, right or wrong; a successful sign-in gives its attempt back.
pub async fn sign_in_with_password(
    state: &AppState,
    peer: IpAddr,
    client_id: &str,
    username: &str,
    password: &str,
) -> Result<PasswordSignIn, AuthorizeError> {
    let failed = |reason: SignInFailure| {
        audit::sign_in_failed(username, client_id, peer, reason);
        state.metrics.sign_in(reason.as_str());
    };
    let Some(attempt) = state.login_limiter.count_attempt(rate_key(peer)).await? else {
        failed(SignInFailure::RateLimited);
        return Ok(PasswordSignIn::RateLimited);
    };
    if !check_password(state, username, password).await {
        failed(if state.config.users.contains_key(username) {
            SignInFailure::WrongPassword
        } else {
            SignInFailure::UnknownUser
        });
        return Ok(PasswordSignIn::Refused);
    }
    state.login_limiter.refund(attempt).await?;
    let cookie = start(state, username).await?;
    audit::sign_in_succeeded(username, client_id, peer);
    state.metrics.sign_in("success");
    Ok(PasswordSignIn::SignedIn(cookie))
}

/// The message a sign-in page shows after [`PasswordSignIn::RateLimited`].
pub const RATE_LIMITED_MESSAGE: &str =
    "Too many failed sign-in attempts from your address. Wait a minute and try again.";

/// The message a sign-in page shows after [`PasswordSignIn::Refused`].
pub const REFUSED_MESSAGE: &str = "Wrong username or password.";

/// A sign-in page answered 429 with `Retry-After` (the limiter's window).
pub fn rate_limited(mut page: Response) -> Response {
    *page.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    page.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from(ratelimit::WINDOW.as_secs()),
    );
    page
}

/// Ends this browser's login session (sign-out); returns the `Set-Cookie` value that clears its
/// cookie.
pub async fn end(state: &AppState, cookies: &Cookies) -> Result<String, StoreError> {
    if let Some(session) = cookies.get(&cookie_name(&state.config, SESSION_COOKIE)) {
        let hash = secrets::token_hash(session);
        state
            .store
            .run(move |conn| store::delete_session(conn, &hash))
            .await?;
    }
    Ok(set_cookie(
        &state.config,
        &cookie_name(&state.config, SESSION_COOKIE),
        "",
        0,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(issuer: &str) -> Config {
        let text = format!(
            "issuer = \"{issuer}\"\n[[resources]]\nurl = \"https://r.example/mcp\"\nscopes = [\"a\"]\n"
        );
        crate::config::parse(&text, std::path::Path::new("/tmp"), Vec::new()).unwrap()
    }

    #[test]
    fn cookies_get_the_host_prefix_where_the_issuer_allows_it() {
        let https = config("https://auth.example.com");
        assert_eq!(cookie_name(&https, SESSION_COOKIE), "__Host-mcp_as_session");
        let cookie = set_cookie(&https, &cookie_name(&https, CSRF_COOKIE), "v", 60);
        assert!(cookie.starts_with("__Host-mcp_as_csrf=v"), "{cookie}");
        assert!(
            cookie.contains("Secure") && cookie.contains("Path=/"),
            "{cookie}"
        );
        assert!(!cookie.contains("Domain"), "{cookie}");
        // A path, or plain http, rules the prefix out.
        let tenant = config("https://auth.example.com/tenant");
        assert_eq!(cookie_name(&tenant, SESSION_COOKIE), SESSION_COOKIE);
        let http = config("http://localhost:9000");
        assert_eq!(cookie_name(&http, CSRF_COOKIE), CSRF_COOKIE);
    }
}
