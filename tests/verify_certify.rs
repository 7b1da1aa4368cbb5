//! `fcollapse verify --certify` on the real binary: the certificate of `certify`
//! appended to each theorem's report (text and JSON), the exit code left to the
//! verify verdicts, and the bad inputs; without the `certify` feature, the flag is
//! a one-line bad-input error.

use std::process::{Command, Output};

fn fcollapse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .args(args)
        .output()
        .expect("run fcollapse")
}

/// `verify` of theorem 2 (Zipf, type III) on a small instance, with `args`.
#[cfg(feature = "certify")]
fn zipf(args: &[&str]) -> Output {
    let base = [
        "verify",
        "--theorem",
        "2",
        "--nc",
        "2",
        "--sc",
        "3",
        "--len",
        "2",
        "--dim",
        "2",
        "--restarts",
        "3",
    ];
    fcollapse(&[&base[..], args].concat())
}

#[cfg(feature = "certify")]
fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[cfg(feature = "certify")]
#[test]
fn the_certificate_is_appended_to_the_text_report() {
    let o = zipf(&["--certify"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let report = out.find("Theorem 2:").expect("the verify report");
    let cert = out.find("Certificate:").expect("the certificate");
    assert!(report < cert, "{out}");
    let tail = &out[cert..];
    assert!(tail.contains("phase      collapsed, type III"), "{out}");
    assert!(tail.contains("verdict    proved"), "{out}");
    assert!(tail.contains("R*         in ["), "{out}");
    assert!(
        out.contains("ALL CONFIRMED\nPROOFS: 1 of 1 proved"),
        "{out}"
    );
}

#[cfg(feature = "certify")]
#[test]
fn json_reports_carry_a_certificate_object_enclosing_the_predicted_risk() {
    let plain = json_lines(&zipf(&["--json"]));
    let o = zipf(&["--json", "--certify"]);
    assert_eq!(o.status.code(), Some(0));
    let with = json_lines(&o);
    assert_eq!((plain.len(), with.len()), (1, 1));
    let (plain, with) = (&plain[0], &with[0]);
    // every field of the plain report is there, unchanged where deterministic
    for (k, v) in plain.as_object().unwrap() {
        assert!(with.get(k).is_some(), "{k} missing");
        if ["predicted_risk", "phase", "statement", "task", "version"].contains(&k.as_str()) {
            assert_eq!(with.get(k), Some(v), "{k}");
        }
    }
    let c = &with["certificate"];
    assert_eq!(c["verdict"], "proved");
    assert_eq!(c["phase"], "collapsed");
    assert_eq!(c["kind"], "III");
    assert!(c["reasons"].as_array().unwrap().is_empty());
    let lo = c["risk_enclosure"][0].as_f64().unwrap();
    let hi = c["risk_enclosure"][1].as_f64().unwrap();
    let pred = with["predicted_risk"].as_f64().unwrap();
    assert!(lo <= hi && hi - lo <= 1e-10 * hi, "[{lo}, {hi}]");
    // the float prediction lies within its evaluation error of the enclosure
    assert!(
        lo - 1e-12 <= pred && pred <= hi + 1e-12,
        "{pred} vs [{lo}, {hi}]"
    );
    let m = c["transverse_lower_bound"].as_f64().unwrap();
    let r = c["radius"].as_f64().unwrap();
    let d = c["distance_bound"].as_f64().unwrap();
    assert!(m > 0.0 && 0.0 <= d && d < r, "m {m} r {r} d {d}");
    // the certificate is about the report's instance
    for k in ["n_c", "s_c", "len", "dim", "freq", "lambda_w", "lambda_u"] {
        assert_eq!(c["instance"][k], with["task"][k], "{k}");
    }
}

#[cfg(feature = "certify")]
#[test]
fn a_wrong_candidate_is_refuted_and_unproved_and_the_exit_code_is_verify_s() {
    let dir = std::env::temp_dir().join(format!("fcollapse-vc-{}", std::process::id()));
    let d = dir.to_string_lossy().to_string();
    let o = zipf(&[
        "--json",
        "--certify",
        "--candidate-scale",
        "1.5",
        "--witness-dir",
        &d,
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    // verify refutes the wrong candidate (exit 1); the proof is unproved with its reason
    assert_eq!(o.status.code(), Some(1));
    let lines = json_lines(&o);
    assert_eq!(lines[0]["verdict"], "refuted");
    let c = &lines[0]["certificate"];
    assert_eq!(c["verdict"], "unproved");
    assert_eq!(c["candidate"]["scale"], 1.5);
    assert!(!c["reasons"].as_array().unwrap().is_empty());
    assert!(c["transverse_lower_bound"].is_null());
}

#[cfg(feature = "certify")]
#[test]
fn an_instance_certify_does_not_cover_is_refused_before_anything_runs() {
    let o = zipf(&["--certify", "--classes", "3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty(), "nothing verified");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("`classes`"), "{err}");
}

#[cfg(not(feature = "certify"))]
#[test]
fn without_the_feature_certify_is_a_one_line_bad_input_error() {
    let o = fcollapse(&["verify", "--theorem", "1", "--certify"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty(), "nothing verified");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("`certify`"), "{err}");
    assert!(err.contains("--features certify"), "{err}");
}
