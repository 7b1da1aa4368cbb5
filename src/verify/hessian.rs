//! The Hessian of the exact limit risk at a point, and its spectrum transverse to
//! the orbit of the known symmetries.

use crate::collapse;
use crate::limit;
use crate::network::Params;
use crate::task::Task;
use nalgebra::{DMatrix, SymmetricEigen};
use rayon::prelude::*;
use serde::Serialize;

/// Hessian summary at the predicted configuration.
#[derive(Debug, Clone, Serialize)]
pub struct HessianReport {
    pub min_eig: f64,
    pub max_eig: f64,
    /// Eigenvalues with `|lambda| <= 1e-7 max|lambda|`.
    pub near_zero: usize,
    /// Dimension of the span of the symmetry directions at the point.
    pub symmetry_dim: usize,
    /// Smallest eigenvalue of the Hessian restricted to the complement of the symmetry directions.
    pub transverse_min_eig: f64,
}

/// Hessian of the exact limit risk at `p` by central differences of the exact
/// gradient, step `h = 1e-5 max(1, |x_i|)`, symmetrised.
pub fn hessian_fd(task: &Task, p: &Params) -> DMatrix<f64> {
    let x0 = p.to_flat();
    let n = x0.len();
    let cols: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let h = 1e-5 * x0[i].abs().max(1.0);
            let mut xp = x0.clone();
            xp[i] += h;
            let mut xm = x0.clone();
            xm[i] -= h;
            let gp = limit::risk_grad(task, &p.with_flat(&xp)).1;
            let gm = limit::risk_grad(task, &p.with_flat(&xm)).1;
            gp.iter()
                .zip(&gm)
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect()
        })
        .collect();
    let h = DMatrix::from_fn(n, n, |r, c| cols[c][r]);
    (&h + h.transpose()) * 0.5
}

/// Tangent vectors of the symmetry orbit through `p`, one column each:
/// infinitesimal rotations `Omega = q_a q_b^T - q_b q_a^T` applied to every `w_t` and
/// `u_{j,l}` (`q` an orthonormal basis of `R^d`, or of `1_d^perp` with LayerNorm), and
/// with LayerNorm the scale `w_t` and shift `1_d` of each `w_t` separately.
pub fn symmetry_tangents(task: &Task, p: &Params) -> DMatrix<f64> {
    let d = p.dim;
    let basis: Vec<Vec<f64>> = if task.layer_norm().is_some() {
        collapse::ones_complement_basis(d)
    } else {
        (0..d)
            .map(|i| (0..d).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
            .collect()
    };
    let x0 = p.to_flat();
    let n = x0.len();
    let mut cols: Vec<Vec<f64>> = Vec::new();
    for a in 0..basis.len() {
        for b in a + 1..basis.len() {
            // v -> v Omega for every d-block of the flat vector
            let mut t = vec![0.0; n];
            for (blk, out) in x0.chunks(d).zip(t.chunks_mut(d)) {
                let va: f64 = blk.iter().zip(&basis[a]).map(|(x, y)| x * y).sum();
                let vb: f64 = blk.iter().zip(&basis[b]).map(|(x, y)| x * y).sum();
                for c in 0..d {
                    out[c] = va * basis[b][c] - vb * basis[a][c];
                }
            }
            cols.push(t);
        }
    }
    if task.layer_norm().is_some() {
        for tok in 0..p.n_w {
            let mut scale = vec![0.0; n];
            scale[tok * d..(tok + 1) * d].copy_from_slice(p.w_row(tok));
            cols.push(scale);
            let mut shift = vec![0.0; n];
            shift[tok * d..(tok + 1) * d]
                .iter_mut()
                .for_each(|v| *v = 1.0);
            cols.push(shift);
        }
    }
    DMatrix::from_fn(n, cols.len(), |r, c| cols[c][r])
}

/// Hessian eigen-summary, including the spectrum transverse to the symmetry orbit.
pub fn hessian_report(task: &Task, p: &Params) -> HessianReport {
    let h = hessian_fd(task, p);
    let n = h.nrows();
    let eig = SymmetricEigen::new(h.clone()).eigenvalues;
    let min_eig = eig.min();
    let max_eig = eig.max();
    let scale = eig.amax().max(1e-300);
    let near_zero = eig.iter().filter(|v| v.abs() <= 1e-7 * scale).count();
    // Orthonormal basis of the symmetry span, then of its complement.
    let t = symmetry_tangents(task, p);
    let (sym_dim, q_perp) = if t.ncols() == 0 {
        (0, DMatrix::identity(n, n))
    } else {
        let svd = (&t * t.transpose()).symmetric_eigen();
        let top = svd.eigenvalues.amax().max(1e-300);
        let mut perp = Vec::new();
        let mut dim = 0;
        for (i, &s) in svd.eigenvalues.iter().enumerate() {
            if s > 1e-10 * top {
                dim += 1;
            } else {
                perp.push(svd.eigenvectors.column(i).into_owned());
            }
        }
        (dim, DMatrix::from_columns(&perp))
    };
    let transverse_min_eig = if q_perp.ncols() == 0 {
        f64::INFINITY
    } else {
        let ht = q_perp.transpose() * &h * &q_perp;
        SymmetricEigen::new(ht).eigenvalues.min()
    };
    HessianReport {
        min_eig,
        max_eig,
        near_zero,
        symmetry_dim: sym_dim,
        transverse_min_eig,
    }
}
