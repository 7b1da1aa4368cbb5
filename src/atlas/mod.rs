//! The atlas: [`verify_theorem`](crate::verify::verify_theorem) over a grid of
//! instances given by a TOML SPEC, resumable and split into shards, and a report
//! that merges the shards (per-theorem counts, phase diagrams, counterexamples).
//!
//! - `spec`: the SPEC format and its expansion into [`Instance`]s (which theorem
//!   applies follows from the instance);
//! - `run`: one JSON line per instance in `DIR/results*.jsonl`, with provenance;
//!   resume and `--shard I/N`;
//! - `proof`: with `certify = true`, the proof of each instance's prediction;
//! - `report`: `DIR/atlas.md` and the phase diagrams.
//!
//! See docs/atlas-spec.md for the SPEC keys and the cluster recipes.

mod lock;
mod proof;
mod report;
mod run;
mod spec;
mod values;

pub use proof::{ProofCounts, ProofOutcome, ProofSummary};
pub use report::{report, AtlasSummary, TheoremCounts};
pub use run::{
    git_commit, parse_shard, read_results, result_files, results_path, run, Counterexample,
    Provenance, ResultLine, RunOptions, RunSummary,
};
pub use spec::{parse, Instance, Spec};

/// Reads and parses a SPEC file: `(spec, source text)`.
pub fn load(path: &std::path::Path) -> crate::Result<(Spec, String)> {
    let text =
        std::fs::read_to_string(path).map_err(|e| crate::Error::input_file("spec", path, e))?;
    let spec = parse(&text)?;
    Ok((spec, text))
}
