//! The excess risk at which constant-step SGD stalls: its gradient noise at the
//! limit minimiser.
//!
//! Near a minimum `theta*` with Hessian `H`, SGD with step `eta` and mini-batches
//! of `B` sentences is, to first order, `delta <- delta - eta (H delta + xi)` with
//! `Cov(xi) = Sigma / B`, where `Sigma = Cov_{(x,y)} grad_theta CE(h(x), y)` is the
//! covariance of one sentence's gradient (the weight-decay gradient is the same
//! for every sentence and drops out). Its stationary covariance `S` solves
//! `H S + S H - eta H S H = eta Sigma / B`; in the eigenbasis of `H` this gives
//! `E[R(theta) - R*] = (1/2) tr(H S) = sum_i eta Sigma_ii / (2 B (2 - eta h_i))`,
//! which for `eta h_i << 1` is the floor
//!
//! `E[R - R*] ≈ eta tr(Sigma) / (4 B)`.
//!
//! (The per-sentence losses share the symmetries of `R`, so their gradients at
//! `theta*` are orthogonal to the flat directions of `H`.) [`gradient_noise_trace`]
//! computes `tr(Sigma)` exactly from the exhaustive sample of every token choice.
//!
//! The ERM's excess risk (classical M-estimation): the sample risk has
//! `grad R_hat(theta*) = g_n`, the mean of `N = K n_spl` sentence gradients drawn
//! `n_spl` per class, so `Cov(g_n) = Sigma_w / N` with the *within-class*
//! covariance `Sigma_w = (1/K) sum_k Cov_{beta ~ mu^L}(g | class k)`. Then
//! `theta_hat - theta* ≈ -H^+ g_n` and
//!
//! `E[R(theta_hat) - R*] ≈ (1/2) E[g_n^T H^+ g_n] = tr(H^+ Sigma_w) / (2 K n_spl)`,
//!
//! [`erm_excess_coefficient`] (`H^+` inverts the eigenvalues above `1e-7` of the
//! largest; the others are the symmetry directions).

use crate::empirical::{sample_risk_grad, WeightedSample};
use crate::error::Result;
use crate::limit;
use crate::network::Params;
use crate::task::Task;
use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// `tr(Sigma) = sum_i pi_i ||g_i||^2 - ||sum_i pi_i g_i||^2` over every sentence
/// `x_i` of the limit distribution (weight `pi_i = P(beta) / K`), `g_i` the gradient
/// of `CE(h(x_i), y_i)` plus the weight decay at `p`. Errors when the `K s_c^L`
/// sentences exceed `max_sentences`.
pub fn gradient_noise_trace(task: &Task, p: &Params, max_sentences: usize) -> Result<f64> {
    let all = WeightedSample::exhaustive(task, max_sentences)?;
    let n_params = p.flat_len();
    let mut mean = vec![0.0; n_params];
    let mut second = 0.0;
    for i in 0..all.n() {
        let one = WeightedSample {
            tokens: all.sentence(i).to_vec(),
            labels: vec![all.labels[i]],
            weights: vec![1.0],
            len: all.len,
        };
        let (_, g) = sample_risk_grad(task, p, &one);
        let pi = all.weights[i];
        second += pi * g.iter().map(|v| v * v).sum::<f64>();
        for (m, v) in mean.iter_mut().zip(&g) {
            *m += pi * v;
        }
    }
    Ok(second - mean.iter().map(|v| v * v).sum::<f64>())
}

/// `C = tr(H^+ Sigma_w) / (2K)` of the ERM's `E[R(theta_hat) - R*] ≈ C / n_spl`
/// (module docs), `H` the exact Hessian of the limit risk at `p`
/// ([`limit::hessian`]), `Sigma_w` the within-class covariance of the
/// sentence gradients at `p`, both exact enumerations. Errors when the
/// `K s_c^L` sentences exceed `max_sentences`.
pub fn erm_excess_coefficient(task: &Task, p: &Params, max_sentences: usize) -> Result<f64> {
    let all = WeightedSample::exhaustive(task, max_sentences)?;
    let n = p.flat_len();
    let k_n = task.k();
    let per_class = all.n() / k_n;
    let mut sigma = DMatrix::<f64>::zeros(n, n);
    for k in 0..k_n {
        let rows = k * per_class..(k + 1) * per_class;
        let grads: Vec<(f64, Vec<f64>)> = rows
            .map(|i| {
                let one = WeightedSample {
                    tokens: all.sentence(i).to_vec(),
                    labels: vec![all.labels[i]],
                    weights: vec![1.0],
                    len: all.len,
                };
                // P(beta) = K pi_i inside class k
                (
                    all.weights[i] * k_n as f64,
                    sample_risk_grad(task, p, &one).1,
                )
            })
            .collect();
        let mut mean = vec![0.0; n];
        for (w, g) in &grads {
            for (m, v) in mean.iter_mut().zip(g) {
                *m += w * v;
            }
        }
        for (w, g) in &grads {
            let c = DVector::from_iterator(n, g.iter().zip(&mean).map(|(a, b)| a - b));
            sigma.ger(w / k_n as f64, &c, &c, 1.0);
        }
    }
    let eig = SymmetricEigen::new(limit::hessian(task, p));
    let top = eig.eigenvalues.iter().fold(0.0f64, |a, &v| a.max(v.abs()));
    let mut tr = 0.0;
    for (i, &h) in eig.eigenvalues.iter().enumerate() {
        if h > 1e-7 * top {
            let v = eig.eigenvectors.column(i);
            tr += (v.transpose() * &sigma * v)[(0, 0)] / h;
        }
    }
    Ok(tr / (2.0 * k_n as f64))
}

/// The small-step SGD floor `eta tr(Sigma) / (4 B)` of the excess limit risk.
pub fn sgd_floor(noise_trace: f64, lr: f64, batch: usize) -> f64 {
    lr * noise_trace / (4.0 * batch as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit;
    use crate::task::TaskConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn trace_is_the_variance_of_the_sentence_gradients() {
        let task = TaskConfig {
            s_c: 2,
            len: 2,
            ..Default::default()
        }
        .build()
        .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let p = Params::random(&task, 0.7, &mut rng);
        let tr = gradient_noise_trace(&task, &p, 1000).unwrap();
        assert!(tr > 0.0);
        // the mean of the sentence gradients is the limit gradient
        let all = WeightedSample::exhaustive(&task, 1000).unwrap();
        let (_, g_lim) = limit::risk_grad(&task, &p);
        let (_, g_all) = sample_risk_grad(&task, &p, &all);
        let gap = g_lim
            .iter()
            .zip(&g_all)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(gap < 1e-12);
        // the same trace as the weighted spread around the limit gradient
        let mut direct = 0.0;
        for i in 0..all.n() {
            let one = WeightedSample {
                tokens: all.sentence(i).to_vec(),
                labels: vec![all.labels[i]],
                weights: vec![1.0],
                len: all.len,
            };
            let (_, g) = sample_risk_grad(&task, &p, &one);
            direct += all.weights[i]
                * g.iter()
                    .zip(&g_lim)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>();
        }
        assert!((tr - direct).abs() < 1e-12 * direct, "{tr} vs {direct}");
        assert!((sgd_floor(tr, 0.1, 100) - 0.1 * tr / 400.0).abs() < 1e-18);
    }
}
