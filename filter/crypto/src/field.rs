//! Arithmetic modulo the P-256 prime `p = 2²⁵⁶ − 2²²⁴ + 2¹⁹² + 2⁹⁶ − 1` on eight 32-bit limbs.
//!
//! Every product is `u32 × u32 → u64`, which wasm32 has natively (`i64.mul`); 64-bit limbs would
//! need `u64 × u64 → u128`, which wasm32 emulates with four multiplications and carries. The
//! 512-bit product is reduced with the NIST/Solinas identities for `p` (FIPS 186-5 / SP 800-186
//! "fast reduction"): only additions and subtractions of product words, no second round of
//! multiplications as in Montgomery reduction. Values are kept fully reduced (`< p`), so equality
//! is limb equality. Nothing here is constant time: ES256 verification has public inputs only.

use crate::safegcd;

/// Little-endian 32-bit limbs of `p`.
const P: [u32; 8] = [
    0xFFFF_FFFF,
    0xFFFF_FFFF,
    0xFFFF_FFFF,
    0,
    0,
    0,
    1,
    0xFFFF_FFFF,
];

/// An integer modulo `p`, always `< p`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fe([u32; 8]);

/// `a + b + carry` as (low word, carry out).
#[inline(always)]
fn adc(a: u32, b: u32, carry: u32) -> (u32, u32) {
    let t = u64::from(a) + u64::from(b) + u64::from(carry);
    (t as u32, (t >> 32) as u32)
}

/// `a − b − borrow` as (low word, borrow out ∈ {0, 1}).
#[inline(always)]
fn sbb(a: u32, b: u32, borrow: u32) -> (u32, u32) {
    let t = u64::from(a)
        .wrapping_sub(u64::from(b))
        .wrapping_sub(u64::from(borrow));
    (t as u32, (t >> 63) as u32)
}

/// `a + b` over 8 limbs; returns the carry out.
#[inline(always)]
pub(crate) fn add_limbs(a: &[u32; 8], b: &[u32; 8]) -> ([u32; 8], u32) {
    let mut out = [0u32; 8];
    let mut carry = 0;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        (*o, carry) = adc(*x, *y, carry);
    }
    (out, carry)
}

/// `a − b` over 8 limbs; returns the borrow out.
#[inline(always)]
pub(crate) fn sub_limbs(a: &[u32; 8], b: &[u32; 8]) -> ([u32; 8], u32) {
    let mut out = [0u32; 8];
    let mut borrow = 0;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        (*o, borrow) = sbb(*x, *y, borrow);
    }
    (out, borrow)
}

/// `a < m` as integers.
#[inline(always)]
pub(crate) fn less_than(a: &[u32; 8], m: &[u32; 8]) -> bool {
    sub_limbs(a, m).1 == 1
}

/// `a ≥ p`. The top limb of `p` is all ones, so below that (all but ~2⁻³² of the values met)
/// the full comparison is skipped.
#[inline(always)]
fn at_least_p(a: &[u32; 8]) -> bool {
    let [.., top] = *a;
    top == u32::MAX && !less_than(a, &P)
}

/// Big-endian bytes → little-endian limbs.
pub(crate) fn limbs_from_be(bytes: &[u8; 32]) -> [u32; 8] {
    let mut out = [0u32; 8];
    for (limb, chunk) in out.iter_mut().zip(bytes.rchunks_exact(4)) {
        *limb = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    }
    out
}

/// Little-endian limbs → big-endian bytes.
#[cfg(test)]
pub(crate) fn limbs_to_be(limbs: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, limb) in out.rchunks_exact_mut(4).zip(limbs) {
        chunk.copy_from_slice(&limb.to_be_bytes());
    }
    out
}

/// Adds `ai · b` to the words of `r` from `I` on (one row of a schoolbook product). The last
/// carry is stored, not added, at `I + b.len()`: rows are added in order of their offset, so that
/// word is still zero. Each step is at most `(2³² − 1)² + 2·(2³² − 1) = 2⁶⁴ − 1`, so it never
/// overflows `u64`. `I` is a constant so that the compiler unrolls every row completely and keeps
/// the product in locals: with a loop over rows (a variable offset) it stayed in linear memory
/// and a whole ES256 verification was ~15% slower in V8.
#[inline(always)]
fn mul_row<const I: usize>(r: &mut [u32; 16], ai: u32, b: &[u32]) {
    let ai = u64::from(ai);
    let mut carry = 0u64;
    for (rk, bj) in r.iter_mut().skip(I).zip(b) {
        let t = ai * u64::from(*bj) + u64::from(*rk) + carry;
        *rk = t as u32;
        carry = t >> 32;
    }
    if let Some(top) = r.get_mut(I + b.len()) {
        *top = carry as u32;
    }
}

/// The full 512-bit product `a · b`.
#[inline(always)]
pub(crate) fn mul_wide(a: &[u32; 8], b: &[u32; 8]) -> [u32; 16] {
    let [a0, a1, a2, a3, a4, a5, a6, a7] = *a;
    let mut r = [0u32; 16];
    mul_row::<0>(&mut r, a0, b);
    mul_row::<1>(&mut r, a1, b);
    mul_row::<2>(&mut r, a2, b);
    mul_row::<3>(&mut r, a3, b);
    mul_row::<4>(&mut r, a4, b);
    mul_row::<5>(&mut r, a5, b);
    mul_row::<6>(&mut r, a6, b);
    mul_row::<7>(&mut r, a7, b);
    r
}

/// `a²` as 512 bits: the 28 cross products `aᵢ·aⱼ (i < j)` once, doubled, plus the 8 squares
/// (36 multiplications instead of 64).
#[inline(always)]
pub(crate) fn square_wide(a: &[u32; 8]) -> [u32; 16] {
    let [a0, a1, a2, a3, a4, a5, a6, _] = *a;
    let mut r = [0u32; 16];
    // Row i holds aᵢ·aⱼ for j > i, which lands at i + j: a row of `a[i + 1..]` at offset 2i + 1.
    mul_row::<1>(&mut r, a0, a.get(1..).unwrap_or_default());
    mul_row::<3>(&mut r, a1, a.get(2..).unwrap_or_default());
    mul_row::<5>(&mut r, a2, a.get(3..).unwrap_or_default());
    mul_row::<7>(&mut r, a3, a.get(4..).unwrap_or_default());
    mul_row::<9>(&mut r, a4, a.get(5..).unwrap_or_default());
    mul_row::<11>(&mut r, a5, a.get(6..).unwrap_or_default());
    mul_row::<13>(&mut r, a6, a.get(7..).unwrap_or_default());
    // The cross products sum to less than 2⁵¹¹, so doubling does not overflow.
    let mut high = 0u32;
    for limb in r.iter_mut() {
        let next = *limb >> 31;
        *limb = (*limb << 1) | high;
        high = next;
    }
    let mut carry = 0u64;
    for (pair, ai) in r.chunks_exact_mut(2).zip(a) {
        if let [lo, hi] = pair {
            let sq = u64::from(*ai) * u64::from(*ai);
            let t = u64::from(*lo) + (sq & 0xFFFF_FFFF) + carry;
            *lo = t as u32;
            let t = u64::from(*hi) + (sq >> 32) + (t >> 32);
            *hi = t as u32;
            carry = t >> 32;
        }
    }
    r
}

/// Signed per-limb sums → limbs and the signed multiple of `2²⁵⁶` left over.
#[inline(always)]
fn propagate(acc: [i64; 8]) -> ([u32; 8], i64) {
    let mut out = [0u32; 8];
    let mut carry = 0i64;
    for (o, a) in out.iter_mut().zip(acc) {
        let t = a + carry;
        *o = t as u32;
        carry = t >> 32;
    }
    (out, carry)
}

/// `c mod p` for a 512-bit `c` (little-endian words `c0 … c15`).
#[inline(always)]
fn reduce_wide(c: [u32; 16]) -> Fe {
    let [
        c0,
        c1,
        c2,
        c3,
        c4,
        c5,
        c6,
        c7,
        c8,
        c9,
        c10,
        c11,
        c12,
        c13,
        c14,
        c15,
    ] = c.map(i64::from);
    // c ≡ s1 + 2·s2 + 2·s3 + s4 + s5 − d1 − d2 − d3 − d4 (mod p), the nine 256-bit terms of the
    // NIST reduction for p-256, summed per limb (each sum is within ±2³⁵).
    let (mut limbs, mut top) = propagate([
        c0 + c8 + c9 - c11 - c12 - c13 - c14,
        c1 + c9 + c10 - c12 - c13 - c14 - c15,
        c2 + c10 + c11 - c13 - c14 - c15,
        c3 + 2 * (c11 + c12) + c13 - c15 - c8 - c9,
        c4 + 2 * (c12 + c13) + c14 - c9 - c10,
        c5 + 2 * (c13 + c14) + c15 - c10 - c11,
        c6 + 3 * c14 + 2 * c15 + c13 - c8 - c9,
        c7 + 3 * c15 + c8 - c10 - c11 - c12 - c13,
    ]);
    // limbs + top·2²⁵⁶ with 2²⁵⁶ ≡ 2²²⁴ − 2¹⁹² − 2⁹⁶ + 1. The first fold leaves |top| ≤ 1, and a
    // fold that overflows (or underflows) leaves limbs far enough from the edge that the next
    // one does not: at most three rounds.
    while top != 0 {
        let [l0, l1, l2, l3, l4, l5, l6, l7] = limbs.map(i64::from);
        (limbs, top) = propagate([l0 + top, l1, l2, l3 - top, l4, l5, l6 - top, l7 + top]);
    }
    // limbs < 2²⁵⁶ < 2p.
    if at_least_p(&limbs) {
        limbs = sub_limbs(&limbs, &P).0;
    }
    Fe(limbs)
}

impl Fe {
    pub(crate) const ZERO: Fe = Fe([0; 8]);
    pub(crate) const ONE: Fe = Fe([1, 0, 0, 0, 0, 0, 0, 0]);

    /// `None` unless the limbs are below `p`.
    pub(crate) fn from_limbs(limbs: [u32; 8]) -> Option<Fe> {
        less_than(&limbs, &P).then_some(Fe(limbs))
    }

    /// Big-endian bytes; `None` for values `≥ p` (non-canonical encodings).
    pub(crate) fn from_be_bytes(bytes: &[u8; 32]) -> Option<Fe> {
        Fe::from_limbs(limbs_from_be(bytes))
    }

    #[cfg(test)]
    pub(crate) fn to_be_bytes(self) -> [u8; 32] {
        limbs_to_be(&self.0)
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0 == [0; 8]
    }

    #[inline]
    pub(crate) fn add(&self, other: &Fe) -> Fe {
        let (sum, carry) = add_limbs(&self.0, &other.0);
        // sum < 2p: one subtraction at most.
        if carry == 1 || at_least_p(&sum) {
            Fe(sub_limbs(&sum, &P).0)
        } else {
            Fe(sum)
        }
    }

    #[inline]
    pub(crate) fn sub(&self, other: &Fe) -> Fe {
        let (diff, borrow) = sub_limbs(&self.0, &other.0);
        if borrow == 1 {
            Fe(add_limbs(&diff, &P).0)
        } else {
            Fe(diff)
        }
    }

    #[inline]
    pub(crate) fn double(&self) -> Fe {
        self.add(self)
    }

    pub(crate) fn neg(&self) -> Fe {
        Fe::ZERO.sub(self)
    }

    // Not inlined: unrolled, a product and its reduction are ~2 KB of wasm, and the point
    // formulas use ~20 of them; a call costs little next to 64 multiply-accumulate steps.
    #[inline(never)]
    pub(crate) fn mul(&self, other: &Fe) -> Fe {
        reduce_wide(mul_wide(&self.0, &other.0))
    }

    #[inline(never)]
    pub(crate) fn square(&self) -> Fe {
        reduce_wide(square_wide(&self.0))
    }

    /// `self⁻¹`; `None` for zero. Only used when building point tables.
    pub(crate) fn invert(&self) -> Option<Fe> {
        safegcd::invert(&self.0, &P).map(Fe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::FieldElement;
    use sha2::{Digest as _, Sha256};

    fn reference(fe: &Fe) -> FieldElement {
        FieldElement::from_bytes(&fe.to_be_bytes().into()).expect("canonical")
    }

    fn ours(fe: &FieldElement) -> Fe {
        Fe::from_be_bytes(&fe.to_bytes().into()).expect("canonical")
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }

    const P_HEX: &str = "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff";

    /// Seeded values: edge cases first, then values dense near 0, near p and with long runs of
    /// ones/zeros (which stress carries), then uniformly random ones.
    fn samples(count: u64) -> Vec<Fe> {
        let p = FieldElement::ZERO - FieldElement::ONE; // p − 1
        let mut out = vec![
            Fe::ZERO,
            Fe::ONE,
            ours(&p),
            ours(&(p - FieldElement::ONE)),
            ours(&FieldElement::from_u64(2)),
            Fe::from_be_bytes(&hex32(
                "00000000ffffffffffffffffffffffff00000000000000000000000000000000",
            ))
            .expect("below p"),
            Fe::from_be_bytes(&hex32(
                "ffffffff00000000ffffffffffffffffffffffffffffffffffffffffffffffff",
            ))
            .expect("below p"),
        ];
        for i in 0..count {
            let mut bytes: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            match i % 4 {
                0 => bytes[..28].fill(0),
                1 => bytes[..28].copy_from_slice(&ours(&p).to_be_bytes()[..28]),
                2 => {
                    for (j, b) in bytes.iter_mut().enumerate() {
                        if (i as usize + j).is_multiple_of(3) {
                            *b = 0xFF;
                        }
                    }
                }
                _ => {}
            }
            if let Some(fe) = Fe::from_be_bytes(&bytes) {
                out.push(fe);
            }
        }
        out
    }

    #[test]
    fn every_operation_matches_the_p256_crate() {
        let values = samples(3000);
        assert!(values.len() > 2500);
        for (i, a) in values.iter().enumerate() {
            // Pair each value with a few others, including the edge values at the front.
            for b in [
                &values[i % 7],
                &values[(i * 7919 + 13) % values.len()],
                &values[values.len() - 1 - i],
                a,
            ] {
                let (ra, rb) = (reference(a), reference(b));
                assert_eq!(a.add(b), ours(&(ra + rb)), "{a:?} + {b:?}");
                assert_eq!(a.sub(b), ours(&(ra - rb)), "{a:?} − {b:?}");
                assert_eq!(a.mul(b), ours(&(ra * rb)), "{a:?} · {b:?}");
                assert_eq!(a == b, ra == rb);
            }
            let ra = reference(a);
            assert_eq!(a.square(), ours(&ra.square()), "{a:?}²");
            assert_eq!(a.double(), ours(&ra.double()), "2·{a:?}");
            assert_eq!(a.neg(), ours(&-ra), "−{a:?}");
            assert_eq!(a.is_zero(), bool::from(ra.is_zero()));
            assert_eq!(reference(a).to_bytes().as_slice(), a.to_be_bytes());
        }
        for a in values.iter().take(300) {
            let expected: Option<FieldElement> = reference(a).invert().into();
            assert_eq!(a.invert(), expected.map(|e| ours(&e)), "{a:?}⁻¹");
        }
    }

    #[test]
    fn decoding_accepts_exactly_the_values_below_p() {
        let p = hex32(P_HEX);
        assert_eq!(Fe::from_be_bytes(&p), None, "p");
        assert_eq!(Fe::from_be_bytes(&[0xFF; 32]), None, "2²⁵⁶ − 1");
        let mut p_minus_1 = p;
        p_minus_1[31] -= 1;
        let fe = Fe::from_be_bytes(&p_minus_1).expect("p − 1");
        assert_eq!(fe.to_be_bytes(), p_minus_1);
        assert_eq!(fe.add(&Fe::ONE), Fe::ZERO);
        let p_plus_1 = hex32("ffffffff00000001000000000000000000000001000000000000000000000000");
        assert_eq!(Fe::from_be_bytes(&p_plus_1), None, "p + 1");
        for i in 0..2000u64 {
            let mut bytes: [u8; 32] = Sha256::digest(i.to_be_bytes()).into();
            if i % 2 == 0 {
                // Around p: ffffffff 0000000{0,1,2} …
                bytes[..8].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, (i % 3) as u8]);
                if i % 4 == 0 {
                    bytes[8..24].fill(0);
                }
            }
            let expected: Option<FieldElement> = FieldElement::from_bytes(&bytes.into()).into();
            assert_eq!(
                Fe::from_be_bytes(&bytes).map(Fe::to_be_bytes),
                expected.map(|e| e.to_bytes().into())
            );
        }
    }
}
