//! One protected resource as the validated configuration describes it.
//!
//! Built by [`crate::config`], read by routing, metadata and the local responses. It depends on
//! none of them (only on the compiled tool rules), so they need no path back to `config`.

use crate::policy::ToolRule;

/// One protected resource.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Request path prefix.
    pub path_prefix: String,
    /// Public resource URL.
    pub resource: String,
    /// Path of its metadata document.
    pub metadata_path: String,
    /// Absolute URL of its metadata document (`resource_metadata`).
    pub metadata_url: String,
    /// Metadata `authorization_servers`.
    pub authorization_servers: Vec<String>,
    /// Indexes into [`crate::config::Config::issuers`] of the accepted issuers.
    pub issuers: Vec<usize>,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Metadata `scopes_supported`.
    pub scopes_supported: Vec<String>,
    /// Scopes every request needs.
    pub required_scopes: Vec<String>,
    /// Per-tool rules.
    pub tool_rules: Vec<ToolRule>,
    /// Metadata `resource_name`.
    pub resource_name: Option<String>,
    /// Metadata `resource_documentation`.
    pub resource_documentation: Option<String>,
    /// Pre-rendered metadata JSON.
    pub metadata_json: String,
    /// Pre-rendered `resource_metadata="…", scope="…"` challenge parameters; `scope` per the
    /// resource's `challenge_scopes`.
    pub challenge_params: String,
}
