//! The sample (empirical) risk of docs/theory.md §2 in f64, with per-sentence weights,
//! and its gradient.
//!
//! For a weighted sample `(x_i, y_i, pi_i)`, `i = 1..m`, with `sum_i pi_i = 1`,
//!
//! ```text
//! R_hat(W,U) = sum_i pi_i CE(h(x_i), y_i) + (lambda_W/2)||W||_F^2 + (lambda_U/2)||U||_F^2,
//! ```
//!
//! where `h_j(x) = sum_l <u_{j,l}, phi(w_{x_l})>` and `CE(h, k) = log sum_j exp(h_j) - h_k`.
//!
//! Two samples matter:
//! - a drawn training set of `n` sentences, [`WeightedSample::from_sentences`]:
//!   identical sentences are merged and `pi_i = (count of x_i) / n`, so
//!   `R_hat` is the usual mean cross entropy and its cost depends on the number of
//!   *distinct* sentences (at most `K s_c^L`), not on `n`;
//! - every token choice of every class, [`WeightedSample::exhaustive`], with
//!   `pi = P(beta) / K = prod_l mu_{beta_l} / K`: then `R_hat` *is* the limit
//!   risk `R` of [`crate::limit::risk`] (an exact identity, used as a test).
//!
//! [`SampleProblem`] is the argmin problem (flat parameters `[W ; U]`).

use crate::error::{Error, Result};
use crate::network::{features, log_sum_exp, scores, weighted_risk_grad, Params};
use crate::task::{Sentences, Task};
use std::collections::BTreeMap;

/// Sentences with their labels and weights `pi_i` (summing to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedSample {
    /// Row-major `m x L` flat token indices `alpha * s_c + beta`.
    pub tokens: Vec<u32>,
    /// Class of each sentence, length `m`.
    pub labels: Vec<u32>,
    /// Weight `pi_i` of each sentence, length `m`.
    pub weights: Vec<f64>,
    /// Sentence length `L`.
    pub len: usize,
}

impl WeightedSample {
    /// Number of (distinct) weighted sentences `m`.
    pub fn n(&self) -> usize {
        self.labels.len()
    }

    /// Tokens of sentence `i`.
    pub fn sentence(&self, i: usize) -> &[u32] {
        &self.tokens[i * self.len..(i + 1) * self.len]
    }

    /// The drawn sample `data` with identical `(sentence, label)` pairs merged:
    /// `pi = count / n`. Errors on an empty sample.
    pub fn from_sentences(data: &Sentences) -> Result<Self> {
        let n = data.n();
        if n == 0 {
            return Err(Error::invalid("sample", 0, "needs at least one sentence"));
        }
        let mut counts: BTreeMap<(u32, &[u32]), usize> = BTreeMap::new();
        for i in 0..n {
            *counts
                .entry((data.labels[i], data.sentence(i)))
                .or_insert(0) += 1;
        }
        let mut out = WeightedSample {
            tokens: Vec::with_capacity(counts.len() * data.len),
            labels: Vec::with_capacity(counts.len()),
            weights: Vec::with_capacity(counts.len()),
            len: data.len,
        };
        for ((label, sentence), c) in counts {
            out.tokens.extend_from_slice(sentence);
            out.labels.push(label);
            out.weights.push(c as f64 / n as f64);
        }
        Ok(out)
    }

    /// Every token choice `beta in [s_c]^L` of every class `k`, the sentence
    /// `x_l = (z_{k,l}, beta_l)` weighted by `prod_l mu_{beta_l} / K`: the sample whose
    /// risk is the exact limit risk. `K s_c^L` sentences; errors when that
    /// exceeds `max_sentences`.
    pub fn exhaustive(task: &Task, max_sentences: usize) -> Result<Self> {
        let leaves = task
            .s_c()
            .checked_pow(task.len() as u32)
            .and_then(|v| v.checked_mul(task.k()))
            .filter(|&m| m <= max_sentences)
            .ok_or_else(|| Error::OverBudget {
                what: "exhaustive sample (K s_c^L sentences)".into(),
                work: task.k() as f64 * (task.s_c() as f64).powi(task.len() as i32),
                budget: max_sentences as f64,
            })?;
        let (len, s_c) = (task.len(), task.s_c());
        let per_class = leaves / task.k();
        let mut out = WeightedSample {
            tokens: Vec::with_capacity(leaves * len),
            labels: Vec::with_capacity(leaves),
            weights: Vec::with_capacity(leaves),
            len,
        };
        let mut beta = vec![0usize; len];
        for k in 0..task.k() {
            let z = task.z_of(k);
            for idx in 0..per_class {
                let mut r = idx;
                for b in beta.iter_mut().rev() {
                    *b = r % s_c;
                    r /= s_c;
                }
                let mut p = 1.0 / task.k() as f64;
                for l in 0..len {
                    out.tokens.push(task.token(z[l], beta[l]) as u32);
                    p *= task.mu()[beta[l]];
                }
                out.labels.push(k as u32);
                out.weights.push(p);
            }
        }
        Ok(out)
    }
}

/// The sample risk `R_hat(W,U) = sum_i pi_i CE(h(x_i), y_i) + (lambda_W/2)||W||_F^2
/// + (lambda_U/2)||U||_F^2` (see the module docs), `phi` as `task.layer_norm`.
pub fn sample_risk(task: &Task, p: &Params, s: &WeightedSample) -> f64 {
    let phi = features(p, task.norm());
    let mut loss = 0.0;
    for i in 0..s.n() {
        let h = scores(p, &phi, s.sentence(i));
        loss += s.weights[i] * (log_sum_exp(&h) - h[s.labels[i] as usize]);
    }
    loss + task.penalty(p)
}

/// [`sample_risk`] and its gradient, flat `[dR_hat/dW ; dR_hat/dU]`:
///
/// `dR_hat/du_{j,l} = sum_i pi_i (softmax_j(h(x_i)) - [j = y_i]) phi(w_{x_{i,l}}) + lambda_U u_{j,l}`,
/// `dR_hat/dphi(w_t) = sum_i pi_i sum_{l : x_{i,l} = t} sum_j (softmax_j - [j = y_i]) u_{j,l}`,
/// then the chain rule through `phi` (LayerNorm backward) and `+ lambda_W W`.
pub fn sample_risk_grad(task: &Task, p: &Params, s: &WeightedSample) -> (f64, Vec<f64>) {
    weighted_risk_grad(task, p, &s.tokens, &s.labels, |i| s.weights[i])
}

/// Fraction of `data` whose argmax score (first on ties) is its label, in f64.
pub fn accuracy(task: &Task, p: &Params, data: &Sentences) -> f64 {
    let phi = features(p, task.norm());
    let ok = (0..data.n())
        .filter(|&i| {
            let h = scores(p, &phi, data.sentence(i));
            let best = h
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |acc, (j, &v)| {
                        if v > acc.1 {
                            (j, v)
                        } else {
                            acc
                        }
                    },
                )
                .0;
            best == data.labels[i] as usize
        })
        .count();
    ok as f64 / data.n().max(1) as f64
}

/// The sample risk as an argmin problem over the flat parameters `[W ; U]`.
pub struct SampleProblem<'a> {
    pub task: &'a Task,
    pub sample: &'a WeightedSample,
    /// Any parameters of the right shape; only the sizes are used.
    pub shape: Params,
}

impl SampleProblem<'_> {
    fn params(&self, x: &[f64]) -> std::result::Result<Params, argmin::core::Error> {
        self.shape
            .try_with_flat(x)
            .map_err(argmin::core::Error::msg)
    }
}

impl argmin::core::CostFunction for SampleProblem<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    /// [`sample_risk`] at `shape.with_flat(x)`.
    fn cost(&self, x: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        Ok(sample_risk(self.task, &self.params(x)?, self.sample))
    }
}

impl argmin::core::Gradient for SampleProblem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    /// The gradient part of [`sample_risk_grad`] at `shape.with_flat(x)`.
    fn gradient(&self, x: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(sample_risk_grad(self.task, &self.params(x)?, self.sample).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit;
    use crate::network::empirical_risk_grad;
    use crate::norm::Norm;
    use crate::task::{Freq, TaskConfig};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn task(ln: Option<f64>, freq: Freq) -> Task {
        TaskConfig {
            s_c: 3,
            len: 3,
            classes: Some(6),
            layer_norm: ln,
            freq,
            lambda_w: 0.01,
            lambda_u: 0.03,
            ..Default::default()
        }
        .build()
        .unwrap()
    }

    #[test]
    fn merged_sample_has_the_mean_cross_entropy() {
        let t = task(None, Freq::Zipf { exponent: 1.0 });
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let data = t.sample_sentences(40, &mut rng);
        let s = WeightedSample::from_sentences(&data).unwrap();
        assert!(s.n() < data.n(), "Zipf draws repeat sentences");
        assert!((s.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let p = Params::random(&t, 0.6, &mut rng);
        let (r, g) = sample_risk_grad(&t, &p, &s);
        let (r0, g0) = empirical_risk_grad(&t, &p, &data);
        assert!((r - r0).abs() < 1e-12 * r0.abs(), "{r} vs {r0}");
        let gap = g
            .iter()
            .zip(&g0)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(gap < 1e-12, "gradient gap {gap}");
        assert_eq!(r.to_bits(), sample_risk(&t, &p, &s).to_bits());
    }

    #[test]
    fn exhaustive_sample_is_the_limit_risk() {
        for (ln, freq) in [
            (None, Freq::Zipf { exponent: 1.0 }),
            (Some(0.0), Freq::Zipf { exponent: 1.3 }),
            (None, Freq::Uniform),
        ] {
            let t = task(ln, freq);
            let s = WeightedSample::exhaustive(&t, 1 << 20).unwrap();
            assert_eq!(s.n(), 6 * 27);
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let p = Params::random(&t, 0.8, &mut rng);
            let (r, g) = sample_risk_grad(&t, &p, &s);
            let (rl, gl) = limit::risk_grad(&t, &p);
            assert!((r - rl).abs() < 1e-12 * rl.abs(), "{r} vs limit {rl}");
            let gap = g
                .iter()
                .zip(&gl)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(gap < 1e-12, "gradient gap {gap}");
        }
        assert!(WeightedSample::exhaustive(&task(None, Freq::Uniform), 100).is_err());
    }

    #[test]
    fn accuracy_counts_argmax_hits() {
        let t = task(None, Freq::Uniform);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let data = t.sample_sentences(3, &mut rng);
        let p = Params::random(&t, 1.0, &mut rng);
        let phi = features(&p, Norm::None);
        let manual = (0..data.n())
            .filter(|&i| {
                let h = scores(&p, &phi, data.sentence(i));
                let y = data.labels[i] as usize;
                h.iter().enumerate().all(|(j, &v)| j == y || v < h[y])
            })
            .count() as f64
            / data.n() as f64;
        assert_eq!(accuracy(&t, &p, &data), manual);
        assert!(WeightedSample::from_sentences(&t.sample_sentences(0, &mut rng)).is_err());
    }
}
