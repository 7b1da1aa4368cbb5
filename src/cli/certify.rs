//! `fcollapse certify`: computer-assisted proofs per instance (docs/certificate.md).
//!
//! Exit codes: 0 every certificate proved (or `--check` re-derived every claim),
//! 4 some unproved, 2 bad input (also: a binary built without the `certify`
//! feature), 3 run-time failure.

use super::verify::TheoremArg;
use super::TaskArgs;
use crate::error::Result;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CandidateArg {
    /// The theory's prediction (its phase and collapse type).
    Predicted,
    /// Type I (equal word norms) whatever mu is: wrong on a Zipf instance.
    TypeI,
    /// The origin W = U = 0 as the global minimiser.
    Origin,
}

#[derive(Debug, Args)]
pub struct CertifyArgs {
    /// Which theorem's default instance the flags start from.
    #[arg(long, value_enum, default_value = "all")]
    pub theorem: TheoremArg,
    #[command(flatten)]
    pub task: TaskArgs,
    /// The configuration to prove (a test of the prover: the wrong ones must come back unproved).
    #[arg(long, value_enum, default_value = "predicted")]
    pub candidate: CandidateArg,
    /// Multiply the candidate's classifier norm b by this factor (anything but 1 is a wrong candidate).
    #[arg(long, default_value_t = 1.0)]
    pub candidate_scale: f64,
    /// One JSON certificate per instance, one per line, on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write the certificates (one JSON object per line) to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Re-derive the certificates of FILE from their instances alone (other flags are ignored).
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
}

#[cfg(not(feature = "certify"))]
pub(super) fn run(_: &CertifyArgs) -> Result<i32> {
    Err(crate::error::Error::invalid(
        "certify",
        "unavailable",
        "this fcollapse was built without the `certify` feature; rebuild with \
         `cargo run --release --features certify -- certify` (needs the m4 package, see docs/certificate.md)",
    ))
}

#[cfg(feature = "certify")]
pub(super) fn run(a: &CertifyArgs) -> Result<i32> {
    use crate::certify::{self, record, Candidate, CertifyConfig, ProofVerdict};
    use crate::error::Error;
    use crate::Versioned;
    use std::io::Write;

    if let Some(path) = &a.check {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let mut all_ok = true;
        let docs: Vec<&str> = if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
            vec![text.as_str()]
        } else {
            text.lines().filter(|l| !l.trim().is_empty()).collect()
        };
        for doc in docs {
            let rep = record::check(doc)?;
            let v = rep.verdict();
            all_ok &= v == ProofVerdict::Proved;
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string(&Versioned::new(&rep.rederived))?
                );
            } else {
                print_certificate(&rep.rederived);
                for c in &rep.claims {
                    println!(
                        "  claim      [{}] {}: {}",
                        if c.passed { "holds" } else { "FAILS" },
                        c.name,
                        c.detail
                    );
                }
                println!("  check      {v}\n");
            }
        }
        return Ok(if all_ok { 0 } else { 4 });
    }

    let candidate = match a.candidate {
        CandidateArg::Predicted => Candidate::Predicted,
        CandidateArg::TypeI => Candidate::TypeI,
        CandidateArg::Origin => Candidate::Origin,
    };
    let cfg = CertifyConfig::new(candidate, a.candidate_scale)?;
    let mut tasks = Vec::new();
    for t in a.theorem.theorems() {
        let task = a.task.apply(t.default_task(), 0.0)?.build()?;
        certify::check_instance(&task)?;
        tasks.push(task);
    }
    let mut out = match &a.out {
        Some(p) => Some(std::fs::File::create(p).map_err(|source| Error::Io {
            path: p.clone(),
            source,
        })?),
        None => None,
    };
    let mut all = true;
    for task in &tasks {
        let cert = certify::certify(task, &cfg)?;
        all &= cert.verdict == ProofVerdict::Proved;
        let line = serde_json::to_string(&Versioned::new(&cert))?;
        if let (Some(f), Some(p)) = (out.as_mut(), &a.out) {
            writeln!(f, "{line}").map_err(|source| Error::Io {
                path: p.clone(),
                source,
            })?;
        }
        if a.json {
            println!("{line}");
        } else {
            print_certificate(&cert);
        }
    }
    if !a.json {
        println!("{}", if all { "ALL PROVED" } else { "SOME UNPROVED" });
    }
    Ok(if all { 0 } else { 4 })
}

/// The human-readable certificate.
#[cfg(feature = "certify")]
pub fn print_certificate(c: &crate::certify::Certificate) {
    println!("Certificate: {} ({} parameters)", c.task, c.n_params);
    println!(
        "  phase      {}{}, candidate {} (b x {})",
        c.phase,
        c.kind.map(|k| format!(", type {k:?}")).unwrap_or_default(),
        c.candidate.name,
        c.candidate.scale
    );
    for s in &c.steps {
        println!(
            "  step       [{}] {}: {}",
            if s.passed { "pass" } else { "FAIL" },
            s.name,
            s.detail
        );
    }
    if let Some([lo, hi]) = c.risk_enclosure {
        println!("  R*         in [{lo:.17e}, {hi:.17e}]");
    }
    if let (Some(m), Some(r), Some(d)) = (c.transverse_lower_bound, c.radius, c.distance_bound) {
        println!("  local      m >= {m:.6e} on the ball of radius r = {r:.3e}; distance to the candidate <= {d:.3e}");
    }
    println!("  verdict    {} ({:.2} s)", c.verdict, c.seconds);
    for why in &c.reasons {
        println!("    because  {why}");
    }
    println!();
}
