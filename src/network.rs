//! The network of docs/theory.md §2 in f64: embedding `W`, normalization `phi`
//! ([`crate::norm::Norm`]), linear classifier `U`, cross entropy, and a
//! hand-derived backward pass.
//!
//! Storage: `W` is row-major `n_w x d` (row `t` is `w_t`); `U` is row-major
//! `K x (L d)`, row `j` being the blocks `u_{j,0} .. u_{j,L-1}` of length `d`.
//! With `--norm layer-affine` the gain `gamma` and bias `beta` (length `d` each)
//! follow; they are empty for every other normalization. The flat parameter
//! vector used by optimisers is `[W ; U ; gamma ; beta]` in that order (so
//! `[W ; U]` without the affine parameters).

use crate::norm::Norm;
pub use crate::norm::{layer_norm, layer_norm_backward};
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
    /// LayerNorm gain `gamma` (length `d` with `layer-affine`, else empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gain: Vec<f64>,
    /// LayerNorm bias `beta` (length `d` with `layer-affine`, else empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bias: Vec<f64>,
}

impl Params {
    /// All-zero `W`, `U` shaped for `task` (with `layer-affine`, `gamma = 1`,
    /// `beta = 0`, PyTorch's initialisation).
    pub fn zeros(task: &Task) -> Self {
        let affine = if task.norm().is_affine() {
            task.dim()
        } else {
            0
        };
        Params {
            n_w: task.n_w(),
            k: task.k(),
            len: task.len(),
            dim: task.dim(),
            w: vec![0.0; task.n_w() * task.dim()],
            u: vec![0.0; task.k() * task.len() * task.dim()],
            gain: vec![1.0; affine],
            bias: vec![0.0; affine],
        }
    }

    /// Weights `W`, `U` (no affine parameters) for a network of these sizes.
    pub fn from_wu(n_w: usize, k: usize, len: usize, dim: usize, w: Vec<f64>, u: Vec<f64>) -> Self {
        Params {
            n_w,
            k,
            len,
            dim,
            w,
            u,
            gain: Vec::new(),
            bias: Vec::new(),
        }
    }

    /// Standard normal entries of `W`, `U` times `scale` (random starts for
    /// optimisers); the affine parameters, if any, start at `gamma = 1`, `beta = 0`.
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

    /// Length of the flat vector: `n_w d + K L d` (+ `2 d` with the affine parameters).
    pub fn flat_len(&self) -> usize {
        self.w.len() + self.u.len() + self.gain.len() + self.bias.len()
    }

    /// Flat `[W ; U ; gamma ; beta]` (`[W ; U]` without affine parameters).
    pub fn to_flat(&self) -> Vec<f64> {
        let mut v = Vec::with_capacity(self.flat_len());
        v.extend_from_slice(&self.w);
        v.extend_from_slice(&self.u);
        v.extend_from_slice(&self.gain);
        v.extend_from_slice(&self.bias);
        v
    }

    /// [`Params::with_flat`], or an error (for optimisers) when `flat` does not
    /// have [`Params::flat_len`] entries.
    pub fn try_with_flat(&self, flat: &[f64]) -> std::result::Result<Self, String> {
        let n = self.flat_len();
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
        assert_eq!(flat.len(), self.flat_len(), "flat parameter length");
        let (w, rest) = flat.split_at(self.w.len());
        let (u, rest) = rest.split_at(self.u.len());
        let (gain, bias) = rest.split_at(self.gain.len());
        Params {
            w: w.to_vec(),
            u: u.to_vec(),
            gain: gain.to_vec(),
            bias: bias.to_vec(),
            ..*self
        }
    }

    /// `||W||_F^2` and `||U||_F^2`.
    pub fn sq_norms(&self) -> (f64, f64) {
        (dot(&self.w, &self.w), dot(&self.u, &self.u))
    }

    /// Weight-decay penalty `(lambda_W/2)||W||^2 + (lambda_U/2)||U||^2` (the
    /// affine parameters are not included: see [`Task::penalty`]).
    pub fn penalty(&self, lambda_w: f64, lambda_u: f64) -> f64 {
        let (nw, nu) = self.sq_norms();
        0.5 * lambda_w * nw + 0.5 * lambda_u * nu
    }

    /// `||gamma||^2 + ||beta||^2` (0 without affine parameters).
    pub fn affine_sq_norm(&self) -> f64 {
        dot(&self.gain, &self.gain) + dot(&self.bias, &self.bias)
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

/// Token representations `phi(w_t)` for every token, row-major `n_w x d`
/// (`phi` as [`Norm::row`], with the gain and bias of `p` for `layer-affine`).
pub fn features(p: &Params, norm: Norm) -> Vec<f64> {
    match norm {
        Norm::None => p.w.clone(),
        n => {
            p.w.chunks(p.dim)
                .flat_map(|row| n.row(row, &p.gain, &p.bias))
                .collect()
        }
    }
}

/// Chain rule through `phi` for every row ([`Norm::row_backward`]): `dR/dW`
/// from `dR/dphi(W)`, and `[dR/dgamma ; dR/dbeta]` (empty without affine
/// parameters): `dR/dgamma = sum_t dR/dphi(w_t) ⊙ LN(w_t)`, `dR/dbeta = sum_t dR/dphi(w_t)`.
pub fn features_backward(p: &Params, norm: Norm, g_phi: Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    let d = p.dim;
    let mut g_aff = vec![0.0; norm.n_affine(d)];
    if norm.is_none() {
        return (g_phi, g_aff);
    }
    let (dg, db) = g_aff.split_at_mut(if norm.is_affine() { d } else { 0 });
    let g_w =
        p.w.chunks(d)
            .zip(g_phi.chunks(d))
            .flat_map(|(row, g)| norm.row_backward(row, g, &p.gain, dg, db))
            .collect();
    (g_w, g_aff)
}

/// The full flat gradient `[dW ; dU ; dgamma ; dbeta]` of
/// `data(phi(W), U) + task.penalty(p)` from `dR/dphi(W)` and `dR/dU` of the data
/// term: the chain rule through `phi` ([`features_backward`]), then
/// `+ lambda_W W`, `+ lambda_U U`, `+ lambda_affine (gamma, beta)`.
pub fn finish_gradient(task: &Task, p: &Params, g_phi: Vec<f64>, mut g_u: Vec<f64>) -> Vec<f64> {
    let (mut g_w, mut g_aff) = features_backward(p, task.norm(), g_phi);
    for (gw, w) in g_w.iter_mut().zip(&p.w) {
        *gw += task.lambda_w() * w;
    }
    for (gu, u) in g_u.iter_mut().zip(&p.u) {
        *gu += task.lambda_u() * u;
    }
    for (ga, a) in g_aff.iter_mut().zip(p.gain.iter().chain(&p.bias)) {
        *ga += task.lambda_affine() * a;
    }
    g_w.append(&mut g_u);
    g_w.append(&mut g_aff);
    g_w
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
/// as a flat `[dW ; dU ; dgamma ; dbeta]`. `phi` as in `task.norm()`.
pub fn empirical_risk_grad(task: &Task, p: &Params, data: &Sentences) -> (f64, Vec<f64>) {
    let n = data.n() as f64;
    weighted_risk_grad(task, p, &data.tokens, &data.labels, |_| 1.0 / n)
}

/// The weighted risk `sum_i pi_i CE(h(x_i), y_i) + (lambda_W/2)||W||^2 + (lambda_U/2)||U||^2`
/// of the sentences `tokens` (row-major `m x L`) with labels `y_i` and weights
/// `pi_i = weight(i)` (plus the affine decay of [`Task::penalty`]), and its
/// gradient, flat `[dW ; dU ; dgamma ; dbeta]`:
///
/// `dR/du_{j,l} = sum_i pi_i (softmax_j(h(x_i)) - [j = y_i]) phi(w_{x_{i,l}}) + lambda_U u_{j,l}`,
/// `dR/dphi(w_t) = sum_i pi_i sum_{l : x_{i,l} = t} sum_j (softmax_j - [j = y_i]) u_{j,l}`,
/// then the chain rule through `phi` and the weight decays ([`finish_gradient`]).
pub fn weighted_risk_grad(
    task: &Task,
    p: &Params,
    tokens: &[u32],
    labels: &[u32],
    weight: impl Fn(usize) -> f64,
) -> (f64, Vec<f64>) {
    let d = p.dim;
    let phi = features(p, task.norm());
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
    (loss + task.penalty(p), finish_gradient(task, p, g_phi, g_u))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn empirical_gradient_matches_finite_differences() {
        let norms = [
            Norm::None,
            Norm::Layer { eps: 1e-5 },
            Norm::Rms { eps: 1e-5 },
            Norm::Center,
            Norm::LayerAffine { eps: 1e-5 },
        ];
        for ln in norms {
            let task = TaskConfig {
                s_c: 3,
                len: 3,
                classes: Some(5),
                norm: Some(ln),
                lambda_affine: Some(0.03),
                ..Default::default()
            }
            .build()
            .unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let mut p = Params::random(&task, 0.7, &mut rng);
            for v in p.gain.iter_mut().chain(p.bias.iter_mut()) {
                *v += 0.5 * standard_normal(&mut rng);
            }
            let data = task.sample_sentences(2, &mut rng);
            let (_, g) = empirical_risk_grad(&task, &p, &data);
            let x0 = p.to_flat();
            let n = x0.len();
            for i in (0..n).step_by(7).chain(n - ln.n_affine(p.dim)..n) {
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
                    "{ln} i {i}: {fd} vs {}",
                    g[i]
                );
            }
        }
    }
}
