//! ES256 (ECDSA over P-256 with SHA-256, FIPS 186-5 section 6.4.2) verification tuned for wasm32.
//!
//! The field and scalar arithmetic is RustCrypto's `p256` (32-bit limbs on wasm32). What this
//! module changes is the point arithmetic, which dominates a verification: `u1·G + u2·Q` is one
//! interleaved (Strauss–Shamir) variable-time wNAF pass in Jacobian coordinates with the `a = −3`
//! doubling, adding precomputed affine odd multiples of `G` (shared, built once) and of `Q`
//! (built when the JWKS is loaded). The `p256` crate instead runs two constant-time scalar
//! multiplications with complete formulas. All inputs are public (key, message, signature), so
//! variable time is fine.

use std::sync::OnceLock;

use p256::elliptic_curve::Field as _;
use p256::elliptic_curve::bigint::U256;
use p256::elliptic_curve::ff::PrimeField as _;
use p256::elliptic_curve::ops::Invert as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::{FieldBytes, FieldElement, Scalar};
use sha2::{Digest as _, Sha256};

/// wNAF width for the per-key table of `Q` (8 odd multiples).
const W_KEY: u32 = 5;
/// wNAF width for the shared table of `G` (32 odd multiples).
const W_BASE: u32 = 7;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Affine {
    x: FieldElement,
    y: FieldElement,
}

/// Jacobian coordinates: `(X/Z², Y/Z³)`; `Z = 0` is the point at infinity.
#[derive(Clone, Copy)]
struct Jacobian {
    x: FieldElement,
    y: FieldElement,
    z: FieldElement,
}

impl Jacobian {
    const INFINITY: Jacobian = Jacobian {
        x: FieldElement::ONE,
        y: FieldElement::ONE,
        z: FieldElement::ZERO,
    };

    fn from_affine(p: &Affine) -> Self {
        Jacobian {
            x: p.x,
            y: p.y,
            z: FieldElement::ONE,
        }
    }

    fn is_infinity(&self) -> bool {
        bool::from(self.z.is_zero())
    }

    /// `2P` ("dbl-2001-b", valid for `a = −3`); infinity and `Y = 0` give `Z = 0`.
    fn double(&self) -> Self {
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.multiply(&gamma);
        let alpha = self.x.sub(&delta).multiply(&self.x.add(&delta));
        let alpha = alpha.double().add(&alpha);
        let beta4 = beta.double().double();
        let x = alpha.square().sub(&beta4.double());
        let z = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let gamma_sq8 = gamma.square().double().double().double();
        let y = alpha.multiply(&beta4.sub(&x)).sub(&gamma_sq8);
        Jacobian { x, y, z }
    }

    /// `P + Q` for affine `Q` ("madd-2007-bl"), with the exceptional cases handled.
    fn add_affine(&self, q: &Affine) -> Self {
        if self.is_infinity() {
            return Jacobian::from_affine(q);
        }
        let z1z1 = self.z.square();
        let u2 = q.x.multiply(&z1z1);
        let s2 = q.y.multiply(&self.z).multiply(&z1z1);
        let h = u2.sub(&self.x);
        let r = s2.sub(&self.y).double();
        if bool::from(h.is_zero()) {
            return if bool::from(r.is_zero()) {
                self.double()
            } else {
                Jacobian::INFINITY
            };
        }
        let hh = h.square();
        let i = hh.double().double();
        let j = h.multiply(&i);
        let v = self.x.multiply(&i);
        let x = r.square().sub(&j).sub(&v.double());
        let y = r.multiply(&v.sub(&x)).sub(&self.y.multiply(&j).double());
        let z = self.z.add(&h).square().sub(&z1z1).sub(&hh);
        Jacobian { x, y, z }
    }

    fn to_affine(self) -> Option<Affine> {
        let zinv = Option::<FieldElement>::from(self.z.invert())?;
        let zinv2 = zinv.square();
        Some(Affine {
            x: self.x.multiply(&zinv2),
            y: self.y.multiply(&zinv2).multiply(&zinv),
        })
    }
}

/// `P, 3P, 5P, …, (2^(w−1) − 1)P` in affine coordinates.
fn odd_multiples(p: &Affine, w: u32) -> Option<Vec<Affine>> {
    let count = 1usize << (w - 2);
    let twice = Jacobian::from_affine(p).double().to_affine()?;
    let mut out = Vec::with_capacity(count);
    let mut acc = Jacobian::from_affine(p);
    for _ in 0..count {
        out.push(acc.to_affine()?);
        acc = acc.add_affine(&twice);
    }
    Some(out)
}

fn base_table() -> Option<&'static [Affine]> {
    static TABLE: OnceLock<Option<Vec<Affine>>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let g = p256::AffinePoint::GENERATOR.to_encoded_point(false);
            let x = Option::from(FieldElement::from_bytes(g.x()?))?;
            let y = Option::from(FieldElement::from_bytes(g.y()?))?;
            odd_multiples(&Affine { x, y }, W_BASE)
        })
        .as_deref()
}

/// Width-`w` non-adjacent form of a 256-bit big-endian scalar, least significant digit first.
fn wnaf(bytes: &FieldBytes, w: u32) -> [i8; 257] {
    let mut k = [0u32; 9];
    for (limb, chunk) in k.iter_mut().zip(bytes.rchunks(4)) {
        *limb = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    }
    let full = 1u32 << w;
    let mut out = [0i8; 257];
    for digit in out.iter_mut() {
        if k.iter().all(|l| *l == 0) {
            break;
        }
        let low = k.first().copied().unwrap_or(0);
        if low & 1 == 1 {
            // Digits are odd and in (−2^(w−1), 2^(w−1)); removing one clears the low w bits.
            let v = low & (full - 1);
            let d = if v >= full / 2 {
                add_small(&mut k, full - v);
                i64::from(v) - i64::from(full)
            } else {
                sub_small(&mut k, v);
                i64::from(v)
            };
            *digit = i8::try_from(d).unwrap_or(0);
        }
        let mut high = 0u32;
        for limb in k.iter_mut().rev() {
            let next = *limb & 1;
            *limb = (*limb >> 1) | (high << 31);
            high = next;
        }
    }
    out
}

fn add_small(k: &mut [u32], v: u32) {
    let mut carry = v;
    for limb in k.iter_mut() {
        let (sum, overflow) = limb.overflowing_add(carry);
        *limb = sum;
        carry = u32::from(overflow);
    }
}

fn sub_small(k: &mut [u32], v: u32) {
    let mut borrow = v;
    for limb in k.iter_mut() {
        let (diff, underflow) = limb.overflowing_sub(borrow);
        *limb = diff;
        borrow = u32::from(underflow);
    }
}

fn table_entry(table: &[Affine], digit: i8) -> Option<Affine> {
    let index = usize::from(digit.unsigned_abs() / 2);
    let p = *table.get(index)?;
    Some(if digit < 0 {
        Affine {
            x: p.x,
            y: p.y.neg(),
        }
    } else {
        p
    })
}

/// `r + n` as 32 big-endian bytes, if it fits (the field check then rejects it when ≥ p).
fn r_plus_n(r: &FieldBytes) -> Option<FieldBytes> {
    /// The group order `n`.
    const N: [u8; 32] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63,
        0x25, 0x51,
    ];
    let mut out = FieldBytes::default();
    let mut carry = 0u16;
    for ((o, a), b) in out.iter_mut().zip(r.iter()).zip(N.iter()).rev() {
        let sum = u16::from(*a) + u16::from(*b) + carry;
        *o = sum as u8;
        carry = sum >> 8;
    }
    (carry == 0).then_some(out)
}

/// A P-256 public key prepared for ES256 verification.
#[derive(Clone, PartialEq, Eq)]
pub struct EcPublicKey {
    /// Odd multiples `Q, 3Q, …, 15Q`.
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
        let x = Option::from(FieldElement::from_bytes(point.x()?))?;
        let y = Option::from(FieldElement::from_bytes(point.y()?))?;
        Some(EcPublicKey {
            table: odd_multiples(&Affine { x, y }, W_KEY)?,
        })
    }

    /// ECDSA verification of a JWS signature (`r ‖ s`, 32 bytes each) over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verify_inner(message, signature).unwrap_or(false)
    }

    fn verify_inner(&self, message: &[u8], signature: &[u8]) -> Option<bool> {
        if signature.len() != 64 {
            return Some(false);
        }
        let (r_bytes, s_bytes) = signature.split_at_checked(32)?;
        let r = Option::<Scalar>::from(Scalar::from_repr(*FieldBytes::from_slice(r_bytes)))?;
        let s = Option::<Scalar>::from(Scalar::from_repr(*FieldBytes::from_slice(s_bytes)))?;
        if bool::from(r.is_zero()) || bool::from(s.is_zero()) {
            return Some(false);
        }
        let z = <Scalar as p256::elliptic_curve::ops::Reduce<U256>>::reduce_bytes(&Sha256::digest(
            message,
        ));
        let s_inv = Option::<Scalar>::from(s.invert_vartime())?;
        let u1 = wnaf(&(z * s_inv).to_bytes(), W_BASE);
        let u2 = wnaf(&(r * s_inv).to_bytes(), W_KEY);
        let base = base_table()?;
        let mut acc = Jacobian::INFINITY;
        for (d1, d2) in u1.iter().zip(u2.iter()).rev() {
            acc = acc.double();
            if *d1 != 0 {
                acc = acc.add_affine(&table_entry(base, *d1)?);
            }
            if *d2 != 0 {
                acc = acc.add_affine(&table_entry(&self.table, *d2)?);
            }
        }
        // x(R) mod n = r  ⇔  x(R) ∈ {r, r + n} (x(R) < p < 2n)  ⇔  X = c·Z² for such a c below
        // p: no field inversion.
        if acc.is_infinity() {
            return Some(false);
        }
        let z2 = acc.z.square();
        let r_bytes = r.to_bytes();
        let matches = |c: &FieldBytes| {
            Option::<FieldElement>::from(FieldElement::from_bytes(c))
                .is_some_and(|c| c.multiply(&z2) == acc.x)
        };
        Some(matches(&r_bytes) || r_plus_n(&r_bytes).is_some_and(|c| matches(&c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer as _, Verifier as _};
    use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

    fn seeded(i: u64) -> [u8; 32] {
        Sha256::digest(i.to_be_bytes()).into()
    }

    fn both(vk: &VerifyingKey, key: &EcPublicKey, msg: &[u8], sig: &[u8]) -> (bool, bool) {
        let reference = Signature::from_slice(sig).is_ok_and(|s| vk.verify(msg, &s).is_ok());
        (reference, key.verify(msg, sig))
    }

    #[test]
    fn wnaf_digits_reconstruct_the_scalar() {
        for i in 0..200u64 {
            let bytes = FieldBytes::from(seeded(i));
            for w in [W_KEY, W_BASE] {
                let digits = wnaf(&bytes, w);
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
                assert_eq!(&back[1..], bytes.as_slice(), "scalar {i}, w {w}");
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
            x: FieldElement::from_bytes(e.x().expect("x")).expect("fe"),
            y: FieldElement::from_bytes(e.y().expect("y")).expect("fe"),
        }
    }

    #[test]
    fn tables_and_exceptional_additions_match_the_p256_group_law() {
        let g = p256::ProjectivePoint::GENERATOR;
        let table = base_table().expect("table");
        assert_eq!(table.len(), 32);
        for (i, entry) in table.iter().enumerate() {
            let k = Scalar::from(2 * i as u64 + 1);
            assert!(*entry == affine_of(g * k), "{}G", 2 * i + 1);
        }
        let p = affine_of(g * Scalar::from(7u64));
        let pj = Jacobian::from_affine(&p);
        assert!(
            pj.add_affine(&p).to_affine() == Some(affine_of(g * Scalar::from(14u64))),
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
        assert!(p3.add_affine(&p3_affine).to_affine() == Some(affine_of(g * Scalar::from(42u64))));
        assert!(
            p3.add_affine(&Affine {
                x: p3_affine.x,
                y: p3_affine.y.neg()
            })
            .is_infinity()
        );
    }

    #[test]
    fn r_plus_n_adds_the_group_order_or_reports_overflow() {
        let mut one = FieldBytes::default();
        one[31] = 1;
        let n_plus_1 = r_plus_n(&one).expect("fits");
        assert_eq!(
            n_plus_1.as_slice(),
            hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632552")
        );
        let big = FieldBytes::from(hex32(
            "0000000100000000000000000000000000000000000000000000000000000000",
        ));
        assert_eq!(r_plus_n(&big), None, "r + n ≥ 2²⁵⁶");
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
            FieldBytes::from_slice(&x),
            FieldBytes::from_slice(&y),
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
