//! Real signing keys made in the test, their JWKS, and a JWS builder that can also produce
//! the malformed tokens of the bad-token table.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use hmac::Mac as _;
use rand_core::OsRng;
use rsa::pkcs1v15::SigningKey as RsaSigningKey;
use rsa::signature::SignatureEncoding as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::Sha256;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A private key of one of the three supported kinds, with its `kid`.
pub enum Key {
    Ed25519 {
        kid: String,
        key: ed25519_dalek::SigningKey,
    },
    Es256 {
        kid: String,
        key: p256::ecdsa::SigningKey,
    },
    Rs256 {
        kid: String,
        key: Box<rsa::RsaPrivateKey>,
    },
}

impl Key {
    pub fn ed25519(kid: &str) -> Key {
        Key::Ed25519 {
            kid: kid.into(),
            key: ed25519_dalek::SigningKey::generate(&mut OsRng),
        }
    }

    pub fn es256(kid: &str) -> Key {
        Key::Es256 {
            kid: kid.into(),
            key: p256::ecdsa::SigningKey::random(&mut OsRng),
        }
    }

    pub fn rs256(kid: &str) -> Key {
        let key = rsa::RsaPrivateKey::new(&mut OsRng, 2048).expect("RSA key generation");
        Key::Rs256 {
            kid: kid.into(),
            key: Box::new(key),
        }
    }

    pub fn kid(&self) -> &str {
        match self {
            Key::Ed25519 { kid, .. } | Key::Es256 { kid, .. } | Key::Rs256 { kid, .. } => kid,
        }
    }

    pub fn alg(&self) -> &'static str {
        match self {
            Key::Ed25519 { .. } => "EdDSA",
            Key::Es256 { .. } => "ES256",
            Key::Rs256 { .. } => "RS256",
        }
    }

    /// The public JWK, as an authorization server publishes it.
    pub fn jwk(&self) -> Value {
        match self {
            Key::Ed25519 { kid, key } => json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": "EdDSA",
                "x": b64(key.verifying_key().as_bytes()),
            }),
            Key::Es256 { kid, key } => {
                let point = key.verifying_key().to_encoded_point(false);
                json!({
                    "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                    "x": b64(point.x().expect("uncompressed point")),
                    "y": b64(point.y().expect("uncompressed point")),
                })
            }
            Key::Rs256 { kid, key } => json!({
                "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
            }),
        }
    }

    /// The bytes an HS256 "key confusion" attacker would use as the HMAC secret: the
    /// public key material as published.
    pub fn public_bytes(&self) -> Vec<u8> {
        self.jwk().to_string().into_bytes()
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Key::Ed25519 { key, .. } => key.sign(input).to_bytes().to_vec(),
            Key::Es256 { key, .. } => {
                let signature: p256::ecdsa::Signature = key.sign(input);
                signature.to_bytes().to_vec()
            }
            Key::Rs256 { key, .. } => RsaSigningKey::<Sha256>::new(key.as_ref().clone())
                .sign(input)
                .to_vec(),
        }
    }
}

pub fn jwks(keys: &[&Key]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// The keys every test shares (RSA generation is slow in debug builds, so it happens once).
pub struct TestKeys {
    pub ed: Key,
    pub ec: Key,
    pub rsa: Key,
    /// A key the authorization server "rotates to": absent from the initial JWKS.
    pub rotated: Key,
}

pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| TestKeys {
        ed: Key::ed25519("ed-1"),
        ec: Key::es256("ec-1"),
        rsa: Key::rs256("rsa-1"),
        rotated: Key::ed25519("ed-2"),
    })
}

/// A JWS under construction: header and claims are plain JSON so tests can break them.
#[derive(Clone)]
pub struct Jws {
    pub header: Value,
    pub claims: Value,
}

impl Jws {
    /// Header `{alg, typ: at+jwt, kid}` for `key`, no claims.
    pub fn for_key(key: &Key) -> Jws {
        Jws {
            header: json!({ "alg": key.alg(), "typ": "at+jwt", "kid": key.kid() }),
            claims: json!({}),
        }
    }

    pub fn header(mut self, name: &str, value: Value) -> Jws {
        set_or_remove(&mut self.header, name, value);
        self
    }

    pub fn claim(mut self, name: &str, value: Value) -> Jws {
        set_or_remove(&mut self.claims, name, value);
        self
    }

    fn signing_input(&self) -> String {
        format!(
            "{}.{}",
            b64(self.header.to_string().as_bytes()),
            b64(self.claims.to_string().as_bytes())
        )
    }

    pub fn sign(&self, key: &Key) -> String {
        let input = self.signing_input();
        format!("{input}.{}", b64(&key.sign(input.as_bytes())))
    }

    /// HS256 with an arbitrary secret (the alg-confusion attack).
    pub fn sign_hs256(&self, secret: &[u8]) -> String {
        let input = self.signing_input();
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    }

    /// No signature at all (`alg: none` style).
    pub fn unsigned(&self) -> String {
        format!("{}.", self.signing_input())
    }
}

/// `Value::Null` removes the member.
fn set_or_remove(object: &mut Value, name: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.to_string(), value);
        }
    }
}
