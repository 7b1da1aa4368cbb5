//! Unit tests of the task module.
use super::*;
use rand::RngExt;

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

/// The rows of a stream of independent uniform draws in `[n_c]^len`, keeping
/// the first occurrence of each, until `k` distinct rows are found; also the
/// number of distinct rows among the stream's first `k` (what a draw with
/// replacement would have kept).
fn first_distinct_rows(n_c: usize, len: usize, k: usize, seed: u64) -> (Vec<usize>, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let (mut drawn, mut distinct_in_first_k) = (0, 0);
    while rows.len() < k {
        let row: Vec<usize> = (0..len).map(|_| rng.random_range(0..n_c)).collect();
        drawn += 1;
        if !rows.contains(&row) {
            rows.push(row);
            if drawn <= k {
                distinct_in_first_k += 1;
            }
        }
    }
    (rows.concat(), distinct_in_first_k)
}

#[test]
fn drawn_latent_variables_are_distinct_and_keep_a_stream_without_repeats() {
    // K = 12 of 27 (the atlas's drawn grids): seeds 0-4 repeat rows in the
    // first 12 draws; the draw replaces each repeat by the next new row.
    let mut with_repeats = 0;
    for seed in 0..5 {
        let task = TaskConfig {
            n_c: 3,
            len: 3,
            classes: Some(12),
            seed,
            ..Default::default()
        }
        .build()
        .unwrap();
        let (expected, distinct_in_first_k) = first_distinct_rows(3, 3, 12, seed);
        assert_eq!(task.z(), &expected[..], "seed {seed}");
        assert_eq!(repeated_rows(task.z(), 3), None, "seed {seed}");
        with_repeats += usize::from(distinct_in_first_k < 12);
    }
    assert!(with_repeats > 0, "the case must exercise a redraw");
    // A stream with no repeat in its first K rows gives exactly those rows.
    let (n_c, len, k) = (3, 15, 50);
    for seed in 0..3 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let stream: Vec<usize> = (0..k * len).map(|_| rng.random_range(0..n_c)).collect();
        assert_eq!(repeated_rows(&stream, len), None);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        assert_eq!(draw_latent(n_c, len, k, &mut rng), stream);
    }
    // K = n_c^L: every latent variable once.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut all = draw_latent(2, 3, 8, &mut rng)
        .chunks(3)
        .map(<[usize]>::to_vec)
        .collect::<Vec<_>>();
    all.sort();
    assert_eq!(all.concat(), full_latent_set(2, 3));
}

#[test]
fn repeated_explicit_latent_variables_are_refused() {
    assert_eq!(repeated_rows(&[0, 1, 1, 0, 2, 2, 1, 0], 2), Some((1, 3)));
    assert_eq!(repeated_rows(&[0, 1, 1, 0, 2, 2], 2), None);
    let err = TaskConfig {
        latent: Some(vec![0, 1, 1, 0, 2, 2, 1, 0]),
        classes: Some(4),
        ..Default::default()
    }
    .build()
    .unwrap_err();
    assert!(err.is_bad_input());
    let msg = err.report();
    assert!(
        msg.starts_with("invalid parameter `latent`")
            && msg.contains("rows 1 and 3 (0-based) are the same latent variable [1, 0]"),
        "{msg}"
    );
    // more classes than distinct latent variables
    let err = TaskConfig {
        classes: Some(10),
        ..Default::default()
    }
    .build()
    .unwrap_err();
    assert!(err.report().contains("above n_c^L = 9"), "{}", err.report());
}
