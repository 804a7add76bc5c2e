//! Signing keys: generation, JWK export, signing, and the rotation schedule.
//!
//! Rotation model: every key row has an `active_from` time. The signing key is the newest key
//! whose `active_from` has passed. A key whose `active_from` lies in the future is already
//! published in the JWKS (so verifiers learn it before any token carries its `kid`). A key that
//! was superseded stays published for the access-token lifetime plus a margin, so tokens signed
//! with it verify until they expire; after that it is dropped from the JWKS and pruned.

use jwt_simple::prelude::*;
use serde::Serialize;

use crate::config::SigningAlgorithm;

/// Extra time an old key stays published after the last token it signed could have expired.
pub const RETENTION_MARGIN_SECS: i64 = 60;

pub enum KeyPair {
    Ed(Ed25519KeyPair),
    Es(ES256KeyPair),
    Rs(Box<RS256KeyPair>),
}

/// Claims of an RFC 9068 access token beyond the registered ones.
#[derive(Serialize, serde::Deserialize, Debug, Clone)]
pub struct AccessClaims {
    pub client_id: String,
    pub scope: String,
    /// Claims copied from a federated person's identity provider (`copy_claims`).
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub upstream: serde_json::Map<String, serde_json::Value>,
}

impl KeyPair {
    pub fn generate(alg: SigningAlgorithm) -> Result<Self, jwt_simple::Error> {
        Ok(match alg {
            SigningAlgorithm::EdDsa => KeyPair::Ed(Ed25519KeyPair::generate()),
            SigningAlgorithm::Es256 => KeyPair::Es(ES256KeyPair::generate()),
            SigningAlgorithm::Rs256 => KeyPair::Rs(Box::new(RS256KeyPair::generate(2048)?)),
        })
    }

    pub fn from_der(
        alg: SigningAlgorithm,
        der: &[u8],
        kid: &str,
    ) -> Result<Self, jwt_simple::Error> {
        Ok(match alg {
            SigningAlgorithm::EdDsa => KeyPair::Ed(Ed25519KeyPair::from_der(der)?.with_key_id(kid)),
            SigningAlgorithm::Es256 => KeyPair::Es(ES256KeyPair::from_der(der)?.with_key_id(kid)),
            SigningAlgorithm::Rs256 => {
                KeyPair::Rs(Box::new(RS256KeyPair::from_der(der)?.with_key_id(kid)))
            }
        })
    }

    pub fn private_der(&self) -> Result<Vec<u8>, jwt_simple::Error> {
        match self {
            KeyPair::Ed(k) => Ok(k.to_der()),
            KeyPair::Es(k) => k.to_der(),
            KeyPair::Rs(k) => k.to_der(),
        }
    }

    /// RFC 7638 thumbprint of the public key, used as `kid`.
    pub fn thumbprint(&self) -> String {
        match self {
            KeyPair::Ed(k) => k.jwk_thumbprint(),
            KeyPair::Es(k) => k.public_key().jwk_thumbprint(),
            KeyPair::Rs(k) => k.public_key().jwk_thumbprint(),
        }
    }

    /// The public JWK (`kty`, key material, `alg`, `use: sig`, `kid`).
    pub fn public_jwk(&self, kid: &str) -> Result<serde_json::Value, serde_json::Error> {
        let text = match self {
            KeyPair::Ed(k) => k.public_key().with_key_id(kid).to_jwk(),
            KeyPair::Es(k) => k.public_key().with_key_id(kid).to_jwk(),
            KeyPair::Rs(k) => k.public_key().with_key_id(kid).to_jwk(),
        };
        serde_json::from_str(&text)
    }

    /// Signs an access token with header `typ: at+jwt` and this key's `kid`.
    pub fn sign(&self, claims: JWTClaims<AccessClaims>) -> Result<String, jwt_simple::Error> {
        let opts = HeaderOptions {
            signature_type: Some("at+jwt".to_string()),
            ..Default::default()
        };
        match self {
            KeyPair::Ed(k) => k.sign_with_options(claims, &opts),
            KeyPair::Es(k) => k.sign_with_options(claims, &opts),
            KeyPair::Rs(k) => k.sign_with_options(claims, &opts),
        }
    }
}

/// What the schedule needs to know of a stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta {
    pub kid: String,
    pub active_from: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Index of the key that signs now.
    pub signing: Option<usize>,
    /// Indices of the keys the JWKS lists (pending, signing, and recently superseded keys).
    pub published: Vec<usize>,
}

/// Computes the schedule. `keys` must be sorted by `active_from` (oldest first);
/// `retention_secs` is how long a superseded key must stay published.
pub fn schedule(keys: &[KeyMeta], now: i64, retention_secs: i64) -> Schedule {
    let signing = keys.iter().rposition(|k| k.active_from <= now);
    let published = keys
        .iter()
        .enumerate()
        .filter(|(i, k)| {
            if k.active_from > now || Some(*i) == signing {
                return true;
            }
            // Superseded when the next key became active.
            let superseded_at = keys.get(i + 1).map_or(i64::MAX, |next| next.active_from);
            superseded_at.saturating_add(retention_secs) > now
        })
        .map(|(i, _)| i)
        .collect();
    Schedule { signing, published }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kid: &str, active_from: i64) -> KeyMeta {
        KeyMeta {
            kid: kid.into(),
            active_from,
        }
    }

    #[test]
    fn pending_key_is_published_before_it_signs() {
        let keys = [meta("old", 0), meta("new", 1000)];
        let s = schedule(&keys, 500, 600);
        assert_eq!(s.signing, Some(0));
        assert_eq!(s.published, vec![0, 1]);
    }

    #[test]
    fn superseded_key_stays_until_its_tokens_expired() {
        let keys = [meta("old", 0), meta("new", 1000)];
        assert_eq!(
            schedule(&keys, 1001, 600),
            Schedule {
                signing: Some(1),
                published: vec![0, 1]
            }
        );
        assert_eq!(schedule(&keys, 1599, 600).published, vec![0, 1]);
        assert_eq!(
            schedule(&keys, 1600, 600),
            Schedule {
                signing: Some(1),
                published: vec![1]
            }
        );
    }

    #[test]
    fn no_active_key_means_nothing_signs() {
        let keys = [meta("future", 100)];
        assert_eq!(
            schedule(&keys, 50, 600),
            Schedule {
                signing: None,
                published: vec![0]
            }
        );
        assert_eq!(
            schedule(&[], 50, 600),
            Schedule {
                signing: None,
                published: vec![]
            }
        );
    }

    #[test]
    fn every_algorithm_signs_a_token_its_jwk_verifies() {
        for alg in [SigningAlgorithm::EdDsa, SigningAlgorithm::Es256] {
            let kp = KeyPair::generate(alg).unwrap();
            let kid = kp.thumbprint();
            let reloaded = KeyPair::from_der(alg, &kp.private_der().unwrap(), &kid).unwrap();
            let claims = Claims::with_custom_claims(
                AccessClaims {
                    client_id: "c".into(),
                    scope: "s".into(),
                    upstream: Default::default(),
                },
                Duration::from_secs(60),
            );
            let token = reloaded.sign(claims).unwrap();
            let meta = Token::decode_metadata(&token).unwrap();
            assert_eq!(meta.signature_type(), Some("at+jwt"));
            assert_eq!(meta.key_id(), Some(kid.as_str()));
            assert_eq!(meta.algorithm(), alg.jwa_name());
            let jwk = kp.public_jwk(&kid).unwrap();
            assert_eq!(jwk["kid"], kid.as_str());
            assert_eq!(jwk["alg"], alg.jwa_name());
            let jwk_text = jwk.to_string();
            let verified = match alg {
                SigningAlgorithm::EdDsa => Ed25519PublicKey::from_jwk(&jwk_text)
                    .unwrap()
                    .verify_token::<AccessClaims>(&token, None),
                _ => ES256PublicKey::from_jwk(&jwk_text)
                    .unwrap()
                    .verify_token::<AccessClaims>(&token, None),
            };
            assert_eq!(verified.unwrap().custom.client_id, "c");
        }
    }
}
