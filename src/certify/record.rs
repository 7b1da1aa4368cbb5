//! The certificate: verdict, the steps with their numbers, every enclosure with
//! exact endpoints (hexadecimal floats), the instance, the versions and the time;
//! and `--check`, which re-derives a certificate from its instance alone.

use super::ival::{hex, parse_hex, I};
use super::slice::LocalProof;
use super::{certify, Candidate, CertifyConfig};
use crate::collapse::CollapseType;
use crate::error::{Error, Result};
use crate::task::{Task, TaskConfig};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The interval library (Cargo.toml pins its major version).
pub const INTERVAL_LIBRARY: &str = "inari 2 (IEEE 1788, exp/ln from MPFR)";

/// `proved` or `unproved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProofVerdict {
    Proved,
    Unproved,
}

impl fmt::Display for ProofVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProofVerdict::Proved => "proved",
            ProofVerdict::Unproved => "unproved",
        })
    }
}

/// The phase the certificate is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Collapsed,
    Trivial,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Collapsed => "collapsed",
            Phase::Trivial => "trivial",
        })
    }
}

/// One step of the proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// An enclosure `[lo, hi]` with exact endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enclosure {
    pub name: String,
    pub lo: String,
    pub hi: String,
}

/// The candidate the proof was attempted for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    /// `predicted`, `type-i` or `origin`.
    pub name: String,
    pub scale: f64,
    /// The constants `(r_1..r_{s_c}, b)` (or `(b)` for type II), exact.
    pub constants: Vec<String>,
}

/// The numbers of the local certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalNumbers {
    pub orbit_dim: usize,
    pub slice_dim: usize,
    pub grad_norm_upper: String,
    pub transverse_lower_bound: String,
    pub transverse_estimate: f64,
    pub radius: String,
    pub distance_bound: String,
    pub sigma_min_lower: String,
    pub transversality_margin: String,
    /// `||theta(c*) - theta_hat||` bound and the distance of its symmetric image on
    /// the slice (identification), when it ran.
    pub identification_eps: Option<String>,
    pub identification_distance: Option<String>,
}

impl LocalNumbers {
    pub(super) fn of(p: &LocalProof) -> Self {
        LocalNumbers {
            orbit_dim: p.orbit_dim,
            slice_dim: p.slice_dim,
            grad_norm_upper: hex(p.grad_norm),
            transverse_lower_bound: hex(p.transverse_lower_bound),
            transverse_estimate: p.transverse_estimate,
            radius: hex(p.radius),
            distance_bound: hex(p.distance_bound),
            sigma_min_lower: hex(p.sigma_min_lower),
            transversality_margin: hex(p.transversality_margin),
            identification_eps: p.identification.map(|i| hex(i.eps)),
            identification_distance: p.identification.map(|i| hex(i.distance)),
        }
    }
}

/// A certificate (see the module docs). `risk_enclosure` is `R*`: collapsed phase,
/// the reduced optimum `F(x*)` (the risk of the predicted configuration); trivial
/// phase, `R(0) = log K`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    pub verdict: ProofVerdict,
    pub phase: Phase,
    pub kind: Option<CollapseType>,
    /// `[lo, hi]`, `None` when nothing was enclosed.
    pub risk_enclosure: Option<[f64; 2]>,
    pub transverse_lower_bound: Option<f64>,
    pub radius: Option<f64>,
    pub distance_bound: Option<f64>,
    /// Why it is `unproved` (empty when proved).
    pub reasons: Vec<String>,
    pub steps: Vec<Step>,
    pub enclosures: Vec<Enclosure>,
    pub candidate: CandidateRecord,
    pub local: Option<LocalNumbers>,
    pub reduced_rel_width: Option<f64>,
    pub bb_boxes: Option<usize>,
    pub instance: TaskConfig,
    pub task: String,
    pub n_params: usize,
    /// The interval arithmetic the enclosures come from.
    #[serde(default)]
    pub interval_library: String,
    /// Seconds since the Unix epoch when the proof finished.
    pub unix_time: u64,
    pub seconds: f64,
}

impl Certificate {
    pub(super) fn new(task: &Task, cfg: &CertifyConfig) -> Self {
        Certificate {
            verdict: ProofVerdict::Proved,
            phase: Phase::Collapsed,
            kind: None,
            risk_enclosure: None,
            transverse_lower_bound: None,
            radius: None,
            distance_bound: None,
            reasons: Vec::new(),
            steps: Vec::new(),
            enclosures: Vec::new(),
            candidate: CandidateRecord {
                name: candidate_name(cfg.candidate).into(),
                scale: cfg.candidate_scale,
                constants: Vec::new(),
            },
            local: None,
            reduced_rel_width: None,
            bb_boxes: None,
            instance: task.config().clone(),
            task: task.to_string(),
            n_params: task.n_params(),
            interval_library: INTERVAL_LIBRARY.into(),
            unix_time: 0,
            seconds: 0.0,
        }
    }

    pub(super) fn step(&mut self, name: &str, passed: bool, detail: String) {
        self.steps.push(Step {
            name: name.into(),
            passed,
            detail,
        });
    }

    pub(super) fn fail(&mut self, name: &str, why: String) {
        self.step(name, false, why.clone());
        self.reasons.push(format!("{name}: {why}"));
    }

    pub(super) fn enclose(&mut self, name: &str, v: I) {
        self.enclosures.push(Enclosure {
            name: name.into(),
            lo: hex(v.inf()),
            hi: hex(v.sup()),
        });
    }

    pub(super) fn set_risk(&mut self, v: I) {
        if super::ival::is_finite(v) {
            self.risk_enclosure = Some([v.inf(), v.sup()]);
        }
    }

    pub(super) fn set_constants(&mut self, c: &[f64]) {
        self.candidate.constants = c.iter().map(|&v| hex(v)).collect();
    }

    pub(super) fn finish(&mut self, seconds: f64) {
        if !self.reasons.is_empty() || self.steps.iter().any(|s| !s.passed) || self.steps.is_empty()
        {
            self.verdict = ProofVerdict::Unproved;
            self.transverse_lower_bound = None;
            self.radius = None;
            self.distance_bound = None;
        }
        self.seconds = seconds;
        self.unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
    }

    /// The enclosure called `name`, exact.
    pub fn enclosure(&self, name: &str) -> Option<(f64, f64)> {
        let e = self.enclosures.iter().find(|e| e.name == name)?;
        Some((parse_hex(&e.lo)?, parse_hex(&e.hi)?))
    }
}

fn candidate_name(c: Candidate) -> &'static str {
    match c {
        Candidate::Predicted => "predicted",
        Candidate::TypeI => "type-i",
        Candidate::Origin => "origin",
    }
}

/// The result of [`check`].
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The certificate re-derived from the file's instance and candidate.
    pub rederived: Certificate,
    /// Each claim of the file against the re-derivation.
    pub claims: Vec<Step>,
}

impl CheckReport {
    /// `proved` when the re-derivation proves and every claim of the file holds.
    pub fn verdict(&self) -> ProofVerdict {
        if self.rederived.verdict == ProofVerdict::Proved && self.claims.iter().all(|c| c.passed) {
            ProofVerdict::Proved
        } else {
            ProofVerdict::Unproved
        }
    }
}

/// Re-derives the certificate `text` (JSON, as written by `certify --json` or
/// `--out`) from its instance alone: the task is rebuilt from `instance`, the
/// candidate constants are read (exactly) as candidates, and every enclosure is
/// computed again. The file's claims (verdict, `risk_enclosure`,
/// `transverse_lower_bound`, `distance_bound`) hold when the re-derived numbers
/// imply them.
pub fn check(text: &str) -> Result<CheckReport> {
    let file: Certificate = serde_json::from_str(text)?;
    let task = file.instance.build()?;
    let candidate = match file.candidate.name.as_str() {
        "predicted" => Candidate::Predicted,
        "type-i" => Candidate::TypeI,
        "origin" => Candidate::Origin,
        other => {
            return Err(Error::invalid(
                "candidate",
                other,
                "expected predicted, type-i or origin",
            ))
        }
    };
    let mut cfg = CertifyConfig::new(candidate, 1.0)?;
    if !file.candidate.constants.is_empty() {
        let c: Option<Vec<f64>> = file
            .candidate
            .constants
            .iter()
            .map(|s| parse_hex(s))
            .collect();
        let c =
            c.ok_or_else(|| Error::invalid("constants", "(file)", "not exact hexadecimal floats"))?;
        cfg = cfg.with_constants(c);
    }
    let new = certify(&task, &cfg)?;
    let mut claims = Vec::new();
    let mut claim = |name: &str, passed: bool, detail: String| {
        claims.push(Step {
            name: name.into(),
            passed,
            detail,
        })
    };
    claim(
        "verdict",
        file.verdict == new.verdict,
        format!("file {}, re-derived {}", file.verdict, new.verdict),
    );
    claim(
        "phase",
        file.phase == new.phase,
        format!("file {}, re-derived {}", file.phase, new.phase),
    );
    if file.verdict == ProofVerdict::Proved {
        match (file.risk_enclosure, new.risk_enclosure) {
            (Some([lo, hi]), Some([nlo, nhi])) => claim(
                "risk_enclosure",
                lo <= nlo && nhi <= hi,
                format!("file [{lo:e}, {hi:e}] contains re-derived [{nlo:e}, {nhi:e}]"),
            ),
            (f, n) => claim(
                "risk_enclosure",
                f.is_none(),
                format!("file {f:?}, re-derived {n:?}"),
            ),
        }
        if let (Some(m), Some(nm)) = (file.transverse_lower_bound, new.transverse_lower_bound) {
            claim(
                "transverse_lower_bound",
                nm >= m,
                format!("re-derived {nm:e} >= file {m:e}"),
            );
        } else {
            claim(
                "transverse_lower_bound",
                file.transverse_lower_bound.is_none() == new.transverse_lower_bound.is_none(),
                "present in both or in neither".into(),
            );
        }
        if let (Some(d), Some(nd)) = (file.distance_bound, new.distance_bound) {
            claim(
                "distance_bound",
                nd <= d,
                format!("re-derived {nd:e} <= file {d:e}"),
            );
        }
    }
    Ok(CheckReport {
        rederived: new,
        claims,
    })
}
