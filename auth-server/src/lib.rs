//! OAuth 2.1 authorization server for MCP clients. See README.md for configuration, endpoints
//! and operations.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod app;
pub mod authorize;
pub mod cimd;
pub mod clients;
pub mod config;
pub mod error;
pub mod form;
pub mod jwks;
pub mod keyring;
pub mod keys;
pub mod metadata;
pub mod oauth;
pub mod pages;
pub mod params;
pub mod password_check;
pub mod pkce;
pub mod ratelimit;
pub mod redirect_uri;
pub mod register;
pub mod resource;
pub mod revoke;
pub mod secrets;
pub mod server;
pub mod session;
pub mod ssrf;
pub mod state;
pub mod store;
pub mod time;
pub mod token;
