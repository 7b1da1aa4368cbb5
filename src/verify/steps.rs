//! The named steps of [`super::verify_theorem`]: the prediction and what the
//! exact risk says there, the random restarts, and the shared checks (convergence,
//! none below, reaching, Hessian) that the claims of [`super::claims`] are built from.

use super::report::{Evidence, OnFail, Restart};
use super::{minimise, norm, HessianReport, Minimised, Theorem, VerifyConfig};
use crate::collapse::{self, Form, Prediction};
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
                evaluations,
                saddles,
                ..
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
    pub(super) fn none_below(&self, ev: &mut Evidence, r_star: f64, what: &str) {
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

    /// Hessian checks at a claimed minimiser: not negative (`Refutes`), and
    /// strictly positive transverse to the symmetries (`Undecided`).
    pub(super) fn hessian(&self, ev: &mut Evidence, h: &HessianReport, at: &Params, label: &str) {
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
