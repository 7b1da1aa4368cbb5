//! The reproduction: the list of experiments, the verdicts against the paper's
//! reported outcomes, and the Markdown report.

use super::{
    figures, fresh_run, resume_run, run_training, Preset, RunOptions, RunOutput, RunResult,
};
use crate::collapse::{CollapseType, Form, Prediction};
use crate::error::{Error, Result};
use crate::plots;
use crate::task::{Freq, TaskConfig};
use crate::train::{RunDir, StopFlag, TrainConfig, Trainer};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    let (peak, peak_epoch) = (run.peak_test_accuracy, run.peak_epoch);
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
    /// Without `resume`, start over runs whose directory holds a run (else refused).
    pub force: bool,
    /// Stop (after a checkpoint) when raised, e.g. by Ctrl-C.
    pub stop: Option<StopFlag>,
}

/// One experiment of the reproduction: a name, its task and protocol.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub preset: Option<Preset>,
    pub task: TaskConfig,
    pub train: TrainConfig,
}

/// Refuses to resume a checkpoint of another setting (e.g. another `--seed`, or a
/// `--quick` run continued by a full one): its task and protocol must be the
/// experiment's, apart from the epochs (extended), threads and checkpoint period.
fn check_same_experiment(e: &Experiment, dir: &RunDir) -> Result<()> {
    let t = Trainer::resume(dir.path())?;
    let comparable = |c: &TrainConfig| TrainConfig {
        epochs: 0,
        threads: 0,
        checkpoint_every: 0,
        ..c.clone()
    };
    if t.task().config() != &e.task || comparable(t.config()) != comparable(&e.train) {
        return Err(Error::invalid(
            "resume",
            dir.path().display(),
            format!(
                "its checkpoint is not of this `{}` setting (another --seed, or --quick vs full); start over with --force, or give another --out",
                e.name
            ),
        ));
    }
    Ok(())
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
        seed_and_shrink(e, quick, seed);
        if quick && e.name == "table_k50" {
            e.task.classes = Some(10);
        }
    }
    list
}

/// Sets both seeds of `e`; with `quick` shrinks its shape (`s_c = 8, L = 5, d = 16,
/// K = 30`) and protocol (`n_spl <= 20`, 2 to 30 epochs, batch 20).
pub(super) fn seed_and_shrink(e: &mut Experiment, quick: bool, seed: u64) {
    e.task.seed = seed;
    e.train.seed = seed;
    if quick {
        e.task.s_c = 8;
        e.task.len = 5;
        e.task.dim = 16;
        e.task.classes = Some(30);
        e.train.n_spl = e.train.n_spl.min(20);
        e.train.epochs = e.train.epochs.clamp(2, 30);
        e.train.eval_every = 5;
        e.train.checkpoint_every = 10;
        e.train.batch = 20;
    }
}

/// Checks, before any work, that `path` can be written: its folder is created if
/// needed and the file opened for writing (without truncating an existing one; a file
/// created by the check is removed again). Errors name the parameter `name`.
pub fn check_writable(name: &'static str, path: &Path) -> Result<()> {
    let shown = path.display().to_string();
    let bad = |why: String| Error::invalid(name, &shown, why);
    if path.is_dir() {
        return Err(bad("is a directory, not a file".into()));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| bad(format!("cannot create its folder: {e}")))?;
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| bad(format!("cannot be written: {e}")))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Runs every experiment, draws the figures and writes the report. Returns the
/// outcomes (judged only without `quick`). The report path and the run directories
/// are checked before any training; without `resume`, a run directory that holds a
/// run is refused unless `force`.
pub fn reproduce(opts: &ReproduceOptions) -> Result<Vec<Outcome>> {
    let started = Instant::now();
    check_writable("report", &opts.report)?;
    let doc_dir = report_dir(&opts.report);
    let fig_dir = doc_dir.join("figures");
    let runs = run_experiments(opts, experiments(opts.quick, opts.seed), &fig_dir)?;
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

/// The folder of `report` (`.` for a bare file name).
pub(super) fn report_dir(report: &Path) -> PathBuf {
    report
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Trains every experiment of `list` in `opts.out/NAME` (resuming or refusing
/// directories that hold a run, as `opts` says; all checked before any training) and
/// draws each run's figures into `fig_dir` as `NAME_*.png`.
pub(super) fn run_experiments(
    opts: &ReproduceOptions,
    list: Vec<Experiment>,
    fig_dir: &Path,
) -> Result<Vec<Ran>> {
    std::fs::create_dir_all(fig_dir).map_err(|e| Error::io(fig_dir, e))?;
    plots::ensure_font()?;
    let dirs: Vec<RunDir> = list
        .iter()
        .map(|e| RunDir::new(opts.out.join(&e.name)))
        .collect();
    for (e, dir) in list.iter().zip(&dirs) {
        let resumes = opts.resume && dir.has_checkpoint();
        if resumes {
            check_same_experiment(e, dir)?;
        } else {
            if dir.path().exists() && !dir.path().is_dir() {
                return Err(Error::invalid(
                    "out",
                    dir.path().display(),
                    "is a file, not a directory",
                ));
            }
            if dir.holds_run() && !opts.force {
                return Err(Error::invalid(
                    "out",
                    dir.path().display(),
                    "holds a run; continue with `reproduce --resume`, or pass --force to start over",
                ));
            }
        }
    }
    let run_opts = RunOptions {
        progress: opts.progress,
        stop: opts.stop.clone(),
    };
    let mut runs = Vec::new();
    for (e, dir) in list.into_iter().zip(&dirs) {
        if opts.progress {
            eprintln!("[reproduce] {} ({} epochs)", e.name, e.train.epochs);
        }
        let trainer = if opts.resume && dir.has_checkpoint() {
            let mut t = resume_run(dir)?;
            if t.epochs_done() <= e.train.epochs {
                t.set_epochs(e.train.epochs)?;
            }
            t
        } else {
            fresh_run(dir, true)?;
            let mut t = Trainer::new(&e.task.build()?, &e.train)?;
            t.set_name(&e.name);
            t
        };
        let run = match run_training(trainer, dir, &run_opts)? {
            RunResult::Done(run) => *run,
            RunResult::Diverged(d) => {
                return Err(Error::Diverged {
                    epoch: d.at.epoch,
                    step: d.at.step,
                    lr: d.at.lr,
                })
            }
        };
        let figs = figures(&run, fig_dir, &e.name)?;
        runs.push((e, run, figs));
    }
    Ok(runs)
}

/// Relative change of the training loss between the evaluation at 90 % of the
/// epochs and the last one, e.g. `-0.8 % (0.0123 -> 0.0122)`.
fn loss_settling(r: &RunOutput) -> String {
    let (Some(last), true) = (r.records.last(), r.records.len() >= 2) else {
        return "n/a".into();
    };
    let cut = (r.config.epochs as f64 * 0.9) as usize;
    let then = r
        .records
        .iter()
        .find(|x| x.epoch >= cut)
        .unwrap_or(&r.records[0]);
    format!(
        "{:+.1} % ({:.4} -> {:.4})",
        100.0 * (last.loss - then.loss) / then.loss,
        then.loss,
        last.loss
    )
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

/// A finished experiment: its run and its figures.
pub(super) type Ran = (Experiment, RunOutput, Vec<PathBuf>);

/// The report: named sections, in order.
fn render_report(
    opts: &ReproduceOptions,
    runs: &[Ran],
    outcomes: &[Outcome],
    doc_dir: &Path,
    wall: f64,
) -> String {
    let mut s = String::new();
    write_header(&mut s, opts, runs, wall);
    write_outcomes(&mut s, opts, outcomes);
    write_runs_table(&mut s, runs);
    write_predictions(&mut s, runs);
    write_norm_table(&mut s, runs);
    write_run_sections(&mut s, runs, doc_dir);
    write_footer(&mut s, opts);
    s
}

/// The CPU model (Linux `/proc/cpuinfo`, else `unknown CPU`) and the threads available.
pub(super) fn machine() -> (String, usize) {
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
    (cpu, threads)
}

/// Title, machine, timings, protocol.
fn write_header(s: &mut String, opts: &ReproduceOptions, runs: &[Ran], wall: f64) {
    let (cpu, threads) = machine();
    let _ = writeln!(s, "# Reproduction of the paper's experiments\n");
    let _ = writeln!(
        s,
        "Written by `fcollapse reproduce{}{}` (seed {}) on {} ({} threads): SGD training time **{:.1} min** \
         summed over the runs (resumed parts included), wall time of this invocation {:.1} min.\n",
        if opts.quick { " --quick" } else { "" },
        if opts.resume { " --resume" } else { "" },
        opts.seed,
        cpu,
        threads,
        runs.iter().map(|(_, r, _)| r.secs_per_epoch * r.config.epochs as f64).sum::<f64>() / 60.0,
        wall / 60.0,
    );
    if opts.quick {
        let _ = writeln!(
            s,
            "**Quick mode**: shapes and epochs are scaled down; the outcomes are not judged.\n"
        );
    }
    let _ = writeln!(s, "{}\n", protocol(runs));
}

/// The protocol of the runs as they were made: the shapes and SGD settings of
/// the first run, and every run whose `K` (or batch) differs from it.
fn protocol(runs: &[Ran]) -> String {
    let Some((first, _, _)) = runs.first() else {
        return "Protocol: no runs.".into();
    };
    let (t, tr) = (&first.task, &first.train);
    let k_of = |c: &TaskConfig| match c.classes {
        Some(k) => k.to_string(),
        None => format!("{}^{} (full)", c.n_c, c.len),
    };
    let others: Vec<String> = runs
        .iter()
        .skip(1)
        .filter(|(e, _, _)| e.task.classes != t.classes)
        .map(|(e, _, _)| format!("{}: K = {}", e.name, k_of(&e.task)))
        .collect();
    format!(
        "Protocol (docs/theory.md §9): n_c = {}, n_w = {}, L = {}, K = {}{}, d = {}, distinct latent variables drawn uniformly in Z, \
         plain SGD (lr {}, batch {}), mean cross entropy, weight decay 0.001 (W and U unless said), \
         initial weights = framework defaults / 1000, test set {} sentences per latent variable, LayerNorm eps 1e-5.",
        t.n_c,
        t.n_c * t.s_c,
        t.len,
        k_of(t),
        if others.is_empty() {
            String::new()
        } else {
            format!(" ({})", others.join(", "))
        },
        t.dim,
        crate::task::short(tr.lr),
        tr.batch,
        tr.n_test,
    )
}

/// The paper's reported outcomes against ours, and the criteria.
fn write_outcomes(s: &mut String, opts: &ReproduceOptions, outcomes: &[Outcome]) {
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
}

/// One row per run: shape, accuracies, timing.
fn write_runs_table(s: &mut String, runs: &[Ran]) {
    let _ = writeln!(s, "## Runs\n");
    let _ = writeln!(
        s,
        "| run | K | n_spl | epochs | LayerNorm | train acc | test acc | peak test (epoch) | s/epoch | training time |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for (e, r, _) in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} ({}) | {:.2e} | {:.0} s |",
            e.name,
            r.task.k(),
            r.config.n_spl,
            r.config.epochs,
            r.task.norm().name(),
            r.train_accuracy,
            r.test_accuracy,
            r.peak_test_accuracy,
            r.peak_epoch,
            r.secs_per_epoch,
            r.secs_per_epoch * r.config.epochs as f64
        );
    }
}

/// Measured norms against the limit predictions.
fn write_predictions(s: &mut String, runs: &[Ran]) {
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
}

/// The norm table (fig3 and table_k50 runs).
fn write_norm_table(s: &mut String, runs: &[Ran]) {
    let _ = writeln!(s, "\n### Norm table (uniform mu, no LayerNorm)\n");
    let _ = writeln!(
        s,
        "| K | n_spl | epochs | loss change over the last 10 % of epochs | predicted a (mean-field) | predicted a (latent-set) | trained word norm (mean ± std) |\n|---|---|---|---|---|---|---|"
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
            "| {} | {} | {} | {} | {:.4} | {:.4} | {} |",
            r.task.k(),
            r.config.n_spl,
            e.train.epochs,
            loss_settling(r),
            mf,
            ls,
            pm(r.metrics.word_norm_mean, r.metrics.word_norm_std)
        );
    }
}

/// One section per run: metrics, rank table, figures.
fn write_run_sections(s: &mut String, runs: &[Ran], doc_dir: &Path) {
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
        if r.task.freq() != Freq::Uniform && r.task.norm().is_linear() {
            if let Some(mf) = r.predictions.iter().find(|p| p.form == Form::MeanField) {
                let _ = writeln!(s, "| rank beta | 1 | 2 | 3 | 5 | 10 | 50 | 100 | last |\n|---|---|---|---|---|---|---|---|---|");
                let idx: Vec<usize> = [0usize, 1, 2, 4, 9, 49, 99, r.task.s_c() - 1]
                    .into_iter()
                    .filter(|&i| i < r.task.s_c())
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
}

/// Where the run directories are.
fn write_footer(s: &mut String, opts: &ReproduceOptions) {
    let _ = writeln!(
        s,
        "\nRun directories (logs `{}`, `{}`, checkpoints, `{}`, `{}`) are under `{}`.",
        RunDir::LOG,
        RunDir::SUMMARY,
        RunDir::W,
        RunDir::U,
        opts.out.display()
    );
}
