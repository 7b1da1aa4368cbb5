//! The checkpoint file `checkpoint.bin` (format version 3):
//!
//! ```text
//! magic      8 bytes  b"FCCKPT03" (CHECKPOINT_MAGIC)
//! hdr_len    u64 LE   length of the JSON header in bytes
//! header     JSON     run name, task settings (TaskConfig), train config, epoch, step
//!                     inside the epoch, shuffle-rng word position, loss sums, timing, sizes
//! payload    f32 LE   W (n_w x d, row-major), U (K x L d, row-major), then with
//!                     layer-affine [gamma ; beta] (2 d; header field aff_len)
//! checksum   u64 LE   FNV-1a 64 of every byte before it (magic, header and payload)
//! ```
//!
//! The checksum covers the whole file: any changed byte is refused. (FNV-1a maps a
//! change of one byte to a different hash: XOR and multiplication by the odd prime are
//! both bijections of the 64-bit state.)
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
use std::path::Path;

/// First 8 bytes of a checkpoint file.
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"FCCKPT03";
const FORMAT: &str = "feature-collapse train checkpoint";
const VERSION: u32 = 3;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    /// Name of the run (e.g. `fig3`), kept across resumes.
    name: String,
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
    /// Length of `[gamma ; beta]` after `U` in the payload (`layer-affine`; absent,
    /// i.e. 0, in files of the other norms and of earlier versions).
    #[serde(default, skip_serializing_if = "is_zero")]
    aff_len: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Decoded checkpoint.
pub(super) struct Checkpoint {
    pub name: String,
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
    pub aff: Vec<f32>,
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Writes the trainer's state to `path` atomically (through `path.tmp`).
pub(super) fn write(t: &Trainer, path: &Path) -> Result<()> {
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        name: t.name.clone(),
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
        aff_len: t.aff.len(),
    };
    let hjson = serde_json::to_vec(&header)?;
    let n = t.w.len() + t.u.len() + t.aff.len();
    let mut bytes = Vec::with_capacity(24 + hjson.len() + 4 * n);
    bytes.extend_from_slice(CHECKPOINT_MAGIC);
    bytes.extend_from_slice(&(hjson.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&hjson);
    for v in t.w.iter().chain(&t.u).chain(&t.aff) {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let sum = fnv1a64(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    // Make the rename durable (best effort: not every platform can fsync a directory).
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn corrupt(path: &Path, what: impl ToString) -> Error {
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
    )
}

/// Reads and checks a checkpoint file; every error names `path`.
pub(super) fn read(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() < 24 || &bytes[..8] != CHECKPOINT_MAGIC {
        let what = if bytes.starts_with(b"FCCKPT") {
            "checkpoint of an older format (before version 3); start the run again"
        } else {
            "not a feature-collapse checkpoint (bad magic)"
        };
        return Err(corrupt(path, what));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    let stored = u64::from_le_bytes(tail.try_into().expect("8 bytes"));
    if fnv1a64(body) != stored {
        return Err(corrupt(
            path,
            "checksum mismatch (the file is corrupted or truncated)",
        ));
    }
    let hlen = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
    let hend = usize::try_from(hlen)
        .ok()
        .and_then(|h| h.checked_add(16))
        .filter(|&e| e <= body.len())
        .ok_or_else(|| corrupt(path, "truncated header"))?;
    let h: Header = serde_json::from_slice(&body[16..hend])
        .map_err(|e| corrupt(path, format!("bad header: {e}")))?;
    if h.format != FORMAT || h.version != VERSION {
        return Err(corrupt(
            path,
            format!("unsupported format {} v{}", h.format, h.version),
        ));
    }
    let task = h
        .task
        .build()
        .map_err(|e| corrupt(path, format!("invalid task in header: {e}")))?;
    h.config
        .validate()
        .map_err(|e| corrupt(path, format!("invalid train config in header: {e}")))?;
    let t = &task;
    let aff_len = if t.norm().is_affine() { 2 * t.dim() } else { 0 };
    if h.w_len != t.n_w() * t.dim() || h.u_len != t.k() * t.len() * t.dim() || h.aff_len != aff_len
    {
        return Err(corrupt(path, "weight sizes do not match the task"));
    }
    let data = &body[hend..];
    let total = h.w_len + h.u_len + h.aff_len;
    if data.len() != 4 * total {
        return Err(corrupt(
            path,
            format!("payload of {} bytes, expected {}", data.len(), 4 * total),
        ));
    }
    let mut vals = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")));
    let w: Vec<f32> = vals.by_ref().take(h.w_len).collect();
    let u: Vec<f32> = vals.by_ref().take(h.u_len).collect();
    let aff: Vec<f32> = vals.collect();
    let epoch_rng_pos = h
        .epoch_rng_pos
        .parse::<u128>()
        .map_err(|e| corrupt(path, format!("bad rng position: {e}")))?;
    let steps = (t.k() * h.config.n_spl).div_ceil(h.config.batch.max(1));
    if h.step_in_epoch >= steps.max(1) {
        return Err(corrupt(path, "step inside the epoch out of range"));
    }
    Ok(Checkpoint {
        name: h.name,
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
        aff,
    })
}
