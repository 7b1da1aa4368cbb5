//! Numerical verification of the paper's three theorems (docs/theory.md §5) on instances
//! small enough to enumerate the limit risk `R(W, U)` exactly.
//!
//! For one theorem and one task, [`verify_theorem`] runs named steps:
//! 1. [`Theorem::outside`]: the task is refused if it belongs to another theorem,
//!    else the hypotheses it violates are listed (none: inside);
//! 2. the phase ([`crate::collapse::predicted_phase`], exact for every latent set,
//!    docs/theory.md §6) and `lambda_critical`;
//! 3. [`steps::at_prediction`]: the minimiser of the reduced objective
//!    ([`crate::collapse::predict`], full form on the full latent set, latent-set
//!    form otherwise), built on an equiangular frame, with the exact risk and
//!    gradient there;
//! 4. the exact Hessian (analytic second derivatives of `R`) at the claimed
//!    minimiser (the prediction, or the origin in the trivial phase), and its
//!    smallest eigenvalue transverse to the symmetry orbit;
//! 5. [`steps::run_restarts`]: argmin's L-BFGS from seeded random points;
//! 6. the claims that belong to the instance, as checks and measurements:
//!    [`claims::collapsed_full`] (the theorem proper), [`claims::trivial`] (the
//!    origin is the global minimiser), [`claims::collapsed_drawn`] (drawn latent
//!    set: the central claim at the restarts, the geometry measured), or
//!    [`claims::outside`] (no claim: the minimiser found is described);
//! 7. the verdict ([`Verdict`]): `refuted` when a check that counts as evidence
//!    against the claim fails (a restart below the prediction, negative
//!    curvature, a non-critical prediction, a second minimiser; the weights are
//!    kept as witnesses, see [`write_witnesses`]), `inconclusive` when the search
//!    could not decide (restarts that did not converge or ended elsewhere above
//!    the prediction, a degenerate Hessian) or the task is outside the
//!    hypotheses, `confirmed` otherwise.
//!
//! A restart that stops on its iteration cap (`MaxItersReached`) has not
//! converged: never a silent pass.

pub mod bisect;
pub mod claims;
mod config;
mod hessian;
mod optimise;
pub mod recheck;
mod report;
pub mod steps;
mod theorem;
pub mod verdict;
mod witness;

pub use bisect::{lambda_critical_bisection, Bisection};
pub use config::{Tolerances, VerifyConfig, MAX_RESTARTS};
pub use hessian::{
    hessian_report, hessian_report_dense, hessian_report_lanczos, hessian_vector_product, lanczos,
    min_eigenpair, min_eigenpair_with, symmetry_basis, symmetry_tangents, EigenPair, HessianReport,
    Lanczos, DENSE_MAX_PARAMS,
};
pub use optimise::{
    minimise, minimise_with, termination, EvalCap, MinimiseOptions, Minimised, Saddle, SafeLbfgs,
    Safeguards,
};
pub use report::{Check, Evidence, Measurement, OnFail, Restart, TheoremReport, Witness};
pub use steps::exact_form;
pub use theorem::Theorem;
pub use verdict::Verdict;
pub use witness::write_witnesses;

use crate::collapse::{self, Phase};
use crate::error::Result;
use crate::limit;
use crate::network::Params;
use crate::task::Task;
use steps::Context;

/// Euclidean norm `||v||`.
pub fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Relative bracket width of the bisection run when [`VerifyConfig::bisect`] is set.
pub const BISECTION_REL_TOL: f64 = 1e-9;

/// Verifies `theorem` on `task`. Errors only on malformed input (a task of
/// another theorem, bad settings, over budget) or a run-time failure; a task
/// outside the hypotheses is run and described (`hypotheses: false`).
/// `progress` receives one short line per stage; pass `|_| {}` to mute.
pub fn verify_theorem(
    theorem: Theorem,
    task: &Task,
    cfg: &VerifyConfig,
    mut progress: impl FnMut(&str),
) -> Result<TheoremReport> {
    let started = std::time::Instant::now();
    cfg.validate()?;
    let outside = theorem.outside(task)?;
    limit::check_budget(task, cfg.budget)?;
    let inside = outside.is_empty();
    let phase = collapse::predicted_phase(task);

    progress("prediction");
    let at = steps::at_prediction(theorem, task, inside, cfg.candidate_scale)?;

    let hessian_at = match (inside, phase) {
        (true, Phase::Trivial) => Some(Params::zeros(task)),
        (true, Phase::Collapsed) => at.built.clone(),
        (false, _) => None,
    };
    let hessian = match hessian_at.filter(|_| cfg.hessian) {
        Some(p) => {
            progress("hessian");
            Some(hessian_report(task, &p))
        }
        None => None,
    };

    progress("restarts");
    let mut restarts = steps::run_restarts(task, cfg, at.prediction.as_ref())?;
    if let Some(pred) = &at.prediction {
        let gain = steps::log_k(task) - pred.risk;
        let gain = task.norm().is_linear().then_some(gain);
        let mtol = steps::match_tol(cfg, pred.risk, gain);
        for r in &mut restarts {
            r.reached_prediction = (r.risk - pred.risk).abs() <= mtol;
        }
    }

    let lambda_critical_bisection = if cfg.bisect && task.norm().is_linear() {
        progress("bisection");
        bisect_phase_switch(task, cfg)?
    } else {
        None
    };

    let cx = Context {
        theorem,
        task,
        cfg,
        at: &at,
        hessian: hessian.as_ref(),
        restarts: &restarts,
    };
    let mut ev = Evidence::default();
    match (inside, phase, task.full_latent()) {
        (false, _, _) => claims::outside(&cx, &outside, &mut ev),
        (true, Phase::Trivial, _) => claims::trivial(&cx, &mut ev),
        (true, Phase::Collapsed, true) => claims::collapsed_full(&cx, &mut ev),
        (true, Phase::Collapsed, false) => claims::collapsed_drawn(&cx, &mut ev),
    }
    if let Some(b) = lambda_critical_bisection {
        check_bisection(task, b, &mut ev);
    }
    let verdict = ev.verdict(!inside);
    if verdict != Verdict::Refuted {
        // Weights are witnesses only of a refutation.
        ev.witnesses.clear();
    }

    let best_risk = restarts
        .iter()
        .map(|r| r.risk)
        .fold(f64::INFINITY, f64::min);
    let collapse_distance = at
        .prediction
        .as_ref()
        .map(|_| largest_family_distance(&restarts));
    // At the origin the ratio is 0/0; the tokens share the representation 0 there.
    let at_origin = |r: &Restart| inside && phase == Phase::Trivial && r.reached_prediction;
    let within_concept_spread = restarts
        .iter()
        .filter(|r| !at_origin(r))
        .map(|r| r.within_concept_spread)
        .fold(0.0, f64::max);
    Ok(TheoremReport {
        theorem: theorem.number(),
        statement: theorem.statement().to_string(),
        kind: theorem.kind(),
        hypotheses: inside,
        outside,
        phase,
        lambda_critical: collapse::lambda_critical(task),
        lambda_critical_bisection,
        task: task.clone(),
        norm: task.norm().name().to_string(),
        n_params: task.n_params(),
        predicted_risk: at.prediction.as_ref().map(|p| p.risk),
        prediction: at.prediction.clone(),
        exact_risk_at_prediction: at.exact,
        grad_norm_at_prediction: at.grad_norm,
        hessian_min_eig: hessian.as_ref().map(|h| h.min_eig),
        hessian,
        type_i_grad_norm: at.type_i.map(|t| t.0),
        best_risk,
        collapse_distance,
        within_concept_spread,
        restarts,
        checks: ev.checks,
        measurements: ev.measurements,
        passed: verdict == Verdict::Confirmed,
        verdict,
        reasons: ev.reasons,
        witnesses: Vec::new(),
        witness_params: ev.witnesses,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `lambda_critical` located on the exact problem by bisection (restarts and the
/// Hessian at the origin); the restarts of each step only look for a point below
/// `log K`, so short runs suffice.
fn bisect_phase_switch(task: &Task, cfg: &VerifyConfig) -> Result<Option<f64>> {
    let quick = VerifyConfig {
        restarts: cfg.restarts.min(4),
        max_iters: cfg.max_iters.min(300),
        ..cfg.clone()
    };
    Ok(lambda_critical_bisection(task, &quick, BISECTION_REL_TOL)?.map(|b| b.lambda))
}

/// The closed-form `lambda_critical` agrees with the bisection `b`: the
/// exact Hessian at the origin resolves lambda to about 1e-10 absolute.
fn check_bisection(task: &Task, b: f64, ev: &mut Evidence) {
    let Some(c) = collapse::lambda_critical(task) else {
        return;
    };
    let d = (b - c).abs();
    let allowed = 1e-6 * c + 1e-10;
    ev.check(
        "lambda_critical: |closed form - bisection on the exact problem|",
        d,
        format!("<= {allowed:.1e}"),
        d <= allowed,
        OnFail::Undecided,
        || format!("closed-form lambda_critical {c:.9} vs bisection {b:.9}"),
    );
}

/// The largest family distance among the restarts that reached the prediction,
/// or that of the lowest restart when none did.
fn largest_family_distance(restarts: &[Restart]) -> f64 {
    let reached: Vec<f64> = restarts
        .iter()
        .filter(|r| r.reached_prediction)
        .filter_map(|r| r.family.as_ref().map(|f| f.max))
        .collect();
    if reached.is_empty() {
        restarts
            .iter()
            .min_by(|a, b| a.risk.total_cmp(&b.risk))
            .and_then(|r| r.family.as_ref().map(|f| f.max))
            .unwrap_or(f64::NAN)
    } else {
        reached.into_iter().fold(0.0, f64::max)
    }
}
