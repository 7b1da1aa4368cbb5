//! `fcollapse converge`: finite-sample solutions (ERM and SGD) against the limit
//! minimiser, as the sample grows.

use super::TaskArgs;
use crate::converge::report::{self, MEASURES};
use crate::converge::sgd::SgdProtocol;
use crate::converge::store::Store;
use crate::converge::{self, lbfgs::LbfgsOptions, ConvergeConfig, Record, Reference, Solver};
use crate::error::{Error, Result};
use crate::limit;
use crate::verify::Theorem;
use crate::Versioned;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SolverArg {
    Erm,
    Sgd,
    Both,
}

#[derive(Debug, Args)]
pub struct ConvergeArgs {
    /// Which theorem's default instance (as `verify`); the task flags override it.
    #[arg(long, default_value_t = 1)]
    pub theorem: u8,
    #[command(flatten)]
    pub task: TaskArgs,
    /// Sample sizes n_spl (sentences per class), comma-separated, strictly increasing.
    #[arg(long, default_value = "8,32,128,512,2048")]
    pub nspl: String,
    /// Number of seeds (0..N) per sample size.
    #[arg(long, default_value_t = 4)]
    pub seeds: usize,
    /// Which finite-sample solutions: the sample-risk minimiser, SGD, or both.
    #[arg(long, value_enum, default_value = "both")]
    pub solver: SolverArg,
    /// SGD learning rate.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub lr: f64,
    /// SGD mini-batch size.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// SGD stops when the epoch loss changes by at most this (relative) over the last tenth of the epochs.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    pub rel_tol: f64,
    /// SGD steps before the plateau test starts.
    #[arg(long, default_value_t = 20000)]
    pub min_steps: u64,
    /// SGD epoch cap (hitting it flags the solution as not converged).
    #[arg(long, default_value_t = 20000)]
    pub max_epochs: usize,
    /// Test sentences per class.
    #[arg(long, default_value_t = 5)]
    pub n_test: usize,
    /// Gradient tolerance of the ERM's L-BFGS.
    #[arg(long, default_value_t = 1e-9, allow_negative_numbers = true)]
    pub grad_tol: f64,
    /// Iteration cap of every L-BFGS run (hitting it: not converged).
    #[arg(long, default_value_t = 5000)]
    pub max_iters: u64,
    /// Work budget of one exact limit-risk evaluation (operations).
    #[arg(long, default_value_t = limit::DEFAULT_WORK_BUDGET, allow_negative_numbers = true)]
    pub budget: f64,
    /// SGD worker threads (results do not depend on it).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Output directory (results.jsonl, convergence.md, figures/); default runs/converge-theoremN.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// One JSON line per result on stdout, then a summary line with the slopes.
    #[arg(long)]
    pub json: bool,
}

/// Parses `8,32,128`: one line errors naming `nspl`.
fn parse_nspl(s: &str) -> Result<Vec<usize>> {
    if s.trim().is_empty() {
        return Err(Error::invalid(
            "nspl",
            "(empty)",
            "needs at least one sample size",
        ));
    }
    s.split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| Error::invalid("nspl", s, format!("`{x}` is not a positive integer")))
        })
        .collect()
}

pub(super) fn run(a: &ConvergeArgs) -> Result<i32> {
    let started = Instant::now();
    let theorem = Theorem::from_number(a.theorem)
        .map_err(|_| Error::invalid("theorem", a.theorem, "must be 1, 2 or 3"))?;
    let cfg = ConvergeConfig {
        nspl: parse_nspl(&a.nspl)?,
        seeds: a.seeds,
        solvers: match a.solver {
            SolverArg::Erm => vec![Solver::Erm],
            SolverArg::Sgd => vec![Solver::Sgd],
            SolverArg::Both => vec![Solver::Erm, Solver::Sgd],
        },
        n_test: a.n_test,
        erm: LbfgsOptions {
            grad_tol: a.grad_tol,
            max_iters: a.max_iters,
            ..LbfgsOptions::default()
        },
        sgd: SgdProtocol {
            lr: a.lr,
            batch: a.batch,
            rel_tol: a.rel_tol,
            min_steps: a.min_steps,
            max_epochs: a.max_epochs,
            threads: a.threads,
        },
        limit: LbfgsOptions {
            max_iters: a.max_iters,
            ..LbfgsOptions::default()
        },
        budget: a.budget,
        ..ConvergeConfig::default()
    };
    cfg.validate()?;
    let task = a.task.apply(theorem.default_task(), 0.0)?.build()?;
    // The study compares with the predicted minimiser: only inside the hypotheses.
    let outside = theorem.outside(&task)?;
    if !outside.is_empty() {
        return Err(Error::invalid(
            "theorem",
            theorem,
            format!(
                "the instance is outside its hypotheses ({}), so there is no predicted minimiser to converge to",
                outside.join("; ")
            ),
        ));
    }
    limit::check_budget(&task, cfg.budget)?;
    if let (crate::collapse::Phase::Trivial, Some(lc)) = (
        crate::collapse::predicted_phase(&task),
        crate::collapse::lambda_critical(&task),
    ) {
        return Err(Error::invalid(
            "lambda",
            crate::task::short(task.lambda_geo()),
            format!(
                "at or above lambda_critical = {}: the limit minimiser is the origin (trivial phase), with no collapsed configuration to converge to",
                crate::task::short(lc)
            ),
        ));
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/converge-theorem{}", a.theorem)));

    let reference = Reference::of(&task, &cfg)?;
    let fingerprint = cfg.fingerprint(&task);
    let (mut store, done) = Store::open(&out)?;
    if let Some(r) = done.iter().find(|r| r.fingerprint != fingerprint) {
        return Err(Error::invalid(
            "out",
            out.display(),
            format!(
                "holds results of another configuration ({}); use another --out",
                r.fingerprint
            ),
        ));
    }
    let key = |r: &Record| (r.n_spl, r.seed, r.solver);
    let finished: HashSet<_> = done.iter().map(key).collect();
    let grid: Vec<(usize, u64, Solver)> = cfg
        .nspl
        .iter()
        .flat_map(|&n| {
            let solvers = cfg.solvers.clone();
            (0..cfg.seeds as u64)
                .flat_map(move |s| solvers.clone().into_iter().map(move |v| (n, s, v)))
        })
        .collect();

    let bar = if !a.json && std::io::stderr().is_terminal() {
        let b =
            ProgressBar::with_draw_target(Some(grid.len() as u64), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} solutions [{elapsed_precise} < {eta_precise}] {msg}",
            )
            .expect("valid template"),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut records = Vec::with_capacity(grid.len());
    let mut diverged: Vec<String> = Vec::new();
    for &(n, seed, solver) in &grid {
        let rec = if finished.contains(&(n, seed, solver)) {
            done.iter()
                .find(|r| key(r) == (n, seed, solver))
                .cloned()
                .expect("finished record")
        } else {
            bar.set_message(format!("{} n_spl={n} seed={seed}", solver.name()));
            match converge::run_one(&task, Some(a.theorem), &reference, &cfg, n, seed, solver) {
                Ok(r) => {
                    store.append(&r)?;
                    r
                }
                // A diverged SGD run is not stored: the others go on, and a
                // rerun with a smaller --lr redoes only what is missing.
                Err(Error::Diverged { epoch, .. }) => {
                    diverged.push(format!("n_spl {n} seed {seed} (epoch {epoch})"));
                    bar.inc(1);
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        if a.json {
            println!("{}", serde_json::to_string(&Versioned::new(&rec))?);
        }
        records.push(rec);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let instance = task.to_string();
    let summary = report::summarise(
        &records,
        Some(a.theorem),
        &instance,
        &reference,
        started.elapsed().as_secs_f64(),
    );
    let title = format!("type {:?}", reference.kind);
    let stems = report::figures(
        &out,
        &records,
        &title,
        reference.sgd_floor,
        reference.erm_excess_coefficient,
    )?;
    report::write_markdown(&out, &records, &summary, &reference, &stems)?;
    let not_converged: usize = summary.solvers.values().map(|c| c.not_converged).sum();
    if a.json {
        println!("{}", serde_json::to_string(&Versioned::new(&summary))?);
    } else {
        println!(
            "converge   theorem {} (type {:?}): {instance}",
            a.theorem, reference.kind
        );
        println!("limit      R* = {:.12}", reference.r_star);
        if let Some(c) = reference.erm_excess_coefficient {
            println!("erm theory E[R - R*] = C / n_spl, C = tr(H+ Sigma_w) / (2K) = {c:.4e}");
        }
        if let Some(f) = reference.sgd_floor {
            println!(
                "sgd floor  lr tr(Sigma) / (4 B) = {f:.3e} (predicted excess limit risk of SGD)"
            );
        }
        print!("{:<24}", "rate (slope ± 95 %)");
        for s in summary.solvers.keys() {
            print!(" {:>26}", s.to_uppercase());
        }
        println!();
        for m in &MEASURES {
            print!("{:<24}", m.key);
            for s in summary.solvers.keys() {
                print!(" {:>26}", report::rate_cell(&summary, m, s));
            }
            println!();
        }
        for (s, c) in &summary.solvers {
            println!(
                "{:<10} {} solutions, {} not converged, {} in the predicted basin",
                s.to_uppercase(),
                c.records,
                c.not_converged,
                c.basin_in_family
            );
        }
        println!(
            "report     {} ({:.1} s)",
            out.join("convergence.md").display(),
            summary.seconds
        );
    }
    if not_converged > 0 {
        eprintln!(
            "warning: {not_converged} solution(s) did not converge (flagged in {} and left out of the rates)",
            store.path().display()
        );
    }
    if !diverged.is_empty() {
        eprintln!(
            "error: SGD diverged (non-finite loss) with lr {} on {} of {} solution(s): {}; the report holds the other {}; try a smaller --lr (e.g. {}) with a new --out, or --solver erm",
            crate::task::short(a.lr),
            diverged.len(),
            grid.len(),
            diverged.join(", "),
            records.len(),
            crate::task::short(a.lr / 10.0)
        );
        return Ok(1);
    }
    Ok(0)
}
