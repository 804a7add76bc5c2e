//! Signing keys with their `kid`, and their public JWKs as an authorization server publishes them.

use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::b64;
use crate::jws::Jws;

/// A 2048-bit RSA key in PKCS#8 PEM, generated once for the tests and never used elsewhere.
const RSA_2048_PEM: &str = include_str!("../keys/rsa2048-test-key.pem");

/// The private key of a [`TestKey`].
pub enum Material {
    Ed(ed25519_dalek::SigningKey),
    Ec(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

/// A private signing key and the `kid` it is published under.
pub struct TestKey {
    pub kid: String,
    pub material: Material,
}

/// 32 bytes that depend only on `kid`: the same `kid` always names the same key.
fn seed(kid: &str) -> [u8; 32] {
    Sha256::digest(kid.as_bytes()).into()
}

/// An Ed25519 key (JOSE `EdDSA`) derived from `kid`.
pub fn ed_key(kid: &str) -> TestKey {
    TestKey {
        kid: kid.to_string(),
        material: Material::Ed(ed25519_dalek::SigningKey::from_bytes(&seed(kid))),
    }
}

/// A P-256 key (JOSE `ES256`) derived from `kid`.
pub fn ec_key(kid: &str) -> TestKey {
    let key = p256::ecdsa::SigningKey::from_bytes(&seed(kid).into())
        .expect("a SHA-256 digest is a valid P-256 scalar");
    TestKey {
        kid: kid.to_string(),
        material: Material::Ec(key),
    }
}

/// The fixed 2048-bit RSA key (JOSE `RS256`) under `kid`: every RSA test key is this one.
pub fn rsa_key(kid: &str) -> TestKey {
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_2048_PEM).expect("the test RSA key parses");
    TestKey {
        kid: kid.to_string(),
        material: Material::Rsa(Box::new(key)),
    }
}

/// A JWKS document publishing `keys`, in that order.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() })
}

impl TestKey {
    /// The JOSE `alg` this key signs with.
    pub fn alg(&self) -> &'static str {
        match self.material {
            Material::Ed(_) => "EdDSA",
            Material::Ec(_) => "ES256",
            Material::Rsa(_) => "RS256",
        }
    }

    /// The public JWK with `kid`, `use: sig` and `alg`.
    pub fn public_jwk(&self) -> Value {
        let (kid, alg) = (&self.kid, self.alg());
        match &self.material {
            Material::Ed(key) => json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": alg,
                "x": b64(key.verifying_key().as_bytes()),
            }),
            Material::Ec(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                json!({
                    "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": alg,
                    "x": b64(point.x().expect("an uncompressed point has x")),
                    "y": b64(point.y().expect("an uncompressed point has y")),
                })
            }
            Material::Rsa(key) => json!({
                "kty": "RSA", "kid": kid, "use": "sig", "alg": alg,
                "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
            }),
        }
    }

    /// The public JWK as published: the bytes an attacker would use as the HMAC secret in the
    /// HS256-with-the-public-key attack.
    pub fn public_jwk_text(&self) -> String {
        self.public_jwk().to_string()
    }

    /// The JWS signature of `message` (raw `r || s` for ES256, as JOSE encodes it).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.material {
            Material::Ed(key) => ed25519_dalek::Signer::sign(key, message)
                .to_bytes()
                .to_vec(),
            Material::Ec(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
            Material::Rsa(key) => rsa::pkcs1v15::SigningKey::<Sha256>::new(key.as_ref().clone())
                .sign(message)
                .to_vec(),
        }
    }

    /// A signed JWT with this key's standard access-token header (`typ: at+jwt`, `alg`, `kid`).
    pub fn jwt(&self, claims: &Value) -> String {
        Jws::for_key(self).with_claims(claims.clone()).sign(self)
    }

    /// A JWT signed by this key under any header, even one that does not match the key.
    pub fn jwt_with_header(&self, header: &Value, claims: &Value) -> String {
        Jws {
            header: header.clone(),
            claims: claims.clone(),
        }
        .sign(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_kid_names_the_same_key_and_another_kid_another_key() {
        for make in [ed_key, ec_key] {
            assert_eq!(make("a").public_jwk()["x"], make("a").public_jwk()["x"]);
            assert_ne!(make("a").public_jwk()["x"], make("b").public_jwk()["x"]);
        }
        assert_eq!(rsa_key("r").public_jwk()["kid"], "r");
    }

    #[test]
    fn every_key_publishes_its_kid_use_and_alg() {
        let document = jwks(&[&ed_key("e"), &ec_key("p"), &rsa_key("r")]);
        let published: Vec<(&str, &str, &str)> = document["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| {
                let text = |name: &str| k[name].as_str().unwrap_or_default();
                (text("kid"), text("use"), text("alg"))
            })
            .collect();
        assert_eq!(
            published,
            [
                ("e", "sig", "EdDSA"),
                ("p", "sig", "ES256"),
                ("r", "sig", "RS256")
            ]
        );
    }
}
