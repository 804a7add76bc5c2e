//! The authorization endpoint: validation (never redirecting to an unverified URI), login and
//! consent pages, remembered consent, code issuance. Every redirect carries `iss` and `state`.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use crate::audit;
use crate::client_address::ClientAddress;
use crate::clients::Client;
use crate::config::{Config, Resource};
use crate::error::{AuthorizeError, ErrorCode};
use crate::idp::IdentityProvider;
use crate::oauth::RESPONSE_TYPE_CODE;
use crate::params::Params;
use crate::redirect_uri::{ClientRedirect, PrivateUseSchemes, RedirectKind};
use crate::session::{self, Cookies, CsrfCheckedForm, CsrfToken, PasswordSignIn};
use crate::state::AppState;
use crate::{
    identity, pages, pkce, policy, redirect_uri, resource, secrets, store, time, upstream,
    upstream_store,
};

/// `/authorize`: GET shows the login or consent page (or redirects at once with remembered
/// consent); POST takes the login and the consent decision.
pub fn routes(config: &Config) -> Router<AppState> {
    Router::new().route(
        &format!("{}/authorize", config.issuer_path),
        get(show).post(decide),
    )
}

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
    /// Requested scopes the signed-in person may not have; no longer in `request.scopes`.
    withheld: Vec<policy::Withheld>,
}

/// The parts of an accepted request (the client is resolved separately).
#[derive(Debug)]
pub struct Checked {
    /// Where the code or a later error goes.
    pub redirect: ClientRedirect,
    /// What kind of redirect URI that is.
    pub redirect_kind: RedirectKind,
    pub code_challenge: String,
    pub resource: Resource,
    pub scopes: Vec<String>,
}

/// The two parameters needed before anything else in a request can be trusted.
pub struct ClientAndRedirect<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
}

/// A refusal shown on a page: the client or the redirect URI is not verified.
fn untrusted(message: impl Into<String>) -> AuthorizeError {
    AuthorizeError::page(StatusCode::BAD_REQUEST, message)
}

/// Step 1: the `client_id` and `redirect_uri` parameters, needed before anything is trusted.
pub fn client_and_redirect(params: &Params) -> Result<ClientAndRedirect<'_>, AuthorizeError> {
    let client_id = params
        .single("client_id")
        .map_err(untrusted)?
        .ok_or_else(|| untrusted("The request has no client_id."))?;
    let redirect_uri = params
        .single("redirect_uri")
        .map_err(untrusted)?
        .ok_or_else(|| untrusted("The request has no redirect_uri."))?;
    Ok(ClientAndRedirect {
        client_id,
        redirect_uri,
    })
}

/// Step 2: decides a request for a resolved client. Until the redirect URI is verified,
/// rejections are pages; after that, they go back to the client (with `iss` = `issuer`).
pub fn check_request(
    params: &Params,
    registered_redirect_uris: &[String],
    policy: &PrivateUseSchemes,
    resources: &[Resource],
    issuer: &str,
) -> Result<Checked, AuthorizeError> {
    let requested = client_and_redirect(params)?.redirect_uri;
    let redirect_kind = redirect_uri::check_requested(requested, registered_redirect_uris, policy)
        .map_err(|e| {
            untrusted(format!(
                "The redirect_uri cannot be used ({e}); not redirecting."
            ))
        })?;
    // From here on the redirect URI is trusted. `state` is echoed only when it is unambiguous.
    let redirect = ClientRedirect {
        redirect_uri: requested.to_string(),
        state: params.single("state").ok().flatten().map(str::to_string),
        issuer: issuer.to_string(),
    };
    let fail = |error: ErrorCode, description: String| AuthorizeError::Redirect {
        to: redirect.clone(),
        error,
        description,
    };
    for name in REQUEST_PARAMS.iter().filter(|n| **n != "resource") {
        params
            .single(name)
            .map_err(|e| fail(ErrorCode::InvalidRequest, e))?;
    }
    match params.single("response_type").ok().flatten() {
        Some(RESPONSE_TYPE_CODE) => {}
        None => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "response_type is required".into(),
            ));
        }
        Some(_) => {
            return Err(fail(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported".into(),
            ));
        }
    }
    let challenge = params.single("code_challenge").ok().flatten();
    let method = params.single("code_challenge_method").ok().flatten();
    pkce::validate_challenge(challenge, method).map_err(|e| fail(ErrorCode::InvalidRequest, e))?;
    let resource = resource::select(resources, &params.all("resource"))
        .map_err(|e| fail(ErrorCode::InvalidTarget, e))?
        .clone();
    let scopes = resource::grant(&resource, params.single("scope").ok().flatten())
        .map_err(|e| fail(ErrorCode::InvalidScope, e))?;
    Ok(Checked {
        code_challenge: challenge.unwrap_or_default().to_string(),
        resource,
        scopes,
        redirect,
        redirect_kind,
    })
}

/// Resolves the client and checks the request.
async fn validate(
    state: &AppState,
    params: &Params,
    peer: ClientAddress,
) -> Result<Validated, AuthorizeError> {
    let client_id = client_and_redirect(params)?.client_id;
    let client = state
        .clients()
        .resolve(client_id, peer.ip())
        .await
        .map_err(|e| untrusted(format!("The client could not be verified: {e}")))?;
    let request = check_request(
        params,
        &client.redirect_uris,
        &state.config.private_use_redirect_schemes,
        &state.config.resources,
        &state.config.issuer,
    )?;
    if !client.allows_authorization_code {
        return Err(AuthorizeError::Redirect {
            to: request.redirect,
            error: ErrorCode::UnauthorizedClient,
            description: "the client is not registered for the authorization_code grant".into(),
        });
    }
    Ok(Validated {
        client,
        request,
        params: params.only(REQUEST_PARAMS),
        withheld: Vec::new(),
    })
}

fn action_path(state: &AppState) -> String {
    format!("{}/authorize", state.config.issuer_path)
}

fn view<'a>(state: &'a AppState, v: &'a Validated, action: &'a str) -> pages::RequestView<'a> {
    pages::RequestView {
        client_id: &v.client.client_id,
        client_name: v.client.client_name.as_deref(),
        verified: v.client.verified(),
        recipient: redirect_uri::recipient(&v.request.redirect.redirect_uri),
        scopes: &v.request.scopes,
        withheld: &v.withheld,
        resource: &v.request.resource.url,
        descriptions: state.config.scope_descriptions(&v.request.resource.url),
        action,
    }
}

/// The login page for this request, with an optional notice (why the sign-in failed).
fn login_page(
    state: &AppState,
    v: &Validated,
    csrf: &str,
    status: StatusCode,
    notice: Option<&str>,
    cookies: &[String],
) -> Response {
    let action = action_path(state);
    let providers: Vec<pages::ProviderChoice<'_>> = state
        .config
        .identity_providers
        .iter()
        .map(|p| pages::ProviderChoice {
            id: &p.id,
            display_name: &p.display_name,
        })
        .collect();
    pages::respond(
        status,
        pages::login(
            &view(state, v, &action),
            &v.params,
            csrf,
            notice,
            &providers,
            !state.config.users.is_empty(),
        ),
        cookies,
    )
}

/// The only way to sign in when there is exactly one identity provider and no local user.
fn sole_provider(config: &Config) -> Option<&IdentityProvider> {
    match config.identity_providers.as_slice() {
        [only] if config.users.is_empty() => Some(only),
        _ => None,
    }
}

/// Narrows the request to the scopes a federated person may have (their provider's scope
/// rules, applied to the groups of their latest sign-in). Nothing left is a refusal page: the
/// client asked only for access this person may not have. Returns the name the consent page
/// shows: a federated person's email when their provider sent one, else the subject.
async fn apply_scope_policy(
    state: &AppState,
    v: &mut Validated,
    subject: &str,
) -> Result<String, AuthorizeError> {
    let Some(provider) = identity::provider_of(&state.config, subject) else {
        return Ok(subject.to_string());
    };
    let key = subject.to_string();
    let who = state
        .store
        .run(move |conn| upstream_store::identity(conn, &key))
        .await?;
    let name = who
        .as_ref()
        .map_or_else(|| subject.to_string(), |w| w.display());
    let groups = who.map(|w| w.groups).unwrap_or_default();
    let decision = policy::decide_scopes(&provider.scope_rules, &groups, &v.request.scopes);
    if decision.granted.is_empty() {
        let reasons: Vec<String> = decision
            .withheld
            .iter()
            .map(|w| format!("{} ({})", w.scope, w.reason))
            .collect();
        return Err(AuthorizeError::page(
            StatusCode::FORBIDDEN,
            format!(
                "Your account may not have the access this application asks for: {}. Ask an administrator for access, or return to the application.",
                reasons.join("; ")
            ),
        ));
    }
    v.request.scopes = decision.granted;
    v.withheld = decision.withheld;
    Ok(name)
}

fn consent_key(v: &Validated, username: &str) -> store::ConsentKey {
    store::ConsentKey {
        username: username.to_string(),
        client_id: v.client.client_id.clone(),
        redirect_uri: v.request.redirect.redirect_uri.clone(),
        scope: resource::join(&v.request.scopes),
        resource: v.request.resource.url.clone(),
    }
}

/// Stores a fresh code (and, when `remember` holds, the consent) and redirects to the client
/// with it.
async fn issue_code(
    state: &AppState,
    v: &Validated,
    username: &str,
    remember: bool,
) -> Result<Response, AuthorizeError> {
    let code = secrets::random_token()?;
    let grant = store::CodeGrant {
        client_id: v.client.client_id.clone(),
        redirect_uri: v.request.redirect.redirect_uri.clone(),
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
    state
        .store
        .run(move |conn| {
            let tx = conn.transaction()?;
            if let Some(k) = consent {
                store::insert_consent(&*tx, &k, now)?;
            }
            store::insert_code(&*tx, &hash, &grant, expires_at)?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(pages::see_other(
        &v.request.redirect.location(&[("code", &code)]),
        &[],
    ))
}

/// GET: the login page without a session; with one, the consent page, or the code at once
/// when the user already consented to exactly this.
async fn show(
    State(state): State<AppState>,
    peer: ClientAddress,
    cookies: Cookies,
    RawQuery(query): RawQuery,
) -> Result<Response, AuthorizeError> {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let mut v = validate(&state, &params, peer).await?;
    let csrf = CsrfToken::for_browser(&state.config, &cookies)?;
    let Some(username) = session::signed_in_user(&state, &cookies).await? else {
        if let Some(provider) = sole_provider(&state.config) {
            return Ok(upstream::start(
                &state,
                provider,
                &v.params,
                &csrf.value,
                csrf.set_cookie.as_slice(),
            )
            .await);
        }
        return Ok(login_page(
            &state,
            &v,
            &csrf.value,
            StatusCode::OK,
            None,
            csrf.set_cookie.as_slice(),
        ));
    };
    let name = apply_scope_policy(&state, &mut v, &username).await?;
    let key = consent_key(&v, &username);
    // Remembered consent is used only when nothing was withheld and the redirect is not to a
    // private-use scheme. A narrowed request always shows the consent page, so the person learns
    // what was not granted and why. Any installed app can claim a private-use scheme, so a
    // request naming one cannot show that it comes from the app the user approved before
    // (RFC 8252 §8.6).
    if v.withheld.is_empty()
        && v.request.redirect_kind != RedirectKind::PrivateUse
        && state
            .store
            .run(move |conn| store::has_consent(conn, &key))
            .await?
    {
        return issue_code(&state, &v, &username, false).await;
    }
    let action = action_path(&state);
    Ok(pages::respond(
        StatusCode::OK,
        pages::consent(&view(&state, &v, &action), &v.params, &csrf.value, &name),
        csrf.set_cookie.as_slice(),
    ))
}

/// What a posted login or consent form asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Login,
    Approve,
    Deny,
}

impl Action {
    fn of(form: &Params) -> Option<Self> {
        match form.single("action").ok().flatten()? {
            "login" => Some(Action::Login),
            "approve" => Some(Action::Approve),
            "deny" => Some(Action::Deny),
            _ => None,
        }
    }
}

/// POST: a sign-in, or the user's consent decision. The form passed the CSRF check.
async fn decide(
    State(state): State<AppState>,
    peer: ClientAddress,
    cookies: Cookies,
    CsrfCheckedForm { fields, csrf }: CsrfCheckedForm,
) -> Result<Response, AuthorizeError> {
    let mut v = validate(&state, &fields, peer).await?;
    if let Some(id) = fields
        .single("action")
        .ok()
        .flatten()
        .and_then(|a| a.strip_prefix("upstream:"))
    {
        let Some(provider) = state.config.identity_provider(id) else {
            return Err(AuthorizeError::page(
                StatusCode::BAD_REQUEST,
                "The form names an identity provider this server does not have.",
            ));
        };
        return Ok(upstream::start(&state, provider, &v.params, &csrf, &[]).await);
    }
    let decision = match Action::of(&fields) {
        Some(Action::Login) => return sign_in(&state, peer, &v, &fields, &csrf).await,
        Some(decision) => decision,
        None => {
            return Err(AuthorizeError::page(
                StatusCode::BAD_REQUEST,
                "The form has no valid action.",
            ));
        }
    };
    let Some(username) = session::signed_in_user(&state, &cookies).await? else {
        return Ok(login_page(
            &state,
            &v,
            &csrf,
            StatusCode::UNAUTHORIZED,
            Some("Your session has ended; sign in again."),
            &[],
        ));
    };
    apply_scope_policy(&state, &mut v, &username).await?;
    let approved = decision == Action::Approve;
    audit::consent(
        approved,
        &username,
        &v.client.client_id,
        &resource::join(&v.request.scopes),
        &v.request.resource.url,
    );
    if !approved {
        return Err(AuthorizeError::Redirect {
            to: v.request.redirect,
            error: ErrorCode::AccessDenied,
            description: "the user denied the request".into(),
        });
    }
    issue_code(&state, &v, &username, true).await
}

/// Checks the posted username and password, starts a login session and sends the browser back
/// to the authorization request.
async fn sign_in(
    state: &AppState,
    peer: ClientAddress,
    v: &Validated,
    form: &Params,
    csrf: &str,
) -> Result<Response, AuthorizeError> {
    let field = |name| form.single(name).ok().flatten().unwrap_or_default();
    let (username, password) = (field("username"), field("password"));
    let outcome =
        session::sign_in_with_password(state, peer.ip(), &v.client.client_id, username, password)
            .await?;
    Ok(match outcome {
        PasswordSignIn::SignedIn(cookie) => pages::see_other(
            &format!("{}?{}", action_path(state), v.params.to_query()),
            &[cookie],
        ),
        PasswordSignIn::RateLimited => session::rate_limited(login_page(
            state,
            v,
            csrf,
            StatusCode::TOO_MANY_REQUESTS,
            Some(session::RATE_LIMITED_MESSAGE),
            &[],
        )),
        PasswordSignIn::Refused => login_page(
            state,
            v,
            csrf,
            StatusCode::UNAUTHORIZED,
            Some(session::REFUSED_MESSAGE),
            &[],
        ),
    })
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

    const ISSUER: &str = "http://localhost:9000";

    fn check(query: &str) -> Result<Checked, AuthorizeError> {
        check_request(
            &Params::parse(query.as_bytes()),
            &[REDIRECT.to_string()],
            &PrivateUseSchemes::Any,
            &resources(),
            ISSUER,
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
            Err(AuthorizeError::Redirect { error, to, .. }) => {
                assert_eq!(to.state.as_deref(), Some("s"));
                assert_eq!(to.issuer, ISSUER);
                error.as_str()
            }
            Err(AuthorizeError::Page { status, .. }) => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                "page"
            }
            Ok(_) => "accepted",
        }
    }

    #[test]
    fn valid_request_gets_default_scope_and_the_single_resource() {
        let c = check(&good()).unwrap();
        assert_eq!(c.redirect.redirect_uri, REDIRECT);
        assert_eq!(c.scopes, vec!["mcp:tools"]);
        assert_eq!(c.resource.url, "http://localhost:10000/mcp");
        assert_eq!(c.redirect.state.as_deref(), Some("s"));
    }

    #[test]
    fn an_unverified_redirect_uri_wins_over_every_other_error() {
        let q = "response_type=token&client_id=c&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&code_challenge_method=plain&scope=nope&state=s";
        assert!(matches!(check(q), Err(AuthorizeError::Page { .. })));
        assert!(matches!(
            check("client_id=c"),
            Err(AuthorizeError::Page { .. })
        ));
        let dup = format!("{}&redirect_uri=x", good());
        assert!(matches!(check(&dup), Err(AuthorizeError::Page { .. })));
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
        assert_eq!(
            error_of(&format!(
                "{g}&resource=http%3A%2F%2Flocalhost%3A10000%2Fother"
            )),
            "invalid_target"
        );
        assert_eq!(
            error_of(&format!(
                "{g}&resource=http%3A%2F%2Flocalhost%3A10000%2Fmcp%23x"
            )),
            "invalid_target"
        );
        assert_eq!(error_of(&format!("{g}&scope=a&scope=b")), "invalid_request");
    }

    #[test]
    fn unknown_scopes_are_dropped_and_the_rest_granted() {
        let g = good();
        let claudeai = check(&format!("{g}&scope=claudeai")).unwrap();
        assert_eq!(claudeai.scopes, vec!["mcp:tools"]);
        let oidc = check(&format!("{g}&scope=openid+profile+mcp%3Aadmin")).unwrap();
        assert_eq!(oidc.scopes, vec!["mcp:admin"]);
    }

    #[test]
    fn errors_to_a_private_use_redirect_carry_iss_and_state() {
        let app = "cursor://anysphere.cursor-mcp/oauth/callback";
        let encoded: String = url::form_urlencoded::byte_serialize(app.as_bytes()).collect();
        let query = good()
            .replace(
                &url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
                &encoded,
            )
            .replace("code_challenge_method=S256", "code_challenge_method=plain");
        let registered = [app.to_string()];
        let refused = check_request(
            &Params::parse(query.as_bytes()),
            &registered,
            &PrivateUseSchemes::Any,
            &resources(),
            ISSUER,
        );
        let Err(AuthorizeError::Redirect { to, error, .. }) = refused else {
            panic!("expected a redirect: {refused:?}");
        };
        assert_eq!(error, ErrorCode::InvalidRequest);
        let location = to.location(&[("error", error.as_str())]);
        assert!(
            location.starts_with(&format!("{app}?error=invalid_request")),
            "{location}"
        );
        assert!(
            location.ends_with("&state=s&iss=http%3A%2F%2Flocalhost%3A9000"),
            "{location}"
        );
        // Where the operator accepts no private-use scheme, it is an error page instead.
        let page = check_request(
            &Params::parse(query.as_bytes()),
            &registered,
            &PrivateUseSchemes::None,
            &resources(),
            ISSUER,
        );
        assert!(matches!(page, Err(AuthorizeError::Page { .. })));
    }
}
