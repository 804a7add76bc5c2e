//! The signing keys every test shares, one per supported algorithm, plus the key the
//! authorization server "rotates to". Keys, JWKS and token building come from the workspace's
//! test support.

use std::sync::OnceLock;

pub use mcp_auth_test_support::{Jws, TestKey, b64, ed_key, jwks};
use mcp_auth_test_support::{ec_key, rsa_key};

pub struct TestKeys {
    pub ed: TestKey,
    pub ec: TestKey,
    pub rsa: TestKey,
    /// A key the authorization server "rotates to": absent from the initial JWKS.
    pub rotated: TestKey,
}

pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| TestKeys {
        ed: ed_key("ed-1"),
        ec: ec_key("ec-1"),
        rsa: rsa_key("rsa-1"),
        rotated: ed_key("ed-2"),
    })
}
