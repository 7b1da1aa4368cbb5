//! `verify`'s safeguarded L-BFGS ([`SafeLbfgs`]) on any smooth objective over flat
//! parameters, with the safeguards of [`crate::verify::minimise`]: an evaluation
//! cap ([`EvalCap`]), a guard against non-finite values, restarts with
//! a fresh memory when a round stalls above the gradient tolerance, and the
//! iteration cap reported as a failure (`converged == false`), never a pass.

use crate::error::{Error, Result};
use crate::verify::{norm, termination, EvalCap, SafeLbfgs};
use argmin::core::{CostFunction, Executor, Gradient, State};

/// Settings of one L-BFGS fit.
#[derive(Debug, Clone, Copy)]
pub struct LbfgsOptions {
    /// Converged when `||grad|| <= grad_tol`.
    pub grad_tol: f64,
    /// Iteration cap over all rounds; hitting it is a failure.
    pub max_iters: u64,
    /// L-BFGS memory.
    pub memory: usize,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions {
            grad_tol: 1e-9,
            max_iters: 5000,
            memory: 20,
        }
    }
}

/// A map of the point to an equivalent one (a symmetry of the objective).
pub type Normalise<'a> = &'a dyn Fn(&mut [f64]);

/// Where a fit ended.
#[derive(Debug, Clone)]
pub struct Fit {
    /// Final point.
    pub x: Vec<f64>,
    /// Objective at `x`.
    pub value: f64,
    /// `||grad||` at `x`.
    pub grad_norm: f64,
    /// Iterations over all rounds.
    pub iterations: u64,
    /// `grad_norm <= grad_tol` and the cap not hit.
    pub converged: bool,
    /// argmin's termination reason of the last round (or the evaluation error).
    pub termination: String,
}

/// `problem` with an evaluation cap and a non-finite guard.
struct Capped<'a, P> {
    inner: &'a P,
    cap: EvalCap,
}

impl<P: CostFunction<Param = Vec<f64>, Output = f64>> CostFunction for Capped<'_, P> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        self.cap.tick()?;
        let v = self.inner.cost(x)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(argmin::core::Error::msg("non-finite objective"))
        }
    }
}

impl<P: Gradient<Param = Vec<f64>, Gradient = Vec<f64>>> Gradient for Capped<'_, P> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        self.cap.tick()?;
        let g = self.inner.gradient(x)?;
        if g.iter().all(|v| v.is_finite()) {
            Ok(g)
        } else {
            Err(argmin::core::Error::msg("non-finite gradient"))
        }
    }
}

/// Minimises `problem` by L-BFGS ([`SafeLbfgs`], the solver `verify` uses) from `x0` until
/// `||grad|| <= opts.grad_tol`; up to five rounds, each restarted from the last
/// point with a fresh memory. `normalise`, if given, maps the point to an
/// equivalent one (a symmetry of the objective) before each round.
pub fn minimise<P>(
    problem: &P,
    x0: Vec<f64>,
    opts: &LbfgsOptions,
    normalise: Option<Normalise>,
) -> Result<Fit>
where
    P: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>,
{
    let mut x = x0;
    let mut iters = 0u64;
    let mut reason = String::new();
    let mut hit_cap = false;
    for _round in 0..5 {
        if let Some(f) = normalise {
            f(&mut x);
        }
        let remaining = opts.max_iters.saturating_sub(iters);
        if remaining == 0 {
            hit_cap = true;
            break;
        }
        let capped = Capped {
            inner: problem,
            cap: EvalCap::new(50 * opts.max_iters),
        };
        // verify's safeguarded L-BFGS: degenerate pairs skipped, non-finite
        // trial steps backtracked, memory reset on a non-descent direction.
        let solver = SafeLbfgs::new(opts.memory, opts.grad_tol);
        let res = match Executor::new(capped, solver)
            .configure(|s| s.param(x.clone()).max_iters(remaining))
            .ctrlc(false)
            .run()
        {
            Ok(res) => res,
            Err(e) => {
                reason = format!("evaluation failed: {e}");
                break;
            }
        };
        let state = res.state();
        iters += state.get_iter();
        if let Some(p) = state.get_param().or(state.get_best_param()) {
            x = p.clone();
        }
        let (text, capped) = termination(state.get_termination_status());
        reason = text;
        hit_cap |= capped;
        let g = problem
            .gradient(&x)
            .map_err(|e| Error::Optimiser(e.to_string()))?;
        if norm(&g) <= opts.grad_tol || hit_cap {
            break;
        }
    }
    let value = problem
        .cost(&x)
        .map_err(|e| Error::Optimiser(e.to_string()))?;
    let grad_norm = norm(
        &problem
            .gradient(&x)
            .map_err(|e| Error::Optimiser(e.to_string()))?,
    );
    Ok(Fit {
        converged: grad_norm <= opts.grad_tol && !hit_cap && value.is_finite(),
        x,
        value,
        grad_norm,
        iterations: iters,
        termination: reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `f(x) = sum_i (1 + i)(x_i - i)^2 + 0.1 (x_0 x_1)^2`: a smooth non-quadratic
    /// bowl with its minimum 0 at `x = (0, 1, 2, 3)`.
    struct Bowl;
    impl CostFunction for Bowl {
        type Param = Vec<f64>;
        type Output = f64;
        fn cost(&self, x: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
            Ok(x.iter()
                .enumerate()
                .map(|(i, v)| (1.0 + i as f64) * (v - i as f64).powi(2))
                .sum::<f64>()
                + 0.1 * (x[0] * x[1]).powi(2))
        }
    }
    impl Gradient for Bowl {
        type Param = Vec<f64>;
        type Gradient = Vec<f64>;
        fn gradient(&self, x: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
            let mut g: Vec<f64> = x
                .iter()
                .enumerate()
                .map(|(i, v)| 2.0 * (1.0 + i as f64) * (v - i as f64))
                .collect();
            g[0] += 0.2 * x[0] * x[1] * x[1];
            g[1] += 0.2 * x[1] * x[0] * x[0];
            Ok(g)
        }
    }

    #[test]
    fn converges_and_reports_the_cap_as_failure() {
        let opts = LbfgsOptions::default();
        let fit = minimise(&Bowl, vec![3.0; 4], &opts, None).unwrap();
        assert!(fit.converged, "{fit:?}");
        assert!(fit.grad_norm <= 1e-9);
        assert!(fit.x[0].abs() < 1e-9 && (fit.x[3] - 3.0).abs() < 1e-9);
        let capped = minimise(
            &Bowl,
            vec![3.0; 4],
            &LbfgsOptions {
                max_iters: 1,
                ..opts
            },
            None,
        )
        .unwrap();
        assert!(!capped.converged);
        assert_eq!(capped.iterations, 1);
    }
}
