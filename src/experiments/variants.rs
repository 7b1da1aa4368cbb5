//! `reproduce --variants`: fig4's long-tailed setting trained with each
//! normalization (`none`, `center`, `layer`, `rms`, `layer-affine`), measured against
//! each variant's limit prediction (docs/theory.md §10), with its report.
//!
//! The protocol is fig4c's (Zipf frequencies, `n_spl = 5`, 500 epochs, `lambda_U =
//! 0.001`, `eps = 1e-5`). The decay on `W` follows the paper's two long-tailed
//! experiments: the scale-invariant norms (`layer`, `rms`, `layer-affine`) train
//! without it, as fig4c; the linear ones (`none`, `center`) keep fig4b's `lambda_W =
//! 0.001`, without which their limit has no minimiser (the norms grow without bound)
//! and there is nothing to compare with. The gain and bias of `layer-affine` decay
//! with `lambda_affine = 0.001` (bounded, like `U`).

use super::report::{machine, report_dir, run_experiments, seed_and_shrink, Ran};
use super::{Experiment, Preset, ReproduceOptions, RunOutput};
use crate::collapse::{CollapseType, Form};
use crate::error::{Error, Result};
use crate::norm::Norm;
use crate::plots::{self, Series};
use crate::task::TaskConfig;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// The normalizations compared, in the report's order.
pub const VARIANT_NORMS: [Norm; 5] = [
    Norm::None,
    Norm::Center,
    Norm::Layer { eps: 1e-5 },
    Norm::Rms { eps: 1e-5 },
    Norm::LayerAffine { eps: 1e-5 },
];

/// Weight decay of `W` for the linear norms and of the affine parameters.
const DECAY: f64 = 1e-3;

/// The experiment of one normalization (see the module docs for its decays).
pub fn variant_experiment(norm: Norm, quick: bool, seed: u64) -> Experiment {
    let base = Preset::Fig4c.task();
    let lambda_w = if norm.is_linear() { DECAY } else { 0.0 };
    let mut e = Experiment {
        name: format!("variant_{}", norm.name()),
        preset: None,
        task: TaskConfig {
            layer_norm: None,
            norm: Some(norm),
            lambda_w,
            lambda_affine: norm.is_affine().then_some(DECAY),
            ..base
        },
        train: Preset::Fig4c.train(),
    };
    seed_and_shrink(&mut e, quick, seed);
    e
}

/// One trained variant, as the report and `reproduce --variants` print it.
#[derive(Debug, Clone, Serialize)]
pub struct VariantRow {
    pub norm: String,
    pub lambda_w: f64,
    pub lambda_affine: Option<f64>,
    /// Predicted collapse type (none for `layer-affine`).
    pub predicted: Option<CollapseType>,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub peak_test_accuracy: f64,
    pub peak_epoch: usize,
    pub within_spread: f64,
    pub direction_spread: f64,
    pub norm_cv: f64,
    /// Mean `||phi(w)||` per frequency rank (most frequent first).
    pub norm_by_rank: Vec<f64>,
    /// The mean-field prediction per rank (empty without a prediction).
    pub predicted_by_rank: Vec<f64>,
    /// Median over the ranks of `|measured / predicted - 1|` (none without a prediction).
    pub median_rel_error: Option<f64>,
    pub secs_per_epoch: f64,
    pub train_secs: f64,
}

impl VariantRow {
    fn new(run: &RunOutput) -> Self {
        let pred = run.predictions.iter().find(|p| p.form == Form::MeanField);
        let m = &run.metrics;
        let predicted_by_rank = pred.map(|p| p.r.clone()).unwrap_or_default();
        let median_rel_error = pred.map(|p| {
            let mut e: Vec<f64> = m
                .norm_by_rank
                .iter()
                .zip(&p.r)
                .map(|(a, b)| (a / b - 1.0).abs())
                .collect();
            e.sort_by(f64::total_cmp);
            e[e.len() / 2]
        });
        VariantRow {
            norm: run.task.norm().name().to_string(),
            lambda_w: run.task.lambda_w(),
            lambda_affine: run
                .task
                .norm()
                .is_affine()
                .then(|| run.task.lambda_affine()),
            predicted: pred.map(|p| p.kind),
            train_accuracy: run.train_accuracy,
            test_accuracy: run.test_accuracy,
            peak_test_accuracy: run.peak_test_accuracy,
            peak_epoch: run.peak_epoch,
            within_spread: m.within_spread_w,
            direction_spread: m.direction_spread_w,
            norm_cv: m.norm_cv_w,
            norm_by_rank: m.norm_by_rank.clone(),
            predicted_by_rank,
            median_rel_error,
            secs_per_epoch: run.secs_per_epoch,
            train_secs: run.secs_per_epoch * run.epochs as f64,
        }
    }

    /// One line for the terminal.
    pub fn line(&self) -> String {
        format!(
            "{:<12} test {:5.1} %  within spread {:.2e}  norm CV {:.3}  vs prediction {}",
            self.norm,
            100.0 * self.test_accuracy,
            self.within_spread,
            self.norm_cv,
            match (self.predicted, self.median_rel_error) {
                (Some(k), Some(e)) => format!("type {k:?}, median error {:.1} %", 100.0 * e),
                _ => "none (no closed form)".into(),
            }
        )
    }
}

/// Ranks shown in the table: 1, `s_c/40`, `s_c/4`, `s_c` (1, 10, 100, 400 for fig4).
fn shown_ranks(s_c: usize) -> Vec<usize> {
    let mut r: Vec<usize> = [1, s_c / 40, s_c / 4, s_c]
        .into_iter()
        .filter(|&x| x >= 1)
        .collect();
    r.dedup();
    r
}

/// Trains every variant (resuming, refusing or starting over run directories as
/// `opts` says), draws the figures and writes the report `opts.report`.
pub fn variants(opts: &ReproduceOptions) -> Result<Vec<VariantRow>> {
    let started = Instant::now();
    super::check_writable("report", &opts.report)?;
    let doc_dir = report_dir(&opts.report);
    let fig_dir = doc_dir.join("figures");
    let list = VARIANT_NORMS
        .iter()
        .map(|&n| variant_experiment(n, opts.quick, opts.seed))
        .collect();
    let runs = run_experiments(opts, list, &fig_dir)?;
    let rows: Vec<VariantRow> = runs.iter().map(|(_, r, _)| VariantRow::new(r)).collect();
    let combined = fig_dir.join("variants_norms");
    combined_figure(&combined, &rows)?;
    let text = render(
        opts,
        &runs,
        &rows,
        &doc_dir,
        started.elapsed().as_secs_f64(),
    );
    std::fs::write(&opts.report, text).map_err(|e| Error::io(&opts.report, e))?;
    Ok(rows)
}

/// Every variant's norm per rank (solid) and the distinct predictions (dashed)
/// against `log10(rank)`.
fn combined_figure(stem: &Path, rows: &[VariantRow]) -> Result<()> {
    let xy = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(i, &y)| (((i + 1) as f64).log10(), y))
            .collect()
    };
    let mut series: Vec<Series> = rows
        .iter()
        .map(|r| Series::solid(r.norm.clone(), xy(&r.norm_by_rank)))
        .collect();
    // Predictions that coincide (layer and rms; none and center) are drawn once.
    let mut preds: Vec<(Vec<String>, &[f64])> = Vec::new();
    for r in rows.iter().filter(|r| !r.predicted_by_rank.is_empty()) {
        let p = r.predicted_by_rank.as_slice();
        let same = |q: &[f64]| {
            q.len() == p.len()
                && q.iter()
                    .zip(p)
                    .all(|(a, b)| (a - b).abs() <= 1e-9 * (1.0 + b.abs()))
        };
        match preds.iter_mut().find(|(_, q)| same(q)) {
            Some((names, _)) => names.push(r.norm.clone()),
            None => preds.push((vec![r.norm.clone()], p)),
        }
    }
    for (names, p) in preds {
        series.push(Series::dashed(
            format!("predicted: {}", names.join(", ")),
            xy(p),
        ));
    }
    plots::curves(
        stem,
        "norm of phi(w) per frequency rank, each normalization",
        "log10 frequency rank",
        "||phi(w)||",
        &series,
        None,
    )
}

/// Seconds with three decimals, or three significant digits below 0.01.
fn secs(x: f64) -> String {
    if x >= 0.01 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}

fn opt_f(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x}"))
}

fn at_ranks(v: &[f64], ranks: &[usize]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    ranks
        .iter()
        .map(|&r| format!("{:.3}", v[r - 1]))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn render(
    opts: &ReproduceOptions,
    runs: &[Ran],
    rows: &[VariantRow],
    doc_dir: &Path,
    wall: f64,
) -> String {
    let (cpu, threads) = machine();
    let (e0, _, _) = &runs[0];
    let (t, c) = (&e0.task, &e0.train);
    let ranks = shown_ranks(t.s_c);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# fig4's long-tailed setting with each normalization\n\n\
         Written by `fcollapse reproduce --variants{}{}` (seed {}) on {cpu} ({threads} threads): \
         SGD training time **{:.1} min** summed over the runs, wall time of this invocation {:.1} min.\n",
        if opts.quick { " --quick" } else { "" },
        if opts.resume { " --resume" } else { "" },
        opts.seed,
        rows.iter().map(|r| r.train_secs).sum::<f64>() / 60.0,
        wall / 60.0,
    );
    if opts.quick {
        let _ = writeln!(s, "**Quick mode**: shapes and epochs are scaled down.\n");
    }
    let _ = writeln!(
        s,
        "Setting: `n_c = {}`, `s_c = {}`, `L = {}`, `d = {}`, `K = {}` drawn classes, Zipf \
         frequencies (exponent 1), `eps = 1e-5`; SGD with learning rate {}, batch {}, `n_spl = {}` \
         sentences per class, {} epochs, `lambda_U = {}`. Decay of `W`: 0 for the scale-invariant \
         norms (`layer`, `rms`, `layer-affine`, as fig4c), {DECAY} for the linear ones (`none`, \
         `center`, as fig4b: without it their limit has no minimiser); `lambda_affine = {DECAY}`.\n",
        t.n_c,
        t.s_c,
        t.len,
        t.dim,
        t.classes.unwrap_or(0),
        c.lr,
        c.batch,
        c.n_spl,
        c.epochs,
        t.lambda_u,
    );
    let rank_names = ranks
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(" / ");
    let _ = writeln!(
        s,
        "| norm | `lambda_W` | `lambda_affine` | prediction | train acc | test acc | peak test (epoch) \
         | within spread | direction spread | norm CV | `‖phi(w)‖` at ranks {rank_names} \
         | predicted | median error vs prediction | s / epoch | training |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} ({}) | {:.2e} | {:.2e} | {:.3} | {} | {} | {} | {} | {:.1} s |",
            r.norm,
            r.lambda_w,
            opt_f(r.lambda_affine),
            r.predicted
                .map_or("none (no closed form)".into(), |k| format!("type {k:?}")),
            r.train_accuracy,
            r.test_accuracy,
            r.peak_test_accuracy,
            r.peak_epoch,
            r.within_spread,
            r.direction_spread,
            r.norm_cv,
            at_ranks(&r.norm_by_rank, &ranks),
            at_ranks(&r.predicted_by_rank, &ranks),
            r.median_rel_error
                .map_or("–".into(), |e| format!("{:.1} %", 100.0 * e)),
            secs(r.secs_per_epoch),
            r.train_secs,
        );
    }
    let _ = writeln!(
        s,
        "\nWithin spread: `‖Phi - M‖ / ‖Phi‖` (distance of the token representations to their \
         concept means); direction spread: the same for the unit directions; norm CV: coefficient \
         of variation of `‖phi(w_t)‖` over the tokens. Predictions: the mean-field form of \
         docs/theory.md §10 at `eps = 0`.\n"
    );
    let rel = |p: &Path| {
        p.strip_prefix(doc_dir)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/")
    };
    let _ = writeln!(
        s,
        "![norms per rank, every variant](figures/variants_norms.png)\n"
    );
    for ((e, _, figs), r) in runs.iter().zip(rows) {
        let _ = writeln!(s, "## `{}`\n", r.norm);
        let _ = writeln!(s, "Run directory: `{}`.\n", e.name);
        // The classifier's PCA (pca_u) stays out of the report.
        for f in figs
            .iter()
            .filter(|f| !f.to_string_lossy().contains("pca_u"))
        {
            let _ = writeln!(s, "![{}]({})\n", e.name, rel(f));
        }
    }
    let _ = writeln!(
        s,
        "## Rerun\n\n```sh\nfcollapse reproduce --variants{} --seed {}   # --resume continues, --force starts over\n```",
        if opts.quick { " --quick" } else { "" },
        opts.seed
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_differ_only_in_norm_and_decays() {
        let v: Vec<Experiment> = VARIANT_NORMS
            .iter()
            .map(|&n| variant_experiment(n, false, 3))
            .collect();
        for e in &v {
            let t = e.task.build().unwrap();
            assert_eq!((t.k(), t.n_w(), t.dim()), (1000, 1200, 100));
            assert_eq!(e.train.epochs, 500);
            assert_eq!((e.task.seed, e.train.seed), (3, 3));
            let linear = t.norm().is_linear();
            assert_eq!(t.lambda_w(), if linear { DECAY } else { 0.0 });
            assert_eq!(t.lambda_u(), Preset::Fig4c.task().lambda_u);
        }
        let names: Vec<&str> = v.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "variant_none",
                "variant_center",
                "variant_layer",
                "variant_rms",
                "variant_layer-affine"
            ]
        );
        assert_eq!(shown_ranks(400), [1, 10, 100, 400]);
        assert_eq!(shown_ranks(8), [1, 2, 8]);
    }
}
