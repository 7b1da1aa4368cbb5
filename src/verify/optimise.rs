//! L-BFGS (argmin) on the exact limit risk, with the safeguards a verification needs.

use super::{norm, VerifyConfig};
use crate::error::{Error, Result};
use crate::limit::{self, LimitProblem};
use crate::network::{features, Params};
use crate::task::Task;
use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where one L-BFGS run ended.
#[derive(Debug, Clone)]
pub struct Minimised {
    /// Final point, flat `[W ; U]`.
    pub x: Vec<f64>,
    /// L-BFGS iterations over all rounds.
    pub iterations: u64,
    /// argmin's termination reason of the last round (or the evaluation error).
    pub termination: String,
    /// The iteration cap was hit.
    pub hit_cap: bool,
}

/// The limit-risk problem with a cap on the number of evaluations and a guard
/// against non-finite values: argmin's More–Thuente line search has no iteration
/// cap of its own and can cycle at a LayerNorm singularity, so past the cap (or on
/// a NaN/inf risk) every evaluation fails, which ends the run with a solver exit.
struct CappedProblem<'a> {
    inner: LimitProblem<'a>,
    evals: AtomicU64,
    cap: u64,
}

impl CappedProblem<'_> {
    fn tick(&self) -> std::result::Result<(), argmin::core::Error> {
        if self.evals.fetch_add(1, Ordering::Relaxed) >= self.cap {
            return Err(argmin::core::Error::msg(format!(
                "evaluation cap of {} reached",
                self.cap
            )));
        }
        Ok(())
    }
}

fn finite(v: f64) -> std::result::Result<f64, argmin::core::Error> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(argmin::core::Error::msg("non-finite risk"))
    }
}

impl CostFunction for CappedProblem<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        self.tick()?;
        finite(self.inner.cost(x)?)
    }
}

impl Gradient for CappedProblem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        self.tick()?;
        let g = self.inner.gradient(x)?;
        finite(g.iter().sum())?;
        Ok(g)
    }
}

/// Runs L-BFGS (argmin, More–Thuente line search) on the exact limit risk from
/// `start` until `||grad R|| <= cfg.grad_tol`. When a round ends early (line search
/// at round-off, stalled cost) above the tolerance, up to four more rounds restart
/// from the last point with a fresh memory; the iteration cap counts all rounds.
/// With LayerNorm and `lambda_W = 0`, each round starts by replacing every `w_t` by
/// `phi(w_t)`, a symmetry of `R`, which keeps the scale-free directions well conditioned.
pub fn minimise(task: &Task, start: &Params, cfg: &VerifyConfig) -> Result<Minimised> {
    let mut x = start.to_flat();
    let mut iters_total = 0u64;
    let mut reason = String::new();
    let mut hit_cap = false;
    for _round in 0..5 {
        if let (Some(eps), true) = (task.layer_norm(), task.lambda_w() == 0.0) {
            // R is invariant under w_t -> phi(w_t) when eps = 0 and lambda_W = 0:
            // move every w_t back to unit variance and zero mean, which keeps
            // the scale-free directions well conditioned for L-BFGS.
            let nw = start.w.len();
            let w = start.with_flat(&x).w;
            let normalised = features(&Params { w, ..start.clone() }, Some(eps));
            x[..nw].copy_from_slice(&normalised);
        }
        let problem = CappedProblem {
            inner: LimitProblem {
                task,
                shape: start.clone(),
            },
            evals: AtomicU64::new(0),
            cap: 50 * cfg.max_iters,
        };
        let linesearch = MoreThuenteLineSearch::new();
        let solver = LBFGS::new(linesearch, cfg.lbfgs_memory)
            .with_tolerance_grad(cfg.grad_tol)
            .map_err(|e| Error::Optimiser(e.to_string()))?
            .with_tolerance_cost(0.0)
            .map_err(|e| Error::Optimiser(e.to_string()))?;
        let remaining = cfg.max_iters.saturating_sub(iters_total);
        if remaining == 0 {
            hit_cap = true;
            break;
        }
        let res = match Executor::new(problem, solver)
            .configure(|s| s.param(x.clone()).max_iters(remaining))
            .ctrlc(false)
            .run()
        {
            Ok(res) => res,
            Err(e) => {
                // an evaluation failed outside the line search: the run failed
                reason = format!("evaluation failed: {e}");
                break;
            }
        };
        let state = res.state();
        iters_total += state.get_iter();
        // The last iterate, not the best-cost one: at round-off level an earlier
        // iterate can have a lower cost and a larger gradient. When the line search
        // fails, argmin's L-BFGS leaves no current iterate: take the best one then
        // (otherwise the next round would restart from this round's start).
        if let Some(p) = state.get_param().or(state.get_best_param()) {
            x = p.clone();
        }
        reason = match state.get_termination_status() {
            TerminationStatus::Terminated(r) => {
                if *r == TerminationReason::MaxItersReached {
                    hit_cap = true;
                }
                r.text().to_string()
            }
            TerminationStatus::NotTerminated => "not terminated".to_string(),
        };
        let (_, g) = limit::risk_grad(task, &start.with_flat(&x));
        if norm(&g) <= cfg.grad_tol || hit_cap {
            break;
        }
    }
    Ok(Minimised {
        x,
        iterations: iters_total,
        termination: reason,
        hit_cap,
    })
}
