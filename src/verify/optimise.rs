//! L-BFGS on the exact limit risk, with the safeguards a verification needs:
//! an evaluation cache, a cap on evaluations, the round-off safeguards of
//! [`SafeLbfgs`], and escape from saddle points along negative curvature.

mod lbfgs;

pub use lbfgs::{SafeLbfgs, Safeguards};

use super::{hessian, norm, VerifyConfig};
use crate::error::{Error, Result};
use crate::limit::{self, LimitProblem};
use crate::network::Params;
use crate::task::Task;
use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Largest number of saddle escapes of one restart.
pub const MAX_ESCAPES: usize = 5;

/// Hessian-vector products of the negative-curvature probe at the end of a
/// restart (Lanczos above [`hessian::DENSE_MAX_PARAMS`] parameters): a
/// saddle's negative eigenvalue is an extreme one and shows within a few dozen
/// products; the full certificate is computed at the prediction only.
pub const ESCAPE_PRODUCTS: usize = 60;

/// A saddle point met by a restart: a point with `||grad R|| <= grad_tol` where the
/// smallest Hessian eigenvalue is below `-tol.hessian_negative * max(1, |lambda_max|)`.
#[derive(Debug, Clone, Serialize)]
pub struct Saddle {
    /// `R` at the saddle.
    pub risk: f64,
    /// `||grad R||` there.
    pub grad_norm: f64,
    /// Smallest Hessian eigenvalue there.
    pub min_eig: f64,
    /// The step `alpha` taken along the unit eigenvector (sign included).
    pub step: f64,
    /// `R` after the step.
    pub risk_after: f64,
}

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
    /// Full enumerations of the exact risk (one [`limit::risk`] or
    /// [`limit::risk_grad`] each), the second-order checks excluded.
    pub evaluations: u64,
    /// Safeguards used (memory resets, backtracked non-finite steps, skipped pairs).
    pub safeguards: Safeguards,
    /// Saddle points met and escaped (or not: the last one is kept when no
    /// step along its eigenvector lowered `R`).
    pub saddles: Vec<Saddle>,
}

/// Options of [`minimise_with`] that [`minimise`] fixes.
#[derive(Debug, Clone, Copy)]
pub struct MinimiseOptions {
    /// Reuse the last evaluation: argmin asks for the cost and then the gradient
    /// at the same point; with the cache one [`limit::risk_grad`] serves both.
    pub cache: bool,
    /// After convergence, check the smallest Hessian eigenvalue and step along
    /// its eigenvector when it is negative (then minimise again).
    pub escape_saddles: bool,
}

/// A count of objective evaluations with a cap: past it every evaluation fails,
/// which ends an argmin run with a solver exit (More–Thuente has no cap of its own).
pub struct EvalCap {
    evals: AtomicU64,
    cap: u64,
}

impl EvalCap {
    /// At most `cap` evaluations.
    pub fn new(cap: u64) -> Self {
        EvalCap {
            evals: AtomicU64::new(0),
            cap,
        }
    }

    /// Counts one evaluation; an error once the cap is passed.
    pub fn tick(&self) -> std::result::Result<(), argmin::core::Error> {
        if self.evals.fetch_add(1, Ordering::Relaxed) >= self.cap {
            return Err(argmin::core::Error::msg(format!(
                "evaluation cap of {} reached",
                self.cap
            )));
        }
        Ok(())
    }

    /// Evaluations counted so far.
    pub fn count(&self) -> u64 {
        self.evals.load(Ordering::Relaxed)
    }
}

/// argmin's termination status as text, and whether it is the iteration cap
/// (which a verification counts as a failure, never a pass).
pub fn termination(status: &TerminationStatus) -> (String, bool) {
    match status {
        TerminationStatus::Terminated(r) => (
            r.text().to_string(),
            *r == TerminationReason::MaxItersReached,
        ),
        TerminationStatus::NotTerminated => ("not terminated".to_string(), false),
    }
}

/// The last evaluation: point, risk, gradient.
type Cached = (Vec<f64>, f64, Vec<f64>);

/// The limit-risk problem with an optional one-point cache, an evaluation
/// counter, a cap on the number of evaluations (past it every evaluation fails,
/// which ends the run with a solver exit) and a guard against non-finite values.
struct EvalProblem<'a> {
    inner: LimitProblem<'a>,
    cache: Option<Mutex<Option<Cached>>>,
    cap: EvalCap,
}

type ArgResult<T> = std::result::Result<T, argmin::core::Error>;

impl EvalProblem<'_> {
    /// `(R, grad R)` at `x`, from the cache when `x` is the last point.
    fn both(&self, cache: &Mutex<Option<Cached>>, x: &Vec<f64>) -> ArgResult<(f64, Vec<f64>)> {
        let mut slot = cache.lock().expect("cache lock");
        if let Some((cx, r, g)) = slot.as_ref() {
            if cx == x {
                return Ok((*r, g.clone()));
            }
        }
        self.cap.tick()?;
        let (r, g) = limit::risk_grad(self.inner.task, &self.inner.shape.with_flat(x));
        *slot = Some((x.clone(), r, g.clone()));
        Ok((r, g))
    }
}

fn finite(v: f64) -> ArgResult<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(argmin::core::Error::msg("non-finite risk"))
    }
}

impl CostFunction for EvalProblem<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> ArgResult<f64> {
        match &self.cache {
            Some(c) => finite(self.both(c, x)?.0),
            None => {
                self.cap.tick()?;
                finite(self.inner.cost(x)?)
            }
        }
    }
}

impl Gradient for EvalProblem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> ArgResult<Vec<f64>> {
        let g = match &self.cache {
            Some(c) => self.both(c, x)?.1,
            None => {
                self.cap.tick()?;
                self.inner.gradient(x)?
            }
        };
        finite(g.iter().sum())?;
        Ok(g)
    }
}

/// [`minimise_with`] with the cache on, and the saddle escape on when
/// `cfg.hessian` is set.
pub fn minimise(task: &Task, start: &Params, cfg: &VerifyConfig) -> Result<Minimised> {
    minimise_with(
        task,
        start,
        cfg,
        MinimiseOptions {
            cache: true,
            escape_saddles: cfg.hessian,
        },
    )
}

/// Runs [`SafeLbfgs`] (More–Thuente line search) on the exact limit risk from
/// `start` until `||grad R|| <= cfg.grad_tol`. When a round ends early above the
/// tolerance (line search failed after its retries), up to four more rounds
/// restart from the last point with a fresh memory; the iteration cap counts all
/// rounds. With LayerNorm and `lambda_W = 0`, each round starts by replacing every
/// `w_t` by `phi(w_t)`, a symmetry of `R`, which keeps the scale-free directions
/// well conditioned. A raised `cfg.stop` ends it with [`crate::Error::Stopped`]
/// before the next round.
///
/// Saddle escape (`opts.escape_saddles`): at a converged point the smallest
/// Hessian eigenpair `(lambda_min, v)` transverse to the symmetries is computed
/// ([`hessian::min_eigenpair_with`], dense, or at most `ESCAPE_PRODUCTS`
/// Lanczos products with relative residual `1e-6`);
/// when `lambda_min < -tol.hessian_negative * max(1, |lambda_max|)`, the point moves
/// to `x + alpha v` with the first `alpha` in `±{1, 1/4, 1/16, ...}` (`|v| = 1`, eight
/// sizes) that lowers `R`, and minimisation continues, at most `MAX_ESCAPES` times.
pub fn minimise_with(
    task: &Task,
    start: &Params,
    cfg: &VerifyConfig,
    opts: MinimiseOptions,
) -> Result<Minimised> {
    let mut x = start.to_flat();
    let mut iters_total = 0u64;
    let mut evals = 0u64;
    let mut reason = String::new();
    let mut hit_cap = false;
    let mut guards = Safeguards::default();
    let mut saddles = Vec::new();
    let mut round = 0;
    while round < 5 {
        cfg.check_stop()?;
        round += 1;
        if !task.norm().is_none() && task.lambda_w() == 0.0 {
            // R is invariant under w_t -> standardise(w_t) when eps = 0 and
            // lambda_W = 0: move every w_t back to the normalised set.
            let nw = start.w.len();
            for row in x[..nw].chunks_mut(task.dim()) {
                task.norm().standardise(row);
            }
        }
        let remaining = cfg.max_iters.saturating_sub(iters_total);
        if remaining == 0 {
            hit_cap = true;
            break;
        }
        let problem = EvalProblem {
            inner: LimitProblem {
                task,
                shape: start.clone(),
            },
            cache: opts.cache.then(|| Mutex::new(None)),
            cap: EvalCap::new(50 * cfg.max_iters),
        };
        let solver = SafeLbfgs::new(cfg.lbfgs_memory, cfg.grad_tol);
        let run = Executor::new(problem, solver)
            .configure(|s| s.param(x.clone()).max_iters(remaining))
            .ctrlc(false)
            .run();
        let res = match run {
            Ok(res) => res,
            Err(e) => {
                reason = format!("evaluation failed: {e}");
                break;
            }
        };
        let state = res.state();
        iters_total += state.get_iter();
        if let Some(p) = res.problem.problem.as_ref() {
            evals += p.cap.count();
        }
        let g = &res.solver.guards;
        guards.resets += g.resets;
        guards.backtracks += g.backtracks;
        guards.skipped_pairs += g.skipped_pairs;
        guards.approximate_wolfe += g.approximate_wolfe;
        if let Some(p) = state.get_param().or(state.get_best_param()) {
            x = p.clone();
        }
        let (text, capped) = termination(state.get_termination_status());
        reason = text;
        hit_cap |= capped;
        let p = start.with_flat(&x);
        let (r, g) = limit::risk_grad(task, &p);
        evals += 1;
        let gnorm = norm(&g);
        if hit_cap {
            break;
        }
        if gnorm <= cfg.grad_tol {
            if !opts.escape_saddles || saddles.len() >= MAX_ESCAPES {
                break;
            }
            match escape(task, &p, r, gnorm, cfg)? {
                None => break,
                Some((xn, saddle)) => {
                    let moved = saddle.risk_after < saddle.risk;
                    saddles.push(saddle);
                    if !moved {
                        break;
                    }
                    x = xn;
                    round = 0;
                }
            }
        }
    }
    Ok(Minimised {
        x,
        iterations: iters_total,
        termination: reason,
        hit_cap,
        evaluations: evals,
        safeguards: guards,
        saddles,
    })
}

/// At a converged point `p` with risk `r`: `None` when the smallest Hessian
/// eigenvalue is not negative beyond tolerance; otherwise the point after a step
/// along its eigenvector and the saddle record (`risk_after = risk` when no step
/// lowered `R`).
fn escape(
    task: &Task,
    p: &Params,
    r: f64,
    grad_norm: f64,
    cfg: &VerifyConfig,
) -> Result<Option<(Vec<f64>, Saddle)>> {
    // Err only when the symmetry tangents span everything: no transverse direction.
    let Ok(pair) = hessian::min_eigenpair_with(task, p, ESCAPE_PRODUCTS, 1e-6) else {
        return Ok(None);
    };
    let floor = -cfg.tol.hessian_negative * pair.max_eig.abs().max(1.0);
    if pair.min_eig >= floor {
        return Ok(None);
    }
    let x0 = p.to_flat();
    let mut alpha = 1.0;
    for _ in 0..8 {
        for sign in [1.0, -1.0] {
            let xn: Vec<f64> = x0
                .iter()
                .zip(&pair.vector)
                .map(|(a, v)| a + sign * alpha * v)
                .collect();
            let rn = limit::risk(task, &p.with_flat(&xn));
            if rn.is_finite() && rn < r {
                return Ok(Some((
                    xn,
                    Saddle {
                        risk: r,
                        grad_norm,
                        min_eig: pair.min_eig,
                        step: sign * alpha,
                        risk_after: rn,
                    },
                )));
            }
        }
        alpha *= 0.25;
    }
    if !pair.min_eig.is_finite() {
        return Err(Error::Optimiser("non-finite Hessian eigenvalue".into()));
    }
    Ok(Some((
        x0,
        Saddle {
            risk: r,
            grad_norm,
            min_eig: pair.min_eig,
            step: 0.0,
            risk_after: r,
        },
    )))
}
