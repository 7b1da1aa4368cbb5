//! The claims that belong to an instance (its phase, full or drawn latent set,
//! inside or outside the hypotheses), each turned into checks and measurements.

use super::report::{Evidence, OnFail, Restart};
use super::steps::{floor, log_k, match_tol, rel, Context};
use super::{norm, recheck, Theorem};
use crate::collapse;
use crate::display::fixed;
use crate::network::{features, Params};
use crate::task::Task;

/// The entry with the largest `value / allowed` (a NaN value counts as infinite).
fn worst<'a>(
    items: impl Iterator<Item = (f64, f64, &'a Restart)>,
) -> Option<(f64, f64, &'a Restart)> {
    let ratio = |v: f64, a: f64| if v.is_nan() { f64::INFINITY } else { v / a };
    items.max_by(|x, y| ratio(x.0, x.1).total_cmp(&ratio(y.0, y.1)))
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
    // The tolerance never goes below the round-off floor of the residual (which
    // grows as lambda shrinks); a NaN residual (extreme inputs) decides nothing.
    let gtol = tol.grad_at_prediction.max(super::steps::stationarity_floor(
        cx.task,
        built,
        tol.stationarity_round_off,
    ));
    // Not critical refutes only if the exact risk really decreases along -grad R.
    let check = (g > gtol).then(|| {
        let grad = crate::limit::risk_grad(task, built).1;
        recheck::descent(task, built, &grad)
    });
    let holds = check.as_ref().is_some_and(|c| c.holds);
    if holds {
        ev.witness("prediction".into(), built);
    }
    ev.check(
        "||grad R|| / ||grad penalty|| at prediction",
        g,
        format!("<= {gtol:.0e}"),
        g <= gtol,
        OnFail::rechecked(g <= gtol, holds),
        || match check {
            Some(c) if c.holds => format!(
                "the predicted configuration is not critical (relative gradient {g:.1e}); {}: refuted (weights saved)",
                c.detail
            ),
            Some(c) => format!(
                "relative gradient {g:.1e} at the prediction is above tolerance, but {}: undecided",
                c.detail
            ),
            None => format!("relative gradient {g:.1e} at the prediction: undecided"),
        },
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
    cx.none_below(ev, pred.risk, built, "the prediction");
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
    // Only converged restarts (critical points) count as other minimisers.
    let reached: Vec<&Restart> = cx
        .restarts
        .iter()
        .filter(|r| r.converged && (r.risk - pred.risk).abs() <= mtol)
        .collect();
    if reached.is_empty() {
        return;
    }
    let (d, allowed, r) = worst(reached.iter().map(|r| {
        let d = r.family.as_ref().map_or(f64::NAN, |f| f.max);
        let allowed = tol.family + h_t.map_or(0.0, |h| 10.0 * r.grad_norm / (h * scale));
        (d, allowed, *r)
    }))
    .expect("reached is not empty");
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
    cx.none_below(ev, lk, &origin, "R(0) = log K");
    let mtol = match_tol(cx.cfg, lk, None);
    cx.best_reaches(ev, lk, mtol, "R(0) = log K");
    if h0 > 0.0 {
        let found = worst(
            cx.restarts
                .iter()
                .filter(|r| r.converged && (r.risk - lk).abs() <= mtol)
                .map(|r| {
                    let dist = (r.w_norm.powi(2) + r.u_norm.powi(2)).sqrt();
                    (dist, 10.0 * r.grad_norm / h0 + 1e-12, r)
                }),
        );
        if let Some((dist, allowed, r)) = found {
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
    if task.norm().is_linear() {
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
    let mut judged = Vec::new();
    let mut elsewhere = 0;
    for r in cx.restarts.iter().filter(|r| r.converged) {
        let allowed = tol.family + spread_slack(task, &cx.params(r), r.grad_norm);
        let at_best = (r.risk - best.risk).abs() <= btol;
        if every || at_best {
            judged.push((r.within_concept_spread, allowed, r));
        } else if r.within_concept_spread > allowed {
            elsewhere += 1;
        }
    }
    // Without the convexity argument of theorem 1, a restart that keeps a concept
    // apart is evidence only if it lies below every collapsed configuration known
    // (the latent-set prediction and the collapsed restarts) beyond round-off.
    let known = cx
        .restarts
        .iter()
        .filter(|r| {
            r.converged
                && r.within_concept_spread
                    <= tol.family + spread_slack(task, &cx.params(r), r.grad_norm)
        })
        .map(|r| r.risk)
        .chain(cx.at.prediction.as_ref().map(|p| p.risk))
        .fold(f64::INFINITY, f64::min);
    if let (Some((s, allowed, r)), false) = (worst(judged.into_iter()), cx.theorem == Theorem::Two)
    {
        let ok = s <= allowed;
        let e = crate::limit::risk_error_bound(task, &cx.params(r));
        let below = every || recheck::clearly_below(r.risk, e, known, e);
        // The spread must survive further optimisation from the restart.
        let polished = (!ok && below).then(|| polish(cx, r));
        // ...and no collapsed configuration made from it may be as low.
        let projected = match &polished {
            Some(Some((p, _, _))) if !every => collapsed_projection(cx, p),
            _ => None,
        };
        let kept = match &polished {
            Some(Some((_, risk, spread))) => {
                *spread > allowed
                    && *spread >= 0.5 * s
                    && (every
                        || (recheck::clearly_below(*risk, e, known, e)
                            && projected.is_some_and(|rp| recheck::clearly_below(*risk, e, rp, e))))
            }
            _ => false,
        };
        let refutes = !ok && below && kept;
        if let (true, Some(Some((p, _, _)))) = (refutes, &polished) {
            ev.witness(format!("restart-seed{}", r.seed), p);
        }
        let polish_note = match &polished {
            Some(Some((_, risk, _)))
                if !kept && projected.is_some_and(|rp| !recheck::clearly_below(*risk, e, rp, e)) =>
            {
                format!(
                    "; a collapsed configuration made from it (each concept's mean representation, then optimised) reaches R = {}, as low: undecided",
                    fixed(projected.unwrap_or(f64::NAN), 9)
                )
            }
            Some(Some((_, risk, spread))) if !kept => format!(
                "; continued to a 1000 times smaller gradient it ends at R = {} with spread {spread:.2e}: the restart had not reached its minimiser, undecided",
                fixed(*risk, 9)
            ),
            Some(None) => "; continuing the restart failed: undecided".to_string(),
            _ => String::new(),
        };
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
            OnFail::rechecked(ok, refutes),
            || {
                if refutes {
                    format!(
                        "restart seed {} (R = {}) keeps the tokens of a concept apart (||Phi - M|| / ||Phi|| = {s:.2e}){}: the central claim is refuted here (weights saved)",
                        r.seed,
                        fixed(r.risk, 6),
                        if every { String::new() } else { format!(", below every collapsed configuration found (R = {})", fixed(known, 6)) }
                    )
                } else if below {
                    format!(
                        "restart seed {} (R = {}) keeps the tokens of a concept apart (||Phi - M|| / ||Phi|| = {s:.2e}){polish_note}",
                        r.seed,
                        fixed(r.risk, 6)
                    )
                } else {
                    format!(
                        "restart seed {} (R = {}) keeps the tokens of a concept apart (||Phi - M|| / ||Phi|| = {s:.2e}), but a collapsed configuration is as low or lower (R = {}): it is not a global minimiser, undecided",
                        r.seed,
                        fixed(r.risk, 6),
                        fixed(known, 6)
                    )
                }
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

/// Continues restart `r` with a gradient tolerance 1000 times below the
/// gradient it stopped at and four times the iteration cap: its end point,
/// risk and within-concept spread (none if the run fails or does not converge).
fn polish(cx: &Context, r: &Restart) -> Option<(Params, f64, f64)> {
    let cfg = super::VerifyConfig {
        grad_tol: (1e-3 * r.grad_norm)
            .min(cx.cfg.grad_tol)
            .max(f64::MIN_POSITIVE),
        max_iters: cx.cfg.max_iters.saturating_mul(4),
        ..cx.cfg.clone()
    };
    let start = cx.params(r);
    let m = super::minimise(cx.task, &start, &cfg).ok()?;
    if m.hit_cap {
        return None;
    }
    let p = start.with_flat(&m.x);
    let risk = crate::limit::risk(cx.task, &p);
    let spread = crate::metrics::within_concept_spread(cx.task, &p);
    Some((p, risk, spread))
}

/// The lowest risk of a collapsed configuration made from `p`: every token's
/// representation replaced by its concept's mean (of `phi(w_t)`, which LayerNorm
/// maps to itself), then L-BFGS from there; the end point counts only if it is
/// still collapsed. None if that fails.
fn collapsed_projection(cx: &Context, p: &Params) -> Option<f64> {
    let task = cx.task;
    let phi = features(p, task.norm());
    let (d, s_c) = (task.dim(), task.s_c());
    let mut q = p.clone();
    for c in 0..task.n_c() {
        let mut mean = vec![0.0; d];
        for t in c * s_c..(c + 1) * s_c {
            for (m, v) in mean.iter_mut().zip(&phi[t * d..(t + 1) * d]) {
                *m += v / s_c as f64;
            }
        }
        for t in c * s_c..(c + 1) * s_c {
            q.w[t * d..(t + 1) * d].copy_from_slice(&mean);
        }
    }
    let at_projection = crate::limit::risk(task, &q);
    let m = super::minimise(task, &q, cx.cfg).ok()?;
    let end = q.with_flat(&m.x);
    let spread = crate::metrics::within_concept_spread(task, &end);
    let r_end = crate::limit::risk(task, &end);
    let optimised = if spread <= cx.cfg.tol.family && !m.hit_cap {
        r_end
    } else {
        f64::INFINITY
    };
    Some(at_projection.min(optimised))
}

/// Slack of the within-concept spread at a point with gradient `g`: without
/// LayerNorm `R` is `lambda_W`-strongly convex in `W` for fixed `U`, so `W` is within
/// `g / lambda_W` of the `W`-minimiser; relative to the smallest token norm
/// (directions) this bounds the spread, times a safety factor 10.
fn spread_slack(task: &Task, p: &Params, g: f64) -> f64 {
    if !task.norm().is_linear() || task.lambda_w() <= 0.0 {
        return 0.0;
    }
    let phi = features(p, task.norm());
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
    if task.norm().is_linear() {
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
