//! The normalization `phi` applied to each embedding row `w_t` before the
//! classifier (docs/theory.md §2 and §9), its backward pass, and the helpers
//! every consumer (exact limit risk, empirical risk, verify, trainer) shares.
//!
//! With `d` the embedding dimension, `mean(v) = (1/d) sum_i v_i`:
//!
//! - `none`: `phi(v) = v`;
//! - `layer`: `phi(v) = (v - mean(v) 1) / sqrt(var(v) + eps)`, biased variance
//!   `var(v) = mean((v - mean(v))^2)` (LayerNorm without affine parameters);
//! - `rms`: `phi(v) = v / sqrt(mean(v^2) + eps)` (RMSNorm without gain);
//! - `center`: `phi(v) = v - mean(v) 1` (a linear projection onto `1_d^perp`);
//! - `layer-affine`: `phi(v) = gamma ⊙ LN(v) + beta`, with a gain `gamma` and a
//!   bias `beta` in `R^d` shared by all tokens (extra trained parameters, like
//!   `nn.LayerNorm(elementwise_affine=True)`).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which normalization `phi` the network applies to every embedding row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Norm {
    /// `phi(v) = v`.
    None,
    /// LayerNorm without affine parameters.
    Layer { eps: f64 },
    /// RMSNorm without gain: `v / sqrt(mean(v^2) + eps)`.
    Rms { eps: f64 },
    /// Centering only: `v - mean(v) 1`.
    Center,
    /// LayerNorm with a trained gain and bias: `gamma ⊙ LN(v) + beta`.
    LayerAffine { eps: f64 },
}

/// The names `--norm` accepts, in the order of [`Norm`].
pub const NORM_NAMES: [&str; 5] = ["none", "layer", "rms", "center", "layer-affine"];

impl Norm {
    /// The normalization called `name` (one of [`NORM_NAMES`]) with `eps`
    /// (ignored by `none` and `center`); bad input naming `norm` otherwise.
    pub fn parse(name: &str, eps: f64) -> Result<Norm> {
        Ok(match name {
            "none" => Norm::None,
            "layer" => Norm::Layer { eps },
            "rms" => Norm::Rms { eps },
            "center" => Norm::Center,
            "layer-affine" => Norm::LayerAffine { eps },
            _ => {
                return Err(Error::invalid(
                    "norm",
                    name,
                    format!("must be one of {}", NORM_NAMES.join(", ")),
                ))
            }
        })
    }

    /// The `--norm` name of this normalization.
    pub fn name(&self) -> &'static str {
        match self {
            Norm::None => "none",
            Norm::Layer { .. } => "layer",
            Norm::Rms { .. } => "rms",
            Norm::Center => "center",
            Norm::LayerAffine { .. } => "layer-affine",
        }
    }

    /// `eps` of the variants that divide by a root mean square.
    pub fn eps(&self) -> Option<f64> {
        match *self {
            Norm::Layer { eps } | Norm::Rms { eps } | Norm::LayerAffine { eps } => Some(eps),
            Norm::None | Norm::Center => None,
        }
    }

    /// The same variant with `eps` replaced (the theory uses `eps = 0`).
    pub fn with_eps(&self, e: f64) -> Norm {
        match *self {
            Norm::Layer { .. } => Norm::Layer { eps: e },
            Norm::Rms { .. } => Norm::Rms { eps: e },
            Norm::LayerAffine { .. } => Norm::LayerAffine { eps: e },
            n => n,
        }
    }

    /// `Some(eps)` for plain LayerNorm (the theorems' `phi`), `None` otherwise.
    pub fn layer_eps(&self) -> Option<f64> {
        match *self {
            Norm::Layer { eps } => Some(eps),
            _ => None,
        }
    }

    /// True for `none`.
    pub fn is_none(&self) -> bool {
        matches!(self, Norm::None)
    }

    /// True when `phi` subtracts the mean of `w_t` (`layer`, `center`,
    /// `layer-affine`), so that the normalised part of every feature lies in
    /// `1_d^perp` and collapsed configurations are built on mean-zero frames.
    pub fn centres(&self) -> bool {
        matches!(
            self,
            Norm::Layer { .. } | Norm::Center | Norm::LayerAffine { .. }
        )
    }

    /// True when `phi` is linear (`none`, `center`): the theory of the
    /// unnormalised network applies, in `d - 1` dimensions for `center`
    /// (docs/theory.md §10), with its phase change at `lambda_critical`.
    pub fn is_linear(&self) -> bool {
        matches!(self, Norm::None | Norm::Center)
    }

    /// True when (with `eps = 0`) every feature lies on the sphere of radius
    /// `sqrt(d)` and any point of it is reachable (`layer` within `1_d^perp`,
    /// `rms` in `R^d`): the type-II theory applies (docs/theory.md §10).
    pub fn fixed_norm(&self) -> bool {
        matches!(self, Norm::Layer { .. } | Norm::Rms { .. })
    }

    /// True when the network has the gain and bias `gamma, beta in R^d`.
    pub fn is_affine(&self) -> bool {
        matches!(self, Norm::LayerAffine { .. })
    }

    /// Number of extra parameters: `2 d` for `layer-affine`, else 0.
    pub fn n_affine(&self, dim: usize) -> usize {
        if self.is_affine() {
            2 * dim
        } else {
            0
        }
    }

    /// True where the exact (analytic) Hessian of the limit risk is derived:
    /// `none` and `layer`. Other variants use finite differences of the gradient.
    pub fn has_exact_hessian(&self) -> bool {
        matches!(self, Norm::None | Norm::Layer { .. })
    }

    /// Checks `eps` and the dimension: the centring variants need `d >= 2`
    /// (with `d = 1`, `v - mean(v) = 0`). Bad input naming `eps` or `dim`.
    pub fn check(&self, dim: usize) -> Result<()> {
        if let Some(eps) = self.eps() {
            if !eps.is_finite() || eps < 0.0 {
                return Err(Error::invalid(
                    "eps",
                    eps,
                    format!("{} eps must be finite and >= 0", self.name()),
                ));
            }
        }
        if !matches!(self, Norm::None | Norm::Rms { .. }) && dim < 2 {
            return Err(Error::invalid(
                "dim",
                dim,
                format!(
                    "--norm {} needs d >= 2 (with d = 1, v - mean(v) = 0 for every v)",
                    self.name()
                ),
            ));
        }
        Ok(())
    }

    /// The parameter-free part of `phi` applied to one row in place: LayerNorm
    /// for `layer` and `layer-affine`, the RMS scaling for `rms`, centring for
    /// `center`, nothing for `none`. With `eps = 0` and `lambda_W = 0` the risk is
    /// invariant under `w_t -> standardise(w_t)` (optimisers use it as a
    /// normalisation step); `None` when the variant has no such step.
    pub fn standardise(&self, row: &mut [f64]) -> Option<()> {
        let base = match *self {
            Norm::None => return None,
            Norm::LayerAffine { eps } => Norm::Layer { eps },
            n => n,
        };
        let out = base.row(row, &[], &[]);
        row.copy_from_slice(&out);
        Some(())
    }

    /// `phi(v)` for one row; `gain`, `bias` are used by `layer-affine` only.
    pub fn row(&self, v: &[f64], gain: &[f64], bias: &[f64]) -> Vec<f64> {
        match *self {
            Norm::None => v.to_vec(),
            Norm::Layer { eps } => layer_norm(v, eps),
            Norm::Rms { eps } => {
                let r = rms(v, eps);
                v.iter().map(|x| x / r).collect()
            }
            Norm::Center => {
                let m = mean(v);
                v.iter().map(|x| x - m).collect()
            }
            Norm::LayerAffine { eps } => layer_norm(v, eps)
                .iter()
                .zip(gain.iter().zip(bias))
                .map(|(x, (g, b))| g * x + b)
                .collect(),
        }
    }

    /// Backward pass of [`Norm::row`]: given `g = dR/dphi(v)`, returns `dR/dv`
    /// and accumulates `dR/dgain += g ⊙ LN(v)`, `dR/dbias += g` (`layer-affine`
    /// only; `d_gain`, `d_bias` are untouched otherwise).
    ///
    /// - `layer`: `(g - mean(g) - x mean(g ⊙ x)) / s`, `x = (v - mean v)/s`, `s = sqrt(var + eps)`;
    /// - `rms`: `(g - x mean(g ⊙ x)) / r`, `x = v / r`, `r = sqrt(mean(v^2) + eps)`;
    /// - `center`: `g - mean(g)`;
    /// - `layer-affine`: the `layer` formula applied to `gain ⊙ g`.
    pub fn row_backward(
        &self,
        v: &[f64],
        g: &[f64],
        gain: &[f64],
        d_gain: &mut [f64],
        d_bias: &mut [f64],
    ) -> Vec<f64> {
        match *self {
            Norm::None => g.to_vec(),
            Norm::Layer { eps } => layer_norm_backward(v, g, eps),
            Norm::Rms { eps } => {
                let d = v.len() as f64;
                let r = rms(v, eps);
                let gx = v.iter().zip(g).map(|(x, gi)| x / r * gi).sum::<f64>() / d;
                v.iter()
                    .zip(g)
                    .map(|(x, gi)| (gi - x / r * gx) / r)
                    .collect()
            }
            Norm::Center => {
                let gm = mean(g);
                g.iter().map(|x| x - gm).collect()
            }
            Norm::LayerAffine { eps } => {
                let xh = layer_norm(v, eps);
                for c in 0..v.len() {
                    d_gain[c] += g[c] * xh[c];
                    d_bias[c] += g[c];
                }
                let gg: Vec<f64> = g.iter().zip(gain).map(|(a, b)| a * b).collect();
                layer_norm_backward(v, &gg, eps)
            }
        }
    }
}

impl std::fmt::Display for Norm {
    /// `none`, `center`, or `NAME(eps=EPS)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.eps() {
            Some(eps) => write!(f, "{}(eps={eps:e})", self.name()),
            None => write!(f, "{}", self.name()),
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// `sqrt(mean(v^2) + eps)`.
fn rms(v: &[f64], eps: f64) -> f64 {
    (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64 + eps).sqrt()
}

/// LayerNorm without affine parameters:
/// `phi(v) = (v - mean(v) 1) / sqrt(var(v) + eps)`, biased variance (divide by `d`).
pub fn layer_norm(v: &[f64], eps: f64) -> Vec<f64> {
    let m = mean(v);
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    let s = (var + eps).sqrt();
    v.iter().map(|x| (x - m) / s).collect()
}

/// Backward pass of [`layer_norm`]: given `g = dR/dphi(v)`, returns `dR/dv`
/// `= (g - mean(g) - x_hat mean(g ⊙ x_hat)) / sqrt(var + eps)` with `x_hat = (v-mean)/sqrt(var+eps)`
/// (the last term uses `var/(var+eps)` so the formula is exact for `eps > 0`).
pub fn layer_norm_backward(v: &[f64], g: &[f64], eps: f64) -> Vec<f64> {
    let d = v.len() as f64;
    let m = mean(v);
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / d;
    let s = (var + eps).sqrt();
    let xh: Vec<f64> = v.iter().map(|x| (x - m) / s).collect();
    let gm = mean(g);
    let gx = xh.iter().zip(g).map(|(a, b)| a * b).sum::<f64>() / d;
    g.iter()
        .zip(&xh)
        .map(|(gi, xi)| (gi - gm - xi * gx) / s)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(eps: f64) -> [Norm; 5] {
        [
            Norm::None,
            Norm::Layer { eps },
            Norm::Rms { eps },
            Norm::Center,
            Norm::LayerAffine { eps },
        ]
    }

    #[test]
    fn outputs_have_the_stated_mean_and_norm() {
        let v = [0.3, -1.2, 2.0, 0.7, 5.0];
        let dot = |a: &[f64]| a.iter().map(|x| x * x).sum::<f64>();
        let y = Norm::Layer { eps: 0.0 }.row(&v, &[], &[]);
        assert!(y.iter().sum::<f64>().abs() < 1e-12);
        assert!((dot(&y) - 5.0).abs() < 1e-12);
        let y = Norm::Rms { eps: 0.0 }.row(&v, &[], &[]);
        assert!((dot(&y) - 5.0).abs() < 1e-12);
        assert!(y.iter().sum::<f64>() > 1.0, "rms keeps the mean direction");
        let y = Norm::Center.row(&v, &[], &[]);
        assert!(y.iter().sum::<f64>().abs() < 1e-12);
        assert!((y[0] - (0.3 - 6.8 / 5.0)).abs() < 1e-12);
    }

    #[test]
    fn backward_matches_finite_differences_for_every_variant() {
        let v = [0.3, -1.2, 2.0, 0.7];
        let g = [1.0, -0.5, 0.25, 2.0];
        let gain = [1.5, -0.3, 0.8, 1.1];
        let bias = [0.2, 0.1, -0.4, 0.3];
        for eps in [0.0, 1e-5, 0.3] {
            for n in all(eps) {
                let f = |v: &[f64], gain: &[f64], bias: &[f64]| -> f64 {
                    n.row(v, gain, bias)
                        .iter()
                        .zip(&g)
                        .map(|(a, b)| a * b)
                        .sum()
                };
                let (mut dg, mut db) = (vec![0.0; 4], vec![0.0; 4]);
                let an = n.row_backward(&v, &g, &gain, &mut dg, &mut db);
                let h = 1e-6;
                for i in 0..4 {
                    let bump = |x: &[f64; 4], s: f64| {
                        let mut y = *x;
                        y[i] += s * h;
                        y
                    };
                    let fd = (f(&bump(&v, 1.0), &gain, &bias) - f(&bump(&v, -1.0), &gain, &bias))
                        / (2.0 * h);
                    assert!((fd - an[i]).abs() < 1e-7, "{n} v[{i}]: {fd} vs {}", an[i]);
                    if n.is_affine() {
                        let fd = (f(&v, &bump(&gain, 1.0), &bias)
                            - f(&v, &bump(&gain, -1.0), &bias))
                            / (2.0 * h);
                        assert!(
                            (fd - dg[i]).abs() < 1e-7,
                            "{n} gain[{i}]: {fd} vs {}",
                            dg[i]
                        );
                        let fd = (f(&v, &gain, &bump(&bias, 1.0))
                            - f(&v, &gain, &bump(&bias, -1.0)))
                            / (2.0 * h);
                        assert!(
                            (fd - db[i]).abs() < 1e-7,
                            "{n} bias[{i}]: {fd} vs {}",
                            db[i]
                        );
                    } else {
                        assert_eq!((dg[i], db[i]), (0.0, 0.0));
                    }
                }
            }
        }
    }

    #[test]
    fn parse_round_trips_and_rejects_unknown_names() {
        for n in all(1e-5) {
            assert_eq!(Norm::parse(n.name(), 1e-5).unwrap(), n);
            let json = serde_json::to_string(&n).unwrap();
            assert_eq!(serde_json::from_str::<Norm>(&json).unwrap(), n);
        }
        let e = Norm::parse("batch", 0.0).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("norm"), "{e}");
        assert!(Norm::Center.check(1).is_err());
        assert!(Norm::Rms { eps: 0.0 }.check(1).is_ok());
        assert!(Norm::Rms { eps: -1.0 }.check(3).is_err());
    }
}
