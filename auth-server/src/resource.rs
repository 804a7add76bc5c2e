//! Resource indicators (RFC 8707) and scope decisions.

use crate::config::{OFFLINE_ACCESS, Resource};

/// Picks the resource of a request. No `resource` parameter selects the single configured
/// resource, or fails when several are configured. Errors are `invalid_target` descriptions.
pub fn select<'a>(resources: &'a [Resource], requested: &[&str]) -> Result<&'a Resource, String> {
    match requested {
        [] => match resources {
            [only] => Ok(only),
            _ => {
                Err("resource is required: this server issues tokens for several resources".into())
            }
        },
        [one] => {
            if one.contains('#') {
                return Err("resource must not contain a fragment".into());
            }
            resources
                .iter()
                .find(|r| r.url == *one)
                .ok_or_else(|| format!("unknown resource `{one}`"))
        }
        _ => Err("only one resource per request is supported".into()),
    }
}

/// The requested scope tokens this resource defines. Others are dropped (RFC 6749 §3.3 lets
/// the server grant less than asked): Claude.ai asks for `claudeai`, OpenID-minded clients for
/// `openid profile`, Gemini CLI for every scope it saw advertised. `offline_access` is one of
/// them: refresh tokens follow the client's registered grant types, not a scope.
fn known(resource: &Resource, requested: Option<&str>) -> Vec<String> {
    requested
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty() && *s != OFFLINE_ACCESS && resource.scopes.iter().any(|k| k == s))
        .map(str::to_string)
        .collect()
}

/// Decides the granted scope of an authorization request: the requested scopes this resource
/// defines, or its default scopes when none of them remain (or none were requested).
/// The error is an `invalid_scope` description: nothing known was asked for and the resource
/// has no default scopes.
pub fn grant(resource: &Resource, requested: Option<&str>) -> Result<Vec<String>, String> {
    let mut wanted = known(resource, requested);
    if wanted.is_empty() {
        if resource.default_scopes.is_empty() {
            return Err(format!(
                "scope is required: name at least one of the scopes of {} ({}); it has no default scopes",
                resource.url,
                resource.scopes.join(" ")
            ));
        }
        wanted = resource.default_scopes.clone();
    }
    Ok(normalize(wanted))
}

/// Narrowing on refresh: of the requested scopes, those `resource` does not define are
/// dropped as at `/authorize`; the rest must be a subset of the `granted` ones. Nothing known
/// requested keeps the grant's scope.
pub fn narrow(
    resource: &Resource,
    granted: &[String],
    requested: Option<&str>,
) -> Result<Vec<String>, String> {
    let wanted = known(resource, requested);
    if wanted.is_empty() {
        return Ok(granted.to_vec());
    }
    if let Some(extra) = wanted.iter().find(|s| !granted.contains(s)) {
        return Err(format!(
            "scope `{extra}` was not granted; a refresh can only narrow the scope"
        ));
    }
    Ok(normalize(wanted))
}

/// Sorted, deduplicated: the canonical form used for storage and comparison.
pub fn normalize(mut scopes: Vec<String>) -> Vec<String> {
    scopes.sort();
    scopes.dedup();
    scopes
}

pub fn join(scopes: &[String]) -> String {
    scopes.join(" ")
}

pub fn split(scope: &str) -> Vec<String> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mcp() -> Resource {
        Resource {
            url: "http://localhost:10000/mcp".into(),
            scopes: vec!["mcp:tools".into(), "mcp:admin".into()],
            default_scopes: vec!["mcp:tools".into()],
        }
    }

    fn other() -> Resource {
        Resource {
            url: "https://other.example/api".into(),
            scopes: vec!["read".into()],
            default_scopes: vec![],
        }
    }

    #[test]
    fn resource_selection() {
        let one = [mcp()];
        let two = [mcp(), other()];
        assert_eq!(select(&one, &[]).unwrap().url, "http://localhost:10000/mcp");
        assert!(select(&two, &[]).is_err());
        assert_eq!(
            select(&two, &["https://other.example/api"]).unwrap().url,
            "https://other.example/api"
        );
        assert!(select(&one, &["http://localhost:10000/mcp#frag"]).is_err());
        assert!(select(&one, &["http://localhost:10000/mcp/"]).is_err());
        assert!(select(&one, &["http://evil.example/mcp"]).is_err());
        assert!(
            select(
                &two,
                &["http://localhost:10000/mcp", "https://other.example/api"]
            )
            .is_err()
        );
    }

    #[test]
    fn scope_grant_defaults_subset_and_offline_access() {
        let r = mcp();
        assert_eq!(grant(&r, None).unwrap(), vec!["mcp:tools"]);
        assert_eq!(grant(&r, Some("")).unwrap(), vec!["mcp:tools"]);
        assert_eq!(
            grant(&r, Some("offline_access")).unwrap(),
            vec!["mcp:tools"]
        );
        assert_eq!(
            grant(&r, Some("mcp:tools mcp:admin mcp:tools")).unwrap(),
            vec!["mcp:admin", "mcp:tools"]
        );
        assert!(grant(&other(), None).is_err());
    }

    #[test]
    fn unknown_requested_scopes_are_dropped() {
        let r = mcp();
        // Claude.ai
        assert_eq!(grant(&r, Some("claudeai")).unwrap(), vec!["mcp:tools"]);
        assert_eq!(
            grant(&r, Some("openid profile mcp:admin")).unwrap(),
            vec!["mcp:admin"]
        );
        assert_eq!(
            grant(&r, Some("mcp:tools <script>")).unwrap(),
            vec!["mcp:tools"]
        );
        // Gemini CLI: every advertised scope (of every resource), and offline_access.
        assert_eq!(
            grant(&r, Some("mcp:tools mcp:admin read offline_access")).unwrap(),
            vec!["mcp:admin", "mcp:tools"]
        );
        // Nothing known and no default scopes: the client must name one.
        let refused = grant(&other(), Some("claudeai")).unwrap_err();
        assert!(refused.contains("read"), "{refused}");
        assert_eq!(
            grant(&other(), Some("claudeai read")).unwrap(),
            vec!["read"]
        );
    }

    #[test]
    fn refresh_can_only_narrow() {
        let r = mcp();
        let granted = vec!["mcp:admin".to_string(), "mcp:tools".to_string()];
        assert_eq!(narrow(&r, &granted, None).unwrap(), granted);
        assert_eq!(
            narrow(&r, &granted, Some("mcp:tools")).unwrap(),
            vec!["mcp:tools"]
        );
        assert_eq!(
            narrow(&r, &granted, Some("claudeai offline_access")).unwrap(),
            granted
        );
        assert_eq!(
            narrow(&r, &granted, Some("claudeai mcp:tools")).unwrap(),
            vec!["mcp:tools"]
        );
        // A scope the resource defines but the grant does not hold is still refused.
        assert!(narrow(&r, &["mcp:tools".to_string()], Some("mcp:tools mcp:admin")).is_err());
    }
}
