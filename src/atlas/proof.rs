//! The proof of an atlas instance (SPEC key `certify = true`): what `fcollapse
//! certify` concludes about the theory's prediction for the instance, kept in
//! its result line as a [`ProofSummary`].
//!
//! An instance `certify` cannot treat (a drawn latent set; an interval Hessian
//! over `certify::MAX_TABLE` rows `L n_w K`), or one over the SPEC's
//! `certify_max_rows`, is `not applicable`, with the reason: an outcome, not an
//! error of the instance.

use super::run::{short_instance, ResultLine};
use crate::collapse::CollapseType;
use crate::task::Task;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fmt::Write as _;

/// What the proof attempt concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProofOutcome {
    /// The certificate's verdict is `proved`.
    #[serde(rename = "proved")]
    Proved,
    /// The certificate's verdict is `unproved` (or the proof stopped on an error).
    #[serde(rename = "unproved")]
    Unproved,
    /// `certify` does not cover the instance.
    #[serde(rename = "not applicable")]
    NotApplicable,
}

impl fmt::Display for ProofOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProofOutcome::Proved => "proved",
            ProofOutcome::Unproved => "unproved",
            ProofOutcome::NotApplicable => "not applicable",
        })
    }
}

/// The certificate of one instance, in the few numbers the atlas keeps (the
/// whole certificate is `fcollapse certify --json` with the instance's flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProofSummary {
    pub verdict: ProofOutcome,
    /// `unproved`: the first step that failed; `not applicable`: why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Seconds the proof took (none when not applicable).
    #[serde(default)]
    pub seconds: Option<f64>,
    /// `collapsed` or `trivial`: the phase the certificate is about.
    #[serde(default)]
    pub phase: Option<String>,
    /// The collapse type of a collapsed-phase certificate.
    #[serde(default)]
    pub kind: Option<CollapseType>,
    /// `[lo, hi]` enclosing the optimal risk `R*` (when both ends are finite).
    #[serde(default)]
    pub risk_enclosure: Option<[f64; 2]>,
    /// `m`: lower bound of the transverse Hessian on the ball (proved only).
    #[serde(default)]
    pub transverse_lower_bound: Option<f64>,
    /// Distance from the candidate to the proved minimiser (proved only).
    #[serde(default)]
    pub distance_bound: Option<f64>,
}

impl ProofSummary {
    fn not_applicable(reason: String) -> Self {
        ProofSummary {
            verdict: ProofOutcome::NotApplicable,
            reason: Some(reason),
            seconds: None,
            phase: None,
            kind: None,
            risk_enclosure: None,
            transverse_lower_bound: None,
            distance_bound: None,
        }
    }
}

/// `fcollapse certify` of the predicted configuration of `task`, when its score
/// table has at most `max_rows` rows `L n_w K` (`None`: certify's own limit).
#[cfg(feature = "certify")]
pub fn prove(task: &Task, max_rows: Option<usize>) -> ProofSummary {
    use crate::certify::{self, Candidate, CertifyConfig, ProofVerdict};
    if let Err(e) = certify::check_instance(task) {
        return ProofSummary::not_applicable(e.report());
    }
    let rows = task.len() * task.n_w() * task.k();
    if let Some(m) = max_rows.filter(|m| rows > *m) {
        return ProofSummary::not_applicable(format!(
            "L n_w K = {rows} rows of the interval score table, over the SPEC's certify_max_rows = {m}"
        ));
    }
    let start = std::time::Instant::now();
    let cert =
        CertifyConfig::new(Candidate::Predicted, 1.0).and_then(|cfg| certify::certify(task, &cfg));
    let stopped = |why: String| ProofSummary {
        verdict: ProofOutcome::Unproved,
        seconds: Some(start.elapsed().as_secs_f64()),
        ..ProofSummary::not_applicable(format!("the proof stopped: {why}"))
    };
    match cert {
        Err(e) => stopped(e.report()),
        Ok(c) => ProofSummary {
            verdict: match c.verdict {
                ProofVerdict::Proved => ProofOutcome::Proved,
                ProofVerdict::Unproved => ProofOutcome::Unproved,
            },
            reason: c.reasons.first().cloned(),
            seconds: Some(c.seconds),
            phase: Some(c.phase.to_string()),
            kind: c.kind,
            risk_enclosure: c.risk_enclosure,
            transverse_lower_bound: c.transverse_lower_bound,
            distance_bound: c.distance_bound,
        },
    }
}

/// Without the `certify` feature nothing is proved ([`super::run`] refuses a
/// SPEC that asks for proofs before anything runs).
#[cfg(not(feature = "certify"))]
pub fn prove(_task: &Task, _max_rows: Option<usize>) -> ProofSummary {
    ProofSummary::not_applicable(UNAVAILABLE.into())
}

/// Why a binary without the `certify` feature refuses `certify = true`.
pub const UNAVAILABLE: &str = "this fcollapse was built without the `certify` feature; \
    rebuild with `cargo build --release --features certify` (needs the m4 package, see docs/certificate.md)";

/// Proof counts of a set of results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProofCounts {
    pub proved: usize,
    pub unproved: usize,
    pub not_applicable: usize,
}

impl ProofCounts {
    /// Adds the outcome of one result (nothing when it has no certificate).
    pub fn add(&mut self, c: Option<&ProofSummary>) {
        match c.map(|c| c.verdict) {
            Some(ProofOutcome::Proved) => self.proved += 1,
            Some(ProofOutcome::Unproved) => self.unproved += 1,
            Some(ProofOutcome::NotApplicable) => self.not_applicable += 1,
            None => {}
        }
    }

    /// Proved or unproved: the results `certify` treated.
    pub fn applicable(&self) -> usize {
        self.proved + self.unproved
    }
}

/// The phase of a result: its verify report's, else its certificate's.
fn phase(r: &ResultLine) -> Option<String> {
    r.report
        .as_ref()
        .and_then(|v| v.get("phase"))
        .and_then(|p| p.as_str())
        .map(str::to_string)
        .or_else(|| r.certificate.as_ref().and_then(|c| c.phase.clone()))
}

/// The "Proofs" section of `atlas.md` (nothing when no result has a certificate):
/// the counts, the conjecture's instances (theorem 2 on the full latent set in
/// the collapsed phase: type III), every unproved instance with its reason, and
/// the full-latent-set instances `certify` does not cover.
pub(super) fn write_section(md: &mut String, results: &[ResultLine]) {
    let with: Vec<&ResultLine> = results.iter().filter(|r| r.certificate.is_some()).collect();
    if with.is_empty() {
        return;
    }
    let cert = |r: &ResultLine| r.certificate.clone().expect("filtered");
    let mut all = ProofCounts::default();
    let mut conj = ProofCounts::default();
    for r in &with {
        all.add(r.certificate.as_ref());
        if r.instance.theorem == 2
            && r.instance.task.classes.is_none()
            && phase(r).as_deref() == Some("collapsed")
        {
            conj.add(r.certificate.as_ref());
        }
    }
    let drawn = with
        .iter()
        .filter(|r| r.instance.task.classes.is_some())
        .count();
    let seconds = with
        .iter()
        .filter_map(|r| cert(r).seconds)
        .fold(0.0, |a, s| a + s);
    let slowest = with
        .iter()
        .filter_map(|r| cert(r).seconds.map(|s| (s, *r)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let _ = writeln!(md, "## Proofs\n");
    let _ = writeln!(
        md,
        "`certify = true`: each instance's prediction also went through `fcollapse certify` \
         (interval arithmetic, docs/certificate.md). **{} proved, {} unproved, {} not \
         applicable** ({} of them on a drawn latent set); {:.1} s of proofs in all{}.\n",
        all.proved,
        all.unproved,
        all.not_applicable,
        drawn,
        seconds,
        slowest.map_or(String::new(), |(s, r)| format!(
            ", the longest {s:.1} s ({})",
            short_instance(&r.instance.task)
        ))
    );
    let _ = writeln!(
        md,
        "**Type III under Zipf frequencies** (theorem 2, full latent set, collapsed \
         phase): {} of {} instances proved a strict local minimiser up to symmetry \
         ({} unproved, {} not applicable). Global optimality over all weights is not \
         claimed by a proof.\n",
        conj.proved,
        conj.applicable() + conj.not_applicable,
        conj.unproved,
        conj.not_applicable
    );
    let listed: Vec<&&ResultLine> = with
        .iter()
        .filter(|r| {
            let c = cert(r);
            c.verdict == ProofOutcome::Unproved
                || (c.verdict == ProofOutcome::NotApplicable && r.instance.task.classes.is_none())
        })
        .collect();
    if listed.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "Unproved instances, and the full-latent-set instances `certify` does not cover:\n"
    );
    let _ = writeln!(md, "| id | theorem | instance | phase | proof | reason |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for r in listed {
        let c = cert(r);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {}{} | {} |",
            r.id,
            r.instance.theorem,
            short_instance(&r.instance.task),
            phase(r).unwrap_or_else(|| "–".into()),
            c.verdict,
            c.seconds.map_or(String::new(), |s| format!(" ({s:.1} s)")),
            c.reason.unwrap_or_default().replace('|', "/")
        );
    }
    let _ = writeln!(md);
}
