//! `verify` at scale: the evaluation cache, the Lanczos certificate against the
//! dense Hessian, the Hessian-vector product, and the saddle escape.

use feature_collapse::collapse;
use feature_collapse::limit;
use feature_collapse::network::Params;
use feature_collapse::task::{Freq, Task, TaskConfig};
use feature_collapse::verify::{
    exact_form, hessian_report_dense, hessian_report_lanczos, hessian_vector_product, minimise,
    minimise_with, MinimiseOptions, Theorem, VerifyConfig,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn predicted(task: &Task) -> Params {
    let pred = collapse::predict(task, exact_form(task)).unwrap();
    let frame = collapse::equiangular_frame(task.n_c(), task.dim(), task.norm().centres()).unwrap();
    collapse::build(task, &pred, &frame)
}

fn random_point(task: &Task, seed: u64) -> Params {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Params::random(task, 0.5, &mut rng)
}

#[test]
fn risk_of_risk_grad_is_bitwise_the_risk() {
    for t in Theorem::ALL {
        let task = t.default_task().build().unwrap();
        let p = random_point(&task, 3);
        assert_eq!(
            limit::risk_grad(&task, &p).0.to_bits(),
            limit::risk(&task, &p).to_bits()
        );
    }
}

#[test]
fn cached_and_uncached_lbfgs_are_bit_identical() {
    for t in Theorem::ALL {
        let task = t.default_task().build().unwrap();
        let cfg = VerifyConfig::default();
        let start = random_point(&task, 11);
        let opts = |cache| MinimiseOptions {
            cache,
            escape_saddles: false,
        };
        let a = minimise_with(&task, &start, &cfg, opts(true)).unwrap();
        let b = minimise_with(&task, &start, &cfg, opts(false)).unwrap();
        assert_eq!(a.iterations, b.iterations, "theorem {}", t.number());
        assert_eq!(a.termination, b.termination);
        assert_eq!(a.safeguards, b.safeguards);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.x), bits(&b.x), "theorem {}", t.number());
        // argmin asks for cost then gradient at each point: the cache saves about half
        assert!(
            (a.evaluations as f64) < 0.7 * b.evaluations as f64,
            "cached {} vs uncached {} evaluations",
            a.evaluations,
            b.evaluations
        );
        let g = limit::risk_grad(&task, &start.with_flat(&a.x)).1;
        assert!(g.iter().map(|x| x * x).sum::<f64>().sqrt() <= cfg.grad_tol);
    }
}

/// The two restarts of issue 7 that ended on "non-finite risk" and on "search
/// direction must be a descent direction" at `||grad R|| ~ 3e-9`.
#[test]
fn round_off_restarts_of_issue_7_converge() {
    let t1 = TaskConfig {
        lambda_w: 0.01,
        lambda_u: 0.02,
        ..Theorem::One.default_task()
    }
    .build()
    .unwrap();
    let t2 = TaskConfig {
        dim: 7,
        ..Theorem::Two.default_task()
    }
    .build()
    .unwrap();
    let cfg = VerifyConfig::default();
    for (task, seed) in [(t1, 6u64), (t2, 2u64)] {
        let start = random_point(&task, seed);
        let m = minimise(&task, &start, &cfg).unwrap();
        let g = limit::risk_grad(&task, &start.with_flat(&m.x)).1;
        let gn = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(gn <= cfg.grad_tol, "{gn:e} {}", m.termination);
        assert!(!m.hit_cap);
        assert_eq!(m.termination, "Solver converged");
    }
}

fn lanczos_instances() -> Vec<(Task, Params)> {
    let mut out = Vec::new();
    for t in Theorem::ALL {
        let task = t.default_task().build().unwrap();
        let p = predicted(&task);
        out.push((task, p));
    }
    // a drawn latent set and LayerNorm with eps > 0
    let task = TaskConfig {
        n_c: 3,
        s_c: 2,
        len: 3,
        dim: 3,
        classes: Some(10),
        freq: Freq::Zipf { exponent: 1.5 },
        layer_norm: Some(0.1),
        lambda_w: 0.0,
        lambda_u: 0.02,
        ..TaskConfig::default()
    }
    .build()
    .unwrap();
    let p = predicted(&task);
    out.push((task, p));
    // the origin below lambda_critical: a saddle with negative curvature
    let task = TaskConfig {
        lambda_w: 0.002,
        lambda_u: 0.002,
        ..Theorem::One.default_task()
    }
    .build()
    .unwrap();
    let p = Params::zeros(&task);
    out.push((task, p));
    out
}

#[test]
fn lanczos_certificate_agrees_with_the_dense_hessian() {
    for (task, p) in lanczos_instances() {
        let d = hessian_report_dense(&task, &p);
        let l = hessian_report_lanczos(&task, &p);
        let scale = d.max_eig.abs().max(1.0);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * scale;
        assert!(close(d.min_eig, l.min_eig), "{task}: {d:?} {l:?}");
        assert!(close(d.max_eig, l.max_eig), "{task}: {d:?} {l:?}");
        assert!(
            close(d.transverse_min_eig, l.transverse_min_eig),
            "{task}: {d:?} {l:?}"
        );
        assert_eq!(d.symmetry_dim, l.symmetry_dim, "{task}");
        if l.tangent_residual <= 1e-7 * scale {
            assert_eq!(d.near_zero, l.near_zero, "{task}: {d:?} {l:?}");
        }
        eprintln!(
            "{task}: dense [{:.3e}, {:.3e}] transverse {:.3e}; lanczos [{:.3e}, {:.3e}] transverse {:.3e}, \
             {} products (dense {}); max difference {:.1e}",
            d.min_eig,
            d.max_eig,
            d.transverse_min_eig,
            l.min_eig,
            l.max_eig,
            l.transverse_min_eig,
            l.hessian_products,
            d.hessian_products,
            (d.min_eig - l.min_eig)
                .abs()
                .max((d.max_eig - l.max_eig).abs())
                .max((d.transverse_min_eig - l.transverse_min_eig).abs())
        );
        assert_eq!(l.method, "lanczos");
    }
}

#[test]
fn saddle_at_the_origin_is_escaped() {
    let task = TaskConfig {
        lambda_w: 0.002,
        lambda_u: 0.002,
        ..Theorem::One.default_task()
    }
    .build()
    .unwrap();
    let origin = Params::zeros(&task);
    let r0 = limit::risk(&task, &origin);
    let g0 = limit::risk_grad(&task, &origin).1;
    assert!(g0.iter().all(|g| *g == 0.0), "the origin is critical");
    let cfg = VerifyConfig::default();
    // without the escape L-BFGS stops at once on the saddle
    let stuck = minimise_with(
        &task,
        &origin,
        &cfg,
        MinimiseOptions {
            cache: true,
            escape_saddles: false,
        },
    )
    .unwrap();
    assert_eq!(limit::risk(&task, &origin.with_flat(&stuck.x)), r0);
    let m = minimise(&task, &origin, &cfg).unwrap();
    assert!(!m.saddles.is_empty());
    let s = &m.saddles[0];
    assert!(s.min_eig < -1e-3, "{s:?}");
    assert_eq!(s.risk, r0);
    assert!(s.risk_after < r0);
    let r = limit::risk(&task, &origin.with_flat(&m.x));
    let pred = collapse::predict(&task, exact_form(&task)).unwrap();
    assert!(
        (r - pred.risk).abs() <= 1e-8 * pred.risk.abs().max(1.0),
        "{r} vs {}",
        pred.risk
    );
}

fn tiny_task(ln: bool, zipf: bool) -> Task {
    TaskConfig {
        n_c: 2,
        s_c: 2,
        len: 2,
        dim: 3,
        freq: if zipf {
            Freq::Zipf { exponent: 1.0 }
        } else {
            Freq::Uniform
        },
        layer_norm: ln.then_some(0.05),
        lambda_w: 0.01,
        lambda_u: 0.02,
        ..TaskConfig::default()
    }
    .build()
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// The exact `H v` along a random direction equals the dense exact Hessian
    /// (columns `H e_i`, symmetrised) times `v` to round-off (linearity of the
    /// product in `v`), and `u^T H v = v^T H u`.
    #[test]
    fn hessian_vector_product_matches_dense(seed in 0u64..1000, ln: bool, zipf: bool) {
        let task = tiny_task(ln, zipf);
        let p = random_point(&task, seed);
        let n = task.n_params();
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
        let v = Params::random(&task, 1.0, &mut rng).to_flat();
        let u = Params::random(&task, 1.0, &mut rng).to_flat();
        let h = limit::hessian(&task, &p);
        let hv = hessian_vector_product(&task, &p, &v);
        let hu = hessian_vector_product(&task, &p, &u);
        let scale = h.amax().max(1.0) * v.iter().map(|x| x.abs()).sum::<f64>();
        for i in 0..n {
            let dense: f64 = (0..n).map(|j| h[(i, j)] * v[j]).sum();
            prop_assert!((dense - hv[i]).abs() <= 1e-13 * scale, "{} vs {}", dense, hv[i]);
        }
        let uhv: f64 = u.iter().zip(&hv).map(|(a, b)| a * b).sum();
        let vhu: f64 = v.iter().zip(&hu).map(|(a, b)| a * b).sum();
        prop_assert!((uhv - vhu).abs() <= 1e-13 * scale.max(uhv.abs()));
    }
}
