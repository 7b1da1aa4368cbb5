//! A true theorem is never `refuted`: random small instances of the three
//! theorems, full and drawn latent sets, with weight decays from 1e-16 to 1e4
//! (both phases, and far outside the range where the search can resolve
//! anything). The verdict may be `confirmed` or `inconclusive`, and an instance
//! may be refused as bad input; a `refuted` verdict is a bug of the verifier.

use feature_collapse::task::TaskConfig;
use feature_collapse::verify::{verify_theorem, Theorem, Verdict, VerifyConfig};
use proptest::prelude::*;

fn instance() -> impl Strategy<Value = (Theorem, TaskConfig)> {
    (
        0usize..3,
        2usize..=3,
        2usize..=3,
        0usize..=1,
        -16.0f64..4.0,
        any::<bool>(),
        0u64..1000,
    )
        .prop_map(|(t, n_c, s_c, extra_d, log_lambda, drawn, seed)| {
            let theorem = [Theorem::One, Theorem::Two, Theorem::Three][t];
            let base = theorem.default_task();
            let lambda = 10f64.powf(log_lambda);
            let full = n_c * n_c;
            let cfg = TaskConfig {
                n_c,
                s_c,
                len: 2,
                dim: n_c + extra_d,
                classes: drawn.then_some(2 + (seed as usize) % (full - 2)),
                lambda_w: if theorem == Theorem::Three {
                    0.0
                } else {
                    lambda
                },
                lambda_u: lambda,
                seed,
                ..base
            };
            (theorem, cfg)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_true_theorem_is_never_refuted((theorem, cfg) in instance()) {
        let Ok(task) = cfg.clone().build() else {
            return Ok(());
        };
        let vcfg = VerifyConfig { restarts: 4, ..VerifyConfig::default() };
        match verify_theorem(theorem, &task, &vcfg, |_| {}) {
            Ok(r) => prop_assert_ne!(
                r.verdict,
                Verdict::Refuted,
                "theorem {} on {}: {:#?}",
                theorem.number(),
                task,
                r.reasons
            ),
            Err(e) => prop_assert!(e.is_bad_input(), "theorem {} on {}: {e}", theorem.number(), task),
        }
    }
}
