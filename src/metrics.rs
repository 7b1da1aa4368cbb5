//! Collapse measures for any weights `(W, U)` of a task (docs/theory.md §3, §5).
//!
//! Token representations are `phi(w_t)` ([`features`] with the task's
//! LayerNorm `eps`), grouped by concept `alpha(t) = t / s_c`; classifier blocks
//! `u_{k,l}` are grouped by the concept `z_{k,l}`. Within a group, the *concept
//! mean* is the plain (unweighted) mean of its rows; the *global mean* is the
//! plain mean of the non-empty concept means. `cos(a, b) = <a,b>/(|a||b|)`, taken
//! as 0 when either vector is zero. Ratios with a zero denominator are `NaN`
//! (serialised as `null`).
//!
//! Every measure is invariant under an orthogonal map of `R^d` applied to every
//! `w_t` and `u_{j,l}` (with LayerNorm: maps fixing `1_d`, which commute with
//! `phi`), and under a common rescaling of `U` for the `U`-measures.
//!
//! The standard neural-collapse measures NC1–NC4 (Papyan, Han & Donoho 2020)
//! are in [`nc`].

pub mod nc;

pub use nc::{nc_metrics, NcMetrics, NcValues};

use crate::collapse::Prediction;
use crate::network::{dot, features, Params};
use crate::task::Task;
use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};

/// Collapse measures of `(W, U)`; all are 0 at a collapsed configuration
/// (except `duality`, 1 there, and the norm statistics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollapseMetrics {
    /// NC1 analogue: `sum_t ||phi(w_t) - m_{alpha(t)}||^2 / (s_c sum_alpha ||m_alpha - g||^2)`
    /// (within-concept over between-concept sum of squares, `m_alpha` the concept
    /// means, `g` the global mean).
    pub within_spread_w: f64,
    /// Mean over tokens of `1 - cos(phi(w_t), m_{alpha(t)})`.
    pub direction_spread_w: f64,
    /// Coefficient of variation `std/mean` of `||phi(w_t)||` over all tokens
    /// (population std): 0 when the representations are equinorm.
    pub norm_cv_w: f64,
    /// `max_{a,b} |<c_a, c_b> - E_ab|` with `c_a` the unit centred concept means
    /// `(m_a - g)/||m_a - g||` and `E_ab = 1` (`a = b`), `-1/(n_c-1)` (`a != b`).
    pub gram_error_w: f64,
    /// As `within_spread_w` for the blocks `u_{k,l}` grouped by `z_{k,l}`:
    /// `sum_{k,l} ||u_{k,l} - m^U_{z_{k,l}}||^2 / sum_alpha n_alpha ||m^U_alpha - g^U||^2`,
    /// `n_alpha` the number of blocks of concept `alpha`.
    pub within_spread_u: f64,
    /// Mean over blocks of `1 - cos(u_{k,l}, m^U_{z_{k,l}})`.
    pub direction_spread_u: f64,
    /// As `gram_error_w` for the centred concept means of `U` (concepts present in `z` only).
    pub gram_error_u: f64,
    /// Mean over `(k,l)` of `cos(u_{k,l}, m_{z_{k,l}})` with `m` the concept means of
    /// `phi(W)`: 1 at collapse (classifier aligned with the token representations).
    pub duality: f64,
    /// For each rank `beta`, the mean over concepts of `||phi(w_{(alpha,beta)})||`.
    pub norm_by_rank: Vec<f64>,
    /// Mean of `||phi(w_t)||` over all `n_w` tokens.
    pub word_norm_mean: f64,
    /// Unbiased (`n_w - 1` denominator) std of `||phi(w_t)||`, as PyTorch's
    /// `Tensor.std()` in the paper's reference script.
    pub word_norm_std: f64,
    /// Population (`n_w` denominator) std of `||phi(w_t)||`.
    pub word_norm_std_pop: f64,
    /// Mean of `||u_{k,l}||` over all `K L` blocks.
    pub u_norm_mean: f64,
    /// Three largest singular values of the column-centred matrix whose rows are
    /// `phi(w_t)` for the tokens of the first `min(3, n_c)` concepts (0-padded).
    pub pca_w: [f64; 3],
    /// Same for the rows `u_{k,l}` with `z_{k,l}` among the first three concepts.
    pub pca_u: [f64; 3],
}

/// Group statistics of rows of length `d` with group labels.
struct Groups {
    d: usize,
    /// Concept means, `n_groups x d`.
    means: Vec<f64>,
    counts: Vec<usize>,
    /// Global mean (mean of the non-empty concept means).
    global: Vec<f64>,
}

impl Groups {
    fn new(rows: &[f64], d: usize, labels: &[usize], n_groups: usize) -> Self {
        let mut means = vec![0.0; n_groups * d];
        let mut counts = vec![0usize; n_groups];
        for (row, &g) in rows.chunks(d).zip(labels) {
            counts[g] += 1;
            for (m, v) in means[g * d..(g + 1) * d].iter_mut().zip(row) {
                *m += v;
            }
        }
        let mut global = vec![0.0; d];
        let present = counts.iter().filter(|&&c| c > 0).count().max(1) as f64;
        for (g, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            for (gl, m) in global.iter_mut().zip(&mut means[g * d..(g + 1) * d]) {
                *m /= c as f64;
                *gl += *m / present;
            }
        }
        Groups {
            d,
            means,
            counts,
            global,
        }
    }

    fn mean(&self, g: usize) -> &[f64] {
        &self.means[g * self.d..(g + 1) * self.d]
    }

    /// Within / between sum-of-squares ratio and mean `1 - cos(row, its mean)`.
    fn spreads(&self, rows: &[f64], labels: &[usize]) -> (f64, f64) {
        let (mut within, mut dir, mut n) = (0.0, 0.0, 0usize);
        for (row, &g) in rows.chunks(self.d).zip(labels) {
            let m = self.mean(g);
            within += row
                .iter()
                .zip(m)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>();
            dir += 1.0 - cosine(row, m);
            n += 1;
        }
        let between: f64 = (0..self.counts.len())
            .map(|g| self.counts[g] as f64 * sq_dist(self.mean(g), &self.global))
            .sum();
        (ratio(within, between), dir / n.max(1) as f64)
    }

    /// `max |<c_a,c_b> - E_ab|` over present groups, `c` the unit centred means.
    fn gram_error(&self, n_c: usize) -> f64 {
        let units: Vec<(usize, Vec<f64>)> = (0..self.counts.len())
            .filter(|&g| self.counts[g] > 0)
            .map(|g| {
                let c: Vec<f64> = self
                    .mean(g)
                    .iter()
                    .zip(&self.global)
                    .map(|(a, b)| a - b)
                    .collect();
                (g, unit(&c))
            })
            .collect();
        equiangular_gram_error(&units, n_c)
    }
}

fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        num / den
    } else {
        f64::NAN
    }
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `a/|a|`, or zero when `a = 0`.
fn unit(a: &[f64]) -> Vec<f64> {
    let n = norm(a);
    if n > 0.0 {
        a.iter().map(|v| v / n).collect()
    } else {
        vec![0.0; a.len()]
    }
}

/// `<a,b>/(|a||b|)`, 0 when either is zero.
fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let n = norm(a) * norm(b);
    if n > 0.0 {
        dot(a, b) / n
    } else {
        0.0
    }
}

/// `max |<v_a, v_b> - E_ab|` with `E` the equiangular Gram of `n_c` vectors.
fn equiangular_gram_error(units: &[(usize, Vec<f64>)], n_c: usize) -> f64 {
    let off = -1.0 / (n_c as f64 - 1.0);
    let mut err = 0.0f64;
    for (i, (_, a)) in units.iter().enumerate() {
        for (j, (_, b)) in units.iter().enumerate().take(i + 1) {
            let target = if i == j { 1.0 } else { off };
            err = err.max((dot(a, b) - target).abs());
        }
    }
    err
}

/// Population mean and std, and the unbiased std.
fn mean_std(v: &[f64]) -> (f64, f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n;
    let ss = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>();
    let unbiased = if v.len() > 1 {
        (ss / (n - 1.0)).sqrt()
    } else {
        f64::NAN
    };
    (m, (ss / n).sqrt(), unbiased)
}

/// Principal axes of a row set: column mean, the three largest singular values
/// of the centred matrix and the matching unit axes (0-padded).
struct Pca3 {
    mean: Vec<f64>,
    singular: [f64; 3],
    axes: [Vec<f64>; 3],
}

/// PCA through the `d x d` scatter matrix `X_c^T X_c`: its top three eigenvectors
/// `v_c` are the principal axes and `sigma_c = ||X_c v_c||` the singular values
/// (accurate to `~eps sigma_max` even when tiny). Axis signs are fixed so that
/// the largest-magnitude entry of each axis is positive.
fn pca3(rows: &[f64], d: usize) -> Pca3 {
    let n = rows.len() / d.max(1);
    let mut mean = vec![0.0; d];
    for row in rows.chunks(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    if n > 0 {
        mean.iter_mut().for_each(|m| *m /= n as f64);
    }
    let zero = || [vec![0.0; d], vec![0.0; d], vec![0.0; d]];
    if n == 0 {
        return Pca3 {
            mean,
            singular: [0.0; 3],
            axes: zero(),
        };
    }
    let x = DMatrix::from_fn(n, d, |i, j| rows[i * d + j] - mean[j]);
    let scatter = x.tr_mul(&x);
    let eig = SymmetricEigen::new(scatter);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let mut singular = [0.0; 3];
    let mut axes = zero();
    for (c, &i) in order.iter().take(3).enumerate() {
        let mut v: Vec<f64> = eig.eigenvectors.column(i).iter().copied().collect();
        // ||X_c v|| rather than sqrt(eigenvalue): absolute error ~ eps sigma_max
        // instead of ~ sqrt(eps) sigma_max for the small singular values.
        let xv = &x * nalgebra::DVector::from_column_slice(&v);
        singular[c] = xv.norm();
        let big = v
            .iter()
            .copied()
            .fold(0.0f64, |acc, y| if y.abs() > acc.abs() { y } else { acc });
        if big < 0.0 {
            v.iter_mut().for_each(|y| *y = -*y);
        }
        axes[c] = v;
    }
    Pca3 {
        mean,
        singular,
        axes,
    }
}

/// PCA of the rows (row-major, length `d` each): the coordinates of every row on
/// the first three principal axes (centred at the column mean; 0 for missing
/// axes), and the three largest singular values of the centred matrix.
pub fn pca_projection(rows: &[f64], d: usize) -> (Vec<[f64; 3]>, [f64; 3]) {
    let pca = pca3(rows, d);
    let points = rows
        .chunks(d)
        .map(|row| {
            let c: Vec<f64> = row.iter().zip(&pca.mean).map(|(a, m)| a - m).collect();
            [
                dot(&c, &pca.axes[0]),
                dot(&c, &pca.axes[1]),
                dot(&c, &pca.axes[2]),
            ]
        })
        .collect();
    (points, pca.singular)
}

/// Rows `phi(w_t)` of the tokens of the first `min(3, n_c)` concepts, with their concepts.
fn first_concepts_w(task: &Task, phi: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let n = task.n_c().min(3) * task.s_c();
    let rows = phi[..n * task.dim()].to_vec();
    let labels = (0..n).map(|t| t / task.s_c()).collect();
    (rows, labels)
}

/// Blocks `u_{k,l}` with `z_{k,l} < 3`, with their concepts.
fn first_concepts_u(task: &Task, p: &Params) -> (Vec<f64>, Vec<usize>) {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (block, &alpha) in p.u.chunks(task.dim()).zip(task.z()) {
        if alpha < 3 {
            rows.extend_from_slice(block);
            labels.push(alpha);
        }
    }
    (rows, labels)
}

/// 3-D PCA coordinates of `phi(w_t)` for the tokens of the first three concepts,
/// with their concept labels (for scatter plots; see [`pca_projection`]).
pub fn pca_points_w(task: &Task, p: &Params) -> (Vec<[f64; 3]>, Vec<usize>) {
    let phi = features(p, task.norm());
    let (rows, labels) = first_concepts_w(task, &phi);
    (pca_projection(&rows, task.dim()).0, labels)
}

/// 3-D PCA coordinates of the blocks `u_{k,l}` with `z_{k,l}` among the first
/// three concepts, with their labels `z_{k,l}`.
pub fn pca_points_u(task: &Task, p: &Params) -> (Vec<[f64; 3]>, Vec<usize>) {
    let (rows, labels) = first_concepts_u(task, p);
    (pca_projection(&rows, task.dim()).0, labels)
}

/// All collapse measures of `(W, U)` for `task` (see [`CollapseMetrics`]).
/// Cost `O((n_w + K L) d + n d^2 + d^3)`.
pub fn collapse_metrics(task: &Task, p: &Params) -> CollapseMetrics {
    let d = task.dim();
    let phi = features(p, task.norm());
    let labels_w: Vec<usize> = (0..task.n_w()).map(|t| t / task.s_c()).collect();
    let gw = Groups::new(&phi, d, &labels_w, task.n_c());
    let (within_spread_w, direction_spread_w) = gw.spreads(&phi, &labels_w);
    let norms: Vec<f64> = phi.chunks(d).map(norm).collect();
    let (word_norm_mean, word_norm_std_pop, word_norm_std) = mean_std(&norms);
    let norm_by_rank = (0..task.s_c())
        .map(|beta| {
            (0..task.n_c())
                .map(|alpha| norms[task.token(alpha, beta)])
                .sum::<f64>()
                / task.n_c() as f64
        })
        .collect();

    let gu = Groups::new(&p.u, d, task.z(), task.n_c());
    let (within_spread_u, direction_spread_u) = gu.spreads(&p.u, task.z());
    let u_norms: Vec<f64> = p.u.chunks(d).map(norm).collect();
    let duality =
        p.u.chunks(d)
            .zip(task.z())
            .map(|(u, &alpha)| cosine(u, gw.mean(alpha)))
            .sum::<f64>()
            / u_norms.len().max(1) as f64;

    let (rows_w, _) = first_concepts_w(task, &phi);
    let (rows_u, _) = first_concepts_u(task, p);
    CollapseMetrics {
        within_spread_w,
        direction_spread_w,
        norm_cv_w: ratio(word_norm_std_pop, word_norm_mean),
        gram_error_w: gw.gram_error(task.n_c()),
        within_spread_u,
        direction_spread_u,
        gram_error_u: gu.gram_error(task.n_c()),
        duality,
        norm_by_rank,
        word_norm_mean,
        word_norm_std,
        word_norm_std_pop,
        u_norm_mean: mean_std(&u_norms).0,
        pca_w: pca3(&rows_w, d).singular,
        pca_u: pca3(&rows_u, d).singular,
    }
}

/// Distance of `(W, U)` from the collapsed family predicted by `pred`
/// (invariant under orthogonal maps of `R^d`). With `rho_beta = pred.r[beta]`,
/// `b = pred.u_norm`, `m_alpha` the concept means of `phi(W)` and `m^U_alpha` those of `U`,
/// and the scales `S_w = sqrt(mean_beta rho_beta^2)`, `S_u = b` (each replaced by
/// 1 when 0, making the errors absolute):
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyDistance {
    /// `sqrt(mean_t ||phi(w_t) - rho_{beta(t)} unit(m_{alpha(t)})||^2) / S_w`.
    pub within_w: f64,
    /// `sqrt(mean_{k,l} ||u_{k,l} - b unit(m^U_{z_{k,l}})||^2) / S_u`.
    pub spread_u: f64,
    /// `max_t | ||phi(w_t)|| - rho_{beta(t)} | / S_w`.
    pub norm_w_err: f64,
    /// `max_{k,l} | ||u_{k,l}|| - b | / S_u`.
    pub norm_u_err: f64,
    /// `max_{a,b} |<unit(m_a), unit(m_b)> - E_ab|` (uncentred means, `E` the
    /// equiangular Gram), which also detects a common offset of the concept means.
    pub gram_err: f64,
    /// `max_alpha 1 - cos(m_alpha, m^U_alpha)` over concepts present in `z`.
    pub duality_err: f64,
    /// Largest of the above.
    pub max: f64,
}

/// How far `(W, U)` is from the collapsed family of `pred` (see [`FamilyDistance`]):
/// zero up to round-off at [`crate::collapse::build`]`(task, pred, frame)` for
/// any frame, and after any orthogonal map of it (fixing `1_d` with LayerNorm).
pub fn family_distance(task: &Task, p: &Params, pred: &Prediction) -> FamilyDistance {
    let d = task.dim();
    let phi = features(p, task.norm());
    let labels_w: Vec<usize> = (0..task.n_w()).map(|t| t / task.s_c()).collect();
    let gw = Groups::new(&phi, d, &labels_w, task.n_c());
    let gu = Groups::new(&p.u, d, task.z(), task.n_c());
    let units_w: Vec<Vec<f64>> = (0..task.n_c()).map(|a| unit(gw.mean(a))).collect();
    let units_u: Vec<Vec<f64>> = (0..task.n_c()).map(|a| unit(gu.mean(a))).collect();

    let rms = (pred.r.iter().map(|v| v * v).sum::<f64>() / pred.r.len().max(1) as f64).sqrt();
    let s_w = if rms > 0.0 { rms } else { 1.0 };
    let b = pred.u_norm;
    let s_u = if b > 0.0 { b } else { 1.0 };

    let (mut sw, mut nw_err) = (0.0, 0.0f64);
    for (t, row) in phi.chunks(d).enumerate() {
        let (alpha, beta) = (t / task.s_c(), t % task.s_c());
        let rho = pred.r[beta];
        sw += row
            .iter()
            .zip(&units_w[alpha])
            .map(|(x, e)| (x - rho * e).powi(2))
            .sum::<f64>();
        nw_err = nw_err.max((norm(row) - rho).abs());
    }
    let (mut su, mut nu_err) = (0.0, 0.0f64);
    for (u, &alpha) in p.u.chunks(d).zip(task.z()) {
        su += u
            .iter()
            .zip(&units_u[alpha])
            .map(|(x, e)| (x - b * e).powi(2))
            .sum::<f64>();
        nu_err = nu_err.max((norm(u) - b).abs());
    }
    let n_u = task.z().len().max(1) as f64;
    let all: Vec<(usize, Vec<f64>)> = units_w.iter().cloned().enumerate().collect();
    let gram_err = equiangular_gram_error(&all, task.n_c());
    let duality_err = (0..task.n_c())
        .filter(|&a| gu.counts[a] > 0)
        .map(|a| 1.0 - cosine(gw.mean(a), gu.mean(a)))
        .fold(0.0f64, f64::max);
    let mut out = FamilyDistance {
        within_w: (sw / task.n_w() as f64).sqrt() / s_w,
        spread_u: (su / n_u).sqrt() / s_u,
        norm_w_err: nw_err / s_w,
        norm_u_err: nu_err / s_u,
        gram_err,
        duality_err,
        max: 0.0,
    };
    out.max = [
        out.within_w,
        out.spread_u,
        out.norm_w_err,
        out.norm_u_err,
        out.gram_err,
        out.duality_err,
    ]
    .into_iter()
    .fold(0.0f64, f64::max);
    out
}

/// The paper's central claim measured directly: how far the tokens of one concept
/// are from sharing one representation,
///
/// `||Phi - M||_F / ||Phi||_F`,
///
/// where row `t` of `Phi` is `phi(w_t)` (the unit direction `phi(w_t)/||phi(w_t)||`
/// when `mu` is non-uniform and there is no LayerNorm, since type III collapses
/// directions only) and `M` replaces each row by the mean of its concept's rows.
/// Zero exactly at types I, II and III; 0 when `Phi = 0`.
pub fn within_concept_spread(task: &Task, p: &Params) -> f64 {
    let d = task.dim();
    let s_c = task.s_c();
    let mut phi = features(p, task.norm());
    if task.norm().is_linear() && !task.freq().is_uniform() {
        for row in phi.chunks_mut(d) {
            let n = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            if n > 0.0 {
                row.iter_mut().for_each(|v| *v /= n);
            }
        }
    }
    let (mut num, mut den) = (0.0, 0.0);
    for concept in phi.chunks(s_c * d) {
        let mut mean = vec![0.0; d];
        for row in concept.chunks(d) {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, v)| *m += v / s_c as f64);
        }
        for row in concept.chunks(d) {
            for (v, m) in row.iter().zip(&mean) {
                num += (v - m) * (v - m);
                den += v * v;
            }
        }
    }
    if den == 0.0 {
        0.0
    } else {
        (num / den).sqrt()
    }
}
