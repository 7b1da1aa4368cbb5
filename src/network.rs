//! The network of docs/theory.md §2 in f64: embedding `W`, optional LayerNorm `phi`,
//! linear classifier `U`, cross entropy, and a hand-derived backward pass.
//!
//! Storage: `W` is row-major `n_w x d` (row `t` is `w_t`); `U` is row-major
//! `K x (L d)`, row `j` being the blocks `u_{j,0} .. u_{j,L-1}` of length `d`.
//! The flat parameter vector used by optimisers is `[W ; U]` in that order.

use crate::task::{Sentences, Task};
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

/// Weights `(W, U)` of the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub n_w: usize,
    pub k: usize,
    pub len: usize,
    pub dim: usize,
    /// Row-major `n_w x d`.
    pub w: Vec<f64>,
    /// Row-major `K x (L d)`.
    pub u: Vec<f64>,
}

impl Params {
    /// All-zero weights shaped for `task`.
    pub fn zeros(task: &Task) -> Self {
        Params {
            n_w: task.n_w(),
            k: task.k(),
            len: task.len(),
            dim: task.dim(),
            w: vec![0.0; task.n_w() * task.dim()],
            u: vec![0.0; task.k() * task.len() * task.dim()],
        }
    }

    /// Standard normal entries times `scale` (random starts for optimisers).
    pub fn random(task: &Task, scale: f64, rng: &mut impl Rng) -> Self {
        let mut p = Params::zeros(task);
        for v in p.w.iter_mut().chain(p.u.iter_mut()) {
            *v = scale * standard_normal(rng);
        }
        p
    }

    /// `w_t`.
    pub fn w_row(&self, t: usize) -> &[f64] {
        &self.w[t * self.dim..(t + 1) * self.dim]
    }

    /// `u_{j,l}`.
    pub fn u_block(&self, j: usize, l: usize) -> &[f64] {
        let s = (j * self.len + l) * self.dim;
        &self.u[s..s + self.dim]
    }

    /// Flat `[W ; U]`.
    pub fn to_flat(&self) -> Vec<f64> {
        let mut v = Vec::with_capacity(self.w.len() + self.u.len());
        v.extend_from_slice(&self.w);
        v.extend_from_slice(&self.u);
        v
    }

    /// [`Params::with_flat`], or an error (for optimisers) when `flat` does not
    /// have `n_w d + K L d` entries.
    pub fn try_with_flat(&self, flat: &[f64]) -> std::result::Result<Self, String> {
        let n = self.w.len() + self.u.len();
        if flat.len() != n {
            return Err(format!(
                "flat parameter vector has length {}, expected {n}",
                flat.len()
            ));
        }
        Ok(self.with_flat(flat))
    }

    /// Inverse of [`Params::to_flat`], shaped like `self`.
    pub fn with_flat(&self, flat: &[f64]) -> Self {
        assert_eq!(
            flat.len(),
            self.w.len() + self.u.len(),
            "flat parameter length"
        );
        let (w, u) = flat.split_at(self.w.len());
        Params {
            w: w.to_vec(),
            u: u.to_vec(),
            ..self.clone()
        }
    }

    /// `||W||_F^2` and `||U||_F^2`.
    pub fn sq_norms(&self) -> (f64, f64) {
        (dot(&self.w, &self.w), dot(&self.u, &self.u))
    }

    /// Weight-decay penalty `(lambda_W/2)||W||^2 + (lambda_U/2)||U||^2`.
    pub fn penalty(&self, lambda_w: f64, lambda_u: f64) -> f64 {
        let (nw, nu) = self.sq_norms();
        0.5 * lambda_w * nw + 0.5 * lambda_u * nu
    }
}

/// Standard normal draw (Box-Muller), portable across platforms for a seeded `rng`.
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    loop {
        let u1: f64 = rng.random();
        let u2: f64 = rng.random();
        if u1 > 0.0 {
            return (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        }
    }
}

/// `<a, b>`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// LayerNorm without affine parameters:
/// `phi(v) = (v - mean(v) 1) / sqrt(var(v) + eps)`, biased variance (divide by `d`).
pub fn layer_norm(v: &[f64], eps: f64) -> Vec<f64> {
    let d = v.len() as f64;
    let m = v.iter().sum::<f64>() / d;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / d;
    let s = (var + eps).sqrt();
    v.iter().map(|x| (x - m) / s).collect()
}

/// Backward pass of [`layer_norm`]: given `g = dR/dphi(v)`, returns `dR/dv`
/// `= (g - mean(g) - x_hat mean(g ⊙ x_hat)) / sqrt(var + eps)` with `x_hat = (v-mean)/sqrt(var+eps)`
/// (the last term uses `var/(var+eps)` so the formula is exact for `eps > 0`).
pub fn layer_norm_backward(v: &[f64], g: &[f64], eps: f64) -> Vec<f64> {
    let d = v.len() as f64;
    let m = v.iter().sum::<f64>() / d;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / d;
    let s = (var + eps).sqrt();
    let xh: Vec<f64> = v.iter().map(|x| (x - m) / s).collect();
    let gm = g.iter().sum::<f64>() / d;
    let gx = dot(g, &xh) / d;
    g.iter()
        .zip(&xh)
        .map(|(gi, xi)| (gi - gm - xi * gx) / s)
        .collect()
}

/// Token representations `phi(w_t)` for every token, row-major `n_w x d`
/// (`phi = id` without LayerNorm).
pub fn features(p: &Params, layer_norm_eps: Option<f64>) -> Vec<f64> {
    match layer_norm_eps {
        None => p.w.clone(),
        Some(eps) => {
            p.w.chunks(p.dim)
                .flat_map(|row| layer_norm(row, eps))
                .collect()
        }
    }
}

/// Chain rule through `phi` for every row: `dR/dW` from `dR/dphi(W)`.
pub fn features_backward(p: &Params, layer_norm_eps: Option<f64>, g_phi: Vec<f64>) -> Vec<f64> {
    match layer_norm_eps {
        None => g_phi,
        Some(eps) => {
            p.w.chunks(p.dim)
                .zip(g_phi.chunks(p.dim))
                .flat_map(|(row, g)| layer_norm_backward(row, g, eps))
                .collect()
        }
    }
}

/// Scores `h_j(x) = sum_l <u_{j,l}, phi(w_{x_l})>` for one sentence, given the
/// precomputed features `phi` (row-major `n_w x d`).
pub fn scores(p: &Params, phi: &[f64], sentence: &[u32]) -> Vec<f64> {
    let d = p.dim;
    (0..p.k)
        .map(|j| {
            sentence
                .iter()
                .enumerate()
                .map(|(l, &t)| dot(p.u_block(j, l), &phi[t as usize * d..(t as usize + 1) * d]))
                .sum()
        })
        .collect()
}

/// `log sum_j exp(h_j)`, computed stably.
pub fn log_sum_exp(h: &[f64]) -> f64 {
    let m = h.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + h.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Cross entropy `CE(h, k) = log sum_j exp(h_j) - h_k`.
pub fn cross_entropy(h: &[f64], k: usize) -> f64 {
    log_sum_exp(h) - h[k]
}

/// Empirical risk on a finite sample, f64:
/// `(1/n) sum_i CE(h(x_i), y_i) + (lambda_W/2)||W||^2 + (lambda_U/2)||U||^2`
/// (the mean over sentences, as the framework's default loss), with its gradient
/// as a flat `[dW ; dU]`. LayerNorm as in `task.layer_norm`.
pub fn empirical_risk_grad(task: &Task, p: &Params, data: &Sentences) -> (f64, Vec<f64>) {
    let n = data.n() as f64;
    weighted_risk_grad(task, p, &data.tokens, &data.labels, |_| 1.0 / n)
}

/// The weighted risk `sum_i pi_i CE(h(x_i), y_i) + (lambda_W/2)||W||^2 + (lambda_U/2)||U||^2`
/// of the sentences `tokens` (row-major `m x L`) with labels `y_i` and weights
/// `pi_i = weight(i)`, and its gradient, flat `[dW ; dU]`:
///
/// `dR/du_{j,l} = sum_i pi_i (softmax_j(h(x_i)) - [j = y_i]) phi(w_{x_{i,l}}) + lambda_U u_{j,l}`,
/// `dR/dphi(w_t) = sum_i pi_i sum_{l : x_{i,l} = t} sum_j (softmax_j - [j = y_i]) u_{j,l}`,
/// then the chain rule through `phi` (LayerNorm backward) and `+ lambda_W W`.
pub fn weighted_risk_grad(
    task: &Task,
    p: &Params,
    tokens: &[u32],
    labels: &[u32],
    weight: impl Fn(usize) -> f64,
) -> (f64, Vec<f64>) {
    let d = p.dim;
    let phi = features(p, task.layer_norm());
    let mut g_phi = vec![0.0; phi.len()];
    let mut g_u = vec![0.0; p.u.len()];
    let mut loss = 0.0;
    for (i, x) in tokens.chunks_exact(p.len).enumerate() {
        let y = labels[i] as usize;
        let pi = weight(i);
        let h = scores(p, &phi, x);
        let lse = log_sum_exp(&h);
        loss += pi * (lse - h[y]);
        for (j, &hj) in h.iter().enumerate() {
            let mut g = (hj - lse).exp();
            if j == y {
                g -= 1.0;
            }
            g *= pi;
            if g == 0.0 {
                continue;
            }
            for (l, &t) in x.iter().enumerate() {
                let t = t as usize;
                let ub = (j * p.len + l) * d;
                for c in 0..d {
                    g_u[ub + c] += g * phi[t * d + c];
                    g_phi[t * d + c] += g * p.u[ub + c];
                }
            }
        }
    }
    let mut g_w = features_backward(p, task.layer_norm(), g_phi);
    for (gw, w) in g_w.iter_mut().zip(&p.w) {
        *gw += task.lambda_w() * w;
    }
    for (gu, u) in g_u.iter_mut().zip(&p.u) {
        *gu += task.lambda_u() * u;
    }
    g_w.extend_from_slice(&g_u);
    (loss + p.penalty(task.lambda_w(), task.lambda_u()), g_w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn layer_norm_output_has_mean_zero_and_norm_sqrt_d() {
        let v = [0.3, -1.2, 2.0, 0.7, 5.0];
        let y = layer_norm(&v, 0.0);
        assert!(y.iter().sum::<f64>().abs() < 1e-12);
        assert!((dot(&y, &y) - 5.0).abs() < 1e-12);
    }

    #[test]
    fn layer_norm_backward_matches_finite_differences() {
        let v = [0.3, -1.2, 2.0, 0.7];
        let g = [1.0, -0.5, 0.25, 2.0];
        for eps in [0.0, 1e-5, 0.3] {
            let an = layer_norm_backward(&v, &g, eps);
            for i in 0..4 {
                let h = 1e-6;
                let mut vp = v;
                vp[i] += h;
                let mut vm = v;
                vm[i] -= h;
                let fd =
                    (dot(&layer_norm(&vp, eps), &g) - dot(&layer_norm(&vm, eps), &g)) / (2.0 * h);
                assert!(
                    (fd - an[i]).abs() < 1e-7,
                    "eps {eps} i {i}: {fd} vs {}",
                    an[i]
                );
            }
        }
    }

    #[test]
    fn empirical_gradient_matches_finite_differences() {
        for ln in [None, Some(1e-5)] {
            let task = TaskConfig {
                s_c: 3,
                len: 3,
                classes: Some(5),
                layer_norm: ln,
                ..Default::default()
            }
            .build()
            .unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let p = Params::random(&task, 0.7, &mut rng);
            let data = task.sample_sentences(2, &mut rng);
            let (_, g) = empirical_risk_grad(&task, &p, &data);
            let x0 = p.to_flat();
            for i in (0..x0.len()).step_by(7) {
                let h = 1e-6;
                let mut xp = x0.clone();
                xp[i] += h;
                let mut xm = x0.clone();
                xm[i] -= h;
                let fp = empirical_risk_grad(&task, &p.with_flat(&xp), &data).0;
                let fm = empirical_risk_grad(&task, &p.with_flat(&xm), &data).0;
                let fd = (fp - fm) / (2.0 * h);
                assert!(
                    (fd - g[i]).abs() < 1e-7 * (1.0 + g[i].abs()),
                    "ln {ln:?} i {i}: {fd} vs {}",
                    g[i]
                );
            }
        }
    }
}
