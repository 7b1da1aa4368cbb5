//! `fcollapse analyze` NC1–NC4 and `--hessian`: the binary's JSON against the
//! library on the same weights, the figure, and the flags' errors.

use feature_collapse::analyze::{self, AnalyzeConfig};
use feature_collapse::limit;
use feature_collapse::network::Params;
use feature_collapse::npy::write_npy_f64;
use feature_collapse::spectrum::{hessian_spectrum, SpectrumConfig};
use feature_collapse::task::{Freq, Task, TaskConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("analyze_hessian")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fcollapse(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .current_dir(dir)
        .arg("analyze")
        .args(args)
        .output()
        .unwrap()
}

fn setup(dir: &Path) -> (Task, Params) {
    let t = TaskConfig {
        n_c: 3,
        s_c: 2,
        len: 2,
        dim: 3,
        freq: Freq::Zipf { exponent: 1.0 },
        ..TaskConfig::default()
    }
    .build()
    .unwrap();
    let p = Params::random(&t, 0.7, &mut ChaCha8Rng::seed_from_u64(6));
    write_npy_f64(&dir.join("W.npy"), &[t.n_w(), t.dim()], &p.w).unwrap();
    write_npy_f64(&dir.join("U.npy"), &[t.k(), t.len() * t.dim()], &p.u).unwrap();
    let task_json = serde_json::json!({ "task": t });
    std::fs::write(dir.join("task.json"), task_json.to_string()).unwrap();
    (t, p)
}

fn close(a: &serde_json::Value, b: f64, rel: f64) -> bool {
    let a = a.as_f64().unwrap();
    (a - b).abs() <= rel * b.abs().max(1e-300)
}

#[test]
fn nc_and_hessian_in_json_match_the_library() {
    let dir = out_dir("json");
    let (t, p) = setup(&dir);
    let base = ["--w", "W.npy", "--u", "U.npy", "--task", "task.json"];
    let flags = [
        "--hessian",
        "--top-k",
        "3",
        "--hutchinson-probes",
        "30",
        "--slq-probes",
        "4",
        "--slq-steps",
        "20",
        "--seed",
        "5",
        "--json",
        "--plots",
        "figs",
    ];
    let out = fcollapse(&dir, &[&base[..], &flags[..]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let cfg = AnalyzeConfig {
        seed: 5,
        ..AnalyzeConfig::default()
    };
    let a = analyze::analyze(&t, &p, &cfg).unwrap();
    for (key, want) in [
        ("nc1", a.nc.classes.nc1),
        ("nc3", a.nc.classes.nc3.unwrap()),
        ("nc4", a.nc.classes.nc4.unwrap()),
        ("nc2_cos_shift_means", a.nc.classes.nc2_cos_shift_means),
    ] {
        assert!(
            close(&got["nc"]["classes"][key], want, 1e-12),
            "{key}: {}",
            got["nc"]
        );
    }
    assert!(close(&got["nc"]["tokens"]["nc1"], a.nc.tokens.nc1, 1e-12));
    assert_eq!(got["nc"]["tokens"]["nc3"], serde_json::Value::Null);
    assert_eq!(got["nc"]["nc4_exact"], true);

    let scfg = SpectrumConfig {
        top_k: 3,
        hutchinson_probes: 30,
        slq_probes: 4,
        slq_steps: 20,
        seed: 5,
        ..SpectrumConfig::default()
    };
    let h = hessian_spectrum(&t, &p, &scfg, limit::DEFAULT_WORK_BUDGET).unwrap();
    let gh = &got["hessian"];
    assert_eq!(gh["n_params"], h.n_params);
    let top = gh["top"]["values"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    for (g, w) in top.iter().zip(&h.top.values) {
        assert!(close(g, *w, 1e-9), "{g} vs {w}");
    }
    assert!(close(&gh["trace"]["value"], h.trace.value, 1e-9));
    assert!(close(&gh["trace"]["std_error"], h.trace.std_error, 1e-6));
    assert_eq!(gh["trace"]["probes"], 30);
    assert_eq!(gh["slq"]["nodes"].as_array().unwrap().len(), 4);
    assert_eq!(gh["density"]["values"].as_array().unwrap().len(), 512);
    let figs = got["figures"].as_array().unwrap();
    assert_eq!(figs.len(), 4);
    let png = dir.join(figs[3].as_str().unwrap());
    assert!(png.ends_with("figs/analyze_hessian.png"));
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);

    // Text output: the NC lines, and the Hessian lines only with --hessian.
    let out = fcollapse(&dir, &base);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("NC         tokens by concept (n_c = 3, d = 3): NC1"),
        "{text}"
    );
    assert!(text.contains("NC4") && !text.contains("hessian"), "{text}");
    let out = fcollapse(&dir, &[&base[..], &["--hessian", "--top-k", "2"]].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  top-2 ") && text.contains("(Hutchinson, 100 Rademacher probes)"),
        "{text}"
    );
}

#[test]
fn hessian_flags_are_checked() {
    let dir = out_dir("errors");
    setup(&dir);
    let base = [
        "--w",
        "W.npy",
        "--u",
        "U.npy",
        "--task",
        "task.json",
        "--hessian",
    ];
    for (extra, needle) in [
        (vec!["--hutchinson-probes", "1"], "hutchinson-probes"),
        (vec!["--top-k", "0"], "top-k"),
        (vec!["--slq-steps", "0"], "slq-steps"),
        (vec!["--slq-sigma", "-1"], "slq-sigma"),
        (vec!["--budget", "10"], "budget"),
    ] {
        let out = fcollapse(&dir, &[&base[..], &extra[..]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // Without --hessian the spectrum flags are not used, and a small budget
    // only switches the risk to sampling.
    let out = fcollapse(
        &dir,
        &[
            "--w",
            "W.npy",
            "--u",
            "U.npy",
            "--task",
            "task.json",
            "--budget",
            "10",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
