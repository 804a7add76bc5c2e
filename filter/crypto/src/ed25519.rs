//! EdDSA (Ed25519, RFC 8032) verification tuned for wasm32, with the acceptance rules of
//! `ed25519-dalek`'s `verify_strict`.
//!
//! `R' = s·B − k·A` is one interleaved variable-time wNAF pass, like [`crate::es256`]'s: each
//! scalar is split into 16 chunks of 16 bits, and chunk `k` is multiplied with a table of
//! precomputed odd multiples of `2^(16k)·B` (shared, built once per VM) or `2^(16k)·(−A)`
//! (built when the key is loaded), so the pass has 16 doublings instead of ~253. Points are in
//! extended twisted Edwards coordinates, whose addition law is complete on edwards25519 (no
//! exceptional cases); table entries are affine "Niels" triples `(y + x, y − x, 2d·x·y)`, added
//! with 7 field products. `ed25519-dalek` instead runs a width-5 wNAF over all 253 bits,
//! decompresses `R` and compresses `R'` (two field exponentiations); here `R'` is compressed
//! and compared with the signature's `R` bytes, one exponentiation. All inputs are public.
//!
//! Acceptance, the same as `verify_strict`: `s < ℓ` (canonical), `A` not of small order (checked
//! when the key is loaded), `k = SHA-512(R ‖ A ‖ M) mod ℓ` over the bytes as given, and the
//! canonical encoding of `R' = s·B − k·A` equal to the signature's `R`, with `R'` not of small
//! order. Equal encodings mean `R` decodes to `R'`, so this is `verify_strict`'s "`R` not of
//! small order" too, and a non-canonical `R` never matches.

use std::sync::OnceLock;

use curve25519_dalek::Scalar as DalekScalar;
use sha2::{Digest as _, Sha512};

use crate::field25519::{D, Fe25519};
use crate::wnaf::wnaf;

/// The canonical encodings of the eight points of small order (the identity, the point of order
/// 2, two of order 4 and four of order 8). `R'` encodes to one of them exactly when it is of
/// small order, so once its encoding is known this replaces three doublings.
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = [
    [
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ],
    [
        0xC7, 0x17, 0x6A, 0x70, 0x3D, 0x4D, 0xD8, 0x4F, 0xBA, 0x3C, 0x0B, 0x76, 0x0D, 0x10, 0x67,
        0x0F, 0x2A, 0x20, 0x53, 0xFA, 0x2C, 0x39, 0xCC, 0xC6, 0x4E, 0xC7, 0xFD, 0x77, 0x92, 0xAC,
        0x03, 0x7A,
    ],
    [
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x80,
    ],
    [
        0x26, 0xE8, 0x95, 0x8F, 0xC2, 0xB2, 0x27, 0xB0, 0x45, 0xC3, 0xF4, 0x89, 0xF2, 0xEF, 0x98,
        0xF0, 0xD5, 0xDF, 0xAC, 0x05, 0xD3, 0xC6, 0x33, 0x39, 0xB1, 0x38, 0x02, 0x88, 0x6D, 0x53,
        0xFC, 0x05,
    ],
    [
        0xEC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0x7F,
    ],
    [
        0x26, 0xE8, 0x95, 0x8F, 0xC2, 0xB2, 0x27, 0xB0, 0x45, 0xC3, 0xF4, 0x89, 0xF2, 0xEF, 0x98,
        0xF0, 0xD5, 0xDF, 0xAC, 0x05, 0xD3, 0xC6, 0x33, 0x39, 0xB1, 0x38, 0x02, 0x88, 0x6D, 0x53,
        0xFC, 0x85,
    ],
    [
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ],
    [
        0xC7, 0x17, 0x6A, 0x70, 0x3D, 0x4D, 0xD8, 0x4F, 0xBA, 0x3C, 0x0B, 0x76, 0x0D, 0x10, 0x67,
        0x0F, 0x2A, 0x20, 0x53, 0xFA, 0x2C, 0x39, 0xCC, 0xC6, 0x4E, 0xC7, 0xFD, 0x77, 0x92, 0xAC,
        0x03, 0xFA,
    ],
];

/// Chunking as in [`crate::es256`]: 16 chunks of 16 bits.
const CHUNKS: usize = 16;
const CHUNK_BITS: usize = 256 / CHUNKS;
/// wNAF width for the per-key tables of `−A`: 16 tables × 32 odd multiples, 48 KB per key,
/// built when the key is loaded (~0.28 ms in V8). Width 5 (12 KB, ~0.12 ms) made a verification
/// ~7 % slower on distinct signatures (`path-bench`: ~32.5 against ~30 µs per miss).
const W_KEY: u32 = 7;
/// wNAF width for the shared tables of `B`: 16 tables × 64 odd multiples, 96 KB per VM.
const W_BASE: u32 = 8;

/// A point in extended coordinates: `x = X/Z`, `y = Y/Z`, `x·y = T/Z`.
#[derive(Clone, Copy)]
struct Extended {
    x: Fe25519,
    y: Fe25519,
    z: Fe25519,
    t: Fe25519,
}

/// An affine point prepared for addition: `(y + x, y − x, 2d·x·y)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Niels {
    y_plus_x: [u32; 8],
    y_minus_x: [u32; 8],
    xy2d: [u32; 8],
}

/// The sum of a point and a table entry before its last four products: `(X:Z, Y:T)` in the
/// "completed" form of the addition and doubling formulas.
struct Completed {
    x: Fe25519,
    y: Fe25519,
    z: Fe25519,
    t: Fe25519,
}

/// A point in projective coordinates `(X : Y : Z)`, without `T`: what a doubling and an
/// encoding read. A sum or a double converts to it with three products instead of four, so the
/// pass computes `T` only before an addition.
#[derive(Clone, Copy)]
struct Projective {
    x: Fe25519,
    y: Fe25519,
    z: Fe25519,
}

impl Completed {
    /// The identity, `(0 : 1)` with `Z = T = 1`.
    const IDENTITY: Completed = Completed {
        x: Fe25519::ZERO,
        y: Fe25519::ONE,
        z: Fe25519::ONE,
        t: Fe25519::ONE,
    };

    fn to_projective(&self) -> Projective {
        Projective {
            x: self.x.mul(&self.t),
            y: self.y.mul(&self.z),
            z: self.z.mul(&self.t),
        }
    }

    fn to_extended(&self) -> Extended {
        Extended {
            x: self.x.mul(&self.t),
            y: self.y.mul(&self.z),
            z: self.z.mul(&self.t),
            t: self.x.mul(&self.y),
        }
    }
}

impl Extended {
    #[cfg(test)]
    const IDENTITY: Extended = Extended {
        x: Fe25519::ZERO,
        y: Fe25519::ONE,
        z: Fe25519::ONE,
        t: Fe25519::ZERO,
    };

    fn from_affine(x: Fe25519, y: Fe25519) -> Self {
        Extended {
            x,
            y,
            z: Fe25519::ONE,
            t: x.mul(&y),
        }
    }

    fn projective(&self) -> Projective {
        Projective {
            x: self.x,
            y: self.y,
            z: self.z,
        }
    }

    fn double(&self) -> Self {
        self.projective().double().to_extended()
    }

    fn add_niels(&self, q: &Niels, negate: bool) -> Self {
        self.add_niels_completed(q, negate).to_extended()
    }

    /// `P + Q` (`negate`: `P − Q`) for a table entry `Q` ("madd-2008-hwcd-3" with `a = −1`):
    /// 3 products here, 3 or 4 more for the conversion the next step needs.
    fn add_niels_completed(&self, q: &Niels, negate: bool) -> Completed {
        let (with_plus, with_minus) = if negate {
            (&q.y_minus_x, &q.y_plus_x)
        } else {
            (&q.y_plus_x, &q.y_minus_x)
        };
        let a = self.y.add(&self.x).mul(&Fe25519::from_limbs(*with_plus));
        let b = self.y.sub(&self.x).mul(&Fe25519::from_limbs(*with_minus));
        let c = Fe25519::from_limbs(q.xy2d).mul(&self.t);
        let z2 = self.z.double();
        let (z_plus, z_minus) = if negate {
            (z2.sub(&c), z2.add(&c))
        } else {
            (z2.add(&c), z2.sub(&c))
        };
        Completed {
            x: a.sub(&b),
            y: a.add(&b),
            z: z_plus,
            t: z_minus,
        }
    }

    fn is_small_order(&self) -> bool {
        self.projective().is_small_order()
    }

    #[cfg(test)]
    fn compress(&self) -> [u8; 32] {
        self.projective().compress()
    }

    /// Decodes a point as `curve25519-dalek` does: `y` taken mod `p`, `None` when no `x` fits the
    /// curve equation, the sign bit applied to the square root found.
    fn decompress(bytes: &[u8; 32]) -> Option<Self> {
        let y = Fe25519::from_le_bytes_255(bytes);
        let yy = y.square();
        // −x² + y² = 1 + d·x²·y²  ⇔  x² = (y² − 1)/(d·y² + 1)
        let u = yy.sub(&Fe25519::ONE);
        let v = D.mul(&yy).add(&Fe25519::ONE);
        let mut x = Fe25519::sqrt_ratio(&u, &v)?;
        let sign = bytes.last().is_some_and(|b| b >> 7 == 1);
        if x.is_odd() != sign {
            x = x.neg();
        }
        Some(Extended::from_affine(x, y))
    }

    fn neg(&self) -> Self {
        Extended {
            x: self.x.neg(),
            y: self.y,
            z: self.z,
            t: self.t.neg(),
        }
    }
}

impl Projective {
    /// `2P` ("dbl-2008-hwcd" with `a = −1`): 4 squarings here, 3 or 4 products for the
    /// conversion the next step needs. `T` is not read.
    fn double(&self) -> Completed {
        let xx = self.x.square();
        let yy = self.y.square();
        let zz2 = self.z.square().double();
        let xy2 = self.x.add(&self.y).square().sub(&xx).sub(&yy);
        let sum = yy.add(&xx);
        let diff = yy.sub(&xx);
        Completed {
            x: xy2,
            y: sum,
            z: diff,
            t: zz2.sub(&diff),
        }
    }

    /// `[8]P` is the identity, i.e. `P` is of small order (edwards25519 has no point of order
    /// 16, so `X = 0` after three doublings means the identity).
    fn is_small_order(&self) -> bool {
        self.double()
            .to_projective()
            .double()
            .to_projective()
            .double()
            .to_projective()
            .x
            .is_zero()
    }

    /// The RFC 8032 encoding: `y` little-endian, the parity of `x` in the top bit.
    fn compress(&self) -> [u8; 32] {
        let z_inv = self.z.invert();
        let x = self.x.mul(&z_inv);
        let mut out = self.y.mul(&z_inv).to_le_bytes();
        if let Some(last) = out.last_mut() {
            *last |= u8::from(x.is_odd()) << 7;
        }
        out
    }
}

/// Niels forms of points, with one field inversion for all of them (Montgomery's trick, as in
/// [`crate::es256`]).
fn batch_to_niels(points: &[Extended]) -> Vec<Niels> {
    let mut before = Vec::with_capacity(points.len());
    let mut product = Fe25519::ONE;
    for point in points {
        before.push(product);
        product = product.mul(&point.z);
    }
    // Extended points never have Z = 0, so the product is invertible.
    let mut inverse = product.invert();
    let d2 = D.double();
    let mut out = Vec::with_capacity(points.len());
    for (point, prefix) in points.iter().zip(before).rev() {
        let z_inv = inverse.mul(&prefix);
        inverse = inverse.mul(&point.z);
        let x = point.x.mul(&z_inv);
        let y = point.y.mul(&z_inv);
        out.push(Niels {
            y_plus_x: y.add(&x).canonical(),
            y_minus_x: y.sub(&x).canonical(),
            xy2d: x.mul(&y).mul(&d2).canonical(),
        });
    }
    out.reverse();
    out
}

/// For `k = 0..CHUNKS`, the odd multiples `Pₖ, 3Pₖ, …, (2^(w−1) − 1)Pₖ` of `Pₖ = 2^(16k)·P`,
/// concatenated (`2^(w−2)` entries per chunk).
fn split_tables(p: &Extended, w: u32) -> Vec<Niels> {
    let count = 1usize << (w - 2);
    let mut bases = Vec::with_capacity(CHUNKS);
    let mut twice = Vec::with_capacity(CHUNKS);
    let mut current = *p;
    for k in 0..CHUNKS {
        let doubled = current.double();
        bases.push(current);
        twice.push(doubled);
        if k + 1 < CHUNKS {
            current = doubled;
            for _ in 1..CHUNK_BITS {
                current = current.double();
            }
        }
    }
    let twice = batch_to_niels(&twice);
    let mut points = Vec::with_capacity(count * CHUNKS);
    for (base, twice) in bases.iter().zip(&twice) {
        let mut acc = *base;
        for _ in 0..count {
            points.push(acc);
            acc = acc.add_niels(twice, false);
        }
    }
    batch_to_niels(&points)
}

/// The tables of odd multiples of `2^(16k)·B`, built once per VM on first use.
fn base_table() -> Option<&'static [Niels]> {
    static TABLE: OnceLock<Option<Vec<Niels>>> = OnceLock::new();
    TABLE.get_or_init(build_base_table).as_deref()
}

fn build_base_table() -> Option<Vec<Niels>> {
    /// The encoding of the base point `B` (`y = 4/5`, `x` even), RFC 8032 section 5.1.
    const B: [u8; 32] = [
        0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
        0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
        0x66, 0x66,
    ];
    Some(split_tables(&Extended::decompress(&B)?, W_BASE))
}

/// Builds the shared `B` tables afresh (normally built once per VM), for the benchmark to time.
#[doc(hidden)]
pub fn bench_build_base_table() -> bool {
    build_base_table().is_some()
}

/// `digit·2^(16k)·P` from the tables of [`split_tables`] for width `w`: the entry and whether it
/// is subtracted.
fn table_entry(tables: &[Niels], w: u32, chunk: usize, digit: i16) -> Option<(&Niels, bool)> {
    let index = (chunk << (w - 2)) + usize::from(digit.unsigned_abs() / 2);
    Some((tables.get(index)?, digit < 0))
}

/// Little-endian bytes → little-endian limbs.
fn limbs_from_le(bytes: &[u8; 32]) -> [u32; 8] {
    let mut out = [0u32; 8];
    for (limb, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *limb = chunk
            .iter()
            .rev()
            .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    }
    out
}

/// An Ed25519 public key prepared for verification.
#[derive(Clone, PartialEq, Eq)]
pub struct Ed25519PublicKey {
    /// The key as given: `k` hashes these bytes.
    encoded: [u8; 32],
    /// Odd multiples of `2^(16k)·(−A)` ([`split_tables`]).
    table: Vec<Niels>,
}

impl std::fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed25519PublicKey")
    }
}

/// Why a 32-byte string is not a usable Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ed25519KeyError {
    /// No point of the curve has this encoding.
    NotAPoint,
    /// The point is of small order (a "weak" key): signatures under it prove nothing.
    SmallOrder,
}

impl Ed25519PublicKey {
    /// Prepares a key from its 32-byte encoding, refusing what `ed25519-dalek` refuses
    /// (`VerifyingKey::from_bytes`, then `is_weak` as `verify_strict` does).
    pub fn new(encoded: &[u8; 32]) -> Result<Self, Ed25519KeyError> {
        let point = Extended::decompress(encoded).ok_or(Ed25519KeyError::NotAPoint)?;
        if point.is_small_order() {
            return Err(Ed25519KeyError::SmallOrder);
        }
        // The shared B tables too, if this is the VM's first Ed25519 key: at JWKS load rather
        // than in the first request's verification. Building them cannot fail (B decodes).
        base_table().ok_or(Ed25519KeyError::NotAPoint)?;
        Ok(Ed25519PublicKey {
            encoded: *encoded,
            table: split_tables(&point.neg(), W_KEY),
        })
    }

    /// Verification of a 64-byte signature `R ‖ s` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verify_inner(message, signature).unwrap_or(false)
    }

    fn verify_inner(&self, message: &[u8], signature: &[u8]) -> Option<bool> {
        let (r_bytes, s_bytes) = signature.split_first_chunk::<32>()?;
        let s_bytes = <&[u8; 32]>::try_from(s_bytes).ok()?;
        let s: DalekScalar = Option::from(DalekScalar::from_canonical_bytes(*s_bytes))?;
        let mut hash = Sha512::new();
        hash.update(r_bytes);
        hash.update(self.encoded);
        hash.update(message);
        let k = DalekScalar::from_bytes_mod_order_wide(&hash.finalize().into());
        let r = self.mul_add(&limbs_from_le(&s.to_bytes()), &limbs_from_le(&k.to_bytes()))?;
        let encoded = r.compress();
        Some(encoded == *r_bytes && !SMALL_ORDER_ENCODINGS.contains(&encoded))
    }

    /// `s·B + k·(−A)`: one interleaved pass over the digit strings of all chunks of both scalars.
    fn mul_add(&self, s: &[u32; 8], k: &[u32; 8]) -> Option<Projective> {
        let s = wnaf(s, W_BASE);
        let k = wnaf(k, W_KEY);
        let base = base_table()?;
        let mut acc = Completed::IDENTITY;
        let mut started = false;
        // Digit 16c + j of a scalar is digit j of its chunk c; the top chunk also has digit 256.
        for j in (0..=CHUNK_BITS).rev() {
            if started {
                acc = acc.to_projective().double();
            }
            let top = if j == CHUNK_BITS { CHUNKS - 1 } else { 0 };
            for c in top..CHUNKS {
                let i = c * CHUNK_BITS + j;
                let d1 = s.get(i).copied().unwrap_or(0);
                if d1 != 0 {
                    let (entry, negate) = table_entry(base, W_BASE, c, d1)?;
                    acc = acc.to_extended().add_niels_completed(entry, negate);
                    started = true;
                }
                let d2 = k.get(i).copied().unwrap_or(0);
                if d2 != 0 {
                    let (entry, negate) = table_entry(&self.table, W_KEY, c, d2)?;
                    acc = acc.to_extended().add_niels_completed(entry, negate);
                    started = true;
                }
            }
        }
        Some(acc.to_projective())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use ed25519_dalek::{Signer as _, SigningKey};
    use sha2::Sha256;

    fn seeded(i: u64) -> [u8; 32] {
        Sha256::digest(i.to_le_bytes()).into()
    }

    fn dalek_scalar(bytes: [u8; 32]) -> DalekScalar {
        DalekScalar::from_bytes_mod_order(bytes)
    }

    /// The encoding of a Niels table entry's affine point.
    fn niels_encoding(n: &Niels) -> [u8; 32] {
        let plus = Fe25519::from_limbs(n.y_plus_x);
        let minus = Fe25519::from_limbs(n.y_minus_x);
        let half = Fe25519::from_limbs([2, 0, 0, 0, 0, 0, 0, 0]).invert();
        let x = plus.sub(&minus).mul(&half);
        let y = plus.add(&minus).mul(&half);
        Extended::from_affine(x, y).compress()
    }

    /// A key as `ed25519-dalek` and as this module load it.
    struct BothKeys(
        Option<ed25519_dalek::VerifyingKey>,
        Option<Ed25519PublicKey>,
    );

    impl BothKeys {
        fn new(key_bytes: &[u8; 32]) -> Self {
            BothKeys(
                ed25519_dalek::VerifyingKey::from_bytes(key_bytes).ok(),
                Ed25519PublicKey::new(key_bytes).ok(),
            )
        }

        /// What each says about one signature.
        fn verify(&self, msg: &[u8], sig: &[u8]) -> (bool, bool) {
            let theirs = self
                .0
                .zip(ed25519_dalek::Signature::from_slice(sig).ok())
                .is_some_and(|(vk, s)| !vk.is_weak() && vk.verify_strict(msg, &s).is_ok());
            let ours = self.1.as_ref().is_some_and(|k| k.verify(msg, sig));
            (theirs, ours)
        }
    }

    fn both(key_bytes: &[u8; 32], msg: &[u8], sig: &[u8]) -> (bool, bool) {
        BothKeys::new(key_bytes).verify(msg, sig)
    }

    #[test]
    fn decoding_and_encoding_agree_with_curve25519_dalek() {
        let b = Extended::decompress(&ED25519_BASEPOINT_POINT.compress().to_bytes()).unwrap();
        assert_eq!(b.compress(), ED25519_BASEPOINT_POINT.compress().to_bytes());
        let mut cases: Vec<[u8; 32]> = (0..400).map(seeded).collect();
        // Points: multiples of B, their negatives, and the small-order ones.
        for i in 0..100u64 {
            let p = ED25519_BASEPOINT_POINT * dalek_scalar(seeded(1000 + i));
            cases.push(p.compress().to_bytes());
            cases.push((-p).compress().to_bytes());
        }
        for t in curve25519_dalek::constants::EIGHT_TORSION {
            cases.push(t.compress().to_bytes());
        }
        // y = 1 with the sign bit set (x = 0: "−0"), y ≥ p (non-canonical), all ones.
        let mut minus_zero = [0u8; 32];
        minus_zero[0] = 1;
        minus_zero[31] = 0x80;
        cases.push(minus_zero);
        let mut p_plus_one = [0xFF; 32];
        p_plus_one[0] = 0xEE;
        p_plus_one[31] = 0x7F;
        cases.push(p_plus_one);
        cases.push([0xFF; 32]);
        let mut accepted = 0;
        for bytes in cases {
            let theirs = CompressedEdwardsY(bytes).decompress();
            let ours = Extended::decompress(&bytes);
            assert_eq!(theirs.is_some(), ours.is_some(), "{bytes:02x?}");
            if let (Some(t), Some(o)) = (theirs, ours) {
                accepted += 1;
                assert_eq!(o.compress(), t.compress().to_bytes(), "{bytes:02x?}");
                assert_eq!(o.is_small_order(), t.is_small_order(), "{bytes:02x?}");
            }
        }
        assert!(accepted > 300, "only {accepted} points decoded");
    }

    #[test]
    fn the_small_order_encodings_are_those_of_the_eight_torsion_points() {
        let mut theirs: Vec<[u8; 32]> = curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .map(|t| t.compress().to_bytes())
            .collect();
        let mut ours = SMALL_ORDER_ENCODINGS.to_vec();
        theirs.sort();
        ours.sort();
        assert_eq!(ours, theirs);
        for encoding in SMALL_ORDER_ENCODINGS {
            let point = Extended::decompress(&encoding).unwrap();
            assert!(point.is_small_order());
            assert_eq!(point.compress(), encoding);
        }
    }

    #[test]
    fn doubling_and_additions_match_the_group_law() {
        let b = ED25519_BASEPOINT_POINT;
        let ours_b = Extended::decompress(&b.compress().to_bytes()).unwrap();
        let niels_b = batch_to_niels(&[ours_b]);
        let niels_b = niels_b.first().unwrap();
        let mut acc = Extended::IDENTITY;
        let mut theirs = EdwardsPoint::default();
        // Additions and subtractions through the identity and back, and doublings.
        for step in 0..40 {
            let negate = step % 3 == 2;
            acc = acc.add_niels(niels_b, negate);
            theirs = if negate { theirs - b } else { theirs + b };
            assert_eq!(acc.compress(), theirs.compress().to_bytes(), "step {step}");
            if step % 5 == 0 {
                acc = acc.double();
                theirs = theirs + theirs;
                assert_eq!(acc.compress(), theirs.compress().to_bytes(), "step {step}");
            }
        }
        assert_eq!(
            Extended::IDENTITY.double().compress(),
            EdwardsPoint::default().compress().to_bytes()
        );
    }

    /// Checks `entries` of every chunk against `(2j + 1)·2^(16k)·P` computed with
    /// `curve25519-dalek`'s additions.
    fn check_tables(table: &[Niels], w: u32, p: EdwardsPoint, entries: &[usize], what: &str) {
        let count = 1usize << (w - 2);
        assert_eq!(table.len(), count * CHUNKS, "{what}");
        let mut base = p;
        for (k, chunk) in table.chunks(count).enumerate() {
            let twice = base + base;
            let mut expected = base;
            for (j, entry) in chunk.iter().enumerate() {
                if entries.contains(&j) {
                    assert_eq!(
                        niels_encoding(entry),
                        expected.compress().to_bytes(),
                        "{what}: chunk {k}, entry {j}"
                    );
                }
                expected += twice;
            }
            for _ in 0..CHUNK_BITS {
                base = base + base;
            }
        }
    }

    #[test]
    fn tables_hold_the_odd_multiples_of_each_chunks_base() {
        let some = [0, 1, 2, 17, 31, 32, 62, 63];
        check_tables(
            base_table().unwrap(),
            W_BASE,
            ED25519_BASEPOINT_POINT,
            &some,
            "B",
        );
        let all: Vec<usize> = (0..8).collect();
        for i in 0..3u64 {
            let a = ED25519_BASEPOINT_POINT * dalek_scalar(seeded(2000 + i));
            let key = Ed25519PublicKey::new(&a.compress().to_bytes()).unwrap();
            check_tables(&key.table, W_KEY, -a, &all, "−A");
        }
    }

    /// Scalars whose 16-bit chunks are zero, one, extreme or random, so that the pass meets
    /// empty chunks, top digits and long carries of the wNAF.
    fn crafted_scalars() -> Vec<DalekScalar> {
        let mut out = vec![
            DalekScalar::ZERO,
            DalekScalar::ONE,
            -DalekScalar::ONE,
            DalekScalar::from(2u8),
            -DalekScalar::from(2u8),
            DalekScalar::from(u64::MAX),
        ];
        for k in 0..16 {
            for v in [1u16, 0x7FFF, 0x8000, 0xFFFF, 0x5555] {
                let mut e = [0u8; 32];
                e[2 * k] = v as u8;
                e[2 * k + 1] = (v >> 8) as u8;
                out.push(DalekScalar::from_bytes_mod_order(e));
            }
        }
        for i in 0..40u64 {
            out.push(dalek_scalar(seeded(3000 + i)));
        }
        out
    }

    #[test]
    fn the_double_multiplication_matches_curve25519_dalek_on_crafted_scalars() {
        let keys = [
            ED25519_BASEPOINT_POINT,
            -ED25519_BASEPOINT_POINT,
            ED25519_BASEPOINT_POINT * dalek_scalar(seeded(4000)),
        ];
        let scalars = crafted_scalars();
        for a in keys {
            let key = Ed25519PublicKey::new(&a.compress().to_bytes()).unwrap();
            for (i, s) in scalars.iter().enumerate() {
                let k = scalars.get((i * 7 + 3) % scalars.len()).unwrap();
                let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(k, &-a, s);
                let ours = key
                    .mul_add(&limbs_from_le(&s.to_bytes()), &limbs_from_le(&k.to_bytes()))
                    .unwrap();
                assert_eq!(ours.compress(), expected.compress().to_bytes(), "pair {i}");
                assert_eq!(ours.is_small_order(), expected.is_small_order(), "pair {i}");
            }
        }
    }

    #[test]
    fn agrees_with_verify_strict_on_valid_and_mutated_signatures() {
        let mut valid = 0;
        for i in 0..24u64 {
            let sk = SigningKey::from_bytes(&seeded(5000 + i));
            let key = sk.verifying_key().to_bytes();
            let msg = format!("header.payload-{i}");
            let sig = sk.sign(msg.as_bytes()).to_bytes();
            let keys = BothKeys::new(&key);
            assert_eq!(keys.verify(msg.as_bytes(), &sig), (true, true), "key {i}");
            valid += 1;
            // Every bit of R and of s, a few bits of the message, another message and key.
            for bit in (0..512).step_by(if i < 2 { 1 } else { 37 }) {
                let mut bad = sig;
                bad[bit / 8] ^= 1 << (bit % 8);
                let (theirs, ours) = keys.verify(msg.as_bytes(), &bad);
                assert_eq!(theirs, ours, "key {i}, bit {bit}");
                assert!(!ours, "key {i}, bit {bit}");
            }
            let (theirs, ours) = keys.verify(b"another message", &sig);
            assert!(!theirs && !ours);
            let other = SigningKey::from_bytes(&seeded(6000 + i))
                .verifying_key()
                .to_bytes();
            let (theirs, ours) = both(&other, msg.as_bytes(), &sig);
            assert!(!theirs && !ours);
            // Wrong lengths.
            assert_eq!(keys.verify(msg.as_bytes(), &sig[..63]), (false, false));
            let mut long = sig.to_vec();
            long.push(0);
            assert_eq!(keys.verify(msg.as_bytes(), &long), (false, false));
        }
        assert_eq!(valid, 24);
    }

    /// A signature whose `R` is a point of small order and that satisfies the verification
    /// equation: a key with a torsion component (`A = a·B + T`, `T` of order 8) and a message
    /// whose `k` makes `−k·T` the chosen `R`. Plain cofactorless verification accepts it;
    /// `verify_strict`, and so this module, must not.
    #[test]
    fn refuses_a_small_order_r_that_satisfies_the_equation() {
        let torsion = curve25519_dalek::constants::EIGHT_TORSION;
        let t8 = torsion[1];
        let a = dalek_scalar(seeded(8000));
        let public = ED25519_BASEPOINT_POINT * a + t8;
        let key_bytes = public.compress().to_bytes();
        let keys = BothKeys::new(&key_bytes);
        assert!(
            keys.1.is_some(),
            "a key with a torsion component is not weak"
        );
        let mut found = 0;
        for i in 0..200u32 {
            if found == 12 {
                break;
            }
            let msg = format!("message {i}");
            for r in torsion {
                let r_bytes = r.compress().to_bytes();
                let mut h = Sha512::new();
                h.update(r_bytes);
                h.update(key_bytes);
                h.update(msg.as_bytes());
                let k = DalekScalar::from_bytes_mod_order_wide(&h.finalize().into());
                if t8 * k + r != EdwardsPoint::default() {
                    continue;
                }
                let s = k * a;
                // s·B − k·A = −k·T = R: the equation holds.
                assert_eq!(
                    EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-public, &s),
                    r
                );
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&r_bytes);
                sig[32..].copy_from_slice(&s.to_bytes());
                assert_eq!(keys.verify(msg.as_bytes(), &sig), (false, false), "{msg}");
                found += 1;
            }
        }
        assert_eq!(found, 12, "only {found} signatures constructed");
    }

    /// ℓ, little-endian.
    const L: [u8; 32] = [
        0xED, 0xD3, 0xF5, 0x5C, 0x1A, 0x63, 0x12, 0x58, 0xD6, 0x9C, 0xF7, 0xA2, 0xDE, 0xF9, 0xDE,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let t = u16::from(a[i]) + u16::from(b[i]) + carry;
            out[i] = t as u8;
            carry = t >> 8;
        }
        out
    }

    #[test]
    fn refuses_s_of_l_or_more_and_small_order_keys_and_r() {
        let sk = SigningKey::from_bytes(&seeded(7000));
        let key = sk.verifying_key().to_bytes();
        let sig = sk.sign(b"m").to_bytes();
        // s + ℓ verifies under the plain equation, but is not canonical.
        let mut malleated = sig;
        let s: [u8; 32] = sig[32..].try_into().unwrap();
        malleated[32..].copy_from_slice(&add_le(&s, &L));
        assert_eq!(both(&key, b"m", &malleated), (false, false));
        let mut s_is_l = sig;
        s_is_l[32..].copy_from_slice(&L);
        assert_eq!(both(&key, b"m", &s_is_l), (false, false));
        // Small-order keys are refused when loaded.
        for t in curve25519_dalek::constants::EIGHT_TORSION {
            assert_eq!(
                Ed25519PublicKey::new(&t.compress().to_bytes()),
                Err(Ed25519KeyError::SmallOrder)
            );
        }
        // A key that is not a point.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert!(CompressedEdwardsY(not_a_point).decompress().is_none());
        assert_eq!(
            Ed25519PublicKey::new(&not_a_point),
            Err(Ed25519KeyError::NotAPoint)
        );
        // A small-order R with s = 0 satisfies the equation for k·A = R only by accident; with
        // A of prime order, R = identity, s = 0 needs k = 0: refused either way, like dalek.
        let identity = EdwardsPoint::default().compress().to_bytes();
        let mut zero = [0u8; 64];
        zero[..32].copy_from_slice(&identity);
        assert_eq!(both(&key, b"m", &zero), (false, false));
    }
}
