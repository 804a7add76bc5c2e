//! Arithmetic modulo the P-256 group order `n` on eight 32-bit limbs, for the three products and
//! the one inversion of an ECDSA verification. Products are Montgomery multiplications (CIOS,
//! `u32 × u32 → u64`, native on wasm32); the inversion is the binary extended Euclidean algorithm,
//! variable time, which is fine and much cheaper than Fermat because every input is public.

use crate::field::{less_than, limbs_from_be, sub_limbs};
use crate::safegcd;

/// Little-endian 32-bit limbs of `n`.
pub(crate) const N: [u32; 8] = [
    0xFC63_2551,
    0xF3B9_CAC2,
    0xA717_9E84,
    0xBCE6_FAAD,
    0xFFFF_FFFF,
    0xFFFF_FFFF,
    0,
    0xFFFF_FFFF,
];

/// `−n⁻¹ mod 2³²`.
const N0INV: u32 = 0xEE00_BC4F;

/// `R² mod n` with `R = 2²⁵⁶`: a Montgomery product with it undoes the `R⁻¹` of another.
const RR: [u32; 8] = [
    0xBE79_EEA2,
    0x8324_4C95,
    0x49BD_6FA6,
    0x4699_799C,
    0x2B6B_EC59,
    0x2845_B239,
    0xF3D9_5620,
    0x66E1_2D94,
];

/// An integer modulo `n`, always `< n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Scalar([u32; 8]);

/// `a · b · 2⁻²⁵⁶ mod n` for `a, b < n`: per limb of `b`, add `a·bᵢ`, then the multiple of `n`
/// that clears the low word, then drop that word. The running value stays below `2n`.
fn mont_mul(a: &[u32; 8], b: &[u32; 8]) -> [u32; 8] {
    // Eight limbs, then two words of headroom.
    let mut t = [0u32; 10];
    for bi in b {
        let bi = u64::from(*bi);
        let mut carry = 0u64;
        for (tj, aj) in t.iter_mut().zip(a) {
            let v = u64::from(*aj) * bi + u64::from(*tj) + carry;
            *tj = v as u32;
            carry = v >> 32;
        }
        let [.., t8, t9] = &mut t;
        let v = u64::from(*t8) + carry;
        *t8 = v as u32;
        *t9 = (v >> 32) as u32;

        let [t0, ..] = t;
        let m = u64::from(t0.wrapping_mul(N0INV));
        let mut carry = 0u64;
        for (tj, nj) in t.iter_mut().zip(&N) {
            let v = u64::from(*nj) * m + u64::from(*tj) + carry;
            *tj = v as u32;
            carry = v >> 32;
        }
        let [.., t8, t9] = &mut t;
        let v = u64::from(*t8) + carry;
        *t8 = v as u32;
        *t9 += (v >> 32) as u32;
        // The low word is now zero: dividing by 2³² is moving every word down one place.
        t.rotate_left(1);
    }
    let [t0, t1, t2, t3, t4, t5, t6, t7, t8, _] = t;
    let low = [t0, t1, t2, t3, t4, t5, t6, t7];
    if t8 != 0 || !less_than(&low, &N) {
        sub_limbs(&low, &N).0
    } else {
        low
    }
}

impl Scalar {
    /// Big-endian bytes; `None` for values `≥ n` (as ECDSA requires of `r` and `s`).
    pub(crate) fn from_be_bytes(bytes: &[u8; 32]) -> Option<Scalar> {
        let limbs = limbs_from_be(bytes);
        less_than(&limbs, &N).then_some(Scalar(limbs))
    }

    /// Any 256-bit big-endian value reduced mod `n` (the ECDSA hash `z`; `2²⁵⁶ < 2n`).
    pub(crate) fn reduce_be_bytes(bytes: &[u8; 32]) -> Scalar {
        let limbs = limbs_from_be(bytes);
        if less_than(&limbs, &N) {
            Scalar(limbs)
        } else {
            Scalar(sub_limbs(&limbs, &N).0)
        }
    }

    /// Little-endian limbs.
    pub(crate) fn limbs(&self) -> &[u32; 8] {
        &self.0
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0 == [0; 8]
    }

    /// `self · other mod n`: `(a·b·R⁻¹)·R²·R⁻¹`.
    pub(crate) fn mul(&self, other: &Scalar) -> Scalar {
        Scalar(mont_mul(&mont_mul(&self.0, &other.0), &RR))
    }

    /// `self⁻¹ mod n`, `None` for zero, by divsteps ([`crate::safegcd`]).
    pub(crate) fn invert_vartime(&self) -> Option<Scalar> {
        safegcd::invert(&self.0, &N).map(Scalar)
    }

    #[cfg(test)]
    pub(crate) fn to_be_bytes(self) -> [u8; 32] {
        crate::field::limbs_to_be(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::Field as _;
    use p256::elliptic_curve::bigint::U256;
    use p256::elliptic_curve::ff::PrimeField as _;
    use sha2::{Digest as _, Sha256};

    const N_HEX: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }

    const ONE: Scalar = Scalar([1, 0, 0, 0, 0, 0, 0, 0]);

    fn reference(s: &Scalar) -> p256::Scalar {
        p256::Scalar::from_repr(s.to_be_bytes().into()).expect("canonical")
    }

    fn ours(s: &p256::Scalar) -> Scalar {
        Scalar::from_be_bytes(&s.to_bytes().into()).expect("canonical")
    }

    fn samples(count: u64) -> Vec<Scalar> {
        let minus_one = -p256::Scalar::ONE;
        let mut out = vec![
            ONE,
            ours(&minus_one),
            ours(&(minus_one - p256::Scalar::ONE)),
            ours(&p256::Scalar::from(2u64)),
            ours(&p256::Scalar::from(u64::MAX)),
        ];
        for i in 0..count {
            let mut bytes: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            match i % 3 {
                0 => bytes[..30].fill(0),
                1 => bytes[..20].copy_from_slice(&hex32(N_HEX)[..20]),
                _ => {}
            }
            if let Some(s) = Scalar::from_be_bytes(&bytes) {
                out.push(s);
            }
        }
        out
    }

    #[test]
    fn constants_are_what_they_claim() {
        assert_eq!(N[0].wrapping_mul(N0INV), u32::MAX, "n·(−n⁻¹) ≡ −1 mod 2³²");
        assert_eq!(crate::field::limbs_to_be(&N), hex32(N_HEX));
        // R² mod n by 512 modular doublings of 1.
        let mut x = ONE.0;
        for _ in 0..512 {
            let (sum, carry) = crate::field::add_limbs(&x, &x);
            x = if carry == 1 || !less_than(&sum, &N) {
                sub_limbs(&sum, &N).0
            } else {
                sum
            };
        }
        assert_eq!(x, RR);
    }

    #[test]
    fn products_and_inverses_match_the_p256_crate() {
        let values = samples(3000);
        assert!(values.len() > 2000);
        for (i, a) in values.iter().enumerate() {
            let ra = reference(a);
            for b in [&values[i % 5], &values[(i * 104_729 + 7) % values.len()], a] {
                assert_eq!(a.mul(b), ours(&(ra * reference(b))), "{a:?} · {b:?}");
            }
            let inverse = a.invert_vartime().expect("nonzero");
            assert_eq!(inverse, ours(&ra.invert().expect("nonzero")), "{a:?}⁻¹");
            assert_eq!(a.mul(&inverse), ONE);
            assert_eq!(a.mul(&Scalar([0; 8])), Scalar([0; 8]));
        }
        assert_eq!(Scalar([0; 8]).invert_vartime(), None);
    }

    #[test]
    fn decoding_rejects_values_from_n_up_and_reduction_subtracts_n() {
        let n = hex32(N_HEX);
        assert_eq!(Scalar::from_be_bytes(&n), None, "n");
        assert_eq!(Scalar::from_be_bytes(&[0xFF; 32]), None, "2²⁵⁶ − 1");
        let mut n_minus_1 = n;
        n_minus_1[31] -= 1;
        assert_eq!(
            Scalar::from_be_bytes(&n_minus_1).map(Scalar::to_be_bytes),
            Some(n_minus_1)
        );
        assert_eq!(Scalar::reduce_be_bytes(&n), Scalar([0; 8]));
        for i in 0..3000u64 {
            let mut bytes: [u8; 32] = Sha256::digest(i.to_be_bytes()).into();
            if i % 2 == 0 {
                // Around n: the top 16 bytes of n, then random.
                bytes[..16].copy_from_slice(&n[..16]);
                if i % 4 == 0 {
                    bytes[16] = 0xFF;
                }
            }
            let expected: Option<p256::Scalar> = p256::Scalar::from_repr(bytes.into()).into();
            assert_eq!(
                Scalar::from_be_bytes(&bytes),
                expected.map(|e| ours(&e)),
                "{bytes:02x?}"
            );
            let reduced = <p256::Scalar as p256::elliptic_curve::ops::Reduce<U256>>::reduce_bytes(
                &bytes.into(),
            );
            assert_eq!(Scalar::reduce_be_bytes(&bytes), ours(&reduced));
            assert_eq!(
                Scalar::reduce_be_bytes(&bytes).is_zero(),
                bool::from(reduced.is_zero())
            );
        }
    }
}
