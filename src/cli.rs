//! The `fcollapse` command line: argument parsing, presets and report printing.
//! `main` only calls [`run`] and maps errors to exit codes.
//!
//! Exit codes: 0 success (every check passed), 1 a verification failed,
//! 2 bad input (message names the parameter), 3 run-time failure, 130 interrupted.

use crate::collapse::{self, Form, Prediction};
use crate::error::{Error, Result};
use crate::experiments::{self, Preset, ReproduceOptions};
use crate::limit;
use crate::task::{Freq, Task, TaskConfig};
use crate::train::TrainConfig;
use crate::verify::{self, Theorem, TheoremReport, VerifyConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;

/// Numerical verifier for the theory of "Feature Collapse" (Laurent, von Brecht, Bresson, ICLR 2024).
#[derive(Debug, Parser)]
#[command(name = "fcollapse", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify the paper's theorems on the exact large-sample limit risk (exit 0 only if every check passes).
    Verify(VerifyArgs),
    /// Print the predicted collapsed constants (a, b, r_beta, risk) for a configuration.
    Predict(PredictArgs),
    /// Train the network by finite-sample SGD as the paper did, measure collapse, compare with the limit.
    Train(TrainArgs),
    /// Run the paper's four experiments and the norm table; write docs/reproduction.md.
    Reproduce(ReproduceArgs),
}

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
    /// Embedding dimension d (>= n_c - 1, or >= n_c with LayerNorm).
    #[arg(long)]
    pub dim: Option<usize>,
    /// Number of classes K, drawn uniformly from Z with --seed (default: the full latent set, K = n_c^L).
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
    /// Put LayerNorm (no affine parameters) after the embedding.
    #[arg(long)]
    pub layer_norm: bool,
    /// LayerNorm eps (>= 0); implies --layer-norm.
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f64>,
    /// Seed of the latent-variable draw and of everything random.
    #[arg(long)]
    pub seed: Option<u64>,
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
        if self.layer_norm || self.eps.is_some() {
            c.layer_norm = Some(self.eps.or(c.layer_norm).unwrap_or(default_eps));
        }
        if let Some(v) = self.seed {
            c.seed = v;
        }
        Ok(c)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TheoremArg {
    #[value(name = "1")]
    One,
    #[value(name = "2")]
    Two,
    #[value(name = "3")]
    Three,
    All,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Which theorem to verify.
    #[arg(long, value_enum, default_value = "all")]
    pub theorem: TheoremArg,
    #[command(flatten)]
    pub task: TaskArgs,
    /// Number of random L-BFGS starts per theorem.
    #[arg(long, default_value_t = 16)]
    pub restarts: usize,
    /// Gradient-norm tolerance of a converged restart.
    #[arg(long, default_value_t = 1e-9)]
    pub grad_tol: f64,
    /// Iteration cap of one restart (hitting it fails the verification).
    #[arg(long, default_value_t = 5000)]
    pub max_iters: u64,
    /// Work budget of one exact risk evaluation (operations).
    #[arg(long, default_value_t = limit::DEFAULT_WORK_BUDGET)]
    pub budget: f64,
    /// Skip the Hessian (for instances with many parameters).
    #[arg(long)]
    pub no_hessian: bool,
    /// One JSON object per theorem, one per line, on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormArg {
    /// Full latent set K = n_c^L (exact there).
    Full,
    /// Exact for the drawn latent set.
    LatentSet,
    /// Symmetric (mean-field) approximation used by the paper.
    MeanField,
}

impl From<FormArg> for Form {
    fn from(f: FormArg) -> Form {
        match f {
            FormArg::Full => Form::Full,
            FormArg::LatentSet => Form::LatentSet,
            FormArg::MeanField => Form::MeanField,
        }
    }
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A paper experiment's settings (explicit flags override it).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Which reduced objective to minimise (default: full for the full latent set, else mean-field).
    #[arg(long, value_enum)]
    pub form: Option<FormArg>,
    #[command(flatten)]
    pub task: TaskArgs,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Parses the process arguments and runs; returns the exit code.
pub fn run() -> Result<i32> {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(a) => run_verify(&a),
        Command::Predict(a) => run_predict(&a),
        Command::Train(a) => run_train(&a),
        Command::Reproduce(a) => run_reproduce(&a),
    }
}

fn describe(task: &Task) -> String {
    let freq = match task.freq {
        Freq::Uniform => "uniform".to_string(),
        Freq::Zipf { exponent } => format!("zipf(s={exponent})"),
    };
    let ln = match task.layer_norm {
        Some(eps) => format!("LayerNorm(eps={eps:e})"),
        None => "no LayerNorm".to_string(),
    };
    format!(
        "n_c={} s_c={} n_w={} L={} d={} K={}{} mu={} {} lambda_W={} lambda_U={}",
        task.n_c,
        task.s_c,
        task.n_w,
        task.len,
        task.dim,
        task.k,
        if task.full_latent {
            " (full latent set)"
        } else {
            " (drawn)"
        },
        freq,
        ln,
        task.lambda_w,
        task.lambda_u
    )
}

fn run_verify(a: &VerifyArgs) -> Result<i32> {
    let theorems: Vec<Theorem> = match a.theorem {
        TheoremArg::One => vec![Theorem::One],
        TheoremArg::Two => vec![Theorem::Two],
        TheoremArg::Three => vec![Theorem::Three],
        TheoremArg::All => Theorem::ALL.to_vec(),
    };
    let cfg = VerifyConfig {
        restarts: a.restarts,
        grad_tol: a.grad_tol,
        max_iters: a.max_iters,
        budget: a.budget,
        hessian: !a.no_hessian,
        seed: a.task.seed.unwrap_or(0),
        ..VerifyConfig::default()
    };
    cfg.validate()?;
    if a.budget.is_nan() || a.budget <= 0.0 {
        return Err(Error::invalid("budget", a.budget, "must be > 0"));
    }
    // Validate every instance before running anything.
    let mut jobs = Vec::new();
    for &t in &theorems {
        let task = a.task.apply(t.default_task(), 0.0)?.build()?;
        t.check_task(&task)?;
        limit::check_budget(&task, cfg.budget)?;
        jobs.push((t, task));
    }
    let show_progress = !a.json && std::io::stderr().is_terminal();
    let mut all_passed = true;
    for (t, task) in jobs {
        let report = verify::verify_theorem(t, &task, &cfg, |stage| {
            if show_progress {
                eprintln!("  theorem {}: {stage} ...", t.number());
            }
        })?;
        all_passed &= report.passed;
        if a.json {
            println!("{}", serde_json::to_string(&json_report(&report))?);
        } else {
            print_report(&report);
        }
    }
    if !a.json {
        println!(
            "{}",
            if all_passed {
                "ALL CHECKS PASSED"
            } else {
                "SOME CHECKS FAILED"
            }
        );
    }
    Ok(if all_passed { 0 } else { 1 })
}

/// The JSON line of one theorem: the summary fields first, then the details.
fn json_report(r: &TheoremReport) -> serde_json::Value {
    serde_json::json!({
        "theorem": r.theorem,
        "statement": r.statement,
        "kind": r.kind,
        "passed": r.passed,
        "predicted_risk": r.predicted_risk,
        "exact_risk_at_prediction": r.exact_risk_at_prediction,
        "best_risk": r.best_risk,
        "grad_norm_at_prediction": r.grad_norm_at_prediction,
        "hessian_min_eig": r.hessian_min_eig,
        "collapse_distance": r.collapse_distance,
        "type_i_grad_norm": r.type_i_grad_norm,
        "prediction": r.prediction,
        "hessian": r.hessian,
        "checks": r.checks,
        "restarts": r.restarts,
        "task": r.task,
        "n_params": r.n_params,
        "seconds": r.seconds,
    })
}

fn print_report(r: &TheoremReport) {
    println!("Theorem {}: {}", r.theorem, r.statement);
    println!(
        "  instance   {} ({} parameters)",
        describe(&r.task),
        r.n_params
    );
    print_prediction_line(&r.prediction);
    if let Some(h) = &r.hessian {
        println!(
            "  Hessian    eigenvalues in [{:.3e}, {:.3e}], {} near zero, symmetry orbit dim {}, transverse min {:.3e}",
            h.min_eig, h.max_eig, h.near_zero, h.symmetry_dim, h.transverse_min_eig
        );
    }
    let reached = r.restarts.iter().filter(|x| x.reached_prediction).count();
    let mut iters: Vec<u64> = r.restarts.iter().map(|x| x.iterations).collect();
    iters.sort_unstable();
    println!(
        "  restarts   {} runs, {} reached the prediction, best R = {:.15}, median {} L-BFGS iterations",
        r.restarts.len(),
        reached,
        r.best_risk,
        iters[iters.len() / 2]
    );
    println!(
        "  {:<62} {:>11}  {:<10} result",
        "check", "value", "criterion"
    );
    for c in &r.checks {
        println!(
            "  {:<62} {:>11.3e}  {:<10} {}",
            c.name,
            c.value,
            c.criterion,
            if c.passed { "pass" } else { "FAIL" }
        );
    }
    println!(
        "  verdict    {} ({:.1} s)\n",
        if r.passed { "PASSED" } else { "FAILED" },
        r.seconds
    );
}

fn print_prediction_line(p: &Prediction) {
    let r = if p
        .r
        .iter()
        .all(|v| (v - p.r[0]).abs() <= 1e-14 * p.r[0].abs().max(1.0))
    {
        format!("rho = {:.12}", p.r[0])
    } else {
        let shown: Vec<String> = p.r.iter().take(6).map(|v| format!("{v:.6}")).collect();
        format!(
            "r_beta = [{}{}]",
            shown.join(", "),
            if p.r.len() > 6 { ", ..." } else { "" }
        )
    };
    println!(
        "  prediction type {:?} ({} form): {}, b = {:.12}, R = {:.15}",
        p.kind, p.form, r, p.u_norm, p.risk
    );
}

fn run_predict(a: &PredictArgs) -> Result<i32> {
    let base = a.preset.map(Preset::task).unwrap_or_default();
    let cfg = a.task.apply(base, 0.0)?;
    // The theory's LayerNorm has eps = 0: predictions ignore eps.
    let task = cfg.build()?;
    let form = match a.form {
        Some(f) => f.into(),
        None if task.full_latent => Form::Full,
        None => Form::MeanField,
    };
    let pred = collapse::predict(&task, form)?;
    if a.json {
        let v = serde_json::json!({
            "kind": pred.kind,
            "form": pred.form,
            "word_norm": pred.word_norm,
            "u_norm": pred.u_norm,
            "c": pred.c,
            "risk": pred.risk,
            "risk_error": pred.risk_error,
            "r": pred.r,
            "task": task,
        });
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!("task       {}", describe(&task));
        print_prediction_line(&pred);
        println!(
            "  word norm (a, sqrt(d) or mean r_beta) = {:.12}",
            pred.word_norm
        );
        if let Some(e) = pred.risk_error {
            println!("  risk is a Monte-Carlo estimate, standard error {e:.2e}");
        }
    }
    Ok(0)
}

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

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Scaled-down shapes and epochs (seconds; for tests).
    #[arg(long)]
    pub quick: bool,
    /// Directory of the runs (checkpoints, logs, .npy).
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// The report to write; figures go to its folder's figures/.
    #[arg(long, default_value = "docs/reproduction.md")]
    pub report: PathBuf,
    /// Seed of every experiment.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Resume runs that have a checkpoint in their directory.
    #[arg(long)]
    pub resume: bool,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

fn run_train(a: &TrainArgs) -> Result<i32> {
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
            seed: task.seed,
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
            .unwrap_or_else(|| PathBuf::from(format!("runs/{name}-seed{}", task.seed)));
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
        println!("run        {} -> {}", describe(&run.task), out.display());
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

fn run_reproduce(a: &ReproduceArgs) -> Result<i32> {
    let opts = ReproduceOptions {
        quick: a.quick,
        out: a.out.clone(),
        report: a.report.clone(),
        seed: a.seed,
        progress: !a.quiet,
        resume: a.resume,
    };
    let outcomes = experiments::reproduce(&opts)?;
    for o in &outcomes {
        println!(
            "{:<6} paper: {:<66} ours: {} [{}]",
            o.name,
            o.paper,
            o.ours,
            if a.quick {
                "not judged"
            } else if o.reproduced {
                "reproduced"
            } else {
                "NOT reproduced"
            }
        );
    }
    println!("report written to {}", a.report.display());
    Ok(if a.quick || outcomes.iter().all(|o| o.reproduced) {
        0
    } else {
        1
    })
}
