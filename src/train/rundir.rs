//! The run directory: the one place that knows the names of a run's files and reads
//! and writes them. Every error names the file concerned.
//!
//! | file | content | written by |
//! |---|---|---|
//! | `checkpoint.bin` | the latest checkpoint (format: `checkpoint` module) | [`RunDir::write_checkpoint`] |
//! | `log.jsonl` | one [`EvalRecord`] per line, appended at each evaluation | [`RunDir::append_log`] |
//! | `summary.json` | what the run produced (or where it diverged), with the crate `version` | [`RunDir::write_summary`] |
//! | `W.npy`, `U.npy` | final weights, f32, `n_w x d` and `K x L d` | [`RunDir::write_weights`] |
//! | `affine.npy` | with `layer-affine`: final `[gamma ; beta]`, f32, `2 x d` | [`RunDir::write_weights`] |

use super::checkpoint::{self, Checkpoint};
use super::{EvalRecord, Trainer};
use crate::error::{Error, Result};
use crate::npy;
use crate::Versioned;
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
    /// Final `[gamma ; beta]` of `layer-affine` (`2 x d`).
    pub const AFFINE: &'static str = "affine.npy";

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
    pub fn affine_path(&self) -> PathBuf {
        self.path.join(Self::AFFINE)
    }

    /// Creates the directory (and its parents).
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.path).map_err(|e| Error::io(&self.path, e))
    }

    /// Whether a checkpoint is present.
    pub fn has_checkpoint(&self) -> bool {
        self.checkpoint_path().is_file()
    }

    /// Whether the directory holds a run that `--resume` can continue: a
    /// checkpoint. (A log without one, left by a run that diverged or was killed
    /// before its first checkpoint, cannot be continued and may be replaced.)
    pub fn holds_run(&self) -> bool {
        self.has_checkpoint()
    }

    fn remove(path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
            _ => Ok(()),
        }
    }

    /// Removes the outputs of a finished run (`summary.json`, `W.npy`, `U.npy`, `affine.npy`), so
    /// that none from an earlier run stays beside a run that goes on.
    pub fn clear_outputs(&self) -> Result<()> {
        for p in [
            self.summary_path(),
            self.w_path(),
            self.u_path(),
            self.affine_path(),
        ] {
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
        self.create()?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // one write of the whole line: a crash can only tear the last line
        f.write_all(line.as_bytes())
            .map_err(|e| Error::io(&path, e))
    }

    /// The non-empty lines of the log text with their records. Errors name the
    /// file and the line.
    fn parse_log<'t>(&self, text: &'t str) -> Result<Vec<(&'t str, EvalRecord)>> {
        let path = self.log_path();
        let mut out = Vec::new();
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
            out.push((line, r));
        }
        Ok(out)
    }

    /// Every evaluation in `log.jsonl`, one per epoch (the last line of an epoch logged
    /// twice by a resumed run wins), by epoch. Errors name the file and the line.
    pub fn read_log(&self) -> Result<Vec<EvalRecord>> {
        let path = self.log_path();
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let by_epoch: std::collections::BTreeMap<usize, EvalRecord> = self
            .parse_log(&text)?
            .into_iter()
            .map(|(_, r)| (r.epoch, r))
            .collect();
        Ok(by_epoch.into_values().collect())
    }

    /// Checks every line of `log.jsonl` (errors name the file and line) and drops
    /// the records past `epoch`, which a run writes after the checkpoint that a
    /// crash then falls back to. Returns the number of records dropped.
    pub fn trim_log_after(&self, epoch: usize) -> Result<usize> {
        let path = self.log_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let lines = self.parse_log(&text)?;
        let total = lines.len();
        let kept: String = lines
            .into_iter()
            .filter(|(_, r)| r.epoch <= epoch)
            .map(|(line, _)| format!("{line}\n"))
            .collect();
        let dropped = total - kept.lines().count();
        if dropped > 0 {
            let tmp = path.with_extension("jsonl.tmp");
            std::fs::write(&tmp, kept).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(dropped)
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

    /// Writes the trainer's weights to `W.npy` (`n_w x d`) and `U.npy` (`K x L d`), f32, and
    /// with `layer-affine` `affine.npy` (`[gamma ; beta]`, `2 x d`).
    pub fn write_weights(&self, t: &Trainer) -> Result<()> {
        let task = t.task();
        npy::write_npy_f32(&self.w_path(), &[task.n_w(), task.dim()], t.w())?;
        npy::write_npy_f32(&self.u_path(), &[task.k(), task.len() * task.dim()], t.u())?;
        if !t.affine().is_empty() {
            npy::write_npy_f32(&self.affine_path(), &[2, task.dim()], t.affine())?;
        }
        Ok(())
    }

    /// Writes `summary.json` (pretty JSON).
    pub fn write_summary(&self, summary: &impl Serialize) -> Result<()> {
        let path = self.summary_path();
        let text = serde_json::to_string_pretty(&Versioned::new(summary))
            .map_err(|e| Error::io(&path, e.into()))?;
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Freq, TaskConfig};
    use crate::train::{End, Observe, ObserverMode, Outcome, StopFlag, TrainConfig};

    fn scratch(name: &str) -> RunDir {
        let d = std::env::temp_dir().join(format!("fc-rundir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let dir = RunDir::new(d);
        dir.create().unwrap();
        dir
    }

    fn record(epoch: usize, loss: f64) -> EvalRecord {
        EvalRecord {
            epoch,
            loss,
            train_accuracy: 0.5,
            test_accuracy: 0.25,
            secs: 1.0,
            secs_per_epoch: 1.0 / epoch as f64,
            extra: serde_json::Map::new(),
        }
    }

    fn trainer(lr: f64, epochs: usize) -> Trainer {
        let task = TaskConfig {
            n_c: 3,
            s_c: 5,
            len: 4,
            dim: 8,
            classes: Some(12),
            freq: Freq::Uniform,
            layer_norm: None,
            norm: None,
            lambda_affine: None,
            lambda_w: 1e-3,
            lambda_u: 1e-3,
            seed: 0,
            latent: None,
        }
        .build()
        .unwrap();
        let cfg = TrainConfig {
            n_spl: 10,
            n_test: 2,
            epochs,
            lr,
            batch: 10,
            eval_every: 1,
            checkpoint_every: 1,
            seed: 0,
            threads: 1,
        };
        Trainer::new(&task, &cfg).unwrap()
    }

    #[test]
    fn log_round_trips_non_finite_values_and_keeps_the_last_of_an_epoch() {
        let dir = scratch("log");
        dir.append_log(&record(1, 0.5)).unwrap();
        dir.append_log(&record(2, f64::NAN)).unwrap();
        dir.append_log(&record(1, 0.25)).unwrap();
        let text = std::fs::read_to_string(dir.log_path()).unwrap();
        assert!(text.contains("\"loss\":null"), "{text}");
        let recs = dir.read_log().unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].epoch, recs[0].loss), (1, 0.25));
        assert!(recs[1].loss.is_nan());
        let _ = std::fs::remove_dir_all(dir.path());
    }

    #[test]
    fn repair_cuts_only_a_torn_last_line() {
        let dir = scratch("repair");
        assert_eq!(dir.repair_log().unwrap(), 0); // no log
        dir.append_log(&record(1, 0.5)).unwrap();
        dir.append_log(&record(2, 0.4)).unwrap();
        let whole = std::fs::read(dir.log_path()).unwrap();
        assert_eq!(dir.repair_log().unwrap(), 0);
        // torn: no newline at the end
        let torn = [&whole[..], b"{\"epoch\":3,\"lo"].concat();
        std::fs::write(dir.log_path(), &torn).unwrap();
        assert_eq!(dir.repair_log().unwrap(), 14);
        assert_eq!(std::fs::read(dir.log_path()).unwrap(), whole);
        // torn: zero bytes with a newline (a crash after the size grew)
        let torn = [&whole[..], b"\0\0\0\n"].concat();
        std::fs::write(dir.log_path(), &torn).unwrap();
        assert_eq!(dir.repair_log().unwrap(), 4);
        assert_eq!(dir.read_log().unwrap().len(), 2);
        // a bad line in the middle is an error naming the file and the line
        let bad = [&b"{\"epoch\":1,\n"[..], &whole[..]].concat();
        std::fs::write(dir.log_path(), &bad).unwrap();
        let err = dir.read_log().unwrap_err().report();
        assert!(err.contains("log.jsonl") && err.contains("line 1"), "{err}");
        let _ = std::fs::remove_dir_all(dir.path());
    }

    #[test]
    fn the_checksum_covers_every_byte_of_the_checkpoint() {
        let dir = scratch("checksum");
        let mut t = trainer(0.1, 1);
        t.set_name("named");
        let path = dir.write_checkpoint(&t).unwrap();
        let good = std::fs::read(&path).unwrap();
        assert_eq!(Trainer::resume(dir.path()).unwrap().name(), "named");
        // one flipped bit anywhere (every 97th byte, and the first and last) is refused
        let positions = (0..good.len()).step_by(97).chain([good.len() - 1]);
        for pos in positions {
            let mut bad = good.clone();
            bad[pos] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            match Trainer::resume(dir.path()) {
                Err(Error::Io { path: p, .. }) => assert_eq!(p, path),
                other => panic!("byte {pos}: expected a refusal, got {other:?}"),
            }
        }
        // a truncated file too
        std::fs::write(&path, &good[..good.len() - 5]).unwrap();
        assert!(matches!(Trainer::resume(dir.path()), Err(Error::Io { .. })));
        let _ = std::fs::remove_dir_all(dir.path());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

        /// A log of whole lines followed by any proper prefix of one more line (a write
        /// cut short) is repaired to exactly the whole lines.
        #[test]
        fn repair_restores_the_whole_lines(n in 1usize..5, cut in 1usize..60, loss in 0.0f64..10.0) {
            let dir = scratch(&format!("prop-repair-{n}-{cut}"));
            for e in 1..=n {
                dir.append_log(&record(e, loss / e as f64)).unwrap();
            }
            let whole = std::fs::read(dir.log_path()).unwrap();
            let next = serde_json::to_string(&record(n + 1, loss)).unwrap();
            let cut = cut.min(next.len() - 1);
            std::fs::write(dir.log_path(), [&whole[..], &next.as_bytes()[..cut]].concat()).unwrap();
            proptest::prop_assert_eq!(dir.repair_log().unwrap(), cut as u64);
            proptest::prop_assert_eq!(std::fs::read(dir.log_path()).unwrap(), whole);
            proptest::prop_assert_eq!(dir.read_log().unwrap().len(), n);
            let _ = std::fs::remove_dir_all(dir.path());
        }

        /// Any change of one byte of a checkpoint, anywhere, is refused.
        #[test]
        fn any_changed_byte_is_refused(frac in 0.0f64..1.0, mask in 1u8..=255) {
            let dir = scratch("prop-checksum");
            let t = trainer(0.1, 1);
            let path = dir.write_checkpoint(&t).unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            let pos = ((bytes.len() as f64 * frac) as usize).min(bytes.len() - 1);
            bytes[pos] ^= mask;
            std::fs::write(&path, &bytes).unwrap();
            let refused = matches!(Trainer::resume(dir.path()), Err(Error::Io { .. }));
            proptest::prop_assert!(refused, "byte {} ^ {:#x} accepted", pos, mask);
            let _ = std::fs::remove_dir_all(dir.path());
        }
    }

    /// Records what it sees.
    #[derive(Default)]
    struct Seen {
        epochs: Vec<usize>,
        evals: Vec<usize>,
        ends: Vec<End>,
    }

    impl Observe for &mut Seen {
        fn observe_epoch(&mut self, t: &Trainer, _loss: f64) -> Result<()> {
            self.epochs.push(t.epochs_done());
            Ok(())
        }
        fn observe_eval(&mut self, _t: &Trainer, rec: &EvalRecord) -> Result<()> {
            self.evals.push(rec.epoch);
            Ok(())
        }
        fn observe_end(&mut self, _t: &Trainer, end: &End) -> Result<()> {
            self.ends.push(end.clone());
            Ok(())
        }
    }

    #[test]
    fn observers_see_the_epochs_their_mode_selects() {
        let mut t = trainer(0.1, 7);
        let mut every3 = Seen::default();
        let mut never = Seen::default();
        let out = t
            .session()
            .add_observer(&mut every3, ObserverMode::Every(3))
            .add_observer(&mut never, ObserverMode::Never)
            .run()
            .unwrap();
        assert!(matches!(out, Outcome::Completed(ref s) if s.epochs == 7));
        assert_eq!(every3.epochs, [3, 6]);
        assert!(never.epochs.is_empty());
        assert_eq!(every3.evals, (1..=7).collect::<Vec<_>>());
        assert_eq!(never.ends, [End::Completed]);
    }

    #[test]
    fn divergence_stops_at_the_step_and_never_checkpoints_non_finite_weights() {
        let dir = scratch("diverge");
        let mut t = trainer(200.0, 50);
        let mut seen = Seen::default();
        let stop = StopFlag::new();
        let out = t
            .session()
            .add_observer(crate::train::Checkpointer::new(&dir), ObserverMode::Always)
            .add_observer(&mut seen, ObserverMode::Always)
            .stop_on(stop.clone())
            .run()
            .unwrap();
        let Outcome::Diverged(d) = out else {
            panic!("expected a divergence, got {out:?}")
        };
        assert!(!d.loss.is_finite() && d.lr == 200.0 && d.steps_per_epoch == 12);
        assert_eq!(
            d.epoch,
            seen.epochs.len() + 1,
            "stops inside the next epoch"
        );
        assert!(matches!(seen.ends.as_slice(), [End::Diverged(_)]));
        assert!(!stop.is_watched(), "the loop no longer watches the flag");
        // the checkpoint on disk is the last completed epoch's, with finite weights
        let kept = Trainer::resume(dir.path()).unwrap();
        assert_eq!(kept.epochs_done(), d.epoch - 1);
        assert!(kept.w().iter().chain(kept.u()).all(|v| v.is_finite()));
        let _ = std::fs::remove_dir_all(dir.path());
    }
}
