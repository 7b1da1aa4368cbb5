//! The data model of docs/theory.md §1: concepts, tokens, token frequencies `mu`,
//! latent variables `z_k` and sentence sampling.
//!
//! A raw [`TaskConfig`] is validated once by [`TaskConfig::build`] into a checked
//! [`Task`]; every other module takes a `&Task` and may rely on its invariants.

use crate::error::{Error, Result};
use crate::network::Params;
use crate::norm::Norm;
use rand::{Rng, SeedableRng};
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
    /// LayerNorm (without affine parameters) with this `eps`, or none: the
    /// original spelling of `norm = layer`, kept so that existing settings load
    /// unchanged. Used when `norm` is unset; [`TaskConfig::set_norm`] keeps the
    /// two consistent.
    pub layer_norm: Option<f64>,
    /// The normalization `phi`; unset means "as `layer_norm` says".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm: Option<Norm>,
    /// Weight decay on the embedding `W`.
    pub lambda_w: f64,
    /// Weight decay on the classifier `U`.
    pub lambda_u: f64,
    /// Weight decay on the LayerNorm gain and bias (`layer-affine`); unset means `lambda_w`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_affine: Option<f64>,
    /// Seed of the latent-variable draw (and of anything else random in the task).
    pub seed: u64,
    /// Explicit latent variables (row-major `K x L`, entries in `0..n_c`) instead of
    /// the full set or a seeded draw; `classes` must then be `K` or unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent: Option<Vec<usize>>,
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
            norm: None,
            lambda_w: 0.01,
            lambda_u: 0.01,
            lambda_affine: None,
            seed: 0,
            latent: None,
        }
    }
}

/// Largest full latent set we agree to build (`n_c^L`).
pub const MAX_FULL_LATENT: usize = 10_000_000;

/// Largest network we agree to build: `n_w d + K L d` parameters (2 GiB in f64).
pub const MAX_PARAMS: usize = 1 << 28;

/// A validated task: sizes, frequencies and the latent variables `z_1..z_K`.
///
/// Built only by [`TaskConfig::build`] (or [`Task::new`]); its fields are private
/// so that the derived ones (`n_w`, `k`, `mu`, `z`) always agree with the raw
/// [`TaskConfig`] it was built from, which [`Task::config`] returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    n_c: usize,
    s_c: usize,
    /// Vocabulary size `n_w = n_c * s_c`.
    n_w: usize,
    len: usize,
    dim: usize,
    /// Number of classes `K`.
    k: usize,
    /// True when `{z_k} = Z` (the full latent set, in lexicographic order).
    full_latent: bool,
    freq: Freq,
    /// `mu_beta`, length `s_c`, sums to one.
    mu: Vec<f64>,
    /// LayerNorm `eps` if the normalization is plain LayerNorm (kept in the
    /// serialized task for readers of earlier results).
    layer_norm: Option<f64>,
    /// The normalization `phi`.
    norm: Norm,
    lambda_w: f64,
    lambda_u: f64,
    /// Weight decay of the affine parameters (`lambda_W` unless set).
    lambda_affine: f64,
    seed: u64,
    /// Latent variables, row-major `K x L`: `z[k * L + l] = z_{k,l}` in `0..n_c`.
    z: Vec<usize>,
    /// The raw settings this task was built from.
    #[serde(skip)]
    config: TaskConfig,
}

impl Task {
    /// Validates `config` and builds the task (same as [`TaskConfig::build`]).
    pub fn new(config: &TaskConfig) -> Result<Task> {
        config.build()
    }
    /// The raw settings this task was built from (what a checkpoint stores).
    pub fn config(&self) -> &TaskConfig {
        &self.config
    }
    /// Number of concepts `n_c`.
    pub fn n_c(&self) -> usize {
        self.n_c
    }
    /// Tokens per concept `s_c`.
    pub fn s_c(&self) -> usize {
        self.s_c
    }
    /// Vocabulary size `n_w = n_c s_c`.
    pub fn n_w(&self) -> usize {
        self.n_w
    }
    /// Sentence length `L`.
    #[allow(clippy::len_without_is_empty)] // `len` is the sentence length L, not a size
    pub fn len(&self) -> usize {
        self.len
    }
    /// Embedding dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of classes `K`.
    pub fn k(&self) -> usize {
        self.k
    }
    /// True when `{z_k} = Z = [n_c]^L` (in lexicographic order).
    pub fn full_latent(&self) -> bool {
        self.full_latent
    }
    /// The frequency law.
    pub fn freq(&self) -> Freq {
        self.freq
    }
    /// `mu_1..mu_{s_c}` (sums to one; index 0 is the most frequent).
    pub fn mu(&self) -> &[f64] {
        &self.mu
    }
    /// The normalization `phi` applied to every embedding row.
    pub fn norm(&self) -> Norm {
        self.norm
    }
    /// Weight decay `lambda_affine` of the gain and bias (`layer-affine`).
    pub fn lambda_affine(&self) -> f64 {
        self.lambda_affine
    }
    /// The full weight-decay penalty
    /// `(lambda_W/2)||W||^2 + (lambda_U/2)||U||^2 + (lambda_affine/2)(||gamma||^2 + ||beta||^2)`.
    pub fn penalty(&self, p: &Params) -> f64 {
        p.penalty(self.lambda_w, self.lambda_u) + 0.5 * self.lambda_affine * p.affine_sq_norm()
    }
    /// Weight decay `lambda_W`.
    pub fn lambda_w(&self) -> f64 {
        self.lambda_w
    }
    /// Weight decay `lambda_U`.
    pub fn lambda_u(&self) -> f64 {
        self.lambda_u
    }
    /// `sqrt(lambda_W lambda_U)`, computed as `sqrt(lambda_W) sqrt(lambda_U)` so that
    /// it neither underflows nor overflows for any finite weight decays.
    pub fn lambda_geo(&self) -> f64 {
        self.lambda_w.sqrt() * self.lambda_u.sqrt()
    }
    /// Seed of the latent-variable draw.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Latent variables, row-major `K x L`: `z[k * L + l] = z_{k,l}`.
    pub fn z(&self) -> &[usize] {
        &self.z
    }

    /// The same task with the latent variables `z` (row-major `K x L`), checked.
    pub fn with_latent(&self, z: Vec<usize>) -> Result<Task> {
        let mut config = self.config.clone();
        config.classes = Some(z.len() / self.len.max(1));
        config.latent = Some(z);
        config.build()
    }

    /// The same task (same latent variables) with token frequencies `freq`.
    pub fn with_freq(&self, freq: Freq) -> Result<Task> {
        let mut config = self.config.clone();
        config.freq = freq;
        let mut t = config.build()?;
        t.z.clone_from(&self.z);
        Ok(t)
    }

    /// The same task (same latent variables) with the normalization `norm`.
    pub fn with_norm(&self, norm: Norm) -> Result<Task> {
        let mut config = self.config.clone();
        config.set_norm(norm);
        let mut t = config.build()?;
        t.z.clone_from(&self.z);
        Ok(t)
    }
}

impl std::fmt::Display for Freq {
    /// `uniform` or `zipf(s=EXPONENT)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Freq::Uniform => write!(f, "uniform"),
            Freq::Zipf { exponent } => write!(f, "zipf(s={})", crate::task::short(exponent)),
        }
    }
}

/// Most tokens (`K n L`) one sampled data set may hold ([`Task::check_sample`]).
pub const MAX_SAMPLE_TOKENS: usize = 1 << 30;

/// A number for messages: `{}` when short, else 6 significant digits.
pub fn short(v: f64) -> String {
    let s = format!("{v}");
    if s.len() <= 12 {
        return s;
    }
    let e = format!("{v:e}");
    if e.len() <= 12 {
        e
    } else {
        format!("{v:.6e}")
    }
}

impl std::fmt::Display for Task {
    /// One line: sizes, latent set, frequencies, LayerNorm, weight decays.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ln = match self.norm {
            Norm::Layer { eps } => format!("LayerNorm(eps={eps:e})"),
            Norm::None => "no LayerNorm".to_string(),
            n => format!("norm={n}"),
        };
        write!(
            f,
            "n_c={} s_c={} n_w={} L={} d={} K={}{} mu={} {} lambda_W={} lambda_U={}",
            self.n_c,
            self.s_c,
            self.n_w,
            self.len,
            self.dim,
            self.k,
            if self.full_latent {
                " (full latent set)"
            } else {
                " (drawn)"
            },
            self.freq,
            ln,
            short(self.lambda_w),
            short(self.lambda_u)
        )
    }
}

fn check_lambda(name: &'static str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(Error::invalid(name, v, "must be finite and >= 0"));
    }
    Ok(())
}

impl TaskConfig {
    /// Validates the settings and draws the latent variables (seeded by `seed`:
    /// `K` distinct rows drawn uniformly in `Z`, see [`draw_latent`]). Explicit
    /// latent variables must be distinct rows, and `K <= n_c^L`.
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
        // d < n_c - 1 (no equiangular frame) is a valid model, outside the theorems'
        // hypotheses; only the centring norms need d >= 2 (with d = 1, v - mean(v) = 0).
        let norm = self.resolved_norm()?;
        if let Some(eps) = self.layer_norm {
            if !eps.is_finite() || eps < 0.0 {
                return Err(Error::invalid(
                    "eps",
                    eps,
                    "LayerNorm eps must be finite and >= 0",
                ));
            }
        }
        if norm.layer_eps().is_some() && self.dim < 2 {
            return Err(Error::invalid(
                "dim",
                self.dim,
                "LayerNorm needs d >= 2 (with d = 1, v - mean(v) = 0 for every v)",
            ));
        }
        norm.check(self.dim)?;
        if let Freq::Zipf { exponent } = self.freq {
            if !exponent.is_finite() || exponent < 0.0 {
                return Err(Error::invalid(
                    "zipf_exponent",
                    exponent,
                    "must be finite and >= 0",
                ));
            }
        }
        check_lambda("lambda_w", self.lambda_w)?;
        check_lambda("lambda_u", self.lambda_u)?;
        if let Some(la) = self.lambda_affine {
            check_lambda("lambda_affine", la)?;
        }
        // Sizes first, in checked arithmetic, before anything is allocated.
        let full_size = (self.n_c as f64).powf(self.len as f64);
        let full_exact = u32::try_from(self.len)
            .ok()
            .and_then(|l| self.n_c.checked_pow(l));
        let n_w = self
            .n_c
            .checked_mul(self.s_c)
            .ok_or_else(|| Error::invalid("s_c", self.s_c, "n_w = n_c * s_c overflows"))?;
        let k = match (&self.latent, self.classes) {
            (_, Some(k)) if k < 2 => {
                return Err(Error::invalid(
                    "classes",
                    k,
                    "needs at least 2 classes (with one class the cross entropy is identically 0)",
                ))
            }
            (Some(z), classes) => {
                let k = z.len() / self.len;
                if z.len() % self.len == 0 && k == 1 {
                    return Err(Error::invalid(
                        "classes",
                        1,
                        "needs at least 2 classes (with one class the cross entropy is identically 0)",
                    ));
                }
                if z.len() % self.len != 0 || k == 0 || classes.is_some_and(|c| c != k) {
                    return Err(Error::invalid(
                        "latent",
                        format!("{} entries", z.len()),
                        format!("must hold K x L entries with L = {}{}", self.len, classes.map(|c| format!(" and K = {c}")).unwrap_or_default()),
                    ));
                }
                if let Some(&bad) = z.iter().find(|&&a| a >= self.n_c) {
                    return Err(Error::invalid("latent", bad, format!("concepts are 0..{}", self.n_c - 1)));
                }
                if let Some(pair) = repeated_rows(z, self.len) {
                    return Err(repeated_rows_error("latent", format!("{} rows", k), z, self.len, pair));
                }
                k
            }
            (None, None) => match full_exact.filter(|&k| k <= MAX_FULL_LATENT) {
                Some(k) => k,
                None => {
                    return Err(Error::invalid(
                        "len",
                        self.len,
                        format!(
                            "the full latent set has n_c^L = {full_size:.3e} classes, over the limit of {MAX_FULL_LATENT}; give --classes K or a smaller L"
                        ),
                    ))
                }
            },
            (None, Some(k)) => {
                if full_exact.is_some_and(|f| k > f) {
                    return Err(Error::invalid(
                        "classes",
                        k,
                        format!(
                            "above n_c^L = {}, so some classes would share a latent variable; use at most {} (or omit --classes for the full latent set)",
                            full_exact.unwrap_or(0),
                            full_exact.unwrap_or(0)
                        ),
                    ));
                }
                k
            }
        };
        let params = n_w
            .checked_mul(self.dim)
            .zip(
                k.checked_mul(self.len)
                    .and_then(|kl| kl.checked_mul(self.dim)),
            )
            .and_then(|(a, b)| a.checked_add(b));
        match params {
            Some(p) if p <= MAX_PARAMS => {}
            _ => {
                // Blame the size that makes the network too big: with d = 1 it
                // would have n_w + K L parameters.
                let kl = k.checked_mul(self.len);
                let base = kl.and_then(|kl| kl.checked_add(n_w));
                let (name, value) = match (base, kl) {
                    (Some(b), _) if b <= MAX_PARAMS => ("dim", self.dim.to_string()),
                    (_, Some(kl)) if n_w > kl => ("s_c", self.s_c.to_string()),
                    _ if self.classes.is_some() => ("classes", k.to_string()),
                    _ => ("len", self.len.to_string()),
                };
                return Err(Error::invalid(
                    name,
                    value,
                    format!(
                        "the network would have n_w d + K L d = {:.3e} parameters, over the limit of {MAX_PARAMS}",
                        (n_w as f64) * (self.dim as f64) + (k as f64) * (self.len as f64) * (self.dim as f64)
                    ),
                ));
            }
        }
        let (full_latent, z) = match &self.latent {
            Some(z) => {
                let full = full_exact == Some(k) && *z == full_latent_set(self.n_c, self.len);
                (full, z.clone())
            }
            None if self.classes.is_none() => (true, full_latent_set(self.n_c, self.len)),
            None => {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                (false, draw_latent(self.n_c, self.len, k, &mut rng))
            }
        };
        Ok(Task {
            n_c: self.n_c,
            s_c: self.s_c,
            n_w,
            len: self.len,
            dim: self.dim,
            k,
            full_latent,
            freq: self.freq,
            mu: self.freq.weights(self.s_c),
            layer_norm: norm.layer_eps(),
            norm,
            lambda_w: self.lambda_w,
            lambda_u: self.lambda_u,
            lambda_affine: self.lambda_affine.unwrap_or(self.lambda_w),
            seed: self.seed,
            z,
            config: self.clone(),
        })
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

    /// Checks that `n_per_class` sentences for every class (flag or field `name`)
    /// fit in memory: `K n_per_class L <= MAX_SAMPLE_TOKENS` tokens, refused as bad
    /// input otherwise (a sample that large would abort on allocation).
    pub fn check_sample(&self, name: &'static str, n_per_class: usize) -> Result<()> {
        let tokens = (self.k as f64) * (n_per_class as f64) * (self.len as f64);
        if tokens > MAX_SAMPLE_TOKENS as f64 {
            return Err(Error::invalid(
                name,
                n_per_class,
                format!(
                    "K * {name} * L = {tokens:.3e} tokens (K = {}, L = {}) is over the {MAX_SAMPLE_TOKENS} one sample may hold (4 GiB)",
                    self.k, self.len
                ),
            ));
        }
        Ok(())
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

    /// Number of trainable parameters `n_w d + K L d` (`+ 2 d` with `layer-affine`).
    pub fn n_params(&self) -> usize {
        self.n_w * self.dim + self.k * self.len * self.dim + self.norm.n_affine(self.dim)
    }
}

mod latent;
mod norm_config;
mod sentences;

pub use latent::{draw_latent, full_latent_set, repeated_rows, repeated_rows_error};
pub use sentences::{RankSampler, Sentences};

#[cfg(test)]
mod tests;
