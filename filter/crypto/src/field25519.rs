//! Arithmetic modulo `p = 2²⁵⁵ − 19` (the field of Curve25519 / edwards25519) on eight 32-bit
//! limbs.
//!
//! The 512-bit products are [`crate::field`]'s (`u32 × u32 → u64` steps, see there why); the
//! reduction folds the high half with `2²⁵⁶ ≡ 38 (mod p)`: eight more multiplications by a small
//! constant. Values are kept below `2²⁵⁶` but not below `p` (a "weak" form, so that additions
//! and subtractions need no comparison with `p`); [`Fe25519::canonical`] reduces fully where a
//! value is compared or encoded. Nothing here is constant time: EdDSA verification has public
//! inputs only.

use crate::field::{add_limbs, less_than, mul_wide, square_wide, sub_limbs};
use crate::safegcd;

/// Little-endian 32-bit limbs of `p`.
pub(crate) const P: [u32; 8] = [
    0xFFFF_FFED,
    0xFFFF_FFFF,
    0xFFFF_FFFF,
    0xFFFF_FFFF,
    0xFFFF_FFFF,
    0xFFFF_FFFF,
    0xFFFF_FFFF,
    0x7FFF_FFFF,
];

/// An integer modulo `p`, as some representative below `2²⁵⁶`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fe25519([u32; 8]);

/// `r + 38·carry`, where `carry` counts overflows past `2²⁵⁶` (`2²⁵⁶ ≡ 38`). An addition that
/// overflows again leaves a small value, so the second round cannot overflow.
#[inline(always)]
fn fold_up(mut r: [u32; 8], carry: u64) -> [u32; 8] {
    let mut c = 38 * carry;
    while c != 0 {
        for limb in r.iter_mut() {
            let t = u64::from(*limb) + c;
            *limb = t as u32;
            c = t >> 32;
            if c == 0 {
                break;
            }
        }
        c *= 38;
    }
    r
}

/// `r − 38·borrow`, where `borrow` counts wraps below zero: the same fold, downwards.
#[inline(always)]
fn fold_down(mut r: [u32; 8], borrow: u32) -> [u32; 8] {
    let mut b = 38 * borrow;
    while b != 0 {
        for limb in r.iter_mut() {
            let (diff, under) = limb.overflowing_sub(b);
            *limb = diff;
            b = u32::from(under);
            if b == 0 {
                break;
            }
        }
        b *= 38;
    }
    r
}

/// `c mod p` (weakly) for a 512-bit `c`: `low + 38·high`, then the carry folded once more.
#[inline(always)]
fn reduce_wide(c: [u32; 16]) -> Fe25519 {
    let (low, high) = c.split_at(8);
    let mut r = [0u32; 8];
    let mut carry = 0u64;
    for ((out, l), h) in r.iter_mut().zip(low).zip(high) {
        // ≤ (2³² − 1) + 38·(2³² − 1) + 38 < 2³⁸: the carry stays below 39.
        let t = u64::from(*l) + 38 * u64::from(*h) + carry;
        *out = t as u32;
        carry = t >> 32;
    }
    Fe25519(fold_up(r, carry))
}

impl Fe25519 {
    pub(crate) const ZERO: Fe25519 = Fe25519([0; 8]);
    pub(crate) const ONE: Fe25519 = Fe25519([1, 0, 0, 0, 0, 0, 0, 0]);

    /// Any 256-bit value is a representative.
    pub(crate) const fn from_limbs(limbs: [u32; 8]) -> Fe25519 {
        Fe25519(limbs)
    }

    /// The 255-bit little-endian integer in `bytes` (the top bit, a sign in point encodings, is
    /// ignored), taken mod `p`: values from `p` to `2²⁵⁵ − 1` are accepted as they are (what
    /// `curve25519-dalek` does when it decodes a point).
    pub(crate) fn from_le_bytes_255(bytes: &[u8; 32]) -> Fe25519 {
        let mut limbs = [0u32; 8];
        for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(4)) {
            *limb = chunk
                .iter()
                .rev()
                .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        }
        if let Some(top) = limbs.last_mut() {
            *top &= 0x7FFF_FFFF;
        }
        Fe25519(limbs)
    }

    /// The canonical little-endian encoding (the value reduced below `p`).
    pub(crate) fn to_le_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, limb) in out.chunks_exact_mut(4).zip(self.canonical()) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    /// The representative below `p`: `2²⁵⁶ − 1 < 3p`, so at most two subtractions.
    pub(crate) fn canonical(&self) -> [u32; 8] {
        let mut r = self.0;
        while !less_than(&r, &P) {
            r = sub_limbs(&r, &P).0;
        }
        r
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.canonical() == [0; 8]
    }

    /// Whether the canonical value is odd (a "negative" x-coordinate, RFC 8032 section 5.1.2).
    pub(crate) fn is_odd(&self) -> bool {
        self.canonical().first().is_some_and(|l| l & 1 == 1)
    }

    pub(crate) fn equals(&self, other: &Fe25519) -> bool {
        self.canonical() == other.canonical()
    }

    #[inline]
    pub(crate) fn add(&self, other: &Fe25519) -> Fe25519 {
        let (sum, carry) = add_limbs(&self.0, &other.0);
        Fe25519(fold_up(sum, u64::from(carry)))
    }

    #[inline]
    pub(crate) fn sub(&self, other: &Fe25519) -> Fe25519 {
        let (diff, borrow) = sub_limbs(&self.0, &other.0);
        Fe25519(fold_down(diff, borrow))
    }

    #[inline]
    pub(crate) fn double(&self) -> Fe25519 {
        self.add(self)
    }

    pub(crate) fn neg(&self) -> Fe25519 {
        Fe25519::ZERO.sub(self)
    }

    // Not inlined, as in `crate::field`: the point formulas call these ~40 times.
    #[inline(never)]
    pub(crate) fn mul(&self, other: &Fe25519) -> Fe25519 {
        reduce_wide(mul_wide(&self.0, &other.0))
    }

    #[inline(never)]
    pub(crate) fn square(&self) -> Fe25519 {
        reduce_wide(square_wide(&self.0))
    }

    /// `self^(2^k)`.
    fn square_times(&self, k: u32) -> Fe25519 {
        let mut acc = *self;
        for _ in 0..k {
            acc = acc.square();
        }
        acc
    }

    /// `self^(2²⁵⁰ − 1)` (the classic chain: 249 squarings and 11 multiplications).
    fn pow_2_250_minus_1(&self) -> Fe25519 {
        let z2 = self.square();
        let z9 = z2.square_times(2).mul(self);
        let z11 = z9.mul(&z2);
        let z_5_0 = z11.square().mul(&z9);
        let z_10_0 = z_5_0.square_times(5).mul(&z_5_0);
        let z_20_0 = z_10_0.square_times(10).mul(&z_10_0);
        let z_40_0 = z_20_0.square_times(20).mul(&z_20_0);
        let z_50_0 = z_40_0.square_times(10).mul(&z_10_0);
        let z_100_0 = z_50_0.square_times(50).mul(&z_50_0);
        let z_200_0 = z_100_0.square_times(100).mul(&z_100_0);
        z_200_0.square_times(50).mul(&z_50_0)
    }

    /// `self⁻¹`; zero for zero. By divsteps ([`crate::safegcd`]), about a quarter of the time
    /// of the exponentiation `self^(p − 2)` (255 squarings) in V8.
    pub(crate) fn invert(&self) -> Fe25519 {
        Fe25519(safegcd::invert(&self.canonical(), &P).unwrap_or([0; 8]))
    }

    /// `self^((p − 5)/8) = self^(2²⁵² − 3)`, the core of the square root below.
    fn pow_p58(&self) -> Fe25519 {
        self.pow_2_250_minus_1().square_times(2).mul(self)
    }

    /// A square root of `u/v` (`v ≠ 0`), either one; `None` when `u/v` is not a square. With
    /// `p ≡ 5 (mod 8)`, `x = u·v³·(u·v⁷)^((p−5)/8)` satisfies `v·x² = ±u`; for `−u` the root is
    /// `x·√−1` (RFC 8032 section 5.1.3, step 3).
    pub(crate) fn sqrt_ratio(u: &Fe25519, v: &Fe25519) -> Option<Fe25519> {
        let v3 = v.square().mul(v);
        let v7 = v3.square().mul(v);
        let x = u.mul(&v3).mul(&u.mul(&v7).pow_p58());
        let vxx = v.mul(&x.square());
        if vxx.equals(u) {
            Some(x)
        } else if vxx.equals(&u.neg()) {
            Some(x.mul(&SQRT_M1))
        } else {
            None
        }
    }
}

/// `√−1 = 2^((p−1)/4)`, the root whose square is `−1` used by RFC 8032.
pub(crate) const SQRT_M1: Fe25519 = Fe25519([
    0x4A0E_A0B0,
    0xC4EE_1B27,
    0xAD2F_E478,
    0x2F43_1806,
    0x3DFB_D7A7,
    0x2B4D_0099,
    0x4FC1_DF0B,
    0x2B83_2480,
]);

/// The curve constant `d = −121665/121666` of edwards25519.
pub(crate) const D: Fe25519 = Fe25519([
    0x1359_78A3,
    0x75EB_4DCA,
    0x4141_D8AB,
    0x0070_0A4D,
    0x7779_E898,
    0x8CC7_4079,
    0x2B6F_FE73,
    0x5203_6CEE,
]);

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::BigUint;
    use sha2::{Digest as _, Sha256};

    fn p() -> BigUint {
        (BigUint::from(1u8) << 255usize) - BigUint::from(19u8)
    }

    fn big(fe: &Fe25519) -> BigUint {
        let bytes: Vec<u8> = fe.0.iter().flat_map(|l| l.to_le_bytes()).collect();
        BigUint::from_bytes_le(&bytes)
    }

    fn from_big(v: &BigUint) -> Fe25519 {
        let mut bytes = v.to_bytes_le();
        bytes.resize(32, 0);
        let mut limbs = [0u32; 8];
        for (l, c) in limbs.iter_mut().zip(bytes.chunks_exact(4)) {
            *l = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Fe25519(limbs)
    }

    /// Values below 2²⁵⁶ that reach every edge of the weak form: 0, 1, p − 1, p, p + 1, 2p − 1,
    /// 2p, 2²⁵⁶ − 38 … 2²⁵⁶ − 1, long runs of ones and zeros, and seeded random values.
    fn samples(count: u64) -> Vec<Fe25519> {
        let one = BigUint::from(1u8);
        let top = (BigUint::from(1u8) << 256usize) - &one;
        let mut values = vec![
            BigUint::from(0u8),
            one.clone(),
            BigUint::from(2u8),
            BigUint::from(19u8),
            BigUint::from(38u8),
            p() - &one,
            p(),
            p() + &one,
            p() * 2u8 - &one,
            p() * 2u8,
            p() * 2u8 + &one,
            top.clone(),
            &top - 37u8,
            &top - 38u8,
            (BigUint::from(1u8) << 255usize) - &one,
            BigUint::from(1u8) << 255usize,
            (BigUint::from(1u8) << 128usize) - &one,
        ];
        for i in 0..count {
            let bytes: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            values.push(BigUint::from_bytes_le(&bytes));
        }
        values.iter().map(from_big).collect()
    }

    #[test]
    fn every_operation_matches_big_integer_arithmetic() {
        let p = p();
        let values = samples(300);
        for a in &values {
            let ab = big(a);
            assert_eq!(big(&Fe25519(a.canonical())), &ab % &p);
            assert_eq!(a.is_zero(), (&ab % &p) == BigUint::from(0u8));
            assert_eq!(big(&a.neg()) % &p, (&p - &ab % &p) % &p);
            assert_eq!(big(&a.square()) % &p, (&ab * &ab) % &p);
            let inv = a.invert();
            if !a.is_zero() {
                assert_eq!(
                    (big(&inv) * &ab) % &p,
                    BigUint::from(1u8),
                    "inverse of {ab}"
                );
            } else {
                assert!(inv.is_zero());
            }
            for b in values.iter().step_by(7) {
                let bb = big(b);
                assert_eq!(big(&a.add(b)) % &p, (&ab + &bb) % &p, "{ab} + {bb}");
                assert_eq!(
                    big(&a.sub(b)) % &p,
                    (&ab + &p * 2u8 - &bb) % &p,
                    "{ab} - {bb}"
                );
                assert_eq!(big(&a.mul(b)) % &p, (&ab * &bb) % &p, "{ab} · {bb}");
                assert_eq!(a.equals(b), (&ab % &p) == (&bb % &p));
            }
        }
    }

    /// Long chains of operations, each on the results of the previous ones, so that inputs
    /// carry every pattern the weak form leaves (not only the sampled values).
    #[test]
    fn chains_of_operations_match_big_integer_arithmetic() {
        let p = p();
        let mut ours = samples(40);
        let mut theirs: Vec<BigUint> = ours.iter().map(|f| big(f) % &p).collect();
        let n = ours.len();
        for step in 0..4000usize {
            let (i, j, k) = (step % n, (step * 7 + 3) % n, (step * 13 + 5) % n);
            let (a, b) = (ours[i], ours[j]);
            let (x, y) = (theirs[i].clone(), theirs[j].clone());
            let (r, v) = match step % 5 {
                0 => (a.add(&b), (&x + &y) % &p),
                1 => (a.sub(&b), (&x + &p - &y) % &p),
                2 => (a.mul(&b), (&x * &y) % &p),
                3 => (a.square(), (&x * &x) % &p),
                _ => (a.neg().double(), ((&p - &x) * 2u8) % &p),
            };
            assert_eq!(big(&r) % &p, v, "step {step}");
            ours[k] = r;
            theirs[k] = v;
        }
    }

    #[test]
    fn constants_are_what_they_claim() {
        let p = p();
        // d·121666 = −121665
        let d121666 = (big(&D) * BigUint::from(121_666u32)) % &p;
        assert_eq!(d121666, &p - BigUint::from(121_665u32));
        // (√−1)² = −1
        assert_eq!(big(&SQRT_M1.square()) % &p, &p - 1u8);
        assert!(big(&D) < p && big(&SQRT_M1) < p);
    }

    #[test]
    fn square_roots_of_ratios_are_found_exactly_when_they_exist() {
        let p = p();
        let exponent = (&p - 1u8) / 2u8;
        let values = samples(200);
        for (i, u) in values.iter().enumerate() {
            let v = values
                .get((i * 31 + 5) % values.len())
                .copied()
                .unwrap_or(Fe25519::ONE);
            if v.is_zero() {
                continue;
            }
            let ratio = (big(u) * big(&v.invert())) % &p;
            let is_square =
                ratio == BigUint::from(0u8) || ratio.modpow(&exponent, &p) == BigUint::from(1u8);
            match Fe25519::sqrt_ratio(u, &v) {
                Some(x) => {
                    assert!(is_square, "root found for a non-square");
                    assert_eq!((big(&x) * big(&x)) % &p, ratio);
                }
                None => assert!(!is_square, "no root found for a square"),
            }
        }
    }

    #[test]
    fn encoding_is_canonical_and_decoding_drops_the_top_bit() {
        let p = p();
        for v in samples(50) {
            let bytes = v.to_le_bytes();
            assert_eq!(BigUint::from_bytes_le(&bytes), big(&v) % &p);
            let mut with_sign = bytes;
            if let Some(last) = with_sign.last_mut() {
                *last |= 0x80;
            }
            assert!(Fe25519::from_le_bytes_255(&with_sign).equals(&v));
        }
        // 2²⁵⁵ − 1 (non-canonical, ≥ p) decodes to 18.
        let all = [0xFF; 32];
        assert!(Fe25519::from_le_bytes_255(&all).equals(&Fe25519([18, 0, 0, 0, 0, 0, 0, 0])));
    }
}
