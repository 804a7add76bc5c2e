//! Cross-site request forgery defences for the login and consent forms, as pure decisions:
//! where a posted form may come from, and which CSRF token it must repeat.
//!
//! - **Origin.** Browsers send `Origin` (and `Sec-Fetch-Site`) with every form POST. A form
//!   posted from another site, or from an opaque origin (`Origin: null`), is refused; a request
//!   without these headers (an older browser, a script) falls back on the token alone.
//! - **Token bound to the session.** A plain double-submit token (a cookie repeated in the form)
//!   can be beaten by anyone who can plant a cookie in the browser (a sibling subdomain, a
//!   network attacker on plain http): they plant a value they know and post it. Once a login
//!   session exists, the consent form's token is instead derived from the session id, which
//!   only the signed-in browser holds, so a planted cookie cannot produce it. Before sign-in
//!   there is nothing to bind to, and the login form keeps the pre-session cookie.

use axum::http::HeaderMap;

use crate::secrets;

/// The CSRF token of forms shown to a browser with the login session `session_id`.
pub fn session_bound_token(session_id: &str) -> String {
    secrets::token_hash(&format!("csrf-token-of-session:{session_id}"))
}

/// Which token a posted form must carry.
pub struct Expected<'a> {
    /// The browser's login session cookie, if it sent one.
    pub session_id: Option<&'a str>,
    /// The browser's pre-session CSRF cookie, if it sent one.
    pub pre_session: Option<&'a str>,
    /// A sign-in form (the only form that is shown before a session exists).
    pub is_sign_in: bool,
}

/// Does the posted `token` fit? With a session, a consent decision must carry the
/// session-bound token; a sign-in may carry either (it may have been shown before the session
/// started, in another tab); without a session, the pre-session cookie is repeated.
pub fn token_fits(expected: &Expected<'_>, token: &str) -> bool {
    let bound = expected
        .session_id
        .is_some_and(|s| secrets::constant_time_eq(&session_bound_token(s), token));
    let pre_session = expected
        .pre_session
        .is_some_and(|c| secrets::constant_time_eq(c, token));
    match expected.session_id {
        Some(_) if !expected.is_sign_in => bound,
        _ => bound || pre_session,
    }
}

/// Refuses a form posted from anywhere but `issuer_origin` (`https://host[:port]`), as far as
/// the browser says: `Origin` must be that origin, and `Sec-Fetch-Site`, when sent, must be
/// `same-origin`. The error says what was wrong.
pub fn check_origin(headers: &HeaderMap, issuer_origin: &str) -> Result<(), String> {
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if origin != issuer_origin {
            return Err(format!(
                "the form was posted from another origin ({})",
                if origin == "null" {
                    "an opaque origin"
                } else {
                    "not this server"
                }
            ));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if site != "same-origin" {
            return Err(format!(
                "the form was posted from another site (Sec-Fetch-Site: {site})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const ISSUER: &str = "https://auth.example.com";

    #[test]
    fn only_same_origin_posts_pass_the_origin_check() {
        assert!(check_origin(&headers(&[]), ISSUER).is_ok());
        assert!(
            check_origin(
                &headers(&[("origin", ISSUER), ("sec-fetch-site", "same-origin")]),
                ISSUER
            )
            .is_ok()
        );
        for refused in [
            vec![("origin", "https://evil.example")],
            vec![("origin", "null")],
            vec![("origin", "http://auth.example.com")],
            vec![("origin", ISSUER), ("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            vec![("sec-fetch-site", "none")],
        ] {
            assert!(
                check_origin(&headers(&refused), ISSUER).is_err(),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn with_a_session_a_consent_needs_the_session_bound_token() {
        let bound = session_bound_token("sess");
        let with_session = |is_sign_in| Expected {
            session_id: Some("sess"),
            pre_session: Some("planted"),
            is_sign_in,
        };
        assert!(token_fits(&with_session(false), &bound));
        // A cookie planted by someone else, repeated in their forged form, is not enough.
        assert!(!token_fits(&with_session(false), "planted"));
        assert!(!token_fits(
            &with_session(false),
            &session_bound_token("other")
        ));
        // A sign-in form shown before the session started still works.
        assert!(token_fits(&with_session(true), "planted"));
        assert!(token_fits(&with_session(true), &bound));
        let without_session = Expected {
            session_id: None,
            pre_session: Some("pre"),
            is_sign_in: false,
        };
        assert!(token_fits(&without_session, "pre"));
        assert!(!token_fits(&without_session, "other"));
        let nothing = Expected {
            session_id: None,
            pre_session: None,
            is_sign_in: true,
        };
        assert!(!token_fits(&nothing, ""));
    }
}
