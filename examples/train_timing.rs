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
//! `--roofline` times each of the three products of a step, with the trainer's operand
//! layouts, by `gemm`, by the trainer's own AVX-512 kernels (`train::matmul`, where the
//! CPU has them) and, built with `--features bench-faer`, by faer's `matmul`, all
//! interleaved, and one whole `Trainer::step`, and prints their GFLOP/s beside the
//! measured FMA peak of the same threads (`2 B K L d` flops per product). `--gemm`
//! makes the trainer use `gemm` instead of its own kernels (`kernels` in the output).
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
    /// Train with `gemm` for all three products even where the own AVX-512 kernels
    /// (`train::matmul`) would run.
    #[arg(long)]
    gemm: bool,
    /// With --roofline: timing rounds (each 10 calls of every variant).
    #[arg(long, default_value_t = 30)]
    reps: usize,
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

/// A named thing to time.
type Variant<'a> = (&'static str, Box<dyn FnMut() + Send + 'a>);

/// Per-variant median and fastest seconds of one call: `reps` rounds, each timing
/// 10 calls of every variant in turn (interleaved, so a change of load hits all of
/// them alike), after 5 warm-up calls each.
fn time_interleaved(fs: &mut [Variant<'_>], reps: usize) -> Vec<(f64, f64)> {
    for (_, f) in fs.iter_mut() {
        for _ in 0..5 {
            f();
        }
    }
    let mut times = vec![Vec::with_capacity(reps); fs.len()];
    for _ in 0..reps {
        for ((_, f), t) in fs.iter_mut().zip(times.iter_mut()) {
            let s = Instant::now();
            for _ in 0..10 {
                f();
            }
            t.push(s.elapsed().as_secs_f64() / 10.0);
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            (t[t.len() / 2], t[0])
        })
        .collect()
}

/// `dst (m x n) <- [dst +] alpha lhs rhs` by faer's `matmul` (row-major `m x p` / `p x n`
/// operands given by their strides), on `threads` threads.
#[cfg(feature = "bench-faer")]
#[allow(clippy::too_many_arguments)]
fn faer_product(
    dst: &mut [f32],
    m: usize,
    n: usize,
    lhs: Mat,
    rhs: Mat,
    p: usize,
    add: bool,
    alpha: f32,
    threads: usize,
) {
    use faer::{Accum, MatMut, MatRef, Par};
    // SAFETY: as in `product`: the operands hold every element they are read at.
    let (l, r) = unsafe {
        (
            MatRef::from_raw_parts(lhs.ptr, m, p, lhs.rs, lhs.cs),
            MatRef::from_raw_parts(rhs.ptr, p, n, rhs.rs, rhs.cs),
        )
    };
    let d = MatMut::from_row_major_slice_mut(dst, m, n);
    let par = if threads > 1 {
        Par::rayon(threads)
    } else {
        Par::Seq
    };
    let acc = if add { Accum::Add } else { Accum::Replace };
    faer::linalg::matmul::matmul(d, acc, l, r, alpha, par);
}

/// GFLOP/s of the three products of a step (`B = batch`, `Ld = L d`, `2 B K Ld` flops
/// each), by three implementations timed interleaved: `gemm` called as the trainer
/// called it before (`X U^T` with the inner dimension cut into equal chunks of at most
/// 512, `U <- alpha U + beta G^T X` in one call), our own AVX-512 kernels
/// (`train::matmul`, if the CPU has `avx512f`), and faer's `matmul` (with
/// `--features bench-faer`; its `U` update only adds, `alpha = 1`). Products:
/// `H = X U^T` (`B x Ld` by `Ld x K`, `U` stored `K x Ld`), `dX = G U`, the `U` update
/// (`K x B` by `B x Ld`, `G` stored `B x K`), and `dX` and the update together (ours
/// fused panel by panel). Each on all `threads`. Then a whole `Trainer::step`
/// (`3 * 2 B K Ld` flops) on a fixed batch.
fn roofline(a: &Args, t: &mut Trainer, threads: usize) -> serde_json::Value {
    use feature_collapse::train::matmul;
    let (b, ld, k) = (a.batch, a.len * a.dim, a.classes);
    let fill = |n: usize, m: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * m) % 13) as f32 * 0.01 - 0.06)
            .collect()
    };
    let (x, g, u) = (fill(b * ld, 7), fill(b * k, 5), fill(k * ld, 3));
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
    let own = matmul::available();
    let (ut, xr, gr, gc, ur) = (
        col(&u, ld),
        row(&x, ld),
        row(&g, k),
        col(&g, k),
        row(&u, ld),
    );
    let flop = 2.0 * (b * k * ld) as f64;
    let (alpha, beta) = (1.0 - 1e-7, -1e-9);
    // Output buffers, one per variant and product.
    let mut hs = vec![vec![0f32; b * k]; 6];
    let mut dxs = vec![vec![0f32; b * ld]; 6];
    let mut us = vec![u.clone(); 6];
    let (mut hs, mut dxs, mut us) = (hs.iter_mut(), dxs.iter_mut(), us.iter_mut());
    let mut next = || (hs.next().unwrap(), dxs.next().unwrap(), us.next().unwrap());
    let mut fs: Vec<Variant<'_>> = Vec::new();
    {
        let (h, dx, uu) = next();
        fs.push((
            "x_ut gemm",
            Box::new(move || {
                for c in 0..chunks {
                    let p = (c * kc, ((c + 1) * kc).min(ld));
                    let a0 = if c > 0 { 1.0 } else { 0.0 };
                    product(h, b, k, xr, ut, p, a0, 1.0, threads);
                }
            }),
        ));
        fs.push((
            "g_u gemm",
            Box::new(move || product(dx, b, ld, gr, ur, (0, k), 0.0, 1.0, threads)),
        ));
        fs.push((
            "update gemm",
            Box::new(move || product(uu, k, ld, gc, xr, (0, b), alpha, beta, threads)),
        ));
    }
    {
        let (_, dx, uu) = next();
        fs.push((
            "g_u+update gemm",
            Box::new(move || {
                let up = Mat {
                    ptr: uu.as_ptr(),
                    rs: ld as isize,
                    cs: 1,
                };
                product(dx, b, ld, gr, up, (0, k), 0.0, 1.0, threads);
                product(uu, k, ld, gc, xr, (0, b), alpha, beta, threads);
            }),
        ));
    }
    if own {
        let (h, dx, uu) = next();
        let (x, g, u) = (&x, &g, &u);
        fs.push((
            "x_ut own",
            Box::new(move || matmul::x_ut(x, u, h, b, k, ld, threads)),
        ));
        fs.push((
            "g_u own",
            Box::new(move || matmul::g_u(g, u, dx, b, k, ld, threads)),
        ));
        fs.push((
            "update own",
            Box::new(move || {
                matmul::u_update(g, x, uu, (b, k, ld), (alpha, beta), (0, ld), threads)
            }),
        ));
        let (_, dx, uu) = next();
        fs.push((
            "g_u+update own",
            Box::new(move || matmul::g_u_update(g, x, uu, dx, (b, k, ld), (alpha, beta), threads)),
        ));
    }
    #[cfg(feature = "bench-faer")]
    {
        let (h, dx, uu) = next();
        fs.push((
            "x_ut faer",
            Box::new(move || faer_product(h, b, k, xr, ut, ld, false, 1.0, threads)),
        ));
        fs.push((
            "g_u faer",
            Box::new(move || faer_product(dx, b, ld, gr, ur, k, false, 1.0, threads)),
        ));
        fs.push((
            "update faer",
            Box::new(move || faer_product(uu, k, ld, gc, xr, b, true, beta, threads)),
        ));
        let (_, dx, uu) = next();
        fs.push((
            "g_u+update faer",
            Box::new(move || {
                let up = Mat {
                    ptr: uu.as_ptr(),
                    rs: ld as isize,
                    cs: 1,
                };
                faer_product(dx, b, ld, gr, up, k, false, 1.0, threads);
                faer_product(uu, k, ld, gc, xr, b, true, beta, threads);
            }),
        ));
    }
    let n = t.train_data().n();
    let batch: Vec<usize> = (0..b.min(n)).map(|i| (i * 37) % n).collect();
    let step_flop = 3.0 * 2.0 * (batch.len() * k * ld) as f64;
    fs.push((
        "step",
        Box::new(move || {
            t.step(&batch);
        }),
    ));
    let times = pool.install(|| time_interleaved(&mut fs, a.reps));
    let mut rates = serde_json::Map::new();
    for ((name, _), (med, best)) in fs.iter().zip(&times) {
        let f = if name.starts_with("g_u+") {
            2.0 * flop
        } else if *name == "step" {
            step_flop
        } else {
            flop
        };
        rates.insert(
            name.to_string(),
            serde_json::json!({"gflops_median": f / med / 1e9, "gflops_best": f / best / 1e9,
                               "secs_median": med}),
        );
    }
    serde_json::json!({
        "threads": threads, "simd": simd_level(),
        "peak_fma_gflops": fma_peak_gflops(threads),
        "shapes": {"x_ut": format!("{b}x{ld} by {ld}x{k}"), "g_u": format!("{b}x{k} by {k}x{ld}"),
                   "update": format!("{k}x{b} by {b}x{ld}")},
        "rates": rates,
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
    if a.gemm {
        feature_collapse::train::matmul::use_own_kernels(false);
    }
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
        "kernels": if feature_collapse::train::matmul::available() { "own" } else { "gemm" },
    });
    if a.accuracy {
        out["train_accuracy"] = t.accuracy(t.train_data()).into();
        out["test_accuracy"] = t.accuracy(t.test_data()).into();
    }
    println!("{out}");
    Ok(())
}
