//! The paper's SGD protocol (f32 [`Trainer`]) run to a loss plateau.
//!
//! After epoch `e`, with `L_e` the epoch's mean batch loss and `m = ceil(e / 10)`,
//! the relative change over the last tenth of the epochs is
//! `delta_e = |L_e - L_{e-m}| / |L_{e-m}|`. Training stops at the first `e` with
//! `delta_e <= rel_tol` once at least `min_steps` SGD steps (and 10 epochs) are
//! done — the minimum keeps the plateau of the escape from the small initial
//! weights (the loss stays near `log K` for a while) from passing as convergence.
//! Reaching `max_epochs` first is reported as *not converged*.

use crate::error::{Error, Result};
use crate::network::Params;
use crate::task::Task;
use crate::train::{TrainConfig, Trainer};
use std::fmt;

/// The SGD settings of a convergence study.
#[derive(Debug, Clone, PartialEq)]
pub struct SgdProtocol {
    /// Learning rate (paper: 0.1).
    pub lr: f64,
    /// Mini-batch size (paper: 100).
    pub batch: usize,
    /// Relative loss change over the last tenth of the epochs that counts as converged.
    pub rel_tol: f64,
    /// SGD steps before the plateau test starts.
    pub min_steps: u64,
    /// Epoch cap (hitting it: not converged).
    pub max_epochs: usize,
    /// Trainer threads (results do not depend on it).
    pub threads: usize,
}

impl Default for SgdProtocol {
    fn default() -> Self {
        SgdProtocol {
            lr: 0.1,
            batch: 100,
            rel_tol: 1e-3,
            min_steps: 20000,
            max_epochs: 20000,
            threads: 1,
        }
    }
}

impl fmt::Display for SgdProtocol {
    /// The settings that change results (not `threads`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lr={} batch={} rel_tol={:e} min_steps={} max_epochs={}",
            self.lr, self.batch, self.rel_tol, self.min_steps, self.max_epochs
        )
    }
}

impl SgdProtocol {
    /// Checks the settings; errors name the parameter.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid("lr", self.lr, "must be finite and > 0"));
        }
        if self.batch == 0 {
            return Err(Error::invalid("batch", 0, "must be >= 1"));
        }
        if !(self.rel_tol > 0.0 && self.rel_tol.is_finite()) {
            return Err(Error::invalid(
                "rel_tol",
                self.rel_tol,
                "must be finite and > 0",
            ));
        }
        if self.max_epochs == 0 {
            return Err(Error::invalid("max_epochs", 0, "must be >= 1"));
        }
        Ok(())
    }
}

/// Where an SGD run stopped.
#[derive(Debug, Clone)]
pub struct SgdFit {
    pub params: Params,
    /// Plateau reached before the epoch cap.
    pub converged: bool,
    pub epochs: u64,
    pub steps: u64,
    /// Mean batch loss of the last epoch.
    pub final_loss: f64,
    /// `delta_e` at the last epoch (infinite before 10 epochs).
    pub rel_change: f64,
    pub test_accuracy: f64,
}

/// Trains on `n_spl` sentences per class with seed `seed` (data, initial weights and
/// shuffles all from `seed`, see [`crate::train`]) until the plateau or the cap.
pub fn train(
    task: &Task,
    n_spl: usize,
    n_test: usize,
    seed: u64,
    p: &SgdProtocol,
) -> Result<SgdFit> {
    p.validate()?;
    let cfg = TrainConfig {
        n_spl,
        n_test,
        epochs: p.max_epochs,
        lr: p.lr,
        batch: p.batch,
        eval_every: 0,
        checkpoint_every: 0,
        seed,
        threads: p.threads,
    };
    let mut trainer = Trainer::new(task, &cfg)?;
    let steps_per_epoch = (task.k() * n_spl).div_ceil(p.batch) as u64;
    let mut losses: Vec<f64> = Vec::new();
    let mut converged = false;
    let mut rel_change = f64::INFINITY;
    while losses.len() < p.max_epochs {
        let loss = trainer.epoch() as f64;
        if !loss.is_finite() {
            return Err(Error::Diverged {
                epoch: losses.len() + 1,
                step: 0,
                lr: p.lr,
            });
        }
        losses.push(loss);
        let e = losses.len();
        if e >= 10 {
            let m = e.div_ceil(10);
            let before = losses[e - 1 - m];
            rel_change = (loss - before).abs() / before.abs();
            if rel_change <= p.rel_tol && e as u64 * steps_per_epoch >= p.min_steps {
                converged = true;
                break;
            }
        }
    }
    let epochs = trainer.epochs_done() as u64;
    Ok(SgdFit {
        params: trainer.params_f64(),
        converged,
        epochs,
        steps: epochs * steps_per_epoch,
        final_loss: *losses.last().expect("at least one epoch"),
        rel_change,
        test_accuracy: trainer.accuracy(trainer.test_data()),
    })
}
