//! Sentences and the rank sampler that draws their tokens.

use rand::{Rng, RngExt};

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
