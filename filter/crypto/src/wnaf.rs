//! Width-`w` non-adjacent form (wNAF) of scalars, the digit strings the variable-time scalar
//! multiplications of [`crate::es256`] and [`crate::ed25519`] walk.

/// Width-`w` non-adjacent form of a 256-bit scalar (little-endian limbs), least significant
/// digit first.
pub(crate) fn wnaf(limbs: &[u32; 8], w: u32) -> [i16; 257] {
    let mut k = [0u32; 9];
    for (dst, src) in k.iter_mut().zip(limbs) {
        *dst = *src;
    }
    let full = 1u32 << w;
    let mut out = [0i16; 257];
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
            *digit = i16::try_from(d).unwrap_or(0);
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
