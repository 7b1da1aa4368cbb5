//! `fcollapse train`: finite-sample SGD as the paper did.

use super::TaskArgs;
use crate::error::Result;
use crate::experiments::{self, Preset};
use crate::train::TrainConfig;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A paper experiment's settings (default fig3); explicit flags override it.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    #[command(flatten)]
    pub task: TaskArgs,
    /// Training sentences per class n_spl.
    #[arg(long)]
    pub nspl: Option<usize>,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Learning rate.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Mini-batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Evaluate (accuracy, collapse metrics) every E epochs.
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Checkpoint every N epochs (0: only at the end and on Ctrl-C).
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Worker threads (0: all cores); results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Output directory (default `runs/PRESET-seedSEED`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run whose checkpoint is in DIR (ends bit-identical to an uninterrupted run).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Also draw the figures (PCA scatters, accuracy, norms) into the output directory.
    #[arg(long)]
    pub plots: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(a: &TrainArgs) -> Result<i32> {
    let progress = !a.quiet && !a.json;
    let (task, cfg, out, name, resume) = if let Some(dir) = &a.resume {
        let t = crate::train::Trainer::resume(dir)?;
        let mut cfg = t.config().clone();
        if let Some(e) = a.epochs {
            cfg.epochs = e;
        }
        (
            t.task().clone(),
            cfg,
            dir.clone(),
            "resumed".to_string(),
            true,
        )
    } else {
        let preset = a.preset.unwrap_or(Preset::Fig3);
        let task = a.task.apply(preset.task(), 1e-5)?.build()?;
        let base = preset.train();
        let cfg = TrainConfig {
            n_spl: a.nspl.unwrap_or(base.n_spl),
            epochs: a.epochs.unwrap_or(base.epochs),
            lr: a.lr.unwrap_or(base.lr),
            batch: a.batch.unwrap_or(base.batch),
            eval_every: a.eval_every.unwrap_or(base.eval_every),
            checkpoint_every: a.checkpoint_every.unwrap_or(base.checkpoint_every),
            threads: a.threads.unwrap_or(base.threads),
            seed: task.seed(),
            ..base
        };
        cfg.validate()?;
        let name = if a.preset.is_some() {
            preset.name()
        } else {
            "train"
        };
        let out = a
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("runs/{name}-seed{}", task.seed())));
        (task, cfg, out, name.to_string(), false)
    };
    let run = experiments::run_training(&name, &task, &cfg, &out, progress, resume)?;
    if a.plots {
        experiments::figures(&run, &out, "fig")?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&experiments::summary_json(&run))?
        );
    } else {
        let m = &run.metrics;
        println!("run        {} -> {}", run.task, out.display());
        println!(
            "accuracy   train {:.4}  test {:.4}  (peak test {:.4} at epoch {})",
            run.train_accuracy,
            run.test_accuracy,
            run.peak_test_accuracy.0,
            run.peak_test_accuracy.1
        );
        println!(
            "collapse   spread ratio {:.3e}  direction spread {:.3e}  norm CV {:.3}  pca_w {:.3?}  pca_u {:.3?}",
            m.within_spread_w, m.direction_spread_w, m.norm_cv_w, m.pca_w, m.pca_u
        );
        println!(
            "norms      word {:.4} ± {:.4}  u {:.4}",
            m.word_norm_mean, m.word_norm_std, m.u_norm_mean
        );
        for p in &run.predictions {
            println!(
                "predicted  type {:?} ({} form): word norm {:.4}, b {:.4}",
                p.kind, p.form, p.word_norm, p.u_norm
            );
        }
        println!(
            "speed      {:.4} s per epoch, {} epochs",
            run.secs_per_epoch, run.config.epochs
        );
    }
    Ok(0)
}
