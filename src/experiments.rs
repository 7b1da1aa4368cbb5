//! The paper's finite-sample experiments (THEORY §6): presets, one measured run
//! (training + collapse metrics + limit predictions + figures + `.npy` export),
//! and the whole reproduction with its report `docs/reproduction.md`.

use crate::collapse::{self, CollapseType, Form, Prediction};
use crate::error::{Error, Result};
use crate::metrics::{self, CollapseMetrics};
use crate::npy;
use crate::plots::{self, Series};
use crate::task::{Freq, Task, TaskConfig};
use crate::train::{EvalRecord, TrainConfig, Trainer};
use serde::Serialize;
use std::fmt::Write as _;
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
    let mut t = task.clone();
    if t.layer_norm.is_some() {
        t.layer_norm = Some(0.0);
    }
    t
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
    npy::write_npy_f32(&out.join("W.npy"), &[task.n_w, task.dim], trainer.w())?;
    npy::write_npy_f32(
        &out.join("U.npy"),
        &[task.k, task.len * task.dim],
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
    let names: Vec<String> = (0..task.n_c.min(3))
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
        task.s_c > 20,
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

/// A reproduced outcome against the paper's.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: String,
    pub paper: String,
    pub ours: String,
    pub reproduced: bool,
}

/// Judges a run against the paper's reported outcome. Criteria (stated in the report):
/// "~100 %" means final test accuracy >= 0.95; collapse means a within/between spread
/// ratio of phi(w) below 0.05; "direction collapses" means mean `1 - cos` to the concept
/// mean below 0.05; "norms depend on frequency" means a coefficient of variation of the
/// norms above 0.2; type II additionally needs that coefficient below 0.05; "peaks near
/// 2/3 then decays below 1/2" means a peak in [0.55, 0.8] and a final value below 0.5;
/// "no collapse" means a spread ratio above 0.2.
pub fn judge(preset: Preset, run: &RunOutput) -> Outcome {
    let m = &run.metrics;
    let acc = run.test_accuracy;
    let (peak, peak_epoch) = run.peak_test_accuracy;
    let (ours, ok) = match preset {
        Preset::Fig3 => (
            format!(
                "test {:.1} %, spread ratio {:.1e}, norm CV {:.3}",
                100.0 * acc,
                m.within_spread_w,
                m.norm_cv_w
            ),
            acc >= 0.95 && m.within_spread_w < 0.05,
        ),
        Preset::Fig4a => (
            format!(
                "test {:.1} %, direction spread {:.1e}, norm CV {:.2}",
                100.0 * acc,
                m.direction_spread_w,
                m.norm_cv_w
            ),
            acc >= 0.95 && m.direction_spread_w < 0.05 && m.norm_cv_w > 0.2,
        ),
        Preset::Fig4b => (
            format!(
                "peak test {:.1} % at epoch {peak_epoch}, final {:.1} %, spread ratio {:.2}",
                100.0 * peak,
                100.0 * acc,
                m.within_spread_w
            ),
            (0.55..=0.8).contains(&peak) && acc < 0.5 && m.within_spread_w > 0.2,
        ),
        Preset::Fig4c => (
            format!(
                "test {:.1} %, spread ratio {:.1e}, norm CV {:.1e}",
                100.0 * acc,
                m.within_spread_w,
                m.norm_cv_w
            ),
            acc >= 0.95 && m.within_spread_w < 0.05 && m.norm_cv_w < 0.05,
        ),
    };
    Outcome {
        name: preset.name().to_string(),
        paper: preset.paper_outcome().to_string(),
        ours,
        reproduced: ok,
    }
}

/// Options of [`reproduce`].
#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    /// Scaled-down shapes and epochs (seconds, for tests); the outcomes are not judged.
    pub quick: bool,
    /// Run directories (checkpoints, logs, `.npy`).
    pub out: PathBuf,
    /// The report to write (its folder gets `figures/`).
    pub report: PathBuf,
    pub seed: u64,
    pub progress: bool,
    /// Resume runs that have a checkpoint in their directory.
    pub resume: bool,
}

/// One experiment of the reproduction: a name, its task and protocol.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub preset: Option<Preset>,
    pub task: TaskConfig,
    pub train: TrainConfig,
}

/// The list: the four figures and the `K = 50, n_spl = 100` norm-table run (the
/// `K = 1000, n_spl = 5` row of the table is the fig3 run). `quick` shrinks every
/// shape (`n_w = 24, L = 5, d = 16, K = 30`) and epoch count.
pub fn experiments(quick: bool, seed: u64) -> Vec<Experiment> {
    let mut list: Vec<Experiment> = Preset::ALL
        .iter()
        .map(|&p| Experiment {
            name: p.name().to_string(),
            preset: Some(p),
            task: p.task(),
            train: p.train(),
        })
        .collect();
    list.push(Experiment {
        name: "table_k50".into(),
        preset: None,
        task: TaskConfig {
            classes: Some(50),
            ..Preset::Fig3.task()
        },
        train: TrainConfig {
            n_spl: 100,
            epochs: 1500,
            eval_every: 50,
            checkpoint_every: 250,
            ..TrainConfig::default()
        },
    });
    for e in &mut list {
        e.task.seed = seed;
        e.train.seed = seed;
        if quick {
            e.task.s_c = 8;
            e.task.len = 5;
            e.task.dim = 16;
            e.task.classes = Some(if e.name == "table_k50" { 10 } else { 30 });
            e.train.n_spl = e.train.n_spl.min(20);
            e.train.epochs = e.train.epochs.clamp(2, 30);
            e.train.eval_every = 5;
            e.train.checkpoint_every = 10;
            e.train.batch = 20;
        }
    }
    list
}

/// Runs every experiment, draws the figures and writes the report. Returns the
/// outcomes (judged only without `quick`).
pub fn reproduce(opts: &ReproduceOptions) -> Result<Vec<Outcome>> {
    let started = Instant::now();
    let doc_dir = opts
        .report
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let fig_dir = doc_dir.join("figures");
    std::fs::create_dir_all(&fig_dir).map_err(|e| Error::io(&fig_dir, e))?;
    plots::ensure_font()?;
    let mut runs = Vec::new();
    for e in experiments(opts.quick, opts.seed) {
        if opts.progress {
            eprintln!("[reproduce] {} ({} epochs)", e.name, e.train.epochs);
        }
        let task = e.task.build()?;
        let dir = opts.out.join(&e.name);
        let resume = opts.resume && dir.join("checkpoint.bin").exists();
        let run = run_training(&e.name, &task, &e.train, &dir, opts.progress, resume)?;
        let figs = figures(&run, &fig_dir, &e.name)?;
        runs.push((e, run, figs));
    }
    let outcomes: Vec<Outcome> = runs
        .iter()
        .filter_map(|(e, run, _)| e.preset.map(|p| judge(p, run)))
        .collect();
    let report = render_report(
        opts,
        &runs,
        &outcomes,
        &doc_dir,
        started.elapsed().as_secs_f64(),
    );
    std::fs::write(&opts.report, report).map_err(|e| Error::io(&opts.report, e))?;
    Ok(outcomes)
}

fn pm(mean: f64, std: f64) -> String {
    format!("{mean:.4} ± {std:.4}")
}

fn kind_name(k: CollapseType) -> &'static str {
    match k {
        CollapseType::I => "I",
        CollapseType::II => "II",
        CollapseType::III => "III",
    }
}

fn render_report(
    opts: &ReproduceOptions,
    runs: &[(Experiment, RunOutput, Vec<PathBuf>)],
    outcomes: &[Outcome],
    doc_dir: &Path,
    wall: f64,
) -> String {
    let mut s = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let _ = writeln!(s, "# Reproduction of the paper's experiments\n");
    let _ = writeln!(
        s,
        "Written by `fcollapse reproduce{}` (seed {}), wall time **{:.1} min** on {} ({} threads).\n",
        if opts.quick { " --quick" } else { "" },
        opts.seed,
        wall / 60.0,
        cpu,
        threads
    );
    if opts.quick {
        let _ = writeln!(
            s,
            "**Quick mode**: shapes and epochs are scaled down; the outcomes are not judged.\n"
        );
    }
    let _ = writeln!(
        s,
        "Protocol (THEORY §6): n_c = 3, n_w = 1200, L = 15, K = 1000, d = 100, latent variables uniform in Z, \
         plain SGD (lr 0.1, batch 100), mean cross entropy, weight decay 0.001 (W and U unless said), \
         initial weights = framework defaults / 1000, test set 5 sentences per latent variable, LayerNorm eps 1e-5.\n"
    );
    let _ = writeln!(s, "## Outcomes against the paper\n");
    let _ = writeln!(
        s,
        "| experiment | paper reports | ours | reproduced |\n|---|---|---|---|"
    );
    for o in outcomes {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            o.name,
            o.paper,
            o.ours,
            if opts.quick {
                "(not judged)"
            } else if o.reproduced {
                "yes"
            } else {
                "**no**"
            }
        );
    }
    let _ = writeln!(
        s,
        "\nCriteria: \"~100 %\" = final test accuracy >= 95 %; collapse = within/between spread ratio of phi(w) < 0.05; \
         direction collapse = mean (1 - cos) to the concept mean < 0.05; norms depend on frequency = coefficient of \
         variation of the norms > 0.2 (type II: < 0.05); fig4b = peak in [55 %, 80 %] and final < 50 % with spread ratio > 0.2.\n"
    );
    let _ = writeln!(s, "## Runs\n");
    let _ = writeln!(
        s,
        "| run | K | n_spl | epochs | LayerNorm | train acc | test acc | peak test (epoch) | s/epoch | wall |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for (e, r, _) in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} ({}) | {:.2e} | {:.0} s |",
            e.name,
            r.task.k,
            r.config.n_spl,
            r.config.epochs,
            if r.task.layer_norm.is_some() {
                "yes"
            } else {
                "no"
            },
            r.train_accuracy,
            r.test_accuracy,
            r.peak_test_accuracy.0,
            r.peak_test_accuracy.1,
            r.secs_per_epoch,
            r.wall_secs
        );
    }
    let _ = writeln!(s, "\n## Against the limit predictions\n");
    let _ = writeln!(
        s,
        "Measured: mean ± std (n-1) over all tokens of ||phi(w_t)||, mean of ||u_(k,l)||. Predicted: the collapsed \
         minimiser of the reduced objective for the same task (LayerNorm with eps = 0), exact for the drawn latent set \
         (latent-set form) and in the paper's symmetric mean-field form.\n"
    );
    let _ = writeln!(
        s,
        "| run | type | word norm measured | predicted (latent-set) | predicted (mean-field) | u norm measured | b (latent-set) | b (mean-field) |\n|---|---|---|---|---|---|---|---|"
    );
    for (e, r, _) in runs {
        let m = &r.metrics;
        let ls = r.predictions.iter().find(|p| p.form == Form::LatentSet);
        let mf = r.predictions.iter().find(|p| p.form == Form::MeanField);
        let f = |p: Option<&Prediction>, g: fn(&Prediction) -> f64| {
            p.map(|p| format!("{:.4}", g(p))).unwrap_or_default()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.4} | {} | {} |",
            e.name,
            ls.map(|p| kind_name(p.kind)).unwrap_or(""),
            pm(m.word_norm_mean, m.word_norm_std),
            f(ls, |p| p.word_norm),
            f(mf, |p| p.word_norm),
            m.u_norm_mean,
            f(ls, |p| p.u_norm),
            f(mf, |p| p.u_norm),
        );
    }
    let _ = writeln!(s, "\n### Norm table (uniform mu, no LayerNorm)\n");
    let _ = writeln!(
        s,
        "| K | n_spl | epochs | predicted a (mean-field) | predicted a (latent-set) | trained word norm (mean ± std) |\n|---|---|---|---|---|---|"
    );
    for (e, r, _) in runs
        .iter()
        .filter(|(e, _, _)| e.name == "fig3" || e.name == "table_k50")
    {
        let mf = r
            .predictions
            .iter()
            .find(|p| p.form == Form::MeanField)
            .map(|p| p.word_norm)
            .unwrap_or(f64::NAN);
        let ls = r
            .predictions
            .iter()
            .find(|p| p.form == Form::LatentSet)
            .map(|p| p.word_norm)
            .unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.4} | {:.4} | {} |",
            r.task.k,
            r.config.n_spl,
            e.train.epochs,
            mf,
            ls,
            pm(r.metrics.word_norm_mean, r.metrics.word_norm_std)
        );
    }
    for (e, r, figs) in runs {
        let _ = writeln!(s, "\n## {}\n", e.name);
        if let Some(p) = e.preset {
            let _ = writeln!(s, "Paper: {}.\n", p.paper_outcome());
        }
        let m = &r.metrics;
        let _ = writeln!(
            s,
            "pca_w singular values {:.3?}, pca_u {:.3?}; spread ratio {:.2e}, direction spread {:.2e}, norm CV {:.3}, \
             Gram error {:.2e}, duality {:.4}.\n",
            m.pca_w, m.pca_u, m.within_spread_w, m.direction_spread_w, m.norm_cv_w, m.gram_error_w, m.duality
        );
        if r.task.freq != Freq::Uniform && r.task.layer_norm.is_none() {
            if let Some(mf) = r.predictions.iter().find(|p| p.form == Form::MeanField) {
                let _ = writeln!(s, "| rank beta | 1 | 2 | 3 | 5 | 10 | 50 | 100 | last |\n|---|---|---|---|---|---|---|---|---|");
                let idx: Vec<usize> = [0usize, 1, 2, 4, 9, 49, 99, r.task.s_c - 1]
                    .into_iter()
                    .filter(|&i| i < r.task.s_c)
                    .collect();
                let row = |v: &[f64]| {
                    idx.iter()
                        .map(|&i| format!("{:.3}", v[i]))
                        .collect::<Vec<_>>()
                        .join(" | ")
                };
                let _ = writeln!(s, "| measured norm | {} |", row(&m.norm_by_rank));
                let _ = writeln!(s, "| predicted r_beta (mean-field) | {} |\n", row(&mf.r));
            }
        }
        for f in figs {
            let rel = f.strip_prefix(doc_dir).unwrap_or(f);
            let _ = writeln!(s, "![{}]({})", rel.display(), rel.display());
        }
    }
    let _ = writeln!(
        s,
        "\nRun directories (logs `log.jsonl`, `summary.json`, checkpoints, `W.npy`, `U.npy`) are under `{}`.",
        opts.out.display()
    );
    s
}
