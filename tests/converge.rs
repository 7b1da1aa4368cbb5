//! The convergence study (`feature_collapse::converge`, `feature_collapse::empirical`,
//! `fcollapse converge`): the weighted sample risk against the limit, its
//! gradient against finite differences, the sign of the fitted rates on a small
//! run, resumable results, and bad flags.

use feature_collapse::converge::lbfgs::{self, LbfgsOptions};
use feature_collapse::converge::{draw_data, ConvergeConfig, Reference};
use feature_collapse::empirical::{sample_risk, sample_risk_grad, SampleProblem, WeightedSample};
use feature_collapse::limit;
use feature_collapse::metrics::family_distance;
use feature_collapse::network::Params;
use feature_collapse::task::{Freq, TaskConfig};
use feature_collapse::train::{TrainConfig, Trainer};
use feature_collapse::verify::Theorem;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::process::{Command, Output};

fn fcollapse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .args(args)
        .output()
        .expect("run fcollapse")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A fresh scratch directory under the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fcollapse-converge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// ERM on the "sample" of every token choice weighted by its probability is the
/// limit problem itself: L-BFGS from a random start ends at `R*`, in the
/// predicted family, for types I, III and II.
#[test]
fn erm_on_the_exhaustive_sample_finds_the_limit_minimiser() {
    for theorem in Theorem::ALL {
        let task = theorem.default_task().build().unwrap();
        let cfg = ConvergeConfig::default();
        let reference = Reference::of(&task, &cfg).unwrap();
        // M-estimation coefficient of the ERM's excess risk: zero for type II,
        // where every sentence of a class has the same gradient at the minimiser
        let c = reference.erm_excess_coefficient.unwrap();
        if theorem == Theorem::Three {
            assert!(c.abs() < 1e-20, "type II coefficient {c}");
        } else {
            assert!(c > 1e-4, "theorem {theorem:?}: coefficient {c}");
        }
        assert!(reference.sgd_floor.unwrap() > 0.0);
        let sample = WeightedSample::exhaustive(&task, 1 << 16).unwrap();
        assert_eq!(sample.n(), 27 * task.s_c().pow(3));
        let shape = Params::zeros(&task);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let start = Params::random(&task, 0.5, &mut rng);
        let problem = SampleProblem {
            task: &task,
            sample: &sample,
            shape: shape.clone(),
        };
        let fit =
            lbfgs::minimise(&problem, start.to_flat(), &LbfgsOptions::default(), None).unwrap();
        assert!(fit.converged, "theorem {theorem:?}: {fit:?}");
        let p = shape.with_flat(&fit.x);
        let r = limit::risk(&task, &p);
        assert!(
            (r - reference.r_star).abs() <= 1e-10 * reference.r_star,
            "theorem {theorem:?}: R(ERM) = {r}, R* = {}",
            reference.r_star
        );
        assert!(
            (fit.value - r).abs() <= 1e-12 * r,
            "sample risk = limit risk"
        );
        let fd = family_distance(&task, &p, &reference.prediction);
        assert!(
            fd.max <= 1e-4,
            "theorem {theorem:?}: family distance {fd:?}"
        );
    }
}

/// A drawn sample of finite size is *not* the limit: its ERM has a positive
/// excess limit risk under Zipf frequencies (type III).
#[test]
fn erm_on_a_finite_sample_pays_an_excess_limit_risk() {
    let task = Theorem::Two.default_task().build().unwrap();
    let cfg = ConvergeConfig::default();
    let reference = Reference::of(&task, &cfg).unwrap();
    let (train, _) = draw_data(&task, 8, 1, 0);
    let (fit, distinct) = feature_collapse::converge::fit_erm(&task, &train, 0, &cfg).unwrap();
    assert!(fit.converged);
    assert!(distinct < 8 * 27 && distinct > 27);
    let r = limit::risk(&task, &Params::zeros(&task).with_flat(&fit.x));
    assert!(
        r - reference.r_star > 1e-6,
        "excess {}",
        r - reference.r_star
    );
}

/// The sample the ERM fits is the trainer's own (same data recipe).
#[test]
fn erm_and_sgd_see_the_same_sentences() {
    let task = Theorem::One.default_task().build().unwrap();
    for seed in [0, 5] {
        let cfg = TrainConfig {
            n_spl: 7,
            n_test: 3,
            seed,
            threads: 1,
            ..TrainConfig::default()
        };
        let t = Trainer::new(&task, &cfg).unwrap();
        let (_, test) = draw_data(&task, 7, 3, seed);
        assert_eq!(t.test_data(), &test);
    }
}

#[derive(Debug, Clone)]
struct Spec {
    n_c: usize,
    s_c: usize,
    len: usize,
    dim_extra: usize,
    classes: Option<usize>,
    /// 0: no LayerNorm, 1: eps = 0, 2: eps = 1e-5.
    ln: u8,
    zipf: bool,
    n_spl: usize,
    seed: u64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        2usize..=3,
        1usize..=3,
        1usize..=3,
        0usize..=2,
        prop_oneof![Just(None), (1usize..=5).prop_map(Some)],
        0u8..=2,
        any::<bool>(),
        1usize..=4,
        0u64..1000,
    )
        .prop_map(
            |(n_c, s_c, len, dim_extra, classes, ln, zipf, n_spl, seed)| Spec {
                n_c,
                s_c,
                len,
                dim_extra,
                classes,
                ln,
                zipf,
                n_spl,
                seed,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `grad R_hat` against central differences, with random per-sentence weights.
    #[test]
    fn sample_risk_gradient_matches_finite_differences(s in spec()) {
        let task = TaskConfig {
            n_c: s.n_c,
            s_c: s.s_c,
            len: s.len,
            dim: s.n_c + s.dim_extra,
            classes: s.classes.map(|k| k.clamp(2, s.n_c.pow(s.len as u32))),
            freq: if s.zipf { Freq::Zipf { exponent: 1.0 } } else { Freq::Uniform },
            layer_norm: [None, Some(0.0), Some(1e-5)][s.ln as usize],
            norm: None,
            lambda_affine: None,
            lambda_w: 0.02,
            lambda_u: 0.03,
            seed: s.seed,
            latent: None,
        }
        .build()
        .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
        let data = task.sample_sentences(s.n_spl, &mut rng);
        let mut sample = WeightedSample::from_sentences(&data).unwrap();
        // arbitrary positive weights (the risk does not need them to sum to 1)
        for (i, w) in sample.weights.iter_mut().enumerate() {
            *w *= 0.5 + ((i * 7 + s.seed as usize) % 5) as f64 / 4.0;
        }
        let p = Params::random(&task, 0.8, &mut rng);
        let (r, g) = sample_risk_grad(&task, &p, &sample);
        prop_assert_eq!(r.to_bits(), sample_risk(&task, &p, &sample).to_bits());
        let x0 = p.to_flat();
        for i in 0..x0.len() {
            let h = 1e-6;
            let mut xp = x0.clone();
            xp[i] += h;
            let mut xm = x0.clone();
            xm[i] -= h;
            let fd = (sample_risk(&task, &p.with_flat(&xp), &sample)
                - sample_risk(&task, &p.with_flat(&xm), &sample))
                / (2.0 * h);
            prop_assert!(
                (fd - g[i]).abs() <= 1e-6 * (1.0 + g[i].abs()),
                "component {}: finite difference {} vs gradient {}", i, fd, g[i]
            );
        }
    }
}

fn slope(summary: &serde_json::Value, measure: &str, solver: &str) -> f64 {
    summary["slopes"][measure][solver]
        .as_f64()
        .unwrap_or_else(|| panic!("no slope for {measure}/{solver}: {summary}"))
}

/// A small run through the real binary: one JSON line per solution, then the
/// summary; the ERM's excess limit risk falls about like `1/n_spl` and the
/// within-concept spread about like `n_spl^{-1/2}` (wide bands), SGD's spread
/// falls too.
#[test]
fn small_run_has_decreasing_rates() {
    let dir = scratch("small");
    let o = fcollapse(&[
        "converge",
        "--theorem",
        "1",
        "--nspl",
        "8,64,512",
        "--seeds",
        "3",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 3 * 3 * 2 + 1);
    let summary = lines.last().unwrap();
    assert_eq!(summary["summary"], true);
    let erm_risk = slope(summary, "excess_limit_risk", "erm");
    assert!(
        (-2.0..=-0.4).contains(&erm_risk),
        "ERM excess-risk slope {erm_risk}"
    );
    let erm_spread = slope(summary, "within_concept_spread", "erm");
    assert!(
        (-1.2..=-0.15).contains(&erm_spread),
        "ERM spread slope {erm_spread}"
    );
    let sgd_spread = slope(summary, "within_concept_spread", "sgd");
    assert!(
        (-1.5..0.0).contains(&sgd_spread),
        "SGD spread slope {sgd_spread}"
    );
    for r in &lines[..lines.len() - 1] {
        assert_eq!(r["converged"], true, "{r}");
        assert_eq!(r["basin"]["in_family"], true, "{r}");
        assert!(r["excess_limit_risk"].as_f64().unwrap() > 0.0, "{r}");
    }
    let md = std::fs::read_to_string(dir.join("convergence.md")).unwrap();
    assert!(md.contains("excess_limit_risk"), "{md}");
    for m in ["excess_limit_risk", "within_concept_spread"] {
        assert!(dir.join(format!("figures/{m}.png")).exists());
        assert!(dir.join(format!("figures/{m}.svg")).exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A rerun skips finished lines, cuts a torn last line, and refuses a
/// directory holding another configuration.
#[test]
fn reruns_resume_and_cut_a_torn_line() {
    let dir = scratch("resume");
    let d = dir.to_str().unwrap();
    let base = [
        "converge", "--solver", "erm", "--seeds", "1", "--json", "--out", d,
    ];
    let first = fcollapse(&[&base[..], &["--nspl", "8"]].concat());
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let results = dir.join("results.jsonl");
    let text = std::fs::read_to_string(&results).unwrap();
    assert_eq!(text.lines().count(), 1);
    std::fs::write(&results, format!("{text}{{\"theorem\":1,\"kind\":")).unwrap();
    let second = fcollapse(&[&base[..], &["--nspl", "8,16"]].concat());
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let text2 = std::fs::read_to_string(&results).unwrap();
    let lines: Vec<&str> = text2.lines().collect();
    assert_eq!(lines.len(), 2, "{text2}");
    assert_eq!(
        lines[0],
        text.trim_end(),
        "the finished line is kept as it was"
    );
    let out = json_lines(&second);
    assert_eq!(
        out[0],
        json_lines(&first)[0],
        "the finished line is not recomputed"
    );
    assert_eq!(out[1]["n_spl"], 16);
    // another configuration in the same directory
    let other = fcollapse(&[&base[..], &["--nspl", "8", "--lambda", "0.02"]].concat());
    assert_eq!(other.status.code(), Some(2));
    assert!(stderr(&other).contains("out"), "{}", stderr(&other));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_get_one_line_and_exit_code_2() {
    let dir = scratch("bad");
    let d = dir.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--nspl", ""], "nspl"),
        (&["--nspl", "32,8"], "nspl"),
        (&["--nspl", "8,8"], "nspl"),
        (&["--nspl", "8,x"], "nspl"),
        (&["--nspl", "0,8"], "nspl"),
        (&["--seeds", "0"], "seeds"),
        (&["--theorem", "4"], "theorem"),
        (&["--theorem", "1", "--sc", "4", "--len", "9"], "operations"),
        (&["--theorem", "1", "--freq", "zipf"], "freq"),
        (&["--max-epochs", "0"], "max_epochs"),
        (&["--lr", "-1"], "lr"),
    ];
    for (extra, name) in cases {
        let args = [&["converge", "--out", d][..], extra].concat();
        let o = fcollapse(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(name), "{args:?}: should name {name}: {err}");
    }
    assert!(!dir.exists(), "nothing is written on bad input");
}

/// A diverging SGD run is exit 1 with an lr hint; the other solutions are kept
/// and reported, and a rerun reuses them.
#[test]
fn sgd_divergence_exits_1_with_an_lr_hint_and_keeps_the_rest() {
    let dir = std::env::temp_dir().join(format!("fc-converge-diverge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let args = [
        "converge",
        "--theorem",
        "1",
        "--nspl",
        "8,16",
        "--seeds",
        "1",
        "--lr",
        "1e6",
        "--out",
        d,
    ];
    let o = fcollapse(&args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("SGD diverged") && err.contains("--lr"),
        "{err}"
    );
    let kept = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
    assert_eq!(kept.lines().count(), 2, "the two ERM solutions are kept");
    assert!(dir.join("convergence.md").exists());
    let again = fcollapse(&args);
    assert_eq!(again.status.code(), Some(1));
    let kept2 = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
    assert_eq!(kept, kept2, "a rerun reuses the finished solutions");
    std::fs::remove_dir_all(&dir).unwrap();
}
