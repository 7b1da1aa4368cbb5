//! Bad input on the real binary: huge sizes, too many classes, negative
//! numbers, long numbers. Each ends with one line naming the parameter and
//! exit code 2, at once and without allocating.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn fcollapse(args: &[&str]) -> (Output, Duration) {
    let t0 = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .args(args)
        .output()
        .expect("run fcollapse");
    (o, t0.elapsed())
}

fn assert_bad_input(args: &[&str], name: &str) -> String {
    let (o, _) = fcollapse(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(err.contains(name), "{args:?}: should name {name}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err
}

#[test]
fn huge_sizes_are_refused_before_any_allocation() {
    let max = u64::MAX.to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["predict", "--classes", &max], "classes"),
        (&["predict", "--len", "1000000000000"], "len"),
        (&["predict", "--len", "4294967297"], "len"), // 2^32 + 1: no u32 truncation
        (
            &["predict", "--len", "40", "--classes", "100000000"],
            "classes",
        ),
        (&["predict", "--sc", &max], "s_c"),
        (&["predict", "--sc", "1000000000000"], "s_c"),
        (&["predict", "--dim", "1000000000000"], "dim"),
        (&["predict", "--dim", &max], "dim"),
        (
            &["verify", "--theorem", "1", "--classes", "100000000"],
            "classes",
        ),
        (&["train", "--classes", &max, "--quiet"], "classes"),
        (&["train", "--dim", "100000000000", "--quiet"], "dim"),
    ];
    for (args, name) in cases {
        assert_bad_input(args, name);
    }
}

#[test]
fn more_classes_than_latent_variables_is_bad_input() {
    // the default predict instance has n_c = 3, L = 2: 9 latent variables
    let err = assert_bad_input(&["predict", "--classes", "10"], "classes");
    assert!(err.contains("n_c^L = 9"), "{err}");
    let (o, _) = fcollapse(&["predict", "--classes", "9", "--json"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn negative_numbers_are_values_of_every_option() {
    assert_bad_input(&["verify", "--grad-tol", "-1"], "grad_tol");
    assert_bad_input(&["verify", "--restarts", "-1"], "--restarts");
    assert_bad_input(&["predict", "--nc", "-3"], "--nc");
    assert_bad_input(&["train", "--lr", "-0.5", "--quiet"], "lr");
}

#[test]
fn long_numbers_are_printed_short() {
    let tiny = format!("-0.{}1", "0".repeat(299));
    let err = assert_bad_input(&["predict", "--lambda-w", &tiny], "lambda_w");
    assert!(err.len() < 200, "{err}");
    assert!(err.contains("-1e-300"), "{err}");
}

#[test]
fn frequencies_print_in_the_paper_notation() {
    let (o, _) = fcollapse(&["predict", "--zipf-exponent", "1.5"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("mu=zipf(s=1.5)"), "{out}");
    assert!(!out.contains("Zipf {"), "{out}");
}

#[test]
fn a_preset_class_count_above_n_c_pow_l_becomes_the_full_latent_set() {
    // fig3 has K = 1000; with --len 2 there are only 9 latent variables
    let (o, _) = fcollapse(&["predict", "--preset", "fig3", "--len", "2", "--json"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["task"]["k"], 9, "{out}");
    assert_eq!(v["task"]["full_latent"], true, "{out}");
    // an explicit --classes above n_c^L stays an error
    assert_bad_input(
        &[
            "predict",
            "--preset",
            "fig3",
            "--len",
            "2",
            "--classes",
            "10",
        ],
        "classes",
    );
}

#[test]
fn degenerate_instances_are_bad_input() {
    // one class: the cross entropy is identically 0
    assert_bad_input(&["verify", "--theorem", "3", "--classes", "1"], "classes");
    // converge needs a collapsed limit minimiser (lambda below lambda_critical)
    let err = assert_bad_input(&["converge", "--theorem", "1", "--lambda", "0.5"], "lambda");
    assert!(err.contains("lambda_critical"), "{err}");
}
