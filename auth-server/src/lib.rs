//! OAuth 2.1 authorization server for MCP clients. See README.md for configuration, endpoints
//! and operations. The binary and the integration tests use the public modules; the rest is
//! crate-private so that the compiler reports what nothing uses.

pub(crate) mod account;
pub(crate) mod app;
pub(crate) mod audit;
pub(crate) mod authorize;
pub mod cimd;
pub(crate) mod client_address;
pub(crate) mod client_assertion;
pub(crate) mod client_metadata;
pub(crate) mod clients;
pub mod config;
pub(crate) mod csrf;
pub mod db;
pub(crate) mod error;
pub(crate) mod form;
pub(crate) mod identity;
pub mod idp;
pub(crate) mod jwks;
pub mod keyring;
pub mod keys;
pub(crate) mod metadata;
pub(crate) mod metrics;
pub mod migrations;
pub(crate) mod oauth;
pub(crate) mod pages;
pub(crate) mod params;
pub(crate) mod password_check;
pub(crate) mod pkce;
pub(crate) mod policy;
pub mod postgres;
pub(crate) mod ratelimit;
pub(crate) mod redirect_uri;
pub(crate) mod register;
pub(crate) mod resource;
pub(crate) mod revoke;
pub mod secrets;
pub mod server;
pub(crate) mod session;
pub(crate) mod ssrf;
pub(crate) mod state;
pub mod store;
pub mod time;
pub(crate) mod token;
pub(crate) mod upstream;
pub(crate) mod upstream_store;
