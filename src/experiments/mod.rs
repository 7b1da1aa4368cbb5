//! The paper's finite-sample experiments (docs/theory.md §9): presets, one measured run
//! (training + collapse metrics + limit predictions + figures + `.npy` export),
//! and the whole reproduction with its report `docs/reproduction.md` (submodule `report`),
//! and fig4's long-tailed setting with each normalization (submodule `variants`).

mod report;
mod variants;

pub use report::{
    check_writable, experiments, judge, reproduce, Experiment, Outcome, ReproduceOptions,
};
pub use variants::{variant_experiment, variants, VariantRow, VARIANT_NORMS};

use crate::collapse::{self, Form, Prediction};
use crate::error::{Error, Result};
use crate::metrics::{self, CollapseMetrics};
use crate::network::Params;
use crate::plots::{self, Series};
use crate::task::{Freq, Task, TaskConfig};
use crate::train::{
    Checkpointer, Divergence, EvalRecord, LogWriter, ObserverMode, Outcome as TrainOutcome,
    Progress, RunDir, StopFlag, TrainConfig, Trainer,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The paper's experiments (docs/theory.md §9). Common: `n_c = 3, n_w = 1200, L = 15,
/// K = 1000, d = 100`, SGD with lr 0.1, batch 100, weight decay 0.001.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
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

impl std::fmt::Display for Preset {
    /// `fig3`, `fig4a`, ...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Preset {
    type Err = crate::Error;
    /// Parses `fig3`, `fig4a`, `fig4b` or `fig4c`.
    fn from_str(s: &str) -> crate::Result<Preset> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                crate::Error::invalid("preset", s, "must be fig3, fig4a, fig4b or fig4c")
            })
    }
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
            norm: None,
            lambda_affine: None,
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

/// The task the theory speaks of: the normalization with `eps = 0`.
pub fn theory_task(task: &Task) -> Task {
    task.with_norm(task.norm().with_eps(0.0))
        .expect("eps = 0 is valid wherever eps was")
}

/// Limit predictions for `task` in the latent-set and mean-field forms (none for
/// `layer-affine`, whose trained `gamma`, `beta` have no closed form).
pub fn predictions(task: &Task) -> Result<Vec<Prediction>> {
    if task.norm().is_affine() {
        return Err(Error::invalid(
            "norm",
            "layer-affine",
            "no closed-form minimiser with a trained gain and bias (LayerNorm's type II, at gamma = 1 and beta = 0, is the reference)",
        ));
    }
    let t = theory_task(task);
    [Form::LatentSet, Form::MeanField]
        .into_iter()
        .map(|f| collapse::predict(&t, f))
        .collect()
}

/// Everything one completed training run produced; serialised as `summary.json`
/// (and by `train --json`): the collapse metrics are flattened into the top level.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutput {
    pub name: String,
    pub test_accuracy: f64,
    pub train_accuracy: f64,
    /// Highest test accuracy over the evaluations, and its epoch.
    pub peak_test_accuracy: f64,
    pub peak_epoch: usize,
    /// Collapse metrics of the final weights.
    #[serde(flatten)]
    pub metrics: CollapseMetrics,
    pub secs_per_epoch: f64,
    /// Epochs done (the configured total).
    pub epochs: usize,
    /// Wall time of this invocation (training, evaluations, outputs).
    pub wall_secs: f64,
    /// Latent-set and mean-field predictions (empty when there is none).
    pub predictions: Vec<Prediction>,
    /// Why there is no prediction (e.g. no weight decay: the norms grow without bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_prediction: Option<String>,
    pub task: Task,
    pub config: TrainConfig,
    #[serde(serialize_with = "lossy_path")]
    pub out_dir: PathBuf,
    /// Every evaluation of the run (read back from `log.jsonl`, so resumed runs are
    /// whole); not in the summary (the log has them).
    #[serde(skip)]
    pub records: Vec<EvalRecord>,
    /// The final weights, in f64.
    #[serde(skip)]
    pub params: Params,
}

/// Where and why a run diverged; serialised as its `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DivergedRun {
    pub name: String,
    /// Always `true` (so that a summary says at a glance how the run ended).
    pub diverged: bool,
    #[serde(flatten)]
    pub at: Divergence,
    /// The last finite checkpoint kept in the run directory, if any, and its epoch.
    #[serde(serialize_with = "lossy_opt_path")]
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_epoch: Option<usize>,
    pub task: TaskConfig,
    pub config: TrainConfig,
    #[serde(serialize_with = "lossy_path")]
    pub out_dir: PathBuf,
}

impl std::fmt::Display for DivergedRun {
    /// One line: where, what is kept, what to try.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "training diverged: non-finite loss at epoch {}, step {} of {}, with lr {}; ",
            self.at.epoch,
            self.at.step,
            self.at.steps_per_epoch,
            crate::task::short(self.at.lr)
        )?;
        match (&self.checkpoint, self.checkpoint_epoch) {
            (Some(p), Some(e)) => write!(
                f,
                "the last finite checkpoint (epoch {e}) is kept in {}; ",
                p.display()
            )?,
            _ => write!(f, "no checkpoint was written; ")?,
        }
        write!(
            f,
            "try a smaller --lr (e.g. {})",
            crate::task::short(self.at.lr / 10.0)
        )
    }
}

/// How [`run_training`] ended (an interruption is [`Error::Interrupted`]).
#[derive(Debug, Clone)]
pub enum RunResult {
    Done(Box<RunOutput>),
    Diverged(Box<DivergedRun>),
}

/// Paths as text, lossily (a non-UTF-8 path must not fail a summary).
fn lossy_path<S: serde::Serializer>(p: &Path, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

fn lossy_opt_path<S: serde::Serializer>(
    p: &Option<PathBuf>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_some(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

fn metrics_extra(m: &CollapseMetrics) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(m) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// Prepares `dir` for a fresh run: refuses a directory that holds a run
/// (a checkpoint or a log) unless `force`, since that would replace its checkpoint
/// and log; then removes every run file there. Errors name the parameter `out`.
pub fn fresh_run(dir: &RunDir, force: bool) -> Result<()> {
    let shown = dir.path().display().to_string();
    if dir.path().exists() && !dir.path().is_dir() {
        return Err(Error::invalid("out", &shown, "is a file, not a directory"));
    }
    if dir.holds_run() && !force {
        let what = match Trainer::resume(dir.path()) {
            Ok(t) => format!(
                "holds a run (checkpoint at epoch {} of {})",
                t.epochs_done(),
                t.config().epochs
            ),
            Err(_) => "holds a run".into(),
        };
        return Err(Error::invalid(
            "out",
            &shown,
            format!("{what}; continue it with `--resume {shown}`, or pass --force to start over"),
        ));
    }
    dir.create()
        .map_err(|e| Error::invalid("out", &shown, e.report()))?;
    dir.clear()
}

/// Resumes the run in `dir` from its checkpoint (which is read once, checksum
/// checked); a torn last line of its log (a crash in the middle of a write) is cut.
pub fn resume_run(dir: &RunDir) -> Result<Trainer> {
    let t = Trainer::resume(dir.path())?;
    dir.repair_log()?;
    Ok(t)
}

/// Options of [`run_training`].
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Stop (after a checkpoint) when raised, e.g. by Ctrl-C.
    pub stop: Option<StopFlag>,
}

/// Trains `trainer` (fresh, or resumed by [`resume_run`]) in `dir` and measures:
/// collapse metrics at every evaluation (into `log.jsonl`), checkpoints every
/// `checkpoint_every` epochs; at the end the final metrics, predictions, `W.npy`,
/// `U.npy` and `summary.json` ([`RunOutput`]). A diverged run writes a
/// [`DivergedRun`] summary and keeps its last finite checkpoint; an interrupted one
/// gives [`Error::Interrupted`].
pub fn run_training(mut trainer: Trainer, dir: &RunDir, opts: &RunOptions) -> Result<RunResult> {
    let started = Instant::now();
    dir.create()?;
    dir.clear_outputs()?;
    let every = ObserverMode::Every(trainer.config().checkpoint_every);
    let progress = Progress::new(&trainer, opts.progress);
    let mut session = trainer
        .session()
        .measure(|rec, t| {
            let m = metrics::collapse_metrics(t.task(), &t.params_f64());
            rec.extra = metrics_extra(&m);
        })
        .add_observer(LogWriter(dir), ObserverMode::Never)
        .add_observer(Checkpointer::new(dir), every)
        .add_observer(progress, ObserverMode::Always);
    if let Some(f) = &opts.stop {
        session = session.stop_on(f.clone());
    }
    let summary = match session.run()? {
        TrainOutcome::Completed(s) => s,
        TrainOutcome::Interrupted => {
            return Err(Error::Interrupted {
                path: dir.checkpoint_path(),
            })
        }
        TrainOutcome::Diverged(at) => {
            let kept = Trainer::resume(dir.path()).ok();
            let run = DivergedRun {
                name: trainer.name().to_string(),
                diverged: true,
                at,
                checkpoint: kept.as_ref().map(|_| dir.checkpoint_path()),
                checkpoint_epoch: kept.as_ref().map(Trainer::epochs_done),
                task: trainer.task().config().clone(),
                config: trainer.config().clone(),
                out_dir: dir.path().to_path_buf(),
            };
            dir.write_summary(&run)?;
            return Ok(RunResult::Diverged(Box::new(run)));
        }
    };
    let task = trainer.task().clone();
    let params = trainer.params_f64();
    let metrics = metrics::collapse_metrics(&task, &params);
    // A run outside the theory (e.g. no weight decay) still gets its outputs.
    let (predictions, no_prediction) = match predictions(&task) {
        Ok(p) => (p, None),
        Err(e) => (Vec::new(), Some(e.report())),
    };
    dir.write_weights(&trainer)?;
    let records = dir.read_log()?;
    let (peak, peak_epoch) = records
        .iter()
        .map(|r| (r.test_accuracy, r.epoch))
        .fold((f64::NEG_INFINITY, 0), |a, b| if b.0 > a.0 { b } else { a });
    let run = RunOutput {
        name: trainer.name().to_string(),
        test_accuracy: summary.last.test_accuracy,
        train_accuracy: summary.last.train_accuracy,
        peak_test_accuracy: peak,
        peak_epoch,
        metrics,
        secs_per_epoch: summary.secs_per_epoch,
        epochs: summary.epochs,
        wall_secs: started.elapsed().as_secs_f64(),
        predictions,
        no_prediction,
        task,
        config: trainer.config().clone(),
        out_dir: dir.path().to_path_buf(),
        records,
        params,
    };
    dir.write_summary(&run)?;
    Ok(RunResult::Done(Box::new(run)))
}

/// Draws the run's figures into `dir` as `<prefix>_{pca_w,pca_u,accuracy,norms}.{png,svg}`;
/// returns the PNG paths.
pub fn figures(run: &RunOutput, dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let task = &run.task;
    let params = &run.params;
    let names: Vec<String> = (0..task.n_c().min(3))
        .map(|a| format!("concept {}", a + 1))
        .collect();
    let mut out = Vec::new();
    let stem = dir.join(format!("{prefix}_pca_w"));
    let (pw, lw) = metrics::pca_points_w(task, params);
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
    let (pu, lu) = metrics::pca_points_u(task, params);
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
