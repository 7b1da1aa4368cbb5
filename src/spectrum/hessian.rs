//! The Hessian spectrum of the exact limit risk at given weights
//! (`fcollapse analyze --hessian`), and its figure.

use super::TraceEstimate;
use super::{hutchinson_trace, slq, top_eigenvalues, Density, Slq, SpectrumConfig, TopEigen};
use crate::error::Result;
use crate::limit;
use crate::network::Params;
use crate::plots::{self, Series};
use crate::task::Task;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Spectrum of the Hessian `H` of the exact limit risk `R(W, U)` (penalties
/// included) at the weights, over all `n = n_w d + K L d` parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HessianSpectrum {
    /// Number of parameters `n`.
    pub n_params: usize,
    /// The `k` largest eigenvalues (Lanczos).
    pub top: TopEigen,
    /// Hutchinson's estimate of `tr H`.
    pub trace: TraceEstimate,
    /// `tr H / n` estimated by the SLQ probes (the density's first moment).
    pub slq_mean: f64,
    /// The SLQ Ritz values and weights.
    pub slq: Slq,
    /// The broadened density.
    pub density: Density,
    /// Exact Hessian-vector products used (each costs about one exact gradient).
    pub hessian_products: usize,
    /// How `H v` is computed.
    pub hvp: String,
}

/// Top eigenvalues, trace and density of the Hessian of [`limit::risk`] at `p`.
///
/// `H v` is the exact product of [`limit::HessianOperator`] (analytic second
/// derivatives of the exact risk, one enumeration per product after one gradient
/// pass at `p`; round-off only). Refused (bad input)
/// when [`limit::check_budget`]`(task, budget)` refuses the exact enumeration.
/// Cost: `(top-k products + hutchinson_probes + slq_probes * slq_steps)` products.
pub fn hessian_spectrum(
    task: &Task,
    p: &Params,
    cfg: &SpectrumConfig,
    budget: f64,
) -> Result<HessianSpectrum> {
    cfg.validate()?;
    limit::check_budget(task, budget)?;
    let n = p.flat_len();
    let op = limit::HessianOperator::new(task, p);
    let hv = |v: &[f64]| op.apply(v);
    let top = top_eigenvalues(hv, n, cfg.top_k, cfg.seed, cfg.max_products, cfg.tol);
    let trace = hutchinson_trace(hv, n, cfg.hutchinson_probes, cfg.seed);
    let slq = slq(hv, n, cfg.slq_probes, cfg.slq_steps, cfg.seed);
    let density = Density::new(&slq, cfg.slq_sigma, cfg.grid_points);
    Ok(HessianSpectrum {
        n_params: n,
        hessian_products: top.products + trace.probes + slq.products,
        slq_mean: slq.moment(1),
        top,
        trace,
        slq,
        density,
        hvp: "exact second derivatives of the exact risk".into(),
    })
}

/// Draws `<stem>.png` / `.svg`: `log10` of the SLQ density against the
/// eigenvalue (values below `1e-8` of the peak are drawn at that floor), with
/// the largest Lanczos eigenvalue as a dashed vertical line. Returns the PNG path.
pub fn density_figure(s: &HessianSpectrum, stem: &Path) -> Result<PathBuf> {
    let peak = s.density.values.iter().fold(0.0f64, |m, v| m.max(*v));
    let floor = (peak * 1e-8).max(f64::MIN_POSITIVE);
    let points: Vec<(f64, f64)> = s
        .density
        .grid
        .iter()
        .zip(&s.density.values)
        .map(|(&t, &v)| (t, v.max(floor).log10()))
        .collect();
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let mut series = vec![Series::solid(
        format!(
            "SLQ density, {} probes x {} steps",
            s.slq.nodes.len(),
            s.slq.nodes.iter().map(Vec::len).max().unwrap_or(0),
        ),
        points,
    )];
    if let Some(&top) = s.top.values.first() {
        series.push(Series::dashed(
            format!("largest eigenvalue {top:.3e}"),
            vec![(top, lo), (top, hi)],
        ));
    }
    plots::curves(
        stem,
        &format!(
            "Hessian of R(W,U): n = {}, trace {:.3e} ± {:.1e}",
            s.n_params, s.trace.value, s.trace.std_error
        ),
        "eigenvalue",
        "log10 density",
        &series,
        None,
    )?;
    Ok(stem.with_extension("png"))
}

/// Four lines for `fcollapse analyze --hessian`.
impl std::fmt::Display for HessianSpectrum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.n_params as f64;
        writeln!(
            f,
            "hessian    n = {} parameters; H v by {} ({} products)",
            self.n_params, self.hvp, self.hessian_products
        )?;
        let vals: Vec<String> = self.top.values.iter().map(|v| format!("{v:.6e}")).collect();
        let res = self.top.residuals.iter().fold(0.0f64, |m, r| m.max(*r));
        writeln!(
            f,
            "  top-{}   {}  (Lanczos, {} products, max residual {:.1e}{})",
            self.top.values.len(),
            vals.join(" "),
            self.top.products,
            res,
            if self.top.converged {
                ""
            } else {
                ", NOT converged"
            }
        )?;
        writeln!(
            f,
            "  trace    {:.6e} ± {:.1e} (Hutchinson, {} Rademacher probes); tr/n {:.4e}, SLQ first moment {:.4e}",
            self.trace.value,
            self.trace.std_error,
            self.trace.probes,
            self.trace.value / n,
            self.slq_mean
        )?;
        let (lo, hi) = self.slq.range();
        write!(
            f,
            "  density  SLQ {} probes x {} steps, Ritz values in [{lo:.4e}, {hi:.4e}], Gaussian sigma {:.2e}",
            self.slq.nodes.len(),
            self.slq.nodes.iter().map(Vec::len).max().unwrap_or(0),
            self.density.sigma
        )
    }
}
