//! Interval helpers on top of `inari` (IEEE 1788 intervals, outward rounding,
//! MPFR-backed `exp` and `ln`): constructors, the monotone functions the risk
//! needs, the exact token frequencies, norms, and a verified lower bound on the
//! smallest eigenvalue of an interval symmetric matrix.
//!
//! Every function returns an enclosure: for every real input inside the input
//! intervals, the exact real result lies inside the output interval.

use crate::task::{Freq, Task};
use inari::Interval;
use nalgebra::DMatrix;
use rayon::prelude::*;

/// An interval of reals `[inf, sup]` (`inari::Interval`).
pub type I = Interval;

/// The point interval `[x, x]`; the whole real line for a non-finite `x` (an
/// enclosure that proves nothing, so every test on it fails safely).
pub fn pt(x: f64) -> I {
    I::try_from((x, x)).unwrap_or(I::ENTIRE)
}

/// `[lo, hi]` (infinite ends allowed); the whole real line when `lo > hi` or an
/// end is NaN.
pub fn iv(lo: f64, hi: f64) -> I {
    I::try_from((lo, hi)).unwrap_or(I::ENTIRE)
}

/// `0`.
pub fn zero() -> I {
    pt(0.0)
}

/// `[x - r, x + r]`, rounded outward (`x`, `r >= 0` floats).
pub fn ball(x: f64, r: f64) -> I {
    pt(x) + iv(-r, r)
}

/// True when both ends are finite.
pub fn is_finite(x: I) -> bool {
    !x.is_empty() && x.inf().is_finite() && x.sup().is_finite()
}

/// `ln(1 + e^z)`, increasing in `z`: the enclosure joins the rigorous values at
/// the two ends (no overestimation from the formula).
pub fn softplus(z: I) -> I {
    let at = |x: f64| -> I {
        let p = pt(x);
        if x <= 0.0 {
            (pt(1.0) + p.exp()).ln()
        } else {
            p + (pt(1.0) + (-p).exp()).ln()
        }
    };
    iv(at(z.inf()).inf(), at(z.sup()).sup())
}

/// The logistic function `1 / (1 + e^{-z})`, increasing in `z` (ends joined as in
/// [`softplus`]).
pub fn logistic(z: I) -> I {
    let at = |x: f64| -> I { pt(1.0) / (pt(1.0) + (-pt(x)).exp()) };
    iv(at(z.inf()).inf(), at(z.sup()).sup())
}

/// `s(1 - s)` for `s = logistic(z)`, the derivative of the logistic function,
/// enclosed over `z` (it is largest at `z = 0`, decreasing in `|z|`).
pub fn logistic_slope(z: I) -> I {
    let at = |x: f64| -> I {
        let s = logistic(pt(x));
        s * (pt(1.0) - s)
    };
    let (a, b) = (at(z.inf()), at(z.sup()));
    let lo = a.inf().min(b.inf());
    let hi = if z.contains(0.0) {
        0.25
    } else {
        a.sup().max(b.sup())
    };
    iv(lo.max(0.0), hi)
}

/// The exact token frequencies of `task`: `1/s_c` (uniform) or
/// `beta^{-s} / sum_b b^{-s}` (Zipf, `s` the binary64 exponent of the task).
pub fn frequencies(task: &Task) -> Vec<I> {
    let s_c = task.s_c();
    match task.freq() {
        Freq::Uniform => vec![pt(1.0) / pt(s_c as f64); s_c],
        Freq::Zipf { exponent } => {
            let raw: Vec<I> = (1..=s_c)
                .map(|b| {
                    if exponent == 0.0 {
                        pt(1.0)
                    } else {
                        pt(b as f64).pow(pt(-exponent))
                    }
                })
                .collect();
            let total = raw.iter().fold(zero(), |a, &x| a + x);
            raw.into_iter().map(|x| x / total).collect()
        }
    }
}

/// `sum_i x_i`.
pub fn sum(xs: impl IntoIterator<Item = I>) -> I {
    xs.into_iter().fold(zero(), |a, x| a + x)
}

/// `sum_i x_i y_i`.
pub fn dot(x: &[I], y: &[I]) -> I {
    x.iter().zip(y).fold(zero(), |a, (&p, &q)| a + p * q)
}

/// A rigorous upper bound on the Euclidean norm of every vector in the box `x`.
pub fn norm_upper(x: &[I]) -> f64 {
    sum(x.iter().map(|v| pt(v.mag()).sqr())).sqrt().sup()
}

/// A rigorous upper bound on `max ||E||_2` over the interval matrix `e` (`n x n`
/// row-major): `min(||mag E||_F, sqrt(||mag E||_1 ||mag E||_inf))`.
pub fn spectral_norm_upper(e: &[I], n: usize) -> f64 {
    let frob = sum(e.iter().map(|v| pt(v.mag()).sqr())).sqrt().sup();
    let mut row = vec![zero(); n];
    let mut col = vec![zero(); n];
    for i in 0..n {
        for j in 0..n {
            let m = pt(e[i * n + j].mag());
            row[i] += m;
            col[j] += m;
        }
    }
    let max_sup = |v: &[I]| v.iter().map(|x| x.sup()).fold(0.0f64, f64::max);
    let hoelder = (pt(max_sup(&row)) * pt(max_sup(&col))).sqrt().sup();
    frob.min(hoelder)
}

/// The result of [`verified_min_eig`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EigBound {
    /// A floating-point estimate of the smallest eigenvalue of the midpoint matrix.
    pub estimate: f64,
    /// A proved lower bound on the smallest eigenvalue of every symmetric matrix
    /// in the interval matrix (`-inf` when none could be proved).
    pub lower: f64,
}

/// A verified lower bound `m` with `lambda_min(A) >= m` for every symmetric `A`
/// in the interval matrix `a` (`n x n`, row-major, symmetric).
///
/// Method: `M = mid(a)`; a floating-point estimate `l` of `lambda_min(M)`; for a
/// shift `s < l` the floating-point Cholesky factor `C` of `M - s I` (any real
/// matrix: nothing about its rounding is assumed); then, in interval arithmetic,
/// `E = a - s I - C Cᵀ`. Every `A` in `a` is `s I + C Cᵀ + E_A` with `E_A` in `E`,
/// and `C Cᵀ` is positive semidefinite, so `lambda_min(A) >= s - ||E_A||_2 >=
/// s - ` [`spectral_norm_upper`]`(E)`. Shifts `0.99 l`, `0.9 l`, `0.5 l` are tried
/// in turn; the best proved bound is returned.
pub fn verified_min_eig(a: &[I], n: usize) -> EigBound {
    if n == 0 {
        return EigBound {
            estimate: f64::INFINITY,
            lower: f64::INFINITY,
        };
    }
    let mid = DMatrix::from_fn(n, n, |i, j| 0.5 * (a[i * n + j].mid() + a[j * n + i].mid()));
    if mid.iter().any(|v| !v.is_finite()) || a.iter().any(|v| !is_finite(*v)) {
        return EigBound {
            estimate: f64::NAN,
            lower: f64::NEG_INFINITY,
        };
    }
    let estimate = mid
        .clone()
        .symmetric_eigen()
        .eigenvalues
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let mut best = f64::NEG_INFINITY;
    if estimate > 0.0 {
        for frac in [0.99, 0.9, 0.5] {
            let s = frac * estimate;
            let Some(c) = cholesky(&mid, s) else { continue };
            // E = a - s I - C Cᵀ, lower triangle row by row (in parallel), mirrored.
            let rows: Vec<Vec<I>> = (0..n)
                .into_par_iter()
                .map(|i| {
                    (0..=i)
                        .map(|j| {
                            let mut acc = a[i * n + j];
                            if i == j {
                                acc -= pt(s);
                            }
                            for k in 0..=j {
                                acc -= pt(c[i * n + k]) * pt(c[j * n + k]);
                            }
                            acc
                        })
                        .collect()
                })
                .collect();
            let mut e = vec![zero(); n * n];
            for (i, row) in rows.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    e[i * n + j] = v;
                    e[j * n + i] = v;
                }
            }
            let bound = (pt(s) - pt(spectral_norm_upper(&e, n))).inf();
            best = best.max(bound);
            if bound > 0.5 * s {
                break;
            }
        }
    }
    EigBound {
        estimate,
        lower: best,
    }
}

/// The floating-point Cholesky factor (row-major lower triangle) of `m - s I`,
/// or `None` at a non-positive pivot.
fn cholesky(m: &DMatrix<f64>, s: f64) -> Option<Vec<f64>> {
    let n = m.nrows();
    let mut c = vec![0.0; n * n];
    for j in 0..n {
        let mut d = m[(j, j)] - s;
        for k in 0..j {
            d -= c[j * n + k] * c[j * n + k];
        }
        if d.is_nan() || d <= 0.0 {
            return None;
        }
        let dj = d.sqrt();
        c[j * n + j] = dj;
        for i in j + 1..n {
            let mut v = m[(i, j)];
            for k in 0..j {
                v -= c[i * n + k] * c[j * n + k];
            }
            c[i * n + j] = v / dj;
        }
    }
    Some(c)
}

/// `a` as `0x1.xxxp+e` hexadecimal (exact, round-trips through [`parse_hex`]).
pub fn hex(a: f64) -> String {
    if a.is_nan() {
        return "nan".into();
    }
    if a.is_infinite() {
        return if a > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let bits = a.to_bits();
    let sign = if bits >> 63 == 1 { "-" } else { "" };
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    if exp == 0 && frac == 0 {
        return format!("{sign}0x0p+0");
    }
    let (lead, e) = if exp == 0 {
        (0, -1022)
    } else {
        (1, exp - 1023)
    };
    format!("{sign}0x{lead}.{frac:013x}p{e:+}")
}

/// Parses the output of [`hex`] (and `inf`, `-inf`, `nan`).
pub fn parse_hex(s: &str) -> Option<f64> {
    let s = s.trim();
    match s {
        "inf" => return Some(f64::INFINITY),
        "-inf" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let rest = rest.strip_prefix("0x")?;
    let (mant, e) = rest.split_once('p')?;
    let e: i64 = e.parse().ok()?;
    let (lead, frac) = match mant.split_once('.') {
        Some((l, f)) => (l, f),
        None => (mant, ""),
    };
    let lead: u64 = lead.parse().ok()?;
    if lead > 1 || frac.len() > 13 {
        return None;
    }
    let frac = if frac.is_empty() {
        0
    } else {
        u64::from_str_radix(&format!("{frac:0<13}"), 16).ok()?
    };
    let bits = if lead == 0 {
        if frac == 0 {
            0
        } else if e == -1022 {
            frac
        } else {
            return None;
        }
    } else {
        let biased = e + 1023;
        if !(1..=2046).contains(&biased) {
            return None;
        }
        ((biased as u64) << 52) | frac
    };
    let v = f64::from_bits(bits);
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotone_functions_enclose_the_float_values() {
        for z in [-800.0, -30.0, -1.0, 0.0, 0.3, 5.0, 40.0, 700.0] {
            let x = pt(z);
            let sp = z.max(0.0) + (-z.abs()).exp().ln_1p();
            assert!(
                softplus(x).contains(sp)
                    || (softplus(x).mid() - sp).abs() <= 1e-15 * sp.abs().max(1e-300)
            );
            let lg = 1.0 / (1.0 + (-z).exp());
            let e = logistic(x);
            assert!((e.mid() - lg).abs() <= 1e-15, "{z}: {e:?} vs {lg}");
            assert!(e.wid() <= 1e-15);
        }
        let wide = iv(-1.0, 2.0);
        assert_eq!(logistic_slope(wide).sup(), 0.25);
        assert!(softplus(wide).contains(2f64.ln()));
    }

    #[test]
    fn zipf_frequencies_enclose_the_law_and_sum_to_one() {
        let t = crate::task::TaskConfig {
            s_c: 4,
            freq: Freq::Zipf { exponent: 1.0 },
            ..Default::default()
        }
        .build()
        .unwrap();
        let mu = frequencies(&t);
        let h = 1.0 + 0.5 + 1.0 / 3.0 + 0.25;
        for (b, m) in mu.iter().enumerate() {
            let exact = 1.0 / ((b + 1) as f64 * h);
            assert!((m.mid() - exact).abs() <= 4e-16 * exact, "{m:?} vs {exact}");
            assert!(m.wid() <= 1e-15);
        }
        assert!(sum(mu.iter().copied()).contains(1.0));
    }

    #[test]
    fn the_eigenvalue_bound_is_proved_and_sharp() {
        // tridiag(-1, 2, -1): lambda_min = 2 - 2 cos(pi/(n+1)).
        let n = 30;
        let mut a = vec![zero(); n * n];
        for i in 0..n {
            a[i * n + i] = pt(2.0);
            if i + 1 < n {
                a[i * n + i + 1] = pt(-1.0);
                a[(i + 1) * n + i] = pt(-1.0);
            }
        }
        let exact = 2.0 - 2.0 * (std::f64::consts::PI / (n as f64 + 1.0)).cos();
        let b = verified_min_eig(&a, n);
        assert!(
            b.lower <= exact && b.lower >= 0.98 * exact,
            "{b:?} vs {exact}"
        );
        // Widen the entries: the bound drops by about the radius matrix's norm.
        let wide: Vec<I> = a.iter().map(|&x| x + iv(-1e-4, 1e-4)).collect();
        let bw = verified_min_eig(&wide, n);
        assert!(bw.lower < b.lower && bw.lower > exact - n as f64 * 1e-4 - 0.02 * exact);
        // An indefinite matrix is never proved positive.
        let mut ind = a.clone();
        ind[0] = pt(-1.0);
        assert!(verified_min_eig(&ind, n).lower <= 0.0);
    }

    #[test]
    fn hex_floats_round_trip() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -2.5,
            0.1,
            1e-310,
            f64::MAX,
            f64::MIN_POSITIVE,
            3.0e-5,
        ] {
            let s = hex(v);
            assert_eq!(parse_hex(&s).unwrap().to_bits(), v.to_bits(), "{s}");
        }
        assert_eq!(hex(1.0), "0x1.0000000000000p+0");
        assert!(parse_hex("0x2.0p+0").is_none());
        assert!(parse_hex("bogus").is_none());
    }
}
