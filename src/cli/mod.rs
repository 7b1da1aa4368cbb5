//! The `fcollapse` command line: argument parsing and report printing, one file
//! per subcommand. `main` only calls [`run`] and maps errors to exit codes.
//!
//! Exit codes: 0 success (every check passed), 1 a verification failed,
//! 2 bad input (message names the parameter), 3 run-time failure, 130 interrupted.

mod converge;
mod predict;
mod reproduce;
mod task_args;
mod train;
mod verify;

pub use converge::{ConvergeArgs, SolverArg};
pub use predict::{FormArg, PredictArgs};
pub use reproduce::ReproduceArgs;
pub use task_args::{FreqArg, TaskArgs};
pub use train::TrainArgs;
pub use verify::{TheoremArg, VerifyArgs};

use crate::error::Result;
use clap::{Parser, Subcommand};

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
    /// Finite-sample solutions (ERM and SGD) against the limit minimiser as n_spl grows: rates, report, figures.
    Converge(ConvergeArgs),
}

/// Parses the process arguments and runs; returns the exit code.
pub fn run() -> Result<i32> {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(a) => verify::run(&a),
        Command::Predict(a) => predict::run(&a),
        Command::Train(a) => train::run(&a),
        Command::Reproduce(a) => reproduce::run(&a),
        Command::Converge(a) => converge::run(&a),
    }
}
