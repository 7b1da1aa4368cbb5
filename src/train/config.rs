//! Run settings and the records a run produces.

use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize};

/// Settings of an SGD run (the task itself carries `lambda_w`, `lambda_u`, LayerNorm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Training sentences per class `n_spl` (>= 1).
    pub n_spl: usize,
    /// Test sentences per class (>= 1; the paper uses 5).
    pub n_test: usize,
    /// Number of epochs to train for (>= 1), counted from the start of the run.
    pub epochs: usize,
    /// Learning rate (finite, > 0).
    pub lr: f64,
    /// Mini-batch size (>= 1).
    pub batch: usize,
    /// Evaluate (and log) at epoch 1, every `eval_every` epochs and at the end; 0: at the end only.
    pub eval_every: usize,
    /// Write a checkpoint every `checkpoint_every` epochs; 0: only at the end (and on Ctrl-C).
    pub checkpoint_every: usize,
    /// Seed of data, initialisation and shuffles (see the module docs).
    pub seed: u64,
    /// Worker threads; 0 = all available cores. Does not change the results.
    pub threads: usize,
}

impl Default for TrainConfig {
    /// The paper's figure-3 protocol: `n_spl = 5`, 1200 epochs, `lr = 0.1`, batch 100.
    fn default() -> Self {
        TrainConfig {
            n_spl: 5,
            n_test: 5,
            epochs: 1200,
            lr: 0.1,
            batch: 100,
            eval_every: 10,
            checkpoint_every: 100,
            seed: 0,
            threads: 0,
        }
    }
}

/// Most epochs one run may ask for (a loss is kept per epoch).
pub const MAX_EPOCHS: usize = 100_000_000;

impl TrainConfig {
    /// Checks every field; errors name the offending field.
    pub fn validate(&self) -> Result<()> {
        if self.n_spl == 0 {
            return Err(Error::invalid(
                "n_spl",
                0,
                "needs at least 1 sentence per class",
            ));
        }
        if self.n_test == 0 {
            return Err(Error::invalid(
                "n_test",
                0,
                "needs at least 1 test sentence per class",
            ));
        }
        if self.epochs == 0 || self.epochs > MAX_EPOCHS {
            return Err(Error::invalid(
                "epochs",
                self.epochs,
                format!("must be 1 to {MAX_EPOCHS}"),
            ));
        }
        if !self.lr.is_finite() || self.lr <= 0.0 {
            return Err(Error::invalid("lr", self.lr, "must be finite and > 0"));
        }
        if self.batch == 0 {
            return Err(Error::invalid("batch", 0, "must be >= 1"));
        }
        if self.threads > 1024 {
            return Err(Error::invalid(
                "threads",
                self.threads,
                "must be <= 1024 (0 = all cores)",
            ));
        }
        Ok(())
    }

    /// The thread count actually used (`threads`, or all cores when 0).
    pub fn resolved_threads(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.threads
        }
    }
}

/// One evaluation, written as a line of `log.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Epochs completed.
    pub epoch: usize,
    /// Mean over the batches of the last epoch of the batch-mean cross entropy
    /// (before each step's update, as the reference reports it).
    /// (`null` in the log, if ever non-finite, reads back as NaN; so do the fields below.)
    #[serde(deserialize_with = "f64_or_nan")]
    pub loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_accuracy: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub test_accuracy: f64,
    /// Training seconds so far (evaluation, logging and checkpoints excluded).
    #[serde(deserialize_with = "f64_or_nan")]
    pub secs: f64,
    /// `secs / epoch`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub secs_per_epoch: f64,
    /// Extra measurements added by the `on_eval` callback of [`Trainer::train`](super::Trainer::train) —
    /// **the place for collapse metrics** (`metrics::collapse_metrics(task, &params)`).
    /// Flattened into the JSON line.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What [`Trainer::train`](super::Trainer::train) returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Epochs completed (the configured total).
    pub epochs: usize,
    /// The last evaluation (at the final epoch).
    pub last: EvalRecord,
    /// Training seconds over the whole run, resumed parts included.
    pub train_secs: f64,
    /// `train_secs / epochs`.
    pub secs_per_epoch: f64,
}

/// Reads a number written by serde_json, where `null` stands for a non-finite value
/// (serde_json writes NaN and infinities as `null`): `null` gives NaN.
fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}
