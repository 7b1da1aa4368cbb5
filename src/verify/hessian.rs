//! The Hessian of the exact limit risk at a point, and its spectrum transverse to
//! the orbit of the known symmetries.
//!
//! Both paths use the exact (analytic) Hessian-vector products of the limit
//! risk ([`limit::HessianOperator`], docs in `limit::hvp`): no finite
//! differences, only floating-point round-off. They are chosen by
//! [`hessian_report`] from the number of parameters `n`: up to
//! [`DENSE_MAX_PARAMS`] the dense Hessian [`limit::hessian`] (`n` products, the
//! columns `H e_i`, then a dense eigen-decomposition); above, the Hessian-free
//! certificate [`hessian_report_lanczos`]: Lanczos on Hessian-vector products,
//! with the symmetry tangents projected out. On the default instances (about
//! 350 parameters, each product a few milliseconds) the dense path's `n`
//! products cost well under a second and give the complete spectrum (Lanczos
//! needs 25–50 products there), so the dense path is kept there.

pub use crate::limit::hessian_vector_product;
pub use crate::spectrum::lanczos::{lanczos, Lanczos};

use crate::collapse;
use crate::error::{Error, Result};
use crate::limit::{self, HessianOperator};
use crate::network::Params;
use crate::task::Task;
use nalgebra::{DMatrix, SymmetricEigen};
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
    /// `"dense"` or `"lanczos"`.
    pub method: String,
    /// Exact Hessian-vector products used (`n` dense, one per Lanczos step,
    /// symmetry tangent and probe with Lanczos); each costs about one exact
    /// gradient.
    pub hessian_products: usize,
    /// Lanczos only: `max_i ||H q_i||` over an orthonormal basis `q_i` of the
    /// symmetry tangents (zero at an exact critical point); the spectrum is the
    /// union of the tangent and transverse blocks up to this.
    pub tangent_residual: f64,
    /// Estimated error of the computed eigenvalues: for the dense path the
    /// Frobenius norm of the antisymmetric part `(H - H^T)/2` of the matrix of
    /// exact products `H e_i` before it is symmetrised (the exact Hessian is
    /// symmetric, so this is their round-off, measured); with Lanczos ten times
    /// the asymmetry `|v^T H w - w^T H v|` of two fixed unit probes. Curvature
    /// within a few times this is noise, whatever the size of the largest
    /// eigenvalue.
    pub error_estimate: f64,
}

/// Above this many parameters [`hessian_report`] and [`min_eigenpair`] use
/// Lanczos on Hessian-vector products instead of the dense Hessian.
pub const DENSE_MAX_PARAMS: usize = 600;

/// Lanczos stops when the extreme Ritz values have residual `<= LANCZOS_TOL * max(1, |theta_max|)`.
pub const LANCZOS_TOL: f64 = 1e-9;

/// Most Hessian-vector products of one Lanczos run.
pub const LANCZOS_MAX_PRODUCTS: usize = 400;

/// Orthonormal basis of the span of the symmetry tangents at `p` (from the
/// eigen-decomposition of the small Gram matrix `T^T T`, keeping eigenvalues
/// `> 1e-10` times the largest).
pub fn symmetry_basis(task: &Task, p: &Params) -> Vec<Vec<f64>> {
    let t = symmetry_tangents(task, p);
    if t.ncols() == 0 {
        return Vec::new();
    }
    let gram = t.transpose() * &t;
    let eig = SymmetricEigen::new(gram);
    let top = eig.eigenvalues.amax().max(1e-300);
    let mut out = Vec::new();
    for (i, &s) in eig.eigenvalues.iter().enumerate() {
        if s > 1e-10 * top {
            let col = &t * eig.eigenvectors.column(i) / s.sqrt();
            out.push(col.iter().copied().collect());
        }
    }
    out
}

/// `v / ||v||`.
fn unit(v: Vec<f64>) -> Vec<f64> {
    let n = crate::network::dot(&v, &v).sqrt();
    v.into_iter().map(|a| a / n).collect()
}

/// A deterministic start vector for Lanczos (a fixed quasi-random sequence).
fn start_vector(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i as f64 + 1.0) * 0.618_033_988_749_895).fract() - 0.5)
        .collect()
}

/// Smallest Hessian eigenvalue with its unit eigenvector, and the largest eigenvalue.
#[derive(Debug, Clone)]
pub struct EigenPair {
    pub min_eig: f64,
    pub max_eig: f64,
    pub vector: Vec<f64>,
}

/// Smallest eigenpair of the Hessian at `p` transverse to the symmetry orbit
/// (at a critical point the tangents are null directions, never negative ones):
/// dense below [`DENSE_MAX_PARAMS`] parameters, Lanczos above (at most
/// `LANCZOS_MAX_PRODUCTS` products, relative residual `LANCZOS_TOL`).
pub fn min_eigenpair(task: &Task, p: &Params) -> Result<EigenPair> {
    min_eigenpair_with(task, p, LANCZOS_MAX_PRODUCTS, LANCZOS_TOL)
}

/// [`min_eigenpair`] with the Lanczos budget and tolerance given (the dense
/// path ignores them). The smallest Ritz value is never below the smallest
/// eigenvalue, so a short run can miss a negative eigenvalue but never invents one.
pub fn min_eigenpair_with(
    task: &Task,
    p: &Params,
    max_products: usize,
    rel_tol: f64,
) -> Result<EigenPair> {
    let n = p.flat_len();
    let q = symmetry_basis(task, p);
    if q.len() >= n {
        return Err(Error::Optimiser(
            "no direction transverse to the symmetries".into(),
        ));
    }
    if n <= DENSE_MAX_PARAMS {
        let h = limit::hessian(task, p);
        let qp = complement(&q, n);
        let ht = qp.transpose() * &h * &qp;
        let eig = SymmetricEigen::new(ht);
        let (imin, _) = eig.eigenvalues.argmin();
        let v = &qp * eig.eigenvectors.column(imin);
        return Ok(EigenPair {
            min_eig: eig.eigenvalues[imin],
            max_eig: eig.eigenvalues.max(),
            vector: v.iter().copied().collect(),
        });
    }
    let op = HessianOperator::new(task, p);
    let l = lanczos(|v| op.apply(v), &q, &start_vector(n), max_products, rel_tol);
    Ok(EigenPair {
        min_eig: l.ritz[0],
        max_eig: *l.ritz.last().expect("one Ritz value"),
        vector: l.min_vector,
    })
}

/// Orthonormal basis (columns) of the complement of the orthonormal `q` in `R^n`.
fn complement(q: &[Vec<f64>], n: usize) -> DMatrix<f64> {
    if q.is_empty() {
        return DMatrix::identity(n, n);
    }
    let qm = DMatrix::from_fn(n, q.len(), |r, c| q[c][r]);
    let proj = DMatrix::identity(n, n) - &qm * qm.transpose();
    let eig = SymmetricEigen::new(proj);
    let cols: Vec<_> = eig
        .eigenvalues
        .iter()
        .enumerate()
        .filter(|(_, &s)| s > 0.5)
        .map(|(i, _)| eig.eigenvectors.column(i).into_owned())
        .collect();
    DMatrix::from_columns(&cols)
}

/// The Hessian-free certificate at `p` (`n` parameters, `s` symmetry tangents):
///
/// 1. an orthonormal basis `q_1..q_s` of the tangents ([`symmetry_basis`]) and
///    `H q_i` for each: `tangent_residual = max_i ||H q_i||`, and the Rayleigh
///    quotients `q_i^T H q_i`;
/// 2. Lanczos ([`lanczos`]) on `P H P`, `P = I - sum q_i q_i^T`, with
///    the exact products of [`HessianOperator`]: its extreme Ritz values are the transverse
///    minimum and (with step 1) the largest eigenvalue.
///
/// At a critical point `H q_i = 0`, so the spectrum of `H` is `{0}^s` together with
/// that of `P H P` on `range(P)`; with `r = tangent_residual` every eigenvalue moves
/// by at most `sqrt(s) r` from that union. Hence `min_eig = min(transverse min,
/// min_i q_i^T H q_i)`, and `near_zero` counts the tangents with `||H q_i|| <= 1e-7 scale`
/// plus the transverse Ritz values with `|theta| <= 1e-7 scale` (a lower bound when one
/// of those is multiple: Lanczos sees one copy per eigenspace). When
/// `tangent_residual > 1e-7 scale` (the tangents are not null: not a critical
/// point, or not exact symmetries such as the scale of `w_t` under LayerNorm with
/// `eps > 0`), the split does not hold and `min_eig`, `max_eig`, `near_zero` come
/// from a second Lanczos run on `H` itself (`near_zero` then counts one per eigenspace).
pub fn hessian_report_lanczos(task: &Task, p: &Params) -> HessianReport {
    let n = p.flat_len();
    let q = symmetry_basis(task, p);
    let op = HessianOperator::new(task, p);
    let mut products = 0;
    let l = if q.len() < n {
        let l = lanczos(
            |v| op.apply(v),
            &q,
            &start_vector(n),
            LANCZOS_MAX_PRODUCTS,
            LANCZOS_TOL,
        );
        products += l.products;
        Some(l)
    } else {
        None
    };
    let tangent_products: Vec<(f64, f64)> = q
        .iter()
        .map(|qi| {
            let hq = op.apply(qi);
            let rq: f64 = hq.iter().zip(qi).map(|(a, b)| a * b).sum();
            (hq.iter().map(|a| a * a).sum::<f64>().sqrt(), rq)
        })
        .collect();
    products += q.len();
    let (t_min, t_max) = match &l {
        Some(l) => (l.ritz[0], *l.ritz.last().expect("one Ritz value")),
        None => (f64::INFINITY, f64::NEG_INFINITY),
    };
    let tangent_residual = tangent_products.iter().map(|t| t.0).fold(0.0, f64::max);
    let rq_min = tangent_products
        .iter()
        .map(|t| t.1)
        .fold(f64::INFINITY, f64::min);
    let rq_max = tangent_products
        .iter()
        .map(|t| t.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let max_eig = t_max.max(rq_max);
    let scale = max_eig.abs().max(t_min.abs()).max(1e-300);
    let near_tangent = tangent_products
        .iter()
        .filter(|t| t.0 <= 1e-7 * scale)
        .count();
    let near = |l: &Lanczos, scale: f64| {
        l.ritz
            .iter()
            .zip(&l.residuals)
            .filter(|(v, r)| v.abs() <= 1e-7 * scale && **r <= 1e-7 * scale)
            .count()
    };
    let near_transverse = l.as_ref().map_or(0, |l| near(l, scale));
    let (mut min_eig, mut max_eig, mut near_zero) =
        (t_min.min(rq_min), max_eig, near_tangent + near_transverse);
    if tangent_residual > 1e-7 * scale {
        // Not a critical point of the symmetries (e.g. LayerNorm with eps > 0, where
        // the scale of w_t is no symmetry): no block split; Lanczos on H itself.
        let full = lanczos(
            |v| op.apply(v),
            &[],
            &start_vector(n),
            LANCZOS_MAX_PRODUCTS,
            LANCZOS_TOL,
        );
        products += full.products;
        min_eig = full.ritz[0];
        max_eig = *full.ritz.last().expect("one Ritz value");
        near_zero = near(&full, max_eig.abs().max(min_eig.abs()));
    }
    // Asymmetry of two fixed unit probes: the products' own error.
    let v = unit(start_vector(n));
    let w = unit(
        (0..n)
            .map(|i| ((i as f64 + 1.0) * 0.414_213_562_373_095).fract() - 0.5)
            .collect(),
    );
    let hv = op.apply(&v);
    let hw = op.apply(&w);
    products += 2;
    let error_estimate = 10.0 * (crate::network::dot(&w, &hv) - crate::network::dot(&v, &hw)).abs();
    HessianReport {
        min_eig,
        max_eig,
        near_zero,
        symmetry_dim: q.len(),
        transverse_min_eig: t_min,
        method: "lanczos".into(),
        hessian_products: products,
        tangent_residual,
        error_estimate,
    }
}

/// Tangent vectors of the symmetry orbit through `p`, one column each:
/// infinitesimal rotations `Omega = q_a q_b^T - q_b q_a^T` applied to every `w_t` and
/// `u_{j,l}` (`q` an orthonormal basis of `R^d`, or of `1_d^perp` with a centring
/// norm; none with `layer-affine`, whose gain and bias break them), the scale
/// `w_t` of each `w_t` where `phi` is scale invariant (`layer`, `rms`,
/// `layer-affine`) and the shift `1_d` where it removes the mean (`layer`,
/// `center`, `layer-affine`).
pub fn symmetry_tangents(task: &Task, p: &Params) -> DMatrix<f64> {
    let d = p.dim;
    let norm = task.norm();
    let basis: Vec<Vec<f64>> = if norm.is_affine() {
        Vec::new()
    } else if norm.centres() {
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
    let (scales, shifts) = (norm.eps().is_some(), norm.centres() || norm.is_affine());
    for tok in 0..p.n_w {
        if scales {
            let mut scale = vec![0.0; n];
            scale[tok * d..(tok + 1) * d].copy_from_slice(p.w_row(tok));
            cols.push(scale);
        }
        if shifts {
            let mut shift = vec![0.0; n];
            shift[tok * d..(tok + 1) * d]
                .iter_mut()
                .for_each(|v| *v = 1.0);
            cols.push(shift);
        }
    }
    DMatrix::from_fn(n, cols.len(), |r, c| cols[c][r])
}

/// Hessian eigen-summary, including the spectrum transverse to the symmetry
/// orbit: [`hessian_report_dense`] up to [`DENSE_MAX_PARAMS`] parameters,
/// [`hessian_report_lanczos`] above.
pub fn hessian_report(task: &Task, p: &Params) -> HessianReport {
    if p.flat_len() <= DENSE_MAX_PARAMS {
        hessian_report_dense(task, p)
    } else {
        hessian_report_lanczos(task, p)
    }
}

/// Hessian eigen-summary from the dense exact Hessian ([`limit::hessian_raw`],
/// symmetrised after its asymmetry is measured).
pub fn hessian_report_dense(task: &Task, p: &Params) -> HessianReport {
    let raw = limit::hessian_raw(task, p);
    let error_estimate = ((&raw - raw.transpose()) * 0.5).norm();
    let h = (&raw + raw.transpose()) * 0.5;
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
        method: "dense".into(),
        hessian_products: n,
        tangent_residual: 0.0,
        error_estimate,
    }
}
