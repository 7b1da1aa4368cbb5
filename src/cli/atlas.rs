//! `fcollapse atlas run SPEC --out DIR [--shard I/N] [--jobs J]` and
//! `fcollapse atlas report DIR`.

use crate::atlas;
use crate::error::{Error, Result};
use clap::{Args, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct AtlasArgs {
    #[command(subcommand)]
    pub command: AtlasCommand,
}

#[derive(Debug, Subcommand)]
pub enum AtlasCommand {
    /// Verify every instance of a TOML grid (resumable; one JSON line per instance).
    Run(AtlasRunArgs),
    /// Merge the shards of DIR and write DIR/atlas.md with phase diagrams.
    Report(AtlasReportArgs),
}

#[derive(Debug, Args)]
pub struct AtlasRunArgs {
    /// The grid, a TOML file (see docs/atlas-spec.md).
    pub spec: PathBuf,
    /// Output directory (created; a rerun skips the finished instances).
    #[arg(long)]
    pub out: PathBuf,
    /// Run only shard I of N (1 <= I <= N): the instances with index = I-1 mod N.
    #[arg(long)]
    pub shard: Option<String>,
    /// Instances verified at the same time.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
}

#[derive(Debug, Args)]
pub struct AtlasReportArgs {
    /// The output directory of `atlas run` (all its shards).
    pub dir: PathBuf,
}

pub(super) fn run(a: &AtlasArgs) -> Result<i32> {
    match &a.command {
        AtlasCommand::Run(r) => {
            let shard = r.shard.as_deref().map(atlas::parse_shard).transpose()?;
            if r.jobs == 0 {
                return Err(Error::invalid("jobs", 0, "must be >= 1"));
            }
            let (spec, text) = atlas::load(&r.spec)?;
            let s = atlas::run(
                &spec,
                &text,
                &atlas::RunOptions {
                    out: r.out.clone(),
                    shard,
                    jobs: r.jobs,
                    progress: std::io::stderr().is_terminal()
                        || std::env::var_os("FCOLLAPSE_PROGRESS").is_some(),
                },
            )?;
            println!(
                "{} instances in this shard: {} run now, {} already done; {} refuted, {} inconclusive, {} errors{}; results in {}",
                s.in_shard,
                s.ran,
                s.skipped,
                s.refuted,
                s.inconclusive,
                s.errors,
                if spec.certify {
                    format!(
                        "; proofs: {} proved, {} unproved, {} not applicable",
                        s.proved, s.unproved, s.not_applicable
                    )
                } else {
                    String::new()
                },
                atlas::results_path(&r.out, shard).display()
            );
            // As `verify`: 1 if any instance is refuted, else 4 if any is
            // inconclusive or could not be verified, else 0. The proofs
            // (`certify = true`) are reported, and leave the exit code alone.
            Ok(if s.refuted > 0 {
                1
            } else if s.inconclusive + s.errors > 0 {
                4
            } else {
                0
            })
        }
        AtlasCommand::Report(r) => {
            let s = atlas::report(&r.dir)?;
            println!(
                "{} results; report in {}",
                s.results,
                r.dir.join("atlas.md").display()
            );
            for (i, t) in s.theorems.iter().enumerate() {
                if t.instances > 0 {
                    println!(
                        "theorem {}: {} instances, {} restarts, {} confirmed, {} refuted, {} inconclusive, {} errors, {} outside hypotheses, largest gap below prediction {} (full latent set) / {} (drawn, geometry only)",
                        i + 1,
                        t.instances,
                        t.restarts,
                        t.confirmed,
                        t.refuted,
                        t.inconclusive,
                        t.errors,
                        t.outside_hypotheses,
                        t.largest_gap_below.map_or("-".into(), |g| format!("{g:.2e}")),
                        t.largest_gap_below_drawn
                            .map_or("-".into(), |g| format!("{g:.2e}"))
                    );
                    let p = &t.proofs;
                    if p.applicable() + p.not_applicable > 0 {
                        println!(
                            "theorem {}: {} proved, {} unproved, {} not applicable",
                            i + 1,
                            p.proved,
                            p.unproved,
                            p.not_applicable
                        );
                    }
                }
            }
            println!("{} counterexamples", s.counterexamples.len());
            Ok(0)
        }
    }
}
