//! Which configuration the certified minimiser is (docs/certificate.md §4): the
//! predicted configuration `theta(c*)` — exact frame, exact reduced critical
//! constants `c*` — is moved by a symmetry onto the slice ball, where the only
//! critical point is the certified minimiser.
//!
//! With `delta = theta(c*) - theta_hat`, `||delta|| <= eps`, the symmetries act
//! linearly on the augmented vector `(theta, 1)` (a shift of `w_t` is a linear map
//! there), `Psi(t) = exp(sum_i t_i A_i) (theta(c*), 1)`, and `F(t)` the pivot
//! coordinates of `Psi(t) - theta_hat`. With `B` the tangent vectors on the
//! pivots (`sigma_min(B) >= sigma`), `alpha = sqrt(sum_i ||A_i||^2)` and `T =
//! ||(theta_hat, 1)|| + eps`, the map `t -> t - B^{-1} F(t)` is a contraction of the
//! ball `||t|| <= rho = 2 eps / sigma` when
//!
//! `q = (alpha eps + alpha (e^{alpha rho} - 1) T) / sigma <= 1/2`
//!
//! (`||D exp(M)[E] - E|| <= ||E|| (e^{||M||} - 1)`, `||M|| <= alpha ||t||`). Its
//! fixed point gives a symmetric image of `theta(c*)` on the slice, within
//! `(e^{alpha rho} - 1) T + eps` of `theta_hat`; when that is below the radius `r`,
//! the image is the slice's unique critical point.

use super::ival::{norm_upper, pt, zero, I};
use super::slice::Generator;
use crate::task::Task;

/// Entry `j` of the `i`-th Helmert vector of `R^m`, enclosed.
fn helmert(i: usize, j: usize) -> I {
    let s = pt((i * (i + 1)) as f64).sqrt();
    match j.cmp(&i) {
        std::cmp::Ordering::Less => pt(1.0) / s,
        std::cmp::Ordering::Equal => -pt(i as f64) / s,
        std::cmp::Ordering::Greater => zero(),
    }
}

/// The equiangular frame of [`crate::collapse::equiangular_frame`] (same Helmert
/// construction, `n_c x d` row-major), enclosed entry by entry.
pub fn frame(n_c: usize, d: usize, mean_zero: bool) -> Vec<I> {
    let scale = (pt(n_c as f64) / pt((n_c - 1) as f64)).sqrt();
    let mut f = vec![zero(); n_c * d];
    for a in 0..n_c {
        for i in 0..n_c - 1 {
            let g = scale * helmert(i + 1, a);
            if mean_zero {
                for j in 0..(i + 2).min(d) {
                    f[a * d + j] += g * helmert(i + 1, j);
                }
            } else {
                f[a * d + i] += g;
            }
        }
    }
    f
}

/// `theta(c)` of the collapsed family for every `c` in the box `consts`
/// (`(r_1..r_{s_c}, b)`, or `(b)` with LayerNorm where `w = sqrt(d) f`), flat.
pub fn family_point(task: &Task, consts: &[I], layer_norm: bool) -> Vec<I> {
    let (n_c, d) = (task.n_c(), task.dim());
    let f = frame(n_c, d, layer_norm);
    let b = consts[consts.len() - 1];
    let rho: Vec<I> = if layer_norm {
        vec![pt(d as f64).sqrt(); task.s_c()]
    } else {
        consts[..task.s_c()].to_vec()
    };
    let mut x = vec![zero(); task.n_params()];
    for alpha in 0..n_c {
        for (beta, &r) in rho.iter().enumerate() {
            let t = task.token(alpha, beta);
            for c in 0..d {
                x[t * d + c] = r * f[alpha * d + c];
            }
        }
    }
    let off = task.n_w() * d;
    for (i, &alpha) in task.z().iter().enumerate() {
        for c in 0..d {
            x[off + i * d + c] = b * f[alpha * d + c];
        }
    }
    x
}

/// The numbers of the identification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Identification {
    /// `||theta(c*) - theta_hat|| <= eps`.
    pub eps: f64,
    /// The contraction factor `q` (must be `<= 1/2`).
    pub q: f64,
    /// Distance of the symmetric image from `theta_hat` (must be `<= r`).
    pub distance: f64,
    pub passed: bool,
}

/// The identification test of the module docs.
pub fn identify(
    theta_hat: &[f64],
    family: &[I],
    chosen: &[Generator],
    d: usize,
    sigma: f64,
    r: f64,
) -> Identification {
    let delta: Vec<I> = family
        .iter()
        .zip(theta_hat)
        .map(|(&f, &t)| f - pt(t))
        .collect();
    let eps = norm_upper(&delta);
    if chosen.is_empty() {
        // No symmetry: theta(c*) itself must lie in the ball.
        return Identification {
            eps,
            q: 0.0,
            distance: eps,
            passed: eps <= r,
        };
    }
    let aug = |g: &Generator| match g {
        Generator::Shift { .. } => pt(d as f64).sqrt(),
        other => pt(other.norm_bound()),
    };
    let alpha = chosen.iter().fold(zero(), |a, g| a + aug(g).sqr()).sqrt();
    let theta_norm = pt(norm_upper(
        &theta_hat.iter().map(|&v| pt(v)).collect::<Vec<_>>(),
    ));
    let big_t = (theta_norm.sqr() + pt(1.0)).sqrt() + pt(eps);
    let sig = pt(sigma);
    let rho = pt(2.0) * pt(eps) / sig;
    let grow = (alpha * rho).exp() - pt(1.0);
    let q = ((alpha * pt(eps) + alpha * grow * big_t) / sig).sup();
    let distance = (grow * big_t + pt(eps)).sup();
    let passed = sigma > 0.0 && eps.is_finite() && q <= 0.5 && distance <= r;
    Identification {
        eps,
        q,
        distance,
        passed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collapse::equiangular_frame;

    #[test]
    fn the_interval_frame_encloses_the_float_frame() {
        for (n_c, d, mz) in [(3, 4, false), (3, 4, true), (4, 3, false), (5, 7, true)] {
            let f = frame(n_c, d, mz);
            let g = equiangular_frame(n_c, d, mz).unwrap();
            for (a, b) in f.iter().zip(&g) {
                assert!((a.mid() - b).abs() <= 4.0 * f64::EPSILON, "{a:?} vs {b}");
                assert!(a.wid() <= 8.0 * f64::EPSILON, "{a:?}");
            }
            // <f_a, f_b> = -1/(n_c - 1) is enclosed.
            let dot: I = (0..d).fold(zero(), |acc, c| acc + f[c] * f[d + c]);
            let exact = -pt(1.0) / pt((n_c - 1) as f64);
            assert!(!dot.disjoint(exact), "{dot:?}");
        }
    }
}
