//! The exact large-sample limit risk of THEORY §2 and its gradient.
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

use crate::error::{Error, Result};
use crate::network::{self, dot, features, features_backward, log_sum_exp, Params};
use crate::task::Task;
use rayon::prelude::*;

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
    let k = task.k as f64;
    let len = task.len as f64;
    let leaves = (task.s_c as f64).powf(len);
    k * leaves * (k + len) + 3.0 * len * task.n_w as f64 * k * task.dim as f64
}

/// Memory of one [`risk_grad`] call in f64 words: the table `A`, the summed `G`,
/// one `G` per chunk in flight, and the parameters and their gradient.
fn memory_words(task: &Task) -> f64 {
    let table = task.len as f64 * task.n_w as f64 * task.k as f64;
    let in_flight = wave_len(task.k) as f64;
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
                task.k, task.s_c, task.len, task.n_w, task.dim
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
                task.len, task.n_w, task.k
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
    let phi = features(p, task.layer_norm);
    let table = Table::new(task, p, &phi);
    let chunks = chunk_ranges(task.k);
    let parts: Vec<f64> = map_chunks(task, &chunks, |lo, hi| {
        let mut scratch = Scratch::new(task, false);
        (lo..hi)
            .map(|k| class_sum::<false>(&table, k, &mut scratch, &mut []))
            .sum::<f64>()
    });
    let data: f64 = parts.iter().sum();
    data / task.k as f64 + p.penalty(task.lambda_w, task.lambda_u)
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
    let phi = features(p, task.layer_norm);
    let table = Table::new(task, p, &phi);
    let chunks = chunk_ranges(task.k);
    let size = table.a.len();
    let mut g_total = vec![0.0; size];
    let mut data = 0.0;
    for wave in chunks.chunks(wave_len(task.k)) {
        let parts: Vec<(f64, Vec<f64>)> = map_chunks(task, wave, |lo, hi| {
            let mut scratch = Scratch::new(task, true);
            let mut g = vec![0.0; size];
            let r = (lo..hi)
                .map(|k| class_sum::<true>(&table, k, &mut scratch, &mut g))
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

    // dR/dA = G / K, then the two dense products.
    let (k_n, len, d, n_w) = (task.k, task.len, task.dim, task.n_w);
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
    let mut g_w = features_backward(p, task.layer_norm, g_phi);
    for (gw, w) in g_w.iter_mut().zip(&p.w) {
        *gw += task.lambda_w * w;
    }
    for (gu, u) in g_u.iter_mut().zip(&p.u) {
        *gu += task.lambda_u * u;
    }
    g_w.extend_from_slice(&g_u);
    (
        data / k_n as f64 + p.penalty(task.lambda_w, task.lambda_u),
        g_w,
    )
}

/// The same `R(W,U)` as [`risk`], evaluated directly for tests: `beta` in
/// lexicographic order (position `L-1` fastest), every score vector built from
/// scratch with [`network::scores`], `CE` by [`log_sum_exp`], weights
/// `prod_l mu_{beta_l}`, mean over classes, plus the weight-decay penalty.
/// Cost `O(K * s_c^L * K L d)`, sequential.
pub fn risk_naive(task: &Task, p: &Params) -> f64 {
    assert_shape(task, p);
    let phi = features(p, task.layer_norm);
    let (len, s_c) = (task.len, task.s_c);
    let leaves = n_leaves(task);
    let mut beta = vec![0usize; len];
    let mut sentence = vec![0u32; len];
    let mut data = 0.0;
    for k in 0..task.k {
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
            let weight: f64 = beta.iter().map(|&b| task.mu[b]).product();
            let h = network::scores(p, &phi, &sentence);
            class += weight * (log_sum_exp(&h) - h[k]);
        }
        data += class;
    }
    data / task.k as f64 + p.penalty(task.lambda_w, task.lambda_u)
}

/// The limit risk as an argmin problem over the flat parameters `[W ; U]`:
/// cost [`risk`] and gradient [`risk_grad`] of `shape.with_flat(x)`.
/// Check [`check_budget`] before optimising.
pub struct LimitProblem<'a> {
    /// The task (sizes, `mu`, LayerNorm, weight decay, latent variables).
    pub task: &'a Task,
    /// Any parameters of the right shape; only the sizes are used.
    pub shape: Params,
}

impl LimitProblem<'_> {
    fn params(&self, x: &[f64]) -> std::result::Result<Params, argmin::core::Error> {
        let n = self.shape.w.len() + self.shape.u.len();
        if x.len() != n {
            return Err(argmin::core::Error::msg(format!(
                "flat parameter vector has length {}, expected {n}",
                x.len()
            )));
        }
        Ok(self.shape.with_flat(x))
    }
}

impl argmin::core::CostFunction for LimitProblem<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    /// [`risk`] at `shape.with_flat(x)`.
    fn cost(&self, x: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        Ok(risk(self.task, &self.params(x)?))
    }
}

impl argmin::core::Gradient for LimitProblem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    /// The gradient part of [`risk_grad`] at `shape.with_flat(x)`.
    fn gradient(&self, x: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(risk_grad(self.task, &self.params(x)?).1)
    }
}

// ---------------------------------------------------------------------------
// Internals.

/// Panics with a clear message when `p` is not shaped for `task`.
fn assert_shape(task: &Task, p: &Params) {
    assert!(
        p.n_w == task.n_w
            && p.k == task.k
            && p.len == task.len
            && p.dim == task.dim
            && p.w.len() == task.n_w * task.dim
            && p.u.len() == task.k * task.len * task.dim,
        "parameters shaped (n_w {}, K {}, L {}, d {}) do not fit the task (n_w {}, K {}, L {}, d {})",
        p.n_w,
        p.k,
        p.len,
        p.dim,
        task.n_w,
        task.k,
        task.len,
        task.dim
    );
}

/// `s_c^L` as a `usize` (callers have checked the budget, so it fits).
fn n_leaves(task: &Task) -> usize {
    task.s_c
        .checked_pow(task.len as u32)
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

/// The table `A_l[t, j] = <u_{j,l}, phi(w_t)>`, with what the per-class pass needs.
struct Table<'a> {
    task: &'a Task,
    /// `a[(l n_w + t) K + j]`.
    a: Vec<f64>,
}

impl<'a> Table<'a> {
    fn new(task: &'a Task, p: &Params, phi: &[f64]) -> Self {
        let (k_n, len, d, n_w) = (task.k, task.len, task.dim, task.n_w);
        let mut a = vec![0.0; len * n_w * k_n];
        for (lt, row) in a.chunks_mut(k_n).enumerate() {
            let (l, t) = (lt / n_w, lt % n_w);
            let phi_t = &phi[t * d..(t + 1) * d];
            for (j, x) in row.iter_mut().enumerate() {
                *x = dot(p.u_block(j, l), phi_t);
            }
        }
        Table { task, a }
    }

    /// Offset of the `K`-vector of position `l`, rank `b` for class `k`.
    #[inline]
    fn row(&self, k: usize, l: usize, b: usize) -> usize {
        let t = self.task.z[k * self.task.len + l] * self.task.s_c + b;
        (l * self.task.n_w + t) * self.task.k
    }
}

/// Per-worker buffers of the class pass.
struct Scratch {
    gray: Gray,
    h: Vec<f64>,
    e: Vec<f64>,
    s: Vec<f64>,
    s_last: Vec<f64>,
}

impl Scratch {
    fn new(task: &Task, grad: bool) -> Self {
        let kk = task.k;
        let g = if grad { kk } else { 0 };
        Scratch {
            gray: Gray::new(task.len, task.s_c),
            h: vec![0.0; kk],
            e: vec![0.0; kk],
            s: vec![0.0; g],
            s_last: vec![0.0; g * task.len],
        }
    }
}

/// `sum_beta P(beta) CE(h(x(z_k, beta)), k)` for one class; with `GRAD` also adds
/// `sum_beta P(beta) [beta_l -> t] (softmax(h) - e_k)` into `g` (layout of `A`).
///
/// Dispatches at run time to a copy compiled for AVX-512 or AVX2 (with FMA) when
/// the CPU has it. Every copy performs the same IEEE operations in the same order
/// (explicit fused multiply-adds only, which are correctly rounded in hardware and
/// in the portable `f64::mul_add`; fixed 8-lane partial sums), so the result is
/// bitwise the same whichever copy runs.
fn class_sum<const GRAD: bool>(table: &Table, k: usize, sc: &mut Scratch, g: &mut [f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let fma = std::arch::is_x86_feature_detected!("fma");
        if fma && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked just above).
            return unsafe { class_sum_avx512::<GRAD>(table, k, sc, g) };
        }
        if fma && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { class_sum_avx2::<GRAD>(table, k, sc, g) };
        }
    }
    class_sum_impl::<GRAD>(table, k, sc, g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn class_sum_avx512<const GRAD: bool>(
    table: &Table,
    k: usize,
    sc: &mut Scratch,
    g: &mut [f64],
) -> f64 {
    class_sum_impl::<GRAD>(table, k, sc, g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn class_sum_avx2<const GRAD: bool>(
    table: &Table,
    k: usize,
    sc: &mut Scratch,
    g: &mut [f64],
) -> f64 {
    class_sum_impl::<GRAD>(table, k, sc, g)
}

#[inline(always)]
fn class_sum_impl<const GRAD: bool>(
    table: &Table,
    k: usize,
    sc: &mut Scratch,
    g: &mut [f64],
) -> f64 {
    let task = table.task;
    let (kk, len, mu) = (task.k, task.len, &task.mu[..]);
    let a = &table.a[..];
    let Scratch {
        gray,
        h,
        e,
        s,
        s_last,
    } = sc;
    gray.reset();
    if GRAD {
        s.fill(0.0);
        s_last.fill(0.0);
    }

    // Invariants at a leaf: h = scores, e = exp(h - shift), sum = sum_j e_j,
    // m = max_j h_j, |m - shift| <= SHIFT_SLACK.
    recompute(table, k, h, &gray.digits);
    let mut m = lanes_max(h);
    let mut shift = m;
    let mut sum = exp_store(h, shift, e);
    let mut total = 0.0;
    let mut in_block = 0usize;
    loop {
        // Visit the leaf: P(beta) CE(h, k).
        let weight: f64 = gray.digits.iter().map(|&b| mu[b]).product();
        total += weight * (shift + sum.ln() - h[k]);
        in_block += 1;
        // The leaf's share of the gradient is c e = P(beta) softmax(h).
        let c = weight / sum;

        let step = gray.next();
        match step {
            Some((l, old, new)) if in_block < REFRESH => {
                // One sweep: finish this leaf (S += c e, flush position l leaving
                // token `old`), move h to the next leaf, exponentiate with the
                // previous maximum as shift.
                let (o_old, o_new) = (table.row(k, l, old), table.row(k, l, new));
                shift = m;
                let row = if GRAD { o_old } else { 0 };
                let (next_sum, next_m) = sweep::<GRAD>(
                    Sweep {
                        h,
                        e,
                        s,
                        last: if GRAD {
                            &mut s_last[l * kk..(l + 1) * kk]
                        } else {
                            &mut []
                        },
                        g_row: if GRAD { &mut g[row..row + kk] } else { &mut [] },
                    },
                    &a[o_new..o_new + kk],
                    &a[o_old..o_old + kk],
                    c,
                    shift,
                );
                sum = next_sum;
                m = next_m;
                if (m - shift).abs() > SHIFT_SLACK {
                    // Rare: the maximum moved far; exponentiate again around it.
                    shift = m;
                    sum = exp_store(h, shift, e);
                }
            }
            _ => {
                // End of a block (or of the enumeration).
                if GRAD {
                    axpy(s, c, e);
                    // Flush every position at the tokens of the leaf just visited.
                    for (l, &b) in gray.digits.iter().enumerate() {
                        let b = match step {
                            Some((pos, old, _)) if pos == l => old,
                            _ => b,
                        };
                        flush(g, s, s_last, table.row(k, l, b), l);
                    }
                    s.fill(0.0);
                    s_last.fill(0.0);
                }
                if step.is_none() {
                    break;
                }
                in_block = 0;
                recompute(table, k, h, &gray.digits);
                m = lanes_max(h);
                shift = m;
                sum = exp_store(h, shift, e);
            }
        }
    }
    if GRAD {
        // The -e_k part: position l holds rank b with total weight mu_b.
        for l in 0..len {
            for (b, &m_b) in mu.iter().enumerate() {
                g[table.row(k, l, b) + k] -= m_b;
            }
        }
    }
    total
}

/// Largest allowed `|max h - shift|` in `e = exp(h - shift)`: keeps `sum e` far
/// from overflow (`K e^600` is finite for any `K`) and the leading terms far from
/// underflow.
const SHIFT_SLACK: f64 = 600.0;

/// Elements per tile of [`sweep`]: its streams stay in L1 while the tile's
/// partial sums and maxima are taken.
const TILE: usize = 512;

/// The mutable `K`-vectors of one [`sweep`]; `last` and `g_row` are empty
/// without gradient.
struct Sweep<'a> {
    h: &'a mut [f64],
    e: &'a mut [f64],
    s: &'a mut [f64],
    last: &'a mut [f64],
    g_row: &'a mut [f64],
}

/// One Gray step in a single pass over the `K`-vectors, tile by tile:
/// with `GRAD`, `S += c e; G_row += S - S_last; S_last = S` (the leaf just
/// visited); then `h += a_new - a_old` and `e = exp(h - shift)` (the next leaf).
/// Returns `(sum_j e_j, max_j h_j)` of the next leaf, both in [`LANES`] lanes.
#[inline(always)]
fn sweep<const GRAD: bool>(
    v: Sweep,
    a_new: &[f64],
    a_old: &[f64],
    c: f64,
    shift: f64,
) -> (f64, f64) {
    let kk = v.h.len();
    let mut acc_sum = [0.0; LANES];
    let mut acc_max = [f64::NEG_INFINITY; LANES];
    let mut t0 = 0;
    while t0 < kk {
        let t1 = (t0 + TILE).min(kk);
        let h = &mut v.h[t0..t1];
        let e = &mut v.e[t0..t1];
        let an = &a_new[t0..t1];
        let ao = &a_old[t0..t1];
        if GRAD {
            let s = &mut v.s[t0..t1];
            let last = &mut v.last[t0..t1];
            let gr = &mut v.g_row[t0..t1];
            for ((((ex, sx), lx), gx), ((hx, nx), ox)) in e
                .iter_mut()
                .zip(s.iter_mut())
                .zip(last.iter_mut())
                .zip(gr.iter_mut())
                .zip(h.iter_mut().zip(an).zip(ao))
            {
                let sv = c.mul_add(*ex, *sx);
                *sx = sv;
                *gx += sv - *lx;
                *lx = sv;
                let hv = *hx + (nx - ox);
                *hx = hv;
                *ex = exp_bounded(hv - shift);
            }
        } else {
            for ((ex, hx), (nx, ox)) in e.iter_mut().zip(h.iter_mut()).zip(an.iter().zip(ao)) {
                let hv = *hx + (nx - ox);
                *hx = hv;
                *ex = exp_bounded(hv - shift);
            }
        }
        lanes_add(&mut acc_sum, e);
        lanes_max_into(&mut acc_max, h);
        t0 = t1;
    }
    (lanes_total(&acc_sum), lanes_fold_max(&acc_max))
}

/// `h = sum_l A_l[z_{k,l} s_c + beta_l, :]`, summed in position order (the same
/// order and values as [`network::scores`]).
#[inline(always)]
fn recompute(table: &Table, k: usize, h: &mut [f64], digits: &[usize]) {
    let kk = h.len();
    let a = &table.a[..];
    let off = table.row(k, 0, digits[0]);
    h.copy_from_slice(&a[off..off + kk]);
    for (l, &b) in digits.iter().enumerate().skip(1) {
        let off = table.row(k, l, b);
        for (x, y) in h.iter_mut().zip(&a[off..off + kk]) {
            *x += y;
        }
    }
}

/// Prefix-sum flush of position `l` leaving the row at `off`:
/// `G[off..] += S - S_last_l; S_last_l = S`.
#[inline(always)]
fn flush(g: &mut [f64], s: &[f64], s_last: &mut [f64], off: usize, l: usize) {
    let kk = s.len();
    let last = &mut s_last[l * kk..(l + 1) * kk];
    for ((gx, sx), lx) in g[off..off + kk].iter_mut().zip(s).zip(last.iter_mut()) {
        *gx += *sx - *lx;
        *lx = *sx;
    }
}

/// `y += c x` (fused multiply-add).
#[inline(always)]
fn axpy(y: &mut [f64], c: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = c.mul_add(*xi, *yi);
    }
}

/// Number of independent partial sums / maxima in the vector kernels. Fixed, so
/// the summation order does not depend on the SIMD width.
const LANES: usize = 8;

/// Pairwise total of the lanes, in a fixed order.
#[inline(always)]
fn lanes_total(acc: &[f64; LANES]) -> f64 {
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

#[inline(always)]
fn lanes_fold_max(acc: &[f64; LANES]) -> f64 {
    acc.iter()
        .fold(f64::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// `acc[i] += x[8 q + i]` (the tail goes to the first lanes). Callers pass
/// slices that start at a multiple of [`LANES`], so the lanes always hold the same
/// elements.
#[inline(always)]
fn lanes_add(acc: &mut [f64; LANES], x: &[f64]) {
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    for (i, &v) in rest.iter().enumerate() {
        acc[i] += v;
    }
}

/// `acc[i] = max(acc[i], x[8 q + i])`, like [`lanes_add`].
#[inline(always)]
fn lanes_max_into(acc: &mut [f64; LANES], x: &[f64]) {
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    for (i, &v) in rest.iter().enumerate() {
        acc[i] = if v > acc[i] { v } else { acc[i] };
    }
}

/// `max_j h_j` (exact whatever the order).
#[inline(always)]
fn lanes_max(h: &[f64]) -> f64 {
    let mut acc = [f64::NEG_INFINITY; LANES];
    lanes_max_into(&mut acc, h);
    lanes_fold_max(&acc)
}

/// `e_j = exp(h_j - shift)`, returns `sum_j e_j` summed in [`LANES`] partial sums
/// in a fixed order.
#[inline(always)]
fn exp_store(h: &[f64], shift: f64, e: &mut [f64]) -> f64 {
    for (ex, &hx) in e.iter_mut().zip(h) {
        *ex = exp_bounded(hx - shift);
    }
    let mut acc = [0.0; LANES];
    lanes_add(&mut acc, e);
    lanes_total(&acc)
}

/// `exp(x)` for `x <= 700`, branch-free so that loops over it vectorise, within
/// about 1 ulp of `f64::exp` for `-708 <= x <= 700` (and below `1e-307` under
/// `-708`, where it only meets sums far larger).
///
/// `x = n ln 2 + r` with `n = round(x / ln 2)` (by the `1.5 * 2^52` shifter) and
/// `|r| <= ln(2)/2` (Cody-Waite split of `ln 2`), `exp(r)` by its Taylor
/// polynomial of degree 13 (truncation below `5e-18` relative) in Estrin's scheme
/// with fused multiply-adds, and `2^n` built in the exponent bits. NaN propagates.
#[inline(always)]
fn exp_bounded(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const SHIFTER: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
                                                  // C[i] = 1/i! (correctly rounded).
    const C: [f64; 14] = [
        1.0,
        1.0,
        0.5,
        1.666_666_666_666_666_6e-1,
        4.166_666_666_666_666_4e-2,
        8.333_333_333_333_333e-3,
        1.388_888_888_888_889e-3,
        1.984_126_984_126_984e-4,
        2.480_158_730_158_73e-5,
        2.755_731_922_398_589_3e-6,
        2.755_731_922_398_589e-7,
        2.505_210_838_544_172e-8,
        2.087_675_698_786_81e-9,
        1.605_904_383_682_161_3e-10,
    ];
    let x = if x < -708.0 { -708.0 } else { x };
    let t = x.mul_add(std::f64::consts::LOG2_E, SHIFTER);
    let n = t - SHIFTER;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let q0 = C[1].mul_add(r, C[0]);
    let q1 = C[3].mul_add(r, C[2]);
    let q2 = C[5].mul_add(r, C[4]);
    let q3 = C[7].mul_add(r, C[6]);
    let q4 = C[9].mul_add(r, C[8]);
    let q5 = C[11].mul_add(r, C[10]);
    let q6 = C[13].mul_add(r, C[12]);
    let s0 = q1.mul_add(r2, q0);
    let s1 = q3.mul_add(r2, q2);
    let s2 = q5.mul_add(r2, q4);
    let lo = s1.mul_add(r4, s0);
    let hi = q6.mul_add(r4, s2);
    let p = hi.mul_add(r8, lo);
    // 2^n: the low bits of t hold n; n + 1023 in [1, 1023] goes to the exponent.
    let scale = f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
    p * scale
}

/// Reflected mixed-radix Gray code over `[radix]^n` (Knuth, TAOCP 7.2.1.1,
/// algorithm H, loopless): starts at all zeros, every step changes one digit by ±1,
/// and every tuple is visited exactly once.
#[derive(Debug, Clone)]
struct Gray {
    digits: Vec<usize>,
    up: Vec<bool>,
    focus: Vec<usize>,
    radix: usize,
    done: bool,
}

impl Gray {
    fn new(n: usize, radix: usize) -> Self {
        let mut g = Gray {
            digits: vec![0; n],
            up: vec![true; n],
            focus: (0..=n).collect(),
            radix,
            done: false,
        };
        g.reset();
        g
    }

    fn reset(&mut self) {
        let n = self.digits.len();
        self.digits.fill(0);
        self.up.fill(true);
        for (j, f) in self.focus.iter_mut().enumerate() {
            *f = j;
        }
        // With one value per digit there is a single tuple.
        self.done = self.radix < 2 || n == 0;
    }

    /// Advances to the next tuple: `Some((position, old digit, new digit))`, or
    /// `None` once every tuple has been visited.
    fn next(&mut self) -> Option<(usize, usize, usize)> {
        if self.done {
            return None;
        }
        let n = self.digits.len();
        let j = self.focus[0];
        self.focus[0] = 0;
        if j == n {
            self.done = true;
            return None;
        }
        let old = self.digits[j];
        let new = if self.up[j] { old + 1 } else { old - 1 };
        self.digits[j] = new;
        if new == 0 || new == self.radix - 1 {
            self.up[j] = !self.up[j];
            self.focus[j] = self.focus[j + 1];
            self.focus[j + 1] = j + 1;
        }
        Some((j, old, new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Freq, TaskConfig};
    use argmin::core::{CostFunction, Executor, Gradient, TerminationReason, TerminationStatus};
    use argmin::solver::linesearch::MoreThuenteLineSearch;
    use argmin::solver::quasinewton::LBFGS;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::HashSet;

    #[test]
    fn gray_code_visits_every_tuple_once_changing_one_digit_by_one() {
        for (n, radix) in [
            (1, 2),
            (3, 2),
            (2, 3),
            (4, 3),
            (3, 4),
            (2, 5),
            (3, 1),
            (1, 1),
        ] {
            let mut g = Gray::new(n, radix);
            let mut seen = HashSet::new();
            seen.insert(g.digits.clone());
            let mut prev = g.digits.clone();
            while let Some((j, old, new)) = g.next() {
                assert_eq!(prev[j], old);
                assert_eq!(old.abs_diff(new), 1);
                assert!(new < radix);
                for (i, (a, b)) in prev.iter().zip(&g.digits).enumerate() {
                    if i != j {
                        assert_eq!(a, b);
                    }
                }
                assert!(seen.insert(g.digits.clone()), "tuple visited twice");
                prev = g.digits.clone();
            }
            assert_eq!(seen.len(), radix.pow(n as u32), "n {n} radix {radix}");
            assert!(g.next().is_none());
        }
    }

    fn task(s_c: usize, len: usize, classes: Option<usize>, ln: Option<f64>, freq: Freq) -> Task {
        TaskConfig {
            n_c: 3,
            s_c,
            len,
            dim: 4,
            classes,
            freq,
            layer_norm: ln,
            lambda_w: 0.01,
            lambda_u: 0.02,
            seed: 5,
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
    fn huge_scores_move_the_shift_and_stay_exact() {
        // Scores of order 1e3 jump by more than SHIFT_SLACK between leaves, so the
        // exponentials are re-centred; the risk must still match the naive one
        // and the gradient its finite differences.
        let t = task(3, 3, Some(4), None, Freq::Zipf { exponent: 1.0 });
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let p = Params::random(&t, 25.0, &mut rng);
        let phi = features(&p, t.layer_norm);
        let table = Table::new(&t, &p, &phi);
        let spread = table.a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(spread > 2.0 * SHIFT_SLACK, "scores too small: {spread}");
        let (r, g) = risk_grad(&t, &p);
        let rn = risk_naive(&t, &p);
        assert!((r - rn).abs() <= 1e-13 * rn.abs(), "{r} vs naive {rn}");
        let x0 = p.to_flat();
        for i in (0..x0.len()).step_by(5) {
            let h = 1e-7;
            let (mut xp, mut xm) = (x0.clone(), x0.clone());
            xp[i] += h;
            xm[i] -= h;
            let fd = (risk(&t, &p.with_flat(&xp)) - risk(&t, &p.with_flat(&xm))) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= 1e-5 * (1.0 + g[i].abs()),
                "{i}: {fd} vs {}",
                g[i]
            );
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
    fn fast_exp_is_within_two_ulp_of_std() {
        let mut worst: f64 = 0.0;
        for i in -2_000_000..=2_000_000 {
            let u = i as f64 / 2_000_000.0;
            // Dense near 0, covering [-708, 700].
            let x = if u < 0.0 {
                -708.0 * u * u
            } else {
                700.0 * u * u
            };
            let (a, b) = (exp_bounded(x), x.exp());
            worst = worst.max((a - b).abs() / b);
        }
        assert!(
            worst <= 2.0 * f64::EPSILON,
            "worst relative error {worst:e}"
        );
        assert_eq!(exp_bounded(0.0), 1.0);
        assert!(exp_bounded(-800.0) < 1e-306);
        assert!(exp_bounded(f64::NAN).is_nan());
    }

    #[test]
    fn vector_kernels_agree_with_the_portable_copy() {
        // The dispatched copy (AVX-512 / AVX2 when present) and the portable one
        // give the same bits.
        let t = task(3, 5, Some(13), Some(1e-5), Freq::Zipf { exponent: 1.0 });
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let p = Params::random(&t, 1.0, &mut rng);
        let phi = features(&p, t.layer_norm);
        let table = Table::new(&t, &p, &phi);
        for k in 0..t.k {
            let mut sc = Scratch::new(&t, true);
            let mut g1 = vec![0.0; table.a.len()];
            let mut g2 = g1.clone();
            let r1 = class_sum::<true>(&table, k, &mut sc, &mut g1);
            let r2 = class_sum_impl::<true>(&table, k, &mut sc, &mut g2);
            assert_eq!(r1.to_bits(), r2.to_bits());
            assert!(g1.iter().zip(&g2).all(|(a, b)| a.to_bits() == b.to_bits()));
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

    #[test]
    fn argmin_problem_rejects_wrong_length() {
        let t = task(2, 2, None, None, Freq::Uniform);
        let prob = LimitProblem {
            task: &t,
            shape: Params::zeros(&t),
        };
        assert!(prob.cost(&vec![0.0; 3]).is_err());
        assert!(prob.gradient(&vec![0.0; 3]).is_err());
    }

    #[test]
    fn lbfgs_converges_on_a_tiny_instance() {
        let t = TaskConfig {
            n_c: 2,
            s_c: 2,
            len: 2,
            dim: 2,
            classes: None,
            freq: Freq::Uniform,
            layer_norm: None,
            lambda_w: 0.05,
            lambda_u: 0.05,
            seed: 0,
        }
        .build()
        .unwrap();
        check_budget(&t, DEFAULT_WORK_BUDGET).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let x0 = Params::random(&t, 0.5, &mut rng).to_flat();
        let g0 = risk_grad(&t, &Params::zeros(&t).with_flat(&x0)).1;
        let prob = LimitProblem {
            task: &t,
            shape: Params::zeros(&t),
        };
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 7)
            .with_tolerance_grad(1e-8)
            .unwrap()
            .with_tolerance_cost(0.0)
            .unwrap();
        let res = Executor::new(prob, solver)
            .configure(|s| s.param(x0).max_iters(2000))
            .run()
            .unwrap();
        let state = res.state();
        assert_eq!(
            state.termination_status,
            TerminationStatus::Terminated(TerminationReason::SolverConverged)
        );
        let x = state.best_param.clone().unwrap();
        let g = risk_grad(&t, &Params::zeros(&t).with_flat(&x)).1;
        let norm = |v: &[f64]| dot(v, v).sqrt();
        assert!(norm(&g) < 1e-6, "gradient norm {}", norm(&g));
        assert!(norm(&g) < norm(&g0));
    }
}
