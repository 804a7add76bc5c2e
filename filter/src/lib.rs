//! MCP authorization filter (proxy-wasm): makes any MCP server an OAuth 2.1 protected resource.
//!
//! Pure modules (no host calls, unit-tested natively): [`config`], [`routing`], [`metadata`],
//! [`challenge`], [`token`], [`jwks`], [`keys`], [`mcp_request`], [`policy`], [`cors`], [`cache`],
//! [`identity`], [`front`]. The proxy-wasm glue lives in `plugin` (wasm32 only).

pub mod cache;
pub mod challenge;
pub mod config;
pub mod cors;
pub mod front;
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

#[cfg(test)]
mod testkeys;
