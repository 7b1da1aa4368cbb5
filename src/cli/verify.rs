//! `fcollapse verify`: the theorem checks on the exact limit risk.

use super::predict::print_prediction_line;
use super::TaskArgs;
use crate::error::{Error, Result};
use crate::limit;
use crate::verify::{self, Theorem, TheoremReport, VerifyConfig};
use clap::{Args, ValueEnum};
use std::io::IsTerminal;

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

pub(super) fn run(a: &VerifyArgs) -> Result<i32> {
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
    println!("  instance   {} ({} parameters)", r.task, r.n_params);
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
