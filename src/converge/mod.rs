//! Finite-sample solutions against the limit: how the minimisers of the sample
//! risk (and SGD's solutions) approach the limit minimiser as `n_spl` grows.
//!
//! For one task small enough for the exact limit risk `R` ([`crate::limit`]):
//!
//! 1. the reference ([`Reference::of`]): the predicted collapsed configuration
//!    ([`crate::collapse::predict`] in the exact form, built on an equiangular
//!    frame) polished by L-BFGS on `R`; `R* = min(R(built), R(polished))`;
//! 2. for each `n_spl` and seed ([`run_one`]): `n_spl` sentences per class drawn
//!    from `mu` (the trainer's data recipe, so both solvers see the same sample),
//!    then either
//!    - **ERM**: L-BFGS (f64) on the sample risk
//!      `R_hat = sum_i pi_i CE(h(x_i), y_i) + (lambda_W/2)||W||^2 + (lambda_U/2)||U||^2`
//!      ([`crate::empirical`]) from a random start, or
//!    - **SGD**: the paper's f32 protocol ([`crate::train::Trainer`]) until the
//!      epoch loss changes by at most `rel_tol` over the last tenth of the epochs
//!      ([`sgd`]), with an epoch cap that is reported as *not converged*;
//! 3. at the solution `theta` ([`measure`]): the excess limit risk
//!    `R(theta) - R*`, the within-concept spread `||Phi - M||_F / ||Phi||_F`, the
//!    distance to the predicted family and its norm errors
//!    ([`crate::metrics::family_distance`]), the test accuracy on fresh sentences,
//!    and the *basin*: whether L-BFGS on `R` started at `theta` ends in the
//!    predicted family at `R*`, and after how many iterations.
//!
//! Rates in `n_spl` are fitted in [`rates`]; results are stored line by line
//! ([`store`]); the report and figures are written by [`report`].

pub mod lbfgs;
pub mod noise;
pub mod rates;
pub mod report;
pub mod sgd;
pub mod store;

use crate::collapse::{self, CollapseType, Prediction};
use crate::empirical::{self, SampleProblem, WeightedSample};
use crate::error::{Error, Result};
use crate::limit;
use crate::metrics::{self, FamilyDistance};
use crate::network::Params;
use crate::task::{Sentences, Task};
use crate::train;
use crate::verify::{self, VerifyConfig};
use lbfgs::LbfgsOptions;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sgd::SgdProtocol;
use std::time::Instant;

/// ChaCha stream of the ERM's random start (streams 1–3 are the trainer's).
pub const ERM_INIT_STREAM: u64 = 7;

/// Which finite-sample solution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// Minimiser of the sample risk (f64, L-BFGS).
    Erm,
    /// The paper's mini-batch SGD (f32).
    Sgd,
}

impl Solver {
    pub fn name(self) -> &'static str {
        match self {
            Solver::Erm => "erm",
            Solver::Sgd => "sgd",
        }
    }
}

/// Settings of a convergence study.
#[derive(Debug, Clone)]
pub struct ConvergeConfig {
    /// Sample sizes `n_spl` (sentences per class), strictly increasing, each >= 1.
    pub nspl: Vec<usize>,
    /// Seeds `0..seeds`.
    pub seeds: usize,
    pub solvers: Vec<Solver>,
    /// Test sentences per class.
    pub n_test: usize,
    /// The ERM's L-BFGS.
    pub erm: LbfgsOptions,
    /// Standard deviation of the ERM's random start.
    pub erm_init_scale: f64,
    pub sgd: SgdProtocol,
    /// L-BFGS on the exact limit risk (reference polish and basin test).
    pub limit: LbfgsOptions,
    /// A basin run ends "in the family" when its family distance is at most this
    /// and its risk within `basin_risk_tol` (relative) of `R*`.
    pub basin_family_tol: f64,
    pub basin_risk_tol: f64,
    /// Work budget of one exact limit-risk evaluation.
    pub budget: f64,
}

impl Default for ConvergeConfig {
    fn default() -> Self {
        ConvergeConfig {
            nspl: vec![8, 32, 128, 512, 2048],
            seeds: 4,
            solvers: vec![Solver::Erm, Solver::Sgd],
            n_test: 5,
            erm: LbfgsOptions::default(),
            erm_init_scale: 0.5,
            sgd: SgdProtocol::default(),
            limit: LbfgsOptions::default(),
            basin_family_tol: 1e-4,
            basin_risk_tol: 1e-8,
            budget: limit::DEFAULT_WORK_BUDGET,
        }
    }
}

impl ConvergeConfig {
    /// Checks every setting; errors name the parameter.
    pub fn validate(&self) -> Result<()> {
        if self.nspl.is_empty() {
            return Err(Error::invalid(
                "nspl",
                "(empty)",
                "needs at least one sample size",
            ));
        }
        if self.nspl[0] == 0 {
            return Err(Error::invalid("nspl", 0, "sample sizes must be >= 1"));
        }
        if let Some(w) = self.nspl.windows(2).find(|w| w[0] >= w[1]) {
            return Err(Error::invalid(
                "nspl",
                format!("{},{}", w[0], w[1]),
                "sample sizes must be strictly increasing",
            ));
        }
        // Sizes that would not fit in memory (or a lifetime) are bad input.
        const MAX_PER_CLASS: usize = 1 << 24;
        if let Some(&n) = self.nspl.iter().find(|&&n| n > MAX_PER_CLASS) {
            return Err(Error::invalid(
                "nspl",
                n,
                format!("at most {MAX_PER_CLASS} sentences per class"),
            ));
        }
        if self.seeds == 0 || self.seeds > 10_000 {
            return Err(Error::invalid(
                "seeds",
                self.seeds,
                "needs 1 to 10000 seeds",
            ));
        }
        if self.n_test > MAX_PER_CLASS {
            return Err(Error::invalid(
                "n_test",
                self.n_test,
                format!("at most {MAX_PER_CLASS} test sentences per class"),
            ));
        }
        if self.solvers.is_empty() {
            return Err(Error::invalid("solver", "(none)", "needs erm, sgd or both"));
        }
        if self.n_test == 0 {
            return Err(Error::invalid(
                "n_test",
                0,
                "needs at least 1 test sentence per class",
            ));
        }
        for (name, o) in [("erm_grad_tol", &self.erm), ("limit_grad_tol", &self.limit)] {
            if !(o.grad_tol > 0.0 && o.grad_tol.is_finite()) {
                return Err(Error::invalid(name, o.grad_tol, "must be finite and > 0"));
            }
            if o.max_iters == 0 {
                return Err(Error::invalid("max_iters", 0, "must be >= 1"));
            }
        }
        if !(self.erm_init_scale > 0.0 && self.erm_init_scale.is_finite()) {
            return Err(Error::invalid(
                "erm_init_scale",
                self.erm_init_scale,
                "must be finite and > 0",
            ));
        }
        if self.budget.is_nan() || self.budget <= 0.0 {
            return Err(Error::invalid("budget", self.budget, "must be > 0"));
        }
        self.sgd.validate()
    }

    /// Everything that changes a result line except `nspl`, `seeds` and the
    /// solver list (so a rerun may extend those): lines of another fingerprint
    /// are refused on resume.
    pub fn fingerprint(&self, task: &Task) -> String {
        format!(
            "{task} seed={} | n_test={} erm(tol={:e}, iters={}, init={}) sgd({}) limit(tol={:e}, iters={}) basin(fam={:e}, risk={:e})",
            task.seed(),
            self.n_test,
            self.erm.grad_tol,
            self.erm.max_iters,
            self.erm_init_scale,
            self.sgd,
            self.limit.grad_tol,
            self.limit.max_iters,
            self.basin_family_tol,
            self.basin_risk_tol
        )
    }
}

/// The limit minimiser the finite-sample solutions are compared with.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub kind: CollapseType,
    pub prediction: Prediction,
    /// `R*`: the smaller of `R` at the built prediction and after the polish.
    pub r_star: f64,
    /// `R` at the built prediction.
    pub risk_at_prediction: f64,
    /// `||grad R||` at the built prediction.
    pub grad_norm_at_prediction: f64,
    /// L-BFGS iterations of the polish.
    pub polish_iterations: u64,
    /// `tr(Sigma)`, the trace of the covariance of one sentence's gradient at
    /// the built prediction ([`noise::gradient_noise_trace`]); `None` when the
    /// `K s_c^L` sentences are too many to enumerate.
    pub gradient_noise_trace: Option<f64>,
    /// The small-step SGD floor `lr tr(Sigma) / (4 batch)` of the excess limit risk.
    pub sgd_floor: Option<f64>,
    /// `C` of the ERM's `E[R(theta_hat) - R*] ≈ C / n_spl`
    /// ([`noise::erm_excess_coefficient`]); `None` when too large to enumerate.
    pub erm_excess_coefficient: Option<f64>,
}

impl Reference {
    /// Predicts, builds and polishes the limit minimiser of `task`.
    pub fn of(task: &Task, cfg: &ConvergeConfig) -> Result<Self> {
        limit::check_budget(task, cfg.budget)?;
        for &n in &cfg.nspl {
            task.check_sample("nspl", n)?;
        }
        task.check_sample("n_test", cfg.n_test)?;
        let prediction = collapse::predict(task, verify::exact_form(task))?;
        let frame = collapse::equiangular_frame(task.n_c(), task.dim(), task.norm().centres())?;
        let built = collapse::build(task, &prediction, &frame);
        let (risk_at_prediction, g) = limit::risk_grad(task, &built);
        let polished = verify::minimise(task, &built, &verify_config(&cfg.limit))?;
        let r_polished = limit::risk(task, &built.with_flat(&polished.x));
        // The noise analysis enumerates every sentence (one gradient each) and,
        // for the ERM coefficient, the exact dense Hessian (n_params exact
        // Hessian-vector products, counted as two gradients' work each): only
        // where that stays within the work budget.
        let n_params = task.n_params() as f64;
        let sentences = task.k() as f64 * (task.s_c() as f64).powi(task.len() as i32);
        let per_sentence = (task.k() * task.len() * task.dim()) as f64 + n_params;
        let enumerable = sentences * per_sentence <= cfg.budget;
        let trace = enumerable
            .then(|| noise::gradient_noise_trace(task, &built, 1 << 20).ok())
            .flatten();
        let erm_c = (enumerable
            && task.n_params() <= 2000
            && 2.0 * n_params * limit::work(task) <= cfg.budget)
            .then(|| noise::erm_excess_coefficient(task, &built, 1 << 16).ok())
            .flatten();
        Ok(Reference {
            erm_excess_coefficient: erm_c,
            gradient_noise_trace: trace,
            sgd_floor: trace.map(|t| noise::sgd_floor(t, cfg.sgd.lr, cfg.sgd.batch)),
            kind: prediction.kind,
            r_star: risk_at_prediction.min(r_polished),
            risk_at_prediction,
            grad_norm_at_prediction: g.iter().map(|v| v * v).sum::<f64>().sqrt(),
            polish_iterations: polished.iterations,
            prediction,
        })
    }
}

fn verify_config(o: &LbfgsOptions) -> VerifyConfig {
    VerifyConfig {
        grad_tol: o.grad_tol,
        max_iters: o.max_iters,
        lbfgs_memory: o.memory,
        ..VerifyConfig::default()
    }
}

/// L-BFGS on the exact limit risk started at a solution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Basin {
    /// Ended converged, in the predicted family and at `R*`.
    pub in_family: bool,
    /// L-BFGS iterations.
    pub iterations: u64,
    /// The run met its gradient tolerance within the iteration cap.
    pub converged: bool,
    /// `R(end) - R*`.
    pub risk_gap: f64,
    /// Family distance (max) at the end.
    pub family_distance: f64,
}

/// Everything measured at one solution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measures {
    /// `R(theta) - R*`.
    pub excess_limit_risk: f64,
    /// `R(theta)`.
    pub limit_risk: f64,
    /// `||Phi - M||_F / ||Phi||_F` ([`metrics::within_concept_spread`]).
    pub within_concept_spread: f64,
    /// [`FamilyDistance::max`].
    pub family_distance: f64,
    /// All components of the family distance (norm errors included).
    pub family: FamilyDistance,
    /// Accuracy on the test sentences.
    pub test_accuracy: f64,
    pub basin: Basin,
}

/// One result line: a solver's solution for one `(n_spl, seed)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub theorem: Option<u8>,
    pub kind: CollapseType,
    pub n_spl: usize,
    pub seed: u64,
    pub solver: Solver,
    /// ERM: L-BFGS met its gradient tolerance; SGD: the loss plateau was reached
    /// before the epoch cap. `false` is a failure, shown in every report.
    pub converged: bool,
    /// ERM: L-BFGS iterations; SGD: epochs.
    pub iterations: u64,
    /// SGD steps (0 for ERM).
    pub steps: u64,
    /// ERM: the sample risk at the solution; SGD: the last epoch's mean batch loss.
    pub fit_value: f64,
    /// ERM: `||grad R_hat||`; SGD: relative loss change over the last tenth of the epochs.
    pub fit_residual: f64,
    /// Distinct sentences in the sample (ERM) / sentences (SGD).
    pub sample_size: usize,
    #[serde(flatten)]
    pub measures: Measures,
    pub seconds: f64,
    /// [`ConvergeConfig::fingerprint`].
    pub fingerprint: String,
}

/// Training and test sentences of `seed`, drawn as the trainer draws them
/// (data stream [`train::DATA_STREAM`] of `seed`: `n_spl` per class, then `n_test`).
pub fn draw_data(task: &Task, n_spl: usize, n_test: usize, seed: u64) -> (Sentences, Sentences) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(train::DATA_STREAM);
    let tr = task.sample_sentences(n_spl, &mut rng);
    let te = task.sample_sentences(n_test, &mut rng);
    (tr, te)
}

/// With a normalization and `lambda_W = 0`, every `w_t -> standardise(w_t)`
/// ([`crate::norm::Norm::standardise`]) is a symmetry of both risks (exactly at
/// `eps = 0`): the normalisation applied before each L-BFGS round.
fn layer_norm_normalise(task: &Task) -> Option<impl Fn(&mut [f64]) + '_> {
    let norm = task.norm();
    let f = move |x: &mut [f64]| {
        let nw = task.n_w() * task.dim();
        for row in x[..nw].chunks_mut(task.dim()) {
            norm.standardise(row);
        }
    };
    (task.lambda_w() == 0.0 && !norm.is_none()).then_some(f)
}

/// The ERM on `train`: L-BFGS on the sample risk from `N(0, init_scale^2)`
/// entries drawn from stream [`ERM_INIT_STREAM`] of `seed`.
pub fn fit_erm(
    task: &Task,
    train: &Sentences,
    seed: u64,
    cfg: &ConvergeConfig,
) -> Result<(lbfgs::Fit, usize)> {
    let sample = WeightedSample::from_sentences(train)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(ERM_INIT_STREAM);
    let start = Params::random(task, cfg.erm_init_scale, &mut rng);
    let problem = SampleProblem {
        task,
        sample: &sample,
        shape: Params::zeros(task),
    };
    let norm = layer_norm_normalise(task);
    let fit = lbfgs::minimise(
        &problem,
        start.to_flat(),
        &cfg.erm,
        norm.as_ref().map(|f| f as lbfgs::Normalise),
    )?;
    Ok((fit, sample.n()))
}

/// The measures of [`Measures`] at `p`, with `test_accuracy` given.
pub fn measure(
    task: &Task,
    reference: &Reference,
    p: &Params,
    test_accuracy: f64,
    cfg: &ConvergeConfig,
) -> Result<Measures> {
    let limit_risk = limit::risk(task, p);
    let family = metrics::family_distance(task, p, &reference.prediction);
    let end = verify::minimise(task, p, &verify_config(&cfg.limit))?;
    let end_p = p.with_flat(&end.x);
    let (end_risk, end_g) = limit::risk_grad(task, &end_p);
    let converged =
        !end.hit_cap && end_g.iter().map(|v| v * v).sum::<f64>().sqrt() <= cfg.limit.grad_tol;
    let end_family = metrics::family_distance(task, &end_p, &reference.prediction).max;
    let risk_gap = end_risk - reference.r_star;
    Ok(Measures {
        excess_limit_risk: limit_risk - reference.r_star,
        limit_risk,
        within_concept_spread: metrics::within_concept_spread(task, p),
        family_distance: family.max,
        family,
        test_accuracy,
        basin: Basin {
            in_family: converged
                && end_family <= cfg.basin_family_tol
                && risk_gap.abs() <= cfg.basin_risk_tol * reference.r_star.abs().max(1.0),
            iterations: end.iterations,
            converged,
            risk_gap,
            family_distance: end_family,
        },
    })
}

/// Fits `solver` on the sample of `(n_spl, seed)` and measures its solution.
pub fn run_one(
    task: &Task,
    theorem: Option<u8>,
    reference: &Reference,
    cfg: &ConvergeConfig,
    n_spl: usize,
    seed: u64,
    solver: Solver,
) -> Result<Record> {
    let started = Instant::now();
    let (params, converged, iterations, steps, fit_value, fit_residual, sample_size, acc) =
        match solver {
            Solver::Erm => {
                let (train, test) = draw_data(task, n_spl, cfg.n_test, seed);
                let (fit, distinct) = fit_erm(task, &train, seed, cfg)?;
                let p = Params::zeros(task).with_flat(&fit.x);
                let acc = empirical::accuracy(task, &p, &test);
                (
                    p,
                    fit.converged,
                    fit.iterations,
                    0,
                    fit.value,
                    fit.grad_norm,
                    distinct,
                    acc,
                )
            }
            Solver::Sgd => {
                let fit = sgd::train(task, n_spl, cfg.n_test, seed, &cfg.sgd)?;
                (
                    fit.params,
                    fit.converged,
                    fit.epochs,
                    fit.steps,
                    fit.final_loss,
                    fit.rel_change,
                    task.k() * n_spl,
                    fit.test_accuracy,
                )
            }
        };
    let measures = measure(task, reference, &params, acc, cfg)?;
    Ok(Record {
        theorem,
        kind: reference.kind,
        n_spl,
        seed,
        solver,
        converged,
        iterations,
        steps,
        fit_value,
        fit_residual,
        sample_size,
        measures,
        seconds: started.elapsed().as_secs_f64(),
        fingerprint: cfg.fingerprint(task),
    })
}
