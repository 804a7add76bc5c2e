//! RS256 (RSASSA-PKCS1-v1_5 with SHA-256, RFC 8017 section 8.2.2) verification with 32-bit limbs.
//!
//! Written for wasm32, where the `rsa` crate's 64-bit limbs and 128-bit products are emulated:
//! here every product is `u32 × u32 → u64`, which wasm does natively. Everything that depends only
//! on the key (Montgomery constants, the expected encoding's prefix) is computed once when the
//! JWKS is loaded, so a verification is `e`'s bit length in Montgomery multiplications (17 for
//! `e = 65537`), one short product for the hash, and one SHA-256. All inputs are public, so
//! nothing here needs to be constant time.
//!
//! The signature never enters Montgomery form: raised to `e` with Montgomery products as it is,
//! `s` gives `sᵉ·R^(1−e) mod n` (`R = 2^(32 · limbs)`), and that is compared with the expected
//! encoding scaled the same way, `EM·R^(1−e) mod n`. Both sides are fully reduced and `R` is
//! invertible modulo the odd `n`, so they are equal exactly when `sᵉ mod n = EM`. The usual
//! conversion (a Montgomery product with `R² mod n`, about 8 % of a 2048-bit verification) is
//! replaced by an 8-limb product with a per-key constant: `EM` is a per-key prefix plus the
//! 256-bit hash.

use sha2::{Digest as _, Sha256};

/// DER `DigestInfo` prefix for SHA-256 (RFC 8017 section 9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The low 32 bits of a `u64`.
const LO: u64 = 0xFFFF_FFFF;

/// Why a modulus/exponent pair is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaKeyError {
    /// The modulus is even (not an RSA modulus) or too short for a SHA-256 encoding.
    Modulus,
    /// The exponent is even or below 3.
    Exponent,
}

/// An RSA public key prepared for RS256 verification.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    /// Modulus, little-endian 32-bit limbs, no leading zero limb.
    n: Vec<u32>,
    /// `-n⁻¹ mod 2³²`.
    n0inv: u32,
    /// `2²⁵⁶·R^(1−e) mod n`: a hash `h` times this, reduced by `2²⁵⁶` (eight Montgomery steps),
    /// is `h·R^(1−e) mod n`.
    hash_factor: Vec<u32>,
    /// `P·R^(1−e) mod n`, where `P` is the expected encoding with the hash bytes zero.
    scaled_prefix: Vec<u32>,
    /// Public exponent.
    e: u32,
    /// Modulus length in bytes (`k` of RFC 8017).
    k: usize,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPublicKey")
            .field("bits", &self.bits())
            .field("e", &self.e)
            .finish_non_exhaustive()
    }
}

/// `0x00 0x01 0xFF… 0x00 DigestInfo`: the EMSA-PKCS1-v1_5 encoding for SHA-256 of a `k`-byte
/// modulus up to the hash (`k − 32` bytes; `k` is at least 62, checked by `RsaPublicKey::new`).
fn encoding_prefix(k: usize) -> Vec<u8> {
    let mut prefix = vec![0xFF; k.saturating_sub(32)];
    if let Some(first) = prefix.get_mut(..2) {
        first.copy_from_slice(&[0x00, 0x01]);
    }
    let info_at = k.saturating_sub(32 + SHA256_DIGEST_INFO.len());
    if let Some(tail) = prefix.get_mut(info_at.saturating_sub(1)..) {
        tail.fill(0);
        if let Some(info) = tail.get_mut(1..) {
            info.copy_from_slice(&SHA256_DIGEST_INFO);
        }
    }
    prefix
}

/// Big-endian bytes → little-endian limbs (exactly `ceil(len / 4)` limbs).
fn limbs_from_be(bytes: &[u8]) -> Vec<u32> {
    bytes
        .rchunks(4)
        .map(|c| c.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
        .collect()
}

/// `a >= b` for equal-length limb slices, `a_hi` being an extra top limb of `a`.
fn geq(a_hi: u32, a: &[u32], b: &[u32]) -> bool {
    if a_hi != 0 {
        return true;
    }
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

/// `a -= b` (equal lengths); returns the borrow.
fn sub_in_place(a: &mut [u32], b: &[u32]) -> bool {
    let mut borrow = false;
    for (x, y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(*y);
        let (d2, b2) = d1.overflowing_sub(u32::from(borrow));
        *x = d2;
        borrow = b1 || b2;
    }
    borrow
}

impl RsaPublicKey {
    /// Prepares a key from the big-endian modulus and the exponent (JWK `n`, `e`).
    pub fn new(n_be: &[u8], e: u32) -> Result<Self, RsaKeyError> {
        let start = n_be.iter().position(|b| *b != 0).unwrap_or(n_be.len());
        let n_be = n_be.get(start..).unwrap_or_default();
        let k = n_be.len();
        // 0x00 0x01, at least 8 bytes 0xFF, 0x00, DigestInfo, hash.
        if k < 11 + SHA256_DIGEST_INFO.len() + 32 {
            return Err(RsaKeyError::Modulus);
        }
        let n = limbs_from_be(n_be);
        let n0 = n.first().copied().unwrap_or(0);
        if n0 & 1 == 0 {
            return Err(RsaKeyError::Modulus);
        }
        if e < 3 || e & 1 == 0 {
            return Err(RsaKeyError::Exponent);
        }
        // Newton iteration: each step doubles the number of correct low bits (1 → 32).
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        let mut key = RsaPublicKey {
            n,
            n0inv: inv.wrapping_neg(),
            hash_factor: Vec::new(),
            scaled_prefix: Vec::new(),
            e,
            k,
        };
        key.scale_constants();
        Ok(key)
    }

    /// Sets `hash_factor` and `scaled_prefix`. The plain limbs `1` are the Montgomery form of
    /// `R⁻¹`; raised to `e − 1` with Montgomery products they give the Montgomery form of
    /// `R^(1−e)`, i.e. `R^(2−e)`, and a Montgomery product with a plain `x < n` multiplies `x` by
    /// `R^(1−e)`. `2²⁵⁶` and the prefix `P` are below `n` (`n` has `k` bytes, `P` starts with
    /// `0x00 0x01`).
    fn scale_constants(&mut self) {
        let s = self.n.len();
        let mut one = vec![0u32; s];
        if let Some(low) = one.first_mut() {
            *low = 1;
        }
        let power = self.power(&one, self.e - 1);
        let mut wide = vec![0u32; 2 * s];
        let mut two_256 = vec![0u32; s];
        if let Some(limb) = two_256.get_mut(8) {
            *limb = 1;
        }
        let mut hash_factor = vec![0u32; s];
        self.mont_mul(&power, &two_256, &mut hash_factor, &mut wide);
        let mut prefix = encoding_prefix(self.k);
        prefix.resize(self.k, 0);
        let mut prefix = limbs_from_be(&prefix);
        prefix.resize(s, 0);
        let mut scaled_prefix = vec![0u32; s];
        self.mont_mul(&power, &prefix, &mut scaled_prefix, &mut wide);
        self.hash_factor = hash_factor;
        self.scaled_prefix = scaled_prefix;
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        let top = self.n.last().copied().unwrap_or(0);
        self.n.len() * 32 - top.leading_zeros() as usize
    }

    /// RSASSA-PKCS1-v1_5-VERIFY with SHA-256: `true` only for a valid signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Some(scaled_power) = self.scaled_public_op(signature) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(message).into();
        scaled_power == self.scaled_encoding(&digest)
    }

    /// RSAVP1 scaled: `sᵉ·R^(1−e) mod n`; `None` unless `s` has `k` bytes and `s < n`.
    fn scaled_public_op(&self, signature: &[u8]) -> Option<Vec<u32>> {
        if signature.len() != self.k {
            return None;
        }
        let mut s = limbs_from_be(signature);
        s.resize(self.n.len(), 0);
        if geq(0, &s, &self.n) {
            return None;
        }
        Some(self.power(&s, self.e))
    }

    /// `x` raised to `exponent ≥ 1` with Montgomery products: the Montgomery form of `y^exponent`
    /// where `x` is that of `y` (`x = y·R mod n`), i.e. `x^exponent·R^(1−exponent) mod n`.
    fn power(&self, x: &[u32], exponent: u32) -> Vec<u32> {
        let s = self.n.len();
        let mut wide = vec![0u32; 2 * s];
        let mut acc = x.to_vec();
        let mut tmp = vec![0u32; s];
        let top = 31 - exponent.leading_zeros();
        for bit in (0..top).rev() {
            self.mont_sqr(&acc, &mut tmp, &mut wide);
            if (exponent >> bit) & 1 == 1 {
                self.mont_mul(&tmp, x, &mut acc, &mut wide);
            } else {
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        acc
    }

    /// The expected encoding `P ‖ digest` scaled like [`Self::scaled_public_op`]:
    /// `P·R^(1−e) + h·R^(1−e) mod n`, the second term `h·hash_factor·2⁻²⁵⁶ mod n`: eight rows of
    /// product and eight of Montgomery reduction, against the `limbs` rows of each that a full
    /// Montgomery product would take.
    fn scaled_encoding(&self, digest: &[u8; 32]) -> Vec<u32> {
        let n = self.n.as_slice();
        let s = n.len();
        let h = limbs_from_be(digest);
        // h·hash_factor: 8 + s words, one more for the reduction's last carry.
        let mut t = vec![0u32; s + 9];
        for (i, &hi) in h.iter().enumerate() {
            let hi = u64::from(hi);
            let mut c = 0u64;
            let Some((row, end)) = t.get_mut(i..).and_then(|w| w.split_at_mut_checked(s)) else {
                break;
            };
            for (tk, &fj) in row.iter_mut().zip(&self.hash_factor) {
                let v = u64::from(*tk) + hi * u64::from(fj) + c;
                *tk = v as u32;
                c = v >> 32;
            }
            if let Some(x) = end.first_mut() {
                *x = c as u32;
            }
        }
        // Divide by 2²⁵⁶ modulo n: zero the low eight words with multiples of n. The sum stays
        // below `2²⁵⁶·n + 2²⁵⁶·n`, so the result is below `2n`.
        for i in 0..8 {
            let Some((row, rest)) = t.get_mut(i..).and_then(|w| w.split_at_mut_checked(s)) else {
                break;
            };
            let m = u64::from(row.first().copied().unwrap_or(0).wrapping_mul(self.n0inv));
            let mut c = 0u64;
            for (tk, &nj) in row.iter_mut().zip(n) {
                let v = u64::from(*tk) + m * u64::from(nj) + c;
                *tk = v as u32;
                c = v >> 32;
            }
            for x in rest {
                if c == 0 {
                    break;
                }
                let v = u64::from(*x) + c;
                *x = v as u32;
                c = v >> 32;
            }
        }
        let Some((reduced, top)) = t.get_mut(8..).and_then(|w| w.split_at_mut_checked(s)) else {
            return Vec::new();
        };
        let top = top.first().copied().unwrap_or(0);
        if geq(top, reduced, n) {
            sub_in_place(reduced, n);
        }
        // Plus the scaled prefix: both below n, so one subtraction at most.
        let mut carry = false;
        for (x, &p) in reduced.iter_mut().zip(&self.scaled_prefix) {
            let (d1, c1) = x.overflowing_add(p);
            let (d2, c2) = d1.overflowing_add(u32::from(carry));
            *x = d2;
            carry = c1 || c2;
        }
        if geq(u32::from(carry), reduced, n) {
            sub_in_place(reduced, n);
        }
        t.truncate(8 + s);
        t.drain(..8);
        t
    }

    /// `out = a · b · R⁻¹ mod n` for `a, b < n`: the full `2·limbs` product, rows `i` and `i + 1`
    /// of `b` per pass over `t` (`t[i + j] += aⱼ·bᵢ + aⱼ₋₁·bᵢ₊₁`, one carry chain per row), then
    /// `redc`. `t` is scratch of `2 · limbs` words.
    #[inline(never)]
    fn mont_mul(&self, a: &[u32], b: &[u32], out: &mut [u32], t: &mut [u32]) {
        let s = self.n.len();
        t.fill(0);
        let mut i = 0;
        // Rows below `i` have reached `t[i + s − 1]` at most, so `t[i + s]` and `t[i + s + 1]`
        // are written, not added to.
        while i < s {
            let (Some(&bi), Some(dst)) = (b.get(i), t.get_mut(i..)) else {
                break;
            };
            let bi = u64::from(bi);
            let Some(&bi1) = b.get(i + 1) else {
                // Odd limb count: the last row alone.
                let mut c = 0u64;
                let (row, end) = dst.split_at_mut(s.min(dst.len()));
                for (tk, &aj) in row.iter_mut().zip(a) {
                    let v = u64::from(*tk) + u64::from(aj) * bi + c;
                    *tk = v as u32;
                    c = v >> 32;
                }
                if let Some(x) = end.first_mut() {
                    *x = c as u32;
                }
                break;
            };
            let bi1 = u64::from(bi1);
            let (row, end) = dst.split_at_mut(s.min(dst.len()));
            let mut c1 = 0u64;
            let mut c2 = 0u64;
            let mut prev = 0u64;
            for (tk, &aj) in row.iter_mut().zip(a) {
                let aj = u64::from(aj);
                let v = u64::from(*tk) + aj * bi + c1;
                c1 = v >> 32;
                let w = (v & 0xFFFF_FFFF) + prev * bi1 + c2;
                c2 = w >> 32;
                *tk = w as u32;
                prev = aj;
            }
            let w = c1 + prev * bi1 + c2;
            if let [lo, hi, ..] = end {
                *lo = w as u32;
                *hi = (w >> 32) as u32;
            }
            i += 2;
        }
        self.redc(t, out);
    }

    /// `out = a · b · R⁻¹ mod n` for `a, b < n`: coarsely integrated operand scanning (the
    /// product row and the reduction row share one pass per limb of `b`). `t` is scratch of
    /// `limbs + 1` words. The `mont_mul` of before the separate reduction, kept as the tests'
    /// reference.
    #[cfg(test)]
    fn mont_mul_cios(&self, a: &[u32], b: &[u32], out: &mut [u32], t: &mut [u32]) {
        let n = self.n.as_slice();
        let s = n.len();
        t.fill(0);
        let (Some(&a0), Some(&n0)) = (a.first(), n.first()) else {
            return;
        };
        for &bi in b {
            let bi = u64::from(bi);
            let t0 = t.first().copied().unwrap_or(0);
            let v = u64::from(t0) + u64::from(a0) * bi;
            let m = (v as u32).wrapping_mul(self.n0inv);
            let m64 = u64::from(m);
            // The low word of w is zero by the choice of m.
            let w = u64::from(v as u32) + u64::from(n0) * m64;
            let mut c1 = v >> 32;
            let mut c2 = w >> 32;
            let mut j = 1;
            while j < s {
                let (Some(&aj), Some(&nj), Some(&tj)) = (a.get(j), n.get(j), t.get(j)) else {
                    break;
                };
                let v = u64::from(tj) + u64::from(aj) * bi + c1;
                c1 = v >> 32;
                let w = u64::from(v as u32) + u64::from(nj) * m64 + c2;
                c2 = w >> 32;
                if let Some(dst) = t.get_mut(j - 1) {
                    *dst = w as u32;
                }
                j += 1;
            }
            let top = u64::from(t.get(s).copied().unwrap_or(0)) + c1 + c2;
            if let Some(dst) = t.get_mut(s - 1) {
                *dst = top as u32;
            }
            if let Some(dst) = t.get_mut(s) {
                *dst = (top >> 32) as u32;
            }
        }
        let hi = t.get(s).copied().unwrap_or(0);
        let low = t.get_mut(..s).unwrap_or_default();
        if geq(hi, low, n) {
            sub_in_place(low, n);
        }
        out.copy_from_slice(t.get(..s).unwrap_or_default());
    }
}

impl RsaPublicKey {
    /// `out = a² · R⁻¹ mod n` for `a < n`: the full `2·limbs` square first, each cross product
    /// `aᵢ·aⱼ` (`i < j`) computed once and the sum doubled, plus the diagonal `aᵢ²`, then a
    /// separate Montgomery reduction (`redc`). About `1.5·limbs²` limb products instead of
    /// `mont_mul`'s `2·limbs²`; the exponentiation is mostly squarings (16 of 17 for
    /// `e = 65537`). Both the product and the reduction handle up to four rows per pass over `t`,
    /// which cuts its loads and stores, what V8 pays for most. `t` is scratch of `2 · limbs`
    /// words. Not inlined: V8 tiers up per function, and the single caller runs once per
    /// verification.
    #[inline(never)]
    fn mont_sqr(&self, a: &[u32], out: &mut [u32], t: &mut [u32]) {
        let n = self.n.as_slice();
        let s = n.len();
        t.fill(0);
        // Cross products, rows `i` and `i + 1` together: `t[k] += aᵢ·a_(k−i) + aᵢ₊₁·a_(k−i−1)`,
        // one carry chain per row. Rows below `i` have reached `t[i + s − 1]` at most, so
        // `t[i + s]` and `t[i + s + 1]` are written, not added to.
        let mut i = 0;
        // Rows `i…i + 3` together while all of them reach past their first seven words:
        // `t[i + j] += aᵢ·aⱼ + aᵢ₊₁·aⱼ₋₁ + aᵢ₊₂·aⱼ₋₂ + aᵢ₊₃·aⱼ₋₃`, each term only where its column
        // is above its row (the first six words spelled out), one carry chain per row.
        while i + 7 < s {
            let (Some([a0, a1, a2, a3, a4, a5, a6, row @ ..]), Some(win)) =
                (a.get(i..), t.get_mut(2 * i + 1..i + s + 4))
            else {
                break;
            };
            let [q1, q2, q3, q4, q5, q6, body @ .., e0, e1, e2, e3] = win else {
                break;
            };
            let [a0, a1, a2, a3, a4, a5, a6] = [*a0, *a1, *a2, *a3, *a4, *a5, *a6].map(u64::from);
            let (mut c0, mut c1, mut c2, mut c3) = (0u64, 0u64, 0u64, 0u64);
            macro_rules! step4 {
                ($tk:expr, $aj:expr, $p1:expr, $p2:expr, $p3:expr) => {
                    let v = u64::from(*$tk) + a0 * $aj + c0;
                    c0 = v >> 32;
                    let w = (v & LO) + a1 * $p1 + c1;
                    c1 = w >> 32;
                    let x = (w & LO) + a2 * $p2 + c2;
                    c2 = x >> 32;
                    let y = (x & LO) + a3 * $p3 + c3;
                    c3 = y >> 32;
                    *$tk = y as u32;
                };
            }
            step4!(q1, a1, 0, 0, 0);
            step4!(q2, a2, 0, 0, 0);
            step4!(q3, a3, a2, 0, 0);
            step4!(q4, a4, a3, 0, 0);
            step4!(q5, a5, a4, a3, 0);
            step4!(q6, a6, a5, a4, 0);
            let (mut p1, mut p2, mut p3) = (a6, a5, a4);
            for (tk, &aj) in body.iter_mut().zip(row) {
                let aj = u64::from(aj);
                step4!(tk, aj, p1, p2, p3);
                p3 = p2;
                p2 = p1;
                p1 = aj;
            }
            // Past `a`'s top word: `t[i + s…i + s + 3]` are written here first.
            step4!(e0, 0, p1, p2, p3);
            step4!(e1, 0, 0, p1, p2);
            step4!(e2, 0, 0, 0, p1);
            *e3 = (c0 + c1 + c2 + c3) as u32;
            i += 4;
        }
        while i + 1 < s {
            let (Some(&ai), Some(&ai1), Some(row), Some(dst)) = (
                a.get(i),
                a.get(i + 1),
                a.get(i + 2..),
                t.get_mut(2 * i + 1..i + s + 2),
            ) else {
                break;
            };
            let (ai, ai1) = (u64::from(ai), u64::from(ai1));
            let Some((first, rest)) = dst.split_first_mut() else {
                break;
            };
            let v = u64::from(*first) + ai * ai1;
            *first = v as u32;
            let mut c1 = v >> 32;
            let mut c2 = 0u64;
            // `aᵢ₊₁` times the previous limb (none before `aᵢ₊₂`: `aᵢ₊₁²` is a diagonal term).
            let mut prev = 0u64;
            let (body, end) = rest.split_at_mut(rest.len().saturating_sub(2));
            for (tk, &aj) in body.iter_mut().zip(row) {
                let aj = u64::from(aj);
                let v = u64::from(*tk) + ai * aj + c1;
                c1 = v >> 32;
                let w = (v & LO) + ai1 * prev + c2;
                c2 = w >> 32;
                *tk = w as u32;
                prev = aj;
            }
            let w = c1 + ai1 * prev + c2;
            if let [lo, hi] = end {
                *lo = w as u32;
                *hi = (w >> 32) as u32;
            }
            i += 2;
        }
        // Double the cross products and add the diagonal squares, two words per limb of `a`.
        let mut shift_in = 0u32;
        let mut c = 0u64;
        for (pair, &ai) in t.chunks_exact_mut(2).zip(a) {
            let [lo, hi] = pair else {
                break;
            };
            let sq = u64::from(ai) * u64::from(ai);
            let dlo = (*lo << 1) | shift_in;
            let dhi = (*hi << 1) | (*lo >> 31);
            shift_in = *hi >> 31;
            let v = u64::from(dlo) + (sq & LO) + c;
            let w = u64::from(dhi) + (sq >> 32) + (v >> 32);
            *lo = v as u32;
            *hi = w as u32;
            c = w >> 32;
        }
        self.redc(t, out);
    }

    /// `out = t · R⁻¹ mod n` for a `2·limbs`-word `t < n·R`; `t` is overwritten. Not inlined
    /// (see `mont_sqr`).
    #[inline(never)]
    fn redc(&self, t: &mut [u32], out: &mut [u32]) {
        let n = self.n.as_slice();
        let s = n.len();
        // `top` is the carry into `t[i + s]` left by the previous pass; at the end it is the bit
        // above `t[2s − 1]`.
        let n0inv = self.n0inv;
        let (Some(&n0), Some(&n1), Some(n_rest)) = (n.first(), n.get(1), n.get(2..)) else {
            return;
        };
        let (n0, n1) = (u64::from(n0), u64::from(n1));
        let (Some(&n2), Some(&n3), Some(n_rest4)) = (n.get(2), n.get(3), n.get(4..)) else {
            return;
        };
        let (n2, n3) = (u64::from(n2), u64::from(n3));
        let mut top = 0u64;
        let mut i = 0;
        // Four words per pass: `m₀…m₃` zero `t[i]…t[i + 3]` in turn (each computed from the word
        // as the rows before it left it), then one pass adds `m₀·nⱼ + m₁·nⱼ₋₁ + m₂·nⱼ₋₂ +
        // m₃·nⱼ₋₃` at `t[i + j]`, one carry chain per row.
        while i + 3 < s {
            let Some(win) = t.get_mut(i..i + s + 4) else {
                break;
            };
            let [t0, t1, t2, t3, body @ .., e0, e1, e2, e3] = win else {
                break;
            };
            let m0 = u64::from(t0.wrapping_mul(n0inv));
            let mut c0 = (u64::from(*t0) + m0 * n0) >> 32;
            let v = u64::from(*t1) + m0 * n1 + c0;
            c0 = v >> 32;
            let m1 = u64::from((v as u32).wrapping_mul(n0inv));
            let mut c1 = ((v & LO) + m1 * n0) >> 32;
            let v = u64::from(*t2) + m0 * n2 + c0;
            c0 = v >> 32;
            let w = (v & LO) + m1 * n1 + c1;
            c1 = w >> 32;
            let m2 = u64::from((w as u32).wrapping_mul(n0inv));
            let mut c2 = ((w & LO) + m2 * n0) >> 32;
            let v = u64::from(*t3) + m0 * n3 + c0;
            c0 = v >> 32;
            let w = (v & LO) + m1 * n2 + c1;
            c1 = w >> 32;
            let x = (w & LO) + m2 * n1 + c2;
            c2 = x >> 32;
            let m3 = u64::from((x as u32).wrapping_mul(n0inv));
            let mut c3 = ((x & LO) + m3 * n0) >> 32;
            // `nⱼ₋₁`, `nⱼ₋₂`, `nⱼ₋₃`.
            let (mut p1, mut p2, mut p3) = (n3, n2, n1);
            macro_rules! step4 {
                ($tk:expr, $nj:expr) => {
                    let nj = u64::from($nj);
                    let v = u64::from(*$tk) + m0 * nj + c0;
                    c0 = v >> 32;
                    let w = (v & LO) + m1 * p1 + c1;
                    c1 = w >> 32;
                    let x = (w & LO) + m2 * p2 + c2;
                    c2 = x >> 32;
                    let y = (x & LO) + m3 * p3 + c3;
                    c3 = y >> 32;
                    *$tk = y as u32;
                    p3 = p2;
                    p2 = p1;
                    p1 = nj;
                };
            }
            let mut body2 = body.chunks_exact_mut(2);
            let mut n2s = n_rest4.chunks_exact(2);
            for (tt, nn) in (&mut body2).zip(&mut n2s) {
                let ([ta, tb], &[na, nb]) = (tt, nn) else {
                    break;
                };
                step4!(ta, na);
                step4!(tb, nb);
            }
            for (tk, &nj) in body2.into_remainder().iter_mut().zip(n2s.remainder()) {
                step4!(tk, nj);
            }
            // Rows 1…3 run past `n`'s top word (`nⱼ = 0` for `j ≥ s`); the carry left by the
            // previous pass enters row 0's chain, which has no product left.
            c0 += top;
            step4!(e0, 0u32);
            step4!(e1, 0u32);
            step4!(e2, 0u32);
            let _ = (p1, p2, p3);
            let u = u64::from(*e3) + c0 + c1 + c2 + c3;
            *e3 = u as u32;
            top = u >> 32;
            i += 4;
        }
        while i + 1 < s {
            let Some(win) = t.get_mut(i..i + s + 2) else {
                break;
            };
            let [t0, t1, body @ .., ts, ts1] = win else {
                break;
            };
            let m0 = u64::from(t0.wrapping_mul(n0inv));
            let v = u64::from(*t0) + m0 * n0;
            let v = u64::from(*t1) + m0 * n1 + (v >> 32);
            let mut c1 = v >> 32;
            let x = v as u32;
            let m1 = u64::from(x.wrapping_mul(n0inv));
            let mut c2 = (u64::from(x) + m1 * n0) >> 32;
            let mut prev = n1;
            for (tk, &nj) in body.iter_mut().zip(n_rest) {
                let nj = u64::from(nj);
                let v = u64::from(*tk) + m0 * nj + c1;
                c1 = v >> 32;
                let w = (v & LO) + m1 * prev + c2;
                c2 = w >> 32;
                *tk = w as u32;
                prev = nj;
            }
            let v = u64::from(*ts) + c1 + top;
            let w = (v & LO) + m1 * prev + c2;
            *ts = w as u32;
            let u = u64::from(*ts1) + (v >> 32) + (w >> 32);
            *ts1 = u as u32;
            top = u >> 32;
            i += 2;
        }
        if i < s {
            // Odd limb count: the last word alone.
            if let Some((row, rest)) = t.get_mut(i..).and_then(|w| w.split_at_mut_checked(s)) {
                let m = u64::from(row.first().copied().unwrap_or(0).wrapping_mul(n0inv));
                let mut c = 0u64;
                for (tj, &nj) in row.iter_mut().zip(n) {
                    let v = u64::from(*tj) + u64::from(nj) * m + c;
                    *tj = v as u32;
                    c = v >> 32;
                }
                if let Some(x) = rest.first_mut() {
                    let v = u64::from(*x) + c + top;
                    *x = v as u32;
                    top = v >> 32;
                }
            }
        }
        let high = t.get_mut(s..).unwrap_or_default();
        if geq(top as u32, high, n) {
            sub_in_place(high, n);
        }
        out.copy_from_slice(t.get(s..).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::BigUint;
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};

    /// Deterministic test randomness (SHA-256 in counter mode).
    struct Rng(u64);
    impl Rng {
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            let mut out = Vec::new();
            while out.len() < len {
                self.0 += 1;
                out.extend_from_slice(&Sha256::digest(self.0.to_be_bytes()));
            }
            out.truncate(len);
            out
        }
    }

    fn test_key() -> rsa::RsaPrivateKey {
        rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("testdata/rsa2048-test-key.pem"))
            .expect("test pem")
    }

    /// Undoes the scaling of `scaled_public_op` and `scaled_encoding`: `x·R^(e−1) mod n`.
    fn unscaled(key: &RsaPublicKey, x: &[u32]) -> BigUint {
        let n = BigUint::from_bytes_be(&be_from_limbs(&key.n));
        let x = BigUint::from_bytes_be(&be_from_limbs(x));
        assert!(x < n, "not fully reduced");
        let r = BigUint::from(1u8) << (32 * key.n.len());
        (x * r.modpow(&BigUint::from(key.e - 1), &n)) % n
    }

    #[test]
    fn modular_exponentiation_matches_num_bigint_for_many_sizes_and_exponents() {
        let mut rng = Rng(1);
        for bytes in [62usize, 64, 100, 255, 256, 257, 384, 512, 1024] {
            for e in [3u32, 17, 65537, 0xFFFF_FFFF, 0x8000_0001] {
                let mut n_be = rng.bytes(bytes);
                n_be[0] |= 0x80;
                n_be[bytes - 1] |= 1;
                let key = RsaPublicKey::new(&n_be, e).expect("odd modulus");
                let n = BigUint::from_bytes_be(&n_be);
                let power = |s_be: &[u8]| {
                    let scaled = key.scaled_public_op(s_be).expect("s < n");
                    unscaled(&key, &scaled)
                };
                for _ in 0..3 {
                    let mut s_be = rng.bytes(bytes);
                    s_be[0] &= 0x7F;
                    let s = BigUint::from_bytes_be(&s_be);
                    let expected = s.modpow(&BigUint::from(e), &n);
                    assert_eq!(power(&s_be), expected, "{bytes} bytes, e={e}");
                }
                // Edge values of s: 0, 1, n − 1.
                let zero = vec![0u8; bytes];
                assert_eq!(power(&zero), BigUint::from(0u8));
                let mut one = zero.clone();
                one[bytes - 1] = 1;
                assert_eq!(power(&one), BigUint::from(1u8));
                let mut n_minus_1 = n_be.clone();
                n_minus_1[bytes - 1] &= 0xFE;
                assert_eq!(power(&n_minus_1), &n - 1u8, "(n − 1)^e = −1 for odd e");
                // The expected encoding, scaled: prefix and hash, including all-zero and
                // all-ones hashes.
                for digest in [[0u8; 32], [0xFF; 32], rng.bytes(32).try_into().expect("32")] {
                    let mut em = encoding_prefix(key.k);
                    em.extend_from_slice(&digest);
                    assert_eq!(
                        unscaled(&key, &key.scaled_encoding(&digest)),
                        BigUint::from_bytes_be(&em),
                        "{bytes} bytes, e={e}"
                    );
                }
            }
        }
    }

    fn be_from_limbs(limbs: &[u32]) -> Vec<u8> {
        limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect()
    }

    /// Moduli of `limbs` limbs: random with the given top limb (odd), and all ones.
    fn test_moduli(rng: &mut Rng, limbs: usize) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        for top in [
            0x8000_0000u32,
            0xFFFF_FFFF,
            0xC000_0001,
            0x0000_0001,
            0x0001_0000,
        ] {
            let mut n = limbs_from_be(&rng.bytes(4 * limbs));
            n[0] |= 1;
            n[limbs - 1] = top;
            out.push(n);
        }
        // Top limb 0x8000_0000, all others zero except the low bit: n = 2^(32·limbs − 1) + 1.
        let mut sparse = vec![0u32; limbs];
        sparse[0] = 1;
        sparse[limbs - 1] = 0x8000_0000;
        out.push(sparse);
        out.push(vec![0xFFFF_FFFF; limbs]);
        out
    }

    /// Values below `n` that stress carries: 0, 1, 2, n − 1, n − 2, all-ones limbs under the
    /// top one, alternating all-ones and zero limbs, single set bits, random.
    fn test_values(rng: &mut Rng, n: &[u32]) -> Vec<Vec<u32>> {
        let s = n.len();
        let nb = BigUint::from_bytes_be(&be_from_limbs(n));
        let from_big = |x: &BigUint| {
            let mut v = x.to_bytes_be();
            while v.len() < 4 * s {
                v.insert(0, 0);
            }
            limbs_from_be(&v)
        };
        let mut out = Vec::new();
        for small in [0u32, 1, 2, 0xFFFF_FFFF] {
            let mut v = vec![0u32; s];
            v[0] = small;
            out.push(v);
        }
        for d in [1u32, 2, 3] {
            out.push(from_big(&(&nb - BigUint::from(d))));
        }
        let mut ones = vec![0xFFFF_FFFF; s];
        ones[s - 1] = n[s - 1] - 1;
        out.push(ones.clone());
        ones[s - 1] = n[s - 1] >> 1;
        out.push(ones);
        let mut alt: Vec<u32> = (0..s)
            .map(|i| if i % 2 == 0 { 0xFFFF_FFFF } else { 0 })
            .collect();
        alt[s - 1] = 0;
        out.push(alt.clone());
        alt.rotate_left(1);
        alt[s - 1] = 0;
        out.push(alt);
        for bit in [31usize, 32, 32 * s / 2 + 7, 32 * s - 40] {
            let mut v = vec![0u32; s];
            v[bit / 32] = 1 << (bit % 32);
            out.push(v);
        }
        for _ in 0..24 {
            let r = BigUint::from_bytes_be(&rng.bytes(4 * s + 8)) % &nb;
            out.push(from_big(&r));
        }
        out
    }

    #[test]
    fn montgomery_square_and_product_match_cios_and_num_bigint() {
        let mut rng = Rng(3);
        let mut checked = 0;
        for limbs in [
            16usize, 17, 18, 19, 31, 32, 33, 47, 48, 63, 64, 65, 95, 96, 97, 127, 128,
        ] {
            for n in test_moduli(&mut rng, limbs) {
                let Ok(key) = RsaPublicKey::new(&be_from_limbs(&n), 65537) else {
                    // 16 limbs with a top limb of 1: 61 bytes, too short for RS256.
                    assert_eq!((limbs, n[limbs - 1]), (16, 1));
                    continue;
                };
                assert_eq!(key.n, n);
                let nb = BigUint::from_bytes_be(&be_from_limbs(&n));
                let r = BigUint::from(1u8) << (32 * limbs);
                let mut scratch = vec![0u32; limbs + 1];
                let mut wide = vec![0xA5A5_A5A5u32; 2 * limbs];
                let values = test_values(&mut rng, &n);
                // Each value squared, and times the value 7 places further on (wrapping).
                for (i, a) in values.iter().enumerate() {
                    let b = &values[(i + 7) % values.len()];
                    let mut sq = vec![0u32; limbs];
                    let mut cios = vec![0u32; limbs];
                    key.mont_sqr(a, &mut sq, &mut wide);
                    key.mont_mul_cios(a, a, &mut cios, &mut scratch);
                    assert_eq!(sq, cios, "{limbs} limbs, n top {:#x}", n[limbs - 1]);
                    // out · R ≡ a² (mod n), and out < n.
                    let ab = BigUint::from_bytes_be(&be_from_limbs(a));
                    let out = BigUint::from_bytes_be(&be_from_limbs(&sq));
                    assert!(out < nb);
                    assert_eq!((&out * &r) % &nb, (&ab * &ab) % &nb, "{limbs} limbs");
                    let mut prod = vec![0u32; limbs];
                    key.mont_mul(a, b, &mut prod, &mut wide);
                    key.mont_mul_cios(a, b, &mut cios, &mut scratch);
                    assert_eq!(prod, cios, "{limbs} limbs, n top {:#x}", n[limbs - 1]);
                    let bb = BigUint::from_bytes_be(&be_from_limbs(b));
                    let out = BigUint::from_bytes_be(&be_from_limbs(&prod));
                    assert!(out < nb);
                    assert_eq!((&out * &r) % &nb, (&ab * &bb) % &nb, "{limbs} limbs");
                    checked += 1;
                }
            }
        }
        assert!(checked > 4000, "{checked}");
    }

    #[test]
    fn accepts_what_the_rsa_crate_signs_and_rejects_every_mutation() {
        let sk = test_key();
        let pk = sk.to_public_key();
        let key = RsaPublicKey::new(&pk.n().to_bytes_be(), 65537).expect("key");
        assert_eq!(key.bits(), 2048);
        let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(sk);
        let mut rng = Rng(7);
        for i in 0..40usize {
            let msg = rng.bytes(i * 7);
            let sig = signer.sign(&msg).to_vec();
            assert!(key.verify(&msg, &sig), "message {i}");
            let mut other = msg.clone();
            other.push(b'x');
            assert!(!key.verify(&other, &sig), "other message {i}");
            for flip in [0usize, 1, 100, 255] {
                let mut bad = sig.clone();
                bad[flip] ^= 1 << (i % 8);
                assert!(!key.verify(&msg, &bad), "flipped byte {flip} of {i}");
            }
        }
    }

    #[test]
    fn rejects_wrong_lengths_and_out_of_range_signatures() {
        let sk = test_key();
        let n = sk.n().to_bytes_be();
        let key = RsaPublicKey::new(&n, 65537).expect("key");
        let sig = rsa::pkcs1v15::SigningKey::<Sha256>::new(sk)
            .sign(b"m")
            .to_vec();
        assert!(key.verify(b"m", &sig));
        let mut longer = vec![0u8];
        longer.extend_from_slice(&sig);
        assert!(!key.verify(b"m", &longer), "leading zero byte added");
        assert!(!key.verify(b"m", &sig[1..]), "one byte short");
        assert!(!key.verify(b"m", &[]));
        assert!(!key.verify(b"m", &n), "s = n");
        assert!(!key.verify(b"m", &[0xFF; 256]), "s > n");
        assert!(!key.verify(b"m", &[0; 256]), "s = 0");
    }

    #[test]
    fn rejects_encodings_other_than_pkcs1_v1_5_sha256() {
        // Raw RSA signatures (s = em^d) of near-miss encodings must all fail.
        let sk = test_key();
        let n = sk.n().to_bytes_be();
        let key = RsaPublicKey::new(&n, 65537).expect("key");
        let hash = Sha256::digest(b"m");
        let good_em = {
            let mut em = encoding_prefix(key.k);
            em.extend_from_slice(&hash);
            em
        };
        let raw_sign = |em: &[u8]| {
            let s = BigUint::from_bytes_be(em).modpow(sk.d(), sk.n());
            let mut b = s.to_bytes_be();
            while b.len() < 256 {
                b.insert(0, 0);
            }
            b
        };
        assert!(
            key.verify(b"m", &raw_sign(&good_em)),
            "the encoding is right"
        );
        // Leading byte, block type, padding, separator, DigestInfo, hash.
        for (at, flip) in [
            (0usize, 0x01u8),
            (1, 0x03),
            (5, 0x01),
            (201, 0xFE),
            (204, 0x01),
            (205, 0x30),
            (220, 0x01),
            (255, 0x80),
        ] {
            let mut em = good_em.clone();
            em[at] ^= flip;
            assert!(!key.verify(b"m", &raw_sign(&em)), "byte {at} ^ {flip:#x}");
        }
    }

    #[test]
    fn rejects_unusable_keys() {
        assert_eq!(
            RsaPublicKey::new(&[0xFF; 60], 65537),
            Err(RsaKeyError::Modulus)
        );
        let mut even = vec![0xC3; 256];
        even[255] = 0x02;
        assert_eq!(RsaPublicKey::new(&even, 65537), Err(RsaKeyError::Modulus));
        let odd = vec![0xC3; 256];
        assert_eq!(RsaPublicKey::new(&odd, 1), Err(RsaKeyError::Exponent));
        assert_eq!(RsaPublicKey::new(&odd, 65536), Err(RsaKeyError::Exponent));
        let mut padded = vec![0, 0];
        padded.extend_from_slice(&odd);
        assert_eq!(
            RsaPublicKey::new(&padded, 3).map(|k| k.bits()),
            Ok(2048),
            "leading zero bytes of n are ignored"
        );
    }
}
