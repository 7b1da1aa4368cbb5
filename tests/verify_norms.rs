//! `verify` with the normalization axis (docs/theory.md §10): RMSNorm under
//! theorem 3 (also at `d = n_c - 1`, where LayerNorm is outside), centring under
//! theorem 2 (frequency-dependent norms), affine LayerNorm always outside.

use feature_collapse::norm::Norm;
use feature_collapse::task::TaskConfig;
use feature_collapse::verify::{verify_theorem, Theorem, TheoremReport, Verdict, VerifyConfig};

fn run(t: Theorem, norm: Norm, edit: impl FnOnce(&mut TaskConfig)) -> TheoremReport {
    let mut c = t.default_task();
    c.set_norm(norm);
    edit(&mut c);
    let task = c.build().unwrap();
    let cfg = VerifyConfig {
        restarts: 4,
        ..VerifyConfig::default()
    };
    verify_theorem(t, &task, &cfg, |_| {}).unwrap()
}

/// On n_c 3, s_c 3, L 3, d 4, Zipf, lambda_W = 0, lambda_U = 0.01: RMSNorm and
/// LayerNorm are both confirmed, with the same R*.
#[test]
fn rms_and_layer_norm_share_r_star_when_d_is_at_least_n_c() {
    let rms = run(Theorem::Three, Norm::Rms { eps: 0.0 }, |_| {});
    let ln = run(Theorem::Three, Norm::Layer { eps: 0.0 }, |_| {});
    for r in [&rms, &ln] {
        assert_eq!(r.verdict, Verdict::Confirmed, "{}: {:?}", r.norm, r.reasons);
        assert!(r.hypotheses);
    }
    assert_eq!((rms.norm.as_str(), ln.norm.as_str()), ("rms", "layer"));
    let (a, b) = (rms.predicted_risk.unwrap(), ln.predicted_risk.unwrap());
    assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    assert!((rms.best_risk - a).abs() < 1e-9 * a);
}

/// At d = n_c - 1 LayerNorm's features have too few dimensions (outside, and the
/// best risk found is above the type-II formula), RMSNorm's do not (confirmed).
#[test]
fn at_d_equal_n_c_minus_one_rms_is_still_type_ii() {
    let rms = run(Theorem::Three, Norm::Rms { eps: 0.0 }, |c| c.dim = 2);
    assert_eq!(rms.verdict, Verdict::Confirmed, "{:?}", rms.reasons);
    let ln = run(Theorem::Three, Norm::Layer { eps: 0.0 }, |c| c.dim = 2);
    assert!(!ln.hypotheses);
    assert_eq!(ln.verdict, Verdict::Inconclusive);
    assert!(
        ln.best_risk > rms.best_risk + 0.5,
        "{} vs {}",
        ln.best_risk,
        rms.best_risk
    );
}

/// Centring under Zipf is type III: confirmed with the unnormalised R* and norms
/// r_beta that decrease with the frequency rank.
#[test]
fn center_under_zipf_has_frequency_dependent_norms() {
    let c = run(Theorem::Two, Norm::Center, |_| {});
    let n = run(Theorem::Two, Norm::None, |_| {});
    assert_eq!(c.verdict, Verdict::Confirmed, "{:?}", c.reasons);
    let (a, b) = (c.predicted_risk.unwrap(), n.predicted_risk.unwrap());
    assert!((a - b).abs() < 1e-12 && (c.best_risk - a).abs() < 1e-9 * a);
    let r = &c.prediction.as_ref().unwrap().r;
    assert!(r.windows(2).all(|w| w[0] > w[1] * 1.05), "{r:?}");
    // and with lambda_W = 0 it is outside, as without normalization
    let c0 = run(Theorem::Two, Norm::Center, |c| c.lambda_w = 0.0);
    assert!(!c0.hypotheses);
}

/// Affine LayerNorm: outside the hypotheses, the central claim measured.
#[test]
fn layer_affine_is_outside_and_measured() {
    let r = run(Theorem::Three, Norm::LayerAffine { eps: 0.0 }, |c| {
        c.lambda_affine = Some(0.01)
    });
    assert!(!r.hypotheses && r.verdict == Verdict::Inconclusive);
    assert!(r.outside.iter().any(|o| o.contains("layer-affine")));
    assert!(
        r.best_risk < r.predicted_risk.unwrap() - 0.1,
        "{}",
        r.best_risk
    );
    assert!(
        r.within_concept_spread < 1e-4,
        "{}",
        r.within_concept_spread
    );
}

/// The theorem and the normalization must belong together: bad input naming norm.
#[test]
fn wrong_family_is_bad_input() {
    let mut c = Theorem::Two.default_task();
    c.set_norm(Norm::Rms { eps: 0.0 });
    let task = c.build().unwrap();
    let e = verify_theorem(Theorem::Two, &task, &VerifyConfig::default(), |_| {}).unwrap_err();
    assert!(e.is_bad_input() && e.to_string().contains("norm"), "{e}");
}
