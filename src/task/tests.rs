//! Unit tests of the task module.
use super::*;

#[test]
fn zipf_weights_are_normalised_and_decreasing() {
    let mu = Freq::Zipf { exponent: 1.0 }.weights(4);
    let h = 1.0 + 0.5 + 1.0 / 3.0 + 0.25;
    assert!((mu[0] - 1.0 / h).abs() < 1e-15);
    assert!((mu.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    assert!(mu.windows(2).all(|w| w[0] > w[1]));
}

#[test]
fn full_latent_set_lists_every_sequence_once() {
    let z = full_latent_set(3, 3);
    let mut seen = std::collections::HashSet::new();
    for row in z.chunks(3) {
        assert!(row.iter().all(|&a| a < 3));
        assert!(seen.insert(row.to_vec()));
    }
    assert_eq!(seen.len(), 27);
}

#[test]
fn bad_inputs_name_the_parameter() {
    let bad = |c: TaskConfig, name: &str| match c.build() {
        Err(Error::InvalidParam { name: n, .. }) => assert_eq!(n, name),
        other => panic!("expected error on {name}, got {other:?}"),
    };
    bad(
        TaskConfig {
            classes: Some(0),
            ..Default::default()
        },
        "classes",
    );
    bad(
        TaskConfig {
            lambda_w: -1.0,
            ..Default::default()
        },
        "lambda_w",
    );
    bad(
        TaskConfig {
            lambda_u: f64::NAN,
            ..Default::default()
        },
        "lambda_u",
    );
    bad(
        TaskConfig {
            dim: 0,
            ..Default::default()
        },
        "dim",
    );
    bad(
        TaskConfig {
            dim: 1,
            layer_norm: Some(0.0),
            ..Default::default()
        },
        "dim",
    );
    bad(
        TaskConfig {
            freq: Freq::Zipf { exponent: -1.0 },
            ..Default::default()
        },
        "zipf_exponent",
    );
}

#[test]
fn sampled_ranks_follow_mu() {
    let task = TaskConfig {
        s_c: 3,
        freq: Freq::Zipf { exponent: 1.0 },
        ..Default::default()
    }
    .build()
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let s = task.sample_sentences(20_000, &mut rng);
    let mut counts = [0usize; 3];
    for (i, &t) in s.tokens.iter().enumerate() {
        let k = s.labels[i / task.len] as usize;
        let alpha = task.z_of(k)[i % task.len];
        assert_eq!(
            t as usize / task.s_c,
            alpha,
            "token must belong to concept z_k,l"
        );
        counts[t as usize % task.s_c] += 1;
    }
    let total = s.tokens.len() as f64;
    for (b, &count) in counts.iter().enumerate() {
        let f = count as f64 / total;
        assert!(
            (f - task.mu[b]).abs() < 0.01,
            "rank {b}: {f} vs {}",
            task.mu[b]
        );
    }
}
