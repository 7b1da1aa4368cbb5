//! First and second directional derivatives of the feature map `phi` (the
//! identity, or LayerNorm without affine parameters), row by row, for the
//! Hessian-vector product.
//!
//! For one row `w in R^d` with LayerNorm (`eps >= 0`, biased variance):
//! `c = P w` with `P = I - 1 1^T / d` the centring, `s = sqrt(|c|^2 / d + eps)`,
//! `x = c / s = phi(w)`. Its Jacobian is symmetric,
//!
//! ```text
//! J = Dphi(w) = (P - x x^T / d) / s,
//! ```
//!
//! and the derivative of `w -> J(w)^T g` along `v` (for a fixed `g`; the
//! Hessian of the scalar `<g, phi(w)>` applied to `v`) is
//!
//! ```text
//! D^2phi(w)[v]^T g = ( -a P g - b P v + (3 a b - <P v, P g> / d) x ) / s^2,
//! a = <x, v> / d,  b = <x, g> / d.
//! ```
//!
//! (Differentiate `J g = P g / s - x <x, g> / (d s)` with `ds = a`,
//! `dx = (P v - a x) / s`.) Its inner product with a third vector `y`,
//! `(-<x,v><Py,Pg> - <x,g><Py,Pv> - <x,y><Pv,Pg>) / (d s^2) + 3 <x,v><x,g><x,y> / (d^2 s^2)`,
//! is symmetric in `(v, g, y)`, as a third derivative must be. Without
//! LayerNorm `J = I` and the second derivative is zero.

use crate::network::dot;

/// `(x, s)` of one row: `x = phi(w)` and `s = sqrt(var(w) + eps)`.
fn stats(w: &[f64], eps: f64) -> (Vec<f64>, f64) {
    let d = w.len() as f64;
    let m = w.iter().sum::<f64>() / d;
    let var = w.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / d;
    let s = (var + eps).sqrt();
    (w.iter().map(|x| (x - m) / s).collect(), s)
}

/// `P v = v - mean(v) 1`.
fn centred(v: &[f64]) -> Vec<f64> {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| x - m).collect()
}

/// `dphi = Dphi(w)[v] = (P v - x <x, v> / d) / s` for one LayerNorm row.
pub(super) fn layer_norm_jvp(w: &[f64], v: &[f64], eps: f64) -> Vec<f64> {
    let (x, s) = stats(w, eps);
    let a = dot(&x, v) / w.len() as f64;
    centred(v)
        .iter()
        .zip(&x)
        .map(|(pv, xi)| (pv - a * xi) / s)
        .collect()
}

/// `D^2phi(w)[v]^T g = (-a P g - b P v + (3 a b - <Pv, Pg>/d) x) / s^2` for one
/// LayerNorm row (module docs), `a = <x, v>/d`, `b = <x, g>/d`.
pub(super) fn layer_norm_second(w: &[f64], g: &[f64], v: &[f64], eps: f64) -> Vec<f64> {
    let (x, s) = stats(w, eps);
    let d = w.len() as f64;
    let (pg, pv) = (centred(g), centred(v));
    let a = dot(&x, v) / d;
    let b = dot(&x, g) / d;
    let cx = 3.0 * a * b - dot(&pv, &pg) / d;
    let s2 = s * s;
    pg.iter()
        .zip(&pv)
        .zip(&x)
        .map(|((gi, vi), xi)| (cx * xi - a * gi - b * vi) / s2)
        .collect()
}

/// `dphi(w_t) = Dphi(w_t)[v_t]` for every row (`n x d` row-major, rows of
/// length `dim`): `v` itself without LayerNorm.
pub(super) fn features_jvp(w: &[f64], v: &[f64], dim: usize, eps: Option<f64>) -> Vec<f64> {
    match eps {
        None => v.to_vec(),
        Some(eps) => w
            .chunks(dim)
            .zip(v.chunks(dim))
            .flat_map(|(wr, vr)| layer_norm_jvp(wr, vr, eps))
            .collect(),
    }
}

/// `D^2phi(w_t)[v_t]^T g_t` for every row, added into `out`; nothing without
/// LayerNorm.
pub(super) fn add_features_second(
    w: &[f64],
    g: &[f64],
    v: &[f64],
    dim: usize,
    eps: Option<f64>,
    out: &mut [f64],
) {
    let Some(eps) = eps else { return };
    for (((wr, gr), vr), or) in w
        .chunks(dim)
        .zip(g.chunks(dim))
        .zip(v.chunks(dim))
        .zip(out.chunks_mut(dim))
    {
        for (o, x) in or.iter_mut().zip(layer_norm_second(wr, gr, vr, eps)) {
            *o += x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{layer_norm, layer_norm_backward};

    fn vectors() -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let w = vec![0.3, -1.2, 0.7, 2.1, -0.4];
        let v = vec![0.5, 0.1, -0.9, 0.2, 0.6];
        let g = vec![-0.3, 0.8, 0.4, -1.1, 0.25];
        let y = vec![1.0, -0.2, 0.3, 0.45, -0.7];
        (w, v, g, y)
    }

    #[test]
    fn jvp_and_second_derivative_match_central_differences() {
        let (w, v, g, _) = vectors();
        for eps in [0.0, 1e-5, 0.3] {
            let h = 1e-6;
            let shifted = |sign: f64| -> Vec<f64> {
                w.iter().zip(&v).map(|(a, b)| a + sign * h * b).collect()
            };
            let (wp, wm) = (shifted(1.0), shifted(-1.0));
            let jvp = layer_norm_jvp(&w, &v, eps);
            let fd: Vec<f64> = layer_norm(&wp, eps)
                .iter()
                .zip(layer_norm(&wm, eps))
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect();
            let sec = layer_norm_second(&w, &g, &v, eps);
            let fd2: Vec<f64> = layer_norm_backward(&wp, &g, eps)
                .iter()
                .zip(layer_norm_backward(&wm, &g, eps))
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect();
            for i in 0..w.len() {
                assert!((jvp[i] - fd[i]).abs() < 1e-8, "eps {eps}: {jvp:?} {fd:?}");
                assert!((sec[i] - fd2[i]).abs() < 1e-8, "eps {eps}: {sec:?} {fd2:?}");
            }
        }
    }

    #[test]
    fn third_derivative_is_symmetric() {
        let (w, v, g, y) = vectors();
        let t = |a: &[f64], b: &[f64], c: &[f64]| dot(&layer_norm_second(&w, a, b, 0.01), c);
        let base = t(&g, &v, &y);
        for other in [t(&v, &g, &y), t(&y, &v, &g), t(&g, &y, &v)] {
            assert!((other - base).abs() < 1e-14 * base.abs().max(1.0));
        }
        assert!(base.abs() > 1e-3, "non-trivial: {base}");
    }
}
