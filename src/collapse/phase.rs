//! Where the origin `W = U = 0` stops being a local minimiser: the critical weight
//! decay.
//!
//! Without LayerNorm the origin is always a critical point of `R`. Near it the
//! scores `h_j` are bilinear in `(W, U)`, so the cross entropy's first-order term
//! `(1/K) sum_j (1/K - delta_jk) h_j` is the only part of second order in the
//! weights:
//!
//! `R(W, U) = log K + T(W, U) + (lambda_W/2) ||W||^2 + (lambda_U/2) ||U||^2 + O(|theta|^4)`,
//!
//! `T(W, U) = -(1/K) sum_{j,l} < u_{j,l}, mbar_{z_{j,l}} - c_l >`,
//!
//! with `mbar_alpha = sum_beta mu_beta w_{(alpha,beta)}` and
//! `c_l = sum_alpha nu_l(alpha) mbar_alpha`, `nu_l(alpha)` the fraction of classes with
//! `z_{k,l} = alpha`. The origin is a strict local minimiser iff the quadratic
//! form is positive definite, i.e. iff `lambda_W lambda_U > sigma^2` with
//! `sigma` the largest singular value of the bilinear form `T`:
//!
//! `sigma^2 = (||mu||^2 / K) lambda_max( sum_l (diag(nu_l) - nu_l nu_l^T) )`.
//!
//! On the full latent set `nu_l = 1/n_c`, the matrix is `(L/n_c)(I - 11^T/n_c)`, and
//! `sigma = ||mu|| sqrt(L / (n_c K))` (`= sqrt(L/(n_w K))` for uniform `mu`).
//!
//! The test is global, for every latent set: the cross entropy is convex in the
//! scores, so it lies above its tangent at `h = 0`, and taking expectations
//! `R(W, U) >= log K + T(W, U) + (lambda_W/2)||W||^2 + (lambda_U/2)||U||^2
//! >= log K + (sqrt(lambda_W lambda_U) - sigma) ||W|| ||U||` (AM-GM on the
//! penalties, `|T| <= sigma ||W|| ||U||`). So for `sqrt(lambda_W lambda_U) >= sigma`
//! the origin is the global minimiser, and below it the origin is a saddle: the
//! phase changes at `lambda = sigma` exactly (docs/theory.md §6).
//!
//! With LayerNorm `phi(w)` has norm `sqrt(d)` whatever `w` is, so `U = 0` is never
//! preferred: the type-II loss falls linearly in `b` at `b = 0` (slope
//! `-L sqrt(d)`) while the penalty is quadratic. There is no critical weight decay.

use crate::task::Task;
use nalgebra::DMatrix;

/// `sigma`, the largest singular value of the bilinear term `T(W, U)` of the
/// risk at the origin (see the module docs):
/// `sigma^2 = (||mu||^2 / K) lambda_max(sum_l (diag(nu_l) - nu_l nu_l^T))`.
/// Cost `O(K L + L n_c^2 + n_c^3)`.
pub fn origin_coupling(task: &Task) -> f64 {
    let (n_c, len, k) = (task.n_c(), task.len(), task.k());
    let mut m = DMatrix::<f64>::zeros(n_c, n_c);
    for l in 0..len {
        let mut nu = vec![0.0; n_c];
        for kk in 0..k {
            nu[task.z_of(kk)[l]] += 1.0 / k as f64;
        }
        for a in 0..n_c {
            m[(a, a)] += nu[a];
            for b in 0..n_c {
                m[(a, b)] -= nu[a] * nu[b];
            }
        }
    }
    let lmax = m
        .symmetric_eigen()
        .eigenvalues
        .iter()
        .copied()
        .fold(0.0f64, f64::max);
    let mu2: f64 = task.mu().iter().map(|m| m * m).sum();
    (mu2 * lmax / k as f64).sqrt()
}

/// The weight decay `lambda` (with `lambda_W = lambda_U = lambda`) at which the
/// origin becomes the global minimiser, `lambda_critical = sigma` (see
/// [`origin_coupling`]), on every latent set; `None` with LayerNorm, where the
/// phase never changes (`U = 0` is never a minimiser there).
pub fn lambda_critical(task: &Task) -> Option<f64> {
    if !task.norm().is_linear() {
        None
    } else {
        Some(origin_coupling(task))
    }
}

/// The two phases of the limit problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A collapsed configuration is the minimiser.
    Collapsed,
    /// The origin (without LayerNorm) is the minimiser.
    Trivial,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Collapsed => "collapsed",
            Phase::Trivial => "trivial",
        })
    }
}

/// The phase of the limit problem: trivial iff there is no LayerNorm and
/// `sqrt(lambda_W lambda_U) >= sigma` (exact for every latent set, see the module docs).
pub fn predicted_phase(task: &Task) -> Phase {
    match lambda_critical(task) {
        Some(s) if task.lambda_geo() >= s => Phase::Trivial,
        _ => Phase::Collapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Freq, TaskConfig};

    #[test]
    fn full_latent_set_closed_forms() {
        for (n_c, s_c, len, freq) in [
            (3, 2, 3, Freq::Uniform),
            (2, 3, 4, Freq::Zipf { exponent: 1.0 }),
            (4, 2, 2, Freq::Zipf { exponent: 2.0 }),
        ] {
            let task = TaskConfig {
                n_c,
                s_c,
                len,
                dim: n_c,
                freq,
                ..Default::default()
            }
            .build()
            .unwrap();
            let mu2: f64 = task.mu().iter().map(|m| m * m).sum();
            let want = (mu2 * len as f64 / (n_c as f64 * task.k() as f64)).sqrt();
            let got = origin_coupling(&task);
            assert!((got - want).abs() <= 1e-14 * want, "{got} vs {want}");
            if freq.is_uniform() {
                let w = (len as f64 / (task.n_w() * task.k()) as f64).sqrt();
                assert!((got - w).abs() <= 1e-14 * w);
            }
        }
    }

    /// The quadratic form of `R` at the origin, `T + penalties`, measured by
    /// finite differences of the exact risk along the top singular pair, changes
    /// sign at `lambda_critical`.
    #[test]
    fn second_difference_of_the_exact_risk_changes_sign_at_lambda_critical() {
        use crate::limit::risk;
        use crate::network::Params;
        let base = TaskConfig {
            n_c: 3,
            s_c: 2,
            len: 3,
            dim: 2,
            classes: Some(9),
            freq: Freq::Zipf { exponent: 1.0 },
            seed: 3,
            ..Default::default()
        };
        let sigma = origin_coupling(&base.build().unwrap());
        for (factor, sign) in [(0.9, -1.0), (1.1, 1.0)] {
            let lam = factor * sigma;
            let task = TaskConfig {
                lambda_w: lam,
                lambda_u: lam,
                ..base.clone()
            }
            .build()
            .unwrap();
            // Best direction: w_{(a,b)} = mu_b v_a, u_{j,l} = -(v_{z_{j,l}} - sum nu_l v)
            // with v the top eigenvector; search the minimum of R(t theta) - R(0) over
            // a few random v and report the most negative curvature.
            let mut best = f64::INFINITY;
            let zero = Params::zeros(&task);
            let r0 = risk(&task, &zero);
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
            for _ in 0..200 {
                let v: Vec<f64> = (0..task.n_c())
                    .map(|_| rand::RngExt::random_range(&mut rng, -1.0..1.0))
                    .collect();
                let mut p = Params::zeros(&task);
                for (a, &va) in v.iter().enumerate() {
                    for (b, &mb) in task.mu().iter().enumerate() {
                        p.w[task.token(a, b) * task.dim()] = mb * va;
                    }
                }
                for l in 0..task.len() {
                    let mut c = 0.0;
                    for kk in 0..task.k() {
                        c += v[task.z_of(kk)[l]] / task.k() as f64;
                    }
                    for j in 0..task.k() {
                        p.u[(j * task.len() + l) * task.dim()] = v[task.z_of(j)[l]] - c;
                    }
                }
                // balance the two layers: ||W|| = ||U|| = 1
                let nw = p.w.iter().map(|x| x * x).sum::<f64>().sqrt();
                let nu = p.u.iter().map(|x| x * x).sum::<f64>().sqrt();
                p.w.iter_mut().for_each(|x| *x /= nw);
                p.u.iter_mut().for_each(|x| *x /= nu);
                let t = 1e-3;
                let mut q = p.clone();
                q.w.iter_mut().for_each(|x| *x *= t);
                q.u.iter_mut().for_each(|x| *x *= t);
                best = best.min((risk(&task, &q) - r0) / (t * t));
            }
            // T + (lambda/2)(1 + 1) at the best direction: (lambda - sigma) at the top pair
            assert!(best * sign > 0.0, "factor {factor}: curvature {best}");
        }
    }
}
