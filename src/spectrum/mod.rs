//! Spectrum of a symmetric operator known only through its products `v -> A v`
//! (in practice the Hessian of the exact limit risk, see [`hessian_spectrum`]),
//! with the three estimators that Hessian-analysis toolkits such as PyHessian
//! (Yao, Gholami, Keutzer, Mahoney 2020) report:
//!
//! - [`top_eigenvalues`]: the `k` largest eigenvalues by Lanczos with full
//!   reorthogonalisation and locking (converged Ritz vectors are deflated and a
//!   last run from a fresh start confirms that no copy of a repeated eigenvalue
//!   was missed);
//! - [`hutchinson_trace`]: `tr A ~ (1/m) sum_i z_i^T A z_i` with `m` seeded
//!   Rademacher probes `z_i in {-1, +1}^n` (Hutchinson 1989), unbiased, with the
//!   standard error `s / sqrt(m)` (`s` the sample standard deviation of the
//!   `z_i^T A z_i`);
//! - [`slq`] and [`Density`]: the spectral density by stochastic Lanczos quadrature
//!   (Ghorbani, Krishnan, Xiao 2019; Lin, Saad, Yang 2016): for each seeded
//!   probe `q = z/||z||` (`z` Rademacher), `m` Lanczos steps from `q` give the Ritz
//!   values `theta_c` and the weights `tau_c = s_c[0]^2` (the first components of the
//!   eigenvectors of the tridiagonal matrix), the Gauss quadrature of the spectral
//!   measure of `q`. Since `E[(q . u_j)^2] = 1/n` for every unit eigenvector `u_j`,
//!   the average of these measures over probes estimates the spectral density
//!   `(1/n) sum_j delta(t - lambda_j)`; it is broadened by a Gaussian of width
//!   `sigma`. Its total mass is 1 and its first moment is the mean of the
//!   probes' Rayleigh quotients `q^T A q`, an estimate of `tr A / n`.
//!
//! Everything is deterministic in the seed (one ChaCha8 stream per estimator).

pub mod hessian;
pub mod lanczos;
#[cfg(test)]
mod tests;

pub use hessian::{density_figure, hessian_spectrum, HessianSpectrum};

use crate::error::{Error, Result};
use crate::network::{dot, standard_normal};
use lanczos::krylov;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Settings of [`hessian_spectrum`].
#[derive(Debug, Clone, PartialEq)]
pub struct SpectrumConfig {
    /// Number of largest eigenvalues (`--top-k`).
    pub top_k: usize,
    /// Rademacher probes of the trace estimate (`--hutchinson-probes`, `>= 2`).
    pub hutchinson_probes: usize,
    /// Probes of the spectral density (`--slq-probes`).
    pub slq_probes: usize,
    /// Lanczos steps per density probe (`--slq-steps`; capped at `n`).
    pub slq_steps: usize,
    /// Gaussian broadening of the density, relative to the width of the Ritz
    /// values' range (`--slq-sigma`).
    pub slq_sigma: f64,
    /// Points of the density grid.
    pub grid_points: usize,
    /// Seed of every probe.
    pub seed: u64,
    /// Most operator products of the top-eigenvalue search.
    pub max_products: usize,
    /// Convergence of a Ritz value: residual `<= tol * max|theta|`.
    pub tol: f64,
}

impl Default for SpectrumConfig {
    fn default() -> Self {
        SpectrumConfig {
            top_k: 5,
            hutchinson_probes: 100,
            slq_probes: 10,
            slq_steps: 60,
            slq_sigma: 0.01,
            grid_points: 512,
            seed: 0,
            max_products: 2000,
            tol: 1e-6,
        }
    }
}

impl SpectrumConfig {
    /// Checks every count `>= 1` (`hutchinson_probes >= 2`, for a standard error)
    /// and `slq_sigma`, `tol` finite and `> 0`.
    pub fn validate(&self) -> Result<()> {
        let counts = [
            ("top-k", self.top_k, 1),
            ("hutchinson-probes", self.hutchinson_probes, 2),
            ("slq-probes", self.slq_probes, 1),
            ("slq-steps", self.slq_steps, 1),
            ("grid-points", self.grid_points, 2),
            ("max-products", self.max_products, 1),
        ];
        for (name, v, min) in counts {
            if v < min {
                return Err(Error::invalid(name, v, format!("must be >= {min}")));
            }
        }
        for (name, v) in [("slq-sigma", self.slq_sigma), ("tol", self.tol)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(name, v, "must be finite and > 0"));
            }
        }
        Ok(())
    }
}

/// Streams of the seeded generator, one per estimator.
const STREAM_HUTCHINSON: u64 = 1;
const STREAM_SLQ: u64 = 2;
const STREAM_TOP: u64 = 3;

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

fn rademacher(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n)
        .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
        .collect()
}

/// Result of [`top_eigenvalues`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopEigen {
    /// The largest eigenvalues, descending.
    pub values: Vec<f64>,
    /// Lanczos residual bound of each (`|theta - lambda| <= residual` for some
    /// eigenvalue `lambda` of the deflated operator).
    pub residuals: Vec<f64>,
    /// Operator products used.
    pub products: usize,
    /// Every value converged and the confirming run found nothing larger than
    /// the `k`-th (false when `max_products` ran out first).
    pub converged: bool,
}

/// The `k` largest eigenvalues of the symmetric `n x n` operator `apply`.
///
/// Lanczos runs ([`lanczos::krylov`]) from seeded Gaussian starts, each on the
/// operator with the already locked Ritz vectors projected out, until the `r`
/// largest Ritz values still wanted have residual `<= tol * max|theta|`; their
/// Ritz vectors are locked. One Lanczos run sees a single copy of a repeated
/// eigenvalue, so once `k` values are locked a further run (fresh start, all
/// locked vectors deflated) looks for a larger one; if its top Ritz value
/// exceeds the `k`-th locked value it is locked too and the check repeats.
pub fn top_eigenvalues(
    mut apply: impl FnMut(&[f64]) -> Vec<f64>,
    n: usize,
    k: usize,
    seed: u64,
    max_products: usize,
    tol: f64,
) -> TopEigen {
    let k = k.min(n);
    let mut r = rng(seed, STREAM_TOP);
    // (value, unit vector, residual)
    let mut locked: Vec<(f64, Vec<f64>, f64)> = Vec::new();
    let (mut products, mut converged) = (0, true);
    while locked.len() < n && k > 0 {
        if products >= max_products {
            converged = false;
            break;
        }
        let filled = locked.len() >= k;
        let need = if filled { 1 } else { k - locked.len() };
        let start: Vec<f64> = (0..n).map(|_| standard_normal(&mut r)).collect();
        let deflate: Vec<Vec<f64>> = locked.iter().map(|l| l.1.clone()).collect();
        let run = krylov(
            &mut apply,
            &deflate,
            &start,
            max_products - products,
            |ritz, vecs, b| {
                let m = ritz.len();
                let scale = ritz.iter().fold(0.0f64, |s, v| s.max(v.abs()));
                m >= need && (m - need..m).all(|c| b * vecs[(m - 1, c)].abs() <= tol * scale)
            },
        );
        products += run.products;
        let m = run.ritz.len();
        let scale = run.ritz.iter().fold(0.0f64, |s, v| s.max(v.abs()));
        let fresh: Vec<(f64, Vec<f64>, f64)> = (m.saturating_sub(need)..m)
            .rev()
            .map(|c| (run.ritz[c], run.ritz_vector(c), run.residual(c)))
            .collect();
        let all_converged = run.invariant || fresh.iter().all(|f| f.2 <= tol * scale);
        if filled {
            locked.sort_by(|a, b| b.0.total_cmp(&a.0));
            let kth = locked[k - 1].0;
            let top = fresh[0].0;
            let scale = scale.max(locked[0].0.abs());
            if all_converged && top <= kth + tol * scale {
                break;
            }
            locked.push(fresh.into_iter().next().expect("one Ritz value"));
        } else {
            locked.extend(fresh);
        }
        if !all_converged {
            converged = false;
            break;
        }
    }
    locked.sort_by(|a, b| b.0.total_cmp(&a.0));
    locked.truncate(k);
    TopEigen {
        values: locked.iter().map(|l| l.0).collect(),
        residuals: locked.iter().map(|l| l.2).collect(),
        products,
        converged,
    }
}

/// Result of [`hutchinson_trace`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceEstimate {
    /// `(1/m) sum_i z_i^T A z_i`.
    pub value: f64,
    /// `s / sqrt(m)`, `s` the unbiased sample standard deviation of the `z_i^T A z_i`.
    pub std_error: f64,
    /// Number of probes `m`.
    pub probes: usize,
}

/// Hutchinson's estimate of `tr A` with `probes` seeded Rademacher probes (see
/// the module doc); `probes` operator products.
pub fn hutchinson_trace(
    mut apply: impl FnMut(&[f64]) -> Vec<f64>,
    n: usize,
    probes: usize,
    seed: u64,
) -> TraceEstimate {
    let mut r = rng(seed, STREAM_HUTCHINSON);
    let samples: Vec<f64> = (0..probes)
        .map(|_| {
            let z = rademacher(n, &mut r);
            dot(&z, &apply(&z))
        })
        .collect();
    let m = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / m;
    let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (m - 1.0).max(1.0);
    TraceEstimate {
        value: mean,
        std_error: (var / m).sqrt(),
        probes,
    }
}

/// Ritz values and quadrature weights of stochastic Lanczos quadrature ([`slq`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slq {
    /// Ritz values `theta_{p,c}` of probe `p`, ascending.
    pub nodes: Vec<Vec<f64>>,
    /// Weights `tau_{p,c}` (each probe's sum to 1).
    pub weights: Vec<Vec<f64>>,
    /// Operator products used.
    pub products: usize,
}

impl Slq {
    /// The `j`-th moment of the (unbroadened) estimated density,
    /// `(1/P) sum_p sum_c tau_{p,c} theta_{p,c}^j`; `j = 1` is the mean Rayleigh
    /// quotient of the probes, an estimate of `tr A / n`.
    pub fn moment(&self, j: i32) -> f64 {
        let p = self.nodes.len().max(1) as f64;
        self.nodes
            .iter()
            .zip(&self.weights)
            .map(|(t, w)| t.iter().zip(w).map(|(t, w)| w * t.powi(j)).sum::<f64>())
            .sum::<f64>()
            / p
    }

    /// Smallest and largest Ritz value over all probes.
    pub fn range(&self) -> (f64, f64) {
        self.nodes
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    }
}

/// Stochastic Lanczos quadrature: `probes` seeded Rademacher starts, `steps`
/// Lanczos steps each (fewer when the Krylov space becomes invariant; at most `n`).
pub fn slq(
    mut apply: impl FnMut(&[f64]) -> Vec<f64>,
    n: usize,
    probes: usize,
    steps: usize,
    seed: u64,
) -> Slq {
    let mut r = rng(seed, STREAM_SLQ);
    let (mut nodes, mut weights, mut products) = (Vec::new(), Vec::new(), 0);
    for _ in 0..probes {
        let z = rademacher(n, &mut r);
        let run = krylov(&mut apply, &[], &z, steps, |_, _, _| false);
        products += run.products;
        weights.push(run.weights());
        nodes.push(run.ritz);
    }
    Slq {
        nodes,
        weights,
        products,
    }
}

/// The SLQ density broadened by a Gaussian and sampled on a grid:
/// `phi(t) = (1/P) sum_p sum_c tau_{p,c} N(t; theta_{p,c}, sigma^2)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Density {
    /// `sigma = sigma_rel * (theta_max - theta_min)` (`* max(1, |theta_max|)` when
    /// all Ritz values coincide).
    pub sigma: f64,
    /// Equally spaced points from `theta_min - 5 sigma` to `theta_max + 5 sigma`.
    pub grid: Vec<f64>,
    /// `phi` at the grid points; its trapezoidal integral is 1 up to the Gaussian
    /// tails beyond 5 sigma (`< 1e-6`).
    pub values: Vec<f64>,
}

impl Density {
    /// The broadened density of `slq` on `points` grid points.
    pub fn new(slq: &Slq, sigma_rel: f64, points: usize) -> Density {
        let (lo, hi) = slq.range();
        let width = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
        let sigma = sigma_rel * width;
        let (a, b) = (lo - 5.0 * sigma, hi + 5.0 * sigma);
        let points = points.max(2);
        let grid: Vec<f64> = (0..points)
            .map(|i| a + (b - a) * i as f64 / (points - 1) as f64)
            .collect();
        let norm = 1.0 / (sigma * (std::f64::consts::TAU).sqrt() * slq.nodes.len() as f64);
        let values = grid
            .iter()
            .map(|&t| {
                let s: f64 = slq
                    .nodes
                    .iter()
                    .flatten()
                    .zip(slq.weights.iter().flatten())
                    .map(|(&th, &w)| w * (-0.5 * ((t - th) / sigma).powi(2)).exp())
                    .sum();
                s * norm
            })
            .collect();
        Density {
            sigma,
            grid,
            values,
        }
    }

    /// Trapezoidal integral of `t^j phi(t)` over the grid.
    pub fn integral(&self, j: i32) -> f64 {
        self.grid
            .windows(2)
            .zip(self.values.windows(2))
            .map(|(t, v)| 0.5 * (t[1] - t[0]) * (t[0].powi(j) * v[0] + t[1].powi(j) * v[1]))
            .sum()
    }
}
