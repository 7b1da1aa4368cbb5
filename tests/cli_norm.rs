//! `--norm` on the command line: `--layer-norm` is `--norm layer`, a conflict is
//! bad input (exit 2) naming `norm`, and the JSON records the normalization.

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .args(args)
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let o = run(args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn layer_norm_flag_is_norm_layer_and_rms_predicts_type_ii() {
    let base = [
        "predict",
        "--nc",
        "3",
        "--sc",
        "3",
        "--len",
        "2",
        "--dim",
        "4",
        "--freq",
        "zipf",
        "--lambda-w",
        "0",
        "--json",
    ];
    let with = |extra: &[&str]| json(&[&base[..], extra].concat());
    let a = with(&["--layer-norm"]);
    let b = with(&["--norm", "layer"]);
    assert_eq!(a["risk"], b["risk"]);
    assert_eq!(a["task"]["norm"]["kind"], "layer");
    let r = with(&["--norm", "rms", "--eps", "0.001"]);
    assert_eq!(
        r["task"]["norm"],
        serde_json::json!({"kind": "rms", "eps": 0.001})
    );
    assert_eq!(r["kind"], "II");
    assert_eq!(r["risk"], b["risk"], "same type-II formula at d >= n_c");
    let c = json(&[&base[..11], &["--json", "--norm", "center"]].concat());
    assert_eq!(c["kind"], "III");
    assert_eq!(c["task"]["layer_norm"], serde_json::Value::Null);
}

#[test]
fn conflicting_or_unknown_norms_are_bad_input() {
    for args in [
        &["predict", "--layer-norm", "--norm", "rms"][..],
        &["predict", "--norm", "batch"][..],
        &["predict", "--norm", "center", "--dim", "1"][..],
    ] {
        let o = run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("norm") || err.contains("dim"),
            "{args:?}: {err}"
        );
    }
}
