//! The data model of THEORY §1: concepts, tokens, token frequencies `mu`,
//! latent variables `z_k` and sentence sampling.
//!
//! A raw [`TaskConfig`] is validated once by [`TaskConfig::build`] into a checked
//! [`Task`]; every other module takes a `&Task` and may rely on its invariants.

use crate::error::{Error, Result};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Token frequencies inside a concept (the same for every concept).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Freq {
    /// `mu_beta = 1/s_c`.
    Uniform,
    /// `mu_beta ∝ 1 / beta^exponent`, `beta = 1..s_c` (the paper uses exponent 1).
    Zipf { exponent: f64 },
}

impl Freq {
    /// The normalised frequencies `mu_1..mu_{s_c}` (index 0 is the most frequent).
    pub fn weights(&self, s_c: usize) -> Vec<f64> {
        let raw: Vec<f64> = match *self {
            Freq::Uniform => vec![1.0; s_c],
            Freq::Zipf { exponent } => (1..=s_c).map(|b| (b as f64).powf(-exponent)).collect(),
        };
        let total: f64 = raw.iter().sum();
        raw.into_iter().map(|m| m / total).collect()
    }

    /// True when every `mu_beta` is equal (uniform, or Zipf with exponent 0).
    pub fn is_uniform(&self) -> bool {
        match *self {
            Freq::Uniform => true,
            Freq::Zipf { exponent } => exponent == 0.0,
        }
    }
}

/// Raw, unvalidated task settings (what a user or a preset gives).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskConfig {
    /// Number of concepts `n_c` (>= 2).
    pub n_c: usize,
    /// Tokens per concept `s_c` (>= 1); `n_w = n_c * s_c`.
    pub s_c: usize,
    /// Sentence length `L` (>= 1).
    pub len: usize,
    /// Embedding dimension `d`.
    pub dim: usize,
    /// Number of classes `K`; `None` means the full latent set `Z = [n_c]^L`.
    pub classes: Option<usize>,
    /// Token frequencies.
    pub freq: Freq,
    /// LayerNorm (without affine parameters) with this `eps`, or none.
    pub layer_norm: Option<f64>,
    /// Weight decay on the embedding `W`.
    pub lambda_w: f64,
    /// Weight decay on the classifier `U`.
    pub lambda_u: f64,
    /// Seed of the latent-variable draw (and of anything else random in the task).
    pub seed: u64,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            n_c: 3,
            s_c: 2,
            len: 2,
            dim: 4,
            classes: None,
            freq: Freq::Uniform,
            layer_norm: None,
            lambda_w: 0.01,
            lambda_u: 0.01,
            seed: 0,
        }
    }
}

/// Largest full latent set we agree to build (`n_c^L`).
pub const MAX_FULL_LATENT: usize = 10_000_000;

/// A validated task: sizes, frequencies and the latent variables `z_1..z_K`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub n_c: usize,
    pub s_c: usize,
    /// Vocabulary size `n_w = n_c * s_c`.
    pub n_w: usize,
    pub len: usize,
    pub dim: usize,
    /// Number of classes `K`.
    pub k: usize,
    /// True when `{z_k} = Z` (the full latent set, in lexicographic order).
    pub full_latent: bool,
    pub freq: Freq,
    /// `mu_beta`, length `s_c`, sums to one.
    pub mu: Vec<f64>,
    /// LayerNorm `eps` if LayerNorm is on.
    pub layer_norm: Option<f64>,
    pub lambda_w: f64,
    pub lambda_u: f64,
    pub seed: u64,
    /// Latent variables, row-major `K x L`: `z[k * L + l] = z_{k,l}` in `0..n_c`.
    pub z: Vec<usize>,
}

fn check_lambda(name: &'static str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(Error::invalid(name, v, "must be finite and >= 0"));
    }
    Ok(())
}

impl TaskConfig {
    /// Validates the settings and draws the latent variables (seeded by `seed`,
    /// uniformly and independently in `Z`, as the paper does).
    pub fn build(&self) -> Result<Task> {
        if self.n_c < 2 {
            return Err(Error::invalid("n_c", self.n_c, "needs at least 2 concepts"));
        }
        if self.s_c < 1 {
            return Err(Error::invalid(
                "s_c",
                self.s_c,
                "needs at least 1 token per concept",
            ));
        }
        if self.len < 1 {
            return Err(Error::invalid(
                "len",
                self.len,
                "sentence length L must be >= 1",
            ));
        }
        if self.dim < 1 {
            return Err(Error::invalid(
                "dim",
                self.dim,
                "embedding dimension d must be >= 1",
            ));
        }
        let min_d = if self.layer_norm.is_some() {
            self.n_c
        } else {
            self.n_c - 1
        };
        if self.dim < min_d {
            return Err(Error::invalid(
                "dim",
                self.dim,
                format!(
                    "an equiangular frame of {} concepts{} needs d >= {min_d}",
                    self.n_c,
                    if self.layer_norm.is_some() {
                        " that is mean-zero (LayerNorm)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if let Freq::Zipf { exponent } = self.freq {
            if !exponent.is_finite() || exponent < 0.0 {
                return Err(Error::invalid(
                    "zipf_exponent",
                    exponent,
                    "must be finite and >= 0",
                ));
            }
        }
        if let Some(eps) = self.layer_norm {
            if !eps.is_finite() || eps < 0.0 {
                return Err(Error::invalid(
                    "eps",
                    eps,
                    "LayerNorm eps must be finite and >= 0",
                ));
            }
        }
        check_lambda("lambda_w", self.lambda_w)?;
        check_lambda("lambda_u", self.lambda_u)?;
        let full_size = (self.n_c as f64).powi(self.len as i32);
        let (k, full_latent, z) = match self.classes {
            None => {
                if full_size > MAX_FULL_LATENT as f64 {
                    return Err(Error::invalid(
                        "classes",
                        format!("n_c^L = {full_size:.3e}"),
                        format!("the full latent set is limited to {MAX_FULL_LATENT} classes; give --classes"),
                    ));
                }
                let k = full_size as usize;
                (k, true, full_latent_set(self.n_c, self.len))
            }
            Some(0) => return Err(Error::invalid("classes", 0, "needs at least 1 class")),
            Some(k) => {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                (k, false, draw_latent(self.n_c, self.len, k, &mut rng))
            }
        };
        Ok(Task {
            n_c: self.n_c,
            s_c: self.s_c,
            n_w: self.n_c * self.s_c,
            len: self.len,
            dim: self.dim,
            k,
            full_latent,
            freq: self.freq,
            mu: self.freq.weights(self.s_c),
            layer_norm: self.layer_norm,
            lambda_w: self.lambda_w,
            lambda_u: self.lambda_u,
            seed: self.seed,
            z,
        })
    }
}

/// All of `Z = [n_c]^L` in lexicographic order (position `L-1` varies fastest).
pub fn full_latent_set(n_c: usize, len: usize) -> Vec<usize> {
    let k = n_c.pow(len as u32);
    let mut z = vec![0usize; k * len];
    for idx in 0..k {
        let mut r = idx;
        for l in (0..len).rev() {
            z[idx * len + l] = r % n_c;
            r /= n_c;
        }
    }
    z
}

/// `k` latent variables drawn uniformly and independently from `Z` (row-major `k x len`).
pub fn draw_latent(n_c: usize, len: usize, k: usize, rng: &mut impl Rng) -> Vec<usize> {
    (0..k * len).map(|_| rng.random_range(0..n_c)).collect()
}

/// Samples token ranks `beta` from `mu` by inverse CDF.
#[derive(Debug, Clone)]
pub struct RankSampler {
    cdf: Vec<f64>,
}

impl RankSampler {
    pub fn new(mu: &[f64]) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = mu
            .iter()
            .map(|m| {
                acc += m;
                acc
            })
            .collect();
        if let Some(last) = cdf.last_mut() {
            *last = f64::INFINITY; // guard against round-off in the total
        }
        RankSampler { cdf }
    }

    /// One draw `beta ~ mu`, as an index in `0..s_c`.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&c| c <= u)
    }
}

/// A set of sentences with their class labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentences {
    /// Row-major `n x L` flat token indices `alpha * s_c + beta`.
    pub tokens: Vec<u32>,
    /// Class of each sentence, length `n`.
    pub labels: Vec<u32>,
    pub len: usize,
}

impl Sentences {
    pub fn n(&self) -> usize {
        self.labels.len()
    }
    pub fn sentence(&self, i: usize) -> &[u32] {
        &self.tokens[i * self.len..(i + 1) * self.len]
    }
}

impl Task {
    /// Latent variable `z_k` (length `L`).
    pub fn z_of(&self, k: usize) -> &[usize] {
        &self.z[k * self.len..(k + 1) * self.len]
    }

    /// Flat token index of `(alpha, beta)`: `alpha * s_c + beta`.
    pub fn token(&self, alpha: usize, beta: usize) -> usize {
        alpha * self.s_c + beta
    }

    /// Number of positions where `z_j` and `z_k` differ (`dist(z_j, z_k)`).
    pub fn dist(&self, j: usize, k: usize) -> usize {
        self.z_of(j)
            .iter()
            .zip(self.z_of(k))
            .filter(|(a, b)| a != b)
            .count()
    }

    /// `n_per_class` sentences for every class, class-major: `x_l = (z_{k,l}, beta_l)`
    /// with `beta_l ~ mu` independently.
    pub fn sample_sentences(&self, n_per_class: usize, rng: &mut impl Rng) -> Sentences {
        let sampler = RankSampler::new(&self.mu);
        let n = self.k * n_per_class;
        let mut tokens = Vec::with_capacity(n * self.len);
        let mut labels = Vec::with_capacity(n);
        for k in 0..self.k {
            let z = self.z_of(k);
            for _ in 0..n_per_class {
                for &alpha in z {
                    tokens.push((alpha * self.s_c + sampler.sample(rng)) as u32);
                }
                labels.push(k as u32);
            }
        }
        Sentences {
            tokens,
            labels,
            len: self.len,
        }
    }

    /// Number of trainable parameters `n_w d + K L d`.
    pub fn n_params(&self) -> usize {
        self.n_w * self.dim + self.k * self.len * self.dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_weights_are_normalised_and_decreasing() {
        let mu = Freq::Zipf { exponent: 1.0 }.weights(4);
        let h = 1.0 + 0.5 + 1.0 / 3.0 + 0.25;
        assert!((mu[0] - 1.0 / h).abs() < 1e-15);
        assert!((mu.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!(mu.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn full_latent_set_lists_every_sequence_once() {
        let z = full_latent_set(3, 3);
        let mut seen = std::collections::HashSet::new();
        for row in z.chunks(3) {
            assert!(row.iter().all(|&a| a < 3));
            assert!(seen.insert(row.to_vec()));
        }
        assert_eq!(seen.len(), 27);
    }

    #[test]
    fn bad_inputs_name_the_parameter() {
        let bad = |c: TaskConfig, name: &str| match c.build() {
            Err(Error::InvalidParam { name: n, .. }) => assert_eq!(n, name),
            other => panic!("expected error on {name}, got {other:?}"),
        };
        bad(
            TaskConfig {
                classes: Some(0),
                ..Default::default()
            },
            "classes",
        );
        bad(
            TaskConfig {
                lambda_w: -1.0,
                ..Default::default()
            },
            "lambda_w",
        );
        bad(
            TaskConfig {
                lambda_u: f64::NAN,
                ..Default::default()
            },
            "lambda_u",
        );
        bad(
            TaskConfig {
                dim: 1,
                ..Default::default()
            },
            "dim",
        );
        bad(
            TaskConfig {
                dim: 2,
                layer_norm: Some(0.0),
                ..Default::default()
            },
            "dim",
        );
        bad(
            TaskConfig {
                freq: Freq::Zipf { exponent: -1.0 },
                ..Default::default()
            },
            "zipf_exponent",
        );
    }

    #[test]
    fn sampled_ranks_follow_mu() {
        let task = TaskConfig {
            s_c: 3,
            freq: Freq::Zipf { exponent: 1.0 },
            ..Default::default()
        }
        .build()
        .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let s = task.sample_sentences(20_000, &mut rng);
        let mut counts = [0usize; 3];
        for (i, &t) in s.tokens.iter().enumerate() {
            let k = s.labels[i / task.len] as usize;
            let alpha = task.z_of(k)[i % task.len];
            assert_eq!(
                t as usize / task.s_c,
                alpha,
                "token must belong to concept z_k,l"
            );
            counts[t as usize % task.s_c] += 1;
        }
        let total = s.tokens.len() as f64;
        for (b, &count) in counts.iter().enumerate() {
            let f = count as f64 / total;
            assert!(
                (f - task.mu[b]).abs() < 0.01,
                "rank {b}: {f} vs {}",
                task.mu[b]
            );
        }
    }
}
