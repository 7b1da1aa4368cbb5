//! The three verdicts on instances near the phase switch, on drawn latent sets,
//! outside the hypotheses, and a refutation with its witness files.

use feature_collapse::collapse::{lambda_critical, Phase};
use feature_collapse::npy::read_npy_f64;
use feature_collapse::task::{Freq, TaskConfig};
use feature_collapse::verify::{
    verify_theorem, write_witnesses, Theorem, TheoremReport, Verdict, VerifyConfig,
};

fn run(t: Theorem, task: TaskConfig, restarts: usize) -> TheoremReport {
    let task = task.build().unwrap();
    let cfg = VerifyConfig {
        restarts,
        ..VerifyConfig::default()
    };
    verify_theorem(t, &task, &cfg, |_| {}).unwrap()
}

/// Both sides of the switch, 3 % away, for theorems 1 and 2: the phase is named
/// and its claim confirmed (the origin, or the collapsed configuration).
#[test]
fn phase_verdicts_on_both_sides_of_the_switch() {
    for t in [Theorem::One, Theorem::Two] {
        let base = t.default_task();
        let lc = lambda_critical(&base.clone().build().unwrap()).unwrap();
        for (factor, phase) in [(0.97, Phase::Collapsed), (1.03, Phase::Trivial)] {
            let lam = factor * lc;
            let r = run(
                t,
                TaskConfig {
                    lambda_w: lam,
                    lambda_u: lam,
                    ..base.clone()
                },
                4,
            );
            assert_eq!(
                r.phase,
                phase,
                "theorem {} at {factor} lambda_c",
                t.number()
            );
            assert_eq!(
                r.verdict,
                Verdict::Confirmed,
                "theorem {} at {factor} lambda_c: {:#?}",
                t.number(),
                r.reasons
            );
            let pred = r.predicted_risk.unwrap();
            let log_k = (27f64).ln();
            match phase {
                Phase::Collapsed => assert!(pred < log_k && r.best_risk < log_k),
                Phase::Trivial => assert!((pred - log_k).abs() < 1e-12),
            }
        }
    }
}

/// The theorem-2 instance 2 % below the switch, where every configuration
/// is small: the type-I configuration is still measurably non-critical.
#[test]
fn theorem_2_near_the_switch_is_confirmed() {
    let r = run(
        Theorem::Two,
        TaskConfig {
            lambda_w: 0.12,
            lambda_u: 0.12,
            ..Theorem::Two.default_task()
        },
        4,
    );
    assert_eq!(r.phase, Phase::Collapsed);
    assert_eq!(r.verdict, Verdict::Confirmed, "{:#?}", r.reasons);
    let c = r
        .checks
        .iter()
        .find(|c| c.name.starts_with("type-I configuration"))
        .unwrap();
    assert!(c.value > 0.1, "{c:?}");
}

/// A drawn latent set: the central claim holds at every restart (theorem 1, by
/// convexity in W), the equiangular geometry does not, and that is measured.
#[test]
fn drawn_latent_set_separates_the_central_claim_from_the_geometry() {
    let r = run(
        Theorem::One,
        TaskConfig {
            len: 4,
            classes: Some(20),
            ..Theorem::One.default_task()
        },
        4,
    );
    assert_eq!(r.verdict, Verdict::Confirmed, "{:#?}", r.reasons);
    assert!(
        r.within_concept_spread <= 1e-4,
        "{}",
        r.within_concept_spread
    );
    let gap = r
        .measurements
        .iter()
        .find(|m| m.name.starts_with("(R_pred - R_best) / max"))
        .unwrap();
    assert!(
        gap.value > 1e-3,
        "the restarts beat the equiangular configuration: {gap:?}"
    );
    assert!(r.best_risk < r.predicted_risk.unwrap());
}

/// Theorem 2 on a drawn latent set: direction collapse is only approximate, which
/// is reported (inconclusive), not called a refutation.
#[test]
fn theorem_2_on_a_drawn_latent_set_is_reported_plainly() {
    let r = run(
        Theorem::Two,
        TaskConfig {
            classes: Some(12),
            ..Theorem::Two.default_task()
        },
        4,
    );
    assert_eq!(r.verdict, Verdict::Inconclusive);
    let m = r
        .measurements
        .iter()
        .find(|m| m.name.contains("of the directions"))
        .unwrap();
    assert!(m.value > 1e-5 && m.value < 1e-1, "{m:?}");
}

/// The LayerNorm d = 2 instance: the restarts are stuck above the
/// prediction (phi takes two values), none goes below: inconclusive.
#[test]
fn layer_norm_in_two_dimensions_is_inconclusive() {
    let r = run(
        Theorem::Three,
        TaskConfig {
            n_c: 2,
            s_c: 2,
            len: 3,
            dim: 2,
            ..Theorem::Three.default_task()
        },
        6,
    );
    assert_eq!(r.verdict, Verdict::Inconclusive, "{:#?}", r.checks);
    assert!(r.best_risk > r.predicted_risk.unwrap() + 0.5);
    assert!(
        r.reasons[0].contains("ended elsewhere above"),
        "{:?}",
        r.reasons
    );
}

/// d < n_c - 1: outside the hypotheses, run and described; with uniform mu the
/// tokens of a concept still share one representation (convexity in W).
#[test]
fn too_small_a_dimension_is_outside_and_described() {
    let r = run(
        Theorem::One,
        TaskConfig {
            dim: 1,
            ..Theorem::One.default_task()
        },
        3,
    );
    assert!(!r.hypotheses);
    assert!(r.outside[0].contains("no equiangular frame"));
    assert_eq!(r.verdict, Verdict::Inconclusive);
    assert!(r.exact_risk_at_prediction.is_none());
    assert!(
        r.within_concept_spread < 1e-6,
        "{}",
        r.within_concept_spread
    );
    // the minimiser cannot reach the d >= 2 prediction
    assert!(r.best_risk > r.predicted_risk.unwrap());
}

/// A deliberately wrong candidate (the prediction with `b` 1 % too large) is
/// not critical and the exact risk decreases along its gradient: `refuted`,
/// and the weights are saved and read back.
#[test]
fn a_refutation_keeps_its_witness() {
    let task = Theorem::One.default_task().build().unwrap();
    let cfg = VerifyConfig {
        restarts: 1,
        hessian: false,
        candidate_scale: 1.01,
        ..VerifyConfig::default()
    };
    let mut r = verify_theorem(Theorem::One, &task, &cfg, |_| {}).unwrap();
    assert!(r.grad_norm_at_prediction.unwrap() > 0.0);
    assert_eq!(r.verdict, Verdict::Refuted, "{:#?}", r.reasons);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains("decreases along -grad R")),
        "{:#?}",
        r.reasons
    );
    assert!(!r.passed);
    let dir = std::env::temp_dir().join(format!("fc-witness-{}", std::process::id()));
    write_witnesses(&mut r, &dir).unwrap();
    // two files (W, U) per witness; the candidate itself comes first
    assert_eq!(
        r.witnesses.len(),
        2 * r.witness_params.len(),
        "{:?}",
        r.witnesses
    );
    assert_eq!(r.witness_params[0].label, "prediction");
    assert!(r.witnesses[0].ends_with("theorem1-prediction-W.npy"));
    let (shape, w) = read_npy_f64(std::path::Path::new(&r.witnesses[0])).unwrap();
    assert_eq!(shape, vec![task.n_w(), task.dim()]);
    let (shape_u, u) = read_npy_f64(std::path::Path::new(&r.witnesses[1])).unwrap();
    assert_eq!(shape_u, vec![task.k(), task.len(), task.dim()]);
    assert_eq!(w, r.witness_params[0].params.w);
    assert_eq!(u, r.witness_params[0].params.u);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With a zero tolerance on stationarity the round-off gradient at the true
/// prediction is above tolerance, but the exact risk does not decrease along
/// it beyond its evaluation error: no refutation, an `inconclusive` that says so,
/// and no witness.
#[test]
fn a_round_off_gradient_is_not_evidence() {
    let task = Theorem::One.default_task().build().unwrap();
    let mut cfg = VerifyConfig {
        restarts: 1,
        hessian: false,
        ..VerifyConfig::default()
    };
    cfg.tol.grad_at_prediction = 0.0;
    cfg.tol.stationarity_round_off = 0.0;
    let r = verify_theorem(Theorem::One, &task, &cfg, |_| {}).unwrap();
    assert!(r.grad_norm_at_prediction.unwrap() > 0.0);
    assert_eq!(r.verdict, Verdict::Inconclusive, "{:#?}", r.reasons);
    assert!(r.witness_params.is_empty());
    assert!(
        r.reasons.iter().any(|x| x.contains("evaluation error")),
        "{:#?}",
        r.reasons
    );
}

/// lambda_W != lambda_U without LayerNorm is inside: the rescaling
/// (W, U) -> (tW, U/t) maps it onto lambda = sqrt(lambda_W lambda_U), with the same risk.
#[test]
fn unequal_weight_decays_equal_the_geometric_mean() {
    let base = TaskConfig {
        len: 2,
        ..Theorem::One.default_task()
    };
    let a = run(
        Theorem::One,
        TaskConfig {
            lambda_w: 0.004,
            lambda_u: 0.025,
            ..base.clone()
        },
        2,
    );
    let b = run(
        Theorem::One,
        TaskConfig {
            lambda_w: 0.01,
            lambda_u: 0.01,
            ..base
        },
        2,
    );
    assert!(a.hypotheses);
    assert_eq!(a.verdict, Verdict::Confirmed, "{:#?}", a.reasons);
    assert!(
        (a.best_risk - b.best_risk).abs() < 1e-9,
        "{} {}",
        a.best_risk,
        b.best_risk
    );
    let (pa, pb) = (a.prediction.unwrap(), b.prediction.unwrap());
    // the norms rescale by t = (lambda_U / lambda_W)^(1/4) = 2.5^(1/2)
    let t = (0.025f64 / 0.004).powf(0.25);
    assert!((pa.r[0] - t * pb.r[0]).abs() < 1e-9 * pb.r[0]);
    assert!((pa.u_norm - pb.u_norm / t).abs() < 1e-9 * pb.u_norm);
}

#[test]
fn zipf_with_layer_norm_on_a_drawn_latent_set_collapses_fully() {
    let r = run(
        Theorem::Three,
        TaskConfig {
            classes: Some(12),
            freq: Freq::Zipf { exponent: 1.0 },
            ..Theorem::Three.default_task()
        },
        4,
    );
    assert_eq!(r.verdict, Verdict::Confirmed, "{:#?}", r.reasons);
    let best = r
        .restarts
        .iter()
        .min_by(|a, b| a.risk.total_cmp(&b.risk))
        .unwrap();
    assert!(best.within_concept_spread < 1e-6);
}

/// At a tiny weight decay the stationarity residual at the (correct) prediction
/// sits at its round-off floor, about eps / lambda: that is not a refutation.
#[test]
fn tiny_weight_decay_is_not_refuted_by_round_off() {
    for t in [Theorem::One, Theorem::Two] {
        let task = TaskConfig {
            lambda_w: 1e-7,
            lambda_u: 1e-7,
            ..t.default_task()
        };
        let r = run(t, task, 2);
        assert_ne!(r.verdict, Verdict::Refuted, "{:?}", r.reasons);
        assert!(r.witness_params.is_empty());
    }
}
