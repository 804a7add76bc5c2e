//! A compact JWS under construction. Header and claims are plain JSON, so a test can break
//! either of them, sign with the wrong key or algorithm, or leave the signature out.

use hmac::Mac as _;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::b64;
use crate::keys::TestKey;

#[derive(Clone, Debug)]
pub struct Jws {
    pub header: Value,
    pub claims: Value,
}

impl Jws {
    /// The access-token header for `key` (`alg`, `typ: at+jwt`, `kid`) and no claims.
    pub fn for_key(key: &TestKey) -> Jws {
        Jws {
            header: json!({ "alg": key.alg(), "typ": "at+jwt", "kid": key.kid }),
            claims: json!({}),
        }
    }

    /// Sets a header member; `Value::Null` removes it.
    pub fn header(mut self, name: &str, value: Value) -> Jws {
        set_or_remove(&mut self.header, name, value);
        self
    }

    /// Sets a claim; `Value::Null` removes it.
    pub fn claim(mut self, name: &str, value: Value) -> Jws {
        set_or_remove(&mut self.claims, name, value);
        self
    }

    /// Replaces the whole claims set (which need not even be an object).
    pub fn with_claims(mut self, claims: Value) -> Jws {
        self.claims = claims;
        self
    }

    /// `base64url(header) . base64url(claims)`, the bytes a signature covers.
    pub fn signing_input(&self) -> String {
        format!(
            "{}.{}",
            b64(self.header.to_string().as_bytes()),
            b64(self.claims.to_string().as_bytes())
        )
    }

    /// Signed by `key`, whatever the header says.
    pub fn sign(&self, key: &TestKey) -> String {
        let input = self.signing_input();
        format!("{input}.{}", b64(&key.sign(input.as_bytes())))
    }

    /// HMAC-SHA256 with any secret: the algorithm-confusion attack.
    pub fn sign_hs256(&self, secret: &[u8]) -> String {
        let input = self.signing_input();
        let mut mac =
            hmac::Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    }

    /// No signature at all: `header.claims.`
    pub fn unsigned(&self) -> String {
        format!("{}.", self.signing_input())
    }
}

/// `header.claims.` followed by HMAC-SHA256 with `secret`.
pub fn hs256_jwt(header: &Value, claims: &Value, secret: &[u8]) -> String {
    Jws {
        header: header.clone(),
        claims: claims.clone(),
    }
    .sign_hs256(secret)
}

fn set_or_remove(object: &mut Value, name: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ed_key;

    #[test]
    fn a_null_member_is_removed_and_an_unsigned_token_ends_with_a_dot() {
        let key = ed_key("k");
        let jws = Jws::for_key(&key)
            .header("typ", Value::Null)
            .claim("sub", json!("u"));
        assert_eq!(jws.header, json!({ "alg": "EdDSA", "kid": "k" }));
        assert_eq!(jws.unsigned(), format!("{}.", jws.signing_input()));
        assert_eq!(jws.sign(&key).split('.').count(), 3);
    }
}
