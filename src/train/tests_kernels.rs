//! The SGD step with at least 256 classes and no normalization, where the own AVX-512
//! kernels (where the CPU has them) compute `dX` and the `U` update in one fused pass:
//! one step against the f64 gradient step, and whole epochs whatever the thread count.

use super::*;
use crate::network::empirical_risk_grad;
use crate::task::{Freq, TaskConfig};

/// `K = 300` (above the class-panel threshold), `L d = 540`, no normalization.
fn wide_task() -> Task {
    TaskConfig {
        n_c: 3,
        s_c: 20,
        len: 6,
        dim: 90,
        classes: Some(300),
        freq: Freq::Uniform,
        layer_norm: None,
        norm: None,
        lambda_affine: None,
        lambda_w: 1e-2,
        lambda_u: 2e-2,
        seed: 13,
        latent: None,
    }
    .build()
    .unwrap()
}

fn wide_config(threads: usize) -> TrainConfig {
    TrainConfig {
        n_spl: 1,
        n_test: 1,
        epochs: 2,
        lr: 0.5,
        batch: 37,
        eval_every: 0,
        checkpoint_every: 0,
        seed: 5,
        threads,
    }
}

fn max_abs(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(0.0, |m, x| m.max(x.abs()))
}

#[test]
fn wide_step_matches_f64_sgd_step() {
    let task = wide_task();
    for threads in [1, 2] {
        let mut t = Trainer::new(&task, &wide_config(threads)).unwrap();
        let mut r = ChaCha8Rng::seed_from_u64(3);
        t.set_params(&Params::random(&task, 0.5, &mut r)).unwrap();
        let rows: Vec<usize> = (0..37).map(|i| (i * 7) % t.train_data().n()).collect();
        let sub = Sentences {
            tokens: rows
                .iter()
                .flat_map(|&i| t.train_data().sentence(i).to_vec())
                .collect(),
            labels: rows.iter().map(|&i| t.train_data().labels[i]).collect(),
            len: t.train_data().len,
        };
        let before: Vec<f64> = t.w().iter().chain(t.u()).map(|&v| v as f64).collect();
        // The f64 risk includes (lambda_W / 2)||W||^2 + (lambda_U / 2)||U||^2 and its
        // gradient lambda theta: one SGD step is theta - lr g64.
        let (risk64, g64) = empirical_risk_grad(&task, &t.params_f64(), &sub);
        let n_w = t.w().len();
        let penalty: f64 = before
            .iter()
            .enumerate()
            .map(|(i, &v)| if i < n_w { 0.5e-2 } else { 1e-2 } * v * v)
            .sum();
        let loss64 = risk64 - penalty;
        let loss32 = t.step(&rows) as f64;
        assert!((loss32 - loss64).abs() < 1e-5 * (1.0 + loss64.abs()));
        let lr = 0.5;
        let expect: Vec<f64> = before
            .iter()
            .zip(&g64)
            .map(|(&th, &g)| th - lr * g)
            .collect();
        let after = t.w().iter().chain(t.u()).map(|&v| v as f64);
        let err = max_abs(after.zip(&expect).map(|(a, b)| a - b));
        let step = lr * max_abs(g64.iter().copied());
        let size = max_abs(expect.iter().copied());
        assert!(step > 1e-2, "step too small to test: {step}");
        assert!(
            err < 2e-5 * step + 4.0 * f32::EPSILON as f64 * size,
            "{threads} threads: max error {err:e}, step {step:e}, weights {size:e}"
        );
    }
}

#[test]
fn wide_epochs_do_not_depend_on_thread_count() {
    let task = wide_task();
    let run = |threads: usize| {
        let mut t = Trainer::new(&task, &wide_config(threads)).unwrap();
        let losses = [t.epoch().to_bits(), t.epoch().to_bits()];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        (bits(t.w()), bits(t.u()), losses)
    };
    let one = run(1);
    for threads in [2, 3] {
        assert!(run(threads) == one, "{threads} threads differ from one");
    }
}
