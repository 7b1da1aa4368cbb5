//! Equiangular frames, the three collapse types and their reduced objectives
//! (docs/theory.md §3–4).
//!
//! # Conventions
//!
//! `kappa = n_c/(n_c-1)`, `q = 1/n_c`, `p = 1 - q`, `K` the number of classes,
//! `L` the sentence length, `mu_beta` the in-concept token frequencies and
//! `dist(z_j, z_k)` the number of positions where two latent variables differ.
//! A collapsed configuration is `w_{(alpha,beta)} = rho_beta f_alpha` (`rho_beta = a`
//! for type I, `phi(w) = sqrt(d) f_alpha` for type II, `rho_beta = r_beta` for
//! type III) and `u_{k,l} = b f_{z_{k,l}}` with an equiangular frame `f`. There
//! `h_j - h_k = -kappa b sum_{l: z_{j,l} != z_{k,l}} rho_{beta_l}`, so the risk only
//! depends on the products `x_beta = b rho_beta` and on the norms.
//!
//! # Reduced objectives (loss part; the penalties are added to each)
//!
//! - [`Form::Full`] (full latent set, `K = n_c^L`):
//!   `L sum_beta mu_beta log(1 + (n_c-1) e^{-kappa x_beta})`.
//! - [`Form::LatentSet`] (the task's actual latent variables):
//!   `(1/K) sum_k E_{beta~mu^L} log(1 + sum_{j != k} exp(-kappa sum_{l: z_{j,l} != z_{k,l}} x_{beta_l}))`;
//!   for equal `x_beta = c` it is `(1/K) sum_k log(1 + sum_m n_k[m] e^{-kappa c m})`
//!   with `n_k[m]` the number of classes `j != k` at distance `m` from `z_k`.
//!   On the full latent set it equals the full form (the sum factorises), and is
//!   computed that way.
//! - [`Form::MeanField`] (the mean-field form of docs/theory.md §4):
//!   `E_{beta~mu^L} log(1 + K prod_l (q + p e^{-kappa x_{beta_l}}))`.
//!
//! Penalties: types I and III `(lambda_W/2) n_c sum_beta rho_beta^2 + (lambda_U/2) K L b^2`
//! (`= (lambda_W/2) n_w a^2 + ...` for type I); type II `(lambda_U/2) K L b^2` only:
//! with `eps = 0` LayerNorm is scale invariant, so `||W||` can be shrunk to zero
//! without changing `phi(W)` and the `W` penalty vanishes in the infimum (it is
//! not attained when `lambda_W > 0`, which is why theorem 3 asks `lambda_W = 0`).
//! Type II predictions use the `eps = 0` theory whatever the task's `eps` is.
//!
//! # How the minimisers are found
//!
//! For fixed `x = b rho`, the balance of the two penalties gives
//! `min_b [(lambda_W/2) n_c ||x||^2 / b^2 + (lambda_U/2) K L b^2] = gamma ||x||` with
//! `gamma = sqrt(lambda_W lambda_U n_c K L)`, reached at
//! `b^2 = ||x|| sqrt(lambda_W n_c / (lambda_U K L))`. Every reduced loss above is
//! convex in `x` (log-sum-exp of linear functions, or a convex increasing
//! function of a sum of convex functions), so types I and III reduce to the
//! convex problem `min_x loss(x) + gamma ||x||`, and type II to the convex 1-D
//! problem `min_b loss(sqrt(d) b 1) + (lambda_U/2) K L b^2`.
//!
//! - Types I/II, every form: safeguarded Newton on the increasing 1-D derivative
//!   (closed form for type I full), to round-off.
//! - Type III full: the critical-point system of docs/theory.md §4. Writing
//!   `t = ||x||/gamma`, each `x_beta` solves the 1-D monotone equation
//!   `x_beta = t L kappa mu_beta sigma(x_beta)` and `t` solves the 1-D monotone
//!   equation `||x(t)|| = gamma t` (`||x(t)||/t` is decreasing), so the non-trivial
//!   root is unique; it exists iff `L kappa (n_c-1)/n_c ||mu|| > gamma`, otherwise
//!   the only critical point `x = 0` is the minimiser. All to round-off.
//! - Type III latent-set / mean-field: damped Newton (exact Hessian, Cholesky,
//!   Armijo backtracking) on `loss(x) + gamma ||x||`, stopped when the Newton
//!   decrement `g^T H^{-1} g < 1e-24`, i.e. to round-off *for the evaluated
//!   objective*. The expectation over `beta` is an exact enumeration when small
//!   (latent set: `s_c^L K^2 L < 1e9`; mean field: `s_c^L <= 2^20`), else a fixed
//!   sample average (seeded ChaCha8 with `task.seed`, Latin-hypercube ranks per
//!   position, classes cycled through a random permutation); the reported risk
//!   is then the sample-average value and `risk_error` its Monte-Carlo standard
//!   error (i.i.d. formula, conservative for the stratified draw). Sample sizes:
//!   mean field `M = 200000`; latent set `M = clamp(3e8 / (K L^2), 512, 200000)`
//!   (`M = 1334` at the paper's `K = 1000, L = 15`). The returned `r_beta`
//!   minimise that sample average to round-off; as estimates of the exact
//!   minimiser they carry sampling error that grows for rare ranks (about
//!   `M L mu_beta` draws inform `r_beta`): at the paper's Zipf shape the first
//!   ranks are good to about 1 % in the latent-set form, while ranks drawn only
//!   a few times (`beta` near `s_c = 400`) can be off by a factor 2 or more —
//!   use the mean-field form, or a full-latent-set task, for the tail.
//!
//! # Layout
//!
//! This file holds the collapse types, the forms and the [`Prediction`] record;
//! the rest is split by idea (all public items are re-exported here):
//!
//! - `frame`: equiangular frames ([`equiangular_frame`], [`ones_complement_basis`])
//!   and the collapsed configuration built on one ([`build`]);
//! - `objective`: the reduced objectives per form ([`reduced_risk`],
//!   [`type_iii_residual`]) and the task constants they share;
//! - `samples`: the enumerated or sampled `(class, beta)` points of the type-III
//!   latent-set and mean-field forms;
//! - `expectation`: value, gradient and Hessian of the type-III loss over those
//!   points;
//! - `solve`: safeguarded 1-D Newton, the damped Newton method for
//!   `min_x loss(x) + gamma ||x||` and the type-III full-form system;
//! - `prediction`: [`predict`], the minimiser of each type's reduced objective.

use crate::error::{Error, Result};
use crate::task::Task;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

mod expectation;
mod frame;
mod objective;
pub mod phase;
mod prediction;
mod samples;
mod solve;

pub use frame::{build, equiangular_frame, ones_complement_basis};
pub use objective::{reduced_risk, type_iii_residual};
pub use phase::{lambda_critical, origin_coupling, predicted_phase, Phase};
pub use prediction::predict;

/// The three collapse types of docs/theory.md §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CollapseType {
    /// Uniform `mu`, no LayerNorm: `w_{(alpha,beta)} = a f_alpha`.
    I,
    /// LayerNorm (any `mu`): `phi(w_{(alpha,beta)}) = sqrt(d) f_alpha`.
    II,
    /// Non-uniform `mu`, no LayerNorm: `w_{(alpha,beta)} = r_beta f_alpha`.
    III,
}

/// The collapse type the theory predicts (docs/theory.md §3) for `task`:
/// LayerNorm or RMSNorm gives II (and II is the reference geometry of
/// `layer-affine`, with `gamma = 1`, `beta = 0`); otherwise (`none`, `center`)
/// uniform `mu` (all `mu_beta` equal, e.g. `s_c = 1` or Zipf exponent 0) gives I,
/// and non-uniform `mu` gives III.
pub fn collapse_type(task: &Task) -> CollapseType {
    if !task.norm().is_linear() {
        CollapseType::II
    } else if task.mu().iter().all(|&m| m == task.mu()[0]) {
        CollapseType::I
    } else {
        CollapseType::III
    }
}

/// Which reduced objective (docs/theory.md §4, see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Form {
    /// Full latent set `K = n_c^L`, where the risk factorises (`"full"`).
    Full,
    /// Exact for the task's drawn latent variables (`"latent-set"`).
    LatentSet,
    /// Symmetric (mean-field) form used by the paper (`"mean-field"`).
    MeanField,
}

impl Form {
    /// The serde / command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Form::Full => "full",
            Form::LatentSet => "latent-set",
            Form::MeanField => "mean-field",
        }
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Form {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "full" => Ok(Form::Full),
            "latent-set" => Ok(Form::LatentSet),
            "mean-field" => Ok(Form::MeanField),
            _ => Err(Error::invalid(
                "form",
                s,
                "expected full, latent-set or mean-field",
            )),
        }
    }
}

/// The predicted collapsed configuration and its reduced risk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub kind: CollapseType,
    pub form: Form,
    /// Word-representation norm: `a` (type I), `sqrt(d)` (type II), and for
    /// type III the plain mean over ranks `(1/s_c) sum_beta r_beta`.
    pub word_norm: f64,
    /// Norm of `phi(w_{(alpha,beta)})` per rank `beta` (length `s_c`): all `a`
    /// (type I), all `sqrt(d)` (type II), `r_beta` (type III).
    pub r: Vec<f64>,
    /// `b = ||u_{k,l}||`.
    pub u_norm: f64,
    /// `a b` (type I), `sqrt(d) b` (type II), `word_norm * b` (type III).
    pub c: f64,
    /// Reduced objective (loss + penalties) at the minimiser.
    pub risk: f64,
    /// Monte-Carlo standard error of `risk` when the expectation was sampled.
    pub risk_error: Option<f64>,
    /// Number of Monte-Carlo samples when sampled.
    pub n_samples: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Freq, TaskConfig};

    #[test]
    fn form_names_round_trip() {
        for f in [Form::Full, Form::LatentSet, Form::MeanField] {
            assert_eq!(f.name().parse::<Form>().unwrap(), f);
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.name())
            );
        }
        assert!("nope".parse::<Form>().is_err());
    }

    #[test]
    fn collapse_types_follow_the_task() {
        let base = TaskConfig::default();
        assert_eq!(collapse_type(&base.build().unwrap()), CollapseType::I);
        let zipf = TaskConfig {
            freq: Freq::Zipf { exponent: 1.0 },
            ..base.clone()
        };
        assert_eq!(collapse_type(&zipf.build().unwrap()), CollapseType::III);
        let ln = TaskConfig {
            layer_norm: Some(0.0),
            ..zipf
        };
        assert_eq!(collapse_type(&ln.build().unwrap()), CollapseType::II);
    }

    /// A small task (shared by the tests of the submodules).
    pub(super) fn cfg(n_c: usize, s_c: usize, len: usize, classes: Option<usize>) -> TaskConfig {
        TaskConfig {
            n_c,
            s_c,
            len,
            dim: n_c + 1,
            classes,
            freq: Freq::Uniform,
            layer_norm: None,
            norm: None,
            lambda_affine: None,
            lambda_w: 0.01,
            lambda_u: 0.02,
            seed: 3,
            latent: None,
        }
    }
}
