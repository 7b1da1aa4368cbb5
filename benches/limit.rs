//! Exact limit risk + gradient (`limit::risk_grad`) on the full latent set,
//! `n_c = 3`, `d = 4`, at the sizes of docs/performance.md, plus the risk alone
//! and one LayerNorm + Zipf case. Short on purpose: `cargo bench --bench limit`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use feature_collapse::limit;
use feature_collapse::network::Params;
use feature_collapse::task::{Freq, Task, TaskConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;

fn instance(s_c: usize, len: usize, layer_norm: bool) -> (Task, Params) {
    let task = TaskConfig {
        n_c: 3,
        s_c,
        len,
        dim: 4,
        classes: None,
        freq: if layer_norm {
            Freq::Zipf { exponent: 1.0 }
        } else {
            Freq::Uniform
        },
        layer_norm: layer_norm.then_some(0.0),
        norm: None,
        lambda_affine: None,
        lambda_w: 0.01,
        lambda_u: 0.01,
        seed: 0,
        latent: None,
    }
    .build()
    .expect("valid task");
    limit::check_budget(&task, limit::DEFAULT_WORK_BUDGET).expect("within budget");
    let p = Params::random(&task, 1.0, &mut ChaCha8Rng::seed_from_u64(0));
    (task, p)
}

fn bench_limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit_risk_grad");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let sizes = [(2, 3), (3, 3), (3, 4), (2, 6), (3, 5), (4, 4)];
    for (s_c, len) in sizes {
        let (task, p) = instance(s_c, len, false);
        // Elements: K classes x s_c^L token choices x K scores.
        let leaves = (task.k() * s_c.pow(len as u32) * task.k()) as u64;
        group.throughput(Throughput::Elements(leaves));
        let id = format!("sc{s_c}_L{len}_K{}", task.k());
        group.bench_with_input(BenchmarkId::new("risk_grad", &id), &(), |b, _| {
            b.iter(|| black_box(limit::risk_grad(&task, black_box(&p))))
        });
        group.bench_with_input(BenchmarkId::new("risk", &id), &(), |b, _| {
            b.iter(|| black_box(limit::risk(&task, black_box(&p))))
        });
    }
    let (task, p) = instance(3, 4, true);
    group.bench_function("risk_grad/sc3_L4_K81_layernorm_zipf", |b| {
        b.iter(|| black_box(limit::risk_grad(&task, black_box(&p))))
    });
    group.finish();
}

// No plots: criterion's plotting backend needs system fonts that a bare machine
// (or CI) may not have.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = bench_limit
}
criterion_main!(benches);
