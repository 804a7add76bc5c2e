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

/// Decides the granted scope of an authorization request: the resource's default scopes when
/// none are requested; otherwise every requested scope must belong to the resource.
/// `offline_access` is accepted and ignored (refresh tokens do not depend on it).
/// Errors are `invalid_scope` descriptions.
pub fn grant(resource: &Resource, requested: Option<&str>) -> Result<Vec<String>, String> {
    let mut wanted: Vec<String> = requested
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty() && *s != OFFLINE_ACCESS)
        .map(str::to_string)
        .collect();
    if wanted.is_empty() {
        if resource.default_scopes.is_empty() {
            return Err("scope is required: the resource has no default scopes".into());
        }
        wanted = resource.default_scopes.clone();
    }
    if let Some(unknown) = wanted.iter().find(|s| !resource.scopes.contains(s)) {
        return Err(format!(
            "scope `{unknown}` is not available for resource {}",
            resource.url
        ));
    }
    Ok(normalize(wanted))
}

/// Narrowing on refresh: the requested scopes must be a subset of the granted ones.
pub fn narrow(granted: &[String], requested: Option<&str>) -> Result<Vec<String>, String> {
    let Some(requested) = requested else {
        return Ok(granted.to_vec());
    };
    let wanted: Vec<String> = requested
        .split(' ')
        .filter(|s| !s.is_empty() && *s != OFFLINE_ACCESS)
        .map(str::to_string)
        .collect();
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
        assert!(grant(&r, Some("mcp:tools <script>")).is_err());
        assert!(grant(&other(), None).is_err());
    }

    #[test]
    fn refresh_can_only_narrow() {
        let granted = vec!["mcp:admin".to_string(), "mcp:tools".to_string()];
        assert_eq!(narrow(&granted, None).unwrap(), granted);
        assert_eq!(
            narrow(&granted, Some("mcp:tools")).unwrap(),
            vec!["mcp:tools"]
        );
        assert!(narrow(&["mcp:tools".to_string()], Some("mcp:tools mcp:admin")).is_err());
    }
}
