//! Finite-sample SGD training of the network of docs/theory.md §2, in f32, with the exact
//! protocol of the paper's experiments (docs/theory.md §9) and of the PyTorch reference
//! script `benches/reference/sgd_torch.py`.
//!
//! # Protocol
//!
//! - Embedding `W` (`n_w x d`, row-major): entries standard normal `/ 1000`.
//!   Classifier `U` (`K x Ld`, row-major, no bias): entries uniform in
//!   `±1/sqrt(L d)`, `/ 1000` (PyTorch's `Embedding`/`Linear` defaults divided by 1000).
//! - Features `phi(w)` (`task.norm()`): identity; LayerNorm without affine parameters
//!   `phi(v) = (v - mean(v)) / sqrt(var(v) + eps)` with the *biased* variance
//!   (divide by `d`; PyTorch's default `eps = 1e-5`); RMSNorm `v / sqrt(mean(v^2) + eps)`;
//!   centring `v - mean(v)`; or `layer-affine` `gamma ⊙ LN(v) + beta` with trained
//!   `gamma, beta ∈ R^d` starting at 1 and 0 (module `affine`), decayed by
//!   `task.lambda_affine`.
//! - Scores `h(x) = flatten(phi(W[x])) U^T`; loss: *mean* cross entropy over the batch.
//! - Plain SGD, one update per mini-batch:
//!   `theta <- theta - lr (grad + lambda theta)`, `lambda = task.lambda_w` for `W`,
//!   `task.lambda_u` for `U`. The decay applies to the *whole* `W` at every step (as
//!   PyTorch's dense embedding gradient does), not only to the rows in the batch.
//! - Mini-batches of `batch` sentences taken in order from a permutation of the
//!   training set redrawn at every epoch (the last batch may be smaller).
//! - Training set: `n_spl` sentences per class; test set: `n_test` (paper: 5) per class.
//!
//! # Seeds
//!
//! All randomness comes from [`ChaCha8Rng::seed_from_u64`]`(config.seed)` on three
//! separate ChaCha streams (so it never overlaps the task's own latent draw, which
//! uses stream 0 of `task.seed`):
//!
//! | stream | use |
//! |---|---|
//! | [`DATA_STREAM`] = 1 | training set (`task.sample_sentences(n_spl)`), then test set (`n_test`) |
//! | [`INIT_STREAM`] = 2 | `W` (row-major, Box–Muller normals), then `U` (row-major, uniform) |
//! | [`SHUFFLE_STREAM`] = 3 | one Fisher–Yates shuffle of `0..n` per epoch, starting from the identity |
//!
//! # Determinism
//!
//! For a given seed the weights are bit-identical whatever the number of threads: the
//! products (`matmul`'s own kernels, or `gemm`) parallelise over outputs only, and every other
//! parallel loop is row-wise or has a fixed reduction order (see `kernel`). A run
//! interrupted and resumed from a checkpoint ends bit-identical to an uninterrupted one.
//!
//! # Structure
//!
//! - [`Trainer`]: the state (weights, data, shuffle rng, position) and single steps
//!   and epochs;
//! - [`Session`] (from [`Trainer::session`]): the loop to the configured epoch count,
//!   which reports to [`Observe`]rs ([`LogWriter`], [`Checkpointer`], [`Progress`]),
//!   stops on a [`StopFlag`] and detects divergence (a non-finite loss);
//! - [`RunDir`]: the run directory's files (`log.jsonl`, `checkpoint.bin`,
//!   `summary.json`, `W.npy`, `U.npy`).
//!
//! Nothing here installs a signal handler: the command line opts in to Ctrl-C by
//! raising a [`StopFlag`].

mod affine;
mod checkpoint;
mod config;
mod kernel;
pub mod matmul;
mod observe;
mod rownorm;
mod rundir;
mod session;
mod softmax;
mod uupdate;
mod wupdate;

pub use crate::stop::StopFlag;
pub use checkpoint::CHECKPOINT_MAGIC;
pub use config::{EvalRecord, TrainConfig, TrainSummary};
pub use observe::{Checkpointer, Divergence, End, LogWriter, Observe, ObserverMode, Progress};
pub use rundir::RunDir;
pub use session::{Outcome, Session};

use crate::error::{Error, Result};
use crate::network::{standard_normal, Params};
use crate::norm::Norm;
use crate::task::{Sentences, Task};
use kernel::{RowNorm, Shape, Work};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use session::EpochEnd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// ChaCha stream of the training and test sets.
pub const DATA_STREAM: u64 = 1;
/// ChaCha stream of the initial weights.
pub const INIT_STREAM: u64 = 2;
/// ChaCha stream of the per-epoch shuffles.
pub const SHUFFLE_STREAM: u64 = 3;

/// The f32 SGD trainer. See the module docs for the protocol.
pub struct Trainer {
    /// Name of the run (kept in checkpoints).
    name: String,
    task: Task,
    config: TrainConfig,
    train: Sentences,
    test: Sentences,
    /// Row-major `n_w x d`.
    w: Vec<f32>,
    /// Row-major `K x (L d)`.
    u: Vec<f32>,
    /// `[gamma ; beta]` of `layer-affine` (length `2 d`), else empty.
    aff: Vec<f32>,
    shape: Shape,
    work: Work,
    perm: Vec<usize>,
    shuffle_rng: ChaCha8Rng,
    /// Word position of `shuffle_rng` before the current (or, between epochs, the next)
    /// epoch's shuffle.
    epoch_rng_pos: u128,
    /// Completed epochs.
    epoch: usize,
    /// Completed steps of the current epoch (0 between epochs).
    step_in_epoch: usize,
    /// Sum of the step losses of the current epoch.
    epoch_loss_sum: f64,
    /// Mean loss of the last completed epoch.
    last_loss: f64,
    /// Training seconds so far.
    train_secs: f64,
    pool: Arc<rayon::ThreadPool>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .field("epoch", &self.epoch)
            .field("step_in_epoch", &self.step_in_epoch)
            .finish_non_exhaustive()
    }
}

fn build_pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("fc-train-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::invalid("threads", threads, e))
}

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Training and test sets from the data stream of `seed`.
fn sample_data(task: &Task, cfg: &TrainConfig) -> (Sentences, Sentences) {
    let mut r = rng(cfg.seed, DATA_STREAM);
    let train = task.sample_sentences(cfg.n_spl, &mut r);
    let test = task.sample_sentences(cfg.n_test, &mut r);
    (train, test)
}

/// Initial `(W, U)` from the init stream of `seed`.
fn init_weights(task: &Task, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut r = rng(seed, INIT_STREAM);
    let w = (0..task.n_w() * task.dim())
        .map(|_| (standard_normal(&mut r) / 1000.0) as f32)
        .collect();
    let bound = 1.0 / ((task.len() * task.dim()) as f64).sqrt();
    let u = (0..task.k() * task.len() * task.dim())
        .map(|_| (r.random_range(-bound..bound) / 1000.0) as f32)
        .collect();
    (w, u)
}

impl Trainer {
    /// A fresh trainer: samples the data, initialises the weights, builds the thread pool.
    pub fn new(task: &Task, config: &TrainConfig) -> Result<Self> {
        config.validate()?;
        let (w, u) = init_weights(task, config.seed);
        let aff = if task.norm().is_affine() {
            affine::init(task.dim())
        } else {
            Vec::new()
        };
        Self::assemble(task.clone(), config.clone(), w, u, aff)
    }

    fn assemble(
        task: Task,
        config: TrainConfig,
        w: Vec<f32>,
        u: Vec<f32>,
        aff: Vec<f32>,
    ) -> Result<Self> {
        task.check_sample("n_spl", config.n_spl)?;
        task.check_sample("n_test", config.n_test)?;
        let affine = task.norm().is_affine();
        if aff.len() != if affine { 2 * task.dim() } else { 0 } {
            return Err(Error::invalid(
                "params",
                format!("{} affine values", aff.len()),
                format!("--norm {} needs {}", task.norm().name(), 2 * task.dim()),
            ));
        }
        let threads = config.resolved_threads();
        let pool = build_pool(threads)?;
        let (train, test) = sample_data(&task, &config);
        let n = train.n();
        let batch = config.batch.min(n);
        let shape = Shape {
            k: task.k(),
            len: task.len(),
            dim: task.dim(),
            threads,
            norm: match task.norm() {
                Norm::None => RowNorm::None,
                Norm::Layer { eps } => RowNorm::Layer(eps as f32),
                Norm::Rms { eps } => RowNorm::Rms(eps as f32),
                Norm::Center => RowNorm::Center,
                Norm::LayerAffine { eps } => RowNorm::Layer(eps as f32),
            },
            affine,
            lambda_aff: task.lambda_affine() as f32,
            lr: config.lr as f32,
            lambda_w: task.lambda_w() as f32,
            lambda_u: task.lambda_u() as f32,
        };
        let shuffle_rng = rng(config.seed, SHUFFLE_STREAM);
        Ok(Trainer {
            name: "train".into(),
            work: Work::new(batch, task.k(), task.len(), task.dim(), affine),
            perm: (0..n).collect(),
            epoch_rng_pos: shuffle_rng.get_word_pos(),
            shuffle_rng,
            task,
            config,
            train,
            test,
            w,
            u,
            aff,
            shape,
            epoch: 0,
            step_in_epoch: 0,
            epoch_loss_sum: 0.0,
            last_loss: f64::NAN,
            train_secs: 0.0,
            pool,
        })
    }

    /// Reloads `dir/checkpoint.bin` and continues exactly where it stopped: the data are
    /// resampled from the seed, the weights, epoch, position inside the epoch, shuffle
    /// state and run name are restored. A corrupted file is refused (`Error::Io` naming it).
    pub fn resume(dir: &Path) -> Result<Self> {
        let ck = RunDir::new(dir).read_checkpoint()?;
        let mut t = Self::assemble(ck.task, ck.config, ck.w, ck.u, ck.aff)?;
        t.name = ck.name;
        t.epoch = ck.epoch;
        t.step_in_epoch = ck.step_in_epoch;
        t.epoch_loss_sum = ck.epoch_loss_sum;
        t.last_loss = ck.last_loss;
        t.train_secs = ck.train_secs;
        t.epoch_rng_pos = ck.epoch_rng_pos;
        t.shuffle_rng.set_word_pos(ck.epoch_rng_pos);
        if t.step_in_epoch > 0 {
            // Redo the current epoch's shuffle: same permutation, same rng state after it.
            t.shuffle();
        }
        Ok(t)
    }

    /// Changes the number of epochs to train for (e.g. to extend a resumed run).
    pub fn set_epochs(&mut self, epochs: usize) -> Result<()> {
        if epochs == 0 {
            return Err(Error::invalid("epochs", 0, "must be >= 1"));
        }
        self.config.epochs = epochs;
        Ok(())
    }

    /// Changes the number of worker threads (results do not depend on it).
    pub fn set_threads(&mut self, threads: usize) -> Result<()> {
        let cfg = TrainConfig {
            threads,
            ..self.config.clone()
        };
        cfg.validate()?;
        let resolved = cfg.resolved_threads();
        self.pool = build_pool(resolved)?;
        self.shape.threads = resolved;
        self.config.threads = threads;
        Ok(())
    }

    /// Changes how often [`Checkpointer`] observers set up from the config write
    /// (results do not depend on it).
    pub fn set_checkpoint_every(&mut self, every: usize) {
        self.config.checkpoint_every = every;
    }

    /// Names the run (the name is stored in checkpoints and restored by [`Trainer::resume`]).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// The run's name (`train` unless set).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn task(&self) -> &Task {
        &self.task
    }
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }
    pub fn train_data(&self) -> &Sentences {
        &self.train
    }
    pub fn test_data(&self) -> &Sentences {
        &self.test
    }
    /// Completed epochs.
    pub fn epochs_done(&self) -> usize {
        self.epoch
    }
    /// Completed steps of the epoch under way (0 between epochs).
    pub fn steps_done_in_epoch(&self) -> usize {
        self.step_in_epoch
    }
    /// `W`, row-major `n_w x d`.
    pub fn w(&self) -> &[f32] {
        &self.w
    }
    /// `U`, row-major `K x (L d)`.
    pub fn u(&self) -> &[f32] {
        &self.u
    }
    /// `[gamma ; beta]` of `layer-affine` (length `2 d`; empty for the other norms).
    pub fn affine(&self) -> &[f32] {
        &self.aff
    }
    /// Training seconds so far (evaluation excluded).
    pub fn train_secs(&self) -> f64 {
        self.train_secs
    }

    /// The weights as f64 [`Params`] (for `network`, `metrics`, ...), with
    /// `gamma`, `beta` under `layer-affine`.
    pub fn params_f64(&self) -> Params {
        let d = self.task.dim();
        let mut p = Params::from_wu(
            self.task.n_w(),
            self.task.k(),
            self.task.len(),
            self.task.dim(),
            self.w.iter().map(|&v| v as f64).collect(),
            self.u.iter().map(|&v| v as f64).collect(),
        );
        if !self.aff.is_empty() {
            p.gain = self.aff[..d].iter().map(|&v| v as f64).collect();
            p.bias = self.aff[d..].iter().map(|&v| v as f64).collect();
        }
        p
    }

    /// Replaces the weights (f64, rounded to f32), e.g. to start from a given point.
    pub fn set_params(&mut self, p: &Params) -> Result<()> {
        let aff = self.aff.len() / 2;
        if p.w.len() != self.w.len()
            || p.u.len() != self.u.len()
            || p.gain.len() != aff
            || p.bias.len() != aff
        {
            return Err(Error::invalid(
                "params",
                format!(
                    "{} + {} + {} + {} values",
                    p.w.len(),
                    p.u.len(),
                    p.gain.len(),
                    p.bias.len()
                ),
                format!(
                    "expected {} + {} + {aff} + {aff}",
                    self.w.len(),
                    self.u.len()
                ),
            ));
        }
        let ours = self.w.iter_mut().chain(&mut self.u).chain(&mut self.aff);
        let theirs = p.w.iter().chain(&p.u).chain(&p.gain).chain(&p.bias);
        for (a, &b) in ours.zip(theirs) {
            *a = b as f32;
        }
        Ok(())
    }

    /// One SGD step on the training sentences `batch_indices` (at most `config.batch`
    /// of them, each `< n`); returns the batch-mean cross entropy before the update.
    ///
    /// # Panics
    /// If the batch is empty, larger than the configured batch, or an index is out of range.
    pub fn step(&mut self, batch_indices: &[usize]) -> f32 {
        assert!(
            !batch_indices.is_empty()
                && batch_indices.len() * self.task.len() * self.task.dim() <= self.work.x.len(),
            "batch of {} sentences: must be 1..={}",
            batch_indices.len(),
            self.work.x.len() / (self.task.len() * self.task.dim())
        );
        assert!(
            batch_indices.iter().all(|&i| i < self.train.n()),
            "sentence index out of range"
        );
        let pool = Arc::clone(&self.pool);
        pool.install(|| {
            kernel::sgd_step(
                &self.shape,
                &mut self.w,
                &mut self.u,
                &mut self.aff,
                &mut self.work,
                &self.train,
                batch_indices,
            ) as f32
        })
    }

    /// Gradient of the batch-mean cross entropy over the training sentences
    /// `batch_indices`, without weight decay, at the current weights, computed by the
    /// f32 step kernels; returns `(loss, [dW ; dU ; dgamma ; dbeta])` widened to f64
    /// (for checks; `[dW ; dU]` without affine parameters).
    pub fn batch_gradient(&self, batch_indices: &[usize]) -> (f64, Vec<f64>) {
        let t = &self.task;
        let mut work = Work::new(
            batch_indices.len(),
            t.k(),
            t.len(),
            t.dim(),
            self.shape.affine,
        );
        let mut gw = vec![0.0f32; self.w.len()];
        let mut gu = vec![0.0f32; self.u.len()];
        let loss = self.pool.install(|| {
            kernel::gradient(
                &self.shape,
                &self.w,
                &self.u,
                &self.aff,
                &mut work,
                &self.train,
                batch_indices,
                &mut gw,
                &mut gu,
            )
        });
        let g = gw
            .iter()
            .chain(&gu)
            .chain(&work.g_aff)
            .map(|&v| v as f64)
            .collect();
        (loss, g)
    }

    fn shuffle(&mut self) {
        for (i, p) in self.perm.iter_mut().enumerate() {
            *p = i;
        }
        for i in (1..self.perm.len()).rev() {
            let j = self.shuffle_rng.random_range(0..=i);
            self.perm.swap(i, j);
        }
    }

    /// Steps per epoch: `ceil(n / batch)`.
    pub fn steps_per_epoch(&self) -> usize {
        self.train.n().div_ceil(self.config.batch)
    }

    /// Runs (the rest of) the current epoch, stopping early after a step when `stop`
    /// is raised, and, when `check` is set, at the first step whose loss is not finite.
    fn run_epoch(&mut self, stop: Option<&StopFlag>, check: bool) -> EpochEnd {
        if self.step_in_epoch == 0 {
            self.epoch_rng_pos = self.shuffle_rng.get_word_pos();
            self.shuffle();
            self.epoch_loss_sum = 0.0;
        }
        let steps = self.steps_per_epoch();
        let n = self.train.n();
        let batch = self.config.batch;
        while self.step_in_epoch < steps {
            let a = self.step_in_epoch * batch;
            let rows = &self.perm[a..(a + batch).min(n)];
            let loss = kernel::sgd_step(
                &self.shape,
                &mut self.w,
                &mut self.u,
                &mut self.aff,
                &mut self.work,
                &self.train,
                rows,
            );
            if check && !(loss as f32).is_finite() {
                return EpochEnd::Diverged {
                    step: self.step_in_epoch,
                    loss,
                };
            }
            self.epoch_loss_sum += loss as f32 as f64;
            self.step_in_epoch += 1;
            if self.step_in_epoch < steps && stop.is_some_and(StopFlag::is_requested) {
                return EpochEnd::Stopped;
            }
        }
        self.step_in_epoch = 0;
        self.epoch += 1;
        self.epoch_rng_pos = self.shuffle_rng.get_word_pos();
        self.last_loss = self.epoch_loss_sum / steps as f64;
        EpochEnd::Done(self.last_loss)
    }

    /// Whether every weight is finite.
    fn weights_finite(&self) -> bool {
        self.w
            .iter()
            .chain(&self.u)
            .chain(&self.aff)
            .all(|v| v.is_finite())
    }

    fn divergence(&self, epoch: usize, step: usize, loss: f64) -> Divergence {
        Divergence {
            epoch,
            step,
            steps_per_epoch: self.steps_per_epoch(),
            loss,
            lr: self.config.lr,
        }
    }

    /// One full epoch (reshuffle, then `ceil(n / batch)` steps); returns the mean of
    /// the batch losses. Finishes the current epoch if one is under way. No divergence
    /// check: a non-finite loss makes the mean non-finite.
    pub fn epoch(&mut self) -> f32 {
        let pool = Arc::clone(&self.pool);
        let t = Instant::now();
        let end = pool.install(|| self.run_epoch(None, false));
        self.train_secs += t.elapsed().as_secs_f64();
        match end {
            EpochEnd::Done(loss) => loss as f32,
            EpochEnd::Stopped | EpochEnd::Diverged { .. } => unreachable!("no stop flag, no check"),
        }
    }

    /// Fraction of `data` classified correctly (argmax of the scores, first on ties).
    pub fn accuracy(&self, data: &Sentences) -> f64 {
        let pred = self
            .pool
            .install(|| kernel::predict(&self.shape, &self.w, &self.u, &self.aff, data));
        let ok = pred
            .iter()
            .zip(&data.labels)
            .filter(|(p, y)| p == y)
            .count();
        ok as f64 / data.n().max(1) as f64
    }

    fn evaluate(&self) -> EvalRecord {
        EvalRecord {
            epoch: self.epoch,
            loss: self.last_loss,
            train_accuracy: self.accuracy(&self.train),
            test_accuracy: self.accuracy(&self.test),
            secs: self.train_secs,
            secs_per_epoch: self.train_secs / self.epoch.max(1) as f64,
            extra: serde_json::Map::new(),
        }
    }

    /// Writes a checkpoint of the current state to `dir/checkpoint.bin` atomically.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<PathBuf> {
        RunDir::new(dir).write_checkpoint(self)
    }

    /// A training run of this trainer, to set up with observers and a stop flag.
    pub fn session(&mut self) -> Session<'_> {
        Session::new(self)
    }

    /// Trains until `config.epochs` epochs are done, with the usual observers: with
    /// `out_dir`, [`LogWriter`] and [`Checkpointer`] (every `checkpoint_every` epochs,
    /// at the end and when stopped) on it, no progress bar. `on_eval` fills each
    /// evaluation record (e.g. collapse metrics) before it is logged.
    ///
    /// A raised `stop` flag gives [`Error::Interrupted`] (after the checkpoint), a
    /// non-finite loss [`Error::Diverged`] (no checkpoint is written then).
    pub fn train(
        &mut self,
        out_dir: Option<&Path>,
        stop: Option<&StopFlag>,
        on_eval: impl FnMut(&mut EvalRecord, &Trainer),
    ) -> Result<TrainSummary> {
        let dir = out_dir.map(RunDir::new);
        let every = ObserverMode::Every(self.config.checkpoint_every);
        let mut session = self.session().measure(on_eval);
        if let Some(d) = &dir {
            d.create()?;
            session = session
                .add_observer(LogWriter(d), ObserverMode::Never)
                .add_observer(Checkpointer::new(d), every);
        }
        if let Some(f) = stop {
            session = session.stop_on(f.clone());
        }
        match session.run()? {
            Outcome::Completed(s) => Ok(s),
            Outcome::Interrupted => Err(Error::Interrupted {
                path: dir.map(|d| d.checkpoint_path()).unwrap_or_default(),
            }),
            Outcome::Diverged(d) => Err(Error::Diverged {
                epoch: d.epoch,
                step: d.step,
                lr: d.lr,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_affine;
#[cfg(test)]
mod tests_kernels;
