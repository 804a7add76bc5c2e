//! The client metadata rules shared by dynamic registration (RFC 7591) and Client ID Metadata
//! Documents: which grant and response types take effect, the application type, the redirect
//! URIs, and the registered scope. Real clients send more than this server serves (VS Code
//! registers the device-code grant, some clients `client_credentials` or `implicit`, Gemini CLI
//! every advertised scope), so unsupported values are dropped from what is registered (RFC 7591
//! §2: the server may replace requested values) and only a registration left with nothing
//! usable is refused. The answer echoes what took effect, so the client can see what it got.

use crate::config::{OFFLINE_ACCESS, Resource};
use crate::oauth::{ApplicationType, GrantType, RESPONSE_TYPE_CODE};
use crate::redirect_uri::{self, PrivateUseSchemes, RedirectKind};

/// Why client metadata was refused: the RFC 7591 error code it maps to, and a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `invalid_redirect_uri`
    RedirectUri(String),
    /// `invalid_client_metadata`
    Metadata(String),
}

impl Refused {
    pub fn description(&self) -> &str {
        match self {
            Refused::RedirectUri(d) | Refused::Metadata(d) => d,
        }
    }
}

/// The grant types that take effect: the supported ones among those declared, in the order
/// of [`GrantType::ALL`]; `authorization_code` when none are declared (RFC 7591 §2).
pub fn grant_types(declared: Option<&[String]>) -> Result<Vec<GrantType>, Refused> {
    let Some(declared) = declared else {
        return Ok(vec![GrantType::AuthorizationCode]);
    };
    let effective: Vec<GrantType> = GrantType::ALL
        .into_iter()
        .filter(|g| declared.iter().any(|d| d == g.as_str()))
        .collect();
    if effective.is_empty() {
        return Err(Refused::Metadata(format!(
            "none of the grant_types [{}] is supported; this server serves {}",
            declared.join(", "),
            GrantType::ALL.map(GrantType::as_str).join(" and ")
        )));
    }
    Ok(effective)
}

/// The response types that take effect: `code`, which must be among those declared (or none
/// declared: the RFC 7591 default is `code`). Others (`token`, `id_token`...) are dropped.
pub fn response_types(declared: Option<&[String]>) -> Result<Vec<&'static str>, Refused> {
    match declared {
        Some(d) if !d.iter().any(|t| t == RESPONSE_TYPE_CODE) => Err(Refused::Metadata(format!(
            "response_types [{}] lack `code`, the only response type this server supports",
            d.join(", ")
        ))),
        _ => Ok(vec![RESPONSE_TYPE_CODE]),
    }
}

/// Checks every redirect URI under the operator's `policy` and decides the application type:
/// the declared one (OpenID Connect Dynamic Client Registration §2), which the URIs must fit,
/// or the one the URIs imply.
pub fn redirect_uris(
    uris: &[String],
    declared_application_type: Option<&str>,
    policy: &PrivateUseSchemes,
) -> Result<ApplicationType, Refused> {
    if uris.is_empty() {
        return Err(Refused::RedirectUri("redirect_uris is required".into()));
    }
    let declared = declared_application_type
        .map(|name| {
            ApplicationType::parse(name).ok_or_else(|| {
                Refused::Metadata(format!(
                    "application_type `{name}` is not one of `web`, `native`"
                ))
            })
        })
        .transpose()?;
    let mut kinds: Vec<RedirectKind> = Vec::with_capacity(uris.len());
    for uri in uris {
        let (_, kind) = redirect_uri::validate_registered(uri, policy)
            .map_err(|e| Refused::RedirectUri(format!("`{uri}`: {e}")))?;
        if let Some(app) = declared {
            redirect_uri::check_application_type(app, kind)
                .map_err(|e| Refused::RedirectUri(format!("`{uri}`: {e}")))?;
        }
        kinds.push(kind);
    }
    Ok(declared.unwrap_or_else(|| redirect_uri::infer_application_type(&kinds)))
}

/// The registered `scope` (RFC 7591 §2): the declared scopes this server knows, in their
/// order, without duplicates and without `offline_access`; `None` when none remain. Unknown
/// scopes are dropped rather than refused, as at `/authorize`.
pub fn scope(declared: Option<&str>, resources: &[Resource]) -> Option<String> {
    let mut known: Vec<&str> = Vec::new();
    for s in declared.unwrap_or_default().split(' ') {
        if s != OFFLINE_ACCESS
            && !known.contains(&s)
            && resources.iter().any(|r| r.scopes.iter().any(|k| k == s))
        {
            known.push(s);
        }
    }
    (!known.is_empty()).then(|| known.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unsupported_grant_types_are_dropped_and_nothing_usable_is_refused() {
        assert_eq!(grant_types(None), Ok(vec![GrantType::AuthorizationCode]));
        // VS Code registers the device-code grant next to the code and refresh grants.
        let vscode = names(&[
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
        ]);
        assert_eq!(
            grant_types(Some(&vscode)),
            Ok(vec![GrantType::AuthorizationCode, GrantType::RefreshToken])
        );
        let mixed = names(&["implicit", "client_credentials", "authorization_code"]);
        assert_eq!(
            grant_types(Some(&mixed)),
            Ok(vec![GrantType::AuthorizationCode])
        );
        let refused = grant_types(Some(&names(&["client_credentials", "implicit"]))).unwrap_err();
        assert!(
            refused.description().contains("client_credentials"),
            "{refused:?}"
        );
        assert!(matches!(grant_types(Some(&[])), Err(Refused::Metadata(_))));
    }

    #[test]
    fn response_types_must_include_code() {
        assert_eq!(response_types(None), Ok(vec!["code"]));
        assert_eq!(
            response_types(Some(&names(&["code", "token", "id_token"]))),
            Ok(vec!["code"])
        );
        assert!(response_types(Some(&names(&["token"]))).is_err());
        assert!(response_types(Some(&[])).is_err());
    }

    #[test]
    fn application_type_is_honoured_or_inferred() {
        let any = &PrivateUseSchemes::Any;
        let cursor = names(&[
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "https://cursor.com/oauth/callback",
            "http://127.0.0.1:41234/callback",
        ]);
        assert_eq!(
            redirect_uris(&cursor, None, any),
            Ok(ApplicationType::Native)
        );
        assert_eq!(
            redirect_uris(&cursor, Some("native"), any),
            Ok(ApplicationType::Native)
        );
        let refused = redirect_uris(&cursor, Some("web"), any).unwrap_err();
        assert!(matches!(refused, Refused::RedirectUri(_)), "{refused:?}");
        assert!(refused.description().contains("cursor://"), "{refused:?}");
        let web = names(&["https://app.example.com/cb"]);
        assert_eq!(redirect_uris(&web, None, any), Ok(ApplicationType::Web));
        assert_eq!(
            redirect_uris(&web, Some("native"), any),
            Ok(ApplicationType::Native)
        );
        assert!(matches!(
            redirect_uris(&web, Some("desktop"), any),
            Err(Refused::Metadata(_))
        ));
        assert!(matches!(
            redirect_uris(&[], None, any),
            Err(Refused::RedirectUri(_))
        ));
        let refused = redirect_uris(&names(&["javascript:alert(1)"]), None, any).unwrap_err();
        assert!(
            refused.description().contains("scheme `javascript`"),
            "{refused:?}"
        );
    }

    #[test]
    fn the_registered_scope_keeps_known_scopes_only() {
        let resources = [Resource {
            url: "http://localhost:10000/mcp".into(),
            scopes: vec!["mcp:tools".into(), "mcp:admin".into()],
            default_scopes: vec!["mcp:tools".into()],
        }];
        assert_eq!(scope(None, &resources), None);
        assert_eq!(scope(Some("openid profile"), &resources), None);
        assert_eq!(
            scope(
                Some("openid mcp:tools offline_access mcp:admin mcp:tools"),
                &resources
            ),
            Some("mcp:tools mcp:admin".into())
        );
    }
}
