//! Signing keys, their JWKS, and RFC 9068 access tokens for the benchmark.
//!
//! One fixed key per algorithm, from the workspace's test support: the benchmark needs no secret
//! keys, and the same keys on every run keep runs comparable. The same JWKS document (all three
//! keys, distinct `kid`s) is given inline to the filter and to `jwt_authn`, so both verify the
//! same tokens with the same keys.

use mcp_auth_test_support::{TestKey, ec_key, ed_key, jwks, rsa_key};
use serde_json::{Value, json};

/// Issuer of every benchmark token.
pub const ISSUER: &str = "http://localhost:9000";
/// Audience of every benchmark token (the protected resource URL).
pub const AUDIENCE: &str = "http://localhost:10000/mcp";
/// Scope carried by every token and required by the filter's resource.
pub const SCOPE: &str = "mcp:tools";
/// Token lifetime: long enough for the longest run.
const LIFETIME_SECS: u64 = 4 * 3600;

/// The signing algorithms the filter supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    EdDsa,
    Es256,
    Rs256,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::EdDsa, Alg::Es256, Alg::Rs256];

    /// JOSE name, as in the token header.
    pub fn jose(self) -> &'static str {
        match self {
            Alg::EdDsa => "EdDSA",
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }

    fn kid(self) -> &'static str {
        match self {
            Alg::EdDsa => "bench-ed25519",
            Alg::Es256 => "bench-p256",
            Alg::Rs256 => "bench-rsa2048",
        }
    }
}

/// One key per algorithm, under the algorithm's `kid`.
pub struct Keys {
    ed25519: TestKey,
    p256: TestKey,
    rsa: TestKey,
}

impl Keys {
    /// The fixed Ed25519, P-256 and 2048-bit RSA keys.
    pub fn fixed() -> Keys {
        Keys {
            ed25519: ed_key(Alg::EdDsa.kid()),
            p256: ec_key(Alg::Es256.kid()),
            rsa: rsa_key(Alg::Rs256.kid()),
        }
    }

    fn key(&self, alg: Alg) -> &TestKey {
        match alg {
            Alg::EdDsa => &self.ed25519,
            Alg::Es256 => &self.p256,
            Alg::Rs256 => &self.rsa,
        }
    }

    /// The public keys as a JWKS document (`use: sig`, `alg` and `kid` on every key).
    pub fn jwks(&self) -> Value {
        jwks(&Alg::ALL.map(|alg| self.key(alg)))
    }

    /// A signed compact JWS access token; `serial` makes `jti` (and so the token) distinct.
    pub fn token(&self, alg: Alg, serial: u64, now_unix: u64) -> String {
        let claims = json!({
            "iss": ISSUER,
            "sub": "bench-user",
            "aud": AUDIENCE,
            "client_id": "bench-client",
            "scope": SCOPE,
            "iat": now_unix,
            "exp": now_unix + LIFETIME_SECS,
            "jti": format!("bench-{}-{serial}", alg.jose()),
        });
        self.key(alg).jwt(&claims)
    }

    /// `count` distinct tokens (serials `1..=count`).
    pub fn tokens(&self, alg: Alg, count: usize, now_unix: u64) -> Vec<String> {
        (1..=count as u64)
            .map(|serial| self.token(alg, serial, now_unix))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::Verifier as _;
    use mcp_auth_test_support::Material;
    use rsa::pkcs1v15;

    fn split(token: &str) -> (String, Value, Vec<u8>) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "compact JWS has three parts");
        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        (format!("{}.{}", parts[0], parts[1]), payload, sig)
    }

    #[test]
    fn tokens_carry_rfc9068_claims_and_verify_with_the_published_key() {
        let keys = Keys::fixed();
        let now = 1_800_000_000;
        for alg in Alg::ALL {
            let token = keys.token(alg, 7, now);
            let (input, claims, sig) = split(&token);
            assert_eq!(claims["iss"], ISSUER);
            assert_eq!(claims["aud"], AUDIENCE);
            assert_eq!(claims["scope"], SCOPE);
            assert_eq!(claims["exp"], now + LIFETIME_SECS);
            let ok = match &keys.key(alg).material {
                Material::Ed(key) => {
                    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
                    key.verifying_key().verify(input.as_bytes(), &sig).is_ok()
                }
                Material::Ec(key) => {
                    let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
                    key.verifying_key().verify(input.as_bytes(), &sig).is_ok()
                }
                Material::Rsa(key) => {
                    let sig = pkcs1v15::Signature::try_from(sig.as_slice()).unwrap();
                    pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.to_public_key())
                        .verify(input.as_bytes(), &sig)
                        .is_ok()
                }
            };
            assert!(ok, "{alg:?} signature verifies");
        }
    }

    #[test]
    fn every_generated_token_is_distinct_and_every_key_is_published_once() {
        let keys = Keys::fixed();
        let tokens = keys.tokens(Alg::EdDsa, 50, 1_800_000_000);
        let unique: std::collections::HashSet<_> = tokens.iter().collect();
        assert_eq!(unique.len(), 50);
        let jwks = keys.jwks();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, ["bench-ed25519", "bench-p256", "bench-rsa2048"]);
    }
}
