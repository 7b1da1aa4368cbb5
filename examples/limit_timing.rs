//! Times one exact limit risk + gradient (`limit::risk_grad`) on the full latent
//! set and prints one JSON line (median seconds over `--reps`, after one warm-up).
//!
//! `cargo run --release --example limit_timing -- --sc 3 --len 4 [--layer-norm] [--zipf] [--check]`
//!
//! `--check` also evaluates `limit::risk_naive` and reports the relative difference.
//! `--hvp` also times one exact Hessian-vector product (`limit::hessian_vector_product`,
//! and the product alone once the point's `limit::HessianOperator` is built) along a
//! fixed random direction, and reports its largest difference from the central
//! difference `limit::hessian_vector_product_fd` relative to its largest entry.
//! `--hessian` adds the dense exact Hessian (`limit::hessian`) to the `--dump` file.
//! `--norm NAME` picks the normalization (`--layer-norm` = `--norm layer`), `--eps`
//! its eps (default 0). `--at FILE` evaluates the risk and gradient at the weights
//! of an independent implementation's JSON dump (`W` as `n_w x d`, `U` as
//! `K x L x d` nested lists, with its `risk`, `grad_W`, `grad_U`) and prints the
//! differences.

use clap::Parser;
use feature_collapse::limit;
use feature_collapse::network::Params;
use feature_collapse::norm::Norm;
use feature_collapse::task::{Freq, TaskConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 3)]
    nc: usize,
    #[arg(long, default_value_t = 3)]
    sc: usize,
    #[arg(long, default_value_t = 4)]
    len: usize,
    #[arg(long, default_value_t = 4)]
    dim: usize,
    /// LayerNorm with eps = 0 (as the reference's default).
    #[arg(long)]
    layer_norm: bool,
    /// Normalization: none, layer, rms, center, layer-affine.
    #[arg(long)]
    norm: Option<String>,
    /// eps of layer, rms and layer-affine.
    #[arg(long, default_value_t = 0.0)]
    eps: f64,
    /// Weight decay lambda_W = lambda_U.
    #[arg(long, default_value_t = 0.01)]
    lambda: f64,
    /// Evaluate at the weights of this JSON dump and compare (see the module doc).
    #[arg(long)]
    at: Option<std::path::PathBuf>,
    /// Zipf frequencies (exponent 1) instead of uniform.
    #[arg(long)]
    zipf: bool,
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Also compare with the naive evaluation.
    #[arg(long)]
    check: bool,
    /// Write the weights, the risk and the gradient to this JSON file (for a
    /// cross-check against an independent implementation).
    #[arg(long)]
    dump: Option<std::path::PathBuf>,
    /// Also time one exact Hessian-vector product and compare it with central differences.
    #[arg(long)]
    hvp: bool,
    /// With --dump, also write the dense exact Hessian (row-major, n x n).
    #[arg(long)]
    hessian: bool,
}

/// Median of `reps` timed calls of `f` after one warm-up call.
fn median_secs<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut times: Vec<f64> = (0..=reps)
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(f());
            t0.elapsed().as_secs_f64()
        })
        .skip(1)
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() -> feature_collapse::Result<()> {
    let a = Args::parse();
    let task = TaskConfig {
        n_c: a.nc,
        s_c: a.sc,
        len: a.len,
        dim: a.dim,
        classes: None,
        freq: if a.zipf {
            Freq::Zipf { exponent: 1.0 }
        } else {
            Freq::Uniform
        },
        layer_norm: None,
        norm: Some(match &a.norm {
            Some(n) => Norm::parse(n, a.eps)?,
            None if a.layer_norm => Norm::Layer { eps: a.eps },
            None => Norm::None,
        }),
        lambda_affine: None,
        lambda_w: a.lambda,
        lambda_u: a.lambda,
        seed: 0,
        latent: None,
    }
    .build()?;
    limit::check_budget(&task, limit::DEFAULT_WORK_BUDGET)?;
    let p = Params::random(&task, 1.0, &mut ChaCha8Rng::seed_from_u64(0));
    if let Some(path) = &a.at {
        return compare_at(&task, &p, path);
    }
    let mut times = Vec::with_capacity(a.reps);
    let mut r = 0.0;
    let mut grad = Vec::new();
    for rep in 0..=a.reps {
        let t0 = Instant::now();
        let (risk, g) = limit::risk_grad(&task, &p);
        let dt = t0.elapsed().as_secs_f64();
        r = risk;
        grad = std::hint::black_box(g);
        if rep > 0 {
            times.push(dt);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let naive_rel = a.check.then(|| {
        let rn = limit::risk_naive(&task, &p);
        (r - rn).abs() / rn.abs()
    });
    let hvp = a.hvp.then(|| {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let v = Params::random(&task, 1.0, &mut rng).to_flat();
        let secs = median_secs(a.reps, || limit::hessian_vector_product(&task, &p, &v));
        let op = limit::HessianOperator::new(&task, &p);
        let secs_apply = median_secs(a.reps, || op.apply(&v));
        let exact = op.apply(&v);
        let fd = limit::hessian_vector_product_fd(&task, &p, &v);
        let scale = exact.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let diff = exact
            .iter()
            .zip(&fd)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        (secs, secs_apply, diff / scale)
    });
    if let Some(path) = &a.dump {
        let mut json = serde_json::json!({
            "nc": a.nc, "sc": a.sc, "len": a.len, "dim": a.dim,
            "eps": task.norm().eps(), "norm": task.norm().name(), "mu": task.mu(), "lambda_w": task.lambda_w(),
            "lambda_u": task.lambda_u(), "w": p.w, "u": p.u, "risk": r, "grad": grad,
        });
        if a.hessian {
            let h = limit::hessian(&task, &p);
            let rows: Vec<Vec<f64>> = h.row_iter().map(|r| r.iter().copied().collect()).collect();
            json["hessian"] = serde_json::json!(rows);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| feature_collapse::Error::io(dir, e))?;
        }
        std::fs::write(path, json.to_string()).map_err(|e| feature_collapse::Error::io(path, e))?;
    }
    println!(
        "{}",
        serde_json::json!({
            "nc": a.nc, "sc": a.sc, "len": a.len, "dim": a.dim, "classes": task.k(),
            "token_choices_per_class": task.s_c().pow(task.len() as u32),
            "norm": task.norm().name(), "zipf": a.zipf,
            "threads": rayon::current_num_threads(),
            "secs_risk_and_grad_median": median, "risk": r,
            "naive_rel_diff": naive_rel,
            "secs_hvp_median": hvp.map(|h| h.0),
            "secs_hvp_apply_median": hvp.map(|h| h.1),
            "hvp_fd_max_diff_rel": hvp.map(|h| h.2),
        })
    );
    Ok(())
}

/// Risk and gradient at the weights of the dump `path`, against the dump's own.
fn compare_at(
    task: &feature_collapse::task::Task,
    shape: &Params,
    path: &std::path::Path,
) -> feature_collapse::Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| feature_collapse::Error::io(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| feature_collapse::Error::invalid("at", path.display(), e))?;
    let flat = |key: &str| -> Vec<f64> {
        fn walk(v: &serde_json::Value, out: &mut Vec<f64>) {
            match v {
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                x => out.extend(x.as_f64()),
            }
        }
        let mut out = Vec::new();
        walk(&v[key], &mut out);
        out
    };
    let mut x = flat("W");
    x.extend(flat("U"));
    let p = shape
        .try_with_flat(&x)
        .map_err(|e| feature_collapse::Error::invalid("at", path.display(), e))?;
    let (risk, grad) = limit::risk_grad(task, &p);
    let mut theirs = flat("grad_W");
    theirs.extend(flat("grad_U"));
    let r_ref = v["risk"].as_f64().unwrap_or(f64::NAN);
    let max_abs = grad
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let max_g = theirs.iter().fold(0.0f64, |m, b| m.max(b.abs()));
    println!(
        "{}",
        serde_json::json!({
            "norm": task.norm().name(), "risk": risk, "reference_risk": r_ref,
            "risk_rel_diff": (risk - r_ref).abs() / r_ref.abs(),
            "grad_max_abs_diff": max_abs, "grad_max_abs": max_g,
            "grad_entries": grad.len(), "reference_grad_entries": theirs.len(),
        })
    );
    Ok(())
}
