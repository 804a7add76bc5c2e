//! Redirect URI rules: what may be registered, and when a requested URI matches a registered one.
//!
//! Three kinds of redirect URI are accepted:
//! - `https` URIs (web clients, and native apps that claim an https URL, RFC 8252 §7.2);
//! - `http` URIs on a loopback host (native apps listening on this machine, RFC 8252 §7.3);
//! - private-use URI schemes (native apps, RFC 8252 §7.1), such as
//!   `com.example.app:/callback` or, as real clients register them,
//!   `cursor://anysphere.cursor-mcp/oauth/callback` and `vscode://publisher.extension/...`.
//!   The operator can narrow these with `private_use_redirect_schemes`.
//!
//! A private-use scheme is anything that is not one of the schemes in [`REFUSED_SCHEMES`]:
//! schemes a browser (or the operating system on its behalf) handles itself, where a redirect
//! could run code in some origin, read or show local data, or hand the code to a party that is
//! not the client. Every URI must also be written exactly in its normalized form, without
//! userinfo or fragment, so case, whitespace, percent-encoding and dot-segment tricks cannot
//! create look-alikes of a registered URI.

use url::{Host, Url};

use crate::oauth::ApplicationType;

/// Longest accepted redirect URI.
pub const MAX_REDIRECT_URI_CHARS: usize = 2000;

/// Schemes that are never accepted as redirect URIs, with the reason. The browser itself (or
/// the system on its behalf) handles these, so sending an authorization response to them could
/// run script, show or read local or attacker-supplied content with some origin's privileges,
/// or give the code to a program other than the client:
pub const REFUSED_SCHEMES: &[(&str, &str)] = &[
    // Run script in the origin of the page that navigates (or in a blank one).
    ("javascript", "runs script in the browser"),
    ("vbscript", "runs script in the browser"),
    ("livescript", "runs script in the browser"),
    ("mocha", "runs script in the browser"),
    // Documents built from the URI itself or from a page's memory: an attacker controls them.
    (
        "data",
        "makes the browser show content taken from the URI itself",
    ),
    ("blob", "names content held in a web page's memory"),
    ("filesystem", "names a web page's sandboxed files"),
    (
        "about",
        "opens a browser-internal page that can inherit another origin",
    ),
    (
        "view-source",
        "makes the browser render a source view of another URI",
    ),
    ("srcdoc", "names an inline document"),
    // Local data and browser internals.
    ("file", "reads files on the user's computer"),
    ("resource", "names browser-internal files"),
    ("jar", "reads files inside archives"),
    ("chrome", "opens browser-internal pages"),
    ("chrome-untrusted", "opens browser-internal pages"),
    ("chrome-search", "opens browser-internal pages"),
    ("chrome-extension", "opens a browser extension's pages"),
    ("moz-extension", "opens a browser extension's pages"),
    ("safari-extension", "opens a browser extension's pages"),
    ("safari-web-extension", "opens a browser extension's pages"),
    ("ms-browser-extension", "opens a browser extension's pages"),
    ("edge", "opens browser-internal pages"),
    ("opera", "opens browser-internal pages"),
    ("brave", "opens browser-internal pages"),
    ("vivaldi", "opens browser-internal pages"),
    ("devtools", "opens the browser's developer tools"),
    (
        "res",
        "reads resources from programs on the user's computer",
    ),
    ("ms-appx", "reads files of installed applications"),
    ("ms-appx-web", "reads files of installed applications"),
    ("shell", "opens folders on the user's computer"),
    (
        "intent",
        "lets the page choose any installed app, the browser included",
    ),
    // Not navigation targets of a web browser, or other network protocols: the code would
    // travel in clear text or to a server rather than to the client.
    ("ws", "is a WebSocket URL, not a redirect target"),
    ("wss", "is a WebSocket URL, not a redirect target"),
    ("ftp", "sends the code to a remote server in clear text"),
    ("ftps", "sends the code to a remote server"),
    ("sftp", "sends the code to a remote server"),
    ("gopher", "sends the code to a remote server in clear text"),
    ("smb", "sends the code to a remote server"),
    ("telnet", "sends the code to a remote server in clear text"),
    ("ssh", "sends the code to a remote server"),
    // Handed to a messaging program: the code would be sent to, or shown to, someone else.
    ("mailto", "hands the code to an email program"),
    ("news", "hands the code to a news reader"),
    ("nntp", "hands the code to a news reader"),
    ("tel", "hands the code to a phone dialer"),
    ("sms", "hands the code to a messaging app"),
    ("irc", "hands the code to a chat program"),
    ("ircs", "hands the code to a chat program"),
    ("xmpp", "hands the code to a chat program"),
    ("sip", "hands the code to a phone program"),
];

/// Why `scheme` is never a redirect URI scheme, if it is refused. `http` and `https` are not
/// private-use schemes; they have their own rules.
pub fn refused_scheme(scheme: &str) -> Option<&'static str> {
    if scheme.len() == 1 {
        // `c:/Windows/...` is a drive letter: Windows opens it as a local file path.
        return Some("is a drive letter: Windows treats it as a local file path");
    }
    REFUSED_SCHEMES
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(scheme))
        .map(|(_, why)| *why)
}

/// Which private-use URI schemes the operator accepts (`private_use_redirect_schemes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateUseSchemes {
    /// Any scheme that is not refused (the default).
    Any,
    /// None: https and loopback http only.
    None,
    /// Only these (lower-case) schemes.
    Only(Vec<String>),
}

impl PrivateUseSchemes {
    fn allows(&self, scheme: &str) -> bool {
        match self {
            PrivateUseSchemes::Any => true,
            PrivateUseSchemes::None => false,
            PrivateUseSchemes::Only(list) => list.iter().any(|s| s == scheme),
        }
    }
}

/// Checks a scheme an operator lists in `private_use_redirect_schemes`: RFC 3986 syntax in
/// lower case, neither http(s) nor a refused scheme.
pub fn check_private_use_scheme(scheme: &str) -> Result<(), String> {
    let mut chars = scheme.chars();
    let syntax = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '+' || c == '-' || c == '.'
        });
    if !syntax {
        return Err(format!(
            "`{scheme}` is not a lower-case URI scheme name (a letter, then letters, digits, `+`, `-` or `.`)"
        ));
    }
    if scheme == "http" || scheme == "https" {
        return Err(format!(
            "`{scheme}` is not a private-use scheme (https and loopback http are always accepted)"
        ));
    }
    if let Some(why) = refused_scheme(scheme) {
        return Err(format!("scheme `{scheme}` can never be allowed: it {why}"));
    }
    Ok(())
}

/// What kind of redirect URI a (valid) URI is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    Https,
    /// `http` on `localhost`, `127.0.0.0/8` or `[::1]`.
    Loopback,
    /// A native app's own scheme.
    PrivateUse,
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => *d == "localhost",
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Validates a redirect URI for registration (static clients, RFC 7591, metadata documents)
/// and for use at `/authorize`, under the operator's `policy` for private-use schemes.
pub fn validate_registered(
    uri: &str,
    policy: &PrivateUseSchemes,
) -> Result<(Url, RedirectKind), String> {
    if uri.chars().count() > MAX_REDIRECT_URI_CHARS {
        return Err(format!("longer than {MAX_REDIRECT_URI_CHARS} characters"));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".into());
    }
    let url = Url::parse(uri).map_err(|e| format!("not an absolute URL: {e}"))?;
    // The scheme is judged before anything else, so the answer names a dangerous scheme
    // whatever else is wrong with the URI.
    let scheme = url.scheme();
    if let Some(why) = refused_scheme(scheme) {
        return Err(format!(
            "scheme `{scheme}` is never allowed for redirect URIs: it {why}"
        ));
    }
    if url.fragment().is_some() || uri.contains('#') {
        return Err("must not contain a fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() || uri.contains('@') {
        return Err("must not contain user information".into());
    }
    let kind = match scheme {
        "https" => {
            url.host().ok_or("must have a host")?;
            RedirectKind::Https
        }
        "http" => match url.host() {
            Some(host) if is_loopback_host(&host) => RedirectKind::Loopback,
            _ => {
                return Err(
                    "plain http is only allowed for loopback hosts (localhost, 127.0.0.1, [::1]); use https"
                        .into(),
                );
            }
        },
        other => {
            if url.cannot_be_a_base() {
                return Err(format!(
                    "a private-use scheme URI must have a path starting with `/` (`{other}:/callback` or `{other}://app/callback`)"
                ));
            }
            if !policy.allows(other) {
                return Err(match policy {
                    PrivateUseSchemes::None => format!(
                        "scheme `{other}` is not allowed: this server accepts only https and loopback http redirect URIs"
                    ),
                    _ => format!(
                        "scheme `{other}` is not among the private-use schemes this server accepts"
                    ),
                });
            }
            RedirectKind::PrivateUse
        }
    };
    // The one accepted difference from the normalized form: an http(s) URI with no path at
    // all, which means the same as the path `/` (RFC 3986 §6.2.3). VS Code registers
    // `http://localhost` and `http://127.0.0.1` this way.
    let authority_only = kind != RedirectKind::PrivateUse
        && url.path() == "/"
        && url.query().is_none()
        && url.as_str().strip_suffix('/') == Some(uri);
    if url.as_str() != uri && !authority_only {
        return Err(format!(
            "must be written in normalized form (`{}`)",
            url.as_str()
        ));
    }
    Ok((url, kind))
}

/// The application type a client gets when it does not declare one: native when any of its
/// redirect URIs is loopback or private-use (only an app on the user's device can receive
/// those), otherwise web.
pub fn infer_application_type(kinds: &[RedirectKind]) -> ApplicationType {
    if kinds.iter().any(|k| *k != RedirectKind::Https) {
        ApplicationType::Native
    } else {
        ApplicationType::Web
    }
}

/// May a client of `application_type` register a redirect URI of `kind`? (OpenID Connect
/// Dynamic Client Registration §2.) Web clients: https only. Native clients: loopback http,
/// private-use schemes, and https (a claimed https URL, RFC 8252 §7.2).
pub fn check_application_type(
    application_type: ApplicationType,
    kind: RedirectKind,
) -> Result<(), String> {
    match (application_type, kind) {
        (ApplicationType::Web, RedirectKind::Loopback | RedirectKind::PrivateUse) => Err(
            "a web client (application_type `web`) may only register https redirect URIs; loopback and private-use URIs are for native clients (application_type `native`)"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// Checks the `redirect_uri` of an authorization request against the registered ones. It must
/// pass [`validate_registered`] under today's `policy` (so narrowing the policy also stops
/// clients registered earlier) and equal a registered URI byte for byte, with one exception
/// for loopback http URIs (RFC 8252 §7.3 and §8.3):
///
/// - the **port** may differ: native apps listen on whatever port the system gives them;
/// - the **host** may not: `localhost`, `127.0.0.1` and `[::1]` are different registrations.
///   RFC 8252 §8.3 advises IP literals because `localhost` can resolve elsewhere, and a
///   client that registered one form has no reason to present another;
/// - the **path** may not;
/// - the **query** must be the registered one, or absent. Some clients (Continue) register
///   `http://localhost:3000/?state=<uuid>` and then use `http://localhost:3000`. Dropping the
///   query keeps the code on the same listener of the same machine; adding or changing one
///   would let a request choose parameters the registration did not.
///
/// Returns the kind of the requested URI, or the reason it is refused.
pub fn check_requested(
    requested: &str,
    registered: &[String],
    policy: &PrivateUseSchemes,
) -> Result<RedirectKind, String> {
    let (req, kind) = validate_registered(requested, policy)?;
    if registered.iter().any(|r| r == requested) {
        return Ok(kind);
    }
    let unregistered = || "the redirect_uri is not registered for this client".to_string();
    if kind != RedirectKind::Loopback {
        return Err(unregistered());
    }
    let matches = |reg: &Url| {
        reg.scheme() == req.scheme()
            && reg.host() == req.host()
            && reg.path() == req.path()
            && (req.query().is_none() || reg.query() == req.query())
    };
    if registered
        .iter()
        .filter_map(|r| Url::parse(r).ok())
        .any(|reg| matches(&reg))
    {
        Ok(kind)
    } else {
        Err(unregistered())
    }
}

/// Who receives the authorization response, as the consent page tells the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A website: its host.
    Website(String),
    /// A program listening on this computer: the loopback host and port.
    ThisComputer(String),
    /// The app that handles links starting with `links` (`cursor://`, `com.example.app:`),
    /// and the name its URI gives itself (the host of `cursor://anysphere.cursor-mcp/...`).
    App { links: String, name: Option<String> },
}

/// Who receives a response sent to `uri` (a validated redirect URI).
pub fn recipient(uri: &str) -> Recipient {
    let Ok(url) = Url::parse(uri) else {
        return Recipient::Website(String::new());
    };
    let host = url.host_str().map(str::to_string);
    match url.scheme() {
        "https" => Recipient::Website(host.unwrap_or_default()),
        "http" => Recipient::ThisComputer(format!(
            "{}{}",
            host.unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        )),
        scheme => Recipient::App {
            links: if uri.starts_with(&format!("{scheme}://")) {
                format!("{scheme}://")
            } else {
                format!("{scheme}:")
            },
            name: host.filter(|h| !h.is_empty()),
        },
    }
}

/// A redirect URI without its query, for the log: a registered query can hold a client's
/// per-flow state (Continue registers `?state=<uuid>`).
pub fn without_query(uri: &str) -> &str {
    uri.split_once('?').map_or(uri, |(before, _)| before)
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

    const ANY: &PrivateUseSchemes = &PrivateUseSchemes::Any;

    fn kind_of(uri: &str) -> Result<RedirectKind, String> {
        validate_registered(uri, ANY).map(|(_, k)| k)
    }

    #[test]
    fn registration_accepts_https_loopback_http_and_native_app_schemes() {
        for (ok, kind) in [
            ("https://app.example.com/callback", RedirectKind::Https),
            ("https://app.example.com/cb?x=1", RedirectKind::Https),
            ("http://localhost:3000/callback", RedirectKind::Loopback),
            ("http://127.0.0.1:53682/", RedirectKind::Loopback),
            ("http://[::1]:8080/cb", RedirectKind::Loopback),
            ("http://localhost:3000/?state=0b6a", RedirectKind::Loopback),
            ("http://localhost", RedirectKind::Loopback),
            ("http://127.0.0.1", RedirectKind::Loopback),
            ("https://app.example.com", RedirectKind::Https),
            (
                "cursor://anysphere.cursor-mcp/oauth/callback",
                RedirectKind::PrivateUse,
            ),
            (
                "vscode://saoudrizwan.claude-dev/mcp-auth/callback/3f2a9c",
                RedirectKind::PrivateUse,
            ),
            ("com.example.app:/callback", RedirectKind::PrivateUse),
            (
                "com.example.app:/oauth2redirect/x?y=1",
                RedirectKind::PrivateUse,
            ),
        ] {
            assert_eq!(kind_of(ok), Ok(kind), "{ok}");
        }
    }

    #[test]
    fn schemes_that_run_code_or_read_data_are_refused_naming_the_scheme() {
        for (bad, scheme) in [
            ("javascript:alert(1)", "javascript"),
            ("javascript://x/%0Aalert(1)", "javascript"),
            ("JavaScript:alert(1)", "javascript"),
            ("vbscript:msgbox(1)", "vbscript"),
            ("data:text/html,hi", "data"),
            ("data:/text/html,hi", "data"),
            ("file:///etc/passwd", "file"),
            ("blob:https://a.example/0b6a", "blob"),
            ("about:blank", "about"),
            ("filesystem:https://a.example/temporary/x", "filesystem"),
            ("view-source:https://a.example/", "view-source"),
            ("ws://localhost:3000/cb", "ws"),
            ("wss://a.example/cb", "wss"),
            ("ftp://a.example/cb", "ftp"),
            ("chrome://settings/", "chrome"),
            ("chrome-extension://abc/cb.html", "chrome-extension"),
            ("moz-extension://abc/cb.html", "moz-extension"),
            ("intent://cb#Intent;scheme=https;end", "intent"),
            ("mailto:/someone@example.com", "mailto"),
        ] {
            let refused = kind_of(bad).unwrap_err();
            assert!(
                refused.contains(&format!("scheme `{scheme}`")),
                "{bad}: {refused}"
            );
        }
        let drive = kind_of("c:/Windows/notepad.exe").unwrap_err();
        assert!(drive.contains("drive letter"), "{drive}");
    }

    #[test]
    fn the_readme_lists_every_refused_scheme() {
        let readme = include_str!("../README.md");
        let start = readme.find("**Refused schemes.**").unwrap();
        let end = readme.find("**Normalized form.**").unwrap();
        let table = &readme[start..end];
        for (scheme, _) in REFUSED_SCHEMES {
            assert!(table.contains(&format!("`{scheme}`")), "{scheme}");
        }
        assert_eq!(
            table.matches("| `").count() + table.matches(", `").count(),
            REFUSED_SCHEMES.len(),
            "the README lists schemes the code does not refuse"
        );
    }

    #[test]
    fn look_alikes_and_plain_http_are_refused() {
        for bad in [
            "http://example.com/cb",
            "http://localhost.evil.example/cb",
            "http://127.0.0.1.nip.io/cb",
            "HTTPS://app.example.com/cb",
            "https://App.example.com/cb",
            " https://app.example.com/cb",
            "https://app.example.com/cb ",
            "https://app.example.com/c b",
            "https://user@app.example.com/cb",
            "http://localhost@evil.example/cb",
            "https://app.example.com/cb#frag",
            "https://app.example.com/a/../cb",
            "https://app.example.com:443/cb",
            "https://app.example.com?x=1",
            "/relative",
            "Cursor://anysphere.cursor-mcp/oauth/callback",
            "cursor://anysphere.cursor-mcp/oauth/../callback",
            "cursor://user@anysphere.cursor-mcp/cb",
            "cursor://anysphere.cursor-mcp/cb#x",
            "com.example.app:callback",
            "com.example.app:/call back",
        ] {
            assert!(kind_of(bad).is_err(), "{bad}");
        }
        let http = kind_of("http://example.com/cb").unwrap_err();
        assert!(http.contains("loopback"), "{http}");
    }

    #[test]
    fn the_operator_can_narrow_private_use_schemes() {
        let none = PrivateUseSchemes::None;
        let cursor_only = PrivateUseSchemes::Only(vec!["cursor".into()]);
        let cursor = "cursor://anysphere.cursor-mcp/oauth/callback";
        let vscode = "vscode://saoudrizwan.claude-dev/mcp-auth/callback/x";
        let refused = validate_registered(cursor, &none).unwrap_err();
        assert!(refused.contains("scheme `cursor`"), "{refused}");
        assert!(refused.contains("only https and loopback"), "{refused}");
        assert!(validate_registered("http://127.0.0.1:3000/cb", &none).is_ok());
        assert!(validate_registered("https://a.example/cb", &none).is_ok());
        assert!(validate_registered(cursor, &cursor_only).is_ok());
        let refused = validate_registered(vscode, &cursor_only).unwrap_err();
        assert!(refused.contains("scheme `vscode`"), "{refused}");
        // An allow-list cannot bring a refused scheme back.
        let js = PrivateUseSchemes::Only(vec!["javascript".into()]);
        assert!(validate_registered("javascript:/alert(1)", &js).is_err());
    }

    #[test]
    fn operators_list_only_private_use_scheme_names() {
        for ok in ["cursor", "vscode", "com.example.app", "x-my+app-2"] {
            assert_eq!(check_private_use_scheme(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Cursor",
            "1app",
            "my_app",
            "https",
            "http",
            "javascript",
            "data",
            "file",
            "c",
        ] {
            assert!(check_private_use_scheme(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn application_type_is_inferred_and_enforced() {
        use RedirectKind::*;
        assert_eq!(infer_application_type(&[Https]), ApplicationType::Web);
        assert_eq!(
            infer_application_type(&[Https, Loopback]),
            ApplicationType::Native
        );
        assert_eq!(
            infer_application_type(&[PrivateUse]),
            ApplicationType::Native
        );
        assert!(check_application_type(ApplicationType::Web, Https).is_ok());
        assert!(check_application_type(ApplicationType::Web, Loopback).is_err());
        assert!(check_application_type(ApplicationType::Web, PrivateUse).is_err());
        for kind in [Https, Loopback, PrivateUse] {
            assert!(check_application_type(ApplicationType::Native, kind).is_ok());
        }
    }

    fn matches(requested: &str, registered: &[String]) -> bool {
        check_requested(requested, registered, ANY).is_ok()
    }

    #[test]
    fn matching_is_exact_except_the_loopback_port_and_a_dropped_loopback_query() {
        let reg = vec![
            "https://app.example.com/callback".to_string(),
            "http://127.0.0.1:3000/cb".to_string(),
            "http://localhost/cb".to_string(),
            "http://localhost:3000/?state=0b6a".to_string(),
            "cursor://anysphere.cursor-mcp/oauth/callback".to_string(),
        ];
        assert!(matches("https://app.example.com/callback", &reg));
        for wrong in [
            "https://app.example.com/callback/",
            "https://app.example.com/Callback",
            "https://app.example.com/callback?x=1",
            "https://app.example.com/callback#x",
            "https://app.example.com:444/callback",
            "http://127.0.0.1:49152/cb2",
            "http://localhost:8123/cb?x",
            "http://localhost@evil.example/cb",
            // The host of a loopback URI is part of the registration.
            "http://[::1]:3000/cb",
            "http://127.0.0.1:3000/?state=0b6a",
            // A query may be dropped, never changed or added.
            "http://localhost:3000/?state=other",
            "http://localhost:3000/?state=0b6a&x=1",
            // Private-use URIs match exactly.
            "cursor://anysphere.cursor-mcp/oauth/callback?x=1",
            "cursor://anysphere.cursor-mcp/oauth/callback/",
        ] {
            assert!(!matches(wrong, &reg), "{wrong}");
        }
        assert!(matches("http://127.0.0.1:49152/cb", &reg));
        assert!(matches("http://localhost:8123/cb", &reg));
        assert!(matches("http://localhost:3000/", &reg));
        // Continue presents the bare origin it registered with `/?state=...` added.
        assert!(matches("http://localhost:3000", &reg));
        assert!(matches("http://localhost:53000/", &reg));
        assert!(matches("http://localhost:3000/?state=0b6a", &reg));
        assert!(matches(
            "cursor://anysphere.cursor-mcp/oauth/callback",
            &reg
        ));
        // VS Code registers bare loopback origins and comes back with a port and `/`.
        let vscode = vec![
            "http://localhost".to_string(),
            "http://127.0.0.1".to_string(),
        ];
        assert!(matches("http://127.0.0.1:33418/", &vscode));
        assert!(matches("http://localhost:33418/", &vscode));
        assert!(matches("http://127.0.0.1", &vscode));
        assert!(!matches("http://127.0.0.1:33418/callback", &vscode));
    }

    #[test]
    fn a_narrowed_policy_also_stops_uris_registered_earlier() {
        let reg = vec!["cursor://anysphere.cursor-mcp/oauth/callback".to_string()];
        let refused = check_requested(&reg[0], &reg, &PrivateUseSchemes::None).unwrap_err();
        assert!(refused.contains("scheme `cursor`"), "{refused}");
    }

    #[test]
    fn the_consent_page_learns_who_receives_the_code() {
        assert_eq!(
            recipient("https://app.example.com/cb"),
            Recipient::Website("app.example.com".into())
        );
        assert_eq!(
            recipient("http://127.0.0.1:5/cb"),
            Recipient::ThisComputer("127.0.0.1:5".into())
        );
        assert_eq!(
            recipient("cursor://anysphere.cursor-mcp/oauth/callback"),
            Recipient::App {
                links: "cursor://".into(),
                name: Some("anysphere.cursor-mcp".into())
            }
        );
        assert_eq!(
            recipient("com.example.app:/callback"),
            Recipient::App {
                links: "com.example.app:".into(),
                name: None
            }
        );
    }

    #[test]
    fn the_log_gets_redirect_uris_without_their_query() {
        assert_eq!(
            without_query("http://localhost:3000/?state=0b6a"),
            "http://localhost:3000/"
        );
        assert_eq!(without_query("cursor://a.b/cb"), "cursor://a.b/cb");
    }

    #[test]
    fn params_are_appended_and_encoded_also_to_private_use_uris() {
        let u = with_params(
            "https://a.example/cb?x=1",
            &[("code", "c"), ("state", "<s&>")],
        );
        assert_eq!(u, "https://a.example/cb?x=1&code=c&state=%3Cs%26%3E");
        let redirect = ClientRedirect {
            redirect_uri: "com.example.app:/callback".into(),
            state: Some("s 1".into()),
            issuer: "https://as.example".into(),
        };
        assert_eq!(
            redirect.location(&[("error", "access_denied")]),
            "com.example.app:/callback?error=access_denied&state=s+1&iss=https%3A%2F%2Fas.example"
        );
        let cursor = ClientRedirect {
            redirect_uri: "cursor://anysphere.cursor-mcp/oauth/callback".into(),
            ..redirect
        };
        assert_eq!(
            cursor.location(&[("code", "c")]),
            "cursor://anysphere.cursor-mcp/oauth/callback?code=c&state=s+1&iss=https%3A%2F%2Fas.example"
        );
    }
}
