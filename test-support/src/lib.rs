//! What the workspace's tests share: signing keys of the three algorithms the filter accepts,
//! their JWKS, a JWT builder that can also break tokens on purpose, and the demo filter
//! configuration; with the `postgres` feature, a fresh PostgreSQL database per test.
//!
//! Keys are deterministic (derived from their `kid`, the RSA key read from a fixed PEM): a
//! failing test fails the same way on every run, and no test pays for RSA key generation.
//!
//! A broken fixture (a PEM that does not parse) should stop the test that uses it at once, so
//! the builders here panic instead of returning errors every caller would only unwrap.
#![allow(
    clippy::expect_used,
    reason = "test support: a broken fixture fails the test that uses it, loudly"
)]

mod jws;
mod keys;
#[cfg(feature = "postgres")]
pub mod postgres;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

pub use jws::{Jws, hs256_jwt};
pub use keys::{Material, TestKey, ec_key, ed_key, jwks, rsa_key};

/// The demo filter configuration, exactly as `filter/README.md` shows it under "Full example":
/// every member written out, its defaults included. The filter's unit tests, the wasmtime tests
/// and the README check all start from it.
pub const DEMO_FILTER_CONFIG: &str = include_str!("../fixtures/demo-filter-config.json");

/// [`DEMO_FILTER_CONFIG`] as JSON, ready for a test to change a member.
pub fn demo_filter_config() -> Value {
    serde_json::from_str(DEMO_FILTER_CONFIG).expect("the demo filter configuration is JSON")
}

/// Unpadded base64url, as JOSE encodes every part of a token and every key member.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_configuration_protects_the_demo_resource_with_the_demo_issuer() {
        let config = demo_filter_config();
        assert_eq!(
            config["resources"][0]["resource"],
            "http://localhost:10000/mcp"
        );
        assert_eq!(
            config["issuers"][0]["issuer"],
            config["resources"][0]["authorization_servers"][0]
        );
    }
}
