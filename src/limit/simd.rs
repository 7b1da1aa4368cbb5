//! Run-time SIMD dispatch of the class pass (AVX-512, AVX2 with FMA, portable)
//! and the vector primitives it is built from: the branch-free `exp`, fused
//! `axpy` and the fixed 8-lane sums and maxima that make every copy return the
//! same bits.

use super::kernel::{class_sum_impl, Scratch, Table};
use super::tangent::{tangent_class_impl, TangentScratch};

/// `sum_beta P(beta) CE(h(x(z_k, beta)), k)` for one class; with `GRAD` also adds
/// `sum_beta P(beta) [beta_l -> t] (softmax(h) - e_k)` into `g` (layout of `A`).
///
/// Dispatches at run time to a copy compiled for AVX-512 or AVX2 (with FMA) when
/// the CPU has it. Every copy performs the same IEEE operations in the same order
/// (explicit fused multiply-adds only, which are correctly rounded in hardware and
/// in the portable `f64::mul_add`; fixed 8-lane partial sums), so the result is
/// bitwise the same whichever copy runs.
pub(super) fn class_sum<const GRAD: bool>(
    table: &Table,
    k: usize,
    sc: &mut Scratch,
    g: &mut [f64],
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let fma = std::arch::is_x86_feature_detected!("fma");
        if fma && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked just above).
            return unsafe { class_sum_avx512::<GRAD>(table, k, sc, g) };
        }
        if fma && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { class_sum_avx2::<GRAD>(table, k, sc, g) };
        }
    }
    class_sum_impl::<GRAD>(table, k, sc, g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn class_sum_avx512<const GRAD: bool>(
    table: &Table,
    k: usize,
    sc: &mut Scratch,
    g: &mut [f64],
) -> f64 {
    class_sum_impl::<GRAD>(table, k, sc, g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn class_sum_avx2<const GRAD: bool>(
    table: &Table,
    k: usize,
    sc: &mut Scratch,
    g: &mut [f64],
) -> f64 {
    class_sum_impl::<GRAD>(table, k, sc, g)
}

/// `dG += sum_beta P(beta) [beta_l -> t] dp` for one class (the tangent pass of
/// the Hessian-vector product, see [`super::tangent`]), dispatched at run time
/// like [`class_sum`]; every copy returns the same bits.
pub(super) fn tangent_class(
    table: &Table,
    dtable: &Table,
    k: usize,
    sc: &mut TangentScratch,
    dg: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let fma = std::arch::is_x86_feature_detected!("fma");
        if fma && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked just above).
            return unsafe { tangent_class_avx512(table, dtable, k, sc, dg) };
        }
        if fma && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { tangent_class_avx2(table, dtable, k, sc, dg) };
        }
    }
    tangent_class_impl(table, dtable, k, sc, dg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn tangent_class_avx512(
    table: &Table,
    dtable: &Table,
    k: usize,
    sc: &mut TangentScratch,
    dg: &mut [f64],
) {
    tangent_class_impl(table, dtable, k, sc, dg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tangent_class_avx2(
    table: &Table,
    dtable: &Table,
    k: usize,
    sc: &mut TangentScratch,
    dg: &mut [f64],
) {
    tangent_class_impl(table, dtable, k, sc, dg)
}

/// `y += c x` (fused multiply-add).
#[inline(always)]
pub(super) fn axpy(y: &mut [f64], c: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = c.mul_add(*xi, *yi);
    }
}

/// Number of independent partial sums / maxima in the vector kernels. Fixed, so
/// the summation order does not depend on the SIMD width.
pub(super) const LANES: usize = 8;

/// Pairwise total of the lanes, in a fixed order.
#[inline(always)]
pub(super) fn lanes_total(acc: &[f64; LANES]) -> f64 {
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

#[inline(always)]
pub(super) fn lanes_fold_max(acc: &[f64; LANES]) -> f64 {
    acc.iter()
        .fold(f64::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// `acc[i] += x[8 q + i]` (the tail goes to the first lanes). Callers pass
/// slices that start at a multiple of [`LANES`], so the lanes always hold the same
/// elements.
#[inline(always)]
pub(super) fn lanes_add(acc: &mut [f64; LANES], x: &[f64]) {
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    for (i, &v) in rest.iter().enumerate() {
        acc[i] += v;
    }
}

/// `acc[i] = fma(x[8 q + i], y[8 q + i], acc[i])`, like [`lanes_add`].
#[inline(always)]
pub(super) fn lanes_fma(acc: &mut [f64; LANES], x: &[f64], y: &[f64]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let cx = x.chunks_exact(LANES);
    let cy = y.chunks_exact(LANES);
    let (rx, ry) = (cx.remainder(), cy.remainder());
    for (a, b) in cx.zip(cy) {
        for i in 0..LANES {
            acc[i] = a[i].mul_add(b[i], acc[i]);
        }
    }
    for (i, (&a, &b)) in rx.iter().zip(ry).enumerate() {
        acc[i] = a.mul_add(b, acc[i]);
    }
}

/// `acc[i] = max(acc[i], x[8 q + i])`, like [`lanes_add`].
#[inline(always)]
pub(super) fn lanes_max_into(acc: &mut [f64; LANES], x: &[f64]) {
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    for (i, &v) in rest.iter().enumerate() {
        acc[i] = if v > acc[i] { v } else { acc[i] };
    }
}

/// `max_j h_j` (exact whatever the order).
#[inline(always)]
pub(super) fn lanes_max(h: &[f64]) -> f64 {
    let mut acc = [f64::NEG_INFINITY; LANES];
    lanes_max_into(&mut acc, h);
    lanes_fold_max(&acc)
}

/// `e_j = exp(h_j - shift)`, returns `sum_j e_j` summed in [`LANES`] partial sums
/// in a fixed order.
#[inline(always)]
pub(super) fn exp_store(h: &[f64], shift: f64, e: &mut [f64]) -> f64 {
    for (ex, &hx) in e.iter_mut().zip(h) {
        *ex = exp_bounded(hx - shift);
    }
    let mut acc = [0.0; LANES];
    lanes_add(&mut acc, e);
    lanes_total(&acc)
}

/// `exp(x)` for `x <= 700`, branch-free so that loops over it vectorise, within
/// about 1 ulp of `f64::exp` for `-708 <= x <= 700` (and below `1e-307` under
/// `-708`, where it only meets sums far larger).
///
/// `x = n ln 2 + r` with `n = round(x / ln 2)` (by the `1.5 * 2^52` shifter) and
/// `|r| <= ln(2)/2` (Cody-Waite split of `ln 2`), `exp(r)` by its Taylor
/// polynomial of degree 13 (truncation below `5e-18` relative) in Estrin's scheme
/// with fused multiply-adds, and `2^n` built in the exponent bits. NaN propagates.
#[inline(always)]
pub(super) fn exp_bounded(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const SHIFTER: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
                                                  // C[i] = 1/i! (correctly rounded).
    const C: [f64; 14] = [
        1.0,
        1.0,
        0.5,
        1.666_666_666_666_666_6e-1,
        4.166_666_666_666_666_4e-2,
        8.333_333_333_333_333e-3,
        1.388_888_888_888_889e-3,
        1.984_126_984_126_984e-4,
        2.480_158_730_158_73e-5,
        2.755_731_922_398_589_3e-6,
        2.755_731_922_398_589e-7,
        2.505_210_838_544_172e-8,
        2.087_675_698_786_81e-9,
        1.605_904_383_682_161_3e-10,
    ];
    let x = if x < -708.0 { -708.0 } else { x };
    let t = x.mul_add(std::f64::consts::LOG2_E, SHIFTER);
    let n = t - SHIFTER;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let q0 = C[1].mul_add(r, C[0]);
    let q1 = C[3].mul_add(r, C[2]);
    let q2 = C[5].mul_add(r, C[4]);
    let q3 = C[7].mul_add(r, C[6]);
    let q4 = C[9].mul_add(r, C[8]);
    let q5 = C[11].mul_add(r, C[10]);
    let q6 = C[13].mul_add(r, C[12]);
    let s0 = q1.mul_add(r2, q0);
    let s1 = q3.mul_add(r2, q2);
    let s2 = q5.mul_add(r2, q4);
    let lo = s1.mul_add(r4, s0);
    let hi = q6.mul_add(r4, s2);
    let p = hi.mul_add(r8, lo);
    // 2^n: the low bits of t hold n; n + 1023 in [1, 1023] goes to the exponent.
    let scale = f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::tests::task;
    use crate::network::{features, Params};
    use crate::task::Freq;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn fast_exp_is_within_two_ulp_of_std() {
        let mut worst: f64 = 0.0;
        for i in -2_000_000..=2_000_000 {
            let u = i as f64 / 2_000_000.0;
            // Dense near 0, covering [-708, 700].
            let x = if u < 0.0 {
                -708.0 * u * u
            } else {
                700.0 * u * u
            };
            let (a, b) = (exp_bounded(x), x.exp());
            worst = worst.max((a - b).abs() / b);
        }
        assert!(
            worst <= 2.0 * f64::EPSILON,
            "worst relative error {worst:e}"
        );
        assert_eq!(exp_bounded(0.0), 1.0);
        assert!(exp_bounded(-800.0) < 1e-306);
        assert!(exp_bounded(f64::NAN).is_nan());
    }

    #[test]
    fn vector_kernels_agree_with_the_portable_copy() {
        // The dispatched copy (AVX-512 / AVX2 when present) and the portable one
        // give the same bits.
        let t = task(3, 5, Some(13), Some(1e-5), Freq::Zipf { exponent: 1.0 });
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let p = Params::random(&t, 1.0, &mut rng);
        let phi = features(&p, t.norm());
        let table = Table::new(&t, &p, &phi);
        for k in 0..t.k() {
            let mut sc = Scratch::new(&t, true);
            let mut g1 = vec![0.0; table.a.len()];
            let mut g2 = g1.clone();
            let r1 = class_sum::<true>(&table, k, &mut sc, &mut g1);
            let r2 = class_sum_impl::<true>(&table, k, &mut sc, &mut g2);
            assert_eq!(r1.to_bits(), r2.to_bits());
            assert!(g1.iter().zip(&g2).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn tangent_kernels_agree_with_the_portable_copy() {
        use crate::limit::tangent::{tangent_class_impl, TangentScratch};
        let t = task(3, 5, Some(13), Some(1e-5), Freq::Zipf { exponent: 1.0 });
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let p = Params::random(&t, 1.0, &mut rng);
        let dp = Params::random(&t, 1.0, &mut rng);
        let phi = features(&p, t.norm());
        let table = Table::new(&t, &p, &phi);
        let dtable = Table::from_entries(&t, Table::new(&t, &dp, &phi).a);
        for k in 0..t.k() {
            let mut sc = TangentScratch::new(&t);
            let mut g1 = vec![0.0; table.a.len()];
            let mut g2 = g1.clone();
            tangent_class(&table, &dtable, k, &mut sc, &mut g1);
            tangent_class_impl(&table, &dtable, k, &mut sc, &mut g2);
            assert!(g1.iter().any(|x| *x != 0.0));
            assert!(g1.iter().zip(&g2).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
