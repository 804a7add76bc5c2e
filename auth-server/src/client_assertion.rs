//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, RFC 7521 §4.2): the client
//! signs a short-lived JWT with a key of its JWKS. Everything here is pure: the caller finds
//! the keys (configuration, the metadata document, or its `jwks_uri`), checks the `jti` for
//! reuse and answers errors as `invalid_client`.

use jwt_simple::JWTError;
use jwt_simple::prelude::*;
use serde_json::Value;

/// The only `client_assertion_type` accepted (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Signature algorithms accepted on client assertions, in the order the metadata lists them.
/// Asymmetric only: `none` has no signature, and an HMAC key would be a shared secret, which
/// this method exists to avoid.
pub const SIGNING_ALGS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

/// Latest accepted `exp`, counted from now. An assertion is made for one request: a long-lived
/// one is a bearer credential in disguise, and every accepted `jti` is stored until its `exp`.
pub const MAX_ASSERTION_LIFETIME_SECS: u64 = 300;

/// Clock difference tolerated between the client and this server on `exp`, `iat` and `nbf`.
pub const CLOCK_SKEW_SECS: u64 = 60;

/// Longest `jti` accepted (each is stored until the assertion expires).
pub const MAX_JTI_CHARS: usize = 256;

/// Longest client assertion accepted, in bytes.
pub const MAX_ASSERTION_BYTES: usize = 8 * 1024;

/// Most keys a client's JWKS may hold.
pub const MAX_KEYS: usize = 16;

/// A client's public keys: a JWKS document checked for shape, its keys kept as JSON until one
/// is chosen for an assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<Value>,
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`) and refuses one without a usable signing key.
    /// Keys for encryption (`use: enc`) and of unknown types are left out.
    pub fn parse(body: &[u8]) -> Result<Jwks, String> {
        let doc: Value =
            serde_json::from_slice(body).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
        Self::from_value(&doc)
    }

    /// [`Jwks::parse`] for a document already read as JSON (an inline `jwks`).
    pub fn from_value(doc: &Value) -> Result<Jwks, String> {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS must be an object with a `keys` array")?;
        if keys.len() > MAX_KEYS {
            return Err(format!("JWKS holds more than {MAX_KEYS} keys"));
        }
        let keys: Vec<Value> = keys
            .iter()
            .filter(|k| {
                let signing = k.get("use").is_none_or(|u| u == "sig");
                let known = matches!(
                    k.get("kty").and_then(Value::as_str),
                    Some("RSA" | "EC" | "OKP")
                );
                signing && known
            })
            .cloned()
            .collect();
        if keys.is_empty() {
            return Err("JWKS holds no RSA, EC or OKP signing key".into());
        }
        // A kid must name one key. RFC 7517 §4.5 lets keys of different types share one (the
        // algorithm then tells them apart); two keys of one type under one kid would make the
        // key that verifies an assertion depend on their order in the document.
        for (i, key) in keys.iter().enumerate() {
            let Some(kid) = key.get("kid").and_then(Value::as_str) else {
                continue;
            };
            let kty = key.get("kty").and_then(Value::as_str).unwrap_or_default();
            let twin = keys.iter().skip(i + 1).any(|other| {
                other.get("kid").and_then(Value::as_str) == Some(kid)
                    && other.get("kty").and_then(Value::as_str) == Some(kty)
            });
            if twin {
                return Err(format!(
                    "JWKS holds more than one {kty} signing key with kid `{kid}`: each kid must name one key"
                ));
            }
        }
        Ok(Jwks { keys })
    }

    /// The key `kid` names for `alg`: among keys sharing the kid, the one of the type `alg`
    /// needs, else the first (whose type the caller then refuses, naming it).
    fn by_kid(&self, kid: &str, alg: &str) -> Option<&Value> {
        let (kty, _) = key_type_for(alg);
        let named = || {
            self.keys
                .iter()
                .filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        };
        named()
            .find(|k| k.get("kty").and_then(Value::as_str) == Some(kty))
            .or_else(|| named().next())
    }
}

/// What a valid assertion must say, and when "now" is.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub client_id: &'a str,
    /// Accepted `aud` values: the token endpoint URL and the issuer identifier.
    pub audiences: &'a [String],
    /// The client's `token_endpoint_auth_signing_alg`, when it declared one.
    pub declared_alg: Option<&'a str>,
    pub now: i64,
}

/// An assertion whose signature and claims passed; its `jti` is not yet known to be unused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub jti: String,
    /// Until when the `jti` must be remembered (`exp` plus the tolerated skew).
    pub remember_until: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionError {
    /// The `kid` names no key of the JWKS: the client may have rotated its keys.
    UnknownKid(String),
    /// Anything else; the text says which check failed.
    Invalid(String),
}

impl AssertionError {
    pub fn description(&self) -> String {
        match self {
            AssertionError::UnknownKid(kid) => {
                format!("client_assertion kid `{kid}` is not in the client's JWKS")
            }
            AssertionError::Invalid(reason) => reason.clone(),
        }
    }
}

fn invalid(reason: impl Into<String>) -> AssertionError {
    AssertionError::Invalid(reason.into())
}

/// The `sub` of an assertion, read without verifying it: only to find which client's keys
/// verify it when the request carries no `client_id`.
pub fn unverified_subject(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = Base64UrlSafeNoPadding::decode_to_vec(payload, None).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("sub")?.as_str().map(str::to_string)
}

/// The JWK `kty` (and curve) an algorithm needs.
fn key_type_for(alg: &str) -> (&'static str, Option<&'static str>) {
    match alg {
        "ES256" => ("EC", Some("P-256")),
        "EdDSA" => ("OKP", Some("Ed25519")),
        _ => ("RSA", None),
    }
}

/// Verifies a client assertion against the client's keys: header, key choice, signature, then
/// the claims.
pub fn verify(
    assertion: &str,
    jwks: &Jwks,
    expected: &Expected<'_>,
) -> Result<Verified, AssertionError> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(invalid(format!(
            "client_assertion is longer than {MAX_ASSERTION_BYTES} bytes"
        )));
    }
    let meta = Token::decode_metadata(assertion)
        .map_err(|_| invalid("client_assertion is not a signed JWT (JWS compact serialization)"))?;
    let alg = meta.algorithm();
    if alg.eq_ignore_ascii_case("none") {
        return Err(invalid(
            "client_assertion alg `none` is refused: the assertion must be signed",
        ));
    }
    if alg.starts_with("HS") {
        return Err(invalid(format!(
            "client_assertion alg `{alg}` is refused: symmetric (HMAC) algorithms are not accepted for private_key_jwt"
        )));
    }
    if !SIGNING_ALGS.contains(&alg) {
        return Err(invalid(format!(
            "client_assertion alg `{alg}` is not supported (supported: {})",
            SIGNING_ALGS.join(", ")
        )));
    }
    if let Some(declared) = expected.declared_alg
        && declared != alg
    {
        return Err(invalid(format!(
            "client_assertion is signed with `{alg}` but the client declared token_endpoint_auth_signing_alg `{declared}`"
        )));
    }
    let key = match meta.key_id() {
        Some(kid) => jwks
            .by_kid(kid, alg)
            .ok_or_else(|| AssertionError::UnknownKid(kid.to_string()))?,
        None => match jwks.keys.as_slice() {
            [only] => only,
            keys => {
                return Err(invalid(format!(
                    "client_assertion has no kid and the client's JWKS holds {} keys",
                    keys.len()
                )));
            }
        },
    };
    let kid_shown = key.get("kid").and_then(Value::as_str).unwrap_or("(no kid)");
    let (kty, crv) = key_type_for(alg);
    let key_kty = key.get("kty").and_then(Value::as_str).unwrap_or_default();
    let key_crv = key.get("crv").and_then(Value::as_str);
    if key_kty != kty || (crv.is_some() && key_crv != crv) {
        return Err(invalid(format!(
            "client_assertion alg `{alg}` does not fit key `{kid_shown}` (kty {key_kty}{})",
            key_crv.map(|c| format!(", crv {c}")).unwrap_or_default()
        )));
    }
    if let Some(key_alg) = key.get("alg").and_then(Value::as_str)
        && key_alg != alg
    {
        return Err(invalid(format!(
            "client_assertion alg `{alg}` differs from the alg `{key_alg}` of key `{kid_shown}`"
        )));
    }
    // The kid already chose the key; jwt-simple must not compare it again.
    let mut jwk = key.clone();
    if let Some(obj) = jwk.as_object_mut() {
        obj.remove("kid");
    }
    let jwk = jwk.to_string();
    let bad_key = |e: jwt_simple::Error| {
        invalid(format!(
            "key `{kid_shown}` of the client's JWKS is not a usable {alg} public key: {e}"
        ))
    };
    let options = VerificationOptions {
        accept_future: false,
        time_tolerance: Some(Duration::from_secs(CLOCK_SKEW_SECS)),
        artificial_time: Some(UnixTimeStamp::from_secs(
            u64::try_from(expected.now).unwrap_or(0),
        )),
        max_token_length: Some(MAX_ASSERTION_BYTES),
        ..Default::default()
    };
    let verified = match alg {
        "RS256" => RS256PublicKey::from_jwk(&jwk)
            .map_err(bad_key)?
            .verify_token::<NoCustomClaims>(assertion, Some(options)),
        "PS256" => PS256PublicKey::from_jwk(&jwk)
            .map_err(bad_key)?
            .verify_token::<NoCustomClaims>(assertion, Some(options)),
        "ES256" => ES256PublicKey::from_jwk(&jwk)
            .map_err(bad_key)?
            .verify_token::<NoCustomClaims>(assertion, Some(options)),
        _ => Ed25519PublicKey::from_jwk(&jwk)
            .map_err(bad_key)?
            .verify_token::<NoCustomClaims>(assertion, Some(options)),
    };
    let claims = verified.map_err(|e| {
        invalid(match e.downcast_ref::<JWTError>() {
            Some(JWTError::InvalidSignature) => {
                format!("client_assertion signature does not verify with key `{kid_shown}`")
            }
            Some(JWTError::TokenHasExpired) => "client_assertion has expired (exp)".to_string(),
            Some(JWTError::ClockDrift) => "client_assertion iat is in the future".to_string(),
            Some(JWTError::TokenNotValidYet) => {
                "client_assertion is not valid yet (nbf is in the future)".to_string()
            }
            _ => format!("client_assertion could not be verified: {e}"),
        })
    })?;
    check_claims(&claims, expected)
}

/// The claim checks of RFC 7523 §3 after the signature verified.
fn check_claims(
    claims: &JWTClaims<NoCustomClaims>,
    expected: &Expected<'_>,
) -> Result<Verified, AssertionError> {
    if claims.issuer.as_deref() != Some(expected.client_id) {
        return Err(invalid("client_assertion iss must be the client_id"));
    }
    if claims.subject.as_deref() != Some(expected.client_id) {
        return Err(invalid("client_assertion sub must be the client_id"));
    }
    let audience_ok = match &claims.audiences {
        Some(Audiences::AsString(a)) => expected.audiences.contains(a),
        Some(Audiences::AsSet(set)) => expected.audiences.iter().any(|a| set.contains(a)),
        None => {
            return Err(invalid("client_assertion aud is required"));
        }
    };
    if !audience_ok {
        return Err(invalid(format!(
            "client_assertion aud must name this server: {}",
            expected.audiences.join(" or ")
        )));
    }
    let exp = claims
        .expires_at
        .ok_or_else(|| invalid("client_assertion exp is required"))?
        .as_secs();
    let now = u64::try_from(expected.now).unwrap_or(0);
    if exp > now + MAX_ASSERTION_LIFETIME_SECS + CLOCK_SKEW_SECS {
        return Err(invalid(format!(
            "client_assertion exp is too far in the future (at most {MAX_ASSERTION_LIFETIME_SECS} seconds from now)"
        )));
    }
    let jti = claims
        .jwt_id
        .clone()
        .filter(|j| !j.is_empty())
        .ok_or_else(|| invalid("client_assertion jti is required"))?;
    if jti.chars().count() > MAX_JTI_CHARS {
        return Err(invalid(format!(
            "client_assertion jti is longer than {MAX_JTI_CHARS} characters"
        )));
    }
    Ok(Verified {
        jti,
        remember_until: i64::try_from(exp + CLOCK_SKEW_SECS).unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_auth_test_support::{Jws, TestKey, ec_key, ed_key, jwks, rsa_key};
    use serde_json::json;

    const CLIENT: &str = "https://chatgpt.example/client.json";
    const NOW: i64 = 1_800_000_000;

    fn audiences() -> Vec<String> {
        vec![
            "https://as.example/token".to_string(),
            "https://as.example".to_string(),
        ]
    }

    fn claims() -> Value {
        json!({
            "iss": CLIENT, "sub": CLIENT, "aud": "https://as.example/token",
            "iat": NOW, "exp": NOW + 60, "jti": "j-1",
        })
    }

    fn assertion(key: &TestKey, claims: Value) -> String {
        Jws {
            header: json!({ "alg": key.alg(), "kid": key.kid, "typ": "JWT" }),
            claims,
        }
        .sign(key)
    }

    fn check(token: &str, keys: &Jwks, declared: Option<&str>) -> Result<Verified, AssertionError> {
        let aud = audiences();
        verify(
            token,
            keys,
            &Expected {
                client_id: CLIENT,
                audiences: &aud,
                declared_alg: declared,
                now: NOW,
            },
        )
    }

    fn keys_of(keys: &[&TestKey]) -> Jwks {
        Jwks::from_value(&jwks(keys)).unwrap()
    }

    fn refused(token: &str, keys: &Jwks, declared: Option<&str>) -> String {
        match check(token, keys, declared) {
            Err(AssertionError::Invalid(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_signed_assertion_of_every_algorithm_verifies() {
        for key in [rsa_key("r"), ec_key("e"), ed_key("o")] {
            let keys = keys_of(&[&key]);
            let verified = check(&assertion(&key, claims()), &keys, Some(key.alg())).unwrap();
            assert_eq!(verified.jti, "j-1");
            assert_eq!(verified.remember_until, NOW + 60 + CLOCK_SKEW_SECS as i64);
        }
        // The issuer is an accepted audience too, also inside an array.
        let key = rsa_key("r");
        let mut c = claims();
        c["aud"] = json!(["https://other.example", "https://as.example"]);
        assert!(check(&assertion(&key, c), &keys_of(&[&key]), None).is_ok());
        // Without kid, the only key is used.
        let token = Jws {
            header: json!({ "alg": "RS256" }),
            claims: claims(),
        }
        .sign(&key);
        assert!(check(&token, &keys_of(&[&key]), None).is_ok());
    }

    #[test]
    fn a_ps256_assertion_verifies_with_a_key_published_for_ps256() {
        let pem = include_str!("../../test-support/keys/rsa2048-test-key.pem");
        let signer = PS256KeyPair::from_pem(pem).unwrap().with_key_id("p");
        let mut claims = Claims::create(Duration::from_secs(60))
            .with_issuer(CLIENT)
            .with_subject(CLIENT)
            .with_audience("https://as.example")
            .with_jwt_id("ps-1");
        claims.issued_at = Some(UnixTimeStamp::from_secs(NOW as u64));
        claims.invalid_before = Some(UnixTimeStamp::from_secs(NOW as u64));
        claims.expires_at = Some(UnixTimeStamp::from_secs(NOW as u64 + 60));
        let token = signer.sign(claims).unwrap();
        let mut jwk = rsa_key("p").public_jwk();
        jwk["alg"] = json!("PS256");
        let keys = Jwks::from_value(&json!({ "keys": [jwk] })).unwrap();
        assert_eq!(check(&token, &keys, Some("PS256")).unwrap().jti, "ps-1");
        // The same key published for RS256 refuses it.
        assert!(refused(&token, &keys_of(&[&rsa_key("p")]), None).contains("differs"));
    }

    #[test]
    fn each_failed_claim_check_is_named() {
        let key = rsa_key("r");
        let keys = keys_of(&[&key]);
        let with = |name: &str, value: Value| {
            let mut c = claims();
            if value.is_null() {
                c.as_object_mut().unwrap().remove(name);
            } else {
                c[name] = value;
            }
            refused(&assertion(&key, c), &keys, None)
        };
        assert!(with("iss", json!("https://evil.example/c.json")).contains("iss must be"));
        assert!(with("sub", json!("someone")).contains("sub must be"));
        assert!(with("aud", json!("https://evil.example/token")).contains("aud must name"));
        assert!(with("aud", Value::Null).contains("aud is required"));
        assert!(with("exp", json!(NOW - 3600)).contains("has expired"));
        assert!(with("exp", Value::Null).contains("exp is required"));
        assert!(with("exp", json!(NOW + 3600)).contains("too far in the future"));
        assert!(with("iat", json!(NOW + 3600)).contains("iat is in the future"));
        assert!(with("nbf", json!(NOW + 3600)).contains("nbf is in the future"));
        assert!(with("jti", Value::Null).contains("jti is required"));
        assert!(with("jti", json!("")).contains("jti is required"));
        // Within the tolerated skew, times are accepted.
        let mut c = claims();
        c["iat"] = json!(NOW + 30);
        c["exp"] = json!(NOW - 30);
        assert!(check(&assertion(&key, c), &keys, None).is_ok());
    }

    #[test]
    fn unsigned_hmac_and_mismatched_algorithms_are_refused() {
        let key = rsa_key("r");
        let keys = keys_of(&[&key]);
        let none = Jws {
            header: json!({ "alg": "none", "kid": "r" }),
            claims: claims(),
        }
        .unsigned();
        assert!(refused(&none, &keys, None).contains("alg `none` is refused"));
        // HS256 keyed with the published JWK: the algorithm-confusion attack.
        let hs = Jws {
            header: json!({ "alg": "HS256", "kid": "r" }),
            claims: claims(),
        }
        .sign_hs256(key.public_jwk_text().as_bytes());
        assert!(refused(&hs, &keys, None).contains("HMAC"));
        // Declared RS256, signed ES256 (with a registered ES256 key).
        let ec = ec_key("e");
        let both = keys_of(&[&key, &ec]);
        assert!(
            refused(&assertion(&ec, claims()), &both, Some("RS256"))
                .contains("declared token_endpoint_auth_signing_alg `RS256`")
        );
        // Header says ES256 but names the RSA key.
        let confused = ec.jwt_with_header(&json!({ "alg": "ES256", "kid": "r" }), &claims());
        assert!(refused(&confused, &both, None).contains("does not fit key `r`"));
        // PS256 on a key published for RS256 only.
        let ps = Jws {
            header: json!({ "alg": "PS256", "kid": "r" }),
            claims: claims(),
        }
        .sign(&key);
        assert!(refused(&ps, &keys, None).contains("differs from the alg `RS256`"));
        assert!(refused("not-a-jwt", &keys, None).contains("not a signed JWT"));
    }

    #[test]
    fn a_wrong_key_or_an_unknown_kid_is_refused() {
        let key = ed_key("a");
        let other = ed_key("b");
        // Signed by `b`'s private key but naming `a`.
        let forged = other.jwt_with_header(&json!({ "alg": "EdDSA", "kid": "a" }), &claims());
        assert!(refused(&forged, &keys_of(&[&key]), None).contains("signature does not verify"));
        assert_eq!(
            check(&assertion(&other, claims()), &keys_of(&[&key]), None),
            Err(AssertionError::UnknownKid("b".into()))
        );
        let no_kid = Jws {
            header: json!({ "alg": "EdDSA" }),
            claims: claims(),
        }
        .sign(&key);
        assert!(refused(&no_kid, &keys_of(&[&key, &other]), None).contains("holds 2 keys"));
    }

    #[test]
    fn jwks_documents_are_checked_for_shape() {
        assert!(Jwks::parse(b"[]").is_err());
        assert!(Jwks::parse(br#"{"keys":[]}"#).is_err());
        assert!(Jwks::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
        let mut enc = rsa_key("r").public_jwk();
        enc["use"] = json!("enc");
        assert!(Jwks::from_value(&json!({ "keys": [enc] })).is_err());
        assert!(Jwks::parse(jwks(&[&rsa_key("r")]).to_string().as_bytes()).is_ok());
    }

    #[test]
    fn a_kid_names_one_key_of_each_type() {
        // Two RSA keys under one kid: which one verifies would depend on their order.
        let twins = Jwks::from_value(&jwks(&[&rsa_key("k"), &rsa_key("k")])).unwrap_err();
        assert!(
            twins.contains("more than one RSA signing key with kid `k`"),
            "{twins}"
        );
        // Keys of different types may share a kid; the assertion's alg picks the key, whichever
        // comes first in the document.
        let (rsa, ec, ed) = (rsa_key("k"), ec_key("k"), ed_key("k"));
        for order in [[&rsa, &ec, &ed], [&ed, &ec, &rsa], [&ec, &rsa, &ed]] {
            let keys = keys_of(&order);
            for key in [&rsa, &ec, &ed] {
                let verified = check(&assertion(key, claims()), &keys, None);
                assert_eq!(
                    verified.map(|v| v.jti),
                    Ok("j-1".to_string()),
                    "{}",
                    key.alg()
                );
            }
        }
        // An encryption key does not count as a twin: only signing keys are kept.
        let mut enc = rsa_key("k").public_jwk();
        enc["use"] = json!("enc");
        let doc = json!({ "keys": [enc, rsa_key("k").public_jwk()] });
        assert!(Jwks::from_value(&doc).is_ok());
        // A kid no key of the needed type carries: the key it names is refused by type.
        let only_rsa = keys_of(&[&rsa]);
        let forged = assertion(&ec, claims());
        assert!(refused(&forged, &only_rsa, None).contains("does not fit key `k`"));
    }

    #[test]
    fn the_subject_is_read_to_find_the_client() {
        let key = rsa_key("r");
        assert_eq!(
            unverified_subject(&assertion(&key, claims())).as_deref(),
            Some(CLIENT)
        );
        assert_eq!(unverified_subject("a.b.c"), None);
    }
}
