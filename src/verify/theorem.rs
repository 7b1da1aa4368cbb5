//! The three theorems, their default instances and their hypotheses.

use crate::collapse::CollapseType;
use crate::error::{Error, Result};
use crate::norm::Norm;
use crate::task::{Freq, Task, TaskConfig};

/// The three theorems of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Theorem {
    /// Theorem 1: uniform `mu`, no LayerNorm, weight decay on both layers → type I.
    One,
    /// Theorem 2: non-uniform `mu`, no LayerNorm → type III is critical
    /// (global optimality is the paper's conjecture, tested here).
    Two,
    /// Theorem 3: LayerNorm, weight decay on `U` only → type II, whatever `mu`.
    Three,
}

impl std::fmt::Display for Theorem {
    /// `1`, `2` or `3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.number())
    }
}

impl std::str::FromStr for Theorem {
    type Err = Error;
    /// Parses `1`, `2` or `3`.
    fn from_str(s: &str) -> Result<Theorem> {
        s.parse::<u8>()
            .map_err(|_| Error::invalid("theorem", s, "must be 1, 2, 3 or all"))
            .and_then(Theorem::from_number)
    }
}

impl Theorem {
    /// All three, in order.
    pub const ALL: [Theorem; 3] = [Theorem::One, Theorem::Two, Theorem::Three];

    /// 1, 2 or 3.
    pub fn number(self) -> u8 {
        match self {
            Theorem::One => 1,
            Theorem::Two => 2,
            Theorem::Three => 3,
        }
    }

    /// Parses `1`, `2` or `3`.
    pub fn from_number(n: u8) -> Result<Self> {
        match n {
            1 => Ok(Theorem::One),
            2 => Ok(Theorem::Two),
            3 => Ok(Theorem::Three),
            _ => Err(Error::invalid("theorem", n, "must be 1, 2, 3 or all")),
        }
    }

    /// The collapse type the theorem predicts.
    pub fn kind(self) -> CollapseType {
        match self {
            Theorem::One => CollapseType::I,
            Theorem::Two => CollapseType::III,
            Theorem::Three => CollapseType::II,
        }
    }

    /// One-line statement for reports.
    pub fn statement(self) -> &'static str {
        match self {
            Theorem::One => "uniform mu, no LayerNorm: global minimisers are type I",
            Theorem::Two => "Zipf mu, no LayerNorm: type III is critical (conjectured global)",
            Theorem::Three => "LayerNorm, decay on U only: global minimisers are type II",
        }
    }

    /// The default small instance: `n_c = 3`, full latent set, `lambda = 0.01`;
    /// `L = 3`, `d = 4`;
    /// theorem 1 `s_c = 2`; theorem 2 Zipf(1), `s_c = 3`; theorem 3 LayerNorm (`eps = 0`),
    /// Zipf(1), `lambda_W = 0`, `s_c = 3`.
    pub fn default_task(self) -> TaskConfig {
        let base = TaskConfig {
            n_c: 3,
            s_c: 2,
            len: 3,
            dim: 4,
            classes: None,
            freq: Freq::Uniform,
            layer_norm: None,
            norm: None,
            lambda_w: 0.01,
            lambda_u: 0.01,
            lambda_affine: None,
            seed: 0,
            latent: None,
        };
        match self {
            Theorem::One => base,
            Theorem::Two => TaskConfig {
                s_c: 3,
                freq: Freq::Zipf { exponent: 1.0 },
                ..base
            },
            Theorem::Three => TaskConfig {
                s_c: 3,
                freq: Freq::Zipf { exponent: 1.0 },
                layer_norm: Some(0.0),
                lambda_w: 0.0,
                ..base
            },
        }
    }

    /// Refuses a task that belongs to another theorem (the model itself differs:
    /// the normalization's family, or uniform `mu` or not), and lists the
    /// hypotheses of this theorem that `task` violates otherwise (empty: inside
    /// the hypotheses).
    ///
    /// Theorems 1, 2 take `--norm none` or `center` (centring is linear: the
    /// same problem in `d - 1` dimensions, docs/theory.md §10); theorem 3 takes
    /// `layer`, `rms` (RMSNorm in place of LayerNorm: features on the sphere of
    /// radius `sqrt(d)` in `R^d` instead of `1_d^perp`) and `layer-affine`
    /// (always outside: no closed form).
    ///
    /// Outside (the theorem makes no claim; `verify` describes what it finds):
    /// - theorems 1, 2: `lambda_W = 0` or `lambda_U = 0` (with `lambda_W = 0`,
    ///   `R(tW, U/t) -> inf R` as `t -> inf`: the infimum is not attained), or
    ///   `d < n_c - 1` (no equiangular frame of `n_c` vectors fits in `R^d`;
    ///   `d < n_c` with `center`, whose features live in `1_d^perp`);
    /// - theorem 3: `lambda_W > 0` (`phi(tW) = phi(W)` while the penalty shrinks
    ///   as `t -> 0`: not attained), `lambda_U = 0`, `d < n_c` (no mean-zero
    ///   frame; `d < n_c - 1` with `rms`), `eps > 0` (the theorem's `phi` has
    ///   `eps = 0`), or `layer-affine`.
    ///
    /// `lambda_W != lambda_U` without LayerNorm is inside: `(W, U) -> (tW, U/t)`
    /// with `t^4 = lambda_U/lambda_W` maps the problem onto `lambda_W = lambda_U =
    /// sqrt(lambda_W lambda_U)` (docs/theory.md §6).
    pub fn outside(self, task: &Task) -> Result<Vec<String>> {
        let n = self.number();
        let norm = task.norm();
        let linear = norm.is_linear();
        let uniform = task.freq().is_uniform() || task.s_c() < 2;
        match self {
            Theorem::One | Theorem::Two if !linear => {
                return Err(Error::invalid(
                    "norm",
                    norm.name(),
                    format!("theorem {n} is without LayerNorm (--norm none or center; use --theorem 3)"),
                ))
            }
            Theorem::One if !uniform => {
                return Err(Error::invalid(
                    "freq",
                    "zipf",
                    "theorem 1 needs uniform mu (use --theorem 2 for Zipf)",
                ))
            }
            Theorem::Two if uniform => {
                return Err(Error::invalid(
                    "freq",
                    format!("{} with s_c = {}", task.freq(), task.s_c()),
                    "theorem 2 needs non-uniform mu (--freq zipf with exponent > 0, s_c >= 2)",
                ))
            }
            Theorem::Three if linear => {
                return Err(Error::invalid(
                    "norm",
                    norm.name(),
                    "theorem 3 is about LayerNorm (add --layer-norm, or --norm layer, rms or layer-affine)",
                ))
            }
            _ => {}
        }
        let (lw, lu, d, n_c) = (task.lambda_w(), task.lambda_u(), task.dim(), task.n_c());
        let mut out = Vec::new();
        if norm.is_affine() {
            out.push(
                "layer-affine: the learned gain and bias have no closed-form minimiser here; the geometry is measured"
                    .into(),
            );
            if task.lambda_affine() == 0.0 {
                out.push(
                    "lambda_affine = 0: (gamma, beta, U) -> (t gamma, t beta, U/t) lowers the U penalty as t grows, so the infimum is not attained"
                        .into(),
                );
            }
        }
        if let Some(eps) = norm.eps() {
            if lw > 0.0 {
                out.push(format!(
                    "lambda_W = {lw} > 0 with {}: phi(tW) = phi(W) while the W penalty vanishes as t -> 0, so the infimum is not attained",
                    norm.name()
                ));
            }
            if lu == 0.0 {
                out.push("lambda_U = 0: R decreases without bound along the collapsed direction, no minimiser".into());
            }
            if norm.centres() || norm.is_affine() {
                if d < n_c {
                    out.push(format!(
                        "d = {d} < n_c = {n_c}: no mean-zero equiangular frame of {n_c} vectors fits"
                    ));
                }
            } else if d + 1 < n_c {
                out.push(format!(
                    "d = {d} < n_c - 1 = {}: no equiangular frame of {n_c} vectors fits",
                    n_c - 1
                ));
            }
            if eps > 0.0 {
                out.push(format!(
                    "eps = {eps} > 0: the theorem's {} has eps = 0",
                    norm.name()
                ));
            }
        } else {
            if lw == 0.0 || lu == 0.0 {
                out.push(
                    "lambda_W lambda_U = 0 without LayerNorm: R(tW, U/t) (or R(W/t, tU)) approaches its infimum as t grows, which is not attained"
                        .into(),
                );
            }
            if norm == Norm::Center && d < n_c {
                out.push(format!(
                    "d = {d} < n_c = {n_c} with center: the features live in 1_d^perp, where no equiangular frame of {n_c} vectors fits"
                ));
            } else if d + 1 < n_c {
                out.push(format!(
                    "d = {d} < n_c - 1 = {}: no equiangular frame of {n_c} vectors fits",
                    n_c - 1
                ));
            }
        }
        Ok(out)
    }
}
