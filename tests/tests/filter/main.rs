//! The release filter (`mcp_auth_filter.wasm`) driven through the proxy-wasm ABI by the test
//! host, with real Ed25519 / ES256 / RS256 tokens made here. Each test states one behaviour
//! a client, an upstream MCP server or an operator would notice.

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod keys;
mod support;

mod audit;
mod bad_input;
mod bad_tokens;
mod challenges;
mod configuration;
mod cors;
mod held_headers;
mod jwks_fetch;
mod metadata;
mod metrics;
mod resources;
mod scopes;
mod token_cache;
mod upstream;
