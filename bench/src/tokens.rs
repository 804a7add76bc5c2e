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
/// Length of the token of the long-token cache-hit row, in bytes.
pub const LONG_TOKEN_BYTES: usize = 2048;

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
        self.key(alg).jwt(&Self::claims(alg, serial, now_unix))
    }

    /// A token like [`Keys::token`] (serial 0, never among [`Keys::tokens`]) of about `len`
    /// bytes: an extra claim `pad`, which nothing reads, makes up the difference.
    pub fn long_token(&self, alg: Alg, now_unix: u64, len: usize) -> String {
        let short = self.token(alg, 0, now_unix);
        // The claim adds `,"pad":""` (9 bytes) and its value to the payload, 4 base64url
        // characters per 3 bytes.
        let pad = (len.saturating_sub(short.len()) * 3 / 4).saturating_sub(9);
        let mut claims = Self::claims(alg, 0, now_unix);
        if let Some(map) = claims.as_object_mut() {
            map.insert("pad".into(), Value::String("p".repeat(pad)));
        }
        self.key(alg).jwt(&claims)
    }

    fn claims(alg: Alg, serial: u64, now_unix: u64) -> Value {
        json!({
            "iss": ISSUER,
            "sub": "bench-user",
            "aud": AUDIENCE,
            "client_id": "bench-client",
            "scope": SCOPE,
            "iat": now_unix,
            "exp": now_unix + LIFETIME_SECS,
            "jti": format!("bench-{}-{serial}", alg.jose()),
        })
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
    fn the_long_token_has_the_asked_length_and_the_same_claims_plus_pad() {
        let keys = Keys::fixed();
        for alg in Alg::ALL {
            let token = keys.long_token(alg, 1_800_000_000, 2048);
            assert!((2040..=2056).contains(&token.len()), "{}", token.len());
            let (_, claims, _) = split(&token);
            assert_eq!(claims["sub"], "bench-user");
            assert!(claims["pad"].as_str().is_some_and(|p| p.len() > 1000));
            assert_ne!(token, keys.token(alg, 1, 1_800_000_000));
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
