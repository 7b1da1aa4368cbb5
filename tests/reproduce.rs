//! End-to-end runs of the real binary: `reproduce --quick`, `train`, bad input.

mod common;
use common::fcollapse;

use std::path::PathBuf;
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    common::scratch("fcollapse-test", name)
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

#[test]
fn reproduce_quick_end_to_end() {
    // Run with the defaults from a scratch working directory, as a newcomer
    // would from the repository root: everything lands under runs/.
    let d = scratch("reproduce");
    let o = Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .current_dir(&d)
        .args(["reproduce", "--quick", "--quiet"])
        .output()
        .expect("run fcollapse");
    common::assert_success(&o);
    let written = files_under(&d);
    assert!(written.len() > 40, "{written:?}");
    for f in &written {
        assert!(f.starts_with("runs/reproduce-quick"), "{f:?} outside runs/");
    }
    // runs/ is ignored by git, so the repository stays clean (checked where
    // the sources are a git work tree with git installed).
    let manifest = env!("CARGO_MANIFEST_DIR");
    let in_git = Command::new("git")
        .args(["-C", manifest, "rev-parse", "--is-inside-work-tree"])
        .output()
        .is_ok_and(|o| o.status.success());
    if in_git {
        for f in &written {
            let ignored = Command::new("git")
                .args(["-C", manifest, "check-ignore", "-q", "--no-index"])
                .arg(f)
                .status()
                .unwrap();
            assert!(ignored.success(), "{f:?} is not ignored by git");
        }
    }
    let out = d.join("runs/reproduce-quick");
    let report = out.join("reproduction.md");
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("report written to runs/reproduce-quick/reproduction.md"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let text = std::fs::read_to_string(&report).unwrap();
    // the protocol line states the shapes of these runs
    assert!(
        text.contains("n_c = 3, n_w = 24, L = 5, K = 30 (table_k50: K = 10), d = 16,")
            && text.contains("batch 20"),
        "{text}"
    );
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
            let png = std::fs::read(out.join("figures").join(format!("{name}_{fig}.png"))).unwrap();
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
    common::assert_success(&o);
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
    common::assert_success(&o);
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
