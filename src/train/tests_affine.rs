//! The f32 trainer with `layer-affine` (`gamma ⊙ LN(w) + beta`): gradient against the
//! f64 sample risk, one step against the hand-computed update, thread-count
//! independence and bit-identical checkpoint resumes.

use super::*;
use crate::network::empirical_risk_grad;
use crate::norm::Norm;
use crate::task::{Freq, TaskConfig};

const AFFINE: Norm = Norm::LayerAffine { eps: 1e-5 };

fn task(s_c: usize, len: usize, dim: usize, k: usize, lambdas: [f64; 3]) -> Task {
    TaskConfig {
        n_c: 3,
        s_c,
        len,
        dim,
        classes: Some(k),
        freq: Freq::Zipf { exponent: 1.0 },
        layer_norm: None,
        norm: Some(AFFINE),
        lambda_w: lambdas[0],
        lambda_u: lambdas[1],
        lambda_affine: Some(lambdas[2]),
        seed: 7,
        latent: None,
    }
    .build()
    .unwrap()
}

fn config(threads: usize, batch: usize, n_spl: usize) -> TrainConfig {
    TrainConfig {
        n_spl,
        n_test: 2,
        epochs: 3,
        lr: 0.5,
        batch,
        eval_every: 0,
        checkpoint_every: 0,
        seed: 11,
        threads,
    }
}

/// Weights of order one and `gamma`, `beta` away from their initialisation, so that
/// every term of the gradient matters.
fn randomise(t: &mut Trainer, seed: u64) {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut p = Params::random(t.task(), 0.5, &mut r);
    for g in p.gain.iter_mut() {
        *g = 1.0 + 0.5 * crate::network::standard_normal(&mut r);
    }
    for b in p.bias.iter_mut() {
        *b = 0.3 * crate::network::standard_normal(&mut r);
    }
    t.set_params(&p).unwrap();
}

fn max_abs(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(0.0, |m, x| m.max(x.abs()))
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn starts_at_pytorch_initialisation() {
    let t = Trainer::new(&task(3, 3, 8, 5, [0.0; 3]), &config(1, 20, 4)).unwrap();
    let (g, b) = t.affine().split_at(8);
    assert!(g.iter().all(|&v| v == 1.0) && b.iter().all(|&v| v == 0.0));
    let p = t.params_f64();
    assert_eq!((p.gain.len(), p.bias.len()), (8, 8));
}

#[test]
fn f32_gradient_matches_f64_reference() {
    for threads in [1, 2] {
        let task = task(3, 3, 8, 5, [0.0; 3]);
        let mut t = Trainer::new(&task, &config(threads, 20, 4)).unwrap();
        randomise(&mut t, 1);
        let rows: Vec<usize> = (0..t.train_data().n()).collect();
        let (loss32, g32) = t.batch_gradient(&rows);
        let (loss64, g64) = empirical_risk_grad(&task, &t.params_f64(), t.train_data());
        assert_eq!(g32.len(), g64.len());
        assert!((loss32 - loss64).abs() < 1e-5 * (1.0 + loss64.abs()));
        let scale = max_abs(g64.iter().copied());
        let err = max_abs(g32.iter().zip(&g64).map(|(a, b)| a - b));
        assert!(scale > 1e-2, "gradient too small to test: {scale}");
        assert!(err < 1e-5 * scale, "max error {err:e} vs scale {scale:e}");
        // The affine block itself is not zero (it is tested, not skipped).
        let aff = &g64[g64.len() - 16..];
        assert!(max_abs(aff.iter().copied()) > 1e-3);
    }
}

#[test]
fn one_sgd_step_matches_hand_computed_update() {
    let task = task(3, 3, 8, 5, [0.03, 0.07, 0.05]);
    let mut t = Trainer::new(&task, &config(1, 6, 4)).unwrap();
    randomise(&mut t, 2);
    let rows = [3usize, 0, 17, 9, 12, 5];
    let before = t.params_f64();
    let sub = Sentences {
        tokens: rows
            .iter()
            .flat_map(|&i| t.train_data().sentence(i).to_vec())
            .collect(),
        labels: rows.iter().map(|&i| t.train_data().labels[i]).collect(),
        len: t.train_data().len,
    };
    // empirical_risk_grad adds lambda theta for W, U, gamma and beta.
    let (_, g) = empirical_risk_grad(&task, &before, &sub);
    let expected: Vec<f64> = before
        .to_flat()
        .iter()
        .zip(&g)
        .map(|(th, gi)| th - 0.5 * gi)
        .collect();
    t.step(&rows);
    let got = t.params_f64().to_flat();
    let err = max_abs(got.iter().zip(&expected).map(|(a, b)| a - b));
    let n = got.len();
    let moved = max_abs((n - 16..n).map(|i| got[i] - before.to_flat()[i]));
    assert!(moved > 1e-3, "gamma, beta should move: {moved}");
    assert!(err < 2e-6, "max error {err:e}");
}

#[test]
fn results_do_not_depend_on_thread_count() {
    // K = 100 runs in row panels, K = 300 as whole-batch products.
    for k in [100, 300] {
        let task = task(20, 6, 48, k, [1e-3, 1e-3, 1e-2]);
        let runs: Vec<_> = [1usize, 2, 3]
            .iter()
            .map(|&th| {
                let mut t = Trainer::new(&task, &config(th, 100, 3)).unwrap();
                randomise(&mut t, 4);
                let mut loss = 0.0;
                for _ in 0..2 {
                    loss = t.epoch();
                }
                assert!(loss.is_finite());
                (bits(t.w()), bits(t.u()), bits(t.affine()), loss.to_bits())
            })
            .collect();
        for r in &runs[1..] {
            assert!(r == &runs[0], "K {k}: results differ across thread counts");
        }
        assert!(runs[0].2.iter().any(|&b| b != 1.0f32.to_bits() && b != 0));
    }
}

#[test]
fn checkpoint_resume_is_bit_identical() {
    let task = task(4, 4, 16, 20, [1e-3, 1e-3, 1e-3]);
    let cfg = TrainConfig {
        n_spl: 10,
        batch: 30,
        epochs: 3,
        lr: 0.1,
        ..config(2, 30, 10)
    };
    let mut full = Trainer::new(&task, &cfg).unwrap();
    full.train(None, None, |_, _| {}).unwrap();
    let dir = std::env::temp_dir().join(format!("fc-train-affine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut t = Trainer::new(&task, &cfg).unwrap();
    let flag = StopFlag::new();
    flag.request();
    assert!(matches!(
        t.train(Some(&dir), Some(&flag), |_, _| {}),
        Err(Error::Interrupted { .. })
    ));
    let mut r = Trainer::resume(&dir).unwrap();
    assert_eq!(r.affine().len(), 32);
    r.set_threads(1).unwrap();
    r.train(Some(&dir), None, |_, _| {}).unwrap();
    assert!(bits(r.w()) == bits(full.w()) && bits(r.u()) == bits(full.u()));
    assert!(bits(r.affine()) == bits(full.affine()));
    let _ = std::fs::remove_dir_all(&dir);
}
