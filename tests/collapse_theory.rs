//! Reduced objectives of docs/theory.md §4 against a brute-force exact limit risk, and
//! collapse metrics / family distance at collapsed and random configurations.

use feature_collapse::collapse::{
    build, collapse_type, equiangular_frame, predict, reduced_risk, type_iii_residual,
    CollapseType, Form, Prediction,
};
use feature_collapse::metrics::{
    collapse_metrics, family_distance, pca_points_u, pca_points_w, pca_projection, CollapseMetrics,
    FamilyDistance,
};
use feature_collapse::network::{cross_entropy, features, scores, standard_normal, Params};
use feature_collapse::task::{Freq, Task, TaskConfig};
use feature_collapse::Error;
use nalgebra::DMatrix;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Brute-force large-sample limit risk `R(W,U)` of docs/theory.md §2: every `beta` in
/// `[s_c]^L` (lexicographic) weighted by `prod_l mu_{beta_l}`, for every class.
fn exact_limit_risk(task: &Task, p: &Params) -> f64 {
    let phi = features(p, task.norm());
    let (s_c, len) = (task.s_c(), task.len());
    let n_beta = s_c.pow(len as u32);
    let mut total = 0.0;
    let mut sentence = vec![0u32; len];
    for k in 0..task.k() {
        let z = task.z_of(k);
        for idx in 0..n_beta {
            let mut rest = idx;
            let mut weight = 1.0;
            for l in (0..len).rev() {
                let beta = rest % s_c;
                rest /= s_c;
                weight *= task.mu()[beta];
                sentence[l] = task.token(z[l], beta) as u32;
            }
            let h = scores(p, &phi, &sentence);
            total += weight * cross_entropy(&h, k);
        }
    }
    total / task.k() as f64 + p.penalty(task.lambda_w(), task.lambda_u())
}

/// A drawn latent set has between 2 and `n_c^L` classes: other requests are clamped.
fn config(n_c: usize, s_c: usize, len: usize, classes: Option<usize>) -> TaskConfig {
    TaskConfig {
        n_c,
        s_c,
        len,
        dim: n_c + 1,
        classes: classes.map(|k| k.clamp(2, n_c.pow(len as u32))),
        freq: Freq::Uniform,
        layer_norm: None,
        norm: None,
        lambda_affine: None,
        lambda_w: 0.01,
        lambda_u: 0.02,
        seed: 11,
        latent: None,
    }
}

fn zipf(c: TaskConfig) -> TaskConfig {
    TaskConfig {
        freq: Freq::Zipf { exponent: 1.0 },
        ..c
    }
}

fn layer_normed(c: TaskConfig) -> TaskConfig {
    TaskConfig {
        layer_norm: Some(0.0),
        lambda_w: 0.0,
        ..c
    }
}

/// The frame matching the task's collapse type (mean-zero with LayerNorm).
fn frame_for(task: &Task) -> Vec<f64> {
    equiangular_frame(task.n_c(), task.dim(), task.norm().centres()).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

/// The tiny tasks used throughout: (name, config).
fn tiny_tasks() -> Vec<(&'static str, TaskConfig)> {
    vec![
        ("I full 3x2 L2", config(3, 2, 2, None)),
        ("I full 2x3 L3", config(2, 3, 3, None)),
        (
            "II full 3x2 L2 zipf",
            layer_normed(zipf(config(3, 2, 2, None))),
        ),
        (
            "II full 2x2 L3 d5",
            layer_normed(TaskConfig {
                dim: 5,
                ..config(2, 2, 3, None)
            }),
        ),
        ("III full 3x3 L2", zipf(config(3, 3, 2, None))),
        (
            "III full 2x3 L3 s2",
            TaskConfig {
                freq: Freq::Zipf { exponent: 2.0 },
                ..config(2, 3, 3, None)
            },
        ),
    ]
}

#[test]
fn reduced_full_objective_equals_exact_limit_risk_at_the_built_configuration() {
    for (name, cfg) in tiny_tasks() {
        let task = cfg.build().unwrap();
        let pred = predict(&task, Form::Full).unwrap();
        assert_eq!(pred.kind, collapse_type(&task), "{name}");
        assert!(pred.u_norm > 0.0, "{name}: trivial prediction");
        let p = build(&task, &pred, &frame_for(&task));
        let exact = exact_limit_risk(&task, &p);
        assert!(
            rel(pred.risk, exact) < 1e-10,
            "{name}: reduced {} vs exact {exact}",
            pred.risk
        );
        // also away from the minimiser (type II: phi(w) = sqrt(d) f whatever the scale of w)
        let scale_r = if pred.kind == CollapseType::II {
            1.0
        } else {
            1.3
        };
        let r: Vec<f64> = pred.r.iter().map(|v| scale_r * v).collect();
        let moved = Prediction {
            r: r.clone(),
            u_norm: 0.7 * pred.u_norm,
            ..pred.clone()
        };
        let p2 = build(&task, &moved, &frame_for(&task));
        let reduced = reduced_risk(&task, Form::Full, pred.kind, &r, moved.u_norm).unwrap();
        assert!(
            rel(reduced, exact_limit_risk(&task, &p2)) < 1e-10,
            "{name} (moved)"
        );
        // the latent-set form is the full form on the full latent set
        let ls = predict(&task, Form::LatentSet).unwrap();
        assert!(rel(ls.risk, pred.risk) < 1e-12, "{name}: latent-set form");
    }
}

#[test]
fn latent_set_form_is_exact_on_a_drawn_latent_set() {
    // types I and II (1-D forms), and type III (exact enumeration of beta), with
    // small K so duplicates of z_k are possible.
    let cases = [
        ("I K5", config(3, 2, 3, Some(5))),
        ("I K12 n_c2", config(2, 2, 3, Some(12))),
        ("II K5", layer_normed(zipf(config(3, 2, 3, Some(5))))),
        (
            "II K9 d6",
            layer_normed(TaskConfig {
                dim: 6,
                ..config(3, 3, 2, Some(9))
            }),
        ),
        ("III K5", zipf(config(3, 3, 2, Some(5)))),
    ];
    for (name, cfg) in cases {
        let task = cfg.build().unwrap();
        let pred = predict(&task, Form::LatentSet).unwrap();
        assert!(pred.risk_error.is_none(), "{name}: must be exact");
        assert!(pred.u_norm > 0.0, "{name}");
        let p = build(&task, &pred, &frame_for(&task));
        let exact = exact_limit_risk(&task, &p);
        assert!(
            rel(pred.risk, exact) < 1e-10,
            "{name}: {} vs {exact}",
            pred.risk
        );
    }
}

#[test]
fn type_i_and_iii_full_predictions_solve_the_critical_point_system() {
    for (name, cfg) in tiny_tasks() {
        let task = cfg.build().unwrap();
        if task.norm().centres() {
            continue;
        }
        let pred = predict(&task, Form::Full).unwrap();
        let res = type_iii_residual(&task, &pred.r, pred.u_norm);
        assert_eq!(res.len(), task.s_c() + 1);
        let n_c = task.n_c() as f64;
        for (beta, v) in res[..task.s_c()].iter().enumerate() {
            let scale = task.lambda_w() * n_c * pred.r[beta];
            assert!(
                v.abs() <= 1e-12 * scale,
                "{name} beta {beta}: {v} vs {scale}"
            );
        }
        let scale = task.lambda_u() * task.k() as f64 * pred.u_norm;
        assert!(
            res[task.s_c()].abs() <= 1e-12 * scale,
            "{name} b: {}",
            res[task.s_c()]
        );
    }
}

#[test]
fn zipf_gives_decreasing_word_norms_and_uniform_gives_equal_ones() {
    let task = zipf(config(3, 5, 3, None)).build().unwrap();
    let pred = predict(&task, Form::Full).unwrap();
    assert_eq!(pred.kind, CollapseType::III);
    assert!(pred.r.windows(2).all(|w| w[0] > w[1]), "{:?}", pred.r);
    let mean = pred.r.iter().sum::<f64>() / 5.0;
    assert!((pred.word_norm - mean).abs() < 1e-15 && (pred.c - mean * pred.u_norm).abs() < 1e-15);
    let uni = config(3, 5, 3, None).build().unwrap();
    let pred = predict(&uni, Form::Full).unwrap();
    assert_eq!(pred.kind, CollapseType::I);
    assert!(pred.r.iter().all(|&r| r == pred.word_norm));
    // the type-III residual also vanishes at type I (uniform mu)
    let res = type_iii_residual(&uni, &pred.r, pred.u_norm);
    assert!(res.iter().all(|v| v.abs() < 1e-15), "{res:?}");
}

#[test]
fn predictions_are_minimisers_of_their_reduced_objective() {
    // golden-section on the value along the equal-x line agrees with type I
    let task = config(3, 2, 3, Some(30)).build().unwrap();
    for form in [Form::LatentSet, Form::MeanField] {
        let pred = predict(&task, form).unwrap();
        let at = |c: f64| {
            let (n_w, kl) = (task.n_w() as f64, (task.k() * task.len()) as f64);
            let a = (c * (task.lambda_u() * kl / (task.lambda_w() * n_w)).sqrt()).sqrt();
            let b = (c * (task.lambda_w() * n_w / (task.lambda_u() * kl)).sqrt()).sqrt();
            reduced_risk(&task, form, CollapseType::I, &vec![a; task.s_c()], b).unwrap()
        };
        let (mut lo, mut hi) = (0.0, 4.0 * pred.c);
        let g = (5f64.sqrt() - 1.0) / 2.0;
        for _ in 0..200 {
            let (m1, m2) = (hi - g * (hi - lo), lo + g * (hi - lo));
            if at(m1) < at(m2) {
                hi = m2;
            } else {
                lo = m1;
            }
        }
        assert!(
            rel(0.5 * (lo + hi), pred.c) < 1e-6,
            "{form}: {} vs {}",
            lo,
            pred.c
        );
        assert!(at(pred.c) <= at(pred.c * (1.0 + 1e-4)) && at(pred.c) <= at(pred.c * (1.0 - 1e-4)));
    }
    // type III: perturbing any r_beta or b does not lower the full reduced risk
    let task = zipf(config(3, 4, 3, None)).build().unwrap();
    let pred = predict(&task, Form::Full).unwrap();
    let base = reduced_risk(&task, Form::Full, CollapseType::III, &pred.r, pred.u_norm).unwrap();
    assert!(rel(base, pred.risk) < 1e-15);
    for beta in 0..=task.s_c() {
        for h in [-1e-3, 1e-3] {
            let mut r = pred.r.clone();
            let mut b = pred.u_norm;
            if beta < task.s_c() {
                r[beta] *= 1.0 + h;
            } else {
                b *= 1.0 + h;
            }
            let v = reduced_risk(&task, Form::Full, CollapseType::III, &r, b).unwrap();
            assert!(v > base, "beta {beta} h {h}: {v} <= {base}");
        }
    }
}

#[test]
fn bad_requests_name_the_parameter() {
    let name_of = |r: Result<Prediction, Error>| match r {
        Err(Error::InvalidParam { name, .. }) => name,
        other => panic!("expected an error, got {other:?}"),
    };
    let drawn = config(3, 2, 2, Some(4)).build().unwrap();
    assert_eq!(name_of(predict(&drawn, Form::Full)), "form");
    let no_w = TaskConfig {
        lambda_w: 0.0,
        ..config(3, 2, 2, None)
    }
    .build()
    .unwrap();
    assert_eq!(name_of(predict(&no_w, Form::Full)), "lambda_w");
    let no_u = TaskConfig {
        lambda_u: 0.0,
        ..zipf(config(3, 2, 2, None))
    }
    .build()
    .unwrap();
    assert_eq!(name_of(predict(&no_u, Form::MeanField)), "lambda_u");
    let ln_no_u = TaskConfig {
        lambda_u: 0.0,
        ..layer_normed(config(3, 2, 2, None))
    }
    .build()
    .unwrap();
    assert_eq!(name_of(predict(&ln_no_u, Form::Full)), "lambda_u");
    let task = config(3, 2, 2, None).build().unwrap();
    assert!(matches!(
        reduced_risk(&task, Form::Full, CollapseType::I, &[1.0, 2.0], 1.0),
        Err(Error::InvalidParam { name: "r", .. })
    ));
    assert!(matches!(
        reduced_risk(&task, Form::Full, CollapseType::III, &[1.0], 1.0),
        Err(Error::InvalidParam { name: "r", .. })
    ));
}

#[test]
fn layer_norm_prediction_ignores_the_embedding_penalty() {
    // with eps = 0 the W penalty vanishes in the infimum: same prediction whatever lambda_W
    let a = layer_normed(config(3, 2, 2, None)).build().unwrap();
    let b = TaskConfig {
        lambda_w: 0.5,
        ..layer_normed(config(3, 2, 2, None))
    }
    .build()
    .unwrap();
    let (pa, pb) = (
        predict(&a, Form::Full).unwrap(),
        predict(&b, Form::Full).unwrap(),
    );
    assert_eq!(pa.u_norm, pb.u_norm);
    assert_eq!(pa.risk, pb.risk);
    assert_eq!(pa.word_norm, (a.dim() as f64).sqrt());
    // and shrinking W leaves phi(W), hence the loss, unchanged
    let mut p = build(&b, &pb, &frame_for(&b));
    let before = exact_limit_risk(&b, &p) - p.penalty(b.lambda_w(), b.lambda_u());
    p.w.iter_mut().for_each(|w| *w *= 1e-3);
    let after = exact_limit_risk(&b, &p) - p.penalty(b.lambda_w(), b.lambda_u());
    assert!(rel(after, before) < 1e-12);
}

// ---------------------------------------------------------------------------
// metrics
// ---------------------------------------------------------------------------

/// A random orthogonal `d x d` matrix (QR of a Gaussian matrix); with
/// `fix_ones` it maps `1_d` to itself (rotation of `1^perp` only).
fn random_orthogonal(d: usize, fix_ones: bool, rng: &mut ChaCha8Rng) -> DMatrix<f64> {
    if !fix_ones {
        let g = DMatrix::from_fn(d, d, |_, _| standard_normal(rng));
        return g.qr().q();
    }
    // Helmert basis H (d x (d-1)) of 1^perp; Q = H R H^T + 1 1^T / d
    let h = DMatrix::from_fn(d, d - 1, |j, i| {
        let i = i + 1;
        let s = ((i * (i + 1)) as f64).sqrt();
        if j < i {
            1.0 / s
        } else if j == i {
            -(i as f64) / s
        } else {
            0.0
        }
    });
    let r = if d > 1 {
        let g = DMatrix::from_fn(d - 1, d - 1, |_, _| standard_normal(rng));
        g.qr().q()
    } else {
        DMatrix::zeros(0, 0)
    };
    &h * r * h.transpose() + DMatrix::from_element(d, d, 1.0 / d as f64)
}

/// Applies `v -> Q v` to every `w_t` and `u_{j,l}`.
fn rotate(p: &Params, q: &DMatrix<f64>) -> Params {
    let d = p.dim;
    let map = |v: &[f64]| -> Vec<f64> {
        (0..d)
            .map(|i| (0..d).map(|j| q[(i, j)] * v[j]).sum())
            .collect()
    };
    Params {
        w: p.w.chunks(d).flat_map(map).collect(),
        u: p.u.chunks(d).flat_map(map).collect(),
        ..p.clone()
    }
}

fn assert_collapsed(name: &str, m: &CollapseMetrics, equinorm: bool) {
    // with rank-dependent norms (type III) only the directions collapse, so the
    // within-concept spread of the vectors themselves is not zero
    let within_w = if equinorm { m.within_spread_w } else { 0.0 };
    for (what, v) in [
        ("within_spread_w", within_w),
        ("direction_spread_w", m.direction_spread_w),
        ("gram_error_w", m.gram_error_w),
        ("within_spread_u", m.within_spread_u),
        ("direction_spread_u", m.direction_spread_u),
        ("gram_error_u", m.gram_error_u),
        ("1 - duality", 1.0 - m.duality),
    ] {
        assert!(v.abs() < 1e-12, "{name}: {what} = {v}");
    }
    if equinorm {
        assert!(m.norm_cv_w < 1e-12, "{name}: norm_cv_w {}", m.norm_cv_w);
    }
}

fn assert_in_family(name: &str, f: &FamilyDistance) {
    assert!(f.max < 1e-12, "{name}: {f:?}");
}

#[test]
fn metrics_vanish_at_built_configurations_and_after_rotations() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let cases = [
        ("I", config(3, 4, 3, Some(20))),
        (
            "II",
            layer_normed(zipf(TaskConfig {
                dim: 7,
                ..config(3, 4, 3, Some(20))
            })),
        ),
        (
            "III",
            zipf(TaskConfig {
                dim: 6,
                ..config(4, 5, 2, None)
            }),
        ),
    ];
    for (name, cfg) in cases {
        let task = cfg.build().unwrap();
        let form = if task.full_latent() {
            Form::Full
        } else {
            Form::LatentSet
        };
        let pred = predict(&task, form).unwrap();
        let p = build(&task, &pred, &frame_for(&task));
        let m = collapse_metrics(&task, &p);
        assert_collapsed(name, &m, pred.kind != CollapseType::III);
        for (beta, nb) in m.norm_by_rank.iter().enumerate() {
            assert!(rel(*nb, pred.r[beta]) < 1e-13, "{name}: norm_by_rank");
        }
        assert!(rel(m.u_norm_mean, pred.u_norm) < 1e-13);
        assert_in_family(name, &family_distance(&task, &p, &pred));
        let q = random_orthogonal(task.dim(), task.norm().centres(), &mut rng);
        let pr = rotate(&p, &q);
        assert_collapsed(
            &format!("{name} rotated"),
            &collapse_metrics(&task, &pr),
            pred.kind != CollapseType::III,
        );
        assert_in_family(
            &format!("{name} rotated"),
            &family_distance(&task, &pr, &pred),
        );
        // rank-2 in PCA of three concepts (equiangular frame of 3 directions)
        if task.n_c() == 3 {
            assert!(m.pca_w[2] < 1e-10 * m.pca_w[0] && m.pca_w[1] > 0.1 * m.pca_w[0]);
        }
    }
}

#[test]
fn metrics_and_family_distance_are_positive_at_random_weights() {
    let task = zipf(config(3, 4, 3, Some(20))).build().unwrap();
    let pred = predict(&task, Form::LatentSet).unwrap();
    let p = Params::random(&task, 1.0, &mut ChaCha8Rng::seed_from_u64(9));
    let m = collapse_metrics(&task, &p);
    assert!(m.within_spread_w > 0.1 && m.direction_spread_w > 0.1 && m.norm_cv_w > 0.01);
    assert!(m.within_spread_u > 0.1 && m.direction_spread_u > 0.1 && m.gram_error_w > 1e-3);
    assert!(m.duality.abs() < 0.9);
    let f = family_distance(&task, &p, &pred);
    assert!(f.within_w > 0.1 && f.spread_u > 0.1 && f.max >= f.within_w);
}

#[test]
fn word_norm_statistics_use_both_std_conventions() {
    let task = config(2, 2, 1, Some(2)).build().unwrap();
    let mut p = Params::zeros(&task);
    // norms 1, 2, 3, 4 along the first axis
    for t in 0..4 {
        p.w[t * task.dim()] = (t + 1) as f64;
    }
    let m = collapse_metrics(&task, &p);
    assert!((m.word_norm_mean - 2.5).abs() < 1e-15);
    assert!((m.word_norm_std - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
    assert!((m.word_norm_std_pop - 1.25f64.sqrt()).abs() < 1e-15);
    assert_eq!(m.norm_by_rank, vec![2.0, 3.0]);
}

#[test]
fn pca_matches_a_direct_svd() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for (n_c, s_c, d) in [(3, 5, 4), (2, 3, 6), (5, 2, 4), (3, 1, 2)] {
        let task = TaskConfig {
            dim: d,
            ..config(n_c, s_c, 2, Some(7))
        }
        .build()
        .unwrap();
        let p = Params::random(&task, 1.0, &mut rng);
        let m = collapse_metrics(&task, &p);
        let rows = n_c.min(3) * s_c;
        let x = DMatrix::from_fn(rows, d, |i, j| p.w[i * d + j]);
        let mean = x.row_mean();
        let xc = DMatrix::from_fn(rows, d, |i, j| x[(i, j)] - mean[j]);
        let mut sv: Vec<f64> = xc
            .svd(false, false)
            .singular_values
            .iter()
            .copied()
            .collect();
        sv.sort_by(|a, b| b.total_cmp(a));
        sv.resize(3, 0.0);
        for c in 0..3 {
            assert!(
                (m.pca_w[c] - sv[c]).abs() < 1e-10 * sv[0],
                "{n_c} {s_c} {d}: {:?} vs {sv:?}",
                m.pca_w
            );
        }
        // projections: 3-D coordinates reproduce the squared singular values
        let (pts, labels) = pca_points_w(&task, &p);
        assert_eq!(pts.len(), rows);
        assert!(labels.iter().enumerate().all(|(i, &a)| a == i / s_c));
        for c in 0..3 {
            let ss: f64 = pts.iter().map(|q| q[c] * q[c]).sum();
            assert!((ss - sv[c] * sv[c]).abs() < 1e-9 * sv[0] * sv[0]);
        }
        let (pts_u, labels_u) = pca_points_u(&task, &p);
        assert_eq!(pts_u.len(), labels_u.len());
        assert!(labels_u.iter().all(|&a| a < 3));
        let (_, sv_u) = pca_projection(
            &p.u.chunks(d)
                .zip(task.z())
                .filter(|(_, &a)| a < 3)
                .flat_map(|(u, _)| u.to_vec())
                .collect::<Vec<f64>>(),
            d,
        );
        assert_eq!(sv_u, m.pca_u);
    }
}

#[test]
fn paper_shapes_predict_and_measure_quickly() {
    use std::time::Instant;
    let paper = feature_collapse::experiments::Preset::Fig3.task();
    let fig4c = TaskConfig {
        freq: Freq::Zipf { exponent: 1.0 },
        layer_norm: Some(0.0),
        lambda_w: 0.0,
        ..paper.clone()
    };
    let fig4a = TaskConfig {
        freq: Freq::Zipf { exponent: 1.0 },
        ..paper.clone()
    };
    for (cfg, form) in [
        (&paper, Form::LatentSet),
        (&paper, Form::MeanField),
        (&fig4c, Form::LatentSet),
        (&fig4c, Form::MeanField),
        (&fig4a, Form::MeanField),
    ] {
        let task = cfg.build().unwrap();
        let t0 = Instant::now();
        let pred = predict(&task, form).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        // generous bound: the machine may be shared; unloaded it is well under 2 s
        assert!(dt < 10.0, "{form}: {dt} s");
        let t0 = Instant::now();
        let p = build(&task, &pred, &frame_for(&task));
        let m = collapse_metrics(&task, &p);
        let f = family_distance(&task, &p, &pred);
        let dt = t0.elapsed().as_secs_f64();
        assert!(dt < 5.0, "metrics: {dt} s");
        assert_collapsed("paper", &m, pred.kind != CollapseType::III);
        assert_in_family("paper", &f);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Metrics and the family distance are invariant under an orthogonal map of
    /// `R^d` applied to every `w_t` and `u_{j,l}` (fixing `1_d` with LayerNorm).
    #[test]
    fn metrics_are_invariant_under_orthogonal_maps(
        seed in 0u64..1_000_000,
        n_c in 2usize..5,
        s_c in 1usize..4,
        extra_d in 0usize..4,
        ln in proptest::bool::ANY,
        collapsed in proptest::bool::ANY,
    ) {
        let cfg = TaskConfig {
            dim: n_c + extra_d,
            layer_norm: if ln { Some(1e-5) } else { None },
            lambda_w: if ln { 0.0 } else { 0.01 },
            ..zipf(config(n_c, s_c, 2, Some(6)))
        };
        let task = cfg.build().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pred = predict(&task, Form::MeanField).unwrap();
        let p = if collapsed {
            let mut p = build(&task, &pred, &frame_for(&task));
            // a little noise so that nothing is exactly zero
            for v in p.w.iter_mut().chain(p.u.iter_mut()) {
                *v += 0.05 * standard_normal(&mut rng);
            }
            p
        } else {
            Params::random(&task, 1.0, &mut rng)
        };
        let q = random_orthogonal(task.dim(), ln, &mut rng);
        let pr = rotate(&p, &q);
        let (a, b) = (collapse_metrics(&task, &p), collapse_metrics(&task, &pr));
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * (1.0 + x.abs());
        for (x, y) in [
            (a.within_spread_w, b.within_spread_w),
            (a.direction_spread_w, b.direction_spread_w),
            (a.norm_cv_w, b.norm_cv_w),
            (a.gram_error_w, b.gram_error_w),
            (a.within_spread_u, b.within_spread_u),
            (a.direction_spread_u, b.direction_spread_u),
            (a.gram_error_u, b.gram_error_u),
            (a.duality, b.duality),
            (a.word_norm_mean, b.word_norm_mean),
            (a.u_norm_mean, b.u_norm_mean),
        ] {
            prop_assert!(close(x, y), "{x} vs {y}");
        }
        for c in 0..3 {
            prop_assert!(close(a.pca_w[c], b.pca_w[c]) && close(a.pca_u[c], b.pca_u[c]));
        }
        let (fa, fb) = (family_distance(&task, &p, &pred), family_distance(&task, &pr, &pred));
        for (x, y) in [
            (fa.within_w, fb.within_w),
            (fa.spread_u, fb.spread_u),
            (fa.norm_w_err, fb.norm_w_err),
            (fa.norm_u_err, fb.norm_u_err),
            (fa.gram_err, fb.gram_err),
            (fa.duality_err, fb.duality_err),
        ] {
            prop_assert!(close(x, y), "{x} vs {y}");
        }
    }
}

/// Brute-force mean-field loss `E_beta log(1 + K prod_l (q + p e^{-kappa b r_{beta_l}}))`.
fn exact_mean_field_loss(task: &Task, r: &[f64], b: f64) -> f64 {
    let n_c = task.n_c() as f64;
    let (kappa, q, p) = (n_c / (n_c - 1.0), 1.0 / n_c, 1.0 - 1.0 / n_c);
    let factor: Vec<f64> = r.iter().map(|rb| q + p * (-kappa * b * rb).exp()).collect();
    let (s_c, len) = (task.s_c(), task.len());
    let mut total = 0.0;
    for idx in 0..s_c.pow(len as u32) {
        let (mut rest, mut w, mut prod) = (idx, 1.0, task.k() as f64);
        for _ in 0..len {
            let beta = rest % s_c;
            rest /= s_c;
            w *= task.mu()[beta];
            prod *= factor[beta];
        }
        total += w * prod.ln_1p();
    }
    total
}

#[test]
fn sampled_mean_field_risk_is_within_its_stated_error() {
    // s_c^L = 5^9 > 2^20: sampled
    let task = zipf(config(3, 5, 9, Some(100))).build().unwrap();
    let pred = predict(&task, Form::MeanField).unwrap();
    let err = pred.risk_error.expect("sampled");
    assert!(pred.n_samples.is_some() && err > 0.0);
    let penalty =
        0.5 * task.lambda_w() * task.n_c() as f64 * pred.r.iter().map(|v| v * v).sum::<f64>()
            + 0.5 * task.lambda_u() * (task.k() * task.len()) as f64 * pred.u_norm.powi(2);
    let exact = exact_mean_field_loss(&task, &pred.r, pred.u_norm) + penalty;
    assert!(
        (pred.risk - exact).abs() < 5.0 * err,
        "{} vs {exact} (err {err})",
        pred.risk
    );
    // exact enumeration when small, and then equal to the brute force to round-off
    let small = zipf(config(3, 3, 4, Some(100))).build().unwrap();
    let pred = predict(&small, Form::MeanField).unwrap();
    assert!(pred.risk_error.is_none());
    let v = reduced_risk(
        &small,
        Form::MeanField,
        CollapseType::III,
        &pred.r,
        pred.u_norm,
    )
    .unwrap();
    let penalty = 0.5 * small.lambda_w() * 3.0 * pred.r.iter().map(|v| v * v).sum::<f64>()
        + 0.5 * small.lambda_u() * (small.k() * small.len()) as f64 * pred.u_norm.powi(2);
    let exact = exact_mean_field_loss(&small, &pred.r, pred.u_norm) + penalty;
    assert!(rel(v, exact) < 1e-13 && rel(pred.risk, exact) < 1e-13);
}

#[test]
fn heavy_weight_decay_gives_the_trivial_configuration() {
    // type I: s >= (n_c-1)/n_c; type III: L kappa sigma_0 ||mu|| <= gamma
    for cfg in [config(3, 2, 2, None), zipf(config(3, 3, 2, None))] {
        let task = TaskConfig {
            lambda_w: 5.0,
            lambda_u: 5.0,
            ..cfg
        }
        .build()
        .unwrap();
        for form in [Form::Full, Form::MeanField, Form::LatentSet] {
            let pred = predict(&task, form).unwrap();
            assert_eq!(pred.u_norm, 0.0, "{form}");
            assert!(pred.r.iter().all(|&r| r == 0.0));
        }
        let pred = predict(&task, Form::Full).unwrap();
        let trivial = task.len() as f64 * (task.n_c() as f64).ln();
        assert!(rel(pred.risk, trivial) < 1e-15);
    }
    // otherwise the prediction beats the trivial configuration
    for (name, cfg) in tiny_tasks() {
        let task = cfg.build().unwrap();
        let pred = predict(&task, Form::Full).unwrap();
        assert!(
            pred.risk < task.len() as f64 * (task.n_c() as f64).ln(),
            "{name}"
        );
    }
}
