//! `fcollapse train` as a user reruns it: the default directory is named by
//! the settings (a rerun finds its run), a resumed run redraws its figures, and
//! `--json` is short.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fcollapse(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run fcollapse")
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("train_runs")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(o: &Output) -> serde_json::Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// 3 concepts of 5 tokens, L = 4, d = 8, K = 12, 10 sentences per class.
const TINY: [&str; 16] = [
    "train",
    "--quiet",
    "--nc",
    "3",
    "--sc",
    "5",
    "--len",
    "4",
    "--dim",
    "8",
    "--classes",
    "12",
    "--nspl",
    "10",
    "--batch",
    "10",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = TINY.to_vec();
    a.extend_from_slice(extra);
    a
}

#[test]
fn the_default_directory_names_the_settings_and_a_rerun_finds_its_run() {
    let d = scratch("default_dir");
    let first = ok(&fcollapse(&d, &args(&["--epochs", "2", "--json"])));
    let dir = "runs/train-nc3-sc5-len4-dim8-classes12-nspl10-epochs2-batch10-seed0";
    assert_eq!(first["out_dir"], dir);
    assert!(d.join(dir).join("W.npy").exists());
    // The same command again: the run is found and reported, not refused.
    let o = fcollapse(&d, &args(&["--epochs", "2", "--json"]));
    let again = ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("{dir} holds this run; resuming it")),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(again["epochs"], 2);
    assert_eq!(again["test_accuracy"], first["test_accuracy"]);
    assert_eq!(again["word_norm_mean"], first["word_norm_mean"]);
    // Other settings, another directory.
    let mut other = args(&["--epochs", "2", "--json"]);
    other[11] = "9";
    let v = ok(&fcollapse(&d, &other));
    assert_eq!(
        v["out_dir"],
        "runs/train-nc3-sc5-len4-dim8-classes9-nspl10-epochs2-batch10-seed0"
    );
    // --force starts over in the same directory.
    let o = fcollapse(&d, &args(&["--epochs", "2", "--json", "--force"]));
    ok(&o);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("resuming"));
}

#[test]
fn a_resumed_run_redraws_its_figures() {
    let d = scratch("figures");
    let out = d.join("run");
    let out_s = out.to_str().unwrap();
    let v = ok(&fcollapse(
        &d,
        &args(&["--epochs", "2", "--plots", "--json", "--out", out_s]),
    ));
    assert_eq!(v["figures"].as_array().unwrap().len(), 4);
    let before = std::fs::read_to_string(out.join("fig_accuracy.svg")).unwrap();
    let v = ok(&fcollapse(
        &d,
        &["train", "--resume", out_s, "--epochs", "5", "--json"],
    ));
    assert_eq!(v["epochs"], 5);
    assert_eq!(v["figures"].as_array().unwrap().len(), 4);
    let after = std::fs::read_to_string(out.join("fig_accuracy.svg")).unwrap();
    assert_ne!(before, after, "the accuracy figure must show epochs 3-5");
    // A run drawn without --plots and never with figures stays without them.
    let plain = d.join("plain");
    let v = ok(&fcollapse(
        &d,
        &args(&["--epochs", "2", "--json", "--out", plain.to_str().unwrap()]),
    ));
    assert_eq!(v["figures"], serde_json::json!([]));
    assert!(!plain.join("fig_accuracy.png").exists());
}

#[test]
fn json_summarises_repeated_arrays() {
    let d = scratch("json");
    let out = d.join("run");
    let o = fcollapse(
        &d,
        &args(&["--epochs", "2", "--json", "--out", out.to_str().unwrap()]),
    );
    let v = ok(&o);
    // uniform mu over 5 tokens; r_beta of a uniform task is one number
    assert_eq!(v["task"]["mu"], serde_json::json!({"len": 5, "value": 0.2}));
    let r = &v["predictions"][0]["r"];
    assert_eq!(r["len"], 5, "{r}");
    assert!(r["value"].as_f64().unwrap() > 0.0, "{r}");
    // summary.json keeps every array
    let full: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        full["task"]["mu"],
        serde_json::json!([0.2, 0.2, 0.2, 0.2, 0.2])
    );
    assert_eq!(full["task"]["z"].as_array().unwrap().len(), 48);
    assert!(o.stdout.len() < 4000, "{} bytes", o.stdout.len());
}
