//! ES256 (ECDSA over P-256 with SHA-256, FIPS 186-5 section 6.4.2) verification tuned for wasm32.
//!
//! `u1·G + u2·Q` is one interleaved (Strauss–Shamir) variable-time wNAF pass in Jacobian
//! coordinates with the `a = −3` doubling. Each scalar is split into 16-bit chunks and each chunk
//! `k` is multiplied with a table of precomputed affine odd multiples of `2^(16k)·G` (shared,
//! built once) or `2^(16k)·Q` (built when the JWKS is loaded), so the pass has 16 doublings. The `p256` crate instead runs two
//! constant-time scalar multiplications with complete formulas. The field and scalar arithmetic
//! is this crate's own 32-bit code ([`crate::field`], [`crate::scalar`]): `p256`'s converts to
//! 64-bit limbs on wasm32 and multiplies them as `u128`, which wasm emulates. All inputs are
//! public (key, message, signature), so variable time is fine. `p256` is only used to parse and
//! validate keys.

use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

use crate::field::{Fe, add_limbs};
use crate::scalar::{N, Scalar};
use crate::wnaf::wnaf;

/// Each scalar `u` is split as `u = Σₖ uₖ·2^(16k)` (16 chunks of 16 bits), and `uₖ·P` is added
/// from a table of odd multiples of `2^(16k)·P`: one interleaved pass over the 2 × 16 digit
/// strings needs 16 doublings instead of 256, for about as many additions (a wNAF has the same
/// density whatever point its digits multiply). Measured in V8 (bench, µs per verification /
/// per key preparation): no split ~140 / ~44, 4 chunks (G w=8, Q w=6) ~63 / ~160, 8 chunks
/// (w=8, w=5) ~55 / ~160, 8 chunks (w=8, w=6) ~52 / ~205, 16 chunks (w=8, w=5) ~50 / ~215.
const CHUNKS: usize = 16;
const CHUNK_BITS: usize = 256 / CHUNKS;
/// wNAF width for the per-key tables of `Q`: 16 tables × 64 odd multiples, 64 KB per key, built
/// when the JWKS is loaded (~0.64 ms in V8). A verification adds about `256/(w + 1)` table
/// points per scalar, so each step of width saves a few additions. Measured in V8 on distinct
/// signatures: width 5 (8 KB) ~48–54 µs per `path-bench` miss, width 7 (32 KB) 42–43; with
/// `G` at width 10, width 8 took the crypto bench from ~35.9 to ~34.9 µs per verification.
const W_KEY: u32 = 8;
/// wNAF width for the shared tables of `G`: 16 tables × 256 odd multiples, 256 KB per VM, built
/// once (~2.8 ms in V8, when the first EC key is loaded). Width 8 (64 KB, ~0.6 ms) measured
/// ~38.3 µs per verification, width 9 (128 KB) ~36–37, width 10 ~35.9 (with `Q` at width 7).
/// Next to Envoy's memory per worker, 256 KB buys ~6 % of every ES256 cache miss.
const W_BASE: u32 = 10;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Affine {
    x: Fe,
    y: Fe,
}

/// Jacobian coordinates: `(X/Z², Y/Z³)`; `Z = 0` is the point at infinity.
#[derive(Clone, Copy)]
struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl Jacobian {
    const INFINITY: Jacobian = Jacobian {
        x: Fe::ONE,
        y: Fe::ONE,
        z: Fe::ZERO,
    };

    fn from_affine(p: &Affine) -> Self {
        Jacobian {
            x: p.x,
            y: p.y,
            z: Fe::ONE,
        }
    }

    fn is_infinity(&self) -> bool {
        self.z.is_zero()
    }

    /// `2P` ("dbl-2001-b", valid for `a = −3`); infinity and `Y = 0` give `Z = 0`.
    fn double(&self) -> Self {
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(&gamma);
        let alpha = self.x.sub(&delta).mul(&self.x.add(&delta));
        let alpha = alpha.double().add(&alpha);
        let beta4 = beta.double().double();
        let x = alpha.square().sub(&beta4.double());
        let z = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let gamma_sq8 = gamma.square().double().double().double();
        let y = alpha.mul(&beta4.sub(&x)).sub(&gamma_sq8);
        Jacobian { x, y, z }
    }

    /// `P + Q` for affine `Q` ("madd-2007-bl"), with the exceptional cases handled.
    fn add_affine(&self, q: &Affine) -> Self {
        if self.is_infinity() {
            #[cfg(test)]
            tests::count_exceptional(2);
            return Jacobian::from_affine(q);
        }
        let z1z1 = self.z.square();
        let u2 = q.x.mul(&z1z1);
        let s2 = q.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&self.x);
        let r = s2.sub(&self.y).double();
        if h.is_zero() {
            #[cfg(test)]
            tests::count_exceptional(usize::from(!r.is_zero()));
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::INFINITY
            };
        }
        let hh = h.square();
        let i = hh.double().double();
        let j = h.mul(&i);
        let v = self.x.mul(&i);
        let x = r.square().sub(&j).sub(&v.double());
        let y = r.mul(&v.sub(&x)).sub(&self.y.mul(&j).double());
        let z = self.z.add(&h).square().sub(&z1z1).sub(&hh);
        Jacobian { x, y, z }
    }

    #[cfg(test)]
    fn to_affine(self) -> Option<Affine> {
        let zinv = self.z.invert()?;
        let zinv2 = zinv.square();
        Some(Affine {
            x: self.x.mul(&zinv2),
            y: self.y.mul(&zinv2).mul(&zinv),
        })
    }
}

/// Affine forms of Jacobian points with one field inversion for all of them (Montgomery's trick:
/// `1/zᵢ = (z₀⋯zᵢ₋₁)·(z₀⋯zᵢ)⁻¹`) instead of one each, which would be most of the cost of
/// loading a key. `None` if a point is at infinity (then a `z` and the product are zero).
fn batch_to_affine(points: &[Jacobian]) -> Option<Vec<Affine>> {
    // before[i] = z₀⋯zᵢ₋₁.
    let mut before = Vec::with_capacity(points.len());
    let mut product = Fe::ONE;
    for point in points {
        before.push(product);
        product = product.mul(&point.z);
    }
    // Walking down, `inverse` is (z₀⋯zᵢ)⁻¹.
    let mut inverse = product.invert()?;
    let mut out = Vec::with_capacity(points.len());
    for (point, b) in points.iter().zip(&before).rev() {
        let zinv = inverse.mul(b);
        inverse = inverse.mul(&point.z);
        let zinv2 = zinv.square();
        out.push(Affine {
            x: point.x.mul(&zinv2),
            y: point.y.mul(&zinv2).mul(&zinv),
        });
    }
    out.reverse();
    Some(out)
}

/// For `k = 0..CHUNKS`, the odd multiples `Pₖ, 3Pₖ, …, (2^(w−1) − 1)Pₖ` of `Pₖ = 2^(16k)·P`,
/// in affine coordinates, concatenated (`2^(w−2)` entries per chunk). Two field inversions in
/// all: one for the `Pₖ` and `2Pₖ` (the 240 doublings run in Jacobian coordinates), one
/// for the tables. `None` if a point on the way is at infinity, which cannot happen for a point
/// of order `n` (all multiples involved are below `n`).
fn split_tables(p: &Affine, w: u32) -> Option<Vec<Affine>> {
    let count = 1usize << (w - 2);
    // bases = [P₀, 2P₀, P₁, 2P₁, …]: 2Pₖ is also the first doubling towards Pₖ₊₁.
    let mut bases = Vec::with_capacity(2 * CHUNKS);
    let mut current = Jacobian::from_affine(p);
    for k in 0..CHUNKS {
        let twice = current.double();
        bases.push(current);
        bases.push(twice);
        if k + 1 < CHUNKS {
            current = twice;
            for _ in 1..CHUNK_BITS {
                current = current.double();
            }
        }
    }
    let bases = batch_to_affine(&bases)?;
    let mut points = Vec::with_capacity(count * CHUNKS);
    for pair in bases.chunks_exact(2) {
        let [base, twice] = pair else {
            return None;
        };
        let mut acc = Jacobian::from_affine(base);
        for _ in 0..count {
            points.push(acc);
            acc = acc.add_affine(twice);
        }
    }
    batch_to_affine(&points)
}

/// The tables of odd multiples of `2^(16k)·G`, built once per VM on first use.
fn base_table() -> Option<&'static [Affine]> {
    static TABLE: OnceLock<Option<Vec<Affine>>> = OnceLock::new();
    TABLE.get_or_init(build_base_table).as_deref()
}

fn build_base_table() -> Option<Vec<Affine>> {
    /// The base point (SEC 2 / FIPS 186-5 `G` of P-256).
    const GX: [u8; 32] = [
        0x6B, 0x17, 0xD1, 0xF2, 0xE1, 0x2C, 0x42, 0x47, 0xF8, 0xBC, 0xE6, 0xE5, 0x63, 0xA4, 0x40,
        0xF2, 0x77, 0x03, 0x7D, 0x81, 0x2D, 0xEB, 0x33, 0xA0, 0xF4, 0xA1, 0x39, 0x45, 0xD8, 0x98,
        0xC2, 0x96,
    ];
    const GY: [u8; 32] = [
        0x4F, 0xE3, 0x42, 0xE2, 0xFE, 0x1A, 0x7F, 0x9B, 0x8E, 0xE7, 0xEB, 0x4A, 0x7C, 0x0F, 0x9E,
        0x16, 0x2B, 0xCE, 0x33, 0x57, 0x6B, 0x31, 0x5E, 0xCE, 0xCB, 0xB6, 0x40, 0x68, 0x37, 0xBF,
        0x51, 0xF5,
    ];
    let x = Fe::from_be_bytes(&GX)?;
    let y = Fe::from_be_bytes(&GY)?;
    split_tables(&Affine { x, y }, W_BASE)
}

/// Builds the shared `G` tables afresh (normally built once per VM), for the benchmark to time.
#[doc(hidden)]
pub fn bench_build_base_table() -> bool {
    build_base_table().is_some()
}

/// `digit·2^(16k)·P` from the tables of [`split_tables`] for width `w`.
fn table_entry(tables: &[Affine], w: u32, chunk: usize, digit: i16) -> Option<Affine> {
    let index = (chunk << (w - 2)) + usize::from(digit.unsigned_abs() / 2);
    let p = *tables.get(index)?;
    Some(if digit < 0 {
        Affine {
            x: p.x,
            y: p.y.neg(),
        }
    } else {
        p
    })
}

/// `r + n` if it is below `p` (the only other x-coordinate that is `r` mod `n`).
fn r_plus_n(r: &Scalar) -> Option<Fe> {
    let (sum, carry) = add_limbs(r.limbs(), &N);
    if carry == 1 {
        return None;
    }
    Fe::from_limbs(sum)
}

/// A P-256 public key prepared for ES256 verification.
#[derive(Clone, PartialEq, Eq)]
pub struct EcPublicKey {
    /// Odd multiples of `2^(16k)·Q` ([`split_tables`]).
    table: Vec<Affine>,
}

impl std::fmt::Debug for EcPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EcPublicKey(P-256)")
    }
}

impl EcPublicKey {
    /// Prepares a key from a validated `p256` verifying key; `None` only for the identity.
    pub fn new(key: &p256::ecdsa::VerifyingKey) -> Option<Self> {
        let point = key.to_encoded_point(false);
        let x = Fe::from_be_bytes(point.x()?.as_ref())?;
        let y = Fe::from_be_bytes(point.y()?.as_ref())?;
        // The shared G tables too, if this is the VM's first EC key: at JWKS load rather than
        // in the first request's verification.
        base_table()?;
        Some(EcPublicKey {
            table: split_tables(&Affine { x, y }, W_KEY)?,
        })
    }

    /// ECDSA verification of a JWS signature (`r ‖ s`, 32 bytes each) over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verify_inner(message, signature).unwrap_or(false)
    }

    fn verify_inner(&self, message: &[u8], signature: &[u8]) -> Option<bool> {
        let Some((r_bytes, s_bytes)) = signature.split_first_chunk::<32>() else {
            return Some(false);
        };
        let Ok(s_bytes) = <&[u8; 32]>::try_from(s_bytes) else {
            return Some(false);
        };
        // r, s ∈ [1, n − 1] (FIPS 186-5 6.4.2 step 2).
        let (Some(r), Some(s)) = (
            Scalar::from_be_bytes(r_bytes),
            Scalar::from_be_bytes(s_bytes),
        ) else {
            return Some(false);
        };
        if r.is_zero() || s.is_zero() {
            return Some(false);
        }
        let z = Scalar::reduce_be_bytes(&Sha256::digest(message).into());
        self.verify_scalars(&z, &r, &s)
    }

    /// FIPS 186-5 6.4.2 steps 4–7 for a hash `z` (reduced mod n) and `r`, `s` ∈ [1, n − 1].
    fn verify_scalars(&self, z: &Scalar, r: &Scalar, s: &Scalar) -> Option<bool> {
        let s_inv = s.invert_vartime()?;
        let acc = self.mul_add(&z.mul(&s_inv), &r.mul(&s_inv))?;
        // x(R) mod n = r  ⇔  x(R) ∈ {r, r + n} (x(R) < p < 2n)  ⇔  X = c·Z² for such a c below
        // p: no field inversion.
        if acc.is_infinity() {
            return Some(false);
        }
        let z2 = acc.z.square();
        let matches = |c: &Fe| c.mul(&z2) == acc.x;
        // r < n < p, so r is always a field element.
        let r_fe = Fe::from_limbs(*r.limbs())?;
        Some(matches(&r_fe) || r_plus_n(r).is_some_and(|c| matches(&c)))
    }

    /// `u1·G + u2·Q`: one interleaved pass over the digit strings of all chunks of both scalars.
    fn mul_add(&self, u1: &Scalar, u2: &Scalar) -> Option<Jacobian> {
        let u1 = wnaf(u1.limbs(), W_BASE);
        let u2 = wnaf(u2.limbs(), W_KEY);
        let base = base_table()?;
        // Digit 16k + j of u is digit j of its chunk uₖ; the top chunk also has digit 256 (a
        // wNAF can be one digit longer than the scalar).
        let mut acc = Jacobian::INFINITY;
        for j in (0..=CHUNK_BITS).rev() {
            if !acc.is_infinity() {
                acc = acc.double();
            }
            let top = if j == CHUNK_BITS { CHUNKS - 1 } else { 0 };
            for k in top..CHUNKS {
                let i = k * CHUNK_BITS + j;
                let d1 = u1.get(i).copied().unwrap_or(0);
                if d1 != 0 {
                    acc = acc.add_affine(&table_entry(base, W_BASE, k, d1)?);
                }
                let d2 = u2.get(i).copied().unwrap_or(0);
                if d2 != 0 {
                    acc = acc.add_affine(&table_entry(&self.table, W_KEY, k, d2)?);
                }
            }
        }
        Some(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer as _, Verifier as _};
    use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;

    thread_local! {
        /// How often `add_affine` met `P == Q`, `P == −Q` and `P = ∞` on this thread.
        static EXCEPTIONAL: std::cell::Cell<[usize; 3]> = const { std::cell::Cell::new([0; 3]) };
    }

    pub(super) fn count_exceptional(case: usize) {
        EXCEPTIONAL.with(|c| {
            let mut counts = c.get();
            counts[case] += 1;
            c.set(counts);
        });
    }

    fn seeded(i: u64) -> [u8; 32] {
        Sha256::digest(i.to_be_bytes()).into()
    }

    fn both(vk: &VerifyingKey, key: &EcPublicKey, msg: &[u8], sig: &[u8]) -> (bool, bool) {
        let reference = Signature::from_slice(sig).is_ok_and(|s| vk.verify(msg, &s).is_ok());
        (reference, key.verify(msg, sig))
    }

    #[test]
    fn wnaf_digits_reconstruct_the_scalar() {
        // Random scalars, and the edges of the window pass: all ones (carries up to digit 256),
        // the top bit alone, runs of ones at the top and at word boundaries, one, zero.
        let mut scalars: Vec<[u8; 32]> = (0..200u64).map(seeded).collect();
        scalars.push([0xFF; 32]);
        scalars.push([0; 32]);
        let mut top = [0u8; 32];
        top[0] = 0x80;
        scalars.push(top);
        let mut one = [0u8; 32];
        one[31] = 1;
        scalars.push(one);
        for run in [1usize, 7, 8, 9, 16] {
            let mut high = [0u8; 32];
            high[..run].fill(0xFF);
            scalars.push(high);
            let mut middle = [0u8; 32];
            middle[16 - run / 2..16 + run / 2 + 1].fill(0xFF);
            scalars.push(middle);
        }
        for (i, bytes) in scalars.into_iter().enumerate() {
            for w in [W_KEY, W_BASE] {
                let digits = wnaf(&crate::field::limbs_from_be(&bytes), w);
                // Recompute k = Σ dᵢ·2ⁱ with a little-endian i64 accumulator per bit.
                let mut total = [0i64; 264];
                for (t, d) in total.iter_mut().zip(digits.iter()) {
                    *t = i64::from(*d);
                }
                // Normalize to bits.
                let mut carry = 0i64;
                let mut bits = Vec::new();
                for t in total {
                    let v = t + carry;
                    bits.push((v.rem_euclid(2)) as u8);
                    carry = v.div_euclid(2);
                }
                assert_eq!(carry, 0);
                let mut back = [0u8; 33];
                for (i, b) in bits.iter().enumerate() {
                    back[32 - i / 8] |= b << (i % 8);
                }
                assert_eq!(back[0], 0);
                assert_eq!(&back[1..], bytes, "scalar {i}, w {w}");
                for pair in digits.windows(w as usize) {
                    assert!(
                        pair.iter().filter(|d| **d != 0).count() <= 1,
                        "non-adjacent"
                    );
                }
                assert!(
                    digits
                        .iter()
                        .all(|d| *d == 0 || (d % 2 != 0 && d.unsigned_abs() < 1 << (w - 1)))
                );
            }
        }
    }

    #[test]
    fn agrees_with_the_p256_crate_on_valid_and_mutated_signatures() {
        for i in 0..60u64 {
            let sk = SigningKey::from_bytes(&seeded(i).into()).expect("scalar");
            let vk = *sk.verifying_key();
            let key = EcPublicKey::new(&vk).expect("key");
            let msg = seeded(1000 + i);
            let msg = &msg[..(i as usize % 33)];
            let sig: Signature = sk.sign(msg);
            let bytes = sig.to_bytes().to_vec();
            assert_eq!(both(&vk, &key, msg, &bytes), (true, true), "valid {i}");
            // High-s form (n − s) is a valid ECDSA signature; JWS does not require low-s.
            let high_s = Signature::from_scalars(sig.r(), -*sig.s()).expect("sig");
            assert_eq!(
                both(&vk, &key, msg, &high_s.to_bytes()),
                (true, true),
                "high s {i}"
            );
            for flip in [0usize, 17, 31, 32, 50, 63] {
                let mut bad = bytes.clone();
                bad[flip] ^= 1 << (i % 8);
                assert_eq!(
                    both(&vk, &key, msg, &bad),
                    (false, false),
                    "flip {flip} of {i}"
                );
            }
            let mut other = msg.to_vec();
            other.push(1);
            assert_eq!(
                both(&vk, &key, &other, &bytes),
                (false, false),
                "other message {i}"
            );
            let other_key = SigningKey::from_bytes(&seeded(i + 500).into()).expect("scalar");
            let other_vk = *other_key.verifying_key();
            let other_ec = EcPublicKey::new(&other_vk).expect("key");
            assert_eq!(
                both(&other_vk, &other_ec, msg, &bytes),
                (false, false),
                "other key {i}"
            );
        }
    }

    #[test]
    fn rejects_out_of_range_and_malformed_signatures() {
        let sk = SigningKey::from_bytes(&seeded(1).into()).expect("scalar");
        let vk = *sk.verifying_key();
        let key = EcPublicKey::new(&vk).expect("key");
        let sig: Signature = sk.sign(b"m");
        let good = sig.to_bytes().to_vec();
        assert!(key.verify(b"m", &good));
        let n = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
        let (r, s) = good.split_at(32);
        let cat = |a: &[u8], b: &[u8]| [a, b].concat();
        let zero = [0u8; 32];
        assert!(!key.verify(b"m", &cat(&zero, s)), "r = 0");
        assert!(!key.verify(b"m", &cat(r, &zero)), "s = 0");
        assert!(!key.verify(b"m", &cat(&n, s)), "r = n");
        assert!(!key.verify(b"m", &cat(r, &n)), "s = n");
        assert!(!key.verify(b"m", &cat(&[0xFF; 32], s)), "r > n");
        assert!(!key.verify(b"m", &cat(r, &[0xFF; 32])), "s > n");
        // r + n (when it fits in 32 bytes) names the same x mod n but is not a valid encoding.
        assert!(!key.verify(b"m", &cat(s, r)), "r and s swapped");
        assert!(!key.verify(b"m", &good[..63]), "63 bytes");
        let mut long = good.clone();
        long.push(0);
        assert!(!key.verify(b"m", &long), "65 bytes");
        assert!(!key.verify(b"m", &[]), "empty");
    }

    fn affine_of(p: p256::ProjectivePoint) -> Affine {
        let e = p.to_affine().to_encoded_point(false);
        Affine {
            x: Fe::from_be_bytes(e.x().expect("x").as_ref()).expect("fe"),
            y: Fe::from_be_bytes(e.y().expect("y").as_ref()).expect("fe"),
        }
    }

    /// `table` holds `(2j + 1)·2^(16k)·P` at `k·2^(w−2) + j`: walked with `p256`'s additions from
    /// `2^(16k)·P` (a `p256` scalar multiplication), and the last entry of each chunk checked
    /// against a direct scalar multiplication too.
    fn check_tables(table: &[Affine], w: u32, p: p256::ProjectivePoint, what: &str) {
        let count = 1usize << (w - 2);
        assert_eq!(table.len(), CHUNKS * count, "{what}");
        let two_16 = p256::Scalar::from(1u64 << CHUNK_BITS);
        let mut chunk_factor = p256::Scalar::ONE;
        for (k, chunk) in table.chunks(count).enumerate() {
            let base = p * chunk_factor;
            let twice = base + base;
            let mut expected = base;
            for (j, entry) in chunk.iter().enumerate() {
                assert!(
                    *entry == affine_of(expected),
                    "{what}: {}·2^({CHUNK_BITS}·{k})·P",
                    2 * j + 1
                );
                expected += twice;
            }
            let last = p256::Scalar::from(2 * count as u64 - 1) * chunk_factor;
            assert!(chunk.last().copied() == Some(affine_of(p * last)), "{what}");
            chunk_factor *= two_16;
        }
    }

    #[test]
    fn tables_and_exceptional_additions_match_the_p256_group_law() {
        let g = p256::ProjectivePoint::GENERATOR;
        check_tables(base_table().expect("table"), W_BASE, g, "G");
        let n_minus_1 = -p256::Scalar::ONE;
        for (i, d) in (0..8u64)
            .map(|i| {
                <p256::Scalar as p256::elliptic_curve::PrimeField>::from_repr(seeded(i).into())
            })
            .map(|d| Option::<p256::Scalar>::from(d).expect("scalar"))
            .chain([p256::Scalar::ONE, n_minus_1])
            .enumerate()
        {
            let sk = SigningKey::from_bytes(&d.to_bytes()).expect("scalar");
            let q = p256::ProjectivePoint::from(*sk.verifying_key().as_affine());
            let key = EcPublicKey::new(sk.verifying_key()).expect("key");
            check_tables(&key.table, W_KEY, q, &format!("key {i}"));
        }
        let p = affine_of(g * p256::Scalar::from(7u64));
        let pj = Jacobian::from_affine(&p);
        assert!(
            pj.add_affine(&p).to_affine() == Some(affine_of(g * p256::Scalar::from(14u64))),
            "P + P"
        );
        let minus_p = Affine {
            x: p.x,
            y: p.y.neg(),
        };
        assert!(pj.add_affine(&minus_p).is_infinity(), "P + (−P)");
        assert!(Jacobian::INFINITY.double().is_infinity());
        assert!(Jacobian::INFINITY.add_affine(&p).to_affine() == Some(p));
        // A Jacobian point with Z ≠ 1 added to itself (in affine form) doubles.
        let p3 = pj.double().add_affine(&p);
        let p3_affine = p3.to_affine().expect("finite");
        assert!(
            p3.add_affine(&p3_affine).to_affine() == Some(affine_of(g * p256::Scalar::from(42u64)))
        );
        assert!(
            p3.add_affine(&Affine {
                x: p3_affine.x,
                y: p3_affine.y.neg()
            })
            .is_infinity()
        );
    }

    type PScalar = p256::Scalar;

    fn p_scalar(bytes: [u8; 32]) -> PScalar {
        <PScalar as p256::elliptic_curve::ops::Reduce<p256::U256>>::reduce_bytes(&bytes.into())
    }

    fn our_scalar(s: &PScalar) -> Scalar {
        let bytes: [u8; 32] = s.to_bytes().into();
        Scalar::from_be_bytes(&bytes).expect("scalar below n")
    }

    /// A scalar (reduced mod n) built from 16-bit chunks: `pick(k, random chunk, random byte)`
    /// chooses chunk `k`.
    fn chunked(seed: u64, pick: impl Fn(usize, u16, u8) -> u16) -> PScalar {
        let random = seeded(seed);
        let control = seeded(seed + 1_000_000);
        let mut bytes = [0u8; 32];
        // Chunk k is big-endian bytes 30 − 2k and 31 − 2k.
        for (k, (out, (r, c))) in bytes
            .rchunks_exact_mut(2)
            .zip(random.rchunks_exact(2).zip(control))
            .enumerate()
        {
            let value = u16::from_be_bytes([r[0], r[1]]);
            out.copy_from_slice(&pick(k, value, c).to_be_bytes());
        }
        p_scalar(bytes)
    }

    /// Scalar pairs `(u1, u2)` meant to reach zero chunks, repeated digits in both strings,
    /// and (with `Q = ±G`, `Q = ±2G`) partial sums equal to or opposite the added table entry.
    fn crafted_pairs() -> Vec<(PScalar, PScalar, String)> {
        let small = [0u16, 1, 3, 5, 7, 15, 0xFFFF, 0x8000, 2, 0x0101];
        let mut pairs = vec![
            (PScalar::ONE, PScalar::ONE, "1, 1".to_string()),
            (PScalar::ONE, -PScalar::ONE, "1, −1".to_string()),
            (PScalar::from(2u64), -PScalar::ONE, "2, −1".to_string()),
            (PScalar::ZERO, PScalar::from(5u64), "0, 5".to_string()),
            (-PScalar::ONE, -PScalar::ONE, "n − 1, n − 1".to_string()),
            (
                PScalar::from(1u64 << 16),
                PScalar::from(1u64 << 16),
                "2^16".to_string(),
            ),
        ];
        // One digit c in chunk k of both: with Q = ±G the pass adds c·2^(16k)·G to ∞, then
        // ±c·2^(16k)·G to that. With u1 = 2c·2^(16k) and Q = ±2G, the second addition meets
        // ±its sum after a doubling (Z ≠ 1).
        for k in (0..CHUNKS).step_by(3) {
            let factor = (0..k).fold(PScalar::ONE, |f, _| f * PScalar::from(1u64 << CHUNK_BITS));
            for c in [1u64, 3, 7, 15] {
                let u = PScalar::from(c) * factor;
                pairs.push((u, u, format!("{c}·2^(16·{k})")));
                pairs.push((u + u, u, format!("2·{c}·2^(16·{k}), {c}·2^(16·{k})")));
            }
        }
        for i in 0..6u64 {
            // Every chunk zero with probability 1/2, else random.
            let holes = chunked(i, |_, v, c| if c & 1 == 0 { 0 } else { v });
            // Chunks from a few small or extreme values.
            let sparse = chunked(100 + i, |_, _, c| small[usize::from(c) % small.len()]);
            // Only chunk i % 16 nonzero.
            let single = chunked(
                200 + i,
                |k, v, _| if k == i as usize % 16 { v | 1 } else { 0 },
            );
            let random = chunked(300 + i, |_, v, _| v);
            pairs.push((holes, holes, format!("holes {i}, same")));
            pairs.push((sparse, sparse, format!("sparse {i}, same")));
            pairs.push((sparse, -sparse, format!("sparse {i}, negated")));
            pairs.push((holes, sparse, format!("holes, sparse {i}")));
            pairs.push((single, single, format!("single {i}, same")));
            pairs.push((single, -single, format!("single {i}, negated")));
            pairs.push((random, holes, format!("random, holes {i}")));
            pairs.push((sparse + sparse, -sparse, format!("2·sparse {i}, −sparse")));
        }
        pairs
    }

    /// `u1·G + u2·Q` against `p256`, then a signature forged from it (knowing `u1`, `u2`, pick
    /// `r = x(R) mod n`, `s = r/u2`, `z = u1·s`) accepted by both and its mutations rejected by
    /// both, for keys `G`, `−G`, `2G`, `−2G` and random ones.
    #[test]
    fn crafted_scalars_reach_exceptional_additions_and_agree_with_p256() {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        use p256::elliptic_curve::Field as _;
        let g = p256::ProjectivePoint::GENERATOR;
        let keys = [
            PScalar::ONE,
            -PScalar::ONE,
            PScalar::from(2u64),
            -PScalar::from(2u64),
            p_scalar(seeded(7)),
        ];
        let pairs = crafted_pairs();
        let mut forged = 0;
        let mut exceptional = [0usize; 3];
        for (ki, d) in keys.iter().enumerate() {
            let sk = SigningKey::from_bytes(&d.to_bytes()).expect("key");
            let vk = *sk.verifying_key();
            let q = p256::ProjectivePoint::from(*vk.as_affine());
            let key = EcPublicKey::new(&vk).expect("key");
            for (u1, u2, what) in &pairs {
                let expected = g * u1 + q * u2;
                let before = EXCEPTIONAL.with(std::cell::Cell::get);
                let ours = key
                    .mul_add(&our_scalar(u1), &our_scalar(u2))
                    .expect("tables");
                let after = EXCEPTIONAL.with(std::cell::Cell::get);
                for (e, (a, b)) in exceptional.iter_mut().zip(after.iter().zip(before)) {
                    // The first addition of a pass always starts from ∞.
                    *e += a - b;
                }
                if expected == p256::ProjectivePoint::IDENTITY {
                    assert!(ours.is_infinity(), "key {ki}, {what}: ∞");
                } else {
                    assert!(
                        ours.to_affine() == Some(affine_of(expected)),
                        "key {ki}, {what}"
                    );
                }
                if bool::from(u2.is_zero()) {
                    continue;
                }
                let encoded = expected.to_affine().to_encoded_point(false);
                // At infinity there is no x: try r = 1 (then nothing verifies).
                let r = encoded.x().map_or(PScalar::ONE, |x| {
                    p_scalar(<[u8; 32]>::try_from(x.as_slice()).expect("32 bytes"))
                });
                if bool::from(r.is_zero()) {
                    continue;
                }
                let s = r * u2.invert().expect("u2 ≠ 0");
                let z = *u1 * s;
                let check = |z: &PScalar, r: &PScalar, s: &PScalar| {
                    let sig = Signature::from_scalars(*r, *s).expect("r, s ≠ 0");
                    let reference = vk.verify_prehash(&z.to_bytes(), &sig).is_ok();
                    let ours = key
                        .verify_scalars(&our_scalar(z), &our_scalar(r), &our_scalar(s))
                        .expect("no failure");
                    assert_eq!(ours, reference, "key {ki}, {what}");
                    ours
                };
                let valid = check(&z, &r, &s);
                assert_eq!(valid, encoded.x().is_some(), "key {ki}, {what}");
                forged += usize::from(valid);
                assert!(!check(&(z + PScalar::ONE), &r, &s), "z + 1");
                if !bool::from((s + PScalar::ONE).is_zero()) {
                    assert!(!check(&z, &r, &(s + PScalar::ONE)), "s + 1");
                }
                if !bool::from((r + PScalar::ONE).is_zero()) {
                    assert!(!check(&z, &(r + PScalar::ONE), &s), "r + 1");
                }
                // The whole path, with the forged z as a message hash, through the verifier.
                let sig = Signature::from_scalars(r, s).expect("sig");
                let ours = key.verify_scalars(
                    &Scalar::reduce_be_bytes(&z.to_bytes().into()),
                    &Scalar::from_be_bytes(&sig.r().to_bytes().into()).expect("r"),
                    &Scalar::from_be_bytes(&sig.s().to_bytes().into()).expect("s"),
                );
                assert_eq!(ours, Some(valid));
            }
        }
        assert!(forged > keys.len() * pairs.len() / 2, "{forged} forged");
        // Each kind of exceptional addition happened inside the verification pass many times
        // (∞ accumulators more often than passes: after P + (−P) the pass goes on from ∞).
        let passes = keys.len() * pairs.len();
        assert!(
            exceptional[0] > 50 && exceptional[1] > 50 && exceptional[2] > passes,
            "{exceptional:?} in {passes} passes"
        );
        eprintln!("exceptional additions {exceptional:?} in {passes} passes");
    }

    /// Random keys, messages and signatures (RFC 6979 nonces from random messages), each with
    /// a random bit of `r`, of `s` and of the message flipped.
    #[test]
    fn agrees_with_the_p256_crate_on_random_keys_and_random_bit_flips() {
        for i in 0..80u64 {
            let sk = SigningKey::from_bytes(&seeded(10_000 + i).into()).expect("scalar");
            let vk = *sk.verifying_key();
            let key = EcPublicKey::new(&vk).expect("key");
            let random = seeded(20_000 + i);
            let msg = [random.as_slice(), &seeded(30_000 + i)].concat();
            let msg = &msg[..usize::from(random[0]) % 64];
            let sig: Signature = sk.sign(msg);
            let bytes = sig.to_bytes().to_vec();
            assert_eq!(both(&vk, &key, msg, &bytes), (true, true), "valid {i}");
            let bit = |b: u8| 1u8 << (b % 8);
            let mut bad_r = bytes.clone();
            bad_r[usize::from(random[1]) % 32] ^= bit(random[2]);
            let mut bad_s = bytes.clone();
            bad_s[32 + usize::from(random[3]) % 32] ^= bit(random[4]);
            assert_eq!(both(&vk, &key, msg, &bad_r), (false, false), "r of {i}");
            assert_eq!(both(&vk, &key, msg, &bad_s), (false, false), "s of {i}");
            if !msg.is_empty() {
                let mut bad_msg = msg.to_vec();
                bad_msg[usize::from(random[5]) % msg.len()] ^= bit(random[6]);
                assert_eq!(both(&vk, &key, &bad_msg, &bytes), (false, false), "msg {i}");
            }
        }
    }

    const N_HEX: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

    #[test]
    fn r_plus_n_adds_the_group_order_when_the_sum_is_below_p() {
        let one = Scalar::from_be_bytes(&hex32(&format!("{:064x}", 1))).expect("1");
        assert_eq!(
            r_plus_n(&one).map(Fe::to_be_bytes),
            Some(hex32(
                "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632552"
            ))
        );
        // p − n = 0x4319055358e8617b0c46353d039cdaae: the largest r with r + n < p is one less.
        let below = hex32("000000000000000000000000000000004319055358e8617b0c46353d039cdaad");
        let r = Scalar::from_be_bytes(&below).expect("r");
        let p_minus_1 = hex32("ffffffff00000001000000000000000000000000fffffffffffffffffffffffe");
        assert_eq!(r_plus_n(&r).map(Fe::to_be_bytes), Some(p_minus_1));
        let mut at = below;
        at[31] += 1;
        assert_eq!(
            r_plus_n(&Scalar::from_be_bytes(&at).expect("r")),
            None,
            "r + n = p"
        );
        let big = hex32("0000000100000000000000000000000000000000000000000000000000000000");
        assert_eq!(
            r_plus_n(&Scalar::from_be_bytes(&big).expect("r")),
            None,
            "r + n ≥ p"
        );
    }

    /// A signature whose `R` has `x(R) ≥ n` (probability ~2⁻¹²⁸ for real signatures): pick such
    /// an `R`, pick `s`, and solve `u1·G + u2·Q = R` for the public key `Q`.
    #[test]
    fn accepts_x_of_r_above_n_through_r_plus_n_only() {
        use p256::elliptic_curve::sec1::FromEncodedPoint as _;
        type Reduce = p256::elliptic_curve::bigint::U256;
        let n = hex32(N_HEX);
        let (x, big_r) = (1u8..100)
            .find_map(|i| {
                let mut x = n;
                x[31] += i;
                let mut compressed = vec![0x02];
                compressed.extend_from_slice(&x);
                let point = p256::EncodedPoint::from_bytes(&compressed).expect("encoding");
                Option::<p256::AffinePoint>::from(p256::AffinePoint::from_encoded_point(&point))
                    .map(|p| (x, p))
            })
            .expect("a point with n < x < n + 100");
        for (i, message) in [b"x(R) = r + n".as_slice(), b"", b"another"]
            .iter()
            .enumerate()
        {
            let z = <p256::Scalar as p256::elliptic_curve::ops::Reduce<Reduce>>::reduce_bytes(
                &Sha256::digest(message),
            );
            let r = <p256::Scalar as p256::elliptic_curve::ops::Reduce<Reduce>>::reduce_bytes(
                &x.into(),
            );
            let s = p256::Scalar::from(12_345 + i as u64);
            let s_inv = s.invert().expect("s ≠ 0");
            let (u1, u2) = (z * s_inv, r * s_inv);
            let q = (p256::ProjectivePoint::from(big_r) - p256::ProjectivePoint::GENERATOR * u1)
                * u2.invert().expect("u2 ≠ 0");
            let vk = VerifyingKey::from_affine(q.to_affine()).expect("key");
            let key = EcPublicKey::new(&vk).expect("key");
            let sig = [r.to_bytes(), s.to_bytes()].concat();
            assert_eq!(both(&vk, &key, message, &sig), (true, true), "{i}");
            assert!(!key.verify(&[*message, b"!".as_slice()].concat(), &sig));
            let unreduced = [x.as_slice(), s.to_bytes().as_slice()].concat();
            assert_eq!(
                both(&vk, &key, message, &unreduced),
                (false, false),
                "r ≥ n"
            );
            let r_plus_1 = [(r + p256::Scalar::ONE).to_bytes(), s.to_bytes()].concat();
            assert_eq!(both(&vk, &key, message, &r_plus_1), (false, false));
        }
    }

    /// RFC 6979 appendix A.2.5: P-256 with SHA-256, messages "sample" and "test".
    #[test]
    fn rfc6979_p256_sha256_vectors_verify() {
        let x = hex32("60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6");
        let y = hex32("7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299");
        let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        let vk = VerifyingKey::from_encoded_point(&point).expect("RFC key");
        let sk = SigningKey::from_bytes(
            &hex32("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721").into(),
        )
        .expect("RFC private key");
        assert_eq!(*sk.verifying_key(), vk);
        let key = EcPublicKey::new(&vk).expect("key");
        for (message, r, s) in [
            (
                "sample",
                "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
                "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8",
            ),
            (
                "test",
                "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367",
                "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083",
            ),
        ] {
            let sig = [hex32(r), hex32(s)].concat();
            // The deterministic signer produces exactly these bytes.
            let signed: Signature = sk.sign(message.as_bytes());
            assert_eq!(signed.to_bytes().as_slice(), sig, "{message}");
            assert_eq!(both(&vk, &key, message.as_bytes(), &sig), (true, true));
            assert!(!key.verify(b"samplf", &sig));
            for flip in 0..64 {
                let mut bad = sig.clone();
                bad[flip] ^= 0x80 >> (flip % 8);
                assert_eq!(both(&vk, &key, message.as_bytes(), &bad), (false, false));
            }
        }
    }

    #[test]
    fn rfc7515_appendix_a3_example_verifies() {
        use base64::Engine as _;
        let b64 = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .expect("base64url")
        };
        let x = b64("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU");
        let y = b64("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0");
        let point = p256::EncodedPoint::from_affine_coordinates(
            p256::FieldBytes::from_slice(&x),
            p256::FieldBytes::from_slice(&y),
            false,
        );
        let vk = VerifyingKey::from_encoded_point(&point).expect("RFC key");
        let key = EcPublicKey::new(&vk).expect("key");
        let input = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let sig = b64(
            "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q",
        );
        assert_eq!(both(&vk, &key, input.as_bytes(), &sig), (true, true));
        let mut tampered = input.as_bytes().to_vec();
        tampered[30] ^= 1;
        assert_eq!(both(&vk, &key, &tampered, &sig), (false, false));
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }
}
