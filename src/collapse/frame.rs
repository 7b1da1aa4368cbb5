//! Equiangular frames (Helmert construction) and the collapsed configuration
//! `w_{(alpha,beta)} = r_beta f_alpha`, `u_{k,l} = b f_{z_{k,l}}` built on one.

use super::Prediction;
use crate::error::{Error, Result};
use crate::network::Params;
use crate::task::Task;

/// Entry `j` of the `i`-th Helmert vector of `R^m` (`i = 1..m-1`):
/// `1/sqrt(i(i+1))` for `j < i`, `-i/sqrt(i(i+1))` for `j = i`, 0 after.
/// The `m - 1` Helmert vectors are an orthonormal basis of `1_m^perp`.
fn helmert(i: usize, j: usize) -> f64 {
    let s = ((i * (i + 1)) as f64).sqrt();
    match j.cmp(&i) {
        std::cmp::Ordering::Less => 1.0 / s,
        std::cmp::Ordering::Equal => -(i as f64) / s,
        std::cmp::Ordering::Greater => 0.0,
    }
}

/// The Helmert vectors `H_1..H_{d-1}` of `R^d`, an orthonormal basis of the
/// orthogonal complement of `1_d` (one `Vec` of length `d` each).
pub fn ones_complement_basis(d: usize) -> Vec<Vec<f64>> {
    (1..d)
        .map(|i| (0..d).map(|j| helmert(i, j)).collect())
        .collect()
}

/// An equiangular frame `f_1..f_{n_c}` of `R^d`, row-major `n_c x d`:
/// `||f_a|| = 1`, `<f_a, f_b> = -1/(n_c-1)` for `a != b` (hence `sum_a f_a = 0`).
///
/// Construction: `g_a[i] = sqrt(n_c/(n_c-1)) h_{i+1}[a]` (`i < n_c-1`, `h_i` the
/// Helmert vectors of `R^{n_c}`) are the coordinates of the centred, normalised
/// unit vectors `e_a - 1/n_c` in the orthonormal basis `(h_i)` of `1^perp`. Without
/// `mean_zero` `f_a = (g_a, 0, .., 0)` (needs `d >= n_c-1`); with `mean_zero`
/// `f_a = sum_i g_a[i] H_{i+1}` with `H_i` the Helmert vectors of `R^d`, so every
/// `f_a` is orthogonal to `1_d` (needs `d >= n_c`). Exact up to round-off.
///
/// Errors: `n_c < 2` (name `n_c`), `d` too small (name `dim`).
pub fn equiangular_frame(n_c: usize, d: usize, mean_zero: bool) -> Result<Vec<f64>> {
    if n_c < 2 {
        return Err(Error::invalid(
            "n_c",
            n_c,
            "an equiangular frame needs at least 2 vectors",
        ));
    }
    let need = if mean_zero { n_c } else { n_c - 1 };
    if d < need {
        return Err(Error::invalid(
            "dim",
            d,
            format!(
                "an equiangular frame of {n_c} vectors{} needs d >= {need}",
                if mean_zero { " orthogonal to 1_d" } else { "" }
            ),
        ));
    }
    let scale = (n_c as f64 / (n_c - 1) as f64).sqrt();
    let mut f = vec![0.0; n_c * d];
    for a in 0..n_c {
        let row = &mut f[a * d..(a + 1) * d];
        for i in 0..n_c - 1 {
            let g = scale * helmert(i + 1, a);
            if g == 0.0 {
                continue;
            }
            if mean_zero {
                // H_{i+1} of R^d has entries at j <= i+1 only.
                for (j, v) in row.iter_mut().enumerate().take(i + 2) {
                    *v += g * helmert(i + 1, j);
                }
            } else {
                row[i] = g;
            }
        }
    }
    Ok(f)
}

/// The collapsed configuration of `pred` on the frame `frame` (row-major
/// `n_c x d`, e.g. from [`equiangular_frame`]; mean-zero for type II):
/// `w_{(alpha,beta)} = r_beta f_alpha` (type II: `r_beta = sqrt(d)`, which LayerNorm
/// with `eps = 0` maps to itself; with `eps > 0` `phi(w) = w / sqrt(1 + eps)`) and
/// `u_{k,l} = b f_{z_{k,l}}`.
///
/// Panics if `frame` is not `n_c x d` or `pred.r` does not have `s_c` entries.
pub fn build(task: &Task, pred: &Prediction, frame: &[f64]) -> Params {
    let d = task.dim();
    assert_eq!(frame.len(), task.n_c() * d, "frame must be n_c x d");
    assert_eq!(
        pred.r.len(),
        task.s_c(),
        "prediction must have s_c word norms"
    );
    let mut p = Params::zeros(task);
    for alpha in 0..task.n_c() {
        let f = &frame[alpha * d..(alpha + 1) * d];
        for (beta, &rb) in pred.r.iter().enumerate() {
            let t = task.token(alpha, beta);
            for (w, &fv) in p.w[t * d..(t + 1) * d].iter_mut().zip(f) {
                *w = rb * fv;
            }
        }
    }
    for (block, &alpha) in p.u.chunks_mut(d).zip(task.z()) {
        for (u, &fv) in block.iter_mut().zip(&frame[alpha * d..(alpha + 1) * d]) {
            *u = pred.u_norm * fv;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::dot;

    #[test]
    fn frames_are_equiangular_and_optionally_mean_zero() {
        for &(n_c, d) in &[
            (2, 1),
            (2, 2),
            (3, 2),
            (3, 3),
            (3, 100),
            (5, 4),
            (5, 9),
            (10, 10),
        ] {
            for mean_zero in [false, true] {
                if mean_zero && d < n_c {
                    assert!(equiangular_frame(n_c, d, true).is_err());
                    continue;
                }
                let f = equiangular_frame(n_c, d, mean_zero).unwrap();
                for a in 0..n_c {
                    let fa = &f[a * d..(a + 1) * d];
                    assert!((dot(fa, fa) - 1.0).abs() < 1e-15);
                    if mean_zero {
                        assert!(fa.iter().sum::<f64>().abs() < 1e-15);
                    }
                    for b in 0..a {
                        let fb = &f[b * d..(b + 1) * d];
                        assert!((dot(fa, fb) + 1.0 / (n_c - 1) as f64).abs() < 1e-15);
                    }
                }
            }
        }
    }

    #[test]
    fn small_dimensions_are_rejected_by_name() {
        for (n_c, d, mz) in [(3, 1, false), (3, 2, true), (4, 2, false)] {
            match equiangular_frame(n_c, d, mz) {
                Err(Error::InvalidParam { name, .. }) => assert_eq!(name, "dim"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            equiangular_frame(1, 3, false),
            Err(Error::InvalidParam { name: "n_c", .. })
        ));
    }
}
