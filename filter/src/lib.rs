//! MCP authorization filter (proxy-wasm): makes any MCP server an OAuth 2.1 protected resource.
//!
//! Pure modules (no host calls, unit-tested natively): [`config`] with [`resource`] and
//! [`issuer`], [`routing`], [`metadata`], [`response`], [`token`], [`jwks`], [`keys`],
//! [`claims`], [`mcp_request`], [`policy`], [`cors`], [`cache`], [`identity`], [`front`] (the decisions on
//! one request), [`flow`] (those decisions over the request's callbacks, waiting for keys) and
//! [`audit`] (what the access log records about them).
//! The proxy-wasm glue, which only moves data between the host and them: [`root_context`]
//! (configuration, JWKS fetches, tick), [`http_context`] (one request) and [`host`].
//!
//! Nothing links this crate as a library: the modules are private, so the compiler reports
//! whatever the filter no longer uses.

mod audit;
mod cache;
mod claims;
mod config;
mod cors;
mod flow;
mod front;
mod host;
mod http_context;
mod identity;
mod issuer;
mod jwks;
mod keys;
mod mcp_request;
mod metadata;
mod policy;
mod resource;
mod response;
mod root_context;
mod routing;
mod stats;
mod token;
mod urls;

// The fuzz targets' way in (filter/fuzz), and the tests of their seeds; never in the `.wasm`.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;

// The verifiers live in their own crate, built for speed (see its README).
use mcp_auth_filter_crypto::{ed25519, es256, rs256};

// `_initialize`, the module's entry point. Compiled natively too (where nothing calls it), so
// that the native build sees the same live code as the `.wasm` and its dead-code lint holds.
proxy_wasm::main! {{
    root_context::register();
}}
