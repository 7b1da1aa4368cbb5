//! Settings and tolerances of a verification run.

use crate::error::{Error, Result};
use crate::limit;
use crate::stop::StopFlag;
use serde::Serialize;

/// Tolerances of the verdict. Every one is relative to a scale of the problem
/// itself (stated per field), never an absolute number, so that instances near
/// the phase switch, where every configuration is small, are judged alike.
#[derive(Debug, Clone, Serialize)]
pub struct Tolerances {
    /// `|R_exact - R_reduced| / max(1, |R_reduced|)` at the predicted configuration.
    pub reduced_vs_exact: f64,
    /// Relative stationarity at the prediction, `||grad R|| / ||grad penalty||`
    /// (the loss and penalty gradients cancel there).
    pub grad_at_prediction: f64,
    /// Multiple of `eps sqrt(n_params) (1 + ||theta||) / ||grad penalty||` below
    /// which a stationarity residual is round-off (the floor of
    /// `grad_at_prediction`; 0 turns the floor off).
    pub stationarity_round_off: f64,
    /// Hessian eigenvalues below `-tol * max eigenvalue` are negative.
    pub hessian_negative: f64,
    /// The transverse eigenvalue must exceed `tol * max eigenvalue` (strict minimum modulo symmetry).
    pub transverse_positive: f64,
    /// A restart "reaches" a risk `R*` when `|R - R*| <= tol * max(1, |R*|)`,
    /// capped at half the gain `log K - R*` of the collapsed minimiser over the origin.
    pub risk_match: f64,
    /// A restart is "below the prediction" when lower by more than `tol * max(1, |R|)`.
    pub below_prediction: f64,
    /// Largest relative family distance ([`crate::metrics::FamilyDistance::max`]) and
    /// within-concept spread of a restart, plus the part explained by its gradient
    /// (`||grad R|| / (h_min * scale)`, a Newton-step estimate of its distance to the critical point).
    pub family: f64,
    /// The reduced type-I residual under non-uniform `mu` (theorem 2) must exceed this
    /// (relative to the penalty gradient, as `grad_at_prediction`).
    pub type_i_residual: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            reduced_vs_exact: 1e-10,
            grad_at_prediction: 1e-10,
            stationarity_round_off: 64.0,
            hessian_negative: 1e-7,
            transverse_positive: 1e-7,
            risk_match: 1e-8,
            below_prediction: 1e-10,
            family: 1e-4,
            type_i_residual: 1e-3,
        }
    }
}

/// Settings of a verification run.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyConfig {
    /// Number of random L-BFGS starts.
    pub restarts: usize,
    /// Seed of the random starts (restart `i` uses `seed + i`).
    pub seed: u64,
    /// A restart has converged when `||grad R|| <= grad_tol`.
    pub grad_tol: f64,
    /// Iteration cap of one L-BFGS run; hitting it fails the check.
    pub max_iters: u64,
    /// Random starts have i.i.d. `N(0, init_scale^2)` entries.
    pub init_scale: f64,
    /// Work budget of one exact risk evaluation ([`limit::check_budget`]).
    pub budget: f64,
    /// L-BFGS memory.
    pub lbfgs_memory: usize,
    /// Skip the Hessian (large instances).
    pub hessian: bool,
    /// Also locate the critical weight decay numerically ([`super::bisect`]).
    pub bisect: bool,
    /// The classifier norm `b` of the candidate that is checked is the
    /// prediction's times this factor (1 by default). Any other value checks a
    /// deliberately wrong candidate, which must come back `refuted`: a test of the
    /// verifier itself.
    pub candidate_scale: f64,
    pub tol: Tolerances,
    /// When raised, the run ends with [`crate::Error::Stopped`] before its next random
    /// start or L-BFGS round (no flag: runs to the end).
    #[serde(skip)]
    pub stop: Option<StopFlag>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            restarts: 16,
            seed: 0,
            grad_tol: 1e-9,
            max_iters: 5000,
            init_scale: 0.5,
            budget: limit::DEFAULT_WORK_BUDGET,
            lbfgs_memory: 20,
            hessian: true,
            bisect: false,
            candidate_scale: 1.0,
            tol: Tolerances::default(),
            stop: None,
        }
    }
}

/// Most random starts one verification accepts (each keeps its end point in memory).
pub const MAX_RESTARTS: usize = 100_000;

impl VerifyConfig {
    /// [`Error::Stopped`] when the stop flag is raised, else nothing.
    pub fn check_stop(&self) -> Result<()> {
        match &self.stop {
            Some(f) if f.is_requested() => Err(Error::Stopped),
            _ => Ok(()),
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.restarts == 0 || self.restarts > MAX_RESTARTS {
            return Err(Error::invalid(
                "restarts",
                self.restarts,
                format!("needs 1 to {MAX_RESTARTS} random starts"),
            ));
        }
        if !(self.grad_tol > 0.0 && self.grad_tol.is_finite()) {
            return Err(Error::invalid(
                "grad_tol",
                self.grad_tol,
                "must be finite and > 0",
            ));
        }
        if !(self.candidate_scale > 0.0 && self.candidate_scale.is_finite()) {
            return Err(Error::invalid(
                "candidate_scale",
                self.candidate_scale,
                "must be finite and > 0",
            ));
        }
        if self.max_iters == 0 {
            return Err(Error::invalid("max_iters", 0, "must be >= 1"));
        }
        if !(self.init_scale > 0.0 && self.init_scale.is_finite()) {
            return Err(Error::invalid(
                "init_scale",
                self.init_scale,
                "must be finite and > 0",
            ));
        }
        if self.budget.is_nan() || self.budget <= 0.0 {
            return Err(Error::invalid("budget", self.budget, "must be > 0"));
        }
        Ok(())
    }
}
