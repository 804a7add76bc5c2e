//! Deterministic signing keys and a JWT builder for the unit tests.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const RSA_PEM: &str = include_str!("testdata/rsa2048-test-key.pem");

pub enum Material {
    Ed(ed25519_dalek::SigningKey),
    Ec(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

pub struct TestKey {
    pub kid: String,
    pub material: Material,
}

fn seed(kid: &str) -> [u8; 32] {
    Sha256::digest(kid.as_bytes()).into()
}

pub fn ed_key(kid: &str) -> TestKey {
    TestKey {
        kid: kid.to_string(),
        material: Material::Ed(ed25519_dalek::SigningKey::from_bytes(&seed(kid))),
    }
}

pub fn ec_key(kid: &str) -> TestKey {
    let sk = p256::ecdsa::SigningKey::from_bytes(&seed(kid).into()).expect("valid scalar");
    TestKey {
        kid: kid.to_string(),
        material: Material::Ec(sk),
    }
}

pub fn rsa_key(kid: &str) -> TestKey {
    let sk = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PEM).expect("test pem");
    TestKey {
        kid: kid.to_string(),
        material: Material::Rsa(Box::new(sk)),
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKey {
    pub fn alg(&self) -> &'static str {
        match self.material {
            Material::Ed(_) => "EdDSA",
            Material::Ec(_) => "ES256",
            Material::Rsa(_) => "RS256",
        }
    }

    pub fn public_jwk(&self) -> Value {
        match &self.material {
            Material::Ed(sk) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "use": "sig",
                "x": b64(sk.verifying_key().as_bytes())})
            }
            Material::Ec(sk) => {
                let point = sk.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256",
                    "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y"))})
            }
            Material::Rsa(sk) => {
                let pk = sk.to_public_key();
                json!({"kty": "RSA", "kid": self.kid, "alg": "RS256",
                    "n": b64(&pk.n().to_bytes_be()), "e": b64(&pk.e().to_bytes_be())})
            }
        }
    }

    /// The bytes an attacker would use as an HMAC secret in the HS256-with-public-key attack.
    pub fn public_jwk_text(&self) -> String {
        self.public_jwk().to_string()
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.material {
            Material::Ed(sk) => ed25519_dalek::Signer::sign(sk, message).to_bytes().to_vec(),
            Material::Ec(sk) => {
                let sig: p256::ecdsa::Signature = sk.sign(message);
                sig.to_bytes().to_vec()
            }
            Material::Rsa(sk) => {
                let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new((**sk).clone());
                signer.sign(message).to_vec()
            }
        }
    }

    /// A JWT with the standard header for this key (`typ: at+jwt`, `alg`, `kid`).
    pub fn jwt(&self, claims: &Value) -> String {
        self.jwt_with_header(
            &json!({"typ": "at+jwt", "alg": self.alg(), "kid": self.kid}),
            claims,
        )
    }

    pub fn jwt_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }
}

/// `header.payload.` + HMAC-SHA256 with the given secret.
pub fn hs256_jwt(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use hmac::Mac as _;
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}
