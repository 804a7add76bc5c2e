//! Modular inversion by Bernstein and Yang's "safegcd" divsteps ("Fast constant-time gcd
//! computation and modular inversion", 2019), in the variable-time form: every input here is
//! public (a signature's `s`, the `Z` of a point computed from public data).
//!
//! A field inversion by Fermat's little theorem costs ~255 squarings and a dozen products; an
//! Ed25519 verification needs one (to encode `R'`), which was about a fifth of its time, and ES256
//! one modulo the group order `n`. Divsteps instead run a binary gcd of `(M, x)` on the low bits
//! only, 30 steps at a time, and apply each batch of 30 as one 2×2 matrix to the full-width
//! numbers; the matrix entries stay below `2³⁰`, so every product is `i32 × i32 → i64`, which
//! wasm32 has natively.
//!
//! Numbers are nine signed 30-bit limbs (`Σ limbᵢ·2³⁰ⁱ`, limbs 0–7 in `[0, 2³⁰)`, limb 8 signed),
//! 270 bits for values below `2²⁵⁶` and their small signed multiples.
//!
//! Invariants, with `x` the input and `M` the modulus: `d·x ≡ f` and `e·x ≡ g (mod M)`, starting
//! from `f = M, g = x, d = 0, e = 1`. Each batch maps `(f, g)` to `T·(f, g)/2³⁰` exactly and
//! `(d, e)` to `T·(d, e)/2³⁰ mod M`. When `g` reaches 0, `f = ±gcd(M, x) = ±1`, so `x⁻¹ = ±d`.

/// Steps per batch: the matrix entries are at most `2^STEPS` in absolute value.
const STEPS: u32 = 30;
const LIMB_MASK: i64 = (1 << STEPS) - 1;
const LIMBS: usize = 9;

/// Upper bound on the batches: for inputs below `2²⁵⁶`, `g` reaches 0 within
/// `⌊(49·256 + 57)/17⌋ = 741` divsteps (Bernstein–Yang, theorem 11.2), and the batches are those
/// same divsteps. Reaching the bound would mean a bug; the inversion then fails (the signature
/// is refused) instead of looping.
const MAX_BATCHES: usize = 741usize.div_ceil(STEPS as usize) + 1;

type Limbs30 = [i64; LIMBS];

/// `M⁻¹ mod 2³⁰` for an odd `M` from its low word, by Newton's iteration for an inverse modulo
/// `2^k`: `y ← y·(2 − m·y)` doubles the valid bits, and `m·m ≡ 1 (mod 8)` for odd `m`, so `y = m`
/// starts with three.
fn inverse_mod_2_30(m0: u32) -> i64 {
    let mut y = m0;
    for _ in 0..4 {
        y = y.wrapping_mul(2u32.wrapping_sub(m0.wrapping_mul(y)));
    }
    i64::from(y) & LIMB_MASK
}

/// 32-bit little-endian limbs to 30-bit limbs.
fn to_limbs30(a: &[u32; 8]) -> Limbs30 {
    let mut out = [0i64; LIMBS];
    let mut words = a.iter();
    let (mut acc, mut bits) = (0u64, 0u32);
    for limb in &mut out {
        while bits < STEPS {
            let Some(&word) = words.next() else {
                break;
            };
            acc |= u64::from(word) << bits;
            bits += 32;
        }
        *limb = (acc as i64) & LIMB_MASK;
        acc >>= STEPS;
        bits = bits.saturating_sub(STEPS);
    }
    out
}

/// 30-bit limbs of a value in `[0, 2²⁵⁶)` to 32-bit little-endian limbs.
fn from_limbs30(a: &Limbs30) -> [u32; 8] {
    let mut out = [0u32; 8];
    let mut words = out.iter_mut();
    let (mut acc, mut bits) = (0u64, 0u32);
    for &limb in a {
        acc |= (limb as u64) << bits;
        bits += STEPS;
        while bits >= 32 {
            if let Some(word) = words.next() {
                *word = acc as u32;
            }
            acc >>= 32;
            bits -= 32;
        }
    }
    if let Some(word) = words.next() {
        *word = acc as u32;
    }
    out
}

/// The batch matrix `T = [[u, v], [q, r]]`: `2³⁰·(f', g') = T·(f, g)`.
struct Matrix {
    u: i64,
    v: i64,
    q: i64,
    r: i64,
}

/// Thirty divsteps on the low 32 bits of `f` (odd) and `g`, which decide them; returns the
/// new `eta` (minus Bernstein–Yang's `δ`) and the matrix.
///
/// A divstep halves `g` when it is even; when it is odd it either replaces `g` by `(g + f)/2`,
/// or, when `eta < 0`, first swaps `(f, g) ← (g, −f)` and negates `eta`. Runs of these are taken
/// at once: all trailing zeros of `g` in one shift, and, as long as no swap can come (at most
/// `eta + 1` steps), the multiple of `f` that clears up to six low bits of `g` in one addition.
/// Halving `g` is recorded by doubling the `f` row instead, so that the matrix keeps the common
/// factor `2^steps`.
fn divsteps(mut eta: i32, f0: u32, g0: u32) -> (i32, Matrix) {
    let (mut u, mut v, mut q, mut r) = (1u32, 0u32, 0u32, 1u32);
    let (mut f, mut g) = (f0, g0);
    let mut left = STEPS;
    loop {
        // A bit above the steps left stops the count there.
        let zeros = (g | (u32::MAX << left)).trailing_zeros();
        g >>= zeros;
        u <<= zeros;
        v <<= zeros;
        eta -= zeros as i32;
        left -= zeros;
        if left == 0 {
            break;
        }
        // `g` is odd.
        if eta < 0 {
            eta = -eta;
            (f, u, v, g, q, r) = (
                g,
                q,
                r,
                f.wrapping_neg(),
                u.wrapping_neg(),
                v.wrapping_neg(),
            );
        }
        // Steps until the next possible swap, and not past the batch; at most six bits.
        let bits = (eta as u32 + 1).min(left).min(6);
        let mask = (1u32 << bits) - 1;
        // `f⁻¹ mod 2⁶`: `f·f ≡ 1 (mod 8)`, one Newton step doubles the valid bits.
        let f_inv = f.wrapping_mul(2u32.wrapping_sub(f.wrapping_mul(f)));
        let w = g.wrapping_mul(f_inv).wrapping_neg() & mask;
        g = g.wrapping_add(f.wrapping_mul(w));
        q = q.wrapping_add(u.wrapping_mul(w));
        r = r.wrapping_add(v.wrapping_mul(w));
    }
    let m = Matrix {
        u: i64::from(u as i32),
        v: i64::from(v as i32),
        q: i64::from(q as i32),
        r: i64::from(r as i32),
    };
    (eta, m)
}

/// `(a·x + b·y + k·m) / 2³⁰`, for terms whose sum is divisible by `2³⁰`. Each limb's term is
/// below `3·2⁶⁰` in absolute value (`|a|, |b|, k ≤ 2³⁰`, limbs below `2³⁰`), so the running sum
/// fits an `i64`.
fn combine_shift(x: &Limbs30, a: i64, y: &Limbs30, b: i64, m: &Limbs30, k: i64) -> Limbs30 {
    let mut terms = x
        .iter()
        .zip(y)
        .zip(m)
        .map(|((&xi, &yi), &mi)| a * xi + b * yi + k * mi);
    let mut carry = terms.next().unwrap_or(0) >> STEPS;
    let mut out = [0i64; LIMBS];
    for (limb, term) in out.iter_mut().zip(terms) {
        carry += term;
        *limb = carry & LIMB_MASK;
        carry >>= STEPS;
    }
    if let Some(top) = out.last_mut() {
        *top = carry;
    }
    out
}

/// `(f, g) ← T·(f, g)/2³⁰`, exact by construction of `T`.
fn update_fg(f: &mut Limbs30, g: &mut Limbs30, t: &Matrix) {
    const NO_MODULUS: Limbs30 = [0; LIMBS];
    let next_f = combine_shift(f, t.u, g, t.v, &NO_MODULUS, 0);
    *g = combine_shift(f, t.q, g, t.r, &NO_MODULUS, 0);
    *f = next_f;
}

/// `(d, e) ← T·(d, e)/2³⁰ mod M` for `d, e ∈ [0, M)`, and back into `[0, M)`. A multiple
/// `k·M` with `0 ≤ k < 2³⁰` makes each sum divisible by `2³⁰`; the quotient is in `(−M, 2M)`.
fn update_de(d: &mut Limbs30, e: &mut Limbs30, t: &Matrix, m: &Limbs30, m_inv: i64) {
    let multiple = |low: i64| low.wrapping_mul(m_inv).wrapping_neg() & LIMB_MASK;
    let kd = multiple(t.u * d[0] + t.v * e[0]);
    let ke = multiple(t.q * d[0] + t.r * e[0]);
    let mut next_d = combine_shift(d, t.u, e, t.v, m, kd);
    *e = combine_shift(d, t.q, e, t.r, m, ke);
    reduce_once(&mut next_d, m);
    reduce_once(e, m);
    *d = next_d;
}

/// `a + sign·b` with carries, for `sign` ∈ {−1, 1}; limbs 0–7 end in `[0, 2³⁰)`.
fn add_signed(a: &mut Limbs30, b: &Limbs30, sign: i64) {
    let mut carry = 0i64;
    for (i, (limb, &other)) in a.iter_mut().zip(b).enumerate() {
        carry += *limb + sign * other;
        *limb = if i + 1 < LIMBS {
            carry & LIMB_MASK
        } else {
            carry
        };
        carry >>= STEPS;
    }
}

fn is_negative(a: &Limbs30) -> bool {
    a.last().is_some_and(|&top| top < 0)
}

/// `a ≥ m` for `a ≥ 0` (both normalized).
fn at_least(a: &Limbs30, m: &Limbs30) -> bool {
    for (&x, &y) in a.iter().rev().zip(m.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

/// A value in `(−M, 2M)` into `[0, M)`.
fn reduce_once(a: &mut Limbs30, m: &Limbs30) {
    if is_negative(a) {
        add_signed(a, m, 1);
    } else if at_least(a, m) {
        add_signed(a, m, -1);
    }
}

/// `x⁻¹ mod M` for `x < M` and an odd modulus `M` (32-bit little-endian limbs); `None` when `x`
/// is zero or shares a factor with `M`, or `x ≥ M`.
pub(crate) fn invert(x: &[u32; 8], modulus: &[u32; 8]) -> Option<[u32; 8]> {
    let m = to_limbs30(modulus);
    let m_inv = inverse_mod_2_30(modulus[0]);
    let mut f = m;
    let mut g = to_limbs30(x);
    if at_least(&g, &f) {
        return None;
    }
    let mut d = [0i64; LIMBS];
    let mut e = [0i64; LIMBS];
    e[0] = 1;
    let mut eta = -1;
    for _ in 0..MAX_BATCHES {
        if g.iter().all(|&limb| limb == 0) {
            // `f = ±gcd(M, x)`: invertible only if that is 1.
            let mut one = [0i64; LIMBS];
            one[0] = 1;
            let mut minus_one = [0i64; LIMBS];
            add_signed(&mut minus_one, &one, -1);
            return if f == one {
                Some(from_limbs30(&d))
            } else if f == minus_one {
                let mut negated = m;
                add_signed(&mut negated, &d, -1);
                reduce_once(&mut negated, &m);
                Some(from_limbs30(&negated))
            } else {
                None
            };
        }
        let (next_eta, t) = divsteps(eta, f[0] as u32, g[0] as u32);
        eta = next_eta;
        update_fg(&mut f, &mut g, &t);
        update_de(&mut d, &mut e, &t, &m, m_inv);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::BigUint;

    /// The field prime of edwards25519 and the P-256 group order: the two moduli the crate
    /// inverts modulo per verification.
    const P25519: [u32; 8] = crate::field25519::P;
    const N256: [u32; 8] = crate::scalar::N;

    fn big(a: &[u32; 8]) -> BigUint {
        let bytes: Vec<u8> = a.iter().flat_map(|l| l.to_le_bytes()).collect();
        BigUint::from_bytes_le(&bytes)
    }

    fn limbs(a: &BigUint) -> [u32; 8] {
        let mut bytes = a.to_bytes_le();
        bytes.resize(32, 0);
        let mut out = [0u32; 8];
        for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        out
    }

    /// A deterministic stream of 256-bit values (xorshift), reduced below `m`.
    fn values(m: &[u32; 8], count: usize) -> Vec<[u32; 8]> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let modulus = big(m);
        (0..count)
            .map(|_| {
                let mut a = [0u32; 8];
                for limb in &mut a {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *limb = state as u32;
                }
                limbs(&(big(&a) % &modulus))
            })
            .collect()
    }

    fn check_inverses(m: &[u32; 8]) {
        let p = big(m);
        let mut edge = vec![
            [1, 0, 0, 0, 0, 0, 0, 0],
            [2, 0, 0, 0, 0, 0, 0, 0],
            limbs(&(&p - 1u32)),
            limbs(&(&p - 2u32)),
            limbs(&(&p >> 1)),
            limbs(&((&p >> 1) + 1u32)),
            [0xFFFF_FFFF, 0xFFFF_FFFF, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 1],
        ];
        edge.extend(values(m, 2000));
        for x in edge {
            let inverse = invert(&x, m).expect("nonzero below a prime is invertible");
            assert!(big(&inverse) < p, "{x:x?}: not reduced");
            assert_eq!(
                (big(&x) * big(&inverse)) % &p,
                BigUint::from(1u32),
                "{x:x?}"
            );
        }
    }

    #[test]
    fn inverses_modulo_the_ed25519_prime() {
        check_inverses(&P25519);
    }

    #[test]
    fn inverses_modulo_the_p256_order() {
        check_inverses(&N256);
    }

    #[test]
    fn zero_values_at_or_above_the_modulus_and_common_factors_have_no_inverse() {
        assert_eq!(invert(&[0; 8], &P25519), None);
        assert_eq!(invert(&P25519, &P25519), None);
        assert_eq!(invert(&[u32::MAX; 8], &P25519), None);
        // 15 = 3·5: multiples of 3 or 5 share a factor with it.
        let fifteen = [15, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(invert(&[6, 0, 0, 0, 0, 0, 0, 0], &fifteen), None);
        assert_eq!(invert(&[10, 0, 0, 0, 0, 0, 0, 0], &fifteen), None);
        assert_eq!(
            invert(&[7, 0, 0, 0, 0, 0, 0, 0], &fifteen),
            Some([13, 0, 0, 0, 0, 0, 0, 0])
        );
    }

    #[test]
    fn the_inverse_of_the_modulus_mod_2_30_is_one() {
        for m in [P25519, N256, [15, 0, 0, 0, 0, 0, 0, 0]] {
            assert_eq!((i64::from(m[0]) * inverse_mod_2_30(m[0])) & LIMB_MASK, 1);
        }
    }

    #[test]
    fn limbs_convert_both_ways() {
        for x in values(&[u32::MAX; 8], 200)
            .into_iter()
            .chain([[u32::MAX; 8], [0; 8]])
        {
            let l = to_limbs30(&x);
            assert!(l.iter().all(|&v| (0..=LIMB_MASK).contains(&v)));
            assert_eq!(from_limbs30(&l), x);
        }
    }

    #[test]
    fn the_batch_matrix_maps_the_low_bits_like_single_divsteps() {
        // One divstep at a time on 64-bit numbers (no overflow for 30 steps from < 2³⁰), the
        // definition the batches must agree with.
        fn single(mut eta: i32, mut f: i64, mut g: i64) -> (i32, i64, i64) {
            for _ in 0..STEPS {
                if g & 1 == 0 {
                    g >>= 1;
                    eta -= 1;
                } else {
                    if eta < 0 {
                        eta = -eta;
                        (f, g) = (g, -f);
                    }
                    g = (g + f) >> 1;
                    eta -= 1;
                }
            }
            (eta, f, g)
        }
        let mut state = 12345u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let f = ((state as i64) & LIMB_MASK) | 1;
            let g = ((state >> 32) as i64) & LIMB_MASK;
            let eta = ((state >> 60) as i32) - 8;
            let (eta_b, t) = divsteps(eta, f as u32, g as u32);
            let (eta_s, f_s, g_s) = single(eta, f, g);
            assert_eq!(eta_b, eta_s, "eta for f={f} g={g} eta={eta}");
            assert_eq!(t.u * f + t.v * g, f_s << STEPS, "f row for f={f} g={g}");
            assert_eq!(t.q * f + t.r * g, g_s << STEPS, "g row for f={f} g={g}");
            assert!(t.u.abs() + t.v.abs() <= 1 << STEPS);
            assert!(t.q.abs() + t.r.abs() <= 1 << STEPS);
        }
    }
}
