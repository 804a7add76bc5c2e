//! Signature verifiers of the MCP auth filter: RS256 ([`rs256`]) and ES256 ([`es256`]).
//!
//! A crate of its own so that it can be optimized for speed (`opt-level = 3`, root `Cargo.toml`)
//! while the filter around it is optimized for size. Pure computation: no host calls, no unsafe,
//! no panics (the filter runs in a wasm VM where a panic aborts the request).

#![forbid(unsafe_code)]

pub mod ed25519;
pub mod es256;
mod field;
mod field25519;
pub mod rs256;
mod safegcd;
mod scalar;
mod wnaf;
