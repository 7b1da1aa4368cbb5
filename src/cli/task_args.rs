//! Task flags shared by the subcommands.

use crate::error::{Error, Result};
use crate::experiments::Preset;
use crate::norm::Norm;
use crate::task::{Freq, TaskConfig};
use clap::{Args, ValueEnum};

/// Task flags shared by the subcommands; each overrides the theorem default or the preset.
#[derive(Debug, Clone, Default, Args)]
pub struct TaskArgs {
    /// Number of concepts n_c (>= 2).
    #[arg(long)]
    pub nc: Option<usize>,
    /// Tokens per concept s_c (>= 1).
    #[arg(long)]
    pub sc: Option<usize>,
    /// Vocabulary size n_w (must be a multiple of n_c; sets s_c = n_w / n_c).
    #[arg(long, conflicts_with = "sc")]
    pub nw: Option<usize>,
    /// Sentence length L (>= 1).
    #[arg(long = "len")]
    pub len: Option<usize>,
    /// Embedding dimension d (>= 1, >= 2 with LayerNorm; the theorems assume d >= n_c - 1, or >= n_c with LayerNorm).
    #[arg(long)]
    pub dim: Option<usize>,
    /// Number of classes K <= n_c^L, distinct latent variables drawn uniformly from Z with --seed (default: the full latent set K = n_c^L).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Weight decay on both layers (lambda_W = lambda_U).
    #[arg(long, allow_negative_numbers = true)]
    pub lambda: Option<f64>,
    /// Weight decay on the embedding W (overrides --lambda).
    #[arg(long, allow_negative_numbers = true)]
    pub lambda_w: Option<f64>,
    /// Weight decay on the classifier U (overrides --lambda).
    #[arg(long, allow_negative_numbers = true)]
    pub lambda_u: Option<f64>,
    /// Token frequencies inside a concept.
    #[arg(long, value_enum)]
    pub freq: Option<FreqArg>,
    /// Zipf exponent s in mu_beta ∝ 1/beta^s (>= 0; implies --freq zipf).
    #[arg(long, allow_negative_numbers = true)]
    pub zipf_exponent: Option<f64>,
    /// Put LayerNorm (no affine parameters) after the embedding (same as --norm layer).
    #[arg(long)]
    pub layer_norm: bool,
    /// Normalization after the embedding: none, layer (LayerNorm), rms (RMSNorm,
    /// w / sqrt(mean(w^2) + eps)), center (w - mean(w)), layer-affine (LayerNorm
    /// with a learned gain and bias).
    #[arg(long, value_enum)]
    pub norm: Option<NormArg>,
    /// eps (>= 0) of layer, rms and layer-affine; alone it implies --layer-norm.
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f64>,
    /// Weight decay on the gain and bias of --norm layer-affine (default: lambda_W).
    #[arg(long, allow_negative_numbers = true)]
    pub lambda_affine: Option<f64>,
    /// Seed of the latent-variable draw and of everything random.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The `--norm` values (see [`Norm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NormArg {
    None,
    Layer,
    Rms,
    Center,
    LayerAffine,
}

impl NormArg {
    /// The normalization with `eps` (ignored by none and center).
    pub fn norm(self, eps: f64) -> Norm {
        match self {
            NormArg::None => Norm::None,
            NormArg::Layer => Norm::Layer { eps },
            NormArg::Rms => Norm::Rms { eps },
            NormArg::Center => Norm::Center,
            NormArg::LayerAffine => Norm::LayerAffine { eps },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FreqArg {
    Uniform,
    Zipf,
}

impl TaskArgs {
    /// Applies the explicit flags on top of `base`; `--layer-norm` without `--eps`
    /// uses `default_eps` (0 for the theory, 1e-5 for training).
    pub fn apply(&self, mut c: TaskConfig, default_eps: f64) -> Result<TaskConfig> {
        if let Some(v) = self.nc {
            c.n_c = v;
        }
        if let Some(v) = self.sc {
            c.s_c = v;
        }
        if let Some(nw) = self.nw {
            if c.n_c == 0 || nw % c.n_c != 0 || nw == 0 {
                return Err(Error::invalid(
                    "nw",
                    nw,
                    format!("n_w must be a positive multiple of n_c = {}", c.n_c),
                ));
            }
            c.s_c = nw / c.n_c;
        }
        if let Some(v) = self.len {
            c.len = v;
        }
        if let Some(v) = self.dim {
            c.dim = v;
        }
        if let Some(v) = self.classes {
            c.classes = Some(v);
        } else if let Some(k) = c.classes {
            // A preset's K (fig3: 1000) that exceeds the n_c^L of a smaller
            // instance given by flags becomes the full latent set.
            let full = u32::try_from(c.len).ok().and_then(|l| c.n_c.checked_pow(l));
            if full.is_some_and(|f| k >= f) {
                c.classes = None;
            }
        }
        if let Some(v) = self.lambda {
            c.lambda_w = v;
            c.lambda_u = v;
        }
        if let Some(v) = self.lambda_w {
            c.lambda_w = v;
        }
        if let Some(v) = self.lambda_u {
            c.lambda_u = v;
        }
        let exponent = match c.freq {
            Freq::Zipf { exponent } => exponent,
            Freq::Uniform => 1.0,
        };
        match (self.freq, self.zipf_exponent) {
            (Some(FreqArg::Uniform), Some(s)) => {
                return Err(Error::invalid(
                    "zipf_exponent",
                    s,
                    "given with --freq uniform; use --freq zipf",
                ))
            }
            (Some(FreqArg::Uniform), None) => c.freq = Freq::Uniform,
            (Some(FreqArg::Zipf), s) => {
                c.freq = Freq::Zipf {
                    exponent: s.unwrap_or(exponent),
                }
            }
            (None, Some(s)) => c.freq = Freq::Zipf { exponent: s },
            (None, None) => {}
        }
        let current = c.resolved_norm()?;
        let eps = self.eps.or(current.eps()).unwrap_or(default_eps);
        match (self.norm, self.layer_norm) {
            (Some(n), true) if n != NormArg::Layer => {
                return Err(Error::invalid(
                    "norm",
                    n.norm(eps).name(),
                    "conflicts with --layer-norm (which is --norm layer)",
                ))
            }
            (Some(n), _) => c.set_norm(n.norm(eps)),
            (None, true) => c.set_norm(Norm::Layer { eps }),
            (None, false) if self.eps.is_some() => c.set_norm(match current.eps() {
                Some(_) => current.with_eps(eps),
                None => Norm::Layer { eps },
            }),
            (None, false) => {}
        }
        if let Some(v) = self.lambda_affine {
            c.lambda_affine = Some(v);
        }
        if let Some(v) = self.seed {
            c.seed = v;
        }
        Ok(c)
    }
}

/// The paper's experiments on the command line (see [`Preset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// Uniform mu, no LayerNorm, n_spl = 5, 1200 epochs.
    Fig3,
    /// Zipf mu, no LayerNorm, n_spl = 500, 10 epochs.
    Fig4a,
    /// Zipf mu, no LayerNorm, n_spl = 5, 3000 epochs.
    Fig4b,
    /// Zipf mu, LayerNorm (eps 1e-5), no weight decay on W, n_spl = 5, 500 epochs.
    Fig4c,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Preset {
        match p {
            PresetArg::Fig3 => Preset::Fig3,
            PresetArg::Fig4a => Preset::Fig4a,
            PresetArg::Fig4b => Preset::Fig4b,
            PresetArg::Fig4c => Preset::Fig4c,
        }
    }
}
