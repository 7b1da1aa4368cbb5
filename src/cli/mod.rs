//! The `fcollapse` command line: argument parsing and report printing, one file
//! per subcommand. `main` only calls [`run`] and maps errors to exit codes.
//!
//! Exit codes: 0 success (`verify`: every claim confirmed); 1 a negative outcome
//! (`verify`: a claim refuted; `train`: the run diverged; `reproduce`: an outcome
//! not reproduced); 4 `verify`: inconclusive; 2 bad input (the message names the
//! parameter); 3 run-time failure (I/O, a corrupted file); 130 interrupted.

mod analyze;
mod atlas;
mod certify;
mod converge;
mod interrupt;
mod predict;
mod reproduce;
mod task_args;
mod train;
mod verify;

pub use analyze::AnalyzeArgs;
pub use atlas::AtlasArgs;
pub use certify::{CandidateArg, CertifyArgs};
pub use converge::{ConvergeArgs, SolverArg};
pub use predict::{FormArg, PredictArgs};
pub use reproduce::ReproduceArgs;
pub use task_args::{FreqArg, PresetArg, TaskArgs};
pub use train::TrainArgs;
pub use verify::{TheoremArg, VerifyArgs};

use crate::error::{Error, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Numerical verifier for the theory of "Feature Collapse" (Laurent, von Brecht, Bresson, ICLR 2024).
#[derive(Debug, Parser)]
#[command(name = "fcollapse", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify the paper's theorems on the exact large-sample limit risk (exit 0 confirmed, 1 refuted, 4 inconclusive).
    Verify(VerifyArgs),
    /// Print the predicted collapsed constants (a, b, r_beta, risk) for a configuration.
    Predict(PredictArgs),
    /// Train the network by finite-sample SGD as the paper did, measure collapse, compare with the limit.
    Train(TrainArgs),
    /// Run the paper's four experiments and the norm table; write docs/reproduction.md.
    Reproduce(ReproduceArgs),
    /// Measure collapse of weights trained anywhere (W, U as .npy/.npz): every metric, distance to the prediction, limit risk.
    Analyze(AnalyzeArgs),
    /// Verify a grid of instances from a TOML spec (resumable, shardable) and report it.
    Atlas(AtlasArgs),
    /// Finite-sample solutions (ERM and SGD) against the limit minimiser as n_spl grows: rates, report, figures.
    Converge(ConvergeArgs),
    /// Computer-assisted proof per instance in interval arithmetic (exit 0 proved, 4 unproved; needs the `certify` feature).
    Certify(CertifyArgs),
}

/// Parses the process arguments and runs; returns the exit code.
pub fn run() -> Result<i32> {
    let cli = parse();
    match cli.command {
        Command::Verify(a) => verify::run(&a),
        Command::Predict(a) => predict::run(&a),
        Command::Train(a) => train::run(&a),
        Command::Reproduce(a) => reproduce::run(&a),
        Command::Analyze(a) => analyze::run(&a),
        Command::Atlas(a) => atlas::run(&a),
        Command::Converge(a) => converge::run(&a),
        Command::Certify(a) => certify::run(&a),
    }
}

/// The process exit code of an error: 2 bad input (a parameter out of range, an
/// instance over budget), 130 interrupted (a checkpoint was written, or a stop
/// request ended a computation that has none), 3 any other run-time failure.
pub fn exit_code(e: &Error) -> u8 {
    if e.is_bad_input() {
        2
    } else if matches!(e, Error::Interrupted { .. } | Error::Stopped) {
        130
    } else {
        3
    }
}

/// Every option that takes a value accepts a negative number as that value
/// (`--grad-tol -1` is the value -1, refused by validation with the option named,
/// not an unknown flag `-1`), in every subcommand.
fn negative_numbers_are_values(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| {
        if a.get_action().takes_values() {
            a.allow_negative_numbers(true)
        } else {
            a
        }
    })
    .mut_subcommands(negative_numbers_are_values)
}

/// Parses the process arguments. Help and version go to stdout with exit 0; a
/// usage error is one line on stderr (the option named) with exit 2.
fn parse() -> Cli {
    let parsed = negative_numbers_are_values(Cli::command())
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit()
            }
            let text = e.render().to_string();
            eprintln!(
                "{} (see --help)",
                text.lines().next().unwrap_or("error: bad arguments")
            );
            std::process::exit(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&Error::invalid("n_c", 1, "x")), 2);
        let over = Error::OverBudget {
            what: "x".into(),
            work: 2.0,
            budget: 1.0,
        };
        assert_eq!(exit_code(&over), 2);
        let int = Error::Interrupted {
            path: "ckpt".into(),
        };
        assert_eq!(exit_code(&int), 130);
        assert_eq!(exit_code(&Error::Plot("x".into())), 3);
    }

    #[test]
    fn clap_definition_is_consistent() {
        negative_numbers_are_values(Cli::command()).debug_assert();
    }
}
