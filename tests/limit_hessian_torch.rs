//! The dense exact Hessian of the limit risk (`limit::hessian`) against PyTorch
//! autodiff (`torch.func.hessian` of the independent implementation in
//! `benches/reference/limit_torch.py`) at the same weights, on full latent sets
//! with and without LayerNorm, uniform and Zipf. The Rust side (the dump, its
//! symmetry) always runs; the comparison needs a Python with torch
//! (`$FCOLLAPSE_PYTHON`, else `python3`) and is skipped with a note otherwise.

mod common;

use feature_collapse::limit;
use feature_collapse::network::Params;
use feature_collapse::task::{Freq, Task, TaskConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::process::Command;

fn python_with_torch() -> Option<String> {
    common::python_with("torch")
}

fn task(n_c: usize, s_c: usize, len: usize, dim: usize, ln: Option<f64>, zipf: bool) -> Task {
    TaskConfig {
        n_c,
        s_c,
        len,
        dim,
        classes: None,
        freq: if zipf {
            Freq::Zipf { exponent: 1.0 }
        } else {
            Freq::Uniform
        },
        layer_norm: ln,
        norm: None,
        lambda_affine: None,
        lambda_w: 0.01,
        lambda_u: 0.02,
        seed: 0,
        latent: None,
    }
    .build()
    .unwrap()
}

/// Writes the instance, the weights, the risk, the gradient and the dense exact
/// Hessian in the format of `limit_timing --dump FILE --hessian`.
fn dump(task: &Task, p: &Params, path: &PathBuf) -> f64 {
    let (r, g) = limit::risk_grad(task, p);
    let raw = limit::hessian_raw(task, p);
    let asym = (&raw - raw.transpose()).amax() / raw.amax();
    let h = (&raw + raw.transpose()) * 0.5;
    let rows: Vec<Vec<f64>> = h.row_iter().map(|r| r.iter().copied().collect()).collect();
    let json = serde_json::json!({
        "nc": task.n_c(), "sc": task.s_c(), "len": task.len(), "dim": task.dim(),
        "eps": task.norm().layer_eps(), "mu": task.mu(), "lambda_w": task.lambda_w(),
        "lambda_u": task.lambda_u(), "w": p.w, "u": p.u, "risk": r, "grad": g,
        "hessian": rows,
    });
    std::fs::write(path, json.to_string()).unwrap();
    asym
}

#[test]
fn dense_hessian_matches_torch_autodiff_when_available() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("limit_hessian_torch");
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        task(2, 2, 3, 3, None, false),
        task(2, 3, 3, 3, None, true),
        task(2, 3, 2, 3, Some(0.0), true),
        task(3, 2, 2, 4, Some(1e-5), false),
    ];
    let mut files = Vec::new();
    for (i, t) in cases.iter().enumerate() {
        let p = Params::random(t, 0.8, &mut ChaCha8Rng::seed_from_u64(i as u64));
        let path = dir.join(format!("case{i}.json"));
        let asym = dump(t, &p, &path);
        assert!(asym <= 1e-14, "{t}: asymmetry {asym:e}");
        files.push((t.to_string(), path));
    }
    let Some(py) = python_with_torch() else {
        println!(
            "note: no Python with torch found (set FCOLLAPSE_PYTHON); skipped the autodiff cross-check"
        );
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/reference/limit_torch.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg("--check")
        .args(files.iter().map(|f| &f.1))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), files.len(), "{stdout}");
    for ((name, _), line) in files.iter().zip(lines) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let h = v["hessian_max_diff_rel"].as_f64().unwrap();
        let g = v["grad_max_diff_rel"].as_f64().unwrap();
        println!("{name}: Hessian max diff / max entry {h:.2e}, gradient {g:.2e}");
        assert!(h <= 1e-12, "{name}: Hessian differs from torch by {h:e}");
        assert!(g <= 1e-12, "{name}: gradient differs from torch by {g:e}");
    }
}
