//! Times signature verifications; meant for wasm32-wasip1 under Node's V8 (see the crypto crate's
//! README, "How to measure"). Runs natively too, which tells nothing about V8.

use std::hint::black_box;
use std::time::Instant;

use mcp_auth_filter_crypto::ed25519::Ed25519PublicKey;
use mcp_auth_filter_crypto::es256::EcPublicKey;
use mcp_auth_filter_crypto::rs256::RsaPublicKey;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::SignatureEncoding as _;
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest as _, Sha256};

/// Fastest of `rounds` timings of `iterations` calls, in µs per call: on a shared machine the
/// other load only ever adds time, so the minimum is the steadiest estimate.
fn time(iterations: u32, rounds: u32, mut f: impl FnMut() -> bool) -> f64 {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                assert!(black_box(f()), "a valid signature did not verify");
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
        })
        .fold(f64::INFINITY, f64::min)
}

/// Distinct messages the verifications rotate through: one signature verified over and over made
/// verifications look 20–40 % faster than on the distinct tokens of real traffic (most likely
/// the CPU's branch predictor learning that signature's digits).
const MESSAGES: usize = 64;

/// Calls `verify` on each of `items` in turn, round and round.
fn rotating<'a, T>(
    items: &'a [T],
    mut verify: impl FnMut(&'a T) -> bool + 'a,
) -> impl FnMut() -> bool + 'a {
    let mut cycle = items.iter().cycle();
    move || cycle.next().is_some_and(&mut verify)
}

fn main() -> Result<(), String> {
    let iterations: u32 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|e| format!("iterations {arg:?}: {e}"))?,
        None => 200,
    };
    let rounds = 15;
    let messages: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| {
            format!(
                "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJiZW5jaCIsInN1YiI6InUxIiwiZXhwIjo5OTk5OTk5OTk5fQ{i}"
            )
            .into_bytes()
        })
        .collect();

    let sk = p256::ecdsa::SigningKey::from_bytes(&Sha256::digest(b"bench"))
        .map_err(|e| format!("P-256 key: {e}"))?;
    let vk = *sk.verifying_key();
    let sigs: Vec<(&[u8], p256::ecdsa::Signature)> = messages
        .iter()
        .map(|m| (m.as_slice(), sk.sign(m)))
        .collect();
    let sig_bytes: Vec<(&[u8], _)> = sigs.iter().map(|(m, sig)| (*m, sig.to_bytes())).collect();
    let ec = EcPublicKey::new(&vk).ok_or("EcPublicKey::new rejected a valid key")?;
    let load = time(iterations.div_ceil(10), rounds, || {
        EcPublicKey::new(black_box(&vk)).is_some()
    });
    println!("ES256 key preparation:          {load:8.1} µs/key");
    let base = time(iterations.div_ceil(20), rounds, || {
        mcp_auth_filter_crypto::es256::bench_build_base_table()
    });
    println!("ES256 G tables (once per VM):   {base:8.1} µs");
    let es256 = time(
        iterations,
        rounds,
        rotating(&sig_bytes, |(m, sig)| ec.verify(black_box(m), sig)),
    );
    println!("ES256 (mcp-auth-filter-crypto): {es256:8.1} µs/verify");

    let rsa_sk =
        rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("../../src/testdata/rsa2048-test-key.pem"))
            .map_err(|e| format!("RSA test key: {e}"))?;
    let rsa_pub = RsaPublicKey::new(&rsa_sk.n().to_bytes_be(), 65537)
        .map_err(|e| format!("RsaPublicKey::new: {e:?}"))?;
    let rsa_signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(rsa_sk);
    let rsa_sigs: Vec<(&[u8], Vec<u8>)> = messages
        .iter()
        .map(|m| (m.as_slice(), rsa_signer.sign(m).to_vec()))
        .collect();
    let rs256 = time(
        iterations,
        rounds,
        rotating(&rsa_sigs, |(m, sig)| rsa_pub.verify(black_box(m), sig)),
    );
    println!("RS256 (mcp-auth-filter-crypto): {rs256:8.1} µs/verify");

    let ed_sk = ed25519_dalek::SigningKey::from_bytes(&Sha256::digest(b"bench").into());
    let ed_vk = ed_sk.verifying_key();
    let ed_sigs: Vec<(&[u8], ed25519_dalek::Signature)> = messages
        .iter()
        .map(|m| (m.as_slice(), ed25519_dalek::Signer::sign(&ed_sk, m)))
        .collect();
    let eddsa_dalek = time(
        iterations,
        rounds,
        rotating(&ed_sigs, |(m, sig)| {
            ed_vk.verify_strict(black_box(m), sig).is_ok()
        }),
    );
    println!("EdDSA (ed25519-dalek strict):   {eddsa_dalek:8.1} µs/verify");
    let ed_bytes = ed_vk.to_bytes();
    let ed_key = Ed25519PublicKey::new(&ed_bytes)
        .map_err(|e| format!("Ed25519PublicKey::new rejected a valid key: {e:?}"))?;
    let ed_load = time(iterations.div_ceil(10), rounds, || {
        Ed25519PublicKey::new(black_box(&ed_bytes)).is_ok()
    });
    println!("EdDSA key preparation:          {ed_load:8.1} µs/key");
    let ed_base = time(iterations.div_ceil(20), rounds, || {
        mcp_auth_filter_crypto::ed25519::bench_build_base_table()
    });
    println!("EdDSA B tables (once per VM):   {ed_base:8.1} µs");
    let ed_sig_bytes: Vec<(&[u8], [u8; 64])> = ed_sigs
        .iter()
        .map(|(m, sig)| (*m, sig.to_bytes()))
        .collect();
    let eddsa = time(
        iterations,
        rounds,
        rotating(&ed_sig_bytes, |(m, sig)| ed_key.verify(black_box(m), sig)),
    );
    println!("EdDSA (mcp-auth-filter-crypto): {eddsa:8.1} µs/verify");

    let reference = time(
        iterations.div_ceil(10),
        3,
        rotating(&sigs, |(m, sig)| vk.verify(black_box(m), sig).is_ok()),
    );
    println!("ES256 (p256 crate verify):      {reference:8.1} µs/verify");
    Ok(())
}
