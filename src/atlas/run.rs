//! Running (a shard of) an atlas: one [`verify_theorem`] per instance, one JSON
//! line per result, appended as soon as the instance ends.
//!
//! Files in the output directory `DIR`:
//! - `spec.toml`: a copy of the SPEC (a rerun with another SPEC is refused);
//! - `results.jsonl` (whole grid) or `results.shard-I-of-N.jsonl` (`--shard I/N`):
//!   one [`ResultLine`] per finished instance (with the instance's proof,
//!   [`ProofSummary`], when the SPEC says `certify = true`);
//! - `counterexamples/<id>.W.npy`, `<id>.U.npy`: the weights of the lowest restart
//!   of every refuted instance (a restart below the prediction beyond tolerance
//!   where the prediction is the claim, or negative transverse curvature; on drawn
//!   latent sets a gap below the equiangular prediction is a measurement).
//!
//! Resume: every `results*.jsonl` of `DIR` is read first and the instances whose
//! `id` is there are skipped. A line is written with one `write` call and synced;
//! a line cut by a kill is dropped when the file is reopened, so a killed run
//! loses at most the instances in flight (`--jobs` of them).

use super::lock;
use super::proof::{self, ProofOutcome, ProofSummary};
use super::spec::{Instance, Spec};
use crate::error::{Error, Result};
use crate::npy::write_npy_f64;
use crate::task::TaskConfig;
use crate::verify::{verify_theorem, Theorem, TheoremReport, Verdict, VerifyConfig};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Where a result came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    /// `CARGO_PKG_VERSION` of the binary.
    pub crate_version: String,
    /// Git commit of the source tree, when known ([`git_commit`]).
    pub git_commit: Option<String>,
    /// Seconds since the Unix epoch when the instance started.
    pub started_unix: u64,
    /// Wall time of the instance in seconds.
    pub wall_seconds: f64,
}

/// Files of a counterexample, relative to the output directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Counterexample {
    /// `W`, shape `[n_w, d]`.
    pub w: String,
    /// `U`, shape `[K, L, d]` (`u_{j,l}` at `[j, l, :]`).
    pub u: String,
    /// `R` at these weights.
    pub risk: f64,
}

/// One line of `results*.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultLine {
    pub id: String,
    pub index: usize,
    pub instance: Instance,
    /// `None` when the instance could not be verified (see `error`).
    pub verdict: Option<Verdict>,
    pub error: Option<String>,
    pub predicted_risk: Option<f64>,
    pub best_risk: Option<f64>,
    /// `(R_pred - R_best) / max(1, |R_pred|)`: positive when a restart ended below the prediction.
    pub gap_below: Option<f64>,
    pub restarts: usize,
    pub restarts_converged: usize,
    pub restarts_reached: usize,
    /// Names of the checks that failed.
    pub failed_checks: Vec<String>,
    /// The report's `hypotheses` flag when it has one: `false` when the instance
    /// is outside the theorem's hypotheses (then a restart below the prediction
    /// is no counterexample).
    #[serde(default)]
    pub hypotheses: Option<bool>,
    pub counterexample: Option<Counterexample>,
    /// The proof of the prediction (`fcollapse certify`), when the SPEC asks for
    /// it; absent from the lines of a SPEC without `certify = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<ProofSummary>,
    pub provenance: Provenance,
    /// The whole report of [`verify_theorem`] (JSON), when there is one.
    pub report: Option<serde_json::Value>,
}

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out: PathBuf,
    /// `(I, N)`, `1 <= I <= N`: run the instances with `index % N == I - 1`.
    pub shard: Option<(usize, usize)>,
    /// Instances in flight at once.
    pub jobs: usize,
    /// One line per finished instance on stderr.
    pub progress: bool,
}

/// What [`run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Instances of this shard.
    pub in_shard: usize,
    /// Skipped because a result exists.
    pub skipped: usize,
    /// Run now.
    pub ran: usize,
    /// Results of this shard (old and new) by outcome.
    pub refuted: usize,
    pub inconclusive: usize,
    pub errors: usize,
    /// Results of this shard by proof outcome (all 0 without `certify = true`).
    pub proved: usize,
    pub unproved: usize,
    pub not_applicable: usize,
}

/// Parses `I/N` (`1 <= I <= N`).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::invalid("shard", s, "expected I/N with 1 <= I <= N, e.g. 2/8");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let i: usize = i.trim().parse().map_err(|_| bad())?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The results file of a shard (`None`: the whole grid).
pub fn results_path(dir: &Path, shard: Option<(usize, usize)>) -> PathBuf {
    match shard {
        None => dir.join("results.jsonl"),
        Some((i, n)) => dir.join(format!("results.shard-{i}-of-{n}.jsonl")),
    }
}

/// Every `results*.jsonl` file of `dir`, sorted by name.
pub fn result_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for e in entries {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("results") && name.ends_with(".jsonl") {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The complete lines of every results file of `dir` (a cut last line is ignored).
pub fn read_results(dir: &Path) -> Result<Vec<ResultLine>> {
    let mut out = Vec::new();
    for path in result_files(dir)? {
        let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        for line in text.split_inclusive('\n') {
            if !line.ends_with('\n') || line.trim().is_empty() {
                continue;
            }
            let r: ResultLine = serde_json::from_str(line.trim_end()).map_err(|e| {
                Error::invalid(
                    "results",
                    path.display(),
                    format!("not a result line ({e})"),
                )
            })?;
            out.push(r);
        }
    }
    Ok(out)
}

/// The source commit: `FCOLLAPSE_GIT_COMMIT` if set, else `git rev-parse HEAD`
/// in the current directory when it is a checkout of this crate (its top level
/// holds a `Cargo.toml` naming `feature-collapse`), with `+dirty` when tracked
/// files differ from it; `None` otherwise.
pub fn git_commit() -> Option<String> {
    if let Ok(c) = std::env::var("FCOLLAPSE_GIT_COMMIT") {
        return Some(c);
    }
    let git = |args: &[&str]| -> Option<String> {
        let o = std::process::Command::new("git").args(args).output().ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let manifest = fs::read_to_string(Path::new(&top).join("Cargo.toml")).ok()?;
    if !manifest.contains("name = \"feature-collapse\"") {
        return None;
    }
    let head = git(&["rev-parse", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])?;
    Some(if dirty.is_empty() {
        head
    } else {
        format!("{head}+dirty")
    })
}

/// Opens `path` for appending, first dropping a last line cut by a kill.
fn open_append(path: &Path) -> Result<File> {
    let mut f = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut text = Vec::new();
    f.read_to_end(&mut text).map_err(|e| Error::io(path, e))?;
    if !text.is_empty() && text.last() != Some(&b'\n') {
        let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        f.set_len(keep as u64).map_err(|e| Error::io(path, e))?;
        f.seek(SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
    }
    Ok(f)
}

/// Compares `DIR/spec.toml` with `spec_text`: `Ok(true)` if it is the same,
/// `Ok(false)` if there is none; a different or unreadable copy is refused
/// (never overwritten).
fn check_spec_copy(dir: &Path, spec_text: &str) -> Result<bool> {
    let copy = dir.join("spec.toml");
    match fs::read_to_string(&copy) {
        Ok(old) if old == spec_text => Ok(true),
        Ok(_) => Err(Error::invalid(
            "out",
            dir.display(),
            "holds the results of another SPEC (its spec.toml differs); use a new --out",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::invalid(
            "out",
            dir.display(),
            format!("its spec.toml cannot be read ({e}); refusing to overwrite it"),
        )),
    }
}

/// Runs the instances of `spec` in the shard that have no result in `opts.out`
/// yet. `spec_text` (the SPEC source) is copied to `DIR/spec.toml`; a different
/// existing copy is refused (exit 2) before anything runs.
pub fn run(spec: &Spec, spec_text: &str, opts: &RunOptions) -> Result<RunSummary> {
    if opts.jobs == 0 {
        return Err(Error::invalid("jobs", 0, "must be >= 1"));
    }
    if spec.certify && !cfg!(feature = "certify") {
        return Err(super::values::bad("certify", proof::UNAVAILABLE));
    }
    let dir = &opts.out;
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // One run at a time per directory: a second one with the same SPEC waits and
    // then skips what the first finished; one with another SPEC is refused.
    let _lock = match lock::try_lock(dir)? {
        Some(l) => l,
        None => {
            check_spec_copy(dir, spec_text)?;
            if opts.progress {
                eprintln!("waiting for the other run of {} to end ...", dir.display());
            }
            lock::lock(dir)?
        }
    };
    if !check_spec_copy(dir, spec_text)? {
        crate::npy::write_atomic(&dir.join("spec.toml"), spec_text.as_bytes())?;
    }
    // Verdicts (`None`: an error line) and proof outcomes of the results already
    // there, by id; the lines written now are added as they are written.
    type Outcome = (Option<Verdict>, Option<ProofOutcome>);
    let outcome_of =
        |r: &ResultLine| -> Outcome { (r.verdict, r.certificate.as_ref().map(|c| c.verdict)) };
    let outcome: Mutex<HashMap<String, Outcome>> = Mutex::new(
        read_results(dir)?
            .into_iter()
            .map(|r| (r.id.clone(), outcome_of(&r)))
            .collect(),
    );
    let done: HashSet<String> = outcome.lock().expect("lock").keys().cloned().collect();
    let shard: Vec<&Instance> = spec
        .instances
        .iter()
        .filter(|i| opts.shard.is_none_or(|(k, n)| i.index % n == k - 1))
        .collect();
    let todo: Vec<&Instance> = shard
        .iter()
        .copied()
        .filter(|i| !done.contains(&i.id))
        .collect();
    let path = results_path(dir, opts.shard);
    let file = Mutex::new(open_append(&path)?);
    let commit = git_commit();
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.min(todo.len().max(1)) {
            s.spawn(|| loop {
                if failure.lock().expect("lock").is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(inst) = todo.get(i) else { return };
                let line = run_one(spec, inst, dir, commit.clone());
                let written = line.and_then(|line| {
                    let mut text = serde_json::to_string(&line)?;
                    text.push('\n');
                    let mut f = file.lock().expect("lock");
                    f.write_all(text.as_bytes())
                        .and_then(|_| f.sync_data())
                        .map_err(|e| Error::io(&path, e))?;
                    Ok(line)
                });
                match written {
                    Ok(line) => {
                        outcome
                            .lock()
                            .expect("lock")
                            .insert(line.id.clone(), outcome_of(&line));
                        let n = finished.fetch_add(1, Ordering::SeqCst) + 1;
                        if opts.progress {
                            eprintln!(
                                "[{n}/{}] {} theorem {} {}: {}{} ({:.1} s)",
                                todo.len(),
                                line.id,
                                line.instance.theorem,
                                short_instance(&line.instance.task),
                                line.verdict.map_or("error", |v| v.name()),
                                line.certificate
                                    .as_ref()
                                    .map_or(String::new(), |c| format!(", {}", c.verdict)),
                                line.provenance.wall_seconds
                            );
                        }
                    }
                    Err(e) => {
                        *failure.lock().expect("lock") = Some(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("lock") {
        return Err(e);
    }
    let outcome = outcome.into_inner().expect("lock");
    let in_shard: Vec<Outcome> = shard
        .iter()
        .filter_map(|i| outcome.get(&i.id).copied())
        .collect();
    let count = |f: &dyn Fn(&Outcome) -> bool| in_shard.iter().filter(|v| f(v)).count();
    Ok(RunSummary {
        in_shard: shard.len(),
        skipped: shard.len() - todo.len(),
        ran: todo.len(),
        refuted: count(&|v| v.0 == Some(Verdict::Refuted)),
        inconclusive: count(&|v| v.0 == Some(Verdict::Inconclusive)),
        errors: count(&|v| v.0.is_none()),
        proved: count(&|v| v.1 == Some(ProofOutcome::Proved)),
        unproved: count(&|v| v.1 == Some(ProofOutcome::Unproved)),
        not_applicable: count(&|v| v.1 == Some(ProofOutcome::NotApplicable)),
    })
}

/// `n_c/s_c/L/d` and the rest in a few words.
pub fn short_instance(t: &TaskConfig) -> String {
    format!(
        "n_c={} s_c={} L={} d={} K={} {} {} lW={:.3e} lU={:.3e}",
        t.n_c,
        t.s_c,
        t.len,
        t.dim,
        t.classes.map_or("full".to_string(), |k| k.to_string()),
        match t.freq {
            crate::task::Freq::Uniform => "uniform".to_string(),
            crate::task::Freq::Zipf { exponent } => format!("zipf({exponent})"),
        },
        match t.resolved_norm() {
            Ok(crate::norm::Norm::None) => "noLN".to_string(),
            Ok(crate::norm::Norm::Layer { eps }) => format!("LN(eps={eps})"),
            Ok(n) => n.to_string(),
            Err(_) => "norm?".to_string(),
        },
        t.lambda_w,
        t.lambda_u
    )
}

/// Verifies one instance, then proves its prediction when the SPEC asks for it;
/// a verification that cannot run is a line with `error`.
fn run_one(spec: &Spec, inst: &Instance, dir: &Path, commit: Option<String>) -> Result<ResultLine> {
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cfg = VerifyConfig {
        restarts: inst.restarts,
        seed: inst.seed,
        grad_tol: spec.grad_tol,
        max_iters: spec.max_iters,
        budget: spec.budget,
        ..VerifyConfig::default()
    };
    let outcome = Theorem::from_number(inst.theorem).and_then(|t| {
        let task = inst.task.build()?;
        verify_theorem(t, &task, &cfg, |_| {})
    });
    let mut line = ResultLine {
        id: inst.id.clone(),
        index: inst.index,
        instance: inst.clone(),
        verdict: None,
        error: None,
        predicted_risk: None,
        best_risk: None,
        gap_below: None,
        restarts: inst.restarts,
        restarts_converged: 0,
        restarts_reached: 0,
        failed_checks: Vec::new(),
        hypotheses: None,
        counterexample: None,
        certificate: None,
        provenance: Provenance {
            crate_version: crate::VERSION.to_string(),
            git_commit: commit,
            started_unix,
            wall_seconds: 0.0,
        },
        report: None,
    };
    match outcome {
        Err(e) => line.error = Some(e.report()),
        Ok(rep) => {
            let gap = rep
                .predicted_risk
                .map(|p| (p - rep.best_risk) / p.abs().max(1.0));
            line.verdict = Some(rep.verdict);
            line.predicted_risk = rep.predicted_risk;
            line.best_risk = Some(rep.best_risk);
            line.gap_below = gap;
            line.restarts_converged = rep.restarts.iter().filter(|r| r.converged).count();
            line.restarts_reached = rep.restarts.iter().filter(|r| r.reached_prediction).count();
            line.failed_checks = rep
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.name.clone())
                .collect();
            let value = serde_json::to_value(&rep)?;
            line.hypotheses = value.get("hypotheses").and_then(|h| h.as_bool());
            // A counterexample is what the verdict rules call a refutation
            // (a restart below the prediction beyond tolerance, or negative
            // transverse curvature), inside the theorem's hypotheses.
            if rep.verdict == Verdict::Refuted {
                line.counterexample = Some(save_counterexample(&rep, inst, dir)?);
            }
            line.report = Some(value);
        }
    }
    if spec.certify {
        // (a task that does not build is the line's `error` already)
        if let Ok(task) = inst.task.build() {
            line.certificate = Some(proof::prove(&task, spec.certify_max_rows));
        }
    }
    line.provenance.wall_seconds = started.elapsed().as_secs_f64();
    Ok(line)
}

/// Writes the weights behind the refutation as `.npy`: the report's first
/// witness (the point the re-checked evidence is about), else the lowest restart.
fn save_counterexample(rep: &TheoremReport, inst: &Instance, dir: &Path) -> Result<Counterexample> {
    let t = &rep.task;
    let p = match rep.witness_params.first() {
        Some(wp) => wp.params.clone(),
        None => {
            let best = rep
                .restarts
                .iter()
                .min_by(|a, b| a.risk.total_cmp(&b.risk))
                .ok_or_else(|| Error::Optimiser("no restart".into()))?;
            crate::network::Params::zeros(t).with_flat(&best.params)
        }
    };
    let risk = crate::limit::risk(t, &p);
    let sub = dir.join("counterexamples");
    fs::create_dir_all(&sub).map_err(|e| Error::io(&sub, e))?;
    let w_rel = format!("counterexamples/{}.W.npy", inst.id);
    let u_rel = format!("counterexamples/{}.U.npy", inst.id);
    write_npy_f64(&dir.join(&w_rel), &[t.n_w(), t.dim()], &p.w)?;
    write_npy_f64(&dir.join(&u_rel), &[t.k(), t.len(), t.dim()], &p.u)?;
    Ok(Counterexample {
        w: w_rel,
        u: u_rel,
        risk,
    })
}
