//! Runs the real `fcollapse` binary.

mod common;
use common::fcollapse;

use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

#[test]
fn verify_default_passes_all_three_theorems() {
    let o = fcollapse(&["verify"]);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{out}\nstderr:\n{}",
        stderr(&o)
    );
    for t in 1..=3 {
        assert!(out.contains(&format!("Theorem {t}:")), "{out}");
    }
    assert_eq!(out.matches("verdict    confirmed").count(), 3, "{out}");
    assert!(out.contains("ALL CONFIRMED"));
}

#[test]
fn verify_json_carries_the_summary_fields() {
    let o = fcollapse(&[
        "verify",
        "--theorem",
        "2",
        "--nc",
        "3",
        "--sc",
        "3",
        "--len",
        "3",
        "--dim",
        "4",
        "--lambda",
        "0.01",
        "--freq",
        "zipf",
        "--restarts",
        "3",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1);
    let v = &lines[0];
    assert_eq!(v["theorem"], 2);
    assert_eq!(v["passed"], true);
    let pred = v["predicted_risk"].as_f64().unwrap();
    let best = v["best_risk"].as_f64().unwrap();
    assert!(
        (pred - best).abs() <= 1e-8 * pred.abs().max(1.0),
        "{pred} vs {best}"
    );
    assert!(v["grad_norm_at_prediction"].as_f64().unwrap() < 1e-10);
    assert!(v["hessian_min_eig"].as_f64().unwrap() > -1e-6);
    assert!(v["collapse_distance"].as_f64().unwrap() < 1e-4);
    assert!(v["type_i_grad_norm"].as_f64().unwrap() > 1e-4);
    let r = v["prediction"]["r"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert!(
        r[0].as_f64().unwrap() > r[2].as_f64().unwrap(),
        "frequent tokens get larger norms"
    );
}

#[test]
fn predict_preset_mean_field_json() {
    let o = fcollapse(&[
        "predict",
        "--preset",
        "fig3",
        "--form",
        "mean-field",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    let a = v["word_norm"].as_f64().unwrap();
    let b = v["u_norm"].as_f64().unwrap();
    assert!(a > 0.0 && b > 0.0);
    assert_eq!(v["kind"], "I");
    assert_eq!(v["task"]["k"], 1000);
    assert_eq!(v["task"]["n_w"], 1200);
    // preset fig4c is type II: the word norm is sqrt(d) = 10
    let o = fcollapse(&["predict", "--preset", "fig4c", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(v["kind"], "II");
    assert!((v["word_norm"].as_f64().unwrap() - 10.0).abs() < 1e-12);
    // explicit flags override the preset
    let o = fcollapse(&["predict", "--preset", "fig3", "--classes", "50", "--json"]);
    assert_eq!(json_lines(&o)[0]["task"]["k"], 50);
}

#[test]
fn bad_input_gets_one_line_and_exit_code_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["predict", "--nc", "3", "--nw", "1201"], "nw"),
        (&["verify", "--theorem", "1", "--dim", "0"], "dim"),
        (&["verify", "--theorem", "3", "--dim", "1"], "dim"),
        (&["verify", "--lambda", "-1"], "lambda_w"),
        (&["predict", "--lambda-u", "NaN"], "lambda_u"),
        (&["predict", "--classes", "0"], "classes"),
        (&["predict", "--zipf-exponent", "-1"], "zipf_exponent"),
        (
            &["verify", "--theorem", "1", "--sc", "4", "--len", "9"],
            "operations",
        ),
        (&["verify", "--theorem", "1", "--freq", "zipf"], "freq"),
        (&["verify", "--restarts", "0"], "restarts"),
    ];
    for (args, name) in cases {
        let o = fcollapse(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line expected, got {err}"
        );
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(name), "{args:?}: should name {name}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
