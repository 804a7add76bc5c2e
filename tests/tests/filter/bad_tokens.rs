//! Section 3's bad-token table: each must be a 401 `invalid_token` whose `error_description`
//! names the failed check, and the upstream must never see the request.

use serde_json::{Value, json};

use crate::keys::{Jws, b64, keys};
use crate::support::{Gateway, METADATA_URL, Request};

/// A broken token and the `error_description` the client must get for it.
struct Case {
    name: &'static str,
    authorization: String,
    description: &'static str,
}

fn cases(gw: &Gateway) -> Vec<Case> {
    let k = keys();
    let now = gw.now();
    let valid = || gw.jws(&k.ed, "mcp:tools");
    let bearer = |token: String| format!("Bearer {token}");
    let signature_of_other_key = {
        let good = valid().sign(&k.ed);
        let forged = valid().sign(&k.rotated);
        let (input, _) = good.rsplit_once('.').expect("three parts");
        let (_, signature) = forged.rsplit_once('.').expect("three parts");
        format!("{input}.{signature}")
    };
    vec![
        Case {
            name: "expired beyond the clock skew",
            authorization: bearer(
                valid()
                    .claim("exp", json!(now - 120))
                    .claim("iat", json!(now - 600))
                    .sign(&k.ed),
            ),
            description: "token expired",
        },
        Case {
            name: "nbf in the future",
            authorization: bearer(valid().claim("nbf", json!(now + 600)).sign(&k.ed)),
            description: "token not yet valid (nbf)",
        },
        Case {
            name: "iat in the future",
            authorization: bearer(valid().claim("iat", json!(now + 600)).sign(&k.ed)),
            description: "token issued in the future (iat)",
        },
        Case {
            name: "signature made by another key",
            authorization: bearer(signature_of_other_key),
            description: "signature verification failed",
        },
        Case {
            name: "alg none without signature",
            authorization: bearer(valid().header("alg", json!("none")).unsigned()),
            description: "alg none is not accepted",
        },
        Case {
            name: "HS256 signed with the public key",
            authorization: bearer(
                valid()
                    .header("alg", json!("HS256"))
                    .sign_hs256(k.ed.public_jwk_text().as_bytes()),
            ),
            description: "HMAC algorithms are not accepted",
        },
        Case {
            name: "alg that does not fit the key type",
            authorization: bearer(valid().header("alg", json!("ES256")).sign(&k.ed)),
            description: "alg does not match the key type",
        },
        Case {
            name: "unknown kid",
            authorization: bearer(valid().header("kid", json!("no-such-key")).sign(&k.ed)),
            description: "unknown key id",
        },
        Case {
            name: "wrong issuer",
            authorization: bearer(
                valid()
                    .claim("iss", json!("http://evil.example"))
                    .sign(&k.ed),
            ),
            description: "issuer not accepted",
        },
        Case {
            name: "wrong audience",
            authorization: bearer(
                valid()
                    .claim("aud", json!("http://localhost:10000/other"))
                    .sign(&k.ed),
            ),
            description: "audience not accepted",
        },
        Case {
            name: "no exp",
            authorization: bearer(valid().claim("exp", Value::Null).sign(&k.ed)),
            description: "exp claim missing",
        },
        Case {
            name: "typ of another kind of JWT",
            authorization: bearer(valid().header("typ", json!("dpop+jwt")).sign(&k.ed)),
            description: "token typ must be at+jwt or JWT",
        },
        Case {
            name: "garbage",
            authorization: bearer("not-a-jwt".into()),
            description: "token is not a JWS compact serialization",
        },
        Case {
            name: "header that is not JSON",
            authorization: bearer(format!("{}.{}.{}", b64(b"{oops"), b64(b"{}"), b64(b"sig"))),
            description: "token header is not valid JSON",
        },
    ]
}

#[test]
fn every_bad_token_gets_401_invalid_token_naming_the_check_and_never_reaches_upstream() {
    let mut gw = Gateway::inline();
    let cases = cases(&gw);
    for case in &cases {
        let got = gw.send(Request::get("/mcp").header("authorization", &case.authorization));
        let challenge = got.challenge();
        assert_eq!(got.status(), 401, "{}", case.name);
        assert_eq!(
            challenge.get("error").map(String::as_str),
            Some("invalid_token"),
            "{}",
            case.name
        );
        assert_eq!(
            challenge.get("error_description").map(String::as_str),
            Some(case.description),
            "{}",
            case.name
        );
        assert_eq!(
            challenge.get("resource_metadata").map(String::as_str),
            Some(METADATA_URL),
            "{}",
            case.name
        );
        assert_eq!(
            challenge.get("scope").map(String::as_str),
            Some("mcp:tools"),
            "{}",
            case.name
        );
        assert_eq!(got.json()["error"], json!("invalid_token"), "{}", case.name);
        assert!(!got.reached_upstream(), "{}", case.name);
    }
    assert_eq!(gw.metric("denied.invalid_token"), cases.len() as i64);
    assert_eq!(gw.metric("allowed"), 0);
}

#[test]
fn non_bearer_schemes_and_empty_tokens_get_401_invalid_token() {
    let mut gw = Gateway::inline();
    for authorization in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Token abc.def.ghi",
        "bearer",
    ] {
        let got = gw.send(Request::get("/mcp").header("authorization", authorization));
        assert_eq!(got.status(), 401, "{authorization:?}");
        assert_eq!(
            got.challenge().get("error").map(String::as_str),
            Some("invalid_token"),
            "{authorization:?}"
        );
        assert!(
            got.challenge().contains_key("error_description"),
            "{authorization:?}"
        );
        assert!(!got.reached_upstream(), "{authorization:?}");
    }
}

#[test]
fn two_authorization_headers_are_a_malformed_request() {
    let mut gw = Gateway::inline();
    let token = gw.token(&keys().ed, "mcp:tools");
    let twice = Request::get("/mcp").bearer(&token).bearer(&token);
    let joined =
        Request::get("/mcp").header("authorization", &format!("Bearer {token}, Bearer {token}"));
    for (name, request) in [("two headers", twice), ("comma-joined", joined)] {
        let got = gw.send(request);
        let challenge = got.challenge();
        assert_eq!(got.status(), 400, "{name}");
        assert_eq!(
            challenge.get("error").map(String::as_str),
            Some("invalid_request"),
            "{name}"
        );
        assert_eq!(
            challenge.get("resource_metadata").map(String::as_str),
            Some(METADATA_URL),
            "{name}"
        );
        assert!(!got.reached_upstream(), "{name}");
    }
}

#[test]
fn token_signed_by_a_key_of_another_type_with_its_own_alg_is_rejected() {
    // An ES256 token claiming the Ed25519 key's kid: the key type fixes the algorithm.
    let mut gw = Gateway::inline();
    let k = keys();
    let token = Jws {
        header: json!({"alg": "ES256", "typ": "at+jwt", "kid": k.ed.kid}),
        ..gw.jws(&k.ed, "mcp:tools")
    }
    .sign(&k.ec);
    let got = gw.send(Request::get("/mcp").bearer(&token));
    assert_eq!(got.status(), 401);
    assert_eq!(
        got.challenge().get("error_description").map(String::as_str),
        Some("alg does not match the key type")
    );
}
