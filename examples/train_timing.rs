//! Seconds per training epoch of the f32 trainer, as one JSON line, comparable with
//! the PyTorch reference `benches/reference/sgd_torch.py` (same defaults: the
//! paper's figure-3 shape; same fields, `losses` being the mean batch loss of
//! every epoch).
//!
//! ```text
//! cargo run --release --example train_timing -- --epochs 5                    # paper shape
//! cargo run --release --example train_timing -- --classes 50 --nspl 100       # small shape
//! cargo run --release --example train_timing -- --roofline                    # per-product rates
//! ```
//!
//! `--roofline` times `gemm` alone on each of the three products of a step, with the
//! trainer's operand layouts, and one whole `Trainer::step`, and prints their GFLOP/s
//! beside the measured FMA peak of the same threads (`2 B K L d` flops per product).
//! Like the reference, `secs_per_epoch` is the mean over all epochs (the first
//! included), accuracy evaluation excluded; `weights_digest` (FNV-1a of the bits of `W`
//! and `U` after training) tells whether two runs ended bit-identical.

use clap::Parser;
use feature_collapse::task::{Freq, TaskConfig};
use feature_collapse::train::{
    Checkpointer, LogWriter, ObserverMode, Outcome, Progress, RunDir, TrainConfig, Trainer,
};
use rayon::prelude::*;
use std::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 3)]
    nc: usize,
    #[arg(long, default_value_t = 1200)]
    nw: usize,
    #[arg(long, default_value_t = 15)]
    len: usize,
    #[arg(long, default_value_t = 1000)]
    classes: usize,
    #[arg(long, default_value_t = 100)]
    dim: usize,
    #[arg(long, default_value_t = 5)]
    nspl: usize,
    #[arg(long)]
    zipf: bool,
    #[arg(long)]
    layer_norm: bool,
    #[arg(long, default_value_t = 1e-3)]
    lambda_w: f64,
    #[arg(long, default_value_t = 1e-3)]
    lambda_u: f64,
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    #[arg(long, default_value_t = 100)]
    batch: usize,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// 0 = all cores.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Time raw gemm at the step's shape instead of training.
    #[arg(long)]
    roofline: bool,
    /// Also report train/test accuracy at the end.
    #[arg(long)]
    accuracy: bool,
    /// Instead of timing epochs one by one, run `Trainer::train` with this output
    /// directory (log.jsonl, checkpoints, progress bar, Ctrl-C) and print its summary.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// With --out: evaluate every this many epochs.
    #[arg(long, default_value_t = 10)]
    eval_every: usize,
    /// With --out: checkpoint every this many epochs.
    #[arg(long, default_value_t = 50)]
    checkpoint_every: usize,
}

/// Median seconds of one call of `f` (20 warm-up calls, then 50 timings of 10 calls),
/// and the fastest such timing.
fn time_calls(mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..20 {
        f();
    }
    let mut times: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..10 {
                f();
            }
            t.elapsed().as_secs_f64() / 10.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0])
}

/// One strided operand of a product: `ptr[i * rs + j * cs]` is element `(i, j)`.
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}
// SAFETY: a `Mat` is only read, while the buffer it views is alive and not written.
unsafe impl Sync for Mat {}
unsafe impl Send for Mat {}

/// `dst (m x n, row-major) <- alpha dst + beta lhs rhs` over the inner columns `p0..p1`
/// of `lhs` (rows of `rhs`), by `gemm` on `threads` threads.
#[allow(clippy::too_many_arguments)]
fn product(
    dst: &mut [f32],
    m: usize,
    n: usize,
    lhs: Mat,
    rhs: Mat,
    p: (usize, usize),
    alpha: f32,
    beta: f32,
    threads: usize,
) {
    let (p0, p1) = p;
    assert!(dst.len() == m * n);
    // SAFETY: `lhs` and `rhs` point to buffers holding every element (i, q) / (q, j)
    // with i < m, p0 <= q < p1, j < n (callers build them so); `dst` is m x n.
    unsafe {
        gemm::gemm(
            m,
            n,
            p1 - p0,
            dst.as_mut_ptr(),
            1,
            n as isize,
            alpha != 0.0,
            lhs.ptr.offset(p0 as isize * lhs.cs),
            lhs.cs,
            lhs.rs,
            rhs.ptr.offset(p0 as isize * rhs.rs),
            rhs.cs,
            rhs.rs,
            alpha,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(threads),
        )
    }
}

/// GFLOP/s of the three products of a step, called with the operand layouts of the
/// trainer (`B = batch`, `Ld = L d`): `H = X U^T` (`B x Ld` by `Ld x K`, `U` stored
/// `K x Ld`, the inner dimension cut into equal chunks of at most 512), `dX = G U`
/// (`B x K` by `K x Ld`), `U <- alpha U + beta G^T X` (`K x B` by `B x Ld`, `G` stored
/// `B x K`), each as one `gemm` call on all `threads` (with fewer than 256 classes the
/// trainer cuts them into per-thread panels itself); and of a whole `Trainer::step`
/// (`3 * 2 B K Ld` flops) on a fixed batch.
fn roofline(a: &Args, t: &mut Trainer, threads: usize) -> serde_json::Value {
    let (b, ld, k) = (a.batch, a.len * a.dim, a.classes);
    let fill = |n: usize, m: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * m) % 13) as f32 * 0.01 - 0.06)
            .collect()
    };
    let (x, g) = (fill(b * ld, 7), fill(b * k, 5));
    let mut u = fill(k * ld, 3);
    let (mut h, mut dx) = (vec![0f32; b * k], vec![0f32; b * ld]);
    let row = |v: &[f32], cols: usize| Mat {
        ptr: v.as_ptr(),
        rs: cols as isize,
        cs: 1,
    };
    let col = |v: &[f32], rows: usize| Mat {
        ptr: v.as_ptr(),
        rs: 1,
        cs: rows as isize,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let chunks = ld.div_ceil(512);
    let kc = ld.div_ceil(chunks);
    let (ut, xr, gr, gc) = (col(&u, ld), row(&x, ld), row(&g, k), col(&g, k));
    let flop = 2.0 * (b * k * ld) as f64;
    let rate = |(med, best): (f64, f64)| serde_json::json!({"gflops_median": flop / med / 1e9, "gflops_best": flop / best / 1e9});
    let scores = pool.install(|| {
        time_calls(|| {
            for c in 0..chunks {
                let p = (c * kc, ((c + 1) * kc).min(ld));
                product(
                    &mut h,
                    b,
                    k,
                    xr,
                    ut,
                    p,
                    if c > 0 { 1.0 } else { 0.0 },
                    1.0,
                    threads,
                );
            }
        })
    });
    let ur = row(&u, ld);
    let g_u =
        pool.install(|| time_calls(|| product(&mut dx, b, ld, gr, ur, (0, k), 0.0, 1.0, threads)));
    let gt_x =
        pool.install(|| time_calls(|| product(&mut u, k, ld, gc, xr, (0, b), 1.0, -1e-9, threads)));
    let n = t.train_data().n();
    let batch: Vec<usize> = (0..b.min(n)).map(|i| (i * 37) % n).collect();
    let step = time_calls(|| {
        t.step(&batch);
    });
    let step_flop = 3.0 * 2.0 * (batch.len() * k * ld) as f64;
    serde_json::json!({
        "threads": threads, "simd": simd_level(),
        "peak_fma_gflops": fma_peak_gflops(threads),
        "x_ut": {"shape": format!("{b}x{ld} by {ld}x{k}"), "rate": rate(scores)},
        "g_u": {"shape": format!("{b}x{k} by {k}x{ld}"), "rate": rate(g_u)},
        "gt_x": {"shape": format!("{k}x{b} by {b}x{ld}"), "rate": rate(gt_x)},
        "step": {"gflops_median": step_flop / step.0 / 1e9, "gflops_best": step_flop / step.1 / 1e9,
                 "secs_median": step.0},
    })
}

/// Measured FMA throughput of `threads` cores, GFLOP/s: every thread runs independent
/// chains of vector FMAs (enough to fill the pipelines), `2 * lanes` flops each; the
/// widest vectors the CPU has (AVX-512 if detected, else AVX2 + FMA). `null` elsewhere.
fn fma_peak_gflops(threads: usize) -> serde_json::Value {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        const ACC: usize = 12;
        const ITERS: usize = 20_000_000;
        #[target_feature(enable = "avx2,fma")]
        fn avx2() -> f32 {
            let mut acc = [_mm256_set1_ps(0.0); ACC];
            let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
            for _ in 0..ITERS / 2 {
                for v in acc.iter_mut() {
                    *v = _mm256_fmadd_ps(*v, a, b);
                }
            }
            let s = acc
                .iter()
                .fold(_mm256_set1_ps(0.0), |s, &v| _mm256_add_ps(s, v));
            _mm256_cvtss_f32(s)
        }
        #[target_feature(enable = "avx512f")]
        fn avx512() -> f32 {
            let mut acc = [_mm512_set1_ps(0.0); ACC];
            let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
            for _ in 0..ITERS / 4 {
                for v in acc.iter_mut() {
                    *v = _mm512_fmadd_ps(*v, a, b);
                }
            }
            _mm512_reduce_add_ps(
                acc.iter()
                    .fold(_mm512_set1_ps(0.0), |s, &v| _mm512_add_ps(s, v)),
            )
        }
        let wide = is_x86_feature_detected!("avx512f");
        let has_avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if !(wide || has_avx2) {
            return serde_json::Value::Null;
        }
        // Flops per thread: ITERS / 2 (AVX2) or / 4 (AVX-512) rounds of ACC FMAs of
        // 8 or 16 lanes, 2 flops each: ITERS * ACC * 8 either way.
        let run = || -> (f64, f32) {
            let t = Instant::now();
            // SAFETY: the target features were detected above.
            let s = unsafe {
                if wide {
                    avx512()
                } else {
                    avx2()
                }
            };
            (t.elapsed().as_secs_f64(), s)
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let best = (0..15)
            .map(|_| {
                let t = Instant::now();
                let sink: f32 =
                    pool.install(|| (0..threads).into_par_iter().map(|_| run().1).sum());
                std::hint::black_box(sink);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let flop = (threads * ITERS * ACC * 8) as f64;
        serde_json::json!({"gflops": flop / best / 1e9, "isa": if wide { "avx512f" } else { "avx2+fma" }})
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = threads;
        serde_json::Value::Null
    }
}

/// The widest vectors this CPU offers `gemm`'s f32 kernels (its own run-time choice:
/// AVX-512 kernels when `avx512f` is detected, else AVX2 + FMA ones).
fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if is_x86_feature_detected!("fma") {
            return "avx2+fma";
        }
    }
    "other"
}

/// FNV-1a (64 bits) of the bit patterns of `W` then `U`: equal digests mean
/// bit-identical weights.
fn weights_digest(t: &Trainer) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in t.w().iter().chain(t.u()) {
        for byte in v.to_bits().to_le_bytes() {
            h = (h ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn main() -> feature_collapse::Result<()> {
    let a = Args::parse();
    let task = TaskConfig {
        n_c: a.nc,
        s_c: a.nw / a.nc,
        len: a.len,
        dim: a.dim,
        classes: Some(a.classes),
        freq: if a.zipf {
            Freq::Zipf { exponent: 1.0 }
        } else {
            Freq::Uniform
        },
        layer_norm: a.layer_norm.then_some(1e-5),
        norm: None,
        lambda_affine: None,
        lambda_w: a.lambda_w,
        lambda_u: a.lambda_u,
        seed: a.seed,
        latent: None,
    }
    .build()?;
    let cfg = TrainConfig {
        n_spl: a.nspl,
        n_test: 5,
        epochs: a.epochs,
        lr: a.lr,
        batch: a.batch,
        eval_every: a.eval_every,
        checkpoint_every: a.checkpoint_every,
        seed: a.seed,
        threads: a.threads,
    };
    if a.roofline {
        let mut t = Trainer::new(&task, &cfg)?;
        println!("{}", roofline(&a, &mut t, cfg.resolved_threads()));
        return Ok(());
    }
    if let Some(out) = &a.out {
        let mut t = if RunDir::new(out).has_checkpoint() {
            let mut t = Trainer::resume(out)?;
            t.set_epochs(a.epochs)?;
            t
        } else {
            Trainer::new(&task, &cfg)?
        };
        let dir = RunDir::new(out);
        let every = ObserverMode::Every(t.config().checkpoint_every);
        let progress = Progress::new(&t, true);
        let outcome = t
            .session()
            .measure(|rec, _| {
                // The spot where collapse metrics would be added: rec.extra.insert(..).
                eprintln!("{}", serde_json::to_string(rec).expect("json"));
            })
            .add_observer(LogWriter(&dir), ObserverMode::Never)
            .add_observer(Checkpointer::new(&dir), every)
            .add_observer(progress, ObserverMode::Always)
            .run()?;
        let Outcome::Completed(summary) = outcome else {
            eprintln!("run did not complete: {outcome:?}");
            std::process::exit(1);
        };
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(());
    }
    let mut t = Trainer::new(&task, &cfg)?;
    let mut secs = Vec::with_capacity(a.epochs);
    let mut losses = Vec::with_capacity(a.epochs);
    for _ in 0..a.epochs {
        let s = Instant::now();
        losses.push(t.epoch());
        secs.push(s.elapsed().as_secs_f64());
    }
    let loss = losses.last().copied().unwrap_or(f32::NAN);
    let mean = secs.iter().sum::<f64>() / secs.len() as f64;
    let mut sorted = secs.clone();
    sorted.sort_by(f64::total_cmp);
    let steps = t.steps_per_epoch();
    let n = t.train_data().n();
    // 3 products of 2 * rows * K * L d flops; rows summed over the epoch = n.
    let flop = 3.0 * 2.0 * (n * task.k() * task.len() * task.dim()) as f64;
    let mut out = serde_json::json!({
        "k": task.k(), "n_w": task.n_w(), "len": task.len(), "dim": task.dim(), "n_spl": a.nspl,
        "batch": a.batch, "layer_norm": a.layer_norm, "threads": cfg.resolved_threads(),
        "epochs": a.epochs, "steps_per_epoch": steps,
        "secs_per_epoch": mean, "secs_per_epoch_median": sorted[sorted.len() / 2],
        "gflops": flop / mean / 1e9, "loss": loss, "losses": losses,
        "weights_digest": weights_digest(&t), "simd": simd_level(),
    });
    if a.accuracy {
        out["train_accuracy"] = t.accuracy(t.train_data()).into();
        out["test_accuracy"] = t.accuracy(t.test_data()).into();
    }
    println!("{out}");
    Ok(())
}
