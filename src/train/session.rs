//! The training loop: runs SGD epochs until the configured total, evaluates on
//! schedule and reports to its observers (see `observe`). It stops early, at a step
//! boundary, when its [`StopFlag`] is raised, and at the first step whose loss is not
//! finite (or when an epoch leaves non-finite weights): a diverged run.

use super::observe::{Divergence, End, Observe, ObserverMode};
use super::{EvalRecord, StopFlag, TrainSummary, Trainer};
use crate::error::Result;
use std::sync::Arc;
use std::time::Instant;

/// What [`Trainer::run_epoch`] did.
pub(super) enum EpochEnd {
    /// The epoch completed with this mean batch loss.
    Done(f64),
    /// Stopped after a step on request.
    Stopped,
    /// Step `step` (0-based) gave a non-finite loss.
    Diverged { step: usize, loss: f64 },
}

/// How [`Session::run`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// All epochs done; the summary of the run.
    Completed(TrainSummary),
    /// Stopped on request at a step boundary (observers such as
    /// [`Checkpointer`](super::Checkpointer) have saved the state).
    Interrupted,
    /// A non-finite loss or weight; the weights are not usable.
    Diverged(Divergence),
}

type Measure<'t> = Box<dyn FnMut(&mut EvalRecord, &Trainer) + 't>;

/// A training run of a [`Trainer`] with its observers, built by [`Trainer::session`].
pub struct Session<'t> {
    trainer: &'t mut Trainer,
    observers: Vec<(ObserverMode, Box<dyn Observe + 't>)>,
    stop: Option<StopFlag>,
    measure: Option<Measure<'t>>,
}

impl<'t> Session<'t> {
    pub(super) fn new(trainer: &'t mut Trainer) -> Self {
        Session {
            trainer,
            observers: Vec::new(),
            stop: None,
            measure: None,
        }
    }

    /// Adds an observer; `mode` selects the epochs it sees in `observe_epoch`.
    pub fn add_observer(mut self, observer: impl Observe + 't, mode: ObserverMode) -> Self {
        self.observers.push((mode, Box::new(observer)));
        self
    }

    /// Stops after the current step when `flag` is raised.
    pub fn stop_on(mut self, flag: StopFlag) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Called on every evaluation record before the observers see it
    /// (**the hook for collapse metrics**: fill `record.extra`).
    pub fn measure(mut self, f: impl FnMut(&mut EvalRecord, &Trainer) + 't) -> Self {
        self.measure = Some(Box::new(f));
        self
    }

    fn evaluate(&mut self) -> EvalRecord {
        let mut rec = self.trainer.evaluate();
        if let Some(m) = self.measure.as_mut() {
            m(&mut rec, self.trainer);
        }
        rec
    }

    /// Trains until `config.epochs` epochs are done, a stop request or a divergence.
    ///
    /// Evaluates at epoch 1, every `eval_every` epochs and at the last one. Timing
    /// counts training steps only (as the reference does).
    pub fn run(mut self) -> Result<Outcome> {
        let _watch = self.stop.as_ref().map(StopFlag::watch);
        let total = self.trainer.config.epochs;
        let pool = Arc::clone(&self.trainer.pool);
        let mut last: Option<EvalRecord> = None;
        let end = loop {
            let t = &mut *self.trainer;
            if t.epoch >= total {
                break End::Completed;
            }
            let clock = Instant::now();
            let stop = self.stop.as_ref();
            let done = pool.install(|| t.run_epoch(stop, true));
            t.train_secs += clock.elapsed().as_secs_f64();
            let loss = match done {
                EpochEnd::Stopped => break End::Interrupted,
                EpochEnd::Diverged { step, loss } => {
                    break End::Diverged(t.divergence(t.epoch + 1, step + 1, loss))
                }
                EpochEnd::Done(loss) => loss,
            };
            if !t.weights_finite() {
                let steps = t.steps_per_epoch();
                break End::Diverged(t.divergence(t.epoch, steps, f64::NAN));
            }
            let ep = t.epoch;
            let every = t.config.eval_every;
            if ep == total || (every > 0 && (ep == 1 || ep.is_multiple_of(every))) {
                let rec = self.evaluate();
                for (_, o) in self.observers.iter_mut() {
                    o.observe_eval(self.trainer, &rec)?;
                }
                last = Some(rec);
            }
            for (mode, o) in self.observers.iter_mut() {
                if mode.fires(ep) {
                    o.observe_epoch(self.trainer, loss)?;
                }
            }
            if ep < total && self.stop.as_ref().is_some_and(StopFlag::is_requested) {
                break End::Interrupted;
            }
        };
        let end = if end == End::Interrupted && !self.trainer.weights_finite() {
            // never checkpoint non-finite weights
            let t = &*self.trainer;
            End::Diverged(t.divergence(t.epoch + 1, t.step_in_epoch, f64::NAN))
        } else {
            end
        };
        let outcome = match &end {
            End::Completed => {
                let last = match last.take() {
                    Some(r) => r,
                    // already complete on entry (e.g. resumed from a final checkpoint)
                    None => self.evaluate(),
                };
                let t = &*self.trainer;
                Outcome::Completed(TrainSummary {
                    epochs: t.epoch,
                    train_secs: t.train_secs,
                    secs_per_epoch: t.train_secs / t.epoch.max(1) as f64,
                    last,
                })
            }
            End::Interrupted => Outcome::Interrupted,
            End::Diverged(d) => Outcome::Diverged(d.clone()),
        };
        self.finish(end)?;
        Ok(outcome)
    }

    fn finish(&mut self, end: End) -> Result<()> {
        for (_, o) in self.observers.iter_mut() {
            o.observe_end(self.trainer, &end)?;
        }
        Ok(())
    }
}
