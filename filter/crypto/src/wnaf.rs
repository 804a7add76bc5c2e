//! Width-`w` non-adjacent form (wNAF) of scalars, the digit strings the variable-time scalar
//! multiplications of [`crate::es256`] and [`crate::ed25519`] walk.

/// Width-`w` non-adjacent form of a 256-bit scalar (little-endian limbs), least significant
/// digit first: odd digits in `(−2^(w−1), 2^(w−1))`, at least `w − 1` zeros after each nonzero
/// one, `Σ dᵢ·2ⁱ` = the scalar. One pass of `w`-bit windows over the scalar's 64-bit words with a
/// carry, instead of subtracting each digit from the scalar and shifting it a bit at a time
/// (that took ~3.5 % of an EdDSA cache miss in V8).
pub(crate) fn wnaf(limbs: &[u32; 8], w: u32) -> [i16; 257] {
    let mut words = [0u64; 5];
    for (word, pair) in words.iter_mut().zip(limbs.chunks_exact(2)) {
        if let [low, high] = pair {
            *word = u64::from(*low) | (u64::from(*high) << 32);
        }
    }
    let width = 1u64 << w;
    let mask = width - 1;
    let mut out = [0i16; 257];
    let mut pos = 0usize;
    let mut carry = 0u64;
    while pos < 256 {
        let (index, bit) = (pos / 64, pos % 64);
        let low = words.get(index).copied().unwrap_or(0) >> bit;
        // The window may straddle two words (the fifth word is zero: bits from 256 on).
        let bits = if bit + (w as usize) <= 64 {
            low
        } else {
            low | (words.get(index + 1).copied().unwrap_or(0) << (64 - bit))
        };
        let window = carry + (bits & mask);
        if window & 1 == 0 {
            pos += 1;
            continue;
        }
        let digit = if window < width / 2 {
            carry = 0;
            window as i64
        } else {
            // window − 2^w, with the 2^w carried to position pos + w.
            carry = 1;
            window as i64 - width as i64
        };
        if let Some(slot) = out.get_mut(pos) {
            *slot = i16::try_from(digit).unwrap_or(0);
        }
        pos += w as usize;
    }
    // A last carry lands at most at position 256 (a window that produces one ends below it).
    if carry == 1
        && let Some(slot) = out.get_mut(pos)
    {
        *slot = 1;
    }
    out
}
