//! `fcollapse verify`: the theorem checks on the exact limit risk.
//!
//! Exit codes (decided here, from the verdicts): 0 every theorem confirmed,
//! 1 some theorem refuted, 4 none refuted but some inconclusive; 2 bad input,
//! 3 run-time failure.
//!
//! `--certify` appends to each theorem's report the certificate of `fcollapse
//! certify` for the same instance and candidate (text: its steps, enclosure and
//! verdict; `--json`: a `certificate` object in the report's line). The proof's
//! verdict is reported, in the report and in a closing `PROOFS: P of N proved`
//! line, and leaves the exit code alone: it is the verdicts' code above (a theorem
//! confirmed but unproved exits 0; `fcollapse certify` is the command whose exit
//! code is the proof's, 0 proved or 4 unproved). `--certify` needs the `certify`
//! feature: without it, it is a bad-input error (exit 2) before anything runs;
//! an instance `certify` does not cover (a drawn latent set, one too large) is
//! too.

use super::predict::print_prediction_line;
use super::TaskArgs;
use crate::display::fixed;
use crate::error::Result;
use crate::limit;
use crate::verify::{self, OnFail, Theorem, TheoremReport, Verdict, VerifyConfig};
use crate::Versioned;
use clap::{Args, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;

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

impl TheoremArg {
    /// The theorems this choice names (`all`: 1, 2, 3).
    pub fn theorems(self) -> Vec<Theorem> {
        match self {
            TheoremArg::One => vec![Theorem::One],
            TheoremArg::Two => vec![Theorem::Two],
            TheoremArg::Three => vec![Theorem::Three],
            TheoremArg::All => Theorem::ALL.to_vec(),
        }
    }
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
    /// Iteration cap of one restart (hitting it means the restart did not converge).
    #[arg(long, default_value_t = 5000)]
    pub max_iters: u64,
    /// Work budget of one exact risk evaluation (operations).
    #[arg(long, default_value_t = limit::DEFAULT_WORK_BUDGET)]
    pub budget: f64,
    /// Skip the Hessian (for instances with many parameters).
    #[arg(long)]
    pub no_hessian: bool,
    /// Also locate the critical weight decay by bisection on the exact problem.
    #[arg(long)]
    pub bisect: bool,
    /// Check a deliberately wrong candidate: the predicted classifier norm b times
    /// this factor (a test of the verifier: anything but 1 must be refuted).
    #[arg(long, default_value_t = 1.0)]
    pub candidate_scale: f64,
    /// Folder for the weights that refute a claim (.npy, written only on `refuted`).
    #[arg(long, default_value = "verify-witnesses")]
    pub witness_dir: PathBuf,
    /// One JSON object per theorem, one per line, on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also prove each prediction in interval arithmetic and append the
    /// certificate to the report (as `fcollapse certify`; exit code unchanged;
    /// needs the `certify` feature).
    #[arg(long)]
    pub certify: bool,
}

/// Process exit code of a set of verdicts: 1 if any is refuted, else 4 if any
/// is inconclusive, else 0.
pub fn exit_code(verdicts: &[Verdict]) -> i32 {
    match verdicts.iter().fold(Verdict::Confirmed, |a, &v| a.worst(v)) {
        Verdict::Confirmed => 0,
        Verdict::Refuted => 1,
        Verdict::Inconclusive => 4,
    }
}

pub(super) fn run(a: &VerifyArgs) -> Result<i32> {
    let theorems = a.theorem.theorems();
    let cfg = VerifyConfig {
        restarts: a.restarts,
        grad_tol: a.grad_tol,
        max_iters: a.max_iters,
        budget: a.budget,
        hessian: !a.no_hessian,
        bisect: a.bisect,
        candidate_scale: a.candidate_scale,
        seed: a.task.seed.unwrap_or(0),
        ..VerifyConfig::default()
    };
    cfg.validate()?;
    let proofs = Proofs::new(a)?;
    // Validate every instance before running anything.
    let mut jobs = Vec::new();
    for &t in &theorems {
        let task = a.task.apply(t.default_task(), 0.0)?.build()?;
        t.outside(&task)?;
        limit::check_budget(&task, cfg.budget)?;
        proofs.check(&task)?;
        jobs.push((t, task));
    }
    let mut proved = Vec::new();
    let show_progress = !a.json && std::io::stderr().is_terminal();
    let mut verdicts = Vec::new();
    for (t, task) in jobs {
        let mut report = verify::verify_theorem(t, &task, &cfg, |stage| {
            if show_progress {
                eprintln!("  theorem {}: {stage} ...", t.number());
            }
        })?;
        if report.verdict == Verdict::Refuted {
            // The report is the result: a folder that cannot be written loses
            // the weights (said on stderr), never the report.
            if let Err(e) = verify::write_witnesses(&mut report, &a.witness_dir) {
                eprintln!(
                    "warning: --witness-dir: the refuting weights could not be saved: {}",
                    e.report()
                );
            }
        }
        verdicts.push(report.verdict);
        match proofs.prove(&task)? {
            None if a.json => println!("{}", serde_json::to_string(&Versioned::new(&report))?),
            None => print_report(&report),
            Some(cert) => {
                proved.push(cert.proved());
                if a.json {
                    println!("{}", cert.json_line(&report)?);
                } else {
                    print_report(&report);
                    cert.print();
                }
            }
        }
    }
    let code = exit_code(&verdicts);
    if !a.json {
        println!(
            "{}",
            match code {
                0 => "ALL CONFIRMED",
                1 => "SOME CLAIM REFUTED",
                _ => "SOME INCONCLUSIVE",
            }
        );
        if a.certify {
            println!(
                "PROOFS: {} of {} proved",
                proved.iter().filter(|p| **p).count(),
                proved.len()
            );
        }
    }
    Ok(code)
}

/// `--certify`: the proof of each instance's prediction, or nothing.
struct Proofs {
    #[cfg(feature = "certify")]
    cfg: Option<crate::certify::CertifyConfig>,
}

#[cfg(feature = "certify")]
impl Proofs {
    fn new(a: &VerifyArgs) -> Result<Self> {
        use crate::certify::{Candidate, CertifyConfig};
        Ok(Proofs {
            cfg: a
                .certify
                .then(|| CertifyConfig::new(Candidate::Predicted, a.candidate_scale))
                .transpose()?,
        })
    }

    /// Refuses (bad input) an instance `certify` does not cover.
    fn check(&self, task: &crate::task::Task) -> Result<()> {
        match self.cfg {
            Some(_) => crate::certify::check_instance(task),
            None => Ok(()),
        }
    }

    fn prove(&self, task: &crate::task::Task) -> Result<Option<Proof>> {
        self.cfg
            .as_ref()
            .map(|cfg| crate::certify::certify(task, cfg).map(Proof))
            .transpose()
    }
}

#[cfg(not(feature = "certify"))]
impl Proofs {
    fn new(a: &VerifyArgs) -> Result<Self> {
        if a.certify {
            return Err(crate::error::Error::invalid(
                "certify",
                "--certify",
                "this fcollapse was built without the `certify` feature; rebuild with \
                 `cargo build --release --features certify` (needs the m4 package, see docs/certificate.md)",
            ));
        }
        Ok(Proofs {})
    }

    fn check(&self, _task: &crate::task::Task) -> Result<()> {
        Ok(())
    }

    fn prove(&self, _task: &crate::task::Task) -> Result<Option<Proof>> {
        Ok(None)
    }
}

/// One certificate, appended to its theorem's report.
#[cfg(feature = "certify")]
struct Proof(crate::certify::Certificate);

#[cfg(not(feature = "certify"))]
enum Proof {}

#[cfg(feature = "certify")]
impl Proof {
    fn proved(&self) -> bool {
        self.0.verdict == crate::certify::ProofVerdict::Proved
    }

    fn print(&self) {
        super::certify::print_certificate(&self.0);
    }

    /// The report's JSON line with a `certificate` object after its fields.
    fn json_line(&self, report: &TheoremReport) -> Result<String> {
        #[derive(serde::Serialize)]
        struct WithCertificate<'a> {
            #[serde(flatten)]
            report: &'a TheoremReport,
            certificate: &'a crate::certify::Certificate,
        }
        Ok(serde_json::to_string(&Versioned::new(&WithCertificate {
            report,
            certificate: &self.0,
        }))?)
    }
}

#[cfg(not(feature = "certify"))]
impl Proof {
    fn proved(&self) -> bool {
        match *self {}
    }

    fn print(&self) {
        match *self {}
    }

    fn json_line(&self, _report: &TheoremReport) -> Result<String> {
        match *self {}
    }
}

fn print_report(r: &TheoremReport) {
    println!("Theorem {}: {}", r.theorem, r.statement);
    println!("  instance   {} ({} parameters)", r.task, r.n_params);
    if !r.hypotheses {
        for o in &r.outside {
            println!("  outside    {o}");
        }
    }
    match r.lambda_critical {
        Some(l) => println!(
            "  phase      {} (sqrt(lambda_W lambda_U) = {} vs lambda_critical = {l:.9}{})",
            r.phase,
            fixed(r.task.lambda_geo(), 6),
            r.lambda_critical_bisection
                .map(|b| format!(", bisection {b:.9}"))
                .unwrap_or_default()
        ),
        None => println!(
            "  phase      {} (LayerNorm: the phase never changes)",
            r.phase
        ),
    }
    if let Some(p) = &r.prediction {
        print_prediction_line(p);
    }
    if let Some(h) = &r.hessian {
        println!(
            "  Hessian    eigenvalues in [{:.3e}, {:.3e}], {} near zero, symmetry orbit dim {}, transverse min {:.3e}",
            h.min_eig, h.max_eig, h.near_zero, h.symmetry_dim, h.transverse_min_eig
        );
    }
    let reached = r.restarts.iter().filter(|x| x.reached_prediction).count();
    let mut iters: Vec<u64> = r.restarts.iter().map(|x| x.iterations).collect();
    iters.sort_unstable();
    let evals: u64 = r.restarts.iter().map(|x| x.evaluations).sum();
    let saddles: usize = r.restarts.iter().map(|x| x.saddles).sum();
    println!(
        "  restarts   {} runs, {} reached the prediction, best R = {}, median {} L-BFGS iterations, {} exact evaluations, {} saddles escaped",
        r.restarts.len(),
        reached,
        fixed(r.best_risk, 15),
        iters[iters.len() / 2],
        evals,
        saddles
    );
    println!(
        "  spread     max over restarts of ||Phi - M|| / ||Phi|| = {:.3e}",
        r.within_concept_spread
    );
    if !r.checks.is_empty() {
        println!(
            "  {:<74} {:>11}  {:<10} result",
            "check", "value", "criterion"
        );
    }
    for c in &r.checks {
        println!(
            "  {:<74} {:>11.3e}  {:<10} {}",
            c.name,
            c.value,
            c.criterion,
            match (c.passed, c.on_fail) {
                (true, _) => "pass",
                (false, OnFail::Refutes) => "FAIL (refutes)",
                (false, OnFail::Undecided) => "FAIL (undecided)",
            }
        );
    }
    for m in &r.measurements {
        println!("  measured   {:<70} {:>11.4e}  {}", m.name, m.value, m.note);
    }
    println!("  verdict    {} ({:.1} s)", r.verdict, r.seconds);
    for why in &r.reasons {
        println!("    because  {why}");
    }
    for w in &r.witnesses {
        println!("    witness  {w}");
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_worst_verdict() {
        use Verdict::*;
        assert_eq!(exit_code(&[Confirmed, Confirmed]), 0);
        assert_eq!(exit_code(&[Confirmed, Inconclusive]), 4);
        assert_eq!(exit_code(&[Inconclusive, Refuted, Confirmed]), 1);
    }
}
