//! OAuth 2.1 authorization server for MCP clients. See README.md for configuration, endpoints
//! and operations.

pub mod app;
pub mod authorize;
pub mod cimd;
pub mod clients;
pub mod config;
pub mod error;
pub mod keyring;
pub mod keys;
pub mod metadata;
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
pub mod ssrf;
pub mod store;
pub mod time;
pub mod token;
