//! Observers of a training run, after argmin's `Observe`: the SGD loop
//! ([`Session::run`](super::Session::run)) reports to them and does nothing else.
//!
//! - [`Observe::observe_epoch`] after each completed epoch that the observer's
//!   [`ObserverMode`] selects;
//! - [`Observe::observe_eval`] after each evaluation (every observer);
//! - [`Observe::observe_end`] once, when the run ends (every observer).
//!
//! The observers of this module: [`LogWriter`] (`log.jsonl`), [`Checkpointer`]
//! (`checkpoint.bin`) and [`Progress`] (a progress bar on a terminal).

use super::{EvalRecord, RunDir, Trainer};
use crate::error::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::IsTerminal;

/// Which completed epochs an observer sees in [`Observe::observe_epoch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObserverMode {
    /// None.
    Never,
    /// Every epoch.
    Always,
    /// Epochs that are multiples of `n` (`Every(0)` = never).
    Every(usize),
}

impl ObserverMode {
    /// Whether the observer sees the end of epoch `epoch` (1-based count of completed epochs).
    pub fn fires(self, epoch: usize) -> bool {
        match self {
            ObserverMode::Never => false,
            ObserverMode::Always => true,
            ObserverMode::Every(n) => n > 0 && epoch.is_multiple_of(n),
        }
    }
}

/// Where SGD produced a non-finite loss or weights.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Divergence {
    /// The epoch under way (1-based).
    pub epoch: usize,
    /// The step of that epoch (1-based) whose loss or update was not finite.
    pub step: usize,
    pub steps_per_epoch: usize,
    /// The loss of that step (NaN or infinite; written as `null` in JSON).
    pub loss: f64,
    /// The learning rate of the run.
    pub lr: f64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// All the configured epochs are done.
    Completed,
    /// The stop flag was raised; the state is consistent (a step boundary).
    Interrupted,
    /// A loss or a weight became non-finite; the weights are not usable.
    Diverged(Divergence),
}

/// An observer of a training run. Every method defaults to doing nothing.
pub trait Observe {
    /// After a completed epoch (as the mode selects); `loss` is its mean batch loss.
    fn observe_epoch(&mut self, _t: &Trainer, _loss: f64) -> Result<()> {
        Ok(())
    }
    /// After each evaluation (epoch 1, every `eval_every` epochs and the last one).
    fn observe_eval(&mut self, _t: &Trainer, _rec: &EvalRecord) -> Result<()> {
        Ok(())
    }
    /// Once, when the run ends.
    fn observe_end(&mut self, _t: &Trainer, _end: &End) -> Result<()> {
        Ok(())
    }
}

/// Appends every evaluation to `log.jsonl`.
#[derive(Debug)]
pub struct LogWriter<'a>(pub &'a RunDir);

impl Observe for LogWriter<'_> {
    fn observe_eval(&mut self, _t: &Trainer, rec: &EvalRecord) -> Result<()> {
        self.0.append_log(rec)
    }
}

/// Writes `checkpoint.bin` at the epochs its mode selects and when the run completes
/// or is interrupted; never after a divergence (the last finite checkpoint stays).
#[derive(Debug)]
pub struct Checkpointer<'a> {
    dir: &'a RunDir,
    /// `(epoch, step in epoch)` of the last checkpoint written.
    written: Option<(usize, usize)>,
}

impl<'a> Checkpointer<'a> {
    pub fn new(dir: &'a RunDir) -> Self {
        Checkpointer { dir, written: None }
    }

    fn write(&mut self, t: &Trainer) -> Result<()> {
        let at = (t.epoch, t.step_in_epoch);
        if self.written != Some(at) {
            self.dir.write_checkpoint(t)?;
            self.written = Some(at);
        }
        Ok(())
    }
}

impl Observe for Checkpointer<'_> {
    fn observe_epoch(&mut self, t: &Trainer, _loss: f64) -> Result<()> {
        self.write(t)
    }
    fn observe_end(&mut self, t: &Trainer, end: &End) -> Result<()> {
        match end {
            End::Completed | End::Interrupted => self.write(t),
            End::Diverged(_) => Ok(()),
        }
    }
}

/// An indicatif bar with ETA on stderr (hidden unless stderr is a terminal).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    /// Epoch of the last evaluation shown (its message is kept over the loss).
    evaluated: usize,
}

impl Progress {
    /// A bar for `t`'s configured epochs, starting at the epochs already done;
    /// `enabled = false` (or stderr not a terminal) hides it.
    pub fn new(t: &Trainer, enabled: bool) -> Self {
        let bar = if enabled && std::io::stderr().is_terminal() {
            let b = ProgressBar::with_draw_target(
                Some(t.config().epochs as u64),
                ProgressDrawTarget::stderr(),
            );
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} epochs [{elapsed_precise} < {eta_precise}] {msg}",
                )
                .expect("valid template"),
            );
            b.set_position(t.epochs_done() as u64);
            b
        } else {
            ProgressBar::hidden()
        };
        Progress { bar, evaluated: 0 }
    }
}

impl Observe for Progress {
    fn observe_epoch(&mut self, t: &Trainer, loss: f64) -> Result<()> {
        self.bar.set_position(t.epochs_done() as u64);
        if self.evaluated != t.epochs_done() {
            self.bar.set_message(format!("loss {loss:.4}"));
        }
        Ok(())
    }
    fn observe_eval(&mut self, _t: &Trainer, rec: &EvalRecord) -> Result<()> {
        self.evaluated = rec.epoch;
        self.bar.set_message(format!(
            "loss {:.4} train {:.3} test {:.3}",
            rec.loss, rec.train_accuracy, rec.test_accuracy
        ));
        Ok(())
    }
    fn observe_end(&mut self, _t: &Trainer, end: &End) -> Result<()> {
        match end {
            End::Completed => self.bar.finish(),
            End::Interrupted => self.bar.abandon_with_message("interrupted"),
            End::Diverged(_) => self.bar.abandon_with_message("diverged"),
        }
        Ok(())
    }
}
