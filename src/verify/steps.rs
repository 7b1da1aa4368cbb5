//! The named steps of [`super::verify_theorem`]: the prediction and what the
//! exact risk says there, the random restarts, and the claims that belong to the
//! instance (its phase, full or drawn latent set, inside or outside the
//! hypotheses), each turned into checks and measurements.

use super::report::{Evidence, OnFail, Restart};
use super::{minimise, norm, HessianReport, Minimised, Theorem, VerifyConfig};
use crate::collapse::{self, Form, Prediction};
use crate::error::Result;
use crate::limit;
use crate::metrics;
use crate::network::{features, Params};
use crate::task::Task;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Which reduced-objective form is exact for `task`: the full form for the full
/// latent set, otherwise the latent-set form.
pub fn exact_form(task: &Task) -> Form {
    if task.full_latent() {
        Form::Full
    } else {
        Form::LatentSet
    }
}

/// `|a - b| / max(1, |b|)`.
pub(super) fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1.0)
}

/// Round-off level of a risk value `r`: `1e-12 max(1, |r|)`.
fn floor(r: f64) -> f64 {
    1e-12 * r.abs().max(1.0)
}

/// `R(0) = log K` without LayerNorm (all scores vanish at the origin).
pub(super) fn log_k(task: &Task) -> f64 {
    (task.k() as f64).ln()
}

/// `||grad penalty|| = sqrt(lambda_W^2 ||W||^2 + lambda_U^2 ||U||^2)`.
fn penalty_grad_norm(task: &Task, p: &Params) -> f64 {
    let (w2, u2) = p.sq_norms();
    (task.lambda_w().powi(2) * w2 + task.lambda_u().powi(2) * u2).sqrt()
}

/// Relative stationarity `||grad R|| / ||grad penalty||` (0 when `grad R = 0`):
/// at a critical point the loss and penalty gradients cancel, so this is the
/// residual on the scale of the configuration itself.
fn stationarity(task: &Task, p: &Params, g: &[f64]) -> f64 {
    let gn = norm(g);
    if gn == 0.0 {
        0.0
    } else {
        gn / penalty_grad_norm(task, p).max(f64::MIN_POSITIVE)
    }
}

/// The prediction, its configuration, and what the exact risk says there.
#[derive(Debug, Clone)]
pub struct AtPrediction {
    pub prediction: Option<Prediction>,
    /// The collapsed configuration on an equiangular frame (none where no frame fits).
    pub built: Option<Params>,
    pub exact: Option<f64>,
    pub grad_norm: Option<f64>,
    /// `||grad R|| / ||grad penalty||` at `built`.
    pub grad_rel: Option<f64>,
    /// Theorem 2: `(||grad R||, relative)` at the type-I configuration with the
    /// predicted norms (`a = rms r_beta`, same `b`).
    pub type_i: Option<(f64, f64)>,
}

/// Step 1: predicts (errors are input errors inside the hypotheses; outside, a
/// prediction that does not exist is left out) and evaluates the exact risk there.
pub fn at_prediction(theorem: Theorem, task: &Task, inside: bool) -> Result<AtPrediction> {
    let predicted = collapse::predict(task, exact_form(task));
    let prediction = if inside {
        Some(predicted?)
    } else {
        predicted.ok()
    };
    let frame = collapse::equiangular_frame(task.n_c(), task.dim(), task.layer_norm().is_some());
    let frame = if inside { Some(frame?) } else { frame.ok() };
    let (Some(pred), Some(frame)) = (&prediction, &frame) else {
        return Ok(AtPrediction {
            prediction,
            built: None,
            exact: None,
            grad_norm: None,
            grad_rel: None,
            type_i: None,
        });
    };
    let built = collapse::build(task, pred, frame);
    let (exact, grad) = limit::risk_grad(task, &built);
    let grad_rel = stationarity(task, &built, &grad);
    let rms = (pred.r.iter().map(|v| v * v).sum::<f64>() / pred.r.len() as f64).sqrt();
    let type_i = (theorem == Theorem::Two && rms > 0.0 && pred.u_norm > 0.0).then(|| {
        let p1 = Prediction {
            r: vec![rms; pred.r.len()],
            ..pred.clone()
        };
        let c1 = collapse::build(task, &p1, frame);
        let g1 = limit::risk_grad(task, &c1).1;
        (norm(&g1), stationarity(task, &c1, &g1))
    });
    Ok(AtPrediction {
        prediction,
        exact: Some(exact),
        grad_norm: Some(norm(&grad)),
        grad_rel: Some(grad_rel),
        built: Some(built),
        type_i,
    })
}

/// Step 2: L-BFGS from `cfg.restarts` seeded random starts (in parallel).
pub fn run_restarts(
    task: &Task,
    cfg: &VerifyConfig,
    pred: Option<&Prediction>,
) -> Result<Vec<Restart>> {
    (0..cfg.restarts)
        .into_par_iter()
        .map(|i| -> Result<Restart> {
            let seed = cfg.seed.wrapping_add(i as u64);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let start = Params::random(task, cfg.init_scale, &mut rng);
            let Minimised {
                x,
                iterations,
                termination,
                hit_cap,
            } = minimise(task, &start, cfg)?;
            let p = start.with_flat(&x);
            let (risk, g) = limit::risk_grad(task, &p);
            let grad_norm = norm(&g);
            let (w2, u2) = p.sq_norms();
            Ok(Restart {
                seed,
                risk,
                grad_norm,
                iterations,
                termination,
                converged: grad_norm <= cfg.grad_tol && !hit_cap,
                reached_prediction: false,
                family: pred.map(|pr| metrics::family_distance(task, &p, pr)),
                within_concept_spread: metrics::within_concept_spread(task, &p),
                w_norm: w2.sqrt(),
                u_norm: u2.sqrt(),
                params: x,
            })
        })
        .collect()
}

/// The risk tolerance for "a restart reached `r_star`": `risk_match max(1, |R*|)`,
/// capped at half the gain `gain = log K - R*` of the collapsed minimiser over
/// the origin (so that, near the switch, the origin never counts as reaching a
/// collapsed prediction), and never below round-off.
pub fn match_tol(cfg: &VerifyConfig, r_star: f64, gain: Option<f64>) -> f64 {
    let t = cfg.tol.risk_match * r_star.abs().max(1.0);
    let t = match gain {
        Some(g) if g > 0.0 => t.min(0.5 * g),
        _ => t,
    };
    t.max(floor(r_star))
}

/// Everything the claim steps read.
pub struct Context<'a> {
    pub theorem: Theorem,
    pub task: &'a Task,
    pub cfg: &'a VerifyConfig,
    pub at: &'a AtPrediction,
    pub hessian: Option<&'a HessianReport>,
    pub restarts: &'a [Restart],
}

impl Context<'_> {
    fn params(&self, r: &Restart) -> Params {
        Params::zeros(self.task).with_flat(&r.params)
    }

    fn best(&self) -> &Restart {
        self.restarts
            .iter()
            .min_by(|a, b| a.risk.total_cmp(&b.risk))
            .expect("restarts >= 1")
    }

    /// Converged restarts, an `Undecided` check.
    fn converged(&self, ev: &mut Evidence) {
        let n = self.restarts.len();
        let bad: Vec<String> = self
            .restarts
            .iter()
            .filter(|r| !r.converged)
            .map(|r| {
                format!(
                    "seed {} ({}, ||grad R|| = {:.1e})",
                    r.seed, r.termination, r.grad_norm
                )
            })
            .collect();
        ev.check(
            "restarts converged (grad tol, no iteration cap)",
            (n - bad.len()) as f64,
            format!("= {n}"),
            bad.is_empty(),
            OnFail::Undecided,
            || {
                format!(
                    "{} of {n} restarts did not converge: {}",
                    bad.len(),
                    bad.join("; ")
                )
            },
        );
    }

    /// No restart below `r_star` beyond tolerance (`Refutes`, the lowest one is the witness).
    fn none_below(&self, ev: &mut Evidence, r_star: f64, what: &str) {
        let best = self.best();
        let gap = (r_star - best.risk) / r_star.abs().max(1.0);
        let tol = self.cfg.tol.below_prediction;
        let ok = gap <= tol;
        if !ok {
            ev.witness(format!("restart-seed{}", best.seed), &self.params(best));
        }
        ev.check(
            &format!("no restart below {what} (rel gap R* - R_best)"),
            gap,
            format!("<= {tol:.0e}"),
            ok,
            OnFail::Refutes,
            || {
                format!(
                    "restart seed {} ends at R = {:.15} below {what} {r_star:.15}: the claim is refuted (weights saved)",
                    best.seed, best.risk
                )
            },
        );
    }

    /// The best restart reaches `r_star` within `tol` (`Undecided`).
    fn best_reaches(&self, ev: &mut Evidence, r_star: f64, tol: f64, what: &str) {
        let best = self.best();
        let gap = (best.risk - r_star).abs();
        let above = self
            .restarts
            .iter()
            .filter(|r| r.risk > r_star + tol)
            .count();
        ev.check(
            &format!("best restart reaches {what} (|R_best - R*|)"),
            gap,
            format!("<= {tol:.1e}"),
            gap <= tol,
            OnFail::Undecided,
            || {
                format!(
                    "{above} of {} restarts ended elsewhere above {what} (best R = {:.6} vs {r_star:.6}) and none reached it: the search could not confirm the claim",
                    self.restarts.len(),
                    best.risk
                )
            },
        );
    }

    /// Hessian checks at a claimed minimiser: not negative (`Refutes`), and
    /// strictly positive transverse to the symmetries (`Undecided`).
    fn hessian(&self, ev: &mut Evidence, h: &HessianReport, at: &Params, label: &str) {
        let tol = &self.cfg.tol;
        let scale = h.max_eig.abs().max(f64::MIN_POSITIVE);
        let floor = -tol.hessian_negative * scale;
        let neg = h.min_eig < floor || h.transverse_min_eig < floor;
        if neg {
            ev.witness(label.to_string(), at);
        }
        ev.check(
            "Hessian min eigenvalue (relative floor -tol max eig)",
            h.min_eig,
            format!(">= {floor:.1e}"),
            h.min_eig >= floor,
            OnFail::Refutes,
            || {
                format!(
                    "negative curvature {:.3e} at the {label}: refuted (weights saved)",
                    h.min_eig
                )
            },
        );
        ev.check(
            "Hessian min eigenvalue transverse to symmetries, not negative",
            h.transverse_min_eig,
            format!(">= {floor:.1e}"),
            h.transverse_min_eig >= floor,
            OnFail::Refutes,
            || {
                format!(
                    "negative transverse curvature {:.3e} at the {label}: refuted (weights saved)",
                    h.transverse_min_eig
                )
            },
        );
        let pos = tol.transverse_positive * scale;
        ev.check(
            "Hessian min eigenvalue transverse to symmetries, positive",
            h.transverse_min_eig,
            format!("> {pos:.1e}"),
            h.transverse_min_eig > pos,
            OnFail::Undecided,
            || {
                format!(
                    "transverse curvature {:.3e} at the {label} is zero to tolerance: a degenerate point, strictness undecided",
                    h.transverse_min_eig
                )
            },
        );
    }
}

/// Claims of the collapsed phase on the full latent set: the predicted
/// configuration is critical, a strict local minimum modulo symmetry, the
/// lowest point found, and every restart reaching it is in the family.
pub fn collapsed_full(cx: &Context, ev: &mut Evidence) {
    let tol = &cx.cfg.tol;
    let (at, task) = (cx.at, cx.task);
    let pred = at.prediction.as_ref().expect("inside: prediction");
    let built = at.built.as_ref().expect("inside: frame");
    let e = rel(at.exact.unwrap_or(f64::NAN), pred.risk);
    ev.check(
        "exact R = reduced R at prediction (rel)",
        e,
        format!("<= {:.0e}", tol.reduced_vs_exact),
        e <= tol.reduced_vs_exact,
        OnFail::Undecided,
        || format!("exact and reduced risk differ by {e:.1e} at the prediction: the prediction is not trustworthy"),
    );
    let size = pred.r.iter().cloned().fold(0.0, f64::max).min(pred.u_norm);
    ev.check(
        "reduced prediction is collapsed, as the phase (min(max r, b))",
        size,
        "> 0".into(),
        size > 0.0,
        OnFail::Undecided,
        || {
            "the reduced objective's minimiser is the origin although lambda < lambda_critical"
                .into()
        },
    );
    let g = at.grad_rel.unwrap_or(f64::NAN);
    if g.is_nan() || g > tol.grad_at_prediction {
        ev.witness("prediction".into(), built);
    }
    ev.check(
        "||grad R|| / ||grad penalty|| at prediction",
        g,
        format!("<= {:.0e}", tol.grad_at_prediction),
        g <= tol.grad_at_prediction,
        OnFail::Refutes,
        || format!("the predicted configuration is not critical (relative gradient {g:.1e}): refuted (weights saved)"),
    );
    if let Some((_, r1)) = at.type_i {
        ev.check(
            "type-I configuration (predicted norms) is not critical (relative)",
            r1,
            format!(">= {:.0e}", tol.type_i_residual),
            r1 >= tol.type_i_residual,
            OnFail::Undecided,
            || format!("the type-I configuration is critical to {r1:.1e} under non-uniform mu"),
        );
    }
    if let Some(h) = cx.hessian {
        cx.hessian(ev, h, built, "prediction");
    }
    cx.converged(ev);
    cx.none_below(ev, pred.risk, "the prediction");
    let gain = log_k(task) - pred.risk;
    let mtol = match_tol(cx.cfg, pred.risk, Some(gain));
    if gain <= 2.0 * floor(pred.risk) {
        ev.check(
            "gain log K - R_pred above round-off",
            gain,
            format!("> {:.1e}", 2.0 * floor(pred.risk)),
            false,
            OnFail::Undecided,
            || format!("the collapsed minimiser is only {gain:.1e} below R(0) = log K: at round-off, too close to the switch to tell the two apart"),
        );
    }
    cx.best_reaches(ev, pred.risk, mtol, "the prediction");
    // Family: relative distance, plus a Newton-step estimate of how far a restart
    // stopped at ||grad R|| can be from the critical point.
    let h_t = cx
        .hessian
        .map(|h| h.transverse_min_eig)
        .filter(|v| *v > 0.0);
    let scale = pred
        .r
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min)
        .min(pred.u_norm);
    let reached: Vec<&Restart> = cx
        .restarts
        .iter()
        .filter(|r| (r.risk - pred.risk).abs() <= mtol)
        .collect();
    if reached.is_empty() {
        return;
    }
    let mut worst = (0.0f64, 0.0f64, None);
    for r in &reached {
        let d = r.family.as_ref().map_or(f64::NAN, |f| f.max);
        let allowed = tol.family + h_t.map_or(0.0, |h| 10.0 * r.grad_norm / (h * scale));
        if !(d <= allowed) || worst.2.is_none() || d / allowed > worst.0 / worst.1 {
            worst = (d, allowed, Some(*r));
        }
    }
    let (d, allowed, r) = (worst.0, worst.1, worst.2.expect("reached"));
    let ok = d <= allowed;
    if !ok {
        ev.witness(format!("restart-seed{}", r.seed), &cx.params(r));
    }
    ev.check(
        "restarts at the prediction are in the family (max rel distance)",
        d,
        format!("<= {allowed:.1e}"),
        ok,
        OnFail::Refutes,
        || {
            format!(
                "restart seed {} reaches the predicted risk but is {d:.1e} from the family: another minimiser, refuted (weights saved)",
                r.seed
            )
        },
    );
}

/// `h_0`, the smallest eigenvalue of the Hessian of `R` at the origin:
/// `(lambda_W + lambda_U)/2 - sqrt(((lambda_W - lambda_U)/2)^2 + sigma^2)`
/// (docs/theory.md §6; `sigma` = [`collapse::origin_coupling`]).
pub fn origin_min_eig(task: &Task) -> f64 {
    let (lw, lu) = (task.lambda_w(), task.lambda_u());
    let s = collapse::origin_coupling(task);
    0.5 * (lw + lu) - (0.25 * (lw - lu).powi(2) + s * s).sqrt()
}

/// Claims of the trivial phase (any latent set, no LayerNorm): the origin is
/// the global minimiser, `R >= log K`, and every restart that reaches `log K`
/// ends at the origin.
pub fn trivial(cx: &Context, ev: &mut Evidence) {
    let task = cx.task;
    let lk = log_k(task);
    if let Some(pred) = &cx.at.prediction {
        let size = pred.r.iter().cloned().fold(0.0, f64::max).max(pred.u_norm);
        ev.check(
            "reduced prediction is the origin, as the phase (max(max r, b))",
            size,
            "= 0".into(),
            size == 0.0,
            OnFail::Undecided,
            || "the reduced objective's minimiser is not the origin although lambda >= lambda_critical".into(),
        );
    }
    let h0 = origin_min_eig(task);
    let origin = Params::zeros(task);
    if let Some(h) = cx.hessian {
        let scale = h.max_eig.abs().max(f64::MIN_POSITIVE);
        let err = (h.min_eig - h0).abs() / scale;
        ev.check(
            "Hessian min eigenvalue at the origin = closed form h_0 (rel to max eig)",
            err,
            "<= 1e-6".into(),
            err <= 1e-6,
            OnFail::Undecided,
            || {
                format!(
                    "Hessian at the origin {:.6e} vs closed form {h0:.6e}",
                    h.min_eig
                )
            },
        );
        cx.hessian(ev, h, &origin, "origin");
    }
    cx.converged(ev);
    cx.none_below(ev, lk, "R(0) = log K");
    let mtol = match_tol(cx.cfg, lk, None);
    cx.best_reaches(ev, lk, mtol, "R(0) = log K");
    if h0 > 0.0 {
        let mut worst: Option<(f64, f64, &Restart)> = None;
        for r in cx.restarts.iter().filter(|r| (r.risk - lk).abs() <= mtol) {
            let dist = (r.w_norm.powi(2) + r.u_norm.powi(2)).sqrt();
            let allowed = 10.0 * r.grad_norm / h0 + 1e-12;
            if worst.is_none_or(|(d, a, _)| dist / allowed > d / a) {
                worst = Some((dist, allowed, r));
            }
        }
        if let Some((dist, allowed, r)) = worst {
            let ok = dist <= allowed;
            if !ok {
                ev.witness(format!("restart-seed{}", r.seed), &cx.params(r));
            }
            ev.check(
                "restarts at log K end at the origin (||theta|| vs 10 ||grad R|| / h_0)",
                dist,
                format!("<= {allowed:.1e}"),
                ok,
                OnFail::Refutes,
                || format!("restart seed {} reaches log K away from the origin: a second minimiser, refuted (weights saved)", r.seed),
            );
        }
    }
}

/// Claims on a drawn latent set in the collapsed phase: the paper's central
/// claim (one representation per concept; directions only for non-uniform `mu`
/// without LayerNorm) at the restarts, and the concept geometry measured, not judged.
pub fn collapsed_drawn(cx: &Context, ev: &mut Evidence) {
    let (task, cfg) = (cx.task, cx.cfg);
    let tol = &cfg.tol;
    let lk = log_k(task);
    let best = cx.best();
    cx.converged(ev);
    if task.layer_norm().is_none() {
        let gap = lk - best.risk;
        ev.check(
            "best restart below R(0) = log K (the origin is a saddle)",
            gap,
            format!("> {:.1e}", floor(lk)),
            gap > floor(lk),
            OnFail::Undecided,
            || "lambda < lambda_critical makes the origin a saddle, yet no restart went below log K".into(),
        );
    }
    // central claim
    let btol = match_tol(cfg, best.risk, None);
    let every = cx.theorem == Theorem::One;
    if cx.theorem == Theorem::Two {
        // Not exact here (docs/theory.md §7): measured, never judged.
        ev.measure(
            "best restart: ||Phi - M|| / ||Phi|| of the directions",
            best.within_concept_spread,
            "type III is not critical on a drawn latent set: directions collapse only approximately",
        );
        ev.undecided = true;
        ev.reasons.push(format!(
            "on a drawn latent set theorem 2 claims nothing exact: directions collapse only approximately (spread {:.2e} at the best restart, R = {:.6}); see docs/theory.md §7",
            best.within_concept_spread, best.risk
        ));
    }
    let mut worst: Option<(f64, f64, &Restart)> = None;
    let mut elsewhere = 0;
    for r in cx.restarts.iter().filter(|r| r.converged) {
        let p = cx.params(r);
        let allowed = tol.family + spread_slack(task, &p, r.grad_norm);
        let at_best = (r.risk - best.risk).abs() <= btol;
        if !(every || at_best) {
            elsewhere += usize::from(r.within_concept_spread > allowed);
            continue;
        }
        let s = r.within_concept_spread;
        if worst.is_none_or(|(d, a, _)| !(s <= allowed) || s / allowed > d / a) {
            worst = Some((s, allowed, r));
        }
    }
    if let (Some((s, allowed, r)), false) = (worst, cx.theorem == Theorem::Two) {
        let ok = s <= allowed;
        if !ok {
            ev.witness(format!("restart-seed{}", r.seed), &cx.params(r));
        }
        let which = if every {
            "every converged restart"
        } else {
            "restarts at the best risk"
        };
        ev.check(
            &format!("one representation per concept at {which}"),
            s,
            format!("<= {allowed:.1e}"),
            ok,
            OnFail::Refutes,
            || {
                format!(
                    "restart seed {} (R = {:.6}) keeps the tokens of a concept apart (||Phi - M|| / ||Phi|| = {s:.2e}): the central claim is refuted here (weights saved)",
                    r.seed, r.risk
                )
            },
        );
    }
    ev.measure(
        "restarts elsewhere (above the best) without one representation per concept",
        elsewhere as f64,
        "local minima above the best risk; the claim is about minimisers",
    );
    // geometry, measured
    let Some(pred) = &cx.at.prediction else {
        return;
    };
    let pgain = lk - pred.risk;
    ev.measure(
        "latent-set prediction (equiangular frame) R_pred",
        pred.risk,
        "reduced objective of the equiangular configuration on this latent set",
    );
    ev.measure("best restart R_best", best.risk, "lowest risk found");
    ev.measure(
        "(R_pred - R_best) / max(1, |R_pred|)",
        (pred.risk - best.risk) / pred.risk.abs().max(1.0),
        "> 0: the equiangular geometry is not optimal for this latent set",
    );
    if pgain > 0.0 {
        ev.measure(
            "(R_pred - R_best) / (log K - R_pred)",
            (pred.risk - best.risk) / pgain,
            "the same, as a fraction of the prediction's gain over the origin",
        );
    }
    if let Some(f) = &best.family {
        ev.measure(
            "best restart: Gram error of the concept directions",
            f.gram_err,
            "max |<m_a, m_b> - E_ab|, 0 for an equiangular frame",
        );
        ev.measure(
            "best restart: family distance to the prediction",
            f.max,
            "largest relative distance to the equiangular family",
        );
    }
    if let Some(g) = cx.at.grad_rel {
        ev.measure(
            "||grad R|| / ||grad penalty|| at the latent-set prediction",
            g,
            "0 when the equiangular configuration is critical for this latent set",
        );
    }
    if let Some(h) = cx.hessian {
        ev.measure(
            "Hessian min eigenvalue at the latent-set prediction",
            h.min_eig,
            "negative: the equiangular configuration has a descent direction here",
        );
    }
    let mtol = match_tol(cfg, pred.risk, Some(pgain));
    ev.check(
        "best restart at or below the latent-set prediction (a known configuration)",
        best.risk - pred.risk,
        format!("<= {mtol:.1e}"),
        best.risk - pred.risk <= mtol,
        OnFail::Undecided,
        || format!("every restart ended above the equiangular configuration (best R = {:.6} vs {:.6}): the search was not good enough", best.risk, pred.risk),
    );
}

/// Slack of the within-concept spread at a point with gradient `g`: without
/// LayerNorm `R` is `lambda_W`-strongly convex in `W` for fixed `U`, so `W` is within
/// `g / lambda_W` of the `W`-minimiser; relative to the smallest token norm
/// (directions) this bounds the spread, times a safety factor 10.
fn spread_slack(task: &Task, p: &Params, g: f64) -> f64 {
    if task.layer_norm().is_some() || task.lambda_w() <= 0.0 {
        return 0.0;
    }
    let phi = features(p, None);
    let min_row = phi
        .chunks(task.dim())
        .map(norm)
        .fold(f64::INFINITY, f64::min);
    if min_row > 0.0 {
        10.0 * g / (task.lambda_w() * min_row)
    } else {
        f64::INFINITY
    }
}

/// Outside the hypotheses: no claim; the minimiser found is described.
pub fn outside(cx: &Context, outside: &[String], ev: &mut Evidence) {
    let task = cx.task;
    ev.reasons.push(format!(
        "outside the hypotheses of theorem {} ({}): the theorem makes no claim here; the minimiser found is described in the measurements",
        cx.theorem.number(),
        outside.join("; ")
    ));
    let best = cx.best();
    let n_conv = cx.restarts.iter().filter(|r| r.converged).count();
    ev.measure(
        "restarts converged",
        n_conv as f64,
        format!(
            "of {}; where the infimum is not attained the norms run away instead",
            cx.restarts.len()
        ),
    );
    ev.measure("best restart R_best", best.risk, "lowest risk found");
    if task.layer_norm().is_none() {
        ev.measure("R(0) = log K", log_k(task), "risk at the origin");
    }
    ev.measure("best restart ||W||_F", best.w_norm, "");
    ev.measure("best restart ||U||_F", best.u_norm, "");
    ev.measure(
        "best restart ||Phi - M|| / ||Phi||",
        best.within_concept_spread,
        "0: the tokens of each concept share one representation (directions without LayerNorm under non-uniform mu)",
    );
    if let Some(f) = &best.family {
        ev.measure(
            "best restart: Gram error of the concept directions",
            f.gram_err,
            "0 for an equiangular frame",
        );
    }
    if let Some(p) = &cx.at.prediction {
        ev.measure(
            "reduced prediction R_pred",
            p.risk,
            "the theorem's formula applied anyway",
        );
    }
    if let Some(e) = cx.at.exact {
        ev.measure(
            "exact R at the built prediction",
            e,
            "differs from R_pred where a hypothesis the formula uses fails",
        );
    }
}
