//! [`LimitProblem`]: the exact limit risk as an argmin problem (cost
//! [`risk`], gradient [`risk_grad`]) over the flat parameters `[W ; U]`.

use super::{risk, risk_grad};
use crate::network::Params;
use crate::task::Task;

/// The limit risk as an argmin problem over the flat parameters `[W ; U]`:
/// cost [`risk`] and gradient [`risk_grad`] of `shape.with_flat(x)`.
/// Check [`check_budget`](super::check_budget) before optimising.
pub struct LimitProblem<'a> {
    /// The task (sizes, `mu`, LayerNorm, weight decay, latent variables).
    pub task: &'a Task,
    /// Any parameters of the right shape; only the sizes are used.
    pub shape: Params,
}

impl LimitProblem<'_> {
    fn params(&self, x: &[f64]) -> std::result::Result<Params, argmin::core::Error> {
        self.shape
            .try_with_flat(x)
            .map_err(argmin::core::Error::msg)
    }
}

impl argmin::core::CostFunction for LimitProblem<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    /// [`risk`] at `shape.with_flat(x)`.
    fn cost(&self, x: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        Ok(risk(self.task, &self.params(x)?))
    }
}

impl argmin::core::Gradient for LimitProblem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    /// The gradient part of [`risk_grad`] at `shape.with_flat(x)`.
    fn gradient(&self, x: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(risk_grad(self.task, &self.params(x)?).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::tests::task;
    use crate::limit::{check_budget, DEFAULT_WORK_BUDGET};
    use crate::network::dot;
    use crate::task::{Freq, TaskConfig};
    use argmin::core::{CostFunction, Executor, Gradient, TerminationReason, TerminationStatus};
    use argmin::solver::linesearch::MoreThuenteLineSearch;
    use argmin::solver::quasinewton::LBFGS;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn argmin_problem_rejects_wrong_length() {
        let t = task(2, 2, None, None, Freq::Uniform);
        let prob = LimitProblem {
            task: &t,
            shape: Params::zeros(&t),
        };
        assert!(prob.cost(&vec![0.0; 3]).is_err());
        assert!(prob.gradient(&vec![0.0; 3]).is_err());
    }

    #[test]
    fn lbfgs_converges_on_a_tiny_instance() {
        let t = TaskConfig {
            n_c: 2,
            s_c: 2,
            len: 2,
            dim: 2,
            classes: None,
            freq: Freq::Uniform,
            layer_norm: None,
            norm: None,
            lambda_affine: None,
            lambda_w: 0.05,
            lambda_u: 0.05,
            seed: 0,
            latent: None,
        }
        .build()
        .unwrap();
        check_budget(&t, DEFAULT_WORK_BUDGET).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let x0 = Params::random(&t, 0.5, &mut rng).to_flat();
        let g0 = risk_grad(&t, &Params::zeros(&t).with_flat(&x0)).1;
        let prob = LimitProblem {
            task: &t,
            shape: Params::zeros(&t),
        };
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 7)
            .with_tolerance_grad(1e-8)
            .unwrap()
            .with_tolerance_cost(0.0)
            .unwrap();
        let res = Executor::new(prob, solver)
            .configure(|s| s.param(x0).max_iters(2000))
            .run()
            .unwrap();
        let state = res.state();
        assert_eq!(
            state.termination_status,
            TerminationStatus::Terminated(TerminationReason::SolverConverged)
        );
        let x = state.best_param.clone().unwrap();
        let g = risk_grad(&t, &Params::zeros(&t).with_flat(&x)).1;
        let norm = |v: &[f64]| dot(v, v).sqrt();
        assert!(norm(&g) < 1e-6, "gradient norm {}", norm(&g));
        assert!(norm(&g) < norm(&g0));
    }
}
