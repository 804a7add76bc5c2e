//! HTML pages (login, consent, errors) and browser redirects. maud escapes every interpolated
//! value.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::{Digest, Sha256};

use crate::config::Branding;
use crate::params::Params;
use crate::policy::Withheld;
use crate::redirect_uri::Recipient;
use crate::state::AppState;

/// The one stylesheet of every page, inlined and allowed by its hash in the
/// Content-Security-Policy: no other style, no script, nothing from another origin. It has no
/// `<`, so it needs no escaping inside `<style>` and its hash is that of these exact bytes.
/// Colours keep a contrast of at least 4.5:1; long identifiers wrap rather than scroll
/// sideways on a phone; every focusable element shows where the keyboard is.
const STYLE: &str = "*,*::before,*::after{box-sizing:border-box}\
html{-webkit-text-size-adjust:100%}\
body{margin:0;background:#f3f4f6;color:#1f2937;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
.top{display:flex;align-items:center;gap:.75rem;max-width:34rem;margin:0 auto;padding:1.25rem 1rem .5rem}\
.top img{height:2.25rem;width:auto;max-width:8rem}\
.product{font-weight:600;font-size:1.05rem;color:#111827}\
main{max-width:34rem;margin:0 auto 2rem;padding:1.5rem 1.25rem;background:#fff;border:1px solid #d1d5db;border-radius:.75rem}\
@media (max-width:30rem){main{border-left:0;border-right:0;border-radius:0}}\
h1{font-size:1.4rem;line-height:1.3;margin:0 0 1rem}\
h2{font-size:1.05rem;margin:1.25rem 0 .5rem}\
p{margin:.5rem 0}\
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em;background:#f3f4f6;padding:.05rem .3rem;border-radius:.25rem}\
code,strong,.wrap{overflow-wrap:anywhere;word-break:break-word}\
.muted{color:#4b5563;font-size:.9rem}\
.unverified{color:#9a3412;font-weight:600}\
.error{color:#991b1b;background:#fef2f2;border:1px solid #fecaca;border-radius:.5rem;padding:.6rem .8rem}\
.notice{color:#065f46;background:#ecfdf5;border:1px solid #a7f3d0;border-radius:.5rem;padding:.6rem .8rem}\
ul.scopes,ul.apps{list-style:none;padding:0;margin:.5rem 0 1rem}\
ul.scopes li{padding:.55rem .75rem;border:1px solid #e5e7eb;border-radius:.5rem;margin-bottom:.4rem}\
ul.scopes .what{display:block;font-weight:600}\
ul.withheld li{border-color:#fecaca;background:#fef2f2}\
ul.apps li{padding:.75rem;border:1px solid #e5e7eb;border-radius:.5rem;margin-bottom:.6rem}\
form{margin:.75rem 0}\
label{display:block;margin:.75rem 0 .25rem;font-weight:600}\
input[type=text],input[type=password]{display:block;width:100%;margin-top:.25rem;padding:.6rem .7rem;font:inherit;color:inherit;border:1px solid #6b7280;border-radius:.4rem;background:#fff}\
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin-top:1rem}\
button{font:inherit;font-weight:600;padding:.6rem 1.1rem;border-radius:.4rem;border:1px solid #1d4ed8;background:#1d4ed8;color:#fff;cursor:pointer;min-height:2.75rem}\
button:hover{background:#1e40af}\
button.secondary{background:#fff;color:#1f2937;border-color:#6b7280}\
button.secondary:hover{background:#f3f4f6}\
button.provider{width:100%}\
a{color:#1d4ed8}\
a:focus-visible,button:focus-visible,input:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}\
.divider{text-align:center;color:#4b5563;margin:1rem 0}";

/// Every page's Content-Security-Policy: the stylesheet above (by hash), images from `data:`
/// URIs (the operator's logo), nothing else; never framed.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    let policy = format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src data:; frame-ancestors 'none'; base-uri 'none'"
    );
    // The policy is ASCII (a base64 hash in fixed text), so this cannot fail.
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
});

/// A page before it is put in the layout: its title and the content under the heading.
#[derive(Clone)]
pub struct Page {
    title: String,
    body: Markup,
}

impl Page {
    fn new(title: &str, body: Markup) -> Self {
        Page {
            title: title.to_string(),
            body,
        }
    }

    /// The whole document, with the operator's name and logo.
    pub fn render(&self, branding: &Branding) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · " (branding.product_name) }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    header.top {
                        @if let Some(logo) = &branding.logo_url {
                            // The product name follows as text, so the logo is decorative.
                            img src=(logo) alt="";
                        }
                        span.product { (branding.product_name) }
                    }
                    main { h1 { (self.title) } (self.body) }
                }
            }
        }
    }

    /// The document with the default branding.
    #[cfg(test)]
    pub fn into_string(self) -> String {
        self.render(&Branding::default()).into_string()
    }
}

/// Every page: no framing (X-Frame-Options, CSP frame-ancestors), no caching, no referrer to
/// other sites.
/// The page is rendered with the default branding and kept in the response's extensions, so
/// that [`brand`] can render it again with the operator's: error pages are made where the
/// configuration is out of reach.
pub fn respond(status: StatusCode, page: Page, cookies: &[String]) -> Response {
    let mut response = (status, page.render(&Branding::default()).into_string()).into_response();
    response.extensions_mut().insert(page);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        // Not `no-referrer`: under it browsers send `Origin: null` with every form post, even
        // to the page's own origin, and the cross-site check (session::CsrfCheckedForm) could
        // not tell the server's own forms from a forged one. `same-origin` still sends nothing
        // to the client's redirect URI or any other site.
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    response
}

/// Middleware: renders every page with the configured product name and logo.
pub async fn brand(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if state.config.branding == Branding::default() {
        return response;
    }
    let Some(page) = response.extensions_mut().remove::<Page>() else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = page.render(&state.config.branding).into_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// A `303 See Other` to `location`, never cached, setting `cookies`.
pub fn see_other(location: &str, cookies: &[String]) -> Response {
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

fn hidden_fields(request: &Params, csrf: &str) -> Markup {
    html! {
        @for (name, value) in request.pairs() {
            input type="hidden" name=(name) value=(value);
        }
        input type="hidden" name="csrf_token" value=(csrf);
    }
}

/// What the login and consent pages say about the request.
pub struct RequestView<'a> {
    pub client_id: &'a str,
    pub client_name: Option<&'a str>,
    pub verified: bool,
    /// Who receives the authorization response.
    pub recipient: Recipient,
    pub scopes: &'a [String],
    /// Requested scopes the person may not have (from the identity provider's scope rules).
    pub withheld: &'a [Withheld],
    pub resource: &'a str,
    /// What the operator says each of the resource's scopes allows.
    pub descriptions: Option<&'a BTreeMap<String, String>>,
    pub action: &'a str,
}

impl RequestView<'_> {
    fn describe(&self, scope: &str) -> Option<&str> {
        self.descriptions
            .and_then(|d| d.get(scope))
            .map(String::as_str)
    }
}

/// An identity provider offered on a sign-in page.
pub struct ProviderChoice<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
}

fn client_line(v: &RequestView<'_>) -> Markup {
    html! {
        p {
            "Application: "
            strong { (v.client_name.unwrap_or(v.client_id)) }
            @if !v.verified {
                " " span.unverified { "(unverified: the name is chosen by the application itself)" }
            }
        }
        p.muted { "Client ID: " code { (v.client_id) } }
    }
}

/// Where the answer goes. A private-use redirect is spelled out: any installed program can
/// claim a scheme, so the user is told which app will receive the code.
fn recipient_line(recipient: &Recipient) -> Markup {
    match recipient {
        Recipient::Website(host) => html! {
            p { "After you decide, you will be sent to " strong { (host) } "." }
        },
        Recipient::ThisComputer(address) => html! {
            p {
                "After you decide, your browser will hand the answer to a program on this computer that listens at "
                strong { (address) } "."
            }
        },
        Recipient::App { links, name } => html! {
            p.app-redirect {
                "After you allow, your browser will hand the code to the app that handles "
                code { (links) } " links"
                @if let Some(name) = name { ": " strong { (name) } }
                ". Allow only if you started this from that app."
            }
        },
    }
}

/// A button per identity provider and, when `local` holds, the username and password form.
/// Every form posts `hidden` and the CSRF token to `action`; the buttons' `action` values are
/// `upstream:<id>` and `login`.
fn sign_in_forms(
    action: &str,
    hidden: &Markup,
    providers: &[ProviderChoice<'_>],
    local: bool,
) -> Markup {
    html! {
        @for p in providers {
            form method="post" action=(action) {
                (hidden)
                button.provider type="submit" name="action" value={ "upstream:" (p.id) } {
                    "Sign in with " (p.display_name)
                }
            }
        }
        @if local {
            @if !providers.is_empty() { p.divider { "or sign in with a local account" } }
            form method="post" action=(action) {
                (hidden)
                label for="username" { "Username" }
                input #username type="text" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                div.actions { button type="submit" name="action" value="login" { "Sign in" } }
            }
        }
    }
}

/// The login page: a button per identity provider, and the password form when `local` holds.
pub fn login(
    view: &RequestView<'_>,
    request: &Params,
    csrf: &str,
    error: Option<&str>,
    providers: &[ProviderChoice<'_>],
    local: bool,
) -> Page {
    Page::new(
        "Sign in",
        html! {
            (client_line(view))
            @if let Some(e) = error { p.error role="alert" { (e) } }
            (sign_in_forms(view.action, &hidden_fields(request, csrf), providers, local))
        },
    )
}

pub fn consent(view: &RequestView<'_>, request: &Params, csrf: &str, username: &str) -> Page {
    Page::new(
        "Authorize access",
        html! {
            p.muted { "Signed in as " strong { (username) } }
            (client_line(view))
            p { "It asks for access to " code { (view.resource) } ":" }
            ul.scopes {
                @for s in view.scopes {
                    li {
                        @if let Some(what) = view.describe(s) {
                            span.what { (what) }
                            code { (s) }
                        } @else {
                            span.what { code { (s) } }
                        }
                    }
                }
            }
            @if !view.withheld.is_empty() {
                h2 { "Not granted" }
                p { "Your account may not have these, so the application will not get them:" }
                ul.scopes.withheld {
                    @for w in view.withheld {
                        li {
                            @if let Some(what) = view.describe(&w.scope) { span.what { (what) } }
                            code { (w.scope) } " " span.muted { (w.reason) }
                        }
                    }
                }
            }
            (recipient_line(&view.recipient))
            form method="post" action=(view.action) {
                (hidden_fields(request, csrf))
                div.actions {
                    button type="submit" name="action" value="approve" { "Allow" }
                    button.secondary type="submit" name="action" value="deny" { "Deny" }
                }
            }
        },
    )
}

/// A failed sign-in: what happened, and a link to start again when there is a request to go
/// back to.
pub fn failure(title: &str, message: &str, back: Option<&str>) -> Page {
    Page::new(
        title,
        html! {
            p.error role="alert" { (message) }
            @if let Some(href) = back {
                p { a href=(href) { "Try again" } }
            }
            p { "Or close this window and return to the application." }
        },
    )
}

pub fn error(title: &str, message: &str) -> Page {
    Page::new(
        title,
        html! {
            p.error role="alert" { (message) }
            p { "You can close this window and return to the application." }
        },
    )
}

/// An MCP client as the connected-apps page shows it.
pub struct AppView {
    pub client_id: String,
    pub client_name: Option<String>,
    pub verified: bool,
    /// Each granted scope with the operator's description of it, when there is one.
    pub scopes: Vec<(String, Option<String>)>,
    pub resources: Vec<String>,
    /// When the person last authorized it, as shown.
    pub since: String,
}

impl AppView {
    fn name(&self) -> &str {
        self.client_name.as_deref().unwrap_or(&self.client_id)
    }
}

/// The connected-apps page: each client the person authorized, with a revoke button, and the
/// sign-out button. Forms post to `revoke_action` and `sign_out_action`.
pub fn account(
    username: &str,
    apps: &[AppView],
    csrf: &str,
    revoke_action: &str,
    sign_out_action: &str,
    notice: Option<&str>,
) -> Page {
    Page::new(
        "Connected apps",
        html! {
            p.muted { "Signed in as " strong { (username) } }
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            @if apps.is_empty() {
                p { "No application has access to your account." }
            } @else {
                p { "These applications can act for you. Revoking one ends its access when its current access token expires, and it must ask you again." }
                ul.apps {
                    @for app in apps {
                        li {
                            strong { (app.name()) }
                            @if !app.verified { " " span.unverified { "(unverified)" } }
                            p.muted { "Client ID: " code { (app.client_id) } }
                            p.muted { "Authorized " (app.since) }
                            @for r in &app.resources { p.muted { "For " code { (r) } } }
                            ul.scopes {
                                @for (s, description) in &app.scopes {
                                    li {
                                        @if let Some(what) = description {
                                            span.what { (what) }
                                            code { (s) }
                                        } @else {
                                            span.what { code { (s) } }
                                        }
                                    }
                                }
                            }
                            form method="post" action=(revoke_action) {
                                input type="hidden" name="client_id" value=(app.client_id);
                                input type="hidden" name="csrf_token" value=(csrf);
                                button.secondary type="submit" aria-label={ "Revoke access of " (app.name()) } { "Revoke access" }
                            }
                        }
                    }
                }
            }
            form method="post" action=(sign_out_action) {
                input type="hidden" name="csrf_token" value=(csrf);
                div.actions { button.secondary type="submit" { "Sign out" } }
            }
        },
    )
}

/// The sign-in page of the connected-apps page, for a browser without a session.
pub fn account_sign_in(
    action: &str,
    csrf: &str,
    notice: Option<&str>,
    error: Option<&str>,
    providers: &[ProviderChoice<'_>],
    local: bool,
) -> Page {
    let hidden = html! { input type="hidden" name="csrf_token" value=(csrf); };
    Page::new(
        "Sign in to see your connected apps",
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if providers.is_empty() && !local {
                p { "This server has no way to sign in." }
            }
            (sign_in_forms(action, &hidden, providers, local))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflected_values_are_escaped() {
        let scopes = vec!["<script>s</script>".to_string()];
        let descriptions = BTreeMap::from([(scopes[0].clone(), "<script>d</script>".to_string())]);
        let view = RequestView {
            client_id: "\"><script>id</script>",
            client_name: Some("<script>alert(1)</script>"),
            verified: false,
            recipient: Recipient::App {
                links: "<b>scheme</b>".into(),
                name: Some("<b>app</b>".into()),
            },
            scopes: &scopes,
            withheld: &[],
            resource: "<script>r</script>",
            descriptions: Some(&descriptions),
            action: "/authorize",
        };
        let request = Params::parse(b"state=%22%3E%3Cscript%3Ealert(1)%3C/script%3E");
        for page in [
            login(
                &view,
                &request,
                "csrf",
                Some("<script>e</script>"),
                &[ProviderChoice {
                    id: "<script>p</script>",
                    display_name: "<script>n</script>",
                }],
                true,
            ),
            failure(
                "<script>t</script>",
                "<script>m</script>",
                Some("\"><script>"),
            ),
            consent(&view, &request, "csrf", "<script>u</script>"),
            error("<script>t</script>", "<script>m</script>"),
            account(
                "<script>u</script>",
                &[AppView {
                    client_id: "<script>c</script>".into(),
                    client_name: Some("<script>n</script>".into()),
                    verified: false,
                    scopes: vec![(
                        "<script>s</script>".into(),
                        Some("<script>d</script>".into()),
                    )],
                    resources: vec!["<script>r</script>".into()],
                    since: "<script>w</script>".into(),
                }],
                "\"><script>",
                "/account/revoke",
                "/account/sign-out",
                Some("<script>n</script>"),
            ),
            account_sign_in(
                "/account",
                "\"><script>",
                Some("<script>n</script>"),
                Some("<script>e</script>"),
                &[],
                true,
            ),
        ] {
            let s = page.into_string();
            assert!(!s.contains("<script") && !s.contains("<b>"), "{s}");
            assert!(s.contains("&lt;script&gt;"), "{s}");
        }
    }

    fn consent_for(recipient: Recipient, verified: bool) -> String {
        let scopes = vec!["mcp:tools".to_string()];
        let view = RequestView {
            client_id: "c",
            client_name: Some("Cursor"),
            verified,
            recipient,
            scopes: &scopes,
            resource: "https://mcp.example/mcp",
            descriptions: None,
            action: "/authorize",
            withheld: &[],
        };
        consent(&view, &Params::default(), "csrf", "demo").into_string()
    }

    #[test]
    fn the_consent_page_names_the_app_that_receives_a_private_use_redirect() {
        let page = consent_for(
            Recipient::App {
                links: "cursor://".into(),
                name: Some("anysphere.cursor-mcp".into()),
            },
            false,
        );
        assert!(
            page.contains("the app that handles <code>cursor://</code> links: <strong>anysphere.cursor-mcp</strong>"),
            "{page}"
        );
        assert!(page.contains("class=\"unverified\""), "{page}");
        let unnamed = consent_for(
            Recipient::App {
                links: "com.example.app:".into(),
                name: None,
            },
            true,
        );
        assert!(
            unnamed.contains("<code>com.example.app:</code> links."),
            "{unnamed}"
        );
        assert!(!unnamed.contains("class=\"unverified\""), "{unnamed}");
        let web = consent_for(Recipient::Website("app.example.com".into()), false);
        assert!(
            web.contains("sent to <strong>app.example.com</strong>"),
            "{web}"
        );
        let local = consent_for(Recipient::ThisComputer("127.0.0.1:3000".into()), false);
        assert!(local.contains("<strong>127.0.0.1:3000</strong>"), "{local}");
    }

    #[test]
    fn the_policy_allows_the_stylesheet_by_its_hash_and_nothing_else() {
        let response = respond(StatusCode::OK, error("t", "m"), &[]);
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        let page = error("t", "m").into_string();
        let style = page
            .split_once("<style>")
            .and_then(|(_, rest)| rest.split_once("</style>"))
            .map(|(style, _)| style)
            .unwrap();
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style));
        assert!(
            csp.contains(&format!("style-src 'sha256-{hash}';")),
            "{csp}"
        );
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(
            !csp.contains("unsafe") && !csp.contains("script-src"),
            "{csp}"
        );
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert!(
            !page.contains(" style="),
            "inline style attributes would be refused: {page}"
        );
    }

    #[test]
    fn the_consent_page_shows_each_description_next_to_its_scope() {
        let scopes = vec!["mcp:tools".to_string(), "mcp:admin".to_string()];
        let descriptions = BTreeMap::from([(
            "mcp:admin".to_string(),
            "Run administrative tools".to_string(),
        )]);
        let view = RequestView {
            client_id: "c",
            client_name: None,
            verified: true,
            recipient: Recipient::Website("app.example".into()),
            scopes: &scopes,
            withheld: &[],
            resource: "https://mcp.example/mcp",
            descriptions: Some(&descriptions),
            action: "/authorize",
        };
        let page = consent(&view, &Params::default(), "csrf", "demo").into_string();
        assert!(
            page.contains(
                "<span class=\"what\">Run administrative tools</span><code>mcp:admin</code>"
            ),
            "{page}"
        );
        assert!(
            page.contains("<span class=\"what\"><code>mcp:tools</code></span>"),
            "{page}"
        );
    }

    #[test]
    fn pages_carry_the_operators_name_and_logo() {
        let branding = Branding {
            product_name: "Acme <Tools>".into(),
            logo_url: Some("data:image/png;base64,iVBORw0KGgo=".into()),
        };
        let page = error("Oops", "m").render(&branding).into_string();
        assert!(
            page.contains("<title>Oops · Acme &lt;Tools&gt;</title>"),
            "{page}"
        );
        assert!(
            page.contains("<img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"\">"),
            "{page}"
        );
        let plain = error("Oops", "m").into_string();
        assert!(!plain.contains("<img"), "{plain}");
        assert!(
            plain.contains(crate::config::DEFAULT_PRODUCT_NAME),
            "{plain}"
        );
    }

    #[test]
    fn every_visible_input_has_a_label() {
        let page = login(
            &RequestView {
                client_id: "c",
                client_name: None,
                verified: true,
                recipient: Recipient::Website("app.example".into()),
                scopes: &[],
                withheld: &[],
                resource: "r",
                descriptions: None,
                action: "/authorize",
            },
            &Params::default(),
            "csrf",
            None,
            &[],
            true,
        )
        .into_string();
        for id in ["username", "password"] {
            assert!(page.contains(&format!("<label for=\"{id}\">")), "{page}");
            assert!(page.contains(&format!("id=\"{id}\"")), "{page}");
        }
    }
}
