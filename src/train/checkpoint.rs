//! Checkpoint file `checkpoint.bin`:
//!
//! ```text
//! magic      8 bytes  b"FCCKPT01"
//! hdr_len    u64 LE   length of the JSON header in bytes
//! header     JSON     task, train config, epoch, position in the epoch, rng state,
//!                     timing, sizes and an FNV-1a 64 checksum of the payload
//! payload    f32 LE   W (n_w x d, row-major) then U (K x Ld, row-major)
//! ```
//!
//! Written to `checkpoint.bin.tmp`, fsynced, renamed over `checkpoint.bin`, then the
//! directory is fsynced: a crash leaves either the old or the new checkpoint.
//! The shuffle rng is ChaCha8 (`config.seed`, stream 3); the header stores its word
//! position *before* the current epoch's shuffle, which resume replays.

use super::{TrainConfig, Trainer};
use crate::error::{Error, Result};
use crate::task::{Task, TaskConfig};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the checkpoint inside the output directory. Layout:
///
/// ```text
/// magic      8 bytes  b"FCCKPT01" (CHECKPOINT_MAGIC)
/// hdr_len    u64 LE   length of the JSON header in bytes
/// header     JSON     task, train config, epoch, step inside the epoch, shuffle-rng
///                     word position, training seconds, sizes, FNV-1a 64 checksum
/// payload    f32 LE   W (n_w x d, row-major) then U (K x L d, row-major)
/// ```
///
/// Written to a `.tmp` file, fsynced, renamed over the old one (then the directory is
/// fsynced), so a crash leaves either the old or the new checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.bin";
/// First 8 bytes of a checkpoint file.
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"FCCKPT01";
const FORMAT: &str = "feature-collapse train checkpoint";

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    /// The raw task settings; the task (and its latent draw) is rebuilt from them.
    task: TaskConfig,
    config: TrainConfig,
    epoch: usize,
    step_in_epoch: usize,
    /// `f64::to_bits` (exact, NaN-safe).
    epoch_loss_sum_bits: u64,
    last_loss_bits: u64,
    train_secs: f64,
    /// Shuffle-rng word position before the current epoch's shuffle (u128 as decimal).
    epoch_rng_pos: String,
    w_len: usize,
    u_len: usize,
    /// FNV-1a 64 of the payload bytes, hex.
    checksum: String,
}

/// Decoded checkpoint.
pub(super) struct Checkpoint {
    pub task: Task,
    pub config: TrainConfig,
    pub epoch: usize,
    pub step_in_epoch: usize,
    pub epoch_loss_sum: f64,
    pub last_loss: f64,
    pub train_secs: f64,
    pub epoch_rng_pos: u128,
    pub w: Vec<f32>,
    pub u: Vec<f32>,
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn payload(w: &[f32], u: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 * (w.len() + u.len()));
    for v in w.iter().chain(u) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes the trainer's state to `dir/checkpoint.bin` atomically; returns the path.
pub(super) fn write(t: &Trainer, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let data = payload(&t.w, &t.u);
    let header = Header {
        format: FORMAT.into(),
        version: 2,
        task: t.task.config().clone(),
        config: t.config.clone(),
        epoch: t.epoch,
        step_in_epoch: t.step_in_epoch,
        epoch_loss_sum_bits: t.epoch_loss_sum.to_bits(),
        last_loss_bits: t.last_loss.to_bits(),
        train_secs: t.train_secs,
        epoch_rng_pos: t.epoch_rng_pos.to_string(),
        w_len: t.w.len(),
        u_len: t.u.len(),
        checksum: format!("{:016x}", fnv1a64(&data)),
    };
    let hjson = serde_json::to_vec(&header)?;
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let io = |e| Error::io(&tmp, e);
        f.write_all(CHECKPOINT_MAGIC).map_err(io)?;
        f.write_all(&(hjson.len() as u64).to_le_bytes())
            .map_err(io)?;
        f.write_all(&hjson).map_err(io)?;
        f.write_all(&data).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    // Make the rename durable (best effort: not every platform can fsync a directory).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}

fn corrupt(path: &Path, what: impl ToString) -> Error {
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
    )
}

/// Reads and checks a checkpoint file.
pub(super) fn read(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() < 16 || &bytes[..8] != CHECKPOINT_MAGIC {
        return Err(corrupt(
            path,
            "not a feature-collapse checkpoint (bad magic)",
        ));
    }
    let hlen = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let hend = 16usize
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| corrupt(path, "truncated header"))?;
    let h: Header = serde_json::from_slice(&bytes[16..hend])?;
    if h.format != FORMAT || h.version != 2 {
        return Err(corrupt(
            path,
            format!("unsupported format {} v{}", h.format, h.version),
        ));
    }
    let task = h
        .task
        .build()
        .map_err(|e| corrupt(path, format!("invalid task in header: {e}")))?;
    let t = &task;
    if h.w_len != t.n_w() * t.dim() || h.u_len != t.k() * t.len() * t.dim() {
        return Err(corrupt(path, "weight sizes do not match the task"));
    }
    let data = &bytes[hend..];
    if data.len() != 4 * (h.w_len + h.u_len) {
        return Err(corrupt(
            path,
            format!(
                "payload of {} bytes, expected {}",
                data.len(),
                4 * (h.w_len + h.u_len)
            ),
        ));
    }
    if format!("{:016x}", fnv1a64(data)) != h.checksum {
        return Err(corrupt(path, "checksum mismatch"));
    }
    let mut vals = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")));
    let w: Vec<f32> = vals.by_ref().take(h.w_len).collect();
    let u: Vec<f32> = vals.collect();
    let epoch_rng_pos = h
        .epoch_rng_pos
        .parse::<u128>()
        .map_err(|e| corrupt(path, format!("bad rng position: {e}")))?;
    let steps = (t.k() * h.config.n_spl).div_ceil(h.config.batch.max(1));
    if h.step_in_epoch >= steps.max(1) {
        return Err(corrupt(path, "step inside the epoch out of range"));
    }
    Ok(Checkpoint {
        task,
        config: h.config,
        epoch: h.epoch,
        step_in_epoch: h.step_in_epoch,
        epoch_loss_sum: f64::from_bits(h.epoch_loss_sum_bits),
        last_loss: f64::from_bits(h.last_loss_bits),
        train_secs: h.train_secs,
        epoch_rng_pos,
        w,
        u,
    })
}
