//! `fcollapse atlas` with the SPEC key `certify = true` on the real binary: each
//! instance's result carries its proof (`proved`, or `not applicable` with the
//! reason on a drawn latent set), the report gets a "proved" column, a count line
//! and the type-III count; a SPEC without the key writes and reports as before;
//! without the `certify` feature the key is a bad-input error naming it.

mod common;
use common::fcollapse;

use std::path::{Path, PathBuf};
use std::process::Output;

fn scratch(name: &str) -> PathBuf {
    common::scratch("fcollapse-atlas-cert", name)
}

/// Eight full-latent-set instances (uniform and Zipf, both phases, with and
/// without LayerNorm) and one drawn latent set; `head` goes before the grids.
fn spec(dir: &Path, head: &str) -> PathBuf {
    let p = dir.join("spec.in.toml");
    let text = format!(
        r#"{head}
[[grid]]
name = "full"
n_c = 2
s_c = 2
len = 2
dim = 2
freq = ["uniform", "zipf"]
lambda_ratio = [0.5, 2.0]
restarts = 1

[[grid]]
name = "ln"
n_c = 2
s_c = 2
len = 2
dim = 3
freq = ["uniform", "zipf"]
lambda_ratio = [0.5, 2.0]
layer_norm = true
restarts = 1

[[grid]]
name = "drawn"
n_c = 2
s_c = 2
len = 2
dim = 2
classes = 3
seed = 1
restarts = 1
"#
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run_and_report(spec: &Path, out: &Path) -> (Output, String) {
    let o = fcollapse(&[
        "atlas",
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let r = fcollapse(&["atlas", "report", out.to_str().unwrap()]);
    common::assert_success(&r);
    (o, std::fs::read_to_string(out.join("atlas.md")).unwrap())
}

#[cfg(feature = "certify")]
#[test]
fn every_instance_carries_its_proof_and_the_report_counts_them() {
    let dir = scratch("on");
    let out = dir.join("out");
    let (o, md) = run_and_report(&spec(&dir, "certify = true"), &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(matches!(o.status.code(), Some(0 | 4)), "{stdout}");
    let all = lines(&out);
    assert_eq!(all.len(), 9);
    let mut zipf_collapsed = 0;
    for l in &all {
        assert!(l["error"].is_null(), "{l}");
        let c = &l["certificate"];
        let full = l["instance"]["task"]["classes"].is_null();
        if !full {
            assert_eq!(c["verdict"], "not applicable");
            assert!(c["reason"].as_str().unwrap().contains("classes"), "{c}");
            assert!(c["seconds"].is_null());
            continue;
        }
        assert_eq!(c["verdict"], "proved", "{c}");
        assert!(c["reason"].is_null());
        assert!(c["seconds"].as_f64().unwrap() >= 0.0);
        // R* is enclosed, narrowly, and holds verify's predicted risk (up to its round-off)
        let lo = c["risk_enclosure"][0].as_f64().unwrap();
        let hi = c["risk_enclosure"][1].as_f64().unwrap();
        let pred = l["predicted_risk"].as_f64().unwrap();
        assert!(
            lo <= hi && hi - lo <= 1e-10 * hi.abs().max(1.0),
            "[{lo}, {hi}]"
        );
        assert!(
            lo - 1e-12 <= pred && pred <= hi + 1e-12,
            "{pred} vs [{lo}, {hi}]"
        );
        // the proof's phase is verify's
        assert_eq!(c["phase"], l["report"]["phase"], "{l}");
        if c["phase"] == "collapsed" {
            assert!(c["transverse_lower_bound"].as_f64().unwrap() > 0.0);
            if l["instance"]["theorem"] == 2 {
                assert_eq!(c["kind"], "III");
                zipf_collapsed += 1;
            }
        }
    }
    assert_eq!(zipf_collapsed, 1);
    assert!(
        stdout.contains("proofs: 8 proved, 0 unproved, 1 not applicable"),
        "{stdout}"
    );
    assert!(md.contains("| proved (of applicable) |"), "{md}");
    // theorem 1: uniform without LayerNorm, both phases
    assert!(md.contains("| 1 | 3 |"), "{md}");
    assert!(md.contains("| 2 of 2 |"), "{md}");
    assert!(
        md.contains("**8 proved, 0 unproved, 1 not applicable** (1 of them on a drawn latent set)"),
        "{md}"
    );
    assert!(md.contains("phase): 1 of 1 instances proved"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_spec_without_the_key_writes_and_reports_as_before() {
    let dir = scratch("off");
    let out = dir.join("out");
    let (o, md) = run_and_report(&spec(&dir, "certify = false"), &out);
    assert!(matches!(o.status.code(), Some(0 | 4)));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("proofs"));
    for l in lines(&out) {
        assert!(l.get("certificate").is_none(), "{l}");
    }
    assert!(!md.contains("proved"), "{md}");
    assert!(!md.contains("## Proofs"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_certify_keys_are_optional_and_checked() {
    use feature_collapse::atlas::parse;
    let grid = "[[grid]]\nn_c = 2\ns_c = 2\nlen = 2\ndim = 2\n";
    let s = parse(grid).unwrap();
    assert!(!s.certify);
    assert_eq!(s.certify_max_rows, None);
    let s = parse(&format!("certify = true\ncertify_max_rows = 100\n{grid}")).unwrap();
    assert!(s.certify);
    assert_eq!(s.certify_max_rows, Some(100));
    let e = parse(&format!("certify_max_rows = 0\n{grid}")).unwrap_err();
    assert!(e.report().contains("certify_max_rows"), "{}", e.report());
    let e = parse(&format!("certify = 1\n{grid}")).unwrap_err();
    assert!(e.report().contains("`certify`"), "{}", e.report());
}

#[test]
fn a_certify_key_that_is_not_a_boolean_is_refused() {
    let dir = scratch("bad");
    let out = dir.join("out");
    let o = fcollapse(&[
        "atlas",
        "run",
        spec(&dir, "certify = \"yes\"").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`certify`"), "{err}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(not(feature = "certify"))]
#[test]
fn without_the_feature_certify_true_is_a_bad_input_error_naming_it() {
    let dir = scratch("nofeature");
    let out = dir.join("out");
    let o = fcollapse(&[
        "atlas",
        "run",
        spec(&dir, "certify = true").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("`certify`") && err.contains("--features certify"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "certify")]
#[test]
fn instances_over_certify_max_rows_are_not_applicable_with_the_reason() {
    let dir = scratch("rows");
    let out = dir.join("out");
    // every full instance here has L n_w K = 2 * 4 * 4 = 32 rows
    let (o, md) = run_and_report(&spec(&dir, "certify = true\ncertify_max_rows = 31"), &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("proofs: 0 proved, 0 unproved, 9 not applicable"),
        "{stdout}"
    );
    for l in lines(&out) {
        let why = l["certificate"]["reason"].as_str().unwrap().to_string();
        if l["instance"]["task"]["classes"].is_null() && l["instance"]["task"]["dim"] == 2 {
            assert!(
                why.contains("L n_w K = 32 rows") && why.contains("certify_max_rows = 31"),
                "{why}"
            );
        }
    }
    assert!(
        md.contains("phase): 0 of 1 instances proved a strict local minimiser up to symmetry (0 unproved, 1 not applicable)"),
        "{md}"
    );
    assert!(md.contains("; 0.0 s of proofs in all."), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}
