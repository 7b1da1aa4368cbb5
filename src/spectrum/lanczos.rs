//! Lanczos iteration for the extreme eigenvalues of a symmetric operator given
//! only by its products `v -> A v`, restricted to the orthogonal complement of a
//! few known vectors.
//!
//! With `P = I - Q Q^T` (`Q` orthonormal, the vectors projected out), the iteration
//! builds an orthonormal basis `q_0, q_1, ...` of the Krylov space of `P A P` from a
//! start in `range(P)` and the tridiagonal `T_j = tridiag(beta, alpha, beta)`,
//! `alpha_j = q_j^T A q_j`, `beta_j q_{j+1} = P A q_j - alpha_j q_j - beta_{j-1} q_{j-1}`.
//! Every new vector is re-orthogonalised (twice) against all previous ones and
//! against `Q` (full reorthogonalisation: the basis stays orthonormal to
//! round-off, so no spurious copies of converged Ritz values appear). A Ritz pair
//! `(theta, y = Q_j s)` of `T_j` has residual `||P A P y - theta y|| = beta_j |s_last|`,
//! which bounds the distance from `theta` to the spectrum of `P A P` on `range(P)`.

use crate::network::dot;
use nalgebra::{DMatrix, SymmetricEigen};

/// Result of [`lanczos`].
#[derive(Debug, Clone)]
pub struct Lanczos {
    /// Ritz values, ascending.
    pub ritz: Vec<f64>,
    /// Residual bound `beta_j |s_last|` of each Ritz value (same order).
    pub residuals: Vec<f64>,
    /// Unit Ritz vector of the smallest Ritz value.
    pub min_vector: Vec<f64>,
    /// Operator products used.
    pub products: usize,
    /// The Krylov space became invariant (`beta_j ~ 0`): the Ritz values are exact
    /// eigenvalues of `P A P` on that space.
    pub invariant: bool,
}

fn orthogonalise(w: &mut [f64], against: &[Vec<f64>]) {
    for q in against {
        let c = dot(w, q);
        w.iter_mut().zip(q).for_each(|(wi, qi)| *wi -= c * qi);
    }
}

/// The Krylov data after the last step of [`krylov`]: the Ritz pairs of the
/// tridiagonal `T_j` (eigenvalues ascending, eigenvectors as the columns of
/// `vecs`), the basis `q_0..q_j`, the last `beta_j` and the product count.
#[derive(Debug, Clone)]
pub struct Krylov {
    /// Ritz values, ascending.
    pub ritz: Vec<f64>,
    /// Eigenvectors `s_c` of `T_j` (column `c` belongs to `ritz[c]`).
    pub vecs: DMatrix<f64>,
    /// Orthonormal Lanczos basis `q_0..q_j` (at least as many vectors as Ritz values).
    pub basis: Vec<Vec<f64>>,
    /// `beta_j`, the norm of the last residual vector: Ritz pair `c` has residual
    /// `beta_j |s_c[last]|`.
    pub beta_last: f64,
    /// Operator products used.
    pub products: usize,
    /// The Krylov space became invariant (`beta_j <= 1e-13 max(1, max|theta|)`).
    pub invariant: bool,
}

impl Krylov {
    /// Residual bound `beta_j |s_c[last]|` of Ritz value `c`.
    pub fn residual(&self, c: usize) -> f64 {
        self.beta_last * self.vecs[(self.ritz.len() - 1, c)].abs()
    }

    /// Unit Ritz vector `y_c = sum_i s_c[i] q_i` of Ritz value `c`.
    pub fn ritz_vector(&self, c: usize) -> Vec<f64> {
        let mut y = vec![0.0; self.basis[0].len()];
        for (i, q) in self.basis.iter().enumerate().take(self.ritz.len()) {
            let s = self.vecs[(i, c)];
            y.iter_mut().zip(q).for_each(|(m, qi)| *m += s * qi);
        }
        let ny = dot(&y, &y).sqrt();
        y.iter_mut().for_each(|v| *v /= ny);
        y
    }

    /// Quadrature weights `tau_c = s_c[0]^2` of the Ritz values (they sum to 1):
    /// `q_0^T f(A) q_0 ~ sum_c tau_c f(theta_c)` (Gauss quadrature of the spectral
    /// measure of `q_0`).
    pub fn weights(&self) -> Vec<f64> {
        (0..self.ritz.len())
            .map(|c| self.vecs[(0, c)].powi(2))
            .collect()
    }
}

/// The Lanczos recursion with full reorthogonalisation on `P A P` (`P` projects
/// out the orthonormal `deflate` vectors) from `start`, until `stop(ritz, vecs,
/// beta_j)` holds after a step, the space is invariant, or `max_iter` products
/// were used (capped at `n - deflate.len()`, where the space is complete).
/// `apply(v)` returns `A v`.
pub fn krylov(
    mut apply: impl FnMut(&[f64]) -> Vec<f64>,
    deflate: &[Vec<f64>],
    start: &[f64],
    max_iter: usize,
    mut stop: impl FnMut(&[f64], &DMatrix<f64>, f64) -> bool,
) -> Krylov {
    let n = start.len();
    let mut q0 = start.to_vec();
    orthogonalise(&mut q0, deflate);
    orthogonalise(&mut q0, deflate);
    let nq = dot(&q0, &q0).sqrt();
    assert!(nq > 0.0, "Lanczos start vector lies in the deflated span");
    q0.iter_mut().for_each(|v| *v /= nq);
    let mut basis: Vec<Vec<f64>> = vec![q0];
    let mut alpha: Vec<f64> = Vec::new();
    let mut beta: Vec<f64> = Vec::new();
    let max_iter = max_iter.min(n.saturating_sub(deflate.len())).max(1);
    let mut products = 0;
    loop {
        let j = basis.len() - 1;
        let mut w = apply(&basis[j]);
        products += 1;
        orthogonalise(&mut w, deflate);
        let a = dot(&w, &basis[j]);
        alpha.push(a);
        for _ in 0..2 {
            orthogonalise(&mut w, &basis);
            orthogonalise(&mut w, deflate);
        }
        let b = dot(&w, &w).sqrt();
        // Ritz values of T_j
        let k = alpha.len();
        let t = DMatrix::from_fn(k, k, |r, c| {
            if r == c {
                alpha[r]
            } else if r + 1 == c {
                beta[r]
            } else if c + 1 == r {
                beta[c]
            } else {
                0.0
            }
        });
        let eig = SymmetricEigen::new(t);
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&x, &y| eig.eigenvalues[x].total_cmp(&eig.eigenvalues[y]));
        let ritz: Vec<f64> = order.iter().map(|&i| eig.eigenvalues[i]).collect();
        let vecs = DMatrix::from_fn(k, k, |r, c| eig.eigenvectors[(r, order[c])]);
        let scale = ritz.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let invariant = b <= 1e-13 * scale;
        if invariant || products >= max_iter || stop(&ritz, &vecs, b) {
            return Krylov {
                ritz,
                vecs,
                basis,
                beta_last: b,
                products,
                invariant,
            };
        }
        w.iter_mut().for_each(|v| *v /= b);
        beta.push(b);
        basis.push(w);
    }
}

/// Lanczos with full reorthogonalisation on `P A P` (`P` projects out the
/// orthonormal `deflate` vectors), from `start`, until the smallest and the
/// largest Ritz values have residual `<= rel_tol * max(1, |theta_max|)`, the space is
/// invariant, or `max_iter` products were used. `apply(v)` returns `A v`.
pub fn lanczos(
    apply: impl FnMut(&[f64]) -> Vec<f64>,
    deflate: &[Vec<f64>],
    start: &[f64],
    max_iter: usize,
    rel_tol: f64,
) -> Lanczos {
    let kr = krylov(apply, deflate, start, max_iter, |ritz, vecs, b| {
        let k = ritz.len();
        let scale = ritz.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let res_min = b * vecs[(k - 1, 0)].abs();
        let res_max = b * vecs[(k - 1, k - 1)].abs();
        res_min <= rel_tol * scale && res_max <= rel_tol * scale
    });
    let k = kr.ritz.len();
    Lanczos {
        residuals: (0..k).map(|c| kr.residual(c)).collect(),
        min_vector: kr.ritz_vector(0),
        products: kr.products,
        invariant: kr.invariant,
        ritz: kr.ritz,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A diagonal matrix with a known spectrum, one direction deflated.
    #[test]
    fn finds_extreme_eigenvalues_of_a_known_matrix() {
        let n = 60;
        let diag: Vec<f64> = (0..n).map(|i| -2.0 + 0.1 * i as f64).collect();
        let apply = |v: &[f64]| v.iter().zip(&diag).map(|(a, d)| a * d).collect();
        let start: Vec<f64> = (0..n).map(|i| 1.0 + (i as f64 * 0.37).sin()).collect();
        let r = lanczos(apply, &[], &start, 200, 1e-10);
        assert!((r.ritz[0] - diag[0]).abs() < 1e-9, "{}", r.ritz[0]);
        assert!((r.ritz.last().unwrap() - diag[n - 1]).abs() < 1e-9);
        assert!(r.min_vector[0].abs() > 1.0 - 1e-8);
        // deflate e_0: the smallest is now diag[1]
        let mut e0 = vec![0.0; n];
        e0[0] = 1.0;
        let r = lanczos(apply, &[e0], &start, 200, 1e-10);
        assert!((r.ritz[0] - diag[1]).abs() < 1e-9, "{}", r.ritz[0]);
        assert!(r.min_vector[0].abs() < 1e-12);
    }
}
