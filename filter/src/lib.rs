//! MCP authorization filter (proxy-wasm): makes any MCP server an OAuth 2.1 protected resource.
//!
//! Pure modules (no host calls, unit-tested natively): [`config`], [`routing`], [`metadata`],
//! [`challenge`], [`token`], [`jwks`], [`keys`], [`mcp_request`], [`policy`], [`cors`], [`cache`],
//! [`identity`], [`front`]. The proxy-wasm glue lives in `plugin` and [`host`].

pub mod cache;
pub mod challenge;
pub mod config;
pub mod cors;
pub mod front;
pub mod host;
pub mod identity;
pub mod jwks;
pub mod keys;
pub mod mcp_request;
pub mod metadata;
pub mod policy;
pub mod routing;
pub mod stats;
pub mod token;
pub mod urls;

// The verifiers live in their own crate, built for speed (see its README); re-exported so the
// filter names them as before.
pub use mcp_auth_filter_crypto::{es256, rs256};

// Natively (unit tests, clippy) the glue is compiled and linted but never called.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod plugin;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    plugin::register();
}}
