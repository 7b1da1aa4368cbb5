//! Every JSON report of the real binary carries the crate version, read from one
//! place (`feature_collapse::VERSION`, Cargo.toml's version): `verify --json`,
//! `predict --json`, `analyze --json`, `train --json` and its `summary.json`,
//! `converge --json` (each line) and its `results.jsonl`, and the atlas result lines.

use feature_collapse::VERSION;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fcollapse-versions-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `fcollapse ARGS` (expecting exit 0) and parses every stdout line as JSON.
fn json_lines(args: &[&str]) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .args(args)
        .output()
        .expect("run fcollapse");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{args:?}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{args:?}: {e}: {l}")))
        .collect()
}

fn file_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn verify_predict_and_analyze_reports_carry_the_version() {
    let task = ["--nc", "3", "--sc", "2", "--len", "2", "--dim", "4"];
    let mut verify = vec!["verify", "--theorem", "1", "--restarts", "2", "--json"];
    verify.extend(task);
    let lines = json_lines(&verify);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["version"], VERSION);
    assert_eq!(lines[0]["theorem"], 1, "the report's own fields follow");

    let mut predict = vec!["predict", "--json"];
    predict.extend(task);
    let lines = json_lines(&predict);
    assert_eq!(lines[0]["version"], VERSION);
    assert_eq!(lines[0]["kind"], "I");

    // a trained run: its summary.json, then analyze on its weights
    let dir = scratch("train");
    let out = dir.join("run");
    let out_s = out.to_str().unwrap();
    let mut train = vec![
        "train", "--epochs", "2", "--quiet", "--json", "--out", out_s,
    ];
    train.extend(task);
    let lines = json_lines(&train);
    assert_eq!(lines[0]["version"], VERSION);
    assert_eq!(lines[0]["epochs"], 2);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["version"], VERSION);
    assert_eq!(summary["epochs"], 2);

    let w = out.join("W.npy");
    let u = out.join("U.npy");
    let s = out.join("summary.json");
    let lines = json_lines(&[
        "analyze",
        "--w",
        w.to_str().unwrap(),
        "--u",
        u.to_str().unwrap(),
        "--task",
        s.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(lines[0]["version"], VERSION);
    assert!(lines[0]["metrics"].is_object(), "{}", lines[0]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn converge_lines_and_results_carry_the_version() {
    let dir = scratch("converge");
    let out = dir.join("c");
    let lines = json_lines(&[
        "converge",
        "--nc",
        "2",
        "--sc",
        "2",
        "--len",
        "2",
        "--dim",
        "2",
        "--nspl",
        "4,8",
        "--seeds",
        "1",
        "--solver",
        "erm",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(lines.len(), 3, "two results and the summary");
    for l in &lines {
        assert_eq!(l["version"], VERSION, "{l}");
    }
    let stored = file_lines(&out.join("results.jsonl"));
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|l| l["version"] == VERSION));
    // a rerun reads its records back (the version field does not get in the way)
    let again = json_lines(&[
        "converge",
        "--nc",
        "2",
        "--sc",
        "2",
        "--len",
        "2",
        "--dim",
        "2",
        "--nspl",
        "4,8",
        "--seeds",
        "1",
        "--solver",
        "erm",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(again[..2], lines[..2]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn atlas_result_lines_carry_the_version() {
    let dir = scratch("atlas");
    let spec = dir.join("spec.in.toml");
    std::fs::write(
        &spec,
        "[[grid]]\nn_c = 2\ns_c = 2\nlen = 2\ndim = 3\nlambda_ratio = [0.3, 0.6]\nrestarts = 2\n",
    )
    .unwrap();
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .args(["atlas", "run", spec.to_str().unwrap(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = file_lines(&out.join("results.jsonl"));
    assert!(!lines.is_empty());
    for l in &lines {
        assert_eq!(l["provenance"]["crate_version"], VERSION, "{l}");
    }
    // and the library reads them back with it
    let read = feature_collapse::atlas::read_results(&out).unwrap();
    assert_eq!(read.len(), lines.len());
    assert!(read.iter().all(|r| r.provenance.crate_version == VERSION));
    let _ = std::fs::remove_dir_all(&dir);
}
