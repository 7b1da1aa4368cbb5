//! What a verification measured: restarts, checks, measurements, the verdict.

use super::hessian::HessianReport;
use super::verdict::Verdict;
use crate::collapse::{CollapseType, Phase, Prediction};
use crate::metrics::FamilyDistance;
use crate::network::Params;
use crate::task::Task;
use serde::Serialize;

/// Outcome of one L-BFGS run.
#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    /// Seed of the random start.
    pub seed: u64,
    /// Risk at the final point.
    pub risk: f64,
    /// `||grad R||` at the final point.
    pub grad_norm: f64,
    /// L-BFGS iterations (all rounds).
    pub iterations: u64,
    /// argmin's termination reason (of the last round).
    pub termination: String,
    /// Converged: gradient tolerance met and iteration cap not hit.
    pub converged: bool,
    /// Risk within the match tolerance of the prediction.
    pub reached_prediction: bool,
    /// Exact risk + gradient evaluations (one per point: cost and gradient share it).
    pub evaluations: u64,
    /// Saddles met and escaped along negative curvature.
    pub saddles: usize,
    /// Distance of the final point to the predicted family (none without a prediction).
    pub family: Option<FamilyDistance>,
    /// The paper's central claim at the final point, `||Phi - M||_F / ||Phi||_F`
    /// ([`crate::metrics::within_concept_spread`]).
    pub within_concept_spread: f64,
    /// `||W||_F` and `||U||_F` at the final point.
    pub w_norm: f64,
    pub u_norm: f64,
    /// The final point, flat `[W ; U]` (not serialised).
    #[serde(skip)]
    pub params: Vec<f64>,
}

/// What a failed check means for the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFail {
    /// Evidence against the claim: the verdict is `refuted`.
    Refutes,
    /// The search could not decide: the verdict is at best `inconclusive`.
    Undecided,
}

impl OnFail {
    /// The meaning of a check whose failure refutes only when re-checked
    /// evidence `holds` ([`super::recheck`]): `Refutes` for a passed check (its
    /// nominal meaning) or held evidence, `Undecided` otherwise.
    pub fn rechecked(passed: bool, holds: bool) -> OnFail {
        if passed || holds {
            OnFail::Refutes
        } else {
            OnFail::Undecided
        }
    }
}

/// One named check of a verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub value: f64,
    /// Human-readable criterion, e.g. `<= 1e-10`.
    pub criterion: String,
    pub passed: bool,
    pub on_fail: OnFail,
}

/// A measured quantity that is reported, never judged (e.g. how far a drawn
/// latent set is from the equiangular geometry).
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub name: String,
    pub value: f64,
    pub note: String,
}

/// Weights that refute a claim, saved by [`super::write_witnesses`].
#[derive(Debug, Clone)]
pub struct Witness {
    /// Short file-name label, e.g. `restart-seed3`.
    pub label: String,
    pub params: Params,
}

/// Everything measured for one theorem.
#[derive(Debug, Clone, Serialize)]
pub struct TheoremReport {
    pub theorem: u8,
    pub statement: String,
    pub kind: CollapseType,
    /// The task satisfies the theorem's hypotheses (otherwise `outside` says which
    /// fail, and the report describes the minimiser found).
    pub hypotheses: bool,
    pub outside: Vec<String>,
    /// The phase of the limit problem (exact for every latent set, docs/theory.md §6).
    pub phase: Phase,
    /// For `lambda_W = lambda_U = lambda`: the `lambda` where the phase changes
    /// (`null` with LayerNorm, where it never does).
    pub lambda_critical: Option<f64>,
    /// The same located numerically (bisection), when asked for.
    pub lambda_critical_bisection: Option<f64>,
    pub task: Task,
    /// The normalization's `--norm` name (`none`, `layer`, `rms`, `center`, `layer-affine`).
    pub norm: String,
    pub n_params: usize,
    /// The minimiser of the reduced objective (full form on the full latent set,
    /// latent-set form otherwise); none where it is undefined (outside the hypotheses).
    pub prediction: Option<Prediction>,
    /// Minimum of the reduced objective.
    pub predicted_risk: Option<f64>,
    /// Exact limit risk at the built predicted configuration.
    pub exact_risk_at_prediction: Option<f64>,
    pub grad_norm_at_prediction: Option<f64>,
    pub hessian_min_eig: Option<f64>,
    pub hessian: Option<HessianReport>,
    /// Theorem 2 only: `||grad R||` at the type-I configuration with the predicted norms.
    pub type_i_grad_norm: Option<f64>,
    /// Lowest risk found by the restarts.
    pub best_risk: f64,
    /// Largest family distance among restarts that reached the prediction (or of the best one).
    pub collapse_distance: Option<f64>,
    /// Largest over restarts of `||Phi - M||_F / ||Phi||_F` (the paper's central
    /// claim), leaving out restarts that ended at the origin in the trivial phase
    /// (0/0 there; all tokens share the representation 0).
    pub within_concept_spread: f64,
    pub restarts: Vec<Restart>,
    pub checks: Vec<Check>,
    pub measurements: Vec<Measurement>,
    pub verdict: Verdict,
    /// Why the verdict is not `confirmed` (one line per reason).
    pub reasons: Vec<String>,
    /// Files holding the refuting weights (written by [`super::write_witnesses`]).
    pub witnesses: Vec<String>,
    /// The weights behind a `refuted` verdict (not serialised).
    #[serde(skip)]
    pub witness_params: Vec<Witness>,
    /// `verdict == Confirmed`.
    pub passed: bool,
    pub seconds: f64,
}

/// Checks, measurements and witnesses gathered by the steps of a verification.
#[derive(Debug, Default)]
pub struct Evidence {
    pub checks: Vec<Check>,
    pub measurements: Vec<Measurement>,
    pub reasons: Vec<String>,
    pub witnesses: Vec<Witness>,
    /// Set by a step when the instance carries no exact claim to confirm.
    pub undecided: bool,
}

impl Evidence {
    /// Records a check; a failed one adds `why` to the reasons.
    pub fn check(
        &mut self,
        name: &str,
        value: f64,
        criterion: String,
        passed: bool,
        on_fail: OnFail,
        why: impl FnOnce() -> String,
    ) {
        if !passed {
            self.reasons.push(why());
        }
        // A number that is not finite is no evidence against anything.
        let on_fail = if on_fail == OnFail::Refutes && !passed && !value.is_finite() {
            OnFail::Undecided
        } else {
            on_fail
        };
        self.checks.push(Check {
            name: name.to_string(),
            value,
            criterion,
            passed,
            on_fail,
        });
    }

    /// Records a measured quantity.
    pub fn measure(&mut self, name: &str, value: f64, note: impl ToString) {
        self.measurements.push(Measurement {
            name: name.to_string(),
            value,
            note: note.to_string(),
        });
    }

    /// Keeps refuting weights (once per label).
    pub fn witness(&mut self, label: String, params: &Params) {
        if !self.witnesses.iter().any(|w| w.label == label) {
            self.witnesses.push(Witness {
                label,
                params: params.clone(),
            });
        }
    }

    /// `refuted` if a `Refutes` check failed, else `inconclusive` if any check
    /// failed or `undecided` is set, else `confirmed`.
    pub fn verdict(&self, undecided: bool) -> Verdict {
        let failed = |k: OnFail| self.checks.iter().any(|c| !c.passed && c.on_fail == k);
        if failed(OnFail::Refutes) {
            Verdict::Refuted
        } else if undecided || self.undecided || failed(OnFail::Undecided) {
            Verdict::Inconclusive
        } else {
            Verdict::Confirmed
        }
    }
}
