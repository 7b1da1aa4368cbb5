//! Seconds per training epoch of the f32 trainer, as one JSON line, comparable with
//! the PyTorch reference `benches/reference/sgd_torch.py` (same defaults: the
//! paper's figure-3 shape; same fields, `losses` being the mean batch loss of
//! every epoch).
//!
//! ```text
//! cargo run --release --example train_timing -- --epochs 5                    # paper shape
//! cargo run --release --example train_timing -- --classes 50 --nspl 100       # small shape
//! cargo run --release --example train_timing -- --roofline                    # raw gemm rate
//! ```
//!
//! `--roofline` times `gemm` alone on `batch x (L d)` by `(L d) x K` (the shape of the
//! step's products) and prints GFLOP/s. Like the reference, `secs_per_epoch` is the mean
//! over all epochs (the first included), accuracy evaluation excluded.

use clap::Parser;
use feature_collapse::task::{Freq, TaskConfig};
use feature_collapse::train::{
    Checkpointer, LogWriter, ObserverMode, Outcome, Progress, RunDir, TrainConfig, Trainer,
};
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

fn roofline(a: &Args, threads: usize) -> serde_json::Value {
    let (m, k, n) = (a.batch, a.len * a.dim, a.classes);
    let lhs: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 * 0.01).collect();
    let rhs: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 * 0.01).collect();
    let mut dst = vec![0f32; m * n];
    let run = |dst: &mut [f32]| unsafe {
        // SAFETY: row-major m x k, k x n and m x n buffers of the right sizes.
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(threads),
        )
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let mut times = pool.install(|| {
        for _ in 0..20 {
            run(&mut dst);
        }
        (0..50)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..10 {
                    run(&mut dst);
                }
                t.elapsed().as_secs_f64() / 10.0
            })
            .collect::<Vec<f64>>()
    });
    times.sort_by(f64::total_cmp);
    let flop = 2.0 * (m * n * k) as f64;
    serde_json::json!({
        "roofline": format!("{m}x{k} by {k}x{n}"),
        "threads": threads,
        "gflops_median": flop / times[times.len() / 2] / 1e9,
        "gflops_best": flop / times[0] / 1e9,
    })
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
        println!("{}", roofline(&a, cfg.resolved_threads()));
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
    });
    if a.accuracy {
        out["train_accuracy"] = t.accuracy(t.train_data()).into();
        out["test_accuracy"] = t.accuracy(t.test_data()).into();
    }
    println!("{out}");
    Ok(())
}
