//! The connected-apps page (`{issuer}/account`): a signed-in person sees the MCP clients they
//! authorized, revokes one (its remembered consent and refresh-token families), and signs out.
//! Without a session the page is a sign-in page that comes back here.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

use crate::audit;
use crate::client_address::ClientAddress;
use crate::config::Config;
use crate::error::AuthorizeError;
use crate::params::Params;
use crate::session::{self, Cookies, CsrfCheckedForm, CsrfToken, PasswordSignIn};
use crate::state::AppState;
use crate::store::{self, GrantRow};
use crate::{pages, time, upstream};

/// The client ID that sign-ins from this page are logged and counted under.
const ACCOUNT_CLIENT: &str = "(connected apps)";

pub fn path(config: &Config) -> String {
    format!("{}/account", config.issuer_path)
}

fn revoke_path(config: &Config) -> String {
    format!("{}/account/revoke", config.issuer_path)
}

fn sign_out_path(config: &Config) -> String {
    format!("{}/account/sign-out", config.issuer_path)
}

pub fn routes(config: &Config) -> Router<AppState> {
    Router::new()
        .route(&path(config), get(show).post(sign_in))
        .route(&revoke_path(config), post(revoke))
        .route(&sign_out_path(config), post(sign_out))
}

/// Everything a person gave one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedApp {
    pub client_id: String,
    /// Every scope granted, in the order first seen.
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    /// The latest grant (unix seconds).
    pub latest: i64,
}

/// Groups grants by client, most recently authorized first.
pub fn connected_apps(grants: &[GrantRow]) -> Vec<ConnectedApp> {
    let mut by_client: BTreeMap<&str, ConnectedApp> = BTreeMap::new();
    for g in grants {
        let app = by_client
            .entry(&g.client_id)
            .or_insert_with(|| ConnectedApp {
                client_id: g.client_id.clone(),
                scopes: Vec::new(),
                resources: Vec::new(),
                latest: g.at,
            });
        for s in g.scope.split_whitespace() {
            if !app.scopes.iter().any(|x| x == s) {
                app.scopes.push(s.to_string());
            }
        }
        if !app.resources.contains(&g.resource) {
            app.resources.push(g.resource.clone());
        }
        app.latest = app.latest.max(g.at);
    }
    let mut apps: Vec<ConnectedApp> = by_client.into_values().collect();
    apps.sort_by(|a, b| b.latest.cmp(&a.latest).then(a.client_id.cmp(&b.client_id)));
    apps
}

/// A moment as the page shows it: `2026-12-02 13:45 UTC`.
pub fn when(unix: i64) -> String {
    match cookie::time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "at an unknown time".into(),
    }
}

/// What the page says after a revocation or a sign-out (`?done=`).
fn notice(query: &Params) -> Option<&'static str> {
    match query.single("done").ok().flatten()? {
        "revoked" => Some("Access revoked."),
        "signed-out" => Some("You are signed out."),
        _ => None,
    }
}

/// The page's view of an app: its name and whether the operator vouches for it (configured
/// clients); a registered client's name is its own claim; a metadata-document client is shown
/// by its URL, which is its verified identity.
async fn app_view(state: &AppState, app: ConnectedApp) -> Result<pages::AppView, AuthorizeError> {
    let (client_name, verified) = match state.config.static_client(&app.client_id) {
        Some(c) => (Some(c.client_name.clone()), true),
        None => {
            let id = app.client_id.clone();
            let registered = state
                .store
                .run(move |conn| store::get_client(conn, &id))
                .await?;
            (registered.and_then(|c| c.client_name), false)
        }
    };
    let describe = |scope: &str| {
        app.resources.iter().find_map(|r| {
            state
                .config
                .scope_descriptions(r)
                .and_then(|d| d.get(scope))
                .cloned()
        })
    };
    let scopes = app
        .scopes
        .iter()
        .map(|s| (s.clone(), describe(s)))
        .collect();
    Ok(pages::AppView {
        since: when(app.latest),
        client_name,
        verified,
        scopes,
        resources: app.resources.clone(),
        client_id: app.client_id,
    })
}

fn providers(config: &Config) -> Vec<pages::ProviderChoice<'_>> {
    config
        .identity_providers
        .iter()
        .map(|p| pages::ProviderChoice {
            id: &p.id,
            display_name: &p.display_name,
        })
        .collect()
}

fn sign_in_page(
    state: &AppState,
    status: StatusCode,
    csrf: &str,
    notice: Option<&str>,
    error: Option<&str>,
    cookies: &[String],
) -> Response {
    let config = &state.config;
    pages::respond(
        status,
        pages::account_sign_in(
            &path(config),
            csrf,
            notice,
            error,
            &providers(config),
            !config.users.is_empty(),
        ),
        cookies,
    )
}

/// GET: the person's connected apps, or the sign-in page.
async fn show(
    State(state): State<AppState>,
    cookies: Cookies,
    RawQuery(query): RawQuery,
) -> Result<Response, AuthorizeError> {
    let query = Params::parse(query.unwrap_or_default().as_bytes());
    let csrf = CsrfToken::for_browser(&state.config, &cookies)?;
    let Some(username) = session::signed_in_user(&state, &cookies).await? else {
        return Ok(sign_in_page(
            &state,
            StatusCode::OK,
            &csrf.value,
            notice(&query),
            None,
            csrf.set_cookie.as_slice(),
        ));
    };
    let user = username.clone();
    let grants = state
        .store
        .run(move |conn| store::grants_of(conn, &user, time::now()))
        .await?;
    let mut apps = Vec::new();
    for app in connected_apps(&grants) {
        apps.push(app_view(&state, app).await?);
    }
    let config = &state.config;
    Ok(pages::respond(
        StatusCode::OK,
        pages::account(
            &display_name(&state, &username).await?,
            &apps,
            &csrf.value,
            &revoke_path(config),
            &sign_out_path(config),
            notice(&query),
        ),
        csrf.set_cookie.as_slice(),
    ))
}

/// A federated person's email or name when their provider sent one, else the subject.
async fn display_name(state: &AppState, subject: &str) -> Result<String, AuthorizeError> {
    if crate::identity::provider_of(&state.config, subject).is_none() {
        return Ok(subject.to_string());
    }
    let key = subject.to_string();
    let who = state
        .store
        .run(move |conn| crate::upstream_store::identity(conn, &key))
        .await?;
    Ok(who.map_or_else(|| subject.to_string(), |w| w.display()))
}

/// POST: signs in from this page (a password, or a provider that brings the browser back
/// here), as the authorization endpoint's login form does.
async fn sign_in(
    State(state): State<AppState>,
    peer: ClientAddress,
    CsrfCheckedForm { fields, csrf }: CsrfCheckedForm,
) -> Result<Response, AuthorizeError> {
    let action = fields.single("action").ok().flatten().unwrap_or_default();
    if let Some(id) = action.strip_prefix("upstream:") {
        let Some(provider) = state.config.identity_provider(id) else {
            return Err(AuthorizeError::page(
                StatusCode::BAD_REQUEST,
                "The form names an identity provider this server does not have.",
            ));
        };
        // No authorization request: the provider's answer comes back to this page.
        return Ok(upstream::start(&state, provider, &Params::default(), &csrf, &[]).await);
    }
    if action != "login" || state.config.users.is_empty() {
        return Err(AuthorizeError::page(
            StatusCode::BAD_REQUEST,
            "The form has no valid action.",
        ));
    }
    let field = |name| fields.single(name).ok().flatten().unwrap_or_default();
    let (username, password) = (field("username"), field("password"));
    let outcome =
        session::sign_in_with_password(&state, peer.ip(), ACCOUNT_CLIENT, username, password)
            .await?;
    Ok(match outcome {
        PasswordSignIn::SignedIn(cookie) => pages::see_other(&path(&state.config), &[cookie]),
        PasswordSignIn::RateLimited => session::rate_limited(sign_in_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            &csrf,
            None,
            Some(session::RATE_LIMITED_MESSAGE),
            &[],
        )),
        PasswordSignIn::Refused => sign_in_page(
            &state,
            StatusCode::UNAUTHORIZED,
            &csrf,
            None,
            Some(session::REFUSED_MESSAGE),
            &[],
        ),
    })
}

/// POST: withdraws everything the signed-in person gave one client.
async fn revoke(
    State(state): State<AppState>,
    cookies: Cookies,
    CsrfCheckedForm { fields, .. }: CsrfCheckedForm,
) -> Result<Response, AuthorizeError> {
    let Some(username) = session::signed_in_user(&state, &cookies).await? else {
        return Ok(pages::see_other(&path(&state.config), &[]));
    };
    let Some(client_id) = fields.single("client_id").ok().flatten() else {
        return Err(AuthorizeError::page(
            StatusCode::BAD_REQUEST,
            "The form does not name an application.",
        ));
    };
    let (user, client) = (username.clone(), client_id.to_string());
    state
        .store
        .run(move |conn| store::revoke_client_grants(conn, &user, &client, time::now()))
        .await?;
    audit::client_access_revoked(client_id, &username);
    Ok(pages::see_other(
        &format!("{}?done=revoked", path(&state.config)),
        &[],
    ))
}

/// POST: ends this browser's login session.
async fn sign_out(
    State(state): State<AppState>,
    cookies: Cookies,
    _form: CsrfCheckedForm,
) -> Result<Response, AuthorizeError> {
    let cleared = session::end(&state, &cookies).await?;
    Ok(pages::see_other(
        &format!("{}?done=signed-out", path(&state.config)),
        &[cleared],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(client: &str, scope: &str, resource: &str, at: i64) -> GrantRow {
        GrantRow {
            client_id: client.into(),
            scope: scope.into(),
            resource: resource.into(),
            at,
        }
    }

    #[test]
    fn grants_are_grouped_per_client_latest_first() {
        let apps = connected_apps(&[
            grant("a", "mcp:tools", "https://r/mcp", 10),
            grant("b", "mcp:tools", "https://r/mcp", 20),
            grant("a", "mcp:tools mcp:admin", "https://r/mcp", 30),
            grant("a", "mcp:tools", "https://other/mcp", 5),
        ]);
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].client_id, "a");
        assert_eq!(apps[0].scopes, vec!["mcp:tools", "mcp:admin"]);
        assert_eq!(
            apps[0].resources,
            vec!["https://r/mcp", "https://other/mcp"]
        );
        assert_eq!(apps[0].latest, 30);
        assert_eq!(apps[1].client_id, "b");
        assert!(connected_apps(&[]).is_empty());
    }

    #[test]
    fn moments_are_shown_in_utc() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_796_219_100), "2026-12-02 13:45 UTC");
        assert_eq!(when(i64::MAX), "at an unknown time");
    }

    #[test]
    fn only_known_notices_are_shown() {
        assert_eq!(
            notice(&Params::parse(b"done=revoked")),
            Some("Access revoked.")
        );
        assert_eq!(notice(&Params::parse(b"done=%3Cscript%3E")), None);
        assert_eq!(notice(&Params::default()), None);
    }
}
