//! [`SafeLbfgs`]: L-BFGS as an argmin [`Solver`], with the safeguards that an
//! exact verification needs at round-off level.
//!
//! The search direction is the two-loop recursion `d = -H_k g_k` of the last `m`
//! curvature pairs `(s_i, y_i) = (x_{i+1} - x_i, g_{i+1} - g_i)`, scaled by
//! `gamma = s·y / y·y` of the newest pair, and the step comes from argmin's
//! More–Thuente line search (strong Wolfe conditions). Unlike argmin's `LBFGS`:
//!
//! * a pair is stored only when `s·y > 1e-12 ||s|| ||y||` and both are finite.
//!   At round-off, More–Thuente can end on its interval-width test at step 0, so
//!   `s = y = 0`; argmin's `LBFGS` stores that pair and the next recursion computes
//!   `gamma = 0/0`: every trial point is NaN, which is where the "non-finite risk"
//!   of a converging restart came from (the log-sum-exp itself stays finite);
//! * a direction that is non-finite or not a descent direction (`g·d >= 0`, which
//!   happens when the memory is indefinite at round-off) resets the memory and
//!   the iteration retries along `-g`;
//! * the first trial step (`alpha = 1`) is accepted at once when it satisfies the
//!   strong Wolfe conditions or, when the cost change is at round-off, the
//!   approximate Wolfe conditions of Hager and Zhang; More–Thuente runs only
//!   otherwise (at round-off its cost test is noise, and it used to spend about
//!   ten evaluations per iteration there);
//! * a trial step whose risk is non-finite is backtracked (`alpha <- alpha / 10`)
//!   before the line search starts; a line search that fails anyway resets the
//!   memory and retries along `-g` with a step ten times shorter, up to
//!   [`MAX_RETRIES`] times, and only then ends the run (a solver exit, which the
//!   caller reports as not converged).
//!
//! Termination: `||g|| <= tol_grad` (converged), or argmin's iteration cap.

use argmin::core::{
    CostFunction, Error, Executor, Gradient, IterState, LineSearch, Problem, Solver, State,
    TerminationReason, TerminationStatus, KV,
};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use std::collections::VecDeque;

/// Line-search retries (memory reset, shorter first step) before a run ends.
pub const MAX_RETRIES: usize = 8;

/// Sufficient-decrease constant (as argmin's More–Thuente default).
const C1: f64 = 1e-4;
/// Curvature constant (as argmin's More–Thuente default).
const C2: f64 = 0.9;

/// State of the iterate: `IterState` over flat `Vec<f64>` parameters.
pub type LbfgsState = IterState<Vec<f64>, Vec<f64>, (), (), (), f64>;

/// Counters of the safeguards, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Safeguards {
    /// Memory resets (non-descent or non-finite direction, failed line search).
    pub resets: u64,
    /// Trial steps shortened because their risk was non-finite.
    pub backtracks: u64,
    /// Curvature pairs skipped (`s·y` not positive enough).
    pub skipped_pairs: u64,
    /// Steps accepted by the approximate Wolfe conditions (cost at round-off).
    pub approximate_wolfe: u64,
}

/// L-BFGS with memory `m` and the safeguards of the module doc.
#[derive(Clone)]
pub struct SafeLbfgs {
    m: usize,
    tol_grad: f64,
    s: VecDeque<Vec<f64>>,
    y: VecDeque<Vec<f64>>,
    /// Safeguard counters of this run.
    pub guards: Safeguards,
}

impl SafeLbfgs {
    /// Memory `m >= 1`, converged when `||g|| <= tol_grad`.
    pub fn new(m: usize, tol_grad: f64) -> Self {
        SafeLbfgs {
            m: m.max(1),
            tol_grad,
            s: VecDeque::new(),
            y: VecDeque::new(),
            guards: Safeguards::default(),
        }
    }

    fn reset(&mut self) {
        self.s.clear();
        self.y.clear();
        self.guards.resets += 1;
    }

    /// Stores the pair `(x_new - x, g_new - g)` when `s·y > 1e-12 ||s|| ||y||`.
    fn push_pair(&mut self, xn: &[f64], x: &[f64], gn: &[f64], g: &[f64]) {
        let s: Vec<f64> = xn.iter().zip(x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy.is_finite() && sy > 1e-12 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() {
            if self.s.len() == self.m {
                self.s.pop_front();
                self.y.pop_front();
            }
            self.s.push_back(s);
            self.y.push_back(y);
        } else {
            self.guards.skipped_pairs += 1;
        }
    }

    /// Two-loop recursion: `-H g`.
    fn direction(&self, g: &[f64]) -> Vec<f64> {
        let mut q = g.to_vec();
        let k = self.s.len();
        let mut alpha = vec![0.0; k];
        let mut rho = vec![0.0; k];
        for i in (0..k).rev() {
            rho[i] = 1.0 / dot(&self.y[i], &self.s[i]);
            alpha[i] = rho[i] * dot(&self.s[i], &q);
            axpy(-alpha[i], &self.y[i], &mut q);
        }
        let gamma = match (self.s.back(), self.y.back()) {
            (Some(s), Some(y)) => dot(s, y) / dot(y, y),
            _ => 1.0,
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for i in 0..k {
            let beta = rho[i] * dot(&self.y[i], &q);
            axpy(alpha[i] - beta, &self.s[i], &mut q);
        }
        q.iter_mut().for_each(|v| *v = -*v);
        q
    }
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    y.iter_mut().zip(x).for_each(|(yi, xi)| *yi += a * xi);
}

fn all_finite(v: &[f64]) -> bool {
    v.iter().all(|x| x.is_finite())
}

/// A borrowed problem, so that the inner line-search executor does not take the
/// outer problem (and its evaluation cache) away.
struct ByRef<'a, O>(&'a O);

impl<O: CostFunction<Param = Vec<f64>, Output = f64>> CostFunction for ByRef<'_, O> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, Error> {
        self.0.cost(x)
    }
}

impl<O: Gradient<Param = Vec<f64>, Gradient = Vec<f64>>> Gradient for ByRef<'_, O> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, Error> {
        self.0.gradient(x)
    }
}

/// One More–Thuente search from `x` along `d` with first step `alpha`:
/// `(x_new, f_new, g_new)` or the line search's error.
fn line_search<O>(
    problem: &O,
    x: &[f64],
    f: f64,
    g: &[f64],
    d: &[f64],
    alpha: f64,
) -> Result<(Vec<f64>, f64, Vec<f64>), Error>
where
    O: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>,
{
    let mut ls: MoreThuenteLineSearch<Vec<f64>, Vec<f64>, f64> = MoreThuenteLineSearch::new();
    ls.search_direction(d.to_vec());
    ls.initial_step_length(alpha)?;
    let res = Executor::new(ByRef(problem), ls)
        .configure(|c| {
            c.param(x.to_vec())
                .gradient(g.to_vec())
                .cost(f)
                .max_iters(100)
        })
        .ctrlc(false)
        .run()?;
    let mut st = res.state;
    let xn = st
        .take_param()
        .ok_or_else(|| Error::msg("line search returned no point"))?;
    let gn = match st.take_gradient() {
        Some(g) => g,
        None => problem.gradient(&xn)?,
    };
    Ok((xn, st.get_cost(), gn))
}

impl<O> Solver<O, LbfgsState> for SafeLbfgs
where
    O: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>,
{
    fn name(&self) -> &str {
        "L-BFGS (safeguarded)"
    }

    fn init(
        &mut self,
        problem: &mut Problem<O>,
        state: LbfgsState,
    ) -> Result<(LbfgsState, Option<KV>), Error> {
        let x = state
            .get_param()
            .ok_or_else(|| Error::msg("L-BFGS needs a starting point"))?
            .clone();
        let f = problem.cost(&x)?;
        let g = problem.gradient(&x)?;
        Ok((state.param(x).cost(f).gradient(g), None))
    }

    fn next_iter(
        &mut self,
        problem: &mut Problem<O>,
        mut state: LbfgsState,
    ) -> Result<(LbfgsState, Option<KV>), Error> {
        let x = state
            .take_param()
            .ok_or_else(|| Error::msg("L-BFGS: no current point"))?;
        let g = state
            .take_gradient()
            .ok_or_else(|| Error::msg("L-BFGS: no current gradient"))?;
        let f = state.get_cost();
        let inner = problem
            .problem
            .as_ref()
            .ok_or_else(|| Error::msg("L-BFGS: problem missing"))?;

        let mut d = self.direction(&g);
        if !all_finite(&d) || dot(&g, &d) >= 0.0 {
            self.reset();
            d = g.iter().map(|v| -v).collect();
        }
        let mut alpha = 1.0;
        let mut last_err = String::new();
        for _retry in 0..=MAX_RETRIES {
            // backtrack trial steps whose risk is not finite
            let mut tries = 0;
            let first = loop {
                let trial: Vec<f64> = x.iter().zip(&d).map(|(xi, di)| xi + alpha * di).collect();
                match inner.cost(&trial) {
                    Ok(v) if v.is_finite() => break Some((trial, v)),
                    _ if tries < 40 => {
                        alpha *= 0.1;
                        tries += 1;
                        self.guards.backtracks += 1;
                    }
                    _ => break None,
                }
            };
            // Accept the first trial at once when it satisfies the strong Wolfe
            // conditions (as More–Thuente would) or, at round-off, the approximate
            // Wolfe conditions (Hager–Zhang): f(a) <= f + 1e-14 |f| and
            // c2 g.d <= g(a).d <= (2 c1 - 1) g.d, where a cost test cannot decide.
            if let Some((trial, ft)) = first {
                if let Ok(gt) = inner.gradient(&trial) {
                    let (gd0, gdt) = (dot(&g, &d), dot(&gt, &d));
                    let armijo = ft <= f + C1 * alpha * gd0;
                    let strong = armijo && gdt.abs() <= C2 * gd0.abs();
                    let approx = ft <= f + 1e-14 * f.abs()
                        && gdt >= C2 * gd0
                        && gdt <= (2.0 * C1 - 1.0) * gd0;
                    if (strong || approx) && trial != x && all_finite(&gt) {
                        if approx && !strong {
                            self.guards.approximate_wolfe += 1;
                        }
                        self.push_pair(&trial, &x, &gt, &g);
                        return Ok((state.param(trial).cost(ft).gradient(gt), None));
                    }
                }
            }
            match line_search(inner, &x, f, &g, &d, alpha) {
                Ok((xn, fn_, gn)) if all_finite(&xn) && fn_.is_finite() && xn != x => {
                    self.push_pair(&xn, &x, &gn, &g);
                    return Ok((state.param(xn).cost(fn_).gradient(gn), None));
                }
                Ok(_) => last_err = "line search made no progress".to_string(),
                Err(e) => last_err = e.to_string(),
            }
            // retry along the steepest descent with a shorter first step
            self.reset();
            d = g.iter().map(|v| -v).collect();
            alpha *= 0.1;
        }
        Ok((
            state
                .param(x)
                .cost(f)
                .gradient(g)
                .terminate_with(TerminationReason::SolverExit(format!(
                    "line search failed {} times, last: {last_err}",
                    MAX_RETRIES + 1
                ))),
            None,
        ))
    }

    fn terminate(&mut self, state: &LbfgsState) -> TerminationStatus {
        match state.get_gradient() {
            Some(g) if dot(g, g).sqrt() <= self.tol_grad => {
                TerminationStatus::Terminated(TerminationReason::SolverConverged)
            }
            _ => TerminationStatus::NotTerminated,
        }
    }
}
