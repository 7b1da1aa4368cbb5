//! The paper's finite-sample experiments (THEORY §6): presets, one measured run
//! (training + collapse metrics + limit predictions + figures + `.npy` export),
//! and the whole reproduction with its report `docs/reproduction.md` (submodule `report`).

mod report;

pub use report::{experiments, judge, reproduce, Experiment, Outcome, ReproduceOptions};

use crate::collapse::{self, Form, Prediction};
use crate::error::{Error, Result};
use crate::metrics::{self, CollapseMetrics};
use crate::npy;
use crate::plots::{self, Series};
use crate::task::{Freq, Task, TaskConfig};
use crate::train::{EvalRecord, TrainConfig, Trainer};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The paper's experiments (THEORY §6). Common: `n_c = 3, n_w = 1200, L = 15,
/// K = 1000, d = 100`, SGD with lr 0.1, batch 100, weight decay 0.001.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Preset {
    /// Uniform mu, no LayerNorm, n_spl = 5, 1200 epochs.
    Fig3,
    /// Zipf mu, no LayerNorm, n_spl = 500, 10 epochs.
    Fig4a,
    /// Zipf mu, no LayerNorm, n_spl = 5, 3000 epochs.
    Fig4b,
    /// Zipf mu, LayerNorm (eps 1e-5), no weight decay on W, n_spl = 5, 500 epochs.
    Fig4c,
}

impl Preset {
    /// All four, in the paper's order.
    pub const ALL: [Preset; 4] = [Preset::Fig3, Preset::Fig4a, Preset::Fig4b, Preset::Fig4c];

    /// `fig3`, `fig4a`, ...
    pub fn name(self) -> &'static str {
        match self {
            Preset::Fig3 => "fig3",
            Preset::Fig4a => "fig4a",
            Preset::Fig4b => "fig4b",
            Preset::Fig4c => "fig4c",
        }
    }

    /// The task of the experiment (latent variables drawn with seed 0).
    pub fn task(self) -> TaskConfig {
        let base = TaskConfig {
            n_c: 3,
            s_c: 400,
            len: 15,
            dim: 100,
            classes: Some(1000),
            freq: Freq::Uniform,
            layer_norm: None,
            lambda_w: 1e-3,
            lambda_u: 1e-3,
            seed: 0,
            latent: None,
        };
        let zipf = Freq::Zipf { exponent: 1.0 };
        match self {
            Preset::Fig3 => base,
            Preset::Fig4a | Preset::Fig4b => TaskConfig { freq: zipf, ..base },
            Preset::Fig4c => TaskConfig {
                freq: zipf,
                layer_norm: Some(1e-5),
                lambda_w: 0.0,
                ..base
            },
        }
    }

    /// The SGD protocol of the experiment.
    pub fn train(self) -> TrainConfig {
        let (n_spl, epochs, eval_every) = match self {
            Preset::Fig3 => (5, 1200, 20),
            Preset::Fig4a => (500, 10, 1),
            Preset::Fig4b => (5, 3000, 50),
            Preset::Fig4c => (5, 500, 10),
        };
        TrainConfig {
            n_spl,
            epochs,
            eval_every,
            checkpoint_every: (epochs / 10).max(1),
            ..TrainConfig::default()
        }
    }

    /// What the paper reports for this experiment.
    pub fn paper_outcome(self) -> &'static str {
        match self {
            Preset::Fig3 => "test accuracy ~100 %, type-I collapse",
            Preset::Fig4a => "~100 %, direction collapses, norms depend on frequency",
            Preset::Fig4b => "test accuracy peaks near 2/3 then decays below 1/2; no collapse",
            Preset::Fig4c => "~100 %, type-II collapse",
        }
    }
}

/// The task the theory speaks of: LayerNorm with `eps = 0`.
pub fn theory_task(task: &Task) -> Task {
    if task.layer_norm().is_some() {
        task.with_layer_norm(Some(0.0))
            .expect("eps = 0 is valid wherever eps was")
    } else {
        task.clone()
    }
}

/// Limit predictions for `task` in the latent-set and mean-field forms.
pub fn predictions(task: &Task) -> Result<Vec<Prediction>> {
    let t = theory_task(task);
    [Form::LatentSet, Form::MeanField]
        .into_iter()
        .map(|f| collapse::predict(&t, f))
        .collect()
}

/// Everything one training run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutput {
    pub name: String,
    pub task: Task,
    pub config: TrainConfig,
    /// Every evaluation of the run (read back from `log.jsonl`, so resumed runs are whole).
    pub records: Vec<EvalRecord>,
    /// Collapse metrics of the final weights.
    pub metrics: CollapseMetrics,
    /// Latent-set and mean-field predictions.
    pub predictions: Vec<Prediction>,
    pub test_accuracy: f64,
    pub train_accuracy: f64,
    /// Highest test accuracy over the evaluations, and its epoch.
    pub peak_test_accuracy: (f64, usize),
    pub secs_per_epoch: f64,
    /// Wall time of the run (training, evaluations, figures).
    pub wall_secs: f64,
    pub out_dir: PathBuf,
}

fn metrics_extra(m: &CollapseMetrics) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(m) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

fn read_log(dir: &Path) -> Result<Vec<EvalRecord>> {
    let path = dir.join("log.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut out: Vec<EvalRecord> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: EvalRecord = serde_json::from_str(line)?;
        // a resumed run may log an epoch again: keep the last record of each epoch
        out.retain(|x| x.epoch != r.epoch);
        out.push(r);
    }
    out.sort_by_key(|r| r.epoch);
    Ok(out)
}

/// Trains (or resumes, when `resume` and a checkpoint exists in `out`) and measures:
/// collapse metrics at every evaluation (into `out/log.jsonl`), final metrics,
/// predictions, `W.npy` (`n_w x d`, f32) and `U.npy` (`K x L d`, f32), `summary.json`.
pub fn run_training(
    name: &str,
    task: &Task,
    cfg: &TrainConfig,
    out: &Path,
    progress: bool,
    resume: bool,
) -> Result<RunOutput> {
    let started = Instant::now();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut trainer = if resume {
        let mut t = Trainer::resume(out)?;
        if cfg.epochs != t.config().epochs {
            t.set_epochs(cfg.epochs)?;
        }
        t
    } else {
        // a fresh run starts a fresh log
        let log = out.join("log.jsonl");
        if log.exists() {
            std::fs::remove_file(&log).map_err(|e| Error::io(&log, e))?;
        }
        Trainer::new(task, cfg)?
    };
    let task = trainer.task().clone();
    let summary = trainer.train(Some(out), progress, |rec, t| {
        let m = metrics::collapse_metrics(t.task(), &t.params_f64());
        rec.extra = metrics_extra(&m);
    })?;
    let params = trainer.params_f64();
    let m = metrics::collapse_metrics(&task, &params);
    let preds = predictions(&task)?;
    npy::write_npy_f32(&out.join("W.npy"), &[task.n_w(), task.dim()], trainer.w())?;
    npy::write_npy_f32(
        &out.join("U.npy"),
        &[task.k(), task.len() * task.dim()],
        trainer.u(),
    )?;
    let records = read_log(out)?;
    let peak = records
        .iter()
        .map(|r| (r.test_accuracy, r.epoch))
        .fold((f64::NEG_INFINITY, 0), |a, b| if b.0 > a.0 { b } else { a });
    let run = RunOutput {
        name: name.to_string(),
        task,
        config: trainer.config().clone(),
        records,
        metrics: m,
        predictions: preds,
        test_accuracy: summary.last.test_accuracy,
        train_accuracy: summary.last.train_accuracy,
        peak_test_accuracy: peak,
        secs_per_epoch: summary.secs_per_epoch,
        wall_secs: started.elapsed().as_secs_f64(),
        out_dir: out.to_path_buf(),
    };
    let path = out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary_json(&run))?)
        .map_err(|e| Error::io(&path, e))?;
    Ok(run)
}

/// The summary object of a run (printed by `train --json`, written to `summary.json`).
pub fn summary_json(run: &RunOutput) -> serde_json::Value {
    let m = &run.metrics;
    serde_json::json!({
        "name": run.name,
        "test_accuracy": run.test_accuracy,
        "train_accuracy": run.train_accuracy,
        "peak_test_accuracy": run.peak_test_accuracy.0,
        "peak_epoch": run.peak_test_accuracy.1,
        "word_norm_mean": m.word_norm_mean,
        "word_norm_std": m.word_norm_std,
        "u_norm_mean": m.u_norm_mean,
        "pca_w": m.pca_w,
        "pca_u": m.pca_u,
        "within_spread_w": m.within_spread_w,
        "direction_spread_w": m.direction_spread_w,
        "norm_cv_w": m.norm_cv_w,
        "gram_error_w": m.gram_error_w,
        "duality": m.duality,
        "norm_by_rank": m.norm_by_rank,
        "secs_per_epoch": run.secs_per_epoch,
        "epochs": run.config.epochs,
        "wall_secs": run.wall_secs,
        "predictions": run.predictions,
        "task": run.task,
        "config": run.config,
        "out_dir": run.out_dir,
    })
}

/// Draws the run's figures into `dir` as `<prefix>_{pca_w,pca_u,accuracy,norms}.{png,svg}`;
/// returns the PNG paths.
pub fn figures(run: &RunOutput, dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let task = &run.task;
    let params = read_params(run)?;
    let names: Vec<String> = (0..task.n_c().min(3))
        .map(|a| format!("concept {}", a + 1))
        .collect();
    let mut out = Vec::new();
    let stem = dir.join(format!("{prefix}_pca_w"));
    let (pw, lw) = metrics::pca_points_w(task, &params);
    let pw2: Vec<[f64; 2]> = pw.iter().map(|p| [p[0], p[1]]).collect();
    plots::pca_scatter(
        &stem,
        &format!("{}: token representations phi(w_t), PCA", run.name),
        &pw2,
        &lw,
        &names,
        &run.metrics.pca_w,
    )?;
    out.push(stem.with_extension("png"));
    let stem = dir.join(format!("{prefix}_pca_u"));
    let (pu, lu) = metrics::pca_points_u(task, &params);
    let pu2: Vec<[f64; 2]> = pu.iter().map(|p| [p[0], p[1]]).collect();
    plots::pca_scatter(
        &stem,
        &format!("{}: classifier blocks u_(k,l) by z_(k,l), PCA", run.name),
        &pu2,
        &lu,
        &names,
        &run.metrics.pca_u,
    )?;
    out.push(stem.with_extension("png"));
    let stem = dir.join(format!("{prefix}_accuracy"));
    let series = vec![
        Series::solid(
            "train",
            run.records
                .iter()
                .map(|r| (r.epoch as f64, r.train_accuracy))
                .collect(),
        ),
        Series::solid(
            "test",
            run.records
                .iter()
                .map(|r| (r.epoch as f64, r.test_accuracy))
                .collect(),
        ),
    ];
    plots::curves(
        &stem,
        &format!("{}: accuracy", run.name),
        "epoch",
        "accuracy",
        &series,
        Some((0.0, 1.0)),
    )?;
    out.push(stem.with_extension("png"));
    let stem = dir.join(format!("{prefix}_norms"));
    let mean_field = run.predictions.iter().find(|p| p.form == Form::MeanField);
    plots::norms_vs_rank(
        &stem,
        &format!("{}: norm of phi(w) per frequency rank", run.name),
        &run.metrics.norm_by_rank,
        mean_field.map(|p| p.r.as_slice()),
        task.s_c() > 20,
    )?;
    out.push(stem.with_extension("png"));
    Ok(out)
}

fn read_params(run: &RunOutput) -> Result<crate::network::Params> {
    let (_, w) = npy::read_npy_f32(&run.out_dir.join("W.npy"))?;
    let (_, u) = npy::read_npy_f32(&run.out_dir.join("U.npy"))?;
    let mut p = crate::network::Params::zeros(&run.task);
    p.w = w.iter().map(|&v| v as f64).collect();
    p.u = u.iter().map(|&v| v as f64).collect();
    Ok(p)
}
