//! `fcollapse certify` on the real binary: the default instances and the trivial
//! phase are proved, every deliberately wrong candidate is `unproved`, and
//! `--check` re-derives a certificate written by another run (and rejects a
//! tampered one). Built without the `certify` feature, the subcommand says how
//! to enable it.

mod common;
use common::fcollapse;

#[cfg(not(feature = "certify"))]
#[test]
fn without_the_feature_certify_says_how_to_enable_it() {
    let o = fcollapse(&["certify"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--features certify"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[cfg(feature = "certify")]
mod with_feature {
    use super::fcollapse;
    use serde_json::Value;

    /// `certify ARGS --json`: exit code and one JSON certificate per instance.
    fn certify_json(args: &str) -> (i32, Vec<Value>) {
        let mut a: Vec<&str> = vec!["certify"];
        a.extend(args.split_whitespace());
        a.push("--json");
        let o = fcollapse(&a);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let certs = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{err}")))
            .collect();
        (o.status.code().unwrap_or(-1), certs)
    }

    fn rel_width(c: &Value) -> f64 {
        let lo = c["risk_enclosure"][0].as_f64().unwrap();
        let hi = c["risk_enclosure"][1].as_f64().unwrap();
        assert!(lo <= hi);
        (hi - lo) / lo.abs()
    }

    #[test]
    fn the_three_default_instances_are_proved_with_narrow_enclosures() {
        let (code, certs) = certify_json("");
        assert_eq!(code, 0);
        assert_eq!(certs.len(), 3);
        for (c, kind) in certs.iter().zip(["I", "III", "II"]) {
            assert_eq!(c["verdict"], "proved", "{c}");
            assert_eq!(c["phase"], "collapsed");
            assert_eq!(c["kind"], kind);
            assert!(c["version"].is_string());
            assert!(rel_width(c) <= 1e-10, "{}", rel_width(c));
            assert!(c["reduced_rel_width"].as_f64().unwrap() <= 1e-10);
            let m = c["transverse_lower_bound"].as_f64().unwrap();
            let r = c["radius"].as_f64().unwrap();
            let dist = c["distance_bound"].as_f64().unwrap();
            assert!(m > 0.0 && dist < r && r < 1e-6, "{m} {r} {dist}");
            // Every enclosure has exact endpoints.
            for e in c["enclosures"].as_array().unwrap() {
                assert!(e["lo"].as_str().unwrap().contains("0x") || e["lo"] == "-inf");
            }
            assert!(c["reasons"].as_array().unwrap().is_empty());
        }
        // R* agrees with the reduced prediction of `predict` to 1e-12.
        let pred = fcollapse(&[
            "predict", "--nc", "3", "--sc", "3", "--len", "3", "--dim", "4", "--freq", "zipf",
            "--lambda", "0.01", "--json",
        ]);
        let p: Value = serde_json::from_slice(&pred.stdout).unwrap();
        let risk = p["risk"].as_f64().unwrap();
        let lo = certs[1]["risk_enclosure"][0].as_f64().unwrap();
        assert!((risk - lo).abs() <= 1e-12 * risk, "{risk} vs {lo}");
    }

    #[test]
    fn every_wrong_candidate_is_unproved() {
        for args in [
            // A type-I prediction on a Zipf instance.
            "--theorem 2 --candidate type-i",
            // Constants perturbed by 1e-6.
            "--theorem 1 --candidate-scale 1.000001",
            "--theorem 2 --candidate-scale 0.999999",
            "--theorem 3 --candidate-scale 1.000001",
            // The origin below lambda_crit (a saddle).
            "--theorem 1 --candidate origin",
            "--theorem 2 --candidate origin --lambda 0.12",
        ] {
            let (code, certs) = certify_json(args);
            assert_eq!(code, 4, "{args}");
            assert_eq!(certs.len(), 1);
            let c = &certs[0];
            assert_eq!(c["verdict"], "unproved", "{args}: {c}");
            assert!(!c["reasons"].as_array().unwrap().is_empty());
            assert!(c["transverse_lower_bound"].is_null());
        }
    }

    #[test]
    fn the_trivial_phase_is_proved_above_lambda_crit_only() {
        // lambda_crit = sqrt(1/54) = 0.1360828 for theorem 1's instance.
        let (code, c) = certify_json("--theorem 1 --lambda 0.137");
        assert_eq!(code, 0);
        assert_eq!(c[0]["phase"], "trivial");
        let lo = c[0]["risk_enclosure"][0].as_f64().unwrap();
        let hi = c[0]["risk_enclosure"][1].as_f64().unwrap();
        assert!(lo <= 27f64.ln() && 27f64.ln() <= hi);
        let (code, c) = certify_json("--theorem 1 --lambda 0.135");
        assert_eq!(code, 0);
        assert_eq!(c[0]["phase"], "collapsed");
        let (code, c) = certify_json("--theorem 1 --lambda 0.135 --candidate origin");
        assert_eq!(code, 4);
        assert_eq!(c[0]["phase"], "trivial");
    }

    #[test]
    fn check_rederives_a_certificate_and_rejects_a_tampered_one() {
        let dir = std::env::temp_dir().join(format!("fc-certify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("theorem3.jsonl");
        let f = file.to_str().unwrap();
        let o = fcollapse(&["certify", "--theorem", "3", "--out", f]);
        assert_eq!(o.status.code(), Some(0));
        let o = fcollapse(&["certify", "--check", f]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{out}");
        assert!(out.contains("check      proved"), "{out}");

        // A narrower risk enclosure than proved is a false claim.
        let text = std::fs::read_to_string(&file).unwrap();
        let mut v: Value = serde_json::from_str(text.trim()).unwrap();
        let lo = v["risk_enclosure"][0].as_f64().unwrap();
        v["risk_enclosure"][1] = Value::from(lo);
        let bad = dir.join("tampered.json");
        std::fs::write(&bad, v.to_string()).unwrap();
        let o = fcollapse(&["certify", "--check", bad.to_str().unwrap()]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(4), "{out}");
        assert!(out.contains("[FAILS] risk_enclosure"), "{out}");

        // A wrong candidate relabelled "proved" is re-derived as unproved.
        let file2 = dir.join("wrong.jsonl");
        let f2 = file2.to_str().unwrap();
        let o = fcollapse(&[
            "certify",
            "--theorem",
            "2",
            "--candidate",
            "type-i",
            "--out",
            f2,
        ]);
        assert_eq!(o.status.code(), Some(4));
        let text = std::fs::read_to_string(&file2).unwrap();
        let mut v: Value = serde_json::from_str(text.trim()).unwrap();
        v["verdict"] = Value::from("proved");
        std::fs::write(&file2, v.to_string()).unwrap();
        let o = fcollapse(&["certify", "--check", f2]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(4), "{out}");
        assert!(out.contains("[FAILS] verdict"), "{out}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_input_is_one_line_with_exit_2() {
        for (args, name) in [
            (vec!["certify", "--candidate-scale", "0"], "candidate_scale"),
            (
                vec!["certify", "--theorem", "1", "--classes", "5"],
                "classes",
            ),
            (
                vec!["certify", "--check", "/nonexistent/file.json"],
                "nonexistent",
            ),
        ] {
            let o = fcollapse(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains(name), "{args:?}: {err}");
            if name != "nonexistent" {
                assert_eq!(o.status.code(), Some(2), "{args:?}");
            } else {
                assert_eq!(o.status.code(), Some(3));
            }
        }
    }
}
