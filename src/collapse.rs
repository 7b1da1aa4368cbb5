//! Equiangular frames, the three collapse types and their reduced objectives
//! (THEORY §3–4).
//!
//! # Conventions
//!
//! `kappa = n_c/(n_c-1)`, `q = 1/n_c`, `p = 1 - q`, `K` the number of classes,
//! `L` the sentence length, `mu_beta` the in-concept token frequencies and
//! `dist(z_j, z_k)` the number of positions where two latent variables differ.
//! A collapsed configuration is `w_{(alpha,beta)} = rho_beta f_alpha` (`rho_beta = a`
//! for type I, `phi(w) = sqrt(d) f_alpha` for type II, `rho_beta = r_beta` for
//! type III) and `u_{k,l} = b f_{z_{k,l}}` with an equiangular frame `f`. There
//! `h_j - h_k = -kappa b sum_{l: z_{j,l} != z_{k,l}} rho_{beta_l}`, so the risk only
//! depends on the products `x_beta = b rho_beta` and on the norms.
//!
//! # Reduced objectives (loss part; the penalties are added to each)
//!
//! - [`Form::Full`] (full latent set, `K = n_c^L`):
//!   `L sum_beta mu_beta log(1 + (n_c-1) e^{-kappa x_beta})`.
//! - [`Form::LatentSet`] (the task's actual latent variables):
//!   `(1/K) sum_k E_{beta~mu^L} log(1 + sum_{j != k} exp(-kappa sum_{l: z_{j,l} != z_{k,l}} x_{beta_l}))`;
//!   for equal `x_beta = c` it is `(1/K) sum_k log(1 + sum_m n_k[m] e^{-kappa c m})`
//!   with `n_k[m]` the number of classes `j != k` at distance `m` from `z_k`.
//!   On the full latent set it equals the full form (the sum factorises), and is
//!   computed that way.
//! - [`Form::MeanField`] (THEORY's symmetric form):
//!   `E_{beta~mu^L} log(1 + K prod_l (q + p e^{-kappa x_{beta_l}}))`.
//!
//! Penalties: types I and III `(lambda_W/2) n_c sum_beta rho_beta^2 + (lambda_U/2) K L b^2`
//! (`= (lambda_W/2) n_w a^2 + ...` for type I); type II `(lambda_U/2) K L b^2` only:
//! with `eps = 0` LayerNorm is scale invariant, so `||W||` can be shrunk to zero
//! without changing `phi(W)` and the `W` penalty vanishes in the infimum (it is
//! not attained when `lambda_W > 0`, which is why THEORY asks `lambda_W = 0`).
//! Type II predictions use the `eps = 0` theory whatever the task's `eps` is.
//!
//! # How the minimisers are found
//!
//! For fixed `x = b rho`, the balance of the two penalties gives
//! `min_b [(lambda_W/2) n_c ||x||^2 / b^2 + (lambda_U/2) K L b^2] = gamma ||x||` with
//! `gamma = sqrt(lambda_W lambda_U n_c K L)`, reached at
//! `b^2 = ||x|| sqrt(lambda_W n_c / (lambda_U K L))`. Every reduced loss above is
//! convex in `x` (log-sum-exp of linear functions, or a convex increasing
//! function of a sum of convex functions), so types I and III reduce to the
//! convex problem `min_x loss(x) + gamma ||x||`, and type II to the convex 1-D
//! problem `min_b loss(sqrt(d) b 1) + (lambda_U/2) K L b^2`.
//!
//! - Types I/II, every form: safeguarded Newton on the increasing 1-D derivative
//!   (closed form for type I full), to round-off.
//! - Type III full: the critical-point system of THEORY §4. Writing
//!   `t = ||x||/gamma`, each `x_beta` solves the 1-D monotone equation
//!   `x_beta = t L kappa mu_beta sigma(x_beta)` and `t` solves the 1-D monotone
//!   equation `||x(t)|| = gamma t` (`||x(t)||/t` is decreasing), so the non-trivial
//!   root is unique; it exists iff `L kappa (n_c-1)/n_c ||mu|| > gamma`, otherwise
//!   the only critical point `x = 0` is the minimiser. All to round-off.
//! - Type III latent-set / mean-field: damped Newton (exact Hessian, Cholesky,
//!   Armijo backtracking) on `loss(x) + gamma ||x||`, stopped when the Newton
//!   decrement `g^T H^{-1} g < 1e-24`, i.e. to round-off *for the evaluated
//!   objective*. The expectation over `beta` is an exact enumeration when small
//!   (latent set: `s_c^L K^2 L < 1e9`; mean field: `s_c^L <= 2^20`), else a fixed
//!   sample average (seeded ChaCha8 with `task.seed`, Latin-hypercube ranks per
//!   position, classes cycled through a random permutation); the reported risk
//!   is then the sample-average value and `risk_error` its Monte-Carlo standard
//!   error (i.i.d. formula, conservative for the stratified draw). Sample sizes:
//!   mean field `M = 200000`; latent set `M = clamp(3e8 / (K L^2), 512, 200000)`
//!   (`M = 1334` at the paper's `K = 1000, L = 15`). The returned `r_beta`
//!   minimise that sample average to round-off; as estimates of the exact
//!   minimiser they carry sampling error that grows for rare ranks (about
//!   `M L mu_beta` draws inform `r_beta`): at the paper's Zipf shape the first
//!   ranks are good to about 1 % in the latent-set form, while ranks drawn only
//!   a few times (`beta` near `s_c = 400`) can be off by a factor 2 or more —
//!   use the mean-field form, or a full-latent-set task, for the tail.

use crate::error::{Error, Result};
use crate::network::Params;
use crate::task::Task;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Exact latent-set enumeration when `s_c^L K^2 L` is below this.
const EXACT_LATENT_WORK: f64 = 1e9;
/// ... and the number of enumerated `(k, beta)` pairs `K s_c^L` is below this.
const EXACT_LATENT_PAIRS: f64 = 4e6;
/// Exact mean-field enumeration when `s_c^L` is at most this.
const EXACT_MEAN_FIELD: f64 = 1_048_576.0;
/// Monte-Carlo sample size of the mean-field type-III form.
const MEAN_FIELD_SAMPLES: usize = 200_000;
/// Target work `M K L^2` of one latent-set Hessian evaluation (sets `M`).
const LATENT_SAMPLE_WORK: f64 = 3e8;
/// Bounds on the latent-set Monte-Carlo sample size `M`.
const LATENT_SAMPLES_MIN: usize = 512;
const LATENT_SAMPLES_MAX: usize = 200_000;
/// Largest `K^2 L` for the distance histograms.
const HISTOGRAM_WORK: f64 = 2e10;
/// Largest `s_c` for the dense type-III Newton Hessian (`s_c x s_c`).
const MAX_DENSE_RANKS: usize = 2000;
/// Largest number of work chunks (results do not depend on the thread count).
const N_CHUNKS: usize = 16;

// ---------------------------------------------------------------------------
// Equiangular frames
// ---------------------------------------------------------------------------

/// Entry `j` of the `i`-th Helmert vector of `R^m` (`i = 1..m-1`):
/// `1/sqrt(i(i+1))` for `j < i`, `-i/sqrt(i(i+1))` for `j = i`, 0 after.
/// The `m - 1` Helmert vectors are an orthonormal basis of `1_m^perp`.
fn helmert(i: usize, j: usize) -> f64 {
    let s = ((i * (i + 1)) as f64).sqrt();
    match j.cmp(&i) {
        std::cmp::Ordering::Less => 1.0 / s,
        std::cmp::Ordering::Equal => -(i as f64) / s,
        std::cmp::Ordering::Greater => 0.0,
    }
}

/// The Helmert vectors `H_1..H_{d-1}` of `R^d`, an orthonormal basis of the
/// orthogonal complement of `1_d` (one `Vec` of length `d` each).
pub fn ones_complement_basis(d: usize) -> Vec<Vec<f64>> {
    (1..d)
        .map(|i| (0..d).map(|j| helmert(i, j)).collect())
        .collect()
}

/// An equiangular frame `f_1..f_{n_c}` of `R^d`, row-major `n_c x d`:
/// `||f_a|| = 1`, `<f_a, f_b> = -1/(n_c-1)` for `a != b` (hence `sum_a f_a = 0`).
///
/// Construction: `g_a[i] = sqrt(n_c/(n_c-1)) h_{i+1}[a]` (`i < n_c-1`, `h_i` the
/// Helmert vectors of `R^{n_c}`) are the coordinates of the centred, normalised
/// unit vectors `e_a - 1/n_c` in the orthonormal basis `(h_i)` of `1^perp`. Without
/// `mean_zero` `f_a = (g_a, 0, .., 0)` (needs `d >= n_c-1`); with `mean_zero`
/// `f_a = sum_i g_a[i] H_{i+1}` with `H_i` the Helmert vectors of `R^d`, so every
/// `f_a` is orthogonal to `1_d` (needs `d >= n_c`). Exact up to round-off.
///
/// Errors: `n_c < 2` (name `n_c`), `d` too small (name `dim`).
pub fn equiangular_frame(n_c: usize, d: usize, mean_zero: bool) -> Result<Vec<f64>> {
    if n_c < 2 {
        return Err(Error::invalid(
            "n_c",
            n_c,
            "an equiangular frame needs at least 2 vectors",
        ));
    }
    let need = if mean_zero { n_c } else { n_c - 1 };
    if d < need {
        return Err(Error::invalid(
            "dim",
            d,
            format!(
                "an equiangular frame of {n_c} vectors{} needs d >= {need}",
                if mean_zero { " orthogonal to 1_d" } else { "" }
            ),
        ));
    }
    let scale = (n_c as f64 / (n_c - 1) as f64).sqrt();
    let mut f = vec![0.0; n_c * d];
    for a in 0..n_c {
        let row = &mut f[a * d..(a + 1) * d];
        for i in 0..n_c - 1 {
            let g = scale * helmert(i + 1, a);
            if g == 0.0 {
                continue;
            }
            if mean_zero {
                // H_{i+1} of R^d has entries at j <= i+1 only.
                for (j, v) in row.iter_mut().enumerate().take(i + 2) {
                    *v += g * helmert(i + 1, j);
                }
            } else {
                row[i] = g;
            }
        }
    }
    Ok(f)
}

// ---------------------------------------------------------------------------
// Types, forms, predictions
// ---------------------------------------------------------------------------

/// The three collapse types of THEORY §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CollapseType {
    /// Uniform `mu`, no LayerNorm: `w_{(alpha,beta)} = a f_alpha`.
    I,
    /// LayerNorm (any `mu`): `phi(w_{(alpha,beta)}) = sqrt(d) f_alpha`.
    II,
    /// Non-uniform `mu`, no LayerNorm: `w_{(alpha,beta)} = r_beta f_alpha`.
    III,
}

/// The collapse type THEORY predicts for `task`: LayerNorm gives II; otherwise
/// uniform `mu` (all `mu_beta` equal, e.g. `s_c = 1` or Zipf exponent 0) gives I,
/// and non-uniform `mu` gives III.
pub fn collapse_type(task: &Task) -> CollapseType {
    if task.layer_norm.is_some() {
        CollapseType::II
    } else if task.mu.iter().all(|&m| m == task.mu[0]) {
        CollapseType::I
    } else {
        CollapseType::III
    }
}

/// Which reduced objective (THEORY §4, see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Form {
    /// Full latent set `K = n_c^L`, where the risk factorises (`"full"`).
    Full,
    /// Exact for the task's drawn latent variables (`"latent-set"`).
    LatentSet,
    /// Symmetric (mean-field) form used by the paper (`"mean-field"`).
    MeanField,
}

impl Form {
    /// The serde / command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Form::Full => "full",
            Form::LatentSet => "latent-set",
            Form::MeanField => "mean-field",
        }
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Form {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "full" => Ok(Form::Full),
            "latent-set" => Ok(Form::LatentSet),
            "mean-field" => Ok(Form::MeanField),
            _ => Err(Error::invalid(
                "form",
                s,
                "expected full, latent-set or mean-field",
            )),
        }
    }
}

/// The predicted collapsed configuration and its reduced risk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub kind: CollapseType,
    pub form: Form,
    /// Word-representation norm: `a` (type I), `sqrt(d)` (type II), and for
    /// type III the plain mean over ranks `(1/s_c) sum_beta r_beta`.
    pub word_norm: f64,
    /// Norm of `phi(w_{(alpha,beta)})` per rank `beta` (length `s_c`): all `a`
    /// (type I), all `sqrt(d)` (type II), `r_beta` (type III).
    pub r: Vec<f64>,
    /// `b = ||u_{k,l}||`.
    pub u_norm: f64,
    /// `a b` (type I), `sqrt(d) b` (type II), `word_norm * b` (type III).
    pub c: f64,
    /// Reduced objective (loss + penalties) at the minimiser.
    pub risk: f64,
    /// Monte-Carlo standard error of `risk` when the expectation was sampled.
    pub risk_error: Option<f64>,
    /// Number of Monte-Carlo samples when sampled.
    pub n_samples: Option<usize>,
}

// ---------------------------------------------------------------------------
// Small numerical helpers
// ---------------------------------------------------------------------------

/// `log(1 + e^z)`, stably.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// `1/(1 + e^{-z})`, stably.
fn logistic(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Root of an increasing function `g` (returning `(g, g')`) inside `(lo, hi)`
/// with `g(lo) <= 0 <= g(hi)`: Newton steps, replaced by bisection whenever they
/// leave the bracket or stall; runs until the iterate stops moving (round-off).
fn increasing_root(g: impl Fn(f64) -> (f64, f64), mut lo: f64, mut hi: f64) -> f64 {
    let mut x = 0.5 * (lo + hi);
    let mut best = (f64::INFINITY, x);
    let mut last_abs = f64::INFINITY;
    for _ in 0..400 {
        let (f, df) = g(x);
        if f.abs() < best.0 {
            best = (f.abs(), x);
        }
        if f == 0.0 {
            return x;
        }
        if f < 0.0 {
            lo = x;
        } else {
            hi = x;
        }
        let newton = x - f / df;
        let mut next = if df > 0.0 && newton > lo && newton < hi && f.abs() < 0.5 * last_abs {
            newton
        } else {
            0.5 * (lo + hi)
        };
        last_abs = f.abs();
        if !(next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        if next == x || next <= lo || next >= hi {
            break;
        }
        x = next;
    }
    best.1
}

/// Minimiser over `v >= 0` of a convex `phi` given by `(phi', phi'')`.
fn minimise_1d(dphi: impl Fn(f64) -> (f64, f64)) -> Result<f64> {
    if dphi(0.0).0 >= 0.0 {
        return Ok(0.0);
    }
    let mut hi = 1.0;
    let mut n = 0;
    while dphi(hi).0 < 0.0 {
        hi *= 2.0;
        n += 1;
        if n > 2000 || !hi.is_finite() {
            return Err(Error::Optimiser("1-D minimiser: no bracket found".into()));
        }
    }
    Ok(increasing_root(dphi, 0.0, hi))
}

/// Constants of a task.
#[derive(Debug, Clone, Copy)]
struct Consts {
    n_c: f64,
    kappa: f64,
    q: f64,
    p: f64,
    len: f64,
    k: f64,
    ln_nc1: f64,
}

impl Consts {
    fn of(task: &Task) -> Self {
        let n_c = task.n_c as f64;
        Consts {
            n_c,
            kappa: n_c / (n_c - 1.0),
            q: 1.0 / n_c,
            p: 1.0 - 1.0 / n_c,
            len: task.len as f64,
            k: task.k as f64,
            ln_nc1: (n_c - 1.0).ln(),
        }
    }

    /// Full-form per-position loss `log(1 + (n_c-1) e^{-kappa x})` and
    /// `sigma(x) = (n_c-1) e^{-kappa x} / (1 + (n_c-1) e^{-kappa x})`.
    fn full_term(&self, x: f64) -> (f64, f64) {
        let z = self.ln_nc1 - self.kappa * x;
        (softplus(z), logistic(z))
    }

    /// `g(x) = log(q + p e^{-kappa x})` with `g'` and `g''` (mean-field factor).
    fn mean_field_factor(&self, x: f64) -> [f64; 3] {
        let y = (-self.kappa * x).exp();
        let s = self.q + self.p * y;
        let v = self.q.ln() + (self.p / self.q * y).ln_1p();
        let d1 = -self.kappa * self.p * y / s;
        let d2 = self.kappa * self.kappa * self.p * self.q * y / (s * s);
        [v, d1, d2]
    }
}

/// Distance histograms of the latent set: for each class `k`, `ln n_k[m]`
/// (`-inf` when zero), `m = 0..=L`, with the weight of that row.
#[derive(Debug, Clone)]
struct Histograms {
    len: usize,
    ln_counts: Vec<f64>,
    weights: Vec<f64>,
}

impl Histograms {
    fn of(task: &Task) -> Result<Self> {
        let len = task.len;
        let m1 = len + 1;
        if task.full_latent {
            // n[m] = C(L, m) (n_c-1)^m for every k.
            let mut ln_counts = vec![f64::NEG_INFINITY; m1];
            let mut binom = 1.0f64;
            for (m, v) in ln_counts.iter_mut().enumerate() {
                if m > 0 {
                    binom = binom * (len + 1 - m) as f64 / m as f64;
                    *v = binom.ln() + m as f64 * ((task.n_c - 1) as f64).ln();
                }
            }
            return Ok(Histograms {
                len,
                ln_counts,
                weights: vec![1.0],
            });
        }
        let k = task.k;
        let work = (k as f64) * (k as f64) * len as f64;
        if work > HISTOGRAM_WORK {
            return Err(Error::OverBudget {
                what: "latent-set distance histograms".into(),
                work,
                budget: HISTOGRAM_WORK,
            });
        }
        let mut counts = vec![0u64; k * m1];
        for a in 0..k {
            for b in a + 1..k {
                let m = task.dist(a, b);
                counts[a * m1 + m] += 1;
                counts[b * m1 + m] += 1;
            }
        }
        let ln_counts = counts
            .iter()
            .map(|&c| {
                if c == 0 {
                    f64::NEG_INFINITY
                } else {
                    (c as f64).ln()
                }
            })
            .collect();
        Ok(Histograms {
            len,
            ln_counts,
            weights: vec![1.0 / k as f64; k],
        })
    }

    /// `sum_k w_k log(1 + sum_m n_k[m] e^{-kappa c m})` and its first two
    /// derivatives in `c`.
    fn loss(&self, kappa: f64, c: f64) -> [f64; 3] {
        let m1 = self.len + 1;
        let mut out = [0.0; 3];
        let mut e = vec![0.0; m1];
        for (row, &w) in self.ln_counts.chunks(m1).zip(&self.weights) {
            let mut mx = 0.0f64;
            for (m, (em, &lc)) in e.iter_mut().zip(row).enumerate() {
                *em = lc - kappa * c * m as f64;
                mx = mx.max(*em);
            }
            let mut z = (-mx).exp();
            let (mut e1, mut e2) = (0.0, 0.0);
            for (m, &em) in e.iter().enumerate() {
                if em == f64::NEG_INFINITY {
                    continue;
                }
                let t = (em - mx).exp();
                z += t;
                e1 += m as f64 * t;
                e2 += (m * m) as f64 * t;
            }
            let (e1, e2) = (e1 / z, e2 / z);
            out[0] += w * (mx + z.ln());
            out[1] += w * (-kappa * e1);
            out[2] += w * kappa * kappa * (e2 - e1 * e1);
        }
        out
    }
}

/// The loss part of a reduced objective along `x_beta = c` for all `beta`:
/// value and first two derivatives in `c`.
enum Loss1d {
    Full,
    Latent(Histograms),
    MeanField,
}

impl Loss1d {
    fn new(task: &Task, form: Form) -> Result<Self> {
        Ok(match form {
            Form::Full => Loss1d::Full,
            Form::LatentSet if task.full_latent => Loss1d::Full,
            Form::LatentSet => Loss1d::Latent(Histograms::of(task)?),
            Form::MeanField => Loss1d::MeanField,
        })
    }

    fn eval(&self, cs: &Consts, c: f64) -> [f64; 3] {
        match self {
            Loss1d::Full => {
                let (v, s) = cs.full_term(c);
                [
                    cs.len * v,
                    -cs.len * cs.kappa * s,
                    cs.len * cs.kappa * cs.kappa * s * (1.0 - s),
                ]
            }
            Loss1d::Latent(h) => h.loss(cs.kappa, c),
            Loss1d::MeanField => {
                let [g, g1, g2] = cs.mean_field_factor(c);
                let t = cs.k.ln() + cs.len * g;
                let (t1, t2) = (cs.len * g1, cs.len * g2);
                let s = logistic(t);
                [softplus(t), s * t1, s * (1.0 - s) * t1 * t1 + s * t2]
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Sampled / enumerated expectations over beta (type III)
// ---------------------------------------------------------------------------

/// Weighted `(class, beta)` points standing for `(1/K) sum_k E_beta` (latent set)
/// or `E_beta` (mean field).
#[derive(Debug, Clone)]
struct RankSamples {
    len: usize,
    /// `n x L` ranks.
    ranks: Vec<u32>,
    /// Class of each point (latent set only).
    class: Vec<u32>,
    weight: Vec<f64>,
    sampled: bool,
    /// Row-major `K x K` difference masks `bit l of masks[k K + j] = [z_{j,l} != z_{k,l}]`
    /// (latent set with `K <= 2048`; empty otherwise, then computed on the fly).
    masks: Vec<u64>,
}

/// Bit `l` set when `z_{j,l} != z_{k,l}` (`L <= 64`).
fn diff_mask(zj: &[u32], zk: &[u32]) -> u64 {
    zj.iter()
        .zip(zk)
        .enumerate()
        .fold(0u64, |m, (l, (a, b))| m | (((a != b) as u64) << l))
}

impl RankSamples {
    fn n(&self) -> usize {
        self.weight.len()
    }

    /// Builds the points for `form` (`LatentSet` on a drawn latent set, or
    /// `MeanField`). Seeded by `task.seed`.
    fn of(task: &Task, form: Form) -> Result<Self> {
        let (s_c, len, k) = (task.s_c as f64, task.len, task.k);
        let combos = s_c.powi(len as i32);
        let latent = form == Form::LatentSet;
        if latent && len > 64 {
            return Err(Error::invalid(
                "len",
                len,
                "the type-III latent-set form supports L <= 64",
            ));
        }
        let exact = if latent {
            combos * (k as f64).powi(2) * (len as f64) < EXACT_LATENT_WORK
                && combos * k as f64 <= EXACT_LATENT_PAIRS
        } else {
            combos <= EXACT_MEAN_FIELD
        };
        if exact {
            let n_beta = combos as usize;
            let classes = if latent { k } else { 1 };
            let mut ranks = Vec::with_capacity(classes * n_beta * len);
            let mut class = Vec::new();
            let mut weight = Vec::with_capacity(classes * n_beta);
            let mut beta = vec![0usize; len];
            for kk in 0..classes {
                beta.iter_mut().for_each(|b| *b = 0);
                for _ in 0..n_beta {
                    ranks.extend(beta.iter().map(|&b| b as u32));
                    if latent {
                        class.push(kk as u32);
                    }
                    weight.push(beta.iter().map(|&b| task.mu[b]).product::<f64>() / classes as f64);
                    // lexicographic successor (last position fastest)
                    for l in (0..len).rev() {
                        beta[l] += 1;
                        if beta[l] < task.s_c {
                            break;
                        }
                        beta[l] = 0;
                    }
                }
            }
            return Ok(RankSamples {
                len,
                ranks,
                class,
                weight,
                sampled: false,
                masks: mask_table(task, latent),
            });
        }
        let m = if latent {
            let per = (k * len * len) as f64;
            ((LATENT_SAMPLE_WORK / per).ceil() as usize)
                .clamp(LATENT_SAMPLES_MIN, LATENT_SAMPLES_MAX)
        } else {
            MEAN_FIELD_SAMPLES
        };
        let work = (m * k * len * len) as f64;
        if latent && work > 50.0 * LATENT_SAMPLE_WORK {
            return Err(Error::OverBudget {
                what: "type-III latent-set Monte Carlo".into(),
                work,
                budget: 50.0 * LATENT_SAMPLE_WORK,
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(task.seed);
        let mut cdf: Vec<f64> = task
            .mu
            .iter()
            .scan(0.0, |acc, &m| {
                *acc += m;
                Some(*acc)
            })
            .collect();
        *cdf.last_mut().expect("s_c >= 1") = f64::INFINITY;
        // Latin hypercube: at each position the M uniforms are stratified.
        let mut ranks = vec![0u32; m * len];
        let mut perm: Vec<usize> = (0..m).collect();
        for l in 0..len {
            shuffle(&mut perm, &mut rng);
            for (i, &pi) in perm.iter().enumerate() {
                let u = (pi as f64 + rng.random::<f64>()) / m as f64;
                ranks[i * len + l] = cdf.partition_point(|&c| c <= u) as u32;
            }
        }
        let class = if latent {
            let mut order: Vec<usize> = (0..k).collect();
            shuffle(&mut order, &mut rng);
            (0..m).map(|i| order[i % k] as u32).collect()
        } else {
            Vec::new()
        };
        Ok(RankSamples {
            len,
            ranks,
            class,
            weight: vec![1.0 / m as f64; m],
            sampled: true,
            masks: mask_table(task, latent),
        })
    }
}

/// The `K x K` difference-mask table for the latent-set form when `K <= 2048`.
fn mask_table(task: &Task, latent: bool) -> Vec<u64> {
    if !latent || task.k > 2048 {
        return Vec::new();
    }
    let len = task.len;
    let z32: Vec<u32> = task.z.iter().map(|&a| a as u32).collect();
    let mut out = Vec::with_capacity(task.k * task.k);
    for zk in z32.chunks_exact(len) {
        out.extend(z32.chunks_exact(len).map(|zj| diff_mask(zj, zk)));
    }
    out
}

/// Fisher-Yates shuffle.
fn shuffle(v: &mut [usize], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

/// Value (and optionally gradient / dense Hessian in rank space) of the
/// sampled or enumerated type-III loss at `x` (length `s_c`).
#[derive(Debug, Clone)]
struct SampleEval {
    value: f64,
    /// `sum w loss^2`, for the Monte-Carlo error.
    second_moment: f64,
    grad: Vec<f64>,
    hess: Vec<f64>,
}

fn eval_samples(task: &Task, cs: &Consts, s: &RankSamples, x: &[f64], order: u8) -> SampleEval {
    let s_c = task.s_c;
    let len = s.len;
    let n = s.n();
    let latent = !s.class.is_empty();
    // Per-rank mean-field factors.
    let mf: Vec<[f64; 3]> = if latent {
        Vec::new()
    } else {
        x.iter().map(|&xb| cs.mean_field_factor(xb)).collect()
    };
    let ln_k = cs.k.ln();
    let z32: Vec<u32> = if latent {
        task.z.iter().map(|&a| a as u32).collect()
    } else {
        Vec::new()
    };
    // A fixed chunking (depending on s_c only, so results do not depend on the
    // thread count); fewer chunks for large s_c bound the Hessian buffers to ~64 MB.
    let n_chunks = ((1usize << 26) / (8 * s_c * s_c)).clamp(1, N_CHUNKS);
    let chunk = n.div_ceil(n_chunks).max(1);
    // bit positions of every byte value
    let byte_bits: Vec<Vec<usize>> = (0..256usize)
        .map(|bb| (0..8).filter(|i| bb >> i & 1 == 1).collect())
        .collect();
    let parts: Vec<SampleEval> = (0..n_chunks)
        .into_par_iter()
        .map(|ci| {
            let mut acc = SampleEval {
                value: 0.0,
                second_moment: 0.0,
                grad: if order >= 1 {
                    vec![0.0; s_c]
                } else {
                    Vec::new()
                },
                hess: if order >= 2 {
                    vec![0.0; s_c * s_c]
                } else {
                    Vec::new()
                },
            };
            let (start, end) = ((ci * chunk).min(n), ((ci + 1) * chunk).min(n));
            let mut xs = vec![0.0; len];
            let mut e = vec![0.0; task.k];
            let mut masks = vec![0u64; task.k];
            let mut gpos = vec![0.0; len];
            let mut apos = vec![0.0; len * len];
            let n_groups = len.div_ceil(8);
            let mut sums = vec![0.0; n_groups * 256];
            let mut hist = vec![0.0; n_groups * 256];
            let n_pairs = n_groups * (n_groups - 1) / 2;
            let mut cross = vec![0.0; if order >= 2 { n_pairs * 256 * 8 } else { 0 }];
            for i in start..end {
                let w = s.weight[i];
                let beta = &s.ranks[i * len..(i + 1) * len];
                let loss;
                if latent {
                    let k = s.class[i] as usize;
                    let zk = &z32[k * len..(k + 1) * len];
                    for (xl, &b) in xs.iter_mut().zip(beta) {
                        *xl = x[b as usize];
                    }
                    // Difference masks of z_j against z_k (precomputed when K is small).
                    let row: &[u64] = if s.masks.is_empty() {
                        for (m, zj) in masks.iter_mut().zip(z32.chunks_exact(len)) {
                            *m = diff_mask(zj, zk);
                        }
                        &masks
                    } else {
                        &s.masks[k * task.k..(k + 1) * task.k]
                    };
                    // Subset sums of xs over each byte of the mask.
                    for (g, table) in sums.chunks_exact_mut(256).enumerate() {
                        let base = 8 * g;
                        let width = (len - base).min(8);
                        table[0] = 0.0;
                        for bb in 1..(1usize << width) {
                            table[bb] =
                                table[bb & (bb - 1)] + xs[base + bb.trailing_zeros() as usize];
                        }
                    }
                    let mut mx = 0.0f64;
                    for (ej, &mask) in e.iter_mut().zip(row) {
                        let mut sum = 0.0;
                        for (g, table) in sums.chunks_exact(256).enumerate() {
                            sum += table[((mask >> (8 * g)) & 255) as usize];
                        }
                        *ej = -cs.kappa * sum;
                        mx = mx.max(*ej);
                    }
                    e[k] = f64::NEG_INFINITY;
                    // e_j <- exp(e_j - mx)
                    let mut z = (-mx).exp();
                    for ej in e.iter_mut() {
                        *ej = (*ej - mx).exp();
                        z += *ej;
                    }
                    loss = mx + z.ln();
                    if order >= 1 {
                        // With P_j = e_j / z: G_l = sum_j P_j [l in D_j] and
                        // A_lm = sum_j P_j [l, m in D_j], through histograms of P_j over
                        // the bytes of the masks (same-byte pairs) and, per pair of
                        // bytes (g < h), over the low byte for each bit of the high one.
                        hist.iter_mut().for_each(|v| *v = 0.0);
                        if order >= 2 {
                            cross.iter_mut().for_each(|v| *v = 0.0);
                        }
                        for (j, (&ej, &mask)) in e.iter().zip(row).enumerate() {
                            if j == k || mask == 0 {
                                continue;
                            }
                            let pj = ej / z;
                            for g in 0..n_groups {
                                hist[g * 256 + ((mask >> (8 * g)) & 255) as usize] += pj;
                            }
                            if order >= 2 {
                                let mut pair = 0;
                                for g in 0..n_groups {
                                    let lo = ((mask >> (8 * g)) & 255) as usize;
                                    for h in g + 1..n_groups {
                                        let hb = ((mask >> (8 * h)) & 255) as usize;
                                        let base = (pair * 256 + lo) * 8;
                                        for &i2 in &byte_bits[hb] {
                                            cross[base + i2] += pj;
                                        }
                                        pair += 1;
                                    }
                                }
                            }
                        }
                        gpos.iter_mut().for_each(|v| *v = 0.0);
                        if order >= 2 {
                            apos.iter_mut().for_each(|v| *v = 0.0);
                        }
                        for g in 0..n_groups {
                            for (bb, bits) in byte_bits.iter().enumerate().skip(1) {
                                let v = hist[g * 256 + bb];
                                if v == 0.0 {
                                    continue;
                                }
                                for (ai, &i) in bits.iter().enumerate() {
                                    let l = 8 * g + i;
                                    gpos[l] += v;
                                    if order >= 2 {
                                        for &i2 in &bits[ai..] {
                                            apos[l * len + 8 * g + i2] += v;
                                        }
                                    }
                                }
                            }
                        }
                        if order >= 2 {
                            let mut pair = 0;
                            for g in 0..n_groups {
                                for h in g + 1..n_groups {
                                    let width = (len - 8 * h).min(8);
                                    for (bb, bits) in byte_bits.iter().enumerate().skip(1) {
                                        let c = &cross[(pair * 256 + bb) * 8..][..width];
                                        for &i in bits {
                                            let l = 8 * g + i;
                                            let dst = &mut apos[l * len + 8 * h..][..width];
                                            for (a, &v) in dst.iter_mut().zip(c) {
                                                *a += v;
                                            }
                                        }
                                    }
                                    pair += 1;
                                }
                            }
                        }
                        for l in 0..len {
                            acc.grad[beta[l] as usize] += w * (-cs.kappa * gpos[l]);
                        }
                        if order >= 2 {
                            let k2 = cs.kappa * cs.kappa;
                            for l in 0..len {
                                for m in l..len {
                                    let h = w * k2 * (apos[l * len + m] - gpos[l] * gpos[m]);
                                    let (bl, bm) = (beta[l] as usize, beta[m] as usize);
                                    acc.hess[bl * s_c + bm] += h;
                                    if m != l {
                                        acc.hess[bm * s_c + bl] += h;
                                    }
                                }
                            }
                        }
                    }
                } else {
                    let t = ln_k + beta.iter().map(|&b| mf[b as usize][0]).sum::<f64>();
                    loss = softplus(t);
                    if order >= 1 {
                        let sg = logistic(t);
                        for &b in beta {
                            acc.grad[b as usize] += w * sg * mf[b as usize][1];
                        }
                        if order >= 2 {
                            // upper triangle only (symmetrised after the merge)
                            let c1 = w * sg * (1.0 - sg);
                            for (li, &bl) in beta.iter().enumerate() {
                                let bl = bl as usize;
                                let gl = c1 * mf[bl][1];
                                acc.hess[bl * s_c + bl] += w * sg * mf[bl][2] + gl * mf[bl][1];
                                for &bm in &beta[li + 1..] {
                                    let bm = bm as usize;
                                    let v = gl * mf[bm][1];
                                    if bl == bm {
                                        acc.hess[bl * s_c + bl] += 2.0 * v;
                                    } else {
                                        acc.hess[bl.min(bm) * s_c + bl.max(bm)] += v;
                                    }
                                }
                            }
                        }
                    }
                }
                acc.value += w * loss;
                acc.second_moment += w * loss * loss;
            }
            acc
        })
        .collect();
    let mut out = SampleEval {
        value: 0.0,
        second_moment: 0.0,
        grad: if order >= 1 {
            vec![0.0; s_c]
        } else {
            Vec::new()
        },
        hess: if order >= 2 {
            vec![0.0; s_c * s_c]
        } else {
            Vec::new()
        },
    };
    for part in parts {
        out.value += part.value;
        out.second_moment += part.second_moment;
        for (a, b) in out.grad.iter_mut().zip(&part.grad) {
            *a += b;
        }
        for (a, b) in out.hess.iter_mut().zip(&part.hess) {
            *a += b;
        }
    }
    if order >= 2 && !latent {
        for a in 0..s_c {
            for b in a + 1..s_c {
                out.hess[b * s_c + a] = out.hess[a * s_c + b];
            }
        }
    }
    out
}

/// Monte-Carlo standard error of a sample mean with equal weights `1/M`.
fn std_error(s: &RankSamples, ev: &SampleEval) -> Option<f64> {
    if !s.sampled {
        return None;
    }
    let m = s.n() as f64;
    let var = (ev.second_moment - ev.value * ev.value).max(0.0) * m / (m - 1.0);
    Some((var / m).sqrt())
}

/// Damped Newton for `min_x F(x) + gamma ||x||` with convex `F` given by
/// `eval(x) -> (F, grad, Hessian row-major)`. Returns the minimiser.
fn newton_norm_penalised(
    gamma: f64,
    x0: Vec<f64>,
    eval: impl Fn(&[f64], u8) -> (f64, Vec<f64>, Vec<f64>),
) -> Result<Vec<f64>> {
    let n = x0.len();
    let total = |x: &[f64]| eval(x, 0).0 + gamma * norm(x);
    let mut x = x0;
    let mut cur = eval(&x, 2);
    for _ in 0..100 {
        let (f, mut g, mut h) = cur;
        let nx = norm(&x);
        let j = f + gamma * nx;
        if nx > 0.0 {
            for a in 0..n {
                g[a] += gamma * x[a] / nx;
                for b in 0..n {
                    let id = if a == b { 1.0 } else { 0.0 };
                    h[a * n + b] += gamma / nx * (id - x[a] * x[b] / (nx * nx));
                }
            }
        }
        let hm = nalgebra::DMatrix::from_row_slice(n, n, &h);
        let gv = nalgebra::DVector::from_column_slice(&g);
        let trace = (0..n).map(|a| h[a * n + a].abs()).sum::<f64>() / n as f64;
        let mut tau = 0.0;
        let step = loop {
            let mut m = hm.clone();
            for a in 0..n {
                m[(a, a)] += tau;
            }
            if let Some(ch) = m.cholesky() {
                break -ch.solve(&gv);
            }
            tau = if tau == 0.0 {
                1e-12 * trace.max(1e-300)
            } else {
                tau * 10.0
            };
            if !tau.is_finite() {
                return Err(Error::Optimiser("type-III Newton: singular Hessian".into()));
            }
        };
        // Newton decrement g^T H^{-1} g.
        let dec = -gv.dot(&step);
        // (also stops on a NaN decrement)
        if dec.is_nan() || dec <= 1e-24 * j.abs().max(1.0) {
            break;
        }
        let at =
            |t: f64| -> Vec<f64> { x.iter().zip(step.iter()).map(|(a, s)| a + t * s).collect() };
        // Full step, evaluated with its Hessian (reused on acceptance). Near the
        // minimiser the decrease is below round-off, so the full step is taken.
        let full = at(1.0);
        let ev = eval(&full, 2);
        if dec < 1e-16 * j.abs().max(1.0) || ev.0 + gamma * norm(&full) <= j - 1e-4 * dec {
            x = full;
            cur = ev;
            continue;
        }
        // Armijo backtracking on values only.
        let mut t = 0.5;
        let mut moved = false;
        while t >= 1e-12 {
            let trial = at(t);
            if total(&trial) <= j - 1e-4 * t * dec {
                x = trial;
                moved = true;
                break;
            }
            t *= 0.5;
        }
        if !moved {
            break;
        }
        cur = eval(&x, 2);
    }
    Ok(x)
}

fn norm(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

// ---------------------------------------------------------------------------
// Predictions
// ---------------------------------------------------------------------------

fn require_positive(name: &'static str, v: f64, kind: CollapseType) -> Result<()> {
    if v > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            name,
            v,
            format!("type {kind:?} has no minimiser without weight decay (the norms grow without bound)"),
        ))
    }
}

/// True when `form` reduces to the factorised full-latent-set objective.
fn factorises(task: &Task, form: Form) -> bool {
    form == Form::Full || (form == Form::LatentSet && task.full_latent)
}

fn check_form(task: &Task, form: Form) -> Result<()> {
    if form == Form::Full && !task.full_latent {
        return Err(Error::invalid(
            "form",
            form,
            "the full form needs the full latent set (K = n_c^L, no --classes)",
        ));
    }
    Ok(())
}

/// Minimiser of the reduced objective of `collapse_type(task)` in `form`, with
/// the task's own `lambda_W`, `lambda_U` (see the module docs for the
/// objectives and methods).
///
/// - Type I: `min_c loss(c) + c sqrt(lambda_W lambda_U n_w K L)`; then
///   `a^2 = c sqrt(lambda_U K L/(lambda_W n_w))`, `b^2 = c sqrt(lambda_W n_w/(lambda_U K L))`.
///   Full form in closed form: with `s = sqrt(lambda_W lambda_U n_w K L)/(L kappa)`,
///   `c = ln((n_c-1)(1-s)/s)/kappa` (`c = 0` when `s >= (n_c-1)/n_c`), from
///   `L kappa sigma(c) = sqrt(lambda_W lambda_U n_w K L)`.
/// - Type II: `min_b loss(sqrt(d) b) + (lambda_U/2) K L b^2`, `rho = sqrt(d)`.
/// - Type III: `min_x loss(x) + gamma ||x||`, `r_beta = x_beta / b`.
///
/// Errors: `form` (full form without the full latent set), `lambda_w` /
/// `lambda_u` (zero where the minimiser does not exist: types I/III need both,
/// type II needs `lambda_U`), `OverBudget` for latent sets too large to handle.
pub fn predict(task: &Task, form: Form) -> Result<Prediction> {
    check_form(task, form)?;
    let kind = collapse_type(task);
    let cs = Consts::of(task);
    let (lw, lu) = (task.lambda_w, task.lambda_u);
    match kind {
        CollapseType::I => {
            require_positive("lambda_w", lw, kind)?;
            require_positive("lambda_u", lu, kind)?;
        }
        CollapseType::II => require_positive("lambda_u", lu, kind)?,
        CollapseType::III => {
            require_positive("lambda_w", lw, kind)?;
            require_positive("lambda_u", lu, kind)?;
            if task.s_c > MAX_DENSE_RANKS && !factorises(task, form) {
                return Err(Error::invalid(
                    "s_c",
                    task.s_c,
                    format!("the type-III Newton solver is limited to s_c <= {MAX_DENSE_RANKS}"),
                ));
            }
        }
    }
    let n_w = task.n_w as f64;
    let kl = cs.k * cs.len;
    match kind {
        CollapseType::I => {
            let gamma1 = (lw * lu * n_w * kl).sqrt();
            let c = if factorises(task, form) {
                let s = gamma1 / (cs.len * cs.kappa);
                if s >= (cs.n_c - 1.0) / cs.n_c {
                    0.0
                } else {
                    (((cs.n_c - 1.0) * (1.0 - s)) / s).ln() / cs.kappa
                }
            } else {
                let loss = Loss1d::new(task, form)?;
                minimise_1d(|c| {
                    let [_, d1, d2] = loss.eval(&cs, c);
                    (d1 + gamma1, d2)
                })?
            };
            let a = (c * (lu * kl / (lw * n_w)).sqrt()).sqrt();
            let b = (c * (lw * n_w / (lu * kl)).sqrt()).sqrt();
            let r = vec![a; task.s_c];
            let risk = reduced_risk(task, form, kind, &r, b)?;
            Ok(Prediction {
                kind,
                form,
                word_norm: a,
                r,
                u_norm: b,
                c: a * b,
                risk,
                risk_error: None,
                n_samples: None,
            })
        }
        CollapseType::II => {
            let rho = (task.dim as f64).sqrt();
            let loss = Loss1d::new(task, form)?;
            let b = minimise_1d(|b| {
                let [_, d1, d2] = loss.eval(&cs, rho * b);
                (rho * d1 + lu * kl * b, rho * rho * d2 + lu * kl)
            })?;
            let r = vec![rho; task.s_c];
            let risk = reduced_risk(task, form, kind, &r, b)?;
            Ok(Prediction {
                kind,
                form,
                word_norm: rho,
                r,
                u_norm: b,
                c: rho * b,
                risk,
                risk_error: None,
                n_samples: None,
            })
        }
        CollapseType::III => {
            let gamma = (lw * lu * cs.n_c * kl).sqrt();
            let (x, risk_error, n_samples) = if factorises(task, form) {
                (solve_iii_full(task, &cs, gamma), None, None)
            } else {
                let samples = RankSamples::of(task, form)?;
                // Start on the equal-x line (the type-I minimiser of the same form).
                let loss = Loss1d::new(task, form)?;
                let gamma1 = gamma * (task.s_c as f64).sqrt();
                let c0 = minimise_1d(|c| {
                    let [_, d1, d2] = loss.eval(&cs, c);
                    (d1 + gamma1, d2)
                })?;
                let eval = |x: &[f64], order: u8| {
                    let ev = eval_samples(task, &cs, &samples, x, order);
                    (ev.value, ev.grad, ev.hess)
                };
                let zero = vec![0.0; task.s_c];
                let g0 = eval_samples(task, &cs, &samples, &zero, 1).grad;
                let x = if norm(&g0) <= gamma {
                    zero
                } else {
                    let x0 = if c0 > 0.0 {
                        vec![c0; task.s_c]
                    } else {
                        let ng = norm(&g0);
                        g0.iter().map(|g| -g / ng).collect()
                    };
                    newton_norm_penalised(gamma, x0, eval)?
                };
                let ev = eval_samples(task, &cs, &samples, &x, 0);
                let n = samples.sampled.then(|| samples.n());
                (x, Some((ev.value, std_error(&samples, &ev))), n)
            };
            let nx = norm(&x);
            let b = (nx * (lw * cs.n_c / (lu * kl)).sqrt()).sqrt();
            let r: Vec<f64> = if b > 0.0 {
                x.iter().map(|v| v / b).collect()
            } else {
                vec![0.0; task.s_c]
            };
            let word_norm = r.iter().sum::<f64>() / task.s_c as f64;
            // Sampled / enumerated forms: the loss already evaluated at x.
            let (risk, risk_error) = match risk_error {
                Some((loss, err)) => (loss + penalty(task, kind, &r, b), err),
                None => (reduced_risk(task, form, kind, &r, b)?, None),
            };
            Ok(Prediction {
                kind,
                form,
                word_norm,
                r,
                u_norm: b,
                c: word_norm * b,
                risk,
                risk_error,
                n_samples,
            })
        }
    }
}

/// Type-III full form: `x` solving `L kappa mu_beta sigma(x_beta) = gamma x_beta/||x||`
/// through `t = ||x||/gamma` (module docs), or `0` when that has no positive root.
fn solve_iii_full(task: &Task, cs: &Consts, gamma: f64) -> Vec<f64> {
    let sigma0 = (cs.n_c - 1.0) / cs.n_c;
    let norm_mu = norm(&task.mu);
    if cs.len * cs.kappa * sigma0 * norm_mu <= gamma {
        return vec![0.0; task.s_c];
    }
    // x_beta(t): root of x - a sigma(x), a = t L kappa mu_beta, in (0, a sigma0].
    let x_of = |t: f64| -> Vec<f64> {
        task.mu
            .iter()
            .map(|&m| {
                let a = t * cs.len * cs.kappa * m;
                if a <= 0.0 {
                    return 0.0;
                }
                increasing_root(
                    |x| {
                        let (_, s) = cs.full_term(x);
                        (x - a * s, 1.0 + a * cs.kappa * s * (1.0 - s))
                    },
                    0.0,
                    a * sigma0,
                )
            })
            .collect()
    };
    // f(t) = gamma - ||x(t)||/t is increasing, f(0+) < 0.
    let f = |t: f64| -> (f64, f64) {
        let x = x_of(t);
        let nx = norm(&x);
        // dx_beta/dt = (x_beta/t) / (1 + a kappa sigma (1 - sigma))
        let mut dn = 0.0;
        for (&xb, &m) in x.iter().zip(&task.mu) {
            if xb == 0.0 {
                continue;
            }
            let a = t * cs.len * cs.kappa * m;
            let (_, s) = cs.full_term(xb);
            dn += xb * (xb / t) / (1.0 + a * cs.kappa * s * (1.0 - s));
        }
        let dn = if nx > 0.0 { dn / nx } else { 0.0 };
        (gamma - nx / t, -dn / t + nx / (t * t))
    };
    // f(t) -> gamma > 0 as t -> inf (x_beta(t) grows like log t): bracket by doubling.
    let mut hi = 1.0 / gamma;
    for _ in 0..2000 {
        if f(hi).0 >= 0.0 {
            break;
        }
        hi *= 2.0;
    }
    let t = increasing_root(f, 0.0, hi);
    x_of(t)
}

/// Penalty of a collapsed configuration: `(lambda_W/2) n_c sum_beta r_beta^2 +
/// (lambda_U/2) K L b^2` for types I/III, `(lambda_U/2) K L b^2` for type II.
fn penalty(task: &Task, kind: CollapseType, r: &[f64], b: f64) -> f64 {
    let u = 0.5 * task.lambda_u * (task.k * task.len) as f64 * b * b;
    match kind {
        CollapseType::II => u,
        _ => 0.5 * task.lambda_w * task.n_c as f64 * r.iter().map(|v| v * v).sum::<f64>() + u,
    }
}

/// The reduced objective (loss + penalties, module docs) of collapse type
/// `kind` in `form` at per-rank word norms `r` (length `s_c`; equal values for
/// types I/II — for type II pass `sqrt(d)` to describe `phi(w) = sqrt(d) f`) and
/// classifier norm `b`:
///
/// - loss at `x_beta = b r_beta` as in the module docs;
/// - penalty `(lambda_W/2) n_c sum_beta r_beta^2 + (lambda_U/2) K L b^2` for I/III,
///   `(lambda_U/2) K L b^2` for II.
///
/// With unequal `r` the latent-set (drawn latent variables) and mean-field
/// forms use the same exact enumeration or seeded sample as [`predict`].
/// Errors: `form` (full form without the full latent set), `r` (wrong length,
/// or unequal for types I/II).
pub fn reduced_risk(task: &Task, form: Form, kind: CollapseType, r: &[f64], b: f64) -> Result<f64> {
    check_form(task, form)?;
    if r.len() != task.s_c {
        return Err(Error::invalid(
            "r",
            r.len(),
            format!("needs s_c = {} entries", task.s_c),
        ));
    }
    let equal = r.iter().all(|&v| v == r[0]);
    if kind != CollapseType::III && !equal {
        return Err(Error::invalid(
            "r",
            format!("{r:?}"),
            format!("type {kind:?} has one word norm for every rank"),
        ));
    }
    let cs = Consts::of(task);
    let penalty = penalty(task, kind, r, b);
    let loss = if equal {
        Loss1d::new(task, form)?.eval(&cs, b * r[0])[0]
    } else if factorises(task, form) {
        cs.len
            * task
                .mu
                .iter()
                .zip(r)
                .map(|(&m, &rb)| m * cs.full_term(b * rb).0)
                .sum::<f64>()
    } else {
        let samples = RankSamples::of(task, form)?;
        let x: Vec<f64> = r.iter().map(|v| b * v).collect();
        eval_samples(task, &cs, &samples, &x, 0).value
    };
    Ok(loss + penalty)
}

/// The critical-point system of THEORY §4 (full latent set, type III), with
/// separate weight decays: entries `beta = 0..s_c-1` are
/// `lambda_W n_c r_beta - L kappa b mu_beta sigma_beta` (`= dR/dr_beta`) and the
/// last entry is `lambda_U K b - kappa sum_beta mu_beta r_beta sigma_beta`
/// (`= (1/L) dR/db`), where
/// `sigma_beta = (n_c-1) e^{-kappa b r_beta} / (1 + (n_c-1) e^{-kappa b r_beta})`.
/// All vanish at a type-III critical point (and at type I for uniform `mu`).
pub fn type_iii_residual(task: &Task, r: &[f64], b: f64) -> Vec<f64> {
    let cs = Consts::of(task);
    let mut out = Vec::with_capacity(r.len() + 1);
    let mut acc = 0.0;
    for (&rb, &m) in r.iter().zip(&task.mu) {
        let (_, s) = cs.full_term(b * rb);
        out.push(task.lambda_w * cs.n_c * rb - cs.len * cs.kappa * b * m * s);
        acc += m * rb * s;
    }
    out.push(task.lambda_u * cs.k * b - cs.kappa * acc);
    out
}

/// The collapsed configuration of `pred` on the frame `frame` (row-major
/// `n_c x d`, e.g. from [`equiangular_frame`]; mean-zero for type II):
/// `w_{(alpha,beta)} = r_beta f_alpha` (type II: `r_beta = sqrt(d)`, which LayerNorm
/// with `eps = 0` maps to itself; with `eps > 0` `phi(w) = w / sqrt(1 + eps)`) and
/// `u_{k,l} = b f_{z_{k,l}}`.
///
/// Panics if `frame` is not `n_c x d` or `pred.r` does not have `s_c` entries.
pub fn build(task: &Task, pred: &Prediction, frame: &[f64]) -> Params {
    let d = task.dim;
    assert_eq!(frame.len(), task.n_c * d, "frame must be n_c x d");
    assert_eq!(
        pred.r.len(),
        task.s_c,
        "prediction must have s_c word norms"
    );
    let mut p = Params::zeros(task);
    for alpha in 0..task.n_c {
        let f = &frame[alpha * d..(alpha + 1) * d];
        for (beta, &rb) in pred.r.iter().enumerate() {
            let t = task.token(alpha, beta);
            for (w, &fv) in p.w[t * d..(t + 1) * d].iter_mut().zip(f) {
                *w = rb * fv;
            }
        }
    }
    for (block, &alpha) in p.u.chunks_mut(d).zip(&task.z) {
        for (u, &fv) in block.iter_mut().zip(&frame[alpha * d..(alpha + 1) * d]) {
            *u = pred.u_norm * fv;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::dot;
    use crate::task::{Freq, TaskConfig};

    #[test]
    fn frames_are_equiangular_and_optionally_mean_zero() {
        for &(n_c, d) in &[
            (2, 1),
            (2, 2),
            (3, 2),
            (3, 3),
            (3, 100),
            (5, 4),
            (5, 9),
            (10, 10),
        ] {
            for mean_zero in [false, true] {
                if mean_zero && d < n_c {
                    assert!(equiangular_frame(n_c, d, true).is_err());
                    continue;
                }
                let f = equiangular_frame(n_c, d, mean_zero).unwrap();
                for a in 0..n_c {
                    let fa = &f[a * d..(a + 1) * d];
                    assert!((dot(fa, fa) - 1.0).abs() < 1e-15);
                    if mean_zero {
                        assert!(fa.iter().sum::<f64>().abs() < 1e-15);
                    }
                    for b in 0..a {
                        let fb = &f[b * d..(b + 1) * d];
                        assert!((dot(fa, fb) + 1.0 / (n_c - 1) as f64).abs() < 1e-15);
                    }
                }
            }
        }
    }

    #[test]
    fn small_dimensions_are_rejected_by_name() {
        for (n_c, d, mz) in [(3, 1, false), (3, 2, true), (4, 2, false)] {
            match equiangular_frame(n_c, d, mz) {
                Err(Error::InvalidParam { name, .. }) => assert_eq!(name, "dim"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            equiangular_frame(1, 3, false),
            Err(Error::InvalidParam { name: "n_c", .. })
        ));
    }

    #[test]
    fn form_names_round_trip() {
        for f in [Form::Full, Form::LatentSet, Form::MeanField] {
            assert_eq!(f.name().parse::<Form>().unwrap(), f);
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.name())
            );
        }
        assert!("nope".parse::<Form>().is_err());
    }

    #[test]
    fn collapse_types_follow_the_task() {
        let base = TaskConfig::default();
        assert_eq!(collapse_type(&base.build().unwrap()), CollapseType::I);
        let zipf = TaskConfig {
            freq: Freq::Zipf { exponent: 1.0 },
            ..base.clone()
        };
        assert_eq!(collapse_type(&zipf.build().unwrap()), CollapseType::III);
        let ln = TaskConfig {
            layer_norm: Some(0.0),
            ..zipf
        };
        assert_eq!(collapse_type(&ln.build().unwrap()), CollapseType::II);
    }

    fn cfg(n_c: usize, s_c: usize, len: usize, classes: Option<usize>) -> TaskConfig {
        TaskConfig {
            n_c,
            s_c,
            len,
            dim: n_c + 1,
            classes,
            freq: Freq::Uniform,
            layer_norm: None,
            lambda_w: 0.01,
            lambda_u: 0.02,
            seed: 3,
        }
    }

    /// `phi'(c)` of the type-I 1-D objective and the size of its terms.
    fn type_i_slope(task: &Task, form: Form, c: f64) -> (f64, f64) {
        let cs = Consts::of(task);
        let gamma1 = (task.lambda_w * task.lambda_u * (task.n_w * task.k * task.len) as f64).sqrt();
        let d1 = Loss1d::new(task, form).unwrap().eval(&cs, c)[1];
        (d1 + gamma1, gamma1)
    }

    #[test]
    fn type_i_closed_form_matches_numeric_minimisation_and_is_stationary() {
        for (n_c, s_c, len, lw, lu) in [
            (3, 2, 2, 0.01, 0.02),
            (2, 3, 4, 0.001, 0.001),
            (4, 1, 3, 0.05, 0.003),
        ] {
            let task = TaskConfig {
                lambda_w: lw,
                lambda_u: lu,
                ..cfg(n_c, s_c, len, None)
            }
            .build()
            .unwrap();
            let pred = predict(&task, Form::Full).unwrap();
            assert!(pred.c > 0.0);
            let (slope, scale) = type_i_slope(&task, Form::Full, pred.c);
            assert!(slope.abs() <= 1e-12 * scale, "slope {slope} scale {scale}");
            let cs = Consts::of(&task);
            let gamma1 = scale;
            let numeric = minimise_1d(|c| {
                let [_, d1, d2] = Loss1d::Full.eval(&cs, c);
                (d1 + gamma1, d2)
            })
            .unwrap();
            assert!(
                (numeric - pred.c).abs() <= 1e-13 * pred.c,
                "{numeric} vs {}",
                pred.c
            );
            // a n_w a^2 lambda_W = lambda_U K L b^2 balance and c = a b
            assert!((pred.word_norm * pred.u_norm - pred.c).abs() <= 1e-14 * pred.c);
            let bal_w = lw * task.n_w as f64 * pred.word_norm.powi(2);
            let bal_u = lu * (task.k * task.len) as f64 * pred.u_norm.powi(2);
            assert!((bal_w - bal_u).abs() <= 1e-13 * bal_w);
        }
    }

    #[test]
    fn one_dimensional_forms_are_stationary_to_round_off() {
        // drawn latent set (with a duplicate-prone small Z) and mean field, types I and II
        for classes in [Some(7), Some(40)] {
            for form in [Form::LatentSet, Form::MeanField] {
                let task = cfg(3, 2, 3, classes).build().unwrap();
                let pred = predict(&task, form).unwrap();
                let (slope, scale) = type_i_slope(&task, form, pred.c);
                assert!(
                    pred.c > 0.0 && slope.abs() <= 1e-12 * scale,
                    "{form}: {slope}"
                );

                let ln = TaskConfig {
                    layer_norm: Some(0.0),
                    lambda_w: 0.0,
                    freq: Freq::Zipf { exponent: 1.0 },
                    ..cfg(3, 2, 3, classes)
                }
                .build()
                .unwrap();
                let pred = predict(&ln, form).unwrap();
                assert_eq!(pred.kind, CollapseType::II);
                let cs = Consts::of(&ln);
                let rho = (ln.dim as f64).sqrt();
                let d1 = Loss1d::new(&ln, form).unwrap().eval(&cs, rho * pred.u_norm)[1];
                let pen = ln.lambda_u * (ln.k * ln.len) as f64 * pred.u_norm;
                assert!(
                    (rho * d1 + pen).abs() <= 1e-12 * pen,
                    "{form} II: {}",
                    rho * d1 + pen
                );
            }
        }
    }

    #[test]
    fn type_iii_solver_at_uniform_mu_gives_type_i_constants() {
        let task = cfg(3, 3, 3, None).build().unwrap();
        let i = predict(&task, Form::Full).unwrap();
        let cs = Consts::of(&task);
        let gamma = (task.lambda_w * task.lambda_u * cs.n_c * cs.k * cs.len).sqrt();
        let x = solve_iii_full(&task, &cs, gamma);
        for &xb in &x {
            assert!((xb - i.c).abs() <= 1e-13 * i.c, "{xb} vs {}", i.c);
        }
        // exact-enumeration Newton (mean field, small s_c^L) on uniform mu
        let mf = predict(&task, Form::MeanField).unwrap();
        let samples = RankSamples::of(&task, Form::MeanField).unwrap();
        assert!(!samples.sampled);
        let eval = |x: &[f64], order: u8| {
            let ev = eval_samples(&task, &cs, &samples, x, order);
            (ev.value, ev.grad, ev.hess)
        };
        let x = newton_norm_penalised(gamma, vec![0.3, 0.9, 0.5], eval).unwrap();
        for &xb in &x {
            assert!((xb - mf.c).abs() <= 1e-11 * mf.c, "{xb} vs {}", mf.c);
        }
    }

    #[test]
    fn sampled_and_enumerated_type_iii_minimisers_are_stationary() {
        // latent set enumerated (small), mean field enumerated, mean field sampled (s_c^L large)
        for (s_c, len, classes, form) in [
            (3, 3, Some(6), Form::LatentSet),
            (3, 3, None, Form::MeanField),
            (40, 4, Some(20), Form::MeanField),
            (40, 4, Some(20), Form::LatentSet),
        ] {
            let task = TaskConfig {
                freq: Freq::Zipf { exponent: 1.0 },
                lambda_w: 0.002,
                lambda_u: 0.003,
                ..cfg(3, s_c, len, classes)
            }
            .build()
            .unwrap();
            let pred = predict(&task, form).unwrap();
            let cs = Consts::of(&task);
            let samples = RankSamples::of(&task, form).unwrap();
            assert_eq!(samples.sampled, pred.risk_error.is_some());
            let x: Vec<f64> = pred.r.iter().map(|r| r * pred.u_norm).collect();
            let ev = eval_samples(&task, &cs, &samples, &x, 1);
            let gamma = (task.lambda_w * task.lambda_u * cs.n_c * cs.k * cs.len).sqrt();
            let nx = norm(&x);
            let g: Vec<f64> = ev
                .grad
                .iter()
                .zip(&x)
                .map(|(g, xb)| g + gamma * xb / nx)
                .collect();
            assert!(
                norm(&g) <= 1e-11 * gamma,
                "{form} s_c {s_c}: |grad| {}",
                norm(&g)
            );
            // r decreasing with the rank where ranks are well sampled
            assert!(
                pred.r[0] > pred.r[1] && pred.r[1] > pred.r[2],
                "{:?}",
                &pred.r[..3]
            );
        }
    }

    #[test]
    fn sample_gradients_and_hessians_match_finite_differences() {
        // L = 3 (one mask byte), 11 (two), 19 (three); latent set (with and without
        // the precomputed mask table) and mean field
        for (len, classes, form) in [
            (3, 9, Form::LatentSet),
            (11, 30, Form::LatentSet),
            (19, 12, Form::LatentSet),
            (19, 2100, Form::LatentSet),
            (6, 10, Form::MeanField),
        ] {
            let task = TaskConfig {
                freq: Freq::Zipf { exponent: 1.0 },
                ..cfg(3, 4, len, Some(classes))
            }
            .build()
            .unwrap();
            let cs = Consts::of(&task);
            let mut samples = RankSamples::of(&task, form).unwrap();
            assert_eq!(
                samples.masks.is_empty(),
                form == Form::MeanField || classes > 2048
            );
            // keep the test fast
            let keep = samples.n().min(64);
            samples.ranks.truncate(keep * len);
            samples.weight.truncate(keep);
            if form == Form::LatentSet {
                samples.class.truncate(keep);
            }
            let x = [0.9, 0.4, -0.2, 0.7];
            let ev = eval_samples(&task, &cs, &samples, &x, 2);
            let h = 1e-5;
            for a in 0..4 {
                let mut xp = x;
                xp[a] += h;
                let mut xm = x;
                xm[a] -= h;
                let (ep, em) = (
                    eval_samples(&task, &cs, &samples, &xp, 1),
                    eval_samples(&task, &cs, &samples, &xm, 1),
                );
                let fd = (ep.value - em.value) / (2.0 * h);
                assert!(
                    (fd - ev.grad[a]).abs() < 1e-8 * (1.0 + fd.abs()),
                    "L {len} grad {a}: {fd} vs {}",
                    ev.grad[a]
                );
                for bb in 0..4 {
                    let fd = (ep.grad[bb] - em.grad[bb]) / (2.0 * h);
                    let an = ev.hess[a * 4 + bb];
                    assert!(
                        (fd - an).abs() < 1e-7 * (1.0 + fd.abs()),
                        "L {len} hess {a},{bb}: {fd} vs {an}"
                    );
                }
            }
        }
    }

    #[test]
    #[ignore]
    fn time_sample_evaluations_at_paper_shape() {
        let task = TaskConfig {
            n_c: 3,
            s_c: 400,
            len: 15,
            dim: 100,
            classes: Some(1000),
            freq: Freq::Zipf { exponent: 1.0 },
            layer_norm: None,
            lambda_w: 1e-3,
            lambda_u: 1e-3,
            seed: 0,
        }
        .build()
        .unwrap();
        let cs = Consts::of(&task);
        for form in [Form::LatentSet, Form::MeanField] {
            let s = RankSamples::of(&task, form).unwrap();
            let x = vec![1.0; 400];
            for order in 0..3u8 {
                let mut best = f64::INFINITY;
                for _ in 0..3 {
                    let t0 = std::time::Instant::now();
                    std::hint::black_box(eval_samples(&task, &cs, &s, &x, order));
                    best = best.min(t0.elapsed().as_secs_f64());
                }
                eprintln!("{form} order {order}: {best:.4} s");
            }
        }
    }

    #[test]
    fn root_finder_reaches_round_off() {
        let x = increasing_root(|x| (x * x * x - 2.0, 3.0 * x * x), 0.0, 2.0);
        assert!((x - 2f64.cbrt()).abs() <= 2.0 * f64::EPSILON);
    }
}
