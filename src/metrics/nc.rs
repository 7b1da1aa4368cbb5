//! The neural-collapse measures NC1–NC4 of Papyan, Han & Donoho (*Prevalence of
//! neural collapse during the terminal phase of deep learning training*, PNAS
//! 2020), as neural-collapse toolkits compute them, on two groupings of a task's
//! features.
//!
//! For `K` classes with class means `mu_c` (rows), global mean
//! `G = (1/K) sum_c mu_c`, centred means `m_c = mu_c - G` (the rows of `M`) and a
//! classifier with rows `w_c` (the rows of `W`; the network has no bias):
//!
//! - **NC1** `= tr(Sigma_W Sigma_B^+) / K`: within-class covariance
//!   `Sigma_W = (1/K) sum_c E_{x in c}[(h(x) - mu_c)(h(x) - mu_c)^T]` (the covariance of
//!   each class, averaged over classes), between-class covariance
//!   `Sigma_B = (1/K) sum_c m_c m_c^T`, `^+` the Moore–Penrose pseudo-inverse (the
//!   eigenvalues of `Sigma_B` below `PINV_RTOL` times the largest count as zero).
//!   0 when every sample sits on its class mean; variation outside the span of
//!   the centred means is not counted.
//! - **NC2**, equinorm: the coefficient of variation `std/mean` of the norms
//!   `||m_c||`, and of the classifier norms `||w_c||`; equiangularity: over the
//!   `K(K-1)/2` pairs `c < c'`, the standard deviation of the cosines
//!   `cos(m_c, m_c')` and the mean `|cos(m_c, m_c') + 1/(K-1)|` (the deviation from a
//!   simplex equiangular tight frame), and the same for the `w_c`. Standard
//!   deviations are unbiased (`n - 1`), as `torch.std` in the authors' code; the
//!   deviation of a single pair (`K = 2`) is 0.
//! - **NC3**, self-duality: `||W/||W||_F - M/||M||_F||_F` (some toolkits report its
//!   square).
//! - **NC4**: the fraction of samples whose classifier prediction
//!   `argmax_c <w_c, h(x)>` equals the nearest-class-centre prediction
//!   `argmin_c ||h(x) - mu_c||` (`1 -` the toolkits' "NCC mismatch"), averaged over
//!   classes with each sample's probability.
//!
//! All are 0 (NC4: 1) at a simplex equiangular tight frame with `W = M` and no
//! within-class variation. Cosines with a zero vector are 0, ratios with a zero
//! denominator `NaN` (`null` in JSON).
//!
//! **Tokens grouped by concept** ([`NcMetrics::tokens`]): the samples are the `n_w`
//! token representations `phi(w_t)` (one sample per vocabulary entry, unweighted,
//! as the concept means of [`super::collapse_metrics`]), the classes the `n_c`
//! concepts, `s_c` samples each. The network has no classifier over concepts (it
//! scores latent variables from the concatenation of `L` token representations,
//! and one token alone has no prediction), so only NC1 and NC2 (means) are
//! reported there; `duality` of [`super::CollapseMetrics`] compares the blocks
//! `u_{k,l}` with the concept means instead. With Zipf frequencies and no
//! LayerNorm the predicted collapse (type III) keeps the rank-dependent norms
//! `r_beta` inside a concept, so NC1 on tokens is not 0 there.
//!
//! **Class features** ([`NcMetrics::classes`]): the samples of class `k` are its
//! sentences `x = x(z_k, beta)` with probability `prod_l mu_{beta_l}` (the data of
//! the limit risk), the feature is the classifier's input
//! `h(x) = (phi(w_{x_1}), .., phi(w_{x_L}))` in `R^{L d}` and the classifier is `U`
//! (rows `u_k`). Positions are independent, so exactly, with the frequency-weighted
//! concept means `mbar_alpha = sum_beta mu_beta phi(w_{(alpha,beta)})` and covariances
//! `C_alpha = sum_beta mu_beta (phi(w_{(alpha,beta)}) - mbar_alpha)(..)^T`: the class
//! mean is `(mbar_{z_{k,1}}, .., mbar_{z_{k,L}})` and its covariance is block-diagonal
//! with blocks `C_{z_{k,l}}`. NC4 enumerates every sentence when `K s_c^L` is at most
//! the sample count given, else draws that many (stratified over classes, seeded).
//! At the paper's collapse the class means are not a simplex frame: `cos(m_j, m_k)`
//! depends on how many positions `z_j` and `z_k` share, so NC2's equiangularity
//! deviation measures that structure rather than a failure to collapse.

#[cfg(test)]
mod tests;

use crate::network::{dot, features, Params};
use crate::task::{RankSampler, Task};
use nalgebra::{DMatrix, SymmetricEigen};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Eigenvalues of `Sigma_B` at most `PINV_RTOL` times the largest are treated as 0
/// in the pseudo-inverse.
pub const PINV_RTOL: f64 = 1e-10;

/// NC1–NC4 of one grouping (see the module doc); `None` where the grouping has
/// no classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NcValues {
    /// Number of classes `K`.
    pub classes: usize,
    /// Feature dimension.
    pub dim: usize,
    /// `tr(Sigma_W Sigma_B^+) / K`.
    pub nc1: f64,
    /// Rank of `Sigma_B` (eigenvalues above `PINV_RTOL` times the largest).
    pub sigma_b_rank: usize,
    /// `std/mean` of `||m_c||`.
    pub nc2_norm_cv_means: f64,
    /// Standard deviation of `cos(m_c, m_c')`, `c < c'`.
    pub nc2_cos_std_means: f64,
    /// Mean of `|cos(m_c, m_c') + 1/(K-1)|`, `c < c'`.
    pub nc2_cos_shift_means: f64,
    /// `std/mean` of `||w_c||`.
    pub nc2_norm_cv_classifier: Option<f64>,
    /// Standard deviation of `cos(w_c, w_c')`, `c < c'`.
    pub nc2_cos_std_classifier: Option<f64>,
    /// Mean of `|cos(w_c, w_c') + 1/(K-1)|`, `c < c'`.
    pub nc2_cos_shift_classifier: Option<f64>,
    /// `||W/||W||_F - M/||M||_F||_F`.
    pub nc3: Option<f64>,
    /// Fraction of samples where the classifier and the nearest class mean agree.
    pub nc4: Option<f64>,
}

/// NC1–NC4 of a task's weights on both groupings (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NcMetrics {
    /// Token representations `phi(w_t)` grouped by concept (NC1, NC2 only).
    pub tokens: NcValues,
    /// Sentence features `h(x)` grouped by class, classifier `U`.
    pub classes: NcValues,
    /// NC4 of the classes enumerated every sentence (else sampled).
    pub nc4_exact: bool,
    /// Sentences behind NC4 (enumerated or drawn).
    pub nc4_sentences: usize,
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Mean and unbiased standard deviation (0 for one value).
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let ss: f64 = v.iter().map(|x| (x - m).powi(2)).sum();
    (
        m,
        if v.len() > 1 {
            (ss / (n - 1.0)).sqrt()
        } else {
            0.0
        },
    )
}

fn cv(v: &[f64]) -> f64 {
    let (m, s) = mean_std(v);
    if m > 0.0 {
        s / m
    } else {
        f64::NAN
    }
}

/// `(std, mean |cos + 1/(K-1)|)` of the pairwise cosines of `K` rows, from their
/// Gram matrix (any positive multiple of it): `cos_ij = g_ij / sqrt(g_ii g_jj)`.
fn equiangularity(gram: &DMatrix<f64>) -> (f64, f64) {
    let k = gram.nrows();
    let cos: Vec<f64> = (0..k)
        .flat_map(|i| (i + 1..k).map(move |j| (i, j)))
        .map(|(i, j)| {
            let n = (gram[(i, i)] * gram[(j, j)]).sqrt();
            if n > 0.0 {
                gram[(i, j)] / n
            } else {
                0.0
            }
        })
        .collect();
    if cos.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let target = 1.0 / (k as f64 - 1.0);
    let shift = cos.iter().map(|c| (c + target).abs()).sum::<f64>() / cos.len() as f64;
    (mean_std(&cos).1, shift)
}

/// NC1, NC2 and NC3 from the class means `mu_c` (rows, uncentred), the quadratic
/// form `v -> v^T Sigma_W v` and the classifier rows, if any. `Sigma_B^+` comes from
/// the eigen-decomposition of the `K x K` Gram matrix `M M^T / K` = `A Lambda A^T`:
/// `Sigma_B`'s eigenpairs are `(lambda_i, v_i = M^T a_i / sqrt(K lambda_i))`, so
/// `tr(Sigma_W Sigma_B^+) = sum_{lambda_i > 0} v_i^T Sigma_W v_i / lambda_i`.
pub fn nc_from_means(
    means: &[Vec<f64>],
    within_quad: impl Fn(&[f64]) -> f64 + Sync,
    classifier: Option<&[Vec<f64>]>,
) -> NcValues {
    let k = means.len();
    let dim = means.first().map_or(0, Vec::len);
    let mut global = vec![0.0; dim];
    for m in means {
        global
            .iter_mut()
            .zip(m)
            .for_each(|(g, v)| *g += v / k as f64);
    }
    let centred: Vec<Vec<f64>> = means
        .iter()
        .map(|m| m.iter().zip(&global).map(|(a, b)| a - b).collect())
        .collect();
    let mc = DMatrix::from_fn(k, dim, |r, c| centred[r][c]);
    let gram = (&mc * mc.transpose()) / k as f64;
    let eig_gram = gram.clone();
    let eig = SymmetricEigen::new(gram);
    let top = eig.eigenvalues.iter().fold(0.0f64, |m, v| m.max(*v));
    let keep: Vec<usize> = (0..k)
        .filter(|&i| top > 0.0 && eig.eigenvalues[i] > PINV_RTOL * top)
        .collect();
    let nc1 = keep
        .par_iter()
        .map(|&i| {
            let lambda = eig.eigenvalues[i];
            let v =
                mc.tr_mul(&eig.eigenvectors.column(i).into_owned()) / (k as f64 * lambda).sqrt();
            within_quad(v.as_slice()) / lambda
        })
        .sum::<f64>()
        / k as f64;
    let norms: Vec<f64> = centred.iter().map(|m| norm(m)).collect();
    let (cos_std, cos_shift) = equiangularity(&eig_gram);
    let mut out = NcValues {
        classes: k,
        dim,
        nc1: if top > 0.0 { nc1 } else { f64::NAN },
        sigma_b_rank: keep.len(),
        nc2_norm_cv_means: cv(&norms),
        nc2_cos_std_means: cos_std,
        nc2_cos_shift_means: cos_shift,
        nc2_norm_cv_classifier: None,
        nc2_cos_std_classifier: None,
        nc2_cos_shift_classifier: None,
        nc3: None,
        nc4: None,
    };
    if let Some(w) = classifier {
        let wn: Vec<f64> = w.iter().map(|r| norm(r)).collect();
        let wm = DMatrix::from_fn(w.len(), dim, |r, c| w[r][c]);
        let (s, sh) = equiangularity(&(&wm * wm.transpose()));
        out.nc2_norm_cv_classifier = Some(cv(&wn));
        out.nc2_cos_std_classifier = Some(s);
        out.nc2_cos_shift_classifier = Some(sh);
        let fw = wn.iter().map(|v| v * v).sum::<f64>().sqrt();
        let fm = norms.iter().map(|v| v * v).sum::<f64>().sqrt();
        let d2: f64 = w
            .iter()
            .zip(&centred)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x / fw - y / fm).powi(2)))
            .sum();
        out.nc3 = Some(if fw > 0.0 && fm > 0.0 {
            d2.sqrt()
        } else {
            f64::NAN
        });
    }
    out
}

/// Index of the largest value (the first on ties).
fn argmax(v: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, x) in v.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

/// NC1–NC4 of explicit samples: rows of length `dim`, `labels[i] in 0..k`, sample
/// weights `weights[i] > 0` (`None`: all 1; within a class they are normalised to
/// sum to 1), and classifier rows `w_c` if any. Every class must have a sample.
pub fn nc_from_samples(
    samples: &[f64],
    dim: usize,
    labels: &[usize],
    weights: Option<&[f64]>,
    k: usize,
    classifier: Option<&[Vec<f64>]>,
) -> NcValues {
    let wt = |i: usize| weights.map_or(1.0, |w| w[i]);
    let mut means = vec![vec![0.0; dim]; k];
    let mut mass = vec![0.0; k];
    for (i, (row, &c)) in samples.chunks(dim).zip(labels).enumerate() {
        mass[c] += wt(i);
        means[c]
            .iter_mut()
            .zip(row)
            .for_each(|(m, v)| *m += wt(i) * v);
    }
    for (m, &s) in means.iter_mut().zip(&mass) {
        m.iter_mut().for_each(|v| *v /= s);
    }
    let within = |v: &[f64]| {
        samples
            .chunks(dim)
            .zip(labels)
            .enumerate()
            .map(|(i, (row, &c))| {
                let p: f64 = row
                    .iter()
                    .zip(&means[c])
                    .zip(v)
                    .map(|((a, b), x)| (a - b) * x)
                    .sum();
                wt(i) / mass[c] * p * p
            })
            .sum::<f64>()
            / k as f64
    };
    let mut out = nc_from_means(&means, within, classifier);
    if let Some(w) = classifier {
        let mut agree = 0.0;
        for (i, (row, &c)) in samples.chunks(dim).zip(labels).enumerate() {
            let pred = argmax(w.iter().map(|r| dot(r, row)));
            let ncc = argmax(
                means
                    .iter()
                    .map(|m| -m.iter().zip(row).map(|(a, b)| (a - b).powi(2)).sum::<f64>()),
            );
            if pred == ncc {
                agree += wt(i) / mass[c];
            }
        }
        out.nc4 = Some(agree / k as f64);
    }
    out
}

/// NC4 of the class features: `(agreement, exact, sentences)`. The score of class
/// `j` is `sum_l A[j,l,x_l]` with `A[j,l,t] = <u_{j,l}, phi(w_t)>`, the squared
/// distance to class mean `j` is `sum_l D[z_{j,l}, x_l]` with
/// `D[alpha,t] = ||phi(w_t) - mbar_alpha||^2`; class `k`'s sentences are enumerated
/// (weights `prod_l mu_{beta_l}`, divided by their computed sum so that full
/// agreement is exactly 1) when `K s_c^L <= samples`, else
/// `ceil(samples/K)` are drawn per class (ChaCha8, `seed`, stream `k`).
fn nc4_classes(
    task: &Task,
    p: &Params,
    phi: &[f64],
    mbar: &[Vec<f64>],
    samples: usize,
    seed: u64,
) -> (f64, bool, usize) {
    let (d, len, k, n_w, s_c) = (task.dim(), task.len(), task.k(), task.n_w(), task.s_c());
    // table[(j L + l, t)] = <u_{j,l}, phi(w_t)>
    let table = DMatrix::from_row_slice(k * len, d, &p.u)
        * DMatrix::from_row_slice(n_w, d, phi).transpose();
    let dist: Vec<f64> = mbar
        .iter()
        .flat_map(|m| {
            phi.chunks(d)
                .map(move |f| f.iter().zip(m).map(|(a, b)| (a - b).powi(2)).sum::<f64>())
        })
        .collect();
    let agree = |x: &[usize]| {
        let pred =
            argmax((0..k).map(|j| (0..len).map(|l| table[(j * len + l, x[l])]).sum::<f64>()));
        let ncc = argmax((0..k).map(|j| {
            -(0..len)
                .map(|l| dist[task.z_of(j)[l] * n_w + x[l]])
                .sum::<f64>()
        }));
        pred == ncc
    };
    let total = (k as f64) * (s_c as f64).powi(len as i32);
    let exact = total <= samples as f64;
    let per_class = if exact { 0 } else { samples.div_ceil(k).max(1) };
    let sampler = RankSampler::new(task.mu());
    let frac: f64 = (0..k)
        .into_par_iter()
        .map(|c| {
            let z = task.z_of(c);
            let mut x = vec![0usize; len];
            if exact {
                let mut beta = vec![0usize; len];
                let (mut acc, mut mass) = (0.0, 0.0);
                loop {
                    for l in 0..len {
                        x[l] = task.token(z[l], beta[l]);
                    }
                    let prob = beta.iter().map(|&b| task.mu()[b]).product::<f64>();
                    mass += prob;
                    if agree(&x) {
                        acc += prob;
                    }
                    // next beta in mixed radix s_c
                    let mut l = 0;
                    while l < len && beta[l] + 1 == s_c {
                        beta[l] = 0;
                        l += 1;
                    }
                    if l == len {
                        break acc / mass;
                    }
                    beta[l] += 1;
                }
            } else {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(c as u64);
                let hits = (0..per_class)
                    .filter(|_| {
                        for l in 0..len {
                            x[l] = task.token(z[l], sampler.sample(&mut rng));
                        }
                        agree(&x)
                    })
                    .count();
                hits as f64 / per_class as f64
            }
        })
        .sum::<f64>()
        / k as f64;
    let n = if exact { total as usize } else { per_class * k };
    (frac, exact, n)
}

/// NC1–NC4 of `(W, U)` for `task` on both groupings (see the module doc). NC4 of
/// the classes uses at most about `samples` sentences (seeded by `seed`) unless
/// `K s_c^L <= samples`, where it is exact. Cost `O(K^2 L d + K^3 + K L n_w d)`
/// plus `O(K L)` per NC4 sentence.
pub fn nc_metrics(task: &Task, p: &Params, samples: usize, seed: u64) -> NcMetrics {
    let d = task.dim();
    let (n_c, s_c, len) = (task.n_c(), task.s_c(), task.len());
    let phi = features(p, task.norm());
    let labels: Vec<usize> = (0..task.n_w()).map(|t| t / s_c).collect();
    let tokens = nc_from_samples(&phi, d, &labels, None, n_c, None);

    let mu = task.mu();
    let mbar: Vec<Vec<f64>> = (0..n_c)
        .map(|a| {
            let mut m = vec![0.0; d];
            for (b, &w) in mu.iter().enumerate() {
                let row = &phi[task.token(a, b) * d..][..d];
                m.iter_mut().zip(row).for_each(|(m, v)| *m += w * v);
            }
            m
        })
        .collect();
    // nu[l][alpha]: fraction of classes with concept alpha at position l.
    let mut nu = vec![vec![0.0; n_c]; len];
    for c in 0..task.k() {
        for (l, &a) in task.z_of(c).iter().enumerate() {
            nu[l][a] += 1.0 / task.k() as f64;
        }
    }
    let within = |v: &[f64]| {
        let mut s = 0.0;
        for (l, vl) in v.chunks(d).enumerate() {
            for (a, &f) in nu[l].iter().enumerate() {
                if f == 0.0 {
                    continue;
                }
                let q: f64 = (0..s_c)
                    .map(|b| {
                        let row = &phi[task.token(a, b) * d..][..d];
                        let x: f64 = row
                            .iter()
                            .zip(&mbar[a])
                            .zip(vl)
                            .map(|((r, m), x)| (r - m) * x)
                            .sum();
                        mu[b] * x * x
                    })
                    .sum();
                s += f * q;
            }
        }
        s
    };
    let means: Vec<Vec<f64>> = (0..task.k())
        .map(|c| {
            task.z_of(c)
                .iter()
                .flat_map(|&a| mbar[a].iter().copied())
                .collect()
        })
        .collect();
    let u_rows: Vec<Vec<f64>> = p.u.chunks(len * d).map(<[f64]>::to_vec).collect();
    let mut classes = nc_from_means(&means, within, Some(&u_rows));
    let (nc4, nc4_exact, nc4_sentences) = nc4_classes(task, p, &phi, &mbar, samples, seed);
    classes.nc4 = Some(nc4);
    NcMetrics {
        tokens,
        classes,
        nc4_exact,
        nc4_sentences,
    }
}

/// `f64` in `{:.3e}`, `NaN` as `n/a`.
fn sci(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        format!("{v:.3e}")
    }
}

/// Three lines for `fcollapse analyze`.
impl std::fmt::Display for NcMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (t, c) = (&self.tokens, &self.classes);
        writeln!(
            f,
            "NC         tokens by concept (n_c = {}, d = {}): NC1 {}  NC2 norm CV {}  cos std {}  |cos + 1/(n_c-1)| {}  (no classifier over concepts: no NC3/NC4)",
            t.classes,
            t.dim,
            sci(t.nc1),
            sci(t.nc2_norm_cv_means),
            sci(t.nc2_cos_std_means),
            sci(t.nc2_cos_shift_means)
        )?;
        let opt = |v: Option<f64>| sci(v.unwrap_or(f64::NAN));
        writeln!(
            f,
            "  classes  K = {}, L d = {}: NC1 {}  NC2 means: norm CV {}  cos std {}  |cos + 1/(K-1)| {};  U: norm CV {}  cos std {}  |cos + 1/(K-1)| {}",
            c.classes,
            c.dim,
            sci(c.nc1),
            sci(c.nc2_norm_cv_means),
            sci(c.nc2_cos_std_means),
            sci(c.nc2_cos_shift_means),
            opt(c.nc2_norm_cv_classifier),
            opt(c.nc2_cos_std_classifier),
            opt(c.nc2_cos_shift_classifier)
        )?;
        write!(
            f,
            "           NC3 {}  NC4 {:.6} ({}, {} sentences)",
            opt(c.nc3),
            c.nc4.unwrap_or(f64::NAN),
            if self.nc4_exact { "exact" } else { "sampled" },
            self.nc4_sentences
        )
    }
}
