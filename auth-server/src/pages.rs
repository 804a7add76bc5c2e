//! HTML pages (login, consent, errors) and browser redirects. maud escapes every interpolated
//! value.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::params::Params;
use crate::policy::Withheld;
use crate::redirect_uri::Recipient;

const STYLE: &str = "body{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}\
.unverified{color:#a40;font-weight:bold}label{display:block;margin:.5rem 0}\
.error{color:#b00}button{margin-right:.5rem}";

/// Every page: no framing (X-Frame-Options, CSP frame-ancestors), no caching, no referrer.
pub fn respond(status: StatusCode, markup: Markup, cookies: &[String]) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
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

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (STYLE) }
            }
            body { h1 { (title) } (body) }
        }
    }
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
    pub action: &'a str,
}

/// An identity provider offered on the login page.
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
        p { "Client ID: " code { (v.client_id) } }
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

/// The login page: a button per identity provider, and the password form when `local` holds.
pub fn login(
    view: &RequestView<'_>,
    request: &Params,
    csrf: &str,
    error: Option<&str>,
    providers: &[ProviderChoice<'_>],
    local: bool,
) -> Markup {
    layout(
        "Sign in",
        html! {
            (client_line(view))
            @if let Some(e) = error { p.error { (e) } }
            @for p in providers {
                form method="post" action=(view.action) {
                    (hidden_fields(request, csrf))
                    button type="submit" name="action" value={ "upstream:" (p.id) } {
                        "Sign in with " (p.display_name)
                    }
                }
            }
            @if local {
                @if !providers.is_empty() { p { "Or sign in with a local account:" } }
                form method="post" action=(view.action) {
                    (hidden_fields(request, csrf))
                    label { "Username " input type="text" name="username" autocomplete="username" required; }
                    label { "Password " input type="password" name="password" autocomplete="current-password" required; }
                    button type="submit" name="action" value="login" { "Sign in" }
                }
            }
        },
    )
}

pub fn consent(view: &RequestView<'_>, request: &Params, csrf: &str, username: &str) -> Markup {
    layout(
        "Authorize access",
        html! {
            p { "Signed in as " strong { (username) } }
            (client_line(view))
            (recipient_line(&view.recipient))
            p { "It asks for access to " code { (view.resource) } " with these scopes:" }
            ul { @for s in view.scopes { li { code { (s) } } } }
            @if !view.withheld.is_empty() {
                p { "Not granted, because your account may not have them:" }
                ul.withheld { @for w in view.withheld { li { code { (w.scope) } ": " (w.reason) } } }
            }
            form method="post" action=(view.action) {
                (hidden_fields(request, csrf))
                button type="submit" name="action" value="approve" { "Allow" }
                button type="submit" name="action" value="deny" { "Deny" }
            }
        },
    )
}

/// A failed sign-in: what happened, and a link to start again when there is a request to go
/// back to.
pub fn failure(title: &str, message: &str, back: Option<&str>) -> Markup {
    layout(
        title,
        html! {
            p.error { (message) }
            @if let Some(href) = back {
                p { a href=(href) { "Try again" } }
            }
            p { "Or close this window and return to the application." }
        },
    )
}

pub fn error(title: &str, message: &str) -> Markup {
    layout(
        title,
        html! {
            p.error { (message) }
            p { "You can close this window and return to the application." }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflected_values_are_escaped() {
        let scopes = vec!["<script>s</script>".to_string()];
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
}
