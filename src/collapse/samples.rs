//! The weighted `(class, beta)` points over which the type-III latent-set and
//! mean-field forms take their expectation over `beta`: an exact enumeration
//! when small, else a seeded Latin-hypercube sample (module docs of [`super`]).

use super::Form;
use crate::error::{Error, Result};
use crate::task::Task;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

/// Weighted `(class, beta)` points standing for `(1/K) sum_k E_beta` (latent set)
/// or `E_beta` (mean field).
#[derive(Debug, Clone)]
pub(super) struct RankSamples {
    pub(super) len: usize,
    /// `n x L` ranks.
    pub(super) ranks: Vec<u32>,
    /// Class of each point (latent set only).
    pub(super) class: Vec<u32>,
    pub(super) weight: Vec<f64>,
    pub(super) sampled: bool,
    /// Row-major `K x K` difference masks `bit l of masks[k K + j] = [z_{j,l} != z_{k,l}]`
    /// (latent set with `K <= 2048`; empty otherwise, then computed on the fly).
    pub(super) masks: Vec<u64>,
}

/// Bit `l` set when `z_{j,l} != z_{k,l}` (`L <= 64`).
pub(super) fn diff_mask(zj: &[u32], zk: &[u32]) -> u64 {
    zj.iter()
        .zip(zk)
        .enumerate()
        .fold(0u64, |m, (l, (a, b))| m | (((a != b) as u64) << l))
}

impl RankSamples {
    pub(super) fn n(&self) -> usize {
        self.weight.len()
    }

    /// Builds the points for `form` (`LatentSet` on a drawn latent set, or
    /// `MeanField`). Seeded by `task.seed`.
    pub(super) fn of(task: &Task, form: Form) -> Result<Self> {
        let (s_c, len, k) = (task.s_c() as f64, task.len(), task.k());
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
                    weight
                        .push(beta.iter().map(|&b| task.mu()[b]).product::<f64>() / classes as f64);
                    // lexicographic successor (last position fastest)
                    for l in (0..len).rev() {
                        beta[l] += 1;
                        if beta[l] < task.s_c() {
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
        let mut rng = ChaCha8Rng::seed_from_u64(task.seed());
        let mut cdf: Vec<f64> = task
            .mu()
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
    if !latent || task.k() > 2048 {
        return Vec::new();
    }
    let len = task.len();
    let z32: Vec<u32> = task.z().iter().map(|&a| a as u32).collect();
    let mut out = Vec::with_capacity(task.k() * task.k());
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
