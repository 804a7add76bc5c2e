//! JWT access token validation (RFC 9068 profile, RFC 8725 / RFC 9700 checks).
//!
//! Pure: the current time is a parameter, keys come from a [`KeySet`]. Every failed check is a
//! [`TokenError`] whose description is static text (nothing from the token is echoed).

use crate::claims::{self, Claims, Loose};
use crate::config::IdentityHeader;
use crate::jwks::{Algorithm, KeyFingerprint, KeySelection, KeySet};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A failed token check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts separated by dots.
    Malformed,
    /// Over [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// Header not a JSON object.
    HeaderJson,
    /// Payload not a JSON object.
    PayloadJson,
    /// `alg: none`.
    AlgNone,
    /// `HS256` and friends.
    AlgHmac,
    /// Any other unknown `alg`.
    AlgUnsupported,
    /// `typ` missing or not `at+jwt`/`JWT`.
    Typ,
    /// `crit` header present.
    Crit,
    /// No `kid` while the issuer has several keys.
    KidAmbiguous,
    /// `kid` not in the issuer's key set.
    UnknownKid,
    /// Token `alg` differs from the algorithm fixed by the key type.
    AlgKeyMismatch,
    /// Signature does not verify.
    Signature,
    /// No `iss`.
    IssMissing,
    /// `iss` not accepted for this resource.
    IssMismatch,
    /// No `aud`.
    AudMissing,
    /// `aud` does not contain an accepted audience.
    AudMismatch,
    /// No `exp`.
    ExpMissing,
    /// `exp` passed.
    Expired,
    /// `nbf` in the future.
    NotYetValid,
    /// `iat` in the future.
    IssuedInFuture,
    /// A registered claim has the wrong JSON type.
    ClaimType,
    /// A claim mapped to an identity header has characters not allowed in a header value.
    IdentityClaim,
    /// A header parameter or claim the filter reads appears twice (see `claims`).
    Duplicate,
}

impl TokenError {
    /// The `error_description` text for the challenge.
    pub fn description(self) -> &'static str {
        match self {
            TokenError::Malformed => "token is not a JWS compact serialization",
            TokenError::TooLarge => "token is too large",
            TokenError::HeaderJson => "token header is not valid JSON",
            TokenError::PayloadJson => "token payload is not valid JSON",
            TokenError::AlgNone => "alg none is not accepted",
            TokenError::AlgHmac => "HMAC algorithms are not accepted",
            TokenError::AlgUnsupported => "unsupported alg",
            TokenError::Typ => "token typ must be at+jwt or JWT",
            TokenError::Crit => "crit header is not supported",
            TokenError::KidAmbiguous => "token has no kid and the issuer has several keys",
            TokenError::UnknownKid => "unknown key id",
            TokenError::AlgKeyMismatch => "alg does not match the key type",
            TokenError::Signature => "signature verification failed",
            TokenError::IssMissing => "iss claim missing",
            TokenError::IssMismatch => "issuer not accepted",
            TokenError::AudMissing => "aud claim missing",
            TokenError::AudMismatch => "audience not accepted",
            TokenError::ExpMissing => "exp claim missing",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid (nbf)",
            TokenError::IssuedInFuture => "token issued in the future (iat)",
            TokenError::ClaimType => "claim has an invalid type",
            TokenError::IdentityClaim => "identity claim not allowed in a header",
            TokenError::Duplicate => "token repeats a header parameter or claim",
        }
    }
}

/// A structurally valid, not yet verified JWS.
#[derive(Debug)]
pub struct UnverifiedJwt<'a> {
    alg: Algorithm,
    kid: Option<String>,
    claims: Claims,
    signing_input: &'a str,
    signature: Vec<u8>,
}

/// What the checks need besides the token.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// The issuer whose keys are used; `iss` must equal it.
    pub issuer: &'a str,
    /// The token's `aud` must contain one of these.
    pub audiences: &'a [String],
    /// Current time, seconds since the Unix epoch (from the host).
    pub now: u64,
    /// Allowed clock skew in seconds.
    pub skew: u64,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The claims the filter reads (registered ones and configured identity claims).
    pub claims: Claims,
    /// Scopes from `scope` (space separated) or `scp` (array or string).
    pub scopes: Vec<String>,
    /// `exp`, seconds since the Unix epoch.
    pub exp: u64,
    /// The key whose signature verified.
    pub key: KeyFingerprint,
}

fn decode_part(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)
}

/// Splits and decodes a compact JWS and checks its header (`alg`, `typ`, `crit`). Of the claims
/// only the registered ones the checks use and those named in `identity` are kept.
pub fn decode<'t>(
    token: &'t str,
    identity: &[IdentityHeader],
) -> Result<UnverifiedJwt<'t>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if h.is_empty() || p.is_empty() {
        return Err(TokenError::Malformed);
    }
    let header = claims::parse_header(&decode_part(h)?)?;
    let name = header
        .alg
        .as_ref()
        .and_then(Loose::as_str)
        .unwrap_or_default();
    let alg = match Algorithm::from_name(name) {
        Some(alg) => alg,
        None if name.eq_ignore_ascii_case("none") => return Err(TokenError::AlgNone),
        None if name.starts_with("HS") => return Err(TokenError::AlgHmac),
        None => return Err(TokenError::AlgUnsupported),
    };
    match header.typ.as_ref().and_then(Loose::as_str) {
        Some(t)
            if t.eq_ignore_ascii_case("at+jwt")
                || t.eq_ignore_ascii_case("application/at+jwt")
                || t.eq_ignore_ascii_case("JWT") => {}
        _ => return Err(TokenError::Typ),
    }
    if header.crit {
        return Err(TokenError::Crit);
    }
    let kid = match header.kid {
        None => None,
        Some(Loose::Str(k)) => Some(k),
        Some(_) => return Err(TokenError::HeaderJson),
    };
    if s.is_empty() {
        return Err(TokenError::Signature);
    }
    let signature = decode_part(s)?;
    let claims = claims::parse_claims(&decode_part(p)?, identity)?;
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(TokenError::Malformed)?;
    Ok(UnverifiedJwt {
        alg,
        kid,
        claims,
        signing_input,
        signature,
    })
}

fn numeric_date(claim: Option<&Loose>) -> Result<Option<u64>, TokenError> {
    match claim {
        None => Ok(None),
        Some(Loose::Int(v)) => Ok(Some(*v)),
        // Fractional NumericDate: round down; negative or absurd values are invalid.
        Some(Loose::Float(f)) if f.is_finite() && (0.0..1.0e15).contains(f) => {
            Ok(Some(f.floor() as u64))
        }
        Some(_) => Err(TokenError::ClaimType),
    }
}

fn scopes_of(claims: &mut Claims) -> Result<Vec<String>, TokenError> {
    let split = |s: &str| s.split_ascii_whitespace().map(str::to_string).collect();
    match (&mut claims.scope, &mut claims.scp) {
        (Some(Loose::Str(s)), _) => Ok(split(s)),
        (Some(_), _) => Err(TokenError::ClaimType),
        (None, None) => Ok(Vec::new()),
        (None, Some(Loose::Str(s))) => Ok(split(s)),
        // Moved out: the array is not read again.
        (None, Some(Loose::Strings(items))) => Ok(std::mem::take(items)),
        (None, Some(_)) => Err(TokenError::ClaimType),
    }
}

impl UnverifiedJwt<'_> {
    /// The unverified `iss`, used only to choose the key set.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.iss.as_ref().and_then(Loose::as_str)
    }

    /// The `kid` header, if any.
    #[cfg(test)]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Only the signature step: `Ok` when a key of `keys` verifies the token.
    pub fn check_signature(&self, keys: &KeySet) -> Result<KeyFingerprint, TokenError> {
        let key = match keys.select(self.kid.as_deref()) {
            KeySelection::Found(k) => k,
            KeySelection::UnknownKid => return Err(TokenError::UnknownKid),
            KeySelection::Ambiguous => return Err(TokenError::KidAmbiguous),
        };
        if key.algorithm() != self.alg {
            return Err(TokenError::AlgKeyMismatch);
        }
        if !key.verify(self.signing_input.as_bytes(), &self.signature) {
            return Err(TokenError::Signature);
        }
        Ok(*key.fingerprint())
    }

    /// Signature, then `iss`, `aud`, `exp`, `nbf`, `iat`, scopes.
    pub fn verify(
        mut self,
        keys: &KeySet,
        expect: &Expectations<'_>,
    ) -> Result<VerifiedToken, TokenError> {
        let key = self.check_signature(keys)?;
        check_issuer(&self.claims, expect.issuer)?;
        check_audience(&self.claims, expect.audiences)?;
        let exp = check_times(&self.claims, expect.now, expect.skew)?;
        let scopes = scopes_of(&mut self.claims)?;
        Ok(VerifiedToken {
            claims: self.claims,
            scopes,
            exp,
            key,
        })
    }
}

/// `iss` must equal the expected issuer byte for byte.
pub fn check_issuer(claims: &Claims, issuer: &str) -> Result<(), TokenError> {
    match &claims.iss {
        None => Err(TokenError::IssMissing),
        Some(Loose::Str(iss)) if iss == issuer => Ok(()),
        Some(Loose::Str(_)) => Err(TokenError::IssMismatch),
        Some(_) => Err(TokenError::ClaimType),
    }
}

/// `aud` (string or array of strings) must contain one of the accepted audiences.
pub fn check_audience(claims: &Claims, accepted: &[String]) -> Result<(), TokenError> {
    let accepted_has = |a: &String| accepted.contains(a);
    match &claims.aud {
        None => Err(TokenError::AudMissing),
        Some(Loose::Str(a)) if accepted_has(a) => Ok(()),
        Some(Loose::Str(_)) => Err(TokenError::AudMismatch),
        Some(Loose::Strings(items)) if items.iter().any(accepted_has) => Ok(()),
        Some(Loose::Strings(_)) => Err(TokenError::AudMismatch),
        // Includes an array with an item that is not a string.
        Some(_) => Err(TokenError::ClaimType),
    }
}

/// `exp` required and not passed, `nbf`/`iat` not in the future, all within `skew`. Returns `exp`.
pub fn check_times(claims: &Claims, now: u64, skew: u64) -> Result<u64, TokenError> {
    let exp = numeric_date(claims.exp.as_ref())?.ok_or(TokenError::ExpMissing)?;
    if now >= exp.saturating_add(skew) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = numeric_date(claims.nbf.as_ref())?
        && now.saturating_add(skew) < nbf
    {
        return Err(TokenError::NotYetValid);
    }
    if let Some(iat) = numeric_date(claims.iat.as_ref())?
        && iat > now.saturating_add(skew)
    {
        return Err(TokenError::IssuedInFuture);
    }
    Ok(exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_auth_test_support::{TestKey, b64, ec_key, ed_key, hs256_jwt, rsa_key};
    use serde_json::{Value, json};

    const NOW: u64 = 1_800_000_000;
    const ISS: &str = "http://localhost:9000";
    const RES: &str = "http://localhost:10000/mcp";

    fn claims() -> Value {
        json!({"iss": ISS, "sub": "alice", "aud": RES, "client_id": "c1", "scope": "mcp:tools mcp:admin",
            "iat": NOW - 10, "exp": NOW + 300, "jti": "j1"})
    }

    fn with(mut base: Value, key: &str, v: Value) -> Value {
        if v.is_null() {
            base.as_object_mut().expect("object").remove(key);
        } else {
            base[key] = v;
        }
        base
    }

    fn keyset(keys: &[&TestKey]) -> KeySet {
        let doc = json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()});
        KeySet::from_value(&doc).expect("keys").keys
    }

    fn check(token: &str, keys: &KeySet) -> Result<VerifiedToken, TokenError> {
        let audiences = vec![RES.to_string()];
        let expect = Expectations {
            issuer: ISS,
            audiences: &audiences,
            now: NOW,
            skew: 60,
        };
        decode(token, &[])?.verify(keys, &expect)
    }

    #[test]
    fn valid_tokens_of_every_algorithm_pass() {
        for key in [ed_key("k-ed"), ec_key("k-ec"), rsa_key("k-rsa")] {
            let keys = keyset(&[&ed_key("other"), &key]);
            let v = check(&key.jwt(&claims()), &keys)
                .unwrap_or_else(|e| panic!("{}: {e:?}", key.alg()));
            assert_eq!(v.exp, NOW + 300);
            assert_eq!(v.scopes, vec!["mcp:tools", "mcp:admin"]);
            assert_eq!(v.claims.sub, Some(Loose::Str("alice".into())));
        }
    }

    #[test]
    fn section_3_bad_tokens_are_rejected_with_the_failed_check() {
        let key = ed_key("k1");
        let keys = keyset(&[&key]);
        let header = json!({"typ": "at+jwt", "alg": "EdDSA", "kid": "k1"});
        let good = key.jwt(&claims());
        let (gh, gp, _) = {
            let mut it = good.split('.');
            (
                it.next().unwrap().to_string(),
                it.next().unwrap().to_string(),
                it.next().unwrap().to_string(),
            )
        };
        let other_sig = ed_key("k1-impostor").sign(format!("{gh}.{gp}").as_bytes());
        let none_token = format!(
            "{}.{gp}.",
            b64(json!({"alg": "none", "typ": "at+jwt"})
                .to_string()
                .as_bytes())
        );
        let hs_header = json!({"typ": "at+jwt", "alg": "HS256", "kid": "k1"});
        let cases: Vec<(&str, String, TokenError)> = vec![
            (
                "expired",
                key.jwt(&with(claims(), "exp", json!(NOW - 61))),
                TokenError::Expired,
            ),
            (
                "expired exactly at exp+skew",
                key.jwt(&with(claims(), "exp", json!(NOW - 60))),
                TokenError::Expired,
            ),
            (
                "future nbf",
                key.jwt(&with(claims(), "nbf", json!(NOW + 61))),
                TokenError::NotYetValid,
            ),
            (
                "future iat",
                key.jwt(&with(claims(), "iat", json!(NOW + 120))),
                TokenError::IssuedInFuture,
            ),
            (
                "bad signature",
                format!("{gh}.{gp}.{}", b64(&other_sig)),
                TokenError::Signature,
            ),
            (
                "payload swapped",
                format!(
                    "{gh}.{}.{}",
                    b64(with(claims(), "sub", json!("root")).to_string().as_bytes()),
                    good.rsplit('.').next().unwrap()
                ),
                TokenError::Signature,
            ),
            ("alg none", none_token, TokenError::AlgNone),
            (
                "HS256 with public key",
                hs256_jwt(&hs_header, &claims(), key.public_jwk_text().as_bytes()),
                TokenError::AlgHmac,
            ),
            (
                "unknown kid",
                ed_key("k2").jwt(&claims()),
                TokenError::UnknownKid,
            ),
            (
                "wrong iss",
                key.jwt(&with(claims(), "iss", json!("http://evil"))),
                TokenError::IssMismatch,
            ),
            (
                "iss with trailing slash",
                key.jwt(&with(claims(), "iss", json!("http://localhost:9000/"))),
                TokenError::IssMismatch,
            ),
            (
                "no iss",
                key.jwt(&with(claims(), "iss", Value::Null)),
                TokenError::IssMissing,
            ),
            (
                "wrong aud",
                key.jwt(&with(
                    claims(),
                    "aud",
                    json!("http://localhost:10000/other"),
                )),
                TokenError::AudMismatch,
            ),
            (
                "aud array without us",
                key.jwt(&with(claims(), "aud", json!(["a", "b"]))),
                TokenError::AudMismatch,
            ),
            (
                "no aud",
                key.jwt(&with(claims(), "aud", Value::Null)),
                TokenError::AudMissing,
            ),
            (
                "no exp",
                key.jwt(&with(claims(), "exp", Value::Null)),
                TokenError::ExpMissing,
            ),
            (
                "exp as string",
                key.jwt(&with(claims(), "exp", json!("soon"))),
                TokenError::ClaimType,
            ),
            (
                "negative exp",
                key.jwt(&with(claims(), "exp", json!(-5.5))),
                TokenError::ClaimType,
            ),
            (
                "scope as number",
                key.jwt(&with(claims(), "scope", json!(5))),
                TokenError::ClaimType,
            ),
            ("garbage", "garbage".to_string(), TokenError::Malformed),
            ("four parts", format!("{good}.x"), TokenError::Malformed),
            ("bad base64", "a$b.c.d".to_string(), TokenError::Malformed),
            (
                "header not json",
                format!("{}.{gp}.AAAA", b64(b"nope")),
                TokenError::HeaderJson,
            ),
            (
                "payload not json",
                key.jwt_with_header(&header, &json!("just a string")),
                TokenError::PayloadJson,
            ),
            (
                "typ missing",
                key.jwt_with_header(&json!({"alg": "EdDSA", "kid": "k1"}), &claims()),
                TokenError::Typ,
            ),
            (
                "typ id token",
                key.jwt_with_header(
                    &json!({"alg": "EdDSA", "kid": "k1", "typ": "id+jwt"}),
                    &claims(),
                ),
                TokenError::Typ,
            ),
            (
                "crit",
                key.jwt_with_header(
                    &json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT", "crit": ["x"]}),
                    &claims(),
                ),
                TokenError::Crit,
            ),
            (
                "unsupported alg",
                key.jwt_with_header(
                    &json!({"alg": "ES512", "kid": "k1", "typ": "JWT"}),
                    &claims(),
                ),
                TokenError::AlgUnsupported,
            ),
            (
                "alg lies about key type",
                key.jwt_with_header(
                    &json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}),
                    &claims(),
                ),
                TokenError::AlgKeyMismatch,
            ),
            (
                "empty signature",
                format!("{gh}.{gp}."),
                TokenError::Signature,
            ),
            (
                "too large",
                "a".repeat(MAX_TOKEN_BYTES + 1),
                TokenError::TooLarge,
            ),
        ];
        for (name, token, want) in cases {
            assert_eq!(check(&token, &keys).err(), Some(want), "case: {name}");
        }
    }

    #[test]
    fn skew_tolerates_small_clock_differences() {
        let key = ec_key("k");
        let keys = keyset(&[&key]);
        let ok = with(
            with(
                with(claims(), "exp", json!(NOW - 59)),
                "nbf",
                json!(NOW + 59),
            ),
            "iat",
            json!(NOW + 59),
        );
        assert!(check(&key.jwt(&ok), &keys).is_ok());
        assert!(
            check(
                &key.jwt(&with(claims(), "exp", json!((NOW + 10) as f64 + 0.5))),
                &keys
            )
            .is_ok()
        );
    }

    #[test]
    fn audience_array_and_typ_variants_are_accepted() {
        let key = ed_key("k");
        let keys = keyset(&[&key]);
        let c = with(claims(), "aud", json!(["http://other", RES]));
        for typ in ["at+jwt", "application/at+jwt", "JWT", "AT+JWT"] {
            let t = key.jwt_with_header(&json!({"alg": "EdDSA", "kid": "k", "typ": typ}), &c);
            assert!(check(&t, &keys).is_ok(), "typ {typ}");
        }
    }

    #[test]
    fn kid_is_optional_only_with_a_single_key() {
        let key = ed_key("k");
        let no_kid = key.jwt_with_header(&json!({"alg": "EdDSA", "typ": "at+jwt"}), &claims());
        assert!(check(&no_kid, &keyset(&[&key])).is_ok());
        assert_eq!(
            check(&no_kid, &keyset(&[&key, &ed_key("z")])).err(),
            Some(TokenError::KidAmbiguous)
        );
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let key = ed_key("k");
        let keys = keyset(&[&key]);
        let scp_array = with(
            with(claims(), "scope", Value::Null),
            "scp",
            json!(["a", "b"]),
        );
        assert_eq!(
            check(&key.jwt(&scp_array), &keys).expect("valid").scopes,
            vec!["a", "b"]
        );
        let scp_string = with(with(claims(), "scope", Value::Null), "scp", json!("c d"));
        assert_eq!(
            check(&key.jwt(&scp_string), &keys).expect("valid").scopes,
            vec!["c", "d"]
        );
        let none = with(claims(), "scope", Value::Null);
        assert!(
            check(&key.jwt(&none), &keys)
                .expect("valid")
                .scopes
                .is_empty()
        );
    }

    #[test]
    fn signed_tokens_with_a_repeated_claim_or_header_parameter_are_refused() {
        let key = ed_key("k");
        let keys = keyset(&[&key]);
        let header = r#"{"typ":"at+jwt","alg":"EdDSA","kid":"k"}"#;
        let body = |extra: &str| {
            format!(
                r#"{{"iss":"{ISS}","aud":"{RES}","exp":{},"scope":"a"{extra}}}"#,
                NOW + 300
            )
        };
        let signed = |h: &str, p: &str| {
            let input = format!("{}.{}", b64(h.as_bytes()), b64(p.as_bytes()));
            let sig = key.sign(input.as_bytes());
            format!("{input}.{}", b64(&sig))
        };
        // The hand-written text itself is a valid token.
        assert!(check(&signed(header, &body("")), &keys).is_ok());
        for (h, p) in [
            (header, body(r#","aud":"http://evil""#)),
            (header, body(&format!(r#","exp":{}"#, NOW - 1000))),
            (header, body(r#","iss":"http://localhost:9000""#)),
            (
                r#"{"typ":"at+jwt","alg":"EdDSA","kid":"k","kid":"other"}"#,
                body(""),
            ),
        ] {
            assert_eq!(
                check(&signed(h, &p), &keys).err(),
                Some(TokenError::Duplicate),
                "{h} {p}"
            );
        }
        // A repeated claim the filter never reads changes nothing.
        assert!(check(&signed(header, &body(r#","jti":"1","jti":"2""#)), &keys).is_ok());
    }

    #[test]
    fn unverified_issuer_and_kid_are_readable_for_key_selection() {
        let jwt = ed_key("kk").jwt(&claims());
        let d = decode(&jwt, &[]).expect("decodes");
        assert_eq!(d.issuer(), Some(ISS));
        assert_eq!(d.kid(), Some("kk"));
    }
}
