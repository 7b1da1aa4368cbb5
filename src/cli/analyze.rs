//! `fcollapse analyze`: collapse measures of weights trained anywhere.

use super::predict::{print_phase_line, print_prediction_line};
use super::TaskArgs;
use crate::analyze::{self, Analysis, AnalyzeConfig};
use crate::collapse::{self, Phase};
use crate::error::{Error, Result};
use crate::limit;
use crate::npy::{self, NpyArray};
use crate::spectrum;
use crate::task::{short, Task, TaskConfig};
use crate::Versioned;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Embedding weight W, shaped (n_w, d) (a PyTorch nn.Embedding weight): .npy or ARCHIVE.npz (ARCHIVE.npz:NAME for one of several arrays), float32/64, C or Fortran order.
    #[arg(long, value_name = "W.npy")]
    pub w: PathBuf,
    /// Classifier weight U, shaped (K, L*d) (an nn.Linear weight) or (K, L, d).
    #[arg(long, value_name = "U.npy")]
    pub u: PathBuf,
    /// Latent variables z_k, a (K, L) integer array with entries in 0..n_c (default: the task's, e.g. the full latent set).
    #[arg(long, value_name = "Z.npy")]
    pub z: Option<PathBuf>,
    /// The task as JSON: a task object (`summary.json` of `fcollapse train` or `Task.to_json()` in Python, whose `z` is used) or a file with such an object under "task". Instance flags override it.
    #[arg(long = "task", value_name = "task.json")]
    pub task_file: Option<PathBuf>,
    #[command(flatten)]
    pub task: TaskArgs,
    /// Work budget of the exact limit risk (operations); over it, the risk is sampled.
    #[arg(long, default_value_t = limit::DEFAULT_WORK_BUDGET)]
    pub budget: f64,
    /// Sentences drawn in all when the limit risk is sampled.
    #[arg(long, default_value_t = 20_000)]
    pub samples: usize,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Draw the figures (PCA of W and U, norms per rank) into DIR.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    #[command(flatten)]
    pub hessian: HessianArgs,
}

/// `analyze --hessian`: the spectrum of the Hessian of the exact limit risk.
#[derive(Debug, Args)]
pub struct HessianArgs {
    /// Also report the Hessian spectrum of the exact limit risk at the weights: top eigenvalues (Lanczos), trace (Hutchinson), spectral density (stochastic Lanczos quadrature; figure with --plots). Needs the exact enumeration (--budget).
    #[arg(long)]
    pub hessian: bool,
    /// Number of largest Hessian eigenvalues.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Rademacher probes of the Hutchinson trace estimate (>= 2; seeded by --seed).
    #[arg(long, default_value_t = 100)]
    pub hutchinson_probes: usize,
    /// Probes of the stochastic Lanczos quadrature (seeded by --seed).
    #[arg(long, default_value_t = 10)]
    pub slq_probes: usize,
    /// Lanczos steps per SLQ probe.
    #[arg(long, default_value_t = 60)]
    pub slq_steps: usize,
    /// Gaussian broadening of the density, relative to the range of the Ritz values.
    #[arg(long, default_value_t = 0.01)]
    pub slq_sigma: f64,
}

impl HessianArgs {
    /// The spectrum settings, seeded by `seed`.
    pub fn config(&self, seed: u64) -> crate::spectrum::SpectrumConfig {
        crate::spectrum::SpectrumConfig {
            top_k: self.top_k,
            hutchinson_probes: self.hutchinson_probes,
            slq_probes: self.slq_probes,
            slq_steps: self.slq_steps,
            slq_sigma: self.slq_sigma,
            seed,
            ..Default::default()
        }
    }
}

/// Reads an array; a file that is not a supported array is bad input (exit 2).
/// The header is checked first (dtype, and at most 2^28 elements: far more
/// than any instance the limit risk can handle), so that a mistyped or huge
/// array is refused before its data is read or inflated.
fn read(name: &'static str, path: &Path, expected: &str) -> Result<NpyArray> {
    let want_int = name == "z";
    let check = |h: &npy::NpyHeader| -> std::result::Result<(), String> {
        let ok_kind = if want_int {
            matches!(h.kind, 'i' | 'u')
        } else {
            h.kind == 'f'
        };
        if !ok_kind {
            return Err(format!("dtype '{}'", h.descr));
        }
        if h.elements > 1 << 28 {
            return Err(format!(
                "{} elements, over the 2^28 that --{name} may hold",
                h.elements
            ));
        }
        Ok(())
    };
    npy::read_array_checked(path, check).map_err(|e| match e {
        Error::Io { path, source }
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory
            ) =>
        {
            Error::input_file(name, &path, source)
        }
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
            Error::invalid(
                name,
                path.display(),
                format!("{source}; expected {expected}"),
            )
        }
        other => other,
    })
}

/// The task settings from `--task FILE`: a task object or `{"task": {...}}`; its
/// `z` (with `k`) become explicit latent variables.
fn task_from_json(path: &Path) -> Result<TaskConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::input_file("task", path, e))?;
    let bad = |why: String| Error::invalid("task", path.display(), why);
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let obj = match v.get("task") {
        Some(inner) if inner.is_object() => inner.clone(),
        _ => v,
    };
    if let Some(map) = obj.as_object() {
        if let Some(key) = map.keys().find(|k| !TASK_KEYS.contains(&k.as_str())) {
            return Err(bad(format!(
                "unknown key `{key}` (a task has {})",
                TASK_KEYS.join(", ")
            )));
        }
    }
    let mut cfg: TaskConfig =
        serde_json::from_value(obj.clone()).map_err(|e| bad(format!("not a task: {e}")))?;
    if cfg.latent.is_none() {
        if let Some(z) = obj.get("z") {
            let z: Vec<usize> = serde_json::from_value(z.clone())
                .map_err(|e| bad(format!("`z` is not a list of concepts: {e}")))?;
            let len = cfg.len.max(1);
            if z.is_empty() || !z.len().is_multiple_of(len) {
                return Err(bad(format!(
                    "`z` has {} entries, not K x L with L = {len} and K >= 1",
                    z.len()
                )));
            }
            let k = z.len() / len;
            if let Some(stated) = obj.get("k").and_then(|v| v.as_u64()) {
                if stated != k as u64 {
                    return Err(bad(format!(
                        "`k` = {stated} but `z` holds {k} rows of L = {len}"
                    )));
                }
            }
            if let Some(pair) = crate::task::repeated_rows(&z, len) {
                return Err(crate::task::repeated_rows_error(
                    "task",
                    path.display(),
                    &z,
                    len,
                    pair,
                ));
            }
            cfg.classes = Some(k);
            cfg.latent = Some(z);
        }
    }
    Ok(cfg)
}

/// The keys of a task object: those of the settings ([`TaskConfig`]) and those a
/// built [`Task`] adds when written (`n_w`, `k`, `full_latent`, `mu`, `z`).
const TASK_KEYS: [&str; 18] = [
    "n_c",
    "s_c",
    "len",
    "dim",
    "classes",
    "freq",
    "layer_norm",
    "norm",
    "lambda_w",
    "lambda_u",
    "lambda_affine",
    "seed",
    "latent",
    "n_w",
    "k",
    "full_latent",
    "mu",
    "z",
];

/// The task settings inferred from the weights: `d` from `W`, `L` from `U`,
/// `s_c = n_w / n_c` (`--nc` required).
fn task_from_shapes(a: &AnalyzeArgs, w: &NpyArray, u: &NpyArray) -> Result<TaskConfig> {
    let n_c = a.task.nc.ok_or_else(|| {
        Error::invalid(
            "nc",
            "none",
            "give --nc (the number of concepts) or --task task.json",
        )
    })?;
    let mut c = TaskConfig {
        n_c,
        ..TaskConfig::default()
    };
    if let [n_w, d] = w.shape[..] {
        c.dim = d;
        if n_c >= 2 && a.task.sc.is_none() && a.task.nw.is_none() {
            if n_w % n_c != 0 {
                return Err(Error::invalid(
                    "nc",
                    n_c,
                    format!(
                        "{} has n_w = {n_w} rows, not a multiple of n_c",
                        a.w.display()
                    ),
                ));
            }
            c.s_c = n_w / n_c;
        }
    }
    match u.shape[..] {
        [_, ld] if c.dim > 0 && ld % c.dim == 0 => c.len = ld / c.dim,
        [_, l, _] => c.len = l,
        _ => {}
    }
    // K is U's row count: the full latent set when it has n_c^L rows, else a draw.
    if let Some(&k) = u.shape.first() {
        let full = u32::try_from(c.len).ok().and_then(|l| n_c.checked_pow(l));
        c.classes = (full != Some(k)).then_some(k);
    }
    Ok(c)
}

/// The settings of the task that no flag and no `--task` file gave, as
/// `setting = value (assumed: ...; pass --flag)`.
fn assumed_settings(a: &AnalyzeArgs, task: &Task) -> Vec<String> {
    if a.task_file.is_some() {
        return Vec::new();
    }
    let t = &a.task;
    let mut out = Vec::new();
    let (w_given, u_given) = (
        t.lambda.is_some() || t.lambda_w.is_some(),
        t.lambda.is_some() || t.lambda_u.is_some(),
    );
    match (w_given, u_given) {
        (false, false) if task.lambda_w() == task.lambda_u() => out.push(format!(
            "lambda = {} (assumed: default; pass --lambda)",
            short(task.lambda_w())
        )),
        _ => {
            if !w_given {
                out.push(format!(
                    "lambda_w = {} (assumed: default; pass --lambda-w)",
                    short(task.lambda_w())
                ));
            }
            if !u_given {
                out.push(format!(
                    "lambda_u = {} (assumed: default; pass --lambda-u)",
                    short(task.lambda_u())
                ));
            }
        }
    }
    if t.freq.is_none() && t.zipf_exponent.is_none() {
        out.push(format!(
            "freq = {} (assumed: default; pass --freq)",
            task.freq()
        ));
    }
    if !t.layer_norm && t.eps.is_none() && t.norm.is_none() {
        out.push("no LayerNorm (assumed: default; pass --layer-norm)".into());
    }
    if a.z.is_none() && !task.full_latent() {
        out.push(format!(
            "z = {} latent variables drawn with seed {} (assumed; pass --z Z.npy or --task)",
            task.k(),
            task.seed()
        ));
    }
    out
}

/// A warning when the weight decay was assumed and the phase it predicts
/// disagrees with the weights: the trivial phase (minimiser `W = U = 0`) for
/// weights whose mean norms multiply to `|w| |u| >= 1e-3`, or the collapsed
/// phase for weights with `|w| |u| < 1e-9`.
fn phase_warning(assumed: &[String], task: &Task, r: &Analysis) -> Option<String> {
    if !assumed.iter().any(|s| s.starts_with("lambda")) {
        return None;
    }
    let size = r.metrics.word_norm_mean * r.metrics.u_norm_mean;
    let phase = collapse::predicted_phase(task);
    let disagrees = match phase {
        Phase::Trivial => size >= 1e-3,
        Phase::Collapsed => size < 1e-9,
    };
    disagrees.then(|| {
        format!(
            "warning: the assumed weight decay (lambda_W = {}, lambda_U = {}) predicts the {phase} phase, but the weights have mean norms |w| |u| = {size:.3e}; pass the weight decay of the training (--lambda)",
            short(task.lambda_w()),
            short(task.lambda_u())
        )
    })
}

/// The task and weights the flags describe.
pub fn load(a: &AnalyzeArgs) -> Result<(Task, crate::network::Params)> {
    let w_arr = read("w", &a.w, "a float array (n_w, d)")?;
    let u_arr = read("u", &a.u, "a float array (K, L*d) or (K, L, d)")?;
    let base = match &a.task_file {
        Some(p) => task_from_json(p)?,
        None => task_from_shapes(a, &w_arr, &u_arr)?,
    };
    let mut cfg = a.task.apply(base, 1e-5)?;
    if let Some(zp) = &a.z {
        let origin = zp.display().to_string();
        let expected = format!("an integer array (K, L) = (K, {})", cfg.len);
        let z_arr = read("z", zp, &expected)?;
        let z = analyze::latent_from_array(&origin, &z_arr, cfg.n_c, cfg.len)?;
        cfg.classes = Some(z.len() / cfg.len);
        cfg.latent = Some(z);
    }
    let task = cfg.build()?;
    let w_origin = a.w.display().to_string();
    let u_origin = a.u.display().to_string();
    let w = analyze::float_values("w", &w_origin, &w_arr, "(n_w, d)")?;
    let u = analyze::float_values("u", &u_origin, &u_arr, "(K, L*d)")?;
    let p = analyze::params_from_arrays(
        &task,
        (&w_arr.shape, w, &w_origin),
        (&u_arr.shape, u, &u_origin),
    )?;
    Ok((task, p))
}

pub(super) fn run(a: &AnalyzeArgs) -> Result<i32> {
    let cfg = AnalyzeConfig {
        budget: a.budget,
        samples: a.samples,
        seed: a.task.seed.unwrap_or(0),
    };
    cfg.validate()?;
    let spectrum_cfg = a.hessian.config(cfg.seed);
    if a.hessian.hessian {
        spectrum_cfg.validate()?;
    }
    let (task, p) = load(a)?;
    let report = analyze::analyze(&task, &p, &cfg)?;
    let hessian = match a.hessian.hessian {
        true => Some(spectrum::hessian_spectrum(
            &task,
            &p,
            &spectrum_cfg,
            a.budget,
        )?),
        false => None,
    };
    let mut figures = match &a.plots {
        Some(dir) => analyze::figures(&task, &p, &report, dir)?,
        None => Vec::new(),
    };
    if let (Some(dir), Some(h)) = (&a.plots, &hessian) {
        figures.push(spectrum::density_figure(h, &dir.join("analyze_hessian"))?);
    }
    let assumed = assumed_settings(a, &task);
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["hessian"] = serde_json::to_value(&hessian)?;
        v["figures"] = serde_json::to_value(&figures)?;
        v["phase"] = serde_json::to_value(collapse::predicted_phase(&task))?;
        v["lambda_critical"] = serde_json::to_value(collapse::lambda_critical(&task))?;
        v["assumed"] = serde_json::to_value(&assumed)?;
        println!("{}", serde_json::to_string(&Versioned::new(&v))?);
    } else {
        print_report(a, &report, &figures);
        print_phase_line(&task);
        for s in &assumed {
            println!("assumed    {s}");
        }
        if let Some(h) = &hessian {
            println!("{h}");
        }
    }
    if let Some(w) = phase_warning(&assumed, &task, &report) {
        eprintln!("{w}");
    }
    Ok(0)
}

fn print_report(a: &AnalyzeArgs, r: &Analysis, figures: &[PathBuf]) {
    let m = &r.metrics;
    println!("task       {}", r.task);
    println!("weights    W {}  U {}", a.w.display(), a.u.display());
    println!(
        "collapse   within-concept spread ||Phi - M||/||Phi|| = {:.3e}",
        r.within_concept_spread
    );
    println!(
        "  W        spread ratio {:.3e}  direction spread {:.3e}  norm CV {:.3e}  Gram error {:.3e}",
        m.within_spread_w, m.direction_spread_w, m.norm_cv_w, m.gram_error_w
    );
    println!(
        "  U        spread ratio {:.3e}  direction spread {:.3e}  Gram error {:.3e}  duality {:.6}",
        m.within_spread_u, m.direction_spread_u, m.gram_error_u, m.duality
    );
    println!(
        "  PCA      W singular values {:.3?}  U {:.3?}",
        m.pca_w, m.pca_u
    );
    println!(
        "norms      word {:.6} ± {:.6}  u {:.6}",
        m.word_norm_mean, m.word_norm_std, m.u_norm_mean
    );
    for f in &r.families {
        match (&f.prediction, &f.distance) {
            (Some(pred), Some(d)) => {
                print_prediction_line(pred);
                println!(
                    "  distance max {:.3e}  (W {:.3e}, U {:.3e}, |phi(w)| {:.3e}, |u| {:.3e}, Gram {:.3e}, duality {:.3e})",
                    d.max, d.within_w, d.spread_u, d.norm_w_err, d.norm_u_err, d.gram_err, d.duality_err
                );
            }
            _ => println!(
                "  no {} prediction: {}",
                f.form,
                f.error.as_deref().unwrap_or("?")
            ),
        }
    }
    println!("{}", r.nc);
    let lr = &r.limit_risk;
    if lr.exact {
        println!("limit risk R(W, U) = {:.12} (exact)", lr.value);
    } else {
        println!(
            "limit risk R(W, U) ≈ {:.6} ± {:.1e} (sampled, {} sentences; {})",
            lr.value,
            lr.std_error.unwrap_or(f64::NAN),
            lr.n_samples.unwrap_or(0),
            lr.note.as_deref().unwrap_or("")
        );
    }
    for f in figures {
        println!("figure     {}", f.display());
    }
}
