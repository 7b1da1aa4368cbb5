//! `fcollapse train`: finite-sample SGD as the paper did.
//!
//! Exit codes: 0 done, 1 diverged (summary written, last finite checkpoint kept),
//! 2 bad input (including a flag that conflicts with a resumed checkpoint),
//! 3 run-time failure (e.g. a corrupted checkpoint), 130 interrupted (checkpoint written).

use super::{interrupt, FreqArg, PresetArg, TaskArgs};
use crate::error::{Error, Result};
use crate::experiments::{self, Preset, RunOptions, RunOutput, RunResult};
use crate::task::Freq;
use crate::train::{RunDir, TrainConfig, Trainer};
use crate::Versioned;
use clap::Args;
use std::fmt::Display;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
#[command(mut_arg("classes", |a| a.help(
    "Number of classes K <= n_c^L, drawn uniformly from Z with --seed (default: the preset's K, 1000; \
     the full latent set K = n_c^L when that is not below n_c^L)"
)))]
pub struct TrainArgs {
    /// A paper experiment's settings (default fig3); explicit flags override it.
    #[arg(long, value_enum)]
    pub preset: Option<PresetArg>,
    #[command(flatten)]
    pub task: TaskArgs,
    /// Training sentences per class n_spl (default: the preset's: fig3 5, fig4a 500, fig4b 5, fig4c 5).
    #[arg(long)]
    pub nspl: Option<usize>,
    /// Epochs (default: the preset's: fig3 1200, fig4a 10, fig4b 3000, fig4c 500).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Learning rate (default: 0.1).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Mini-batch size (default: 100).
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
    /// Output directory (default `runs/PRESET[-SETTING...]-seedSEED`, naming every task and SGD flag given, e.g. `runs/fig3-classes50-nspl100-epochs300-seed0`; rerunning a command finds its run there and resumes it, or reports it again when it is finished).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run whose checkpoint is in DIR (ends bit-identical to an uninterrupted
    /// run). Its settings are kept: only --epochs (to extend), --threads,
    /// --checkpoint-every and --quiet may change; other flags must match the checkpoint.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Start a fresh run even if the output directory holds one (its checkpoint and log are removed).
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Also draw the figures (PCA scatters, accuracy, norms) into the output directory (a resumed run that has them redraws them).
    #[arg(long)]
    pub plots: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print a JSON summary on stdout: an array of one repeated number becomes {"len", "value"}, one of more than 100 numbers {"len", "min", "mean", "max"} (summary.json in the run directory holds every array).
    #[arg(long)]
    pub json: bool,
}

/// The figures `train --plots` draws into the run directory (`.png` and `.svg`).
const FIGURES: [&str; 4] = ["fig_pca_w", "fig_pca_u", "fig_accuracy", "fig_norms"];

/// True when `dir` holds figures of an earlier `--plots` run.
fn holds_figures(dir: &Path) -> bool {
    FIGURES
        .iter()
        .any(|f| dir.join(format!("{f}.png")).exists() || dir.join(format!("{f}.svg")).exists())
}

/// Removes the figures of `dir` (they would describe an earlier epoch).
fn remove_figures(dir: &Path) -> Result<()> {
    for f in FIGURES {
        for ext in ["png", "svg"] {
            let p = dir.join(format!("{f}.{ext}"));
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&p, e)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The JSON of `--json`, compacted in place: an array of more than one number,
/// all equal, becomes `{"len": n, "value": v}`; an array of more than 100
/// numbers becomes `{"len": n, "min": .., "mean": .., "max": ..}`.
pub(super) fn compact_json(v: &mut serde_json::Value) {
    use serde_json::{json, Value};
    match v {
        Value::Object(map) => map.values_mut().for_each(compact_json),
        Value::Array(items) => {
            let nums: Option<Vec<f64>> = items.iter().map(Value::as_f64).collect();
            match nums {
                Some(x) if x.len() > 1 && items.iter().all(|i| *i == items[0]) => {
                    *v = json!({ "len": x.len(), "value": items[0] });
                }
                Some(x) if x.len() > 100 => {
                    let mean = x.iter().sum::<f64>() / x.len() as f64;
                    let min = x.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    *v = json!({ "len": x.len(), "min": min, "mean": mean, "max": max });
                }
                _ => items.iter_mut().for_each(compact_json),
            }
        }
        _ => {}
    }
}

pub(super) fn run(a: &TrainArgs) -> Result<i32> {
    let (trainer, dir) = match &a.resume {
        Some(path) => resume(a, path)?,
        None => fresh(a)?,
    };
    let opts = RunOptions {
        progress: !a.quiet && !a.json,
        stop: Some(interrupt::stop_on_ctrl_c()),
    };
    // Figures of an earlier epoch are redrawn (or removed) with the new weights.
    let plots = a.plots || holds_figures(dir.path());
    match experiments::run_training(trainer, &dir, &opts)? {
        RunResult::Diverged(d) => {
            remove_figures(dir.path())?;
            if a.json {
                emit(&serde_json::to_string(&Versioned::new(&d))?);
            }
            eprintln!("error: {d}");
            Ok(1)
        }
        RunResult::Done(run) => {
            let figures = if plots {
                experiments::figures(&run, dir.path(), "fig")?
            } else {
                Vec::new()
            };
            if a.json {
                let mut v = serde_json::to_value(&run)?;
                compact_json(&mut v);
                let shown: Vec<String> = figures
                    .iter()
                    .map(|f| f.to_string_lossy().into_owned())
                    .collect();
                v["figures"] = serde_json::to_value(shown)?;
                emit(&serde_json::to_string(&Versioned::new(&v))?);
            } else {
                emit(&render_run(&run));
                for f in &figures {
                    emit(&format!("figure     {}", f.display()));
                }
            }
            Ok(0)
        }
    }
}

/// The default run directory: `runs/NAME-seedSEED` with, before the seed, every
/// task and SGD flag that was given (`-classes50-nspl100`), so that two runs of
/// different settings get different directories.
fn default_out(a: &TrainArgs, name: &str, seed: u64) -> PathBuf {
    let t = &a.task;
    let num = |v: f64| crate::task::short(v);
    let mut parts = vec![name.to_string()];
    let mut add = |key: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{key}{v}"));
        }
    };
    add("nc", t.nc.map(|v| v.to_string()));
    add("sc", t.sc.map(|v| v.to_string()));
    add("nw", t.nw.map(|v| v.to_string()));
    add("len", t.len.map(|v| v.to_string()));
    add("dim", t.dim.map(|v| v.to_string()));
    add("classes", t.classes.map(|v| v.to_string()));
    add("lambda", t.lambda.map(num));
    add("lambdaw", t.lambda_w.map(num));
    add("lambdau", t.lambda_u.map(num));
    add("freq", t.freq.map(|f| format!("{f:?}").to_lowercase()));
    add("zipf", t.zipf_exponent.map(num));
    add("ln", t.layer_norm.then(String::new));
    add("eps", t.eps.map(num));
    add("norm", t.norm.map(|n| n.norm(0.0).name().to_string()));
    add("lambdaaff", t.lambda_affine.map(num));
    add("nspl", a.nspl.map(|v| v.to_string()));
    add("epochs", a.epochs.map(|v| v.to_string()));
    add("lr", a.lr.map(num));
    add("batch", a.batch.map(|v| v.to_string()));
    parts.push(format!("seed{seed}"));
    PathBuf::from("runs").join(parts.join("-"))
}

/// A fresh trainer from the preset and flags; the output directory is checked and
/// cleared (a directory holding a run is refused without --force).
fn fresh(a: &TrainArgs) -> Result<(Trainer, RunDir)> {
    let preset = a.preset.map(Preset::from).unwrap_or(Preset::Fig3);
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
        .unwrap_or_else(|| default_out(a, name, task.seed()));
    let dir = RunDir::new(out);
    if a.out.is_none() && !a.force && dir.has_checkpoint() {
        // The default directory is named by the settings: it holds this run.
        eprintln!(
            "note: {} holds this run; resuming it (--force starts over)",
            dir.path().display()
        );
        return resume(a, dir.path());
    }
    if dir.path().exists() && !dir.path().is_dir() {
        return Err(Error::invalid(
            "out",
            dir.path().display(),
            "is a file, not a directory",
        ));
    }
    let mut trainer = Trainer::new(&task, &cfg)?;
    trainer.set_name(name);
    experiments::fresh_run(&dir, a.force)?;
    Ok((trainer, dir))
}

/// The trainer of the checkpoint in `path`, after checking that no flag conflicts
/// with it and applying the changeable ones; a torn last log line is cut.
fn resume(a: &TrainArgs, path: &Path) -> Result<(Trainer, RunDir)> {
    let dir = RunDir::new(path);
    if !dir.has_checkpoint() {
        return Err(Error::invalid(
            "resume",
            path.display(),
            format!("no {} in this directory", RunDir::CHECKPOINT),
        ));
    }
    let mut t = Trainer::resume(path)?;
    check_unchanged(a, &t)?;
    if let Some(e) = a.epochs {
        // a checkpoint inside an epoch needs that epoch finished
        let (done, step) = (t.epochs_done(), t.steps_done_in_epoch());
        let least = done + usize::from(step > 0);
        if e < least {
            let at = if step > 0 {
                format!("is at step {step} of epoch {least}")
            } else {
                format!("has already done {done} epochs")
            };
            return Err(Error::invalid(
                "epochs",
                e,
                format!("the checkpoint {at}; give --epochs >= {least} to extend the run"),
            ));
        }
        t.set_epochs(e)?;
    }
    if let Some(n) = a.threads {
        t.set_threads(n)?;
    }
    if let Some(n) = a.checkpoint_every {
        t.set_checkpoint_every(n);
    }
    dir.repair_log()?;
    // Every remaining line must parse now, not after hours of training.
    dir.trim_log_after(t.epochs_done())?;
    Ok((t, dir))
}

fn conflict(flag: &'static str, given: impl Display, theirs: impl Display) -> Error {
    Error::invalid(
        flag,
        given,
        format!(
            "conflicts with the checkpoint's {theirs}; a resumed run keeps its settings \
             (only --epochs to extend, --threads, --checkpoint-every, --quiet may change)"
        ),
    )
}

/// `Err` naming the flag when `given` is set and differs from the checkpoint's value.
fn same<T: PartialEq + Display>(flag: &'static str, given: Option<T>, theirs: T) -> Result<()> {
    match given {
        Some(g) if g != theirs => Err(conflict(flag, g, format!("{flag} = {theirs}"))),
        _ => Ok(()),
    }
}

/// Refuses (exit 2) every flag given with --resume whose value differs from the checkpoint's.
fn check_unchanged(a: &TrainArgs, t: &Trainer) -> Result<()> {
    if let Some(p) = a.preset.map(Preset::from) {
        if p.name() != t.name() {
            return Err(conflict("preset", p.name(), format!("run `{}`", t.name())));
        }
    }
    let c = t.config();
    let task = t.task();
    let k = task.config();
    let f = &a.task;
    same("nspl", a.nspl, c.n_spl)?;
    same("lr", a.lr, c.lr)?;
    same("batch", a.batch, c.batch)?;
    same("eval_every", a.eval_every, c.eval_every)?;
    same("seed", f.seed, k.seed)?;
    same("nc", f.nc, k.n_c)?;
    same("sc", f.sc, k.s_c)?;
    same("nw", f.nw, task.n_w())?;
    same("len", f.len, k.len)?;
    same("dim", f.dim, k.dim)?;
    same("classes", f.classes, task.k())?;
    same("lambda_w", f.lambda_w, k.lambda_w)?;
    same("lambda_u", f.lambda_u, k.lambda_u)?;
    if let Some(v) = f.lambda {
        // --lambda sets only the sides that --lambda-w / --lambda-u do not override
        let w_differs = f.lambda_w.is_none() && v != k.lambda_w;
        let u_differs = f.lambda_u.is_none() && v != k.lambda_u;
        if w_differs || u_differs {
            let theirs = format!("lambda_w = {}, lambda_u = {}", k.lambda_w, k.lambda_u);
            return Err(conflict("lambda", v, theirs));
        }
    }
    let zipf = match k.freq {
        Freq::Zipf { exponent } => Some(exponent),
        Freq::Uniform => None,
    };
    let freq_ok = match f.freq {
        Some(FreqArg::Uniform) => zipf.is_none(),
        Some(FreqArg::Zipf) => zipf.is_some(),
        None => true,
    };
    if !freq_ok {
        let given = format!("{:?}", f.freq.expect("set")).to_lowercase();
        return Err(conflict("freq", given, format!("freq = {}", k.freq)));
    }
    if let Some(s) = f.zipf_exponent {
        if zipf != Some(s) {
            return Err(conflict("zipf_exponent", s, format!("freq = {}", k.freq)));
        }
    }
    let norm = k.resolved_norm()?;
    if f.layer_norm && norm.layer_eps().is_none() {
        return Err(conflict("layer_norm", true, format!("norm = {norm}")));
    }
    if let Some(n) = f.norm {
        if n.norm(0.0).name() != norm.name() {
            return Err(conflict(
                "norm",
                n.norm(0.0).name(),
                format!("norm = {norm}"),
            ));
        }
    }
    if let Some(e) = f.eps {
        if norm.eps() != Some(e) {
            return Err(conflict("eps", e, format!("norm = {norm}")));
        }
    }
    if let Some(v) = f.lambda_affine {
        if k.lambda_affine.unwrap_or(k.lambda_w) != v {
            return Err(conflict(
                "lambda_affine",
                v,
                format!("lambda_affine = {}", k.lambda_affine.unwrap_or(k.lambda_w)),
            ));
        }
    }
    Ok(())
}

/// Writes `text` and a newline to stdout; a closed pipe (e.g. `| head`) is not an error.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|_| out.flush());
}

/// The human-readable summary of a run.
fn render_run(run: &RunOutput) -> String {
    use std::fmt::Write;
    let m = &run.metrics;
    let mut s = String::new();
    let _ = writeln!(s, "run        {} -> {}", run.task, run.out_dir.display());
    let _ = writeln!(
        s,
        "accuracy   train {:.4}  test {:.4}  (peak test {:.4} at epoch {})",
        run.train_accuracy, run.test_accuracy, run.peak_test_accuracy, run.peak_epoch
    );
    let _ = writeln!(
        s,
        "collapse   spread ratio {:.3e}  direction spread {:.3e}  norm CV {:.3}  pca_w {:.3?}  pca_u {:.3?}",
        m.within_spread_w, m.direction_spread_w, m.norm_cv_w, m.pca_w, m.pca_u
    );
    let _ = writeln!(
        s,
        "norms      word {:.4} ± {:.4}  u {:.4}",
        m.word_norm_mean, m.word_norm_std, m.u_norm_mean
    );
    if let Some(why) = &run.no_prediction {
        let _ = writeln!(s, "predicted  none: {why}");
    }
    for p in &run.predictions {
        let _ = writeln!(
            s,
            "predicted  type {:?} ({} form): word norm {:.4}, b {:.4}",
            p.kind, p.form, p.word_norm, p.u_norm
        );
    }
    let _ = write!(
        s,
        "speed      {:.4} s per epoch, {} epochs",
        run.secs_per_epoch, run.epochs
    );
    s
}

#[cfg(test)]
mod tests {
    use super::compact_json;
    use serde_json::json;

    #[test]
    fn compact_json_summarises_long_and_repeated_arrays() {
        let long: Vec<f64> = (0..101).map(f64::from).collect();
        let mut v = json!({
            "same": [0.5, 0.5, 0.5],
            "one": [0.5],
            "short": [1.0, 2.0],
            "long": long,
            "nested": [{"r": [2, 2]}],
            "names": ["a", "a"],
        });
        compact_json(&mut v);
        assert_eq!(
            v,
            json!({
                "same": {"len": 3, "value": 0.5},
                "one": [0.5],
                "short": [1.0, 2.0],
                "long": {"len": 101, "min": 0.0, "mean": 50.0, "max": 100.0},
                "nested": [{"r": {"len": 2, "value": 2}}],
                "names": ["a", "a"],
            })
        );
    }
}
