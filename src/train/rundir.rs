//! The run directory: the one place that knows the names of a run's files and reads
//! and writes them. Every error names the file concerned.
//!
//! | file | content | written by |
//! |---|---|---|
//! | `checkpoint.bin` | the latest checkpoint (format: `checkpoint` module) | [`RunDir::write_checkpoint`] |
//! | `log.jsonl` | one [`EvalRecord`] per line, appended at each evaluation | [`RunDir::append_log`] |
//! | `summary.json` | what the run produced (or where it diverged) | [`RunDir::write_summary`] |
//! | `W.npy`, `U.npy` | final weights, f32, `n_w x d` and `K x L d` | [`RunDir::write_weights`] |

use super::checkpoint::{self, Checkpoint};
use super::{EvalRecord, Trainer};
use crate::error::{Error, Result};
use crate::npy;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A run's output directory and the names of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The latest checkpoint.
    pub const CHECKPOINT: &'static str = "checkpoint.bin";
    /// The evaluation log.
    pub const LOG: &'static str = "log.jsonl";
    /// The summary of the run.
    pub const SUMMARY: &'static str = "summary.json";
    /// Final embedding `W`.
    pub const W: &'static str = "W.npy";
    /// Final classifier `U`.
    pub const U: &'static str = "U.npy";

    /// The run directory at `path` (nothing is created).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join(Self::CHECKPOINT)
    }
    pub fn log_path(&self) -> PathBuf {
        self.path.join(Self::LOG)
    }
    pub fn summary_path(&self) -> PathBuf {
        self.path.join(Self::SUMMARY)
    }
    pub fn w_path(&self) -> PathBuf {
        self.path.join(Self::W)
    }
    pub fn u_path(&self) -> PathBuf {
        self.path.join(Self::U)
    }

    /// Creates the directory (and its parents).
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.path).map_err(|e| Error::io(&self.path, e))
    }

    /// Whether a checkpoint is present.
    pub fn has_checkpoint(&self) -> bool {
        self.checkpoint_path().is_file()
    }

    /// Whether the directory holds (part of) a run: a checkpoint or a log.
    pub fn holds_run(&self) -> bool {
        self.has_checkpoint() || self.log_path().is_file()
    }

    fn remove(path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
            _ => Ok(()),
        }
    }

    /// Removes the outputs of a finished run (`summary.json`, `W.npy`, `U.npy`), so
    /// that none from an earlier run stays beside a run that goes on.
    pub fn clear_outputs(&self) -> Result<()> {
        for p in [self.summary_path(), self.w_path(), self.u_path()] {
            Self::remove(&p)?;
        }
        Ok(())
    }

    /// Removes every file of a run (checkpoint, log and outputs), for a fresh start.
    pub fn clear(&self) -> Result<()> {
        self.clear_outputs()?;
        Self::remove(&self.checkpoint_path())?;
        Self::remove(&self.log_path())
    }

    /// Writes the trainer's state to `checkpoint.bin` atomically; returns its path.
    pub fn write_checkpoint(&self, t: &Trainer) -> Result<PathBuf> {
        self.create()?;
        let path = self.checkpoint_path();
        checkpoint::write(t, &path)?;
        Ok(path)
    }

    /// Reads and checks `checkpoint.bin` (the whole file is checksummed).
    pub(super) fn read_checkpoint(&self) -> Result<Checkpoint> {
        checkpoint::read(&self.checkpoint_path())
    }

    /// Appends one line to `log.jsonl`. Non-finite numbers are written as `null`,
    /// which [`RunDir::read_log`] reads back as NaN.
    pub fn append_log(&self, rec: &EvalRecord) -> Result<()> {
        let path = self.log_path();
        let mut line = serde_json::to_string(rec).map_err(|e| Error::io(&path, e.into()))?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // one write of the whole line: a crash can only tear the last line
        f.write_all(line.as_bytes())
            .map_err(|e| Error::io(&path, e))
    }

    /// Every evaluation in `log.jsonl`, one per epoch (the last line of an epoch logged
    /// twice by a resumed run wins), by epoch. Errors name the file and the line.
    pub fn read_log(&self) -> Result<Vec<EvalRecord>> {
        let path = self.log_path();
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let mut out: Vec<EvalRecord> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r: EvalRecord = serde_json::from_str(line).map_err(|e| {
                Error::io(
                    &path,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("line {}: {e}", i + 1),
                    ),
                )
            })?;
            out.retain(|x| x.epoch != r.epoch);
            out.push(r);
        }
        out.sort_by_key(|r| r.epoch);
        Ok(out)
    }

    /// Cuts a torn last line of `log.jsonl` (one without its newline, or one that does
    /// not parse, as a crash in the middle of a write leaves). Returns the number of
    /// bytes cut (0 when the log is whole or absent).
    pub fn repair_log(&self) -> Result<u64> {
        let path = self.log_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let last = &body[start..];
        let whole = bytes.ends_with(b"\n")
            && (last.iter().all(u8::is_ascii_whitespace)
                || serde_json::from_slice::<EvalRecord>(last).is_ok());
        if whole {
            return Ok(0);
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        f.set_len(start as u64).map_err(|e| Error::io(&path, e))?;
        f.sync_all().map_err(|e| Error::io(&path, e))?;
        Ok((bytes.len() - start) as u64)
    }

    /// Writes the trainer's weights to `W.npy` (`n_w x d`) and `U.npy` (`K x L d`), f32.
    pub fn write_weights(&self, t: &Trainer) -> Result<()> {
        let task = t.task();
        npy::write_npy_f32(&self.w_path(), &[task.n_w(), task.dim()], t.w())?;
        npy::write_npy_f32(&self.u_path(), &[task.k(), task.len() * task.dim()], t.u())
    }

    /// Writes `summary.json` (pretty JSON).
    pub fn write_summary(&self, summary: &impl Serialize) -> Result<()> {
        let path = self.summary_path();
        let text = serde_json::to_string_pretty(summary).map_err(|e| Error::io(&path, e.into()))?;
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }
}
