//! The critical weight decay: closed form (docs/theory.md §6) against bisection on
//! the exact problem (Hessian of R at the origin and random restarts).

use feature_collapse::collapse::{lambda_critical, origin_coupling};
use feature_collapse::task::{Freq, TaskConfig};
use feature_collapse::verify::{claims::origin_min_eig, lambda_critical_bisection, VerifyConfig};
use proptest::prelude::*;

fn bisect_cfg() -> VerifyConfig {
    VerifyConfig {
        restarts: 2,
        max_iters: 300,
        grad_tol: 1e-8,
        ..VerifyConfig::default()
    }
}

/// A random small instance: full or drawn latent set, uniform or Zipf mu, any d >= 1.
fn instance() -> impl Strategy<Value = TaskConfig> {
    (
        2usize..=3,
        1usize..=3,
        1usize..=3,
        1usize..=3,
        any::<bool>(),
        0u8..=2,
        0u64..1000,
    )
        .prop_map(|(n_c, s_c, len, dim, drawn, zipf, seed)| {
            let full = n_c.pow(len as u32);
            TaskConfig {
                n_c,
                s_c,
                len,
                dim,
                classes: (drawn && full > 2).then(|| 2 + (seed as usize) % (full - 2)),
                freq: match zipf {
                    0 => Freq::Uniform,
                    z => Freq::Zipf {
                        exponent: z as f64 * 0.75,
                    },
                },
                seed,
                ..TaskConfig::default()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]

    /// The bisection (which uses neither the closed form nor the reduced
    /// objectives) lands on sigma to its bracket width.
    #[test]
    fn closed_form_matches_bisection(cfg in instance()) {
        let task = cfg.build().unwrap();
        let closed = lambda_critical(&task).unwrap();
        let b = lambda_critical_bisection(&task, &bisect_cfg(), 1e-8).unwrap().unwrap();
        prop_assert!(b.bracket[0] <= b.lambda && b.lambda <= b.bracket[1]);
        // closed = 0 when the drawn classes share one latent variable (nothing to
        // learn); the exact Hessian at the origin resolves lambda to about 1e-10.
        let err = (b.lambda - closed).abs();
        prop_assert!(
            err <= 1e-6 * closed + 1e-10,
            "closed {closed} bisection {} (error {err:.2e}) on {task}",
            b.lambda
        );
    }

    /// The smallest Hessian eigenvalue at the origin, for unequal decays, is
    /// (lambda_W + lambda_U)/2 - sqrt(((lambda_W - lambda_U)/2)^2 + sigma^2).
    #[test]
    fn origin_hessian_has_the_closed_form_min_eigenvalue(
        cfg in instance(), lw in 0.01f64..0.5, lu in 0.01f64..0.5,
    ) {
        use feature_collapse::network::Params;
        use feature_collapse::limit::hessian;
        let task = TaskConfig { lambda_w: lw, lambda_u: lu, ..cfg }.build().unwrap();
        let h = hessian(&task, &Params::zeros(&task));
        let min = h.symmetric_eigen().eigenvalues.min();
        let s = origin_coupling(&task);
        let want = 0.5 * (lw + lu) - (0.25 * (lw - lu) * (lw - lu) + s * s).sqrt();
        prop_assert!((min - want).abs() <= 1e-12 * (lw + lu + s), "{min} vs {want}");
        prop_assert!((origin_min_eig(&task) - want).abs() <= 1e-15);
    }
}

/// With LayerNorm there is no phase change: both say so.
#[test]
fn layer_norm_has_no_critical_weight_decay() {
    let task = TaskConfig {
        layer_norm: Some(0.0),
        dim: 3,
        ..TaskConfig::default()
    }
    .build()
    .unwrap();
    assert!(lambda_critical(&task).is_none());
    assert!(lambda_critical_bisection(&task, &bisect_cfg(), 1e-6)
        .unwrap()
        .is_none());
}

/// The issue's instance: the switch lies between 0.135 and 0.137, at sqrt(1/54).
#[test]
fn issue_instance_switches_at_sqrt_one_over_54() {
    let task = TaskConfig {
        n_c: 3,
        s_c: 2,
        len: 3,
        dim: 4,
        ..TaskConfig::default()
    }
    .build()
    .unwrap();
    let closed = lambda_critical(&task).unwrap();
    assert!((closed - (1.0f64 / 54.0).sqrt()).abs() < 1e-15);
    let b = lambda_critical_bisection(&task, &bisect_cfg(), 1e-9)
        .unwrap()
        .unwrap();
    assert!(
        (b.lambda - closed).abs() <= 1e-8 * closed,
        "{} vs {closed}",
        b.lambda
    );
}
