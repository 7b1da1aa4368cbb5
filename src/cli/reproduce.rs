//! `fcollapse reproduce`: the paper's experiments and their report.

use crate::error::Result;
use crate::experiments::{self, ReproduceOptions};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Scaled-down shapes and epochs (seconds; for tests).
    #[arg(long)]
    pub quick: bool,
    /// Directory of the runs (checkpoints, logs, .npy) [default: runs/reproduce, with --quick runs/reproduce-quick].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The report to write; figures go to its folder's figures/ [default: OUT/reproduction.md]. `--report docs/reproduction.md` rewrites the committed report and figures.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Seed of every experiment.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Resume runs that have a checkpoint in their directory.
    #[arg(long)]
    pub resume: bool,
    /// Start over runs whose directory already holds one (without --resume they are refused).
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
    /// Instead of the paper's experiments: fig4's long-tailed setting trained with each
    /// normalization (none, center, layer, rms, layer-affine; 500 epochs each) against
    /// each one's prediction [default out: runs/variants, report OUT/variants.md].
    #[arg(long)]
    pub variants: bool,
}

/// The run directory and the report path: by default both under `runs/`, so
/// that nothing in the repository is rewritten unless `--report` names it.
fn paths(a: &ReproduceArgs) -> (PathBuf, PathBuf) {
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(match (a.variants, a.quick) {
            (false, false) => "runs/reproduce",
            (false, true) => "runs/reproduce-quick",
            (true, false) => "runs/variants",
            (true, true) => "runs/variants-quick",
        })
    });
    let report = a.report.clone().unwrap_or_else(|| {
        out.join(if a.variants {
            "variants.md"
        } else {
            "reproduction.md"
        })
    });
    (out, report)
}

pub(super) fn run(a: &ReproduceArgs) -> Result<i32> {
    let (out, report) = paths(a);
    let opts = ReproduceOptions {
        quick: a.quick,
        out,
        report,
        seed: a.seed,
        progress: !a.quiet,
        resume: a.resume,
        force: a.force,
        stop: Some(super::interrupt::stop_on_ctrl_c()),
    };
    if a.variants {
        for row in experiments::variants(&opts)? {
            println!("{}", row.line());
        }
        println!("report written to {}", opts.report.display());
        return Ok(0);
    }
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
    println!("report written to {}", opts.report.display());
    Ok(if a.quick || outcomes.iter().all(|o| o.reproduced) {
        0
    } else {
        1
    })
}
