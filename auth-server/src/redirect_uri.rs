//! Redirect URI rules: what may be registered, and when a requested URI matches a registered one.
//! Only https URIs and http URIs on a loopback host are accepted (OAuth 2.1 / RFC 8252 §7.3).

use url::{Host, Url};

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => *d == "localhost",
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Validates a redirect URI for registration (static clients, RFC 7591, metadata documents).
/// Rejects anything whose written form is not exactly its normalized form, so case, whitespace,
/// percent-encoding and dot-segment tricks cannot create look-alikes.
pub fn validate_registered(uri: &str) -> Result<Url, String> {
    if uri.len() > 2000 {
        return Err("longer than 2000 characters".into());
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".into());
    }
    let url = Url::parse(uri).map_err(|e| format!("not an absolute URL: {e}"))?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err("must not contain a fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() || uri.contains('@') {
        return Err("must not contain user information".into());
    }
    let host = url.host().ok_or_else(|| "must have a host".to_string())?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => return Err("http is only allowed for loopback hosts; use https".into()),
        other => {
            return Err(format!(
                "scheme `{other}` is not allowed (https or loopback http only)"
            ));
        }
    }
    if url.as_str() != uri {
        return Err(format!(
            "must be written in normalized form (`{}`)",
            url.as_str()
        ));
    }
    Ok(url)
}

/// Does the redirect URI of an authorization request match a registered one? Exact string
/// match, except that for loopback http URIs the port may differ (RFC 8252 §7.3).
pub fn matches_registered(requested: &str, registered: &[String]) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    let Ok(req) = validate_registered(requested) else {
        return false;
    };
    let loopback = req.scheme() == "http" && req.host().as_ref().is_some_and(is_loopback_host);
    if !loopback {
        return false;
    }
    registered.iter().any(|r| match Url::parse(r) {
        Ok(reg) => {
            reg.scheme() == req.scheme()
                && reg.host() == req.host()
                && reg.path() == req.path()
                && reg.query() == req.query()
        }
        Err(_) => false,
    })
}

/// The host shown on the consent page ("you will be sent to ...").
pub fn display_host(uri: &str) -> String {
    Url::parse(uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

/// Appends query parameters to a (validated) redirect URI.
pub fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    match Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        Err(_) => uri.to_string(),
    }
}

/// Where an authorization response goes: a verified redirect URI, the client's `state` (when
/// it sent one) and the issuer, which every response names as `iss` (RFC 9207).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRedirect {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub issuer: String,
}

impl ClientRedirect {
    /// The redirect URI with `params`, then `state` and `iss`.
    pub fn location(&self, params: &[(&str, &str)]) -> String {
        let mut all: Vec<(&str, &str)> = params.to_vec();
        if let Some(s) = &self.state {
            all.push(("state", s));
        }
        all.push(("iss", &self.issuer));
        with_params(&self.redirect_uri, &all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_accepts_https_and_loopback_http() {
        for ok in [
            "https://app.example.com/callback",
            "https://app.example.com/cb?x=1",
            "http://localhost:3000/callback",
            "http://127.0.0.1:53682/",
            "http://[::1]:8080/cb",
        ] {
            assert!(validate_registered(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn registration_rejects_dangerous_and_ambiguous_uris() {
        for bad in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "http://example.com/cb",
            "HTTPS://app.example.com/cb",
            "https://App.example.com/cb",
            " https://app.example.com/cb",
            "https://app.example.com/cb ",
            "https://app.example.com/c b",
            "https://user@app.example.com/cb",
            "http://localhost@evil.example/cb",
            "https://app.example.com/cb#frag",
            "https://app.example.com/a/../cb",
            "https://app.example.com",
            "/relative",
            "custom.scheme:/cb",
        ] {
            assert!(validate_registered(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_is_exact_except_loopback_port() {
        let reg = vec![
            "https://app.example.com/callback".to_string(),
            "http://127.0.0.1:3000/cb".to_string(),
            "http://localhost/cb".to_string(),
        ];
        assert!(matches_registered("https://app.example.com/callback", &reg));
        assert!(!matches_registered(
            "https://app.example.com/callback/",
            &reg
        ));
        assert!(!matches_registered(
            "https://app.example.com/Callback",
            &reg
        ));
        assert!(!matches_registered(
            "https://app.example.com/callback?x=1",
            &reg
        ));
        assert!(!matches_registered(
            "https://app.example.com/callback#x",
            &reg
        ));
        assert!(!matches_registered(
            "https://app.example.com:444/callback",
            &reg
        ));
        assert!(matches_registered("http://127.0.0.1:49152/cb", &reg));
        assert!(matches_registered("http://localhost:8123/cb", &reg));
        assert!(!matches_registered("http://127.0.0.1:49152/cb2", &reg));
        assert!(!matches_registered("http://localhost:8123/cb?x", &reg));
        assert!(!matches_registered(
            "http://localhost@evil.example/cb",
            &reg
        ));
        assert!(!matches_registered("http://[::1]:3000/cb", &reg));
    }

    #[test]
    fn params_are_appended_and_encoded() {
        let u = with_params(
            "https://a.example/cb?x=1",
            &[("code", "c"), ("state", "<s&>")],
        );
        assert_eq!(u, "https://a.example/cb?x=1&code=c&state=%3Cs%26%3E");
        assert_eq!(display_host("http://127.0.0.1:5/cb"), "127.0.0.1");
    }
}
