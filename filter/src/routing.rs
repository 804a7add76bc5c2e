//! Which resource or metadata document a request path addresses.

use crate::config::Config;
use crate::metadata::WELL_KNOWN;

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The metadata document of resource `i`.
    Metadata(usize),
    /// Some other path under the metadata prefix: 404.
    UnknownMetadata,
    /// The protected resource `i`.
    Protected(usize),
    /// Nothing configured for this path.
    Unmatched,
}

/// Routes a `:path` (query ignored).
pub fn route(cfg: &Config, path: &str) -> Route {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path.starts_with(WELL_KNOWN) {
        if let Some(i) = cfg.resources.iter().position(|r| r.metadata_path == path) {
            return Route::Metadata(i);
        }
        if path == WELL_KNOWN
            && let Some(i) = cfg.root_metadata
        {
            return Route::Metadata(i);
        }
        return Route::UnknownMetadata;
    }
    cfg.resources
        .iter()
        .enumerate()
        .filter(|(_, r)| prefix_matches(&r.path_prefix, path))
        .max_by_key(|(_, r)| r.path_prefix.len())
        .map_or(Route::Unmatched, |(i, _)| Route::Protected(i))
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{demo_json, parse};
    use serde_json::json;

    #[test]
    fn paths_route_to_metadata_resources_or_nothing() {
        let mut v = demo_json();
        let mut jira = v["resources"][0].clone();
        jira["path_prefix"] = json!("/mcp/jira");
        jira["resource"] = json!("http://localhost:10000/mcp/jira");
        v["resources"].as_array_mut().expect("array").push(jira);
        let c = parse(&v).expect("valid");
        let table = [
            (
                "/.well-known/oauth-protected-resource/mcp",
                Route::Metadata(0),
            ),
            (
                "/.well-known/oauth-protected-resource/mcp?x=1",
                Route::Metadata(0),
            ),
            (
                "/.well-known/oauth-protected-resource/mcp/jira",
                Route::Metadata(1),
            ),
            ("/.well-known/oauth-protected-resource", Route::Metadata(0)),
            (
                "/.well-known/oauth-protected-resource/other",
                Route::UnknownMetadata,
            ),
            (
                "/.well-known/oauth-protected-resource/mcp/",
                Route::UnknownMetadata,
            ),
            (
                "/.well-known/oauth-protected-resourcex",
                Route::UnknownMetadata,
            ),
            ("/mcp", Route::Protected(0)),
            ("/mcp?session=1", Route::Protected(0)),
            ("/mcp/", Route::Protected(0)),
            ("/mcp/github", Route::Protected(0)),
            ("/mcp/jira", Route::Protected(1)),
            ("/mcp/jira/x", Route::Protected(1)),
            ("/mcp/jiraX", Route::Protected(0)),
            ("/mcpx", Route::Unmatched),
            ("/MCP", Route::Unmatched),
            ("/%6dcp", Route::Unmatched),
            ("/", Route::Unmatched),
            ("", Route::Unmatched),
            ("/.well-known/openid-configuration", Route::Unmatched),
        ];
        for (path, want) in table {
            assert_eq!(route(&c, path), want, "{path}");
        }
    }

    #[test]
    fn root_metadata_only_when_configured() {
        let mut v = demo_json();
        v.as_object_mut()
            .expect("object")
            .remove("root_metadata_resource");
        let c = parse(&v).expect("valid");
        assert_eq!(
            route(&c, "/.well-known/oauth-protected-resource"),
            Route::UnknownMetadata
        );
    }
}
