//! Signing keys, their JWKS, and RFC 9068 access tokens for the benchmark.
//!
//! One key per algorithm is generated per run. The same JWKS document (all three keys, distinct
//! `kid`s) is given inline to the filter and to `jwt_authn`, so both verify the same tokens with
//! the same keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use rand_core::OsRng;
use rsa::pkcs1v15;
use rsa::signature::SignatureEncoding;
use rsa::traits::PublicKeyParts;
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

/// One freshly generated key per algorithm.
pub struct Keys {
    ed25519: ed25519_dalek::SigningKey,
    p256: p256::ecdsa::SigningKey,
    rsa: pkcs1v15::SigningKey<sha2::Sha256>,
    rsa_public: rsa::RsaPublicKey,
}

impl Keys {
    /// Generates an Ed25519 key, a P-256 key and a 2048-bit RSA key.
    pub fn generate() -> Result<Keys, String> {
        let rsa_private = rsa::RsaPrivateKey::new(&mut OsRng, 2048)
            .map_err(|e| format!("generating the RSA key: {e}"))?;
        let rsa_public = rsa_private.to_public_key();
        Ok(Keys {
            ed25519: ed25519_dalek::SigningKey::generate(&mut OsRng),
            p256: p256::ecdsa::SigningKey::random(&mut OsRng),
            rsa: pkcs1v15::SigningKey::new(rsa_private),
            rsa_public,
        })
    }

    /// The public keys as a JWKS document (`use: sig`, `alg` and `kid` on every key).
    pub fn jwks(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let ed = self.ed25519.verifying_key().to_bytes();
        let point = self.p256.verifying_key().to_encoded_point(false);
        let (x, y) = (point.x().map(|x| b64(x)), point.y().map(|y| b64(y)));
        json!({ "keys": [
            { "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
              "kid": Alg::EdDsa.kid(), "x": b64(&ed) },
            { "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
              "kid": Alg::Es256.kid(), "x": x, "y": y },
            { "kty": "RSA", "use": "sig", "alg": "RS256", "kid": Alg::Rs256.kid(),
              "n": b64(&self.rsa_public.n().to_bytes_be()),
              "e": b64(&self.rsa_public.e().to_bytes_be()) },
        ]})
    }

    /// A signed compact JWS access token; `serial` makes `jti` (and so the token) distinct.
    pub fn token(&self, alg: Alg, serial: u64, now_unix: u64) -> String {
        let header = json!({ "alg": alg.jose(), "typ": "at+jwt", "kid": alg.kid() });
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
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Vec<u8> = match alg {
            Alg::EdDsa => self
                .ed25519
                .sign(signing_input.as_bytes())
                .to_bytes()
                .to_vec(),
            Alg::Es256 => {
                let sig: p256::ecdsa::Signature = self.p256.sign(signing_input.as_bytes());
                sig.to_bytes().to_vec()
            }
            Alg::Rs256 => self.rsa.sign(signing_input.as_bytes()).to_vec(),
        };
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
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
    use ed25519_dalek::Verifier as _;

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
        let keys = Keys::generate().unwrap();
        let now = 1_800_000_000;
        for alg in Alg::ALL {
            let token = keys.token(alg, 7, now);
            let (input, claims, sig) = split(&token);
            assert_eq!(claims["iss"], ISSUER);
            assert_eq!(claims["aud"], AUDIENCE);
            assert_eq!(claims["scope"], SCOPE);
            assert_eq!(claims["exp"], now + LIFETIME_SECS);
            let ok = match alg {
                Alg::EdDsa => {
                    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
                    keys.ed25519
                        .verifying_key()
                        .verify(input.as_bytes(), &sig)
                        .is_ok()
                }
                Alg::Es256 => {
                    let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
                    keys.p256
                        .verifying_key()
                        .verify(input.as_bytes(), &sig)
                        .is_ok()
                }
                Alg::Rs256 => {
                    let sig = pkcs1v15::Signature::try_from(sig.as_slice()).unwrap();
                    pkcs1v15::VerifyingKey::<sha2::Sha256>::new(keys.rsa_public.clone())
                        .verify(input.as_bytes(), &sig)
                        .is_ok()
                }
            };
            assert!(ok, "{alg:?} signature verifies");
        }
    }

    #[test]
    fn every_generated_token_is_distinct_and_every_key_is_published_once() {
        let keys = Keys::generate().unwrap();
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
