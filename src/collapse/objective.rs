//! The reduced objectives of the three forms (module docs of [`super`]): the
//! loss along `x_beta = b r_beta` — closed form for the full latent set,
//! distance histograms for equal `x` on a drawn latent set, the mean-field
//! product — plus the penalties, and the task constants they share.

use super::expectation::eval_samples;
use super::samples::RankSamples;
use super::{CollapseType, Form};
use crate::error::{Error, Result};
use crate::task::Task;

/// Largest `K^2 L` for the distance histograms.
const HISTOGRAM_WORK: f64 = 2e10;

/// `log(1 + e^z)`, stably.
pub(super) fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// `1/(1 + e^{-z})`, stably.
pub(super) fn logistic(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Constants of a task.
#[derive(Debug, Clone, Copy)]
pub(super) struct Consts {
    pub(super) n_c: f64,
    pub(super) kappa: f64,
    pub(super) q: f64,
    pub(super) p: f64,
    pub(super) len: f64,
    pub(super) k: f64,
    pub(super) ln_nc1: f64,
}

impl Consts {
    pub(super) fn of(task: &Task) -> Self {
        let n_c = task.n_c() as f64;
        Consts {
            n_c,
            kappa: n_c / (n_c - 1.0),
            q: 1.0 / n_c,
            p: 1.0 - 1.0 / n_c,
            len: task.len() as f64,
            k: task.k() as f64,
            ln_nc1: (n_c - 1.0).ln(),
        }
    }

    /// Full-form per-position loss `log(1 + (n_c-1) e^{-kappa x})` and
    /// `sigma(x) = (n_c-1) e^{-kappa x} / (1 + (n_c-1) e^{-kappa x})`.
    pub(super) fn full_term(&self, x: f64) -> (f64, f64) {
        let z = self.ln_nc1 - self.kappa * x;
        (softplus(z), logistic(z))
    }

    /// `g(x) = log(q + p e^{-kappa x})` with `g'` and `g''` (mean-field factor).
    pub(super) fn mean_field_factor(&self, x: f64) -> [f64; 3] {
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
pub(super) struct Histograms {
    len: usize,
    ln_counts: Vec<f64>,
    weights: Vec<f64>,
}

impl Histograms {
    fn of(task: &Task) -> Result<Self> {
        let len = task.len();
        let m1 = len + 1;
        if task.full_latent() {
            // n[m] = C(L, m) (n_c-1)^m for every k.
            let mut ln_counts = vec![f64::NEG_INFINITY; m1];
            let mut binom = 1.0f64;
            for (m, v) in ln_counts.iter_mut().enumerate() {
                if m > 0 {
                    binom = binom * (len + 1 - m) as f64 / m as f64;
                    *v = binom.ln() + m as f64 * ((task.n_c() - 1) as f64).ln();
                }
            }
            return Ok(Histograms {
                len,
                ln_counts,
                weights: vec![1.0],
            });
        }
        let k = task.k();
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
pub(super) enum Loss1d {
    Full,
    Latent(Histograms),
    MeanField,
}

impl Loss1d {
    pub(super) fn new(task: &Task, form: Form) -> Result<Self> {
        Ok(match form {
            Form::Full => Loss1d::Full,
            Form::LatentSet if task.full_latent() => Loss1d::Full,
            Form::LatentSet => Loss1d::Latent(Histograms::of(task)?),
            Form::MeanField => Loss1d::MeanField,
        })
    }

    pub(super) fn eval(&self, cs: &Consts, c: f64) -> [f64; 3] {
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

/// True when `form` reduces to the factorised full-latent-set objective.
pub(super) fn factorises(task: &Task, form: Form) -> bool {
    form == Form::Full || (form == Form::LatentSet && task.full_latent())
}

/// Refuses the full form without the full latent set.
pub(super) fn check_form(task: &Task, form: Form) -> Result<()> {
    if form == Form::Full && !task.full_latent() {
        return Err(Error::invalid(
            "form",
            form,
            "the full form needs the full latent set (K = n_c^L, no --classes)",
        ));
    }
    Ok(())
}

/// Penalty of a collapsed configuration: `(lambda_W/2) n_c sum_beta r_beta^2 +
/// (lambda_U/2) K L b^2` for types I/III, `(lambda_U/2) K L b^2` for type II.
/// A zero norm costs exactly 0, whatever the weight decay (no `inf * 0`).
pub(super) fn penalty(task: &Task, kind: CollapseType, r: &[f64], b: f64) -> f64 {
    let half = |lambda: f64, count: f64, sq: f64| {
        if sq == 0.0 {
            0.0
        } else {
            0.5 * lambda * count * sq
        }
    };
    let u = half(task.lambda_u(), (task.k() * task.len()) as f64, b * b);
    match kind {
        CollapseType::II => u,
        _ => {
            let sq = r.iter().map(|v| v * v).sum::<f64>();
            half(task.lambda_w(), task.n_c() as f64, sq) + u
        }
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
/// forms use the same exact enumeration or seeded sample as
/// [`predict`](super::predict).
/// Errors: `form` (full form without the full latent set), `r` (wrong length,
/// or unequal for types I/II).
pub fn reduced_risk(task: &Task, form: Form, kind: CollapseType, r: &[f64], b: f64) -> Result<f64> {
    check_form(task, form)?;
    if r.len() != task.s_c() {
        return Err(Error::invalid(
            "r",
            r.len(),
            format!("needs s_c = {} entries", task.s_c()),
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
                .mu()
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

/// The critical-point system of docs/theory.md §4 (full latent set, type III), with
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
    for (&rb, &m) in r.iter().zip(task.mu()) {
        let (_, s) = cs.full_term(b * rb);
        out.push(task.lambda_w() * cs.n_c * rb - cs.len * cs.kappa * b * m * s);
        acc += m * rb * s;
    }
    out.push(task.lambda_u() * cs.k * b - cs.kappa * acc);
    out
}
