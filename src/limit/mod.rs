//! The exact large-sample limit risk of docs/theory.md §2 and its gradient.
//!
//! With `n_spl -> ∞` the empirical risk becomes
//!
//! ```text
//! R(W,U) = (1/K) sum_k sum_{beta in [s_c]^L} (prod_l mu_{beta_l}) CE(h(x(z_k, beta)), k)
//!          + (lambda_W/2) ||W||_F^2 + (lambda_U/2) ||U||_F^2,
//! ```
//!
//! where `x(z_k, beta)_l = (z_{k,l}, beta_l)` is the token `z_{k,l} s_c + beta_l`,
//! `h_j(x) = sum_l <u_{j,l}, phi(w_{x_l})>`, `CE(h, k) = log sum_j exp(h_j) - h_k`, and
//! `phi` is LayerNorm without affine parameters (`eps = task.layer_norm`, biased
//! variance) or the identity. The classes are averaged (`1/K`), the token choices
//! `beta` are summed with weights `P(beta) = prod_l mu_{beta_l}` (an exact
//! expectation, no sampling).
//!
//! # Algorithm
//!
//! 1. `phi = features(W)` and the table `A_l[t, j] = <u_{j,l}, phi(w_t)>`, stored
//!    `L x n_w x K` so that the `K`-vector of `(l, t)` is contiguous.
//! 2. For each class `k`, `beta` runs over `[s_c]^L` in reflected mixed-radix Gray
//!    order (Knuth's loopless algorithm H): exactly one position `l` changes per
//!    step, from token `t` to `t'`, and the score vector is updated in `O(K)`,
//!    `h += A_l[t', :] - A_l[t, :]`. Every [`REFRESH`] leaves `h` is recomputed from
//!    scratch (`O(L K)`), which bounds the round-off of the running sums.
//! 3. Gradient by prefix sums, also `O(K)` per leaf: `S` is the running sum of
//!    `P(beta) softmax(h)` over the visited leaves of the current block; position
//!    `l` keeps `S_last_l`, the value of `S` when it last changed; when `l` leaves
//!    token `t`, `G_l[t, :] += S - S_last_l` and `S_last_l = S`. Every position is
//!    flushed at the end of a block (and `S` restarts from zero). The `-e_k` part of
//!    `softmax - e_k` is added in closed form: the `mu`-marginal of position `l`
//!    gives `G_l[z_{k,l} s_c + b, k] -= mu_b`.
//! 4. With `G` summed over classes, `dR/dA = G / K`, hence
//!    `dU_{j,l} = (1/K) sum_t G_l[t, j] phi(w_t)`,
//!    `dphi(w_t) = (1/K) sum_{l,j} G_l[t, j] u_{j,l}`, then `features_backward`
//!    and the weight-decay terms `lambda_W W`, `lambda_U U`.
//!
//! One Gray step is a single sweep over the `K`-vectors: it finishes the leaf
//! just visited (`S += P(beta) softmax`, flush of the position that changes),
//! moves `h` to the next leaf and exponentiates `e = exp(h - shift)`, where
//! `shift` is the previous leaf's `max h` (re-centred exactly in the rare case the
//! maximum moved by more than 600). `exp` is a branch-free polynomial (about
//! 1 ulp) so that the sweep vectorises, and the class pass is compiled three
//! times (AVX-512, AVX2 with FMA, portable) and chosen at run time. All copies do
//! the same IEEE operations in the same order (explicit fused multiply-adds only,
//! correctly rounded everywhere; sums in 8 fixed lanes), so they return the same
//! bits. (On an x86-64 CPU without FMA the portable copy is correct but slow.)
//!
//! Classes are split into at most [`N_CHUNKS`] fixed chunks (independent of the
//! number of threads); chunks run in parallel with rayon and their partial sums
//! are added in chunk order, so the result is bitwise the same for any thread
//! count.
//!
//! Accuracy: the risk agrees with the direct evaluation [`risk_naive`] to a few
//! `1e-16` relative (tested at `1e-12` on random instances, `1e-13` with several
//! refresh blocks per class).
//!
//! # Layout
//!
//! This file holds the public API (budget, [`risk`], [`risk_grad`],
//! [`risk_naive`]) and the chunking of the classes; [`LimitProblem`] (the
//! argmin problem) is re-exported from `problem`. The per-class pass lives in
//! `kernel` (score table, Gray-code sweep, prefix-sum gradient), the Gray code
//! itself in `gray`, and the vectorised `exp`, lane sums and the run-time SIMD
//! dispatch in `simd`. The exact Hessian ([`HessianOperator`],
//! [`hessian_vector_product`], the dense [`hessian`]) lives in `hvp`, its
//! per-class tangent pass in `tangent`, and the first and second derivatives of
//! LayerNorm it needs in `feature_map`.

use crate::error::{Error, Result};
use crate::network::{self, features, log_sum_exp, Params};
use crate::task::Task;
use kernel::{Scratch, Table};
use rayon::prelude::*;
use simd::class_sum;

mod feature_map;
mod gray;
mod hvp;
mod kernel;
mod problem;
mod simd;
mod tangent;

pub use hvp::{
    hessian, hessian_raw, hessian_vector_product, hessian_vector_product_fd, HessianOperator,
};
pub use problem::LimitProblem;

/// Default bound on [`work`] for the exact enumeration: about half a minute of
/// [`risk_grad`] on two cores (measured 0.5–2 ns per unit of [`work`], see
/// docs/performance.md).
pub const DEFAULT_WORK_BUDGET: f64 = 2e10;

/// The score vector `h` is recomputed from scratch (and the gradient prefix sums
/// restarted) after this many leaves of the Gray-code enumeration.
pub const REFRESH: usize = 256;

/// Classes are cut into at most this many chunks, whatever the thread count.
pub const N_CHUNKS: usize = 16;

/// Largest memory (in f64 words) the enumeration may allocate (2 GiB).
const MAX_MEMORY_WORDS: f64 = 2.684_354_56e8;

/// Estimated operation count of one [`risk_grad`] call:
///
/// `K * s_c^L * (K + L)  +  3 L n_w K d`.
///
/// The first term is the enumeration: `K` classes times `s_c^L` token choices,
/// each costing a few passes over a `K`-vector (score update, softmax, prefix
/// sums) plus the `O(L)` product `P(beta)`; the second term counts the three dense
/// products (`A`, `dU`, `dphi`). Computed in f64, so `s_c^L` may be huge or
/// infinite without overflow.
pub fn work(task: &Task) -> f64 {
    let k = task.k() as f64;
    let len = task.len() as f64;
    let leaves = (task.s_c() as f64).powf(len);
    k * leaves * (k + len) + 3.0 * len * task.n_w() as f64 * k * task.dim() as f64
}

/// Memory of one [`risk_grad`] call in f64 words: the table `A`, the summed `G`,
/// one `G` per chunk in flight, and the parameters and their gradient.
fn memory_words(task: &Task) -> f64 {
    let table = task.len() as f64 * task.n_w() as f64 * task.k() as f64;
    let in_flight = wave_len(task.k()) as f64;
    let params = task.n_params() as f64;
    table * (2.0 + in_flight) + 3.0 * params
}

/// Refuses an exact enumeration that would be too long or too large:
/// `Err(Error::OverBudget { what, work, budget })` when [`work`]`(task) > budget`
/// (also when `budget` is NaN or the work infinite), or — with `what` saying so
/// and `work`/`budget` counted in f64 words — when the `L x n_w x K` tables
/// (`A`, the summed `G`, one `G` per chunk in flight, whose number follows the
/// rayon thread count) would need more than 2 GiB.
/// Cheap (`O(1)`, no allocation); call it before [`risk`] / [`risk_grad`], which
/// do not check (an unchecked huge instance would just run for a very long time).
pub fn check_budget(task: &Task, budget: f64) -> Result<()> {
    let w = work(task);
    // Refuses NaN budgets and infinite (or NaN) work too.
    let within = matches!(
        w.partial_cmp(&budget),
        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
    );
    if !within {
        return Err(Error::OverBudget {
            what: format!(
                "exact limit risk (K = {}, s_c^L = {}^{}, n_w = {}, d = {})",
                task.k(),
                task.s_c(),
                task.len(),
                task.n_w(),
                task.dim()
            ),
            work: w,
            budget,
        });
    }
    let mem = memory_words(task);
    if mem > MAX_MEMORY_WORDS {
        return Err(Error::OverBudget {
            what: format!(
                "memory of the exact limit risk (f64 words of the L x n_w x K tables, \
                 L = {}, n_w = {}, K = {}, not operations)",
                task.len(),
                task.n_w(),
                task.k()
            ),
            work: mem,
            budget: MAX_MEMORY_WORDS,
        });
    }
    Ok(())
}

/// The exact limit risk
///
/// ```text
/// R(W,U) = (1/K) sum_k sum_{beta in [s_c]^L} (prod_l mu_{beta_l}) CE(h(x(z_k,beta)), k)
///          + (lambda_W/2)||W||_F^2 + (lambda_U/2)||U||_F^2,
/// ```
///
/// with `h_j(x) = sum_l <u_{j,l}, phi(w_{x_l})>`, `phi` = LayerNorm without affine
/// parameters (`eps = task.layer_norm`, biased variance) or the identity, classes
/// averaged, token choices summed with weights `prod_l mu_{beta_l}`.
///
/// Gray-code enumeration, `O(K)` per token choice (see the module doc); cost
/// about [`work`]. The caller checks [`check_budget`] first. Deterministic and
/// independent of the rayon thread count.
pub fn risk(task: &Task, p: &Params) -> f64 {
    assert_shape(task, p);
    let phi = features(p, task.norm());
    let table = Table::new(task, p, &phi);
    let chunks = chunk_ranges(task.k());
    let parts: Vec<f64> = map_chunks(task, &chunks, |lo, hi| {
        let mut scratch = Scratch::new(task, false);
        (lo..hi)
            .map(|k| class_sum::<false>(&table, k, &mut scratch, &mut []))
            .sum::<f64>()
    });
    let data: f64 = parts.iter().sum();
    data / task.k() as f64 + task.penalty(p)
}

/// A worst-case estimate, first order in the machine epsilon `eps`, of the
/// floating-point error of [`risk`] (and of the risk returned by [`risk_grad`])
/// at `p`, used to compare two computed risks honestly:
///
/// `e = eps ((REFRESH + 16 + s_c^L / 8 + K) (H + ln K) + 4 P)`,
///
/// where `H = L max_t ||phi(w_t)|| max_{j,l} ||u_{j,l}||` bounds every score
/// `|h_j|` (Cauchy–Schwarz) and `P` is the penalty. Each cross-entropy
/// `log sum_j exp(h_j) - h_k` is computed to a few `eps (H + ln K)`; the running
/// score sums of the Gray-code enumeration drift by at most `REFRESH eps H`
/// before they are recomputed; the weighted sums over the `s_c^L` token choices
/// (8 lanes) and the `K` classes (weights summing to 1) add at most
/// `(s_c^L / 8 + K) eps` times the largest term. The typical error is far
/// smaller. `inf` when a quantity overflows.
pub fn risk_error_bound(task: &Task, p: &Params) -> f64 {
    let phi = features(p, task.norm());
    let max_phi = phi
        .chunks(p.dim)
        .map(|r| network::dot(r, r).sqrt())
        .fold(0.0, f64::max);
    let max_u =
        p.u.chunks(p.dim)
            .map(|r| network::dot(r, r).sqrt())
            .fold(0.0, f64::max);
    let h = task.len() as f64 * max_phi * max_u;
    let pen = task.penalty(p);
    let leaves = (task.s_c() as f64).powi(task.len() as i32);
    let terms = REFRESH as f64 + 16.0 + leaves / 8.0 + task.k() as f64;
    let e = f64::EPSILON * (terms * (h + (task.k() as f64).ln()) + 4.0 * pen);
    if e.is_finite() {
        e
    } else {
        f64::INFINITY
    }
}

/// The exact limit risk `R(W,U)` of [`risk`] and its gradient, flat in the
/// [`Params::to_flat`] order `[dR/dW ; dR/dU]`.
///
/// `dR/dU_{j,l} = (1/K) sum_k sum_beta P(beta) (softmax_j(h) - [j = k]) phi(w_{x_l})
/// + lambda_U u_{j,l}`, and `dR/dW` is the chain rule of the same through `phi`
/// (LayerNorm backward, `eps = task.layer_norm`) plus `lambda_W W`.
///
/// Gray-code enumeration with prefix sums, `O(K)` per token choice (see the module
/// doc); cost about [`work`]. The caller checks [`check_budget`] first.
/// Deterministic and independent of the rayon thread count.
pub fn risk_grad(task: &Task, p: &Params) -> (f64, Vec<f64>) {
    assert_shape(task, p);
    let phi = features(p, task.norm());
    let table = Table::new(task, p, &phi);
    let (data, g_total) = gradient_table(task, &table);

    // dR/dA = G / K, then the two dense products.
    let (k_n, len, d, n_w) = (task.k(), task.len(), task.dim(), task.n_w());
    let inv_k = 1.0 / k_n as f64;
    let mut g_u = vec![0.0; p.u.len()];
    let mut g_phi = vec![0.0; phi.len()];
    for l in 0..len {
        for t in 0..n_w {
            let row = &g_total[(l * n_w + t) * k_n..(l * n_w + t + 1) * k_n];
            let phi_t = &phi[t * d..(t + 1) * d];
            let gphi_t = &mut g_phi[t * d..(t + 1) * d];
            for (j, &gj) in row.iter().enumerate() {
                if gj == 0.0 {
                    continue;
                }
                let g = gj * inv_k;
                let off = (j * len + l) * d;
                let gu = &mut g_u[off..off + d];
                let u = &p.u[off..off + d];
                for c in 0..d {
                    gu[c] += g * phi_t[c];
                    gphi_t[c] += g * u[c];
                }
            }
        }
    }
    (
        data / k_n as f64 + task.penalty(p),
        network::finish_gradient(task, p, g_phi, g_u),
    )
}

/// The data part of the risk summed over classes, `sum_k sum_beta P(beta) CE`,
/// and the gradient table `G` (layout of `A`, summed over classes), so that
/// `dR/dA = G / K`: the class passes in fixed chunks, computed [`wave_len`] at a
/// time and added in chunk order.
fn gradient_table(task: &Task, table: &Table) -> (f64, Vec<f64>) {
    let chunks = chunk_ranges(task.k());
    let size = table.a.len();
    let mut g_total = vec![0.0; size];
    let mut data = 0.0;
    for wave in chunks.chunks(wave_len(task.k())) {
        let parts: Vec<(f64, Vec<f64>)> = map_chunks(task, wave, |lo, hi| {
            let mut scratch = Scratch::new(task, true);
            let mut g = vec![0.0; size];
            let r = (lo..hi)
                .map(|k| class_sum::<true>(table, k, &mut scratch, &mut g))
                .sum::<f64>();
            (r, g)
        });
        for (r, g) in parts {
            data += r;
            for (acc, x) in g_total.iter_mut().zip(&g) {
                *acc += x;
            }
        }
    }
    (data, g_total)
}

/// The same `R(W,U)` as [`risk`], evaluated directly for tests: `beta` in
/// lexicographic order (position `L-1` fastest), every score vector built from
/// scratch with [`network::scores`], `CE` by [`log_sum_exp`], weights
/// `prod_l mu_{beta_l}`, mean over classes, plus the weight-decay penalty.
/// Cost `O(K * s_c^L * K L d)`, sequential.
pub fn risk_naive(task: &Task, p: &Params) -> f64 {
    assert_shape(task, p);
    let phi = features(p, task.norm());
    let (len, s_c) = (task.len(), task.s_c());
    let leaves = n_leaves(task);
    let mut beta = vec![0usize; len];
    let mut sentence = vec![0u32; len];
    let mut data = 0.0;
    for k in 0..task.k() {
        let z = task.z_of(k);
        let mut class = 0.0;
        for idx in 0..leaves {
            let mut r = idx;
            for l in (0..len).rev() {
                beta[l] = r % s_c;
                r /= s_c;
            }
            for l in 0..len {
                sentence[l] = task.token(z[l], beta[l]) as u32;
            }
            let weight: f64 = beta.iter().map(|&b| task.mu()[b]).product();
            let h = network::scores(p, &phi, &sentence);
            class += weight * (log_sum_exp(&h) - h[k]);
        }
        data += class;
    }
    data / task.k() as f64 + task.penalty(p)
}

/// Panics with a clear message when `p` is not shaped for `task`.
fn assert_shape(task: &Task, p: &Params) {
    assert!(
        p.n_w == task.n_w()
            && p.k == task.k()
            && p.len == task.len()
            && p.dim == task.dim()
            && p.w.len() == task.n_w() * task.dim()
            && p.u.len() == task.k() * task.len() * task.dim()
            && p.gain.len() + p.bias.len() == task.norm().n_affine(task.dim()),
        "parameters shaped (n_w {}, K {}, L {}, d {}) do not fit the task (n_w {}, K {}, L {}, d {})",
        p.n_w,
        p.k,
        p.len,
        p.dim,
        task.n_w(),
        task.k(),
        task.len(),
        task.dim()
    );
}

/// `s_c^L` as a `usize` (callers have checked the budget, so it fits).
fn n_leaves(task: &Task) -> usize {
    task.s_c()
        .checked_pow(task.len() as u32)
        .expect("s_c^L overflows usize: call check_budget first")
}

/// Fixed class chunks `[lo, hi)`: at most [`N_CHUNKS`], independent of threads.
fn chunk_ranges(k: usize) -> Vec<(usize, usize)> {
    let n = N_CHUNKS.min(k).max(1);
    let len = k.div_ceil(n).max(1);
    (0..k)
        .step_by(len)
        .map(|lo| (lo, (lo + len).min(k)))
        .collect()
}

/// Below this [`work`] the chunks run on the calling thread (rayon's start-up
/// would cost more than it saves); the result is the same either way.
const PARALLEL_WORK: f64 = 2e5;

/// `f(lo, hi)` for every chunk, in chunk order; in parallel for large tasks.
fn map_chunks<T, F>(task: &Task, chunks: &[(usize, usize)], f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize, usize) -> T + Sync,
{
    if work(task) < PARALLEL_WORK {
        chunks.iter().map(|&(lo, hi)| f(lo, hi)).collect()
    } else {
        chunks.par_iter().map(|&(lo, hi)| f(lo, hi)).collect()
    }
}

/// Number of chunks computed at once by [`risk_grad`] (bounds its memory; does
/// not change the result).
fn wave_len(k: usize) -> usize {
    (2 * rayon::current_num_threads()).clamp(1, N_CHUNKS.min(k).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Freq, TaskConfig};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A small task (shared by the tests of the submodules).
    pub(super) fn task(
        s_c: usize,
        len: usize,
        classes: Option<usize>,
        ln: Option<f64>,
        freq: Freq,
    ) -> Task {
        TaskConfig {
            n_c: 3,
            s_c,
            len,
            dim: 4,
            classes,
            freq,
            layer_norm: ln,
            norm: None,
            lambda_affine: None,
            lambda_w: 0.01,
            lambda_u: 0.02,
            seed: 5,
            latent: None,
        }
        .build()
        .unwrap()
    }

    #[test]
    fn gray_risk_matches_naive_with_refreshes() {
        // s_c^L = 729 > REFRESH, so several blocks are used.
        let zipf = Freq::Zipf { exponent: 1.0 };
        for (t, scale) in [
            (task(3, 6, Some(7), None, zipf), 1.0),
            (task(3, 6, Some(5), Some(1e-5), Freq::Uniform), 2.0),
            (task(2, 3, None, None, zipf), 0.5),
        ] {
            let mut rng = ChaCha8Rng::seed_from_u64(11);
            let p = Params::random(&t, scale, &mut rng);
            let r = risk(&t, &p);
            let (rg, _) = risk_grad(&t, &p);
            let rn = risk_naive(&t, &p);
            assert!((r - rn).abs() <= 1e-13 * rn.abs(), "{r} vs naive {rn}");
            assert_eq!(r.to_bits(), rg.to_bits(), "risk and risk_grad agree");
        }
    }

    #[test]
    fn result_is_independent_of_thread_count() {
        let t = task(3, 4, None, Some(1e-5), Freq::Zipf { exponent: 1.0 });
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let p = Params::random(&t, 1.0, &mut rng);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| (risk(&t, &p), risk_grad(&t, &p)))
        };
        let (r1, (rg1, g1)) = run(1);
        for threads in [2, 3] {
            let (r, (rg, g)) = run(threads);
            assert_eq!(r.to_bits(), r1.to_bits());
            assert_eq!(rg.to_bits(), rg1.to_bits());
            assert!(g.iter().zip(&g1).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn budget_counts_the_enumeration() {
        let t = task(3, 4, None, None, Freq::Uniform);
        let w = work(&t);
        assert!(w >= 81.0 * 81.0 * 81.0);
        assert!(check_budget(&t, w).is_ok());
        match check_budget(&t, w * 0.5) {
            Err(Error::OverBudget { work, .. }) => assert_eq!(work, w),
            other => panic!("expected OverBudget, got {other:?}"),
        }
        assert!(check_budget(&t, f64::NAN).is_err());
    }
}
