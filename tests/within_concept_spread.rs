//! `metrics::within_concept_spread`: zero at every predicted collapse type,
//! positive and exactly computable off it.

use feature_collapse::collapse::{build, equiangular_frame, predict, Form};
use feature_collapse::metrics::within_concept_spread;
use feature_collapse::task::{Freq, TaskConfig};

fn cfg(freq: Freq, layer_norm: Option<f64>, lambda_w: f64) -> TaskConfig {
    TaskConfig {
        n_c: 3,
        s_c: 3,
        len: 2,
        dim: 4,
        freq,
        layer_norm,
        lambda_w,
        lambda_u: 0.01,
        ..Default::default()
    }
}

#[test]
fn vanishes_at_types_i_ii_iii_and_not_elsewhere() {
    let zipf = Freq::Zipf { exponent: 1.0 };
    for c in [
        cfg(Freq::Uniform, None, 0.01), // type I
        cfg(zipf, Some(0.0), 0.0),      // type II
        cfg(zipf, None, 0.01),          // type III: equal directions, unequal norms
    ] {
        let task = c.build().unwrap();
        let pred = predict(&task, Form::Full).unwrap();
        let frame = equiangular_frame(task.n_c(), task.dim(), task.norm().centres()).unwrap();
        let mut p = build(&task, &pred, &frame);
        assert!(within_concept_spread(&task, &p) < 1e-12, "{task}");
        // move one token of concept 0 away from its concept
        p.w[0] += 0.5;
        p.w[1] -= 0.3;
        assert!(within_concept_spread(&task, &p) > 1e-3, "{task}");
    }
}

#[test]
fn matches_a_hand_computed_value() {
    // uniform, no LayerNorm: Phi = W itself. Concept 0 rows (1,0,0,0), (3,0,0,0),
    // (2,0,0,0); the other concepts are collapsed at (0,1,0,0) and (0,0,1,0).
    let task = cfg(Freq::Uniform, None, 0.01).build().unwrap();
    let mut p = feature_collapse::network::Params::zeros(&task);
    for (t, x) in [1.0, 3.0, 2.0].into_iter().enumerate() {
        p.w[t * 4] = x;
    }
    for t in 3..6 {
        p.w[t * 4 + 1] = 1.0;
    }
    for t in 6..9 {
        p.w[t * 4 + 2] = 1.0;
    }
    // ||Phi - M||^2 = 1 + 1 + 0 = 2, ||Phi||^2 = 1 + 9 + 4 + 6 = 20
    let want = (2.0f64 / 20.0).sqrt();
    assert!((within_concept_spread(&task, &p) - want).abs() < 1e-15);
}
