//! `fcollapse analyze` end to end: weights written as `.npy`, the binary's JSON
//! against the library's measures on the same values, and its input errors.

use feature_collapse::analyze::{self, AnalyzeConfig};
use feature_collapse::network::Params;
use feature_collapse::npy::{write_npy_f32, write_npy_f64};
use feature_collapse::task::{Freq, Task, TaskConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("analyze")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fcollapse(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .current_dir(dir)
        .arg("analyze")
        .args(args)
        .output()
        .unwrap()
}

fn task() -> Task {
    TaskConfig {
        n_c: 3,
        s_c: 3,
        len: 2,
        dim: 4,
        classes: Some(5),
        freq: Freq::Zipf { exponent: 1.0 },
        seed: 9,
        ..TaskConfig::default()
    }
    .build()
    .unwrap()
}

/// Random weights rounded to f32 (what a PyTorch run would save).
fn weights(t: &Task) -> Params {
    let mut p = Params::random(t, 0.8, &mut ChaCha8Rng::seed_from_u64(2));
    for v in p.w.iter_mut().chain(p.u.iter_mut()) {
        *v = *v as f32 as f64;
    }
    p
}

/// `v` as JSON text parsed back: serde_json parses floats to within an ulp only
/// (without its `float_roundtrip` feature), identically for identical text.
fn via_text<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn cli_json_equals_the_library_on_the_same_weights() {
    let dir = out_dir("json");
    let t = task();
    let p = weights(&t);
    write_npy_f32(&dir.join("W.npy"), &[t.n_w(), t.dim()], &f32s(&p.w)).unwrap();
    // U as (K, L, d) in f64
    write_npy_f64(&dir.join("U.npy"), &[t.k(), t.len(), t.dim()], &p.u).unwrap();
    let z: Vec<f64> = t.z().iter().map(|&a| a as f64).collect();
    write_npy_f64(&dir.join("Zf.npy"), &[t.k(), t.len()], &z).unwrap();
    let task_json = serde_json::json!({ "task": t });
    std::fs::write(dir.join("summary.json"), task_json.to_string()).unwrap();

    let expected = analyze::analyze(&t, &p, &AnalyzeConfig::default()).unwrap();
    let out = fcollapse(
        &dir,
        &[
            "--w",
            "W.npy",
            "--u",
            "U.npy",
            "--task",
            "summary.json",
            "--json",
            "--plots",
            "figs",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["metrics"], via_text(&expected.metrics));
    assert_eq!(got["families"], via_text(&expected.families));
    assert_eq!(
        got["limit_risk"]["value"],
        via_text(&expected.limit_risk.value)
    );
    assert_eq!(got["limit_risk"]["exact"], true);
    assert_eq!(got["task"]["z"], serde_json::to_value(t.z()).unwrap());
    for f in got["figures"].as_array().unwrap() {
        let png = dir.join(f.as_str().unwrap());
        assert!(std::fs::metadata(&png).unwrap().len() > 1000, "{png:?}");
    }
    assert_eq!(got["figures"].as_array().unwrap().len(), 3);

    // Float Z is refused with the file and the expected shape named (exit 2).
    let out = fcollapse(
        &dir,
        &[
            "--w", "W.npy", "--u", "U.npy", "--z", "Zf.npy", "--nc", "3", "--freq", "zipf",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Zf.npy") && err.contains("(K, L) = (K, 2)"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn inferred_task_and_input_errors() {
    let dir = out_dir("errors");
    let t = TaskConfig {
        n_c: 3,
        s_c: 2,
        len: 2,
        dim: 4,
        ..TaskConfig::default()
    }
    .build()
    .unwrap();
    let p = weights(&t);
    write_npy_f64(&dir.join("W.npy"), &[t.n_w(), t.dim()], &p.w).unwrap();
    write_npy_f64(&dir.join("U.npy"), &[t.k(), t.len() * t.dim()], &p.u).unwrap();
    write_npy_f64(&dir.join("U5.npy"), &[5, t.len() * t.dim()], &p.u[..40]).unwrap();
    std::fs::write(dir.join("junk.npy"), b"not an array").unwrap();

    // d, L and s_c come from the shapes; only n_c is needed.
    let out = fcollapse(&dir, &["--w", "W.npy", "--u", "U.npy", "--nc", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("n_c=3 s_c=2 n_w=6 L=2 d=4 K=9"), "{text}");
    assert!(text.contains("(exact)"), "{text}");

    for (args, needle) in [
        (vec!["--w", "W.npy", "--u", "U.npy"], "--nc"),
        (
            vec![
                "--w",
                "W.npy",
                "--u",
                "U5.npy",
                "--nc",
                "3",
                "--classes",
                "6",
            ],
            "(6, 8)",
        ),
        (
            vec!["--w", "W.npy", "--u", "U.npy", "--nc", "4"],
            "not a multiple of n_c",
        ),
        (
            vec!["--w", "junk.npy", "--u", "U.npy", "--nc", "3"],
            "junk.npy",
        ),
        (
            vec![
                "--w",
                "W.npy",
                "--u",
                "U.npy",
                "--nc",
                "3",
                "--samples",
                "0",
            ],
            "samples",
        ),
    ] {
        let out = fcollapse(&dir, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // A missing file is bad input naming the flag and the path.
    let out = fcollapse(&dir, &["--w", "none.npy", "--u", "U.npy", "--nc", "3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`w` = none.npy: no such file"), "{err}");
}
