//! One SGD step and one epoch of the f32 trainer at the paper's shape
//! (K = 1000, n_w = 1200, L = 15, d = 100, batch 100, n_spl = 5) and at the small
//! shape (K = 50, n_spl = 100, otherwise the same), on all cores.
//!
//! `cargo bench --bench train` (about a minute and a half).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use feature_collapse::task::{Freq, TaskConfig};
use feature_collapse::train::{TrainConfig, Trainer};
use std::hint::black_box;
use std::time::Duration;

fn trainer(k: usize, n_spl: usize) -> Trainer {
    let task = TaskConfig {
        n_c: 3,
        s_c: 400,
        len: 15,
        dim: 100,
        classes: Some(k),
        freq: Freq::Uniform,
        layer_norm: None,
        norm: None,
        lambda_affine: None,
        lambda_w: 1e-3,
        lambda_u: 1e-3,
        seed: 0,
        latent: None,
    }
    .build()
    .expect("task");
    let cfg = TrainConfig {
        n_spl,
        n_test: 5,
        epochs: 1,
        lr: 0.1,
        batch: 100,
        eval_every: 0,
        checkpoint_every: 0,
        seed: 0,
        threads: 0,
    };
    Trainer::new(&task, &cfg).expect("trainer")
}

fn bench_shape(c: &mut Criterion, name: &str, k: usize, n_spl: usize) {
    let mut t = trainer(k, n_spl);
    let (len, dim) = (t.task().len(), t.task().dim());
    let batch: Vec<usize> = (0..100).map(|i| (i * 37) % t.train_data().n()).collect();
    let step_flop = 3 * 2 * 100 * k * len * dim;
    let mut g = c.benchmark_group(format!("train_{name}"));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(step_flop as u64));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("step", |b| b.iter(|| black_box(t.step(black_box(&batch)))));
    let steps = t.steps_per_epoch();
    g.throughput(Throughput::Elements((step_flop * steps) as u64));
    g.measurement_time(Duration::from_secs(if k >= 1000 { 8 } else { 3 }));
    g.bench_function("epoch", |b| b.iter(|| black_box(t.epoch())));
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_shape(c, "paper_k1000_nspl5", 1000, 5);
    bench_shape(c, "small_k50_nspl100", 50, 100);
}

criterion_group! {
    name = train;
    // No plots: the plotting backend needs system fonts that a bare machine may lack.
    config = Criterion::default().without_plots();
    targets = benches
}
criterion_main!(train);
