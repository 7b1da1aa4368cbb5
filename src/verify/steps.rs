//! The named steps of [`super::verify_theorem`]: the prediction and what the
//! exact risk says there, the random restarts, and the shared checks (convergence,
//! none below, reaching, Hessian) that the claims of [`super::claims`] are built from.

use super::report::{Evidence, OnFail, Restart};
use super::{
    min_eigenpair, minimise, norm, recheck, HessianReport, Minimised, Theorem, VerifyConfig,
};
use crate::collapse::{self, Form, Prediction};
use crate::display::fixed;
use crate::error::Result;
use crate::limit;
use crate::metrics;
use crate::network::Params;
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
pub(super) fn floor(r: f64) -> f64 {
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

/// Round-off floor of `stationarity`: the loss gradient sums terms of the size
/// of the weights, so its absolute round-off is about
/// `c eps sqrt(n_params) (1 + ||theta||)` (`c` = `factor`, 64 by default);
/// relative to `||grad penalty||` this floor grows as the weight decay shrinks
/// (about `eps / lambda`).
pub fn stationarity_floor(task: &Task, p: &Params, factor: f64) -> f64 {
    let (w2, u2) = p.sq_norms();
    let theta = (w2 + u2).sqrt();
    factor * f64::EPSILON * (task.n_params() as f64).sqrt() * (1.0 + theta)
        / penalty_grad_norm(task, p).max(f64::MIN_POSITIVE)
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
/// The candidate is the prediction with `b` times `candidate_scale`
/// ([`VerifyConfig::candidate_scale`], 1 except when testing the verifier).
pub fn at_prediction(
    theorem: Theorem,
    task: &Task,
    inside: bool,
    candidate_scale: f64,
) -> Result<AtPrediction> {
    let predicted = collapse::predict(task, exact_form(task)).map(|mut p| {
        p.u_norm *= candidate_scale;
        p
    });
    let prediction = if inside {
        Some(predicted?)
    } else {
        predicted.ok()
    };
    let frame = collapse::equiangular_frame(task.n_c(), task.dim(), task.norm().centres());
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

/// The largest gradient at which a point at norm `theta` still counts as a
/// critical point: `1e-2 lambda_min max(1, theta)`, `lambda_min` the smallest
/// positive weight decay (infinite when there is none). The risk is about
/// `lambda_min`-strongly convex along the weights it decays, so a point with
/// this gradient is within about 1 % of its norm from the critical point; at
/// tiny weight decays an absolute `grad_tol` is not small next to this and the
/// restart has not converged.
pub fn resolved_grad(task: &Task, theta: f64) -> f64 {
    let lmin = [task.lambda_w(), task.lambda_u()]
        .into_iter()
        .filter(|l| *l > 0.0)
        .fold(f64::INFINITY, f64::min);
    1e-2 * lmin * theta.max(1.0)
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
            cfg.check_stop()?; // a raised stop flag: Error::Stopped before the next start
            let seed = cfg.seed.wrapping_add(i as u64);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let start = Params::random(task, cfg.init_scale, &mut rng);
            let Minimised {
                x,
                iterations,
                termination,
                hit_cap,
                evaluations,
                saddles,
                ..
            } = minimise(task, &start, cfg)?;
            let p = start.with_flat(&x);
            let (risk, g) = limit::risk_grad(task, &p);
            let grad_norm = norm(&g);
            let (w2, u2) = p.sq_norms();
            let resolved = grad_norm <= resolved_grad(task, (w2 + u2).sqrt());
            Ok(Restart {
                seed,
                risk,
                grad_norm,
                iterations,
                termination,
                converged: grad_norm <= cfg.grad_tol && !hit_cap && resolved,
                reached_prediction: false,
                evaluations,
                saddles: saddles.len(),
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
    pub(super) fn params(&self, r: &Restart) -> Params {
        Params::zeros(self.task).with_flat(&r.params)
    }

    pub(super) fn best(&self) -> &Restart {
        self.restarts
            .iter()
            .min_by(|a, b| a.risk.total_cmp(&b.risk))
            .expect("restarts >= 1")
    }

    /// Converged restarts, an `Undecided` check.
    pub(super) fn converged(&self, ev: &mut Evidence) {
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
        let unresolved = self
            .restarts
            .iter()
            .filter(|r| !r.converged && r.grad_norm <= self.cfg.grad_tol)
            .count();
        let hint = if unresolved > 0 {
            format!(
                "; {unresolved} of them met --grad-tol {:.0e}, which at this weight decay is not small next to the weight-decay gradient (a critical point needs ||grad R|| <= 1e-2 lambda max(1, ||theta||), about {:.1e}): pass a smaller --grad-tol",
                self.cfg.grad_tol,
                resolved_grad(self.task, 1.0)
            )
        } else {
            String::new()
        };
        // The list names at most 8 restarts (a run may have thousands).
        let shown = bad.len().min(8);
        let more = if bad.len() > shown {
            format!("; and {} more", bad.len() - shown)
        } else {
            String::new()
        };
        ev.check(
            "restarts converged (grad tol, no iteration cap)",
            (n - bad.len()) as f64,
            format!("= {n}"),
            bad.is_empty(),
            OnFail::Undecided,
            || {
                format!(
                    "{} of {n} restarts did not converge: {}{more}{hint}",
                    bad.len(),
                    bad[..shown].join("; ")
                )
            },
        );
    }

    /// No restart below `r_star` beyond tolerance. A restart below it refutes
    /// (`Refutes`, the restart is the witness) only if the exact risks of the
    /// restart and of the claimed minimiser `at`, evaluated again, differ by more
    /// than both evaluation errors ([`recheck::lower_point`]); otherwise the gap is
    /// round-off and the check is `Undecided`.
    pub(super) fn none_below(&self, ev: &mut Evidence, r_star: f64, at: &Params, what: &str) {
        let best = self.best();
        let gap = (r_star - best.risk) / r_star.abs().max(1.0);
        let tol = self.cfg.tol.below_prediction;
        let ok = gap <= tol;
        let check = (!ok).then(|| recheck::lower_point(self.task, &self.params(best), at));
        let holds = check.as_ref().is_some_and(|c| c.holds);
        if holds {
            ev.witness(format!("restart-seed{}", best.seed), &self.params(best));
        }
        ev.check(
            &format!("no restart below {what} (rel gap R* - R_best)"),
            gap,
            format!("<= {tol:.0e}"),
            ok,
            OnFail::rechecked(ok, holds),
            || {
                let detail = check.map(|c| c.detail).unwrap_or_default();
                if holds {
                    format!(
                        "restart seed {} ends at R = {} below {what} {}; {detail}: the claim is refuted (weights saved)",
                        best.seed,
                        fixed(best.risk, 15),
                        fixed(r_star, 15)
                    )
                } else {
                    format!(
                        "restart seed {} ends at R = {} below {what} {}, but not beyond the evaluation error ({detail}): undecided",
                        best.seed,
                        fixed(best.risk, 15),
                        fixed(r_star, 15)
                    )
                }
            },
        );
    }

    /// The best restart reaches `r_star` within `tol` (`Undecided`).
    pub(super) fn best_reaches(&self, ev: &mut Evidence, r_star: f64, tol: f64, what: &str) {
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

    /// Hessian checks at a claimed minimiser: the transverse curvature is not
    /// negative, and strictly positive (`Undecided` when it is zero to tolerance).
    ///
    /// The curvature along the symmetry orbit is zero up to round-off and is only
    /// measured. "Negative" means below `-max(tol max eig, 10 error_estimate)`:
    /// the floor is never under the Hessian's own measured error (the largest
    /// eigenvalue alone goes to 0 with the weight decay). A negative transverse
    /// eigenvalue refutes only when the exact risk confirms it along its
    /// eigenvector ([`recheck::negative_curvature`]); otherwise it is `Undecided`.
    pub(super) fn hessian(&self, ev: &mut Evidence, h: &HessianReport, at: &Params, label: &str) {
        let tol = &self.cfg.tol;
        let scale = h.max_eig.abs().max(f64::MIN_POSITIVE);
        let noise = 10.0 * h.error_estimate;
        let floor = -(tol.hessian_negative * scale).max(noise);
        ev.measure(
            "Hessian min eigenvalue, all directions",
            h.min_eig,
            "includes the symmetry directions, where the curvature is 0 up to round-off; only the transverse spectrum is judged",
        );
        let t = h.transverse_min_eig;
        let neg = t < floor;
        let passed = !neg && !t.is_nan();
        let check = neg.then(|| {
            min_eigenpair(self.task, at)
                .map(|pair| recheck::negative_curvature(self.task, at, &pair.vector, pair.min_eig))
        });
        let holds = matches!(&check, Some(Ok(c)) if c.holds);
        if holds {
            ev.witness(label.to_string(), at);
        }
        ev.check(
            "Hessian min eigenvalue transverse to symmetries, not negative",
            t,
            format!(">= {floor:.1e}"),
            passed,
            OnFail::rechecked(passed, holds),
            || match check {
                Some(Ok(c)) if c.holds => format!(
                    "negative transverse curvature {t:.3e} at the {label}; {}: refuted (weights saved)",
                    c.detail
                ),
                Some(Ok(c)) => format!(
                    "transverse curvature {t:.3e} at the {label} is below the floor {floor:.1e}, but {}: undecided",
                    c.detail
                ),
                Some(Err(e)) => format!(
                    "transverse curvature {t:.3e} at the {label} could not be re-checked ({e}): undecided"
                ),
                None => format!("transverse curvature {t:.3e} at the {label} is not a number: undecided"),
            },
        );
        let pos = (tol.transverse_positive * scale).max(noise);
        ev.check(
            "Hessian min eigenvalue transverse to symmetries, positive",
            t,
            format!("> {pos:.1e}"),
            t > pos,
            OnFail::Undecided,
            || {
                format!(
                    "transverse curvature {t:.3e} at the {label} is zero to tolerance: a degenerate point, strictness undecided"
                )
            },
        );
    }
}
