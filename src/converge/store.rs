//! `results.jsonl`: one [`Record`] per line (led by the crate `version`), appended
//! as each one finishes, so that a rerun skips what is done. A torn last line (a
//! run killed mid-write: no final newline, or a line that does not parse) is cut
//! off on reopening.

use super::Record;
use crate::error::{Error, Result};
use crate::Versioned;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the results file inside the output directory.
pub const RESULTS_FILE: &str = "results.jsonl";

/// The results file of a study, open for appending.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
}

impl Store {
    /// Opens (creating `dir` and the file if needed) and returns the records
    /// already there. A torn last line is cut from the file; a complete line
    /// that does not parse elsewhere is an error naming the line.
    pub fn open(dir: &Path) -> Result<(Store, Vec<Record>)> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(RESULTS_FILE);
        let text = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut records = Vec::new();
        let mut good_len = 0usize;
        let mut pos = 0usize;
        while pos < text.len() {
            let end = text[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| pos + i);
            let line = &text[pos..end.unwrap_or(text.len())];
            let parsed = std::str::from_utf8(line)
                .ok()
                .and_then(|s| serde_json::from_str::<Record>(s).ok());
            match (end, parsed) {
                (Some(e), Some(r)) => {
                    records.push(r);
                    good_len = e + 1;
                    pos = e + 1;
                }
                // the last line: torn, cut it
                (None, _) => break,
                (Some(e), None) if e + 1 == text.len() => break,
                (Some(_), None) => {
                    return Err(Error::invalid(
                        "out",
                        path.display(),
                        format!(
                        "line {} of {RESULTS_FILE} is not a result; remove it or use another --out",
                        records.len() + 1
                    ),
                    ))
                }
            }
        }
        if good_len < text.len() {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            f.set_len(good_len as u64)
                .map_err(|e| Error::io(&path, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok((Store { path, file }, records))
    }

    /// Appends one line (written in one call, then flushed to disk).
    pub fn append(&mut self, r: &Record) -> Result<()> {
        let mut line = serde_json::to_string(&Versioned::new(r))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
