//! Times the filter's request path, as `on_http_request_headers` runs it minus the host calls
//! (routing, bearer check, token cache with shared data in memory, decoding, verification,
//! policy, header edits), for a cache miss and a cache hit per algorithm. Meant for wasm32-wasip1
//! under Node's V8, where `node --cpu-prof` shows where a request's time goes (BENCHMARKS.md,
//! "Where a cache miss spends its time"); runs natively too, which tells nothing about V8.
//!
//! `node filter/crypto/bench/run.mjs <path-bench.wasm> [N] [EdDSA|ES256|RS256]`

use std::hint::black_box;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use mcp_auth_filter::fuzzing::{RequestTarget, RequestVerdict};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

const ISSUER: &str = "http://127.0.0.1:9000";
const AUDIENCE: &str = "http://127.0.0.1:10000/mcp";
const NOW: u64 = 1_800_000_000;
/// Distinct tokens per algorithm: the miss rotation never meets the token in the one cache slot.
const TOKENS: u32 = 64;

type Sign<'a> = &'a dyn Fn(&[u8]) -> Vec<u8>;

/// An RFC 9068 access token like the Envoy benchmark's (`bench/src/tokens.rs`).
fn token(alg: &str, kid: &str, i: u32, sign: Sign<'_>) -> String {
    let header = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
    let claims = json!({
        "iss": ISSUER, "sub": format!("user-{i}"), "aud": AUDIENCE, "client_id": "bench-client",
        "scope": "mcp:tools", "iat": NOW - 10, "exp": NOW + 3600, "jti": format!("jti-{i}"),
    });
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signature = B64.encode(sign(input.as_bytes()));
    format!("{input}.{signature}")
}

/// Fastest of 10 rounds of `n` requests, in µs per request.
fn time(n: u32, mut request: impl FnMut() -> bool) -> Result<f64, String> {
    let mut best = f64::INFINITY;
    for _ in 0..10 {
        let start = Instant::now();
        for _ in 0..n {
            if !request() {
                return Err("a request with a valid token was not allowed".to_string());
            }
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
    Ok(best)
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let n: u32 = match args.next() {
        Some(arg) => arg.parse().map_err(|e| format!("N {arg:?}: {e}"))?,
        None => 200,
    };
    let only = args.next();

    let ed = ed25519_dalek::SigningKey::from_bytes(&Sha256::digest(b"path-bench ed").into());
    let ec = p256::ecdsa::SigningKey::from_bytes(&Sha256::digest(b"path-bench ec"))
        .map_err(|e| format!("P-256 key: {e}"))?;
    let rsa_key = rsa::RsaPrivateKey::from_pkcs8_pem(include_str!(
        "../../crypto/src/testdata/rsa2048-test-key.pem"
    ))
    .map_err(|e| format!("RSA test key: {e}"))?;
    let ec_point = ec.verifying_key().to_encoded_point(false);
    let (ec_x, ec_y) = ec_point.x().zip(ec_point.y()).ok_or("P-256 point")?;
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": B64.encode(ed.verifying_key().to_bytes())},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": B64.encode(ec_x), "y": B64.encode(ec_y)},
        {"kty": "RSA", "kid": "rsa", "n": B64.encode(rsa_key.n().to_bytes_be()),
         "e": B64.encode(rsa_key.e().to_bytes_be())},
    ]});
    // The Envoy benchmark's filter configuration for its miss rows: one cache slot, so rotating
    // tokens miss every time while the miss still pays the insert.
    let config = json!({
        "resources": [{"path_prefix": "/mcp", "resource": AUDIENCE,
            "authorization_servers": [ISSUER], "issuers": [ISSUER], "audiences": [AUDIENCE],
            "scopes_supported": ["mcp:tools"], "required_scopes": ["mcp:tools"]}],
        "issuers": [{"issuer": ISSUER, "jwks": {"inline": jwks}}],
        "identity_headers": {"sub": "x-mcp-subject", "client_id": "x-mcp-client-id",
            "scope": "x-mcp-scope"},
        "token_cache": {"max_entries": 1},
        "access_log_properties": false,
    });
    let mut target = RequestTarget::new(config.to_string().as_bytes())?;

    let ed_sign = |m: &[u8]| ed25519_dalek::Signer::sign(&ed, m).to_bytes().to_vec();
    let ec_sign = |m: &[u8]| {
        let s: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&ec, m);
        s.to_bytes().to_vec()
    };
    let rsa_signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa_key);
    let rsa_sign = |m: &[u8]| {
        use rsa::signature::{SignatureEncoding as _, Signer as _};
        rsa_signer.sign(m).to_vec()
    };
    let algorithms: [(&str, &str, Sign<'_>); 3] = [
        ("EdDSA", "ed", &ed_sign),
        ("ES256", "ec", &ec_sign),
        ("RS256", "rsa", &rsa_sign),
    ];
    for (alg, kid, sign) in algorithms {
        if only.as_deref().is_some_and(|o| o != alg) {
            continue;
        }
        let bearers: Vec<String> = (0..TOKENS)
            .map(|i| format!("Bearer {}", token(alg, kid, i, sign)))
            .collect();
        let requests: Vec<Vec<(&[u8], &[u8])>> = bearers
            .iter()
            .map(|bearer| {
                vec![
                    (&b":method"[..], &b"GET"[..]),
                    (b":path", b"/mcp"),
                    (b":authority", b"127.0.0.1:10000"),
                    (b"authorization", bearer.as_bytes()),
                    (b"user-agent", b"wrk"),
                    (b"accept", b"*/*"),
                ]
            })
            .collect();
        let mut next = 0usize;
        let miss = time(n, || {
            next = (next + 1) % requests.len();
            requests.get(next).is_some_and(|headers| {
                target.run(black_box(headers), NOW * 1000) == RequestVerdict::Allowed
            })
        })?;
        let hit = time(n, || {
            requests.first().is_some_and(|headers| {
                target.run(black_box(headers), NOW * 1000) == RequestVerdict::Allowed
            })
        })?;
        println!("{alg}: cache miss {miss:6.1} µs/request, cache hit {hit:5.1} µs/request");
    }
    Ok(())
}
