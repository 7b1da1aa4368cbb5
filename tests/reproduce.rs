//! End-to-end runs of the real binary: `reproduce --quick`, `train`, bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn fcollapse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .args(args)
        .output()
        .expect("run fcollapse")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fcollapse-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn reproduce_quick_end_to_end() {
    let d = scratch("reproduce");
    let out = d.join("runs");
    let report = d.join("doc").join("reproduction.md");
    let o = fcollapse(&[
        "reproduce",
        "--quick",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&report).unwrap();
    for name in ["fig3", "fig4a", "fig4b", "fig4c", "table_k50"] {
        assert!(text.contains(&format!("| {name} |")), "report lacks {name}");
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(name).join("summary.json")).unwrap(),
        )
        .unwrap();
        let acc = summary["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(out.join(name).join("W.npy").exists() && out.join(name).join("U.npy").exists());
        for fig in ["pca_w", "pca_u", "accuracy", "norms"] {
            let png =
                std::fs::read(d.join("doc/figures").join(format!("{name}_{fig}.png"))).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        }
    }
    // quick runs learn something even at tiny scale: LayerNorm run above chance (1/30)
    let s4c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("fig4c/summary.json")).unwrap())
            .unwrap();
    assert!(s4c["train_accuracy"].as_f64().unwrap() > 0.5);
    // type II: LayerNorm fixes every norm near sqrt(d) = 4
    let wn = s4c["word_norm_mean"].as_f64().unwrap();
    assert!((wn - 4.0).abs() < 0.05, "{wn}");
    assert!(text.contains("Norm table"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn train_json_summary_and_resume() {
    let d = scratch("train");
    let run = d.join("run");
    let base = [
        "train",
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
        "--eval-every",
        "2",
        "--checkpoint-every",
        "3",
    ];
    let mut a: Vec<&str> = base.to_vec();
    a.extend(["--epochs", "6", "--json", "--out", run.to_str().unwrap()]);
    let o = fcollapse(&a);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "test_accuracy",
        "train_accuracy",
        "word_norm_mean",
        "word_norm_std",
        "u_norm_mean",
        "pca_w",
        "pca_u",
        "secs_per_epoch",
        "epochs",
    ] {
        assert!(!v[key].is_null(), "missing {key}");
    }
    assert_eq!(v["epochs"], 6);
    // extend the run by resuming it
    let o = fcollapse(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        "8",
        "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v2: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v2["epochs"], 8);
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    assert!(log.lines().count() >= 5);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn train_bad_input_exit_code_2() {
    for (args, name) in [
        (vec!["train", "--batch", "0", "--epochs", "1"], "batch"),
        (vec!["train", "--lr", "-1", "--epochs", "1"], "lr"),
        (vec!["train", "--nw", "1201"], "nw"),
        (vec!["train", "--epochs", "0"], "epochs"),
    ] {
        let o = fcollapse(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(name) && err.starts_with("error: "),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}
