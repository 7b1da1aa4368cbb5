//! `fcollapse verify` and `predict` on the real binary: the issue's commands get
//! the right verdicts and exit codes (0 confirmed, 1 refuted, 4 inconclusive).

use std::process::{Command, Output};

fn fcollapse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .args(args)
        .output()
        .expect("run fcollapse")
}

/// `verify` of theorem 1 on the smallest instance (n_c 2, s_c 2, L 2, d 2) with `args`.
fn tiny(args: &[&str]) -> Output {
    let base = [
        "verify",
        "--theorem",
        "1",
        "--nc",
        "2",
        "--sc",
        "2",
        "--len",
        "2",
        "--dim",
        "2",
    ];
    fcollapse(&[&base[..], args].concat())
}

/// Runs `verify ARGS --restarts 4 --json` and returns the exit code and the one JSON line.
fn verify_json(args: &str) -> (i32, serde_json::Value) {
    let mut a: Vec<&str> = vec!["verify"];
    a.extend(args.split_whitespace());
    a.extend(["--restarts", "4", "--json"]);
    let o = fcollapse(&a);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{args}: {out}{err}");
    let v = serde_json::from_str(lines[0]).unwrap();
    (o.status.code().unwrap(), v)
}

#[test]
fn issue_commands_get_the_right_verdicts() {
    // above the switch: the origin is the minimiser, and that is confirmed
    let (code, v) = verify_json("--theorem 1 --nc 3 --sc 2 --len 3 --dim 4 --lambda 0.14");
    assert_eq!((code, v["verdict"].as_str()), (0, Some("confirmed")), "{v}");
    assert_eq!(v["phase"], "trivial");
    assert_eq!(v["passed"], true);
    let lc = v["lambda_critical"].as_f64().unwrap();
    assert!(lc > 0.135 && lc < 0.137, "{lc}");

    // just below the switch, Zipf: collapsed and confirmed
    let (code, v) =
        verify_json("--theorem 2 --nc 3 --sc 3 --len 3 --dim 4 --freq zipf --lambda 0.12");
    assert_eq!((code, v["verdict"].as_str()), (0, Some("confirmed")), "{v}");
    assert_eq!(v["phase"], "collapsed");

    // drawn latent set: the central claim holds, the geometry is measured
    let (code, v) = verify_json("--theorem 1 --nc 3 --sc 2 --len 4 --dim 4 --classes 20");
    assert_eq!((code, v["verdict"].as_str()), (0, Some("confirmed")), "{v}");
    assert!(v["within_concept_spread"].as_f64().unwrap() < 1e-4);
    assert!(v["best_risk"].as_f64().unwrap() < v["predicted_risk"].as_f64().unwrap());

    // LayerNorm in d = 2: the search cannot decide
    let (code, v) = verify_json(
        "--theorem 3 --nc 2 --sc 2 --len 3 --dim 2 --freq zipf --layer-norm --lambda-w 0 --lambda-u 0.01",
    );
    assert_eq!(
        (code, v["verdict"].as_str()),
        (4, Some("inconclusive")),
        "{v}"
    );
    assert_eq!(v["passed"], false);
    assert!(v["lambda_critical"].is_null());
    assert!(v["reasons"][0]
        .as_str()
        .unwrap()
        .contains("above the prediction"));
}

#[test]
fn outside_the_hypotheses_is_run_and_described() {
    let (code, v) = verify_json("--theorem 1 --dim 1");
    assert_eq!(code, 4, "{v}");
    assert_eq!(v["hypotheses"], false);
    assert!(v["outside"][0].as_str().unwrap().contains("n_c - 1"));
    assert!(!v["measurements"].as_array().unwrap().is_empty());
}

#[test]
fn bisection_agrees_with_the_closed_form() {
    let (code, v) = verify_json("--theorem 1 --len 2 --lambda 0.2 --bisect");
    assert_eq!(code, 0, "{v}");
    let (c, b) = (
        v["lambda_critical"].as_f64().unwrap(),
        v["lambda_critical_bisection"].as_f64().unwrap(),
    );
    assert!((c - b).abs() <= 1e-6 * c, "{c} vs {b}");
}

#[test]
fn predict_json_carries_lambda_critical() {
    let o = fcollapse(&[
        "predict", "--nc", "3", "--sc", "2", "--len", "3", "--dim", "4", "--json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let lc = v["lambda_critical"].as_f64().unwrap();
    assert!((lc - (1.0f64 / 54.0).sqrt()).abs() < 1e-15, "{lc}");
    assert_eq!(v["phase"], "collapsed");
    for k in [
        "kind",
        "form",
        "word_norm",
        "u_norm",
        "c",
        "risk",
        "r",
        "task",
    ] {
        assert!(!v[k].is_null(), "{k} missing: {v}");
    }
    let o = fcollapse(&["predict", "--layer-norm", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["lambda_critical"].is_null());
}

/// False refutations once reproduced: each is now `inconclusive` with its
/// reason (exit 4), never `refuted`, and writes no witness.
#[test]
fn former_false_refutations_are_inconclusive_with_a_reason() {
    let dir = std::env::temp_dir().join(format!("fc-nowitness-{}", std::process::id()));
    let wd = format!("--witness-dir {}", dir.display());
    for (args, why) in [
        // a symmetry-direction eigenvalue of -7.6e-17; restarts not resolved at this lambda
        (
            "--theorem 1 --nc 2 --sc 2 --len 2 --dim 2 --lambda 1e-11",
            "pass a smaller --grad-tol",
        ),
        (
            "--theorem 1 --nc 2 --sc 2 --len 2 --dim 2 --lambda 1e-17",
            "pass a smaller --grad-tol",
        ),
        (
            "--theorem 2 --nc 2 --sc 2 --len 2 --dim 2 --lambda 1e-12",
            "pass a smaller --grad-tol",
        ),
        (
            "--theorem 1 --nc 2 --sc 2 --len 2 --dim 2 --lambda 1e-250",
            "pass a smaller --grad-tol",
        ),
        // every restart ended above a known collapsed configuration
        (
            "--theorem 3 --nc 2 --sc 2 --len 2 --dim 2 --classes 3 --seed 0",
            "a collapsed configuration is as low or lower",
        ),
        (
            "--theorem 3 --nc 2 --sc 2 --len 2 --dim 2 --classes 3 --seed 3",
            "the search was not good enough",
        ),
    ] {
        let (code, v) = verify_json(&format!("{args} {wd}"));
        assert_eq!(
            (code, v["verdict"].as_str()),
            (4, Some("inconclusive")),
            "{args}: {v}"
        );
        let reasons = v["reasons"].to_string();
        assert!(reasons.contains(why), "{args}: {reasons}");
        assert!(v["predicted_risk"].as_f64().is_some(), "{args}");
    }
    assert!(!dir.exists(), "no witness without a refutation");
}

/// Weight decays where the prediction is not finite in f64 are bad input,
/// with the parameter named; huge but finite ones print short numbers.
#[test]
fn extreme_weight_decays_are_refused_or_printed_short() {
    for lam in ["5e-324", "1e-320"] {
        let o = tiny(&["--lambda", lam]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{lam}: {err}");
        assert!(
            err.contains("lambda_u") && err.lines().count() == 1,
            "{err}"
        );
    }
    let o = tiny(&["--lambda", "1e200", "--restarts", "2"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("sqrt(lambda_W lambda_U) = 1.000000e200"),
        "{out}"
    );
    assert!(out.lines().all(|l| l.len() < 400), "{out}");
    let o = fcollapse(&[
        "predict", "--nc", "2", "--sc", "2", "--len", "2", "--dim", "2", "--lambda", "1e308",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("phase trivial") && !out.contains("NaN"),
        "{out}"
    );
}

/// A deliberately wrong candidate is refuted (exit 1); when the witness folder
/// cannot be written, the report is still printed and stderr says why.
#[test]
fn a_refutation_with_an_unwritable_witness_dir_keeps_its_report() {
    let blocker = std::env::temp_dir().join(format!("fc-blocker-{}", std::process::id()));
    std::fs::write(&blocker, b"a file, not a folder").unwrap();
    let wd = blocker.join("sub");
    let o = fcollapse(&[
        "verify",
        "--theorem",
        "1",
        "--restarts",
        "2",
        "--candidate-scale",
        "1.01",
        "--witness-dir",
        wd.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("verdict    refuted"), "{out}");
    assert!(out.contains("decreases along -grad R"), "{out}");
    assert!(err.contains("--witness-dir"), "{err}");
    std::fs::remove_file(&blocker).unwrap();
}

/// Thousands of restarts that all hit the iteration cap: the report names a few
/// and counts the rest, no line runs to megabytes.
#[test]
fn many_failed_restarts_make_short_lines() {
    let o = tiny(&["--restarts", "3000", "--max-iters", "1"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.contains("and 2992 more"), "{out}");
    assert!(
        out.lines().all(|l| l.len() < 2000),
        "a line of {} bytes",
        out.lines().map(str::len).max().unwrap_or(0)
    );
}
