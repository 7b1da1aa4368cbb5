//! `fcollapse analyze` inputs: K read from U, the settings it assumes (and says
//! so), the phase line, repeated latent variables and task files refused, and
//! missing files as bad input.

use feature_collapse::npy::write_npy_f64;
use feature_collapse::task::{Task, TaskConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("analyze_inputs")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// n_c 3, s_c 2, L 2, d 4 with `k` drawn classes.
fn drawn_task(k: usize) -> Task {
    TaskConfig {
        n_c: 3,
        s_c: 2,
        len: 2,
        dim: 4,
        classes: Some(k),
        ..TaskConfig::default()
    }
    .build()
    .unwrap()
}

fn fcollapse(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn analyze(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["analyze"];
    all.extend_from_slice(args);
    fcollapse(dir, &all)
}

/// A `.npy` 1.0 file of little-endian int64 values.
fn write_npy_i64(path: &Path, shape: &[usize], data: &[i64]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<i8', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Deterministic weights of the task's shapes, entries of size about `scale`.
fn write_weights(dir: &Path, t: &Task, scale: f64) {
    let w: Vec<f64> = (0..t.n_w() * t.dim())
        .map(|i| scale * (1.0 + ((i * 7919) % 13) as f64 / 13.0))
        .collect();
    let u: Vec<f64> = (0..t.k() * t.len() * t.dim())
        .map(|i| scale * (((i * 104_729) % 17) as f64 / 17.0 - 0.5))
        .collect();
    write_npy_f64(&dir.join("W.npy"), &[t.n_w(), t.dim()], &w).unwrap();
    write_npy_f64(&dir.join("U.npy"), &[t.k(), t.len() * t.dim()], &u).unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_bad_input(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for n in needles {
        assert!(err.contains(n), "should contain {n:?}: {err}");
    }
}

#[test]
fn k_comes_from_u_and_assumed_settings_are_named() {
    let dir = out_dir("k_from_u");
    let t = drawn_task(5);
    write_weights(&dir, &t, 0.5);
    let o = analyze(&dir, &["--w", "W.npy", "--u", "U.npy", "--nc", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("n_c=3 s_c=2 n_w=6 L=2 d=4 K=5"), "{text}");
    assert!(
        text.contains("  phase collapsed (sqrt(lambda_W lambda_U) = 0.010000, lambda_critical = "),
        "{text}"
    );
    for line in [
        "assumed    lambda = 0.01 (assumed: default; pass --lambda)",
        "assumed    freq = uniform (assumed: default; pass --freq)",
        "assumed    no LayerNorm (assumed: default; pass --layer-norm)",
        "assumed    z = 5 latent variables drawn with seed 0 (assumed; pass --z Z.npy or --task)",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?}: {text}");
    }
    // What is given is not listed; the JSON carries the same.
    write_npy_i64(
        &dir.join("Z.npy"),
        &[5, 2],
        &t.z().iter().map(|&a| a as i64).collect::<Vec<_>>(),
    );
    let o = analyze(
        &dir,
        &[
            "--w",
            "W.npy",
            "--u",
            "U.npy",
            "--nc",
            "3",
            "--lambda-w",
            "0.02",
            "--z",
            "Z.npy",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["phase"], "collapsed");
    assert_eq!(
        v["assumed"],
        serde_json::json!([
            "lambda_u = 0.01 (assumed: default; pass --lambda-u)",
            "freq = uniform (assumed: default; pass --freq)",
            "no LayerNorm (assumed: default; pass --layer-norm)"
        ])
    );
    let lc = v["lambda_critical"].as_f64().unwrap();
    assert!(lc > 0.02, "{lc}");
}

#[test]
fn an_assumed_weight_decay_that_changes_the_phase_is_a_warning() {
    let dir = out_dir("phase_warning");
    // 20 concepts of 50 tokens, L = 1: lambda_critical = 0.00707 < 0.01.
    let t = TaskConfig {
        n_c: 20,
        s_c: 50,
        len: 1,
        dim: 4,
        ..TaskConfig::default()
    }
    .build()
    .unwrap();
    write_weights(&dir, &t, 0.5);
    let o = analyze(&dir, &["--w", "W.npy", "--u", "U.npy", "--nc", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(
            "  phase trivial (sqrt(lambda_W lambda_U) = 0.010000, lambda_critical = 0.007071068)"
        ),
        "{text}"
    );
    let err = stderr(&o);
    assert!(
        err.starts_with("warning: the assumed weight decay (lambda_W = 0.01, lambda_U = 0.01) predicts the trivial phase"),
        "{err}"
    );
    // Given, it is not a guess: no warning.
    let o = analyze(
        &dir,
        &[
            "--w", "W.npy", "--u", "U.npy", "--nc", "20", "--lambda", "0.01",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("assumed    lambda"), "{text}");
    // Weights at the origin in the collapsed phase: the same warning, other way.
    let dir = out_dir("phase_warning_small");
    let t = TaskConfig {
        n_c: 3,
        s_c: 2,
        len: 2,
        dim: 4,
        ..TaskConfig::default()
    }
    .build()
    .unwrap();
    write_weights(&dir, &t, 1e-6);
    let o = analyze(&dir, &["--w", "W.npy", "--u", "U.npy", "--nc", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("predicts the collapsed phase, but the weights have mean norms"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn repeated_latent_variables_are_refused_on_every_path() {
    let dir = out_dir("repeated");
    let t = drawn_task(4);
    write_weights(&dir, &t, 0.5);
    let z = [0i64, 1, 2, 2, 1, 0, 2, 2];
    write_npy_i64(&dir.join("Z.npy"), &[4, 2], &z);
    let o = analyze(
        &dir,
        &["--w", "W.npy", "--u", "U.npy", "--nc", "3", "--z", "Z.npy"],
    );
    assert_bad_input(
        &o,
        &[
            "`z` = Z.npy",
            "rows 1 and 3 (0-based) are the same latent variable [2, 2]",
        ],
    );
    // The same rows in a task file.
    let mut task = serde_json::to_value(&t).unwrap();
    task["z"] = serde_json::json!(z);
    std::fs::write(dir.join("task.json"), task.to_string()).unwrap();
    let o = analyze(
        &dir,
        &["--w", "W.npy", "--u", "U.npy", "--task", "task.json"],
    );
    assert_bad_input(
        &o,
        &[
            "`task` = task.json",
            "rows 1 and 3 (0-based) are the same latent variable [2, 2]",
        ],
    );
    // The file as written by the task itself is accepted.
    std::fs::write(dir.join("good.json"), serde_json::to_string(&t).unwrap()).unwrap();
    let o = analyze(
        &dir,
        &["--w", "W.npy", "--u", "U.npy", "--task", "good.json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn task_files_with_unknown_keys_or_a_bad_z_length_are_refused() {
    let dir = out_dir("task_file");
    let t = drawn_task(4);
    write_weights(&dir, &t, 0.5);
    let mut typo = serde_json::to_value(&t).unwrap();
    typo["lamda_w"] = serde_json::json!(0.001);
    std::fs::write(dir.join("typo.json"), typo.to_string()).unwrap();
    let o = analyze(
        &dir,
        &["--w", "W.npy", "--u", "U.npy", "--task", "typo.json"],
    );
    assert_bad_input(&o, &["`task` = typo.json", "unknown key `lamda_w`"]);

    let mut short = serde_json::to_value(&t).unwrap();
    short["z"] = serde_json::json!([0]);
    std::fs::write(dir.join("short.json"), short.to_string()).unwrap();
    let o = analyze(
        &dir,
        &["--w", "W.npy", "--u", "U.npy", "--task", "short.json"],
    );
    assert_bad_input(
        &o,
        &[
            "`task` = short.json",
            "`z` has 1 entries, not K x L with L = 2",
        ],
    );

    let mut miscounted = serde_json::to_value(&t).unwrap();
    miscounted["k"] = serde_json::json!(5);
    std::fs::write(dir.join("k.json"), miscounted.to_string()).unwrap();
    let o = analyze(&dir, &["--w", "W.npy", "--u", "U.npy", "--task", "k.json"]);
    assert_bad_input(&o, &["`task` = k.json", "`k` = 5 but `z` holds 4 rows"]);
}

#[test]
fn missing_input_files_are_bad_input_naming_the_flag() {
    let dir = out_dir("missing");
    let t = TaskConfig::default().build().unwrap();
    write_weights(&dir, &t, 0.5);
    let o = analyze(&dir, &["--w", "W.npy", "--u", "nowhere.npy", "--nc", "3"]);
    assert_bad_input(&o, &["`u` = nowhere.npy: no such file"]);
    let o = analyze(
        &dir,
        &["--w", "W.npy", "--u", "U.npy", "--task", "none.json"],
    );
    assert_bad_input(&o, &["`task` = none.json: no such file"]);
    let o = analyze(&dir, &["--w", "W.npy", "--u", "U.npy", "--task", "."]);
    assert_bad_input(&o, &["`task` = .: is a directory"]);
    let o = fcollapse(&dir, &["atlas", "run", "none.toml", "--out", "out"]);
    assert_bad_input(&o, &["`spec` = none.toml: no such file"]);
    assert!(
        !dir.join("out").exists(),
        "nothing written for a missing spec"
    );
}
