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

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn orthogonalise(w: &mut [f64], against: &[Vec<f64>]) {
    for q in against {
        let c = dot(w, q);
        w.iter_mut().zip(q).for_each(|(wi, qi)| *wi -= c * qi);
    }
}

/// Lanczos with full reorthogonalisation on `P A P` (`P` projects out the
/// orthonormal `deflate` vectors), from `start`, until the smallest and the
/// largest Ritz values have residual `<= rel_tol * max(1, |theta_max|)`, the space is
/// invariant, or `max_iter` products were used. `apply(v)` returns `A v`.
pub fn lanczos(
    mut apply: impl FnMut(&[f64]) -> Vec<f64>,
    deflate: &[Vec<f64>],
    start: &[f64],
    max_iter: usize,
    rel_tol: f64,
) -> Lanczos {
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
    let (ritz, vecs, b, invariant) = loop {
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
        let res_min = b * vecs[(k - 1, 0)].abs();
        let res_max = b * vecs[(k - 1, k - 1)].abs();
        let invariant = b <= 1e-13 * scale;
        if invariant
            || (res_min <= rel_tol * scale && res_max <= rel_tol * scale)
            || products >= max_iter
        {
            break (ritz, vecs, b, invariant);
        }
        w.iter_mut().for_each(|v| *v /= b);
        beta.push(b);
        basis.push(w);
    };
    let k = ritz.len();
    let residuals = (0..k).map(|c| b * vecs[(k - 1, c)].abs()).collect();
    let mut min_vector = vec![0.0; n];
    for (i, q) in basis.iter().enumerate().take(k) {
        let c = vecs[(i, 0)];
        min_vector
            .iter_mut()
            .zip(q)
            .for_each(|(m, qi)| *m += c * qi);
    }
    let nm = dot(&min_vector, &min_vector).sqrt();
    min_vector.iter_mut().for_each(|v| *v /= nm);
    Lanczos {
        ritz,
        residuals,
        min_vector,
        products,
        invariant,
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
